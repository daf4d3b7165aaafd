//! The PostgreSQL checks that used to raise false alarms (issue 9, first part), each
//! provoked for real on the test server, with the case that must stay OK next to the one
//! that must alarm.
//!
//! Needs `DBWARDEN_TEST_PG_URL` (a superuser, e.g. postgres://postgres@127.0.0.1:5432/test);
//! without it every test prints "skipping" and passes, unless DBWARDEN_REQUIRE_SERVICES=1.
//! The shared server runs with `autovacuum = off`, so dead rows and statistics stay exactly
//! as a test leaves them.

mod common;

use std::time::{Duration, Instant};

use dbwarden::config::Target;
use dbwarden::engine::{Engine, HealthReport, RunScope};
use dbwarden::health::{CheckResult, Observation, Outcome, Status};
use sqlx::postgres::PgConnection;
use sqlx::{Connection, Executor};

use common::harness::{
    RELAXED_DISK, engine, exec, find, judge, pg_target, round_in, scalar_i32, show,
};
use common::pg::{PgDb, pg_url};

// ---------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------

/// A target named "pg" for `url`, with `extra` inside its `[[target]]` table.
fn target(url: &str, extra: &str) -> (tempfile::TempDir, Target) {
    let (dir, _config, t) = pg_target(url, extra, RELAXED_DISK);
    (dir, t)
}

async fn run_round(e: &Engine, t: &Target) -> HealthReport {
    round_in(e, t, true, &RunScope::default()).await
}

/// The observations of `check` in a round (empty for a verdict).
fn observations<'a>(report: &'a HealthReport, check: &str) -> &'a [Observation] {
    match report.measurements.iter().find(|m| m.check == check) {
        Some(m) => match &m.outcome {
            Outcome::Values(v) => v,
            _ => &[],
        },
        None => panic!("no measurement for {check}"),
    }
}

fn observation<'a>(report: &'a HealthReport, check: &str, subject: &str) -> &'a Observation {
    observations(report, check)
        .iter()
        .find(|o| o.subject.as_deref() == Some(subject))
        .unwrap_or_else(|| {
            panic!(
                "no {check} observation of {subject}: {:?}",
                observations(report, check)
            )
        })
}

/// Waits until `pid` waits on a lock (its statement has reached the lock).
async fn until_waiting(admin: &mut PgConnection, pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let waiting: bool = sqlx::query_scalar(
            "SELECT coalesce(bool_or(wait_event_type = 'Lock'), false) FROM pg_stat_activity WHERE pid = $1",
        )
        .bind(pid)
        .fetch_one(&mut *admin)
        .await
        .unwrap_or_else(|e| panic!("pg_stat_activity: {e}"));
        if waiting {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "pid {pid} never waited on a lock"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A statement run on its own connection in a task (it is going to wait on a lock).
fn spawn_exec(
    mut c: PgConnection,
    sql: &'static str,
) -> tokio::task::JoinHandle<(PgConnection, Result<(), sqlx::Error>)> {
    tokio::spawn(async move {
        let r = c.execute(sql).await.map(|_| ());
        (c, r)
    })
}

async fn finished(h: tokio::task::JoinHandle<(PgConnection, Result<(), sqlx::Error>)>) {
    match tokio::time::timeout(Duration::from_secs(20), h).await {
        Ok(Ok((c, Ok(())))) => {
            let _ = c.close().await;
        }
        other => panic!("the waiting statement did not finish: {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// blocked_sessions
// ---------------------------------------------------------------------------------------

/// A statement that ran 4 s before it reached the lock is judged on its wait, not its age;
/// the wait itself alarms once it passes the threshold.
#[tokio::test]
async fn blocked_sessions_judge_the_lock_wait_not_the_statement_age() {
    let Some(admin) = pg_url() else { return };
    let db = PgDb::create(&admin).await;
    let mut holder = db.connect().await;
    exec(
        &mut holder,
        "CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t VALUES (1, 0);",
    )
    .await;
    exec(&mut holder, "BEGIN").await;
    exec(&mut holder, "UPDATE t SET v = 1 WHERE id = 1").await;

    let mut late = db.connect().await;
    let mut watch = db.connect().await;
    let late_pid = scalar_i32(&mut late, "SELECT pg_backend_pid()").await;
    let waiting = spawn_exec(
        late,
        "DO $$ BEGIN PERFORM pg_sleep(4); UPDATE t SET v = 2 WHERE id = 1; END $$",
    );
    until_waiting(&mut watch, late_pid).await;

    let (_dir, t) = target(
        &db.url,
        r#"thresholds = { blocked_sessions = { warning = "3s", critical = "1h" } }"#,
    );
    let e = engine(&t);
    // Statement running ≥ 4 s, lock wait only just begun: OK.
    let report = run_round(&e, &t).await;
    let results = judge(&t, &report);
    let o = observation(&report, "blocked_sessions", &format!("pid {late_pid}"));
    assert!(o.value < 3.0, "{o:?}");
    let detail = o.detail.clone().unwrap_or_default();
    assert!(detail.contains("statement running"), "{detail}");
    assert_eq!(
        find(&results, "blocked_sessions").status,
        Status::Ok,
        "{}",
        show(&results)
    );
    // The wait goes on past the threshold: WARNING.
    let deadline = Instant::now() + Duration::from_secs(20);
    let results = loop {
        let results = judge(&t, &run_round(&e, &t).await);
        if find(&results, "blocked_sessions").status != Status::Ok || Instant::now() > deadline {
            break results;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let r = find(&results, "blocked_sessions");
    assert_eq!(r.status, Status::Warning, "{}", show(&results));
    assert!(
        r.message.starts_with(&format!("pid {late_pid}: ")),
        "{}",
        r.message
    );

    exec(&mut holder, "ROLLBACK").await;
    finished(waiting).await;
    e.close(Duration::from_secs(5)).await;
    let _ = holder.close().await;
    let _ = watch.close().await;
    db.drop_db().await;
}

/// A blocks B, B blocks C: C's blocker is named as A, the session to deal with.
#[tokio::test]
async fn blocked_sessions_name_the_root_of_a_lock_chain() {
    let Some(admin) = pg_url() else { return };
    let db = PgDb::create(&admin).await;
    let mut a = db.connect().await;
    exec(
        &mut a,
        "CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t VALUES (1, 0);",
    )
    .await;
    let a_pid = scalar_i32(&mut a, "SELECT pg_backend_pid()").await;
    exec(&mut a, "BEGIN").await;
    exec(&mut a, "LOCK TABLE t IN ROW EXCLUSIVE MODE").await;
    let mut watch = db.connect().await;

    // B takes a lock of its own, then waits on A.
    let mut b = db.connect().await;
    let b_pid = scalar_i32(&mut b, "SELECT pg_backend_pid()").await;
    exec(&mut b, "CREATE TABLE u (id int)").await;
    exec(&mut b, "BEGIN").await;
    exec(&mut b, "LOCK TABLE u IN ACCESS EXCLUSIVE MODE").await;
    let b_wait = tokio::spawn(async move {
        let r = b.execute("LOCK TABLE t IN SHARE MODE").await.map(|_| ());
        (b, r)
    });
    until_waiting(&mut watch, b_pid).await;
    // C waits on B (only on B: A holds nothing on u).
    let mut c = db.connect().await;
    let c_pid = scalar_i32(&mut c, "SELECT pg_backend_pid()").await;
    let c_wait = spawn_exec(c, "SELECT count(*) FROM u");
    until_waiting(&mut watch, c_pid).await;

    let (_dir, t) = target(&db.url, "");
    let e = engine(&t);
    let report = run_round(&e, &t).await;
    let c_obs = observation(&report, "blocked_sessions", &format!("pid {c_pid}"));
    let detail = c_obs.detail.clone().unwrap_or_default();
    assert!(
        detail.contains(&format!(
            "blocked by pid {a_pid} at the head of the lock chain (waits directly behind pid {b_pid})"
        )),
        "{detail}"
    );
    assert!(detail.contains("idle in transaction"), "{detail}");
    let b_obs = observation(&report, "blocked_sessions", &format!("pid {b_pid}"));
    let detail = b_obs.detail.clone().unwrap_or_default();
    assert!(
        detail.contains(&format!("blocked by pid {a_pid} (")),
        "{detail}"
    );

    exec(&mut a, "ROLLBACK").await;
    match tokio::time::timeout(Duration::from_secs(20), b_wait).await {
        Ok(Ok((mut b, Ok(())))) => {
            exec(&mut b, "ROLLBACK").await;
            let _ = b.close().await;
        }
        other => panic!("B did not get its lock: {other:?}"),
    }
    finished(c_wait).await;
    e.close(Duration::from_secs(5)).await;
    let _ = a.close().await;
    let _ = watch.close().await;
    db.drop_db().await;
}

// ---------------------------------------------------------------------------------------
// dead_tuples
// ---------------------------------------------------------------------------------------

/// Runs rounds until `cond` holds for the round's results (statistics reach the views
/// with a delay of up to a second), at most ~10 s; returns the last round.
async fn until(
    e: &Engine,
    t: &Target,
    mut cond: impl FnMut(&HealthReport, &[CheckResult]) -> bool,
) -> (HealthReport, Vec<CheckResult>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let report = run_round(e, t).await;
        let results = judge(t, &report);
        if cond(&report, &results) || Instant::now() > deadline {
            return (report, results);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// 30% dead rows in two tables: the one tuned to autovacuum at half its size is not due
/// (OK), the one with the default trigger is past it (WARNING), on this server where
/// autovacuum is off altogether.
#[tokio::test]
async fn dead_tuples_judge_each_table_against_its_own_autovacuum_trigger() {
    let Some(admin) = pg_url() else { return };
    let db = PgDb::create(&admin).await;
    let mut c = db.connect().await;
    exec(
        &mut c,
        "CREATE TABLE tuned (id int PRIMARY KEY) WITH (autovacuum_vacuum_scale_factor = 0.5);
         CREATE TABLE plain (id int PRIMARY KEY);
         INSERT INTO tuned SELECT generate_series(1, 20000);
         INSERT INTO plain SELECT generate_series(1, 20000);
         ANALYZE tuned; ANALYZE plain;
         DELETE FROM tuned WHERE id % 10 < 3;
         DELETE FROM plain WHERE id % 10 < 3;",
    )
    .await;
    let _ = c.close().await;

    let (_dir, t) = target(&db.url, "");
    let e = engine(&t);
    let (report, results) = until(&e, &t, |_, r| find(r, "dead_tuples").status != Status::Ok).await;
    let r = find(&results, "dead_tuples");
    assert_eq!(r.status, Status::Warning, "{}", show(&results));
    assert!(
        r.message.starts_with(
            "table public.plain: 30% dead tuples (6000 dead of 20000 rows, 1.4× past the point where autovacuum should have run (4050 dead rows), never vacuumed"
        ),
        "{}",
        r.message
    );
    // The tuned table, as dead, is not even a candidate.
    assert!(
        !observations(&report, "dead_tuples")
            .iter()
            .any(|o| o.subject.as_deref() == Some("table public.tuned")),
        "{:?}",
        observations(&report, "dead_tuples")
    );
    e.close(Duration::from_secs(5)).await;
    db.drop_db().await;
}

// ---------------------------------------------------------------------------------------
// invalid_indexes
// ---------------------------------------------------------------------------------------

/// A partitioned index made with `CREATE INDEX ... ON ONLY` and attached on one of two
/// partitions is a build in progress (OK, with the ATTACH advice); a failed concurrent
/// build next to it is still an invalid index (WARNING, DROP INDEX CONCURRENTLY).
#[tokio::test]
async fn invalid_indexes_leave_partitioned_builds_alone() {
    let Some(admin) = pg_url() else { return };
    let db = PgDb::create(&admin).await;
    let mut c = db.connect().await;
    exec(
        &mut c,
        "CREATE TABLE m (id int, v int) PARTITION BY RANGE (id);
         CREATE TABLE m_1 PARTITION OF m FOR VALUES FROM (0) TO (100);
         CREATE TABLE m_2 PARTITION OF m FOR VALUES FROM (100) TO (200);
         CREATE INDEX m_v_idx ON ONLY m (v);
         CREATE INDEX m_1_v_idx ON m_1 (v);
         ALTER INDEX m_v_idx ATTACH PARTITION m_1_v_idx;",
    )
    .await;
    let valid: bool = sqlx::query_scalar(
        "SELECT indisvalid FROM pg_index WHERE indexrelid = 'm_v_idx'::regclass",
    )
    .fetch_one(&mut c)
    .await
    .unwrap_or_else(|e| panic!("pg_index: {e}"));
    assert!(!valid, "the partitioned index must still be invalid here");

    let (_dir, t) = target(&db.url, "");
    let e = engine(&t);
    let results = judge(&t, &run_round(&e, &t).await);
    let r = find(&results, "invalid_indexes");
    assert_eq!(r.status, Status::Ok, "{}", show(&results));
    assert!(
        r.message.contains(
            "partitioned index public.m_v_idx on public.m is not complete yet: partition(s) public.m_2 lack their index"
        ),
        "{}",
        r.message
    );
    assert!(
        r.message
            .contains("ALTER INDEX public.m_v_idx ATTACH PARTITION"),
        "{}",
        r.message
    );
    assert!(!r.message.contains("DROP INDEX"), "{}", r.message);
    e.close(Duration::from_secs(5)).await;

    // A failed concurrent build: a real invalid index.
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
    let e = engine(&t);
    let results = judge(&t, &run_round(&e, &t).await);
    let r = find(&results, "invalid_indexes");
    assert_eq!(r.status, Status::Warning, "{}", show(&results));
    assert_eq!(r.value, Some(1.0));
    assert!(
        r.message.starts_with(
            "index public.t_v_key: 1 invalid index(es) (on table public.t; left by a failed CREATE/REINDEX CONCURRENTLY: DROP INDEX CONCURRENTLY"
        ),
        "{}",
        r.message
    );
    // Completing the partitioned build leaves only the real one.
    exec(
        &mut c,
        "CREATE INDEX m_2_v_idx ON m_2 (v); ALTER INDEX m_v_idx ATTACH PARTITION m_2_v_idx;",
    )
    .await;
    e.close(Duration::from_secs(5)).await;
    let e = engine(&t);
    let results = judge(&t, &run_round(&e, &t).await);
    let r = find(&results, "invalid_indexes");
    assert!(!r.message.contains("m_v_idx"), "{}", r.message);
    e.close(Duration::from_secs(5)).await;
    let _ = c.close().await;
    db.drop_db().await;
}

// ---------------------------------------------------------------------------------------
// duplicate_indexes
// ---------------------------------------------------------------------------------------

/// Indexes that differ only in sort order, or in NULLS NOT DISTINCT, are not duplicates;
/// two identical ones still are.
#[tokio::test]
async fn duplicate_indexes_respect_sort_order_and_nulls_not_distinct() {
    let Some(admin) = pg_url() else { return };
    let db = PgDb::create(&admin).await;
    let mut c = db.connect().await;
    exec(
        &mut c,
        "CREATE TABLE t (a int, b int, c int);
         INSERT INTO t SELECT g, g, g FROM generate_series(1, 5000) g;
         CREATE INDEX t_ab ON t (a, b);
         CREATE INDEX t_ab_desc ON t (a, b DESC);
         CREATE INDEX t_ab_nulls ON t (a, b NULLS FIRST);
         CREATE UNIQUE INDEX t_c_key ON t (c);
         CREATE UNIQUE INDEX t_c_nnd ON t (c) NULLS NOT DISTINCT;
         CREATE INDEX t_b_1 ON t (b);
         CREATE INDEX t_b_2 ON t (b);",
    )
    .await;
    let _ = c.close().await;

    let (_dir, t) = target(
        &db.url,
        r#"thresholds = { duplicate_indexes = { warning = "8kB" } }"#,
    );
    let e = engine(&t);
    let report = run_round(&e, &t).await;
    let results = judge(&t, &report);
    let r = find(&results, "duplicate_indexes");
    assert_eq!(r.status, Status::Warning, "{}", show(&results));
    let subjects: Vec<&str> = observations(&report, "duplicate_indexes")
        .iter()
        .filter_map(|o| o.subject.as_deref())
        .collect();
    assert_eq!(subjects.len(), 1, "{subjects:?}");
    assert!(
        subjects[0] == "index public.t_b_1" || subjects[0] == "index public.t_b_2",
        "{subjects:?}"
    );
    assert!(
        r.message.contains("same definition as public.t_b_"),
        "{}",
        r.message
    );
    e.close(Duration::from_secs(5)).await;
    db.drop_db().await;
}

// ---------------------------------------------------------------------------------------
// bloat
// ---------------------------------------------------------------------------------------

/// A table never analyzed (only vacuumed) and one with a column added since its last
/// ANALYZE: the estimate is not possible, and the check says to run ANALYZE, not to
/// GRANT anything. After ANALYZE both are estimated.
#[tokio::test]
async fn bloat_without_statistics_says_run_analyze() {
    let Some(admin) = pg_url() else { return };
    let db = PgDb::create(&admin).await;
    let mut c = db.connect().await;
    exec(
        &mut c,
        "CREATE TABLE fresh (id int, v text);
         INSERT INTO fresh SELECT g, 'x' || g FROM generate_series(1, 5000) g;",
    )
    .await;
    exec(&mut c, "VACUUM fresh").await;
    exec(
        &mut c,
        "CREATE TABLE grown (id int, v text);
         INSERT INTO grown SELECT g, 'x' || g FROM generate_series(1, 5000) g;
         ANALYZE grown;
         ALTER TABLE grown ADD COLUMN w int;",
    )
    .await;

    let (_dir, t) = target(&db.url, r#"thresholds = { bloat = { min_size = "8kB" } }"#);
    let e = engine(&t);
    let results = judge(&t, &run_round(&e, &t).await);
    let r = find(&results, "bloat");
    assert_eq!(r.status, Status::Unknown, "{}", show(&results));
    assert!(r.message.contains("estimate not possible"), "{}", r.message);
    assert!(
        r.message
            .contains("fix: ANALYZE public.fresh, public.grown")
            || r.message
                .contains("fix: ANALYZE public.grown, public.fresh"),
        "{}",
        r.message
    );
    assert!(!r.message.contains("GRANT"), "{}", r.message);
    e.close(Duration::from_secs(5)).await;

    exec(&mut c, "ANALYZE fresh; ANALYZE grown;").await;
    let e = engine(&t);
    let report = run_round(&e, &t).await;
    let results = judge(&t, &report);
    let r = find(&results, "bloat");
    assert_ne!(r.status, Status::Unknown, "{}", show(&results));
    assert!(
        !r.message.contains("estimate not possible"),
        "{}",
        r.message
    );
    for table in ["table public.fresh", "table public.grown"] {
        observation(&report, "bloat", table);
    }
    e.close(Duration::from_secs(5)).await;
    let _ = c.close().await;
    db.drop_db().await;
}

// ---------------------------------------------------------------------------------------
// stale_stats
// ---------------------------------------------------------------------------------------

/// A table analyzed a while ago that has just crossed its autoanalyze threshold is not
/// stale yet (the old judgement, the age of the last analyze, said it was); it turns
/// stale once it has been past the threshold for the warning time.
#[tokio::test]
async fn stale_stats_count_from_the_crossing() {
    let Some(admin) = pg_url() else { return };
    let db = PgDb::create(&admin).await;
    let mut c = db.connect().await;
    exec(
        &mut c,
        "CREATE TABLE t (id int PRIMARY KEY, v int);
         INSERT INTO t SELECT g, 0 FROM generate_series(1, 20000) g;",
    )
    .await;
    // On its own, after the insert's statistics are in (they count from commit).
    exec(&mut c, "SELECT pg_stat_force_next_flush()").await;
    exec(&mut c, "ANALYZE t").await;
    let (_dir, t) = target(
        &db.url,
        r#"thresholds = { stale_stats = { warning = "2s", critical = "1h" } }"#,
    );
    let e = engine(&t);
    let results = judge(&t, &run_round(&e, &t).await);
    assert_eq!(find(&results, "stale_stats").status, Status::Ok);
    // The last analyze grows older than the warning time before the table crosses.
    tokio::time::sleep(Duration::from_secs(3)).await;
    exec(&mut c, "UPDATE t SET v = 1 WHERE id <= 5000").await;
    let _ = c.close().await;
    let (report, results) = until(&e, &t, |rep, _| {
        !observations(rep, "stale_stats").is_empty()
    })
    .await;
    let o = observation(&report, "stale_stats", "table public.t");
    assert!(o.value < 2.0, "{o:?}");
    assert_eq!(
        find(&results, "stale_stats").status,
        Status::Ok,
        "{}",
        show(&results)
    );
    // Past the threshold for longer than the warning time: WARNING.
    let (_, results) = until(&e, &t, |_, r| find(r, "stale_stats").status != Status::Ok).await;
    let r = find(&results, "stale_stats");
    assert_eq!(r.status, Status::Warning, "{}", show(&results));
    assert!(
        r.message.starts_with("table public.t: ")
            && r.message.contains(
                "past the autoanalyze threshold (5000 rows modified since the last analyze"
            ),
        "{}",
        r.message
    );
    e.close(Duration::from_secs(5)).await;
    db.drop_db().await;
}

// ---------------------------------------------------------------------------------------
// seq_scans
// ---------------------------------------------------------------------------------------

/// `old` was read by 2000 sequential scans before its index was added (a lifetime ratio
/// of over 90% forever after); since then only by the index: OK. `hot` is read
/// sequentially between two rounds: WARNING.
#[tokio::test]
async fn seq_scans_judge_the_scans_between_rounds() {
    let Some(admin) = pg_url() else { return };
    let db = PgDb::create(&admin).await;
    let mut c = db.connect().await;
    exec(
        &mut c,
        "CREATE TABLE old (id int, v int);
         CREATE TABLE hot (id int PRIMARY KEY, v int);
         INSERT INTO old SELECT g, g FROM generate_series(1, 5000) g;
         INSERT INTO hot SELECT g, g FROM generate_series(1, 5000) g;
         ANALYZE old; ANALYZE hot;",
    )
    .await;
    exec(
        &mut c,
        "DO $$ BEGIN FOR i IN 1..2000 LOOP PERFORM count(*) FROM old WHERE id = i; END LOOP; END $$",
    )
    .await;
    exec(&mut c, "CREATE UNIQUE INDEX old_id ON old (id)").await;
    exec(&mut c, "SELECT pg_stat_force_next_flush()").await;

    let (_dir, t) = target(
        &db.url,
        r#"thresholds = { seq_scans = { min_rows = 1000 } }"#,
    );
    let e = engine(&t);
    let (_, results) = until(&e, &t, |_, _| true).await;
    let r = find(&results, "seq_scans");
    assert_eq!(r.status, Status::Ok, "{}", show(&results));
    assert!(r.message.contains("baseline pending"), "{}", r.message);

    exec(
        &mut c,
        "SET enable_seqscan = off;
         DO $$ BEGIN FOR i IN 1..200 LOOP PERFORM v FROM old WHERE id = i; END LOOP; END $$;
         RESET enable_seqscan;
         SET enable_indexscan = off; SET enable_bitmapscan = off;
         DO $$ BEGIN FOR i IN 1..200 LOOP PERFORM v FROM hot WHERE id = i; END LOOP; END $$;",
    )
    .await;
    exec(&mut c, "SELECT pg_stat_force_next_flush()").await;
    let (report, results) = until(&e, &t, |_, r| find(r, "seq_scans").status != Status::Ok).await;
    let r = find(&results, "seq_scans");
    assert_eq!(r.status, Status::Warning, "{}", show(&results));
    assert!(
        r.message.starts_with(
            "table public.hot: 100% of scans sequential (200 sequential scans reading 1000000 rows vs 0 index scans in the last"
        ),
        "{}",
        r.message
    );
    let old = observation(&report, "seq_scans", "table public.old");
    assert_eq!(old.value, 0.0, "{old:?}");
    e.close(Duration::from_secs(5)).await;
    let _ = c.close().await;
    db.drop_db().await;
}

// ---------------------------------------------------------------------------------------
// index_bloat
// ---------------------------------------------------------------------------------------

/// An index of a table whose rows were mostly deleted (autovacuum is off here), seen by
/// a fresh ANALYZE: CRITICAL, naming the index and its table. The same index freshly
/// built is not bloated.
#[tokio::test]
async fn index_bloat_finds_a_bloated_btree_index() {
    let Some(admin) = pg_url() else { return };
    let db = PgDb::create(&admin).await;
    let mut c = db.connect().await;
    exec(
        &mut c,
        "CREATE TABLE t (id int PRIMARY KEY, v text);
         INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 100000) g;
         CREATE INDEX t_v ON t (v);
         ANALYZE t;",
    )
    .await;
    let (_dir, t) = target(
        &db.url,
        r#"thresholds = { index_bloat = { min_size = "1MB" } }"#,
    );
    let e = engine(&t);
    let report = run_round(&e, &t).await;
    let results = judge(&t, &report);
    let r = find(&results, "index_bloat");
    assert_eq!(r.status, Status::Ok, "{}", show(&results));
    let fresh = observation(&report, "index_bloat", "index public.t_v");
    assert!(fresh.value < 20.0, "{fresh:?}");
    e.close(Duration::from_secs(5)).await;

    exec(&mut c, "DELETE FROM t WHERE id % 10 <> 0").await;
    exec(&mut c, "ANALYZE t").await;
    let e = engine(&t);
    let report = run_round(&e, &t).await;
    let results = judge(&t, &report);
    let r = find(&results, "index_bloat");
    assert_eq!(r.status, Status::Critical, "{}", show(&results));
    assert!(
        r.message.contains("estimated index bloat (~")
            && r.message
                .contains("(on table public.t; REINDEX INDEX CONCURRENTLY to reclaim)"),
        "{}",
        r.message
    );
    let bloated = observation(&report, "index_bloat", "index public.t_v");
    assert!(bloated.value > 75.0, "{bloated:?}");
    observation(&report, "index_bloat", "index public.t_pkey");
    e.close(Duration::from_secs(5)).await;
    let _ = c.close().await;
    db.drop_db().await;
}
