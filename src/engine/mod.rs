//! Engines: the only place with engine-specific SQL. Each engine opens a target's small pool
//! and returns typed [`Measurement`]s; everything above this module speaks in those.
//!
//! An [`Engine`] is created without I/O (pools connect lazily) and kept across rounds so
//! connections are reused; reload replaces only the engines whose connection settings
//! changed ([`Engine::settings_key`]): thresholds come with every round.
//!
//! - `catalog`: every check of every engine (names, units, built-in thresholds).
//! - `explain`: what every engine's `dbwarden explain` guard shares.
//! - `round`: what every engine does the same way: leaving out disabled checks, the
//!   "measured by target X" stand-in, marking server-level checks, listing which were
//!   measured, gating table statistics.
//! - `conn`: pool setup, connect-with-preflight, and the connection lease that registers
//!   the server session in the run's [`RunScope`].
//! - `sqlite`, `postgres`, `mysql`: only what differs per engine.

pub mod catalog;
pub(crate) mod conn;
pub mod explain;
pub mod mysql;
pub mod postgres;
pub mod redact;
pub(crate) mod round;
pub mod sqlite;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::Target;
use crate::health::Measurement;

/// A target's connection pool now (for `/metrics`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// Connections open, idle or in use.
    pub size: u32,
    pub idle: usize,
    pub max: u32,
    /// Callers waiting for a connection.
    pub waiting: usize,
}

impl PoolStats {
    pub(crate) fn of<DB: sqlx::Database>(p: &sqlx::Pool<DB>, waiting: &conn::Waiting) -> PoolStats {
        PoolStats {
            size: p.size(),
            idle: p.num_idle(),
            max: p.options().get_max_connections(),
            waiting: waiting.now(),
        }
    }
}

/// Database engines dbwarden speaks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    Postgres,
    Mysql,
    Sqlite,
}

impl EngineKind {
    /// The engine a URL's scheme names; `None` for anything else.
    pub fn from_url(url: &str) -> Option<EngineKind> {
        let scheme = url.split_once(':')?.0.to_ascii_lowercase();
        match scheme.as_str() {
            "postgres" | "postgresql" => Some(EngineKind::Postgres),
            "mysql" | "mariadb" => Some(EngineKind::Mysql),
            "sqlite" => Some(EngineKind::Sqlite),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EngineKind::Postgres => "postgres",
            EngineKind::Mysql => "mysql",
            EngineKind::Sqlite => "sqlite",
        }
    }
}

/// What one health round of one target measured.
#[derive(Debug, Clone, Default)]
pub struct HealthReport {
    pub measurements: Vec<Measurement>,
    /// Identifies the server (PostgreSQL system identifier, MySQL server UUID) so
    /// cluster-level checks of targets sharing a server are done once.
    pub server_id: Option<String>,
    /// The server-level checks this round really measured itself: not left to another
    /// target (see [`HealthOptions::server_checks_by`]), not UNKNOWN, and, for
    /// `disk_space`, with the data directory visible. A target is only made the one that
    /// measures a check for its server when it can.
    pub server_checks: Vec<&'static str>,
    /// Per-table statistics, only in rounds asked for them ([`HealthOptions::table_stats`]).
    pub table_stats: Vec<TableStat>,
}

impl HealthReport {
    /// The round reached the database (connectivity was measured, not a failure).
    pub fn reached(&self) -> bool {
        self.measurements.iter().any(|m| {
            m.check == "connectivity" && matches!(m.outcome, crate::health::Outcome::Values(_))
        })
    }
}

/// One table's statistics in one round. Counters are lifetime values as the engine reports
/// them; `*_delta` fields are the change since the target's previously reported statistics
/// (None the first time).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct TableStat {
    /// `schema.table`.
    pub table: String,
    pub rows: Option<f64>,
    pub dead_rows: Option<f64>,
    pub size_bytes: Option<f64>,
    /// Rows inserted / updated / deleted since the table's previous row in the history:
    /// PostgreSQL `n_tup_ins` / `n_tup_upd` / `n_tup_del`, MySQL performance_schema
    /// `COUNT_INSERT` / `COUNT_UPDATE` / `COUNT_DELETE` (None when performance_schema is
    /// off or not readable). None on the first reading and after a reset (a counter went
    /// backwards, the table was re-created).
    pub inserts_delta: Option<f64>,
    pub updates_delta: Option<f64>,
    pub deletes_delta: Option<f64>,
    /// Lifetime count of reads without an index. PostgreSQL: sequential scans
    /// (`seq_scan`). MySQL: **rows** fetched without an index, i.e. by table scans
    /// (performance_schema `COUNT_FETCH` where `INDEX_NAME` is NULL): MySQL counts rows
    /// read, not scans, so compare the MySQL values only with each other (e.g. the share
    /// of rows read without an index), never with PostgreSQL's scan counts.
    pub seq_scans: Option<f64>,
    /// Lifetime count of reads through an index. PostgreSQL: index scans (`idx_scan`).
    /// MySQL: **rows** fetched through any index (performance_schema `COUNT_FETCH` where
    /// `INDEX_NAME` is not NULL), not scans; see `seq_scans`.
    pub idx_scans: Option<f64>,
    /// Unix seconds of the last (auto)vacuum / (auto)analyze, whichever is newer.
    pub last_vacuum: Option<i64>,
    pub last_analyze: Option<i64>,
    /// Allocated but unused space in the table's files (MySQL `data_free`).
    pub free_bytes: Option<f64>,
    /// Unix seconds of the last change to the table's data (MySQL `update_time`).
    pub last_modified: Option<i64>,
}

/// Per-round input that comes from the run, not from how the engine was opened.
#[derive(Debug, Clone, Default)]
pub struct HealthOptions {
    /// SQLite: the thorough `integrity_check` instead of `quick_check` (from the health
    /// job's params; the target's own `integrity_check` is honoured too).
    pub integrity_check: bool,
    /// Server-level checks (connections, replication, wraparound of every database, the
    /// processlist) that other targets of the same server measure: skip their probes.
    pub server_checks_by: Option<ServerOwners>,
    /// Report per-table statistics this round ([`HealthReport::table_stats`]). The job
    /// decides the cadence; engines still read their tables every round for the table
    /// checks, and the `*_delta` fields span the time since the previously reported
    /// statistics of the target.
    pub table_stats: bool,
}

/// A server session one run used: a PostgreSQL backend (pid plus its start time, since a
/// pid is reused once the backend is gone) or a MySQL connection id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: u64,
    /// PostgreSQL `backend_start` as text; `None` for MySQL (connection ids are not reused
    /// while the server runs).
    pub started: Option<String>,
}

/// What one run may cancel: the server sessions (backend pids / MySQL connection ids) it
/// holds, and for SQLite, whose statements run in this process, a flag the run's
/// connections check while they step a statement. Cheap to clone; a new one per run.
///
/// A session is in the scope while the run holds its connection. A connection the run
/// gave back normally leaves the scope; one abandoned mid-statement (the run's future was
/// dropped, e.g. by a timeout) stays, and is closed instead of going back to the pool, so
/// no other run can be using it when this scope is cancelled.
#[derive(Clone, Default, Debug)]
pub struct RunScope {
    sessions: Arc<Mutex<Vec<Session>>>,
    /// Set by [`Engine::cancel`]; a SQLite statement of the run stops at its next progress
    /// check (SQLITE_INTERRUPT). Never reset: a cancelled run stays cancelled.
    cancelled: Arc<AtomicBool>,
}

impl RunScope {
    /// The sessions in the scope now.
    pub fn sessions(&self) -> Vec<Session> {
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// [`Engine::cancel`] was called with this scope.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// Interrupts this scope's SQLite statements (at their next progress check) without an
    /// engine: for a SQLite session opened on a bare file (the history store's own).
    pub fn interrupt_sqlite(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }

    /// The flag a SQLite connection of this run checks while it steps a statement.
    pub(crate) fn cancel_flag(&self) -> Arc<AtomicBool> {
        self.cancelled.clone()
    }

    fn add(&self, s: &Session) {
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(s.clone());
    }

    fn remove(&self, s: &Session) {
        let mut v = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = v.iter().position(|x| x == s) {
            v.remove(i);
        }
    }
}

/// Which other target measures each server-level check of a server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerOwners {
    /// The server as engines identify it ([`HealthReport::server_id`]).
    pub server_id: String,
    /// Check name → the target that measures it.
    pub by: BTreeMap<String, String>,
}

impl HealthOptions {
    /// The target that measures `check` of this server instead of this one; `None` when
    /// this target measures it (also when the engine now finds itself on another server
    /// than the one the owners were chosen for: after a failover).
    pub fn owner_of(&self, server_id: &str, check: &str) -> Option<&str> {
        self.server_checks_by
            .as_ref()
            .filter(|o| o.server_id == server_id)
            .and_then(|o| o.by.get(check))
            .map(String::as_str)
    }
}

/// Errors opening an engine (bad URL, unreadable secret). Failing to *reach* a database is
/// not an error: it is a CRITICAL connectivity measurement.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("target {target}: {message}")]
    Setup { target: String, message: String },
}

/// A target's engine with its connection pool.
// One engine per target, created once and kept across rounds: variant sizes do not matter.
#[allow(clippy::large_enum_variant)]
pub enum Engine {
    Sqlite(sqlite::SqliteEngine),
    Postgres(postgres::PostgresEngine),
    Mysql(mysql::MysqlEngine),
}

impl Engine {
    /// Prepares the engine for a target (the daemon's): a small lazy pool, no connection
    /// is made yet.
    pub fn open(target: &Target) -> Result<Engine, EngineError> {
        Self::open_as(target, false)
    }

    /// For `dbwarden check`: ONE connection per target in total, opened by the round
    /// itself (its failure is the reported reason), with no pool and no second connection.
    pub fn open_one_shot(target: &Target) -> Result<Engine, EngineError> {
        Self::open_as(target, true)
    }

    fn open_as(target: &Target, one_shot: bool) -> Result<Engine, EngineError> {
        match target.engine {
            EngineKind::Sqlite => sqlite::SqliteEngine::open(target).map(Engine::Sqlite),
            EngineKind::Postgres => {
                postgres::PostgresEngine::open(target, one_shot).map(Engine::Postgres)
            }
            EngineKind::Mysql => mysql::MysqlEngine::open(target, one_shot).map(Engine::Mysql),
        }
    }

    /// Runs one health round. Never fails: an unreachable database is a measurement.
    ///
    /// `target` is the run's CURRENT config of the target: thresholds (enabled/disabled
    /// checks, floors) are read from it every round, never from what the engine was
    /// opened with. The connections the round uses are registered in `scope`.
    pub async fn health(
        &self,
        target: &Target,
        opts: &HealthOptions,
        scope: &RunScope,
    ) -> HealthReport {
        let round = round::Round::new(target, opts);
        match self {
            Engine::Sqlite(e) => e.health(&round, scope).await,
            Engine::Postgres(e) => e.health(&round, scope).await,
            Engine::Mysql(e) => e.health(&round, scope).await,
        }
    }

    /// Cancels only the statements of the run that `scope` belongs to, never other runs'
    /// statements on this target: PostgreSQL and MySQL stop the statements running on the
    /// scope's sessions (`pg_cancel_backend` / `KILL QUERY` from a separate connection);
    /// SQLite interrupts the statement the run's connection is stepping, and any it would
    /// start (the scope's flag, checked by a progress handler). Works after the run's
    /// future was dropped.
    pub async fn cancel(&self, scope: &RunScope) {
        scope.cancelled.store(true, Ordering::Relaxed);
        let sessions = scope.sessions();
        if sessions.is_empty() {
            return;
        }
        match self {
            Engine::Sqlite(_) => {}
            Engine::Postgres(e) => e.cancel(&sessions).await,
            Engine::Mysql(e) => e.cancel(&sessions).await,
        }
    }

    /// Closes the pool, waiting at most `within`.
    /// The engine's pool now; `None` for a one-shot engine (no pool).
    pub fn pool_stats(&self) -> Option<PoolStats> {
        match self {
            Engine::Sqlite(e) => Some(e.pool_stats()),
            Engine::Postgres(e) => e.pool_stats(),
            Engine::Mysql(e) => e.pool_stats(),
        }
    }

    pub async fn close(&self, within: Duration) {
        let fut = async {
            match self {
                Engine::Sqlite(e) => e.close().await,
                Engine::Postgres(e) => e.close().await,
                Engine::Mysql(e) => e.close().await,
            }
        };
        let _ = tokio::time::timeout(within, fut).await;
    }

    /// What requires a new engine on reload: connection settings only (URL, password
    /// source, maintenance credentials, pool, busy_timeout), not thresholds or tags. A
    /// rotated password file is picked up by the next connection without a new engine.
    pub fn settings_key(target: &Target) -> String {
        let r = &target.raw;
        format!(
            "{}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
            target.url.expose(),
            target.password,
            r.maintenance_url.as_ref().map(|u| u.expose()),
            r.maintenance_password_file,
            r.pool,
            target.busy_timeout,
            target.engine,
            target.name,
        )
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A target loaded the way the daemon loads one, its database in the returned
    /// directory (created on first use).
    pub(crate) fn sqlite_target() -> (tempfile::TempDir, Target) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("dbwarden.toml");
        let body = format!(
            "[daemon]\nhistory = \"sqlite://{0}/h.db\"\n\n\
             [[target]]\nname = \"a\"\nurl = \"sqlite://{0}/a.db?mode=rwc\"\n\n\
             [[job]]\nname = \"health\"\nkind = \"health\"\nschedule = \"@every 30s\"\n",
            dir.path().display()
        );
        std::fs::write(&path, body).unwrap_or_else(|e| panic!("{e}"));
        let config = crate::config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        match config.targets.into_iter().next() {
            Some(t) => (dir, t),
            None => panic!("no target"),
        }
    }

    #[test]
    fn settings_key_ignores_thresholds_and_tags() {
        let (_dir, a) = sqlite_target();
        let mut b = a.clone();
        b.tags.push("prod".into());
        b.thresholds.clear();
        b.raw.tags.push("prod".into());
        assert_eq!(Engine::settings_key(&a), Engine::settings_key(&b));
        b.busy_timeout = Duration::from_secs(1);
        assert_ne!(Engine::settings_key(&a), Engine::settings_key(&b));
    }

    #[test]
    fn schemes_map_to_engines() {
        assert_eq!(
            EngineKind::from_url("postgresql://h/db"),
            Some(EngineKind::Postgres)
        );
        assert_eq!(
            EngineKind::from_url("mariadb://h/db"),
            Some(EngineKind::Mysql)
        );
        assert_eq!(
            EngineKind::from_url("sqlite://./x.db"),
            Some(EngineKind::Sqlite)
        );
        assert_eq!(EngineKind::from_url("redis://h"), None);
        assert_eq!(EngineKind::from_url("nonsense"), None);
    }
}
