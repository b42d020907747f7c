//! Any text as query and documents, any truncation settings, through the real tokenizer of
//! a test model (the encoder's pair tokenizer, the decoder's prompt template, or the late
//! model's two towers), then batch assembly: never a panic, and every invariant the model
//! relies on holds (pairs fit the window, the query is never cut, batches respect their
//! budget; a late batch lays out each distinct query once and points every pair at its own).
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rradistill::batch::queue::select_batch;
use rradistill::batch::BatcherConfig;
use rradistill::model::tokenize::{PairEncoder, PairTokenizer, PromptTokenizer, TowerTokenizer};
use rradistill::model::{towers, Manifest, PreparedPair, Truncation, TruncationSide};

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

/// The late fixture's towers (its windows and prefixes, from its manifest).
fn towers() -> &'static TowerTokenizer {
    static TOKENIZER: OnceLock<TowerTokenizer> = OnceLock::new();
    TOKENIZER.get_or_init(|| {
        let dir = fixtures().join("late-mini");
        let manifest = Manifest::load(Path::new(&dir)).expect("run `make fixtures` first");
        let spec = manifest.towers().expect("a late manifest has towers");
        TowerTokenizer::from_file(&dir.join("tokenizer.json"), &spec, manifest.max_sequence_length)
            .expect("late fixture tokenizer")
    })
}

/// A late batch as the graph gets it: every pair's query row and document row are where
/// `query_index` says, padded and masked, and no query is laid out twice.
fn check_tower_layout(batch: &[&PreparedPair]) {
    let t = towers::layout(batch, 1).expect("every late pair has its query");
    assert_eq!((t.pairs, t.query_index.len()), (batch.len(), batch.len()));
    let mut rows: Vec<&[i64]> = Vec::new();
    for r in 0..t.queries {
        let row = &t.query_ids[r * t.query_width..(r + 1) * t.query_width];
        let n = t.query_mask[r * t.query_width..(r + 1) * t.query_width].iter().sum::<i64>() as usize;
        assert!(!rows.contains(&&row[..n]), "query row {r} laid out twice");
        rows.push(&row[..n]);
    }
    for (p, pair) in batch.iter().enumerate() {
        let r = t.query_index[p] as usize;
        assert!(r < t.queries);
        assert_eq!(rows[r], pair.query_ids.as_deref().unwrap());
        let doc = &t.input_ids[p * t.document_width..(p + 1) * t.document_width];
        let mask = &t.attention_mask[p * t.document_width..(p + 1) * t.document_width];
        assert_eq!(&doc[..pair.input_ids.len()], &pair.input_ids[..]);
        assert_eq!(mask.iter().sum::<i64>() as usize, pair.input_ids.len());
    }
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
        max_chunks: 1 + usize::from(settings[0] >> 4) % 4,
    };
    let decoder = settings[0] & 4 == 4;
    let late = settings[0] & 8 == 8;
    // `limit` and `asked` as the service applies them by default (rerank.rs); `overhead`: the
    // tokens a pair adds to its query and document.
    let (tokens, window, limit, overhead): (&dyn PairEncoder, usize, usize, usize) = if late {
        let t = towers();
        (t, t.window(), t.query_limit(t.query_window()), t.query_overhead() + t.document_overhead())
    } else if decoder {
        let p = prompt();
        (p, p.window(), p.query_limit(p.window() / 2), p.template_tokens())
    } else {
        let t = tokenizer();
        (t, WINDOW, t.query_limit(WINDOW / 2), 3)
    };
    let asked = if late { towers().query_window() } else { window / 2 };
    let Ok(prepared_query) = tokens.prepare_query(query, asked) else { return };
    assert!(prepared_query.tokens() <= limit);
    // A late batch with two queries: the last document is also asked as a query.
    let second_query = documents
        .last()
        .filter(|_| late)
        .and_then(|text| tokens.prepare_query(text, asked).ok());
    let mut lengths = Vec::new();
    let mut pairs = Vec::new();
    for (i, document) in documents.iter().enumerate() {
        let query = match &second_query {
            Some(second) if i % 2 == 1 => second,
            _ => &prepared_query,
        };
        match tokens.prepare_chunks(query, document, i, &truncation) {
            Ok(chunks) => {
                assert!(!chunks.is_empty() && chunks.len() <= truncation.chunks(), "{} chunks", chunks.len());
                // The first chunk is what one window keeps.
                let one = tokens.prepare_pair(query, document, i, &truncation).expect("its first chunk was prepared");
                assert_eq!((&one.input_ids, &one.type_ids), (&chunks[0].input_ids, &chunks[0].type_ids));
                for pair in chunks {
                assert!(pair.input_ids.len() <= window, "{} tokens over the window", pair.input_ids.len());
                if late {
                    let q = pair.query_ids.as_deref().expect("a late pair carries its query");
                    assert!(q.len() <= towers().query_window(), "query row over its window");
                    assert_eq!(q.len(), query.tokens() + towers().query_overhead());
                    assert!(pair.type_ids.is_empty(), "a late model takes no segment ids");
                } else if decoder {
                    assert!(pair.type_ids.is_empty(), "a decoder takes no segment ids");
                } else {
                    assert_eq!(pair.input_ids.len(), pair.type_ids.len());
                }
                if let Some(cut) = truncation.max_document_tokens {
                    assert!(pair.len() <= query.tokens() + cut + overhead);
                }
                lengths.push(pair.len());
                pairs.push(pair);
                }
            }
            Err(error) => assert!(!truncation.enabled, "truncation enabled yet refused: {error}"),
        }
    }
    let config = BatcherConfig { max_batch_tokens: window.max(settings[2] as usize * 8), max_batch_size: settings[3] as usize % 16 + 1, max_batch_padding: (settings[3] >= 128).then(|| f64::from(settings[2]) / 255.0) };
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
    if let Some(limit) = config.max_batch_padding {
        let real: usize = chosen.iter().map(|&i| lengths[i]).sum();
        let padded = width * chosen.len();
        assert!(chosen.len() == 1 || (padded - real) as f64 <= limit * padded as f64, "padding over {limit}");
    }
    if late {
        let batch: Vec<&PreparedPair> = chosen.iter().map(|&i| &pairs[i]).collect();
        check_tower_layout(&batch);
    }
});
