//! The second-pass MySQL/MariaDB checks against the real servers: each is provoked where
//! the server can show it, and seen OK where it should be. Set DBWARDEN_TEST_MYSQL_URL
//! (shared MariaDB, performance_schema off) and DBWARDEN_TEST_MYSQL_PS_URL (the throwaway
//! one on 3307, where the replication tests configure a named channel and remove it);
//! without them these tests print "skipping" and pass, unless DBWARDEN_REQUIRE_SERVICES=1.
//! Galera and Group Replication are not available here: `src/engine/mysql/checks.rs`
//! tests them from captured output.

mod common;

use common::url_from_env;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use dbwarden::config::Target;
use dbwarden::engine::{Engine, HealthOptions, RunScope, catalog};
use dbwarden::health::{CheckResult, Status, evaluate};
use sqlx::mysql::MySqlConnection;
use sqlx::{AssertSqlSafe, Connection, Row};

fn ok<T, E: std::fmt::Display>(r: Result<T, E>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{what}: {e}"),
    }
}

fn url_with_db(base: &str, db: &str) -> String {
    let mut u = ok(url::Url::parse(base), "the test server's URL");
    u.set_path(db);
    u.to_string()
}

struct TestDb {
    base: String,
    name: String,
    dir: PathBuf,
}

impl TestDb {
    fn url(&self) -> String {
        url_with_db(&self.base, &self.name)
    }

    async fn conn(&self) -> MySqlConnection {
        ok(MySqlConnection::connect(&self.url()).await, "connect")
    }

    /// A target "m" for this database with extra TOML lines in its [[target]].
    fn target(&self, extra: &str) -> Target {
        self.target_for(&self.url(), extra)
    }

    fn target_for(&self, url: &str, extra: &str) -> Target {
        let path = self
            .dir
            .join(format!("dbwarden-{}.toml", rand::random::<u32>()));
        let toml = format!("[[target]]\nname = \"m\"\nurl = \"{url}\"\n{extra}\n");
        ok(std::fs::write(&path, toml), "write config");
        let config = ok(dbwarden::config::load(&path), "config");
        match config.targets.into_iter().next() {
            Some(t) => t,
            None => panic!("no target in the config"),
        }
    }

    /// A user named like the database (dropped with it) with only SELECT on it.
    async fn limited_target(&self, admin: &mut MySqlConnection) -> Target {
        let user = self.name.clone();
        exec(
            admin,
            format!("CREATE USER '{user}'@'%' IDENTIFIED BY 'pw-{user}'"),
        )
        .await;
        exec(admin, format!("GRANT SELECT ON `{user}`.* TO '{user}'@'%'")).await;
        let mut u = ok(url::Url::parse(&self.url()), "url");
        let _ = u.set_username(&user);
        let _ = u.set_password(Some(&format!("pw-{user}")));
        self.target_for(u.as_str(), "")
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

/// Runs `body` with a fresh database `dbw_t_<random>` on the server at `base` (`None`:
/// skipped), dropped afterwards with its user, also when the body panics.
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
    let mut admin = ok(MySqlConnection::connect(&base).await, "connect");
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

async fn with_db<F, Fut>(body: F)
where
    F: FnOnce(TestDb) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    with_db_on(url_from_env("DBWARDEN_TEST_MYSQL_URL"), body).await
}

/// One round of `engine` for `target`, judged.
async fn judged(engine: &Engine, target: &Target) -> Vec<CheckResult> {
    let report = engine
        .health(target, &HealthOptions::default(), &RunScope::default())
        .await;
    report
        .measurements
        .iter()
        .map(|m| match catalog::spec(m.check) {
            Some(spec) => evaluate(m, spec, &target.thresholds_for(spec)),
            None => panic!("check {} is not in the catalogue", m.check),
        })
        .collect()
}

async fn one_round(target: &Target) -> Vec<CheckResult> {
    let engine = ok(Engine::open(target), "open engine");
    let r = judged(&engine, target).await;
    engine.close(Duration::from_secs(2)).await;
    r
}

fn result<'a>(results: &'a [CheckResult], check: &str) -> &'a CheckResult {
    match results.iter().find(|r| r.check == check) {
        Some(r) => r,
        None => panic!("no result for {check} in {results:#?}"),
    }
}

#[tokio::test]
async fn auto_increment_near_the_types_end_is_critical() {
    with_db(|db| async move {
        let mut c = db.conn().await;
        exec(
            &mut c,
            "CREATE TABLE roomy (id INT UNSIGNED AUTO_INCREMENT PRIMARY KEY, v INT)",
        )
        .await;
        exec(&mut c, "INSERT INTO roomy (v) VALUES (1), (2)").await;
        let target = db.target("");
        let r = one_round(&target).await;
        let ai = result(&r, "mysql_auto_increment");
        assert_eq!(ai.status, Status::Ok, "{}", ai.message);
        assert!(ai.value.is_some_and(|v| v < 0.001), "{ai:?}");

        // A signed tinyint that has handed out 124 of its 127 values.
        exec(
            &mut c,
            "CREATE TABLE tiny (id TINYINT AUTO_INCREMENT PRIMARY KEY, v INT)",
        )
        .await;
        exec(&mut c, "INSERT INTO tiny VALUES (124, 1)").await;
        let r = one_round(&target).await;
        let ai = result(&r, "mysql_auto_increment");
        assert_eq!(ai.status, Status::Critical, "{}", ai.message);
        assert_eq!(
            ai.subject.as_deref(),
            Some(format!("column {}.tiny.id", db.name).as_str())
        );
        assert!(ai.message.contains("next value 125"), "{}", ai.message);
        // The same values in an unsigned tinyint are under half its range.
        exec(
            &mut c,
            "ALTER TABLE tiny MODIFY id TINYINT UNSIGNED AUTO_INCREMENT",
        )
        .await;
        let r = one_round(&target).await;
        let ai = result(&r, "mysql_auto_increment");
        assert_eq!(ai.status, Status::Ok, "{}", ai.message);
        let _ = c.close().await;
    })
    .await;
}

/// A session idle inside an open transaction is named, with its user and idle time.
#[tokio::test]
async fn idle_open_transaction_is_reported() {
    with_db(|db| async move {
        let mut c = db.conn().await;
        exec(&mut c, "CREATE TABLE t (id INT PRIMARY KEY)").await;
        let target = db.target(
            r#"thresholds = { mysql_long_transaction = { warning = "2s", critical = "1h" } }"#,
        );
        let mut holder = db.conn().await;
        let id = scalar(&mut holder, "SELECT CONNECTION_ID()").await;
        let mine = format!("connection {id}");
        let before = one_round(&target).await;
        assert!(
            !result(&before, "mysql_long_transaction")
                .message
                .contains(&mine),
            "no transaction open yet"
        );
        exec(&mut holder, "BEGIN").await;
        exec(&mut holder, "INSERT INTO t VALUES (1)").await;
        // Wait (a deadline, not a timing assertion) until the transaction is 3 s old.
        let mut admin = db.conn().await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let age = scalar(
                &mut admin,
                &format!(
                    "SELECT COALESCE(MAX(TIMESTAMPDIFF(SECOND, trx_started, NOW())), 0) \
                     FROM information_schema.INNODB_TRX WHERE trx_mysql_thread_id = {id}"
                ),
            )
            .await;
            if age.parse::<i64>().unwrap_or(0) >= 3 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "transaction age {age}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let r = one_round(&target).await;
        let lt = result(&r, "mysql_long_transaction");
        assert_ne!(lt.status, Status::Ok, "{}", lt.message);
        let engine = ok(Engine::open(&target), "open engine");
        let report = engine
            .health(&target, &HealthOptions::default(), &RunScope::default())
            .await;
        engine.close(Duration::from_secs(2)).await;
        let details: Vec<String> = report
            .measurements
            .iter()
            .filter(|m| m.check == "mysql_long_transaction")
            .flat_map(|m| match &m.outcome {
                dbwarden::health::Outcome::Values(v) => v.clone(),
                other => panic!("{other:?}"),
            })
            .filter(|o| o.subject.as_deref() == Some(mine.as_str()))
            .filter_map(|o| o.detail)
            .collect();
        assert_eq!(details.len(), 1, "{report:?}");
        assert!(details[0].contains("idle in transaction"), "{details:?}");
        assert!(details[0].contains("user root@"), "{details:?}");
        exec(&mut holder, "ROLLBACK").await;
        let _ = holder.close().await;
        let _ = admin.close().await;
        let _ = c.close().await;
    })
    .await;
}

/// Failed logins between two rounds show as connection errors; the first round is a
/// baseline.
#[tokio::test]
async fn failed_logins_are_connection_errors() {
    with_db(|db| async move {
        let target = db.target("");
        let engine = ok(Engine::open(&target), "open engine");
        let first = judged(&engine, &target).await;
        let ce = result(&first, "mysql_connection_errors");
        assert_eq!(ce.status, Status::Ok);
        assert!(ce.message.contains("baseline pending"), "{}", ce.message);
        let mut bad = ok(url::Url::parse(&db.url()), "url");
        let _ = bad.set_username("dbw_no_such_user");
        let _ = bad.set_password(Some("wrong"));
        for _ in 0..12 {
            assert!(MySqlConnection::connect(bad.as_str()).await.is_err());
        }
        let second = judged(&engine, &target).await;
        let ce = result(&second, "mysql_connection_errors");
        assert_ne!(ce.status, Status::Ok, "{}", ce.message);
        assert!(ce.value.is_some_and(|v| v >= 12.0), "{ce:?}");
        assert!(ce.message.contains("aborted connects"), "{}", ce.message);
        engine.close(Duration::from_secs(2)).await;
    })
    .await;
}

/// GROUP BY on a TEXT column needs an on-disk temporary table.
#[tokio::test]
async fn temporary_tables_on_disk_are_reported() {
    with_db(|db| async move {
        let mut c = db.conn().await;
        exec(&mut c, "CREATE TABLE notes (id INT PRIMARY KEY, body TEXT)").await;
        exec(&mut c, "INSERT INTO notes VALUES (1, 'a'), (2, 'b'), (3, 'a')").await;
        let target = db.target("");
        let engine = ok(Engine::open(&target), "open engine");
        let first = judged(&engine, &target).await;
        assert_eq!(result(&first, "mysql_tmp_disk_tables").status, Status::Ok);
        let disk_before = scalar(
            &mut c,
            "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'CREATED_TMP_DISK_TABLES'",
        )
        .await;
        for _ in 0..150 {
            exec(
                &mut c,
                "SELECT body, COUNT(*) FROM notes GROUP BY body ORDER BY COUNT(*)",
            )
            .await;
        }
        let disk_after = scalar(
            &mut c,
            "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'CREATED_TMP_DISK_TABLES'",
        )
        .await;
        let grew = disk_after.parse::<f64>().unwrap_or(0.0) - disk_before.parse::<f64>().unwrap_or(0.0);
        assert!(grew >= 150.0, "the query did not use disk tables: {grew}");
        let second = judged(&engine, &target).await;
        let tmp = result(&second, "mysql_tmp_disk_tables");
        assert_ne!(tmp.status, Status::Ok, "{}", tmp.message);
        assert!(tmp.value.is_some_and(|v| v >= 50.0), "{tmp:?}");
        engine.close(Duration::from_secs(2)).await;
        let _ = c.close().await;
    })
    .await;
}

/// Binary logging is off on the test servers; a missing privilege is UNKNOWN with the
/// GRANT MariaDB asks for. Not a Galera node nor a Group Replication member: OK.
#[tokio::test]
async fn binlog_off_and_not_a_cluster_member() {
    with_db(|db| async move {
        let mut admin = db.conn().await;
        let log_bin = scalar(&mut admin, "SELECT @@log_bin").await;
        let r = one_round(&db.target("")).await;
        let bl = result(&r, "mysql_binlog_space");
        if log_bin == "0" {
            assert_eq!(bl.status, Status::Ok);
            assert_eq!(bl.message, "binary logging off");
        } else {
            assert!(bl.value.is_some_and(|v| v > 0.0), "{bl:?}");
        }
        let cl = result(&r, "mysql_cluster");
        assert_eq!(
            (cl.status, cl.message.as_str()),
            (Status::Ok, "not a cluster member")
        );

        let limited = db.limited_target(&mut admin).await;
        let r = one_round(&limited).await;
        let bl = result(&r, "mysql_binlog_space");
        assert_eq!(bl.status, Status::Unknown, "{}", bl.message);
        let version = scalar(&mut admin, "SELECT VERSION()").await;
        let wanted = if version.contains("MariaDB") {
            "GRANT BINLOG MONITOR ON *.*"
        } else {
            "GRANT REPLICATION CLIENT ON *.*"
        };
        assert!(bl.message.contains(wanted), "{}", bl.message);
        let lt = result(&r, "mysql_long_transaction");
        assert_eq!(lt.status, Status::Unknown, "{}", lt.message);
        assert!(
            lt.message.contains("GRANT PROCESS ON *.*"),
            "{}",
            lt.message
        );
        let _ = admin.close().await;
    })
    .await;
}

/// A replication channel whose source does not answer: its IO thread stays
/// `Connecting` (a real one, on the throwaway server), so its lag is unknown rather than
/// 0, and the thread check is WARNING, then CRITICAL once it has been connecting for 5
/// minutes. The channel has a real SQL_Delay. Always removed afterwards.
#[tokio::test]
async fn connecting_io_thread_is_unknown_lag_then_critical() {
    with_db_on(
        url_from_env("DBWARDEN_TEST_MYSQL_PS_URL"),
        |db| async move {
            let mut admin = db.conn().await;
            let version = scalar(&mut admin, "SELECT VERSION()").await;
            if !version.contains("MariaDB") {
                common::skip("the named-channel syntax here is MariaDB's");
                return;
            }
            let channel = format!("dbw_{:08x}", rand::random::<u32>());
            exec(
                &mut admin,
                format!(
                    "CHANGE MASTER '{channel}' TO MASTER_HOST = '127.0.0.1', MASTER_PORT = 1, \
                 MASTER_USER = 'nobody', MASTER_DELAY = 3600, MASTER_CONNECT_RETRY = 60"
                ),
            )
            .await;
            exec(&mut admin, format!("START SLAVE '{channel}'")).await;
            let target = db.target("");
            let engine = ok(Engine::open(&target), "open engine");
            // Wait (deadline only) until the server shows the IO thread connecting.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            loop {
                let rows = ok(
                    sqlx::raw_sql(AssertSqlSafe(format!("SHOW SLAVE '{channel}' STATUS")))
                        .fetch_all(&mut admin)
                        .await,
                    "show slave status",
                );
                let io: String = rows
                    .first()
                    .and_then(|r| {
                        r.try_get_unchecked::<Option<Vec<u8>>, _>("Slave_IO_Running")
                            .ok()
                    })
                    .flatten()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                if io == "Connecting" {
                    break;
                }
                assert!(tokio::time::Instant::now() < deadline, "IO thread {io:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let outcome = tokio::spawn({
                let target = target.clone();
                let engine = std::sync::Arc::new(engine);
                let e = engine.clone();
                let channel = channel.clone();
                async move {
                    let first = judged(&e, &target).await;
                    let th = result(&first, "mysql_replica_threads");
                    assert_eq!(th.status, Status::Warning, "{}", th.message);
                    assert!(
                        th.message.contains(&format!("channel '{channel}'"))
                            && th.message.contains("IO thread connecting"),
                        "{}",
                        th.message
                    );
                    let lag = result(&first, "mysql_replica_lag");
                    assert_eq!(lag.status, Status::Unknown, "{}", lag.message);
                    assert!(
                        lag.message.contains("IO thread Connecting"),
                        "{}",
                        lag.message
                    );
                    match &*e {
                        Engine::Mysql(m) => m.backdate_connecting(Duration::from_secs(301)),
                        _ => panic!("not a MySQL engine"),
                    }
                    let later = judged(&e, &target).await;
                    let th = result(&later, "mysql_replica_threads");
                    assert_eq!(th.status, Status::Critical, "{}", th.message);
                    e.close(Duration::from_secs(2)).await;
                }
            })
            .await;
            exec(&mut admin, format!("STOP SLAVE '{channel}'")).await;
            exec(&mut admin, format!("RESET SLAVE '{channel}' ALL")).await;
            let _ = admin.close().await;
            if let Err(e) = outcome
                && e.is_panic()
            {
                std::panic::resume_unwind(e.into_panic());
            }
        },
    )
    .await;
}
