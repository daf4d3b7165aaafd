//! Believed statuses per target and per check (hysteresis) across rounds, restored from the
//! history at start so a restart does not re-announce what was already known.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::health::hysteresis::{self, Policy, Transition};
use crate::health::{CheckResult, Status};

use super::health::TargetHealth;

/// Believed statuses per target and per check (hysteresis), across rounds.
pub struct StatusTracker {
    policy: Mutex<Policy>,
    states: Mutex<HashMap<(String, Option<String>), hysteresis::State>>,
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
            states: Mutex::new(HashMap::new()),
        }
    }

    /// Applies a reloaded config's hysteresis policy.
    pub fn set_policy(&self, policy: Policy) {
        *self.policy.lock().unwrap_or_else(|p| p.into_inner()) = policy;
    }

    /// Feeds one round; returns the changes now believed.
    pub fn observe(&self, h: &TargetHealth) -> Vec<BelievedChange> {
        let policy = *self.policy.lock().unwrap_or_else(|p| p.into_inner());
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        let mut feed = |check: Option<&CheckResult>, raw: Status, message: String| {
            let key = (h.target.clone(), check.map(|c| c.check.clone()));
            if let Some(t) = states
                .entry(key)
                .or_default()
                .observe(raw, h.measured_at, &policy)
            {
                out.push(BelievedChange {
                    target: h.target.clone(),
                    check: check.map(|c| c.check.clone()),
                    transition: t,
                    message,
                });
            }
        };
        for c in &h.checks {
            feed(Some(c), c.status, c.message.clone());
        }
        let worst = h
            .checks
            .iter()
            .filter(|c| c.status == h.status && c.status != Status::Ok)
            .map(|c| format!("{}: {}", c.check, c.message))
            .next()
            .unwrap_or_else(|| "all checks OK".into());
        feed(None, h.status, worst);
        out
    }

    /// The target's believed overall status, if one is believed yet (the maintenance load
    /// guard's `skip_when_status`).
    pub fn believed(&self, target: &str) -> Option<Status> {
        self.states
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(target.to_string(), None))
            .and_then(|s| s.believed())
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
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        let mut n = 0;
        for (target, check, status) in believed {
            states.entry((target, check)).or_insert_with(|| {
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
}
