//! `file`: appends each point as one JSON line.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;

use serde_json::{json, Map, Value};

use super::Exporter;
use crate::model::Batch;

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
    fn export(&mut self, batch: &Batch) -> Result<(), String> {
        for point in batch {
            let labels: Map<String, Value> =
                point.labels.iter().map(|(k, v)| (k.to_string(), Value::from(&**v))).collect();
            let line = json!({"metric": &*point.metric, "kind": point.kind, "labels": labels, "value": point.value, "ts_ms": point.ts_ms});
            writeln!(self.out, "{line}").map_err(|e| e.to_string())?;
        }
        self.out.flush().map_err(|e| e.to_string())
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
        exporter.export(&vec![Point::new("m", MetricKind::Sum, &[("a", "1")], 2.5, 7)]).expect("export");
        let text = std::fs::read_to_string(&path).expect("read");
        let line: Value = serde_json::from_str(text.trim()).expect("json");
        assert_eq!(line, json!({"metric": "m", "kind": "sum", "labels": {"a": "1"}, "value": 2.5, "ts_ms": 7}));
    }
}
