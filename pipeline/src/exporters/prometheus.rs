//! `prometheus`: serves the last interval's output in the text exposition format on `GET /metrics`.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::Exporter;
use crate::model::Point;
use crate::prom;

pub struct PrometheusExporter {
    latest: Arc<Mutex<String>>,
    server: tokio::task::JoinHandle<()>,
    /// Where it listens (the port the OS chose when the endpoint said 0).
    pub addr: std::net::SocketAddr,
}

impl PrometheusExporter {
    /// Binds `endpoint` (shared with a pipeline's next version, see [`crate::net::listen`]) and
    /// serves until dropped. Needs a tokio runtime.
    pub fn bind(endpoint: &str) -> Result<PrometheusExporter, String> {
        PrometheusExporter::serve(crate::net::listen(endpoint)?)
    }

    /// Serves on `listener` until dropped. Needs a tokio runtime.
    pub fn serve(listener: tokio::net::TcpListener) -> Result<PrometheusExporter, String> {
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let latest = Arc::new(Mutex::new(String::new()));
        let shared = latest.clone();
        let server = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    // Out of descriptors or the like: wait a little and keep serving.
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                };
                let body = shared.lock().map(|s| s.clone()).unwrap_or_default();
                tokio::spawn(async move {
                    let mut request = [0u8; 1024];
                    // A client that connects and says nothing must not hold a descriptor for long.
                    let read = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut request)).await;
                    if !matches!(read, Ok(Ok(n)) if n > 0) {
                        return;
                    }
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = stream.write_all(head.as_bytes()).await;
                    let _ = stream.write_all(body.as_bytes()).await;
                });
            }
        });
        Ok(PrometheusExporter { latest, server, addr })
    }
}

impl Drop for PrometheusExporter {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Exporter for PrometheusExporter {
    fn export(&mut self, batch: &[Point]) -> Result<(), String> {
        let text = exposition(batch);
        *self.latest.lock().map_err(|_| "exposition lock poisoned".to_string())? = text;
        Ok(())
    }
}

/// The text exposition format of a batch: one group per metric family, each with its HELP and TYPE
/// lines (promtool-clean), names and labels translated as in [`crate::prom`]. Points Prometheus cannot
/// represent (deltas) are left out.
pub fn exposition(batch: &[Point]) -> String {
    // Families in the order they first appear, each with its points in batch order.
    let mut families: Vec<(String, &Point)> = Vec::new();
    let mut points: std::collections::HashMap<String, Vec<&Point>> = std::collections::HashMap::new();
    for point in batch.iter().filter(|p| prom::family_type(p.kind()).is_some()) {
        let name = prom::metric_name(point.name(), point.kind());
        let members = points.entry(name.clone()).or_default();
        if members.is_empty() {
            families.push((name, point));
        }
        members.push(point);
    }
    let mut out = String::new();
    for (name, first) in families {
        let kind = prom::family_type(first.kind()).unwrap_or("untyped");
        let help = if first.metric.description.is_empty() { first.name() } else { &first.metric.description };
        let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for point in &points[&name] {
            for sample in prom::samples(point) {
                write_sample(&mut out, &sample);
            }
        }
    }
    out
}

fn write_sample(out: &mut String, sample: &prom::Sample) {
    let value = prom::format_float(sample.value);
    if sample.labels.is_empty() {
        let _ = writeln!(out, "{} {value} {}", sample.name, sample.time_ms);
    } else {
        let labels: Vec<String> =
            sample.labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape_label_value(v))).collect();
        let _ = writeln!(out, "{}{{{}}} {value} {}", sample.name, labels.join(","), sample.time_ms);
    }
}

fn escape_label_value(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MetricKind;

    #[test]
    fn exposition_escapes_and_renames() {
        let batch =
            vec![Point::new("process.cpu.time", MetricKind::COUNTER, &[("command", "a \"b\"")], 1.5, 9_000_000)];
        assert_eq!(
            exposition(&batch),
            "# HELP process_cpu_time_total process.cpu.time\n# TYPE process_cpu_time_total counter\n\
             process_cpu_time_total{command=\"a \\\"b\\\"\"} 1.5 9\n"
        );
    }

    #[test]
    fn each_family_is_one_group_whatever_the_batch_order() {
        let batch = vec![
            Point::new("a", MetricKind::Gauge, &[("pid", "1")], 1.0, 0),
            Point::new("b", MetricKind::UP_DOWN_COUNTER, &[("pid", "1")], 2.0, 0),
            Point::new("a", MetricKind::Gauge, &[("pid", "2")], 3.0, 0),
        ];
        let text = exposition(&batch);
        let types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE")).collect();
        assert_eq!(types, ["# TYPE a gauge", "# TYPE b gauge"]);
        let a_samples: Vec<usize> =
            text.lines().enumerate().filter(|(_, l)| l.starts_with("a{")).map(|(i, _)| i).collect();
        assert_eq!(a_samples, [2, 3], "a's samples follow its HELP and TYPE together: {text}");
    }

    #[tokio::test]
    async fn serves_the_last_interval_over_http() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("probe");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let mut exporter = PrometheusExporter::bind(&addr.to_string()).expect("bind");
        exporter.export(&[Point::new("up", MetricKind::Gauge, &[], 1.0, 0)]).expect("export");
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("write");
        let mut response = String::new();
        stream.read_to_string(&mut response).await.expect("read");
        assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
        assert!(response.ends_with("up 1 0\n"), "{response}");
    }
}
