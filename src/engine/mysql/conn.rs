//! Connections to a MySQL/MariaDB target: options from the URL, a small lazy pool whose
//! connections get short session timeouts, fail-fast acquisition with readable errors, and
//! a separate connection for `KILL QUERY`.

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlDatabaseError, MySqlPool, MySqlRow};
use sqlx::{AssertSqlSafe, ColumnIndex, ConnectOptions, Connection, MySql, Row};

use crate::config::{Secret, Target};
use crate::engine::conn::{Conn, Failure, Lease, Pooled, connect_direct, pool_options};

/// Reads the target's password as it is now (file or environment; `None`: none or inline).
type PasswordFn = Box<dyn Fn() -> Result<Option<Secret>, String> + Send + Sync>;

/// Longest a probe statement may run (MariaDB `max_statement_time`, MySQL
/// `max_execution_time`, which covers SELECTs only).
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a probe waits for a metadata or row lock (`lock_wait_timeout`,
/// `innodb_lock_wait_timeout`); information_schema.TABLES can wait on a table's metadata
/// lock while DDL holds it.
pub const LOCK_TIMEOUT_SECS: u64 = 2;
/// MySQL 8 caches table statistics for information_schema.TABLES this long (seconds)
/// instead of opening every table each time (`information_schema_stats_expiry`, 24 h by
/// default). dbwarden reads TABLES every 5 minutes; the same expiry keeps sizes, rows and
/// update times that recent without opening the tables more often than that.
pub const STATS_EXPIRY_SECS: u64 = 300;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    MySql,
    MariaDb,
}

/// The server product and version, from `VERSION()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerVersion {
    pub flavor: Flavor,
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl ServerVersion {
    /// `10.11.19-MariaDB-0+deb12u1`, `5.5.5-10.4.32-MariaDB` (old replication-compatible
    /// prefix), `8.0.36-0ubuntu0.22.04.1`, `8.4.0`.
    pub fn parse(version: &str) -> ServerVersion {
        let flavor = if version.to_ascii_lowercase().contains("mariadb") {
            Flavor::MariaDb
        } else {
            Flavor::MySql
        };
        let v = match flavor {
            Flavor::MariaDb => version.strip_prefix("5.5.5-").unwrap_or(version),
            Flavor::MySql => version,
        };
        let numeric: &str = v
            .split(|c: char| !(c.is_ascii_digit() || c == '.'))
            .next()
            .unwrap_or("");
        let mut parts = numeric.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        ServerVersion {
            flavor,
            major: parts.next().unwrap_or(0),
            minor: parts.next().unwrap_or(0),
            patch: parts.next().unwrap_or(0),
        }
    }

    pub fn at_least(&self, major: u32, minor: u32, patch: u32) -> bool {
        (self.major, self.minor, self.patch) >= (major, minor, patch)
    }

    pub fn is_mariadb(&self) -> bool {
        self.flavor == Flavor::MariaDb
    }
}

/// The `SET SESSION` statement that keeps probes from hanging: a statement time limit and
/// short lock waits. Only variables the server has (all values are numbers we chose).
pub fn session_settings(v: &ServerVersion) -> String {
    let mut parts = Vec::new();
    match v.flavor {
        // max_statement_time: MariaDB 10.1+, seconds (fractional allowed).
        Flavor::MariaDb if v.at_least(10, 1, 0) => parts.push(format!(
            "max_statement_time = {}",
            STATEMENT_TIMEOUT.as_secs()
        )),
        // max_execution_time: MySQL 5.7.8+, milliseconds, SELECT only.
        Flavor::MySql if v.at_least(5, 7, 8) => parts.push(format!(
            "max_execution_time = {}",
            STATEMENT_TIMEOUT.as_millis()
        )),
        _ => {}
    }
    parts.push(format!("lock_wait_timeout = {LOCK_TIMEOUT_SECS}"));
    parts.push(format!("innodb_lock_wait_timeout = {LOCK_TIMEOUT_SECS}"));
    if v.flavor == Flavor::MySql && v.at_least(8, 0, 0) {
        parts.push(format!(
            "information_schema_stats_expiry = {STATS_EXPIRY_SECS}"
        ));
    }
    format!("/* dbwarden */ SET SESSION {}", parts.join(", "))
}

/// A column as text (the text protocol sends every value as text; this also reads
/// columns whose type differs between MySQL and MariaDB). Invalid UTF-8 is replaced.
pub fn text<I: ColumnIndex<MySqlRow>>(
    row: &MySqlRow,
    index: I,
) -> Result<Option<String>, sqlx::Error> {
    let v: Option<Vec<u8>> = row.try_get_unchecked(index)?;
    Ok(v.map(|b| String::from_utf8_lossy(&b).into_owned()))
}

/// A numeric column; NULL or non-numeric text is `None`.
pub fn number<I: ColumnIndex<MySqlRow>>(
    row: &MySqlRow,
    index: I,
) -> Result<Option<f64>, sqlx::Error> {
    Ok(text(row, index)?.and_then(|s| s.trim().parse::<f64>().ok()))
}

/// The server error number of a database error.
pub fn error_number(e: &sqlx::Error) -> Option<u16> {
    match e {
        sqlx::Error::Database(db) => db
            .try_downcast_ref::<MySqlDatabaseError>()
            .map(|m| m.number()),
        _ => None,
    }
}

/// The server's error message of a database error, else the error's text.
pub fn error_message(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => db.message().to_string(),
        other => other.to_string(),
    }
}

/// Error numbers meaning "you lack a privilege" (specific, table, database access denied).
pub fn is_access_denied(e: &sqlx::Error) -> bool {
    matches!(error_number(e), Some(1227 | 1142 | 1044 | 1143 | 1370))
}

/// The connection itself is gone (server restart, `wait_timeout`, `KILL`), not the
/// statement: another connection will do.
pub fn connection_lost(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::Tls(_) => true,
        // 1053 server shutdown, 1927 connection killed (MariaDB), 4031 disconnected for
        // inactivity (MySQL 8).
        _ => matches!(error_number(e), Some(1053 | 1927 | 4031)),
    }
}

/// Error numbers meaning the probe ran into its own time limits (or was cancelled).
pub fn is_timeout(e: &sqlx::Error) -> bool {
    // 1969 MariaDB max_statement_time, 3024 MySQL max_execution_time, 1205 lock wait,
    // 1317 query interrupted (KILL QUERY).
    matches!(error_number(e), Some(1969 | 3024 | 1205 | 1317))
}

pub struct Connector {
    target: String,
    base: MySqlConnectOptions,
    password: PasswordFn,
    /// The password the pool connects with now; a rotated password file is picked up by
    /// the next new connection.
    current_password: Mutex<Option<Secret>>,
    /// `None` for a one-shot engine: each round opens one direct connection.
    pub pool: Option<MySqlPool>,
    /// A pooled connection was found dead: the next acquisition checks the server first.
    suspect: AtomicBool,
    /// Callers waiting for a connection of the pool.
    pub waiting: crate::engine::conn::Waiting,
    connect_timeout: Duration,
    acquire_timeout: Duration,
    /// Version of the server, learned by every new connection (after_connect).
    pub version: Arc<Mutex<Option<ServerVersion>>>,
    /// `host:port` or the socket path, for messages.
    pub place: String,
    pub user: String,
}

impl Connector {
    /// Parses the URL and prepares the lazy pool; no I/O.
    pub fn new(target: &Target, one_shot: bool) -> Result<Connector, String> {
        let raw = target.url.expose();
        let parsed = url::Url::parse(raw)
            .map_err(|e| format!("\"{}\" is not a valid URL: {e}", target.url.redacted()))?;
        let base = MySqlConnectOptions::from_str(parsed.as_str())
            .map_err(|e| format!("\"{}\": {e}", target.url.redacted()))?;
        let place = match base.get_socket() {
            Some(s) => s.display().to_string(),
            None => format!("{}:{}", base.get_host(), base.get_port()),
        };
        let user = base.get_username().to_string();
        let version: Arc<Mutex<Option<ServerVersion>>> = Arc::new(Mutex::new(None));
        let seen = version.clone();
        let pool = (!one_shot).then(|| {
            pool_options::<MySql>(target)
                .after_connect(move |conn, _meta| {
                    let seen = seen.clone();
                    Box::pin(async move { init_session(conn, &seen).await })
                })
                .connect_lazy_with(base.clone())
        });
        Ok(Connector {
            target: target.name.clone(),
            base,
            password: {
                let source = target.password.clone();
                Box::new(move || source.resolve())
            },
            current_password: Mutex::new(None),
            pool,
            suspect: AtomicBool::new(false),
            waiting: Default::default(),
            connect_timeout: target.pool.connect_timeout,
            acquire_timeout: target.pool.acquire_timeout,
            version,
            place,
            user,
        })
    }

    /// Connect options with the password as it is now (file or environment re-read).
    fn options(&self) -> Result<MySqlConnectOptions, String> {
        match (self.password)() {
            Err(e) => Err(format!("cannot read the password for {}: {e}", self.target)),
            Ok(None) => Ok(self.base.clone()),
            Ok(Some(secret)) => {
                let opts = self.base.clone().password(secret.expose());
                let mut current = self
                    .current_password
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                if current.as_ref() != Some(&secret)
                    && let Some(pool) = &self.pool
                {
                    pool.set_connect_options(opts.clone());
                    *current = Some(secret);
                }
                Ok(opts)
            }
        }
    }

    /// The round's connection, or a one-line reason why none could be had: from the pool
    /// (see [`Pooled::acquire`]: a refused or denied connection is told at once), or, for
    /// a one-shot engine, one direct connection with the pool's session settings.
    pub async fn acquire(&self) -> Result<Lease<MySql>, String> {
        let opts = self.options()?;
        let Some(pool) = &self.pool else {
            let mut c = connect_direct::<MySql>(&opts, self.connect_timeout)
                .await
                .map_err(|f| self.failure(f))?;
            init_session(&mut c, &self.version)
                .await
                .map_err(|e| self.describe(&e))?;
            return Ok(Lease::new(Conn::Direct(c)));
        };
        Pooled {
            pool,
            options: &opts,
            connect_timeout: self.connect_timeout,
            acquire_timeout: self.acquire_timeout,
            suspect: &self.suspect,
            waiting: &self.waiting,
        }
        .lease()
        .await
        .map_err(|f| self.failure(f))
    }

    /// A pooled connection was found closed by the server: the next acquisition tries one
    /// direct connection first (a server that is down is reported at once).
    pub fn lost_connection(&self) {
        self.suspect.store(true, Ordering::Relaxed);
    }

    fn failure(&self, f: Failure) -> String {
        match f {
            Failure::TimedOut => self.timed_out(),
            Failure::Error(e) => self.describe(&e),
            Failure::PoolBusy => format!(
                "{}: no pooled connection within {} (the pool's connections are busy or their setup fails)",
                self.place,
                humantime::format_duration(self.connect_timeout.max(self.acquire_timeout))
            ),
        }
    }

    /// The pool's size limit (1 for a one-shot engine).
    pub fn max_connections(&self) -> u32 {
        self.pool
            .as_ref()
            .map_or(1, |p| p.options().get_max_connections())
    }

    fn timed_out(&self) -> String {
        format!(
            "no answer from {} within {} (host down, firewall, or wrong port?)",
            self.place,
            humantime::format_duration(self.connect_timeout)
        )
    }

    /// A connection error as one line an operator can act on. Never contains the URL.
    pub fn describe(&self, e: &sqlx::Error) -> String {
        let place = &self.place;
        match e {
            sqlx::Error::Io(io) => match io.kind() {
                std::io::ErrorKind::ConnectionRefused => {
                    format!("connection refused at {place} — is the server running?")
                }
                std::io::ErrorKind::TimedOut => self.timed_out(),
                std::io::ErrorKind::NotFound if place.starts_with('/') => {
                    format!("socket {place} does not exist — is the server running?")
                }
                std::io::ErrorKind::PermissionDenied => {
                    format!("permission denied opening {place}")
                }
                _ => format!("cannot reach {place}: {io}"),
            },
            sqlx::Error::Tls(t) => format!("TLS with {place} failed: {t}"),
            sqlx::Error::Database(_) => {
                let msg = error_message(e);
                match error_number(e) {
                    Some(1045) => {
                        let using = msg
                            .find("(using password")
                            .map(|i| format!(" {}", &msg[i..]))
                            .unwrap_or_default();
                        format!(
                            "access denied for user '{}' at {place}{using} — check the password (password_file / password_env) and the hosts the account may connect from",
                            self.user
                        )
                    }
                    Some(1044) => format!("access denied to the database at {place}: {msg}"),
                    Some(1049) => format!(
                        "{msg} at {place} (dbwarden never creates a watched database; fix the URL)"
                    ),
                    Some(1040) => format!(
                        "too many connections at {place}: max_connections is used up, so new connections are refused"
                    ),
                    Some(1129) => {
                        format!("{msg} (run FLUSH HOSTS, or mysqladmin flush-hosts, on {place})")
                    }
                    Some(1130) => format!("{msg} (the account may not connect from this host)"),
                    Some(n) => format!("{place}: error {n}: {msg}"),
                    None => format!("{place}: {msg}"),
                }
            }
            sqlx::Error::PoolTimedOut => format!(
                "no connection to {place} within {}",
                humantime::format_duration(self.acquire_timeout)
            ),
            sqlx::Error::PoolClosed => format!("{place}: the engine was closed"),
            other => format!("{place}: {other}"),
        }
    }

    /// Sends `KILL QUERY` for each id over a fresh connection (the pool's may all be busy
    /// with the very statements to stop). Stops only statements, never connections.
    pub async fn kill_queries(&self, ids: &[u64]) {
        if ids.is_empty() {
            return;
        }
        let opts = match self.options() {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(target_name = %self.target, error = %e, "mysql: cannot cancel running probes");
                return;
            }
        };
        let mut conn = match tokio::time::timeout(self.connect_timeout, opts.connect()).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                tracing::warn!(target_name = %self.target, error = %self.describe(&e), "mysql: cannot cancel running probes");
                return;
            }
            Err(_) => {
                tracing::warn!(target_name = %self.target, error = %self.timed_out(), "mysql: cannot cancel running probes");
                return;
            }
        };
        for id in ids {
            let sql = format!("/* dbwarden */ KILL QUERY {id}");
            match tokio::time::timeout(
                self.connect_timeout,
                sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut conn),
            )
            .await
            {
                Ok(Ok(_)) => {
                    tracing::info!(target_name = %self.target, connection_id = id, "mysql: cancelled a running probe")
                }
                // 1094: unknown thread id: it finished meanwhile.
                Ok(Err(e)) if error_number(&e) == Some(1094) => {}
                Ok(Err(e)) => {
                    tracing::warn!(target_name = %self.target, connection_id = id, error = %error_message(&e), "mysql: KILL QUERY failed")
                }
                Err(_) => {
                    tracing::warn!(target_name = %self.target, connection_id = id, "mysql: KILL QUERY timed out")
                }
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), conn.close()).await;
    }
}

/// Learns the server's version and sets the session's time limits (every new connection,
/// pooled or direct). Failing to set a timeout must not make the connection unusable
/// (sqlx would retry the connect in a loop): logged, and the connection is used anyway.
async fn init_session(
    conn: &mut MySqlConnection,
    seen: &Mutex<Option<ServerVersion>>,
) -> Result<(), sqlx::Error> {
    let row = sqlx::raw_sql("/* dbwarden */ SELECT CONNECTION_ID(), VERSION()")
        .fetch_one(&mut *conn)
        .await?;
    let id = text(&row, 0)?.unwrap_or_default();
    let version_text = text(&row, 1)?.unwrap_or_default();
    let v = ServerVersion::parse(&version_text);
    *seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(v);
    if let Err(e) = sqlx::raw_sql(AssertSqlSafe(session_settings(&v)))
        .execute(&mut *conn)
        .await
    {
        tracing::warn!(error = %e, "mysql: could not set probe session timeouts");
    }
    tracing::debug!(connection_id = %id, server = %version_text, "mysql probe connection opened");
    Ok(())
}

/// Reads a row's columns by the first name it has (MySQL 8.0.22+ renamed `Slave_*` and
/// `Master_*` columns to `Replica_*` and `Source_*`; MariaDB keeps the old names).
pub fn text_by_names(row: &MySqlRow, names: &[&str]) -> Option<String> {
    names.iter().find_map(|n| match row.try_get_raw(*n) {
        Ok(_) => text(row, *n).ok().flatten(),
        Err(_) => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_for_both_products() {
        let v = ServerVersion::parse("10.11.19-MariaDB-0+deb12u1");
        assert_eq!(
            (v.flavor, v.major, v.minor, v.patch),
            (Flavor::MariaDb, 10, 11, 19)
        );
        let v = ServerVersion::parse("5.5.5-10.4.32-MariaDB-log");
        assert_eq!((v.flavor, v.major, v.minor), (Flavor::MariaDb, 10, 4));
        let v = ServerVersion::parse("8.0.36-0ubuntu0.22.04.1");
        assert_eq!(
            (v.flavor, v.major, v.minor, v.patch),
            (Flavor::MySql, 8, 0, 36)
        );
        assert!(v.at_least(8, 0, 22));
        assert!(!ServerVersion::parse("5.7.44").at_least(8, 0, 0));
    }

    #[test]
    fn session_settings_use_each_products_variables() {
        let maria = session_settings(&ServerVersion::parse("10.11.6-MariaDB"));
        assert!(maria.contains("max_statement_time = 10"), "{maria}");
        assert!(!maria.contains("max_execution_time"));
        assert!(!maria.contains("information_schema_stats_expiry"));
        assert!(maria.contains("lock_wait_timeout = 2"));
        let mysql = session_settings(&ServerVersion::parse("8.0.36"));
        assert!(mysql.contains("max_execution_time = 10000"), "{mysql}");
        assert!(mysql.contains("information_schema_stats_expiry = 300"));
        assert!(!mysql.contains("max_statement_time"));
        let old = session_settings(&ServerVersion::parse("5.7.44"));
        assert!(!old.contains("information_schema_stats_expiry"), "{old}");
    }
}
