//! Prometheus metrics of the server process, rendered by `GET /metrics`.

use std::sync::atomic::Ordering;

use phoenix_actors::gateway::IngestStats;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::db::PoolUsage;

/// Values read at scrape time from the parts that own them.
pub struct Snapshot<'a> {
    pub pool: PoolUsage,
    pub bus_connected: bool,
    pub agent_sessions: usize,
    pub long_poll_waiters: usize,
    pub ingest: &'a IngestStats,
}

/// Every metric the server exports, registered in one registry owned by the app (no globals).
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    db_pool_connections: IntGaugeVec,
    db_pool_max: IntGauge,
    bus_connected: IntGauge,
    agent_sessions: IntGauge,
    long_poll_waiters: IntGauge,
    agent_messages: IntCounterVec,
    agent_messages_dropped: IntCounterVec,
    ws_sessions: IntGauge,
    ws_slow_consumers: prometheus::IntCounter,
}

const LATENCY_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new_custom(Some("phoenix".into()), None)?;
        let http_requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests answered, by route pattern and status"),
            &["method", "route", "status"],
        )?;
        let http_duration = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "Time to answer an HTTP request")
                .buckets(LATENCY_BUCKETS.to_vec()),
            &["method", "route"],
        )?;
        let db_pool_connections =
            IntGaugeVec::new(Opts::new("db_pool_connections", "Database pool connections by state"), &["state"])?;
        let db_pool_max = IntGauge::new("db_pool_max_connections", "Largest size of the database pool")?;
        let bus_connected = IntGauge::new("bus_connected", "1 when the message bus is connected, else 0")?;
        registry.register(Box::new(http_requests.clone()))?;
        registry.register(Box::new(http_duration.clone()))?;
        registry.register(Box::new(db_pool_connections.clone()))?;
        registry.register(Box::new(db_pool_max.clone()))?;
        let agent_sessions = IntGauge::new("agent_sessions", "Agent sessions held by this server")?;
        let long_poll_waiters = IntGauge::new("long_poll_waiters", "Agent long-polls waiting for a task")?;
        let agent_messages = IntCounterVec::new(
            Opts::new("agent_messages_total", "Agent messages processed, by kind (both transports)"),
            &["kind"],
        )?;
        let agent_messages_dropped = IntCounterVec::new(
            Opts::new("agent_messages_dropped_total", "Agent messages refused (HTTP) or dropped (NATS), by reason"),
            &["reason"],
        )?;
        registry.register(Box::new(bus_connected.clone()))?;
        registry.register(Box::new(agent_sessions.clone()))?;
        registry.register(Box::new(long_poll_waiters.clone()))?;
        registry.register(Box::new(agent_messages.clone()))?;
        registry.register(Box::new(agent_messages_dropped.clone()))?;
        let ws_sessions = IntGauge::new("ws_sessions", "WebSocket sessions open on this server")?;
        let ws_slow_consumers = prometheus::IntCounter::new(
            "ws_slow_consumers_closed_total",
            "WebSocket sessions closed because the client could not keep up",
        )?;
        registry.register(Box::new(ws_sessions.clone()))?;
        registry.register(Box::new(ws_slow_consumers.clone()))?;
        Ok(Metrics {
            registry,
            http_requests,
            http_duration,
            db_pool_connections,
            db_pool_max,
            bus_connected,
            agent_sessions,
            long_poll_waiters,
            agent_messages,
            agent_messages_dropped,
            ws_sessions,
            ws_slow_consumers,
        })
    }

    pub fn ws_session_opened(&self) {
        self.ws_sessions.inc();
    }

    pub fn ws_session_closed(&self) {
        self.ws_sessions.dec();
    }

    pub fn ws_slow_consumer_closed(&self) {
        self.ws_slow_consumers.inc();
    }

    /// Counts one answered request. `route` is the route pattern (`/api/v1/experiments/{id}`), never
    /// the raw path, so the number of series stays bounded.
    pub fn observe_request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        self.http_requests.with_label_values(&[method, route, &status.to_string()]).inc();
        self.http_duration.with_label_values(&[method, route]).observe(seconds);
    }

    /// Renders the text exposition format, refreshing the values that are read at scrape time.
    pub fn render(&self, now: Snapshot<'_>) -> String {
        let pool = now.pool;
        let in_use = pool.connections.saturating_sub(pool.idle);
        self.db_pool_connections.with_label_values(&["idle"]).set(i64::from(pool.idle));
        self.db_pool_connections.with_label_values(&["in_use"]).set(i64::from(in_use));
        self.db_pool_max.set(i64::from(pool.max_size));
        self.bus_connected.set(i64::from(now.bus_connected));
        self.agent_sessions.set(i64::try_from(now.agent_sessions).unwrap_or(i64::MAX));
        self.long_poll_waiters.set(i64::try_from(now.long_poll_waiters).unwrap_or(i64::MAX));
        let kinds = [
            ("heartbeat", &now.ingest.heartbeats),
            ("task_status", &now.ingest.task_reports),
            ("metrics", &now.ingest.metric_batches),
            ("metrics_duplicate", &now.ingest.duplicate_batches),
        ];
        for (kind, count) in kinds {
            set_counter(&self.agent_messages, kind, count.load(Ordering::Relaxed));
        }
        for (reason, count) in now.ingest.dropped_by_reason() {
            set_counter(&self.agent_messages_dropped, reason, count);
        }
        let mut buffer = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buffer) {
            tracing::warn!(error = %e, "cannot encode metrics");
        }
        String::from_utf8_lossy(&buffer).into_owned()
    }
}

/// Counters owned elsewhere (atomics) are mirrored into Prometheus counters at scrape time.
fn set_counter(counters: &IntCounterVec, label: &str, value: u64) {
    let counter = counters.with_label_values(&[label]);
    counter.reset();
    counter.inc_by(value);
}
