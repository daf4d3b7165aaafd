//! The health-check harness the PostgreSQL engine tests share: direct connections for
//! provoking conditions, a config loaded the way the daemon loads it, one round through the
//! engine, and its results judged with the target's thresholds.

use dbwarden::config::{Config, Target};
use dbwarden::engine::{Engine, HealthOptions, HealthReport, RunScope, catalog};
use dbwarden::health::{CheckResult, evaluate};
use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Connection, Executor};

/// `prefix` with a random suffix: a name no parallel test uses.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{:08x}", rand::random::<u32>())
}

pub async fn connect(url: &str) -> PgConnection {
    PgConnection::connect(url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test server: {e}"))
}

pub async fn exec(conn: &mut PgConnection, sql: &str) {
    if let Err(e) = conn.execute(AssertSqlSafe(sql.to_string())).await {
        panic!("{sql}: {e}");
    }
}

pub async fn scalar_i32(conn: &mut PgConnection, sql: &str) -> i32 {
    match sqlx::query_scalar::<_, i32>(AssertSqlSafe(sql.to_string()))
        .fetch_one(conn)
        .await
    {
        Ok(v) => v,
        Err(e) => panic!("{sql}: {e}"),
    }
}

/// `url` with another user (no password: the test servers trust local connections).
pub fn as_user(url: &str, user: &str) -> String {
    let mut u = url::Url::parse(url).unwrap_or_else(|e| panic!("{e}"));
    let _ = u.set_username(user);
    let _ = u.set_password(None);
    u.to_string()
}

/// `disk_space` judged at 99% / 100%: these tests are about the database, and a build
/// machine's disk may well be over the built-in 85%.
pub const RELAXED_DISK: &str = r#"disk_space = { warning = "99%", critical = "100%" }"#;

/// A config of `targets` (`[[target]]` tables) plus a health job, with `thresholds` in
/// its `[thresholds]` table, loaded the way the daemon loads it: a TOML file through
/// `dbwarden::config::load`.
pub fn config(thresholds: &str, targets: &str) -> (tempfile::TempDir, Config) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let path = dir.path().join("dbwarden.toml");
    let body = format!(
        r#"[daemon]
history = "sqlite://{}/history.db"

[thresholds]
{thresholds}

{targets}

[[job]]
name = "health"
kind = "health"
schedule = "@every 30s"
"#,
        dir.path().display()
    );
    std::fs::write(&path, body).unwrap_or_else(|e| panic!("write config: {e}"));
    match dbwarden::config::load(&path) {
        Ok(c) => (dir, c),
        Err(e) => panic!("config: {e}"),
    }
}

/// A config with one PostgreSQL target "pg" for `url` (`extra` inside its `[[target]]`
/// table) and `thresholds`, and that target.
pub fn pg_target(url: &str, extra: &str, thresholds: &str) -> (tempfile::TempDir, Config, Target) {
    let (dir, config) = config(
        thresholds,
        &format!(
            r#"[[target]]
name = "pg"
url = "{url}"
pool = {{ max_connections = 2, connect_timeout = "2s", acquire_timeout = "2s" }}
{extra}"#
        ),
    );
    let t = config
        .target("pg")
        .cloned()
        .unwrap_or_else(|| panic!("target pg missing"));
    (dir, config, t)
}

pub fn engine(t: &Target) -> Engine {
    Engine::open(t).unwrap_or_else(|e| panic!("open: {e}"))
}

/// One round as the daemon runs it, as the run of `scope`; `table_stats` as on the
/// table-statistics cadence.
pub async fn round_in(e: &Engine, t: &Target, table_stats: bool, scope: &RunScope) -> HealthReport {
    let opts = HealthOptions {
        table_stats,
        ..HealthOptions::default()
    };
    e.health(t, &opts, scope).await
}

/// The results of a round, judged with the target's thresholds (as the daemon does).
pub fn judge(t: &Target, report: &HealthReport) -> Vec<CheckResult> {
    report
        .measurements
        .iter()
        .map(|m| {
            let spec = catalog::spec(m.check)
                .unwrap_or_else(|| panic!("check {} is not in the catalogue", m.check));
            evaluate(m, spec, &t.thresholds_for(spec))
        })
        .collect()
}

pub fn find<'a>(results: &'a [CheckResult], check: &str) -> &'a CheckResult {
    results
        .iter()
        .find(|r| r.check == check)
        .unwrap_or_else(|| panic!("no result for {check}: {}", show(results)))
}

pub fn show(results: &[CheckResult]) -> String {
    results
        .iter()
        .map(|r| format!("  {} {}: {}", r.status, r.check, r.message))
        .collect::<Vec<_>>()
        .join("\n")
}
