//! PostgreSQL engine (13+): connectivity, sessions, wraparound, table health, replication,
//! indexes, counters and disk space, read from catalogs and statistics views by a handful
//! of queries per round on a small lazy pool.
//!
//! - `sql`: the probe queries and the rules they follow (no relation locks, timeouts, a
//!   `/* dbwarden */` comment, few round trips).
//! - `conn`: connections (options, the pool, the second connection, connect errors) and
//!   cancelling a run's statements.
//! - `round`: one health round: which probes run, and the measurements they make.
//! - `cache`: the probes on slower cadences and their last results.
//! - `decode`: the rows of the probes as typed values, and probe errors.
//! - `probe`: the pure functions that turn those values into measurements (unit-tested
//!   without a server).
//! - `probe_server`: the second pass's pure judgements (settings, checksum failures, long
//!   transactions, expected replicas, bytes behind, slot conditions, sequences, WAL volume,
//!   checkpoints) and which SQL text a server version gets.
//! - `slow_server`: the sequence probe and the checkpoint/WAL sample (5-minute cadence).
//! - `checks`: the catalogue (names, units, built-in thresholds).
//! - query text in messages has its literals replaced by `?` ([`crate::engine::redact`]).
//! - `disk`: free space of the data directory when the server runs on this host.
//! - `statements`: slow-query sampling (pg_stat_statements counters, texts, long runners).
//! - `explain`: `dbwarden explain`: the read-only guard (our own lexer) and the plan.
//!
//! Cost classes: every round runs three cheap queries (`INSTANCE`, `ACTIVITY`, `TABLES`,
//! plus `ARCHIVE_READY` when archiving is on, and on a second connection the one-row
//! `BACKEND_IDENTITY` so the run can cancel it); the database size and the index lists
//! (invalid, never scanned) run at most every [`CATALOG_INTERVAL`], the table and index bloat estimates and
//! the duplicate-index analysis at most every [`EXPENSIVE_INTERVAL`], and their last
//! result is reused in between, with its age in the message. The sequences (`SEQUENCES`)
//! and one sample of the checkpoint counters and WAL state (`CHECKPOINTS_*`, `WAL_DIR`)
//! are read at most every [`CATALOG_INTERVAL`] too.

#[doc(hidden)]
pub mod bench_support;
mod cache;
mod checks;
mod conn;
mod decode;
mod disk;
pub mod explain;
mod maintain;
mod probe;
mod probe_server;
mod round;
mod slow_server;
mod sql;
pub mod statements;

use std::str::FromStr;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use sqlx::ConnectOptions;
use sqlx::postgres::{PgConnectOptions, PgPool};
use tokio::sync::Mutex;

use super::conn::Lease;
use super::{EngineError, RunScope, Session};
use crate::config::{Secret, Target};

pub use checks::CHECKS;
pub use maintain::{MaintenanceSettings, PgMaintenance, PlanInput};
pub use probe::{grant_monitor, quote_ident, standby_replay_lag};

/// The bloat estimate and the duplicate-index analysis (tens of ms of server time on a
/// database with ~1,600 relations) run at most this often; in between, their last result is
/// reused and its age is shown in the message.
pub const EXPENSIVE_INTERVAL: Duration = Duration::from_secs(30 * 60);
/// `pg_database_size()` stats every file of the database (~4 ms for ~1,100 files), and
/// index state (invalid, never scanned) changes slowly: both are read at most this often.
pub const CATALOG_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// Every probe statement runs with these (set as connection startup options).
const STATEMENT_TIMEOUT: &str = "5s";
const LOCK_TIMEOUT: &str = "1s";

pub struct PostgresEngine {
    target: String,
    /// From the URL, plus application_name and timeouts; the password is added per connect.
    options: Box<PgConnectOptions>,
    /// Reads the password from the target's source (`password_file`, `password_env`).
    password: Box<dyn Fn() -> Result<Option<Secret>, String> + Send + Sync>,
    /// `host:port` or the socket directory, for messages (never the URL: it may hold a password).
    endpoint: String,
    /// Connected over a Unix socket or loopback: the data directory is on this host.
    local: bool,
    /// `None` for a one-shot engine: each round opens one direct connection.
    pool: Option<PgPool>,
    connect_timeout: Duration,
    acquire_timeout: Duration,
    max_connections: u32,
    test_before_acquire: bool,
    /// A pooled connection was found dead: the next acquisition checks the server first.
    suspect: AtomicBool,
    /// Callers waiting for a connection of the pool.
    waiting: crate::engine::conn::Waiting,
    /// Backend pids this engine's rounds used (diagnostics, tests).
    seen: std::sync::Mutex<Vec<i32>>,
    state: Box<Mutex<round::RoundState>>,
}

impl PostgresEngine {
    /// The pool now (`/metrics`); `None` for a one-shot engine.
    pub fn pool_stats(&self) -> Option<crate::engine::PoolStats> {
        self.pool
            .as_ref()
            .map(|p| crate::engine::PoolStats::of(p, &self.waiting))
    }

    /// Prepares the engine and, unless `one_shot`, its lazy pool; no connection is made and
    /// no secret is read.
    pub fn open(target: &Target, one_shot: bool) -> Result<Self, EngineError> {
        let setup = |message: String| EngineError::Setup {
            target: target.name.clone(),
            message,
        };
        let options = PgConnectOptions::from_str(target.url.expose())
            .map_err(|e| {
                setup(format!(
                    "{} is not a usable PostgreSQL URL: {}",
                    target.url.redacted(),
                    conn::redact_error(&e.to_string(), target.url.expose())
                ))
            })?
            .application_name("dbwarden")
            .options([
                ("statement_timeout", STATEMENT_TIMEOUT),
                ("lock_timeout", LOCK_TIMEOUT),
            ])
            .disable_statement_logging();
        let (endpoint, local) = match options.get_socket() {
            Some(dir) => (
                format!("{} (port {})", dir.display(), options.get_port()),
                true,
            ),
            None => {
                let host = options.get_host();
                let shown = if host.contains(':') {
                    format!("[{host}]:{}", options.get_port())
                } else {
                    format!("{host}:{}", options.get_port())
                };
                (shown, disk::is_local_endpoint(host, false))
            }
        };
        let p = &target.pool;
        let pool = (!one_shot).then(|| {
            super::conn::pool_options::<sqlx::Postgres>(target).connect_lazy_with(options.clone())
        });
        Ok(PostgresEngine {
            target: target.name.clone(),
            options: Box::new(options),
            password: {
                let source = target.password.clone();
                Box::new(move || source.resolve())
            },
            endpoint,
            local,
            pool,
            connect_timeout: p.connect_timeout,
            acquire_timeout: p.acquire_timeout,
            max_connections: if one_shot { 1 } else { p.max_connections },
            test_before_acquire: p.test_before_acquire,
            suspect: AtomicBool::new(false),
            waiting: Default::default(),
            seen: std::sync::Mutex::new(Vec::new()),
            state: Box::default(),
        })
    }

    /// Registers a connection's backend in the run's scope.
    fn enter(
        &self,
        lease: &mut Lease<sqlx::Postgres>,
        pid: i32,
        started: Option<String>,
        scope: &RunScope,
    ) {
        lease.enter(
            Session {
                id: pid as u64,
                started,
            },
            scope,
        );
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if !seen.contains(&pid) {
            seen.push(pid);
            let excess = seen.len().saturating_sub(64);
            seen.drain(..excess);
        }
    }

    /// The backend pids this engine's rounds used so far (diagnostics, tests).
    pub fn backend_pids(&self) -> Vec<i32> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Runs `sql` on a connection of this engine registered in `scope`, as a run's long
    /// statement would (maintenance will run VACUUM this way). For tests of per-run
    /// cancellation until maintenance brings real long statements.
    #[doc(hidden)]
    pub async fn run_in_scope(&self, sql: &str, scope: &RunScope) -> Result<(), String> {
        let mut lease = self.connection().await.map_err(|e| e.message())?;
        let (pid, started) = conn::identify(&mut lease)
            .await
            .map_err(|e| e.to_string())?;
        self.enter(&mut lease, pid, started, scope);
        let result = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(&mut *lease)
            .await;
        lease.release().await;
        result.map(|_| ()).map_err(|e| e.to_string())
    }

    pub async fn close(&self) {
        if let Some(pool) = &self.pool {
            pool.close().await;
        }
    }
}
