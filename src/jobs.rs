//! What a job kind does with one target, and the engine registry that keeps pools alive
//! across rounds and reloads.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::{Config, Target};
use crate::engine::{Engine, HealthOptions, HealthReport};
use crate::health::hysteresis::{self, Policy, Transition};
use crate::health::{self, CheckResult, Scope, Status, catalog};
use crate::store::{Record, Store, StoreError};

/// Engines by target name, reused across rounds so pools stay warm. A target whose config
/// changed on reload gets a fresh engine; the old one is closed.
#[derive(Default)]
pub struct Engines {
    map: Mutex<HashMap<String, (String, Arc<Engine>)>>,
}

fn fingerprint(t: &Target) -> String {
    // Secrets are part of the fingerprint only through their source (file/env name), so
    // a rotated password file is picked up by the pool's next connection, not by reload.
    format!("{:?}|{}", t.raw, t.url.expose())
}

impl Engines {
    /// The engine of a target, opened on first use.
    pub fn get(&self, t: &Target) -> Result<Arc<Engine>, crate::engine::EngineError> {
        let fp = fingerprint(t);
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((old_fp, e)) = map.get(&t.name)
            && *old_fp == fp
        {
            return Ok(e.clone());
        }
        let e = Arc::new(Engine::open(t)?);
        if let Some((_, old)) = map.insert(t.name.clone(), (fp, e.clone())) {
            tokio::spawn(async move { old.close(Duration::from_secs(5)).await });
        }
        Ok(e)
    }

    /// Drops engines of targets that are gone from the config.
    pub fn retain(&self, config: &Config) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let gone: Vec<String> = map
            .keys()
            .filter(|k| config.target(k).is_none())
            .cloned()
            .collect();
        for k in gone {
            if let Some((_, e)) = map.remove(&k) {
                tokio::spawn(async move { e.close(Duration::from_secs(5)).await });
            }
        }
    }

    /// Every engine currently open.
    pub fn all(&self) -> Vec<Arc<Engine>> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.values().map(|(_, e)| e.clone()).collect()
    }

    /// Cancels statements running on every server (shutdown).
    pub async fn cancel_all(&self) {
        for e in self.all() {
            e.cancel_running().await;
        }
    }

    pub async fn close_all(&self, within: Duration) {
        for e in self.all() {
            e.close(within).await;
        }
    }
}

/// Applies the target's thresholds to an engine report: the pure step between measuring
/// and storing. Disabled checks are left out; measurements of checks missing from the
/// catalogue are judged by their own verdict only.
pub fn judge(target: &Target, report: &HealthReport) -> Vec<CheckResult> {
    report
        .measurements
        .iter()
        .filter_map(|m| {
            let spec = catalog::spec(m.check)?;
            let t = target.thresholds_for(spec);
            t.enabled.then(|| health::evaluate(m, spec, &t))
        })
        .collect()
}

/// Server-level results already reported in this round, so targets that are databases of
/// one server report (and later alert on) connections, replication and the like once.
#[derive(Default)]
pub struct ServerFacts {
    seen: Mutex<BTreeMap<(String, String), String>>,
}

impl ServerFacts {
    /// Keeps server-scoped results only for the first target of each server; the others
    /// get a pointer to it instead.
    pub fn dedupe(&self, target: &str, results: Vec<CheckResult>) -> Vec<CheckResult> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        results
            .into_iter()
            .map(|r| {
                let Scope::Server(id) = &r.scope else {
                    return r;
                };
                let key = (id.clone(), r.check.clone());
                match seen.get(&key) {
                    Some(owner) if owner != target => CheckResult {
                        status: Status::Ok,
                        value: None,
                        message: format!("server-level check, reported by target {owner}"),
                        ..r
                    },
                    _ => {
                        seen.insert(key, target.to_string());
                        r
                    }
                }
            })
            .collect()
    }
}

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
}

/// One target's health round, judged.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TargetHealth {
    pub target: String,
    pub engine: &'static str,
    pub status: Status,
    pub checks: Vec<CheckResult>,
    #[serde(skip)]
    pub report: HealthReport,
    pub measured_at: DateTime<Utc>,
}

/// Runs one health round against a target and judges it (no storing, no hysteresis).
pub async fn health_round(
    engines: &Engines,
    target: &Target,
    facts: &ServerFacts,
    opts: &HealthOptions,
) -> TargetHealth {
    let measured_at = Utc::now();
    let report = match engines.get(target) {
        Ok(e) => e.health(opts).await,
        Err(e) => HealthReport {
            measurements: vec![health::Measurement::verdict(
                "connectivity",
                Status::Critical,
                None,
                e.to_string(),
            )],
            ..HealthReport::default()
        },
    };
    let checks = facts.dedupe(&target.name, judge(target, &report));
    TargetHealth {
        target: target.name.clone(),
        engine: target.engine.as_str(),
        status: health::target_status(&checks),
        checks,
        report,
        measured_at,
    }
}

/// Writes a round to the history store: check results, their numeric values as metric
/// samples (`<check>` in the check's unit), and table statistics.
pub async fn record_health(
    store: &Store,
    run_id: &str,
    h: &TargetHealth,
) -> Result<(), StoreError> {
    for c in &h.checks {
        store
            .write(Record::Check {
                ts: h.measured_at,
                target: h.target.clone(),
                run_id: Some(run_id.to_string()),
                result: c.clone(),
            })
            .await?;
        if let Some(v) = c.value
            && c.unit != health::Unit::None
        {
            store
                .write(Record::Metric {
                    ts: h.measured_at,
                    target: h.target.clone(),
                    metric: c.check.clone(),
                    value: v,
                })
                .await?;
        }
    }
    for s in &h.report.table_stats {
        store
            .write(Record::Table {
                ts: h.measured_at,
                target: h.target.clone(),
                stat: s.clone(),
            })
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::Unit;

    fn result(check: &str, scope: Scope, status: Status) -> CheckResult {
        CheckResult {
            check: check.into(),
            status,
            value: Some(1.0),
            unit: Unit::Count,
            warning: None,
            critical: None,
            message: "m".into(),
            subject: None,
            scope,
        }
    }

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
    fn server_facts_are_reported_once_per_server() {
        let facts = ServerFacts::default();
        let s = Scope::Server("sys-1".into());
        let a = facts.dedupe(
            "a",
            vec![
                result("connections", s.clone(), Status::Critical),
                result("dead_tuples", Scope::Database, Status::Warning),
            ],
        );
        let b = facts.dedupe(
            "b",
            vec![
                result("connections", s.clone(), Status::Critical),
                result("dead_tuples", Scope::Database, Status::Warning),
            ],
        );
        assert_eq!(a[0].status, Status::Critical);
        assert_eq!(b[0].status, Status::Ok);
        assert!(b[0].message.contains("reported by target a"));
        assert_eq!(b[1].status, Status::Warning);
        // The owner keeps reporting in later rounds of the same registry.
        let a2 = facts.dedupe("a", vec![result("connections", s, Status::Critical)]);
        assert_eq!(a2[0].status, Status::Critical);
    }
}
