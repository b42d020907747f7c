//! The models this process serves, by name, each with its own queue, inference threads and
//! admission budget, so a slow model cannot starve another. One model for now; the request's
//! `model` field already routes by name.

use std::path::Path;
use std::sync::Arc;

use anyhow::Result;

use super::encoder::{EncoderRanker, SessionOptions};
use super::Ranker;
use crate::batch::{Admission, Batcher, BatcherConfig};
use crate::metrics::Metrics;

/// A loaded model ready to serve: the model, its batcher and its admission budget.
pub struct ServedModel {
    pub ranker: Arc<dyn Ranker>,
    pub batcher: Batcher,
    pub admission: Admission,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("model `{requested}` is not served here; available: {}", available.join(", "))]
pub struct UnknownModel {
    pub requested: String,
    pub available: Vec<String>,
}

pub struct Registry {
    models: Vec<Arc<ServedModel>>,
}

/// Limits applied to each model's queue.
#[derive(Debug, Clone, Copy)]
pub struct QueueLimits {
    pub batch: BatcherConfig,
    pub max_concurrent_requests: usize,
    pub max_queue_tokens: usize,
}

impl Registry {
    /// Loads the encoder model in `dir` and starts its inference threads.
    pub fn load_single(
        dir: &Path,
        sessions: &SessionOptions,
        limits: QueueLimits,
        metrics: &Metrics,
    ) -> Result<Registry> {
        let ranker: Arc<dyn Ranker> = Arc::new(EncoderRanker::load(dir, sessions)?);
        Ok(Registry {
            models: vec![Arc::new(Self::serve(ranker, limits, metrics))],
        })
    }

    /// Puts an already loaded model behind a batcher and an admission budget.
    pub fn serve(ranker: Arc<dyn Ranker>, limits: QueueLimits, metrics: &Metrics) -> ServedModel {
        let window = ranker.descriptor().max_sequence_length;
        let batch = BatcherConfig {
            // A full-window pair must always fit in a batch of its own.
            max_batch_tokens: limits.batch.max_batch_tokens.max(window),
            max_batch_size: limits.batch.max_batch_size,
        };
        let batcher = Batcher::start(
            ranker.clone(),
            batch,
            metrics.for_model(&ranker.descriptor().name),
        );
        ServedModel {
            ranker,
            batcher,
            admission: Admission::new(limits.max_concurrent_requests, limits.max_queue_tokens),
        }
    }

    pub fn from_models(models: Vec<ServedModel>) -> Registry {
        Registry {
            models: models.into_iter().map(Arc::new).collect(),
        }
    }

    /// The model called `name`, or the default one when no name is given.
    pub fn get(&self, name: Option<&str>) -> Result<Arc<ServedModel>, UnknownModel> {
        match name {
            None | Some("") => self.models.first().cloned().ok_or_else(|| UnknownModel {
                requested: "(default)".into(),
                available: Vec::new(),
            }),
            Some(name) => self
                .models
                .iter()
                .find(|m| m.ranker.descriptor().name == name)
                .cloned()
                .ok_or_else(|| UnknownModel {
                    requested: name.to_string(),
                    available: self.names(),
                }),
        }
    }

    pub fn models(&self) -> &[Arc<ServedModel>] {
        &self.models
    }

    pub fn names(&self) -> Vec<String> {
        self.models
            .iter()
            .map(|m| m.ranker.descriptor().name.clone())
            .collect()
    }

    /// Stops every batcher after it has drained its queue.
    pub fn shutdown(&self) {
        for model in &self.models {
            model.batcher.shutdown();
        }
    }
}
