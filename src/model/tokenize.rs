//! Tokenization of (query, document) pairs, independent of ONNX Runtime (so it can be fuzzed
//! and tested on its own). Every model family shares the rules: the query is tokenized once
//! per request and never cut (too long is an error); each document is tokenized alone and cut
//! to what the window leaves (or `max_tokens_per_doc`, if lower) from the side the request asks.
//!
//! A document longer than the window can instead be read in chunks (`max_chunks_per_doc`,
//! `--max-chunks-per-document`), as Cohere's re-rank does: consecutive windows of what the
//! window leaves the document, each overlapping the one before by a quarter
//! ([`chunk_ranges`]), so a passage no longer than that which one chunk cuts is whole in the
//! next. Every chunk becomes a pair of its own and the document scores as its best chunk. The
//! first chunk is what one window keeps (from the side the request asks), so a document that
//! fits, or a limit of one chunk, reads exactly as before; `max_tokens_per_doc` bounds what all
//! the chunks read together.
//!
//! A document is first cut by bytes ([`cut_by_bytes`]): no token of the vocabulary is longer
//! than its longest entry, so the first (or last) `(budget + 1) x longest` bytes hold every
//! token the window can keep, and the rest is never tokenized. A hostile 8 MiB document then
//! costs what a few kilobytes cost (it took 6.9 s and 1 GB tokenized whole). Text whose
//! tokens are mostly wider than that (long runs of whitespace, words over the tokenizer's
//! own length limit) keeps fewer tokens than a full tokenization would; such a document is
//! reported truncated.
//!
//! - [`PairTokenizer`] (encoders) joins query and document with the tokenizer's own
//!   post-processor (`[CLS] q [SEP] d [SEP]` and segment ids for BERT), exactly as Hugging
//!   Face tokenizers' `only_second` truncation does.
//! - [`PromptTokenizer`] (decoders) fills the manifest's prompt template: BOS, the template's
//!   literal pieces, query and document, each tokenized separately, ids concatenated.
//! - [`TowerTokenizer`] (late models) keeps query and document apart, each in its own window:
//!   `lead + prefix + text + trail`, where lead and trail are what the tokenizer's
//!   single-sequence template puts around a text (`<s>`, `</s>`) and the prefix (`query:`,
//!   `passage:`) is tokenized once at load; exactly the toolkit's
//!   `students.tokenization.TowerTokenizer`.

use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, bail, Result};
use tokenizers::{Encoding, Tokenizer};

use super::manifest::{PromptSpec, TowerSpec};
use super::{PreparedPair, PreparedQuery, RankError, Truncation, TruncationSide};

/// What a model's tokenization offers the ranker: the same contract for both families.
pub trait PairEncoder: Send + Sync {
    /// The model's tokenizer, padding and truncation off.
    fn tokenizer(&self) -> &Tokenizer;
    fn window(&self) -> usize;
    /// The longest query allowed: the configured limit, and never so long that no document
    /// token fits.
    fn query_limit(&self, max_query_tokens: usize) -> usize;
    /// The most bytes one token of the tokenizer covers (documents are cut by bytes first).
    fn max_token_bytes(&self) -> usize;
    /// Tokens of a pair besides the document's (query, template, prefix, special tokens): the
    /// window less these is the document's room.
    fn fixed_tokens(&self, query: &PreparedQuery) -> usize;
    /// What `fixed_tokens` counts, for the too-long message.
    fn counted(&self) -> &'static str {
        WITH_THE_QUERY
    }
    /// The model input for the query and a document's tokens, already within the room.
    fn assemble(
        &self,
        query: &PreparedQuery,
        document: Encoding,
        truncated: bool,
    ) -> Result<PreparedPair, RankError>;

    /// One pair per chunk of `document` (see the module's opening): at most
    /// `truncation.max_chunks`, the first what one window keeps.
    fn prepare_chunks(
        &self,
        query: &PreparedQuery,
        document: &str,
        index: usize,
        truncation: &Truncation,
    ) -> Result<Vec<PreparedPair>, RankError> {
        let fixed = self.fixed_tokens(query);
        let window = self.window();
        let (chunks, truncated) = document_chunks(
            self.tokenizer(),
            self.max_token_bytes(),
            document,
            window.saturating_sub(fixed).max(1),
            Refusal {
                index,
                fixed,
                window,
                counted: self.counted(),
            },
            truncation,
        )?;
        chunks
            .into_iter()
            .map(|chunk| self.assemble(query, chunk, truncated))
            .collect()
    }

    /// The pair for `document` cut to one window, whatever `truncation.max_chunks` says.
    fn prepare_pair(
        &self,
        query: &PreparedQuery,
        document: &str,
        index: usize,
        truncation: &Truncation,
    ) -> Result<PreparedPair, RankError> {
        let one = Truncation {
            max_chunks: 1,
            ..*truncation
        };
        let mut pairs = self.prepare_chunks(query, document, index, &one)?;
        Ok(pairs.swap_remove(0))
    }

    fn vocab_size(&self) -> usize {
        self.tokenizer().get_vocab_size(true)
    }

    fn token_to_id(&self, token: &str) -> Option<u32> {
        self.tokenizer().token_to_id(token)
    }

    fn prepare_query(
        &self,
        query: &str,
        max_query_tokens: usize,
    ) -> Result<PreparedQuery, RankError> {
        query_within(self.tokenizer(), query, self.query_limit(max_query_tokens))
    }
}

/// Loads `tokenizer.json` with its own padding and truncation switched off: the service pads
/// batches and cuts documents itself, and a tokenizer.json that pads or truncates on its own
/// (all-MiniLM's does, to 128) would silently change scores.
fn load_tokenizer(path: &Path) -> Result<Tokenizer> {
    let mut tokenizer = Tokenizer::from_file(path)
        .map_err(|e| anyhow!("cannot load tokenizer {}: {e}", path.display()))?;
    tokenizer.with_padding(None);
    tokenizer
        .with_truncation(None)
        .map_err(|e| anyhow!("cannot configure tokenizer {}: {e}", path.display()))?;
    Ok(tokenizer)
}

/// The most bytes one token of `tokenizer` covers: its longest vocabulary entry (at least
/// 16, for vocabularies of single characters), computed once at load.
fn longest_token_bytes(tokenizer: &Tokenizer) -> usize {
    let longest = tokenizer
        .get_vocab(true)
        .keys()
        .map(String::len)
        .max()
        .unwrap_or(1);
    longest.max(16)
}

/// The part of `document` worth tokenizing for `budget` tokens from `side`, cut at a
/// character boundary (at whitespace when one is near), and whether anything was cut.
pub fn cut_by_bytes(
    document: &str,
    budget: usize,
    max_token_bytes: usize,
    side: TruncationSide,
) -> (&str, bool) {
    let limit = budget.saturating_add(1).saturating_mul(max_token_bytes);
    if document.len() <= limit {
        return (document, false);
    }
    let slack = limit / 8;
    match side {
        TruncationSide::Right => {
            let mut end = limit;
            while !document.is_char_boundary(end) {
                end -= 1;
            }
            if let Some(space) = document[..end].rfind(char::is_whitespace) {
                if space >= end - slack {
                    end = space;
                }
            }
            (&document[..end], true)
        }
        TruncationSide::Left => {
            let mut start = document.len() - limit;
            while !document.is_char_boundary(start) {
                start += 1;
            }
            if let Some(space) = document[start..].find(char::is_whitespace) {
                if space <= slack {
                    start += space;
                }
            }
            (&document[start..], true)
        }
    }
}

fn encode(tokenizer: &Tokenizer, text: &str) -> Result<Encoding, RankError> {
    tokenizer
        .encode_fast(text, false)
        .map_err(|e| RankError::Tokenization(e.to_string()))
}

/// The query, tokenized and checked against `limit`.
fn query_within(
    tokenizer: &Tokenizer,
    query: &str,
    limit: usize,
) -> Result<PreparedQuery, RankError> {
    let encoding = encode(tokenizer, query)?;
    if encoding.len() > limit {
        return Err(RankError::QueryTooLong {
            tokens: encoding.len(),
            limit,
        });
    }
    Ok(PreparedQuery {
        encoding,
        tower: None,
    })
}

/// What a model reads besides the document, for the too-long message.
const WITH_THE_QUERY: &str = "with the query";

/// What a refusal of an over-long document says: which document, and what the window holds
/// besides it.
struct Refusal {
    index: usize,
    fixed: usize,
    window: usize,
    counted: &'static str,
}

impl Refusal {
    fn error(&self, document_tokens: usize) -> RankError {
        RankError::DocumentTooLong {
            index: self.index,
            tokens: document_tokens + self.fixed,
            window: self.window,
            counted: self.counted,
        }
    }
}

/// Where consecutive chunks of a document start: each overlaps the one before by a quarter of
/// the room (at least one token further on, whatever the room).
fn chunk_step(room: usize) -> usize {
    (room - room / 4).max(1)
}

/// The token ranges `[start, end)` of the chunks of a document of `tokens` tokens, `room`
/// tokens each at most: one when it fits, else windows `chunk_step(room)` apart until the
/// document is covered. From the side truncation keeps: `Right` starts at the beginning,
/// `Left` (mirrored) at the end, so the first range is what one window keeps.
pub fn chunk_ranges(tokens: usize, room: usize, side: TruncationSide) -> Vec<(usize, usize)> {
    let room = room.max(1);
    if tokens <= room {
        return vec![(0, tokens)];
    }
    let step = chunk_step(room);
    let mut ranges = Vec::with_capacity((tokens - room).div_ceil(step) + 1);
    let mut start = 0;
    loop {
        let end = (start + room).min(tokens);
        ranges.push(match side {
            TruncationSide::Right => (start, end),
            TruncationSide::Left => (tokens - end, tokens - start),
        });
        if end == tokens {
            return ranges;
        }
        start += step;
    }
}

/// Tokens `[start, end)` of `encoding`, as an encoding of their own.
fn token_range(encoding: &Encoding, start: usize, end: usize) -> Encoding {
    let mut part = encoding.clone();
    part.truncate(end, 0, tokenizers::TruncationDirection::Right);
    part.take_overflowing();
    part.truncate(end - start, 0, tokenizers::TruncationDirection::Left);
    part.take_overflowing();
    part
}

/// The document, cut by bytes, tokenized, cut to what its chunks can read (`room` tokens a
/// chunk, `truncation.max_chunks` of them, within the request's `max_tokens_per_doc`) and
/// split into chunks; and whether anything was cut.
fn document_chunks(
    tokenizer: &Tokenizer,
    max_token_bytes: usize,
    document: &str,
    room: usize,
    refusal: Refusal,
    truncation: &Truncation,
) -> Result<(Vec<Encoding>, bool), RankError> {
    let chunks = truncation.chunks();
    let reach = room.saturating_add((chunks - 1).saturating_mul(chunk_step(room)));
    let budget = truncation
        .max_document_tokens
        .map_or(reach, |m| m.min(reach));
    // When refusing over-long documents, read enough to see that one is over the window.
    let read = if truncation.enabled { budget } else { room };
    let (document, cut) = cut_by_bytes(document, read, max_token_bytes, truncation.side);
    let mut doc = encode(tokenizer, document)?;
    if cut && !truncation.enabled {
        return Err(refusal.error(doc.len().max(room + 1)));
    }
    let truncated = cut || doc.len() > budget;
    if truncated {
        if !truncation.enabled && doc.len() > room {
            return Err(refusal.error(doc.len()));
        }
        let side = match truncation.side {
            TruncationSide::Right => tokenizers::TruncationDirection::Right,
            TruncationSide::Left => tokenizers::TruncationDirection::Left,
        };
        doc.truncate(budget, 0, side);
        doc.take_overflowing();
    }
    let ranges = chunk_ranges(doc.len(), room, truncation.side);
    if ranges.len() == 1 {
        return Ok((vec![doc], truncated));
    }
    let parts = ranges
        .into_iter()
        .map(|(start, end)| token_range(&doc, start, end))
        .collect();
    Ok((parts, truncated))
}

fn ids(encoding: &Encoding) -> impl Iterator<Item = i64> + '_ {
    encoding.get_ids().iter().map(|&id| i64::from(id))
}

/// A decoder's prompt: `[BOS] prefix query middle document suffix`, each piece tokenized alone.
pub struct PromptTokenizer {
    tokenizer: Tokenizer,
    max_token_bytes: usize,
    /// BOS and the template's literal pieces, tokenized once.
    prefix: Vec<i64>,
    middle: Vec<i64>,
    suffix: Vec<i64>,
    window: usize,
}

impl PromptTokenizer {
    pub fn from_file(path: &Path, prompt: &PromptSpec, window: usize) -> Result<PromptTokenizer> {
        let tokenizer = load_tokenizer(path)?;
        let pieces = prompt.pieces()?;
        let piece = |text: &str| -> Result<Vec<i64>> {
            let encoding = encode(&tokenizer, text)
                .map_err(|e| anyhow!("cannot tokenize the prompt template: {e}"))?;
            Ok(ids(&encoding).collect())
        };
        let mut prefix: Vec<i64> = prompt.bos_token_id.into_iter().collect();
        prefix.extend(piece(&pieces.prefix)?);
        let middle = piece(&pieces.middle)?;
        let suffix = piece(&pieces.suffix)?;
        let fixed = prefix.len() + middle.len() + suffix.len();
        if window <= fixed + 2 {
            bail!(
                "the prompt template is {fixed} tokens; max_sequence_length {window} leaves no \
                 room for a query and a document"
            );
        }
        Ok(PromptTokenizer {
            max_token_bytes: longest_token_bytes(&tokenizer),
            tokenizer,
            prefix,
            middle,
            suffix,
            window,
        })
    }

    /// Tokens of the template itself (BOS included).
    pub fn template_tokens(&self) -> usize {
        self.prefix.len() + self.middle.len() + self.suffix.len()
    }
}

impl PairEncoder for PromptTokenizer {
    fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    fn window(&self) -> usize {
        self.window
    }

    fn query_limit(&self, max_query_tokens: usize) -> usize {
        max_query_tokens.min(self.window - self.template_tokens() - 1)
    }

    fn max_token_bytes(&self) -> usize {
        self.max_token_bytes
    }

    fn fixed_tokens(&self, query: &PreparedQuery) -> usize {
        self.template_tokens() + query.tokens()
    }

    fn assemble(
        &self,
        query: &PreparedQuery,
        doc: Encoding,
        truncated: bool,
    ) -> Result<PreparedPair, RankError> {
        let fixed = self.fixed_tokens(query);
        let mut input_ids = Vec::with_capacity(fixed + doc.len());
        input_ids.extend_from_slice(&self.prefix);
        input_ids.extend(ids(&query.encoding));
        input_ids.extend_from_slice(&self.middle);
        input_ids.extend(ids(&doc));
        input_ids.extend_from_slice(&self.suffix);
        Ok(PreparedPair {
            input_ids,
            type_ids: Vec::new(),
            query_ids: None,
            truncated,
        })
    }
}

pub struct PairTokenizer {
    tokenizer: Tokenizer,
    max_token_bytes: usize,
    /// Special tokens the post-processor adds around a pair.
    pair_overhead: usize,
    window: usize,
}

impl PairTokenizer {
    /// Loads `tokenizer.json` for a model whose window is `window` tokens.
    pub fn from_file(path: &Path, window: usize) -> Result<PairTokenizer> {
        let tokenizer = load_tokenizer(path)?;
        let pair_overhead = tokenizer.get_post_processor().map(|p| {
            use tokenizers::PostProcessor;
            p.added_tokens(true)
        });
        let pair_overhead = match pair_overhead {
            Some(n) if n > 0 => n,
            _ => bail!(
                "{}: the tokenizer adds no special tokens to a pair; a cross-encoder needs \
                 [CLS] query [SEP] document [SEP] (check its post_processor)",
                path.display()
            ),
        };
        if window <= pair_overhead + 2 {
            bail!("max_sequence_length {window} leaves no room for text");
        }
        Ok(PairTokenizer {
            max_token_bytes: longest_token_bytes(&tokenizer),
            tokenizer,
            pair_overhead,
            window,
        })
    }
}

impl PairEncoder for PairTokenizer {
    fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    fn window(&self) -> usize {
        self.window
    }

    fn query_limit(&self, max_query_tokens: usize) -> usize {
        max_query_tokens.min(self.window - self.pair_overhead - 1)
    }

    fn max_token_bytes(&self) -> usize {
        self.max_token_bytes
    }

    fn fixed_tokens(&self, query: &PreparedQuery) -> usize {
        self.pair_overhead + query.tokens()
    }

    fn assemble(
        &self,
        query: &PreparedQuery,
        doc: Encoding,
        truncated: bool,
    ) -> Result<PreparedPair, RankError> {
        let pair = self
            .tokenizer
            .post_process(query.encoding.clone(), Some(doc), true)
            .map_err(|e| RankError::Tokenization(e.to_string()))?;
        Ok(PreparedPair {
            input_ids: ids(&pair).collect(),
            type_ids: pair
                .get_type_ids()
                .iter()
                .map(|&id| i64::from(id))
                .collect(),
            query_ids: None,
            truncated,
        })
    }
}

/// A late model's two towers: `lead + query_prefix + query + trail` in the query's window and
/// `lead + document_prefix + document + trail` in the document's, each cut or refused alone.
pub struct TowerTokenizer {
    tokenizer: Tokenizer,
    /// What the single-sequence template puts before and after a text (`<s>`, `</s>`).
    lead: Vec<i64>,
    trail: Vec<i64>,
    query_prefix: Vec<i64>,
    document_prefix: Vec<i64>,
    /// A document's window and the query's, prefixes and special tokens included.
    window: usize,
    query_window: usize,
    /// The most bytes one token can take: documents are cut by bytes before tokenizing.
    max_token_bytes: usize,
}

impl TowerTokenizer {
    /// Loads `tokenizer.json` for a late model: `window` is the manifest's
    /// `max_sequence_length` (a document's), `towers` its query window and prefixes.
    pub fn from_file(path: &Path, towers: &TowerSpec, window: usize) -> Result<TowerTokenizer> {
        let tokenizer = load_tokenizer(path)?;
        let (lead, trail) = single_template(&tokenizer).map_err(|e| {
            anyhow!(
                "{}: {e}; a late model's towers read `<s> prefix text </s>` (check the \
                 tokenizer's post_processor)",
                path.display()
            )
        })?;
        let prefix = |field: &str, text: &str| -> Result<Vec<i64>> {
            let encoding = encode(&tokenizer, text)
                .map_err(|e| anyhow!("cannot tokenize `{field}` {text:?}: {e}"))?;
            Ok(ids(&encoding).collect())
        };
        let query_prefix = prefix("query_prefix", &towers.query_prefix)?;
        let document_prefix = prefix("document_prefix", &towers.document_prefix)?;
        let specials = lead.len() + trail.len();
        for (field, limit, prefix_field, prefix, what) in [
            (
                "max_sequence_length",
                window,
                "document_prefix",
                &document_prefix,
                "document",
            ),
            (
                "max_query_length",
                towers.query_window,
                "query_prefix",
                &query_prefix,
                "query",
            ),
        ] {
            if limit <= specials + prefix.len() {
                bail!(
                    "`{field}` is {limit} tokens, which leaves no room for a {what}: its \
                     `{prefix_field}` is {} tokens and the tokenizer adds {specials} special \
                     tokens; raise `{field}` or shorten the prefix",
                    prefix.len()
                );
            }
        }
        let max_token_bytes = longest_token_bytes(&tokenizer);
        Ok(TowerTokenizer {
            max_token_bytes,
            tokenizer,
            lead,
            trail,
            query_prefix,
            document_prefix,
            window,
            query_window: towers.query_window,
        })
    }

    /// The query's window (`max_query_length`).
    pub fn query_window(&self) -> usize {
        self.query_window
    }

    /// Tokens a query row adds to the query itself (special tokens and prefix).
    pub fn query_overhead(&self) -> usize {
        self.lead.len() + self.query_prefix.len() + self.trail.len()
    }

    /// Tokens a document row adds to the document itself (special tokens and prefix).
    pub fn document_overhead(&self) -> usize {
        self.lead.len() + self.document_prefix.len() + self.trail.len()
    }

    /// `lead + prefix + body + trail`.
    fn row(&self, prefix: &[i64], body: &Encoding) -> Vec<i64> {
        let mut row =
            Vec::with_capacity(self.lead.len() + prefix.len() + body.len() + self.trail.len());
        row.extend_from_slice(&self.lead);
        row.extend_from_slice(prefix);
        row.extend(ids(body));
        row.extend_from_slice(&self.trail);
        row
    }
}

/// The ids a tokenizer's single-sequence template puts before and after a text, read off the
/// special-tokens mask of `"x"` encoded with special tokens (as the toolkit's `template`).
fn single_template(tokenizer: &Tokenizer) -> Result<(Vec<i64>, Vec<i64>)> {
    let encoding = tokenizer
        .encode_fast("x", true)
        .map_err(|e| anyhow!("cannot encode a probe text: {e}"))?;
    let special = encoding.get_special_tokens_mask();
    let (Some(first), Some(last)) = (
        special.iter().position(|&s| s == 0),
        special.iter().rposition(|&s| s == 0),
    ) else {
        bail!("the tokenizer turns a plain text into special tokens only");
    };
    if first == 0 && last + 1 == special.len() {
        bail!("the tokenizer adds no special tokens around a single text");
    }
    let all: Vec<i64> = ids(&encoding).collect();
    Ok((all[..first].to_vec(), all[last + 1..].to_vec()))
}

impl PairEncoder for TowerTokenizer {
    fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// A document's window.
    fn window(&self) -> usize {
        self.window
    }

    fn query_limit(&self, max_query_tokens: usize) -> usize {
        max_query_tokens.min(self.query_window - self.query_overhead())
    }

    fn prepare_query(
        &self,
        query: &str,
        max_query_tokens: usize,
    ) -> Result<PreparedQuery, RankError> {
        let mut prepared =
            query_within(&self.tokenizer, query, self.query_limit(max_query_tokens))?;
        prepared.tower = Some(self.row(&self.query_prefix, &prepared.encoding).into());
        Ok(prepared)
    }

    fn max_token_bytes(&self) -> usize {
        self.max_token_bytes
    }

    /// A document's window holds only the document's prefix and special tokens.
    fn fixed_tokens(&self, _query: &PreparedQuery) -> usize {
        self.document_overhead()
    }

    fn counted(&self) -> &'static str {
        "with its prefix and special tokens"
    }

    fn assemble(
        &self,
        query: &PreparedQuery,
        doc: Encoding,
        truncated: bool,
    ) -> Result<PreparedPair, RankError> {
        // A query prepared by this tokenizer carries its row; build it for any other.
        let query_ids = match &query.tower {
            Some(row) => row.clone(),
            None => Arc::from(self.row(&self.query_prefix, &query.encoding)),
        };
        Ok(PreparedPair {
            input_ids: self.row(&self.document_prefix, &doc),
            type_ids: Vec::new(),
            query_ids: Some(query_ids),
            truncated,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_a_document_from_the_kept_side_overlapping_by_a_quarter() {
        use TruncationSide::{Left, Right};
        assert_eq!(chunk_ranges(5, 8, Right), vec![(0, 5)]);
        assert_eq!(chunk_ranges(8, 8, Left), vec![(0, 8)]);
        // A room of 8 tokens: chunks start 6 apart, so 2 tokens are read twice.
        assert_eq!(chunk_ranges(20, 8, Right), vec![(0, 8), (6, 14), (12, 20)]);
        assert_eq!(chunk_ranges(20, 8, Left), vec![(12, 20), (6, 14), (0, 8)]);
        assert_eq!(chunk_ranges(15, 8, Right), vec![(0, 8), (6, 14), (12, 15)]);
        assert_eq!(chunk_ranges(3, 1, Right), vec![(0, 1), (1, 2), (2, 3)]);
        for tokens in 0..70 {
            for room in 1..13 {
                for side in [Right, Left] {
                    let ranges = chunk_ranges(tokens, room, side);
                    let mut read = vec![0; tokens];
                    for &(start, end) in &ranges {
                        assert!(start < end || tokens == 0, "{ranges:?}");
                        assert!(end - start <= room && end <= tokens, "{ranges:?}");
                        read[start..end].iter_mut().for_each(|r| *r += 1);
                    }
                    assert!(
                        read.iter().all(|&r| (1..=2).contains(&r)),
                        "{tokens} {room}: {ranges:?}"
                    );
                    // The first chunk is what one window keeps.
                    let first = match side {
                        Right => (0, tokens.min(room)),
                        Left => (tokens.saturating_sub(room), tokens),
                    };
                    assert_eq!(ranges[0], first);
                    // No chunk more than needed: each one reaches text the one before did not.
                    let step = chunk_step(room);
                    assert_eq!(ranges.len(), 1 + tokens.saturating_sub(room).div_ceil(step));
                }
            }
        }
    }

    #[test]
    fn documents_are_cut_by_bytes_at_a_boundary_from_either_side() {
        let text = "alpha beta gamma delta ".repeat(100);
        let (kept, cut) = cut_by_bytes(&text, 10, 16, TruncationSide::Right);
        assert!(cut && kept.len() <= 11 * 16 && text.starts_with(kept));
        assert!(
            kept.ends_with("alpha")
                || kept.ends_with("beta")
                || kept.ends_with("gamma")
                || kept.ends_with("delta"),
            "cut at whitespace: {kept:?}"
        );
        let (kept, cut) = cut_by_bytes(&text, 10, 16, TruncationSide::Left);
        assert!(cut && kept.len() <= 11 * 16 && text.ends_with(kept));
        let short = "short text";
        assert_eq!(
            cut_by_bytes(short, 10, 16, TruncationSide::Right),
            (short, false)
        );
        // Never inside a character.
        let korean = "한국어 문서 ".repeat(200);
        for side in [TruncationSide::Right, TruncationSide::Left] {
            let (kept, cut) = cut_by_bytes(&korean, 3, 5, side);
            assert!(cut && !kept.is_empty());
        }
        let unbroken = "가".repeat(1000);
        let (kept, _) = cut_by_bytes(&unbroken, 3, 5, TruncationSide::Right);
        assert_eq!(kept.len() % 3, 0);
    }
}
