//! Exporters: where a pipeline's output goes — `otlp` and `otlphttp` (an OpenTelemetry backend or
//! Collector), `prometheusremotewrite` (a Prometheus remote-write endpoint), `prometheus` (an exposition
//! endpoint), `file` (JSON lines), `debug`/`logging` (the agent's log) or `count` (measured only, sent
//! nowhere).

mod debug;
pub mod delivery;
mod file;
pub mod otlp;
mod prometheus;
pub mod remote_write;

use std::net::SocketAddr;

use serde::Deserialize;

use super::model::Point;
use super::processors::parse;
use super::Problem;

pub use file::FileExporter;
pub use otlp::{OtlpExporter, OtlpExporterConfig};
pub use prometheus::{exposition, PrometheusExporter};
pub use remote_write::{RemoteWriteConfig, RemoteWriteExporter};

/// The exporter types a config may name.
pub const KINDS: [&str; 8] =
    ["otlp", "otlphttp", "prometheusremotewrite", "prometheus", "file", "count", "debug", "logging"];

/// Receives each interval's output.
pub trait Exporter: Send {
    fn export(&mut self, batch: &[Point]) -> Result<(), String>;

    /// What could not be delivered since the previous call (an exporter that delivers in the
    /// background counts there: dropped samples, points its format cannot represent).
    fn take_undelivered(&mut self) -> u64 {
        0
    }

    /// What an exporter that delivers in the background counts, and its queue's depth (requests).
    fn delivery(&self) -> Option<(&delivery::DeliveryCounters, usize)> {
        None
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusConfig {
    /// `host:port` to serve `GET /metrics` on; loopback unless configured otherwise, since the
    /// output describes the host's processes.
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
}

/// Where a `prometheus` exporter listens when its config does not say.
pub const DEFAULT_PROMETHEUS_ENDPOINT: &str = "127.0.0.1:9464";

fn default_endpoint() -> String {
    DEFAULT_PROMETHEUS_ENDPOINT.to_owned()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Name of the file the JSON lines are appended to, inside the agent's export directory (a plain
    /// file name: a config must not be able to make every agent write anywhere on its host).
    pub path: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountConfig {}

/// `count`: exports nothing; the pipeline's own measurement is the point.
pub struct CountExporter;

impl Exporter for CountExporter {
    fn export(&mut self, _: &[Point]) -> Result<(), String> {
        Ok(())
    }
}

/// The problems of an exporter section, without opening ports or files.
pub fn check(kind: &str, config: &serde_yaml_ng::Value, path: &str) -> Vec<Problem> {
    let result = match kind {
        "prometheus" => parse::<PrometheusConfig>(config, path).and_then(|c| {
            c.endpoint.parse::<SocketAddr>().map(|_| ()).map_err(|_| {
                vec![Problem::new(
                    &format!("{path}.endpoint"),
                    format!("'{}' is not an address like {DEFAULT_PROMETHEUS_ENDPOINT}", c.endpoint),
                )]
            })
        }),
        "file" => parse::<FileConfig>(config, path).and_then(|c| {
            let plain = !c.path.is_empty() && !c.path.contains('/') && c.path != "." && c.path != "..";
            if plain {
                Ok(())
            } else {
                Err(vec![Problem::new(
                    &format!("{path}.path"),
                    "must be a plain file name (it is written in the agent's export directory)",
                )])
            }
        }),
        "count" => parse::<CountConfig>(config, path).map(|_| ()),
        "debug" | "logging" => parse::<debug::DebugConfig>(config, path).map(|_| ()),
        "prometheusremotewrite" => parse::<RemoteWriteConfig>(config, path).and_then(|c| none_or(c.check(path))),
        "otlp" | "otlphttp" => {
            parse::<OtlpExporterConfig>(config, path).and_then(|c| none_or(c.check(otlp_protocol(kind), path)))
        }
        other => {
            Err(vec![Problem::new(path, format!("unknown exporter type '{other}' (known: {})", KINDS.join(", ")))])
        }
    };
    result.err().unwrap_or_default()
}

/// Warnings about an exporter section that is valid: settings accepted for Collector configs but not used.
pub fn warnings(kind: &str, config: &serde_yaml_ng::Value, path: &str) -> Vec<Problem> {
    match kind {
        "debug" | "logging" => {
            parse::<debug::DebugConfig>(config, path).map(|c| debug::warnings(&c, path)).unwrap_or_default()
        }
        _ => Vec::new(),
    }
}

fn none_or(problems: Vec<Problem>) -> Result<(), Vec<Problem>> {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

fn otlp_protocol(kind: &str) -> otlp::Protocol {
    if kind == "otlp" {
        otlp::Protocol::Grpc
    } else {
        otlp::Protocol::Http
    }
}

/// Builds an exporter; `prometheus` binds its port (inside a tokio runtime), `file` opens its file in
/// `export_dir`.
pub fn build(
    kind: &str,
    config: &serde_yaml_ng::Value,
    path: &str,
    export_dir: &std::path::Path,
) -> Result<Box<dyn Exporter>, Vec<Problem>> {
    let problems = check(kind, config, path);
    if !problems.is_empty() {
        return Err(problems);
    }
    let failed = |e: String| vec![Problem::new(path, e)];
    match kind {
        "prometheus" => {
            let config: PrometheusConfig = parse(config, path)?;
            PrometheusExporter::bind(&config.endpoint).map(|e| Box::new(e) as Box<dyn Exporter>).map_err(failed)
        }
        "file" => {
            let config: FileConfig = parse(config, path)?;
            std::fs::create_dir_all(export_dir)
                .map_err(|e| failed(format!("cannot create {}: {e}", export_dir.display())))?;
            FileExporter::open(&export_dir.join(&config.path)).map(|e| Box::new(e) as Box<dyn Exporter>).map_err(failed)
        }
        "prometheusremotewrite" => {
            let config: RemoteWriteConfig = parse(config, path)?;
            RemoteWriteExporter::start(config).map(|e| Box::new(e) as Box<dyn Exporter>).map_err(failed)
        }
        "debug" | "logging" => {
            let id = path.strip_prefix("exporters.").unwrap_or(path);
            Ok(Box::new(debug::DebugExporter::new(parse(config, path)?, id)))
        }
        "otlp" | "otlphttp" => {
            let config: OtlpExporterConfig = parse(config, path)?;
            OtlpExporter::start(config, otlp_protocol(kind)).map(|e| Box::new(e) as Box<dyn Exporter>).map_err(failed)
        }
        _ => Ok(Box::new(CountExporter)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_config(path: &str) -> serde_yaml_ng::Value {
        serde_yaml_ng::from_str(&format!("path: {path:?}")).unwrap()
    }

    #[test]
    fn file_path_must_stay_inside_the_export_directory() {
        for escaping in ["/etc/cron.d/evil", "../outside.jsonl", "sub/dir.jsonl", "..", ".", ""] {
            let problems = check("file", &file_config(escaping), "exporters.file");
            assert_eq!(problems.len(), 1, "{escaping:?} must be rejected");
            assert_eq!(problems[0].path, "exporters.file.path");
        }
        assert!(check("file", &file_config("metrics.jsonl"), "exporters.file").is_empty());
    }

    #[test]
    fn file_exporter_writes_into_the_export_directory() {
        let dir = std::env::temp_dir().join(format!("phoenix-export-{}", std::process::id()));
        let exporter = build("file", &file_config("out.jsonl"), "exporters.file", &dir);
        assert!(exporter.is_ok());
        assert!(dir.join("out.jsonl").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
