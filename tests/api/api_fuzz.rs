//! The API fuzzed against its own contract: schemathesis (from PyPI; `scripts/test` installs a pinned
//! version and sets `PHOENIX_TEST_SCHEMATHESIS`) reads `/api/v1/openapi.json` from a running server and
//! calls every operation with generated valid and invalid input, as an admin (user routes) and as an
//! enrolled agent (agent routes): each operation gets the credential its security scheme names. Every
//! check runs (`--checks all`), stateful phase included: the test fails on any 5xx, any status the
//! document does not list, any content type or body that does not match it, any schema-valid input
//! refused or schema-invalid input accepted — except the commented [`ALLOWED`] list of rules OpenAPI
//! cannot state — and on a run that reached no operation (e.g. the token was refused everywhere).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use phoenix::db::Backend;
use serde_json::Value;

use crate::each_backend;
use crate::helpers::fast_server;

/// Generated cases per operation in the fuzzing phase (the coverage phase adds its own, per schema):
/// `PHOENIX_API_FUZZ_EXAMPLES`, 15 by default (100 with `scripts/test --long`).
fn max_examples() -> String {
    std::env::var("PHOENIX_API_FUZZ_EXAMPLES").ok().filter(|v| v.parse::<u32>().is_ok()).unwrap_or_else(|| "15".into())
}
/// The run is killed after this long: a hang is a failure, not a stuck CI job.
const RUN_LIMIT: Duration = Duration::from_secs(900);
/// Paths left out: logging out would revoke the token the run uses; the WebSocket is not HTTP; the
/// document itself is what the fuzzer loads first.
const EXCLUDED: [&str; 3] = ["/api/v1/auth/logout", "/api/v1/ws", "/api/v1/openapi.json"];

fn schemathesis() -> PathBuf {
    let path = std::env::var_os("PHOENIX_TEST_SCHEMATHESIS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tools/schemathesis/bin/schemathesis"));
    assert!(
        path.is_file(),
        "schemathesis not found at {}: run the tests with scripts/test, which installs it",
        path.display()
    );
    path
}

/// A scratch folder for the run's reports and Hypothesis's files (nothing lands in the work tree).
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("schemathesis").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch folder");
    dir
}

/// The bearer token of each security scheme of the document.
struct Credentials {
    user_token: String,
    agent_credential: String,
}

fn command(base: &str, credentials: &Credentials, dir: &Path) -> Command {
    // No example cache between runs; a run where an operation is refused for auth every time fails.
    let config = dir.join("schemathesis.toml");
    let text = format!(
        "[cache]\nenabled = false\n\n[phases.stateful]\nmax-steps = 10\n\n[warnings]\nfail-on = [\"missing_auth\"]\n\n\
         [auth.openapi.user_token]\nbearer = \"{}\"\n\n[auth.openapi.agent_credential]\nbearer = \"{}\"\n",
        credentials.user_token, credentials.agent_credential
    );
    std::fs::write(&config, text).expect("config");
    let mut cmd = Command::new(schemathesis());
    cmd.current_dir(dir)
        .env("HYPOTHESIS_STORAGE_DIRECTORY", dir.join("hypothesis"))
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(format!("{base}/api/v1/openapi.json"))
        .args(["--checks", "all"])
        .args(["--mode", "all", "--phases", "examples,coverage,fuzzing,stateful"])
        .args(["--max-examples", &max_examples(), "--seed", "20261127", "--generation-database", "none"])
        .args(["--workers", "2", "--request-timeout", "30", "--request-retries", "0", "--no-color"])
        .args(["--report", "junit,json"])
        .arg("--report-junit-path")
        .arg(dir.join("junit.xml"))
        .arg("--report-json-path")
        .arg(dir.join("report.json"));
    for path in EXCLUDED {
        cmd.args(["--exclude-path", path]);
    }
    cmd
}

/// Runs the command to its end or the limit, off the async threads (the server runs on them).
async fn run(mut cmd: Command) -> (Option<i32>, String) {
    actix_web::rt::task::spawn_blocking(move || {
        let log_path = std::env::temp_dir().join(format!("schemathesis-{}.log", uuid::Uuid::now_v7()));
        let log = std::fs::File::create(&log_path).expect("log file");
        let mut child = cmd
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("schemathesis starts");
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break status.code();
            }
            if started.elapsed() > RUN_LIMIT {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        let output = std::fs::read_to_string(&log_path).unwrap_or_default();
        let _ = std::fs::remove_file(&log_path);
        (status, output)
    })
    .await
    .expect("runner thread")
}

/// Findings of `--checks all` that are the API's documented behaviour rather than a gap between the
/// document and the server: a rule OpenAPI cannot state. Everything else fails the test.
const ALLOWED: [(&str, &str, &str); 22] = [
    // A pipeline config's meaning (its YAML must be a valid pipeline, its template must exist): any
    // string is schema-valid, only the config parser can tell.
    ("ST202", "POST /api/v1/experiments", "pipeline configs"),
    ("ST202", "POST /api/v1/pipelines/deployments", "pipeline configs"),
    ("ST202", "PATCH /api/v1/pipelines/deployments/{id}", "pipeline configs"),
    ("ST202", "POST /api/v1/pipelines/preview", "pipeline configs"),
    ("ST202", "POST /api/v1/pipelines/validate", "pipeline configs"),
    ("ST202", "POST /api/v1/pipelines/render", "the template must exist"),
    ("ST202", "POST /api/v1/pipelines/templates", "a template's parameters must render"),
    ("ST202", "Stateful tests", "chains of the operations above"),
    // Label keys and values (1–63 of [A-Za-z0-9-_./]) are map keys: JSON Schema's propertyNames is not
    // checked by the generator for maps.
    ("ST202", "POST /api/v1/agent/enroll", "label keys"),
    ("ST202", "POST /api/v1/agents/enrollment-tokens", "label keys"),
    ("ST202", "PATCH /api/v1/agents/{id}", "label keys"),
    ("ST202", "GET /api/v1/agents", "the selector's key=value syntax"),
    // The envelope is one schema for every agent message: its `kind` must match the route, `v` is 1.
    ("ST202", "POST /api/v1/agent/heartbeat", "envelope kind per route"),
    ("ST202", "POST /api/v1/agent/metrics", "envelope kind per route"),
    ("ST202", "POST /api/v1/agent/tasks/{id}/status", "envelope kind per route"),
    // A task's payload is any JSON: NUL is refused at any depth, which the schema of an arbitrary value
    // cannot say.
    ("ST202", "POST /api/v1/tasks", "no NUL inside an arbitrary payload"),
    // Rules across fields or over state.
    ("ST202", "POST /api/v1/auth/password", "the current password must be right"),
    ("ST202", "POST /api/v1/users", "a username is taken once"),
    ("ST202", "POST /api/v1/experiments/{id}/promote", "name or deployment_id, not both"),
    ("ST202", "GET /api/v1/audit", "since before until"),
    ("ST202", "GET /api/v1/experiments", "phase and its old name status must agree"),
    ("ST202", "GET /api/v1/cost-analytics", "a period of at most 31 days, in any unit"),
];

/// The (check code, operation) pairs of the report that [`ALLOWED`] does not list.
fn unexpected_findings(report: &Value) -> Vec<(String, String)> {
    let mut unexpected = Vec::new();
    for failure in report["failures"].as_array().into_iter().flatten() {
        let code = failure["code"].as_str().unwrap_or("?");
        for operation in failure["operations"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            if !ALLOWED.iter().any(|(c, o, _)| *c == code && *o == operation) {
                unexpected.push((code.to_string(), operation.to_string()));
            }
        }
    }
    unexpected
}

/// The failing operations' messages from the JUnit report (the console output is long).
fn failures_of(junit: &str) -> String {
    junit
        .split("<testcase ")
        .skip(1)
        .filter(|case| case.contains("<failure") || case.contains("<error"))
        .map(|case| case.chars().take(3000).collect::<String>())
        .collect::<Vec<_>>()
        .join("\n---\n")
}

each_backend!(every_operation_answers_as_documented_under_generated_input);

async fn every_operation_answers_as_documented_under_generated_input(backend: Backend) {
    // Long polls held at most a second: the fuzzer asks for every `wait`.
    let (app, admin) = fast_server(backend, |s| s.agents.long_poll_max_wait_secs = 1).await;
    let agent = app.enroll_agent(&admin, "fuzzed-agent").await;
    let credentials = Credentials {
        user_token: admin,
        agent_credential: agent["credential"].as_str().expect("credential").to_string(),
    };
    let dir = scratch(&format!("{backend:?}").to_lowercase());
    let (status, output) = run(command(&app.url(""), &credentials, &dir)).await;

    let report: Value = std::fs::read_to_string(dir.join("report.json"))
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_else(|| panic!("schemathesis wrote no report (exit {status:?}):\n{output}"));
    let junit = std::fs::read_to_string(dir.join("junit.xml")).unwrap_or_default();
    let (operations, cases) = (&report["operations"], &report["test_cases"]);
    let server_errors: u64 = report["failures"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["title"].as_str().is_some_and(|t| t.contains("Server error")))
        .filter_map(|f| f["count"].as_u64())
        .sum();
    println!(
        "API fuzzing on {backend:?}: {} operations tested of {}, {} requests generated, {} with failures, \
         5xx seen: {server_errors}",
        operations["tested"], operations["total"], cases["generated"], cases["with_failures"]
    );
    // The phases' own summaries ("Coverage (in 20s)", "65 passed"…), so a passing run shows what it did.
    let phases: Vec<&str> = output
        .lines()
        .map(str::trim)
        .filter(|l| {
            ["Coverage", "Fuzzing", "Stateful", "passed", "failed", "Scenarios", "API Links"]
                .iter()
                .any(|w| l.contains(w))
        })
        .collect();
    println!("{}", phases.join("\n"));
    let unexpected = unexpected_findings(&report);
    assert!(
        unexpected.is_empty() && report["errors"].as_array().is_none_or(Vec::is_empty),
        "schemathesis found problems (exit {status:?}): {unexpected:?}\n{}\n\nconsole:\n{output}",
        failures_of(&junit)
    );
    let documented = crate::helpers::http_client()
        .get(app.url("/api/v1/openapi.json"))
        .send()
        .await
        .expect("document")
        .json::<Value>()
        .await
        .expect("JSON");
    let operations_documented: usize = documented["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .filter(|(path, _)| !EXCLUDED.contains(&path.as_str()))
        .map(|(_, item)| item.as_object().map_or(0, |methods| methods.len()))
        .sum();
    assert_eq!(operations["tested"].as_u64(), Some(operations_documented as u64), "every operation was called");
    assert_eq!(server_errors, 0);
}

/// Validates `instance` against the component `schema` of the OpenAPI `document`, with the JSON Schema
/// validator schemathesis itself uses (`jsonschema_rs`, in its venv); the errors, empty when valid.
fn schema_errors(document: &Value, schema: &str, instance: &Value) -> String {
    let python = schemathesis().with_file_name("python");
    let script = "import json, sys, jsonschema_rs\n\
                  doc, name, instance = json.load(open(sys.argv[1])), sys.argv[2], json.load(open(sys.argv[3]))\n\
                  root = {'$ref': '#/components/schemas/' + name, 'components': doc['components']}\n\
                  v = jsonschema_rs.Draft202012Validator(root)\n\
                  print('\\n'.join(str(e) for e in v.iter_errors(instance)))\n";
    let dir = tempfile::tempdir().expect("dir");
    let (doc_path, instance_path) = (dir.path().join("doc.json"), dir.path().join("instance.json"));
    std::fs::write(&doc_path, document.to_string()).expect("doc");
    std::fs::write(&instance_path, instance.to_string()).expect("instance");
    let output = Command::new(python)
        .args(["-c", script])
        .arg(&doc_path)
        .arg(schema)
        .arg(&instance_path)
        .output()
        .expect("python of the schemathesis venv");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// Experiment answers validate against their documented schema (an `allOf` over the closed request
/// type refused every real answer once), as created, read and listed.
#[actix_web::test]
async fn experiment_answers_validate_against_their_schema() {
    use crate::experiments::{experiment, synthetic};
    let (app, admin) = fast_server(Backend::Sqlite, |_| {}).await;
    let body = experiment(
        "valid",
        synthetic("topk", serde_json::json!({"k": 3})),
        serde_json::json!({"selector": {"env": "test"}}),
        60,
    );
    let res = app.send_as(reqwest::Method::POST, "/api/v1/experiments", &admin, &body).await;
    assert_eq!(res.status(), 201);
    let created: Value = res.json().await.expect("experiment");
    let id = created["id"].as_str().expect("id");
    let read: Value = app.get_as(&format!("/api/v1/experiments/{id}"), &admin).await.json().await.expect("experiment");
    let listed: Value = app.get_as("/api/v1/experiments", &admin).await.json().await.expect("page");
    let document: Value = app.get("/api/v1/openapi.json").await.json().await.expect("document");
    for (what, schema, instance) in [
        ("created", "ExperimentView", &created),
        ("read", "ExperimentView", &read),
        ("listed", "Page_ExperimentView", &listed),
    ] {
        let errors = schema_errors(&document, schema, instance);
        assert!(errors.is_empty(), "the {what} experiment does not match {schema}:\n{errors}\n{instance}");
    }
    // And the check can fail: a member the schema does not know is refused by the closed request type.
    let mut spec = body.clone();
    spec["surplus"] = serde_json::json!(1);
    assert!(!schema_errors(&document, "ExperimentSpec", &spec).is_empty(), "the request schema stays closed");
}
