//! The command line of the one `phoenix` binary (clap). Environment variables and the config file are
//! handled by [`crate::config`], so the precedence of the layers lives in one place.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::FlagOverrides;

#[derive(Debug, Parser)]
#[command(
    name = "phoenix",
    version,
    about = "Cut metrics cardinality, and prove every cut before it ships",
    after_help = "Exit codes: 0 success; 1 invalid (what was checked or sent); 2 usage; 3 not found; \
4 conflict (not allowed now); 5 not logged in or not allowed; 6 server failure or unreachable.\n\n\
Sessions live in $XDG_CONFIG_HOME/phoenix/credentials.json (mode 0600); PHOENIX_SERVER and \
PHOENIX_TOKEN override it, --server overrides both."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the control plane (REST, WebSocket, agents' endpoints, dashboard).
    #[command(
        after_help = "Examples:\n  phoenix server\n  phoenix server --database-url postgres://phoenix@db/phoenix --nats-url nats://nats:4222"
    )]
    Server(ServerArgs),
    /// Make the keys for per-agent NATS identities (NATS operator mode), once per installation.
    #[command(
        subcommand,
        after_help = "Example:\n  phoenix nats init --dir /etc/phoenix/nats --resolver-dir /data/jwt"
    )]
    Nats(NatsCommand),
    /// Run the agent on this host: enrol, heartbeat, run pipelines, report what they cost.
    #[command(
        after_help = "Example:\n  phoenix agent --server http://phoenix:8080 --enroll-token \"$TOKEN\" --labels env=prod,region=eu"
    )]
    Agent(AgentArgs),
    /// Log in to a server and keep the session (as the current context).
    Login(crate::cli::LoginArgs),
    /// End the session (revoked on the server too).
    #[command(after_help = "Example:\n  phoenix logout")]
    Logout(crate::cli::ClientOpts),
    /// Who the current session is.
    #[command(after_help = "Example:\n  phoenix whoami -o json")]
    Whoami(crate::cli::ClientOpts),
    /// Saved sessions, one per server.
    #[command(subcommand, after_help = "Examples:\n  phoenix context list\n  phoenix context use prod")]
    Context(crate::cli::ContextCommand),
    /// Experiments: create, run, follow, judge, promote.
    #[command(
        after_help = "Examples:\n  phoenix experiment create -f experiment.yaml\n  phoenix experiment watch 0195d2c4-…"
    )]
    Experiment(crate::cli::ExperimentCommand),
    /// Pipeline templates: list, show, validate, render, preview.
    #[command(after_help = "Examples:\n  phoenix pipeline templates\n  phoenix pipeline validate pipeline.yaml")]
    Pipeline(crate::cli::PipelineCommand),
    /// Deployments: create, update, roll back, pause, follow.
    #[command(after_help = "Examples:\n  phoenix deployment list\n  phoenix deployment rollback 0195… --yes")]
    Deployment(crate::cli::DeploymentCommand),
    /// The agents and their enrolment tokens.
    #[command(after_help = "Examples:\n  phoenix fleet list --state online\n  phoenix fleet token create --uses 10")]
    Fleet(crate::cli::FleetCommand),
    /// Users (admins only).
    #[command(after_help = "Examples:\n  phoenix user list\n  phoenix user set-role 0195… operator")]
    User(crate::cli::UserCommand),
    /// The audit log: who did what, when, from where (admins only).
    Audit(crate::cli::AuditCommand),
    /// Send generated metrics to a receiver (an agent, a Collector, a Prometheus) and print what was sent.
    #[command(
        subcommand,
        after_help = "Examples:\n  phoenix loadgen otlp --rate 50000 --duration 60\n  phoenix loadgen remote-write --endpoint http://127.0.0.1:19291/api/v1/write"
    )]
    Loadgen(crate::cli::loadgen::LoadgenCommand),
    /// Print the shell completion script.
    #[command(after_help = "Example:\n  phoenix completion bash > /etc/bash_completion.d/phoenix")]
    Completion { shell: clap_complete::Shell },
}

#[derive(Debug, Subcommand)]
pub enum NatsCommand {
    /// Write the trust file for Phoenix (`bus.nats_trust_file`) and the configuration nats-server
    /// includes to trust it. Refuses to replace existing files: new keys lock every agent out.
    #[command(after_help = "Example:\n  phoenix nats init --dir /etc/phoenix/nats --resolver-dir /data/jwt")]
    Init(NatsInitArgs),
}

#[derive(Debug, Clone, Args)]
pub struct NatsInitArgs {
    /// Where to write `nats-trust.json` (Phoenix's, mode 0600) and `nats-trust.conf` (nats-server's).
    #[arg(long)]
    pub dir: PathBuf,
    /// Where nats-server keeps account JWTs, as nats-server sees it (e.g. in its container).
    #[arg(long, default_value = "/data/jwt")]
    pub resolver_dir: String,
}

#[derive(Debug, Clone, Args)]
pub struct AgentArgs {
    /// The Phoenix server, e.g. http://phoenix:8080.
    #[arg(long, env = "PHOENIX_SERVER")]
    pub server: String,
    /// NATS to use instead of the one the server hands out at enrolment.
    #[arg(long, env = "PHOENIX_NATS_URL")]
    pub nats_url: Option<String>,
    /// Enrolment token (needed on the first start only).
    #[arg(long, env = "PHOENIX_ENROLL_TOKEN", hide_env_values = true)]
    pub enroll_token: Option<String>,
    /// Labels asked for at enrolment: env=prod,region=eu.
    #[arg(long, env = "PHOENIX_AGENT_LABELS")]
    pub labels: Option<String>,
    /// Where the agent keeps its identity.
    #[arg(long, env = "PHOENIX_STATE_DIR", default_value = "/var/lib/phoenix-agent")]
    pub state_dir: PathBuf,
    /// Seconds between heartbeats and measurements (the server may change it).
    #[arg(long, env = "PHOENIX_AGENT_INTERVAL", default_value_t = 10)]
    pub interval: u64,
    /// The server's NATS subject prefix (default: what the server said at enrolment, else phoenix).
    #[arg(long, env = "PHOENIX_SUBJECT_PREFIX")]
    pub subject_prefix: Option<String>,
    /// Hostname to enrol with (default: this host's).
    #[arg(long)]
    pub hostname: Option<String>,
    /// Run pipelines with this external collector instead of in-process: it is started as
    /// `<bin> --config <state-dir>/collector/<pipeline>.yaml` with the rendered Phoenix config and
    /// supervised. The binary must understand that config (e.g. a wrapper that translates it for an
    /// OpenTelemetry Collector).
    #[arg(long, env = "PHOENIX_COLLECTOR_BIN")]
    pub collector_bin: Option<PathBuf>,
    /// Where the agent serves its own metrics (what each pipeline's receivers took and refused, what
    /// its exporters sent, dropped and hold) for Prometheus to scrape, at /metrics; `off` to not serve.
    #[arg(long, env = "PHOENIX_AGENT_METRICS_LISTEN", default_value = "127.0.0.1:8889")]
    pub metrics_listen: String,
}

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Settings file (TOML). Default: $PHOENIX_CONFIG, else ./phoenix.toml when it exists.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on [env: PHOENIX_LISTEN] [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// sqlite://FILE or postgres://… [env: PHOENIX_DATABASE_URL] [default: sqlite://phoenix.db].
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// NATS server; without it the in-process bus is used [env: PHOENIX_NATS_URL].
    #[arg(long, value_name = "URL")]
    pub nats_url: Option<String>,
    /// Do not apply pending database migrations at start-up.
    #[arg(long)]
    pub no_migrate: bool,
    /// Print the effective settings (secrets masked) and exit.
    #[arg(long)]
    pub print_config: bool,
}

impl ServerArgs {
    pub fn flag_overrides(&self) -> FlagOverrides {
        FlagOverrides {
            listen: self.listen.clone(),
            database_url: self.database_url.clone(),
            nats_url: self.nats_url.clone(),
            no_migrate: self.no_migrate,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// Collects the `phoenix …` path of every command, and those whose `--help` shows no example.
    fn walk(command: &clap::Command, path: &str, seen: &mut Vec<String>, missing: &mut Vec<String>) {
        for sub in command.get_subcommands().filter(|sub| sub.get_name() != "help") {
            let path = format!("{path} {}", sub.get_name());
            let help = sub.get_after_help().map(|h| h.to_string()).unwrap_or_default();
            if !help.contains("Example") {
                missing.push(path.clone());
            }
            seen.push(path.clone());
            walk(sub, &path, seen, missing);
        }
    }

    #[test]
    fn every_command_shows_an_example_in_its_help() {
        let (mut seen, mut missing) = (Vec::new(), Vec::new());
        walk(&Cli::command(), "phoenix", &mut seen, &mut missing);
        for nested in ["phoenix experiment watch", "phoenix fleet token create", "phoenix deployment rollback"] {
            assert!(seen.iter().any(|path| path == nested), "the walk missed {nested}: {seen:?}");
        }
        assert!(missing.is_empty(), "no example in the --help of: {missing:?}");
    }
}
