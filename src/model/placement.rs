//! Where a graph's nodes really run: ONNX Runtime's own profile of one run, read back.
//!
//! A GPU provider takes only the nodes it has kernels for and ONNX Runtime quietly runs the
//! rest on CPU, so "provider = cuda" alone does not say where the work happens. At load,
//! [`super::graph::Graph`] runs one batch through a session opened with profiling on; each
//! kernel's profile event names the provider that ran it and the bytes it produced. Shape
//! arithmetic on CPU is normal for CUDA (a few bytes per node); a MatMul or an attention
//! block there is not. So the share that decides is the share of *output bytes* produced
//! on CPU, not of nodes: above [`MOSTLY_CPU`] a GPU model fails to load unless the models
//! file allows CPU fallback, and `/info` reports the placement either way.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::graph::Provider;

/// ONNX Runtime's name for the CPU provider in profiles.
pub const CPU_PROVIDER: &str = "CPUExecutionProvider";

/// A GPU model whose CPU nodes produce more than this share of all output bytes is
/// "mostly on CPU".
pub const MOSTLY_CPU: f64 = 0.5;

/// A node on CPU that produces at least this many bytes is work, not shape arithmetic, and
/// is named in [`Placement::cpu_ops`].
const WORK_BYTES: u64 = 4096;

/// What one provider ran in the profiled batch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProviderShare {
    /// Kernels it ran.
    pub nodes: u64,
    /// Bytes those kernels wrote.
    pub output_bytes: u64,
}

/// Where the nodes of one profiled run went.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Placement {
    /// By ONNX Runtime's provider name (`CUDAExecutionProvider`, `CPUExecutionProvider`).
    pub providers: BTreeMap<String, ProviderShare>,
    /// Share of all output bytes written by CPU kernels, 0 to 1.
    pub cpu_share: f64,
    /// Operator types that did real work on CPU (at least 4 KiB of output), when the
    /// session's provider is not CPU: what fell back.
    pub cpu_ops: Vec<String>,
}

impl Placement {
    /// Reads an ONNX Runtime profile (the JSON array `end_profiling` writes).
    pub fn from_profile(path: &Path) -> Result<Placement> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the profile {}", path.display()))?;
        Self::from_profile_json(&text)
            .with_context(|| format!("cannot read the profile {}", path.display()))
    }

    pub fn from_profile_json(text: &str) -> Result<Placement> {
        let events: Vec<Event> = serde_json::from_str(text)?;
        let mut placement = Placement::default();
        let mut cpu_ops = BTreeMap::new();
        let (mut total, mut cpu) = (0u64, 0u64);
        for event in events {
            // One `_kernel_time` event per node run (fences, if any, are separate events).
            if event.cat != "Node" || !event.name.ends_with("_kernel_time") {
                continue;
            }
            let Some(args) = event.args else { continue };
            let Some(provider) = args.provider else {
                continue;
            };
            let bytes = args
                .output_size
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0);
            let share = placement.providers.entry(provider.clone()).or_default();
            share.nodes += 1;
            share.output_bytes += bytes;
            total += bytes;
            if provider == CPU_PROVIDER {
                cpu += bytes;
                if bytes >= WORK_BYTES {
                    if let Some(op) = args.op_name {
                        cpu_ops.insert(op, ());
                    }
                }
            }
        }
        if placement.providers.is_empty() {
            bail!("the profile has no node events");
        }
        placement.cpu_share = if total == 0 {
            0.0
        } else {
            cpu as f64 / total as f64
        };
        if placement.providers.keys().any(|p| p != CPU_PROVIDER) {
            placement.cpu_ops = cpu_ops.into_keys().collect();
        }
        Ok(placement)
    }

    /// Whether a model asked to run on a GPU does most of its work on CPU.
    pub fn mostly_cpu(&self) -> bool {
        self.cpu_share > MOSTLY_CPU
    }

    /// Why a model asked to run on `provider` should not be served as it is placed: `Some`
    /// when the provider is a GPU and most of the work ran on CPU.
    pub fn refusal(&self, provider: Provider) -> Option<String> {
        (provider != Provider::Cpu && self.mostly_cpu()).then(|| {
            format!(
                "it asked for {} but ONNX Runtime ran {:.0}% of its work (output bytes) on CPU \
                 (operators on CPU: {}); the GPU build of ONNX Runtime may lack kernels for \
                 them, or the graph was exported for CPU",
                provider.as_str(),
                self.cpu_share * 100.0,
                self.cpu_ops.join(", ")
            )
        })
    }
}

#[derive(Deserialize)]
struct Event {
    #[serde(default)]
    cat: String,
    #[serde(default)]
    name: String,
    args: Option<EventArgs>,
}

#[derive(Deserialize)]
struct EventArgs {
    provider: Option<String>,
    op_name: Option<String>,
    output_size: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(name: &str, op: &str, provider: &str, bytes: u64) -> serde_json::Value {
        serde_json::json!({"cat": "Node", "name": format!("{name}_kernel_time"), "ph": "X",
            "args": {"op_name": op, "provider": provider, "output_size": bytes.to_string()}})
    }

    #[test]
    fn shape_arithmetic_on_cpu_is_not_a_fallback() {
        let profile = serde_json::json!([
            {"cat": "Session", "name": "model_run", "args": {}},
            event("Shape_1", "Shape", CPU_PROVIDER, 16),
            event("Gather_2", "Gather", CPU_PROVIDER, 8),
            event("MatMul_3", "MatMul", "CUDAExecutionProvider", 1 << 20),
            event("Attention_4", "Attention", "CUDAExecutionProvider", 1 << 20),
            {"cat": "Node", "name": "MatMul_3_fence_before", "args": {"op_name": "MatMul"}},
        ]);
        let placement = Placement::from_profile_json(&profile.to_string()).unwrap();
        assert_eq!(placement.providers[CPU_PROVIDER].nodes, 2);
        assert_eq!(placement.providers["CUDAExecutionProvider"].nodes, 2);
        assert!(placement.cpu_share < 1e-4);
        assert!(!placement.mostly_cpu());
        assert!(placement.cpu_ops.is_empty());
        assert_eq!(placement.refusal(Provider::Tensorrt), None);
    }

    #[test]
    fn matmuls_on_cpu_are_named_and_make_the_model_mostly_cpu() {
        let profile = serde_json::json!([
            event("Shape_1", "Shape", CPU_PROVIDER, 16),
            event("MatMulNBits_3", "MatMulNBits", CPU_PROVIDER, 3 << 20),
            event("Gelu_5", "Gelu", CPU_PROVIDER, 1 << 20),
            event(
                "LayerNorm_4",
                "LayerNormalization",
                "CUDAExecutionProvider",
                1 << 20
            ),
        ]);
        let placement = Placement::from_profile_json(&profile.to_string()).unwrap();
        assert!(placement.mostly_cpu(), "{placement:?}");
        assert_eq!(placement.cpu_ops, ["Gelu", "MatMulNBits"]);
        assert!((placement.cpu_share - 0.8).abs() < 1e-3);
        let refusal = placement.refusal(Provider::Cuda).unwrap();
        assert!(
            refusal.contains("cuda") && refusal.contains("80%"),
            "{refusal}"
        );
        assert!(refusal.contains("Gelu, MatMulNBits"), "{refusal}");
        // On CPU, everything on CPU is the point.
        assert_eq!(placement.refusal(Provider::Cpu), None);
    }

    #[test]
    fn a_profile_without_nodes_is_an_error() {
        assert!(Placement::from_profile_json("[]").is_err());
        assert!(Placement::from_profile_json("{").is_err());
    }
}
