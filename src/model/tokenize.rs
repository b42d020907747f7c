//! Tokenization of (query, document) pairs, independent of ONNX Runtime (so it can be fuzzed
//! and tested on its own). Both model families share the rules: the query is tokenized once
//! per request and never cut (too long is an error); each document is tokenized alone and cut
//! to what the window leaves (or `max_tokens_per_doc`, if lower) from the side the request asks.
//!
//! - [`PairTokenizer`] (encoders) joins query and document with the tokenizer's own
//!   post-processor (`[CLS] q [SEP] d [SEP]` and segment ids for BERT), exactly as Hugging
//!   Face tokenizers' `only_second` truncation does.
//! - [`PromptTokenizer`] (decoders) fills the manifest's prompt template: BOS, the template's
//!   literal pieces, query and document, each tokenized separately, ids concatenated.

use std::path::Path;

use anyhow::{anyhow, bail, Result};
use tokenizers::{Encoding, Tokenizer};

use super::manifest::PromptSpec;
use super::{PreparedPair, PreparedQuery, RankError, Truncation, TruncationSide};

/// What a model's tokenization offers the ranker: the same contract for both families.
pub trait PairEncoder: Send + Sync {
    /// The model's tokenizer, padding and truncation off.
    fn tokenizer(&self) -> &Tokenizer;
    fn window(&self) -> usize;
    /// The longest query allowed: the configured limit, and never so long that no document
    /// token fits.
    fn query_limit(&self, max_query_tokens: usize) -> usize;
    fn prepare_pair(
        &self,
        query: &PreparedQuery,
        document: &str,
        index: usize,
        truncation: &Truncation,
    ) -> Result<PreparedPair, RankError>;

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
    Ok(PreparedQuery { encoding })
}

/// The document, tokenized and cut to `room` tokens (or the request's lower cut).
fn document_within(
    tokenizer: &Tokenizer,
    document: &str,
    room: usize,
    index: usize,
    fixed: usize,
    window: usize,
    truncation: &Truncation,
) -> Result<(Encoding, bool), RankError> {
    let mut doc = encode(tokenizer, document)?;
    let budget = truncation.max_document_tokens.map_or(room, |m| m.min(room));
    let truncated = doc.len() > budget;
    if truncated {
        if !truncation.enabled && doc.len() > room {
            return Err(RankError::DocumentTooLong {
                index,
                tokens: doc.len() + fixed,
                window,
            });
        }
        let side = match truncation.side {
            TruncationSide::Right => tokenizers::TruncationDirection::Right,
            TruncationSide::Left => tokenizers::TruncationDirection::Left,
        };
        doc.truncate(budget, 0, side);
    }
    Ok((doc, truncated))
}

fn ids(encoding: &Encoding) -> impl Iterator<Item = i64> + '_ {
    encoding.get_ids().iter().map(|&id| i64::from(id))
}

/// A decoder's prompt: `[BOS] prefix query middle document suffix`, each piece tokenized alone.
pub struct PromptTokenizer {
    tokenizer: Tokenizer,
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

    fn prepare_pair(
        &self,
        query: &PreparedQuery,
        document: &str,
        index: usize,
        truncation: &Truncation,
    ) -> Result<PreparedPair, RankError> {
        let fixed = self.template_tokens() + query.tokens();
        let room = self.window - fixed;
        let (doc, truncated) = document_within(
            &self.tokenizer,
            document,
            room,
            index,
            fixed,
            self.window,
            truncation,
        )?;
        let mut input_ids = Vec::with_capacity(fixed + doc.len());
        input_ids.extend_from_slice(&self.prefix);
        input_ids.extend(ids(&query.encoding));
        input_ids.extend_from_slice(&self.middle);
        input_ids.extend(ids(&doc));
        input_ids.extend_from_slice(&self.suffix);
        Ok(PreparedPair {
            input_ids,
            type_ids: Vec::new(),
            truncated,
        })
    }
}

pub struct PairTokenizer {
    tokenizer: Tokenizer,
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

    fn prepare_pair(
        &self,
        query: &PreparedQuery,
        document: &str,
        index: usize,
        truncation: &Truncation,
    ) -> Result<PreparedPair, RankError> {
        let fixed = self.pair_overhead + query.tokens();
        let (doc, truncated) = document_within(
            &self.tokenizer,
            document,
            self.window - fixed,
            index,
            fixed,
            self.window,
            truncation,
        )?;
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
            truncated,
        })
    }
}
