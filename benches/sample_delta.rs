//! The slow-query delta budget: comparing two snapshots of 10,000 statement entries
//! (every entry changed, 100 of them new, 50 reset) and selecting the top 50 plus every
//! slow statement takes at most 10 ms.
//!
//! ```text
//! cargo bench --bench sample_delta
//! ```
//!
//! Prints the median, 90th percentile and worst of 200 runs and PASS/OVER of the 90th
//! percentile against the budget (not asserted: timing is measured here, not in tests),
//! and the CPU time per run (user + system of this process over the 200 runs, from
//! `/proc/self/stat`): on a machine shared with other builds the wall times measure the
//! neighbours as much as the code; the CPU time does not.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use dbwarden::sample::{Counters, Epoch, Outcome, Selection, Snapshot, StatementKey, compute};

const ENTRIES: i64 = 10_000;
const RUNS: usize = 200;
const BUDGET: Duration = Duration::from_millis(10);

fn snapshot(at: i64, grow: i64) -> Snapshot {
    let mut entries = HashMap::new();
    for i in 0..ENTRIES {
        // The second snapshot misses the first 100 (replaced by new ones) and has 50
        // entries whose counters went backwards.
        if grow > 0 && i < 100 {
            continue;
        }
        let calls = if grow > 0 && (100..150).contains(&i) {
            1
        } else {
            1_000 + i + grow * (i % 7)
        };
        entries.insert(
            StatementKey {
                id: format!("{}", -4_000_000_000_000_000_000i64 + i * 7_919),
                scope: "10/16384/t".into(),
            },
            Counters {
                calls,
                total_ms: calls as f64 * (1.0 + (i % 97) as f64),
                max_ms: 50.0,
                rows: calls,
                shared_hit: calls * 3,
                shared_read: calls,
                ..Counters::default()
            },
        );
    }
    if grow > 0 {
        for i in 0..100 {
            entries.insert(
                StatementKey {
                    id: format!("new{i}"),
                    scope: "10/16384/t".into(),
                },
                Counters {
                    calls: 5,
                    total_ms: 5.0 * 1_500.0,
                    ..Counters::default()
                },
            );
        }
    }
    Snapshot {
        taken_at: DateTime::<Utc>::from_timestamp(1_700_000_000 + at, 0).unwrap_or_default(),
        epoch: Epoch::default(),
        entries,
    }
}

fn main() {
    let prev = snapshot(0, 0);
    let now = snapshot(60, 3);
    let sel = Selection {
        top_n: 50,
        slow_ms: 1_000.0,
    };
    let mut times = Vec::with_capacity(RUNS);
    let mut kept = 0;
    let cpu_before = cpu_seconds();
    for _ in 0..RUNS {
        let t = Instant::now();
        let out = std::hint::black_box(compute(Some(&prev), &now, sel));
        times.push(t.elapsed());
        if let Outcome::Deltas { statements, .. } = out {
            kept = statements.len();
        }
    }
    let cpu = cpu_seconds()
        .zip(cpu_before)
        .map(|(b, a)| (b - a) * 1000.0 / RUNS as f64);
    times.sort();
    let median = times[RUNS / 2];
    let p90 = times[RUNS * 9 / 10];
    let worst = times[RUNS - 1];
    // Judged on the 90th percentile: the worst single run on a shared machine measures
    // the neighbours (a preempted run), not the code.
    println!(
        "sample_delta: {ENTRIES} entries, {kept} statements kept; median {median:.2?}, p90 {p90:.2?}, worst {worst:.2?} over {RUNS} runs: {}",
        if p90 <= BUDGET { "PASS" } else { "OVER" }
    );
    match cpu {
        Some(ms) => println!(
            "sample_delta: CPU per run {ms:.2} ms (user + system over {RUNS} runs, 10 ms ticks): {}",
            if ms <= BUDGET.as_secs_f64() * 1000.0 {
                "PASS"
            } else {
                "OVER"
            }
        ),
        None => println!("sample_delta: CPU time not measured (no /proc/self/stat)"),
    }
}

/// User + system CPU seconds of this process so far.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = stat.rsplit_once(") ")?.1;
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    Some((f.get(11)? + f.get(12)?) / 100.0)
}
