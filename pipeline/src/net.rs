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

/// The addresses the first pipeline of `config` would listen on, with the path of each (`otlp` and
/// `prometheus_remote_write` receivers, `prometheus` exporters). Two pipelines on one agent must not share one: with SO_REUSEPORT
/// both would bind, and the kernel would split the connections between them.
pub fn listen_addresses(config: &crate::config::PipelineConfig) -> Vec<(String, std::net::SocketAddr)> {
    let Some((_, pipeline)) = config.metrics_pipeline() else { return Vec::new() };
    let mut found = Vec::new();
    for id in &pipeline.receivers {
        let section = config.receivers.get(id).cloned().unwrap_or_default();
        let path = format!("receivers.{id}");
        match crate::config::component_type(id) {
            "otlp" => {
                let Ok(otlp) = crate::processors::parse::<crate::otlp::OtlpConfig>(&section, "") else { continue };
                found.extend(otlp.endpoints(&path));
            }
            "prometheus_remote_write" => {
                let parsed = crate::processors::parse::<crate::sources::RemoteWriteReceiverConfig>(&section, "");
                if let Some(addr) = parsed.ok().and_then(|c| c.endpoint.parse().ok()) {
                    found.push((format!("{path}.endpoint"), addr));
                }
            }
            _ => {}
        }
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
            found.push((format!("exporters.{id}.endpoint"), addr));
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
        let paths: Vec<&str> = found.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, ["receivers.otlp.protocols.http.endpoint", "exporters.prometheus.endpoint"]);
        let loopback: std::net::SocketAddr = "127.0.0.1:4318".parse().expect("addr");
        assert!(overlap(&found[0].1, &loopback), "every address includes loopback");
        assert!(!overlap(&found[1].1, &loopback), "another port");
    }
}
