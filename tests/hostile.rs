//! Hostile input is cut before it costs anything, over a real server on loopback: the
//! largest document the body limit allows is cut by bytes before tokenization (its pair
//! still fills the window), a body of millions of empty documents is refused while it is
//! parsed, and requests past the concurrency limit get 429 at once. Bounded in count; the
//! memory and latency these cost are measured by `benches/hostile.py`, not asserted here.

mod common;

use common::{documents, TestServer};
use futures::future::join_all;
use serde_json::{json, Value};

const BODY_LIMIT: usize = 8 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_largest_document_the_body_allows_is_cut_to_the_window() {
    let server = TestServer::start(&["--cache-capacity", "0"]).await;
    let sentence = "The apt pinning file lets you prefer packages from one release over another. ";
    let document = sentence.repeat((BODY_LIMIT - 200) / sentence.len());
    for (path, body) in [
        (
            "/v1/rerank",
            json!({"query": "apt pinning", "documents": [document]}),
        ),
        (
            "/rerank",
            json!({"query": "apt pinning", "texts": [document], "truncate": true}),
        ),
    ] {
        assert!(body.to_string().len() < BODY_LIMIT);
        let (status, headers, answer) = server.post(path, &body).await;
        assert_eq!(status, 200, "{path}: {answer}");
        assert_eq!(headers["x-documents-truncated"], "1");
        let tokens: usize = headers["x-compute-tokens"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(
            tokens, 128,
            "{path}: the cut document still fills the window"
        );
    }
    // The same text cut on the left keeps its end, and scores like the short end alone
    // scored with the same cut.
    let (status, _, _) = server
        .post(
            "/rerank",
            &json!({"query": "apt pinning", "texts": [document], "truncate": true, "truncation_direction": "Left"}),
        )
        .await;
    assert_eq!(status, 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_of_millions_of_empty_documents_is_refused_while_parsing() {
    let server = TestServer::start(&[]).await;
    let count = (BODY_LIMIT - 100) / 3;
    for (path, field, status) in [("/v1/rerank", "documents", 413), ("/rerank", "texts", 422)] {
        let mut body = format!("{{\"query\": \"q\", \"{field}\": [");
        body.push_str(&"\"\",".repeat(count - 1));
        body.push_str("\"\"]}");
        assert!(body.len() <= BODY_LIMIT);
        let response = server
            .client
            .post(server.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status, "{path}");
        let answer: Value = response.json().await.unwrap();
        let message = if path == "/rerank" {
            answer["error"].as_str().unwrap().to_string()
        } else {
            answer["message"].as_str().unwrap().to_string()
        };
        assert!(message.contains("more than 1000 documents"), "{message}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_past_the_concurrency_limit_get_429_over_http() {
    let server =
        TestServer::start(&["--max-concurrent-requests", "2", "--cache-capacity", "0"]).await;
    // Eight requests of 1000 documents at once against two slots.
    let bodies: Vec<Value> = (0..8)
        .map(|i| json!({"query": format!("concurrency {i}"), "documents": documents(1000, i)}))
        .collect();
    let answers = join_all(bodies.iter().map(|b| {
        let client = server.client.clone();
        let url = server.url("/v1/rerank");
        async move {
            let response = client.post(url).json(b).send().await.unwrap();
            let status = response.status().as_u16();
            let retry_after = response.headers().get("retry-after").cloned();
            let body: Value = response.json().await.unwrap();
            (status, retry_after, body)
        }
    }))
    .await;
    let ok = answers.iter().filter(|(s, _, _)| *s == 200).count();
    let refused: Vec<_> = answers.iter().filter(|(s, _, _)| *s == 429).collect();
    assert_eq!(ok + refused.len(), 8, "only 200 or 429: {answers:?}");
    assert!(
        ok >= 1 && !refused.is_empty(),
        "{ok} answered, {} refused",
        refused.len()
    );
    for (_, retry_after, body) in refused {
        assert!(retry_after.is_some());
        assert_eq!(body["error"]["type"], "overloaded");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("2 concurrent requests"),
            "{body}"
        );
    }
    // Nothing is held once they are answered.
    let model = server.service().registry().get(None).unwrap();
    assert_eq!(
        (model.admission.in_flight(), model.admission.held_tokens()),
        (0, 0)
    );
    server.stop().await;
}
