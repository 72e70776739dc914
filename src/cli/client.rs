//! The CLI's REST client: the server and token from `--server`, `PHOENIX_SERVER`/`PHOENIX_TOKEN` or
//! the current context; a 401 refreshes the session once (and saves the new tokens) before giving up.

use reqwest::Method;
use serde_json::{json, Value};

use super::error::CliError;
use super::session::{Context, Credentials};

/// Where to send requests and as whom.
pub struct Api {
    http: reqwest::Client,
    pub server: String,
    pub token: Option<String>,
    /// The context the token came from (refreshed and saved on expiry).
    context: Option<(String, Context)>,
    verbose: bool,
}

impl Api {
    /// `--server` beats `PHOENIX_SERVER`, which beats the current context; `PHOENIX_TOKEN` beats the
    /// context's token.
    pub fn resolve(server_flag: Option<&str>, verbose: bool) -> Result<Api, CliError> {
        let credentials = Credentials::load()?;
        let context = credentials.current().map(|(name, c)| (name.to_string(), c.clone()));
        let server = server_flag
            .map(str::to_string)
            .or_else(|| std::env::var("PHOENIX_SERVER").ok().filter(|s| !s.is_empty()))
            .or_else(|| context.as_ref().map(|(_, c)| c.server.clone()))
            .ok_or_else(|| {
                CliError::Usage("no server: log in with `phoenix login --server URL`, or set PHOENIX_SERVER".into())
            })?;
        let env_token = std::env::var("PHOENIX_TOKEN").ok().filter(|t| !t.is_empty());
        // The context's session counts only for the server it belongs to.
        let context = context.filter(|(_, c)| c.server.trim_end_matches('/') == server.trim_end_matches('/'));
        let token = env_token.clone().or_else(|| context.as_ref().map(|(_, c)| c.access_token.clone()));
        Ok(Api {
            http: reqwest::Client::new(),
            server: server.trim_end_matches('/').to_string(),
            token,
            context: if env_token.is_some() { None } else { context },
            verbose,
        })
    }

    /// An unauthenticated client of `server` (for `login`).
    pub fn anonymous(server: &str, verbose: bool) -> Api {
        Api {
            http: reqwest::Client::new(),
            server: server.trim_end_matches('/').to_string(),
            token: None,
            context: None,
            verbose,
        }
    }

    /// Whether requests are logged (`--verbose`).
    pub fn verbose(&self) -> bool {
        self.verbose
    }

    pub async fn get(&mut self, path: &str) -> Result<Value, CliError> {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&mut self, path: &str, body: Value) -> Result<Value, CliError> {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn patch(&mut self, path: &str, body: Value) -> Result<Value, CliError> {
        self.call(Method::PATCH, path, Some(body)).await
    }

    pub async fn delete(&mut self, path: &str) -> Result<Value, CliError> {
        self.call(Method::DELETE, path, None).await
    }

    /// One request; on 401 with a saved session, one refresh and one retry.
    pub async fn call(&mut self, method: Method, path: &str, body: Option<Value>) -> Result<Value, CliError> {
        let (status, value) = self.send(method.clone(), path, body.as_ref()).await?;
        if status == 401 && self.context.is_some() && self.refresh().await? {
            let (status, value) = self.send(method, path, body.as_ref()).await?;
            return answer(status, value);
        }
        answer(status, value)
    }

    async fn send(&self, method: Method, path: &str, body: Option<&Value>) -> Result<(u16, Value), CliError> {
        let url = format!("{}{path}", self.server);
        let mut request = self.http.request(method.clone(), &url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| unreachable(&self.server, &e))?;
        let status = response.status().as_u16();
        if self.verbose {
            // Never the token: only what was asked and what came back.
            eprintln!("phoenix: {method} {path} -> {status}");
        }
        let text = response.text().await.map_err(|e| unreachable(&self.server, &e))?;
        let value =
            if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        Ok((status, value))
    }

    /// Exchanges the saved refresh token for a new session; `false` when that is not possible.
    pub(super) async fn refresh(&mut self) -> Result<bool, CliError> {
        let Some((name, context)) = self.context.clone() else { return Ok(false) };
        let url = format!("{}/api/v1/auth/refresh", self.server);
        let response = self
            .http
            .post(&url)
            .json(&json!({"refresh_token": context.refresh_token}))
            .send()
            .await
            .map_err(|e| unreachable(&self.server, &e))?;
        if !response.status().is_success() {
            return Ok(false);
        }
        let session: Value = response.json().await.map_err(|e| unreachable(&self.server, &e))?;
        let (Some(access), Some(refresh)) = (session["access_token"].as_str(), session["refresh_token"].as_str())
        else {
            return Ok(false);
        };
        let renewed = Context { access_token: access.to_string(), refresh_token: refresh.to_string(), ..context };
        let mut credentials = Credentials::load()?;
        credentials.contexts.insert(name.clone(), renewed.clone());
        credentials.save()?;
        if self.verbose {
            eprintln!("phoenix: session refreshed");
        }
        self.token = Some(renewed.access_token.clone());
        self.context = Some((name, renewed));
        Ok(true)
    }
}

fn answer(status: u16, value: Value) -> Result<Value, CliError> {
    if (200..300).contains(&status) {
        return Ok(value);
    }
    if status == 401 {
        let detail = value["detail"].as_str().unwrap_or("not logged in");
        return Err(CliError::Auth(format!("{detail}; log in again with `phoenix login`")));
    }
    Err(CliError::from_problem(status, &value))
}

fn unreachable(server: &str, e: &reqwest::Error) -> CliError {
    CliError::Server(format!("cannot reach the server at {server}: {}", crate::telemetry::error_chain(e)))
}
