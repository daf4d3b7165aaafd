//! Hysteresis: a status change is believed only after it has held for N consecutive rounds
//! (and, optionally, for a minimum duration), like Prometheus' `for:`. One slow probe does
//! not page anyone, and flapping input does not produce flapping output. Pure.

use std::collections::VecDeque;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::Status;

/// How long a new status must hold before it is believed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Consecutive rounds (at least 1; 1 = believe at once).
    pub rounds: u32,
    /// And at least this long since the first differing round (0 = rounds only).
    pub min_duration: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            rounds: 2,
            min_duration: Duration::ZERO,
        }
    }
}

/// A believed status change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub from: Status,
    pub to: Status,
}

/// The believed status of one check (or target) and the recent raw statuses that differ
/// from it.
#[derive(Debug, Clone)]
pub struct State {
    believed: Option<Status>,
    pending: VecDeque<Status>,
    /// When the raw status first differed from the believed one, in this streak.
    since: Option<DateTime<Utc>>,
}

impl Default for State {
    fn default() -> Self {
        State::new()
    }
}

impl State {
    pub fn new() -> Self {
        State {
            believed: None,
            pending: VecDeque::new(),
            since: None,
        }
    }

    /// A state that already believes `status` (restored from the history after a restart).
    pub fn believing(status: Status) -> Self {
        State {
            believed: Some(status),
            ..State::new()
        }
    }

    /// The status currently believed (`None` before the first round).
    pub fn believed(&self) -> Option<Status> {
        self.believed
    }

    /// Feeds one round's raw status. Before the first round the status is assumed OK, so a
    /// target that is bad from the start goes through the same confirmation. A change is
    /// believed when every one of the last
    /// `policy.rounds` raw statuses differed from the believed one (and for long enough);
    /// the new status is the one of those closest in severity to the old, so a WARNING /
    /// CRITICAL mix escalates to WARNING first and a recovery through WARNING stops there.
    pub fn observe(
        &mut self,
        raw: Status,
        at: DateTime<Utc>,
        policy: &Policy,
    ) -> Option<Transition> {
        let believed = *self.believed.get_or_insert(Status::Ok);
        if raw == believed {
            self.pending.clear();
            self.since = None;
            return None;
        }
        let since = *self.since.get_or_insert(at);
        self.pending.push_back(raw);
        let need = policy.rounds.max(1) as usize;
        while self.pending.len() > need {
            self.pending.pop_front();
        }
        if self.pending.len() < need {
            return None;
        }
        if (at - since).to_std().unwrap_or(Duration::ZERO) < policy.min_duration {
            return None;
        }
        let distance = |s: Status| (i16::from(s.severity()) - i16::from(believed.severity())).abs();
        let to = self
            .pending
            .iter()
            .copied()
            .min_by_key(|s| distance(*s))
            .unwrap_or(raw);
        self.believed = Some(to);
        self.pending.clear();
        self.since = None;
        Some(Transition { from: believed, to })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Status::*;

    fn run(policy: Policy, seq: &[Status]) -> (Vec<Option<Status>>, Vec<Transition>) {
        let mut s = State::new();
        let t0 = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap_or_default();
        let mut believed = Vec::new();
        let mut transitions = Vec::new();
        for (i, raw) in seq.iter().enumerate() {
            let at = t0 + chrono::Duration::seconds(30 * i as i64);
            if let Some(t) = s.observe(*raw, at, &policy) {
                transitions.push(t);
            }
            believed.push(s.believed());
        }
        (believed, transitions)
    }

    #[test]
    fn one_bad_round_is_not_believed() {
        let (b, t) = run(Policy::default(), &[Ok, Critical, Ok, Ok]);
        assert!(t.is_empty());
        assert!(b.iter().all(|s| *s == Some(Ok)));
    }

    #[test]
    fn two_rounds_make_a_change() {
        let (_, t) = run(Policy::default(), &[Ok, Critical, Critical, Ok, Ok]);
        assert_eq!(
            t,
            vec![
                Transition {
                    from: Ok,
                    to: Critical
                },
                Transition {
                    from: Critical,
                    to: Ok
                }
            ]
        );
    }

    #[test]
    fn flapping_does_not_flap() {
        let seq: Vec<Status> = (0..20)
            .map(|i| if i % 2 == 0 { Ok } else { Critical })
            .collect();
        let (b, t) = run(Policy::default(), &seq);
        assert!(t.is_empty(), "{t:?}");
        assert!(b.iter().all(|s| *s == Some(Ok)));
        // Starting from CRITICAL, the same flapping keeps CRITICAL.
        let seq: Vec<Status> = (0..20)
            .map(|i| if i % 2 == 0 { Critical } else { Ok })
            .collect();
        let (_, t) = run(Policy::default(), &seq);
        assert!(t.is_empty(), "{t:?}");
    }

    #[test]
    fn mixed_bad_rounds_escalate_one_step() {
        let (_, t) = run(Policy::default(), &[Ok, Warning, Critical]);
        assert_eq!(
            t,
            vec![Transition {
                from: Ok,
                to: Warning
            }]
        );
        let (_, t) = run(Policy::default(), &[Critical, Critical, Ok, Warning]);
        assert_eq!(
            t,
            vec![
                Transition {
                    from: Ok,
                    to: Critical
                },
                Transition {
                    from: Critical,
                    to: Warning
                }
            ]
        );
    }

    #[test]
    fn duration_must_also_pass() {
        let p = Policy {
            rounds: 2,
            min_duration: Duration::from_secs(90),
        };
        // Rounds are 30 s apart: the change needs 4 differing rounds (0, 30, 60, 90 s).
        let (b, t) = run(p, &[Ok, Critical, Critical, Critical, Critical]);
        assert_eq!(b[2], Some(Ok));
        assert_eq!(b[3], Some(Ok));
        assert_eq!(b[4], Some(Critical));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn one_round_policy_believes_at_once() {
        let p = Policy {
            rounds: 1,
            min_duration: Duration::ZERO,
        };
        let (_, t) = run(p, &[Ok, Warning, Ok]);
        assert_eq!(t.len(), 2);
    }
}
