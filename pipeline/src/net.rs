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
