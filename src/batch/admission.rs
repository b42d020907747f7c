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

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

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
}

/// One model's admission; cheap to clone (shared state).
#[derive(Debug, Clone)]
pub struct Admission {
    inner: Arc<Inner>,
}

/// A request inside admission. Dropping it gives back its slot and every token it holds.
#[derive(Debug)]
pub struct Entry {
    admission: Admission,
    held: usize,
    queued: usize,
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
    pub fn new(limits: AdmissionLimits, throughput: Arc<Throughput>) -> Admission {
        Admission {
            inner: Arc::new(Inner {
                limits,
                requests: AtomicUsize::new(0),
                held: AtomicUsize::new(0),
                queued: AtomicUsize::new(0),
                throughput,
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
        };
        self.check_wait()?;
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

    /// A request of `tokens` tokens admitted at once (tests and benchmarks that hold budget).
    pub fn try_admit(&self, tokens: usize) -> Result<Entry, AdmissionError> {
        let mut entry = self.enter(0)?;
        entry.admit(tokens)?;
        Ok(entry)
    }

    fn check_wait(&self) -> Result<(), AdmissionError> {
        let Some(expected) = self.expected_wait() else {
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

    /// How long the work queued now takes to clear at the measured throughput: zero for an
    /// empty queue, None while no batch has been measured yet.
    pub fn expected_wait(&self) -> Option<Duration> {
        match self.queued_tokens() {
            0 => Some(Duration::ZERO),
            queued => self.inner.throughput.time_for(queued),
        }
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

    /// Admits the request's `tokens` (now known exactly) for inference, if the work queued
    /// ahead of it clears within the wait target and they fit under the cap.
    pub fn admit(&mut self, tokens: usize) -> Result<(), AdmissionError> {
        let limits = self.admission.inner.limits;
        if tokens > limits.max_tokens {
            return Err(AdmissionError::RequestTooLarge {
                needed: tokens,
                limit: limits.max_tokens,
            });
        }
        self.admission.check_wait()?;
        self.set_held(tokens)?;
        self.admission
            .inner
            .queued
            .fetch_add(tokens, Ordering::AcqRel);
        self.queued += tokens;
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

    fn admission(max_requests: usize, max_tokens: usize, max_wait_ms: u64) -> (Admission, Arc<Throughput>) {
        let throughput = Arc::new(Throughput::new(1));
        let limits = AdmissionLimits {
            max_requests,
            max_tokens,
            max_wait: Duration::from_millis(max_wait_ms),
        };
        (Admission::new(limits, throughput.clone()), throughput)
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
        big.admit(3000).unwrap();
        // 3 s ahead now: the next one waits too long ...
        assert!(admission.try_admit(10).is_err());
        // ... until enough of it is answered (800 tokens left = 0.8 s).
        big.answered(2200);
        assert_eq!(admission.expected_wait(), Some(Duration::from_millis(800)));
        assert!(admission.try_admit(10).is_ok());
    }

    #[test]
    fn tokenization_is_paid_for_before_it_is_done() {
        let (admission, _) = admission(10, 100, 1000);
        let mut tokenizing = admission.enter(1).unwrap();
        tokenizing.hold(80).unwrap();
        // Another request's upper bound does not fit beside it.
        let mut other = admission.enter(1).unwrap();
        assert!(matches!(other.hold(30), Err(AdmissionError::QueueFull { .. })));
        // The first turned out smaller than its bound: the rest is given back on admission.
        tokenizing.admit(50).unwrap();
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
