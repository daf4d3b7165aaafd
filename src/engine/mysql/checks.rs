//! The MySQL/MariaDB check catalogue and the pure rules that turn what the server said into
//! measurements: replica threads and lag, counter deltas, privilege hints. No I/O here.

use std::collections::BTreeMap;
use std::time::Duration;

use super::conn::ServerVersion;
use crate::health::delta::{self, Counters, Delta};
use crate::health::{CheckSpec, Direction, Measurement, Observation, Outcome, Scope, Status, Unit};

pub const CONNECTIONS: &str = "mysql_connections";
pub const LONG_QUERY: &str = "mysql_long_query";
pub const REPLICA_LAG: &str = "mysql_replica_lag";
pub const REPLICA_THREADS: &str = "mysql_replica_threads";
pub const BUFFER_POOL_HIT: &str = "mysql_buffer_pool_hit";
pub const FRAGMENTATION: &str = "mysql_fragmentation";
pub const DEADLOCKS: &str = "mysql_deadlocks";
pub const SLOW_QUERIES: &str = "mysql_slow_queries";
pub const HISTORY_LIST: &str = "mysql_history_list";
pub const AUTO_INCREMENT: &str = "mysql_auto_increment";
pub const LONG_TRANSACTION: &str = "mysql_long_transaction";
pub const CONNECTION_ERRORS: &str = "mysql_connection_errors";
pub const TMP_DISK_TABLES: &str = "mysql_tmp_disk_tables";
pub const BINLOG_SPACE: &str = "mysql_binlog_space";
pub const CLUSTER: &str = "mysql_cluster";

/// An IO thread that has been `Connecting` this long (as seen by this daemon, across
/// rounds) is CRITICAL; before, WARNING. The replica retries every MASTER_CONNECT_RETRY
/// (60 s by default), so by then about five attempts failed: more than a source restart
/// or a short network blip takes. An IO thread that hears nothing for slave_net_timeout
/// (60 s) also reconnects, so a silently dead source ends up here too.
pub const CONNECTING_CRITICAL_AFTER: Duration = Duration::from_secs(300);

const MIB: f64 = 1024.0 * 1024.0;

/// MySQL/MariaDB checks (names, units, built-in thresholds).
pub const CHECKS: &[CheckSpec] = &[
    CheckSpec {
        name: CONNECTIONS,
        label: "of max_connections in use",
        unit: Unit::Percent,
        direction: Direction::HigherIsWorse,
        warning: Some(80.0),
        critical: Some(95.0),
        floor: None,
        description: "Threads_connected / max_connections (server-wide); at 100% new connections fail with 'Too many connections'",
    },
    CheckSpec {
        name: LONG_QUERY,
        label: "query runtime",
        unit: Unit::Seconds,
        direction: Direction::HigherIsWorse,
        warning: Some(300.0),
        critical: Some(1800.0),
        floor: None,
        description: "statements running longer than the threshold, from the processlist (server-wide; needs the PROCESS privilege, and on MySQL 8.0.22+ with performance_schema ON also SELECT on performance_schema.processlist); query text is shown with literals replaced by ?",
    },
    CheckSpec {
        name: REPLICA_LAG,
        label: "replication lag",
        unit: Unit::Seconds,
        direction: Direction::HigherIsWorse,
        warning: Some(60.0),
        critical: Some(300.0),
        floor: None,
        description: "Seconds_Behind_Source/Master minus the channel's intended SQL_Delay (a delayed replica is judged on the delay beyond the configured one), per replication channel; UNKNOWN (not 0) while a channel's IO or SQL thread is not running or still connecting, unless another channel's lag is past critical (then CRITICAL, naming both). Only on a replica; needs REPLICATION CLIENT on MySQL, SLAVE MONITOR on MariaDB 10.5+",
    },
    CheckSpec {
        name: REPLICA_THREADS,
        label: "replica threads",
        unit: Unit::None,
        direction: Direction::HigherIsWorse,
        warning: None,
        critical: None,
        floor: None,
        description: "IO and SQL threads of each replication channel: a stopped thread is CRITICAL (with its last error), an IO thread connecting to its source is WARNING, CRITICAL once it has been connecting for 5 minutes; the group_replication_recovery channel, normally stopped, is not judged while stopped without an error; OK when not a replica",
    },
    CheckSpec {
        name: BUFFER_POOL_HIT,
        label: "InnoDB buffer pool hit ratio",
        unit: Unit::Percent,
        direction: Direction::LowerIsWorse,
        warning: Some(95.0),
        critical: Some(90.0),
        floor: Some(10_000.0),
        description: "1 − Δ Innodb_buffer_pool_reads / Δ Innodb_buffer_pool_read_requests since the previous round; floor (min_rows) is the page requests in the interval, so a quiet server is not judged",
    },
    CheckSpec {
        name: DEADLOCKS,
        label: "deadlocks since the previous round",
        unit: Unit::Count,
        direction: Direction::HigherIsWorse,
        warning: Some(1.0),
        critical: Some(50.0),
        floor: None,
        description: "Δ InnoDB deadlocks between rounds (Innodb_deadlocks on MariaDB; INNODB_METRICS lock_deadlocks on MySQL, needs PROCESS)",
    },
    CheckSpec {
        name: SLOW_QUERIES,
        label: "slow queries since the previous round",
        unit: Unit::Count,
        direction: Direction::HigherIsWorse,
        warning: Some(10.0),
        critical: Some(100.0),
        floor: None,
        description: "Δ Slow_queries (statements slower than long_query_time) between rounds; counted even when the slow log is off",
    },
    CheckSpec {
        name: HISTORY_LIST,
        label: "InnoDB history list length",
        unit: Unit::Count,
        direction: Direction::HigherIsWorse,
        warning: Some(100_000.0),
        critical: Some(1_000_000.0),
        floor: None,
        description: "undo records not yet purged; grows while a long transaction or old read view holds purge back (the oldest transaction is named when over threshold)",
    },
    CheckSpec {
        name: FRAGMENTATION,
        label: "of the table's space free (data_free)",
        unit: Unit::Percent,
        direction: Direction::HigherIsWorse,
        warning: Some(20.0),
        critical: Some(40.0),
        floor: Some(100.0 * MIB),
        description: "data_free / (data + index + data_free) per table of the target's database; floor (min_size) is the table's allocated size; OPTIMIZE TABLE reclaims the space. Refreshed at most every 5 minutes",
    },
    CheckSpec {
        name: AUTO_INCREMENT,
        label: "of the AUTO_INCREMENT column's range used",
        unit: Unit::Percent,
        direction: Direction::HigherIsWorse,
        warning: Some(85.0),
        critical: Some(95.0),
        floor: None,
        description: "(AUTO_INCREMENT − 1) / the largest value of the column's type (tinyint…bigint, signed or unsigned) for every AUTO_INCREMENT column of the target's database, naming table.column; at 100% inserts fail. Refreshed at most every 5 minutes, with mysql_fragmentation",
    },
    CheckSpec {
        name: LONG_TRANSACTION,
        label: "transaction age",
        unit: Unit::Seconds,
        direction: Direction::HigherIsWorse,
        warning: Some(300.0),
        critical: Some(1800.0),
        floor: None,
        description: "InnoDB transactions open longer than the threshold (information_schema.INNODB_TRX trx_started), including sessions idle inside an open transaction; names the connection, user@host and what it runs (server-wide; needs PROCESS)",
    },
    CheckSpec {
        name: CONNECTION_ERRORS,
        label: "refused or aborted connection attempts since the previous round",
        unit: Unit::Count,
        direction: Direction::HigherIsWorse,
        warning: Some(10.0),
        critical: Some(100.0),
        floor: None,
        description: "Δ Connection_errors_max_connections (refused: max_connections reached) + Δ Aborted_connects (failed logins, handshake errors) between rounds; the message gives each (server-wide)",
    },
    CheckSpec {
        name: TMP_DISK_TABLES,
        label: "of temporary tables created on disk",
        unit: Unit::Percent,
        direction: Direction::HigherIsWorse,
        warning: Some(25.0),
        critical: Some(50.0),
        floor: Some(100.0),
        description: "Δ Created_tmp_disk_tables / Δ Created_tmp_tables since the previous round; floor (min_rows) is the temporary tables created in the interval, so a quiet server is not judged (server-wide)",
    },
    CheckSpec {
        name: BINLOG_SPACE,
        label: "binary logs",
        unit: Unit::Bytes,
        direction: Direction::HigherIsWorse,
        warning: None,
        critical: None,
        floor: None,
        description: "total size of the binary logs (SHOW BINARY LOGS; needs REPLICATION CLIENT on MySQL, BINLOG MONITOR on MariaDB 10.5+); no thresholds by default (set them from the disk's size), recorded for trends; OK \"binary logging off\" when off (server-wide)",
    },
    CheckSpec {
        name: CLUSTER,
        label: "cluster members",
        unit: Unit::Count,
        direction: Direction::HigherIsWorse,
        warning: None,
        critical: None,
        floor: None,
        description: "Galera (wsrep_cluster_status, wsrep_local_state_comment, wsrep_ready, wsrep_cluster_size) or Group Replication (performance_schema.replication_group_members) state of this member; the value is the cluster's size. Non-Primary, not ready, ERROR/OFFLINE/UNREACHABLE or a lost majority is CRITICAL, a donor/joining/recovering member or an unreachable peer WARNING; OK \"not a cluster member\" elsewhere (server-wide)",
    },
];

/// An account as `CURRENT_USER()` returns it (`app@10.0.%`), quoted for a GRANT.
pub fn grant_account(current_user: &str) -> String {
    let (user, host) = current_user.rsplit_once('@').unwrap_or((current_user, "%"));
    format!(
        "'{}'@'{}'",
        user.replace('\'', "''"),
        host.replace('\'', "''")
    )
}

/// The privileges an "Access denied; you need (at least one of) the SUPER, SLAVE MONITOR
/// privilege(s)" message names, SUPER dropped when a narrower one is offered.
pub fn privileges_named(message: &str) -> Vec<String> {
    let Some(start) = message.find("(at least one of) the ") else {
        return Vec::new();
    };
    let rest = &message[start + "(at least one of) the ".len()..];
    let Some(end) = rest.find(" privilege") else {
        return Vec::new();
    };
    let all: Vec<String> = rest[..end]
        .split(',')
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect();
    let narrow: Vec<String> = all.iter().filter(|p| *p != "SUPER").cloned().collect();
    if narrow.is_empty() { all } else { narrow }
}

/// `GRANT <privilege> ON *.* TO 'user'@'host'`: the narrowest privilege the error names,
/// or `fallback` when it names none.
pub fn grant_fix(error_message: &str, fallback: &str, current_user: &str) -> String {
    let named = privileges_named(error_message);
    let privilege = named.first().map(String::as_str).unwrap_or(fallback);
    format!(
        "GRANT {privilege} ON *.* TO {}",
        grant_account(current_user)
    )
}

/// One replication channel from `SHOW REPLICA STATUS` / `SHOW ALL SLAVES STATUS`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReplicaChannel {
    /// Channel (MySQL) or connection (MariaDB multi-source) name; empty for the default.
    pub name: String,
    /// `host:port` of the source.
    pub source: String,
    /// `Yes`, `No` or `Connecting`.
    pub io_running: String,
    pub sql_running: String,
    /// Seconds_Behind_Source/Master; NULL while a thread is stopped.
    pub lag: Option<f64>,
    pub io_error: Option<(i64, String)>,
    pub sql_error: Option<(i64, String)>,
    /// SQL_Delay: the intended delay of a delayed replica (MASTER_DELAY), seconds.
    pub sql_delay: Option<f64>,
    /// How long this daemon has seen the IO thread `Connecting` (see
    /// [`ConnectingSince`]); `None` when it is not.
    pub connecting_for: Option<Duration>,
}

/// When each channel's IO thread was first seen `Connecting` (engine state, kept across
/// rounds; a channel that is not connecting at a round is forgotten, so the clock starts
/// again the next time; a daemon restart starts it again too).
#[derive(Debug, Default)]
pub struct ConnectingSince(BTreeMap<String, std::time::Instant>);

/// An IO thread on its way to reading from its source: `Connecting`, or MariaDB's
/// `Preparing` (connected, registering with the source before it reads). Neither is a
/// stopped thread; both turn CRITICAL only when they last.
fn io_connecting(state: &str) -> bool {
    matches!(state, "Connecting" | "Preparing")
}

impl ConnectingSince {
    /// Notes which channels are connecting at `now` and sets their `connecting_for`.
    pub fn update(&mut self, channels: &mut [ReplicaChannel], now: std::time::Instant) {
        let mut next = BTreeMap::new();
        for ch in channels.iter_mut() {
            if io_connecting(&ch.io_running) {
                let since = self.0.get(&ch.name).copied().unwrap_or(now);
                ch.connecting_for = Some(now.saturating_duration_since(since));
                next.insert(ch.name.clone(), since);
            } else {
                ch.connecting_for = None;
            }
        }
        self.0 = next;
    }

    /// Moves every first-seen time `by` into the past (for tests: the CRITICAL point is
    /// minutes away).
    pub fn backdate(&mut self, by: Duration) {
        for at in self.0.values_mut() {
            *at = at.checked_sub(by).unwrap_or(*at);
        }
    }
}

/// Group Replication's own channels: their state is `mysql_cluster`'s business.
fn is_group_replication(name: &str) -> bool {
    name.starts_with("group_replication_")
}

/// The recovery channel of Group Replication runs only during distributed recovery:
/// stopped without an error is its normal state.
fn normally_stopped(ch: &ReplicaChannel) -> bool {
    ch.name == "group_replication_recovery"
        && ch.io_running != "Yes"
        && ch.sql_running != "Yes"
        && ch.io_error.is_none()
        && ch.sql_error.is_none()
}

impl ReplicaChannel {
    pub(super) fn label(&self) -> String {
        if self.name.is_empty() {
            format!("replication from {}", self.source)
        } else {
            format!("channel '{}' from {}", self.name, self.source)
        }
    }
}

fn error_text(e: &Option<(i64, String)>) -> String {
    match e {
        Some((no, msg)) if *no != 0 || !msg.is_empty() => format!(
            " (error {no}: {})",
            crate::engine::redact::shorten(&crate::engine::redact::message_prefix(msg), 100)
        ),
        _ => String::new(),
    }
}

/// Thread state and lag of every channel with no lag threshold known (tests).
#[cfg(test)]
pub fn judge_replicas(channels: &[ReplicaChannel], scope: &Scope) -> (Measurement, Measurement) {
    judge_replicas_with(channels, scope, None)
}

/// Thread state and lag of every channel. No channel: not a replica, both OK. With the
/// lag's critical threshold, a channel whose lag is unknown does not hide another
/// channel's critical lag.
pub fn judge_replicas_with(
    channels: &[ReplicaChannel],
    scope: &Scope,
    lag_critical: Option<f64>,
) -> (Measurement, Measurement) {
    if channels.is_empty() {
        return (
            Measurement::verdict(REPLICA_LAG, Status::Ok, None, "not a replica")
                .with_scope(scope.clone()),
            Measurement::verdict(REPLICA_THREADS, Status::Ok, None, "not a replica")
                .with_scope(scope.clone()),
        );
    }
    let judged: Vec<&ReplicaChannel> = channels.iter().filter(|c| !normally_stopped(c)).collect();
    let mut worst = (Status::Ok, String::new());
    let mut bad = 0;
    for ch in &judged {
        let (status, msg) = if ch.sql_running != "Yes" {
            (
                Status::Critical,
                format!(
                    "{}: SQL thread not running{}",
                    ch.label(),
                    error_text(&ch.sql_error)
                ),
            )
        } else if ch.name == "group_replication_applier" {
            // The applier channel has no receiver (IO) thread of its own.
            (Status::Ok, String::new())
        } else if io_connecting(&ch.io_running) {
            let d = ch.connecting_for.unwrap_or_default();
            let doing = if ch.io_running == "Preparing" {
                "preparing (connected, registering with the source)"
            } else {
                "connecting to the source"
            };
            let status = if d >= CONNECTING_CRITICAL_AFTER {
                Status::Critical
            } else {
                Status::Warning
            };
            (
                status,
                format!(
                    "{}: IO thread {doing} for {} (CRITICAL after {}){}",
                    ch.label(),
                    Unit::Seconds.format(d.as_secs() as f64),
                    Unit::Seconds.format(CONNECTING_CRITICAL_AFTER.as_secs() as f64),
                    error_text(&ch.io_error)
                ),
            )
        } else if ch.io_running != "Yes" {
            (
                Status::Critical,
                format!(
                    "{}: IO thread not running{}",
                    ch.label(),
                    error_text(&ch.io_error)
                ),
            )
        } else {
            (Status::Ok, String::new())
        };
        if status != Status::Ok {
            bad += 1;
        }
        if status.severity() > worst.0.severity() {
            worst = (status, msg);
        }
    }
    let threads = if worst.0 == Status::Ok {
        Measurement::verdict(
            REPLICA_THREADS,
            Status::Ok,
            Some(0.0),
            if judged.is_empty() {
                "only the group_replication_recovery channel, stopped as it normally is".to_string()
            } else {
                format!("IO and SQL threads running on {} channel(s)", judged.len())
            },
        )
    } else {
        let more = if bad > 1 {
            format!(" ({bad} channels affected)")
        } else {
            String::new()
        };
        Measurement::verdict(
            REPLICA_THREADS,
            worst.0,
            Some(bad as f64),
            format!("{}{more}", worst.1),
        )
    }
    .with_scope(scope.clone());
    (
        judge_lag(channels, lag_critical).with_scope(scope.clone()),
        threads,
    )
}

/// Lag per classic replication channel: Seconds_Behind_Master minus SQL_Delay. A channel
/// whose IO thread is not `Yes` may show 0 or a stale value (the SQL thread has applied
/// all it received, but nothing arrives): its lag is unknown, and so is the check.
fn judge_lag(channels: &[ReplicaChannel], critical: Option<f64>) -> Measurement {
    let classic: Vec<&ReplicaChannel> = channels
        .iter()
        .filter(|c| !is_group_replication(&c.name))
        .collect();
    if classic.is_empty() {
        return Measurement::verdict(
            REPLICA_LAG,
            Status::Ok,
            None,
            "only Group Replication channels (see mysql_cluster)",
        );
    }
    let mut observed = Vec::new();
    let mut unknown = Vec::new();
    for ch in classic {
        if ch.io_running != "Yes" {
            let state = if ch.io_running.is_empty() {
                "not running"
            } else {
                ch.io_running.as_str()
            };
            unknown.push(format!("{}: IO thread {state}", ch.label()));
        } else if ch.sql_running != "Yes" {
            unknown.push(format!("{}: SQL thread not running", ch.label()));
        } else if let Some(lag) = ch.lag {
            let delay = ch.sql_delay.unwrap_or(0.0).max(0.0);
            let mut obs = Observation::new((lag - delay).max(0.0)).subject(ch.label());
            if delay > 0.0 {
                obs = obs.detail(format!(
                    "Seconds_Behind_Master {} minus the intended SQL_Delay {}",
                    Unit::Seconds.format(lag),
                    Unit::Seconds.format(delay)
                ));
            }
            observed.push(obs);
        } else {
            unknown.push(format!("{}: Seconds_Behind_Master is NULL", ch.label()));
        }
    }
    let critical_elsewhere = critical.is_some_and(|c| observed.iter().any(|o| o.value >= c));
    if unknown.is_empty() {
        Measurement::values(REPLICA_LAG, observed)
    } else if critical_elsewhere {
        let also = format!("also unknown: {}", unknown.join("; "));
        Measurement::values(
            REPLICA_LAG,
            observed
                .into_iter()
                .map(|mut o| {
                    o.detail = Some(match o.detail.take() {
                        Some(d) => format!("{d}; {also}"),
                        None => also.clone(),
                    });
                    o
                })
                .collect(),
        )
    } else {
        Measurement::unknown(
            REPLICA_LAG,
            format!(
                "replication lag unknown ({}); see mysql_replica_threads",
                unknown.join("; ")
            ),
            None,
        )
    }
}

/// The counters one delta check compares, taken from the round's snapshot; `None` when
/// one of them was not read this round.
pub fn subset(all: &Counters, keys: &[&str]) -> Option<Counters> {
    keys.iter()
        .map(|k| all.get(*k).map(|v| (k.to_string(), *v)))
        .collect()
}

/// The measurement of a delta check for this round: baseline pending on the first round
/// (or after a counter was missing), a new baseline after a reset (counters went
/// backwards: restart or FLUSH STATUS), otherwise what `judge` makes of the increases.
pub fn delta_check(
    check: &'static str,
    previous: Option<&Counters>,
    current: &Counters,
    scope: &Scope,
    judge: impl FnOnce(&BTreeMap<String, f64>) -> Measurement,
) -> Measurement {
    let previous = previous.and_then(|p| {
        let keys: Vec<&str> = current.keys().map(String::as_str).collect();
        subset(p, &keys)
    });
    let m = match delta::compare(previous.as_ref(), current) {
        Delta::BaselinePending => Measurement {
            check,
            scope: Scope::Database,
            outcome: Outcome::Counters(current.iter().map(|(k, v)| (k.clone(), *v)).collect()),
        },
        Delta::Reset => Measurement::verdict(
            check,
            Status::Ok,
            None,
            "counters went backwards (server restart or FLUSH STATUS): new baseline taken",
        ),
        Delta::Increase(inc) => judge(&inc),
    };
    m.with_scope(scope.clone())
}

/// "in the last 30s" for a delta's detail.
pub fn interval_text(elapsed: Option<Duration>) -> String {
    match elapsed {
        Some(d) => format!(
            "in the last {}",
            Unit::Seconds.format(d.as_secs_f64().round())
        ),
        None => "since the previous round".to_string(),
    }
}

/// Buffer pool hit % from the increases of read requests (logical) and reads (from disk).
pub fn buffer_pool_hit(inc: &BTreeMap<String, f64>, interval: &str) -> Measurement {
    let requests = inc.get("bp_read_requests").copied().unwrap_or(0.0);
    let reads = inc.get("bp_reads").copied().unwrap_or(0.0);
    if requests <= 0.0 {
        return Measurement::verdict(
            BUFFER_POOL_HIT,
            Status::Ok,
            None,
            format!("no buffer pool page requests {interval}"),
        );
    }
    let hit = (100.0 * (1.0 - reads / requests)).clamp(0.0, 100.0);
    Measurement::value(
        BUFFER_POOL_HIT,
        Observation::new(hit).floor(requests).detail(format!(
            "{reads} disk reads for {requests} page requests {interval}"
        )),
    )
}

/// The increase of one counter as a count observation.
pub fn counter_increase(
    check: &'static str,
    key: &str,
    inc: &BTreeMap<String, f64>,
    detail: String,
) -> Measurement {
    let v = inc.get(key).copied().unwrap_or(0.0);
    Measurement::value(check, Observation::new(v).detail(detail))
}

/// A table's row of `information_schema.TABLES`.
#[derive(Debug, Clone, PartialEq)]
pub struct TableRow {
    pub name: String,
    pub engine: String,
    pub rows: Option<f64>,
    pub data: f64,
    pub index: f64,
    pub free: f64,
    /// `UPDATE_TIME` as Unix seconds (InnoDB keeps it in memory: NULL after a restart
    /// until the table is next changed).
    pub modified: Option<f64>,
    /// `CREATE_TIME` as Unix seconds: tells a re-created table from the old one.
    pub created: Option<f64>,
    /// `AUTO_INCREMENT`: the next value the table's AUTO_INCREMENT column will get.
    pub auto_increment: Option<f64>,
}

/// Fragmentation observations: the share of each table's allocated space that is free.
/// `shared` names InnoDB tables that live in a shared tablespace (system or general), whose
/// data_free is the tablespace's, not the table's: they are left out.
pub fn fragmentation(schema: &str, tables: &[TableRow], shared: &[String]) -> Vec<Observation> {
    tables
        .iter()
        .filter(|t| !shared.contains(&t.name))
        .map(|t| {
            let total = t.data + t.index + t.free;
            let pct = if total > 0.0 {
                t.free * 100.0 / total
            } else {
                0.0
            };
            Observation::new(pct)
                .subject(format!("table {schema}.{}", t.name))
                .floor(total)
                .detail(format!(
                    "{} free of {}; OPTIMIZE TABLE reclaims it",
                    Unit::Bytes.format(t.free),
                    Unit::Bytes.format(total)
                ))
        })
        .collect()
}

/// The largest value an integer column type holds (`DATA_TYPE` as information_schema
/// gives it); `None` for a type that is not an integer (float AUTO_INCREMENT columns are
/// deprecated and not judged).
pub fn int_max(data_type: &str, unsigned: bool) -> Option<f64> {
    let bits: i32 = match data_type.to_ascii_lowercase().as_str() {
        "tinyint" => 8,
        "smallint" => 16,
        "mediumint" => 24,
        "int" | "integer" => 32,
        "bigint" => 64,
        _ => return None,
    };
    Some(if unsigned {
        2f64.powi(bits) - 1.0
    } else {
        2f64.powi(bits - 1) - 1.0
    })
}

/// An AUTO_INCREMENT column of information_schema.COLUMNS.
#[derive(Debug, Clone, PartialEq)]
pub struct AutoIncrementColumn {
    pub table: String,
    pub column: String,
    /// `DATA_TYPE` (`int`, `bigint`, ...).
    pub data_type: String,
    /// `COLUMN_TYPE` (`int(10) unsigned`, ...).
    pub column_type: String,
}

/// Share of each AUTO_INCREMENT column's range used: values handed out so far
/// (AUTO_INCREMENT − 1) over the type's largest value.
pub fn auto_increment(
    schema: &str,
    tables: &[TableRow],
    columns: &[AutoIncrementColumn],
) -> Vec<Observation> {
    columns
        .iter()
        .filter_map(|c| {
            let unsigned = c.column_type.to_ascii_lowercase().contains("unsigned");
            let max = int_max(&c.data_type, unsigned)?;
            let next = tables
                .iter()
                .find(|t| t.name == c.table)
                .and_then(|t| t.auto_increment)?;
            let used = (next - 1.0).max(0.0);
            Some(
                Observation::new((used * 100.0 / max).clamp(0.0, 100.0))
                    .subject(format!("column {schema}.{}.{}", c.table, c.column))
                    .detail(format!(
                        "next value {next:.0} of at most {max:.0} ({}); widen the column (e.g. to bigint unsigned) before it runs out",
                        c.column_type
                    )),
            )
        })
        .collect()
}

/// An open InnoDB transaction, with its session from the processlist.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrxRow {
    pub connection: String,
    /// Seconds since `trx_started`.
    pub age: f64,
    pub state: String,
    pub user: Option<String>,
    pub host: Option<String>,
    /// The session's COMMAND: `Sleep` means idle inside the transaction.
    pub command: Option<String>,
    /// Seconds in the session's current state (idle time when sleeping).
    pub idle: Option<f64>,
    pub query: Option<String>,
}

/// One observation per long transaction: its age, naming connection, user@host and
/// whether it is idle in the transaction or what it runs.
pub fn long_transactions(rows: &[TrxRow]) -> Vec<Observation> {
    rows.iter()
        .map(|r| {
            let host = r
                .host
                .as_deref()
                .map(|h| h.rsplit_once(':').map_or(h, |(h, _)| h))
                .unwrap_or("?");
            let mut detail = format!("user {}@{host}", r.user.as_deref().unwrap_or("?"));
            if r.command.as_deref() == Some("Sleep") {
                detail.push_str(&format!(
                    ", idle in transaction for {}",
                    Unit::Seconds.format(r.idle.unwrap_or(0.0))
                ));
            } else if let Some(q) = r.query.as_deref().filter(|q| !q.trim().is_empty()) {
                detail.push_str(&format!(
                    ", running: {}",
                    crate::engine::redact::query_for_message(
                        Some(q),
                        crate::engine::redact::Dialect::Mysql
                    )
                ));
            } else if !r.state.is_empty() {
                detail.push_str(&format!(", {}", r.state));
            }
            Observation::new(r.age)
                .subject(format!("connection {}", r.connection))
                .detail(detail)
        })
        .collect()
}

/// Refused (max_connections) plus aborted connection attempts in the interval.
pub fn connection_errors(inc: &BTreeMap<String, f64>, interval: &str) -> Measurement {
    let refused = inc.get("conn_err_max").copied().unwrap_or(0.0);
    let aborted = inc.get("aborted_connects").copied().unwrap_or(0.0);
    Measurement::value(
        CONNECTION_ERRORS,
        Observation::new(refused + aborted).detail(format!(
            "{refused} refused at max_connections, {aborted} aborted connects (failed logins, handshake errors) {interval}"
        )),
    )
}

/// Share of the interval's temporary tables that went to disk.
pub fn tmp_disk_tables(inc: &BTreeMap<String, f64>, interval: &str) -> Measurement {
    let all = inc.get("tmp_tables").copied().unwrap_or(0.0);
    let disk = inc.get("tmp_disk_tables").copied().unwrap_or(0.0);
    if all <= 0.0 {
        return Measurement::verdict(
            TMP_DISK_TABLES,
            Status::Ok,
            None,
            format!("no temporary tables created {interval}"),
        );
    }
    Measurement::value(
        TMP_DISK_TABLES,
        Observation::new((disk * 100.0 / all).clamp(0.0, 100.0))
            .floor(all)
            .detail(format!(
                "{disk} of {all} temporary tables on disk {interval} (tmp_table_size / max_heap_table_size, or TEXT/BLOB columns in GROUP BY/ORDER BY)"
            )),
    )
}

/// Total size of the binary logs from `SHOW BINARY LOGS` (name, size); `None`: binary
/// logging is off.
pub fn binlog_space(logs: Option<&[(String, f64)]>) -> Measurement {
    match logs {
        None => Measurement::verdict(BINLOG_SPACE, Status::Ok, None, "binary logging off"),
        Some(logs) => {
            let total: f64 = logs.iter().map(|(_, b)| b).sum();
            let oldest = logs.first().map(|(n, _)| n.as_str()).unwrap_or("-");
            Measurement::value(
                BINLOG_SPACE,
                Observation::new(total).detail(format!(
                    "{} binary log file(s), oldest {oldest}; binlog_expire_logs_seconds / expire_logs_days or PURGE BINARY LOGS remove old ones",
                    logs.len()
                )),
            )
        }
    }
}

/// Galera state from the `wsrep_%` status variables; `None` when this server is not a
/// Galera node (no provider loaded: the variables are absent, or wsrep_provider_name is
/// empty and wsrep_cluster_status `Disconnected`, as on a plain MariaDB).
pub fn galera(status: &BTreeMap<String, String>) -> Option<Measurement> {
    let get = |k: &str| status.get(k).map(|v| v.trim().to_string());
    let cluster_status = get("wsrep_cluster_status")?;
    if get("wsrep_provider_name").unwrap_or_default().is_empty() {
        return None;
    }
    let state = get("wsrep_local_state_comment").unwrap_or_default();
    let ready = get("wsrep_ready").unwrap_or_default();
    let size = get("wsrep_cluster_size")
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(0.0);
    let facts = format!(
        "Galera: cluster {cluster_status}, this node {state}, ready {ready}, {size} node(s)"
    );
    let (status, why) = if !cluster_status.eq_ignore_ascii_case("Primary") {
        (
            Status::Critical,
            "; this node is not in the primary component (split brain or lost quorum): it refuses queries",
        )
    } else if !ready.eq_ignore_ascii_case("ON") {
        (
            Status::Critical,
            "; wsrep_ready OFF: the node refuses queries",
        )
    } else if state.eq_ignore_ascii_case("Synced") {
        if size <= 1.0 {
            (Status::Warning, "; a cluster of one node has no redundancy")
        } else {
            (Status::Ok, "")
        }
    } else {
        // Donor/Desynced (serving a state transfer), Joining, Joined: catching up.
        (Status::Warning, "; this node is not synced")
    };
    Some(Measurement::verdict(
        CLUSTER,
        status,
        Some(size),
        format!("{facts}{why}"),
    ))
}

/// A row of performance_schema.replication_group_members.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroupMember {
    pub host: String,
    pub port: String,
    /// ONLINE, RECOVERING, OFFLINE, ERROR, UNREACHABLE.
    pub state: String,
    /// PRIMARY or SECONDARY (8.0.2+).
    pub role: String,
    /// `MEMBER_ID = @@server_uuid`.
    pub is_self: bool,
}

/// Group Replication state of this member; `None` when it is not a member (no rows, or
/// only its own row OFFLINE: the plugin is installed but the group never started here).
pub fn group_replication(members: &[GroupMember]) -> Option<Measurement> {
    let me = members.iter().find(|m| m.is_self)?;
    if members.len() == 1 && me.state.eq_ignore_ascii_case("OFFLINE") {
        return None;
    }
    let total = members.len() as f64;
    let online = members
        .iter()
        .filter(|m| m.state.eq_ignore_ascii_case("ONLINE"))
        .count() as f64;
    let facts = format!(
        "Group Replication: this member {}{}, {online} of {total} member(s) ONLINE",
        me.state,
        if me.role.is_empty() {
            String::new()
        } else {
            format!(" ({})", me.role)
        }
    );
    let others_bad: Vec<String> = members
        .iter()
        .filter(|m| !m.is_self && !m.state.eq_ignore_ascii_case("ONLINE"))
        .map(|m| format!("{}:{} {}", m.host, m.port, m.state))
        .collect();
    let (status, why) = match me.state.to_ascii_uppercase().as_str() {
        "ONLINE" if online * 2.0 <= total => (
            Status::Critical,
            "; the group has lost its majority: writes block".to_string(),
        ),
        "ONLINE" if !others_bad.is_empty() => {
            (Status::Warning, format!("; {}", others_bad.join(", ")))
        }
        "ONLINE" => (Status::Ok, String::new()),
        "RECOVERING" => (
            Status::Warning,
            "; catching up with the group (distributed recovery)".to_string(),
        ),
        _ => (
            Status::Critical,
            "; this member is not serving the group".to_string(),
        ),
    };
    Some(Measurement::verdict(
        CLUSTER,
        status,
        Some(total),
        format!("{facts}{why}"),
    ))
}

/// The cluster verdict: Galera if this is a Galera node, else Group Replication, else
/// OK "not a cluster member".
pub fn judge_cluster(galera: Option<Measurement>, group: Option<Measurement>) -> Measurement {
    galera
        .or(group)
        .unwrap_or_else(|| Measurement::verdict(CLUSTER, Status::Ok, None, "not a cluster member"))
}

/// Where `mysql_long_query` reads the processlist, and what that needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcesslistSource {
    pub table: &'static str,
    /// The running time in seconds (MariaDB has milliseconds).
    pub time_expr: &'static str,
    /// performance_schema.processlist: needs SELECT on it besides PROCESS.
    pub performance_schema: bool,
}

/// MySQL 8.0.22+ with performance_schema on: `performance_schema.processlist` (no global
/// mutex, the information_schema table is deprecated); MariaDB: information_schema with
/// `TIME_MS`; else information_schema.
pub fn processlist_source(v: ServerVersion, performance_schema: bool) -> ProcesslistSource {
    if v.is_mariadb() {
        ProcesslistSource {
            table: "information_schema.PROCESSLIST",
            time_expr: "TIME_MS / 1000",
            performance_schema: false,
        }
    } else if v.at_least(8, 0, 22) && performance_schema {
        ProcesslistSource {
            table: "performance_schema.processlist",
            time_expr: "TIME",
            performance_schema: true,
        }
    } else {
        ProcesslistSource {
            table: "information_schema.PROCESSLIST",
            time_expr: "TIME",
            performance_schema: false,
        }
    }
}

impl ProcesslistSource {
    /// Without PROCESS, the processlist silently shows only the account's own sessions:
    /// UNKNOWN with this reason and [`Self::process_fix`].
    pub fn process_reason(&self) -> String {
        if self.performance_schema {
            "cannot see other sessions' statements: performance_schema.processlist (MySQL 8.0.22+) needs SELECT on it and the PROCESS privilege".into()
        } else {
            "cannot see other sessions' statements without the PROCESS privilege".into()
        }
    }

    pub fn process_fix(&self, current_user: &str) -> String {
        let account = grant_account(current_user);
        if self.performance_schema {
            format!(
                "GRANT PROCESS ON *.* TO {account}; GRANT SELECT ON performance_schema.processlist TO {account}"
            )
        } else {
            format!("GRANT PROCESS ON *.* TO {account}")
        }
    }

    /// The GRANT for an access-denied error of the processlist query itself.
    pub fn query_fix(&self, error_message: &str, current_user: &str) -> String {
        if self.performance_schema {
            format!(
                "GRANT SELECT ON performance_schema.processlist TO {}",
                grant_account(current_user)
            )
        } else {
            grant_fix(error_message, "PROCESS", current_user)
        }
    }
}

/// The replica status statement: MariaDB `SHOW ALL SLAVES STATUS` (every multi-source
/// connection), MySQL 8.0.22+ `SHOW REPLICA STATUS`, older MySQL `SHOW SLAVE STATUS`.
pub fn replica_status_sql(v: ServerVersion) -> &'static str {
    if v.is_mariadb() {
        "/* dbwarden */ SHOW ALL SLAVES STATUS"
    } else if v.at_least(8, 0, 22) {
        "/* dbwarden */ SHOW REPLICA STATUS"
    } else {
        "/* dbwarden */ SHOW SLAVE STATUS"
    }
}

/// The privilege replica status needs: MariaDB 10.5.9+ `SLAVE MONITOR` (dbwarden and the
/// README use this name, the one MariaDB's error messages use), else `REPLICATION CLIENT`.
pub fn replica_privilege(v: ServerVersion) -> &'static str {
    if v.is_mariadb() && v.at_least(10, 5, 9) {
        "SLAVE MONITOR"
    } else {
        "REPLICATION CLIENT"
    }
}

/// The privilege `SHOW BINARY LOGS` needs: MariaDB 10.5.2+ `BINLOG MONITOR`, else
/// `REPLICATION CLIENT`.
pub fn binlog_privilege(v: ServerVersion) -> &'static str {
    if v.is_mariadb() && v.at_least(10, 5, 2) {
        "BINLOG MONITOR"
    } else {
        "REPLICATION CLIENT"
    }
}

/// A table's lifetime row counters from performance_schema (since server start or the
/// last TRUNCATE of the summary tables): rows inserted, updated and deleted
/// (`table_io_waits_summary_by_table`), and rows fetched without an index, i.e. by table
/// scans, and through an index (`table_io_waits_summary_by_index_usage`, `INDEX_NAME`
/// NULL or not). MySQL counts rows read, not scans.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TableIo {
    /// The table's `CREATE_TIME` (Unix seconds) from information_schema.TABLES at the
    /// reading: a different value means the table was re-created (DROP and CREATE, a
    /// copying ALTER TABLE), so its counters are not comparable with the previous ones.
    pub created: Option<f64>,
    pub inserts: f64,
    pub updates: f64,
    pub deletes: f64,
    pub fetched_by_scan: f64,
    pub fetched_by_index: f64,
}

impl TableIo {
    fn counters(&self) -> [f64; 5] {
        [
            self.inserts,
            self.updates,
            self.deletes,
            self.fetched_by_scan,
            self.fetched_by_index,
        ]
    }
}

/// Rows inserted, updated and deleted in a table since the previous reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WriteDeltas {
    pub inserts: f64,
    pub updates: f64,
    pub deletes: f64,
}

/// The writes per table (by name) between two readings of [`TableIo`], like the
/// PostgreSQL engine's table deltas: a table without a previous reading (first reading,
/// new table) has none, and neither has one that was re-created (another `created`, as
/// PostgreSQL keys tables by OID) or with any counter lower than before (server restart,
/// TRUNCATE of the summary tables): its current reading is the next baseline, so no
/// negative or made-up delta is reported.
pub fn write_deltas(
    previous: &BTreeMap<String, TableIo>,
    current: &BTreeMap<String, TableIo>,
) -> BTreeMap<String, WriteDeltas> {
    current
        .iter()
        .filter_map(|(table, now)| {
            let before = previous.get(table)?;
            let went_back = now
                .counters()
                .iter()
                .zip(before.counters())
                .any(|(n, b)| *n < b);
            (now.created == before.created && !went_back).then(|| {
                (
                    table.clone(),
                    WriteDeltas {
                        inserts: now.inserts - before.inserts,
                        updates: now.updates - before.updates,
                        deletes: now.deletes - before.deletes,
                    },
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::catalog::judge_builtin as judge;

    #[test]
    fn grant_names_the_narrowest_privilege_and_the_account() {
        let msg = "Access denied; you need (at least one of) the SUPER, SLAVE MONITOR privilege(s) for this operation";
        assert_eq!(privileges_named(msg), vec!["SLAVE MONITOR".to_string()]);
        assert_eq!(
            grant_fix(msg, "REPLICATION CLIENT", "mon@10.0.%"),
            "GRANT SLAVE MONITOR ON *.* TO 'mon'@'10.0.%'"
        );
        let msg =
            "Access denied; you need (at least one of) the PROCESS privilege(s) for this operation";
        assert_eq!(
            grant_fix(msg, "X", "o'neil@%"),
            "GRANT PROCESS ON *.* TO 'o''neil'@'%'"
        );
        assert_eq!(
            grant_fix("something else", "REPLICATION CLIENT", "m@h"),
            "GRANT REPLICATION CLIENT ON *.* TO 'm'@'h'"
        );
        let only_super =
            "Access denied; you need (at least one of) the SUPER privilege(s) for this operation";
        assert_eq!(privileges_named(only_super), vec!["SUPER".to_string()]);
    }

    fn channel(io: &str, sql: &str, lag: Option<f64>) -> ReplicaChannel {
        ReplicaChannel {
            name: String::new(),
            source: "db1:3306".into(),
            io_running: io.into(),
            sql_running: sql.into(),
            lag,
            io_error: None,
            sql_error: None,
            sql_delay: None,
            connecting_for: None,
        }
    }

    #[test]
    fn not_a_replica_is_ok() {
        let (lag, threads) = judge_replicas(&[], &Scope::Server("s".into()));
        assert_eq!(judge(&lag).status, Status::Ok);
        assert_eq!(judge(&threads).status, Status::Ok);
        assert_eq!(threads.scope, Scope::Server("s".into()));
    }

    #[test]
    fn stopped_sql_thread_is_critical_with_a_redacted_error() {
        let mut ch = channel("Yes", "No", None);
        ch.sql_error = Some((
            1062,
            "Error 'Duplicate entry 'alice@example.com' for key 'PRIMARY'' on query".into(),
        ));
        let (lag, threads) = judge_replicas(&[ch], &Scope::Database);
        let t = judge(&threads);
        assert_eq!(t.status, Status::Critical);
        assert!(
            t.message.contains("SQL thread not running (error 1062"),
            "{}",
            t.message
        );
        assert!(!t.message.contains("alice"), "{}", t.message);
        assert_eq!(judge(&lag).status, Status::Unknown);
    }

    #[test]
    fn lag_is_judged_per_channel() {
        let (lag, threads) = judge_replicas(
            &[channel("Yes", "Yes", Some(0.0)), {
                let mut c = channel("Yes", "Yes", Some(400.0));
                c.name = "east".into();
                c
            }],
            &Scope::Database,
        );
        assert_eq!(judge(&threads).status, Status::Ok);
        let l = judge(&lag);
        assert_eq!(l.status, Status::Critical);
        assert!(
            l.message
                .starts_with("channel 'east' from db1:3306: 6.7min replication lag"),
            "{}",
            l.message
        );
    }

    /// A delayed replica (MASTER_DELAY) is judged on the lag beyond its intended delay.
    #[test]
    fn intended_sql_delay_is_not_lag() {
        let mut caught_up = channel("Yes", "Yes", Some(3610.0));
        caught_up.sql_delay = Some(3600.0);
        let l = judge(&judge_replicas(&[caught_up.clone()], &Scope::Database).0);
        assert_eq!(
            (l.status, l.value),
            (Status::Ok, Some(10.0)),
            "{}",
            l.message
        );
        let mut behind = caught_up;
        behind.lag = Some(3600.0 + 400.0);
        let l = judge(&judge_replicas(&[behind], &Scope::Database).0);
        assert_eq!((l.status, l.value), (Status::Critical, Some(400.0)));
        assert!(l.message.contains("SQL_Delay"), "{}", l.message);
        // Still applying events older than the delay: never negative.
        let mut early = channel("Yes", "Yes", Some(5.0));
        early.sql_delay = Some(3600.0);
        let l = judge(&judge_replicas(&[early], &Scope::Database).0);
        assert_eq!(l.value, Some(0.0));
    }

    /// With the IO thread connecting or stopped, Seconds_Behind_Master says 0 (all that
    /// arrived is applied) or is stale: the lag is unknown, never OK 0.
    #[test]
    fn lag_is_unknown_while_the_io_thread_is_not_running() {
        for io in ["Connecting", "No"] {
            let (lag, _) = judge_replicas(&[channel(io, "Yes", Some(0.0))], &Scope::Database);
            let l = judge(&lag);
            assert_eq!(l.status, Status::Unknown, "{io}: {}", l.message);
            assert!(
                l.message.contains(&format!("IO thread {io}")),
                "{}",
                l.message
            );
        }
    }

    /// One channel's unknown lag does not hide another's critical lag.
    #[test]
    fn unknown_lag_does_not_hide_a_critical_one() {
        let mut far = channel("Yes", "Yes", Some(900.0));
        far.name = "east".into();
        let down = channel("No", "Yes", None);
        let l = judge(
            &judge_replicas_with(&[down.clone(), far.clone()], &Scope::Database, Some(300.0)).0,
        );
        assert_eq!(l.status, Status::Critical, "{}", l.message);
        assert!(l.message.contains("also unknown"), "{}", l.message);
        far.lag = Some(100.0);
        let l = judge(&judge_replicas_with(&[down, far], &Scope::Database, Some(300.0)).0);
        assert_eq!(l.status, Status::Unknown, "{}", l.message);
    }

    #[test]
    fn connecting_io_thread_warns_then_turns_critical() {
        let at = |secs: u64| {
            let mut c = channel("Connecting", "Yes", Some(0.0));
            c.connecting_for = Some(Duration::from_secs(secs));
            c
        };
        let t = judge(&judge_replicas(&[at(30)], &Scope::Database).1);
        assert_eq!(t.status, Status::Warning, "{}", t.message);
        assert!(
            t.message.contains("connecting to the source for 30s"),
            "{}",
            t.message
        );
        let t = judge(&judge_replicas(&[at(299)], &Scope::Database).1);
        assert_eq!(t.status, Status::Warning);
        let t = judge(&judge_replicas(&[at(300)], &Scope::Database).1);
        assert_eq!(t.status, Status::Critical, "{}", t.message);
    }

    /// MariaDB's `Preparing` IO thread (connected, registering) is on its way, not
    /// stopped: WARNING like `Connecting`, CRITICAL once it lasts, and its clock is kept.
    #[test]
    fn preparing_io_thread_is_not_a_stopped_one() {
        let mut c = channel("Preparing", "Yes", Some(0.0));
        c.connecting_for = Some(Duration::from_secs(5));
        let t = judge(&judge_replicas(std::slice::from_ref(&c), &Scope::Database).1);
        assert_eq!(t.status, Status::Warning, "{}", t.message);
        assert!(t.message.contains("IO thread preparing"), "{}", t.message);
        c.connecting_for = Some(CONNECTING_CRITICAL_AFTER);
        let t = judge(&judge_replicas(std::slice::from_ref(&c), &Scope::Database).1);
        assert_eq!(t.status, Status::Critical, "{}", t.message);
        let t0 = std::time::Instant::now();
        let mut since = ConnectingSince::default();
        let mut chans = vec![channel("Connecting", "Yes", None)];
        since.update(&mut chans, t0);
        chans[0].io_running = "Preparing".into();
        since.update(&mut chans, t0 + Duration::from_secs(400));
        assert_eq!(chans[0].connecting_for, Some(Duration::from_secs(400)));
    }

    /// The engine's memory of when each channel started connecting.
    #[test]
    fn connecting_since_counts_from_the_first_round_seen() {
        let t0 = std::time::Instant::now();
        let mut since = ConnectingSince::default();
        let mut chans = vec![channel("Connecting", "Yes", None), {
            let mut c = channel("Yes", "Yes", Some(0.0));
            c.name = "b".into();
            c
        }];
        since.update(&mut chans, t0);
        assert_eq!(chans[0].connecting_for, Some(Duration::ZERO));
        assert_eq!(chans[1].connecting_for, None);
        since.update(&mut chans, t0 + Duration::from_secs(400));
        assert_eq!(chans[0].connecting_for, Some(Duration::from_secs(400)));
        // Connected in between: the clock starts again.
        chans[0].io_running = "Yes".into();
        since.update(&mut chans, t0 + Duration::from_secs(460));
        assert_eq!(chans[0].connecting_for, None);
        chans[0].io_running = "Connecting".into();
        since.update(&mut chans, t0 + Duration::from_secs(520));
        assert_eq!(chans[0].connecting_for, Some(Duration::ZERO));
    }

    /// Captured from MySQL 8.0 Group Replication: the recovery channel is stopped between
    /// distributed recoveries; the applier channel has no IO thread.
    #[test]
    fn group_replication_channels_do_not_alarm() {
        let mut recovery = channel("No", "No", None);
        recovery.name = "group_replication_recovery".into();
        recovery.source = "<NULL>:0".into();
        let mut applier = channel("No", "Yes", Some(0.0));
        applier.name = "group_replication_applier".into();
        let (lag, threads) = judge_replicas(&[recovery.clone(), applier], &Scope::Database);
        let t = judge(&threads);
        assert_eq!(t.status, Status::Ok, "{}", t.message);
        assert_eq!(judge(&lag).status, Status::Ok);
        let (lag, threads) = judge_replicas(&[recovery.clone()], &Scope::Database);
        assert_eq!(judge(&threads).status, Status::Ok);
        assert_eq!(judge(&lag).status, Status::Ok);
        // Stopped by an error, it does alarm.
        recovery.io_error = Some((13117, "recovery failed".into()));
        let t = judge(&judge_replicas(&[recovery], &Scope::Database).1);
        assert_eq!(t.status, Status::Critical, "{}", t.message);
    }

    #[test]
    fn version_chooses_the_replica_statement_and_privilege() {
        let v = ServerVersion::parse;
        assert_eq!(
            replica_status_sql(v("10.11.19-MariaDB")),
            "/* dbwarden */ SHOW ALL SLAVES STATUS"
        );
        assert_eq!(
            replica_status_sql(v("8.0.36")),
            "/* dbwarden */ SHOW REPLICA STATUS"
        );
        assert_eq!(
            replica_status_sql(v("8.4.0")),
            "/* dbwarden */ SHOW REPLICA STATUS"
        );
        assert_eq!(
            replica_status_sql(v("8.0.21")),
            "/* dbwarden */ SHOW SLAVE STATUS"
        );
        assert_eq!(replica_privilege(v("10.6.1-MariaDB")), "SLAVE MONITOR");
        assert_eq!(
            replica_privilege(v("10.4.30-MariaDB")),
            "REPLICATION CLIENT"
        );
        assert_eq!(replica_privilege(v("8.4.0")), "REPLICATION CLIENT");
        assert_eq!(binlog_privilege(v("11.4.2-MariaDB")), "BINLOG MONITOR");
        assert_eq!(binlog_privilege(v("8.0.36")), "REPLICATION CLIENT");
    }

    /// MySQL 8.0.22+ with performance_schema reads performance_schema.processlist, which
    /// needs SELECT on it (and PROCESS to show other accounts' sessions); the others read
    /// information_schema.PROCESSLIST, which needs PROCESS only.
    #[test]
    fn long_query_source_and_grant_follow_the_version() {
        let v = ServerVersion::parse;
        let ps = processlist_source(v("8.0.36"), true);
        assert_eq!(ps.table, "performance_schema.processlist");
        assert_eq!(
            ps.query_fix("SELECT command denied", "mon@%"),
            "GRANT SELECT ON performance_schema.processlist TO 'mon'@'%'"
        );
        assert!(
            ps.process_fix("mon@%")
                .contains("GRANT SELECT ON performance_schema.processlist")
        );
        assert!(
            ps.process_reason()
                .contains("performance_schema.processlist")
        );
        let off = processlist_source(v("8.4.0"), false);
        assert_eq!(off.table, "information_schema.PROCESSLIST");
        assert_eq!(
            off.process_fix("mon@%"),
            "GRANT PROCESS ON *.* TO 'mon'@'%'"
        );
        let old = processlist_source(v("8.0.21"), true);
        assert_eq!(old.table, "information_schema.PROCESSLIST");
        assert_eq!(old.time_expr, "TIME");
        let maria = processlist_source(v("10.11.19-MariaDB"), true);
        assert_eq!(maria.table, "information_schema.PROCESSLIST");
        assert_eq!(maria.time_expr, "TIME_MS / 1000");
        assert!(!maria.process_reason().contains("performance_schema"));
    }

    #[test]
    fn auto_increment_uses_the_type_range() {
        assert_eq!(int_max("tinyint", false), Some(127.0));
        assert_eq!(int_max("tinyint", true), Some(255.0));
        assert_eq!(int_max("mediumint", true), Some(16_777_215.0));
        assert_eq!(int_max("int", false), Some(2_147_483_647.0));
        assert_eq!(int_max("bigint", true), Some(18_446_744_073_709_551_615.0));
        assert_eq!(int_max("float", false), None);
        let table = |name: &str, next: Option<f64>| TableRow {
            name: name.into(),
            engine: "InnoDB".into(),
            rows: None,
            data: 0.0,
            index: 0.0,
            free: 0.0,
            modified: None,
            created: None,
            auto_increment: next,
        };
        let col = |t: &str, ty: &str, ct: &str| AutoIncrementColumn {
            table: t.into(),
            column: "id".into(),
            data_type: ty.into(),
            column_type: ct.into(),
        };
        let tables = [
            table("small", Some(125.0)),
            table("wide", Some(125.0)),
            table("fresh", None),
        ];
        let obs = auto_increment(
            "shop",
            &tables,
            &[
                col("small", "tinyint", "tinyint(4)"),
                col("wide", "tinyint", "tinyint(3) unsigned"),
                col("fresh", "int", "int(11)"),
            ],
        );
        assert_eq!(obs.len(), 2);
        let r = judge(&Measurement::values(AUTO_INCREMENT, obs));
        assert_eq!(r.status, Status::Critical, "{}", r.message);
        assert_eq!(r.subject.as_deref(), Some("column shop.small.id"));
        let unsigned = auto_increment(
            "shop",
            &tables,
            &[col("wide", "tinyint", "tinyint(3) unsigned")],
        );
        assert_eq!(
            judge(&Measurement::values(AUTO_INCREMENT, unsigned)).status,
            Status::Ok
        );
    }

    #[test]
    fn long_transactions_name_idle_sessions() {
        let rows = [
            TrxRow {
                connection: "42".into(),
                age: 900.0,
                state: "RUNNING".into(),
                user: Some("app".into()),
                host: Some("10.0.0.5:51234".into()),
                command: Some("Sleep".into()),
                idle: Some(880.0),
                query: None,
            },
            TrxRow {
                connection: "43".into(),
                age: 60.0,
                state: "RUNNING".into(),
                user: Some("app".into()),
                host: Some("localhost".into()),
                command: Some("Query".into()),
                idle: Some(1.0),
                query: Some("UPDATE t SET secret = 'x' WHERE id = 5".into()),
            },
        ];
        let obs = long_transactions(&rows);
        assert!(
            obs[1].detail.as_deref().is_some_and(|d| !d.contains("'x'")),
            "{obs:?}"
        );
        let r = judge(&Measurement::values(LONG_TRANSACTION, obs));
        assert_eq!(r.status, Status::Warning, "{}", r.message);
        assert!(r.message.contains("connection 42"), "{}", r.message);
        assert!(r.message.contains("app@10.0.0.5"), "{}", r.message);
        assert!(r.message.contains("idle in transaction"), "{}", r.message);
    }

    #[test]
    fn connection_errors_and_tmp_disk_tables_from_deltas() {
        let prev = counters(&[
            ("uptime", 1.0),
            ("conn_err_max", 3.0),
            ("aborted_connects", 10.0),
        ]);
        let cur = counters(&[
            ("uptime", 31.0),
            ("conn_err_max", 8.0),
            ("aborted_connects", 16.0),
        ]);
        let r = judge(&delta_check(
            CONNECTION_ERRORS,
            Some(&prev),
            &cur,
            &Scope::Database,
            |i| connection_errors(i, "in the last 30s"),
        ));
        assert_eq!(
            (r.status, r.value),
            (Status::Warning, Some(11.0)),
            "{}",
            r.message
        );
        assert!(
            r.message.contains("5 refused at max_connections"),
            "{}",
            r.message
        );

        let tmp = |all: f64, disk: f64| {
            counters(&[
                ("uptime", 1.0),
                ("tmp_tables", all),
                ("tmp_disk_tables", disk),
            ])
        };
        let judge_tmp = |a: &Counters, b: &Counters| {
            judge(&delta_check(
                TMP_DISK_TABLES,
                Some(a),
                b,
                &Scope::Database,
                |i| tmp_disk_tables(i, "x"),
            ))
        };
        // 60% on disk, but only 50 temporary tables: under the floor.
        let r = judge_tmp(&tmp(0.0, 0.0), &tmp(50.0, 30.0));
        assert_eq!(r.status, Status::Ok, "{}", r.message);
        let r = judge_tmp(&tmp(0.0, 0.0), &tmp(1000.0, 600.0));
        assert_eq!(
            (r.status, r.value),
            (Status::Critical, Some(60.0)),
            "{}",
            r.message
        );
        let r = judge_tmp(&tmp(5.0, 1.0), &tmp(5.0, 1.0));
        assert_eq!(r.status, Status::Ok);
    }

    #[test]
    fn binlog_space_sums_the_logs() {
        let r = judge(&binlog_space(None));
        assert_eq!(r.status, Status::Ok);
        assert_eq!(r.message, "binary logging off");
        let logs = [
            ("binlog.000001".to_string(), 1000.0),
            ("binlog.000002".to_string(), 500.0),
        ];
        let r = judge(&binlog_space(Some(&logs)));
        assert_eq!((r.status, r.value), (Status::Ok, Some(1500.0)));
        assert!(r.message.contains("oldest binlog.000001"), "{}", r.message);
    }

    fn status_vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Captured `SHOW GLOBAL STATUS LIKE 'wsrep%'` values: a plain MariaDB 10.11 (no
    /// provider) and Galera 4 nodes in their states.
    #[test]
    fn galera_state_from_captured_status() {
        let plain = status_vars(&[
            ("wsrep_cluster_status", "Disconnected"),
            ("wsrep_cluster_size", "0"),
            ("wsrep_ready", "OFF"),
            ("wsrep_provider_name", ""),
        ]);
        assert_eq!(galera(&plain), None);
        assert_eq!(galera(&BTreeMap::new()), None);
        let node = |status: &str, state: &str, ready: &str, size: &str| {
            status_vars(&[
                ("wsrep_cluster_status", status),
                ("wsrep_local_state_comment", state),
                ("wsrep_ready", ready),
                ("wsrep_cluster_size", size),
                ("wsrep_provider_name", "Galera"),
            ])
        };
        let j = |vars| judge(&judge_cluster(galera(&vars), None));
        let r = j(node("Primary", "Synced", "ON", "3"));
        assert_eq!(
            (r.status, r.value),
            (Status::Ok, Some(3.0)),
            "{}",
            r.message
        );
        assert_eq!(
            j(node("Primary", "Donor/Desynced", "ON", "3")).status,
            Status::Warning
        );
        assert_eq!(
            j(node("Primary", "Synced", "ON", "1")).status,
            Status::Warning
        );
        let r = j(node("non-Primary", "Initialized", "OFF", "1"));
        assert_eq!(r.status, Status::Critical);
        assert!(
            r.message.contains("not in the primary component"),
            "{}",
            r.message
        );
        assert_eq!(
            j(node("Primary", "Joining", "OFF", "3")).status,
            Status::Critical
        );
        let r = judge(&judge_cluster(galera(&plain), None));
        assert_eq!(
            (r.status, r.message.as_str()),
            (Status::Ok, "not a cluster member")
        );
    }

    /// Captured `performance_schema.replication_group_members` rows (MySQL 8.0).
    #[test]
    fn group_replication_state_from_captured_rows() {
        let m = |host: &str, state: &str, me: bool| GroupMember {
            host: host.into(),
            port: "3306".into(),
            state: state.into(),
            role: "SECONDARY".into(),
            is_self: me,
        };
        // Plugin installed, group never started here.
        assert_eq!(group_replication(&[m("db1", "OFFLINE", true)]), None);
        assert_eq!(group_replication(&[]), None);
        let j = |rows: &[GroupMember]| judge(&judge_cluster(None, group_replication(rows)));
        let r = j(&[
            m("db1", "ONLINE", true),
            m("db2", "ONLINE", false),
            m("db3", "ONLINE", false),
        ]);
        assert_eq!(
            (r.status, r.value),
            (Status::Ok, Some(3.0)),
            "{}",
            r.message
        );
        let r = j(&[
            m("db1", "ONLINE", true),
            m("db2", "ONLINE", false),
            m("db3", "UNREACHABLE", false),
        ]);
        assert_eq!(r.status, Status::Warning);
        assert!(r.message.contains("db3:3306 UNREACHABLE"), "{}", r.message);
        let r = j(&[
            m("db1", "ONLINE", true),
            m("db2", "UNREACHABLE", false),
            m("db3", "UNREACHABLE", false),
        ]);
        assert_eq!(r.status, Status::Critical, "{}", r.message);
        assert!(r.message.contains("majority"), "{}", r.message);
        assert_eq!(
            j(&[m("db1", "RECOVERING", true), m("db2", "ONLINE", false)]).status,
            Status::Warning
        );
        assert_eq!(
            j(&[m("db1", "ERROR", true), m("db2", "ONLINE", false)]).status,
            Status::Critical
        );
    }

    fn counters(pairs: &[(&str, f64)]) -> Counters {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn deltas_pending_then_judged_then_reset() {
        let scope = Scope::Server("s".into());
        let judge_bp = |inc: &BTreeMap<String, f64>| buffer_pool_hit(inc, "in the last 30s");
        let first = counters(&[
            ("uptime", 100.0),
            ("bp_read_requests", 1000.0),
            ("bp_reads", 10.0),
        ]);
        let m = delta_check(BUFFER_POOL_HIT, None, &first, &scope, judge_bp);
        let r = judge(&m);
        assert_eq!(r.status, Status::Ok);
        assert!(r.message.contains("baseline pending"));
        assert_eq!(m.scope, scope);

        let second = counters(&[
            ("uptime", 130.0),
            ("bp_read_requests", 101_000.0),
            ("bp_reads", 15_010.0),
        ]);
        let r = judge(&delta_check(
            BUFFER_POOL_HIT,
            Some(&first),
            &second,
            &scope,
            judge_bp,
        ));
        assert_eq!(r.status, Status::Critical, "{}", r.message);
        assert_eq!(r.value, Some(85.0));

        let restarted = counters(&[
            ("uptime", 5.0),
            ("bp_read_requests", 50.0),
            ("bp_reads", 40.0),
        ]);
        let r = judge(&delta_check(
            BUFFER_POOL_HIT,
            Some(&second),
            &restarted,
            &scope,
            judge_bp,
        ));
        assert_eq!(r.status, Status::Ok);
        assert!(r.message.contains("new baseline"), "{}", r.message);
    }

    #[test]
    fn quiet_buffer_pool_is_not_judged() {
        let prev = counters(&[("bp_read_requests", 1000.0), ("bp_reads", 10.0)]);
        let cur = counters(&[("bp_read_requests", 1100.0), ("bp_reads", 60.0)]);
        let r = judge(&delta_check(
            BUFFER_POOL_HIT,
            Some(&prev),
            &cur,
            &Scope::Database,
            |i| buffer_pool_hit(i, "x"),
        ));
        assert_eq!(r.status, Status::Ok, "{}", r.message);
        let same = judge(&delta_check(
            BUFFER_POOL_HIT,
            Some(&cur),
            &cur,
            &Scope::Database,
            |i| buffer_pool_hit(i, "x"),
        ));
        assert_eq!(same.status, Status::Ok);
    }

    #[test]
    fn previous_snapshot_without_the_key_is_a_new_baseline() {
        let prev = counters(&[("uptime", 1.0)]);
        let cur = counters(&[("uptime", 2.0), ("deadlocks", 5.0)]);
        let m = delta_check(DEADLOCKS, Some(&prev), &cur, &Scope::Database, |i| {
            counter_increase(DEADLOCKS, "deadlocks", i, String::new())
        });
        assert!(matches!(m.outcome, Outcome::Counters(_)));
        let next = counters(&[("uptime", 3.0), ("deadlocks", 7.0)]);
        let r = judge(&delta_check(
            DEADLOCKS,
            Some(&cur),
            &next,
            &Scope::Database,
            |i| counter_increase(DEADLOCKS, "deadlocks", i, "x".into()),
        ));
        assert_eq!((r.status, r.value), (Status::Warning, Some(2.0)));
    }

    #[test]
    fn fragmentation_is_free_share_of_allocated_space() {
        let t = |name: &str, data: f64, free: f64| TableRow {
            name: name.into(),
            engine: "InnoDB".into(),
            rows: Some(1.0),
            data,
            index: 0.0,
            free,
            modified: None,
            created: None,
            auto_increment: None,
        };
        let tables = [
            t("big", 300.0 * MIB, 200.0 * MIB),
            t("tiny", 1.0 * MIB, 50.0 * MIB),
            t("in_ibdata", 300.0 * MIB, 900.0 * MIB),
        ];
        let obs = fragmentation("shop", &tables, &["in_ibdata".to_string()]);
        assert_eq!(obs.len(), 2);
        let r = judge(&Measurement::values(FRAGMENTATION, obs));
        assert_eq!(r.status, Status::Critical);
        assert_eq!(r.subject.as_deref(), Some("table shop.big"));
        assert_eq!(r.value, Some(40.0));
    }

    #[test]
    fn table_write_deltas_start_on_the_second_reading_and_survive_resets() {
        let io = |ins: f64, upd: f64, del: f64, scan: f64| TableIo {
            created: Some(1_700_000_000.0),
            inserts: ins,
            updates: upd,
            deletes: del,
            fetched_by_scan: scan,
            fetched_by_index: 10.0,
        };
        let reading = |pairs: &[(&str, TableIo)]| -> BTreeMap<String, TableIo> {
            pairs.iter().map(|(t, io)| (t.to_string(), *io)).collect()
        };
        // First reading: no baseline, no deltas.
        let first = reading(&[("orders", io(100.0, 5.0, 1.0, 50.0))]);
        assert!(write_deltas(&BTreeMap::new(), &first).is_empty());

        // Second reading: the increases; a table new since then has none yet.
        let second = reading(&[
            ("orders", io(150.0, 5.0, 4.0, 80.0)),
            ("new_table", io(7.0, 0.0, 0.0, 0.0)),
        ]);
        let d = write_deltas(&first, &second);
        assert_eq!(
            d.get("orders"),
            Some(&WriteDeltas {
                inserts: 50.0,
                updates: 0.0,
                deletes: 3.0
            })
        );
        assert_eq!(d.get("new_table"), None);
        assert_eq!(d.len(), 1);

        // A counter went backwards (restart, TRUNCATE of the summary): no delta, and
        // that reading is the next baseline.
        let reset = reading(&[
            ("orders", io(2.0, 1.0, 0.0, 3.0)),
            ("new_table", io(9.0, 0.0, 0.0, 0.0)),
        ]);
        let d = write_deltas(&second, &reset);
        assert_eq!(d.get("orders"), None);
        assert_eq!(d.get("new_table").map(|w| w.inserts), Some(2.0));
        let after = reading(&[("orders", io(12.0, 1.0, 2.0, 3.0))]);
        assert_eq!(
            write_deltas(&reset, &after).get("orders"),
            Some(&WriteDeltas {
                inserts: 10.0,
                updates: 0.0,
                deletes: 2.0
            })
        );

        // Only the fetch counters went backwards (writes unchanged): still a reset.
        let fetch_reset = reading(&[("orders", io(12.0, 1.0, 2.0, 0.0))]);
        assert!(write_deltas(&after, &fetch_reset).is_empty());

        // Dropped and re-created, with as many writes since as before: another table,
        // no delta (the counters alone would say "no change").
        let recreated = reading(&[(
            "orders",
            TableIo {
                created: Some(1_700_000_600.0),
                ..io(12.0, 1.0, 2.0, 3.0)
            },
        )]);
        assert!(write_deltas(&after, &recreated).is_empty());
    }
}
