//! How the process reports what it does, besides metrics: logs on stderr and, when
//! `--otlp-endpoint` is given, every request's spans exported over OTLP/gRPC.
//!
//! Spans are the `tracing` spans the service already opens (`request` for HTTP,
//! `grpc_request` for gRPC, and inside them `rerank`, `tokenize` and `score` from
//! `src/rerank/pipeline.rs`); `tracing-opentelemetry` turns them into OpenTelemetry spans and
//! the SDK's batch processor ships them from its own thread, so a slow or absent collector
//! costs a request nothing (spans past the processor's queue are dropped, never waited for).
//! A caller's W3C `traceparent` header (HTTP) or metadata entry (gRPC) makes the request's
//! span a child of the caller's, so a search frontend's trace shows its re-rank call.
//! The batch processor reads the standard `OTEL_BSP_*` variables.

use std::sync::OnceLock;

use anyhow::Context as _;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::Context;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::LogFormat;

/// The propagator, set only when spans are exported: without it, reading a caller's
/// trace context would be work for nothing.
static PROPAGATOR: OnceLock<TraceContextPropagator> = OnceLock::new();

/// Where spans go, from the command line.
#[derive(Debug, Clone, Default)]
pub struct OtlpConfig {
    /// The collector's OTLP/gRPC address (`http://host:4317`); `None` exports nothing.
    pub endpoint: Option<String>,
    /// The `service.name` resource attribute of every exported span.
    pub service_name: String,
}

/// What must be flushed before the process exits.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Sets the global subscriber: the log format on stderr, filtered by `RUST_LOG`
    /// (default `info,ort=warn`), plus the OTLP exporter when configured. Must run inside
    /// the Tokio runtime that will outlive the exporter (its gRPC channel lives there).
    pub fn init(format: LogFormat, otlp: &OtlpConfig) -> anyhow::Result<Telemetry> {
        let filter =
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,ort=warn"));
        // A log that cannot be written (full disk, closed pipe) must never stop the service:
        // tracing-subscriber would otherwise report the failure with eprintln!, which panics.
        let logs = tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .log_internal_errors(false);
        let logs = match format {
            LogFormat::Json => logs.json().with_current_span(true).boxed(),
            LogFormat::Human => logs.boxed(),
        };
        let provider = otlp
            .endpoint
            .as_deref()
            .map(|endpoint| exporter(endpoint, otlp))
            .transpose()?;
        let spans = provider.as_ref().map(|provider| {
            tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("rradistill"))
                .with_tracked_inactivity(false)
        });
        tracing_subscriber::registry()
            .with(filter)
            .with(logs)
            .with(spans)
            .try_init()
            .context("a global tracing subscriber was already set")?;
        if let (Some(_), Some(endpoint)) = (&provider, &otlp.endpoint) {
            let _ = PROPAGATOR.set(TraceContextPropagator::new());
            tracing::info!(endpoint = %endpoint, service_name = %otlp.service_name,
                "exporting request spans over OTLP");
        }
        Ok(Telemetry { provider })
    }

    /// Sends the spans still queued; call once the server has stopped.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider {
            if let Err(error) = provider.shutdown() {
                tracing::warn!("could not flush the last spans to the OTLP collector: {error}");
            }
        }
    }
}

fn exporter(endpoint: &str, otlp: &OtlpConfig) -> anyhow::Result<SdkTracerProvider> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .with_context(|| format!("--otlp-endpoint {endpoint:?}: cannot build the OTLP exporter"))?;
    let resource = Resource::builder()
        .with_service_name(otlp.service_name.clone())
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// The caller's trace context named in `headers` (W3C `traceparent`; gRPC metadata reads
/// as headers too): `None`, at the cost of one look-up, when spans are not exported or the
/// caller sent none.
pub fn caller_trace(headers: &axum::http::HeaderMap) -> Option<Context> {
    let propagator = PROPAGATOR.get()?;
    if !headers.contains_key("traceparent") {
        return None;
    }
    Some(propagator.extract(&Headers(headers)))
}

/// Makes `span` a child of `caller`'s span, when there is one.
pub fn adopt(span: &tracing::Span, caller: Option<&Context>) {
    if let Some(caller) = caller {
        // Fails only when the span is disabled (filtered out): nothing to attach then.
        let _ = span.set_parent(caller.clone());
    }
}

/// [`adopt`] of the [`caller_trace`] in `headers`.
pub fn adopt_caller_trace(span: &tracing::Span, headers: &axum::http::HeaderMap) {
    adopt(span, caller_trace(headers).as_ref());
}

struct Headers<'a>(&'a axum::http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|name| name.as_str()).collect()
    }
}
