//! TEI's gRPC re-rank interface (`proto/tei.proto`, package `tei.v1`): what a client
//! generated from Hugging Face text-embeddings-inference's own proto calls, on the same port
//! and over the same [`RerankService`] as `rradistill.v1`.
//!
//! - `tei.v1.Rerank/Rerank`: one query and its texts, as TEI's REST `/rerank`: `truncate:
//!   true` cuts texts over the window, `false` (also what an unset proto3 field reads as) lets
//!   the server's `--auto-truncate` decide. Ranks sorted by score, highest first (ties by
//!   index), with TEI's `Metadata` (queue, tokenization and inference times are means per
//!   text, as TEI reports them) and TEI's timing headers as response metadata.
//! - `tei.v1.Rerank/RerankStream`: one (query, text) pair per message, answered when the
//!   client closes its stream, each text's `index` its message's position. TEI scores each
//!   message on its own; here the messages that share a query and a `truncate` are one
//!   re-rank (so they batch and cache together), those groups run a few at a time, and the
//!   ranks are merged by score. `raw_scores` and `return_text` are the first message's, as
//!   TEI takes them; more messages than `--max-documents`, or more text than
//!   `--max-body-bytes`, end the call with INVALID_ARGUMENT as soon as the message that
//!   passes the limit arrives.
//! - `tei.v1.Info/Info`: the default model as TEI describes its one model (a re-ranker).
//!
//! Errors carry the statuses and messages of `rradistill.v1` ([`super::status`]).

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use super::{call_span, checked_rerank, nanos, status};
use crate::api::TeiTiming;
use crate::rerank::{JobSpec, RerankError, RerankService};

pub mod pb {
    tonic::include_proto!("tei.v1");
}

/// TEI's `Rerank` and `Info` services over the shared re-rank core.
#[derive(Clone)]
pub struct GrpcTei {
    pub service: Arc<RerankService>,
}

/// The service name in spans (`otel.name`), as TEI's clients call it.
const SERVICE: &str = "tei.v1.Rerank";

/// How many of a stream's query groups are re-ranked at once.
const GROUPS_AT_ONCE: usize = 8;

fn job(query: String, texts: Vec<String>, truncate: bool, raw_scores: bool) -> JobSpec {
    JobSpec {
        query,
        documents: texts,
        raw_scores,
        // proto3 cannot tell false from unset: false leaves it to --auto-truncate.
        truncate: truncate.then_some(true),
        ..JobSpec::default()
    }
}

/// TEI's `Metadata` of what [`TeiTiming`] reports.
fn metadata(timing: &TeiTiming) -> pb::Metadata {
    pb::Metadata {
        compute_chars: timing.characters as u32,
        compute_tokens: timing.tokens as u32,
        total_time_ns: nanos(timing.total_ms),
        tokenization_time_ns: nanos(timing.means.tokenization_ms),
        queue_time_ns: nanos(timing.means.queue_ms),
        inference_time_ns: nanos(timing.means.inference_ms),
    }
}

/// TEI's timing headers as gRPC response metadata, as TEI sends them.
fn timing_headers(timing: &TeiTiming) -> MetadataMap {
    let mut map = MetadataMap::new();
    for (name, value) in timing.headers() {
        if let Ok(value) = MetadataValue::try_from(value) {
            map.insert(name, value);
        }
    }
    map
}

fn sorted(mut ranks: Vec<pb::Rank>) -> Vec<pb::Rank> {
    ranks.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.index.cmp(&b.index)));
    ranks
}

/// One message of a stream, and where it was.
struct Message {
    index: u32,
    text: String,
}

#[tonic::async_trait]
impl pb::rerank_server::Rerank for GrpcTei {
    async fn rerank(
        &self,
        request: Request<pb::RerankRequest>,
    ) -> Result<Response<pb::RerankResponse>, Status> {
        let (id, span) = call_span(&request, SERVICE, "Rerank");
        let request = request.into_inner();
        let return_text = request.return_text;
        let spec = job(
            request.query,
            request.texts,
            request.truncate,
            request.raw_scores,
        );
        let (texts, outcome) = checked_rerank(&self.service, spec, &id)
            .instrument(span)
            .await?;
        let ranks = outcome
            .results
            .iter()
            .map(|r| pb::Rank {
                index: r.index as u32,
                text: return_text.then(|| texts[r.index].clone()),
                score: r.score,
            })
            .collect();
        let timing = TeiTiming::of(&outcome);
        Ok(Response::from_parts(
            timing_headers(&timing),
            pb::RerankResponse {
                ranks,
                metadata: Some(metadata(&timing)),
            },
            Default::default(),
        ))
    }

    async fn rerank_stream(
        &self,
        request: Request<Streaming<pb::RerankStreamRequest>>,
    ) -> Result<Response<pb::RerankResponse>, Status> {
        let started = Instant::now();
        let (id, span) = call_span(&request, SERVICE, "RerankStream");
        let service = self.service.clone();
        let limit = service.limits.max_documents;
        let max_bytes = service.limits.max_body_bytes;
        let mut inbound = request.into_inner();
        let mut bytes = 0usize;
        // Groups of messages with the same query and `truncate`, in order of first message.
        let mut groups: Vec<(String, bool, Vec<Message>)> = Vec::new();
        let mut flags = None;
        let mut count = 0u32;
        while let Some(message) = inbound.message().await? {
            if count as usize >= limit {
                let error = RerankError::TooLarge(crate::rerank::too_many_documents(
                    &format!("more than {limit}"),
                    limit,
                ));
                service.record_refused(error.kind());
                return Err(status(error, &id));
            }
            // What a REST body may carry, the messages together may carry.
            bytes = bytes.saturating_add(message.query.len() + message.text.len());
            if bytes > max_bytes {
                let error = RerankError::TooLarge(format!(
                    "the stream's messages carry more than {max_bytes} bytes of text, the most \
                     one re-rank may (--max-body-bytes): split it into several calls"
                ));
                service.record_refused(error.kind());
                return Err(status(error, &id));
            }
            flags.get_or_insert((message.raw_scores, message.return_text));
            let text = Message {
                index: count,
                text: message.text,
            };
            match groups
                .iter_mut()
                .find(|(q, t, _)| *q == message.query && *t == message.truncate)
            {
                Some((_, _, texts)) => texts.push(text),
                None => groups.push((message.query, message.truncate, vec![text])),
            }
            count += 1;
        }
        let Some((raw_scores, return_text)) = flags else {
            let error = RerankError::Validation(
                "no messages: send one (query, text) message per text to rank".into(),
            );
            service.record_refused(error.kind());
            return Err(status(error, &id));
        };
        let runs = groups
            .into_iter()
            .enumerate()
            .map(|(n, (query, truncate, texts))| {
                let service = service.clone();
                let id = format!("{id}-{n}");
                async move {
                    let spec = job(
                        query,
                        texts.iter().map(|m| m.text.clone()).collect(),
                        truncate,
                        raw_scores,
                    );
                    let (_, outcome) = checked_rerank(&service, spec, &id).await?;
                    Ok::<_, Status>((texts, outcome))
                }
            });
        // A few groups at a time, so that a stream of many distinct queries does not take
        // every admission slot at once.
        let outcomes: Vec<_> = futures::stream::iter(runs)
            .buffered(GROUPS_AT_ONCE)
            .collect()
            .instrument(span)
            .await;
        let mut ranks = Vec::with_capacity(count as usize);
        // The groups' figures together: counts summed, per-text means weighted by texts.
        let mut timing = TeiTiming::default();
        let texts_in_all = f64::from(count);
        for result in outcomes {
            let (texts, outcome) = result?;
            let group = TeiTiming::of(&outcome);
            let share = texts.len() as f64 / texts_in_all;
            timing.characters += group.characters;
            timing.tokens += group.tokens;
            timing.means.tokenization_ms += group.means.tokenization_ms * share;
            timing.means.queue_ms += group.means.queue_ms * share;
            timing.means.inference_ms += group.means.inference_ms * share;
            timing.provider = group.provider;
            ranks.extend(outcome.results.iter().map(|r| {
                let message = &texts[r.index];
                pb::Rank {
                    index: message.index,
                    text: return_text.then(|| message.text.clone()),
                    score: r.score,
                }
            }));
        }
        timing.total_ms = started.elapsed().as_secs_f64() * 1e3;
        Ok(Response::from_parts(
            timing_headers(&timing),
            pb::RerankResponse {
                ranks: sorted(ranks),
                metadata: Some(metadata(&timing)),
            },
            Default::default(),
        ))
    }
}

#[tonic::async_trait]
impl pb::info_server::Info for GrpcTei {
    async fn info(
        &self,
        _request: Request<pb::InfoRequest>,
    ) -> Result<Response<pb::InfoResponse>, Status> {
        let service = &self.service;
        let model = service
            .registry()
            .get(None)
            .map_err(|e| Status::from(RerankError::from(e)))?;
        let d = &model.descriptor;
        let batch = model.batcher.config();
        Ok(Response::new(pb::InfoResponse {
            version: env!("CARGO_PKG_VERSION").into(),
            sha: None,
            docker_label: None,
            model_id: d.name.clone(),
            model_sha: Some(d.fingerprint.clone()),
            // The model folder does not record its weights' type.
            model_dtype: String::new(),
            model_type: pb::ModelType::Reranker.into(),
            max_concurrent_requests: model.admission.max_requests() as u32,
            max_input_length: d.max_sequence_length as u32,
            max_batch_tokens: batch.max_batch_tokens as u32,
            max_batch_requests: Some(batch.max_batch_size as u32),
            max_client_batch_size: service.limits.max_documents as u32,
            // Tokenization runs on the runtime's blocking threads, not a fixed pool.
            tokenization_workers: 0,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_sort_by_score_then_index_and_false_truncate_defers_to_the_server() {
        let rank = |index, score| pb::Rank {
            index,
            text: None,
            score,
        };
        let order: Vec<u32> = sorted(vec![rank(0, 0.1), rank(1, 0.9), rank(2, 0.1), rank(3, 0.5)])
            .iter()
            .map(|r| r.index)
            .collect();
        assert_eq!(order, vec![1, 3, 0, 2]);
        assert_eq!(job("q".into(), vec![], false, false).truncate, None);
        assert_eq!(job("q".into(), vec![], true, false).truncate, Some(true));
    }
}
