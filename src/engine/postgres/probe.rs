//! What the probe queries return, and the pure functions that turn it into measurements.
//! Nothing here does I/O, so every judgement (lag logic, message wording, caps, privilege
//! handling) is unit-tested without a server.

use std::collections::HashMap;

use serde::Deserialize;

use super::checks::*;
use crate::engine::redact::{Dialect, query_for_message};
use crate::health::delta::{self, Counters, Delta};
use crate::health::{CheckThresholds, Measurement, Observation, Outcome, Status, Unit};

/// The transaction ID (and multixact ID) horizon: 2^31 IDs.
pub const XID_HORIZON: f64 = 2_147_483_648.0;
/// At most this many offenders are carried per check (the worst first).
pub const MAX_OBSERVATIONS: usize = 50;
/// Tables scanned fewer times than this (within the window) are not judged by `seq_scans`.
pub const SEQ_SCAN_MIN_SCANS: f64 = 100.0;
/// `seq_scans` judges the scans of (at least) the last hour, so it clears within an hour
/// of the missing index being added.
pub const SEQ_SCAN_WINDOW: std::time::Duration = std::time::Duration::from_secs(3600);
/// A new snapshot of the scan counters is kept at most this often (bounded memory).
pub const SEQ_SCAN_SNAPSHOT_EVERY: std::time::Duration = std::time::Duration::from_secs(300);

/// Settings, privileges and this database's counters (query `INSTANCE`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Instance {
    pub version_num: i32,
    pub db: String,
    pub user: String,
    pub in_recovery: bool,
    pub read_stats: bool,
    pub read_settings: bool,
    pub monitor: bool,
    pub max_connections: f64,
    pub su_reserved: f64,
    pub reserved: f64,
    pub freeze_max_age: f64,
    pub analyze_threshold: f64,
    pub analyze_scale: f64,
    /// autovacuum_vacuum_threshold and _scale_factor (the global trigger of autovacuum).
    pub vacuum_threshold: f64,
    pub vacuum_scale: f64,
    pub block_size: f64,
    pub archive_mode: String,
    /// The server's clock, epoch seconds (ages of vacuum/analyze are measured against it).
    pub now: f64,
    pub data_directory: Option<String>,
    pub counters: DbCounters,
    pub db_connlimit: f64,
    pub role_connlimit: f64,
    pub server: super::probe_server::ServerFacts,
}

/// Lifetime counters of pg_stat_database for this database.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DbCounters {
    pub blks_hit: f64,
    pub blks_read: f64,
    pub deadlocks: f64,
    pub temp_files: f64,
    pub temp_bytes: f64,
    /// Epoch seconds of the last statistics reset; a change means a new baseline.
    pub stats_reset: Option<f64>,
}

impl DbCounters {
    fn as_counters(&self) -> Counters {
        [
            ("blks_hit", self.blks_hit),
            ("blks_read", self.blks_read),
            ("deadlocks", self.deadlocks),
            ("temp_files", self.temp_files),
            ("temp_bytes", self.temp_bytes),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct ActiveSession {
    pub pid: i64,
    pub usr: Option<String>,
    pub app: Option<String>,
    pub secs: Option<f64>,
    pub wait_event_type: Option<String>,
    pub wait_event: Option<String>,
    pub query: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct IdleSession {
    pub pid: i64,
    pub usr: Option<String>,
    pub app: Option<String>,
    pub secs: Option<f64>,
    pub xact_secs: Option<f64>,
    pub state: Option<String>,
    pub query: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct BlockedSession {
    pub pid: i64,
    pub usr: Option<String>,
    pub app: Option<String>,
    pub secs: Option<f64>,
    pub wait_event: Option<String>,
    pub query: Option<String>,
    #[serde(default)]
    pub blockers: Vec<i64>,
    /// Seconds since the lock wait began (pg_locks.waitstart, 14+; `None` before 14, or
    /// for a wait that began a moment ago).
    pub wait_secs: Option<f64>,
}

/// A session named in some waiter's pg_blocking_pids (query `ACTIVITY`, `holders_json`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct LockHolder {
    pub pid: i64,
    pub usr: Option<String>,
    pub state: Option<String>,
    pub secs: Option<f64>,
    pub xact_secs: Option<f64>,
    pub query: Option<String>,
    /// Its own blockers when it waits on a lock itself.
    pub blockers: Option<Vec<i64>>,
}

/// The session at the head of `s`'s wait chain: pg_blocking_pids is followed through
/// sessions that wait themselves to the first one that does not (the one to deal with;
/// the waiters in between only pass the wait on). A pid not among `holders` (a prepared
/// transaction, a session that just ended) counts as the head. In a cycle (a deadlock the
/// detector has not broken yet) the direct blocker is named.
pub fn root_blocker(s: &BlockedSession, holders: &[LockHolder]) -> Option<i64> {
    let by_pid: HashMap<i64, &LockHolder> = holders.iter().map(|h| (h.pid, h)).collect();
    let mut seen = std::collections::HashSet::from([s.pid]);
    let mut stack: Vec<i64> = s.blockers.iter().rev().copied().collect();
    while let Some(pid) = stack.pop() {
        if !seen.insert(pid) {
            continue;
        }
        match by_pid.get(&pid).and_then(|h| h.blockers.as_ref()) {
            Some(next) if !next.is_empty() => stack.extend(next.iter().rev()),
            _ => return Some(pid),
        }
    }
    s.blockers.first().copied()
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct XminBackend {
    pub pid: i64,
    pub usr: Option<String>,
    pub datname: Option<String>,
    pub state: Option<String>,
    pub xact_secs: Option<f64>,
    pub xmin_age: f64,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct DatabaseAge {
    pub name: String,
    pub xid_age: f64,
    pub mxid_age: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct TableAge {
    pub name: String,
    pub xid_age: f64,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Replica {
    pub name: Option<String>,
    pub addr: Option<String>,
    pub state: Option<String>,
    pub sync_state: Option<String>,
    pub write_lag: Option<f64>,
    pub flush_lag: Option<f64>,
    pub replay_lag: Option<f64>,
    pub behind_bytes: Option<f64>,
    pub xmin_age: Option<f64>,
    /// A logical walsender (a subscription, a CDC tool), not a standby.
    #[serde(default)]
    pub logical: bool,
}

impl Replica {
    /// A physical standby: not a logical walsender, not a base backup being taken
    /// (`pg_basebackup` streams through a walsender too).
    pub fn is_standby(&self) -> bool {
        !self.logical && self.state.as_deref() != Some("backup")
    }
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Standby {
    /// Bytes received but not yet replayed (`None`: nothing received by streaming).
    pub receive_minus_replay: Option<f64>,
    /// WAL positions (bytes from 0/0) received and replayed.
    pub received: Option<f64>,
    pub replayed: Option<f64>,
    /// Seconds since the last replayed transaction's commit on the primary.
    pub replay_age: Option<f64>,
    pub receiver: Option<String>,
    pub sender: Option<String>,
    /// The WAL receiver's pid: visible without pg_read_all_stats, unlike its status.
    #[serde(default)]
    pub receiver_pid: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Slot {
    pub name: String,
    pub kind: Option<String>,
    pub active: bool,
    pub wal_status: Option<String>,
    pub database: Option<String>,
    pub retained: Option<f64>,
    pub xmin_age: Option<f64>,
    pub catalog_xmin_age: Option<f64>,
    /// 16+: a logical slot invalidated by a conflict with recovery.
    #[serde(default)]
    pub conflicting: Option<bool>,
    /// 17+: why the slot was invalidated.
    #[serde(default)]
    pub invalidation_reason: Option<String>,
    /// 17+: seconds since `inactive_since`.
    #[serde(default)]
    pub inactive_secs: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Prepared {
    pub gid: String,
    pub database: Option<String>,
    pub owner: Option<String>,
    pub secs: Option<f64>,
    pub xid_age: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Archiver {
    pub failed_count: Option<f64>,
    pub last_failed_wal: Option<String>,
    pub archived_secs_ago: Option<f64>,
    pub failed_secs_ago: Option<f64>,
}

impl Archiver {
    /// The last attempt failed: a failure newer than the last success.
    pub fn failing(&self) -> bool {
        match (self.failed_secs_ago, self.archived_secs_ago) {
            (Some(f), Some(a)) => f < a,
            (Some(_), None) => true,
            _ => false,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct IndexRef {
    pub name: String,
    pub tbl: String,
    #[serde(default)]
    pub size: Option<f64>,
    /// A partitioned index (relkind 'I'): invalid only until every partition has its
    /// index attached, which is no fault.
    #[serde(default)]
    pub partitioned: bool,
    /// For a partitioned index: the partitions still lacking their index.
    #[serde(default)]
    pub missing: Option<Vec<String>>,
}

/// The `ACTIVITY` query's row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Activity {
    pub client_connections: f64,
    pub db_connections: f64,
    pub role_connections: f64,
    pub long: Vec<ActiveSession>,
    pub idle: Vec<IdleSession>,
    pub blocked: Vec<BlockedSession>,
    pub holders: Vec<LockHolder>,
    pub xmin: Vec<XminBackend>,
    pub databases: Vec<DatabaseAge>,
    pub oldest: Vec<TableAge>,
    pub replicas: Vec<Replica>,
    pub standby: Option<Standby>,
    pub slots: Vec<Slot>,
    pub prepared: Vec<Prepared>,
    pub archiver: Option<Archiver>,
    /// Sessions of this database by transaction age (`long_transaction`).
    pub xacts: Vec<IdleSession>,
}

/// The `INDEXES` query's row (slower cadence).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IndexLists {
    pub invalid: Vec<IndexRef>,
    pub unused: Vec<IndexRef>,
}

/// One row of the `TABLES` query.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TableRow {
    pub relid: i64,
    pub name: String,
    pub live: f64,
    pub dead: f64,
    pub mod_since_analyze: f64,
    pub ins: f64,
    pub upd: f64,
    pub del: f64,
    pub seq_scan: f64,
    /// `None`: the table has no index.
    pub idx_scan: Option<f64>,
    /// Rows read by sequential scans.
    pub seq_tup_read: f64,
    pub size: f64,
    pub last_vacuum: Option<f64>,
    pub last_analyze: Option<f64>,
    pub now: f64,
    pub reloptions: Option<String>,
    /// pg_class.reltuples (-1: never vacuumed or analyzed), what autovacuum's trigger scales.
    pub reltuples: f64,
}

impl TableRow {
    /// A storage parameter from `reloptions` (`autovacuum_enabled=false`, ...).
    pub fn option(&self, key: &str) -> Option<&str> {
        self.reloptions
            .as_deref()?
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| k.trim() == key)
            .map(|(_, v)| v.trim())
    }

    pub fn autovacuum_disabled(&self) -> bool {
        self.option("autovacuum_enabled").is_some_and(|v| {
            matches!(
                v.to_ascii_lowercase().as_str(),
                "false" | "off" | "0" | "no" | "f" | "n"
            )
        })
    }

    /// How many dead rows make autovacuum vacuum this table: autovacuum_vacuum_threshold
    /// plus autovacuum_vacuum_scale_factor × reltuples, the per-table storage parameters
    /// overriding the global settings (as autovacuum computes it; reltuples -1, never
    /// vacuumed or analyzed, counts as 0).
    pub fn vacuum_trigger(&self, threshold: f64, scale: f64) -> f64 {
        let threshold = self
            .option("autovacuum_vacuum_threshold")
            .and_then(|v| v.parse().ok())
            .unwrap_or(threshold);
        let scale = self
            .option("autovacuum_vacuum_scale_factor")
            .and_then(|v| v.parse().ok())
            .unwrap_or(scale);
        threshold + scale * self.reltuples.max(0.0)
    }

    /// Whether autoanalyze should already have analyzed the table: rows modified since the
    /// last analyze past autovacuum_analyze_threshold + autovacuum_analyze_scale_factor ×
    /// reltuples (per-table storage parameters first; reltuples -1 counts as 0), as
    /// autovacuum computes it.
    pub fn needs_analyze(&self, threshold: f64, scale: f64) -> bool {
        self.mod_since_analyze > self.analyze_trigger(threshold, scale)
    }

    /// How many changed rows make autoanalyze analyze this table (per-table storage
    /// parameters first; reltuples -1 counts as 0).
    pub fn analyze_trigger(&self, threshold: f64, scale: f64) -> f64 {
        let threshold = self
            .option("autovacuum_analyze_threshold")
            .and_then(|v| v.parse().ok())
            .unwrap_or(threshold);
        let scale = self
            .option("autovacuum_analyze_scale_factor")
            .and_then(|v| v.parse().ok())
            .unwrap_or(scale);
        threshold + scale * self.reltuples.max(0.0)
    }
}

/// Bloat estimate of one table (query `BLOAT`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BloatRow {
    pub name: String,
    pub real_size: f64,
    pub bloat_size: f64,
    /// Why the estimate is not possible for this table (ioguix's `is_na`), `None` when it
    /// is: `privilege`, `never_analyzed`, `columns_not_analyzed`, `name_column` (see
    /// [`super::sql::BLOAT`]).
    pub na: Option<String>,
    /// For an index: its table.
    pub table: Option<String>,
}

impl BloatRow {
    fn na_is(&self, reason: &str) -> bool {
        self.na.as_deref() == Some(reason)
    }

    /// ANALYZE would make the estimate possible.
    fn needs_analyze(&self) -> bool {
        self.na_is("never_analyzed") || self.na_is("columns_not_analyzed")
    }
}

/// A group of identical indexes (query `DUPLICATE_INDEXES`): the first is kept.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DuplicateGroup {
    pub table: String,
    pub names: Vec<String>,
    pub sizes: Vec<f64>,
}

/// `"x"` → `x` when it needs no quotes, as PostgreSQL's quote_ident does.
pub fn quote_ident(name: &str) -> String {
    let plain = !name.is_empty()
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// The GRANT that makes a monitoring-only role see everything dbwarden reads.
pub fn grant_monitor(user: &str) -> String {
    format!("GRANT pg_monitor TO {}", quote_ident(user))
}

fn secs(v: f64) -> String {
    Unit::Seconds.format(v.max(0.0))
}

fn bytes(v: f64) -> String {
    Unit::Bytes.format(v)
}

fn count(v: f64) -> String {
    Unit::Count.format(v)
}

/// Keeps the worst observations: those at or above the floor first (worst first, at most
/// [`MAX_OBSERVATIONS`]); when none reaches the floor, some below it so the result still
/// says how many were checked.
pub fn worst_first(
    obs: Vec<Observation>,
    floor: Option<f64>,
    lower_is_worse: bool,
) -> Vec<Observation> {
    let items = obs
        .into_iter()
        .map(|o| (o.value, o.floor_value, o))
        .collect();
    pick_worst(items, floor, lower_is_worse)
        .into_iter()
        .map(|(_, _, o)| o)
        .collect()
}

/// What [`worst_first`] keeps, chosen from `(value, floor value, item)` alone, so a check
/// over every table formats messages only for the few it keeps (formatting them all was
/// most of a round's client CPU on a database with a few hundred tables).
pub fn pick_worst<T>(
    mut items: Vec<(f64, Option<f64>, T)>,
    floor: Option<f64>,
    lower_is_worse: bool,
) -> Vec<(f64, Option<f64>, T)> {
    let above = |v: Option<f64>| match (floor, v) {
        (Some(f), Some(v)) => v >= f,
        _ => true,
    };
    items.sort_by(|a, b| {
        let ord = a.0.total_cmp(&b.0);
        if lower_is_worse { ord } else { ord.reverse() }
    });
    let (keep, rest): (Vec<_>, Vec<_>) = items.into_iter().partition(|i| above(i.1));
    if keep.is_empty() {
        rest.into_iter().take(4 * MAX_OBSERVATIONS).collect()
    } else {
        keep.into_iter().take(MAX_OBSERVATIONS).collect()
    }
}

fn user_app(usr: &Option<String>, app: &Option<String>) -> String {
    let mut s = format!("user {}", usr.as_deref().unwrap_or("?"));
    if let Some(a) = app.as_deref().filter(|a| !a.is_empty()) {
        s.push_str(&format!(", app {a}"));
    }
    s
}

/// Session checks need to see other users' sessions (pg_read_all_stats, part of pg_monitor).
fn sessions_hidden(check: &'static str, inst: &Instance) -> Option<Measurement> {
    (!inst.read_stats).then(|| {
        Measurement::unknown(
            check,
            format!(
                "role {} cannot see other users' sessions (query text, state) without pg_read_all_stats",
                inst.user
            ),
            Some(grant_monitor(&inst.user)),
        )
    })
}

pub fn long_queries(inst: &Instance, act: &Activity) -> Measurement {
    if let Some(m) = sessions_hidden(LONG_QUERY, inst) {
        return m;
    }
    let obs = act
        .long
        .iter()
        .map(|s| {
            let mut d = user_app(&s.usr, &s.app);
            if let Some(t) = &s.wait_event_type {
                d.push_str(&format!(
                    ", waiting on {t}/{}",
                    s.wait_event.as_deref().unwrap_or("?")
                ));
            }
            d.push_str(&format!(
                ": {}",
                query_for_message(s.query.as_deref(), Dialect::Postgres)
            ));
            Observation::new(s.secs.unwrap_or(0.0))
                .subject(format!("pid {}", s.pid))
                .detail(d)
        })
        .collect();
    Measurement::values(LONG_QUERY, obs)
}

pub fn idle_in_transaction(inst: &Instance, act: &Activity) -> Measurement {
    if let Some(m) = sessions_hidden(IDLE_IN_TRANSACTION, inst) {
        return m;
    }
    let obs = act
        .idle
        .iter()
        .map(|s| {
            let mut d = user_app(&s.usr, &s.app);
            if let Some(x) = s.xact_secs {
                d.push_str(&format!(", transaction open {}", secs(x)));
            }
            if s.state.as_deref() == Some("idle in transaction (aborted)") {
                d.push_str(", aborted");
            }
            d.push_str(&format!(
                "; last query: {}",
                query_for_message(s.query.as_deref(), Dialect::Postgres)
            ));
            Observation::new(s.secs.unwrap_or(0.0))
                .subject(format!("pid {}", s.pid))
                .detail(d)
        })
        .collect();
    Measurement::values(IDLE_IN_TRANSACTION, obs)
}

pub fn blocked_sessions(inst: &Instance, act: &Activity) -> Measurement {
    if let Some(m) = sessions_hidden(BLOCKED_SESSIONS, inst) {
        return m;
    }
    // Before 14 PostgreSQL does not record when a lock wait began: the statement's age
    // stands in for it (a long statement that just began waiting reads as a long wait).
    let waitstart = inst.version_num >= 140_000;
    let obs = act
        .blocked
        .iter()
        .map(|s| {
            let mut d = user_app(&s.usr, &s.app);
            if let Some(root) = root_blocker(s, &act.holders) {
                d.push_str(&format!(", blocked by pid {root}"));
                let direct = s.blockers.first().copied();
                if direct != Some(root) && !s.blockers.contains(&root) {
                    d.push_str(&format!(
                        " at the head of the lock chain (waits directly behind pid {})",
                        direct.unwrap_or(root)
                    ));
                } else if s.blockers.len() > 1 {
                    d.push_str(&format!(" and {} more", s.blockers.len() - 1));
                }
                let mut by = Vec::new();
                if let Some(h) = act.holders.iter().find(|h| h.pid == root) {
                    if let Some(u) = &h.usr {
                        by.push(format!("user {u}"));
                    }
                    if let Some(st) = &h.state {
                        match h.secs {
                            Some(x) => by.push(format!("{st} {}", secs(x))),
                            None => by.push(st.clone()),
                        }
                    }
                    if let Some(x) = h.xact_secs {
                        by.push(format!("transaction open {}", secs(x)));
                    }
                    if h.query.is_some() {
                        by.push(query_for_message(h.query.as_deref(), Dialect::Postgres));
                    }
                }
                if !by.is_empty() {
                    d.push_str(&format!(" ({})", by.join(", ")));
                }
            }
            let value = if waitstart {
                if let Some(x) = s.secs {
                    d.push_str(&format!(", statement running {}", secs(x)));
                }
                s.wait_secs.unwrap_or(0.0)
            } else {
                d.push_str(
                    ", time of the statement: PostgreSQL 13 does not record when a lock wait began",
                );
                s.secs.unwrap_or(0.0)
            };
            d.push_str(&format!(
                "; waiting: {}",
                query_for_message(s.query.as_deref(), Dialect::Postgres)
            ));
            Observation::new(value.max(0.0))
                .subject(format!("pid {}", s.pid))
                .detail(d)
        })
        .collect();
    Measurement::values(BLOCKED_SESSIONS, worst_first(obs, None, false))
}

pub fn connections(inst: &Instance, act: &Activity) -> Measurement {
    let usable = (inst.max_connections - inst.su_reserved - inst.reserved).max(1.0);
    let used = act.client_connections;
    let mut d = format!(
        "{} of {} usable: max_connections {}, {} reserved for superusers",
        count(used),
        count(usable),
        count(inst.max_connections),
        count(inst.su_reserved)
    );
    if inst.reserved > 0.0 {
        d.push_str(&format!(
            ", {} for pg_use_reserved_connections",
            count(inst.reserved)
        ));
    }
    if !inst.read_stats {
        d.push_str(&format!(
            "; approximate: other users' sessions are counted without their type ({})",
            grant_monitor(&inst.user)
        ));
    }
    Measurement::value(
        CONNECTIONS,
        Observation::new(used * 100.0 / usable).detail(d),
    )
}

pub fn connection_limit(inst: &Instance, act: &Activity) -> Measurement {
    let mut obs = Vec::new();
    let pct = |used: f64, limit: f64| {
        if limit <= 0.0 {
            100.0
        } else {
            used * 100.0 / limit
        }
    };
    if inst.db_connlimit >= 0.0 {
        obs.push(
            Observation::new(pct(act.db_connections, inst.db_connlimit))
                .subject(format!("database {}", inst.db))
                .detail(format!(
                    "{} of CONNECTION LIMIT {}",
                    count(act.db_connections),
                    count(inst.db_connlimit)
                )),
        );
    }
    if inst.role_connlimit >= 0.0 {
        obs.push(
            Observation::new(pct(act.role_connections, inst.role_connlimit))
                .subject(format!("role {}", inst.user))
                .detail(format!(
                    "{} of CONNECTION LIMIT {}",
                    count(act.role_connections),
                    count(inst.role_connlimit)
                )),
        );
    }
    if obs.is_empty() {
        return Measurement::verdict(
            CONNECTION_LIMIT,
            Status::Ok,
            None,
            format!(
                "no CONNECTION LIMIT on database {} or role {}",
                inst.db, inst.user
            ),
        );
    }
    Measurement::values(CONNECTION_LIMIT, obs)
}

/// cache_hit, deadlocks and temp_files from the counter deltas since the previous round.
/// A changed `stats_reset` or a counter going backwards starts a new baseline.
pub fn counter_checks(previous: Option<&DbCounters>, now: &DbCounters) -> Vec<Measurement> {
    let reset = previous.is_some_and(|p| p.stats_reset != now.stats_reset);
    let delta = if reset {
        Delta::Reset
    } else {
        delta::compare(
            previous.map(|p| p.as_counters()).as_ref(),
            &now.as_counters(),
        )
    };
    let names = [CACHE_HIT, DEADLOCKS, TEMP_FILES];
    match delta {
        Delta::BaselinePending => {
            let c = now.as_counters();
            let pick = |keys: &[&str]| -> Vec<(String, f64)> {
                keys.iter()
                    .filter_map(|k| c.get(*k).map(|v| (k.to_string(), *v)))
                    .collect()
            };
            vec![
                Measurement {
                    check: CACHE_HIT,
                    scope: Default::default(),
                    outcome: Outcome::Counters(pick(&["blks_hit", "blks_read"])),
                },
                Measurement {
                    check: DEADLOCKS,
                    scope: Default::default(),
                    outcome: Outcome::Counters(pick(&["deadlocks"])),
                },
                Measurement {
                    check: TEMP_FILES,
                    scope: Default::default(),
                    outcome: Outcome::Counters(pick(&["temp_files", "temp_bytes"])),
                },
            ]
        }
        Delta::Reset => names
            .iter()
            .map(|n| {
                Measurement::verdict(
                    n,
                    Status::Ok,
                    None,
                    "statistics were reset (or the server restarted) since the previous round; new baseline",
                )
            })
            .collect(),
        Delta::Increase(inc) => {
            let get = |k: &str| inc.get(k).copied().unwrap_or(0.0);
            let cache = match delta::ratio_percent(&inc, "blks_hit", &["blks_hit", "blks_read"]) {
                Some(p) => {
                    let total = get("blks_hit") + get("blks_read");
                    Measurement::value(
                        CACHE_HIT,
                        Observation::new(p).floor(total).detail(format!(
                            "{} of {} block accesses read outside shared buffers since the previous round",
                            count(get("blks_read")),
                            count(total)
                        )),
                    )
                }
                None => Measurement::verdict(
                    CACHE_HIT,
                    Status::Ok,
                    None,
                    "cache hit ratio: no block access since the previous round",
                ),
            };
            vec![
                cache,
                Measurement::value(DEADLOCKS, Observation::new(get("deadlocks"))),
                Measurement::value(
                    TEMP_FILES,
                    Observation::new(get("temp_bytes"))
                        .detail(format!("{} file(s)", count(get("temp_files")))),
                ),
            ]
        }
    }
}

pub fn wraparound(inst: &Instance, act: &Activity) -> Measurement {
    let mut obs = Vec::new();
    for d in &act.databases {
        let ratio = d.xid_age / inst.freeze_max_age.max(1.0);
        let mut detail = if ratio < 1.0 {
            format!(
                "age {} XIDs, {} of autovacuum_freeze_max_age",
                count(d.xid_age),
                Unit::Percent.format(ratio * 100.0)
            )
        } else {
            format!(
                "age {} XIDs, {}× autovacuum_freeze_max_age: anti-wraparound vacuum is not keeping up",
                count(d.xid_age),
                Unit::Count.format((ratio * 10.0).round() / 10.0)
            )
        };
        if d.name == inst.db && !act.oldest.is_empty() {
            let oldest: Vec<String> = act
                .oldest
                .iter()
                .map(|t| format!("{} {}", t.name, count(t.xid_age)))
                .collect();
            detail.push_str(&format!("; oldest tables: {}", oldest.join(", ")));
        }
        obs.push(
            Observation::new(d.xid_age * 100.0 / XID_HORIZON)
                .subject(format!("database {}", d.name))
                .detail(detail),
        );
        if let Some(m) = d.mxid_age.filter(|m| *m > 0.0) {
            obs.push(
                Observation::new(m * 100.0 / XID_HORIZON)
                    .subject(format!("database {} (multixact IDs)", d.name))
                    .detail(format!("age {} multixact IDs", count(m))),
            );
        }
    }
    Measurement::values(WRAPAROUND, worst_first(obs, None, false))
}

/// Replay delay of a standby, in seconds. `stalled_for`: how long earlier rounds have seen
/// replay stand at the position it is at now (`None`: the first round, or replay moved).
/// - its WAL receiver is not streaming (stopped: the primary gone, a network cut; or an
///   archive-only standby): the age of the last replayed transaction. Nothing tells
///   whether the primary is idle, so a standby cut off from it shows as growing lag;
/// - streaming, everything received replayed: 0, whatever the age of the last replayed
///   transaction (an idle primary sends nothing; that is not lag);
/// - streaming, behind, and replay moving (or the first round): the age of the last
///   replayed transaction, how far behind the primary's clock its data is;
/// - streaming, behind, and replay standing still: no more than how long it has stood.
///   On an idle primary the last commit can be old while a record that arrives in parts
///   (a full-page image, a vacuum record) waits to be complete: that is not minutes of
///   lag. A replay that stays stuck grows with every round.
pub fn standby_replay_lag(s: &Standby, stalled_for: Option<f64>) -> f64 {
    let age = s.replay_age.unwrap_or(0.0).max(0.0);
    if s.receiver.as_deref() != Some("streaming") {
        return age;
    }
    match (s.receive_minus_replay, stalled_for) {
        (Some(d), _) if d <= 0.0 => 0.0,
        (Some(_), Some(stalled)) => age.min(stalled.max(0.0)),
        _ => age,
    }
}

/// `stalled_for`: see [`standby_replay_lag`].
pub fn replication_lag(inst: &Instance, act: &Activity, stalled_for: Option<f64>) -> Measurement {
    let mut obs = Vec::new();
    if inst.in_recovery {
        let s = act.standby.clone().unwrap_or_default();
        let lag = standby_replay_lag(&s, stalled_for);
        let streaming = s.receiver.as_deref() == Some("streaming");
        let mut d = match (s.receive_minus_replay, s.replay_age) {
            (_, Some(_)) if !streaming => {
                "delay measured from the last replayed transaction (not streaming: whether the primary is idle cannot be told)".to_string()
            }
            (Some(b), _) if b <= 0.0 => "everything received is replayed".to_string(),
            (Some(b), Some(_)) => format!("{} received but not replayed yet", bytes(b)),
            _ => "nothing replayed yet".to_string(),
        };
        match s.receiver.as_deref() {
            Some("streaming") => {}
            Some(other) => d.push_str(&format!("; WAL receiver {other}")),
            None => d.push_str("; no WAL receiver running"),
        }
        let subject = match s.sender.as_deref() {
            Some(h) => format!("standby (primary {h})"),
            None => "standby".to_string(),
        };
        obs.push(Observation::new(lag).subject(subject).detail(d));
    }
    if !act.replicas.is_empty() && !inst.read_stats {
        return Measurement::unknown(
            REPLICATION_LAG,
            format!(
                "role {} cannot see replication state without pg_read_all_stats",
                inst.user
            ),
            Some(grant_monitor(&inst.user)),
        );
    }
    for r in &act.replicas {
        let w = r.write_lag.unwrap_or(0.0);
        let f = r.flush_lag.unwrap_or(0.0);
        let p = r.replay_lag.unwrap_or(0.0);
        let mut d = format!(
            "{}, write {}, flush {}, replay {}",
            r.state.as_deref().unwrap_or("?"),
            secs(w),
            secs(f),
            secs(p)
        );
        if let Some(b) = r.behind_bytes {
            d.push_str(&format!(", {} behind", bytes(b.max(0.0))));
        }
        if let Some(s) = r.sync_state.as_deref().filter(|s| *s != "async") {
            d.push_str(&format!(", {s}"));
        }
        let name = r.name.as_deref().filter(|n| !n.is_empty()).unwrap_or("?");
        let subject = match &r.addr {
            Some(a) => format!("replica '{name}' ({a})"),
            None => format!("replica '{name}'"),
        };
        obs.push(Observation::new(w.max(f).max(p)).subject(subject).detail(d));
    }
    if obs.is_empty() {
        return Measurement::verdict(
            REPLICATION_LAG,
            Status::Ok,
            None,
            "primary with no replica connected; not a standby",
        );
    }
    Measurement::values(REPLICATION_LAG, obs)
}

pub fn replication_slots(act: &Activity) -> Measurement {
    if act.slots.is_empty() {
        return Measurement::verdict(REPLICATION_SLOTS, Status::Ok, None, "no replication slots");
    }
    if let Some(lost) = act
        .slots
        .iter()
        .find(|s| s.wal_status.as_deref() == Some("lost"))
    {
        return Measurement::verdict(
            REPLICATION_SLOTS,
            Status::Critical,
            None,
            format!(
                "slot '{}': WAL it needs was removed (wal_status lost); its consumer cannot resume: drop the slot and re-create the replica or subscription",
                lost.name
            ),
        );
    }
    let obs = act
        .slots
        .iter()
        .map(|s| {
            let mut d = format!(
                "{} slot, {}",
                s.kind.as_deref().unwrap_or("?"),
                if s.active { "active" } else { "inactive" }
            );
            if let Some(db) = &s.database {
                d.push_str(&format!(", database {db}"));
            }
            if let Some(w) = s.wal_status.as_deref().filter(|w| *w != "reserved") {
                d.push_str(&format!(", wal_status {w}"));
            }
            Observation::new(s.retained.unwrap_or(0.0).max(0.0))
                .subject(format!("slot '{}'", s.name))
                .detail(d)
        })
        .collect();
    Measurement::values(REPLICATION_SLOTS, worst_first(obs, None, false))
}

pub fn prepared_xacts(act: &Activity) -> Measurement {
    let obs = act
        .prepared
        .iter()
        .map(|p| {
            Observation::new(p.secs.unwrap_or(0.0))
                .subject(format!("prepared transaction '{}'", p.gid))
                .detail(format!(
                    "database {}, owner {}; COMMIT PREPARED or ROLLBACK PREPARED it",
                    p.database.as_deref().unwrap_or("?"),
                    p.owner.as_deref().unwrap_or("?")
                ))
        })
        .collect();
    Measurement::values(PREPARED_XACTS, worst_first(obs, None, false))
}

pub fn xmin_horizon(inst: &Instance, act: &Activity) -> Measurement {
    if let Some(m) = sessions_hidden(XMIN_HORIZON, inst) {
        return m;
    }
    let mut obs = Vec::new();
    for b in &act.xmin {
        let mut d = format!(
            "{}, database {}",
            user_app(&b.usr, &None),
            b.datname.as_deref().unwrap_or("?")
        );
        if let Some(st) = &b.state {
            d.push_str(&format!(", {st}"));
        }
        if let Some(x) = b.xact_secs {
            d.push_str(&format!(", transaction open {}", secs(x)));
        }
        obs.push(
            Observation::new(b.xmin_age)
                .subject(format!("oldest transaction pid {}", b.pid))
                .detail(d),
        );
    }
    for s in &act.slots {
        for (age, what) in [(s.xmin_age, "xmin"), (s.catalog_xmin_age, "catalog_xmin")] {
            if let Some(a) = age {
                obs.push(
                    Observation::new(a)
                        .subject(format!("replication slot '{}'", s.name))
                        .detail(format!(
                            "{what}, {}",
                            if s.active { "active" } else { "inactive" }
                        )),
                );
            }
        }
    }
    for p in &act.prepared {
        if let Some(a) = p.xid_age {
            obs.push(
                Observation::new(a)
                    .subject(format!("prepared transaction '{}'", p.gid))
                    .detail(format!(
                        "database {}, prepared {} ago",
                        p.database.as_deref().unwrap_or("?"),
                        secs(p.secs.unwrap_or(0.0))
                    )),
            );
        }
    }
    for r in &act.replicas {
        if let Some(a) = r.xmin_age {
            obs.push(
                Observation::new(a)
                    .subject(format!("standby '{}'", r.name.as_deref().unwrap_or("?")))
                    .detail("hot_standby_feedback"),
            );
        }
    }
    Measurement::values(XMIN_HORIZON, worst_first(obs, None, false))
}

pub fn archiver(
    inst: &Instance,
    act: &Activity,
    ready: Option<f64>,
    t: &CheckThresholds,
) -> Measurement {
    if inst.archive_mode == "off" {
        return Measurement::verdict(ARCHIVER, Status::Ok, None, "archive_mode is off");
    }
    let a = act.archiver.clone().unwrap_or_default();
    let failing = a.failing();
    let failure = || {
        format!(
            "archive_command failing: last failure {} ago on {} ({} failures since the statistics reset)",
            secs(a.failed_secs_ago.unwrap_or(0.0)),
            a.last_failed_wal.as_deref().unwrap_or("?"),
            count(a.failed_count.unwrap_or(0.0))
        )
    };
    let Some(ready) = ready else {
        if failing {
            return Measurement::verdict(ARCHIVER, Status::Warning, None, failure());
        }
        return Measurement::unknown(
            ARCHIVER,
            format!(
                "role {} cannot count WAL segments waiting for archiving (pg_ls_archive_statusdir)",
                inst.user
            ),
            Some(grant_monitor(&inst.user)),
        );
    };
    if !failing {
        return Measurement::value(ARCHIVER, Observation::new(ready));
    }
    let by_threshold = if t.critical.is_some_and(|c| ready >= c) {
        Status::Critical
    } else {
        Status::Warning
    };
    Measurement::verdict(
        ARCHIVER,
        by_threshold,
        Some(ready),
        format!("{}; {} WAL segment(s) waiting", failure(), count(ready)),
    )
}

/// What to say about partitioned indexes not yet attached on every partition (not
/// invalid indexes: `CREATE INDEX ... ON ONLY` is the normal first step of building one
/// per partition, and DROP INDEX CONCURRENTLY is refused for them).
fn partitioned_note(act: &IndexLists) -> Option<String> {
    let notes: Vec<String> = act
        .invalid
        .iter()
        .filter(|i| i.partitioned)
        .take(3)
        .map(|i| match i.missing.as_deref() {
            Some(m) if !m.is_empty() => {
                let first: Vec<&str> = m.iter().take(3).map(String::as_str).collect();
                format!(
                    "partitioned index {} on {} is not complete yet: partition(s) {}{} lack their index (create it on each, then ALTER INDEX {} ATTACH PARTITION <that index>)",
                    i.name,
                    i.tbl,
                    first.join(", "),
                    if m.len() > 3 { ", …" } else { "" },
                    i.name
                )
            }
            _ => format!(
                "partitioned index {} on {} is not complete yet (a sub-partition's index is not attached)",
                i.name, i.tbl
            ),
        })
        .collect();
    (!notes.is_empty()).then(|| notes.join("; "))
}

/// `age`: seconds since the index lists were read (they run on a slower cadence).
pub fn invalid_indexes(act: &IndexLists, age: f64) -> Measurement {
    let invalid: Vec<&IndexRef> = act.invalid.iter().filter(|i| !i.partitioned).collect();
    let note = partitioned_note(act);
    let n = invalid.len();
    if n == 0 {
        return match note {
            Some(note) => Measurement::verdict(
                INVALID_INDEXES,
                Status::Ok,
                Some(0.0),
                format!("no invalid index; {note}; checked {} ago", secs(age)),
            ),
            None => Measurement::value(INVALID_INDEXES, Observation::new(0.0)),
        };
    }
    let names: Vec<&str> = invalid.iter().take(3).map(|i| i.name.as_str()).collect();
    let subject = if n == 1 {
        format!("index {}", names.join(""))
    } else {
        format!(
            "indexes {}{}",
            names.join(", "),
            if n > 3 { ", …" } else { "" }
        )
    };
    let mut detail = if n == 1 {
        format!(
            "on table {}; left by a failed CREATE/REINDEX CONCURRENTLY: DROP INDEX CONCURRENTLY and build it again; checked {} ago",
            invalid[0].tbl,
            secs(age)
        )
    } else {
        format!(
            "left by failed CREATE/REINDEX CONCURRENTLY: DROP INDEX CONCURRENTLY and build them again; checked {} ago",
            secs(age)
        )
    };
    if let Some(note) = note {
        detail.push_str(&format!("; {note}"));
    }
    Measurement::value(
        INVALID_INDEXES,
        Observation::new(n as f64).subject(subject).detail(detail),
    )
}

pub fn unused_indexes(act: &IndexLists, age: f64) -> Measurement {
    let obs = act
        .unused
        .iter()
        .map(|i| {
            let size = i.size.unwrap_or(0.0);
            Observation::new(size)
                .floor(size)
                .subject(format!("index {}", i.name))
                .detail(format!(
                    "on {}, no scan since the statistics were reset (scans on standbys are not counted); checked {} ago",
                    i.tbl,
                    secs(age)
                ))
        })
        .collect();
    Measurement::values(UNUSED_INDEXES, obs)
}

/// `age`: seconds since the size was measured (it runs on a slower cadence).
pub fn database_size(db: &str, size: f64, age: f64) -> Measurement {
    Measurement::value(
        DATABASE_SIZE,
        Observation::new(size)
            .subject(format!("database {db}"))
            .detail(format!("measured {} ago", secs(age))),
    )
}

fn ago(now: f64, then: Option<f64>) -> Option<f64> {
    then.map(|t| (now - t).max(0.0))
}

/// Dead rows of the tables autovacuum should already have vacuumed: only a table whose
/// dead rows are past its own autovacuum trigger ([`TableRow::vacuum_trigger`]) is
/// judged, by the share of dead rows (a hot table between two autovacuum runs, or one
/// tuned to a higher scale factor, is not an alarm). It is judged against that trigger
/// even where autovacuum is off (globally or for the table): that is the `settings`
/// check's finding, not a reason to alarm on every table.
pub fn dead_tuples(inst: &Instance, tables: &[TableRow], t: &CheckThresholds) -> Measurement {
    let candidates = tables
        .iter()
        .filter(|r| r.live + r.dead > 0.0)
        .filter(|r| r.dead > r.vacuum_trigger(inst.vacuum_threshold, inst.vacuum_scale))
        .map(|r| (r.dead * 100.0 / (r.live + r.dead), Some(r.live + r.dead), r))
        .collect();
    let obs = pick_worst(candidates, t.floor, false)
        .into_iter()
        .map(|(value, total, r)| {
            let trigger = r
                .vacuum_trigger(inst.vacuum_threshold, inst.vacuum_scale)
                .max(1.0);
            let mut d = format!(
                "{} dead of {} rows, {}× past the point where autovacuum should have run ({} dead rows)",
                count(r.dead),
                count(r.live + r.dead),
                Unit::Count.format((r.dead / trigger * 10.0).floor() / 10.0),
                count(trigger.round())
            );
            match ago(r.now, r.last_vacuum) {
                Some(a) => d.push_str(&format!(", no (auto)vacuum for {}", secs(a))),
                None => d.push_str(", never vacuumed"),
            }
            if r.autovacuum_disabled() {
                d.push_str(", autovacuum disabled on this table");
            }
            Observation::new(value)
                .floor(total.unwrap_or(0.0))
                .subject(format!("table {}", r.name))
                .detail(d)
        })
        .collect();
    Measurement::values(DEAD_TUPLES, obs)
}

/// When each table was first seen past its autoanalyze threshold, per table oid, with the
/// last analyze it had then: PostgreSQL does not record when a table crossed, so the
/// engine keeps it between rounds (a restart starts the clocks again).
pub type StaleSince = HashMap<i64, (Option<f64>, std::time::Instant)>;

/// Updates `since` with this round's tables (a table past its threshold is remembered from
/// the first round that saw it so; one analyzed since, or back below it, is forgotten)
/// and returns the seconds each table has been past it, as of `now`.
pub fn track_stale(
    since: &mut StaleSince,
    inst: &Instance,
    tables: &[TableRow],
    now: std::time::Instant,
) -> HashMap<i64, f64> {
    let mut next = StaleSince::with_capacity(since.len());
    let mut out = HashMap::new();
    for r in tables
        .iter()
        .filter(|r| r.needs_analyze(inst.analyze_threshold, inst.analyze_scale))
    {
        let at = match since.get(&r.relid) {
            // Analyzed in between and past the threshold again: a new crossing.
            Some((analyzed, at)) if *analyzed == r.last_analyze => *at,
            _ => now,
        };
        next.insert(r.relid, (r.last_analyze, at));
        out.insert(r.relid, now.saturating_duration_since(at).as_secs_f64());
    }
    *since = next;
    out
}

/// Tables past their autoanalyze threshold, judged by how long they have been past it
/// (`past`, from [`track_stale`]), not by the age of their last analyze: a table analyzed
/// 8 days ago that has just crossed is not stale yet.
pub fn stale_stats(
    inst: &Instance,
    tables: &[TableRow],
    past: &HashMap<i64, f64>,
    t: &CheckThresholds,
) -> Measurement {
    let candidates = tables
        .iter()
        .filter(|r| r.needs_analyze(inst.analyze_threshold, inst.analyze_scale))
        .map(|r| {
            (
                past.get(&r.relid).copied().unwrap_or(0.0),
                Some(r.live + r.dead),
                r,
            )
        })
        .collect();
    let obs = pick_worst(candidates, t.floor, false)
        .into_iter()
        .map(|(value, size, r)| {
            let mut d = format!(
                "{} rows modified since the last analyze",
                count(r.mod_since_analyze)
            );
            match ago(r.now, r.last_analyze) {
                Some(a) => d.push_str(&format!(" {} ago", secs(a))),
                None => d.push_str(" (never analyzed)"),
            }
            d.push_str(", time counted from the first round that saw it past the threshold");
            if r.autovacuum_disabled() {
                d.push_str(", autovacuum disabled on this table");
            }
            Observation::new(value)
                .floor(size.unwrap_or(0.0))
                .subject(format!("table {}", r.name))
                .detail(d)
        })
        .collect();
    Measurement::values(STALE_STATS, obs)
}

/// Snapshots of each table's scan counters (seq_scan, idx_scan, seq_tup_read), so
/// `seq_scans` judges the scans of a recent window instead of lifetime counters, which
/// never clear after the missing index is added.
#[derive(Debug, Default)]
pub struct ScanWindow {
    snapshots: std::collections::VecDeque<(std::time::Instant, HashMap<i64, [f64; 3]>)>,
}

/// Per table: scan counter increases over `secs` seconds (the window).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScanDeltas {
    pub secs: f64,
    pub tables: HashMap<i64, [f64; 3]>,
}

impl ScanWindow {
    /// Records this round's counters and returns the increases since the oldest snapshot
    /// kept: [`SEQ_SCAN_WINDOW`] or a little more once the daemon has run that long,
    /// since the first round before (`None` on the very first round: baseline pending).
    /// A table whose counters went backwards (statistics reset) has no delta until the
    /// window passes its reset.
    pub fn observe(&mut self, tables: &[TableRow], now: std::time::Instant) -> Option<ScanDeltas> {
        let current: HashMap<i64, [f64; 3]> = tables
            .iter()
            .map(|r| {
                (
                    r.relid,
                    [r.seq_scan, r.idx_scan.unwrap_or(0.0), r.seq_tup_read],
                )
            })
            .collect();
        let deltas = self.snapshots.front().map(|(at, old)| ScanDeltas {
            secs: now.saturating_duration_since(*at).as_secs_f64(),
            tables: current
                .iter()
                .filter_map(|(id, c)| {
                    let o = old.get(id)?;
                    (c.iter().zip(o).all(|(c, o)| c >= o))
                        .then(|| (*id, [c[0] - o[0], c[1] - o[1], c[2] - o[2]]))
                })
                .collect(),
        });
        let due = self
            .snapshots
            .back()
            .is_none_or(|(at, _)| now.saturating_duration_since(*at) >= SEQ_SCAN_SNAPSHOT_EVERY);
        if due {
            self.snapshots.push_back((now, current));
        }
        // Keep the newest snapshot at least a window old, and everything after it.
        while self
            .snapshots
            .get(1)
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) >= SEQ_SCAN_WINDOW)
        {
            self.snapshots.pop_front();
        }
        deltas
    }
}

/// Share of sequential scans on large tables over the recent window (`deltas`, from
/// [`ScanWindow::observe`]); a table scanned fewer than [`SEQ_SCAN_MIN_SCANS`] times in
/// it is not judged.
pub fn seq_scans(
    tables: &[TableRow],
    deltas: Option<&ScanDeltas>,
    t: &CheckThresholds,
) -> Measurement {
    let Some(deltas) = deltas else {
        return Measurement::verdict(
            SEQ_SCANS,
            Status::Ok,
            None,
            "of scans sequential: baseline pending (judged from the scans between rounds, over up to an hour)",
        );
    };
    let candidates = tables
        .iter()
        .filter_map(|r| {
            let d = deltas.tables.get(&r.relid)?;
            (d[0] + d[1] >= SEQ_SCAN_MIN_SCANS)
                .then(|| (d[0] * 100.0 / (d[0] + d[1]), Some(r.live), (r, *d)))
        })
        .collect();
    let obs = pick_worst(candidates, t.floor, false)
        .into_iter()
        .map(|(value, live, (r, d))| {
            let mut det = match r.idx_scan {
                None => format!(
                    "{} sequential scans reading {} rows in the last {}, the table has no index",
                    count(d[0]),
                    count(d[2]),
                    secs(deltas.secs)
                ),
                Some(_) => format!(
                    "{} sequential scans reading {} rows vs {} index scans in the last {}; a missing index?",
                    count(d[0]),
                    count(d[2]),
                    count(d[1]),
                    secs(deltas.secs)
                ),
            };
            det.push_str(&format!(", {} live rows", count(r.live)));
            Observation::new(value)
                .floor(live.unwrap_or(0.0))
                .subject(format!("table {}", r.name))
                .detail(det)
        })
        .collect();
    Measurement::values(SEQ_SCANS, obs)
}

/// `age`: seconds since the expensive probe ran (shown so a reused result is not mistaken
/// for a fresh one). Tables whose estimate is not possible are never judged on it: a
/// missing privilege is UNKNOWN with the GRANT, missing statistics UNKNOWN with the
/// ANALYZE to run (only when no table could be estimated; otherwise a note), and a column
/// of type name is said once.
pub fn bloat(rows: &[BloatRow], user: &str, age: f64, t: &CheckThresholds) -> Measurement {
    bloat_estimate(BLOAT, "table", rows, user, age, t)
}

/// The btree index bloat estimate (`INDEX_BLOAT`), judged like [`bloat`].
pub fn index_bloat(rows: &[BloatRow], user: &str, age: f64, t: &CheckThresholds) -> Measurement {
    bloat_estimate(INDEX_BLOAT, "index", rows, user, age, t)
}

/// `kind`: "table" or "index" (the rows' subjects); an index row's ANALYZE is its table's.
fn bloat_estimate(
    check: &'static str,
    kind: &str,
    rows: &[BloatRow],
    user: &str,
    age: f64,
    t: &CheckThresholds,
) -> Measurement {
    let kinds = if kind == "index" {
        "index(es)"
    } else {
        "table(s)"
    };
    let hidden = rows.iter().filter(|r| r.na_is("privilege")).count();
    let analyze: Vec<&BloatRow> = rows.iter().filter(|r| r.needs_analyze()).collect();
    let name_cols: Vec<&BloatRow> = rows.iter().filter(|r| r.na_is("name_column")).collect();
    let estimable: Vec<&BloatRow> = rows.iter().filter(|r| r.na.is_none()).collect();
    let list = |v: &[&BloatRow]| {
        let mut names: Vec<&str> = v.iter().take(3).map(|r| r.name.as_str()).collect();
        if v.len() > 3 {
            names.push("…");
        }
        names.join(", ")
    };
    let list_tables = |v: &[&BloatRow]| {
        let mut names: Vec<&str> = Vec::new();
        for r in v {
            let n = r.table.as_deref().unwrap_or(&r.name);
            if !names.contains(&n) {
                names.push(n);
            }
        }
        let more = names.len() > 3;
        names.truncate(3);
        if more {
            names.push("…");
        }
        names.join(", ")
    };
    let analyze_note = (!analyze.is_empty()).then(|| {
        format!(
            "estimate not possible for {} {kinds} without statistics (never analyzed, or a column added since the last ANALYZE): run ANALYZE {}",
            analyze.len(),
            list_tables(&analyze)
        )
    });
    let name_note = (!name_cols.is_empty()).then(|| {
        format!(
            "estimate not possible for {} (a column of type name, which the estimate cannot size)",
            list(&name_cols)
        )
    });
    if estimable.is_empty() {
        if hidden > 0 {
            let mut reason = format!(
                "{hidden} {kinds} above the size floor, but pg_stats hides their columns from role {user} (statistics are shown only for columns the role may SELECT)"
            );
            if let Some(n) = &analyze_note {
                reason.push_str(&format!("; {n}"));
            }
            return Measurement::unknown(
                check,
                reason,
                Some(format!(
                    "GRANT pg_read_all_data TO {} (PostgreSQL 14+) or SELECT on the tables; or disable the check with {check} = {{ enabled = false }}",
                    quote_ident(user)
                )),
            );
        }
        if let Some(n) = analyze_note {
            let mut tables: Vec<&str> = Vec::new();
            for r in &analyze {
                let n = r.table.as_deref().unwrap_or(&r.name);
                if !tables.contains(&n) {
                    tables.push(n);
                }
            }
            return Measurement::unknown(
                check,
                format!("{n}; estimated {} ago", secs(age)),
                Some(format!("ANALYZE {}", tables.join(", "))),
            );
        }
        if let Some(n) = name_note {
            return Measurement::verdict(check, Status::Ok, None, n);
        }
    }
    let obs = estimable
        .iter()
        .filter(|r| r.real_size > 0.0)
        .map(|r| {
            let mut d = format!(
                "~{} of {} reclaimable, estimated {} ago",
                bytes(r.bloat_size),
                bytes(r.real_size),
                secs(age)
            );
            if let Some(tbl) = &r.table {
                d.push_str(&format!(
                    " (on table {tbl}; REINDEX INDEX CONCURRENTLY to reclaim)"
                ));
            }
            if hidden > 0 {
                d.push_str(&format!("; {hidden} {kinds} not estimated (no SELECT)"));
            }
            if let Some(n) = &analyze_note {
                d.push_str(&format!("; {n}"));
            }
            if let Some(n) = &name_note {
                d.push_str(&format!("; {n}"));
            }
            Observation::new(r.bloat_size * 100.0 / r.real_size)
                .floor(r.real_size)
                .subject(format!("{kind} {}", r.name))
                .detail(d)
        })
        .collect();
    Measurement::values(check, worst_first(obs, t.floor, false))
}

pub fn duplicate_indexes(groups: &[DuplicateGroup], age: f64) -> Measurement {
    let mut obs = Vec::new();
    for g in groups {
        let Some(keep) = g.names.first() else {
            continue;
        };
        for (name, size) in g.names.iter().zip(&g.sizes).skip(1) {
            obs.push(
                Observation::new(*size)
                    .subject(format!("index {name}"))
                    .detail(format!(
                        "same definition as {keep} on {}; found {} ago",
                        g.table,
                        secs(age)
                    )),
            );
        }
    }
    Measurement::values(DUPLICATE_INDEXES, worst_first(obs, None, false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::catalog::{judge_builtin as judge, spec_of as spec};

    fn inst() -> Instance {
        Instance {
            db: "shop".into(),
            user: "dbwarden".into(),
            read_stats: true,
            read_settings: true,
            monitor: true,
            max_connections: 100.0,
            su_reserved: 3.0,
            freeze_max_age: 200_000_000.0,
            analyze_threshold: 50.0,
            analyze_scale: 0.1,
            vacuum_threshold: 50.0,
            vacuum_scale: 0.2,
            block_size: 8192.0,
            archive_mode: "off".into(),
            db_connlimit: -1.0,
            role_connlimit: -1.0,
            ..Instance::default()
        }
    }

    fn standby(behind: f64, age: f64, receiver: Option<&str>) -> Standby {
        Standby {
            receive_minus_replay: Some(behind),
            received: Some(1_000_000.0 + behind),
            replayed: Some(1_000_000.0),
            replay_age: Some(age),
            receiver: receiver.map(str::to_string),
            sender: None,
            receiver_pid: None,
        }
    }

    #[test]
    fn standby_lag_is_zero_when_everything_received_is_replayed() {
        let streaming = Some("streaming");
        // Idle primary: last transaction 2 h ago, but nothing is waiting to be replayed.
        assert_eq!(
            standby_replay_lag(&standby(0.0, 7200.0, streaming), None),
            0.0
        );
        // Behind (first round): the age of the last replayed transaction.
        assert_eq!(
            standby_replay_lag(&standby(16e6, 42.0, streaming), None),
            42.0
        );
        // Clock skew must not produce negative lag.
        assert_eq!(
            standby_replay_lag(&standby(10.0, -3.0, streaming), None),
            0.0
        );
    }

    #[test]
    fn a_stalled_replay_counts_from_when_it_stalled() {
        let streaming = Some("streaming");
        // Idle primary, last commit 2 h ago, a record still arriving in parts: replay has
        // stood still since the previous round 0.3 s ago. Not 2 h of lag.
        assert_eq!(
            standby_replay_lag(&standby(14_800.0, 7200.0, streaming), Some(0.3)),
            0.3
        );
        // Replay stuck for 10 minutes: the lag grows with it.
        assert_eq!(
            standby_replay_lag(&standby(14_800.0, 7200.0, streaming), Some(600.0)),
            600.0
        );
        // Under load the last replayed commit is recent: that is the lag.
        assert_eq!(
            standby_replay_lag(&standby(14_800.0, 0.4, streaming), Some(30.0)),
            0.4
        );
        // Replay moving but far behind: the full age.
        assert_eq!(
            standby_replay_lag(&standby(16e6, 600.0, streaming), None),
            600.0
        );
    }

    #[test]
    fn a_standby_without_a_streaming_receiver_shows_the_replay_age() {
        // The receiver stopped (primary gone, network cut): what it received is replayed,
        // but the primary may be committing on.
        for receiver in [None, Some("waiting"), Some("stopping")] {
            assert_eq!(
                standby_replay_lag(&standby(0.0, 400.0, receiver), None),
                400.0,
                "{receiver:?}"
            );
        }
        let mut archive_only = standby(0.0, 30.0, None);
        archive_only.receive_minus_replay = None;
        assert_eq!(standby_replay_lag(&archive_only, None), 30.0);
        let mut i = inst();
        i.in_recovery = true;
        let act = Activity {
            standby: Some(standby(0.0, 400.0, None)),
            ..Activity::default()
        };
        let r = judge(&replication_lag(&i, &act, None));
        assert_eq!(r.status, Status::Critical, "{}", r.message);
        assert!(
            r.message.contains("no WAL receiver running"),
            "{}",
            r.message
        );
    }

    #[test]
    fn standby_message_names_the_state() {
        let mut i = inst();
        i.in_recovery = true;
        let act = Activity {
            standby: Some(Standby {
                sender: Some("10.0.0.1".into()),
                ..standby(0.0, 7200.0, Some("streaming"))
            }),
            ..Activity::default()
        };
        let r = judge(&replication_lag(&i, &act, None));
        assert_eq!(r.status, Status::Ok);
        assert!(
            r.message.contains("standby (primary 10.0.0.1): 0s"),
            "{}",
            r.message
        );
        assert!(r.message.contains("everything received is replayed"));
    }

    #[test]
    fn replica_lag_uses_the_largest_of_write_flush_replay() {
        let act = Activity {
            replicas: vec![Replica {
                name: Some("standby1".into()),
                addr: Some("10.0.0.2".into()),
                state: Some("streaming".into()),
                sync_state: Some("async".into()),
                write_lag: Some(1.0),
                flush_lag: Some(2.0),
                replay_lag: Some(400.0),
                behind_bytes: Some(3.0 * 1024.0 * 1024.0),
                xmin_age: None,
                logical: false,
            }],
            ..Activity::default()
        };
        let r = judge(&replication_lag(&inst(), &act, None));
        assert_eq!(r.status, Status::Critical);
        assert!(
            r.message
                .starts_with("replica 'standby1' (10.0.0.2): 6.7min replication lag"),
            "{}",
            r.message
        );
        assert!(r.message.contains("3 MB behind"), "{}", r.message);
        let mut hidden = inst();
        hidden.read_stats = false;
        let r = judge(&replication_lag(&hidden, &act, None));
        assert_eq!(r.status, Status::Unknown);
        assert!(r.message.contains("GRANT pg_monitor TO dbwarden"));
        let r = judge(&replication_lag(&inst(), &Activity::default(), None));
        assert_eq!(r.status, Status::Ok);
    }

    #[test]
    fn session_messages_name_pid_user_duration_and_redacted_query() {
        let act = Activity {
            long: vec![ActiveSession {
                pid: 4242,
                usr: Some("app".into()),
                app: Some("psql".into()),
                secs: Some(2400.0),
                query: Some("SELECT * FROM users WHERE password = 'hunter2' AND id = 7".into()),
                ..ActiveSession::default()
            }],
            ..Activity::default()
        };
        let r = judge(&long_queries(&inst(), &act));
        assert_eq!(r.status, Status::Critical);
        assert_eq!(
            r.message,
            "pid 4242: 40min running (user app, app psql: SELECT * FROM users WHERE password = ? AND id = ?) (warning ≥ 5min, critical ≥ 30min)"
        );
        assert!(!r.message.contains("hunter2"));
    }

    fn holder(pid: i64, blockers: Option<Vec<i64>>) -> LockHolder {
        LockHolder {
            pid,
            usr: Some("batch".into()),
            state: Some("idle in transaction".into()),
            secs: Some(130.0),
            xact_secs: Some(140.0),
            query: Some("UPDATE t SET v = 1 WHERE id = 1".into()),
            blockers,
        }
    }

    #[test]
    fn blocked_session_is_judged_on_its_lock_wait_and_names_its_blocker() {
        let mut i = inst();
        i.version_num = 150_000;
        let act = Activity {
            blocked: vec![BlockedSession {
                pid: 11,
                usr: Some("app".into()),
                // A 10-minute statement that has waited 45 s.
                secs: Some(600.0),
                wait_secs: Some(45.0),
                query: Some("UPDATE t SET v = 2 WHERE id = 1".into()),
                blockers: vec![10],
                ..BlockedSession::default()
            }],
            holders: vec![holder(10, None)],
            ..Activity::default()
        };
        let r = judge(&blocked_sessions(&i, &act));
        assert_eq!(r.status, Status::Warning);
        assert_eq!(r.value, Some(45.0));
        assert!(r.message.starts_with("pid 11: 45s waiting for a lock (user app, blocked by pid 10 (user batch, idle in transaction 2.2min, transaction open 2.3min, UPDATE t SET v = ? WHERE id = ?), statement running 10min; waiting: UPDATE t SET v = ? WHERE id = ?)"), "{}", r.message);
        // A wait that began a moment ago (waitstart not yet set) is no long wait.
        let mut fresh = act.clone();
        fresh.blocked[0].wait_secs = None;
        assert_eq!(judge(&blocked_sessions(&i, &fresh)).status, Status::Ok);
        // PostgreSQL 13 has no waitstart: the statement's age, and the message says so.
        i.version_num = 130_000;
        let r = judge(&blocked_sessions(&i, &act));
        assert_eq!(r.status, Status::Critical);
        assert!(
            r.message
                .contains("PostgreSQL 13 does not record when a lock wait began"),
            "{}",
            r.message
        );
    }

    #[test]
    fn the_root_of_a_lock_chain_is_named_not_another_waiter() {
        let mut i = inst();
        i.version_num = 150_000;
        // 10 holds the lock, 12 waits on 10, 11 waits on 12.
        let s = BlockedSession {
            pid: 11,
            wait_secs: Some(40.0),
            blockers: vec![12],
            ..BlockedSession::default()
        };
        let holders = vec![holder(12, Some(vec![10])), holder(10, None)];
        assert_eq!(root_blocker(&s, &holders), Some(10));
        let act = Activity {
            blocked: vec![s.clone()],
            holders: holders.clone(),
            ..Activity::default()
        };
        let r = judge(&blocked_sessions(&i, &act));
        assert!(
            r.message.contains("blocked by pid 10 at the head of the lock chain (waits directly behind pid 12) (user batch"),
            "{}",
            r.message
        );
        // Not visible (a prepared transaction, or gone): the last pid reached is the head.
        assert_eq!(root_blocker(&s, &holders[..1]), Some(10));
        // A cycle the deadlock detector has not broken yet: the direct blocker.
        let cycle = vec![holder(12, Some(vec![11]))];
        assert_eq!(root_blocker(&s, &cycle), Some(12));
        // No blockers at all: none.
        let none = BlockedSession::default();
        assert_eq!(root_blocker(&none, &holders), None);
    }

    #[test]
    fn hidden_sessions_are_unknown_with_the_grant() {
        let mut i = inst();
        i.read_stats = false;
        i.user = "Mon".into();
        for m in [
            long_queries(&i, &Activity::default()),
            idle_in_transaction(&i, &Activity::default()),
            blocked_sessions(&i, &Activity::default()),
            xmin_horizon(&i, &Activity::default()),
        ] {
            let r = judge(&m);
            assert_eq!(r.status, Status::Unknown);
            assert!(
                r.message.ends_with("fix: GRANT pg_monitor TO \"Mon\""),
                "{}",
                r.message
            );
        }
    }

    #[test]
    fn connections_respect_reserved_slots() {
        let act = Activity {
            client_connections: 90.0,
            ..Activity::default()
        };
        let r = judge(&connections(&inst(), &act));
        // 90 of 97 usable = 92.8%.
        assert_eq!(r.status, Status::Warning);
        assert!(
            r.message
                .starts_with("92.8% of usable connections in use (90 of 97 usable"),
            "{}",
            r.message
        );
        let mut i = inst();
        i.role_connlimit = 4.0;
        let act = Activity {
            role_connections: 4.0,
            db_connections: 4.0,
            ..Activity::default()
        };
        let r = judge(&connection_limit(&i, &act));
        assert_eq!(r.status, Status::Critical);
        assert!(
            r.message.starts_with(
                "role dbwarden: 100% of the connection limit in use (4 of CONNECTION LIMIT 4)"
            ),
            "{}",
            r.message
        );
        assert_eq!(judge(&connection_limit(&inst(), &act)).status, Status::Ok);
    }

    #[test]
    fn counters_baseline_then_delta_then_reset() {
        let a = DbCounters {
            blks_hit: 1000.0,
            blks_read: 100.0,
            deadlocks: 2.0,
            temp_files: 1.0,
            temp_bytes: 1000.0,
            stats_reset: None,
        };
        let first = counter_checks(None, &a);
        assert_eq!(first.len(), 3);
        for m in &first {
            let r = judge(m);
            assert_eq!(r.status, Status::Ok);
            assert!(r.message.contains("baseline pending"), "{}", r.message);
        }
        let b = DbCounters {
            blks_hit: 21_000.0,
            blks_read: 5_100.0,
            deadlocks: 3.0,
            temp_files: 3.0,
            temp_bytes: 2.0 * 1024.0 * 1024.0 * 1024.0,
            stats_reset: None,
        };
        let second: Vec<_> = counter_checks(Some(&a), &b).iter().map(judge).collect();
        assert_eq!(second[0].value, Some(80.0));
        assert_eq!(second[0].status, Status::Critical);
        assert_eq!(second[1].value, Some(1.0));
        assert_eq!(second[1].status, Status::Warning);
        assert_eq!(second[2].status, Status::Warning);
        assert!(
            second[2].message.contains("2 file(s)"),
            "{}",
            second[2].message
        );
        // Counter going backwards, or a new stats_reset: new baseline, OK.
        let c = DbCounters {
            stats_reset: Some(1.0),
            ..b
        };
        for m in counter_checks(Some(&b), &c) {
            let r = judge(&m);
            assert_eq!(r.status, Status::Ok);
            assert!(r.message.contains("new baseline"), "{}", r.message);
        }
        for m in counter_checks(Some(&b), &a) {
            assert!(judge(&m).message.contains("new baseline"));
        }
        // A quiet interval is below the cache-hit floor: not judged.
        let quiet = DbCounters {
            blks_hit: a.blks_hit + 10.0,
            blks_read: a.blks_read + 10.0,
            ..a
        };
        let r = judge(&counter_checks(Some(&a), &quiet)[0]);
        assert_eq!(r.status, Status::Ok);
    }

    fn table(name: &str, live: f64, dead: f64) -> TableRow {
        TableRow {
            relid: 1,
            name: name.into(),
            live,
            dead,
            now: 1_000_000.0,
            last_vacuum: Some(1_000_000.0 - 7200.0),
            idx_scan: Some(0.0),
            ..TableRow::default()
        }
    }

    #[test]
    fn dead_tuples_judge_big_tables_only_and_name_them() {
        let t = CheckThresholds::builtin(spec(DEAD_TUPLES));
        let mut orders = table("public.orders", 59_000.0, 41_000.0);
        orders.reltuples = 100_000.0;
        orders.reloptions = Some("autovacuum_enabled=false,fillfactor=90".into());
        let tables = vec![table("public.tiny", 1.0, 99.0), orders];
        let r = judge(&dead_tuples(&inst(), &tables, &t));
        assert_eq!(r.status, Status::Critical);
        // Trigger: 50 + 0.2 × 100000 = 20050 dead rows; 41000 is 2.0× that.
        assert_eq!(
            r.message,
            "table public.orders: 41% dead tuples (41000 dead of 100000 rows, 2× past the point where autovacuum should have run (20050 dead rows), no (auto)vacuum for 2h, autovacuum disabled on this table) (warning ≥ 20%, critical ≥ 40%)"
        );
    }

    #[test]
    fn dead_tuples_judge_each_table_against_its_own_autovacuum_trigger() {
        let t = CheckThresholds::builtin(spec(DEAD_TUPLES));
        // 30% dead, tuned to vacuum at half the table: autovacuum is not due, OK.
        let mut tuned = table("public.tuned", 14_000.0, 6_000.0);
        tuned.reltuples = 20_000.0;
        tuned.reloptions = Some("autovacuum_vacuum_scale_factor=0.5".into());
        let r = judge(&dead_tuples(&inst(), std::slice::from_ref(&tuned), &t));
        assert_eq!(r.status, Status::Ok, "{}", r.message);
        // The same rows with the default 0.2: 6000 > 4050, past its trigger, WARNING.
        let mut plain = tuned.clone();
        plain.reloptions = None;
        let r = judge(&dead_tuples(&inst(), &[plain.clone()], &t));
        assert_eq!(r.status, Status::Warning, "{}", r.message);
        assert!(r.message.contains("1.4× past the point"), "{}", r.message);
        // A per-table threshold counts too.
        let mut threshold = plain.clone();
        threshold.reloptions = Some("autovacuum_vacuum_threshold=7000".into());
        assert_eq!(
            judge(&dead_tuples(&inst(), &[threshold], &t)).status,
            Status::Ok
        );
        // A hot table between two autovacuum runs: 25% dead but under its trigger
        // (global scale factor 0.4 here).
        let mut i = inst();
        i.vacuum_scale = 0.4;
        assert_eq!(judge(&dead_tuples(&i, &[plain], &t)).status, Status::Ok);
        // Never vacuumed or analyzed (reltuples -1): the trigger is the threshold alone.
        let mut fresh = table("public.fresh", 10_000.0, 10_000.0);
        fresh.reltuples = -1.0;
        assert_eq!(
            judge(&dead_tuples(&inst(), &[fresh], &t)).status,
            Status::Critical
        );
    }

    #[test]
    fn stale_stats_count_from_the_crossing_not_the_last_analyze() {
        use std::time::{Duration, Instant};
        let t = CheckThresholds::builtin(spec(STALE_STATS));
        let day = 86_400.0;
        // Analyzed 8 days ago, just crossed its threshold (50 + 10% of 100000).
        let mut a = table("public.a", 100_000.0, 0.0);
        a.reltuples = 100_000.0;
        a.mod_since_analyze = 20_000.0;
        a.last_analyze = Some(a.now - 8.0 * day);
        // Below its threshold, analyzed long ago: not a candidate.
        let mut b = table("public.b", 100_000.0, 0.0);
        b.relid = 2;
        b.reltuples = 100_000.0;
        b.mod_since_analyze = 5_000.0;
        b.last_analyze = Some(b.now - 30.0 * day);
        let tables = vec![a.clone(), b];
        let mut since = StaleSince::new();
        let t0 = Instant::now();
        let past = track_stale(&mut since, &inst(), &tables, t0);
        let m = stale_stats(&inst(), &tables, &past, &t);
        let Outcome::Values(obs) = &m.outcome else {
            panic!("{m:?}")
        };
        assert_eq!(obs.len(), 1);
        let r = judge(&m);
        assert_eq!(r.status, Status::Ok, "{}", r.message);
        assert!(
            r.message
                .contains("20000 rows modified since the last analyze 8d ago"),
            "{}",
            r.message
        );
        // Two hours later: still OK; past one day: WARNING, past 7: CRITICAL.
        for (after, status) in [
            (2.0 * 3600.0, Status::Ok),
            (day + 60.0, Status::Warning),
            (7.0 * day + 60.0, Status::Critical),
        ] {
            let now = t0 + Duration::from_secs_f64(after);
            let past = track_stale(&mut since, &inst(), &tables, now);
            assert_eq!(past.get(&1), Some(&after));
            assert_eq!(
                judge(&stale_stats(&inst(), &tables, &past, &t)).status,
                status
            );
        }
        // Analyzed (a new last_analyze) and past the threshold again: the clock restarts.
        let mut again = a.clone();
        again.last_analyze = Some(a.now - 60.0);
        let later = t0 + Duration::from_secs_f64(8.0 * day);
        let past = track_stale(&mut since, &inst(), &[again.clone()], later);
        assert_eq!(past.get(&1), Some(&0.0));
        // Back below the threshold: forgotten.
        let mut calm = again;
        calm.mod_since_analyze = 0.0;
        track_stale(&mut since, &inst(), &[calm], later);
        assert!(since.is_empty());
        // Never analyzed (reltuples -1): the threshold alone, and the message says so.
        let mut fresh = table("public.fresh", 20_000.0, 0.0);
        fresh.relid = 3;
        fresh.reltuples = -1.0;
        fresh.mod_since_analyze = 20_000.0;
        let past = track_stale(&mut since, &inst(), &[fresh.clone()], later);
        let r = judge(&stale_stats(&inst(), &[fresh], &past, &t));
        assert!(r.message.contains("(never analyzed)"), "{}", r.message);
    }

    #[test]
    fn wraparound_is_a_share_of_the_horizon() {
        let act = Activity {
            databases: vec![
                DatabaseAge {
                    name: "shop".into(),
                    xid_age: 1_200_000_000.0,
                    mxid_age: Some(0.0),
                },
                DatabaseAge {
                    name: "other".into(),
                    xid_age: 1000.0,
                    mxid_age: None,
                },
            ],
            oldest: vec![TableAge {
                name: "public.orders".into(),
                xid_age: 1_200_000_000.0,
            }],
            ..Activity::default()
        };
        let r = judge(&wraparound(&inst(), &act));
        assert_eq!(r.status, Status::Warning);
        assert!(r.message.starts_with("database shop: 55.9% of the transaction ID wraparound horizon (age 1200000000 XIDs, 6× autovacuum_freeze_max_age: anti-wraparound vacuum is not keeping up; oldest tables: public.orders 1200000000)"), "{}", r.message);
    }

    #[test]
    fn slots_retaining_wal_and_lost_slots() {
        let gib = 1024.0 * 1024.0 * 1024.0;
        let mut act = Activity {
            slots: vec![Slot {
                name: "old".into(),
                kind: Some("physical".into()),
                active: false,
                wal_status: Some("extended".into()),
                retained: Some(2.0 * gib),
                ..Slot::default()
            }],
            ..Activity::default()
        };
        let r = judge(&replication_slots(&act));
        assert_eq!(r.status, Status::Warning);
        assert!(
            r.message.starts_with(
                "slot 'old': 2 GB of WAL retained (physical slot, inactive, wal_status extended)"
            ),
            "{}",
            r.message
        );
        act.slots[0].wal_status = Some("lost".into());
        assert_eq!(judge(&replication_slots(&act)).status, Status::Critical);
        assert_eq!(
            judge(&replication_slots(&Activity::default())).status,
            Status::Ok
        );
    }

    #[test]
    fn archiver_failing_is_at_least_warning() {
        let mut i = inst();
        i.archive_mode = "on".into();
        let t = CheckThresholds::builtin(spec(ARCHIVER));
        let failing = Activity {
            archiver: Some(Archiver {
                failed_count: Some(3.0),
                last_failed_wal: Some("000000010000000000000003".into()),
                archived_secs_ago: Some(600.0),
                failed_secs_ago: Some(5.0),
            }),
            ..Activity::default()
        };
        let r = judge(&archiver(&i, &failing, Some(1.0), &t));
        assert_eq!(r.status, Status::Warning);
        assert!(
            r.message.contains("000000010000000000000003"),
            "{}",
            r.message
        );
        assert_eq!(
            judge(&archiver(&i, &failing, Some(150.0), &t)).status,
            Status::Critical
        );
        assert_eq!(
            judge(&archiver(&i, &Activity::default(), Some(0.0), &t)).status,
            Status::Ok
        );
        assert_eq!(
            judge(&archiver(&i, &Activity::default(), None, &t)).status,
            Status::Unknown
        );
        assert_eq!(
            judge(&archiver(&inst(), &failing, None, &t)).status,
            Status::Ok
        );
    }

    #[test]
    fn a_partitioned_index_being_built_is_not_invalid() {
        let building = IndexRef {
            name: "public.m_v_idx".into(),
            tbl: "public.m".into(),
            partitioned: true,
            missing: Some(vec!["public.m_2".into()]),
            ..IndexRef::default()
        };
        let act = IndexLists {
            invalid: vec![building.clone()],
            unused: vec![],
        };
        let r = judge(&invalid_indexes(&act, 0.0));
        assert_eq!(r.status, Status::Ok);
        assert_eq!(r.value, Some(0.0));
        assert!(
            r.message.contains("partition(s) public.m_2 lack their index (create it on each, then ALTER INDEX public.m_v_idx ATTACH PARTITION <that index>)"),
            "{}",
            r.message
        );
        assert!(!r.message.contains("DROP INDEX"), "{}", r.message);
        // A real invalid index next to it is still flagged, with the DROP advice for it.
        let act = IndexLists {
            invalid: vec![
                building,
                IndexRef {
                    name: "public.t_v_key".into(),
                    tbl: "public.t".into(),
                    ..IndexRef::default()
                },
            ],
            unused: vec![],
        };
        let r = judge(&invalid_indexes(&act, 0.0));
        assert_eq!(r.status, Status::Warning);
        assert_eq!(r.value, Some(1.0));
        assert!(
            r.message.starts_with("index public.t_v_key: 1 invalid index(es) (on table public.t; left by a failed CREATE/REINDEX CONCURRENTLY: DROP INDEX CONCURRENTLY"),
            "{}",
            r.message
        );
    }

    #[test]
    fn index_checks_name_the_indexes() {
        let act = IndexLists {
            invalid: vec![IndexRef {
                name: "public.t_v_key".into(),
                tbl: "public.t".into(),
                ..IndexRef::default()
            }],
            unused: vec![IndexRef {
                name: "public.t_v_idx".into(),
                tbl: "public.t".into(),
                size: Some(200.0 * 1024.0 * 1024.0),
                ..IndexRef::default()
            }],
        };
        let r = judge(&invalid_indexes(&act, 0.0));
        assert_eq!(r.status, Status::Warning);
        assert!(
            r.message
                .starts_with("index public.t_v_key: 1 invalid index(es) (on table public.t;"),
            "{}",
            r.message
        );
        let r = judge(&unused_indexes(&act, 0.0));
        assert_eq!(r.status, Status::Warning);
        assert!(
            r.message
                .starts_with("index public.t_v_idx: 200 MB never scanned (on public.t"),
            "{}",
            r.message
        );
        assert_eq!(
            judge(&invalid_indexes(&IndexLists::default(), 0.0)).status,
            Status::Ok
        );
        let dup = duplicate_indexes(
            &[DuplicateGroup {
                table: "public.t".into(),
                names: vec!["public.t_pkey".into(), "public.t_id_idx".into()],
                sizes: vec![4.0 * 1024.0 * 1024.0, 2.0 * 1024.0 * 1024.0],
            }],
            720.0,
        );
        let r = judge(&dup);
        assert_eq!(r.status, Status::Warning);
        assert_eq!(
            r.message,
            "index public.t_id_idx: 2 MB duplicate index (same definition as public.t_pkey on public.t; found 12min ago) (warning ≥ 1 MB)"
        );
    }

    #[test]
    fn bloat_without_visible_statistics_is_unknown_with_the_fix() {
        let t = CheckThresholds::builtin(spec(BLOAT));
        let rows = vec![BloatRow {
            name: "public.big".into(),
            real_size: 500.0 * 1024.0 * 1024.0,
            bloat_size: 400.0 * 1024.0 * 1024.0,
            na: Some("privilege".into()),
            table: None,
        }];
        let r = judge(&bloat(&rows, "mon", 0.0, &t));
        assert_eq!(r.status, Status::Unknown);
        assert!(
            r.message.contains("GRANT pg_read_all_data TO mon"),
            "{}",
            r.message
        );
        let rows = vec![BloatRow {
            na: None,
            ..rows[0].clone()
        }];
        let r = judge(&bloat(&rows, "mon", 600.0, &t));
        assert_eq!(r.status, Status::Critical);
        assert!(r.message.contains("estimated 10min ago"), "{}", r.message);
    }

    #[test]
    fn bloat_without_statistics_says_run_analyze_not_grant() {
        let t = CheckThresholds::builtin(spec(BLOAT));
        let row = |name: &str, na: Option<&str>| BloatRow {
            name: name.into(),
            real_size: 500.0 * 1024.0 * 1024.0,
            bloat_size: 400.0 * 1024.0 * 1024.0,
            na: na.map(str::to_string),
            table: None,
        };
        for na in ["never_analyzed", "columns_not_analyzed"] {
            let r = judge(&bloat(&[row("public.new", Some(na))], "mon", 0.0, &t));
            assert_eq!(r.status, Status::Unknown, "{na}");
            assert!(
                r.message.contains("estimate not possible")
                    && r.message.contains("run ANALYZE public.new"),
                "{}",
                r.message
            );
            assert!(
                r.message.ends_with("fix: ANALYZE public.new"),
                "{}",
                r.message
            );
            assert!(!r.message.contains("GRANT"), "{}", r.message);
        }
        // A name column: said, never judged on a meaningless estimate.
        let r = judge(&bloat(
            &[row("public.n", Some("name_column"))],
            "mon",
            0.0,
            &t,
        ));
        assert_eq!(r.status, Status::Ok);
        assert!(r.message.contains("a column of type name"), "{}", r.message);
        // Next to an estimable table: judged on that one, the others noted.
        let mut fine = row("public.ok", None);
        fine.bloat_size = 0.0;
        let r = judge(&bloat(
            &[fine, row("public.new", Some("never_analyzed"))],
            "mon",
            0.0,
            &t,
        ));
        assert_eq!(r.status, Status::Ok);
        assert!(
            r.message.contains("run ANALYZE public.new"),
            "{}",
            r.message
        );
    }

    #[test]
    fn index_bloat_names_the_index_its_table_and_the_fix() {
        let t = CheckThresholds::builtin(spec(INDEX_BLOAT));
        let mib = 1024.0 * 1024.0;
        let row = |name: &str, bloat: f64, na: Option<&str>| BloatRow {
            name: name.into(),
            real_size: 200.0 * mib,
            bloat_size: bloat * mib,
            na: na.map(str::to_string),
            table: Some("public.t".into()),
        };
        let r = judge(&index_bloat(
            &[row("public.t_v", 180.0, None)],
            "mon",
            60.0,
            &t,
        ));
        assert_eq!(r.status, Status::Critical);
        assert_eq!(
            r.message,
            "index public.t_v: 90% estimated index bloat (~180 MB of 200 MB reclaimable, estimated 60s ago (on table public.t; REINDEX INDEX CONCURRENTLY to reclaim)) (warning ≥ 50%, critical ≥ 75%)"
        );
        // Small indexes are below the floor.
        let mut small = row("public.t_w", 9.0, None);
        small.real_size = 10.0 * mib;
        assert_eq!(
            judge(&index_bloat(&[small], "mon", 0.0, &t)).status,
            Status::Ok
        );
        // Without statistics: ANALYZE the table, not the index; no GRANT.
        let r = judge(&index_bloat(
            &[
                row("public.t_v", 0.0, Some("never_analyzed")),
                row("public.t_w", 0.0, Some("never_analyzed")),
            ],
            "mon",
            0.0,
            &t,
        ));
        assert_eq!(r.status, Status::Unknown);
        assert!(
            r.message.ends_with("fix: ANALYZE public.t"),
            "{}",
            r.message
        );
        assert!(
            r.message.contains("2 index(es) without statistics"),
            "{}",
            r.message
        );
        // Hidden columns: the GRANT, naming this check's switch.
        let r = judge(&index_bloat(
            &[row("public.t_v", 0.0, Some("privilege"))],
            "mon",
            0.0,
            &t,
        ));
        assert_eq!(r.status, Status::Unknown);
        assert!(
            r.message.contains("index_bloat = { enabled = false }"),
            "{}",
            r.message
        );
    }

    #[test]
    fn seq_scans_judge_a_recent_window_and_clear_after_the_index() {
        use std::time::{Duration, Instant};
        let t = CheckThresholds::builtin(spec(SEQ_SCANS));
        let row = |seq: f64, idx: f64| {
            let mut r = table("public.big", 1_000_000.0, 0.0);
            r.seq_scan = seq;
            r.idx_scan = Some(idx);
            r.seq_tup_read = seq * 1_000_000.0;
            r
        };
        let mut few = table("public.few", 1_000_000.0, 0.0);
        few.relid = 2;
        let mut w = ScanWindow::default();
        let t0 = Instant::now();
        // First round: lifetime counters say 99% sequential, but there is no window yet.
        let r = judge(&seq_scans(
            &[row(990.0, 10.0)],
            w.observe(&[row(990.0, 10.0), few.clone()], t0).as_ref(),
            &t,
        ));
        assert_eq!(r.status, Status::Ok);
        assert!(r.message.contains("baseline pending"), "{}", r.message);
        // 200 sequential scans in the next minute: WARNING; the small-count table is not judged.
        few.seq_scan = 5.0;
        let now = t0 + Duration::from_secs(60);
        let d = w.observe(&[row(1190.0, 10.0), few.clone()], now);
        let m = seq_scans(&[row(1190.0, 10.0), few.clone()], d.as_ref(), &t);
        let r = judge(&m);
        assert_eq!(r.status, Status::Warning);
        assert!(
            r.message.starts_with("table public.big: 100% of scans sequential (200 sequential scans reading 200000000 rows vs 0 index scans in the last 60s"),
            "{}",
            r.message
        );
        let Outcome::Values(obs) = &m.outcome else {
            panic!()
        };
        assert_eq!(obs.len(), 1);
        // The index is added: only index scans from now on. Within an hour the window
        // holds none of the old sequential scans, and the check clears, though the
        // lifetime ratio (1190 of 3190) would still say 37%.
        let mut seq = 1190.0;
        let mut idx = 10.0;
        let mut status = Status::Warning;
        for minute in (6..=70).step_by(5) {
            idx += 500.0;
            let now = t0 + Duration::from_secs(60 * minute);
            let d = w.observe(&[row(seq, idx)], now);
            status = judge(&seq_scans(&[row(seq, idx)], d.as_ref(), &t)).status;
            assert!(d.is_some_and(|d| d.secs <= 3600.0 + 300.0 + 60.0));
        }
        assert_eq!(status, Status::Ok);
        let d = w.observe(&[row(seq, idx)], t0 + Duration::from_secs(60 * 75));
        assert_eq!(
            d.as_ref().and_then(|d| d.tables.get(&1)).map(|d| d[0]),
            Some(0.0)
        );
        // A statistics reset (counters back to 0): no delta for that table, no alarm.
        seq = 0.0;
        idx = 0.0;
        let d = w.observe(&[row(seq, idx)], t0 + Duration::from_secs(60 * 80));
        assert_eq!(d.as_ref().map(|d| d.tables.contains_key(&1)), Some(false));
        // Memory stays bounded: at most a window's worth of snapshots.
        assert!(w.snapshots.len() <= 14, "{}", w.snapshots.len());
    }

    #[test]
    fn quoting_and_options() {
        assert_eq!(quote_ident("dbwarden"), "dbwarden");
        assert_eq!(quote_ident("Mon"), "\"Mon\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        let mut t = table("x", 0.0, 0.0);
        t.reloptions = Some("fillfactor=70,autovacuum_enabled=off".into());
        assert!(t.autovacuum_disabled());
        assert_eq!(t.option("fillfactor"), Some("70"));
    }
}
