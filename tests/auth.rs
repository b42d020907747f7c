//! API keys over a real server: 401 vs 403, open probes, admin endpoints, gRPC metadata, and
//! keys never showing in `/info` or the logs.

mod common;

use std::process::Stdio;

use common::TestServer;
use rradistill::grpc::pb::rerank_client::RerankClient;
use rradistill::grpc::pb::RerankRequest;
use serde_json::{json, Value};

const CLIENT_A: &str = "client-key-aaaaaaaaaaaaaaaa";
const CLIENT_B: &str = "client-key-bbbbbbbbbbbbbbbb";
const ADMIN: &str = "admin-key-cccccccccccccccccc";

async fn send(
    server: &TestServer,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut request = match method {
        "GET" => server.client.get(server.url(path)),
        _ => server.client.post(server.url(path)),
    };
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    (
        response.status().as_u16(),
        response.headers().clone(),
        response.text().await.unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_guard_everything_but_the_probes() {
    let keys = format!("{CLIENT_A},{CLIENT_B}");
    let server = TestServer::start(&["--api-key", &keys, "--admin-api-key", ADMIN]).await;
    let rerank = json!({"query": "q", "documents": ["a document"]});

    for path in ["/health", "/ready", "/metrics"] {
        assert_eq!(
            send(&server, "GET", path, None, None).await.0,
            200,
            "{path} is open"
        );
    }
    let (status, headers, body) =
        send(&server, "POST", "/v1/rerank", None, Some(rerank.clone())).await;
    assert_eq!(status, 401);
    assert_eq!(headers["www-authenticate"], "Bearer");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"]["type"], "unauthorized");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Authorization: Bearer"));
    let (status, _, body) = send(
        &server,
        "POST",
        "/rerank",
        Some("not-a-configured-key-at-all"),
        Some(json!({"query": "q", "texts": ["t"]})),
    )
    .await;
    assert_eq!(status, 401);
    assert!(
        serde_json::from_str::<Value>(&body).unwrap()["error"].is_string(),
        "TEI body on /rerank"
    );
    assert_eq!(send(&server, "GET", "/info", None, None).await.0, 401);
    assert_eq!(
        send(&server, "GET", "/openapi.json", Some("Bearer-less"), None)
            .await
            .0,
        401
    );

    for key in [CLIENT_A, CLIENT_B, ADMIN] {
        assert_eq!(
            send(
                &server,
                "POST",
                "/v1/rerank",
                Some(key),
                Some(rerank.clone())
            )
            .await
            .0,
            200
        );
    }
    let (status, _, info) = send(&server, "GET", "/info", Some(CLIENT_B), None).await;
    assert_eq!(status, 200);
    for secret in [CLIENT_A, CLIENT_B, ADMIN] {
        assert!(!info.contains(secret), "/info shows a key");
    }
    let info: Value = serde_json::from_str(&info).unwrap();
    assert_eq!(
        info["auth"],
        json!({"api_keys": 2, "admin_endpoints": true})
    );

    // Admin: a client key is known but not allowed (403); no key is 401; the admin key works.
    assert_eq!(
        send(&server, "POST", "/admin/cache/clear", Some(CLIENT_A), None)
            .await
            .0,
        403
    );
    assert_eq!(
        send(&server, "POST", "/admin/cache/clear", None, None)
            .await
            .0,
        401
    );
    let (status, _, cleared) = send(&server, "POST", "/admin/cache/clear", Some(ADMIN), None).await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&cleared).unwrap()["entries_removed"],
        1
    );
    let (_, _, again) = send(&server, "POST", "/v1/rerank", Some(CLIENT_A), Some(rerank)).await;
    assert_eq!(
        serde_json::from_str::<Value>(&again).unwrap()["meta"]["cache_hits"],
        0,
        "cache was emptied"
    );
    assert!(
        server.metric("te_request_failure").await >= 6.0,
        "refusals are counted"
    );

    // gRPC: the same keys as metadata; health checking stays open.
    let mut grpc = RerankClient::connect(server.grpc_url()).await.unwrap();
    let request = || RerankRequest {
        query: "q".into(),
        documents: vec!["d".into()],
        ..Default::default()
    };
    let status = grpc.rerank(request()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    let mut call = tonic::Request::new(request());
    call.metadata_mut().insert(
        "authorization",
        format!("Bearer {CLIENT_A}").parse().unwrap(),
    );
    assert!(grpc.rerank(call).await.is_ok());
    let channel = tonic::transport::Channel::from_shared(server.grpc_url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let check = tonic_health::pb::HealthCheckRequest {
        service: String::new(),
    };
    assert!(health.check(check).await.is_ok());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_are_off_without_an_admin_key_and_all_is_open_without_keys() {
    let server = TestServer::start(&[]).await;
    assert_eq!(send(&server, "GET", "/info", None, None).await.0, 200);
    let (status, _, body) = send(&server, "POST", "/admin/cache/clear", Some(ADMIN), None).await;
    assert_eq!(status, 404);
    assert!(body.contains("ADMIN_API_KEY"), "{body}");
    server.stop().await;

    let server = TestServer::start(&["--api-key", CLIENT_A]).await;
    assert_eq!(
        send(&server, "POST", "/admin/cache/clear", Some(CLIENT_A), None)
            .await
            .0,
        404
    );
    server.stop().await;
}

#[test]
fn keys_never_reach_the_logs() {
    let mut service = common::ServiceProcess::spawn(
        &["--log-format", "json"],
        &[
            ("API_KEY", CLIENT_A),
            ("ADMIN_API_KEY", ADMIN),
            ("RUST_LOG", "debug"),
        ],
        Stdio::null(),
        Stdio::piped(),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        service.wait_ready().await;
        let client = reqwest::Client::new();
        for key in [CLIENT_A, ADMIN, "wrong-key-dddddddddddddddd"] {
            let body = json!({"query": "q", "documents": ["d"]});
            let _ = client
                .post(format!("{}/v1/rerank", service.base))
                .bearer_auth(key)
                .json(&body)
                .send()
                .await;
            let _ = client
                .post(format!("{}/admin/cache/clear", service.base))
                .bearer_auth(key)
                .send()
                .await;
        }
    });
    service.terminate();
    let output = service.child.wait_with_output().unwrap();
    let logs = String::from_utf8_lossy(&output.stderr);
    assert!(logs.contains("request"), "debug logs were captured");
    // The request span records the header, marked sensitive by the layer outside tracing.
    assert!(
        logs.contains("Sensitive"),
        "the span's `authorization` field is redacted"
    );
    for secret in [CLIENT_A, ADMIN, "wrong-key-dddddddddddddddd"] {
        assert!(!logs.contains(secret), "a key appears in the logs");
    }
}
