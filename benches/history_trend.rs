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
//!    retention 7 days: one day of raw samples goes);
//! 4. ingest: 200,000 new samples (1000 series × 200 rounds) through the store's writer.
//!
//! With `DBWARDEN_BENCH_PG_PARTITIONS=1` (PostgreSQL; use a fresh database) `samples` is
//! first turned into a table range-partitioned by day on `ts` (same columns and key), and
//! step 3 purges raw samples by partition instead of batched deletes: for each day wholly
//! older than the raw horizon, the newest sample of every series is carried to the day's
//! end (the value still in effect there, as the batched purge keeps it) and the partition
//! is dropped; rollups and the other tables are purged as before. README "History sizing"
//! compares the two.

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
    let partitions = pg.is_some() && std::env::var("DBWARDEN_BENCH_PG_PARTITIONS").is_ok();
    let dialect = match (&pg, partitions) {
        (None, _) => "SQLite",
        (Some(_), false) => "PostgreSQL",
        (Some(_), true) => "PostgreSQL, daily partitions",
    };
    let now = Utc::now().timestamp_millis();
    let today = now.div_euclid(D) * D;
    if partitions {
        // The product's samples table, partitioned by day: 8 days back to 2 days ahead.
        db.exec(
            "ALTER TABLE samples RENAME TO samples_flat; \
             CREATE TABLE samples (LIKE samples_flat INCLUDING ALL) PARTITION BY RANGE (ts); \
             DROP TABLE samples_flat"
                .into(),
        )
        .await;
        for day in -8..=2 {
            let from = today + day * D;
            db.exec(format!(
                "CREATE TABLE samples_d{} PARTITION OF samples FOR VALUES FROM ({from}) TO ({})",
                from / D,
                from + D
            ))
            .await;
        }
    }

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

    // 4. Ingest through the writer: 1000 new series × 200 rounds, 30 s apart, ending now.
    let t = Instant::now();
    let rounds = 200;
    for r in 0..rounds {
        let ts = Utc::now() - chrono::Duration::seconds(30 * (rounds - r));
        for i in 0..1000 {
            store.push(dbwarden::store::Record::Metric {
                ts,
                target: format!("ingest{}", i / 40),
                metric: format!("m{}", i % 40),
                value: (r * 1000 + i) as f64,
            });
        }
        if r % 20 == 19 {
            store.flush().await.unwrap_or_else(|e| panic!("{e}"));
        }
    }
    store.flush().await.unwrap_or_else(|e| panic!("{e}"));
    let took = t.elapsed();
    println!(
        "{dialect}: ingest of 200,000 samples through the writer: {took:.1?} ({:.0} samples/s)",
        200_000.0 / took.as_secs_f64()
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
    let mut horizons = retention.horizons(now);
    let t = Instant::now();
    let (mut rows, mut purged) = (0, 0);
    if partitions {
        // Whole days older than the raw horizon go as partitions (rollups are past them:
        // caught up above); the batched purge then finds no raw sample left to delete.
        let cut = horizons.raw.div_euclid(D) * D;
        let mut c =
            <sqlx::PgConnection as sqlx::Connection>::connect(pg.as_deref().unwrap_or_default())
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        for day in -8..=0 {
            let from = today + day * D;
            if from + D > cut {
                break;
            }
            let sql = format!(
                "INSERT INTO samples (series_id, ts, value) \
                 SELECT DISTINCT ON (series_id) series_id, {end}, value FROM samples_d{name} \
                 ORDER BY series_id, ts DESC ON CONFLICT DO NOTHING; DROP TABLE samples_d{name}",
                end = from + D,
                name = from / D
            );
            let n = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!(
                "SELECT COUNT(*) FROM samples_d{}",
                from / D
            )))
            .fetch_one(&mut c)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut c)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            purged += n as u64;
        }
        horizons.raw = cut;
    }
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
            &horizons,
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
