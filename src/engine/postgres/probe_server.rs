//! The second pass of PostgreSQL checks: settings that blind or endanger, checksum
//! failures, long transactions, expected replicas and bytes behind, slot conditions
//! (inactive, unreserved, invalidated), sequences near exhaustion, WAL volume and
//! checkpoints; and which SQL text a server version gets. Pure functions, unit-tested
//! without a server; the queries are in `sql`, the round in `round`.

use std::collections::HashMap;
use std::time::Instant;

use super::checks::*;
use super::probe::{Activity, IdleSession, Instance, Replica, Slot, grant_monitor};
use crate::config::ExpectedReplicas;
use crate::engine::redact::{Dialect, query_for_message};
use crate::health::{
    CheckSpec, CheckThresholds, Measurement, Observation, Outcome, Status, Unit, evaluate,
};

/// Settings and counters read by the `INSTANCE` query for these checks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerFacts {
    pub track_counts: String,
    pub autovacuum: String,
    pub fsync: String,
    pub full_page_writes: String,
    pub sync_standby_names: String,
    /// `synchronous_commit` as this database and role default it: with `local` or `off`,
    /// commits do not wait for synchronous standbys.
    pub synchronous_commit: String,
    /// pg_stat_database.checksum_failures of this database: `None` when checksums are off.
    pub checksum_failures: Option<f64>,
    /// Epoch seconds of the last checksum failure.
    pub checksum_last_failure: Option<f64>,
}

/// The oldest supported release; older servers are refused with this reason.
pub fn unsupported_version(version_num: i32, shown: &str) -> Option<String> {
    (version_num < 130_000).then(|| {
        format!(
            "PostgreSQL {shown} is not supported: dbwarden watches PostgreSQL 13 and newer (13–17); upgrade the server or remove this target"
        )
    })
}

// ---------------------------------------------------------------------------------------
// Version-chosen SQL
// ---------------------------------------------------------------------------------------

/// Which columns of pg_replication_slots a server has (16: `conflicting`; 17:
/// `invalidation_reason`, `inactive_since`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotColumns {
    V13,
    V16,
    V17,
}

impl SlotColumns {
    pub fn of(version_num: i32) -> Self {
        match version_num {
            v if v >= 170_000 => SlotColumns::V17,
            v if v >= 160_000 => SlotColumns::V16,
            _ => SlotColumns::V13,
        }
    }
}

/// The checkpoint counters' view: `pg_stat_checkpointer` on 17+, `pg_stat_bgwriter` before.
pub fn checkpoints_sql(version_num: i32) -> &'static str {
    if version_num >= 170_000 {
        super::sql::CHECKPOINTS_17
    } else {
        super::sql::CHECKPOINTS_13
    }
}

// ---------------------------------------------------------------------------------------
// Combining a threshold judgement with conditions that alarm on their own
// ---------------------------------------------------------------------------------------

/// A condition that sets a status by itself (a lost slot, a missing standby), whatever the
/// values' thresholds say.
pub type Condition = (Status, String);

/// `m` judged with `t`, made at least as bad as the worst condition; the message names the
/// conditions first, then what the values said. An UNKNOWN `m` (a privilege gap hiding the
/// lags) does not hide a condition seen without it (a synchronous standby missing, which
/// freezes commits): the condition's status wins and the message keeps the reason and fix.
pub fn with_conditions(
    m: Measurement,
    conditions: Vec<Condition>,
    spec: &CheckSpec,
    t: &CheckThresholds,
) -> Measurement {
    if conditions.is_empty() {
        return m;
    }
    if let Outcome::Unknown { reason, fix } = &m.outcome {
        let worst = Status::worst(conditions.iter().map(|c| c.0));
        if worst == Status::Ok {
            return m;
        }
        let mut parts: Vec<String> = conditions.into_iter().map(|c| c.1).collect();
        if Status::worst([worst, Status::Unknown]) == Status::Unknown {
            // A condition milder than UNKNOWN (a missing expected replica) is still said.
            parts.push(reason.clone());
            return Measurement {
                outcome: Outcome::Unknown {
                    reason: parts.join("; "),
                    fix: fix.clone(),
                },
                ..m
            };
        }
        parts.push(match fix {
            Some(f) => format!("otherwise unknown: {reason} ({f})"),
            None => format!("otherwise unknown: {reason}"),
        });
        return Measurement {
            outcome: Outcome::Verdict {
                status: worst,
                value: None,
                message: parts.join("; "),
            },
            ..m
        };
    }
    let r = evaluate(&m, spec, t);
    let worst = Status::worst(conditions.iter().map(|c| c.0));
    let mut parts: Vec<String> = conditions.into_iter().map(|c| c.1).collect();
    if !r.message.is_empty() && r.message != "nothing to report" {
        parts.push(r.message);
    }
    Measurement {
        outcome: Outcome::Verdict {
            status: Status::worst([worst, r.status]),
            value: r.value,
            message: parts.join("; "),
        },
        ..m
    }
}

// ---------------------------------------------------------------------------------------
// settings
// ---------------------------------------------------------------------------------------

/// Settings that silently blind dbwarden or endanger the data. The value is the number of
/// such settings; the status is each finding's own (track_counts, fsync, full_page_writes
/// off: CRITICAL; autovacuum off: at the check's warning level, i.e. WARNING unless the
/// thresholds say otherwise).
pub fn settings(inst: &Instance, t: &CheckThresholds) -> Measurement {
    let f = &inst.server;
    let mut findings: Vec<Condition> = Vec::new();
    if f.track_counts == "off" {
        findings.push((
            Status::Critical,
            "track_counts is off: no table statistics are collected, so dead_tuples, stale_stats and autovacuum itself see nothing (set track_counts = on)".into(),
        ));
    }
    if f.fsync == "off" {
        findings.push((
            Status::Critical,
            "fsync is off: a crash or power loss can corrupt the cluster (set fsync = on)".into(),
        ));
    }
    if f.full_page_writes == "off" {
        findings.push((
            Status::Critical,
            "full_page_writes is off: a crash can leave torn pages that WAL replay cannot repair (set full_page_writes = on)".into(),
        ));
    }
    if f.autovacuum == "off" {
        let status = if t.critical.is_some_and(|c| c <= 1.0) {
            Status::Critical
        } else if t.warning.is_none_or(|w| w <= 1.0) {
            Status::Warning
        } else {
            Status::Ok
        };
        findings.push((
            status,
            "autovacuum is off: dead rows pile up and only manual VACUUM prevents wraparound (set autovacuum = on)".into(),
        ));
    }
    let n = findings.len() as f64;
    if findings.is_empty() {
        return Measurement::verdict(
            SETTINGS,
            Status::Ok,
            Some(0.0),
            "track_counts, autovacuum, fsync and full_page_writes are on",
        );
    }
    let status = Status::worst(findings.iter().map(|f| f.0));
    let message = findings
        .into_iter()
        .map(|f| f.1)
        .collect::<Vec<_>>()
        .join("; ");
    Measurement::verdict(SETTINGS, status, Some(n), message)
}

// ---------------------------------------------------------------------------------------
// checksum_failures
// ---------------------------------------------------------------------------------------

/// New checksum failures since the previous round. `previous`: the count then (`None`: the
/// first round). Checksums off is OK with a note, not an alarm.
pub fn checksum_failures(inst: &Instance, previous: Option<f64>) -> Measurement {
    let Some(now) = inst.server.checksum_failures else {
        return Measurement::verdict(
            CHECKSUM_FAILURES,
            Status::Ok,
            None,
            "data checksums are off (initdb --data-checksums, or pg_checksums --enable on a stopped cluster, turns them on)",
        );
    };
    let last = inst
        .server
        .checksum_last_failure
        .map(|t| {
            format!(
                ", the last {} ago",
                Unit::Seconds.format((inst.now - t).max(0.0))
            )
        })
        .unwrap_or_default();
    match previous {
        None => Measurement::verdict(
            CHECKSUM_FAILURES,
            Status::Ok,
            None,
            format!(
                "baseline pending ({} failure(s) in database {} since the statistics were reset{last})",
                Unit::Count.format(now),
                inst.db
            ),
        ),
        Some(p) => {
            // A counter going backwards is a statistics reset: count from zero.
            let delta = if now >= p { now - p } else { now };
            Measurement::value(
                CHECKSUM_FAILURES,
                Observation::new(delta)
                    .subject(format!("database {}", inst.db))
                    .detail(format!(
                        "{} in total{last}; a failing page means storage corruption: check the server log for the block, and the disk",
                        Unit::Count.format(now)
                    )),
            )
        }
    }
}

// ---------------------------------------------------------------------------------------
// long_transaction
// ---------------------------------------------------------------------------------------

/// Sessions of this database by the age of their open transaction (active or idle).
pub fn long_transactions(inst: &Instance, act: &Activity) -> Measurement {
    if !inst.read_stats {
        return Measurement::unknown(
            LONG_TRANSACTION,
            format!(
                "role {} cannot see other users' sessions (transaction start, state) without pg_read_all_stats",
                inst.user
            ),
            Some(grant_monitor(&inst.user)),
        );
    }
    let obs = act
        .xacts
        .iter()
        .map(|s: &IdleSession| {
            let mut d = format!(
                "user {}, {}",
                s.usr.as_deref().unwrap_or("?"),
                s.state.as_deref().unwrap_or("?")
            );
            if let Some(a) = s.app.as_deref().filter(|a| !a.is_empty()) {
                d.push_str(&format!(", app {a}"));
            }
            d.push_str(&format!(
                ", last query: {}",
                query_for_message(s.query.as_deref(), Dialect::Postgres)
            ));
            Observation::new(s.secs.unwrap_or(0.0).max(0.0))
                .subject(format!("pid {}", s.pid))
                .detail(d)
        })
        .collect();
    Measurement::values(LONG_TRANSACTION, obs)
}

// ---------------------------------------------------------------------------------------
// Expected replicas, synchronous_standby_names
// ---------------------------------------------------------------------------------------

/// `synchronous_standby_names`, parsed: how many standbys commits wait for, and which.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncStandbys {
    /// `ANY n (...)`: any n of them; otherwise the first n by priority.
    pub quorum: bool,
    pub num: usize,
    /// As written, unquoted; `*` matches any standby.
    pub names: Vec<String>,
}

impl SyncStandbys {
    fn matches(&self, name: &str) -> bool {
        self.names
            .iter()
            .any(|n| n == "*" || n.eq_ignore_ascii_case(name))
    }
}

/// Parses `synchronous_standby_names` (`s1, s2`, `2 (s1, s2)`, `FIRST 2 (...)`,
/// `ANY 1 ("s 1", s2)`); `None` when empty (no synchronous replication).
pub fn parse_sync_standby_names(text: &str) -> Option<SyncStandbys> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let (quorum, rest) = match text.split_once(char::is_whitespace) {
        Some((w, r)) if w.eq_ignore_ascii_case("any") => (true, r.trim()),
        Some((w, r)) if w.eq_ignore_ascii_case("first") => (false, r.trim()),
        _ => (false, text),
    };
    let (num, list) = match rest.find('(') {
        Some(i) if rest.ends_with(')') => {
            let n = rest[..i].trim().parse::<usize>().unwrap_or(1);
            (n, &rest[i + 1..rest.len() - 1])
        }
        _ => (1, rest),
    };
    let names = list
        .split(',')
        .map(|n| {
            let n = n.trim();
            if n.len() >= 2 && n.starts_with('"') && n.ends_with('"') {
                n[1..n.len() - 1].replace("\"\"", "\"")
            } else {
                n.to_string()
            }
        })
        .filter(|n| !n.is_empty())
        .collect();
    Some(SyncStandbys { quorum, num, names })
}

/// Standbys a primary should have and does not: a synchronous setup with fewer connected
/// candidates than commits wait for is CRITICAL (commits hang); an expected standby
/// missing otherwise is WARNING. Judged on a primary only, whatever `expected` says for
/// the synchronous part.
pub fn missing_replicas(
    inst: &Instance,
    replicas: &[Replica],
    expected: Option<&ExpectedReplicas>,
) -> Vec<Condition> {
    if inst.in_recovery {
        return Vec::new();
    }
    let connected: Vec<&str> = replicas
        .iter()
        .filter(|r| r.state.as_deref() != Some("backup"))
        .filter_map(|r| r.name.as_deref())
        .filter(|n| !n.is_empty())
        .collect();
    let sync = parse_sync_standby_names(&inst.server.sync_standby_names);
    let mut out = Vec::new();
    if let Some(s) = &sync {
        // Only a walsender streaming (or stopping) can confirm commits; one starting up or
        // catching up cannot yet. A state hidden from the role (NULL) is given the benefit
        // of the doubt.
        let candidates = replicas
            .iter()
            .filter(|r| !matches!(r.state.as_deref(), Some("startup" | "catchup" | "backup")))
            .filter_map(|r| r.name.as_deref())
            .filter(|n| !n.is_empty() && s.matches(n))
            .count();
        if candidates < s.num {
            // With synchronous_commit local/off (the default seen here), commits do not
            // wait: a missing standby is lost redundancy, not frozen commits — unless a
            // session turns it back on.
            let waits = !matches!(inst.server.synchronous_commit.as_str(), "local" | "off");
            out.push(if waits {
                (
                    Status::Critical,
                    format!(
                        "{candidates} of the {} synchronous standby(s) commits wait for are connected (synchronous_standby_names '{}'): commits hang until one returns, or remove it from synchronous_standby_names",
                        s.num, inst.server.sync_standby_names
                    ),
                )
            } else {
                (
                    Status::Warning,
                    format!(
                        "{candidates} of the {} synchronous standby(s) of synchronous_standby_names '{}' are connected; synchronous_commit = {} here, so commits do not wait for them (sessions that set it to on, remote_write or remote_apply do hang)",
                        s.num, inst.server.sync_standby_names, inst.server.synchronous_commit
                    ),
                )
            });
        }
    }
    let names: Vec<String> = match expected {
        None => return out,
        Some(ExpectedReplicas::Count(n)) => {
            let n = *n as usize;
            // A base backup or a logical subscriber does not stand in for a lost standby.
            let standbys = replicas.iter().filter(|r| r.is_standby()).count();
            if standbys < n {
                out.push((
                    Status::Warning,
                    format!(
                        "{standbys} of {n} expected replica(s) connected (expected_replicas counts standbys: base backups and logical walsenders are not)"
                    ),
                ));
            }
            return out;
        }
        Some(ExpectedReplicas::Names(n)) => n.clone(),
        Some(ExpectedReplicas::Keyword(_)) => match &sync {
            Some(s) => s.names.iter().filter(|n| *n != "*").cloned().collect(),
            None => {
                out.push((
                    Status::Warning,
                    "expected_replicas = \"synchronous_standby_names\", but synchronous_standby_names is empty on this primary".into(),
                ));
                return out;
            }
        },
    };
    let missing: Vec<&String> = names
        .iter()
        .filter(|n| !connected.iter().any(|c| c.eq_ignore_ascii_case(n)))
        .collect();
    if !missing.is_empty() {
        out.push((
            Status::Warning,
            format!(
                "expected replica(s) not connected: {} (no row in pg_stat_replication with that application_name)",
                missing
                    .iter()
                    .map(|n| format!("'{n}'"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    out
}

/// A standby whose WAL receiver runs but whose status this role cannot read
/// (pg_stat_wal_receiver shows only the pid without pg_read_all_stats): UNKNOWN with the
/// GRANT, not "no WAL receiver".
pub fn standby_receiver_hidden(inst: &Instance, act: &Activity) -> Option<Measurement> {
    let s = act.standby.as_ref()?;
    (inst.in_recovery && s.receiver.is_none() && s.receiver_pid.is_some()).then(|| {
        Measurement::unknown(
            REPLICATION_LAG,
            format!(
                "role {} cannot read the WAL receiver's state (pg_stat_wal_receiver shows only its pid) without pg_read_all_stats",
                inst.user
            ),
            Some(grant_monitor(&inst.user)),
        )
    })
}

/// Bytes of WAL each replica has yet to replay (primary), or a standby has received but
/// not replayed.
pub fn replication_behind(inst: &Instance, act: &Activity) -> Measurement {
    if let Some(m) = standby_receiver_hidden(inst, act) {
        return Measurement {
            check: REPLICATION_BEHIND,
            ..m
        };
    }
    // pg_stat_replication shows a role without pg_read_all_stats its standbys' rows but
    // not their positions: nothing could be judged, which is not an OK.
    if !inst.read_stats && !act.replicas.is_empty() {
        return Measurement::unknown(
            REPLICATION_BEHIND,
            format!(
                "role {} cannot see the replicas' replay positions (pg_stat_replication) without pg_read_all_stats",
                inst.user
            ),
            Some(grant_monitor(&inst.user)),
        );
    }
    let mut obs = Vec::new();
    if inst.in_recovery
        && let Some(b) = act.standby.as_ref().and_then(|s| s.receive_minus_replay)
    {
        obs.push(
            Observation::new(b.max(0.0))
                .subject("standby")
                .detail("received but not replayed"),
        );
    }
    for r in &act.replicas {
        let Some(b) = r.behind_bytes else { continue };
        let name = r.name.as_deref().filter(|n| !n.is_empty()).unwrap_or("?");
        obs.push(
            Observation::new(b.max(0.0))
                .subject(format!("replica '{name}'"))
                .detail(format!(
                    "{}, not yet replayed there",
                    r.state.as_deref().unwrap_or("?")
                )),
        );
    }
    Measurement::values(REPLICATION_BEHIND, obs)
}

// ---------------------------------------------------------------------------------------
// Slots
// ---------------------------------------------------------------------------------------

/// Slot conditions that alarm whatever the WAL they retain: `unreserved` (the next
/// checkpoint removes WAL the slot needs), invalidated (`conflicting` on 16,
/// `invalidation_reason` on 17).
pub fn slot_conditions(slots: &[Slot]) -> Vec<Condition> {
    let mut out = Vec::new();
    for s in slots {
        if s.wal_status.as_deref() == Some("unreserved") {
            out.push((
                Status::Critical,
                format!(
                    "slot '{}': wal_status unreserved, past max_slot_wal_keep_size: the next checkpoint removes WAL it needs; let its consumer catch up now or drop the slot",
                    s.name
                ),
            ));
        }
        if let Some(reason) = s.invalidation_reason.as_deref() {
            out.push((
                Status::Critical,
                format!(
                    "slot '{}' is invalidated ({reason}); its consumer cannot resume: drop and re-create the slot",
                    s.name
                ),
            ));
        } else if s.conflicting == Some(true) {
            out.push((
                Status::Critical,
                format!(
                    "slot '{}' is invalidated by a conflict with recovery; its consumer cannot resume: drop and re-create the slot",
                    s.name
                ),
            ));
        }
    }
    out
}

/// How long each inactive slot has been inactive: PostgreSQL 17's `inactive_since`, or
/// else since this engine first saw it inactive (`first_seen`, updated here; slots that
/// are active or gone are forgotten).
pub fn inactive_for(
    slots: &[Slot],
    first_seen: &mut HashMap<String, Instant>,
    now: Instant,
) -> Vec<(usize, f64, bool)> {
    first_seen.retain(|name, _| slots.iter().any(|s| !s.active && &s.name == name));
    slots
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.active)
        .map(|(i, s)| match s.inactive_secs {
            Some(secs) => (i, secs.max(0.0), true),
            None => {
                let since = *first_seen.entry(s.name.clone()).or_insert(now);
                (i, now.duration_since(since).as_secs_f64(), false)
            }
        })
        .collect()
}

/// `inactive_slots`: each inactive slot by how long it has been inactive.
pub fn inactive_slots(slots: &[Slot], inactive: &[(usize, f64, bool)]) -> Measurement {
    let obs = inactive
        .iter()
        .filter_map(|(i, secs, exact)| {
            let s = slots.get(*i)?;
            let mut d = format!("{} slot", s.kind.as_deref().unwrap_or("?"));
            if let Some(r) = s.retained {
                d.push_str(&format!(", retains {}", Unit::Bytes.format(r.max(0.0))));
            }
            if !exact {
                d.push_str(", inactive at least since dbwarden first saw it so");
            }
            d.push_str("; reconnect its consumer or drop it (pg_drop_replication_slot)");
            Some(
                Observation::new(*secs)
                    .subject(format!("slot '{}'", s.name))
                    .detail(d),
            )
        })
        .collect();
    Measurement::values(INACTIVE_SLOTS, obs)
}

// ---------------------------------------------------------------------------------------
// sequence_exhaustion
// ---------------------------------------------------------------------------------------

/// One row of the `SEQUENCES` query.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SequenceRow {
    pub name: String,
    pub data_type: String,
    pub min_value: f64,
    pub max_value: f64,
    pub increment: f64,
    pub cycle: bool,
    /// `None`: never called (or not readable, see `readable`).
    pub last_value: Option<f64>,
    pub readable: bool,
    /// `schema.table.column` owning it (serial, identity, OWNED BY).
    pub owner: Option<String>,
    pub column_type: Option<String>,
}

/// Share of its range a sequence has used, the owning column's type included (a bigint
/// sequence feeding an integer column runs out at the column's limit).
pub fn sequence_used_percent(s: &SequenceRow) -> f64 {
    let (col_min, col_max) = match s.column_type.as_deref() {
        Some("smallint") => (-32_768.0, 32_767.0),
        Some("integer") => (-2_147_483_648.0, 2_147_483_647.0),
        _ => (f64::MIN, f64::MAX),
    };
    let min = s.min_value.max(col_min);
    let max = s.max_value.min(col_max);
    let range = max - min;
    if range <= 0.0 {
        return 100.0;
    }
    let Some(last) = s.last_value else {
        return 0.0;
    };
    let used = if s.increment >= 0.0 {
        last - min
    } else {
        max - last
    };
    (used / range * 100.0).clamp(0.0, 100.0)
}

/// Every non-cycling sequence by the share of its range used; sequences the role may not
/// read make the check UNKNOWN only when none could be read.
pub fn sequence_exhaustion(rows: &[SequenceRow], user: &str, age: f64) -> Measurement {
    let hidden: Vec<&SequenceRow> = rows.iter().filter(|s| !s.readable).collect();
    if !hidden.is_empty() && hidden.len() == rows.len() {
        return Measurement::unknown(
            SEQUENCE_EXHAUSTION,
            format!(
                "role {user} may not read the {} sequence(s) (pg_sequences.last_value needs SELECT or USAGE on each)",
                rows.len()
            ),
            Some(format!(
                "GRANT SELECT ON ALL SEQUENCES IN SCHEMA <schema> TO {} (each schema), or GRANT pg_read_all_data (14+)",
                super::probe::quote_ident(user)
            )),
        );
    }
    let fresh = if age >= 1.0 {
        format!(" (as of {} ago)", Unit::Seconds.format(age))
    } else {
        String::new()
    };
    // Sequences the role may not read are not judged: say so, or an OK would hide them.
    let hidden_note = match hidden.len() {
        0 => String::new(),
        n => format!(
            "; {n} sequence(s) not judged: role {user} may not read them ({})",
            hidden
                .iter()
                .take(3)
                .map(|s| s.name.as_str())
                .chain((n > 3).then_some("…"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let obs = rows
        .iter()
        .filter(|s| s.readable && !s.cycle)
        .map(|s| {
            let mut d = format!(
                "{}, last value {}",
                s.data_type,
                s.last_value
                    .map(|v| format!("{v:.0}"))
                    .unwrap_or_else(|| "none yet".into())
            );
            if let Some(o) = &s.owner {
                d.push_str(&format!(", owned by {o}"));
                if let Some(ct) = &s.column_type {
                    d.push_str(&format!(" ({ct})"));
                }
            }
            let bigint = s.data_type == "bigint"
                && s.column_type.as_deref().is_none_or(|t| t == "bigint");
            d.push_str(if bigint {
                "; a bigint cannot be widened: archive or renumber rows, or move the key to numeric or uuid, before it runs out"
            } else {
                "; widen the column and the sequence to bigint before it runs out"
            });
            d.push_str(&fresh);
            d.push_str(&hidden_note);
            Observation::new(sequence_used_percent(s))
                .subject(format!("sequence {}", s.name))
                .detail(d)
        })
        .collect();
    Measurement::values(
        SEQUENCE_EXHAUSTION,
        super::probe::worst_first(obs, None, false),
    )
}

// ---------------------------------------------------------------------------------------
// WAL volume and checkpoints
// ---------------------------------------------------------------------------------------

/// One sample of the `WAL_STATE` and checkpoint queries (every 5 minutes).
#[derive(Debug, Clone, PartialEq)]
pub struct WalSample {
    pub at: Instant,
    pub timed: f64,
    pub requested: f64,
    /// Bytes from 0/0 of the current WAL position (`None` on a standby).
    pub lsn: Option<f64>,
    /// Size of pg_wal (`None` without pg_monitor).
    pub wal_bytes: Option<f64>,
    pub max_wal_size: f64,
    pub wal_keep_size: f64,
}

/// How long checkpoint counters are compared over.
pub const CHECKPOINT_WINDOW_SECS: f64 = 3600.0;

/// Keeps the samples of the last [`CHECKPOINT_WINDOW_SECS`] (plus the newest one older,
/// the window's base).
pub fn keep_window(samples: &mut Vec<WalSample>, now: Instant) {
    let old = |s: &WalSample| now.duration_since(s.at).as_secs_f64() > CHECKPOINT_WINDOW_SECS;
    let n_old = samples.iter().filter(|s| old(s)).count();
    if n_old > 1 {
        samples.drain(..n_old - 1);
    }
}

/// WAL generated per hour between the two newest samples (`None` without two on a primary).
pub fn wal_rate_per_hour(samples: &[WalSample]) -> Option<f64> {
    let [.., a, b] = samples else { return None };
    let (Some(x), Some(y)) = (a.lsn, b.lsn) else {
        return None;
    };
    let secs = b.at.duration_since(a.at).as_secs_f64();
    (secs > 0.0 && y >= x).then(|| (y - x) / secs * 3600.0)
}

/// `wal_volume`: pg_wal's size as a share of max_wal_size + wal_keep_size (what a healthy
/// server keeps); more means something retains WAL (a slot, a failing archiver).
pub fn wal_volume(samples: &[WalSample], user: &str, monitor: bool) -> Measurement {
    let Some(last) = samples.last() else {
        return Measurement::unknown(WAL_VOLUME, "not measured yet", None);
    };
    let rate = wal_rate_per_hour(samples)
        .map(|r| format!(", {}/h generated", Unit::Bytes.format(r)))
        .unwrap_or_default();
    let Some(size) = last.wal_bytes else {
        let why = if monitor {
            "pg_ls_waldir() could not be read"
        } else {
            "pg_ls_waldir() needs pg_monitor"
        };
        return Measurement::unknown(
            WAL_VOLUME,
            format!("size of pg_wal not measured: {why}"),
            (!monitor).then(|| grant_monitor(user)),
        );
    };
    let keep = last.max_wal_size + last.wal_keep_size;
    let pct = if keep > 0.0 { size / keep * 100.0 } else { 0.0 };
    Measurement::value(
        WAL_VOLUME,
        Observation::new(pct).subject("pg_wal").detail(format!(
            "{} in pg_wal, max_wal_size {} + wal_keep_size {}{rate}",
            Unit::Bytes.format(size),
            Unit::Bytes.format(last.max_wal_size),
            Unit::Bytes.format(last.wal_keep_size)
        )),
    )
}

/// `checkpoints`: share of checkpoints requested (WAL volume, CHECKPOINT) rather than
/// timed, over the last hour of samples; the floor is the number of checkpoints in that
/// window, so a quiet hour is not judged.
pub fn checkpoints(samples: &[WalSample]) -> Measurement {
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
        return Measurement::unknown(CHECKPOINTS, "not measured yet", None);
    };
    if samples.len() < 2 {
        return Measurement::verdict(CHECKPOINTS, Status::Ok, None, "baseline pending");
    }
    let timed = last.timed - first.timed;
    let req = last.requested - first.requested;
    if timed < 0.0 || req < 0.0 {
        return Measurement::verdict(
            CHECKPOINTS,
            Status::Ok,
            None,
            "statistics were reset: baseline pending",
        );
    }
    let total = timed + req;
    let span = last.at.duration_since(first.at).as_secs_f64();
    let pct = if total > 0.0 {
        req / total * 100.0
    } else {
        0.0
    };
    Measurement::value(
        CHECKPOINTS,
        Observation::new(pct)
            .floor(total)
            .subject("checkpoints")
            .detail(format!(
                "{} requested, {} timed in the last {}; frequent requested checkpoints mean max_wal_size ({}) is too small for the write load",
                Unit::Count.format(req),
                Unit::Count.format(timed),
                Unit::Seconds.format(span),
                Unit::Bytes.format(last.max_wal_size)
            )),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::postgres::probe::Standby;
    use std::time::Duration;

    fn spec(name: &str) -> &'static CheckSpec {
        match CHECKS.iter().find(|s| s.name == name) {
            Some(s) => s,
            None => panic!("{name} not in the catalogue"),
        }
    }

    fn judge(m: &Measurement) -> crate::health::CheckResult {
        let s = spec(m.check);
        evaluate(m, s, &CheckThresholds::builtin(s))
    }

    fn inst() -> Instance {
        Instance {
            version_num: 150_000,
            db: "app".into(),
            user: "mon".into(),
            read_stats: true,
            monitor: true,
            now: 1000.0,
            server: ServerFacts {
                track_counts: "on".into(),
                autovacuum: "on".into(),
                fsync: "on".into(),
                full_page_writes: "on".into(),
                ..ServerFacts::default()
            },
            ..Instance::default()
        }
    }

    #[test]
    fn old_servers_are_refused_with_the_supported_range() {
        assert!(unsupported_version(130_000, "13.0").is_none());
        let Some(m) = unsupported_version(120_017, "12.17") else {
            panic!("12 accepted")
        };
        assert!(m.contains("12.17") && m.contains("13 and newer"), "{m}");
    }

    #[test]
    fn slot_columns_follow_the_version() {
        assert_eq!(SlotColumns::of(130_000), SlotColumns::V13);
        assert_eq!(SlotColumns::of(150_020), SlotColumns::V13);
        assert_eq!(SlotColumns::of(160_001), SlotColumns::V16);
        assert_eq!(SlotColumns::of(170_000), SlotColumns::V17);
        assert_eq!(SlotColumns::of(180_000), SlotColumns::V17);
    }

    #[test]
    fn checkpoint_view_follows_the_version() {
        assert!(checkpoints_sql(160_004).contains("pg_stat_bgwriter"));
        assert!(checkpoints_sql(130_000).contains("checkpoints_req"));
        assert!(checkpoints_sql(170_000).contains("pg_stat_checkpointer"));
        assert!(checkpoints_sql(170_000).contains("num_requested"));
    }

    #[test]
    fn settings_name_what_blinds_or_endangers() {
        let t = CheckThresholds::builtin(spec(SETTINGS));
        let ok = settings(&inst(), &t);
        assert_eq!(judge(&ok).status, Status::Ok);

        let mut i = inst();
        i.server.autovacuum = "off".into();
        let r = judge(&settings(&i, &t));
        assert_eq!(r.status, Status::Warning);
        assert!(r.message.contains("autovacuum is off"), "{}", r.message);

        i.server.track_counts = "off".into();
        let r = judge(&settings(&i, &t));
        assert_eq!(r.status, Status::Critical);
        assert!(r.message.contains("track_counts"), "{}", r.message);

        let mut i = inst();
        i.server.fsync = "off".into();
        assert_eq!(judge(&settings(&i, &t)).status, Status::Critical);
        let mut i = inst();
        i.server.full_page_writes = "off".into();
        assert_eq!(judge(&settings(&i, &t)).status, Status::Critical);

        // autovacuum off can be made CRITICAL, or accepted, by the thresholds.
        let mut i = inst();
        i.server.autovacuum = "off".into();
        let crit = CheckThresholds {
            critical: Some(1.0),
            ..t.clone()
        };
        assert_eq!(settings(&i, &crit).outcome_status(), Some(Status::Critical));
        let accept = CheckThresholds {
            warning: Some(2.0),
            ..t
        };
        assert_eq!(settings(&i, &accept).outcome_status(), Some(Status::Ok));
    }

    trait StatusOf {
        fn outcome_status(&self) -> Option<Status>;
    }
    impl StatusOf for Measurement {
        fn outcome_status(&self) -> Option<Status> {
            match &self.outcome {
                Outcome::Verdict { status, .. } => Some(*status),
                _ => None,
            }
        }
    }

    #[test]
    fn checksum_failures_are_a_delta_and_off_is_no_alarm() {
        let mut i = inst();
        let r = judge(&checksum_failures(&i, None));
        assert_eq!(r.status, Status::Ok);
        assert!(r.message.contains("checksums are off"), "{}", r.message);

        i.server.checksum_failures = Some(3.0);
        let r = judge(&checksum_failures(&i, None));
        assert_eq!(r.status, Status::Ok);
        assert!(r.message.contains("baseline pending"), "{}", r.message);
        assert_eq!(judge(&checksum_failures(&i, Some(3.0))).status, Status::Ok);
        let r = judge(&checksum_failures(&i, Some(2.0)));
        assert_eq!(r.status, Status::Critical, "{}", r.message);
        // A reset (counter went back) counts from zero.
        i.server.checksum_failures = Some(0.0);
        assert_eq!(judge(&checksum_failures(&i, Some(3.0))).status, Status::Ok);
    }

    #[test]
    fn long_transactions_need_read_all_stats_and_name_the_session() {
        let mut i = inst();
        let act = Activity {
            xacts: vec![IdleSession {
                pid: 42,
                usr: Some("app".into()),
                secs: Some(4000.0),
                state: Some("idle in transaction".into()),
                query: Some("UPDATE t SET v = 'secret' WHERE id = 1".into()),
                ..IdleSession::default()
            }],
            ..Activity::default()
        };
        let r = judge(&long_transactions(&i, &act));
        assert_eq!(r.status, Status::Critical);
        assert!(r.message.contains("pid 42"), "{}", r.message);
        assert!(!r.message.contains("secret"), "{}", r.message);
        i.read_stats = false;
        assert_eq!(judge(&long_transactions(&i, &act)).status, Status::Unknown);
    }

    #[test]
    fn sync_standby_names_parse_in_every_form() {
        assert_eq!(parse_sync_standby_names(""), None);
        let s = |text| parse_sync_standby_names(text).unwrap_or_else(|| panic!("{text}"));
        assert_eq!(
            s("s1, s2"),
            SyncStandbys {
                quorum: false,
                num: 1,
                names: vec!["s1".into(), "s2".into()]
            }
        );
        assert_eq!(s("2 (s1, s2, s3)").num, 2);
        let any = s("ANY 2 (\"s 1\", s2)");
        assert!(any.quorum);
        assert_eq!(any.num, 2);
        assert_eq!(any.names, vec!["s 1".to_string(), "s2".to_string()]);
        assert_eq!(s("FIRST 1 (*)").names, vec!["*".to_string()]);
        assert_eq!(s("*").num, 1);
    }

    fn replica(name: &str) -> Replica {
        Replica {
            name: Some(name.into()),
            state: Some("streaming".into()),
            behind_bytes: Some(0.0),
            ..Replica::default()
        }
    }

    /// A base backup or a logical subscriber does not stand in for a lost standby, and a
    /// standby still catching up cannot confirm synchronous commits.
    #[test]
    fn only_streaming_physical_standbys_count() {
        let i = inst();
        let mut backup = replica("pg_basebackup");
        backup.state = Some("backup".into());
        let mut sub = replica("orders_sub");
        sub.logical = true;
        let c = missing_replicas(&i, &[backup, sub], Some(&ExpectedReplicas::Count(1)));
        assert_eq!(c.len(), 1, "{c:?}");
        assert_eq!(c[0].0, Status::Warning);
        assert!(
            c[0].1.starts_with("0 of 1 expected replica(s)"),
            "{}",
            c[0].1
        );
        assert!(
            missing_replicas(&i, &[replica("s1")], Some(&ExpectedReplicas::Count(1))).is_empty()
        );

        let mut i = inst();
        i.server.sync_standby_names = "*".into();
        let mut catching_up = replica("s1");
        catching_up.state = Some("catchup".into());
        let c = missing_replicas(&i, &[catching_up], None);
        assert_eq!(c.first().map(|c| c.0), Some(Status::Critical), "{c:?}");
        let mut backup = replica("pg_basebackup");
        backup.state = Some("backup".into());
        assert_eq!(
            missing_replicas(&i, &[backup], None).first().map(|c| c.0),
            Some(Status::Critical)
        );
        // The state hidden from a role without pg_read_all_stats: not a false CRITICAL.
        let mut hidden = replica("s1");
        hidden.state = None;
        assert!(missing_replicas(&i, &[hidden], None).is_empty());
    }

    #[test]
    fn a_missing_expected_standby_alarms() {
        let i = inst();
        let reps = vec![replica("s1")];
        assert!(missing_replicas(&i, &reps, None).is_empty());
        let names = ExpectedReplicas::Names(vec!["s1".into(), "s2".into()]);
        let c = missing_replicas(&i, &reps, Some(&names));
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].0, Status::Warning);
        assert!(
            c[0].1.contains("'s2'") && !c[0].1.contains("'s1'"),
            "{}",
            c[0].1
        );
        assert!(missing_replicas(&i, &reps, Some(&ExpectedReplicas::Count(1))).is_empty());
        assert_eq!(
            missing_replicas(&i, &[], Some(&ExpectedReplicas::Count(1)))[0].0,
            Status::Warning
        );
        // On a standby nothing is expected of pg_stat_replication.
        let standby = Instance {
            in_recovery: true,
            ..inst()
        };
        assert!(missing_replicas(&standby, &[], Some(&names)).is_empty());
    }

    #[test]
    fn a_missing_synchronous_standby_is_critical() {
        let mut i = inst();
        i.server.sync_standby_names = "FIRST 1 (s1, s2)".into();
        // One of two candidates is enough for FIRST 1.
        assert!(missing_replicas(&i, &[replica("s2")], None).is_empty());
        let c = missing_replicas(&i, &[replica("other")], None);
        assert_eq!(c[0].0, Status::Critical);
        assert!(c[0].1.contains("commits hang"), "{}", c[0].1);
        // The keyword expects every listed name: s1 missing is a warning while s2 serves.
        let kw = ExpectedReplicas::Keyword("synchronous_standby_names".into());
        let c = missing_replicas(&i, &[replica("s2")], Some(&kw));
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].0, Status::Warning);
        assert!(c[0].1.contains("'s1'"), "{}", c[0].1);
        i.server.sync_standby_names = "ANY 2 (*)".into();
        assert_eq!(
            missing_replicas(&i, &[replica("a")], None)[0].0,
            Status::Critical
        );
    }

    #[test]
    fn a_missing_synchronous_standby_is_a_warning_when_commits_do_not_wait() {
        let mut i = inst();
        i.server.sync_standby_names = "s1".into();
        for (setting, status) in [
            ("on", Status::Critical),
            ("remote_apply", Status::Critical),
            ("local", Status::Warning),
            ("off", Status::Warning),
        ] {
            i.server.synchronous_commit = setting.into();
            let c = missing_replicas(&i, &[], None);
            assert_eq!(c[0].0, status, "{setting}: {}", c[0].1);
            if status == Status::Warning {
                assert!(c[0].1.contains("commits do not wait"), "{}", c[0].1);
            }
        }
    }

    #[test]
    fn conditions_make_a_measurement_at_least_as_bad() {
        let s = spec(REPLICATION_LAG);
        let t = CheckThresholds::builtin(s);
        let m = Measurement::values(REPLICATION_LAG, vec![Observation::new(1.0)]);
        let same = with_conditions(m.clone(), Vec::new(), s, &t);
        assert_eq!(same, m);
        let r = judge(&with_conditions(
            m,
            vec![(
                Status::Warning,
                "expected replica(s) not connected: 'x'".into(),
            )],
            s,
            &t,
        ));
        assert_eq!(r.status, Status::Warning);
        assert!(r.message.starts_with("expected replica"), "{}", r.message);
        let big = Measurement::values(REPLICATION_LAG, vec![Observation::new(1000.0)]);
        let r = judge(&with_conditions(
            big,
            vec![(Status::Warning, "x".into())],
            s,
            &t,
        ));
        assert_eq!(r.status, Status::Critical);
        // A lag hidden by a missing privilege does not hide a missing synchronous standby.
        let hidden = Measurement::unknown(
            REPLICATION_LAG,
            "role mon cannot see replication state without pg_read_all_stats",
            Some("GRANT pg_monitor TO mon".into()),
        );
        let r = judge(&with_conditions(
            hidden.clone(),
            vec![(Status::Critical, "0 of the 1 synchronous standby(s)".into())],
            s,
            &t,
        ));
        assert_eq!(r.status, Status::Critical);
        assert!(
            r.message.starts_with("0 of the 1") && r.message.contains("GRANT pg_monitor TO mon"),
            "{}",
            r.message
        );
        assert_eq!(with_conditions(hidden.clone(), Vec::new(), s, &t), hidden);
        // A milder condition keeps the UNKNOWN (and its GRANT) but is still said.
        let r = judge(&with_conditions(
            hidden,
            vec![(
                Status::Warning,
                "expected replica(s) not connected: 'x'".into(),
            )],
            s,
            &t,
        ));
        assert_eq!(r.status, Status::Unknown);
        assert!(r.message.contains("'x'"), "{}", r.message);
    }

    #[test]
    fn a_standby_hiding_its_receiver_is_unknown_with_the_grant() {
        let mut i = inst();
        i.in_recovery = true;
        i.read_stats = false;
        let act = Activity {
            standby: Some(Standby {
                receiver: None,
                receiver_pid: Some(77),
                ..Standby::default()
            }),
            ..Activity::default()
        };
        let Some(m) = standby_receiver_hidden(&i, &act) else {
            panic!("not detected")
        };
        let r = judge(&m);
        assert_eq!(r.status, Status::Unknown);
        assert!(r.message.contains("GRANT pg_monitor"), "{}", r.message);
        // No receiver at all (no pid): not a privilege question.
        let gone = Activity {
            standby: Some(Standby::default()),
            ..Activity::default()
        };
        assert!(standby_receiver_hidden(&i, &gone).is_none());
        assert_eq!(judge(&replication_behind(&i, &act)).status, Status::Unknown);
    }

    #[test]
    fn bytes_behind_hidden_from_the_role_are_unknown_with_the_grant() {
        let mut i = inst();
        i.read_stats = false;
        let mut r = replica("s1");
        r.behind_bytes = None;
        let act = Activity {
            replicas: vec![r],
            ..Activity::default()
        };
        let m = judge(&replication_behind(&i, &act));
        assert_eq!(m.status, Status::Unknown, "{}", m.message);
        assert!(m.message.contains("GRANT pg_monitor"), "{}", m.message);
        // No replica connected: nothing hidden, OK.
        let none = judge(&replication_behind(&i, &Activity::default()));
        assert_eq!(none.status, Status::Ok, "{}", none.message);
    }

    #[test]
    fn bytes_behind_are_judged() {
        let i = inst();
        let mut r = replica("s1");
        r.behind_bytes = Some(20.0 * 1024.0 * 1024.0 * 1024.0);
        let act = Activity {
            replicas: vec![r, replica("s2")],
            ..Activity::default()
        };
        let res = judge(&replication_behind(&i, &act));
        assert_eq!(res.status, Status::Critical);
        assert!(res.message.contains("'s1'"), "{}", res.message);
    }

    fn slot(name: &str) -> Slot {
        Slot {
            name: name.into(),
            kind: Some("physical".into()),
            wal_status: Some("reserved".into()),
            retained: Some(0.0),
            ..Slot::default()
        }
    }

    #[test]
    fn unreserved_and_invalidated_slots_are_critical() {
        assert!(slot_conditions(&[slot("a")]).is_empty());
        let mut u = slot("u");
        u.wal_status = Some("unreserved".into());
        let mut c16 = slot("c");
        c16.conflicting = Some(true);
        let mut r17 = slot("r");
        r17.conflicting = Some(true);
        r17.invalidation_reason = Some("rows_removed".into());
        let c = slot_conditions(&[u, c16, r17]);
        assert_eq!(c.len(), 3, "{c:?}");
        assert!(c.iter().all(|c| c.0 == Status::Critical));
        assert!(c[2].1.contains("rows_removed"), "{}", c[2].1);
    }

    #[test]
    fn inactive_time_comes_from_17_or_from_first_sight() {
        let t0 = Instant::now();
        let mut seen = HashMap::new();
        let mut a = slot("a");
        let mut b = slot("b");
        b.inactive_secs = Some(7200.0);
        let c = {
            let mut c = slot("c");
            c.active = true;
            c
        };
        let slots = vec![a.clone(), b.clone(), c];
        let first = inactive_for(&slots, &mut seen, t0);
        assert_eq!(first, vec![(0, 0.0, false), (1, 7200.0, true)]);
        let later = inactive_for(&slots, &mut seen, t0 + Duration::from_secs(4000));
        assert_eq!(later[0], (0, 4000.0, false));
        let r = judge(&inactive_slots(&slots, &later));
        assert_eq!(r.status, Status::Warning);
        assert!(r.message.contains("2 over threshold"), "{}", r.message);
        // Active again: forgotten, so a later inactivity starts from zero.
        a.active = true;
        inactive_for(
            &[a.clone(), b.clone()],
            &mut seen,
            t0 + Duration::from_secs(4100),
        );
        a.active = false;
        let again = inactive_for(&[a, b], &mut seen, t0 + Duration::from_secs(4200));
        assert_eq!(again[0], (0, 0.0, false));
    }

    fn seq(last: Option<f64>) -> SequenceRow {
        SequenceRow {
            name: "public.s".into(),
            data_type: "integer".into(),
            min_value: 1.0,
            max_value: 2_147_483_647.0,
            increment: 1.0,
            last_value: last,
            readable: true,
            ..SequenceRow::default()
        }
    }

    #[test]
    fn sequence_use_counts_direction_and_column_type() {
        assert_eq!(sequence_used_percent(&seq(None)), 0.0);
        let p = sequence_used_percent(&seq(Some(2_040_109_466.0)));
        assert!((p - 95.0).abs() < 0.01, "{p}");
        let mut down = seq(Some(-1_073_741_823.0));
        down.min_value = -2_147_483_648.0;
        down.max_value = -1.0;
        down.increment = -1.0;
        let p = sequence_used_percent(&down);
        assert!((p - 50.0).abs() < 0.01, "{p}");
        // A bigint sequence feeding an integer column runs out at the column's limit.
        let mut wide = seq(Some(2_000_000_000.0));
        wide.data_type = "bigint".into();
        wide.max_value = 9.223_372_036_854_776e18;
        assert!(sequence_used_percent(&wide) < 1.0);
        wide.column_type = Some("integer".into());
        assert!(sequence_used_percent(&wide) > 93.0);
    }

    #[test]
    fn sequences_are_judged_and_named_with_their_column() {
        let mut s = seq(Some(2_100_000_000.0));
        s.owner = Some("public.orders.id".into());
        s.column_type = Some("integer".into());
        let mut cyc = seq(Some(2_147_000_000.0));
        cyc.cycle = true;
        let r = judge(&sequence_exhaustion(&[s, cyc, seq(Some(5.0))], "mon", 0.0));
        assert_eq!(r.status, Status::Critical);
        assert!(r.message.contains("public.orders.id"), "{}", r.message);
        assert!(r.message.contains("to bigint"), "{}", r.message);
        // A bigint sequence of a bigint column cannot be widened: no such advice.
        let mut big = seq(Some(9.0e18));
        big.data_type = "bigint".into();
        big.max_value = 9.223_372_036_854_776e18;
        big.column_type = Some("bigint".into());
        let r = judge(&sequence_exhaustion(&[big], "mon", 0.0));
        assert_eq!(r.status, Status::Critical);
        assert!(!r.message.contains("to bigint"), "{}", r.message);
        let mut hidden = seq(None);
        hidden.readable = false;
        hidden.name = "app.secret_seq".into();
        // Some readable, some not: the hidden ones are named, not silently skipped.
        let r = judge(&sequence_exhaustion(
            &[seq(Some(5.0)), hidden.clone()],
            "mon",
            0.0,
        ));
        assert_eq!(r.status, Status::Ok);
        assert!(
            r.message.contains("1 sequence(s) not judged") && r.message.contains("app.secret_seq"),
            "{}",
            r.message
        );
        let r = judge(&sequence_exhaustion(&[hidden], "mon", 0.0));
        assert_eq!(r.status, Status::Unknown);
        assert!(r.message.contains("GRANT"), "{}", r.message);
        assert_eq!(
            judge(&sequence_exhaustion(&[], "mon", 0.0)).status,
            Status::Ok
        );
    }

    fn sample(at: Instant, timed: f64, req: f64, lsn: f64) -> WalSample {
        WalSample {
            at,
            timed,
            requested: req,
            lsn: Some(lsn),
            wal_bytes: Some(1024.0 * 1024.0 * 1024.0),
            max_wal_size: 1024.0 * 1024.0 * 1024.0,
            wal_keep_size: 0.0,
        }
    }

    #[test]
    fn checkpoints_judge_requested_share_over_the_window() {
        let t0 = Instant::now();
        let at = |m: u64| t0 + Duration::from_secs(m * 60);
        assert_eq!(
            judge(&checkpoints(&[sample(at(0), 10.0, 0.0, 0.0)])).status,
            Status::Ok
        );
        let mut v = vec![
            sample(at(0), 10.0, 0.0, 0.0),
            sample(at(30), 11.0, 8.0, 0.0),
        ];
        let r = judge(&checkpoints(&v));
        assert_eq!(r.status, Status::Warning, "{}", r.message);
        // A quiet window (fewer checkpoints than the floor) is not judged.
        let quiet = vec![
            sample(at(0), 10.0, 0.0, 0.0),
            sample(at(30), 10.0, 2.0, 0.0),
        ];
        assert_eq!(judge(&checkpoints(&quiet)).status, Status::Ok);
        // The window slides: samples older than an hour go, but one stays as the base.
        v.push(sample(at(95), 20.0, 8.0, 0.0));
        keep_window(&mut v, at(95));
        assert_eq!(v.len(), 2);
        assert_eq!(judge(&checkpoints(&v)).status, Status::Ok);
    }

    #[test]
    fn wal_volume_is_a_share_of_what_a_server_keeps_and_has_a_rate() {
        let t0 = Instant::now();
        let a = sample(t0, 0.0, 0.0, 0.0);
        let mut b = sample(
            t0 + Duration::from_secs(1800),
            0.0,
            0.0,
            512.0 * 1024.0 * 1024.0,
        );
        b.wal_bytes = Some(4.0 * 1024.0 * 1024.0 * 1024.0);
        let r = judge(&wal_volume(&[a.clone(), b], "mon", true));
        assert_eq!(r.status, Status::Critical, "{}", r.message);
        assert!(r.message.contains("1 GB/h"), "{}", r.message);
        assert_eq!(
            judge(&wal_volume(std::slice::from_ref(&a), "mon", true)).status,
            Status::Ok
        );
        let mut hidden = a;
        hidden.wal_bytes = None;
        let r = judge(&wal_volume(&[hidden], "mon", false));
        assert_eq!(r.status, Status::Unknown);
        assert!(r.message.contains("GRANT pg_monitor"), "{}", r.message);
    }
}
