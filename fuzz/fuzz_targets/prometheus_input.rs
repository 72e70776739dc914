//! Arbitrary bytes as Prometheus input, as a remote-write sender or a scrape target could send them: a
//! remote-write body (Snappy block, then `WriteRequest`), a bare `WriteRequest`, and a text exposition
//! (0.0.4 and OpenMetrics), each through the receivers' conversion to points
//! (`prom::assemble`). Never panics, and every point taken has finite values and, for histograms,
//! strictly growing bounds with counts that fit them; the points translate back to samples.
#![no_main]

use libfuzzer_sys::fuzz_target;
use phoenix_pipeline::model::Value;
use phoenix_pipeline::prom::assemble::{assemble, FamilyType, FlatSample};
use phoenix_pipeline::prom::text::{self, Format};
use phoenix_pipeline::prom::wire::WriteRequest;
use phoenix_pipeline::sources::remote_write::{decode_body, read};
use prost::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = decode_body(data, 1 << 20) {
        remote_write(request);
    }
    if let Ok(request) = WriteRequest::decode(data) {
        remote_write(request);
    }
    let body = String::from_utf8_lossy(data);
    for format in [Format::Text, Format::OpenMetrics] {
        if let Ok(exposition) = text::parse(&body, format, 0) {
            check(exposition.samples, &|name| exposition.types.get(name).copied());
        }
    }
});

fn remote_write(request: WriteRequest) {
    let (samples, declared) = read(request);
    check(samples, &|name| declared.iter().find(|(family, _)| family == name).map(|(_, kind)| *kind));
}

fn check(samples: Vec<FlatSample>, types: &dyn Fn(&str) -> Option<FamilyType>) {
    let assembled = assemble(samples, types);
    for point in &assembled.points {
        assert!(!point.value.has_non_finite(), "a non-finite value was taken: {point:?}");
        if let Value::Histogram(h) = &point.value {
            assert!(h.is_consistent(), "an inconsistent histogram was taken: {point:?}");
        }
        let _ = phoenix_pipeline::prom::samples(point);
    }
}
