//! History write throughput: check results per second into a SQLite store through the
//! batching writer (the daemon's only write path). Run with `cargo bench --bench history_write`.

use std::time::Instant;

use chrono::Utc;
use dbwarden::config::SecretUrl;
use dbwarden::health::{CheckResult, Scope, Status, Unit};
use dbwarden::store::{HistoryTable, Record, Store};

const N: usize = 200_000;

fn main() {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime: {e}");
            std::process::exit(1);
        }
    };
    rt.block_on(async {
        let dir = match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => {
                eprintln!("tempdir: {e}");
                std::process::exit(1);
            }
        };
        let url = SecretUrl::new(format!("sqlite://{}/history.db", dir.path().display()));
        let store = match Store::open(&url, None).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(1);
            }
        };
        let now = Utc::now();
        let started = Instant::now();
        for i in 0..N {
            let r = Record::Check {
                ts: now,
                target: format!("target-{}", i % 100),
                run_id: Some("bench".into()),
                result: CheckResult {
                    check: "connectivity".into(),
                    status: Status::Ok,
                    value: Some(i as f64),
                    unit: Unit::Milliseconds,
                    warning: Some(250.0),
                    critical: Some(1000.0),
                    message: "1.2 ms round-trip latency (warning ≥ 250 ms, critical ≥ 1000 ms)".into(),
                    subject: None,
                    scope: Scope::Database,
                },
            };
            if store.write(r).await.is_err() {
                eprintln!("writer stopped");
                std::process::exit(1);
            }
        }
        if let Err(e) = store.flush().await {
            eprintln!("{e}");
            std::process::exit(1);
        }
        let secs = started.elapsed().as_secs_f64();
        let stored = store.count(HistoryTable::CheckResults).await.unwrap_or(0);
        println!(
            "history_write: {N} check results in {secs:.3}s = {:.0} results/s (rows stored: {stored})",
            N as f64 / secs
        );
        store.close().await;
    });
}
