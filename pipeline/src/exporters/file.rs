//! `file`: appends each point as one JSON line.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;

use serde_json::{json, Map, Value};

use super::Exporter;
use crate::model::Point;

pub struct FileExporter {
    out: BufWriter<File>,
}

impl FileExporter {
    pub fn open(path: &Path) -> Result<FileExporter, String> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        Ok(FileExporter { out: BufWriter::new(file) })
    }
}

impl Exporter for FileExporter {
    fn export(&mut self, batch: &[Point]) -> Result<(), String> {
        for point in batch {
            let labels: Map<String, Value> =
                point.labels.iter().map(|(k, v)| (k.to_string(), Value::from(&**v))).collect();
            let line = json!({
                "metric": point.name(),
                "kind": point.kind().name(),
                "labels": labels,
                "value": json_value(&point.value),
                "time_unix_nano": point.time_ns,
            });
            writeln!(self.out, "{line}").map_err(|e| e.to_string())?;
        }
        self.out.flush().map_err(|e| e.to_string())
    }
}

/// A value as JSON: a number, or the parts of a histogram or summary.
fn json_value(value: &crate::model::Value) -> Value {
    use crate::model::Value as V;
    match value {
        V::Number(n) => json!(n),
        V::Histogram(h) => json!({"count": h.count, "sum": h.sum, "bounds": &*h.bounds, "counts": h.counts}),
        V::ExponentialHistogram(h) => json!({
            "count": h.count, "sum": h.sum, "scale": h.scale, "zero_count": h.zero_count,
            "positive": {"offset": h.positive.offset, "counts": h.positive.counts},
            "negative": {"offset": h.negative.offset, "counts": h.negative.counts},
        }),
        V::Summary(s) => json!({
            "count": s.count, "sum": s.sum,
            "quantiles": s.quantiles.iter().map(|q| json!({"quantile": q.quantile, "value": q.value})).collect::<Vec<_>>(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{MetricKind, Point};

    #[test]
    fn writes_one_json_line_per_point() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("out.jsonl");
        let mut exporter = FileExporter::open(&path).expect("open");
        exporter.export(&[Point::new("m", MetricKind::COUNTER, &[("a", "1")], 2.5, 7)]).expect("export");
        let text = std::fs::read_to_string(&path).expect("read");
        let line: Value = serde_json::from_str(text.trim()).expect("json");
        assert_eq!(
            line,
            json!({"metric": "m", "kind": "sum", "labels": {"a": "1"}, "value": 2.5, "time_unix_nano": 7})
        );
    }
}
