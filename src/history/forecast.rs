//! Trend analysis (pure): robust growth rates and "full in N days" / "wraparound in N
//! days" forecasts from a series' history, and per-table dead-row growth between vacuums.
//!
//! Inputs are points (time in Unix ms, value), oldest first: the hourly (or daily) averages
//! of a series. Every forecast first asks whether there is enough history, and answers
//! "needs N more days" instead of guessing from too little.

use serde::Serialize;

const DAY_MS: f64 = 86_400_000.0;
/// Points a regression uses at most (Theil–Sen is quadratic): longer inputs are thinned
/// evenly.
const MAX_POINTS: usize = 400;
/// Forecasts further out than this are "not within 10 years": not growing, for a human.
pub const HORIZON_DAYS: f64 = 3650.0;

/// A fitted line: `value = intercept + slope_per_day * days since the first point`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Fit {
    pub slope_per_day: f64,
    pub intercept: f64,
}

/// The Theil–Sen estimator: the median of the slopes between every pair of points, and
/// the median of `value - slope * t` as intercept. Robust to outliers (up to ~29% of the
/// points) and to steps. `None` with fewer than two distinct times.
pub fn theil_sen(points: &[(i64, f64)]) -> Option<Fit> {
    let pts = thin(points, MAX_POINTS);
    let t0 = pts.first()?.0;
    let xs: Vec<(f64, f64)> = pts
        .iter()
        .filter(|p| p.1.is_finite())
        .map(|(t, v)| ((t - t0) as f64 / DAY_MS, *v))
        .collect();
    let mut slopes = Vec::with_capacity(xs.len() * xs.len() / 2);
    for (i, a) in xs.iter().enumerate() {
        for b in &xs[i + 1..] {
            if b.0 != a.0 {
                slopes.push((b.1 - a.1) / (b.0 - a.0));
            }
        }
    }
    let slope = median(&mut slopes)?;
    let mut icepts: Vec<f64> = xs.iter().map(|(t, v)| v - slope * t).collect();
    Some(Fit {
        slope_per_day: slope,
        intercept: median(&mut icepts)?,
    })
}

fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// At most `max` points, evenly spread, the first and last kept.
fn thin(points: &[(i64, f64)], max: usize) -> Vec<(i64, f64)> {
    if points.len() <= max || max < 2 {
        return points.to_vec();
    }
    let step = (points.len() - 1) as f64 / (max - 1) as f64;
    (0..max)
        .map(|i| points[((i as f64 * step).round() as usize).min(points.len() - 1)])
        .collect()
}

/// What a forecast concluded.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Forecast {
    /// Not enough history to say: how many more days it needs.
    NeedsHistory { have_days: f64, needs_days: f64 },
    /// Flat or shrinking (or reaching the limit further out than [`HORIZON_DAYS`]).
    NotGrowing { rate_per_day: f64, current: f64 },
    /// At this rate the limit is reached in `days`.
    Reaches {
        rate_per_day: f64,
        current: f64,
        limit: f64,
        days: f64,
    },
}

impl Forecast {
    /// Days until the limit, when it is reached within the horizon.
    pub fn days(&self) -> Option<f64> {
        match self {
            Forecast::Reaches { days, .. } => Some(*days),
            _ => None,
        }
    }
}

/// The history needed and used by a forecast.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    /// Less history than this: [`Forecast::NeedsHistory`].
    pub min_days: f64,
    /// Only the newest this-many days are fitted.
    pub days: f64,
}

impl Default for Window {
    fn default() -> Self {
        Window {
            min_days: 3.0,
            days: 30.0,
        }
    }
}

/// The newest `w.days` of `points`, or how much more history is needed.
fn recent(points: &[(i64, f64)], w: Window) -> Result<&[(i64, f64)], Forecast> {
    let span = match (points.first(), points.last()) {
        (Some(a), Some(b)) => (b.0 - a.0) as f64 / DAY_MS,
        _ => 0.0,
    };
    if points.len() < 3 || span < w.min_days {
        return Err(Forecast::NeedsHistory {
            have_days: span.max(0.0),
            needs_days: (w.min_days - span.max(0.0)).max(0.0),
        });
    }
    let end = points.last().map_or(0, |p| p.0);
    let start = end - (w.days * DAY_MS) as i64;
    let from = points.partition_point(|p| p.0 < start);
    Ok(&points[from..])
}

/// "Full in N days": when a growing size (bytes) reaches `capacity` (bytes), by Theil–Sen
/// over the window. Flat or shrinking: not growing.
pub fn full_in(points: &[(i64, f64)], capacity: f64, w: Window) -> Forecast {
    let pts = match recent(points, w) {
        Ok(p) => p,
        Err(f) => return f,
    };
    let last = pts.last().map_or(0.0, |p| p.1);
    let Some(fit) = theil_sen(pts) else {
        return Forecast::NotGrowing {
            rate_per_day: 0.0,
            current: last,
        };
    };
    // Projected from the fitted line's value now, not the last point (which may be noise).
    let span = match (pts.first(), pts.last()) {
        (Some(a), Some(b)) => (b.0 - a.0) as f64 / DAY_MS,
        _ => 0.0,
    };
    let current = fit.intercept + fit.slope_per_day * span;
    reach(fit.slope_per_day, current, capacity)
}

/// From a rate and the current value to a forecast against `limit`.
fn reach(rate: f64, current: f64, limit: f64) -> Forecast {
    if current >= limit {
        return Forecast::Reaches {
            rate_per_day: rate,
            current,
            limit,
            days: 0.0,
        };
    }
    if rate <= 0.0 || !rate.is_finite() {
        return Forecast::NotGrowing {
            rate_per_day: rate,
            current,
        };
    }
    let days = (limit - current) / rate;
    if days > HORIZON_DAYS {
        Forecast::NotGrowing {
            rate_per_day: rate,
            current,
        }
    } else {
        Forecast::Reaches {
            rate_per_day: rate,
            current,
            limit,
            days,
        }
    }
}

/// The consumption rate of an age series (XID or MultiXact age, here as % of the 2^31
/// horizon) per day: the rises summed over the window's time, drops (a freezing vacuum
/// moving the horizon) left out, so a sawtooth still shows what is consumed; and when the
/// age reaches `limit` if nothing freezes in between.
pub fn wraparound_in(points: &[(i64, f64)], limit: f64, w: Window) -> Forecast {
    let pts = match recent(points, w) {
        Ok(p) => p,
        Err(f) => return f,
    };
    let current = pts.last().map_or(0.0, |p| p.1);
    let span = match (pts.first(), pts.last()) {
        (Some(a), Some(b)) if b.0 > a.0 => (b.0 - a.0) as f64 / DAY_MS,
        _ => {
            return Forecast::NotGrowing {
                rate_per_day: 0.0,
                current,
            };
        }
    };
    let rises: f64 = pts.windows(2).map(|p| (p[1].1 - p[0].1).max(0.0)).sum();
    reach(rises / span, current, limit)
}

/// Dead-row growth of one table since its last vacuum: the rows-per-day slope (Theil–Sen)
/// over the points after the newest drop (a vacuum), and how long that stretch is.
/// `None` with fewer than three points since the drop.
pub fn growth_since_vacuum(points: &[(i64, f64)]) -> Option<(f64, f64)> {
    // A drop of more than half (or to zero) is a vacuum; noise is not.
    let start = points
        .windows(2)
        .rposition(|p| p[1].1 < p[0].1 * 0.5 || (p[1].1 == 0.0 && p[0].1 > 0.0))
        .map_or(0, |i| i + 1);
    let since = &points[start..];
    if since.len() < 3 {
        return None;
    }
    let fit = theil_sen(since)?;
    let days = (since[since.len() - 1].0 - since[0].0) as f64 / DAY_MS;
    Some((fit.slope_per_day, days))
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: i64 = 86_400_000;
    const H: i64 = D / 24;

    /// Hourly points over `days` days from f(day).
    fn series(days: i64, f: impl Fn(f64) -> f64) -> Vec<(i64, f64)> {
        (0..=days * 24)
            .map(|h| (h * H, f(h as f64 / 24.0)))
            .collect()
    }

    /// A deterministic pseudo-random noise in [-1, 1].
    fn noise(i: f64) -> f64 {
        ((i * 12.9898).sin() * 43_758.545).fract() * 2.0 - 1.0
    }

    fn days(f: &Forecast) -> f64 {
        f.days().unwrap_or_else(|| panic!("expected a date: {f:?}"))
    }

    #[test]
    fn a_linear_series_gives_its_slope_and_date() {
        // 100 GB growing by 1 GB/day towards 130 GB: 30 days (measured at day 10: 20 left).
        let s = series(10, |d| 100.0 + d);
        let fit = theil_sen(&s).unwrap_or_else(|| panic!("no fit"));
        assert!((fit.slope_per_day - 1.0).abs() < 1e-9, "{fit:?}");
        assert!((fit.intercept - 100.0).abs() < 1e-9);
        let f = full_in(&s, 130.0, Window::default());
        assert!((days(&f) - 20.0).abs() < 1e-6, "{f:?}");
    }

    #[test]
    fn noise_and_outliers_barely_move_the_estimate() {
        let mut s = series(20, |d| 50.0 + 2.0 * d);
        for (i, p) in s.iter_mut().enumerate() {
            p.1 += 3.0 * noise(i as f64);
        }
        // A few wild outliers (a failed probe reporting 0, a spike).
        s[100].1 = 0.0;
        s[200].1 = 10_000.0;
        s[300].1 = 0.0;
        let fit = theil_sen(&s).unwrap_or_else(|| panic!("no fit"));
        assert!((fit.slope_per_day - 2.0).abs() < 0.1, "{fit:?}");
        let f = full_in(&s, 200.0, Window::default());
        // At day 20 the size is ~90: 110 to go at 2/day, ~55 days.
        assert!((days(&f) - 55.0).abs() < 3.0, "{f:?}");
    }

    #[test]
    fn a_stepped_series_follows_its_overall_rise() {
        // +10 every 5 days (a table that grows in batches): 2/day overall.
        let s = series(30, |d| 100.0 + 10.0 * (d / 5.0).floor());
        let fit = theil_sen(&s).unwrap_or_else(|| panic!("no fit"));
        assert!(
            (fit.slope_per_day - 2.0).abs() < 0.5,
            "a stepped series: {fit:?}"
        );
    }

    #[test]
    fn flat_and_shrinking_series_are_not_growing() {
        for s in [
            series(10, |_| 70.0),
            series(10, |d| 70.0 - d),
            series(10, |d| 70.0 + 0.01 * noise(d * 24.0)),
        ] {
            let f = full_in(&s, 100.0, Window::default());
            assert!(
                matches!(f, Forecast::NotGrowing { .. }),
                "expected not growing: {f:?}"
            );
        }
        // Growing so slowly the limit is more than 10 years away: not growing either.
        let f = full_in(&series(10, |d| 1.0 + 1e-6 * d), 100.0, Window::default());
        assert!(matches!(f, Forecast::NotGrowing { .. }), "{f:?}");
    }

    #[test]
    fn too_little_history_says_how_much_more_it_needs() {
        let f = full_in(&series(1, |d| d), 100.0, Window::default());
        assert_eq!(
            f,
            Forecast::NeedsHistory {
                have_days: 1.0,
                needs_days: 2.0
            }
        );
        let f = full_in(&[], 100.0, Window::default());
        assert!(matches!(f, Forecast::NeedsHistory { needs_days, .. } if needs_days == 3.0));
    }

    #[test]
    fn already_full_is_zero_days() {
        let f = full_in(&series(5, |_| 120.0), 100.0, Window::default());
        assert_eq!(f.days(), Some(0.0));
    }

    #[test]
    fn only_the_window_is_fitted() {
        // Fast growth long ago, flat for the last 30 days: not growing now.
        let mut s = series(60, |d| if d < 30.0 { 10.0 * d } else { 300.0 });
        s.retain(|p| p.1.is_finite());
        let f = full_in(&s, 1000.0, Window::default());
        assert!(matches!(f, Forecast::NotGrowing { .. }), "{f:?}");
    }

    #[test]
    fn wraparound_counts_consumption_through_freezes() {
        // Age (percent of the horizon) rises 1 per day and a vacuum halves it every 10
        // days: consumption is still 1/day; at 15 now, 85 to go.
        let s = series(25, |d| {
            let since = d % 10.0;
            let base = if d < 10.0 { 10.0 } else { 5.0 };
            base + since
        });
        let f = wraparound_in(&s, 100.0, Window::default());
        let d = days(&f);
        assert!((80.0..95.0).contains(&d), "{f:?}");
        // A slope fit would have said "not growing" or worse: the sawtooth's trend is flat.
        let flat = series(10, |_| 20.0);
        assert!(matches!(
            wraparound_in(&flat, 100.0, Window::default()),
            Forecast::NotGrowing { .. }
        ));
    }

    #[test]
    fn dead_rows_grow_between_vacuums() {
        // 1000 rows/day, vacuumed at day 4 (to ~0), then 1000/day again.
        let s = series(7, |d| {
            if d < 4.0 {
                1000.0 * d
            } else {
                1000.0 * (d - 4.0)
            }
        });
        let (rate, since) = growth_since_vacuum(&s).unwrap_or_else(|| panic!("no growth"));
        assert!((rate - 1000.0).abs() < 1.0, "{rate}");
        assert!((since - 3.0).abs() < 0.1, "{since}");
        assert_eq!(growth_since_vacuum(&s[..2]), None);
    }

    #[test]
    fn thinning_keeps_the_ends() {
        let s = series(100, |d| d);
        let t = thin(&s, 50);
        assert_eq!(t.len(), 50);
        assert_eq!(t.first(), s.first());
        assert_eq!(t.last(), s.last());
    }
}
