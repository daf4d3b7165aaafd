//! The PostgreSQL health-round budget: on a database with ~250 tables (`pgbench -i -s 20`
//! plus 200 small tables), warm pool, cheap probes only,
//! - the wall time of one round stays within 1.5 × the server-side time of its statements,
//! - the server spends at most 8 ms of CPU per round,
//! - no more than 2 connections are used.
//!
//! ```text
//! DBWARDEN_BENCH_PG_URL=postgres://postgres@127.0.0.1:5432/test cargo bench --bench pg_round
//! ```
//!
//! The URL names any existing database of the server; the bench creates and fills its own
//! database `dbw_bench` there on the first run (`pgbench -i -s 20` and 200 small tables,
//! about a minute) and reuses it afterwards. Run it as root (or postgres) on the database
//! host, so the server CPU of the engine's backends can be read from `/proc/<pid>/stat`.
//! Server-side time comes from `pg_stat_statements` when it is loaded, else from
//! `EXPLAIN (ANALYZE)` of the same statements. The budgets are printed as PASS/OVER, not
//! asserted (the exit code is 1 only when a round fails).
//!
//! Numbers are from the `bench` profile, which is release without LTO (see Cargo.toml):
//! the shipped binary is slightly faster on the client side; server-side figures do not
//! depend on it.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use dbwarden::config::Target;
use dbwarden::engine::postgres::bench_support::round_statements;
use dbwarden::engine::{Engine, HealthOptions, HealthReport, RunScope};
use dbwarden::health::{Outcome, Status};
use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Connection, Executor, Row};

const DB: &str = "dbw_bench";
const SCALE: i64 = 20;
const SMALL_TABLES: i64 = 200;
const WARMUP: usize = 5;
const ROUNDS: usize = 200;
/// EXPLAIN ANALYZE runs of each statement (after 3 unmeasured ones).
const EXPLAIN_RUNS: usize = 50;
const PGBENCH: &str = "/usr/bin/pgbench";

const BUDGET_RATIO: f64 = 1.5;
const BUDGET_CPU_MS: f64 = 8.0;
const BUDGET_CONNECTIONS: usize = 2;

fn main() {
    let url = match std::env::var("DBWARDEN_BENCH_PG_URL") {
        Ok(u) if !u.trim().is_empty() => u.trim().to_string(),
        _ => {
            println!(
                "pg_round: skipped, DBWARDEN_BENCH_PG_URL is not set. Run it on the database host, as root:\n  \
                 DBWARDEN_BENCH_PG_URL=postgres://postgres@127.0.0.1:5432/test cargo bench --bench pg_round\n\
                 (a superuser URL of any existing database; the bench creates and fills {DB} itself)"
            );
            return;
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(run(&url)) {
        eprintln!("pg_round: error: {e}");
        std::process::exit(1);
    }
}

async fn run(url: &str) -> Result<(), String> {
    let base =
        url::Url::parse(url).map_err(|e| format!("DBWARDEN_BENCH_PG_URL is not a URL: {e}"))?;
    let db_url = setup(&base).await?;
    let mut c = connect(&db_url).await?;

    let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
    let t = target(dir.path(), db_url.as_str())?;
    let engine = Engine::open(&t).map_err(|e| format!("open: {e}"))?;
    // Every round reports table statistics: the most a round costs.
    let opts = HealthOptions {
        table_stats: true,
        ..HealthOptions::default()
    };
    let backend_pids = || match &engine {
        Engine::Postgres(p) => p.backend_pids(),
        _ => Vec::new(),
    };

    // Warm-up: connects both pooled connections, prepares the statements, runs the
    // slow-cadence probes (cached for minutes afterwards).
    for _ in 0..WARMUP {
        let r = engine.health(&t, &opts, &RunScope::default()).await;
        round_error(&r)?;
    }
    let pids = backend_pids();
    let pgss = pg_stat_statements(&mut c).await?;
    let server_before = if pgss {
        Some(pgss_total(&mut c).await?)
    } else {
        None
    };
    let cpu_before = backends_cpu(&pids);
    let client_before = proc_cpu("self");

    let mut walls = Vec::with_capacity(ROUNDS);
    let mut tables = 0;
    for _ in 0..ROUNDS {
        let started = Instant::now();
        let r = engine.health(&t, &opts, &RunScope::default()).await;
        walls.push(started.elapsed().as_secs_f64() * 1000.0);
        round_error(&r)?;
        tables = r.table_stats.len();
    }

    let client_after = proc_cpu("self");
    let cpu_after = backends_cpu(&pids);
    let server_after = if pgss {
        Some(pgss_total(&mut c).await?)
    } else {
        None
    };
    let pids_after = backend_pids();
    let connections: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = 'dbwarden'",
    )
    .fetch_one(&mut c)
    .await
    .map_err(|e| format!("count connections: {e}"))?;
    engine.close(Duration::from_secs(5)).await;

    // Server-side time per round.
    let (server_ms, server_line, exec_only_ms) = match (server_before, server_after) {
        (Some((t0, n0)), Some((t1, n1))) => {
            let ms = (t1 - t0) / ROUNDS as f64;
            (
                ms,
                format!(
                    "{ms:.2} ms (pg_stat_statements: total_exec_time + total_plan_time of '/* dbwarden */' statements, {:.1} statements per round)",
                    (n1 - n0) as f64 / ROUNDS as f64
                ),
                None,
            )
        }
        _ => explain_round(&mut c).await?,
    };
    let _ = c.close().await;

    let mut sorted = walls.clone();
    sorted.sort_by(f64::total_cmp);
    let mean = walls.iter().sum::<f64>() / walls.len() as f64;
    let ratio = mean / server_ms.max(1e-9);

    println!("pg_round: tables seen by the round: {tables}");
    println!(
        "pg_round: wall time per round ({ROUNDS} rounds after {WARMUP} warm-up, cheap probes, warm pool): mean {mean:.2} ms, p50 {:.2} ms, p95 {:.2} ms",
        percentile(&sorted, 50.0),
        percentile(&sorted, 95.0)
    );
    let cpu_ms = match (&cpu_before, &cpu_after) {
        (Ok(a), Ok(b)) if pids == pids_after => {
            let ms = (b - a) * 1000.0 / ROUNDS as f64;
            println!(
                "pg_round: server CPU per round: {ms:.2} ms (user + system of backends {pids:?} from /proc/<pid>/stat, 10 ms ticks over {ROUNDS} rounds)"
            );
            Some(ms)
        }
        (Ok(_), Ok(_)) => {
            println!(
                "pg_round: server CPU per round: not measurable (the engine's backends changed during the run: {pids:?} -> {pids_after:?})"
            );
            None
        }
        (Err(why), _) | (_, Err(why)) => {
            println!("pg_round: server CPU per round: not measurable ({why})");
            None
        }
    };
    if let (Ok((_, a)), Ok((_, b))) = (&client_before, &client_after) {
        println!(
            "pg_round: client CPU per round: {:.2} ms (this process: engine, runtime, decoding)",
            (b - a) * 1000.0 / ROUNDS as f64
        );
    }
    println!("pg_round: server-side time per round: {server_line}");
    match exec_only_ms {
        Some(exec) => println!(
            "pg_round: wall / server time: {ratio:.3} (against execution time alone, {exec:.2} ms: {:.3})",
            mean / exec.max(1e-9)
        ),
        None => println!("pg_round: wall / server time: {ratio:.3}"),
    }
    let connections = (connections.max(0) as usize).max(pids_after.len());
    println!(
        "pg_round: connections per target: {connections} (engine backends {pids_after:?}; pg_stat_activity rows with application_name dbwarden on {DB})"
    );

    let verdict = |ok: bool| if ok { "PASS" } else { "OVER" };
    match exec_only_ms {
        // EXPLAIN plans the statement every run; the engine's prepared statements keep
        // their (generic) plan, so a round pays execution only: show that verdict too.
        Some(exec) => println!(
            "pg_round: budget wall ≤ {BUDGET_RATIO} × server time: {} ({ratio:.3}; against execution time alone, as a round with cached plans pays it: {} ({:.3}))",
            verdict(ratio <= BUDGET_RATIO),
            verdict(mean <= BUDGET_RATIO * exec),
            mean / exec.max(1e-9)
        ),
        None => println!(
            "pg_round: budget wall ≤ {BUDGET_RATIO} × server time: {} ({ratio:.3})",
            verdict(ratio <= BUDGET_RATIO)
        ),
    }
    match cpu_ms {
        Some(ms) => println!(
            "pg_round: budget server CPU ≤ {BUDGET_CPU_MS} ms per round: {} ({ms:.2} ms)",
            verdict(ms <= BUDGET_CPU_MS)
        ),
        None => {
            println!("pg_round: budget server CPU ≤ {BUDGET_CPU_MS} ms per round: not measurable")
        }
    }
    println!(
        "pg_round: budget connections ≤ {BUDGET_CONNECTIONS}: {} ({connections})",
        verdict(connections <= BUDGET_CONNECTIONS)
    );
    Ok(())
}

/// Creates and fills `dbw_bench` unless that was done before; returns its URL.
async fn setup(base: &url::Url) -> Result<url::Url, String> {
    let mut admin = connect(base).await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(DB)
            .fetch_one(&mut admin)
            .await
            .map_err(|e| format!("look for database {DB}: {e}"))?;
    if !exists {
        println!("pg_round: setup: creating database {DB}");
        admin
            .execute(AssertSqlSafe(format!("CREATE DATABASE {DB}")))
            .await
            .map_err(|e| format!("CREATE DATABASE {DB}: {e}"))?;
    }
    let _ = admin.close().await;

    let mut db_url = base.clone();
    db_url.set_path(&format!("/{DB}"));
    let mut c = connect(&db_url).await?;

    let filled = pgbench_filled(&mut c).await?;
    if !filled {
        if !Path::new(PGBENCH).exists() {
            return Err(format!(
                "{PGBENCH} not found: install the Debian package that ships pgbench for the \
                 server's major version, e.g. `apt-get install postgresql-15` on Debian 12 \
                 (/usr/bin/pgbench itself comes from its dependency postgresql-client-common)"
            ));
        }
        println!("pg_round: setup: pgbench -i -s {SCALE} {DB} (about a minute)");
        let status = Command::new(PGBENCH)
            .args(["-i", "-q", "-s", &SCALE.to_string(), db_url.as_str()])
            .status()
            .map_err(|e| format!("run {PGBENCH}: {e}"))?;
        if !status.success() {
            return Err(format!("pgbench -i failed ({status})"));
        }
    }

    let small: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename LIKE 'dbw\\_small\\_%'",
    )
    .fetch_one(&mut c)
    .await
    .map_err(|e| format!("count the small tables: {e}"))?;
    if small != SMALL_TABLES {
        println!("pg_round: setup: {SMALL_TABLES} small tables");
        let sql = format!(
            "DO $$
            BEGIN
              FOR i IN 1..{SMALL_TABLES} LOOP
                EXECUTE format('CREATE TABLE IF NOT EXISTS dbw_small_%s (
                                  id int PRIMARY KEY, name text NOT NULL, qty int,
                                  updated timestamptz NOT NULL DEFAULT now())',
                               lpad(i::text, 3, '0'));
                EXECUTE format('INSERT INTO dbw_small_%s (id, name, qty)
                                SELECT g, ''item '' || g, g * 10 FROM generate_series(1, 5) g
                                ON CONFLICT DO NOTHING', lpad(i::text, 3, '0'));
                EXECUTE format('ANALYZE dbw_small_%s', lpad(i::text, 3, '0'));
              END LOOP;
            END $$"
        );
        c.execute(AssertSqlSafe(sql))
            .await
            .map_err(|e| format!("create the small tables: {e}"))?;
    }
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_stat_user_tables")
        .fetch_one(&mut c)
        .await
        .map_err(|e| format!("count tables: {e}"))?;
    println!(
        "pg_round: database {DB}: {total} tables (pgbench -i -s {SCALE} + {SMALL_TABLES} small tables{})",
        if filled && small == SMALL_TABLES {
            "; setup already done"
        } else {
            ""
        }
    );
    let _ = c.close().await;
    Ok(db_url)
}

/// The pgbench tables exist with the rows of scale [`SCALE`].
async fn pgbench_filled(c: &mut PgConnection) -> Result<bool, String> {
    let exists: bool = sqlx::query_scalar(
        "SELECT to_regclass('public.pgbench_accounts') IS NOT NULL \
            AND to_regclass('public.pgbench_branches') IS NOT NULL",
    )
    .fetch_one(&mut *c)
    .await
    .map_err(|e| format!("look for the pgbench tables: {e}"))?;
    if !exists {
        return Ok(false);
    }
    let row = sqlx::query(
        "SELECT (SELECT count(*) FROM pgbench_accounts), (SELECT count(*) FROM pgbench_branches)",
    )
    .fetch_one(&mut *c)
    .await
    .map_err(|e| format!("count the pgbench rows: {e}"))?;
    let accounts: i64 = row.try_get(0).map_err(|e| e.to_string())?;
    let branches: i64 = row.try_get(1).map_err(|e| e.to_string())?;
    Ok(accounts == SCALE * 100_000 && branches == SCALE)
}

async fn connect(url: &url::Url) -> Result<PgConnection, String> {
    PgConnection::connect(url.as_str()).await.map_err(|e| {
        let mut shown = url.clone();
        let _ = shown.set_password(None);
        format!("cannot connect to {shown}: {e}")
    })
}

/// A target for `url`, built the way the daemon builds it: a TOML file through
/// `dbwarden::config::load` (as tests/engine_postgres.rs does).
fn target(dir: &Path, url: &str) -> Result<Target, String> {
    let path = dir.join("dbwarden.toml");
    let body = format!(
        r#"[daemon]
history = "sqlite://{}/history.db"

[[target]]
name = "pg"
url = "{url}"
pool = {{ max_connections = 2, connect_timeout = "2s", acquire_timeout = "2s" }}

[[job]]
name = "health"
kind = "health"
schedule = "@every 30s"
"#,
        dir.display()
    );
    std::fs::write(&path, body).map_err(|e| format!("write config: {e}"))?;
    let config = dbwarden::config::load(&path).map_err(|e| format!("config: {e}"))?;
    config
        .target("pg")
        .cloned()
        .ok_or_else(|| "target pg missing".to_string())
}

/// A round that did not measure: unreachable, or a probe failed (its checks UNKNOWN).
fn round_error(r: &HealthReport) -> Result<(), String> {
    for m in &r.measurements {
        match &m.outcome {
            Outcome::Unknown { reason, .. } => {
                return Err(format!("round failed: {} is UNKNOWN: {reason}", m.check));
            }
            Outcome::Verdict {
                status: Status::Critical,
                message,
                ..
            } if m.check == "connectivity" => {
                return Err(format!("round failed: {message}"));
            }
            _ => {}
        }
    }
    if r.table_stats.is_empty() {
        return Err("round failed: no tables seen".into());
    }
    Ok(())
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted
        .get(rank.saturating_sub(1).min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or(f64::NAN)
}

/// CPU seconds (user + system) the backends have used, from /proc (same host, and
/// permission to read a backend's stat: root or the postgres user).
fn backends_cpu(pids: &[i32]) -> Result<f64, String> {
    if pids.is_empty() {
        return Err("the engine recorded no backend".into());
    }
    let mut total = 0.0;
    for pid in pids {
        let (comm, secs) = proc_cpu(&pid.to_string())
            .map_err(|e| format!("{e}; run on the database host as root or postgres"))?;
        if comm != "postgres" {
            return Err(format!(
                "pid {pid} is not a local postgres process: is the server on another host?"
            ));
        }
        total += secs;
    }
    Ok(total)
}

/// The command name and CPU seconds (user + system) of `/proc/<pid>` (`self`: this process).
fn proc_cpu(pid: &str) -> Result<(String, f64), String> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    // The command name is in parentheses and may contain spaces.
    let (head, rest) = stat
        .rsplit_once(") ")
        .ok_or_else(|| format!("{path}: unexpected format"))?;
    let comm = head.split_once(" (").map_or("", |(_, c)| c).to_string();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| -> Result<f64, String> {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .ok_or_else(|| format!("{path}: no field {}", i + 3))
    };
    // utime and stime, in USER_HZ (100 on every Linux architecture dbwarden targets).
    Ok((comm, (tick(11)? + tick(12)?) / 100.0))
}

/// pg_stat_statements is usable in `dbw_bench` (loaded by the server; the extension is
/// created in the bench's own database when missing).
async fn pg_stat_statements(c: &mut PgConnection) -> Result<bool, String> {
    let loaded: bool = sqlx::query_scalar(
        "SELECT 'pg_stat_statements' = ANY (string_to_array(replace(current_setting('shared_preload_libraries'), ' ', ''), ','))",
    )
    .fetch_one(&mut *c)
    .await
    .map_err(|e| format!("read shared_preload_libraries: {e}"))?;
    if !loaded {
        return Ok(false);
    }
    c.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .await
        .map_err(|e| format!("CREATE EXTENSION pg_stat_statements: {e}"))?;
    Ok(true)
}

/// Total execution + planning time (ms) and calls of dbwarden's statements in this database.
async fn pgss_total(c: &mut PgConnection) -> Result<(f64, i64), String> {
    let row = sqlx::query(
        "SELECT coalesce(sum(total_exec_time + total_plan_time), 0)::float8,
                coalesce(sum(calls), 0)::int8
         FROM pg_stat_statements
         WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
           AND query LIKE '/* dbwarden */%'",
    )
    .fetch_one(&mut *c)
    .await
    .map_err(|e| format!("read pg_stat_statements: {e}"))?;
    let total: f64 = row.try_get(0).map_err(|e| e.to_string())?;
    let calls: i64 = row.try_get(1).map_err(|e| e.to_string())?;
    Ok((total, calls))
}

/// Server-side time of one round without pg_stat_statements: each statement of a cheap
/// round under `EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON)`, "Execution Time" +
/// "Planning Time" averaged over [`EXPLAIN_RUNS`] runs. Returns the total (ms), the line to
/// print, and the execution time alone.
async fn explain_round(c: &mut PgConnection) -> Result<(f64, String, Option<f64>), String> {
    let archiving: bool = sqlx::query_scalar(
        "SELECT current_setting('archive_mode') <> 'off' AND pg_has_role('pg_monitor', 'USAGE')",
    )
    .fetch_one(&mut *c)
    .await
    .map_err(|e| format!("read archive_mode: {e}"))?;
    let statements = round_statements(archiving);
    let mut exec = vec![0.0; statements.len()];
    let mut plan = vec![0.0; statements.len()];
    for run in 0..EXPLAIN_RUNS + 3 {
        for (i, (name, sql)) in statements.iter().enumerate() {
            let text = format!("EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) {sql}");
            let row = sqlx::query(AssertSqlSafe(text))
                .fetch_one(&mut *c)
                .await
                .map_err(|e| format!("EXPLAIN ANALYZE {name}: {e}"))?;
            // The json column comes back as its text in both wire formats.
            let json: String = row
                .try_get_unchecked(0)
                .map_err(|e| format!("EXPLAIN ANALYZE {name}: {e}"))?;
            let v: serde_json::Value =
                serde_json::from_str(&json).map_err(|e| format!("EXPLAIN ANALYZE {name}: {e}"))?;
            let field = |key: &str| {
                v.get(0)
                    .and_then(|p| p.get(key))
                    .and_then(serde_json::Value::as_f64)
                    .ok_or_else(|| format!("EXPLAIN ANALYZE {name}: no \"{key}\""))
            };
            let (e, p) = (field("Execution Time")?, field("Planning Time")?);
            if run >= 3 {
                exec[i] += e / EXPLAIN_RUNS as f64;
                plan[i] += p / EXPLAIN_RUNS as f64;
            }
        }
    }
    let exec_total: f64 = exec.iter().sum();
    let plan_total: f64 = plan.iter().sum();
    let each: Vec<String> = statements
        .iter()
        .zip(exec.iter().zip(&plan))
        .map(|((name, _), (e, p))| format!("{name} {e:.2} + {p:.2}"))
        .collect();
    let total = exec_total + plan_total;
    Ok((
        total,
        format!(
            "{total:.2} ms = execution {exec_total:.2} + planning {plan_total:.2} \
             (pg_stat_statements not loaded; EXPLAIN (ANALYZE, TIMING OFF), mean of {EXPLAIN_RUNS} runs; \
             per statement, execution + planning ms: {})",
            each.join(", ")
        ),
        Some(exec_total),
    ))
}
