//! The late-interaction kind (`"kind": "late"`) against the toolkit's contract, on the fixture
//! `tests/fixtures/make_late_fixture.py` builds: a small `LateScorer` (the student's own
//! network, exported by the toolkit) with the real multilingual-e5-small XLM-R tokenizer, and
//! scores computed in Python (`TowerTokenizer` + ONNX Runtime). `tests/parity.rs` checks its
//! `reference.jsonl` pair by pair like every fixture's; here, what only this kind has:
//! token ids equal to the toolkit's, query and document each in its own window, several
//! queries' pairs in one batch (each distinct query encoded once) scoring as Python's batch
//! and as each pair alone, long queries accepted and over-long ones refused, both truncation
//! sides and `max_tokens_per_doc`, and load-time validation of late model folders.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use common::TestServer;
use futures::future::join_all;
use rradistill::batch::{Batcher, BatcherConfig, WorkItem};
use rradistill::metrics::Metrics;
use rradistill::model::graph::SessionOptions;
use rradistill::model::student::StudentRanker;
use rradistill::model::{towers, PreparedPair, Ranker, Truncation, TruncationSide};
use serde_json::{json, Value};
use tokio::sync::mpsc;

fn late_fixture() -> PathBuf {
    let dir = common::fixtures().join("late-mini");
    assert!(
        dir.join("model.onnx").is_file() && dir.join("cases.jsonl").is_file(),
        "{} is missing: run `make fixtures` (or `make test`)",
        dir.display()
    );
    dir
}

fn jsonl(name: &str) -> Vec<Value> {
    std::fs::read_to_string(late_fixture().join(name))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn case(name: &str) -> Value {
    jsonl("cases.jsonl")
        .into_iter()
        .find(|c| c["case"] == name)
        .unwrap_or_else(|| panic!("no case {name:?} in cases.jsonl"))
}

/// The fixture loaded once, on one session, without a server.
fn ranker() -> Arc<StudentRanker> {
    static RANKER: OnceLock<Arc<StudentRanker>> = OnceLock::new();
    RANKER
        .get_or_init(|| {
            rradistill::runtime::init(&common::ort_library()).unwrap();
            Arc::new(StudentRanker::load(&late_fixture(), &SessionOptions::default()).unwrap())
        })
        .clone()
}

fn ids(value: &Value) -> Vec<i64> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect()
}

fn floats(value: &Value) -> Vec<f64> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

/// A case's truncation settings as a request gives them.
fn truncation(case: &Value) -> Truncation {
    Truncation {
        enabled: true,
        side: match case["truncation_direction"].as_str().unwrap() {
            "Left" => TruncationSide::Left,
            _ => TruncationSide::Right,
        },
        max_document_tokens: case["max_tokens_per_doc"].as_u64().map(|n| n as usize),
        max_chunks: 1,
    }
}

/// A case's pairs, prepared by the service: one query per group, its documents in order.
fn prepare(case: &Value) -> Vec<PreparedPair> {
    let ranker = ranker();
    let truncation = truncation(case);
    let mut pairs = Vec::new();
    for group in case["groups"].as_array().unwrap() {
        let query = ranker
            .prepare_query(group["query"].as_str().unwrap(), usize::MAX)
            .unwrap();
        for (i, document) in group["documents"].as_array().unwrap().iter().enumerate() {
            pairs.push(
                ranker
                    .prepare_pair(&query, document.as_str().unwrap(), i, &truncation)
                    .unwrap(),
            );
        }
    }
    pairs
}

#[test]
fn queries_and_documents_are_tokenized_as_the_toolkit_does() {
    let ranker = ranker();
    for row in jsonl("reference.jsonl") {
        let query = ranker
            .prepare_query(row["query"].as_str().unwrap(), usize::MAX)
            .unwrap();
        let pair = ranker
            .prepare_pair(
                &query,
                row["document"].as_str().unwrap(),
                0,
                &Truncation::default(),
            )
            .unwrap();
        assert_eq!(
            pair.query_ids.as_deref().unwrap(),
            &ids(&row["query_ids"])[..],
            "{row}"
        );
        assert_eq!(pair.input_ids, ids(&row["input_ids"]), "{row}");
        assert_eq!(pair.len() as u64, row["tokens"].as_u64().unwrap(), "{row}");
        assert_eq!(
            query.tokens() as u64,
            row["query_tokens"].as_u64().unwrap(),
            "{row}"
        );
        assert_eq!(pair.truncated, row["truncated"].as_bool().unwrap(), "{row}");
        assert!(pair.input_ids.len() <= 256);
    }
    // Cut from either side, and to `max_tokens_per_doc`, piece for piece as Python cuts.
    for c in jsonl("cases.jsonl")
        .iter()
        .filter(|c| c["groups"].is_array())
    {
        let pairs = prepare(c);
        let expected = c["input_ids"].as_array().unwrap();
        assert_eq!(pairs.len(), expected.len());
        for (pair, expected) in pairs.iter().zip(expected) {
            assert_eq!(pair.input_ids, ids(expected), "{}", c["case"]);
        }
    }
}

#[test]
fn several_queries_in_one_batch_score_as_python_and_as_alone() {
    let ranker = ranker();
    let c = case("two queries and a long one in one batch");
    let pairs = prepare(&c);
    let batch: Vec<&PreparedPair> = pairs.iter().collect();
    // Three distinct queries, each laid out once, every pair pointing at its own.
    let layout = towers::layout(&batch, 1).unwrap();
    assert_eq!(layout.queries, 3);
    assert_eq!(layout.query_index, vec![0, 0, 0, 1, 1, 2]);

    let together = ranker.score(0, &batch).unwrap();
    let python = floats(&c["logits"]);
    for (i, (ours, theirs)) in together.iter().zip(&python).enumerate() {
        assert!(
            (*ours as f64 - theirs).abs() < 1e-4,
            "pair {i}: service {ours}, Python {theirs}"
        );
    }
    for (i, pair) in pairs.iter().enumerate() {
        let alone = ranker.score(0, &[pair]).unwrap()[0];
        assert!(
            (alone - together[i]).abs() < 1e-5,
            "pair {i}: alone {alone}, in a batch with other queries' pairs {}",
            together[i]
        );
    }
    // In any order, with a query's pairs apart (identity is not adjacency).
    let shuffled: Vec<&PreparedPair> = [5, 3, 0, 4, 2, 1].iter().map(|&i| &pairs[i]).collect();
    let scores = ranker.score(0, &shuffled).unwrap();
    for (k, &i) in [5, 3, 0, 4, 2, 1].iter().enumerate() {
        assert!((scores[k] - together[i]).abs() < 1e-5, "pair {i} reordered");
    }
}

#[test]
fn the_batcher_puts_several_requests_queries_in_one_batch_without_moving_a_score() {
    let ranker = ranker();
    let c = case("two queries and a long one in one batch");
    let pairs = prepare(&c);
    let alone: Vec<f32> = pairs
        .iter()
        .map(|p| ranker.score(0, &[p]).unwrap()[0])
        .collect();
    let batcher = Batcher::start(
        ranker.clone(),
        BatcherConfig {
            max_batch_tokens: 1 << 20,
            max_batch_size: 64,
            max_batch_padding: None,
        },
        Metrics::new().for_model("late"),
    );
    let (reply, mut outcomes) = mpsc::unbounded_channel();
    // One submission: the worker finds every pair pending and takes them as one batch.
    let items = pairs
        .iter()
        .enumerate()
        .map(|(index, pair)| WorkItem {
            pair: pair.clone(),
            index,
            enqueued: Instant::now(),
            reply: reply.clone(),
        })
        .collect();
    batcher.submit(items).unwrap();
    let mut batch_ids = Vec::new();
    for _ in 0..pairs.len() {
        let outcome = outcomes.blocking_recv().unwrap();
        let score = outcome.result.unwrap();
        assert!(
            (score - alone[outcome.index]).abs() < 1e-5,
            "pair {}: alone {}, batched {score}",
            outcome.index,
            alone[outcome.index]
        );
        batch_ids.push(outcome.batch_id);
    }
    batch_ids.dedup();
    assert_eq!(batch_ids.len(), 1, "expected one batch, got {batch_ids:?}");
    batcher.shutdown();
}

#[test]
fn truncation_left_right_and_max_tokens_per_doc_score_as_python() {
    let ranker = ranker();
    for name in [
        "cut keeping the end",
        "max_tokens_per_doc keeping the beginning",
        "max_tokens_per_doc keeping the end",
    ] {
        let c = case(name);
        let pairs = prepare(&c);
        // The two long documents are cut (the short one too when the cut is lower).
        assert!(pairs[0].truncated && pairs[1].truncated, "{name}");
        let batch: Vec<&PreparedPair> = pairs.iter().collect();
        let ours = ranker.score(0, &batch).unwrap();
        for (i, (ours, theirs)) in ours.iter().zip(floats(&c["logits"])).enumerate() {
            assert!(
                (*ours as f64 - theirs).abs() < 1e-4,
                "{name}, document {i}: service {ours}, Python {theirs}"
            );
        }
        let tokens: Vec<u64> = pairs.iter().map(|p| p.len() as u64).collect();
        let expected: Vec<u64> = c["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_u64().unwrap())
            .collect();
        assert_eq!(tokens, expected, "{name}");
    }
}

fn message(body: &Value) -> String {
    body["error"]["message"]
        .as_str()
        .or_else(|| body["error"].as_str())
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_serves_a_late_model() {
    let server = TestServer::start_with(
        &late_fixture(),
        &[
            "--cache-capacity",
            "0",
            "--sessions",
            "1",
            "--max-batch-size",
            "64",
        ],
    )
    .await;

    // The kind and both windows are reported.
    let (status, body) = server.get_text("/info").await;
    assert_eq!(status, 200);
    let info: Value = serde_json::from_str(&body).unwrap();
    let model = &info["models"][0]["model"];
    assert_eq!(
        (
            &model["kind"],
            &model["max_sequence_length"],
            &model["max_query_length"]
        ),
        (&json!("late"), &json!(256), &json!(160)),
        "{model}"
    );
    let (_, body) = server.get_text("/v1/models").await;
    let models: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(models["data"][0]["details"]["kind"], "late", "{models}");

    // Queries of 128+ tokens (English and Korean) pass the default limit and score as Python.
    let long: Vec<Value> = jsonl("reference.jsonl")
        .into_iter()
        .filter(|r| r["query_tokens"].as_u64().unwrap() >= 128)
        .collect();
    assert_eq!(long.len(), 2);
    for row in &long {
        let (status, _, body) = server
            .post(
                "/v1/rerank",
                &json!({"query": row["query"], "documents": [row["document"]], "raw_scores": true}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let score = body["results"][0]["relevance_score"].as_f64().unwrap();
        assert!(
            (score - row["logit"].as_f64().unwrap()).abs() < 1e-4,
            "{row}: {score}"
        );
        assert_eq!(body["meta"]["input_tokens"], row["tokens"]);
    }

    // One token over the query window: a clear 422, in both dialects.
    let over = case("query over the window");
    let (tokens, limit) = (&over["query_tokens"], &over["limit"]);
    for (path, body) in [
        (
            "/v1/rerank",
            json!({"query": over["query"], "documents": ["a document"]}),
        ),
        (
            "/rerank",
            json!({"query": over["query"], "texts": ["a document"]}),
        ),
    ] {
        let (status, _, error) = server.post(path, &body).await;
        assert_eq!(status, 422, "{path}: {error}");
        let text = message(&error);
        assert!(
            text.contains(&format!("query is {tokens} tokens long"))
                && text.contains(&format!("the most this model accepts is {limit}"))
                && text.contains("shorten the query"),
            "{path}: {text}"
        );
    }

    // Truncation through both dialects: TEI keeps the end on request, Cohere's
    // `max_tokens_per_doc` cuts lower; TEI without `truncate` names the long document.
    let left = case("cut keeping the end");
    let group = &left["groups"][0];
    let (status, _, body) = server
        .post(
            "/rerank",
            &json!({"query": group["query"], "texts": group["documents"], "truncate": true,
                    "truncation_direction": "Left", "raw_scores": true}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let python = floats(&left["logits"]);
    for r in body.as_array().unwrap() {
        let index = r["index"].as_u64().unwrap() as usize;
        let score = r["score"].as_f64().unwrap();
        assert!(
            (score - python[index]).abs() < 1e-4,
            "Left, text {index}: {score}"
        );
    }
    let lower = case("max_tokens_per_doc keeping the beginning");
    let group = &lower["groups"][0];
    let (status, _, body) = server
        .post(
            "/v1/rerank",
            &json!({"query": group["query"], "documents": group["documents"],
                    "max_tokens_per_doc": lower["max_tokens_per_doc"], "raw_scores": true}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let python = floats(&lower["logits"]);
    for r in body["results"].as_array().unwrap() {
        let index = r["index"].as_u64().unwrap() as usize;
        let score = r["relevance_score"].as_f64().unwrap();
        assert!(
            (score - python[index]).abs() < 1e-4,
            "max_tokens_per_doc, document {index}"
        );
    }
    assert_eq!(body["meta"]["documents_truncated"], 3);
    let tokens: u64 = lower["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap())
        .sum();
    assert_eq!(body["meta"]["input_tokens"], tokens);
    let (status, _, error) = server
        .post(
            "/rerank",
            &json!({"query": "short", "texts": ["short", group["documents"][0]], "truncate": false}),
        )
        .await;
    assert_eq!(status, 422, "{error}");
    let text = message(&error);
    assert!(
        text.contains("document 1") && text.contains("window of 256"),
        "{text}"
    );

    // Concurrent requests with different queries share batches; no score moves (1e-5).
    let c = case("two queries and a long one in one batch");
    let requests: Vec<Value> = c["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| json!({"query": g["query"], "texts": g["documents"], "truncate": true, "raw_scores": true}))
        .collect();
    let mut alone = Vec::new();
    for request in &requests {
        let mut scores = Vec::new();
        for text in request["texts"].as_array().unwrap() {
            let one = json!({"query": request["query"], "texts": [text], "truncate": true, "raw_scores": true});
            let (status, _, body) = server.post("/rerank", &one).await;
            assert_eq!(status, 200, "{body}");
            scores.push(body[0]["score"].as_f64().unwrap());
        }
        alone.push(scores);
    }
    for _round in 0..3 {
        let together = join_all(requests.iter().map(|r| server.post("/rerank", r))).await;
        for (i, (status, _, body)) in together.into_iter().enumerate() {
            assert_eq!(status, 200, "{body}");
            for r in body.as_array().unwrap() {
                let index = r["index"].as_u64().unwrap() as usize;
                let (a, b) = (alone[i][index], r["score"].as_f64().unwrap());
                assert!(
                    (a - b).abs() < 1e-5,
                    "request {i} text {index}: alone {a}, together {b}"
                );
            }
        }
    }
    server.stop().await;
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rradistill-late-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A copy of the fixture: the manifest edited, the tokenizer edited or linked, the graph
/// linked (it is 30 MB; nothing here changes it).
fn variant(
    name: &str,
    manifest: impl FnOnce(&mut Value),
    tokenizer: Option<&dyn Fn(&mut Value)>,
) -> PathBuf {
    let from = late_fixture();
    let dir = scratch(name);
    std::os::unix::fs::symlink(from.join("model.onnx"), dir.join("model.onnx")).unwrap();
    match tokenizer {
        None => std::os::unix::fs::symlink(from.join("tokenizer.json"), dir.join("tokenizer.json"))
            .unwrap(),
        Some(edit) => {
            let mut value: Value = serde_json::from_str(
                &std::fs::read_to_string(from.join("tokenizer.json")).unwrap(),
            )
            .unwrap();
            edit(&mut value);
            std::fs::write(dir.join("tokenizer.json"), value.to_string()).unwrap();
        }
    }
    let mut value: Value =
        serde_json::from_str(&std::fs::read_to_string(from.join("manifest.json")).unwrap())
            .unwrap();
    manifest(&mut value);
    std::fs::write(dir.join("manifest.json"), value.to_string()).unwrap();
    dir
}

fn load_error(dir: &Path) -> String {
    let config = common::config(dir, &[]);
    let error = match rradistill::server::build_service(&config) {
        Ok(_) => panic!("{} loaded but should have been refused", dir.display()),
        Err(error) => format!("{error:#}"),
    };
    let _ = std::fs::remove_dir_all(dir);
    error
}

#[test]
fn late_model_folders_that_do_not_agree_are_refused_with_what_to_fix() {
    type Edit = fn(&mut Value);
    let manifests: [(&str, Edit, &[&str]); 7] = [
        (
            "missing-input",
            |m| drop(m["inputs"].as_object_mut().unwrap().remove("query_index")),
            &["needs `inputs.query_index`"],
        ),
        (
            "unknown-input",
            |m| m["inputs"]["query_index"] = "pair_query".into(),
            &["`pair_query`", "query_index"],
        ),
        (
            // A [pairs] input where [queries, query_length] belongs, and the reverse.
            "wrong-rank",
            |m| {
                m["inputs"]["query_index"] = "query_mask".into();
                m["inputs"]["query_mask"] = "query_index".into();
            },
            &[
                "graph input `query_index`",
                "expected int64 [batch, sequence]",
            ],
        ),
        (
            "window-too-small",
            |m| {
                m["max_sequence_length"] = 8.into();
                m["document_prefix"] = "passage: passage: passage:".into();
            },
            &[
                "`max_sequence_length` is 8",
                "no room for a document",
                "`document_prefix`",
            ],
        ),
        (
            "query-window-too-small",
            |m| m["max_query_length"] = 5.into(),
            &["`max_query_length` is 5", "no room for a query"],
        ),
        (
            "no-query-window",
            |m| drop(m.as_object_mut().unwrap().remove("max_query_length")),
            &["needs `max_query_length`"],
        ),
        (
            "segments",
            |m| m["inputs"]["token_type_ids"] = "token_type_ids".into(),
            &["remove `inputs.token_type_ids`"],
        ),
    ];
    for (name, edit, expected) in manifests {
        let e = load_error(&variant(name, edit, None));
        assert!(expected.iter().all(|x| e.contains(x)), "{name}: {e}");
    }

    // A tokenizer with more pieces than the graph's embedding table (another model's).
    let more_pieces = |t: &mut Value| {
        let vocab = t["model"]["vocab"].as_array_mut().unwrap();
        for i in 0..1000 {
            vocab.push(json!([format!("extra{i}"), -20.0]));
        }
    };
    let e = load_error(&variant("tokenizer", |_| {}, Some(&more_pieces)));
    assert!(
        e.contains("251002 tokens")
            && e.contains("tokenizer.json does not belong to this model.onnx"),
        "{e}"
    );
    // A tokenizer that puts no `<s>`/`</s>` around a text.
    let no_template = |t: &mut Value| t["post_processor"] = Value::Null;
    let e = load_error(&variant("template", |_| {}, Some(&no_template)));
    assert!(
        e.contains("adds no special tokens around a single text"),
        "{e}"
    );
}
