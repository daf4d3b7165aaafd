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
    BufferLimits, CheckSource, HistoryTable, JobRun, Record, RunEnd, RunOutcome, SeriesFilter,
    Store, TrendQuery, new_run_id,
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
    // Whole milliseconds, as the store keeps them.
    let now =
        chrono::DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap_or_default();
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
    store
        .write(Record::Checks {
            ts: now,
            target: "demo".into(),
            run_id: Some(id.clone()),
            source: CheckSource::Health,
            results: (0..3)
                .map(|i| check("demo", &format!("c{i}"), Status::Warning, f64::from(i)))
                .collect(),
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
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
        .write(Record::Tables {
            ts: now,
            target: "demo".into(),
            stats: vec![orders()],
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
    // Three check values, connectivity, and the twelve `table.*` fields of one table.
    assert_eq!(store.count(HistoryTable::Samples).await.ok(), Some(16));
    assert_eq!(store.count(HistoryTable::Series).await.ok(), Some(16));
    assert_eq!(
        store.count(HistoryTable::TableStatsLatest).await.ok(),
        Some(1)
    );
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
    assert!(
        series.iter().any(|s| s.metric == "table.dead_rows"
            && s.label.as_deref() == Some("public.orders")
            && s.unit == "count"),
        "{series:?}"
    );
    assert!(
        series
            .iter()
            .any(|s| s.metric == "c1" && s.unit == "milliseconds"),
        "{series:?}"
    );

    // Many records are batched and all committed: one period, one sample per change.
    for i in 0..5000 {
        store
            .write(Record::Checks {
                ts: now + chrono::Duration::milliseconds(i64::from(i)),
                target: "bulk".into(),
                run_id: None,
                source: CheckSource::Health,
                results: vec![check("bulk", "c", Status::Ok, f64::from(i / 2))],
            })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    store.flush().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        store.count(HistoryTable::Samples).await.ok(),
        Some(16 + 2500)
    );
    assert_eq!(store.count(HistoryTable::CheckPeriods).await.ok(), Some(4));
    let raw = store
        .raw_samples(
            &SeriesFilter {
                target: Some("bulk".into()),
                ..SeriesFilter::default()
            },
            now + chrono::Duration::milliseconds(1),
            now + chrono::Duration::seconds(10),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(raw.len(), 1);
    let steps = &raw[0].steps;
    assert_eq!(
        steps.len(),
        2500,
        "the value before the range holds into it"
    );
    assert_eq!(
        (steps[0].from, steps[0].to, steps[0].value),
        (
            now + chrono::Duration::milliseconds(1),
            now + chrono::Duration::milliseconds(2),
            0.0
        )
    );
    let last = &steps[2499];
    assert_eq!(
        (last.to - last.from, last.value),
        (chrono::Duration::milliseconds(1), 2499.0),
        "the newest value holds until last_ts"
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

/// A round of one check result, value `i` at `i` seconds after a fixed time (so each
/// record of a target writes one sample).
fn result(target: &str, i: usize) -> Record {
    Record::Checks {
        ts: t0() + chrono::Duration::seconds(i as i64),
        target: target.into(),
        run_id: Some("round".into()),
        source: CheckSource::Health,
        results: vec![check(target, "connectivity", Status::Ok, i as f64)],
    }
}

fn t0() -> chrono::DateTime<Utc> {
    chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default()
}

fn metric(i: usize) -> Record {
    Record::Metric {
        ts: t0() + chrono::Duration::seconds(i as i64),
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
    assert_eq!(count(&store, HistoryTable::Samples).await, 100);
    let path = dir.path().join("history.db");
    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let oldest: f64 = sqlx::query_scalar("SELECT min(value) FROM samples")
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
    // One sample per written round (each changes the value), one period.
    assert_eq!(count(&store, HistoryTable::Samples).await, 110);
    assert_eq!(count(&store, HistoryTable::CheckPeriods).await, 1);
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
    let bad = Record::Checks {
        ts: t0() + chrono::Duration::seconds(75),
        target: "demo".into(),
        run_id: None,
        source: CheckSource::Sample,
        results: vec![nul],
    };
    bad_records_do_not_sink_their_batch(store, vec![bad]).await;
    db.drop_db().await;
}

/// The statement another agent of a fleet would have left: a newer transition of target
/// `a`, which this agent must not restore.
/// Runs `sql` on a connection of its own to the SQLite store at `url`: what another agent
/// sharing the store would have written.
async fn sqlite_exec(url: &SecretUrl, sql: String) {
    let mut c = sqlx::SqliteConnection::connect(url.expose())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&mut c)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

/// [`sqlite_exec`] for the PostgreSQL store `db`.
async fn pg_exec(db: &PgDb, sql: String) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&mut db.connect().await)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

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
    let foreign = sqlite_exec(&url, FOREIGN_TRANSITION.into());
    believed_states_are_the_newest_transitions(store, foreign).await;
}

#[tokio::test]
async fn postgres_believed_states() {
    let Some(admin) = pg_url() else { return };
    let db = PgDb::create(&admin).await;
    let store = start(&SecretUrl::new(db.url.clone()), BufferLimits::default()).await;
    let foreign = pg_exec(&db, FOREIGN_TRANSITION.into());
    believed_states_are_the_newest_transitions(store, foreign).await;
    db.drop_db().await;
}

/// Another agent's series of target `shared` (it shares the store): `connectivity` at
/// 7.0 over the last half hour.
fn foreign_series(now_ms: i64) -> String {
    format!(
        "INSERT INTO series (id, agent, target, metric, label, unit, last_ts) \
         VALUES (9001, 'another-agent', 'shared', 'connectivity', '', 'ms', {now_ms}); \
         INSERT INTO samples (series_id, ts, value) VALUES (9001, {}, 7.0)",
        now_ms - 1_800_000
    )
}

/// Two agents' series of one target and metric: both listed, and each agent's trend is
/// its own values (the plain trend shows only one of them).
async fn each_agents_series_reads_apart(
    store: Store,
    foreign: impl std::future::Future<Output = ()>,
) {
    let now =
        chrono::DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap_or_default();
    store.push(Record::Metric {
        ts: now - chrono::Duration::minutes(20),
        target: "shared".into(),
        metric: "connectivity".into(),
        value: 3.0,
    });
    store.flush().await.unwrap_or_else(|e| panic!("{e}"));
    foreign.await;
    let me = dbwarden::store::agent_name();
    let mut want = vec![
        ("connectivity".to_string(), me.clone()),
        ("connectivity".to_string(), "another-agent".to_string()),
    ];
    want.sort();
    let got = store
        .series_agents("shared")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(got, want);
    // The agents sharing the store (the dashboard's overview lists them).
    let agents = store.agents().await.unwrap_or_else(|e| panic!("{e}"));
    let mut names: Vec<&str> = agents.iter().map(|a| a.agent.as_str()).collect();
    names.sort();
    let mut want_names = vec![me.as_str(), "another-agent"];
    want_names.sort();
    assert_eq!(names, want_names, "{agents:?}");
    let other = agents.iter().find(|a| a.agent == "another-agent");
    assert_eq!(other.map(|a| a.targets), Some(1), "{agents:?}");
    assert!(
        other
            .and_then(|a| a.last_write)
            .is_some_and(|t| (now - t).num_seconds().abs() < 60),
        "{agents:?}"
    );
    let q = TrendQuery {
        target: "shared".into(),
        metric: "connectivity".into(),
        label: None,
        from: now - chrono::Duration::hours(1),
        to: now,
        step: Some(Duration::from_secs(300)),
    };
    for (agent, value) in [(me.as_str(), 3.0), ("another-agent", 7.0)] {
        let t = store
            .trend_of(&q, Some(agent))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let values: Vec<f64> = t.points.iter().filter_map(|p| p.avg).collect();
        assert!(
            !values.is_empty() && values.iter().all(|v| *v == value),
            "{agent}: {values:?}"
        );
    }
    store.close(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn sqlite_each_agents_series_reads_apart() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let url = sqlite_url(dir.path());
    let store = start(&url, BufferLimits::default()).await;
    let foreign = sqlite_exec(&url, foreign_series(Utc::now().timestamp_millis()));
    each_agents_series_reads_apart(store, foreign).await;
}

#[tokio::test]
async fn postgres_each_agents_series_reads_apart() {
    let Some(admin) = pg_url() else { return };
    let db = PgDb::create(&admin).await;
    let store = start(&SecretUrl::new(db.url.clone()), BufferLimits::default()).await;
    let foreign = pg_exec(&db, foreign_series(Utc::now().timestamp_millis()));
    each_agents_series_reads_apart(store, foreign).await;
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
    assert_eq!(count(&store, HistoryTable::Samples).await, 31 * 25);
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
    assert_eq!(count(&store, HistoryTable::Samples).await, 10);
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
            let mut r = result("demo", pushed as usize + i);
            if let Record::Checks { results, .. } = &mut r {
                results[0].message = "x".repeat(2000);
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
            "INSERT INTO samples (series_id, ts, value) \
             SELECT 0, COALESCE(max(ts), 0) + 1, 1 FROM samples WHERE series_id = 0",
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
    // Every written round changed the value: one step each.
    let raw = raw_of(&store, "demo", None, None).await;
    assert_eq!(
        raw.iter().map(|s| s.steps.len() as u64).sum::<u64>(),
        h.written_total
    );

    // No lingering write lock: another connection, and another process, can write.
    other_write()
        .await
        .unwrap_or_else(|e| panic!("another connection cannot write: {e}"));
    match std::process::Command::new("sqlite3")
        .arg(&path)
        .arg(".timeout 2000")
        .arg("INSERT INTO samples (series_id, ts, value) VALUES (-1, 0, 1);")
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

// ---- Store on change, and the upgrade from the 0007 schema ----

fn round(secs: i64, results: Vec<CheckResult>) -> Record {
    Record::Checks {
        ts: t0() + chrono::Duration::seconds(secs),
        target: "pg".into(),
        run_id: Some(format!("run-{secs}")),
        source: CheckSource::Health,
        results,
    }
}

/// The series of `target` (of one metric and label, if given) over a day either side of
/// t0.
async fn raw_of(
    store: &Store,
    target: &str,
    metric: Option<&str>,
    label: Option<&str>,
) -> Vec<dbwarden::store::RawSeries> {
    store
        .raw_samples(
            &SeriesFilter {
                target: Some(target.into()),
                metric: metric.map(String::from),
                label: label.map(String::from),
                agent: None,
            },
            t0() - chrono::Duration::days(1),
            t0() + chrono::Duration::days(1),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The step function of target `pg`'s series `metric` (with `label`, if any): (from, to,
/// value) in milliseconds after t0.
async fn steps_of(store: &Store, metric: &str, label: Option<&str>) -> Vec<(i64, i64, f64)> {
    raw_of(store, "pg", Some(metric), label)
        .await
        .iter()
        .flat_map(|s| s.steps.iter())
        .map(|s| {
            (
                (s.from - t0()).num_milliseconds(),
                (s.to - t0()).num_milliseconds(),
                s.value,
            )
        })
        .collect()
}

/// Rounds through the real writer: unchanged values write nothing but `last_ts`, a series
/// a round no longer reports gets "no data", periods extend, and after a restart the
/// first write closes the gap. `reopen` gives a fresh Store on the same history.
async fn store_on_change<F, Fut>(store: Store, reopen: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Store>,
{
    let c = |name: &str, status, v| check("pg", name, status, v);
    for (secs, lat, conns) in [
        (0, 1.0, 5.0),
        (30, 1.0, 5.0),
        (60, 1.0, 6.0),
        (90, 1.0, 6.0),
    ] {
        store.push(round(
            secs,
            vec![
                c("connectivity", Status::Ok, lat),
                c("connections", Status::Ok, conns),
            ],
        ));
    }
    // connections is no longer reported; connectivity turns WARNING.
    store.push(round(120, vec![c("connectivity", Status::Warning, 300.0)]));
    store.flush().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        steps_of(&store, "connectivity", None).await,
        vec![(0, 120_000, 1.0), (120_000, 120_000, 300.0)],
        "one sample per change"
    );
    // 5.0 from 0 to 60 s, 6.0 from 60 s to the NULL at 120 s.
    assert_eq!(
        steps_of(&store, "connections", None).await,
        vec![(0, 60_000, 5.0), (60_000, 120_000, 6.0)]
    );
    assert_eq!(
        count(&store, HistoryTable::Samples).await,
        5,
        "2 + 2 + a NULL"
    );
    let latest = store
        .recent_checks("pg", 10)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let conn = latest.iter().find(|r| r.check == "connectivity");
    assert_eq!(conn.map(|r| r.status.as_str()), Some("WARNING"));
    assert_eq!(count(&store, HistoryTable::CheckPeriods).await, 3);
    store.close(Duration::from_secs(5)).await;

    // A restart: the same value again after five minutes is not "held all along".
    let store = reopen().await;
    store.push(round(420, vec![c("connectivity", Status::Warning, 300.0)]));
    store.push(round(450, vec![c("connectivity", Status::Warning, 300.0)]));
    store.flush().await.unwrap_or_else(|e| panic!("{e}"));
    let steps = steps_of(&store, "connectivity", None).await;
    assert_eq!(
        steps,
        vec![
            (0, 120_000, 1.0),
            (120_000, 120_001, 300.0),
            (420_000, 450_000, 300.0)
        ]
    );
    // The restart opened a new WARNING period (not watched in between).
    assert_eq!(count(&store, HistoryTable::CheckPeriods).await, 4);
    let series = store
        .series_of("pg")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        series.iter().map(|s| s.metric.as_str()).collect::<Vec<_>>(),
        vec!["connections", "connectivity"]
    );
    store.close(Duration::from_secs(5)).await;
}

/// A SQLite store's `PRAGMA auto_vacuum` (2: incremental).
async fn auto_vacuum(url: &SecretUrl) -> i64 {
    let mut c = sqlx::SqliteConnection::connect(url.expose())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    sqlx::query_scalar("PRAGMA auto_vacuum")
        .fetch_one(&mut c)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn sqlite_store_on_change() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let url = sqlite_url(dir.path());
    let store = start(&url, BufferLimits::default()).await;
    store_on_change(store, || start(&url, BufferLimits::default())).await;
    // A new store is created with incremental auto_vacuum.
    let mode = auto_vacuum(&url).await;
    assert_eq!(mode, 2, "INCREMENTAL");
}

#[tokio::test]
async fn postgres_store_on_change() {
    let Some(admin) = pg_url() else { return };
    let db = PgDb::create(&admin).await;
    let url = SecretUrl::new(db.url.clone());
    let store = start(&url, BufferLimits::default()).await;
    store_on_change(store, || start(&url, BufferLimits::default())).await;
    db.drop_db().await;
}

/// What today's (0007) writer stored for a PostgreSQL target: two health rounds of job
/// runs, check results (connectivity OK, OK, WARNING, OK), their metric samples, and
/// table statistics of two rounds; written with the 0007 writer's statements.
const OLD_HISTORY: &[&str] = &[
    "INSERT INTO job_runs (id, job, kind, target, agent, scheduled_at, started_at, finished_at, outcome, status, error, coalesced) VALUES \
     ('r1', 'health', 'health', 'pg', 'host-a', 1800000000000, 1800000000000, 1800000000500, 'ok', 'OK', NULL, 0), \
     ('r4', 'health', 'health', 'pg', 'host-a', 1800000090000, 1800000090000, 1800000090500, 'ok', 'OK', NULL, 0)",
    "INSERT INTO check_results (ts, target, check_name, status, value, unit, warning, critical, message, subject, run_id) VALUES \
     (1800000000000, 'pg', 'connectivity', 'OK', 1.5, 'milliseconds', 250, 1000, 'm0', NULL, 'r1'), \
     (1800000000000, 'pg', 'sqlite_quick_check', 'OK', NULL, 'none', NULL, NULL, 'ok', NULL, 'r1'), \
     (1800000030000, 'pg', 'connectivity', 'OK', 1.5, 'milliseconds', 250, 1000, 'm1', NULL, 'r2'), \
     (1800000060000, 'pg', 'connectivity', 'WARNING', 300, 'milliseconds', 250, 1000, 'slow', 'x', 'r3'), \
     (1800000090000, 'pg', 'connectivity', 'OK', 2, 'milliseconds', 250, 1000, 'm3', NULL, 'r4')",
    "INSERT INTO metric_samples (ts, target, metric, value) VALUES \
     (1800000000000, 'pg', 'connectivity', 1.5), (1800000030000, 'pg', 'connectivity', 1.5), \
     (1800000060000, 'pg', 'connectivity', 300), (1800000090000, 'pg', 'connectivity', 2)",
    "INSERT INTO table_stats (ts, target, table_name, n_rows, dead_rows, size_bytes, inserts_delta, updates_delta, deletes_delta, seq_scans, idx_scans, last_vacuum, last_analyze, free_bytes, last_modified) VALUES \
     (1800000000000, 'pg', 'public.orders', 10, 1, 8192, NULL, NULL, NULL, 6, 7, 1700000000, 1700000001, NULL, NULL), \
     (1800000090000, 'pg', 'public.orders', 10, 2, 8192, 3, 4, 5, 6, 7, 1700000000, 1700000001, 4096, 1700000002)",
];

/// The history written at 0007 answers the same questions after 0008.
async fn upgraded_history_survives(store: Store) {
    let stats = store
        .latest_table_stats("pg")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stats.len(), 1);
    assert_eq!(stats[0].0, t0() + chrono::Duration::seconds(90));
    assert_eq!(stats[0].1, orders());
    let latest = store
        .recent_checks("pg", 10)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<(&str, &str)> = latest
        .iter()
        .map(|r| (r.check.as_str(), r.status.as_str()))
        .collect();
    assert_eq!(
        names,
        vec![("connectivity", "OK"), ("sqlite_quick_check", "OK")]
    );
    // Values: 1.5 (twice, stored once), 300, 2.
    let raw = raw_of(&store, "pg", Some("connectivity"), None).await;
    assert_eq!(raw.len(), 1);
    assert_eq!(
        (raw[0].agent.as_str(), raw[0].unit.as_str()),
        ("host-a", "milliseconds")
    );
    assert_eq!(
        steps_of(&store, "connectivity", None).await,
        vec![
            (0, 60_000, 1.5),
            (60_000, 90_000, 300.0),
            (90_000, 90_000, 2.0)
        ]
    );
    let dead = steps_of(&store, "table.dead_rows", Some("public.orders")).await;
    assert_eq!(dead.iter().map(|s| s.2).collect::<Vec<_>>(), vec![1.0, 2.0]);
    // Periods: OK (2 rounds), WARNING, OK; and the quick check's one.
    assert_eq!(count(&store, HistoryTable::CheckPeriods).await, 4);
    assert_eq!(count(&store, HistoryTable::JobRuns).await, 2);
    // New rounds continue the migrated series (same agent when it is this host).
    store.close(Duration::from_secs(5)).await;
}

/// Brings `pool`'s store to migration 0007 and writes [`OLD_HISTORY`] into it.
macro_rules! at_0007 {
    ($pool:expr, $migrations:literal) => {
        sqlx::migrate!($migrations)
            .run_to(7, &$pool)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        for sql in OLD_HISTORY {
            sqlx::query(sqlx::AssertSqlSafe(*sql))
                .execute(&$pool)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
    };
}

#[tokio::test]
async fn sqlite_upgrade_from_0007_keeps_the_history() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let url = sqlite_url(dir.path());
    let opts = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(dir.path().join("history.db"))
        .create_if_missing(true);
    let pool = sqlx::SqlitePool::connect_with(opts)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    at_0007!(pool, "./migrations/sqlite");
    let mode: i64 = sqlx::query_scalar("PRAGMA auto_vacuum")
        .fetch_one(&pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(mode, 0, "a 0007 store was made without auto_vacuum");
    pool.close().await;
    let store = Store::open(&url, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    upgraded_history_survives(store).await;
    let mode = auto_vacuum(&url).await;
    assert_eq!(mode, 2, "converted to incremental once");
}

#[tokio::test]
async fn postgres_upgrade_from_0007_keeps_the_history() {
    let Some(admin) = pg_url() else { return };
    let db = PgDb::create(&admin).await;
    let pool = sqlx::PgPool::connect(&db.url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    at_0007!(pool, "./migrations/postgres");
    pool.close().await;
    let store = Store::open(&SecretUrl::new(db.url.clone()), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    upgraded_history_survives(store).await;
    db.drop_db().await;
}
