//! `phoenix experiment …`

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};

use super::client::Api;
use super::error::CliError;
use super::output::{self, col, Column};
use super::{confirm, ClientOpts};

const COLUMNS: [Column; 5] = [
    col("ID", "/id"),
    col("NAME", "/name"),
    col("PHASE", "/phase"),
    col("DURATION", "/duration_secs"),
    col("CREATED", "/created_at"),
];

/// `get` on a table: one experiment in detail.
const DETAIL: [Column; 12] = [
    col("ID", "/id"),
    col("NAME", "/name"),
    col("PHASE", "/phase"),
    col("REASON", "/reason"),
    col("BASELINE", "/baseline/template"),
    col("CANDIDATE", "/candidate/template"),
    col("AGENTS", "/target_agents"),
    col("MEASURING FROM", "/measuring_from"),
    col("MEASURING UNTIL", "/measuring_until"),
    col("VERDICT", "/results/verdict"),
    col("RECOMMENDATION", "/results/recommendation"),
    col("DEPLOYMENT", "/deployment_id"),
];

#[derive(Debug, Args)]
pub struct ExperimentCommand {
    #[command(subcommand)]
    pub action: ExperimentAction,
    #[command(flatten)]
    pub opts: ClientOpts,
}

#[derive(Debug, Subcommand)]
pub enum ExperimentAction {
    /// Create an experiment from a file (the API's JSON or YAML) or from flags.
    #[command(
        after_help = "Examples:\n  phoenix experiment create -f experiment.yaml\n  phoenix experiment create --name topk-test --baseline baseline --candidate topk --param k=10 \\\n      --target env=prod --duration 30m --warmup 5m --critical nginx,postgres"
    )]
    Create(CreateArgs),
    /// List experiments, newest first.
    #[command(after_help = "Example:\n  phoenix experiment list --phase running")]
    List {
        #[arg(long)]
        phase: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Show one experiment.
    #[command(after_help = "Example:\n  phoenix experiment get 0195d2c4-…")]
    Get { id: String },
    /// Start it: both pipelines go to the target agents.
    #[command(after_help = "Example:\n  phoenix experiment start 0195d2c4-…")]
    Start { id: String },
    /// Stop it and remove both pipelines.
    #[command(after_help = "Example:\n  phoenix experiment stop 0195d2c4-… --yes")]
    Stop {
        id: String,
        #[arg(long)]
        yes: bool,
    },
    /// Make the candidate a deployment (new, or a new version of --deployment).
    #[command(after_help = "Example:\n  phoenix experiment promote 0195d2c4-… --name edge-topk")]
    Promote {
        id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        deployment: Option<String>,
        #[arg(long)]
        notes: Option<String>,
    },
    /// Remove the candidate and keep the baseline.
    #[command(after_help = "Example:\n  phoenix experiment rollback 0195d2c4-… --yes")]
    Rollback {
        id: String,
        #[arg(long)]
        yes: bool,
    },
    /// Delete it (not while active).
    #[command(after_help = "Example:\n  phoenix experiment delete 0195d2c4-… --yes")]
    Delete {
        id: String,
        #[arg(long)]
        yes: bool,
    },
    /// Its history.
    #[command(after_help = "Example:\n  phoenix experiment events 0195d2c4-…")]
    Events { id: String },
    /// Its KPIs (live while running, final after).
    #[command(after_help = "Example:\n  phoenix experiment kpis 0195d2c4-… -o json")]
    Kpis { id: String },
    /// Follow it live until it settles: phase changes and the progress of the measurement window.
    #[command(after_help = "Example:\n  phoenix experiment watch 0195d2c4-…")]
    Watch { id: String },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The experiment as JSON or YAML (the API's body).
    #[arg(short = 'f', long = "file", conflicts_with_all = ["name", "baseline", "candidate"])]
    pub file: Option<PathBuf>,
    #[arg(long)]
    pub name: Option<String>,
    #[arg(long, default_value = "")]
    pub description: String,
    /// The baseline's template.
    #[arg(long)]
    pub baseline: Option<String>,
    /// The candidate's template.
    #[arg(long)]
    pub candidate: Option<String>,
    /// A candidate parameter, `key=value` (repeat it).
    #[arg(long = "param", value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// A baseline parameter, `key=value` (repeat it).
    #[arg(long = "baseline-param", value_name = "KEY=VALUE")]
    pub baseline_params: Vec<String>,
    /// Agents by label, `key=value[,key=value]`.
    #[arg(long)]
    pub target: Option<String>,
    /// Agents by id, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub agents: Vec<String>,
    /// Measurement window, e.g. 90s, 30m, 2h.
    #[arg(long, default_value = "30m")]
    pub duration: String,
    /// Warm-up before measuring.
    #[arg(long, default_value = "0s")]
    pub warmup: String,
    /// Processes the candidate must keep, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub critical: Vec<String>,
    #[arg(long)]
    pub auto_promote: bool,
}

pub async fn run(command: ExperimentCommand) -> Result<(), super::CliError> {
    let opts = command.opts;
    let mut api = Api::resolve(opts.server.as_deref(), opts.verbose)?;
    let path = |id: &str, rest: &str| format!("/api/v1/experiments/{id}{rest}");
    let (value, columns): (Value, &[Column]) = match command.action {
        ExperimentAction::Create(args) => (api.post("/api/v1/experiments", create_body(args)?).await?, &COLUMNS),
        ExperimentAction::List { phase, limit } => {
            let filter = phase.map(|p| format!("&phase={p}")).unwrap_or_default();
            (api.get(&format!("/api/v1/experiments?limit={limit}{filter}")).await?, &COLUMNS)
        }
        ExperimentAction::Get { id } => (api.get(&path(&id, "")).await?, &DETAIL),
        ExperimentAction::Start { id } => (api.post(&path(&id, "/start"), json!({})).await?, &COLUMNS),
        ExperimentAction::Stop { id, yes } => {
            confirm(&format!("Stop experiment {id} and remove its pipelines?"), yes)?;
            (api.post(&path(&id, "/stop"), json!({})).await?, &COLUMNS)
        }
        ExperimentAction::Promote { id, name, deployment, notes } => {
            let body = json!({"name": name, "deployment_id": deployment, "notes": notes});
            (api.post(&path(&id, "/promote"), without_nulls(body)).await?, &COLUMNS)
        }
        ExperimentAction::Rollback { id, yes } => {
            confirm(&format!("Roll back experiment {id} (remove the candidate)?"), yes)?;
            (api.post(&path(&id, "/rollback"), json!({})).await?, &COLUMNS)
        }
        ExperimentAction::Delete { id, yes } => {
            let (question, gone) = (format!("Delete experiment {id}?"), format!("deleted experiment {id}"));
            return super::delete_confirmed(&mut api, &path(&id, ""), &question, yes, &gone).await;
        }
        ExperimentAction::Events { id } => {
            const EVENTS: [Column; 4] = [
                col("TIME", "/created_at"),
                col("TYPE", "/event_type"),
                col("TO", "/to_phase"),
                col("MESSAGE", "/message"),
            ];
            (api.get(&path(&id, "/events")).await?, &EVENTS)
        }
        ExperimentAction::Kpis { id } => {
            const KPIS: [Column; 5] = [
                col("VERDICT", "/verdict"),
                col("REDUCTION %", "/cardinality_reduction_pct"),
                col("ACCURACY %", "/accuracy_pct"),
                col("SAVING/MONTH", "/cost/monthly_saving"),
                col("P-VALUE", "/p_value"),
            ];
            (api.get(&path(&id, "/kpis")).await?, &KPIS)
        }
        ExperimentAction::Watch { id } => return super::watch::experiment(&mut api, &id, opts.output, &DETAIL).await,
    };
    output::print(&value, opts.output, columns)
}

fn without_nulls(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(map.into_iter().filter(|(_, v)| !v.is_null()).collect()),
        other => other,
    }
}

/// The API body from a file or from flags.
fn create_body(args: CreateArgs) -> Result<Value, CliError> {
    if let Some(file) = &args.file {
        let text = std::fs::read_to_string(file)
            .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", file.display())))?;
        return serde_yaml_ng::from_str::<Value>(&text)
            .map_err(|e| CliError::Invalid(format!("{} is not JSON or YAML: {e}", file.display())));
    }
    let missing = |flag: &str| CliError::Usage(format!("{flag} is needed (or -f FILE)"));
    let target = match (&args.target, args.agents.is_empty()) {
        (Some(selector), true) => {
            json!({"selector": labels(selector)?})
        }
        (None, false) => json!({"agents": args.agents}),
        (Some(_), false) => return Err(CliError::Usage("--target and --agents cannot both be given".into())),
        (None, true) => return Err(missing("--target or --agents")),
    };
    Ok(json!({
        "name": args.name.ok_or_else(|| missing("--name"))?,
        "description": args.description,
        "baseline": {"template": args.baseline.ok_or_else(|| missing("--baseline"))?, "parameters": pairs(&args.baseline_params, true)?},
        "candidate": {"template": args.candidate.ok_or_else(|| missing("--candidate"))?, "parameters": pairs(&args.params, true)?},
        "target": target,
        "duration_secs": duration_secs(&args.duration)?,
        "warmup_secs": duration_secs(&args.warmup)?,
        "critical_processes": args.critical,
        "auto_promote": args.auto_promote,
    }))
}

/// `key=value` pairs as a JSON object; with `typed`, values that parse as JSON (numbers, booleans,
/// lists) keep that type.
pub(super) fn pairs(items: &[String], typed: bool) -> Result<Map<String, Value>, CliError> {
    items
        .iter()
        .filter(|item| !item.trim().is_empty())
        .map(|item| {
            let (key, value) =
                item.split_once('=').ok_or_else(|| CliError::Usage(format!("'{item}' is not key=value")))?;
            let value = if typed {
                serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_string()))
            } else {
                Value::String(value.to_string())
            };
            Ok((key.trim().to_string(), value))
        })
        .collect()
}

/// Labels written `key=value[,key=value]`, as a JSON object of strings.
pub(super) fn labels(text: &str) -> Result<Map<String, Value>, CliError> {
    pairs(&text.split(',').map(str::to_string).collect::<Vec<_>>(), false)
}

/// `90`, `90s`, `30m`, `2h`, `1d` -> seconds.
pub fn duration_secs(text: &str) -> Result<u64, CliError> {
    let text = text.trim();
    let (number, unit) = match text.char_indices().last() {
        Some((i, 's')) => (&text[..i], 1),
        Some((i, 'm')) => (&text[..i], 60),
        Some((i, 'h')) => (&text[..i], 3600),
        Some((i, 'd')) => (&text[..i], 86_400),
        _ => (text, 1),
    };
    number
        .parse::<u64>()
        .map(|n| n * unit)
        .map_err(|_| CliError::Usage(format!("'{text}' is not a duration like 90s, 30m or 2h")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_pairs_read_as_operators_write_them() {
        assert_eq!(duration_secs("30m").ok(), Some(1800));
        assert_eq!(duration_secs("90").ok(), Some(90));
        assert_eq!(duration_secs("2h").ok(), Some(7200));
        assert!(duration_secs("soon").is_err());
        let typed = pairs(&["k=10".into(), "metric=process.cpu.time".into(), "critical=[\"nginx\"]".into()], true)
            .expect("pairs");
        assert_eq!(Value::Object(typed), json!({"k": 10, "metric": "process.cpu.time", "critical": ["nginx"]}));
        assert!(pairs(&["nokey".into()], true).is_err());
    }
}
