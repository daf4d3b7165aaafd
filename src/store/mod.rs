//! The history store: job runs, check results, metric samples, table statistics and
//! status changes, in SQLite (default) or PostgreSQL (fleets), through sqlx with embedded
//! migrations.
//!
//! Monitoring never waits on it. Producers [`Store::push`] records into a bounded
//! in-memory buffer (records and bytes, [`BufferLimits`]); past the bound the oldest are
//! dropped and counted. One writer task owns all writes (SQLite allows one writer at a
//! time): it takes batches (up to [`BATCH_MAX`] records or [`BATCH_WINDOW`]) and commits
//! each in one transaction with multi-row inserts. When the store is unavailable the
//! records stay buffered and the writer retries with capped backoff; a batch the store
//! rejects is split so only the bad record is dropped. A supervisor restarts the writer if
//! it crashes. [`Store::health`] tells how it is going; reads use a separate pool.
//!
//! Layout: `buffer` (the bounded queue), `episode` (rate-limited drop and outage logs),
//! `connect` (URL, connections, migrations), `outbox` (alert outbox and silences, written
//! directly), `write` (one batch's SQL, error
//! classification, splitting), `writer` (the task and its supervisor), `latency` (the
//! writer's batch write times for `/metrics`), `read` (queries).

/// One code path for both dialects: the body is expanded once per pool type, so
/// `QueryBuilder` renders `?` or `$n` and rows decode with the same code.
macro_rules! on_pool {
    ($pool:expr, $p:ident => $body:expr) => {
        match $pool {
            Pool::Sqlite($p) => $body,
            Pool::Postgres($p) => $body,
        }
    };
}

/// The statement marking this agent's runs left `running` as `interrupted` (a
/// `QueryBuilder` of whichever dialect the caller runs it on).
macro_rules! orphans_update {
    ($agent:expr, $now:expr) => {{
        let mut q = sqlx::QueryBuilder::new(
            "UPDATE job_runs SET outcome = 'interrupted', \
             error = 'the daemon stopped before the run finished', finished_at = ",
        );
        q.push_bind($now)
            .push(" WHERE outcome = 'running' AND agent = ")
            .push_bind($agent.to_string());
        q
    }};
}

mod api_reads;
mod buffer;
mod connect;
mod dashboard_reads;
mod episode;
mod latency;
mod outbox;
mod plans;
mod raw;
mod read;
mod series;
mod series_write;
mod trend;
mod write;
mod writer;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::config::{Secret, SecretUrl};
use crate::engine::TableStat;
use crate::health::{CheckResult, Status};

pub use api_reads::AuditRow;
pub use buffer::BufferLimits;
pub use dashboard_reads::{AgentRow, AlertRow};
pub use latency::{Latency, WRITE_BUCKETS};
pub use outbox::{OutboxRow, SilenceRow, Undelivered};
pub use plans::PlanRow;
pub use raw::{RawSeries, SeriesFilter, Step, steps};
pub use read::{
    BelievedRow, CheckRow, HistoryTable, MaintenanceRow, RunRow, SlowOrder, SlowQueryRow,
};
pub use trend::{Resolution, SeriesInfo, Trend, TrendPoint, TrendQuery};

use connect::open_err;
use writer::{Shared, State};

/// Records per transaction at most.
pub const BATCH_MAX: usize = 2000;
/// How long the writer waits to fill a batch after the first record arrives.
pub const BATCH_WINDOW: Duration = Duration::from_millis(50);
/// How long the writer keeps flushing when the last handle is dropped without
/// [`Store::close`].
const DROP_FLUSH: Duration = Duration::from_secs(5);

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
    /// A set of check results of one target at one time: a health round (the target's
    /// complete set: a series it reported before and not now gets "no data") or a
    /// sample job's own check. Becomes check periods, the latest results, and samples of
    /// the checks with a value and a unit.
    Checks {
        ts: DateTime<Utc>,
        target: String,
        run_id: Option<String>,
        source: CheckSource,
        results: Vec<CheckResult>,
    },
    /// One value of a series without a label (store on change).
    Metric {
        ts: DateTime<Utc>,
        target: String,
        metric: String,
        value: f64,
    },
    /// A target's per-table statistics of one round (the complete set): the latest per
    /// table, and samples of the `table.*` series.
    Tables {
        ts: DateTime<Utc>,
        target: String,
        stats: Vec<TableStat>,
    },
    /// One maintenance step of a run (`maintenance_actions`).
    Maintenance {
        target: String,
        run_id: Option<String>,
        record: Box<crate::maintenance::StepRecord>,
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
    /// One statement's work in one sample interval (slow-query sampling).
    QueryStat {
        ts: DateTime<Utc>,
        target: String,
        delta: crate::sample::StatementDelta,
    },
    /// A statement's normalised text, stored once per (target, queryid).
    QueryText {
        ts: DateTime<Utc>,
        target: String,
        queryid: String,
        query: String,
    },
    /// A statement that was running longer than the threshold (query already redacted).
    LongQuery {
        ts: DateTime<Utc>,
        target: String,
        runner: crate::sample::LongRunner,
    },
    /// A target's latest counter snapshot ([`crate::sample::wire`]), replacing the one
    /// before: the next sample's baseline, also after a restart.
    SampleSnapshot {
        target: String,
        taken_at: DateTime<Utc>,
        snapshot: String,
    },
}

/// Where check results come from: each source's rounds are compared with its own
/// previous round (a sample job's check does not make a health round's checks absent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckSource {
    Health,
    Sample,
}

impl CheckSource {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CheckSource::Health => "health",
            CheckSource::Sample => "sample",
        }
    }
}

/// Store errors, with what to do about them.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("history store {url}: {message}")]
    Open { url: String, message: String },
    #[error("history store: {0}")]
    Db(String),
    /// A write through a store opened with [`Store::open_read_only`] (a bug of the caller).
    #[error(
        "history store {0} is open read-only (a CLI reader) and cannot be written; this is a bug in dbwarden: please report the command you ran"
    )]
    ReadOnly(String),
    #[error("history store: the writer has stopped")]
    WriterGone,
    /// The store cannot be reached now; writes are buffered meanwhile.
    #[error(
        "history store unavailable: {0}; results are kept in memory and written when it is back (`dbwarden status` shows the backlog)"
    )]
    Unavailable(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            // A pool that cannot get a connection means the store is down, not a bad query.
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                StoreError::Unavailable(e.to_string())
            }
            e => StoreError::Db(e.to_string()),
        }
    }
}

/// Records dropped, by cause.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct DropCounts {
    /// The buffer was full (store unavailable or too slow): the oldest were dropped.
    pub overflow: u64,
    /// The store rejected the record (constraint or data error); the rest of its batch
    /// was written.
    pub bad_record: u64,
    /// Still unwritten when the store was closed, or pushed after it.
    pub shutdown: u64,
}

impl DropCounts {
    /// All drops, whatever the cause.
    pub fn total(&self) -> u64 {
        self.overflow + self.bad_record + self.shutdown
    }
}

/// How the history store is doing ([`Store::health`]): for `dbwarden status`, the
/// sd_notify STATUS line, the periodic summary and /metrics.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StoreHealth {
    /// The last connect or write attempt succeeded.
    pub reachable: bool,
    /// Since when attempts fail (None while reachable).
    pub failing_since: Option<DateTime<Utc>>,
    /// The current failure's reason (None while reachable); never holds a password.
    pub last_error: Option<String>,
    /// Records waiting in memory, including the batch being written.
    pub backlog_records: usize,
    /// Their estimated memory ([`Record::approx_bytes`]).
    pub backlog_bytes: usize,
    /// The buffer's bounds.
    pub limits: BufferLimits,
    /// Records written since start.
    pub written_total: u64,
    /// Records dropped since start, by cause.
    pub dropped: DropCounts,
    /// Times the writer task crashed and was restarted.
    pub writer_restarts: u64,
    /// How long each batch write took (failed attempts included).
    pub write_seconds: Latency,
}

/// What [`Store::close`] managed.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CloseSummary {
    /// Records written during the close.
    pub flushed: u64,
    /// Records lost at shutdown over the store's life (still unwritten at the end, or
    /// pushed after it): counted in `health.dropped.shutdown` and logged.
    pub unwritten: u64,
    /// The final state.
    pub health: StoreHealth,
}

#[derive(Clone)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Pool {
    pub(crate) async fn close(&self) {
        match self {
            Pool::Sqlite(p) => p.close().await,
            Pool::Postgres(p) => p.close().await,
        }
    }
}

/// A handle to the history store. Cheap to clone; all clones feed the same buffer. When
/// the last clone is dropped without [`Store::close`], the writer flushes for a few
/// seconds and stops.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
    _owner: Arc<Owner>,
}

/// Tells the writer to finish when the last handle goes.
struct Owner(Arc<Shared>);

impl Drop for Owner {
    fn drop(&mut self) {
        self.0.begin_close(tokio::time::Instant::now() + DROP_FLUSH);
    }
}

/// The `[daemon] agent` of the config this process runs with ([`use_agent_name`]).
static AGENT: std::sync::RwLock<Option<String>> = std::sync::RwLock::new(None);

/// This agent's name in the history store (`job_runs.agent`, `series.agent`, …: several
/// agents may share a store): `[daemon] agent` once [`use_agent_name`] applied it, else
/// the host name.
pub fn agent_name() -> String {
    if let Some(a) = AGENT.read().unwrap_or_else(|p| p.into_inner()).as_ref() {
        return a.clone();
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "dbwarden".into())
}

/// Makes `[daemon] agent` (if set) this process's agent name: called once the daemon or a
/// command has loaded its config, before it opens the store.
pub fn use_agent_name(config: &crate::config::Config) {
    if let Some(a) = &config.daemon.agent {
        *AGENT.write().unwrap_or_else(|p| p.into_inner()) = Some(a.clone());
    }
}

/// `[daemon] agent`: 1 to 63 of `[A-Za-z0-9._-]`, starting with a letter or digit (safe
/// in a label, a header, a file name and a log line).
pub fn valid_agent_name(a: &str) -> bool {
    (1..=63).contains(&a.len())
        && a.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && a.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
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

impl Store {
    /// Opens the store strictly: connects (creating a SQLite file and its directory if
    /// needed), migrates, and starts the writer, or fails when the store is unreachable.
    /// For `dbwarden migrate` and one-shot commands; the daemon uses [`Store::start`].
    pub async fn open(url: &SecretUrl, password: Option<Secret>) -> Result<Store, StoreError> {
        Store::open_as(url, password, &agent_name()).await
    }

    /// [`Store::open`] writing as agent `agent` instead of this host's name (the rows of
    /// several agents sharing one store, in one process: tests and benchmarks).
    pub async fn open_as(
        url: &SecretUrl,
        password: Option<Secret>,
        agent: &str,
    ) -> Result<Store, StoreError> {
        let target = connect::parse(url, password)?;
        let ready = target
            .prepare()
            .await
            .map_err(|e| open_err(url, e.to_string()))?;
        Ok(Store::spawn(
            url,
            target,
            BufferLimits::default(),
            Ok(ready),
            false,
            agent.to_string(),
        ))
    }

    /// Opens the store for reading only (CLI readers): no migrations, no writer task, no
    /// WAL checkpoint on close; a SQLite file is opened with `mode=ro` and never created
    /// (a missing file is an error saying to start the daemon first), PostgreSQL sessions
    /// are read-only. A store at an older schema than this binary's is an error saying how
    /// to upgrade it; a newer one is read as is. Writes through it fail with
    /// [`StoreError::ReadOnly`] (pushes are logged as errors and counted as dropped).
    pub async fn open_read_only(
        url: &SecretUrl,
        password: Option<Secret>,
    ) -> Result<Store, StoreError> {
        let target = connect::parse(url, password)?;
        let read = target
            .read_only_pool()
            .await
            .map_err(|m| open_err(url, m))?;
        let mut state = State::new(BufferLimits::default());
        state.reachable = true;
        let shared = Arc::new(Shared {
            url: url.redacted(),
            agent: agent_name(),
            target,
            read_only: true,
            state: Mutex::new(state),
            wake: Notify::new(),
            progress: watch::channel(0).0,
            read: Mutex::new(Some(read)),
            handoff: Mutex::new(None),
            writer: Mutex::new(None),
            series: Mutex::new(series::Cache::new(0)),
            closing: CancellationToken::new(),
            #[cfg(test)]
            panic_once: std::sync::atomic::AtomicBool::new(false),
        });
        Ok(Store {
            _owner: Arc::new(Owner(shared.clone())),
            shared,
        })
    }

    /// Starts the store for the daemon: fails only for a URL that can never work (bad
    /// scheme or path). An unreachable store (PostgreSQL down, a SQLite directory not yet
    /// writable) gives a degraded Store that buffers records and keeps trying to connect
    /// and migrate in the background, saying so in the log. At its first connection it
    /// marks the runs this agent left `running` (a crash) as `interrupted`.
    pub async fn start(
        url: &SecretUrl,
        password: Option<Secret>,
        limits: BufferLimits,
    ) -> Result<Store, StoreError> {
        let target = connect::parse(url, password)?;
        let ready = match target.prepare().await {
            Ok(ready) => Ok(ready),
            Err(e) => {
                // The outage episode begins here: the writer's retries then log at most
                // once a minute, and once when the store answers.
                tracing::warn!(
                    history = %url.redacted(),
                    error = %e,
                    "history store unreachable at start; running degraded: results are kept in memory (up to {} records or {} MiB) and written once it answers; retrying",
                    limits.records,
                    limits.bytes / (1024 * 1024)
                );
                Err(e.to_string())
            }
        };
        let store = Store::spawn(url, target, limits, ready, true, agent_name());
        Ok(store)
    }

    fn spawn(
        url: &SecretUrl,
        target: connect::Target,
        limits: BufferLimits,
        ready: Result<(connect::WriteConn, Pool), String>,
        close_orphans: bool,
        agent: String,
    ) -> Store {
        let mut state = State::new(limits);
        state.close_orphans = close_orphans;
        let (conn, read) = match ready {
            Ok((c, r)) => {
                state.reachable = true;
                (Some(c), Some(r))
            }
            Err(reason) => {
                state.failing_since = Some(Utc::now());
                state.last_error = Some(reason);
                state.outage_log.event(tokio::time::Instant::now(), 1);
                (None, None)
            }
        };
        let shared = Arc::new(Shared {
            url: url.redacted(),
            agent,
            target,
            read_only: false,
            state: Mutex::new(state),
            wake: Notify::new(),
            progress: watch::channel(0).0,
            read: Mutex::new(read),
            handoff: Mutex::new(conn),
            writer: Mutex::new(None),
            series: Mutex::new(series::Cache::new(series::CACHE_SERIES_MAX)),
            closing: CancellationToken::new(),
            #[cfg(test)]
            panic_once: std::sync::atomic::AtomicBool::new(false),
        });
        // The supervisor runs until the store is closed; close() follows it through the
        // `closed` flag and the progress channel, so its handle is not kept.
        tokio::spawn(writer::supervise(shared.clone()));
        Store {
            _owner: Arc::new(Owner(shared.clone())),
            shared,
        }
    }

    /// Applies migrations only (for `dbwarden migrate`). Returns the applied versions.
    pub async fn migrate_only(
        url: &SecretUrl,
        password: Option<Secret>,
    ) -> Result<Vec<i64>, StoreError> {
        let target = connect::parse(url, password)?;
        let (conn, read) = target
            .prepare()
            .await
            .map_err(|e| open_err(url, e.to_string()))?;
        conn.close().await;
        let versions = read.versions().await;
        read.close().await;
        Ok(versions?)
    }

    /// The agent this store writes as (`agent` columns).
    pub fn agent(&self) -> &str {
        &self.shared.agent
    }

    /// The store's URL with any password hidden.
    pub fn url(&self) -> &str {
        &self.shared.url
    }

    /// Queues a record for writing. Never waits: past the buffer's bounds the oldest
    /// records are dropped (counted in [`Store::health`] and logged, rate-limited).
    pub fn push(&self, r: Record) {
        self.shared.push(r);
    }

    /// [`Store::push`] for callers written when writes could wait; never waits, never
    /// fails (a dropped record is counted, not an error).
    pub async fn write(&self, r: Record) -> Result<(), StoreError> {
        self.writable()?;
        self.push(r);
        Ok(())
    }

    /// How the store is doing. Cheap: copies counters under a lock.
    pub fn health(&self) -> StoreHealth {
        self.shared.lock().health()
    }

    /// Waits until every record pushed before the call is finished (written, or dropped
    /// and counted in [`Store::health`]). Does not wait out an outage: it returns
    /// `Unavailable` as soon as an attempt to connect or write fails after the call, so it
    /// is bounded by one backoff delay (at most 5 s) plus one attempt (a 5 s connect or a
    /// 30 s write timeout) while the store is failing.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.writable()?;
        let mut progress = self.shared.progress.subscribe();
        let (target, failures) = {
            let mut s = self.shared.lock();
            s.flush_waiting += 1;
            (s.queue.next_seq(), s.failures)
        };
        // Undone on every way out, a cancelled flush included: while a flush waits the
        // writer skips its batch window.
        struct Waiting<'a>(&'a Shared);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.lock().flush_waiting -= 1;
            }
        }
        let _waiting = Waiting(&self.shared);
        self.shared.wake.notify_one();
        loop {
            {
                let s = self.shared.lock();
                if s.queue.oldest_pending() >= target {
                    break Ok(());
                }
                if s.failures > failures {
                    let reason = s
                        .last_error
                        .clone()
                        .unwrap_or_else(|| "a write failed".into());
                    break Err(StoreError::Unavailable(reason));
                }
                if s.closed {
                    break Err(StoreError::WriterGone);
                }
            }
            if progress.changed().await.is_err() {
                break Err(StoreError::WriterGone);
            }
        }
    }

    /// Flushes for at most `within`, stops the writer and closes the pools. What could not
    /// be written is counted (`dropped.shutdown`), logged with its number, and reported.
    /// Returns within `within` plus about a second. Other clones of this Store may still
    /// push afterwards: those records are counted as dropped at shutdown.
    pub async fn close(self, within: Duration) -> CloseSummary {
        if self.shared.read_only {
            // No writer to stop, nothing buffered: close the pool (a read-only SQLite
            // connection neither checkpoints nor removes the WAL) and report.
            if let Ok(read) = self.reader() {
                read.close().await;
            }
            let mut s = self.shared.lock();
            s.closed = true;
            return CloseSummary {
                flushed: 0,
                unwritten: 0,
                health: s.health(),
            };
        }
        let started = tokio::time::Instant::now();
        let written_before = self.shared.lock().written;
        self.shared.begin_close(started + within);
        if self.wait_closed(started + within).await.is_err() {
            // The writer is inside an attempt that outlasts the deadline: abort it (its
            // batch goes back to the buffer as the task is dropped), then count the rest.
            let writer = self
                .shared
                .writer
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            if let Some(w) = writer {
                w.abort();
            }
            let _ = self
                .wait_closed(tokio::time::Instant::now() + Duration::from_secs(1))
                .await;
            self.shared.finish_close();
        }
        let s = self.shared.lock();
        CloseSummary {
            flushed: s.written - written_before,
            unwritten: s.dropped.shutdown,
            health: s.health(),
        }
    }

    /// Waits until the supervisor has finished the close.
    async fn wait_closed(&self, until: tokio::time::Instant) -> Result<(), ()> {
        let mut progress = self.shared.progress.subscribe();
        tokio::time::timeout_at(until, async {
            while !self.shared.lock().closed {
                if progress.changed().await.is_err() {
                    break;
                }
            }
        })
        .await
        .map_err(|_| ())
    }

    /// Fails for a store opened read-only: what a write checks before it starts.
    fn writable(&self) -> Result<(), StoreError> {
        if self.shared.read_only {
            return Err(StoreError::ReadOnly(self.shared.url.clone()));
        }
        Ok(())
    }

    /// The pool for a direct write (outbox, silences, audit, plans, orphaned runs):
    /// [`StoreError::ReadOnly`] on a store opened read-only.
    fn write_pool(&self) -> Result<Pool, StoreError> {
        self.writable()?;
        self.reader()
    }

    /// The read pool, once the store is connected.
    fn reader(&self) -> Result<Pool, StoreError> {
        let read = self
            .shared
            .read
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        read.ok_or_else(|| {
            let why = self
                .shared
                .lock()
                .last_error
                .clone()
                .unwrap_or_else(|| "not connected yet".into());
            StoreError::Unavailable(why)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::buffer::tests::metric;
    use super::*;
    use std::sync::atomic::Ordering;

    /// The daemon calls these from spawned tasks: their futures must be Send.
    #[test]
    fn store_futures_can_be_spawned() {
        fn spawnable<T: Send + 'static>(_: T) {}
        #[allow(clippy::let_underscore_future)]
        fn check(s: Store) {
            spawnable(async move {
                s.push(metric(0));
                let _ = s.write(metric(1)).await;
                let _ = s.flush().await;
                let _ = s.believed_states().await;
                let _ = s.recent_runs(None, 1).await;
                let _ = s.recent_checks("t", 1).await;
                let _ = s.latest_table_stats("t").await;
                let _ = s.close_orphaned_runs("a").await;
                let _ = s.count(HistoryTable::JobRuns).await;
                s.close(Duration::ZERO).await
            });
            spawnable(async {
                let url = SecretUrl::new("sqlite://x");
                Store::start(&url, None, BufferLimits::default()).await
            });
        }
        let _ = check;
    }

    #[tokio::test]
    async fn a_read_only_store_reads_and_refuses_every_write() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let url = SecretUrl::new(format!("sqlite://{}/h.db", dir.path().display()));
        let rw = Store::open(&url, None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        rw.push(metric(0));
        rw.flush().await.unwrap_or_else(|e| panic!("{e}"));
        rw.close(Duration::from_secs(5)).await;

        let ro = Store::open_read_only(&url, None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ro.count(HistoryTable::Samples).await.ok(), Some(1));
        ro.push(metric(1));
        assert_eq!(
            ro.health().dropped.bad_record,
            1,
            "a refused push is counted"
        );
        assert!(matches!(
            ro.write(metric(2)).await,
            Err(StoreError::ReadOnly(_))
        ));
        assert!(matches!(ro.flush().await, Err(StoreError::ReadOnly(_))));
        let r = ro.silence_add("t", Utc::now(), "r", "me").await;
        assert!(matches!(r, Err(StoreError::ReadOnly(_))), "{r:?}");
        assert_eq!(ro.count(HistoryTable::Samples).await.ok(), Some(1));
        let summary = ro.close(Duration::from_secs(5)).await;
        assert_eq!((summary.flushed, summary.unwritten), (0, 0));
    }

    #[tokio::test]
    async fn a_writer_that_panics_is_restarted_and_loses_nothing() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let url = SecretUrl::new(format!("sqlite://{}/h.db", dir.path().display()));
        let store = Store::start(&url, None, BufferLimits::default())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        // The writer panics with this batch in flight.
        store.shared.panic_once.store(true, Ordering::SeqCst);
        for i in 0..10 {
            store.push(metric(i));
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while store.health().writer_restarts == 0 {
            assert!(tokio::time::Instant::now() < deadline, "never restarted");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        store.flush().await.unwrap_or_else(|e| panic!("{e}"));
        let h = store.health();
        assert_eq!(
            (h.writer_restarts, h.written_total, h.dropped.total()),
            (1, 10, 0)
        );
        // Ten metrics, one sample each.
        assert_eq!(store.count(HistoryTable::Samples).await.ok(), Some(10));
        let summary = store.close(Duration::from_secs(5)).await;
        assert_eq!(summary.unwritten, 0);
    }

    #[test]
    fn agent_names_are_short_and_plain() {
        for ok in ["db-1", "host.example.com", "a", "A_b-9", &"x".repeat(63)] {
            assert!(valid_agent_name(ok), "{ok}");
        }
        for bad in [
            "",
            "-db",
            ".db",
            "db 1",
            "db/1",
            "db\n1",
            "dbé",
            &"x".repeat(64),
        ] {
            assert!(!valid_agent_name(bad), "{bad:?}");
        }
    }
}
