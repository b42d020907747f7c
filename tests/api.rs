//! The REST API over a real loopback server: both dialects, every endpoint, every error.

mod common;

use common::{documents, TestServer};
use serde_json::{json, Value};

fn indices(results: &Value, field: &str) -> Vec<(u64, f64)> {
    results
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["index"].as_u64().unwrap(), r[field].as_f64().unwrap()))
        .collect()
}

fn assert_sorted(ranks: &[(u64, f64)]) {
    for w in ranks.windows(2) {
        assert!(
            w[0].1 > w[1].1 || (w[0].1 == w[1].1 && w[0].0 < w[1].0),
            "not sorted: {ranks:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cohere_dialect_answers_sorted_results_with_their_cost() {
    let server = TestServer::start(&[]).await;
    let docs = documents(12, 1);
    let mut sent: Vec<Value> = docs.iter().map(|d| json!(d)).collect();
    sent[3] = json!({"text": docs[3], "title": "ignored"});
    for path in ["/v1/rerank", "/v2/rerank"] {
        let response = server
            .client
            .post(server.url(path))
            .header("x-request-id", "trace-me-42")
            .json(&json!({"query": "how do I install a package offline", "documents": sent, "return_documents": true}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let headers = response.headers().clone();
        let body: Value = response.json().await.unwrap();
        assert_eq!(headers["x-request-id"], "trace-me-42");
        assert_eq!(body["id"], "trace-me-42");
        assert_eq!(body["model"], "encoder-mini-fixture");
        for h in [
            "x-total-time",
            "x-queue-time",
            "x-tokenization-time",
            "x-inference-time",
            "x-compute-tokens",
            "x-compute-characters",
            "x-compute-type",
        ] {
            assert!(headers.contains_key(h), "missing header {h}");
        }
        let ranks = indices(&body["results"], "relevance_score");
        assert_eq!(ranks.len(), 12);
        assert_sorted(&ranks);
        assert!(
            ranks.iter().all(|(_, s)| (0.0..=1.0).contains(s)),
            "sigmoid scores are in 0..1"
        );
        for r in body["results"].as_array().unwrap() {
            assert_eq!(
                r["document"]["text"],
                docs[r["index"].as_u64().unwrap() as usize]
            );
        }
        let meta = &body["meta"];
        assert_eq!(meta["documents"], 12);
        assert_eq!(
            headers["x-compute-tokens"].to_str().unwrap(),
            meta["input_tokens"].to_string()
        );
        assert_eq!(body["usage"]["total_tokens"], meta["input_tokens"]);
        assert!(meta["input_tokens"].as_u64().unwrap() > 12 * 10);
        for f in ["queue_ms", "tokenization_ms", "inference_ms", "total_ms"] {
            assert!(meta[f].as_f64().unwrap() >= 0.0, "{f}");
        }
        // As TEI computes them: compute time is the time in the service; queue time is the
        // mean over the pairs (never above the longest wait, which `meta` reports).
        assert_eq!(headers["x-compute-time"], headers["x-total-time"]);
        let header = |name: &str| headers[name].to_str().unwrap().parse::<f64>().unwrap();
        assert!(header("x-queue-time") <= meta["queue_ms"].as_f64().unwrap().round() + 1.0);
    }
    // A generated request id when the client sends none.
    let (_, headers, body) = server
        .post("/v1/rerank", &json!({"query": "q", "documents": ["d"]}))
        .await;
    let id = headers["x-request-id"].to_str().unwrap();
    assert_eq!(id.len(), 36, "uuid expected, got {id}");
    assert_eq!(body["id"], id);
    assert!(
        body["results"][0].get("document").is_none(),
        "documents only on request"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_n_cuts_after_sorting_and_raw_scores_are_logits() {
    let server = TestServer::start(&["--cache-capacity", "0"]).await;
    let docs = documents(10, 2);
    let (_, _, all) = server
        .post(
            "/v1/rerank",
            &json!({"query": "locale settings", "documents": docs}),
        )
        .await;
    let (_, _, top) = server
        .post(
            "/v1/rerank",
            &json!({"query": "locale settings", "documents": docs, "top_n": 3}),
        )
        .await;
    let all = indices(&all["results"], "relevance_score");
    let top = indices(&top["results"], "relevance_score");
    assert_eq!(top.len(), 3);
    assert_eq!(&all[..3], &top[..]);
    // JSON Schema's integers include 3.0; 2.5 is refused.
    let (status, _, whole) = server
        .post(
            "/v1/rerank",
            &json!({"query": "locale settings", "documents": docs, "top_n": 3.0}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(whole["results"].as_array().unwrap().len(), 3);
    let (status, _, error) = server
        .post(
            "/v1/rerank",
            &json!({"query": "locale settings", "documents": docs, "top_n": 2.5}),
        )
        .await;
    assert_eq!(status, 422);
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("2.5 is not a whole number"),
        "{error}"
    );
    let (_, _, many) = server
        .post(
            "/v1/rerank",
            &json!({"query": "locale settings", "documents": docs, "top_n": 50}),
        )
        .await;
    assert_eq!(many["results"].as_array().unwrap().len(), 10);

    let (_, _, raw) = server
        .post(
            "/v1/rerank",
            &json!({"query": "locale settings", "documents": docs, "raw_scores": true}),
        )
        .await;
    let raw = indices(&raw["results"], "relevance_score");
    for (index, logit) in &raw {
        let (_, p) = all.iter().find(|(i, _)| i == index).unwrap();
        assert!(
            (1.0 / (1.0 + (-logit).exp()) - p).abs() < 1e-6,
            "sigmoid(raw) must equal the default score"
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tei_dialect_is_a_bare_sorted_array() {
    let server = TestServer::start(&[]).await;
    let texts = documents(6, 3);
    let (status, headers, body) = server
        .post("/rerank", &json!({"query": "python threads", "texts": texts, "return_text": true, "truncate": true}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(headers.contains_key("x-inference-time"));
    let ranks = indices(&body, "score");
    assert_eq!(ranks.len(), 6);
    assert_sorted(&ranks);
    for r in body.as_array().unwrap() {
        assert_eq!(r["text"], texts[r["index"].as_u64().unwrap() as usize]);
    }
    let (_, _, plain) = server
        .post(
            "/rerank",
            &json!({"query": "python threads", "texts": ["short text"]}),
        )
        .await;
    assert!(plain[0].get("text").is_none());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_documents_are_truncated_never_the_query() {
    let server = TestServer::start(&["--cache-capacity", "0"]).await;
    let long =
        "The apt pinning file lets you prefer packages from one release over another. ".repeat(40);
    let query = "apt pinning";
    let (status, _, body) = server
        .post(
            "/v1/rerank",
            &json!({"query": query, "documents": [long, "short"]}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["meta"]["documents_truncated"], 1);
    let full_tokens = body["meta"]["input_tokens"].as_u64().unwrap();
    // The window is 128: the long pair fills it exactly.
    let short_tokens = full_tokens - 128;

    // max_tokens_per_doc lowers the cut: 10 more document tokens allowed, 10 more counted.
    let mut cut_tokens = Vec::new();
    for cut in [20, 30] {
        let (_, _, body) = server
            .post(
                "/v1/rerank",
                &json!({"query": query, "documents": [long, "short"], "max_tokens_per_doc": cut}),
            )
            .await;
        assert_eq!(body["meta"]["documents_truncated"], 1);
        cut_tokens.push(body["meta"]["input_tokens"].as_u64().unwrap() - short_tokens);
    }
    assert_eq!(cut_tokens[1] - cut_tokens[0], 10);
    assert!(cut_tokens[1] < 128);

    // TEI: without `truncate`, the server's --auto-truncate (on by default) cuts it ...
    let (status, headers, _) = server
        .post(
            "/rerank",
            &json!({"query": query, "texts": ["short", long]}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-documents-truncated"], "1");
    // ... and `truncate: false` refuses an over-long text, saying which one.
    let (status, _, error) = server
        .post(
            "/rerank",
            &json!({"query": query, "texts": ["short", long], "truncate": false}),
        )
        .await;
    assert_eq!(status, 422, "{error}");
    assert_eq!(error["error_type"], "validation");
    assert!(
        error["error"].as_str().unwrap().contains("document 1"),
        "{error}"
    );
    // With it, either end can be kept, and the two differ.
    let left = "completely different words at the start. ".repeat(30)
        + &"apt pinning prefers packages. ".repeat(5);
    let (_, _, right_kept) = server
        .post(
            "/rerank",
            &json!({"query": query, "texts": [left], "truncate": true, "raw_scores": true}),
        )
        .await;
    let (_, _, left_kept) = server
        .post("/rerank", &json!({"query": query, "texts": [left], "truncate": true, "truncation_direction": "Left", "raw_scores": true}))
        .await;
    assert_ne!(right_kept[0]["score"], left_kept[0]["score"]);
    server.stop().await;

    // `--auto-truncate=false`: TEI's own default, a request that does not say is refused.
    let strict = TestServer::start(&["--auto-truncate=false"]).await;
    let (status, _, error) = strict
        .post("/rerank", &json!({"query": query, "texts": [long]}))
        .await;
    assert_eq!(status, 422, "{error}");
    let (status, _, _) = strict
        .post(
            "/rerank",
            &json!({"query": query, "texts": [long], "truncate": true}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _, _) = strict
        .post("/v1/rerank", &json!({"query": query, "documents": [long]}))
        .await;
    assert_eq!(status, 200, "the Cohere shape always cuts, as Cohere does");
    strict.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_answers_repeated_pairs_and_keys_on_truncation() {
    let server = TestServer::start(&[]).await;
    let docs = documents(8, 4);
    let request = json!({"query": "immutable sequences", "documents": docs});
    let (_, _, first) = server.post("/v1/rerank", &request).await;
    assert_eq!(first["meta"]["cache_hits"], 0);
    let (_, headers, second) = server.post("/v1/rerank", &request).await;
    assert_eq!(second["meta"]["cache_hits"], 8);
    assert_eq!(
        second["meta"]["batches"], 0,
        "fully cached requests run no inference"
    );
    assert_eq!(headers["x-cache-hits"], "8");
    assert_eq!(first["results"], second["results"]);
    assert_eq!(
        first["meta"]["input_tokens"],
        second["meta"]["input_tokens"]
    );
    assert_eq!(
        first["meta"]["documents_truncated"],
        second["meta"]["documents_truncated"]
    );
    // Raw scores share the cached logits.
    let (_, _, raw) = server
        .post(
            "/v1/rerank",
            &json!({"query": "immutable sequences", "documents": docs, "raw_scores": true}),
        )
        .await;
    assert_eq!(raw["meta"]["cache_hits"], 8);
    // Another truncation is another key.
    let (_, _, cut) = server
        .post(
            "/v1/rerank",
            &json!({"query": "immutable sequences", "documents": docs, "max_tokens_per_doc": 5}),
        )
        .await;
    assert_eq!(cut["meta"]["cache_hits"], 0);
    assert!(server.metric("rradistill_cache_hits_total").await >= 16.0);
    server.stop().await;

    let uncached = TestServer::start(&["--cache-capacity", "0"]).await;
    uncached.post("/v1/rerank", &request).await;
    let (_, _, again) = uncached.post("/v1/rerank", &request).await;
    assert_eq!(again["meta"]["cache_hits"], 0);
    uncached.stop().await;
}

async fn expect_error(
    server: &TestServer,
    path: &str,
    body: reqwest::Body,
    content_type: &str,
    status: u16,
    kind: &str,
) -> Value {
    let response = server
        .client
        .post(server.url(path))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let actual = response.status().as_u16();
    let text = response.text().await.unwrap();
    assert_eq!(actual, status, "{path} expected {kind}: {text}");
    let value: Value = serde_json::from_str(&text).unwrap();
    if path == "/rerank" {
        assert!(
            value["error"].as_str().is_some_and(|m| !m.is_empty()),
            "{value}"
        );
        assert!(value["error_type"].is_string(), "{value}");
    } else {
        assert_eq!(value["error"]["type"], kind, "{value}");
        assert!(
            value["error"]["message"]
                .as_str()
                .is_some_and(|m| m.len() > 10),
            "{value}"
        );
        assert_eq!(
            value["message"], value["error"]["message"],
            "Cohere's top-level message"
        );
    }
    value
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_request_gets_a_precise_error() {
    let server = TestServer::start(&["--max-documents", "20", "--max-body-bytes", "20000"]).await;
    let json_ct = "application/json";
    let j = |v: Value| reqwest::Body::from(v.to_string());
    for path in ["/v1/rerank", "/rerank"] {
        let docs_field = if path == "/rerank" {
            "texts"
        } else {
            "documents"
        };
        expect_error(
            &server,
            path,
            "{\"query\": \"q\", ".into(),
            json_ct,
            400,
            "invalid_json",
        )
        .await;
        expect_error(
            &server,
            path,
            vec![0xff, 0xfe, 0x00].into(),
            json_ct,
            400,
            "invalid_json",
        )
        .await;
        expect_error(
            &server,
            path,
            j(json!({"query": "q", docs_field: ["d"]})),
            "text/plain",
            415,
            "unsupported_media_type",
        )
        .await;
        expect_error(
            &server,
            path,
            j(json!({docs_field: ["d"]})),
            json_ct,
            422,
            "validation",
        )
        .await;
        expect_error(
            &server,
            path,
            j(json!({"query": "q", docs_field: [1]})),
            json_ct,
            422,
            "validation",
        )
        .await;
        let m = expect_error(
            &server,
            path,
            j(json!({"query": "  ", docs_field: ["d"]})),
            json_ct,
            422,
            "validation",
        )
        .await;
        assert!(m.to_string().contains("query"));
        expect_error(
            &server,
            path,
            j(json!({"query": "q", docs_field: []})),
            json_ct,
            422,
            "validation",
        )
        .await;
        // Too many documents: 413 in the Cohere shape, 422 in TEI's (its 413 is for bodies).
        let many: Vec<String> = (0..21).map(|i| format!("doc {i}")).collect();
        let too_many = if path == "/rerank" { 422 } else { 413 };
        let m = expect_error(
            &server,
            path,
            j(json!({"query": "q", docs_field: many})),
            json_ct,
            too_many,
            "too_large",
        )
        .await;
        assert!(m.to_string().contains("20"), "names the limit: {m}");
        let big = "x".repeat(30_000);
        expect_error(
            &server,
            path,
            j(json!({"query": "q", docs_field: [big]})),
            json_ct,
            413,
            "too_large",
        )
        .await;
        expect_error(
            &server,
            path,
            j(json!({"query": "q", docs_field: ["d"], "top_n": 0})),
            json_ct,
            422,
            "validation",
        )
        .await;
        expect_error(
            &server,
            path,
            j(json!({"query": "q", docs_field: ["d"], "top_n": -3})),
            json_ct,
            422,
            "validation",
        )
        .await;
        let m = expect_error(
            &server,
            path,
            j(json!({"model": "nope", "query": "q", docs_field: ["d"]})),
            json_ct,
            404,
            "model_not_found",
        )
        .await;
        assert!(
            m.to_string().contains("encoder-mini-fixture"),
            "names the models that exist: {m}"
        );
        let long_query = "word ".repeat(100);
        let m = expect_error(
            &server,
            path,
            j(json!({"query": long_query, docs_field: ["d"]})),
            json_ct,
            422,
            "validation",
        )
        .await;
        assert!(
            m.to_string().contains("64"),
            "names the query limit (half the window): {m}"
        );
        let nested = "[".repeat(5000) + &"]".repeat(5000);
        // Deep nesting in a field the service ignores is skipped without recursing.
        let body = format!("{{\"query\": \"q\", \"{docs_field}\": [\"d\"], \"extra\": {nested}}}");
        let response = server
            .client
            .post(server.url(path))
            .header("content-type", json_ct)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        // Nesting where a document belongs is a type error naming the field.
        let m = expect_error(
            &server,
            path,
            format!("{{\"query\": \"q\", \"{docs_field}\": {nested}}}").into(),
            json_ct,
            422,
            "validation",
        )
        .await;
        assert!(m.to_string().contains(&format!("{docs_field}[0]")), "{m}");
    }
    expect_error(
        &server,
        "/v1/rerank",
        j(json!({"query": "q", "documents": ["d"], "max_tokens_per_doc": 0})),
        json_ct,
        422,
        "validation",
    )
    .await;
    expect_error(
        &server,
        "/v1/rerank",
        j(json!({"query": "q", "documents": [{"title": "no text"}]})),
        json_ct,
        422,
        "validation",
    )
    .await;

    let (status, body) = server.get_text("/v3/rerank").await;
    assert_eq!(status, 404);
    assert!(body.contains("not_found"));
    let (status, body) = server.get_text("/v1/rerank").await;
    assert_eq!(status, 405);
    assert!(body.contains("method_not_allowed"));
    // Nothing above hurt the service.
    let (status, _, _) = server
        .post("/v1/rerank", &json!({"query": "q", "documents": ["d"]}))
        .await;
    assert_eq!(status, 200);
    assert!(server.metric("te_request_failure").await >= 20.0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_429_at_once_and_oversized_requests_413() {
    let server = TestServer::start(&["--max-queue-tokens", "2000", "--cache-capacity", "0"]).await;
    let service = server.service();
    let model = service.registry().get(None).unwrap();
    // Another client's work holds most of the token budget.
    let held = model.admission.try_admit(1900).unwrap();
    let docs = documents(10, 5);
    let started = std::time::Instant::now();
    let response = server
        .client
        .post(server.url("/v1/rerank"))
        .json(&json!({"query": "q", "documents": docs}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "refused at once, not queued"
    );
    assert_eq!(response.headers()["retry-after"], "1");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "overloaded");
    let (status, _, tei) = server
        .post(
            "/rerank",
            &json!({"query": "q", "texts": docs, "truncate": true}),
        )
        .await;
    assert_eq!(status, 429);
    assert_eq!(tei["error_type"], "overloaded");
    // A small request still fits in what is left.
    let (status, _, _) = server
        .post("/v1/rerank", &json!({"query": "q", "documents": ["d"]}))
        .await;
    assert_eq!(status, 200);
    drop(held);
    let (status, _, _) = server
        .post("/v1/rerank", &json!({"query": "q", "documents": docs}))
        .await;
    assert_eq!(status, 200, "budget returned once the other work finished");
    // A request bigger than the whole budget can never fit: 413, not 429.
    let big = documents(100, 6);
    let (status, _, body) = server
        .post("/v1/rerank", &json!({"query": "q", "documents": big}))
        .await;
    assert_eq!(status, 413, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("2000"));
    assert!(server.metric("te_request_failure").await >= 3.0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_past_its_deadline_gets_504() {
    let server = TestServer::start(&["--request-timeout-ms", "1", "--cache-capacity", "0"]).await;
    let docs = documents(1000, 7);
    let (status, _, body) = server
        .post(
            "/v1/rerank",
            &json!({"query": "deadline", "documents": docs}),
        )
        .await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["error"]["type"], "timeout");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operational_endpoints() {
    let server = TestServer::start(&[]).await;
    let (status, body) = server.get_text("/health").await;
    assert_eq!((status, body.contains("ok")), (200, true));
    let (status, _) = server.get_text("/ready").await;
    assert_eq!(status, 200);
    let (status, body) = server.get_text("/info").await;
    assert_eq!(status, 200);
    let info: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(info["default_model"], "encoder-mini-fixture");
    let model = &info["models"][0]["model"];
    assert_eq!(model["kind"], "encoder");
    assert_eq!(model["execution_provider"], "cpu");
    assert_eq!(model["max_sequence_length"], 128);
    // On CPU a batch carries at most a tenth of padding unless told otherwise.
    assert_eq!(
        info["models"][0]["batching"]["max_batch_padding"],
        rradistill::batch::queue::CPU_PADDING
    );
    // Where ONNX Runtime ran the nodes, from its own profile of a batch at load: on CPU,
    // every kernel, and nothing named as fallen back. (That the profile file is gone is
    // checked in tests/startup.rs, where no other test loads a model at the same time.)
    let placement = &model["node_placement"];
    let cpu = &placement["providers"]["CPUExecutionProvider"];
    assert!(cpu["nodes"].as_u64().unwrap() >= 10, "{placement}");
    assert!(cpu["output_bytes"].as_u64().unwrap() > 0, "{placement}");
    assert_eq!(
        placement["providers"].as_object().unwrap().len(),
        1,
        "{placement}"
    );
    assert_eq!(placement["cpu_share"], 1.0);
    assert_eq!(placement["cpu_ops"], json!([]));
    assert_eq!(info["limits"]["max_documents"], 1000);
    assert_eq!(info["models"][0]["batching"]["max_batch_size"], 16);
    // The version is the loaded library's own: the one its file is named after.
    let ort_version = info["onnxruntime_version"].as_str().unwrap().to_string();
    assert!(ort_version.split('.').count() == 3, "{ort_version}");
    if let Ok(path) = std::env::var("ORT_DYLIB_PATH") {
        if let Some((_, suffix)) = path.rsplit_once(".so.") {
            assert_eq!(ort_version, suffix, "{path}");
        }
    }

    server
        .post(
            "/v1/rerank",
            &json!({"query": "q", "documents": documents(5, 8)}),
        )
        .await;
    let (status, text) = server.get_text("/metrics").await;
    assert_eq!(status, 200);
    for name in [
        "te_request_count",
        "te_request_success",
        "te_request_duration_count",
        "te_request_queue_duration_count",
        "te_request_tokenization_duration_count",
        "te_request_inference_duration_count",
        "te_request_input_length_count",
        "te_batch_next_size_count",
        "te_batch_next_tokens_count",
        "te_queue_size",
        "rradistill_batch_padding_ratio_count",
        "rradistill_batch_inference_duration_seconds_count",
        "rradistill_cache_misses_total",
        "rradistill_build_info{",
        "rradistill_max_queued_tokens{",
        "rradistill_max_concurrent_requests{",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(name)),
            "metric {name} missing"
        );
    }
    assert!(
        text.contains(&format!("onnxruntime=\"{ort_version}\"")),
        "rradistill_build_info lacks onnxruntime=\"{ort_version}\""
    );
    assert_eq!(common::metric_value(&text, "te_request_success"), 1.0);
    // TEI's `method` label, which TEI's dashboards filter on (a re-rank is a `batch`).
    assert!(
        text.contains(r#"te_request_success{method="batch",model="encoder-mini-fixture"} 1"#),
        "{text}"
    );
    assert_eq!(
        common::metric_value(&text, "te_request_input_length_count"),
        5.0
    );

    // Draining: not ready, new re-rank work refused with 503.
    server.service().stop_accepting();
    let (status, _) = server.get_text("/ready").await;
    assert_eq!(status, 503);
    let (status, headers, body) = server
        .post("/v1/rerank", &json!({"query": "q", "documents": ["d"]}))
        .await;
    assert_eq!(status, 503, "{body}");
    assert!(headers.contains_key("retry-after"));
    let (status, _) = server.get_text("/health").await;
    assert_eq!(status, 200, "alive while draining");
    server.stop().await;
}
