//! Command-line flags; each has an environment variable of the same meaning.
//!
//! Defaults are sized for a small CPU machine; `/info` reports the values in force and the
//! README's configuration table lists them.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Parser, ValueEnum};

use crate::auth::{ApiKeys, Secret};
use crate::batch::BatcherConfig;
use crate::rerank::Limits;
use crate::serving::registry::{ModelDefaults, QueueLimits};
use crate::serving::reload::ModelSource;
use crate::telemetry::OtlpConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Clone, Parser)]
#[command(
    name = "rradistill",
    version,
    about = "Re-ranking service for RRADistill students"
)]
pub struct Config {
    /// Model folder to serve (model.onnx, tokenizer.json, manifest.json).
    #[arg(long, env = "MODEL_DIR", required_unless_present = "models_file")]
    pub model_dir: Option<PathBuf>,

    /// Models file (TOML) listing several models, experiments and shadows (see the README);
    /// reloaded by `POST /admin/reload` and SIGHUP. When given, `--model-dir` is ignored.
    #[arg(long, env = "MODELS_FILE")]
    pub models_file: Option<PathBuf>,

    /// ONNX Runtime shared library to load.
    #[arg(
        long,
        env = "ORT_DYLIB_PATH",
        default_value = ".runtime/onnxruntime/libonnxruntime.so.1.32.0"
    )]
    pub ort_dylib_path: PathBuf,

    /// Address to listen on.
    #[arg(long, env = "HOST", default_value = "0.0.0.0")]
    pub host: String,

    /// HTTP port.
    #[arg(long, env = "PORT", default_value_t = 8080)]
    pub port: u16,

    /// gRPC port (same process, same batcher, cache and limits as HTTP).
    #[arg(long, env = "GRPC_PORT", default_value_t = 50051)]
    pub grpc_port: u16,

    /// ONNX Runtime sessions, each driven by its own inference thread. Two single-threaded
    /// sessions outran one two-threaded session on 2 cores (README, performance).
    #[arg(long, env = "SESSIONS", default_value_t = 2)]
    pub sessions: usize,

    /// Intra-op threads per session (0 = available cores divided by sessions).
    #[arg(long, env = "INTRA_THREADS", default_value_t = 0)]
    pub intra_threads: usize,

    /// Most tokens in one batch, padding included (longest pair x pairs).
    #[arg(long, env = "MAX_BATCH_TOKENS", default_value_t = 16384)]
    pub max_batch_tokens: usize,

    /// Most pairs in one batch.
    #[arg(long, env = "MAX_BATCH_SIZE", default_value_t = 16)]
    pub max_batch_size: usize,

    /// The most of a batch's padded tokens that may be padding, 0 to 1 (the oldest pair always
    /// goes in). Default: 0.1 for a model on CPU, where a pair costs its padded tokens whatever
    /// the batch size; no limit on a GPU.
    #[arg(long, env = "MAX_BATCH_PADDING")]
    pub max_batch_padding: Option<f64>,

    /// Admission's wait target, in milliseconds: a request is refused with 429 when the work
    /// queued ahead of it is expected to take longer than this to clear (queued tokens over
    /// the throughput the model is measured to sustain). An empty queue admits any request.
    #[arg(long, env = "MAX_QUEUE_WAIT_MS", default_value_t = 2_000)]
    pub max_queue_wait_ms: u64,

    /// Standard deviations of answered requests' lateness (their time to the last score over
    /// what the queue predicted) added to its mean when admission scales the expected wait:
    /// 2 keeps nearly every admitted request within the wait target plus its own service
    /// time; 0 keeps the typical one, and admits more under overload. 0 to 10.
    #[arg(long, env = "QUEUE_WAIT_SPREAD", default_value_t = crate::batch::admission::SPREAD)]
    pub queue_wait_spread: f64,

    /// Tokens held (being tokenized, queued or in inference), over all requests: a hard
    /// memory cap; past it new requests get 429. It is also the most tokens one request may
    /// carry (a larger one gets 413).
    #[arg(long, env = "MAX_QUEUE_TOKENS", default_value_t = 262_144)]
    pub max_queue_tokens: usize,

    /// Requests admitted and not yet answered; past it new requests get 429.
    #[arg(long, env = "MAX_CONCURRENT_REQUESTS", default_value_t = 512)]
    pub max_concurrent_requests: usize,

    /// Most documents in one request (413 past it).
    #[arg(long, env = "MAX_DOCUMENTS", default_value_t = 1000)]
    pub max_documents: usize,

    /// Most tokens in a query (0 = half the model's window; a late model's query window).
    #[arg(long, env = "MAX_QUERY_TOKENS", default_value_t = 0)]
    pub max_query_tokens: usize,

    /// Most bytes in a request body (413 past it).
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Cut documents over the model's window when a request does not say (TEI's `truncate`
    /// absent); `--auto-truncate=false` refuses them with 422 instead, as TEI does by default.
    #[arg(long, env = "AUTO_TRUNCATE", default_value_t = true, action = ArgAction::Set)]
    pub auto_truncate: bool,

    /// Read a document longer than the window in up to this many chunks (consecutive
    /// windows overlapping by a quarter) and score it as its best chunk, as Cohere does; 1
    /// cuts it to one window. A request's `max_chunks_per_doc` asks for fewer, never more.
    /// Each chunk costs a pair.
    #[arg(long, env = "MAX_CHUNKS_PER_DOCUMENT", default_value_t = 1)]
    pub max_chunks_per_document: usize,

    /// Deadline for one re-rank request, in milliseconds (504 past it).
    #[arg(long, env = "REQUEST_TIMEOUT_MS", default_value_t = 30_000)]
    pub request_timeout_ms: u64,

    /// On SIGTERM/SIGINT, how long accepted requests get to finish, in seconds.
    #[arg(long, env = "DRAIN_TIMEOUT_SECS", default_value_t = 30)]
    pub drain_timeout_secs: u64,

    /// Score cache size in entries (0 disables the cache).
    #[arg(long, env = "CACHE_CAPACITY", default_value_t = 100_000)]
    pub cache_capacity: u64,

    /// Score cache time-to-live in seconds.
    #[arg(long, env = "CACHE_TTL_SECS", default_value_t = 3600)]
    pub cache_ttl_secs: u64,

    /// API keys clients send as `Authorization: Bearer KEY` (comma-separated; none = open).
    /// `/health`, `/ready` and `/metrics` never need one.
    #[arg(long, env = "API_KEY", value_delimiter = ',', hide_env_values = true)]
    pub api_key: Vec<Secret>,

    /// Keys for admin endpoints (comma-separated); admin endpoints are off without one.
    #[arg(
        long,
        env = "ADMIN_API_KEY",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub admin_api_key: Vec<Secret>,

    /// Log format; the level comes from RUST_LOG (default info).
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,

    /// OpenTelemetry collector (OTLP over gRPC, e.g. `http://otel-collector:4317`) to export
    /// every request's spans to; none by default. A caller's W3C `traceparent` makes the
    /// request's span a child of the caller's. `OTEL_BSP_*` variables tune the batching.
    #[arg(long, env = "OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,

    /// `service.name` of the exported spans.
    #[arg(long, env = "OTLP_SERVICE_NAME", default_value = "rradistill")]
    pub otlp_service_name: String,
}

impl Config {
    /// Where request spans go.
    pub fn otlp(&self) -> OtlpConfig {
        OtlpConfig {
            endpoint: self.otlp_endpoint.clone().filter(|e| !e.trim().is_empty()),
            service_name: self.otlp_service_name.clone(),
        }
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    pub fn drain_timeout(&self) -> Duration {
        Duration::from_secs(self.drain_timeout_secs)
    }

    /// Where the models come from: the models file, else the one model folder.
    pub fn model_source(&self) -> ModelSource {
        match (&self.models_file, &self.model_dir) {
            (Some(file), _) => ModelSource::ModelsFile(file.clone()),
            (None, Some(dir)) => ModelSource::ModelDir(dir.clone()),
            (None, None) => ModelSource::Fixed,
        }
    }

    /// What a model gets when the models file does not say.
    pub fn model_defaults(&self) -> ModelDefaults {
        ModelDefaults {
            sessions: self.sessions,
            intra_threads: self.intra_threads,
            limits: QueueLimits {
                batch: BatcherConfig {
                    max_batch_tokens: self.max_batch_tokens,
                    max_batch_size: self.max_batch_size,
                    max_batch_padding: self.max_batch_padding,
                },
                max_concurrent_requests: self.max_concurrent_requests,
                max_queue_tokens: self.max_queue_tokens,
                max_queue_wait: Duration::from_millis(self.max_queue_wait_ms),
                queue_wait_spread: self.queue_wait_spread,
            },
        }
    }

    /// The limits every request is held to, whatever its model.
    pub fn limits(&self) -> Limits {
        Limits {
            max_documents: self.max_documents,
            max_query_tokens: self.max_query_tokens,
            max_body_bytes: self.max_body_bytes,
            request_timeout_ms: self.request_timeout_ms,
            auto_truncate: self.auto_truncate,
            max_chunks_per_document: self.max_chunks_per_document,
        }
    }

    pub fn api_keys(&self) -> ApiKeys {
        ApiKeys::new(self.api_key.clone(), self.admin_api_key.clone())
    }

    /// Flags that contradict each other, said in words an operator can act on.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("--sessions", self.sessions),
            ("--max-batch-tokens", self.max_batch_tokens),
            ("--max-batch-size", self.max_batch_size),
            ("--max-queue-tokens", self.max_queue_tokens),
            ("--max-concurrent-requests", self.max_concurrent_requests),
            ("--max-documents", self.max_documents),
            ("--max-body-bytes", self.max_body_bytes),
            ("--max-chunks-per-document", self.max_chunks_per_document),
        ];
        for (flag, value) in positive {
            if value == 0 {
                return Err(format!("{flag} must be at least 1"));
            }
        }
        if self.request_timeout_ms == 0 {
            return Err("--request-timeout-ms must be at least 1".into());
        }
        if let Some(padding) = self.max_batch_padding {
            crate::batch::check_padding(padding)
                .map_err(|why| format!("--max-batch-padding {why}"))?;
        }
        crate::batch::admission::check_spread(self.queue_wait_spread)
            .map_err(|why| format!("--queue-wait-spread {why}"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn otlp_of(args: &[&str]) -> OtlpConfig {
        let mut all = vec!["rradistill", "--model-dir", "m"];
        all.extend_from_slice(args);
        Config::try_parse_from(all).unwrap().otlp()
    }

    #[test]
    fn counts_of_zero_are_refused_by_name() {
        for flag in ["--max-chunks-per-document", "--max-documents", "--sessions"] {
            let config =
                Config::try_parse_from(["rradistill", "--model-dir", "m", flag, "0"]).unwrap();
            assert_eq!(
                config.validate().unwrap_err(),
                format!("{flag} must be at least 1")
            );
        }
        let config = Config::try_parse_from(["rradistill", "--model-dir", "m"]).unwrap();
        assert_eq!(
            config.limits().max_chunks_per_document,
            1,
            "one window by default"
        );
    }

    #[test]
    fn an_empty_otlp_endpoint_exports_nothing() {
        // Compose and Kubernetes pass `OTLP_ENDPOINT=` when none is wanted.
        assert_eq!(otlp_of(&["--otlp-endpoint", ""]).endpoint, None);
        assert_eq!(otlp_of(&["--otlp-endpoint", "  "]).endpoint, None);
        assert_eq!(otlp_of(&[]).endpoint, None);
        let set = otlp_of(&["--otlp-endpoint", "http://collector:4317"]);
        assert_eq!(set.endpoint.as_deref(), Some("http://collector:4317"));
        assert_eq!(set.service_name, "rradistill");
    }
}
