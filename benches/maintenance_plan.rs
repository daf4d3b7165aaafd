//! Planning budget: 1,000 tables planned in ≤ 100 ms (the issue's bound).
//!
//! ```text
//! cargo bench --bench maintenance_plan
//! ```
//!
//! Builds 1,000 tables of mixed need (a tenth near wraparound, a third past their
//! autovacuum trigger, a fifth with stale statistics, include/exclude patterns on) and
//! prints the median and worst of 200 plans as PASS/OVER against the budget.

use std::time::{Duration, Instant};

use dbwarden::maintenance::{Policy, TableFacts, plan};

const TABLES: usize = 1000;
const RUNS: usize = 200;
const BUDGET: Duration = Duration::from_millis(100);

fn main() {
    let tables: Vec<TableFacts> = (0..TABLES)
        .map(|i| {
            let f = i as f64;
            TableFacts {
                name: format!("schema_{}.table_{i}", i % 7),
                sql_name: format!("schema_{}.table_{i}", i % 7),
                size_bytes: 8192.0 * (1.0 + f * 37.0 % 10_000.0),
                live_rows: 10_000.0 + f * 13.0,
                dead_rows: if i % 3 == 0 { 50_000.0 + f } else { 10.0 },
                vacuum_trigger: 50.0 + 0.2 * (10_000.0 + f * 13.0),
                changed_since_analyze: if i % 5 == 0 { 30_000.0 } else { 0.0 },
                analyze_trigger: 50.0 + 0.1 * (10_000.0 + f * 13.0),
                freeze_age: Some(if i % 10 == 0 { 170_000_000.0 + f } else { 1e6 }),
            }
        })
        .collect();
    let policy = Policy {
        exclude: vec!["schema_6.*".into()],
        include: vec!["schema_*".into()],
        ..Policy::default()
    };
    let mut times = Vec::with_capacity(RUNS);
    let mut steps = 0;
    for _ in 0..RUNS {
        let t = Instant::now();
        let p = plan(std::hint::black_box(&tables), &policy, None);
        times.push(t.elapsed());
        steps = p.steps.len();
    }
    times.sort();
    let median = times[RUNS / 2];
    let worst = times[RUNS - 1];
    let verdict = if worst <= BUDGET { "PASS" } else { "OVER" };
    println!(
        "plan of {TABLES} tables ({steps} steps): median {median:?}, worst {worst:?} of {RUNS} runs; budget {BUDGET:?}: {verdict}"
    );
}
