//! The gRPC interface with a tonic client over loopback: unary and streaming re-rank with the
//! same scores as REST, Info, status codes carrying REST's messages, health and reflection.

mod common;

use common::{documents, TestServer};
use rradistill::grpc::pb::rerank_client::RerankClient;
use rradistill::grpc::pb::{InfoRequest, RerankRequest};
use serde_json::json;
use tonic::Code;

async fn client(server: &TestServer) -> RerankClient<tonic::transport::Channel> {
    RerankClient::connect(server.grpc_url())
        .await
        .expect("gRPC connect")
}

fn request(query: &str, docs: &[String]) -> RerankRequest {
    RerankRequest {
        query: query.into(),
        documents: docs.to_vec(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_rerank_matches_rest() {
    let server = TestServer::start(&["--cache-capacity", "0"]).await;
    let docs = documents(15, 11);
    let mut grpc = client(&server).await;
    let mut call = tonic::Request::new(RerankRequest {
        raw_scores: true,
        return_documents: true,
        top_n: Some(10),
        ..request("which man section documents library calls", &docs)
    });
    call.metadata_mut()
        .insert("x-request-id", "grpc-trace-7".parse().unwrap());
    let response = grpc.rerank(call).await.unwrap().into_inner();
    assert_eq!(response.id, "grpc-trace-7");
    assert_eq!(response.model, "encoder-mini-fixture");
    assert_eq!(response.results.len(), 10);
    let meta = response.meta.unwrap();
    assert_eq!(meta.documents, 15);
    assert!(meta.input_tokens > 0 && meta.total_time_ns > 0 && meta.batches >= 1);

    let (_, _, rest) = server
        .post(
            "/v1/rerank",
            &json!({"query": "which man section documents library calls", "documents": docs, "raw_scores": true, "top_n": 10}),
        )
        .await;
    for (g, r) in response
        .results
        .iter()
        .zip(rest["results"].as_array().unwrap())
    {
        assert_eq!(u64::from(g.index), r["index"].as_u64().unwrap());
        assert!(
            (f64::from(g.relevance_score) - r["relevance_score"].as_f64().unwrap()).abs() < 1e-6
        );
        assert_eq!(g.document.as_deref(), Some(docs[g.index as usize].as_str()));
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_answers_each_request_in_order() {
    let server = TestServer::start(&[]).await;
    let mut grpc = client(&server).await;
    let requests: Vec<RerankRequest> = (0..4)
        .map(|i| RerankRequest {
            top_n: Some(i + 1),
            ..request(&format!("query {i}"), &documents(8, i as usize))
        })
        .collect();
    let outbound = futures::stream::iter(requests);
    let mut inbound = grpc.rerank_stream(outbound).await.unwrap().into_inner();
    let mut seen = 0;
    while let Some(response) = inbound.message().await.unwrap() {
        seen += 1;
        assert_eq!(response.results.len(), seen, "top_n of request {seen}");
        assert!(response.id.ends_with(&format!("-{}", seen - 1)));
    }
    assert_eq!(seen, 4);

    // A bad request ends the stream with its status after the good ones before it.
    let outbound = futures::stream::iter(vec![
        request("fine", &documents(2, 1)),
        request("", &documents(2, 1)),
    ]);
    let mut inbound = grpc.rerank_stream(outbound).await.unwrap().into_inner();
    assert!(inbound.message().await.unwrap().is_some());
    let status = inbound.message().await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_map_to_grpc_codes_with_rest_messages() {
    let server = TestServer::start(&["--max-documents", "10", "--max-queue-tokens", "3000"]).await;
    let mut grpc = client(&server).await;

    let status = grpc
        .rerank(request("  ", &documents(2, 1)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let (_, _, rest) = server
        .post(
            "/v1/rerank",
            &json!({"query": "  ", "documents": documents(2, 1)}),
        )
        .await;
    assert_eq!(
        status.message(),
        rest["error"]["message"].as_str().unwrap(),
        "same message as REST"
    );

    let status = grpc
        .rerank(request("q", &documents(11, 1)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("10"));

    let status = grpc
        .rerank(RerankRequest {
            model: "nope".into(),
            ..request("q", &documents(1, 1))
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert!(status.message().contains("encoder-mini-fixture"));

    let status = grpc
        .rerank(RerankRequest {
            top_n: Some(0),
            ..request("q", &documents(1, 1))
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let status = grpc
        .rerank(RerankRequest {
            max_chunks_per_doc: Some(0),
            ..request("q", &documents(1, 1))
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("`max_chunks_per_doc` is 0"));

    let model = server.service().registry().get(None).unwrap();
    let held = model.admission.try_admit(2990).unwrap();
    let status = grpc
        .rerank(request("q", &documents(5, 1)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    drop(held);
    assert!(grpc.rerank(request("q", &documents(5, 1))).await.is_ok());
    assert!(
        server.metric("te_request_failure").await >= 5.0,
        "gRPC failures are counted like REST's"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_health_and_reflection() {
    let server = TestServer::start(&[]).await;
    let mut grpc = client(&server).await;
    let info = grpc.info(InfoRequest {}).await.unwrap().into_inner();
    assert_eq!(info.default_model, "encoder-mini-fixture");
    assert_eq!(info.models[0].max_sequence_length, 128);
    assert_eq!(info.models[0].execution_provider, "cpu");
    assert_eq!(
        info.models[0].max_batch_padding,
        Some(rradistill::batch::queue::CPU_PADDING)
    );
    assert_eq!(info.max_documents, 1000);

    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    let channel = tonic::transport::Channel::from_shared(server.grpc_url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel.clone());
    for service in ["", "rradistill.v1.Rerank", "tei.v1.Rerank", "tei.v1.Info"] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            status.status,
            ServingStatus::Serving as i32,
            "service `{service}`"
        );
    }

    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    let mut reflection = ServerReflectionClient::new(channel);
    let ask = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = reflection
        .server_reflection_info(futures::stream::iter(vec![ask]))
        .await
        .unwrap()
        .into_inner();
    let answer = answers.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("{answer:?}")
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    for name in ["rradistill.v1.Rerank", "tei.v1.Rerank", "tei.v1.Info"] {
        assert!(names.contains(&name), "{names:?}");
    }
    assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_turns_health_not_serving_and_refuses_new_calls() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    let server = TestServer::start(&[]).await;
    let mut grpc = client(&server).await;
    let channel = tonic::transport::Channel::from_shared(server.grpc_url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel);
    let check = |service: &str| HealthCheckRequest {
        service: service.into(),
    };
    assert!(grpc.rerank(request("q", &documents(2, 1))).await.is_ok());

    server.service().stop_accepting();
    // The health reporter learns of it on its own task: wait for it (bounded), no timing asserted.
    let mut status = ServingStatus::Serving as i32;
    for _ in 0..100 {
        status = health.check(check("")).await.unwrap().into_inner().status;
        if status == ServingStatus::NotServing as i32 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(status, ServingStatus::NotServing as i32);
    let named = health
        .check(check("rradistill.v1.Rerank"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(named.status, ServingStatus::NotServing as i32);
    let refused = grpc
        .rerank(request("q", &documents(2, 1)))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_past_its_deadline_is_deadline_exceeded() {
    let server = TestServer::start(&["--request-timeout-ms", "1", "--cache-capacity", "0"]).await;
    let mut grpc = client(&server).await;
    let status = grpc
        .rerank(request("deadline", &documents(1000, 7)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_inference_is_internal_with_the_request_id_not_the_runtime_text() {
    let faulty = common::fixtures().join("encoder-faulty");
    let server = TestServer::start_with(&faulty, &["--cache-capacity", "0"]).await;
    let mut grpc = client(&server).await;
    let mut call = tonic::Request::new(request("q", &["this carries poison".to_string()]));
    call.metadata_mut()
        .insert("x-request-id", "grpc-fault-1".parse().unwrap());
    let status = grpc.rerank(call).await.unwrap_err();
    assert_eq!(status.code(), Code::Internal);
    assert!(status.message().contains("grpc-fault-1"), "{status:?}");
    assert!(!status.message().contains("Reshape"), "{status:?}");
    server.stop().await;
}
