//! Job kinds behind one contract.
//!
//! A kind ([`Kind`]) is built from its own typed config (`[[job]]` keys of that kind), runs
//! against one target with a cancellation token, and returns a typed report. What it
//! produced on the way (check results, transitions, table statistics, later maintenance
//! actions and samples) it publishes once on the [event stream](crate::events). The
//! scheduler runs any kind through [`Dispatcher`] and knows none of them; the daemon
//! starts and stops things and knows none of them either.
//!
//! - `health`: one health round: probe, judge, settle server-level checks, hysteresis.
//! - `sample`: slow-query sampling: statement counter deltas and live long runners.
//! - `maintenance`: plan from fresh statistics, then act within the window (also
//!   `dbwarden maintain`).
//! - `engines`: the engine per target, kept across rounds and reloads.
//! - `facts`: which target measures each server's server-level checks.
//! - `tracker`: believed statuses (hysteresis), restored from the history at start.

mod engines;
mod facts;
pub mod health;
pub mod maintenance;
pub mod sample;
mod tracker;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Job, JobParams, Target};
use crate::events::Events;
use crate::health::Status;
use crate::health::hysteresis::Policy;

pub use engines::Engines;
pub use facts::{OWNER_PATIENCE_MAX, ServerFacts};
pub use health::{HealthJob, HealthRun, TargetHealth, health_round, judge};
pub use sample::{SampleJob, SampleRun, SampleState};
pub use tracker::{BelievedChange, StatusTracker};

/// Everything one run gets.
pub struct RunCtx {
    pub run_id: String,
    /// The job as configured when the run started.
    pub job: Job,
    /// The target's settings from the config current when the run started (thresholds
    /// are read from here every round, so a reload takes effect at the next round).
    pub target: Target,
    pub config: Arc<Config>,
    /// Cancelled on timeout and shutdown: the run stops its own statements (only those)
    /// and returns [`JobError::Cancelled`].
    pub cancel: CancellationToken,
}

/// A finished run's report, as the scheduler and the CLI see it.
pub trait Report: Send + fmt::Debug + 'static {
    /// The target status the run found (health jobs); `None` for kinds without one.
    fn status(&self) -> Option<Status>;
    /// One line for `dbwarden run-job` and the debug log.
    fn summary(&self) -> String;
}

/// Why a run did not complete. Each variant keeps its kind so the run's outcome (and later
/// the self-monitoring alerts) can tell a setup problem from a stopped run; kinds that can
/// fail on the target's side (maintenance: a lock not granted) add their variant.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The run cannot work with this target as configured (its settings cannot be used):
    /// recorded `failed`; for health, connectivity is UNKNOWN with the reason.
    #[error("{0}")]
    Setup(String),
    /// Stopped by its cancellation token; its own statements were cancelled.
    #[error("cancelled; the run's statements were cancelled")]
    Cancelled,
}

/// One job kind.
pub trait Kind: Sized + Send + 'static {
    /// The kind's own `[[job]]` keys.
    type Params;
    type Report: Report;
    fn build(params: &Self::Params, shared: &Arc<Shared>) -> Self;
    fn run(self, ctx: RunCtx) -> impl Future<Output = Result<Self::Report, JobError>> + Send;
}

/// State the kinds share across runs and reloads.
pub struct Shared {
    pub engines: Engines,
    pub facts: ServerFacts,
    pub tracker: StatusTracker,
    pub events: Events,
    /// What sample runs keep between runs (previous snapshots, known texts).
    pub samples: SampleState,
    /// When each target's table statistics were last published (one cadence rule for
    /// every engine: `[daemon] table_stats_interval`).
    table_stats: Mutex<HashMap<String, tokio::time::Instant>>,
    /// Maintenance runs that ended `ok` but skipped whole, by run id, with why; the
    /// daemon takes them for the self-target's `maintenance_failing`.
    maintenance_skips: Mutex<HashMap<String, crate::maintenance::Skip>>,
    /// The history store, for what runs look up in it (the last SQLite integrity check).
    history: Mutex<Option<crate::store::Store>>,
}

impl Shared {
    pub fn new(policy: Policy, events: Events) -> Self {
        Shared {
            engines: Engines::default(),
            facts: ServerFacts::default(),
            tracker: StatusTracker::new(policy),
            events,
            samples: SampleState::default(),
            table_stats: Mutex::default(),
            maintenance_skips: Mutex::default(),
            history: Mutex::default(),
        }
    }

    /// Gives the runs the history store to look things up in (and sample runs their
    /// baselines).
    pub fn use_history(&self, store: crate::store::Store) {
        self.samples.use_store(store.clone());
        *self.history.lock().unwrap_or_else(|p| p.into_inner()) = Some(store);
    }

    /// The history store, when the runs have one.
    pub fn history(&self) -> Option<crate::store::Store> {
        self.history
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Notes that maintenance run `run_id` skipped its whole work, with why.
    pub fn note_maintenance_skip(&self, run_id: &str, why: &crate::maintenance::Skip) {
        let mut m = self
            .maintenance_skips
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        // Bounded: notes nobody takes (a `run-job` outside the daemon) do not pile up.
        if m.len() >= 1024 {
            m.clear();
        }
        m.insert(run_id.to_string(), why.clone());
    }

    /// The whole-run skip reason of maintenance run `run_id`, if it skipped (taken once).
    pub fn take_maintenance_skip(&self, run_id: &str) -> Option<crate::maintenance::Skip> {
        self.maintenance_skips
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(run_id)
    }

    /// Applies a reloaded config to the shared state.
    pub fn reload(&self, config: &Config) {
        self.engines.retain(config);
        self.facts.retain(config);
        self.tracker.set_policy(policy_of(config));
        self.table_stats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|t, _| config.target(t).is_some());
    }

    /// Whether a round of `target` starting now should report table statistics.
    fn table_stats_due(&self, target: &str, every: Duration) -> bool {
        let last = self.table_stats.lock().unwrap_or_else(|p| p.into_inner());
        due(
            last.get(target).copied(),
            tokio::time::Instant::now(),
            every,
        )
    }

    fn table_stats_taken(&self, target: &str) {
        self.table_stats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(target.to_string(), tokio::time::Instant::now());
    }
}

/// Whether something last done at `last` (never: `None`) is due again at `now`.
fn due(last: Option<tokio::time::Instant>, now: tokio::time::Instant, every: Duration) -> bool {
    last.is_none_or(|l| now.saturating_duration_since(l) >= every)
}

/// The hysteresis policy a config asks for.
pub fn policy_of(config: &Config) -> Policy {
    Policy {
        rounds: config.daemon.confirm_rounds,
        min_duration: config.daemon.confirm_for,
    }
}

/// The shared job state and the scheduler context that runs every kind on it, for a
/// config: what the daemon, `dbwarden run-job` and the tests build.
pub fn runtime(config: &Config, events: Events) -> (Arc<Shared>, Arc<crate::scheduler::Context>) {
    let shared = Arc::new(Shared::new(policy_of(config), events.clone()));
    let ctx = Arc::new(crate::scheduler::Context::new(
        Arc::new(Dispatcher::new(shared.clone())),
        events,
        Arc::new(crate::scheduler::SystemClock),
        config.daemon.max_concurrent_targets,
    ));
    (shared, ctx)
}

/// Runs any job kind: the scheduler's executor.
pub struct Dispatcher {
    shared: Arc<Shared>,
}

impl Dispatcher {
    pub fn new(shared: Arc<Shared>) -> Self {
        Dispatcher { shared }
    }
}

impl crate::scheduler::Executor for Dispatcher {
    fn run(&self, ctx: RunCtx) -> BoxFuture<'static, Result<Box<dyn Report>, JobError>> {
        match &ctx.job.params {
            JobParams::Health(p) => start(HealthJob::build(p, &self.shared), ctx),
            JobParams::Sample(p) => start(SampleJob::build(p, &self.shared), ctx),
            JobParams::Maintenance(p) => {
                start(maintenance::MaintenanceJob::build(p, &self.shared), ctx)
            }
        }
    }
}

fn start<K: Kind>(kind: K, ctx: RunCtx) -> BoxFuture<'static, Result<Box<dyn Report>, JobError>> {
    Box::pin(async move { kind.run(ctx).await.map(|r| Box::new(r) as Box<dyn Report>) })
}

/// Builders shared by the tests of the job modules.
#[cfg(test)]
pub(crate) mod testing {
    use crate::health::{CheckResult, Scope, Status, Unit};

    /// A check result with a count value of 1 and message "m".
    pub fn result(check: &str, scope: Scope, status: Status) -> CheckResult {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn table_statistics_follow_their_own_cadence() {
        let every = Duration::from_secs(300);
        let t0 = tokio::time::Instant::now();
        assert!(due(None, t0, every), "the first round reports");
        assert!(!due(Some(t0), t0 + Duration::from_secs(299), every));
        assert!(due(Some(t0), t0 + every, every));
        let shared = Shared::new(Policy::default(), Events::default());
        assert!(shared.table_stats_due("a", every));
        shared.table_stats_taken("a");
        assert!(!shared.table_stats_due("a", every));
        assert!(shared.table_stats_due("b", every), "per target");
        tokio::time::advance(every).await;
        assert!(shared.table_stats_due("a", every));
    }
}
