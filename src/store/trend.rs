//! Trend queries: one series of a target over a time range, in buckets of a step.
//!
//! This is the interface the API (`GET /api/v1/targets/{name}/metrics`), the dashboard's
//! charts and `dbwarden history metrics` read. The range and step pick the resolution
//! ([`pick_resolution`]): the raw step function ([`Store::raw_samples`], [`bucketize`]) for
//! recent ranges at fine steps, else the hourly or daily rollups the `rollup` jobs write
//! ([`bucketize_pieces`]), completed by the raw steps after the rollup's watermark.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, Row};

use super::raw::SeriesFilter;
use super::read::bounded;
use super::{Pool, Store, StoreError, from_ms, ms};

/// Points a trend answers with when the caller gives no step.
pub const DEFAULT_POINTS: i64 = 240;
/// Points a trend answers with at most: a smaller step is widened.
pub const MAX_POINTS: i64 = 5000;

/// What a trend query asks for.
#[derive(Debug, Clone)]
pub struct TrendQuery {
    pub target: String,
    pub metric: String,
    /// A series' label (a table name for `table.*` metrics); `None` for unlabelled series.
    pub label: Option<String>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Bucket width; `None` picks one giving about [`DEFAULT_POINTS`] points.
    pub step: Option<Duration>,
}

/// Which data a trend was computed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    Raw,
    Hour,
    Day,
}

/// A series in buckets: what the API returns and the dashboard draws.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Trend {
    pub target: String,
    pub metric: String,
    pub label: Option<String>,
    pub unit: String,
    pub resolution: Resolution,
    pub step_seconds: u64,
    pub points: Vec<TrendPoint>,
}

/// One bucket, starting at `t`; all `None` when the bucket holds no data.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TrendPoint {
    pub t: DateTime<Utc>,
    pub avg: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub last: Option<f64>,
}

/// A series a target has, for listing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SeriesInfo {
    pub metric: String,
    pub label: Option<String>,
    pub unit: String,
}

/// The bucket width in seconds for a range and an optional requested step: the requested
/// step (at least one second), widened so the range has at most [`MAX_POINTS`] buckets;
/// without a step, about [`DEFAULT_POINTS`] buckets.
pub fn step_seconds(from: DateTime<Utc>, to: DateTime<Utc>, step: Option<Duration>) -> u64 {
    let span = (to - from).num_seconds().max(1);
    let floor = (span + MAX_POINTS - 1) / MAX_POINTS;
    let wanted = match step {
        Some(s) => i64::try_from(s.as_secs()).unwrap_or(i64::MAX).max(1),
        None => (span + DEFAULT_POINTS - 1) / DEFAULT_POINTS,
    };
    wanted.max(floor).max(1) as u64
}

/// Buckets of `step` seconds aligned to the epoch covering `[from, to)`, each with the
/// minimum, maximum, time-weighted mean and last value of the steps overlapping it (a
/// point step counts for min/max/last, and for the mean only when the bucket has no
/// longer step). `steps` must be in time order.
pub fn bucketize(
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    step: u64,
    steps: &[(i64, i64, f64)],
) -> Vec<TrendPoint> {
    let step_ms = i64::try_from(step.max(1)).unwrap_or(i64::MAX / 1000) * 1000;
    let start = ms(from).div_euclid(step_ms) * step_ms;
    let end = ms(to);
    let mut out = Vec::new();
    let mut first = 0;
    let mut b = start;
    while b < end {
        let e = b + step_ms;
        while first < steps.len() && steps[first].1 < b.max(ms(from)) {
            first += 1;
        }
        let (mut wsum, mut w, mut psum, mut pn) = (0.0, 0i64, 0.0, 0u32);
        let (mut min, mut max, mut last) = (f64::INFINITY, f64::NEG_INFINITY, None);
        for &(s, t, v) in steps[first..].iter().take_while(|(s, _, _)| *s < e) {
            let (os, oe) = (s.max(b), t.min(e));
            if oe > os {
                wsum += v * (oe - os) as f64;
                w += oe - os;
            } else if s == t && s >= b {
                psum += v;
                pn += 1;
            } else {
                continue;
            }
            min = min.min(v);
            max = max.max(v);
            last = Some(v);
        }
        let avg = mean(wsum, w, psum, pn);
        out.push(match avg {
            None => TrendPoint {
                t: from_ms(b),
                avg: None,
                min: None,
                max: None,
                last: None,
            },
            Some(avg) => TrendPoint {
                t: from_ms(b),
                avg: Some(avg),
                min: Some(min),
                max: Some(max),
                last,
            },
        });
        b = e;
    }
    out
}

/// Raw samples are read for ranges starting at most this long ago (the default raw
/// retention) with steps under an hour.
pub const RAW_SPAN: i64 = 7 * 86_400;
/// Hourly rollups serve ranges starting at most this long ago (the default hourly
/// retention) with steps under a day; anything else is served from daily rollups.
pub const HOURLY_SPAN: i64 = 90 * 86_400;

/// The resolution a trend is computed from and its step (seconds), rounded up to a
/// multiple of the resolution: raw for ranges within the raw retention with steps under an
/// hour, hourly rollups within the hourly retention with steps under a day, daily rollups
/// otherwise. Pure.
pub fn pick_resolution(now: DateTime<Utc>, from: DateTime<Utc>, step: u64) -> (Resolution, u64) {
    let age = (now - from).num_seconds();
    let round_up = |s: u64, to: u64| s.div_ceil(to) * to;
    if age <= RAW_SPAN && step < 3600 {
        (Resolution::Raw, step)
    } else if age <= HOURLY_SPAN && step < 86_400 {
        (Resolution::Hour, round_up(step, 3600))
    } else {
        (Resolution::Day, round_up(step, 86_400))
    }
}

/// A part of a bucket: a rollup row, or a raw step; `point` is the value of a part with
/// no duration (`w == 0`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Piece {
    pub t: i64,
    pub min: f64,
    pub max: f64,
    /// Sum of value × milliseconds held.
    pub wsum: f64,
    pub w: i64,
    pub point: f64,
    pub last: f64,
}

/// The time-weighted mean of a bucket (`wsum` over `w` ms), or, when nothing in it had a
/// duration, the mean of its point values; `None` for an empty bucket.
fn mean(wsum: f64, w: i64, psum: f64, pn: u32) -> Option<f64> {
    if w > 0 {
        Some(wsum / w as f64)
    } else if pn > 0 {
        Some(psum / f64::from(pn))
    } else {
        None
    }
}

/// A raw step `[s, e)` of value `v` as pieces split at the bucket boundaries (multiples
/// of `step_ms`), so each bucket gets the time it held there.
pub fn split_step(s: i64, e: i64, v: f64, step_ms: i64) -> Vec<Piece> {
    let piece = |t: i64, w: i64| Piece {
        t,
        min: v,
        max: v,
        wsum: v * w as f64,
        w,
        point: v,
        last: v,
    };
    let step_ms = step_ms.max(1);
    let mut out = vec![];
    let mut t = s;
    loop {
        let boundary = (t.div_euclid(step_ms) + 1).saturating_mul(step_ms);
        let stop = boundary.min(e);
        out.push(piece(t, stop - t));
        if stop >= e {
            break out;
        }
        t = stop;
    }
}

/// Buckets of `step_ms` from `start` (a bucket boundary) to `end` combining the pieces
/// starting in each: min of minima, max of maxima, the time-weighted mean, the last
/// piece's last. `pieces` must be in time order. Pure.
pub fn bucketize_pieces(start: i64, end: i64, step_ms: i64, pieces: &[Piece]) -> Vec<TrendPoint> {
    let mut out = Vec::new();
    let mut i = 0;
    let mut b = start;
    while b < end {
        let e = b.saturating_add(step_ms.max(1));
        while i < pieces.len() && pieces[i].t < b {
            i += 1;
        }
        let (mut min, mut max, mut wsum, mut w, mut psum, mut pn, mut last) =
            (f64::INFINITY, f64::NEG_INFINITY, 0.0, 0i64, 0.0, 0u32, None);
        while i < pieces.len() && pieces[i].t < e {
            let p = &pieces[i];
            min = min.min(p.min);
            max = max.max(p.max);
            if p.w > 0 {
                wsum += p.wsum;
                w += p.w;
            } else {
                psum += p.point;
                pn += 1;
            }
            last = Some(p.last);
            i += 1;
        }
        let avg = mean(wsum, w, psum, pn);
        out.push(TrendPoint {
            t: from_ms(b),
            avg,
            min: avg.map(|_| min),
            max: avg.map(|_| max),
            last: avg.and(last),
        });
        b = e;
    }
    out
}

impl Store {
    /// The read pool, for the history housekeeping (rollups, purges) in `crate::history`:
    /// its statements run in their own short transactions next to the writer's.
    pub(crate) fn history_pool(&self) -> Result<Pool, StoreError> {
        self.reader()
    }

    /// The store's file when it is SQLite (for its self-maintenance and size).
    pub fn sqlite_file(&self) -> Option<std::path::PathBuf> {
        match &self.shared.target {
            super::connect::Target::Sqlite { path, .. } => Some(path.clone()),
            super::connect::Target::Postgres { .. } => None,
        }
    }

    /// One series of a target in buckets over a range, from the resolution
    /// [`pick_resolution`] chooses: raw steps, or hourly/daily rollups plus the raw steps
    /// after the rollup's watermark (the newest buckets not rolled up yet). Unknown target
    /// or metric: a trend without data (every bucket empty). With several agents' series
    /// of one name, the one confirmed most recently.
    pub async fn trend(&self, q: &TrendQuery) -> Result<Trend, StoreError> {
        self.trend_of(q, None).await
    }

    /// [`Store::trend`] of one agent's series (`None`: the one confirmed most recently),
    /// for showing each agent sharing the store apart ([`Store::series_agents`]).
    pub async fn trend_of(&self, q: &TrendQuery, agent: Option<&str>) -> Result<Trend, StoreError> {
        let (resolution, step) =
            pick_resolution(Utc::now(), q.from, step_seconds(q.from, q.to, q.step));
        let label = q.label.clone().unwrap_or_default();
        let series = self
            .series_meta(&q.target, &q.metric, &label, agent)
            .await?;
        let unit = series.as_ref().map(|s| s.2.clone()).unwrap_or_default();
        let mut trend = Trend {
            target: q.target.clone(),
            metric: q.metric.clone(),
            label: q.label.clone(),
            unit,
            resolution,
            step_seconds: step,
            points: Vec::new(),
        };
        let Some((id, agent, _)) = series else {
            trend.points = bucketize(q.from, q.to, step, &[]);
            return Ok(trend);
        };
        let res = match resolution {
            Resolution::Raw => {
                let steps = self.steps_of(&agent, q, q.from).await?;
                trend.points = bucketize(q.from, q.to, step, &steps);
                return Ok(trend);
            }
            Resolution::Hour => 3600,
            Resolution::Day => 86_400,
        };
        let step_ms = i64::try_from(step).unwrap_or(i64::MAX / 1000) * 1000;
        let start = ms(q.from).div_euclid(step_ms) * step_ms;
        let grain = if res == 3600 { "hour:" } else { "day:" };
        let pool = self.reader()?;
        let (rows, done) = bounded(async {
            Ok(on_pool!(&pool, p => {
                let mut b = QueryBuilder::new(
                    "SELECT ts, min, max, avg, last, covered_ms FROM rollups WHERE series_id = ",
                );
                b.push_bind(id)
                    .push(" AND resolution = ")
                    .push_bind(res)
                    .push(" AND ts >= ")
                    .push_bind(start)
                    .push(" AND ts < ")
                    .push_bind(ms(q.to))
                    .push(" ORDER BY ts");
                let rows = b
                    .build()
                    .fetch_all(p)
                    .await?
                    .iter()
                    .map(|r| -> Result<Piece, sqlx::Error> {
                        let (avg, w): (f64, i64) = (r.try_get(3)?, r.try_get(5)?);
                        Ok(Piece {
                            t: r.try_get(0)?,
                            min: r.try_get(1)?,
                            max: r.try_get(2)?,
                            wsum: avg * w as f64,
                            w,
                            point: avg,
                            last: r.try_get(4)?,
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let mut b = QueryBuilder::new("SELECT done_until FROM rollup_progress WHERE agent = ");
                b.push_bind(agent.as_str())
                    .push(" AND step = ")
                    .push_bind(format!("{grain}{}", q.target));
                let done: Option<i64> =
                    b.build().fetch_optional(p).await?.map(|r| r.try_get(0)).transpose()?;
                (rows, done)
            }))
        })
        .await?;
        // After the watermark the rollups are not written yet: the raw steps stand in.
        let tail_from = done.map_or(q.from, |d| from_ms(d.max(start)));
        let mut pieces = rows;
        if tail_from < q.to {
            pieces.retain(|p| p.t < ms(tail_from));
            for (s, e, v) in self.steps_of(&agent, q, tail_from).await? {
                pieces.extend(split_step(s, e, v, step_ms));
            }
        }
        trend.points = bucketize_pieces(start, ms(q.to), step_ms, &pieces);
        Ok(trend)
    }

    /// The series (id, agent, unit) of a target's metric and label ('' for none): `agent`'s,
    /// or the one confirmed most recently when several agents have one.
    async fn series_meta(
        &self,
        target: &str,
        metric: &str,
        label: &str,
        agent: Option<&str>,
    ) -> Result<Option<(i64, String, String)>, StoreError> {
        let pool = self.reader()?;
        bounded(async {
            Ok(on_pool!(&pool, p => {
                let mut b = QueryBuilder::new("SELECT id, agent, unit FROM series WHERE target = ");
                b.push_bind(target)
                    .push(" AND metric = ")
                    .push_bind(metric)
                    .push(" AND label = ")
                    .push_bind(label);
                if let Some(a) = agent {
                    b.push(" AND agent = ").push_bind(a);
                }
                b.push(" ORDER BY last_ts DESC LIMIT 1");
                b.build()
                    .fetch_optional(p)
                    .await?
                    .map(|r| -> Result<(i64, String, String), sqlx::Error> {
                        Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?))
                    })
                    .transpose()?
            }))
        })
        .await
    }

    /// The series a target has stored values for.
    pub async fn series_of(&self, target: &str) -> Result<Vec<SeriesInfo>, StoreError> {
        let pool = self.reader()?;
        bounded(async {
            Ok(on_pool!(&pool, p => {
                let mut q = QueryBuilder::new(
                    "SELECT DISTINCT metric, label, unit FROM series WHERE target = ",
                );
                q.push_bind(target).push(" ORDER BY metric, label");
                q.build()
                    .fetch_all(p)
                    .await?
                    .iter()
                    .map(|r| -> Result<SeriesInfo, sqlx::Error> {
                        let label: String = r.try_get(1)?;
                        Ok(SeriesInfo {
                            metric: r.try_get(0)?,
                            label: (!label.is_empty()).then_some(label),
                            unit: r.try_get(2)?,
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?
            }))
        })
        .await
    }

    /// The unlabelled series a target has, as (metric, agent), one row per agent that
    /// wrote it (several agents may share a store), ordered by metric and agent.
    pub async fn series_agents(&self, target: &str) -> Result<Vec<(String, String)>, StoreError> {
        let pool = self.reader()?;
        bounded(async {
            Ok(on_pool!(&pool, p => {
                let mut q = QueryBuilder::new("SELECT metric, agent FROM series WHERE target = ");
                q.push_bind(target)
                    .push(" AND label = '' ORDER BY metric, agent");
                q.build()
                    .fetch_all(p)
                    .await?
                    .iter()
                    .map(|r| -> Result<(String, String), sqlx::Error> {
                        Ok((r.try_get(0)?, r.try_get(1)?))
                    })
                    .collect::<Result<Vec<_>, _>>()?
            }))
        })
        .await
    }

    /// The raw steps of one agent's series of a query within `[from, q.to)`, oldest first.
    async fn steps_of(
        &self,
        agent: &str,
        q: &TrendQuery,
        from: DateTime<Utc>,
    ) -> Result<Vec<(i64, i64, f64)>, StoreError> {
        let filter = SeriesFilter {
            agent: Some(agent.to_string()),
            target: Some(q.target.clone()),
            metric: Some(q.metric.clone()),
            label: Some(q.label.clone().unwrap_or_default()),
        };
        let series = self.raw_samples(&filter, from, q.to).await?;
        Ok(series
            .into_iter()
            .next()
            .map(|s| {
                s.steps
                    .into_iter()
                    .map(|x| (ms(x.from), ms(x.to), x.value))
                    .collect()
            })
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(s, 0).single().unwrap_or_default()
    }

    #[test]
    fn buckets_are_aligned_and_weigh_values_by_the_time_they_held() {
        // 1.0 from 60 s to 90 s, 3.0 from 90 s to 120 s, 5.0 from 150 s to 160 s.
        let steps = vec![
            (0, 60_000, 100.0),
            (60_000, 90_000, 1.0),
            (90_000, 150_000, 3.0),
            (150_000, 160_000, 5.0),
        ];
        let p = bucketize(at(60), at(240), 60, &steps);
        assert_eq!(p.len(), 3);
        assert_eq!(p[0].t, at(60));
        assert_eq!(
            (p[0].avg, p[0].min, p[0].max, p[0].last),
            (Some(2.0), Some(1.0), Some(3.0), Some(3.0))
        );
        // 3.0 for 30 s, 5.0 for 10 s.
        assert_eq!(p[1].avg, Some(3.5));
        assert_eq!(p[2].avg, None, "a bucket without data is empty");
    }

    #[test]
    fn a_constant_value_written_once_fills_every_bucket_it_held() {
        let p = bucketize(at(0), at(180), 60, &[(0, 170_000, 7.0)]);
        assert!(p.iter().all(|p| p.avg == Some(7.0)), "{p:?}");
    }

    #[test]
    fn an_unaligned_range_starts_at_the_bucket_holding_from() {
        let p = bucketize(at(90), at(180), 60, &[(100_000, 100_000, 1.0)]);
        assert_eq!(
            p.iter().map(|p| p.t).collect::<Vec<_>>(),
            vec![at(60), at(120)]
        );
        assert_eq!(p[0].avg, Some(1.0));
    }

    #[test]
    fn the_resolution_follows_the_range_and_step() {
        let now = at(1000 * 86_400);
        let ago = |d: i64| at(1000 * 86_400 - d * 86_400);
        assert_eq!(pick_resolution(now, ago(1), 60), (Resolution::Raw, 60));
        assert_eq!(pick_resolution(now, ago(1), 3600), (Resolution::Hour, 3600));
        assert_eq!(pick_resolution(now, ago(30), 600), (Resolution::Hour, 3600));
        assert_eq!(
            pick_resolution(now, ago(30), 5400),
            (Resolution::Hour, 7200)
        );
        assert_eq!(
            pick_resolution(now, ago(365), 3600),
            (Resolution::Day, 86_400)
        );
        assert_eq!(
            pick_resolution(now, ago(30), 86_400),
            (Resolution::Day, 86_400)
        );
    }

    #[test]
    fn pieces_combine_into_buckets_weighted_by_coverage() {
        let h = 3_600_000;
        let piece = |t: i64, avg: f64, w: i64| Piece {
            t,
            min: avg - 1.0,
            max: avg + 1.0,
            wsum: avg * w as f64,
            w,
            point: avg,
            last: avg,
        };
        // Two hours in one 2-hour bucket: 10 over a full hour, 40 over half an hour.
        let p = bucketize_pieces(0, 4 * h, 2 * h, &[piece(0, 10.0, h), piece(h, 40.0, h / 2)]);
        assert_eq!(p.len(), 2);
        assert_eq!(
            (p[0].avg, p[0].min, p[0].max, p[0].last),
            (Some(20.0), Some(9.0), Some(41.0), Some(40.0))
        );
        assert_eq!(p[1].avg, None);
    }

    #[test]
    fn the_step_is_widened_to_bound_the_points() {
        let day = Duration::from_secs(86_400);
        assert_eq!(step_seconds(at(0), at(86_400), None), 360);
        assert_eq!(step_seconds(at(0), at(86_400), Some(day)), 86_400);
        // One-second steps over a year would be 31 M points: widened.
        let s = step_seconds(at(0), at(365 * 86_400), Some(Duration::from_secs(1)));
        assert!((365 * 86_400 / s as i64) <= MAX_POINTS);
        assert_eq!(step_seconds(at(0), at(0), None), 1);
    }
}
