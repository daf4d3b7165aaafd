//! History store numbers. Run with `cargo bench --bench history_write`.
//!
//! 1. Write throughput: check results per second into a SQLite store through the buffer
//!    and the batching writer (the daemon's only write path).
//! 2. The buffer's memory per buffered result: the estimate the byte bound uses, for a
//!    typical check result and a typical health round (25 check results, each with its
//!    metric sample, as the health job records them), and the resident memory actually
//!    added by 100,000 buffered results (store unreachable, so nothing drains).
//! 3. Push throughput: how fast producers hand results over (they never wait).

use std::time::Instant;

use chrono::Utc;
use dbwarden::config::SecretUrl;
use dbwarden::health::{CheckResult, Scope, Status, Unit};
use dbwarden::store::{BufferLimits, HistoryTable, Record, Store, new_run_id};

const WRITE_N: usize = 200_000;
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

fn check(target: &str, run_id: &str, i: usize) -> Record {
    let (name, message) = ROUND[i % ROUND.len()];
    Record::Check {
        ts: Utc::now(),
        target: target.to_string(),
        run_id: Some(run_id.to_string()),
        result: CheckResult {
            check: name.to_string(),
            status: Status::Ok,
            value: Some(i as f64),
            unit: Unit::Milliseconds,
            warning: Some(250.0),
            critical: Some(1000.0),
            message: message.to_string(),
            subject: None,
            scope: Scope::Database,
        },
    }
}

fn metric(target: &str, i: usize) -> Record {
    Record::Metric {
        ts: Utc::now(),
        target: target.to_string(),
        metric: ROUND[i % ROUND.len()].0.to_string(),
        value: i as f64,
    }
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
    // Unbounded for this measurement: a burst of 200,000 outruns the writer, and the
    // default bound (100,000 records) would drop part of it.
    let unbounded = BufferLimits {
        records: usize::MAX,
        bytes: usize::MAX,
    };
    let store = Store::start(&url, None, unbounded)
        .await
        .unwrap_or_else(|e| fail("start", e));
    let run_id = new_run_id();
    let started = Instant::now();
    for i in 0..WRITE_N {
        store.push(check(&format!("target-{}", i % 100), &run_id, i));
    }
    let pushed = started.elapsed().as_secs_f64();
    store.flush().await.unwrap_or_else(|e| fail("flush", e));
    let secs = started.elapsed().as_secs_f64();
    let stored = store.count(HistoryTable::CheckResults).await.unwrap_or(0);
    let h = store.health();
    println!(
        "history_write: {WRITE_N} check results written to SQLite in {secs:.3}s = {:.0} results/s \
         (pushing took {pushed:.3}s; rows stored: {stored}; dropped: {})",
        WRITE_N as f64 / secs,
        h.dropped.total()
    );
    store.close(std::time::Duration::from_secs(5)).await;
}

async fn buffer_memory() {
    let run_id = new_run_id();
    let one = check("orders", &run_id, 0).approx_bytes();
    let round_checks: usize = (0..25)
        .map(|i| check("orders", &run_id, i).approx_bytes())
        .sum();
    let round_metrics: usize = (0..25).map(|i| metric("orders", i).approx_bytes()).sum();
    println!(
        "buffer estimate: {one} B per check result (Record enum {} B + strings); \
         a round of 25 check results {round_checks} B, with their 25 metric samples {} B",
        std::mem::size_of::<Record>(),
        round_checks + round_metrics
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
