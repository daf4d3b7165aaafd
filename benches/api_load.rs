//! API numbers (issue 14). Run with `cargo bench --bench api_load`.
//!
//! A real daemon process watching 200 SQLite targets (health job `@every 10s`, so rounds
//! run during the load) is sent an open-loop load of 200 requests/s for 30 s on loopback,
//! alternating `GET /api/v1/targets` and `GET /metrics` (each request on its own task at
//! its planned time, so a slow answer does not slow the arrivals down). Budget: p99 ≤ 20 ms
//! per endpoint. Then "probes still on schedule": the self-target's `schedules_missed`
//! check is OK and every target had a round within the last interval (+ its length).
//!
//!
//! Then the trend endpoint over HTTP (budget ≤ 50 ms): `GET
//! /api/v1/targets/db000/metrics?metric=mN&from=30d&step=1h`, one request at a time while
//! the rounds go on, against 30 days of one target's 40 series (the history of
//! `benches/common/trend_fixture.rs`: 30 s raw samples for the last 8 days, rolled up
//! hourly until yesterday, hourly rollups before) written into the daemon's store before
//! it starts.
//!
//! Env: DBWARDEN_BENCH_API_TARGETS (200), DBWARDEN_BENCH_API_RATE (200/s),
//! DBWARDEN_BENCH_API_SECONDS (30), DBWARDEN_BENCH_API_TRENDS (400 trend requests).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "common/trend_fixture.rs"]
mod trend_fixture;

const BIN: &str = env!("CARGO_BIN_EXE_dbwarden");

fn env_or(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// Creates the daemon's history store with the trend fixture for target `db000`, rolled
/// up until the start of yesterday as the rollup job would have.
async fn history(url: &str, metrics: i64) {
    let store = dbwarden::store::Store::open(&dbwarden::config::SecretUrl::new(url), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let now = chrono::Utc::now().timestamp_millis();
    let today = now.div_euclid(trend_fixture::D) * trend_fixture::D;
    let targets = ["db000".to_string()];
    let fixture = trend_fixture::Fixture {
        agent: "bench",
        targets: &targets,
        metrics,
    };
    let mut db = trend_fixture::Db::connect(url).await;
    trend_fixture::fill(&mut db, &fixture, now, today).await;
    db.close().await;
    trend_fixture::catch_up(&store, &fixture, today - trend_fixture::D).await;
    store.close(Duration::from_secs(5)).await;
}

#[tokio::main]
async fn main() {
    let targets = env_or("DBWARDEN_BENCH_API_TARGETS", 200);
    let rate = env_or("DBWARDEN_BENCH_API_RATE", 200).max(1);
    let seconds = env_or("DBWARDEN_BENCH_API_SECONDS", 30);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("port: {e}"));
    let d = dir.path().display();
    let mut cfg = format!(
        "[daemon]\nhistory = \"sqlite://{d}/history.db\"\nlisten = \"127.0.0.1:{port}\"\nmax_concurrent_targets = 16\n\n[[job]]\nname = \"health\"\nkind = \"health\"\nschedule = \"@every 10s\"\ntargets = [\"*\"]\n"
    );
    for i in 0..targets {
        cfg.push_str(&format!(
            "\n[[target]]\nname = \"db{i:03}\"\nurl = \"sqlite://{d}/db{i:03}.db?mode=rwc\"\ntags = [\"bench\"]\n"
        ));
    }
    std::fs::write(dir.path().join("dbwarden.toml"), cfg).unwrap_or_else(|e| panic!("{e}"));
    let metrics = 40;
    history(&format!("sqlite://{d}/history.db"), metrics).await;
    let log =
        std::fs::File::create(dir.path().join("daemon.log")).unwrap_or_else(|e| panic!("{e}"));
    let mut child = Command::new(BIN)
        .args(["run", "-c", "dbwarden.toml", "--log-level", "warn"])
        .current_dir(dir.path())
        .env_remove("NOTIFY_SOCKET")
        .env_remove("JOURNAL_STREAM")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn: {e}"));
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let base = format!("http://127.0.0.1:{port}");
    // Wait until every target had its first round.
    let started = Instant::now();
    loop {
        let v: serde_json::Value = match http.get(format!("{base}/api/v1/targets")).send().await {
            Ok(r) => r.json().await.unwrap_or_default(),
            Err(_) => serde_json::Value::Null,
        };
        let done = v["targets"]
            .as_array()
            .map(|t| t.iter().filter(|t| t["status"].is_string()).count())
            .unwrap_or(0);
        if done as u64 > targets {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "targets never all ran: {done}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for path in ["/api/v1/targets", "/metrics"] {
        let len = match http.get(format!("{base}{path}")).send().await.ok() {
            Some(r) => r.bytes().await.map(|b| b.len()).unwrap_or(0),
            None => 0,
        };
        println!("{path}: {len} bytes per answer with {targets} targets");
    }

    let total = rate * seconds;
    let every = Duration::from_secs_f64(1.0 / rate as f64);
    let t0 = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let path = if i % 2 == 0 {
            "/api/v1/targets"
        } else {
            "/metrics"
        };
        let url = format!("{base}{path}");
        let http = http.clone();
        tokio::time::sleep_until(t0 + every * i as u32).await;
        tasks.push(tokio::spawn(async move {
            let s = Instant::now();
            let ok = match http.get(url).send().await {
                Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                Err(_) => false,
            };
            (path, s.elapsed(), ok)
        }));
    }
    let mut by: std::collections::BTreeMap<&str, Vec<Duration>> = Default::default();
    let mut failed = 0;
    for t in tasks {
        if let Ok((path, d, ok)) = t.await {
            if !ok {
                failed += 1;
            }
            by.entry(path).or_default().push(d);
        }
    }
    let offered = t0.elapsed();
    println!(
        "{total} requests in {:.1} s ({:.0}/s offered), {failed} failed",
        offered.as_secs_f64(),
        total as f64 / offered.as_secs_f64()
    );
    for (path, mut v) in by {
        v.sort();
        println!(
            "{path:<16} n={:<5} p50={:>6.2} ms  p99={:>6.2} ms  max={:>6.2} ms  (budget p99 ≤ 20 ms)",
            v.len(),
            pct(&v, 0.50).as_secs_f64() * 1000.0,
            pct(&v, 0.99).as_secs_f64() * 1000.0,
            pct(&v, 1.0).as_secs_f64() * 1000.0,
        );
    }

    // The 30-day trend, one request at a time.
    let trends = env_or("DBWARDEN_BENCH_API_TRENDS", 400);
    let mut times = Vec::with_capacity(trends as usize);
    let mut failed = 0;
    for i in 0..trends {
        let url = format!(
            "{base}/api/v1/targets/db000/metrics?metric=m{}&from=30d&step=1h",
            i % metrics as u64
        );
        let s = Instant::now();
        let points = match http.get(url).send().await {
            Ok(r) if r.status().is_success() => r
                .json::<serde_json::Value>()
                .await
                .ok()
                .and_then(|v| {
                    v["points"]
                        .as_array()
                        .map(|p| p.iter().filter(|p| p["avg"].is_number()).count())
                })
                .unwrap_or(0),
            _ => 0,
        };
        times.push(s.elapsed());
        // 30 days of hours, every one with data.
        if points < 719 {
            failed += 1;
        }
    }
    times.sort();
    println!(
        "30-day trend (step 1h) n={trends} p50={:.2} ms  p99={:.2} ms  max={:.2} ms  (budget ≤ 50 ms), {failed} without 30 days of data",
        pct(&times, 0.50).as_secs_f64() * 1000.0,
        pct(&times, 0.99).as_secs_f64() * 1000.0,
        pct(&times, 1.0).as_secs_f64() * 1000.0,
    );

    // Probes on schedule: the self-check and every target's latest round.
    let v: serde_json::Value = match http
        .get(format!("{base}/api/v1/targets/dbwarden/health"))
        .send()
        .await
    {
        Ok(r) => r.json().await.unwrap_or_default(),
        Err(_) => serde_json::Value::Null,
    };
    let missed = v["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["check"] == "schedules_missed").cloned())
        .unwrap_or_default();
    println!(
        "schedules_missed during the load: {} ({})",
        missed["status"], missed["message"]
    );
    let v: serde_json::Value = match http.get(format!("{base}/api/v1/targets")).send().await {
        Ok(r) => r.json().await.unwrap_or_default(),
        Err(_) => serde_json::Value::Null,
    };
    let now = chrono::Utc::now();
    let oldest = v["targets"]
        .as_array()
        .map(|t| {
            t.iter()
                .filter_map(|t| t["last_round"].as_str())
                .filter_map(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
                .map(|t| (now - t.with_timezone(&chrono::Utc)).num_milliseconds())
                .max()
                .unwrap_or(-1)
        })
        .unwrap_or(-1);
    println!(
        "oldest last round of {targets} targets at the end: {:.1} s ago (job every 10 s)",
        oldest as f64 / 1000.0
    );
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}
