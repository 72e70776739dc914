//! What both OTLP transports do with a decoded request: convert it, put its points in the bounded buffer
//! the pipeline drains at each flush, count, and say which points were rejected (partial success).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};

use super::decode::decode;
use crate::model::Point;

/// What the receiver counts (the agent reports them as its self-metrics).
#[derive(Debug, Default)]
pub struct ReceiverCounters {
    pub accepted_points: AtomicU64,
    pub rejected_points: AtomicU64,
    /// Requests refused whole: undecodable, too large, wrong type, or the buffer full.
    pub refused_requests: AtomicU64,
}

/// A request refused whole after it was decoded.
#[derive(Debug, PartialEq)]
pub enum Refusal {
    /// The pipeline has not drained the buffer: the sender should retry later.
    BufferFull,
    /// The buffer's lock was poisoned by a panic elsewhere.
    Unusable,
}

/// The buffer between the transports and the pipeline, with its limits and counters.
pub struct Intake {
    buffer: Mutex<Vec<Point>>,
    max_buffered_points: usize,
    keep_exemplars: bool,
    pub counters: ReceiverCounters,
}

impl Intake {
    pub fn new(max_buffered_points: usize, keep_exemplars: bool) -> Intake {
        Intake {
            buffer: Mutex::new(Vec::new()),
            max_buffered_points,
            keep_exemplars,
            counters: ReceiverCounters::default(),
        }
    }

    /// Takes a request's points, or refuses it whole (nothing of it is kept).
    pub fn accept(&self, request: ExportMetricsServiceRequest) -> Result<ExportMetricsServiceResponse, Refusal> {
        let decoded = decode(request, self.keep_exemplars);
        let accepted = decoded.points.len() as u64;
        {
            let mut buffer = self.buffer.lock().map_err(|_| Refusal::Unusable)?;
            if buffer.len() + decoded.points.len() > self.max_buffered_points {
                return Err(Refusal::BufferFull);
            }
            buffer.extend(decoded.points);
        }
        self.counters.accepted_points.fetch_add(accepted, Ordering::Relaxed);
        self.counters.rejected_points.fetch_add(decoded.rejected, Ordering::Relaxed);
        let partial_success = (decoded.rejected > 0).then(|| ExportMetricsPartialSuccess {
            rejected_data_points: i64::try_from(decoded.rejected).unwrap_or(i64::MAX),
            error_message: decoded.reason.unwrap_or_default(),
        });
        Ok(ExportMetricsServiceResponse { partial_success })
    }

    /// Counts a request refused whole, by either transport.
    pub fn refused(&self) {
        self.counters.refused_requests.fetch_add(1, Ordering::Relaxed);
    }

    /// The points received since the previous drain.
    pub fn drain(&self) -> Vec<Point> {
        self.buffer.lock().map(|mut buffer| std::mem::take(&mut *buffer)).unwrap_or_default()
    }
}
