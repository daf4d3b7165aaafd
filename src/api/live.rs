//! The live state: what the API, `/metrics` and the dashboard show as "now", kept from the
//! event stream (never a history query). One subscriber task ([`follow`]) applies every
//! event to a [`Live`]; readers take a short read lock and clone what they need.
//!
//! Kept per target: the latest round's check results and time, its status (worst of the
//! checks) and the believed status (after hysteresis), the latest table statistics. Per job:
//! the last [`RUNS_KEPT`] runs. Running runs (scheduled or started through the API), with
//! the progress of maintenance runs (scheduled ones report it as [`Event::Progress`]).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::engine::TableStat;
use crate::events::{Event, Subscription};
use crate::health::{CheckResult, Status};
use crate::store::{JobRun, RunOutcome};

/// Runs kept per job (newest first).
pub const RUNS_KEPT: usize = 50;
/// Finished API-started runs kept for `GET /api/v1/runs/{id}`.
pub const FINISHED_KEPT: usize = 200;

/// One target as the live state knows it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TargetLive {
    /// Worst of the latest round's checks; `None` before the first round.
    pub status: Option<Status>,
    /// The believed target status (after `confirm_rounds` / `confirm_for`); `None` until a
    /// transition was seen since the start.
    pub believed: Option<Status>,
    pub last_round: Option<DateTime<Utc>>,
    pub last_run_id: Option<String>,
    pub checks: Vec<CheckResult>,
    /// The latest table statistics and when they were taken.
    pub table_stats_at: Option<DateTime<Utc>>,
    pub table_stats: Vec<TableStat>,
    /// Rounds seen since the start.
    pub rounds: u64,
}

impl TargetLive {
    /// The checks of the latest round that are not OK.
    pub fn failing(&self) -> impl Iterator<Item = &CheckResult> {
        self.checks.iter().filter(|c| c.status != Status::Ok)
    }
}

/// One run as the live state knows it.
#[derive(Debug, Clone, Serialize)]
pub struct RunLive {
    pub id: String,
    pub job: String,
    pub kind: String,
    pub target: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub outcome: RunOutcome,
    pub status: Option<Status>,
    pub error: Option<String>,
    /// Maintenance progress (scheduled runs and runs started through the API).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    /// The finished run's report (API-started maintenance runs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<serde_json::Value>,
}

/// A run started now, outside the schedule (by the API), as the history records it.
pub fn unscheduled_run(id: &str, job: &str, kind: &str, target: &str) -> JobRun {
    JobRun {
        id: id.into(),
        job: job.into(),
        kind: kind.into(),
        target: Some(target.into()),
        scheduled_at: None,
        started_at: Utc::now(),
        finished_at: None,
        outcome: RunOutcome::Running,
        status: None,
        error: None,
        coalesced: 0,
    }
}

impl From<&JobRun> for RunLive {
    fn from(r: &JobRun) -> Self {
        RunLive {
            id: r.id.clone(),
            job: r.job.clone(),
            kind: r.kind.clone(),
            target: r.target.clone(),
            started_at: r.started_at,
            finished_at: r.finished_at,
            outcome: r.outcome,
            status: r.status,
            error: r.error.clone(),
            progress: None,
            report: None,
        }
    }
}

impl RunLive {
    pub fn duration_seconds(&self) -> Option<f64> {
        self.finished_at
            .map(|f| (f - self.started_at).num_milliseconds() as f64 / 1000.0)
    }
}

/// How far a maintenance run is.
pub use crate::jobs::maintenance::RunProgress as Progress;

/// Counters since the start, for `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    /// Finished runs by (job, kind, outcome): count and summed seconds.
    pub runs: BTreeMap<(String, String, &'static str), (u64, f64)>,
    /// Maintenance steps by (target, action, outcome).
    pub maintenance: BTreeMap<(String, String, String), u64>,
    /// Health rounds by target: count and the last round's duration in seconds.
    pub rounds: BTreeMap<String, (u64, Option<f64>)>,
}

#[derive(Debug, Default)]
pub struct Inner {
    pub targets: HashMap<String, TargetLive>,
    /// Per job, newest first.
    pub jobs: HashMap<String, VecDeque<RunLive>>,
    /// Runs going now, by id.
    pub running: HashMap<String, RunLive>,
    /// Finished runs by id (bounded), for following a run the API started.
    pub finished: HashMap<String, RunLive>,
    finished_order: VecDeque<String>,
    pub counters: Counters,
    /// Events applied.
    pub applied: u64,
}

/// The live state. Cheap to clone (shared).
#[derive(Clone, Default)]
pub struct Live {
    inner: Arc<RwLock<Inner>>,
}

impl Live {
    /// A short read lock; clone what you need and let go.
    pub fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    /// One target's state, if a round of it was seen.
    pub fn target(&self, name: &str) -> Option<TargetLive> {
        self.read().targets.get(name).cloned()
    }

    /// A run going now or finished recently.
    pub fn run(&self, id: &str) -> Option<RunLive> {
        let r = self.read();
        r.running
            .get(id)
            .or_else(|| r.finished.get(id))
            .cloned()
            .or_else(|| {
                r.jobs
                    .values()
                    .flat_map(|v| v.iter())
                    .find(|x| x.id == id)
                    .cloned()
            })
    }

    /// The maintenance run going now on `target`, if any.
    pub fn running_maintenance(&self, target: &str) -> Option<RunLive> {
        self.read()
            .running
            .values()
            .find(|r| r.kind == "maintenance" && r.target.as_deref() == Some(target))
            .cloned()
    }

    /// Applies one event.
    pub fn apply(&self, e: &Event) {
        let mut s = self.write();
        s.applied += 1;
        match e {
            Event::RunStarted(r) => {
                let run = RunLive::from(r);
                if r.outcome == RunOutcome::Running {
                    // An API-started run registered itself first: keep its progress.
                    s.running.entry(r.id.clone()).or_insert(run);
                } else {
                    s.finish(run);
                }
            }
            Event::RunFinished(end) => {
                let Some(mut run) = s.running.remove(&end.id) else {
                    return;
                };
                run.finished_at = Some(end.finished_at);
                run.outcome = end.outcome;
                run.status = end.status;
                run.error = end.error.clone();
                s.finish(run);
            }
            Event::Checks {
                ts,
                target,
                run_id,
                results,
            } => {
                let t = s.targets.entry(target.clone()).or_default();
                t.status = Some(crate::health::target_status(results));
                t.last_round = Some(*ts);
                t.last_run_id = Some(run_id.clone());
                t.checks = results.clone();
                t.rounds += 1;
                let round = s.counters.rounds.entry(target.clone()).or_default();
                round.0 += 1;
            }
            Event::Transition {
                target, check, to, ..
            } => {
                if check.is_none() {
                    s.targets.entry(target.clone()).or_default().believed = Some(*to);
                }
            }
            Event::TableStats { ts, target, stats } => {
                let t = s.targets.entry(target.clone()).or_default();
                t.table_stats_at = Some(*ts);
                t.table_stats = stats.clone();
            }
            Event::Maintenance {
                target, records, ..
            } => {
                for r in records {
                    *s.counters
                        .maintenance
                        .entry((
                            target.clone(),
                            r.step.action.as_str().to_string(),
                            r.outcome.as_str().to_string(),
                        ))
                        .or_default() += 1;
                }
            }
            Event::Progress { run_id, progress } => {
                if let Some(r) = s.running.get_mut(run_id) {
                    r.progress = Some(progress.clone());
                }
            }
            Event::Sample { .. } => {}
        }
    }

    /// Registers a run unless a running one matches `conflict` (returned instead): the
    /// check and the registration are one step, so two callers cannot both start.
    pub fn begin_unless(
        &self,
        run: RunLive,
        conflict: impl Fn(&RunLive) -> bool,
    ) -> Option<RunLive> {
        let mut s = self.write();
        if let Some(other) = s.running.values().find(|r| conflict(r)) {
            return Some(other.clone());
        }
        s.running.insert(run.id.clone(), run);
        None
    }

    /// Registers a run before its [`Event::RunStarted`] so progress can be attached.
    pub fn begin(&self, run: RunLive) {
        self.write().running.insert(run.id.clone(), run);
    }

    /// Updates the progress of a running run.
    pub fn progress(&self, id: &str, f: impl FnOnce(&mut Progress)) {
        if let Some(r) = self.write().running.get_mut(id) {
            f(r.progress.get_or_insert_with(Progress::default));
        }
    }

    /// Attaches a report to a run (running or finished).
    pub fn set_report(&self, id: &str, report: serde_json::Value) {
        let mut s = self.write();
        if let Some(r) = s.running.get_mut(id) {
            r.report = Some(report);
        } else if let Some(r) = s.finished.get_mut(id) {
            r.report = Some(report);
        }
    }

    /// Ends a run that never publishes [`Event::RunFinished`] (an API run refused before
    /// it started).
    pub fn end(&self, id: &str, outcome: RunOutcome, error: Option<String>) {
        let mut s = self.write();
        if let Some(mut run) = s.running.remove(id) {
            run.finished_at = Some(Utc::now());
            run.outcome = outcome;
            run.error = error;
            s.finish(run);
        }
    }

    /// Forgets targets no longer configured (after a reload).
    pub fn retain_targets(&self, keep: impl Fn(&str) -> bool) {
        let mut s = self.write();
        s.targets.retain(|t, _| keep(t));
        s.counters.rounds.retain(|t, _| keep(t));
        s.counters.maintenance.retain(|(t, _, _), _| keep(t));
    }
}

impl Inner {
    fn finish(&mut self, run: RunLive) {
        if let Some(d) = run.duration_seconds() {
            let c = self
                .counters
                .runs
                .entry((run.job.clone(), run.kind.clone(), run.outcome.as_str()))
                .or_default();
            c.0 += 1;
            c.1 += d;
            if run.kind == "health"
                && let Some(t) = &run.target
            {
                self.counters.rounds.entry(t.clone()).or_default().1 = Some(d);
            }
        }
        let jobs = self.jobs.entry(run.job.clone()).or_default();
        jobs.push_front(run.clone());
        jobs.truncate(RUNS_KEPT);
        if run.progress.is_some() || run.report.is_some() {
            if self.finished_order.len() >= FINISHED_KEPT
                && let Some(old) = self.finished_order.pop_front()
            {
                self.finished.remove(&old);
            }
            self.finished_order.push_back(run.id.clone());
            self.finished.insert(run.id.clone(), run);
        }
    }
}

/// Applies every event of `sub` to `live` until `stop`, then what is already published.
pub async fn follow(live: Live, mut sub: Subscription, stop: CancellationToken) {
    loop {
        tokio::select! {
            biased;
            e = sub.recv() => match e {
                Some(e) => live.apply(&e),
                None => break,
            },
            _ = stop.cancelled() => {
                while let Some(e) = sub.try_recv() {
                    live.apply(&e);
                }
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::Scope;
    use crate::store::RunEnd;

    fn check(name: &str, status: Status) -> CheckResult {
        crate::jobs::testing::result(name, Scope::Database, status)
    }

    fn started(id: &str, kind: &str, target: &str) -> Event {
        Event::RunStarted(unscheduled_run(id, &format!("{kind}-job"), kind, target))
    }

    #[test]
    fn a_round_sets_status_checks_and_failing() {
        let live = Live::default();
        live.apply(&Event::Checks {
            ts: Utc::now(),
            target: "a".into(),
            run_id: "r1".into(),
            results: vec![
                check("connectivity", Status::Ok),
                check("dead_tuples", Status::Warning),
            ],
        });
        let t = live.target("a").unwrap_or_default();
        assert_eq!(t.status, Some(Status::Warning));
        assert_eq!(
            t.failing().map(|c| c.check.as_str()).collect::<Vec<_>>(),
            vec!["dead_tuples"]
        );
        assert_eq!(t.rounds, 1);
        live.apply(&Event::Transition {
            ts: Utc::now(),
            target: "a".into(),
            check: None,
            from: Status::Ok,
            to: Status::Warning,
            message: "m".into(),
        });
        assert_eq!(
            live.target("a").and_then(|t| t.believed),
            Some(Status::Warning)
        );
    }

    #[test]
    fn runs_move_from_running_to_the_jobs_history_and_are_counted() {
        let live = Live::default();
        live.apply(&started("m1", "maintenance", "a"));
        assert_eq!(
            live.running_maintenance("a").map(|r| r.id),
            Some("m1".to_string())
        );
        assert!(live.running_maintenance("b").is_none());
        live.apply(&Event::RunFinished(RunEnd {
            id: "m1".into(),
            finished_at: Utc::now(),
            outcome: RunOutcome::Ok,
            status: None,
            error: None,
        }));
        assert!(live.running_maintenance("a").is_none());
        let r = live.read();
        assert_eq!(r.jobs["maintenance-job"].len(), 1);
        assert_eq!(
            r.counters
                .runs
                .get(&("maintenance-job".into(), "maintenance".into(), "ok"))
                .map(|c| c.0),
            Some(1)
        );
    }

    #[test]
    fn progress_of_a_registered_run_survives_its_start_event() {
        let live = Live::default();
        let Event::RunStarted(r) = started("m2", "maintenance", "a") else {
            return;
        };
        live.begin(RunLive {
            progress: Some(Progress::default()),
            ..RunLive::from(&r)
        });
        live.progress("m2", |p| {
            p.step = 1;
            p.steps_total = 3;
        });
        live.apply(&Event::RunStarted(r));
        let got = live.run("m2").and_then(|r| r.progress);
        assert_eq!(got.map(|p| (p.step, p.steps_total)), Some((1, 3)));
    }

    #[test]
    fn the_history_of_a_job_is_bounded() {
        let live = Live::default();
        for i in 0..(RUNS_KEPT + 5) {
            let id = format!("h{i}");
            live.apply(&started(&id, "health", "a"));
            live.apply(&Event::RunFinished(RunEnd {
                id,
                finished_at: Utc::now(),
                outcome: RunOutcome::Ok,
                status: Some(Status::Ok),
                error: None,
            }));
        }
        assert_eq!(live.read().jobs["health-job"].len(), RUNS_KEPT);
        assert!(live.read().running.is_empty());
    }
}
