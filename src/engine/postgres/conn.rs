//! Connections of the PostgreSQL engine: options with the password read at connect time,
//! the round's connection and its optional second one, what a failed connection means,
//! and cancelling the statements of a run's sessions.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{Connection, Postgres};

use super::round::RoundState;
use super::{LOCK_TIMEOUT, PostgresEngine, sql};
use crate::engine::Session;
use crate::engine::conn::{Conn, Failure, Lease, Pooled, connect_direct};

/// After failing to open a second connection, rounds use one for this long.
const SECOND_CONNECTION_RETRY: Duration = Duration::from_secs(10 * 60);

/// Why a round has no connection.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum NoConnection {
    /// The server could not be reached (or refused us): connectivity is CRITICAL.
    Unreachable(String),
    /// The server answered, but starting the session waited on a lock (a session holding
    /// a system catalog in ACCESS EXCLUSIVE mode): reached, nothing measurable.
    Blocked(String),
}

impl NoConnection {
    pub fn message(&self) -> String {
        match self {
            NoConnection::Unreachable(m) | NoConnection::Blocked(m) => m.clone(),
        }
    }
}

impl PostgresEngine {
    /// Connect options with the password read now (a rotated password file is picked up by
    /// the next connection without a reload).
    pub(super) fn connect_options(&self) -> Result<PgConnectOptions, String> {
        match (self.password)() {
            Ok(Some(secret)) => Ok((*self.options).clone().password(secret.expose())),
            Ok(None) => Ok((*self.options).clone()),
            Err(e) => Err(format!("cannot read the password: {e}")),
        }
    }

    fn failure(&self, f: Failure) -> NoConnection {
        match f {
            Failure::TimedOut => NoConnection::Unreachable(format!(
                "no answer from {} within {} (connect_timeout): host down, firewalled or overloaded?",
                self.endpoint,
                humantime::format_duration(self.connect_timeout)
            )),
            Failure::PoolBusy => NoConnection::Unreachable(format!(
                "{}: no free connection within acquire_timeout {} (pool of {}: a previous round still running?)",
                self.endpoint,
                humantime::format_duration(self.acquire_timeout),
                self.max_connections
            )),
            Failure::Error(e) if lock_timeout(&e) => NoConnection::Blocked(format!(
                "reached {}, but starting a session waited longer than lock_timeout {LOCK_TIMEOUT} for a lock on a system catalog (another session holds one, e.g. LOCK pg_class or DDL on a catalog in an open transaction; see pg_locks)",
                self.endpoint
            )),
            Failure::Error(e) => {
                NoConnection::Unreachable(describe_connect_error(&e, &self.endpoint, &self.options))
            }
        }
    }

    /// The round's connection, or why there is none: from the pool (see
    /// [`Pooled::acquire`]), or, for a one-shot engine, one direct connection.
    pub(super) async fn connection(&self) -> Result<Lease<Postgres>, NoConnection> {
        let opts = self.connect_options().map_err(NoConnection::Unreachable)?;
        let Some(pool) = &self.pool else {
            return connect_direct::<Postgres>(&opts, self.connect_timeout)
                .await
                .map(|c| Lease::new(Conn::Direct(c)))
                .map_err(|f| self.failure(f));
        };
        pool.set_connect_options(opts.clone());
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
    /// direct connection first, so a server that is down is reported at once (refused),
    /// not after the pool's retries until acquire_timeout.
    pub(super) fn lost_connection(&self) {
        self.suspect.store(true, Ordering::Relaxed);
    }

    /// A second pooled connection for running probes side by side: an idle one, or a new
    /// one when the pool may grow. Never waits long: without it the probes run one after
    /// the other. After a failure (e.g. a CONNECTION LIMIT used up) it is not tried again for
    /// a while, so such a server is not asked for a connection every round.
    pub(super) async fn second_connection(&self, st: &mut RoundState) -> Option<Lease<Postgres>> {
        let pool = self.pool.as_ref()?;
        if self.max_connections < 2 {
            return None;
        }
        if let Some(mut c) = pool.try_acquire() {
            // try_acquire skips test_before_acquire: make sure the connection survived
            // (e.g. a server restart) before the table probe depends on it.
            if !self.test_before_acquire {
                return Some(Lease::new(Conn::Pooled(c)));
            }
            if let Ok(Ok(())) = tokio::time::timeout(self.connect_timeout, c.ping()).await {
                return Some(Lease::new(Conn::Pooled(c)));
            }
            c.close_on_drop();
        }
        if pool.size() >= self.max_connections
            || st
                .second_failed
                .is_some_and(|at| at.elapsed() < SECOND_CONNECTION_RETRY)
        {
            return None;
        }
        let wait = self.connect_timeout.min(Duration::from_secs(1));
        match tokio::time::timeout(wait, self.waiting.on(pool.acquire())).await {
            Ok(Ok(c)) => Some(Lease::new(Conn::Pooled(c))),
            _ => {
                st.second_failed = Some(Instant::now());
                None
            }
        }
    }

    /// Cancels the statements running on `sessions` (a run's scope): dropping a sqlx
    /// future does not stop its statement, so the backends are told to cancel with
    /// `pg_cancel_backend` from a fresh connection. A backend is matched by pid and start
    /// time, so a pid reused by an unrelated backend is never hit.
    pub(crate) async fn cancel(&self, sessions: &[Session]) {
        if sessions.is_empty() {
            return;
        }
        let Ok(opts) = self.connect_options() else {
            return;
        };
        let conn =
            tokio::time::timeout(self.connect_timeout, PgConnection::connect_with(&opts)).await;
        let Ok(Ok(mut conn)) = conn else {
            tracing::warn!(target_name = %self.target, endpoint = %self.endpoint, "cannot connect to cancel running statements");
            return;
        };
        let pids: Vec<i32> = sessions.iter().map(|s| s.id as i32).collect();
        let started: Vec<Option<String>> = sessions.iter().map(|s| s.started.clone()).collect();
        match sqlx::query_scalar::<_, i64>(sql::CANCEL)
            .bind(pids)
            .bind(started)
            .fetch_one(&mut conn)
            .await
        {
            Ok(n) => {
                tracing::info!(target_name = %self.target, cancelled = n, "cancelled running statements")
            }
            Err(e) => {
                tracing::warn!(target_name = %self.target, error = %e, "cancelling running statements failed")
            }
        }
        let _ = tokio::time::timeout(self.connect_timeout, conn.close()).await;
    }
}

/// The backend of a connection: pid and start time (one short round trip).
pub(super) async fn identify(
    conn: &mut PgConnection,
) -> Result<(i32, Option<String>), sqlx::Error> {
    sqlx::query_as::<_, (i32, Option<String>)>(sql::BACKEND_IDENTITY)
        .fetch_one(conn)
        .await
}

/// SQLSTATE 55P03: a statement (or the session's start) waited longer than lock_timeout.
pub(super) fn lock_timeout(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some("55P03"))
}

/// A URL parse error could quote the URL; hide any password in it.
pub(super) fn redact_error(message: &str, url: &str) -> String {
    match url::Url::parse(url)
        .ok()
        .and_then(|u| u.password().map(str::to_string))
    {
        Some(p) if !p.is_empty() => message.replace(&p, "***"),
        _ => message.to_string(),
    }
}

/// A one-line reason for a failed connection, naming the endpoint and what to check.
pub(super) fn describe_connect_error(
    e: &sqlx::Error,
    endpoint: &str,
    opts: &PgConnectOptions,
) -> String {
    let user = opts.get_username();
    let db = opts.get_database().unwrap_or(user);
    match e {
        sqlx::Error::Io(io) => match io.kind() {
            std::io::ErrorKind::ConnectionRefused => {
                format!("connection refused at {endpoint} — is the server running?")
            }
            std::io::ErrorKind::NotFound => {
                format!("no server socket at {endpoint} — is the server running?")
            }
            std::io::ErrorKind::TimedOut => format!("timed out connecting to {endpoint}"),
            _ => {
                let text = io.to_string();
                if text.contains("lookup") || text.contains("resolve") || text.contains("not known")
                {
                    format!("cannot resolve the host of {endpoint}: {text}")
                } else {
                    format!("{endpoint}: {text}")
                }
            }
        },
        sqlx::Error::Database(d) => {
            let code = d.code().map(|c| c.to_string()).unwrap_or_default();
            match code.as_str() {
                "28P01" => {
                    format!("password authentication failed for user \"{user}\" at {endpoint}")
                }
                "3D000" => format!("database \"{db}\" does not exist at {endpoint}"),
                "53300" => format!(
                    "{endpoint}: too many connections ({}); max_connections or a CONNECTION LIMIT is used up",
                    d.message()
                ),
                "57P03" => format!(
                    "{endpoint}: the server is starting up, shutting down or in recovery without hot_standby ({})",
                    d.message()
                ),
                _ => format!("{endpoint}: {}", d.message()),
            }
        }
        sqlx::Error::Tls(t) => format!("{endpoint}: TLS failed: {t}"),
        sqlx::Error::Configuration(c) => format!("{endpoint}: bad connection settings: {c}"),
        sqlx::Error::PoolTimedOut => format!("{endpoint}: timed out waiting for a connection"),
        other => format!("{endpoint}: {other}"),
    }
}
