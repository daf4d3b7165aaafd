//! Raw samples read back as what they mean: a step function per series. A sample's value
//! holds from its time until the next sample of its series, or until the series'
//! `last_ts` for the newest one; a NULL sample means "no data" from its time on. Trend
//! queries and rollups read this ([`Store::raw_samples`]).

use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, Row};

use super::read::bounded;
use super::{Pool, Store, StoreError, from_ms, ms};

/// Which series to read; `None` matches any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeriesFilter {
    pub agent: Option<String>,
    pub target: Option<String>,
    pub metric: Option<String>,
    /// `Some("")` for unlabelled series only.
    pub label: Option<String>,
}

/// A value and the time it held: `[from, to)`; `from == to` for a value confirmed once.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Step {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub value: f64,
}

/// One series with its steps within the range asked.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RawSeries {
    pub id: i64,
    pub agent: String,
    pub target: String,
    pub metric: String,
    /// '' for an unlabelled series.
    pub label: String,
    pub unit: String,
    pub last_ts: Option<DateTime<Utc>>,
    pub steps: Vec<Step>,
}

/// The step function of one series within `[from, to)` (ms), from its samples in time
/// order (including the newest one before `from`) and its `last_ts`: (from, to, value)
/// of every interval with data, clipped to the range. Pure.
pub fn steps(
    samples: &[(i64, Option<f64>)],
    last_ts: Option<i64>,
    from: i64,
    to: i64,
) -> Vec<(i64, i64, f64)> {
    let mut out = Vec::new();
    for (i, &(ts, value)) in samples.iter().enumerate() {
        let Some(v) = value else { continue };
        let end = match samples.get(i + 1) {
            Some(&(next, _)) => next,
            None => last_ts.map_or(ts, |l| l.max(ts)),
        };
        let (s, e) = (ts.max(from), end.min(to));
        if s < e || (ts == end && ts >= from && ts < to) {
            out.push((s, e.max(s), v));
        }
    }
    out
}

/// Appends `AND <column> = value` for each field a filter sets.
macro_rules! push_filter {
    ($q:expr, $f:expr, $alias:literal) => {{
        for (col, v) in [
            ("agent", &$f.agent),
            ("target", &$f.target),
            ("metric", &$f.metric),
            ("label", &$f.label),
        ] {
            if let Some(v) = v {
                $q.push(concat!(" AND ", $alias, "."))
                    .push(col)
                    .push(" = ")
                    .push_bind(v.clone());
            }
        }
    }};
}

impl Store {
    /// The series matching `filter`, each with its step function within `[from, to)`,
    /// ordered by id. A series without data in the range comes with no steps.
    pub async fn raw_samples(
        &self,
        filter: &SeriesFilter,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<RawSeries>, StoreError> {
        let pool = self.reader()?;
        let (from_ms_, to_ms) = (ms(from), ms(to));
        type Meta = (i64, String, String, String, String, String, Option<i64>);
        type Sample = (i64, i64, Option<f64>);
        let (meta, samples): (Vec<Meta>, Vec<Sample>) = bounded(async {
            Ok(on_pool!(&pool, p => {
                let mut q = QueryBuilder::new(
                    "SELECT x.id, x.agent, x.target, x.metric, x.label, x.unit, x.last_ts FROM series x WHERE 1 = 1",
                );
                push_filter!(q, filter, "x");
                q.push(" ORDER BY x.id");
                let meta = q
                    .build()
                    .fetch_all(p)
                    .await?
                    .iter()
                    .map(|r| -> Result<Meta, sqlx::Error> {
                        Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?,
                            r.try_get(4)?, r.try_get(5)?, r.try_get(6)?))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                // The samples in the range, and the newest one before it (the value
                // holding at `from`).
                let mut q = QueryBuilder::new(
                    "SELECT s.series_id, s.ts, s.value FROM series x JOIN samples s ON s.series_id = x.id WHERE s.ts >= ",
                );
                q.push_bind(from_ms_).push(" AND s.ts < ").push_bind(to_ms);
                push_filter!(q, filter, "x");
                q.push(
                    " UNION ALL SELECT s.series_id, s.ts, s.value FROM series x JOIN samples s ON s.series_id = x.id \
                     WHERE s.ts = (SELECT max(b.ts) FROM samples b WHERE b.series_id = x.id AND b.ts < ",
                );
                q.push_bind(from_ms_).push(")");
                push_filter!(q, filter, "x");
                q.push(" ORDER BY 1, 2");
                let samples = q
                    .build()
                    .fetch_all(p)
                    .await?
                    .iter()
                    .map(|r| -> Result<Sample, sqlx::Error> {
                        Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                (meta, samples)
            }))
        })
        .await?;
        let mut by_series: std::collections::HashMap<i64, Vec<(i64, Option<f64>)>> =
            Default::default();
        for (id, ts, v) in samples {
            by_series.entry(id).or_default().push((ts, v));
        }
        Ok(meta
            .into_iter()
            .map(|(id, agent, target, metric, label, unit, last_ts)| {
                let s = by_series.remove(&id).unwrap_or_default();
                RawSeries {
                    id,
                    agent,
                    target,
                    metric,
                    label,
                    unit,
                    last_ts: last_ts.map(from_ms),
                    steps: steps(&s, last_ts, from_ms_, to_ms)
                        .into_iter()
                        .map(|(f, t, value)| Step {
                            from: from_ms(f),
                            to: from_ms(t),
                            value,
                        })
                        .collect(),
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_value_holds_until_the_next_sample_or_last_ts() {
        let s = [
            (0, Some(1.0)),
            (100, Some(2.0)),
            (200, None),
            (300, Some(3.0)),
        ];
        assert_eq!(
            steps(&s, Some(400), 0, 1000),
            vec![(0, 100, 1.0), (100, 200, 2.0), (300, 400, 3.0)]
        );
        // Clipped to the range; the value before `from` holds into it.
        assert_eq!(
            steps(&s, Some(400), 50, 350),
            vec![(50, 100, 1.0), (100, 200, 2.0), (300, 350, 3.0)]
        );
    }

    #[test]
    fn a_value_confirmed_once_is_a_point() {
        assert_eq!(
            steps(&[(10, Some(5.0))], Some(10), 0, 100),
            vec![(10, 10, 5.0)]
        );
        assert!(steps(&[(10, Some(5.0))], Some(10), 11, 100).is_empty());
        assert!(steps(&[(10, None)], Some(50), 0, 100).is_empty());
    }
}
