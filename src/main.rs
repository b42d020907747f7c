//! The `rradistill` binary: parse flags, set up logging, serve until told to stop.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use rradistill::config::{Config, LogFormat};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let config = Config::parse();
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,ort=warn"));
    // A log that cannot be written (full disk, closed pipe) must never stop the service:
    // tracing-subscriber would otherwise report the failure with eprintln!, which panics.
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .log_internal_errors(false);
    match config.log_format {
        LogFormat::Json => subscriber.json().with_current_span(true).init(),
        LogFormat::Human => subscriber.init(),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            let _ = writeln!(
                std::io::stderr(),
                "rradistill: cannot start the async runtime: {error}"
            );
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(rradistill::server::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            let _ = writeln!(std::io::stderr(), "rradistill: {error:#}");
            ExitCode::FAILURE
        }
    }
}
