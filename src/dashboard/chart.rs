//! Trend charts drawn on the server as SVG: they show without JavaScript, need no chart
//! library (page weight) and no inline script or style (the CSP). The geometry is a pure
//! function of the trends' points (one trend per agent writing the series) and of the
//! size forecast, tested here.

use crate::health::Unit;
use crate::history::forecast::Forecast;
use crate::store::TrendPoint;

/// The drawing area in SVG user units (the SVG scales to its box through `viewBox`).
pub const WIDTH: f64 = 600.0;
pub const HEIGHT: f64 = 160.0;
/// Room on the left for the axis labels, and above/below for the top/bottom labels.
const LEFT: f64 = 56.0;
const PAD: f64 = 12.0;
/// With a forecast, the data take this share of the plot's width and the projection the
/// rest (its x scale runs from now to the day the limit is reached).
const DATA_SHARE: f64 = 0.7;

/// One trend laid out.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Path {
    /// One polyline per run of consecutive buckets with data (a gap breaks the line).
    pub lines: Vec<String>,
    /// The points with data, as (x, y, bucket time, value) for markers and their titles.
    pub points: Vec<(f64, f64, i64, f64)>,
}

/// A forecast laid out: the dashed projection from the fitted value now to the limit,
/// and the limit's horizontal line.
#[derive(Debug, Clone, PartialEq)]
pub struct Projection {
    /// (x1, y1, x2, y2); `None` when the limit is already reached (nothing to project).
    pub line: Option<(f64, f64, f64, f64)>,
    /// The y of the limit (capacity) line.
    pub limit_y: f64,
    /// The x where the data end and the projection starts ("now").
    pub now_x: f64,
}

/// What the page needs to draw one chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Geometry {
    /// One path per trend, in the order given.
    pub paths: Vec<Path>,
    /// The value range on the axis: (bottom, top).
    pub range: (f64, f64),
    /// The projection of a forecast that reaches its limit; `None` otherwise (not
    /// growing, too little history, no forecast).
    pub projection: Option<Projection>,
}

/// Lays out the trends' bucket averages on one chart: x by time over the whole range
/// (the trends share their buckets), y by value between the smallest and largest value
/// of all of them (a flat series gets a band around its value, percentages keep 0–100
/// when they fit). Empty buckets break a line. A forecast that reaches its limit narrows
/// the data to the left part and projects a line to the limit on the right, the limit
/// included in the value range.
pub fn geometry(trends: &[&[TrendPoint]], unit: Unit, forecast: Option<&Forecast>) -> Geometry {
    let reach = match forecast {
        Some(Forecast::Reaches {
            current,
            limit,
            days,
            ..
        }) if current.is_finite() && limit.is_finite() => Some((*current, *limit, *days)),
        _ => None,
    };
    let mut values: Vec<f64> = trends
        .iter()
        .flat_map(|t| t.iter().filter_map(|p| p.avg))
        .collect();
    if let Some((current, limit, _)) = reach {
        values.extend([current, limit]);
    }
    let (mut lo, mut hi) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(*v), hi.max(*v))
        });
    if values.is_empty() {
        (lo, hi) = (0.0, 1.0);
    }
    if unit == Unit::Percent {
        hi = hi.max(100.0);
    }
    if lo >= 0.0 {
        // Counts, sizes and percentages read best from zero.
        lo = 0.0;
    }
    if (hi - lo).abs() < f64::EPSILON {
        hi = lo + 1.0;
    }
    let plot = WIDTH - LEFT - PAD;
    let data_w = if reach.is_some() {
        plot * DATA_SHARE
    } else {
        plot
    };
    let n = trends.iter().map(|t| t.len()).max().unwrap_or(0).max(2) - 1;
    let x_of = |i: usize| LEFT + data_w * i as f64 / n as f64;
    let y_of = |v: f64| PAD + (HEIGHT - 2.0 * PAD) * (1.0 - (v - lo) / (hi - lo));
    let paths = trends
        .iter()
        .map(|points| {
            let mut path = Path::default();
            let mut current: Vec<String> = Vec::new();
            for (i, p) in points.iter().enumerate() {
                match p.avg {
                    Some(v) => {
                        let (x, y) = (x_of(i), y_of(v));
                        current.push(format!("{x:.1},{y:.1}"));
                        path.points.push((x, y, p.t.timestamp_millis(), v));
                    }
                    None if !current.is_empty() => {
                        path.lines.push(current.join(" "));
                        current.clear();
                    }
                    None => {}
                }
            }
            if !current.is_empty() {
                path.lines.push(current.join(" "));
            }
            path
        })
        .collect();
    let projection = reach.map(|(current, limit, days)| {
        let now_x = LEFT + data_w;
        Projection {
            line: (days > 0.0).then(|| (now_x, y_of(current), WIDTH - PAD, y_of(limit))),
            limit_y: y_of(limit),
            now_x,
        }
    });
    Geometry {
        paths,
        range: (lo, hi),
        projection,
    }
}

/// When a forecast reaches its limit, in words ("full in 12 days"), for the end of the
/// projection; `None` when it does not reach it.
pub fn forecast_when(f: &Forecast) -> Option<String> {
    let Forecast::Reaches { days, .. } = f else {
        return None;
    };
    Some(if *days <= 0.0 {
        "full now".to_string()
    } else if *days < 1.0 {
        "full in less than a day".to_string()
    } else {
        format!("full in {days:.0} days")
    })
}

/// The words of a forecast in a chart's caption ("full in 12 days at 20 MB/day, capacity
/// 1 GB"); `None` when it does not reach its limit.
pub fn forecast_label(f: &Forecast, unit: Unit) -> Option<String> {
    let Forecast::Reaches {
        rate_per_day,
        limit,
        ..
    } = f
    else {
        return None;
    };
    Some(format!(
        "{} at {}/day, capacity {}",
        forecast_when(f)?,
        unit.format(*rate_per_day),
        unit.format(*limit)
    ))
}

/// The x offset of the axis labels.
pub fn axis_x() -> f64 {
    LEFT - 4.0
}

/// The y of the top and bottom axis lines.
pub fn axis_top() -> f64 {
    PAD
}
pub fn axis_bottom() -> f64 {
    HEIGHT - PAD
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn pts(values: &[Option<f64>]) -> Vec<TrendPoint> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| TrendPoint {
                t: Utc
                    .timestamp_opt(1_700_000_000 + 60 * i as i64, 0)
                    .single()
                    .unwrap_or_default(),
                avg: *v,
                min: *v,
                max: *v,
                last: *v,
            })
            .collect()
    }

    fn one(values: &[Option<f64>], unit: Unit) -> Geometry {
        geometry(&[&pts(values)], unit, None)
    }

    #[test]
    fn a_gap_breaks_the_line_and_points_span_the_width() {
        let g = one(&[Some(1.0), Some(2.0), None, Some(4.0)], Unit::Count);
        let p = &g.paths[0];
        assert_eq!(p.lines.len(), 2);
        assert_eq!(p.points.len(), 3);
        assert_eq!(g.range, (0.0, 4.0));
        // First bucket at the left edge, last at the right edge, highest value at the top.
        assert!((p.points[0].0 - LEFT).abs() < 1e-9);
        assert!((p.points[2].0 - (WIDTH - PAD)).abs() < 1e-9);
        assert!((p.points[2].1 - PAD).abs() < 1e-9);
        assert!((p.points[0].1 - (PAD + (HEIGHT - 2.0 * PAD) * 0.75)).abs() < 1e-9);
        assert_eq!(g.projection, None);
    }

    #[test]
    fn percentages_keep_zero_to_hundred_and_flat_series_get_a_band() {
        let g = one(&[Some(99.0), Some(99.5)], Unit::Percent);
        assert_eq!(g.range, (0.0, 100.0));
        let flat = one(&[Some(-3.0), Some(-3.0)], Unit::Milliseconds);
        assert_eq!(flat.range, (-3.0, -2.0));
        assert!(flat.paths[0].points.iter().all(|p| p.1.is_finite()));
    }

    #[test]
    fn no_data_draws_nothing() {
        let g = one(&[None, None], Unit::Bytes);
        assert!(g.paths[0].lines.is_empty() && g.paths[0].points.is_empty());
        assert_eq!(g.range, (0.0, 1.0));
    }

    #[test]
    fn several_agents_share_one_scale_and_keep_their_own_lines() {
        let a = pts(&[Some(10.0), Some(20.0)]);
        let b = pts(&[None, Some(40.0)]);
        let g = geometry(&[&a, &b], Unit::Count, None);
        assert_eq!(g.paths.len(), 2);
        assert_eq!(g.range, (0.0, 40.0));
        assert_eq!((g.paths[0].points.len(), g.paths[1].points.len()), (2, 1));
        // The same time at the same x; the larger value higher.
        assert!((g.paths[0].points[1].0 - g.paths[1].points[0].0).abs() < 1e-9);
        assert!(g.paths[1].points[0].1 < g.paths[0].points[1].1);
    }

    #[test]
    fn a_forecast_reaching_its_limit_projects_to_it_and_others_draw_nothing() {
        let data = pts(&[Some(60.0), Some(70.0), Some(80.0)]);
        let reaches = Forecast::Reaches {
            rate_per_day: 2.0,
            current: 80.0,
            limit: 200.0,
            days: 60.0,
        };
        let g = geometry(&[&data], Unit::Bytes, Some(&reaches));
        assert_eq!(g.range, (0.0, 200.0), "the limit is on the scale");
        let p = g
            .projection
            .clone()
            .unwrap_or_else(|| panic!("no projection: {g:?}"));
        let (x1, y1, x2, y2) = p.line.unwrap_or_else(|| panic!("no line"));
        // The data end where the projection starts ("now"), left of the right edge.
        let last = g.paths[0].points[2];
        assert!((last.0 - p.now_x).abs() < 1e-9 && p.now_x < WIDTH - PAD - 100.0);
        assert!((x1 - p.now_x).abs() < 1e-9 && (x2 - (WIDTH - PAD)).abs() < 1e-9);
        // From the fitted value now (80) up to the limit (200, the top).
        assert!((y1 - (PAD + (HEIGHT - 2.0 * PAD) * 0.6)).abs() < 1e-9);
        assert!((y2 - PAD).abs() < 1e-9 && (p.limit_y - PAD).abs() < 1e-9);
        assert_eq!(
            forecast_label(&reaches, Unit::Count).as_deref(),
            Some("full in 60 days at 2/day, capacity 200")
        );

        // Already full: the limit line, no projection.
        let full = Forecast::Reaches {
            rate_per_day: 2.0,
            current: 210.0,
            limit: 200.0,
            days: 0.0,
        };
        let g = geometry(&[&data], Unit::Bytes, Some(&full));
        assert!(g.projection.as_ref().is_some_and(|p| p.line.is_none()));
        assert!(forecast_label(&full, Unit::Count).is_some_and(|l| l.starts_with("full now")));

        // Not growing, or too little history: the chart as without a forecast.
        let plain = geometry(&[&data], Unit::Bytes, None);
        for f in [
            Forecast::NotGrowing {
                rate_per_day: 0.0,
                current: 80.0,
            },
            Forecast::NeedsHistory {
                have_days: 1.0,
                needs_days: 2.0,
            },
        ] {
            assert_eq!(geometry(&[&data], Unit::Bytes, Some(&f)), plain, "{f:?}");
            assert_eq!(forecast_label(&f, Unit::Bytes), None);
        }
    }
}
