//! History store numbers. Run with `cargo bench --bench history_write`.
//!
//! 1. Write throughput into a SQLite store through the buffer and the batching writer (the
//!    daemon's only write path), every value changing so each one is a sample (store on
//!    change writes nothing for an unchanged value): samples per second of table-statistics
//!    rounds (205 tables × 12 series each) and of health rounds (25 checks: a sample, a
//!    check-period update and a latest-result upsert each).
//! 2. The buffer's memory per buffered result: the estimate the byte bound uses, for a
//!    typical check result and a typical health round (25 check results, each with its
//!    metric sample, as the health job records them), and the resident memory actually
//!    added by 100,000 buffered results (store unreachable, so nothing drains).
//! 3. Push throughput: how fast producers hand results over (they never wait).

use std::time::Instant;

use chrono::Utc;
use dbwarden::config::SecretUrl;
use dbwarden::engine::TableStat;
use dbwarden::health::{CheckResult, Scope, Status, Unit};
use dbwarden::store::{BufferLimits, CheckSource, HistoryTable, Record, Store, new_run_id};

const TABLES: usize = 205;
const TABLE_ROUNDS: usize = 40;
const CHECK_ROUNDS: usize = 80;
const BUFFER_N: usize = 100_000;
const PUSH_N: usize = 1_000_000;

/// Check names and messages of a PostgreSQL health round, as dbwarden writes them.
const ROUND: [(&str, &str); 25] = [
    (
        "connectivity",
        "1.2 ms round-trip latency (warning ≥ 250 ms, critical ≥ 1000 ms)",
    ),
    (
        "connections",
        "12 of 100 connections used (12%; warning ≥ 80%, critical ≥ 95%)",
    ),
    ("long_query", "no query running longer than 5m"),
    (
        "idle_in_transaction",
        "no session idle in transaction longer than 5m",
    ),
    ("blocked_sessions", "no session waiting on a lock"),
    (
        "cache_hit",
        "99.8% cache hit ratio since the previous round (warning < 90%)",
    ),
    (
        "wraparound",
        "oldest transaction ID age 210,455,112 (10%; warning ≥ 50%)",
    ),
    (
        "dead_tuples",
        "table public.orders: 4.2% dead tuples (warning ≥ 20%, critical ≥ 40%)",
    ),
    (
        "stale_statistics",
        "every table analyzed within 1d of its last change",
    ),
    ("replication_lag", "not a standby; no replica connected"),
    ("replication_slots", "no inactive replication slot"),
    ("database_size", "database is 1.4 GiB"),
    ("database_growth", "grew 12 MiB in the last 24h"),
    ("invalid_indexes", "no invalid index"),
    (
        "unused_indexes",
        "2 indexes never scanned since statistics reset",
    ),
    ("duplicate_indexes", "no duplicate index"),
    (
        "missing_index",
        "table public.events: 98% sequential reads over 1.2M rows",
    ),
    ("deadlocks", "0 deadlocks since the previous round"),
    (
        "temp_files",
        "0 B of temporary files since the previous round",
    ),
    ("bloat", "table public.orders: 8% estimated bloat"),
    ("disk_space", "data directory 41% full"),
    ("checkpoints", "3 requested checkpoints in the last hour"),
    ("prepared_xacts", "no prepared transaction older than 5m"),
    ("xmin_horizon", "xmin horizon held back 2s"),
    ("sequences", "no sequence above 50% of its range"),
];

fn result(i: usize) -> CheckResult {
    let (name, message) = ROUND[i % ROUND.len()];
    CheckResult {
        check: name.to_string(),
        status: Status::Ok,
        value: Some(i as f64),
        unit: Unit::Milliseconds,
        warning: Some(250.0),
        critical: Some(1000.0),
        message: message.to_string(),
        subject: None,
        scope: Scope::Database,
    }
}

/// A record holding one check result (the buffer's unit of memory).
fn check(target: &str, run_id: &str, i: usize) -> Record {
    Record::Checks {
        ts: Utc::now(),
        target: target.to_string(),
        run_id: Some(run_id.to_string()),
        source: CheckSource::Health,
        results: vec![result(i)],
    }
}

/// Round `n` of a target: 25 checks, every value new.
fn round(target: &str, run_id: &str, n: usize) -> Record {
    Record::Checks {
        ts: at(n),
        target: target.to_string(),
        run_id: Some(run_id.to_string()),
        source: CheckSource::Health,
        results: (0..25)
            .map(|i| {
                let mut r = result(i);
                r.value = Some((n * 25 + i) as f64);
                r
            })
            .collect(),
    }
}

/// Table statistics round `n` of a target: 205 tables, every field new.
fn tables(target: &str, n: usize) -> Record {
    let v = |k: usize| Some((n * 16 + k) as f64);
    Record::Tables {
        ts: at(n),
        target: target.to_string(),
        stats: (0..TABLES)
            .map(|t| TableStat {
                table: format!("public.table_{t:03}"),
                rows: v(1),
                dead_rows: v(2),
                size_bytes: v(3),
                inserts_delta: v(4),
                updates_delta: v(5),
                deletes_delta: v(6),
                seq_scans: v(7),
                idx_scans: v(8),
                last_vacuum: Some((n * 16 + 9) as i64),
                last_analyze: Some((n * 16 + 10) as i64),
                free_bytes: v(11),
                last_modified: Some((n * 16 + 12) as i64),
            })
            .collect(),
    }
}

fn at(n: usize) -> chrono::DateTime<Utc> {
    chrono::DateTime::from_timestamp(1_800_000_000 + 30 * n as i64, 0).unwrap_or_default()
}

/// Resident memory of this process, from /proc/self/statm.
fn rss_bytes() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<usize>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn fail(what: &str, e: impl std::fmt::Display) -> ! {
    eprintln!("{what}: {e}");
    std::process::exit(1);
}

/// A store that never answers (port 1 refuses), so everything pushed stays buffered.
async fn unreachable(limits: BufferLimits) -> Store {
    let url = SecretUrl::new("postgres://bench@127.0.0.1:1/none");
    Store::start(&url, None, limits)
        .await
        .unwrap_or_else(|e| fail("start", e))
}

async fn write_throughput() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| fail("tempdir", e));
    let url = SecretUrl::new(format!("sqlite://{}/history.db", dir.path().display()));
    // Unbounded for this measurement: a burst outruns the writer, and the default bound
    // (100,000 records) would drop part of it.
    let unbounded = BufferLimits {
        records: usize::MAX,
        bytes: usize::MAX,
    };
    let store = Store::start(&url, None, unbounded)
        .await
        .unwrap_or_else(|e| fail("start", e));
    let run_id = new_run_id();
    // Table statistics: 10 targets × 40 rounds × 205 tables × 12 series.
    let records: Vec<Record> = (0..TABLE_ROUNDS)
        .flat_map(|n| (0..10).map(move |t| tables(&format!("target-{t}"), n)))
        .collect();
    let samples = (records.len() * TABLES * 12) as f64;
    let started = Instant::now();
    for r in records {
        store.push(r);
    }
    store.flush().await.unwrap_or_else(|e| fail("flush", e));
    let secs = started.elapsed().as_secs_f64();
    let stored = store.count(HistoryTable::Samples).await.unwrap_or(0);
    println!(
        "history_write: table statistics: {samples} samples in {secs:.3}s = {:.0} samples/s \
         (samples stored: {stored}; dropped: {})",
        samples / secs,
        store.health().dropped.total()
    );
    // Health rounds: 100 targets × 80 rounds × 25 checks.
    let records: Vec<Record> = (0..CHECK_ROUNDS)
        .flat_map(|n| (0..100).map(move |t| (t, n)))
        .map(|(t, n)| round(&format!("target-{t}"), &run_id, n))
        .collect();
    let values = (records.len() * 25) as f64;
    let started = Instant::now();
    for r in records {
        store.push(r);
    }
    store.flush().await.unwrap_or_else(|e| fail("flush", e));
    let secs = started.elapsed().as_secs_f64();
    let h = store.health();
    println!(
        "history_write: health rounds: {values} check results (a sample, a period update and a \
         latest upsert each) in {secs:.3}s = {:.0} samples/s (samples stored in all: {}; dropped: {})",
        values / secs,
        store.count(HistoryTable::Samples).await.unwrap_or(0),
        h.dropped.total()
    );
    store.close(std::time::Duration::from_secs(5)).await;
}

async fn buffer_memory() {
    let run_id = new_run_id();
    let one = check("orders", &run_id, 0).approx_bytes();
    let one_round = round("orders", &run_id, 0).approx_bytes();
    let one_tables = tables("orders", 0).approx_bytes();
    println!(
        "buffer estimate: {one} B for a record of one check result (Record enum {} B + strings); \
         a round of 25 check results (one record) {one_round} B; a table-statistics round of \
         {TABLES} tables {one_tables} B",
        std::mem::size_of::<Record>(),
    );

    let store = unreachable(BufferLimits {
        records: usize::MAX,
        bytes: usize::MAX,
    })
    .await;
    let before = rss_bytes();
    for i in 0..BUFFER_N {
        store.push(check(&format!("target-{}", i % 100), &run_id, i));
    }
    let after = rss_bytes();
    let h = store.health();
    println!(
        "buffer measured: {BUFFER_N} check results buffered: estimate {} B/result, \
         resident memory +{} B/result ({:.1} MiB in all; the default bound of 100,000 \
         records / 64 MiB holds {} such results)",
        h.backlog_bytes / BUFFER_N,
        after.saturating_sub(before) / BUFFER_N,
        after.saturating_sub(before) as f64 / (1024.0 * 1024.0),
        (64 * 1024 * 1024 / (h.backlog_bytes / BUFFER_N)).min(100_000)
    );
    store.close(std::time::Duration::from_millis(100)).await;
}

async fn push_throughput() {
    // Bounded as by default: once full, every push also drops the oldest record.
    let store = unreachable(BufferLimits::default()).await;
    let run_id = new_run_id();
    let records: Vec<Record> = (0..PUSH_N).map(|i| check("orders", &run_id, i)).collect();
    let started = Instant::now();
    for r in records {
        store.push(r);
    }
    let secs = started.elapsed().as_secs_f64();
    let h = store.health();
    println!(
        "push: {PUSH_N} results in {secs:.3}s = {:.2} M pushes/s, {:.0} ns each \
         (store unreachable, buffer full after 100,000: {} dropped as overflow)",
        PUSH_N as f64 / secs / 1e6,
        secs * 1e9 / PUSH_N as f64,
        h.dropped.overflow
    );
    store.close(std::time::Duration::from_millis(100)).await;
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail("runtime", e));
    rt.block_on(async {
        // Memory first, while the allocator has no freed memory to reuse.
        buffer_memory().await;
        push_throughput().await;
        write_throughput().await;
    });
}
