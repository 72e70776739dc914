//! A NATS cluster of three nodes (three `nats-server` processes routed to each other, JetStream with
//! three copies of the results stream) under two server replicas and agents that keep reporting. One
//! node is killed: the servers and the agents carry on through the other two, and every measurement
//! batch sent is stored exactly once (sequence numbers without gap or repeat, per agent).

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use diesel::prelude::*;
use phoenix::db::schema::metric_samples;
use phoenix::db::{establish, Backend};
use phoenix_nats::{Bus, Envelope, NatsBus, NatsBusOptions, Subjects};
use serde_json::json;

use crate::fleet_sim::{self, Api};
use crate::helpers::{http_client, unique_prefix, NatsServerEnv, ServerProcess, TestDb};

const AGENTS: usize = 4;
const PIPELINE: &str = "cluster-test";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// Three routed nats-server processes with JetStream, on ports of their own.
struct NatsCluster {
    nodes: Vec<Option<Child>>,
    client_ports: Vec<u16>,
    monitor_ports: Vec<u16>,
    _stores: Vec<tempfile::TempDir>,
}

impl NatsCluster {
    fn start() -> NatsCluster {
        let name = format!("c{}", &unique_prefix()[1..13]);
        let ports = || (0..3).map(|_| free_port()).collect::<Vec<u16>>();
        let (client_ports, cluster_ports, monitor_ports) = (ports(), ports(), ports());
        let stores: Vec<_> = (0..3).map(|_| tempfile::tempdir().expect("store")).collect();
        let nodes = (0..3)
            .map(|i| {
                let routes: Vec<String> =
                    (0..3).filter(|j| *j != i).map(|j| format!("nats://127.0.0.1:{}", cluster_ports[j])).collect();
                let child = Command::new("nats-server")
                    .args(["-a", "127.0.0.1", "-p", &client_ports[i].to_string(), "-m", &monitor_ports[i].to_string()])
                    .args(["-js", "-sd"])
                    .arg(stores[i].path())
                    .args(["--name", &format!("{name}-n{i}"), "--cluster_name", &name])
                    .args(["--cluster", &format!("nats://127.0.0.1:{}", cluster_ports[i])])
                    .args(["--routes", &routes.join(",")])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("nats-server is installed (scripts/test installs it)");
                Some(child)
            })
            .collect();
        NatsCluster { nodes, client_ports, monitor_ports, _stores: stores }
    }

    /// Waits until JetStream has a leader for the cluster (streams with three copies can be made).
    async fn wait_until_ready(&self) {
        let client = http_client();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut leaders = 0;
            for port in &self.monitor_ports {
                let jsz = client.get(format!("http://127.0.0.1:{port}/jsz")).send().await;
                if let Ok(jsz) = jsz {
                    let jsz: serde_json::Value = jsz.json().await.unwrap_or_default();
                    if jsz["meta_cluster"]["leader"].as_str().is_some_and(|l| !l.is_empty()) {
                        leaders += 1;
                    }
                }
            }
            if leaders == 3 {
                return;
            }
            assert!(Instant::now() < deadline, "the NATS cluster did not elect a JetStream leader");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The monitoring endpoint `path` of every node still running, by node index.
    async fn monitor(&self, path: &str) -> Vec<(usize, serde_json::Value)> {
        let mut answers = Vec::new();
        for (i, port) in self.monitor_ports.iter().enumerate().filter(|(i, _)| self.nodes[*i].is_some()) {
            if let Ok(res) = http_client().get(format!("http://127.0.0.1:{port}{path}")).send().await {
                answers.push((i, res.json().await.unwrap_or_default()));
            }
        }
        answers
    }

    /// The node a client connection named `name` is on.
    async fn node_of_connection(&self, name: &str) -> usize {
        let nodes = self.monitor("/connz").await;
        let has = |connz: &serde_json::Value| {
            connz["connections"].as_array().is_some_and(|c| c.iter().any(|c| c["name"] == name))
        };
        nodes.iter().find(|(_, connz)| has(connz)).map(|(i, _)| *i).expect("the connection is on a node")
    }

    /// How many copies JetStream keeps of `stream`, as its configuration says.
    async fn stream_replicas(&self, stream: &str) -> u64 {
        let nodes = self.monitor("/jsz?accounts=true&streams=true&config=true").await;
        let text = nodes.iter().map(|(_, jsz)| jsz.to_string()).collect::<String>();
        let found = nodes.iter().flat_map(|(_, jsz)| jsz["account_details"].as_array().cloned().unwrap_or_default());
        let streams = found.flat_map(|account| account["stream_detail"].as_array().cloned().unwrap_or_default());
        let replicas =
            streams.filter(|s| s["name"] == stream).filter_map(|s| s["config"]["num_replicas"].as_u64()).max();
        replicas.unwrap_or_else(|| panic!("stream {stream} not found in {text}"))
    }

    fn urls(&self) -> String {
        self.client_ports.iter().map(|p| format!("nats://127.0.0.1:{p}")).collect::<Vec<_>>().join(",")
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}

/// Sends batch `seq` of one agent until JetStream acknowledges it (the same envelope id every time: a
/// retry after a lost acknowledgement is stored once).
async fn send_batch(bus: &NatsBus, agent: &(String, String), seq: u64) {
    let samples = [json!({"metric": "pipeline.input.series", "value": seq, "labels": {}, "ts": chrono::Utc::now()})];
    let batch = json!({"pipeline": PIPELINE, "seq": seq, "samples": samples});
    let payload = Envelope::new("metrics", batch).with_auth(agent.1.clone()).encode().expect("encode");
    let subject = bus.subjects().agent_metrics(&agent.0).expect("subject");
    let deadline = Instant::now() + Duration::from_secs(30);
    while bus.publish_durable(&subject, payload.clone()).await.is_err() {
        assert!(Instant::now() < deadline, "batch {seq} of {} was never acknowledged", agent.0);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Per agent, the batch numbers stored, sorted.
fn stored(db: &TestDb) -> BTreeMap<String, Vec<i64>> {
    let mut conn = establish(&db.url).expect("db");
    let rows: Vec<(String, Option<i64>)> = metric_samples::table
        .filter(metric_samples::pipeline.eq(PIPELINE))
        .select((metric_samples::agent_id, metric_samples::batch_seq))
        .load(&mut conn)
        .expect("samples");
    let mut per_agent: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (agent, seq) in rows {
        per_agent.entry(agent).or_default().extend(seq);
    }
    per_agent.values_mut().for_each(|seqs| seqs.sort_unstable());
    per_agent
}

#[actix_web::test]
async fn losing_one_node_of_a_three_node_nats_cluster_loses_no_report() {
    let mut cluster = NatsCluster::start();
    cluster.wait_until_ready().await;
    let db = TestDb::new(Backend::Postgres);
    let urls = cluster.urls();
    let server_env =
        NatsServerEnv::on(&urls).with("PHOENIX_BUS__STREAM_REPLICAS", 3).with("PHOENIX_BUS__ACK_WAIT_SECS", 2);
    let prefix = server_env.prefix.clone();
    let replicas: Vec<_> = (0..2).map(|_| ServerProcess::start(&db, &server_env.vars())).collect();
    let api = Api::new(&replicas[0].url(""), &replicas[0].bootstrap_admin().await);
    let agents = fleet_sim::enroll(&api, AGENTS, "cluster", |_| json!({})).await;
    fleet_sim::give_pipeline(&api, &agents, PIPELINE).await;
    let options = NatsBusOptions {
        subjects: Subjects::new(&prefix).expect("prefix"),
        name: "cluster-agents".into(),
        manage_stream: false,
        ..Default::default()
    };
    let bus = NatsBus::connect(&urls, options).await.expect("agents connect to the cluster");

    let (before, after) = (15, 15);
    for seq in 1..=before {
        for agent in &agents {
            send_batch(&bus, agent, seq).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stream = Subjects::new(&prefix).expect("prefix").agent_results_stream();
    assert_eq!(cluster.stream_replicas(&stream).await, 3, "the results stream has three copies");
    // The node the agents are connected to: they must move to another one.
    let node = cluster.node_of_connection("cluster-agents").await;
    cluster.kill(node);
    let killed_at = Instant::now();
    for seq in before + 1..=before + after {
        for agent in &agents {
            send_batch(&bus, agent, seq).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sent = (before + after) as i64;
    let expected: Vec<i64> = (1..=sent).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let per_agent = stored(&db);
        let complete = per_agent.len() == AGENTS && per_agent.values().all(|seqs| seqs.len() >= sent as usize);
        if complete {
            // Give a late redelivery the chance to show up as a duplicate.
            tokio::time::sleep(Duration::from_secs(3)).await;
            let per_agent = stored(&db);
            for (agent, seqs) in &per_agent {
                assert_eq!(seqs, &expected, "agent {agent}: every batch exactly once");
            }
            break;
        }
        assert!(Instant::now() < deadline, "not every batch arrived: {per_agent:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Both replicas still answer and still read the bus.
    for replica in &replicas {
        let ready = http_client().get(replica.url("/readyz")).send().await.expect("readyz");
        assert_eq!(ready.status(), 200, "replica on {} is ready after the node loss", replica.url(""));
    }
    println!(
        "NATS cluster: the node the agents were on (1 of 3, results stream with 3 copies) killed under 2 replicas and {AGENTS} reporting agents; {} batches sent, all \
         stored once ({:.1} s after the kill), lost 0, repeated 0",
        AGENTS as i64 * sent,
        killed_at.elapsed().as_secs_f64()
    );
}
