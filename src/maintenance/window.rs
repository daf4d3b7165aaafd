//! The maintenance window (`window = "02:00-05:00"`, local time of the job's time zone, may
//! cross midnight) and `max_duration`, turned into one deadline for a run. Pure.

use std::fmt;
use std::time::Duration;

use chrono::{NaiveTime, Timelike};

/// A daily time window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: NaiveTime,
    pub end: NaiveTime,
}

impl Window {
    /// Parses `HH:MM-HH:MM`; start and end must differ.
    pub fn parse(s: &str) -> Result<Window, String> {
        let bad = || {
            format!(
                "\"{s}\" is not a window; write it as \"HH:MM-HH:MM\", e.g. \"02:00-05:00\" (may cross midnight: \"22:00-04:00\")"
            )
        };
        let (a, b) = s.split_once('-').ok_or_else(bad)?;
        let t = |x: &str| NaiveTime::parse_from_str(x.trim(), "%H:%M").map_err(|_| bad());
        let w = Window {
            start: t(a)?,
            end: t(b)?,
        };
        if w.start == w.end {
            return Err(format!(
                "\"{s}\": the window starts and ends at the same time; give it a length"
            ));
        }
        Ok(w)
    }

    /// How long the window stays open from local time `now`; `None` when it is closed.
    pub fn remaining(&self, now: NaiveTime) -> Option<Duration> {
        let secs = |t: NaiveTime| i64::from(t.num_seconds_from_midnight());
        let (s, e, n) = (secs(self.start), secs(self.end), secs(now));
        let day = 86_400;
        let open = if s < e {
            n >= s && n < e
        } else {
            n >= s || n < e
        };
        if !open {
            return None;
        }
        let left = (e - n).rem_euclid(day);
        Some(
            Duration::from_secs(left as u64)
                - Duration::from_nanos(u64::from(now.nanosecond() % 1_000_000_000)),
        )
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-{}",
            self.start.format("%H:%M"),
            self.end.format("%H:%M")
        )
    }
}

/// How long a run may go on from local time `now`: the window's remaining time and
/// `max_duration`, whichever ends first (`None`: unbounded). Err when the window is closed.
pub fn budget(
    window: Option<&Window>,
    max_duration: Option<Duration>,
    now: NaiveTime,
) -> Result<Option<Duration>, String> {
    let w = match window {
        Some(w) => Some(w.remaining(now).ok_or_else(|| {
            format!(
                "outside the maintenance window {w} (now {})",
                now.format("%H:%M")
            )
        })?),
        None => None,
    };
    Ok(match (w, max_duration) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).unwrap_or_default()
    }

    #[test]
    fn parse_and_show() {
        let w = Window::parse("02:00-05:00").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(w.to_string(), "02:00-05:00");
        assert!(Window::parse("2-5").is_err());
        assert!(Window::parse("02:00-02:00").is_err());
        assert!(Window::parse("25:00-02:00").is_err());
    }

    #[test]
    fn remaining_time_same_day_and_across_midnight() {
        let w = Window::parse("02:00-05:00").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(w.remaining(t(2, 0)), Some(Duration::from_secs(3 * 3600)));
        assert_eq!(w.remaining(t(4, 59)), Some(Duration::from_secs(60)));
        assert_eq!(w.remaining(t(5, 0)), None);
        assert_eq!(w.remaining(t(1, 59)), None);
        let night = Window::parse("22:00-04:00").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            night.remaining(t(23, 0)),
            Some(Duration::from_secs(5 * 3600))
        );
        assert_eq!(
            night.remaining(t(0, 30)),
            Some(Duration::from_secs(3 * 3600 + 1800))
        );
        assert_eq!(night.remaining(t(4, 0)), None);
        assert_eq!(night.remaining(t(12, 0)), None);
    }

    #[test]
    fn budget_is_the_earlier_end() {
        let w = Window::parse("02:00-05:00").unwrap_or_else(|e| panic!("{e}"));
        let h = Duration::from_secs(3600);
        assert_eq!(budget(Some(&w), Some(h), t(2, 0)), Ok(Some(h)));
        assert_eq!(budget(Some(&w), Some(4 * h), t(2, 0)), Ok(Some(3 * h)));
        assert_eq!(budget(None, None, t(2, 0)), Ok(None));
        assert_eq!(budget(None, Some(h), t(12, 0)), Ok(Some(h)));
        assert_eq!(
            budget(Some(&w), None, t(12, 0)),
            Err("outside the maintenance window 02:00-05:00 (now 12:00)".into())
        );
    }
}
