//! `phoenix loadgen`: sends generated metrics to a receiver (an agent's `otlp` or
//! `prometheus_remote_write`, a Collector, a Prometheus) and prints what it sent, so an experiment or a
//! benchmark has traffic whose size is known.

use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use phoenix_pipeline::loadgen::{self, LoadSpec, Target};

use super::error::CliError;

#[derive(Debug, Subcommand)]
pub enum LoadgenCommand {
    /// OTLP over gRPC (default http://127.0.0.1:4317) or HTTP (http://127.0.0.1:4318).
    #[command(
        after_help = "Example:\n  phoenix loadgen otlp --metrics 10 --labels 2 --values 100 --rate 50000 --duration 60"
    )]
    Otlp {
        #[arg(long, value_enum, default_value_t = OtlpProtocol::Grpc)]
        protocol: OtlpProtocol,
        /// Where to send (default: the agent's local OTLP port for the protocol).
        #[arg(long)]
        endpoint: Option<String>,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Prometheus remote write 1.0 (default http://127.0.0.1:19291/api/v1/write).
    #[command(
        after_help = "Example:\n  phoenix loadgen remote-write --endpoint http://127.0.0.1:19291/api/v1/write --rate 10000"
    )]
    RemoteWrite {
        #[arg(long, default_value = "http://127.0.0.1:19291/api/v1/write")]
        endpoint: String,
        #[command(flatten)]
        load: LoadArgs,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OtlpProtocol {
    Grpc,
    Http,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Counters to send.
    #[arg(long, default_value_t = 10)]
    metrics: usize,
    /// Labels per series (l0, l1, …).
    #[arg(long, default_value_t = 2)]
    labels: u32,
    /// Distinct values per label: each metric has values^labels series.
    #[arg(long, default_value_t = 10)]
    values: usize,
    /// Points per second in all (0: as fast as the receiver takes them).
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// Seconds to send for.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Points per request.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// The resource's service.name (Prometheus's job).
    #[arg(long, default_value = "phoenix-loadgen")]
    service: String,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

pub async fn run(command: LoadgenCommand) -> Result<(), CliError> {
    let (target, load) = match command {
        LoadgenCommand::Otlp { protocol: OtlpProtocol::Grpc, endpoint, load } => {
            (Target::OtlpGrpc(endpoint.unwrap_or_else(|| "http://127.0.0.1:4317".into())), load)
        }
        LoadgenCommand::Otlp { protocol: OtlpProtocol::Http, endpoint, load } => {
            (Target::OtlpHttp(endpoint.unwrap_or_else(|| "http://127.0.0.1:4318".into())), load)
        }
        LoadgenCommand::RemoteWrite { endpoint, load } => (Target::RemoteWrite(endpoint), load),
    };
    let spec = LoadSpec {
        metrics: load.metrics,
        labels: load.labels,
        values: load.values,
        rate: load.rate,
        duration: Duration::from_secs(load.duration),
        batch: load.batch,
        service: load.service,
    };
    let per_metric = spec.series_per_metric().map_err(CliError::Usage)?;
    if spec.metrics == 0 || spec.batch == 0 {
        return Err(CliError::Usage("--metrics and --batch must be at least 1".into()));
    }
    if !load.json {
        eprintln!(
            "sending {} series ({} metrics x {per_metric}) to {target} for {} s …",
            spec.metrics * per_metric,
            spec.metrics,
            load.duration
        );
    }
    let sent = loadgen::run(&spec, &target).await.map_err(CliError::Invalid)?;
    if load.json {
        println!("{}", serde_json::to_string_pretty(&sent).unwrap_or_default());
    } else {
        println!(
            "sent {} points of {} series in {} requests over {:.1} s ({:.0} points/s); {} requests failed",
            sent.points,
            sent.series,
            sent.requests,
            sent.seconds,
            sent.points as f64 / sent.seconds.max(1e-9),
            sent.failed_requests
        );
        if let Some(error) = &sent.first_error {
            println!("first failure: {error}");
        }
    }
    if sent.points == 0 && sent.failed_requests > 0 {
        return Err(CliError::Server(format!(
            "nothing was taken by {target} (does a receiver listen there?): {}",
            sent.first_error.unwrap_or_default()
        )));
    }
    Ok(())
}
