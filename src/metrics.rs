//! Prometheus metrics, exposed at `/metrics` in the text format.
//!
//! Names follow Hugging Face TEI's `te_*` where the meaning is the same, so dashboards built
//! for TEI work unchanged; what TEI lacks is `rradistill_*`. Every series carries a `model`
//! label (sum over it for TEI's unlabelled view). Durations are in seconds; counters end in
//! `_total` and durations in `_seconds`, as Prometheus' conventions ask (TEI's `te_*` names are
//! kept as TEI has them). The process itself (`process_*`: resident memory, CPU seconds, open
//! file descriptors, start time) and `rradistill_build_info` come with every scrape. The
//! README's metrics table documents each one.

use prometheus::{
    exponential_buckets, linear_buckets, Encoder, GaugeVec, HistogramOpts, HistogramVec,
    IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub request_count: IntCounterVec,
    pub request_success: IntCounterVec,
    pub request_failure: IntCounterVec,
    pub request_duration: HistogramVec,
    pub tokenization_duration: HistogramVec,
    pub queue_duration: HistogramVec,
    pub inference_duration: HistogramVec,
    pub input_length: HistogramVec,
    pub documents: HistogramVec,
    pub batch_size: HistogramVec,
    pub batch_tokens: HistogramVec,
    pub batch_inference_duration: HistogramVec,
    pub padding_ratio: HistogramVec,
    pub queue_size: IntGaugeVec,
    pub queued_tokens: IntGaugeVec,
    pub cache_hits: IntCounterVec,
    pub cache_misses: IntCounterVec,
    pub items_dropped: IntCounterVec,
    pub batch_failures: IntCounterVec,
    pub experiment_requests: IntCounterVec,
    pub shadow_comparisons: IntCounterVec,
    pub shadow_top1_agreements: IntCounterVec,
    pub shadow_kendall_tau: HistogramVec,
    pub reloads: IntCounterVec,
    /// Admission (`src/batch/admission.rs`): what it holds, targets, expects and measures.
    pub in_flight_requests: IntGaugeVec,
    pub max_queue_wait_seconds: GaugeVec,
    /// The configured limits, so dashboards and alerts divide by them instead of typing them.
    pub max_queued_tokens: IntGaugeVec,
    pub max_concurrent_requests: IntGaugeVec,
    pub expected_queue_wait_seconds: GaugeVec,
    pub throughput_tokens_per_second: GaugeVec,
    pub wait_estimate_correction: GaugeVec,
}

/// The handles of one model, label already applied.
#[derive(Clone)]
pub struct ModelMetrics {
    pub batch_size: prometheus::Histogram,
    pub batch_tokens: prometheus::Histogram,
    pub batch_inference_duration: prometheus::Histogram,
    pub padding_ratio: prometheus::Histogram,
    pub queue_size: prometheus::IntGauge,
    pub items_dropped: prometheus::IntCounter,
    pub batch_failures: prometheus::IntCounter,
}

fn seconds() -> Vec<f64> {
    exponential_buckets(0.0005, 2.0, 18).expect("static buckets")
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("unique metric");
        let build_info = IntGaugeVec::new(
            Opts::new(
                "rradistill_build_info",
                "Always 1; the labels say which build is running",
            ),
            &["version", "onnxruntime"],
        )
        .expect("valid metric");
        build_info
            .with_label_values(&[
                env!("CARGO_PKG_VERSION"),
                crate::runtime::loaded_version().unwrap_or("not loaded"),
            ])
            .set(1);
        registry
            .register(Box::new(build_info))
            .expect("unique metric");
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGaugeVec::new(Opts::new(name, help), &["model"]).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), &["model"])
                .expect("valid metric");
            registry
                .register(Box::new(h.clone()))
                .expect("unique metric");
            h
        };
        Metrics {
            request_count: counter("te_request_count", "Re-rank requests received (method: TEI's label, `batch` for a re-rank)", &["model", "method"]),
            request_success: counter("te_request_success", "Re-rank requests answered with scores (method: TEI's label, `batch` for a re-rank)", &["model", "method"]),
            request_failure: counter(
                "te_request_failure",
                "Re-rank requests that failed, by error kind (validation, too_large, overloaded, timeout, inference, dropped, unavailable)",
                &["model", "err"],
            ),
            request_duration: histogram("te_request_duration", "Re-rank request duration, seconds", seconds()),
            tokenization_duration: histogram(
                "te_request_tokenization_duration",
                "Time spent tokenizing a request, seconds",
                seconds(),
            ),
            queue_duration: histogram(
                "te_request_queue_duration",
                "Longest wait of a request's pairs for a batch, seconds",
                seconds(),
            ),
            inference_duration: histogram(
                "te_request_inference_duration",
                "Inference time of the batches a request's pairs ran in, seconds",
                seconds(),
            ),
            input_length: histogram(
                "te_request_input_length",
                "Tokens per (query, document) pair",
                exponential_buckets(8.0, 2.0, 13).expect("static buckets"),
            ),
            documents: histogram(
                "rradistill_request_documents",
                "Documents per re-rank request",
                exponential_buckets(1.0, 2.0, 12).expect("static buckets"),
            ),
            batch_size: histogram(
                "te_batch_next_size",
                "Pairs per batch",
                exponential_buckets(1.0, 2.0, 10).expect("static buckets"),
            ),
            batch_tokens: histogram(
                "te_batch_next_tokens",
                "Tokens per batch, padding included",
                exponential_buckets(16.0, 2.0, 14).expect("static buckets"),
            ),
            batch_inference_duration: histogram(
                "rradistill_batch_inference_duration_seconds",
                "ONNX Runtime time per batch, seconds",
                seconds(),
            ),
            padding_ratio: histogram(
                "rradistill_batch_padding_ratio",
                "Share of a batch's tokens that are padding",
                linear_buckets(0.0, 0.05, 21).expect("static buckets"),
            ),
            queue_size: gauge("te_queue_size", "Pairs waiting for a batch"),
            queued_tokens: gauge("rradistill_queued_tokens", "Tokens admitted and not yet answered"),
            cache_hits: counter("rradistill_cache_hits_total", "Pairs answered from the score cache", &["model"]),
            cache_misses: counter("rradistill_cache_misses_total", "Pairs not in the score cache", &["model"]),
            items_dropped: counter(
                "rradistill_items_dropped_total",
                "Pairs dropped before inference because their request went away",
                &["model"],
            ),
            batch_failures: counter("rradistill_batch_failures_total", "Batches whose inference failed", &["model"]),
            experiment_requests: counter(
                "rradistill_experiment_requests_total",
                "Re-rank requests an experiment routed, by variant and how it was assigned (sticky, random, forced)",
                &["experiment", "variant", "by"],
            ),
            shadow_comparisons: counter(
                "rradistill_shadow_comparisons_total",
                "Requests scored again by a shadow model, by outcome (compared, skipped_overloaded, failed)",
                &["model", "shadow", "outcome"],
            ),
            shadow_top1_agreements: counter(
                "rradistill_shadow_top1_agreements_total",
                "Shadow comparisons where both models ranked the same document first",
                &["model", "shadow"],
            ),
            shadow_kendall_tau: {
                let h = HistogramVec::new(
                    HistogramOpts::new(
                        "rradistill_shadow_kendall_tau",
                        "Kendall tau-b between the served ranking and the shadow model's",
                    )
                    .buckets(linear_buckets(-0.9, 0.1, 19).expect("static buckets")),
                    &["model", "shadow"],
                )
                .expect("valid metric");
                registry.register(Box::new(h.clone())).expect("unique metric");
                h
            },
            reloads: counter("rradistill_reloads_total", "Model reloads, by outcome (ok, failed)", &["outcome"]),
            in_flight_requests: gauge(
                "rradistill_in_flight_requests",
                "Re-rank requests admitted and not yet answered",
            ),
            max_queue_wait_seconds: float_gauge(
                &registry,
                "rradistill_max_queue_wait_seconds",
                "The admission wait target (--max-queue-wait-ms), seconds",
            ),
            max_queued_tokens: gauge(
                "rradistill_max_queued_tokens",
                "The admission token budget (--max-queue-tokens): queued tokens above it get 429",
            ),
            max_concurrent_requests: gauge(
                "rradistill_max_concurrent_requests",
                "The admission request limit (--max-concurrent-requests)",
            ),
            expected_queue_wait_seconds: float_gauge(
                &registry,
                "rradistill_expected_queue_wait_seconds",
                "Admission's estimate of the wait for the work queued: queued tokens over the measured throughput, times the wait correction, seconds",
            ),
            throughput_tokens_per_second: float_gauge(
                &registry,
                "rradistill_throughput_tokens_per_second",
                "Tokens per second the model is measured to score (moving average over its batches, all sessions)",
            ),
            wait_estimate_correction: float_gauge(
                &registry,
                "rradistill_wait_estimate_correction",
                "Answered requests' time from admission to their last score over what was predicted (queued and own tokens over the throughput, the last batch on one session): moving mean plus --queue-wait-spread standard deviations, weighed by the work ahead (admission scales its wait estimate by it)",
            ),
            registry,
        }
    }

    pub fn for_model(&self, model: &str) -> ModelMetrics {
        let l = &[model];
        ModelMetrics {
            batch_size: self.batch_size.with_label_values(l),
            batch_tokens: self.batch_tokens.with_label_values(l),
            batch_inference_duration: self.batch_inference_duration.with_label_values(l),
            padding_ratio: self.padding_ratio.with_label_values(l),
            queue_size: self.queue_size.with_label_values(l),
            items_dropped: self.items_dropped.with_label_values(l),
            batch_failures: self.batch_failures.with_label_values(l),
        }
    }

    /// The registry in Prometheus' text exposition format.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        let encoder = TextEncoder::new();
        if let Err(error) = encoder.encode(&self.registry.gather(), &mut buffer) {
            tracing::error!(%error, "cannot encode metrics");
        }
        String::from_utf8(buffer).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// A gauge of fractional values with a `model` label, registered in `registry`.
fn float_gauge(registry: &Registry, name: &str, help: &str) -> GaugeVec {
    let g = GaugeVec::new(Opts::new(name, help), &["model"]).expect("valid metric");
    registry
        .register(Box::new(g.clone()))
        .expect("unique metric");
    g
}
