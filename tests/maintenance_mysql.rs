//! MySQL/MariaDB maintenance against the real MariaDB (DBWARDEN_TEST_MYSQL_URL): ANALYZE
//! of stale tables, OPTIMIZE of fragmented ones only inside the window, the per-database
//! GET_LOCK, and lock_wait_timeout. Each test uses its own scratch database `dbw_m2_*`.

mod common;

use dbwarden::config::Config;
use dbwarden::jobs::maintenance::{MaintenanceReport, Request, maintain};
use sqlx::mysql::MySqlConnection;
use sqlx::{AssertSqlSafe, Connection};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// One maintenance run per server: the tests of this file share MariaDB's server-wide
/// lock, so they take turns.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A scratch database `dbw_m2_<tag>_<pid>`, dropped at the end of a passing test (a failing
/// test leaves it for inspection; the next run of that pid recreates it).
struct Scratch {
    base: String,
    name: String,
}

impl Scratch {
    async fn new(tag: &str) -> Option<Scratch> {
        let base = common::url_from_env("DBWARDEN_TEST_MYSQL_URL")?;
        let name = format!("dbw_m2_{tag}_{}", std::process::id());
        let mut c = MySqlConnection::connect(&base)
            .await
            .unwrap_or_else(|e| panic!("connect: {e}"));
        exec(&mut c, &format!("DROP DATABASE IF EXISTS `{name}`")).await;
        exec(&mut c, &format!("CREATE DATABASE `{name}`")).await;
        Some(Scratch { base, name })
    }

    fn url(&self) -> String {
        let (head, _) = self.base.rsplit_once('/').unwrap_or((&self.base, ""));
        format!("{head}/{}", self.name)
    }

    async fn conn(&self) -> MySqlConnection {
        MySqlConnection::connect(&self.url())
            .await
            .unwrap_or_else(|e| panic!("connect: {e}"))
    }

    async fn drop_db(self) {
        let mut c = MySqlConnection::connect(&self.base)
            .await
            .unwrap_or_else(|e| panic!("connect: {e}"));
        exec(&mut c, &format!("DROP DATABASE IF EXISTS `{}`", self.name)).await;
    }
}

async fn exec(c: &mut MySqlConnection, sql: &str) {
    sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
        .execute(c)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// A config with the MariaDB target `my` (with `target_extra` keys) and a maintenance job
/// with `extra` keys.
fn config(url: &str, target_extra: &str, extra: &str) -> (tempfile::TempDir, Config) {
    common::maint::config(
        "my",
        url,
        target_extra,
        &format!("lock_timeout = \"1s\"\n{extra}"),
    )
}

fn request(c: &Config) -> Request<'_> {
    let t = c.target("my").unwrap_or_else(|| panic!("no target"));
    let p = c
        .job("nightly")
        .and_then(|j| j.params.maintenance())
        .unwrap_or_else(|| panic!("no job"));
    Request {
        target: t,
        params: p,
        tz: c.timezone,
        use_window: false,
        dry_run: false,
        watch_vacuum: None,
        status: &|| None,
        history: None,
    }
}

async fn run(c: &Config) -> MaintenanceReport {
    maintain(request(c), &CancellationToken::new(), |_| {}, |_| {})
        .await
        .unwrap_or_else(|e| panic!("maintain: {e}"))
}

fn outcomes(r: &MaintenanceReport) -> Vec<String> {
    r.records
        .iter()
        .map(|x| format!("{} {} {}", x.step.table, x.step.action.as_str(), x.outcome))
        .collect()
}

/// A window open now (UTC) and one closed now.
fn windows() -> (String, String) {
    use chrono::Timelike;
    let h = chrono::Utc::now().hour();
    (
        format!("{:02}:00-{:02}:00", h, (h + 2) % 24),
        format!("{:02}:00-{:02}:00", (h + 2) % 24, (h + 3) % 24),
    )
}

#[tokio::test]
async fn analyze_runs_on_a_never_analyzed_table_with_an_odd_name_and_is_recorded() {
    let _turn = SERIAL.lock().await;
    let Some(db) = Scratch::new("an").await else {
        return;
    };
    let mut c = db.conn().await;
    // STATS_PERSISTENT=0 at creation: no mysql.innodb_table_stats row until ANALYZE
    // with persistent statistics turned back on.
    exec(
        &mut c,
        "CREATE TABLE `we``ird Tä b` (id INT PRIMARY KEY) ENGINE=InnoDB STATS_PERSISTENT=0",
    )
    .await;
    exec(&mut c, "ALTER TABLE `we``ird Tä b` STATS_PERSISTENT=1").await;
    exec(
        &mut c,
        &format!(
            "DELETE FROM mysql.innodb_table_stats WHERE database_name = '{}'",
            db.name
        ),
    )
    .await;
    let (_d, cfg) = config(&db.url(), "", "");
    let r = run(&cfg).await;
    assert_eq!(r.skipped, None);
    assert_eq!(
        outcomes(&r),
        [format!("{}.we`ird Tä b analyze done", db.name)],
        "{r:?}"
    );
    assert!(
        r.records[0]
            .step
            .reason
            .contains("no persistent statistics")
    );
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM mysql.innodb_table_stats WHERE database_name = ? AND table_name = ?",
    )
    .bind(&db.name)
    .bind("we`ird Tä b")
    .fetch_one(&mut c)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    // InnoDB stores names with odd characters encoded; count any row of the database.
    let any: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM mysql.innodb_table_stats WHERE database_name = ?")
            .bind(&db.name)
            .fetch_one(&mut c)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert!(n + any >= 1, "ANALYZE wrote persistent statistics");
    // A second run finds nothing stale.
    let again = run(&cfg).await;
    assert!(outcomes(&again).is_empty(), "{again:?}");
    drop(c);
    db.drop_db().await;
}

/// A table with most of its allocated space free: 4 MiB floor, rows deleted.
async fn fragmented(c: &mut MySqlConnection) {
    exec(
        c,
        "CREATE TABLE frag (id INT PRIMARY KEY AUTO_INCREMENT, pad CHAR(255) NOT NULL) ENGINE=InnoDB",
    )
    .await;
    exec(c, "INSERT INTO frag (pad) SELECT 'x' FROM seq_1_to_30000").await;
    exec(c, "DELETE FROM frag WHERE id > 1000").await;
    exec(c, "ANALYZE TABLE frag").await;
}

/// Fragmentation thresholds the scratch table passes: 20% free, 1 MB floor.
const FRAG: &str = r#"thresholds = { mysql_fragmentation = { warning = 20, min_size = "1MB" } }"#;

#[tokio::test]
async fn optimize_only_for_a_fragmented_table_inside_the_window() {
    let _turn = SERIAL.lock().await;
    let Some(db) = Scratch::new("opt").await else {
        return;
    };
    let mut c = db.conn().await;
    fragmented(&mut c).await;
    exec(
        &mut c,
        "CREATE TABLE tidy (id INT PRIMARY KEY) ENGINE=InnoDB",
    )
    .await;
    exec(&mut c, "ANALYZE TABLE tidy").await;
    let (open, closed) = windows();
    let (_d, out) = config(&db.url(), FRAG, &format!("window = \"{closed}\""));
    let r = run(&out).await;
    let got = outcomes(&r);
    assert_eq!(got.len(), 1, "only the fragmented table: {got:?}");
    assert!(
        got[0].starts_with(&format!(
            "{}.frag optimize skipped: OPTIMIZE TABLE runs only inside the maintenance window",
            db.name
        )),
        "{got:?}"
    );
    let (_d2, inside) = config(&db.url(), FRAG, &format!("window = \"{open}\""));
    let r = run(&inside).await;
    assert_eq!(outcomes(&r), [format!("{}.frag optimize done", db.name)]);
    assert!(r.records[0].step.reason.contains("data_free"), "{r:?}");
    let before = r.records[0].step.dead_rows;
    let after = r.records[0].after.dead_rows.unwrap_or(f64::MAX);
    assert!(
        after < before,
        "OPTIMIZE reclaimed data_free: {before} → {after}"
    );
    drop(c);
    db.drop_db().await;
}

#[tokio::test]
async fn a_held_metadata_lock_is_skipped_as_lock_not_available() {
    let _turn = SERIAL.lock().await;
    let Some(db) = Scratch::new("mdl").await else {
        return;
    };
    let mut c = db.conn().await;
    fragmented(&mut c).await;
    // An open transaction that read the table holds its metadata lock.
    exec(&mut c, "START TRANSACTION").await;
    exec(&mut c, "SELECT COUNT(*) FROM frag").await;
    let (open, _) = windows();
    let (_d, cfg) = config(&db.url(), FRAG, &format!("window = \"{open}\""));
    let r = run(&cfg).await;
    assert_eq!(
        outcomes(&r),
        [format!(
            "{}.frag optimize skipped: lock not available (not granted within lock_wait_timeout 1s)",
            db.name
        )]
    );
    exec(&mut c, "ROLLBACK").await;
    drop(c);
    db.drop_db().await;
}

#[tokio::test]
async fn get_lock_held_by_another_session_skips_the_run() {
    let _turn = SERIAL.lock().await;
    let Some(db) = Scratch::new("gl").await else {
        return;
    };
    let mut c = db.conn().await;
    exec(
        &mut c,
        "CREATE TABLE t (id INT PRIMARY KEY) ENGINE=InnoDB STATS_PERSISTENT=0",
    )
    .await;
    let got: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK(?, 0)")
        .bind(format!("dbwarden-maint:{}", db.name))
        .fetch_one(&mut c)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(got, Some(1));
    let (_d, cfg) = config(&db.url(), "", "");
    let r = run(&cfg).await;
    assert_eq!(
        r.skipped.as_ref().map(|s| s.why.as_str()),
        Some("another dbwarden holds the lock")
    );
    assert!(r.records.is_empty());
    exec(
        &mut c,
        "DO RELEASE_LOCK(CONCAT('dbwarden-maint:', DATABASE()))",
    )
    .await;
    let r = run(&cfg).await;
    assert_eq!(r.skipped, None, "runs once the lock is free");
    drop(c);
    db.drop_db().await;
}

/// The `dbwarden` binary with `-c config` and `args`: exit code, stdout, stderr.
fn cli(config: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dbwarden"))
        .arg("-c")
        .arg(config)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run dbwarden: {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_maintain_command_plans_runs_with_progress_and_records_in_history() {
    let _turn = SERIAL.lock().await;
    let Some(db) = Scratch::new("cli").await else {
        return;
    };
    let mut c = db.conn().await;
    exec(
        &mut c,
        "CREATE TABLE `Mixed Case` (id INT PRIMARY KEY) ENGINE=InnoDB STATS_PERSISTENT=0",
    )
    .await;
    let (dir, _cfg) = config(&db.url(), "", "");
    let path = dir.path().join("dbwarden.toml");
    let table = format!("{}.Mixed Case", db.name);
    let (code, out, err) = cli(&path, &["maintain", "--target", "my", "--dry-run"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        out,
        format!(
            "{table}\tanalyze\tno persistent statistics (mysql.innodb_table_stats has no row)\n"
        )
    );
    let (code, out, err) = cli(&path, &["maintain", "--target", "my"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out, format!("{table}\tanalyze\tdone\n"));
    assert!(err.contains(&format!("[1/1] analyze {table}: ")), "{err}");
    let (code, out, err) = cli(
        &path,
        &[
            "history",
            "maintenance",
            "--target",
            "my",
            "--since",
            "1h",
            "--format",
            "csv",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let lines: Vec<Vec<&str>> = out.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!(lines[1][2..6], ["my", table.as_str(), "analyze", "done"]);
    drop(c);
    db.drop_db().await;
}

#[tokio::test]
async fn one_maintenance_run_per_server_across_its_databases() {
    let _turn = SERIAL.lock().await;
    let Some(a) = Scratch::new("srva").await else {
        return;
    };
    let Some(b) = Scratch::new("srvb").await else {
        return;
    };
    let mut ca = a.conn().await;
    exec(
        &mut ca,
        "CREATE TABLE t (id INT PRIMARY KEY) ENGINE=InnoDB STATS_PERSISTENT=0",
    )
    .await;
    // Another run (a dbwarden on database b of the same server) holds the server's lock.
    let mut cb = b.conn().await;
    let got: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK('dbwarden-maint-server', 0)")
        .fetch_one(&mut cb)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(got, Some(1));
    let (_d, cfg) = config(&a.url(), "", "");
    // A dry run does not wait for its turn: it says why it would.
    let dry = Request {
        dry_run: true,
        ..request(&cfg)
    };
    let r = maintain(dry, &CancellationToken::new(), |_| {}, |_| {})
        .await
        .unwrap_or_else(|e| panic!("maintain: {e}"));
    assert_eq!(
        r.skipped.as_ref().map(|s| s.why.as_str()),
        Some("another maintenance run holds this server's lock (one run per server at a time)")
    );
    assert!(r.records.is_empty());
    // The refused run left database a's own lock free.
    let free: Option<i64> = sqlx::query_scalar("SELECT IS_FREE_LOCK(?)")
        .bind(format!("dbwarden-maint:{}", a.name))
        .fetch_one(&mut ca)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(free, Some(1));
    // A real run waits for its turn (retrying every 5 s) and runs once the other ends.
    let release = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        exec(&mut cb, "DO RELEASE_LOCK('dbwarden-maint-server')").await;
    };
    let (r, ()) = tokio::join!(run(&cfg), release);
    assert_eq!(r.skipped, None, "runs once the server's lock is free");
    assert_eq!(outcomes(&r).len(), 1, "{r:?}");
    drop(ca);
    drop(cb);
    a.drop_db().await;
    b.drop_db().await;
}

#[tokio::test]
async fn max_duration_kills_the_running_statement_on_the_server() {
    let _turn = SERIAL.lock().await;
    let Some(db) = Scratch::new("kill").await else {
        return;
    };
    let mut c = db.conn().await;
    fragmented(&mut c).await;
    // OPTIMIZE waits for the metadata lock this open transaction holds (up to
    // lock_timeout 30s); max_duration ends the run first.
    exec(&mut c, "START TRANSACTION").await;
    exec(&mut c, "SELECT COUNT(*) FROM frag").await;
    let (open, _) = windows();
    let (_d, cfg) = {
        let (d, _) = config(&db.url(), "", "");
        let path = d.path().join("dbwarden.toml");
        let body = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
        let body = body
            .replace("lock_timeout = \"1s\"", "lock_timeout = \"30s\"")
            .replace(
                &format!("url = \"{}\"\n", db.url()),
                &format!("url = \"{}\"\n{FRAG}\n", db.url()),
            );
        std::fs::write(
            &path,
            format!("{body}window = \"{open}\"\nmax_duration = \"1s\"\n"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let cfg = dbwarden::config::load(&path).unwrap_or_else(|e| panic!("config: {e}"));
        (d, cfg)
    };
    let r = run(&cfg).await;
    assert_eq!(
        outcomes(&r),
        [format!(
            "{}.frag optimize interrupted: cancelled on the server: the maintenance window or max_duration ended",
            db.name
        )]
    );
    let ours: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE '/* dbwarden */ OPTIMIZE%'",
    )
    .fetch_one(&mut c)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ours, 0, "no OPTIMIZE of ours is left running");
    exec(&mut c, "ROLLBACK").await;
    drop(c);
    db.drop_db().await;
}

#[tokio::test]
async fn the_load_guard_reads_active_threads_and_replica_lag_on_mariadb() {
    let _turn = SERIAL.lock().await;
    let Some(db) = Scratch::new("guard").await else {
        return;
    };
    let mut c = db.conn().await;
    exec(&mut c, "CREATE TABLE t (id INT PRIMARY KEY) ENGINE=InnoDB").await;
    let forget_stats = format!(
        "DELETE FROM mysql.innodb_table_stats WHERE database_name = '{}'",
        db.name
    );
    exec(&mut c, &forget_stats).await;
    // Another client runs a statement throughout the run.
    let mut busy = db.conn().await;
    let sleeper = tokio::spawn(async move {
        let _ = sqlx::raw_sql("SELECT SLEEP(5)").execute(&mut busy).await;
        busy
    });
    let mut watch = db.conn().await;
    for _ in 0..100 {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO = 'SELECT SLEEP(5)'",
        )
        .fetch_one(&mut watch)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        if n > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // This server is no replica: max_replication_lag reads no channel and holds nothing.
    let (_d, cfg) = config(
        &db.url(),
        "",
        "max_active_sessions = 0\nmax_replication_lag = \"1s\"",
    );
    let r = run(&cfg).await;
    assert_eq!(r.records.len(), 1, "{r:?}");
    assert_eq!(
        r.records[0].outcome.skip_kind(),
        Some(dbwarden::maintenance::SkipKind::Guard)
    );
    let why = r.records[0].outcome.why().unwrap_or_default().to_string();
    assert!(
        why.starts_with("load guard: ")
            && why.ends_with("other sessions running statements > max_active_sessions 0"),
        "{why}"
    );
    let _ = sleeper.await;
    // With the load gone (and the table still without statistics) it runs.
    exec(&mut c, &forget_stats).await;
    let (_d, cfg) = config(
        &db.url(),
        "",
        "max_active_sessions = 1000\nmax_replication_lag = \"1s\"",
    );
    let r = run(&cfg).await;
    assert_eq!(
        outcomes(&r),
        [format!("{}.t analyze done", db.name)],
        "{r:?}"
    );
    let _ = watch.close().await;
    let _ = c.close().await;
    db.drop_db().await;
}
