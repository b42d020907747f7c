//! rradistill: an online re-ranking service for small students distilled from an LLM's
//! ranking ability (RRADistill, EMNLP 2024).
//!
//! A request travels down the modules in this order, and each layer only calls the ones
//! below it (api → rerank → serving → batch → model):
//! - [`api`]: the wire: REST dialects (Cohere/Jina, TEI, Infinity), operational endpoints,
//!   error bodies and timing headers. Thin: it converts each dialect into the one checked
//!   request, then calls [`rerank`].
//! - [`grpc`]: the same operation over gRPC (`proto/rerank.proto`), with health and reflection.
//! - [`rerank`]: the dialect-free re-rank operation: the checked request, the pipeline (cache,
//!   tokenize, admit and wait, finish), shadow scoring, the deadline, and the per-request
//!   metrics returned to the caller.
//! - [`serving`]: which models the process serves (the models file, aliases, experiments,
//!   shadows), the registry that routes a request to one, and reloading it.
//! - [`batch`]: admission (by the wait a request would see, with request and token caps),
//!   the measured throughput, and the cross-request batcher that packs (query, document)
//!   work items into length-grouped batches for the workers.
//! - [`model`]: the `Ranker` trait, model folders and their manifest, tokenization, the
//!   students (encoder and decoder) on ONNX Runtime sessions and execution providers.
//! - [`agreement`]: how far two rankings agree (shadow mode's metrics).
//! - [`cache`], [`metrics`]: the score cache and the Prometheus metrics.
//! - [`auth`]: API keys (client and admin), checked in constant time.
//! - [`runtime`], [`config`], [`server`]: loading ONNX Runtime, the CLI, start-up and drain.
//! - [`telemetry`]: logs, and request spans exported over OTLP (`--otlp-endpoint`).

pub mod agreement;
pub mod api;
pub mod auth;
pub mod batch;
pub mod cache;
pub mod config;
pub mod grpc;
pub mod metrics;
pub mod model;
pub mod rerank;
pub mod runtime;
pub mod server;
pub mod serving;
pub mod telemetry;
