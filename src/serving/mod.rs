//! Serving: which models this process serves and how a request reaches one of them.
//!
//! The layer between the re-rank operation ([`crate::rerank`]) and the batchers
//! ([`crate::batch`]): [`catalog`] reads and checks the models file; [`registry`] loads the
//! models it lists, puts each behind its own batcher and admission budget, and routes a
//! request's `model` (a model, an alias, or an experiment's variant) to one of them;
//! [`reload`] holds the registry in force and swaps in a new one when the models file is
//! read again. Layers point one way: `api` → `rerank` → `serving` → `batch` → `model`.

pub mod catalog;
pub mod registry;
pub mod reload;
