//! A real headless Chromium for the dashboard's end-to-end tests, driven over WebDriver (JSON over HTTP
//! to `chromedriver`). Waits name what they waited for, so a failure says which element was missing or
//! what it showed instead; every page the test visits can be saved as a screenshot.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

use crate::helpers::free_local_addr;

/// How long a wait lasts before it fails the test (a loaded 2-core machine is slow to render).
const PATIENCE: Duration = Duration::from_secs(20);
/// The W3C name of an element reference in WebDriver answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Chromium, or why the browser tests cannot run.
pub fn chromium() -> (&'static str, &'static str) {
    let (browser, driver) = ("/usr/bin/chromium", "/usr/bin/chromedriver");
    assert!(
        std::path::Path::new(browser).exists() && std::path::Path::new(driver).exists(),
        "the dashboard tests need Debian's chromium and chromium-driver (./scripts/test installs them)"
    );
    (browser, driver)
}

/// One browser session (its own chromedriver and profile), gone when dropped.
pub struct Browser {
    http: reqwest::Client,
    session: String,
    driver: tokio::process::Child,
    _profile: tempfile::TempDir,
    shots: PathBuf,
    shot: usize,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium at `width` x `height`; screenshots go to
    /// `<target>/tmp/dashboard/<test>/`.
    pub async fn start(test: &str, width: u32, height: u32) -> Browser {
        let (binary, driver_path) = chromium();
        let port = free_local_addr().rsplit_once(':').map(|(_, p)| p.to_string()).expect("port");
        let mut driver = tokio::process::Command::new(driver_path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .process_group(0)
            .spawn()
            .expect("start chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let started = Instant::now();
        while !http.get(format!("{base}/status")).send().await.is_ok_and(|r| r.status().is_success()) {
            assert!(started.elapsed() < PATIENCE, "chromedriver did not answer on {base}");
            if let Ok(Some(status)) = driver.try_wait() {
                panic!("chromedriver exited: {status}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().expect("browser profile");
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            &format!("--window-size={width},{height}"),
            &format!("--user-data-dir={}", profile.path().display()),
        ];
        let mut options = json!({"binary": binary, "args": args});
        if width < 500 {
            // A desktop window cannot be that narrow: emulate a phone's screen instead.
            options["mobileEmulation"] = json!({"deviceMetrics": {"width": width, "height": height, "pixelRatio": 1}});
        }
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": options,
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let answer: Value = http
            .post(format!("{base}/session"))
            .json(&capabilities)
            .send()
            .await
            .expect("new session")
            .json()
            .await
            .expect("session JSON");
        let id = answer["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no browser session: {answer}"));
        let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard").join(test);
        let _ = std::fs::remove_dir_all(&shots);
        std::fs::create_dir_all(&shots).expect("screenshot folder");
        Browser { http, session: format!("{base}/session/{id}"), driver, _profile: profile, shots, shot: 0 }
    }

    /// One WebDriver command; its `value`, or the WebDriver error as `Err`.
    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value, String> {
        let mut request = self.http.request(method, format!("{}{path}", self.session));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|e| e.to_string())?;
        let ok = response.status().is_success();
        let answer: Value = response.json().await.map_err(|e| e.to_string())?;
        if ok {
            Ok(answer["value"].clone())
        } else {
            Err(format!("{}: {}", answer["value"]["error"], answer["value"]["message"]))
        }
    }

    pub async fn goto(&self, url: &str) {
        self.command(reqwest::Method::POST, "/url", Some(json!({"url": url}))).await.expect("navigate");
    }

    /// Runs `script` in the page (`arguments[0..]` are `args`) and returns what it returns.
    pub async fn run(&self, script: &str, args: Value) -> Value {
        self.command(reqwest::Method::POST, "/execute/sync", Some(json!({"script": script, "args": args})))
            .await
            .unwrap_or_else(|e| panic!("script failed ({e}): {script}"))
    }

    /// The element `css` matches, once it is there and visible.
    pub async fn find(&self, css: &str) -> String {
        let started = Instant::now();
        loop {
            let found = self
                .command(reqwest::Method::POST, "/element", Some(json!({"using": "css selector", "value": css})))
                .await;
            if let Ok(element) = found {
                let id = element[ELEMENT].as_str().expect("element id").to_string();
                let shown = self.command(reqwest::Method::GET, &format!("/element/{id}/displayed"), None).await;
                if shown == Ok(Value::Bool(true)) {
                    return id;
                }
            }
            assert!(
                started.elapsed() < PATIENCE,
                "waited {PATIENCE:?} for a visible {css}: {}",
                self.page_summary().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether `css` matches a visible element right now.
    pub async fn visible(&self, css: &str) -> bool {
        let script =
            "const e = document.querySelector(arguments[0]); return !!e && !e.hidden && e.offsetParent !== null;";
        self.run(script, json!([css])).await == Value::Bool(true)
    }

    /// Clicks `css`; an element replaced between finding and clicking it (a live update re-rendered
    /// it) is found again.
    pub async fn click(&self, css: &str) {
        let started = Instant::now();
        loop {
            let id = self.find(css).await;
            match self.command(reqwest::Method::POST, &format!("/element/{id}/click"), Some(json!({}))).await {
                Ok(_) => return,
                Err(e) if e.contains("stale element") && started.elapsed() < PATIENCE => continue,
                Err(e) => panic!("click on {css}: {e}"),
            }
        }
    }

    /// Clears the field and types `text` into it, key by key, as a person would.
    pub async fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        let _ = self.command(reqwest::Method::POST, &format!("/element/{id}/clear"), Some(json!({}))).await;
        self.command(reqwest::Method::POST, &format!("/element/{id}/value"), Some(json!({"text": text})))
            .await
            .unwrap_or_else(|e| panic!("typing into {css}: {e}"));
    }

    /// Chooses the option with `value` in the select `css` (and lets the page know, as a person's
    /// choice would).
    pub async fn choose(&self, css: &str, value: &str) {
        self.find(&format!("{css} option[value=\"{value}\"]")).await;
        let script = "const s = document.querySelector(arguments[0]); s.value = arguments[1]; \
                      s.dispatchEvent(new Event('input', {bubbles: true})); \
                      s.dispatchEvent(new Event('change', {bubbles: true}));";
        self.run(script, json!([css, value])).await;
    }

    /// The text of the element `css` (trimmed).
    pub async fn text(&self, css: &str) -> String {
        let id = self.find(css).await;
        let text = self.command(reqwest::Method::GET, &format!("/element/{id}/text"), None).await;
        text.ok().and_then(|t| t.as_str().map(|s| s.trim().to_string())).unwrap_or_default()
    }

    /// Waits until the text of `css` satisfies `wanted` (described by `what`); returns it.
    pub async fn wait_text(&self, css: &str, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        self.wait_text_for(PATIENCE, css, what, wanted).await
    }

    /// [`Browser::wait_text`] with its own patience.
    pub async fn wait_text_for(
        &self,
        patience: Duration,
        css: &str,
        what: &str,
        wanted: impl Fn(&str) -> bool,
    ) -> String {
        let started = Instant::now();
        let mut last = String::new();
        loop {
            let script = "const e = document.querySelector(arguments[0]); return e ? e.textContent.trim() : null;";
            if let Value::String(text) = self.run(script, json!([css])).await {
                if wanted(&text) {
                    return text;
                }
                last = text;
            }
            assert!(
                started.elapsed() < patience,
                "waited {patience:?} for {css} to {what}; it showed {last:?}; {}",
                self.page_summary().await
            );
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    /// Waits until `css` matches at least `n` elements; returns how many it matched.
    pub async fn wait_count(&self, css: &str, n: usize) -> usize {
        let started = Instant::now();
        loop {
            let count = self.run("return document.querySelectorAll(arguments[0]).length;", json!([css])).await;
            let count = count.as_u64().unwrap_or(0) as usize;
            if count >= n {
                return count;
            }
            assert!(started.elapsed() < PATIENCE, "waited {PATIENCE:?} for {n} of {css}, saw {count}");
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    /// Whether the button `css` can be pressed.
    pub async fn enabled(&self, css: &str) -> bool {
        let id = self.find(css).await;
        self.command(reqwest::Method::GET, &format!("/element/{id}/enabled"), None).await == Ok(Value::Bool(true))
    }

    /// Saves what the browser shows as `NN-<label>.png`.
    pub async fn screenshot(&mut self, label: &str) {
        let Ok(Value::String(png)) = self.command(reqwest::Method::GET, "/screenshot", None).await else { return };
        let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(png) else { return };
        self.shot += 1;
        let _ = std::fs::write(self.shots.join(format!("{:02}-{label}.png", self.shot)), bytes);
    }

    /// Errors the page's scripts logged to the console. Chromium also logs every 4xx answer the page
    /// received (source `network`); a test that provokes one on purpose must not count it.
    pub async fn console_errors(&self) -> Vec<String> {
        let logs = self.command(reqwest::Method::POST, "/se/log", Some(json!({"type": "browser"}))).await;
        let logs = logs.unwrap_or_else(|e| panic!("cannot read the browser's console: {e}"));
        logs.as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter(|entry| entry["level"] == "SEVERE" && entry["source"] != "network")
            .map(|entry| entry["message"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// Where the page is and what it says, for failure messages.
    async fn page_summary(&self) -> String {
        let script = "return location.hash + ' | ' + document.body.innerText.slice(0, 600).replace(/\\s+/g, ' ');";
        match self.command(reqwest::Method::POST, "/execute/sync", Some(json!({"script": script, "args": []}))).await {
            Ok(Value::String(summary)) => format!("page: {summary}"),
            other => format!("page unreadable: {other:?}"),
        }
    }

    /// Ends the session (Chromium exits) and stops chromedriver.
    pub async fn quit(mut self) {
        let _ = self.command(reqwest::Method::DELETE, "", None).await;
        let _ = self.driver.kill().await;
    }
}

impl Drop for Browser {
    /// A failed test never reaches `quit`: stop chromedriver and the Chromium it started (one group).
    fn drop(&mut self) {
        if let Some(pid) = self.driver.id().and_then(|pid| i32::try_from(pid).ok()) {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }
}
