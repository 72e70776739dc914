//! The operator's commands of the `phoenix` binary, over REST (and `watch` over WebSocket): sessions
//! (`login`, `logout`, `whoami`, `context`) and experiments. Exit codes are in [`error::CliError`].

pub mod client;
pub mod error;
mod experiments;
pub mod loadgen;
pub mod output;
mod resources;
pub mod session;
mod watch;

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::json;

use client::Api;
use error::CliError;
use output::{col, Format};
use session::{Context, Credentials};

pub use experiments::{run as experiments_run, ExperimentCommand};
pub use resources::{
    audit, deployment, fleet, pipeline, user, AuditCommand, DeploymentCommand, FleetCommand, PipelineCommand,
    UserCommand,
};

/// Options every client command takes.
#[derive(Debug, Clone, Args)]
pub struct ClientOpts {
    /// The server (overrides PHOENIX_SERVER and the current context).
    #[arg(long, global = true)]
    pub server: Option<String>,
    /// How to print data.
    #[arg(short = 'o', long = "output", value_enum, default_value = "table", global = true)]
    pub output: Format,
    /// Log each request (method, path, status; never a token) to stderr.
    #[arg(long, global = true)]
    pub verbose: bool,
}

#[derive(Debug, Args)]
#[command(after_help = "Example:\n  phoenix login --server http://phoenix:8080 --username alice")]
pub struct LoginArgs {
    #[command(flatten)]
    pub opts: ClientOpts,
    /// The user (asked when not given).
    #[arg(long)]
    pub username: Option<String>,
    /// Read the password from standard input instead of asking.
    #[arg(long)]
    pub password_stdin: bool,
    /// Name of the context to keep this session in (default: `default`).
    #[arg(long, default_value = "default")]
    pub context: String,
}

#[derive(Debug, Subcommand)]
pub enum ContextCommand {
    /// List the saved contexts (the current one is marked).
    #[command(after_help = "Example:\n  phoenix context list")]
    List(ContextListArgs),
    /// Switch to a saved context.
    #[command(after_help = "Example:\n  phoenix context use prod")]
    Use { name: String },
}

#[derive(Debug, Args)]
pub struct ContextListArgs {
    #[command(flatten)]
    pub opts: ClientOpts,
}

/// Runs a command and turns its error into a sentence on stderr and an exit code.
/// `phoenix nats init`: writes the NATS trust (no server involved).
pub fn nats_init(args: &crate::args::NatsInitArgs) -> Result<(), CliError> {
    crate::nats_identity::init(args).map_err(|e| CliError::Invalid(format!("{e:#}")))
}

pub async fn finish(outcome: Result<(), CliError>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("phoenix: {e}");
            e.exit_code()
        }
    }
}

/// `phoenix login`: asks the server for a session and keeps it (mode 0600) as the current context.
pub async fn login(args: LoginArgs) -> Result<(), CliError> {
    let server = args
        .opts
        .server
        .clone()
        .or_else(|| std::env::var("PHOENIX_SERVER").ok().filter(|s| !s.is_empty()))
        .or_else(|| Credentials::load().ok()?.contexts.get(&args.context).map(|c| c.server.clone()))
        .ok_or_else(|| CliError::Usage("which server? pass --server URL (or set PHOENIX_SERVER)".into()))?;
    let username = match args.username {
        Some(username) => username,
        None => prompt("username: ")?,
    };
    let password = if args.password_stdin { read_stdin_line()? } else { prompt_hidden("password: ")? };
    let mut api = Api::anonymous(&server, args.opts.verbose);
    let session = api.post("/api/v1/auth/login", json!({"username": username, "password": password})).await?;
    let token = |field: &str| {
        session[field]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| CliError::Server(format!("the server's answer has no {field}")))
    };
    let context = Context {
        server: api.server.clone(),
        username: username.clone(),
        access_token: token("access_token")?,
        refresh_token: token("refresh_token")?,
    };
    let mut credentials = Credentials::load()?;
    credentials.contexts.insert(args.context.clone(), context);
    credentials.current = Some(args.context.clone());
    credentials.save()?;
    eprintln!("logged in to {} as {username} (context {})", api.server, args.context);
    Ok(())
}

/// `phoenix logout`: revokes the session on the server too, then forgets it.
pub async fn logout(opts: ClientOpts) -> Result<(), CliError> {
    let mut credentials = Credentials::load()?;
    let Some(name) = credentials.current.clone() else {
        return Err(CliError::Usage("not logged in".into()));
    };
    let mut api = Api::resolve(opts.server.as_deref(), opts.verbose)?;
    match api.post("/api/v1/auth/logout", json!({})).await {
        Ok(_) | Err(CliError::Auth(_)) => {}
        Err(e) => return Err(e),
    }
    credentials.contexts.remove(&name);
    credentials.current = None;
    credentials.save()?;
    eprintln!("logged out (context {name})");
    Ok(())
}

/// `phoenix whoami`
pub async fn whoami(opts: ClientOpts) -> Result<(), CliError> {
    let mut api = Api::resolve(opts.server.as_deref(), opts.verbose)?;
    let me = api.get("/api/v1/auth/me").await?;
    output::print(&me, opts.output, &[col("USERNAME", "/username"), col("ROLE", "/role"), col("ID", "/id")])
}

/// `phoenix context list|use`
pub async fn context(command: ContextCommand) -> Result<(), CliError> {
    let mut credentials = Credentials::load()?;
    match command {
        ContextCommand::List(args) => {
            let items: Vec<serde_json::Value> = credentials
                .contexts
                .iter()
                .map(|(name, c)| {
                    let current = if credentials.current.as_deref() == Some(name) { "*" } else { "" };
                    json!({"current": current, "name": name, "server": c.server, "username": c.username})
                })
                .collect();
            let columns =
                [col("", "/current"), col("NAME", "/name"), col("SERVER", "/server"), col("USER", "/username")];
            output::print(&json!({"items": items}), args.opts.output, &columns)
        }
        ContextCommand::Use { name } => {
            if !credentials.contexts.contains_key(&name) {
                return Err(CliError::NotFound(format!(
                    "no context named '{name}'; `phoenix context list` shows them"
                )));
            }
            credentials.current = Some(name.clone());
            credentials.save()?;
            eprintln!("using context {name}");
            Ok(())
        }
    }
}

/// A password piped in (never asked on a terminal for someone else's account).
pub(super) fn read_password_from_stdin() -> Result<String, CliError> {
    let password = read_stdin_line()?;
    if password.is_empty() {
        return Err(CliError::Usage("give the new user's password on standard input".into()));
    }
    Ok(password)
}

/// `phoenix completion bash|zsh|fish`: the shell completion script.
pub fn completion(shell: clap_complete::Shell) -> Result<(), CliError> {
    let mut command = <crate::args::Cli as clap::CommandFactory>::command();
    clap_complete::generate(shell, &mut command, "phoenix", &mut std::io::stdout());
    Ok(())
}

fn read_stdin_line() -> Result<String, CliError> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| CliError::Usage(format!("cannot read standard input: {e}")))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

fn prompt(question: &str) -> Result<String, CliError> {
    if !std::io::stdin().is_terminal() {
        return Err(CliError::Usage(format!(
            "{} is needed (no terminal to ask on)",
            question.trim_end_matches([':', ' '])
        )));
    }
    eprint!("{question}");
    let _ = std::io::stderr().flush();
    read_stdin_line()
}

/// Asks without echoing what is typed.
fn prompt_hidden(question: &str) -> Result<String, CliError> {
    if !std::io::stdin().is_terminal() {
        return Err(CliError::Usage("no terminal to ask the password on: use --password-stdin".into()));
    }
    eprint!("{question}");
    let _ = std::io::stderr().flush();
    let fd = libc::STDIN_FILENO;
    // SAFETY: termios is plain data filled by tcgetattr for the terminal we own; restored below.
    let mut saved: libc::termios = unsafe { std::mem::zeroed() };
    let have_terminal = unsafe { libc::tcgetattr(fd, &mut saved) } == 0;
    if have_terminal {
        let mut quiet = saved;
        quiet.c_lflag &= !libc::ECHO;
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) };
    }
    let answer = read_stdin_line();
    if have_terminal {
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &saved) };
    }
    eprintln!();
    answer
}

/// Asks before something destructive; `--yes` skips it, and without a terminal it must be given.
/// Deletes `path` once confirmed (or `--yes`), then says what went.
pub async fn delete_confirmed(
    api: &mut Api,
    path: &str,
    question: &str,
    yes: bool,
    gone: &str,
) -> Result<(), CliError> {
    confirm(question, yes)?;
    api.delete(path).await?;
    eprintln!("{gone}");
    Ok(())
}

pub fn confirm(question: &str, yes: bool) -> Result<(), CliError> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(CliError::Usage(format!("{question} — pass --yes to confirm without a terminal")));
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    match read_stdin_line()?.trim() {
        "y" | "Y" | "yes" => Ok(()),
        _ => Err(CliError::Usage("cancelled".into())),
    }
}
