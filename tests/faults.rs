//! Faults: an ONNX Runtime error in one batch fails only the requests in that batch, with a
//! 500 that says so (and the request id, never the runtime's own text, which goes to the
//! log), and the service keeps serving. The fixture is a real graph that fails at run time
//! (an impossible Reshape) on any batch holding the word "poison".

mod common;

use common::{documents, TestServer};
use futures::future::join_all;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_batch_fails_only_its_requests() {
    let faulty = common::fixtures().join("encoder-faulty");
    assert!(faulty.join("model.onnx").is_file(), "run `make fixtures`");
    // One pair per batch, so a poisoned pair shares its batch with nobody.
    let server =
        TestServer::start_with(&faulty, &["--max-batch-size", "1", "--cache-capacity", "0"]).await;

    let mut poisoned = documents(10, 1);
    poisoned[7] = "this document carries poison for the graph".into();
    let clean: Vec<_> = (0..4)
        .map(|i| json!({"query": format!("clean {i}"), "documents": documents(10, i + 2)}))
        .collect();
    let bad = json!({"query": "a query", "documents": poisoned});
    let mut calls = vec![server.post("/v1/rerank", &bad)];
    calls.extend(clean.iter().map(|c| server.post("/v1/rerank", c)));
    let answers = join_all(calls).await;

    let (status, headers, body) = &answers[0];
    assert_eq!(*status, 500, "{body}");
    assert_eq!(body["error"]["type"], "inference");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        !message.contains("Reshape") && !message.to_lowercase().contains("onnx"),
        "the runtime's text stays in the log: {body}"
    );
    let id = headers["x-request-id"].to_str().unwrap();
    assert!(
        message.contains(id),
        "the message names the request id to quote: {body}"
    );
    for (status, _, body) in &answers[1..] {
        assert_eq!(*status, 200, "a request in other batches failed: {body}");
    }
    assert_eq!(server.metric("rradistill_batch_failures_total").await, 1.0);
    let (_, text) = server.get_text("/metrics").await;
    assert!(
        text.contains(r#"te_request_failure{err="inference",model="encoder-faulty-fixture"} 1"#),
        "{text}"
    );

    // The service keeps serving, TEI's body included.
    for _ in 0..3 {
        let (status, _, _) = server.post("/v1/rerank", &clean[0]).await;
        assert_eq!(status, 200);
    }
    // TEI's route answers TEI's 424 for a failed inference.
    let (status, _, body) = server
        .post("/rerank", &json!({"query": "q", "texts": ["poison again"]}))
        .await;
    assert_eq!(status, 424);
    assert_eq!(body["error_type"], "backend");
    let (status, _) = server.get_text("/ready").await;
    assert_eq!(status, 200);
    server.stop().await;
}

/// A log that cannot be written (stderr on a full device) must not stop the service.
#[test]
fn an_unwritable_log_does_not_stop_the_service() {
    use std::process::Stdio;

    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full exists on Linux");
    let mut service = common::ServiceProcess::spawn(
        &[],
        &[("RUST_LOG", "debug")],
        Stdio::from(full.try_clone().unwrap()),
        Stdio::from(full),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        service.wait_ready().await;
        let client = reqwest::Client::new();
        for i in 0..20 {
            let body = json!({"query": format!("q {i}"), "documents": documents(5, i)});
            let response = client
                .post(format!("{}/v1/rerank", service.base))
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            // Errors log at warn level: they must not hurt either.
            let bad = client
                .post(format!("{}/v1/rerank", service.base))
                .body("{")
                .header("content-type", "application/json")
                .send()
                .await
                .unwrap();
            assert_eq!(bad.status(), 400);
        }
    });
    service.terminate();
    let status = service.child.wait().unwrap();
    assert!(status.success(), "exit status {status:?}");
}
