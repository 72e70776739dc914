//! `experiment watch` and `deployment watch`: follow an entity over the live WebSocket until it settles,
//! showing its progress on stderr, then print its final state like `get` does.
//!
//! Events only say that something changed; after a quiet spell the entity is read again through the
//! API, so a missed event costs at most one wait. An expired session is renewed and the connection
//! opened again; any other close ends the watch with an error (run it again).

use std::collections::{HashMap, HashSet};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::client::Api;
use super::error::CliError;
use super::output::{self, Column};
use crate::live::{LiveClient, LiveError, Received};

/// How long to wait for an event before reading the entity again.
const QUIET: Duration = Duration::from_secs(5);
/// Off a terminal, progress lines are written at most this often (logs stay readable).
const LOG_EVERY: Duration = Duration::from_secs(1);

/// A live connection subscribed to some topics; reconnects with a refreshed session when the access
/// token expires under it.
struct Follow {
    live: LiveClient,
    topics: Vec<String>,
}

fn lost(e: LiveError) -> CliError {
    CliError::Server(e.to_string())
}

impl Follow {
    /// Connects and subscribes. A token that expired just before the upgrade is refreshed once.
    async fn open(api: &mut Api, topics: Vec<String>) -> Result<Follow, CliError> {
        let mut live = match Self::connect(api).await? {
            Err(e) if e.is_unauthorized() && api.refresh().await? => Self::connect(api).await?.map_err(lost)?,
            other => other.map_err(lost)?,
        };
        for topic in &topics {
            live.subscribe(topic).await.map_err(lost)?;
        }
        Ok(Follow { live, topics })
    }

    async fn connect(api: &Api) -> Result<Result<LiveClient, LiveError>, CliError> {
        let token = api.token.clone().ok_or_else(|| CliError::Auth("not logged in; run `phoenix login`".into()))?;
        Ok(LiveClient::connect(&api.server, &token).await)
    }

    /// The next message from the server, or `None` when nothing came within [`QUIET`] or the connection
    /// was renewed (either way the caller should read the entity again).
    async fn next(&mut self, api: &mut Api) -> Result<Option<Value>, CliError> {
        match self.live.next(QUIET).await.map_err(lost)? {
            Some(Received::Message(message)) if message["data"]["code"] == "token_expired" => {
                self.renew(api).await?;
                Ok(None)
            }
            Some(Received::Message(message)) => Ok(Some(message)),
            Some(Received::Closed(4001, _)) => {
                self.renew(api).await?;
                Ok(None)
            }
            Some(Received::Closed(code, why)) => {
                Err(CliError::Server(format!("the server closed the live connection ({code}): {why}")))
            }
            None => Ok(None),
        }
    }

    /// Refreshes the session (saved like any refresh) and connects again with it.
    async fn renew(&mut self, api: &mut Api) -> Result<(), CliError> {
        if !api.refresh().await? {
            return Err(CliError::Auth("the session expired; log in again with `phoenix login`".into()));
        }
        let topics = std::mem::take(&mut self.topics);
        let renewed = Follow::open(api, topics).await?;
        let old = std::mem::replace(self, renewed);
        old.live.close().await;
        if api.verbose() {
            eprintln!("phoenix: live connection renewed with the refreshed session");
        }
        Ok(())
    }

    async fn close(self) {
        self.live.close().await;
    }
}

/// Progress on stderr for people: on a terminal one line rewritten in place, elsewhere a line at most
/// every [`LOG_EVERY`]; nothing at all with `-o json|yaml`.
struct Screen {
    human: bool,
    terminal: bool,
    shown: String,
    last_logged: Option<Instant>,
}

impl Screen {
    fn new(format: output::Format) -> Screen {
        Screen {
            human: format == output::Format::Table,
            terminal: std::io::stderr().is_terminal(),
            shown: String::new(),
            last_logged: None,
        }
    }

    /// A line that stays (a phase change).
    fn say(&mut self, line: &str) {
        if self.human {
            self.clear();
            eprintln!("{}  {line}", chrono::Utc::now().format("%H:%M:%S"));
        }
    }

    /// The line that changes (progress).
    fn progress(&mut self, line: String) {
        if !self.human || line == self.shown {
            return;
        }
        if self.terminal {
            eprint!("\r\x1b[2K{line}");
        } else if self.last_logged.is_none_or(|at| at.elapsed() >= LOG_EVERY) {
            eprintln!("{line}");
            self.last_logged = Some(Instant::now());
        } else {
            return;
        }
        self.shown = line;
    }

    fn clear(&mut self) {
        if self.terminal && !self.shown.is_empty() {
            eprint!("\r\x1b[2K");
        }
        self.shown.clear();
    }
}

/// How long a `completed` pass with `auto_promote` is watched for its promotion.
const PROMOTION_WAIT: Duration = Duration::from_secs(30);

/// Whether nothing more will happen to the experiment by itself. `pending` waits for someone to start
/// it; a `completed` pass with `auto_promote` is promoted next, so that is waited for (a while: the
/// promotion can be refused).
fn experiment_settled(experiment: &Value, completed_since: &mut Option<Instant>) -> bool {
    match experiment["phase"].as_str().unwrap_or("") {
        "promoted" | "stopped" | "rolled_back" | "failed" => true,
        "completed" => {
            let promotes = experiment["auto_promote"] == true && experiment["results"]["verdict"] == "pass";
            !promotes || completed_since.get_or_insert_with(Instant::now).elapsed() >= PROMOTION_WAIT
        }
        _ => false,
    }
}

/// `phoenix experiment watch`: phase changes, the measurement window's progress and the series each
/// variant emits (from the agents' measurements as they arrive), then the verdict.
pub async fn experiment(api: &mut Api, id: &str, format: output::Format, columns: &[Column]) -> Result<(), CliError> {
    let path = format!("/api/v1/experiments/{id}");
    let mut experiment = api.get(&path).await?;
    let topic = format!("experiment:{id}");
    let mut follow = Follow::open(api, vec![topic.clone(), format!("metrics:{id}")]).await?;
    let mut screen = Screen::new(format);
    let mut series = LiveSeries::default();
    let (mut last_phase, mut completed_since) = (String::new(), None);
    loop {
        let phase = experiment["phase"].as_str().unwrap_or("").to_string();
        if phase != last_phase {
            screen.say(&format!("{phase}{}", reason(&experiment)));
            last_phase.clone_from(&phase);
        }
        if experiment_settled(&experiment, &mut completed_since) {
            break;
        }
        if phase == "running" {
            screen.progress(format!("{} · {}", window_progress(&experiment, chrono::Utc::now()), series.summary()));
        }
        match follow.next(api).await? {
            Some(message) if message["type"] == "snapshot" && message["topic"] == topic.as_str() => {
                if message["data"].is_object() {
                    experiment = message["data"].clone();
                }
            }
            Some(message) if message["event"] == "experiment.phase_changed" => {
                experiment = message["data"]["experiment"].clone();
            }
            Some(message) if message["event"] == "metrics.sample" => series.record(&message["data"]),
            Some(_) => {}
            None => experiment = api.get(&path).await?,
        }
    }
    follow.close().await;
    if let Some(verdict) = experiment["results"]["verdict"].as_str() {
        screen.say(&format!("verdict: {verdict} — {}", experiment["results"]["recommendation"].as_str().unwrap_or("")));
    }
    output::print(&experiment, format, columns)
}

fn reason(experiment: &Value) -> String {
    experiment["reason"].as_str().map(|r| format!(": {r}")).unwrap_or_default()
}

/// `[#####---------------] 25% of the measurement window`, or the warm-up's countdown.
fn window_progress(experiment: &Value, now: chrono::DateTime<chrono::Utc>) -> String {
    let parse = |field: &str| experiment[field].as_str().and_then(|t| t.parse::<chrono::DateTime<chrono::Utc>>().ok());
    let (Some(from), Some(until)) = (parse("measuring_from"), parse("measuring_until")) else {
        return "waiting for the measurement window".into();
    };
    if now < from {
        return format!("warming up: measuring starts in {} s", (from - now).num_seconds());
    }
    let total = (until - from).num_milliseconds().max(1) as f64;
    let done = ((now - from).num_milliseconds() as f64 / total).clamp(0.0, 1.0);
    let filled = (done * 20.0).round() as usize;
    format!("[{}{}] {:.0}% of the measurement window", "#".repeat(filled), "-".repeat(20 - filled), done * 100.0)
}

/// The latest `pipeline.output.series` each agent reported for each variant.
#[derive(Default)]
struct LiveSeries {
    latest: HashMap<(String, String), f64>,
}

impl LiveSeries {
    fn record(&mut self, sample: &Value) {
        let (Some(agent), Some(variant), Some(series)) = (
            sample["agent_id"].as_str(),
            sample["variant"].as_str(),
            sample["samples"]["pipeline.output.series"].as_f64(),
        ) else {
            return;
        };
        self.latest.insert((agent.to_string(), variant.to_string()), series);
    }

    fn total(&self, variant: &str) -> Option<f64> {
        let values: Vec<f64> = self.latest.iter().filter(|((_, v), _)| v == variant).map(|(_, s)| *s).collect();
        (!values.is_empty()).then(|| values.iter().sum())
    }

    /// `series: baseline 5000, candidate 55 (-98.9%)` over all agents, or why there is nothing yet.
    fn summary(&self) -> String {
        match (self.total("baseline"), self.total("candidate")) {
            (Some(baseline), Some(candidate)) if baseline > 0.0 => format!(
                "series: baseline {baseline:.0}, candidate {candidate:.0} ({:+.1}%)",
                (candidate - baseline) / baseline * 100.0
            ),
            (Some(baseline), Some(candidate)) => format!("series: baseline {baseline:.0}, candidate {candidate:.0}"),
            _ => "no measurements from both variants yet".into(),
        }
    }
}

/// `phoenix deployment watch`: the status and each wave of the current version, until the rollout
/// settles. Waves are read from the deployment's stored history whenever it changed, not taken from the
/// live events, so a wave announced while the connection was being renewed is still shown.
pub async fn deployment(api: &mut Api, id: &str, format: output::Format, columns: &[Column]) -> Result<(), CliError> {
    let path = format!("/api/v1/pipelines/deployments/{id}");
    let history = format!("{path}/events");
    let mut deployment = api.get(&path).await?;
    let mut follow = Follow::open(api, vec![format!("deployment:{id}")]).await?;
    let mut screen = Screen::new(format);
    let mut last_status = String::new();
    let mut waves_shown = HashSet::new();
    loop {
        let status = format!("v{} {}", deployment["current_version"], deployment["status"].as_str().unwrap_or(""));
        if status != last_status {
            screen.say(&status);
            last_status = status;
        }
        for wave in new_waves(&api.get(&history).await?, &deployment["current_version"], &mut waves_shown) {
            screen.say(&wave);
        }
        if deployment["status"] != "rolling_out" {
            break;
        }
        // Any event, or a quiet spell or a renewed connection (`None`): read it again.
        while let Some(message) = follow.next(api).await? {
            if message["type"] == "event" {
                break;
            }
        }
        deployment = api.get(&path).await?;
    }
    follow.close().await;
    output::print(&deployment, format, columns)
}

/// The `wave N: k agent(s)` lines of `version`'s waves in a deployment's history that are not in
/// `shown` yet (which then holds them).
fn new_waves(history: &Value, version: &Value, shown: &mut HashSet<String>) -> Vec<String> {
    let events = history["items"].as_array().map(Vec::as_slice).unwrap_or_default();
    events
        .iter()
        .filter(|event| event["event_type"] == "wave_started" && event["version"] == *version)
        .filter(|event| shown.insert(event["id"].as_str().unwrap_or_default().to_string()))
        .filter_map(|event| event["message"].as_str().map(str::to_string))
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn live_series_add_up_the_latest_measurement_of_every_agent() {
        let mut series = LiveSeries::default();
        assert_eq!(series.summary(), "no measurements from both variants yet");
        let sample = |agent: &str, variant: &str, value: f64| json!({"agent_id": agent, "variant": variant, "samples": {"pipeline.output.series": value}});
        series.record(&sample("a", "baseline", 100.0));
        series.record(&sample("a", "baseline", 300.0));
        series.record(&sample("b", "baseline", 100.0));
        series.record(&sample("a", "candidate", 40.0));
        series.record(&json!({"agent_id": "a", "variant": "candidate", "samples": {}}));
        assert_eq!(series.summary(), "series: baseline 400, candidate 40 (-90.0%)");
    }

    #[test]
    fn each_wave_of_the_current_version_is_shown_once() {
        let history = json!({"items": [
            {"id": "e1", "event_type": "version_created", "version": 2, "message": "version 2"},
            {"id": "e2", "event_type": "wave_started", "version": 1, "message": "wave 1: 3 agent(s)"},
            {"id": "e3", "event_type": "wave_started", "version": 2, "message": "wave 1: 1 agent(s)"},
        ]});
        let mut shown = HashSet::new();
        assert_eq!(new_waves(&history, &json!(2), &mut shown), ["wave 1: 1 agent(s)"], "not version 1's");
        let mut later = history.clone();
        later["items"]
            .as_array_mut()
            .expect("items")
            .push(json!({"id": "e4", "event_type": "wave_started", "version": 2, "message": "wave 2: 2 agent(s)"}));
        assert_eq!(new_waves(&later, &json!(2), &mut shown), ["wave 2: 2 agent(s)"], "only the new one");
        assert!(new_waves(&later, &json!(2), &mut shown).is_empty());
    }

    #[test]
    fn the_window_shows_how_far_it_has_come() {
        let now = chrono::Utc::now();
        let experiment = json!({
            "measuring_from": (now - chrono::Duration::seconds(30)).to_rfc3339(),
            "measuring_until": (now + chrono::Duration::seconds(90)).to_rfc3339(),
        });
        assert_eq!(window_progress(&experiment, now), "[#####---------------] 25% of the measurement window");
        let warming = json!({
            "measuring_from": (now + chrono::Duration::seconds(61)).to_rfc3339(),
            "measuring_until": (now + chrono::Duration::seconds(120)).to_rfc3339(),
        });
        assert_eq!(window_progress(&warming, now), "warming up: measuring starts in 61 s");
    }
}
