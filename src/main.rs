use std::process::ExitCode;

use clap::Parser;
use phoenix::args::{Cli, Command};

#[actix_web::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Server(args) => phoenix::server::run(args).await,
        Command::Agent(args) => phoenix::agent::run(args).await,
    }
}
