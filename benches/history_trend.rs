//! Trend and housekeeping numbers of issue 13. Run with `cargo bench --bench history_trend`
//! (SQLite in a temporary directory); with `DBWARDEN_BENCH_PG_URL=postgres://…/db` it runs
//! against that PostgreSQL database instead (it creates and drops the tables' rows of
//! agent `bench`; use a scratch database).
//!
//! Data, generated directly in SQL by `benches/common/trend_fixture.rs` (shared with
//! `api_load`): 50 targets × 40 metrics = 2000 series; 8 days of raw samples at 30 s for one
//! target's 40 series (a value that changes every sample: the worst case of store on
//! change) and, for the other 49 targets, a value changing every 10 minutes; 90 days of
//! hourly and 2 years of daily rollups for every series. Measured:
//! 1. a 1-year trend query (daily rollups), median of 50 random series;
//! 2. a 24-hour raw trend query at 60 s steps of a fully sampled series, median of 40;
//! 3. one day's rollup + purge of all 50 targets (the rollup job's daily work): the
//!    watermarks are set back one day, then every target is rolled up and purged (raw
//!    retention 7 days: one day of raw samples goes).

use std::time::{Duration, Instant};

use chrono::Utc;
use dbwarden::config::SecretUrl;
use dbwarden::history::retention::RetentionConfig;
use dbwarden::history::rollup::Grain;
use dbwarden::history::store::{purge_target, roll_up};
use dbwarden::store::{Store, TrendQuery};
use tokio_util::sync::CancellationToken;

#[path = "common/trend_fixture.rs"]
mod trend_fixture;
use trend_fixture::{D, Db, Fixture};

const TARGETS: i64 = 50;
const METRICS: i64 = 40;
const AGENT: &str = "bench";

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let pg = std::env::var("DBWARDEN_BENCH_PG_URL").ok();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let url = match &pg {
        Some(u) => u.clone(),
        None => format!("sqlite://{}/bench.db", dir.path().display()),
    };
    let store = Store::open(&SecretUrl::new(url.clone()), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut db = Db::connect(&url).await;
    let dialect = if pg.is_some() { "PostgreSQL" } else { "SQLite" };
    let now = Utc::now().timestamp_millis();
    let today = now.div_euclid(D) * D;

    let t = Instant::now();
    let targets: Vec<String> = (0..TARGETS).map(|t| format!("t{t}")).collect();
    let fixture = Fixture {
        agent: AGENT,
        targets: &targets,
        metrics: METRICS,
    };
    trend_fixture::fill(&mut db, &fixture, now, today).await;
    db.close().await;
    println!("{dialect}: generated in {:.1?}", t.elapsed());

    // Bring the rollups up to now (7 days of hours for every target): not measured, the
    // measured day follows.
    let never = CancellationToken::new();
    let t = Instant::now();
    trend_fixture::catch_up(&store, &fixture, today - D).await;
    println!(
        "{dialect}: caught up 7 days of rollups for 50 targets in {:.1?}",
        t.elapsed()
    );

    // 1. One year, daily.
    let mut times = Vec::new();
    for i in 0..50 {
        let q = TrendQuery {
            target: format!("t{}", i % TARGETS),
            metric: format!("m{}", (i * 7) % METRICS),
            label: None,
            from: Utc::now() - chrono::Duration::days(365),
            to: Utc::now(),
            step: Some(Duration::from_secs(86_400)),
        };
        let t = Instant::now();
        let tr = store.trend(&q).await.unwrap_or_else(|e| panic!("{e}"));
        times.push(t.elapsed());
        assert!(tr.points.iter().filter(|p| p.avg.is_some()).count() > 300);
    }
    println!(
        "{dialect}: 1-year trend query (daily), median of 50: {:.2?}",
        median(times)
    );

    // 2. 24 hours raw of a fully sampled series.
    let mut times = Vec::new();
    for m in 0..METRICS {
        let q = TrendQuery {
            target: "t0".into(),
            metric: format!("m{m}"),
            label: None,
            from: Utc::now() - chrono::Duration::hours(24),
            to: Utc::now(),
            step: Some(Duration::from_secs(60)),
        };
        let t = Instant::now();
        let tr = store.trend(&q).await.unwrap_or_else(|e| panic!("{e}"));
        times.push(t.elapsed());
        assert_eq!(tr.resolution, dbwarden::store::Resolution::Raw);
    }
    println!(
        "{dialect}: 24-hour raw trend query (60 s steps, 2880 samples), median of 40: {:.2?}",
        median(times)
    );

    // 3. One day's rollup + purge of all targets.
    let retention = RetentionConfig::default();
    let t = Instant::now();
    let (mut rows, mut purged) = (0, 0);
    for i in 0..TARGETS {
        let target = format!("t{i}");
        for g in [Grain::Hour, Grain::Day(chrono_tz::UTC)] {
            rows += roll_up(&store, AGENT, &target, g, today, &never)
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .rows;
        }
        purged += purge_target(
            &store,
            AGENT,
            &target,
            chrono_tz::UTC,
            &retention.horizons(now),
            retention.purge_batch,
            &never,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .samples;
    }
    println!(
        "{dialect}: one day's rollup + purge of 50 targets: {:.1?} ({rows} rollup rows, {purged} raw samples deleted)",
        t.elapsed()
    );
    if let Some(path) = store.sqlite_file() {
        let size = std::fs::metadata(&path).map_or(0, |m| m.len());
        println!("{dialect}: file {:.0} MB", size as f64 / 1e6);
    }
    store.close(Duration::from_secs(5)).await;
}
