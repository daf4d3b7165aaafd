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
/// Tables scanned fewer times than this are not judged by `seq_scans`.
pub const SEQ_SCAN_MIN_SCANS: f64 = 100.0;

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
    pub by_usr: Option<String>,
    pub by_state: Option<String>,
    pub by_secs: Option<f64>,
    pub by_query: Option<String>,
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
    pub size: f64,
    pub last_vacuum: Option<f64>,
    pub last_analyze: Option<f64>,
    pub now: f64,
    pub reloptions: Option<String>,
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

    /// Whether autoanalyze should already have analyzed the table (its threshold, with
    /// per-table overrides from the storage parameters).
    pub fn needs_analyze(&self, threshold: f64, scale: f64) -> bool {
        let threshold = self
            .option("autovacuum_analyze_threshold")
            .and_then(|v| v.parse().ok())
            .unwrap_or(threshold);
        let scale = self
            .option("autovacuum_analyze_scale_factor")
            .and_then(|v| v.parse().ok())
            .unwrap_or(scale);
        self.mod_since_analyze > threshold + scale * self.live
    }
}

/// Bloat estimate of one table (query `BLOAT`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BloatRow {
    pub name: String,
    pub real_size: f64,
    pub bloat_size: f64,
    /// pg_stats shows every column to this role (otherwise the estimate is meaningless).
    pub visible: bool,
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
    let obs = act
        .blocked
        .iter()
        .map(|s| {
            let mut d = user_app(&s.usr, &s.app);
            if let Some(b) = s.blockers.first() {
                d.push_str(&format!(", blocked by pid {b}"));
                if s.blockers.len() > 1 {
                    d.push_str(&format!(" and {} more", s.blockers.len() - 1));
                }
                let mut by = Vec::new();
                if let Some(u) = &s.by_usr {
                    by.push(format!("user {u}"));
                }
                if let Some(st) = &s.by_state {
                    match s.by_secs {
                        Some(x) => by.push(format!("{st} {}", secs(x))),
                        None => by.push(st.clone()),
                    }
                }
                if s.by_query.is_some() {
                    by.push(query_for_message(s.by_query.as_deref(), Dialect::Postgres));
                }
                if !by.is_empty() {
                    d.push_str(&format!(" ({})", by.join(", ")));
                }
            }
            d.push_str(&format!(
                "; waiting: {}",
                query_for_message(s.query.as_deref(), Dialect::Postgres)
            ));
            Observation::new(s.secs.unwrap_or(0.0))
                .subject(format!("pid {}", s.pid))
                .detail(d)
        })
        .collect();
    Measurement::values(BLOCKED_SESSIONS, obs)
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

/// `age`: seconds since the index lists were read (they run on a slower cadence).
pub fn invalid_indexes(act: &IndexLists, age: f64) -> Measurement {
    let n = act.invalid.len();
    if n == 0 {
        return Measurement::value(INVALID_INDEXES, Observation::new(0.0));
    }
    let names: Vec<&str> = act
        .invalid
        .iter()
        .take(3)
        .map(|i| i.name.as_str())
        .collect();
    let subject = if n == 1 {
        format!("index {}", names.join(""))
    } else {
        format!(
            "indexes {}{}",
            names.join(", "),
            if n > 3 { ", …" } else { "" }
        )
    };
    let detail = if n == 1 {
        format!(
            "on table {}; left by a failed CREATE/REINDEX CONCURRENTLY: DROP INDEX CONCURRENTLY and build it again; checked {} ago",
            act.invalid[0].tbl,
            secs(age)
        )
    } else {
        format!(
            "left by failed CREATE/REINDEX CONCURRENTLY: DROP INDEX CONCURRENTLY and build them again; checked {} ago",
            secs(age)
        )
    };
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

pub fn dead_tuples(tables: &[TableRow], t: &CheckThresholds) -> Measurement {
    let candidates = tables
        .iter()
        .filter(|r| r.live + r.dead > 0.0)
        .map(|r| (r.dead * 100.0 / (r.live + r.dead), Some(r.live + r.dead), r))
        .collect();
    let obs = pick_worst(candidates, t.floor, false)
        .into_iter()
        .map(|(value, total, r)| {
            let mut d = format!("{} dead of {} rows", count(r.dead), count(r.live + r.dead));
            match ago(r.now, r.last_vacuum) {
                Some(a) => d.push_str(&format!(", last vacuum {} ago", secs(a))),
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

/// `first_seen`: seconds since this engine first saw a never-analyzed table needing analyze
/// (a never-analyzed table's staleness is otherwise unknown; a fresh bulk load is not stale).
pub fn stale_stats(
    inst: &Instance,
    tables: &[TableRow],
    first_seen: &HashMap<i64, f64>,
    t: &CheckThresholds,
) -> Measurement {
    let staleness = |r: &TableRow| match ago(r.now, r.last_analyze) {
        Some(a) => (a, true),
        None => (first_seen.get(&r.relid).copied().unwrap_or(0.0), false),
    };
    let candidates = tables
        .iter()
        .filter(|r| r.needs_analyze(inst.analyze_threshold, inst.analyze_scale))
        .map(|r| (staleness(r).0, Some(r.live + r.dead), r))
        .collect();
    let obs = pick_worst(candidates, t.floor, false)
        .into_iter()
        .map(|(value, size, r)| {
            let mut d = if staleness(r).1 {
                format!("{} rows modified since", count(r.mod_since_analyze))
            } else {
                format!(
                    "never analyzed, {} rows modified; waiting for ANALYZE for at least {}",
                    count(r.mod_since_analyze),
                    secs(value)
                )
            };
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

pub fn seq_scans(tables: &[TableRow], t: &CheckThresholds) -> Measurement {
    let candidates = tables
        .iter()
        .filter(|r| r.seq_scan + r.idx_scan.unwrap_or(0.0) >= SEQ_SCAN_MIN_SCANS)
        .map(|r| {
            let share = r.seq_scan * 100.0 / (r.seq_scan + r.idx_scan.unwrap_or(0.0));
            (share, Some(r.live), r)
        })
        .collect();
    let obs = pick_worst(candidates, t.floor, false)
        .into_iter()
        .map(|(value, live, r)| {
            let d = match r.idx_scan {
                None => format!(
                    "{} sequential scans, the table has no index",
                    count(r.seq_scan)
                ),
                Some(idx) => format!(
                    "{} sequential vs {} index scans; a missing index?",
                    count(r.seq_scan),
                    count(idx)
                ),
            };
            Observation::new(value)
                .floor(live.unwrap_or(0.0))
                .subject(format!("table {}", r.name))
                .detail(d)
        })
        .collect();
    Measurement::values(SEQ_SCANS, obs)
}

/// `age`: seconds since the expensive probe ran (shown so a reused result is not mistaken
/// for a fresh one).
pub fn bloat(rows: &[BloatRow], user: &str, age: f64, t: &CheckThresholds) -> Measurement {
    let hidden = rows.iter().filter(|r| !r.visible).count();
    let visible: Vec<&BloatRow> = rows.iter().filter(|r| r.visible).collect();
    if visible.is_empty() && hidden > 0 {
        return Measurement::unknown(
            BLOAT,
            format!(
                "{hidden} table(s) above the size floor, but pg_stats hides their columns from role {user} (statistics are shown only for columns the role may SELECT)"
            ),
            Some(format!(
                "GRANT pg_read_all_data TO {} (PostgreSQL 14+) or SELECT on the tables; or disable the check with bloat = {{ enabled = false }}",
                quote_ident(user)
            )),
        );
    }
    let obs = visible
        .iter()
        .filter(|r| r.real_size > 0.0)
        .map(|r| {
            let mut d = format!(
                "~{} of {} reclaimable, estimated {} ago",
                bytes(r.bloat_size),
                bytes(r.real_size),
                secs(age)
            );
            if hidden > 0 {
                d.push_str(&format!("; {hidden} table(s) not estimated (no SELECT)"));
            }
            Observation::new(r.bloat_size * 100.0 / r.real_size)
                .floor(r.real_size)
                .subject(format!("table {}", r.name))
                .detail(d)
        })
        .collect();
    Measurement::values(BLOAT, worst_first(obs, t.floor, false))
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

    #[test]
    fn blocked_session_names_its_blocker() {
        let act = Activity {
            blocked: vec![BlockedSession {
                pid: 11,
                usr: Some("app".into()),
                secs: Some(45.0),
                query: Some("UPDATE t SET v = 2 WHERE id = 1".into()),
                blockers: vec![10],
                by_usr: Some("batch".into()),
                by_state: Some("idle in transaction".into()),
                by_secs: Some(130.0),
                by_query: Some("UPDATE t SET v = 1 WHERE id = 1".into()),
                ..BlockedSession::default()
            }],
            ..Activity::default()
        };
        let r = judge(&blocked_sessions(&inst(), &act));
        assert_eq!(r.status, Status::Warning);
        assert!(r.message.starts_with("pid 11: 45s waiting for a lock (user app, blocked by pid 10 (user batch, idle in transaction 2.2min, UPDATE t SET v = ? WHERE id = ?); waiting: UPDATE t SET v = ? WHERE id = ?)"), "{}", r.message);
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
        orders.reloptions = Some("autovacuum_enabled=false,fillfactor=90".into());
        let tables = vec![table("public.tiny", 1.0, 99.0), orders];
        let r = judge(&dead_tuples(&tables, &t));
        assert_eq!(r.status, Status::Critical);
        assert_eq!(
            r.message,
            "table public.orders: 41% dead tuples (41000 dead of 100000 rows, last vacuum 2h ago, autovacuum disabled on this table) (warning ≥ 20%, critical ≥ 40%)"
        );
    }

    #[test]
    fn stale_stats_follow_the_autoanalyze_threshold() {
        let t = CheckThresholds::builtin(spec(STALE_STATS));
        let mut a = table("public.a", 100_000.0, 0.0);
        a.mod_since_analyze = 50_000.0;
        a.last_analyze = Some(a.now - 3.0 * 86_400.0);
        let mut b = table("public.b", 100_000.0, 0.0);
        b.mod_since_analyze = 5_000.0; // below 50 + 10% of 100000
        b.last_analyze = Some(b.now - 30.0 * 86_400.0);
        let mut c = table("public.c", 100_000.0, 0.0);
        c.relid = 3;
        c.mod_since_analyze = 100_000.0;
        let seen: HashMap<i64, f64> = [(3, 60.0)].into_iter().collect();
        let m = stale_stats(&inst(), &[a, b, c], &seen, &t);
        let Outcome::Values(obs) = &m.outcome else {
            panic!("{m:?}")
        };
        assert_eq!(obs.len(), 2);
        let r = judge(&m);
        assert_eq!(r.status, Status::Warning);
        assert!(
            r.message
                .starts_with("table public.a: 3d since the last analyze"),
            "{}",
            r.message
        );
        assert!(
            obs[1]
                .detail
                .as_deref()
                .is_some_and(|d| d.contains("never analyzed"))
        );
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
    fn index_checks_name_the_indexes() {
        let act = IndexLists {
            invalid: vec![IndexRef {
                name: "public.t_v_key".into(),
                tbl: "public.t".into(),
                size: None,
            }],
            unused: vec![IndexRef {
                name: "public.t_v_idx".into(),
                tbl: "public.t".into(),
                size: Some(200.0 * 1024.0 * 1024.0),
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
            visible: false,
        }];
        let r = judge(&bloat(&rows, "mon", 0.0, &t));
        assert_eq!(r.status, Status::Unknown);
        assert!(
            r.message.contains("GRANT pg_read_all_data TO mon"),
            "{}",
            r.message
        );
        let rows = vec![BloatRow {
            visible: true,
            ..rows[0].clone()
        }];
        let r = judge(&bloat(&rows, "mon", 600.0, &t));
        assert_eq!(r.status, Status::Critical);
        assert!(r.message.contains("estimated 10min ago"), "{}", r.message);
    }

    #[test]
    fn seq_scans_need_enough_scans_and_rows() {
        let t = CheckThresholds::builtin(spec(SEQ_SCANS));
        let mut big = table("public.big", 1_000_000.0, 0.0);
        big.seq_scan = 990.0;
        big.idx_scan = Some(10.0);
        let mut few = table("public.few", 1_000_000.0, 0.0);
        few.seq_scan = 5.0;
        let r = judge(&seq_scans(&[big, few], &t));
        assert_eq!(r.status, Status::Warning);
        assert!(
            r.message
                .starts_with("table public.big: 99% of scans sequential"),
            "{}",
            r.message
        );
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
