//! Executing a plan: one step at a time on an engine's maintenance session, no new table
//! after the deadline (window end or `max_duration`) or a stop request, and a statement
//! still running then cancelled on the server and recorded `interrupted`.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::plan::{Plan, Step};
use crate::health::Status;

/// Why a step or a whole run was skipped, as a kind the self-monitoring and scripts can
/// act on without reading the wording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipKind {
    /// The table's lock was not granted within the lock timeout.
    LockHeld,
    /// SQLite: the database was busy past the busy timeout.
    Busy,
    /// Outside the job's window, or the window / `max_duration` ended first.
    Window,
    /// The load guard (active sessions, replication lag, the target's status) held it off.
    Guard,
    /// The server is a hot standby: maintenance runs on the primary.
    Standby,
    /// Another dbwarden holds the database's (or the server's) maintenance lock.
    Locked,
    /// Something holds back the xmin horizon, so VACUUM would be in vain.
    Horizon,
    /// The run was stopped (shutdown, timeout) before the step started.
    Stopped,
    /// The table went away between the plan and the step.
    Gone,
    /// The target cannot be maintained as configured (read-only, ...).
    NotApplicable,
}

impl SkipKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SkipKind::LockHeld => "lock_held",
            SkipKind::Busy => "busy",
            SkipKind::Window => "window",
            SkipKind::Guard => "guard",
            SkipKind::Standby => "standby",
            SkipKind::Locked => "locked",
            SkipKind::Horizon => "horizon",
            SkipKind::Stopped => "stopped",
            SkipKind::Gone => "gone",
            SkipKind::NotApplicable => "not_applicable",
        }
    }

    /// A skip that is the plan, not a problem: a hot standby is maintained through its
    /// primary, a run outside its window waits for the next one, a read-only target is
    /// not ours to write.
    pub fn expected(self) -> bool {
        matches!(
            self,
            SkipKind::Standby | SkipKind::Window | SkipKind::NotApplicable
        )
    }
}

/// A skip: its kind and, in words, why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skip {
    pub kind: SkipKind,
    pub why: String,
}

impl Skip {
    pub fn new(kind: SkipKind, why: impl Into<String>) -> Skip {
        Skip {
            kind,
            why: why.into(),
        }
    }
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.why)
    }
}

/// How a step ended. Serialized flat: `outcome`, `why` and, for a skip, `skip_kind`.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Done,
    Skipped(Skip),
    Failed(String),
    Interrupted(String),
}

impl Serialize for Outcome {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("outcome", self.as_str())?;
        if let Some(w) = self.why() {
            m.serialize_entry("why", w)?;
        }
        if let Some(k) = self.skip_kind() {
            m.serialize_entry("skip_kind", &k)?;
        }
        m.end()
    }
}

impl Outcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Done => "done",
            Outcome::Skipped(_) => "skipped",
            Outcome::Failed(_) => "failed",
            Outcome::Interrupted(_) => "interrupted",
        }
    }

    /// The reason of a non-`done` outcome.
    pub fn why(&self) -> Option<&str> {
        match self {
            Outcome::Done => None,
            Outcome::Skipped(s) => Some(&s.why),
            Outcome::Failed(w) | Outcome::Interrupted(w) => Some(w),
        }
    }

    /// The kind of a skip.
    pub fn skip_kind(&self) -> Option<SkipKind> {
        match self {
            Outcome::Skipped(s) => Some(s.kind),
            _ => None,
        }
    }

    /// A skip of `kind` with why.
    pub fn skipped(kind: SkipKind, why: impl Into<String>) -> Outcome {
        Outcome::Skipped(Skip::new(kind, why))
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.why() {
            None => f.write_str(self.as_str()),
            Some(w) => write!(f, "{}: {w}", self.as_str()),
        }
    }
}

/// Why maintenance did not start on a database.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// Nothing wrong, but nothing to do here now (a hot standby, another dbwarden).
    Skipped(Skip),
    /// Could not connect or set up the session.
    Failed(String),
    /// Another database of the same server is being maintained (the server-wide lock is
    /// held): a scheduled run waits for its turn, a dry run says so.
    ServerBusy(String),
}

/// Numbers measured right after a step.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct After {
    pub dead_rows: Option<f64>,
    pub freeze_age: Option<f64>,
    pub size_bytes: Option<f64>,
    /// The size measured right before the step where the plan's estimate is not good
    /// enough (VACUUM FULL: relpages is as of the last VACUUM/ANALYZE); it replaces the
    /// step's `size_bytes` in the record.
    #[serde(skip)]
    pub size_before: Option<f64>,
}

/// What an engine's session returns for one step.
#[derive(Debug, Clone, PartialEq)]
pub struct StepResult {
    pub outcome: Outcome,
    pub after: After,
}

/// One executed (or skipped) step, for the report and the history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepRecord {
    #[serde(flatten)]
    pub step: Step,
    #[serde(flatten)]
    pub outcome: Outcome,
    pub started: DateTime<Utc>,
    pub finished: DateTime<Utc>,
    pub after: After,
}

/// An engine's maintenance session: one connection holding the maintenance locks, from
/// which the planner's facts are read and the steps run. Every engine's session has this
/// shape, so the job drives them all with one piece of code.
pub trait Session: Send {
    /// What the engine's planner needs.
    type Facts: Send;
    /// Fresh statistics for the plan (a busy database: `Refusal::Skipped`).
    fn facts(&mut self) -> impl Future<Output = Result<Self::Facts, Refusal>> + Send;
    /// The load guard's measurements, only those `limits` ask for.
    fn load(&mut self, limits: &GuardLimits) -> impl Future<Output = Result<Load, String>> + Send;
    /// Runs one step.
    fn execute(&mut self, step: &Step) -> impl Future<Output = StepResult> + Send;
    /// Releases the locks and the connection.
    fn finish(self) -> impl Future<Output = ()> + Send;
    /// The server backend running the steps, where progress can be read by it.
    fn backend(&self) -> Option<i32> {
        None
    }
}

/// What the load guard does when a limit is exceeded before a table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnGuard {
    /// Skip the table (recorded with the reason) and go on with the next.
    #[default]
    Skip,
    /// Wait, re-checking every [`GUARD_RETRY`], until the load is back under the limits;
    /// bounded by the window / `max_duration` (then the table is skipped) and the run's
    /// cancellation.
    Pause,
}

/// The load guard's limits (job keys); `None` is no limit.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GuardLimits {
    pub max_active_sessions: Option<u32>,
    pub max_replication_lag: Option<Duration>,
    /// Hold off while the target's believed status is at or above this (severity order
    /// CRITICAL > UNKNOWN > WARNING > OK).
    pub skip_when_status: Option<Status>,
    pub on_guard: OnGuard,
}

impl GuardLimits {
    /// Whether any limit is set (else the guard measures nothing).
    pub fn any(&self) -> bool {
        self.max_active_sessions.is_some()
            || self.max_replication_lag.is_some()
            || self.skip_when_status.is_some()
    }
}

/// What a session measured for the guard (`None`: not asked for, or not applicable).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Load {
    /// Other client sessions of the server running a statement.
    pub active_sessions: Option<u64>,
    /// Replication lag in seconds: on a primary the worst standby's replay lag, on a
    /// standby its own; with who lags.
    pub replication_lag: Option<(f64, String)>,
}

/// The guard's decision (pure): why the next table must wait, or `None` to go on.
pub fn guard_verdict(load: &Load, status: Option<Status>, limits: &GuardLimits) -> Option<String> {
    let mut why = Vec::new();
    if let (Some(limit), Some(n)) = (limits.max_active_sessions, load.active_sessions)
        && n > u64::from(limit)
    {
        why.push(format!(
            "{n} other sessions running statements > max_active_sessions {limit}"
        ));
    }
    if let (Some(limit), Some((lag, who))) = (limits.max_replication_lag, &load.replication_lag)
        && *lag > limit.as_secs_f64()
    {
        why.push(format!(
            "replication lag of {who} {:.1}s > max_replication_lag {}",
            lag,
            humantime::format_duration(limit)
        ));
    }
    if let (Some(limit), Some(s)) = (limits.skip_when_status, status)
        && s.severity() >= limit.severity()
    {
        why.push(format!(
            "the target's status is {} (skip_when_status {})",
            s.as_str(),
            limit.as_str()
        ));
    }
    (!why.is_empty()).then(|| format!("load guard: {}", why.join("; ")))
}

/// The guard a run is held against: the limits and the target's believed status.
pub struct Guard<'a> {
    pub limits: GuardLimits,
    /// The target's believed status now (the daemon's status tracker); `None` unknown.
    pub status: &'a (dyn Fn() -> Option<Status> + Send + Sync),
}

impl Guard<'_> {
    /// No limits.
    pub fn none() -> Guard<'static> {
        Guard {
            limits: GuardLimits::default(),
            status: &|| None,
        }
    }
}

/// How often a paused run re-checks the load guard.
pub const GUARD_RETRY: Duration = Duration::from_secs(30);

/// Why no more tables start.
fn stop_reason(deadline: Option<Instant>, cancel: &CancellationToken) -> Option<Skip> {
    if cancel.is_cancelled() {
        Some(Skip::new(
            SkipKind::Stopped,
            "not started: the run was stopped",
        ))
    } else if deadline.is_some_and(|d| Instant::now() >= d) {
        Some(Skip::new(
            SkipKind::Window,
            "not started: the maintenance window or max_duration ended",
        ))
    } else {
        None
    }
}

/// Checks the guard before a table, pausing when asked to: `Ok(())` go on, `Err` the
/// step's outcome instead.
async fn pass_guard<S: Session>(
    session: &mut S,
    guard: &Guard<'_>,
    deadline: Option<Instant>,
    cancel: &CancellationToken,
) -> Result<(), Outcome> {
    if !guard.limits.any() {
        return Ok(());
    }
    let mut paused = false;
    loop {
        let load = session
            .load(&guard.limits)
            .await
            .map_err(|e| Outcome::Failed(format!("load guard: {e}")))?;
        let Some(why) = guard_verdict(&load, (guard.status)(), &guard.limits) else {
            return Ok(());
        };
        if guard.limits.on_guard == OnGuard::Skip {
            return Err(Outcome::skipped(SkipKind::Guard, why));
        }
        let late = deadline.is_some_and(|d| Instant::now() + GUARD_RETRY >= d);
        if late {
            return Err(Outcome::skipped(
                SkipKind::Guard,
                format!("{why}; paused until the maintenance window or max_duration ended"),
            ));
        }
        if !paused {
            tracing::info!("maintenance paused: {why}");
            paused = true;
        }
        tokio::select! {
            _ = tokio::time::sleep(GUARD_RETRY) => {}
            _ = cancel.cancelled() => {
                return Err(Outcome::skipped(SkipKind::Stopped, format!("{why}; the run was stopped while paused")));
            }
        }
    }
}

/// After cancelling a running statement, how long to wait for the server to stop it.
const CANCEL_GRACE: Duration = Duration::from_secs(30);

/// Runs `plan` on `session`. `interrupt` cancels the statement running on the session's
/// server connection (called at the deadline or on `cancel`); `progress(i, n, step)` is
/// called before each step.
pub async fn run_plan<S, I, F>(
    session: &mut S,
    plan: &Plan,
    guard: &Guard<'_>,
    deadline: Option<Instant>,
    cancel: &CancellationToken,
    interrupt: I,
    mut progress: impl FnMut(usize, usize, &Step),
) -> Vec<StepRecord>
where
    S: Session,
    I: Fn() -> F,
    F: Future<Output = ()>,
{
    let n = plan.steps.len();
    let mut out = Vec::with_capacity(n);
    for (i, step) in plan.steps.iter().enumerate() {
        let started = Utc::now();
        let record = |outcome, after| StepRecord {
            step: step.clone(),
            outcome,
            started,
            finished: Utc::now(),
            after,
        };
        if let Some(skip) = &step.skip {
            out.push(record(Outcome::Skipped(skip.clone()), After::default()));
            continue;
        }
        if let Some(skip) = stop_reason(deadline, cancel) {
            out.push(record(Outcome::Skipped(skip), After::default()));
            continue;
        }
        if let Err(o) = pass_guard(session, guard, deadline, cancel).await {
            out.push(record(o, After::default()));
            continue;
        }
        progress(i + 1, n, step);
        let fut = session.execute(step);
        tokio::pin!(fut);
        let until = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        let result = tokio::select! {
            r = &mut fut => r,
            _ = until => stop(&mut fut, &interrupt, "the maintenance window or max_duration ended").await,
            _ = cancel.cancelled() => stop(&mut fut, &interrupt, "the run was stopped").await,
        };
        let mut rec = record(result.outcome, result.after);
        if let Some(b) = rec.after.size_before.take() {
            rec.step.size_bytes = b;
        }
        out.push(rec);
    }
    out
}

/// Cancels the running statement and waits (a bounded time) for the step to end; its
/// outcome is `interrupted` whatever error the cancelled statement reported.
async fn stop<F, I, G>(fut: &mut std::pin::Pin<&mut F>, interrupt: &I, why: &str) -> StepResult
where
    F: Future<Output = StepResult>,
    I: Fn() -> G,
    G: Future<Output = ()>,
{
    interrupt().await;
    let after = match tokio::time::timeout(CANCEL_GRACE, fut.as_mut()).await {
        Ok(r) if r.outcome == Outcome::Done => {
            // It finished as the cancel arrived: it did its work.
            return r;
        }
        Ok(r) => r.after,
        Err(_) => After::default(),
    };
    StepResult {
        outcome: Outcome::Interrupted(format!("cancelled on the server: {why}")),
        after,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maintenance::plan::{Action, Need};
    use std::sync::{Arc, Mutex};

    fn step(name: &str) -> Step {
        Step {
            table: name.into(),
            sql_name: name.into(),
            action: Action::VacuumAnalyze,
            need: Need::DeadRows,
            reason: "r".into(),
            skip: None,
            dead_rows: 1.0,
            freeze_age: None,
            size_bytes: 1.0,
            urgency: 0.0,
        }
    }

    /// Each step "runs" for 10 virtual minutes, unless interrupted.
    struct Slow {
        interrupted: Arc<tokio::sync::Notify>,
    }

    impl Session for Slow {
        type Facts = ();
        async fn facts(&mut self) -> Result<(), Refusal> {
            Ok(())
        }
        async fn load(&mut self, _: &GuardLimits) -> Result<Load, String> {
            Ok(Load::default())
        }
        async fn finish(self) {}
        fn execute(&mut self, _: &Step) -> impl Future<Output = StepResult> + Send {
            let n = self.interrupted.clone();
            async move {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(600)) => StepResult { outcome: Outcome::Done, after: After::default() },
                    _ = n.notified() => StepResult { outcome: Outcome::Failed("canceling statement due to user request".into()), after: After::default() },
                }
            }
        }
    }

    fn plan3() -> Plan {
        Plan {
            steps: vec![step("a"), step("b"), step("c")],
            deferred: 0,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn no_new_table_after_the_deadline_and_the_running_one_is_cancelled() {
        let notify = Arc::new(tokio::sync::Notify::new());
        let mut s = Slow {
            interrupted: notify.clone(),
        };
        let calls = Arc::new(Mutex::new(0));
        let c2 = calls.clone();
        let deadline = Instant::now() + Duration::from_secs(900);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        let out = run_plan(
            &mut s,
            &plan3(),
            &Guard::none(),
            Some(deadline),
            &CancellationToken::new(),
            || {
                *c2.lock().unwrap_or_else(|p| p.into_inner()) += 1;
                let n = notify.clone();
                async move { n.notify_one() }
            },
            move |i, n, st| {
                seen2
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(format!("{i}/{n} {}", st.table))
            },
        )
        .await;
        let got: Vec<String> = out
            .iter()
            .map(|r| format!("{} {}", r.step.table, r.outcome))
            .collect();
        assert_eq!(
            got,
            [
                "a done",
                "b interrupted: cancelled on the server: the maintenance window or max_duration ended",
                "c skipped: not started: the maintenance window or max_duration ended",
            ]
        );
        assert_eq!(*calls.lock().unwrap_or_else(|p| p.into_inner()), 1);
        assert_eq!(
            *seen.lock().unwrap_or_else(|p| p.into_inner()),
            ["1/3 a", "2/3 b"]
        );
        assert_eq!(
            Instant::now(),
            deadline,
            "stopped at the deadline, not after b's 10 minutes"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_request_interrupts_and_planned_skips_are_recorded() {
        let notify = Arc::new(tokio::sync::Notify::new());
        let mut s = Slow {
            interrupted: notify.clone(),
        };
        let cancel = CancellationToken::new();
        let mut p = plan3();
        p.steps[0].skip = Some(Skip::new(SkipKind::Horizon, "held back"));
        let c = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(60)).await;
            c.cancel();
        });
        let out = run_plan(
            &mut s,
            &p,
            &Guard::none(),
            None,
            &cancel,
            || {
                let n = notify.clone();
                async move { n.notify_one() }
            },
            |_, _, _| {},
        )
        .await;
        let got: Vec<String> = out.iter().map(|r| r.outcome.to_string()).collect();
        assert_eq!(
            got,
            [
                "skipped: held back",
                "interrupted: cancelled on the server: the run was stopped",
                "skipped: not started: the run was stopped",
            ]
        );
    }

    /// A session whose load is scripted: `sessions[i]` active sessions at the i-th reading
    /// (the last one repeats); each step is done at once.
    struct Loaded {
        sessions: Vec<u64>,
        reads: usize,
        lag: Option<f64>,
    }

    impl Session for Loaded {
        type Facts = ();
        async fn facts(&mut self) -> Result<(), Refusal> {
            Ok(())
        }
        async fn load(&mut self, _: &GuardLimits) -> Result<Load, String> {
            let i = self.reads.min(self.sessions.len() - 1);
            self.reads += 1;
            Ok(Load {
                active_sessions: Some(self.sessions[i]),
                replication_lag: self.lag.map(|l| (l, "standby1".to_string())),
            })
        }
        async fn finish(self) {}
        fn execute(&mut self, _: &Step) -> impl Future<Output = StepResult> + Send {
            std::future::ready(StepResult {
                outcome: Outcome::Done,
                after: After::default(),
            })
        }
    }

    fn limits(on_guard: OnGuard) -> GuardLimits {
        GuardLimits {
            max_active_sessions: Some(5),
            on_guard,
            ..GuardLimits::default()
        }
    }

    async fn run_guarded(s: &mut Loaded, g: &Guard<'_>, deadline: Option<Instant>) -> Vec<String> {
        run_plan(
            s,
            &plan3(),
            g,
            deadline,
            &CancellationToken::new(),
            || async {},
            |_, _, _| {},
        )
        .await
        .iter()
        .map(|r| {
            format!(
                "{} {}{}",
                r.step.table,
                r.outcome,
                r.outcome
                    .skip_kind()
                    .map(|k| format!(" [{}]", k.as_str()))
                    .unwrap_or_default()
            )
        })
        .collect()
    }

    #[test]
    fn guard_verdict_names_every_exceeded_limit_and_orders_status_by_severity() {
        let l = GuardLimits {
            max_active_sessions: Some(5),
            max_replication_lag: Some(Duration::from_secs(30)),
            skip_when_status: Some(Status::Critical),
            on_guard: OnGuard::Skip,
        };
        let calm = Load {
            active_sessions: Some(5),
            replication_lag: Some((30.0, "s1".into())),
        };
        assert_eq!(
            guard_verdict(&calm, Some(Status::Unknown), &l),
            None,
            "at a limit is fine"
        );
        let busy = Load {
            active_sessions: Some(6),
            replication_lag: Some((31.5, "s1".into())),
        };
        assert_eq!(
            guard_verdict(&busy, Some(Status::Critical), &l).as_deref(),
            Some(
                "load guard: 6 other sessions running statements > max_active_sessions 5; replication lag of s1 31.5s > max_replication_lag 30s; the target's status is CRITICAL (skip_when_status CRITICAL)"
            )
        );
        // UNKNOWN ranks above WARNING: "warning" holds off on UNKNOWN too.
        let warn = GuardLimits {
            skip_when_status: Some(Status::Warning),
            ..GuardLimits::default()
        };
        assert!(guard_verdict(&Load::default(), Some(Status::Unknown), &warn).is_some());
        assert!(guard_verdict(&Load::default(), Some(Status::Ok), &warn).is_none());
        assert!(
            guard_verdict(&Load::default(), None, &warn).is_none(),
            "unknown to us: go on"
        );
        // Not measured (e.g. no standby): no verdict on it.
        assert!(guard_verdict(&Load::default(), None, &l).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn the_guard_skips_a_table_or_pauses_until_the_load_drops() {
        let none = || None;
        let mut s = Loaded {
            sessions: vec![9, 2, 9],
            reads: 0,
            lag: None,
        };
        let g = Guard {
            limits: limits(OnGuard::Skip),
            status: &none,
        };
        assert_eq!(
            run_guarded(&mut s, &g, None).await,
            [
                "a skipped: load guard: 9 other sessions running statements > max_active_sessions 5 [guard]",
                "b done",
                "c skipped: load guard: 9 other sessions running statements > max_active_sessions 5 [guard]",
            ]
        );
        // Pause: a waits two retries for the load to drop, then all run.
        let mut s = Loaded {
            sessions: vec![9, 9, 2],
            reads: 0,
            lag: None,
        };
        let g = Guard {
            limits: limits(OnGuard::Pause),
            status: &none,
        };
        let start = Instant::now();
        assert_eq!(
            run_guarded(&mut s, &g, None).await,
            ["a done", "b done", "c done"]
        );
        assert_eq!(start.elapsed(), GUARD_RETRY * 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_ends_at_the_deadline_and_the_status_guard_reads_the_status_each_table() {
        let none = || None;
        let mut s = Loaded {
            sessions: vec![9],
            reads: 0,
            lag: None,
        };
        let g = Guard {
            limits: limits(OnGuard::Pause),
            status: &none,
        };
        let deadline = Instant::now() + Duration::from_secs(100);
        let got = run_guarded(&mut s, &g, Some(deadline)).await;
        assert_eq!(
            got[0],
            "a skipped: load guard: 9 other sessions running statements > max_active_sessions 5; paused until the maintenance window or max_duration ended [guard]"
        );
        // At 90 s the next re-check would be past the deadline: b and c are not waited for.
        assert_eq!(
            got[1..],
            [
                got[0].replacen("a ", "b ", 1),
                got[0].replacen("a ", "c ", 1)
            ]
        );
        assert_eq!(
            Instant::now() - (deadline - Duration::from_secs(100)),
            GUARD_RETRY * 3
        );

        let calls = std::sync::atomic::AtomicU32::new(0);
        let status = || {
            let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Some(if n == 1 {
                Status::Critical
            } else {
                Status::Warning
            })
        };
        let g = Guard {
            limits: GuardLimits {
                skip_when_status: Some(Status::Critical),
                ..GuardLimits::default()
            },
            status: &status,
        };
        let mut s = Loaded {
            sessions: vec![0],
            reads: 0,
            lag: None,
        };
        assert_eq!(
            run_guarded(&mut s, &g, None).await,
            [
                "a done",
                "b skipped: load guard: the target's status is CRITICAL (skip_when_status CRITICAL) [guard]",
                "c done",
            ]
        );
    }
}
