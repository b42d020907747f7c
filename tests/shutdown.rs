//! SIGTERM with requests in flight: the process stops taking work, answers every request it
//! had accepted, and exits 0.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use futures::future::join_all;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_accepted_requests_and_exits_zero() {
    let mut service = common::ServiceProcess::spawn(
        &[
            "--cache-capacity",
            "0",
            "--max-batch-size",
            "8",
            "--max-queue-tokens",
            "4000000",
        ],
        &[],
        Stdio::null(),
        Stdio::null(),
    );
    service.wait_ready().await;
    let base = service.base.clone();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();

    const REQUESTS: usize = 8;
    let sends = (0..REQUESTS).map(|i| {
        let client = client.clone();
        let base = base.clone();
        async move {
            let response = client
                .post(format!("{base}/v1/rerank"))
                .json(&json!({"query": format!("query {i}"), "documents": common::documents(1000, i)}))
                .send()
                .await;
            (response.map(|r| r.status().as_u16()), Instant::now())
        }
    });
    let signal = async {
        // Wait until every request is inside the service, then ask it to stop.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = client
                .get(format!("{base}/metrics"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            if common::metric_value(&text, "te_request_count") >= REQUESTS as f64 {
                break;
            }
            assert!(Instant::now() < deadline, "requests never arrived");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        service.terminate();
        Instant::now()
    };
    let (results, signalled_at) = tokio::join!(join_all(sends), signal);

    for (result, _) in &results {
        assert_eq!(
            result.as_ref().ok(),
            Some(&200),
            "an accepted request was lost: {result:?}"
        );
    }
    let finished_after_signal = results.iter().filter(|(_, at)| *at > signalled_at).count();
    assert!(
        finished_after_signal > 0,
        "no request was still in flight at SIGTERM; the test proves nothing"
    );

    let started = Instant::now();
    let status = loop {
        if let Some(status) = service.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "process did not exit after draining"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit status {status:?}");
    assert!(
        client.get(format!("{base}/health")).send().await.is_err(),
        "nothing listens after exit"
    );
}
