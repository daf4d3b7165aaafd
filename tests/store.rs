//! The same history-store tests against SQLite and against the real PostgreSQL.
//! PostgreSQL tests read DBWARDEN_TEST_PG_URL; unset, they skip with a reason, unless
//! DBWARDEN_REQUIRE_SERVICES=1 (CI), where a skip is a failure.

use chrono::Utc;
use dbwarden::config::SecretUrl;
use dbwarden::engine::TableStat;
use dbwarden::health::{CheckResult, Scope, Status, Unit};
use dbwarden::store::{HistoryTable, JobRun, Record, RunEnd, RunOutcome, Store, new_run_id};
use sqlx::Connection;

fn pg_url() -> Option<String> {
    match std::env::var("DBWARDEN_TEST_PG_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            if std::env::var("DBWARDEN_REQUIRE_SERVICES").as_deref() == Ok("1") {
                panic!("DBWARDEN_TEST_PG_URL is not set but DBWARDEN_REQUIRE_SERVICES=1");
            }
            eprintln!("skipping: DBWARDEN_TEST_PG_URL not set");
            None
        }
    }
}

/// A fresh PostgreSQL database for one test, dropped at the end.
struct PgDb {
    admin: String,
    name: String,
    url: String,
}

impl PgDb {
    async fn create(admin: &str) -> PgDb {
        let name = format!("dbw_store_{:08x}", rand::random::<u32>());
        let mut c = sqlx::PgConnection::connect(admin)
            .await
            .unwrap_or_else(|e| panic!("connect {admin}: {e}"));
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut c)
            .await
            .unwrap_or_else(|e| panic!("create database: {e}"));
        let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(admin);
        PgDb {
            admin: admin.to_string(),
            url: format!("{base}/{name}"),
            name,
        }
    }

    async fn drop_db(self) {
        if let Ok(mut c) = sqlx::PgConnection::connect(&self.admin).await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            )))
            .execute(&mut c)
            .await;
        }
    }
}

fn check(target: &str, name: &str, status: Status, v: f64) -> CheckResult {
    CheckResult {
        check: name.into(),
        status,
        value: Some(v),
        unit: Unit::Milliseconds,
        warning: Some(250.0),
        critical: Some(1000.0),
        message: format!("{target} {name}"),
        subject: None,
        scope: Scope::Database,
    }
}

/// A table statistics row with every field set.
fn orders() -> TableStat {
    TableStat {
        table: "public.orders".into(),
        rows: Some(10.0),
        dead_rows: Some(2.0),
        size_bytes: Some(8192.0),
        inserts_delta: Some(3.0),
        updates_delta: Some(4.0),
        deletes_delta: Some(5.0),
        seq_scans: Some(6.0),
        idx_scans: Some(7.0),
        last_vacuum: Some(1_700_000_000),
        last_analyze: Some(1_700_000_001),
        free_bytes: Some(4096.0),
        last_modified: Some(1_700_000_002),
    }
}

async fn exercise(store: Store) {
    let now = Utc::now();
    let id = new_run_id();
    store
        .write(Record::Run(JobRun {
            id: id.clone(),
            job: "health".into(),
            kind: "health".into(),
            target: Some("demo".into()),
            scheduled_at: Some(now),
            started_at: now,
            finished_at: None,
            outcome: RunOutcome::Running,
            status: None,
            error: None,
            coalesced: 0,
        }))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for i in 0..3 {
        store
            .write(Record::Check {
                ts: now,
                target: "demo".into(),
                run_id: Some(id.clone()),
                result: check("demo", &format!("c{i}"), Status::Warning, f64::from(i)),
            })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    store
        .write(Record::Metric {
            ts: now,
            target: "demo".into(),
            metric: "connectivity".into(),
            value: 1.5,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    store
        .write(Record::Table {
            ts: now,
            target: "demo".into(),
            stat: orders(),
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // The end goes into the same batch as the start: the writer orders them.
    store
        .write(Record::RunEnd(RunEnd {
            id: id.clone(),
            finished_at: Utc::now(),
            outcome: RunOutcome::Ok,
            status: Some(Status::Warning),
            error: None,
        }))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    store.flush().await.unwrap_or_else(|e| panic!("{e}"));

    let runs = store
        .recent_runs(Some("health"), 10)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].id, id);
    assert_eq!(runs[0].outcome, "ok");
    assert_eq!(runs[0].status.as_deref(), Some("WARNING"));
    assert!(runs[0].finished_at.is_some());
    let checks = store
        .recent_checks("demo", 10)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(checks.len(), 3);
    assert_eq!(checks[0].status, "WARNING");
    assert_eq!(store.count(HistoryTable::MetricSamples).await.ok(), Some(1));
    assert_eq!(store.count(HistoryTable::TableStats).await.ok(), Some(1));
    // Every field of a table's statistics comes back as written.
    let stats = store
        .latest_table_stats("demo")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stats.len(), 1);
    assert_eq!(stats[0].1, orders());
    assert_eq!(stats[0].0.timestamp_millis(), now.timestamp_millis());
    assert!(
        store
            .latest_table_stats("nobody")
            .await
            .is_ok_and(|s| s.is_empty())
    );

    // Many records are batched and all committed.
    for i in 0..5000 {
        store
            .write(Record::Check {
                ts: now,
                target: "bulk".into(),
                run_id: None,
                result: check("bulk", "c", Status::Ok, f64::from(i)),
            })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    store.flush().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        store.count(HistoryTable::CheckResults).await.ok(),
        Some(5003)
    );

    // A run left `running` by a crashed daemon of this agent is closed as interrupted.
    let orphan = new_run_id();
    store
        .write(Record::Run(JobRun {
            id: orphan.clone(),
            job: "other".into(),
            kind: "health".into(),
            target: None,
            scheduled_at: None,
            started_at: now,
            finished_at: None,
            outcome: RunOutcome::Running,
            status: None,
            error: None,
            coalesced: 0,
        }))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    store.flush().await.unwrap_or_else(|e| panic!("{e}"));
    let n = store
        .close_orphaned_runs(&dbwarden::store::agent_name())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(n, 1);
    let runs = store
        .recent_runs(Some("other"), 1)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(runs[0].outcome, "interrupted");
    store.close().await;
}

#[tokio::test]
async fn sqlite_store_round_trip() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // The parent directory does not exist yet: the store creates it.
    let url = SecretUrl::new(format!(
        "sqlite://{}/sub/dir/history.db",
        dir.path().display()
    ));
    let store = Store::open(&url, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    exercise(store).await;
    // Reopening applies no migration twice.
    let v = Store::migrate_only(&url, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v, vec![1, 2, 3]);
    // A newer agent of the fleet applied a migration this binary does not know.
    let path = dir.path().join("sub/dir/history.db");
    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    sqlx::query(FUTURE_MIGRATION)
        .execute(&mut c)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let _ = c.close().await;
    let reopened = Store::open(&url, None).await;
    assert!(
        reopened.is_ok(),
        "{:?}",
        reopened.err().map(|e| e.to_string())
    );
}

/// A migration row as a newer dbwarden would leave it.
const FUTURE_MIGRATION: &str = "INSERT INTO _sqlx_migrations \
     (version, description, success, checksum, execution_time) \
     VALUES (9999, 'from a newer agent', TRUE, X'00', 0)";
const FUTURE_MIGRATION_PG: &str = "INSERT INTO _sqlx_migrations \
     (version, description, success, checksum, execution_time) \
     VALUES (9999, 'from a newer agent', TRUE, '\\x00'::bytea, 0)";

#[tokio::test]
async fn postgres_store_round_trip() {
    let Some(admin) = pg_url() else { return };
    let db = PgDb::create(&admin).await;
    let url = SecretUrl::new(db.url.clone());
    let store = Store::open(&url, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    exercise(store).await;
    let v = Store::migrate_only(&url, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v, vec![1, 2, 3]);
    let mut c = sqlx::PgConnection::connect(&db.url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    sqlx::query(FUTURE_MIGRATION_PG)
        .execute(&mut c)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let _ = c.close().await;
    let reopened = Store::open(&url, None).await;
    assert!(
        reopened.is_ok(),
        "{:?}",
        reopened.err().map(|e| e.to_string())
    );
    if let Ok(s) = reopened {
        s.close().await;
    }
    db.drop_db().await;
}

#[tokio::test]
async fn an_unreachable_store_is_a_clear_error_without_the_password() {
    let url = SecretUrl::new("postgres://u:store-secret@127.0.0.1:1/h");
    let err = match Store::open(&url, None).await {
        Ok(_) => panic!("port 1 should refuse"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("cannot connect"), "{err}");
    assert!(!err.contains("store-secret"), "{err}");
}
