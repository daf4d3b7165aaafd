//! Connections, the same way for every server engine: a small lazy pool with short
//! timeouts, a direct connection attempt that tells *why* a server cannot be reached
//! (sqlx retries a refused connection silently until its acquire timeout and then says
//! only "timed out"), and the lease that puts the connection's server session into the
//! run's [`RunScope`] for as long as the run holds it.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use sqlx::pool::{PoolConnection, PoolOptions};
use sqlx::{ConnectOptions, Connection, Database, Pool};

use super::{RunScope, Session};
use crate::config::Target;

/// The options of a target's pool: small, lazy (no connection until a round needs one),
/// and bounded waits.
pub(crate) fn pool_options<DB: Database>(target: &Target) -> PoolOptions<DB> {
    let p = &target.pool;
    PoolOptions::<DB>::new()
        .max_connections(p.max_connections)
        .min_connections(0)
        .acquire_timeout(p.acquire_timeout)
        .idle_timeout(Some(p.idle_timeout))
        .max_lifetime(Some(p.max_lifetime))
        .test_before_acquire(p.test_before_acquire)
}

/// Callers waiting for a connection of a pool now (`/metrics`): sqlx does not count them.
#[derive(Debug, Default)]
pub(crate) struct Waiting(AtomicUsize);

impl Waiting {
    /// Awaits `acquire`, counted as waiting until it finishes or is dropped midway (a run
    /// cancelled while it waits).
    pub async fn on<F: Future>(&self, acquire: F) -> F::Output {
        struct Counted<'a>(&'a AtomicUsize);
        impl Drop for Counted<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::Relaxed);
            }
        }
        self.0.fetch_add(1, Ordering::Relaxed);
        let _counted = Counted(&self.0);
        acquire.await
    }

    /// How many wait now.
    pub fn now(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// Why a connection could not be had.
pub(crate) enum Failure {
    /// No answer within connect_timeout.
    TimedOut,
    /// The server (or the network) said no; describe it.
    Error(sqlx::Error),
    /// The pool had no free connection although the server accepts connections.
    PoolBusy,
}

/// One direct connection attempt, bounded by `within`.
pub(crate) async fn connect_direct<DB: Database>(
    options: &<DB::Connection as Connection>::Options,
    within: Duration,
) -> Result<DB::Connection, Failure> {
    match tokio::time::timeout(within, options.connect()).await {
        Err(_) => Err(Failure::TimedOut),
        Ok(Err(e)) => Err(Failure::Error(e)),
        Ok(Ok(c)) => Ok(c),
    }
}

/// A pooled connection of a server engine's pool.
pub(crate) struct Pooled<'a, DB: Database> {
    pub pool: &'a Pool<DB>,
    pub options: &'a <DB::Connection as Connection>::Options,
    pub connect_timeout: Duration,
    pub acquire_timeout: Duration,
    /// Set when a pooled connection was found dead (server restart, network cut): the
    /// next acquisition tries one direct connection first.
    pub suspect: &'a AtomicBool,
    /// Counts this acquisition while it waits for the pool.
    pub waiting: &'a Waiting,
}

impl<DB: Database> Pooled<'_, DB> {
    /// A pooled connection within connect_timeout (plus acquire_timeout when the pool is
    /// busy). When the pool holds no connection, or one was just found dead, one direct
    /// attempt first: a refused or denied connection is reported at once with its real
    /// reason instead of the pool's silent retries until acquire_timeout. That costs one
    /// extra connection when the pool starts (or after idle_timeout, or a lost connection),
    /// not per round.
    pub async fn acquire(&self) -> Result<PoolConnection<DB>, Failure> {
        if self.pool.size() == 0 || self.suspect.swap(false, Ordering::Relaxed) {
            self.preflight().await?;
        }
        match tokio::time::timeout(
            self.acquire_timeout + self.connect_timeout,
            self.waiting.on(self.pool.acquire()),
        )
        .await
        {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(sqlx::Error::PoolTimedOut)) | Err(_) => {
                self.preflight().await?;
                Err(Failure::PoolBusy)
            }
            Ok(Err(e)) => Err(Failure::Error(e)),
        }
    }

    /// [`Pooled::acquire`], as a run's lease.
    pub async fn lease(&self) -> Result<Lease<DB>, Failure> {
        self.acquire().await.map(|c| Lease::new(Conn::Pooled(c)))
    }

    async fn preflight(&self) -> Result<(), Failure> {
        let c = connect_direct::<DB>(self.options, self.connect_timeout).await?;
        let _ = tokio::time::timeout(self.connect_timeout, c.close()).await;
        Ok(())
    }
}

/// A connection of a round: from the pool, or the one direct connection of a one-shot
/// engine.
pub(crate) enum Conn<DB: Database> {
    Pooled(PoolConnection<DB>),
    Direct(DB::Connection),
}

/// A connection held by a run. While held, its server session is in the run's scope.
/// [`Lease::release`] gives it back and leaves the scope; dropped without that (the run's
/// future was dropped mid-statement), the session stays in the scope so the run can still
/// be cancelled, and the connection is closed instead of returning to the pool, so no
/// other run ever works on a session this scope names.
pub(crate) struct Lease<DB: Database> {
    conn: Option<Conn<DB>>,
    /// The scope the session was entered in, and the session.
    entered: Option<(RunScope, Session)>,
}

impl<DB: Database> Lease<DB> {
    pub fn new(conn: Conn<DB>) -> Self {
        Lease {
            conn: Some(conn),
            entered: None,
        }
    }

    /// Registers the connection's server session in the run's `scope`.
    pub fn enter(&mut self, session: Session, scope: &RunScope) {
        self.leave();
        scope.add(&session);
        self.entered = Some((scope.clone(), session));
    }

    fn leave(&mut self) {
        if let Some((scope, s)) = self.entered.take() {
            scope.remove(&s);
        }
    }

    /// The connection is gone (closed by the server): never back to the pool.
    pub fn discard(mut self) {
        self.leave();
        if let Some(Conn::Pooled(mut c)) = self.conn.take() {
            c.close_on_drop();
        }
    }

    /// The run is done with the connection: back to the pool (a direct one is closed).
    pub async fn release(mut self) {
        self.leave();
        if let Some(Conn::Direct(c)) = self.conn.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), c.close()).await;
        }
    }
}

impl<DB: Database> Drop for Lease<DB> {
    fn drop(&mut self) {
        // Not released: abandoned mid-statement. The session stays in the scope.
        if let Some(Conn::Pooled(c)) = self.conn.as_mut() {
            c.close_on_drop();
        }
    }
}

impl<DB: Database> Deref for Lease<DB> {
    type Target = DB::Connection;

    fn deref(&self) -> &DB::Connection {
        match &self.conn {
            Some(Conn::Pooled(c)) => c,
            Some(Conn::Direct(c)) => c,
            // `conn` is only taken by the consuming methods.
            None => unreachable!("a lease is used after it was given back"),
        }
    }
}

impl<DB: Database> DerefMut for Lease<DB> {
    fn deref_mut(&mut self) -> &mut DB::Connection {
        match &mut self.conn {
            Some(Conn::Pooled(c)) => c,
            Some(Conn::Direct(c)) => c,
            None => unreachable!("a lease is used after it was given back"),
        }
    }
}
