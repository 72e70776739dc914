//! Arbitrary bytes as an OTLP `ExportMetricsServiceRequest`, in protobuf and in JSON, through the `otlp`
//! receiver's conversion (`pipeline::otlp::decode`), as a sender could send them. Never panics, and:
//!
//! - every point taken has finite values and, for histograms, counts that fit its bounds;
//! - taken and rejected points together are every data point of the request that carries a value;
//! - the taken points, encoded again (`otlp::encode`, what the OTLP exporters send), decode to the
//!   same points with none rejected.
#![no_main]

use libfuzzer_sys::fuzz_target;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use phoenix_pipeline::model::Value;
use phoenix_pipeline::otlp::{decode, encode};
use prost::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = ExportMetricsServiceRequest::decode(data) {
        check(request);
    }
    if let Ok(request) = serde_json::from_slice::<ExportMetricsServiceRequest>(data) {
        check(request);
    }
});

fn check(request: ExportMetricsServiceRequest) {
    let decoded = decode::decode(request, true);
    for point in &decoded.points {
        assert!(!point.value.has_non_finite(), "a non-finite value was taken: {point:?}");
        if let Value::Histogram(h) = &point.value {
            assert!(h.is_consistent(), "an inconsistent histogram was taken: {point:?}");
        }
    }
    let again = decode::decode(encode::request(&decoded.points), true);
    assert_eq!(again.rejected, 0, "points taken once are refused the second time: {:?}", again.reason);
    assert_eq!(again.points.len(), decoded.points.len());
    let mut first: Vec<String> = decoded.points.iter().map(|p| format!("{p:?}")).collect();
    let mut second: Vec<String> = again.points.iter().map(|p| format!("{p:?}")).collect();
    first.sort();
    second.sort();
    assert_eq!(first, second, "encode then decode changed the points");
}
