//! An ONNX graph on a pool of ONNX Runtime sessions: what every model family shares.
//!
//! Owns the execution provider choice (CPU, CUDA, TensorRT; a GPU provider that cannot be
//! registered fails the load unless CPU fallback is allowed, which is then logged loudly and
//! reported), one session per inference thread (so `Session::run`'s `&mut self` is never
//! contended), the check of the graph's inputs and score output against the manifest, and
//! turning a batch of prepared pairs into padded tensors and one raw score per pair (a late
//! model's batch laid out by [`super::towers`]: each distinct query once). At load, one
//! batch runs through a profiled session to learn where ONNX Runtime really put the nodes
//! ([`super::placement`]); a GPU model that would mostly run on CPU fails to load unless CPU
//! fallback is allowed.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, bail, Result};
use ort::ep::ExecutionProviderDispatch;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::{Tensor, TensorElementType, ValueType};
use serde::{Deserialize, Serialize};

use super::manifest::{InputNames, Manifest, ModelKind, PaddingSide};
use super::placement::{Placement, MOSTLY_CPU};
use super::{towers, PreparedPair, RankError};

/// Where a model's graph runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    #[default]
    Cpu,
    Cuda,
    Tensorrt,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Cpu => "cpu",
            Provider::Cuda => "cuda",
            Provider::Tensorrt => "tensorrt",
        }
    }
}

/// How to run a model's sessions.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionOptions {
    pub sessions: usize,
    pub intra_threads: usize,
    pub provider: Provider,
    /// The GPU for CUDA and TensorRT.
    pub device_id: i32,
    /// Serve on CPU when the GPU provider cannot be registered, and serve a GPU model that
    /// does most of its work on CPU anyway (both logged as errors); otherwise either fails
    /// the load.
    pub allow_cpu_fallback: bool,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            sessions: 1,
            intra_threads: 1,
            provider: Provider::Cpu,
            device_id: 0,
            allow_cpu_fallback: false,
        }
    }
}

/// The provider a graph actually runs on, and the one asked for when it fell back.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderInUse {
    pub provider: Provider,
    /// `Some(requested)` when the requested GPU provider failed and CPU serves instead.
    pub fell_back_from: Option<Provider>,
    /// Why the requested provider failed (for `/info` and the log).
    pub fallback_reason: Option<String>,
    /// Where ONNX Runtime ran the nodes of a profiled batch at load; `None` when the profile
    /// could not be had (logged).
    pub placement: Option<Placement>,
}

pub struct Graph {
    sessions: Vec<Mutex<Session>>,
    inputs: InputNames,
    output: String,
    pad_id: i64,
    padding: PaddingSide,
    /// A late model: query and documents in separate tensors ([`towers::layout`]).
    towers: bool,
    provider: ProviderInUse,
}

/// Named input tensors for one `Session::run`.
type Feed = Vec<(String, ort::value::DynValue)>;

impl Graph {
    /// Opens `options.sessions` sessions of `model_path` and checks the graph against the
    /// manifest.
    pub fn open(
        model_path: &Path,
        manifest: &Manifest,
        pad_id: i64,
        padding: PaddingSide,
        options: &SessionOptions,
    ) -> Result<Graph> {
        if !model_path.is_file() {
            bail!("model file {} does not exist", model_path.display());
        }
        let mut provider = ProviderInUse {
            provider: options.provider,
            fell_back_from: None,
            fallback_reason: None,
            placement: None,
        };
        // Session 0 profiles the load's placement batch, then stops profiling. ONNX Runtime
        // also writes the profile when a session is dropped still profiling (a load that
        // fails after session 0 opened): declared before the sessions, the cleanup drops
        // after them and removes whatever was written.
        let profile = profile_prefix(model_path);
        let _cleanup = ProfileCleanup(profile.clone());
        let mut sessions = Vec::with_capacity(options.sessions.max(1));
        for n in 0..options.sessions.max(1) {
            let profile = (n == 0).then_some(profile.as_path());
            let session = match open_session(model_path, options, provider.provider, profile) {
                Ok(session) => session,
                Err(OpenError::Provider(reason)) if options.allow_cpu_fallback => {
                    tracing::error!(
                        model = %model_path.display(),
                        requested = options.provider.as_str(),
                        %reason,
                        "EXECUTION PROVIDER FALLBACK: the requested GPU provider could not be \
                         registered; this model serves on CPU (allow_cpu_fallback = true)"
                    );
                    provider = ProviderInUse {
                        provider: Provider::Cpu,
                        fell_back_from: Some(options.provider),
                        fallback_reason: Some(reason),
                        placement: None,
                    };
                    open_session(model_path, options, Provider::Cpu, profile)
                        .map_err(|e| anyhow!("{e}"))?
                }
                Err(e) => bail!("{e}"),
            };
            sessions.push(Mutex::new(session));
        }
        let mut graph = Graph {
            sessions,
            inputs: manifest.inputs.clone(),
            output: manifest.output.clone(),
            pad_id,
            padding,
            towers: manifest.kind == ModelKind::Late,
            provider,
        };
        graph.check(model_path)?;
        graph.provider.placement = graph.profile_placement(model_path, options)?;
        Ok(graph)
    }

    /// Runs one batch on the profiled session 0 and reads back where its nodes ran. A GPU
    /// model that did most of its work on CPU fails here unless CPU fallback is allowed; a
    /// profile that cannot be had (no writable temporary folder) is logged, not fatal.
    fn profile_placement(
        &self,
        model_path: &Path,
        options: &SessionOptions,
    ) -> Result<Option<Placement>> {
        let file = match self.profiled_run() {
            Ok(file) => file,
            Err(error) => {
                tracing::warn!(model = %model_path.display(), %error,
                    "could not profile where the graph's nodes run; /info will not say");
                return Ok(None);
            }
        };
        // The file itself goes with the load's `ProfileCleanup`.
        let placement = match Placement::from_profile(&file) {
            Ok(placement) => placement,
            Err(error) => {
                tracing::warn!(model = %model_path.display(), error = %format!("{error:#}"),
                    "could not read where the graph's nodes run; /info will not say");
                return Ok(None);
            }
        };
        let provider = self.provider.provider;
        if let Some(why) = placement.refusal(provider) {
            let message = format!("{}: {why}", model_path.display());
            if !options.allow_cpu_fallback {
                bail!(
                    "{message}. Serve it with execution_provider = \"cpu\", export it for the \
                     GPU, or set allow_cpu_fallback = true to serve it anyway (more than {:.0}% \
                     of the work on CPU refuses the load)",
                    MOSTLY_CPU * 100.0
                );
            }
            tracing::error!(
                "EXECUTION PROVIDER FALLBACK: {message}; serving anyway (allow_cpu_fallback = true)"
            );
        } else if !placement.cpu_ops.is_empty() {
            tracing::warn!(model = %model_path.display(), provider = provider.as_str(),
                cpu_share = placement.cpu_share, cpu_ops = ?placement.cpu_ops,
                "some operators run on CPU beside the GPU provider");
        }
        Ok(Some(placement))
    }

    /// One small batch (two queries, three pairs) on session 0, whose profile is then
    /// closed; returns the profile's path. The token values do not matter, only the nodes.
    fn profiled_run(&self) -> Result<PathBuf> {
        // Ids every vocabulary has (the pad id may be the last one).
        let tokens: Vec<i64> = (1..=16).collect();
        let pair = |query: &Arc<[i64]>| PreparedPair {
            input_ids: tokens.clone(),
            type_ids: vec![0; tokens.len()],
            query_ids: self.towers.then(|| query.clone()),
            truncated: false,
        };
        let (first, second): (Arc<[i64]>, Arc<[i64]>) =
            (Arc::from(&tokens[..8]), Arc::from(&tokens[4..12]));
        let pairs = [pair(&first), pair(&first), pair(&second)];
        let batch: Vec<&PreparedPair> = pairs.iter().collect();
        let ran = self.run(0, &batch);
        // Profiling stops whatever the run did: left on, it would record every later batch.
        let mut session = self.sessions[0]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let file = PathBuf::from(session.end_profiling()?);
        if let Err(error) = ran {
            bail!("the profiled batch failed: {error}");
        }
        Ok(file)
    }

    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    pub fn provider(&self) -> &ProviderInUse {
        &self.provider
    }

    /// The graph's inputs must be exactly the manifest's (int64, [batch, sequence]; a late
    /// model's `query_index` [pairs]) and its score output must exist and be float32 with one
    /// score per row.
    fn check(&self, model_path: &Path) -> Result<()> {
        let session = self.sessions[0]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let graph_inputs: Vec<&str> = session.inputs().iter().map(|o| o.name()).collect();
        let expected = self.inputs.all();
        for name in &expected {
            let Some(outlet) = session.inputs().iter().find(|o| o.name() == *name) else {
                bail!(
                    "{}: the manifest names input `{name}` but the graph's inputs are {graph_inputs:?}",
                    model_path.display()
                );
            };
            let (rank, expected_shape) = if Some(*name) == self.inputs.query_index.as_deref() {
                (1, "[pairs] (each pair's row in the query tensor)")
            } else {
                (2, "[batch, sequence]")
            };
            match outlet.dtype() {
                ValueType::Tensor {
                    ty: TensorElementType::Int64,
                    shape,
                    ..
                } if shape.len() == rank => {}
                other => bail!(
                    "{}: graph input `{name}` is {other}; expected int64 {expected_shape}",
                    model_path.display()
                ),
            }
        }
        for name in &graph_inputs {
            if !expected.contains(name) {
                bail!(
                    "{}: the graph has input `{name}`, which the manifest does not map \
                     (manifest inputs: {expected:?})",
                    model_path.display()
                );
            }
        }
        let graph_outputs: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
        let Some(output) = session.outputs().iter().find(|o| o.name() == self.output) else {
            bail!(
                "{}: the manifest names output `{}` but the graph's outputs are {graph_outputs:?}",
                model_path.display(),
                self.output
            );
        };
        match output.dtype() {
            ValueType::Tensor {
                ty: TensorElementType::Float32,
                shape,
                ..
            } if shape.len() == 1 || (shape.len() == 2 && (shape[1] == 1 || shape[1] == -1)) => {}
            other => bail!(
                "{}: graph output `{}` is {other}; expected float32 [batch] or [batch, 1]",
                model_path.display(),
                self.output
            ),
        }
        Ok(())
    }

    /// Raw scores for a batch, in order, on session `session`.
    pub fn run(&self, session: usize, batch: &[&PreparedPair]) -> Result<Vec<f32>, RankError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let rows = batch.len();
        let inputs = if self.towers {
            self.tower_feed(batch)?
        } else {
            self.pair_feed(batch)?
        };
        self.score(session, rows, inputs)
    }

    /// A late model's feed: distinct queries, documents and each pair's query row.
    fn tower_feed(&self, batch: &[&PreparedPair]) -> Result<Feed, RankError> {
        let t =
            towers::layout(batch, self.pad_id).map_err(|e| RankError::Inference(e.to_string()))?;
        let names = &self.inputs;
        let tensor = |shape: Vec<i64>, data: Vec<i64>| {
            Tensor::from_array((shape, data))
                .map(|t| t.into_dyn())
                .map_err(|e| RankError::Inference(format!("cannot build input tensor: {e}")))
        };
        let (queries, query_width) = (t.queries as i64, t.query_width as i64);
        let (pairs, document_width) = (t.pairs as i64, t.document_width as i64);
        let role = |name: &Option<String>| name.clone().unwrap_or_default();
        Ok(vec![
            (
                role(&names.query_ids),
                tensor(vec![queries, query_width], t.query_ids)?,
            ),
            (
                role(&names.query_mask),
                tensor(vec![queries, query_width], t.query_mask)?,
            ),
            (
                names.input_ids.clone(),
                tensor(vec![pairs, document_width], t.input_ids)?,
            ),
            (
                names.attention_mask.clone(),
                tensor(vec![pairs, document_width], t.attention_mask)?,
            ),
            (
                role(&names.query_index),
                tensor(vec![pairs], t.query_index)?,
            ),
        ])
    }

    /// Pads every pair to the longest (on the manifest's side), builds the mask, segment ids
    /// and positions the graph takes.
    fn pair_feed(&self, batch: &[&PreparedPair]) -> Result<Feed, RankError> {
        let rows = batch.len();
        let width = batch.iter().map(|p| p.len()).max().unwrap_or(0);
        let mut ids = vec![self.pad_id; rows * width];
        let mut mask = vec![0i64; rows * width];
        let names = &self.inputs;
        // Segment ids and positions only for graphs that take them (the hot path).
        let mut types = names
            .token_type_ids
            .as_ref()
            .map(|_| vec![0i64; rows * width]);
        let mut positions = names
            .position_ids
            .as_ref()
            .map(|_| vec![0i64; rows * width]);
        for (row, pair) in batch.iter().enumerate() {
            let n = pair.len();
            let start = row * width
                + match self.padding {
                    PaddingSide::Right => 0,
                    PaddingSide::Left => width - n,
                };
            ids[start..start + n].copy_from_slice(&pair.input_ids);
            mask[start..start + n].fill(1);
            if let Some(types) = types.as_mut().filter(|_| pair.type_ids.len() == n) {
                types[start..start + n].copy_from_slice(&pair.type_ids);
            }
            if let Some(positions) = positions.as_mut() {
                for (offset, p) in positions[start..start + n].iter_mut().enumerate() {
                    *p = offset as i64;
                }
            }
        }
        let tensor = |data: Vec<i64>| {
            Tensor::from_array((vec![rows as i64, width as i64], data))
                .map_err(|e| RankError::Inference(format!("cannot build input tensor: {e}")))
        };
        let mut inputs = vec![
            (names.input_ids.clone(), tensor(ids)?.into_dyn()),
            (names.attention_mask.clone(), tensor(mask)?.into_dyn()),
        ];
        for (name, data) in [
            (&names.token_type_ids, types),
            (&names.position_ids, positions),
        ] {
            if let (Some(name), Some(data)) = (name, data) {
                inputs.push((name.clone(), tensor(data)?.into_dyn()));
            }
        }
        Ok(inputs)
    }

    /// Runs `inputs` on session `session` and reads one score per row of a batch of `rows`.
    fn score(&self, session: usize, rows: usize, inputs: Feed) -> Result<Vec<f32>, RankError> {
        let slot = self
            .sessions
            .get(session)
            .ok_or_else(|| RankError::Inference(format!("no session {session}")))?;
        // A panic while a session ran poisons its mutex; the session itself is still sound.
        let mut session = slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let outputs = session
            .run(inputs)
            .map_err(|e| RankError::Inference(e.to_string()))?;
        let value = outputs.get(&self.output).ok_or_else(|| {
            RankError::Inference(format!("the graph returned no `{}`", self.output))
        })?;
        let (shape, scores) = value
            .try_extract_tensor::<f32>()
            .map_err(|e| RankError::Inference(e.to_string()))?;
        let per_row = scores.len().checked_div(rows).unwrap_or(0);
        if shape.first().copied() != Some(rows as i64) || per_row != 1 {
            return Err(RankError::Inference(format!(
                "the graph returned shape {shape:?} for a batch of {rows}; expected [{rows}] or [{rows}, 1]"
            )));
        }
        Ok(scores.to_vec())
    }
}

#[derive(Debug, thiserror::Error)]
enum OpenError {
    #[error("{0}")]
    Provider(String),
    #[error("{0}")]
    Other(String),
}

fn dispatch(provider: Provider, device_id: i32) -> Option<ExecutionProviderDispatch> {
    match provider {
        Provider::Cpu => None,
        Provider::Cuda => Some(
            ort::ep::CUDA::default()
                .with_device_id(device_id)
                .build()
                .error_on_failure(),
        ),
        Provider::Tensorrt => Some(
            ort::ep::TensorRT::default()
                .with_device_id(device_id)
                .build()
                .error_on_failure(),
        ),
    }
}

/// Where session 0 writes its load-time profile. ONNX Runtime appends only a timestamp in
/// seconds, so each load gets its own number: two loads of one folder in the same second (a
/// reload, one folder under two names) must not read or delete each other's profile.
fn profile_prefix(model_path: &Path) -> PathBuf {
    static LOADS: AtomicU64 = AtomicU64::new(0);
    let stem = model_path
        .parent()
        .and_then(|d| d.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let load = LOADS.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!(
        "rradistill-placement-{}-{load}-{stem}",
        std::process::id()
    ))
}

/// Removes every file a profile `prefix` produced (ONNX Runtime appends a timestamp).
struct ProfileCleanup(PathBuf);

impl Drop for ProfileCleanup {
    fn drop(&mut self) {
        let (Some(dir), Some(prefix)) = (self.0.parent(), self.0.file_name()) else {
            return;
        };
        let prefix = prefix.to_string_lossy();
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(prefix.as_ref())
            {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

fn open_session(
    model_path: &Path,
    options: &SessionOptions,
    provider: Provider,
    profile: Option<&Path>,
) -> Result<Session, OpenError> {
    let fail = |e: String| {
        OpenError::Other(format!(
            "cannot load ONNX model {}: {e}",
            model_path.display()
        ))
    };
    let environment = crate::runtime::environment().map_err(|e| fail(e.to_string()))?;
    let mut builder = Session::builder(environment)
        .map_err(|e| fail(e.to_string()))?
        .with_optimization_level(GraphOptimizationLevel::All)
        .map_err(|e| fail(e.to_string()))?
        .with_intra_threads(options.intra_threads.max(1))
        .map_err(|e| fail(e.to_string()))?
        .with_inter_threads(1)
        .map_err(|e| fail(e.to_string()))?
        // Memory patterns are planned and kept per input shape; batches here take a new shape
        // almost every time (pairs x padded length), so they only held memory: without them the
        // same throughput ran at 9% less peak RSS (benches/README.md, "Batches that carry
        // little padding"). The CPU arena stays: without it glibc's heap nearly doubled RSS.
        .with_memory_pattern(false)
        .map_err(|e| fail(e.to_string()))?;
    if let Some(ep) = dispatch(provider, options.device_id) {
        builder = builder.with_execution_providers([ep]).map_err(|e| {
            OpenError::Provider(format!(
                "the {} execution provider (device {}) could not be registered for {}: {}. \
                 A GPU provider needs the GPU build of ONNX Runtime (the onnxruntime-gpu wheel, \
                 see the README) and the CUDA 13 / cuDNN 9 libraries on the library path; \
                 or set allow_cpu_fallback = true to serve on CPU",
                provider.as_str(),
                options.device_id,
                model_path.display(),
                e.to_string().trim_end_matches('.')
            ))
        })?;
    }
    if let Some(prefix) = profile {
        builder = builder
            .with_profiling(prefix)
            .map_err(|e| fail(e.to_string()))?;
    }
    builder
        .commit_from_file(model_path)
        .map_err(|e| fail(e.to_string()))
}
