//! Trend queries: one series of a target over a time range, in buckets of a step.
//!
//! This is the interface the API (`GET /api/v1/targets/{name}/metrics`), the dashboard's
//! charts and `dbwarden history metrics` read. The bucket arithmetic is a pure function
//! ([`bucketize`]); the store read returns raw samples (resolution [`Resolution::Raw`]).

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, Row};

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
/// mean, minimum, maximum and last of the samples (time, value) falling in it. Samples
/// outside the range are ignored; `samples` must be in time order.
pub fn bucketize(
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    step: u64,
    samples: &[(DateTime<Utc>, f64)],
) -> Vec<TrendPoint> {
    let step_ms = i64::try_from(step.max(1)).unwrap_or(i64::MAX / 1000) * 1000;
    let start = ms(from).div_euclid(step_ms) * step_ms;
    let end = ms(to);
    let mut out = Vec::new();
    let mut it = samples
        .iter()
        .filter(|(t, _)| *t >= from && *t < to)
        .peekable();
    let mut b = start;
    while b < end {
        let (mut n, mut sum, mut min, mut max, mut last) =
            (0u64, 0.0, f64::INFINITY, f64::NEG_INFINITY, None);
        while let Some((t, v)) = it.peek() {
            if ms(*t) >= b + step_ms {
                break;
            }
            n += 1;
            sum += v;
            min = min.min(*v);
            max = max.max(*v);
            last = Some(*v);
            it.next();
        }
        out.push(if n == 0 {
            TrendPoint {
                t: from_ms(b),
                avg: None,
                min: None,
                max: None,
                last: None,
            }
        } else {
            TrendPoint {
                t: from_ms(b),
                avg: Some(sum / n as f64),
                min: Some(min),
                max: Some(max),
                last,
            }
        });
        b += step_ms;
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

    /// One series of a target in buckets over a range. Unknown target or metric: a trend
    /// without data (every bucket empty).
    pub async fn trend(&self, q: &TrendQuery) -> Result<Trend, StoreError> {
        let step = step_seconds(q.from, q.to, q.step);
        let samples = self.raw_metric(q).await?;
        let unit = self
            .series_of(&q.target)
            .await?
            .into_iter()
            .find(|s| s.metric == q.metric && s.label == q.label)
            .map(|s| s.unit)
            .unwrap_or_default();
        Ok(Trend {
            target: q.target.clone(),
            metric: q.metric.clone(),
            label: q.label.clone(),
            unit,
            resolution: Resolution::Raw,
            step_seconds: step,
            points: bucketize(q.from, q.to, step, &samples),
        })
    }

    /// The series a target has stored values for.
    pub async fn series_of(&self, target: &str) -> Result<Vec<SeriesInfo>, StoreError> {
        let pool = self.reader()?;
        bounded(async {
            Ok(on_pool!(&pool, p => {
                let mut q = QueryBuilder::new(
                    "SELECT m.metric, (SELECT c.unit FROM check_results c WHERE c.target = m.target \
                     AND c.check_name = m.metric ORDER BY c.ts DESC LIMIT 1) \
                     FROM (SELECT DISTINCT target, metric FROM metric_samples WHERE target = ",
                );
                q.push_bind(target).push(") m ORDER BY m.metric");
                q.build()
                    .fetch_all(p)
                    .await?
                    .iter()
                    .map(|r| -> Result<SeriesInfo, sqlx::Error> {
                        Ok(SeriesInfo {
                            metric: r.try_get(0)?,
                            label: None,
                            unit: r.try_get::<Option<String>, _>(1)?.unwrap_or_default(),
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?
            }))
        })
        .await
    }

    /// The raw samples of one series in a range, oldest first.
    async fn raw_metric(&self, q: &TrendQuery) -> Result<Vec<(DateTime<Utc>, f64)>, StoreError> {
        if q.label.is_some() {
            return Ok(Vec::new());
        }
        let pool = self.reader()?;
        bounded(async {
            Ok(on_pool!(&pool, p => {
                let mut b = QueryBuilder::new("SELECT ts, value FROM metric_samples WHERE target = ");
                b.push_bind(q.target.as_str())
                    .push(" AND metric = ")
                    .push_bind(q.metric.as_str())
                    .push(" AND ts >= ")
                    .push_bind(ms(q.from))
                    .push(" AND ts < ")
                    .push_bind(ms(q.to))
                    .push(" ORDER BY ts");
                b.build()
                    .fetch_all(p)
                    .await?
                    .iter()
                    .map(|r| -> Result<(DateTime<Utc>, f64), sqlx::Error> {
                        Ok((from_ms(r.try_get(0)?), r.try_get(1)?))
                    })
                    .collect::<Result<Vec<_>, _>>()?
            }))
        })
        .await
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
    fn buckets_are_aligned_and_aggregate_their_samples() {
        let samples = vec![
            (at(59), 100.0),
            (at(60), 1.0),
            (at(61), 3.0),
            (at(150), 5.0),
        ];
        let p = bucketize(at(60), at(240), 60, &samples);
        assert_eq!(p.len(), 3);
        assert_eq!(p[0].t, at(60));
        assert_eq!(
            (p[0].avg, p[0].min, p[0].max, p[0].last),
            (Some(2.0), Some(1.0), Some(3.0), Some(3.0))
        );
        assert_eq!(p[1].avg, Some(5.0));
        assert_eq!(p[2].avg, None, "a bucket without samples is empty");
    }

    #[test]
    fn an_unaligned_range_starts_at_the_bucket_holding_from() {
        let p = bucketize(at(90), at(180), 60, &[(at(100), 1.0)]);
        assert_eq!(
            p.iter().map(|p| p.t).collect::<Vec<_>>(),
            vec![at(60), at(120)]
        );
        assert_eq!(p[0].avg, Some(1.0));
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
