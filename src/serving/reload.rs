//! The registry in force, and reloading it.
//!
//! [`Models`] holds one [`Registry`] behind an `ArcSwap`: a request takes the registry in
//! force when it starts and keeps the model it was routed to until it finishes, while a
//! reload builds a whole new registry beside it (unchanged models kept, changed and new ones
//! loaded and warmed up) and swaps it in at once. One reload runs at a time; a reload that
//! fails changes nothing and is counted (`rradistill_reloads_total{outcome="failed"}`).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use arc_swap::ArcSwap;

use super::catalog::Catalog;
use super::registry::{ModelDefaults, Registry, ReloadReport};
use crate::metrics::Metrics;

/// Where the registry comes from, so it can be read again on reload.
#[derive(Debug, Clone)]
pub enum ModelSource {
    /// `--models-file`: the models file.
    ModelsFile(PathBuf),
    /// `--model-dir`: one model folder.
    ModelDir(PathBuf),
    /// Built in code (benchmarks, tests): nothing to reload from.
    Fixed,
}

impl ModelSource {
    pub fn catalog(&self) -> anyhow::Result<Catalog> {
        match self {
            ModelSource::ModelsFile(path) => Catalog::load(path),
            ModelSource::ModelDir(dir) => Catalog::single(dir)
                .with_context(|| format!("cannot serve the model in {}", dir.display())),
            ModelSource::Fixed => {
                anyhow::bail!("this service was built in code; nothing to reload")
            }
        }
    }
}

/// The registry in force, swapped whole on reload.
pub struct Models {
    registry: ArcSwap<Registry>,
    source: ModelSource,
    defaults: Option<ModelDefaults>,
    metrics: Metrics,
    /// One reload at a time.
    reloading: tokio::sync::Mutex<()>,
}

impl Models {
    /// A registry built in code: nothing to reload from.
    pub fn fixed(registry: Registry, metrics: Metrics) -> Models {
        Models {
            registry: ArcSwap::from_pointee(registry),
            source: ModelSource::Fixed,
            defaults: None,
            metrics,
            reloading: tokio::sync::Mutex::new(()),
        }
    }

    /// A registry that can be read again from `source` with `defaults`.
    pub fn reloadable(
        registry: Registry,
        metrics: Metrics,
        source: ModelSource,
        defaults: ModelDefaults,
    ) -> Models {
        Models {
            source,
            defaults: Some(defaults),
            ..Models::fixed(registry, metrics)
        }
    }

    /// The registry in force now.
    pub fn current(&self) -> Arc<Registry> {
        self.registry.load_full()
    }

    /// Reads the models file (or model folder) again and swaps in a registry built from it:
    /// unchanged models are kept, changed and new ones loaded and warmed up beside the old
    /// ones. If anything fails to load or validate, nothing changes and the error says why.
    pub async fn reload(&self) -> anyhow::Result<ReloadReport> {
        let outcome = self.try_reload().await;
        let label = if outcome.is_ok() { "ok" } else { "failed" };
        self.metrics.reloads.with_label_values(&[label]).inc();
        outcome
    }

    async fn try_reload(&self) -> anyhow::Result<ReloadReport> {
        let _one_at_a_time = self.reloading.lock().await;
        let defaults = self
            .defaults
            .context("this service was built in code; nothing to reload")?;
        let source = self.source.clone();
        let metrics = self.metrics.clone();
        let previous = self.current();
        let (registry, report) = tokio::task::spawn_blocking(move || {
            let catalog = source.catalog()?;
            Registry::load(&catalog, &defaults, &metrics, Some(&previous))
        })
        .await
        .map_err(|e| anyhow::anyhow!("reload task failed: {e}"))??;
        self.registry.store(Arc::new(registry));
        Ok(report)
    }
}
