//! Listening sockets for the components that serve (receivers, the scrape endpoint).

/// Binds `endpoint` (`host:port`) with SO_REUSEPORT: a new version of a pipeline binds the endpoint
/// while the old one still holds it (its server task is being cancelled), so the handover leaves no
/// moment without a listener and fails with no "address in use". Needs a tokio runtime.
pub fn listen(endpoint: &str) -> Result<tokio::net::TcpListener, String> {
    let addr: std::net::SocketAddr = endpoint.parse().map_err(|_| format!("'{endpoint}' is not an address"))?;
    let bound = || -> std::io::Result<std::net::TcpListener> {
        let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(1024)?;
        Ok(socket.into())
    };
    let listener = bound().map_err(|e| format!("cannot listen on {endpoint}: {e}"))?;
    tokio::net::TcpListener::from_std(listener).map_err(|e| format!("cannot listen on {endpoint}: {e}"))
}

/// Accepts connections until the returned task is aborted, each served by `serve` in a task of its own.
pub fn serve_connections<Serve, Served>(listener: tokio::net::TcpListener, serve: Serve) -> tokio::task::JoinHandle<()>
where
    Serve: Fn(tokio::net::TcpStream) -> Served + Send + 'static,
    Served: std::future::Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                // Out of descriptors or the like: wait a little and keep serving.
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            };
            tokio::spawn(serve(stream));
        }
    })
}

/// Serves HTTP/1.1 on `listener` until the returned task is aborted, each request answered by `handle`.
/// A client that connects and says nothing is dropped after 10 s, so it cannot hold a descriptor.
pub fn serve_http1<Handle, Answer>(listener: tokio::net::TcpListener, handle: Handle) -> tokio::task::JoinHandle<()>
where
    Handle: Fn(hyper::Request<hyper::body::Incoming>) -> Answer + Clone + Send + Sync + 'static,
    Answer: std::future::Future<Output = hyper::Response<http_body_util::Full<bytes::Bytes>>> + Send + 'static,
{
    serve_connections(listener, move |stream| {
        let handle = handle.clone();
        async move {
            let service = hyper::service::service_fn(move |request| {
                let answer = handle(request);
                async move { Ok::<_, std::convert::Infallible>(answer.await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        }
    })
}

/// A request's body, or `None` when it is (or announces being) over `limit` bytes.
pub async fn body_within(request: hyper::Request<hyper::body::Incoming>, limit: usize) -> Option<bytes::Bytes> {
    use http_body_util::BodyExt;
    let declared: Option<usize> =
        request.headers().get(hyper::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    if declared.is_some_and(|length| length > limit) {
        return None;
    }
    http_body_util::Limited::new(request.into_body(), limit).collect().await.ok().map(|body| body.to_bytes())
}

/// An address a pipeline listens on.
#[derive(Debug, Clone, PartialEq)]
pub struct Listening {
    /// Where in the config: `receivers.otlp.protocols.grpc.endpoint`.
    pub path: String,
    pub addr: std::net::SocketAddr,
    /// For a receiver, what identifies it (see [`crate::sources::shared`]): pipelines whose receivers
    /// have one key share that receiver, so its addresses are no conflict between them.
    pub share_key: Option<String>,
}

impl Listening {
    /// True when `self` and `other` cannot both be served: the same port, and not one shared receiver.
    pub fn conflicts_with(&self, other: &Listening) -> bool {
        let shared = self.share_key.is_some() && self.share_key == other.share_key;
        overlap(&self.addr, &other.addr) && !shared
    }
}

/// The addresses the metrics pipeline of `config` would listen on (`otlp` and `prometheus_remote_write`
/// receivers, `prometheus` exporters). Two pipelines on one agent must not share one unless it is one
/// shared receiver: with SO_REUSEPORT both would bind, and the kernel would split the connections.
pub fn listen_addresses(config: &crate::config::PipelineConfig) -> Vec<Listening> {
    let Some((_, pipeline)) = config.metrics_pipeline() else { return Vec::new() };
    let mut found = Vec::new();
    for id in &pipeline.receivers {
        let section = config.receivers.get(id).cloned().unwrap_or_default();
        let path = format!("receivers.{id}");
        let kind = crate::config::component_type(id);
        let key = Some(crate::sources::shared::share_key(kind, &section));
        let addresses = match kind {
            "otlp" => crate::processors::parse::<crate::otlp::OtlpConfig>(&section, "")
                .map(|otlp| otlp.endpoints(&path))
                .unwrap_or_default(),
            "prometheus_remote_write" => {
                let parsed = crate::processors::parse::<crate::sources::RemoteWriteReceiverConfig>(&section, "");
                parsed
                    .ok()
                    .and_then(|c| c.endpoint.parse().ok())
                    .map(|a| vec![(format!("{path}.endpoint"), a)])
                    .unwrap_or_default()
            }
            _ => Vec::new(),
        };
        found.extend(addresses.into_iter().map(|(path, addr)| Listening { path, addr, share_key: key.clone() }));
    }
    for id in &pipeline.exporters {
        if crate::config::component_type(id) != "prometheus" {
            continue;
        }
        let section = config.exporters.get(id).cloned().unwrap_or_default();
        let Ok(scrape) = crate::processors::parse::<crate::exporters::PrometheusConfig>(&section, "") else {
            continue;
        };
        if let Ok(addr) = scrape.endpoint.parse() {
            found.push(Listening { path: format!("exporters.{id}.endpoint"), addr, share_key: None });
        }
    }
    found
}

/// True when listening on both would take the same port (the same address, or one of them every
/// address).
pub fn overlap(a: &std::net::SocketAddr, b: &std::net::SocketAddr) -> bool {
    a.port() == b.port() && a.port() != 0 && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_are_read_from_receivers_and_exporters() {
        let config = crate::config::parse(
            "receivers: {otlp: {protocols: {http: {endpoint: '0.0.0.0:4318'}}}}\nexporters: {prometheus: {}}\nservice: {pipelines: {m: {receivers: [otlp], exporters: [prometheus]}}}",
        )
        .expect("config");
        let found = listen_addresses(&config);
        let paths: Vec<&str> = found.iter().map(|l| l.path.as_str()).collect();
        assert_eq!(paths, ["receivers.otlp.protocols.http.endpoint", "exporters.prometheus.endpoint"]);
        let loopback: std::net::SocketAddr = "127.0.0.1:4318".parse().expect("addr");
        assert!(overlap(&found[0].addr, &loopback), "every address includes loopback");
        assert!(!overlap(&found[1].addr, &loopback), "another port");
        let twin = found[0].clone();
        assert!(!found[0].conflicts_with(&twin), "one receiver configured alike is shared");
        let other = Listening { share_key: Some("otlp\nsomething else".into()), ..twin };
        assert!(found[0].conflicts_with(&other), "a receiver configured otherwise cannot take the port");
    }
}
