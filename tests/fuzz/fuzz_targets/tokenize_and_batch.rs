//! Any text as query and documents, any truncation settings, through the real tokenizer of
//! a test model (the encoder's pair tokenizer, or the decoder's prompt template), then batch
//! assembly: never a panic, and every invariant the model relies on holds (pairs fit the
//! window, the query is never cut, batches respect their budget).
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rradistill::batch::queue::select_batch;
use rradistill::batch::BatcherConfig;
use rradistill::model::tokenize::{PairEncoder, PairTokenizer, PromptTokenizer};
use rradistill::model::{Manifest, Truncation, TruncationSide};

const WINDOW: usize = 128;

fn fixtures() -> std::path::PathBuf {
    std::env::var("RRADISTILL_FIXTURES")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/fixtures").to_string())
        .into()
}

fn tokenizer() -> &'static PairTokenizer {
    static TOKENIZER: OnceLock<PairTokenizer> = OnceLock::new();
    TOKENIZER.get_or_init(|| {
        PairTokenizer::from_file(&fixtures().join("encoder-mini/tokenizer.json"), WINDOW)
            .expect("run `make fixtures` first")
    })
}

/// The decoder fixture's prompt tokenizer (its own window, from its manifest).
fn prompt() -> &'static PromptTokenizer {
    static TOKENIZER: OnceLock<PromptTokenizer> = OnceLock::new();
    TOKENIZER.get_or_init(|| {
        let dir = fixtures().join("decoder-mini");
        let manifest = Manifest::load(Path::new(&dir)).expect("run `make fixtures` first");
        let spec = manifest.prompt.expect("a decoder manifest has a prompt");
        PromptTokenizer::from_file(&dir.join("tokenizer.json"), &spec, manifest.max_sequence_length)
            .expect("decoder fixture tokenizer")
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
    let decoder = settings[0] & 4 == 4;
    let (tokens, window, limit, overhead): (&dyn PairEncoder, usize, usize, usize) = if decoder {
        let p = prompt();
        (p, p.window(), p.query_limit(p.window() / 2), p.template_tokens())
    } else {
        let t = tokenizer();
        (t, WINDOW, t.query_limit(WINDOW / 2), 3)
    };
    let Ok(prepared_query) = tokens.prepare_query(query, window / 2) else { return };
    assert!(prepared_query.tokens() <= limit);
    let mut lengths = Vec::new();
    for (i, document) in documents.iter().enumerate() {
        match tokens.prepare_pair(&prepared_query, document, i, &truncation) {
            Ok(pair) => {
                assert!(pair.len() <= window, "pair of {} tokens over the window", pair.len());
                if decoder {
                    assert!(pair.type_ids.is_empty(), "a decoder takes no segment ids");
                } else {
                    assert_eq!(pair.input_ids.len(), pair.type_ids.len());
                }
                if let Some(cut) = truncation.max_document_tokens {
                    assert!(pair.len() <= prepared_query.tokens() + cut + overhead);
                }
                lengths.push(pair.len());
            }
            Err(error) => assert!(!truncation.enabled, "truncation enabled yet refused: {error}"),
        }
    }
    let config = BatcherConfig { max_batch_tokens: window.max(settings[2] as usize * 8), max_batch_size: settings[3] as usize % 16 + 1 };
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
