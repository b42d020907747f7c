//! Admission by expected wait, over a real server: with the model's throughput measured (one
//! batch at start, then every batch), a request that would wait past `--max-queue-wait-ms` behind the queued work is
//! refused at once with 429 saying so, one that would not is served, and the admission
//! gauges (`rradistill_in_flight_requests`, `..._queued_tokens`, `..._max_queue_wait_seconds`,
//! `..._expected_queue_wait_seconds`, `..._throughput_tokens_per_second`,
//! `..._wait_estimate_correction`) are exported; an answered request teaches the correction.

mod common;

use common::{documents, TestServer};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_would_wait_past_the_target_is_refused_at_once() {
    let server = TestServer::start(&[
        "--max-queue-wait-ms",
        "500",
        "--max-queue-tokens",
        "100000000",
        "--cache-capacity",
        "0",
    ])
    .await;
    let model = server.service().registry().get(None).unwrap();
    // The batcher measured one batch at start: the rate is known before any request.
    let started_with = model.admission.throughput().expect("measured at start");
    assert!(started_with > 0.0);
    // A request that finds work queued ahead of it (another client's, here held and never
    // scored) ...
    let ahead = model
        .admission
        .try_admit((started_with * 0.1) as usize)
        .unwrap();
    let (status, _, _) = server
        .post(
            "/v1/rerank",
            &json!({"query": "q", "documents": documents(20, 1)}),
        )
        .await;
    assert_eq!(status, 200);
    drop(ahead);
    let rate = model.admission.throughput().unwrap();
    // ... gets its last score some time other than predicted: the correction learned.
    let correction = model.admission.correction();
    assert_ne!(correction, 1.0);
    let (_, info) = server.get_text("/info").await;
    let info: serde_json::Value = serde_json::from_str(&info).unwrap();
    let reported = info["models"][0]["queue"]["wait_estimate_correction"]
        .as_f64()
        .unwrap();
    assert!(
        (reported - correction).abs() < 1e-9,
        "{reported} vs {correction}"
    );
    assert_eq!(
        info["models"][0]["queue"]["queue_wait_spread"],
        rradistill::batch::admission::SPREAD
    );

    // Another client's admitted work that takes ten times the target to clear.
    let queued = (rate * 5.0) as usize;
    let held = model.admission.try_admit(queued).unwrap();
    let (status, headers, body) = server
        .post(
            "/v1/rerank",
            &json!({"query": "q", "documents": documents(5, 2)}),
        )
        .await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(headers["retry-after"], "1");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("wait target of 500 ms"), "{message}");
    let (_, text) = server.get_text("/metrics").await;
    let expected_wait = common::metric_value(&text, "rradistill_expected_queue_wait_seconds");
    assert!(expected_wait > 0.5, "{expected_wait}");

    // Once it is answered the queue is empty, and the same request is served.
    drop(held);
    let (status, _, _) = server
        .post(
            "/v1/rerank",
            &json!({"query": "q", "documents": documents(5, 2)}),
        )
        .await;
    assert_eq!(status, 200);

    let (_, text) = server.get_text("/metrics").await;
    for name in [
        "rradistill_in_flight_requests",
        "rradistill_queued_tokens",
        "rradistill_max_queue_wait_seconds",
        "rradistill_expected_queue_wait_seconds",
        "rradistill_throughput_tokens_per_second",
        "rradistill_wait_estimate_correction",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(name)),
            "metric {name} missing"
        );
    }
    assert_eq!(
        common::metric_value(&text, "rradistill_max_queue_wait_seconds"),
        0.5
    );
    assert_eq!(
        common::metric_value(&text, "rradistill_in_flight_requests"),
        0.0
    );
    assert!(common::metric_value(&text, "rradistill_throughput_tokens_per_second") > 0.0);
    let learned = common::metric_value(&text, "rradistill_wait_estimate_correction");
    let (low, high) = rradistill::batch::admission::CORRECTION_RANGE;
    assert!(
        (low..=high).contains(&learned) && learned != 1.0,
        "{learned}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_the_cache_answers_whole_waits_behind_nobody() {
    let server = TestServer::start(&[
        "--max-queue-wait-ms",
        "500",
        "--max-queue-tokens",
        "100000000",
    ])
    .await;
    let model = server.service().registry().get(None).unwrap();
    let cached = json!({"query": "q", "documents": documents(20, 3)});
    let (status, _, _) = server.post("/v1/rerank", &cached).await;
    assert_eq!(status, 200);
    let rate = model.admission.throughput().expect("measured");
    let held = model.admission.try_admit((rate * 5.0) as usize).unwrap();
    let (status, _, body) = server.post("/v1/rerank", &cached).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["meta"]["cache_hits"], 20);
    let (status, _, _) = server
        .post(
            "/v1/rerank",
            &json!({"query": "q", "documents": documents(20, 4)}),
        )
        .await;
    assert_eq!(status, 429, "new work still waits its turn");
    drop(held);
    server.stop().await;
}
