//! `[retention]`: how long each kind of history is kept (README "History").

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::store::Horizons;

const DAY: u64 = 86_400;

/// `[retention]`: how long each kind of history is kept; older rows are deleted by the
/// `rollup` jobs, in batches.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Raw samples (every change of a value), at full resolution.
    #[serde(default = "d_raw", with = "humantime_serde")]
    pub raw: Duration,
    /// Hourly rollups (min, max, avg, last per hour).
    #[serde(default = "d_hourly", with = "humantime_serde")]
    pub hourly: Duration,
    /// Daily rollups (days of the rollup job's time zone).
    #[serde(default = "d_daily", with = "humantime_serde")]
    pub daily: Duration,
    /// Finished job runs.
    #[serde(default = "d_90", with = "humantime_serde")]
    pub job_runs: Duration,
    /// Believed status changes (health_transitions).
    #[serde(default = "d_daily", with = "humantime_serde")]
    pub transitions: Duration,
    /// Check status periods (`dbwarden history checks`).
    #[serde(default = "d_90", with = "humantime_serde")]
    pub check_periods: Duration,
    /// Maintenance actions.
    #[serde(default = "d_365", with = "humantime_serde")]
    pub maintenance: Duration,
    /// Slow-query samples (query_stats).
    #[serde(default = "d_30", with = "humantime_serde")]
    pub query_stats: Duration,
    /// Recorded long-running queries.
    #[serde(default = "d_30", with = "humantime_serde")]
    pub long_queries: Duration,
    /// Delivered or abandoned notifications (pending ones are never deleted).
    #[serde(default = "d_90", with = "humantime_serde")]
    pub alerts: Duration,
    /// Rows deleted per statement at most, so a purge never holds the store for long.
    #[serde(default = "d_batch")]
    pub purge_batch: u64,
}

fn d_raw() -> Duration {
    Duration::from_secs(7 * DAY)
}
fn d_hourly() -> Duration {
    Duration::from_secs(90 * DAY)
}
fn d_daily() -> Duration {
    Duration::from_secs(730 * DAY)
}
fn d_30() -> Duration {
    Duration::from_secs(30 * DAY)
}
fn d_90() -> Duration {
    Duration::from_secs(90 * DAY)
}
fn d_365() -> Duration {
    Duration::from_secs(365 * DAY)
}
fn d_batch() -> u64 {
    5000
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            raw: d_raw(),
            hourly: d_hourly(),
            daily: d_daily(),
            job_runs: d_90(),
            transitions: d_daily(),
            check_periods: d_90(),
            maintenance: d_365(),
            query_stats: d_30(),
            long_queries: d_30(),
            alerts: d_90(),
            purge_batch: d_batch(),
        }
    }
}

impl RetentionConfig {
    /// Every problem with these keys, as (key, message).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let min = Duration::from_secs(3600);
        for (key, d) in [
            ("raw", self.raw),
            ("hourly", self.hourly),
            ("daily", self.daily),
            ("job_runs", self.job_runs),
            ("transitions", self.transitions),
            ("check_periods", self.check_periods),
            ("maintenance", self.maintenance),
            ("query_stats", self.query_stats),
            ("long_queries", self.long_queries),
            ("alerts", self.alerts),
        ] {
            if d < min {
                out.push((
                    key,
                    format!(
                        "{} is shorter than 1h; keep at least an hour of history",
                        humantime::format_duration(d)
                    ),
                ));
            }
        }
        if self.hourly < self.raw {
            out.push((
                "hourly",
                "shorter than `raw`: hourly rollups must outlive the raw samples they summarise"
                    .into(),
            ));
        }
        if self.daily < self.hourly {
            out.push((
                "daily",
                "shorter than `hourly`: daily rollups must outlive the hourly ones".into(),
            ));
        }
        if !(100..=1_000_000).contains(&self.purge_batch) {
            out.push((
                "purge_batch",
                format!("{} is outside 100–1000000", self.purge_batch),
            ));
        }
        out
    }

    /// The horizons (Unix ms) as of `now_ms`: rows older are deleted.
    pub fn horizons(&self, now_ms: i64) -> Horizons {
        let h =
            |d: Duration| now_ms.saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        Horizons {
            raw: h(self.raw),
            hourly: h(self.hourly),
            daily: h(self.daily),
            job_runs: h(self.job_runs),
            transitions: h(self.transitions),
            check_periods: h(self.check_periods),
            maintenance: h(self.maintenance),
            query_stats: h(self.query_stats),
            long_queries: h(self.long_queries),
            alerts: h(self.alerts),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_inconsistent_ones_are_reported() {
        assert!(RetentionConfig::default().problems().is_empty());
        let bad = RetentionConfig {
            raw: Duration::from_secs(100 * DAY),
            purge_batch: 1,
            ..RetentionConfig::default()
        };
        let keys: Vec<_> = bad.problems().into_iter().map(|p| p.0).collect();
        assert_eq!(keys, ["hourly", "purge_batch"]);
        let h = RetentionConfig::default().horizons(30 * 86_400_000);
        assert_eq!(h.raw, 23 * 86_400_000);
        assert!(h.daily < 0, "horizons before the epoch are fine");
    }
}
