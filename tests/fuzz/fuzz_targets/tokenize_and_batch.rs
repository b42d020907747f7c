//! Any text as query and documents, any truncation settings, through the real tokenizer of
//! the test model, then batch assembly: never a panic, and every invariant the model relies on
//! holds (pairs fit the window, the query is never cut, batches respect their budget).
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rradistill::batch::queue::select_batch;
use rradistill::batch::BatcherConfig;
use rradistill::model::tokenize::{PairEncoder, PairTokenizer};
use rradistill::model::{Truncation, TruncationSide};

const WINDOW: usize = 128;

fn tokenizer() -> &'static PairTokenizer {
    static TOKENIZER: OnceLock<PairTokenizer> = OnceLock::new();
    TOKENIZER.get_or_init(|| {
        let fixtures = std::env::var("RRADISTILL_FIXTURES")
            .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/fixtures").to_string());
        PairTokenizer::from_file(&Path::new(&fixtures).join("encoder-mini/tokenizer.json"), WINDOW)
            .expect("run `make fixtures` first")
    })
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let (settings, text) = data.split_at(4);
    let text = String::from_utf8_lossy(text);
    let mut parts = text.split('\u{1f}');
    let query = parts.next().unwrap_or_default();
    let documents: Vec<&str> = parts.take(32).collect();
    let truncation = Truncation {
        enabled: settings[0] & 1 == 1,
        side: if settings[0] & 2 == 2 { TruncationSide::Left } else { TruncationSide::Right },
        max_document_tokens: (settings[1] > 0).then_some(settings[1] as usize),
    };
    let tokens = tokenizer();
    let Ok(prepared_query) = tokens.prepare_query(query, WINDOW / 2) else { return };
    assert!(prepared_query.tokens() <= tokens.query_limit(WINDOW / 2));
    let mut lengths = Vec::new();
    for (i, document) in documents.iter().enumerate() {
        match tokens.prepare_pair(&prepared_query, document, i, &truncation) {
            Ok(pair) => {
                assert!(pair.len() <= WINDOW, "pair of {} tokens over the window", pair.len());
                assert_eq!(pair.input_ids.len(), pair.type_ids.len());
                if let Some(cut) = truncation.max_document_tokens {
                    assert!(pair.len() <= prepared_query.tokens() + cut + 3);
                }
                lengths.push(pair.len());
            }
            Err(error) => assert!(!truncation.enabled, "truncation enabled yet refused: {error}"),
        }
    }
    let config = BatcherConfig { max_batch_tokens: WINDOW.max(settings[2] as usize * 8), max_batch_size: settings[3] as usize % 16 + 1 };
    let chosen = select_batch(&lengths, config);
    if lengths.is_empty() {
        assert!(chosen.is_empty());
        return;
    }
    assert_eq!(chosen[0], 0, "the oldest item always goes first");
    assert!(chosen.len() <= config.max_batch_size);
    let mut seen = chosen.clone();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), chosen.len(), "an item chosen twice");
    let width = chosen.iter().map(|&i| lengths[i]).max().unwrap();
    assert!(chosen.len() == 1 || width * chosen.len() <= config.max_batch_tokens);
});
