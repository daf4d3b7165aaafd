//! The sane range of every number and duration in the config: one table, used by
//! validation and checked against the README's configuration table by a test.
//!
//! A value outside its range is an error, not a warning: the daemon would crash on it
//! (a pool of 4294967295 connections aborts on allocation), never run (a jitter of a
//! century), or hang a stop past systemd's patience.

use std::time::Duration;

/// One bound of a range, in the key's own unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Count(u64),
    Duration(Duration),
    Bytes(u64),
}

const fn secs(s: u64) -> Limit {
    Limit::Duration(Duration::from_secs(s))
}
const MIB: u64 = 1024 * 1024;
const MINUTE: u64 = 60;
const HOUR: u64 = 3600;
const DAY: u64 = 86_400;

impl Limit {
    /// Comparable magnitude (durations in nanoseconds).
    fn magnitude(self) -> u128 {
        match self {
            Limit::Count(n) | Limit::Bytes(n) => u128::from(n),
            Limit::Duration(d) => d.as_nanos(),
        }
    }

    /// The bound as written in the config and the README: `100ms`, `10m`, `24h`, `7d`,
    /// `64MB` (1024-based, as every size in the config), `1000`.
    pub fn render(self) -> String {
        match self {
            Limit::Count(n) => n.to_string(),
            Limit::Bytes(n) => {
                for (unit, size) in [("GB", MIB * 1024), ("MB", MIB), ("kB", 1024)] {
                    if n >= size && n % size == 0 {
                        return format!("{}{unit}", n / size);
                    }
                }
                format!("{n}B")
            }
            Limit::Duration(d) => {
                if d.subsec_nanos() != 0 {
                    return format!("{}ms", d.as_millis());
                }
                let s = d.as_secs();
                // "24h" reads better than "1d"; a week is "7d".
                if s > DAY && s % DAY == 0 {
                    return format!("{}d", s / DAY);
                }
                for (unit, size) in [("h", HOUR), ("m", MINUTE)] {
                    if s >= size && s % size == 0 {
                        return format!("{}{unit}", s / size);
                    }
                }
                format!("{s}s")
            }
        }
    }
}

/// A key's allowed range and the reason for it.
#[derive(Debug, Clone, Copy)]
pub struct Range {
    /// Dotted key without indices: `daemon.catch_up`, `target.pool.max_connections`.
    pub key: &'static str,
    pub min: Limit,
    pub max: Limit,
    pub why: &'static str,
}

/// Every ranged key. The README's configuration table shows each of these ranges.
pub const RANGES: &[Range] = &[
    Range {
        key: "daemon.max_concurrent_targets",
        min: Limit::Count(1),
        max: Limit::Count(1024),
        why: "each target probed at once holds connections and file descriptors; more only queues on the database hosts",
    },
    Range {
        key: "daemon.shutdown_grace",
        min: secs(1),
        max: secs(10 * MINUTE),
        why: "running jobs need time to cancel their statements; systemd's TimeoutStopSec must exceed it",
    },
    Range {
        key: "daemon.request_timeout",
        min: secs(1),
        max: secs(5 * MINUTE),
        why: "an API answer takes milliseconds (EXPLAIN has its own 5 s statement timeout); a request held for minutes only ties up the server",
    },
    Range {
        key: "daemon.catch_up",
        min: secs(0),
        max: secs(DAY),
        why: "a run missed by more than a day is history, not something to catch up",
    },
    Range {
        key: "daemon.confirm_rounds",
        min: Limit::Count(1),
        max: Limit::Count(100),
        why: "1 believes every change at once; beyond 100 rounds a real outage is never believed",
    },
    Range {
        key: "daemon.confirm_for",
        min: secs(0),
        max: secs(DAY),
        why: "a status that must hold for more than a day before it is believed hides outages",
    },
    Range {
        key: "daemon.history_buffer_records",
        min: Limit::Count(1_000),
        max: Limit::Count(10_000_000),
        why: "fewer loses history in a short store outage; more costs memory the host may not have",
    },
    Range {
        key: "daemon.history_buffer_bytes",
        min: Limit::Bytes(MIB),
        max: Limit::Bytes(4096 * MIB),
        why: "the memory the buffer may take while the history store cannot write",
    },
    Range {
        key: "daemon.summary_interval",
        min: secs(MINUTE),
        max: secs(DAY),
        why: "more often drowns the journal; less often says too little",
    },
    Range {
        key: "daemon.table_stats_interval",
        min: secs(30),
        max: secs(DAY),
        why: "per-table rows every round cost millions of rows a day per target",
    },
    Range {
        key: "alerts.group_wait",
        min: secs(0),
        max: secs(10 * MINUTE),
        why: "a first alert held longer than this arrives too late to act on",
    },
    Range {
        key: "alerts.group_interval",
        min: secs(1),
        max: secs(HOUR),
        why: "how often one target's further changes go out; longer hides what happened",
    },
    Range {
        key: "alerts.repeat_interval",
        min: secs(MINUTE),
        max: secs(7 * DAY),
        why: "reminding more often than a minute is the noise alerts must avoid",
    },
    Range {
        key: "alerts.channel_failing_after",
        min: secs(MINUTE),
        max: secs(DAY),
        why: "how long a channel may fail before the other channels hear of it",
    },
    Range {
        key: "target.pool.max_connections",
        min: Limit::Count(1),
        max: Limit::Count(100),
        why: "a monitoring agent needs a few connections, and each costs the server memory",
    },
    Range {
        key: "target.pool.connect_timeout",
        min: Limit::Duration(Duration::from_millis(100)),
        max: secs(5 * MINUTE),
        why: "shorter fails healthy servers across a WAN; longer stalls the round on a dead one",
    },
    Range {
        key: "target.pool.acquire_timeout",
        min: Limit::Duration(Duration::from_millis(100)),
        max: secs(5 * MINUTE),
        why: "shorter fails healthy servers across a WAN; longer stalls the round on a dead one",
    },
    Range {
        key: "target.pool.idle_timeout",
        min: secs(1),
        max: secs(DAY),
        why: "an idle connection is closed after this; kept for days it only holds server memory",
    },
    Range {
        key: "target.pool.max_lifetime",
        min: secs(1),
        max: secs(7 * DAY),
        why: "connections are recycled after this, so server-side leaks do not accumulate",
    },
    Range {
        key: "target.busy_timeout",
        min: secs(0),
        max: secs(5 * MINUTE),
        why: "SQLite: longer than a job should wait for the application's lock",
    },
    Range {
        key: "job.schedule",
        min: secs(1),
        max: secs(366 * DAY),
        why: "the interval of `@every`; a longer one never comes round, and rare runs read better as cron",
    },
    Range {
        key: "job.timeout",
        min: secs(1),
        max: secs(7 * DAY),
        why: "a run needs at least a second; a run longer than a week is stuck",
    },
    Range {
        key: "job.jitter",
        min: secs(0),
        max: secs(HOUR),
        why: "spreads a fleet's load; it must also be smaller than the job's interval",
    },
];

/// The range of a key; indices are ignored (`job[3].jitter` is `job.jitter`).
pub fn lookup(key: &str) -> Option<&'static Range> {
    let mut plain = String::with_capacity(key.len());
    let mut in_index = false;
    for c in key.chars() {
        match c {
            '[' => in_index = true,
            ']' => in_index = false,
            c if !in_index => plain.push(c),
            _ => {}
        }
    }
    RANGES.iter().find(|r| r.key == plain)
}

impl Range {
    /// `allowed: 0s–1h (why)`, the tail of every range error.
    pub fn allowed(&self) -> String {
        format!(
            "allowed: {}–{} ({})",
            self.min.render(),
            self.max.render(),
            self.why
        )
    }

    /// `Err` with a message naming the value and the range when `v` lies outside it.
    pub fn check(&self, v: Limit) -> Result<(), String> {
        let m = v.magnitude();
        if m < self.min.magnitude() || m > self.max.magnitude() {
            let shown = match v {
                // humantime writes what the user wrote: "100000000years", "90days".
                Limit::Duration(d) => humantime::format_duration(d).to_string(),
                other => other.render(),
            };
            return Err(format!("{shown} is out of range; {}", self.allowed()));
        }
        Ok(())
    }
}

/// The README's rendering of a range key: `[daemon] catch_up`, `[[target]] pool.max_connections`.
pub fn readme_key(key: &str) -> String {
    match key.split_once('.') {
        Some(("daemon", rest)) => format!("`[daemon] {rest}`"),
        Some(("alerts", rest)) => format!("`[alerts] {rest}`"),
        Some((section, rest)) => format!("`[[{section}]] {rest}`"),
        None => format!("`{key}`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_render_as_written_in_a_config() {
        assert_eq!(
            Limit::Duration(Duration::from_millis(100)).render(),
            "100ms"
        );
        assert_eq!(secs(0).render(), "0s");
        assert_eq!(secs(600).render(), "10m");
        assert_eq!(secs(DAY).render(), "24h");
        assert_eq!(secs(7 * DAY).render(), "7d");
        assert_eq!(secs(HOUR).render(), "1h");
        assert_eq!(secs(90).render(), "90s");
        assert_eq!(Limit::Bytes(4096 * MIB).render(), "4GB");
        assert_eq!(Limit::Bytes(MIB).render(), "1MB");
        // Every bound reads back as the same value through the config's own parsers.
        for r in RANGES {
            for b in [r.min, r.max] {
                let back = match b {
                    Limit::Duration(_) => humantime::parse_duration(&b.render())
                        .map(Limit::Duration)
                        .ok(),
                    Limit::Bytes(_) => crate::health::threshold::parse_bytes(&b.render())
                        .map(|x| Limit::Bytes(x as u64)),
                    Limit::Count(_) => b.render().parse().map(Limit::Count).ok(),
                };
                assert_eq!(back, Some(b), "{}", r.key);
            }
        }
    }

    #[test]
    fn lookup_ignores_indices_and_checks_both_ends() {
        let r = lookup("target[3].pool.max_connections").unwrap_or_else(|| panic!("no range"));
        assert!(r.check(Limit::Count(2)).is_ok());
        assert!(r.check(Limit::Count(0)).is_err());
        let e = r
            .check(Limit::Count(4_294_967_295))
            .err()
            .unwrap_or_default();
        assert!(
            e.starts_with("4294967295 is out of range; allowed: 1–100"),
            "{e}"
        );
        let r = lookup("job[0].jitter").unwrap_or_else(|| panic!("no range"));
        let century = humantime::parse_duration("100000000y").unwrap_or_else(|e| panic!("{e}"));
        let e = r.check(Limit::Duration(century)).err().unwrap_or_default();
        assert!(
            e.contains("100000000years is out of range; allowed: 0s–1h"),
            "{e}"
        );
        assert!(lookup("daemon.listen").is_none());
    }

    /// The README's configuration table shows every range of the table above, on the
    /// key's own row, so the documentation cannot drift from what `config check` enforces.
    #[test]
    fn every_range_is_in_the_readme() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
            .unwrap_or_else(|e| panic!("README.md: {e}"));
        for r in RANGES {
            let key = readme_key(r.key);
            let row = readme
                .lines()
                .find(|l| l.starts_with(&format!("| {key} |")))
                .unwrap_or_else(|| panic!("README has no row for {key}"));
            let range = format!("{}–{}", r.min.render(), r.max.render());
            assert!(
                row.contains(&range),
                "README row of {key} lacks {range}: {row}"
            );
        }
    }
}
