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

/// How a step ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", content = "why", rename_all = "snake_case")]
pub enum Outcome {
    Done,
    Skipped(String),
    Failed(String),
    Interrupted(String),
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
            Outcome::Skipped(w) | Outcome::Failed(w) | Outcome::Interrupted(w) => Some(w),
        }
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
    Skipped(String),
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

/// An engine's maintenance session: runs one step on its connection.
pub trait Session {
    fn execute(&mut self, step: &Step) -> impl Future<Output = StepResult> + Send;
}

/// Why no more tables start.
fn stop_reason(deadline: Option<Instant>, cancel: &CancellationToken) -> Option<&'static str> {
    if cancel.is_cancelled() {
        Some("the run was stopped")
    } else if deadline.is_some_and(|d| Instant::now() >= d) {
        Some("the maintenance window or max_duration ended")
    } else {
        None
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
        if let Some(why) = &step.skip {
            out.push(record(Outcome::Skipped(why.clone()), After::default()));
            continue;
        }
        if let Some(why) = stop_reason(deadline, cancel) {
            out.push(record(
                Outcome::Skipped(format!("not started: {why}")),
                After::default(),
            ));
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
        out.push(record(result.outcome, result.after));
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
        p.steps[0].skip = Some("held back".into());
        let c = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(60)).await;
            c.cancel();
        });
        let out = run_plan(
            &mut s,
            &p,
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
}
