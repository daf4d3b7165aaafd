//! The daemon as a process: start on the demo config, reload on SIGHUP (good and bad
//! configs), stop on SIGTERM with a running job recorded as interrupted.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{Connection, SqliteConnection, SqlitePool};

mod common;

use common::pg::PgDb;
use common::proxy::Proxy;

const BIN: &str = env!("CARGO_BIN_EXE_dbwarden");

thread_local! {
    /// The log of the daemon this test (thread) started last: printed when a wait times out.
    static LAST_LOG: std::cell::RefCell<Option<(PathBuf, u32)>> = const { std::cell::RefCell::new(None) };
}

struct Daemon {
    child: Child,
    dir: tempfile::TempDir,
}

impl Daemon {
    fn start(config_body: &str) -> Daemon {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        Daemon::start_in(dir, config_body)
    }

    /// Starts in `dir` (a restart keeps the directory, its history and its log).
    fn start_in(dir: tempfile::TempDir, config_body: &str) -> Daemon {
        std::fs::write(dir.path().join("dbwarden.toml"), config_body)
            .unwrap_or_else(|e| panic!("write config: {e}"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.path().join("daemon.log"))
            .unwrap_or_else(|e| panic!("log file: {e}"));
        let child = Command::new(BIN)
            .args(["run", "-c", "dbwarden.toml", "--log-level", "info"])
            .current_dir(dir.path())
            .env_remove("NOTIFY_SOCKET")
            .env_remove("JOURNAL_STREAM")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {BIN}: {e}"));
        LAST_LOG.with(|l| *l.borrow_mut() = Some((dir.path().join("daemon.log"), child.id())));
        Daemon { child, dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.path().join("daemon.log")).unwrap_or_default()
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{sig} failed");
    }

    fn rewrite_config(&self, body: &str) {
        std::fs::write(self.path().join("dbwarden.toml"), body)
            .unwrap_or_else(|e| panic!("write config: {e}"));
    }

    async fn history(&self) -> SqlitePool {
        let path = self.path().join("data/history.db");
        // Open it once the daemon has created and migrated it: a connection opened on the
        // half-created file (before WAL mode and incremental auto_vacuum are set) was seen
        // to keep failing every read.
        wait_for("the daemon to have opened its history store", || async {
            path.exists() && self.log().contains("dbwarden started")
        })
        .await;
        SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(
                SqliteConnectOptions::new()
                    .filename(&path)
                    .busy_timeout(Duration::from_secs(5)),
            )
            .await
            .unwrap_or_else(|e| panic!("open history: {e}"))
    }

    /// Stops the daemon (SIGTERM) and hands back its directory for a restart.
    fn stop(mut self) -> tempfile::TempDir {
        self.signal("TERM");
        let status = self.wait_exit(Duration::from_secs(30));
        assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", self.log());
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        std::mem::replace(&mut self.dir, dir)
    }

    fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls until `cond` holds; the deadline only bounds a hung test, it measures nothing.
async fn wait_for<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(90);
    while Instant::now() < deadline {
        if cond().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (log, pid) = LAST_LOG.with(|l| l.borrow().clone()).unwrap_or_default();
    let log = std::fs::read_to_string(log).unwrap_or_default();
    // A daemon that died is a zombie until the test reaps it: its wait status is the
    // last field of /proc/PID/stat (a signal number when killed; SIGBUS was seen once).
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or_else(
        |_| "gone".to_string(),
        |s| {
            let f: Vec<&str> = s
                .rsplit(')')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .collect();
            format!(
                "state {} wait status {}",
                f.first().unwrap_or(&"?"),
                f.last().unwrap_or(&"?")
            )
        },
    );
    panic!("timed out waiting for {what}; daemon (pid {pid}) {state}; its log:\n{log}");
}

async fn count(pool: &SqlitePool, sql: &'static str) -> i64 {
    match sqlx::query_scalar(sql).fetch_one(pool).await {
        Ok(n) => n,
        Err(e) => {
            eprintln!("history read failed (retrying): {e}");
            0
        }
    }
}

fn demo_config() -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/dbwarden.toml");
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("read demo config: {e}"))
}

#[tokio::test]
async fn starts_on_the_demo_config_and_records_runs_and_checks() {
    let d = Daemon::start(&demo_config());
    let h = d.history().await;
    wait_for("two ok health runs", || async {
        count(
            &h,
            "SELECT COUNT(*) FROM job_runs WHERE job = 'health' AND outcome = 'ok'",
        )
        .await
            >= 2
    })
    .await;
    let checks = count(
        &h,
        "SELECT COUNT(*) FROM check_latest WHERE target = 'demo'",
    )
    .await;
    assert!(
        checks >= 6,
        "expected the SQLite checks of demo, got {checks}"
    );
    let qc: String = sqlx::query_scalar(
        "SELECT status FROM check_latest WHERE target = 'demo' AND check_name = 'sqlite_quick_check'",
    )
    .fetch_one(&h)
    .await
    .unwrap_or_default();
    assert_eq!(qc, "OK");
    let metrics = count(
        &h,
        "SELECT COUNT(*) FROM samples s JOIN series x ON x.id = s.series_id \
         WHERE x.metric = 'connectivity' AND s.value IS NOT NULL",
    )
    .await;
    assert!(metrics >= 1, "latency samples: {metrics}");
    let rounds = count(
        &h,
        "SELECT COALESCE(SUM(rounds), 0) FROM check_periods WHERE check_name = 'connectivity'",
    )
    .await;
    assert!(rounds >= 2, "connectivity rounds: {rounds}");
    assert!(
        d.path().join("data/demo.db").exists(),
        "mode=rwc creates the demo target"
    );
}

#[tokio::test]
async fn sighup_with_a_broken_config_keeps_the_old_one_and_a_new_job_starts() {
    let base = demo_config();
    let mut d = Daemon::start(&base);
    let h = d.history().await;
    wait_for("the first health runs", || async {
        count(&h, "SELECT COUNT(*) FROM job_runs WHERE outcome = 'ok'").await >= 2
    })
    .await;

    d.rewrite_config(&format!(
        "{base}\n[[job]]\nname = \"broken\"\nkind = \"health\"\nschedule = \"every now and then\"\n"
    ));
    d.signal("HUP");
    // Failed twice in fresh-clone CI runs (never in a warm tree): say what the daemon did.
    let deadline = Instant::now() + Duration::from_secs(90);
    while !d.log().contains("new configuration refused") {
        if Instant::now() > deadline {
            let alive = d.child.try_wait().map(|s| s.is_none()).unwrap_or(false);
            panic!(
                "timed out waiting for the reload to be refused (daemon alive: {alive}); its log:\n{}",
                d.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = d.log();
    assert!(
        log.contains("job[2].schedule: \"every now and then\""),
        "the log must carry the error list:\n{log}"
    );

    d.rewrite_config(&format!("{base}\n[[job]]\nname = \"extra\"\nkind = \"health\"\nschedule = \"@every 1h\"\ntargets = [\"demo\"]\n"));
    d.signal("HUP");
    wait_for("the new job to run", || async {
        count(
            &h,
            "SELECT COUNT(*) FROM job_runs WHERE job = 'extra' AND outcome = 'ok'",
        )
        .await
            >= 1
    })
    .await;
    assert!(d.log().contains("configuration reloaded"));
}

#[tokio::test]
async fn sigterm_interrupts_a_running_job_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let locked = dir.path().join("locked.db");
    // A database in rollback-journal mode, exclusively locked by "the application":
    // dbwarden's probe waits for the lock (busy_timeout) and is still running at SIGTERM.
    let mut app = SqliteConnection::connect_with(
        &SqliteConnectOptions::new()
            .filename(&locked)
            .create_if_missing(true),
    )
    .await
    .unwrap_or_else(|e| panic!("create locked.db: {e}"));
    sqlx::query("CREATE TABLE t (x)")
        .execute(&mut app)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut app)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let config = format!(
        r#"
[daemon]
history = "sqlite://./data/history.db"
shutdown_grace = "10s"

[[target]]
name = "locked"
url = "sqlite://{}"
busy_timeout = "5m"

[[job]]
name = "health"
kind = "health"
schedule = "@every 1h"
timeout = "10m"
"#,
        locked.display()
    );
    let mut d = Daemon::start(&config);
    let h = d.history().await;
    wait_for("the run to be in progress", || async {
        count(
            &h,
            "SELECT COUNT(*) FROM job_runs WHERE target = 'locked' AND outcome = 'running'",
        )
        .await
            == 1
    })
    .await;
    // Give the probe time to reach the lock it will wait on.
    tokio::time::sleep(Duration::from_millis(300)).await;
    d.signal("TERM");
    let status = d.wait_exit(Duration::from_secs(15));
    let Some(status) = status else {
        panic!(
            "the daemon did not exit within its grace period:\n{}",
            d.log()
        )
    };
    assert_eq!(status.code(), Some(0), "{}", d.log());
    let outcome: String =
        sqlx::query_scalar("SELECT outcome FROM job_runs WHERE target = 'locked'")
            .fetch_one(&h)
            .await
            .unwrap_or_default();
    assert_eq!(outcome, "interrupted", "{}", d.log());
    sqlx::query("ROLLBACK")
        .execute(&mut app)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn a_missing_sqlite_target_is_critical_not_created() {
    let d = Daemon::start(
        "[[target]]\nname = \"gone\"\nurl = \"sqlite://./nope/missing.db\"\n[[job]]\nname = \"health\"\nkind = \"health\"\nschedule = \"@every 1s\"\n",
    );
    let h = d.history().await;
    wait_for("the health run", || async {
        count(&h, "SELECT COUNT(*) FROM job_runs WHERE outcome = 'ok'").await >= 1
    })
    .await;
    let (status, message): (String, String) = sqlx::query_as(
        "SELECT status, message FROM check_latest WHERE target = 'gone' AND check_name = 'connectivity'",
    )
    .fetch_one(&h)
    .await
    .unwrap_or_default();
    assert_eq!(status, "CRITICAL");
    assert!(message.contains("file not found"), "{message}");
    // After two rounds (the default confirm_rounds) the change is believed and recorded.
    wait_for("a believed transition to CRITICAL", || async {
        count(
            &h,
            "SELECT COUNT(*) FROM health_transitions WHERE target = 'gone' AND check_name IS NULL AND to_status = 'CRITICAL'",
        )
        .await
            == 1
    })
    .await;
    assert!(!d.path().join("nope/missing.db").exists());
}

#[test]
fn an_invalid_config_refuses_to_start_with_exit_2() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        dir.path().join("c.toml"),
        "[daemon]\nlisten = \"nowhere\"\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let o = Command::new(BIN)
        .args(["run", "-c", "c.toml"])
        .current_dir(dir.path())
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("daemon.listen"), "{err}");
    assert!(
        !dir.path().join("data").exists(),
        "nothing is created when refusing to start"
    );
}

#[tokio::test]
async fn a_restart_does_not_announce_what_was_already_believed() {
    let config = "[daemon]\nconfirm_rounds = 1\n\
        [[target]]\nname = \"gone\"\nurl = \"sqlite://./nope/missing.db\"\n\
        [[job]]\nname = \"health\"\nkind = \"health\"\nschedule = \"@every 1s\"\n";
    let d = Daemon::start(config);
    let h = d.history().await;
    wait_for("the target's transition to CRITICAL", || async {
        count(
            &h,
            "SELECT COUNT(*) FROM health_transitions WHERE target = 'gone' AND check_name IS NULL",
        )
        .await
            == 1
    })
    .await;
    let before = count(&h, "SELECT COUNT(*) FROM health_transitions").await;
    h.close().await;
    let dir = d.stop();

    // Still CRITICAL after the restart: nothing new to announce.
    let d = Daemon::start_in(dir, config);
    let h = d.history().await;
    let runs = count(&h, "SELECT COUNT(*) FROM job_runs").await;
    wait_for("three rounds after the restart", || async {
        count(&h, "SELECT COUNT(*) FROM job_runs WHERE outcome = 'ok'").await >= runs + 3
    })
    .await;
    let after = count(&h, "SELECT COUNT(*) FROM health_transitions").await;
    assert_eq!(
        before,
        after,
        "transitions repeated after a restart:\n{}",
        d.log()
    );
}

/// Seeds `dir`'s history (created as the daemon would) with ten days of a SQLite target's
/// file size growing 50 kB a day to ~510 kB, hourly, up to an hour ago.
async fn seed_growing_size(dir: &Path, target: &str) {
    let url = format!("sqlite://{}/data/history.db", dir.display());
    let store = dbwarden::store::Store::open(&dbwarden::config::SecretUrl::new(url.clone()), None)
        .await
        .unwrap_or_else(|e| panic!("create history: {e}"));
    store.close(Duration::from_secs(2)).await;
    let mut c = SqliteConnection::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("open history: {e}"));
    const HOUR: i64 = 3_600_000;
    let now = chrono::Utc::now().timestamp_millis();
    let agent = dbwarden::store::agent_name().replace('\'', "''");
    let rows: Vec<String> = (0..240)
        .map(|h| {
            let ts = now - (241 - h) * HOUR;
            format!("(1, {ts}, {})", 10_000.0 + 50_000.0 * h as f64 / 24.0)
        })
        .collect();
    let sql = format!(
        "INSERT INTO series (id, agent, target, metric, label, unit, last_ts) \
         VALUES (1, '{agent}', '{target}', 'sqlite_file_size', '', 'bytes', {now}); \
         INSERT INTO samples (series_id, ts, value) VALUES {};",
        rows.join(",")
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&mut c)
        .await
        .unwrap_or_else(|e| panic!("seed: {e}"));
}

/// The forecast checks are judged from the first health round of a daemon's life, and
/// again right after a restart, without waiting for a rollup run (the rollup job here
/// never runs during the test): every round carries `forecast_full`, and the restart
/// records no new transition of it.
#[tokio::test]
async fn forecasts_are_judged_from_the_first_round_after_a_restart() {
    let config = "[daemon]\nconfirm_rounds = 1\n\
        [[target]]\nname = \"demo\"\nurl = \"sqlite://./data/demo.db?mode=rwc\"\ncapacity = \"1MB\"\n\
        [[job]]\nname = \"health\"\nkind = \"health\"\nschedule = \"@every 1s\"\n\
        [[job]]\nname = \"rollup\"\nkind = \"rollup\"\nschedule = \"0 3 1 1 *\"\n";
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    seed_growing_size(dir.path(), "demo").await;
    // Rounds that lacked forecast_full: connectivity's rounds minus forecast_full's.
    const MISSING: &str = "SELECT COALESCE((SELECT SUM(rounds) FROM check_periods WHERE target = 'demo' AND check_name = 'connectivity'), 0) \
         - COALESCE((SELECT SUM(rounds) FROM check_periods WHERE target = 'demo' AND check_name = 'forecast_full'), 0)";
    const WARNED: &str = "SELECT COUNT(*) FROM health_transitions WHERE target = 'demo' AND check_name = 'forecast_full' AND to_status = 'WARNING'";
    let mut d = Daemon::start_in(dir, config);
    for life in ["first start", "restart"] {
        let h = d.history().await;
        let runs = count(
            &h,
            "SELECT COUNT(*) FROM job_runs WHERE job = 'health' AND outcome = 'ok'",
        )
        .await;
        wait_for("three health rounds", || async {
            count(
                &h,
                "SELECT COUNT(*) FROM job_runs WHERE job = 'health' AND outcome = 'ok'",
            )
            .await
                >= runs + 3
        })
        .await;
        let status: String = sqlx::query_scalar(
            "SELECT status FROM check_latest WHERE target = 'demo' AND check_name = 'forecast_full'",
        )
        .fetch_one(&h)
        .await
        .unwrap_or_else(|e| panic!("{life}: no forecast_full: {e}\n{}", d.log()));
        assert_eq!(status, "WARNING", "{life}: full in ~10 days");
        assert_eq!(
            count(&h, MISSING).await,
            0,
            "{life}: a round without forecast_full\n{}",
            d.log()
        );
        assert_eq!(
            count(&h, WARNED).await,
            1,
            "{life}: forecast_full announced again\n{}",
            d.log()
        );
        assert_eq!(
            count(&h, "SELECT COUNT(*) FROM job_runs WHERE job = 'rollup'").await,
            0,
            "{life}: the rollup job ran"
        );
        h.close().await;
        if life == "first start" {
            let dir = d.stop();
            d = Daemon::start_in(dir, config);
        }
    }
}

#[tokio::test]
async fn a_reload_that_only_changes_global_thresholds_takes_effect_next_round() {
    let Some(url) = common::pg::pg_url() else {
        return;
    };
    // Global [thresholds] first disable a check, then enable it and make another warn:
    // neither changes the target's own settings, so its engine is kept and must still
    // follow the new thresholds.
    let config = |thresholds: &str| {
        format!(
            "[daemon]\nconfirm_rounds = 1\n[thresholds]\n{thresholds}\n\
             [[target]]\nname = \"pg\"\nurl = \"{url}\"\n\
             [[job]]\nname = \"health\"\nkind = \"health\"\nschedule = \"@every 1s\"\n"
        )
    };
    let d = Daemon::start(&config("idle_in_transaction = { enabled = false }"));
    let h = d.history().await;
    wait_for("a first round", || async {
        count(&h, "SELECT COUNT(*) FROM job_runs WHERE outcome = 'ok'").await >= 1
    })
    .await;
    assert_eq!(
        count(
            &h,
            "SELECT COUNT(*) FROM check_latest WHERE check_name = 'idle_in_transaction'"
        )
        .await,
        0,
        "disabled"
    );
    d.rewrite_config(&config("connectivity = { warning = \"0ms\" }"));
    d.signal("HUP");
    wait_for("the reloaded thresholds to be applied", || async {
        count(
            &h,
            "SELECT COUNT(*) FROM check_latest WHERE check_name = 'idle_in_transaction'",
        )
        .await
            >= 1
            && count(
                &h,
                "SELECT COUNT(*) FROM check_periods WHERE check_name = 'connectivity' AND status = 'WARNING'",
            )
            .await
                >= 1
    })
    .await;
    assert!(d.log().contains("configuration reloaded"), "{}", d.log());
}

#[tokio::test]
async fn sigterm_with_targets_cut_off_by_the_network_exits_within_the_grace() {
    let Some(admin) = common::pg::pg_url() else {
        return;
    };
    let (proxy, url) = Proxy::for_url(&admin).await;
    let mut config = String::from(
        "[daemon]\nhistory = \"sqlite://./data/history.db\"\nshutdown_grace = \"3s\"\n",
    );
    for i in 0..5 {
        config.push_str(&format!("[[target]]\nname = \"cut{i}\"\nurl = \"{url}\"\n"));
    }
    config.push_str(
        "[[job]]\nname = \"health\"\nkind = \"health\"\nschedule = \"@every 1s\"\ntimeout = \"10m\"\n",
    );
    let mut d = Daemon::start(&config);
    let h = d.history().await;
    wait_for("a first round of every target", || async {
        count(
            &h,
            "SELECT COUNT(DISTINCT target) FROM job_runs WHERE outcome = 'ok'",
        )
        .await
            == 5
    })
    .await;
    // The network to the servers goes black: statements in flight never answer, and a
    // cancel request (a new connection) hangs until connect_timeout (5 s).
    proxy.pause().await;
    wait_for("every target's round to hang", || async {
        count(
            &h,
            "SELECT COUNT(*) FROM job_runs WHERE outcome = 'running'",
        )
        .await
            == 5
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let asked = Instant::now();
    d.signal("TERM");
    // Cancelling and closing happen for all targets at once, bounded by the grace in
    // total (the old sequential shutdown took 5 × (5 s cancel + 2 s close)). One second
    // of slack for the process to exit.
    let status = d.wait_exit(Duration::from_secs(4));
    let took = asked.elapsed();
    let Some(status) = status else {
        panic!("no exit within the 3 s grace (+1 s):\n{}", d.log())
    };
    assert_eq!(status.code(), Some(0), "{}", d.log());
    assert!(took < Duration::from_secs(4), "{took:?}");
    assert_eq!(
        count(
            &h,
            "SELECT COUNT(*) FROM job_runs WHERE outcome = 'interrupted'"
        )
        .await,
        5,
        "{}",
        d.log()
    );
    proxy.resume().await;
}

#[tokio::test]
async fn monitoring_keeps_its_schedule_while_the_history_store_is_down() {
    let Some(admin) = common::pg::pg_url() else {
        return;
    };
    let db = PgDb::create(&admin).await;
    let (proxy, store_url) = Proxy::for_url(&db.url).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    const TARGETS: usize = 200;
    let mut config = format!("[daemon]\nhistory = \"{store_url}\"\nmax_concurrent_targets = 32\n");
    for i in 0..TARGETS {
        config.push_str(&format!(
            "[[target]]\nname = \"t{i}\"\nurl = \"sqlite://{}/t{i}.db?mode=rwc\"\n",
            dir.path().display()
        ));
    }
    config.push_str("[[job]]\nname = \"health\"\nkind = \"health\"\nschedule = \"@every 2s\"\n");
    let d = Daemon::start_in(dir, &config);
    let mut pg = db.connect().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(DISTINCT target) FROM job_runs WHERE outcome = 'ok'")
                .fetch_one(&mut pg)
                .await
                .unwrap_or(0);
        if n == TARGETS as i64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "first rounds: {n} targets\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    proxy.refuse().await;
    let cut = chrono::Utc::now();
    tokio::time::sleep(Duration::from_secs(20)).await;
    proxy.resume().await;
    let back = chrono::Utc::now();

    // Everything buffered meanwhile reaches the store by itself, within 30 s.
    let window = (
        (cut + chrono::Duration::seconds(2)).timestamp_millis(),
        (back - chrono::Duration::seconds(2)).timestamp_millis(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut rows: Vec<(String, i64)> = Vec::new();
    while Instant::now() < deadline {
        rows = sqlx::query_as(
            "SELECT target, COUNT(*) FROM job_runs WHERE outcome = 'ok' \
             AND started_at BETWEEN $1 AND $2 GROUP BY target",
        )
        .bind(window.0)
        .bind(window.1)
        .fetch_all(&mut pg)
        .await
        .unwrap_or_default();
        if rows.len() == TARGETS && rows.iter().all(|(_, n)| *n >= 7) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // 16 s of the outage at one round every 2 s: 8 rounds, 7 allowing for edges.
    assert_eq!(
        rows.len(),
        TARGETS,
        "targets with runs during the outage:\n{}",
        d.log()
    );
    let short: Vec<&(String, i64)> = rows.iter().filter(|(_, n)| *n < 7).collect();
    assert!(
        short.is_empty(),
        "targets that missed rounds: {short:?}\n{}",
        d.log()
    );
    let bad: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM job_runs WHERE outcome <> 'ok' AND outcome <> 'running'",
    )
    .fetch_one(&mut pg)
    .await
    .unwrap_or(-1);
    assert_eq!(
        bad,
        0,
        "no run skipped or failed because of the store:\n{}",
        d.log()
    );
    // Every health round that ran up to the end of the window has its connectivity
    // result in the store (periods count their rounds).
    let runs: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM job_runs WHERE kind = 'health' AND outcome = 'ok' AND started_at <= $1",
    )
    .bind(window.1)
    .fetch_one(&mut pg)
    .await
    .unwrap_or(-1);
    let checks: i64 = sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(rounds), 0) AS BIGINT) FROM check_periods \
         WHERE check_name = 'connectivity' AND from_ts <= $1",
    )
    .bind(window.1)
    .fetch_one(&mut pg)
    .await
    .unwrap_or(0);
    assert!(checks >= runs, "rounds kept {checks} of {runs} runs");
    assert!(
        checks >= (TARGETS * 7) as i64,
        "check results kept: {checks}"
    );
    drop(d);
    drop(pg);
    db.drop_db().await;
}
