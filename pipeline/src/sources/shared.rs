//! One receiver, fanned out to every pipeline that names it. Two pipelines of an agent whose receivers
//! are configured alike (the same type and section: an experiment's baseline and candidate, or a
//! deployment and an experiment beside it) share one: it binds its port or scrapes its targets once, and
//! each pipeline gets every point it takes — exactly the same input, as a fair comparison needs.
//!
//! Each pipeline holds a [`Subscription`]. Whichever collects first drains the receiver and queues the
//! points for every subscription; each then takes its own queue. The receiver lives as long as one
//! subscription does.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use super::buffer::ReceiverCounts;
use super::Source;
use crate::model::Batch;
use crate::processors::memory_limiter::MemoryGate;
use crate::Problem;

/// The receiver types that take points from outside and so are shared (the host sources read the host
/// afresh for each pipeline and need not be).
pub const SHARED_KINDS: [&str; 3] = ["otlp", "prometheus_remote_write", "prometheus"];

/// What identifies a shareable receiver: its type and its settings.
pub fn share_key(kind: &str, section: &serde_yaml_ng::Value) -> String {
    format!("{kind}\n{}", serde_yaml_ng::to_string(section).unwrap_or_default())
}

struct Shared {
    source: Mutex<Box<dyn Source>>,
    /// Points taken but not yet collected, per subscription.
    queues: Mutex<HashMap<u64, Batch>>,
    next_id: AtomicU64,
}

/// The agent's shared receivers, by key. Holds them weakly: a receiver no pipeline uses stops.
#[derive(Default)]
pub struct ReceiverHub {
    receivers: Mutex<HashMap<String, Weak<Shared>>>,
}

impl ReceiverHub {
    /// A subscription to the receiver of `kind` configured by `section`, started when no pipeline
    /// runs it yet (binding its port needs a tokio runtime).
    pub fn subscribe(
        &self,
        kind: &str,
        section: &serde_yaml_ng::Value,
        path: &str,
    ) -> Result<Subscription, Vec<Problem>> {
        let key = share_key(kind, section);
        let mut receivers =
            self.receivers.lock().map_err(|_| vec![Problem::new(path, "the receiver hub is unusable")])?;
        receivers.retain(|_, shared| shared.strong_count() > 0);
        let shared = match receivers.get(&key).and_then(Weak::upgrade) {
            Some(shared) => shared,
            None => {
                let source = super::build(kind, section, path)?;
                let shared = Arc::new(Shared {
                    source: Mutex::new(source),
                    queues: Mutex::new(HashMap::new()),
                    next_id: AtomicU64::new(0),
                });
                receivers.insert(key, Arc::downgrade(&shared));
                shared
            }
        };
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut queues) = shared.queues.lock() {
            queues.insert(id, Vec::new());
        }
        Ok(Subscription { shared, id })
    }

    /// How many pipelines share the receiver `key` now.
    #[cfg(test)]
    pub fn subscribers(&self, key: &str) -> usize {
        let receivers = self.receivers.lock();
        let shared = receivers.ok().and_then(|r| r.get(key).and_then(Weak::upgrade));
        shared.map_or(0, |shared| shared.queues.lock().map(|q| q.len()).unwrap_or(0))
    }
}

/// One pipeline's share of a receiver.
pub struct Subscription {
    shared: Arc<Shared>,
    id: u64,
}

impl Subscription {
    /// Drains the receiver into every subscription's queue, then takes this one's.
    fn take(&mut self, drain: impl FnOnce(&mut dyn Source) -> Batch) -> Batch {
        let fresh = self.shared.source.lock().map(|mut source| drain(source.as_mut())).unwrap_or_default();
        let Ok(mut queues) = self.shared.queues.lock() else { return Vec::new() };
        if !fresh.is_empty() {
            let others: Vec<u64> = queues.keys().copied().filter(|id| *id != self.id).collect();
            for id in others {
                queues.entry(id).or_default().extend(fresh.iter().cloned());
            }
        }
        let mut mine = queues.remove(&self.id).unwrap_or_default();
        queues.insert(self.id, Vec::new());
        mine.extend(fresh);
        mine
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Ok(mut queues) = self.shared.queues.lock() {
            queues.remove(&self.id);
        }
    }
}

impl Source for Subscription {
    fn collect(&mut self, now_ms: i64) -> Batch {
        self.take(|source| source.collect(now_ms))
    }

    fn take_pending(&mut self) -> Batch {
        self.take(|source| source.take_pending())
    }

    fn receiver_counts(&self) -> Option<ReceiverCounts> {
        self.shared.source.lock().ok().and_then(|source| source.receiver_counts())
    }

    /// The receiver keeps the first gate it is given (the first sharing pipeline with a `memory_limiter`).
    fn limit_memory(&mut self, gate: Arc<MemoryGate>) {
        if let Ok(mut source) = self.shared.source.lock() {
            source.limit_memory(gate);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::http::tests_support::post_gauge;

    fn otlp(port: u16) -> serde_yaml_ng::Value {
        serde_yaml_ng::from_str(&format!("protocols: {{http: {{endpoint: '127.0.0.1:{port}'}}}}")).expect("yaml")
    }

    #[tokio::test]
    async fn pipelines_that_name_one_receiver_each_get_every_point_it_takes() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let hub = ReceiverHub::default();
        let mut baseline = hub.subscribe("otlp", &otlp(port), "receivers.otlp").expect("binds");
        let mut candidate = hub.subscribe("otlp", &otlp(port), "receivers.otlp").expect("shares, no second bind");
        assert_eq!(hub.subscribers(&share_key("otlp", &otlp(port))), 2);
        post_gauge(port, &[1.0, 2.0]).await;
        assert_eq!(candidate.collect(0).len(), 2, "whichever collects first");
        post_gauge(port, &[3.0]).await;
        let values = |batch: Batch| batch.iter().map(|p| p.number()).collect::<Vec<f64>>();
        assert_eq!(values(baseline.collect(0)), [1.0, 2.0, 3.0], "the same points, none lost");
        assert_eq!(values(candidate.collect(0)), [3.0]);
        drop(baseline);
        post_gauge(port, &[4.0]).await;
        assert_eq!(values(candidate.collect(0)), [4.0], "the receiver lives while one pipeline uses it");
        drop(candidate);
        assert_eq!(hub.subscribers(&share_key("otlp", &otlp(port))), 0);
        // The server task ends at its next poll: give it a moment.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "the last one out stopped it");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}
