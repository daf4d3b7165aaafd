//! Maintenance against the real PostgreSQL server (`DBWARDEN_TEST_PG_URL`; autovacuum is
//! off there, so a mass UPDATE leaves the dead rows for us).

mod common;

use std::time::Duration;

use dbwarden::config::{Config, MaintenanceParams, Target};
use dbwarden::engine::postgres::MaintenanceSettings;
use dbwarden::engine::{Engine, RunScope};
use dbwarden::jobs::maintenance::{MaintenanceReport, Request, maintain};
use dbwarden::maintenance::{Action, Outcome};
use sqlx::{AssertSqlSafe, Connection, Executor};
use tokio_util::sync::CancellationToken;

use common::pg::{PgDb, pg_url};

/// At most one maintenance run per server: the tests of this file share the server-wide
/// lock of 127.0.0.1:5432, so they take turns.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A config with one PostgreSQL target `pg` and a maintenance job with `extra` keys.
fn config(url: &str, extra: &str) -> (tempfile::TempDir, Config) {
    common::maint::config("pg", url, "", extra)
}

fn parts(c: &Config) -> (&Target, &MaintenanceParams) {
    let t = c.target("pg").unwrap_or_else(|| panic!("no target"));
    let p = c
        .job("nightly")
        .and_then(|j| j.params.maintenance())
        .unwrap_or_else(|| panic!("no maintenance job"));
    (t, p)
}

async fn run(c: &Config, dry_run: bool) -> MaintenanceReport {
    let (target, params) = parts(c);
    let req = Request {
        target,
        params,
        tz: c.timezone,
        use_window: false,
        dry_run,
        watch_vacuum: None,
        status: &|| None,
        history: None,
    };
    maintain(req, &CancellationToken::new(), |_| {}, |_| {})
        .await
        .unwrap_or_else(|e| panic!("maintain: {e}"))
}

/// Creates `table` with `rows` rows, analyzes it (in a new session), and (when `bloat`) updates every row
/// once; the connection is closed so its statistics are flushed.
async fn table(db: &PgDb, table: &str, rows: i64, bloat: bool) {
    let mut c = db.connect().await;
    for sql in [
        format!("CREATE TABLE {table} (id int PRIMARY KEY, v int)"),
        format!("INSERT INTO {table} SELECT g, 0 FROM generate_series(1, {rows}) g"),
    ] {
        c.execute(AssertSqlSafe(sql))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    // The inserts' statistics are flushed when the session ends; ANALYZE after that, or
    // they would count as changes since the analyze.
    let _ = c.close().await;
    let mut c = db.connect().await;
    c.execute(AssertSqlSafe(format!("ANALYZE {table}")))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    if bloat {
        c.execute(AssertSqlSafe(format!("UPDATE {table} SET v = v + 1")))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let _ = c.close().await;
}

async fn dead_rows(db: &PgDb, display: &str) -> f64 {
    let mut c = db.connect().await;
    let n: f64 = sqlx::query_scalar(
        "SELECT n_dead_tup::float8 FROM pg_stat_user_tables WHERE schemaname || '.' || relname = $1",
    )
    .bind(display)
    .fetch_one(&mut c)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let _ = c.close().await;
    n
}

const ODD: &str = r#""Mixed Case ü"."bloat ""q"" table""#;
const ODD_DISPLAY: &str = r#"Mixed Case ü.bloat "q" table"#;

#[tokio::test]
async fn bloated_table_is_vacuumed_with_its_reason_and_a_quiet_one_left_alone() {
    let _turn = SERIAL.lock().await;
    let Some(admin) = pg_url() else { return };
    let db = PgDb::create(&admin).await;
    let mut c = db.connect().await;
    c.execute(r#"CREATE SCHEMA "Mixed Case ü""#)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let _ = c.close().await;
    table(&db, ODD, 50_000, true).await;
    table(&db, "public.quiet", 50_000, false).await;
    let before = dead_rows(&db, ODD_DISPLAY).await;
    assert!(before >= 50_000.0, "the UPDATE left {before} dead rows");
    let (_dir, cfg) = config(&db.url, "");

    // Dry run: the plan, nothing changed.
    let dry = run(&cfg, true).await;
    assert_eq!(dry.skipped, None);
    let names: Vec<&str> = dry.plan.iter().map(|s| s.table.as_str()).collect();
    assert_eq!(
        names,
        [ODD_DISPLAY],
        "only the bloated table: {:?}",
        dry.plan
    );
    assert_eq!(dry.plan[0].action, Action::VacuumAnalyze);
    assert!(
        dry.plan[0]
            .reason
            .starts_with("50000 dead rows > autovacuum trigger 10050"),
        "{}",
        dry.plan[0].reason
    );
    assert!(dry.records.is_empty());
    assert_eq!(
        dead_rows(&db, ODD_DISPLAY).await,
        before,
        "a dry run changes nothing"
    );

    // The run: dead rows gone, the record says why the table was chosen.
    let r = run(&cfg, false).await;
    assert_eq!(r.records.len(), 1, "{r:?}");
    let rec = &r.records[0];
    assert_eq!(rec.outcome, Outcome::Done, "{rec:?}");
    assert_eq!(rec.step.dead_rows, before);
    assert!(rec.step.reason.contains("dead rows > autovacuum trigger"));
    assert_eq!(rec.after.dead_rows, Some(0.0));
    assert_eq!(dead_rows(&db, ODD_DISPLAY).await, 0.0);
    // Nothing left to do.
    assert!(run(&cfg, false).await.plan.is_empty());
    db.drop_db().await;
}

#[tokio::test]
async fn a_locked_table_is_skipped_quickly_and_the_run_goes_on() {
    let _turn = SERIAL.lock().await;
    let Some(admin) = pg_url() else { return };
    let db = PgDb::create(&admin).await;
    table(&db, "public.locked", 20_000, true).await;
    table(&db, "public.free", 20_000, true).await;
    let mut holder = db.connect().await;
    holder
        .execute("BEGIN")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    holder
        .execute("LOCK TABLE public.locked IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (_dir, cfg) = config(&db.url, "lock_timeout = \"300ms\"");
    // The statistics are read without relation locks: the plan has both tables.
    let r = run(&cfg, false).await;
    let got: Vec<(String, String)> = r
        .records
        .iter()
        .map(|x| (x.step.table.clone(), x.outcome.to_string()))
        .collect();
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(
        got.contains(&(
            "public.locked".into(),
            "skipped: lock not available within lock_timeout 300ms".into()
        )),
        "{got:?}"
    );
    assert!(
        got.contains(&("public.free".into(), "done".into())),
        "{got:?}"
    );
    let _ = holder.execute("ROLLBACK").await;
    let _ = holder.close().await;
    db.drop_db().await;
}

#[tokio::test]
async fn two_dbwardens_one_maintains_the_other_records_the_lock() {
    let _turn = SERIAL.lock().await;
    let Some(admin) = pg_url() else { return };
    let db = PgDb::create(&admin).await;
    table(&db, "public.t", 20_000, true).await;
    let (_dir, cfg) = config(&db.url, "");
    let (target, _) = parts(&cfg);
    // The other dbwarden: a maintenance session of its own engine holds the lock.
    let other = Engine::open_one_shot(target).unwrap_or_else(|e| panic!("{e}"));
    let Engine::Postgres(pg) = &other else {
        panic!("not postgres")
    };
    let settings = MaintenanceSettings {
        lock_timeout: Duration::from_secs(5),
        cost_delay: Duration::ZERO,
    };
    let session = pg
        .maintenance(&RunScope::default(), &settings)
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    let r = run(&cfg, false).await;
    assert_eq!(
        r.skipped.as_ref().map(|s| s.why.as_str()),
        Some("another dbwarden holds the lock")
    );
    assert!(r.records.is_empty());
    assert_eq!(dead_rows(&db, "public.t").await, 20_000.0, "untouched");
    session.close().await;
    let r = run(&cfg, false).await;
    assert_eq!(r.skipped, None);
    assert_eq!(
        r.records.first().map(|x| x.outcome.clone()),
        Some(Outcome::Done)
    );
    other.close(Duration::from_secs(1)).await;
    db.drop_db().await;
}

#[tokio::test]
async fn max_duration_cancels_the_running_vacuum_on_the_server() {
    let _turn = SERIAL.lock().await;
    let Some(admin) = pg_url() else { return };
    let db = PgDb::create(&admin).await;
    // Every page dirtied costs 20: at the longest cost delay (100 ms per 200 credits) the
    // VACUUM of ~450 dirtied pages takes seconds, far past max_duration.
    table(&db, "public.big", 100_000, true).await;
    table(&db, "public.next", 20_000, true).await;
    let (_dir, cfg) = config(
        &db.url,
        "max_duration = \"1s\"\nvacuum_cost_delay = \"100ms\"",
    );
    let r = run(&cfg, false).await;
    let got: Vec<String> = r
        .records
        .iter()
        .map(|x| format!("{} {}", x.step.table, x.outcome))
        .collect();
    assert_eq!(
        got,
        [
            "public.big interrupted: cancelled on the server: the maintenance window or max_duration ended",
            "public.next skipped: not started: the maintenance window or max_duration ended",
        ]
    );
    // No dbwarden backend is left running a statement.
    let mut c = db.connect().await;
    let left: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'dbwarden' AND state <> 'idle'",
    )
    .fetch_one(&mut c)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(left, 0);
    let _ = c.close().await;
    db.drop_db().await;
}

#[tokio::test]
async fn a_horizon_holder_is_named_instead_of_vacuuming_in_vain() {
    let _turn = SERIAL.lock().await;
    let Some(admin) = pg_url() else { return };
    let db = PgDb::create(&admin).await;
    table(&db, "public.t", 20_000, false).await;
    // A transaction with a snapshot, then rows die after it: VACUUM cannot remove them.
    let mut old = db.connect().await;
    old.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    old.execute("SELECT count(*) FROM public.t")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut c = db.connect().await;
    c.execute("UPDATE public.t SET v = v + 1")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let _ = c.close().await;
    // The engine names the holder; the planner (patience 0 here instead of 5 min) turns
    // the table's VACUUM into a skip that names it.
    let (_dir, cfg) = config(&db.url, "");
    let (target, params) = parts(&cfg);
    let engine = Engine::open_one_shot(target).unwrap_or_else(|e| panic!("{e}"));
    let Engine::Postgres(pg) = &engine else {
        panic!("not postgres")
    };
    let settings = MaintenanceSettings {
        lock_timeout: Duration::from_secs(5),
        cost_delay: Duration::ZERO,
    };
    let mut s = pg
        .maintenance(&RunScope::default(), &settings)
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    let input = s.plan_input().await.unwrap_or_else(|e| panic!("{e}"));
    let holder = input
        .horizon
        .clone()
        .unwrap_or_else(|| panic!("no holder found"));
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut old)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        holder.who.starts_with(&format!("session pid {pid} (user ")),
        "{}",
        holder.who
    );
    let mut policy = params.policy(input.freeze_max_age);
    policy.horizon_patience_secs = 0.0;
    let p = dbwarden::maintenance::plan(&input.tables, &policy, Some(&holder));
    assert_eq!(p.steps.len(), 1, "{p:?}");
    let skip = p.steps[0]
        .skip
        .clone()
        .unwrap_or_else(|| panic!("not skipped"));
    assert_eq!(skip.kind, dbwarden::maintenance::SkipKind::Horizon);
    let skip = skip.why;
    assert!(
        skip.starts_with(&format!(
            "VACUUM cannot remove the dead rows while session pid {pid}"
        )),
        "{skip}"
    );
    s.close().await;
    let _ = old.execute("ROLLBACK").await;
    let _ = old.close().await;
    engine.close(Duration::from_secs(1)).await;
    db.drop_db().await;
}

#[tokio::test]
async fn never_on_a_hot_standby() {
    let _turn = SERIAL.lock().await;
    let Some(url) = common::url_from_env("DBWARDEN_TEST_PG_STANDBY_URL") else {
        return;
    };
    let (_dir, cfg) = config(&url, "");
    let r = run(&cfg, false).await;
    assert_eq!(
        r.skipped.as_ref().map(|s| s.why.as_str()),
        Some("the server is a hot standby (pg_is_in_recovery()): maintenance runs on the primary")
    );
    assert_eq!(
        r.skipped.map(|s| s.kind),
        Some(dbwarden::maintenance::SkipKind::Standby)
    );
}

/// `dbwarden maintain` as an operator runs it.
fn maintain_cli(config: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["maintain"];
    all.extend_from_slice(args);
    cli(config, &all)
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
async fn the_maintain_command_prints_the_plan_then_runs_it() {
    let _turn = SERIAL.lock().await;
    let Some(admin) = pg_url() else { return };
    let db = PgDb::create(&admin).await;
    table(&db, "public.bloated", 20_000, true).await;
    table(&db, "public.quiet", 20_000, false).await;
    let (dir, _cfg) = config(&db.url, "");
    let path = dir.path().join("dbwarden.toml");
    let (code, out, err) = maintain_cli(&path, &["--target", "pg", "--dry-run"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        out,
        "public.bloated\tvacuum_analyze\t20000 dead rows > autovacuum trigger 4050 (4.9×, floor 1000)\n"
    );
    assert_eq!(
        dead_rows(&db, "public.bloated").await,
        20_000.0,
        "a dry run changes nothing"
    );
    let (code, out, err) = maintain_cli(&path, &["--target", "pg"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out, "public.bloated\tvacuum_analyze\tdone\n");
    assert!(
        err.contains("[1/1] vacuum_analyze public.bloated: "),
        "{err}"
    );
    assert_eq!(dead_rows(&db, "public.bloated").await, 0.0);
    let (code, out, _) = maintain_cli(&path, &["--target", "pg", "--format", "json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["plan"], serde_json::json!([]), "{out}");
    let (code, _, err) = maintain_cli(&path, &["--target", "nope"]);
    assert_eq!(code, 3, "{err}");

    // The scheduled kind through the job contract (`run-job`), then the history of both.
    table(&db, "public.later", 20_000, true).await;
    let (code, out, err) = cli(&path, &["run-job", "nightly"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        out,
        "nightly on pg: ok, 1 table(s) planned: 1 done, 0 skipped, 0 failed, 0 interrupted\n"
    );
    assert_eq!(dead_rows(&db, "public.later").await, 0.0);
    let (code, out, err) = cli(
        &path,
        &[
            "history",
            "maintenance",
            "--target",
            "pg",
            "--since",
            "1h",
            "--format",
            "csv",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let lines: Vec<Vec<&str>> = out.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(lines[0][2..6], ["target", "table", "action", "outcome"]);
    assert_eq!(
        lines[1][2..6],
        ["pg", "public.bloated", "vacuum_analyze", "done"]
    );
    assert_eq!(
        lines[2][2..6],
        ["pg", "public.later", "vacuum_analyze", "done"]
    );
    // Dead rows before and after: the 6th and 5th fields from the end (the quoted reason
    // before them holds a comma).
    let n = lines[1].len();
    assert_eq!(lines[1][n - 6..n - 4], ["20000", "0"], "{out}");
    let (_, json, _) = cli(&path, &["history", "maintenance", "--format", "json"]);
    let v: serde_json::Value =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    assert!(
        v[1]["run_id"].is_string(),
        "a job's records carry its run: {json}"
    );
    assert!(
        v[0]["run_id"].is_null(),
        "dbwarden maintain has no job run: {json}"
    );
    assert!(
        v[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("dead rows > autovacuum trigger")),
        "{json}"
    );
    db.drop_db().await;
}

/// The maintenance record round-trips through both store dialects.
#[tokio::test]
async fn maintenance_records_round_trip_in_both_store_dialects() {
    let _turn = SERIAL.lock().await;
    use dbwarden::config::SecretUrl;
    use dbwarden::maintenance::run::After;
    use dbwarden::maintenance::{Plan, Policy, StepRecord, TableFacts};
    use dbwarden::store::{Record, Store};
    let Some(admin) = pg_url() else { return };
    let facts = TableFacts {
        name: r#"s.bloat "q", table"#.into(),
        sql_name: "x".into(),
        size_bytes: 8192.0,
        dead_rows: 5000.0,
        vacuum_trigger: 50.0,
        freeze_age: Some(7.0),
        ..TableFacts::default()
    };
    let Plan { steps, .. } = dbwarden::maintenance::plan(&[facts], &Policy::default(), None);
    let now = chrono::Utc::now();
    let rec = StepRecord {
        step: steps[0].clone(),
        outcome: Outcome::skipped(
            dbwarden::maintenance::SkipKind::LockHeld,
            "lock not available within lock_timeout 5s",
        ),
        started: now,
        finished: now,
        after: After {
            dead_rows: Some(5000.0),
            ..After::default()
        },
    };
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let db = PgDb::create(&admin).await;
    for url in [
        format!("sqlite://{}/h.db", dir.path().display()),
        db.url.clone(),
    ] {
        let store = Store::open(&SecretUrl::new(url.clone()), None)
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        store.push(Record::Maintenance {
            target: "pg".into(),
            run_id: Some("r1".into()),
            record: Box::new(rec.clone()),
        });
        store.flush().await.unwrap_or_else(|e| panic!("{url}: {e}"));
        let rows = store
            .maintenance_actions(Some("pg"), now - chrono::Duration::minutes(1))
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(rows.len(), 1, "{url}");
        let r = &rows[0];
        assert_eq!(
            (r.table.as_str(), r.action.as_str(), r.outcome.as_str()),
            (r#"s.bloat "q", table"#, "vacuum_analyze", "skipped"),
            "{url}"
        );
        assert_eq!(
            r.detail.as_deref(),
            Some("lock not available within lock_timeout 5s")
        );
        assert_eq!(
            (r.dead_rows_before, r.dead_rows_after),
            (Some(5000.0), Some(5000.0))
        );
        assert_eq!(r.freeze_age_before, Some(7.0));
        assert_eq!(r.run_id.as_deref(), Some("r1"));
        assert!(
            r.reason
                .starts_with("5000 dead rows > autovacuum trigger 50"),
            "{}",
            r.reason
        );
        let _ = store.close(Duration::from_secs(5)).await;
    }
    db.drop_db().await;
}

#[test]
fn maintenance_keys_are_validated_all_at_once() {
    let bad = "window = \"3-5\"\nfreeze_percent = 150\nactions = []\nmax_tables = 0\nlock_timeout = \"0s\"";
    let load = |extra: &str| common::maint::try_config("pg", "postgres://127.0.0.1/x", "", extra).1;
    let err = match load(bad) {
        Ok(_) => panic!("accepted a bad maintenance job"),
        Err(e) => e,
    };
    for (key, what) in [
        (
            "job[0].window",
            "is not a window; write it as \"HH:MM-HH:MM\"",
        ),
        (
            "job[0].freeze_percent",
            "150 is not a percentage between 1 and 100",
        ),
        ("job[0].actions", "no action allowed"),
        ("job[0].max_tables", "0 tables"),
        ("job[0].lock_timeout", "0 would wait forever"),
    ] {
        assert!(
            err.lines().any(|l| l.contains(key) && l.contains(what)),
            "{key}: {what} missing from:\n{err}"
        );
    }
    // An unknown action is named by serde with the key's path.
    let err = match load(&bad.replace("actions = []", "actions = [\"vacuum_full\"]")) {
        Ok(_) => panic!("accepted vacuum_full"),
        Err(e) => e,
    };
    assert!(err.contains("vacuum_full"), "{err}");
}

/// A config with one SQLite target `lite` (its `thresholds` inline table given) and a
/// maintenance job with `extra` keys.
fn sqlite_config(
    db: &std::path::Path,
    thresholds: &str,
    extra: &str,
) -> (tempfile::TempDir, Config) {
    common::maint::config(
        "lite",
        &format!("sqlite://{}", db.display()),
        &format!("thresholds = {{ {thresholds} }}"),
        extra,
    )
}

async fn run_sqlite(c: &Config) -> MaintenanceReport {
    let t = c.target("lite").unwrap_or_else(|| panic!("no target"));
    let p = c
        .job("nightly")
        .and_then(|j| j.params.maintenance())
        .unwrap_or_else(|| panic!("no job"));
    let req = Request {
        target: t,
        params: p,
        tz: c.timezone,
        use_window: false,
        dry_run: false,
        watch_vacuum: None,
        status: &|| None,
        history: None,
    };
    maintain(req, &CancellationToken::new(), |_| {}, |_| {})
        .await
        .unwrap_or_else(|e| panic!("maintain: {e}"))
}

/// A SQLite database with `mode` journaling and ~4 MB in table `t`.
async fn sqlite_db(path: &std::path::Path, mode: &str) -> sqlx::SqliteConnection {
    let opts = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true);
    let mut c = sqlx::SqliteConnection::connect_with(&opts)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for sql in [
        format!("PRAGMA journal_mode={mode}"),
        "PRAGMA wal_autocheckpoint=0".to_string(),
        "CREATE TABLE t (id INTEGER PRIMARY KEY, b BLOB)".to_string(),
        "WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < 1000) \
         INSERT INTO t SELECT i, randomblob(4000) FROM g"
            .to_string(),
    ] {
        c.execute(AssertSqlSafe(sql))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    c
}

fn outcomes(r: &MaintenanceReport) -> Vec<String> {
    r.records
        .iter()
        .map(|x| format!("{} {}", x.step.action.as_str(), x.outcome))
        .collect()
}

#[tokio::test]
async fn sqlite_freelist_after_deletes_is_reclaimed_by_vacuum() {
    let _turn = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let db = dir.path().join("app.db");
    let mut c = sqlite_db(&db, "delete").await;
    c.execute("DELETE FROM t WHERE id > 100")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let _ = c.close().await;
    let before = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
    // Below the check's built-in 16 MB floor nothing is vacuumed ...
    let (_d, cfg) = sqlite_config(&db, "", "");
    assert_eq!(outcomes(&run_sqlite(&cfg).await), ["optimize done"]);
    // ... with the target's floor lowered, the freelist is reclaimed.
    let (_d, cfg) = sqlite_config(&db, "sqlite_freelist = { min_size = \"1MB\" }", "");
    let r = run_sqlite(&cfg).await;
    assert_eq!(outcomes(&r), ["optimize done", "vacuum done"], "{r:?}");
    let v = &r.records[1];
    assert!(v.step.reason.contains("% ≥ 25%"), "{}", v.step.reason);
    assert!(
        v.step.dead_rows > 800.0,
        "free pages before: {}",
        v.step.dead_rows
    );
    assert_eq!(v.after.dead_rows, Some(0.0));
    let after = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
    assert!(after * 4 < before, "file {before} -> {after} bytes");
}

#[tokio::test]
async fn sqlite_wal_past_its_size_is_checkpointed_and_truncated() {
    let _turn = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let db = dir.path().join("app.db");
    // The application keeps its connection (autocheckpoint off): the WAL keeps ~4 MB.
    let app = sqlite_db(&db, "wal").await;
    let wal = dir.path().join("app.db-wal");
    let before = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert!(before > 2_000_000, "WAL {before} bytes");
    let (_d, cfg) = sqlite_config(&db, "sqlite_wal_size = { warning = \"1MB\" }", "");
    let r = run_sqlite(&cfg).await;
    assert_eq!(
        outcomes(&r),
        ["optimize done", "wal_checkpoint done"],
        "{r:?}"
    );
    assert_eq!(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(1), 0);
    assert_eq!(r.records[1].after.size_bytes, Some(0.0));
    let _ = app.close().await;
}

#[tokio::test]
async fn a_busy_sqlite_database_is_skipped_with_the_reason() {
    let _turn = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let db = dir.path().join("app.db");
    let mut app = sqlite_db(&db, "delete").await;
    app.execute("BEGIN EXCLUSIVE")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (_d, cfg) = sqlite_config(&db, "", "lock_timeout = \"200ms\"");
    let r = run_sqlite(&cfg).await;
    assert_eq!(
        r.skipped.as_ref().map(|s| s.why.as_str()),
        Some("database is busy (not available within busy_timeout 200ms)"),
        "{r:?}"
    );
    let _ = app.execute("ROLLBACK").await;
    let _ = app.close().await;
}

#[tokio::test]
async fn the_maintain_command_shows_vacuum_progress() {
    let _turn = SERIAL.lock().await;
    let Some(admin) = pg_url() else { return };
    let db = PgDb::create(&admin).await;
    // Throttled to the longest cost delay, this VACUUM takes about 4 s here: the 2 s
    // progress poll sees it running.
    table(&db, "public.big", 200_000, true).await;
    let (dir, _cfg) = config(&db.url, "vacuum_cost_delay = \"100ms\"");
    let path = dir.path().join("dbwarden.toml");
    let (code, out, err) = maintain_cli(&path, &["--target", "pg"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("[1/1] vacuum_analyze public.big: "), "{err}");
    assert!(
        err.lines()
            .any(|l| l.contains(" heap blocks scanned") && l.contains(" of ")),
        "{err}"
    );
    assert_eq!(out, "public.big\tvacuum_analyze\tdone\n");
    db.drop_db().await;
}

#[tokio::test]
async fn the_next_health_round_sees_the_vacuumed_table_clear() {
    let _turn = SERIAL.lock().await;
    let Some(admin) = pg_url() else { return };
    let db = PgDb::create(&admin).await;
    table(&db, "public.bloated", 20_000, true).await;
    let (dir, _cfg) = config(&db.url, "");
    let path = dir.path().join("dbwarden.toml");
    let dead_tuples = || {
        let (_, out, err) = cli(&path, &["check", "--target", "pg", "--format", "json"]);
        let v: serde_json::Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
        v["targets"][0]["checks"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["check"] == "dead_tuples").cloned())
            .unwrap_or_else(|| panic!("no dead_tuples in {out}"))
    };
    let before = dead_tuples();
    assert_eq!(before["status"], "CRITICAL", "{before}");
    assert!(
        before["message"]
            .as_str()
            .is_some_and(|m| m.contains("public.bloated")),
        "{before}"
    );
    let (code, out, err) = maintain_cli(&path, &["--target", "pg"]);
    assert_eq!(code, 0, "{out}{err}");
    let after = dead_tuples();
    assert_eq!(after["status"], "OK", "{after}");
    db.drop_db().await;
}

#[tokio::test]
async fn the_load_guard_skips_tables_while_the_server_is_busy() {
    let _turn = SERIAL.lock().await;
    let Some(admin) = pg_url() else { return };
    let db = PgDb::create(&admin).await;
    table(&db, "public.t", 20_000, true).await;
    // Three sessions running statements (other users of the server only add to them).
    let mut sleepers = Vec::new();
    for _ in 0..3 {
        let mut c = db.connect().await;
        sleepers.push(tokio::spawn(async move {
            let _ = c.execute("SELECT pg_sleep(30)").await;
        }));
    }
    let mut watch = db.connect().await;
    for _ in 0..200 {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)' AND state = 'active'",
        )
        .fetch_one(&mut watch)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        if n == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_dir, cfg) = config(&db.url, "max_active_sessions = 2");
    let r = run(&cfg, false).await;
    let got: Vec<String> = r.records.iter().map(|x| x.outcome.to_string()).collect();
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].starts_with("skipped: load guard: ") && got[0].ends_with("> max_active_sessions 2"),
        "{got:?}"
    );
    assert_eq!(dead_rows(&db, "public.t").await, 20_000.0, "untouched");
    sqlx::query(
        "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)'",
    )
    .execute(&mut watch)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    for s in sleepers {
        let _ = s.await;
    }
    // With room under the limit, the table is vacuumed.
    let (_dir, cfg) = config(&db.url, "max_active_sessions = 1000");
    let r = run(&cfg, false).await;
    assert_eq!(
        r.records.first().map(|x| x.outcome.clone()),
        Some(Outcome::Done)
    );
    let _ = watch.close().await;
    db.drop_db().await;
}

#[tokio::test]
async fn one_maintenance_run_per_server_across_its_databases() {
    let _turn = SERIAL.lock().await;
    let Some(admin) = pg_url() else { return };
    let db = PgDb::create(&admin).await;
    table(&db, "public.t", 20_000, true).await;
    let (_dir, cfg) = config(&db.url, "");
    // Another run, on another database of this server, holds the server-wide lock (taken
    // in database postgres, where every dbwarden takes it).
    let (head, _) = admin.rsplit_once('/').unwrap_or((&admin, ""));
    let mut other = sqlx::PgConnection::connect(&format!("{head}/postgres"))
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(7233475224726828082)")
        .fetch_one(&mut other)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(got);
    // A dry run does not wait for its turn: it says why it would.
    let r = run(&cfg, true).await;
    assert_eq!(
        r.skipped.as_ref().map(|s| s.why.as_str()),
        Some("another maintenance run holds this server's lock (one run per server at a time)")
    );
    assert!(r.records.is_empty());
    assert_eq!(dead_rows(&db, "public.t").await, 20_000.0, "untouched");
    // A real run waits for its turn (retrying every 5 s) and runs once the other ends.
    let release = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(
            dead_rows(&db, "public.t").await,
            20_000.0,
            "waits, untouched"
        );
        other.close().await.unwrap_or_else(|e| panic!("{e}"));
    };
    let (r, ()) = tokio::join!(run(&cfg, false), release);
    assert_eq!(r.skipped, None, "runs once the server's lock is free");
    assert_eq!(
        r.records.first().map(|x| x.outcome.clone()),
        Some(Outcome::Done)
    );
    db.drop_db().await;
}

/// The daemon's wiring of the self-target's `maintenance_failing`: a scheduled run that
/// found another dbwarden's lock ends `ok` with a whole-run skip, which counts; the next
/// run that does its work resets the streak.
#[tokio::test]
async fn a_run_skipped_by_the_lock_feeds_maintenance_failing_and_a_done_run_resets_it() {
    use dbwarden::alerts::self_target::MaintenanceStreaks;
    use dbwarden::events::Events;
    use dbwarden::store::RunOutcome;
    use std::sync::Arc;

    let _turn = SERIAL.lock().await;
    let Some(admin) = pg_url() else { return };
    let db = PgDb::create(&admin).await;
    let (_dir, cfg) = config(&db.url, "");
    let cfg = Arc::new(cfg);
    let (Some(job), Some(target)) = (cfg.job("nightly").cloned(), cfg.target("pg").cloned()) else {
        panic!("job or target missing")
    };
    let events = Events::default();
    let mut seen = events.subscribe("test");
    let (shared, ctx) = dbwarden::jobs::runtime(&cfg, events);
    let mut streaks = MaintenanceStreaks::default();
    let mut feed = |streaks: &mut MaintenanceStreaks| {
        // As the daemon's loop feeds it.
        while let Some(e) = seen.try_recv() {
            streaks.observe(&e, |id| shared.take_maintenance_skip(id));
        }
    };

    let other = Engine::open_one_shot(&target).unwrap_or_else(|e| panic!("{e}"));
    let Engine::Postgres(pg) = &other else {
        panic!("not postgres")
    };
    let settings = MaintenanceSettings {
        lock_timeout: Duration::from_secs(5),
        cost_delay: Duration::ZERO,
    };
    let session = pg
        .maintenance(&RunScope::default(), &settings)
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    let f =
        dbwarden::scheduler::run_now(ctx.clone(), job.clone(), target.clone(), cfg.clone()).await;
    assert_eq!(f.outcome, RunOutcome::Ok, "{:?}", f.error);
    feed(&mut streaks);
    let c = streaks.current();
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!(
        (c[0].job.as_str(), c[0].target.as_str(), c[0].runs),
        ("nightly", "pg", 1)
    );
    assert_eq!(c[0].last_reason, "skipped: another dbwarden holds the lock");
    session.close().await;
    other.close(Duration::from_secs(2)).await;

    let f = dbwarden::scheduler::run_now(ctx.clone(), job, target, cfg.clone()).await;
    assert_eq!(f.outcome, RunOutcome::Ok, "{:?}", f.error);
    feed(&mut streaks);
    assert!(streaks.current().is_empty(), "{:?}", streaks.current());
    db.drop_db().await;
}
