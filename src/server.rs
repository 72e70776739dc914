//! `phoenix server`: load settings, start logging, build the application and serve until stopped.

use std::process::ExitCode;

use crate::args::ServerArgs;
use crate::config::{self, Settings};
use crate::http::Application;
use crate::telemetry;

/// Runs the server command; the exit code says how it ended (2 = invalid configuration).
pub async fn run(args: ServerArgs) -> ExitCode {
    let config_file = config::config_path(args.config.clone());
    let settings = match Settings::from_process(config_file.as_deref(), &args.flag_overrides()) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("phoenix server: {e}");
            return ExitCode::from(2);
        }
    };
    if args.print_config {
        print!("{}", settings.to_masked_toml());
        return ExitCode::SUCCESS;
    }
    telemetry::init(&settings.log);
    match serve(settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "phoenix server stopped");
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let app = Application::build(settings).await?;
    // Scripts and people read this line to find the server (port 0 picks a free port).
    tracing::info!(listen = %app.local_addr(), "phoenix server listening on http://{}", app.local_addr());
    app.run_until_stopped().await
}
