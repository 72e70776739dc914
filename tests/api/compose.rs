//! docker-compose.yml cannot be run here (no Docker engine), so this keeps it honest: the services
//! exist, wait for each other, and hand the server exactly the settings the binary reads.

use std::collections::BTreeMap;

use phoenix::config::{FlagOverrides, Settings};
use serde_yaml_ng::Value;

fn compose() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docker-compose.yml");
    let text = std::fs::read_to_string(path).expect("docker-compose.yml exists");
    serde_yaml_ng::from_str(&text).expect("docker-compose.yml is valid YAML")
}

fn service<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["services"].get(name).unwrap_or_else(|| panic!("service {name} is missing"))
}

/// `${NAME:-default}` -> default, as compose does when NAME is unset.
fn substitute_defaults(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').map(|i| start + i).expect("closing brace");
        let inner = &rest[start + 2..end];
        out.push_str(inner.split_once(":-").map_or("", |(_, default)| default));
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

fn environment(service: &Value) -> BTreeMap<String, String> {
    let env = service["environment"].as_mapping().expect("environment is a map");
    env.iter()
        .map(|(k, v)| {
            let value = match v {
                Value::String(s) => s.clone(),
                other => serde_yaml_ng::to_string(other).expect("scalar").trim().to_string(),
            };
            (k.as_str().expect("string key").to_string(), substitute_defaults(&value))
        })
        .collect()
}

fn host_ports(service: &Value) -> Vec<String> {
    service["ports"]
        .as_sequence()
        .map_or(Vec::new(), |ports| ports.iter().filter_map(|p| p.as_str().map(str::to_string)).collect())
}

#[test]
fn compose_defines_every_service_with_health_checked_dependencies() {
    let doc = compose();
    for name in ["nats", "postgres", "phoenix-server", "phoenix-agent-1", "phoenix-agent-2"] {
        service(&doc, name);
    }
    let server = service(&doc, "phoenix-server");
    for dependency in ["nats", "postgres"] {
        assert_eq!(
            server["depends_on"][dependency]["condition"], "service_healthy",
            "phoenix-server waits for a healthy {dependency}"
        );
        assert!(service(&doc, dependency).get("healthcheck").is_some(), "{dependency} has a health check");
    }
    let check = serde_yaml_ng::to_string(&server["healthcheck"]["test"]).expect("healthcheck");
    assert!(check.contains("/readyz"), "the server's health check uses /readyz: {check}");
    let nats_command = serde_yaml_ng::to_string(&service(&doc, "nats")["command"]).expect("command");
    assert!(nats_command.contains("nats-server.conf"), "NATS runs with nats/nats-server.conf");
    let nats_conf = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/nats/nats-server.conf"))
        .expect("nats/nats-server.conf exists");
    assert!(nats_conf.contains("jetstream"), "JetStream is enabled in nats-server.conf");
}

#[test]
fn compose_gives_the_server_settings_the_binary_accepts() {
    let doc = compose();
    let server = service(&doc, "phoenix-server");
    let env = environment(server);
    let settings = Settings::load(None, &env, &FlagOverrides::default())
        .unwrap_or_else(|e| panic!("the binary rejects the compose environment: {e}"));
    assert!(env.keys().all(|k| k.starts_with("PHOENIX_") || k == "LOG_FORMAT" || k == "RUST_LOG"), "{env:?}");

    let listen_port = settings.listen_addr().expect("valid listen address").port();
    assert!(host_ports(server).iter().any(|p| p.ends_with(&format!(":{listen_port}"))), "the listen port is published");

    let database = settings.database.url.expose().to_string();
    assert!(database.starts_with("postgres://") && database.contains("@postgres:5432/"), "{database}");
    let postgres_env = environment(service(&doc, "postgres"));
    assert!(database.contains(&format!("{}:{}@", postgres_env["POSTGRES_USER"], postgres_env["POSTGRES_PASSWORD"])));
    assert!(database.ends_with(&format!("/{}", postgres_env["POSTGRES_DB"])), "{database}");

    let nats = settings.bus.nats_url.as_ref().expect("production compose uses NATS").expose().to_string();
    assert!(nats.starts_with("nats://phoenix:") && nats.contains("@nats:4222"), "{nats}");
    let agents = settings.bus.agent_nats_url.as_ref().expect("agents get a NATS URL").expose().to_string();
    assert!(agents.starts_with("nats://agent:") && agents.contains("@nats:4222"), "{agents}");
    let nats_conf = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/nats/nats-server.conf"))
        .expect("nats/nats-server.conf exists");
    for user in ["user: phoenix", "user: agent"] {
        assert!(nats_conf.contains(user), "nats-server.conf defines {user}");
    }
}

#[test]
fn every_phoenix_container_command_is_accepted_by_the_cli() {
    use clap::Parser;
    let doc = compose();
    for name in ["phoenix-server", "phoenix-agent-1", "phoenix-agent-2"] {
        let command = service(&doc, name)["command"].as_sequence().expect("command is a list");
        let args = std::iter::once("phoenix").chain(command.iter().map(|a| a.as_str().expect("string argument")));
        match phoenix::args::Cli::try_parse_from(args) {
            Ok(_) => {}
            Err(e)
                if matches!(e.kind(), clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion) => {
            }
            Err(e) => panic!("{name}: the CLI rejects its command: {e}"),
        }
    }
}

#[test]
fn the_agents_enrol_with_a_token_from_the_environment_and_keep_their_identity_in_a_volume() {
    let doc = compose();
    for name in ["phoenix-agent-1", "phoenix-agent-2"] {
        let agent = service(&doc, name);
        let command = serde_yaml_ng::to_string(&agent["command"]).expect("command");
        assert!(command.contains("agent") && command.contains("http://phoenix-server:8080"), "{name}: {command}");
        let env = environment(agent);
        assert!(env.contains_key("PHOENIX_ENROLL_TOKEN"), "{name} reads its enrolment token from the environment");
        let volumes = serde_yaml_ng::to_string(&agent["volumes"]).expect("volumes");
        assert!(volumes.contains(":/var/lib/phoenix-agent"), "{name} keeps its identity: {volumes}");
    }
}
