//! Bytes of SQLite history per target-day (issue 13's budget: ≤ 2 MB), measured for real:
//! one idle PostgreSQL target of 205 tables, health rounds every 30 s for a simulated
//! day (2880 rounds, timestamps advanced 30 s each), table statistics at the configured
//! cadence (`[daemon] table_stats_interval`, default 5m), through the real engine round,
//! judgement, hysteresis tracker, event → record path and batching writer. The whole file
//! counts (job runs, transitions, check periods and latest results, series, samples,
//! latest table statistics), after a checkpoint.
//!
//! ```text
//! DBWARDEN_BENCH_PG_URL=postgres://postgres@127.0.0.1:5432/test cargo bench --bench history_size
//! ```
//!
//! The URL names any database of the server; the bench creates `dbw_store_size` there
//! with 205 small tables on its first run and reuses it. Printed, not asserted.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use dbwarden::engine::HealthOptions;
use dbwarden::events::{Event, Events};
use dbwarden::store::{BufferLimits, JobRun, RunEnd, RunOutcome, Store, new_run_id};
use sqlx::{AssertSqlSafe, Connection, Executor};

const ROUNDS: i64 = 2880;
const TABLES: usize = 205;
const DB: &str = "dbw_store_size";

fn main() {
    let Some(url) = std::env::var("DBWARDEN_BENCH_PG_URL")
        .ok()
        .or_else(|| std::env::var("DBWARDEN_TEST_PG_URL").ok())
    else {
        println!(
            "history_size: skipped, DBWARDEN_BENCH_PG_URL is not set:\n  \
             DBWARDEN_BENCH_PG_URL=postgres://postgres@127.0.0.1:5432/test cargo bench --bench history_size"
        );
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build();
    let result = match rt {
        Ok(rt) => rt.block_on(run(&url)),
        Err(e) => Err(format!("runtime: {e}")),
    };
    if let Err(e) = result {
        eprintln!("history_size: error: {e}");
        std::process::exit(1);
    }
}

/// The bench database with its 205 tables (created once).
async fn setup(admin: &str) -> Result<String, String> {
    let mut base = url::Url::parse(admin).map_err(|e| format!("not a URL: {e}"))?;
    let mut c = sqlx::PgConnection::connect(admin)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(DB)
            .fetch_one(&mut c)
            .await
            .map_err(|e| e.to_string())?;
    if !exists {
        c.execute(AssertSqlSafe(format!("CREATE DATABASE {DB}")))
            .await
            .map_err(|e| e.to_string())?;
    }
    base.set_path(&format!("/{DB}"));
    let url = base.to_string();
    let mut d = sqlx::PgConnection::connect(&url)
        .await
        .map_err(|e| format!("connect {DB}: {e}"))?;
    let have: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM pg_tables WHERE schemaname = 'public' AND tablename LIKE 'size_%'",
    )
    .fetch_one(&mut d)
    .await
    .map_err(|e| e.to_string())?;
    if have < TABLES as i64 {
        for i in 0..TABLES {
            d.execute(AssertSqlSafe(format!(
                "CREATE TABLE IF NOT EXISTS size_{i:03} (id int PRIMARY KEY, v text); \
                 INSERT INTO size_{i:03} SELECT g, md5(g::text) FROM generate_series(1, 100) g \
                 ON CONFLICT DO NOTHING"
            )))
            .await
            .map_err(|e| e.to_string())?;
        }
        d.execute("ANALYZE").await.map_err(|e| e.to_string())?;
    }
    Ok(url)
}

async fn run(admin: &str) -> Result<(), String> {
    let db_url = setup(admin).await?;
    let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
    let history = dir.path().join("history.db");
    let config_path = dir.path().join("dbwarden.toml");
    std::fs::write(
        &config_path,
        format!(
            "[daemon]\nhistory = \"sqlite://{}\"\n\n[[target]]\nname = \"pg\"\nurl = \"{db_url}\"\n\
             pool = {{ max_connections = 2 }}\n\n[[job]]\nname = \"health\"\nkind = \"health\"\n\
             schedule = \"@every 30s\"\n",
            history.display()
        ),
    )
    .map_err(|e| e.to_string())?;
    let config = dbwarden::config::load(&config_path).map_err(|e| format!("config: {e}"))?;
    let target = config.target("pg").cloned().ok_or("target pg missing")?;
    let (shared, _ctx) = dbwarden::jobs::runtime(&config, Events::default());
    let store = Store::start(&config.daemon.history, None, BufferLimits::default())
        .await
        .map_err(|e| e.to_string())?;
    let cadence = (config.daemon.table_stats_interval.as_secs() / 30).max(1) as i64;

    let day0: DateTime<Utc> = DateTime::from_timestamp(1_798_761_600, 0).unwrap_or_default();
    let started = Instant::now();
    let (mut tables_seen, mut transitions) = (0, 0);
    for i in 0..ROUNDS {
        let ts = day0 + chrono::Duration::seconds(30 * i);
        let run_id = new_run_id();
        let mut events = vec![Event::RunStarted(JobRun {
            id: run_id.clone(),
            job: "health".into(),
            kind: "health".into(),
            target: Some("pg".into()),
            scheduled_at: Some(ts),
            started_at: ts,
            finished_at: None,
            outcome: RunOutcome::Running,
            status: None,
            error: None,
            coalesced: 0,
        })];
        let opts = HealthOptions {
            table_stats: i % cadence == 0,
            ..HealthOptions::default()
        };
        let round_started = Instant::now();
        let mut h =
            dbwarden::jobs::health_round(&shared.engines, &target, &shared.facts, &opts).await;
        h.measured_at = ts;
        events.push(Event::Checks {
            ts,
            target: "pg".into(),
            run_id: run_id.clone(),
            results: h.checks.clone(),
        });
        if !h.report.table_stats.is_empty() {
            tables_seen = h.report.table_stats.len();
            events.push(Event::TableStats {
                ts,
                target: "pg".into(),
                stats: h.report.table_stats.clone(),
            });
        }
        for change in shared.tracker.observe(&h) {
            transitions += 1;
            events.push(Event::Transition {
                ts,
                target: change.target.clone(),
                check: change.check.clone(),
                from: change.transition.from,
                to: change.transition.to,
                message: change.message.clone(),
            });
        }
        let took = chrono::Duration::from_std(round_started.elapsed()).unwrap_or_default();
        events.push(Event::RunFinished(RunEnd {
            id: run_id,
            finished_at: ts + took,
            outcome: RunOutcome::Ok,
            status: Some(h.status),
            error: None,
        }));
        for e in &events {
            for r in e.records() {
                store.push(r);
            }
        }
        if i % 200 == 199 {
            store.flush().await.map_err(|e| e.to_string())?;
        }
    }
    store.flush().await.map_err(|e| e.to_string())?;
    let elapsed = started.elapsed();
    let health = store.health();
    store.close(Duration::from_secs(10)).await;

    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", history.display()))
        .await
        .map_err(|e| e.to_string())?;
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        .await
        .map_err(|e| e.to_string())?;
    let file = std::fs::metadata(&history).map(|m| m.len()).unwrap_or(0);
    let wal = std::fs::metadata(history.with_extension("db-wal"))
        .map(|m| m.len())
        .unwrap_or(0);
    let free: i64 = sqlx::query_scalar("PRAGMA freelist_count")
        .fetch_one(&mut c)
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "history_size: {ROUNDS} rounds (a simulated day at 30 s) of one idle PostgreSQL target with {tables_seen} tables, \
         table statistics every {cadence} rounds, {transitions} believed transitions; ran in {:.1}s; \
         {} records written, {} dropped",
        elapsed.as_secs_f64(),
        health.written_total,
        health.dropped.total()
    );
    println!(
        "history_size: SQLite file after checkpoint: {file} bytes = {:.2} MB per target-day \
         (WAL {wal} bytes, {free} free pages); budget 2 MB",
        file as f64 / 1e6
    );
    for table in [
        "job_runs",
        "health_transitions",
        "check_periods",
        "check_latest",
        "series",
        "samples",
        "table_stats_latest",
    ] {
        let rows: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
            .fetch_one(&mut c)
            .await
            .map_err(|e| e.to_string())?;
        // dbstat is compiled into the bundled SQLite only with SQLITE_ENABLE_DBSTAT_VTAB.
        let bytes: Option<i64> = sqlx::query_scalar(
            "SELECT SUM(pgsize) FROM dbstat WHERE name = ?1 OR name IN \
             (SELECT name FROM sqlite_master WHERE tbl_name = ?1 AND type = 'index')",
        )
        .bind(table)
        .fetch_one(&mut c)
        .await
        .ok()
        .flatten();
        match bytes {
            Some(b) if rows > 0 => println!(
                "history_size:   {table}: {rows} rows, {b} bytes ({:.1} bytes/row)",
                b as f64 / rows as f64
            ),
            Some(b) => println!("history_size:   {table}: {rows} rows, {b} bytes"),
            None => println!("history_size:   {table}: {rows} rows"),
        }
    }
    Ok(())
}
