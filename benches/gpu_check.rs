//! GPU check: one model on the CUDA execution provider against the same model on CPU, with
//! the service's own loader, tokenization, padding and batching code.
//!
//! Loads the model folder twice (CPU, then CUDA on `--device-id`, with no CPU fallback, so a
//! CUDA that cannot be registered is an error that says why), scores the same request mix
//! with both, prints where ONNX Runtime placed the GPU model's nodes (by provider, with the
//! operators that did work on CPU; a model mostly on CPU fails to load and says which), the
//! largest score difference and each provider's pairs per second (same batches, side by side
//! in one run). Exits non-zero when the scores differ by more
//! than `--tolerance`.
//!
//! Needs the GPU build of ONNX Runtime and the CUDA 13 / cuDNN 9 libraries:
//! `benches/gpu_check.sh` sets both up from the package registry and runs this.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use rradistill::model::graph::{Provider, SessionOptions};
use rradistill::model::student::StudentRanker;
use rradistill::model::{PreparedPair, Ranker, Truncation};

#[derive(Parser, Debug)]
#[command(about = "rradistill: CUDA vs CPU scores and throughput for one model")]
struct Args {
    #[arg(long, env = "MODEL_DIR", default_value = "models/rra-bert-m")]
    model_dir: PathBuf,
    /// The GPU build of ONNX Runtime (libonnxruntime.so from the onnxruntime-gpu wheel).
    #[arg(long, env = "ORT_DYLIB_PATH")]
    ort_dylib_path: PathBuf,
    #[arg(long, default_value = "cuda")]
    provider: String,
    #[arg(long, default_value_t = 0)]
    device_id: i32,
    /// Pairs per batch.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Seconds of timing per provider.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Largest allowed |CUDA - CPU| on a raw score.
    #[arg(long, default_value_t = 1e-3)]
    tolerance: f32,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

const QUERIES: [&str; 4] = [
    "how do I install a downloaded deb package without network access",
    "why do python threads not speed up my cpu bound loop",
    "set wireless driver module options permanently on boot",
    "difference between tuple and list and when to use each",
];
const DOCUMENTS: [&str; 6] = [
    "Use dpkg -i with the .deb file you copied onto the machine, then apt-get -f install.",
    "The global interpreter lock lets only one thread execute Python bytecode at a time.",
    "Kernel modules accept parameters at load time; modprobe.d makes them permanent.",
    "A tuple is an immutable sequence, while a list can be changed in place.",
    "Debian stable is released roughly every two years and receives security support for about three.",
    "Manual pages are grouped into numbered sections: 1 for user commands, 3 for library functions.",
];

fn pairs(ranker: &StudentRanker) -> Vec<PreparedPair> {
    let mut out = Vec::new();
    for query in QUERIES {
        let q = ranker.prepare_query(query, usize::MAX).expect("query fits");
        for (i, doc) in DOCUMENTS.iter().enumerate() {
            let long = doc.repeat(1 + i % 4);
            out.push(
                ranker
                    .prepare_pair(&q, &long, i, &Truncation::default())
                    .expect("pair"),
            );
        }
    }
    out
}

fn scores(ranker: &StudentRanker, pairs: &[PreparedPair], batch: usize) -> Vec<f32> {
    pairs
        .chunks(batch)
        .flat_map(|chunk| {
            let refs: Vec<&PreparedPair> = chunk.iter().collect();
            ranker.score(0, &refs).expect("inference")
        })
        .collect()
}

fn throughput(ranker: &StudentRanker, pairs: &[PreparedPair], batch: usize, seconds: u64) -> f64 {
    let started = Instant::now();
    let mut scored = 0usize;
    while started.elapsed() < Duration::from_secs(seconds) {
        scored += scores(ranker, pairs, batch).len();
    }
    scored as f64 / started.elapsed().as_secs_f64()
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    rradistill::runtime::init(&args.ort_dylib_path)?;
    let provider = match args.provider.as_str() {
        "cuda" => Provider::Cuda,
        "tensorrt" => Provider::Tensorrt,
        other => anyhow::bail!("--provider {other}: use cuda or tensorrt"),
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cpu = StudentRanker::load(
        &args.model_dir,
        &SessionOptions {
            intra_threads: cores,
            ..SessionOptions::default()
        },
    )?;
    let gpu = StudentRanker::load(
        &args.model_dir,
        &SessionOptions {
            provider,
            device_id: args.device_id,
            allow_cpu_fallback: false,
            ..SessionOptions::default()
        },
    )?;
    // Where ONNX Runtime put the nodes (a GPU model mostly on CPU has already failed to load).
    if let Some(placement) = &gpu.descriptor().node_placement {
        for (name, share) in &placement.providers {
            println!(
                "placement on {}: {name} ran {} nodes, {} output bytes",
                args.provider, share.nodes, share.output_bytes
            );
        }
        println!(
            "placement on {}: {:.1}% of output bytes on CPU; operators doing work on CPU: {:?}",
            args.provider,
            placement.cpu_share * 100.0,
            placement.cpu_ops
        );
    }
    let pairs = pairs(&cpu);
    let on_cpu = scores(&cpu, &pairs, args.batch_size);
    let on_gpu = scores(&gpu, &pairs, args.batch_size);
    let max_diff = on_cpu
        .iter()
        .zip(&on_gpu)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    println!(
        "model {} on {} (device {}): {} pairs, max |{} - cpu| = {max_diff:.2e}",
        args.model_dir.display(),
        args.provider,
        args.device_id,
        pairs.len(),
        args.provider
    );
    let cpu_rate = throughput(&cpu, &pairs, args.batch_size, args.seconds);
    let gpu_rate = throughput(&gpu, &pairs, args.batch_size, args.seconds);
    println!(
        "throughput, batches of {}: cpu {cpu_rate:.1} pairs/s, {} {gpu_rate:.1} pairs/s, ratio {:.1}",
        args.batch_size,
        args.provider,
        gpu_rate / cpu_rate
    );
    anyhow::ensure!(
        max_diff <= args.tolerance,
        "scores differ by {max_diff} > {}",
        args.tolerance
    );
    Ok(())
}
