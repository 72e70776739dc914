//! Connecting to NATS: options, credentials, and the agent results stream set up on connect.

use std::fmt;
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use async_nats::{ConnectOptions, Event};
use tracing::{debug, info, warn};

use super::jetstream_error;
use crate::error::BusError;
use crate::subjects::Subjects;
use crate::trust::UserCredential;

/// How long the agent results stream keeps a message.
pub const RESULTS_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// How to connect to NATS.
///
/// Credentials may also be given in the URL (`nats://user:password@host:4222`, or
/// `nats://token@host:4222`), percent-encoded where needed; values set here take precedence.
#[derive(Clone)]
pub struct NatsBusOptions {
    /// The subjects (and so the stream name) of this installation.
    pub subjects: Subjects,
    /// Client name shown by the server in its connection list.
    pub name: String,
    /// User and password, when the server requires them.
    pub credentials: Option<(String, String)>,
    /// Authentication token, when the server requires one.
    pub token: Option<String>,
    /// A user JWT and its key (NATS operator mode), instead of a password or token.
    pub jwt: Option<UserCredential>,
    /// The prefix of this client's reply inboxes (`_INBOX` when unset). An agent with its own NATS
    /// identity may only receive replies below its own prefix.
    pub inbox_prefix: Option<String>,
    /// How long the initial connection may take.
    pub connect_timeout: Duration,
    /// Create or update the agent results stream on connect. Servers do; agents, whose NATS user may
    /// only publish their reports, do not.
    pub manage_stream: bool,
    /// Copies of that stream JetStream keeps (3 on a cluster of three nodes or more).
    pub stream_replicas: usize,
}

impl Default for NatsBusOptions {
    fn default() -> Self {
        Self {
            subjects: Subjects::default(),
            name: "phoenix".to_owned(),
            credentials: None,
            token: None,
            jwt: None,
            inbox_prefix: None,
            connect_timeout: Duration::from_secs(5),
            manage_stream: true,
            stream_replicas: 1,
        }
    }
}

impl fmt::Debug for NatsBusOptions {
    // Secrets never print: only whether they are set.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsBusOptions")
            .field("subjects", &self.subjects)
            .field("name", &self.name)
            .field("user", &self.credentials.as_ref().map(|(user, _)| user))
            .field("password", &self.credentials.as_ref().map(|_| "<redacted>"))
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("jwt", &self.jwt)
            .field("inbox_prefix", &self.inbox_prefix)
            .field("connect_timeout", &self.connect_timeout)
            .field("manage_stream", &self.manage_stream)
            .field("stream_replicas", &self.stream_replicas)
            .finish()
    }
}

/// Credentials written into a server URL.
#[derive(Debug, PartialEq, Eq)]
enum UrlAuth {
    UserPassword(String, String),
    Token(String),
}

/// A comma-separated server list with its credentials taken out (async-nats ignores them,
/// nats-io/nats.rs#1623), so the rest can be logged.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ServerList {
    servers: Vec<String>,
    auth: Option<UrlAuth>,
}

impl ServerList {
    fn parse(urls: &str) -> Self {
        let mut auth = None;
        let mut servers = Vec::new();
        for url in urls.split(',').map(str::trim).filter(|url| !url.is_empty()) {
            let (server, found) = split_userinfo(url);
            servers.push(server);
            auth = auth.or(found);
        }
        Self { servers, auth }
    }

    /// The servers without credentials, safe to log.
    pub(crate) fn display(&self) -> String {
        self.servers.join(",")
    }
}

/// Whether a comma-separated server list carries credentials (`user:password@` or `token@`).
pub fn urls_carry_credentials(urls: &str) -> bool {
    ServerList::parse(urls).auth.is_some()
}

/// Splits `scheme://userinfo@host` into `scheme://host` and the credentials.
fn split_userinfo(url: &str) -> (String, Option<UrlAuth>) {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), url),
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return (url.to_owned(), None);
    };
    let auth = match userinfo.split_once(':') {
        Some((user, password)) => UrlAuth::UserPassword(percent_decode(user), percent_decode(password)),
        None => UrlAuth::Token(percent_decode(userinfo)),
    };
    (format!("{scheme}{host}"), Some(auth))
}

/// Decodes `%XX` escapes; anything malformed is kept as written.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped =
            (bytes[i] == b'%').then(|| s.get(i + 1..i + 3)).flatten().and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| s.to_owned())
}

/// Opens the connection (tried once; reconnects are async-nats's job afterwards) and makes sure
/// the agent results stream exists with the expected configuration.
pub(super) async fn open(
    urls: &str,
    options: &NatsBusOptions,
) -> Result<(async_nats::Client, jetstream::Context), BusError> {
    let (client, servers) = connect_client(urls, options).await?;
    let jetstream = jetstream::new(client.clone());
    if options.manage_stream {
        ensure_results_stream(&jetstream, &options.subjects, options.stream_replicas).await?;
    }
    info!(
        nats.url = %servers.display(),
        nats.stream = %options.subjects.agent_results_stream(),
        "connected to NATS"
    );
    Ok((client, jetstream))
}

/// Opens a plain client connection (credentials taken out of the URLs); the server list, safe to log.
pub(crate) async fn connect_client(
    urls: &str,
    options: &NatsBusOptions,
) -> Result<(async_nats::Client, ServerList), BusError> {
    install_crypto_provider();
    let servers = ServerList::parse(urls);
    let connect = connect_options(options, servers.auth.as_ref());
    let client = connect
        .connect(servers.servers.as_slice())
        .await
        .map_err(|source| BusError::Connect { url: servers.display(), source: source.into() })?;
    Ok((client, servers))
}

/// Installs rustls's ring provider once per process; async-nats panics on TLS connections when
/// two providers are compiled in and none is installed (see STACK.md).
pub(crate) fn install_crypto_provider() {
    let provider = async_nats::rustls::crypto::ring::default_provider();
    if provider.install_default().is_err() {
        debug!("a rustls crypto provider was already installed");
    }
}

fn connect_options(options: &NatsBusOptions, url_auth: Option<&UrlAuth>) -> ConnectOptions {
    let mut connect = match &options.jwt {
        Some(credential) => jwt_auth(credential),
        None => ConnectOptions::new(),
    };
    if let Some(prefix) = &options.inbox_prefix {
        connect = connect.custom_inbox_prefix(prefix);
    }
    connect = connect
        .name(&options.name)
        .connection_timeout(options.connect_timeout)
        .event_callback(|event| async move { log_event(&event) });
    let (url_user, url_token) = match url_auth {
        Some(UrlAuth::UserPassword(user, password)) => (Some((user, password)), None),
        Some(UrlAuth::Token(token)) => (None, Some(token)),
        None => (None, None),
    };
    let user = options.credentials.as_ref().map(|(u, p)| (u, p)).or(url_user);
    if let Some((user, password)) = user {
        connect = connect.user_and_password(user.clone(), password.clone());
    }
    if let Some(token) = options.token.as_ref().or(url_token) {
        connect = connect.token(token.clone());
    }
    connect
}

/// Proves the JWT's key by signing the server's nonce with it.
fn jwt_auth(credential: &UserCredential) -> ConnectOptions {
    let key = credential.key.clone();
    ConnectOptions::with_jwt(credential.jwt.clone(), move |nonce| {
        let key = key.clone();
        async move { key.sign(&nonce).map_err(async_nats::AuthError::new) }
    })
}

fn log_event(event: &Event) {
    match event {
        Event::Connected => info!("NATS connection (re)established"),
        Event::Disconnected => warn!("NATS connection lost, reconnecting"),
        Event::SlowConsumer(sid) => warn!(nats.sid = sid, "NATS slow consumer, messages dropped"),
        other => debug!(nats.event = %other, "NATS connection event"),
    }
}

async fn ensure_results_stream(
    jetstream: &jetstream::Context,
    subjects: &Subjects,
    replicas: usize,
) -> Result<(), BusError> {
    let name = subjects.agent_results_stream();
    let config = stream::Config {
        name: name.clone(),
        subjects: subjects.agent_results_subjects(),
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        max_age: RESULTS_MAX_AGE,
        num_replicas: replicas.max(1),
        ..Default::default()
    };
    jetstream
        .create_or_update_stream(config)
        .await
        .map_err(|error| jetstream_error(format!("create or update stream {name}"), error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(user: &str, password: &str) -> Option<UrlAuth> {
        Some(UrlAuth::UserPassword(user.into(), password.into()))
    }

    #[test]
    fn url_credentials_are_taken_out_of_the_server_list() {
        let list = ServerList::parse("nats://phoenix:s3cret@nats:4222");
        assert_eq!(list.servers, ["nats://nats:4222"]);
        assert_eq!(list.auth, user("phoenix", "s3cret"));
        assert_eq!(list.display(), "nats://nats:4222");
    }

    #[test]
    fn a_bare_user_in_the_url_is_a_token_and_escapes_are_decoded() {
        let list = ServerList::parse("tls://t%40k@a:4222, nats://b:4222");
        assert_eq!(list.servers, ["tls://a:4222", "nats://b:4222"]);
        assert_eq!(list.auth, Some(UrlAuth::Token("t@k".into())));
        let list = ServerList::parse("u:p%3Aq%zz@host");
        assert_eq!(list.servers, ["host"]);
        assert_eq!(list.auth, user("u", "p:q%zz"));
    }

    #[test]
    fn urls_without_credentials_are_kept_as_written() {
        let list = ServerList::parse("nats://127.0.0.1:4222");
        assert_eq!(list.servers, ["nats://127.0.0.1:4222"]);
        assert_eq!(list.auth, None);
    }

    #[test]
    fn options_debug_never_shows_secrets() {
        let options = NatsBusOptions {
            credentials: Some(("alice".into(), "s3cret".into())),
            token: Some("t0ken".into()),
            ..Default::default()
        };
        let printed = format!("{options:?}");
        assert!(printed.contains("alice"));
        assert!(!printed.contains("s3cret") && !printed.contains("t0ken"), "{printed}");
    }
}
