//! One-shot commands through the real binary: `check` (exit codes, text and JSON),
//! `run-job`, `jobs`, `migrate`, `--help`.

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_dbwarden");

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_remove("DBWARDEN_CONFIG")
        .env_remove("JOURNAL_STREAM")
        .output()
        .unwrap_or_else(|e| panic!("run {BIN}: {e}"))
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn all(o: &Output) -> String {
    format!("{}{}", stdout(o), String::from_utf8_lossy(&o.stderr))
}

fn setup(extra: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let body = format!(
        "[daemon]\nhistory = \"sqlite://./data/history.db\"\n\
         [[target]]\nname = \"ok\"\nurl = \"sqlite://./ok.db?mode=rwc\"\n\
         {extra}\
         [[job]]\nname = \"health\"\nkind = \"health\"\nschedule = \"0 3 * * *\"\ntimezone = \"Europe/Berlin\"\n"
    );
    std::fs::write(dir.path().join("c.toml"), body).unwrap_or_else(|e| panic!("{e}"));
    dir
}

#[test]
fn check_is_a_nagios_plugin() {
    let dir = setup("");
    let o = run(dir.path(), &["check", "-c", "c.toml"]);
    assert_eq!(o.status.code(), Some(0), "{}", all(&o));
    assert!(stdout(&o).starts_with("DBWARDEN OK"), "{}", all(&o));

    let dir = setup(
        "[[target]]\nname = \"big\"\nurl = \"sqlite://./big.db?mode=rwc\"\nthresholds = { connectivity = { warning = \"0ms\" } }\n",
    );
    let o = run(dir.path(), &["check", "-c", "c.toml"]);
    assert_eq!(o.status.code(), Some(1), "{}", all(&o));
    assert!(stdout(&o).contains("WARNING   connectivity"), "{}", all(&o));

    let dir = setup("[[target]]\nname = \"gone\"\nurl = \"sqlite://./nope.db\"\n");
    let o = run(dir.path(), &["check", "-c", "c.toml"]);
    assert_eq!(o.status.code(), Some(2), "{}", all(&o));
    let out = stdout(&o);
    assert!(out.contains("gone (sqlite): CRITICAL"), "{out}");
    assert!(out.contains("file not found"), "{out}");
    // The other checks of the unreachable target are UNKNOWN, not OK.
    assert!(out.contains("UNKNOWN   sqlite_quick_check"), "{out}");
    // --target narrows the round.
    let o = run(dir.path(), &["check", "-c", "c.toml", "--target", "ok"]);
    assert_eq!(o.status.code(), Some(0), "{}", all(&o));
    let o = run(dir.path(), &["check", "-c", "c.toml", "--target", "nosuch"]);
    assert_eq!(o.status.code(), Some(3), "{}", all(&o));
}

#[test]
fn check_measures_what_the_most_frequent_health_job_does() {
    let dir = setup(
        "[[job]]\nname = \"nightly\"\nkind = \"health\"\nschedule = \"0 4 * * *\"\nintegrity_check = true\n\
         [[job]]\nname = \"often\"\nkind = \"health\"\nschedule = \"@every 1m\"\ntargets = [\"ok\"]\n",
    );
    // The setup's own job runs daily at 03:00 too; "often" is the most frequent.
    let o = run(dir.path(), &["check", "-c", "c.toml"]);
    assert_eq!(o.status.code(), Some(0), "{}", all(&o));
    let out = stdout(&o);
    assert!(out.contains("ok (sqlite): OK (as job often)"), "{out}");
    assert!(out.contains("quick_check: ok"), "{out}");
    // --job picks another: the nightly one runs the thorough check.
    let o = run(dir.path(), &["check", "-c", "c.toml", "--job", "nightly"]);
    assert_eq!(o.status.code(), Some(0), "{}", all(&o));
    assert!(stdout(&o).contains("integrity_check: ok"), "{}", all(&o));
    let o = run(
        dir.path(),
        &[
            "check", "-c", "c.toml", "--job", "nightly", "--format", "json",
        ],
    );
    let doc: serde_json::Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", all(&o)));
    assert_eq!(doc["targets"][0]["job"], "nightly");
    let o = run(dir.path(), &["check", "-c", "c.toml", "--job", "nosuch"]);
    assert_eq!(o.status.code(), Some(3), "{}", all(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no job named"),
        "{}",
        all(&o)
    );
}

#[test]
fn check_json_is_stable_and_alone_on_stdout() {
    let dir = setup("[[target]]\nname = \"gone\"\nurl = \"sqlite://./nope.db\"\n");
    let o = run(
        dir.path(),
        &[
            "check",
            "-c",
            "c.toml",
            "--format",
            "json",
            "--log-level",
            "debug",
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", all(&o)));
    assert_eq!(doc["status"], "CRITICAL");
    let targets = doc["targets"].as_array().cloned().unwrap_or_default();
    assert_eq!(targets.len(), 2);
    let gone = targets
        .iter()
        .find(|t| t["target"] == "gone")
        .unwrap_or_else(|| panic!("no target gone: {doc}"));
    assert_eq!(gone["status"], "CRITICAL");
    assert_eq!(gone["engine"], "sqlite");
    let ok = targets
        .iter()
        .find(|t| t["target"] == "ok")
        .unwrap_or_else(|| panic!("no target ok: {doc}"));
    for c in ok["checks"].as_array().cloned().unwrap_or_default() {
        for field in [
            "check", "status", "value", "unit", "warning", "critical", "message",
        ] {
            assert!(c.get(field).is_some(), "check without {field}: {c}");
        }
    }
    let latency = ok["checks"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["check"] == "connectivity").cloned())
        .unwrap_or_default();
    assert_eq!(latency["unit"], "milliseconds");
    assert_eq!(latency["warning"], 250.0);
}

#[test]
fn run_job_runs_records_and_prints() {
    let dir = setup("");
    let o = run(dir.path(), &["run-job", "health", "-c", "c.toml"]);
    assert_eq!(o.status.code(), Some(0), "{}", all(&o));
    assert!(
        stdout(&o).contains("health on ok: ok, target status OK"),
        "{}",
        all(&o)
    );
    assert!(dir.path().join("data/history.db").exists());
    let o = run(dir.path(), &["run-job", "nosuch", "-c", "c.toml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(all(&o).contains("configured jobs: health"), "{}", all(&o));
}

#[test]
fn jobs_lists_next_fire_times_in_utc() {
    let dir = setup("");
    let o = run(dir.path(), &["jobs", "-c", "c.toml"]);
    assert!(o.status.success(), "{}", all(&o));
    let out = stdout(&o);
    assert!(out.contains("0 3 * * * (Europe/Berlin)"), "{out}");
    // 03:00 Berlin is 01:00 or 02:00 UTC depending on DST.
    assert!(
        out.contains(" 01:00:00") || out.contains(" 02:00:00"),
        "{out}"
    );
}

#[test]
fn migrate_creates_the_store() {
    let dir = setup("");
    let o = run(dir.path(), &["migrate", "-c", "c.toml"]);
    assert!(o.status.success(), "{}", all(&o));
    // The newest migration shipped is the version reported.
    let newest = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite"))
        .map(|d| {
            // The highest number, not the count: parallel branches may leave a gap.
            d.filter_map(|e| e.ok())
                .filter_map(|e| {
                    e.file_name()
                        .to_str()?
                        .split('_')
                        .next()?
                        .parse::<u32>()
                        .ok()
                })
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0);
    assert!(newest >= 3);
    assert!(
        stdout(&o).contains(&format!("schema version {newest}")),
        "{}",
        all(&o)
    );
}

#[test]
fn help_has_examples_and_version_works() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let o = run(dir.path(), &["--help"]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("Examples:"), "{}", stdout(&o));
    let o = run(dir.path(), &["--version"]);
    assert!(stdout(&o).starts_with("dbwarden "), "{}", stdout(&o));
    let o = run(dir.path(), &["manpage"]);
    assert!(stdout(&o).contains(".TH dbwarden"), "{}", stdout(&o));
    let o = run(dir.path(), &["completions", "bash"]);
    assert!(stdout(&o).contains("_dbwarden"), "{}", stdout(&o));
}

/// A table whose name carries a newline and an escape sequence cannot forge a line of
/// `dbwarden check`'s text output, against a real PostgreSQL (JSON keeps the name exact).
#[tokio::test]
async fn a_table_name_with_a_newline_cannot_forge_a_check_line() {
    let Ok(url) = std::env::var("DBWARDEN_TEST_PG_URL") else {
        if std::env::var("DBWARDEN_REQUIRE_SERVICES").as_deref() == Ok("1") {
            panic!("DBWARDEN_TEST_PG_URL not set, but DBWARDEN_REQUIRE_SERVICES=1");
        }
        eprintln!("skipping: DBWARDEN_TEST_PG_URL not set");
        return;
    };
    use sqlx::Connection;
    let mut pg = sqlx::PgConnection::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let name = format!(
        "dbw_nl_{:08x}\nOK        connectivity    forged\x1b[2J",
        rand::random::<u32>()
    );
    let quoted = format!("\"{}\"", name.replace('"', "\"\""));
    for sql in [
        format!("CREATE TABLE public.{quoted} (id int)"),
        format!("INSERT INTO public.{quoted} SELECT generate_series(1, 2000)"),
        format!("DELETE FROM public.{quoted} WHERE id <= 1500"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut pg)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    // Statistics reach pg_stat_user_tables within about a second.
    for _ in 0..50 {
        let dead: i64 = sqlx::query_scalar(
            "SELECT coalesce(max(n_dead_tup), 0) FROM pg_stat_user_tables WHERE relname = $1",
        )
        .bind(&name)
        .fetch_one(&mut pg)
        .await
        .unwrap_or(0);
        if dead > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        dir.path().join("c.toml"),
        format!(
            "[[target]]\nname = \"pg\"\nurl = \"{url}\"\n\
             thresholds = {{ dead_tuples = {{ warning = \"1%\", critical = \"2%\", min_rows = 1 }} }}\n"
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let o = run(dir.path(), &["check", "-c", "c.toml"]);
    let text = stdout(&o);
    let drop = format!("DROP TABLE public.{quoted}");
    let _ = sqlx::query(sqlx::AssertSqlSafe(drop))
        .execute(&mut pg)
        .await;
    assert!(
        text.contains("dbw_nl_"),
        "the table must be reported: {}",
        all(&o)
    );
    assert!(
        !text.lines().any(|l| l
            .trim_start()
            .starts_with("OK        connectivity    forged")),
        "a forged line: {text}"
    );
    assert!(
        !text.contains('\x1b'),
        "an escape sequence reached the terminal: {text}"
    );
    assert!(
        text.contains("\\nOK        connectivity    forged\\x1b[2J"),
        "{text}"
    );
}

/// `[daemon] agent` names this daemon in the store (two daemons on one host can share a
/// store under different names); every row the run writes carries it. A bad name is a
/// config error naming the key.
#[tokio::test]
async fn the_configured_agent_name_is_on_every_row() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let config = |agent: &str| {
        format!(
            "[daemon]\nhistory = \"sqlite://./data/history.db\"\nagent = \"{agent}\"\n\
             [[target]]\nname = \"ok\"\nurl = \"sqlite://./ok.db?mode=rwc\"\n\
             [[job]]\nname = \"health\"\nkind = \"health\"\nschedule = \"@every 1h\"\n"
        )
    };
    std::fs::write(dir.path().join("c.toml"), config("db-ci-7")).unwrap_or_else(|e| panic!("{e}"));
    let o = run(dir.path(), &["run-job", "health", "-c", "c.toml"]);
    assert_eq!(o.status.code(), Some(0), "{}", all(&o));
    let opts = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(dir.path().join("data/history.db"))
        .read_only(true);
    let mut c = sqlx::SqliteConnection::connect_with(&opts)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for table in ["job_runs", "series", "check_latest"] {
        let agents: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT DISTINCT agent FROM {table}"
        )))
        .fetch_all(&mut c)
        .await
        .unwrap_or_else(|e| panic!("{table}: {e}"));
        assert_eq!(agents, vec!["db-ci-7".to_string()], "{table}");
    }
    let _ = c.close().await;

    std::fs::write(dir.path().join("c.toml"), config("no spaces/please"))
        .unwrap_or_else(|e| panic!("{e}"));
    let o = run(dir.path(), &["config", "check", "c.toml"]);
    assert_eq!(o.status.code(), Some(2), "{}", all(&o));
    assert!(all(&o).contains("daemon.agent"), "{}", all(&o));
}
