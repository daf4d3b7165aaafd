//! Slow-query sampling (`kind = "sample"`) against real PostgreSQL servers:
//! - the throwaway primary (`DBWARDEN_TEST_PG_PRIMARY_URL`, pg_stat_statements preloaded),
//!   and again PostgreSQL 17 (`DBWARDEN_TEST_PG17_URL`: pg_stat_statements 1.11, and the
//!   top statements' generic plans, which need 16+): a slow statement reported with its
//!   calls and time, a reset of one entry in the middle (no negative deltas), live long
//!   runners redacted, plans stored by `run-job` and shown by `slow-queries`;
//! - the shared server (`DBWARDEN_TEST_PG_URL`, pg_stat_statements NOT preloaded): UNKNOWN
//!   with the fix, every run, never a failed run.
//!
//! Each test works in its own scratch database (`dbw_test_*`), dropped at the end.

mod common;

use std::time::Duration;

use dbwarden::config::{Config, JobParams, SampleParams};
use dbwarden::engine::{Engine, RunScope};
use dbwarden::events::Events;
use dbwarden::jobs::sample::{SampleRun, SampleState, sample};
use dbwarden::sample::Outcome;
use sqlx::{AssertSqlSafe, PgConnection};

async fn exec(c: &mut PgConnection, sql: &str) {
    if let Err(e) = sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
        .execute(c)
        .await
    {
        panic!("{sql}: {e}");
    }
}

/// A config with target "pg" at `url` and a sample job with `keys`, loaded as the daemon
/// loads it; returns the config and the job's params.
fn config(dir: &std::path::Path, url: &str, keys: &str) -> (Config, SampleParams) {
    let path = dir.join("dbwarden.toml");
    let body = format!(
        r#"[daemon]
history = "sqlite://{0}/history.db"

[[target]]
name = "pg"
url = "{url}"

[[job]]
name = "slow"
kind = "sample"
schedule = "@every 1m"
{keys}
"#,
        dir.display()
    );
    std::fs::write(&path, body).unwrap_or_else(|e| panic!("write config: {e}"));
    let config = dbwarden::config::load(&path).unwrap_or_else(|e| panic!("config: {e}"));
    let params = match config.job("slow").map(|j| &j.params) {
        Some(JobParams::Sample(p)) => p.clone(),
        other => panic!("not a sample job: {other:?}"),
    };
    (config, params)
}

struct Fixture {
    db: common::pg::PgDb,
    engine: Engine,
    params: SampleParams,
    state: SampleState,
    scope: RunScope,
    _dir: tempfile::TempDir,
}

impl Fixture {
    async fn new(admin: &str, keys: &str, extension: bool) -> Fixture {
        let db = common::pg::PgDb::create(admin).await;
        if extension {
            exec(
                &mut db.connect().await,
                "CREATE EXTENSION pg_stat_statements",
            )
            .await;
        }
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let (config, params) = config(dir.path(), &db.url, keys);
        let target = config
            .target("pg")
            .cloned()
            .unwrap_or_else(|| panic!("no target"));
        let engine = Engine::open(&target).unwrap_or_else(|e| panic!("{e}"));
        Fixture {
            db,
            engine,
            params,
            state: SampleState::default(),
            scope: RunScope::default(),
            _dir: dir,
        }
    }

    async fn sample(&self) -> SampleRun {
        sample(
            &self.engine,
            &self.params,
            &self.state,
            "pg",
            &self.scope,
            &Events::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("sample: {e}"))
    }

    async fn done(self) {
        self.engine.close(Duration::from_secs(2)).await;
        self.db.drop_db().await;
    }
}

/// The selected statement whose text (fetched by the run that selected it first) contains
/// `marker`, looked up by queryid in `texts`.
fn find<'a>(
    run: &'a SampleRun,
    texts: &[(String, String)],
    marker: &str,
) -> Option<&'a dbwarden::sample::StatementDelta> {
    let ids: Vec<&str> = texts
        .iter()
        .filter(|(_, t)| t.contains(marker))
        .map(|(id, _)| id.as_str())
        .collect();
    run.statements()
        .iter()
        .find(|d| ids.contains(&d.key.id.as_str()))
}

fn assert_never_negative(run: &SampleRun) {
    for d in run.statements() {
        assert!(
            d.calls > 0
                && d.total_ms >= 0.0
                && d.rows >= 0
                && d.shared_hit >= 0
                && d.shared_read >= 0,
            "negative or empty delta: {d:?}"
        );
    }
}

/// Defines two tests running `$body(admin_url)`: `$primary` on the throwaway primary
/// (`DBWARDEN_TEST_PG_PRIMARY_URL`, the host's PostgreSQL: 15 here) and `$pg17` on
/// PostgreSQL 17 (`DBWARDEN_TEST_PG17_URL`: pg_stat_statements 1.11, generic plans).
macro_rules! on_primary_and_17 {
    ($body:ident, $primary:ident, $pg17:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $primary() {
            if let Some(admin) = common::url_from_env("DBWARDEN_TEST_PG_PRIMARY_URL") {
                $body(&admin).await;
            }
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $pg17() {
            if let Some(admin) = common::pg::pg17_url().await {
                $body(&admin).await;
            }
        }
    };
}

on_primary_and_17!(
    slow_statement_reported,
    a_slow_statement_is_reported_with_its_calls_and_time,
    pg17_a_slow_statement_is_reported_with_its_calls_and_time
);

/// Issue 12: "a workload with a deliberately slow statement, sampled, reported with correct
/// call counts and time". top_n = 0: only statements above the slow threshold are kept,
/// so the fast statement run ten times must not be there.
async fn slow_statement_reported(admin: &str) {
    let f = Fixture::new(admin, "top_n = 0\nslow_threshold = \"200ms\"", true).await;
    let mut c = f.db.connect().await;
    exec(
        &mut c,
        "CREATE TABLE dbw_slow_t (x int); INSERT INTO dbw_slow_t VALUES (1)",
    )
    .await;

    let first = f.sample().await;
    assert!(
        matches!(&first.outcome, Some(Outcome::Baseline(r)) if r.contains("first")),
        "{first:?}"
    );
    for _ in 0..3 {
        exec(&mut c, "SELECT pg_sleep(0.3), count(*) FROM dbw_slow_t").await;
    }
    for _ in 0..10 {
        exec(&mut c, "SELECT x FROM dbw_slow_t WHERE x = 1").await;
    }
    let second = f.sample().await;
    assert_never_negative(&second);
    let slow = find(&second, &second.new_texts, "pg_sleep")
        .unwrap_or_else(|| panic!("slow statement not reported: {second:?}"));
    assert_eq!(slow.calls, 3, "{slow:?}");
    assert!(slow.total_ms >= 900.0, "3 × 300 ms of pg_sleep: {slow:?}");
    assert!(slow.mean_ms >= 300.0, "{slow:?}");
    assert!(slow.new, "created after the baseline: {slow:?}");
    assert!(
        second
            .new_texts
            .iter()
            .all(|(_, t)| !t.contains("WHERE x = 1")),
        "the fast statement is not selected, so its text is not read: {:?}",
        second.new_texts
    );
    // The normalised text, as PostgreSQL gives it (constants as $n).
    assert!(
        second
            .new_texts
            .iter()
            .any(|(_, t)| t.contains("pg_sleep($1)")),
        "{:?}",
        second.new_texts
    );

    // Nothing ran: nothing of ours reported, and no text fetched again.
    let third = f.sample().await;
    assert!(
        third.statements().iter().all(|d| d.key.id != slow.key.id),
        "{third:?}"
    );
    drop(c);
    f.done().await;
}

on_primary_and_17!(
    reset_in_the_middle,
    a_reset_in_the_middle_gives_no_negative_deltas,
    pg17_a_reset_in_the_middle_gives_no_negative_deltas
);

/// Issue 12: "stats reset in the middle → no negative deltas". The statement's own entry is
/// reset (pg_stat_statements_reset(0, 0, queryid): only ours, the server is shared) between
/// two samples: that sample skips it (new baseline for it; on 17, whose entries say when
/// they started, it counts the calls since the reset), the next one counts from there.
async fn reset_in_the_middle(admin: &str) {
    let f = Fixture::new(admin, "top_n = 100000\nslow_threshold = \"1h\"", true).await;
    let mut c = f.db.connect().await;
    exec(
        &mut c,
        "CREATE TABLE dbw_reset_t (x int); INSERT INTO dbw_reset_t VALUES (1)",
    )
    .await;
    let stmt = "SELECT count(*) FROM dbw_reset_t WHERE x > 0";
    exec(&mut c, stmt).await;
    let queryid: String = sqlx::query_scalar(
        "SELECT queryid::text FROM pg_stat_statements WHERE query LIKE '%dbw_reset_t WHERE x >%' \
         AND dbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_one(&mut c)
    .await
    .unwrap_or_else(|e| panic!("queryid: {e}"));
    let calls = |run: &SampleRun| {
        run.statements()
            .iter()
            .filter(|d| d.key.id == queryid)
            .map(|d| d.calls)
            .sum::<i64>()
    };

    f.sample().await; // baseline
    for _ in 0..5 {
        exec(&mut c, stmt).await;
    }
    let before = f.sample().await;
    assert_never_negative(&before);
    assert_eq!(calls(&before), 5, "{before:?}");

    exec(&mut c, stmt).await;
    exec(
        &mut c,
        &format!("SELECT pg_stat_statements_reset(0, 0, {queryid})"),
    )
    .await;
    exec(&mut c, stmt).await; // 1 call since the reset: lower than the 6 seen before
    let reset = f.sample().await;
    assert_never_negative(&reset);
    if common::pg::server_version(admin).await >= 170_000 {
        // pg_stat_statements 1.11 (17) says when the entry started again (stats_since):
        // after the previous sample, so its one call since the reset is counted, as new.
        assert_eq!(calls(&reset), 1, "counted since the reset: {reset:?}");
        assert!(
            reset
                .statements()
                .iter()
                .any(|d| d.key.id == queryid && d.new),
            "{reset:?}"
        );
    } else {
        assert_eq!(
            calls(&reset),
            0,
            "a reset entry starts a new baseline: {reset:?}"
        );
        match &reset.outcome {
            Some(Outcome::Deltas { entries_reset, .. }) => assert!(*entries_reset >= 1),
            other => panic!("{other:?}"),
        }
    }

    for _ in 0..2 {
        exec(&mut c, stmt).await;
    }
    let after = f.sample().await;
    assert_never_negative(&after);
    assert_eq!(calls(&after), 2, "counted from the new baseline: {after:?}");
    drop(c);
    f.done().await;
}

on_primary_and_17!(
    long_runners_redacted,
    long_runners_are_recorded_with_literals_redacted,
    pg17_long_runners_are_recorded_with_literals_redacted
);

/// Issue 12: live long runners from pg_stat_activity, literals replaced with `?` before
/// they are stored, logged or sent.
async fn long_runners_redacted(admin: &str) {
    let f = Fixture::new(admin, "long_running = \"1s\"", true).await;
    let mut runner = f.db.connect().await;
    let mut watcher = f.db.connect().await;
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut runner)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let long = tokio::spawn(async move {
        exec(
            &mut runner,
            "SELECT pg_sleep(4), 'card 4111-1111' AS secret",
        )
        .await;
    });
    // Wait (a deadline, not a timing assertion) until it has run for over a second.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let old: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND state = 'active' \
             AND query_start < now() - interval '1.2 s')",
        )
        .bind(pid)
        .fetch_one(&mut watcher)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        if old {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the long statement never showed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let run = f.sample().await;
    let l = run
        .long_runners
        .iter()
        .find(|l| l.pid == i64::from(pid))
        .unwrap_or_else(|| panic!("long runner {pid} not recorded: {run:?}"));
    assert!(l.query.contains("pg_sleep(?)"), "{l:?}");
    assert!(!l.query.contains("4111"), "literal not redacted: {l:?}");
    assert!(l.seconds >= 1.0, "{l:?}");
    assert_eq!(l.state.as_deref(), Some("active"));
    let _ = long.await;
    drop(watcher);
    f.done().await;
}

/// Issue 12: "Missing extension: the job reports UNKNOWN once with the exact fix, not an
/// error per tick". Both ways it can be missing: not created in the database, and created
/// but not preloaded (the shared server: `CREATE EXTENSION` works, the view fails).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_extension_is_unknown_with_the_fix_not_an_error() {
    use dbwarden::jobs::Report;
    let Some(admin) = common::pg::pg_url() else {
        return;
    };
    for extension in [false, true] {
        let f = Fixture::new(&admin, "", extension).await;
        for _ in 0..2 {
            let run = f.sample().await;
            let fix = run
                .unavailable
                .as_deref()
                .unwrap_or_else(|| panic!("extension={extension}: {run:?}"));
            assert!(fix.contains("shared_preload_libraries"), "{fix}");
            assert!(fix.contains("CREATE EXTENSION pg_stat_statements"), "{fix}");
            assert!(fix.contains(&f.db.name), "names the database: {fix}");
            assert_eq!(run.status(), Some(dbwarden::health::Status::Unknown));
        }
        f.done().await;
    }
}

on_primary_and_17!(
    run_job_twice_then_slow_queries,
    the_baseline_survives_separate_run_job_invocations_and_slow_queries_reads_it,
    pg17_run_job_stores_generic_plans_that_slow_queries_shows
);

/// The whole path through the binary: `dbwarden run-job` twice (separate processes: the
/// second finds the first's snapshot in the history store, so it reports deltas, not a
/// baseline), then `dbwarden slow-queries` reads the statement back, summed, in text and
/// JSON.
async fn run_job_twice_then_slow_queries(admin: &str) {
    let f = Fixture::new(admin, "top_n = 0\nslow_threshold = \"100ms\"", true).await;
    let mut c = f.db.connect().await;
    exec(&mut c, "CREATE TABLE dbw_cli_t (x int)").await;
    let dir = f._dir.path();
    let bin = env!("CARGO_BIN_EXE_dbwarden");
    let run = |args: &[&str]| {
        let o = std::process::Command::new(bin)
            .args(args)
            .arg("-c")
            .arg(dir.join("dbwarden.toml"))
            .env_remove("DBWARDEN_CONFIG")
            .output()
            .unwrap_or_else(|e| panic!("{bin}: {e}"));
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).to_string(),
            String::from_utf8_lossy(&o.stderr).to_string(),
        )
    };
    let (code, out, err) = run(&["run-job", "slow"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("first sample of this target: baseline"),
        "{out}"
    );
    for _ in 0..2 {
        exec(&mut c, "SELECT pg_sleep(0.2), count(*) FROM dbw_cli_t").await;
    }
    let (code, out, err) = run(&["run-job", "slow"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("ran in the interval"),
        "not a baseline again: {out}"
    );
    // The top statements' generic plans: PostgreSQL 16+; an older server says why not.
    let version: i32 = sqlx::query_scalar("SELECT current_setting('server_version_num')::int")
        .fetch_one(&mut c)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    if version >= 160_000 {
        assert!(out.contains("plan(s) stored"), "{out}");
    } else {
        assert!(
            out.contains("plans of the top statements not taken")
                && out.contains("GENERIC_PLAN")
                && out.contains("16+"),
            "{out}"
        );
    }

    let (code, out, err) = run(&["slow-queries", "--target", "pg", "--format", "json"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let rows: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let row = rows
        .as_array()
        .and_then(|a| {
            a.iter().find(|r| {
                r["query"]
                    .as_str()
                    .is_some_and(|q| q.contains("dbw_cli_t") && q.contains("pg_sleep"))
            })
        })
        .unwrap_or_else(|| panic!("statement not in slow-queries: {out}"));
    assert_eq!(row["calls"], 2, "{row}");
    assert!(
        row["total_ms"].as_f64().is_some_and(|t| t >= 400.0),
        "{row}"
    );
    assert!(row["mean_ms"].as_f64().is_some_and(|t| t >= 200.0), "{row}");
    for key in ["queryid", "rows"] {
        assert!(row.get(key).is_some(), "{key} missing: {row}");
    }
    // `slow-queries` shows each statement's newest stored plan summary (on a server
    // before 16, one is stored here by hand for the statement: what a 16+ sample stores).
    let queryid = row["queryid"].as_str().unwrap_or_default().to_string();
    if version < 160_000 {
        assert_eq!(row["plan"], serde_json::Value::Null, "{row}");
        let config =
            dbwarden::config::load(&dir.join("dbwarden.toml")).unwrap_or_else(|e| panic!("{e}"));
        let store = dbwarden::daemon::open_store(&config)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let plan = dbwarden::store::PlanRow {
            target: "pg".into(),
            queryid: queryid.clone(),
            ts: chrono::Utc::now(),
            plan_json: r#"[{"Plan": {"Node Type": "Aggregate"}}]"#.into(),
            summary:
                "Aggregate (cost 35.50, rows 1); Seq Scan on large table dbw_cli_t (~20000 rows)"
                    .into(),
            top_node: "Aggregate".into(),
            total_cost: Some(35.5),
            plan_rows: Some(1.0),
            large_seq_scans: Some("dbw_cli_t".into()),
        };
        store
            .plans_insert("test", std::slice::from_ref(&plan))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let latest = store
            .plans_latest("pg", std::slice::from_ref(&queryid))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            latest.get(&queryid).map(|p| &p.summary),
            Some(&plan.summary)
        );
        let _ = store.close(Duration::from_secs(2)).await;
    }
    let (code, out, err) = run(&["slow-queries", "--target", "pg", "--format", "json"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let rows: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let plan = rows
        .as_array()
        .and_then(|a| a.iter().find(|r| r["queryid"] == queryid.as_str()))
        .map(|r| r["plan"].clone())
        .unwrap_or_default();
    assert!(
        plan.as_str().is_some_and(|p| p.starts_with("Aggregate")),
        "{out}"
    );
    if version >= 160_000 {
        // The server's own generic plan of `SELECT pg_sleep($1), count(*) FROM dbw_cli_t`
        // (an empty table: no large Seq Scan), not the stand-in above.
        assert!(
            plan.as_str()
                .is_some_and(|p| p.starts_with("Aggregate (cost ") && !p.contains("large table")),
            "{out}"
        );
    }
    let (code, out, _) = run(&["slow-queries", "--target", "pg", "--by", "calls"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("dbw_cli_t"), "{out}");
    assert!(out.contains("plan: Aggregate"), "{out}");
    let (code, _, err) = run(&["slow-queries", "--target", "nope"]);
    assert_eq!(code, Some(2), "{err}");
    drop(c);
    f.done().await;
}

on_primary_and_17!(
    regression_from_a_dropped_index,
    a_regression_from_a_dropped_index_is_flagged,
    pg17_a_regression_from_a_dropped_index_is_flagged
);

/// Issue 12: "a regression injected by dropping an index is flagged". Samples go through
/// the event stream into a real history store (SQLite); after three samples of an indexed
/// lookup (the baseline), the index is dropped and the next sample's `query_regression`
/// is WARNING naming that statement.
async fn regression_from_a_dropped_index(admin: &str) {
    use dbwarden::health::Status;
    use dbwarden::store::HistoryTable;
    let f = Fixture::new(admin, "top_n = 100000\nslow_threshold = \"1h\"", true).await;
    let config = dbwarden::config::load(&f._dir.path().join("dbwarden.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let store = dbwarden::daemon::open_store(&config)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let events = Events::default();
    let stop = tokio_util::sync::CancellationToken::new();
    let writer = tokio::spawn(dbwarden::events::history_writer(
        events.subscribe("history"),
        store.clone(),
        stop.clone(),
    ));
    f.state.use_store(store.clone());
    let mut c = f.db.connect().await;
    exec(
        &mut c,
        "CREATE TABLE reg_t (id int, pad text); \
         INSERT INTO reg_t SELECT g, repeat('x', 50) FROM generate_series(1, 200000) g; \
         CREATE INDEX reg_t_id ON reg_t (id); ANALYZE reg_t",
    )
    .await;
    let stmt = "SELECT pad FROM reg_t WHERE id = 4242";
    let scope = RunScope::default();
    let run = || sample(&f.engine, &f.params, &f.state, "pg", &scope, &events);
    run().await.unwrap_or_else(|e| panic!("{e}")); // baseline
    let mut stored = 0;
    let mut texts: Vec<(String, String)> = Vec::new();
    for _ in 0..3 {
        for _ in 0..20 {
            exec(&mut c, stmt).await;
        }
        let r = run().await.unwrap_or_else(|e| panic!("{e}"));
        let check = r
            .regression
            .clone()
            .unwrap_or_else(|| panic!("not judged: {r:?}"));
        assert_eq!(check.status, Status::Ok, "{check:?}");
        texts.extend(r.new_texts.iter().cloned());
        // Wait (a deadline, not a timing assertion) until the writer stored the sample.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let n = store
                .count(HistoryTable::QueryStats)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            if n > stored {
                stored = n;
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "samples not stored");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Its text was read once, by the first sample that kept it.
    let ids: Vec<&String> = texts
        .iter()
        // (On 16+ the sample's own `EXPLAIN (GENERIC_PLAN) SELECT pad ...` is a statement
        // too.)
        .filter(|(_, t)| t.starts_with("SELECT pad FROM reg_t WHERE id ="))
        .map(|(id, _)| id)
        .collect();
    assert_eq!(ids.len(), 1, "{texts:?}");
    let queryid = ids[0].clone();

    exec(&mut c, "DROP INDEX reg_t_id").await;
    for _ in 0..20 {
        exec(&mut c, stmt).await;
    }
    let r = run().await.unwrap_or_else(|e| panic!("{e}"));
    let check = r
        .regression
        .clone()
        .unwrap_or_else(|| panic!("not judged: {r:?}"));
    assert_eq!(check.status, Status::Warning, "{check:?}");
    assert_eq!(
        check.subject.as_deref(),
        Some(format!("statement {queryid}").as_str()),
        "{check:?}"
    );
    assert!(
        check.message.contains(&queryid) && check.message.contains("baseline"),
        "{check:?}"
    );
    use dbwarden::jobs::Report;
    assert_eq!(r.status(), Some(Status::Warning));

    stop.cancel();
    let _ = writer.await;
    let _ = store.close(Duration::from_secs(5)).await;
    drop(c);
    f.done().await;
}

/// A sample job covering a SQLite target (`targets = ["*"]` in a mixed fleet): the job's
/// UNKNOWN with what to do, every run, not a failed run.
#[tokio::test]
async fn a_sqlite_target_is_unknown_not_a_failed_run() {
    use dbwarden::jobs::Report;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let url = format!("sqlite://{}/t.db", dir.path().display());
    std::fs::write(dir.path().join("t.db"), b"").unwrap_or_else(|e| panic!("{e}"));
    let (config, params) = config(dir.path(), &url, "");
    let target = config
        .target("pg")
        .cloned()
        .unwrap_or_else(|| panic!("no target"));
    let engine = Engine::open(&target).unwrap_or_else(|e| panic!("{e}"));
    let state = SampleState::default();
    for _ in 0..2 {
        let run = sample(
            &engine,
            &params,
            &state,
            "pg",
            &RunScope::default(),
            &Events::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("a failed run: {e}"));
        let why = run
            .unavailable
            .as_deref()
            .unwrap_or_else(|| panic!("{run:?}"));
        assert!(
            why.contains("SQLite") && why.contains("leave it out"),
            "{why}"
        );
        assert_eq!(run.status(), Some(dbwarden::health::Status::Unknown));
    }
}
