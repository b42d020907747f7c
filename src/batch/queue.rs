//! The cross-request batcher: admitted (query, document) work items in, scored batches out.
//!
//! Every pair of every request is its own [`WorkItem`]. Items wait in one queue; each
//! inference thread (one per ONNX Runtime session) takes the next batch when it is free, so
//! a batch is assembled from everything pending at the last possible moment while the other
//! sessions are still running theirs. Assembly, under the queue's mutex and in microseconds:
//! 1. drop items whose request is gone (client disconnected, deadline passed): nobody waits
//!    for their scores;
//! 2. the oldest item always goes in, so nothing starves;
//! 3. the rest are taken from the oldest [`LOOKAHEAD`] batches' worth of items, in order of how
//!    close their length is to the oldest one's (ties by age), while the padded size (longest
//!    x count) stays within `max_batch_tokens`, the padding within `max_batch_padding` of it
//!    (on CPU a tenth by default: there a pair costs its padded tokens whatever the batch
//!    size, so padding is pure loss), and the count within `max_batch_size`, or within
//!    an even share of what is pending when other sessions are idle too
//!    ([`BatcherConfig::shared`]): a request shorter than a full batch per idle session is
//!    scored on all of them at once instead of on one while the others wait. Grouping
//!    by length is what cuts padding, and padding is most of the gap between a naive batcher
//!    and the hardware (see the README); keeping the choice among the oldest items keeps
//!    requests served in the order they came, which is what admission's expected wait (queued
//!    work over throughput) assumes. Grouping over the whole queue let newer requests' items
//!    take older ones' places, so under overload every request finished late at once.
//!
//! Each batch that succeeds reports its real tokens and inference time to the model's
//! [`Throughput`], the rate admission divides the queue by. One full batch of half-window
//! pairs is scored at start ([`Batcher::start`]) so the rate is known before the first
//! request: a burst at start-up is admitted by its expected wait like any other.
//!
//! A batch that fails (an ONNX Runtime error, even a panic) fails only its own items; the
//! thread carries on with the next batch. On shutdown the queue stops taking new items, the
//! threads drain what is there, then exit.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::throughput::Throughput;
use crate::metrics::ModelMetrics;
use crate::model::graph::Provider;
use crate::model::{PreparedPair, RankError, Ranker, Truncation};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatcherConfig {
    /// Most tokens in one batch, padding included.
    pub max_batch_tokens: usize,
    /// Most pairs in one batch.
    pub max_batch_size: usize,
    /// The most of a batch's padded tokens that may be padding, from 0 to 1: the oldest item
    /// always goes in, the others only while the batch stays within it. None: the default for
    /// where the model runs ([`default_padding`]), settled when it is served; [`select_batch`]
    /// reads None as no limit.
    pub max_batch_padding: Option<f64>,
}

/// The padding a batch may carry on CPU by default. There a pair costs the same alone as in
/// a batch of 16 sorted by length (rra-bert-m, one thread: 0.98-0.99x) and the cost follows
/// the padded tokens, so padding is all loss: the loadgen mix's 10-document requests batched
/// whole (27% padding) cost 1.29x a pair. A little is allowed so a request's documents of
/// nearly one length still share their query's tower (benches/README.md, "Batches that carry
/// little padding"; `benches/padding.py`).
pub const CPU_PADDING: f64 = 0.1;

/// The padding a model's batches may carry where the `provider` it runs on (`cpu`, `cuda`,
/// `tensorrt`) says: [`CPU_PADDING`] on CPU; none set on a GPU, where a batch's cost is
/// mostly per batch, not per token, until the GPU is full.
pub fn default_padding(provider: &str) -> Option<f64> {
    (provider == Provider::Cpu.as_str()).then_some(CPU_PADDING)
}

/// Why `padding` cannot be a batch's padding limit, if it cannot.
pub fn check_padding(padding: f64) -> Result<(), String> {
    if padding.is_finite() && (0.0..=1.0).contains(&padding) {
        Ok(())
    } else {
        Err(format!(
            "must be a share of the batch from 0 to 1 (0.1: a tenth may be padding), not {padding}"
        ))
    }
}

impl BatcherConfig {
    /// The limits of the batch one of `idle` idle sessions (itself included) takes from
    /// `pending` items: at most an even share of them (rounded up), so the other idle sessions
    /// start on the rest at once. Under load (`pending` at least a full batch per idle session,
    /// or one idle session) the limits are unchanged.
    pub fn shared(self, pending: usize, idle: usize) -> BatcherConfig {
        if idle <= 1 {
            return self;
        }
        let share = pending.div_ceil(idle).max(1);
        BatcherConfig {
            max_batch_size: self.max_batch_size.min(share),
            ..self
        }
    }
}

/// One (query, document) pair waiting for its score.
#[derive(Debug)]
pub struct WorkItem {
    pub pair: PreparedPair,
    /// The pair's position in its request (which knows the document and chunk it is).
    pub index: usize,
    pub enqueued: Instant,
    pub reply: mpsc::UnboundedSender<ItemOutcome>,
}

/// A scored (or failed) work item, sent back to its request.
#[derive(Debug)]
pub struct ItemOutcome {
    pub index: usize,
    /// The raw score (logit).
    pub result: Result<f32, RankError>,
    pub queue_time: Duration,
    pub batch_id: u64,
    pub inference_time: Duration,
}

#[derive(Debug, thiserror::Error)]
#[error("the service is shutting down and takes no new work")]
pub struct Closed;

struct State {
    items: VecDeque<WorkItem>,
    closed: bool,
    /// Inference threads waiting for work (idle).
    waiting: usize,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    config: BatcherConfig,
    ranker: Arc<dyn Ranker>,
    metrics: ModelMetrics,
    next_batch_id: AtomicU64,
    throughput: Arc<Throughput>,
}

/// The queue and its inference threads for one model.
pub struct Batcher {
    shared: Arc<Shared>,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

impl Batcher {
    /// Starts one inference thread per session of `ranker`.
    pub fn start(ranker: Arc<dyn Ranker>, config: BatcherConfig, metrics: ModelMetrics) -> Batcher {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                items: VecDeque::new(),
                closed: false,
                waiting: 0,
            }),
            wake: Condvar::new(),
            config,
            ranker: ranker.clone(),
            metrics,
            next_batch_id: AtomicU64::new(1),
            throughput: Arc::new(Throughput::new(ranker.sessions())),
        });
        shared.calibrate();
        let workers = (0..ranker.sessions())
            .map(|session| {
                let shared = shared.clone();
                std::thread::Builder::new()
                    .name(format!("infer-{}-{session}", ranker.descriptor().name))
                    .spawn(move || shared.run_worker(session))
                    .expect("spawning an inference thread")
            })
            .collect();
        Batcher {
            shared,
            workers: Mutex::new(workers),
        }
    }

    /// Queues a request's items. Admission has already bounded how many there can be.
    pub fn submit(&self, items: Vec<WorkItem>) -> Result<(), Closed> {
        let mut state = self.shared.lock();
        if state.closed {
            return Err(Closed);
        }
        state.items.extend(items);
        self.shared.metrics.queue_size.set(state.items.len() as i64);
        drop(state);
        self.shared.wake.notify_all();
        Ok(())
    }

    pub fn config(&self) -> BatcherConfig {
        self.shared.config
    }

    /// The rate this batcher's batches are measured to run at.
    pub fn throughput(&self) -> Arc<Throughput> {
        self.shared.throughput.clone()
    }

    /// Items waiting for a batch.
    pub fn queue_len(&self) -> usize {
        self.shared.lock().items.len()
    }

    /// Stops taking items, lets the threads finish what is queued, and waits for them.
    pub fn shutdown(&self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_all();
        let workers = std::mem::take(&mut *self.workers.lock().unwrap_or_else(|p| p.into_inner()));
        for worker in workers {
            let _ = worker.join();
        }
    }
}

impl Drop for Batcher {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Nothing panics while holding this lock, but never let one poisoning stop the service.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Scores one full batch of half-window pairs on session 0 and records its rate, so
    /// admission knows the model's throughput before the first request. A model that cannot
    /// score it (it would have failed its warm-up) is left unmeasured.
    fn calibrate(&self) {
        let ranker = &self.ranker;
        let half_window = ranker.descriptor().max_sequence_length / 2;
        let pairs = ranker
            .prepare_query("how fast does this model score a batch", usize::MAX)
            .and_then(|query| {
                let document = "calibration ".repeat(half_window);
                let mut pairs = Vec::new();
                while pairs.len() < self.config.max_batch_size {
                    let truncation = Truncation {
                        max_document_tokens: Some(half_window.max(1)),
                        ..Truncation::default()
                    };
                    let pair = ranker.prepare_pair(&query, &document, pairs.len(), &truncation)?;
                    if pair.len() * (pairs.len() + 1) > self.config.max_batch_tokens
                        && !pairs.is_empty()
                    {
                        break;
                    }
                    pairs.push(pair);
                }
                Ok(pairs)
            });
        let Ok(pairs) = pairs else { return };
        let batch: Vec<&PreparedPair> = pairs.iter().collect();
        let started = Instant::now();
        if ranker.score(0, &batch).is_ok() {
            let tokens = batch.iter().map(|p| p.len()).sum();
            self.throughput.record(tokens, started.elapsed());
        }
    }

    fn run_worker(&self, session: usize) {
        while let Some(batch) = self.next_batch() {
            self.run_batch(session, batch);
        }
    }

    /// Blocks until there is work (returns it) or the queue is closed and empty (None).
    fn next_batch(&self) -> Option<Vec<WorkItem>> {
        let mut state = self.lock();
        loop {
            let before = state.items.len();
            state.items.retain(|item| !item.reply.is_closed());
            let dropped = before - state.items.len();
            if dropped > 0 {
                self.metrics.items_dropped.inc_by(dropped as u64);
            }
            if !state.items.is_empty() {
                break;
            }
            if state.closed {
                return None;
            }
            self.metrics.queue_size.set(0);
            state.waiting += 1;
            state = self.wake.wait(state).unwrap_or_else(|p| p.into_inner());
            state.waiting -= 1;
        }
        let lengths: Vec<usize> = state.items.iter().map(|item| item.pair.len()).collect();
        // This thread and the ones still waiting: each takes a share of what is pending.
        let config = self.config.shared(lengths.len(), 1 + state.waiting);
        let chosen = select_batch(&lengths, config);
        let mut batch = Vec::with_capacity(chosen.len());
        let mut keep = VecDeque::with_capacity(state.items.len() - chosen.len());
        let mut take = vec![false; state.items.len()];
        for &i in &chosen {
            take[i] = true;
        }
        for (i, item) in state.items.drain(..).enumerate() {
            if take[i] {
                batch.push(item);
            } else {
                keep.push_back(item);
            }
        }
        state.items = keep;
        self.metrics.queue_size.set(state.items.len() as i64);
        let more = !state.items.is_empty();
        drop(state);
        if more {
            // Another idle thread can start on the rest right away.
            self.wake.notify_one();
        }
        Some(batch)
    }

    fn run_batch(&self, session: usize, batch: Vec<WorkItem>) {
        let started = Instant::now();
        let batch_id = self.next_batch_id.fetch_add(1, Ordering::Relaxed);
        let pairs: Vec<&PreparedPair> = batch.iter().map(|item| &item.pair).collect();
        let width = pairs.iter().map(|p| p.len()).max().unwrap_or(0);
        let real: usize = pairs.iter().map(|p| p.len()).sum();
        let padded = width * pairs.len();
        let outcome = catch_unwind(AssertUnwindSafe(|| self.ranker.score(session, &pairs)))
            .unwrap_or_else(|panic| {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "panic".into());
                Err(RankError::Inference(format!(
                    "the model panicked: {message}"
                )))
            })
            .and_then(|scores| {
                if scores.len() == pairs.len() {
                    Ok(scores)
                } else {
                    Err(RankError::Inference(format!(
                        "the model returned {} scores for a batch of {}",
                        scores.len(),
                        pairs.len()
                    )))
                }
            });
        let inference_time = started.elapsed();

        let m = &self.metrics;
        m.batch_size.observe(pairs.len() as f64);
        m.batch_tokens.observe(padded as f64);
        m.batch_inference_duration
            .observe(inference_time.as_secs_f64());
        if padded > 0 {
            m.padding_ratio.observe(1.0 - real as f64 / padded as f64);
        }
        if outcome.is_ok() {
            self.throughput.record(real, inference_time);
        }
        if let Err(error) = &outcome {
            m.batch_failures.inc();
            tracing::error!(batch_id, size = pairs.len(), %error, "batch failed");
        }

        for (position, item) in batch.into_iter().enumerate() {
            let result = match &outcome {
                Ok(scores) => Ok(scores[position]),
                Err(error) => Err(error.clone()),
            };
            let reply = ItemOutcome {
                index: item.index,
                result,
                queue_time: started.saturating_duration_since(item.enqueued),
                batch_id,
                inference_time,
            };
            // A request that went away in the meantime simply does not read it.
            let _ = item.reply.send(reply);
        }
    }
}

/// How many batches' worth of the oldest items a batch is chosen from.
pub const LOOKAHEAD: usize = 4;

/// Picks the items of the next batch: indices into `lengths`, the token lengths of the
/// pending items, oldest first. Empty only when `lengths` is.
pub fn select_batch(lengths: &[usize], config: BatcherConfig) -> Vec<usize> {
    let Some(&anchor) = lengths.first() else {
        return Vec::new();
    };
    let window = lengths
        .len()
        .min(config.max_batch_size.saturating_mul(LOOKAHEAD).max(1));
    let mut order: Vec<usize> = (1..window).collect();
    order.sort_by_key(|&i| (lengths[i].abs_diff(anchor), i));
    let padding = config.max_batch_padding.unwrap_or(1.0);
    let mut chosen = vec![0];
    let mut width = anchor;
    let mut real = anchor;
    for i in order {
        if chosen.len() >= config.max_batch_size {
            break;
        }
        let candidate_width = width.max(lengths[i]);
        let padded = candidate_width * (chosen.len() + 1);
        let candidate_real = real + lengths[i];
        if padded <= config.max_batch_tokens
            && (padded - candidate_real) as f64 <= padding * padded as f64
        {
            chosen.push(i);
            width = candidate_width;
            real = candidate_real;
        }
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(max_batch_tokens: usize, max_batch_size: usize) -> BatcherConfig {
        BatcherConfig {
            max_batch_padding: None,
            max_batch_tokens,
            max_batch_size,
        }
    }

    #[test]
    fn oldest_goes_first_and_neighbours_by_length_follow() {
        assert_eq!(
            select_batch(&[50, 10, 48, 200, 52, 11], config(10_000, 3)),
            vec![0, 2, 4]
        );
    }

    #[test]
    fn padded_size_stays_within_the_token_budget() {
        let lengths = [100, 100, 100, 120, 30];
        let chosen = select_batch(&lengths, config(300, 64));
        let width = chosen.iter().map(|&i| lengths[i]).max().unwrap();
        assert!(width * chosen.len() <= 300, "{chosen:?}");
        assert_eq!(chosen, vec![0, 1, 2]);
    }

    #[test]
    fn newer_items_past_the_lookahead_wait_their_turn() {
        // Batches of 2: the window is the 8 oldest items; the perfect match at 9 waits.
        let mut lengths = vec![50, 10, 11, 12, 13, 14, 15, 16, 17, 50];
        assert_eq!(select_batch(&lengths, config(10_000, 2)), vec![0, 7]);
        lengths[7] = 60;
        assert_eq!(select_batch(&lengths, config(10_000, 2)), vec![0, 7]);
        lengths.truncate(9);
        lengths.push(51);
        assert_eq!(
            select_batch(&lengths, config(10_000, 10)),
            vec![0, 9, 7, 8, 6, 5, 4, 3, 2, 1]
        );
    }

    #[test]
    fn an_item_alone_over_budget_still_runs() {
        assert_eq!(select_batch(&[500, 10], config(100, 8)), vec![0]);
    }

    #[test]
    fn idle_sessions_share_what_is_pending_and_load_keeps_full_batches() {
        let limits = config(10_000, 16);
        // A 10-document request on two idle sessions: five each, scored at once.
        assert_eq!(limits.shared(10, 2).max_batch_size, 5);
        assert_eq!(limits.shared(11, 2).max_batch_size, 6);
        assert_eq!(limits.shared(1, 2).max_batch_size, 1);
        // One idle session, or a full batch for each: the configured limits.
        assert_eq!(limits.shared(10, 1), limits);
        assert_eq!(limits.shared(40, 2), limits);
        assert_eq!(limits.shared(0, 0), limits);
        assert_eq!(limits.shared(0, 2).max_batch_size, 1);
        assert_eq!(limits.shared(10, 2).max_batch_tokens, 10_000);
        let lengths = [30; 10];
        assert_eq!(select_batch(&lengths, limits.shared(10, 2)).len(), 5);
    }

    #[test]
    fn a_padding_limit_keeps_out_the_pairs_that_would_mostly_pad() {
        // One request's documents, oldest first: 100 tokens, then its neighbours by length.
        let lengths = [100, 60, 95, 140, 104, 98, 30];
        let unlimited = config(10_000, 16);
        assert_eq!(select_batch(&lengths, unlimited).len(), 7);
        let tenth = BatcherConfig {
            max_batch_padding: Some(0.1),
            ..unlimited
        };
        let chosen = select_batch(&lengths, tenth);
        // 100, 98, 104, 95 pad 19 of 416 tokens; 140 or 60 would take it past a tenth.
        assert_eq!(chosen, vec![0, 5, 4, 2]);
        let width = chosen.iter().map(|&i| lengths[i]).max().unwrap();
        let real: usize = chosen.iter().map(|&i| lengths[i]).sum();
        assert!((width * chosen.len() - real) as f64 <= 0.1 * (width * chosen.len()) as f64);
        // A limit of 0: only equal lengths share a batch, and the oldest still goes first.
        let none = BatcherConfig {
            max_batch_padding: Some(0.0),
            ..unlimited
        };
        assert_eq!(select_batch(&[50, 49, 50, 51, 50], none), vec![0, 2, 4]);
        assert_eq!(select_batch(&[300, 10], none), vec![0]);
    }

    #[test]
    fn cpu_models_limit_padding_by_default_and_gpu_models_do_not() {
        assert_eq!(default_padding("cpu"), Some(CPU_PADDING));
        assert_eq!(default_padding("cuda"), None);
        assert_eq!(default_padding("tensorrt"), None);
        assert!(check_padding(0.0).is_ok() && check_padding(1.0).is_ok());
        for bad in [-0.1, 1.5, f64::NAN, f64::INFINITY] {
            let why = check_padding(bad).unwrap_err();
            assert!(why.contains("from 0 to 1"), "{why}");
        }
    }

    #[test]
    fn nothing_pending_selects_nothing() {
        assert!(select_batch(&[], config(100, 8)).is_empty());
    }
}
