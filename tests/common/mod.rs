//! Shared by the integration tests: where the fixtures and ONNX Runtime are, and a real
//! service on a loopback port with the real runtime, tokenizer and fixture model.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use rradistill::config::Config;
use rradistill::rerank::RerankService;
use rradistill::server::{self, RunningServer};
use serde_json::Value;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixtures() -> PathBuf {
    std::env::var_os("RRADISTILL_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/fixtures"))
}

/// The encoder fixture `make fixtures` builds.
pub fn encoder_fixture() -> PathBuf {
    let dir = fixtures().join("encoder-mini");
    assert!(
        dir.join("model.onnx").is_file(),
        "{} is missing: run `make fixtures` (or `make test`)",
        dir.display()
    );
    dir
}

pub fn ort_library() -> PathBuf {
    std::env::var_os("ORT_DYLIB_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".runtime/onnxruntime/libonnxruntime.so.1.32.0"))
}

/// Flags for a test server on 127.0.0.1, any free port, plus `extra`.
pub fn config(model: &std::path::Path, extra: &[&str]) -> Config {
    let mut args: Vec<String> = vec!["rradistill".into()];
    // A models file replaces the one model folder.
    if !extra.contains(&"--models-file") {
        args.extend(["--model-dir".into(), model.display().to_string()]);
    }
    args.extend([
        "--ort-dylib-path".into(),
        ort_library().display().to_string(),
        "--host".into(),
        "127.0.0.1".into(),
        "--port".into(),
        "0".into(),
        "--grpc-port".into(),
        "0".into(),
    ]);
    args.extend(extra.iter().map(|s| s.to_string()));
    Config::try_parse_from(args).expect("valid test flags")
}

pub struct TestServer {
    pub base: String,
    pub client: reqwest::Client,
    pub server: Option<RunningServer>,
}

impl TestServer {
    pub async fn start(extra: &[&str]) -> TestServer {
        TestServer::start_with(&encoder_fixture(), extra).await
    }

    pub async fn start_with(model: &std::path::Path, extra: &[&str]) -> TestServer {
        let config = config(model, extra);
        let build = config.clone();
        let service = tokio::task::spawn_blocking(move || server::build_service(&build))
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("service failed to start: {e:#}"));
        let server = server::start(&config, service)
            .await
            .expect("bind loopback");
        TestServer {
            base: format!("http://{}", server.addr),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            server: Some(server),
        }
    }

    pub fn service(&self) -> Arc<RerankService> {
        self.server.as_ref().unwrap().service.clone()
    }

    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.server.as_ref().unwrap().grpc_addr)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, reqwest::header::HeaderMap, Value) {
        let response = self
            .client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request sent");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let value =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"));
        (status, headers, value)
    }

    pub async fn get_text(&self, path: &str) -> (u16, String) {
        let response = self
            .client
            .get(self.url(path))
            .send()
            .await
            .expect("request sent");
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// The value of an unlabelled-by-`err` metric series summed over its other labels.
    pub async fn metric(&self, name: &str) -> f64 {
        let (_, text) = self.get_text("/metrics").await;
        metric_value(&text, name)
    }

    pub async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await.unwrap();
        }
    }
}

/// Sums the samples of `name` (exact series name, any labels) in Prometheus text.
pub fn metric_value(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.starts_with(name) && matches!(l.as_bytes().get(name.len()), Some(b'{') | Some(b' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Documents of varied length built from real sentences (for batching and load tests).
pub fn documents(n: usize, seed: usize) -> Vec<String> {
    const SENTENCES: [&str; 8] = [
        "Use dpkg -i with the .deb file you copied onto the machine.",
        "The global interpreter lock lets only one thread execute Python bytecode at a time.",
        "Kernel modules accept parameters at load time; see modinfo for the options a driver accepts.",
        "Debian stable is released roughly every two years and supported for three.",
        "A tuple is an immutable sequence; a list can be changed in place.",
        "Set the locale with dpkg-reconfigure locales and log in again.",
        "The apt pinning file lets you prefer packages from one release over another.",
        "man pages are grouped into numbered sections: 1 for commands, 3 for library calls.",
    ];
    (0..n)
        .map(|i| {
            let k = (i * 7 + seed * 13) % 23 + 1;
            (0..k)
                .map(|j| SENTENCES[(i + j + seed) % SENTENCES.len()])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// Load-time placement profiles (`src/model/graph.rs`) of this process still in the temp
/// folder: every load must remove its own, whether it succeeded or not.
pub fn profiles_left_behind() -> Vec<std::ffi::OsString> {
    let ours = format!("rradistill-placement-{}-", std::process::id());
    std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .filter(|name| name.to_string_lossy().starts_with(&ours))
        .collect()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The `rradistill` binary itself, serving the encoder fixture on free loopback ports (for
/// what only a separate process shows: signals, exit status, its own stderr).
pub struct ServiceProcess {
    pub child: std::process::Child,
    pub base: String,
    /// `http://127.0.0.1:PORT` of its gRPC listener.
    pub grpc_base: String,
}

impl ServiceProcess {
    pub fn spawn(
        extra: &[&str],
        env: &[(&str, &str)],
        stdout: std::process::Stdio,
        stderr: std::process::Stdio,
    ) -> ServiceProcess {
        let port = free_port();
        let grpc_port = free_port();
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_rradistill"));
        if !extra.contains(&"--models-file") {
            command.args(["--model-dir", encoder_fixture().to_str().unwrap()]);
        }
        let child = command
            .args(["--ort-dylib-path", ort_library().to_str().unwrap()])
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--grpc-port",
                &grpc_port.to_string(),
            ])
            .args(extra)
            .envs(env.iter().copied())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap();
        ServiceProcess {
            child,
            base: format!("http://127.0.0.1:{port}"),
            grpc_base: format!("http://127.0.0.1:{grpc_port}"),
        }
    }

    /// Waits until `/ready` answers 200; fails if the process dies first.
    pub async fn wait_ready(&mut self) {
        let client = reqwest::Client::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while client
            .get(format!("{}/ready", self.base))
            .send()
            .await
            .map(|r| r.status() != 200)
            .unwrap_or(true)
        {
            assert!(
                self.child.try_wait().unwrap().is_none(),
                "the service exited before it was ready"
            );
            assert!(
                std::time::Instant::now() < deadline,
                "the service did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn terminate(&self) {
        self.signal(libc::SIGTERM);
    }

    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        let sent = unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        assert_eq!(sent, 0, "kill failed");
    }
}
