//! The probe queries. Rules every one follows (see DESIGN.md "Maintenance, safe by
//! construction"):
//! - starts with `/* dbwarden */` so a DBA can tell them apart in pg_stat_activity/logs;
//! - reads catalogs and statistics views only, and never calls a function that takes a
//!   relation lock (`pg_relation_size()`, `pg_total_relation_size()`, `pg_get_indexdef()`):
//!   sizes are `pg_class.relpages * block_size`, so a table held in ACCESS EXCLUSIVE mode by
//!   another session neither blocks nor fails a round;
//! - runs under the connection's `statement_timeout` (5 s) and `lock_timeout` (1 s);
//! - cheap probes are combined into few round trips (the small heterogeneous sections of
//!   [`ACTIVITY`] come back as JSON, the table list as plain rows).
//!
//! Functions whose *EXECUTE* privilege may be missing are kept out of the shared queries
//! (PostgreSQL checks EXECUTE when a plan starts, so a CASE cannot guard it); settings that
//! need pg_read_all_settings are guarded by a CASE on `pg_has_role` (checked at run time).

/// The backend of a connection, so a run can cancel its statements (a pid alone could be
/// reused by another backend later; the start time makes it unique). `INSTANCE` returns
/// the same for the round's first connection; this is for a second one.
pub const BACKEND_IDENTITY: &str = "/* dbwarden */ SELECT pg_backend_pid(), \
     (SELECT backend_start::text FROM pg_stat_get_activity(pg_backend_pid()))";

/// The server instance's identity: the system identifier (one per cluster, but shared by a
/// primary and its physical standbys) plus the postmaster's start time, which tells a
/// primary from its standbys. It changes on a restart; the engine asks again then.
pub const SERVER_ID: &str = "/* dbwarden */ SELECT system_identifier::text || '@' || \
     (extract(epoch FROM pg_postmaster_start_time()) * 1000000)::int8::text \
     FROM pg_control_system()";

/// One row: settings, privileges, this database's counters, and this connection's backend
/// (for the run's scope). Its round trip is the connectivity latency (it touches no user
/// table and costs ~0.1 ms).
pub const INSTANCE: &str = r#"/* dbwarden */ SELECT
  pg_backend_pid() AS pid,
  (SELECT backend_start::text FROM pg_stat_get_activity(pg_backend_pid())) AS backend_start,
  current_setting('server_version_num')::int4 AS version_num,
  current_database()::text AS db,
  current_user::text AS usr,
  pg_is_in_recovery() AS in_recovery,
  pg_has_role('pg_read_all_stats', 'USAGE') AS read_stats,
  pg_has_role('pg_read_all_settings', 'USAGE') AS read_settings,
  pg_has_role('pg_monitor', 'USAGE') AS monitor,
  current_setting('max_connections')::float8 AS max_connections,
  current_setting('superuser_reserved_connections')::float8 AS su_reserved,
  coalesce(current_setting('reserved_connections', true), '0')::float8 AS reserved,
  current_setting('autovacuum_freeze_max_age')::float8 AS freeze_max_age,
  current_setting('autovacuum_analyze_threshold')::float8 AS analyze_threshold,
  current_setting('autovacuum_analyze_scale_factor')::float8 AS analyze_scale,
  current_setting('autovacuum_vacuum_threshold')::float8 AS vacuum_threshold,
  current_setting('autovacuum_vacuum_scale_factor')::float8 AS vacuum_scale,
  current_setting('block_size')::float8 AS block_size,
  current_setting('archive_mode') AS archive_mode,
  extract(epoch FROM now())::float8 AS now,
  CASE WHEN pg_has_role('pg_read_all_settings', 'USAGE')
       THEN current_setting('data_directory') END AS data_directory,
  d.blks_hit::float8 AS blks_hit,
  d.blks_read::float8 AS blks_read,
  d.deadlocks::float8 AS deadlocks,
  d.temp_files::float8 AS temp_files,
  d.temp_bytes::float8 AS temp_bytes,
  extract(epoch FROM d.stats_reset)::float8 AS stats_reset,
  (SELECT datconnlimit FROM pg_database WHERE datname = current_database())::float8 AS db_connlimit,
  (SELECT rolconnlimit FROM pg_roles WHERE rolname = current_user)::float8 AS role_connlimit,
  current_setting('track_counts') AS track_counts,
  current_setting('autovacuum') AS autovacuum,
  current_setting('fsync') AS fsync,
  current_setting('full_page_writes') AS full_page_writes,
  current_setting('synchronous_standby_names') AS sync_standby_names,
  current_setting('synchronous_commit') AS synchronous_commit,
  d.checksum_failures::float8 AS checksum_failures,
  extract(epoch FROM d.checksum_last_failure)::float8 AS checksum_last_failure
FROM pg_stat_database d
WHERE d.datname = current_database()"#;

/// One row of JSON sections: sessions (one snapshot of pg_stat_activity shared by all),
/// databases' freeze ages, replication, slots, prepared transactions, the archiver, and
/// this database's oldest tables (only once its age passes half of
/// autovacuum_freeze_max_age: the scan of pg_class is skipped before).
///
/// `$server` is `true` or `false`: whether the server-level sections are measured by this
/// target (when another target of the same server measures them, they are NULL and
/// PostgreSQL folds them away when planning). A literal rather than a parameter, so each
/// text keeps one generic plan for the connection's prepared statement (planning this text
/// costs more than running it).
///
/// `$slots`: the version-dependent columns of pg_replication_slots (`slots_13!` …).
macro_rules! activity {
    ($server:literal, $slots:expr) => {
        concat!(
            r#"/* dbwarden */ WITH a AS MATERIALIZED (
  SELECT pid, datname::text AS datname, usename::text AS usr, application_name AS app,
         state, backend_type, wait_event_type, wait_event, left(query, 1000) AS query,
         extract(epoch FROM now() - query_start)::float8 AS query_secs,
         extract(epoch FROM now() - state_change)::float8 AS state_secs,
         extract(epoch FROM now() - xact_start)::float8 AS xact_secs,
         greatest(age(backend_xmin), age(backend_xid))::float8 AS xmin_age,
         datname = current_database() AS here,
         datid IS NOT NULL AS has_db
  FROM pg_stat_activity
  WHERE pid <> pg_backend_pid()
), w AS MATERIALIZED (
  -- sessions waiting on a lock, every database (a chain may pass through any of them)
  SELECT a.*, pg_blocking_pids(a.pid) AS blockers FROM a WHERE wait_event_type = 'Lock'
), lw AS MATERIALIZED (
  -- when each lock wait began (pg_locks.waitstart, 14+; NULL before, read through jsonb
  -- so one text serves every version). Only evaluated when some session waits.
  SELECT pid, min((to_jsonb(l) ->> 'waitstart')::timestamptz) AS waitstart
  FROM pg_locks l WHERE NOT granted GROUP BY pid
), lsn AS (
  SELECT CASE WHEN pg_is_in_recovery()
              THEN coalesce(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())
              ELSE pg_current_wal_lsn() END AS now_lsn
)
SELECT
  CASE WHEN "#, $server, r#" THEN (SELECT count(*) FILTER (WHERE backend_type = 'client backend'
                              OR (backend_type IS NULL AND has_db)) + 1 FROM a)::float8 END AS client_connections,
  (SELECT count(*) FILTER (WHERE here AND (backend_type = 'client backend' OR backend_type IS NULL)) + 1
     FROM a)::float8 AS db_connections,
  (SELECT count(*) FILTER (WHERE usr = current_user AND (backend_type = 'client backend' OR backend_type IS NULL)) + 1
     FROM a)::float8 AS role_connections,
  (SELECT coalesce(json_agg(x), '[]') FROM (
     SELECT pid, usr, app, query_secs AS secs, wait_event_type, wait_event, query
     FROM a
     WHERE here AND state = 'active' AND backend_type = 'client backend'
       AND query NOT LIKE '/* dbwarden */%'
     ORDER BY query_secs DESC NULLS LAST LIMIT 20) x)::text AS long_json,
  (SELECT coalesce(json_agg(x), '[]') FROM (
     SELECT pid, usr, app, state_secs AS secs, xact_secs, state, query
     FROM a
     WHERE here AND state LIKE 'idle in transaction%'
     ORDER BY state_secs DESC NULLS LAST LIMIT 20) x)::text AS idle_json,
  (SELECT coalesce(json_agg(x), '[]') FROM (
     SELECT b.pid, b.usr, b.app, b.state_secs AS secs, b.wait_event, b.query, b.blockers,
            (SELECT extract(epoch FROM now() - lw.waitstart)::float8 FROM lw
             WHERE lw.pid = b.pid) AS wait_secs
     FROM w b
     WHERE b.here AND cardinality(b.blockers) > 0
     ORDER BY coalesce((SELECT lw.waitstart FROM lw WHERE lw.pid = b.pid), now()) ASC,
              b.state_secs DESC NULLS LAST LIMIT 20) x)::text AS blocked_json,
  (SELECT coalesce(json_agg(x), '[]') FROM (
     SELECT h.pid, h.usr, h.state, h.state_secs AS secs, h.xact_secs, h.query,
            w.blockers
     FROM a h LEFT JOIN w ON w.pid = h.pid
     WHERE h.pid IN (SELECT unnest(blockers) FROM w)
     LIMIT 200) x)::text AS holders_json,
  CASE WHEN "#, $server, r#" THEN (SELECT coalesce(json_agg(x), '[]') FROM (
     SELECT pid, usr, datname, state, xact_secs, xmin_age
     FROM a
     WHERE xmin_age IS NOT NULL AND backend_type IS DISTINCT FROM 'autovacuum worker'
       AND NOT (state = 'active' AND query LIKE '/* dbwarden */%')
     ORDER BY xmin_age DESC LIMIT 1) x)::text END AS xmin_json,
  CASE WHEN "#, $server, r#" THEN (SELECT coalesce(json_agg(x), '[]') FROM (
     SELECT datname::text AS name, age(datfrozenxid)::float8 AS xid_age,
            mxid_age(datminmxid)::float8 AS mxid_age
     FROM pg_database) x)::text END AS databases_json,
  CASE WHEN "#, $server, r#" THEN (SELECT coalesce(json_agg(x), '[]') FROM (
     SELECT format('%I.%I', n.nspname, c.relname) AS name, o.xid_age
     FROM (SELECT oid, age(relfrozenxid)::float8 AS xid_age FROM pg_class
           WHERE relkind IN ('r', 'm', 't') AND relfrozenxid <> '0'
             AND (SELECT age(datfrozenxid) FROM pg_database WHERE datname = current_database())
                 > current_setting('autovacuum_freeze_max_age')::float8 / 2
           ORDER BY 2 DESC LIMIT 3) o
     JOIN pg_class c ON c.oid = o.oid
     JOIN pg_namespace n ON n.oid = c.relnamespace
     ORDER BY o.xid_age DESC) x)::text END AS oldest_json,
  CASE WHEN "#, $server, r#" THEN (SELECT coalesce(json_agg(x), '[]') FROM (
     SELECT application_name AS name, host(client_addr) AS addr, state, sync_state,
            extract(epoch FROM write_lag)::float8 AS write_lag,
            extract(epoch FROM flush_lag)::float8 AS flush_lag,
            extract(epoch FROM replay_lag)::float8 AS replay_lag,
            pg_wal_lsn_diff(lsn.now_lsn, replay_lsn)::float8 AS behind_bytes,
            age(backend_xmin)::float8 AS xmin_age,
            EXISTS (SELECT 1 FROM pg_replication_slots sl
                    WHERE sl.active_pid = pg_stat_replication.pid
                      AND sl.slot_type = 'logical') AS logical
     FROM pg_stat_replication, lsn) x)::text END AS replicas_json,
  CASE WHEN "#, $server, r#" THEN (SELECT row_to_json(x) FROM (
     SELECT pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::float8 AS receive_minus_replay,
            pg_wal_lsn_diff(pg_last_wal_receive_lsn(), '0/0')::float8 AS received,
            pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0')::float8 AS replayed,
            extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 AS replay_age,
            (SELECT status FROM pg_stat_wal_receiver) AS receiver,
            (SELECT sender_host FROM pg_stat_wal_receiver) AS sender,
            (SELECT pid FROM pg_stat_wal_receiver) AS receiver_pid
     WHERE pg_is_in_recovery()) x)::text END AS standby_json,
  CASE WHEN "#, $server, r#" THEN (SELECT coalesce(json_agg(x), '[]') FROM (
     SELECT slot_name::text AS name, slot_type AS kind, active, wal_status,
            database::text AS database,
            pg_wal_lsn_diff(lsn.now_lsn, restart_lsn)::float8 AS retained,
            age(xmin)::float8 AS xmin_age, age(catalog_xmin)::float8 AS catalog_xmin_age,
            "#, $slots, r#"
     FROM pg_replication_slots, lsn) x)::text END AS slots_json,
  CASE WHEN "#, $server, r#" THEN (SELECT coalesce(json_agg(x), '[]') FROM (
     SELECT gid, database::text AS database, owner::text AS owner,
            extract(epoch FROM now() - prepared)::float8 AS secs,
            age(transaction)::float8 AS xid_age
     FROM pg_prepared_xacts) x)::text END AS prepared_json,
  CASE WHEN "#, $server, r#" THEN (SELECT row_to_json(x) FROM (
     SELECT failed_count::float8 AS failed_count, last_failed_wal,
            extract(epoch FROM now() - last_archived_time)::float8 AS archived_secs_ago,
            extract(epoch FROM now() - last_failed_time)::float8 AS failed_secs_ago
     FROM pg_stat_archiver) x)::text END AS archiver_json,
  (SELECT coalesce(json_agg(x), '[]') FROM (
     SELECT pid, usr, app, xact_secs AS secs, state, query
     FROM a
     WHERE here AND xact_secs IS NOT NULL AND backend_type = 'client backend'
       AND NOT (state = 'active' AND query LIKE '/* dbwarden */%')
     ORDER BY xact_secs DESC LIMIT 20) x)::text AS xact_json"#
        )
    };
}

/// The version-dependent columns of pg_replication_slots: 13–15 have none of them.
macro_rules! slots_13 {
    () => {
        "NULL::bool AS conflicting, NULL::text AS invalidation_reason, NULL::float8 AS inactive_secs"
    };
}
/// 16: `conflicting` (logical slots invalidated by a conflict with recovery).
macro_rules! slots_16 {
    () => {
        "conflicting, NULL::text AS invalidation_reason, NULL::float8 AS inactive_secs"
    };
}
/// 17+: also `invalidation_reason` and `inactive_since`.
macro_rules! slots_17 {
    () => {
        "conflicting, invalidation_reason::text AS invalidation_reason, \
         extract(epoch FROM now() - inactive_since)::float8 AS inactive_secs"
    };
}
/// The activity probe with the server-level sections (13–15).
pub const ACTIVITY: &str = activity!("true", slots_13!());
/// The activity probe with the server-level sections, PostgreSQL 16.
pub const ACTIVITY_16: &str = activity!("true", slots_16!());
/// The activity probe with the server-level sections, PostgreSQL 17+.
pub const ACTIVITY_17: &str = activity!("true", slots_17!());
/// The activity probe without them: another target of the server measures those.
pub const ACTIVITY_DATABASE: &str = activity!("false", slots_13!());

/// Checkpoint counters before 17 (`pg_stat_bgwriter`), with the WAL settings and position.
pub const CHECKPOINTS_13: &str = r#"/* dbwarden */ SELECT
  checkpoints_timed::float8 AS timed, checkpoints_req::float8 AS requested,
  pg_size_bytes(current_setting('max_wal_size'))::float8 AS max_wal_size,
  pg_size_bytes(current_setting('wal_keep_size'))::float8 AS wal_keep_size,
  CASE WHEN pg_is_in_recovery() THEN NULL
       ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::float8 END AS lsn
FROM pg_stat_bgwriter"#;

/// Checkpoint counters on 17+ (`pg_stat_checkpointer`), with the WAL settings and position.
pub const CHECKPOINTS_17: &str = r#"/* dbwarden */ SELECT
  num_timed::float8 AS timed, num_requested::float8 AS requested,
  pg_size_bytes(current_setting('max_wal_size'))::float8 AS max_wal_size,
  pg_size_bytes(current_setting('wal_keep_size'))::float8 AS wal_keep_size,
  CASE WHEN pg_is_in_recovery() THEN NULL
       ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::float8 END AS lsn
FROM pg_stat_checkpointer"#;

/// Size of pg_wal (needs pg_monitor: EXECUTE on pg_ls_waldir, so a statement of its own).
pub const WAL_DIR: &str =
    "/* dbwarden */ SELECT coalesce(sum(size), 0)::float8 FROM pg_ls_waldir()";

/// Every sequence of this database with its range, last value (NULL when never called
/// or not readable) and the column owning it (serial, identity, OWNED BY). Runs every
/// 5 minutes: pg_sequences reads each sequence's state.
pub const SEQUENCES: &str = r#"/* dbwarden */ SELECT
  format('%I.%I', s.schemaname, s.sequencename) AS name,
  s.data_type::text AS data_type,
  s.min_value::float8 AS min_value, s.max_value::float8 AS max_value,
  s.increment_by::float8 AS increment, s.cycle,
  s.last_value::float8 AS last_value,
  has_sequence_privilege(c.oid, 'SELECT,USAGE') AS readable,
  CASE WHEN a.attname IS NOT NULL
       THEN format('%I.%I.%I', tn.nspname, t.relname, a.attname) END AS owner,
  format_type(a.atttypid, NULL) AS column_type
FROM pg_sequences s
JOIN pg_namespace n ON n.nspname = s.schemaname
JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = s.sequencename AND c.relkind = 'S'
LEFT JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid
                     AND d.refclassid = 'pg_class'::regclass AND d.refobjsubid > 0
                     AND d.deptype IN ('a', 'i')
LEFT JOIN pg_class t ON t.oid = d.refobjid
LEFT JOIN pg_namespace tn ON tn.oid = t.relnamespace
LEFT JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid"#;

/// The activity probe for a server version (`server`: with the server-level sections).
pub fn activity_for(version_num: i32, server: bool) -> &'static str {
    use super::probe_server::SlotColumns;
    match (server, SlotColumns::of(version_num)) {
        (false, _) => ACTIVITY_DATABASE,
        (true, SlotColumns::V13) => ACTIVITY,
        (true, SlotColumns::V16) => ACTIVITY_16,
        (true, SlotColumns::V17) => ACTIVITY_17,
    }
}

/// Invalid indexes (builds in progress excluded) and never-scanned indexes not backing a
/// constraint, largest first. Index state changes slowly; this runs every 5 minutes.
pub const INDEXES: &str = r#"/* dbwarden */ WITH bs AS (
  SELECT current_setting('block_size')::float8 AS bs
)
SELECT
  (SELECT coalesce(json_agg(x), '[]') FROM (
     SELECT format('%I.%I', n.nspname, ic.relname) AS name,
            format('%I.%I', n.nspname, tc.relname) AS tbl,
            ic.relkind = 'I' AS partitioned,
            -- a partitioned index stays invalid until every partition has its index
            -- attached (CREATE INDEX ... ON ONLY, the first step of building one per
            -- partition): the partitions still lacking it
            CASE WHEN ic.relkind = 'I' THEN (
              SELECT coalesce(array_agg(format('%I.%I', pn.nspname, pc.relname) ORDER BY 1), '{}')
              FROM pg_inherits pt
              JOIN pg_class pc ON pc.oid = pt.inhrelid
              JOIN pg_namespace pn ON pn.oid = pc.relnamespace
              WHERE pt.inhparent = tc.oid
                AND NOT EXISTS (SELECT 1 FROM pg_inherits pi
                                JOIN pg_index ci ON ci.indexrelid = pi.inhrelid
                                WHERE pi.inhparent = ic.oid AND ci.indrelid = pt.inhrelid))
            END AS missing
     FROM pg_index i
     JOIN pg_class ic ON ic.oid = i.indexrelid
     JOIN pg_class tc ON tc.oid = i.indrelid
     JOIN pg_namespace n ON n.oid = ic.relnamespace
     WHERE NOT i.indisvalid
       AND NOT EXISTS (SELECT 1 FROM pg_stat_progress_create_index p
                       WHERE p.index_relid = i.indexrelid)
     ORDER BY 1 LIMIT 50) x)::text AS invalid_json,
  (SELECT coalesce(json_agg(x), '[]') FROM (
     SELECT format('%I.%I', s.schemaname, s.indexrelname) AS name,
            format('%I.%I', s.schemaname, s.relname) AS tbl,
            c.relpages::float8 * bs.bs AS size
     FROM pg_stat_user_indexes s
     JOIN pg_index i ON i.indexrelid = s.indexrelid
     JOIN pg_class c ON c.oid = s.indexrelid
     CROSS JOIN bs
     WHERE s.idx_scan = 0 AND i.indisvalid
       AND NOT (i.indisunique OR i.indisprimary OR i.indisexclusion)
       AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = s.indexrelid)
     ORDER BY size DESC LIMIT 50) x)::text AS unused_json"#;

/// The database's size on disk: one stat() per file of the database (~4 ms for ~1,100
/// files), so it runs on a slower cadence than the cheap probes.
pub const DATABASE_SIZE: &str =
    "/* dbwarden */ SELECT pg_database_size(current_database())::float8";

/// Every user table of this database, one row each (for the table checks and
/// `table_stats`). No per-table function call that could lock the table.
pub const TABLES: &str = r#"/* dbwarden */ SELECT
  s.relid::int8 AS relid,
  format('%I.%I', s.schemaname, s.relname) AS name,
  s.n_live_tup::float8 AS live,
  s.n_dead_tup::float8 AS dead,
  s.n_mod_since_analyze::float8 AS mod_since_analyze,
  s.n_tup_ins::float8 AS ins,
  s.n_tup_upd::float8 AS upd,
  s.n_tup_del::float8 AS del,
  coalesce(s.seq_scan, 0)::float8 AS seq_scan,
  s.idx_scan::float8 AS idx_scan,
  coalesce(s.seq_tup_read, 0)::float8 AS seq_tup_read,
  c.relpages::float8 * current_setting('block_size')::float8 AS size,
  extract(epoch FROM greatest(s.last_vacuum, s.last_autovacuum))::float8 AS last_vacuum,
  extract(epoch FROM greatest(s.last_analyze, s.last_autoanalyze))::float8 AS last_analyze,
  array_to_string(c.reloptions, ',') AS reloptions,
  c.reltuples::float8 AS reltuples
FROM pg_stat_user_tables s
JOIN pg_class c ON c.oid = s.relid"#;

/// WAL segments waiting for archive_command (only with pg_monitor, only when archiving).
pub const ARCHIVE_READY: &str = "/* dbwarden */ SELECT count(*)::float8 \
     FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'";

/// Expensive: the classic table-bloat estimate (ioguix/pgsql-bloat-estimation) from
/// pg_class and pg_stats, for tables of at least `$1` bytes. `na` (ioguix's `is_na`)
/// says why the estimate is not possible for a table, NULL when it is: `privilege`
/// (pg_stats hides columns this role may not SELECT), `never_analyzed` (no statistics at
/// all), `columns_not_analyzed` (a column added since the last ANALYZE), `name_column`
/// (a column of type name, which the estimate cannot size).
pub const BLOAT: &str = r#"/* dbwarden */ SELECT name, real_size, bloat_size, na
FROM (
  SELECT name, bs * tblpages AS real_size,
         CASE WHEN tblpages - est_tblpages_ff > 0 THEN (tblpages - est_tblpages_ff) * bs ELSE 0 END AS bloat_size,
         na
  FROM (
    SELECT ceil(reltuples / ((bs - page_hdr) * fillfactor / (tpl_size * 100))) + ceil(toasttuples / 4) AS est_tblpages_ff,
           tblpages, bs, name, na
    FROM (
      SELECT (4 + tpl_hdr_size + tpl_data_size + (2 * ma)
              - CASE WHEN tpl_hdr_size % ma = 0 THEN ma ELSE tpl_hdr_size % ma END
              - CASE WHEN ceil(tpl_data_size)::int % ma = 0 THEN ma ELSE ceil(tpl_data_size)::int % ma END
             ) AS tpl_size,
             heappages + toastpages AS tblpages, reltuples, toasttuples, bs, page_hdr, name,
             fillfactor, na
      FROM (
        SELECT format('%I.%I', ns.nspname, tbl.relname) AS name,
               tbl.reltuples::float8 AS reltuples,
               tbl.relpages::float8 AS heappages,
               coalesce(toast.relpages, 0)::float8 AS toastpages,
               coalesce(toast.reltuples, 0)::float8 AS toasttuples,
               coalesce(substring(array_to_string(tbl.reloptions, ' ') FROM 'fillfactor=([0-9]+)')::float8, 100) AS fillfactor,
               current_setting('block_size')::float8 AS bs,
               8 AS ma,
               24 AS page_hdr,
               23 + CASE WHEN max(coalesce(s.null_frac, 0)) > 0 THEN (7 + count(s.attname)) / 8 ELSE 0::int END AS tpl_hdr_size,
               sum((1 - coalesce(s.null_frac, 0)) * coalesce(s.avg_width, 0))::float8 AS tpl_data_size,
               CASE WHEN NOT bool_and(coalesce(has_column_privilege(tbl.oid, att.attnum, 'SELECT'), false))
                      THEN 'privilege'
                    WHEN tbl.reltuples::float8 < 0 OR (tbl.reltuples::float8 > 0 AND count(s.attname) = 0)
                      THEN 'never_analyzed'
                    WHEN tbl.reltuples::float8 > 0 AND count(s.attname) < count(*)
                      THEN 'columns_not_analyzed'
                    WHEN bool_or(att.atttypid = 'pg_catalog.name'::regtype)
                      THEN 'name_column'
               END AS na
        FROM pg_attribute att
        JOIN pg_class tbl ON att.attrelid = tbl.oid
        JOIN pg_namespace ns ON ns.oid = tbl.relnamespace
        LEFT JOIN pg_stats s ON s.schemaname = ns.nspname AND s.tablename = tbl.relname
                             AND s.inherited = false AND s.attname = att.attname
        LEFT JOIN pg_class toast ON tbl.reltoastrelid = toast.oid
        WHERE NOT att.attisdropped AND att.attnum > 0
          AND tbl.relkind IN ('r', 'm')
          AND ns.nspname NOT IN ('pg_catalog', 'information_schema')
          AND ns.nspname !~ '^pg_toast'
          AND (tbl.relpages::float8 + coalesce(toast.relpages, 0)) * current_setting('block_size')::float8 >= $1
        GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9
      ) s1
    ) s2
  ) s3
) s4
ORDER BY bloat_size DESC"#;

/// Expensive: the btree index bloat estimate (after ioguix/pgsql-bloat-estimation's
/// btree query), for indexes of at least `$1` bytes: the pages its entries need at the
/// index's fillfactor (8-byte tuple header, 4 more for a null bitmap, data widths from
/// pg_stats, MAXALIGN 8, 24-byte page header, 16 bytes of btree special space), against
/// the pages it has. Column statistics come from the table's columns (or the index's own
/// for expressions) without `pg_get_indexdef()`, which locks. `na` as in [`BLOAT`].
pub const INDEX_BLOAT: &str = r#"/* dbwarden */ WITH idx AS (
  SELECT ic.oid AS idxoid, i.indrelid, i.indkey, i.indnatts::int AS natts,
         n.nspname, tc.relname AS tblname, ic.relname AS idxname,
         format('%I.%I', n.nspname, ic.relname) AS name,
         format('%I.%I', n.nspname, tc.relname) AS tbl,
         ic.reltuples::float8 AS reltuples, ic.relpages::float8 AS relpages,
         coalesce(substring(array_to_string(ic.reloptions, ' ') FROM 'fillfactor=([0-9]+)')::float8, 90) AS fillfactor
  FROM pg_index i
  JOIN pg_class ic ON ic.oid = i.indexrelid
  JOIN pg_class tc ON tc.oid = i.indrelid
  JOIN pg_namespace n ON n.oid = tc.relnamespace
  WHERE ic.relkind = 'i' AND i.indisvalid AND tc.relkind IN ('r', 'm')
    AND ic.relam = (SELECT oid FROM pg_am WHERE amname = 'btree')
    AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast'
    AND ic.relpages::float8 * current_setting('block_size')::float8 >= $1
)
SELECT name, tbl, real_size, bloat_size, na
FROM (
  SELECT name, tbl, bs * relpages AS real_size,
         CASE WHEN relpages > est_pages THEN (relpages - est_pages) * bs ELSE 0 END AS bloat_size,
         na
  FROM (
    SELECT name, tbl, bs, relpages, na,
           1 + ceil(greatest(reltuples, 0) / floor((bs - 24 - 16) * fillfactor / (100 * (4 + tuple_width)))) AS est_pages
    FROM (
      SELECT name, tbl, bs, relpages, reltuples, fillfactor, na,
             hdr + CASE WHEN hdr % 8 = 0 THEN 0 ELSE 8 - hdr % 8 END
             + data_width + CASE WHEN ceil(data_width)::int % 8 = 0 THEN 0 ELSE 8 - ceil(data_width)::int % 8 END
               AS tuple_width
      FROM (
        SELECT idx.name, idx.tbl, idx.relpages, idx.reltuples, idx.fillfactor,
               current_setting('block_size')::float8 AS bs,
               CASE WHEN max(coalesce(s.null_frac, 0)) = 0 THEN 8 ELSE 12 END AS hdr,
               sum((1 - coalesce(s.null_frac, 0)) * coalesce(s.avg_width, 1024))::float8 AS data_width,
               CASE WHEN NOT bool_and(coalesce(CASE WHEN ta.attnum IS NOT NULL
                                                    THEN has_column_privilege(idx.indrelid, ta.attnum, 'SELECT')
                                                    ELSE has_table_privilege(idx.indrelid, 'SELECT') END, false))
                      THEN 'privilege'
                    WHEN idx.reltuples < 0 OR (idx.reltuples > 0 AND count(s.attname) = 0)
                      THEN 'never_analyzed'
                    WHEN idx.reltuples > 0 AND count(s.attname) < idx.natts
                      THEN 'columns_not_analyzed'
                    WHEN bool_or(coalesce(ta.atttypid, ia.atttypid) = 'pg_catalog.name'::regtype)
                      THEN 'name_column'
               END AS na
        FROM idx
        CROSS JOIN LATERAL generate_series(1, idx.natts) AS k(pos)
        LEFT JOIN pg_attribute ta ON idx.indkey[k.pos - 1] <> 0
                                 AND ta.attrelid = idx.indrelid AND ta.attnum = idx.indkey[k.pos - 1]
        LEFT JOIN pg_attribute ia ON ia.attrelid = idx.idxoid AND ia.attnum = k.pos
        LEFT JOIN pg_stats s ON s.schemaname = idx.nspname AND NOT s.inherited
                            AND ((ta.attname IS NOT NULL AND s.tablename = idx.tblname AND s.attname = ta.attname)
                              OR (ta.attname IS NULL AND s.tablename = idx.idxname AND s.attname = ia.attname))
        GROUP BY idx.idxoid, idx.name, idx.tbl, idx.relpages, idx.reltuples, idx.fillfactor, idx.natts
      ) s1
    ) s2
  ) s3
) s4
ORDER BY bloat_size DESC"#;

/// Expensive: exact duplicate indexes (same table, access method, columns, operator
/// classes, collations, per-column options (ASC/DESC, NULLS FIRST/LAST), NULLS NOT
/// DISTINCT (15+), expressions and predicate). The first of each group is the one to
/// keep (backs a constraint, or is unique, or is the largest); the others are redundant.
/// Expression and predicate trees are compared without their `:location` fields, which
/// only record where in the CREATE statement the text stood. `$nnd`: the
/// `indnullsnotdistinct` column on 15+, `false` before (see [`duplicate_indexes`]).
macro_rules! duplicate_indexes {
    ($nnd:literal) => {
        concat!(
            r#"/* dbwarden */ SELECT
  format('%I.%I', n.nspname, t.relname) AS tbl,
  array_agg(format('%I.%I', n.nspname, ic.relname)
            ORDER BY (i.indisprimary OR i.indisunique OR k.oid IS NOT NULL) DESC, ic.relpages DESC, ic.oid) AS names,
  array_agg(ic.relpages::float8 * current_setting('block_size')::float8
            ORDER BY (i.indisprimary OR i.indisunique OR k.oid IS NOT NULL) DESC, ic.relpages DESC, ic.oid) AS sizes
FROM pg_index i
JOIN pg_class ic ON ic.oid = i.indexrelid
JOIN pg_class t ON t.oid = i.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
LEFT JOIN pg_constraint k ON k.conindid = i.indexrelid
WHERE i.indisvalid
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast'
GROUP BY n.nspname, t.relname, i.indrelid, ic.relam, i.indkey::text, i.indclass::text,
         i.indcollation::text, i.indoption::text, "#,
            $nnd,
            r#",
         regexp_replace(coalesce(i.indexprs::text, ''), ':location -?[0-9]+', '', 'g'),
         regexp_replace(coalesce(i.indpred::text, ''), ':location -?[0-9]+', '', 'g')
HAVING count(*) > 1"#
        )
    };
}

/// The duplicate-index analysis for PostgreSQL 15 and later (`NULLS NOT DISTINCT`).
pub const DUPLICATE_INDEXES: &str = duplicate_indexes!("i.indnullsnotdistinct");
/// The same before 15, where every unique index treats NULLs as distinct.
pub const DUPLICATE_INDEXES_14: &str = duplicate_indexes!("false");

/// The duplicate-index text for a server's `server_version_num`.
pub fn duplicate_indexes(version_num: i32) -> &'static str {
    if version_num >= 150_000 {
        DUPLICATE_INDEXES
    } else {
        DUPLICATE_INDEXES_14
    }
}

/// Cancels a run's statements still running (run from a fresh connection).
/// `$1` = pids, `$2` = their backend_start as text (so a reused pid is never hit; NULL
/// when unknown, then only a dbwarden backend is cancelled).
pub const CANCEL: &str = r#"/* dbwarden */ SELECT count(*) FILTER (WHERE pg_cancel_backend(a.pid))::int8
FROM pg_stat_activity a
JOIN unnest($1::int4[], $2::text[]) AS m(pid, started)
  ON a.pid = m.pid
 AND (a.backend_start::text = m.started OR (m.started IS NULL AND a.application_name = 'dbwarden'))
WHERE a.state = 'active' AND a.pid <> pg_backend_pid()"#;

/// Maintenance: the settings a plan needs, and whether this is a hot standby.
pub const MAINTENANCE_SETTINGS: &str = r#"/* dbwarden */ SELECT
  pg_is_in_recovery() AS in_recovery,
  current_setting('autovacuum_vacuum_threshold')::float8 AS vacuum_threshold,
  current_setting('autovacuum_vacuum_scale_factor')::float8 AS vacuum_scale,
  current_setting('autovacuum_analyze_threshold')::float8 AS analyze_threshold,
  current_setting('autovacuum_analyze_scale_factor')::float8 AS analyze_scale,
  current_setting('autovacuum_freeze_max_age')::float8 AS freeze_max_age"#;

/// Maintenance: the columns of [`TABLES`] plus the unquoted name for people and patterns
/// and the freeze age. Like every probe, no relation locks (relpages, not
/// pg_relation_size()), so one locked table cannot break the plan for the others.
pub const MAINTENANCE_TABLES: &str = r#"/* dbwarden */ SELECT
  s.relid::int8 AS relid,
  format('%I.%I', s.schemaname, s.relname) AS name,
  s.schemaname || '.' || s.relname AS display,
  s.n_live_tup::float8 AS live,
  s.n_dead_tup::float8 AS dead,
  s.n_mod_since_analyze::float8 AS mod_since_analyze,
  s.n_tup_ins::float8 AS ins,
  s.n_tup_upd::float8 AS upd,
  s.n_tup_del::float8 AS del,
  coalesce(s.seq_scan, 0)::float8 AS seq_scan,
  s.idx_scan::float8 AS idx_scan,
  coalesce(s.seq_tup_read, 0)::float8 AS seq_tup_read,
  c.relpages::float8 * current_setting('block_size')::float8 AS size,
  extract(epoch FROM greatest(s.last_vacuum, s.last_autovacuum))::float8 AS last_vacuum,
  extract(epoch FROM greatest(s.last_analyze, s.last_autoanalyze))::float8 AS last_analyze,
  array_to_string(c.reloptions, ',') AS reloptions,
  c.reltuples::float8 AS reltuples,
  age(c.relfrozenxid)::float8 AS freeze_age
FROM pg_stat_user_tables s
JOIN pg_class c ON c.oid = s.relid
WHERE c.relkind IN ('r', 'm', 't')"#;

/// Maintenance: the oldest holder of the xmin horizon of this database's tables (a session
/// of this database with a snapshot or open write transaction, an inactive replication
/// slot, a prepared transaction of this database): VACUUM cannot remove rows that died
/// after it. `held_secs` NULL: no end in sight (an inactive slot).
pub const HORIZON_HOLDER: &str = r#"/* dbwarden */ SELECT who, held_secs FROM (
  SELECT format('session pid %s (user %s, application %s, %s since %s)', pid,
                coalesce(usename, '?'), coalesce(nullif(application_name, ''), '-'),
                coalesce(state, '?'), coalesce(xact_start, query_start)::timestamptz(0)) AS who,
         greatest(age(backend_xmin), age(backend_xid))::float8 AS xmin_age,
         extract(epoch FROM now() - coalesce(xact_start, query_start, backend_start))::float8 AS held_secs
    FROM pg_stat_activity
   WHERE (backend_xmin IS NOT NULL OR backend_xid IS NOT NULL)
     AND pid <> pg_backend_pid()
     AND datname = current_database()
     AND backend_type IS DISTINCT FROM 'autovacuum worker'
  UNION ALL
  SELECT format('inactive replication slot %s', quote_literal(slot_name)),
         age(xmin)::float8, NULL
    FROM pg_replication_slots WHERE xmin IS NOT NULL AND NOT active
  UNION ALL
  SELECT format('prepared transaction %s (owner %s, prepared %s)', quote_literal(gid), owner, prepared::timestamptz(0)),
         age(transaction)::float8, extract(epoch FROM now() - prepared)::float8
    FROM pg_prepared_xacts WHERE database = current_database()
) h ORDER BY xmin_age DESC NULLS LAST LIMIT 1"#;

/// Maintenance: one database-wide advisory lock key ("dbwdmnt1"), so two dbwarden
/// processes never maintain one database at once (advisory locks are per database).
pub const MAINTENANCE_LOCK: &str =
    "/* dbwarden */ SELECT pg_try_advisory_lock(7233475224726828081)";
pub const MAINTENANCE_UNLOCK: &str =
    "/* dbwarden */ SELECT pg_advisory_unlock(7233475224726828081)";
/// Maintenance: the server-wide lock (at most one run per server), taken in database
/// `postgres` because advisory locks are scoped to the database they are taken in.
pub const MAINTENANCE_SERVER_LOCK: &str =
    "/* dbwarden */ SELECT pg_try_advisory_lock(7233475224726828082)";
/// The database where every dbwarden takes the server-wide lock.
pub const MAINTENANCE_SERVER_LOCK_DB: &str = "postgres";

/// Maintenance: the session's limits (values bound, never pasted): statement_timeout off
/// (the run's deadline cancels instead), lock_timeout, vacuum_cost_delay.
pub const MAINTENANCE_SESSION: &str = "/* dbwarden */ SELECT \
     set_config('statement_timeout', '0', false), \
     set_config('lock_timeout', $1, false), \
     set_config('vacuum_cost_delay', $2, false)";

/// Maintenance: a table's numbers after a step, looked up by its quoted name without a
/// lock (to_regclass takes none).
pub const MAINTENANCE_AFTER: &str = r#"/* dbwarden */ SELECT s.n_dead_tup::float8,
  age(c.relfrozenxid)::float8,
  c.relpages::float8 * current_setting('block_size')::float8
FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
WHERE s.relid = to_regclass($1)"#;

/// Maintenance load guard: other client sessions of the server running a statement.
pub const ACTIVE_SESSIONS: &str = "/* dbwarden */ SELECT count(*)::int8 FROM pg_stat_activity \
     WHERE state = 'active' AND backend_type = 'client backend' AND pid <> pg_backend_pid()";

/// Maintenance load guard: the standby with the most replay lag (seconds), as the
/// replication check reads it from pg_stat_replication (a NULL lag is a standby with
/// nothing to replay).
pub const MAINTENANCE_REPLICATION_LAG: &str = "/* dbwarden */ SELECT \
     coalesce(nullif(application_name, ''), host(client_addr), pid::text), \
     coalesce(extract(epoch FROM replay_lag)::float8, 0) \
     FROM pg_stat_replication ORDER BY replay_lag DESC NULLS LAST LIMIT 1";

/// VACUUM FULL's before/after size (takes ACCESS SHARE: run under lock_timeout).
pub const MAINTENANCE_TABLE_SIZE: &str =
    "/* dbwarden */ SELECT pg_table_size(to_regclass($1))::float8";

/// VACUUM FULL watcher: whether backend $1 still runs a statement, and how many sessions
/// wait for a lock it holds.
pub const MAINTENANCE_BLOCKING: &str = "/* dbwarden */ SELECT \
     EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND state = 'active'), \
     (SELECT count(*)::int8 FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid)))";

/// Maintenance progress of a backend's VACUUM (CLI progress line).
pub const VACUUM_PROGRESS: &str = "/* dbwarden */ SELECT phase, heap_blks_scanned::float8, \
     heap_blks_total::float8 FROM pg_stat_progress_vacuum WHERE pid = $1";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_indexes_compare_nulls_not_distinct_only_where_it_exists() {
        assert!(duplicate_indexes(150_000).contains("i.indnullsnotdistinct"));
        assert!(duplicate_indexes(170_002).contains("i.indnullsnotdistinct"));
        assert!(!duplicate_indexes(140_011).contains("indnullsnotdistinct"));
        assert!(!duplicate_indexes(130_000).contains("indnullsnotdistinct"));
        for v in [130_000, 150_000] {
            assert!(duplicate_indexes(v).contains("i.indoption::text"));
        }
    }

    /// Each server version gets the activity text with the slot columns it has (a swapped
    /// arm would send `inactive_since` to a 16 and fail every round there).
    #[test]
    fn activity_text_follows_the_version() {
        for v in [130_000, 140_011, 150_004] {
            let t = activity_for(v, true);
            assert!(t.contains("NULL::bool AS conflicting"), "{v}");
            assert!(!t.contains("inactive_since"), "{v}");
        }
        let t16 = activity_for(160_002, true);
        assert!(t16.contains("conflicting, NULL::text AS invalidation_reason"));
        assert!(!t16.contains("inactive_since"));
        for v in [170_000, 180_000] {
            let t = activity_for(v, true);
            assert!(t.contains("invalidation_reason::text") && t.contains("inactive_since"));
        }
        // Without the server-level sections the slot columns are never read: one text.
        for v in [130_000, 160_000, 170_000] {
            assert_eq!(activity_for(v, false), ACTIVITY_DATABASE);
            assert!(ACTIVITY_DATABASE.contains("CASE WHEN false THEN"));
        }
    }
}
