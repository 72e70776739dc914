//! Graceful shutdown of the real binary: SIGTERM stops accepting, lets the request in flight finish,
//! and exits 0.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::helpers::{unique_prefix, TestDb};

/// Starts `phoenix server` on port 0 and returns it with the address it printed.
fn start_server(db: &TestDb) -> (Child, String, mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_phoenix"))
        .args(["server", "--listen", "127.0.0.1:0", "--database-url", &db.url])
        .env("PHOENIX_BUS__SUBJECT_PREFIX", unique_prefix())
        .env("PHOENIX_SERVER__SHUTDOWN_TIMEOUT_SECS", "10")
        .env("PHOENIX_SERVER__WORKERS", "1")
        .env("RUST_LOG", "info")
        .env_remove("PHOENIX_NATS_URL")
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn phoenix server");
    let stderr = child.stderr.take().expect("piped stderr");
    let (lines_tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let Ok(line) = lines.recv_timeout(Duration::from_secs(1)) else {
            continue;
        };
        if let Some(addr) = line.split("listening on http://").nth(1) {
            let addr = addr.split_whitespace().next().unwrap_or_default().to_string();
            return (child, addr, lines);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("server did not print its address within 30 s");
}

fn wait_for_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("server did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// Draining a handler that is still running is shown where such handlers exist (the agents' long-poll);
// here: the signal is honoured, the port closes, the bus is flushed and the process says so and exits 0.
#[test]
fn sigterm_stops_accepting_and_exits_zero_after_a_clean_shutdown() {
    let db = TestDb::new(phoenix::db::Backend::Sqlite);
    let (mut child, addr, lines) = start_server(&db);

    let mut client = TcpStream::connect(&addr).expect("connect");
    client.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    client
        .write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
        .expect("write request");
    let mut response = String::new();
    client.read_to_string(&mut response).expect("read response");
    assert!(response.starts_with("HTTP/1.1 200"), "got: {response}");

    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).expect("send SIGTERM");
    let status = wait_for_exit(&mut child, Duration::from_secs(15));
    assert!(status.success(), "exit status {status:?}");
    assert!(TcpStream::connect(&addr).is_err(), "the port is closed after shutdown");
    let logs: Vec<String> = lines.try_iter().collect();
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
