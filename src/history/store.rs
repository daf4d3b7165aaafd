//! The rollup and retention SQL on the history store, one text for both dialects
//! (`QueryBuilder` renders `?` or `$n`).
//!
//! Rollups advance a watermark per agent, target and grain (`rollup_progress`), one bucket
//! per transaction together with its rows, so an interrupted run resumes where it stopped
//! and a bucket computed twice gives the same rows (upsert). Purges delete in batches of
//! at most `batch` rows per statement, oldest first, along the tables' (key, time) indexes.

use sqlx::{QueryBuilder, Row};
use tokio_util::sync::CancellationToken;

use super::rollup::{Bucket, Grain, Sample, aggregate};
use crate::store::{Pool, Store, StoreError};

/// One code path for both dialects (the store's own macro is private to it).
macro_rules! on_pool {
    ($pool:expr, $p:ident => $body:expr) => {
        match $pool {
            Pool::Sqlite($p) => $body,
            Pool::Postgres($p) => $body,
        }
    };
}

/// A series' id, last_ts, and the sample in effect at a range's start.
type Head = (i64, Option<i64>, Option<i64>, Option<f64>);

/// Rollup rows per INSERT statement (8 binds each, under SQLite's 32766).
const UPSERT_ROWS: usize = 1000;

/// What one rollup pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RollupStats {
    /// Buckets (hours or days) completed.
    pub buckets: u64,
    /// Rollup rows written.
    pub rows: u64,
}

/// A target's series: (id, last_ts).
async fn series_ids(
    pool: &Pool,
    agent: &str,
    target: &str,
) -> Result<Vec<(i64, Option<i64>)>, sqlx::Error> {
    on_pool!(pool, p => {
        let mut q = QueryBuilder::new("SELECT id, last_ts FROM series WHERE agent = ");
        q.push_bind(agent).push(" AND target = ").push_bind(target).push(" ORDER BY id");
        q.build()
            .fetch_all(p)
            .await?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    })
}

/// The watermark of `step`, if any.
pub(crate) async fn progress(
    pool: &Pool,
    agent: &str,
    step: &str,
) -> Result<Option<i64>, sqlx::Error> {
    on_pool!(pool, p => {
        let mut q = QueryBuilder::new("SELECT done_until FROM rollup_progress WHERE agent = ");
        q.push_bind(agent).push(" AND step = ").push_bind(step);
        q.build().fetch_optional(p).await?.map(|r| r.try_get(0)).transpose()
    })
}

/// The oldest sample time of a target's series.
async fn oldest_sample(pool: &Pool, agent: &str, target: &str) -> Result<Option<i64>, sqlx::Error> {
    on_pool!(pool, p => {
        let mut q = QueryBuilder::new(
            "SELECT MIN((SELECT MIN(s.ts) FROM samples s WHERE s.series_id = r.id)) FROM series r WHERE r.agent = ",
        );
        q.push_bind(agent).push(" AND r.target = ").push_bind(target);
        q.build().fetch_one(p).await?.try_get::<Option<i64>, _>(0)
    })
}

/// Rolls up one bucket range `[from, to)` of a target's series and moves the watermark to
/// `to`, in one transaction. Returns the rows written.
pub(crate) async fn rollup_range(
    pool: &Pool,
    agent: &str,
    target: &str,
    grain: Grain,
    from: i64,
    to: i64,
) -> Result<u64, sqlx::Error> {
    let step = grain.progress_step(target);
    let res = grain.resolution();
    // SQLite: take the write lock up front. A deferred transaction that reads first and
    // writes later fails with SQLITE_BUSY_SNAPSHOT when the store's writer commits in
    // between (busy_timeout does not help there); IMMEDIATE waits its turn instead.
    let begin = match pool {
        Pool::Sqlite(_) => "BEGIN IMMEDIATE",
        Pool::Postgres(_) => "BEGIN",
    };
    on_pool!(pool, p => {
        let mut tx = p.begin_with(begin).await?;
        // Each series' last confirmation and the sample in effect at `from`.
        let mut q = QueryBuilder::new(
            "SELECT r.id, r.last_ts, \
             (SELECT s.ts FROM samples s WHERE s.series_id = r.id AND s.ts < ",
        );
        q.push_bind(from).push(
            " ORDER BY s.ts DESC LIMIT 1), \
             (SELECT s.value FROM samples s WHERE s.series_id = r.id AND s.ts < ",
        );
        q.push_bind(from)
            .push(" ORDER BY s.ts DESC LIMIT 1) FROM series r WHERE r.agent = ")
            .push_bind(agent)
            .push(" AND r.target = ")
            .push_bind(target)
            .push(" ORDER BY r.id");
        let heads: Vec<Head> = q
            .build()
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?)))
            .collect::<Result<_, sqlx::Error>>()?;
        let mut q = QueryBuilder::new(
            "SELECT s.series_id, s.ts, s.value FROM samples s JOIN series r ON r.id = s.series_id \
             WHERE r.agent = ",
        );
        q.push_bind(agent)
            .push(" AND r.target = ")
            .push_bind(target)
            .push(" AND s.ts >= ")
            .push_bind(from)
            .push(" AND s.ts < ")
            .push_bind(to)
            .push(" ORDER BY s.series_id, s.ts");
        let rows: Vec<(i64, i64, Option<f64>)> = q
            .build()
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect::<Result<_, sqlx::Error>>()?;
        let mut out: Vec<(i64, Bucket)> = Vec::new();
        let mut i = 0;
        for (id, last_ts, head_ts, head_value) in heads {
            let mut samples = Vec::new();
            if let Some(ts) = head_ts {
                samples.push(Sample { ts, value: head_value });
            }
            while i < rows.len() && rows[i].0 < id {
                i += 1;
            }
            while i < rows.len() && rows[i].0 == id {
                samples.push(Sample { ts: rows[i].1, value: rows[i].2 });
                i += 1;
            }
            out.extend(aggregate(grain, from, to, &samples, last_ts).into_iter().map(|b| (id, b)));
        }
        for chunk in out.chunks(UPSERT_ROWS) {
            let mut q = QueryBuilder::new(
                "INSERT INTO rollups (series_id, resolution, ts, min, max, avg, last, covered_ms) ",
            );
            q.push_values(chunk, |mut v, (id, b)| {
                v.push_bind(*id)
                    .push_bind(res)
                    .push_bind(b.ts)
                    .push_bind(b.min)
                    .push_bind(b.max)
                    .push_bind(b.avg)
                    .push_bind(b.last)
                    .push_bind(b.covered_ms);
            });
            q.push(
                " ON CONFLICT (series_id, resolution, ts) DO UPDATE SET min = excluded.min, \
                 max = excluded.max, avg = excluded.avg, last = excluded.last, \
                 covered_ms = excluded.covered_ms",
            );
            q.build().execute(&mut *tx).await?;
        }
        let mut q = QueryBuilder::new("INSERT INTO rollup_progress (agent, step, done_until) VALUES (");
        q.push_bind(agent)
            .push(", ")
            .push_bind(&step)
            .push(", ")
            .push_bind(to)
            .push(") ON CONFLICT (agent, step) DO UPDATE SET done_until = excluded.done_until");
        q.build().execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(out.len() as u64)
    })
}

/// Rolls a target's series up bucket by bucket, from its watermark (or its oldest sample)
/// to the last bucket ending before `until` (ms). Stops between buckets when cancelled.
pub async fn roll_up(
    store: &Store,
    agent: &str,
    target: &str,
    grain: Grain,
    until: i64,
    cancel: &CancellationToken,
) -> Result<RollupStats, StoreError> {
    let pool = store.history_pool()?;
    let mut stats = RollupStats::default();
    let mut done = match progress(&pool, agent, &grain.progress_step(target)).await? {
        Some(d) => d,
        None => match oldest_sample(&pool, agent, target).await? {
            Some(t) => grain.floor(t),
            None => return Ok(stats),
        },
    };
    loop {
        let end = grain.next(done);
        if end > until || cancel.is_cancelled() {
            break;
        }
        stats.rows += rollup_range(&pool, agent, target, grain, done, end).await?;
        stats.buckets += 1;
        done = end;
    }
    Ok(stats)
}

/// A table's purge: its time column and a fixed extra condition (`" AND ..."` or `""`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Purge {
    pub table: &'static str,
    pub ts_col: &'static str,
    pub extra: &'static str,
}

/// A key column's value in a purge.
#[derive(Debug, Clone)]
pub enum Key {
    Text(String),
    Int(i64),
}

/// Deletes the rows of `table` matching `keys` (and `extra`, a fixed SQL condition) with
/// `ts_col < horizon`, oldest first, at most about `batch` rows per statement. Returns the
/// rows deleted. Stops between batches when cancelled.
pub(crate) async fn purge_batched(
    pool: &Pool,
    what: Purge,
    keys: &[(&'static str, Key)],
    horizon: i64,
    batch: u64,
    cancel: &CancellationToken,
) -> Result<u64, sqlx::Error> {
    let Purge {
        table,
        ts_col,
        extra,
    } = what;
    let batch = i64::try_from(batch.max(1)).unwrap_or(i64::MAX);
    let mut deleted = 0u64;
    macro_rules! cond {
        ($q:ident, $bound:expr) => {{
            $q.push(" WHERE ");
            for (col, k) in keys {
                $q.push(*col).push(" = ");
                match k {
                    Key::Text(s) => $q.push_bind(s.clone()),
                    Key::Int(i) => $q.push_bind(*i),
                };
                $q.push(" AND ");
            }
            $q.push(ts_col).push(" < ").push_bind($bound).push(extra);
        }};
    }
    loop {
        if cancel.is_cancelled() {
            break;
        }
        let n = on_pool!(pool, p => {
            // The time of the row `batch` places from the oldest: delete up to it.
            let mut q = QueryBuilder::new(format!("SELECT {ts_col} FROM {table}"));
            cond!(q, horizon);
            q.push(format!(" ORDER BY {ts_col} LIMIT 1 OFFSET ")).push_bind(batch);
            let cut: Option<i64> = q.build().fetch_optional(p).await?.map(|r| r.try_get(0)).transpose()?;
            let bound = cut.unwrap_or(horizon);
            let mut d = QueryBuilder::new(format!("DELETE FROM {table}"));
            cond!(d, bound);
            let mut n = d.build().execute(p).await?.rows_affected();
            if n == 0 && let Some(c) = cut {
                // More than a batch share the oldest time: take them together.
                let mut d = QueryBuilder::new(format!("DELETE FROM {table}"));
                cond!(d, c + 1);
                n = d.build().execute(p).await?.rows_affected();
            }
            if cut.is_none() { deleted += n; break; }
            n
        });
        deleted += n;
    }
    Ok(deleted)
}

/// Retention horizons (Unix ms; rows older are deleted) of one purge pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Horizons {
    pub raw: i64,
    pub hourly: i64,
    pub daily: i64,
    pub job_runs: i64,
    pub transitions: i64,
    pub check_periods: i64,
    pub maintenance: i64,
    pub query_stats: i64,
    pub long_queries: i64,
    pub alerts: i64,
}

/// Rows deleted by one purge pass, per kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PurgeStats {
    pub samples: u64,
    pub rollups: u64,
    pub other: u64,
}

impl PurgeStats {
    pub fn total(&self) -> u64 {
        self.samples + self.rollups + self.other
    }
}

/// The per-target tables with their own retention: (table, time column, extra condition).
fn tables(h: &Horizons) -> [(&'static str, &'static str, &'static str, i64); 8] {
    [
        (
            "job_runs",
            "started_at",
            " AND outcome <> 'running'",
            h.job_runs,
        ),
        ("health_transitions", "ts", "", h.transitions),
        ("check_periods", "to_ts", "", h.check_periods),
        ("maintenance_actions", "started_at", "", h.maintenance),
        ("query_stats", "ts", "", h.query_stats),
        ("long_queries", "ts", "", h.long_queries),
        // Plans of sampled statements live as long as the samples they explain.
        ("query_plans", "ts", "", h.query_stats),
        // Only notifications that are done with (delivered or given up), never pending ones.
        (
            "alert_outbox",
            "created_at",
            " AND state <> 'pending'",
            h.alerts,
        ),
    ]
}

/// Deletes a target's history older than the horizons. Raw samples are kept until both
/// rollups have passed them (a rollup that fell behind never loses data), and the newest
/// sample before the raw horizon of each series stays: its value holds into the kept
/// range (store on change), so the retained step function is unchanged.
pub async fn purge_target(
    store: &Store,
    agent: &str,
    target: &str,
    tz: chrono_tz::Tz,
    h: &Horizons,
    batch: u64,
    cancel: &CancellationToken,
) -> Result<PurgeStats, StoreError> {
    let pool = store.history_pool()?;
    let mut stats = PurgeStats::default();
    let rolled = [Grain::Hour, Grain::Day(tz)];
    let mut raw = h.raw;
    for g in rolled {
        raw = raw.min(
            progress(&pool, agent, &g.progress_step(target))
                .await?
                .unwrap_or(i64::MIN),
        );
    }
    for (id, _) in series_ids(&pool, agent, target).await? {
        let keep: Option<i64> = on_pool!(&pool, p => {
            let mut q = QueryBuilder::new("SELECT MAX(ts) FROM samples WHERE series_id = ");
            q.push_bind(id).push(" AND ts < ").push_bind(raw);
            q.build().fetch_one(p).await?.try_get(0)?
        });
        if let Some(keep) = keep {
            stats.samples += purge_batched(
                &pool,
                Purge {
                    table: "samples",
                    ts_col: "ts",
                    extra: "",
                },
                &[("series_id", Key::Int(id))],
                keep,
                batch,
                cancel,
            )
            .await?;
        }
        for (res, horizon) in [
            (super::rollup::HOUR, h.hourly),
            (super::rollup::DAY, h.daily),
        ] {
            stats.rollups += purge_batched(
                &pool,
                Purge {
                    table: "rollups",
                    ts_col: "ts",
                    extra: "",
                },
                &[("series_id", Key::Int(id)), ("resolution", Key::Int(res))],
                horizon,
                batch,
                cancel,
            )
            .await?;
        }
    }
    for (table, col, extra, horizon) in tables(h) {
        stats.other += purge_batched(
            &pool,
            Purge {
                table,
                ts_col: col,
                extra,
            },
            &[("target", Key::Text(target.into()))],
            horizon,
            batch,
            cancel,
        )
        .await?;
    }
    Ok(stats)
}
