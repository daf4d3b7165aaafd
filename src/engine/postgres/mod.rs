//! PostgreSQL engine (13+): connectivity, sessions, wraparound, table health, replication,
//! indexes, counters and disk space, read from catalogs and statistics views by a handful
//! of queries per round on a small lazy pool.
//!
//! - `sql`: the probe queries and the rules they follow (no relation locks, timeouts, a
//!   `/* dbwarden */` comment, few round trips).
//! - `probe`: the rows they return and the pure functions that turn them into
//!   measurements (unit-tested without a server).
//! - `checks`: the catalogue (names, units, built-in thresholds).
//! - query text in messages has its literals replaced by `?` ([`crate::engine::redact`]).
//! - `disk`: free space of the data directory when the server runs on this host.
//!
//! Cost classes: every round runs three cheap queries (`INSTANCE`, `ACTIVITY`, `TABLES`,
//! plus `ARCHIVE_READY` when archiving is on); the database size and the index lists
//! (invalid, never scanned) run at most every [`CATALOG_INTERVAL`], the bloat estimate and the duplicate-index analysis at most every
//! [`EXPENSIVE_INTERVAL`], and their last result is reused in between, with its age in the
//! message.

#[doc(hidden)]
pub mod bench_support;
mod checks;
mod disk;
mod probe;
mod sql;

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::{ConnectOptions, Connection, Postgres, Row};
use tokio::sync::Mutex;

use super::{EngineError, HealthOptions, HealthReport, TableStat, unreachable};
use crate::config::Secret;
use crate::config::Target;
use crate::health::{CheckThresholds, Measurement, Observation, Outcome, Scope, Status};

pub use checks::{CHECKS, NAMES};
pub use probe::{grant_monitor, quote_ident, standby_replay_lag};

use probe::{Activity, BloatRow, DbCounters, DuplicateGroup, IndexLists, Instance, TableRow};

/// The bloat estimate and the duplicate-index analysis (tens of ms of server time on a
/// database with ~1,600 relations) run at most this often; in between, their last result is
/// reused and its age is shown in the message.
pub const EXPENSIVE_INTERVAL: Duration = Duration::from_secs(30 * 60);
/// `pg_database_size()` stats every file of the database (~4 ms for ~1,100 files), and
/// index state (invalid, never scanned) changes slowly: both are read at most this often.
pub const CATALOG_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// How long a server's system identifier is trusted before it is read again (a name may
/// move to another server on failover).
const SERVER_ID_TTL: Duration = Duration::from_secs(10 * 60);
/// `server_version_num` of the oldest supported release (13).
const MIN_VERSION_NUM: i32 = 130_000;
/// Every probe statement runs with these (set as connection startup options).
const STATEMENT_TIMEOUT: &str = "5s";
/// After failing to open a second connection, rounds use one for this long.
const SECOND_CONNECTION_RETRY: Duration = Duration::from_secs(10 * 60);
const LOCK_TIMEOUT: &str = "1s";

/// Checks whose facts belong to the whole server, not to one database.
const SERVER_CHECKS: &[&str] = &[
    checks::CONNECTIONS,
    checks::WRAPAROUND,
    checks::REPLICATION_LAG,
    checks::REPLICATION_SLOTS,
    checks::ARCHIVER,
    checks::PREPARED_XACTS,
    checks::XMIN_HORIZON,
    checks::DISK_SPACE,
];

/// A backend of this engine's pool, identified by pid and start time (a pid can be reused
/// by an unrelated backend once ours is gone; the pair cannot).
#[derive(Debug, Clone, PartialEq)]
struct Backend {
    pid: i32,
    started: String,
}

/// Why a probe could not measure, and what would fix it.
#[derive(Debug, Clone, PartialEq)]
struct ProbeError {
    reason: String,
    fix: Option<String>,
    /// Stopped by us (cancel_running): try again next round instead of keeping the failure
    /// for a slow probe's whole interval.
    transient: bool,
    /// The connection was gone, not the statement wrong: worth one retry on another.
    lost: bool,
}

impl ProbeError {
    fn measurement(&self, check: &'static str) -> Measurement {
        Measurement::unknown(check, self.reason.clone(), self.fix.clone())
    }
}

/// The last result of a probe on a slow cadence, and when it ran. A failure is kept too,
/// so a probe that times out is not retried every round.
struct Cached<T> {
    at: Instant,
    result: Result<T, ProbeError>,
}

impl<T> Cached<T> {
    fn due(this: &Option<Cached<T>>, every: Duration) -> bool {
        this.as_ref().is_none_or(|c| {
            c.at.elapsed() >= every || c.result.as_ref().is_err_and(|e| e.transient)
        })
    }

    /// The check's measurement from the cached result, given its age in seconds.
    fn measure(
        this: &Option<Cached<T>>,
        check: &'static str,
        f: impl FnOnce(&T, f64) -> Measurement,
    ) -> Measurement {
        match this {
            Some(Cached { at, result: Ok(v) }) => f(v, at.elapsed().as_secs_f64()),
            Some(Cached { result: Err(e), .. }) => e.measurement(check),
            None => Measurement::unknown(check, "not measured yet", None),
        }
    }
}

/// What an engine remembers between rounds.
#[derive(Default)]
struct RoundState {
    counters: Option<DbCounters>,
    /// Per table (by oid): inserts, updates, deletes at the previous round.
    tables: HashMap<i64, [f64; 3]>,
    /// Never-analyzed tables needing analyze: when this engine first saw them so.
    never_analyzed: HashMap<i64, Instant>,
    bloat: Option<Cached<Vec<BloatRow>>>,
    duplicates: Option<Cached<Vec<DuplicateGroup>>>,
    database_size: Option<Cached<f64>>,
    indexes: Option<Cached<IndexLists>>,
    server_id: Option<(String, Instant)>,
    /// As a standby: the replay position and when a round first saw replay stand there.
    standby_replay: Option<(f64, Instant)>,
    /// When opening a second connection last failed.
    second_failed: Option<Instant>,
}

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
    pool: PgPool,
    connect_timeout: Duration,
    acquire_timeout: Duration,
    max_connections: u32,
    test_before_acquire: bool,
    thresholds: BTreeMap<&'static str, CheckThresholds>,
    backends: Arc<Mutex<Vec<Backend>>>,
    state: Box<Mutex<RoundState>>,
}

impl PostgresEngine {
    /// Prepares the engine and its lazy pool; no connection is made and no secret is read.
    pub fn open(target: &Target) -> Result<Self, EngineError> {
        let setup = |message: String| EngineError::Setup {
            target: target.name.clone(),
            message,
        };
        let options = PgConnectOptions::from_str(target.url.expose())
            .map_err(|e| {
                setup(format!(
                    "{} is not a usable PostgreSQL URL: {}",
                    target.url.redacted(),
                    redact_error(&e.to_string(), target.url.expose())
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
        let backends: Arc<Mutex<Vec<Backend>>> = Arc::default();
        let recorder = backends.clone();
        let p = &target.pool;
        let pool = PgPoolOptions::new()
            .max_connections(p.max_connections)
            .min_connections(0)
            .acquire_timeout(p.acquire_timeout)
            .idle_timeout(Some(p.idle_timeout))
            .max_lifetime(Some(p.max_lifetime))
            .test_before_acquire(p.test_before_acquire)
            .after_connect(move |conn, _meta| {
                let recorder = recorder.clone();
                Box::pin(async move {
                    record_backend(conn, &recorder).await;
                    Ok(())
                })
            })
            .connect_lazy_with(options.clone());
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
            max_connections: p.max_connections,
            test_before_acquire: p.test_before_acquire,
            thresholds: target.thresholds.clone(),
            backends,
            state: Box::default(),
        })
    }

    fn thresholds(&self, check: &str) -> CheckThresholds {
        self.thresholds
            .get(check)
            .cloned()
            .or_else(|| {
                CHECKS
                    .iter()
                    .find(|s| s.name == check)
                    .map(CheckThresholds::builtin)
            })
            .unwrap_or(CheckThresholds {
                enabled: true,
                warning: None,
                critical: None,
                floor: None,
            })
    }

    fn enabled(&self, check: &str) -> bool {
        self.thresholds.get(check).is_none_or(|t| t.enabled)
    }

    fn enabled_checks(&self) -> Vec<&'static str> {
        NAMES.iter().copied().filter(|c| self.enabled(c)).collect()
    }

    /// Connect options with the password read now (a rotated password file is picked up by
    /// the next connection without a reload).
    fn connect_options(&self) -> Result<PgConnectOptions, String> {
        match (self.password)() {
            Ok(Some(secret)) => Ok((*self.options).clone().password(secret.expose())),
            Ok(None) => Ok((*self.options).clone()),
            Err(e) => Err(format!("cannot read the password: {e}")),
        }
    }

    /// One direct connection attempt, bounded by connect_timeout, to learn *why* a
    /// connection fails: the pool retries refused connections silently until its
    /// acquire_timeout and then reports only "timed out".
    async fn preflight(&self, opts: &PgConnectOptions) -> Result<(), String> {
        match tokio::time::timeout(self.connect_timeout, PgConnection::connect_with(opts)).await {
            Err(_) => Err(format!(
                "no answer from {} within {} (connect_timeout): host down, firewalled or overloaded?",
                self.endpoint,
                humantime::format_duration(self.connect_timeout)
            )),
            Ok(Err(e)) => Err(describe_connect_error(&e, &self.endpoint, &self.options)),
            Ok(Ok(conn)) => {
                let _ = tokio::time::timeout(self.connect_timeout, conn.close()).await;
                Ok(())
            }
        }
    }

    /// A pooled connection, or a one-line reason why there is none, within the connect
    /// timeout (plus acquire_timeout when the pool is busy).
    async fn connection(&self) -> Result<PoolConnection<Postgres>, String> {
        let opts = self.connect_options()?;
        self.pool.set_connect_options(opts.clone());
        if self.pool.size() == 0 {
            // A cold pool would have to connect, retrying a refused connection silently;
            // one direct attempt reports a down server at once. It costs one extra
            // connection when the pool starts (or after idle_timeout), not per round.
            self.preflight(&opts).await?;
        }
        match tokio::time::timeout(
            self.acquire_timeout + self.connect_timeout,
            self.pool.acquire(),
        )
        .await
        {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(sqlx::Error::PoolTimedOut)) | Err(_) => {
                self.preflight(&opts).await?;
                Err(format!(
                    "{}: no free connection within acquire_timeout {} (pool of {}: a previous round still running?)",
                    self.endpoint,
                    humantime::format_duration(self.acquire_timeout),
                    self.max_connections
                ))
            }
            Ok(Err(e)) => Err(describe_connect_error(&e, &self.endpoint, &self.options)),
        }
    }

    /// A second pooled connection for running probes side by side: an idle one, or a new
    /// one when the pool may grow. Never waits long: without it the probes run one after
    /// the other. After a failure (e.g. a CONNECTION LIMIT used up) it is not tried again for
    /// a while, so such a server is not asked for a connection every round.
    async fn second_connection(&self, st: &mut RoundState) -> Option<PoolConnection<Postgres>> {
        if self.max_connections < 2 {
            return None;
        }
        if let Some(mut c) = self.pool.try_acquire() {
            // try_acquire skips test_before_acquire: make sure the connection survived
            // (e.g. a server restart) before the table probe depends on it.
            if !self.test_before_acquire {
                return Some(c);
            }
            if let Ok(Ok(())) = tokio::time::timeout(self.connect_timeout, c.ping()).await {
                return Some(c);
            }
            c.close_on_drop();
        }
        if self.pool.size() >= self.max_connections
            || st
                .second_failed
                .is_some_and(|at| at.elapsed() < SECOND_CONNECTION_RETRY)
        {
            return None;
        }
        let wait = self.connect_timeout.min(Duration::from_secs(1));
        match tokio::time::timeout(wait, self.pool.acquire()).await {
            Ok(Ok(c)) => Some(c),
            _ => {
                st.second_failed = Some(Instant::now());
                None
            }
        }
    }

    /// Runs one health round. Never fails: an unreachable server is a CRITICAL
    /// connectivity measurement, and a probe that fails makes only its checks UNKNOWN.
    pub async fn health(&self, opts: &HealthOptions) -> HealthReport {
        let mut st = self.state.lock().await;
        let cached_id = st.server_id.as_ref().map(|(id, _)| id.clone());
        let unreachable_report = |message: String| HealthReport {
            measurements: unreachable(&message, &self.enabled_checks()),
            server_id: cached_id.clone(),
            server_checks: Vec::new(),
            table_stats: Vec::new(),
        };
        // Pooled connections are not pinged before use (a round trip each): a connection
        // the server has closed fails its first statement and is replaced here, once per
        // pooled connection at most.
        let mut attempts = 0;
        let (mut conn, instance, latency_ms) = loop {
            let mut conn = match self.connection().await {
                Ok(c) => c,
                Err(message) => {
                    tracing::debug!(target_name = %self.target, %message, "postgres unreachable");
                    return unreachable_report(message);
                }
            };
            let started = Instant::now();
            let instance = sqlx::query(sql::INSTANCE).fetch_one(&mut *conn).await;
            let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
            match instance {
                Err(e) if connection_lost(&e) && attempts < self.max_connections => {
                    tracing::debug!(target_name = %self.target, error = %e, "pooled connection lost; using another");
                    conn.close_on_drop();
                    attempts += 1;
                    // Perhaps a restart, which changes the server's identity.
                    st.server_id = None;
                }
                instance => break (conn, instance, latency_ms),
            }
        };
        let inst = match instance
            .map_err(|e| e.to_string())
            .and_then(|r| decode_instance(&r).map_err(|e| e.to_string()))
        {
            Ok(i) => i,
            Err(e) => {
                return unreachable_report(format!(
                    "{}: connected, but the first probe failed: {e}",
                    self.endpoint
                ));
            }
        };
        let connectivity = Measurement::value(
            "connectivity",
            Observation::new(latency_ms).detail(format!(
                "PostgreSQL {}, {}",
                version_text(inst.version_num),
                if inst.in_recovery {
                    "standby"
                } else {
                    "primary"
                }
            )),
        );
        if inst.version_num < MIN_VERSION_NUM {
            let reason = format!(
                "PostgreSQL {} is older than 13, the oldest version dbwarden supports",
                version_text(inst.version_num)
            );
            let mut measurements = vec![connectivity];
            measurements.extend(
                self.enabled_checks()
                    .into_iter()
                    .map(|c| Measurement::unknown(c, reason.clone(), None)),
            );
            return HealthReport {
                measurements,
                server_id: cached_id,
                server_checks: Vec::new(),
                table_stats: Vec::new(),
            };
        }

        let server_id = match &st.server_id {
            Some((id, at)) if at.elapsed() < SERVER_ID_TTL => id.clone(),
            _ => match sqlx::query_scalar::<_, String>(sql::SERVER_ID)
                .fetch_one(&mut *conn)
                .await
            {
                Ok(id) => {
                    st.server_id = Some((id.clone(), Instant::now()));
                    id
                }
                // Not cached: the next round asks again.
                Err(_) => self.endpoint.clone(),
            },
        };

        // Other targets of this server may measure some server-level checks this round.
        let elsewhere = |check: &str| opts.owner_of(&server_id, check);
        // The activity probe's server sections are needed unless others measure every
        // server-level check this target has enabled (disk_space needs no query).
        let server_level = SERVER_CHECKS
            .iter()
            .any(|c| *c != checks::DISK_SPACE && self.enabled(c) && elsewhere(c).is_none());

        // The two larger probes run side by side when the pool has a second connection,
        // so a round's wall time stays close to the server's time for it.
        let mut second = self.second_connection(&mut st).await;
        let (activity, tables) = match second.as_mut() {
            Some(other) => {
                let (a, t) = tokio::join!(
                    probe_activity(&mut conn, &inst.user, server_level),
                    probe_tables(other, &inst.user, inst.now)
                );
                match t {
                    // The second connection was closed by the server: drop it, use ours.
                    Err(e) if e.lost => {
                        other.close_on_drop();
                        (a, probe_tables(&mut conn, &inst.user, inst.now).await)
                    }
                    t => (a, t),
                }
            }
            None => {
                let a = probe_activity(&mut conn, &inst.user, server_level).await;
                (a, probe_tables(&mut conn, &inst.user, inst.now).await)
            }
        };
        drop(second);
        let archive_ready = if elsewhere(checks::ARCHIVER).is_none()
            && inst.archive_mode != "off"
            && inst.monitor
            && self.enabled(checks::ARCHIVER)
        {
            sqlx::query_scalar::<_, f64>(sql::ARCHIVE_READY)
                .fetch_one(&mut *conn)
                .await
                .ok()
        } else {
            None
        };
        self.refresh_slow(&mut st, &mut conn, &inst.user).await;
        drop(conn);

        let mut measurements = vec![connectivity];

        // Counter deltas; the baseline moves forward every round.
        let counter_ms = probe::counter_checks(st.counters.as_ref(), &inst.counters);
        st.counters = Some(inst.counters);

        let now = Instant::now();
        let first_seen: HashMap<i64, f64> = match &tables {
            Ok(rows) => {
                let waiting: std::collections::HashSet<i64> = rows
                    .iter()
                    .filter(|r| {
                        r.last_analyze.is_none()
                            && r.needs_analyze(inst.analyze_threshold, inst.analyze_scale)
                    })
                    .map(|r| r.relid)
                    .collect();
                st.never_analyzed.retain(|k, _| waiting.contains(k));
                waiting
                    .iter()
                    .map(|id| {
                        let since = *st.never_analyzed.entry(*id).or_insert(now);
                        (*id, now.duration_since(since).as_secs_f64())
                    })
                    .collect()
            }
            Err(_) => HashMap::new(),
        };

        // As a standby: how long replay has stood at its current position (rounds only
        // see it move or stand; the first sighting of a position starts the clock).
        let replayed = activity
            .as_ref()
            .ok()
            .and_then(|a| a.standby.as_ref())
            .and_then(|s| s.replayed);
        let stalled_for = match (replayed, st.standby_replay) {
            (Some(now), Some((pos, since))) if now <= pos => Some(since.elapsed().as_secs_f64()),
            _ => None,
        };
        st.standby_replay = match (replayed, st.standby_replay) {
            (Some(now), Some((pos, since))) if now <= pos => Some((pos, since)),
            (Some(now), _) => Some((now, Instant::now())),
            (None, _) => None,
        };

        for &check in NAMES {
            if !self.enabled(check) {
                continue;
            }
            if let Some(owner) = elsewhere(check)
                && SERVER_CHECKS.contains(&check)
            {
                measurements.push(super::measured_elsewhere(check, &server_id, owner));
                continue;
            }
            let t = self.thresholds(check);
            let act = activity.as_ref();
            let tab = tables.as_ref();
            let m = match check {
                checks::CONNECTIONS => act.map(|a| probe::connections(&inst, a)),
                checks::CONNECTION_LIMIT => act.map(|a| probe::connection_limit(&inst, a)),
                checks::LONG_QUERY => act.map(|a| probe::long_queries(&inst, a)),
                checks::IDLE_IN_TRANSACTION => act.map(|a| probe::idle_in_transaction(&inst, a)),
                checks::BLOCKED_SESSIONS => act.map(|a| probe::blocked_sessions(&inst, a)),
                checks::CACHE_HIT | checks::DEADLOCKS | checks::TEMP_FILES => Ok(counter_ms
                    .iter()
                    .find(|m| m.check == check)
                    .cloned()
                    .unwrap_or_else(|| Measurement::unknown(check, "not measured", None))),
                checks::WRAPAROUND => act.map(|a| probe::wraparound(&inst, a)),
                checks::DEAD_TUPLES => tab.map(|r| probe::dead_tuples(r, &t)),
                checks::STALE_STATS => tab.map(|r| probe::stale_stats(&inst, r, &first_seen, &t)),
                checks::SEQ_SCANS => tab.map(|r| probe::seq_scans(r, &t)),
                checks::REPLICATION_LAG => {
                    act.map(|a| probe::replication_lag(&inst, a, stalled_for))
                }
                checks::REPLICATION_SLOTS => act.map(probe::replication_slots),
                checks::DATABASE_SIZE => Ok(Cached::measure(&st.database_size, check, |s, age| {
                    probe::database_size(&inst.db, *s, age)
                })),
                checks::INVALID_INDEXES => Ok(Cached::measure(&st.indexes, check, |l, age| {
                    probe::invalid_indexes(l, age)
                })),
                checks::UNUSED_INDEXES => Ok(Cached::measure(&st.indexes, check, |l, age| {
                    probe::unused_indexes(l, age)
                })),
                checks::ARCHIVER => act.map(|a| probe::archiver(&inst, a, archive_ready, &t)),
                checks::PREPARED_XACTS => act.map(probe::prepared_xacts),
                checks::XMIN_HORIZON => act.map(|a| probe::xmin_horizon(&inst, a)),
                checks::BLOAT => Ok(Cached::measure(&st.bloat, check, |rows, age| {
                    probe::bloat(rows, &inst.user, age, &t)
                })),
                checks::DUPLICATE_INDEXES => {
                    Ok(Cached::measure(&st.duplicates, check, |g, age| {
                        probe::duplicate_indexes(g, age)
                    }))
                }
                checks::DISK_SPACE => Ok(self.disk_space(&inst)),
                _ => continue,
            };
            let m = m.unwrap_or_else(|e| e.measurement(check));
            let m = if SERVER_CHECKS.contains(&check) {
                m.with_scope(Scope::Server(server_id.clone()))
            } else {
                m
            };
            measurements.push(m);
        }

        let table_stats = match &tables {
            Ok(rows) => table_stats(rows, &mut st.tables),
            Err(_) => Vec::new(),
        };
        // disk_space "not visible from here" is no measurement: a target on the database
        // host should measure it instead.
        let mut server_checks = super::measured_server_checks(&measurements, opts);
        server_checks.retain(|c| {
            *c != checks::DISK_SPACE
                || measurements.iter().any(|m| {
                    m.check == checks::DISK_SPACE && matches!(m.outcome, Outcome::Values(_))
                })
        });
        HealthReport {
            measurements,
            server_id: Some(server_id),
            server_checks,
            table_stats,
        }
    }

    /// Runs the probes on slower cadences whose last result is older than their interval
    /// (or missing): database size, bloat estimate, duplicate indexes.
    async fn refresh_slow(&self, st: &mut RoundState, conn: &mut PgConnection, user: &str) {
        if (self.enabled(checks::INVALID_INDEXES) || self.enabled(checks::UNUSED_INDEXES))
            && Cached::due(&st.indexes, CATALOG_INTERVAL)
        {
            let result = match sqlx::query(sql::INDEXES).fetch_one(&mut *conn).await {
                Ok(row) => json_list(&row, "invalid_json")
                    .and_then(|invalid| {
                        Ok(IndexLists {
                            invalid,
                            unused: json_list(&row, "unused_json")?,
                        })
                    })
                    .map_err(|e| ProbeError {
                        reason: format!("could not read the index probe: {e}"),
                        fix: None,
                        transient: false,
                        lost: false,
                    }),
                Err(e) => Err(probe_error(&e, "the index probe", user)),
            };
            st.indexes = Some(Cached {
                at: Instant::now(),
                result,
            });
        }
        if self.enabled(checks::DATABASE_SIZE) && Cached::due(&st.database_size, CATALOG_INTERVAL) {
            let result = sqlx::query_scalar::<_, f64>(sql::DATABASE_SIZE)
                .fetch_one(&mut *conn)
                .await
                .map_err(|e| probe_error(&e, "pg_database_size", user));
            st.database_size = Some(Cached {
                at: Instant::now(),
                result,
            });
        }
        if self.enabled(checks::BLOAT) && Cached::due(&st.bloat, EXPENSIVE_INTERVAL) {
            let floor = self.thresholds(checks::BLOAT).floor.unwrap_or(0.0);
            let result = match sqlx::query(sql::BLOAT)
                .bind(floor)
                .fetch_all(&mut *conn)
                .await
            {
                Ok(rows) => rows
                    .iter()
                    .map(|r| {
                        Ok(BloatRow {
                            name: r.try_get("name")?,
                            real_size: r.try_get::<Option<f64>, _>("real_size")?.unwrap_or(0.0),
                            bloat_size: r.try_get::<Option<f64>, _>("bloat_size")?.unwrap_or(0.0),
                            visible: r.try_get::<Option<bool>, _>("visible")?.unwrap_or(false),
                        })
                    })
                    .collect::<Result<Vec<_>, sqlx::Error>>()
                    .map_err(|e| probe_error(&e, "the bloat estimate", user)),
                Err(e) => Err(probe_error(&e, "the bloat estimate", user)),
            };
            st.bloat = Some(Cached {
                at: Instant::now(),
                result,
            });
        }
        if self.enabled(checks::DUPLICATE_INDEXES)
            && Cached::due(&st.duplicates, EXPENSIVE_INTERVAL)
        {
            let result = match sqlx::query(sql::DUPLICATE_INDEXES)
                .fetch_all(&mut *conn)
                .await
            {
                Ok(rows) => rows
                    .iter()
                    .map(|r| {
                        Ok(DuplicateGroup {
                            table: r.try_get("tbl")?,
                            names: r.try_get("names")?,
                            sizes: r.try_get("sizes")?,
                        })
                    })
                    .collect::<Result<Vec<_>, sqlx::Error>>()
                    .map_err(|e| probe_error(&e, "the duplicate-index analysis", user)),
                Err(e) => Err(probe_error(&e, "the duplicate-index analysis", user)),
            };
            st.duplicates = Some(Cached {
                at: Instant::now(),
                result,
            });
        }
    }

    fn disk_space(&self, inst: &Instance) -> Measurement {
        let not_visible = |why: &str| {
            Measurement::verdict(
                checks::DISK_SPACE,
                Status::Ok,
                None,
                format!("data directory not visible from here ({why})"),
            )
        };
        if !self.local {
            return not_visible("the server is on another host");
        }
        let Some(dir) = &inst.data_directory else {
            return not_visible(&format!(
                "role {} may not read data_directory: GRANT pg_read_all_settings or pg_monitor",
                inst.user
            ));
        };
        let dir = std::path::Path::new(dir);
        let Some(data) = disk::usage(dir) else {
            return not_visible(&format!(
                "{} is not accessible to this process",
                dir.display()
            ));
        };
        let mut obs = vec![Observation::new(data.used_percent()).detail(format!(
            "{} available of {} at {}",
            crate::health::Unit::Bytes.format(data.available),
            crate::health::Unit::Bytes.format(data.total),
            dir.display()
        ))];
        // pg_wal on a filesystem of its own (visible only when this process may enter the
        // data directory, i.e. runs as postgres or root).
        let wal = dir.join("pg_wal");
        if let Some(w) = disk::usage(&wal).filter(|w| w.fsid != data.fsid) {
            obs.push(
                Observation::new(w.used_percent())
                    .subject("pg_wal")
                    .detail(format!(
                        "{} available of {} at {}",
                        crate::health::Unit::Bytes.format(w.available),
                        crate::health::Unit::Bytes.format(w.total),
                        wal.display()
                    )),
            );
        }
        Measurement::values(checks::DISK_SPACE, obs)
    }

    /// Cancels this engine's statements still running on the server (shutdown, a job
    /// timeout): dropping a sqlx future does not stop the statement, so the backends we
    /// opened are told to cancel with `pg_cancel_backend` from a fresh connection.
    pub async fn cancel_running(&self) {
        let known = self.backends.lock().await.clone();
        if known.is_empty() {
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
        let pids: Vec<i32> = known.iter().map(|b| b.pid).collect();
        let started: Vec<String> = known.iter().map(|b| b.started.clone()).collect();
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

    /// The backend pids of this engine's pooled connections seen so far (diagnostics, tests).
    pub async fn backend_pids(&self) -> Vec<i32> {
        self.backends.lock().await.iter().map(|b| b.pid).collect()
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// `server_level`: with the server-level sections (see [`sql::ACTIVITY_DATABASE`]).
async fn probe_activity(
    conn: &mut PgConnection,
    user: &str,
    server_level: bool,
) -> Result<Activity, ProbeError> {
    let text = if server_level {
        sql::ACTIVITY
    } else {
        sql::ACTIVITY_DATABASE
    };
    match sqlx::query(text).fetch_one(&mut *conn).await {
        Ok(row) => decode_activity(&row).map_err(|e| ProbeError {
            reason: format!("could not read the activity probe: {e}"),
            fix: None,
            transient: false,
            lost: false,
        }),
        Err(e) => Err(probe_error(&e, "the activity probe", user)),
    }
}

async fn probe_tables(
    conn: &mut PgConnection,
    user: &str,
    now: f64,
) -> Result<Vec<TableRow>, ProbeError> {
    match sqlx::query(sql::TABLES).fetch_all(&mut *conn).await {
        Ok(rows) => rows
            .iter()
            .map(|r| decode_table(r, now))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ProbeError {
                reason: format!("could not read the table probe: {e}"),
                fix: None,
                transient: false,
                lost: false,
            }),
        Err(e) => Err(probe_error(&e, "the table probe", user)),
    }
}

/// Remembers a new pooled connection's backend. Never fails the connection: without the
/// record, cancel_running merely cannot reach that backend.
async fn record_backend(conn: &mut PgConnection, backends: &Mutex<Vec<Backend>>) {
    match sqlx::query_as::<_, (i32, Option<String>)>(sql::BACKEND_IDENTITY)
        .fetch_one(&mut *conn)
        .await
    {
        Ok((pid, Some(started))) => {
            let mut b = backends.lock().await;
            b.push(Backend { pid, started });
            // Pools are small; older entries belong to connections long closed.
            let excess = b.len().saturating_sub(64);
            b.drain(..excess);
        }
        Ok((_, None)) => {}
        Err(e) => tracing::debug!(error = %e, "could not record the backend pid"),
    }
}

fn version_text(num: i32) -> String {
    if num >= 100_000 {
        format!("{}.{}", num / 10_000, num % 10_000)
    } else {
        format!("{}.{}.{}", num / 10_000, num / 100 % 100, num % 100)
    }
}

/// A URL parse error could quote the URL; hide any password in it.
fn redact_error(message: &str, url: &str) -> String {
    match url::Url::parse(url)
        .ok()
        .and_then(|u| u.password().map(str::to_string))
    {
        Some(p) if !p.is_empty() => message.replace(&p, "***"),
        _ => message.to_string(),
    }
}

/// A one-line reason for a failed connection, naming the endpoint and what to check.
fn describe_connect_error(e: &sqlx::Error, endpoint: &str, opts: &PgConnectOptions) -> String {
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

/// Maps a failed probe query to the reason shown in its checks' UNKNOWN result.
fn probe_error(e: &sqlx::Error, what: &str, user: &str) -> ProbeError {
    if let sqlx::Error::Database(d) = e {
        let code = d.code().map(|c| c.to_string()).unwrap_or_default();
        return match code.as_str() {
            "42501" => ProbeError {
                reason: format!("{what} was refused: {}", d.message()),
                fix: Some(grant_monitor(user)),
                transient: false,
                lost: false,
            },
            "57014" if d.message().contains("statement timeout") => ProbeError {
                reason: format!("{what} ran longer than statement_timeout {STATEMENT_TIMEOUT}"),
                fix: None,
                transient: false,
                lost: false,
            },
            "57014" => ProbeError {
                reason: format!("{what} was cancelled (shutdown or a job timeout)"),
                fix: None,
                transient: true,
                lost: false,
            },
            "55P03" => ProbeError {
                reason: format!("{what} waited longer than lock_timeout {LOCK_TIMEOUT} for a lock"),
                fix: None,
                transient: false,
                lost: false,
            },
            _ => ProbeError {
                reason: format!("{what} failed: {}", d.message()),
                fix: None,
                transient: false,
                lost: connection_lost(e),
            },
        };
    }
    ProbeError {
        reason: format!("{what} failed: {e}"),
        fix: None,
        transient: false,
        lost: connection_lost(e),
    }
}

/// The connection itself is gone (a server restart, `idle_session_timeout`,
/// `pg_terminate_backend`), not the statement: another connection will do.
fn connection_lost(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(d) => {
            matches!(d.code().as_deref(), Some("57P01" | "57P02" | "57P03"))
        }
        _ => false,
    }
}

fn decode_instance(r: &PgRow) -> Result<Instance, sqlx::Error> {
    Ok(Instance {
        version_num: r.try_get("version_num")?,
        db: r.try_get("db")?,
        user: r.try_get("usr")?,
        in_recovery: r.try_get("in_recovery")?,
        read_stats: r.try_get("read_stats")?,
        read_settings: r.try_get("read_settings")?,
        monitor: r.try_get("monitor")?,
        max_connections: r.try_get("max_connections")?,
        su_reserved: r.try_get("su_reserved")?,
        reserved: r.try_get("reserved")?,
        freeze_max_age: r.try_get("freeze_max_age")?,
        analyze_threshold: r.try_get("analyze_threshold")?,
        analyze_scale: r.try_get("analyze_scale")?,
        block_size: r.try_get("block_size")?,
        archive_mode: r.try_get("archive_mode")?,
        now: r.try_get("now")?,
        data_directory: r.try_get("data_directory")?,
        counters: DbCounters {
            blks_hit: r.try_get::<Option<f64>, _>("blks_hit")?.unwrap_or(0.0),
            blks_read: r.try_get::<Option<f64>, _>("blks_read")?.unwrap_or(0.0),
            deadlocks: r.try_get::<Option<f64>, _>("deadlocks")?.unwrap_or(0.0),
            temp_files: r.try_get::<Option<f64>, _>("temp_files")?.unwrap_or(0.0),
            temp_bytes: r.try_get::<Option<f64>, _>("temp_bytes")?.unwrap_or(0.0),
            stats_reset: r.try_get("stats_reset")?,
        },
        db_connlimit: r.try_get::<Option<f64>, _>("db_connlimit")?.unwrap_or(-1.0),
        role_connlimit: r
            .try_get::<Option<f64>, _>("role_connlimit")?
            .unwrap_or(-1.0),
    })
}

fn json_list<T: serde::de::DeserializeOwned>(r: &PgRow, col: &str) -> Result<Vec<T>, String> {
    let text: Option<String> = r.try_get(col).map_err(|e| e.to_string())?;
    match text {
        None => Ok(Vec::new()),
        Some(t) => serde_json::from_str(&t).map_err(|e| format!("{col}: {e}")),
    }
}

fn json_one<T: serde::de::DeserializeOwned>(r: &PgRow, col: &str) -> Result<Option<T>, String> {
    let text: Option<String> = r.try_get(col).map_err(|e| e.to_string())?;
    match text {
        None => Ok(None),
        Some(t) => serde_json::from_str(&t)
            .map(Some)
            .map_err(|e| format!("{col}: {e}")),
    }
}

fn decode_activity(r: &PgRow) -> Result<Activity, String> {
    let num = |col: &str| -> Result<f64, String> {
        r.try_get::<Option<f64>, _>(col)
            .map(|v| v.unwrap_or(0.0))
            .map_err(|e| e.to_string())
    };
    Ok(Activity {
        client_connections: num("client_connections")?,
        db_connections: num("db_connections")?,
        role_connections: num("role_connections")?,
        long: json_list(r, "long_json")?,
        idle: json_list(r, "idle_json")?,
        blocked: json_list(r, "blocked_json")?,
        xmin: json_list(r, "xmin_json")?,
        databases: json_list(r, "databases_json")?,
        oldest: json_list(r, "oldest_json")?,
        replicas: json_list(r, "replicas_json")?,
        standby: json_one(r, "standby_json")?,
        slots: json_list(r, "slots_json")?,
        prepared: json_list(r, "prepared_json")?,
        archiver: json_one(r, "archiver_json")?,
    })
}

/// `now`: the server's clock from the instance probe (vacuum and analyze ages use it).
fn decode_table(r: &PgRow, now: f64) -> Result<TableRow, sqlx::Error> {
    let num = |col: &str| -> Result<f64, sqlx::Error> {
        Ok(r.try_get::<Option<f64>, _>(col)?.unwrap_or(0.0))
    };
    Ok(TableRow {
        relid: r.try_get("relid")?,
        name: r.try_get("name")?,
        live: num("live")?,
        dead: num("dead")?,
        mod_since_analyze: num("mod_since_analyze")?,
        ins: num("ins")?,
        upd: num("upd")?,
        del: num("del")?,
        seq_scan: num("seq_scan")?,
        idx_scan: r.try_get("idx_scan")?,
        size: num("size")?,
        last_vacuum: r.try_get("last_vacuum")?,
        last_analyze: r.try_get("last_analyze")?,
        now,
        reloptions: r.try_get("reloptions")?,
    })
}

/// Per-table statistics of this round, with insert/update/delete deltas against the
/// previous round (none on the first, or when a counter went backwards: a stats reset).
fn table_stats(rows: &[TableRow], previous: &mut HashMap<i64, [f64; 3]>) -> Vec<TableStat> {
    let mut next = HashMap::with_capacity(rows.len());
    let out = rows
        .iter()
        .map(|r| {
            let now = [r.ins, r.upd, r.del];
            let delta = previous.get(&r.relid).and_then(|p| {
                (now.iter().zip(p).all(|(n, p)| n >= p))
                    .then(|| [now[0] - p[0], now[1] - p[1], now[2] - p[2]])
            });
            next.insert(r.relid, now);
            TableStat {
                table: r.name.clone(),
                rows: Some(r.live),
                dead_rows: Some(r.dead),
                size_bytes: Some(r.size),
                inserts_delta: delta.map(|d| d[0]),
                updates_delta: delta.map(|d| d[1]),
                deletes_delta: delta.map(|d| d[2]),
                seq_scans: Some(r.seq_scan),
                idx_scans: r.idx_scan,
                last_vacuum: r.last_vacuum.map(|v| v as i64),
                last_analyze: r.last_analyze.map(|v| v as i64),
                // PostgreSQL has no cheap equivalent: dead tuples and the bloat estimate
                // stand for free space, and no catalog records the last write.
                free_bytes: None,
                last_modified: None,
            }
        })
        .collect();
    *previous = next;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_read_like_postgres_prints_them() {
        assert_eq!(version_text(150_020), "15.20");
        assert_eq!(version_text(130_004), "13.4");
        assert_eq!(version_text(90_624), "9.6.24");
    }

    #[test]
    fn table_deltas_start_on_the_second_round_and_survive_resets() {
        let mut prev = HashMap::new();
        let row = |ins: f64| TableRow {
            relid: 7,
            name: "public.t".into(),
            ins,
            upd: 5.0,
            del: 1.0,
            ..TableRow::default()
        };
        let first = table_stats(&[row(100.0)], &mut prev);
        assert_eq!(first[0].inserts_delta, None);
        let second = table_stats(&[row(150.0)], &mut prev);
        assert_eq!(second[0].inserts_delta, Some(50.0));
        assert_eq!(second[0].updates_delta, Some(0.0));
        let reset = table_stats(&[row(3.0)], &mut prev);
        assert_eq!(reset[0].inserts_delta, None);
    }

    #[test]
    fn url_errors_never_show_the_password() {
        assert_eq!(
            redact_error(
                "bad url postgres://u:hunter2@h/db",
                "postgres://u:hunter2@h/db"
            ),
            "bad url postgres://u:***@h/db"
        );
    }

    #[test]
    fn probe_errors_suggest_the_grant() {
        let e = probe_error(&sqlx::Error::PoolClosed, "the table probe", "mon");
        assert!(e.reason.starts_with("the table probe failed"));
        assert_eq!(e.fix, None);
    }
}
