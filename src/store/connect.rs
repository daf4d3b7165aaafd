//! From a history URL to connections: checking the URL (the only error `Store::start`
//! returns), the writer's own connection, migrations, and the read pool.
//!
//! The writer owns one plain connection, not a pool: after a failure it closes it, which
//! is the one sure way to release a SQLite write lock (a transaction that failed on a full
//! disk must not hold the database for other processes) and to drop a PostgreSQL socket
//! in an unknown state.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions};
use sqlx::sqlite::{
    SqliteAutoVacuum, SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions,
    SqliteSynchronous,
};

use super::{Pool, StoreError};
use crate::config::{Secret, SecretUrl};

/// One connection attempt, at most.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a SQLite statement waits for another process's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Reads give up after this; they never hang on a store that is down.
pub(super) const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the history lives, checked but not yet connected.
#[derive(Clone)]
pub(super) enum Target {
    Sqlite {
        path: PathBuf,
        opts: SqliteConnectOptions,
    },
    Postgres {
        opts: PgConnectOptions,
    },
}

/// The writer's connection.
pub(super) enum WriteConn {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
}

/// Why a store could not be made ready.
#[derive(Debug)]
pub(super) enum PrepareError {
    Connect(String),
    Migrate(String),
}

impl std::fmt::Display for PrepareError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PrepareError::Connect(m) => write!(f, "cannot connect: {m}"),
            PrepareError::Migrate(m) => write!(f, "migrations failed: {m}"),
        }
    }
}

pub(super) fn open_err(url: &SecretUrl, message: String) -> StoreError {
    StoreError::Open {
        url: url.redacted(),
        message,
    }
}

/// Checks a history URL without connecting: only a URL that can never work is an error.
pub(super) fn parse(url: &SecretUrl, password: Option<Secret>) -> Result<Target, StoreError> {
    let raw = url.expose();
    if raw.starts_with("sqlite:") {
        let path = crate::engine::sqlite::path_from_url(raw)
            .map(|u| u.path)
            .ok_or_else(|| open_err(url, "name a file, e.g. sqlite://./data/history.db".into()))?;
        let opts = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            // Before the first table of a new store (sqlx sets it at connect); an older
            // store is converted once after migrating (`incremental_vacuum`).
            .auto_vacuum(SqliteAutoVacuum::Incremental)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT);
        Ok(Target::Sqlite { path, opts })
    } else if raw.starts_with("postgres:") || raw.starts_with("postgresql:") {
        let mut opts = PgConnectOptions::from_str(raw)
            .map_err(|e| open_err(url, format!("not a valid PostgreSQL URL: {e}")))?
            .application_name("dbwarden-history");
        if let Some(p) = &password {
            opts = opts.password(p.expose());
        }
        Ok(Target::Postgres { opts })
    } else {
        Err(open_err(url, "use sqlite://PATH or postgres://...".into()))
    }
}

impl Target {
    /// Opens the writer's connection (creating a SQLite file's directory if needed).
    /// A direct connection, not a pool: a pool would retry a refused connection silently
    /// until its acquire timeout; a direct attempt fails at once with the real reason.
    pub async fn connect(&self) -> Result<WriteConn, String> {
        let attempt = async {
            match self {
                Target::Sqlite { path, opts } => {
                    create_parent(path)?;
                    SqliteConnection::connect_with(opts)
                        .await
                        .map(WriteConn::Sqlite)
                        .map_err(|e| format!("cannot open {}: {e}", path.display()))
                }
                Target::Postgres { opts } => PgConnection::connect_with(opts)
                    .await
                    .map(WriteConn::Postgres)
                    .map_err(|e| e.to_string()),
            }
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {}s", CONNECT_TIMEOUT.as_secs())),
        }
    }

    /// A lazy pool for reads (API, CLI), separate from the writer's connection.
    pub fn read_pool(&self) -> Pool {
        match self {
            Target::Sqlite { opts, .. } => Pool::Sqlite(
                SqlitePoolOptions::new()
                    .max_connections(4)
                    .min_connections(0)
                    .acquire_timeout(READ_TIMEOUT)
                    .idle_timeout(Some(Duration::from_secs(60)))
                    .connect_lazy_with(opts.clone()),
            ),
            Target::Postgres { opts } => Pool::Postgres(
                PgPoolOptions::new()
                    .max_connections(4)
                    .min_connections(0)
                    .acquire_timeout(READ_TIMEOUT)
                    .idle_timeout(Some(Duration::from_secs(60)))
                    .connect_lazy_with(opts.clone()),
            ),
        }
    }

    /// A pool that can only read (CLI readers): SQLite opened with `mode=ro` (never
    /// creating the file or its directory, never migrating or checkpointing), PostgreSQL
    /// sessions with `default_transaction_read_only=on`. Checks the schema first on a
    /// direct connection, so a missing or older store fails at once with the reason.
    pub async fn read_only_pool(&self) -> Result<Pool, String> {
        let read_only = match self {
            Target::Sqlite { path, .. } => {
                if !path.exists() {
                    return Err(format!(
                        "{} does not exist: start the daemon first (it creates the history store), or point [daemon] history at the store it writes",
                        path.display()
                    ));
                }
                // A WAL store being written (or left by a crash) has its `-wal` file: read
                // it through the WAL like any reader. Without one no process has the store
                // open (the last connection to close removes it), and a read-only reader
                // would have to create `-wal` and `-shm` (and leave them behind, as it may
                // not remove them), which it cannot in a directory it may not write:
                // open the file `immutable` then, creating nothing. A daemon starting
                // meanwhile writes to a new `-wal`, not to the file this command reads.
                let idle = !wal_file(path).exists();
                let opts = SqliteConnectOptions::new()
                    .filename(path)
                    .read_only(true)
                    .immutable(idle)
                    .create_if_missing(false)
                    .busy_timeout(BUSY_TIMEOUT);
                let attempt = async {
                    let mut c = SqliteConnection::connect_with(&opts)
                        .await
                        .map_err(|e| format!("cannot open {} read-only: {e}", path.display()))?;
                    let r = schema_check(sqlite_version(&mut c).await, false);
                    let _ = c.close().await;
                    r
                };
                bounded(attempt).await?;
                Target::Sqlite {
                    path: path.clone(),
                    opts,
                }
            }
            Target::Postgres { opts } => {
                let opts = opts
                    .clone()
                    .options([("default_transaction_read_only", "on")]);
                let attempt = async {
                    let mut c = PgConnection::connect_with(&opts)
                        .await
                        .map_err(|e| format!("cannot connect: {e}"))?;
                    let r = schema_check(pg_version(&mut c).await, true);
                    let _ = c.close().await;
                    r
                };
                bounded(attempt).await?;
                Target::Postgres { opts }
            }
        };
        Ok(read_only.read_pool())
    }

    /// Connects and migrates: a store ready for writing and reading. Migrations run
    /// through the read pool (a pool is what sqlx's migrator takes in a spawned task).
    pub async fn prepare(&self) -> Result<(WriteConn, Pool), PrepareError> {
        let mut conn = self.connect().await.map_err(PrepareError::Connect)?;
        let read = self.read_pool();
        if let Err(e) = read.migrate().await {
            conn.close().await;
            read.close().await;
            return Err(PrepareError::Migrate(e.to_string()));
        }
        if let (WriteConn::Sqlite(c), Target::Sqlite { path, .. }) = (&mut conn, self) {
            make_incremental(c, path).await;
        }
        Ok((conn, read))
    }
}

impl Pool {
    /// Applies the embedded migrations. Migrations the store has but this binary does not
    /// know (applied by a newer agent of a fleet sharing the store) are tolerated: fleets
    /// upgrade agents one by one, and migrations only ever add (migrations/README.md).
    pub async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
        match self {
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

    /// The applied migration versions.
    pub async fn versions(&self) -> Result<Vec<i64>, sqlx::Error> {
        const SQL: &str = "SELECT version FROM _sqlx_migrations ORDER BY version";
        match self {
            Pool::Sqlite(p) => sqlx::query_scalar(SQL).fetch_all(p).await,
            Pool::Postgres(p) => sqlx::query_scalar(SQL).fetch_all(p).await,
        }
    }
}

impl WriteConn {
    /// Closes the connection, releasing every lock it held; bounded, since the store may
    /// be gone (then dropping the socket is all there is to do).
    pub async fn close(self) {
        let closing = async {
            match self {
                WriteConn::Sqlite(c) => {
                    let _ = c.close().await;
                }
                WriteConn::Postgres(c) => {
                    let _ = c.close().await;
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), closing).await;
    }
}

/// Converts a SQLite store created without `auto_vacuum = INCREMENTAL` (before 0008) once,
/// with a VACUUM, so store maintenance can give free pages back with
/// `PRAGMA incremental_vacuum`. A failure (e.g. no room for the copy VACUUM makes) is
/// logged and retried at the next start; the store works either way.
async fn make_incremental(c: &mut SqliteConnection, path: &Path) {
    const INCREMENTAL: i64 = 2;
    async fn size(c: &mut SqliteConnection) -> Result<i64, sqlx::Error> {
        let pages: i64 = sqlx::query_scalar("PRAGMA page_count")
            .fetch_one(&mut *c)
            .await?;
        let page: i64 = sqlx::query_scalar("PRAGMA page_size")
            .fetch_one(&mut *c)
            .await?;
        Ok(pages * page)
    }
    let mode: Result<i64, _> = sqlx::query_scalar("PRAGMA auto_vacuum")
        .fetch_one(&mut *c)
        .await;
    if !matches!(mode, Ok(m) if m != INCREMENTAL) {
        return;
    }
    let before = size(c).await.unwrap_or(0);
    tracing::info!(
        history = %path.display(),
        bytes = before,
        "converting the history store to incremental vacuum (once; a VACUUM rewrites the file and needs as much free disk space as it is large)"
    );
    let started = std::time::Instant::now();
    let done = async {
        sqlx::query("PRAGMA auto_vacuum = INCREMENTAL")
            .execute(&mut *c)
            .await?;
        sqlx::query("VACUUM").execute(&mut *c).await?;
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&mut *c)
            .await?;
        size(c).await
    }
    .await;
    match done {
        Ok(after) => tracing::info!(
            history = %path.display(),
            before,
            after,
            seconds = started.elapsed().as_secs_f64(),
            "history store converted to incremental vacuum: {before} bytes before, {after} after"
        ),
        Err(e) => tracing::warn!(
            history = %path.display(),
            error = %e,
            "could not convert the history store to incremental vacuum; it works as before and the next start tries again"
        ),
    }
}

/// The newest migration applied to a store (None: no migration table, a store never
/// migrated).
const SCHEMA_SQL: &str = "SELECT MAX(version) FROM _sqlx_migrations WHERE success";

async fn sqlite_version(c: &mut SqliteConnection) -> Result<Option<i64>, sqlx::Error> {
    let exists: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
    )
    .fetch_one(&mut *c)
    .await?;
    if exists == 0 {
        return Ok(None);
    }
    sqlx::query_scalar(SCHEMA_SQL).fetch_one(&mut *c).await
}

async fn pg_version(c: &mut PgConnection) -> Result<Option<i64>, sqlx::Error> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(&mut *c)
        .await?;
    if !exists {
        return Ok(None);
    }
    sqlx::query_scalar(SCHEMA_SQL).fetch_one(&mut *c).await
}

/// The newest migration this binary embeds for a dialect.
fn schema_needed(postgres: bool) -> i64 {
    let m = if postgres {
        sqlx::migrate!("./migrations/postgres")
    } else {
        sqlx::migrate!("./migrations/sqlite")
    };
    m.iter().map(|m| m.version).max().unwrap_or(0)
}

fn schema_check(found: Result<Option<i64>, sqlx::Error>, postgres: bool) -> Result<(), String> {
    let found = found.map_err(|e| format!("cannot read its schema version: {e}"))?;
    schema_verdict(found, schema_needed(postgres))
}

/// Whether a reader of schema `needed` can read a store at `found`: an older store cannot
/// (its tables lack what this binary queries); a newer one can (migrations only add, and a
/// newer agent of a fleet may have upgraded it).
pub(super) fn schema_verdict(found: Option<i64>, needed: i64) -> Result<(), String> {
    const UPGRADE: &str = "start the daemon once (or run `dbwarden migrate`) to upgrade it";
    match found {
        None => Err(format!(
            "the history store has no schema yet, this dbwarden needs schema {needed}: {UPGRADE}"
        )),
        Some(n) if n < needed => Err(format!(
            "the history store is at schema {n}, this dbwarden needs {needed}: {UPGRADE}"
        )),
        Some(_) => Ok(()),
    }
}

async fn bounded(
    attempt: impl std::future::Future<Output = Result<(), String>>,
) -> Result<(), String> {
    match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {}s", CONNECT_TIMEOUT.as_secs())),
    }
}

/// A SQLite database's write-ahead log file.
fn wal_file(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push("-wal");
    PathBuf::from(name)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_needs_a_store_at_least_at_its_schema() {
        assert_eq!(schema_verdict(Some(10), 10), Ok(()));
        // A newer agent of the fleet migrated it: readable (migrations only add).
        assert_eq!(schema_verdict(Some(11), 10), Ok(()));
        let older = schema_verdict(Some(9), 10).err().unwrap_or_default();
        assert!(
            older.starts_with(
                "the history store is at schema 9, this dbwarden needs 10: start the daemon once"
            ),
            "{older}"
        );
        let none = schema_verdict(None, 10).err().unwrap_or_default();
        assert!(none.contains("no schema yet"), "{none}");
        assert!(none.contains("`dbwarden migrate`"), "{none}");
    }

    #[test]
    fn both_dialects_embed_a_latest_schema() {
        assert!(schema_needed(false) >= 10);
        assert_eq!(schema_needed(false), schema_needed(true));
    }

    #[test]
    fn the_wal_file_is_named_after_the_database() {
        assert_eq!(
            wal_file(Path::new("./data/history.db")),
            PathBuf::from("./data/history.db-wal")
        );
    }
}
