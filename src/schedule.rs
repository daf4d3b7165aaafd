//! Schedules: parsing and the pure "when does this fire next" logic. The scheduler loop
//! (`scheduler.rs`) only sleeps until the times computed here.
//!
//! Accepted forms: 5-field crontab (`0 3 * * *`), 6 fields with seconds first
//! (`*/10 * * * * *`), shortcuts (`@hourly`, `@daily`, `@midnight`, `@weekly`, `@monthly`,
//! `@yearly`, `@annually`) and intervals (`@every 30s`, `@every 5m`). Cron forms are evaluated
//! in an IANA time zone, DST included (croner: a time skipped by spring-forward runs at the
//! first valid instant after it; a repeated hour in autumn runs once).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds};

/// A parsed schedule.
#[derive(Clone)]
pub enum Schedule {
    /// `@every N`: fires at start, then every N.
    Every(Duration),
    /// A cron expression in a time zone; fires at its matches only.
    Cron {
        expr: String,
        cron: Box<Cron>,
        tz: Tz,
    },
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Every(d) => write!(f, "@every {}", humantime::format_duration(*d)),
            Schedule::Cron { expr, tz, .. } => write!(f, "{expr} ({tz})"),
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// The shortest interval allowed, so a typo like `@every 1ms` cannot hammer a database.
pub const MIN_EVERY: Duration = Duration::from_secs(1);

impl Schedule {
    /// Parses a schedule; `tz` applies to cron forms. Errors say what was expected.
    pub fn parse(expr: &str, tz: Tz) -> Result<Schedule, String> {
        let e = expr.trim();
        if e.is_empty() {
            return Err("is empty; write e.g. \"@every 30s\" or \"0 3 * * *\"".into());
        }
        if let Some(rest) = e.strip_prefix("@every") {
            let rest = rest.trim();
            let d = humantime::parse_duration(rest).map_err(|_| {
                format!("\"{expr}\": \"{rest}\" is not a duration; write e.g. \"@every 30s\" or \"@every 5m\"")
            })?;
            if d < MIN_EVERY {
                return Err(format!("\"{expr}\": the interval must be at least 1s"));
            }
            return Ok(Schedule::Every(d));
        }
        let fields = e.split_whitespace().count();
        if !e.starts_with('@') && !(5..=6).contains(&fields) {
            return Err(format!(
                "\"{expr}\" has {fields} fields; a cron schedule has 5 (minute hour day month weekday) or 6 (seconds first)"
            ));
        }
        let parser = CronParser::builder().seconds(Seconds::Optional).build();
        let cron = parser.parse(e).map_err(|err| {
            format!("\"{expr}\" is not a valid cron expression ({err}); write e.g. \"0 3 * * *\", \"*/10 * * * * *\", \"@hourly\" or \"@every 30s\"")
        })?;
        // A pattern that never matches (e.g. 31 February) would leave the job silent forever.
        let probe = Utc::now().with_timezone(&tz);
        if cron.find_next_occurrence(&probe, false).is_err() {
            return Err(format!("\"{expr}\" never fires"));
        }
        Ok(Schedule::Cron {
            expr: e.to_string(),
            cron: Box::new(cron),
            tz,
        })
    }

    /// Whether the job fires once right at start (only `@every`).
    pub fn fires_at_start(&self) -> bool {
        matches!(self, Schedule::Every(_))
    }

    /// The first fire time strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Every(d) => chrono::Duration::from_std(*d)
                .ok()
                .and_then(|d| after.checked_add_signed(d)),
            Schedule::Cron { cron, tz, .. } => cron
                .find_next_occurrence(&after.with_timezone(tz), false)
                .ok()
                .map(|t| t.with_timezone(&Utc)),
        }
    }

    /// The next `n` fire times after `from` (for `dbwarden jobs` and tests). For `@every`,
    /// the first is `from` itself when the job is just starting.
    pub fn upcoming(&self, from: DateTime<Utc>, n: usize, starting: bool) -> Vec<DateTime<Utc>> {
        let mut out = Vec::with_capacity(n);
        let mut t = from;
        if starting && self.fires_at_start() && n > 0 {
            out.push(from);
        }
        while out.len() < n {
            match self.next_after(t) {
                Some(next) => {
                    out.push(next);
                    t = next;
                }
                None => break,
            }
        }
        out
    }
}

/// Parses an IANA time zone name.
pub fn parse_tz(name: &str) -> Result<Tz, String> {
    Tz::from_str(name.trim()).map_err(|_| {
        format!("\"{name}\" is not an IANA time zone name; write e.g. \"UTC\" or \"Europe/Berlin\"")
    })
}

/// What the scheduler should do when it wakes for a planned fire time at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// On time (or late by less than the grace): run once. `coalesced` counts the planned
    /// fire times this one run stands for beyond the first (missed during a suspend).
    Run { coalesced: usize },
    /// Too late: every missed fire time is older than the grace; skip to the next.
    Missed { count: usize },
}

/// Decides what to do when waking at `now` for fire time `due`: runs missed during a
/// suspend or a clock jump are coalesced into one if the newest of them is within `grace`;
/// otherwise they are reported as missed. Also returns the last fire time accounted for,
/// from which the next one is computed.
pub fn on_wake(
    schedule: &Schedule,
    due: DateTime<Utc>,
    now: DateTime<Utc>,
    grace: Duration,
) -> (Wake, DateTime<Utc>) {
    let mut last = due;
    let mut count = 1usize;
    // Walk the fire times that have passed; bounded so a years-long jump cannot spin.
    while count < 100_000 {
        match schedule.next_after(last) {
            Some(t) if t <= now => {
                last = t;
                count += 1;
            }
            _ => break,
        }
    }
    let lateness = (now - last).to_std().unwrap_or(Duration::ZERO);
    // One second of slack: timers wake a little after the instant they were set for.
    if lateness <= grace.max(Duration::from_secs(1)) {
        (
            Wake::Run {
                coalesced: count - 1,
            },
            last,
        )
    } else {
        (Wake::Missed { count }, last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .map(|d| d.with_timezone(&Utc))
            .unwrap_or_else(|e| panic!("bad test time {s}: {e}"))
    }

    fn sched(expr: &str, tz: &str) -> Schedule {
        let tz = parse_tz(tz).unwrap_or_else(|e| panic!("{e}"));
        Schedule::parse(expr, tz).unwrap_or_else(|e| panic!("{e}"))
    }

    fn fmt(ts: &[DateTime<Utc>]) -> Vec<String> {
        ts.iter()
            .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
            .collect()
    }

    #[test]
    fn five_field_crontab() {
        let s = sched("0 3 * * *", "UTC");
        assert_eq!(
            fmt(&s.upcoming(utc("2026-01-01T10:00:00Z"), 2, true)),
            ["2026-01-02T03:00:00Z", "2026-01-03T03:00:00Z"]
        );
        let s = sched("*/15 9-17 * * mon-fri", "UTC");
        // 2026-01-02 is a Friday; the next fire after Friday 17:50 is Monday 09:00.
        assert_eq!(
            fmt(&s.upcoming(utc("2026-01-02T17:50:00Z"), 1, true)),
            ["2026-01-05T09:00:00Z"]
        );
    }

    #[test]
    fn six_fields_have_seconds_first() {
        let s = sched("*/10 * * * * *", "UTC");
        assert_eq!(
            fmt(&s.upcoming(utc("2026-01-01T00:00:05Z"), 3, true)),
            [
                "2026-01-01T00:00:10Z",
                "2026-01-01T00:00:20Z",
                "2026-01-01T00:00:30Z"
            ]
        );
    }

    #[test]
    fn shortcuts() {
        let s = sched("@hourly", "UTC");
        assert_eq!(
            fmt(&s.upcoming(utc("2026-01-01T00:30:00Z"), 1, true)),
            ["2026-01-01T01:00:00Z"]
        );
        let s = sched("@daily", "UTC");
        assert_eq!(
            fmt(&s.upcoming(utc("2026-01-01T00:30:00Z"), 1, true)),
            ["2026-01-02T00:00:00Z"]
        );
        assert!(!s.fires_at_start());
    }

    #[test]
    fn every_fires_at_start_then_each_interval() {
        let s = sched("@every 30s", "UTC");
        assert!(s.fires_at_start());
        assert_eq!(
            fmt(&s.upcoming(utc("2026-01-01T00:00:00Z"), 3, true)),
            [
                "2026-01-01T00:00:00Z",
                "2026-01-01T00:00:30Z",
                "2026-01-01T00:01:00Z"
            ]
        );
        let s = sched("@every 1h 30m", "UTC");
        assert_eq!(
            fmt(&s.upcoming(utc("2026-01-01T00:00:00Z"), 2, false)),
            ["2026-01-01T01:30:00Z", "2026-01-01T03:00:00Z"]
        );
    }

    #[test]
    fn time_zone_with_dst() {
        // 03:00 in Berlin is 02:00 UTC in winter and 01:00 UTC in summer.
        let s = sched("0 3 * * *", "Europe/Berlin");
        assert_eq!(
            fmt(&s.upcoming(utc("2026-03-27T12:00:00Z"), 3, true)),
            [
                "2026-03-28T02:00:00Z",
                "2026-03-29T01:00:00Z",
                "2026-03-30T01:00:00Z"
            ]
        );
        // 02:30 does not exist on spring-forward day (29 March 2026): it runs once, at 03:00
        // local (01:00 UTC), and is back to 02:30 local the next day.
        let s = sched("30 2 * * *", "Europe/Berlin");
        let got = fmt(&s.upcoming(utc("2026-03-28T12:00:00Z"), 2, true));
        assert_eq!(got, ["2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"]);
        // 02:30 happens twice on fall-back day (25 October 2026): it runs once.
        let got = fmt(&s.upcoming(utc("2026-10-24T12:00:00Z"), 2, true));
        assert_eq!(got, ["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"]);
    }

    #[test]
    fn bad_expressions_say_what_is_expected() {
        let tz = Tz::UTC;
        let e = Schedule::parse("0 3 * *", tz).err().unwrap_or_default();
        assert!(e.contains("has 4 fields"), "{e}");
        let e = Schedule::parse("61 * * * *", tz).err().unwrap_or_default();
        assert!(e.contains("not a valid cron expression"), "{e}");
        let e = Schedule::parse("@every soon", tz).err().unwrap_or_default();
        assert!(e.contains("not a duration"), "{e}");
        assert!(Schedule::parse("@every 10ms", tz).is_err());
        assert!(Schedule::parse("0 0 31 2 *", tz).is_err());
        assert!(parse_tz("Mars/Olympus").is_err());
    }

    #[test]
    fn wake_on_time_runs_once() {
        let s = sched("@every 30s", "UTC");
        let due = utc("2026-01-01T00:00:30Z");
        let (w, last) = on_wake(&s, due, due, Duration::from_secs(300));
        assert_eq!(w, Wake::Run { coalesced: 0 });
        assert_eq!(last, due);
    }

    #[test]
    fn wake_after_suspend_coalesces_within_grace() {
        let s = sched("* * * * *", "UTC");
        let due = Utc.with_ymd_and_hms(2026, 1, 1, 0, 1, 0).single();
        let Some(due) = due else { return };
        // Woke 10 minutes late, 20 s after the newest missed minute.
        let now = utc("2026-01-01T00:11:20Z");
        let (w, last) = on_wake(&s, due, now, Duration::from_secs(60));
        assert_eq!(w, Wake::Run { coalesced: 10 });
        assert_eq!(last, utc("2026-01-01T00:11:00Z"));
        // With no grace the missed runs are skipped, not run.
        let (w, _) = on_wake(&s, due, now, Duration::ZERO);
        assert_eq!(w, Wake::Missed { count: 11 });
    }
}
