//! Forecasts as checks: `forecast_full` (days until the database fills its capacity) and
//! `forecast_wraparound` (days until transaction/multixact ID wraparound).
//!
//! They are computed by the `rollup` job, which reads the store anyway and runs every few
//! minutes, and kept per target in [`ForecastCache`]; each health round appends the cached
//! measurements to its own, so they are judged, believed (hysteresis) and alerted like any
//! other check, and a health round never waits on the history store.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};

use super::forecast::{Forecast, Window, full_in, wraparound_in};
use crate::config::Target;
use crate::engine::EngineKind;
use crate::health::{CheckSpec, Direction, Measurement, Observation, Status, Unit};
use crate::store::{Store, StoreError, TrendQuery};

pub const FORECAST_FULL: &str = "forecast_full";
pub const FORECAST_WRAPAROUND: &str = "forecast_wraparound";
const DAY: f64 = 86_400.0;

/// The forecast checks (computed from the history by the `rollup` job).
pub const CHECKS: &[CheckSpec] = &[
    CheckSpec {
        name: FORECAST_FULL,
        label: "until the database is full at its growth rate",
        unit: Unit::Seconds,
        direction: Direction::LowerIsWorse,
        warning: Some(30.0 * DAY),
        critical: Some(7.0 * DAY),
        floor: None,
        description: "Theil–Sen growth of the database size (PostgreSQL database_size, SQLite sqlite_file_size) over the newest 30 days of hourly history, against the target's `capacity` (SQLite without it: its filesystem's size); computed by a rollup job; OK with \"needs N more days\" until 3 days of history exist",
    },
    CheckSpec {
        name: FORECAST_WRAPAROUND,
        label: "until transaction ID wraparound at the current consumption",
        unit: Unit::Seconds,
        direction: Direction::LowerIsWorse,
        warning: Some(30.0 * DAY),
        critical: Some(7.0 * DAY),
        floor: None,
        description: "XID/MultiXact consumption per day from the `wraparound` check's history (rises only: a freezing vacuum does not hide consumption), and the days until the horizon if nothing freezes; PostgreSQL; computed by a rollup job",
    },
];

/// The size series of an engine (a check's value in bytes).
pub fn size_metric(engine: EngineKind) -> Option<&'static str> {
    match engine {
        EngineKind::Postgres => Some("database_size"),
        EngineKind::Sqlite => Some("sqlite_file_size"),
        _ => None,
    }
}

/// A forecast as a measurement of `check`.
pub fn measurement(check: &'static str, what: &str, f: &Forecast, unit: Unit) -> Measurement {
    match f {
        Forecast::NeedsHistory {
            have_days,
            needs_days,
        } => Measurement::verdict(
            check,
            Status::Ok,
            None,
            format!(
                "not enough history yet for a {what} forecast: {have_days:.1} days, needs {needs_days:.1} more days"
            ),
        ),
        Forecast::NotGrowing {
            rate_per_day,
            current,
        } => Measurement::verdict(
            check,
            Status::Ok,
            None,
            format!(
                "{what}: not growing (now {}, {}/day)",
                unit.format(*current),
                unit.format(*rate_per_day)
            ),
        ),
        Forecast::Reaches {
            rate_per_day,
            current,
            limit,
            days,
        } => Measurement::value(
            check,
            Observation::new(days * DAY).detail(format!(
                "{what}: now {} of {}, growing {}/day",
                unit.format(*current),
                unit.format(*limit),
                unit.format(*rate_per_day)
            )),
        ),
    }
}

/// Hourly averages of one series over the window ending `now`, as (ms, value).
async fn hourly(
    store: &Store,
    target: &str,
    metric: &str,
    now: DateTime<Utc>,
    w: Window,
) -> Result<Vec<(i64, f64)>, StoreError> {
    let from = now - chrono::Duration::milliseconds((w.days * 86_400_000.0) as i64);
    let t = store
        .trend(&TrendQuery {
            target: target.into(),
            metric: metric.into(),
            label: None,
            from,
            to: now,
            step: Some(std::time::Duration::from_secs(3600)),
        })
        .await?;
    Ok(t.points
        .iter()
        .filter_map(|p| Some((p.t.timestamp_millis(), p.avg?)))
        .collect())
}

/// The capacity a target's size is held against: its `capacity` key, else for SQLite the
/// size of the filesystem holding the file (statvfs: used + available to us).
pub fn capacity(target: &Target) -> Result<Option<f64>, String> {
    if let Some(c) = &target.raw.capacity {
        return Ok(crate::health::threshold::parse_bytes(c));
    }
    if target.engine != EngineKind::Sqlite {
        return Ok(None);
    }
    let Some(url) = crate::engine::sqlite::path_from_url(target.url.expose()) else {
        return Ok(None);
    };
    let dir = url
        .path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(|p| p.to_path_buf())
        .unwrap_or_else(|| std::path::PathBuf::from("."));
    let st = rustix::fs::statvfs(&dir).map_err(|e| format!("statvfs {}: {e}", dir.display()))?;
    let file = std::fs::metadata(&url.path).map_or(0, |m| m.len());
    Ok(Some(
        (st.f_bavail as f64) * (st.f_frsize as f64) + file as f64,
    ))
}

/// The forecast measurements of a target from its history.
pub async fn forecasts(
    store: &Store,
    target: &Target,
    now: DateTime<Utc>,
    w: Window,
) -> Vec<Measurement> {
    let mut out = Vec::new();
    if let Some(metric) = size_metric(target.engine) {
        let m = match (
            capacity(target),
            hourly(store, &target.name, metric, now, w).await,
        ) {
            (Ok(Some(cap)), Ok(points)) => measurement(
                FORECAST_FULL,
                "size",
                &full_in(&points, cap, w),
                Unit::Bytes,
            ),
            (Ok(None), _) => Measurement::verdict(
                FORECAST_FULL,
                Status::Ok,
                None,
                "no capacity known: set `capacity = \"500GB\"` on the target to be told when it is full",
            ),
            (Err(e), _) => Measurement::unknown(FORECAST_FULL, e, None),
            (_, Err(e)) => {
                Measurement::unknown(FORECAST_FULL, format!("history not readable: {e}"), None)
            }
        };
        out.push(m);
    }
    if target.engine == EngineKind::Postgres {
        let m = match hourly(store, &target.name, "wraparound", now, w).await {
            Ok(points) => measurement(
                FORECAST_WRAPAROUND,
                "ID age",
                &wraparound_in(&points, 100.0, w),
                Unit::Percent,
            ),
            Err(e) => Measurement::unknown(
                FORECAST_WRAPAROUND,
                format!("history not readable: {e}"),
                None,
            ),
        };
        out.push(m);
    }
    out
}

/// The latest forecast measurements per target, filled by rollup runs and read by health
/// rounds.
#[derive(Default)]
pub struct ForecastCache(Mutex<HashMap<String, Vec<Measurement>>>);

impl ForecastCache {
    pub fn set(&self, target: &str, m: Vec<Measurement>) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(target.to_string(), m);
    }

    pub fn get(&self, target: &str) -> Vec<Measurement> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(target)
            .cloned()
            .unwrap_or_default()
    }

    /// Forgets targets no longer configured.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|t, _| keep(t));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::{CheckThresholds, evaluate};

    fn judge(m: &Measurement) -> crate::health::CheckResult {
        let spec = CHECKS
            .iter()
            .find(|s| s.name == m.check)
            .unwrap_or_else(|| panic!("no spec"));
        evaluate(m, spec, &CheckThresholds::builtin(spec))
    }

    #[test]
    fn days_left_become_statuses() {
        let f = |days: f64| Forecast::Reaches {
            rate_per_day: 1e9,
            current: 1e11,
            limit: 2e11,
            days,
        };
        for (days, want) in [
            (100.0, Status::Ok),
            (20.0, Status::Warning),
            (3.0, Status::Critical),
        ] {
            let r = judge(&measurement(FORECAST_FULL, "size", &f(days), Unit::Bytes));
            assert_eq!(r.status, want, "{days} days: {}", r.message);
        }
    }

    #[test]
    fn too_little_history_is_ok_and_says_what_it_needs() {
        let r = judge(&measurement(
            FORECAST_FULL,
            "size",
            &Forecast::NeedsHistory {
                have_days: 1.0,
                needs_days: 2.0,
            },
            Unit::Bytes,
        ));
        assert_eq!(r.status, Status::Ok);
        assert!(r.message.contains("needs 2.0 more days"), "{}", r.message);
    }
}
