//! The delivery queue every network exporter shares (`prometheusremotewrite`, `otlp`, `otlphttp`):
//! delivery never blocks the pipeline. Each flush's request joins a bounded queue that a background task
//! sends in order. A failure the transport calls retryable (no answer, overload, a 5xx) is retried with
//! exponential backoff, up to `max_attempts`; other failures are final. When the queue is full the oldest
//! request is dropped. Every drop is counted (requests and points) and the last failure kept. A dropped
//! exporter (its pipeline replaced by a new version) still delivers what it had queued.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How a request failed.
#[derive(Debug)]
pub enum Failure {
    /// Worth another try later (no answer, overload, a server error).
    Retryable(String),
    /// The receiver refused it for good (a malformed request, no permission).
    Final(String),
}

/// Sends one encoded request to the exporter's destination.
pub trait Transport: Send + Sync + 'static {
    type Request: Send + Sync + 'static;

    fn send(&self, request: &Self::Request) -> impl Future<Output = Result<(), Failure>> + Send;
}

/// What an exporter counts (the agent reports them as its self-metrics). Points are remote write's
/// samples, OTLP's data points.
#[derive(Debug, Default)]
pub struct DeliveryCounters {
    pub sent_requests: AtomicU64,
    pub sent_points: AtomicU64,
    pub dropped_requests: AtomicU64,
    pub dropped_points: AtomicU64,
    /// Points the destination's format cannot represent (deltas for Prometheus), left out.
    pub unrepresentable_points: AtomicU64,
    pub last_error: Mutex<Option<String>>,
}

/// The retry and queue settings of an exporter.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Requests waiting to be sent, at most.
    pub max_queue: usize,
    /// Tries per request before it is dropped.
    pub max_attempts: u32,
}

struct Pending<R> {
    request: R,
    points: u64,
}

struct Shared<R> {
    pending: Mutex<VecDeque<Pending<R>>>,
    /// Set when the queue's owner is dropped: the sender delivers what is queued, then ends.
    closing: AtomicBool,
    wake: tokio::sync::Notify,
    limits: Limits,
    counters: DeliveryCounters,
    /// For the log lines: which exporter type dropped something.
    kind: &'static str,
}

impl<R> Shared<R> {
    fn drop_request(&self, points: u64, why: String) {
        self.counters.dropped_requests.fetch_add(1, Ordering::Relaxed);
        self.counters.dropped_points.fetch_add(points, Ordering::Relaxed);
        tracing::warn!(exporter = self.kind, reason = %why, points, "a request was dropped");
        if let Ok(mut last) = self.counters.last_error.lock() {
            *last = Some(why);
        }
    }
}

/// The queue and its sending task.
pub struct DeliveryQueue<R> {
    shared: Arc<Shared<R>>,
    /// Undelivered points counted up to the previous report.
    reported_undelivered: u64,
}

impl<R: Send + Sync + 'static> DeliveryQueue<R> {
    /// Starts the sending task; needs a tokio runtime.
    pub fn start<T: Transport<Request = R>>(kind: &'static str, transport: T, limits: Limits) -> DeliveryQueue<R> {
        let shared = Arc::new(Shared {
            pending: Mutex::new(VecDeque::new()),
            closing: AtomicBool::new(false),
            wake: tokio::sync::Notify::new(),
            limits,
            counters: DeliveryCounters::default(),
            kind,
        });
        tokio::spawn(send_until_closed(transport, shared.clone()));
        DeliveryQueue { shared, reported_undelivered: 0 }
    }

    /// Queues a request of `points` points; the oldest waiting one is dropped when the queue is full.
    pub fn push(&self, request: R, points: u64) -> Result<(), String> {
        let oldest = {
            let mut pending = self.shared.pending.lock().map_err(|_| "the delivery queue is unusable".to_string())?;
            pending.push_back(Pending { request, points });
            (pending.len() > self.shared.limits.max_queue).then(|| pending.pop_front()).flatten()
        };
        if let Some(oldest) = oldest {
            let why = format!("the queue is full ({} requests): the oldest was dropped", self.shared.limits.max_queue);
            self.shared.drop_request(oldest.points, why);
        }
        self.shared.wake.notify_one();
        Ok(())
    }

    pub fn counters(&self) -> &DeliveryCounters {
        &self.shared.counters
    }

    /// Requests waiting to be sent.
    pub fn depth(&self) -> usize {
        self.shared.pending.lock().map(|q| q.len()).unwrap_or(0)
    }

    /// Points dropped or unrepresentable since the previous call.
    pub fn take_undelivered(&mut self) -> u64 {
        let counters = &self.shared.counters;
        let total =
            counters.dropped_points.load(Ordering::Relaxed) + counters.unrepresentable_points.load(Ordering::Relaxed);
        total - std::mem::replace(&mut self.reported_undelivered, total)
    }
}

impl<R> Drop for DeliveryQueue<R> {
    /// A pipeline replaced by its next version still delivers what it had queued (with its retries),
    /// in the background; then its sender ends.
    fn drop(&mut self) {
        self.shared.closing.store(true, Ordering::Relaxed);
        self.shared.wake.notify_one();
    }
}

/// Sends queued requests in order, until the queue's owner is dropped and the queue is empty.
async fn send_until_closed<T: Transport>(transport: T, shared: Arc<Shared<T::Request>>) {
    loop {
        let next = shared.pending.lock().ok().and_then(|mut q| q.pop_front());
        let Some(pending) = next else {
            if shared.closing.load(Ordering::Relaxed) {
                return;
            }
            shared.wake.notified().await;
            continue;
        };
        let mut backoff = Duration::from_millis(500);
        let max_attempts = shared.limits.max_attempts;
        for attempt in 1..=max_attempts {
            match transport.send(&pending.request).await {
                Ok(()) => {
                    shared.counters.sent_requests.fetch_add(1, Ordering::Relaxed);
                    shared.counters.sent_points.fetch_add(pending.points, Ordering::Relaxed);
                    break;
                }
                Err(Failure::Final(why)) => {
                    shared.drop_request(pending.points, why);
                    break;
                }
                Err(Failure::Retryable(why)) if attempt == max_attempts => {
                    shared.drop_request(pending.points, format!("{why} (after {attempt} attempts)"));
                }
                Err(Failure::Retryable(_)) => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }
}

/// The HTTP client of an exporter: its timeout and extra headers (checked by the config's `check`).
pub fn http_client(
    timeout: Duration,
    headers: &std::collections::BTreeMap<String, String>,
) -> Result<reqwest::Client, String> {
    // reqwest is built without a TLS provider of its own; the binary installs one at start, and this
    // makes the exporters usable where nothing did (tests, tools). A second install is refused, harmlessly.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut map = reqwest::header::HeaderMap::new();
    for (name, value) in headers {
        let name = reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(|e| e.to_string())?;
        map.insert(name, reqwest::header::HeaderValue::from_str(value).map_err(|e| e.to_string())?);
    }
    reqwest::Client::builder()
        .timeout(timeout)
        .default_headers(map)
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// The problems of an exporter's extra headers.
pub fn check_headers(headers: &std::collections::BTreeMap<String, String>, path: &str) -> Vec<crate::Problem> {
    headers
        .iter()
        .filter(|(name, value)| {
            reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err()
                || reqwest::header::HeaderValue::from_str(value).is_err()
        })
        .map(|(name, _)| crate::Problem::new(&format!("{path}.headers.{name}"), "is not a valid HTTP header"))
        .collect()
}

/// An HTTP answer as a delivery result: 2xx delivered; the statuses in `retryable` (and no answer)
/// worth another try; the rest final.
pub async fn judge_http_answer(
    answer: Result<reqwest::Response, reqwest::Error>,
    endpoint: &str,
    retryable: fn(reqwest::StatusCode) -> bool,
) -> Result<(), Failure> {
    let answer = answer.map_err(|e| Failure::Retryable(format!("{endpoint}: {e}")))?;
    let status = answer.status();
    if status.is_success() {
        return Ok(());
    }
    let text = answer.text().await.unwrap_or_default();
    let why = format!("{endpoint} answered {status}: {}", text.trim());
    if retryable(status) {
        Err(Failure::Retryable(why))
    } else {
        Err(Failure::Final(why))
    }
}
