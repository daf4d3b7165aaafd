//! The MySQL/MariaDB engine against a real server. Set DBWARDEN_TEST_MYSQL_URL (e.g.
//! `mysql://root@127.0.0.1:3306/test`, an account allowed to create databases and users);
//! without it these tests print "skipping" and pass, unless DBWARDEN_REQUIRE_SERVICES=1.
//! The performance_schema test needs a server that has it on, in
//! DBWARDEN_TEST_MYSQL_PS_URL (`.ci/run` starts one on 127.0.0.1:3307).
//! Each test works in its own database `dbw_t_<random>`, dropped afterwards.

mod common;

use common::url_from_env;
use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use dbwarden::config::Target;
use dbwarden::engine::{Engine, HealthOptions, HealthReport, RunScope, TableStat, catalog};
use dbwarden::health::{CheckResult, Measurement, Observation, Outcome, Status, evaluate};
use sqlx::mysql::MySqlConnection;
use sqlx::{AssertSqlSafe, Connection, Row};

const CHECKS: &[&str] = &[
    "connectivity",
    "mysql_connections",
    "mysql_long_query",
    "mysql_replica_lag",
    "mysql_replica_threads",
    "mysql_buffer_pool_hit",
    "mysql_deadlocks",
    "mysql_slow_queries",
    "mysql_history_list",
    "mysql_fragmentation",
    "mysql_auto_increment",
    "mysql_long_transaction",
    "mysql_connection_errors",
    "mysql_tmp_disk_tables",
    "mysql_binlog_space",
    "mysql_cluster",
];

fn ok<T, E: std::fmt::Display>(r: Result<T, E>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{what}: {e}"),
    }
}

fn base_url() -> Option<String> {
    url_from_env("DBWARDEN_TEST_MYSQL_URL")
}

/// A server with performance_schema ON (MariaDB's default is OFF).
fn ps_base_url() -> Option<String> {
    url_from_env("DBWARDEN_TEST_MYSQL_PS_URL")
}

/// `base` with its database replaced by `db` (empty: no database).
fn url_with_db(base: &str, db: &str) -> String {
    let mut u = ok(url::Url::parse(base), "the test server's URL");
    u.set_path(db);
    u.to_string()
}

#[derive(Clone)]
struct TestDb {
    base: String,
    name: String,
    dir: PathBuf,
}

impl TestDb {
    fn url(&self) -> String {
        url_with_db(&self.base, &self.name)
    }

    fn user(&self) -> String {
        ok(url::Url::parse(&self.base), "url")
            .username()
            .to_string()
    }

    async fn conn(&self) -> MySqlConnection {
        ok(
            MySqlConnection::connect(&self.url()).await,
            "connect to the test database",
        )
    }

    /// A target named "m" for this database, with extra TOML lines in its [[target]].
    fn target(&self, extra: &str) -> Target {
        self.target_for(&self.url(), extra)
    }

    /// A target for this database as a user of its own (named like the database, dropped
    /// with it) with only SELECT on the database, its password in `limited.password`.
    async fn limited_target(&self, admin: &mut MySqlConnection) -> Target {
        let user = self.name.clone();
        exec(
            admin,
            format!("CREATE USER '{user}'@'%' IDENTIFIED BY 'pw-{user}'"),
        )
        .await;
        exec(admin, format!("GRANT SELECT ON `{user}`.* TO '{user}'@'%'")).await;
        let pw = self.dir.join("limited.password");
        ok(std::fs::write(&pw, format!("pw-{user}\n")), "password file");
        let mut u = ok(url::Url::parse(&self.url()), "url");
        let _ = u.set_username(&user);
        let _ = u.set_password(None);
        self.target_for(u.as_str(), &format!("password_file = \"{}\"", pw.display()))
    }

    /// Kills every connection on this database but `admin`'s (an engine's pooled ones);
    /// returns how many.
    async fn kill_other_connections(&self, admin: &mut MySqlConnection) -> usize {
        let mine = scalar(admin, "SELECT CONNECTION_ID()").await;
        let rows = ok(
            sqlx::raw_sql(AssertSqlSafe(format!(
                "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = '{}' AND ID <> {mine}",
                self.name
            )))
            .fetch_all(&mut *admin)
            .await,
            "processlist",
        );
        for row in &rows {
            let id: i64 = ok(row.try_get(0), "id");
            exec(admin, format!("KILL CONNECTION {id}")).await;
        }
        rows.len()
    }

    fn target_for(&self, url: &str, extra: &str) -> Target {
        let path = self
            .dir
            .join(format!("dbwarden-{}.toml", rand::random::<u32>()));
        let toml = format!("[[target]]\nname = \"m\"\nurl = \"{url}\"\n{extra}\n");
        ok(std::fs::write(&path, toml), "write config");
        let config = match dbwarden::config::load(&path) {
            Ok(c) => c,
            Err(e) => panic!("config: {e}"),
        };
        match config.targets.into_iter().next() {
            Some(t) => t,
            None => panic!("no target in the config"),
        }
    }
}

async fn exec(conn: &mut MySqlConnection, sql: impl Into<String>) {
    let sql = sql.into();
    if let Err(e) = sqlx::raw_sql(AssertSqlSafe(sql.clone()))
        .execute(&mut *conn)
        .await
    {
        panic!("{sql}: {e}");
    }
}

async fn scalar(conn: &mut MySqlConnection, sql: &str) -> String {
    let row = ok(
        sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
            .fetch_one(&mut *conn)
            .await,
        sql,
    );
    let v: Option<Vec<u8>> = ok(row.try_get_unchecked(0), sql);
    String::from_utf8_lossy(&v.unwrap_or_default()).into_owned()
}

/// Runs `body` with a fresh database (and drops it, and the test's user, afterwards, also
/// when the body panics).
async fn with_db<F, Fut>(body: F)
where
    F: FnOnce(TestDb) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    with_db_on(base_url(), body).await
}

/// [`with_db`] on the server at `base` (`None`: the test is skipped).
async fn with_db_on<F, Fut>(base: Option<String>, body: F)
where
    F: FnOnce(TestDb) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(base) = base else {
        return;
    };
    let name = format!("dbw_t_{:08x}", rand::random::<u32>());
    let dir = ok(tempfile::tempdir(), "tempdir");
    let mut admin = ok(
        MySqlConnection::connect(&base).await,
        "connect to the test server",
    );
    exec(&mut admin, format!("CREATE DATABASE `{name}`")).await;
    let db = TestDb {
        base,
        name: name.clone(),
        dir: dir.path().to_path_buf(),
    };
    let outcome = tokio::spawn(body(db)).await;
    exec(&mut admin, format!("DROP DATABASE IF EXISTS `{name}`")).await;
    exec(&mut admin, format!("DROP USER IF EXISTS '{name}'@'%'")).await;
    let _ = admin.close().await;
    if let Err(e) = outcome
        && e.is_panic()
    {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// Options of a round that reports table statistics.
fn stats() -> HealthOptions {
    HealthOptions {
        table_stats: true,
        ..HealthOptions::default()
    }
}

async fn round(target: &Target) -> (HealthReport, Vec<CheckResult>) {
    let engine = ok(Engine::open(target), "open engine");
    let report = engine.health(target, &stats(), &RunScope::default()).await;
    let results = judge(target, &report);
    engine.close(Duration::from_secs(2)).await;
    (report, results)
}

fn judge(target: &Target, report: &HealthReport) -> Vec<CheckResult> {
    report
        .measurements
        .iter()
        .map(|m| match catalog::spec(m.check) {
            Some(spec) => evaluate(m, spec, &target.thresholds_for(spec)),
            None => panic!("check {} is not in the catalogue", m.check),
        })
        .collect()
}

fn result<'a>(results: &'a [CheckResult], check: &str) -> &'a CheckResult {
    match results.iter().find(|r| r.check == check) {
        Some(r) => r,
        None => panic!("no result for {check} in {results:#?}"),
    }
}

fn measurement<'a>(report: &'a HealthReport, check: &str) -> &'a Measurement {
    match report.measurements.iter().find(|m| m.check == check) {
        Some(m) => m,
        None => panic!("no measurement for {check}"),
    }
}

fn observations(m: &Measurement) -> &[Observation] {
    match &m.outcome {
        Outcome::Values(v) => v,
        other => panic!("{}: expected values, got {other:?}", m.check),
    }
}

fn table_stat<'a>(report: &'a HealthReport, table: &str) -> &'a TableStat {
    match report.table_stats.iter().find(|t| t.table == table) {
        Some(s) => s,
        None => panic!("no table stats for {table}: {:?}", report.table_stats),
    }
}

/// information_schema.TABLES and performance_schema are read at most every 5 minutes:
/// make the engine's next round read them again (keeping the delta baseline).
async fn refresh_tables(engine: &Engine) {
    match engine {
        Engine::Mysql(m) => m.refresh_tables_next_round().await,
        _ => panic!("not a MySQL engine"),
    }
}

/// Every check OK; on rounds after the first, the server-wide deltas (which other tests'
/// deadlocks and queries move) only need to be measured.
fn assert_round_ok(results: &[CheckResult], first: bool) {
    for check in CHECKS {
        let r = result(results, check);
        let delta = matches!(
            *check,
            "mysql_deadlocks"
                | "mysql_slow_queries"
                | "mysql_buffer_pool_hit"
                | "mysql_connection_errors"
                | "mysql_tmp_disk_tables"
        );
        if first || !delta {
            assert_eq!(r.status, Status::Ok, "{check}: {}", r.message);
        } else {
            assert_ne!(r.status, Status::Unknown, "{check}: {}", r.message);
        }
    }
}

/// Rows 1..=3 (k = id, v = 0) in `items`, with an index on k.
async fn create_items(c: &mut MySqlConnection) {
    exec(
        c,
        "CREATE TABLE items (id INT PRIMARY KEY, k INT, v INT, KEY (k)) ENGINE=InnoDB",
    )
    .await;
    exec(
        c,
        "INSERT INTO items VALUES (1, 1, 0), (2, 2, 0), (3, 3, 0)",
    )
    .await;
}

/// 5 rows inserted, 4 updated, 2 deleted; a full scan (6 rows left) and an index lookup.
async fn write_and_read_items(c: &mut MySqlConnection) {
    exec(
        c,
        "INSERT INTO items VALUES (4, 4, 0), (5, 5, 0), (6, 6, 0), (7, 7, 0), (8, 8, 0)",
    )
    .await;
    exec(c, "UPDATE items SET v = v + 1 WHERE id <= 4").await;
    exec(c, "DELETE FROM items WHERE id IN (7, 8)").await;
    assert_eq!(
        scalar(
            c,
            "SELECT COUNT(*) FROM items IGNORE INDEX (PRIMARY, k) WHERE v = 1"
        )
        .await,
        "4"
    );
    assert_eq!(
        scalar(c, "SELECT v FROM items FORCE INDEX (k) WHERE k = 5").await,
        "0"
    );
}

/// A target whose server's server-level checks another target measures runs only its
/// schema's probes; the checks name the owner. Taking them back starts a new baseline.
#[tokio::test]
async fn server_level_checks_can_be_left_to_another_target() {
    with_db(|db| async move {
        let owner = db.target("");
        let (report, _) = round(&owner).await;
        let Some(server) = report.server_id.clone() else {
            panic!("no server id")
        };
        let other = db.target_for(&url_with_db(&db.base, "mysql"), "");
        let engine = ok(Engine::open(&other), "open engine");
        let owners = |server_id: &str, checks: &[&str]| HealthOptions {
            server_checks_by: Some(dbwarden::engine::ServerOwners {
                server_id: server_id.to_string(),
                by: checks
                    .iter()
                    .map(|c| (c.to_string(), "owner".to_string()))
                    .collect(),
            }),
            ..HealthOptions::default()
        };
        let server_checks: Vec<&str> = CHECKS
            .iter()
            .copied()
            .filter(|c| {
                !matches!(
                    *c,
                    "connectivity" | "mysql_fragmentation" | "mysql_auto_increment"
                )
            })
            .collect();
        let report = engine
            .health(
                &other,
                &owners(&server, &server_checks),
                &RunScope::default(),
            )
            .await;
        assert!(
            report.server_checks.is_empty(),
            "{:?}",
            report.server_checks
        );
        let results = judge(&other, &report);
        for check in CHECKS.iter().filter(|c| {
            !matches!(
                **c,
                "connectivity" | "mysql_fragmentation" | "mysql_auto_increment"
            )
        }) {
            let r = result(&results, check);
            assert_eq!(r.status, Status::Ok, "{check}");
            assert_eq!(r.value, None, "{check}");
            assert_eq!(r.scope, dbwarden::health::Scope::Server(server.clone()));
            assert!(
                r.message.contains("measured by target owner"),
                "{check}: {}",
                r.message
            );
        }
        assert!(result(&results, "connectivity").value.is_some());
        assert!(
            !result(&results, "mysql_fragmentation")
                .message
                .contains("measured by")
        );
        // An owner chosen for another server (a failover moved this target): measure.
        let report = engine
            .health(
                &other,
                &owners("mariadb:elsewhere:3306:9", &server_checks),
                &RunScope::default(),
            )
            .await;
        assert!(report.server_checks.contains(&"mysql_connections"));
        let results = judge(&other, &report);
        assert!(result(&results, "mysql_connections").value.is_some());
        assert!(
            result(&results, "mysql_deadlocks")
                .message
                .contains("baseline pending"),
            "the deferred round must not count as a baseline"
        );
        // Only some left to another target: the rest measured here, and claimed.
        let report = engine
            .health(
                &other,
                &owners(&server, &["mysql_connections"]),
                &RunScope::default(),
            )
            .await;
        let results = judge(&other, &report);
        assert!(
            result(&results, "mysql_connections")
                .message
                .contains("measured by target owner")
        );
        assert!(result(&results, "mysql_history_list").value.is_some());
        assert!(!report.server_checks.contains(&"mysql_connections"));
        assert!(report.server_checks.contains(&"mysql_history_list"));
        engine.close(Duration::from_secs(2)).await;
    })
    .await;
}

/// Pooled connections are not pinged before use: one the server has closed (a restart,
/// wait_timeout, a DBA's KILL) is replaced within the round instead of costing it.
#[tokio::test]
async fn connections_killed_by_the_server_are_replaced_within_the_round() {
    with_db(|db| async move {
        let target = db.target("");
        assert!(
            !target.pool.test_before_acquire,
            "the default pings no more"
        );
        let engine = ok(Engine::open(&target), "open engine");
        let mut admin = db.conn().await;
        for round in 0..3 {
            let results = judge(
                &target,
                &engine.health(&target, &stats(), &RunScope::default()).await,
            );
            assert!(
                result(&results, "connectivity").value.is_some(),
                "round {round}: {results:#?}"
            );
            assert!(
                results.iter().all(|r| r.status == Status::Ok),
                "round {round}: {results:#?}"
            );
            let killed = db.kill_other_connections(&mut admin).await;
            assert!(killed > 0, "the engine keeps its connection pooled");
        }
        engine.close(Duration::from_secs(2)).await;
    })
    .await;
}

#[tokio::test]
async fn healthy_database_is_ok_on_the_first_round() {
    with_db(|db| async move {
        let mut c = db.conn().await;
        exec(
            &mut c,
            "CREATE TABLE orders (id INT PRIMARY KEY, note VARCHAR(100))",
        )
        .await;
        exec(
            &mut c,
            "INSERT INTO orders VALUES (1, 'a'), (2, 'b'), (3, 'c')",
        )
        .await;
        let target = db.target("");
        let (report, results) = round(&target).await;
        for check in CHECKS {
            let r = result(&results, check);
            assert_eq!(r.status, Status::Ok, "{check}: {}", r.message);
        }
        assert_eq!(results.len(), CHECKS.len(), "{results:#?}");
        for delta in [
            "mysql_buffer_pool_hit",
            "mysql_deadlocks",
            "mysql_slow_queries",
            "mysql_connection_errors",
            "mysql_tmp_disk_tables",
        ] {
            let r = result(&results, delta);
            assert!(
                r.message.contains("baseline pending"),
                "{delta}: {}",
                r.message
            );
        }
        assert!(result(&results, "connectivity").value.is_some());
        let server = match &report.server_id {
            Some(s) => s.clone(),
            None => panic!("no server id"),
        };
        assert!(
            server.starts_with("mariadb:") || server.starts_with("mysql:"),
            "{server}"
        );
        let conns = result(&results, "mysql_connections");
        assert_eq!(conns.scope, dbwarden::health::Scope::Server(server.clone()));
        assert_eq!(
            result(&results, "mysql_fragmentation").scope,
            dbwarden::health::Scope::Database
        );
        let stat = report
            .table_stats
            .iter()
            .find(|t| t.table == format!("{}.orders", db.name));
        match stat {
            Some(s) => {
                assert!(s.size_bytes.is_some_and(|b| b > 0.0), "{s:?}");
                assert_eq!(s.rows, Some(3.0), "{s:?}");
                assert!(s.free_bytes.is_some(), "{s:?}");
                // Changed and (by InnoDB's automatic recalculation, or not yet) analyzed
                // within the last minute.
                let recent = |t: Option<i64>| {
                    t.is_some_and(|t| (chrono::Utc::now().timestamp() - t).abs() < 60)
                };
                assert!(recent(s.last_modified), "{s:?}");
                assert!(s.last_analyze.is_none() || recent(s.last_analyze), "{s:?}");
            }
            None => panic!("no table stats for orders: {:?}", report.table_stats),
        }

        // A second target on the same server (here: no database at all) is recognized as
        // the same server, so server-wide checks can be shared.
        let other = db.target_for(&url_with_db(&db.base, ""), "");
        let (report2, results2) = round(&other).await;
        assert_eq!(report2.server_id.as_deref(), Some(server.as_str()));
        let frag = result(&results2, "mysql_fragmentation");
        assert_eq!(frag.status, Status::Ok);
        assert!(frag.message.contains("no database"), "{}", frag.message);
    })
    .await;
}

#[tokio::test]
async fn long_query_warns_naming_connection_and_user() {
    with_db(|db| async move {
        let mut sleeper = db.conn().await;
        let id = scalar(&mut sleeper, "SELECT CONNECTION_ID()").await;
        let running = tokio::spawn(async move {
            let r = sqlx::raw_sql("SELECT SLEEP(5), 'secret-literal-4711'")
                .fetch_one(&mut sleeper)
                .await;
            (sleeper, r.is_ok())
        });
        tokio::time::sleep(Duration::from_millis(1600)).await;
        let target =
            db.target(r#"thresholds = { mysql_long_query = { warning = "1s", critical = "1h" } }"#);
        let (report, results) = round(&target).await;
        let r = result(&results, "mysql_long_query");
        assert_eq!(r.status, Status::Warning, "{}", r.message);
        let obs = observations(measurement(&report, "mysql_long_query"));
        let mine = match obs
            .iter()
            .find(|o| o.subject.as_deref() == Some(&format!("connection {id}")))
        {
            Some(o) => o,
            None => panic!("connection {id} not listed: {obs:?}"),
        };
        assert!(mine.value >= 1.0 && mine.value < 60.0, "{mine:?}");
        let detail = mine.detail.clone().unwrap_or_default();
        assert!(detail.contains(&format!("user {}@", db.user())), "{detail}");
        assert!(detail.contains("SELECT SLEEP(?), ?"), "{detail}");
        assert!(!detail.contains("secret-literal"), "{detail}");
        assert!(!r.message.contains("secret-literal"), "{}", r.message);
        let (_c, finished) = ok(running.await, "sleeper");
        assert!(finished);
    })
    .await;
}

#[tokio::test]
async fn connections_over_a_low_threshold_warn() {
    with_db(|db| async move {
        let mut held = Vec::new();
        for _ in 0..5 {
            held.push(db.conn().await);
        }
        let target = db
            .target(r#"thresholds = { mysql_connections = { warning = "1%", critical = "99%" } }"#);
        let (_report, results) = round(&target).await;
        let r = result(&results, "mysql_connections");
        assert_eq!(r.status, Status::Warning, "{}", r.message);
        assert!(
            r.message.contains("of max_connections in use"),
            "{}",
            r.message
        );
        assert!(r.value.is_some_and(|v| v > 0.0));
        drop(held);
    })
    .await;
}

#[tokio::test]
async fn fragmented_table_is_reported() {
    with_db(|db| async move {
        let mut c = db.conn().await;
        exec(
            &mut c,
            "CREATE TABLE churn (id INT AUTO_INCREMENT PRIMARY KEY, pad VARCHAR(1000)) ENGINE=InnoDB",
        )
        .await;
        exec(&mut c, "INSERT INTO churn (pad) VALUES (REPEAT('x', 900))").await;
        for _ in 0..15 {
            exec(&mut c, "INSERT INTO churn (pad) SELECT pad FROM churn").await;
        }
        exec(&mut c, "DELETE FROM churn WHERE id > 3000").await;
        // The space is freed once purge has removed the deleted rows.
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            exec(&mut c, "ANALYZE TABLE churn").await;
            let free: f64 = scalar(
                &mut c,
                "SELECT DATA_FREE / (DATA_LENGTH + INDEX_LENGTH + DATA_FREE) FROM information_schema.TABLES \
                 WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'churn'",
            )
            .await
            .parse()
            .unwrap_or(0.0);
            if free > 0.5 {
                break;
            }
            assert!(Instant::now() < deadline, "purge did not free the deleted rows' space ({free})");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let target = db.target(r#"thresholds = { mysql_fragmentation = { min_size = "1MB" } }"#);
        let (_report, results) = round(&target).await;
        let r = result(&results, "mysql_fragmentation");
        assert_eq!(r.status, Status::Critical, "{}", r.message);
        assert_eq!(r.subject.as_deref(), Some(format!("table {}.churn", db.name).as_str()));
        assert!(r.message.contains("OPTIMIZE TABLE"), "{}", r.message);

        // With the default 100 MB floor the same table is too small to judge.
        let (_report, results) = round(&db.target("")).await;
        let r = result(&results, "mysql_fragmentation");
        assert_eq!(r.status, Status::Ok, "{}", r.message);
    })
    .await;
}

#[tokio::test]
async fn deadlock_shows_on_the_next_round() {
    with_db(|db| async move {
        let mut c1 = db.conn().await;
        let mut c2 = db.conn().await;
        exec(
            &mut c1,
            "CREATE TABLE acct (id INT PRIMARY KEY, v INT) ENGINE=InnoDB",
        )
        .await;
        exec(&mut c1, "INSERT INTO acct VALUES (1, 0), (2, 0)").await;
        let target = db.target("");
        let engine = ok(Engine::open(&target), "open");
        let first_report = engine.health(&target, &stats(), &RunScope::default()).await;
        assert_eq!(first_report.table_stats.len(), 1);
        let first = judge(&target, &first_report);
        assert!(
            result(&first, "mysql_deadlocks")
                .message
                .contains("baseline pending")
        );

        exec(&mut c1, "BEGIN").await;
        exec(&mut c1, "UPDATE acct SET v = v + 1 WHERE id = 1").await;
        exec(&mut c2, "BEGIN").await;
        exec(&mut c2, "UPDATE acct SET v = v + 1 WHERE id = 2").await;
        let blocked = tokio::spawn(async move {
            let r = sqlx::raw_sql("UPDATE acct SET v = v + 1 WHERE id = 2")
                .execute(&mut c1)
                .await;
            (c1, r.err().map(|e| e.to_string()))
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        let second = sqlx::raw_sql("UPDATE acct SET v = v + 1 WHERE id = 1")
            .execute(&mut c2)
            .await
            .err()
            .map(|e| e.to_string());
        let (mut c1, first_err) = ok(blocked.await, "blocked update");
        let errors: Vec<String> = [first_err, second].into_iter().flatten().collect();
        assert!(
            errors
                .iter()
                .any(|e| e.contains("1213") || e.contains("Deadlock")),
            "{errors:?}"
        );
        exec(&mut c1, "ROLLBACK").await;
        exec(&mut c2, "ROLLBACK").await;

        let report = engine
            .health(&target, &HealthOptions::default(), &RunScope::default())
            .await;
        let results = judge(&target, &report);
        // information_schema.TABLES is read at most every 5 minutes: the second round
        // reuses the first round's fragmentation result and reports no table stats.
        assert!(report.table_stats.is_empty(), "{:?}", report.table_stats);
        let frag = observations(measurement(&report, "mysql_fragmentation"));
        assert_eq!(frag.len(), 1, "{frag:?}");
        assert!(
            frag[0]
                .detail
                .as_deref()
                .is_some_and(|d| d.contains("measured")),
            "{frag:?}"
        );
        let r = result(&results, "mysql_deadlocks");
        assert_eq!(r.status, Status::Warning, "{}", r.message);
        assert!(r.value.is_some_and(|v| v >= 1.0), "{r:?}");
        assert!(r.message.contains("in the last"), "{}", r.message);
        engine.close(Duration::from_secs(2)).await;
    })
    .await;
}

#[tokio::test]
async fn slow_queries_show_as_a_delta() {
    with_db(|db| async move {
        let target = db
            .target(r#"thresholds = { mysql_slow_queries = { warning = 3, critical = 1000000 } }"#);
        let engine = ok(Engine::open(&target), "open");
        let first = judge(
            &target,
            &engine.health(&target, &stats(), &RunScope::default()).await,
        );
        assert!(
            result(&first, "mysql_slow_queries")
                .message
                .contains("baseline pending")
        );
        let mut c = db.conn().await;
        exec(&mut c, "SET SESSION long_query_time = 0").await;
        for _ in 0..4 {
            scalar(&mut c, "SELECT 1").await;
        }
        let results = judge(
            &target,
            &engine.health(&target, &stats(), &RunScope::default()).await,
        );
        let r = result(&results, "mysql_slow_queries");
        assert_eq!(r.status, Status::Warning, "{}", r.message);
        assert!(r.value.is_some_and(|v| v >= 4.0), "{r:?}");
        engine.close(Duration::from_secs(2)).await;
    })
    .await;
}

#[tokio::test]
async fn history_list_grows_behind_an_old_snapshot() {
    with_db(|db| async move {
        let mut reader = db.conn().await;
        let mut writer = db.conn().await;
        exec(
            &mut writer,
            "CREATE TABLE h (id INT PRIMARY KEY, v INT) ENGINE=InnoDB",
        )
        .await;
        exec(&mut writer, "INSERT INTO h VALUES (1, 0)").await;
        let reader_id = scalar(&mut reader, "SELECT CONNECTION_ID()").await;
        exec(&mut reader, "START TRANSACTION WITH CONSISTENT SNAPSHOT").await;
        scalar(&mut reader, "SELECT COUNT(*) FROM h").await;
        for _ in 0..300 {
            exec(&mut writer, "UPDATE h SET v = v + 1 WHERE id = 1").await;
        }
        let target = db.target(
            r#"thresholds = { mysql_history_list = { warning = 200, critical = 100000000 } }"#,
        );
        let (_report, mut results) = round(&target).await;
        // information_schema.INNODB_TRX is a server-wide cache refreshed at most every
        // 100 ms, and the other tests of this binary read it in their rounds: a round right
        // after another may see it without our reader. A second round, past the refresh
        // interval, must name a transaction.
        if !result(&results, "mysql_history_list")
            .message
            .contains("oldest transaction")
        {
            tokio::time::sleep(Duration::from_millis(250)).await;
            results = round(&target).await.1;
        }
        exec(&mut reader, "COMMIT").await;
        let r = result(&results, "mysql_history_list");
        assert_eq!(r.status, Status::Warning, "{}", r.message);
        assert!(r.value.is_some_and(|v| v >= 300.0), "{r:?}");
        assert!(
            r.message.contains("oldest transaction: connection"),
            "{}",
            r.message
        );
        // Another test's transaction may be older; ours is usually the one named.
        if !r.message.contains(&format!("connection {reader_id},")) {
            println!(
                "note: an older transaction than the test's was named: {}",
                r.message
            );
        }
    })
    .await;
}

#[tokio::test]
async fn missing_privilege_is_unknown_with_the_grant() {
    with_db(|db| async move {
        let mut admin = db.conn().await;
        let target = db.limited_target(&mut admin).await;
        let (user, pw) = (db.name.clone(), db.dir.join("limited.password"));
        let (_report, results) = round(&target).await;
        assert_eq!(result(&results, "connectivity").status, Status::Ok);
        assert_eq!(result(&results, "mysql_connections").status, Status::Ok);
        let lq = result(&results, "mysql_long_query");
        assert_eq!(lq.status, Status::Unknown, "{}", lq.message);
        assert!(
            lq.message
                .contains(&format!("GRANT PROCESS ON *.* TO '{user}'@'%'")),
            "{}",
            lq.message
        );
        for check in ["mysql_replica_lag", "mysql_replica_threads"] {
            let r = result(&results, check);
            assert_eq!(r.status, Status::Unknown, "{check}: {}", r.message);
            assert!(r.message.contains("fix: GRANT "), "{check}: {}", r.message);
            assert!(
                r.message.contains(&format!("ON *.* TO '{user}'@'%'")),
                "{check}: {}",
                r.message
            );
        }

        // The wrong password: CRITICAL, says so, and never shows it.
        ok(std::fs::write(&pw, "not-the-password\n"), "password file");
        let started = Instant::now();
        let (_report, results) = round(&target).await;
        let c = result(&results, "connectivity");
        assert_eq!(c.status, Status::Critical, "{}", c.message);
        assert!(
            c.message.contains("access denied for user"),
            "{}",
            c.message
        );
        assert!(!c.message.contains("not-the-password"), "{}", c.message);
        assert!(started.elapsed() < Duration::from_secs(4));
    })
    .await;
}

/// Needs no server: nothing listens on port 1.
#[tokio::test]
async fn down_target_is_critical_within_the_connect_timeout() {
    let dir = ok(tempfile::tempdir(), "tempdir");
    let db = TestDb {
        base: "mysql://root@127.0.0.1:1/x".into(),
        name: "x".into(),
        dir: dir.path().to_path_buf(),
    };
    let target = db.target(r#"pool = { connect_timeout = "1s" }"#);
    let started = Instant::now();
    let (report, results) = round(&target).await;
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(4), "took {elapsed:?}");
    let c = result(&results, "connectivity");
    assert_eq!(c.status, Status::Critical);
    assert!(
        c.message.contains("connection refused at 127.0.0.1:1"),
        "{}",
        c.message
    );
    for check in &CHECKS[1..] {
        assert_eq!(result(&results, check).status, Status::Unknown, "{check}");
    }
    assert!(report.server_id.is_none());
}

#[tokio::test]
async fn cancel_when_idle_is_harmless() {
    with_db(|db| async move {
        let target = db.target("");
        let engine = ok(Engine::open(&target), "open");
        engine.cancel(&RunScope::default()).await;
        let results = judge(
            &target,
            &engine.health(&target, &stats(), &RunScope::default()).await,
        );
        assert_eq!(result(&results, "connectivity").status, Status::Ok);
        engine.cancel(&RunScope::default()).await;
        let results = judge(
            &target,
            &engine.health(&target, &stats(), &RunScope::default()).await,
        );
        assert_eq!(result(&results, "connectivity").status, Status::Ok);
        engine.close(Duration::from_secs(2)).await;
    })
    .await;
}

/// Needs no server: the `mariadb://` scheme works like `mysql://`.
#[tokio::test]
async fn mariadb_scheme_is_accepted() {
    let dir = ok(tempfile::tempdir(), "tempdir");
    let db = TestDb {
        base: "mariadb://root@127.0.0.1:1/x".into(),
        name: "x".into(),
        dir: dir.path().to_path_buf(),
    };
    let target = db.target(r#"pool = { connect_timeout = "1s" }"#);
    let (_report, results) = round(&target).await;
    let c = result(&results, "connectivity");
    assert!(c.message.contains("connection refused"), "{}", c.message);
}

/// Needs no server: a URL the driver rejects fails `open` without showing the password.
#[test]
fn a_bad_url_option_fails_open_without_the_password() {
    let dir = ok(tempfile::tempdir(), "tempdir");
    let db = TestDb {
        base: "mysql://root:sekrit@127.0.0.1:3306/x?ssl-mode=bogus".into(),
        name: "x".into(),
        dir: dir.path().to_path_buf(),
    };
    let target = db.target("");
    match Engine::open(&target) {
        Ok(_) => panic!("ssl-mode=bogus was accepted"),
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains("ssl"), "{msg}");
            assert!(!msg.contains("sekrit"), "{msg}");
        }
    }
}

/// With performance_schema on, table statistics carry the writes since the previous
/// reading and the rows read with and without an index; a missing SELECT on
/// performance_schema only leaves those fields empty.
#[tokio::test]
async fn table_writes_and_reads_come_from_performance_schema() {
    with_db_on(ps_base_url(), |db| async move {
        let mut c = db.conn().await;
        assert_eq!(
            scalar(&mut c, "SELECT @@performance_schema").await,
            "1",
            "DBWARDEN_TEST_MYSQL_PS_URL must point at a server with performance_schema ON"
        );
        create_items(&mut c).await;
        let items = format!("{}.items", db.name);
        let target = db.target("");
        let engine = ok(Engine::open(&target), "open");

        let first = engine.health(&target, &stats(), &RunScope::default()).await;
        assert_round_ok(&judge(&target, &first), true);
        let s = table_stat(&first, &items);
        // First reading: the baseline, no deltas yet; the lifetime fetch counts are there.
        assert_eq!(
            (s.inserts_delta, s.updates_delta, s.deletes_delta),
            (None, None, None),
            "{s:?}"
        );
        let (Some(scan0), Some(index0)) = (s.seq_scans, s.idx_scans) else {
            panic!("no fetch counts: {s:?}")
        };

        write_and_read_items(&mut c).await;
        refresh_tables(&engine).await;
        let second = engine.health(&target, &stats(), &RunScope::default()).await;
        assert_round_ok(&judge(&target, &second), false);
        let s = table_stat(&second, &items);
        assert_eq!(
            (s.inserts_delta, s.updates_delta, s.deletes_delta),
            (Some(5.0), Some(4.0), Some(2.0)),
            "{s:?}"
        );
        assert!(s.rows.is_some(), "{s:?}");
        // Rows read, not scans: the full scan read all 6 rows without an index.
        let (Some(scan1), Some(index1)) = (s.seq_scans, s.idx_scans) else {
            panic!("no fetch counts: {s:?}")
        };
        assert!(scan1 - scan0 >= 6.0, "{scan0} -> {scan1}");
        assert!(index1 - index0 >= 1.0, "{index0} -> {index1}");

        // Without the cached result the next round without writes has zero deltas.
        refresh_tables(&engine).await;
        let third = engine.health(&target, &stats(), &RunScope::default()).await;
        let s = table_stat(&third, &items);
        assert_eq!(
            (s.inserts_delta, s.updates_delta, s.deletes_delta),
            (Some(0.0), Some(0.0), Some(0.0)),
            "{s:?}"
        );
        // Between refreshes the result is reused and no table stats are reported.
        let cached = engine
            .health(&target, &HealthOptions::default(), &RunScope::default())
            .await;
        assert!(cached.table_stats.is_empty(), "{:?}", cached.table_stats);

        // A lost connection may be a restart (counters from zero): no delta across it.
        assert!(db.kill_other_connections(&mut c).await > 0);
        refresh_tables(&engine).await;
        let after_loss = engine.health(&target, &stats(), &RunScope::default()).await;
        assert_round_ok(&judge(&target, &after_loss), false);
        let s = table_stat(&after_loss, &items);
        assert_eq!(s.inserts_delta, None, "{s:?}");
        engine.close(Duration::from_secs(2)).await;

        // An account without SELECT on performance_schema: the same table stats without
        // those fields, and the table checks unchanged.
        let limited = db.limited_target(&mut c).await;
        let (report, results) = round(&limited).await;
        for check in ["connectivity", "mysql_fragmentation"] {
            let r = result(&results, check);
            assert_eq!(r.status, Status::Ok, "{check}: {}", r.message);
        }
        let s = table_stat(&report, &items);
        assert!(s.size_bytes.is_some(), "{s:?}");
        assert_eq!(
            (s.inserts_delta, s.seq_scans, s.idx_scans),
            (None, None, None),
            "{s:?}"
        );
    })
    .await;
}

/// With performance_schema off (the MariaDB default) the round is the same and the
/// table statistics have no write deltas or fetch counts.
#[tokio::test]
async fn table_stats_without_performance_schema_have_no_counters() {
    with_db(|db| async move {
        let mut c = db.conn().await;
        if scalar(&mut c, "SELECT @@performance_schema").await != "0" {
            println!("skipping: performance_schema is on at DBWARDEN_TEST_MYSQL_URL");
            return;
        }
        create_items(&mut c).await;
        let items = format!("{}.items", db.name);
        let target = db.target("");
        let engine = ok(Engine::open(&target), "open");
        let first = engine.health(&target, &stats(), &RunScope::default()).await;
        assert_round_ok(&judge(&target, &first), true);
        write_and_read_items(&mut c).await;
        refresh_tables(&engine).await;
        let second = engine.health(&target, &stats(), &RunScope::default()).await;
        assert_round_ok(&judge(&target, &second), false);
        for report in [&first, &second] {
            let s = table_stat(report, &items);
            assert!(s.size_bytes.is_some() && s.rows.is_some(), "{s:?}");
            assert_eq!(
                (
                    s.inserts_delta,
                    s.updates_delta,
                    s.deletes_delta,
                    s.seq_scans,
                    s.idx_scans
                ),
                (None, None, None, None, None),
                "{s:?}"
            );
        }
        engine.close(Duration::from_secs(2)).await;
    })
    .await;
}

/// Whether MySQL connection `id` is running a statement now.
async fn running(c: &mut MySqlConnection, id: u64) -> bool {
    let row = ok(
        sqlx::raw_sql(AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = {id} AND COMMAND = 'Query'"
        )))
        .fetch_one(&mut *c)
        .await,
        "processlist",
    );
    let n: i64 = ok(row.try_get(0), "count");
    n > 0
}

/// The connection id `scope` holds (waits until the run registered it).
async fn scope_id(scope: &RunScope) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(s) = scope.sessions().first() {
            return s.id;
        }
        assert!(
            Instant::now() < deadline,
            "the run never registered its session"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn cancelling_a_run_stops_only_its_own_statements() {
    with_db(|db| async move {
        let target = db.target("");
        let engine = std::sync::Arc::new(ok(Engine::open(&target), "open"));
        let (scope_a, scope_b) = (RunScope::default(), RunScope::default());
        let run = |scope: &RunScope| {
            let (e, scope) = (engine.clone(), scope.clone());
            tokio::spawn(async move {
                match &*e {
                    Engine::Mysql(m) => m.run_in_scope("SELECT SLEEP(5)", &scope).await,
                    _ => Ok(()),
                }
            })
        };
        let (run_a, run_b) = (run(&scope_a), run(&scope_b));
        let (id_a, id_b) = (scope_id(&scope_a).await, scope_id(&scope_b).await);
        assert_ne!(id_a, id_b);
        let mut c = db.conn().await;
        let deadline = Instant::now() + Duration::from_secs(3);
        while !(running(&mut c, id_a).await && running(&mut c, id_b).await) {
            assert!(Instant::now() < deadline, "the statements never ran");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        engine.cancel(&scope_a).await;
        let a = ok(run_a.await, "run A");
        assert!(
            a.as_ref().is_err_and(|m| m.contains("interrupted")),
            "run A was not cancelled: {a:?}"
        );
        // B's statement is untouched by A's cancel.
        assert!(running(&mut c, id_b).await, "run B was stopped too");
        assert!(!run_b.is_finished());

        engine.cancel(&scope_b).await;
        let b = ok(run_b.await, "run B");
        assert!(
            b.as_ref().is_err_and(|m| m.contains("interrupted")),
            "run B was not cancelled: {b:?}"
        );
        assert!(scope_a.sessions().is_empty() && scope_b.sessions().is_empty());
        engine.close(Duration::from_secs(2)).await;
    })
    .await;
}
