//! `prometheus`: serves the last interval's output in the text exposition format on `GET /metrics`.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::Exporter;
use crate::pipeline::model::{Batch, MetricKind};

pub struct PrometheusExporter {
    latest: Arc<Mutex<String>>,
    server: tokio::task::JoinHandle<()>,
}

impl PrometheusExporter {
    /// Binds `endpoint` and serves until dropped. Needs a tokio runtime.
    pub fn bind(endpoint: &str) -> Result<PrometheusExporter, String> {
        let listener =
            std::net::TcpListener::bind(endpoint).map_err(|e| format!("cannot listen on {endpoint}: {e}"))?;
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| e.to_string())?;
        let latest = Arc::new(Mutex::new(String::new()));
        let shared = latest.clone();
        let server = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let body = shared.lock().map(|s| s.clone()).unwrap_or_default();
                tokio::spawn(async move {
                    let mut request = [0u8; 1024];
                    let _ = stream.read(&mut request).await;
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = stream.write_all(head.as_bytes()).await;
                    let _ = stream.write_all(body.as_bytes()).await;
                });
            }
        });
        Ok(PrometheusExporter { latest, server })
    }
}

impl Drop for PrometheusExporter {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Exporter for PrometheusExporter {
    fn export(&mut self, batch: &Batch) -> Result<(), String> {
        let text = exposition(batch);
        *self.latest.lock().map_err(|_| "exposition lock poisoned".to_string())? = text;
        Ok(())
    }
}

/// The text exposition of a batch: dots in names become underscores, label values are escaped.
pub fn exposition(batch: &Batch) -> String {
    let mut out = String::new();
    let mut typed = std::collections::HashSet::new();
    for point in batch {
        let name: String = point.metric.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
        if typed.insert(name.clone()) {
            let kind = match point.kind {
                MetricKind::Sum => "counter",
                MetricKind::Gauge => "gauge",
            };
            let _ = writeln!(out, "# TYPE {name} {kind}");
        }
        let labels: Vec<String> = point
            .labels
            .iter()
            .map(|(k, v)| {
                let key: String = k.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
                format!("{key}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n"))
            })
            .collect();
        let _ = writeln!(out, "{name}{{{}}} {} {}", labels.join(","), point.value, point.ts_ms);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::model::Point;

    #[test]
    fn exposition_escapes_and_renames() {
        let batch = vec![Point::new("process.cpu.time", MetricKind::Sum, &[("command", "a \"b\"")], 1.5, 9)];
        assert_eq!(
            exposition(&batch),
            "# TYPE process_cpu_time counter\nprocess_cpu_time{command=\"a \\\"b\\\"\"} 1.5 9\n"
        );
    }

    #[tokio::test]
    async fn serves_the_last_interval_over_http() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("probe");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let mut exporter = PrometheusExporter::bind(&addr.to_string()).expect("bind");
        exporter.export(&vec![Point::new("up", MetricKind::Gauge, &[], 1.0, 0)]).expect("export");
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("write");
        let mut response = String::new();
        stream.read_to_string(&mut response).await.expect("read");
        assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
        assert!(response.ends_with("up{} 1 0\n"), "{response}");
    }
}
