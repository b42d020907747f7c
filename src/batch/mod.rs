//! Admission control and cross-request batching.
//!
//! [`admission`] decides, at once, whether a request may enter: by the wait it would see
//! (queued tokens over the measured [`throughput`]) against a target, with requests and
//! tokens in flight as hard caps, charged per request and per token, never per pair.
//! [`queue`] owns the admitted work items, packs them into batches, drives the inference
//! threads and feeds each batch's rate to [`throughput`].

pub mod admission;
pub mod queue;
pub mod throughput;

pub use admission::{Admission, AdmissionError, AdmissionLimits, Entry};
pub use queue::{check_padding, default_padding, Batcher, BatcherConfig, ItemOutcome, WorkItem};
pub use throughput::Throughput;
