//! MySQL/MariaDB engine: connectivity and latency, connections vs max_connections,
//! long-running queries, replica threads and lag, InnoDB buffer pool hit ratio, deadlock and
//! slow-query deltas, history list length, and table fragmentation (data_free).
//!
//! One round costs a handful of cheap round trips on one pooled connection, all through
//! the text protocol (no server-side prepared statements) and tagged `/* dbwarden */`:
//! a variables SELECT (also the latency probe), `SHOW GLOBAL STATUS WHERE ...`,
//! `information_schema.INNODB_METRICS` (two rows; also tells whether PROCESS is granted),
//! the processlist filtered server-side to long runners, `SHOW REPLICA STATUS` (or its
//! older spelling), and `information_schema.TABLES` for the target's own database at most
//! every 5 minutes and in rounds that report table statistics (then also, when
//! performance_schema is on, its tables' row counters). Every connection gets a statement
//! time limit and short lock waits on connect, so a probe never hangs on a locked table.
//! The connection id is registered in the run's scope, so cancelling the run sends
//! `KILL QUERY` for it alone.
//!
//! - `conn`: options, the pool, session settings, connect errors, `KILL QUERY`;
//! - `queries`: the probe queries and their typed rows;
//! - `checks`: the catalogue and the pure rules that turn rows into measurements;
//! - `statements`: slow-query sampling (events_statements_summary_by_digest, processlist).
//!
//! MySQL and MariaDB differ here; both are handled:
//! - server identity: MySQL `@@server_uuid`; MariaDB has none, so `hostname:port:server_id`
//!   as the server reports them (the same for every target that is a database on it);
//! - statement limit: MySQL `max_execution_time` (ms, SELECT only), MariaDB
//!   `max_statement_time` (s); MySQL 8 also `information_schema_stats_expiry`;
//! - processlist: MySQL 8.0.22+ `performance_schema.processlist` when performance_schema
//!   is on, else `information_schema.PROCESSLIST` (MariaDB: with `TIME_MS`);
//! - replication: MySQL 8.0.22+ `SHOW REPLICA STATUS` (`Replica_*`/`Source_*` columns),
//!   older MySQL `SHOW SLAVE STATUS`, MariaDB `SHOW ALL SLAVES STATUS` (every
//!   multi-source connection; `Slave_*`/`Master_*` columns);
//! - deadlocks and history list: MariaDB status variables `Innodb_deadlocks` and
//!   `Innodb_history_list_length` (no privilege needed); MySQL `INNODB_METRICS`
//!   `lock_deadlocks` and `trx_rseg_history_len` (PROCESS);
//! - INNODB_METRICS' enabled flag: MariaDB column `ENABLED`, MySQL column `STATUS`.

mod checks;
mod conn;
pub mod explain;
mod maintain;
mod queries;
pub mod statements;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sqlx::AssertSqlSafe;
use sqlx::mysql::MySqlConnection;

use self::checks::{
    AUTO_INCREMENT, BINLOG_SPACE, BUFFER_POOL_HIT, CLUSTER, CONNECTION_ERRORS, CONNECTIONS,
    ConnectingSince, DEADLOCKS, FRAGMENTATION, HISTORY_LIST, LONG_QUERY, LONG_TRANSACTION,
    REPLICA_LAG, REPLICA_THREADS, SLOW_QUERIES, TMP_DISK_TABLES, TableIo,
};
use self::conn::{
    Connector, ServerVersion, error_message, is_access_denied, is_timeout, number, text,
};
use self::queries::{
    auto_increment_columns, binary_logs, global_status, group_members, innodb_metrics,
    last_analyzed, oldest_transaction, replicas, shared_tablespace_tables, table_io_rows,
    table_rows,
};
use super::redact::{Dialect, query_for_message};
use super::round::{Checks, Round};
use super::{EngineError, HealthReport, RunScope, Session, TableStat};
use crate::config::Target;
use crate::health::delta::Counters;
use crate::health::{Measurement, Observation, Outcome, Scope, Status, Unit};

pub use self::checks::CHECKS;
pub use self::maintain::{MysqlMaintenance, quote};

/// The MySQL checks; in MySQL every one but fragmentation and auto_increment (the
/// target's own schema) is a fact of the whole server.
static TABLE: Checks = Checks {
    specs: CHECKS,
    server_level: &[
        CONNECTIONS,
        LONG_QUERY,
        REPLICA_LAG,
        REPLICA_THREADS,
        BUFFER_POOL_HIT,
        DEADLOCKS,
        SLOW_QUERIES,
        HISTORY_LIST,
        LONG_TRANSACTION,
        CONNECTION_ERRORS,
        TMP_DISK_TABLES,
        BINLOG_SPACE,
        CLUSTER,
    ],
};

/// information_schema.TABLES (fragmentation) is read at most this often unless the round
/// reports table statistics; in between the last fragmentation result is reused with its
/// age shown.
const TABLES_EVERY: Duration = Duration::from_secs(300);
/// At most this many long-running statements are listed per round.
const LONG_QUERY_LIMIT: u32 = 20;

/// Identifies the server for server-scoped checks. MySQL: its `server_uuid`; MariaDB: its
/// `server_uid` (`uuid` here too). A MariaDB too old to have one: `hostname:port:server_id`
/// as the server reports them, stable across restarts, the same for every database
/// (target) of one server whichever address a target uses to reach it, and different for
/// two instances on one host (port), but shared by unrelated servers alike in all three.
pub fn server_identity(
    uuid: Option<&str>,
    mariadb: bool,
    hostname: &str,
    port: &str,
    server_id: &str,
) -> String {
    match uuid.filter(|u| !u.is_empty()) {
        Some(u) if !mariadb => format!("mysql:{u}"),
        Some(u) => format!("mariadb:{u}"),
        None => format!(
            "{}:{hostname}:{port}:{server_id}",
            if mariadb { "mariadb" } else { "mysql" }
        ),
    }
}

/// What the first query of a round learned about the server.
struct ServerInfo {
    connection_id: u64,
    version_text: String,
    version: ServerVersion,
    current_user: String,
    server_id: String,
    max_connections: Option<f64>,
    performance_schema: bool,
    long_query_time: Option<f64>,
    database: Option<String>,
}

/// Whether this account has the PROCESS privilege (learned from INNODB_METRICS).
enum Process {
    Granted,
    Denied { fix: String },
    Unknown,
}

struct TablesCache {
    at: Instant,
    /// Set by [`MysqlEngine::refresh_tables_next_round`]: read again whatever the age.
    expired: bool,
    observations: Vec<Observation>,
    /// `None`: not read (the check was disabled then), so a round that wants it reads
    /// the tables again.
    auto_increment: Option<Measurement>,
}

/// What the schema's tables said this round: fragmentation, AUTO_INCREMENT use and (in
/// rounds that report them) table statistics.
struct SchemaReading {
    fragmentation: Measurement,
    auto_increment: Measurement,
    stats: Vec<TableStat>,
}

/// The stand-in for a check this round does not run (the round drops it).
fn disabled(check: &'static str) -> Measurement {
    Measurement::verdict(check, Status::Ok, None, "disabled")
}

/// `m` with "measured 3min ago" added to each value's detail (a reused result).
fn with_age(m: Measurement, age: &str) -> Measurement {
    match m.outcome {
        Outcome::Values(obs) => Measurement::values(
            m.check,
            obs.into_iter()
                .map(|mut o| {
                    o.detail = Some(match o.detail.take() {
                        Some(d) => format!("{d}; {age}"),
                        None => age.to_string(),
                    });
                    o
                })
                .collect(),
        ),
        _ => m,
    }
}

pub struct MysqlEngine {
    target: String,
    conn: Connector,
    /// The previous round's lifetime counters, for delta checks.
    previous: tokio::sync::Mutex<Option<(Instant, Counters)>>,
    tables: tokio::sync::Mutex<Option<TablesCache>>,
    /// The performance_schema reading of the tables' row counters at the previously
    /// reported table statistics: the baseline of the next report's write deltas (empty:
    /// none). Kept when a reading fails, so the next delta spans both intervals.
    io: tokio::sync::Mutex<BTreeMap<String, TableIo>>,
    /// MariaDB's `server_uid` (None: the server has none) and when it was read; it only
    /// changes with the server, so it is read every [`SERVER_UID_TTL`] and after a lost
    /// connection, not every round.
    server_uid: Mutex<Option<(Option<String>, Instant)>>,
    /// When each replication channel's IO thread was first seen connecting.
    connecting: Mutex<ConnectingSince>,
}

/// How long a MariaDB `server_uid` is reused before it is read again.
const SERVER_UID_TTL: Duration = Duration::from_secs(600);

impl MysqlEngine {
    /// The pool now (`/metrics`); `None` for a one-shot engine.
    pub fn pool_stats(&self) -> Option<crate::engine::PoolStats> {
        self.conn
            .pool
            .as_ref()
            .map(|p| crate::engine::PoolStats::of(p, &self.conn.waiting))
    }

    /// Prepares the engine: parses the URL and sets up a lazy pool. No I/O (the password
    /// file is read when a connection is made, so a rotated password is picked up).
    /// `one_shot`: no pool; each round opens one direct connection.
    pub fn open(target: &Target, one_shot: bool) -> Result<Self, EngineError> {
        let conn = Connector::new(target, one_shot).map_err(|message| EngineError::Setup {
            target: target.name.clone(),
            message,
        })?;
        Ok(MysqlEngine {
            target: target.name.clone(),
            conn,
            previous: tokio::sync::Mutex::new(None),
            tables: tokio::sync::Mutex::new(None),
            io: tokio::sync::Mutex::new(BTreeMap::new()),
            server_uid: Mutex::new(None),
            connecting: Mutex::new(ConnectingSince::default()),
        })
    }

    /// Stops the statements of `sessions` (`KILL QUERY` from a separate connection; the
    /// connections themselves stay).
    pub(crate) async fn cancel(&self, sessions: &[Session]) {
        let ids: Vec<u64> = sessions.iter().map(|s| s.id).collect();
        self.conn.kill_queries(&ids).await;
    }

    /// Runs `sql` on a connection of this engine registered in `scope`, as a run's long
    /// statement would. For tests of per-run cancellation.
    #[doc(hidden)]
    pub async fn run_in_scope(&self, sql: &str, scope: &RunScope) -> Result<(), String> {
        let mut conn = self.conn.acquire().await?;
        let id = sqlx::raw_sql("/* dbwarden */ SELECT CONNECTION_ID()")
            .fetch_one(&mut *conn)
            .await
            .and_then(|row| number(&row, 0))
            .map_err(|e| error_message(&e))?
            .unwrap_or(0.0) as u64;
        conn.enter(Session { id, started: None }, scope);
        let result = sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
            .execute(&mut *conn)
            .await;
        conn.release().await;
        result.map(|_| ()).map_err(|e| error_message(&e))
    }

    /// Runs one health round. Never fails: an unreachable server is CRITICAL on
    /// connectivity, a check that cannot be measured is UNKNOWN with the reason.
    pub(crate) async fn health(&self, round: &Round<'_>, scope: &RunScope) -> HealthReport {
        // Pooled connections are not pinged before use (a round trip each): one the
        // server has closed fails its first statement and is replaced here, once per
        // pooled connection at most.
        let mut attempts = 0;
        let (mut conn, info, started) = loop {
            let mut conn = match self.conn.acquire().await {
                Ok(c) => c,
                Err(message) => {
                    tracing::debug!(target_name = %self.target, error = %message, "mysql: unreachable");
                    return round.unreachable(&TABLE, &message, None);
                }
            };
            let started = Instant::now();
            match self.server_info(&mut conn).await {
                Ok(i) => break (conn, i, started),
                Err(e) => {
                    conn.discard();
                    if conn::connection_lost(&e) && attempts < self.conn.max_connections() {
                        self.conn.lost_connection();
                        // Perhaps a restart: read the server's identity again, and do not
                        // take performance_schema counters that restarted from zero (and
                        // may have grown past their old values) for a small delta.
                        *self.server_uid.lock().unwrap_or_else(|p| p.into_inner()) = None;
                        self.io.lock().await.clear();
                        tracing::debug!(target_name = %self.target, error = %error_message(&e), "mysql: pooled connection lost; using another");
                        attempts += 1;
                        continue;
                    }
                    return round.unreachable(
                        &TABLE,
                        &format!(
                            "{}: the first query failed: {}",
                            self.conn.place,
                            error_message(&e)
                        ),
                        None,
                    );
                }
            }
        };
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        conn.enter(
            Session {
                id: info.connection_id,
                started: None,
            },
            scope,
        );
        let connectivity = Measurement::value(
            "connectivity",
            Observation::new(latency_ms).detail(info.version_text.clone()),
        );
        // In MySQL every check but connectivity, fragmentation and auto_increment is
        // server-level.
        let others_measure_all = TABLE
            .server_level
            .iter()
            .all(|c| !round.measures(&TABLE, &info.server_id, c));
        let (measured, table_stats) = if others_measure_all {
            // Only the schema's tables are read. The counter baseline is dropped, so if
            // this target takes the server checks over later, it does not report a delta
            // spanning the time it did not look.
            *self.previous.lock().await = None;
            let r = self
                .tables(&mut conn, &info, &Process::Unknown, round)
                .await;
            (vec![r.fragmentation, r.auto_increment], r.stats)
        } else {
            // Checks measured elsewhere still run here (they share the round's few
            // statements with the others); the report shows them as measured elsewhere.
            self.probe(&mut conn, &info, round).await
        };
        conn.release().await;
        round.finish(
            &TABLE,
            connectivity,
            measured,
            Some(info.server_id.clone()),
            &[],
            table_stats,
        )
    }

    async fn server_info(&self, conn: &mut MySqlConnection) -> Result<ServerInfo, sqlx::Error> {
        let known = *self.conn.version.lock().unwrap_or_else(|p| p.into_inner());
        let mysql = known.is_some_and(|v| !v.is_mariadb());
        let sql = if mysql {
            "/* dbwarden */ SELECT CONNECTION_ID(), VERSION(), CURRENT_USER(), @@hostname, @@port, @@server_id, @@max_connections, @@performance_schema, @@long_query_time, DATABASE(), @@server_uuid"
        } else {
            "/* dbwarden */ SELECT CONNECTION_ID(), VERSION(), CURRENT_USER(), @@hostname, @@port, @@server_id, @@max_connections, @@performance_schema, @@long_query_time, DATABASE()"
        };
        let row = sqlx::raw_sql(sql).fetch_one(&mut *conn).await?;
        let version_text = text(&row, 1)?.unwrap_or_default();
        let version = ServerVersion::parse(&version_text);
        let uuid = if mysql {
            text(&row, 10)?
        } else {
            self.mariadb_uid(conn).await?
        };
        let hostname = text(&row, 3)?.unwrap_or_default();
        let port = text(&row, 4)?.unwrap_or_default();
        let server_id = text(&row, 5)?.unwrap_or_default();
        Ok(ServerInfo {
            connection_id: number(&row, 0)?.unwrap_or(0.0) as u64,
            current_user: text(&row, 2)?.unwrap_or_default(),
            server_id: server_identity(
                uuid.as_deref(),
                version.is_mariadb(),
                &hostname,
                &port,
                &server_id,
            ),
            max_connections: number(&row, 6)?,
            performance_schema: number(&row, 7)?.is_some_and(|v| v > 0.0),
            long_query_time: number(&row, 8)?,
            database: text(&row, 9)?,
            version,
            version_text,
        })
    }

    /// MariaDB's `server_uid` (10.6.19, 10.11.9, 11.4.3 and later): unique per instance,
    /// unlike `hostname:port:server_id`, which two unrelated servers can share (containers
    /// named alike, the default server_id 1). Read through information_schema, so an older
    /// server answers "none" instead of an error.
    async fn mariadb_uid(&self, conn: &mut MySqlConnection) -> Result<Option<String>, sqlx::Error> {
        if let Some((uid, at)) = self
            .server_uid
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            && at.elapsed() < SERVER_UID_TTL
        {
            return Ok(uid.clone());
        }
        let row = sqlx::raw_sql(
            "/* dbwarden */ SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_VARIABLES \
             WHERE VARIABLE_NAME = 'SERVER_UID'",
        )
        .fetch_optional(&mut *conn)
        .await?;
        let uid = match row {
            Some(r) => text(&r, 0)?.filter(|u| !u.is_empty()),
            None => None,
        };
        *self.server_uid.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((uid.clone(), Instant::now()));
        Ok(uid)
    }

    async fn probe(
        &self,
        conn: &mut MySqlConnection,
        info: &ServerInfo,
        round: &Round<'_>,
    ) -> (Vec<Measurement>, Vec<TableStat>) {
        let scope = Scope::Server(info.server_id.clone());
        let mut out = Vec::new();

        let status = global_status(conn).await;
        let metrics = innodb_metrics(conn, info.version).await;
        let process = match &metrics {
            Ok(_) => Process::Granted,
            Err(e) if is_access_denied(e) => Process::Denied {
                fix: checks::grant_fix(&error_message(e), "PROCESS", &info.current_user),
            },
            Err(e) => {
                tracing::debug!(target_name = %self.target, error = %error_message(e), "mysql: INNODB_METRICS not readable");
                Process::Unknown
            }
        };
        let status_err = status.as_ref().err().map(probe_failure);
        let status_text = status.unwrap_or_default();
        let status: BTreeMap<String, f64> = status_text
            .iter()
            .filter_map(|(k, v)| v.trim().parse::<f64>().ok().map(|n| (k.clone(), n)))
            .collect();
        let metrics = metrics.unwrap_or_default();

        // Connections.
        out.push(
            match (status.get("Threads_connected"), info.max_connections) {
                (Some(&connected), Some(max)) if max > 0.0 => {
                    let running = status.get("Threads_running").copied().unwrap_or(0.0);
                    let peak = status.get("Max_used_connections").copied().unwrap_or(0.0);
                    Measurement::value(
                        CONNECTIONS,
                        Observation::new(connected * 100.0 / max).detail(format!(
                            "{connected} of {max} connections, {running} running, peak {peak}"
                        )),
                    )
                }
                _ => Measurement::unknown(
                    CONNECTIONS,
                    status_err.clone().unwrap_or_else(|| {
                        "Threads_connected or max_connections not readable".into()
                    }),
                    None,
                ),
            }
            .with_scope(scope.clone()),
        );

        // Long-running statements.
        if round.enabled(LONG_QUERY) {
            let source = checks::processlist_source(info.version, info.performance_schema);
            let m = match &process {
                Process::Denied { .. } => Measurement::unknown(
                    LONG_QUERY,
                    source.process_reason(),
                    Some(source.process_fix(&info.current_user)),
                ),
                _ => match self.long_queries(conn, info, round).await {
                    Ok(obs) => Measurement::values(LONG_QUERY, obs),
                    Err(e) if is_access_denied(&e) => {
                        let msg = error_message(&e);
                        Measurement::unknown(
                            LONG_QUERY,
                            format!("permission denied: {msg}"),
                            Some(source.query_fix(&msg, &info.current_user)),
                        )
                    }
                    Err(e) => Measurement::unknown(LONG_QUERY, probe_failure(&e), None),
                },
            };
            out.push(m.with_scope(scope.clone()));
        }

        // Replication.
        if round.enabled(REPLICA_LAG) || round.enabled(REPLICA_THREADS) {
            match replicas(conn, info.version).await {
                Ok(mut channels) => {
                    self.connecting
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .update(&mut channels, Instant::now());
                    let (lag, threads) = checks::judge_replicas_with(
                        &channels,
                        &scope,
                        round.thresholds(REPLICA_LAG).critical,
                    );
                    out.push(lag);
                    out.push(threads);
                }
                Err(e) => {
                    let fallback = checks::replica_privilege(info.version);
                    out.push(
                        self.failed(REPLICA_LAG, &e, fallback, info)
                            .with_scope(scope.clone()),
                    );
                    out.push(
                        self.failed(REPLICA_THREADS, &e, fallback, info)
                            .with_scope(scope.clone()),
                    );
                }
            }
        }

        // Long transactions (InnoDB), idle ones included.
        if round.enabled(LONG_TRANSACTION) {
            let m = match &process {
                Process::Denied { fix } => Measurement::unknown(
                    LONG_TRANSACTION,
                    "information_schema.INNODB_TRX needs the PROCESS privilege",
                    Some(fix.clone()),
                ),
                _ => {
                    let min_secs = lowest_threshold(round, LONG_TRANSACTION, 60);
                    match queries::long_transactions(conn, min_secs, LONG_QUERY_LIMIT).await {
                        Ok(rows) => {
                            Measurement::values(LONG_TRANSACTION, checks::long_transactions(&rows))
                        }
                        Err(e) => self.failed(LONG_TRANSACTION, &e, "PROCESS", info),
                    }
                }
            };
            out.push(m.with_scope(scope.clone()));
        }

        // Binary log space.
        if round.enabled(BINLOG_SPACE) {
            let m = match binary_logs(conn).await {
                Ok(logs) => checks::binlog_space(logs.as_deref()),
                Err(e) => self.failed(
                    BINLOG_SPACE,
                    &e,
                    checks::binlog_privilege(info.version),
                    info,
                ),
            };
            out.push(m.with_scope(scope.clone()));
        }

        // Galera / Group Replication.
        if round.enabled(CLUSTER) {
            let m = match (&status_err, checks::galera(&status_text)) {
                (Some(err), _) => Measurement::unknown(CLUSTER, err.clone(), None),
                (None, Some(galera)) => galera,
                (None, None) if !info.version.is_mariadb() && info.performance_schema => {
                    match group_members(conn).await {
                        Ok(members) => {
                            checks::judge_cluster(None, checks::group_replication(&members))
                        }
                        Err(e) if is_access_denied(&e) => Measurement::unknown(
                            CLUSTER,
                            format!("permission denied: {}", error_message(&e)),
                            Some(format!(
                                "GRANT SELECT ON performance_schema.replication_group_members TO {}",
                                checks::grant_account(&info.current_user)
                            )),
                        ),
                        Err(e) => {
                            tracing::debug!(target_name = %self.target, error = %error_message(&e), "mysql: replication_group_members not readable");
                            checks::judge_cluster(None, None)
                        }
                    }
                }
                (None, None) => checks::judge_cluster(None, None),
            };
            out.push(m.with_scope(scope.clone()));
        }

        // Lifetime counters and their deltas.
        let innodb_counter = |status_name: &str,
                              metric: &str|
         -> Result<f64, (String, Option<String>)> {
            if let Some(v) = status.get(status_name) {
                return Ok(*v);
            }
            if let Some(err) = &status_err {
                return Err((err.clone(), None));
            }
            match (&process, metrics.get(metric)) {
                (_, Some((v, true))) => Ok(*v),
                (_, Some((_, false))) => Err((
                    format!("the InnoDB metric {metric} is disabled"),
                    Some(format!("SET GLOBAL innodb_monitor_enable = '{metric}'")),
                )),
                (Process::Denied { fix }, None) => Err((
                    format!(
                        "information_schema.INNODB_METRICS ({metric}) needs the PROCESS privilege"
                    ),
                    Some(fix.clone()),
                )),
                _ => Err((
                    format!("{status_name} / {metric} not available on this server"),
                    None,
                )),
            }
        };
        let mut counters = Counters::new();
        for (key, name) in [
            ("uptime", "Uptime"),
            ("bp_read_requests", "Innodb_buffer_pool_read_requests"),
            ("bp_reads", "Innodb_buffer_pool_reads"),
            ("slow_queries", "Slow_queries"),
            ("conn_err_max", "Connection_errors_max_connections"),
            ("aborted_connects", "Aborted_connects"),
            ("tmp_tables", "Created_tmp_tables"),
            ("tmp_disk_tables", "Created_tmp_disk_tables"),
        ] {
            if let Some(v) = status.get(name) {
                counters.insert(key.to_string(), *v);
            }
        }
        let deadlocks = innodb_counter("Innodb_deadlocks", "lock_deadlocks");
        if let Ok(v) = &deadlocks {
            counters.insert("deadlocks".into(), *v);
        }
        let now = Instant::now();
        {
            let mut previous = self.previous.lock().await;
            let elapsed = previous.as_ref().map(|(at, _)| now.duration_since(*at));
            let prev = previous.as_ref().map(|(_, c)| c);
            let interval = checks::interval_text(elapsed);
            let missing = |what: &str| {
                status_err
                    .clone()
                    .unwrap_or_else(|| format!("{what} not available on this server"))
            };
            out.push(
                match checks::subset(&counters, &["uptime", "bp_read_requests", "bp_reads"]) {
                    Some(c) => checks::delta_check(BUFFER_POOL_HIT, prev, &c, &scope, |inc| {
                        checks::buffer_pool_hit(inc, &interval)
                    }),
                    None => Measurement::unknown(
                        BUFFER_POOL_HIT,
                        missing("Innodb_buffer_pool_read_requests"),
                        None,
                    )
                    .with_scope(scope.clone()),
                },
            );
            out.push(
                match (
                    checks::subset(&counters, &["uptime", "deadlocks"]),
                    &deadlocks,
                ) {
                    (Some(c), _) => checks::delta_check(DEADLOCKS, prev, &c, &scope, |inc| {
                        checks::counter_increase(DEADLOCKS, "deadlocks", inc, interval.clone())
                    }),
                    (None, Err((reason, fix))) => {
                        Measurement::unknown(DEADLOCKS, reason.clone(), fix.clone())
                            .with_scope(scope.clone())
                    }
                    (None, Ok(_)) => Measurement::unknown(DEADLOCKS, missing("Uptime"), None)
                        .with_scope(scope.clone()),
                },
            );
            out.push(
                match checks::subset(&counters, &["uptime", "slow_queries"]) {
                    Some(c) => checks::delta_check(SLOW_QUERIES, prev, &c, &scope, |inc| {
                        let lqt = info
                            .long_query_time
                            .map(|s| format!("; long_query_time = {}", Unit::Seconds.format(s)))
                            .unwrap_or_default();
                        checks::counter_increase(
                            SLOW_QUERIES,
                            "slow_queries",
                            inc,
                            format!("{interval}{lqt}"),
                        )
                    }),
                    None => Measurement::unknown(SLOW_QUERIES, missing("Slow_queries"), None)
                        .with_scope(scope.clone()),
                },
            );
            out.push(
                match checks::subset(&counters, &["uptime", "conn_err_max", "aborted_connects"]) {
                    Some(c) => checks::delta_check(CONNECTION_ERRORS, prev, &c, &scope, |inc| {
                        checks::connection_errors(inc, &interval)
                    }),
                    None => Measurement::unknown(
                        CONNECTION_ERRORS,
                        missing("Connection_errors_max_connections or Aborted_connects"),
                        None,
                    )
                    .with_scope(scope.clone()),
                },
            );
            out.push(
                match checks::subset(&counters, &["uptime", "tmp_tables", "tmp_disk_tables"]) {
                    Some(c) => checks::delta_check(TMP_DISK_TABLES, prev, &c, &scope, |inc| {
                        checks::tmp_disk_tables(inc, &interval)
                    }),
                    None => {
                        Measurement::unknown(TMP_DISK_TABLES, missing("Created_tmp_tables"), None)
                            .with_scope(scope.clone())
                    }
                },
            );
            *previous = Some((now, counters));
        }

        // History list length.
        out.push(
            match innodb_counter("Innodb_history_list_length", "trx_rseg_history_len") {
                Ok(len) => {
                    let mut obs = Observation::new(len);
                    let t = round.thresholds(HISTORY_LIST);
                    let over = [t.warning, t.critical]
                        .into_iter()
                        .flatten()
                        .any(|l| len >= l);
                    if over && matches!(process, Process::Granted | Process::Unknown) {
                        match oldest_transaction(conn).await {
                            Ok(Some(oldest)) => obs = obs.detail(oldest),
                            Ok(None) => {}
                            // Say why the holder is not named rather than drop it silently.
                            Err(e) => obs = obs.detail(format!("oldest transaction not read: {e}")),
                        }
                    }
                    Measurement::value(HISTORY_LIST, obs)
                }
                Err((reason, fix)) => Measurement::unknown(HISTORY_LIST, reason, fix),
            }
            .with_scope(scope.clone()),
        );

        // Fragmentation, AUTO_INCREMENT use and table statistics of the target's database.
        let r = self.tables(conn, info, &process, round).await;
        out.push(r.fragmentation);
        out.push(r.auto_increment);
        (out, r.stats)
    }

    /// A probe query failed: UNKNOWN with the GRANT when a privilege is missing.
    fn failed(
        &self,
        check: &'static str,
        e: &sqlx::Error,
        privilege: &str,
        info: &ServerInfo,
    ) -> Measurement {
        if is_access_denied(e) {
            let msg = error_message(e);
            Measurement::unknown(
                check,
                format!("permission denied: {msg}"),
                Some(checks::grant_fix(&msg, privilege, &info.current_user)),
            )
        } else {
            Measurement::unknown(check, probe_failure(e), None)
        }
    }

    async fn long_queries(
        &self,
        conn: &mut MySqlConnection,
        info: &ServerInfo,
        round: &Round<'_>,
    ) -> Result<Vec<Observation>, sqlx::Error> {
        let t = round.thresholds(LONG_QUERY);
        let min = [t.warning, t.critical]
            .into_iter()
            .flatten()
            .fold(f64::INFINITY, f64::min);
        let min_secs = if min.is_finite() {
            min.floor().max(0.0) as u64
        } else {
            60
        };
        let source = checks::processlist_source(info.version, info.performance_schema);
        let (time_expr, table) = (source.time_expr, source.table);
        let sql = format!(
            "/* dbwarden */ SELECT ID, USER, HOST, DB, {time_expr}, STATE, LEFT(INFO, 2000) \
             FROM {table} \
             WHERE COMMAND IN ('Query', 'Execute') AND ID <> CONNECTION_ID() \
             AND USER NOT IN ('system user', 'event_scheduler') AND TIME >= {min_secs} \
             ORDER BY TIME DESC LIMIT {LONG_QUERY_LIMIT}"
        );
        let rows = sqlx::raw_sql(AssertSqlSafe(sql))
            .fetch_all(&mut *conn)
            .await?;
        let mut out = Vec::new();
        for row in rows {
            let id = text(&row, 0)?.unwrap_or_default();
            let user = text(&row, 1)?.unwrap_or_default();
            let host = text(&row, 2)?.unwrap_or_default();
            let host = host
                .rsplit_once(':')
                .map(|(h, _)| h.to_string())
                .unwrap_or(host);
            let db = text(&row, 3)?;
            let secs = number(&row, 4)?.unwrap_or(0.0);
            let state = text(&row, 5)?.unwrap_or_default();
            let query = text(&row, 6)?;
            let mut detail = format!("user {user}@{host}");
            if let Some(db) = db.filter(|d| !d.is_empty()) {
                detail.push_str(&format!(", db {db}"));
            }
            match query.filter(|q| !q.trim().is_empty()) {
                Some(q) => detail.push_str(&format!(
                    ": {}",
                    query_for_message(Some(&q), Dialect::Mysql)
                )),
                None if !state.is_empty() => detail.push_str(&format!(", {state}")),
                None => {}
            }
            out.push(
                Observation::new(secs)
                    .subject(format!("connection {id}"))
                    .detail(detail),
            );
        }
        Ok(out)
    }

    /// Fragmentation (reused for up to [`TABLES_EVERY`]) and, in rounds that report
    /// them, table statistics (then information_schema.TABLES is always read fresh).
    async fn tables(
        &self,
        conn: &mut MySqlConnection,
        info: &ServerInfo,
        process: &Process,
        round: &Round<'_>,
    ) -> SchemaReading {
        let report = round.opts.table_stats;
        let Some(schema) = info.database.clone() else {
            let none = |check| {
                Measurement::verdict(
                    check,
                    Status::Ok,
                    None,
                    "no database in the target URL: no tables to check",
                )
            };
            return SchemaReading {
                fragmentation: none(FRAGMENTATION),
                auto_increment: none(AUTO_INCREMENT),
                stats: Vec::new(),
            };
        };
        let mut cache = self.tables.lock().await;
        if let Some(c) = cache.as_ref()
            && !report
            && !c.expired
            && c.at.elapsed() < TABLES_EVERY
            && let Some(auto_increment) = c
                .auto_increment
                .clone()
                .or_else(|| (!round.enabled(AUTO_INCREMENT)).then(|| disabled(AUTO_INCREMENT)))
        {
            let age = format!(
                "measured {} ago",
                Unit::Seconds.format(c.at.elapsed().as_secs_f64().round())
            );
            return SchemaReading {
                fragmentation: with_age(
                    Measurement::values(FRAGMENTATION, c.observations.clone()),
                    &age,
                ),
                auto_increment: with_age(auto_increment, &age),
                stats: Vec::new(),
            };
        }
        let rows = match table_rows(conn).await {
            Ok(r) => r,
            Err(e) => {
                return SchemaReading {
                    fragmentation: self.failed(FRAGMENTATION, &e, "SELECT", info),
                    auto_increment: self.failed(AUTO_INCREMENT, &e, "SELECT", info),
                    stats: Vec::new(),
                };
            }
        };
        let auto_increment = if round.enabled(AUTO_INCREMENT) {
            Some(match auto_increment_columns(conn).await {
                Ok(cols) => Measurement::values(
                    AUTO_INCREMENT,
                    checks::auto_increment(&schema, &rows, &cols),
                ),
                Err(e) => self.failed(AUTO_INCREMENT, &e, "SELECT", info),
            })
        } else {
            None
        };
        // Tables of a shared tablespace report the tablespace's free space; find them only
        // when one would otherwise be judged.
        let t = round.thresholds(FRAGMENTATION);
        let lowest = [t.warning, t.critical]
            .into_iter()
            .flatten()
            .fold(f64::INFINITY, f64::min);
        let candidates = checks::fragmentation(&schema, &rows, &[])
            .iter()
            .zip(&rows)
            .any(|(o, r)| {
                r.engine.eq_ignore_ascii_case("InnoDB")
                    && o.value >= lowest
                    && t.floor.is_none_or(|f| o.floor_value.unwrap_or(0.0) >= f)
            });
        let shared = if candidates && !matches!(process, Process::Denied { .. }) {
            match shared_tablespace_tables(conn, info.version, &schema).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(target_name = %self.target, error = %error_message(&e), "mysql: tablespace types not readable");
                    Vec::new()
                }
            }
        } else {
            Vec::new()
        };
        let observations = checks::fragmentation(&schema, &rows, &shared);
        *cache = Some(TablesCache {
            at: Instant::now(),
            expired: false,
            observations: observations.clone(),
            auto_increment: auto_increment.clone(),
        });
        // A disabled check's measurement is dropped by the round.
        let auto_increment = auto_increment.unwrap_or_else(|| disabled(AUTO_INCREMENT));
        drop(cache);
        if !report {
            return SchemaReading {
                fragmentation: Measurement::values(FRAGMENTATION, observations),
                auto_increment,
                stats: Vec::new(),
            };
        }
        let analyzed = match last_analyzed(conn).await {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(target_name = %self.target, error = %error_message(&e), "mysql: mysql.innodb_table_stats not readable");
                BTreeMap::new()
            }
        };
        // Writes and reads per table come from performance_schema, read in the same round
        // as information_schema.TABLES, so every reported row is one consistent snapshot
        // (sizes, rows and counters measured together), and its write deltas cover
        // exactly the time since the table's previous reported row.
        let mut baseline = self.io.lock().await;
        let io = self.table_io(conn, info).await.map(|mut io| {
            for r in &rows {
                if let Some(t) = io.get_mut(&r.name) {
                    t.created = r.created;
                }
            }
            io
        });
        let deltas = io
            .as_ref()
            .map(|now| checks::write_deltas(&baseline, now))
            .unwrap_or_default();
        let stats = rows
            .iter()
            .map(|r| {
                let counters = io.as_ref().and_then(|m| m.get(&r.name));
                let delta = deltas.get(&r.name);
                TableStat {
                    table: format!("{schema}.{}", r.name),
                    rows: r.rows,
                    size_bytes: Some(r.data + r.index),
                    inserts_delta: delta.map(|d| d.inserts),
                    updates_delta: delta.map(|d| d.updates),
                    deletes_delta: delta.map(|d| d.deletes),
                    // MySQL counts rows fetched, not scans: rows read without an index
                    // (table scans) and through one (see TableStat's field docs).
                    seq_scans: counters.map(|c| c.fetched_by_scan),
                    idx_scans: counters.map(|c| c.fetched_by_index),
                    // A table in a shared tablespace reports the tablespace's free space.
                    free_bytes: (!shared.contains(&r.name)).then_some(r.free),
                    last_modified: r.modified.map(|t| t as i64),
                    last_analyze: analyzed.get(&r.name).copied(),
                    ..TableStat::default()
                }
            })
            .collect();
        if let Some(io) = io {
            *baseline = io;
        }
        SchemaReading {
            fragmentation: Measurement::values(FRAGMENTATION, observations),
            auto_increment,
            stats,
        }
    }

    /// The row counters of the schema's tables from performance_schema, by table name;
    /// `None` when performance_schema is off (the MariaDB default) or not readable (no
    /// SELECT on performance_schema.*). That only leaves the table statistics' write
    /// deltas and fetch counts empty: logged at debug, no check changes status.
    async fn table_io(
        &self,
        conn: &mut MySqlConnection,
        info: &ServerInfo,
    ) -> Option<BTreeMap<String, TableIo>> {
        if !info.performance_schema {
            tracing::debug!(target_name = %self.target, "mysql: performance_schema is off: no per-table write and read counters");
            return None;
        }
        match table_io_rows(conn).await {
            Ok(io) => Some(io),
            Err(e) => {
                tracing::debug!(target_name = %self.target, error = %error_message(&e), "mysql: performance_schema table counters not readable (needs SELECT on performance_schema.*)");
                None
            }
        }
    }

    /// Makes the next round read information_schema.TABLES and performance_schema again
    /// instead of reusing the last result (for tests: the interval is 5 minutes). The
    /// write-delta baseline is kept.
    #[doc(hidden)]
    pub async fn refresh_tables_next_round(&self) {
        if let Some(c) = self.tables.lock().await.as_mut() {
            c.expired = true;
        }
    }

    /// Makes every replication channel seen connecting look as if it had been for `by`
    /// longer (for tests: CRITICAL comes after minutes).
    #[doc(hidden)]
    pub fn backdate_connecting(&self, by: Duration) {
        self.connecting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .backdate(by);
    }

    pub async fn close(&self) {
        if let Some(pool) = &self.conn.pool {
            pool.close().await;
        }
    }
}

/// The lower of a check's thresholds in whole seconds (`default` when it has none): rows
/// below it are filtered out on the server.
fn lowest_threshold(round: &Round<'_>, check: &str, default: u64) -> u64 {
    let t = round.thresholds(check);
    let min = [t.warning, t.critical]
        .into_iter()
        .flatten()
        .fold(f64::INFINITY, f64::min);
    if min.is_finite() {
        min.floor().max(0.0) as u64
    } else {
        default
    }
}

/// A probe error (not a privilege problem) as an UNKNOWN reason.
fn probe_failure(e: &sqlx::Error) -> String {
    if is_timeout(e) {
        format!(
            "the probe was stopped by its time limit ({}s statement, {}s lock wait): {}",
            conn::STATEMENT_TIMEOUT.as_secs(),
            conn::LOCK_TIMEOUT_SECS,
            error_message(e)
        )
    } else {
        format!("probe query failed: {}", error_message(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_identity_prefers_the_uuid_on_mysql() {
        assert_eq!(
            server_identity(
                Some("3e11fa47-71ca-11e1-9e33-c80aa9429562"),
                false,
                "db1",
                "3306",
                "1"
            ),
            "mysql:3e11fa47-71ca-11e1-9e33-c80aa9429562"
        );
        assert_eq!(
            server_identity(None, true, "db1", "3306", "7"),
            "mariadb:db1:3306:7"
        );
        assert_eq!(
            server_identity(
                Some("5jjIgZuxQe7yprI0rS7+qbalEmk="),
                true,
                "db1",
                "3306",
                "7"
            ),
            "mariadb:5jjIgZuxQe7yprI0rS7+qbalEmk="
        );
        assert_eq!(
            server_identity(Some(""), false, "h", "3307", "2"),
            "mysql:h:3307:2"
        );
    }
}
