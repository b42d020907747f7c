//! The models file: which models a process serves, how each runs, the names clients may
//! call them by, and the experiments and shadow comparisons between them. Parsing and
//! checking only; [`super::registry`] loads it.
//!
//! ```toml
//! default = "rra-bert-mini"          # a model or an experiment; default: the first model
//!
//! [aliases]                          # served-model names: what clients put in `model`
//! "rerank-v3.5" = "rra-bert-mini"    # -> a model or an experiment
//!
//! [[model]]
//! name = "rra-bert-mini"             # the name requests use; default: the manifest's
//! path = "rra-bert-mini"             # model folder, relative to this file
//! execution_provider = "cpu"         # cpu | cuda | tensorrt
//! device_id = 0
//! allow_cpu_fallback = false         # serve on CPU (logged as an error) if the GPU fails
//! sessions = 2                       # these four, and the queue limits, default to the flags
//! intra_threads = 1
//! max_batch_tokens = 16384
//! max_batch_size = 16
//! max_batch_padding = 0.1            # share of a batch that may be padding (CPU default)
//! max_queue_tokens = 262144
//! max_concurrent_requests = 512
//! max_queue_wait_ms = 2000
//! queue_wait_spread = 2.0            # lateness standard deviations admission allows for
//!
//! [[experiment]]
//! name = "ranker-ab"                 # requests naming it (or the default) are split
//! variants = [{ model = "rra-bert-mini", weight = 90 }, { model = "rra-gpt-mini", weight = 10 }]
//!
//! [[shadow]]
//! primary = "rra-bert-mini"          # requests served by this model ...
//! shadow = "rra-gpt-mini"            # ... are also scored by this one, off the response path
//! sample_rate = 0.05
//! ```
//! A process started with `--model-dir DIR` serves the catalog of that one model.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::model::graph::Provider;
use crate::model::manifest::Manifest;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    #[serde(default)]
    pub default: Option<String>,
    /// Served-model names: alias -> model or experiment.
    #[serde(default)]
    pub aliases: BTreeMap<String, String>,
    #[serde(default, rename = "model")]
    pub models: Vec<ModelEntry>,
    #[serde(default, rename = "experiment")]
    pub experiments: Vec<ExperimentEntry>,
    #[serde(default, rename = "shadow")]
    pub shadows: Vec<ShadowEntry>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    #[serde(default)]
    pub name: Option<String>,
    pub path: PathBuf,
    #[serde(default)]
    pub execution_provider: Provider,
    #[serde(default)]
    pub device_id: i32,
    #[serde(default)]
    pub allow_cpu_fallback: bool,
    #[serde(default)]
    pub sessions: Option<usize>,
    #[serde(default)]
    pub intra_threads: Option<usize>,
    #[serde(default)]
    pub max_batch_tokens: Option<usize>,
    #[serde(default)]
    pub max_batch_size: Option<usize>,
    #[serde(default)]
    pub max_batch_padding: Option<f64>,
    #[serde(default)]
    pub max_queue_tokens: Option<usize>,
    #[serde(default)]
    pub max_concurrent_requests: Option<usize>,
    #[serde(default)]
    pub max_queue_wait_ms: Option<u64>,
    #[serde(default)]
    pub queue_wait_spread: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExperimentEntry {
    pub name: String,
    pub variants: Vec<VariantEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VariantEntry {
    pub model: String,
    pub weight: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShadowEntry {
    pub primary: String,
    pub shadow: String,
    pub sample_rate: f64,
}

impl ModelEntry {
    /// The name requests use: the entry's, else the manifest's.
    pub fn served_name(&self) -> Result<String> {
        match &self.name {
            Some(name) => Ok(name.clone()),
            None => Ok(Manifest::load(&self.path)?.name),
        }
    }
}

impl Catalog {
    /// Reads and checks the models file at `path`; model paths are taken relative to it.
    pub fn load(path: &Path) -> Result<Catalog> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the models file {}", path.display()))?;
        let mut catalog: Catalog = toml::from_str(&text)
            .with_context(|| format!("{} is not a valid models file", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for model in &mut catalog.models {
            if model.path.is_relative() {
                model.path = base.join(&model.path);
            }
        }
        catalog
            .resolve_names()
            .and_then(|()| catalog.check())
            .with_context(|| format!("{} is not a valid models file", path.display()))?;
        Ok(catalog)
    }

    /// The catalog of one model folder (`--model-dir`).
    pub fn single(dir: &Path) -> Result<Catalog> {
        let mut catalog = Catalog {
            default: None,
            aliases: BTreeMap::new(),
            models: vec![ModelEntry {
                name: None,
                path: dir.to_path_buf(),
                execution_provider: Provider::Cpu,
                device_id: 0,
                allow_cpu_fallback: false,
                sessions: None,
                intra_threads: None,
                max_batch_tokens: None,
                max_batch_size: None,
                max_batch_padding: None,
                max_queue_tokens: None,
                max_concurrent_requests: None,
                max_queue_wait_ms: None,
                queue_wait_spread: None,
            }],
            experiments: Vec::new(),
            shadows: Vec::new(),
        };
        catalog.resolve_names()?;
        Ok(catalog)
    }

    fn resolve_names(&mut self) -> Result<()> {
        for model in &mut self.models {
            if model.name.is_none() {
                model.name = Some(model.served_name().with_context(|| {
                    format!(
                        "model at {} has no `name` and its manifest cannot be read",
                        model.path.display()
                    )
                })?);
            }
        }
        Ok(())
    }

    pub fn model_names(&self) -> Vec<String> {
        self.models.iter().filter_map(|m| m.name.clone()).collect()
    }

    /// Every reference between entries must resolve, names must be unique, weights and rates
    /// must make sense.
    fn check(&self) -> Result<()> {
        if self.models.is_empty() {
            bail!("it lists no `[[model]]`");
        }
        let models = self.model_names();
        let mut names = BTreeSet::new();
        for name in models
            .iter()
            .chain(self.experiments.iter().map(|e| &e.name))
        {
            if name.trim().is_empty() {
                bail!("a model or experiment has an empty name");
            }
            if !names.insert(name.as_str()) {
                bail!("the name `{name}` is used twice (model and experiment names share one namespace)");
            }
        }
        for model in &self.models {
            if let Some(spread) = model.queue_wait_spread {
                crate::batch::admission::check_spread(spread).map_err(|why| {
                    anyhow::anyhow!(
                        "model at `{}`: queue_wait_spread {why}",
                        model.path.display()
                    )
                })?;
            }
            if let Some(padding) = model.max_batch_padding {
                crate::batch::check_padding(padding).map_err(|why| {
                    anyhow::anyhow!(
                        "model at `{}`: max_batch_padding {why}",
                        model.path.display()
                    )
                })?;
            }
        }
        let known = |name: &str, what: &str| -> Result<()> {
            if !models.iter().any(|m| m == name) {
                bail!("{what} names model `{name}`, which is not listed; models: {models:?}");
            }
            Ok(())
        };
        for experiment in &self.experiments {
            if experiment.variants.is_empty() {
                bail!("experiment `{}` has no variants", experiment.name);
            }
            let mut seen = BTreeSet::new();
            for variant in &experiment.variants {
                known(&variant.model, &format!("experiment `{}`", experiment.name))?;
                if !seen.insert(&variant.model) {
                    bail!(
                        "experiment `{}` lists model `{}` twice",
                        experiment.name,
                        variant.model
                    );
                }
            }
            if experiment.variants.iter().all(|v| v.weight == 0) {
                bail!(
                    "experiment `{}`: every weight is 0; give at least one variant traffic",
                    experiment.name
                );
            }
        }
        for shadow in &self.shadows {
            known(&shadow.primary, "a shadow's `primary`")?;
            known(&shadow.shadow, "a shadow's `shadow`")?;
            if shadow.primary == shadow.shadow {
                bail!(
                    "shadow of `{}` compares the model with itself",
                    shadow.primary
                );
            }
            if !(0.0..=1.0).contains(&shadow.sample_rate) {
                bail!(
                    "shadow of `{}`: sample_rate {} must be between 0 and 1",
                    shadow.primary,
                    shadow.sample_rate
                );
            }
        }
        if self
            .shadows
            .iter()
            .map(|s| &s.primary)
            .collect::<BTreeSet<_>>()
            .len()
            != self.shadows.len()
        {
            bail!("a model may have at most one shadow");
        }
        for (alias, target) in &self.aliases {
            if alias.trim().is_empty() {
                bail!("an alias has an empty name");
            }
            if names.contains(alias.as_str()) {
                bail!(
                    "the alias `{alias}` is also a model or experiment name; names must be unique"
                );
            }
            if !names.contains(target.as_str()) {
                bail!("the alias `{alias}` points to `{target}`, which is neither a listed model nor an experiment; names: {names:?}");
            }
        }
        if let Some(default) = &self.default {
            if !names.contains(default.as_str()) {
                bail!("`default` is `{default}`, which is neither a listed model nor an experiment; names: {names:?}");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Catalog> {
        let catalog: Catalog = toml::from_str(text)?;
        catalog.check()?;
        Ok(catalog)
    }

    const TWO: &str = r#"
        [[model]]
        name = "a"
        path = "a"
        [[model]]
        name = "b"
        path = "b"
    "#;

    #[test]
    fn a_valid_file_with_an_experiment_and_a_shadow() {
        let text = format!(
            "default = \"ab\"\n{TWO}\n[[experiment]]\nname = \"ab\"\nvariants = [{{ model = \"a\", weight = 1 }}, {{ model = \"b\", weight = 3 }}]\n[[shadow]]\nprimary = \"a\"\nshadow = \"b\"\nsample_rate = 0.5\n"
        );
        let catalog = parse(&format!("{text}\n[aliases]\n\"rerank-v3.5\" = \"ab\"\n")).unwrap();
        assert_eq!(catalog.models.len(), 2);
        assert_eq!(catalog.aliases["rerank-v3.5"], "ab");
        assert_eq!(catalog.experiments[0].variants[1].weight, 3);
    }

    #[test]
    fn bad_references_say_what_is_wrong() {
        let cases = [
            (format!("default = \"c\"\n{TWO}"), "neither a listed model"),
            (
                format!("{TWO}\n[[experiment]]\nname = \"a\"\nvariants = [{{ model = \"b\", weight = 1 }}]"),
                "used twice",
            ),
            (
                format!("{TWO}\n[[experiment]]\nname = \"x\"\nvariants = [{{ model = \"z\", weight = 1 }}]"),
                "not listed",
            ),
            (
                format!("{TWO}\n[[experiment]]\nname = \"x\"\nvariants = [{{ model = \"a\", weight = 0 }}]"),
                "every weight is 0",
            ),
            (
                format!("{TWO}\n[[shadow]]\nprimary = \"a\"\nshadow = \"b\"\nsample_rate = 2.0"),
                "between 0 and 1",
            ),
            (
                format!("{TWO}\n[[shadow]]\nprimary = \"a\"\nshadow = \"a\"\nsample_rate = 0.1"),
                "with itself",
            ),
            ("".to_string(), "no `[[model]]`"),
            (
                format!("[aliases]\n\"rerank-v3.5\" = \"c\"\n{TWO}"),
                "neither a listed model",
            ),
            (format!("[aliases]\n\"a\" = \"b\"\n{TWO}"), "also a model"),
        ];
        for (text, expected) in cases {
            let error = format!("{:#}", parse(&text).unwrap_err());
            assert!(error.contains(expected), "{text:?}: {error}");
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        let error =
            toml::from_str::<Catalog>("[[model]]\nname = \"a\"\npath = \"a\"\nsesions = 2\n")
                .unwrap_err()
                .to_string();
        assert!(error.contains("sesions"), "{error}");
    }
}
