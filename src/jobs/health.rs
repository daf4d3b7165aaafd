//! The health job kind: one round against one target — probe, judge against the target's
//! current thresholds, settle server-level checks, believe changes (hysteresis) — and
//! publish what it found.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::{JobError, Kind, Report, RunCtx, Shared};
use crate::config::{HealthParams, Target};
use crate::engine::{Engine, HealthOptions, HealthReport, RunScope, catalog};
use crate::events::Event;
use crate::health::{self, CheckResult, Status};
use crate::text::escape;

/// A health job, built from its `[[job]]` keys.
pub struct HealthJob {
    params: HealthParams,
    shared: Arc<Shared>,
}

/// What a health run found.
#[derive(Debug)]
pub struct HealthRun {
    pub health: TargetHealth,
    /// Believed changes (transitions) this round produced.
    pub changes: usize,
}

impl Report for HealthRun {
    fn status(&self) -> Option<Status> {
        Some(self.health.status)
    }

    fn summary(&self) -> String {
        let failing: Vec<&str> = self
            .health
            .checks
            .iter()
            .filter(|c| c.status != Status::Ok)
            .map(|c| c.check.as_str())
            .collect();
        if failing.is_empty() {
            format!("target status {}", self.health.status)
        } else {
            format!(
                "target status {} ({})",
                self.health.status,
                failing.join(", ")
            )
        }
    }
}

impl Kind for HealthJob {
    type Params = HealthParams;
    type Report = HealthRun;

    fn build(params: &HealthParams, shared: &Arc<Shared>) -> Self {
        HealthJob {
            params: params.clone(),
            shared: shared.clone(),
        }
    }

    async fn run(self, ctx: RunCtx) -> Result<HealthRun, JobError> {
        let shared = &self.shared;
        let target = &ctx.target;
        let opts = HealthOptions {
            integrity_check: self.params.integrity_check,
            table_stats: shared
                .table_stats_due(&target.name, ctx.config.daemon.table_stats_interval),
            ..HealthOptions::default()
        };
        // The engine this run started with: after a reload it may no longer be the
        // target's current one, and cancelling still goes to the connections it used.
        let engine = shared.engines.get(target);
        let scope = RunScope::default();
        let h = tokio::select! {
            h = round(engine.as_ref().map_err(|e| e.to_string()), target, &shared.facts, opts, &scope) => h,
            _ = ctx.cancel.cancelled() => {
                if let Ok(e) = &engine {
                    e.cancel(&scope).await;
                }
                return Err(JobError::Cancelled);
            }
        };
        let ts = h.measured_at;
        shared.events.publish(Event::Checks {
            ts,
            target: target.name.clone(),
            run_id: ctx.run_id.clone(),
            results: h.checks.clone(),
        });
        if !h.report.table_stats.is_empty() {
            shared.table_stats_taken(&target.name);
            shared.events.publish(Event::TableStats {
                ts,
                target: target.name.clone(),
                stats: h.report.table_stats.clone(),
            });
        }
        for c in h.checks.iter().filter(|c| c.status != Status::Ok) {
            tracing::debug!(check = %c.check, status = c.status.as_str(), "{}", escape(&c.message));
        }
        let changes = shared.tracker.observe(&h);
        publish_changes(&shared.events, ts, &changes);
        if let Err(e) = &engine {
            return Err(JobError::Setup(e.to_string()));
        }
        Ok(HealthRun {
            changes: changes.len(),
            health: h,
        })
    }
}

/// Logs believed changes and publishes them as [`Event::Transition`]s (what the alerter
/// and the history hear), whichever job's results made them.
pub(crate) fn publish_changes(
    events: &crate::events::Events,
    ts: DateTime<Utc>,
    changes: &[super::BelievedChange],
) {
    for change in changes {
        let check = change.check.as_deref().unwrap_or("(target)");
        let (from, to) = (change.transition.from, change.transition.to);
        let message = escape(&change.message);
        if to == Status::Ok {
            tracing::info!(
                check,
                status = to.as_str(),
                from = from.as_str(),
                "{check}: {from} -> {to}: {message}"
            );
        } else {
            tracing::warn!(
                check,
                status = to.as_str(),
                from = from.as_str(),
                "{check}: {from} -> {to}: {message}"
            );
        }
        events.publish(Event::Transition {
            ts,
            target: change.target.clone(),
            check: change.check.clone(),
            from,
            to,
            message: change.message.clone(),
        });
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

/// Runs one round against `engine` (or reports why there is none) and judges it against
/// `target`'s thresholds: no publishing, no hysteresis (what `dbwarden check` prints).
pub async fn round(
    engine: Result<&Arc<Engine>, String>,
    target: &Target,
    facts: &super::ServerFacts,
    opts: HealthOptions,
    scope: &RunScope,
) -> TargetHealth {
    let measured_at = Utc::now();
    // A target that declares the standbys it expects judges replication itself, whoever
    // measured the server's replication_lag before.
    let claims: &[&str] = if target.expected_replicas.is_some() {
        &["replication_lag"]
    } else {
        &[]
    };
    let opts = HealthOptions {
        server_checks_by: facts
            .owner_for(&target.name, measured_at)
            .and_then(|mut o| {
                o.by.retain(|check, _| !claims.contains(&check.as_str()));
                (!o.by.is_empty()).then_some(o)
            }),
        ..opts
    };
    let report = match engine {
        Ok(e) => e.health(target, &opts, scope).await,
        // Our side cannot use the target's settings: not measured, and not the
        // database's fault (UNKNOWN, not CRITICAL: nobody should be paged for the DBA).
        Err(message) => HealthReport {
            measurements: vec![health::Measurement::unknown(
                "connectivity",
                format!("cannot use the target's settings: {message}"),
                Some("fix the target in the config and reload".into()),
            )],
            ..HealthReport::default()
        },
    };
    let checks = facts.settle_claiming(
        &target.name,
        &report,
        judge(target, &report),
        measured_at,
        claims,
    );
    TargetHealth {
        target: target.name.clone(),
        engine: target.engine.as_str(),
        status: health::target_status(&checks),
        checks,
        report,
        measured_at,
    }
}

/// One round of `target` through the engine registry (opened on first use), judged; no
/// publishing, no hysteresis.
pub async fn health_round(
    engines: &super::Engines,
    target: &Target,
    facts: &super::ServerFacts,
    opts: &HealthOptions,
) -> TargetHealth {
    let engine = engines.get(target);
    round(
        engine.as_ref().map_err(|e| e.to_string()),
        target,
        facts,
        opts.clone(),
        &RunScope::default(),
    )
    .await
}

/// Applies the target's thresholds to an engine report: the pure step between measuring
/// and publishing. Disabled checks are left out, and so are measurements of checks the
/// catalogue does not list (an engine bug: every check an engine measures is listed).
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
