//! The same history-store tests against SQLite and against the real PostgreSQL, and
//! fault trials: PostgreSQL refused through a proxy, SQLite on a filesystem that fills.
//! PostgreSQL tests read DBWARDEN_TEST_PG_URL; unset, they skip with a reason, unless
//! DBWARDEN_REQUIRE_SERVICES=1 (CI), where a skip is a failure.

mod common;

use std::time::Duration;

use chrono::Utc;
use common::pg::{PgDb, pg_url};
use common::proxy::Proxy;
use common::wait_until;
use dbwarden::config::SecretUrl;
use dbwarden::engine::TableStat;
use dbwarden::health::{CheckResult, Scope, Status, Unit};
use dbwarden::store::{
    BufferLimits, HistoryTable, JobRun, Record, RunEnd, RunOutcome, Store, TrendQuery, new_run_id,
};
use sqlx::Connection;

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

    // A stored value comes back as a trend: one hourly bucket holds the sample.
    let trend = store
        .trend(&TrendQuery {
            target: "demo".into(),
            metric: "connectivity".into(),
            label: None,
            from: now - chrono::Duration::hours(2),
            to: now + chrono::Duration::hours(1),
            step: Some(Duration::from_secs(3600)),
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(trend.step_seconds, 3600);
    let filled: Vec<_> = trend.points.iter().filter(|p| p.avg.is_some()).collect();
    assert_eq!(filled.len(), 1, "{:?}", trend.points);
    assert_eq!(filled[0].last, Some(1.5));
    let series = store
        .series_of("demo")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        series.iter().any(|s| s.metric == "connectivity"),
        "{series:?}"
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
    store.close(Duration::from_secs(5)).await;
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
    assert_eq!(v, shipped("sqlite"));
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

/// The versions of the migrations shipped for `dialect`, ascending (parallel branches may
/// leave a gap in the numbers).
fn shipped(dialect: &str) -> Vec<i64> {
    let dir = format!("{}/migrations/{dialect}", env!("CARGO_MANIFEST_DIR"));
    let mut v: Vec<i64> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .to_str()?
                .split('_')
                .next()?
                .parse()
                .ok()
        })
        .collect();
    v.sort();
    v
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
    assert_eq!(v, shipped("postgres"));
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
        s.close(Duration::from_secs(5)).await;
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

// ---- Buffer, outages and bad records ----

/// A typical check-result record, its value `i`.
fn result(target: &str, i: usize) -> Record {
    Record::Check {
        ts: Utc::now(),
        target: target.into(),
        run_id: Some("round".into()),
        result: check(target, "connectivity", Status::Ok, i as f64),
    }
}

fn metric(i: usize) -> Record {
    Record::Metric {
        ts: Utc::now(),
        target: "t".into(),
        metric: "connectivity".into(),
        value: i as f64,
    }
}

fn run(id: &str) -> Record {
    Record::Run(JobRun {
        id: id.into(),
        job: "health".into(),
        kind: "health".into(),
        target: Some("demo".into()),
        scheduled_at: None,
        started_at: Utc::now(),
        finished_at: None,
        outcome: RunOutcome::Running,
        status: None,
        error: None,
        coalesced: 0,
    })
}

fn sqlite_url(dir: &std::path::Path) -> SecretUrl {
    SecretUrl::new(format!("sqlite://{}/history.db", dir.display()))
}

async fn start(url: &SecretUrl, limits: BufferLimits) -> Store {
    Store::start(url, None, limits)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn count(store: &Store, table: HistoryTable) -> i64 {
    store
        .count(table)
        .await
        .unwrap_or_else(|e| panic!("count: {e}"))
}

#[tokio::test]
async fn past_the_bound_the_oldest_records_are_dropped_and_counted() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let limits = BufferLimits {
        records: 100,
        bytes: usize::MAX,
    };
    let store = start(&sqlite_url(dir.path()), limits).await;
    // No await between pushes: on this single-threaded test runtime the writer cannot
    // take any of them meanwhile, so exactly the 400 oldest are dropped.
    for i in 0..500 {
        store.push(metric(i));
    }
    let h = store.health();
    assert_eq!(h.backlog_records, 100);
    assert_eq!(h.dropped.overflow, 400);
    store.flush().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(count(&store, HistoryTable::MetricSamples).await, 100);
    let path = dir.path().join("history.db");
    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let oldest: f64 = sqlx::query_scalar("SELECT min(value) FROM metric_samples")
        .fetch_one(&mut c)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(oldest, 400.0, "the newest 100 are kept");
    let _ = c.close().await;
    let h = store.health();
    assert_eq!((h.written_total, h.dropped.total()), (100, 400));
    store.close(Duration::from_secs(5)).await;

    // The byte bound: room for about ten records of this size.
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let bound = 10 * metric(0).approx_bytes();
    let store = start(
        &sqlite_url(dir.path()),
        BufferLimits {
            records: usize::MAX,
            bytes: bound,
        },
    )
    .await;
    for i in 0..100 {
        store.push(metric(i));
    }
    let h = store.health();
    assert!(h.backlog_bytes <= bound, "{h:?}");
    assert!((5..=10).contains(&h.backlog_records), "{h:?}");
    assert_eq!(h.dropped.overflow + h.backlog_records as u64, 100);
    store.close(Duration::from_secs(5)).await;
}

/// One batch holding records the store rejects: only those are dropped.
async fn bad_records_do_not_sink_their_batch(store: Store, bad_extra: Vec<Record>) {
    let id = new_run_id();
    let mut pushed = 0;
    let mut push = |r: Record| {
        store.push(r);
        pushed += 1;
    };
    push(run(&id));
    (0..50).for_each(|i| push(result("demo", i)));
    // The same run id again: a primary-key violation.
    push(run(&id));
    (50..100).for_each(|i| push(result("demo", i)));
    let bad = 1 + bad_extra.len() as u64;
    bad_extra.into_iter().for_each(&mut push);
    (100..110).for_each(|i| push(result("demo", i)));
    store.flush().await.unwrap_or_else(|e| panic!("{e}"));
    let h = store.health();
    assert_eq!(h.dropped.bad_record, bad, "{h:?}");
    assert_eq!(h.written_total, pushed - bad, "{h:?}");
    assert!(h.reachable, "a bad record is not an outage");
    assert_eq!(count(&store, HistoryTable::CheckResults).await, 110);
    assert_eq!(count(&store, HistoryTable::JobRuns).await, 1);
    store.close(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn sqlite_a_bad_record_does_not_sink_its_batch() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let url = sqlite_url(dir.path());
    let store = start(&url, BufferLimits::default()).await;
    bad_records_do_not_sink_their_batch(store, Vec::new()).await;
}

#[tokio::test]
async fn postgres_a_bad_record_does_not_sink_its_batch() {
    let Some(admin) = pg_url() else { return };
    let db = PgDb::create(&admin).await;
    let store = start(&SecretUrl::new(db.url.clone()), BufferLimits::default()).await;
    // PostgreSQL refuses a NUL character in text (SQLSTATE 22021): a message read from a
    // monitored database could carry one.
    let mut nul = check("demo", "long_query", Status::Warning, 1.0);
    nul.message = "query \0 text".into();
    let bad = Record::Check {
        ts: Utc::now(),
        target: "demo".into(),
        run_id: None,
        result: nul,
    };
    bad_records_do_not_sink_their_batch(store, vec![bad]).await;
    db.drop_db().await;
}

/// The statement another agent of a fleet would have left: a newer transition of target
/// `a`, which this agent must not restore.
const FOREIGN_TRANSITION: &str = "INSERT INTO health_transitions \
    (ts, target, check_name, from_status, to_status, message, agent) \
    VALUES (1800000009000, 'a', NULL, 'WARNING', 'OK', 'm', 'another-agent')";

/// Transitions of two targets; the newest of each (target, check) is believed, of this
/// agent only (`foreign` inserts another agent's newer transition first).
async fn believed_states_are_the_newest_transitions(
    store: Store,
    foreign: impl std::future::Future<Output = ()>,
) {
    let t = |s: i64| chrono::DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap_or_default();
    let tr = |ts, target: &str, check: Option<&str>, from, to| Record::Transition {
        ts,
        target: target.into(),
        check: check.map(String::from),
        from,
        to,
        message: "m".into(),
    };
    assert!(
        store
            .believed_states()
            .await
            .is_ok_and(|rows| rows.is_empty())
    );
    store.push(tr(t(1), "a", None, Status::Ok, Status::Critical));
    store.push(tr(t(2), "a", None, Status::Critical, Status::Warning));
    store.push(tr(t(1), "a", Some("conn"), Status::Ok, Status::Critical));
    store.push(tr(t(3), "b", None, Status::Ok, Status::Unknown));
    store.push(tr(t(0), "b", None, Status::Critical, Status::Ok));
    store.flush().await.unwrap_or_else(|e| panic!("{e}"));
    foreign.await;
    let rows = store
        .believed_states()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let got: Vec<(&str, Option<&str>, Status, i64)> = rows
        .iter()
        .map(|r| {
            (
                r.target.as_str(),
                r.check.as_deref(),
                r.status,
                r.since.timestamp() - 1_800_000_000,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("a", None, Status::Warning, 2),
            ("a", Some("conn"), Status::Critical, 1),
            ("b", None, Status::Unknown, 3),
        ]
    );
    store.close(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn sqlite_believed_states() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let url = sqlite_url(dir.path());
    let store = start(&url, BufferLimits::default()).await;
    let foreign = async {
        use sqlx::Connection;
        let mut c = sqlx::SqliteConnection::connect(url.expose())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        sqlx::query(FOREIGN_TRANSITION)
            .execute(&mut c)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    };
    believed_states_are_the_newest_transitions(store, foreign).await;
}

#[tokio::test]
async fn postgres_believed_states() {
    let Some(admin) = pg_url() else { return };
    let db = PgDb::create(&admin).await;
    let store = start(&SecretUrl::new(db.url.clone()), BufferLimits::default()).await;
    let foreign = async {
        sqlx::query(FOREIGN_TRANSITION)
            .execute(&mut db.connect().await)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    };
    believed_states_are_the_newest_transitions(store, foreign).await;
    db.drop_db().await;
}

/// Simulated health rounds: `rounds` of 25 results, one a second, pushed by a producer
/// that must never be held up. Returns how many rounds it completed.
fn producer(store: Store, rounds: usize) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut done = 0;
        for round in 0..rounds {
            tick.tick().await;
            for i in 0..25 {
                store.push(result(&format!("target-{i}"), round));
            }
            done += 1;
        }
        done
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_refused_for_30s_loses_nothing_within_the_bound() {
    let Some(admin) = pg_url() else { return };
    let db = PgDb::create(&admin).await;
    let (proxy, url) = Proxy::for_url(&db.url).await;
    let store = start(&SecretUrl::new(url), BufferLimits::default()).await;
    assert!(store.health().reachable);
    for i in 0..25 {
        store.push(result("first-round", i));
    }
    store.flush().await.unwrap_or_else(|e| panic!("{e}"));

    proxy.refuse().await;
    let rounds = producer(store.clone(), 30);
    wait_until(20, "the store is seen unreachable with a backlog", || {
        let h = store.health();
        !h.reachable && h.backlog_records > 0
    })
    .await;
    // flush does not wait out the outage: it fails after the next failed attempt.
    assert!(store.flush().await.is_err());
    let done = rounds.await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(done, 30, "every round pushed");
    let h = store.health();
    assert!(!h.reachable && h.failing_since.is_some(), "{h:?}");
    assert!(h.last_error.is_some(), "{h:?}");
    assert_eq!(h.backlog_records, 30 * 25, "all buffered, none lost: {h:?}");
    assert_eq!(h.dropped.total(), 0);

    proxy.resume().await;
    wait_until(60, "the backlog is written", || {
        let h = store.health();
        h.reachable && h.backlog_records == 0
    })
    .await;
    let h = store.health();
    assert_eq!(h.written_total, 31 * 25, "{h:?}");
    assert_eq!((h.failing_since, h.last_error.as_deref()), (None, None));
    assert_eq!(count(&store, HistoryTable::CheckResults).await, 31 * 25);
    store.close(Duration::from_secs(5)).await;
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_unreachable_at_start_runs_degraded_and_catches_up() {
    let Some(admin) = pg_url() else { return };
    let db = PgDb::create(&admin).await;
    // A run a crashed dbwarden of this host left `running`.
    Store::migrate_only(&SecretUrl::new(db.url.clone()), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut c = db.connect().await;
    sqlx::query(
        "INSERT INTO job_runs (id, job, kind, agent, started_at, outcome) \
         VALUES ('orphan', 'health', 'health', $1, 0, 'running')",
    )
    .bind(dbwarden::store::agent_name())
    .execute(&mut c)
    .await
    .unwrap_or_else(|e| panic!("{e}"));

    let (proxy, url) = Proxy::for_url(&db.url).await;
    proxy.refuse().await;
    let store = start(&SecretUrl::new(url), BufferLimits::default()).await;
    let h = store.health();
    assert!(!h.reachable && h.failing_since.is_some(), "{h:?}");
    // Reads say so at once instead of hanging.
    let err = match store.recent_runs(None, 10).await {
        Ok(_) => panic!("read from an unreachable store"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("unavailable"), "{err}");
    let id = new_run_id();
    store.push(run(&id));
    for i in 0..10 {
        store.push(result("demo", i));
    }
    assert!(
        store.flush().await.is_err(),
        "flush must not wait out the outage"
    );

    proxy.resume().await;
    wait_until(60, "the degraded store connects and writes", || {
        let h = store.health();
        h.reachable && h.backlog_records == 0
    })
    .await;
    assert_eq!(count(&store, HistoryTable::CheckResults).await, 10);
    let runs = store
        .recent_runs(Some("health"), 10)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let outcome = |id: &str| runs.iter().find(|r| r.id == id).map(|r| r.outcome.clone());
    assert_eq!(outcome("orphan").as_deref(), Some("interrupted"));
    assert_eq!(outcome(&id).as_deref(), Some("running"), "only the old run");
    store.close(Duration::from_secs(5)).await;
    let _ = c.close().await;
    db.drop_db().await;
}

#[tokio::test]
async fn closing_while_the_store_is_down_counts_what_is_lost() {
    // Port 1 refuses: a store that never answers.
    let url = SecretUrl::new("postgres://u:store-secret@127.0.0.1:1/h");
    let store = start(&url, BufferLimits::default()).await;
    for i in 0..10 {
        store.push(metric(i));
    }
    let other = store.clone();
    let summary = store.close(Duration::from_secs(1)).await;
    assert_eq!((summary.flushed, summary.unwritten), (0, 10));
    assert_eq!(summary.health.dropped.shutdown, 10);
    let err = summary.health.last_error.unwrap_or_default();
    assert!(!err.is_empty() && !err.contains("store-secret"), "{err}");
    // A clone pushing after the close is counted, not silently lost.
    other.push(metric(10));
    assert_eq!(other.health().dropped.shutdown, 11);
}

#[tokio::test]
async fn a_url_that_cannot_work_is_refused_at_start() {
    for url in ["mongodb://x/y", "sqlite://"] {
        let r = Store::start(&SecretUrl::new(url), None, BufferLimits::default()).await;
        assert!(r.is_err(), "{url}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_history_on_a_full_disk_resumes_when_space_returns() {
    let fs = match common::tmpfs::Tmpfs::mount(32 * 1024 * 1024) {
        Ok(fs) => fs,
        Err(reason) => {
            common::skip(&reason);
            return;
        }
    };
    let url = sqlite_url(fs.path());
    let limits = BufferLimits {
        records: 1500,
        bytes: usize::MAX,
    };
    let store = start(&url, limits).await;
    let mut pushed = 0u64;
    // 2 KB messages: a 1,500-record batch (3 MB) outgrows SQLite's 2 MB page cache, so the
    // disk fills in the middle of an INSERT, where SQLite rolls the whole transaction back
    // by itself (the case that used to leave sqlx's transaction bookkeeping, and the write
    // lock, wrong for good).
    let mut push = |store: &Store, n: usize| {
        for i in 0..n {
            let mut r = result("demo", i);
            if let Record::Check { result, .. } = &mut r {
                result.message = "x".repeat(2000);
            }
            store.push(r);
        }
        pushed += n as u64;
    };
    push(&store, 25);
    store.flush().await.unwrap_or_else(|e| panic!("{e}"));

    let filler = fs.fill();
    // The WAL may still have room for a few batches; keep going until writes fail.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while store.health().reachable {
        assert!(
            tokio::time::Instant::now() < deadline,
            "writes never failed"
        );
        push(&store, 100);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    push(&store, 3000);
    let h = store.health();
    assert!(h.last_error.is_some(), "{h:?}");
    assert_eq!(h.backlog_records, 1500, "the bound holds: {h:?}");
    assert_eq!(
        h.written_total + h.dropped.total() + h.backlog_records as u64,
        pushed,
        "every record is written, waiting or counted as dropped: {h:?}"
    );
    assert!(h.dropped.overflow > 0);
    // Meanwhile the failed transaction holds no lock: another writer is refused for lack
    // of space (or succeeds), never with "database is locked".
    let path = fs.path().join("history.db");
    let other_write = || async {
        let opts = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .busy_timeout(Duration::from_secs(2));
        let mut other = sqlx::SqliteConnection::connect_with(&opts).await?;
        let r = sqlx::query(
            "INSERT INTO metric_samples (ts, target, metric, value) VALUES (0, 'other', 'm', 1)",
        )
        .execute(&mut other)
        .await;
        let _ = other.close().await;
        r.map(|_| ())
    };
    if let Err(e) = other_write().await {
        assert!(!e.to_string().contains("locked"), "{e}");
    }

    std::fs::remove_file(&filler).unwrap_or_else(|e| panic!("{e}"));
    wait_until(60, "writes resume by themselves", || {
        let h = store.health();
        h.reachable && h.backlog_records == 0
    })
    .await;
    let h = store.health();
    assert_eq!(h.written_total + h.dropped.total(), pushed, "{h:?}");
    assert_eq!(
        count(&store, HistoryTable::CheckResults).await as u64,
        h.written_total
    );

    // No lingering write lock: another connection, and another process, can write.
    other_write()
        .await
        .unwrap_or_else(|e| panic!("another connection cannot write: {e}"));
    match std::process::Command::new("sqlite3")
        .arg(&path)
        .arg(".timeout 2000")
        .arg(
            "INSERT INTO metric_samples (ts, target, metric, value) VALUES (0, 'process', 'm', 1);",
        )
        .output()
    {
        Ok(out) => assert!(
            out.status.success(),
            "another process cannot write: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => eprintln!("sqlite3 not runnable ({e}); checked with another connection only"),
    }
    store.close(Duration::from_secs(5)).await;
}

/// Writes `msg` and reads it back through an echo server; false when the connection fails.
async fn roundtrip(s: &mut tokio::net::TcpStream, msg: &[u8]) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; msg.len()];
    s.write_all(msg).await.is_ok() && s.read_exact(&mut buf).await.is_ok() && buf == msg
}

/// The proxy the fault trials rely on, against a local echo server.
#[tokio::test]
async fn the_test_proxy_refuses_resets_pauses_and_resumes() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let echo = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let upstream = echo.local_addr().unwrap_or_else(|e| panic!("{e}"));
    tokio::spawn(async move {
        while let Ok((mut s, _)) = echo.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    let proxy = Proxy::start(upstream).await;
    let mut live = tokio::net::TcpStream::connect(proxy.addr())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(roundtrip(&mut live, b"one").await);

    proxy.refuse().await;
    let refused = tokio::net::TcpStream::connect(proxy.addr()).await;
    assert_eq!(
        refused.err().map(|e| e.kind()),
        Some(std::io::ErrorKind::ConnectionRefused)
    );
    assert!(
        !roundtrip(&mut live, b"two").await,
        "a live connection is reset"
    );

    proxy.resume().await;
    let mut again = tokio::net::TcpStream::connect(proxy.addr())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(roundtrip(&mut again, b"three").await);

    // Paused, bytes wait; resumed, they arrive.
    proxy.pause().await;
    again
        .write_all(b"four")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    proxy.resume().await;
    let mut buf = [0u8; 4];
    again
        .read_exact(&mut buf)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(&buf, b"four");
    assert_eq!(proxy.accepted(), 2);
}
