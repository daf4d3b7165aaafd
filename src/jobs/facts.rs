//! Which target measures each server's server-level checks.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use chrono::{DateTime, Utc};

use crate::config::Config;
use crate::engine::{HealthReport, ServerOwners};
use crate::health::{CheckResult, Scope, Status};

/// Which target measures each server's server-level checks (connections, replication,
/// wraparound of every database, the processlist), so targets that are databases of one
/// server query those once and report (and later alert on) them once.
///
/// Ownership is per server and check: the first target to really measure a check of a
/// server (enabled there, not UNKNOWN, `disk_space` visible) owns it; the other targets
/// skip its probe and report it as "measured by target X". A check the owner cannot
/// measure stays with whoever can. Ownership moves when the owner no longer measures the
/// check (unreachable, disabled, lost the privilege), is no longer run by an enabled
/// health job after a reload, or stops running
/// rounds for three of its intervals (at least a minute, at most [`OWNER_PATIENCE_MAX`]).
/// A slower owner keeps its checks while within that patience, so alert state does not
/// hop between targets.
#[derive(Default)]
pub struct ServerFacts {
    state: Mutex<FactsState>,
}

#[derive(Default)]
struct FactsState {
    /// The server each target was last found on.
    server_of: HashMap<String, String>,
    /// Each target's last round and the interval between its last two rounds.
    rounds: HashMap<String, (DateTime<Utc>, Option<chrono::TimeDelta>)>,
    /// (server id, check) → owning target.
    owners: HashMap<(String, String), String>,
}

/// How long an owner whose interval is not known yet may stay silent before another
/// target takes its checks over.
const OWNER_PATIENCE_UNKNOWN: chrono::TimeDelta = chrono::TimeDelta::minutes(10);
/// The least patience, whatever the owner's interval.
const OWNER_PATIENCE_MIN: chrono::TimeDelta = chrono::TimeDelta::minutes(1);
/// The most: a server's checks are never left unmeasured longer than this while another
/// of its targets runs (an hourly owner hands over to a target that runs every minute).
pub const OWNER_PATIENCE_MAX: chrono::TimeDelta = chrono::TimeDelta::minutes(15);

impl FactsState {
    /// The owner has not run a round for three of its intervals.
    fn lost(&self, owner: &str, now: DateTime<Utc>) -> bool {
        let Some((last, interval)) = self.rounds.get(owner) else {
            return true;
        };
        let patience = interval
            .map(|i| (i * 3).clamp(OWNER_PATIENCE_MIN, OWNER_PATIENCE_MAX))
            .unwrap_or(OWNER_PATIENCE_UNKNOWN);
        now.signed_duration_since(*last) > patience
    }
}

impl ServerFacts {
    /// The targets that measure `target`'s server-level checks in a round starting `now`
    /// instead of it; `None` when `target` should measure them all itself.
    pub fn owner_for(&self, target: &str, now: DateTime<Utc>) -> Option<ServerOwners> {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let server = st.server_of.get(target)?;
        let by: BTreeMap<String, String> = st
            .owners
            .iter()
            .filter(|((s, _), owner)| s == server && *owner != target && !st.lost(owner, now))
            .map(|((_, check), owner)| (check.clone(), owner.clone()))
            .collect();
        (!by.is_empty()).then(|| ServerOwners {
            server_id: server.clone(),
            by,
        })
    }

    /// Learns from a finished round (the target's server, ownership) and points the
    /// server-level results of every target but a check's owner to the owner.
    pub fn settle(
        &self,
        target: &str,
        report: &HealthReport,
        results: Vec<CheckResult>,
        now: DateTime<Utc>,
    ) -> Vec<CheckResult> {
        self.settle_claiming(target, report, results, now, &[])
    }

    /// [`settle`](Self::settle), where `target` takes the server-level checks in `claims`
    /// over from another owner whenever it measured them: its config asks more of them
    /// (e.g. `expected_replicas` for `replication_lag`) than another target would judge.
    pub fn settle_claiming(
        &self,
        target: &str,
        report: &HealthReport,
        results: Vec<CheckResult>,
        now: DateTime<Utc>,
        claims: &[&str],
    ) -> Vec<CheckResult> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let interval = st
            .rounds
            .get(target)
            .map(|(last, _)| now.signed_duration_since(*last))
            .filter(|i| *i > chrono::TimeDelta::zero());
        let previous = st.rounds.get(target).and_then(|(_, i)| *i);
        st.rounds
            .insert(target.to_string(), (now, interval.or(previous)));
        match &report.server_id {
            Some(id) if report.reached() => {
                st.server_of.insert(target.to_string(), id.clone());
                // Checks it owned but did not measure now (disabled, UNKNOWN, not visible),
                // and any of another server (a failover moved it), are free again.
                st.owners.retain(|(server, check), owner| {
                    owner != target
                        || (server == id && report.server_checks.contains(&check.as_str()))
                });
                for check in &report.server_checks {
                    let key = (id.clone(), check.to_string());
                    let take = match st.owners.get(&key) {
                        Some(o) => o == target || st.lost(o, now) || claims.contains(check),
                        None => true,
                    };
                    if take {
                        st.owners.insert(key, target.to_string());
                    }
                }
            }
            // Could not reach its server: the next target of the server measures instead.
            _ => st.owners.retain(|_, owner| owner != target),
        }
        results
            .into_iter()
            .map(|r| {
                let Scope::Server(id) = &r.scope else {
                    return r;
                };
                match st.owners.get(&(id.clone(), r.check.clone())) {
                    Some(owner) if owner != target => CheckResult {
                        status: Status::Ok,
                        value: None,
                        warning: None,
                        critical: None,
                        subject: None,
                        message: format!("server-level check, measured by target {owner}"),
                        ..r
                    },
                    _ => r,
                }
            })
            .collect()
    }

    /// After a reload: forgets targets that left the config, and hands over the checks of
    /// targets no enabled health job runs any more; they get a new owner next round.
    pub fn retain(&self, config: &Config) {
        let monitored: std::collections::HashSet<&str> = config
            .jobs
            .iter()
            .filter(|j| j.enabled && j.kind == crate::config::JobKind::Health)
            .flat_map(|j| config.job_targets(j))
            .map(|t| t.name.as_str())
            .collect();
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.server_of.retain(|t, _| config.target(t).is_some());
        st.rounds.retain(|t, _| config.target(t).is_some());
        st.owners.retain(|_, t| monitored.contains(t.as_str()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health;
    use crate::jobs::testing::result;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_700_000_000 + secs, 0).unwrap_or_default()
    }

    /// A round's report: `measured` = the server-level checks the engine measured.
    fn report(server: Option<&str>, measured: &[&'static str], reached: bool) -> HealthReport {
        let connectivity = if reached {
            health::Measurement::value("connectivity", health::Observation::new(1.0))
        } else {
            health::Measurement::verdict("connectivity", Status::Critical, None, "down")
        };
        HealthReport {
            measurements: vec![connectivity],
            server_id: server.map(str::to_string),
            server_checks: measured.to_vec(),
            table_stats: Vec::new(),
        }
    }

    /// `target` measured `connections` of `server` in a round at `secs`.
    fn measured(facts: &ServerFacts, target: &str, server: &str, secs: i64) {
        facts.settle(
            target,
            &report(Some(server), &["connections"], true),
            vec![],
            at(secs),
        );
    }

    /// Who measures `connections` for `target` instead of it.
    fn owner(facts: &ServerFacts, target: &str, now: i64) -> Option<String> {
        facts
            .owner_for(target, at(now))
            .and_then(|o| o.by.get("connections").cloned())
    }

    #[test]
    fn a_target_claiming_a_check_takes_it_over_from_its_owner() {
        let facts = ServerFacts::default();
        let s = Scope::Server("sys-1".into());
        let lag = || vec![result("connections", s.clone(), Status::Warning)];
        facts.settle(
            "a",
            &report(Some("sys-1"), &["connections"], true),
            lag(),
            at(0),
        );
        facts.settle(
            "b",
            &report(Some("sys-1"), &["connections"], true),
            lag(),
            at(0),
        );
        assert_eq!(owner(&facts, "b", 30), Some("a".into()));
        // b measured it (its config asks more of it) and claims it: b owns it now, its
        // result stands, and a's results point to b.
        let b = facts.settle_claiming(
            "b",
            &report(Some("sys-1"), &["connections"], true),
            lag(),
            at(30),
            &["connections"],
        );
        assert_eq!(b[0].status, Status::Warning);
        assert_eq!(owner(&facts, "a", 60), Some("b".into()));
        assert_eq!(owner(&facts, "b", 60), None);
        // Without the claim a later round of a does not take it back.
        let a = facts.settle("a", &report(Some("sys-1"), &[], true), lag(), at(60));
        assert!(a[0].message.contains("measured by target b"), "{:?}", a[0]);
    }

    #[test]
    fn server_checks_are_measured_and_reported_once_per_server() {
        let facts = ServerFacts::default();
        let s = Scope::Server("sys-1".into());
        let both = || {
            vec![
                result("connections", s.clone(), Status::Critical),
                result("dead_tuples", Scope::Database, Status::Warning),
            ]
        };
        // First round: nobody knows the server yet, both measure; the first to finish
        // owns the server, the other's server-level results point to it.
        assert_eq!(owner(&facts, "a", 0), None);
        assert_eq!(owner(&facts, "b", 0), None);
        let a = facts.settle(
            "a",
            &report(Some("sys-1"), &["connections"], true),
            both(),
            at(0),
        );
        let b = facts.settle(
            "b",
            &report(Some("sys-1"), &["connections"], true),
            both(),
            at(0),
        );
        assert_eq!(a[0].status, Status::Critical);
        assert_eq!(b[0].status, Status::Ok);
        assert_eq!(b[0].value, None);
        assert!(b[0].message.contains("measured by target a"), "{:?}", b[0]);
        assert_eq!(b[1].status, Status::Warning, "database checks stay");
        // From the second round on, b does not measure them at all.
        let o = facts.owner_for("b", at(30));
        assert_eq!(
            o,
            Some(ServerOwners {
                server_id: "sys-1".into(),
                by: [("connections".to_string(), "a".to_string())].into(),
            })
        );
        assert_eq!(owner(&facts, "a", 30), None, "the owner measures");
        let a2 = facts.settle(
            "a",
            &report(Some("sys-1"), &["connections"], true),
            both(),
            at(30),
        );
        assert_eq!(a2[0].status, Status::Critical);
        // Another server has its own owner.
        assert_eq!(owner(&facts, "c", 30), None);
        measured(&facts, "c", "sys-2", 30);
        assert_eq!(owner(&facts, "c", 60), None);
    }

    #[test]
    fn an_unreachable_owner_hands_over_at_once() {
        let facts = ServerFacts::default();
        measured(&facts, "a", "s", 0);
        measured(&facts, "b", "s", 0);
        assert_eq!(owner(&facts, "b", 30).as_deref(), Some("a"));
        // a's database is down (or its credentials broke); the server may well be fine.
        facts.settle("a", &report(Some("s"), &[], false), vec![], at(30));
        assert_eq!(owner(&facts, "b", 31), None);
        measured(&facts, "b", "s", 31);
        assert_eq!(owner(&facts, "a", 60).as_deref(), Some("b"));
    }

    #[test]
    fn a_silent_owner_is_replaced_after_three_of_its_intervals() {
        let facts = ServerFacts::default();
        for t in [0, 60, 120] {
            measured(&facts, "a", "s", t);
        }
        measured(&facts, "b", "s", 120);
        // a runs every 60 s; its job is then disabled.
        assert_eq!(owner(&facts, "b", 300).as_deref(), Some("a"));
        assert_eq!(owner(&facts, "b", 301), None);
        measured(&facts, "b", "s", 301);
        assert_eq!(owner(&facts, "b", 330), None);
        assert_eq!(owner(&facts, "a", 330).as_deref(), Some("b"));
    }

    #[test]
    fn a_slower_owner_keeps_the_server_so_alerts_do_not_hop() {
        let facts = ServerFacts::default();
        // a every 5 minutes, b every 30 s, b offset by 10 s.
        for minute in 0..30 {
            let t = minute * 60;
            if minute % 5 == 0 {
                assert_eq!(owner(&facts, "a", t), None, "minute {minute}");
                measured(&facts, "a", "s", t);
            }
            for b in [t + 10, t + 40] {
                let by = owner(&facts, "b", b);
                // b's first round does not know its server yet, so it measures.
                let expected = (b > 10).then_some("a");
                assert_eq!(by.as_deref(), expected, "second {b}");
                let measured: &[&'static str] = if by.is_none() { &["connections"] } else { &[] };
                facts.settle("b", &report(Some("s"), measured, true), vec![], at(b));
            }
        }
    }

    #[test]
    fn an_owner_that_moved_server_gives_the_old_one_up() {
        let facts = ServerFacts::default();
        measured(&facts, "a", "old", 0);
        measured(&facts, "b", "old", 0);
        // a's host name now points at another server (failover).
        measured(&facts, "a", "new", 30);
        assert_eq!(owner(&facts, "b", 31), None);
    }

    #[test]
    fn each_check_goes_to_a_target_that_can_measure_it() {
        let facts = ServerFacts::default();
        // a connects over TCP from elsewhere: it cannot see the data directory.
        measured(&facts, "a", "s", 0);
        // b runs on the database host.
        facts.settle(
            "b",
            &report(Some("s"), &["connections", "disk_space"], true),
            vec![],
            at(0),
        );
        let for_a = facts.owner_for("a", at(30)).map(|o| o.by);
        let for_b = facts.owner_for("b", at(30)).map(|o| o.by);
        assert_eq!(
            for_a,
            Some([("disk_space".to_string(), "b".to_string())].into())
        );
        assert_eq!(
            for_b,
            Some([("connections".to_string(), "a".to_string())].into())
        );
    }

    #[test]
    fn a_check_the_owner_stops_measuring_is_free_again() {
        let facts = ServerFacts::default();
        measured(&facts, "a", "s", 0);
        measured(&facts, "b", "s", 0);
        assert_eq!(owner(&facts, "b", 30).as_deref(), Some("a"));
        // a's thresholds now disable it (or a lost the privilege: UNKNOWN).
        facts.settle("a", &report(Some("s"), &[], true), vec![], at(30));
        assert_eq!(owner(&facts, "b", 31), None);
    }

    #[test]
    fn patience_with_a_slow_owner_is_bounded() {
        let facts = ServerFacts::default();
        // a runs hourly.
        for t in [0, 3600] {
            measured(&facts, "a", "s", t);
        }
        measured(&facts, "b", "s", 3600);
        let cap = OWNER_PATIENCE_MAX.num_seconds();
        assert_eq!(owner(&facts, "b", 3600 + cap).as_deref(), Some("a"));
        assert_eq!(owner(&facts, "b", 3600 + cap + 1), None);
    }

    #[test]
    fn a_reload_hands_over_the_checks_of_targets_no_job_runs() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("dbwarden.toml");
        let write = |job_targets: &str| {
            let body = format!(
                "[daemon]\nhistory = \"sqlite://{}/h.db\"\n\n\
                 [[target]]\nname = \"a\"\nurl = \"sqlite://{0}/a.db?mode=rwc\"\n\n\
                 [[target]]\nname = \"b\"\nurl = \"sqlite://{0}/b.db?mode=rwc\"\n\n\
                 [[job]]\nname = \"health\"\nkind = \"health\"\nschedule = \"@every 30s\"\n\
                 targets = {job_targets}\n",
                dir.path().display()
            );
            std::fs::write(&path, body).unwrap_or_else(|e| panic!("{e}"));
            crate::config::load(&path).unwrap_or_else(|e| panic!("{e}"))
        };
        let facts = ServerFacts::default();
        measured(&facts, "a", "s", 0);
        measured(&facts, "b", "s", 0);
        facts.retain(&write(r#"["a", "b"]"#));
        assert_eq!(owner(&facts, "b", 30).as_deref(), Some("a"));
        // a stays a target but no health job runs it any more.
        facts.retain(&write(r#"["b"]"#));
        assert_eq!(owner(&facts, "b", 31), None);
    }

    #[test]
    fn placeholders_name_the_current_owner() {
        let facts = ServerFacts::default();
        let s = Scope::Server("s".into());
        measured(&facts, "a", "s", 0);
        let b = facts.settle(
            "b",
            &report(Some("s"), &[], true),
            vec![result("connections", s, Status::Ok)],
            at(10),
        );
        assert!(b[0].message.contains("measured by target a"));
    }
}
