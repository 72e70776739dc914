//! Phoenix's pipeline between software nobody here wrote: the OpenTelemetry Python SDK sends over
//! OTLP/gRPC and OTLP/HTTP into the `otlp` receiver; the `prometheus` receiver scrapes a Python
//! prometheus-client exporter and a real Prometheus's own `/metrics`; a real Prometheus remote-writes
//! into the `prometheus_remote_write` receiver. The output goes by remote write into a real Prometheus
//! server, and Prometheus's own HTTP API says what arrived.
//!
//! Needs `PHOENIX_TEST_OTEL_PYTHON` (a Python with the SDK and prometheus-client; scripts/test installs
//! it) and `prometheus` on the PATH (the Debian package; scripts/test installs it).

mod support;

use std::time::{Duration, Instant};

use phoenix_pipeline::config::parse;
use phoenix_pipeline::engine::Pipeline;
use support::{free_port, send_with_the_sdk, wait_for, ClientExporter, Prometheus, Series, ROUTES, USERS};

/// A pipeline from `receiver` (its YAML) through `processors` to Prometheus.
fn pipeline(receiver: &str, prometheus: &Prometheus, processors: &str, chain: &str) -> Pipeline {
    let kind = receiver.split(':').next().expect("a receiver type").trim();
    let text = format!(
        "receivers: {{{receiver}}}\n\
         processors: {processors}\n\
         exporters: {{prometheusremotewrite: {{endpoint: \"{}\"}}}}\n\
         service: {{pipelines: {{metrics: {{receivers: [{kind}], processors: [{chain}], exporters: [prometheusremotewrite]}}}}}}\n",
        prometheus.write_url()
    );
    let config = parse(&text).expect("config");
    let dir = std::env::temp_dir();
    Pipeline::build(&config, None, Vec::new(), &dir).unwrap_or_else(|e| panic!("{e:?}"))
}

/// Sends with the SDK as `service` over `protocol`, runs the pipeline once, and waits for the output
/// to reach Prometheus.
async fn run(protocol: &str, processors: &str, chain: &str, service: &str, prometheus: &Prometheus) {
    let port = free_port();
    let receiver = format!("otlp: {{protocols: {{{protocol}: {{endpoint: \"127.0.0.1:{port}\"}}}}}}");
    let mut pipeline = pipeline(&receiver, prometheus, processors, chain);
    send_with_the_sdk(protocol, &format!("http://127.0.0.1:{port}"), service).await;
    // The sender has exited, so everything it sent is in the receiver's buffer: one flush takes it.
    let (stats, errors) = pipeline.run_interval(chrono_now_ms());
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(
        stats.input_series as u64,
        3 * USERS * ROUTES,
        "a counter, a histogram and a gauge series per user and route"
    );
    // Delivery is in the background: keep the pipeline (and its sender) alive until it arrives.
    let count = format!("count(shop_requests_total{{job=\"{service}\"}})");
    wait_for("the series to reach Prometheus", || async { prometheus.number(&count).await }).await;
    drop(pipeline);
}

fn chrono_now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64
}

/// What the sender's counters add up to, computed here on our own.
fn expected_requests_total() -> f64 {
    ((0..USERS).map(|u| u % 7 + 1).sum::<u64>() * ROUTES) as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_metrics_over_grpc_and_http_reach_prometheus_unchanged_through_a_pass_through_and_cut_through_aggregate() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let prometheus = Prometheus::backend().await;

    run("grpc", "{}", "", "baseline", &prometheus).await;
    let total = |job: &str, metric: &str| format!("sum({metric}{{job=\"{job}\"}})");
    let series = |job: &str, metric: &str| format!("count({metric}{{job=\"{job}\"}})");
    assert_eq!(prometheus.number(&series("baseline", "shop_requests_total")).await, Some((USERS * ROUTES) as f64));
    assert_eq!(prometheus.number(&total("baseline", "shop_requests_total")).await, Some(expected_requests_total()));
    assert_eq!(prometheus.number(&series("baseline", "shop_latency_count")).await, Some((USERS * ROUTES) as f64));
    assert_eq!(prometheus.number(&total("baseline", "shop_latency_count")).await, Some((USERS * ROUTES) as f64));
    assert_eq!(prometheus.number(&series("baseline", "shop_queue_depth")).await, Some((USERS * ROUTES) as f64));
    let depths = ((0..USERS).map(|u| u % 3).sum::<u64>() * ROUTES) as f64;
    assert_eq!(prometheus.number(&total("baseline", "shop_queue_depth")).await, Some(depths));

    run("http", "{aggregate: {labels: [user_id]}}", "aggregate", "aggregate", &prometheus).await;
    assert_eq!(prometheus.number(&series("aggregate", "shop_requests_total")).await, Some(ROUTES as f64));
    assert_eq!(prometheus.number(&total("aggregate", "shop_requests_total")).await, Some(expected_requests_total()));
    assert_eq!(prometheus.number(&series("aggregate", "shop_latency_count")).await, Some(ROUTES as f64));
    assert_eq!(prometheus.number(&series("aggregate", "shop_queue_depth")).await, Some(ROUTES as f64));
    assert_eq!(
        prometheus.number(&total("aggregate", "shop_latency_count")).await,
        Some((USERS * ROUTES) as f64),
        "every recorded value is still counted"
    );
    // The buckets merged bucket by bucket: values of 0.0 (u % 5 == 0) fall in the first bucket (le=0).
    let zeros = prometheus.number("sum(shop_latency_bucket{job=\"aggregate\", le=\"0\"})").await;
    assert_eq!(zeros, Some((USERS.div_ceil(5) * ROUTES) as f64));
}

/// A job's series without the labels that differ between two paths to the same target (`job`) and
/// with `le` in one spelling (Phoenix writes bounds in their shortest form, `1` for `1.0`, as the
/// Collector's remote-write exporter does), leaving out Prometheus's per-scrape series.
fn comparable(series: Vec<Series>) -> Vec<(Vec<(String, String)>, f64)> {
    let mut out: Vec<(Vec<(String, String)>, f64)> = series
        .into_iter()
        .filter(|(labels, _)| {
            let name = labels.get("__name__").map(String::as_str).unwrap_or("");
            name != "up" && !name.starts_with("scrape_")
        })
        .map(|(mut labels, value)| {
            labels.remove("job");
            if let Some(le) = labels.get_mut("le") {
                *le = le.parse::<f64>().map(|b| b.to_string()).unwrap_or_else(|_| le.clone());
            }
            (labels.into_iter().collect(), value)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Runs `pipeline`'s intervals until `done` holds, then a little longer so the last output is delivered.
async fn run_until(pipeline: &mut Pipeline, what: &str, done: impl AsyncFn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        let (_, errors) = pipeline.run_interval(chrono_now_ms());
        assert!(errors.is_empty(), "{errors:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prometheus_receiver_scrapes_a_client_exporter_and_prometheus_itself_as_prometheus_does() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let exporter = ClientExporter::start().await;
    let target = exporter.target();
    // The backend scrapes the same targets directly: what comes through Phoenix must match.
    let backend = Prometheus::start(|port| {
        format!(
            "global: {{scrape_interval: 1s}}\nscrape_configs:\n\
             - {{job_name: app-direct, static_configs: [{{targets: ['{target}']}}]}}\n\
             - {{job_name: prom-direct, static_configs: [{{targets: ['127.0.0.1:{port}']}}]}}\n"
        )
    })
    .await;
    let receiver = format!(
        "prometheus: {{config: {{scrape_configs: [\
         {{job_name: app, scrape_interval: 1s, static_configs: [{{targets: ['{target}']}}]}},\
         {{job_name: prom-self, scrape_interval: 1s, static_configs: [{{targets: ['127.0.0.1:{}']}}]}}]}}}}",
        backend.port
    );
    let mut pipeline = pipeline(&receiver, &backend, "{}", "");
    run_until(&mut pipeline, "both scrapes and the direct ones in the backend", async || {
        let up = backend.series("up == 1").await;
        ["app", "prom-self", "app-direct", "prom-direct"]
            .iter()
            .all(|job| up.iter().any(|(labels, _)| labels.get("job").map(String::as_str) == Some(*job)))
    })
    .await;
    // A last interval so that the scrape the direct one is compared with has been delivered.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    pipeline.run_interval(chrono_now_ms());
    wait_for("the client exporter's series through Phoenix", || async {
        let direct = comparable(backend.series("{job=\"app-direct\"}").await);
        let through = comparable(backend.series("{job=\"app\"}").await);
        (direct.len() >= 20 && direct == through).then_some(())
    })
    .await;
    let through = comparable(backend.series("{job=\"app\"}").await);
    let find = |name: &str, label: (&str, &str)| {
        through
            .iter()
            .find(|(labels, _)| {
                labels.contains(&("__name__".to_string(), name.to_string()))
                    && labels.contains(&(label.0.to_string(), label.1.to_string()))
            })
            .map(|(_, value)| *value)
    };
    assert_eq!(find("shop_orders_total", ("shop", "s3")), Some(4.0), "{through:?}");
    assert_eq!(find("shop_queue_depth", ("shop", "s4")), Some(40.0));
    assert_eq!(find("shop_order_seconds_bucket", ("le", "1")), Some(2.0), "the histogram's buckets");
    assert_eq!(find("shop_order_seconds_count", ("instance", &target)), Some(3.0));
    // Prometheus's own metrics: its build info as it reports it, and a histogram with all its buckets.
    let labels = |series: Vec<Series>| {
        series
            .into_iter()
            .map(|(mut l, _)| {
                l.remove("job");
                l
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        labels(backend.series("prometheus_build_info{job=\"prom-self\"}").await),
        labels(backend.series("prometheus_build_info{job=\"prom-direct\"}").await)
    );
    let buckets = |job: &str| {
        format!("count(prometheus_http_request_duration_seconds_bucket{{job=\"{job}\", handler=\"/-/ready\"}})")
    };
    let direct_buckets = backend.number(&buckets("prom-direct")).await;
    assert!(direct_buckets.is_some_and(|n| n > 1.0), "{direct_buckets:?}");
    assert_eq!(backend.number(&buckets("prom-self")).await, direct_buckets);
    drop(exporter);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prometheus_remote_writes_through_phoenix_into_another_unchanged() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let exporter = ClientExporter::start().await;
    let target = exporter.target();
    let backend = Prometheus::backend().await;
    let receiver_port = free_port();
    let receiver = format!("prometheus_remote_write: {{endpoint: '127.0.0.1:{receiver_port}'}}");
    let mut pipeline = pipeline(&receiver, &backend, "{}", "");
    // The sender scrapes the exporter and remote-writes everything to Phoenix, which writes to the backend.
    let sender = Prometheus::start(|_| {
        format!(
            "global: {{scrape_interval: 1s}}\nscrape_configs:\n\
             - {{job_name: app, static_configs: [{{targets: ['{target}']}}]}}\n\
             remote_write:\n\
             - url: http://127.0.0.1:{receiver_port}/api/v1/write\n\
             \x20 queue_config: {{batch_send_deadline: 1s}}\n\
             \x20 metadata_config: {{send_interval: 1s}}\n"
        )
    })
    .await;
    run_until(&mut pipeline, "the sender's series in the backend", async || {
        backend.number("count(shop_order_seconds_bucket{job=\"app\"})").await == Some(3.0)
            && backend.number("count(shop_orders_total{job=\"app\"})").await == Some(5.0)
    })
    .await;
    wait_for("every series the sender holds in the backend, with the same values", || async {
        let at_sender = comparable(sender.series("{job=\"app\"}").await);
        let at_backend = comparable(backend.series("{job=\"app\"}").await);
        (at_sender.len() >= 20 && at_sender == at_backend).then_some(())
    })
    .await;
    drop(exporter);
}
