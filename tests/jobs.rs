//! Job kinds through the real path the daemon takes (`jobs::Shared`, the `Dispatcher`, the
//! scheduler's `run_now` with its timeout and cancellation) against a real PostgreSQL.
//!
//! Needs `DBWARDEN_TEST_PG_URL`; without it every test prints "skipping" and passes,
//! unless DBWARDEN_REQUIRE_SERVICES=1.

mod common;

use std::sync::Arc;
use std::time::Duration;

use dbwarden::config::Config;
use dbwarden::engine::{Engine, RunScope};
use dbwarden::events::Events;
use dbwarden::jobs;
use dbwarden::scheduler;
use dbwarden::store::RunOutcome;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

async fn exec(c: &mut PgConnection, sql: &str) {
    if let Err(e) = sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
        .execute(c)
        .await
    {
        panic!("{sql}: {e}");
    }
}

/// A config with the target "pg" at `url` and a health job of `timeout`, loaded as the
/// daemon loads it.
fn config(dir: &std::path::Path, url: &str, timeout: &str) -> Config {
    let path = dir.join("dbwarden.toml");
    let body = format!(
        r#"[daemon]
history = "sqlite://{0}/history.db"

[[target]]
name = "pg"
url = "{url}"
pool = {{ max_connections = 3 }}

[[job]]
name = "health"
kind = "health"
schedule = "@every 30s"
timeout = "{timeout}"
"#,
        dir.display()
    );
    std::fs::write(&path, body).unwrap_or_else(|e| panic!("write config: {e}"));
    dbwarden::config::load(&path).unwrap_or_else(|e| panic!("config: {e}"))
}

/// Whether the backend `pid` is running a statement now.
async fn active(c: &mut PgConnection, pid: i32) -> bool {
    sqlx::query_scalar::<_, bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND state = 'active')",
    )
    .bind(pid)
    .fetch_one(c)
    .await
    .unwrap_or_else(|e| panic!("pg_stat_activity: {e}"))
}

/// Issue 8: "a health timeout on a target does not cancel another run's statement there".
/// Another run (standing in for maintenance's VACUUM) has a statement going on the target's
/// engine; a health round of the same target hangs past its job timeout and is cancelled
/// by the scheduler. Only the health run's statements are cancelled: the other one ends
/// normally.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_health_timeout_does_not_cancel_another_runs_statement() {
    let Some(admin) = common::pg::pg_url() else {
        return;
    };
    let db = common::pg::PgDb::create(&admin).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let config = Arc::new(config(dir.path(), &db.url, "1s"));
    let (Some(job), Some(target)) = (config.job("health").cloned(), config.target("pg").cloned())
    else {
        panic!("job or target missing")
    };

    // What `dbwarden run-job` and the daemon build.
    let events = Events::default();
    let (shared, ctx) = jobs::runtime(&config, events);
    let engine = shared
        .engines
        .get(&target)
        .unwrap_or_else(|e| panic!("{e}"));

    // Run B: a statement of 4 s (under the probes' statement_timeout of 5 s) on a
    // connection of the same engine, in its own scope.
    let scope_b = RunScope::default();
    let run_b = {
        let (engine, scope) = (engine.clone(), scope_b.clone());
        tokio::spawn(async move {
            match &*engine {
                Engine::Postgres(p) => p.run_in_scope("SELECT pg_sleep(4)", &scope).await,
                _ => Err("not a PostgreSQL engine".to_string()),
            }
        })
    };
    let mut watcher = db.connect().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let pid_b = loop {
        if let Some(s) = scope_b.sessions().first()
            && active(&mut watcher, s.id as i32).await
        {
            break s.id as i32;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "run B's statement never started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };

    // The health round hangs: on fresh connections, planning its probes reads
    // pg_constraint, which another session holds; each such statement waits up to the
    // probes' lock_timeout (1 s), one after another, past the job's timeout of 1 s.
    // Neither starting a session nor the cancel query reads pg_constraint, so the run can
    // still be cancelled.
    let mut locker = db.connect().await;
    exec(&mut locker, "BEGIN").await;
    exec(
        &mut locker,
        "LOCK TABLE pg_constraint IN ACCESS EXCLUSIVE MODE",
    )
    .await;
    let finished = scheduler::run_now(ctx.clone(), job, target, config.clone()).await;
    exec(&mut locker, "ROLLBACK").await;
    assert_eq!(
        finished.outcome,
        RunOutcome::TimedOut,
        "the health round was meant to hang past its timeout: {:?}",
        finished.error
    );
    // The health run was cancelled while B's statement still ran.
    assert!(
        active(&mut watcher, pid_b).await,
        "run B's statement was stopped by the health timeout"
    );

    let b = match tokio::time::timeout(Duration::from_secs(30), run_b).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => panic!("run B panicked: {e}"),
        Err(_) => panic!("run B never ended"),
    };
    assert_eq!(b, Ok(()), "run B's statement was cancelled");
    assert!(scope_b.sessions().is_empty());

    let _ = watcher.close().await;
    let _ = locker.close().await;
    shared.engines.close_all(Duration::from_secs(2)).await;
    db.drop_db().await;
}
