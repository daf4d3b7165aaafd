//! The status model: what a check result is, how thresholds judge a measured value, and how a
//! target's status is the worst of its checks. Everything here is pure; engines produce
//! [`Measurement`]s and [`evaluate`] turns them into [`CheckResult`]s.

pub mod catalog;
pub mod delta;
pub mod hysteresis;
pub mod threshold;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use catalog::{CheckSpec, Direction, Unit};
pub use threshold::{CheckThresholds, ThresholdError, ThresholdValue};

/// Nagios-style status of one check or one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Ok,
    Warning,
    Critical,
    Unknown,
}

impl Status {
    /// Severity used to pick a target's status: CRITICAL > UNKNOWN > WARNING > OK.
    /// UNKNOWN ranks above WARNING because "could not measure" must never read as "fine".
    pub fn severity(self) -> u8 {
        match self {
            Status::Ok => 0,
            Status::Warning => 1,
            Status::Unknown => 2,
            Status::Critical => 3,
        }
    }

    /// The worst of several statuses; OK for none.
    pub fn worst<I: IntoIterator<Item = Status>>(statuses: I) -> Status {
        statuses
            .into_iter()
            .max_by_key(|s| s.severity())
            .unwrap_or(Status::Ok)
    }

    /// Nagios plugin exit code: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
    pub fn exit_code(self) -> i32 {
        match self {
            Status::Ok => 0,
            Status::Warning => 1,
            Status::Critical => 2,
            Status::Unknown => 3,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warning => "WARNING",
            Status::Critical => "CRITICAL",
            Status::Unknown => "UNKNOWN",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        match s.to_ascii_uppercase().as_str() {
            "OK" => Some(Status::Ok),
            "WARNING" => Some(Status::Warning),
            "CRITICAL" => Some(Status::Critical),
            "UNKNOWN" => Some(Status::Unknown),
            _ => None,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a fact belongs to one database or to the whole server (cluster-level checks such
/// as connections or replication run once per server, see DESIGN.md).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case", tag = "kind", content = "server_id")]
pub enum Scope {
    #[default]
    Database,
    /// A server-wide fact; the string identifies the server (PostgreSQL system identifier,
    /// MySQL server UUID) so targets sharing a server can share the result.
    Server(String),
}

/// One numeric observation of a check, e.g. one table's dead-tuple percentage.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// What the value is about, named the way a DBA would ("table public.orders", "pid 4242").
    pub subject: Option<String>,
    pub value: f64,
    /// The quantity compared with the check's floor (rows, bytes); observations below the
    /// floor never change the status, so tiny tables do not page anyone.
    pub floor_value: Option<f64>,
    /// Extra words appended to the message (user, query text, ...).
    pub detail: Option<String>,
}

impl Observation {
    pub fn new(value: f64) -> Self {
        Observation {
            subject: None,
            value,
            floor_value: None,
            detail: None,
        }
    }

    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    pub fn floor(mut self, floor_value: f64) -> Self {
        self.floor_value = Some(floor_value);
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

/// What an engine measured for one check.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Numbers to hold against the check's thresholds; the worst one decides. An empty list
    /// means "nothing to report" (e.g. no long-running query), which is OK.
    Values(Vec<Observation>),
    /// A fact that is not a number on a scale (an integrity check's verdict, a failed
    /// connection): the engine states the status itself.
    Verdict {
        status: Status,
        value: Option<f64>,
        message: String,
    },
    /// Lifetime counters; the status comes from their delta since the previous round
    /// (see [`crate::health::delta`] in later work). Until a baseline exists the check is OK
    /// with "baseline pending".
    Counters(Vec<(String, f64)>),
    /// Could not measure. `fix` tells the operator what to do (a GRANT, an extension).
    Unknown { reason: String, fix: Option<String> },
}

/// One engine measurement, before thresholds are applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    /// The check's name in the catalogue (`connectivity`, `sqlite_quick_check`, ...).
    pub check: &'static str,
    pub scope: Scope,
    pub outcome: Outcome,
}

impl Measurement {
    pub fn values(check: &'static str, values: Vec<Observation>) -> Self {
        Measurement {
            check,
            scope: Scope::Database,
            outcome: Outcome::Values(values),
        }
    }

    pub fn value(check: &'static str, value: Observation) -> Self {
        Self::values(check, vec![value])
    }

    pub fn verdict(
        check: &'static str,
        status: Status,
        value: Option<f64>,
        message: impl Into<String>,
    ) -> Self {
        Measurement {
            check,
            scope: Scope::Database,
            outcome: Outcome::Verdict {
                status,
                value,
                message: message.into(),
            },
        }
    }

    pub fn unknown(check: &'static str, reason: impl Into<String>, fix: Option<String>) -> Self {
        Measurement {
            check,
            scope: Scope::Database,
            outcome: Outcome::Unknown {
                reason: reason.into(),
                fix,
            },
        }
    }

    pub fn with_scope(mut self, scope: Scope) -> Self {
        self.scope = scope;
        self
    }
}

/// The judged result of one check in one round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    pub check: String,
    pub status: Status,
    /// The deciding value (the worst observation), in `unit`.
    pub value: Option<f64>,
    pub unit: Unit,
    pub warning: Option<f64>,
    pub critical: Option<f64>,
    /// One line naming the offender and the thresholds it was held against.
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default)]
    pub scope: Scope,
}

/// Turns a measurement into a result, holding values against the given thresholds.
/// Pure: the same inputs always give the same result.
pub fn evaluate(m: &Measurement, spec: &CheckSpec, t: &CheckThresholds) -> CheckResult {
    let base = CheckResult {
        check: m.check.to_string(),
        status: Status::Ok,
        value: None,
        unit: spec.unit,
        warning: t.warning,
        critical: t.critical,
        message: String::new(),
        subject: None,
        scope: m.scope.clone(),
    };
    match &m.outcome {
        Outcome::Verdict {
            status,
            value,
            message,
        } => CheckResult {
            status: *status,
            value: *value,
            message: message.clone(),
            ..base
        },
        Outcome::Unknown { reason, fix } => CheckResult {
            status: Status::Unknown,
            message: match fix {
                Some(fix) => format!("{reason}; fix: {fix}"),
                None => reason.clone(),
            },
            ..base
        },
        Outcome::Counters(_) => CheckResult {
            message: format!("{}: baseline pending", spec.label),
            ..base
        },
        Outcome::Values(obs) => evaluate_values(obs, spec, t, base),
    }
}

fn evaluate_values(
    obs: &[Observation],
    spec: &CheckSpec,
    t: &CheckThresholds,
    base: CheckResult,
) -> CheckResult {
    let above_floor: Vec<&Observation> = obs
        .iter()
        .filter(|o| match (t.floor, o.floor_value) {
            (Some(floor), Some(v)) => v >= floor,
            _ => true,
        })
        .collect();
    let worse = |a: f64, b: f64| match spec.direction {
        Direction::HigherIsWorse => a > b,
        Direction::LowerIsWorse => a < b,
    };
    let mut worst: Option<&Observation> = None;
    for o in &above_floor {
        if o.value.is_nan() {
            continue;
        }
        if worst.is_none_or(|w| worse(o.value, w.value)) {
            worst = Some(o);
        }
    }
    let Some(worst) = worst else {
        let message = if obs.is_empty() {
            "nothing to report".to_string()
        } else {
            format!(
                "{} checked, all below the size floor (min_rows / min_size): not judged",
                obs.len()
            )
        };
        return CheckResult { message, ..base };
    };
    let status_of = |v: f64| -> Status {
        let reached = |limit: Option<f64>| {
            limit.is_some_and(|l| match spec.direction {
                Direction::HigherIsWorse => v >= l,
                Direction::LowerIsWorse => v <= l,
            })
        };
        if reached(t.critical) {
            Status::Critical
        } else if reached(t.warning) {
            Status::Warning
        } else {
            Status::Ok
        }
    };
    let status = status_of(worst.value);
    let offenders = above_floor
        .iter()
        .filter(|o| status_of(o.value) != Status::Ok)
        .count();
    let mut message = String::new();
    if offenders > 1 {
        message.push_str(&format!("{offenders} over threshold, worst "));
    }
    if let Some(s) = &worst.subject {
        message.push_str(s);
        message.push_str(": ");
    }
    message.push_str(&spec.unit.format(worst.value));
    message.push(' ');
    message.push_str(spec.label);
    if let Some(d) = &worst.detail {
        message.push_str(" (");
        message.push_str(d);
        message.push(')');
    }
    let cmp = match spec.direction {
        Direction::HigherIsWorse => "≥",
        Direction::LowerIsWorse => "≤",
    };
    let limits: Vec<String> = [("warning", t.warning), ("critical", t.critical)]
        .into_iter()
        .filter_map(|(n, l)| l.map(|l| format!("{n} {cmp} {}", spec.unit.format(l))))
        .collect();
    if !limits.is_empty() {
        message.push_str(&format!(" ({})", limits.join(", ")));
    }
    CheckResult {
        status,
        value: Some(worst.value),
        message,
        subject: worst.subject.clone(),
        ..base
    }
}

/// The status of a whole target: the worst of its checks.
pub fn target_status(results: &[CheckResult]) -> Status {
    Status::worst(results.iter().map(|r| r.status))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(direction: Direction) -> CheckSpec {
        CheckSpec {
            name: "dead_tuples",
            label: "dead tuples",
            unit: Unit::Percent,
            direction,
            warning: Some(20.0),
            critical: Some(40.0),
            floor: Some(10_000.0),
            description: "",
        }
    }

    fn thresholds() -> CheckThresholds {
        CheckThresholds {
            enabled: true,
            warning: Some(20.0),
            critical: Some(40.0),
            floor: Some(10_000.0),
        }
    }

    #[test]
    fn worst_ranks_unknown_between_warning_and_critical() {
        assert_eq!(
            Status::worst([Status::Ok, Status::Unknown, Status::Warning]),
            Status::Unknown
        );
        assert_eq!(
            Status::worst([Status::Unknown, Status::Critical]),
            Status::Critical
        );
        assert_eq!(Status::worst([]), Status::Ok);
    }

    #[test]
    fn worst_observation_decides_and_is_named() {
        let m = Measurement::values(
            "dead_tuples",
            vec![
                Observation::new(41.0)
                    .subject("table public.orders")
                    .floor(50_000.0),
                Observation::new(25.0)
                    .subject("table public.items")
                    .floor(20_000.0),
                Observation::new(90.0)
                    .subject("table public.tiny")
                    .floor(10.0),
            ],
        );
        let r = evaluate(&m, &spec(Direction::HigherIsWorse), &thresholds());
        assert_eq!(r.status, Status::Critical);
        assert_eq!(r.value, Some(41.0));
        assert_eq!(
            r.message,
            "2 over threshold, worst table public.orders: 41% dead tuples (warning ≥ 20%, critical ≥ 40%)"
        );
    }

    #[test]
    fn lower_is_worse_checks_compare_downwards() {
        let m = Measurement::value("cache_hit", Observation::new(85.0));
        let t = CheckThresholds {
            enabled: true,
            warning: Some(95.0),
            critical: Some(90.0),
            floor: None,
        };
        let mut s = spec(Direction::LowerIsWorse);
        s.floor = None;
        let r = evaluate(&m, &s, &t);
        assert_eq!(r.status, Status::Critical);
        assert!(r.message.contains("critical ≤ 90%"), "{}", r.message);
    }

    #[test]
    fn empty_values_and_counters_are_ok() {
        let r = evaluate(
            &Measurement::values("dead_tuples", vec![]),
            &spec(Direction::HigherIsWorse),
            &thresholds(),
        );
        assert_eq!(r.status, Status::Ok);
        let m = Measurement {
            check: "dead_tuples",
            scope: Scope::Database,
            outcome: Outcome::Counters(vec![("hits".into(), 1.0)]),
        };
        let r = evaluate(&m, &spec(Direction::HigherIsWorse), &thresholds());
        assert_eq!(r.status, Status::Ok);
        assert!(r.message.contains("baseline pending"));
    }

    #[test]
    fn unknown_carries_the_fix() {
        let m = Measurement::unknown(
            "dead_tuples",
            "permission denied for pg_stat_user_tables",
            Some("GRANT pg_monitor TO dbwarden".into()),
        );
        let r = evaluate(&m, &spec(Direction::HigherIsWorse), &thresholds());
        assert_eq!(r.status, Status::Unknown);
        assert!(r.message.ends_with("fix: GRANT pg_monitor TO dbwarden"));
    }

    #[test]
    fn exit_codes_follow_nagios() {
        assert_eq!(Status::Ok.exit_code(), 0);
        assert_eq!(Status::Warning.exit_code(), 1);
        assert_eq!(Status::Critical.exit_code(), 2);
        assert_eq!(Status::Unknown.exit_code(), 3);
    }
}
