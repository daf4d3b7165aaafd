//! The history of the trend benchmarks (`history_trend`, `api_load`), generated directly in
//! SQL (no year of raw ingest): `metrics` series (`m0`, `m1`, …) per target of one agent,
//! 8 days of raw samples (the first target every 30 s with a value that changes every
//! sample, the worst case of store on change; the others a value changing every 10
//! minutes), and before those 90 days of hourly and 2 years of daily rollups, with the
//! rollup watermarks at the start of the raw range ([`catch_up`] brings them to a day).

use chrono_tz::UTC;
use dbwarden::history::rollup::Grain;
use dbwarden::history::store::roll_up;
use dbwarden::store::Store;
use sqlx::Connection;
use tokio_util::sync::CancellationToken;

pub const H: i64 = 3_600_000;
pub const D: i64 = 24 * H;

/// A direct connection to the store's database, for generating rows.
pub enum Db {
    Sqlite(sqlx::SqliteConnection),
    Pg(sqlx::PgConnection),
}

impl Db {
    pub async fn connect(url: &str) -> Db {
        let db = if url.starts_with("sqlite:") {
            sqlx::SqliteConnection::connect(url).await.map(Db::Sqlite)
        } else {
            sqlx::PgConnection::connect(url).await.map(Db::Pg)
        };
        db.unwrap_or_else(|e| panic!("bench setup: {e}"))
    }

    pub async fn exec(&mut self, sql: String) {
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
        if let Err(e) = r {
            panic!("bench setup: {e}");
        }
    }

    pub async fn close(self) {
        let _ = match self {
            Db::Sqlite(c) => c.close().await,
            Db::Pg(c) => c.close().await,
        };
    }
}

/// Whose series, and how many.
pub struct Fixture<'a> {
    pub agent: &'a str,
    pub targets: &'a [String],
    pub metrics: i64,
}

/// Replaces the agent's series with the generated history up to `now` (Unix ms); returns
/// the start of the raw range. `today` is the start of `now`'s day.
pub async fn fill(db: &mut Db, f: &Fixture<'_>, now: i64, today: i64) -> i64 {
    let agent = f.agent;
    for sql in [
        format!(
            "DELETE FROM samples WHERE series_id IN (SELECT id FROM series WHERE agent = '{agent}')"
        ),
        format!(
            "DELETE FROM rollups WHERE series_id IN (SELECT id FROM series WHERE agent = '{agent}')"
        ),
        format!("DELETE FROM rollup_progress WHERE agent = '{agent}'"),
        format!("DELETE FROM series WHERE agent = '{agent}'"),
    ] {
        db.exec(sql).await;
    }
    let first_id = 1_000_000;
    let n = f.targets.len() as i64 * f.metrics;
    let mut series = Vec::new();
    for (t, target) in f.targets.iter().enumerate() {
        for m in 0..f.metrics {
            series.push(format!(
                "({}, '{agent}', '{target}', 'm{m}', '', 'bytes', {now})",
                first_id + t as i64 * f.metrics + m
            ));
        }
    }
    db.exec(format!(
        "INSERT INTO series (id, agent, target, metric, label, unit, last_ts) VALUES {}",
        series.join(",")
    ))
    .await;
    let raw_from = today - 8 * D;
    let raw_sql = |step_ms: i64, first: i64, last: i64| {
        format!(
            "INSERT INTO samples (series_id, ts, value) \
             WITH RECURSIVE g(ts) AS (SELECT CAST({raw_from} AS BIGINT) UNION ALL SELECT ts + {step_ms} FROM g WHERE ts + {step_ms} < {now}) \
             SELECT s.id, g.ts, (s.id % 97) * 1000.0 + (g.ts / {step_ms}) % 1000 FROM series s, g \
             WHERE s.agent = '{agent}' AND s.id BETWEEN {first} AND {last}"
        )
    };
    db.exec(raw_sql(30_000, first_id, first_id + f.metrics - 1))
        .await;
    if f.targets.len() > 1 {
        db.exec(raw_sql(600_000, first_id + f.metrics, first_id + n - 1))
            .await;
    }
    for (res, step, days) in [(3600, H, 90), (86_400, D, 730)] {
        db.exec(format!(
            "INSERT INTO rollups (series_id, resolution, ts, min, max, avg, last, covered_ms) \
             WITH RECURSIVE g(ts) AS (SELECT CAST({} AS BIGINT) UNION ALL SELECT ts + {step} FROM g WHERE ts + {step} < {}) \
             SELECT s.id, {res}, g.ts, 1.0, 3.0, 2.0, 2.0, {step} FROM series s, g WHERE s.agent = '{agent}'",
            today - days * D,
            raw_from
        ))
        .await;
    }
    for target in f.targets {
        for step in ["hour", "day"] {
            db.exec(format!(
                "INSERT INTO rollup_progress (agent, step, done_until) VALUES ('{agent}', '{step}:{target}', {raw_from})"
            ))
            .await;
        }
    }
    match db {
        Db::Sqlite(_) => db.exec("ANALYZE".into()).await,
        Db::Pg(_) => {
            db.exec("ANALYZE series; ANALYZE samples; ANALYZE rollups".into())
                .await
        }
    }
    raw_from
}

/// Rolls every target's raw samples up (hourly and daily) until `until` (Unix ms), as the
/// rollup job would have.
pub async fn catch_up(store: &Store, f: &Fixture<'_>, until: i64) {
    let never = CancellationToken::new();
    for target in f.targets {
        for g in [Grain::Hour, Grain::Day(UTC)] {
            roll_up(store, f.agent, target, g, until, &never)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }
}
