//! The OpenAPI document against the handlers: every documented path is exercised, every
//! status a handler returns must be documented for it, and every JSON body must match the
//! documented schema exactly (no missing required field, no undocumented field, right types).

mod common;

use std::collections::BTreeSet;

use common::{documents, TestServer};
use serde_json::{json, Value};

fn resolve<'a>(spec: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(reference) => resolve(
            spec,
            &spec["components"]["schemas"][reference.trim_start_matches("#/components/schemas/")],
        ),
        None => schema,
    }
}

/// Checks `instance` against `schema` (resolving `$ref`s in `spec`); returns what differs.
fn mismatches(spec: &Value, schema: &Value, instance: &Value, at: &str) -> Vec<String> {
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        let name = reference.trim_start_matches("#/components/schemas/");
        let target = &spec["components"]["schemas"][name];
        assert!(!target.is_null(), "dangling $ref {reference}");
        return mismatches(spec, target, instance, at);
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(options) = schema.get(key).and_then(Value::as_array) {
            if options
                .iter()
                .any(|o| mismatches(spec, o, instance, at).is_empty())
            {
                return vec![];
            }
            return vec![format!(
                "{at}: {instance} matches none of {key} {options:?}"
            )];
        }
    }
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        // serde's `flatten`: one object whose properties are the union of the parts'.
        let mut merged = json!({"type": "object", "properties": {}, "required": []});
        for part in all {
            let part = resolve(spec, part);
            for (k, v) in part["properties"].as_object().into_iter().flatten() {
                merged["properties"][k] = v.clone();
            }
            for r in part["required"].as_array().into_iter().flatten() {
                merged["required"].as_array_mut().unwrap().push(r.clone());
            }
        }
        return mismatches(spec, &merged, instance, at);
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    if !types.is_empty() {
        let fits = types.iter().any(|t| match *t {
            "null" => instance.is_null(),
            "boolean" => instance.is_boolean(),
            "integer" => instance.is_i64() || instance.is_u64(),
            "number" => instance.is_number(),
            "string" => instance.is_string(),
            "array" => instance.is_array(),
            "object" => instance.is_object(),
            _ => false,
        });
        if !fits {
            return vec![format!("{at}: {instance} is not {types:?}")];
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        if !allowed.contains(instance) {
            return vec![format!("{at}: {instance} is not one of {allowed:?}")];
        }
    }
    let mut problems = Vec::new();
    if let (Some(object), Some(properties)) = (
        instance.as_object(),
        schema.get("properties").and_then(Value::as_object),
    ) {
        for required in schema["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !object.contains_key(required) {
                problems.push(format!("{at}: required `{required}` missing"));
            }
        }
        for (key, value) in object {
            match properties.get(key) {
                Some(property) => {
                    problems.extend(mismatches(spec, property, value, &format!("{at}.{key}")))
                }
                None => problems.push(format!("{at}: `{key}` is not documented")),
            }
        }
    }
    if let (Some(items), Some(array)) = (schema.get("items"), instance.as_array()) {
        for (i, item) in array.iter().enumerate() {
            problems.extend(mismatches(spec, items, item, &format!("{at}[{i}]")));
        }
    }
    problems
}

struct Checker {
    spec: Value,
    exercised: BTreeSet<(String, u16)>,
}

impl Checker {
    async fn call(
        &mut self,
        server: &TestServer,
        method: &str,
        path: &str,
        body: Option<reqwest::Body>,
        content_type: &str,
    ) -> u16 {
        let request = match method {
            "get" => server.client.get(server.url(path)),
            _ => server
                .client
                .post(server.url(path))
                .header("content-type", content_type),
        };
        let request = match body {
            Some(body) => request.body(body),
            None => request,
        };
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let media = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let text = response.text().await.unwrap();
        let operation = &self.spec["paths"][path][method];
        assert!(
            operation.is_object(),
            "{method} {path} answers but is not in the OpenAPI document"
        );
        let documented = &operation["responses"][status.to_string()];
        assert!(
            documented.is_object(),
            "{method} {path} answered {status}, which the document does not list: {text}"
        );
        if media.starts_with("application/json") {
            let schema = &documented["content"]["application/json"]["schema"];
            assert!(
                !schema.is_null(),
                "{method} {path} {status}: JSON body but no documented schema"
            );
            let value: Value = serde_json::from_str(&text).unwrap();
            let problems = mismatches(&self.spec, schema, &value, "body");
            assert!(
                problems.is_empty(),
                "{method} {path} {status} disagrees with the document:\n{}\n{text}",
                problems.join("\n")
            );
        } else {
            assert!(
                !documented["content"]["text/plain"].is_null(),
                "{method} {path} {status}: {media} not documented"
            );
        }
        self.exercised.insert((format!("{method} {path}"), status));
        status
    }

    /// `POST path` with a JSON body; its status, the body checked as `call` checks it.
    async fn post(&mut self, server: &TestServer, path: &str, body: Value) -> u16 {
        self.call(
            server,
            "post",
            path,
            Some(body.to_string().into()),
            "application/json",
        )
        .await
    }

    /// `POST path` with a body sent as is, under `content_type`.
    async fn post_raw(
        &mut self,
        server: &TestServer,
        path: &str,
        body: &str,
        content_type: &str,
    ) -> u16 {
        self.call(
            server,
            "post",
            path,
            Some(body.to_string().into()),
            content_type,
        )
        .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_answers_as_documented() {
    let server = TestServer::start(&["--max-documents", "30", "--max-queue-tokens", "5000"]).await;
    let (status, text) = server.get_text("/openapi.json").await;
    assert_eq!(status, 200);
    let spec: Value = serde_json::from_str(&text).unwrap();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    assert_eq!(
        spec["components"]["schemas"]["CohereRequest"]["properties"]["documents"]["maxItems"], 30,
        "limits of this instance"
    );
    assert_eq!(
        spec["components"]["schemas"]["TeiRequest"]["properties"]["texts"]["maxItems"],
        30
    );
    let mut checker = Checker {
        spec,
        exercised: BTreeSet::new(),
    };
    let ct = "application/json";
    let docs = documents(6, 21);

    for path in [
        "/health",
        "/ready",
        "/info",
        "/v1/models",
        "/metrics",
        "/openapi.json",
    ] {
        assert_eq!(checker.call(&server, "get", path, None, ct).await, 200);
    }
    // Admin endpoints are off without ADMIN_API_KEY (their on-state is in tests/auth.rs and
    // tests/models.rs).
    for path in ["/admin/cache/clear", "/admin/reload"] {
        assert_eq!(checker.call(&server, "post", path, None, ct).await, 404);
    }
    for path in ["/v1/rerank", "/v2/rerank"] {
        let ok = json!({"query": "locale", "documents": [docs[0], {"text": docs[1]}], "return_documents": true, "top_n": 1});
        let raw = json!({"query": "q", "documents": ["d"], "raw_scores": true});
        let unknown_model = json!({"model": "x", "query": "q", "documents": ["d"]});
        let too_many = json!({"query": "q", "documents": documents(31, 1)});
        let plain = json!({"query": "q", "documents": ["d"]}).to_string();
        let empty_query = json!({"query": "", "documents": ["d"]});
        assert_eq!(checker.post(&server, path, ok).await, 200);
        assert_eq!(checker.post(&server, path, raw).await, 200);
        assert_eq!(checker.post_raw(&server, path, "{", ct).await, 400);
        assert_eq!(checker.post(&server, path, unknown_model).await, 404);
        assert_eq!(checker.post(&server, path, too_many).await, 413);
        assert_eq!(
            checker.post_raw(&server, path, &plain, "text/plain").await,
            415
        );
        assert_eq!(checker.post(&server, path, empty_query).await, 422);
    }
    let tei = json!({"query": "locale", "texts": docs, "truncate": true, "return_text": true, "truncation_direction": "Left"});
    assert_eq!(checker.post(&server, "/rerank", tei).await, 200);
    // Infinity's request on the same route gets Infinity's answer.
    let infinity = json!({"query": "locale", "documents": docs, "return_documents": true,
        "raw_scores": false, "model": "default/not-specified", "top_n": 3});
    assert_eq!(checker.post(&server, "/rerank", infinity).await, 200);
    assert_eq!(checker.post_raw(&server, "/rerank", "[", ct).await, 400);
    let unknown_model = json!({"model": "x", "query": "q", "texts": ["d"]});
    assert_eq!(checker.post(&server, "/rerank", unknown_model).await, 404);
    let too_many = json!({"query": "q", "texts": documents(31, 1)});
    assert_eq!(
        checker.post(&server, "/rerank", too_many).await,
        422,
        "TEI answers too many texts with 422; its 413 is for bodies"
    );
    let plain = json!({"query": "q", "texts": ["d"]}).to_string();
    assert_eq!(
        checker
            .post_raw(&server, "/rerank", &plain, "text/plain")
            .await,
        415
    );
    let not_a_list = json!({"query": "q", "texts": "not a list"});
    assert_eq!(checker.post(&server, "/rerank", not_a_list).await, 422);

    // 429 while another client's work holds the token budget.
    let model = server.service().registry().get(None).unwrap();
    let held = model.admission.try_admit(4990).unwrap();
    for path in ["/v1/rerank", "/v2/rerank"] {
        let request = json!({"query": "q", "documents": docs});
        assert_eq!(checker.post(&server, path, request).await, 429);
    }
    let request = json!({"query": "q", "texts": docs, "truncate": true});
    assert_eq!(checker.post(&server, "/rerank", request).await, 429);
    drop(held);

    // 503 while draining.
    server.service().stop_accepting();
    assert_eq!(checker.call(&server, "get", "/ready", None, ct).await, 503);
    for path in ["/v1/rerank", "/v2/rerank"] {
        let request = json!({"query": "q", "documents": ["d"]});
        assert_eq!(checker.post(&server, path, request).await, 503);
    }
    let request = json!({"query": "q", "texts": ["d"]});
    assert_eq!(checker.post(&server, "/rerank", request).await, 503);
    server.stop().await;

    // 504 past the deadline.
    let slow = TestServer::start(&["--request-timeout-ms", "1", "--cache-capacity", "0"]).await;
    for path in ["/v1/rerank", "/v2/rerank"] {
        let request = json!({"query": "q", "documents": documents(1000, 3)});
        assert_eq!(checker.post(&slow, path, request).await, 504);
    }
    let request = json!({"query": "q", "texts": documents(1000, 3), "truncate": true});
    assert_eq!(checker.post(&slow, "/rerank", request).await, 504);
    slow.stop().await;

    // Every documented operation was exercised.
    let documented: BTreeSet<String> = checker.spec["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| format!("{m} {path}"))
        })
        .collect();
    let exercised: BTreeSet<String> = checker.exercised.iter().map(|(op, _)| op.clone()).collect();
    assert_eq!(
        documented, exercised,
        "documented operations without a test, or tested ones without documentation"
    );
}
