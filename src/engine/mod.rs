//! Engines: the only place with engine-specific SQL. Each engine opens a target's small pool
//! and returns typed [`Measurement`]s; everything above this module speaks in those.
//!
//! An [`Engine`] is created without I/O (pools connect lazily) and kept across rounds so
//! connections are reused; reload replaces only the engines whose target changed.

pub mod mysql;
pub mod postgres;
pub mod redact;
pub mod sqlite;

use std::collections::BTreeMap;
use std::time::Duration;

use crate::config::Target;
use crate::health::Measurement;

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
    /// Per-table statistics of this round (for the statistics API and trends).
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
/// them; `*_delta` fields are the change since the previous round (None on the first).
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

/// Per-round options that come from the job and the other targets rather than the target.
#[derive(Debug, Clone, Default)]
pub struct HealthOptions {
    /// SQLite: the thorough `integrity_check` instead of `quick_check`.
    pub integrity_check: bool,
    /// Server-level checks (connections, replication, wraparound of every database, the
    /// processlist) that other targets of the same server measure: skip their probes.
    pub server_checks_by: Option<ServerOwners>,
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

/// The server-level checks among `measurements` this target really measured: not
/// UNKNOWN and not left to another target (per `opts`). What
/// [`HealthReport::server_checks`] lists.
pub fn measured_server_checks(
    measurements: &[Measurement],
    opts: &HealthOptions,
) -> Vec<&'static str> {
    measurements
        .iter()
        .filter(|m| match &m.scope {
            crate::health::Scope::Server(id) => opts.owner_of(id, m.check).is_none(),
            crate::health::Scope::Database => false,
        })
        .filter(|m| !matches!(m.outcome, crate::health::Outcome::Unknown { .. }))
        .map(|m| m.check)
        .collect()
}

/// The stand-in for a server-level check that another target measures this round.
pub fn measured_elsewhere(check: &'static str, server_id: &str, owner: &str) -> Measurement {
    Measurement::verdict(
        check,
        crate::health::Status::Ok,
        None,
        format!("server-level check, measured by target {owner}"),
    )
    .with_scope(crate::health::Scope::Server(server_id.to_string()))
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
    /// Prepares the engine for a target; no connection is made yet.
    pub fn open(target: &Target) -> Result<Engine, EngineError> {
        match target.engine {
            EngineKind::Sqlite => sqlite::SqliteEngine::open(target).map(Engine::Sqlite),
            EngineKind::Postgres => postgres::PostgresEngine::open(target).map(Engine::Postgres),
            EngineKind::Mysql => mysql::MysqlEngine::open(target).map(Engine::Mysql),
        }
    }

    /// Runs one health round. Never fails: an unreachable database is a measurement.
    pub async fn health(&self, opts: &HealthOptions) -> HealthReport {
        match self {
            Engine::Sqlite(e) => e.health(opts).await,
            Engine::Postgres(e) => e.health(opts).await,
            Engine::Mysql(e) => e.health(opts).await,
        }
    }

    /// Stops statements this engine is running on the server (shutdown, timeouts).
    pub async fn cancel_running(&self) {
        match self {
            Engine::Sqlite(e) => e.cancel_running().await,
            Engine::Postgres(e) => e.cancel_running().await,
            Engine::Mysql(e) => e.cancel_running().await,
        }
    }

    /// Closes the pool, waiting at most `within`.
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
}

/// Measurements for a target that could not be reached: connectivity is CRITICAL, every
/// other check of the engine is UNKNOWN because it could not run.
pub fn unreachable(message: &str, other_checks: &[&'static str]) -> Vec<Measurement> {
    let mut out = vec![Measurement::verdict(
        "connectivity",
        crate::health::Status::Critical,
        None,
        message.to_string(),
    )];
    out.extend(
        other_checks
            .iter()
            .map(|c| Measurement::unknown(c, "not measured: the database is unreachable", None)),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
