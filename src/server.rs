//! Start-up and shutdown.
//!
//! Start-up loads ONNX Runtime, then the models (validated and warmed up), and only then
//! binds the HTTP and gRPC ports, so a process that listens is a process that can serve; any failure on
//! the way is an error naming what to fix and a non-zero exit. Shutdown on SIGTERM/SIGINT:
//! `/ready` turns 503 and new re-rank requests are refused, connections stop being accepted,
//! requests already accepted finish (bounded by the drain timeout), the batchers drain, and
//! the process exits 0.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::{self, AppState};
use crate::cache::ScoreCache;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::rerank::RerankService;
use crate::runtime;
use crate::serving::registry::Registry;
use crate::serving::reload::Models;

/// Loads the runtime and the models and builds the serving core. Blocking (seconds).
pub fn build_service(config: &Config) -> Result<Arc<RerankService>> {
    config
        .validate()
        .map_err(|e| anyhow!("invalid configuration: {e}"))?;
    runtime::init(&config.ort_dylib_path)?;
    let metrics = Metrics::new();
    let source = config.model_source();
    let defaults = config.model_defaults();
    let catalog = source.catalog()?;
    let (registry, _) = Registry::load(&catalog, &defaults, &metrics, None)?;
    let cache = ScoreCache::new(
        config.cache_capacity,
        std::time::Duration::from_secs(config.cache_ttl_secs),
    );
    let models = Models::reloadable(registry, metrics.clone(), source, defaults);
    Ok(Arc::new(RerankService::new(
        models,
        cache,
        metrics,
        config.limits(),
    )))
}

/// A server running in this process (used by `main` and by the integration tests).
pub struct RunningServer {
    /// The HTTP address.
    pub addr: SocketAddr,
    pub grpc_addr: SocketAddr,
    pub service: Arc<RerankService>,
    stop: watch::Sender<bool>,
    drain: std::time::Duration,
    task: JoinHandle<Result<()>>,
    grpc_task: JoinHandle<Result<()>>,
}

impl RunningServer {
    /// Begins a graceful shutdown and waits for it to finish.
    pub async fn shutdown(self) -> Result<()> {
        let _ = self.stop.send(true);
        // The HTTP side bounds its own drain; gRPC calls get the same time.
        let http = self
            .task
            .await
            .map_err(|e| anyhow!("server task failed: {e}"))?;
        let grpc = match tokio::time::timeout(self.drain, self.grpc_task).await {
            Ok(joined) => joined.map_err(|e| anyhow!("gRPC server task failed: {e}"))?,
            Err(_) => {
                tracing::warn!("gRPC calls still open after the drain timeout; exiting anyway");
                Ok(())
            }
        };
        http.and(grpc)
    }
}

/// Binds the HTTP and gRPC ports on `config.host` (port 0 picks a free one) and serves
/// `service` on both until [`RunningServer::shutdown`].
pub async fn start(config: &Config, service: Arc<RerankService>) -> Result<RunningServer> {
    let listener = TcpListener::bind((config.host.as_str(), config.port))
        .await
        .with_context(|| format!("cannot listen on {}:{} (HTTP)", config.host, config.port))?;
    let grpc_listener = TcpListener::bind((config.host.as_str(), config.grpc_port))
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}:{} (gRPC)",
                config.host, config.grpc_port
            )
        })?;
    let addr = listener.local_addr()?;
    let grpc_addr = grpc_listener.local_addr()?;
    let (stop, stopped) = watch::channel(false);
    let drain = config.drain_timeout();
    let keys = config.api_keys();
    let state = AppState::new(service.clone(), keys.clone());
    let grpc_task = tokio::spawn(serve_grpc(
        grpc_listener,
        service.clone(),
        keys,
        stopped.clone(),
    ));
    let task = tokio::spawn(serve(listener, state, stopped, drain));
    Ok(RunningServer {
        addr,
        grpc_addr,
        service,
        stop,
        drain,
        task,
        grpc_task,
    })
}

async fn serve_grpc(
    listener: TcpListener,
    service: Arc<RerankService>,
    keys: crate::auth::ApiKeys,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    use crate::grpc::pb::rerank_server::RerankServer;
    use crate::grpc::tei::{self, GrpcTei};
    use crate::grpc::{pb, GrpcRerank};
    type TeiRerank = tei::pb::rerank_server::RerankServer<GrpcTei>;
    type TeiInfo = tei::pb::info_server::InfoServer<GrpcTei>;

    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<RerankServer<GrpcRerank>>().await;
    health.set_serving::<TeiRerank>().await;
    health.set_serving::<TeiInfo>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("gRPC reflection")?;
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .context("gRPC reflection")?;
    // Health turns NOT_SERVING the moment draining begins, while calls are still answered
    // (re-rank ones with UNAVAILABLE), so balancers move away before the port closes.
    let draining = service.clone();
    let health_task = tokio::spawn(async move {
        draining.draining().await;
        health.set_not_serving::<RerankServer<GrpcRerank>>().await;
        health.set_not_serving::<TeiRerank>().await;
        health
            .set_service_status("", tonic_health::ServingStatus::NotServing)
            .await;
    });
    let stopping = service.clone();
    let shutdown = async move {
        let _ = stop.wait_for(|stop| *stop).await;
        stopping.stop_accepting();
        let _ = health_task.await;
    };
    // Health checking stays open, like /health; the rest needs a key when keys are set.
    let check = crate::grpc::require_key(Arc::new(keys));
    use tonic::service::interceptor::InterceptedService;
    tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(InterceptedService::new(reflection, check.clone()))
        .add_service(InterceptedService::new(reflection_alpha, check.clone()))
        .add_service(RerankServer::with_interceptor(
            GrpcRerank {
                service: service.clone(),
            },
            check.clone(),
        ))
        .add_service(TeiRerank::with_interceptor(
            GrpcTei {
                service: service.clone(),
            },
            check.clone(),
        ))
        .add_service(TeiInfo::with_interceptor(GrpcTei { service }, check))
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            shutdown,
        )
        .await
        .context("gRPC server failed")
}

async fn serve(
    listener: TcpListener,
    state: AppState,
    mut stop: watch::Receiver<bool>,
    drain: std::time::Duration,
) -> Result<()> {
    let service = state.service.clone();
    let mut signalled = stop.clone();
    let shutdown_signal = async move {
        let _ = signalled.wait_for(|stop| *stop).await;
    };
    let app = api::router(state);
    let server = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal)
        .into_future();
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => result.context("HTTP server failed")?,
        _ = async { let _ = stop.wait_for(|stop| *stop).await; } => {
            service.stop_accepting();
            tracing::info!(drain_secs = drain.as_secs(), "shutting down: finishing accepted requests");
            if tokio::time::timeout(drain, &mut server).await.is_err() {
                tracing::warn!("drain timeout passed with requests still open; exiting anyway");
            }
        }
    }
    service.stop_accepting();
    let drained = service.clone();
    tokio::task::spawn_blocking(move || drained.registry().shutdown())
        .await
        .ok();
    tracing::info!("shut down");
    Ok(())
}

/// What `main` runs: build, serve, stop on SIGTERM/SIGINT.
pub async fn run(config: Config) -> Result<()> {
    let build_config = config.clone();
    let service = tokio::task::spawn_blocking(move || build_service(&build_config))
        .await
        .map_err(|e| anyhow!("start-up task failed: {e}"))??;
    for model in service.registry().models() {
        let d = &model.descriptor;
        tracing::info!(model = %d.name, version = %d.version, provider = %d.execution_provider,
            sessions = d.sessions, intra_threads = d.intra_threads, "model loaded and warm");
    }
    let server = start(&config, service).await?;
    tracing::info!(http = %server.addr, grpc = %server.grpc_addr, "ready");
    let reloader = tokio::spawn(reload_on_sighup(server.service.clone()));
    shutdown_signal().await;
    reloader.abort();
    server.shutdown().await
}

/// SIGHUP reloads the models, as `POST /admin/reload` does.
async fn reload_on_sighup(service: Arc<RerankService>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(hangups) => hangups,
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGHUP; reload with POST /admin/reload");
                return;
            }
        };
        while hangups.recv().await.is_some() {
            tracing::info!("SIGHUP received: reloading the models");
            match service.reload().await {
                Ok(report) => tracing::info!(kept = ?report.kept, loaded = ?report.loaded,
                    removed = ?report.removed, "models reloaded"),
                Err(error) => {
                    tracing::error!(
                        error = format!("{error:#}"),
                        "reload failed; the previous models keep serving"
                    )
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = service;
}

async fn shutdown_signal() {
    {
        let ctrl_c = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        #[cfg(unix)]
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(error) => {
                    tracing::error!(%error, "cannot listen for SIGTERM");
                    std::future::pending::<()>().await
                }
            }
        };
        #[cfg(not(unix))]
        let terminate = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => tracing::info!("SIGINT received"),
            _ = terminate => tracing::info!("SIGTERM received"),
        }
    }
}
