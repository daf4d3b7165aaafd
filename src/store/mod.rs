//! The history store: job runs, check results, metric samples and table statistics, in
//! SQLite (default) or PostgreSQL (fleets), through sqlx with embedded migrations.
//!
//! SQLite allows one writer at a time, so one writer task owns all writes: the rest of the
//! program sends [`Record`]s over a bounded channel and the writer commits them in batches
//! (up to [`BATCH_MAX`] records or [`BATCH_WINDOW`], whichever comes first), one
//! transaction per batch with multi-row inserts. Reads go through a separate pool. The
//! PostgreSQL store has the same shape.

mod write;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use sqlx::Row;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use tokio::sync::{mpsc, oneshot};

use crate::config::{Secret, SecretUrl};
use crate::engine::TableStat;
use crate::health::{CheckResult, Status};

/// Records per transaction at most.
pub const BATCH_MAX: usize = 2000;
/// How long the writer waits to fill a batch after the first record arrives.
pub const BATCH_WINDOW: Duration = Duration::from_millis(50);
/// Records that may wait in the channel before senders wait (backpressure).
const CHANNEL_CAPACITY: usize = 8192;

/// How a job run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    Running,
    Ok,
    Failed,
    TimedOut,
    Skipped,
    Interrupted,
}

impl RunOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Running => "running",
            RunOutcome::Ok => "ok",
            RunOutcome::Failed => "failed",
            RunOutcome::TimedOut => "timed_out",
            RunOutcome::Skipped => "skipped",
            RunOutcome::Interrupted => "interrupted",
        }
    }
}

/// A job run as first recorded (at start, or whole for a skipped tick).
#[derive(Debug, Clone)]
pub struct JobRun {
    pub id: String,
    pub job: String,
    pub kind: String,
    pub target: Option<String>,
    pub scheduled_at: Option<DateTime<Utc>>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub outcome: RunOutcome,
    pub status: Option<Status>,
    pub error: Option<String>,
    /// Planned fire times this run stood for beyond the first (catch-up after a suspend).
    pub coalesced: u32,
}

/// The end of a run recorded earlier with [`RunOutcome::Running`].
#[derive(Debug, Clone)]
pub struct RunEnd {
    pub id: String,
    pub finished_at: DateTime<Utc>,
    pub outcome: RunOutcome,
    pub status: Option<Status>,
    pub error: Option<String>,
}

/// Anything written to the history store.
#[derive(Debug, Clone)]
pub enum Record {
    Run(JobRun),
    RunEnd(RunEnd),
    Check {
        ts: DateTime<Utc>,
        target: String,
        run_id: Option<String>,
        result: CheckResult,
    },
    Metric {
        ts: DateTime<Utc>,
        target: String,
        metric: String,
        value: f64,
    },
    Table {
        ts: DateTime<Utc>,
        target: String,
        stat: TableStat,
    },
    /// A believed status change (after hysteresis); `check` is `None` for the target.
    Transition {
        ts: DateTime<Utc>,
        target: String,
        check: Option<String>,
        from: Status,
        to: Status,
        message: String,
    },
}

/// Store errors, with what to do about them.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("history store {url}: {message}")]
    Open { url: String, message: String },
    #[error("history store: {0}")]
    Db(String),
    #[error("history store: the writer has stopped")]
    WriterGone,
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Db(e.to_string())
    }
}

#[derive(Clone)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

// Records are moved, not boxed: one allocation less per record on the hot write path.
#[allow(clippy::large_enum_variant)]
enum Command {
    Write(Record),
    Flush(oneshot::Sender<()>),
}

/// A handle to the history store. Cheap to clone; all clones feed the same writer.
#[derive(Clone)]
pub struct Store {
    tx: mpsc::Sender<Command>,
    read: Pool,
    url: String,
}

/// A job run as read back from the store.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunRow {
    pub id: String,
    pub job: String,
    pub target: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub outcome: String,
    pub status: Option<String>,
    pub error: Option<String>,
}

/// A check result as read back from the store.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckRow {
    pub ts: DateTime<Utc>,
    pub target: String,
    pub check: String,
    pub status: String,
    pub value: Option<f64>,
    pub message: String,
}

/// This agent's name in `job_runs.agent` (several agents may share a PostgreSQL store).
pub fn agent_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "dbwarden".into())
}

/// A fresh run id: time-ordered and unique enough across agents.
pub fn new_run_id() -> String {
    format!(
        "{:012x}-{:08x}",
        Utc::now().timestamp_millis(),
        rand::random::<u32>()
    )
}

pub(crate) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn from_ms(v: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(v).single().unwrap_or_default()
}

/// The file a `sqlite://` history URL names.
fn sqlite_history_path(url: &str) -> Option<PathBuf> {
    crate::engine::sqlite::path_from_url(url).map(|u| u.path)
}

impl Store {
    /// Opens (creating a SQLite file and its directory if needed), migrates, and starts the
    /// writer task.
    pub async fn open(url: &SecretUrl, password: Option<Secret>) -> Result<Store, StoreError> {
        let (write, read) = connect(url, password).await?;
        migrate(&write)
            .await
            .map_err(|e| open_err(url, format!("migrations failed: {e}")))?;
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        tokio::spawn(write::writer(write, rx));
        Ok(Store {
            tx,
            read,
            url: url.redacted(),
        })
    }

    /// Applies migrations only (for `dbwarden migrate`). Returns the applied versions.
    pub async fn migrate_only(
        url: &SecretUrl,
        password: Option<Secret>,
    ) -> Result<Vec<i64>, StoreError> {
        let (write, _) = connect(url, password).await?;
        migrate(&write)
            .await
            .map_err(|e| open_err(url, format!("migrations failed: {e}")))?;
        let versions: Vec<i64> = match &write {
            Pool::Sqlite(p) => {
                sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
                    .fetch_all(p)
                    .await?
            }
            Pool::Postgres(p) => {
                sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
                    .fetch_all(p)
                    .await?
            }
        };
        Ok(versions)
    }

    /// The store's URL with any password hidden.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Queues a record; waits only when the writer is far behind (backpressure).
    pub async fn write(&self, r: Record) -> Result<(), StoreError> {
        self.tx
            .send(Command::Write(r))
            .await
            .map_err(|_| StoreError::WriterGone)
    }

    /// Waits until everything queued so far is committed.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Flush(tx))
            .await
            .map_err(|_| StoreError::WriterGone)?;
        rx.await.map_err(|_| StoreError::WriterGone)
    }

    /// Marks runs this agent left `running` (a crash, a kill -9) as `interrupted`.
    pub async fn close_orphaned_runs(&self, agent: &str) -> Result<u64, StoreError> {
        let now = ms(Utc::now());
        let sql_sqlite = "UPDATE job_runs SET outcome = 'interrupted', finished_at = ?, \
                          error = 'the daemon stopped before the run finished' \
                          WHERE outcome = 'running' AND agent = ?";
        let sql_pg = "UPDATE job_runs SET outcome = 'interrupted', finished_at = $1, \
                      error = 'the daemon stopped before the run finished' \
                      WHERE outcome = 'running' AND agent = $2";
        let n = match &self.read {
            Pool::Sqlite(p) => sqlx::query(sql_sqlite)
                .bind(now)
                .bind(agent)
                .execute(p)
                .await?
                .rows_affected(),
            Pool::Postgres(p) => sqlx::query(sql_pg)
                .bind(now)
                .bind(agent)
                .execute(p)
                .await?
                .rows_affected(),
        };
        Ok(n)
    }

    /// The most recent runs, newest first, optionally of one job.
    pub async fn recent_runs(
        &self,
        job: Option<&str>,
        limit: i64,
    ) -> Result<Vec<RunRow>, StoreError> {
        let rows = match &self.read {
            Pool::Sqlite(p) => {
                sqlx::query(
                    "SELECT id, job, target, started_at, finished_at, outcome, status, error FROM job_runs \
                     WHERE (?1 IS NULL OR job = ?1) ORDER BY started_at DESC, id DESC LIMIT ?2",
                )
                .bind(job)
                .bind(limit)
                .fetch_all(p)
                .await?
                .iter()
                .map(run_row_sqlite)
                .collect::<Result<Vec<_>, _>>()?
            }
            Pool::Postgres(p) => {
                sqlx::query(
                    "SELECT id, job, target, started_at, finished_at, outcome, status, error FROM job_runs \
                     WHERE ($1::text IS NULL OR job = $1) ORDER BY started_at DESC, id DESC LIMIT $2",
                )
                .bind(job)
                .bind(limit)
                .fetch_all(p)
                .await?
                .iter()
                .map(run_row_pg)
                .collect::<Result<Vec<_>, _>>()?
            }
        };
        Ok(rows)
    }

    /// The most recent check results of a target, newest first.
    pub async fn recent_checks(
        &self,
        target: &str,
        limit: i64,
    ) -> Result<Vec<CheckRow>, StoreError> {
        macro_rules! fetch {
            ($p:expr, $sql:expr) => {{
                sqlx::query($sql)
                    .bind(target)
                    .bind(limit)
                    .fetch_all($p)
                    .await?
                    .iter()
                    .map(|r| -> Result<CheckRow, sqlx::Error> {
                        Ok(CheckRow {
                            ts: from_ms(r.try_get(0)?),
                            target: r.try_get(1)?,
                            check: r.try_get(2)?,
                            status: r.try_get(3)?,
                            value: r.try_get(4)?,
                            message: r.try_get(5)?,
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?
            }};
        }
        Ok(match &self.read {
            Pool::Sqlite(p) => fetch!(
                p,
                "SELECT ts, target, check_name, status, value, message FROM check_results WHERE target = ?1 ORDER BY ts DESC, id DESC LIMIT ?2"
            ),
            Pool::Postgres(p) => fetch!(
                p,
                "SELECT ts, target, check_name, status, value, message FROM check_results WHERE target = $1 ORDER BY ts DESC, id DESC LIMIT $2"
            ),
        })
    }

    /// A target's table statistics of its latest round that stored any, by table name,
    /// with that round's time.
    pub async fn latest_table_stats(
        &self,
        target: &str,
    ) -> Result<Vec<(DateTime<Utc>, TableStat)>, StoreError> {
        macro_rules! fetch {
            ($p:expr, $sql:expr) => {{
                sqlx::query($sql)
                    .bind(target)
                    .fetch_all($p)
                    .await?
                    .iter()
                    .map(|r| -> Result<(DateTime<Utc>, TableStat), sqlx::Error> {
                        Ok((
                            from_ms(r.try_get(0)?),
                            TableStat {
                                table: r.try_get(1)?,
                                rows: r.try_get(2)?,
                                dead_rows: r.try_get(3)?,
                                size_bytes: r.try_get(4)?,
                                inserts_delta: r.try_get(5)?,
                                updates_delta: r.try_get(6)?,
                                deletes_delta: r.try_get(7)?,
                                seq_scans: r.try_get(8)?,
                                idx_scans: r.try_get(9)?,
                                last_vacuum: r.try_get(10)?,
                                last_analyze: r.try_get(11)?,
                                free_bytes: r.try_get(12)?,
                                last_modified: r.try_get(13)?,
                            },
                        ))
                    })
                    .collect::<Result<Vec<_>, _>>()?
            }};
        }
        Ok(match &self.read {
            Pool::Sqlite(p) => fetch!(
                p,
                "SELECT ts, table_name, n_rows, dead_rows, size_bytes, inserts_delta, updates_delta, deletes_delta, seq_scans, idx_scans, last_vacuum, last_analyze, free_bytes, last_modified FROM table_stats WHERE target = ?1 AND ts = (SELECT max(ts) FROM table_stats WHERE target = ?1) ORDER BY table_name"
            ),
            Pool::Postgres(p) => fetch!(
                p,
                "SELECT ts, table_name, n_rows, dead_rows, size_bytes, inserts_delta, updates_delta, deletes_delta, seq_scans, idx_scans, last_vacuum, last_analyze, free_bytes, last_modified FROM table_stats WHERE target = $1 AND ts = (SELECT max(ts) FROM table_stats WHERE target = $1) ORDER BY table_name"
            ),
        })
    }

    /// Counts rows of a history table (tests, `dbwarden status`).
    pub async fn count(&self, table: HistoryTable) -> Result<i64, StoreError> {
        let sql = format!("SELECT COUNT(*) FROM {}", table.name());
        Ok(match &self.read {
            Pool::Sqlite(p) => {
                sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .fetch_one(p)
                    .await?
            }
            Pool::Postgres(p) => {
                sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .fetch_one(p)
                    .await?
            }
        })
    }

    /// Flushes and closes the writer and the pools.
    pub async fn close(self) {
        let _ = self.flush().await;
        match &self.read {
            Pool::Sqlite(p) => p.close().await,
            Pool::Postgres(p) => p.close().await,
        }
    }
}

/// The history tables, for [`Store::count`].
#[derive(Debug, Clone, Copy)]
pub enum HistoryTable {
    JobRuns,
    CheckResults,
    MetricSamples,
    TableStats,
    HealthTransitions,
}

impl HistoryTable {
    fn name(self) -> &'static str {
        match self {
            HistoryTable::JobRuns => "job_runs",
            HistoryTable::CheckResults => "check_results",
            HistoryTable::MetricSamples => "metric_samples",
            HistoryTable::TableStats => "table_stats",
            HistoryTable::HealthTransitions => "health_transitions",
        }
    }
}

/// Decodes a `job_runs` row; the same code for both dialects' row types.
macro_rules! run_row {
    ($fn_name:ident, $row:ty) => {
        fn $fn_name(r: &$row) -> Result<RunRow, sqlx::Error> {
            Ok(RunRow {
                id: r.try_get(0)?,
                job: r.try_get(1)?,
                target: r.try_get(2)?,
                started_at: from_ms(r.try_get(3)?),
                finished_at: r.try_get::<Option<i64>, _>(4)?.map(from_ms),
                outcome: r.try_get(5)?,
                status: r.try_get(6)?,
                error: r.try_get(7)?,
            })
        }
    };
}
run_row!(run_row_sqlite, sqlx::sqlite::SqliteRow);
run_row!(run_row_pg, sqlx::postgres::PgRow);

fn open_err(url: &SecretUrl, message: String) -> StoreError {
    StoreError::Open {
        url: url.redacted(),
        message,
    }
}

async fn connect(url: &SecretUrl, password: Option<Secret>) -> Result<(Pool, Pool), StoreError> {
    let raw = url.expose();
    if raw.starts_with("sqlite:") {
        let path = sqlite_history_path(raw)
            .ok_or_else(|| open_err(url, "name a file, e.g. sqlite://./data/history.db".into()))?;
        create_parent(&path).map_err(|e| open_err(url, e))?;
        let opts = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10));
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(opts.clone())
            .await
            .map_err(|e| open_err(url, format!("cannot open {}: {e}", path.display())))?;
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .min_connections(0)
            .idle_timeout(Some(Duration::from_secs(60)))
            .connect_lazy_with(opts.read_only(false));
        Ok((Pool::Sqlite(write), Pool::Sqlite(read)))
    } else if raw.starts_with("postgres:") || raw.starts_with("postgresql:") {
        let mut opts = PgConnectOptions::from_str(raw)
            .map_err(|e| open_err(url, format!("not a valid PostgreSQL URL: {e}")))?
            .application_name("dbwarden-history");
        if let Some(p) = &password {
            opts = opts.password(p.expose());
        }
        // One direct connection first: a pool would retry a refused connection silently
        // until its acquire timeout; a direct attempt fails at once with the real reason.
        use sqlx::Connection;
        match tokio::time::timeout(
            Duration::from_secs(10),
            sqlx::PgConnection::connect_with(&opts),
        )
        .await
        {
            Ok(Ok(c)) => {
                let _ = c.close().await;
            }
            Ok(Err(e)) => return Err(open_err(url, format!("cannot connect: {e}"))),
            Err(_) => return Err(open_err(url, "cannot connect: no answer within 10s".into())),
        }
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(10))
            .connect_lazy_with(opts);
        Ok((Pool::Postgres(pool.clone()), Pool::Postgres(pool)))
    } else {
        Err(open_err(url, "use sqlite://PATH or postgres://...".into()))
    }
}

fn create_parent(path: &Path) -> Result<(), String> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() && !dir.exists() => std::fs::create_dir_all(dir)
            .map_err(|e| {
                format!(
                    "cannot create directory {}: {}",
                    dir.display(),
                    crate::config::secret::io_reason(&e)
                )
            }),
        _ => Ok(()),
    }
}

/// Applies the embedded migrations. Migrations the store has but this binary does not
/// know (applied by a newer agent of a fleet sharing the store) are tolerated: fleets
/// upgrade agents one by one, and migrations only ever add (migrations/README.md).
async fn migrate(pool: &Pool) -> Result<(), sqlx::migrate::MigrateError> {
    match pool {
        Pool::Sqlite(p) => {
            let mut m = sqlx::migrate!("./migrations/sqlite");
            m.set_ignore_missing(true);
            m.run(p).await
        }
        Pool::Postgres(p) => {
            let mut m = sqlx::migrate!("./migrations/postgres");
            m.set_ignore_missing(true);
            m.run(p).await
        }
    }
}
