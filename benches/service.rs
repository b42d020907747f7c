//! The service against bare ONNX Runtime, side by side in one run, on the same model and
//! the same requests.
//!
//! 1. Bare runtime: the pairs of every request, tokenized beforehand, sorted by length and cut
//!    into batches of `--max-batch-size` (the best case for a static batcher), input tensors
//!    built beforehand; only `Session::run` is timed. Pairs per second.
//! 2. Service saturation: the `rradistill` binary on a loopback port (cache off), driven by
//!    `--concurrency` closed-loop clients for `--seconds`. Pairs per second over HTTP,
//!    tokenization, queueing and JSON included.
//! 3. Latency at half of that: an open-loop load at 50% of the measured saturation request
//!    rate; p50/p95/p99.
//! 4. The bare runtime again; its two runs are averaged, so drift in a shared machine's speed
//!    shows as their spread instead of biasing the ratio.
//!
//! Run: `make bench` (or `cargo bench --bench service -- --model-dir DIR [flags]`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::Tensor;
use rradistill::model::graph::SessionOptions;
use rradistill::model::student::StudentRanker;
use rradistill::model::{Manifest, PreparedPair, Ranker, Truncation};
use serde_json::json;

#[derive(Parser, Debug)]
#[command(about = "rradistill service vs bare ONNX Runtime")]
struct Args {
    #[arg(long, env = "MODEL_DIR")]
    model_dir: PathBuf,
    #[arg(
        long,
        env = "ORT_DYLIB_PATH",
        default_value = ".runtime/onnxruntime/libonnxruntime.so.1.32.0"
    )]
    ort_dylib_path: PathBuf,
    #[arg(long, default_value = "target/release/rradistill")]
    service_bin: PathBuf,
    /// Documents per request.
    #[arg(long, default_value_t = 50)]
    documents: usize,
    /// Distinct requests in the mix.
    #[arg(long, default_value_t = 16)]
    requests: usize,
    /// Seconds for each measurement.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Closed-loop clients for the saturation measurement.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    #[arg(long, default_value_t = 2)]
    sessions: usize,
    /// Intra-op threads per session (0 = cores / sessions).
    #[arg(long, default_value_t = 0)]
    intra_threads: usize,
    #[arg(long, default_value_t = 16)]
    max_batch_size: usize,
    #[arg(long, default_value_t = 18181)]
    port: u16,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

const SENTENCES: [&str; 10] = [
    "Use dpkg -i with the .deb file you copied onto the machine, then run apt-get -f install to pull in what it needs.",
    "The global interpreter lock lets only one thread execute Python bytecode at a time, so CPU-bound threads do not run in parallel.",
    "Kernel modules accept parameters at load time; modinfo lists the options a driver accepts and modprobe.d makes them permanent.",
    "Debian stable is released roughly every two years and receives security support for about three.",
    "A tuple is an immutable sequence, while a list can be changed in place and is usually used for homogeneous items.",
    "Set the system locale with dpkg-reconfigure locales, then log out and in again for the change to take effect.",
    "The apt preferences file lets you pin packages so that one release is preferred over another.",
    "Manual pages are grouped into numbered sections: 1 for user commands, 2 for system calls, 3 for library functions.",
    "Virtual environments isolate a project's packages from the system interpreter and from each other.",
    "Long-tail queries are rare, long and specific, so click logs say little about which documents answer them.",
];
const QUERIES: [&str; 8] = [
    "how do I install a downloaded deb package without network access on an old debian machine",
    "why do python threads not speed up my cpu bound numeric loop",
    "set wireless driver module options permanently on boot",
    "difference between tuple and list and when to use each",
    "change language and locale settings for all users",
    "which manual section documents c library functions like printf",
    "prefer packages from testing while staying on stable",
    "isolate python dependencies per project without root",
];

/// A request mix of `count` requests x `documents` documents of roughly 80-160 tokens.
fn request_mix(count: usize, documents: usize) -> Vec<(String, Vec<String>)> {
    (0..count)
        .map(|r| {
            let docs = (0..documents)
                .map(|d| {
                    let sentences = 3 + (r * 7 + d * 3) % 4;
                    (0..sentences)
                        .map(|s| SENTENCES[(r + d * 3 + s * 7) % SENTENCES.len()])
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect();
            (QUERIES[r % QUERIES.len()].to_string(), docs)
        })
        .collect()
}

struct Batch {
    inputs: Vec<(String, Tensor<i64>)>,
    pairs: usize,
}

fn bare_batches(
    ranker: &StudentRanker,
    manifest: &Manifest,
    mix: &[(String, Vec<String>)],
    max_batch: usize,
) -> (Vec<Batch>, f64) {
    let mut batches = Vec::new();
    let mut tokens = 0usize;
    let mut pairs_total = 0usize;
    for (query, docs) in mix {
        let q = ranker.prepare_query(query, usize::MAX).unwrap();
        let mut pairs: Vec<PreparedPair> = docs
            .iter()
            .enumerate()
            .map(|(i, d)| {
                ranker
                    .prepare_pair(&q, d, i, &Truncation::default())
                    .unwrap()
            })
            .collect();
        tokens += pairs.iter().map(|p| p.len()).sum::<usize>();
        pairs_total += pairs.len();
        pairs.sort_by_key(|p| p.len());
        for chunk in pairs.chunks(max_batch) {
            let width = chunk.iter().map(|p| p.len()).max().unwrap();
            let rows = chunk.len();
            let mut ids = vec![0i64; rows * width];
            let mut mask = vec![0i64; rows * width];
            let mut types = vec![0i64; rows * width];
            for (r, p) in chunk.iter().enumerate() {
                ids[r * width..r * width + p.len()].copy_from_slice(&p.input_ids);
                types[r * width..r * width + p.len()].copy_from_slice(&p.type_ids);
                mask[r * width..r * width + p.len()].fill(1);
            }
            let shape = vec![rows as i64, width as i64];
            let mut inputs = vec![
                (
                    manifest.inputs.input_ids.clone(),
                    Tensor::from_array((shape.clone(), ids)).unwrap(),
                ),
                (
                    manifest.inputs.attention_mask.clone(),
                    Tensor::from_array((shape.clone(), mask)).unwrap(),
                ),
            ];
            if let Some(name) = &manifest.inputs.token_type_ids {
                inputs.push((name.clone(), Tensor::from_array((shape, types)).unwrap()));
            }
            batches.push(Batch {
                inputs,
                pairs: rows,
            });
        }
    }
    (batches, tokens as f64 / pairs_total as f64)
}

fn bare_throughput(sessions: &mut [Session], batches: &[Batch], seconds: u64) -> f64 {
    // One thread per session, each cycling through the batches.
    let stop = Arc::new(AtomicBool::new(false));
    let pairs = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    std::thread::scope(|scope| {
        for (k, session) in sessions.iter_mut().enumerate() {
            let stop = stop.clone();
            let pairs = pairs.clone();
            scope.spawn(move || {
                let mut i = k;
                while !stop.load(Ordering::Relaxed) {
                    let batch = &batches[i % batches.len()];
                    let inputs: Vec<(String, ort::session::SessionInputValue)> = batch
                        .inputs
                        .iter()
                        .map(|(n, t)| (n.clone(), t.view().into()))
                        .collect();
                    let outputs = session.run(inputs).unwrap();
                    drop(outputs);
                    pairs.fetch_add(batch.pairs as u64, Ordering::Relaxed);
                    i += 1;
                }
            });
        }
        std::thread::sleep(Duration::from_secs(seconds));
        stop.store(true, Ordering::Relaxed);
    });
    pairs.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn saturation(
    url: &str,
    bodies: &[String],
    concurrency: usize,
    seconds: u64,
    documents: usize,
) -> (f64, f64, usize) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|c| {
            let client = client.clone();
            let url = url.to_string();
            let bodies = bodies.to_vec();
            tokio::spawn(async move {
                let (mut ok, mut failed, mut i) = (0usize, 0usize, c);
                while Instant::now() < deadline {
                    let response = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(bodies[i % bodies.len()].clone())
                        .send()
                        .await;
                    match response {
                        Ok(r) if r.status() == 200 => {
                            let _ = r.bytes().await;
                            ok += 1
                        }
                        _ => failed += 1,
                    }
                    i += concurrency;
                }
                (ok, failed)
            })
        })
        .collect();
    let (mut ok, mut failed) = (0, 0);
    for t in tasks {
        let (o, f) = t.await.unwrap();
        ok += o;
        failed += f;
    }
    let elapsed = started.elapsed().as_secs_f64();
    (
        ok as f64 * documents as f64 / elapsed,
        ok as f64 / elapsed,
        failed,
    )
}

async fn latency_at(url: &str, bodies: &[String], rate: f64, seconds: u64) -> (Vec<f64>, usize) {
    let client = reqwest::Client::new();
    let interval = Duration::from_secs_f64(1.0 / rate);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let total = (rate * seconds as f64).ceil() as usize;
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        ticker.tick().await;
        let client = client.clone();
        let url = url.to_string();
        let body = bodies[i % bodies.len()].clone();
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            let ok = match client
                .post(&url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
            {
                Ok(r) => r.status() == 200 && r.bytes().await.is_ok(),
                Err(_) => false,
            };
            (started.elapsed().as_secs_f64() * 1000.0, ok)
        }));
    }
    let mut latencies = Vec::new();
    let mut failed = 0;
    for t in tasks {
        let (ms, ok) = t.await.unwrap();
        if ok {
            latencies.push(ms);
        } else {
            failed += 1;
        }
    }
    latencies.sort_by(f64::total_cmp);
    (latencies, failed)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let intra = if args.intra_threads == 0 {
        (cores / args.sessions).max(1)
    } else {
        args.intra_threads
    };
    rradistill::runtime::init(&args.ort_dylib_path)?;
    let manifest = Manifest::load(&args.model_dir)?;
    let ranker = StudentRanker::load(
        &args.model_dir,
        &SessionOptions {
            sessions: 1,
            intra_threads: 1,
            ..SessionOptions::default()
        },
    )?;
    let mix = request_mix(args.requests, args.documents);
    let (batches, mean_tokens) = bare_batches(&ranker, &manifest, &mix, args.max_batch_size);
    drop(ranker);
    println!(
        "model {} ({}), {} requests x {} documents, mean {:.0} tokens per pair, {} sessions x {} intra-op threads, batches of <= {}",
        manifest.name, manifest.version, args.requests, args.documents, mean_tokens, args.sessions, intra, args.max_batch_size
    );

    let env = rradistill::runtime::environment()?;
    let mut sessions: Vec<Session> = (0..args.sessions)
        .map(|_| {
            Session::builder(env)
                .and_then(|b| Ok(b.with_optimization_level(GraphOptimizationLevel::All)?))
                .and_then(|b| Ok(b.with_intra_threads(intra)?))
                .and_then(|b| Ok(b.with_inter_threads(1)?))
                .and_then(|mut b| b.commit_from_file(args.model_dir.join("model.onnx")))
                .map_err(|e| anyhow::anyhow!("{e}"))
        })
        .collect::<anyhow::Result<_>>()?;
    bare_throughput(&mut sessions, &batches, 2); // warm-up
    let bare_before = bare_throughput(&mut sessions, &batches, args.seconds);
    println!("bare ONNX Runtime (before): {bare_before:.1} pairs/s");

    let mut child = std::process::Command::new(&args.service_bin)
        .args([
            "--model-dir",
            args.model_dir.to_str().unwrap(),
            "--ort-dylib-path",
            args.ort_dylib_path.to_str().unwrap(),
        ])
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &args.port.to_string(),
            "--cache-capacity",
            "0",
        ])
        .args(["--grpc-port", &(args.port + 1).to_string()])
        .args([
            "--sessions",
            &args.sessions.to_string(),
            "--intra-threads",
            &intra.to_string(),
        ])
        .args([
            "--max-batch-size",
            &args.max_batch_size.to_string(),
            "--max-queue-tokens",
            "10000000",
        ])
        .env("RUST_LOG", "warn")
        .spawn()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let url = format!("http://127.0.0.1:{}/v1/rerank", args.port);
    let bodies: Vec<String> = mix
        .iter()
        .map(|(q, d)| json!({"query": q, "documents": d}).to_string())
        .collect();
    let result = runtime.block_on(async {
        let client = reqwest::Client::new();
        let ready = format!("http://127.0.0.1:{}/ready", args.port);
        let deadline = Instant::now() + Duration::from_secs(120);
        while client.get(&ready).send().await.map(|r| r.status() != 200).unwrap_or(true) {
            anyhow::ensure!(Instant::now() < deadline, "the service did not become ready");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        saturation(&url, &bodies, args.concurrency, 3, args.documents).await; // warm-up
        let (pairs_per_sec, requests_per_sec, failed) =
            saturation(&url, &bodies, args.concurrency, args.seconds, args.documents).await;
        println!(
            "service saturation ({} clients): {pairs_per_sec:.1} pairs/s ({requests_per_sec:.2} requests/s, {failed} failed)",
            args.concurrency
        );
        let rate = requests_per_sec * 0.5;
        let (latencies, failed_open) = latency_at(&url, &bodies, rate, args.seconds).await;
        println!(
            "service at 50% of saturation ({rate:.2} requests/s, {} requests, {failed_open} failed): p50 {:.0} ms, p95 {:.0} ms, p99 {:.0} ms",
            latencies.len(),
            percentile(&latencies, 0.50),
            percentile(&latencies, 0.95),
            percentile(&latencies, 0.99)
        );
        anyhow::Ok(pairs_per_sec)
    });
    let _ = child.kill();
    let _ = child.wait();
    let service = result?;

    let bare_after = bare_throughput(&mut sessions, &batches, args.seconds);
    println!("bare ONNX Runtime (after): {bare_after:.1} pairs/s");
    let bare = (bare_before + bare_after) / 2.0;
    println!("RATIO service / bare runtime = {:.3}  (bare {bare:.1} pairs/s, service {service:.1} pairs/s)", service / bare);
    Ok(())
}
