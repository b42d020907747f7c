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
//! 5. With `--second-model-dir`: the second model's bare runtime, then one service process
//!    serving both models, each driven by half the clients at once; each model's pairs per
//!    second as a share of its bare throughput (shares summing to 1.0: serving two models
//!    together costs nothing over time-sharing the machine).
//!
//! Works for encoder, late and decoder students alike (the manifest decides; a late model's
//! bare batches are laid out as the service lays them out, each distinct query once).
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
use rradistill::model::towers;
use rradistill::model::{Manifest, ModelKind, PreparedPair, Ranker, Truncation};
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
    /// A second model folder: also measure both models served at once by one process.
    #[arg(long)]
    second_model_dir: Option<PathBuf>,
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
            if manifest.kind == ModelKind::Late {
                batches.push(tower_batch(manifest, chunk));
                continue;
            }
            let width = chunk.iter().map(|p| p.len()).max().unwrap();
            let rows = chunk.len();
            let mut ids = vec![0i64; rows * width];
            let mut mask = vec![0i64; rows * width];
            let mut types = vec![0i64; rows * width];
            for (r, p) in chunk.iter().enumerate() {
                ids[r * width..r * width + p.len()].copy_from_slice(&p.input_ids);
                if p.type_ids.len() == p.len() {
                    types[r * width..r * width + p.len()].copy_from_slice(&p.type_ids);
                }
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

/// A late model's batch as the service lays it out (`towers::layout`): each distinct query
/// once, the documents, and each pair's query row.
fn tower_batch(manifest: &Manifest, chunk: &[PreparedPair]) -> Batch {
    let refs: Vec<&PreparedPair> = chunk.iter().collect();
    let t = towers::layout(&refs, manifest.pad_token_id.unwrap_or(0)).unwrap();
    let names = &manifest.inputs;
    let role = |name: &Option<String>| {
        name.clone()
            .expect("Manifest::load checks a late model's inputs")
    };
    let queries = vec![t.queries as i64, t.query_width as i64];
    let documents = vec![t.pairs as i64, t.document_width as i64];
    Batch {
        inputs: vec![
            (
                role(&names.query_ids),
                Tensor::from_array((queries.clone(), t.query_ids)).unwrap(),
            ),
            (
                role(&names.query_mask),
                Tensor::from_array((queries, t.query_mask)).unwrap(),
            ),
            (
                names.input_ids.clone(),
                Tensor::from_array((documents.clone(), t.input_ids)).unwrap(),
            ),
            (
                names.attention_mask.clone(),
                Tensor::from_array((documents, t.attention_mask)).unwrap(),
            ),
            (
                role(&names.query_index),
                Tensor::from_array((vec![t.pairs as i64], t.query_index)).unwrap(),
            ),
        ],
        pairs: t.pairs,
    }
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

/// One model's bare-runtime side: its sessions and its pre-built batches of the request mix.
struct Bare {
    name: String,
    sessions: Vec<Session>,
    batches: Vec<Batch>,
    mean_tokens: f64,
}

fn prepare_bare(
    dir: &std::path::Path,
    args: &Args,
    intra: usize,
    mix: &[(String, Vec<String>)],
) -> anyhow::Result<Bare> {
    let manifest = Manifest::load(dir)?;
    let ranker = StudentRanker::load(
        dir,
        &SessionOptions {
            sessions: 1,
            intra_threads: 1,
            ..SessionOptions::default()
        },
    )?;
    let (batches, mean_tokens) = bare_batches(&ranker, &manifest, mix, args.max_batch_size);
    drop(ranker);
    let env = rradistill::runtime::environment()?;
    let sessions: Vec<Session> = (0..args.sessions)
        .map(|_| {
            Session::builder(env)
                .and_then(|b| Ok(b.with_optimization_level(GraphOptimizationLevel::All)?))
                .and_then(|b| Ok(b.with_intra_threads(intra)?))
                .and_then(|b| Ok(b.with_inter_threads(1)?))
                .and_then(|mut b| b.commit_from_file(dir.join("model.onnx")))
                .map_err(|e| anyhow::anyhow!("{e}"))
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(Bare {
        name: manifest.name,
        sessions,
        batches,
        mean_tokens,
    })
}

/// The service binary on `args.port`, serving `models` (`--model-dir DIR` or `--models-file F`).
fn spawn_service(
    args: &Args,
    intra: usize,
    models: &[&str],
) -> anyhow::Result<std::process::Child> {
    Ok(std::process::Command::new(&args.service_bin)
        .args(models)
        .args(["--ort-dylib-path", args.ort_dylib_path.to_str().unwrap()])
        .args(["--host", "127.0.0.1", "--port", &args.port.to_string()])
        .args(["--cache-capacity", "0"])
        .args(["--grpc-port", &(args.port + 1).to_string()])
        .args(["--sessions", &args.sessions.to_string()])
        .args(["--intra-threads", &intra.to_string()])
        .args(["--max-batch-size", &args.max_batch_size.to_string()])
        // Saturation means admitting everything: no token cap in reach, and a wait target
        // (an hour) no queue here approaches, or admission's 429s would be counted as failures.
        .args(["--max-queue-tokens", "10000000"])
        .args(["--max-queue-wait-ms", "3600000"])
        .env("RUST_LOG", "warn")
        .spawn()?)
}

async fn wait_ready(port: u16) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let ready = format!("http://127.0.0.1:{port}/ready");
    let deadline = Instant::now() + Duration::from_secs(120);
    while client
        .get(&ready)
        .send()
        .await
        .map(|r| r.status() != 200)
        .unwrap_or(true)
    {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the service did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
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
    let mix = request_mix(args.requests, args.documents);
    let mut first = prepare_bare(&args.model_dir, &args, intra, &mix)?;
    println!(
        "model {}, {} requests x {} documents, mean {:.0} tokens per pair, {} sessions x {} intra-op threads, batches of <= {}",
        first.name, args.requests, args.documents, first.mean_tokens, args.sessions, intra, args.max_batch_size
    );
    bare_throughput(&mut first.sessions, &first.batches, 2); // warm-up
    let bare_before = bare_throughput(&mut first.sessions, &first.batches, args.seconds);
    println!("bare ONNX Runtime (before): {bare_before:.1} pairs/s");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let url = format!("http://127.0.0.1:{}/v1/rerank", args.port);
    let bodies = |model: Option<&str>| -> Vec<String> {
        mix.iter()
            .map(|(q, d)| match model {
                Some(m) => json!({"model": m, "query": q, "documents": d}).to_string(),
                None => json!({"query": q, "documents": d}).to_string(),
            })
            .collect()
    };
    let mut child = spawn_service(
        &args,
        intra,
        &["--model-dir", args.model_dir.to_str().unwrap()],
    )?;
    let single = bodies(None);
    let result = runtime.block_on(async {
        wait_ready(args.port).await?;
        saturation(&url, &single, args.concurrency, 3, args.documents).await; // warm-up
        let (pairs_per_sec, requests_per_sec, failed) =
            saturation(&url, &single, args.concurrency, args.seconds, args.documents).await;
        println!(
            "service saturation ({} clients): {pairs_per_sec:.1} pairs/s ({requests_per_sec:.2} requests/s, {failed} failed)",
            args.concurrency
        );
        let rate = requests_per_sec * 0.5;
        let (latencies, failed_open) = latency_at(&url, &single, rate, args.seconds).await;
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

    let bare_after = bare_throughput(&mut first.sessions, &first.batches, args.seconds);
    println!("bare ONNX Runtime (after): {bare_after:.1} pairs/s");
    let bare = (bare_before + bare_after) / 2.0;
    println!("RATIO service / bare runtime = {:.3}  (bare {bare:.1} pairs/s, service {service:.1} pairs/s)", service / bare);

    let Some(second_dir) = &args.second_model_dir else {
        return Ok(());
    };
    // Two models in one service, driven at once (half the clients each), against each model's
    // bare runtime alone: the shares add up to 1.0 when serving both costs nothing extra.
    let mut second = prepare_bare(second_dir, &args, intra, &mix)?;
    bare_throughput(&mut second.sessions, &second.batches, 2); // warm-up
    let second_bare_before = bare_throughput(&mut second.sessions, &second.batches, args.seconds);
    println!(
        "bare ONNX Runtime, {} (before): {second_bare_before:.1} pairs/s",
        second.name
    );
    drop(first.sessions);
    let dir = std::path::Path::new("target/bench");
    std::fs::create_dir_all(dir)?;
    let file = dir.join("two-models.toml");
    let absolute = |p: &std::path::Path| std::fs::canonicalize(p).map(|p| p.display().to_string());
    std::fs::write(
        &file,
        format!(
            "[[model]]\nname = \"first\"\npath = \"{}\"\n[[model]]\nname = \"second\"\npath = \"{}\"\n",
            absolute(&args.model_dir)?,
            absolute(second_dir)?
        ),
    )?;
    let mut child = spawn_service(&args, intra, &["--models-file", file.to_str().unwrap()])?;
    let (first_bodies, second_bodies) = (bodies(Some("first")), bodies(Some("second")));
    let half = (args.concurrency / 2).max(1);
    let result = runtime.block_on(async {
        wait_ready(args.port).await?;
        tokio::join!(
            saturation(&url, &first_bodies, half, 3, args.documents),
            saturation(&url, &second_bodies, half, 3, args.documents)
        ); // warm-up
        let (a, b) = tokio::join!(
            saturation(&url, &first_bodies, half, args.seconds, args.documents),
            saturation(&url, &second_bodies, half, args.seconds, args.documents)
        );
        anyhow::Ok((a, b))
    });
    let _ = child.kill();
    let _ = child.wait();
    let ((a_pairs, _, a_failed), (b_pairs, _, b_failed)) = result?;
    let second_bare_after = bare_throughput(&mut second.sessions, &second.batches, args.seconds);
    println!(
        "bare ONNX Runtime, {} (after): {second_bare_after:.1} pairs/s",
        second.name
    );
    let second_bare = (second_bare_before + second_bare_after) / 2.0;
    println!(
        "two models at once ({half} clients each): {} {a_pairs:.1} pairs/s ({a_failed} failed), {} {b_pairs:.1} pairs/s ({b_failed} failed)",
        first.name, second.name
    );
    println!(
        "SHARES of each model's bare throughput: {:.3} + {:.3} = {:.3}",
        a_pairs / bare,
        b_pairs / second_bare,
        a_pairs / bare + b_pairs / second_bare
    );
    Ok(())
}
