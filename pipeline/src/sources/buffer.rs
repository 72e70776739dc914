//! The bounded buffer between a push or background receiver (OTLP, remote write, scrapes) and its
//! pipeline: receivers add points as they arrive, each flush drains them. A full buffer refuses what
//! comes next (senders retry, scrapes are counted as dropped), so a stalled pipeline never makes the
//! agent grow without bound.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::model::Point;
use crate::processors::memory_limiter::MemoryGate;

/// What a receiver counts (the agent reports them as its self-metrics).
#[derive(Debug, Default)]
pub struct ReceiverCounters {
    pub accepted_points: AtomicU64,
    /// Points left out of an accepted request (NaN values, inconsistent histograms).
    pub rejected_points: AtomicU64,
    /// Requests (or scrapes) refused whole: undecodable, too large, wrong type, or the buffer full.
    pub refused_requests: AtomicU64,
}

/// The counters' values at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ReceiverCounts {
    pub accepted_points: u64,
    pub rejected_points: u64,
    pub refused_requests: u64,
}

impl ReceiverCounters {
    pub fn snapshot(&self) -> ReceiverCounts {
        ReceiverCounts {
            accepted_points: self.accepted_points.load(Ordering::Relaxed),
            rejected_points: self.rejected_points.load(Ordering::Relaxed),
            refused_requests: self.refused_requests.load(Ordering::Relaxed),
        }
    }
}

/// Why points were refused whole.
#[derive(Debug, PartialEq)]
pub enum Refusal {
    /// The pipeline has not drained the buffer: the sender should retry later.
    BufferFull,
    /// The agent is over its `memory_limiter`'s soft limit: the sender should retry later.
    OverMemoryLimit,
    /// The buffer's lock was poisoned by a panic elsewhere.
    Unusable,
}

impl Refusal {
    /// Why, for the sender.
    pub fn message(&self) -> &'static str {
        match self {
            Refusal::BufferFull => "the pipeline is behind: its buffer is full, retry later",
            Refusal::OverMemoryLimit => "the agent is over its memory limit, retry later",
            Refusal::Unusable => "the receiver's buffer is unusable",
        }
    }

    /// True when the same request may succeed later.
    pub fn is_temporary(&self) -> bool {
        !matches!(self, Refusal::Unusable)
    }
}

pub struct PointBuffer {
    points: Mutex<Vec<Point>>,
    max_points: usize,
    /// Set when the pipeline has a `memory_limiter`.
    gate: OnceLock<Arc<MemoryGate>>,
    pub counters: ReceiverCounters,
}

impl PointBuffer {
    pub fn new(max_points: usize) -> PointBuffer {
        PointBuffer {
            points: Mutex::new(Vec::new()),
            max_points,
            gate: OnceLock::new(),
            counters: ReceiverCounters::default(),
        }
    }

    /// Makes every later push ask `gate` first.
    pub fn limit_memory(&self, gate: Arc<MemoryGate>) {
        let _ = self.gate.set(gate);
    }

    /// Adds all of `points` (and counts `rejected` left out of them), or none when they do not fit.
    pub fn push(&self, points: Vec<Point>, rejected: u64) -> Result<(), Refusal> {
        let accepted = points.len() as u64;
        if self.gate.get().is_some_and(|gate| !gate.admits()) {
            return Err(Refusal::OverMemoryLimit);
        }
        {
            let mut buffer = self.points.lock().map_err(|_| Refusal::Unusable)?;
            if buffer.len() + points.len() > self.max_points {
                return Err(Refusal::BufferFull);
            }
            buffer.extend(points);
        }
        self.counters.accepted_points.fetch_add(accepted, Ordering::Relaxed);
        self.counters.rejected_points.fetch_add(rejected, Ordering::Relaxed);
        Ok(())
    }

    /// Counts a request refused whole.
    pub fn refused(&self) {
        self.counters.refused_requests.fetch_add(1, Ordering::Relaxed);
    }

    /// The points received since the previous drain.
    pub fn drain(&self) -> Vec<Point> {
        self.points.lock().map(|mut buffer| std::mem::take(&mut *buffer)).unwrap_or_default()
    }
}
