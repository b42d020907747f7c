//! rradistill: an online re-ranking service for small students distilled from an LLM's
//! ranking ability (RRADistill, EMNLP 2024).
//!
//! A request travels down the modules in this order, and each concern lives in one of them:
//! - [`api`]: the wire: REST dialects (Cohere/Jina-style, TEI-style), operational endpoints,
//!   error bodies and timing headers. Thin: it translates, then calls [`rerank`].
//! - [`grpc`]: the same operation over gRPC (`proto/rerank.proto`), with health and reflection.
//! - [`rerank`]: the dialect-free re-rank operation: limits, cache, tokenization, admission,
//!   the wait for scores, sorting, and the per-request metrics returned to the caller.
//! - [`batch`]: admission control (per request and per token) and the cross-request batcher
//!   that packs (query, document) work items into length-grouped batches for the workers.
//! - [`model`]: the `Ranker` trait, model folders and their manifest, the students (encoder
//!   and decoder) on ONNX Runtime sessions and execution providers, the models file, and the
//!   registry that routes requests to models, experiment variants and shadows.
//! - [`agreement`]: how far two rankings agree (shadow mode's metrics).
//! - [`cache`], [`metrics`]: the score cache and the Prometheus metrics.
//! - [`auth`]: API keys (client and admin), checked in constant time.
//! - [`runtime`], [`config`], [`server`]: loading ONNX Runtime, the CLI, start-up and drain.

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
