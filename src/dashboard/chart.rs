//! Trend charts drawn on the server as SVG: they show without JavaScript, need no chart
//! library (page weight) and no inline script or style (the CSP). The geometry is a pure
//! function of the trend's points, tested here.

use crate::health::Unit;
use crate::store::TrendPoint;

/// The drawing area in SVG user units (the SVG scales to its box through `viewBox`).
pub const WIDTH: f64 = 600.0;
pub const HEIGHT: f64 = 160.0;
/// Room on the left for the axis labels, and above/below for the top/bottom labels.
const LEFT: f64 = 56.0;
const PAD: f64 = 12.0;

/// What the page needs to draw one chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Geometry {
    /// One polyline per run of consecutive buckets with data (a gap breaks the line).
    pub lines: Vec<String>,
    /// The points with data, as (x, y, bucket time, value) for markers and their titles.
    pub points: Vec<(f64, f64, i64, f64)>,
    /// The value range on the axis: (bottom, top).
    pub range: (f64, f64),
}

/// Lays out buckets' averages on the chart: x by time over the whole range, y by value
/// between the smallest and largest value (a flat series gets a band around its value,
/// percentages keep 0–100 when they fit). Empty buckets break the line.
pub fn geometry(points: &[TrendPoint], unit: Unit) -> Geometry {
    let values: Vec<f64> = points.iter().filter_map(|p| p.avg).collect();
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
    let n = points.len().max(2) - 1;
    let x_of = |i: usize| LEFT + (WIDTH - LEFT - PAD) * i as f64 / n as f64;
    let y_of = |v: f64| PAD + (HEIGHT - 2.0 * PAD) * (1.0 - (v - lo) / (hi - lo));
    let mut lines = Vec::new();
    let mut current: Vec<String> = Vec::new();
    let mut marks = Vec::new();
    for (i, p) in points.iter().enumerate() {
        match p.avg {
            Some(v) => {
                let (x, y) = (x_of(i), y_of(v));
                current.push(format!("{x:.1},{y:.1}"));
                marks.push((x, y, p.t.timestamp_millis(), v));
            }
            None => {
                if !current.is_empty() {
                    lines.push(current.join(" "));
                    current.clear();
                }
            }
        }
    }
    if !current.is_empty() {
        lines.push(current.join(" "));
    }
    Geometry {
        lines,
        points: marks,
        range: (lo, hi),
    }
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

    #[test]
    fn a_gap_breaks_the_line_and_points_span_the_width() {
        let g = geometry(&pts(&[Some(1.0), Some(2.0), None, Some(4.0)]), Unit::Count);
        assert_eq!(g.lines.len(), 2);
        assert_eq!(g.points.len(), 3);
        assert_eq!(g.range, (0.0, 4.0));
        // First bucket at the left edge, last at the right edge, highest value at the top.
        assert!((g.points[0].0 - LEFT).abs() < 1e-9);
        assert!((g.points[2].0 - (WIDTH - PAD)).abs() < 1e-9);
        assert!((g.points[2].1 - PAD).abs() < 1e-9);
        assert!((g.points[0].1 - (PAD + (HEIGHT - 2.0 * PAD) * 0.75)).abs() < 1e-9);
    }

    #[test]
    fn percentages_keep_zero_to_hundred_and_flat_series_get_a_band() {
        let g = geometry(&pts(&[Some(99.0), Some(99.5)]), Unit::Percent);
        assert_eq!(g.range, (0.0, 100.0));
        let flat = geometry(&pts(&[Some(-3.0), Some(-3.0)]), Unit::Milliseconds);
        assert_eq!(flat.range, (-3.0, -2.0));
        assert!(flat.points.iter().all(|p| p.1.is_finite()));
    }

    #[test]
    fn no_data_draws_nothing() {
        let g = geometry(&pts(&[None, None]), Unit::Bytes);
        assert!(g.lines.is_empty() && g.points.is_empty());
        assert_eq!(g.range, (0.0, 1.0));
    }
}
