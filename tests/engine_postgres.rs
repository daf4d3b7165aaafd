//! The PostgreSQL engine against a real server. Each test creates its own database (and
//! roles) and drops them afterwards, provokes one condition for real and checks that the
//! right check turns WARNING/CRITICAL with the offender named.
//!
//! Needs `DBWARDEN_TEST_PG_URL` (a superuser, e.g. postgres://postgres@127.0.0.1:5432/test);
//! without it every test prints "skipping" and passes, unless DBWARDEN_REQUIRE_SERVICES=1.
//! The healthy-database test also runs on PostgreSQL 17 (`DBWARDEN_TEST_PG17_URL`).
//! The tests of archiving, prepared transactions and replication need a primary and its
//! standby as well (`DBWARDEN_TEST_PG_PRIMARY_URL`, `DBWARDEN_TEST_PG_STANDBY_URL`, which
//! `.ci/run` starts): see "A real primary and its standby" below.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dbwarden::config::{Config, Target};
use dbwarden::engine::{Engine, HealthOptions, HealthReport, RunScope};
use dbwarden::health::{CheckResult, Status};
use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Connection, Executor};

use common::harness::{
    self, RELAXED_DISK, connect, engine, exec, find, judge, round_in, scalar_i32, show, unique,
};

// ---------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------

fn base_url() -> Option<url::Url> {
    match std::env::var("DBWARDEN_TEST_PG_URL") {
        Ok(u) if !u.trim().is_empty() => match url::Url::parse(u.trim()) {
            Ok(u) => Some(u),
            Err(e) => panic!("DBWARDEN_TEST_PG_URL is not a URL: {e}"),
        },
        _ => {
            if std::env::var("DBWARDEN_REQUIRE_SERVICES").as_deref() == Ok("1") {
                panic!("DBWARDEN_TEST_PG_URL not set, but DBWARDEN_REQUIRE_SERVICES=1");
            }
            eprintln!("skipping: DBWARDEN_TEST_PG_URL not set");
            None
        }
    }
}

/// A database (and roles) of one test, dropped when the value goes out of scope, even
/// when the test panics.
struct TestDb {
    base: url::Url,
    name: String,
    roles: Mutex<Vec<String>>,
}

impl TestDb {
    async fn create(base: &url::Url) -> TestDb {
        let name = unique("dbw_t");
        let mut admin = connect(base.as_str()).await;
        exec(&mut admin, &format!("CREATE DATABASE {name}")).await;
        let _ = admin.close().await;
        TestDb {
            base: base.clone(),
            name,
            roles: Mutex::new(Vec::new()),
        }
    }

    /// The test database's URL, as `user` (default: the base URL's user).
    fn url_as(&self, user: Option<&str>) -> String {
        let mut u = self.base.clone();
        u.set_path(&format!("/{}", self.name));
        if let Some(user) = user {
            let _ = u.set_username(user);
            let _ = u.set_password(None);
        }
        u.to_string()
    }

    fn url(&self) -> String {
        self.url_as(None)
    }

    async fn conn(&self) -> PgConnection {
        connect(&self.url()).await
    }

    async fn conn_as(&self, user: &str) -> PgConnection {
        connect(&self.url_as(Some(user))).await
    }

    /// A login role (no password: the test server trusts local connections).
    async fn role(&self, extra: &str) -> String {
        let role = unique("dbw_t_role");
        let mut c = self.conn().await;
        exec(&mut c, &format!("CREATE ROLE {role} LOGIN {extra}")).await;
        if let Ok(mut roles) = self.roles.lock() {
            roles.push(role.clone());
        }
        role
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let base = self.base.to_string();
        let name = self.name.clone();
        let roles = self.roles.lock().map(|r| r.clone()).unwrap_or_default();
        // Async drop does not exist: clean up on a thread with its own runtime.
        let cleanup = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let Ok(mut c) = PgConnection::connect(&base).await else {
                    return;
                };
                let _ = c
                    .execute(AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .await;
                for r in roles {
                    let _ = c
                        .execute(AssertSqlSafe(format!("DROP ROLE IF EXISTS {r}")))
                        .await;
                }
                let _ = c.close().await;
            });
        });
        let _ = cleanup.join();
    }
}

/// One round as the daemon runs it, reporting table statistics.
async fn run_round(e: &Engine, t: &Target) -> HealthReport {
    run_round_in(e, t, &RunScope::default()).await
}

/// [`run_round`] as the run of `scope`.
async fn run_round_in(e: &Engine, t: &Target, scope: &RunScope) -> HealthReport {
    round_in(e, t, true, scope).await
}

/// A config of `targets` plus a health job. `settings` is off: the shared test server runs
/// with autovacuum off, which that check reports (tests/pg_checks_new.rs tests it).
fn config(targets: &str) -> (tempfile::TempDir, Config) {
    harness::config(
        &format!("{RELAXED_DISK}\nsettings = {{ enabled = false }}"),
        targets,
    )
}

/// A target named "pg" for `url`; `extra` is appended inside its `[[target]]` table.
fn target(url: &str, extra: &str) -> (tempfile::TempDir, Target) {
    let (dir, config) = config(&format!(
        r#"[[target]]
name = "pg"
url = "{url}"
pool = {{ max_connections = 2, connect_timeout = "2s", acquire_timeout = "2s" }}
{extra}"#
    ));
    let Some(t) = config.target("pg").cloned() else {
        panic!("target pg missing")
    };
    (dir, t)
}

/// The backend pids the engine's rounds used.
fn pids(e: &Engine) -> Vec<i32> {
    match e {
        Engine::Postgres(p) => p.backend_pids(),
        _ => panic!("not a PostgreSQL engine"),
    }
}

/// Runs rounds until `check` is no longer OK (statistics reach the views with a delay of up
/// to a second), at most ~10 s.
async fn until_not_ok(e: &Engine, t: &Target, check: &str) -> Vec<CheckResult> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let results = judge(t, &run_round(e, t).await);
        if find(&results, check).status != Status::Ok || Instant::now() > deadline {
            return results;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn healthy_database_is_ok_from_the_first_round() {
    if let Some(base) = base_url() {
        healthy_database(&base).await;
    }
}

/// The same on PostgreSQL 17 (`DBWARDEN_TEST_PG17_URL`): every check's SQL as chosen for
/// 17 (`pg_stat_checkpointer`, the slot columns new in 16 and 17) on a real server.
#[tokio::test]
async fn pg17_healthy_database_is_ok_from_the_first_round() {
    if let Some(url) = common::pg::pg17_url().await {
        healthy_database(&url::Url::parse(&url).unwrap_or_else(|e| panic!("{url}: {e}"))).await;
    }
}

/// Every enabled check answers once, all OK, on a fresh database of the server at `base`.
async fn healthy_database(base: &url::Url) {
    let db = TestDb::create(base).await;
    let mut c = db.conn().await;
    exec(
        &mut c,
        "CREATE TABLE small (id int PRIMARY KEY, v text);
         INSERT INTO small SELECT g, 'x' || g FROM generate_series(1, 500) g;
         ANALYZE small;",
    )
    .await;
    let _ = c.close().await;

    let (_dir, t) = target(&db.url(), "");
    let e = engine(&t);
    let report = run_round(&e, &t).await;
    let results = judge(&t, &report);
    eprintln!("first round:\n{}", show(&results));
    assert_eq!(report.measurements[0].check, "connectivity");
    let not_ok: Vec<&CheckResult> = results.iter().filter(|r| r.status != Status::Ok).collect();
    assert!(
        not_ok.is_empty(),
        "not OK on a healthy database:\n{}",
        show(&results)
    );
    for delta in ["cache_hit", "deadlocks", "temp_files"] {
        assert!(
            find(&results, delta).message.contains("baseline pending"),
            "{}",
            show(&results)
        );
    }
    // Every enabled PostgreSQL check answered, exactly once.
    for name in dbwarden::engine::postgres::CHECKS
        .iter()
        .filter(|s| t.thresholds_for(s).enabled)
        .map(|s| &s.name)
    {
        assert_eq!(
            results.iter().filter(|r| r.check == *name).count(),
            1,
            "{name}"
        );
    }
    let Some(server_id) = &report.server_id else {
        panic!("no server id")
    };
    // system identifier @ postmaster start (µs): a primary and its standbys differ.
    let parts = server_id.split_once('@');
    assert!(
        parts.is_some_and(
            |(sys, started)| sys.parse::<u64>().is_ok() && started.parse::<i64>().is_ok()
        ),
        "server id: {server_id}"
    );
    assert!(
        matches!(&find(&results, "connections").scope, dbwarden::health::Scope::Server(id) if id == server_id)
    );
    assert_eq!(
        find(&results, "dead_tuples").scope,
        dbwarden::health::Scope::Database
    );
    let Some(small) = report
        .table_stats
        .iter()
        .find(|s| s.table == "public.small")
    else {
        panic!("no table stats for public.small: {:?}", report.table_stats)
    };
    assert_eq!(small.rows, Some(500.0));
    assert!(small.size_bytes.is_some_and(|s| s > 0.0));
    assert!(small.last_analyze.is_some());
    assert_eq!(small.inserts_delta, None);

    // Second round: deltas exist now, still OK; table deltas start.
    let report = run_round(&e, &t).await;
    let results = judge(&t, &report);
    assert!(
        results.iter().all(|r| r.status == Status::Ok),
        "{}",
        show(&results)
    );
    assert!(
        !find(&results, "deadlocks")
            .message
            .contains("baseline pending")
    );
    let Some(small) = report
        .table_stats
        .iter()
        .find(|s| s.table == "public.small")
    else {
        panic!("no table stats")
    };
    assert_eq!(small.inserts_delta, Some(0.0));
    // The engine's connections are known (cancel_running) and stay within the pool.
    let pids = pids(&e);
    assert!(!pids.is_empty() && pids.len() <= 2, "{pids:?}");
    e.close(Duration::from_secs(5)).await;
}

/// Two targets that are databases of one server: from the second round on, only the first
/// runs the server-level probes; the other reports them as measured by the first, and
/// still measures its own database.
#[tokio::test]
async fn server_level_checks_run_once_per_server() {
    let Some(base) = base_url() else { return };
    let (db_a, db_b) = (TestDb::create(&base).await, TestDb::create(&base).await);
    let (_dir, config) = config(&format!(
        "[[target]]\nname = \"a\"\nurl = \"{}\"\n\n[[target]]\nname = \"b\"\nurl = \"{}\"",
        db_a.url(),
        db_b.url()
    ));
    let (Some(a), Some(b)) = (config.target("a"), config.target("b")) else {
        panic!("targets missing")
    };
    let engines = dbwarden::jobs::Engines::default();
    let facts = dbwarden::jobs::ServerFacts::default();
    let opts = HealthOptions::default();
    // First round, one after the other: a owns the server.
    let a1 = dbwarden::jobs::health_round(&engines, a, &facts, &opts).await;
    let b1 = dbwarden::jobs::health_round(&engines, b, &facts, &opts).await;
    assert!(a1.report.server_checks.contains(&"connections"));
    assert_eq!(a1.report.server_id, b1.report.server_id);
    assert!(
        find(&b1.checks, "connections")
            .message
            .contains("measured by target a"),
        "{}",
        show(&b1.checks)
    );
    // Second round: b's engine skips the server-level probes altogether.
    let b2 = dbwarden::jobs::health_round(&engines, b, &facts, &opts).await;
    assert!(
        b2.report.server_checks.is_empty(),
        "b measured server checks: {:?}",
        b2.report.server_checks
    );
    for check in [
        "connections",
        "wraparound",
        "replication_lag",
        "replication_slots",
        "xmin_horizon",
        "disk_space",
    ] {
        let r = find(&b2.checks, check);
        assert_eq!(r.status, Status::Ok, "{check}");
        assert_eq!(r.value, None, "{check}");
        assert!(
            r.message.contains("measured by target a"),
            "{check}: {}",
            r.message
        );
    }
    // Its database's own checks are measured as usual.
    assert!(find(&b2.checks, "connectivity").value.is_some());
    for check in [
        "connection_limit",
        "long_query",
        "idle_in_transaction",
        "dead_tuples",
    ] {
        let r = find(&b2.checks, check);
        assert!(!r.message.contains("measured by"), "{check}: {}", r.message);
    }
    let a2 = dbwarden::jobs::health_round(&engines, a, &facts, &opts).await;
    assert!(a2.report.server_checks.contains(&"connections"));
    assert!(find(&a2.checks, "connections").value.is_some());
    assert_eq!(b2.status, Status::Ok, "{}", show(&b2.checks));
    engines.close_all(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn dead_tuples_name_the_table() {
    let Some(base) = base_url() else { return };
    let db = TestDb::create(&base).await;
    let mut c = db.conn().await;
    exec(
        &mut c,
        "CREATE TABLE orders (id int PRIMARY KEY, v int) WITH (autovacuum_enabled = false);
         INSERT INTO orders SELECT g, 0 FROM generate_series(1, 20000) g;
         UPDATE orders SET v = 1;",
    )
    .await;
    // A backend flushes its statistics when it exits.
    let _ = c.close().await;

    let (_dir, t) = target(&db.url(), "");
    let e = engine(&t);
    let results = until_not_ok(&e, &t, "dead_tuples").await;
    let r = find(&results, "dead_tuples");
    assert_eq!(r.status, Status::Critical, "{}", show(&results));
    assert!(
        r.message
            .starts_with("table public.orders: 50% dead tuples (20000 dead of 40000 rows"),
        "{}",
        r.message
    );
    assert!(
        r.message.contains("autovacuum disabled on this table"),
        "{}",
        r.message
    );
    assert!(
        r.message.contains("(warning ≥ 20%, critical ≥ 40%)"),
        "{}",
        r.message
    );
    assert_eq!(r.subject.as_deref(), Some("table public.orders"));
    e.close(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn idle_transaction_is_named_with_pid_and_query() {
    let Some(base) = base_url() else { return };
    let db = TestDb::create(&base).await;
    let mut idle = db.conn().await;
    exec(
        &mut idle,
        "CREATE TABLE t (id int PRIMARY KEY, secret text)",
    )
    .await;
    let pid = scalar_i32(&mut idle, "SELECT pg_backend_pid()").await;
    exec(&mut idle, "BEGIN").await;
    exec(&mut idle, "INSERT INTO t VALUES (1, 'hunter2')").await;

    let (_dir, t) = target(
        &db.url(),
        r#"thresholds = { idle_in_transaction = { warning = "1s", critical = "1h" } }"#,
    );
    let e = engine(&t);
    let results = until_not_ok(&e, &t, "idle_in_transaction").await;
    let r = find(&results, "idle_in_transaction");
    assert_eq!(r.status, Status::Warning, "{}", show(&results));
    assert!(
        r.message.starts_with(&format!("pid {pid}: ")),
        "{}",
        r.message
    );
    assert!(
        r.message.contains("idle in transaction (user "),
        "{}",
        r.message
    );
    assert!(
        r.message
            .contains("last query: INSERT INTO t VALUES (?, ?)"),
        "{}",
        r.message
    );
    assert!(!r.message.contains("hunter2"), "{}", r.message);
    exec(&mut idle, "ROLLBACK").await;
    e.close(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn blocked_session_names_the_blocker() {
    let Some(base) = base_url() else { return };
    let db = TestDb::create(&base).await;
    let mut holder = db.conn().await;
    exec(
        &mut holder,
        "CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t VALUES (1, 0);",
    )
    .await;
    let holder_pid = scalar_i32(&mut holder, "SELECT pg_backend_pid()").await;
    exec(&mut holder, "BEGIN").await;
    exec(&mut holder, "UPDATE t SET v = 1 WHERE id = 1").await;

    let mut waiter = db.conn().await;
    let waiter_pid = scalar_i32(&mut waiter, "SELECT pg_backend_pid()").await;
    let blocked = tokio::spawn(async move {
        let r = waiter.execute("UPDATE t SET v = 2 WHERE id = 1").await;
        (waiter, r.map(|_| ()))
    });

    let (_dir, t) = target(
        &db.url(),
        r#"thresholds = { blocked_sessions = { warning = "1s", critical = "1h" } }"#,
    );
    let e = engine(&t);
    let results = until_not_ok(&e, &t, "blocked_sessions").await;
    let r = find(&results, "blocked_sessions");
    assert_eq!(r.status, Status::Warning, "{}", show(&results));
    assert!(
        r.message.starts_with(&format!("pid {waiter_pid}: ")),
        "{}",
        r.message
    );
    assert!(
        r.message.contains(&format!("blocked by pid {holder_pid}")),
        "{}",
        r.message
    );
    assert!(
        r.message
            .contains("waiting: UPDATE t SET v = ? WHERE id = ?"),
        "{}",
        r.message
    );

    exec(&mut holder, "ROLLBACK").await;
    match tokio::time::timeout(Duration::from_secs(10), blocked).await {
        Ok(Ok((_, Ok(())))) => {}
        other => panic!("the blocked update did not finish: {other:?}"),
    }
    e.close(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn long_query_is_named_with_its_redacted_text() {
    let Some(base) = base_url() else { return };
    let db = TestDb::create(&base).await;
    let mut sleeper = db.conn().await;
    let pid = scalar_i32(&mut sleeper, "SELECT pg_backend_pid()").await;
    let sleeping = tokio::spawn(async move {
        let _ = sleeper.execute("SELECT pg_sleep(60)").await;
    });

    let (_dir, t) = target(
        &db.url(),
        r#"thresholds = { long_query = { warning = "1s", critical = "1h" } }"#,
    );
    let e = engine(&t);
    let results = until_not_ok(&e, &t, "long_query").await;
    let r = find(&results, "long_query");
    assert_eq!(r.status, Status::Warning, "{}", show(&results));
    assert!(
        r.message.starts_with(&format!("pid {pid}: ")),
        "{}",
        r.message
    );
    assert!(r.message.contains("running (user "), "{}", r.message);
    assert!(r.message.contains("SELECT pg_sleep(?)"), "{}", r.message);
    assert!(
        r.message.contains("(warning ≥ 1s, critical ≥ 60min)"),
        "{}",
        r.message
    );

    let mut admin = db.conn().await;
    exec(&mut admin, &format!("SELECT pg_cancel_backend({pid})")).await;
    let _ = tokio::time::timeout(Duration::from_secs(10), sleeping).await;
    e.close(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn connection_limit_nearly_used_is_critical() {
    let Some(base) = base_url() else { return };
    let db = TestDb::create(&base).await;
    let role = db.role("CONNECTION LIMIT 3").await;
    let (_dir, mut t) = target(
        &db.url_as(Some(&role)),
        r#"thresholds = { connections = { warning = "1%", critical = "99.9%" } }"#,
    );
    // One pooled connection, so the engine holds exactly one of the role's three.
    t.pool.max_connections = 1;
    let e = engine(&t);
    // Round 1 opens the engine's connection (1 of 3).
    let first = judge(&t, &run_round(&e, &t).await);
    assert_eq!(
        find(&first, "connectivity").status,
        Status::Ok,
        "{}",
        show(&first)
    );
    let mut others = Vec::new();
    for _ in 0..2 {
        others.push(db.conn_as(&role).await);
    }
    let results = judge(&t, &run_round(&e, &t).await);
    let r = find(&results, "connection_limit");
    assert_eq!(r.status, Status::Critical, "{}", show(&results));
    assert!(
        r.message.starts_with(&format!(
            "role {role}: 100% of the connection limit in use (3 of CONNECTION LIMIT 3)"
        )),
        "{}",
        r.message
    );
    // Server-wide usage against a deliberately low threshold.
    let r = find(&results, "connections");
    assert_eq!(r.status, Status::Warning, "{}", show(&results));
    assert!(
        r.message.contains("of usable connections in use ("),
        "{}",
        r.message
    );
    assert!(
        r.message.contains("usable: max_connections"),
        "{}",
        r.message
    );
    for c in others {
        let _ = c.close().await;
    }
    e.close(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn failed_concurrent_index_build_is_an_invalid_index() {
    let Some(base) = base_url() else { return };
    let db = TestDb::create(&base).await;
    let mut c = db.conn().await;
    exec(
        &mut c,
        "CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t VALUES (1, 7), (2, 7);",
    )
    .await;
    let failed = sqlx::raw_sql("CREATE UNIQUE INDEX CONCURRENTLY t_v_key ON t (v)")
        .execute(&mut c)
        .await;
    assert!(
        failed.is_err(),
        "the unique build on duplicate data must fail"
    );

    let (_dir, t) = target(&db.url(), "");
    let e = engine(&t);
    let results = judge(&t, &run_round(&e, &t).await);
    let r = find(&results, "invalid_indexes");
    assert_eq!(r.status, Status::Warning, "{}", show(&results));
    assert!(
        r.message
            .starts_with("index public.t_v_key: 1 invalid index(es) (on table public.t;"),
        "{}",
        r.message
    );
    e.close(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn unused_index_above_the_floor_is_named() {
    let Some(base) = base_url() else { return };
    let db = TestDb::create(&base).await;
    let mut c = db.conn().await;
    exec(
        &mut c,
        "CREATE TABLE t (id int PRIMARY KEY, v int);
         INSERT INTO t SELECT g, g % 100 FROM generate_series(1, 20000) g;
         CREATE INDEX t_v_idx ON t (v);
         CREATE INDEX t_tiny_idx ON t (id) WHERE id < 0;",
    )
    .await;
    let _ = c.close().await;

    let (_dir, t) = target(
        &db.url(),
        r#"thresholds = { unused_indexes = { warning = "64kB", min_size = "64kB" } }"#,
    );
    let e = engine(&t);
    let results = judge(&t, &run_round(&e, &t).await);
    let r = find(&results, "unused_indexes");
    assert_eq!(r.status, Status::Warning, "{}", show(&results));
    assert!(
        r.message.starts_with("index public.t_v_idx: "),
        "{}",
        r.message
    );
    assert!(
        r.message.contains("never scanned (on public.t"),
        "{}",
        r.message
    );
    // The primary key backs a constraint, and the tiny index is below the floor.
    assert!(!r.message.contains("t_pkey") && !r.message.contains("t_tiny_idx"));
    e.close(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn expensive_probes_are_reused_with_their_age() {
    let Some(base) = base_url() else { return };
    let db = TestDb::create(&base).await;
    let mut c = db.conn().await;
    exec(
        &mut c,
        "CREATE TABLE t (id int PRIMARY KEY, v int);
         INSERT INTO t SELECT g, g FROM generate_series(1, 20000) g;
         CREATE INDEX t_v_a ON t (v);
         CREATE INDEX t_v_b ON t (v);
         ANALYZE t;",
    )
    .await;

    let (_dir, t) = target(
        &db.url(),
        r#"thresholds = { duplicate_indexes = { warning = "8kB" }, bloat = { min_size = "8kB" } }"#,
    );
    let e = engine(&t);
    let first = judge(&t, &run_round(&e, &t).await);
    let r = find(&first, "duplicate_indexes");
    assert_eq!(r.status, Status::Warning, "{}", show(&first));
    assert!(
        r.message
            .contains("duplicate index (same definition as public.t_v_"),
        "{}",
        r.message
    );
    assert!(r.message.contains("found 0s ago"), "{}", r.message);
    assert!(
        find(&first, "bloat").message.contains("estimated 0s ago"),
        "{}",
        show(&first)
    );

    // Fixed on the server, but the analysis is not run again before its interval: the
    // old result is shown with its age.
    exec(&mut c, "DROP INDEX t_v_b").await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let second = judge(&t, &run_round(&e, &t).await);
    let r = find(&second, "duplicate_indexes");
    assert_eq!(r.status, Status::Warning, "{}", show(&second));
    assert!(!r.message.contains("found 0s ago"), "{}", r.message);
    assert!(r.message.contains("s ago"), "{}", r.message);
    e.close(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn down_target_is_critical_within_the_connect_timeout() {
    if base_url().is_none() {
        return;
    }
    let (_dir, mut t) = target("postgres://postgres@127.0.0.1:1/test", "");
    t.pool.connect_timeout = Duration::from_secs(1);
    t.pool.acquire_timeout = Duration::from_secs(1);
    let e = engine(&t);
    let started = Instant::now();
    let report = run_round(&e, &t).await;
    let took = started.elapsed();
    let results = judge(&t, &report);
    let r = find(&results, "connectivity");
    assert_eq!(r.status, Status::Critical, "{}", show(&results));
    assert_eq!(
        r.message,
        "connection refused at 127.0.0.1:1 — is the server running?"
    );
    assert!(took < Duration::from_secs(4), "took {took:?}");
    let others: Vec<&CheckResult> = results
        .iter()
        .filter(|r| r.check != "connectivity")
        .collect();
    assert!(!others.is_empty());
    assert!(
        others.iter().all(|r| r.status == Status::Unknown),
        "{}",
        show(&results)
    );
    // A second round (cold pool again) is just as quick.
    let started = Instant::now();
    let _ = run_round(&e, &t).await;
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[tokio::test]
async fn silent_server_times_out_within_the_connect_timeout() {
    if base_url().is_none() {
        return;
    }
    // Accepts TCP connections and never answers the startup message.
    let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
        Ok(l) => l,
        Err(e) => panic!("bind: {e}"),
    };
    let port = match listener.local_addr() {
        Ok(a) => a.port(),
        Err(e) => panic!("local_addr: {e}"),
    };
    let held = Arc::new(tokio::sync::Mutex::new(Vec::new()));
    let keep = held.clone();
    let accept = tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            keep.lock().await.push(s);
        }
    });
    let (_dir, mut t) = target(&format!("postgres://postgres@127.0.0.1:{port}/test"), "");
    t.pool.connect_timeout = Duration::from_secs(1);
    t.pool.acquire_timeout = Duration::from_secs(1);
    let e = engine(&t);
    let started = Instant::now();
    let results = judge(&t, &run_round(&e, &t).await);
    let took = started.elapsed();
    let r = find(&results, "connectivity");
    assert_eq!(r.status, Status::Critical, "{}", show(&results));
    assert!(
        r.message
            .starts_with(&format!("no answer from 127.0.0.1:{port} within 1s")),
        "{}",
        r.message
    );
    assert!(took < Duration::from_secs(4), "took {took:?}");
    accept.abort();
}

#[tokio::test]
async fn missing_database_and_role_are_named() {
    let Some(base) = base_url() else { return };
    let mut u = base.clone();
    u.set_path("/dbw_t_does_not_exist");
    let (_dir, t) = target(u.as_str(), "");
    let e = engine(&t);
    let results = judge(&t, &run_round(&e, &t).await);
    let r = find(&results, "connectivity");
    assert_eq!(r.status, Status::Critical);
    assert!(
        r.message
            .starts_with("database \"dbw_t_does_not_exist\" does not exist at "),
        "{}",
        r.message
    );

    let mut u = base.clone();
    let _ = u.set_username("dbw_t_no_such_role");
    let _ = u.set_password(Some("s3cret-pw"));
    let (_dir2, t) = target(u.as_str(), "");
    let e = engine(&t);
    let results = judge(&t, &run_round(&e, &t).await);
    let r = find(&results, "connectivity");
    assert_eq!(r.status, Status::Critical);
    assert!(r.message.contains("dbw_t_no_such_role"), "{}", r.message);
    assert!(!r.message.contains("s3cret-pw"), "{}", r.message);
}

#[tokio::test]
async fn locked_table_neither_fails_nor_stalls_the_round() {
    let Some(base) = base_url() else { return };
    let db = TestDb::create(&base).await;
    let mut locker = db.conn().await;
    exec(
        &mut locker,
        "CREATE TABLE t (id int PRIMARY KEY, v int);
         INSERT INTO t SELECT g, g FROM generate_series(1, 1000) g;
         ANALYZE t;",
    )
    .await;
    exec(&mut locker, "BEGIN").await;
    exec(&mut locker, "LOCK TABLE t IN ACCESS EXCLUSIVE MODE").await;

    // Small floors so the bloat estimate (first round) covers the locked table too.
    let (_dir, t) = target(
        &db.url(),
        r#"thresholds = { bloat = { min_size = "8kB" }, unused_indexes = { min_size = "0kB" } }"#,
    );
    let e = engine(&t);
    let started = Instant::now();
    let report = run_round(&e, &t).await;
    let took = started.elapsed();
    let results = judge(&t, &report);
    let failed: Vec<&CheckResult> = results
        .iter()
        .filter(|r| r.status == Status::Unknown || r.status == Status::Critical)
        .collect();
    assert!(failed.is_empty(), "{}", show(&results));
    // Well under lock_timeout (1 s): nothing waited for the lock.
    assert!(took < Duration::from_millis(900), "took {took:?}");
    assert!(report.table_stats.iter().any(|s| s.table == "public.t"));
    exec(&mut locker, "ROLLBACK").await;
    e.close(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn monitoring_roles_get_ok_or_unknown_with_the_grant() {
    let Some(base) = base_url() else { return };
    let db = TestDb::create(&base).await;
    let mut c = db.conn().await;
    exec(
        &mut c,
        "CREATE TABLE t (id int PRIMARY KEY, v text);
         INSERT INTO t SELECT g, repeat('x', 100) FROM generate_series(1, 5000) g;
         ANALYZE t;",
    )
    .await;
    let monitor = db.role("IN ROLE pg_monitor").await;
    let plain = db.role("").await;
    for (role, is_monitor) in [(monitor, true), (plain, false)] {
        let (_dir, t) = target(
            &db.url_as(Some(&role)),
            r#"thresholds = { bloat = { min_size = "8kB" } }"#,
        );
        let e = engine(&t);
        let results = judge(&t, &run_round(&e, &t).await);
        eprintln!("{role}:\n{}", show(&results));
        for r in &results {
            match r.status {
                Status::Ok => {}
                Status::Unknown => assert!(
                    r.message.contains("fix: GRANT"),
                    "{role}: UNKNOWN without the grant to run:\n{}",
                    show(&results)
                ),
                _ => panic!("{role}: unexpected status:\n{}", show(&results)),
            }
        }
        let long = find(&results, "long_query");
        if is_monitor {
            assert_eq!(long.status, Status::Ok, "{}", show(&results));
            // pg_stats hides columns of tables the role may not SELECT.
            let b = find(&results, "bloat");
            assert_eq!(b.status, Status::Unknown, "{}", show(&results));
            assert!(
                b.message.contains("GRANT pg_read_all_data"),
                "{}",
                b.message
            );
            assert_eq!(find(&results, "disk_space").status, Status::Ok);
        } else {
            assert_eq!(long.status, Status::Unknown, "{}", show(&results));
            assert!(
                long.message
                    .ends_with(&format!("fix: GRANT pg_monitor TO {role}")),
                "{}",
                long.message
            );
            let d = find(&results, "disk_space");
            assert!(d.message.contains("not visible from here"), "{}", d.message);
        }
        e.close(Duration::from_secs(5)).await;
    }
}

/// The engine's live backends, per pg_stat_activity.
async fn live_backends(admin: &mut PgConnection, e: &Engine) -> Vec<i32> {
    let pids = pids(e);
    match sqlx::query_scalar("SELECT pid FROM pg_stat_activity WHERE pid = ANY($1) ORDER BY pid")
        .bind(&pids)
        .fetch_all(admin)
        .await
    {
        Ok(p) => p,
        Err(err) => panic!("pg_stat_activity: {err}"),
    }
}

async fn terminate(admin: &mut PgConnection, pids: &[i32]) {
    let _: Vec<bool> =
        match sqlx::query_scalar("SELECT pg_terminate_backend(p, 5000) FROM unnest($1::int[]) p")
            .bind(pids)
            .fetch_all(admin)
            .await
        {
            Ok(v) => v,
            Err(err) => panic!("terminate: {err}"),
        };
}

/// Pooled connections are not pinged before use. A connection the server has closed (a
/// restart, idle_session_timeout, a DBA's pg_terminate_backend) must not cost a round:
/// it is replaced within the round, whichever of the two it was.
#[tokio::test]
async fn connections_closed_by_the_server_are_replaced_within_the_round() {
    let Some(base) = base_url() else { return };
    let db = TestDb::create(&base).await;
    let mut c = db.conn().await;
    exec(&mut c, "CREATE TABLE t (id int PRIMARY KEY); ANALYZE t;").await;
    let (_dir, t) = target(&db.url(), "");
    assert!(!t.pool.test_before_acquire, "the default pings no more");
    let e = engine(&t);
    let healthy = |results: &[CheckResult]| {
        assert!(
            results.iter().all(|r| r.status == Status::Ok),
            "{}",
            show(results)
        );
        assert!(find(results, "connectivity").value.is_some());
    };
    let first = run_round(&e, &t).await;
    healthy(&judge(&t, &first));
    let both = live_backends(&mut c, &e).await;
    assert_eq!(both.len(), 2, "{both:?}");

    terminate(&mut c, &both).await;
    let report = run_round(&e, &t).await;
    healthy(&judge(&t, &report));
    assert!(report.table_stats.iter().any(|s| s.table == "public.t"));

    // Only one of the two (the round's first or its second connection).
    for round in 0..2 {
        // Connections being closed still count against the pool for a moment, so a
        // round right after a loss may run on one connection; the next has two again.
        let mut live = live_backends(&mut c, &e).await;
        if live.len() < 2 {
            healthy(&judge(&t, &run_round(&e, &t).await));
            live = live_backends(&mut c, &e).await;
        }
        assert_eq!(live.len(), 2, "{live:?}");
        terminate(&mut c, &live[round..=round]).await;
        let report = run_round(&e, &t).await;
        healthy(&judge(&t, &report));
        assert!(report.table_stats.iter().any(|s| s.table == "public.t"));
    }
    e.close(Duration::from_secs(5)).await;
    let _ = c.close().await;
}

#[tokio::test]
async fn cancel_running_stops_a_waiting_probe() {
    let Some(base) = base_url() else { return };
    let db = TestDb::create(&base).await;
    let (_dir, t) = target(&db.url(), "");
    let e = Arc::new(engine(&t));

    // On a fresh connection, planning reads pg_constraint (foreign keys), and so do the
    // index probes; neither connection startup nor the cancel query does, so the round's
    // connections and the fresh one cancel_running opens are not held up by this lock.
    let mut locker = db.conn().await;
    exec(&mut locker, "BEGIN").await;
    exec(
        &mut locker,
        "LOCK TABLE pg_constraint IN ACCESS EXCLUSIVE MODE",
    )
    .await;
    let mut watcher = db.conn().await;
    let scope = RunScope::default();
    let round = {
        let (e, t, scope) = (e.clone(), t.clone(), scope.clone());
        tokio::spawn(async move { run_round_in(&e, &t, &scope).await })
    };
    // Whenever one of the round's backends waits for the lock, cancel the round's scope.
    let started = Instant::now();
    let mut cancels = 0;
    while !round.is_finished() && started.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let pids = pids(&e);
        let waiting: i64 = match sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1) AND wait_event_type = 'Lock'",
        )
        .bind(&pids)
        .fetch_one(&mut watcher)
        .await
        {
            Ok(n) => n,
            Err(err) => panic!("watch: {err}"),
        };
        if waiting > 0 {
            e.cancel(&scope).await;
            cancels += 1;
        }
    }
    let took = started.elapsed();
    let report = match round.await {
        Ok(r) => r,
        Err(err) => panic!("round panicked: {err}"),
    };
    exec(&mut locker, "ROLLBACK").await;
    let results = judge(&t, &report);
    assert!(cancels > 0, "{}", show(&results));
    let r = find(&results, "invalid_indexes");
    assert_eq!(r.status, Status::Unknown, "{}", show(&results));
    assert!(
        r.message.contains("the index probe was cancelled"),
        "{}",
        r.message
    );
    // Several statements wait for the lock in turn; each was cancelled well before
    // lock_timeout (1 s) would have ended its wait.
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    // Connectivity was measured before anything waited.
    assert_eq!(
        find(&results, "connectivity").status,
        Status::Ok,
        "{}",
        show(&results)
    );
    // A cancelled slow probe is retried on the next round, not kept for its interval.
    let results = judge(&t, &run_round(&e, &t).await);
    assert!(
        results.iter().all(|r| r.status == Status::Ok),
        "{}",
        show(&results)
    );
    e.close(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn inactive_slot_retaining_wal_is_named() {
    let Some(base) = base_url() else { return };
    let db = TestDb::create(&base).await;
    let slot = unique("dbw_t_slot");
    let mut c = db.conn().await;
    // A slot that reserves WAL at once and has no consumer, like a replica gone for good.
    exec(
        &mut c,
        &format!("SELECT pg_create_physical_replication_slot('{slot}', true)"),
    )
    .await;
    exec(
        &mut c,
        "CREATE TABLE t AS SELECT g, md5(g::text) FROM generate_series(1, 5000) g",
    )
    .await;
    let (_dir, t) = target(
        &db.url(),
        r#"thresholds = { replication_slots = { warning = "1kB", critical = "1TB" } }"#,
    );
    let e = engine(&t);
    let results = judge(&t, &run_round(&e, &t).await);
    let _ = c
        .execute(AssertSqlSafe(format!(
            "SELECT pg_drop_replication_slot('{slot}')"
        )))
        .await;
    let r = find(&results, "replication_slots");
    assert_eq!(r.status, Status::Warning, "{}", show(&results));
    assert!(
        r.message.contains(&format!("slot '{slot}': ")),
        "{}",
        r.message
    );
    assert!(
        r.message
            .contains("of WAL retained (physical slot, inactive"),
        "{}",
        r.message
    );
    assert!(matches!(r.scope, dbwarden::health::Scope::Server(_)));
    e.close(Duration::from_secs(5)).await;
}

// ---------------------------------------------------------------------------------------
// A real primary and its standby
// ---------------------------------------------------------------------------------------
//
// The shared server above has archive_mode off, max_prepared_transactions 0 and no standby.
// `.ci/run` (ensure_pg_cluster) starts a throwaway primary on 127.0.0.1:5433 (archive_mode
// on with archive_command 'false', so archiving fails on purpose; max_prepared_transactions
// 10) and its streaming standby on 127.0.0.1:5434 (application_name dbwarden_ci_standby),
// and sets DBWARDEN_TEST_PG_PRIMARY_URL and DBWARDEN_TEST_PG_STANDBY_URL. The tests below
// create nothing but uniquely named transactions and tables there, and remove them.

const PRIMARY_URL: &str = "DBWARDEN_TEST_PG_PRIMARY_URL";
const STANDBY_URL: &str = "DBWARDEN_TEST_PG_STANDBY_URL";
/// The standby's `cluster_name`, which its WAL receiver sends as application_name.
const STANDBY_NAME: &str = "dbwarden_ci_standby";

/// The URL in `var` (a superuser on the primary's or the standby's `test` database).
fn cluster_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(u) if !u.trim().is_empty() => match url::Url::parse(u.trim()) {
            Ok(u) => Some(u.to_string()),
            Err(e) => panic!("{var} is not a URL: {e}"),
        },
        _ => {
            if std::env::var("DBWARDEN_REQUIRE_SERVICES").as_deref() == Ok("1") {
                panic!("{var} not set, but DBWARDEN_REQUIRE_SERVICES=1 (.ci/run sets it)");
            }
            eprintln!("skipping: {var} not set (see README \"Development\")");
            None
        }
    }
}

/// The primary and the standby are shared by the tests below, and one test's writes,
/// paused replay or prepared transaction shows in another's checks: they run one at a
/// time (the tests on the shared server still run beside them).
static CLUSTER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The throwaway primary and its standby, connected, held by one test at a time.
struct Pair {
    primary_url: String,
    standby_url: String,
    primary: PgConnection,
    standby: PgConnection,
    _serial: tokio::sync::MutexGuard<'static, ()>,
}

/// `None` (the test skips) when the pair's URLs are not set.
async fn pair() -> Option<Pair> {
    let (Some(primary_url), Some(standby_url)) =
        (cluster_url(PRIMARY_URL), cluster_url(STANDBY_URL))
    else {
        return None;
    };
    let serial = CLUSTER.lock().await;
    let primary = connect(&primary_url).await;
    let standby = connect(&standby_url).await;
    Some(Pair {
        primary_url,
        standby_url,
        primary,
        standby,
        _serial: serial,
    })
}

/// Statements run on `url` when the value goes out of scope, even when the test panics
/// (errors are ignored); then `until`, a boolean query, is polled for up to 30 s.
struct Undo {
    url: String,
    sql: Vec<String>,
    until: Option<String>,
}

impl Drop for Undo {
    fn drop(&mut self) {
        let (url, sql, until) = (self.url.clone(), self.sql.clone(), self.until.clone());
        // Async drop does not exist: clean up on a thread with its own runtime.
        let cleanup = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let Ok(mut c) = PgConnection::connect(&url).await else {
                    return;
                };
                for s in sql {
                    let _ = c.execute(AssertSqlSafe(s)).await;
                }
                if let Some(q) = until {
                    let _ = poll_true(&mut c, &q, Duration::from_secs(30)).await;
                }
                let _ = c.close().await;
            });
        });
        let _ = cleanup.join();
    }
}

/// Polls a boolean query until it is true or `within` has passed; whether it became true.
async fn poll_true(c: &mut PgConnection, sql: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        let v = sqlx::query_scalar::<_, Option<bool>>(AssertSqlSafe(sql.to_string()))
            .fetch_one(&mut *c)
            .await;
        if matches!(v, Ok(Some(true))) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn scalar_f64(conn: &mut PgConnection, sql: &str) -> f64 {
    match sqlx::query_scalar::<_, f64>(AssertSqlSafe(sql.to_string()))
        .fetch_one(conn)
        .await
    {
        Ok(v) => v,
        Err(e) => panic!("{sql}: {e}"),
    }
}

async fn scalar_text(conn: &mut PgConnection, sql: &str) -> String {
    match sqlx::query_scalar::<_, String>(AssertSqlSafe(sql.to_string()))
        .fetch_one(conn)
        .await
    {
        Ok(v) => v,
        Err(e) => panic!("{sql}: {e}"),
    }
}

/// On the primary: the standby streams and has replayed everything the primary flushed.
const STANDBY_CAUGHT_UP: &str = "SELECT coalesce(bool_and(state = 'streaming' \
     AND replay_lsn >= pg_current_wal_flush_lsn()), false) \
     FROM pg_stat_replication WHERE application_name = 'dbwarden_ci_standby'";

async fn wait_caught_up(primary: &mut PgConnection) {
    assert!(
        poll_true(primary, STANDBY_CAUGHT_UP, Duration::from_secs(30)).await,
        "the standby {STANDBY_NAME} did not catch up with the primary within 30 s"
    );
}

#[tokio::test]
async fn failing_archive_command_is_at_least_a_warning() {
    let Some(url) = cluster_url(PRIMARY_URL) else {
        return;
    };
    let _serial = CLUSTER.lock().await;
    let mut c = connect(&url).await;
    let before = scalar_f64(&mut c, "SELECT failed_count::float8 FROM pg_stat_archiver").await;
    // A write, then a switch to a new WAL segment: the full one is handed to
    // archive_command ('false'), which fails.
    let table = unique("dbw_t_arch");
    exec(
        &mut c,
        &format!(
            "CREATE TABLE {table} AS SELECT g FROM generate_series(1, 1000) g; DROP TABLE {table}"
        ),
    )
    .await;
    exec(&mut c, "SELECT pg_switch_wal()").await;
    assert!(
        poll_true(
            &mut c,
            &format!("SELECT failed_count > {before} FROM pg_stat_archiver"),
            Duration::from_secs(10),
        )
        .await,
        "pg_stat_archiver.failed_count stayed at {before}: is archive_command 'false'?"
    );
    // The archiver retries the oldest waiting segment until it succeeds (never, here).
    let failed_wal = scalar_text(&mut c, "SELECT last_failed_wal FROM pg_stat_archiver").await;

    let (_dir, t) = target(&url, "");
    let e = engine(&t);
    let results = judge(&t, &run_round(&e, &t).await);
    let r = find(&results, "archiver");
    assert!(
        matches!(r.status, Status::Warning | Status::Critical),
        "{}",
        show(&results)
    );
    assert!(
        r.message
            .starts_with("archive_command failing: last failure "),
        "{}",
        r.message
    );
    assert!(
        r.message.contains(&format!(" ago on {failed_wal} (")),
        "{}",
        r.message
    );
    assert!(
        r.message
            .contains(" failures since the statistics reset); "),
        "{}",
        r.message
    );
    assert!(
        r.message.ends_with(" WAL segment(s) waiting"),
        "{}",
        r.message
    );
    // At least the segment switched away from waits (pg_ls_archive_statusdir).
    assert!(r.value.is_some_and(|v| v >= 1.0), "{:?}", r.value);
    assert!(matches!(r.scope, dbwarden::health::Scope::Server(_)));
    let _ = c.close().await;
    e.close(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn prepared_transaction_is_named_and_holds_back_the_xmin_horizon() {
    let Some(url) = cluster_url(PRIMARY_URL) else {
        return;
    };
    let _serial = CLUSTER.lock().await;
    let gid = unique("dbw_test");
    let _undo = Undo {
        url: url.clone(),
        sql: vec![format!("ROLLBACK PREPARED '{gid}'")],
        until: None,
    };
    let mut c = connect(&url).await;
    exec(&mut c, "BEGIN").await;
    // A transaction ID, as any writing transaction has: the xmin horizon stays at it.
    exec(&mut c, "SELECT pg_current_xact_id()").await;
    exec(&mut c, &format!("PREPARE TRANSACTION '{gid}'")).await;

    let (_dir, t) = target(
        &url,
        r#"thresholds = { prepared_xacts = { warning = "1s", critical = "1h" }, xmin_horizon = { warning = 1, critical = 1000000000 } }"#,
    );
    let e = engine(&t);
    let results = until_not_ok(&e, &t, "prepared_xacts").await;
    let r = find(&results, "prepared_xacts");
    assert_eq!(r.status, Status::Warning, "{}", show(&results));
    assert!(
        r.message
            .starts_with(&format!("prepared transaction '{gid}': ")),
        "{}",
        r.message
    );
    assert!(
        r.message.contains(
            " since prepared (database test, owner postgres; COMMIT PREPARED or ROLLBACK PREPARED it)"
        ),
        "{}",
        r.message
    );
    assert_eq!(
        r.subject.as_deref(),
        Some(format!("prepared transaction '{gid}'").as_str())
    );
    // The same round: VACUUM cannot clean past the prepared transaction.
    let r = find(&results, "xmin_horizon");
    assert_eq!(r.status, Status::Warning, "{}", show(&results));
    assert!(
        r.message
            .starts_with(&format!("prepared transaction '{gid}': ")),
        "{}",
        r.message
    );
    assert!(
        r.message
            .contains(" transactions behind (xmin horizon) (database test, prepared "),
        "{}",
        r.message
    );

    // Resolved: both are OK again.
    exec(&mut c, &format!("ROLLBACK PREPARED '{gid}'")).await;
    let results = judge(&t, &run_round(&e, &t).await);
    for check in ["prepared_xacts", "xmin_horizon"] {
        let r = find(&results, check);
        assert_eq!(r.status, Status::Ok, "{}", show(&results));
        assert!(!r.message.contains(&gid), "{}", r.message);
    }
    let _ = c.close().await;
    e.close(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn primary_lists_its_streaming_standby() {
    let Some(url) = cluster_url(PRIMARY_URL) else {
        return;
    };
    let _serial = CLUSTER.lock().await;
    let mut c = connect(&url).await;
    wait_caught_up(&mut c).await;
    let (_dir, t) = target(&url, "");
    let e = engine(&t);
    let report = run_round(&e, &t).await;
    let results = judge(&t, &report);
    let r = find(&results, "replication_lag");
    assert_eq!(r.status, Status::Ok, "{}", show(&results));
    assert!(
        r.message
            // The plain address: client_addr is `inet`, whose text form has a netmask.
            .starts_with(&format!("replica '{STANDBY_NAME}' (127.0.0.1): ")),
        "{}",
        r.message
    );
    assert!(r.message.contains(" (streaming, write "), "{}", r.message);
    assert!(r.value.is_some_and(|v| v < 60.0), "{:?}", r.value);
    assert!(
        find(&results, "connectivity")
            .message
            .contains(", primary)"),
        "{}",
        show(&results)
    );
    let _ = c.close().await;
    e.close(Duration::from_secs(5)).await;
}

/// Replay paused on the standby while the primary commits: the standby falls behind for
/// real, and both ends say so.
#[tokio::test]
async fn paused_replay_is_lag_on_the_primary_and_on_the_standby() {
    let (Some(primary_url), Some(standby_url)) =
        (cluster_url(PRIMARY_URL), cluster_url(STANDBY_URL))
    else {
        return;
    };
    let _serial = CLUSTER.lock().await;
    let _undo = Undo {
        url: standby_url.clone(),
        sql: vec!["SELECT pg_wal_replay_resume()".to_string()],
        until: None,
    };
    let mut primary = connect(&primary_url).await;
    let mut standby = connect(&standby_url).await;
    wait_caught_up(&mut primary).await;
    exec(&mut standby, "SELECT pg_wal_replay_pause()").await;
    assert!(
        poll_true(
            &mut standby,
            "SELECT pg_get_wal_replay_pause_state() = 'paused'",
            Duration::from_secs(10)
        )
        .await
    );
    // Commits the standby receives but does not apply.
    for _ in 0..12 {
        exec(&mut primary, "SELECT pg_current_xact_id()").await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let lag = r#"thresholds = { replication_lag = { warning = "1s", critical = "1h" } }"#;
    let (_dp, tp) = target(&primary_url, lag);
    let (_ds, ts) = target(&standby_url, lag);
    let (ep, es) = (engine(&tp), engine(&ts));

    let results = until_not_ok(&ep, &tp, "replication_lag").await;
    let r = find(&results, "replication_lag");
    assert_eq!(r.status, Status::Warning, "{}", show(&results));
    assert!(
        r.message
            // The plain address: client_addr is `inet`, whose text form has a netmask.
            .starts_with(&format!("replica '{STANDBY_NAME}' (127.0.0.1): ")),
        "{}",
        r.message
    );
    assert!(
        r.message.contains(" replication lag (streaming, write "),
        "{}",
        r.message
    );
    assert!(r.message.contains(" behind)"), "{}", r.message);

    let results = until_not_ok(&es, &ts, "replication_lag").await;
    let r = find(&results, "replication_lag");
    assert_eq!(r.status, Status::Warning, "{}", show(&results));
    assert!(
        r.message.starts_with("standby (primary 127.0.0.1): "),
        "{}",
        r.message
    );
    assert!(
        r.message.contains(" received but not replayed yet)"),
        "{}",
        r.message
    );

    // Resumed: the standby catches up and reports no lag.
    exec(&mut standby, "SELECT pg_wal_replay_resume()").await;
    wait_caught_up(&mut primary).await;
    let results = judge(&ts, &run_round(&es, &ts).await);
    assert_eq!(
        find(&results, "replication_lag").status,
        Status::Ok,
        "{}",
        show(&results)
    );
    let _ = primary.close().await;
    let _ = standby.close().await;
    ep.close(Duration::from_secs(5)).await;
    es.close(Duration::from_secs(5)).await;
}

/// A standby is a server of its own (a primary and its standby share the system
/// identifier, not the instance), says so, and an idle primary is no lag: the last
/// replayed transaction grows old, but nothing waits to be replayed.
#[tokio::test]
async fn standby_is_its_own_server_and_an_idle_primary_is_no_lag() {
    let Some(Pair {
        primary_url,
        standby_url,
        mut primary,
        mut standby,
        _serial,
    }) = pair().await
    else {
        return;
    };
    // One commit, so the standby has a last replayed transaction that then grows old.
    exec(&mut primary, "SELECT pg_current_xact_id()").await;
    wait_caught_up(&mut primary).await;

    let (_dp, tp) = target(&primary_url, "");
    let (_ds, ts) = target(
        &standby_url,
        r#"thresholds = { replication_lag = { warning = "1s", critical = "1h" } }"#,
    );
    let (ep, es) = (engine(&tp), engine(&ts));
    let p = run_round(&ep, &tp).await;
    let s = run_round(&es, &ts).await;
    let (pr, sr) = (judge(&tp, &p), judge(&ts, &s));
    assert!(
        find(&sr, "connectivity").message.contains(", standby)"),
        "{}",
        show(&sr)
    );
    assert!(
        find(&pr, "connectivity").message.contains(", primary)"),
        "{}",
        show(&pr)
    );
    let (Some(pid), Some(sid)) = (&p.server_id, &s.server_id) else {
        panic!("server ids: {:?} {:?}", p.server_id, s.server_id)
    };
    assert_ne!(pid, sid, "the primary and its standby taken for one server");
    assert_eq!(
        pid.split_once('@').map(|(sys, _)| sys),
        sid.split_once('@').map(|(sys, _)| sys),
        "a standby shares its primary's system identifier: {pid} {sid}"
    );
    let prefix =
        "standby (primary 127.0.0.1): 0s replication lag (everything received is replayed)";
    let r = find(&sr, "replication_lag");
    assert_eq!(r.status, Status::Ok, "{}", show(&sr));
    assert!(r.message.starts_with(prefix), "{}", r.message);

    // No writes for 3 s: still no lag, round after round, while the last replayed
    // transaction grows older than the threshold.
    let idle_from = Instant::now();
    let mut oldest: f64 = 0.0;
    while idle_from.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let age = scalar_f64(
            &mut standby,
            "SELECT coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0)::float8",
        )
        .await;
        oldest = oldest.max(age);
        let results = judge(&ts, &run_round(&es, &ts).await);
        let r = find(&results, "replication_lag");
        assert_eq!(r.status, Status::Ok, "{}", show(&results));
        assert!(r.message.starts_with(prefix), "{}", r.message);
        assert_eq!(r.value, Some(0.0));
    }
    // The case really arose (an autovacuum commit may have been replayed meanwhile).
    assert!(
        oldest >= 1.5,
        "last replayed transaction at most {oldest}s old"
    );
    let _ = primary.close().await;
    let _ = standby.close().await;
    ep.close(Duration::from_secs(5)).await;
    es.close(Duration::from_secs(5)).await;
}

/// A standby whose WAL receiver has stopped (here primary_conninfo emptied; in life the
/// primary gone, a network cut, a slot dropped) no longer follows its primary, which
/// commits on. Everything it did receive is replayed, but that is not "0s lag".
#[tokio::test]
async fn stopped_wal_receiver_is_not_ok() {
    let Some(Pair {
        primary_url: _,
        standby_url,
        mut primary,
        mut standby,
        _serial,
    }) = pair().await
    else {
        return;
    };
    wait_caught_up(&mut primary).await;
    let restore = scalar_text(
        &mut standby,
        "SELECT format('ALTER SYSTEM SET primary_conninfo = %L', current_setting('primary_conninfo'))",
    )
    .await;
    let _undo = Undo {
        url: standby_url.clone(),
        sql: vec![restore, "SELECT pg_reload_conf()".to_string()],
        until: Some(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming')"
                .to_string(),
        ),
    };
    exec(&mut standby, "ALTER SYSTEM SET primary_conninfo = ''").await;
    exec(&mut standby, "SELECT pg_reload_conf()").await;
    assert!(
        poll_true(
            &mut standby,
            "SELECT NOT EXISTS (SELECT 1 FROM pg_stat_wal_receiver)",
            Duration::from_secs(10)
        )
        .await,
        "the WAL receiver did not stop"
    );
    // The primary commits on; the standby gets none of it.
    for _ in 0..5 {
        exec(&mut primary, "SELECT pg_current_xact_id()").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (_dir, t) = target(
        &standby_url,
        r#"thresholds = { replication_lag = { warning = "1s", critical = "1h" } }"#,
    );
    let e = engine(&t);
    let results = until_not_ok(&e, &t, "replication_lag").await;
    let r = find(&results, "replication_lag");
    assert_ne!(r.status, Status::Ok, "{}", show(&results));
    assert!(r.message.starts_with("standby"), "{}", r.message);
    assert!(
        r.message.contains("no WAL receiver running"),
        "{}",
        r.message
    );
    let _ = primary.close().await;
    let _ = standby.close().await;
    e.close(Duration::from_secs(5)).await;
}

/// The primary commits nothing, but writes a WAL record longer than a page (here a
/// non-transactional logical message; in life a full-page image after a checkpoint, a
/// vacuum or index record): the WAL writer flushes it in parts, up to wal_writer_delay
/// apart, and in between the standby has received bytes it cannot replay yet. It has
/// still replayed every commit, so its lag must not jump to the age of the last one.
#[tokio::test]
async fn partly_received_record_is_no_lag_on_an_idle_primary() {
    let (Some(primary_url), Some(standby_url)) =
        (cluster_url(PRIMARY_URL), cluster_url(STANDBY_URL))
    else {
        return;
    };
    let _serial = CLUSTER.lock().await;
    let mut primary = connect(&primary_url).await;
    exec(&mut primary, "SELECT pg_current_xact_id()").await;
    wait_caught_up(&mut primary).await;
    // Idle for longer than the threshold: the last replayed commit is 2 s old.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_dir, t) = target(
        &standby_url,
        r#"thresholds = { replication_lag = { warning = "1s", critical = "1h" } }"#,
    );
    let e = engine(&t);
    let first = judge(&t, &run_round(&e, &t).await);
    assert_eq!(
        find(&first, "replication_lag").status,
        Status::Ok,
        "{}",
        show(&first)
    );
    exec(
        &mut primary,
        "SELECT pg_logical_emit_message(false, 'dbwarden-test', repeat('x', 20000))",
    )
    .await;
    let mut alarms = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(1500) {
        let results = judge(&t, &run_round(&e, &t).await);
        let r = find(&results, "replication_lag");
        if r.status != Status::Ok {
            alarms.push(format!("{} {}", r.status, r.message));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        alarms.is_empty(),
        "{} false alarm(s), first: {}",
        alarms.len(),
        alarms[0]
    );
    let _ = primary.close().await;
    e.close(Duration::from_secs(5)).await;
}

// ---------------------------------------------------------------------------------------
// Per-run cancellation, one-shot connections, a dead server, a locked catalog
// ---------------------------------------------------------------------------------------

/// A TCP proxy in front of the test server that counts the connections it accepted and
/// can play a dying server: open connections are cut, and new ones are answered "the
/// database system is shutting down" (SQLSTATE 57P03, which sqlx's pool retries until
/// its acquire timeout) or refused.
struct Proxy {
    port: u16,
    accepted: Arc<std::sync::atomic::AtomicUsize>,
    stopped: Arc<std::sync::atomic::AtomicBool>,
    dying: Arc<std::sync::atomic::AtomicBool>,
    open: Arc<Mutex<Vec<std::net::TcpStream>>>,
    acceptor: Option<std::thread::JoinHandle<()>>,
}

impl Proxy {
    fn start(upstream: &url::Url) -> Proxy {
        use std::sync::atomic::Ordering;
        let up = format!(
            "{}:{}",
            upstream.host_str().unwrap_or("127.0.0.1"),
            upstream.port().unwrap_or(5432)
        );
        let listener = match std::net::TcpListener::bind("127.0.0.1:0") {
            Ok(l) => l,
            Err(e) => panic!("proxy bind: {e}"),
        };
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        if let Err(e) = listener.set_nonblocking(true) {
            panic!("proxy: {e}");
        }
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let open: Arc<Mutex<Vec<std::net::TcpStream>>> = Arc::default();
        let dying = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (a, s, o, d) = (
            accepted.clone(),
            stopped.clone(),
            open.clone(),
            dying.clone(),
        );
        let acceptor = std::thread::spawn(move || {
            // The listener is dropped when this returns: connections are refused then.
            while !s.load(Ordering::SeqCst) {
                let Ok((inbound, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                a.fetch_add(1, Ordering::SeqCst);
                let _ = inbound.set_nonblocking(false);
                if d.load(Ordering::SeqCst) {
                    std::thread::spawn(move || shutting_down(inbound));
                    continue;
                }
                let Ok(outbound) = std::net::TcpStream::connect(&up) else {
                    continue;
                };
                let pairs = [(inbound.try_clone(), outbound.try_clone())];
                for (i, o2) in pairs {
                    let (Ok(mut i), Ok(mut o2)) = (i, o2) else {
                        continue;
                    };
                    let (Ok(mut i2), Ok(mut o3)) = (i.try_clone(), o2.try_clone()) else {
                        continue;
                    };
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut i, &mut o2);
                        let _ = o2.shutdown(std::net::Shutdown::Both);
                    });
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut o3, &mut i2);
                        let _ = i2.shutdown(std::net::Shutdown::Both);
                    });
                }
                if let Ok(mut v) = o.lock() {
                    v.push(inbound);
                    v.push(outbound);
                }
            }
        });
        Proxy {
            port,
            accepted,
            stopped,
            dying,
            open,
            acceptor: Some(acceptor),
        }
    }

    /// `url` with its host and port replaced by the proxy's.
    fn url(&self, url: &str) -> String {
        let mut u = match url::Url::parse(url) {
            Ok(u) => u,
            Err(e) => panic!("{e}"),
        };
        let _ = u.set_host(Some("127.0.0.1"));
        let _ = u.set_port(Some(self.port));
        u.to_string()
    }

    fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The server is going down: open connections are cut, new ones are told so.
    fn die(&self) {
        self.dying.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Ok(v) = self.open.lock() {
            for c in v.iter() {
                let _ = c.shutdown(std::net::Shutdown::Both);
            }
        }
    }

    /// The server is gone: open connections are cut, new ones refused.
    fn stop(&mut self) {
        self.stopped
            .store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
        if let Ok(v) = self.open.lock() {
            for c in v.iter() {
                let _ = c.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}

/// Answers a PostgreSQL client as a server that is shutting down: no TLS, then a FATAL
/// 57P03 error after the startup message.
fn shutting_down(mut c: std::net::TcpStream) {
    use std::io::{Read, Write};
    let read_message = |c: &mut std::net::TcpStream| -> Option<Vec<u8>> {
        let mut len = [0u8; 4];
        c.read_exact(&mut len).ok()?;
        let n = u32::from_be_bytes(len) as usize;
        let mut body = vec![0u8; n.saturating_sub(4)];
        c.read_exact(&mut body).ok()?;
        Some(body)
    };
    let Some(first) = read_message(&mut c) else {
        return;
    };
    // SSLRequest (code 80877103): decline, then read the startup message.
    let ssl_request = first.len() == 4
        && u32::from_be_bytes([first[0], first[1], first[2], first[3]]) == 80_877_103;
    if ssl_request && (c.write_all(b"N").is_err() || read_message(&mut c).is_none()) {
        return;
    }
    let mut fields = Vec::new();
    for (tag, value) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', "57P03"),
        (b'M', "the database system is shutting down"),
    ] {
        fields.push(tag);
        fields.extend_from_slice(value.as_bytes());
        fields.push(0);
    }
    fields.push(0);
    let mut msg = vec![b'E'];
    msg.extend_from_slice(&((fields.len() + 4) as u32).to_be_bytes());
    msg.extend_from_slice(&fields);
    let _ = c.write_all(&msg);
    let _ = c.shutdown(std::net::Shutdown::Both);
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The pid of the session `scope` holds (waits until the run registered it).
async fn scope_pid(scope: &RunScope) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(s) = scope.sessions().first() {
            return s.id as i32;
        }
        if Instant::now() > deadline {
            panic!("the run never registered its session");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Whether `pid` is running a statement now.
async fn active(admin: &mut PgConnection, pid: i32) -> bool {
    match sqlx::query_scalar::<_, bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND state = 'active')",
    )
    .bind(pid)
    .fetch_one(admin)
    .await
    {
        Ok(v) => v,
        Err(e) => panic!("pg_stat_activity: {e}"),
    }
}

#[tokio::test]
async fn cancelling_a_run_stops_only_its_own_statements() {
    let Some(base) = base_url() else { return };
    let db = TestDb::create(&base).await;
    let (_dir, t) = target(&db.url(), "");
    let e = Arc::new(engine(&t));
    let Engine::Postgres(_) = &*e else {
        panic!("not PostgreSQL")
    };
    let (scope_a, scope_b) = (RunScope::default(), RunScope::default());
    // Two runs on one engine, each with a statement that runs for a while (under the
    // probes' statement_timeout of 5 s).
    let run = |scope: &RunScope| {
        let (e, scope) = (e.clone(), scope.clone());
        tokio::spawn(async move {
            match &*e {
                Engine::Postgres(p) => p.run_in_scope("SELECT pg_sleep(4)", &scope).await,
                _ => Ok(()),
            }
        })
    };
    let (run_a, run_b) = (run(&scope_a), run(&scope_b));
    let (pid_a, pid_b) = (scope_pid(&scope_a).await, scope_pid(&scope_b).await);
    assert_ne!(pid_a, pid_b);
    let mut admin = db.conn().await;
    let deadline = Instant::now() + Duration::from_secs(3);
    while !(active(&mut admin, pid_a).await && active(&mut admin, pid_b).await) {
        assert!(Instant::now() < deadline, "the statements never ran");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    e.cancel(&scope_a).await;
    let a = match run_a.await {
        Ok(r) => r,
        Err(err) => panic!("{err}"),
    };
    assert!(
        a.as_ref().is_err_and(|m| m.contains("user request")),
        "run A was not cancelled: {a:?}"
    );
    // B's statement is untouched by A's cancel.
    assert!(active(&mut admin, pid_b).await, "run B was stopped too");
    assert!(!run_b.is_finished());

    e.cancel(&scope_b).await;
    let b = match run_b.await {
        Ok(r) => r,
        Err(err) => panic!("{err}"),
    };
    assert!(
        b.as_ref().is_err_and(|m| m.contains("user request")),
        "run B was not cancelled: {b:?}"
    );
    // Both runs gave their connections back: the scopes are empty.
    assert!(scope_a.sessions().is_empty() && scope_b.sessions().is_empty());
    e.close(Duration::from_secs(5)).await;
}

/// sqlx does not count callers waiting for a pooled connection; the engine does (`/metrics`
/// exports it as `dbwarden_pool_connections{state="waiting"}`): a pool of one held by a
/// long statement, a second caller waits, and stops waiting once it has the connection.
#[tokio::test]
async fn a_caller_waiting_for_the_busy_pool_is_counted_until_it_gets_the_connection() {
    let Some(base) = base_url() else { return };
    let db = TestDb::create(&base).await;
    let (_dir, config) = config(&format!(
        "[[target]]\nname = \"pg\"\nurl = \"{}\"\npool = {{ max_connections = 1, connect_timeout = \"2s\", acquire_timeout = \"30s\" }}\n",
        db.url()
    ));
    let Some(t) = config.target("pg").cloned() else {
        panic!("target pg missing")
    };
    let e = Arc::new(engine(&t));
    let waiting = || e.pool_stats().map(|s| s.waiting);
    let run = |sql: &'static str, scope: &RunScope| {
        let (e, scope) = (e.clone(), scope.clone());
        tokio::spawn(async move {
            match &*e {
                Engine::Postgres(p) => p.run_in_scope(sql, &scope).await,
                _ => panic!("not PostgreSQL"),
            }
        })
    };
    let holder_scope = RunScope::default();
    let holder = run("SELECT pg_sleep(4)", &holder_scope);
    scope_pid(&holder_scope).await;
    assert_eq!(waiting(), Some(0), "nobody waits yet");
    let second = run("SELECT 1", &RunScope::default());
    common::wait_until(10, "the second caller waits for the pool", || {
        waiting() == Some(1)
    })
    .await;
    assert!(!second.is_finished());
    // The holder's statement is cancelled: its connection goes back, the waiter takes it.
    e.cancel(&holder_scope).await;
    let held = holder.await.unwrap_or_else(|err| panic!("{err}"));
    assert!(held.is_err(), "the holder was cancelled: {held:?}");
    let got = second.await.unwrap_or_else(|err| panic!("{err}"));
    assert!(got.is_ok(), "the waiter ran: {got:?}");
    assert_eq!(waiting(), Some(0), "nobody waits any more");
    e.close(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn one_shot_check_opens_one_connection() {
    let Some(base) = base_url() else { return };
    let db = TestDb::create(&base).await;
    let proxy = Proxy::start(&base);
    let (_dir, t) = target(&proxy.url(&db.url()), "");
    let e = match Engine::open_one_shot(&t) {
        Ok(e) => e,
        Err(err) => panic!("{err}"),
    };
    let results = judge(&t, &run_round(&e, &t).await);
    assert!(
        results.iter().all(|r| r.status == Status::Ok),
        "{}",
        show(&results)
    );
    e.close(Duration::from_secs(5)).await;
    assert_eq!(proxy.accepted(), 1, "connections opened by one check");
}

/// After its pooled connections died, the round tries one direct connection and reports
/// what the server said, instead of letting the pool retry until its acquire timeout.
#[tokio::test]
async fn first_round_after_the_server_went_down_asks_it_once() {
    let Some(base) = base_url() else { return };
    let db = TestDb::create(&base).await;
    let proxy = Proxy::start(&base);
    let (_dir, t) = target(&proxy.url(&db.url()), "");
    let e = engine(&t);
    let results = judge(&t, &run_round(&e, &t).await);
    assert_eq!(find(&results, "connectivity").status, Status::Ok);
    proxy.die();
    let before = proxy.accepted();
    let results = judge(&t, &run_round(&e, &t).await);
    let c = find(&results, "connectivity");
    assert_eq!(c.status, Status::Critical, "{}", show(&results));
    assert!(c.message.contains("shutting down"), "{}", c.message);
    assert_eq!(proxy.accepted() - before, 1, "connection attempts");
    e.close(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn first_round_after_the_server_died_reports_the_refusal() {
    let Some(base) = base_url() else { return };
    let db = TestDb::create(&base).await;
    let mut proxy = Proxy::start(&base);
    let (_dir, t) = target(&proxy.url(&db.url()), "");
    let e = engine(&t);
    let results = judge(&t, &run_round(&e, &t).await);
    assert_eq!(find(&results, "connectivity").status, Status::Ok);
    proxy.stop();
    // The pooled connections are dead; the round finds out at once why it has none.
    let results = judge(&t, &run_round(&e, &t).await);
    let c = find(&results, "connectivity");
    assert_eq!(c.status, Status::Critical, "{}", show(&results));
    assert!(
        c.message
            .contains(&format!("connection refused at 127.0.0.1:{}", proxy.port)),
        "{}",
        c.message
    );
    e.close(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_locked_catalog_is_not_an_unreachable_server() {
    let Some(base) = base_url() else { return };
    let db = TestDb::create(&base).await;
    let (_dir, t) = target(&db.url(), "");
    let warm = engine(&t);
    let results = judge(&t, &run_round(&warm, &t).await);
    assert_eq!(find(&results, "connectivity").status, Status::Ok);

    let mut locker = db.conn().await;
    exec(&mut locker, "BEGIN").await;
    exec(&mut locker, "LOCK pg_class IN ACCESS EXCLUSIVE MODE").await;
    // A new engine: even starting a session waits on the catalog.
    let cold = engine(&t);
    let cold_results = judge(&t, &run_round(&cold, &t).await);
    // A warm one: its probes that read pg_class wait.
    let warm_results = judge(&t, &run_round(&warm, &t).await);
    exec(&mut locker, "ROLLBACK").await;

    for results in [&cold_results, &warm_results] {
        let c = find(results, "connectivity");
        assert_ne!(c.status, Status::Critical, "{}", show(results));
        assert!(!c.message.contains("unreachable"), "{}", show(results));
        let d = find(results, "dead_tuples");
        assert_eq!(d.status, Status::Unknown, "{}", show(results));
        assert!(d.message.contains("lock_timeout"), "{}", show(results));
    }
    let c = find(&cold_results, "connectivity");
    assert!(
        c.message.contains("reached") && c.message.contains("lock on a system catalog"),
        "{}",
        c.message
    );
    cold.close(Duration::from_secs(5)).await;
    warm.close(Duration::from_secs(5)).await;
}
