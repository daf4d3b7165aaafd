//! Rollups of a series' step function (pure): bucket boundaries (UTC hours, days in a
//! time zone) and min / max / time-weighted avg / last per bucket.
//!
//! A series is stored on change: a sample's value holds from its `ts` until the next
//! sample of the series, the newest one until the series' `last_ts` (its last
//! confirmation). A `None` value means "no data from here on". Aggregates cover only the
//! time with data; a bucket without any is not written.

use chrono::{DateTime, Duration as ChronoDuration, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

/// `rollups.resolution` of hourly buckets (seconds).
pub const HOUR: i64 = 3600;
/// `rollups.resolution` of daily buckets (seconds; a local day may be 23 or 25 hours).
pub const DAY: i64 = 86_400;

/// Which rollup, with the time zone its days follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grain {
    /// UTC hours (local hours of zones with whole-hour offsets).
    Hour,
    /// Local days (midnight to midnight) in a time zone.
    Day(Tz),
}

impl Grain {
    /// The `rollups.resolution` value.
    pub fn resolution(self) -> i64 {
        match self {
            Grain::Hour => HOUR,
            Grain::Day(_) => DAY,
        }
    }

    /// The `rollup_progress.step` name for a target's watermark.
    pub fn progress_step(self, target: &str) -> String {
        match self {
            Grain::Hour => format!("hour:{target}"),
            Grain::Day(_) => format!("day:{target}"),
        }
    }

    /// The start (Unix ms) of the bucket holding `t_ms`.
    pub fn floor(self, t_ms: i64) -> i64 {
        match self {
            Grain::Hour => t_ms.div_euclid(HOUR * 1000) * HOUR * 1000,
            Grain::Day(tz) => {
                let local = tz.from_utc_datetime(&from_ms(t_ms).naive_utc());
                local_midnight(tz, local.date_naive())
            }
        }
    }

    /// The start of the bucket after the one starting at `start_ms`.
    pub fn next(self, start_ms: i64) -> i64 {
        match self {
            Grain::Hour => start_ms + HOUR * 1000,
            Grain::Day(tz) => {
                let day = tz
                    .from_utc_datetime(&from_ms(start_ms).naive_utc())
                    .date_naive();
                match day.succ_opt() {
                    Some(d) => local_midnight(tz, d),
                    None => i64::MAX,
                }
            }
        }
    }
}

/// The first instant (Unix ms) of a local date: midnight, or the first time after a gap
/// (zones whose DST change skips midnight).
fn local_midnight(tz: Tz, day: chrono::NaiveDate) -> i64 {
    let mut t = day.and_time(NaiveTime::MIN);
    for _ in 0..48 {
        if let Some(dt) = tz.from_local_datetime(&t).earliest() {
            return dt.timestamp_millis();
        }
        t += ChronoDuration::minutes(30);
    }
    // Unreachable for real zones; fall back to UTC midnight.
    day.and_time(NaiveTime::MIN).and_utc().timestamp_millis()
}

fn from_ms(v: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(v).single().unwrap_or_default()
}

/// One sample of a series: from `ts` (ms) on, `value` (`None`: no data).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub ts: i64,
    pub value: Option<f64>,
}

/// One bucket's aggregates (a `rollups` row without its series).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub ts: i64,
    pub min: f64,
    pub max: f64,
    pub avg: f64,
    pub last: f64,
    pub covered_ms: i64,
}

/// Aggregates of one bucket being filled.
#[derive(Default)]
struct Acc {
    min: f64,
    max: f64,
    weighted: f64,
    covered: i64,
    /// Values seen only at an instant (a sample not yet confirmed for any time).
    instant_sum: f64,
    instants: u32,
    last: Option<f64>,
}

impl Acc {
    fn add(&mut self, v: f64, dur: i64) {
        if self.last.is_none() {
            self.min = v;
            self.max = v;
        } else {
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        }
        if dur > 0 {
            self.weighted += v * dur as f64;
            self.covered += dur;
        } else {
            self.instant_sum += v;
            self.instants += 1;
        }
        self.last = Some(v);
    }

    fn finish(&self, ts: i64) -> Option<Bucket> {
        let last = self.last?;
        let avg = if self.covered > 0 {
            self.weighted / self.covered as f64
        } else {
            self.instant_sum / f64::from(self.instants.max(1))
        };
        Some(Bucket {
            ts,
            min: self.min,
            max: self.max,
            avg,
            last,
            covered_ms: self.covered,
        })
    }
}

/// The buckets of `grain` in `[from, to)` (bucket starts; `from` and `to` are bucket
/// boundaries) aggregated from a series' step function. `samples` are in time order and
/// must include the newest sample before `from` (its value holds into the range);
/// `last_ts` is the series' last confirmation (the newest sample's value holds until
/// then). Buckets without data are left out.
pub fn aggregate(
    grain: Grain,
    from: i64,
    to: i64,
    samples: &[Sample],
    last_ts: Option<i64>,
) -> Vec<Bucket> {
    let mut out = Vec::new();
    if samples.is_empty() || from >= to {
        return out;
    }
    // Each sample's segment [start, end) of constant value, clipped to the range.
    let newest_end = |s: &Sample| last_ts.unwrap_or(s.ts).max(s.ts);
    let mut bucket = grain.floor(from.max(samples[0].ts.min(to)));
    let mut bucket_end = grain.next(bucket);
    let mut acc = Acc::default();
    for (i, s) in samples.iter().enumerate() {
        let end = samples.get(i + 1).map_or_else(|| newest_end(s), |n| n.ts);
        let (mut start, end) = (s.ts.max(from), end.min(to));
        if start >= to || (end < from) || (end <= start && s.ts < from) {
            continue;
        }
        let Some(v) = s.value else {
            continue;
        };
        // Walk the buckets this segment touches (a zero-length one touches its own).
        loop {
            while start >= bucket_end {
                out.extend(acc.finish(bucket));
                acc = Acc::default();
                bucket = bucket_end;
                bucket_end = grain.next(bucket);
            }
            let piece_end = end.min(bucket_end);
            acc.add(v, piece_end - start);
            if end <= bucket_end {
                break;
            }
            start = bucket_end;
        }
    }
    out.extend(acc.finish(bucket));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = HOUR * 1000;

    fn s(ts: i64, v: f64) -> Sample {
        Sample { ts, value: Some(v) }
    }
    fn gap(ts: i64) -> Sample {
        Sample { ts, value: None }
    }

    #[test]
    fn a_constant_value_covers_the_whole_hour() {
        let b = aggregate(Grain::Hour, 0, H, &[s(-5 * H, 7.0)], Some(2 * H));
        assert_eq!(
            b,
            vec![Bucket {
                ts: 0,
                min: 7.0,
                max: 7.0,
                avg: 7.0,
                last: 7.0,
                covered_ms: H
            }]
        );
    }

    #[test]
    fn the_average_weighs_each_value_by_how_long_it_held() {
        // 10 for 45 minutes, then 30 for 15 minutes: 15, not the sample mean 20.
        let m = 60_000;
        let b = aggregate(Grain::Hour, 0, H, &[s(0, 10.0), s(45 * m, 30.0)], Some(H));
        assert_eq!(b.len(), 1);
        assert_eq!(
            (b[0].avg, b[0].min, b[0].max, b[0].last),
            (15.0, 10.0, 30.0, 30.0)
        );
    }

    #[test]
    fn no_data_is_left_out_of_the_aggregates() {
        // Data for the first half hour only (then the series stopped): covered 30 min.
        let m = 60_000;
        let b = aggregate(
            Grain::Hour,
            0,
            2 * H,
            &[s(0, 4.0), gap(30 * m)],
            Some(30 * m),
        );
        assert_eq!(b.len(), 1, "the second hour has no data: no row");
        assert_eq!((b[0].avg, b[0].covered_ms), (4.0, 30 * m));
        // The newest sample holds only until last_ts.
        let b = aggregate(Grain::Hour, 0, 2 * H, &[s(0, 4.0)], Some(90 * m));
        assert_eq!(b.len(), 2);
        assert_eq!(b[1].covered_ms, 30 * m);
    }

    #[test]
    fn a_segment_across_boundaries_is_split() {
        let m = 60_000;
        let b = aggregate(
            Grain::Hour,
            0,
            3 * H,
            &[s(30 * m, 1.0), s(150 * m, 3.0)],
            Some(3 * H),
        );
        let got: Vec<(i64, f64, i64)> = b.iter().map(|b| (b.ts, b.avg, b.covered_ms)).collect();
        assert_eq!(got, vec![(0, 1.0, 30 * m), (H, 1.0, H), (2 * H, 2.0, H)]);
    }

    #[test]
    fn an_unconfirmed_newest_sample_counts_as_an_instant() {
        let b = aggregate(Grain::Hour, 0, H, &[s(10, 5.0)], Some(10));
        assert_eq!(b.len(), 1);
        assert_eq!((b[0].avg, b[0].last, b[0].covered_ms), (5.0, 5.0, 0));
    }

    #[test]
    fn days_follow_the_time_zone_and_its_dst_changes() {
        let berlin: Tz = chrono_tz::Europe::Berlin;
        let g = Grain::Day(berlin);
        // 2026-03-29 is the spring-forward day in Berlin: 23 hours.
        let day = g.floor(
            Utc.with_ymd_and_hms(2026, 3, 29, 12, 0, 0)
                .single()
                .map(|d| d.timestamp_millis())
                .unwrap_or_default(),
        );
        let expect = Utc
            .with_ymd_and_hms(2026, 3, 28, 23, 0, 0)
            .single()
            .map(|d| d.timestamp_millis())
            .unwrap_or_default();
        assert_eq!(day, expect, "local midnight (UTC+1)");
        assert_eq!(g.next(day) - day, 23 * H);
        // UTC days are 24 h.
        let utc = Grain::Day(chrono_tz::UTC);
        assert_eq!(utc.floor(25 * H), 24 * H);
        assert_eq!(utc.next(24 * H), 48 * H);
        assert_eq!(Grain::Hour.floor(-1), -H, "before the epoch too");
    }
}
