//! `phoenix pipeline|deployment|fleet|user …`: thin commands over the REST API.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};

use super::client::Api;
use super::error::CliError;
use super::experiments::{labels, pairs};
use super::output::{self, col, Column};
use super::{confirm, delete_confirmed, ClientOpts};

/// Reads a pipeline given as a file (`config` inline) or a template with parameters.
fn pipeline_spec(template: Option<String>, params: &[String], file: Option<&PathBuf>) -> Result<Value, CliError> {
    match (template, file) {
        (Some(template), None) => Ok(json!({"template": template, "parameters": pairs(params, true)?})),
        (None, Some(file)) => {
            let config = std::fs::read_to_string(file)
                .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", file.display())))?;
            Ok(json!({"config": config}))
        }
        _ => Err(CliError::Usage("give a template (with --param k=v) or --file CONFIG".into())),
    }
}

#[derive(Debug, Args)]
pub struct PipelineCommand {
    #[command(subcommand)]
    pub action: PipelineAction,
    #[command(flatten)]
    pub opts: ClientOpts,
}

#[derive(Debug, Subcommand)]
pub enum PipelineAction {
    /// The templates (built-in and yours).
    #[command(after_help = "Example:\n  phoenix pipeline templates")]
    Templates,
    /// One template with its parameters and body.
    #[command(after_help = "Example:\n  phoenix pipeline template topk -o yaml")]
    Template { name: String },
    /// Checks a config file: every problem with its path; exit code 1 when invalid.
    #[command(after_help = "Example:\n  phoenix pipeline validate pipeline.yaml")]
    Validate { file: PathBuf },
    /// Renders a template with parameters.
    #[command(after_help = "Example:\n  phoenix pipeline render topk --param k=5")]
    Render {
        name: String,
        #[arg(long = "param", value_name = "KEY=VALUE")]
        params: Vec<String>,
    },
    /// Runs two templates over the same synthetic input and compares them.
    #[command(
        after_help = "Example:\n  phoenix pipeline preview --baseline baseline --candidate topk --param k=10 --processes 1000"
    )]
    Preview {
        #[arg(long)]
        baseline: String,
        #[arg(long)]
        candidate: String,
        /// Candidate parameters.
        #[arg(long = "param", value_name = "KEY=VALUE")]
        params: Vec<String>,
        #[arg(long, default_value = "high_cardinality")]
        profile: String,
        #[arg(long, default_value_t = 1000)]
        processes: u32,
    },
}

pub async fn pipeline(command: PipelineCommand) -> Result<(), CliError> {
    let opts = command.opts;
    let mut api = Api::resolve(opts.server.as_deref(), opts.verbose)?;
    const TEMPLATES: [Column; 2] = [col("NAME", "/name"), col("DESCRIPTION", "/description")];
    let (value, columns): (Value, &[Column]) = match command.action {
        PipelineAction::Templates => (api.get("/api/v1/pipelines/templates").await?, &TEMPLATES),
        PipelineAction::Template { name } => {
            (api.get(&format!("/api/v1/pipelines/templates/{name}")).await?, &TEMPLATES)
        }
        PipelineAction::Validate { file } => {
            let spec = pipeline_spec(None, &[], Some(&file))?;
            let checked = api.post("/api/v1/pipelines/validate", spec).await?;
            eprintln!("{} is valid", file.display());
            (checked, &[col("VALID", "/valid"), col("HASH", "/config_hash")])
        }
        PipelineAction::Render { name, params } => {
            let body = json!({"template": name, "parameters": pairs(&params, true)?});
            let rendered = api.post("/api/v1/pipelines/render", body).await?;
            if opts.output == output::Format::Table {
                print!("{}", rendered["config"].as_str().unwrap_or_default());
                return Ok(());
            }
            (rendered, &[])
        }
        PipelineAction::Preview { baseline, candidate, params, profile, processes } => {
            let body = json!({
                "baseline": {"template": baseline, "parameters": {}},
                "candidate": {"template": candidate, "parameters": pairs(&params, true)?},
                "source": {"synthetic": {"profile": profile, "processes": processes}},
            });
            const PREVIEW: [Column; 3] = [
                col("BASELINE SERIES", "/baseline/series"),
                col("CANDIDATE SERIES", "/candidate/series"),
                col("REDUCTION %", "/cardinality_reduction_pct"),
            ];
            (api.post("/api/v1/pipelines/preview", body).await?, &PREVIEW)
        }
    };
    output::print(&value, opts.output, columns)
}

#[derive(Debug, Args)]
pub struct DeploymentCommand {
    #[command(subcommand)]
    pub action: DeploymentAction,
    #[command(flatten)]
    pub opts: ClientOpts,
}

#[derive(Debug, Subcommand)]
pub enum DeploymentAction {
    /// Deploy a pipeline to the agents of a target.
    #[command(
        after_help = "Example:\n  phoenix deployment create --name edge-topk --template topk --param k=10 --target env=prod --waves 3,5,30,1"
    )]
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        template: Option<String>,
        #[arg(long = "param", value_name = "KEY=VALUE")]
        params: Vec<String>,
        /// An inline config file instead of a template.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Agents by label, `key=value[,key=value]`.
        #[arg(long)]
        target: String,
        /// Roll out in waves: `first_batch,growth,interval_secs,max_failures` (default: all at once).
        #[arg(long)]
        waves: Option<String>,
    },
    /// List deployments.
    #[command(after_help = "Example:\n  phoenix deployment list --status paused")]
    List {
        #[arg(long)]
        status: Option<String>,
    },
    /// Show one deployment.
    #[command(after_help = "Example:\n  phoenix deployment get 0195…")]
    Get { id: String },
    /// Change its pipeline (a new version when the config changes).
    #[command(after_help = "Example:\n  phoenix deployment update 0195… --template topk --param k=5 --notes 'fewer'")]
    Update {
        id: String,
        #[arg(long)]
        template: Option<String>,
        #[arg(long = "param", value_name = "KEY=VALUE")]
        params: Vec<String>,
        #[arg(long)]
        file: Option<PathBuf>,
        #[arg(long, default_value = "")]
        notes: String,
    },
    /// Remove it from every agent.
    #[command(after_help = "Example:\n  phoenix deployment delete 0195… --yes")]
    Delete {
        id: String,
        #[arg(long)]
        yes: bool,
    },
    /// Its versions, newest first.
    #[command(after_help = "Example:\n  phoenix deployment versions 0195…")]
    Versions { id: String },
    /// What changed between two versions.
    #[command(after_help = "Example:\n  phoenix deployment diff 0195… 3 --against 2")]
    Diff {
        id: String,
        version: i32,
        #[arg(long)]
        against: i32,
    },
    /// A new version with an earlier version's config (default: the previous one).
    #[command(after_help = "Example:\n  phoenix deployment rollback 0195… --to 1 --yes")]
    Rollback {
        id: String,
        #[arg(long)]
        to: Option<i32>,
        #[arg(long)]
        notes: Option<String>,
        #[arg(long)]
        yes: bool,
    },
    /// Stop sending the rollout further.
    #[command(after_help = "Example:\n  phoenix deployment pause 0195…")]
    Pause { id: String },
    /// Continue a paused rollout.
    #[command(after_help = "Example:\n  phoenix deployment resume 0195…")]
    Resume { id: String },
    /// Per agent: desired and applied version, state, last error.
    #[command(after_help = "Example:\n  phoenix deployment status 0195…")]
    Status { id: String },
    /// Follow the rollout live until it settles (active, degraded, paused, failed or deleted).
    #[command(after_help = "Example:\n  phoenix deployment watch 0195…")]
    Watch { id: String },
}

const DEPLOYMENTS: [Column; 5] = [
    col("ID", "/id"),
    col("NAME", "/name"),
    col("STATUS", "/status"),
    col("VERSION", "/current_version"),
    col("TEMPLATE", "/template"),
];

fn waves(text: &str) -> Result<Value, CliError> {
    let parts: Vec<&str> = text.split(',').map(str::trim).collect();
    let [first, growth, interval, failures] = parts.as_slice() else {
        return Err(CliError::Usage("--waves is first_batch,growth,interval_secs,max_failures".into()));
    };
    let number = |s: &str| {
        serde_json::from_str::<Value>(s).map_err(|_| CliError::Usage(format!("'{s}' in --waves is not a number")))
    };
    Ok(
        json!({"strategy": "waves", "first_batch": number(first)?, "growth": number(growth)?, "interval_secs": number(interval)?, "max_failures": number(failures)?}),
    )
}

pub async fn deployment(command: DeploymentCommand) -> Result<(), CliError> {
    let opts = command.opts;
    let mut api = Api::resolve(opts.server.as_deref(), opts.verbose)?;
    let base = "/api/v1/pipelines/deployments";
    let (value, columns): (Value, &[Column]) = match command.action {
        DeploymentAction::Create { name, template, params, file, target, waves: strategy } => {
            let selector = labels(&target)?;
            let rollout =
                strategy.as_deref().map(waves).transpose()?.unwrap_or_else(|| json!({"strategy": "all_at_once"}));
            let body = json!({"name": name, "pipeline": pipeline_spec(template, &params, file.as_ref())?, "target": {"selector": selector}, "rollout": rollout});
            (api.post(base, body).await?, &DEPLOYMENTS)
        }
        DeploymentAction::List { status } => {
            let filter = status.map(|s| format!("?status={s}")).unwrap_or_default();
            (api.get(&format!("{base}{filter}")).await?, &DEPLOYMENTS)
        }
        DeploymentAction::Get { id } => (api.get(&format!("{base}/{id}")).await?, &DEPLOYMENTS),
        DeploymentAction::Update { id, template, params, file, notes } => {
            let body = json!({"pipeline": pipeline_spec(template, &params, file.as_ref())?, "notes": notes});
            (api.patch(&format!("{base}/{id}"), body).await?, &DEPLOYMENTS)
        }
        DeploymentAction::Delete { id, yes } => {
            let question = format!("Delete deployment {id} and remove it from every agent?");
            let gone = format!("deleted deployment {id}");
            return delete_confirmed(&mut api, &format!("{base}/{id}"), &question, yes, &gone).await;
        }
        DeploymentAction::Versions { id } => {
            const VERSIONS: [Column; 5] = [
                col("VERSION", "/version"),
                col("STATUS", "/status"),
                col("FROM", "/rollback_from_version"),
                col("CREATED", "/created_at"),
                col("NOTES", "/notes"),
            ];
            (api.get(&format!("{base}/{id}/versions")).await?, &VERSIONS)
        }
        DeploymentAction::Diff { id, version, against } => {
            let diff = api.get(&format!("{base}/{id}/versions/{version}/diff?against={against}")).await?;
            if opts.output == output::Format::Table {
                print!("{}", diff["unified"].as_str().unwrap_or_default());
                return Ok(());
            }
            (diff, &[])
        }
        DeploymentAction::Rollback { id, to, notes, yes } => {
            confirm(&format!("Roll deployment {id} back?"), yes)?;
            let body: Map<String, Value> = [("version", json!(to)), ("notes", json!(notes))]
                .into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.to_string(), v))
                .collect();
            let answer = api.post(&format!("{base}/{id}/rollback"), Value::Object(body)).await?;
            (answer["deployment"].clone(), &DEPLOYMENTS)
        }
        DeploymentAction::Pause { id } => (api.post(&format!("{base}/{id}/pause"), json!({})).await?, &DEPLOYMENTS),
        DeploymentAction::Resume { id } => (api.post(&format!("{base}/{id}/resume"), json!({})).await?, &DEPLOYMENTS),
        DeploymentAction::Watch { id } => {
            return super::watch::deployment(&mut api, &id, opts.output, &DEPLOYMENTS).await
        }
        DeploymentAction::Status { id } => {
            let status = api.get(&format!("{base}/{id}/status")).await?;
            if opts.output == output::Format::Table {
                eprintln!("{} at version {}", status["status"].as_str().unwrap_or("?"), status["current_version"]);
                let agents = json!({"items": status["agents"]});
                const AGENTS: [Column; 5] = [
                    col("AGENT", "/agent_id"),
                    col("DESIRED", "/desired_version"),
                    col("APPLIED", "/applied_version"),
                    col("STATE", "/state"),
                    col("ERROR", "/last_error"),
                ];
                return output::print(&agents, opts.output, &AGENTS);
            }
            (status, &[])
        }
    };
    output::print(&value, opts.output, columns)
}

#[derive(Debug, Args)]
pub struct FleetCommand {
    #[command(subcommand)]
    pub action: FleetAction,
    #[command(flatten)]
    pub opts: ClientOpts,
}

#[derive(Debug, Subcommand)]
pub enum FleetAction {
    /// The agents.
    #[command(after_help = "Example:\n  phoenix fleet list --state online --selector env=prod")]
    List {
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        selector: Option<String>,
    },
    /// One agent.
    #[command(after_help = "Example:\n  phoenix fleet show 0195…")]
    Show { id: String },
    /// Replace an agent's labels.
    #[command(after_help = "Example:\n  phoenix fleet label 0195… env=prod,region=eu")]
    Label { id: String, labels: String },
    /// Remove an agent (its tasks go too).
    #[command(after_help = "Example:\n  phoenix fleet decommission 0195… --yes")]
    Decommission {
        id: String,
        #[arg(long)]
        yes: bool,
    },
    /// Enrolment tokens.
    #[command(subcommand, after_help = "Example:\n  phoenix fleet token create --uses 10 --labels env=prod")]
    Token(TokenAction),
}

#[derive(Debug, Subcommand)]
pub enum TokenAction {
    /// A token agents enrol with (shown once).
    #[command(after_help = "Example:\n  phoenix fleet token create --uses 10 --labels env=prod")]
    Create {
        #[arg(long, default_value_t = 1)]
        uses: u32,
        #[arg(long)]
        labels: Option<String>,
    },
}

pub async fn fleet(command: FleetCommand) -> Result<(), CliError> {
    let opts = command.opts;
    let mut api = Api::resolve(opts.server.as_deref(), opts.verbose)?;
    const AGENTS: [Column; 5] = [
        col("ID", "/id"),
        col("HOST", "/hostname"),
        col("STATE", "/state"),
        col("VERSION", "/agent_version"),
        col("LAST HEARTBEAT", "/last_heartbeat_at"),
    ];
    let (value, columns): (Value, &[Column]) = match command.action {
        FleetAction::List { state, selector } => {
            let query: Vec<String> = [state.map(|s| format!("state={s}")), selector.map(|s| format!("selector={s}"))]
                .into_iter()
                .flatten()
                .collect();
            (api.get(&format!("/api/v1/agents?limit=500&{}", query.join("&"))).await?, &AGENTS)
        }
        FleetAction::Show { id } => (api.get(&format!("/api/v1/agents/{id}")).await?, &AGENTS),
        FleetAction::Label { id, labels } => {
            let labels = super::experiments::labels(&labels)?;
            (api.patch(&format!("/api/v1/agents/{id}"), json!({"labels": labels})).await?, &AGENTS)
        }
        FleetAction::Decommission { id, yes } => {
            let (question, gone) = (format!("Decommission agent {id}?"), format!("decommissioned agent {id}"));
            return delete_confirmed(&mut api, &format!("/api/v1/agents/{id}"), &question, yes, &gone).await;
        }
        FleetAction::Token(TokenAction::Create { uses, labels }) => {
            let labels = labels.as_deref().map(super::experiments::labels).transpose()?;
            let body = json!({"uses": uses, "labels": labels.unwrap_or_default()});
            const TOKEN: [Column; 3] =
                [col("TOKEN", "/token"), col("USES LEFT", "/uses_left"), col("EXPIRES", "/expires_at")];
            (api.post("/api/v1/agents/enrollment-tokens", body).await?, &TOKEN)
        }
    };
    output::print(&value, opts.output, columns)
}

#[derive(Debug, Args)]
pub struct UserCommand {
    #[command(subcommand)]
    pub action: UserAction,
    #[command(flatten)]
    pub opts: ClientOpts,
}

#[derive(Debug, Subcommand)]
pub enum UserAction {
    /// Create a user (admins only); the password is read from standard input.
    #[command(after_help = "Example:\n  echo 's3cret-pass' | phoenix user create bob --role operator")]
    Create {
        username: String,
        #[arg(long, default_value = "viewer")]
        role: String,
    },
    /// The users.
    #[command(after_help = "Example:\n  phoenix user list")]
    List,
    /// Change a user's role.
    #[command(after_help = "Example:\n  phoenix user set-role 0195… admin")]
    SetRole { id: String, role: String },
    /// Deactivate a user: their sessions end at once.
    #[command(after_help = "Example:\n  phoenix user deactivate 0195… --yes")]
    Deactivate {
        id: String,
        #[arg(long)]
        yes: bool,
    },
}

pub async fn user(command: UserCommand) -> Result<(), CliError> {
    let opts = command.opts;
    let mut api = Api::resolve(opts.server.as_deref(), opts.verbose)?;
    const USERS: [Column; 4] =
        [col("ID", "/id"), col("USERNAME", "/username"), col("ROLE", "/role"), col("ACTIVE", "/active")];
    let value = match command.action {
        UserAction::Create { username, role } => {
            let password = super::read_password_from_stdin()?;
            api.post("/api/v1/users", json!({"username": username, "password": password, "role": role})).await?
        }
        UserAction::List => api.get("/api/v1/users?limit=500").await?,
        UserAction::SetRole { id, role } => api.patch(&format!("/api/v1/users/{id}"), json!({"role": role})).await?,
        UserAction::Deactivate { id, yes } => {
            confirm(&format!("Deactivate user {id}?"), yes)?;
            api.patch(&format!("/api/v1/users/{id}"), json!({"active": false})).await?
        }
    };
    output::print(&value, opts.output, &USERS)
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  phoenix audit --since 1h\n  phoenix audit --actor alice --action 'POST /api/v1/experiments'\n  phoenix audit --outcome refused -o json"
)]
pub struct AuditCommand {
    /// Only this actor: a user's or agent's id, or a username.
    #[arg(long)]
    pub actor: Option<String>,
    /// Only actions starting with this (e.g. `auth.` or `DELETE /api/v1/agents`).
    #[arg(long)]
    pub action: Option<String>,
    /// Only this outcome: succeeded, refused or failed.
    #[arg(long)]
    pub outcome: Option<String>,
    /// Only entries since: a time (RFC 3339) or an age such as 30m, 12h, 7d.
    #[arg(long)]
    pub since: Option<String>,
    /// How many entries at most (newest first).
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    #[command(flatten)]
    pub opts: ClientOpts,
}

/// `phoenix audit`: the audit log, newest first (admins only).
pub async fn audit(command: AuditCommand) -> Result<(), CliError> {
    const ENTRIES: [Column; 6] = [
        col("AT", "/at"),
        col("ACTOR", "/actor_name"),
        col("ACTION", "/action"),
        col("TARGET", "/target"),
        col("OUTCOME", "/outcome"),
        col("CLIENT", "/client"),
    ];
    let mut api = Api::resolve(command.opts.server.as_deref(), command.opts.verbose)?;
    let since = command.since.as_deref().map(since_time).transpose()?;
    let mut url = reqwest::Url::parse("http://phoenix/api/v1/audit").expect("a valid URL");
    {
        let mut query = url.query_pairs_mut();
        query.append_pair("limit", &command.limit.to_string());
        let filters =
            [("actor", command.actor), ("action", command.action), ("outcome", command.outcome), ("since", since)];
        for (key, value) in filters {
            if let Some(value) = value {
                query.append_pair(key, &value);
            }
        }
    }
    let path = format!("{}?{}", url.path(), url.query().unwrap_or(""));
    let value = api.get(&path).await?;
    output::print(&value, command.opts.output, &ENTRIES)
}

/// `--since`: an RFC 3339 time as it is, or an age (`90s`, `30m`, `12h`, `7d`) back from now.
fn since_time(text: &str) -> Result<String, CliError> {
    if chrono::DateTime::parse_from_rfc3339(text).is_ok() {
        return Ok(text.to_owned());
    }
    let invalid = || CliError::Usage(format!("--since {text:?}: give a time (RFC 3339) or an age like 30m, 12h, 7d"));
    let split = text.len().checked_sub(1).ok_or_else(invalid)?;
    let (number, unit) = text.split_at(split);
    let seconds: i64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(invalid()),
    };
    let amount: i64 = number.parse().map_err(|_| invalid())?;
    let age = chrono::Duration::try_seconds(amount.checked_mul(seconds).ok_or_else(invalid)?).ok_or_else(invalid)?;
    Ok((chrono::Utc::now() - age).to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

#[cfg(test)]
mod audit_tests {
    use super::since_time;

    #[test]
    fn since_takes_a_time_or_an_age() {
        assert_eq!(since_time("2026-12-01T00:00:00Z").expect("time"), "2026-12-01T00:00:00Z");
        let hour_ago = chrono::DateTime::parse_from_rfc3339(&since_time("1h").expect("age")).expect("rfc3339");
        let age = chrono::Utc::now().signed_duration_since(hour_ago);
        assert!((3590..=3610).contains(&age.num_seconds()), "{age}");
        for bad in ["", "h", "5y", "-x", "99999999999999999d"] {
            assert!(since_time(bad).is_err(), "{bad:?}");
        }
    }
}
