//! Long documents read in chunks (`max_chunks_per_doc`, `--max-chunks-per-document`): on a
//! real server with the encoder and the late fixture, a document longer than the window
//! scores as the best of exactly the chunks the model's tokenizer makes of it (each scored
//! alone, in process, for the expected value), a limit of one chunk is the plain cut to one
//! window, a request never gets more chunks than the server allows, chunked and cut scores
//! are cached apart, `/info` shows the limit, and a request that refuses over-long documents
//! still refuses them.

mod common;

use std::path::{Path, PathBuf};

use common::TestServer;
use rradistill::model::graph::SessionOptions;
use rradistill::model::student::StudentRanker;
use rradistill::model::{Ranker, Truncation};
use serde_json::{json, Value};

const QUERY: &str = "how do I change the language and locale of the whole system";
const ANSWER: &str = "To change the system locale, run dpkg-reconfigure locales, pick the \
                      language you want and log in again so every program reads it.";
const SHORT: &str = "Bread rises because yeast turns sugar into gas.";

/// Sentences about something else, to push the answer past the first window (from the
/// `first` topic on).
fn filler(first: usize, sentences: usize) -> String {
    let topics = [
        "The harbour ferry leaves every hour in summer and twice a day in winter.",
        "Tomatoes ripen faster on the windowsill when kept next to a banana.",
        "A violin bow is strung with horsehair that needs rosin before playing.",
        "The library extends loans by two weeks if nobody else has reserved the book.",
    ];
    (0..sentences)
        .map(|i| topics[(first + i) % topics.len()])
        .collect::<Vec<_>>()
        .join(" ")
}

fn fixture(name: &str) -> PathBuf {
    let dir = common::fixtures().join(name);
    assert!(
        dir.join("model.onnx").is_file(),
        "{} is missing: run `make fixtures` (or `make test`)",
        dir.display()
    );
    dir
}

fn ranker(dir: &Path) -> StudentRanker {
    rradistill::runtime::init(&common::ort_library()).unwrap();
    StudentRanker::load(dir, &SessionOptions::default()).unwrap()
}

fn chunked(chunks: usize) -> Truncation {
    Truncation {
        max_chunks: chunks,
        ..Truncation::default()
    }
}

/// A document the model reads in exactly three chunks, the answer at its end, and each of
/// its chunks' scores, alone, in process: the first such document (by filler length, then
/// filler order) on which a later chunk outscores the first, so that the best chunk and a
/// cut to one window tell apart (the fixtures are tiny models: the answer alone does not
/// decide).
fn long_document(ranker: &StudentRanker) -> (String, Vec<f32>, usize) {
    let query = ranker.prepare_query(QUERY, usize::MAX).unwrap();
    for first in 0..4 {
        for sentences in 1..400 {
            let document = format!("{} {ANSWER}", filler(first, sentences));
            let pairs = ranker
                .prepare_chunks(&query, &document, 0, &chunked(4))
                .unwrap();
            if pairs.len() < 3 {
                continue;
            }
            assert!(!pairs[0].truncated, "three chunks read the whole document");
            let scores: Vec<f32> = pairs
                .iter()
                .map(|p| ranker.score(0, &[p]).unwrap()[0])
                .collect();
            if pairs.len() == 3 && scores[1..].iter().any(|&s| s > scores[0]) {
                let tokens = pairs.iter().map(|p| p.len()).sum();
                return (document, scores, tokens);
            }
            break;
        }
    }
    panic!("no filler makes three chunks with a later one best");
}

fn raw_scores(body: &Value) -> Vec<f64> {
    let results = body["results"].as_array().unwrap();
    let mut scores = vec![f64::NAN; results.len()];
    for r in results {
        scores[r["index"].as_u64().unwrap() as usize] = r["relevance_score"].as_f64().unwrap();
    }
    scores
}

fn close(a: f64, b: f32) -> bool {
    (a - f64::from(b)).abs() < 1e-4
}

async fn a_long_document_scores_as_its_best_chunk(name: &str) {
    let dir = fixture(name);
    let ranker = ranker(&dir);
    let (document, chunks, tokens) = long_document(&ranker);
    let best = chunks.iter().copied().fold(f32::MIN, f32::max);
    let query = ranker.prepare_query(QUERY, usize::MAX).unwrap();
    let short = ranker
        .prepare_pair(&query, SHORT, 1, &Truncation::default())
        .unwrap();

    let server = TestServer::start_with(
        &dir,
        &["--max-chunks-per-document", "4", "--cache-capacity", "0"],
    )
    .await;
    let request = |extra: Value| {
        let mut body = json!({"query": QUERY, "documents": [document, SHORT], "raw_scores": true});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    // The server's limit, asked for or not.
    for extra in [
        json!({}),
        json!({"max_chunks_per_doc": 4}),
        json!({"max_chunks_per_doc": 40}),
    ] {
        let (status, _, body) = server.post("/v1/rerank", &request(extra.clone())).await;
        assert_eq!(status, 200, "{body}");
        let scores = raw_scores(&body);
        assert!(
            close(scores[0], best),
            "{name} {extra}: {} vs best chunk {best} of {chunks:?}",
            scores[0]
        );
        assert_eq!(body["meta"]["documents_truncated"], 0, "{body}");
        assert_eq!(
            body["meta"]["input_tokens"].as_u64().unwrap() as usize,
            tokens + short.len(),
            "every chunk's tokens are counted: {body}"
        );
    }
    // Fewer chunks, on request: one is the cut to the window, two the best of the first two.
    for (asked, expected) in [(1, chunks[0]), (2, chunks[0].max(chunks[1]))] {
        let (status, _, body) = server
            .post("/v2/rerank", &request(json!({"max_chunks_per_doc": asked})))
            .await;
        assert_eq!(status, 200, "{body}");
        let scores = raw_scores(&body);
        assert!(
            close(scores[0], expected),
            "{name}, {asked} chunks: {} vs {expected}",
            scores[0]
        );
        assert_eq!(body["meta"]["documents_truncated"], 1, "{body}");
    }
    let (status, _, body) = server
        .post("/v1/rerank", &request(json!({"max_chunks_per_doc": 0})))
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("`max_chunks_per_doc` is 0"),
        "{body}"
    );

    // TEI's route: chunked when truncating, refused at one window when the request refuses.
    let tei =
        json!({"query": QUERY, "texts": [document, SHORT], "raw_scores": true, "truncate": true});
    let (status, _, body) = server.post("/rerank", &tei).await;
    assert_eq!(status, 200, "{body}");
    let first = body
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["index"] == 0)
        .unwrap();
    assert!(
        close(first["score"].as_f64().unwrap(), best),
        "{name} TEI: {first}"
    );
    let refusing = json!({"query": QUERY, "texts": [document, SHORT], "truncate": false});
    let (status, _, body) = server.post("/rerank", &refusing).await;
    assert_eq!(status, 422, "{body}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encoder_scores_a_long_document_as_its_best_chunk() {
    a_long_document_scores_as_its_best_chunk("encoder-mini").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_model_scores_a_long_document_as_its_best_chunk() {
    a_long_document_scores_as_its_best_chunk("late-mini").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_and_cut_scores_are_cached_apart_and_one_chunk_is_the_default() {
    let dir = fixture("encoder-mini");
    let ranker = ranker(&dir);
    let (document, chunks, _) = long_document(&ranker);
    let best = chunks.iter().copied().fold(f32::MIN, f32::max);
    // The default server reads one window, whatever a request asks.
    let server = TestServer::start_with(&dir, &[]).await;
    let body = json!({"query": QUERY, "documents": [document], "raw_scores": true, "max_chunks_per_doc": 4});
    let (status, _, answer) = server.post("/v1/rerank", &body).await;
    assert_eq!(status, 200, "{answer}");
    assert!(close(raw_scores(&answer)[0], chunks[0]), "{answer}");
    server.stop().await;

    let server = TestServer::start_with(&dir, &["--max-chunks-per-document", "3"]).await;
    let (_, info) = server.get_text("/info").await;
    let info: Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["limits"]["max_chunks_per_document"], 3, "{info}");
    let ask = |chunks: usize| json!({"query": QUERY, "documents": [document], "raw_scores": true, "max_chunks_per_doc": chunks});
    let (_, _, cut) = server.post("/v1/rerank", &ask(1)).await;
    let (_, _, read) = server.post("/v1/rerank", &ask(3)).await;
    assert_eq!(
        read["meta"]["cache_hits"], 0,
        "a cut score must not answer a chunked request: {read}"
    );
    assert!(close(raw_scores(&cut)[0], chunks[0]) && close(raw_scores(&read)[0], best));
    let (_, _, again) = server.post("/v1/rerank", &ask(3)).await;
    assert_eq!(again["meta"]["cache_hits"], 1, "{again}");
    assert_eq!(raw_scores(&again), raw_scores(&read));
    assert_eq!(again["meta"]["input_tokens"], read["meta"]["input_tokens"]);
    server.stop().await;
}
