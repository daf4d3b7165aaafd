//! Jobs: the kinds this version runs, each with its own typed keys, and the validated [`Job`].
//!
//! A `[[job]]` table holds the common keys ([`super::JobConfig`]) plus the keys of its kind.
//! Adding a kind is: its params struct (`deny_unknown_fields`; doc comments are the user
//! documentation), a [`JobKind`] and a [`JobParams`] variant, and one line in [`KINDS`].

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::de::{DeserializeOwned, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::Target;
use crate::schedule::Schedule;

/// The keys of a health job.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthParams {
    /// Run SQLite's thorough `PRAGMA integrity_check` instead of `quick_check` (e.g. a
    /// nightly job next to a frequent one). Other engines ignore it.
    #[serde(default)]
    pub integrity_check: bool,
}

/// The keys of a sample job (slow-query sampling).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleParams {
    /// Keep the N statements with the most execution time in each interval.
    #[serde(default = "default_top_n")]
    pub top_n: usize,
    /// Plus every statement whose mean time in the interval is at least this.
    #[serde(default = "default_slow_threshold", with = "humantime_serde")]
    pub slow_threshold: Duration,
    /// Statement texts (normalised, and live queries after redaction) are cut to this
    /// many characters.
    #[serde(default = "default_query_text_length")]
    pub query_text_length: usize,
    /// Live statements running longer than this are recorded each sample.
    #[serde(default = "default_long_running", with = "humantime_serde")]
    pub long_running: Duration,
    /// `query_regression`: a statement whose mean time in a sample exceeds this many times
    /// its baseline (the median of its recent samples) is a WARNING; 0 turns it off.
    #[serde(default = "default_regression_factor")]
    pub regression_factor: f64,
    /// ... when it ran at least this many times in the sample.
    #[serde(default = "default_regression_min_calls")]
    pub regression_min_calls: i64,
    /// ... and when its mean time in the sample is at least this long: a statement of
    /// microseconds that triples is scheduling noise, not a regression.
    #[serde(default = "default_regression_min_mean", with = "humantime_serde")]
    pub regression_min_mean: Duration,
    /// The baseline covers the samples of this period (at most the newest 100).
    #[serde(default = "default_regression_window", with = "humantime_serde")]
    pub regression_window: Duration,
}

fn default_regression_factor() -> f64 {
    3.0
}
fn default_regression_min_calls() -> i64 {
    10
}
fn default_regression_min_mean() -> Duration {
    Duration::from_millis(1)
}
fn default_regression_window() -> Duration {
    Duration::from_secs(7 * 86_400)
}

fn default_top_n() -> usize {
    50
}
fn default_slow_threshold() -> Duration {
    Duration::from_secs(1)
}
fn default_query_text_length() -> usize {
    1000
}
fn default_long_running() -> Duration {
    Duration::from_secs(60)
}

impl Default for SampleParams {
    fn default() -> Self {
        SampleParams {
            top_n: default_top_n(),
            slow_threshold: default_slow_threshold(),
            query_text_length: default_query_text_length(),
            long_running: default_long_running(),
            regression_factor: default_regression_factor(),
            regression_min_calls: default_regression_min_calls(),
            regression_min_mean: default_regression_min_mean(),
            regression_window: default_regression_window(),
        }
    }
}

/// The keys of a maintenance job: when it may work and what it may do (the policy).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceParams {
    /// Daily window `"HH:MM-HH:MM"` in the job's time zone (may cross midnight): no new
    /// table starts after it closes, a statement still running then is cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    /// Longest run; the same hard end as the window's.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_duration: Option<Duration>,
    /// What the job may do: `analyze`, `vacuum` (VACUUM (ANALYZE)), `freeze` (VACUUM
    /// (FREEZE, ANALYZE) near wraparound).
    #[serde(default = "default_actions")]
    pub actions: Vec<crate::maintenance::Allowed>,
    /// Glob patterns (`*`, `?`) on `schema.table`: only these tables (empty: all).
    #[serde(default)]
    pub include: Vec<String>,
    /// Glob patterns on `schema.table` never touched.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// At most this many tables per run (the most urgent first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tables: Option<usize>,
    /// Floor: a table is vacuumed only with at least this many dead rows past its own
    /// autovacuum trigger.
    #[serde(default = "default_min_rows")]
    pub min_dead_rows: u64,
    /// Floor: a table is analyzed only with at least this many rows changed past its own
    /// autoanalyze trigger.
    #[serde(default = "default_min_rows")]
    pub min_changed_rows: u64,
    /// Freeze a table when age(relfrozenxid) reaches this percentage of
    /// autovacuum_freeze_max_age.
    #[serde(default = "default_freeze_percent")]
    pub freeze_percent: f64,
    /// Each statement waits at most this long for its table lock, then the table is
    /// skipped (`skipped: lock not available`).
    #[serde(default = "default_lock_timeout", with = "humantime_serde")]
    pub lock_timeout: Duration,
    /// `vacuum_cost_delay` for our VACUUMs, so maintenance yields I/O to the application.
    #[serde(default = "default_cost_delay", with = "humantime_serde")]
    pub vacuum_cost_delay: Duration,
    /// Load guard (PostgreSQL): hold off a table while more than this many other
    /// sessions of the server are running a statement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_active_sessions: Option<u32>,
    /// Load guard (PostgreSQL): hold off a table while a standby's replay lag (from
    /// pg_stat_replication on the primary) is above this.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_replication_lag: Option<Duration>,
    /// Load guard: hold off a table while the target's believed status (the daemon's
    /// health rounds) is at or above this: "warning", "unknown" or "critical" (order
    /// CRITICAL > UNKNOWN > WARNING).
    #[serde(
        default,
        deserialize_with = "de_status",
        skip_serializing_if = "Option::is_none"
    )]
    pub skip_when_status: Option<crate::health::Status>,
    /// What a guard that holds does: "skip" the table (the default) or "pause" the run
    /// until the load drops, re-checking every 30 s, at most until the window or
    /// max_duration ends.
    #[serde(default)]
    pub guard_action: crate::maintenance::OnGuard,
    /// PostgreSQL tables (`schema.table`, exact names) whose dead-row vacuum is a
    /// `VACUUM (FULL, ANALYZE)`: only inside the job's `window` (which it requires); it
    /// waits at most lock_timeout for its lock and is cancelled once it has kept
    /// application sessions waiting for longer than lock_timeout.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vacuum_full: Vec<String>,
    /// SQLite: run an integrity check as a maintenance step when the last one recorded
    /// in the history store is older than this (e.g. "7d").
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub integrity_check_every: Option<Duration>,
    /// SQLite: "integrity_check" (thorough, the default) or "quick_check" (faster, skips
    /// the index-content checks).
    #[serde(default)]
    pub integrity_check_pragma: IntegrityPragma,
}

/// Which SQLite pragma a scheduled integrity check runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntegrityPragma {
    #[default]
    IntegrityCheck,
    QuickCheck,
}

/// `skip_when_status = "critical"`, in any case.
fn de_status<'de, D: Deserializer<'de>>(d: D) -> Result<Option<crate::health::Status>, D::Error> {
    use crate::health::Status;
    let s = String::deserialize(d)?;
    match s.to_ascii_lowercase().as_str() {
        "warning" => Ok(Some(Status::Warning)),
        "unknown" => Ok(Some(Status::Unknown)),
        "critical" => Ok(Some(Status::Critical)),
        _ => Err(serde::de::Error::custom(format!(
            "\"{s}\" is not a status to skip at; use \"warning\", \"unknown\" or \"critical\""
        ))),
    }
}

fn default_actions() -> Vec<crate::maintenance::Allowed> {
    use crate::maintenance::Allowed;
    vec![Allowed::Analyze, Allowed::Vacuum, Allowed::Freeze]
}
fn default_min_rows() -> u64 {
    1000
}
fn default_freeze_percent() -> f64 {
    80.0
}
fn default_lock_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_cost_delay() -> Duration {
    Duration::from_millis(2)
}

impl Default for MaintenanceParams {
    fn default() -> Self {
        MaintenanceParams {
            window: None,
            max_duration: None,
            actions: default_actions(),
            include: Vec::new(),
            exclude: Vec::new(),
            max_tables: None,
            min_dead_rows: default_min_rows(),
            min_changed_rows: default_min_rows(),
            freeze_percent: default_freeze_percent(),
            lock_timeout: default_lock_timeout(),
            vacuum_cost_delay: default_cost_delay(),
            max_active_sessions: None,
            max_replication_lag: None,
            skip_when_status: None,
            guard_action: crate::maintenance::OnGuard::Skip,
            vacuum_full: Vec::new(),
            integrity_check_every: None,
            integrity_check_pragma: IntegrityPragma::IntegrityCheck,
        }
    }
}

impl MaintenanceParams {
    /// The window, parsed (validation has checked it).
    pub fn window(&self) -> Result<Option<crate::maintenance::Window>, String> {
        self.window
            .as_deref()
            .map(crate::maintenance::Window::parse)
            .transpose()
    }

    /// Every problem with these keys, as (key, message).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Err(e) = self.window() {
            out.push(("window", e));
        }
        if !(1.0..=100.0).contains(&self.freeze_percent) {
            out.push((
                "freeze_percent",
                format!(
                    "{} is not a percentage between 1 and 100",
                    self.freeze_percent
                ),
            ));
        }
        if self.actions.is_empty() {
            out.push((
                "actions",
                "no action allowed: list at least one of \"analyze\", \"vacuum\", \"freeze\" (or disable the job)".into(),
            ));
        }
        if self.max_tables == Some(0) {
            out.push((
                "max_tables",
                "0 tables: leave it out for no limit, or disable the job".into(),
            ));
        }
        for t in &self.vacuum_full {
            let (schema, table) = t.split_once('.').unwrap_or(("", ""));
            if schema.is_empty() || table.is_empty() || t.contains(['*', '?']) {
                out.push((
                    "vacuum_full",
                    format!(
                        "\"{t}\" is not a table name; write each as \"schema.table\" exactly (no patterns: VACUUM FULL locks the table out for its whole rewrite)"
                    ),
                ));
            }
        }
        if !self.vacuum_full.is_empty() && self.window.is_none() {
            out.push((
                "vacuum_full",
                "VACUUM FULL runs only inside the job's window: set window = \"HH:MM-HH:MM\" (a quiet time)".into(),
            ));
        }
        if !self.vacuum_full.is_empty()
            && !self.actions.contains(&crate::maintenance::Allowed::Vacuum)
        {
            out.push((
                "vacuum_full",
                "tables are listed for VACUUM FULL but actions does not allow \"vacuum\"; add it or remove vacuum_full".into(),
            ));
        }
        if self.max_replication_lag.is_some_and(|d| d.is_zero()) {
            out.push((
                "max_replication_lag",
                "0 would hold off every table while any standby replays anything; give a time such as \"30s\"".into(),
            ));
        }
        if self.integrity_check_every.is_some_and(|d| d.is_zero()) {
            out.push((
                "integrity_check_every",
                "0 is no interval; give one such as \"7d\" (leave it out for no scheduled check)"
                    .into(),
            ));
        }
        if self.lock_timeout.is_zero() {
            out.push(("lock_timeout", "0 would wait forever for a lock (PostgreSQL's 0 means no limit); give a time such as \"5s\"".into()));
        }
        out
    }

    /// The planner's policy (the server's autovacuum_freeze_max_age comes with the facts).
    pub fn policy(&self, freeze_max_age: f64) -> crate::maintenance::Policy {
        crate::maintenance::Policy {
            allowed: self.actions.clone(),
            min_dead_rows: self.min_dead_rows as f64,
            min_changed_rows: self.min_changed_rows as f64,
            freeze_ratio: self.freeze_percent / 100.0,
            freeze_max_age,
            include: self.include.clone(),
            exclude: self.exclude.clone(),
            max_tables: self.max_tables,
            vacuum_full: self.vacuum_full.clone(),
            ..crate::maintenance::Policy::default()
        }
    }

    /// The load guard's limits.
    pub fn guard_limits(&self) -> crate::maintenance::GuardLimits {
        crate::maintenance::GuardLimits {
            max_active_sessions: self.max_active_sessions,
            max_replication_lag: self.max_replication_lag,
            skip_when_status: self.skip_when_status,
            on_guard: self.guard_action,
        }
    }
}

/// The keys of a rollup job: history housekeeping for its targets (rollups, retention,
/// the SQLite store's self-maintenance) and the forecasts computed from that history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollupParams {
    /// A bucket is rolled up once it ended this long ago (results still buffered on their
    /// way to the store have arrived by then).
    #[serde(default = "default_settle", with = "humantime_serde")]
    pub settle: Duration,
    /// Forecasts fit this much of the newest history.
    #[serde(default = "default_forecast_window", with = "humantime_serde")]
    pub forecast_window: Duration,
    /// Forecasts need at least this much history; with less they say how much more.
    #[serde(default = "default_forecast_min_history", with = "humantime_serde")]
    pub forecast_min_history: Duration,
}

fn default_settle() -> Duration {
    Duration::from_secs(300)
}
fn default_forecast_window() -> Duration {
    Duration::from_secs(30 * 86_400)
}
fn default_forecast_min_history() -> Duration {
    Duration::from_secs(3 * 86_400)
}

impl Default for RollupParams {
    fn default() -> Self {
        RollupParams {
            settle: default_settle(),
            forecast_window: default_forecast_window(),
            forecast_min_history: default_forecast_min_history(),
        }
    }
}

impl RollupParams {
    /// Every problem with these keys, as (key, message).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if self.settle > Duration::from_secs(86_400) {
            out.push((
                "settle",
                "longer than a day: rollups would lag a day behind; use e.g. \"5m\"".into(),
            ));
        }
        if self.forecast_min_history.is_zero() || self.forecast_min_history > self.forecast_window {
            out.push((
                "forecast_min_history",
                "must be more than 0 and at most forecast_window".into(),
            ));
        }
        out
    }
}

/// A job's own keys, typed by its kind.
#[derive(Debug, Clone, PartialEq)]
pub enum JobParams {
    Health(HealthParams),
    Sample(SampleParams),
    Maintenance(MaintenanceParams),
    Rollup(RollupParams),
}

impl JobParams {
    /// The kind these keys belong to.
    pub fn kind(&self) -> JobKind {
        match self {
            JobParams::Health(_) => JobKind::Health,
            JobParams::Sample(_) => JobKind::Sample,
            JobParams::Maintenance(_) => JobKind::Maintenance,
            JobParams::Rollup(_) => JobKind::Rollup,
        }
    }

    /// A health job's keys; `None` for every other kind.
    pub fn health(&self) -> Option<&HealthParams> {
        match self {
            JobParams::Health(p) => Some(p),
            _ => None,
        }
    }

    /// A maintenance job's keys; `None` for every other kind.
    pub fn maintenance(&self) -> Option<&MaintenanceParams> {
        match self {
            JobParams::Maintenance(p) => Some(p),
            _ => None,
        }
    }
}

/// `config show` prints a job's own keys next to the common ones (flattened).
impl Serialize for JobParams {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            JobParams::Health(p) => p.serialize(s),
            JobParams::Sample(p) => p.serialize(s),
            JobParams::Maintenance(p) => p.serialize(s),
            JobParams::Rollup(p) => p.serialize(s),
        }
    }
}

/// Job kinds this version can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    Health,
    Sample,
    Maintenance,
    Rollup,
}

/// What the loader and validator need to know about one job kind.
pub struct KindSpec {
    pub kind: JobKind,
    /// The value of `kind = "..."`.
    pub name: &'static str,
    /// Run timeout when the job sets none.
    pub default_timeout: Duration,
    /// The kind's own keys (its params struct's fields).
    pub keys: fn() -> &'static [&'static str],
    /// Reads the kind's own keys; serde's error carries the offending key's path.
    pub parse: fn(&figment::value::Value) -> DeResult<JobParams>,
}

/// A deserialization result whose error carries the offending key's path (boxed: it is big).
pub type DeResult<T> = Result<T, Box<serde_path_to_error::Error<figment::Error>>>;

/// Deserializes a config value, keeping the path of the first offending key.
pub fn de<T: DeserializeOwned>(v: &figment::value::Value) -> DeResult<T> {
    serde_path_to_error::deserialize(v).map_err(Box::new)
}

/// Every job kind this version runs, in [`JobKind`] declaration order: one line per kind.
pub const KINDS: &[KindSpec] = &[
    KindSpec {
        kind: JobKind::Health,
        name: "health",
        default_timeout: Duration::from_secs(120),
        keys: fields_of::<HealthParams>,
        parse: |v| de(v).map(JobParams::Health),
    },
    KindSpec {
        kind: JobKind::Sample,
        name: "sample",
        default_timeout: Duration::from_secs(60),
        keys: fields_of::<SampleParams>,
        parse: |v| de(v).map(JobParams::Sample),
    },
    KindSpec {
        kind: JobKind::Maintenance,
        name: "maintenance",
        default_timeout: Duration::from_secs(4 * 3600),
        keys: fields_of::<MaintenanceParams>,
        parse: |v| de(v).map(JobParams::Maintenance),
    },
    KindSpec {
        kind: JobKind::Rollup,
        name: "rollup",
        default_timeout: Duration::from_secs(3600),
        keys: fields_of::<RollupParams>,
        parse: |v| de(v).map(JobParams::Rollup),
    },
];

/// Kinds that arrive in later versions and the keys they are planned with, so a key put on
/// the wrong kind of job can say where it belongs.
pub const PLANNED: &[(&str, &[&str])] = &[];

impl JobKind {
    /// The `kind = "..."` values this version runs.
    pub const ALL: &'static [&'static str] = &{
        let mut out = [""; KINDS.len()];
        let mut i = 0;
        while i < KINDS.len() {
            out[i] = KINDS[i].name;
            i += 1;
        }
        out
    };

    /// The table line of this kind.
    pub fn spec(self) -> &'static KindSpec {
        // KINDS is in declaration order (a unit test holds it there).
        &KINDS[self as usize]
    }

    pub fn parse(s: &str) -> Option<JobKind> {
        KINDS.iter().find(|k| k.name == s).map(|k| k.kind)
    }

    pub fn as_str(self) -> &'static str {
        self.spec().name
    }

    /// Default run timeout when the job sets none.
    pub fn default_timeout(self) -> Duration {
        self.spec().default_timeout
    }
}

/// Explains a key that is not one of `kind`'s own keys: which keys a job of that kind has,
/// and which kind the key belongs to if it belongs to one.
pub fn foreign_key_message(key: &str, kind: JobKind, common: &[&str]) -> String {
    let name = kind.as_str();
    let own = (kind.spec().keys)();
    let own = if own.is_empty() {
        "none".to_string()
    } else {
        own.join(", ")
    };
    let mut msg = format!(
        "`{key}` is not a key of a {name} job; keys of a {name} job: {own} (and the common keys: {})",
        common.join(", ")
    );
    let current = KINDS
        .iter()
        .filter(|k| k.kind != kind && (k.keys)().contains(&key))
        .map(|k| format!("{} jobs", k.name));
    let planned = PLANNED
        .iter()
        .filter(|(_, keys)| keys.contains(&key))
        .map(|(k, _)| format!("{k} jobs, which arrive in a later version"));
    let owners: Vec<String> = current.chain(planned).collect();
    if !owners.is_empty() {
        msg.push_str(&format!("; `{key}` belongs to {}", owners.join(" and ")));
    }
    msg
}

/// Which targets a job applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetSelector {
    All,
    Name(String),
    Tag(String),
}

impl TargetSelector {
    pub fn matches(&self, t: &Target) -> bool {
        match self {
            TargetSelector::All => true,
            TargetSelector::Name(n) => &t.name == n,
            TargetSelector::Tag(tag) => t.tags.iter().any(|x| x == tag),
        }
    }
}

/// A validated job.
#[derive(Debug, Clone)]
pub struct Job {
    pub name: String,
    pub kind: JobKind,
    pub schedule: Schedule,
    pub schedule_text: String,
    pub targets: Vec<TargetSelector>,
    pub timeout: Duration,
    pub jitter: Duration,
    pub enabled: bool,
    /// The job's time zone: its own `timezone` key, else `daemon.timezone`. Cron schedules
    /// carry it too; an `@every` schedule does not, so the maintenance window reads it here.
    pub timezone: chrono_tz::Tz,
    /// The kind's own keys.
    pub params: JobParams,
}

impl Job {
    /// Whether two versions of a job would run identically (used by reload to keep a
    /// job's task running when nothing about it changed).
    pub fn same_as(&self, other: &Job) -> bool {
        self.name == other.name
            && self.kind == other.kind
            && self.schedule_text == other.schedule_text
            // The schedule text alone misses a changed time zone.
            && format!("{:?}", self.schedule) == format!("{:?}", other.schedule)
            && self.targets == other.targets
            && self.timeout == other.timeout
            && self.jitter == other.jitter
            && self.enabled == other.enabled
            && self.timezone == other.timezone
            && self.params == other.params
    }
}

/// How many upcoming fire times of a cron schedule are compared to find its interval: enough
/// to see every gap of a daily or weekday pattern, cheap enough for hundreds of jobs.
const INTERVAL_SAMPLES: usize = 100;

/// The interval a job's jitter must stay below, and how it was found: `@every X` is X; a
/// cron schedule's is the shortest gap between its next fire times after `from`.
pub fn shortest_interval(s: &Schedule, from: DateTime<Utc>) -> Option<(Duration, String)> {
    match s {
        Schedule::Every(d) => Some((*d, format!("{s:?}"))),
        Schedule::Cron { expr, .. } => {
            let times = s.upcoming(from, INTERVAL_SAMPLES, false);
            let gap = times
                .windows(2)
                .filter_map(|w| (w[1] - w[0]).to_std().ok())
                .min()?;
            Some((
                gap,
                format!(
                    "the shortest gap between the next {} fire times of \"{expr}\"",
                    times.len()
                ),
            ))
        }
    }
}

/// The keys a struct deserializes, read from serde's derive (which passes them to
/// `deserialize_struct`), so the lists in error messages never drift from the structs.
pub fn fields_of<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Probe(Option<&'static [&'static str]>);
    #[derive(Debug)]
    struct Stop;
    impl std::fmt::Display for Stop {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("field probe")
        }
    }
    impl std::error::Error for Stop {}
    impl serde::de::Error for Stop {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            Stop
        }
    }
    impl<'de> Deserializer<'de> for &mut Probe {
        type Error = Stop;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Stop> {
            self.0 = Some(fields);
            Err(Stop)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }
    let mut probe = Probe(None);
    let _ = T::deserialize(&mut probe);
    probe.0.unwrap_or(&[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_in_declaration_order_and_parse_to_their_own_params() {
        for (i, spec) in KINDS.iter().enumerate() {
            assert_eq!(spec.kind as usize, i, "{} is out of order", spec.name);
            assert_eq!(JobKind::parse(spec.name), Some(spec.kind));
            assert_eq!(spec.kind.as_str(), spec.name);
            let empty = figment::value::Value::from(figment::value::Dict::new());
            let params = (spec.parse)(&empty).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(params.kind(), spec.kind);
        }
        assert_eq!(JobKind::ALL, ["health", "sample", "maintenance", "rollup"]);
    }

    #[test]
    fn interval_of_every_and_cron() {
        let tz = chrono_tz::Tz::UTC;
        let from = chrono::DateTime::parse_from_rfc3339("2026-01-02T12:00:00Z")
            .map(|d| d.with_timezone(&Utc))
            .unwrap_or_else(|e| panic!("{e}"));
        let every = Schedule::parse("@every 5m", tz).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            shortest_interval(&every, from).map(|x| x.0),
            Some(Duration::from_secs(300))
        );
        // Gaps of 10 minutes and 50 minutes: the shorter one counts.
        let cron = Schedule::parse("0,10 * * * *", tz).unwrap_or_else(|e| panic!("{e}"));
        let (gap, what) = shortest_interval(&cron, from).unwrap_or_else(|| panic!("no gap"));
        assert_eq!(gap, Duration::from_secs(600));
        assert!(what.contains("\"0,10 * * * *\""), "{what}");
        // Weekdays at 09:00: a day, not the weekend's three.
        let cron = Schedule::parse("0 9 * * mon-fri", tz).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            shortest_interval(&cron, from).map(|x| x.0),
            Some(Duration::from_secs(86_400))
        );
    }

    #[test]
    fn fields_come_from_the_struct() {
        assert_eq!(fields_of::<HealthParams>(), ["integrity_check"]);
        assert_eq!(
            fields_of::<SampleParams>(),
            [
                "top_n",
                "slow_threshold",
                "query_text_length",
                "long_running",
                "regression_factor",
                "regression_min_calls",
                "regression_min_mean",
                "regression_window"
            ]
        );
    }

    #[test]
    fn a_maintenance_key_on_a_health_job_says_where_it_belongs() {
        let m = foreign_key_message("window", JobKind::Health, &["name", "kind"]);
        assert_eq!(
            m,
            "`window` is not a key of a health job; keys of a health job: integrity_check \
             (and the common keys: name, kind); `window` belongs to maintenance jobs"
        );
        let m = foreign_key_message("nonsense", JobKind::Health, &["name"]);
        assert!(!m.contains("belongs"), "{m}");
    }
}
