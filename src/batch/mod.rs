//! Admission control and cross-request batching.
//!
//! [`admission`] decides, at once, whether a request may enter (per request and per token,
//! never per pair). [`queue`] owns the admitted work items, packs them into batches and
//! drives the inference threads.

pub mod admission;
pub mod queue;

pub use admission::{Admission, AdmissionError, Permit};
pub use queue::{Batcher, BatcherConfig, ItemOutcome, WorkItem};
