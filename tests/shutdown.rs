//! SIGTERM with requests in flight: the process stops taking work, answers every request it
//! had accepted, and exits 0.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::future::join_all;
use serde_json::json;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_accepted_requests_and_exits_zero() {
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_rradistill"))
        .args(["--model-dir", common::encoder_fixture().to_str().unwrap()])
        .args(["--ort-dylib-path", common::ort_library().to_str().unwrap()])
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--cache-capacity",
            "0",
            "--max-batch-size",
            "8",
        ])
        .args([
            "--max-queue-tokens",
            "4000000",
            "--grpc-port",
            &free_port().to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while client
        .get(format!("{base}/ready"))
        .send()
        .await
        .map(|r| r.status() != 200)
        .unwrap_or(true)
    {
        assert!(Instant::now() < deadline, "service did not become ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

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
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
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
        if let Some(status) = child.try_wait().unwrap() {
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
