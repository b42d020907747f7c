//! Property: however the pairs of concurrent requests are interleaved into the queue, and
//! whatever the batch limits and the number of sessions, every pair gets the score it gets
//! when scored alone. Real batcher, real ONNX Runtime sessions, real tokenizer.

mod common;

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use proptest::prelude::*;
use rradistill::batch::{Batcher, BatcherConfig, WorkItem};
use rradistill::metrics::Metrics;
use rradistill::model::graph::SessionOptions;
use rradistill::model::student::StudentRanker;
use rradistill::model::{Ranker, Truncation};
use tokio::sync::mpsc;

fn ranker(sessions: usize) -> Arc<dyn Ranker> {
    static RANKERS: OnceLock<[Arc<dyn Ranker>; 2]> = OnceLock::new();
    let rankers = RANKERS.get_or_init(|| {
        rradistill::runtime::init(&common::ort_library()).unwrap();
        let load = |sessions| -> Arc<dyn Ranker> {
            Arc::new(
                StudentRanker::load(
                    &common::encoder_fixture(),
                    &SessionOptions {
                        sessions,
                        intra_threads: 1,
                        ..SessionOptions::default()
                    },
                )
                .unwrap(),
            )
        };
        [load(1), load(2)]
    });
    rankers[sessions - 1].clone()
}

const WORDS: [&str; 12] = [
    "package", "offline", "install", "kernel", "module", "python", "thread", "locale", "tuple",
    "manual", "section", "release",
];

fn text(seed: &[u8]) -> String {
    seed.iter()
        .map(|&b| WORDS[b as usize % WORDS.len()])
        .collect::<Vec<_>>()
        .join(" ")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn any_interleaving_scores_like_alone(
        requests in prop::collection::vec(
            (prop::collection::vec(any::<u8>(), 1..6), prop::collection::vec(prop::collection::vec(any::<u8>(), 0..60), 1..12)),
            1..6),
        order_seed in prop::collection::vec(any::<u16>(), 0..200),
        max_batch_size in 1usize..24,
        max_batch_tokens in 128usize..2048,
        max_batch_padding in prop::option::of(0.0f64..=1.0),
        sessions in 1usize..=2,
    ) {
        let ranker = ranker(sessions);
        let truncation = Truncation::default();
        // Every pair, prepared once, with its score alone (a batch of one).
        let mut pairs = Vec::new();
        for (r, (query, docs)) in requests.iter().enumerate() {
            let q = ranker.prepare_query(&text(query), 64).unwrap();
            for (d, doc) in docs.iter().enumerate() {
                let pair = ranker.prepare_pair(&q, &text(doc), d, &truncation).unwrap();
                let alone = ranker.score(0, &[&pair]).unwrap()[0];
                pairs.push((r, d, pair, alone));
            }
        }
        // An interleaving: pairs of all requests submitted in an order drawn from `order_seed`,
        // in submissions of random size.
        let mut order: Vec<usize> = (0..pairs.len()).collect();
        for (i, s) in order_seed.iter().enumerate() {
            let (a, b) = (i % order.len(), *s as usize % order.len());
            order.swap(a, b);
        }
        let batcher = Batcher::start(ranker.clone(), BatcherConfig { max_batch_tokens, max_batch_size, max_batch_padding }, Metrics::new().for_model("prop"));
        let channels: Vec<_> = requests.iter().map(|_| mpsc::unbounded_channel()).collect();
        let mut chunk = Vec::new();
        for (k, &p) in order.iter().enumerate() {
            let (r, d, pair, _) = &pairs[p];
            chunk.push(WorkItem { pair: pair.clone(), index: *d, enqueued: Instant::now(), reply: channels[*r].0.clone() });
            if order_seed.get(k).is_some_and(|s| s % 3 == 0) || k + 1 == order.len() {
                batcher.submit(std::mem::take(&mut chunk)).unwrap();
            }
        }
        for (r, (_, mut receiver)) in channels.into_iter().enumerate() {
            for _ in 0..requests[r].1.len() {
                let outcome = receiver.blocking_recv().expect("every pair is answered");
                let batched = outcome.result.unwrap();
                let (_, _, _, alone) = pairs.iter().find(|(pr, pd, _, _)| *pr == r && *pd == outcome.index).unwrap();
                prop_assert!((batched - alone).abs() < 1e-5, "request {r} pair {}: alone {alone}, batched {batched}", outcome.index);
            }
        }
        batcher.shutdown();
    }
}
