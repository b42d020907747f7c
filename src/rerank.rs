//! The re-rank operation, independent of the wire dialect that asked for it.
//!
//! Order of work for one request, each step able to refuse it with a precise error:
//! 1. pick the model (unknown name: 404) and check the request's limits (4xx);
//! 2. look every document up in the score cache;
//! 3. tokenize the query once and the cache misses, off the async runtime (a queue too full
//!    for even the smallest possible request refuses it before this step);
//! 4. admission: charge the request's tokens against the model's budget (429 at once when
//!    full, 413 when the request alone is larger than the budget);
//! 5. queue one work item per pair and wait for all of them (the deadline bounds the wait;
//!    giving up drops the request's items from the queue);
//! 6. fill the cache, apply the score activation, sort by score (ties by index), cut to
//!    `top_n`, and report what the request cost in [`RerankMeta`].
//!
//! Step 1 routes through the registry (a model by name, or an experiment's variant); after
//! step 6 a sampled share of a model's requests may be scored again by its shadow model in
//! the background, and the agreement of the two rankings exported as metrics. The registry
//! is swapped whole on reload ([`RerankService::reload`]); a request keeps the model it was
//! routed to until it finishes.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use arc_swap::ArcSwap;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::batch::{AdmissionError, WorkItem};
use crate::cache::{CachedScore, ScoreCache};
use crate::metrics::Metrics;
use crate::model::catalog::Catalog;
use crate::model::registry::{
    Assignment, ModelDefaults, Registry, ReloadReport, RouteError, RoutingHints, ServedModel,
    UnknownModel,
};
use crate::model::{RankError, Truncation};

/// Request limits that do not depend on the model.
#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
pub struct Limits {
    /// Most documents in one request (413 past it).
    pub max_documents: usize,
    /// Most tokens in a query (422 past it); 0 means half the model's window (a late
    /// model's own query window).
    pub max_query_tokens: usize,
    /// Most bytes in a request body (413 past it).
    pub max_body_bytes: usize,
    /// Deadline of one re-rank request (504 past it).
    pub request_timeout_ms: u64,
}

/// A re-rank request as every dialect sees it.
#[derive(Debug, Clone)]
pub struct RerankJob {
    pub model: Option<String>,
    pub query: String,
    pub documents: Arc<Vec<String>>,
    pub top_n: Option<usize>,
    pub raw_scores: bool,
    pub truncation: Truncation,
    /// Who is asking (experiment stickiness) and any forced variant.
    pub routing: RoutingHints,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RankedDocument {
    pub index: usize,
    pub score: f32,
}

/// What a request cost, returned with its results (`meta`) and as timing headers.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct RerankMeta {
    pub documents: usize,
    pub input_tokens: usize,
    pub input_characters: usize,
    pub documents_truncated: usize,
    pub cache_hits: usize,
    pub batches: usize,
    pub queue_ms: f64,
    pub tokenization_ms: f64,
    pub inference_ms: f64,
    pub total_ms: f64,
}

#[derive(Debug, Clone)]
pub struct RerankOutcome {
    pub model: String,
    pub model_version: String,
    /// Where the model ran (`cpu`, `cuda`, `tensorrt`).
    pub execution_provider: String,
    pub results: Vec<RankedDocument>,
    pub meta: RerankMeta,
    /// The experiment and variant, when an experiment routed the request.
    pub assignment: Option<Assignment>,
    /// Every document's raw score, by index (before `top_n`), for the shadow comparison.
    logits: Vec<f32>,
}

/// Why a request failed; the API layer maps each kind to exactly one HTTP status.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RerankError {
    #[error("{0}")]
    Validation(String),
    #[error("{0}")]
    TooLarge(String),
    #[error(transparent)]
    UnknownModel(#[from] UnknownModel),
    #[error("{message}")]
    Overloaded {
        message: String,
        retry_after_secs: u64,
    },
    #[error(
        "the request did not finish within its deadline of {0} ms; retry, or send fewer documents"
    )]
    Timeout(u64),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Inference(String),
}

impl RerankError {
    /// The `err` label of `te_request_failure` and the error body's `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            RerankError::Validation(_) => "validation",
            RerankError::TooLarge(_) => "too_large",
            RerankError::UnknownModel(_) => "model_not_found",
            RerankError::Overloaded { .. } => "overloaded",
            RerankError::Timeout(_) => "timeout",
            RerankError::Unavailable(_) => "unavailable",
            RerankError::Inference(_) => "inference",
        }
    }
}

impl From<RouteError> for RerankError {
    fn from(error: RouteError) -> Self {
        match error {
            RouteError::UnknownModel(unknown) => RerankError::UnknownModel(unknown),
            other => RerankError::Validation(other.to_string()),
        }
    }
}

impl From<RankError> for RerankError {
    fn from(error: RankError) -> Self {
        match error {
            RankError::Inference(message) => RerankError::Inference(message),
            other => RerankError::Validation(other.to_string()),
        }
    }
}

impl From<AdmissionError> for RerankError {
    fn from(error: AdmissionError) -> Self {
        match error {
            AdmissionError::RequestTooLarge { .. } => RerankError::TooLarge(error.to_string()),
            _ => RerankError::Overloaded {
                message: error.to_string(),
                retry_after_secs: 1,
            },
        }
    }
}

/// Where the registry comes from, so it can be read again on reload.
#[derive(Debug, Clone)]
pub enum ModelSource {
    /// `--models-file`: the models file.
    ModelsFile(PathBuf),
    /// `--model-dir`: one model folder.
    ModelDir(PathBuf),
    /// Built in code (benchmarks, tests): nothing to reload from.
    Fixed,
}

impl ModelSource {
    pub fn catalog(&self) -> anyhow::Result<Catalog> {
        match self {
            ModelSource::ModelsFile(path) => Catalog::load(path),
            ModelSource::ModelDir(dir) => Catalog::single(dir)
                .with_context(|| format!("cannot serve the model in {}", dir.display())),
            ModelSource::Fixed => {
                anyhow::bail!("this service was built in code; nothing to reload")
            }
        }
    }
}

/// What requests need besides the registry; cheap to clone into a background task.
#[derive(Clone)]
struct Core {
    cache: ScoreCache,
    metrics: Metrics,
    limits: Limits,
}

/// The serving core shared by every API dialect.
pub struct RerankService {
    registry: ArcSwap<Registry>,
    pub cache: ScoreCache,
    pub metrics: Metrics,
    pub limits: Limits,
    source: ModelSource,
    defaults: Option<ModelDefaults>,
    /// One reload at a time.
    reloading: tokio::sync::Mutex<()>,
    accepting: AtomicBool,
}

impl RerankService {
    pub fn new(
        registry: Registry,
        cache: ScoreCache,
        metrics: Metrics,
        limits: Limits,
    ) -> RerankService {
        RerankService {
            registry: ArcSwap::from_pointee(registry),
            cache,
            metrics,
            limits,
            source: ModelSource::Fixed,
            defaults: None,
            reloading: tokio::sync::Mutex::new(()),
            accepting: AtomicBool::new(true),
        }
    }

    /// A service that can reload its models from `source` with `defaults`.
    pub fn reloadable(mut self, source: ModelSource, defaults: ModelDefaults) -> RerankService {
        self.source = source;
        self.defaults = Some(defaults);
        self
    }

    /// The registry in force now.
    pub fn registry(&self) -> Arc<Registry> {
        self.registry.load_full()
    }

    /// Reads the models file (or model folder) again and swaps in a registry built from it:
    /// unchanged models are kept, changed and new ones loaded and warmed up beside the old
    /// ones. If anything fails to load or validate, nothing changes and the error says why.
    pub async fn reload(&self) -> anyhow::Result<ReloadReport> {
        let _one_at_a_time = self.reloading.lock().await;
        let defaults = self
            .defaults
            .context("this service was built in code; nothing to reload")?;
        let source = self.source.clone();
        let metrics = self.metrics.clone();
        let previous = self.registry();
        let (registry, report) = tokio::task::spawn_blocking(move || {
            let catalog = source.catalog()?;
            Registry::load(&catalog, &defaults, &metrics, Some(&previous))
        })
        .await
        .map_err(|e| anyhow::anyhow!("reload task failed: {e}"))??;
        self.registry.store(Arc::new(registry));
        self.metrics.reloads.with_label_values(&["ok"]).inc();
        Ok(report)
    }

    /// Counts a failed reload (the caller reports the error).
    pub fn record_failed_reload(&self) {
        self.metrics.reloads.with_label_values(&["failed"]).inc();
    }

    fn core(&self) -> Core {
        Core {
            cache: self.cache.clone(),
            metrics: self.metrics.clone(),
            limits: self.limits,
        }
    }

    /// Whether new requests are taken (false once shutdown has begun).
    pub fn is_accepting(&self) -> bool {
        self.accepting.load(Ordering::SeqCst)
    }

    pub fn stop_accepting(&self) {
        self.accepting.store(false, Ordering::SeqCst);
    }

    /// Counts a request the API layer refused before it reached [`Self::rerank`] (a body
    /// that is not valid JSON, a field of the wrong type, ...), so failure rates see it.
    pub fn record_refused(&self, kind: &str) {
        self.metrics.request_count.with_label_values(&[""]).inc();
        self.metrics
            .request_failure
            .with_label_values(&["", kind])
            .inc();
    }

    pub async fn rerank(&self, job: RerankJob) -> Result<RerankOutcome, RerankError> {
        let started = Instant::now();
        let registry = self.registry();
        let routed = match registry.route(job.model.as_deref(), &job.routing) {
            Ok(routed) => routed,
            Err(error) => {
                let error = RerankError::from(error);
                self.record_refused(error.kind());
                return Err(error);
            }
        };
        let model = routed.model;
        let name = model.name().to_string();
        self.metrics.request_count.with_label_values(&[&name]).inc();
        if let Some(assignment) = &routed.assignment {
            self.metrics
                .experiment_requests
                .with_label_values(&[
                    &assignment.experiment,
                    &assignment.variant,
                    assignment.by.as_str(),
                ])
                .inc();
        }
        let deadline = Duration::from_millis(self.limits.request_timeout_ms);
        let core = self.core();
        let run = async {
            validate(&job, &self.limits)?;
            if !self.is_accepting() {
                return Err(RerankError::Unavailable(
                    "the service is shutting down; retry on another instance".into(),
                ));
            }
            core.run(&model, &job, started).await
        };
        let mut outcome = match tokio::time::timeout(deadline, run).await {
            Ok(outcome) => outcome,
            Err(_) => Err(RerankError::Timeout(self.limits.request_timeout_ms)),
        };
        if let Ok(outcome) = &mut outcome {
            outcome.assignment = routed.assignment;
            if let Some((shadow, rate)) = registry.shadow_of(&name) {
                if rate > 0.0 && rand::random::<f64>() < rate {
                    let primary = outcome.logits.clone();
                    let job = job.clone();
                    tokio::spawn(core.compare_with_shadow(name.clone(), shadow, job, primary));
                }
            }
        }
        self.metrics
            .request_duration
            .with_label_values(&[&name])
            .observe(started.elapsed().as_secs_f64());
        match &outcome {
            Ok(_) => self
                .metrics
                .request_success
                .with_label_values(&[&name])
                .inc(),
            Err(error) => self
                .metrics
                .request_failure
                .with_label_values(&[&name, error.kind()])
                .inc(),
        }
        outcome
    }
}

impl Core {
    /// Scores `job`'s documents with `model` off the response path and records how far its
    /// ranking agrees with the primary's (`primary`: raw scores by index).
    async fn compare_with_shadow(
        self,
        primary_name: String,
        shadow: Arc<ServedModel>,
        job: RerankJob,
        primary: Vec<f32>,
    ) {
        let labels = [primary_name.as_str(), shadow.name()];
        let deadline = Duration::from_millis(self.limits.request_timeout_ms);
        let outcome = tokio::time::timeout(deadline, self.run(&shadow, &job, Instant::now())).await;
        let outcome = match outcome {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(error)) => {
                let kind = if matches!(error, RerankError::Overloaded { .. }) {
                    "skipped_overloaded"
                } else {
                    "failed"
                };
                self.metrics
                    .shadow_comparisons
                    .with_label_values(&[labels[0], labels[1], kind])
                    .inc();
                tracing::debug!(primary = labels[0], shadow = labels[1], %error, "shadow scoring did not finish");
                return;
            }
            Err(_) => {
                self.metrics
                    .shadow_comparisons
                    .with_label_values(&[labels[0], labels[1], "failed"])
                    .inc();
                return;
            }
        };
        let agreement = crate::agreement::compare(&primary, &outcome.logits);
        self.metrics
            .shadow_comparisons
            .with_label_values(&[labels[0], labels[1], "compared"])
            .inc();
        self.metrics
            .shadow_kendall_tau
            .with_label_values(&labels)
            .observe(agreement.kendall_tau);
        if agreement.top1_agrees {
            self.metrics
                .shadow_top1_agreements
                .with_label_values(&labels)
                .inc();
        }
    }

    async fn run(
        &self,
        model: &Arc<ServedModel>,
        job: &RerankJob,
        started: Instant,
    ) -> Result<RerankOutcome, RerankError> {
        let descriptor = model.descriptor.clone();
        let labels = [descriptor.name.as_str()];
        let max_query_tokens = match self.limits.max_query_tokens {
            0 => descriptor.default_max_query_tokens(),
            n => n,
        };
        // A query far longer in bytes than any allowed token count is refused before tokenizing.
        if job.query.len() > max_query_tokens.saturating_mul(64) {
            return Err(RerankError::Validation(format!(
                "`query` is {} bytes; the limit is {max_query_tokens} tokens: shorten the query",
                job.query.len()
            )));
        }
        let count = job.documents.len();
        self.metrics
            .documents
            .with_label_values(&labels)
            .observe(count as f64);

        // 2. The cache.
        let keys: Vec<u128> = if self.cache.enabled() {
            job.documents
                .iter()
                .map(|d| {
                    ScoreCache::key(
                        &descriptor.name,
                        &descriptor.fingerprint,
                        &job.query,
                        d,
                        &job.truncation,
                    )
                })
                .collect()
        } else {
            Vec::new()
        };
        let cached: Vec<Option<CachedScore>> = (0..count)
            .map(|i| keys.get(i).and_then(|&k| self.cache.get(k)))
            .collect();
        let misses: Vec<usize> = (0..count).filter(|&i| cached[i].is_none()).collect();
        let hits = count - misses.len();
        if self.cache.enabled() {
            self.metrics
                .cache_hits
                .with_label_values(&labels)
                .inc_by(hits as u64);
            self.metrics
                .cache_misses
                .with_label_values(&labels)
                .inc_by(misses.len() as u64);
        }

        // A full queue refuses at once, before paying for tokenization: every pair to score
        // is at least one token.
        model.admission.precheck(misses.len())?;

        // 3. Tokenization, off the async runtime.
        let tokenize_started = Instant::now();
        let pairs = if misses.is_empty() {
            Vec::new()
        } else {
            let ranker = model.ranker.clone();
            let query = job.query.clone();
            let documents = job.documents.clone();
            let truncation = job.truncation;
            let misses = misses.clone();
            tokio::task::spawn_blocking(move || {
                let query = ranker.prepare_query(&query, max_query_tokens)?;
                misses
                    .iter()
                    .map(|&i| ranker.prepare_pair(&query, &documents[i], i, &truncation))
                    .collect::<Result<Vec<_>, RankError>>()
            })
            .await
            .map_err(|e| RerankError::Inference(format!("tokenization task failed: {e}")))??
        };
        let tokenization = tokenize_started.elapsed();
        self.metrics
            .tokenization_duration
            .with_label_values(&labels)
            .observe(tokenization.as_secs_f64());

        let mut tokens = vec![0usize; count];
        let mut truncated = vec![false; count];
        for (i, c) in cached.iter().enumerate() {
            if let Some(c) = c {
                tokens[i] = c.tokens as usize;
                truncated[i] = c.truncated;
            }
        }
        for (&i, pair) in misses.iter().zip(&pairs) {
            tokens[i] = pair.len();
            truncated[i] = pair.truncated;
            self.metrics
                .input_length
                .with_label_values(&labels)
                .observe(pair.len() as f64);
        }

        // 4. Admission, charged per token of work to do.
        let needed: usize = pairs.iter().map(|p| p.len()).sum();
        let _permit = model.admission.try_admit(needed)?;
        let queued_gauge = self.metrics.queued_tokens.with_label_values(&labels);
        queued_gauge.set(model.admission.queued_tokens() as i64);

        // 5. Queue the pairs and wait for their scores.
        let mut logits: Vec<Option<f32>> = cached.iter().map(|c| c.map(|c| c.logit)).collect();
        let mut queue_time = Duration::ZERO;
        let mut inference_time = Duration::ZERO;
        let mut batch_ids = Vec::new();
        if !pairs.is_empty() {
            let (reply, mut outcomes) = mpsc::unbounded_channel();
            let now = Instant::now();
            let items = misses
                .iter()
                .zip(pairs)
                .map(|(&index, pair)| WorkItem {
                    pair,
                    index,
                    enqueued: now,
                    reply: reply.clone(),
                })
                .collect();
            drop(reply);
            model.batcher.submit(items).map_err(|closed| {
                RerankError::Unavailable(format!("{closed}; retry on another instance"))
            })?;
            let mut received = 0;
            let mut failure = None;
            while received < misses.len() {
                let Some(outcome) = outcomes.recv().await else {
                    return Err(RerankError::Inference(
                        "the batcher stopped before scoring this request".into(),
                    ));
                };
                received += 1;
                queue_time = queue_time.max(outcome.queue_time);
                if !batch_ids.contains(&outcome.batch_id) {
                    batch_ids.push(outcome.batch_id);
                    inference_time += outcome.inference_time;
                }
                match outcome.result {
                    Ok(logit) => logits[outcome.index] = Some(logit),
                    Err(error) => failure = Some(error),
                }
            }
            if let Some(error) = failure {
                return Err(error.into());
            }
        }
        queued_gauge.set(model.admission.queued_tokens() as i64);
        self.metrics
            .queue_duration
            .with_label_values(&labels)
            .observe(queue_time.as_secs_f64());
        self.metrics
            .inference_duration
            .with_label_values(&labels)
            .observe(inference_time.as_secs_f64());

        // 6. Cache, activation, order, cut.
        let mut results = Vec::with_capacity(count);
        let mut all_logits = Vec::with_capacity(count);
        for (index, logit) in logits.into_iter().enumerate() {
            let logit = logit
                .ok_or_else(|| RerankError::Inference(format!("no score for document {index}")))?;
            if let Some(&key) = keys.get(index) {
                if cached[index].is_none() {
                    let entry = CachedScore {
                        logit,
                        tokens: tokens[index] as u32,
                        truncated: truncated[index],
                    };
                    self.cache.insert(key, entry);
                }
            }
            all_logits.push(logit);
            let score = if job.raw_scores {
                logit
            } else {
                model.ranker.activate(logit)
            };
            results.push(RankedDocument { index, score });
        }
        sort_by_score(&mut results);
        if let Some(n) = job.top_n {
            results.truncate(n);
        }

        let query_chars = job.query.chars().count();
        let meta = RerankMeta {
            documents: count,
            input_tokens: tokens.iter().sum(),
            input_characters: job
                .documents
                .iter()
                .map(|d| query_chars + d.chars().count())
                .sum(),
            documents_truncated: truncated.iter().filter(|&&t| t).count(),
            cache_hits: hits,
            batches: batch_ids.len(),
            queue_ms: millis(queue_time),
            tokenization_ms: millis(tokenization),
            inference_ms: millis(inference_time),
            total_ms: millis(started.elapsed()),
        };
        Ok(RerankOutcome {
            model: descriptor.name,
            model_version: descriptor.version,
            execution_provider: descriptor.execution_provider,
            results,
            meta,
            assignment: None,
            logits: all_logits,
        })
    }
}

/// The checks that need no model: what a request must satisfy before any work is done.
pub fn validate(job: &RerankJob, limits: &Limits) -> Result<(), RerankError> {
    if job.query.trim().is_empty() {
        return Err(RerankError::Validation(
            "`query` is empty: send the text to rank the documents against".into(),
        ));
    }
    if job.documents.is_empty() {
        return Err(RerankError::Validation(
            "no documents: send at least one document to rank".into(),
        ));
    }
    if job.documents.len() > limits.max_documents {
        return Err(RerankError::TooLarge(format!(
            "{} documents sent; the most one request may carry is {}: split the request",
            job.documents.len(),
            limits.max_documents
        )));
    }
    if job.top_n == Some(0) {
        return Err(RerankError::Validation("`top_n` must be at least 1".into()));
    }
    if job.truncation.max_document_tokens == Some(0) {
        return Err(RerankError::Validation(
            "`max_tokens_per_doc` must be at least 1".into(),
        ));
    }
    Ok(())
}

fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// Highest score first; equal scores (and NaN, which a finite model never returns) by index.
pub fn sort_by_score(results: &mut [RankedDocument]) {
    results.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.index.cmp(&b.index)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_keep_document_order() {
        let mut r = vec![
            RankedDocument {
                index: 0,
                score: 0.5,
            },
            RankedDocument {
                index: 1,
                score: 0.9,
            },
            RankedDocument {
                index: 2,
                score: 0.5,
            },
        ];
        sort_by_score(&mut r);
        assert_eq!(r.iter().map(|d| d.index).collect::<Vec<_>>(), vec![1, 0, 2]);
    }
}
