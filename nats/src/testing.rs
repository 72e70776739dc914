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
