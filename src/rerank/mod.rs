//! The re-rank operation, independent of the wire dialect that asked for it.
//!
//! - [`request`]: the checked request ([`RerankJob`]) every dialect converts into, once.
//! - [`pipeline`]: the four steps on one model: cache, tokenize, admit and wait, finish.
//! - [`shadow`]: scoring a sample again with a shadow model, off the response path.
//! - [`error`]: why a request failed ([`RerankError`]), one kind per status.
//!
//! [`RerankService`] is what the API layers call: it routes the job through the registry in
//! force (a model by name or alias, or an experiment's variant; unknown: 404), checks the
//! instance's limits, runs the pipeline under the request's deadline (504 past it; giving up
//! drops the request's queued pairs and stops its tokenization), counts the outcome, and may
//! hand the request to the model's shadow. The registry is swapped whole on reload
//! ([`crate::serving::reload`]); a request keeps the model it was routed to until it finishes.

pub mod error;
pub mod pipeline;
pub mod request;
mod shadow;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cache::ScoreCache;
use crate::metrics::Metrics;
use crate::serving::registry::{Registry, ReloadReport};
use crate::serving::reload::Models;

pub use error::RerankError;
pub use pipeline::{sort_by_score, PairMeans, RankedDocument, RerankMeta, RerankOutcome};
pub use request::{JobSpec, Limits, RerankJob};

use pipeline::Pipeline;

/// The `method` label of `te_request_count` / `te_request_success`: TEI counts a re-rank as
/// a `batch` (of texts), and TEI's dashboards filter on it.
const METHOD: &str = "batch";

/// The serving core shared by every API dialect.
pub struct RerankService {
    models: Models,
    pub cache: ScoreCache,
    pub metrics: Metrics,
    pub limits: Limits,
    /// True while new requests are taken; false once draining has begun.
    accepting: tokio::sync::watch::Sender<bool>,
}

impl RerankService {
    pub fn new(
        models: Models,
        cache: ScoreCache,
        metrics: Metrics,
        limits: Limits,
    ) -> RerankService {
        RerankService {
            models,
            cache,
            metrics,
            limits,
            accepting: tokio::sync::watch::Sender::new(true),
        }
    }

    /// The registry in force now.
    pub fn registry(&self) -> Arc<Registry> {
        self.models.current()
    }

    /// Reads the models again and swaps them in (see [`Models::reload`]); counted either way.
    pub async fn reload(&self) -> anyhow::Result<ReloadReport> {
        self.models.reload().await
    }

    fn pipeline(&self) -> Pipeline {
        Pipeline {
            cache: self.cache.clone(),
            metrics: self.metrics.clone(),
            limits: self.limits,
        }
    }

    /// Whether new requests are taken (false once shutdown has begun).
    pub fn is_accepting(&self) -> bool {
        *self.accepting.borrow()
    }

    /// Begins draining: new requests are refused (503 / UNAVAILABLE), `/ready` and gRPC
    /// health say so, requests already taken finish.
    pub fn stop_accepting(&self) {
        self.accepting.send_replace(false);
    }

    /// Resolves once draining has begun.
    pub async fn draining(&self) {
        let mut accepting = self.accepting.subscribe();
        let _ = accepting.wait_for(|accepting| !accepting).await;
    }

    /// Counts a request the API layer refused before it reached [`Self::rerank`] (a body
    /// that is not valid JSON, a field of the wrong type, ...), so failure rates see it.
    pub fn record_refused(&self, kind: &str) {
        self.metrics
            .request_count
            .with_label_values(&["", METHOD])
            .inc();
        self.metrics
            .request_failure
            .with_label_values(&["", kind])
            .inc();
    }

    pub async fn rerank(&self, job: RerankJob) -> Result<RerankOutcome, RerankError> {
        let started = Instant::now();
        let registry = self.registry();
        let routed = match registry.route(job.model(), job.routing()) {
            Ok(routed) => routed,
            Err(error) => {
                let error = RerankError::from(error);
                self.record_refused(error.kind());
                return Err(error);
            }
        };
        let model = routed.model;
        let name = model.name().to_string();
        self.metrics
            .request_count
            .with_label_values(&[&name, METHOD])
            .inc();
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
        let pipeline = self.pipeline();
        let run = async {
            self.check_limits(&job)?;
            pipeline.run(&model, &job, started).await
        };
        let mut outcome = match tokio::time::timeout(deadline, run).await {
            Ok(outcome) => outcome,
            Err(_) => Err(RerankError::Timeout(self.limits.request_timeout_ms)),
        };
        pipeline.record_admission(&model);
        if let Ok(outcome) = &mut outcome {
            outcome.assignment = routed.assignment;
            if let Some((shadow, rate)) = registry.shadow_of(&name) {
                if rate > 0.0 && rand::random::<f64>() < rate {
                    let primary = outcome.logits.clone();
                    let job = job.clone();
                    tokio::spawn(pipeline.compare_with_shadow(name.clone(), shadow, job, primary));
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
                .with_label_values(&[&name, METHOD])
                .inc(),
            Err(error) => self
                .metrics
                .request_failure
                .with_label_values(&[&name, error.kind()])
                .inc(),
        }
        outcome
    }

    /// What the instance allows, checked before any work: shutdown, documents per request.
    fn check_limits(&self, job: &RerankJob) -> Result<(), RerankError> {
        if !self.is_accepting() {
            return Err(RerankError::Unavailable(
                "the service is shutting down; retry on another instance".into(),
            ));
        }
        let count = job.documents().len();
        if count > self.limits.max_documents {
            return Err(RerankError::TooLarge(too_many_documents(
                &count.to_string(),
                self.limits.max_documents,
            )));
        }
        Ok(())
    }
}

/// The message for a request over `--max-documents` (`sent`: the count, or "more than N"
/// when parsing stopped counting).
pub fn too_many_documents(sent: &str, limit: usize) -> String {
    format!("{sent} documents sent; the most one request may carry is {limit}: split the request")
}
