//! docker-compose.yml cannot be run here (no Docker engine), so this keeps it honest: the services
//! exist, wait for each other, and hand the server exactly the settings the binary reads.

use std::collections::{BTreeMap, BTreeSet};

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
    for name in DEFAULT_SERVICES {
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

    // Per-agent NATS identities: no password anywhere, the trust file from the nats-trust volume.
    let nats = settings.bus.nats_url.as_ref().expect("production compose uses NATS").expose().to_string();
    assert_eq!(nats, "nats://nats:4222");
    let agents = settings.bus.agent_nats_url.as_ref().expect("agents get a NATS URL").expose().to_string();
    assert_eq!(agents, "nats://nats:4222");
    let trust_file = settings.bus.nats_trust_file.as_ref().expect("the server signs NATS identities");
    assert_trust_mounted("phoenix-server", server, trust_file);
}

/// `service` mounts the nats-trust volume where `trust_file` lies, read-only.
fn assert_trust_mounted(name: &str, service: &Value, trust_file: &std::path::Path) {
    let dir = trust_file.parent().expect("a folder").to_string_lossy().to_string();
    let volumes = strings(&service["volumes"]);
    assert!(volumes.contains(&format!("nats-trust:{dir}:ro")), "{name} mounts the NATS trust at {dir}: {volumes:?}");
    assert_eq!(trust_file.file_name().and_then(|f| f.to_str()), Some("nats-trust.json"), "{name}");
}

/// The one-shot `nats-trust` makes the keys once, gives the servers the trust file (owned by the
/// image's user) and nats-server its include; nats-server accepts nats/nats-server.conf with what
/// `phoenix nats init` writes (checked by the real nats-server and the real binary).
#[test]
fn nats_runs_in_operator_mode_with_the_keys_phoenix_nats_init_makes() {
    let doc = compose();
    let init = service(&doc, "nats-trust");
    let script = command(init).join(" ");
    assert!(script.contains("[ -f /trust/nats-trust.json ] ||"), "the keys are made once: {script}");
    let init_args: Vec<&str> = script
        .split("phoenix nats init")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .expect("runs phoenix nats init")
        .split_whitespace()
        .collect();
    assert_eq!(init_args, ["--dir", "/trust", "--resolver-dir", "/data/jwt"], "{script}");
    assert!(script.contains("cp /trust/nats-trust.conf /nats-include/nats-trust.conf"), "{script}");
    assert!(script.contains("chown phoenix:phoenix /trust/nats-trust.json"), "{script}");
    let init_volumes = strings(&init["volumes"]);
    assert!(
        init_volumes.contains(&"nats-trust:/trust".to_string())
            && init_volumes.contains(&"nats-include:/nats-include".to_string())
    );

    for name in std::iter::once("nats").chain(HA_NATS) {
        let node = service(&doc, name);
        let volumes = strings(&node["volumes"]);
        assert!(volumes.contains(&"nats-include:/etc/nats/trust:ro".to_string()), "{name}: {volumes:?}");
        assert!(!volumes.iter().any(|v| v.starts_with("nats-trust:")), "{name} must not see the seeds: {volumes:?}");
        assert!(node.get("environment").is_none(), "{name} needs no passwords");
        assert_eq!(node["depends_on"]["nats-trust"]["condition"], "service_completed_successfully", "{name}");
    }

    let dir = tempfile::tempdir().expect("dir");
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/nats/nats-server.conf"), dir.path().join("nats-server.conf"))
        .expect("copy nats-server.conf");
    let init = std::process::Command::new(env!("CARGO_BIN_EXE_phoenix"))
        .args(["nats", "init", "--dir"])
        .arg(dir.path().join("trust"))
        .args(["--resolver-dir", "/data/jwt"])
        .output()
        .expect("run phoenix nats init");
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
    let checked = std::process::Command::new("nats-server")
        .arg("-c")
        .arg(dir.path().join("nats-server.conf"))
        .arg("-t")
        .output()
        .expect("nats-server is installed (scripts/test installs it)");
    let said = format!("{}{}", String::from_utf8_lossy(&checked.stdout), String::from_utf8_lossy(&checked.stderr));
    assert!(checked.status.success() && said.contains("is valid"), "nats-server refuses the configuration: {said}");
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

// ----- Profile `ha`: several replicas (docs/OPERATIONS.md, "Several replicas") -----

/// What a plain `docker compose up` starts; every other service belongs to the `ha` profile.
const DEFAULT_SERVICES: [&str; 6] =
    ["nats-trust", "nats", "postgres", "phoenix-server", "phoenix-agent-1", "phoenix-agent-2"];
const HA_NATS: [&str; 3] = ["nats-a", "nats-b", "nats-c"];
const HA_REPLICAS: [&str; 2] = ["phoenix-server-a", "phoenix-server-b"];
const HA_PROXY: &str = "phoenix-proxy";
/// Profile `demo`: an experiment on live traffic.
const DEMO_SERVICES: [&str; 3] = ["demo-prometheus", "demo-agent", "demo-loadgen"];

fn strings(value: &Value) -> Vec<String> {
    value
        .as_sequence()
        .map_or(Vec::new(), |items| items.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
}

fn command(service: &Value) -> Vec<String> {
    strings(&service["command"])
}

/// The argument after `flag` in a command.
fn flag_value<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).map(String::as_str)
}

fn dependencies(service: &Value) -> Vec<String> {
    match &service["depends_on"] {
        Value::Mapping(map) => map.keys().filter_map(|k| k.as_str().map(str::to_string)).collect(),
        other => strings(other),
    }
}

/// An environment value as written in the file, `${…}` and all.
fn raw_env<'a>(service: &'a Value, name: &str) -> &'a str {
    service["environment"][name].as_str().unwrap_or_else(|| panic!("{name} is not set as a string"))
}

fn load_settings(name: &str, service: &Value) -> Settings {
    Settings::load(None, &environment(service), &FlagOverrides::default())
        .unwrap_or_else(|e| panic!("{name}: the binary rejects the compose environment: {e}"))
}

fn assert_cli_accepts(name: &str, service: &Value) {
    use clap::Parser;
    let command = command(service);
    assert!(!command.is_empty(), "{name} has a command list");
    let args = std::iter::once("phoenix").chain(command.iter().map(String::as_str));
    match phoenix::args::Cli::try_parse_from(args) {
        Ok(_) => {}
        Err(e) if matches!(e.kind(), clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion) => {}
        Err(e) => panic!("{name}: the CLI rejects its command: {e}"),
    }
}

/// `nats://host:port,…` -> the hosts; a URL with credentials fails (the JWTs are the credentials).
fn nats_hosts(urls: &str) -> BTreeSet<String> {
    urls.split(',')
        .map(|url| {
            let host = url.trim().strip_prefix("nats://").unwrap_or_else(|| panic!("{url} is not nats://host"));
            assert!(!host.contains('@'), "{url} carries credentials");
            host.to_string()
        })
        .collect()
}

#[test]
fn the_ha_profile_starts_only_on_request_and_leaves_the_default_services_alone() {
    let doc = compose();
    let services = doc["services"].as_mapping().expect("services is a map");
    for name in HA_NATS.iter().chain(&HA_REPLICAS).chain([&HA_PROXY]) {
        service(&doc, name);
    }
    let mut host_port_owners: BTreeMap<String, String> = BTreeMap::new();
    for (name, definition) in services {
        let name = name.as_str().expect("service names are strings");
        if DEFAULT_SERVICES.contains(&name) {
            assert!(definition.get("profiles").is_none(), "{name} must start with a plain `docker compose up`");
            for dependency in dependencies(definition) {
                assert!(DEFAULT_SERVICES.contains(&dependency.as_str()), "{name} must not need {dependency}");
            }
        } else if DEMO_SERVICES.contains(&name) {
            assert_eq!(strings(&definition["profiles"]), ["demo"], "{name} must start only with --profile demo");
        } else {
            assert_eq!(strings(&definition["profiles"]), ["ha"], "{name} must start only with --profile ha");
        }
        for dependency in dependencies(definition) {
            assert!(doc["services"].get(&dependency).is_some(), "{name} depends on {dependency}, which is missing");
        }
        // Both installations run side by side: no host port is published twice.
        for port in host_ports(definition) {
            let host_port = port.rsplit_once(':').map_or(port.as_str(), |(host, _)| host).to_string();
            if let Some(other) = host_port_owners.insert(host_port.clone(), name.to_string()) {
                panic!("{name} and {other} both publish host port {host_port}");
            }
        }
        for volume in strings(&definition["volumes"]) {
            let source = volume.split(':').next().expect("a volume source");
            if !source.starts_with('.') && !source.starts_with('/') {
                assert!(doc["volumes"].get(source).is_some(), "{name} uses volume {source}, which is not declared");
            }
        }
    }
}

#[test]
fn the_ha_nats_nodes_form_one_jetstream_cluster() {
    let doc = compose();
    let single = service(&doc, "nats");
    let nats_conf = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/nats/nats-server.conf"))
        .expect("nats/nats-server.conf exists");
    assert!(nats_conf.contains("store_dir: \"/data/"), "JetStream keeps its files under /data");

    let cluster_ports: BTreeMap<&str, String> = HA_NATS
        .iter()
        .map(|node| {
            let args = command(service(&doc, node));
            let listen =
                flag_value(&args, "--cluster").unwrap_or_else(|| panic!("{node} listens for routes: {args:?}"));
            let port = listen.strip_prefix("nats://0.0.0.0:").unwrap_or_else(|| panic!("{node}: --cluster {listen}"));
            (*node, port.to_string())
        })
        .collect();
    let single_store = strings(&single["volumes"]).into_iter().find(|v| v.ends_with(":/data")).expect("nats store");
    let (mut names, mut stores) = (BTreeSet::new(), BTreeSet::from([single_store]));
    for node in HA_NATS {
        let definition = service(&doc, node);
        assert_eq!(definition["image"], single["image"], "{node} runs the same NATS as `nats`");
        let args = command(definition);
        let config = flag_value(&args, "-c").unwrap_or_else(|| panic!("{node} runs with a config file: {args:?}"));
        let volumes = strings(&definition["volumes"]);
        assert!(
            volumes.contains(&format!("./nats/nats-server.conf:{config}:ro")),
            "{node} uses nats/nats-server.conf (operator mode, JetStream): {volumes:?}"
        );

        let name = flag_value(&args, "--name").unwrap_or_else(|| panic!("{node} has a server name: {args:?}"));
        assert!(names.insert(name.to_string()), "two NATS nodes are named {name}");
        assert_eq!(flag_value(&args, "--cluster_name"), Some("phoenix"), "{node} joins the cluster `phoenix`");
        let routes: BTreeSet<String> = flag_value(&args, "--routes")
            .unwrap_or_else(|| panic!("{node} has routes: {args:?}"))
            .split(',')
            .map(|route| route.trim().to_string())
            .collect();
        let expected: BTreeSet<String> = HA_NATS
            .iter()
            .filter(|other| **other != node)
            .map(|other| format!("nats-route://{other}:{}", cluster_ports[other]))
            .collect();
        assert_eq!(routes, expected, "{node} routes to the two other nodes");

        let store = volumes.iter().find(|v| v.ends_with(":/data")).unwrap_or_else(|| panic!("{node} keeps JetStream"));
        assert!(stores.insert(store.clone()), "{node} shares its JetStream store {store} with another node");
        let check = serde_yaml_ng::to_string(&definition["healthcheck"]["test"]).expect("healthcheck");
        assert!(check.contains(":8222/healthz"), "{node} has a health check: {check}");
    }
}

#[test]
fn the_ha_replicas_share_database_nats_and_jwt_key_but_not_their_replica_id() {
    let doc = compose();
    let default_server = service(&doc, "phoenix-server");
    let postgres_env = environment(service(&doc, "postgres"));
    let nodes: BTreeSet<String> = HA_NATS.iter().map(|node| format!("{node}:4222")).collect();

    let (mut ids, mut databases, mut lease_ttls) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    for name in HA_REPLICAS {
        let replica = service(&doc, name);
        assert_eq!(replica["image"], default_server["image"], "{name} runs the Phoenix image");
        assert_cli_accepts(name, replica);
        let settings = load_settings(name, replica);

        let id = settings.cluster.replica_id.clone().unwrap_or_else(|| panic!("{name} sets cluster.replica_id"));
        assert!(!id.trim().is_empty(), "{name} has an empty replica id");
        assert!(ids.insert(id.clone()), "{name} has the replica id {id} of another replica");
        lease_ttls.insert(settings.cluster.lease_ttl_secs);

        let database = settings.database.url.expose().to_string();
        let user = format!(
            "postgres://{}:{}@postgres:5432/",
            postgres_env["POSTGRES_USER"], postgres_env["POSTGRES_PASSWORD"]
        );
        assert!(database.starts_with(&user), "{name} uses the shared PostgreSQL: {database}");
        databases.insert(database);

        let nats = settings.bus.nats_url.as_ref().unwrap_or_else(|| panic!("{name} uses NATS")).expose().to_string();
        assert_eq!(nats_hosts(&nats), nodes, "{name}: {nats}");
        let agents = settings.bus.agent_nats_url.as_ref().unwrap_or_else(|| panic!("{name} hands agents NATS"));
        let agents = agents.expose().to_string();
        assert_eq!(nats_hosts(&agents), nodes, "{name}: {agents}");
        let trust_file =
            settings.bus.nats_trust_file.as_ref().unwrap_or_else(|| panic!("{name} signs NATS identities"));
        assert_trust_mounted(name, replica, trust_file);

        let effective = toml::Value::try_from(&settings).expect("settings serialise");
        let stream_replicas =
            effective.get("bus").and_then(|bus| bus.get("stream_replicas")).and_then(|v| v.as_integer());
        assert_eq!(stream_replicas, Some(HA_NATS.len() as i64), "{name} keeps the results stream on every NATS node");

        // Same expression as the default server: a token from one replica works on the other.
        let jwt = raw_env(replica, "PHOENIX_AUTH__JWT_SECRET");
        assert_eq!(jwt, raw_env(default_server, "PHOENIX_AUTH__JWT_SECRET"), "{name} takes the shared JWT key");
        assert!(jwt.contains("${PHOENIX_JWT_SECRET"), "{name}: {jwt}");

        for dependency in std::iter::once("postgres").chain(HA_NATS) {
            assert_eq!(
                replica["depends_on"][dependency]["condition"], "service_healthy",
                "{name} waits for a healthy {dependency}"
            );
        }
        let check = serde_yaml_ng::to_string(&replica["healthcheck"]["test"]).expect("healthcheck");
        let port = settings.listen_addr().expect("valid listen address").port();
        assert!(check.contains(&format!(":{port}/readyz")), "{name}'s health check uses /readyz: {check}");
    }
    assert_eq!(lease_ttls.len(), 1, "the replicas agree on cluster.lease_ttl_secs: {lease_ttls:?}");
    assert_eq!(databases.len(), 1, "the replicas share one database: {databases:?}");

    // Not the default server's database: that server is on the single `nats`, so sharing its database
    // would make it a third replica that never sees the others' events. The replicas' one is created
    // on the shared PostgreSQL by a one-shot service they wait for.
    let database = databases.pop_first().expect("one database");
    let default_database = load_settings("phoenix-server", default_server).database.url.expose().to_string();
    assert_ne!(database, default_database, "the replicas must not share the default phoenix-server's database");
    let db_name = database.rsplit('/').next().and_then(|path| path.split('?').next()).expect("a database name");
    let creators: Vec<String> = dependencies(service(&doc, HA_REPLICAS[0]))
        .into_iter()
        .filter(|dependency| {
            let script = command(service(&doc, dependency)).join(" ");
            script.contains(&format!("createdb -h postgres -U {} {db_name}", postgres_env["POSTGRES_USER"]))
        })
        .collect();
    assert_eq!(creators.len(), 1, "one service creates the database {db_name}: {creators:?}");
    let creator = &creators[0];
    assert_eq!(service(&doc, creator)["depends_on"]["postgres"]["condition"], "service_healthy");
    for name in HA_REPLICAS {
        assert_eq!(
            service(&doc, name)["depends_on"][creator.as_str()]["condition"],
            "service_completed_successfully",
            "{name} waits until {creator} has created {db_name}"
        );
    }
}

/// One `name args { … }` block of an nginx config: its directives (whitespace collapsed, without the
/// `;`) and the blocks inside it.
#[derive(Default, Debug)]
struct NginxBlock {
    header: String,
    directives: Vec<String>,
    blocks: Vec<NginxBlock>,
}

impl NginxBlock {
    fn parse(text: &str) -> NginxBlock {
        let normalise = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        let mut stack = vec![NginxBlock::default()];
        let (mut current, mut quote) = (String::new(), None);
        for line in text.lines() {
            for c in line.chars() {
                match (quote, c) {
                    (Some(q), _) if c == q => {
                        quote = None;
                        current.push(c);
                    }
                    (Some(_), _) => current.push(c),
                    (None, '#') => break,
                    (None, '\'' | '"') => {
                        quote = Some(c);
                        current.push(c);
                    }
                    (None, ';') => {
                        stack.last_mut().expect("a block").directives.push(normalise(&current));
                        current.clear();
                    }
                    (None, '{') => {
                        stack.push(NginxBlock { header: normalise(&current), ..NginxBlock::default() });
                        current.clear();
                    }
                    (None, '}') => {
                        let block = stack.pop().expect("balanced braces");
                        stack.last_mut().expect("balanced braces").blocks.push(block);
                    }
                    (None, _) => current.push(c),
                }
            }
            current.push(' ');
        }
        assert_eq!(stack.len(), 1, "unbalanced braces");
        assert!(current.trim().is_empty(), "a directive without `;`: {current}");
        stack.pop().expect("the top level")
    }

    fn block(&self, header: &str) -> Option<&NginxBlock> {
        self.blocks.iter().find(|b| b.header == header)
    }

    /// The arguments of every `name …` directive of this block (not of the blocks inside).
    fn values(&self, name: &str) -> Vec<&str> {
        self.directives.iter().filter_map(|d| d.strip_prefix(name).and_then(|rest| rest.strip_prefix(' '))).collect()
    }

    fn value(&self, name: &str) -> Option<&str> {
        self.values(name).last().copied()
    }

    /// The header `proxy_set_header` sends, ignoring the header name's case.
    fn proxy_header(&self, header: &str) -> Option<&str> {
        self.values("proxy_set_header").into_iter().rev().find_map(|v| {
            let (name, value) = v.split_once(' ')?;
            name.eq_ignore_ascii_case(header).then_some(value)
        })
    }
}

/// An nginx time (`90`, `90s`, `5m`, `1h`) in seconds.
fn nginx_seconds(value: &str) -> u64 {
    let digits = value.find(|c: char| !c.is_ascii_digit()).unwrap_or(value.len());
    let number: u64 = value[..digits].parse().unwrap_or_else(|_| panic!("not an nginx time: {value}"));
    number
        * match &value[digits..] {
            "" | "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86400,
            unit => panic!("unexpected unit {unit} in {value}"),
        }
}

/// True when `value` is `source` itself or a `map source $var { … }` variable whose default is `default`
/// (or anything, for `None`).
fn from_variable(conf: &NginxBlock, value: &str, source: &str, default: Option<&str>) -> bool {
    value == source
        || conf
            .block(&format!("map {source} {value}"))
            .is_some_and(|map| default.is_none_or(|d| map.value("default") == Some(d)))
}

#[test]
fn the_ha_proxy_spreads_rest_websocket_and_long_polls_over_both_replicas() {
    let doc = compose();
    let proxy = service(&doc, HA_PROXY);
    assert!(proxy["image"].as_str().is_some_and(|image| image.starts_with("nginx:")), "the proxy is nginx");
    let mount = strings(&proxy["volumes"])
        .into_iter()
        .find(|v| v.contains(":/etc/nginx/conf.d/"))
        .expect("the proxy's config is mounted into /etc/nginx/conf.d");
    let parts: Vec<&str> = mount.split(':').collect();
    assert!(parts.len() == 3 && parts[2] == "ro", "the proxy's config is mounted read-only: {mount}");
    let source = parts[0].strip_prefix("./").expect("the config lives in the repository");
    assert_eq!(source, "deploy/nginx-ha.conf");
    let path = format!("{}/{source}", env!("CARGO_MANIFEST_DIR"));
    let conf = NginxBlock::parse(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}")));

    // One upstream: both replicas, on the port they listen on.
    let replicas: Vec<Settings> = HA_REPLICAS.iter().map(|name| load_settings(name, service(&doc, name))).collect();
    let expected: BTreeSet<String> = HA_REPLICAS
        .iter()
        .zip(&replicas)
        .map(|(name, settings)| format!("{name}:{}", settings.listen_addr().expect("listen address").port()))
        .collect();
    let upstreams: Vec<&NginxBlock> = conf.blocks.iter().filter(|b| b.header.starts_with("upstream ")).collect();
    assert_eq!(upstreams.len(), 1, "one upstream");
    let upstream_name = upstreams[0].header.strip_prefix("upstream ").expect("upstream name");
    let servers: BTreeSet<String> = upstreams[0]
        .values("server")
        .into_iter()
        .map(|v| v.split_whitespace().next().expect("a server address").to_string())
        .collect();
    assert_eq!(servers, expected, "the upstream lists both replicas");
    for name in HA_REPLICAS {
        assert_eq!(proxy["depends_on"][name]["condition"], "service_healthy", "the proxy waits for {name}");
    }
    // The replicas believe the proxy's X-Forwarded-For (failed logins are counted per client): the
    // proxy has an address from Docker's default pools (172.17.0.0/16 to 172.31.0.0/16, 192.168.0.0/16).
    for (name, settings) in HA_REPLICAS.iter().zip(&replicas) {
        let trusts = |addr: &str| settings.server.trusted_proxies.iter().any(|p| p.contains(addr.parse().expect("ip")));
        assert!(["172.17.0.2", "172.31.255.9", "192.168.16.3"].iter().all(|a| trusts(a)), "{name} trusts the proxy");
        assert!(!trusts("203.0.113.7"), "{name} trusts public addresses");
    }

    let server = conf.block("server").expect("a server block");
    let published = host_ports(proxy);
    assert_eq!(published.len(), 1, "the proxy publishes one port: {published:?}");
    let (host_port, container_port) = published[0].rsplit_once(':').expect("host:container");
    assert_eq!(server.value("listen"), Some(container_port), "nginx listens on the published container port");
    let operations = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/OPERATIONS.md"))
        .expect("docs/OPERATIONS.md exists");
    assert!(operations.contains(&format!("http://localhost:{host_port}")), "OPERATIONS.md names the proxy's address");
    assert!(operations.contains("docker compose --profile ha up"), "OPERATIONS.md says how to start the ha profile");

    // Every request goes to the upstream; a dead replica is skipped, but only idempotent requests are retried.
    let locations: Vec<&NginxBlock> = server.blocks.iter().filter(|b| b.header.starts_with("location ")).collect();
    let location = |path: &str| {
        *locations
            .iter()
            .find(|b| b.header.split_whitespace().last() == Some(path))
            .unwrap_or_else(|| panic!("no location {path}"))
    };
    location("/");
    for block in &locations {
        assert_eq!(block.value("proxy_pass"), Some(format!("http://{upstream_name}").as_str()), "{}", block.header);
    }
    server.value("proxy_next_upstream").expect("the server block sets proxy_next_upstream");
    for block in std::iter::once(server).chain(locations.iter().copied()) {
        for value in block.values("proxy_next_upstream") {
            let conditions: Vec<&str> = value.split_whitespace().collect();
            assert!(conditions.contains(&"error") && conditions.contains(&"timeout"), "proxy_next_upstream {value}");
            assert!(!conditions.contains(&"non_idempotent"), "POST/PATCH must not be sent twice: {value}");
        }
        // proxy_set_header in a location replaces the server's list: each list must carry the request id.
        if !block.values("proxy_set_header").is_empty() {
            let id = block.proxy_header("X-Request-Id").unwrap_or_else(|| panic!("{}: no X-Request-Id", block.header));
            assert!(from_variable(&conf, id, "$http_x_request_id", None), "{}: X-Request-Id {id}", block.header);
            assert!(block.proxy_header("Host").is_some(), "{}: no Host", block.header);
            let forwarded = block.proxy_header("X-Forwarded-For");
            assert_eq!(forwarded, Some("$proxy_add_x_forwarded_for"), "{}: appends the client", block.header);
        }
    }

    // The WebSocket: HTTP/1.1 with the upgrade headers, and long enough to outlive idle sessions.
    let ws = location("/api/v1/ws");
    assert_eq!(ws.value("proxy_http_version").or(server.value("proxy_http_version")), Some("1.1"));
    assert_eq!(ws.proxy_header("Upgrade"), Some("$http_upgrade"), "the WebSocket location passes Upgrade");
    let connection = ws.proxy_header("Connection").expect("the WebSocket location sets Connection");
    assert!(
        connection.trim_matches('"').eq_ignore_ascii_case("upgrade")
            || from_variable(&conf, connection, "$http_upgrade", Some("upgrade")),
        "Connection: {connection}"
    );
    let ws_timeout = nginx_seconds(ws.value("proxy_read_timeout").expect("the WebSocket sets proxy_read_timeout"));
    assert!(ws_timeout >= 300, "WebSocket sessions are cut after {ws_timeout} s of quiet");

    // The agents' long poll is held up to agents.long_poll_max_wait_secs.
    let poll = location("/api/v1/agent/tasks");
    let poll_timeout =
        nginx_seconds(poll.value("proxy_read_timeout").or(server.value("proxy_read_timeout")).unwrap_or("60"));
    for settings in &replicas {
        let wait = settings.agents.long_poll_max_wait_secs;
        assert!(
            poll_timeout > wait,
            "the proxy gives up on long polls ({poll_timeout} s) before the server ({wait} s)"
        );
    }
}

#[test]
fn the_ha_agent_goes_through_the_proxy() {
    let doc = compose();
    let image = &service(&doc, "phoenix-server")["image"];
    let services = doc["services"].as_mapping().expect("services is a map");
    let proxy_port = host_ports(service(&doc, HA_PROXY))[0].rsplit(':').next().expect("container port").to_string();
    let mut agents = 0;
    for (name, definition) in services {
        let name = name.as_str().expect("service names are strings");
        let is_agent = command(definition).first().is_some_and(|c| c == "agent");
        let not_ha = DEFAULT_SERVICES.contains(&name) || DEMO_SERVICES.contains(&name);
        if not_ha || definition["image"] != *image || !is_agent {
            continue;
        }
        agents += 1;
        assert_cli_accepts(name, definition);
        let args = command(definition);
        let server = flag_value(&args, "--server").unwrap_or_else(|| panic!("{name} names its server"));
        let through_proxy = server == format!("http://{HA_PROXY}") && proxy_port == "80"
            || server == format!("http://{HA_PROXY}:{proxy_port}");
        assert!(through_proxy, "{name} connects to {server}, not to the proxy");
        assert!(environment(definition).contains_key("PHOENIX_ENROLL_TOKEN"), "{name} reads its enrolment token");
        assert!(
            strings(&definition["volumes"]).iter().any(|v| v.ends_with(":/var/lib/phoenix-agent")),
            "{name} keeps its identity in a volume"
        );
        assert_eq!(definition["depends_on"][HA_PROXY]["condition"], "service_healthy", "{name} waits for the proxy");
    }
    assert!(agents > 0, "the ha profile has an agent");
}

// ----- Profile `demo`: an experiment on live OTLP traffic (README) -----

#[test]
fn the_demo_profile_feeds_the_demo_experiment_live_traffic_and_prometheus_receives_it() {
    let doc = compose();
    let prometheus = service(&doc, "demo-prometheus");
    assert!(command(prometheus).contains(&"--web.enable-remote-write-receiver".to_string()), "it takes remote write");
    let agent = service(&doc, "demo-agent");
    assert_cli_accepts("demo-agent", agent);
    assert_eq!(flag_value(&command(agent), "--server"), Some("http://phoenix-server:8080"));
    assert!(environment(agent)["PHOENIX_AGENT_LABELS"].contains("env=demo"));
    assert!(environment(agent).contains_key("PHOENIX_ENROLL_TOKEN"));
    let loadgen = service(&doc, "demo-loadgen");
    assert_cli_accepts("demo-loadgen", loadgen);
    let sends_to = flag_value(&command(loadgen), "--endpoint").expect("an endpoint").to_string();
    assert_eq!(dependencies(loadgen), ["demo-agent"]);

    // The experiment the README tells the user to create: valid, targeting the demo agent, listening
    // where the load generator sends, writing to the demo Prometheus, the same receiver in both.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("deploy/demo-experiment.yaml")).expect("the demo experiment");
    // As `phoenix experiment create -f` sends it: the YAML as JSON.
    let json: serde_json::Value = serde_yaml_ng::from_str(&text).expect("YAML");
    let spec: phoenix_actors::experiments::ExperimentSpec = serde_json::from_value(json).expect("an experiment");
    assert_eq!(spec.target, serde_json::from_value(serde_json::json!({"selector": {"env": "demo"}})).expect("target"));
    assert!(spec.shadow, "the candidate runs in shadow");
    let mut receivers = Vec::new();
    for variant in [&spec.baseline, &spec.candidate] {
        let phoenix_actors::pipelines::PipelineSpec::Inline { config } = variant else { panic!("inline configs") };
        let (parsed, validation) = phoenix_pipeline::config::validate_text(config);
        assert!(validation.is_valid(), "{:?}", validation.errors);
        let parsed = parsed.expect("parsed");
        let grpc = parsed.receivers["otlp"]["protocols"]["grpc"]["endpoint"].as_str().expect("grpc").to_string();
        let port = grpc.rsplit_once(':').map(|(_, port)| port.to_string()).expect("a port");
        assert!(grpc.starts_with("0.0.0.0:"), "reachable from the load generator's container: {grpc}");
        assert_eq!(sends_to, format!("http://demo-agent:{port}"), "the load goes where the pipeline listens");
        let write = parsed.exporters["prometheusremotewrite"]["endpoint"].as_str().expect("endpoint");
        assert_eq!(write, "http://demo-prometheus:9090/api/v1/write");
        receivers.push(parsed.receivers["otlp"].clone());
    }
    assert_eq!(receivers[0], receivers[1], "one receiver configured alike: both variants share it");
}
