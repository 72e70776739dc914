//! What both OTLP transports do with a decoded request: convert it, put its points in the pipeline's
//! buffer, and say which points were rejected (partial success).

use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};

use super::decode::decode;
use crate::sources::buffer::{PointBuffer, Refusal};

/// The buffer and how to read requests into it.
pub struct Intake {
    pub buffer: PointBuffer,
    keep_exemplars: bool,
}

impl Intake {
    pub fn new(max_buffered_points: usize, keep_exemplars: bool) -> Intake {
        Intake { buffer: PointBuffer::new(max_buffered_points), keep_exemplars }
    }

    /// Takes a request's points, or refuses it whole (nothing of it is kept).
    pub fn accept(&self, request: ExportMetricsServiceRequest) -> Result<ExportMetricsServiceResponse, Refusal> {
        let decoded = decode(request, self.keep_exemplars);
        self.buffer.push(decoded.points, decoded.rejected)?;
        let partial_success = (decoded.rejected > 0).then(|| ExportMetricsPartialSuccess {
            rejected_data_points: i64::try_from(decoded.rejected).unwrap_or(i64::MAX),
            error_message: decoded.reason.unwrap_or_default(),
        });
        Ok(ExportMetricsServiceResponse { partial_success })
    }
}
