//! Several models in one service, over loopback with the real runtime: routing by `model`,
//! unknown models, `/v1/models` and `/info`, experiments (sticky assignment, split
//! proportions, forced variants), shadow agreement metrics, execution-provider failure with
//! and without CPU fallback (the CPU-only ONNX Runtime genuinely cannot register CUDA or
//! TensorRT), hot reload under load, a broken reload that keeps the old models, the cache
//! across model versions, and SIGHUP.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{ServiceProcess, TestServer};
use serde_json::{json, Value};

/// A scratch folder under the target directory, emptied first.
fn scratch(name: &str) -> PathBuf {
    let dir = common::repo()
        .join("target/test-scratch")
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn decoder_fixture() -> PathBuf {
    let dir = common::fixtures().join("decoder-mini");
    assert!(
        dir.join("model.onnx").is_file(),
        "{} is missing: run `make fixtures` (or `make test`)",
        dir.display()
    );
    dir
}

/// Copies a model folder, optionally rewriting its manifest's version.
fn copy_model(from: &Path, to: &Path, version: Option<&str>) {
    std::fs::create_dir_all(to).unwrap();
    for file in ["model.onnx", "tokenizer.json", "manifest.json"] {
        std::fs::copy(from.join(file), to.join(file)).unwrap();
    }
    if let Some(version) = version {
        let path = to.join("manifest.json");
        let mut manifest: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        manifest["version"] = json!(version);
        std::fs::write(&path, manifest.to_string()).unwrap();
    }
}

fn models_file(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("models.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn two_models(extra: &str) -> String {
    format!(
        "default = \"encoder\"\n\
         [[model]]\nname = \"encoder\"\npath = \"{}\"\nsessions = 1\n\
         [[model]]\nname = \"decoder\"\npath = \"{}\"\nsessions = 1\n{extra}",
        common::encoder_fixture().display(),
        decoder_fixture().display()
    )
}

async fn serve(file: &Path, extra: &[&str]) -> TestServer {
    let mut args = vec!["--models-file", file.to_str().unwrap()];
    args.extend_from_slice(extra);
    TestServer::start_with(Path::new("unused"), &args).await
}

fn request(query: &str) -> Value {
    json!({"query": query, "documents": ["Use dpkg -i with the .deb file.", "Tuples are immutable.", "The kernel loads modules."]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_routed_by_model_name() {
    let dir = scratch("routing");
    let file = models_file(&dir, &two_models(""));
    let server = serve(&file, &[]).await;

    let (status, _, body) = server
        .post("/v1/rerank", &request("install a package"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["model"], "encoder", "the default model");
    let mut with_model = request("install a package");
    with_model["model"] = json!("decoder");
    let (status, headers, body) = server.post("/v1/rerank", &with_model).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["model"], "decoder");
    assert_eq!(body["meta"]["model_version"], "fixture-1");
    assert!(
        headers.get("x-rradistill-variant").is_none(),
        "no experiment, no variant"
    );
    // TEI dialect too.
    let (status, _, body) = server
        .post(
            "/rerank",
            &json!({"model": "decoder", "query": "q", "texts": ["a", "b"]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // An unknown model is a 404 naming those that exist.
    with_model["model"] = json!("gpt-17");
    let (status, _, body) = server.post("/v1/rerank", &with_model).await;
    assert_eq!(status, 404, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("gpt-17") && message.contains("encoder") && message.contains("decoder"),
        "{message}"
    );

    // /v1/models and /info list both, each with its own queue; metrics carry each label.
    let (status, text) = server.get_text("/v1/models").await;
    assert_eq!(status, 200);
    let list: Value = serde_json::from_str(&text).unwrap();
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["encoder", "decoder"]);
    assert_eq!(list["data"][0]["default"], true);
    assert_eq!(list["data"][1]["details"]["kind"], "decoder");
    let (_, text) = server.get_text("/info").await;
    let info: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(info["default_model"], "encoder");
    assert_eq!(info["models"].as_array().unwrap().len(), 2);
    assert_eq!(info["models"][1]["model"]["execution_provider"], "cpu");
    let (_, metrics) = server.get_text("/metrics").await;
    assert!(
        metrics.contains("te_request_success{method=\"batch\",model=\"encoder\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("te_request_success{method=\"batch\",model=\"decoder\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("te_batch_next_size_count{model=\"decoder\"}"),
        "{metrics}"
    );
    server.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn experiments_assign_sticky_variants_in_proportion() {
    let dir = scratch("experiment");
    let file = models_file(
        &dir,
        &two_models(
            "[[experiment]]\nname = \"ab\"\nvariants = [{ model = \"encoder\", weight = 3 }, { model = \"decoder\", weight = 1 }]\n",
        ),
    );
    let server = serve(&file, &[]).await;
    let ask = |user: Option<String>| {
        let mut body = request("install a package");
        body["model"] = json!("ab");
        if let Some(user) = user {
            body["user"] = json!(user);
        }
        body
    };

    // Sticky: the same user gets the same variant every time, in the body and the headers.
    for user in ["alice", "bob", "carol"] {
        let (status, headers, first) = server.post("/v1/rerank", &ask(Some(user.into()))).await;
        assert_eq!(status, 200, "{first}");
        let variant = first["meta"]["experiment"]["variant"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(first["model"], variant.as_str());
        assert_eq!(first["meta"]["experiment"]["experiment"], "ab");
        assert_eq!(first["meta"]["experiment"]["by"], "sticky");
        assert_eq!(headers["x-rradistill-variant"], variant.as_str());
        assert_eq!(headers["x-rradistill-experiment"], "ab");
        for _ in 0..3 {
            let (_, _, again) = server.post("/v1/rerank", &ask(Some(user.into()))).await;
            assert_eq!(
                again["meta"]["experiment"]["variant"],
                variant.as_str(),
                "{user}"
            );
        }
    }

    // Proportions over 400 fixed user ids: 3:1 within four standard deviations (sd ~8.7).
    let mut decoder = 0;
    for i in 0..400 {
        let (status, _, body) = server
            .post("/v1/rerank", &ask(Some(format!("user-{i}"))))
            .await;
        assert_eq!(status, 200, "{body}");
        decoder += usize::from(body["model"] == "decoder");
    }
    assert!(
        (65..=135).contains(&decoder),
        "{decoder} of 400 went to the 1-in-4 variant"
    );

    // The x-user-id header works when the body has no user; without either, assignment is random.
    let client = &server.client;
    let by_header = |id: &str| {
        client
            .post(server.url("/v1/rerank"))
            .header("x-user-id", id)
            .json(&ask(None))
    };
    let a = by_header("dave").send().await.unwrap();
    let variant = a.headers()["x-rradistill-variant"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(a.headers()["x-rradistill-assigned-by"], "sticky");
    for _ in 0..3 {
        let again = by_header("dave").send().await.unwrap();
        assert_eq!(again.headers()["x-rradistill-variant"], variant.as_str());
    }
    let (_, headers, _) = server.post("/v1/rerank", &ask(None)).await;
    assert_eq!(headers["x-rradistill-assigned-by"], "random");

    // A forced variant wins; one that is not in the experiment is refused, naming the variants.
    for forced in ["encoder", "decoder"] {
        let response = client
            .post(server.url("/v1/rerank"))
            .header("x-rradistill-variant", forced)
            .json(&ask(Some("alice".into())))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["model"], forced);
        assert_eq!(body["meta"]["experiment"]["by"], "forced");
    }
    let response = client
        .post(server.url("/v1/rerank"))
        .header("x-rradistill-variant", "nope")
        .json(&ask(None))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("encoder, decoder"),
        "{body}"
    );

    // gRPC: the same assignment for the same user, named in the response.
    let mut grpc = rradistill::grpc::pb::rerank_client::RerankClient::connect(server.grpc_url())
        .await
        .unwrap();
    let ask_grpc = |user: &str, force: &str| rradistill::grpc::pb::RerankRequest {
        model: "ab".into(),
        query: "install a package".into(),
        documents: vec!["a".into(), "b".into()],
        user: user.into(),
        force_variant: force.into(),
        ..Default::default()
    };
    let (_, _, rest) = server.post("/v1/rerank", &ask(Some("erin".into()))).await;
    let reply = grpc
        .rerank(ask_grpc("erin", ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.experiment, "ab");
    assert_eq!(
        reply.variant,
        rest["meta"]["experiment"]["variant"].as_str().unwrap()
    );
    assert_eq!(reply.model, reply.variant);
    assert_eq!(reply.assigned_by, "sticky");
    let forced = grpc
        .rerank(ask_grpc("erin", "decoder"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (forced.variant.as_str(), forced.assigned_by.as_str()),
        ("decoder", "forced")
    );
    let refused = grpc.rerank(ask_grpc("erin", "nope")).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);

    // The variant is a metrics label; the experiment is listed.
    let (_, metrics) = server.get_text("/metrics").await;
    assert!(
        metrics.contains(
            "rradistill_experiment_requests_total{by=\"sticky\",experiment=\"ab\",variant=\"decoder\"}"
        ),
        "{metrics}"
    );
    let (_, text) = server.get_text("/v1/models").await;
    assert!(text.contains("\"object\":\"experiment\""), "{text}");
    server.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_model_reports_how_far_it_agrees() {
    let dir = scratch("shadow");
    let file = models_file(
        &dir,
        &two_models("[[shadow]]\nprimary = \"encoder\"\nshadow = \"decoder\"\nsample_rate = 1.0\n"),
    );
    let server = serve(&file, &[]).await;
    for i in 0..5 {
        let (status, _, body) = server
            .post("/v1/rerank", &request(&format!("query {i}")))
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["model"], "encoder", "the shadow never answers");
    }
    // Shadow scoring runs in the background: wait for it, bounded.
    let labels = "{model=\"encoder\",shadow=\"decoder\"}";
    let mut compared = 0.0;
    for _ in 0..100 {
        compared = server
            .metric(&format!("rradistill_shadow_kendall_tau_count{labels}"))
            .await;
        if compared >= 5.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(compared, 5.0);
    let (_, metrics) = server.get_text("/metrics").await;
    let tau_sum = common::metric_value(
        &metrics,
        &format!("rradistill_shadow_kendall_tau_sum{labels}"),
    );
    assert!((-5.0..=5.0).contains(&tau_sum), "{tau_sum}");
    assert!(metrics.contains("rradistill_shadow_comparisons_total{model=\"encoder\",outcome=\"compared\",shadow=\"decoder\"} 5"), "{metrics}");
    assert!(
        metrics.contains("rradistill_shadow_top1_agreements_total"),
        "{metrics}"
    );
    let (_, text) = server.get_text("/info").await;
    assert!(text.contains("\"sample_rate\":1.0"), "{text}");
    server.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gpu_provider_that_cannot_register_fails_or_falls_back_as_configured() {
    rradistill::runtime::init(&common::ort_library()).unwrap();
    let dir = scratch("providers");
    for provider in ["cuda", "tensorrt"] {
        let file = models_file(
            &dir,
            &format!(
                "[[model]]\nname = \"gpu\"\npath = \"{}\"\nexecution_provider = \"{provider}\"\ndevice_id = 0\n",
                common::encoder_fixture().display()
            ),
        );
        let config = common::config(
            Path::new("unused"),
            &["--models-file", file.to_str().unwrap()],
        );
        let error = match rradistill::server::build_service(&config) {
            Ok(_) => panic!("{provider} registered on the CPU-only ONNX Runtime"),
            Err(error) => format!("{error:#}"),
        };
        assert!(
            error.contains(&format!("the {provider} execution provider")),
            "{error}"
        );
        assert!(error.contains("allow_cpu_fallback"), "{error}");
    }

    let file = models_file(
        &dir,
        &format!(
            "[[model]]\nname = \"gpu\"\npath = \"{}\"\nexecution_provider = \"cuda\"\nallow_cpu_fallback = true\n",
            common::encoder_fixture().display()
        ),
    );
    let server = serve(&file, &[]).await;
    let (status, headers, body) = server.post("/v1/rerank", &request("q")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["x-compute-type"], "cpu");
    let (_, text) = server.get_text("/info").await;
    let info: Value = serde_json::from_str(&text).unwrap();
    let model = &info["models"][0]["model"];
    assert_eq!(model["execution_provider"], "cpu");
    assert_eq!(model["execution_provider_fallback_from"], "cuda");
    assert!(model["execution_provider_fallback_reason"]
        .as_str()
        .unwrap()
        .contains("cuda"));
    server.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_drops_nothing_and_never_serves_stale_cache() {
    let dir = scratch("reload");
    let v1 = dir.join("model-v1");
    let v2 = dir.join("model-v2");
    copy_model(&common::encoder_fixture(), &v1, Some("v1"));
    copy_model(&common::encoder_fixture(), &v2, Some("v2"));
    let entry = |path: &Path| {
        format!(
            "[[model]]\nname = \"ranker\"\npath = \"{}\"\nsessions = 1\n",
            path.display()
        )
    };
    let file = models_file(&dir, &entry(&v1));
    let server = Arc::new(serve(&file, &["--admin-api-key", "admin-key-0123456789abcdef"]).await);
    let reload = |server: &TestServer| {
        server
            .client
            .post(server.url("/admin/reload"))
            .bearer_auth("admin-key-0123456789abcdef")
            .send()
    };

    // Warm the cache with one request on v1.
    let cached = request("install a package");
    let (_, _, body) = server.post("/v1/rerank", &cached).await;
    assert_eq!(body["meta"]["model_version"], "v1");
    let (_, _, body) = server.post("/v1/rerank", &cached).await;
    assert_eq!(body["meta"]["cache_hits"], 3);

    // Load: four clients re-ranking without pause while the model is swapped twice.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for c in 0..4 {
        let (server, stop, ok) = (server.clone(), stop.clone(), ok.clone());
        clients.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let (status, _, body) = server
                    .post("/v1/rerank", &json!({"query": format!("client {c} request {i}"), "documents": common::documents(8, i)}))
                    .await;
                if status == 200 {
                    ok.fetch_add(1, Ordering::SeqCst);
                } else {
                    failures.push(body);
                }
                i += 1;
            }
            failures
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    models_file(&dir, &entry(&v2));
    let response = reload(&server).await.unwrap();
    assert_eq!(response.status(), 200);
    let report: Value = response.json().await.unwrap();
    assert!(
        report["loaded"][0]
            .as_str()
            .unwrap()
            .starts_with("ranker (version v2"),
        "{report}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Unchanged: kept, not reloaded.
    let report: Value = reload(&server).await.unwrap().json().await.unwrap();
    assert_eq!(report["kept"], json!(["ranker"]), "{report}");
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        let failures = client.await.unwrap();
        assert!(
            failures.is_empty(),
            "requests failed during reload: {failures:?}"
        );
    }
    assert!(ok.load(Ordering::SeqCst) > 8, "the load did not run");

    // The new version serves, and the old version's cache entries are not served for it.
    let (_, _, body) = server.post("/v1/rerank", &cached).await;
    assert_eq!(body["meta"]["model_version"], "v2");
    assert_eq!(
        body["meta"]["cache_hits"], 0,
        "v1's cached scores served for v2"
    );
    assert_eq!(
        server
            .metric("rradistill_reloads_total{outcome=\"ok\"}")
            .await,
        2.0
    );

    // A broken model is refused; the old one keeps serving.
    let broken = dir.join("broken");
    copy_model(&common::encoder_fixture(), &broken, Some("v3"));
    std::fs::write(broken.join("model.onnx"), b"not an onnx graph").unwrap();
    models_file(&dir, &entry(&broken));
    let response = reload(&server).await.unwrap();
    assert_eq!(response.status(), 409);
    let body: Value = response.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("previous models keep serving") && message.contains("broken"),
        "{message}"
    );
    // A models file that does not parse is refused the same way.
    models_file(&dir, "[[model]]\nname = \"ranker\"\n");
    let response = reload(&server).await.unwrap();
    assert_eq!(response.status(), 409);
    let (status, _, body) = server.post("/v1/rerank", &cached).await;
    assert_eq!(status, 200);
    assert_eq!(body["meta"]["model_version"], "v2");
    assert_eq!(
        server
            .metric("rradistill_reloads_total{outcome=\"failed\"}")
            .await,
        2.0
    );

    // Reload needs the admin key.
    let response = server
        .client
        .post(server.url("/admin/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    Arc::try_unwrap(server).ok().unwrap().stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_models_file() {
    let dir = scratch("sighup");
    let file = models_file(
        &dir,
        &format!(
            "[[model]]\nname = \"first\"\npath = \"{}\"\n",
            common::encoder_fixture().display()
        ),
    );
    let mut service = ServiceProcess::spawn(
        &["--models-file", file.to_str().unwrap()],
        &[],
        std::process::Stdio::null(),
        std::process::Stdio::null(),
    );
    service.wait_ready().await;
    let client = reqwest::Client::new();
    let names = || async {
        let list: Value = client
            .get(format!("{}/v1/models", service.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(names().await, ["first"]);
    models_file(&dir, &two_models(""));
    service.signal(libc::SIGHUP);
    let mut now = Vec::new();
    for _ in 0..100 {
        now = names().await;
        if now.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(now, ["encoder", "decoder"]);
    service.terminate();
    let _ = std::fs::remove_dir_all(dir);
}

/// `make run` serves `models/models.toml`: it must load, and every model in it must answer.
/// Every committed model folder is in it, or (a student not ready to serve, such as the
/// untrained decoder) in a models file of its own, `models/<name>.toml`, which loads too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_models_file_serves_every_reference_model() {
    let file = common::repo().join("models/models.toml");
    let server = serve(&file, &[]).await;
    let (_, text) = server.get_text("/v1/models").await;
    let list: Value = serde_json::from_str(&text).unwrap();
    let models: Vec<String> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["object"] == "model")
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    // Every committed reference model folder is listed.
    for entry in std::fs::read_dir(common::repo().join("models"))
        .unwrap()
        .flatten()
    {
        if entry.path().join("model.onnx").is_file() {
            let name = entry.file_name().into_string().unwrap();
            if models.contains(&name) {
                continue;
            }
            let own = common::repo().join(format!("models/{name}.toml"));
            assert!(
                own.is_file(),
                "models/{name} is neither in models/models.toml nor in a models/{name}.toml of its own"
            );
            let alone = serve(&own, &[]).await;
            let (status, _, body) = alone
                .post("/v1/rerank", &request("install a package offline"))
                .await;
            assert_eq!(status, 200, "{name} from {}: {body}", own.display());
            assert_eq!(body["model"], json!(name));
            alone.stop().await;
        }
    }
    for model in &models {
        let mut body = request("install a package offline");
        body["model"] = json!(model);
        let (status, _, body) = server.post("/v1/rerank", &body).await;
        assert_eq!(status, 200, "{model}: {body}");
    }
    assert_eq!(list["data"][0]["default"], true);
    // Served-model names (Cohere's rerank models): each answers as the model it names.
    let aliases: Vec<&Value> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["object"] == "alias")
        .collect();
    assert!(aliases.iter().any(|a| a["id"] == "rerank-v3.5"), "{list}");
    for alias in aliases {
        let mut body = request("install a package offline");
        body["model"] = alias["id"].clone();
        let (status, _, answer) = server.post("/v1/rerank", &body).await;
        assert_eq!(status, 200, "{alias}: {answer}");
        assert_eq!(answer["model"], alias["alias_of"]);
    }
    let mut body = request("install a package offline");
    body["model"] = json!("rerank-nobody-configured");
    let (status, _, answer) = server.post("/v1/rerank", &body).await;
    assert_eq!(status, 404);
    assert!(
        answer["message"].as_str().unwrap().contains("rra-bert-m"),
        "{answer}"
    );
    server.stop().await;
}
