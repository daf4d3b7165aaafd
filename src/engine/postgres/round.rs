//! One health round of the PostgreSQL engine: the connection and its retry, which probes
//! run (side by side on a second connection when the pool has one), and the measurements
//! they make. What every engine does the same way is [`crate::engine::round::Round`].

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sqlx::Postgres;
use sqlx::Row;

use super::cache::Cached;
use super::conn::NoConnection;
use super::decode::{
    connection_lost, decode_instance, probe_activity, probe_error, probe_tables, table_stats,
    version_text,
};
use super::probe::{self, BloatRow, DbCounters, DuplicateGroup, IndexLists, Instance};
use super::{PostgresEngine, checks, disk, probe_server, sql};
use crate::engine::conn::Lease;
use crate::engine::round::{Checks, Round};
use crate::engine::{HealthReport, RunScope};
use crate::health::{Measurement, Observation, Outcome, Status};

/// How long a server's system identifier is trusted before it is read again (a name may
/// move to another server on failover).
const SERVER_ID_TTL: Duration = Duration::from_secs(10 * 60);
/// `server_version_num` of the oldest supported release (13).
const MIN_VERSION_NUM: i32 = 130_000;

/// The PostgreSQL checks, and those whose facts belong to the whole server.
pub(super) static CHECKS: Checks = Checks {
    specs: checks::CHECKS,
    server_level: &[
        checks::CONNECTIONS,
        checks::WRAPAROUND,
        checks::REPLICATION_LAG,
        checks::REPLICATION_SLOTS,
        checks::ARCHIVER,
        checks::PREPARED_XACTS,
        checks::XMIN_HORIZON,
        checks::DISK_SPACE,
        checks::REPLICATION_BEHIND,
        checks::INACTIVE_SLOTS,
        checks::WAL_VOLUME,
        checks::CHECKPOINTS,
    ],
};

/// What an engine remembers between rounds.
#[derive(Default)]
pub(super) struct RoundState {
    counters: Option<DbCounters>,
    /// Per table (by oid): inserts, updates, deletes at the previously reported statistics.
    tables: HashMap<i64, [f64; 3]>,
    /// Tables past their autoanalyze threshold: when this engine first saw them so.
    stale_since: probe::StaleSince,
    /// Scan counters over the recent window (seq_scans).
    scan_window: probe::ScanWindow,
    pub bloat: Option<Cached<Vec<BloatRow>>>,
    pub index_bloat: Option<Cached<Vec<BloatRow>>>,
    pub duplicates: Option<Cached<Vec<DuplicateGroup>>>,
    pub database_size: Option<Cached<f64>>,
    pub indexes: Option<Cached<IndexLists>>,
    server_id: Option<(String, Instant)>,
    /// As a standby: the replay position and when a round first saw replay stand there.
    standby_replay: Option<(f64, Instant)>,
    /// When opening a second connection last failed.
    pub second_failed: Option<Instant>,
    /// checksum_failures at the previous round.
    checksum_failures: Option<f64>,
    /// Inactive replication slots (before 17): when this engine first saw each so.
    slots_inactive: HashMap<String, Instant>,
    pub sequences: Option<Cached<Vec<probe_server::SequenceRow>>>,
    /// Checkpoint counters and WAL state, one sample per [`super::CATALOG_INTERVAL`].
    pub wal: Vec<probe_server::WalSample>,
    /// Why the last WAL/checkpoint sample failed, if it did.
    pub wal_error: Option<(Instant, super::decode::ProbeError)>,
}

impl PostgresEngine {
    pub(crate) async fn health(&self, round: &Round<'_>, scope: &RunScope) -> HealthReport {
        let mut st = self.state.lock().await;
        let cached_id = st.server_id.as_ref().map(|(id, _)| id.clone());
        // Pooled connections are not pinged before use (a round trip each): a connection
        // the server has closed fails its first statement and is replaced here, once per
        // pooled connection at most.
        let mut attempts = 0;
        let (mut conn, instance, latency_ms) = loop {
            let mut conn = match self.connection().await {
                Ok(c) => c,
                Err(NoConnection::Unreachable(message)) => {
                    tracing::debug!(target_name = %self.target, %message, "postgres unreachable");
                    return round.unreachable(&CHECKS, &message, cached_id);
                }
                Err(NoConnection::Blocked(message)) => {
                    return blocked(round, &message, cached_id);
                }
            };
            let started = Instant::now();
            let instance = sqlx::query(sql::INSTANCE).fetch_one(&mut *conn).await;
            let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
            match instance {
                Err(e) if connection_lost(&e) && attempts < self.max_connections => {
                    tracing::debug!(target_name = %self.target, error = %e, "pooled connection lost; using another");
                    conn.discard();
                    self.lost_connection();
                    attempts += 1;
                    // Perhaps a restart, which changes the server's identity.
                    st.server_id = None;
                }
                instance => break (conn, instance, latency_ms),
            }
        };
        let first_failed = |e: &dyn std::fmt::Display| {
            round.unreachable(
                &CHECKS,
                &format!(
                    "{}: connected, but the first probe failed: {e}",
                    self.endpoint
                ),
                cached_id.clone(),
            )
        };
        let row = match instance {
            Ok(row) => row,
            Err(e) if super::conn::lock_timeout(&e) => {
                conn.release().await;
                let what = "the instance probe (settings, pg_stat_database, pg_database, pg_roles)";
                let reason = probe_error(&e, what, "").reason;
                let message = format!("reached {}, but {reason}", self.endpoint);
                return blocked(round, &message, cached_id);
            }
            Err(e) => {
                conn.release().await;
                return first_failed(&e);
            }
        };
        if let Ok(pid) = row.try_get::<i32, _>("pid") {
            let started = row
                .try_get::<Option<String>, _>("backend_start")
                .ok()
                .flatten();
            self.enter(&mut conn, pid, started, scope);
        }
        let inst = match decode_instance(&row) {
            Ok(i) => i,
            Err(e) => {
                conn.release().await;
                return first_failed(&e);
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
            conn.release().await;
            let reason = probe_server::unsupported_version(
                inst.version_num,
                &version_text(inst.version_num),
            )
            .unwrap_or_default();
            let connectivity =
                Measurement::verdict("connectivity", Status::Unknown, Some(latency_ms), &reason);
            return round.all_unknown(&CHECKS, connectivity, &reason, cached_id);
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
        let measures = |check: &str| round.measures(&CHECKS, &server_id, check);
        // The activity probe's server sections are needed unless others measure every
        // server-level check this target has enabled (disk_space needs no query).
        let server_level = CHECKS
            .server_level
            .iter()
            .any(|c| *c != checks::DISK_SPACE && measures(c));

        // The two larger probes run side by side when the pool has a second connection,
        // so a round's wall time stays close to the server's time for it.
        let second = self.second_connection(&mut st).await;
        let (activity, tables) = match second {
            Some(mut other) => {
                let (a, t) = tokio::join!(
                    probe_activity(&mut conn, &inst.user, server_level, inst.version_num),
                    self.tables_on_second(&mut other, &inst, scope)
                );
                match t {
                    // The second connection was closed by the server: drop it, use ours.
                    Err(e) if e.lost => {
                        other.discard();
                        (a, probe_tables(&mut conn, &inst.user, inst.now).await)
                    }
                    t => {
                        other.release().await;
                        (a, t)
                    }
                }
            }
            None => {
                let a = probe_activity(&mut conn, &inst.user, server_level, inst.version_num).await;
                (a, probe_tables(&mut conn, &inst.user, inst.now).await)
            }
        };
        let archive_ready =
            if measures(checks::ARCHIVER) && inst.archive_mode != "off" && inst.monitor {
                sqlx::query_scalar::<_, f64>(sql::ARCHIVE_READY)
                    .fetch_one(&mut *conn)
                    .await
                    .ok()
            } else {
                None
            };
        self.refresh_slow(round, &mut st, &mut conn, &inst.user, inst.version_num)
            .await;
        let wal_measured = measures(checks::WAL_VOLUME) || measures(checks::CHECKPOINTS);
        self.refresh_server(round, &mut st, &mut conn, &inst, wal_measured)
            .await;
        conn.release().await;

        let mut measurements = Vec::new();

        // Counter deltas; the baseline moves forward every round.
        let counter_ms = probe::counter_checks(st.counters.as_ref(), &inst.counters);
        st.counters = Some(inst.counters);
        let checksum_ms = probe_server::checksum_failures(&inst, st.checksum_failures);
        st.checksum_failures = inst.server.checksum_failures;
        // A failed activity probe says nothing about slots: keep their first-seen times.
        let inactive = match &activity {
            Ok(a) => probe_server::inactive_for(&a.slots, &mut st.slots_inactive, Instant::now()),
            Err(_) => Vec::new(),
        };

        let stale_for: HashMap<i64, f64> = match &tables {
            Ok(rows) => probe::track_stale(&mut st.stale_since, &inst, rows, Instant::now()),
            Err(_) => HashMap::new(),
        };

        let scan_deltas = match &tables {
            Ok(rows) => st.scan_window.observe(rows, Instant::now()),
            Err(_) => None,
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

        for spec in checks::CHECKS {
            let check = spec.name;
            if !measures(check) {
                continue;
            }
            let t = round.thresholds(check);
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
                checks::DEAD_TUPLES => tab.map(|r| probe::dead_tuples(&inst, r, &t)),
                checks::STALE_STATS => tab.map(|r| probe::stale_stats(&inst, r, &stale_for, &t)),
                checks::SEQ_SCANS => tab.map(|r| probe::seq_scans(r, scan_deltas.as_ref(), &t)),
                checks::REPLICATION_LAG => act.map(|a| {
                    probe_server::standby_receiver_hidden(&inst, a).unwrap_or_else(|| {
                        let missing = probe_server::missing_replicas(
                            &inst,
                            &a.replicas,
                            round.target.expected_replicas.as_ref(),
                        );
                        let m = probe::replication_lag(&inst, a, stalled_for);
                        probe_server::with_conditions(m, missing, spec, &t)
                    })
                }),
                checks::REPLICATION_SLOTS => act.map(|a| {
                    let m = probe::replication_slots(a);
                    probe_server::with_conditions(
                        m,
                        probe_server::slot_conditions(&a.slots),
                        spec,
                        &t,
                    )
                }),
                checks::SETTINGS => Ok(probe_server::settings(&inst, &t)),
                checks::CHECKSUM_FAILURES => Ok(checksum_ms.clone()),
                checks::LONG_TRANSACTION => act.map(|a| probe_server::long_transactions(&inst, a)),
                checks::REPLICATION_BEHIND => {
                    act.map(|a| probe_server::replication_behind(&inst, a))
                }
                checks::INACTIVE_SLOTS => {
                    act.map(|a| probe_server::inactive_slots(&a.slots, &inactive))
                }
                checks::SEQUENCE_EXHAUSTION => {
                    Ok(Cached::measure(&st.sequences, check, |rows, age| {
                        probe_server::sequence_exhaustion(rows, &inst.user, age)
                    }))
                }
                checks::WAL_VOLUME => Ok(match &st.wal_error {
                    Some((_, e)) => e.measurement(check),
                    None => probe_server::wal_volume(&st.wal, &inst.user, inst.monitor),
                }),
                checks::CHECKPOINTS => Ok(match &st.wal_error {
                    Some((_, e)) => e.measurement(check),
                    None => probe_server::checkpoints(&st.wal),
                }),
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
                checks::INDEX_BLOAT => Ok(Cached::measure(&st.index_bloat, check, |rows, age| {
                    probe::index_bloat(rows, &inst.user, age, &t)
                })),
                checks::DUPLICATE_INDEXES => {
                    Ok(Cached::measure(&st.duplicates, check, |g, age| {
                        probe::duplicate_indexes(g, age)
                    }))
                }
                checks::DISK_SPACE => Ok(self.disk_space(&inst)),
                _ => continue,
            };
            measurements.push(m.unwrap_or_else(|e| e.measurement(check)));
        }

        // Statistics are reported only in rounds asked for them; the deltas' baseline
        // moves only then, so they span the time since the previous report.
        let stats = match &tables {
            Ok(rows) if round.opts.table_stats => table_stats(rows, &mut st.tables),
            _ => Vec::new(),
        };
        // disk_space "not visible from here" is no measurement: a target on the database
        // host should measure it instead.
        let disk_seen = measurements
            .iter()
            .any(|m| m.check == checks::DISK_SPACE && matches!(m.outcome, Outcome::Values(_)));
        let not_measured: &[&str] = if disk_seen {
            &[]
        } else {
            &[checks::DISK_SPACE]
        };
        round.finish(
            &CHECKS,
            connectivity,
            measurements,
            Some(server_id),
            not_measured,
            stats,
        )
    }

    /// The table probe on the round's second connection, registered in the run's scope
    /// first (its backend is learned by one short query, side by side with the activity
    /// probe on the first connection).
    async fn tables_on_second(
        &self,
        other: &mut Lease<Postgres>,
        inst: &Instance,
        scope: &RunScope,
    ) -> Result<Vec<probe::TableRow>, super::decode::ProbeError> {
        match super::conn::identify(other).await {
            Ok((pid, started)) => self.enter(other, pid, started, scope),
            Err(e) => return Err(probe_error(&e, "the table probe", &inst.user)),
        }
        probe_tables(other, &inst.user, inst.now).await
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
}

/// The server answered, but a probe (or the session's start) waited on a lock: not
/// unreachable. Connectivity says what happened (WARNING), every other check is UNKNOWN
/// with the same reason.
fn blocked(round: &Round<'_>, message: &str, server_id: Option<String>) -> HealthReport {
    let connectivity = Measurement::verdict("connectivity", Status::Warning, None, message);
    round.all_unknown(&CHECKS, connectivity, message, server_id)
}
