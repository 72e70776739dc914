//! Exporters: where a pipeline's output goes — `prometheus` (an exposition endpoint), `file` (JSON
//! lines) or `count` (measured only, sent nowhere).

mod file;
mod prometheus;

use std::net::SocketAddr;

use serde::Deserialize;

use super::model::Batch;
use super::processors::parse;
use super::Problem;

pub use file::FileExporter;
pub use prometheus::{exposition, PrometheusExporter};

/// The exporter types a config may name.
pub const KINDS: [&str; 3] = ["prometheus", "file", "count"];

/// Receives each interval's output.
pub trait Exporter: Send {
    fn export(&mut self, batch: &Batch) -> Result<(), String>;
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusConfig {
    /// `host:port` to serve `GET /metrics` on.
    pub endpoint: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// File the JSON lines are appended to.
    pub path: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountConfig {}

/// `count`: exports nothing; the pipeline's own measurement is the point.
pub struct CountExporter;

impl Exporter for CountExporter {
    fn export(&mut self, _: &Batch) -> Result<(), String> {
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
                    format!("'{}' is not an address like 0.0.0.0:9464", c.endpoint),
                )]
            })
        }),
        "file" => parse::<FileConfig>(config, path).and_then(|c| {
            if c.path.trim().is_empty() {
                Err(vec![Problem::new(&format!("{path}.path"), "must not be empty")])
            } else {
                Ok(())
            }
        }),
        "count" => parse::<CountConfig>(config, path).map(|_| ()),
        other => {
            Err(vec![Problem::new(path, format!("unknown exporter type '{other}' (known: {})", KINDS.join(", ")))])
        }
    };
    result.err().unwrap_or_default()
}

/// Builds an exporter; `prometheus` binds its port (inside a tokio runtime), `file` opens its file.
pub fn build(kind: &str, config: &serde_yaml_ng::Value, path: &str) -> Result<Box<dyn Exporter>, Vec<Problem>> {
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
            FileExporter::open(&config.path).map(|e| Box::new(e) as Box<dyn Exporter>).map_err(failed)
        }
        _ => Ok(Box::new(CountExporter)),
    }
}
