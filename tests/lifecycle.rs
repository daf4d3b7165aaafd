//! The daemon as a process: start on the demo config, reload on SIGHUP (good and bad
//! configs), stop on SIGTERM with a running job recorded as interrupted.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{Connection, SqliteConnection, SqlitePool};

const BIN: &str = env!("CARGO_BIN_EXE_dbwarden");

struct Daemon {
    child: Child,
    dir: tempfile::TempDir,
}

impl Daemon {
    fn start(config_body: &str) -> Daemon {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        std::fs::write(dir.path().join("dbwarden.toml"), config_body)
            .unwrap_or_else(|e| panic!("write config: {e}"));
        let log = std::fs::File::create(dir.path().join("daemon.log"))
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
        wait_for("the history store to exist", || async { path.exists() }).await;
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
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if cond().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn count(pool: &SqlitePool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap_or(0)
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
        "SELECT COUNT(*) FROM check_results WHERE target = 'demo'",
    )
    .await;
    assert!(
        checks >= 6,
        "expected the SQLite checks of demo, got {checks}"
    );
    let qc: String = sqlx::query_scalar(
        "SELECT status FROM check_results WHERE target = 'demo' AND check_name = 'sqlite_quick_check'",
    )
    .fetch_one(&h)
    .await
    .unwrap_or_default();
    assert_eq!(qc, "OK");
    let metrics = count(
        &h,
        "SELECT COUNT(*) FROM metric_samples WHERE metric = 'connectivity'",
    )
    .await;
    assert!(metrics >= 2, "latency samples: {metrics}");
    assert!(
        d.path().join("data/demo.db").exists(),
        "mode=rwc creates the demo target"
    );
}

#[tokio::test]
async fn sighup_with_a_broken_config_keeps_the_old_one_and_a_new_job_starts() {
    let base = demo_config();
    let d = Daemon::start(&base);
    let h = d.history().await;
    wait_for("the first health runs", || async {
        count(&h, "SELECT COUNT(*) FROM job_runs WHERE outcome = 'ok'").await >= 2
    })
    .await;

    d.rewrite_config(&format!(
        "{base}\n[[job]]\nname = \"broken\"\nkind = \"health\"\nschedule = \"every now and then\"\n"
    ));
    d.signal("HUP");
    wait_for("the reload to be refused", || async {
        d.log().contains("new configuration refused")
    })
    .await;
    let log = d.log();
    assert!(
        log.contains("job[1].schedule"),
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
        "SELECT status, message FROM check_results WHERE target = 'gone' AND check_name = 'connectivity'",
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

/// A TCP port that completes the handshake (the kernel's backlog) but never answers: a
/// database host cut off by the network, as the client sees it.
fn tarpit() -> std::net::TcpListener {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"))
}

#[tokio::test]
async fn sigterm_with_unreachable_targets_exits_within_the_grace() {
    let pit = tarpit();
    let port = pit.local_addr().map(|a| a.port()).unwrap_or(0);
    let mut config = String::from(
        "[daemon]\nhistory = \"sqlite://./data/history.db\"\nshutdown_grace = \"3s\"\n",
    );
    for i in 0..6 {
        config.push_str(&format!(
            "[[target]]\nname = \"cut{i}\"\nurl = \"postgres://dbwarden@127.0.0.1:{port}/db\"\n\
             pool = {{ connect_timeout = \"60s\", acquire_timeout = \"60s\" }}\n"
        ));
    }
    config.push_str(
        "[[job]]\nname = \"health\"\nkind = \"health\"\nschedule = \"@every 1h\"\ntimeout = \"10m\"\n",
    );
    let mut d = Daemon::start(&config);
    let h = d.history().await;
    wait_for("six runs to be in progress", || async {
        count(
            &h,
            "SELECT COUNT(*) FROM job_runs WHERE outcome = 'running'",
        )
        .await
            == 6
    })
    .await;
    let asked = Instant::now();
    d.signal("TERM");
    // The grace bounds the whole shutdown: cancelling (which itself cannot reach the
    // servers) and closing happen for all targets at once. One second of slack for
    // process start-up and exit.
    let status = d.wait_exit(Duration::from_secs(4));
    let took = asked.elapsed();
    let Some(status) = status else {
        panic!("no exit within the 3 s grace (+1 s):\n{}", d.log())
    };
    assert_eq!(status.code(), Some(0), "{}", d.log());
    assert!(took < Duration::from_secs(4), "{took:?}");
    let interrupted = count(
        &h,
        "SELECT COUNT(*) FROM job_runs WHERE outcome = 'interrupted'",
    )
    .await;
    assert_eq!(
        interrupted,
        6,
        "every run is recorded interrupted:\n{}",
        d.log()
    );
    drop(pit);
}
