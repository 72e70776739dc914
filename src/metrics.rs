//! Prometheus metrics of the server process, rendered by `GET /metrics`.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::db::PoolUsage;

/// Every metric the server exports, registered in one registry owned by the app (no globals).
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    db_pool_connections: IntGaugeVec,
    db_pool_max: IntGauge,
    bus_connected: IntGauge,
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
        registry.register(Box::new(bus_connected.clone()))?;
        Ok(Metrics { registry, http_requests, http_duration, db_pool_connections, db_pool_max, bus_connected })
    }

    /// Counts one answered request. `route` is the route pattern (`/api/v1/experiments/{id}`), never
    /// the raw path, so the number of series stays bounded.
    pub fn observe_request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        self.http_requests.with_label_values(&[method, route, &status.to_string()]).inc();
        self.http_duration.with_label_values(&[method, route]).observe(seconds);
    }

    /// Renders the text exposition format, refreshing the gauges that are read at scrape time.
    pub fn render(&self, pool: PoolUsage, bus_connected: bool) -> String {
        let in_use = pool.connections.saturating_sub(pool.idle);
        self.db_pool_connections.with_label_values(&["idle"]).set(i64::from(pool.idle));
        self.db_pool_connections.with_label_values(&["in_use"]).set(i64::from(in_use));
        self.db_pool_max.set(i64::from(pool.max_size));
        self.bus_connected.set(i64::from(bus_connected));
        let mut buffer = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buffer) {
            tracing::warn!(error = %e, "cannot encode metrics");
        }
        String::from_utf8_lossy(&buffer).into_owned()
    }
}
