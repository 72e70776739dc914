use std::process::ExitCode;

use clap::Parser;
use phoenix::args::{Cli, Command};
use phoenix::cli;

#[actix_web::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // One TLS provider for reqwest and NATS, before any client is built.
    phoenix_nats::install_tls_provider();
    match cli.command {
        Command::Server(args) => phoenix::server::run(args).await,
        Command::Nats(phoenix::args::NatsCommand::Init(args)) => cli::finish(cli::nats_init(&args)).await,
        Command::Agent(args) => phoenix::agent::run(args).await,
        Command::Login(args) => cli::finish(cli::login(args).await).await,
        Command::Logout(opts) => cli::finish(cli::logout(opts).await).await,
        Command::Whoami(opts) => cli::finish(cli::whoami(opts).await).await,
        Command::Context(command) => cli::finish(cli::context(command).await).await,
        Command::Experiment(command) => cli::finish(cli::experiments_run(command).await).await,
        Command::Pipeline(command) => cli::finish(cli::pipeline(command).await).await,
        Command::Deployment(command) => cli::finish(cli::deployment(command).await).await,
        Command::Fleet(command) => cli::finish(cli::fleet(command).await).await,
        Command::User(command) => cli::finish(cli::user(command).await).await,
        Command::Audit(command) => cli::finish(cli::audit(command).await).await,
        Command::Loadgen(command) => cli::finish(cli::loadgen::run(command).await).await,
        Command::Completion { shell } => cli::finish(cli::completion(shell)).await,
    }
}
