//! Graceful shutdown of the real binary: SIGTERM stops accepting, lets the request in flight finish,
//! and exits 0.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use crate::helpers::{ServerProcess, TestDb};

#[test]
fn sigterm_lets_a_request_in_flight_finish() {
    let db = TestDb::new(phoenix::db::Backend::Sqlite);
    let mut server = ServerProcess::start(&db, &[("RUST_LOG", "info")]);
    let addr = server.addr.clone();

    // The handler is running (its JSON extractor is reading the body) when the signal arrives.
    let body = br#"{"username": "nobody", "password": "not-the-password"}"#;
    let mut in_flight = TcpStream::connect(&addr).expect("connect");
    in_flight.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let head = format!(
        "POST /api/v1/auth/login HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    in_flight.write_all(head.as_bytes()).expect("write head");
    in_flight.write_all(&body[..10]).expect("write part of the body");
    std::thread::sleep(Duration::from_millis(300));

    server.signal_terminate();
    std::thread::sleep(Duration::from_millis(300));
    assert!(TcpStream::connect(&addr).is_err(), "no new connections while draining");
    in_flight.write_all(&body[10..]).expect("finish the body");
    let mut response = String::new();
    in_flight.read_to_string(&mut response).expect("the request in flight gets its answer");
    assert!(response.starts_with("HTTP/1.1 401"), "got: {response}");

    let status = server.terminate(Duration::from_secs(15));
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn sigterm_stops_accepting_and_exits_zero_after_a_clean_shutdown() {
    let db = TestDb::new(phoenix::db::Backend::Sqlite);
    let mut server = ServerProcess::start(&db, &[("RUST_LOG", "info")]);
    let addr = server.addr.clone();

    let mut client = TcpStream::connect(&addr).expect("connect");
    client.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    client
        .write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
        .expect("write request");
    let mut response = String::new();
    client.read_to_string(&mut response).expect("read response");
    assert!(response.starts_with("HTTP/1.1 200"), "got: {response}");

    let status = server.terminate(Duration::from_secs(15));
    assert!(status.success(), "exit status {status:?}");
    assert!(TcpStream::connect(&addr).is_err(), "the port is closed after shutdown");
    let logs = server.logs();
    assert!(logs.iter().any(|l| l.contains("shutdown complete")), "logs: {logs:#?}");
}

#[test]
fn print_config_shows_effective_settings_with_secrets_masked() {
    let output = Command::new(env!("CARGO_BIN_EXE_phoenix"))
        .args(["server", "--print-config", "--listen", "0.0.0.0:9999"])
        .env("PHOENIX_DATABASE_URL", "postgres://phoenix:topsecret@db:5432/phoenix")
        .env("PHOENIX_NATS_URL", "nats://phoenix:natssecret@nats:4222")
        .output()
        .expect("run phoenix");
    assert!(output.status.success(), "{output:?}");
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(printed.contains("listen = \"0.0.0.0:9999\""), "{printed}");
    assert!(printed.contains("postgres://phoenix:********@db:5432/phoenix"), "{printed}");
    assert!(!printed.contains("topsecret") && !printed.contains("natssecret"), "{printed}");
}

#[test]
fn invalid_configuration_is_reported_all_at_once_with_exit_code_2() {
    let output = Command::new(env!("CARGO_BIN_EXE_phoenix"))
        .args(["server", "--listen", "not-an-address", "--database-url", "mysql://x"])
        .env("PHOENIX_SERVER__NO_SUCH_KEY", "1")
        .output()
        .expect("run phoenix");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for expected in ["server.listen", "database.url", "PHOENIX_SERVER__NO_SUCH_KEY"] {
        assert!(stderr.contains(expected), "missing {expected} in {stderr}");
    }
}
