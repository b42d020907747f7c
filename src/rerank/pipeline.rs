//! The four steps that turn a checked request into ranked documents on one model.
//!
//! 1. [`Pipeline::look_up`]: every document's score cache entry; one [`Candidate`] record
//!    per document carries everything the later steps learn about it (cache key, tokens,
//!    truncation, score).
//! 2. [`Pipeline::tokenize`]: the query once and the cache misses, off the async runtime; a
//!    document longer than the window becomes one pair per chunk when the request allows
//!    chunks (`src/model/tokenize.rs`), and scores as its best chunk.
//!    Before any of it, the request takes a slot in the model's admission (refused at once
//!    when the queue alone is expected to wait past the target) and holds an upper bound of
//!    the tokens its documents can become, so tokenizing is paid for before it is done; the
//!    work stops between documents once nobody waits for it (deadline passed, client gone).
//!    Each document is cut by bytes before it is tokenized (`src/model/tokenize.rs`), so a
//!    hostile 8 MiB document costs what a window's worth of text costs.
//! 3. [`Pipeline::admit_and_wait`]: admission of the exact tokens (by the wait they would
//!    see, 429 at once otherwise), one work item per pair into the model's batcher, and the
//!    wait for every score; each answered pair gives its tokens back at once.
//! 4. [`Pipeline::finish`]: fill the cache, apply the score activation, sort by score (ties
//!    by index), cut to `top_n`, and report what the request cost in [`RerankMeta`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::{Limits, RerankError, RerankJob};
use crate::batch::{Entry, WorkItem};
use crate::cache::{CachedScore, ScoreCache};
use crate::metrics::Metrics;
use crate::model::{PreparedPair, RankError, Truncation};
use crate::serving::registry::{Assignment, ServedModel};

/// Room for the special tokens (or a decoder's prompt) around a pair, in the upper bound of
/// a pair's tokens that is held before tokenizing.
const PAIR_OVERHEAD_BOUND: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RankedDocument {
    pub index: usize,
    pub score: f32,
}

/// What a request cost, returned with its results (`meta`) and as timing headers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RerankMeta {
    pub documents: usize,
    /// Tokens of all (query, document) pairs, special tokens included, cached ones too.
    pub input_tokens: usize,
    pub input_characters: usize,
    /// Documents cut to fit the window or `max_tokens_per_doc`.
    pub documents_truncated: usize,
    /// Pairs answered from the score cache.
    pub cache_hits: usize,
    /// Batches the request's pairs ran in.
    pub batches: usize,
    /// Longest wait of a pair for its batch.
    pub queue_ms: f64,
    pub tokenization_ms: f64,
    /// Inference time of the batches the pairs ran in.
    pub inference_ms: f64,
    pub total_ms: f64,
}

/// Per scored pair, on average: what TEI's timing headers report.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PairMeans {
    pub queue_ms: f64,
    pub tokenization_ms: f64,
    pub inference_ms: f64,
}

#[derive(Debug, Clone)]
pub struct RerankOutcome {
    pub model: String,
    pub model_version: String,
    /// Where the model ran (`cpu`, `cuda`, `tensorrt`).
    pub execution_provider: String,
    pub results: Vec<RankedDocument>,
    pub meta: RerankMeta,
    pub pair_means: PairMeans,
    /// The experiment and variant, when an experiment routed the request.
    pub assignment: Option<Assignment>,
    /// Every document's raw score, by index (before `top_n`), for the shadow comparison.
    pub(super) logits: Vec<f32>,
}

/// One document of the request, as the steps learn about it.
#[derive(Debug, Clone, Default)]
struct Candidate {
    key: Option<u128>,
    cached: bool,
    /// Its pairs' tokens, every chunk's.
    tokens: usize,
    truncated: bool,
    /// Its best chunk's (its only pair's) score.
    logit: Option<f32>,
}

/// The pairs a request's cache misses became: one per chunk, each with the document it is
/// part of.
type Pairs = Vec<(usize, PreparedPair)>;

/// What waiting for the scores measured.
#[derive(Debug, Default)]
struct Waited {
    queue_max: Duration,
    queue_sum: Duration,
    inference_sum_per_pair: Duration,
    inference_of_batches: Duration,
    batches: usize,
    pairs: usize,
}

/// What requests need besides the registry; cheap to clone into a background task.
#[derive(Clone)]
pub(super) struct Pipeline {
    pub cache: ScoreCache,
    pub metrics: Metrics,
    pub limits: Limits,
}

/// Tells the tokenizing thread to stop once the request's future is gone.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl Pipeline {
    /// Scores `job` on `model`: the four steps in order, in a `rerank` span (exported with
    /// the request's when `--otlp-endpoint` is set) with `tokenize` and `score` inside.
    #[tracing::instrument(name = "rerank", skip_all, fields(model = %model.name(),
        documents = job.documents().len(), cached = tracing::field::Empty))]
    pub async fn run(
        &self,
        model: &Arc<ServedModel>,
        job: &RerankJob,
        started: Instant,
    ) -> Result<RerankOutcome, RerankError> {
        let name = model.name();
        let max_query_tokens = match self.limits.max_query_tokens {
            0 => model.descriptor.default_max_query_tokens(),
            n => n,
        };
        // A query far longer in bytes than any allowed token count is refused before tokenizing.
        if job.query().len() > max_query_tokens.saturating_mul(64) {
            return Err(RerankError::Validation(format!(
                "`query` is {} bytes; the limit is {max_query_tokens} tokens: shorten the query",
                job.query().len()
            )));
        }
        self.metrics
            .documents
            .with_label_values(&[name])
            .observe(job.documents().len() as f64);
        let truncation = job.truncation(&self.limits);

        let mut candidates = self.look_up(model, job, &truncation);
        let misses = candidates.iter().filter(|c| !c.cached).count();
        tracing::Span::current().record("cached", candidates.len() - misses);
        if misses == 0 {
            // Answered from the cache: no work to admit, nothing to wait behind.
            return self.finish(
                model,
                job,
                candidates,
                Duration::ZERO,
                Waited::default(),
                started,
            );
        }
        // Every pair to score is at least one token: a queue that cannot take even that
        // refuses now, before paying for tokenization.
        let mut entry = model.admission.enter(misses)?;
        self.record_admission(model);
        let tokenize_started = Instant::now();
        let pairs = self
            .tokenize(
                model,
                job,
                &truncation,
                max_query_tokens,
                &mut candidates,
                &mut entry,
            )
            .await?;
        let tokenization = tokenize_started.elapsed();
        self.metrics
            .tokenization_duration
            .with_label_values(&[name])
            .observe(tokenization.as_secs_f64());
        let waited = self
            .admit_and_wait(model, pairs, &mut candidates, entry)
            .await?;
        self.finish(model, job, candidates, tokenization, waited, started)
    }

    /// Step 1: a record per document, with its cached score when the cache has one.
    fn look_up(
        &self,
        model: &ServedModel,
        job: &RerankJob,
        truncation: &Truncation,
    ) -> Vec<Candidate> {
        let d = &model.descriptor;
        let mut candidates: Vec<Candidate> = job
            .documents()
            .iter()
            .map(|document| {
                if !self.cache.enabled() {
                    return Candidate::default();
                }
                let key =
                    ScoreCache::key(&d.name, &d.fingerprint, job.query(), document, truncation);
                let mut candidate = Candidate {
                    key: Some(key),
                    ..Candidate::default()
                };
                if let Some(hit) = self.cache.get(key) {
                    candidate.cached = true;
                    candidate.tokens = hit.tokens as usize;
                    candidate.truncated = hit.truncated;
                    candidate.logit = Some(hit.logit);
                }
                candidate
            })
            .collect();
        if self.cache.enabled() {
            let hits = candidates.iter().filter(|c| c.cached).count();
            let labels = [d.name.as_str()];
            self.metrics
                .cache_hits
                .with_label_values(&labels)
                .inc_by(hits as u64);
            self.metrics
                .cache_misses
                .with_label_values(&labels)
                .inc_by((candidates.len() - hits) as u64);
        }
        candidates.shrink_to_fit();
        candidates
    }

    /// Step 2: the query and every cache miss tokenized, paid for before it is done.
    #[tracing::instrument(name = "tokenize", skip_all)]
    async fn tokenize(
        &self,
        model: &ServedModel,
        job: &RerankJob,
        truncation: &Truncation,
        max_query_tokens: usize,
        candidates: &mut [Candidate],
        entry: &mut Entry,
    ) -> Result<Pairs, RerankError> {
        let misses: Vec<usize> = (0..candidates.len())
            .filter(|&i| !candidates[i].cached)
            .collect();
        if misses.is_empty() {
            return Ok(Vec::new());
        }
        // A pair is never longer than the window, nor (much) longer in tokens than in bytes;
        // a document's chunks read each of its tokens at most twice (they overlap by a quarter
        // of the window at most).
        let window = model.descriptor.max_sequence_length;
        let chunks = truncation.chunks();
        let query_bytes = job.query().len();
        let documents = job.documents().clone();
        let bound: usize = misses
            .iter()
            .map(|&i| {
                let pairs = chunks.saturating_mul(query_bytes + PAIR_OVERHEAD_BOUND);
                let overlap = (chunks - 1).saturating_mul(window / 4);
                let read = documents[i].len().saturating_add(overlap);
                chunks
                    .saturating_mul(window)
                    .min(pairs.saturating_add(read))
            })
            .fold(0, usize::saturating_add);
        entry.hold(bound)?;

        let cancelled = Arc::new(AtomicBool::new(false));
        let _cancel = CancelOnDrop(cancelled.clone());
        let ranker = model.ranker.clone();
        let query = job.query().to_string();
        let truncation = *truncation;
        let to_tokenize = misses.clone();
        let pairs = tokio::task::spawn_blocking(move || {
            let query = ranker.prepare_query(&query, max_query_tokens)?;
            let mut pairs = Vec::with_capacity(to_tokenize.len());
            for i in to_tokenize {
                if cancelled.load(Ordering::Relaxed) {
                    return Err(RankError::Tokenization("the request went away".into()));
                }
                let chunks = ranker.prepare_chunks(&query, &documents[i], i, &truncation)?;
                pairs.extend(chunks.into_iter().map(|pair| (i, pair)));
            }
            Ok::<_, RankError>(pairs)
        })
        .await
        .map_err(|e| RerankError::inference(format!("tokenization task failed: {e}")))??;

        let input_length = self.metrics.input_length.with_label_values(&[model.name()]);
        for (i, pair) in &pairs {
            candidates[*i].tokens += pair.len();
            candidates[*i].truncated = pair.truncated;
            input_length.observe(pair.len() as f64);
        }
        Ok(pairs)
    }

    /// Step 3: admission of the exact tokens, then one work item per pair and every score.
    #[tracing::instrument(name = "score", skip_all, fields(pairs = pairs.len(),
        tokens = tracing::field::Empty, batches = tracing::field::Empty))]
    async fn admit_and_wait(
        &self,
        model: &ServedModel,
        pairs: Pairs,
        candidates: &mut [Candidate],
        mut entry: Entry,
    ) -> Result<Waited, RerankError> {
        let needed: usize = pairs.iter().map(|(_, p)| p.len()).sum();
        tracing::Span::current().record("tokens", needed);
        let admitted = entry.admit(needed, pairs.len());
        self.record_admission(model);
        admitted?;
        let mut waited = Waited::default();
        if pairs.is_empty() {
            return Ok(waited);
        }
        let (reply, mut outcomes) = mpsc::unbounded_channel();
        let now = Instant::now();
        let expected = pairs.len();
        // A work item's index is its pair's place here: which document, and its tokens.
        let owners: Vec<(usize, usize)> = pairs.iter().map(|(i, p)| (*i, p.len())).collect();
        let items = pairs
            .into_iter()
            .enumerate()
            .map(|(index, (_, pair))| WorkItem {
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
        let mut batch_ids = Vec::new();
        let mut failure = None;
        while waited.pairs < expected {
            let Some(outcome) = outcomes.recv().await else {
                return Err(RerankError::inference(
                    "the batcher stopped before scoring this request",
                ));
            };
            waited.pairs += 1;
            let (document, tokens) = owners[outcome.index];
            entry.answered(tokens);
            waited.queue_max = waited.queue_max.max(outcome.queue_time);
            waited.queue_sum += outcome.queue_time;
            waited.inference_sum_per_pair += outcome.inference_time;
            if !batch_ids.contains(&outcome.batch_id) {
                batch_ids.push(outcome.batch_id);
                waited.inference_of_batches += outcome.inference_time;
            }
            match outcome.result {
                Ok(logit) => {
                    let best = &mut candidates[document].logit;
                    *best = Some(best.map_or(logit, |b| b.max(logit)));
                }
                Err(error) => failure = Some(error),
            }
        }
        drop(entry);
        self.record_admission(model);
        waited.batches = batch_ids.len();
        tracing::Span::current().record("batches", waited.batches);
        let labels = [model.name()];
        self.metrics
            .queue_duration
            .with_label_values(&labels)
            .observe(waited.queue_max.as_secs_f64());
        self.metrics
            .inference_duration
            .with_label_values(&labels)
            .observe(waited.inference_of_batches.as_secs_f64());
        match failure {
            Some(error) => Err(error.into()),
            None => Ok(waited),
        }
    }

    /// Step 4: cache, activation, order, cut, cost.
    fn finish(
        &self,
        model: &ServedModel,
        job: &RerankJob,
        candidates: Vec<Candidate>,
        tokenization: Duration,
        waited: Waited,
        started: Instant,
    ) -> Result<RerankOutcome, RerankError> {
        let mut results = Vec::with_capacity(candidates.len());
        let mut logits = Vec::with_capacity(candidates.len());
        for (index, candidate) in candidates.iter().enumerate() {
            let logit = candidate
                .logit
                .ok_or_else(|| RerankError::inference(format!("no score for document {index}")))?;
            if let (Some(key), false) = (candidate.key, candidate.cached) {
                self.cache.insert(
                    key,
                    CachedScore {
                        logit,
                        tokens: candidate.tokens as u32,
                        truncated: candidate.truncated,
                    },
                );
            }
            logits.push(logit);
            let score = if job.raw_scores() {
                logit
            } else {
                model.ranker.activate(logit)
            };
            results.push(RankedDocument { index, score });
        }
        sort_by_score(&mut results);
        if let Some(n) = job.top_n() {
            results.truncate(n);
        }

        let query_chars = job.query().chars().count();
        let scored = waited.pairs.max(1) as f64;
        let misses = candidates.iter().filter(|c| !c.cached).count().max(1) as f64;
        let meta = RerankMeta {
            documents: candidates.len(),
            input_tokens: candidates.iter().map(|c| c.tokens).sum(),
            input_characters: job
                .documents()
                .iter()
                .map(|d| query_chars + d.chars().count())
                .sum(),
            documents_truncated: candidates.iter().filter(|c| c.truncated).count(),
            cache_hits: candidates.iter().filter(|c| c.cached).count(),
            batches: waited.batches,
            queue_ms: millis(waited.queue_max),
            tokenization_ms: millis(tokenization),
            inference_ms: millis(waited.inference_of_batches),
            total_ms: millis(started.elapsed()),
        };
        let d = &model.descriptor;
        Ok(RerankOutcome {
            model: d.name.clone(),
            model_version: d.version.clone(),
            execution_provider: d.execution_provider.clone(),
            results,
            meta,
            pair_means: PairMeans {
                queue_ms: millis(waited.queue_sum) / scored,
                tokenization_ms: millis(tokenization) / misses,
                inference_ms: millis(waited.inference_sum_per_pair) / scored,
            },
            assignment: None,
            logits,
        })
    }

    /// Admission's gauges for `model`, as they stand now.
    pub fn record_admission(&self, model: &ServedModel) {
        let labels = [model.name()];
        let admission = &model.admission;
        let m = &self.metrics;
        m.queued_tokens
            .with_label_values(&labels)
            .set(admission.queued_tokens() as i64);
        m.in_flight_requests
            .with_label_values(&labels)
            .set(admission.in_flight() as i64);
        if let Some(wait) = admission.expected_wait() {
            m.expected_queue_wait_seconds
                .with_label_values(&labels)
                .set(wait.as_secs_f64());
        }
        if let Some(rate) = admission.throughput() {
            m.throughput_tokens_per_second
                .with_label_values(&labels)
                .set(rate);
        }
        m.wait_estimate_correction
            .with_label_values(&labels)
            .set(admission.correction());
    }
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
