//! The command line of the one `phoenix` binary (clap). Environment variables and the config file are
//! handled by [`crate::config`], so the precedence of the layers lives in one place.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::FlagOverrides;

#[derive(Debug, Parser)]
#[command(name = "phoenix", version, about = "Cut metrics cardinality, and prove every cut before it ships")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the control plane (REST, WebSocket, agents' endpoints, dashboard).
    Server(ServerArgs),
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
