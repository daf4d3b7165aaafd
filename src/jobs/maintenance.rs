//! The `maintenance` job kind: plan from fresh statistics, then act within the window,
//! `max_duration` and the run's cancellation. `dbwarden maintain` runs the same code.

use std::sync::Arc;

use chrono::Utc;
use chrono_tz::Tz;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::{JobError, Kind, Report, RunCtx, Shared};
use crate::config::{IntegrityPragma, MaintenanceParams, PasswordSource, Target};
use crate::engine::postgres::{MaintenanceSettings, PlanInput};
use crate::engine::{Engine, RunScope};
use crate::health::Status;
use crate::maintenance::run::{Refusal, Session, run_plan};
use crate::maintenance::{
    Action, Guard, Integrity, MysqlPolicy, Plan, Policy, Skip, SkipKind, SqlitePolicy, Step,
    StepRecord, Window, plan, plan_mysql, plan_sqlite, window,
};

/// What one maintenance run of one target did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MaintenanceReport {
    pub target: String,
    /// Set when nothing was attempted, with why (`another dbwarden holds the lock`, a hot
    /// standby, outside the window) and its kind.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<Skip>,
    /// The plan (also for a dry run, which executes nothing).
    pub plan: Vec<Step>,
    /// Qualifying tables left for a later run by `max_tables`.
    pub deferred: usize,
    /// What happened to each planned step (empty for a dry run).
    pub records: Vec<StepRecord>,
}

impl Report for MaintenanceReport {
    fn status(&self) -> Option<Status> {
        None
    }

    fn summary(&self) -> String {
        if let Some(s) = &self.skipped {
            return format!("skipped: {s}");
        }
        let count = |o: &str| {
            self.records
                .iter()
                .filter(|r| r.outcome.as_str() == o)
                .count()
        };
        format!(
            "{} table(s) planned: {} done, {} skipped, {} failed, {} interrupted{}",
            self.plan.len(),
            count("done"),
            count("skipped"),
            count("failed"),
            count("interrupted"),
            if self.deferred > 0 {
                format!(", {} left for a later run (max_tables)", self.deferred)
            } else {
                String::new()
            }
        )
    }
}

/// How a maintenance run is asked for.
pub struct Request<'a> {
    pub target: &'a Target,
    pub params: &'a MaintenanceParams,
    /// The time zone of the window.
    pub tz: Tz,
    /// Honour the window (scheduled runs); `dbwarden maintain` by hand does not.
    pub use_window: bool,
    pub dry_run: bool,
    /// Report PostgreSQL VACUUM progress (`pg_stat_progress_vacuum`) this often
    /// ([`Progress::Vacuum`]); `None`: no polling (scheduled runs).
    pub watch_vacuum: Option<std::time::Duration>,
    /// The target's believed status for the load guard's `skip_when_status` (the
    /// daemon's health rounds); `&|| None` where none is known (`dbwarden maintain`).
    pub status: &'a (dyn Fn() -> Option<Status> + Send + Sync),
    /// Where the last SQLite integrity check is looked up; `None`: always due.
    pub history: Option<&'a crate::store::Store>,
}

/// One progress event of a run (`dbwarden maintain` prints them).
pub enum Progress<'a> {
    Step {
        i: usize,
        n: usize,
        step: &'a Step,
    },
    /// The running VACUUM's phase and heap blocks scanned of total.
    Vacuum {
        phase: String,
        scanned: f64,
        total: f64,
    },
}

/// Where a maintenance run is (`GET /api/v1/runs/{id}`), built from its [`Progress`] events.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct RunProgress {
    /// Steps started so far, of `steps_total` planned.
    pub step: usize,
    pub steps_total: usize,
    /// The table being worked on and the action.
    pub table: Option<String>,
    pub action: Option<String>,
    /// PostgreSQL VACUUM phase and heap blocks scanned of total (`pg_stat_progress_vacuum`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vacuum_phase: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heap_blocks_scanned: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heap_blocks_total: Option<f64>,
}

impl RunProgress {
    /// Takes the run's next progress event: a new step forgets the previous VACUUM's phase.
    pub fn update(&mut self, p: Progress<'_>) {
        match p {
            Progress::Step { i, n, step } => {
                *self = RunProgress {
                    step: i,
                    steps_total: n,
                    table: Some(step.table.clone()),
                    action: Some(step.action.as_str().to_string()),
                    ..RunProgress::default()
                }
            }
            Progress::Vacuum {
                phase,
                scanned,
                total,
            } => {
                self.vacuum_phase = Some(phase);
                self.heap_blocks_scanned = Some(scanned);
                self.heap_blocks_total = Some(total);
            }
        }
    }
}

/// The target as maintenance connects to it: `maintenance_url` and
/// `maintenance_password_file` when set, so health checks can use a monitoring-only role.
pub fn maintenance_target(t: &Target) -> Target {
    let mut m = t.clone();
    if let Some(u) = &t.raw.maintenance_url {
        m.url = u.clone();
        m.password = PasswordSource::Url;
    }
    if let Some(f) = &t.raw.maintenance_password_file {
        m.password = PasswordSource::File(f.clone());
    }
    m
}

/// How often a run waiting for its server's maintenance lock tries again.
const SERVER_LOCK_RETRY: std::time::Duration = std::time::Duration::from_secs(5);

/// Opens a maintenance session; while another database of the same server is being
/// maintained (one run per server), waits for its turn, trying every
/// [`SERVER_LOCK_RETRY`], until the run's deadline or cancellation — so a job covering
/// several databases of one server maintains them one after the other instead of one per
/// fire. Without `wait` (a dry run) or past the deadline it is a skip with the reason.
async fn wait_for_server<S, F, Fut>(
    mut open: F,
    wait: bool,
    deadline: Option<tokio::time::Instant>,
    cancel: &CancellationToken,
) -> Result<S, Refusal>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<S, Refusal>>,
{
    loop {
        match open().await {
            Err(Refusal::ServerBusy(why)) => {
                let late =
                    deadline.is_some_and(|d| tokio::time::Instant::now() + SERVER_LOCK_RETRY >= d);
                if !wait || late || cancel.is_cancelled() {
                    return Err(Refusal::Skipped(Skip::new(SkipKind::Locked, why)));
                }
                tokio::select! {
                    _ = tokio::time::sleep(SERVER_LOCK_RETRY) => {}
                    _ = cancel.cancelled() => return Err(Refusal::Skipped(Skip::new(SkipKind::Locked, why))),
                }
            }
            other => return other,
        }
    }
}

/// What every engine's run shares once its session is open: the bounds and the guard.
struct Drive<'a> {
    dry_run: bool,
    deadline: Option<tokio::time::Instant>,
    cancel: &'a CancellationToken,
    guard: Guard<'a>,
    /// Poll the running VACUUM's progress this often (PostgreSQL, `dbwarden maintain`).
    watch_vacuum: Option<std::time::Duration>,
}

/// Opens an engine's maintenance session (waiting for its server's turn), plans from its
/// facts and, unless a dry run, runs the plan: the one shape every engine goes through.
#[allow(clippy::too_many_arguments)]
async fn drive<S, O, OF, I, IF, W, WF>(
    d: &Drive<'_>,
    open: O,
    make_plan: impl FnOnce(S::Facts) -> Plan,
    interrupt: I,
    vacuum_progress: W,
    progress: &mut (dyn FnMut(Progress<'_>) + Send),
    report: &mut MaintenanceReport,
) -> Result<(), JobError>
where
    S: Session,
    O: FnMut() -> OF,
    OF: std::future::Future<Output = Result<S, Refusal>>,
    I: Fn() -> IF,
    IF: std::future::Future<Output = ()>,
    W: Fn(i32) -> WF,
    WF: std::future::Future<Output = Option<(String, f64, f64)>>,
{
    let refused = |r: Refusal, report: &mut MaintenanceReport| match r {
        Refusal::Skipped(s) => {
            report.skipped = Some(s);
            Ok(())
        }
        Refusal::ServerBusy(why) => {
            report.skipped = Some(Skip::new(SkipKind::Locked, why));
            Ok(())
        }
        Refusal::Failed(why) => Err(JobError::Setup(why)),
    };
    let mut session = match wait_for_server(open, !d.dry_run, d.deadline, d.cancel).await {
        Ok(s) => s,
        Err(r) => return refused(r, report),
    };
    let facts = match session.facts().await {
        Ok(f) => f,
        Err(r) => {
            session.finish().await;
            return refused(r, report);
        }
    };
    let p = make_plan(facts);
    if !d.dry_run {
        let backend = session.backend();
        let progress = std::sync::Mutex::new(progress);
        let say = |p: Progress<'_>| (progress.lock().unwrap_or_else(|e| e.into_inner()))(p);
        let done = CancellationToken::new();
        let work = async {
            let r = run_plan(
                &mut session,
                &p,
                &d.guard,
                d.deadline,
                d.cancel,
                &interrupt,
                |i, n, step| say(Progress::Step { i, n, step }),
            )
            .await;
            done.cancel();
            r
        };
        let watch = async {
            let (Some(every), Some(pid)) = (d.watch_vacuum, backend) else {
                return;
            };
            loop {
                tokio::select! {
                    _ = done.cancelled() => return,
                    _ = tokio::time::sleep(every) => {}
                }
                if let Some((phase, scanned, total)) = vacuum_progress(pid).await {
                    say(Progress::Vacuum {
                        phase,
                        scanned,
                        total,
                    });
                }
            }
        };
        report.records = tokio::join!(work, watch).0;
    }
    report.deferred = p.deferred;
    report.plan = p.steps;
    session.finish().await;
    Ok(())
}

/// Plans and (unless a dry run) executes maintenance of one target. Returns
/// [`JobError::Cancelled`] when `cancel` fired (the running statement was cancelled on the
/// server first).
pub async fn maintain(
    req: Request<'_>,
    cancel: &CancellationToken,
    mut progress: impl FnMut(Progress<'_>) + Send,
    record: impl FnOnce(Vec<StepRecord>),
) -> Result<MaintenanceReport, JobError> {
    let mut report = MaintenanceReport {
        target: req.target.name.clone(),
        ..MaintenanceReport::default()
    };
    let win = req.params.window().map_err(JobError::Setup)?;
    let now = Utc::now().with_timezone(&req.tz).time();
    let budget = match window::budget(
        win.as_ref().filter(|_| req.use_window),
        req.params.max_duration,
        now,
    ) {
        Ok(b) => b,
        Err(why) => {
            report.skipped = Some(Skip::new(SkipKind::Window, why));
            return Ok(report);
        }
    };
    let d = Drive {
        dry_run: req.dry_run,
        deadline: budget.map(|b| tokio::time::Instant::now() + b),
        cancel,
        guard: Guard {
            limits: req.params.guard_limits(),
            status: req.status,
        },
        watch_vacuum: req.watch_vacuum,
    };
    let mt = maintenance_target(req.target);
    let engine = Engine::open_one_shot(&mt).map_err(|e| JobError::Setup(e.to_string()))?;
    let scope = RunScope::default();
    let interrupt = || engine.cancel(&scope);
    let progress: &mut (dyn FnMut(Progress<'_>) + Send) = &mut progress;
    let r = match &engine {
        Engine::Postgres(pg) => {
            let settings = MaintenanceSettings {
                lock_timeout: req.params.lock_timeout,
                cost_delay: req.params.vacuum_cost_delay,
            };
            let full_blocked = window_blocked("VACUUM FULL", win.as_ref(), now);
            drive(
                &d,
                || pg.maintenance(&scope, &settings),
                |input: PlanInput| {
                    let policy = Policy {
                        full_blocked,
                        ..req.params.policy(input.freeze_max_age)
                    };
                    plan(&input.tables, &policy, input.horizon.as_ref())
                },
                interrupt,
                |pid| pg.vacuum_progress(pid),
                progress,
                &mut report,
            )
            .await
        }
        Engine::Sqlite(sq) => {
            let integrity = integrity_due(&req).await;
            let policy = SqlitePolicy {
                integrity,
                ..sqlite_policy(req.target, req.params)
            };
            drive(
                &d,
                || sq.maintenance(&scope, req.params.lock_timeout),
                |facts| plan_sqlite(&facts, &policy),
                interrupt,
                |_| std::future::ready(None),
                progress,
                &mut report,
            )
            .await
        }
        Engine::Mysql(my) => {
            let policy = mysql_policy(req.target, req.params, win.as_ref(), now);
            drive(
                &d,
                || my.maintenance(&scope, req.params.lock_timeout),
                |facts: Vec<_>| plan_mysql(&facts, &policy),
                interrupt,
                |_| std::future::ready(None),
                progress,
                &mut report,
            )
            .await
        }
    };
    engine.close(std::time::Duration::from_secs(2)).await;
    r?;
    if report.skipped.is_some() {
        return Ok(report);
    }
    for r in &report.records {
        tracing::info!(
            target_name = %report.target,
            table = %crate::text::escape(&r.step.table),
            action = r.step.action.as_str(),
            outcome = r.outcome.as_str(),
            "maintenance: {}; {}",
            crate::text::escape(&r.step.reason),
            crate::text::escape(&r.outcome.to_string())
        );
    }
    // Recorded also when the run was stopped: the interrupted step and the ones not
    // started are history too.
    record(report.records.clone());
    if cancel.is_cancelled() {
        return Err(JobError::Cancelled);
    }
    Ok(report)
}

/// A run that planned work but skipped every step for a reason that is a problem (a held
/// lock, a busy database, the load guard, ...) did not do its work either: as a whole-run
/// skip (of the last step's kind) it feeds `maintenance_failing` instead of resetting it.
pub fn all_skipped(records: &[StepRecord]) -> Option<Skip> {
    let kinds: Vec<SkipKind> = records
        .iter()
        .map(|r| r.outcome.skip_kind())
        .collect::<Option<_>>()?;
    if kinds.iter().all(|k| k.expected()) {
        return None;
    }
    let last = records.last()?;
    Some(Skip::new(
        kinds[kinds.len() - 1],
        format!(
            "all {} planned step(s) skipped, the last: {}",
            records.len(),
            last.outcome.why().unwrap_or_default()
        ),
    ))
}

/// `None` when `what` may run now (inside the job's window); else why not.
fn window_blocked(what: &str, win: Option<&Window>, now: chrono::NaiveTime) -> Option<String> {
    match win {
        None => Some(format!(
            "{what} runs only inside the job's window, and none is set"
        )),
        Some(w) if w.remaining(now).is_none() => Some(format!(
            "{what} runs only inside the maintenance window {w} (now {})",
            now.format("%H:%M")
        )),
        Some(_) => None,
    }
}

/// The SQLite integrity check, when `integrity_check_every` is set and no check ended
/// `done` within that interval in the history store's maintenance records.
async fn integrity_due(req: &Request<'_>) -> Option<Integrity> {
    let every = req.params.integrity_check_every?;
    let quick = req.params.integrity_check_pragma == IntegrityPragma::QuickCheck;
    let interval = humantime::format_duration(every);
    let since = Utc::now() - chrono::Duration::from_std(every).unwrap_or(chrono::TimeDelta::MAX);
    let Some(store) = req.history else {
        return Some(Integrity {
            quick,
            reason: format!(
                "integrity_check_every {interval}: no history store to remember the last check in"
            ),
        });
    };
    let rows = match store
        .maintenance_actions(Some(&req.target.name), since)
        .await
    {
        Ok(rows) => rows,
        Err(e) => {
            return Some(Integrity {
                quick,
                reason: format!(
                    "integrity_check_every {interval}: the last check could not be read from the history store ({e})"
                ),
            });
        }
    };
    let checks = [Action::IntegrityCheck.as_str(), Action::QuickCheck.as_str()];
    let last = rows
        .iter()
        .rev()
        .find(|r| checks.contains(&r.action.as_str()) && r.outcome == "done");
    match last {
        Some(_) => None,
        None => Some(Integrity {
            quick,
            reason: format!(
                "no passed integrity check recorded in the last {interval} (integrity_check_every)"
            ),
        }),
    }
}

/// The SQLite thresholds: the target's own `sqlite_freelist` warning ratio and size floor
/// and `sqlite_wal_size` warning, so maintenance acts where the health check warns.
fn sqlite_policy(t: &Target, p: &MaintenanceParams) -> SqlitePolicy {
    let th = |name: &str| {
        crate::engine::sqlite::CHECKS
            .iter()
            .find(|c| c.name == name)
            .map(|spec| t.thresholds_for(spec))
    };
    let freelist = th("sqlite_freelist");
    let wal = th("sqlite_wal_size");
    SqlitePolicy {
        allowed: p.actions.clone(),
        freelist_percent: freelist.as_ref().and_then(|f| f.warning).unwrap_or(25.0),
        min_file_bytes: freelist
            .and_then(|f| f.floor)
            .unwrap_or(16.0 * 1024.0 * 1024.0),
        wal_bytes: wal
            .and_then(|w| w.warning)
            .unwrap_or(256.0 * 1024.0 * 1024.0),
        integrity: None,
    }
}

/// The MySQL/MariaDB thresholds: OPTIMIZE past the target's `mysql_fragmentation`
/// warning and floor, and only inside the job's window (local time `now`); ANALYZE when
/// 10% of the rows (InnoDB's own auto-recalc share) and `min_changed_rows` changed.
fn mysql_policy(
    t: &Target,
    p: &MaintenanceParams,
    win: Option<&Window>,
    now: chrono::NaiveTime,
) -> MysqlPolicy {
    let frag = crate::engine::mysql::CHECKS
        .iter()
        .find(|c| c.name == "mysql_fragmentation")
        .map(|spec| t.thresholds_for(spec));
    let optimize_blocked = window_blocked("OPTIMIZE TABLE", win, now);
    MysqlPolicy {
        allowed: p.actions.clone(),
        analyze_percent: 10.0,
        min_changed_rows: p.min_changed_rows as f64,
        fragmentation_percent: frag.as_ref().and_then(|f| f.warning).unwrap_or(20.0),
        fragmentation_floor: frag
            .and_then(|f| f.floor)
            .unwrap_or(100.0 * 1024.0 * 1024.0),
        optimize_blocked,
        include: p.include.clone(),
        exclude: p.exclude.clone(),
        max_tables: p.max_tables,
    }
}

/// A scheduled maintenance job.
pub struct MaintenanceJob {
    params: MaintenanceParams,
    shared: Arc<Shared>,
}

impl Kind for MaintenanceJob {
    type Params = MaintenanceParams;
    type Report = MaintenanceReport;

    fn build(params: &MaintenanceParams, shared: &Arc<Shared>) -> Self {
        MaintenanceJob {
            params: params.clone(),
            shared: shared.clone(),
        }
    }

    async fn run(self, ctx: RunCtx) -> Result<MaintenanceReport, JobError> {
        let shared = self.shared.clone();
        let name = ctx.target.name.clone();
        let status = move || shared.tracker.believed(&name);
        let history = self.shared.history();
        let req = Request {
            target: &ctx.target,
            params: &self.params,
            tz: window_tz(&ctx.job),
            use_window: true,
            dry_run: false,
            watch_vacuum: None,
            status: &status,
            history: history.as_ref(),
        };
        let events = &self.shared.events;
        let record = |records: Vec<StepRecord>| {
            if !records.is_empty() {
                events.publish(crate::events::Event::Maintenance {
                    target: ctx.target.name.clone(),
                    run_id: Some(ctx.run_id.clone()),
                    records,
                });
            }
        };
        // Progress goes out on the event stream, so the API shows a scheduled run's steps
        // as it shows those of a run it started.
        let mut at = RunProgress::default();
        let progress = |p: Progress<'_>| {
            at.update(p);
            events.publish(crate::events::Event::Progress {
                run_id: ctx.run_id.clone(),
                progress: at.clone(),
            });
        };
        let report = maintain(req, &ctx.cancel, progress, record).await?;
        if let Some(why) = report
            .skipped
            .clone()
            .or_else(|| all_skipped(&report.records))
        {
            self.shared.note_maintenance_skip(&ctx.run_id, &why);
        }
        Ok(report)
    }
}

/// The time zone of a job's window: the job's own `timezone` key, else `daemon.timezone`
/// (resolved at validation; an `@every` schedule carries no time zone of its own).
pub fn window_tz(job: &crate::config::Job) -> Tz {
    job.timezone
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(table: &str, action: Action) -> Step {
        Step {
            table: table.into(),
            sql_name: String::new(),
            action,
            need: crate::maintenance::plan::Need::DeadRows,
            reason: "r".into(),
            skip: None,
            dead_rows: 0.0,
            freeze_age: None,
            size_bytes: 0.0,
            urgency: 0.0,
        }
    }

    #[test]
    fn progress_follows_the_steps_and_a_new_step_forgets_the_vacuum_phase() {
        let mut p = RunProgress::default();
        let a = step("public.a", Action::VacuumAnalyze);
        p.update(Progress::Step {
            i: 1,
            n: 2,
            step: &a,
        });
        p.update(Progress::Vacuum {
            phase: "scanning heap".into(),
            scanned: 5.0,
            total: 10.0,
        });
        assert_eq!(
            (p.step, p.steps_total, p.table.as_deref()),
            (1, 2, Some("public.a"))
        );
        assert_eq!(p.vacuum_phase.as_deref(), Some("scanning heap"));
        let b = step("public.b", Action::Analyze);
        p.update(Progress::Step {
            i: 2,
            n: 2,
            step: &b,
        });
        assert_eq!(
            p,
            RunProgress {
                step: 2,
                steps_total: 2,
                table: Some("public.b".into()),
                action: Some(Action::Analyze.as_str().into()),
                ..RunProgress::default()
            }
        );
    }

    #[test]
    fn a_run_that_skipped_every_step_for_a_problem_counts_as_skipped_whole() {
        use crate::maintenance::Outcome;
        let rec = |outcome: Outcome| StepRecord {
            step: step("public.a", Action::VacuumAnalyze),
            outcome,
            started: Utc::now(),
            finished: Utc::now(),
            after: Default::default(),
        };
        let guard = || rec(Outcome::skipped(SkipKind::Guard, "load guard: busy"));
        let lock = || rec(Outcome::skipped(SkipKind::LockHeld, "lock not available"));
        let got = all_skipped(&[guard(), lock()]).unwrap_or_else(|| panic!("not counted"));
        assert_eq!(got.kind, SkipKind::LockHeld);
        assert_eq!(
            got.why,
            "all 2 planned step(s) skipped, the last: lock not available"
        );
        assert_eq!(
            all_skipped(&[guard(), rec(Outcome::Done)]),
            None,
            "one step did its work"
        );
        assert_eq!(all_skipped(&[]), None, "nothing to do is not a failure");
        let window = rec(Outcome::skipped(
            SkipKind::Window,
            "not started: window ended",
        ));
        assert_eq!(all_skipped(&[window]), None, "an expected skip");
        assert_eq!(all_skipped(&[rec(Outcome::Failed("x".into()))]), None);
    }

    /// Loads a config whose daemon runs in UTC with one maintenance job scheduled
    /// `schedule` and the extra job keys `extra`.
    fn job_with(schedule: &str, extra: &str) -> crate::config::Job {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let path = dir.path().join("dbwarden.toml");
        let body = format!(
            r#"[daemon]
history = "sqlite://{}/history.db"
timezone = "UTC"

[[target]]
name = "pg"
url = "postgres://127.0.0.1/x"

[[job]]
name = "m"
kind = "maintenance"
schedule = "{schedule}"
window = "02:00-05:00"
{extra}
"#,
            dir.path().display()
        );
        std::fs::write(&path, body).unwrap_or_else(|e| panic!("write: {e}"));
        let c = crate::config::load(&path).unwrap_or_else(|e| panic!("config: {e}"));
        c.job("m").cloned().unwrap_or_else(|| panic!("no job m"))
    }

    #[test]
    fn an_every_job_reads_its_window_in_its_own_time_zone() {
        let tokyo: Tz = "Asia/Tokyo".parse().unwrap_or_else(|e| panic!("{e}"));
        let every = job_with("@every 1h", "timezone = \"Asia/Tokyo\"");
        assert_eq!(window_tz(&every), tokyo, "the job's own timezone key");
        let cron = job_with("0 3 * * *", "timezone = \"Asia/Tokyo\"");
        assert_eq!(window_tz(&cron), tokyo);
        let plain = job_with("@every 1h", "");
        assert_eq!(window_tz(&plain), Tz::UTC, "else daemon.timezone");
        // 18:30 UTC is 03:30 in Tokyo: inside the window there, outside it in UTC.
        let w = Window::parse("02:00-05:00").unwrap_or_else(|e| panic!("{e}"));
        let at = chrono::DateTime::parse_from_rfc3339("2026-11-30T18:30:00Z")
            .unwrap_or_else(|e| panic!("{e}"))
            .with_timezone(&Utc);
        let local = |tz: Tz| at.with_timezone(&tz).time();
        assert!(window::budget(Some(&w), None, local(window_tz(&every))).is_ok());
        assert!(window::budget(Some(&w), None, local(window_tz(&plain))).is_err());
    }
}

#[cfg(test)]
mod wait_tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    use tokio_util::sync::CancellationToken;

    use super::{Refusal, SERVER_LOCK_RETRY, wait_for_server};
    use crate::maintenance::SkipKind;

    /// `open` that finds the server busy `busy` times, then succeeds.
    fn busy_then_free(
        busy: u32,
        tries: &AtomicU32,
    ) -> impl FnMut() -> std::future::Ready<Result<u32, Refusal>> + '_ {
        move || {
            let n = tries.fetch_add(1, Ordering::SeqCst);
            std::future::ready(if n < busy {
                Err(Refusal::ServerBusy("busy".into()))
            } else {
                Ok(n)
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_waits_for_its_servers_turn() {
        let tries = AtomicU32::new(0);
        let start = tokio::time::Instant::now();
        let got = wait_for_server(
            busy_then_free(3, &tries),
            true,
            None,
            &CancellationToken::new(),
        )
        .await;
        assert!(matches!(got, Ok(3)));
        assert_eq!(start.elapsed(), SERVER_LOCK_RETRY * 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_dry_run_the_deadline_and_a_cancel_end_the_wait_as_a_skip() {
        let skipped = |r: Result<u32, Refusal>| matches!(r, Err(Refusal::Skipped(w)) if w.why == "busy" && w.kind == SkipKind::Locked);
        let tries = AtomicU32::new(0);
        let none = CancellationToken::new();
        assert!(skipped(
            wait_for_server(busy_then_free(9, &tries), false, None, &none).await
        ));
        assert_eq!(tries.load(Ordering::SeqCst), 1, "a dry run does not retry");

        let tries = AtomicU32::new(0);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(12);
        assert!(skipped(
            wait_for_server(busy_then_free(9, &tries), true, Some(deadline), &none).await
        ));
        assert_eq!(tries.load(Ordering::SeqCst), 3, "tries at 0, 5 and 10 s");

        let tries = AtomicU32::new(0);
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        let (r, ()) = tokio::join!(
            wait_for_server(busy_then_free(9, &tries), true, None, &cancel),
            async move {
                tokio::time::sleep(Duration::from_secs(7)).await;
                stop.cancel();
            }
        );
        assert!(skipped(r));
        assert_eq!(tries.load(Ordering::SeqCst), 2);
    }
}
