//! Trend queries: one series of a target over a time range, in buckets of a step.
//!
//! This is the interface the API (`GET /api/v1/targets/{name}/metrics`), the dashboard's
//! charts and `dbwarden history metrics` read. The bucket arithmetic is a pure function
//! ([`bucketize`]) over the raw step function ([`Store::raw_samples`], resolution
//! [`Resolution::Raw`]).

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
        let avg = if w > 0 {
            Some(wsum / w as f64)
        } else if pn > 0 {
            Some(psum / f64::from(pn))
        } else {
            None
        };
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

    /// The steps of one series in a range, oldest first (of the first agent's series
    /// when several agents have one of this name).
    async fn raw_metric(&self, q: &TrendQuery) -> Result<Vec<(i64, i64, f64)>, StoreError> {
        let filter = SeriesFilter {
            agent: None,
            target: Some(q.target.clone()),
            metric: Some(q.metric.clone()),
            label: Some(q.label.clone().unwrap_or_default()),
        };
        let series = self.raw_samples(&filter, q.from, q.to).await?;
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
