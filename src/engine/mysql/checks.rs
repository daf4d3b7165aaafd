//! The MySQL/MariaDB check catalogue and the pure rules that turn what the server said into
//! measurements: replica threads and lag, counter deltas, privilege hints. No I/O here.

use std::collections::BTreeMap;
use std::time::Duration;

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
        description: "statements running longer than the threshold, from the processlist (server-wide; needs the PROCESS privilege); query text is shown with literals replaced by ?",
    },
    CheckSpec {
        name: REPLICA_LAG,
        label: "replication lag",
        unit: Unit::Seconds,
        direction: Direction::HigherIsWorse,
        warning: Some(60.0),
        critical: Some(300.0),
        floor: None,
        description: "Seconds_Behind_Source/Master of each replication channel (only on a replica; needs REPLICATION CLIENT on MySQL, SLAVE MONITOR on MariaDB 10.5+)",
    },
    CheckSpec {
        name: REPLICA_THREADS,
        label: "replica threads",
        unit: Unit::None,
        direction: Direction::HigherIsWorse,
        warning: None,
        critical: None,
        floor: None,
        description: "IO and SQL threads of each replication channel: a stopped thread is CRITICAL (with its last error), an IO thread still connecting is WARNING; OK when not a replica",
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
}

impl ReplicaChannel {
    fn label(&self) -> String {
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

/// Thread state and lag of every channel. No channel: not a replica, both OK.
pub fn judge_replicas(channels: &[ReplicaChannel], scope: &Scope) -> (Measurement, Measurement) {
    if channels.is_empty() {
        return (
            Measurement::verdict(REPLICA_LAG, Status::Ok, None, "not a replica")
                .with_scope(scope.clone()),
            Measurement::verdict(REPLICA_THREADS, Status::Ok, None, "not a replica")
                .with_scope(scope.clone()),
        );
    }
    let mut worst = (Status::Ok, String::new());
    let mut bad = 0;
    for ch in channels {
        let (status, msg) = if ch.sql_running != "Yes" {
            (
                Status::Critical,
                format!(
                    "{}: SQL thread not running{}",
                    ch.label(),
                    error_text(&ch.sql_error)
                ),
            )
        } else if ch.io_running == "Connecting" {
            (
                Status::Warning,
                format!(
                    "{}: IO thread still connecting to the source{}",
                    ch.label(),
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
            format!(
                "IO and SQL threads running on {} channel(s)",
                channels.len()
            ),
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

    let observed: Vec<Observation> = channels
        .iter()
        .filter_map(|ch| ch.lag.map(|lag| Observation::new(lag).subject(ch.label())))
        .collect();
    let lag = if observed.is_empty() {
        Measurement::unknown(
            REPLICA_LAG,
            "replication lag unknown: the replica threads are not running (see mysql_replica_threads)",
            None,
        )
    } else {
        Measurement::values(REPLICA_LAG, observed)
    }
    .with_scope(scope.clone());
    (lag, threads)
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
    fn connecting_io_thread_warns_and_lag_is_judged() {
        let (lag, threads) = judge_replicas(
            &[channel("Connecting", "Yes", Some(0.0)), {
                let mut c = channel("Yes", "Yes", Some(400.0));
                c.name = "east".into();
                c
            }],
            &Scope::Database,
        );
        assert_eq!(judge(&threads).status, Status::Warning);
        let l = judge(&lag);
        assert_eq!(l.status, Status::Critical);
        assert!(
            l.message
                .starts_with("channel 'east' from db1:3306: 6.7min replication lag"),
            "{}",
            l.message
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
