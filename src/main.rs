//! The `rradistill` binary: parse flags, set up logs and traces, serve until told to stop.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use rradistill::config::Config;
use rradistill::telemetry::Telemetry;

fn main() -> ExitCode {
    let config = Config::parse();
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
    // Inside the runtime: the OTLP exporter's gRPC channel is spawned on it.
    let telemetry =
        match runtime.block_on(async { Telemetry::init(config.log_format, &config.otlp()) }) {
            Ok(telemetry) => telemetry,
            Err(error) => {
                let _ = writeln!(std::io::stderr(), "rradistill: {error:#}");
                return ExitCode::FAILURE;
            }
        };
    let outcome = runtime.block_on(rradistill::server::run(config));
    // The runtime is still up, so the exporter can send what is queued.
    telemetry.shutdown();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            let _ = writeln!(std::io::stderr(), "rradistill: {error:#}");
            ExitCode::FAILURE
        }
    }
}
