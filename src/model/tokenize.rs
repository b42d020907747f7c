//! Tokenization of (query, document) pairs for cross-encoders, independent of ONNX Runtime
//! (so it can be fuzzed and tested on its own).
//!
//! The query is tokenized once per request and never cut; each document is tokenized alone,
//! cut to what the window leaves (or `max_tokens_per_doc`, if lower) from the side the request
//! asks, and joined to the query by the tokenizer's own post-processor (`[CLS] q [SEP] d [SEP]`
//! and segment ids for BERT), exactly as Hugging Face tokenizers' `only_second` truncation does.

use std::path::Path;

use anyhow::{anyhow, bail, Result};
use tokenizers::Tokenizer;

use super::{PreparedPair, PreparedQuery, RankError, Truncation, TruncationSide};

pub struct PairTokenizer {
    tokenizer: Tokenizer,
    /// Special tokens the post-processor adds around a pair.
    pair_overhead: usize,
    window: usize,
}

impl PairTokenizer {
    /// Loads `tokenizer.json` for a model whose window is `window` tokens.
    pub fn from_file(path: &Path, window: usize) -> Result<PairTokenizer> {
        let mut tokenizer = Tokenizer::from_file(path)
            .map_err(|e| anyhow!("cannot load tokenizer {}: {e}", path.display()))?;
        // The service pads batches and truncates documents itself; a tokenizer.json that pads or
        // truncates on its own (all-MiniLM's does, to 128) would silently change scores.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(None)
            .map_err(|e| anyhow!("cannot configure tokenizer {}: {e}", path.display()))?;
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

    pub fn window(&self) -> usize {
        self.window
    }

    pub fn vocab_size(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.tokenizer.token_to_id(token)
    }

    /// The longest query allowed: the configured limit, and never so long that no document
    /// token fits.
    pub fn query_limit(&self, max_query_tokens: usize) -> usize {
        max_query_tokens.min(self.window - self.pair_overhead - 1)
    }

    pub fn prepare_query(
        &self,
        query: &str,
        max_query_tokens: usize,
    ) -> Result<PreparedQuery, RankError> {
        let encoding = self
            .tokenizer
            .encode_fast(query, false)
            .map_err(|e| RankError::Tokenization(e.to_string()))?;
        let limit = self.query_limit(max_query_tokens);
        if encoding.len() > limit {
            return Err(RankError::QueryTooLong {
                tokens: encoding.len(),
                limit,
            });
        }
        Ok(PreparedQuery { encoding })
    }

    pub fn prepare_pair(
        &self,
        query: &PreparedQuery,
        document: &str,
        index: usize,
        truncation: &Truncation,
    ) -> Result<PreparedPair, RankError> {
        let mut doc = self
            .tokenizer
            .encode_fast(document, false)
            .map_err(|e| RankError::Tokenization(e.to_string()))?;
        let room = self.window - self.pair_overhead - query.tokens();
        let budget = truncation.max_document_tokens.map_or(room, |m| m.min(room));
        let truncated = doc.len() > budget;
        if truncated {
            if !truncation.enabled && doc.len() > room {
                return Err(RankError::DocumentTooLong {
                    index,
                    tokens: doc.len() + query.tokens() + self.pair_overhead,
                    window: self.window,
                });
            }
            let side = match truncation.side {
                TruncationSide::Right => tokenizers::TruncationDirection::Right,
                TruncationSide::Left => tokenizers::TruncationDirection::Left,
            };
            doc.truncate(budget, 0, side);
        }
        let pair = self
            .tokenizer
            .post_process(query.encoding.clone(), Some(doc), true)
            .map_err(|e| RankError::Tokenization(e.to_string()))?;
        Ok(PreparedPair {
            input_ids: pair.get_ids().iter().map(|&id| i64::from(id)).collect(),
            type_ids: pair
                .get_type_ids()
                .iter()
                .map(|&id| i64::from(id))
                .collect(),
            truncated,
        })
    }
}
