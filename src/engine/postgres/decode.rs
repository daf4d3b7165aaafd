//! The probes' rows as typed values, and what a failed probe means (the reason shown in
//! its checks' UNKNOWN result).

use std::collections::HashMap;

use sqlx::Row;
use sqlx::postgres::{PgConnection, PgRow};

use super::probe::{Activity, DbCounters, Instance, TableRow, grant_monitor};
use super::probe_server::ServerFacts;
use super::{LOCK_TIMEOUT, STATEMENT_TIMEOUT, sql};
use crate::engine::TableStat;
use crate::health::Measurement;

/// Why a probe could not measure, and what would fix it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ProbeError {
    pub reason: String,
    pub fix: Option<String>,
    /// Stopped by us (cancel_running): try again next round instead of keeping the failure
    /// for a slow probe's whole interval.
    pub transient: bool,
    /// The connection was gone, not the statement wrong: worth one retry on another.
    pub lost: bool,
}

impl ProbeError {
    pub fn measurement(&self, check: &'static str) -> Measurement {
        Measurement::unknown(check, self.reason.clone(), self.fix.clone())
    }
}

/// `server_level`: with the server-level sections (see [`sql::ACTIVITY_DATABASE`]).
pub(super) async fn probe_activity(
    conn: &mut PgConnection,
    user: &str,
    server_level: bool,
    version_num: i32,
) -> Result<Activity, ProbeError> {
    let text = sql::activity_for(version_num, server_level);
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

pub(super) async fn probe_tables(
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

pub(super) fn version_text(num: i32) -> String {
    if num >= 100_000 {
        format!("{}.{}", num / 10_000, num % 10_000)
    } else {
        format!("{}.{}.{}", num / 10_000, num / 100 % 100, num % 100)
    }
}

/// Maps a failed probe query to the reason shown in its checks' UNKNOWN result.
pub(super) fn probe_error(e: &sqlx::Error, what: &str, user: &str) -> ProbeError {
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
                reason: format!(
                    "{what} waited longer than lock_timeout {LOCK_TIMEOUT} for a lock on a catalog or table it reads (another session holds it, e.g. LOCK or DDL in an open transaction; see pg_locks)"
                ),
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
pub(super) fn connection_lost(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(d) => {
            matches!(d.code().as_deref(), Some("57P01" | "57P02" | "57P03"))
        }
        _ => false,
    }
}

pub(super) fn decode_instance(r: &PgRow) -> Result<Instance, sqlx::Error> {
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
        vacuum_threshold: r.try_get("vacuum_threshold")?,
        vacuum_scale: r.try_get("vacuum_scale")?,
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
        server: decode_server_facts(r)?,
    })
}

pub(super) fn json_list<T: serde::de::DeserializeOwned>(
    r: &PgRow,
    col: &str,
) -> Result<Vec<T>, String> {
    let text: Option<String> = r.try_get(col).map_err(|e| e.to_string())?;
    match text {
        None => Ok(Vec::new()),
        Some(t) => serde_json::from_str(&t).map_err(|e| format!("{col}: {e}")),
    }
}

pub(super) fn json_one<T: serde::de::DeserializeOwned>(
    r: &PgRow,
    col: &str,
) -> Result<Option<T>, String> {
    let text: Option<String> = r.try_get(col).map_err(|e| e.to_string())?;
    match text {
        None => Ok(None),
        Some(t) => serde_json::from_str(&t)
            .map(Some)
            .map_err(|e| format!("{col}: {e}")),
    }
}

pub(super) fn decode_activity(r: &PgRow) -> Result<Activity, String> {
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
        holders: json_list(r, "holders_json")?,
        xmin: json_list(r, "xmin_json")?,
        databases: json_list(r, "databases_json")?,
        oldest: json_list(r, "oldest_json")?,
        replicas: json_list(r, "replicas_json")?,
        standby: json_one(r, "standby_json")?,
        slots: json_list(r, "slots_json")?,
        prepared: json_list(r, "prepared_json")?,
        archiver: json_one(r, "archiver_json")?,
        xacts: json_list(r, "xact_json")?,
    })
}

fn decode_server_facts(r: &PgRow) -> Result<ServerFacts, sqlx::Error> {
    Ok(ServerFacts {
        track_counts: r.try_get("track_counts")?,
        autovacuum: r.try_get("autovacuum")?,
        fsync: r.try_get("fsync")?,
        full_page_writes: r.try_get("full_page_writes")?,
        sync_standby_names: r.try_get("sync_standby_names")?,
        synchronous_commit: r.try_get("synchronous_commit")?,
        checksum_failures: r.try_get("checksum_failures")?,
        checksum_last_failure: r.try_get("checksum_last_failure")?,
    })
}

/// `now`: the server's clock from the instance probe (vacuum and analyze ages use it).
pub(super) fn decode_table(r: &PgRow, now: f64) -> Result<TableRow, sqlx::Error> {
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
        seq_tup_read: num("seq_tup_read")?,
        size: num("size")?,
        last_vacuum: r.try_get("last_vacuum")?,
        last_analyze: r.try_get("last_analyze")?,
        now,
        reloptions: r.try_get("reloptions")?,
        reltuples: num("reltuples")?,
    })
}

/// Per-table statistics to report, with insert/update/delete deltas against the previously
/// reported ones (none the first time, or when a counter went backwards: a stats reset).
pub(super) fn table_stats(
    rows: &[TableRow],
    previous: &mut HashMap<i64, [f64; 3]>,
) -> Vec<TableStat> {
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
    fn table_deltas_start_on_the_second_report_and_survive_resets() {
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
    fn probe_errors_suggest_the_grant() {
        let e = probe_error(&sqlx::Error::PoolClosed, "the table probe", "mon");
        assert!(e.reason.starts_with("the table probe failed"));
        assert_eq!(e.fix, None);
    }
}
