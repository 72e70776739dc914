use std::collections::BTreeMap;
use std::io::Write;

use super::*;

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn file(contents: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().expect("temp file");
    f.write_all(contents.as_bytes()).expect("write temp file");
    f
}

#[test]
fn defaults_are_the_embedded_setup() {
    let s = Settings::load(None, &env(&[]), &FlagOverrides::default()).expect("defaults are valid");
    assert_eq!(s.server.listen, "127.0.0.1:8080");
    assert_eq!(s.database.url.expose(), "sqlite://phoenix.db");
    assert!(s.bus.nats_url.is_none());
    assert!(s.database.migrate);
    assert_eq!(s.server.body_limit_bytes, 1024 * 1024);
}

#[test]
fn file_then_env_then_flags_override_each_other_in_that_order() {
    let f = file("[server]\nlisten = \"127.0.0.1:1000\"\nworkers = 3\n[database]\npool_size = 4\n");
    let e = env(&[("PHOENIX_LISTEN", "127.0.0.1:2000"), ("PHOENIX_DATABASE__POOL_SIZE", "7")]);
    let s = Settings::load(Some(f.path()), &e, &FlagOverrides::default()).expect("valid");
    assert_eq!(s.server.listen, "127.0.0.1:2000", "env beats file");
    assert_eq!(s.server.workers, 3, "file beats defaults");
    assert_eq!(s.database.pool_size, 7, "typed env value beats file");

    let flags = FlagOverrides { listen: Some("127.0.0.1:3000".into()), no_migrate: true, ..Default::default() };
    let s = Settings::load(Some(f.path()), &e, &flags).expect("valid");
    assert_eq!(s.server.listen, "127.0.0.1:3000", "flag beats env");
    assert!(!s.database.migrate);
}

#[test]
fn every_problem_is_reported_at_once() {
    let f = file(
        "[server]\nlisen = \"x\"\nbody_limit_bytes = \"big\"\n[database]\nurl = \"mysql://x\"\n[nonsense]\na = 1\n",
    );
    let e = env(&[("PHOENIX_BUS__NATS_ULR", "nats://x"), ("PHOENIX_NATS_URL", "http://wrong")]);
    let err = Settings::load(Some(f.path()), &e, &FlagOverrides::default()).expect_err("invalid");
    let all = err.problems.join("\n");
    for expected in [
        "server.lisen: unknown key",
        "server.body_limit_bytes",
        "database.url: must start with",
        "nonsense: unknown section",
        "PHOENIX_BUS__NATS_ULR: no setting 'bus.nats_ulr'",
        "bus.nats_url: must start with nats://",
    ] {
        assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
    }
    assert_eq!(err.problems.len(), 6, "{all}");
}

#[test]
fn a_missing_config_file_is_a_problem_not_a_silent_default() {
    let err = Settings::load(Some(Path::new("/nonexistent/phoenix.toml")), &env(&[]), &FlagOverrides::default())
        .expect_err("missing file");
    assert!(err.problems[0].contains("cannot read"), "{:?}", err.problems);
}

#[test]
fn print_config_masks_passwords() {
    let e = env(&[
        ("PHOENIX_DATABASE_URL", "postgres://phoenix:hunter2@db/phoenix"),
        ("PHOENIX_NATS_URL", "nats://phoenix:natspass@nats:4222"),
    ]);
    let s = Settings::load(None, &e, &FlagOverrides::default()).expect("valid");
    let printed = s.to_masked_toml();
    assert!(!printed.contains("hunter2") && !printed.contains("natspass"), "{printed}");
    assert!(printed.contains("postgres://phoenix:********@db/phoenix"), "{printed}");
    assert!(!format!("{s:?}").contains("hunter2"));
}

#[test]
fn the_jwt_secret_is_checked_and_never_printed() {
    let short = env(&[("PHOENIX_AUTH__JWT_SECRET", "short")]);
    let err = Settings::load(None, &short, &FlagOverrides::default()).expect_err("too short");
    assert!(err.problems[0].contains("auth.jwt_secret"), "{:?}", err.problems);

    let long = env(&[("PHOENIX_AUTH__JWT_SECRET", "a-very-long-secret-value-of-40-bytes-xxxxx")]);
    let s = Settings::load(None, &long, &FlagOverrides::default()).expect("valid");
    assert_eq!(s.auth.jwt_secret.as_ref().map(Secret::expose), Some("a-very-long-secret-value-of-40-bytes-xxxxx"));
    assert!(!s.to_masked_toml().contains("a-very-long-secret"));
    assert!(!format!("{s:?}").contains("a-very-long-secret"));
}

#[test]
fn an_empty_variable_leaves_an_optional_setting_unset() {
    let e = env(&[("PHOENIX_AUTH__JWT_SECRET", ""), ("PHOENIX_BUS__AGENT_NATS_URL", ""), ("PHOENIX_NATS_URL", "")]);
    let s = Settings::load(None, &e, &FlagOverrides::default()).expect("valid");
    assert!(s.auth.jwt_secret.is_none() && s.bus.agent_nats_url.is_none() && s.bus.nats_url.is_none());
}

#[test]
fn every_optional_setting_can_be_set_in_the_file_and_the_environment() {
    let ui = tempfile::tempdir().expect("a dashboard folder");
    let ui = ui.path().display().to_string();
    let f = file(&format!(
        "[server]\ndashboard_dir = \"{ui}\"\n[bus]\nnats_url = \"nats://a:4222\"\nagent_nats_url = \"nats://b:4222\"\n\
         [auth]\njwt_secret = \"0123456789abcdef0123456789abcdef\"\n[agents]\noffline_after_secs = 30\n",
    ));
    let s = Settings::load(Some(f.path()), &env(&[]), &FlagOverrides::default()).expect("valid file");
    assert_eq!(s.server.dashboard_dir.as_deref(), Some(std::path::Path::new(&ui)));
    assert!(s.bus.nats_url.is_some() && s.bus.agent_nats_url.is_some() && s.auth.jwt_secret.is_some());
    assert_eq!(s.agents.offline_after_secs, Some(30));
    let e = env(&[("PHOENIX_SERVER__DASHBOARD_DIR", &ui)]);
    let s = Settings::load(None, &e, &FlagOverrides::default()).expect("valid environment");
    assert_eq!(s.server.dashboard_dir.as_deref(), Some(std::path::Path::new(&ui)));
    let e = env(&[("PHOENIX_SERVER__DASHBOARD_DIR", "/no/such/folder")]);
    let err = Settings::load(None, &e, &FlagOverrides::default()).expect_err("a missing folder is refused");
    assert!(err.problems.iter().any(|p| p.starts_with("server.dashboard_dir")), "{:?}", err.problems);
}

#[test]
fn a_currency_must_be_a_three_letter_code() {
    let e = env(&[("PHOENIX_EXPERIMENTS__CURRENCY", "dollars")]);
    let err = Settings::load(None, &e, &FlagOverrides::default()).expect_err("refused");
    assert!(err.problems.iter().any(|p| p.starts_with("experiments.currency")), "{:?}", err.problems);
    let s = Settings::load(None, &env(&[("PHOENIX_EXPERIMENTS__CURRENCY", "EUR")]), &FlagOverrides::default())
        .expect("valid");
    assert_eq!(s.experiments.runtime(10).prices.currency.as_str(), "EUR");
}

#[test]
fn optional_numbers_from_the_environment_are_numbers() {
    let s = Settings::load(None, &env(&[("PHOENIX_AGENTS__OFFLINE_AFTER_SECS", "45")]), &FlagOverrides::default())
        .expect("valid");
    assert_eq!(s.agents.offline_after().as_secs(), 45);
}

#[test]
fn durations_too_large_to_compute_with_are_refused() {
    let e = env(&[("PHOENIX_TASKS__TTL_SECS", "99999999999"), ("PHOENIX_METRICS__RETENTION_HOURS", "9999999999")]);
    let err = Settings::load(None, &e, &FlagOverrides::default()).expect_err("too large");
    assert_eq!(err.problems.len(), 2, "{:?}", err.problems);
}

#[test]
fn log_format_and_filter_come_from_the_usual_variables() {
    let e = env(&[("LOG_FORMAT", "json"), ("RUST_LOG", "warn,phoenix=debug")]);
    let s = Settings::load(None, &e, &FlagOverrides::default()).expect("valid");
    assert_eq!(s.log.format, LogFormat::Json);
    assert_eq!(s.log.filter, "warn,phoenix=debug");
}

#[test]
fn trusted_proxies_are_a_list_in_the_file_and_comma_separated_or_toml_in_the_environment() {
    let f = file("[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n");
    let s = Settings::load(Some(f.path()), &env(&[]), &FlagOverrides::default()).expect("valid file");
    let shown: Vec<String> = s.server.trusted_proxies.iter().map(ToString::to_string).collect();
    assert_eq!(shown, ["10.0.0.0/8", "::1"]);
    for raw in ["10.0.0.0/8, 192.168.1.7", r#"["10.0.0.0/8", "192.168.1.7"]"#] {
        let s = Settings::load(None, &env(&[("PHOENIX_SERVER__TRUSTED_PROXIES", raw)]), &FlagOverrides::default())
            .expect("valid environment");
        let shown: Vec<String> = s.server.trusted_proxies.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["10.0.0.0/8", "192.168.1.7"], "{raw}");
    }
    assert!(Settings::default().server.trusted_proxies.is_empty(), "no proxy is trusted unless listed");
    let e = env(&[("PHOENIX_SERVER__TRUSTED_PROXIES", "10.0.0.1,proxy.internal")]);
    let err = Settings::load(None, &e, &FlagOverrides::default()).expect_err("a host name is refused");
    let all = err.problems.join("\n");
    assert!(all.contains("server.trusted_proxies") && all.contains("'proxy.internal'"), "{all}");
}

#[test]
fn with_per_agent_nats_identities_no_url_may_carry_a_password() {
    let flags = FlagOverrides::default();
    let trusted = [("PHOENIX_NATS_TRUST_FILE", "/etc/phoenix/nats/nats-trust.json")];
    let error = Settings::load(None, &env(&trusted), &flags).expect_err("a trust needs NATS");
    assert!(error.to_string().contains("needs bus.nats_url"), "{error}");

    let with_password = [
        trusted[0],
        ("PHOENIX_NATS_URL", "nats://phoenix:secret@nats:4222"),
        ("PHOENIX_BUS__AGENT_NATS_URL", "nats://a:4222,nats://agent:pw@b:4222"),
    ];
    let error = Settings::load(None, &env(&with_password), &flags).expect_err("shared credentials refused");
    assert_eq!(error.problems.len(), 2, "{error}");
    assert!(error.problems.iter().all(|p| p.contains("must carry no credentials")), "{error}");

    let clean =
        [trusted[0], ("PHOENIX_NATS_URL", "nats://nats:4222"), ("PHOENIX_BUS__AGENT_NATS_URL", "nats://nats:4222")];
    let settings = Settings::load(None, &env(&clean), &flags).expect("valid");
    assert_eq!(
        settings.bus.nats_trust_file.as_deref(),
        Some(std::path::Path::new("/etc/phoenix/nats/nats-trust.json"))
    );
}
