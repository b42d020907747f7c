//! How many tokens a model scores per second, measured while it serves.
//!
//! Every batch reports its real (unpadded) tokens and its inference time; the rate of one
//! session is an exponentially weighted moving average of those, weighted by time (a batch
//! of 2 s moves it as much as ten of 0.2 s; the average forgets with a time constant of
//! [`TIME_CONSTANT`]), so it follows a machine that gets busier or quieter within seconds
//! without jumping on one odd batch. The model's rate is that times its sessions, which run
//! side by side. Padding is in the inference time, so queued real tokens over this rate is
//! the time the queue takes to clear: what admission compares with the wait target.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How fast the average forgets: after this much inference time, older batches weigh 1/e.
pub const TIME_CONSTANT: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub struct Throughput {
    /// Tokens per second of one session, as f64 bits; 0.0 until the first batch.
    per_session: AtomicU64,
    sessions: usize,
}

impl Throughput {
    pub fn new(sessions: usize) -> Throughput {
        Throughput {
            per_session: AtomicU64::new(0f64.to_bits()),
            sessions: sessions.max(1),
        }
    }

    /// One batch of `tokens` real tokens took `elapsed` on one session.
    pub fn record(&self, tokens: usize, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        if tokens == 0 || seconds <= 0.0 {
            return;
        }
        let rate = tokens as f64 / seconds;
        let weight = 1.0 - (-seconds / TIME_CONSTANT.as_secs_f64()).exp();
        let _ = self
            .per_session
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                let old = f64::from_bits(bits);
                let new = if old > 0.0 {
                    old + weight * (rate - old)
                } else {
                    rate
                };
                Some(new.to_bits())
            });
    }

    /// Tokens per second the model sustains with all its sessions busy; None before the
    /// first batch.
    pub fn tokens_per_second(&self) -> Option<f64> {
        let per_session = f64::from_bits(self.per_session.load(Ordering::Relaxed));
        (per_session > 0.0).then_some(per_session * self.sessions as f64)
    }

    /// The sessions that run batches side by side.
    pub fn sessions(&self) -> usize {
        self.sessions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_batch_sets_the_rate_and_later_ones_move_it_by_their_time() {
        let t = Throughput::new(2);
        assert_eq!(t.tokens_per_second(), None);
        t.record(1000, Duration::from_secs(1));
        assert_eq!(t.tokens_per_second(), Some(2000.0));
        // A short batch at double the rate moves the average a little ...
        t.record(200, Duration::from_millis(100));
        let after_short = t.tokens_per_second().unwrap();
        assert!(
            after_short > 2000.0 && after_short < 2100.0,
            "{after_short}"
        );
        // ... many seconds of it move it nearly all the way.
        for _ in 0..30 {
            t.record(2000, Duration::from_secs(1));
        }
        assert!((t.tokens_per_second().unwrap() - 4000.0).abs() < 10.0);
        let two_seconds = 8000.0 / t.tokens_per_second().unwrap();
        assert!((two_seconds - 2.0).abs() < 0.01, "{two_seconds}");
    }

    #[test]
    fn empty_or_instant_batches_are_ignored() {
        let t = Throughput::new(1);
        t.record(0, Duration::from_secs(1));
        t.record(10, Duration::ZERO);
        assert_eq!(t.tokens_per_second(), None);
    }
}
