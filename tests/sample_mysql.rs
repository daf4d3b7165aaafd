//! Slow-query sampling (`kind = "sample"`) against real MariaDB servers:
//! - the throwaway MariaDB with performance_schema ON (`DBWARDEN_TEST_MYSQL_PS_URL`, 3307):
//!   a slow statement reported with its calls and time, the digest table truncated in the
//!   middle (no negative or inflated deltas), live long runners redacted;
//! - the shared MariaDB (`DBWARDEN_TEST_MYSQL_URL`, performance_schema OFF): UNKNOWN with
//!   the fix, never a failed run.
//!
//! Each test works in its own scratch database (`dbw_test_*`), dropped at the end.

mod common;

use std::time::Duration;

use dbwarden::config::{JobParams, SampleParams};
use dbwarden::engine::{Engine, RunScope};
use dbwarden::events::Events;
use dbwarden::jobs::sample::{SampleRun, SampleState, sample};
use dbwarden::sample::{Outcome, StatementDelta};
use sqlx::{AssertSqlSafe, Connection, MySqlConnection};

async fn exec(c: &mut MySqlConnection, sql: &str) {
    if let Err(e) = sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
        .execute(c)
        .await
    {
        panic!("{sql}: {e}");
    }
}

/// The digest table is one per server: the test that truncates it holds this exclusively,
/// the tests that count calls in it hold it shared.
static DIGESTS: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// Waits until performance_schema has aggregated `calls` executions of the statements of
/// this database whose digest text contains every marker: the server adds a statement to
/// the digest summary after the client already has its result, so a sample taken right
/// away could miss the last one. (A deadline for waiting, never a timing assertion.)
async fn settle(c: &mut MySqlConnection, markers: &[&str], calls: i64) {
    let like: Vec<String> = markers
        .iter()
        .map(|m| format!("DIGEST_TEXT LIKE '%{m}%'"))
        .collect();
    let sql = format!(
        "SELECT CAST(COALESCE(SUM(COUNT_STAR), 0) AS SIGNED) FROM \
         performance_schema.events_statements_summary_by_digest \
         WHERE SCHEMA_NAME = DATABASE() AND {}",
        like.join(" AND ")
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let n: i64 = sqlx::query_scalar(AssertSqlSafe(sql.clone()))
            .fetch_one(&mut *c)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        if n >= calls {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "performance_schema never showed {calls} calls of {markers:?} (has {n})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct Fixture {
    admin: String,
    db: String,
    url: String,
    engine: Engine,
    params: SampleParams,
    state: SampleState,
    _dir: tempfile::TempDir,
}

impl Fixture {
    async fn new(admin: &str, keys: &str) -> Fixture {
        let db = format!("dbw_test_{:08x}", rand::random::<u32>());
        let mut c = MySqlConnection::connect(admin)
            .await
            .unwrap_or_else(|e| panic!("connect {admin}: {e}"));
        exec(&mut c, &format!("CREATE DATABASE {db}")).await;
        let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(admin);
        let url = format!("{base}/{db}");
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("dbwarden.toml");
        std::fs::write(
            &path,
            format!(
                "[daemon]\nhistory = \"sqlite://{}/h.db\"\n\n[[target]]\nname = \"my\"\nurl = \"{url}\"\n\n\
                 [[job]]\nname = \"slow\"\nkind = \"sample\"\nschedule = \"@every 1m\"\n{keys}\n",
                dir.path().display()
            ),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let config = dbwarden::config::load(&path).unwrap_or_else(|e| panic!("config: {e}"));
        let params = match config.job("slow").map(|j| &j.params) {
            Some(JobParams::Sample(p)) => p.clone(),
            other => panic!("not a sample job: {other:?}"),
        };
        let target = config
            .target("my")
            .cloned()
            .unwrap_or_else(|| panic!("no target"));
        let engine = Engine::open(&target).unwrap_or_else(|e| panic!("{e}"));
        Fixture {
            admin: admin.to_string(),
            db,
            url,
            engine,
            params,
            state: SampleState::default(),
            _dir: dir,
        }
    }

    async fn connect(&self) -> MySqlConnection {
        MySqlConnection::connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("connect: {e}"))
    }

    async fn sample(&self) -> SampleRun {
        sample(
            &self.engine,
            &self.params,
            &self.state,
            "my",
            &RunScope::default(),
            &Events::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("sample: {e}"))
    }

    async fn done(self) {
        self.engine.close(Duration::from_secs(2)).await;
        if let Ok(mut c) = MySqlConnection::connect(&self.admin).await {
            let _ = sqlx::raw_sql(AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {}",
                self.db
            )))
            .execute(&mut c)
            .await;
        }
    }
}

/// The kept statement of `run` whose digest text (fetched by `texts_run`) contains all
/// of `markers`.
fn find<'a>(
    run: &'a SampleRun,
    texts: &[(String, String)],
    markers: &[&str],
) -> Option<&'a StatementDelta> {
    let ids: Vec<&str> = texts
        .iter()
        .filter(|(_, t)| markers.iter().all(|m| t.contains(m)))
        .map(|(id, _)| id.as_str())
        .collect();
    run.statements()
        .iter()
        .find(|d| ids.contains(&d.key.id.as_str()))
}

fn assert_never_negative(run: &SampleRun) {
    for d in run.statements() {
        assert!(
            d.calls > 0 && d.total_ms >= 0.0 && d.rows >= 0 && d.rows_examined >= 0,
            "negative or empty delta: {d:?}"
        );
    }
}

/// Issue 12 ("Against MariaDB with performance_schema on: the same"): a slow statement is
/// reported with its calls and time; a fast one below the threshold is not kept (top_n 0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_statement_is_reported_with_its_calls_and_time() {
    let Some(admin) = common::url_from_env("DBWARDEN_TEST_MYSQL_PS_URL") else {
        return;
    };
    let _digests = DIGESTS.read().await;
    let f = Fixture::new(&admin, "top_n = 0\nslow_threshold = \"200ms\"").await;
    let mut c = f.connect().await;
    exec(
        &mut c,
        "CREATE TABLE slow_t (x int); INSERT INTO slow_t VALUES (1)",
    )
    .await;
    let first = f.sample().await;
    assert!(
        matches!(&first.outcome, Some(Outcome::Baseline(_))),
        "{first:?}"
    );
    for _ in 0..3 {
        exec(&mut c, "SELECT SLEEP(0.3), COUNT(*) FROM slow_t").await;
    }
    for _ in 0..10 {
        exec(&mut c, "SELECT x FROM slow_t WHERE x = 1").await;
    }
    settle(&mut c, &["SLEEP", "slow_t"], 3).await;
    settle(&mut c, &["slow_t", "WHERE"], 10).await;
    let second = f.sample().await;
    assert_never_negative(&second);
    let slow = find(&second, &second.new_texts, &["SLEEP", "slow_t"])
        .unwrap_or_else(|| panic!("slow statement not reported: {second:?}"));
    assert_eq!(slow.calls, 3, "{slow:?}");
    assert!(slow.total_ms >= 900.0, "3 × 300 ms of SLEEP: {slow:?}");
    assert!(slow.mean_ms >= 300.0, "{slow:?}");
    assert_eq!(slow.key.scope, f.db, "{slow:?}");
    assert!(
        second
            .new_texts
            .iter()
            .all(|(_, t)| !t.contains("WHERE `x` =") && !t.contains("WHERE x =")),
        "the fast statement is not kept, so its text is not read: {:?}",
        second.new_texts
    );
    drop(c);
    f.done().await;
}

/// Issue 12: "stats reset in the middle → no negative deltas", by truncating the digest
/// table (the only reset performance_schema has). The statement ran once before and once
/// after the truncation: the sample counts at most that one call (the entry restarted
/// after the previous sample), never the 6 from before, never a negative; the next sample
/// counts from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_digest_table_gives_no_negative_deltas() {
    let Some(admin) = common::url_from_env("DBWARDEN_TEST_MYSQL_PS_URL") else {
        return;
    };
    let _digests = DIGESTS.write().await;
    let f = Fixture::new(&admin, "top_n = 100000\nslow_threshold = \"1h\"").await;
    let mut c = f.connect().await;
    exec(
        &mut c,
        "CREATE TABLE reset_t (x int); INSERT INTO reset_t VALUES (1)",
    )
    .await;
    let stmt = "SELECT COUNT(*) FROM reset_t WHERE x > 0";
    exec(&mut c, stmt).await;
    settle(&mut c, &["reset_t", "WHERE"], 1).await;
    f.sample().await; // baseline
    for _ in 0..5 {
        exec(&mut c, stmt).await;
    }
    settle(&mut c, &["reset_t", "WHERE"], 6).await;
    let before = f.sample().await;
    assert_never_negative(&before);
    let d = find(&before, &before.new_texts, &["reset_t", "x` >"])
        .or_else(|| find(&before, &before.new_texts, &["reset_t", "x >"]))
        .unwrap_or_else(|| panic!("statement not reported: {before:?}"))
        .clone();
    assert_eq!(d.calls, 5, "{d:?}");
    let calls = |run: &SampleRun| -> i64 {
        run.statements()
            .iter()
            .filter(|x| x.key == d.key)
            .map(|x| x.calls)
            .sum()
    };

    exec(&mut c, stmt).await;
    exec(
        &mut c,
        "TRUNCATE TABLE performance_schema.events_statements_summary_by_digest",
    )
    .await;
    exec(&mut c, stmt).await;
    settle(&mut c, &["reset_t", "WHERE"], 1).await;
    let reset = f.sample().await;
    assert_never_negative(&reset);
    assert!(
        calls(&reset) <= 1,
        "at most the one call after the truncation: {reset:?}"
    );

    for _ in 0..2 {
        exec(&mut c, stmt).await;
    }
    settle(&mut c, &["reset_t", "WHERE"], 3).await;
    let after = f.sample().await;
    assert_never_negative(&after);
    assert_eq!(calls(&after), 2, "counted from the new baseline: {after:?}");
    drop(c);
    f.done().await;
}

/// Live long runners from the processlist, literals replaced with `?`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_runners_are_recorded_with_literals_redacted() {
    let Some(admin) = common::url_from_env("DBWARDEN_TEST_MYSQL_PS_URL") else {
        return;
    };
    let f = Fixture::new(&admin, "long_running = \"1s\"").await;
    let mut runner = f.connect().await;
    let mut watcher = f.connect().await;
    let id: u64 = sqlx::query_scalar("SELECT CONNECTION_ID()")
        .fetch_one(&mut runner)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let long = tokio::spawn(async move {
        exec(&mut runner, "SELECT SLEEP(4), 'card 4111-1111' AS secret").await;
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let t: Option<i64> = sqlx::query_scalar(
            "SELECT CAST(TIME AS SIGNED) FROM information_schema.PROCESSLIST WHERE ID = ? AND INFO LIKE 'SELECT SLEEP%'",
        )
        .bind(id)
        .fetch_optional(&mut watcher)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        if t.is_some_and(|t| t >= 2) {
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
        .find(|l| l.pid == id as i64)
        .unwrap_or_else(|| panic!("long runner {id} not recorded: {run:?}"));
    assert!(l.query.contains("SLEEP(?)"), "{l:?}");
    assert!(!l.query.contains("4111"), "literal not redacted: {l:?}");
    assert!(l.seconds >= 1.0, "{l:?}");
    let _ = long.await;
    drop(watcher);
    f.done().await;
}

/// performance_schema OFF (MariaDB's default): the job is UNKNOWN with the fix, every run,
/// not a failed run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn performance_schema_off_is_unknown_with_the_fix() {
    use dbwarden::jobs::Report;
    let Some(admin) = common::url_from_env("DBWARDEN_TEST_MYSQL_URL") else {
        return;
    };
    let f = Fixture::new(&admin, "").await;
    for _ in 0..2 {
        let run = f.sample().await;
        let fix = run
            .unavailable
            .as_deref()
            .unwrap_or_else(|| panic!("{run:?}"));
        assert!(
            fix.contains("performance_schema=ON") && fix.contains("restart"),
            "{fix}"
        );
        assert_eq!(run.status(), Some(dbwarden::health::Status::Unknown));
    }
    f.done().await;
}

/// Issue 12: "a regression injected by dropping an index is flagged", on MariaDB: samples
/// stored through the event stream in a real history store; after three samples of an
/// indexed lookup the index is dropped, and the next sample's `query_regression` is
/// WARNING naming that digest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_regression_from_a_dropped_index_is_flagged() {
    use dbwarden::health::Status;
    use dbwarden::store::HistoryTable;
    let Some(admin) = common::url_from_env("DBWARDEN_TEST_MYSQL_PS_URL") else {
        return;
    };
    let _digests = DIGESTS.read().await;
    let f = Fixture::new(&admin, "top_n = 100000\nslow_threshold = \"1h\"").await;
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
    let mut c = f.connect().await;
    exec(
        &mut c,
        "CREATE TABLE reg_t (id int, pad varchar(60)); \
         INSERT INTO reg_t SELECT seq, REPEAT('x', 50) FROM seq_1_to_200000; \
         CREATE INDEX reg_t_id ON reg_t (id)",
    )
    .await;
    let stmt = "SELECT pad FROM reg_t WHERE id = 4242";
    let scope = RunScope::default();
    let run = || sample(&f.engine, &f.params, &f.state, "my", &scope, &events);
    run().await.unwrap_or_else(|e| panic!("{e}")); // baseline
    let mut stored = 0;
    let mut texts: Vec<(String, String)> = Vec::new();
    for round in 1..=3 {
        for _ in 0..20 {
            exec(&mut c, stmt).await;
        }
        settle(&mut c, &["pad", "reg_t", "WHERE"], round * 20).await;
        let r = run().await.unwrap_or_else(|e| panic!("{e}"));
        let check = r
            .regression
            .clone()
            .unwrap_or_else(|| panic!("not judged: {r:?}"));
        assert_eq!(check.status, Status::Ok, "{check:?}");
        texts.extend(r.new_texts.iter().cloned());
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
    let ids: Vec<&String> = texts
        .iter()
        .filter(|(_, t)| t.contains("reg_t") && t.contains("pad") && !t.contains("INSERT"))
        .map(|(id, _)| id)
        .collect();
    assert_eq!(ids.len(), 1, "{texts:?}");
    let digest = ids[0].clone();

    exec(&mut c, "DROP INDEX reg_t_id ON reg_t").await;
    for _ in 0..20 {
        exec(&mut c, stmt).await;
    }
    settle(&mut c, &["pad", "reg_t", "WHERE"], 80).await;
    let r = run().await.unwrap_or_else(|e| panic!("{e}"));
    let check = r
        .regression
        .clone()
        .unwrap_or_else(|| panic!("not judged: {r:?}"));
    assert_eq!(check.status, Status::Warning, "{check:?}");
    assert_eq!(
        check.subject.as_deref(),
        Some(format!("statement {digest}").as_str()),
        "{check:?}"
    );
    let d = r
        .statements()
        .iter()
        .find(|d| d.key.id == digest)
        .unwrap_or_else(|| panic!("{r:?}"));
    assert_eq!(
        d.no_index_used, 20,
        "every execution scanned without an index: {d:?}"
    );

    stop.cancel();
    let _ = writer.await;
    let _ = store.close(Duration::from_secs(5)).await;
    drop(c);
    f.done().await;
}
