//! TEI's gRPC re-rank interface (`tei.v1`, `proto/tei.proto`) with a tonic client generated
//! from that proto, over loopback: unary `Rerank` scores as TEI's REST `/rerank` does here,
//! sorted, with TEI's metadata and timing headers; `RerankStream` (one pair a message, two
//! queries interleaved) gives each message's position and the pair's own score; `Info`
//! describes the default model as a re-ranker; errors carry REST's messages; keys apply.

mod common;

use common::{documents, TestServer};
use rradistill::grpc::tei::pb::info_client::InfoClient;
use rradistill::grpc::tei::pb::rerank_client::RerankClient;
use rradistill::grpc::tei::pb::{
    InfoRequest, ModelType, RerankRequest, RerankResponse, RerankStreamRequest,
};
use serde_json::{json, Value};
use tonic::Code;

async fn client(server: &TestServer) -> RerankClient<tonic::transport::Channel> {
    RerankClient::connect(server.grpc_url())
        .await
        .expect("gRPC connect")
}

/// TEI's REST answer here: index -> raw score.
async fn rest_scores(server: &TestServer, query: &str, texts: &[String]) -> Vec<f64> {
    let (status, _, body) = server
        .post(
            "/rerank",
            &json!({"query": query, "texts": texts, "raw_scores": true}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let mut scores = vec![f64::NAN; texts.len()];
    for r in body.as_array().unwrap() {
        scores[r["index"].as_u64().unwrap() as usize] = r["score"].as_f64().unwrap();
    }
    scores
}

fn sorted_by_score(response: &RerankResponse) -> bool {
    response
        .ranks
        .windows(2)
        .all(|w| w[0].score > w[1].score || (w[0].score == w[1].score && w[0].index < w[1].index))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_rerank_scores_as_rest_with_teis_metadata() {
    let server = TestServer::start(&["--cache-capacity", "0"]).await;
    let texts = documents(12, 3);
    let query = "which man section documents library calls";
    let response = client(&server)
        .await
        .rerank(RerankRequest {
            query: query.into(),
            texts: texts.clone(),
            raw_scores: true,
            return_text: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let headers = response.metadata().clone();
    let response = response.into_inner();
    assert_eq!(response.ranks.len(), 12);
    assert!(sorted_by_score(&response));
    let rest = rest_scores(&server, query, &texts).await;
    for rank in &response.ranks {
        let i = rank.index as usize;
        assert!((f64::from(rank.score) - rest[i]).abs() < 1e-6, "text {i}");
        assert_eq!(rank.text.as_deref(), Some(texts[i].as_str()));
    }
    let meta = response.metadata.unwrap();
    assert!(meta.compute_tokens > 0 && meta.total_time_ns > 0 && meta.inference_time_ns > 0);
    assert_eq!(
        meta.compute_chars as usize,
        texts
            .iter()
            .map(|t| query.chars().count() + t.chars().count())
            .sum::<usize>()
    );
    assert_eq!(
        headers.get("x-compute-tokens").unwrap().to_str().unwrap(),
        meta.compute_tokens.to_string()
    );
    assert_eq!(headers.get("x-compute-type").unwrap(), "cpu");

    // Scores in 0..1 unless raw ones are asked for; no text unless asked for.
    let plain = client(&server)
        .await
        .rerank(RerankRequest {
            query: query.into(),
            texts: texts.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(plain
        .ranks
        .iter()
        .all(|r| (0.0..=1.0).contains(&r.score) && r.text.is_none()));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_of_pairs_ranks_every_message_by_its_own_query() {
    let server = TestServer::start(&["--cache-capacity", "0"]).await;
    let (a, b) = ("how do I install a package offline", "tuple versus list");
    let (texts_a, texts_b) = (documents(5, 1), documents(4, 2));
    // Interleaved: a, b, a, b, ...; the first message asks for raw scores and texts.
    let mut messages = Vec::new();
    for i in 0..5 {
        messages.push((a, texts_a[i].clone()));
        if i < 4 {
            messages.push((b, texts_b[i].clone()));
        }
    }
    let outbound: Vec<RerankStreamRequest> = messages
        .iter()
        .enumerate()
        .map(|(n, (query, text))| RerankStreamRequest {
            query: query.to_string(),
            text: text.clone(),
            raw_scores: n == 0,
            return_text: n == 0,
            ..Default::default()
        })
        .collect();
    let response = client(&server)
        .await
        .rerank_stream(futures::stream::iter(outbound))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.ranks.len(), messages.len());
    assert!(sorted_by_score(&response));
    let (rest_a, rest_b) = (
        rest_scores(&server, a, &texts_a).await,
        rest_scores(&server, b, &texts_b).await,
    );
    for rank in &response.ranks {
        let n = rank.index as usize;
        let (query, text) = &messages[n];
        assert_eq!(rank.text.as_deref(), Some(text.as_str()), "message {n}");
        let expected = if *query == a {
            rest_a[n / 2]
        } else {
            rest_b[n / 2]
        };
        assert!(
            (f64::from(rank.score) - expected).abs() < 1e-6,
            "message {n}"
        );
    }
    let meta = response.metadata.unwrap();
    assert!(meta.compute_tokens > 0 && meta.total_time_ns > 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_errors_and_keys() {
    let key = "tei-grpc-test-key-0123456789";
    let server = TestServer::start(&[
        "--max-documents",
        "3",
        "--max-body-bytes",
        "2500",
        "--api-key",
        key,
    ])
    .await;
    let channel = tonic::transport::Channel::from_shared(server.grpc_url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let with_key = |mut request: tonic::Request<_>| {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {key}").parse().unwrap());
        Ok(request)
    };
    let mut info = InfoClient::with_interceptor(channel.clone(), with_key);
    let info = info.info(InfoRequest {}).await.unwrap().into_inner();
    assert_eq!(info.model_id, "encoder-mini-fixture");
    assert_eq!(info.model_type, ModelType::Reranker as i32);
    assert_eq!(
        (info.max_input_length, info.max_client_batch_size),
        (128, 3)
    );
    assert!(info.model_sha.is_some_and(|sha| !sha.is_empty()));

    // Without a key: UNAUTHENTICATED, as on rradistill.v1.
    let status = RerankClient::new(channel.clone())
        .rerank(RerankRequest {
            query: "q".into(),
            texts: documents(1, 1),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);

    let mut grpc = RerankClient::with_interceptor(channel, with_key);
    let status = grpc
        .rerank(RerankRequest {
            query: "  ".into(),
            texts: vec!["a".into(), "b".into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let rest: Value = {
        let response = server
            .client
            .post(server.url("/rerank"))
            .bearer_auth(key)
            .json(&json!({"query": "  ", "texts": ["a", "b"]}))
            .send()
            .await
            .unwrap();
        response.json().await.unwrap()
    };
    assert_eq!(
        status.message(),
        rest["error"].as_str().unwrap(),
        "REST's message"
    );

    let pair = |n: usize| RerankStreamRequest {
        query: "q".into(),
        text: format!("text {n}"),
        ..Default::default()
    };
    let status = grpc
        .rerank_stream(futures::stream::iter((0..4).map(pair)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status
            .message()
            .contains("the most one request may carry is 3"),
        "{status:?}"
    );
    // Three messages of 1,000 bytes against --max-body-bytes 2500.
    let long = |n: usize| RerankStreamRequest {
        query: "q".into(),
        text: format!("{n}").repeat(1000),
        ..Default::default()
    };
    let status = grpc
        .rerank_stream(futures::stream::iter((0..3).map(long)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("more than 2500 bytes"),
        "{status:?}"
    );
    let status = grpc
        .rerank_stream(futures::stream::iter(Vec::<RerankStreamRequest>::new()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("no messages"), "{status:?}");
    server.stop().await;
}
