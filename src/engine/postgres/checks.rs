//! The PostgreSQL check catalogue: names, units, directions and built-in thresholds.
//! Threshold choices follow common practice (check_postgres, pgwatch, the PostgreSQL docs);
//! every one can be overridden in `[thresholds]` or per target.

use crate::health::{CheckSpec, Direction, Unit};

const MIB: f64 = 1024.0 * 1024.0;
const GIB: f64 = 1024.0 * MIB;

// Check names, shared by the catalogue below and the probes.
pub const CONNECTIONS: &str = "connections";
pub const CONNECTION_LIMIT: &str = "connection_limit";
pub const LONG_QUERY: &str = "long_query";
pub const IDLE_IN_TRANSACTION: &str = "idle_in_transaction";
pub const BLOCKED_SESSIONS: &str = "blocked_sessions";
pub const CACHE_HIT: &str = "cache_hit";
pub const WRAPAROUND: &str = "wraparound";
pub const DEAD_TUPLES: &str = "dead_tuples";
pub const BLOAT: &str = "bloat";
pub const INDEX_BLOAT: &str = "index_bloat";
pub const STALE_STATS: &str = "stale_stats";
pub const REPLICATION_LAG: &str = "replication_lag";
pub const REPLICATION_SLOTS: &str = "replication_slots";
pub const DATABASE_SIZE: &str = "database_size";
pub const INVALID_INDEXES: &str = "invalid_indexes";
pub const UNUSED_INDEXES: &str = "unused_indexes";
pub const DUPLICATE_INDEXES: &str = "duplicate_indexes";
pub const SEQ_SCANS: &str = "seq_scans";
pub const DEADLOCKS: &str = "deadlocks";
pub const TEMP_FILES: &str = "temp_files";
pub const ARCHIVER: &str = "archiver";
pub const PREPARED_XACTS: &str = "prepared_xacts";
pub const XMIN_HORIZON: &str = "xmin_horizon";
pub const DISK_SPACE: &str = "disk_space";
pub const SETTINGS: &str = "settings";
pub const CHECKSUM_FAILURES: &str = "checksum_failures";
pub const LONG_TRANSACTION: &str = "long_transaction";
pub const REPLICATION_BEHIND: &str = "replication_behind";
pub const INACTIVE_SLOTS: &str = "inactive_slots";
pub const SEQUENCE_EXHAUSTION: &str = "sequence_exhaustion";
pub const WAL_VOLUME: &str = "wal_volume";
pub const CHECKPOINTS: &str = "checkpoints";

/// PostgreSQL checks (names, units, built-in thresholds). `connectivity` is shared and
/// lives in [`crate::engine::catalog::CONNECTIVITY`].
pub const CHECKS: &[CheckSpec] = &[
    CheckSpec {
        name: CONNECTIONS,
        label: "of usable connections in use",
        unit: Unit::Percent,
        direction: Direction::HigherIsWorse,
        warning: Some(80.0),
        critical: Some(95.0),
        floor: None,
        description: "client connections vs max_connections minus superuser_reserved_connections (and reserved_connections on 16+); server-wide (pg_stat_activity); cheap",
    },
    CheckSpec {
        name: CONNECTION_LIMIT,
        label: "of the connection limit in use",
        unit: Unit::Percent,
        direction: Direction::HigherIsWorse,
        warning: Some(80.0),
        critical: Some(95.0),
        floor: None,
        description: "connections vs the database's and the monitoring role's CONNECTION LIMIT, when one is set (pg_database.datconnlimit, pg_roles.rolconnlimit); cheap",
    },
    CheckSpec {
        name: LONG_QUERY,
        label: "running",
        unit: Unit::Seconds,
        direction: Direction::HigherIsWorse,
        warning: Some(300.0),
        critical: Some(1800.0),
        floor: None,
        description: "active statements of this database running longer than the threshold, with pid, user and the query (literals replaced by ?) (pg_stat_activity); needs pg_read_all_stats (pg_monitor); cheap",
    },
    CheckSpec {
        name: IDLE_IN_TRANSACTION,
        label: "idle in transaction",
        unit: Unit::Seconds,
        direction: Direction::HigherIsWorse,
        warning: Some(60.0),
        critical: Some(600.0),
        floor: None,
        description: "sessions of this database idle inside an open transaction (they hold locks and the xmin horizon) (pg_stat_activity); needs pg_read_all_stats (pg_monitor); cheap",
    },
    CheckSpec {
        name: BLOCKED_SESSIONS,
        label: "waiting for a lock",
        unit: Unit::Seconds,
        direction: Direction::HigherIsWorse,
        warning: Some(30.0),
        critical: Some(300.0),
        floor: None,
        description: "how long sessions of this database have waited on a lock (pg_locks.waitstart; on 13, which records no wait start, the statement's age), naming the root blocker (pg_blocking_pids followed to the session that does not wait itself); needs pg_read_all_stats (pg_monitor); cheap",
    },
    CheckSpec {
        name: CACHE_HIT,
        label: "cache hit ratio",
        unit: Unit::Percent,
        direction: Direction::LowerIsWorse,
        warning: Some(90.0),
        critical: Some(80.0),
        floor: Some(10_000.0),
        description: "shared-buffer hits / block accesses since the previous round (pg_stat_database deltas); floor = block accesses in the interval, so an idle interval does not alarm; cheap",
    },
    CheckSpec {
        name: WRAPAROUND,
        label: "of the transaction ID wraparound horizon",
        unit: Unit::Percent,
        direction: Direction::HigherIsWorse,
        warning: Some(50.0),
        critical: Some(75.0),
        floor: None,
        description: "age(datfrozenxid) and mxid_age(datminmxid) of every database as a share of the 2^31 horizon, with this database's oldest tables; server-wide (pg_database, pg_class); cheap",
    },
    CheckSpec {
        name: DEAD_TUPLES,
        label: "dead tuples",
        unit: Unit::Percent,
        direction: Direction::HigherIsWorse,
        warning: Some(20.0),
        critical: Some(40.0),
        floor: Some(10_000.0),
        description: "n_dead_tup / (n_live_tup + n_dead_tup) of the tables whose dead rows are past their own autovacuum trigger (autovacuum_vacuum_threshold + autovacuum_vacuum_scale_factor × reltuples, per-table storage parameters first), whether or not autovacuum is on; floor in rows (min_rows) (pg_stat_user_tables, pg_class); cheap",
    },
    CheckSpec {
        name: BLOAT,
        label: "estimated bloat",
        unit: Unit::Percent,
        direction: Direction::HigherIsWorse,
        warning: Some(50.0),
        critical: Some(75.0),
        floor: Some(100.0 * MIB),
        description: "space beyond what the rows need, estimated from pg_class and pg_stats (the classic estimate; only columns the role may read have statistics; a table without statistics (never analyzed, a column added since) is not estimated: run ANALYZE); floor in bytes (min_size); expensive: runs every 30 min, the last result is reused in between",
    },
    CheckSpec {
        name: INDEX_BLOAT,
        label: "estimated index bloat",
        unit: Unit::Percent,
        direction: Direction::HigherIsWorse,
        warning: Some(50.0),
        critical: Some(75.0),
        floor: Some(100.0 * MIB),
        description: "btree index space beyond what its entries need at the index's fillfactor, estimated from pg_class and pg_stats (ioguix's btree estimate; an index whose table lacks statistics is not estimated: run ANALYZE); floor in bytes (min_size); expensive: runs every 30 min, the last result is reused in between",
    },
    CheckSpec {
        name: STALE_STATS,
        label: "past the autoanalyze threshold",
        unit: Unit::Seconds,
        direction: Direction::HigherIsWorse,
        warning: Some(86_400.0),
        critical: Some(7.0 * 86_400.0),
        floor: Some(10_000.0),
        description: "how long tables have been past their autoanalyze threshold without an analyze (pg_stat_user_tables.n_mod_since_analyze vs autovacuum_analyze_threshold + scale factor × reltuples); PostgreSQL does not record the crossing, so the time counts from the first round that saw it (a restart starts again); floor in rows; cheap",
    },
    CheckSpec {
        name: REPLICATION_LAG,
        label: "replication lag",
        unit: Unit::Seconds,
        direction: Direction::HigherIsWorse,
        warning: Some(60.0),
        critical: Some(300.0),
        floor: None,
        description: "primary: per replica write/flush/replay lag (pg_stat_replication); standby: replay delay, 0 when everything received is replayed (no false alarm on an idle primary); server-wide; cheap",
    },
    CheckSpec {
        name: REPLICATION_SLOTS,
        label: "of WAL retained",
        unit: Unit::Bytes,
        direction: Direction::HigherIsWorse,
        warning: Some(GIB),
        critical: Some(10.0 * GIB),
        floor: None,
        description: "WAL kept for each replication slot (pg_replication_slots, pg_wal_lsn_diff); a slot whose WAL was removed (wal_status = lost) is CRITICAL; server-wide; cheap",
    },
    CheckSpec {
        name: DATABASE_SIZE,
        label: "database size",
        unit: Unit::Bytes,
        direction: Direction::HigherIsWorse,
        warning: None,
        critical: None,
        floor: None,
        description: "pg_database_size(current_database()); no thresholds by default, recorded for growth trends; one stat() per file of the database, so it runs every 5 min and the last value is reused in between",
    },
    CheckSpec {
        name: INVALID_INDEXES,
        label: "invalid index(es)",
        unit: Unit::Count,
        direction: Direction::HigherIsWorse,
        warning: Some(1.0),
        critical: None,
        floor: None,
        description: "indexes left invalid by a failed CREATE/REINDEX CONCURRENTLY (pg_index.indisvalid), builds in progress excluded; a partitioned index not yet attached on every partition (CREATE INDEX ... ON ONLY) is not counted, its missing partitions are named; cheap",
    },
    CheckSpec {
        name: UNUSED_INDEXES,
        label: "never scanned",
        unit: Unit::Bytes,
        direction: Direction::HigherIsWorse,
        warning: Some(100.0 * MIB),
        critical: None,
        floor: None,
        description: "indexes with idx_scan = 0 since the statistics were reset, not backing a constraint, by size (pg_stat_user_indexes, pg_class.relpages); scans on standbys are not counted; cheap",
    },
    CheckSpec {
        name: DUPLICATE_INDEXES,
        label: "duplicate index",
        unit: Unit::Bytes,
        direction: Direction::HigherIsWorse,
        warning: Some(MIB),
        critical: None,
        floor: None,
        description: "indexes with the same table, method, columns, operator classes, collations, sort options (indoption), NULLS NOT DISTINCT (15+), expressions and predicate as another; value = size of the redundant one (pg_index); expensive: runs every 30 min",
    },
    CheckSpec {
        name: SEQ_SCANS,
        label: "of scans sequential",
        unit: Unit::Percent,
        direction: Direction::HigherIsWorse,
        warning: Some(90.0),
        critical: None,
        floor: Some(100_000.0),
        description: "share of sequential scans on large tables over the last hour (seq_scan/idx_scan increases between snapshots kept by the engine; baseline pending on the first round), a missing-index hint that clears within an hour of the index being added (pg_stat_user_tables); floor in rows; tables with fewer than 100 scans in the window are not judged; cheap",
    },
    CheckSpec {
        name: DEADLOCKS,
        label: "deadlock(s) since the previous round",
        unit: Unit::Count,
        direction: Direction::HigherIsWorse,
        warning: Some(1.0),
        critical: Some(10.0),
        floor: None,
        description: "pg_stat_database.deadlocks delta between rounds (baseline pending on the first); cheap",
    },
    CheckSpec {
        name: TEMP_FILES,
        label: "written to temp files since the previous round",
        unit: Unit::Bytes,
        direction: Direction::HigherIsWorse,
        warning: Some(GIB),
        critical: Some(10.0 * GIB),
        floor: None,
        description: "pg_stat_database.temp_bytes delta between rounds (sorts and hashes spilling past work_mem); cheap",
    },
    CheckSpec {
        name: ARCHIVER,
        label: "WAL segment(s) waiting to be archived",
        unit: Unit::Count,
        direction: Direction::HigherIsWorse,
        warning: Some(10.0),
        critical: Some(100.0),
        floor: None,
        description: "WAL segments not yet archived (pg_ls_archive_statusdir, needs pg_monitor); an archive_command failing right now is at least WARNING (pg_stat_archiver); server-wide; cheap",
    },
    CheckSpec {
        name: PREPARED_XACTS,
        label: "since prepared",
        unit: Unit::Seconds,
        direction: Direction::HigherIsWorse,
        warning: Some(300.0),
        critical: Some(3600.0),
        floor: None,
        description: "prepared (two-phase) transactions left open; they hold locks and the xmin horizon (pg_prepared_xacts); server-wide; cheap",
    },
    CheckSpec {
        name: XMIN_HORIZON,
        label: "transactions behind (xmin horizon)",
        unit: Unit::Count,
        direction: Direction::HigherIsWorse,
        warning: Some(10_000_000.0),
        critical: Some(100_000_000.0),
        floor: None,
        description: "age in transaction IDs of what holds back the xmin horizon, i.e. why VACUUM cannot remove dead rows: the oldest transaction, a replication slot, a prepared transaction or a standby's feedback; server-wide; cheap",
    },
    CheckSpec {
        name: DISK_SPACE,
        label: "of the disk used",
        unit: Unit::Percent,
        direction: Direction::HigherIsWorse,
        warning: Some(85.0),
        critical: Some(95.0),
        floor: None,
        description: "filesystem of the data directory (statvfs), only when dbwarden runs on the database host (loopback or Unix-socket connection) and may read data_directory (pg_read_all_settings); server-wide; cheap",
    },
    CheckSpec {
        name: SETTINGS,
        label: "setting(s) that blind or endanger",
        unit: Unit::Count,
        direction: Direction::HigherIsWorse,
        warning: Some(1.0),
        critical: None,
        floor: None,
        description: "track_counts off (statistics-based checks then read OK: CRITICAL), fsync or full_page_writes off (CRITICAL), autovacuum off (at the warning level: WARNING by default; critical = 1 makes it CRITICAL, warning = 2 accepts it); the value is how many; cheap",
    },
    CheckSpec {
        name: CHECKSUM_FAILURES,
        label: "checksum failure(s) since the previous round",
        unit: Unit::Count,
        direction: Direction::HigherIsWorse,
        warning: Some(1.0),
        critical: Some(1.0),
        floor: None,
        description: "pg_stat_database.checksum_failures delta of this database (baseline pending on the first round); data checksums off is OK with a note; cheap",
    },
    CheckSpec {
        name: LONG_TRANSACTION,
        label: "in one transaction",
        unit: Unit::Seconds,
        direction: Direction::HigherIsWorse,
        warning: Some(900.0),
        critical: Some(3600.0),
        floor: None,
        description: "sessions of this database by the age of their open transaction (xact_start), active or idle in it, with pid, user and the last query (literals replaced by ?) (pg_stat_activity); needs pg_read_all_stats (pg_monitor); cheap",
    },
    CheckSpec {
        name: REPLICATION_BEHIND,
        label: "of WAL not yet replayed",
        unit: Unit::Bytes,
        direction: Direction::HigherIsWorse,
        warning: Some(GIB),
        critical: Some(10.0 * GIB),
        floor: None,
        description: "primary: per replica, WAL written here but not yet replayed there (pg_stat_replication.replay_lsn); standby: received but not replayed; server-wide; cheap",
    },
    CheckSpec {
        name: INACTIVE_SLOTS,
        label: "inactive",
        unit: Unit::Seconds,
        direction: Direction::HigherIsWorse,
        warning: Some(3600.0),
        critical: Some(86_400.0),
        floor: None,
        description: "replication slots with no consumer connected, by how long (pg_replication_slots.inactive_since on 17; before, since dbwarden first saw the slot inactive, so a restart of dbwarden restarts the clock); server-wide; cheap",
    },
    CheckSpec {
        name: SEQUENCE_EXHAUSTION,
        label: "of the sequence's range used",
        unit: Unit::Percent,
        direction: Direction::HigherIsWorse,
        warning: Some(85.0),
        critical: Some(95.0),
        floor: None,
        description: "every sequence of this database (serial and identity included, owned or not) by the share of its range used, the owning column's type included, named with its owning column (pg_sequences, pg_depend); cycling sequences are not judged; needs SELECT or USAGE on the sequences; reading a sequence's state waits (up to lock_timeout) for a sequence locked by ALTER SEQUENCE in an open transaction, which makes only this check UNKNOWN until its next run; runs every 5 min",
    },
    CheckSpec {
        name: WAL_VOLUME,
        label: "of max_wal_size + wal_keep_size in pg_wal",
        unit: Unit::Percent,
        direction: Direction::HigherIsWorse,
        warning: Some(150.0),
        critical: Some(300.0),
        floor: None,
        description: "size of pg_wal (pg_ls_waldir, needs pg_monitor) against what a healthy server keeps; more means a slot, a failing archiver or a lagging standby retains WAL; the message gives the WAL generation rate; server-wide; runs every 5 min",
    },
    CheckSpec {
        name: CHECKPOINTS,
        label: "of checkpoints requested",
        unit: Unit::Percent,
        direction: Direction::HigherIsWorse,
        warning: Some(50.0),
        critical: None,
        floor: Some(5.0),
        description: "share of requested (WAL volume, CHECKPOINT) checkpoints over the last hour, from pg_stat_checkpointer (17+) or pg_stat_bgwriter; floor = checkpoints in the window; server-wide; sampled every 5 min",
    },
];
