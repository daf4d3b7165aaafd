//! The slow-query sampling budget: with at least 5,000 distinct statements in
//! pg_stat_statements, one sample (counters query, delta, selection, snapshot encoding,
//! long runners) takes at most 100 ms end to end and at most 20 ms of server CPU.
//!
//! ```text
//! DBWARDEN_BENCH_PG_URL=postgres://postgres@127.0.0.1:5433/test cargo bench --bench sample_pg
//! ```
//!
//! The URL names a database of a server with pg_stat_statements preloaded (`.ci/run`'s
//! throwaway primary on 5433). The bench creates its own database `dbw_bench_sample`
//! (dropped at the end), runs 5,000 distinct statements there (`SELECT cI FROM t WHERE
//! cJ = 1` over a table of 100 columns: distinct column pairs are distinct queryids), then
//! samples 30 times. Run it as root (or postgres) on the database host: the server CPU of
//! the sampling backend is read from `/proc/<pid>/stat` (10 ms ticks, so it is averaged
//! over the runs). Server execution time of the counters query is also read back from
//! pg_stat_statements itself. The budgets are printed as PASS/OVER, not asserted.

use std::time::{Duration, Instant};

use dbwarden::config::SampleParams;
use dbwarden::engine::{Engine, RunScope};
use dbwarden::events::Events;
use dbwarden::jobs::sample::{SampleState, sample};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

const DB: &str = "dbw_bench_sample";
const COLUMNS: usize = 100;
const STATEMENTS: usize = 5_000;
const RUNS: usize = 30;
const BUDGET_WALL: Duration = Duration::from_millis(100);
const BUDGET_CPU_MS: f64 = 20.0;

fn main() {
    let url = match std::env::var("DBWARDEN_BENCH_PG_URL") {
        Ok(u) if !u.trim().is_empty() => u.trim().to_string(),
        _ => {
            println!(
                "sample_pg: skipped, DBWARDEN_BENCH_PG_URL is not set, e.g.\n  \
                 DBWARDEN_BENCH_PG_URL=postgres://postgres@127.0.0.1:5433/test cargo bench --bench sample_pg"
            );
            return;
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sample_pg: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(bench(&url)) {
        eprintln!("sample_pg: {e}");
        std::process::exit(1);
    }
}

async fn exec(c: &mut PgConnection, sql: &str) -> Result<(), String> {
    sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
        .execute(c)
        .await
        .map(|_| ())
        .map_err(|e| format!("{e}"))
}

async fn bench(admin: &str) -> Result<(), String> {
    let mut a = PgConnection::connect(admin)
        .await
        .map_err(|e| e.to_string())?;
    exec(
        &mut a,
        &format!("DROP DATABASE IF EXISTS {DB} WITH (FORCE)"),
    )
    .await?;
    exec(&mut a, &format!("CREATE DATABASE {DB}")).await?;
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(admin);
    let url = format!("{base}/{DB}");
    let result = run(&url).await;
    exec(
        &mut a,
        &format!("DROP DATABASE IF EXISTS {DB} WITH (FORCE)"),
    )
    .await?;
    result
}

async fn run(url: &str) -> Result<(), String> {
    let mut c = PgConnection::connect(url)
        .await
        .map_err(|e| e.to_string())?;
    exec(&mut c, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements").await?;
    let cols: Vec<String> = (0..COLUMNS).map(|i| format!("c{i} int")).collect();
    exec(&mut c, &format!("CREATE TABLE t ({})", cols.join(", "))).await?;
    let mut batch = String::new();
    for n in 0..STATEMENTS {
        let (i, j) = (n % COLUMNS, n / COLUMNS);
        batch.push_str(&format!("SELECT c{i} FROM t WHERE c{j} = 1;"));
        if n % 500 == 499 {
            exec(&mut c, &batch).await?;
            batch.clear();
        }
    }
    exec(&mut c, &batch).await?;
    let entries: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_stat_statements")
        .fetch_one(&mut c)
        .await
        .map_err(|e| e.to_string())?;

    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        format!(
            "[daemon]\nhistory = \"sqlite://{}/h.db\"\n[[target]]\nname = \"pg\"\nurl = \"{url}\"\n",
            dir.path().display()
        ),
    )
    .map_err(|e| e.to_string())?;
    let config = dbwarden::config::load(&path).map_err(|e| e.to_string())?;
    let target = config.target("pg").ok_or("no target")?.clone();
    let engine = Engine::open(&target).map_err(|e| e.to_string())?;
    let (params, state, events, scope) = (
        SampleParams::default(),
        SampleState::default(),
        Events::default(),
        RunScope::default(),
    );
    // Warm-up: the connection, and the first sample (a baseline) fetches nothing else.
    for _ in 0..3 {
        sample(&engine, &params, &state, "pg", &scope, &events)
            .await
            .map_err(|e| e.to_string())?;
    }
    let pids = match &engine {
        Engine::Postgres(p) => p.backend_pids(),
        _ => Vec::new(),
    };
    let cpu_before = backends_cpu(&pids);
    let mut times = Vec::with_capacity(RUNS);
    let mut kept_entries = 0;
    for _ in 0..RUNS {
        let t = Instant::now();
        let r = sample(&engine, &params, &state, "pg", &scope, &events)
            .await
            .map_err(|e| e.to_string())?;
        times.push(t.elapsed());
        kept_entries = r.entries;
    }
    let cpu_after = backends_cpu(&pids);
    let server_ms: f64 = sqlx::query_scalar(
        "SELECT coalesce(sum(total_exec_time) / nullif(sum(calls), 0), 0)::float8 FROM pg_stat_statements \
         WHERE query LIKE '/* dbwarden */ SELECT queryid::text AS queryid, userid::int8::text%'",
    )
    .fetch_one(&mut c)
    .await
    .map_err(|e| e.to_string())?;
    engine.close(Duration::from_secs(2)).await;
    times.sort();
    let median = times[RUNS / 2];
    let worst = times[RUNS - 1];
    println!(
        "sample_pg: {entries} entries in pg_stat_statements ({kept_entries} read); one sample: median {median:.1?}, worst {worst:.1?} over {RUNS} runs: {}",
        if median <= BUDGET_WALL {
            "PASS"
        } else {
            "OVER"
        }
    );
    println!(
        "sample_pg: server execution time of the counters query (pg_stat_statements): {server_ms:.2} ms"
    );
    match (cpu_before, cpu_after) {
        (Ok(a), Ok(b)) => {
            let ms = (b - a) * 1000.0 / RUNS as f64;
            println!(
                "sample_pg: server CPU per sample: {ms:.2} ms (backends {pids:?}, /proc/<pid>/stat, 10 ms ticks over {RUNS} samples): {}",
                if ms <= BUDGET_CPU_MS { "PASS" } else { "OVER" }
            );
        }
        (Err(e), _) | (_, Err(e)) => println!("sample_pg: server CPU not measured: {e}"),
    }
    Ok(())
}

/// CPU seconds (user + system) of the backends, from /proc (same host, root or postgres).
fn backends_cpu(pids: &[i32]) -> Result<f64, String> {
    if pids.is_empty() {
        return Err("the engine recorded no backend".into());
    }
    let mut total = 0.0;
    for pid in pids {
        let path = format!("/proc/{pid}/stat");
        let stat = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
        let rest = stat
            .rsplit_once(") ")
            .map(|(_, r)| r)
            .ok_or_else(|| format!("{path}: unexpected format"))?;
        let f: Vec<f64> = rest
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0.0))
            .collect();
        total += (f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0)) / 100.0;
    }
    Ok(total)
}
