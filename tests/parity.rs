//! The service's scores against an independent implementation: every model folder under the
//! fixtures directory (test fixtures, the toolkit's smoke-run student) and under `models/`
//! (the committed reference students) that carries a `reference.jsonl` (scores computed in
//! Python with `tokenizers` + ONNX Runtime when the folder was made) is served and compared
//! pair by pair.

mod common;

use common::TestServer;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_scores_match_the_python_reference() {
    let mut checked = 0;
    let mut folders: Vec<_> = [common::fixtures(), common::repo().join("models")]
        .iter()
        .flat_map(|dir| std::fs::read_dir(dir).unwrap().flatten().map(|e| e.path()))
        .collect();
    folders.sort();
    for folder in folders {
        let reference = folder.join("reference.jsonl");
        if !reference.is_file() {
            continue;
        }
        let server = TestServer::start_with(&folder, &["--cache-capacity", "0"]).await;
        let rows: Vec<Value> = std::fs::read_to_string(&reference)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert!(!rows.is_empty());
        for row in rows {
            let (status, _, body) = server
                .post("/v1/rerank", &json!({"query": row["query"], "documents": [row["document"]], "raw_scores": true}))
                .await;
            assert_eq!(status, 200, "{body}");
            let ours = body["results"][0]["relevance_score"].as_f64().unwrap();
            let theirs = row["logit"].as_f64().unwrap();
            assert!(
                (ours - theirs).abs() < 1e-4,
                "{}: {row}: service {ours}",
                folder.display()
            );
            assert_eq!(
                body["meta"]["input_tokens"],
                row["tokens"],
                "{}: token count of {row}",
                folder.display()
            );
            checked += 1;
        }
        server.stop().await;
    }
    assert!(
        checked >= 5,
        "only {checked} reference pairs found under {}",
        common::fixtures().display()
    );
}
