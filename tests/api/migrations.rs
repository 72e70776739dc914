//! Migrations: both folders hold the same migrations, they apply from empty, and again is a no-op.

use std::collections::BTreeSet;
use std::path::Path;

use diesel::prelude::*;
use phoenix::db::{establish, migrations, Backend};

use crate::each_backend;
use crate::helpers::TestDb;

async fn migrations_apply_from_empty_and_again_is_a_no_op(backend: Backend) {
    let db = TestDb::new(backend);
    let mut conn = establish(&db.url).expect("connect");
    let first = migrations::run_pending(&mut conn).expect("first run");
    assert!(first >= 1, "the schema comes from migrations");
    let second = migrations::run_pending(&mut conn).expect("second run");
    assert_eq!(second, 0, "nothing left to apply");
    let users: i64 = phoenix::db::schema::users::table.count().get_result(&mut conn).expect("users table exists");
    assert_eq!(users, 0);
}
each_backend!(migrations_apply_from_empty_and_again_is_a_no_op);

fn migration_names(backend: &str) -> BTreeSet<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations").join(backend);
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| entry.expect("dir entry").file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn both_backends_have_the_same_migrations() {
    assert_eq!(migration_names("postgres"), migration_names("sqlite"));
}

/// `CREATE TABLE name (` followed by `column TYPE` lines, per file, normalised across dialects.
fn columns(sql: &str) -> Vec<String> {
    sql.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("--"))
        .map(|l| l.replace("DOUBLE PRECISION", "DOUBLE"))
        .collect()
}

#[test]
fn both_backends_create_the_same_columns_with_the_same_types() {
    for name in migration_names("postgres") {
        let read = |backend: &str| {
            let path =
                Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations").join(backend).join(&name).join("up.sql");
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        };
        assert_eq!(columns(&read("postgres")), columns(&read("sqlite")), "migration {name} differs between backends");
    }
}

#[actix_web::test]
async fn replicas_migrating_the_same_postgres_at_once_apply_each_migration_once() {
    let db = TestDb::new(Backend::Postgres);
    let runs: Vec<std::thread::JoinHandle<usize>> = (0..4)
        .map(|_| {
            let url = db.url.clone();
            std::thread::spawn(move || {
                migrations::run_pending(&mut establish(&url).expect("connect")).expect("migrate")
            })
        })
        .collect();
    let applied: usize = runs.into_iter().map(|r| r.join().expect("thread")).sum();
    let folders = migration_names("postgres").len();
    assert_eq!(applied, folders, "every migration applied exactly once across the replicas");
}
