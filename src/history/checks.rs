//! Forecasts as checks: `forecast_full` (days until the database fills its capacity),
//! `forecast_wraparound` (days until transaction/multixact ID wraparound) and
//! `dead_row_growth` (tables whose dead rows keep growing between vacuums).
//!
//! They are computed by the `rollup` job, which reads the store anyway and runs every few
//! minutes, and at daemon start ([`prime`]), and kept per target in [`ForecastCache`]; each
//! health round appends the cached measurements to its own, so they are judged, believed
//! (hysteresis) and alerted like any other check from the first round after a start, and a
//! health round never waits on the history store.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};

use super::forecast::{Forecast, Window, full_in, growth_since_vacuum, wraparound_in};
use crate::config::{Config, JobParams, RollupParams, Target};
use crate::engine::EngineKind;
use crate::health::{CheckSpec, Direction, Measurement, Observation, Status, Unit};
use crate::store::{Store, StoreError, TrendQuery};

pub const FORECAST_FULL: &str = "forecast_full";
pub const FORECAST_WRAPAROUND: &str = "forecast_wraparound";
pub const DEAD_ROW_GROWTH: &str = "dead_row_growth";
const DAY: f64 = 86_400.0;
/// A table's dead rows are judged once they have grown this long since its last vacuum:
/// autovacuum's normal sawtooth, cleared within hours, is not bloat.
pub const GROWTH_MIN_DAYS: f64 = 1.0;
/// How many tables a `dead_row_growth` message names at most.
const GROWTH_NAMED: usize = 5;

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
    GROWTH_SPEC,
];

/// `dead_row_growth`: dead rows growing between vacuums.
const GROWTH_SPEC: CheckSpec = CheckSpec {
    name: DEAD_ROW_GROWTH,
    label: "of its rows added as dead rows per day since its last vacuum",
    unit: Unit::Percent,
    direction: Direction::HigherIsWorse,
    warning: Some(20.0),
    critical: Some(50.0),
    floor: Some(10_000.0),
    description: "per table, the Theil–Sen growth of `table.dead_rows` (hourly history) since its last vacuum (the newest drop by half or to zero), as a share of its rows per day, judged once it has grown for a day without a vacuum; names the worst tables; floor in rows (min_rows); PostgreSQL; computed by a rollup job",
};

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
pub async fn hourly(
    store: &Store,
    target: &str,
    metric: &str,
    label: Option<&str>,
    now: DateTime<Utc>,
    w: Window,
) -> Result<Vec<(i64, f64)>, StoreError> {
    let from = now - chrono::Duration::milliseconds((w.days * 86_400_000.0) as i64);
    let t = store
        .trend(&TrendQuery {
            target: target.into(),
            metric: metric.into(),
            label: label.map(str::to_string),
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
            hourly(store, &target.name, metric, None, now, w).await,
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
        let m = match hourly(store, &target.name, "wraparound", None, now, w).await {
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
        let th = target.thresholds_for(&GROWTH_SPEC);
        if th.enabled {
            out.push(
                match table_dead_rows(store, &target.name, now, w, th.floor).await {
                    Ok(tables) => dead_row_growth(&tables, th.floor),
                    Err(e) => Measurement::unknown(
                        DEAD_ROW_GROWTH,
                        format!("history not readable: {e}"),
                        None,
                    ),
                },
            );
        }
    }
    out
}

/// One table's dead rows over the forecast window (hourly averages, oldest first) and
/// its rows now.
#[derive(Debug, Clone, PartialEq)]
pub struct TableDeadRows {
    pub table: String,
    pub points: Vec<(i64, f64)>,
    pub rows: f64,
}

/// The dead-row history of a target's tables (from its latest table statistics) that
/// have dead rows now and, with `floor`, at least `floor` rows and dead rows.
pub async fn table_dead_rows(
    store: &Store,
    target: &str,
    now: DateTime<Utc>,
    w: Window,
    floor: Option<f64>,
) -> Result<Vec<TableDeadRows>, StoreError> {
    let mut out = Vec::new();
    for (_, t) in store.latest_table_stats(target).await? {
        let rows = t.rows.unwrap_or(0.0);
        let dead = t.dead_rows.unwrap_or(0.0);
        if dead <= 0.0 || floor.is_some_and(|f| rows + dead < f) {
            continue;
        }
        let points = hourly(store, target, "table.dead_rows", Some(&t.table), now, w).await?;
        out.push(TableDeadRows {
            table: t.table,
            points,
            rows,
        });
    }
    Ok(out)
}

/// `dead_row_growth` from the tables' dead-row history (pure): one observation per table
/// whose dead rows have grown for at least [`GROWTH_MIN_DAYS`] since its last vacuum, its
/// growth per day as a share of its rows, floored by its rows and dead rows; the worst
/// names the next worst (at most [`GROWTH_NAMED`] tables in all; those under `floor`
/// are not judged). OK "nothing growing" when no table qualifies.
pub fn dead_row_growth(tables: &[TableDeadRows], floor: Option<f64>) -> Measurement {
    let mut growing: Vec<(Observation, f64, f64)> = tables
        .iter()
        .filter_map(|t| {
            let (rate, days) = growth_since_vacuum(&t.points)?;
            if rate <= 0.0 || days < GROWTH_MIN_DAYS {
                return None;
            }
            let dead = t.points.last().map_or(0.0, |p| p.1);
            let share = rate * 100.0 / t.rows.max(1.0);
            Some((
                Observation::new(share)
                    .subject(format!("table {}", t.table))
                    .floor(t.rows + dead),
                rate,
                days,
            ))
        })
        .collect();
    if growing.is_empty() {
        return Measurement::verdict(
            DEAD_ROW_GROWTH,
            Status::Ok,
            None,
            format!(
                "no table's dead rows have grown for {GROWTH_MIN_DAYS} day(s) without a vacuum"
            ),
        );
    }
    growing.sort_by(|a, b| b.0.value.total_cmp(&a.0.value));
    let judged = |o: &Observation| floor.is_none_or(|f| o.floor_value.is_some_and(|v| v >= f));
    // The worst judged table carries the detail and names the next worst ones.
    let worst = growing.iter().position(|g| judged(&g.0));
    let next: Vec<String> = growing
        .iter()
        .enumerate()
        .filter(|(i, g)| Some(*i) != worst && judged(&g.0))
        .take(GROWTH_NAMED - 1)
        .map(|(_, (o, _, _))| {
            format!(
                "{} {}/day",
                o.subject.as_deref().unwrap_or_default(),
                Unit::Percent.format(o.value)
            )
        })
        .collect();
    let obs = growing
        .into_iter()
        .enumerate()
        .map(|(i, (o, rate, days))| {
            if Some(i) != worst {
                return o;
            }
            let mut d = format!(
                "+{} dead rows/day for {days:.1} days",
                Unit::Count.format(rate.round())
            );
            if !next.is_empty() {
                d.push_str(&format!("; next: {}", next.join(", ")));
            }
            o.detail(d)
        })
        .collect();
    Measurement::values(DEAD_ROW_GROWTH, obs)
}

/// The forecast window a rollup job's keys ask for.
pub fn window(p: &RollupParams) -> Window {
    Window {
        min_days: p.forecast_min_history.as_secs_f64() / DAY,
        days: p.forecast_window.as_secs_f64() / DAY,
    }
}

/// Computes the forecasts of every target a rollup job covers from the store now, and
/// caches those no rollup run has cached yet: at daemon start, so the forecast checks are
/// judged from the first health round on (not only after the first rollup run), and a
/// restart neither hides them nor makes their believed status flap. Each target uses the
/// window of the first enabled rollup job covering it. Returns how many targets it cached.
pub async fn prime(store: &Store, config: &Config, cache: &ForecastCache) -> usize {
    let now = Utc::now();
    let mut done = std::collections::HashSet::new();
    let mut n = 0;
    for job in config.jobs.iter().filter(|j| j.enabled) {
        let JobParams::Rollup(p) = &job.params else {
            continue;
        };
        let w = window(p);
        for t in config.job_targets(job) {
            if !done.insert(t.name.clone()) {
                continue;
            }
            let m = forecasts(store, t, now, w).await;
            if !m.is_empty() && cache.set_if_absent(&t.name, m) {
                n += 1;
            }
        }
    }
    n
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

    /// Caches `m` unless a (fresher) result is cached already; whether it did.
    pub fn set_if_absent(&self, target: &str, m: Vec<Measurement>) -> bool {
        let mut c = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if c.contains_key(target) {
            return false;
        }
        c.insert(target.to_string(), m);
        true
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

    /// Hourly dead rows of a table over `days` days from f(day).
    fn table(name: &str, rows: f64, days: i64, f: impl Fn(f64) -> f64) -> TableDeadRows {
        const H: i64 = 3_600_000;
        TableDeadRows {
            table: name.into(),
            points: (0..=days * 24)
                .map(|h| (h * H, f(h as f64 / 24.0)))
                .collect(),
            rows,
        }
    }

    fn growth_fixture() -> Vec<TableDeadRows> {
        vec![
            // 30% of its rows a day for the 3 days since its vacuum: WARNING.
            table("public.a", 100_000.0, 7, |d| {
                if d < 4.0 {
                    500.0 * d
                } else {
                    30_000.0 * (d - 4.0)
                }
            }),
            // Vacuumed every 6 hours (40%/day in between): autovacuum keeping up.
            table("public.b", 50_000.0, 7, |d| 20_000.0 * (d % 0.25)),
            // Tiny (under the 10,000-row floor with its dead rows), 60%/day: not judged.
            table("public.c", 1_000.0, 7, |d| 600.0 * d),
            // 60%/day for 2 days: CRITICAL and the worst.
            table("public.d", 1_000_000.0, 7, |d| {
                if d < 5.0 {
                    1000.0
                } else {
                    600_000.0 * (d - 5.0)
                }
            }),
            // Flat.
            table("public.e", 80_000.0, 7, |_| 300.0),
        ]
    }

    #[test]
    fn dead_row_growth_names_the_worst_tables_past_a_day_without_vacuum() {
        let tables = growth_fixture();
        let r = judge(&dead_row_growth(&tables, Some(10_000.0)));
        assert_eq!(r.status, Status::Critical, "{}", r.message);
        assert_eq!(r.subject.as_deref(), Some("table public.d"));
        let v = r.value.unwrap_or_else(|| panic!("no value: {}", r.message));
        assert!((v - 60.0).abs() < 1.0, "{v}");
        assert!(r.message.starts_with("2 over threshold"), "{}", r.message);
        assert!(
            r.message.contains("next: table public.a 30%/day"),
            "{}",
            r.message
        );
        for quiet in ["public.b", "public.c", "public.e"] {
            assert!(!r.message.contains(quiet), "{quiet} named: {}", r.message);
        }
        // Without the table that is CRITICAL, the one past WARNING decides.
        let r = judge(&dead_row_growth(&tables[..3], Some(10_000.0)));
        assert_eq!(r.status, Status::Warning, "{}", r.message);
        assert_eq!(r.subject.as_deref(), Some("table public.a"));
        // Nothing growing for a day: OK, saying so.
        let r = judge(&dead_row_growth(
            &[tables[1].clone(), tables[4].clone()],
            None,
        ));
        assert_eq!(r.status, Status::Ok);
        assert!(r.message.contains("without a vacuum"), "{}", r.message);
    }

    #[test]
    fn dead_row_growth_judges_small_tables_only_below_a_lower_floor() {
        let tables = growth_fixture();
        let r = judge(&dead_row_growth(&tables[2..3], Some(10_000.0)));
        assert_eq!(r.status, Status::Ok, "{}", r.message);
        let mut th = CheckThresholds::builtin(&GROWTH_SPEC);
        th.floor = None;
        let r = evaluate(&dead_row_growth(&tables[2..3], None), &GROWTH_SPEC, &th);
        assert_eq!(r.status, Status::Critical, "{}", r.message);
        assert_eq!(r.subject.as_deref(), Some("table public.c"));
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
