//! SQLite engine: latency, `quick_check`/`integrity_check`, freelist, WAL, file size and
//! journal mode. A target file that does not exist is CRITICAL "file not found": dbwarden
//! never creates a database it was asked to watch unless the URL says `mode=rwc`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};

use super::{EngineError, HealthOptions, HealthReport, unreachable};
use crate::config::Target;
use crate::health::{Measurement, Observation, Status};

/// The checks this engine reports besides connectivity.
const CHECKS: &[&str] = &[
    "sqlite_quick_check",
    "sqlite_freelist",
    "sqlite_wal_size",
    "sqlite_file_size",
    "sqlite_journal_mode",
];

/// Parsed form of a `sqlite://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteUrl {
    pub path: PathBuf,
    /// `mode=rwc`: the URL explicitly asks for the file to be created.
    pub create: bool,
    /// `mode=ro`.
    pub read_only: bool,
}

/// `sqlite://./data/x.db`, `sqlite:///abs/x.db`, `sqlite:x.db`, with `?mode=rwc|rw|ro`.
/// `None` for in-memory databases, which cannot be watched.
pub fn path_from_url(url: &str) -> Option<SqliteUrl> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() || path == ":memory:" || path.contains("mode=memory") {
        return None;
    }
    let mode = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("mode="))
        .unwrap_or("rw");
    if mode == "memory" {
        return None;
    }
    Some(SqliteUrl {
        path: PathBuf::from(path),
        create: mode == "rwc",
        read_only: mode == "ro",
    })
}

pub struct SqliteEngine {
    target: String,
    url: SqliteUrl,
    integrity_check: bool,
    pool: SqlitePool,
}

impl SqliteEngine {
    pub fn open(target: &Target) -> Result<Self, EngineError> {
        let url = path_from_url(target.url.expose()).ok_or_else(|| EngineError::Setup {
            target: target.name.clone(),
            message: "not a file-backed sqlite:// URL".into(),
        })?;
        let options = SqliteConnectOptions::new()
            .filename(&url.path)
            .create_if_missing(url.create)
            .read_only(url.read_only)
            .busy_timeout(target.busy_timeout);
        let pool = SqlitePoolOptions::new()
            .max_connections(target.pool.max_connections)
            .min_connections(0)
            .acquire_timeout(target.pool.acquire_timeout)
            .idle_timeout(Some(target.pool.idle_timeout))
            .max_lifetime(Some(target.pool.max_lifetime))
            .test_before_acquire(target.pool.test_before_acquire)
            .connect_lazy_with(options);
        Ok(SqliteEngine {
            target: target.name.clone(),
            url,
            integrity_check: target.integrity_check,
            pool,
        })
    }

    pub async fn health(&self, opts: &HealthOptions) -> HealthReport {
        let path = &self.url.path;
        if !self.url.create && !path.exists() {
            return HealthReport {
                measurements: unreachable(
                    &format!(
                        "file not found: {} (dbwarden never creates a watched database; fix the path)",
                        path.display()
                    ),
                    CHECKS,
                ),
                server_id: None,
                server_checks: Vec::new(),
                table_stats: Vec::new(),
            };
        }
        match self
            .probe(path, opts.integrity_check || self.integrity_check)
            .await
        {
            Ok(m) => HealthReport {
                measurements: m,
                server_id: None,
                server_checks: Vec::new(),
                table_stats: Vec::new(),
            },
            Err(e) => {
                tracing::debug!(target_name = %self.target, error = %e, "sqlite probe failed");
                HealthReport {
                    measurements: unreachable(&describe(&e, path), CHECKS),
                    server_id: None,
                    server_checks: Vec::new(),
                    table_stats: Vec::new(),
                }
            }
        }
    }

    async fn probe(&self, path: &Path, integrity: bool) -> Result<Vec<Measurement>, sqlx::Error> {
        let started = Instant::now();
        let mut conn = self.pool.acquire().await?;
        // Reading the page count touches the file (a shared lock), so the latency includes
        // waiting for a writer that holds the database: what an application would feel.
        let page_count: i64 = sqlx::query_scalar("PRAGMA page_count")
            .fetch_one(&mut *conn)
            .await?;
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        let mut out = vec![Measurement::value(
            "connectivity",
            Observation::new(latency_ms),
        )];

        let pragma = if integrity {
            "PRAGMA integrity_check(20)"
        } else {
            "PRAGMA quick_check(20)"
        };
        let rows: Vec<String> = sqlx::query_scalar(pragma).fetch_all(&mut *conn).await?;
        let name = if integrity {
            "integrity_check"
        } else {
            "quick_check"
        };
        if rows.len() == 1 && rows[0] == "ok" {
            out.push(Measurement::verdict(
                "sqlite_quick_check",
                Status::Ok,
                Some(0.0),
                format!("{name}: ok"),
            ));
        } else {
            let shown: Vec<&str> = rows.iter().take(3).map(String::as_str).collect();
            out.push(Measurement::verdict(
                "sqlite_quick_check",
                Status::Critical,
                Some(rows.len() as f64),
                format!(
                    "{name} found {}{} problem(s): {}; restore from backup or run .recover",
                    rows.len(),
                    if rows.len() >= 20 { "+" } else { "" },
                    shown.join("; ")
                ),
            ));
        }

        let row = sqlx::query(
            "SELECT (SELECT page_size FROM pragma_page_size()), \
                    (SELECT freelist_count FROM pragma_freelist_count()), \
                    (SELECT journal_mode FROM pragma_journal_mode())",
        )
        .fetch_one(&mut *conn)
        .await?;
        let page_size: i64 = row.try_get(0)?;
        let freelist: i64 = row.try_get(1)?;
        let journal_mode: String = row.try_get(2)?;
        let file_size = (page_count * page_size) as f64;
        let freelist_pct = if page_count > 0 {
            freelist as f64 * 100.0 / page_count as f64
        } else {
            0.0
        };
        out.push(Measurement::value(
            "sqlite_freelist",
            Observation::new(freelist_pct)
                .floor(file_size)
                .detail(format!("{freelist} of {page_count} pages")),
        ));
        let mut wal_path = path.as_os_str().to_owned();
        wal_path.push("-wal");
        let wal = std::fs::metadata(&wal_path).map(|m| m.len()).unwrap_or(0);
        out.push(Measurement::value(
            "sqlite_wal_size",
            Observation::new(wal as f64),
        ));
        out.push(Measurement::value(
            "sqlite_file_size",
            Observation::new(file_size),
        ));
        out.push(Measurement::verdict(
            "sqlite_journal_mode",
            Status::Ok,
            None,
            format!("journal_mode={journal_mode}"),
        ));
        conn.close_on_drop();
        drop(conn);
        Ok(out)
    }

    /// SQLite statements run in this process; at shutdown the pool is closed and the
    /// process exits, which ends them. Nothing runs on a server to cancel.
    pub async fn cancel_running(&self) {}

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// A one-line reason for a failed probe, with what to do about it.
fn describe(e: &sqlx::Error, path: &Path) -> String {
    let text = e.to_string();
    if text.contains("database is locked") || text.contains("busy") {
        format!(
            "{}: database is locked by another connection for longer than busy_timeout",
            path.display()
        )
    } else if matches!(e, sqlx::Error::PoolTimedOut) {
        format!(
            "{}: no connection within acquire_timeout (a previous probe is still waiting on a lock?)",
            path.display()
        )
    } else if text.contains("unable to open") {
        format!(
            "{}: cannot open the file (check permissions of the file and its directory)",
            path.display()
        )
    } else if text.contains("not a database") || text.contains("malformed") {
        format!(
            "{}: {text}; the file is not a healthy SQLite database",
            path.display()
        )
    } else {
        format!("{}: {text}", path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sqlite_urls() {
        assert_eq!(
            path_from_url("sqlite://./data/demo.db?mode=rwc"),
            Some(SqliteUrl {
                path: "./data/demo.db".into(),
                create: true,
                read_only: false
            })
        );
        assert_eq!(
            path_from_url("sqlite:///var/lib/app.db").map(|u| u.path),
            Some(PathBuf::from("/var/lib/app.db"))
        );
        assert_eq!(
            path_from_url("sqlite:app.db").map(|u| u.path),
            Some(PathBuf::from("app.db"))
        );
        assert!(path_from_url("sqlite::memory:").is_none());
        assert!(path_from_url("sqlite://x.db?mode=memory").is_none());
        assert!(path_from_url("postgres://x").is_none());
    }
}
