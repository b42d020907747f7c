//! The models this process serves, by name, each with its own queue, inference threads and
//! admission (so a slow model cannot starve another), plus the routing between them:
//! a request's `model` names a model, an alias of one (a served-model name such as a Cohere
//! model's, so an unchanged client works) or an experiment; an experiment assigns a variant,
//! sticky per user or session (hashed), at random without one, forced by a header for
//! debugging; a shadow model may score a sample of a model's traffic off the response path.
//!
//! A registry is immutable once built. Reloading builds a new one from the models file,
//! reusing every model whose folder and settings are unchanged and loading (and warming) the
//! rest beside the old ones; the service then swaps registries atomically. Requests in flight
//! hold their model, which shuts its batcher down when the last of them lets go.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

use super::catalog::{Catalog, ExperimentEntry, ModelEntry, ShadowEntry};
use crate::batch::{default_padding, Admission, AdmissionLimits, Batcher, BatcherConfig};
use crate::metrics::Metrics;
use crate::model::graph::SessionOptions;
use crate::model::student::StudentRanker;
use crate::model::{ModelDescriptor, Ranker};

/// Settings a model gets when the models file does not set them (the command-line flags).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelDefaults {
    pub sessions: usize,
    /// 0: available cores divided by the model's sessions.
    pub intra_threads: usize,
    pub limits: QueueLimits,
}

/// Limits applied to each model's queue.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QueueLimits {
    pub batch: BatcherConfig,
    pub max_concurrent_requests: usize,
    pub max_queue_tokens: usize,
    /// The admission wait target.
    pub max_queue_wait: Duration,
    /// Standard deviations of lateness admission adds to its mean (`--queue-wait-spread`).
    pub queue_wait_spread: f64,
}

/// Everything that decides how a model is loaded and served: equal settings and an equal
/// folder fingerprint mean a reload can keep the loaded model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSettings {
    pub path: PathBuf,
    pub sessions: SessionOptions,
    pub limits: QueueLimits,
}

impl ModelSettings {
    pub fn resolve(entry: &ModelEntry, defaults: &ModelDefaults) -> ModelSettings {
        let sessions = entry.sessions.unwrap_or(defaults.sessions).max(1);
        let intra_threads = match entry.intra_threads.unwrap_or(defaults.intra_threads) {
            0 => {
                let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
                (cores / sessions).max(1)
            }
            n => n,
        };
        let d = defaults.limits;
        ModelSettings {
            path: entry.path.clone(),
            sessions: SessionOptions {
                sessions,
                intra_threads,
                provider: entry.execution_provider,
                device_id: entry.device_id,
                allow_cpu_fallback: entry.allow_cpu_fallback,
            },
            limits: QueueLimits {
                batch: BatcherConfig {
                    max_batch_tokens: entry.max_batch_tokens.unwrap_or(d.batch.max_batch_tokens),
                    max_batch_size: entry.max_batch_size.unwrap_or(d.batch.max_batch_size),
                    max_batch_padding: entry.max_batch_padding.or(d.batch.max_batch_padding),
                },
                max_concurrent_requests: entry
                    .max_concurrent_requests
                    .unwrap_or(d.max_concurrent_requests),
                max_queue_tokens: entry.max_queue_tokens.unwrap_or(d.max_queue_tokens),
                max_queue_wait: entry
                    .max_queue_wait_ms
                    .map_or(d.max_queue_wait, Duration::from_millis),
                queue_wait_spread: entry.queue_wait_spread.unwrap_or(d.queue_wait_spread),
            },
        }
    }
}

/// A loaded model ready to serve: the model, its batcher and its admission.
pub struct ServedModel {
    /// What clients and operators see; `name` is the served name (the metrics label).
    pub descriptor: ModelDescriptor,
    pub ranker: Arc<dyn Ranker>,
    pub batcher: Batcher,
    pub admission: Admission,
    pub settings: Option<ModelSettings>,
}

impl ServedModel {
    pub fn name(&self) -> &str {
        &self.descriptor.name
    }
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("model `{requested}` is not served here; available: {}", available.join(", "))]
pub struct UnknownModel {
    pub requested: String,
    pub available: Vec<String>,
}

/// Why a request could not be routed to a model.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RouteError {
    #[error(transparent)]
    UnknownModel(#[from] UnknownModel),
    #[error(
        "the forced variant `{forced}` is not a variant of experiment `{experiment}`; its variants: {}",
        variants.join(", ")
    )]
    UnknownVariant {
        experiment: String,
        forced: String,
        variants: Vec<String>,
    },
}

/// Who a request is, for sticky experiment assignment, and any variant forced for debugging.
#[derive(Debug, Clone, Default)]
pub struct RoutingHints {
    /// A user or session id; hashed, never stored or logged.
    pub unit: Option<String>,
    /// A variant (model name) to use instead of the assigned one.
    pub forced_variant: Option<String>,
}

/// How a request reached its model when an experiment decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Assignment {
    pub experiment: String,
    /// The model that served the request.
    pub variant: String,
    /// `sticky` (hashed user/session id), `random` (none given) or `forced` (header).
    pub by: AssignedBy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AssignedBy {
    Sticky,
    Random,
    Forced,
}

impl AssignedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            AssignedBy::Sticky => "sticky",
            AssignedBy::Random => "random",
            AssignedBy::Forced => "forced",
        }
    }
}

pub struct Routed {
    pub model: Arc<ServedModel>,
    pub assignment: Option<Assignment>,
}

pub struct Registry {
    models: Vec<Arc<ServedModel>>,
    default: Option<String>,
    /// Served-model names: alias -> model or experiment.
    aliases: BTreeMap<String, String>,
    experiments: Vec<ExperimentEntry>,
    shadows: Vec<ShadowEntry>,
}

/// What a reload did, model by model.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct ReloadReport {
    /// Models kept as they were (same folder contents and settings).
    pub kept: Vec<String>,
    /// Models loaded anew (new, changed folder or changed settings), with their fingerprints.
    pub loaded: Vec<String>,
    /// Models no longer served.
    pub removed: Vec<String>,
}

impl Registry {
    /// Loads every model of `catalog` (each validated and warmed up), reusing the models of
    /// `previous` whose folder and settings are unchanged. Any failure fails the whole load
    /// and leaves `previous` untouched.
    pub fn load(
        catalog: &Catalog,
        defaults: &ModelDefaults,
        metrics: &Metrics,
        previous: Option<&Registry>,
    ) -> Result<(Registry, ReloadReport)> {
        let mut report = ReloadReport::default();
        let mut models = Vec::with_capacity(catalog.models.len());
        for entry in &catalog.models {
            let name = entry.served_name()?;
            let settings = ModelSettings::resolve(entry, defaults);
            let old = previous.and_then(|p| p.models.iter().find(|m| m.name() == name));
            if let Some(old) = old {
                let same_folder = crate::model::fingerprint(&settings.path)
                    .map(|f| f == old.descriptor.fingerprint)
                    .unwrap_or(false);
                if same_folder && old.settings.as_ref() == Some(&settings) {
                    report.kept.push(name);
                    models.push(old.clone());
                    continue;
                }
            }
            let ranker: Arc<dyn Ranker> = Arc::new(
                StudentRanker::load(&settings.path, &settings.sessions).with_context(|| {
                    format!(
                        "cannot serve model `{name}` from {}",
                        settings.path.display()
                    )
                })?,
            );
            let served = Self::serve(ranker, Some(name.clone()), settings, metrics);
            report.loaded.push(format!(
                "{name} (version {}, fingerprint {})",
                served.descriptor.version,
                &served.descriptor.fingerprint[..12]
            ));
            models.push(Arc::new(served));
        }
        if let Some(previous) = previous {
            for old in &previous.models {
                if !models.iter().any(|m| m.name() == old.name()) {
                    report.removed.push(old.name().to_string());
                }
            }
        }
        let registry = Registry {
            models,
            default: catalog.default.clone(),
            aliases: catalog.aliases.clone(),
            experiments: catalog.experiments.clone(),
            shadows: catalog.shadows.clone(),
        };
        Ok((registry, report))
    }

    /// Puts an already loaded model behind a batcher and its admission, under `name`
    /// (default: the manifest's). Admission divides by the rate the batcher measures.
    pub fn serve(
        ranker: Arc<dyn Ranker>,
        name: Option<String>,
        settings: ModelSettings,
        metrics: &Metrics,
    ) -> ServedModel {
        let mut descriptor = ranker.descriptor().clone();
        if let Some(name) = name {
            descriptor.name = name;
        }
        let window = descriptor.max_pair_tokens();
        let limits = settings.limits;
        let batch = BatcherConfig {
            // A full-window pair must always fit in a batch of its own.
            max_batch_tokens: limits.batch.max_batch_tokens.max(window),
            max_batch_size: limits.batch.max_batch_size,
            // Settled now that where the model runs is known (CPU after a GPU fallback too).
            max_batch_padding: limits
                .batch
                .max_batch_padding
                .or_else(|| default_padding(&descriptor.execution_provider)),
        };
        let batcher = Batcher::start(ranker.clone(), batch, metrics.for_model(&descriptor.name));
        let admission = Admission::new(
            AdmissionLimits {
                max_requests: limits.max_concurrent_requests,
                max_tokens: limits.max_queue_tokens,
                max_wait: limits.max_queue_wait,
                spread: limits.queue_wait_spread,
            },
            batcher.throughput(),
            batch,
        );
        metrics
            .max_queue_wait_seconds
            .with_label_values(&[&descriptor.name])
            .set(limits.max_queue_wait.as_secs_f64());
        metrics
            .max_queued_tokens
            .with_label_values(&[&descriptor.name])
            .set(i64::try_from(limits.max_queue_tokens).unwrap_or(i64::MAX));
        metrics
            .max_concurrent_requests
            .with_label_values(&[&descriptor.name])
            .set(i64::try_from(limits.max_concurrent_requests).unwrap_or(i64::MAX));
        ServedModel {
            descriptor,
            ranker,
            batcher,
            admission,
            settings: Some(settings),
        }
    }

    /// A registry of models already served (benchmarks and tests).
    pub fn from_models(models: Vec<ServedModel>) -> Registry {
        Registry {
            models: models.into_iter().map(Arc::new).collect(),
            default: None,
            aliases: BTreeMap::new(),
            experiments: Vec::new(),
            shadows: Vec::new(),
        }
    }

    /// The model called `name`, or the default model when no name is given (an experiment
    /// as default resolves to its first variant here; requests go through [`Self::route`]).
    pub fn get(&self, name: Option<&str>) -> Result<Arc<ServedModel>, UnknownModel> {
        let name = match name {
            None | Some("") => match self.default_target() {
                Some(Target::Model(model)) => return Ok(model),
                Some(Target::Experiment(e)) => e.variants[0].model.clone(),
                None => {
                    return Err(UnknownModel {
                        requested: "(default)".into(),
                        available: Vec::new(),
                    })
                }
            },
            Some(name) => self
                .aliases
                .get(name)
                .map_or(name, String::as_str)
                .to_string(),
        };
        self.models
            .iter()
            .find(|m| m.name() == name)
            .cloned()
            .ok_or_else(|| UnknownModel {
                requested: name,
                available: self.names(),
            })
    }

    fn default_target(&self) -> Option<Target<'_>> {
        match &self.default {
            None => self.models.first().cloned().map(Target::Model),
            Some(name) => self.target(name),
        }
    }

    fn target(&self, name: &str) -> Option<Target<'_>> {
        let name = self.aliases.get(name).map_or(name, String::as_str);
        if let Some(model) = self.models.iter().find(|m| m.name() == name) {
            return Some(Target::Model(model.clone()));
        }
        self.experiments
            .iter()
            .find(|e| e.name == name)
            .map(Target::Experiment)
    }

    /// The model a request goes to: the one it names, or the variant its experiment assigns.
    pub fn route(
        &self,
        requested: Option<&str>,
        hints: &RoutingHints,
    ) -> Result<Routed, RouteError> {
        let target = match requested {
            None | Some("") => self.default_target(),
            Some(name) => self.target(name),
        }
        .ok_or_else(|| UnknownModel {
            requested: requested.unwrap_or("(default)").to_string(),
            available: self.routable_names(),
        })?;
        let experiment = match target {
            Target::Model(model) => {
                return Ok(Routed {
                    model,
                    assignment: None,
                })
            }
            Target::Experiment(experiment) => experiment,
        };
        let (variant, by) = match &hints.forced_variant {
            Some(forced) => {
                if !experiment.variants.iter().any(|v| &v.model == forced) {
                    return Err(RouteError::UnknownVariant {
                        experiment: experiment.name.clone(),
                        forced: forced.clone(),
                        variants: experiment
                            .variants
                            .iter()
                            .map(|v| v.model.clone())
                            .collect(),
                    });
                }
                (forced.clone(), AssignedBy::Forced)
            }
            None => {
                let (point, by) = match &hints.unit {
                    Some(unit) => (
                        xxh3_64(format!("{}\u{0}{unit}", experiment.name).as_bytes()),
                        AssignedBy::Sticky,
                    ),
                    None => (rand::random::<u64>(), AssignedBy::Random),
                };
                (assign(experiment, point).to_string(), by)
            }
        };
        let model = self.get(Some(&variant))?;
        Ok(Routed {
            model,
            assignment: Some(Assignment {
                experiment: experiment.name.clone(),
                variant,
                by,
            }),
        })
    }

    /// The model that shadows `primary`, with its sample rate.
    pub fn shadow_of(&self, primary: &str) -> Option<(Arc<ServedModel>, f64)> {
        let entry = self.shadows.iter().find(|s| s.primary == primary)?;
        let model = self.get(Some(&entry.shadow)).ok()?;
        Some((model, entry.sample_rate))
    }

    pub fn models(&self) -> &[Arc<ServedModel>] {
        &self.models
    }

    pub fn experiments(&self) -> &[ExperimentEntry] {
        &self.experiments
    }

    pub fn shadows(&self) -> &[ShadowEntry] {
        &self.shadows
    }

    /// The model or experiment used when a request names none.
    pub fn default_name(&self) -> Option<String> {
        match self.default_target()? {
            Target::Model(model) => Some(model.name().to_string()),
            Target::Experiment(e) => Some(e.name.clone()),
        }
    }

    pub fn names(&self) -> Vec<String> {
        self.models.iter().map(|m| m.name().to_string()).collect()
    }

    /// Served-model names (alias -> model or experiment).
    pub fn aliases(&self) -> &BTreeMap<String, String> {
        &self.aliases
    }

    /// Model, experiment and alias names a request may use.
    pub fn routable_names(&self) -> Vec<String> {
        let mut names = self.names();
        names.extend(self.experiments.iter().map(|e| e.name.clone()));
        names.extend(self.aliases.keys().cloned());
        names
    }

    /// Stops every batcher after it has drained its queue.
    pub fn shutdown(&self) {
        for model in &self.models {
            model.batcher.shutdown();
        }
    }
}

enum Target<'a> {
    Model(Arc<ServedModel>),
    Experiment(&'a ExperimentEntry),
}

/// The variant whose share of the weights holds `point` (uniform over u64).
fn assign(experiment: &ExperimentEntry, point: u64) -> &str {
    let total: u64 = experiment
        .variants
        .iter()
        .map(|v| u64::from(v.weight))
        .sum();
    let mut slot = point % total.max(1);
    for variant in &experiment.variants {
        let weight = u64::from(variant.weight);
        if slot < weight {
            return &variant.model;
        }
        slot -= weight;
    }
    &experiment.variants[0].model
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serving::catalog::VariantEntry;

    fn experiment(weights: &[(&str, u32)]) -> ExperimentEntry {
        ExperimentEntry {
            name: "e".into(),
            variants: weights
                .iter()
                .map(|(m, w)| VariantEntry {
                    model: m.to_string(),
                    weight: *w,
                })
                .collect(),
        }
    }

    #[test]
    fn weights_split_the_hash_space() {
        let e = experiment(&[("a", 1), ("b", 3), ("c", 0)]);
        assert_eq!(assign(&e, 0), "a");
        assert_eq!(assign(&e, 1), "b");
        assert_eq!(assign(&e, 3), "b");
        assert_eq!(assign(&e, 4), "a");
        let mut counts = [0usize; 2];
        for unit in 0..20_000u32 {
            let point = xxh3_64(format!("e\u{0}user-{unit}").as_bytes());
            counts[usize::from(assign(&e, point) == "b")] += 1;
        }
        // 25% / 75% within four standard deviations (sd ~ 61 of 20k).
        assert!((counts[0] as i64 - 5_000).abs() < 250, "{counts:?}");
    }
}
