//! History housekeeping against real stores (SQLite file and the PostgreSQL server):
//! rollups equal aggregates computed directly from the raw step function across hour and
//! day boundaries and time zones; an interrupted rollup resumed gives the same rows;
//! retention deletes exactly what is older than its horizon; the SQLite store's file
//! stays bounded across write/purge/maintain cycles.
//!
//! PostgreSQL runs read DBWARDEN_TEST_PG_URL (skipped with a reason when unset).

mod common;

use std::collections::BTreeMap;

use chrono::TimeZone;
use dbwarden::config::SecretUrl;
use dbwarden::history::retention::RetentionConfig;
use dbwarden::history::rollup::{DAY, Grain, HOUR};
use dbwarden::history::store::{Horizons, purge_target, roll_up};
use dbwarden::store::Store;
use sqlx::Connection;
use tokio_util::sync::CancellationToken;

const S: i64 = 1000;
const H: i64 = HOUR * 1000;
const AGENT: &str = "agent-1";

/// A direct connection to the store under test, for seeding and reading back.
enum Db {
    Sqlite(sqlx::SqliteConnection),
    Pg(sqlx::PgConnection),
}

type Row = (i64, i64, i64, f64, f64, f64, f64, i64);

impl Db {
    async fn exec(&mut self, sql: String) {
        let r = match self {
            Db::Sqlite(c) => sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(c)
                .await
                .map(|_| ()),
            Db::Pg(c) => sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(c)
                .await
                .map(|_| ()),
        };
        r.unwrap_or_else(|e| panic!("seed: {e}"));
    }

    async fn rollups(&mut self) -> Vec<Row> {
        const SQL: &str = "SELECT series_id, resolution, ts, min, max, avg, last, covered_ms FROM rollups ORDER BY series_id, resolution, ts";
        match self {
            Db::Sqlite(c) => sqlx::query_as(SQL).fetch_all(c).await,
            Db::Pg(c) => sqlx::query_as(SQL).fetch_all(c).await,
        }
        .unwrap_or_else(|e| panic!("read rollups: {e}"))
    }

    async fn count(&mut self, sql: &str) -> i64 {
        let sql = sql.to_string();
        match self {
            Db::Sqlite(c) => {
                sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .fetch_one(c)
                    .await
            }
            Db::Pg(c) => {
                sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .fetch_one(c)
                    .await
            }
        }
        .unwrap_or_else(|e| panic!("count: {e}"))
    }
}

/// One series' raw history: samples (ts, value) and last_ts.
struct Series {
    id: i64,
    target: &'static str,
    samples: Vec<(i64, Option<f64>)>,
    last_ts: i64,
}

fn t0() -> i64 {
    // 2026-03-28 20:17:30 UTC: the next day is Berlin's 23-hour spring-forward day.
    chrono::Utc
        .with_ymd_and_hms(2026, 3, 28, 20, 17, 30)
        .single()
        .map(|d| d.timestamp_millis())
        .unwrap_or_default()
}

/// Store-on-change series over 50 hours: a wandering value sampled every 30 s (kept only
/// when it changes), a constant one set days before, and one with a gap (no data).
fn fixture() -> Vec<Series> {
    let start = t0();
    let end = start + 50 * H;
    let mut walk = Vec::new();
    let mut v = 100.0;
    let mut prev = f64::NAN;
    let mut ts = start;
    let mut i = 0u64;
    while ts < end {
        i += 1;
        if i % 7 == 0 || i % 11 == 0 {
            v += ((i * 7919) % 13) as f64 - 6.0;
        }
        if v != prev {
            walk.push((ts, Some(v)));
            prev = v;
        }
        ts += 30 * S;
    }
    let gap = vec![
        (start + 2 * H + 600 * S, Some(5.0)),
        (start + 3 * H, Some(6.5)),
        (start + 4 * H + 30 * S, None),
        (start + 20 * H + 90 * S, Some(2.0)),
    ];
    vec![
        Series {
            id: 1,
            target: "t",
            samples: walk,
            last_ts: end,
        },
        Series {
            id: 2,
            target: "t",
            samples: vec![(start - 3 * 24 * H, Some(42.0))],
            last_ts: end,
        },
        Series {
            id: 3,
            target: "t",
            samples: gap,
            last_ts: end - 5 * H,
        },
        Series {
            id: 4,
            target: "other",
            samples: vec![(start, Some(1.0))],
            last_ts: end,
        },
    ]
}

async fn seed(db: &mut Db, series: &[Series]) {
    for s in series {
        db.exec(format!(
            "INSERT INTO series (id, agent, target, metric, label, unit, last_ts) VALUES ({}, '{AGENT}', '{}', 'm{}', '', 'count', {})",
            s.id, s.target, s.id, s.last_ts
        ))
        .await;
        for chunk in s.samples.chunks(500) {
            let values: Vec<String> = chunk
                .iter()
                .map(|(ts, v)| {
                    format!(
                        "({}, {ts}, {})",
                        s.id,
                        v.map_or("NULL".to_string(), |v| format!("{v:?}"))
                    )
                })
                .collect();
            db.exec(format!(
                "INSERT INTO samples (series_id, ts, value) VALUES {}",
                values.join(", ")
            ))
            .await;
        }
    }
}

/// The rollup rows computed directly from the step function, second by second.
fn brute_force(series: &[Series], target: &str, grain: Grain, until: i64) -> Vec<Row> {
    let mut out = Vec::new();
    for s in series.iter().filter(|s| s.target == target) {
        let first = s.samples.first().map_or(0, |p| p.0);
        let mut b = grain.floor(first);
        while grain.next(b) <= until {
            let e = grain.next(b);
            let (mut n, mut sum, mut min, mut max, mut last) =
                (0i64, 0.0, f64::INFINITY, f64::NEG_INFINITY, None);
            let mut t = b;
            while t < e {
                let idx = s.samples.partition_point(|p| p.0 <= t);
                let holds = idx > 0 && (idx < s.samples.len() || t < s.last_ts);
                if holds && let Some(v) = s.samples[idx - 1].1 {
                    n += 1;
                    sum += v;
                    min = min.min(v);
                    max = max.max(v);
                    last = Some(v);
                }
                t += S;
            }
            if let Some(last) = last {
                out.push((
                    s.id,
                    grain.resolution(),
                    b,
                    min,
                    max,
                    sum / n as f64,
                    last,
                    n * S,
                ));
            }
            b = e;
        }
    }
    out.sort_by_key(|r| (r.0, r.1, r.2));
    out
}

fn assert_rows_eq(got: &[Row], want: &[Row]) {
    assert_eq!(got.len(), want.len(), "row count");
    for (g, w) in got.iter().zip(want) {
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(1.0);
        assert!(
            (g.0, g.1, g.2, g.7) == (w.0, w.1, w.2, w.7)
                && close(g.3, w.3)
                && close(g.4, w.4)
                && close(g.5, w.5)
                && close(g.6, w.6),
            "got {g:?}, want {w:?}"
        );
    }
}

async fn sqlite_store(dir: &tempfile::TempDir) -> (Store, Db, String) {
    let path = dir.path().join("h.db");
    let url = format!("sqlite://{}", path.display());
    let store = Store::open(&SecretUrl::new(url.clone()), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let conn = sqlx::SqliteConnection::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    (store, Db::Sqlite(conn), url)
}

const UNTIL_HOURS: i64 = 49;

/// Seeds, rolls up hours and Berlin days (in two goes: interrupted, then resumed), checks
/// against the brute force, then recomputes everything from scratch: the same rows.
async fn rollups_match_raw(store: &Store, db: &mut Db) {
    let series = fixture();
    seed(db, &series).await;
    let berlin = Grain::Day(chrono_tz::Europe::Berlin);
    let until = t0() + UNTIL_HOURS * H;
    let never = CancellationToken::new();
    // Interrupted halfway (the run stopped after some buckets), then resumed.
    for g in [Grain::Hour, berlin] {
        let half = roll_up(store, AGENT, "t", g, t0() + 20 * H, &never)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(half.buckets > 0);
        let cancelled = CancellationToken::new();
        cancelled.cancel();
        let none = roll_up(store, AGENT, "t", g, until, &cancelled)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(none.buckets, 0, "a cancelled run starts no bucket");
        roll_up(store, AGENT, "t", g, until, &never)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let mut want = brute_force(&series, "t", Grain::Hour, until);
    want.extend(brute_force(&series, "t", berlin, until));
    want.sort_by_key(|r| (r.0, r.1, r.2));
    let got = db.rollups().await;
    assert!(
        got.iter().any(|r| r.1 == DAY && r.2 % (24 * H) != 0),
        "Berlin days do not start at UTC midnight"
    );
    assert!(
        got.iter().all(|r| r.0 != 4),
        "another target's series untouched"
    );
    assert_rows_eq(&got, &want);
    // The Berlin spring-forward day is 23 hours of data for a constant series.
    assert!(
        got.iter().any(|r| r.0 == 2 && r.1 == DAY && r.7 == 23 * H),
        "a 23-hour day"
    );

    // From scratch in one go: identical rows (resuming changed nothing).
    db.exec("DELETE FROM rollups".into()).await;
    db.exec("DELETE FROM rollup_progress".into()).await;
    for g in [Grain::Hour, berlin] {
        roll_up(store, AGENT, "t", g, until, &never)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    assert_rows_eq(&db.rollups().await, &want);
    // Nothing new to do: a second pass writes nothing and moves nothing.
    let again = roll_up(store, AGENT, "t", Grain::Hour, until, &never)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again.buckets, 0);
}

#[tokio::test]
async fn sqlite_rollups_equal_raw_aggregates_and_resume() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (store, mut db, _) = sqlite_store(&dir).await;
    rollups_match_raw(&store, &mut db).await;
    store.close(std::time::Duration::from_secs(2)).await;
}

#[tokio::test]
async fn postgres_rollups_equal_raw_aggregates_and_resume() {
    let Some(admin) = common::pg::pg_url() else {
        return;
    };
    let pg = common::pg::PgDb::create(&admin).await;
    let store = Store::open(&SecretUrl::new(pg.url.clone()), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut db = Db::Pg(pg.connect().await);
    rollups_match_raw(&store, &mut db).await;
    retention_deletes_exactly_what_is_older(&store, &mut db).await;
    store.close(std::time::Duration::from_secs(2)).await;
    drop(db);
    pg.drop_db().await;
}

/// Retention: rows older than each horizon go, newer stay, other targets' stay, pending
/// notifications stay, and each series keeps the sample in effect at the raw horizon.
async fn retention_deletes_exactly_what_is_older(store: &Store, db: &mut Db) {
    let series = fixture();
    let berlin = Grain::Day(chrono_tz::Europe::Berlin);
    let never = CancellationToken::new();
    for g in [Grain::Hour, berlin] {
        roll_up(store, AGENT, "t", g, t0() + UNTIL_HOURS * H, &never)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let horizon = t0() + 10 * H;
    for (i, ts) in [horizon - 1, horizon, horizon + 1].iter().enumerate() {
        for target in ["t", "other"] {
            db.exec(format!("INSERT INTO job_runs (id, job, kind, target, started_at, outcome, agent) VALUES ('r{i}{target}', 'j', 'health', '{target}', {ts}, 'ok', '{AGENT}')")).await;
            db.exec(format!("INSERT INTO health_transitions (ts, target, check_name, from_status, to_status, message, agent) VALUES ({ts}, '{target}', 'c', 'ok', 'warning', 'm', '{AGENT}')")).await;
            db.exec(format!("INSERT INTO query_plans (agent, target, queryid, ts, plan_json, summary, top_node) VALUES ('{AGENT}', '{target}', 'q', {ts}, '[]', 's', 'Seq Scan')")).await;
        }
        db.exec(format!("INSERT INTO alert_outbox (id_key, channel, agent, target, event, created_at, due_at, payload, state, next_at) VALUES ('k{i}', 'c', '{AGENT}', 't', 'e', {ts}, {ts}, '{{}}', 'delivered', {ts})")).await;
        db.exec(format!("INSERT INTO alert_outbox (id_key, channel, agent, target, event, created_at, due_at, payload, state, next_at) VALUES ('p{i}', 'c', '{AGENT}', 't', 'e', {ts}, {ts}, '{{}}', 'pending', {ts})")).await;
    }
    let samples_before: BTreeMap<i64, usize> =
        series.iter().map(|s| (s.id, s.samples.len())).collect();
    let h = Horizons {
        raw: horizon,
        hourly: horizon,
        daily: horizon,
        job_runs: horizon,
        transitions: horizon,
        check_periods: horizon,
        maintenance: horizon,
        query_stats: horizon,
        long_queries: horizon,
        alerts: horizon,
    };
    let stats = purge_target(store, AGENT, "t", berlin_tz(), &h, 100, &never)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(stats.samples > 100, "more than one batch: {stats:?}");
    for s in series.iter().filter(|s| s.target == "t") {
        // Kept: every sample at or after the horizon plus the newest one before it.
        let newer = s.samples.iter().filter(|p| p.0 >= horizon).count();
        let carried = usize::from(s.samples.iter().any(|p| p.0 < horizon));
        let left = db
            .count(&format!(
                "SELECT COUNT(*) FROM samples WHERE series_id = {}",
                s.id
            ))
            .await;
        assert_eq!(left as usize, newer + carried, "series {}", s.id);
        let oldest_kept = db
            .count(&format!(
                "SELECT MIN(ts) FROM samples WHERE series_id = {}",
                s.id
            ))
            .await;
        let want_oldest = s
            .samples
            .iter()
            .filter(|p| p.0 < horizon)
            .map(|p| p.0)
            .max()
            .or_else(|| s.samples.first().map(|p| p.0));
        assert_eq!(Some(oldest_kept), want_oldest, "series {}", s.id);
    }
    let other = db
        .count("SELECT COUNT(*) FROM samples WHERE series_id = 4")
        .await;
    assert_eq!(
        other as usize, samples_before[&4],
        "another target untouched"
    );
    assert_eq!(
        db.count(&format!(
            "SELECT COUNT(*) FROM rollups WHERE ts < {horizon}"
        ))
        .await,
        0
    );
    assert!(
        db.count(&format!(
            "SELECT COUNT(*) FROM rollups WHERE ts >= {horizon}"
        ))
        .await
            > 0
    );
    for (table, col) in [
        ("job_runs", "started_at"),
        ("health_transitions", "ts"),
        ("query_plans", "ts"),
    ] {
        let t_old = db
            .count(&format!(
                "SELECT COUNT(*) FROM {table} WHERE target = 't' AND {col} < {horizon}"
            ))
            .await;
        let t_new = db
            .count(&format!(
                "SELECT COUNT(*) FROM {table} WHERE target = 't' AND {col} >= {horizon}"
            ))
            .await;
        let other = db
            .count(&format!(
                "SELECT COUNT(*) FROM {table} WHERE target = 'other'"
            ))
            .await;
        assert_eq!((t_old, t_new, other), (0, 2, 3), "{table}");
    }
    let outbox = db
        .count("SELECT COUNT(*) FROM alert_outbox WHERE state = 'pending'")
        .await;
    assert_eq!(outbox, 3, "pending notifications are never purged");
    let delivered = db
        .count("SELECT COUNT(*) FROM alert_outbox WHERE state = 'delivered'")
        .await;
    assert_eq!(delivered, 2);
}

fn berlin_tz() -> chrono_tz::Tz {
    chrono_tz::Europe::Berlin
}

#[tokio::test]
async fn sqlite_retention_deletes_exactly_what_is_older() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (store, mut db, _) = sqlite_store(&dir).await;
    seed(&mut db, &fixture()).await;
    retention_deletes_exactly_what_is_older(&store, &mut db).await;
    store.close(std::time::Duration::from_secs(2)).await;
}

#[tokio::test]
async fn raw_samples_not_yet_rolled_up_are_kept() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (store, mut db, _) = sqlite_store(&dir).await;
    seed(&mut db, &fixture()).await;
    let before = db.count("SELECT COUNT(*) FROM samples").await;
    let h = RetentionConfig::default().horizons(t0() + 400 * 24 * H);
    purge_target(
        &store,
        AGENT,
        "t",
        berlin_tz(),
        &h,
        1000,
        &CancellationToken::new(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        db.count("SELECT COUNT(*) FROM samples").await,
        before,
        "no rollup has passed them: nothing is deleted"
    );
    store.close(std::time::Duration::from_secs(2)).await;
}

/// Many cycles of a day's writes, rollup, purge and self-maintenance: the file stops
/// growing once retention is reached.
#[tokio::test]
async fn sqlite_store_size_stays_bounded() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (store, mut db, _) = sqlite_store(&dir).await;
    let path = dir.path().join("h.db");
    let never = CancellationToken::new();
    let retention = RetentionConfig {
        raw: std::time::Duration::from_secs(2 * 86_400),
        hourly: std::time::Duration::from_secs(4 * 86_400),
        daily: std::time::Duration::from_secs(6 * 86_400),
        ..RetentionConfig::default()
    };
    for id in 1..=20 {
        db.exec(format!("INSERT INTO series (id, agent, target, metric, label, unit, last_ts) VALUES ({id}, '{AGENT}', 't', 'm{id}', '', 'count', 0)")).await;
    }
    let day = 24 * H;
    let mut sizes = Vec::new();
    for cycle in 0..12i64 {
        let from = cycle * day;
        // A value changing every minute for a day, 20 series.
        for id in 1..=20i64 {
            let rows: Vec<String> = (0..1440)
                .map(|m| format!("({id}, {}, {})", from + m * 60 * S, (m * id) % 97))
                .collect();
            for c in rows.chunks(500) {
                db.exec(format!(
                    "INSERT INTO samples (series_id, ts, value) VALUES {}",
                    c.join(",")
                ))
                .await;
            }
            db.exec(format!(
                "UPDATE series SET last_ts = {} WHERE id = {id}",
                from + day
            ))
            .await;
        }
        let now = from + day;
        for g in [Grain::Hour, Grain::Day(chrono_tz::UTC)] {
            roll_up(&store, AGENT, "t", g, now, &never)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        purge_target(
            &store,
            AGENT,
            "t",
            chrono_tz::UTC,
            &retention.horizons(now),
            5000,
            &never,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        dbwarden::history::maintain::maintain_store(path.clone(), &never)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        sizes.push(std::fs::metadata(&path).map_or(0, |m| m.len()));
    }
    eprintln!("history file size after each cycle: {sizes:?}");
    let raw = db.count("SELECT COUNT(*) FROM samples").await;
    assert!(
        raw <= 20 * 1440 * 3,
        "raw samples bounded by retention: {raw}"
    );
    // After the retention period is reached the file no longer grows.
    let settled = sizes[6];
    let last = sizes[sizes.len() - 1];
    assert!(
        last <= settled + settled / 5,
        "file keeps growing across cycles: {sizes:?}"
    );
    store.close(std::time::Duration::from_secs(2)).await;
}

/// A trend over recent days reads hourly rollups up to the watermark and the raw steps
/// after it: every point equals the aggregate computed directly from the raw data.
#[tokio::test]
async fn trend_reads_rollups_and_the_raw_tail() {
    use dbwarden::store::{Resolution, TrendQuery};
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (store, mut db, _) = sqlite_store(&dir).await;
    let now = chrono::Utc::now().timestamp_millis();
    let end = now.div_euclid(H) * H;
    let start = end - 72 * H;
    let samples: Vec<(i64, Option<f64>)> = (0..72 * 6)
        .map(|i| (start + i * 600 * S + 17 * S, Some(((i * 37) % 23) as f64)))
        .collect();
    let series = vec![Series {
        id: 10,
        target: "tr",
        samples,
        last_ts: end,
    }];
    seed(&mut db, &series).await;
    db.exec("UPDATE series SET metric = 'size' WHERE id = 10".into())
        .await;
    roll_up(
        &store,
        AGENT,
        "tr",
        Grain::Hour,
        end - 5 * H,
        &CancellationToken::new(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let want = brute_force(&series, "tr", Grain::Hour, end);
    let from_ms = end - 48 * H;
    let q = TrendQuery {
        target: "tr".into(),
        metric: "size".into(),
        label: None,
        from: chrono::Utc
            .timestamp_millis_opt(from_ms)
            .single()
            .unwrap_or_default(),
        to: chrono::Utc
            .timestamp_millis_opt(end)
            .single()
            .unwrap_or_default(),
        step: Some(std::time::Duration::from_secs(3600)),
    };
    let t = store.trend(&q).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(t.resolution, Resolution::Hour);
    assert_eq!(t.points.len(), 48);
    for p in &t.points {
        let w = want
            .iter()
            .find(|r| r.2 == p.t.timestamp_millis())
            .unwrap_or_else(|| panic!("no bucket {}", p.t));
        let close = |a: Option<f64>, b: f64| a.is_some_and(|a| (a - b).abs() < 1e-9);
        assert!(
            close(p.avg, w.5) && close(p.min, w.3) && close(p.max, w.4) && close(p.last, w.6),
            "{p:?} vs {w:?}"
        );
    }
    // A day at minute steps reads the raw steps.
    let raw = store
        .trend(&TrendQuery {
            step: Some(std::time::Duration::from_secs(60)),
            from: q.to - chrono::Duration::hours(24),
            ..q
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(raw.resolution, Resolution::Raw);
    assert_eq!(raw.points.len(), 24 * 60);
    assert!(raw.points.iter().all(|p| p.avg.is_some()));
    store.close(std::time::Duration::from_secs(2)).await;
}

/// A forecast the rollup job cached is judged by the next health round like any other
/// check (here CRITICAL: full in 3 days) and published with the round's results, so it is
/// believed and alerted through the same path.
#[tokio::test]
async fn a_cached_forecast_is_judged_by_the_health_round() {
    use dbwarden::events::{Event, Events};
    use dbwarden::health::{Measurement, Observation, Status};
    use dbwarden::history::checks::FORECAST_FULL;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        format!(
            "[daemon]\nhistory = \"sqlite://{0}/h.db\"\n[[target]]\nname = \"demo\"\nurl = \"sqlite://{0}/demo.db?mode=rwc\"\n\
             [[job]]\nname = \"health\"\nkind = \"health\"\nschedule = \"@every 30s\"\n",
            dir.path().display()
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let config = std::sync::Arc::new(
        dbwarden::config::load(&path).unwrap_or_else(|e| panic!("config: {e}")),
    );
    let events = Events::default();
    let mut sub = events.subscribe("test");
    let (shared, ctx) = dbwarden::jobs::runtime(&config, events);
    shared.forecasts.set(
        "demo",
        vec![Measurement::value(
            FORECAST_FULL,
            Observation::new(3.0 * 86_400.0).detail("size: now 900 MB of 1 GB"),
        )],
    );
    let (Some(job), Some(target)) = (
        config.job("health").cloned(),
        config.target("demo").cloned(),
    ) else {
        panic!("job or target missing")
    };
    let done = dbwarden::scheduler::run_now(ctx, job, target, config.clone()).await;
    assert_eq!(done.report.and_then(|r| r.status()), Some(Status::Critical));
    let mut seen = None;
    while let Ok(Some(e)) =
        tokio::time::timeout(std::time::Duration::from_secs(5), sub.recv()).await
    {
        if let Event::Checks { results, .. } = &*e {
            seen = results.iter().find(|c| c.check == FORECAST_FULL).cloned();
            break;
        }
    }
    let r = seen.unwrap_or_else(|| panic!("forecast_full not in the round's results"));
    assert_eq!(r.status, Status::Critical, "{}", r.message);
    assert!(r.message.contains("900 MB"), "{}", r.message);
}

/// Two agents share one PostgreSQL history store: both write the same target names at
/// the same time through the real write path, then roll up concurrently. Each agent's
/// series, samples, latest results, transitions and watermarks are its own and complete,
/// and each agent's rollups equal the aggregates computed from its own raw samples.
#[tokio::test]
async fn two_agents_share_one_postgres_store() {
    use dbwarden::health::{CheckResult, Scope, Status, Unit};
    use dbwarden::store::{CheckSource, Record};
    let Some(admin) = common::pg::pg_url() else {
        return;
    };
    let pg = common::pg::PgDb::create(&admin).await;
    let url = SecretUrl::new(pg.url.clone());
    let agents = ["agent-a", "agent-b"];
    let targets = ["t1", "t2"];
    let end = chrono::Utc::now().timestamp_millis().div_euclid(H) * H - H;
    let start = end - 50 * H;
    // Under the writer's 10-minute gap limit: no "no data" gaps between samples.
    const STEP: i64 = 300 * S;
    let steps = (end - start) / STEP;
    // Every value differs by agent, target and time, so a crossed row would show.
    let value = |a: usize, t: usize, i: i64| {
        (a * 1_000_000 + t * 100_000) as f64 + (i * 37 % 101) as f64 + i as f64
    };
    let at = |ms: i64| {
        chrono::Utc
            .timestamp_millis_opt(ms)
            .single()
            .unwrap_or_default()
    };
    let mut stores = Vec::new();
    for a in agents {
        stores.push(
            Store::open_as(&url, None, a)
                .await
                .unwrap_or_else(|e| panic!("{e}")),
        );
    }
    let write = |a: usize, store: &Store| {
        let store = store.clone();
        async move {
            for i in 0..steps {
                for (t, target) in targets.iter().enumerate() {
                    store.push(Record::Metric {
                        ts: at(start + i * STEP),
                        target: target.to_string(),
                        metric: "m".into(),
                        value: value(a, t, i),
                    });
                }
                if i % 25 == 0 {
                    store.flush().await.unwrap_or_else(|e| panic!("flush: {e}"));
                }
            }
            for (t, target) in targets.iter().enumerate() {
                // The last value confirmed at `end` (unchanged: only last_ts moves).
                store.push(Record::Metric {
                    ts: at(end),
                    target: target.to_string(),
                    metric: "m".into(),
                    value: value(a, t, steps - 1),
                });
                store.push(Record::Checks {
                    ts: at(end),
                    target: target.to_string(),
                    run_id: None,
                    source: CheckSource::Health,
                    results: vec![CheckResult {
                        check: "connectivity".into(),
                        status: Status::Warning,
                        value: Some(a as f64 + 300.0),
                        unit: Unit::Milliseconds,
                        warning: Some(250.0),
                        critical: Some(1000.0),
                        message: agents[a].into(),
                        subject: None,
                        scope: Scope::Database,
                    }],
                });
                store.push(Record::Transition {
                    ts: at(end),
                    target: target.to_string(),
                    check: Some("connectivity".into()),
                    from: Status::Ok,
                    to: Status::Warning,
                    message: agents[a].into(),
                });
            }
            store.flush().await.unwrap_or_else(|e| panic!("flush: {e}"));
        }
    };
    tokio::join!(write(0, &stores[0]), write(1, &stores[1]));
    let never = CancellationToken::new();
    let roll = |store: &Store, agent: &'static str| {
        let (store, never) = (store.clone(), never.clone());
        async move {
            for target in targets {
                for g in [Grain::Hour, Grain::Day(chrono_tz::UTC)] {
                    roll_up(&store, agent, target, g, end, &never)
                        .await
                        .unwrap_or_else(|e| panic!("{agent} {target}: {e}"));
                }
            }
        }
    };
    tokio::join!(roll(&stores[0], agents[0]), roll(&stores[1], agents[1]));

    let mut db = pg.connect().await;
    let all_rollups: Vec<Row> = sqlx::query_as(
        "SELECT series_id, resolution, ts, min, max, avg, last, covered_ms FROM rollups ORDER BY series_id, resolution, ts",
    )
    .fetch_all(&mut db)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    for (a, agent) in agents.iter().enumerate() {
        for (t, target) in targets.iter().enumerate() {
            let (id, last_ts): (i64, i64) = sqlx::query_as(
                "SELECT id, last_ts FROM series WHERE agent = $1 AND target = $2 AND metric = 'm' AND label = ''",
            )
            .bind(agent)
            .bind(target)
            .fetch_one(&mut db)
            .await
            .unwrap_or_else(|e| panic!("{agent} {target}: its series: {e}"));
            let samples: Vec<(i64, Option<f64>)> =
                sqlx::query_as("SELECT ts, value FROM samples WHERE series_id = $1 ORDER BY ts")
                    .bind(id)
                    .fetch_all(&mut db)
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
            let sent: Vec<(i64, Option<f64>)> = (0..steps)
                .map(|i| (start + i * STEP, Some(value(a, t, i))))
                .collect();
            assert_eq!(
                samples, sent,
                "{agent} {target}: its samples, all and only its own"
            );
            let s = [Series {
                id,
                target,
                samples,
                last_ts,
            }];
            let mut want = brute_force(&s, target, Grain::Hour, end);
            want.extend(brute_force(&s, target, Grain::Day(chrono_tz::UTC), end));
            want.sort_by_key(|r| (r.0, r.1, r.2));
            let got: Vec<Row> = all_rollups.iter().filter(|r| r.0 == id).copied().collect();
            assert!(
                got.len() >= 50,
                "{agent} {target}: {} rollup rows",
                got.len()
            );
            assert_rows_eq(&got, &want);
            let latest: (String, f64) = sqlx::query_as(
                "SELECT message, value FROM check_latest WHERE agent = $1 AND target = $2 AND check_name = 'connectivity'",
            )
            .bind(agent)
            .bind(target)
            .fetch_one(&mut db)
            .await
            .unwrap_or_else(|e| panic!("{agent} {target}: check_latest: {e}"));
            assert_eq!(latest, (agent.to_string(), a as f64 + 300.0));
            let n: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM health_transitions WHERE agent = $1 AND target = $2 AND message = $1",
            )
            .bind(agent)
            .bind(target)
            .fetch_one(&mut db)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(n, 1, "{agent} {target}: its transition");
            let marks: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM rollup_progress WHERE agent = $1 AND step IN ($2, $3) AND done_until = $4",
            )
            .bind(agent)
            .bind(format!("hour:{target}"))
            .bind(format!("day:{target}"))
            .bind(end)
            .fetch_one(&mut db)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
            assert!(marks >= 1, "{agent} {target}: its watermarks");
        }
    }
    let (series, latest): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM series WHERE metric = 'm'), (SELECT COUNT(*) FROM check_latest)",
    )
    .fetch_one(&mut db)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (series, latest),
        (4, 4),
        "one series and one latest result per agent and target"
    );
    for s in stores {
        s.close(std::time::Duration::from_secs(5)).await;
    }
    drop(db);
    pg.drop_db().await;
}
