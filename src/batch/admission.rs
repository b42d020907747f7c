//! Admission: charged per request and per token, decided at once.
//!
//! Two budgets bound what the service holds: requests in flight and tokens in flight (the
//! tokens of every admitted pair not yet answered). A request that does not fit either is
//! refused immediately with 429, so queues never grow past what the workers can clear, and a
//! few large requests cannot take every slot the way per-pair permits do (TEI #305). A single
//! request larger than the whole token budget could never be admitted: it is refused with
//! 413 instead. The permit returns both budgets when the request finishes, however it ends.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Debug, Clone)]
pub struct Admission {
    requests: Arc<Semaphore>,
    tokens: Arc<Semaphore>,
    max_requests: usize,
    max_tokens: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdmissionError {
    #[error("the service is at its limit of {limit} concurrent requests; retry shortly")]
    TooManyRequests { limit: usize },
    #[error("the queue holds {queued} of its {limit} tokens and this request needs {needed}; retry shortly")]
    QueueFull {
        queued: usize,
        needed: usize,
        limit: usize,
    },
    #[error("the request is {needed} tokens; the most one request may carry is {limit}: send fewer or shorter documents")]
    RequestTooLarge { needed: usize, limit: usize },
}

/// Held while a request is in flight; dropping it gives its budget back.
#[derive(Debug)]
pub struct Permit {
    _request: OwnedSemaphorePermit,
    _tokens: Option<OwnedSemaphorePermit>,
}

impl Admission {
    pub fn new(max_requests: usize, max_tokens: usize) -> Admission {
        let max_tokens = max_tokens
            .min(Semaphore::MAX_PERMITS)
            .min(u32::MAX as usize);
        let max_requests = max_requests.min(Semaphore::MAX_PERMITS);
        Admission {
            requests: Arc::new(Semaphore::new(max_requests)),
            tokens: Arc::new(Semaphore::new(max_tokens)),
            max_requests,
            max_tokens,
        }
    }

    /// Admits a request of `tokens` tokens, or says why not. Never waits.
    pub fn try_admit(&self, tokens: usize) -> Result<Permit, AdmissionError> {
        if tokens > self.max_tokens {
            return Err(AdmissionError::RequestTooLarge {
                needed: tokens,
                limit: self.max_tokens,
            });
        }
        let request = self.requests.clone().try_acquire_owned().map_err(|_| {
            AdmissionError::TooManyRequests {
                limit: self.max_requests,
            }
        })?;
        let tokens_permit = if tokens == 0 {
            None
        } else {
            Some(
                self.tokens
                    .clone()
                    .try_acquire_many_owned(tokens as u32)
                    .map_err(|_| AdmissionError::QueueFull {
                        queued: self.queued_tokens(),
                        needed: tokens,
                        limit: self.max_tokens,
                    })?,
            )
        };
        Ok(Permit {
            _request: request,
            _tokens: tokens_permit,
        })
    }

    /// Refuses at once, before any tokenization, a request that cannot fit: `lower_bound` is
    /// the fewest tokens it can need. Never refuses what [`Self::try_admit`] would accept.
    pub fn precheck(&self, lower_bound: usize) -> Result<(), AdmissionError> {
        if lower_bound > self.max_tokens {
            return Err(AdmissionError::RequestTooLarge {
                needed: lower_bound,
                limit: self.max_tokens,
            });
        }
        if self.requests.available_permits() == 0 {
            return Err(AdmissionError::TooManyRequests {
                limit: self.max_requests,
            });
        }
        let available = self.tokens.available_permits();
        if lower_bound > available {
            return Err(AdmissionError::QueueFull {
                queued: self.queued_tokens(),
                needed: lower_bound,
                limit: self.max_tokens,
            });
        }
        Ok(())
    }

    /// Tokens admitted and not yet answered.
    pub fn queued_tokens(&self) -> usize {
        self.max_tokens - self.tokens.available_permits()
    }

    pub fn max_requests(&self) -> usize {
        self.max_requests
    }

    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_tokens_not_pairs_and_gives_them_back() {
        let admission = Admission::new(10, 100);
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
        assert_eq!(admission.queued_tokens(), 0);
    }

    #[test]
    fn a_request_larger_than_the_budget_is_too_large_not_overload() {
        let admission = Admission::new(10, 100);
        assert_eq!(
            admission.try_admit(101).unwrap_err(),
            AdmissionError::RequestTooLarge {
                needed: 101,
                limit: 100
            }
        );
    }

    #[test]
    fn request_slots_are_limited() {
        let admission = Admission::new(1, 100);
        let held = admission.try_admit(1).unwrap();
        assert!(matches!(
            admission.try_admit(1),
            Err(AdmissionError::TooManyRequests { .. })
        ));
        drop(held);
        assert!(admission.try_admit(1).is_ok());
    }
}
