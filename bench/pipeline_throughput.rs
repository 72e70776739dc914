//! Pipeline engine throughput: points per second per core through each processor, and through the
//! `hybrid` chain, on `process`-shaped input (the synthetic source's processes: 5 metrics, 4 labels
//! each), next to a pass-through chain measured in the same run. Also memory held per 100,000 series.
//!
//! Run: `cargo run --release --example pipeline_throughput [-- --processes 100000 --rounds 5]`.
//! One thread does all the work, so points/s of thread CPU time is points/s per core.

use phoenix_pipeline::config::parse;
use phoenix_pipeline::engine::{thread_cpu_seconds, ProcessorChain};
use phoenix_pipeline::model::Batch;
use phoenix_pipeline::sources::synthetic::SyntheticSource;
use phoenix_pipeline::sources::Source;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn chain(processors: &str, names: &str) -> ProcessorChain {
    let yaml = format!(
        "receivers: {{synthetic: {{profile: realistic, processes: 10}}}}\nprocessors: {{{processors}}}\nexporters: {{count: {{}}}}\nservice: {{pipelines: {{m: {{receivers: [synthetic], processors: [{names}], exporters: [count]}}}}}}\n"
    );
    let config = parse(&yaml).unwrap_or_else(|e| panic!("{yaml}: {e:?}"));
    ProcessorChain::from_config(&config, None).unwrap_or_else(|e| panic!("{e:?}"))
}

/// Median of `rounds` runs, each over a fresh copy of the input made before the clock starts.
fn points_per_cpu_second(mut chain: ProcessorChain, input: &Batch, rounds: usize) -> (f64, usize) {
    let mut rates = Vec::new();
    let mut output_series = 0;
    for _ in 0..rounds {
        let batch = input.clone();
        let started = thread_cpu_seconds();
        let (_, stats) = chain.process(batch, &[]);
        let spent = thread_cpu_seconds() - started;
        output_series = stats.output_series;
        rates.push(input.len() as f64 / spent.max(1e-9));
    }
    rates.sort_by(f64::total_cmp);
    (rates[rates.len() / 2], output_series)
}

fn main() {
    let processes = arg("--processes", 100_000);
    let rounds = arg("--rounds", 5);
    let yaml = format!("profile: realistic\nprocesses: {processes}\nseed: 7");
    let before = phoenix_pipeline::procfs::resident_bytes() as usize;
    let mut source = SyntheticSource::new(serde_yaml_ng::from_str(&yaml).expect("yaml"), "synthetic").expect("source");
    let input = source.collect(0);
    let held = (phoenix_pipeline::procfs::resident_bytes() as usize).saturating_sub(before);
    println!(
        "# pipeline throughput — {} (2 cores), {} points ({} processes x 5 metrics), median of {rounds}",
        chrono::Utc::now().format("%Y-%m-%d"),
        input.len(),
        processes
    );
    println!(
        "memory held by the input batch: {:.1} MB per 100,000 series",
        held as f64 / input.len() as f64 * 100_000.0 / 1e6
    );

    let cases = [
        ("pass-through (baseline)", "", ""),
        ("filter", "filter: {exclude: {labels: {executable: 'kworker|bash'}}}", "filter"),
        ("drop_labels", "drop_labels: {labels: [command, owner]}", "drop_labels"),
        ("topk (k=10)", "topk: {k: 10}", "topk"),
        ("adaptive_filter (target 50)", "adaptive_filter: {target_series: 50, critical: [nginx]}", "adaptive_filter"),
        ("cardinality_limit (1,000)", "cardinality_limit: {max_series: 1000}", "cardinality_limit"),
        (
            "hybrid",
            "adaptive_filter: {target_series: 50, critical: [nginx]}, drop_labels: {labels: [command, owner]}, cardinality_limit: {max_series: 1000}",
            "adaptive_filter, drop_labels, cardinality_limit",
        ),
    ];
    let mut baseline = None;
    println!("| pipeline | points/s per core | vs pass-through | output series |");
    println!("|---|---|---|---|");
    for (name, processors, names) in cases {
        let (rate, series) = points_per_cpu_second(chain(processors, names), &input, rounds);
        let base = *baseline.get_or_insert(rate);
        println!("| {name} | {:.2} M | {:.2}x | {series} |", rate / 1e6, rate / base);
    }
}
