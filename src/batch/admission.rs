//! Admission: by the wait a request would see, per request and per token, decided at once.
//!
//! A request is admitted when the work already queued ahead of it clears within the wait
//! target: queued tokens over the throughput the model is measured to sustain while serving
//! ([`Throughput`]; the batcher measures one batch at start, then every batch), against
//! `--max-queue-wait-ms`. That target means the same on every model, machine and request
//! size, where a fixed token count meant seconds on one and milliseconds on another. An
//! empty queue admits any request (one larger than the target still runs; it just waits for
//! nobody); a rate not measured yet (a model that could not score its calibration batch)
//! leaves only the caps below to refuse.
//!
//! Queued tokens over throughput is the wait of an ideal queue, one that scores a token at a
//! time at the whole model's rate. Pairs are scored a batch at a time instead, on sessions
//! that run side by side, each at its share of the rate: the batch that holds a request's
//! last pair runs on one session, so it ends `sessions - 1` batch-times after the tokens
//! alone say ([`Admission::predicted`]; a 10-document request alone on two sessions takes
//! twice its tokens over the rate). That part is predicted, not learned: when it was left to
//! the correction below, requests that met an empty queue (late by 2x on two sessions)
//! taught it to scale every long queue by 2 as well (a correction of 1.9): at 0.7x of
//! saturation with the wait target at 20 service times, 2.8% of requests were refused while
//! 99% of the answered ones took under 15 service times (benches/README.md, "The
//! reliability targets at 20 service times").
//!
//! What is left, length grouping letting neighbours pass one another, a rate that moves under
//! the queue, is learned: every answered request compares the time from its admission to its
//! last score with what was predicted for it then. The ratio's moving mean plus
//! `--queue-wait-spread` (default [`SPREAD`]) of its moving standard deviations
//! ([`Lateness`]) scales the wait estimate: the mean alone would keep the promise for the
//! typical request and break it for the late ones, and a tail is what a latency target is
//! about. Each request weighs by the predicted time of the work that was ahead of it, the
//! part the correction scales: one that met an empty queue teaches it nothing about how a
//! queue drains. The promise admission keeps is then the one a client can check: an admitted
//! request is answered within the wait target plus its own service time (its tokens over the
//! throughput), as nearly all measured requests went.
//!
//! Two hard caps stay, for memory, not for latency: requests in flight
//! (`--max-concurrent-requests`) and tokens held (`--max-queue-tokens`). Tokens are held from
//! before tokenization (an upper bound of what the request's documents can become, so
//! tokenizing is paid for before it is done, and many hostile requests cannot tokenize at
//! once beyond the cap) until each pair is answered; a single request larger than the whole
//! cap could never fit and is refused with 413 instead of 429.
//!
//! Everything is refused immediately (429), never queued: queues never grow past what the
//! workers clear within the target, and a few large requests cannot take every slot the way
//! per-pair permits do (TEI #305). An [`Entry`] gives everything back when the request
//! finishes, however it ends.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::queue::BatcherConfig;
use super::throughput::Throughput;

/// The limits of one model's admission.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdmissionLimits {
    /// Requests admitted and not yet answered.
    pub max_requests: usize,
    /// Tokens held (being tokenized, queued or in inference): the memory cap.
    pub max_tokens: usize,
    /// The longest a request may be expected to wait for the work ahead of it.
    pub max_wait: Duration,
    /// Standard deviations of lateness added to its mean in the correction ([`SPREAD`] by
    /// default).
    pub spread: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdmissionError {
    #[error("the service is at its limit of {limit} concurrent requests; retry shortly")]
    TooManyRequests { limit: usize },
    #[error(
        "the work queued ahead of this request takes about {expected_ms} ms at the measured \
         throughput, over the wait target of {target_ms} ms; retry shortly or on another instance"
    )]
    WaitTooLong { expected_ms: u64, target_ms: u64 },
    #[error("the queue holds {held} of its {limit} tokens and this request needs {needed}; retry shortly")]
    QueueFull {
        held: usize,
        needed: usize,
        limit: usize,
    },
    #[error("the request is {needed} tokens; the most one request may carry is {limit}: send fewer or shorter documents")]
    RequestTooLarge { needed: usize, limit: usize },
}

#[derive(Debug)]
struct Inner {
    limits: AdmissionLimits,
    requests: AtomicUsize,
    /// Tokens held against `max_tokens`.
    held: AtomicUsize,
    /// Tokens admitted for inference and not yet answered: the wait estimate's numerator.
    queued: AtomicUsize,
    throughput: Arc<Throughput>,
    /// How batches are made: the size of the batch a request's last pair is scored in.
    batch: BatcherConfig,
    /// How much longer answered requests took than the queue predicted.
    lateness: Mutex<Lateness>,
    /// `lateness`'s correction as f64 bits, read by every admission without the lock.
    correction: AtomicU64,
}

/// How fast the correction forgets: after answered requests that had this much predicted
/// time of work ahead of them, older ones weigh 1/e.
pub const CORRECTION_TIME_CONSTANT: Duration = Duration::from_secs(30);

/// The correction stays within this range whatever requests measured (clients that hung up
/// mid-request, a machine that stalled).
pub const CORRECTION_RANGE: (f64, f64) = (0.5, 4.0);

/// Standard deviations of the lateness ratio added to its mean by default
/// (`--queue-wait-spread`): about the 98th percentile of a normal spread, so the late
/// requests keep the promise too.
pub const SPREAD: f64 = 2.0;

/// The spreads an operator may set: from the mean alone to far into the tail.
pub const SPREAD_RANGE: (f64, f64) = (0.0, 10.0);

/// Why `spread` cannot be a spread, if it cannot.
pub fn check_spread(spread: f64) -> Result<(), String> {
    let (low, high) = SPREAD_RANGE;
    if spread.is_finite() && (low..=high).contains(&spread) {
        Ok(())
    } else {
        Err(format!(
            "must be a number from {low} to {high} (standard deviations), not {spread}"
        ))
    }
}

/// The ratio of answered requests' real time to their predicted time: its moving mean and
/// variance, each request weighted by the predicted time of the work that was ahead of it
/// (an exponentially weighted moving average that forgets over
/// [`CORRECTION_TIME_CONSTANT`] of it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lateness {
    mean: f64,
    variance: f64,
}

impl Default for Lateness {
    /// Before any request is answered: on time, with no spread.
    fn default() -> Lateness {
        Lateness {
            mean: 1.0,
            variance: 0.0,
        }
    }
}

impl Lateness {
    /// One request predicted to take `predicted`, `ahead` of it for the work queued before
    /// it, took `actual`.
    pub fn record(&mut self, predicted: Duration, ahead: Duration, actual: Duration) {
        let (predicted, ahead) = (predicted.as_secs_f64(), ahead.as_secs_f64());
        if predicted <= 0.0 || ahead <= 0.0 {
            return;
        }
        let (low, high) = CORRECTION_RANGE;
        let ratio = (actual.as_secs_f64() / predicted).clamp(low, high);
        let weight = 1.0 - (-ahead / CORRECTION_TIME_CONSTANT.as_secs_f64()).exp();
        // The weighted incremental mean and variance (West, 1979).
        let difference = ratio - self.mean;
        let step = weight * difference;
        self.mean += step;
        self.variance = (1.0 - weight) * (self.variance + difference * step);
    }

    /// What the wait estimate is scaled by: the mean ratio plus `spread` standard
    /// deviations, within [`CORRECTION_RANGE`].
    pub fn correction(&self, spread: f64) -> f64 {
        let (low, high) = CORRECTION_RANGE;
        (self.mean + spread * self.variance.max(0.0).sqrt()).clamp(low, high)
    }

    pub fn mean(&self) -> f64 {
        self.mean
    }

    pub fn standard_deviation(&self) -> f64 {
        self.variance.max(0.0).sqrt()
    }
}

/// One model's admission; cheap to clone (shared state).
#[derive(Debug, Clone)]
pub struct Admission {
    inner: Arc<Inner>,
}

/// What admission expects of a request when it is admitted, uncorrected, at the measured rate
/// ([`Admission::predicted`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction {
    /// From admission to its last score.
    pub last_score: Duration,
    /// The part of it that is the work queued ahead.
    pub ahead: Duration,
    /// Its own tokens over the rate: the service time the wait target's promise adds.
    pub own_service: Duration,
}

/// A request inside admission. Dropping it gives back its slot and every token it holds.
#[derive(Debug)]
pub struct Entry {
    admission: Admission,
    held: usize,
    queued: usize,
    /// When its tokens were admitted, and what was then predicted.
    predicted: Option<(Instant, Prediction)>,
}

/// Adds `n` to `counter` if the sum stays within `limit`.
fn try_add(counter: &AtomicUsize, n: usize, limit: usize) -> Result<(), usize> {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
            now.checked_add(n).filter(|&total| total <= limit)
        })
        .map(|_| ())
}

impl Admission {
    /// Admission for a model whose batcher makes batches as `batch` says and measures
    /// `throughput`.
    pub fn new(
        limits: AdmissionLimits,
        throughput: Arc<Throughput>,
        batch: BatcherConfig,
    ) -> Admission {
        Admission {
            inner: Arc::new(Inner {
                limits,
                requests: AtomicUsize::new(0),
                held: AtomicUsize::new(0),
                queued: AtomicUsize::new(0),
                throughput,
                batch,
                lateness: Mutex::new(Lateness::default()),
                correction: AtomicU64::new(Lateness::default().correction(limits.spread).to_bits()),
            }),
        }
    }

    /// Takes a request slot, refusing at once what no size of request could pass: every
    /// slot taken, the queue already expected to wait past the target, or not even
    /// `lower_bound` tokens (the fewest the request can need) left under the cap.
    pub fn enter(&self, lower_bound: usize) -> Result<Entry, AdmissionError> {
        let limits = &self.inner.limits;
        try_add(&self.inner.requests, 1, limits.max_requests).map_err(|_| {
            AdmissionError::TooManyRequests {
                limit: limits.max_requests,
            }
        })?;
        let entry = Entry {
            admission: self.clone(),
            held: 0,
            queued: 0,
            predicted: None,
        };
        self.check_wait(0, 0)?;
        if lower_bound > limits.max_tokens {
            return Err(AdmissionError::RequestTooLarge {
                needed: lower_bound,
                limit: limits.max_tokens,
            });
        }
        let held = self.held_tokens();
        if held.saturating_add(lower_bound) > limits.max_tokens {
            return Err(AdmissionError::QueueFull {
                held,
                needed: lower_bound,
                limit: limits.max_tokens,
            });
        }
        Ok(entry)
    }

    /// A request of `tokens` tokens in one pair admitted at once (tests and benchmarks that
    /// hold budget).
    pub fn try_admit(&self, tokens: usize) -> Result<Entry, AdmissionError> {
        let mut entry = self.enter(0)?;
        entry.admit(tokens, 1)?;
        Ok(entry)
    }

    /// Refuses a request of `own` tokens in `pairs` pairs (0 while they are not known yet: the
    /// least any request can expect) whose expected wait is past the target.
    fn check_wait(&self, own: usize, pairs: usize) -> Result<(), AdmissionError> {
        let Some(expected) = self.expected_wait_for(own, pairs) else {
            return Ok(());
        };
        let target = self.inner.limits.max_wait;
        if expected > target {
            return Err(AdmissionError::WaitTooLong {
                expected_ms: expected.as_millis() as u64,
                target_ms: target.as_millis() as u64,
            });
        }
        Ok(())
    }

    /// How long the work queued now takes to clear, as answered requests measured it (the
    /// queue over the throughput, times the correction): zero for an empty queue, None while
    /// no batch has been measured yet.
    pub fn expected_wait(&self) -> Option<Duration> {
        self.expected_wait_for(0, 0)
    }

    /// When a request of `own` tokens in `pairs` pairs, admitted behind `ahead` queued
    /// tokens, can expect its last score, uncorrected: all of it over the whole rate, plus
    /// the batch holding its last pair running on one session, `sessions - 1` batch-times
    /// longer than its share of the rate says. That batch is as large as the batcher makes
    /// them (`max_batch_size` pairs of this request's mean length, within `max_batch_tokens`)
    /// or as all the pending work, if that is less. None while no batch has been measured.
    pub fn predicted(&self, ahead: usize, own: usize, pairs: usize) -> Option<Prediction> {
        let rate = self.inner.throughput.tokens_per_second()?;
        let last_batch = if own == 0 || pairs == 0 {
            0
        } else {
            let batch = &self.inner.batch;
            (own.div_ceil(pairs).saturating_mul(batch.max_batch_size))
                .min(batch.max_batch_tokens)
                .min(ahead + own)
        };
        let extra = (self.inner.throughput.sessions() - 1) * last_batch;
        let time = |tokens: usize| Duration::from_secs_f64(tokens as f64 / rate);
        Some(Prediction {
            last_score: time(ahead + own + extra),
            ahead: time(ahead),
            own_service: time(own),
        })
    }

    /// The wait a request of `own` tokens in `pairs` pairs can expect: the time until its last
    /// score, as answered requests measured it, less its own service time (its tokens over the
    /// throughput). With a correction above 1 a larger request expects more (its own batches
    /// are late by the same ratio); below 1, its own work earns no credit against the work
    /// ahead, so the wait never falls below what a request of no tokens expects (what `enter`
    /// checks before tokenizing).
    fn expected_wait_for(&self, own: usize, pairs: usize) -> Option<Duration> {
        let queued = self.queued_tokens();
        if queued == 0 {
            return Some(Duration::ZERO);
        }
        let predicted = self.predicted(queued, own, pairs)?;
        let c = self.correction();
        Some(if c >= 1.0 {
            predicted
                .last_score
                .mul_f64(c)
                .saturating_sub(predicted.own_service)
        } else {
            predicted.ahead.mul_f64(c)
        })
    }

    /// What the wait estimate is scaled by ([`Lateness::correction`] at the limits' spread):
    /// 1.0 until a request has been answered.
    pub fn correction(&self) -> f64 {
        f64::from_bits(self.inner.correction.load(Ordering::Relaxed))
    }

    /// The lateness answered requests measured so far.
    pub fn lateness(&self) -> Lateness {
        *self
            .inner
            .lateness
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// One request was answered `actual` after its admission, where `predicted` was expected
    /// (`ahead` of it for the work queued before it).
    fn record_answered(&self, predicted: Duration, ahead: Duration, actual: Duration) {
        let mut lateness = self
            .inner
            .lateness
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        lateness.record(predicted, ahead, actual);
        self.inner.correction.store(
            lateness.correction(self.inner.limits.spread).to_bits(),
            Ordering::Relaxed,
        );
    }

    /// Tokens admitted for inference and not yet answered.
    pub fn queued_tokens(&self) -> usize {
        self.inner.queued.load(Ordering::Acquire)
    }

    /// Tokens held against the cap (tokenizing, queued or in inference).
    pub fn held_tokens(&self) -> usize {
        self.inner.held.load(Ordering::Acquire)
    }

    /// Requests admitted and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.inner.requests.load(Ordering::Acquire)
    }

    pub fn limits(&self) -> AdmissionLimits {
        self.inner.limits
    }

    pub fn max_requests(&self) -> usize {
        self.inner.limits.max_requests
    }

    pub fn max_tokens(&self) -> usize {
        self.inner.limits.max_tokens
    }

    /// The measured throughput, tokens per second (None before the first batch).
    pub fn throughput(&self) -> Option<f64> {
        self.inner.throughput.tokens_per_second()
    }
}

impl Entry {
    /// Holds exactly `tokens` of the cap (growing or shrinking what this request holds):
    /// called with an upper bound before tokenizing, so the work is paid for before it is
    /// done. More than the whole cap is held as the whole cap.
    pub fn hold(&mut self, tokens: usize) -> Result<(), AdmissionError> {
        let tokens = tokens.min(self.admission.inner.limits.max_tokens);
        self.set_held(tokens)
    }

    fn set_held(&mut self, tokens: usize) -> Result<(), AdmissionError> {
        let inner = &self.admission.inner;
        if tokens > self.held {
            let more = tokens - self.held;
            try_add(&inner.held, more, inner.limits.max_tokens).map_err(|held| {
                AdmissionError::QueueFull {
                    held,
                    needed: tokens,
                    limit: inner.limits.max_tokens,
                }
            })?;
        } else {
            inner.held.fetch_sub(self.held - tokens, Ordering::AcqRel);
        }
        self.held = tokens;
        Ok(())
    }

    /// Admits the request's `tokens` in `pairs` pairs (now known exactly) for inference, if
    /// the work queued ahead of it clears within the wait target and they fit under the cap.
    pub fn admit(&mut self, tokens: usize, pairs: usize) -> Result<(), AdmissionError> {
        let limits = self.admission.inner.limits;
        if tokens > limits.max_tokens {
            return Err(AdmissionError::RequestTooLarge {
                needed: tokens,
                limit: limits.max_tokens,
            });
        }
        self.admission.check_wait(tokens, pairs)?;
        self.set_held(tokens)?;
        let inner = &self.admission.inner;
        let ahead = inner.queued.fetch_add(tokens, Ordering::AcqRel);
        self.queued += tokens;
        if tokens > 0 && self.predicted.is_none() {
            self.predicted = self
                .admission
                .predicted(ahead, tokens, pairs)
                .map(|predicted| (Instant::now(), predicted));
        }
        Ok(())
    }

    /// `tokens` of the admitted ones were answered: they no longer wait or take memory.
    pub fn answered(&mut self, tokens: usize) {
        let inner = &self.admission.inner;
        let queued = tokens.min(self.queued);
        inner.queued.fetch_sub(queued, Ordering::AcqRel);
        self.queued -= queued;
        let held = tokens.min(self.held);
        inner.held.fetch_sub(held, Ordering::AcqRel);
        self.held -= held;
        if self.queued == 0 {
            // Its last score: how long that took is what the correction learns from.
            if let Some((admitted, predicted)) = self.predicted.take() {
                self.admission.record_answered(
                    predicted.last_score,
                    predicted.ahead,
                    admitted.elapsed(),
                );
            }
        }
    }

    pub fn admission(&self) -> &Admission {
        &self.admission
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        let inner = &self.admission.inner;
        inner.queued.fetch_sub(self.queued, Ordering::AcqRel);
        inner.held.fetch_sub(self.held, Ordering::AcqRel);
        inner.requests.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BATCH: BatcherConfig = BatcherConfig {
        max_batch_tokens: 16384,
        max_batch_size: 16,
        max_batch_padding: None,
    };

    fn admission(
        max_requests: usize,
        max_tokens: usize,
        max_wait_ms: u64,
    ) -> (Admission, Arc<Throughput>) {
        let throughput = Arc::new(Throughput::new(1));
        let limits = AdmissionLimits {
            max_requests,
            max_tokens,
            max_wait: Duration::from_millis(max_wait_ms),
            spread: SPREAD,
        };
        (
            Admission::new(limits, throughput.clone(), BATCH),
            throughput,
        )
    }

    #[test]
    fn charges_tokens_not_pairs_and_gives_them_back() {
        let (admission, _) = admission(10, 100, 1000);
        let first = admission.try_admit(60).unwrap();
        assert_eq!(admission.queued_tokens(), 60);
        assert!(matches!(
            admission.try_admit(50),
            Err(AdmissionError::QueueFull { needed: 50, .. })
        ));
        let second = admission.try_admit(40).unwrap();
        drop(first);
        assert_eq!(admission.queued_tokens(), 40);
        drop(second);
        assert_eq!((admission.queued_tokens(), admission.held_tokens()), (0, 0));
        assert_eq!(admission.in_flight(), 0);
    }

    #[test]
    fn a_request_larger_than_the_cap_is_too_large_not_overload() {
        let (admission, _) = admission(10, 100, 1000);
        assert_eq!(
            admission.try_admit(101).unwrap_err(),
            AdmissionError::RequestTooLarge {
                needed: 101,
                limit: 100
            }
        );
        assert_eq!(admission.in_flight(), 0, "a refusal keeps no slot");
    }

    #[test]
    fn request_slots_are_limited() {
        let (admission, _) = admission(1, 100, 1000);
        let held = admission.try_admit(1).unwrap();
        assert!(matches!(
            admission.enter(1),
            Err(AdmissionError::TooManyRequests { .. })
        ));
        drop(held);
        assert!(admission.try_admit(1).is_ok());
    }

    #[test]
    fn the_wait_target_refuses_once_the_queue_takes_longer_than_it() {
        let (admission, throughput) = admission(100, 1_000_000, 1000);
        // Unmeasured: only the caps refuse.
        let _a = admission.try_admit(5000).unwrap();
        throughput.record(1000, Duration::from_secs(1)); // 1000 tokens/s
                                                         // 5000 queued = 5 s ahead, over the 1 s target: refused before tokenizing.
        assert!(matches!(
            admission.enter(1),
            Err(AdmissionError::WaitTooLong {
                expected_ms: 5000,
                target_ms: 1000
            })
        ));
        drop(_a);
        // An empty queue admits even a request longer than the target.
        let mut big = admission.enter(1).unwrap();
        big.admit(3000, 1).unwrap();
        // 3 s ahead now: the next one waits too long ...
        assert!(admission.try_admit(10).is_err());
        // ... until enough of it is answered (800 tokens left = 0.8 s).
        big.answered(2200);
        assert_eq!(admission.expected_wait(), Some(Duration::from_millis(800)));
        assert!(admission.try_admit(10).is_ok());
    }

    #[test]
    fn lateness_is_a_time_weighted_mean_plus_spread_kept_in_range() {
        let mut lateness = Lateness::default();
        assert_eq!(lateness.correction(SPREAD), 1.0);
        // One request predicted 30 s that took 60: the mean moves 1 - 1/e of the way to 2,
        // and the spread is what separates it from the past.
        lateness.record(
            Duration::from_secs(30),
            Duration::from_secs(30),
            Duration::from_secs(60),
        );
        let weight = 1.0 - (-1f64).exp();
        assert!((lateness.mean() - (1.0 + weight)).abs() < 1e-9);
        let variance = (1.0 - weight) * weight;
        assert!((lateness.standard_deviation() - variance.sqrt()).abs() < 1e-9);
        assert!(
            (lateness.correction(SPREAD) - (1.0 + weight + SPREAD * variance.sqrt())).abs() < 1e-9
        );
        // Always 1.5 late: the spread fades and the correction settles on 1.5.
        for _ in 0..60 {
            lateness.record(
                Duration::from_secs(30),
                Duration::from_secs(30),
                Duration::from_secs(45),
            );
        }
        assert!(
            (lateness.correction(SPREAD) - 1.5).abs() < 1e-3,
            "{lateness:?}"
        );
        // Half on time, half twice as long: mean 1.5, deviation 0.5, so 2.5 with the spread.
        for i in 0..400 {
            let actual = if i % 2 == 0 { 3 } else { 6 };
            lateness.record(
                Duration::from_secs(3),
                Duration::from_secs(3),
                Duration::from_secs(actual),
            );
        }
        assert!((lateness.mean() - 1.5).abs() < 0.05, "{lateness:?}");
        assert!(
            (lateness.standard_deviation() - 0.5).abs() < 0.05,
            "{lateness:?}"
        );
        assert!(
            (lateness.correction(SPREAD) - 2.5).abs() < 0.15,
            "{lateness:?}"
        );
        // A request with next to nothing ahead of it, however late, barely moves it: weighted by
        // the work that was ahead of it.
        let before = lateness;
        lateness.record(
            Duration::from_millis(1),
            Duration::from_millis(1),
            Duration::from_secs(10),
        );
        assert!((lateness.correction(SPREAD) - before.correction(SPREAD)).abs() < 0.01);
        // Ratios are clamped into the range, and so is the correction.
        for _ in 0..100 {
            lateness.record(
                Duration::from_secs(30),
                Duration::from_secs(30),
                Duration::from_secs(3600),
            );
        }
        assert!((lateness.mean() - CORRECTION_RANGE.1).abs() < 1e-6);
        assert_eq!(lateness.correction(SPREAD), CORRECTION_RANGE.1);
        for _ in 0..100 {
            lateness.record(
                Duration::from_secs(30),
                Duration::from_secs(30),
                Duration::ZERO,
            );
        }
        assert!((lateness.mean() - CORRECTION_RANGE.0).abs() < 1e-6);
        // Nothing predicted, nothing learned.
        let before = lateness;
        lateness.record(Duration::ZERO, Duration::ZERO, Duration::from_secs(1));
        assert_eq!(lateness, before);
    }

    #[test]
    fn the_spread_is_the_operator_s_choice_between_the_tail_and_goodput() {
        let mut lateness = Lateness::default();
        for i in 0..400 {
            let actual = if i % 2 == 0 { 3 } else { 6 };
            lateness.record(
                Duration::from_secs(3),
                Duration::from_secs(3),
                Duration::from_secs(actual),
            );
        }
        // The mean alone, and far into the tail.
        assert!((lateness.correction(0.0) - lateness.mean()).abs() < 1e-12);
        assert!(lateness.correction(10.0) > lateness.correction(SPREAD));
        // An admission set to the mean alone learns the mean.
        let throughput = Arc::new(Throughput::new(1));
        let limits = AdmissionLimits {
            max_requests: 10,
            max_tokens: 1000,
            max_wait: Duration::from_secs(1),
            spread: 0.0,
        };
        let admission = Admission::new(limits, throughput, BATCH);
        admission.record_answered(
            Duration::from_secs(30),
            Duration::from_secs(30),
            Duration::from_secs(60),
        );
        assert!((admission.correction() - admission.lateness().mean()).abs() < 1e-12);
        // What an operator may set.
        assert!(
            check_spread(0.0).is_ok() && check_spread(SPREAD).is_ok() && check_spread(10.0).is_ok()
        );
        for bad in [-0.5, 10.5, f64::NAN, f64::INFINITY] {
            let why = check_spread(bad).unwrap_err();
            assert!(why.contains("from 0 to 10"), "{why}");
        }
    }

    #[test]
    fn answered_requests_correct_the_wait_by_how_late_they_were() {
        let (admission, throughput) = admission(100, 1_000_000, 3000);
        throughput.record(1000, Duration::from_secs(1)); // 1000 tokens/s
        assert_eq!(admission.correction(), 1.0);
        for _ in 0..60 {
            admission.record_answered(
                Duration::from_secs(30),
                Duration::from_secs(30),
                Duration::from_secs(45),
            );
        }
        let c = admission.correction();
        assert!((c - 1.5).abs() < 1e-3, "{c}");
        // The queue's wait is scaled by it ...
        let _queued = admission.try_admit(1000).unwrap();
        let wait = admission.expected_wait().unwrap().as_secs_f64();
        assert!((wait - c).abs() < 1e-3, "{wait}");
        // ... and a request's own batches are late by the same ratio: 1000 tokens of its own
        // expect c * (1 + 1) - 1 s: 2 s at c = 1.5, within the 3 s target; 4 s at 2.5.
        assert!(admission.check_wait(1000, 1).is_ok());
        for _ in 0..60 {
            admission.record_answered(
                Duration::from_secs(30),
                Duration::from_secs(30),
                Duration::from_secs(75),
            );
        }
        assert!((admission.correction() - 2.5).abs() < 1e-3);
        assert!(matches!(
            admission.check_wait(1000, 1),
            Err(AdmissionError::WaitTooLong {
                expected_ms: 4000,
                target_ms: 3000
            })
        ));
        // Requests answered sooner than predicted shorten the wait ahead, but a request's own
        // work never earns credit against it.
        for _ in 0..60 {
            admission.record_answered(
                Duration::from_secs(30),
                Duration::from_secs(30),
                Duration::from_secs(15),
            );
        }
        let c = admission.correction();
        assert!((c - 0.5).abs() < 1e-3, "{c}");
        let alone = admission.expected_wait_for(0, 0).unwrap();
        assert_eq!(admission.expected_wait_for(1_000_000, 1), Some(alone));
        assert!((alone.as_secs_f64() - c).abs() < 1e-3);
        // An empty queue still admits anything.
        drop(_queued);
        assert_eq!(
            admission.expected_wait_for(1_000_000, 1),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn only_a_request_s_last_score_teaches_the_correction() {
        let (admission, throughput) = admission(100, 1_000_000, 60_000);
        // Unmeasured: nothing predicted, nothing learned.
        let mut early = admission.try_admit(10).unwrap();
        early.answered(10);
        assert_eq!(admission.lateness(), Lateness::default());
        throughput.record(1000, Duration::from_secs(1));
        // 4000 tokens behind 1000, predicted 5 s (1 s of it ahead) and answered at once:
        // learned at the last score only, as the range's low end.
        let _ahead = admission.try_admit(1000).unwrap();
        let mut fast = admission.try_admit(4000).unwrap();
        fast.answered(3000);
        assert_eq!(admission.lateness(), Lateness::default());
        fast.answered(1000);
        let mut expected = Lateness::default();
        expected.record(
            Duration::from_secs(5),
            Duration::from_secs(1),
            Duration::ZERO,
        );
        assert!((admission.lateness().mean() - expected.mean()).abs() < 1e-6);
        assert_eq!(
            admission.correction(),
            admission.lateness().correction(SPREAD)
        );
        // A request that went away before its last score teaches nothing.
        let before = admission.lateness();
        let mut gone = admission.try_admit(100).unwrap();
        gone.answered(50);
        drop(gone);
        assert_eq!(admission.lateness(), before);
    }

    /// Admission on `sessions` sessions scoring 1000 tokens per second between them.
    fn on_sessions(sessions: usize, batch: BatcherConfig) -> Admission {
        let throughput = Arc::new(Throughput::new(sessions));
        throughput.record(1000 / sessions, Duration::from_secs(1));
        let limits = AdmissionLimits {
            max_requests: 100,
            max_tokens: 1_000_000,
            max_wait: Duration::from_secs(10),
            spread: SPREAD,
        };
        Admission::new(limits, throughput, batch)
    }

    #[test]
    fn a_request_s_last_batch_runs_on_one_session() {
        let secs = |d: Option<Prediction>| {
            let d = d.unwrap();
            (d.last_score.as_secs_f64(), d.ahead.as_secs_f64())
        };
        let close =
            |(a, b): (f64, f64), (c, d): (f64, f64)| (a - c).abs() < 1e-9 && (b - d).abs() < 1e-9;
        let two = on_sessions(2, BATCH);
        // Alone, 10 pairs of 100 tokens are one batch on one session: twice 1000 / 1000 tokens/s.
        assert!(close(secs(two.predicted(0, 1000, 10)), (2.0, 0.0)));
        // Behind a queue, its last pair's batch is a full one: 16 pairs of its length.
        assert!(close(secs(two.predicted(5000, 1000, 10)), (7.6, 5.0)));
        // ... within the batch's token limit.
        let small = BatcherConfig {
            max_batch_tokens: 1200,
            max_batch_size: 16,
            max_batch_padding: None,
        };
        assert!(close(
            secs(on_sessions(2, small).predicted(5000, 1000, 10)),
            (7.2, 5.0)
        ));
        // One session: the tokens over the rate are the whole story.
        assert!(close(
            secs(on_sessions(1, BATCH).predicted(5000, 1000, 10)),
            (6.0, 5.0)
        ));
        // Nothing of its own (before tokenizing): the work ahead alone.
        assert!(close(secs(two.predicted(5000, 0, 0)), (5.0, 5.0)));
        // The wait it expects is that less its own service time (1000 tokens over the rate):
        // 5 s ahead + 1.6 s of its last batch beyond its share, before any correction.
        let _queued = two.try_admit(5000).unwrap();
        let wait = two.expected_wait_for(1000, 10).unwrap().as_secs_f64();
        assert!((wait - 6.6).abs() < 1e-9, "{wait}");
    }

    #[test]
    fn requests_that_met_an_empty_queue_teach_the_correction_nothing() {
        let two = on_sessions(2, BATCH);
        // Lone requests answered as one batch on one session takes: exactly as predicted, and
        // with nothing ahead of them not weighed at all.
        for _ in 0..50 {
            let mut alone = two.try_admit(1000).unwrap();
            alone.answered(1000);
            let total = two.predicted(0, 1000, 1).unwrap().last_score;
            two.record_answered(total, Duration::ZERO, total * 2);
        }
        assert_eq!(two.lateness(), Lateness::default());
        assert_eq!(two.correction(), 1.0);
        // So a long queue is expected to clear at the measured rate, not twice as slowly.
        let _queued = two.try_admit(8000).unwrap();
        assert_eq!(two.expected_wait(), Some(Duration::from_secs(8)));
        // Requests that waited behind a queue do teach it.
        two.record_answered(
            Duration::from_secs(10),
            Duration::from_secs(8),
            Duration::from_secs(15),
        );
        assert!(two.correction() > 1.0);
    }

    #[test]
    fn tokenization_is_paid_for_before_it_is_done() {
        let (admission, _) = admission(10, 100, 1000);
        let mut tokenizing = admission.enter(1).unwrap();
        tokenizing.hold(80).unwrap();
        // Another request's upper bound does not fit beside it.
        let mut other = admission.enter(1).unwrap();
        assert!(matches!(
            other.hold(30),
            Err(AdmissionError::QueueFull { .. })
        ));
        // The first turned out smaller than its bound: the rest is given back on admission.
        tokenizing.admit(50, 1).unwrap();
        assert_eq!(admission.held_tokens(), 50);
        other.hold(30).unwrap();
        // More than the whole cap is held as the whole cap (and then waits its turn).
        drop(tokenizing);
        drop(other);
        let mut huge = admission.enter(1).unwrap();
        huge.hold(10_000).unwrap();
        assert_eq!(admission.held_tokens(), 100);
    }
}
