//! The agent on the real data path: OTLP/gRPC in -> a chain -> remote write out, points per CPU-second
//! of the agent (= per core), for a pass-through (decode + encode only) and for the `hybrid` chain, in
//! the same run; and the agent's resident memory per 100,000 active series.
//!
//! Run: `cargo run --release --example otlp_throughput [-- --series 100000 --seconds 10 --rounds 3 --rate 0]`
//! (`--rate`: points per second in all, 0 = as fast as the agent takes them; each case runs in a fresh
//! process, so its memory is its own).
//!
//! The agent side (receiver, pipeline, exporter) runs in this process alone; the load generator
//! (`pipeline::loadgen`, what `phoenix loadgen otlp` runs) and the remote-write sink run in a child
//! process (this program again, with `--child`), so the CPU and memory measured are the agent's.

use std::io::{BufRead, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use phoenix_pipeline::config::parse;
use phoenix_pipeline::engine::Pipeline;
use phoenix_pipeline::loadgen::{self, LoadSpec, Target};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

fn number(name: &str, default: u64) -> u64 {
    arg(name).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// User + system CPU seconds of this whole process.
fn process_cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the struct we own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// Two labels of sqrt(series / 10) values each, over 10 metrics, at `rate` points/s (0: as fast as the
/// agent takes them).
fn spec(series: u64, seconds: u64, rate: u64) -> LoadSpec {
    LoadSpec {
        metrics: 10,
        labels: 2,
        values: ((series / 10) as f64).sqrt().round() as usize,
        rate,
        duration: Duration::from_secs(seconds),
        batch: 2000,
        service: "bench".into(),
    }
}

/// The child: a remote-write sink on `--sink`, and the load sent to `--target` once the sink listens.
fn child() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    runtime.block_on(async {
        let sink = tokio::net::TcpListener::bind(("127.0.0.1", number("--sink", 0) as u16)).await.expect("sink");
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = sink.accept().await else { continue };
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(|request: hyper::Request<hyper::body::Incoming>| async move {
                            use http_body_util::BodyExt;
                            let _ = request.into_body().collect().await;
                            let mut answer = hyper::Response::new(http_body_util::Empty::<hyper::body::Bytes>::new());
                            *answer.status_mut() = hyper::StatusCode::NO_CONTENT;
                            Ok::<_, std::convert::Infallible>(answer)
                        });
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
                });
            }
        });
        println!("ready");
        let target = Target::OtlpGrpc(format!("http://127.0.0.1:{}", number("--target", 0)));
        let spec = spec(number("--series", 100_000), number("--seconds", 10), number("--rate", 0));
        let sent = loadgen::run(&spec, &target).await;
        println!("{}", serde_json::to_string(&sent.expect("load")).expect("json"));
        // Keep the sink up until the parent has flushed everything (it closes our stdin).
        tokio::task::spawn_blocking(|| std::io::stdin().lines().count()).await.expect("stdin");
    });
}

struct Run {
    points: u64,
    cpu_seconds: f64,
    rss_per_100k_series: f64,
    output_series: usize,
}

/// One run of `processors` (chain `names`) against a fresh child.
fn run(processors: &str, names: &str, series: u64, seconds: u64, rate: u64) -> Run {
    let (receiver, sink) = (free_port(), free_port());
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let _inside = runtime.enter();
    let yaml = format!(
        "receivers: {{otlp: {{protocols: {{grpc: {{endpoint: '127.0.0.1:{receiver}', max_recv_msg_size_mib: 64}}}}, max_buffered_points: 10000000}}}}\n\
         processors: {{{processors}}}\n\
         exporters: {{prometheusremotewrite: {{endpoint: 'http://127.0.0.1:{sink}/api/v1/write', max_queue: 10000}}}}\n\
         service: {{pipelines: {{metrics: {{receivers: [otlp], processors: [{names}], exporters: [prometheusremotewrite]}}}}}}\n"
    );
    let config = parse(&yaml).unwrap_or_else(|e| panic!("{e:?}"));
    let rss_before = phoenix_pipeline::procfs::resident_bytes();
    let mut pipeline = Pipeline::build(&config, None, Vec::new(), &std::env::temp_dir()).expect("pipeline");
    let mut child = Command::new(std::env::current_exe().expect("exe"))
        .args(["--child", "--sink", &sink.to_string(), "--target", &receiver.to_string()])
        .args(["--series", &series.to_string(), "--seconds", &seconds.to_string(), "--rate", &rate.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("child");
    let mut lines = std::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    assert_eq!(lines.next().and_then(Result::ok).as_deref(), Some("ready"));
    let (done_tx, done) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(lines.next().and_then(Result::ok));
    });
    let cpu_before = process_cpu_seconds();
    let (mut points, mut rss_peak, mut output_series) = (0u64, 0u64, 0usize);
    let mut sent = None;
    let mut interval = |pipeline: &mut Pipeline| {
        let (stats, errors) = pipeline.run_interval(chrono::Utc::now().timestamp_millis());
        assert!(errors.is_empty(), "{errors:?}");
        rss_peak = rss_peak.max(phoenix_pipeline::procfs::resident_bytes());
        output_series = output_series.max(stats.output_series);
        stats.input_points as u64
    };
    while sent.is_none() {
        std::thread::sleep(Duration::from_secs(1));
        points += interval(&mut pipeline);
        sent = done.try_recv().ok().flatten();
    }
    let sent: loadgen::Sent = serde_json::from_str(&sent.expect("the load's result")).expect("json");
    // What is still buffered, then until the exporter has delivered everything.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        points += interval(&mut pipeline);
        let queued: usize = pipeline.telemetry().exporters.iter().map(|e| e.queue_depth).sum();
        if (points >= sent.points && queued == 0) || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let cpu_seconds = process_cpu_seconds() - cpu_before;
    assert_eq!(points, sent.points, "every point sent went through ({:?})", sent.first_error);
    drop(child.stdin.take());
    let _ = child.wait();
    let rss_per_100k_series = rss_peak.saturating_sub(rss_before) as f64 / sent.series as f64 * 100_000.0;
    Run { points, cpu_seconds, rss_per_100k_series, output_series }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

const CASES: [(&str, &str, &str); 2] = [
    ("pass-through (decode + encode)", "", ""),
    (
        "hybrid",
        "adaptive_filter: {target_series: 50, group_by: [l0]}, aggregate: {labels: [l1]}, cardinality_limit: {max_series: 1000}",
        "adaptive_filter, aggregate, cardinality_limit",
    ),
];

/// One case in this process (fresh, so its memory is its own): prints `rate rss output_series`.
fn case(index: usize, series: u64, seconds: u64, rounds: u64, rate: u64) {
    let (_, processors, names) = CASES[index];
    let runs: Vec<Run> = (0..rounds).map(|_| run(processors, names, series, seconds, rate)).collect();
    let rate = median(runs.iter().map(|r| r.points as f64 / r.cpu_seconds.max(1e-9)).collect());
    let rss = median(runs.iter().map(|r| r.rss_per_100k_series).collect());
    println!("{rate} {rss} {}", runs.last().map_or(0, |r| r.output_series));
}

fn main() {
    if std::env::args().any(|a| a == "--child") {
        return child();
    }
    phoenix_nats::install_tls_provider();
    let series = number("--series", 100_000);
    let seconds = number("--seconds", 10);
    let rounds = number("--rounds", 3);
    let rate = number("--rate", 0);
    if let Some(index) = arg("--case") {
        return case(index.parse().expect("a case number"), series, seconds, rounds, rate);
    }
    let pace = if rate == 0 { "as fast as the agent takes them".to_string() } else { format!("{rate} points/s") };
    println!(
        "# otlp_throughput — {} (2 cores), {series} series (10 metrics), {pace}, {seconds} s of load per run, median of {rounds}",
        chrono::Utc::now().format("%Y-%m-%d")
    );
    println!("| pipeline | points/s per core | vs pass-through | RSS per 100,000 series | output series |");
    println!("|---|---|---|---|---|");
    let mut baseline = None;
    for (index, (name, _, _)) in CASES.iter().enumerate() {
        let output = Command::new(std::env::current_exe().expect("exe"))
            .args(["--case", &index.to_string(), "--series", &series.to_string()])
            .args(["--seconds", &seconds.to_string(), "--rounds", &rounds.to_string(), "--rate", &rate.to_string()])
            .output()
            .expect("the case runs");
        assert!(output.status.success(), "{name}: {}", String::from_utf8_lossy(&output.stderr));
        let line = String::from_utf8_lossy(&output.stdout);
        let fields: Vec<f64> = line.split_whitespace().filter_map(|f| f.parse().ok()).collect();
        let (rate, rss, out) = (fields[0], fields[1], fields[2]);
        let base = *baseline.get_or_insert(rate);
        println!("| {name} | {:.2} M | {:.2}x | {:.1} MB | {out} |", rate / 1e6, rate / base, rss / 1e6);
        std::io::stdout().flush().ok();
    }
}
