//! The storage suite: the same checks on SQLite and PostgreSQL for every table — insert with
//! RETURNING, select, update with RETURNING, transactions that roll back, and unique constraints.

use chrono::{NaiveDateTime, SubsecRound, Utc};
use diesel::prelude::*;
use phoenix::db::models::*;
use phoenix::db::schema::*;
use phoenix::db::{establish, migrations, Backend, DbConnection};

use crate::each_backend;
use crate::helpers::TestDb;

fn now() -> NaiveDateTime {
    Utc::now().naive_utc().trunc_subsecs(6)
}

fn id() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn migrated(db: &TestDb) -> DbConnection {
    let mut conn = establish(&db.url).expect("connect to the test database");
    migrations::run_pending(&mut conn).expect("migrations apply");
    conn
}

/// Inserts `$row` with RETURNING, reads it back by key, changes it with `$change` and updates it with
/// RETURNING, then reads the change back.
macro_rules! round_trip {
    ($conn:expr, $table:ident, $row:expr, |$r:ident| $change:expr) => {{
        let row = $row;
        let inserted = diesel::insert_into($table::table)
            .values(&row)
            .get_result(&mut *$conn)
            .expect(concat!("insert into ", stringify!($table)));
        assert_eq!(row, inserted, "RETURNING gives back what was inserted into {}", stringify!($table));
        let found = $table::table.find(row.id()).first(&mut *$conn).expect("select by key");
        assert_eq!(row, found);
        let mut $r = row.clone();
        $change;
        let updated = diesel::update($table::table.find(row.id())).set(&$r).get_result(&mut *$conn).expect("update");
        assert_eq!($r, updated, "RETURNING gives back the update of {}", stringify!($table));
        let reread = $table::table.find(row.id()).first(&mut *$conn).expect("select after update");
        assert_eq!($r, reread);
        $r
    }};
}

fn user(name: &str) -> UserRow {
    UserRow {
        id: id(),
        username: name.into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        role: "viewer".into(),
        active: true,
        created_at: now(),
        updated_at: now(),
        sessions_valid_after: Some(now()),
    }
}

fn deployment() -> PipelineDeploymentRow {
    PipelineDeploymentRow {
        id: id(),
        name: "edge-topk".into(),
        template: Some("topk".into()),
        pipeline: r#"{"template":"topk","parameters":{"k":10}}"#.into(),
        target: r#"{"selector":{"env":"prod"}}"#.into(),
        rollout: r#"{"strategy":"all_at_once"}"#.into(),
        status: "rolling_out".into(),
        current_version: 1,
        created_by: None,
        created_at: now(),
        updated_at: now(),
        deleted_at: None,
        status_detail: Some(r#"{"reason":"x"}"#.into()),
        resumed_at: None,
    }
}

fn version(deployment_id: &str, version: i32) -> DeploymentVersionRow {
    DeploymentVersionRow {
        id: id(),
        deployment_id: deployment_id.into(),
        version,
        pipeline: "{}".into(),
        config: "receivers: {}\n".into(),
        config_hash: "sha256:abc".into(),
        status: "active".into(),
        rollback_from_version: None,
        notes: String::new(),
        created_by: Some("admin".into()),
        created_at: now(),
    }
}

fn agent() -> AgentRow {
    AgentRow {
        id: id(),
        hostname: "host-1".into(),
        labels: r#"{"env":"prod"}"#.into(),
        credential_hash: format!("hash-{}", id()),
        state: "online".into(),
        agent_version: Some("0.1.0".into()),
        last_heartbeat_at: Some(now()),
        resources: None,
        pipelines: None,
        enrolled_at: now(),
        updated_at: now(),
        revoked_at: None,
    }
}

fn experiment() -> ExperimentRow {
    ExperimentRow {
        id: id(),
        name: "topk-vs-baseline".into(),
        description: String::new(),
        phase: "pending".into(),
        spec: "{}".into(),
        baseline_config: None,
        candidate_config: None,
        results: None,
        deployment_id: None,
        created_by: None,
        created_at: now(),
        updated_at: now(),
        started_at: None,
        measuring_from: None,
        completed_at: None,
        target_agents: Some("[\"a\"]".into()),
        phase_reason: Some("because".into()),
    }
}

async fn every_table_round_trips(backend: Backend) {
    let db = TestDb::new(backend);
    let conn = &mut migrated(&db);

    round_trip!(
        conn,
        system_settings,
        SystemSettingRow { key: "jwt_secret".into(), value: "x".into(), updated_at: now() },
        |r| r.value = "y".into()
    );
    let u = round_trip!(conn, users, user("alice"), |r| r.role = "admin".into());
    round_trip!(
        conn,
        refresh_tokens,
        RefreshTokenRow {
            id: id(),
            user_id: u.id.clone(),
            family_id: id(),
            token_hash: "h1".into(),
            expires_at: now(),
            created_at: now(),
            used_at: None,
            revoked_at: None,
        },
        |r| r.used_at = Some(now())
    );
    round_trip!(
        conn,
        revoked_tokens,
        RevokedTokenRow { jti: id(), user_id: Some(u.id.clone()), expires_at: now(), revoked_at: now() },
        |r| r.user_id = None
    );
    let e = round_trip!(conn, experiments, experiment(), |r| {
        r.phase = "running".into();
        r.started_at = Some(now());
    });
    round_trip!(
        conn,
        experiment_events,
        ExperimentEventRow {
            id: id(),
            experiment_id: e.id.clone(),
            event_type: "phase_changed".into(),
            from_phase: Some("pending".into()),
            to_phase: Some("deploying".into()),
            message: "started".into(),
            data: None,
            actor: Some("alice".into()),
            created_at: now(),
        },
        |r| r.data = Some("{}".into())
    );
    round_trip!(
        conn,
        pipeline_templates,
        PipelineTemplateRow {
            id: id(),
            name: "mine".into(),
            description: "d".into(),
            body: "receivers: {}".into(),
            parameters: "[]".into(),
            builtin: false,
            created_by: None,
            created_at: now(),
            updated_at: now(),
        },
        |r| r.description = "changed".into()
    );
    let d = round_trip!(conn, pipeline_deployments, deployment(), |r| r.status = "active".into());
    round_trip!(conn, deployment_versions, version(&d.id, 1), |r| r.status = "superseded".into());
    let a = round_trip!(conn, agents, agent(), |r| r.state = "offline".into());
    round_trip!(
        conn,
        agent_enrollment_tokens,
        EnrollmentTokenRow {
            id: id(),
            token_hash: "t1".into(),
            labels: "{}".into(),
            uses_left: 1,
            expires_at: now(),
            created_by: None,
            created_at: now(),
            revoked_at: None,
        },
        |r| r.uses_left = 0
    );
    round_trip!(
        conn,
        tasks,
        TaskRow {
            id: id(),
            agent_id: a.id.clone(),
            task_type: "pipeline.apply".into(),
            payload: "{}".into(),
            priority: 5,
            status: "pending".into(),
            attempts: 0,
            max_attempts: 5,
            idempotency_key: Some(id()),
            not_before: now(),
            lease_expires_at: None,
            progress: None,
            result: None,
            error: None,
            created_at: now(),
            updated_at: now(),
            dispatched_at: None,
            started_at: None,
            finished_at: None,
            expires_at: None,
        },
        |r| {
            r.status = "dispatched".into();
            r.lease_expires_at = Some(now());
        }
    );
    round_trip!(
        conn,
        metric_samples,
        MetricSampleRow {
            id: id(),
            experiment_id: Some(e.id.clone()),
            agent_id: a.id.clone(),
            pipeline: "candidate".into(),
            variant: Some("candidate".into()),
            metric: "series".into(),
            value: 1234.5,
            labels: "{}".into(),
            sampled_at: now(),
            received_at: now(),
            batch_seq: Some(7),
        },
        |r| r.value = 99.25
    );
    round_trip!(
        conn,
        cardinality_snapshots,
        CardinalitySnapshotRow {
            id: id(),
            experiment_id: None,
            agent_id: Some(a.id.clone()),
            pipeline: "p".into(),
            variant: None,
            metric: "process.cpu.time".into(),
            series: 5_000_000_000,
            by_label: r#"{"pid":1000}"#.into(),
            captured_at: now(),
        },
        |r| r.series = 7
    );
}
each_backend!(every_table_round_trips);

async fn a_second_version_with_the_same_number_is_refused(backend: Backend) {
    let db = TestDb::new(backend);
    let conn = &mut migrated(&db);
    let d = deployment();
    diesel::insert_into(pipeline_deployments::table).values(&d).execute(conn).expect("deployment");
    diesel::insert_into(deployment_versions::table).values(&version(&d.id, 1)).execute(conn).expect("v1");
    let duplicate = diesel::insert_into(deployment_versions::table).values(&version(&d.id, 1)).execute(conn);
    assert!(
        matches!(
            duplicate,
            Err(diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _))
        ),
        "got {duplicate:?}"
    );
    diesel::insert_into(deployment_versions::table).values(&version(&d.id, 2)).execute(conn).expect("v2 is fine");
}
each_backend!(a_second_version_with_the_same_number_is_refused);

async fn unique_columns_are_enforced(backend: Backend) {
    let db = TestDb::new(backend);
    let conn = &mut migrated(&db);
    diesel::insert_into(users::table).values(&user("bob")).execute(conn).expect("first bob");
    let second = diesel::insert_into(users::table).values(&user("bob")).execute(conn);
    assert!(second.is_err(), "usernames are unique");
    let a = agent();
    diesel::insert_into(agents::table).values(&a).execute(conn).expect("agent");
    let same_credential = AgentRow { id: id(), ..a };
    assert!(diesel::insert_into(agents::table).values(&same_credential).execute(conn).is_err());
}
each_backend!(unique_columns_are_enforced);

async fn foreign_keys_are_enforced(backend: Backend) {
    let db = TestDb::new(backend);
    let conn = &mut migrated(&db);
    let orphan = version("no-such-deployment", 1);
    assert!(diesel::insert_into(deployment_versions::table).values(&orphan).execute(conn).is_err());
    let d = deployment();
    diesel::insert_into(pipeline_deployments::table).values(&d).execute(conn).expect("deployment");
    diesel::insert_into(deployment_versions::table).values(&version(&d.id, 1)).execute(conn).expect("v1");
    diesel::delete(pipeline_deployments::table.find(&d.id)).execute(conn).expect("delete");
    let left: i64 = deployment_versions::table.count().get_result(conn).expect("count");
    assert_eq!(left, 0, "versions go with their deployment");
}
each_backend!(foreign_keys_are_enforced);

async fn a_failed_transaction_leaves_nothing_behind(backend: Backend) {
    let db = TestDb::new(backend);
    let conn = &mut migrated(&db);
    let d = deployment();
    let outcome = conn.transaction::<(), diesel::result::Error, _>(|tx| {
        diesel::insert_into(pipeline_deployments::table).values(&d).execute(tx)?;
        diesel::insert_into(deployment_versions::table).values(&version(&d.id, 1)).execute(tx)?;
        diesel::insert_into(deployment_versions::table).values(&version(&d.id, 1)).execute(tx)?;
        Ok(())
    });
    assert!(outcome.is_err());
    let deployments: i64 = pipeline_deployments::table.count().get_result(conn).expect("count");
    let versions: i64 = deployment_versions::table.count().get_result(conn).expect("count");
    assert_eq!((deployments, versions), (0, 0));
}
each_backend!(a_failed_transaction_leaves_nothing_behind);

async fn expired_token_records_are_pruned(backend: Backend) {
    use phoenix::db::{Database, DieselStore};
    use phoenix_actors::store::UserStore;
    let db = TestDb::new(backend);
    let conn = &mut migrated(&db);
    let u = user("carol");
    diesel::insert_into(users::table).values(&u).execute(conn).expect("user");
    let past = now() - chrono::Duration::hours(1);
    let future = now() + chrono::Duration::hours(1);
    for (jti, expires_at) in [("old", past), ("live", future)] {
        let row = RevokedTokenRow { jti: jti.into(), user_id: Some(u.id.clone()), expires_at, revoked_at: now() };
        diesel::insert_into(revoked_tokens::table).values(&row).execute(conn).expect("revocation");
    }
    let settings = phoenix::config::DatabaseSettings {
        url: phoenix::config::SensitiveUrl::new(db.url.clone()),
        ..Default::default()
    };
    let store = DieselStore::new(Database::connect_lazy(&settings).expect("pool"));
    assert_eq!(store.prune_expired_tokens(chrono::Utc::now()).await.expect("prune"), 1);
    let left: Vec<String> = revoked_tokens::table.select(revoked_tokens::jti).load(conn).expect("load");
    assert_eq!(left, ["live"]);
}
each_backend!(expired_token_records_are_pruned);
