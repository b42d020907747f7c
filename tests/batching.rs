//! Cross-request batching: scores do not depend on what a pair was batched with, pairs of
//! concurrent requests do share batches, and a request whose client left is dropped.

mod common;

use std::time::Duration;

use common::{documents, TestServer};
use futures::future::join_all;
use serde_json::{json, Value};

const QUERIES: [&str; 6] = [
    "how do I install a package offline",
    "what does the GIL do",
    "wireless module options on an old laptop",
    "tuple versus list",
    "change the system locale",
    "which man section documents library calls",
];

fn raw_scores(body: &Value) -> Vec<(u64, f64)> {
    let mut r: Vec<(u64, f64)> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["index"].as_u64().unwrap(), r["score"].as_f64().unwrap()))
        .collect();
    r.sort_by_key(|(i, _)| *i);
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scores_are_the_same_alone_or_batched_with_other_requests() {
    // Large batches so that concurrent requests' pairs are packed together.
    let server = TestServer::start(&[
        "--cache-capacity",
        "0",
        "--max-batch-size",
        "64",
        "--sessions",
        "2",
        "--intra-threads",
        "1",
    ])
    .await;
    let requests: Vec<Value> = QUERIES
        .iter()
        .enumerate()
        .map(|(i, q)| json!({"query": q, "texts": documents(40, i), "truncate": true, "raw_scores": true}))
        .collect();

    // Alone: one request at a time, one pair at a time.
    let mut alone = Vec::new();
    for request in &requests {
        let mut scores = Vec::new();
        for (i, text) in request["texts"].as_array().unwrap().iter().enumerate() {
            let single = json!({"query": request["query"], "texts": [text], "truncate": true, "raw_scores": true});
            let (status, _, body) = server.post("/rerank", &single).await;
            assert_eq!(status, 200);
            scores.push((i as u64, body[0]["score"].as_f64().unwrap()));
        }
        alone.push(scores);
    }
    let batches_before = server.metric("te_batch_next_size_count").await;

    // Together: every request at once, several rounds.
    for _round in 0..3 {
        let together = join_all(requests.iter().map(|r| server.post("/rerank", r))).await;
        for (i, (status, _, body)) in together.into_iter().enumerate() {
            assert_eq!(status, 200);
            let batched = raw_scores(&body);
            for ((index, a), (_, b)) in alone[i].iter().zip(&batched) {
                assert!(
                    (a - b).abs() < 1e-5,
                    "request {i} document {index}: alone {a}, batched {b}"
                );
            }
        }
    }
    // 6 requests x 40 pairs in 3 rounds ran in far fewer batches than pairs: they were packed.
    let batches = server.metric("te_batch_next_size_count").await - batches_before;
    assert!(
        batches < 3.0 * 240.0 / 4.0,
        "{batches} batches for 720 pairs"
    );
    server.stop().await;
}

/// A server without a cache, batches of up to 16 pairs on `sessions` single-threaded
/// sessions, with at most `padding` of a batch padding.
async fn batches_of_16(sessions: &str, padding: &str) -> TestServer {
    TestServer::start(&[
        "--cache-capacity",
        "0",
        "--max-batch-size",
        "16",
        "--sessions",
        sessions,
        "--intra-threads",
        "1",
        "--max-batch-padding",
        padding,
    ])
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_request_on_idle_sessions_is_split_among_them() {
    // Two sessions, both idle: a request of 10 pairs (under one full batch of 16) is shared
    // among them, each starting on its part at once, instead of one session scoring all 10
    // while the other waits (a session back before the other has started may take a share of
    // what is left, so 2 or more batches); the scores are those of each pair alone. One
    // session: one batch, as before.
    let texts = documents(10, 3);
    let mut batches_by_sessions = Vec::new();
    for sessions in ["2", "1"] {
        // Any padding: this is about sharing, not about which lengths share a batch.
        let server = batches_of_16(sessions, "1").await;
        let mut alone = Vec::new();
        for text in &texts {
            let single = json!({"query": QUERIES[2], "documents": [text], "raw_scores": true});
            let (status, _, body) = server.post("/v1/rerank", &single).await;
            assert_eq!(status, 200);
            alone.push(body["results"][0]["relevance_score"].as_f64().unwrap());
        }
        // Every inference thread back at the queue, waiting.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let sizes_before = server.metric("te_batch_next_size_sum").await;
        let request = json!({"query": QUERIES[2], "documents": texts, "raw_scores": true});
        let (status, _, body) = server.post("/v1/rerank", &request).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            server.metric("te_batch_next_size_sum").await - sizes_before,
            10.0
        );
        for result in body["results"].as_array().unwrap() {
            let index = result["index"].as_u64().unwrap() as usize;
            let score = result["relevance_score"].as_f64().unwrap();
            assert!(
                (score - alone[index]).abs() < 1e-5,
                "{sessions} sessions, document {index}: {score} vs alone {}",
                alone[index]
            );
        }
        batches_by_sessions.push(body["meta"]["batches"].as_u64().unwrap());
        server.stop().await;
    }
    let (two, one) = (batches_by_sessions[0], batches_by_sessions[1]);
    assert!((2..=10).contains(&two), "2 idle sessions: {two} batches");
    assert_eq!(one, 1, "1 session: {one} batches");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_padding_limit_splits_a_request_by_length_and_keeps_its_scores() {
    // One session, one request of documents from 1 to 23 sentences long. With any padding
    // allowed it is one batch; with none, only documents of one length share a batch: more
    // batches, none of them padded, and every score the same.
    let texts = documents(12, 5);
    let mut runs = Vec::new();
    for padding in ["1", "0"] {
        let server = batches_of_16("1", padding).await;
        let (status, info) = server.get_text("/info").await;
        assert_eq!(status, 200);
        let info: serde_json::Value = serde_json::from_str(&info).unwrap();
        assert_eq!(
            info["models"][0]["batching"]["max_batch_padding"].as_f64(),
            Some(padding.parse().unwrap())
        );
        let padded_before = server.metric("rradistill_batch_padding_ratio_sum").await;
        let request = json!({"query": QUERIES[1], "documents": texts, "raw_scores": true});
        let (status, _, body) = server.post("/v1/rerank", &request).await;
        assert_eq!(status, 200, "{body}");
        let padded = server.metric("rradistill_batch_padding_ratio_sum").await - padded_before;
        let mut scores = vec![0.0; texts.len()];
        for result in body["results"].as_array().unwrap() {
            scores[result["index"].as_u64().unwrap() as usize] =
                result["relevance_score"].as_f64().unwrap();
        }
        runs.push((body["meta"]["batches"].as_u64().unwrap(), padded, scores));
        server.stop().await;
    }
    let ((any_batches, any_padding, any_scores), (none_batches, none_padding, none_scores)) =
        (&runs[0], &runs[1]);
    assert_eq!(*any_batches, 1);
    assert!(*any_padding > 0.0, "mixed lengths in one batch pad");
    assert!(*none_batches > 1, "{none_batches} batches");
    assert_eq!(*none_padding, 0.0);
    for (index, (a, b)) in any_scores.iter().zip(none_scores).enumerate() {
        assert!((a - b).abs() < 1e-5, "document {index}: {a} vs {b}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairs_of_a_request_whose_client_left_are_dropped() {
    let server = TestServer::start(&["--cache-capacity", "0", "--max-batch-size", "4"]).await;
    // One large request occupies the single inference thread ...
    let big = json!({"query": QUERIES[0], "documents": documents(1000, 1)});
    let busy = server.post("/v1/rerank", &big);
    // ... while a second client sends its request and hangs up once the request is queued.
    let impatient = async {
        use tokio::io::AsyncWriteExt;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let body = json!({"query": QUERIES[1], "documents": documents(1000, 2)}).to_string();
        let address = server.base.trim_start_matches("http://");
        let mut socket = tokio::net::TcpStream::connect(address).await.unwrap();
        let head = format!(
            "POST /v1/rerank HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        socket.write_all(head.as_bytes()).await.unwrap();
        socket.write_all(body.as_bytes()).await.unwrap();
        // Both requests tokenized means the second one's pairs are in the queue.
        while server
            .metric("te_request_tokenization_duration_count")
            .await
            < 2.0
        {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        drop(socket);
    };
    let ((status, _, _), ()) = tokio::join!(busy, impatient);
    assert_eq!(status, 200);
    // The dropped pairs are purged when the next batch is assembled.
    let (status, _, _) = server
        .post("/v1/rerank", &json!({"query": "q", "documents": ["d"]}))
        .await;
    assert_eq!(status, 200);
    let dropped = server.metric("rradistill_items_dropped_total").await;
    let (_, text) = server.get_text("/metrics").await;
    let counts: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("te_request") && !l.contains("bucket"))
        .collect();
    assert!(
        dropped > 0.0,
        "no pair of the abandoned request was dropped: {counts:#?}"
    );
    assert!(dropped <= 1000.0);
    server.stop().await;
}
