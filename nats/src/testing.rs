//! Test support shared by the workspace's test suites (feature `testing`).

/// Deletes a test's JetStream stream when dropped, even when the test panicked. Tests give every
/// bus its own subject prefix, so each one creates its own stream; this keeps the server clean.
pub struct StreamCleanup {
    /// NATS server URL.
    pub url: String,
    /// Stream to delete.
    pub stream: String,
}

impl Drop for StreamCleanup {
    fn drop(&mut self) {
        let (url, stream) = (self.url.clone(), self.stream.clone());
        // Its own thread and runtime: the test's runtime may be shutting down or unwinding.
        let deleted = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            runtime.block_on(async {
                let client = async_nats::connect(url).await.ok()?;
                let jetstream = async_nats::jetstream::new(client);
                jetstream.delete_stream(&stream).await.ok()
            })
        })
        .join();
        if !matches!(deleted, Ok(Some(_))) {
            eprintln!("best-effort cleanup: could not delete stream {}", self.stream);
        }
    }
}

/// A nats-server of the test's own in operator mode (per-agent NATS identities): it trusts `trust`'s
/// operator, listens on a free loopback port with JetStream, and is stopped (its files removed) when
/// dropped. The binary is `$PHOENIX_TEST_NATS_SERVER_BIN`, else `nats-server` on the PATH.
pub struct OperatorNats {
    /// `nats://127.0.0.1:<port>`.
    pub url: String,
    child: std::process::Child,
    dir: std::path::PathBuf,
}

impl OperatorNats {
    /// Starts it and waits until it accepts connections. Panics with the server's log when it cannot.
    pub fn start(trust: &crate::trust::NatsTrust) -> OperatorNats {
        let dir = std::env::temp_dir().join(format!("phoenix-operator-nats-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).expect("create the NATS test directory");
        let resolver = dir.join("jwt");
        let include = trust.server_config(&resolver.to_string_lossy()).expect("server config");
        std::fs::write(dir.join("trust.conf"), include).expect("write trust.conf");
        let mut last_log = String::new();
        // The free port is found by binding port 0 and letting it go, which can race another test:
        // a start that fails is retried on another port.
        for _ in 0..5 {
            let port =
                std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
            let config = format!(
                "listen: \"127.0.0.1:{port}\"\ninclude \"trust.conf\"\njetstream {{ store_dir: {:?} }}\n",
                dir.join("js").to_string_lossy()
            );
            let conf = dir.join("nats-server.conf");
            std::fs::write(&conf, config).expect("write nats-server.conf");
            let log = dir.join("nats-server.log");
            let bin = std::env::var("PHOENIX_TEST_NATS_SERVER_BIN").unwrap_or_else(|_| "nats-server".into());
            let mut child = std::process::Command::new(&bin)
                .arg("-c")
                .arg(&conf)
                .arg("-l")
                .arg(&log)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {bin} (install the nats-server package): {e}"));
            let addr = format!("127.0.0.1:{port}");
            if answers_nats(&mut child, &addr, std::time::Duration::from_secs(10)) {
                return OperatorNats { url: format!("nats://{addr}"), child, dir };
            }
            last_log = std::fs::read_to_string(&log).unwrap_or_default();
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&dir);
        panic!("nats-server in operator mode did not start:\n{last_log}");
    }

    /// The server's log so far (for a failing test's message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("nats-server.log")).unwrap_or_default()
    }
}

/// Whether the nats-server `child` answers the client protocol's greeting on `addr` within `within`
/// (`false` at once if it exited).
fn answers_nats(child: &mut std::process::Child, addr: &str, within: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + within;
    while std::time::Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return false;
        }
        if let Ok(stream) = std::net::TcpStream::connect(addr) {
            let mut greeting = [0u8; 4];
            let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(1)));
            if std::io::Read::read_exact(&mut &stream, &mut greeting).is_ok() && &greeting == b"INFO" {
                return true;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    false
}

impl Drop for OperatorNats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A bare client connected with a user JWT (as a third-party agent would), with every event the NATS
/// server sent it, so a test can see a permission violation or a disconnect.
pub struct ObservedClient {
    /// The connection.
    pub client: async_nats::Client,
    events: tokio::sync::mpsc::UnboundedReceiver<async_nats::Event>,
}

impl ObservedClient {
    /// Connects to `url` as `credential`'s user, with replies below `inbox_prefix`; gives up
    /// reconnecting after two tries (a revoked user's tries are refused).
    pub async fn connect(
        url: &str,
        credential: &crate::trust::UserCredential,
        inbox_prefix: &str,
    ) -> Result<ObservedClient, async_nats::ConnectError> {
        let (events_tx, events) = tokio::sync::mpsc::unbounded_channel();
        let key = credential.key.clone();
        let client = async_nats::ConnectOptions::with_jwt(credential.jwt.clone(), move |nonce| {
            let key = key.clone();
            async move { key.sign(&nonce).map_err(async_nats::AuthError::new) }
        })
        .custom_inbox_prefix(inbox_prefix)
        .max_reconnects(Some(2))
        .event_callback(move |event| {
            let events_tx = events_tx.clone();
            async move {
                let _ = events_tx.send(event);
            }
        })
        .connect(url)
        .await?;
        Ok(ObservedClient { client, events })
    }

    /// Waits for an event whose text contains `needle` (case-insensitive) and returns its text;
    /// panics after `within`.
    pub async fn expect_event(&mut self, needle: &str, within: std::time::Duration) -> String {
        let needle = needle.to_lowercase();
        let seen = tokio::time::timeout(within, async {
            while let Some(event) = self.events.recv().await {
                let text = event.to_string();
                if text.to_lowercase().contains(&needle) {
                    return text;
                }
            }
            panic!("the connection's events ended before one with {needle:?}");
        })
        .await;
        seen.unwrap_or_else(|_| panic!("no NATS event with {needle:?} within {within:?}"))
    }
}
