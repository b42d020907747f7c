//! The score cache (moka): pairs already scored skip tokenization and inference.
//!
//! The key is a 128-bit hash (xxh3) of everything that decides a score: model name and
//! fingerprint (a hash of the model folder's manifest, tokenizer and graph), query, document
//! text and how the document is truncated (and in how many chunks it may be read). A reloaded
//! or replaced model therefore never sees the old one's entries, even under the same version
//! string. Keys and values are fixed-size (16 + 12 bytes plus moka's overhead), so bounding
//! entries bounds bytes; entries also expire after a TTL. Capacity 0 disables the cache.
//! Stored is the raw score; the activation is applied per request, so `raw_scores` requests
//! share entries with the others.

use std::time::Duration;

use moka::sync::Cache;
use xxhash_rust::xxh3::Xxh3;

use crate::model::Truncation;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CachedScore {
    pub logit: f32,
    pub tokens: u32,
    pub truncated: bool,
}

#[derive(Clone)]
pub struct ScoreCache {
    inner: Option<Cache<u128, CachedScore>>,
}

impl ScoreCache {
    pub fn new(capacity: u64, ttl: Duration) -> ScoreCache {
        let inner = (capacity > 0).then(|| {
            Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .build()
        });
        ScoreCache { inner }
    }

    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    pub fn key(
        model: &str,
        fingerprint: &str,
        query: &str,
        document: &str,
        truncation: &Truncation,
    ) -> u128 {
        let mut h = Xxh3::new();
        // Length-prefix every field so ("ab", "c") and ("a", "bc") differ.
        for field in [model, fingerprint, query, document] {
            h.update(&(field.len() as u64).to_le_bytes());
            h.update(field.as_bytes());
        }
        h.update(&[truncation.enabled as u8, truncation.side as u8]);
        h.update(
            &truncation
                .max_document_tokens
                .map_or(u64::MAX, |n| n as u64)
                .to_le_bytes(),
        );
        h.update(&(truncation.chunks() as u64).to_le_bytes());
        h.digest128()
    }

    pub fn get(&self, key: u128) -> Option<CachedScore> {
        self.inner.as_ref()?.get(&key)
    }

    pub fn insert(&self, key: u128, score: CachedScore) {
        if let Some(cache) = &self.inner {
            cache.insert(key, score);
        }
    }

    /// Empties the cache; returns how many entries it held.
    pub fn clear(&self) -> u64 {
        let Some(cache) = &self.inner else { return 0 };
        cache.run_pending_tasks();
        let entries = cache.entry_count();
        cache.invalidate_all();
        cache.run_pending_tasks();
        entries
    }

    pub fn entry_count(&self) -> u64 {
        self.inner.as_ref().map_or(0, |c| c.entry_count())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_separates_every_field() {
        let t = Truncation::default();
        let base = ScoreCache::key("m", "1", "q", "d", &t);
        assert_ne!(base, ScoreCache::key("m", "2", "q", "d", &t));
        assert_ne!(base, ScoreCache::key("m", "1", "qd", "", &t));
        assert_ne!(
            base,
            ScoreCache::key(
                "m",
                "1",
                "q",
                "d",
                &Truncation {
                    max_document_tokens: Some(5),
                    ..t
                }
            )
        );
        let chunked = Truncation { max_chunks: 4, ..t };
        assert_ne!(base, ScoreCache::key("m", "1", "q", "d", &chunked));
        // Documents refused at one window read the same whatever the chunk limit says.
        let refused = Truncation {
            enabled: false,
            ..t
        };
        assert_eq!(
            ScoreCache::key("m", "1", "q", "d", &refused),
            ScoreCache::key(
                "m",
                "1",
                "q",
                "d",
                &Truncation {
                    max_chunks: 4,
                    ..refused
                }
            )
        );
        assert_eq!(base, ScoreCache::key("m", "1", "q", "d", &t));
    }

    #[test]
    fn disabled_cache_stores_nothing() {
        let cache = ScoreCache::new(0, Duration::from_secs(60));
        cache.insert(
            1,
            CachedScore {
                logit: 1.0,
                tokens: 3,
                truncated: false,
            },
        );
        assert!(cache.get(1).is_none());
    }
}
