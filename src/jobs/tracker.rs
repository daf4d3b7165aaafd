//! Believed statuses per target and per check (hysteresis) across rounds, restored from the
//! history at start so a restart does not re-announce what was already known.
//!
//! Most checks come from health rounds, each round a complete set. A few come from other
//! job kinds, on their own cadence, as a partial set ([`PART_CHECKS`]: the sample job's
//! `query_regression`). A target's believed status is the worst of what its health rounds
//! made believed (the `(target, None)` key) and the believed status of each such check, so
//! a sample never makes a health check look absent and a health round never resolves a
//! regression. Each check counts its own rounds: a health round is not a regression
//! sample, and one regressed sample is not believed twice because health rounds follow it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use crate::health::hysteresis::{self, Policy, Transition};
use crate::health::{CheckResult, Status};

use super::health::TargetHealth;

/// Checks judged by a job other than the health round, fed through
/// [`StatusTracker::observe_part`].
pub const PART_CHECKS: &[&str] = &["query_regression"];

type Key = (String, Option<String>);

/// Believed statuses per target and per check (hysteresis), across rounds.
pub struct StatusTracker {
    policy: Mutex<Policy>,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    states: HashMap<Key, hysteresis::State>,
    /// The latest raw result of each part check, per target (for messages).
    parts: HashMap<String, BTreeMap<String, CheckResult>>,
    /// The latest health round's non-OK checks, per target (for messages).
    health: HashMap<String, Vec<CheckResult>>,
}

impl Inner {
    fn believed(&self, target: &str, check: Option<&str>) -> Status {
        self.states
            .get(&(target.to_string(), check.map(str::to_string)))
            .and_then(|s| s.believed())
            .unwrap_or(Status::Ok)
    }

    /// The target's believed status: its health rounds' and its part checks'.
    fn overall(&self, target: &str) -> Status {
        Status::worst(
            std::iter::once(self.believed(target, None))
                .chain(PART_CHECKS.iter().map(|c| self.believed(target, Some(c)))),
        )
    }

    /// "check: message" of the worst check behind `status` (latest raw results).
    fn why(&self, target: &str, status: Status) -> String {
        if status == Status::Ok {
            return "all checks OK".into();
        }
        let health = self.health.get(target).into_iter().flatten();
        let parts = self
            .parts
            .get(target)
            .into_iter()
            .flat_map(|p| p.values())
            .filter(|c| self.believed(target, Some(&c.check)) == status);
        health
            .chain(parts)
            .find(|c| c.status == status)
            .map(|c| format!("{}: {}", c.check, c.message))
            .unwrap_or_else(|| format!("target believed {status}"))
    }

    /// Feeds one raw status of `key`; a believed change is pushed to `out`.
    fn feed(
        &mut self,
        key: Key,
        raw: Status,
        at: chrono::DateTime<chrono::Utc>,
        policy: &Policy,
        message: &str,
        out: &mut Vec<BelievedChange>,
    ) {
        let t = self
            .states
            .entry(key.clone())
            .or_default()
            .observe(raw, at, policy);
        // The target's own change is decided by `target_change`, over every source.
        if let (Some(t), Some(_)) = (t, &key.1) {
            out.push(BelievedChange {
                target: key.0,
                check: key.1,
                transition: t,
                message: message.to_string(),
            });
        }
    }

    /// The target's change (if any) from `before` to its status now.
    fn target_change(&self, target: &str, before: Status, out: &mut Vec<BelievedChange>) {
        let after = self.overall(target);
        if after != before {
            out.push(BelievedChange {
                target: target.to_string(),
                check: None,
                transition: Transition {
                    from: before,
                    to: after,
                },
                message: self.why(target, after),
            });
        }
    }
}

/// A believed change of a target's or a check's status.
#[derive(Debug, Clone, PartialEq)]
pub struct BelievedChange {
    pub target: String,
    /// `None` for the target's overall status.
    pub check: Option<String>,
    pub transition: Transition,
    pub message: String,
}

impl StatusTracker {
    pub fn new(policy: Policy) -> Self {
        StatusTracker {
            policy: Mutex::new(policy),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Applies a reloaded config's hysteresis policy.
    pub fn set_policy(&self, policy: Policy) {
        *self.policy.lock().unwrap_or_else(|p| p.into_inner()) = policy;
    }

    /// Feeds one health round (the complete set of its checks); returns the changes now
    /// believed: its checks', then the target's.
    pub fn observe(&self, h: &TargetHealth) -> Vec<BelievedChange> {
        let policy = *self.policy.lock().unwrap_or_else(|p| p.into_inner());
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        let before = inner.overall(&h.target);
        for c in &h.checks {
            let key = (h.target.clone(), Some(c.check.clone()));
            inner.feed(key, c.status, h.measured_at, &policy, &c.message, &mut out);
        }
        inner.health.insert(
            h.target.clone(),
            h.checks
                .iter()
                .filter(|c| c.status != Status::Ok)
                .cloned()
                .collect(),
        );
        let key = (h.target.clone(), None);
        inner.feed(key, h.status, h.measured_at, &policy, "", &mut out);
        inner.target_change(&h.target, before, &mut out);
        out
    }

    /// Feeds checks another job judged (a partial set: only [`PART_CHECKS`]) at `at`; the
    /// target's other checks are left as they are. Returns the changes now believed.
    pub fn observe_part(
        &self,
        target: &str,
        results: &[CheckResult],
        at: chrono::DateTime<chrono::Utc>,
    ) -> Vec<BelievedChange> {
        let policy = *self.policy.lock().unwrap_or_else(|p| p.into_inner());
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        let before = inner.overall(target);
        for c in results
            .iter()
            .filter(|c| PART_CHECKS.contains(&c.check.as_str()))
        {
            let key = (target.to_string(), Some(c.check.clone()));
            inner.feed(key, c.status, at, &policy, &c.message, &mut out);
            inner
                .parts
                .entry(target.to_string())
                .or_default()
                .insert(c.check.clone(), c.clone());
        }
        inner.target_change(target, before, &mut out);
        out
    }

    /// The target's believed overall status (its health rounds' and its part checks'), if
    /// one is believed yet (the maintenance load guard's `skip_when_status`).
    pub fn believed(&self, target: &str) -> Option<Status> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let known = std::iter::once(None)
            .chain(PART_CHECKS.iter().map(|c| Some(c.to_string())))
            .any(|check| {
                inner
                    .states
                    .get(&(target.to_string(), check))
                    .is_some_and(|s| s.believed().is_some())
            });
        known.then(|| inner.overall(target))
    }

    /// Seeds believed statuses read back from the history (the latest transition of each
    /// target and check), so a status known before a restart is not announced again.
    /// Keys already observed by this process are left alone (a late restore after the
    /// store came back must not undo what rounds have since believed). Returns how many
    /// were seeded.
    pub fn restore(
        &self,
        believed: impl IntoIterator<Item = (String, Option<String>, Status)>,
    ) -> usize {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut n = 0;
        for (target, check, status) in believed {
            inner.states.entry((target, check)).or_insert_with(|| {
                n += 1;
                hysteresis::State::believing(status)
            });
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::HealthReport;
    use crate::health::{self, Scope};
    use crate::jobs::testing::result;
    use chrono::{DateTime, Utc};

    fn round(target: &str, statuses: &[(&str, Status)], at: i64) -> TargetHealth {
        let checks: Vec<CheckResult> = statuses
            .iter()
            .map(|(c, s)| result(c, Scope::Database, *s))
            .collect();
        TargetHealth {
            target: target.into(),
            engine: "sqlite",
            status: health::target_status(&checks),
            checks,
            report: HealthReport::default(),
            measured_at: DateTime::<Utc>::from_timestamp(at, 0).unwrap_or_default(),
        }
    }

    #[test]
    fn the_believed_status_of_a_target_is_what_hysteresis_settled() {
        let t = StatusTracker::new(Policy {
            rounds: 2,
            min_duration: std::time::Duration::ZERO,
        });
        assert_eq!(t.believed("a"), None);
        t.restore([("a".to_string(), None, Status::Critical)]);
        assert_eq!(t.believed("a"), Some(Status::Critical));
        t.observe(&round("a", &[("c", Status::Ok)], 1));
        assert_eq!(
            t.believed("a"),
            Some(Status::Critical),
            "one round is not believed yet"
        );
        t.observe(&round("a", &[("c", Status::Ok)], 2));
        assert_eq!(t.believed("a"), Some(Status::Ok));
    }

    #[test]
    fn tracker_believes_changes_per_check_and_target() {
        let t = StatusTracker::new(Policy::default());
        assert!(
            t.observe(&round("a", &[("c1", Status::Critical)], 0))
                .is_empty()
        );
        let changes = t.observe(&round("a", &[("c1", Status::Critical)], 30));
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert_eq!(changes[0].check.as_deref(), Some("c1"));
        assert_eq!(changes[1].check, None);
        assert_eq!(changes[1].transition.to, Status::Critical);
        assert!(changes[1].message.contains("c1"));
        // Another target is tracked separately.
        assert!(
            t.observe(&round("b", &[("c1", Status::Critical)], 30))
                .is_empty()
        );
    }

    #[test]
    fn a_restored_status_is_not_announced_again_but_its_end_is() {
        let t = StatusTracker::new(Policy::default());
        let seeded = t.restore([
            ("a".to_string(), None, Status::Critical),
            ("a".to_string(), Some("c1".to_string()), Status::Critical),
        ]);
        assert_eq!(seeded, 2);
        for at in [0, 30, 60] {
            assert!(
                t.observe(&round("a", &[("c1", Status::Critical)], at))
                    .is_empty()
            );
        }
        // Resolved while the daemon runs: announced once, after the usual confirmation.
        assert!(t.observe(&round("a", &[("c1", Status::Ok)], 90)).is_empty());
        let changes = t.observe(&round("a", &[("c1", Status::Ok)], 120));
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert!(
            changes
                .iter()
                .all(|c| c.transition.from == Status::Critical)
        );
        // A late restore does not override what rounds have believed since.
        assert_eq!(t.restore([("a".to_string(), None, Status::Critical)]), 0);
        assert!(
            t.observe(&round("a", &[("c1", Status::Ok)], 150))
                .is_empty()
        );
    }

    fn regression(status: Status) -> CheckResult {
        let mut c = result("query_regression", Scope::Database, status);
        c.message = format!("statement 42 {status}");
        c
    }

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(s, 0).unwrap_or_default()
    }

    /// (check, from, to) of each change, the target as `None`.
    fn shape(changes: &[BelievedChange]) -> Vec<(Option<&str>, Status, Status)> {
        changes
            .iter()
            .map(|c| (c.check.as_deref(), c.transition.from, c.transition.to))
            .collect()
    }

    #[test]
    fn a_sample_check_counts_its_own_rounds_and_health_rounds_neither_confirm_nor_resolve_it() {
        use Status::*;
        let t = StatusTracker::new(Policy::default());
        let ok = [("connectivity", Ok)];
        assert!(t.observe(&round("a", &ok, 0)).is_empty());
        // One regressed sample: not believed, and the health rounds after it do not count
        // as a second one.
        assert!(
            t.observe_part("a", &[regression(Warning)], at(10))
                .is_empty()
        );
        for s in [30, 60, 90] {
            assert!(t.observe(&round("a", &ok, s)).is_empty());
        }
        // The second regressed sample: the check and the target.
        let c = t.observe_part("a", &[regression(Warning)], at(70));
        assert_eq!(
            shape(&c),
            vec![(Some("query_regression"), Ok, Warning), (None, Ok, Warning)]
        );
        assert!(
            c[1].message.contains("query_regression: statement 42"),
            "{c:?}"
        );
        // Health rounds with every health check OK leave it WARNING.
        for s in [120, 150, 180] {
            assert!(t.observe(&round("a", &ok, s)).is_empty());
        }
        // A health check failing on top escalates; its end returns to the regression.
        let crit = [("connectivity", Critical)];
        assert!(t.observe(&round("a", &crit, 210)).is_empty());
        assert_eq!(
            shape(&t.observe(&round("a", &crit, 240))),
            vec![
                (Some("connectivity"), Ok, Critical),
                (None, Warning, Critical)
            ]
        );
        assert!(t.observe(&round("a", &ok, 270)).is_empty());
        assert_eq!(
            shape(&t.observe(&round("a", &ok, 300))),
            vec![
                (Some("connectivity"), Critical, Ok),
                (None, Critical, Warning)
            ]
        );
        // Two OK samples resolve the regression and, with it, the target.
        assert!(t.observe_part("a", &[regression(Ok)], at(310)).is_empty());
        assert_eq!(
            shape(&t.observe_part("a", &[regression(Ok)], at(370))),
            vec![(Some("query_regression"), Warning, Ok), (None, Warning, Ok)]
        );
    }

    #[test]
    fn an_ok_sample_does_not_resolve_a_failing_health_check() {
        use Status::*;
        let t = StatusTracker::new(Policy::default());
        let warn = [("dead_tuples", Warning)];
        t.observe(&round("a", &warn, 0));
        assert_eq!(
            shape(&t.observe(&round("a", &warn, 30))),
            vec![(Some("dead_tuples"), Ok, Warning), (None, Ok, Warning)]
        );
        for s in [40, 100, 160] {
            assert!(t.observe_part("a", &[regression(Ok)], at(s)).is_empty());
        }
        // Only checks another job owns are taken from a partial set.
        assert!(
            t.observe_part("a", &[result("dead_tuples", Scope::Database, Ok)], at(170))
                .is_empty()
        );
        assert!(
            t.observe_part("a", &[result("dead_tuples", Scope::Database, Ok)], at(180))
                .is_empty()
        );
    }

    #[test]
    fn a_restored_regression_holds_the_target_through_ok_health_rounds() {
        use Status::*;
        let t = StatusTracker::new(Policy::default());
        t.restore([
            ("a".to_string(), None, Warning),
            (
                "a".to_string(),
                Some("query_regression".to_string()),
                Warning,
            ),
        ]);
        let ok = [("connectivity", Ok)];
        for s in [0, 30, 60] {
            assert!(t.observe(&round("a", &ok, s)).is_empty(), "at {s}");
        }
        t.observe_part("a", &[regression(Ok)], at(70));
        assert_eq!(
            shape(&t.observe_part("a", &[regression(Ok)], at(130))),
            vec![(Some("query_regression"), Warning, Ok), (None, Warning, Ok)]
        );
    }
}
