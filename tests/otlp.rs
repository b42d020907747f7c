//! `--otlp-endpoint`: the binary exports each request's spans to an OTLP/gRPC collector, here
//! an in-process receiver (opentelemetry-proto's own `TraceService`) on loopback.
//! HTTP and gRPC requests (`rradistill.v1` and TEI's `tei.v1`, each under its own span name)
//! that carry a W3C `traceparent` come back as children of the
//! caller's span, with the pipeline's `rerank`, `tokenize` and `score` spans inside; a
//! collector that is down costs requests nothing; an endpoint that is not a URI stops
//! start-up with a message naming the flag.

mod common;

use std::collections::HashMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use rradistill::grpc::pb::rerank_client::RerankClient;
use rradistill::grpc::pb::RerankRequest;
use rradistill::grpc::tei::pb::rerank_client::RerankClient as TeiRerankClient;
use rradistill::grpc::tei::pb::RerankRequest as TeiRerankRequest;
use serde_json::json;
use tokio::sync::mpsc;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN_ID: &str = "00f067aa0ba902b7";

/// The collector: every export request it is sent, in order.
struct Receiver(mpsc::UnboundedSender<ExportTraceServiceRequest>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let _ = self.0.send(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

async fn start_receiver() -> (String, mpsc::UnboundedReceiver<ExportTraceServiceRequest>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (sender, exports) = mpsc::unbounded_channel();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Receiver(sender)))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    (format!("http://{address}"), exports)
}

/// A received span, flattened: its resource's service name and its attributes as text.
#[derive(Debug, Clone)]
struct Span {
    service: String,
    name: String,
    kind: i32,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    attributes: HashMap<String, String>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text(attributes: &[KeyValue]) -> HashMap<String, String> {
    attributes
        .iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Value::StringValue(s)) => s.clone(),
                Some(Value::IntValue(i)) => i.to_string(),
                Some(Value::BoolValue(b)) => b.to_string(),
                Some(Value::DoubleValue(d)) => d.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

fn flatten(export: ExportTraceServiceRequest) -> Vec<Span> {
    let mut spans = Vec::new();
    for resource_spans in export.resource_spans {
        let service = resource_spans
            .resource
            .map(|r| text(&r.attributes))
            .and_then(|a| a.get("service.name").cloned())
            .unwrap_or_default();
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                spans.push(Span {
                    service: service.clone(),
                    name: span.name,
                    kind: span.kind,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    attributes: text(&span.attributes),
                });
            }
        }
    }
    spans
}

/// Receives exports into `seen` until `found` finds what it looks for in them (30 s at most).
async fn collect_until<T>(
    exports: &mut mpsc::UnboundedReceiver<ExportTraceServiceRequest>,
    seen: &mut Vec<Span>,
    what: &str,
    found: impl Fn(&[Span]) -> Option<T>,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(hit) = found(seen) {
            return hit;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "{what} never reached the collector; got {seen:#?}"
        );
        if let Ok(Some(export)) = tokio::time::timeout(left, exports.recv()).await {
            seen.extend(flatten(export));
        }
    }
}

/// The span of the request `request_id` (HTTP `request` or gRPC `grpc_request`).
fn root_of(seen: &[Span], request_id: &str) -> Option<Span> {
    seen.iter()
        .find(|s| s.attributes.get("id").map(String::as_str) == Some(request_id))
        .cloned()
}

/// Every span of the trace `request_id` started, once all have arrived: the request's own,
/// then the pipeline's `rerank` followed by the (at least two) spans inside it.
async fn trace_of(
    exports: &mut mpsc::UnboundedReceiver<ExportTraceServiceRequest>,
    seen: &mut Vec<Span>,
    request_id: &str,
) -> (Span, Vec<Span>) {
    let what = format!("the spans of {request_id}");
    collect_until(exports, seen, &what, |seen| {
        let root = root_of(seen, request_id)?;
        let rerank = seen
            .iter()
            .find(|s| s.name == "rerank" && s.parent_span_id == root.span_id)?
            .clone();
        let inside: Vec<Span> = seen
            .iter()
            .filter(|s| s.parent_span_id == rerank.span_id)
            .cloned()
            .collect();
        (inside.len() >= 2).then(|| {
            let mut all = vec![rerank];
            all.extend(inside);
            (root, all)
        })
    })
    .await
}

fn check_pipeline(root: &Span, pipeline: &[Span], documents: usize) {
    let rerank = &pipeline[0];
    assert_eq!(rerank.trace_id, TRACE_ID);
    assert_eq!(rerank.attributes["model"], "encoder-mini-fixture");
    assert_eq!(rerank.attributes["documents"], documents.to_string());
    assert_eq!(rerank.attributes["cached"], "0");
    let names: Vec<&str> = pipeline[1..].iter().map(|s| s.name.as_str()).collect();
    assert!(
        names.contains(&"tokenize") && names.contains(&"score"),
        "{names:?}"
    );
    let score = pipeline.iter().find(|s| s.name == "score").unwrap();
    assert_eq!(score.attributes["pairs"], documents.to_string());
    assert!(score.attributes["tokens"].parse::<u64>().unwrap() >= documents as u64);
    assert!(score.attributes["batches"].parse::<u64>().unwrap() >= 1);
    for span in pipeline {
        assert_eq!(span.service, root.service);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_spans_reach_the_collector_inside_the_callers_trace() {
    let (endpoint, mut exports) = start_receiver().await;
    let mut service = common::ServiceProcess::spawn(
        &[
            "--otlp-endpoint",
            &endpoint,
            "--otlp-service-name",
            "rradistill-under-test",
            "--cache-capacity",
            "0",
        ],
        &[("OTEL_BSP_SCHEDULE_DELAY", "100")],
        Stdio::null(),
        Stdio::null(),
    );
    service.wait_ready().await;
    let traceparent = format!("00-{TRACE_ID}-{CALLER_SPAN_ID}-01");
    let mut seen = Vec::new();

    // HTTP: the `request` span is the caller's child, the pipeline's spans are its children.
    let documents = common::documents(3, 5);
    let response = reqwest::Client::new()
        .post(format!("{}/v1/rerank", service.base))
        .header("traceparent", &traceparent)
        .header("x-request-id", "otlp-http-1")
        .json(&json!({"query": "how do I install a .deb file", "documents": documents}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (root, pipeline) = trace_of(&mut exports, &mut seen, "otlp-http-1").await;
    assert_eq!(root.name, "POST /v1/rerank");
    assert_eq!(root.service, "rradistill-under-test");
    assert_eq!(root.kind, SpanKind::Server as i32);
    assert_eq!(root.trace_id, TRACE_ID);
    assert_eq!(root.parent_span_id, CALLER_SPAN_ID);
    assert_eq!(root.attributes["http.response.status_code"], "200");
    check_pipeline(&root, &pipeline, 3);

    // gRPC: the same, from `traceparent` metadata.
    let mut client = RerankClient::connect(service.grpc_base.clone())
        .await
        .unwrap();
    let mut call = tonic::Request::new(RerankRequest {
        query: "which man section documents library calls".into(),
        documents: common::documents(4, 9),
        ..Default::default()
    });
    call.metadata_mut()
        .insert("traceparent", traceparent.parse().unwrap());
    call.metadata_mut()
        .insert("x-request-id", "otlp-grpc-1".parse().unwrap());
    client.rerank(call).await.unwrap();
    let (root, pipeline) = trace_of(&mut exports, &mut seen, "otlp-grpc-1").await;
    assert_eq!(root.name, "rradistill.v1.Rerank/Rerank");
    assert_eq!(root.kind, SpanKind::Server as i32);
    assert_eq!(root.trace_id, TRACE_ID);
    assert_eq!(root.parent_span_id, CALLER_SPAN_ID);
    check_pipeline(&root, &pipeline, 4);

    // TEI's gRPC: the same, under TEI's service name.
    let mut tei = TeiRerankClient::connect(service.grpc_base.clone())
        .await
        .unwrap();
    let mut call = tonic::Request::new(TeiRerankRequest {
        query: "tuple versus list".into(),
        texts: common::documents(2, 4),
        ..Default::default()
    });
    call.metadata_mut()
        .insert("traceparent", traceparent.parse().unwrap());
    call.metadata_mut()
        .insert("x-request-id", "otlp-tei-1".parse().unwrap());
    tei.rerank(call).await.unwrap();
    let (root, pipeline) = trace_of(&mut exports, &mut seen, "otlp-tei-1").await;
    assert_eq!(root.name, "tei.v1.Rerank/Rerank");
    assert_eq!(root.trace_id, TRACE_ID);
    assert_eq!(root.parent_span_id, CALLER_SPAN_ID);
    check_pipeline(&root, &pipeline, 2);

    // Without a `traceparent`, a request starts a trace of its own.
    let response = reqwest::Client::new()
        .post(format!("{}/v1/rerank", service.base))
        .header("x-request-id", "otlp-http-2")
        .json(&json!({"query": "set the locale", "documents": common::documents(2, 1)}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let root = collect_until(&mut exports, &mut seen, "the span of otlp-http-2", |seen| {
        root_of(seen, "otlp-http-2")
    })
    .await;
    assert_ne!(root.trace_id, TRACE_ID);
    assert!(root.parent_span_id.is_empty(), "{root:?}");

    service.terminate();
    let status = service.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_is_down_costs_requests_nothing() {
    // Nothing listens on this port: every export fails, and requests are answered anyway.
    let endpoint = format!("http://127.0.0.1:{}", common::free_port());
    let mut service = common::ServiceProcess::spawn(
        &["--otlp-endpoint", &endpoint],
        &[("OTEL_BSP_SCHEDULE_DELAY", "50")],
        Stdio::null(),
        Stdio::null(),
    );
    service.wait_ready().await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    for i in 0..5 {
        let response = client
            .post(format!("{}/v1/rerank", service.base))
            .json(&json!({"query": format!("query {i}"), "documents": common::documents(3, i)}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    assert!(
        service.child.try_wait().unwrap().is_none(),
        "the service died"
    );
    service.terminate();
    let status = service.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn an_endpoint_that_is_not_a_uri_stops_start_up_naming_the_flag() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_rradistill"))
        .args(["--model-dir", common::encoder_fixture().to_str().unwrap()])
        .args(["--ort-dylib-path", common::ort_library().to_str().unwrap()])
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &common::free_port().to_string(),
        ])
        .args(["--grpc-port", &common::free_port().to_string()])
        .args(["--otlp-endpoint", "not a uri"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--otlp-endpoint"), "{stderr}");
}
