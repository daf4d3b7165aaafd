//! The scheduler: one task per job that sleeps until the job's next fire time and starts a
//! run per target. It knows no job kind: an [`Executor`] runs a [`RunCtx`] and returns a
//! report or a [`JobError`] that keeps its kind. Guarantees:
//!
//! - **No overlap**: a target whose previous run of the same job is still going is not run
//!   again; the tick is recorded as `skipped` for it. The guard lives in the shared
//!   [`Context`], so a job whose loop a reload restarted still sees its runs in flight.
//! - **Timeouts and cancellation**: every run gets its own cancellation token. A run past
//!   the job's timeout has its token cancelled (it stops its own statements, never another
//!   run's) and is recorded as `timed_out`; at shutdown every run's token is cancelled and
//!   runs are recorded as `interrupted`. [`Scheduler::shutdown`] waits for every task
//!   until a deadline (tokio-util `TaskTracker`).
//! - **Clocks**: `@every` intervals follow the monotonic clock, so a wall clock stepped
//!   back does not silence them; cron schedules follow the wall clock, re-read at least
//!   every [`MAX_SLEEP`], so a resume or an NTP step is noticed; runs missed meanwhile are
//!   coalesced into one run if within the catch-up grace (`daemon.catch_up`, reloadable).
//! - **Heartbeats**: every wait (the schedule's and the jitter's) is cut into slices of at
//!   most [`MAX_SLEEP`] and beats after each, so the watchdog sees a live loop.
//! - **Concurrency**: at most `daemon.max_concurrent_targets` runs work at once (resized
//!   on reload).
//!
//! Wall-clock time comes from a [`Clock`], so tests drive the whole loop with
//! `tokio::time::pause()` and [`TokioClock`].

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::config::{Config, Job, Target};
use crate::events::{Event, Events};
use crate::jobs::{JobError, Report, RunCtx};
use crate::schedule::{Schedule, Wake, on_wake};
use crate::store::{JobRun, RunEnd, RunOutcome, new_run_id};

/// The longest single sleep: wall-clock jumps are noticed, and heartbeats sent, at least
/// this often.
pub const MAX_SLEEP: Duration = Duration::from_secs(30);
/// How long a run whose token was cancelled (timeout) may take to stop its statements
/// before it is abandoned.
pub const CANCEL_WAIT: Duration = Duration::from_secs(10);

/// A source of wall-clock time.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// The system's wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Wall time derived from tokio's clock, so `tokio::time::pause()` / `advance()` move it;
/// [`TokioClock::step`] moves it without moving tokio's clock (an NTP step, in tests).
pub struct TokioClock {
    wall: std::sync::Mutex<DateTime<Utc>>,
    mono: Instant,
}

impl TokioClock {
    pub fn starting_at(wall: DateTime<Utc>) -> Self {
        TokioClock {
            wall: std::sync::Mutex::new(wall),
            mono: Instant::now(),
        }
    }

    /// Steps the wall clock by `by` (negative: back), as an NTP step or a manual change does.
    pub fn step(&self, by: chrono::Duration) {
        let mut w = self.wall.lock().unwrap_or_else(|p| p.into_inner());
        *w += by;
    }
}

impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = Instant::now() - self.mono;
        *self.wall.lock().unwrap_or_else(|p| p.into_inner())
            + chrono::Duration::from_std(elapsed).unwrap_or_default()
    }
}

/// What running a job against a target means: the daemon's [`crate::jobs::Dispatcher`]
/// runs every job kind; tests plug in their own.
pub trait Executor: Send + Sync + 'static {
    /// Runs one run to its end. When `ctx.cancel` is cancelled the run stops its own
    /// statements and returns [`JobError::Cancelled`].
    fn run(&self, ctx: RunCtx) -> BoxFuture<'static, Result<Box<dyn Report>, JobError>>;
}

/// Run counts since the last summary line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RunCounts {
    pub ok: u64,
    pub failed: u64,
    pub timed_out: u64,
    pub skipped: u64,
    pub interrupted: u64,
}

#[derive(Default)]
struct Counters {
    ok: AtomicU64,
    failed: AtomicU64,
    timed_out: AtomicU64,
    skipped: AtomicU64,
    interrupted: AtomicU64,
}

impl Counters {
    fn count(&self, o: RunOutcome) {
        let c = match o {
            RunOutcome::Ok => &self.ok,
            RunOutcome::Failed => &self.failed,
            RunOutcome::TimedOut => &self.timed_out,
            RunOutcome::Skipped => &self.skipped,
            RunOutcome::Interrupted => &self.interrupted,
            RunOutcome::Running => return,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    fn take(&self) -> RunCounts {
        RunCounts {
            ok: self.ok.swap(0, Ordering::Relaxed),
            failed: self.failed.swap(0, Ordering::Relaxed),
            timed_out: self.timed_out.swap(0, Ordering::Relaxed),
            skipped: self.skipped.swap(0, Ordering::Relaxed),
            interrupted: self.interrupted.swap(0, Ordering::Relaxed),
        }
    }
}

/// A semaphore whose size can change while permits are out: shrinking forgets free
/// permits at once and the rest as they come back.
struct Limit {
    sem: Arc<Semaphore>,
    size: std::sync::Mutex<usize>,
    /// Permits to forget when they are returned.
    debt: Arc<AtomicUsize>,
}

/// A permit of a [`Limit`].
struct LimitPermit {
    permit: Option<OwnedSemaphorePermit>,
    debt: Arc<AtomicUsize>,
}

impl Drop for LimitPermit {
    fn drop(&mut self) {
        if let Some(p) = self.permit.take()
            && self
                .debt
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |d| d.checked_sub(1))
                .is_ok()
        {
            p.forget();
        }
    }
}

impl Limit {
    fn new(n: usize) -> Self {
        Limit {
            sem: Arc::new(Semaphore::new(n.max(1))),
            size: std::sync::Mutex::new(n.max(1)),
            debt: Arc::default(),
        }
    }

    async fn acquire(&self) -> LimitPermit {
        LimitPermit {
            // The semaphore is never closed, so this only fails if it were.
            permit: self.sem.clone().acquire_owned().await.ok(),
            debt: self.debt.clone(),
        }
    }

    fn resize(&self, n: usize) {
        let n = n.max(1);
        let mut size = self.size.lock().unwrap_or_else(|p| p.into_inner());
        if n > *size {
            let mut grow = n - *size;
            // Cancel debt first: those permits are still out and will now be kept.
            while grow > 0
                && self
                    .debt
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |d| d.checked_sub(1))
                    .is_ok()
            {
                grow -= 1;
            }
            self.sem.add_permits(grow);
        } else if n < *size {
            let shrink = *size - n;
            let forgotten = self.sem.forget_permits(shrink);
            self.debt.fetch_add(shrink - forgotten, Ordering::SeqCst);
        }
        *size = n;
    }
}

/// Everything job tasks share.
pub struct Context {
    pub executor: Arc<dyn Executor>,
    pub events: Events,
    pub clock: Arc<dyn Clock>,
    limit: Limit,
    /// Cancelled on shutdown: running runs stop and are recorded as `interrupted`.
    pub shutdown: CancellationToken,
    pub tracker: TaskTracker,
    /// When each job loop last woke; the systemd watchdog is fed only while every loop
    /// is alive, so a hung scheduler gets the service restarted.
    heartbeats: std::sync::Mutex<HashMap<String, Instant>>,
    /// Runs in flight by (job, target) → run id: the overlap guard.
    running: std::sync::Mutex<HashMap<(String, String), String>>,
    counts: Counters,
    /// Scheduled runs that did not happen, by (job, target), for the self-target.
    missed: std::sync::Mutex<HashMap<(String, String), Misses>>,
}

/// Missed runs of one (job, target): since the last [`Context::take_missed`], and the
/// current streak (reset when a run starts).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Misses {
    window: u64,
    streak: u64,
    /// The longest streak seen in the window.
    worst: u64,
}

impl Misses {
    fn miss(&mut self, n: u64) {
        self.window += n;
        self.streak += n;
        self.worst = self.worst.max(self.streak);
    }
}

/// What the window shows and resets it; a streak still going is carried into the next
/// window whole, so several rounds of one missed run each still read as "several in a row".
fn take_misses(
    m: &mut HashMap<(String, String), Misses>,
) -> Vec<crate::alerts::self_target::Missed> {
    let mut out: Vec<_> = m
        .iter_mut()
        .filter(|(_, v)| v.window > 0)
        .map(|((job, target), v)| crate::alerts::self_target::Missed {
            job: job.clone(),
            target: target.clone(),
            missed: v.window,
            streak: v.worst,
        })
        .collect();
    for v in m.values_mut() {
        v.window = 0;
        v.worst = v.streak;
    }
    m.retain(|_, v| v.streak > 0);
    out.sort_by(|a, b| (&a.job, &a.target).cmp(&(&b.job, &b.target)));
    out
}

impl Context {
    pub fn new(
        executor: Arc<dyn Executor>,
        events: Events,
        clock: Arc<dyn Clock>,
        max_concurrent: usize,
    ) -> Self {
        Context {
            executor,
            events,
            clock,
            limit: Limit::new(max_concurrent),
            shutdown: CancellationToken::new(),
            tracker: TaskTracker::new(),
            heartbeats: std::sync::Mutex::new(HashMap::new()),
            running: std::sync::Mutex::new(HashMap::new()),
            counts: Counters::default(),
            missed: std::sync::Mutex::new(HashMap::new()),
        }
    }

    fn beat(&self, job: &str) {
        let mut h = self.heartbeats.lock().unwrap_or_else(|p| p.into_inner());
        h.insert(job.to_string(), Instant::now());
    }

    fn forget(&self, job: &str) {
        let mut h = self.heartbeats.lock().unwrap_or_else(|p| p.into_inner());
        h.remove(job);
    }

    /// Job loops that have not woken for longer than twice [`MAX_SLEEP`]: a loop sleeps at
    /// most that long between wakes, so these are stuck.
    pub fn stuck_loops(&self) -> Vec<String> {
        let h = self.heartbeats.lock().unwrap_or_else(|p| p.into_inner());
        stale(&h, Instant::now(), MAX_SLEEP * 2)
    }

    /// Run counts since the previous call (for the periodic summary line).
    pub fn take_counts(&self) -> RunCounts {
        self.counts.take()
    }

    /// Scheduled runs that did not happen since the previous call (ticks skipped because
    /// the previous run still ran, fire times missed or coalesced after a late wake-up),
    /// per (job, target), with the longest streak of consecutive misses.
    pub fn take_missed(&self) -> Vec<crate::alerts::self_target::Missed> {
        take_misses(&mut self.missed.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// `n` scheduled runs of (job, target) did not happen.
    fn miss(&self, job: &str, target: &str, n: u64) {
        if n == 0 {
            return;
        }
        let mut m = self.missed.lock().unwrap_or_else(|p| p.into_inner());
        m.entry((job.to_string(), target.to_string()))
            .or_default()
            .miss(n);
    }

    /// A run of (job, target) started: its streak of misses ends.
    fn ran(&self, job: &str, target: &str) {
        let mut m = self.missed.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = m.get_mut(&(job.to_string(), target.to_string())) {
            v.streak = 0;
        }
    }

    /// Runs in flight now.
    pub fn running(&self) -> usize {
        self.running.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Claims (job, target) for a new run; `false` when a run of it is still going.
    fn claim(&self, job: &str, target: &str, run_id: &str) -> bool {
        let mut r = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let key = (job.to_string(), target.to_string());
        if r.contains_key(&key) {
            return false;
        }
        r.insert(key, run_id.to_string());
        true
    }

    /// Releases (job, target) if `run_id` still holds it; `false` when it no longer did
    /// (abandoned at shutdown and recorded then).
    fn release(&self, job: &str, target: &str, run_id: &str) -> bool {
        let mut r = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let key = (job.to_string(), target.to_string());
        if r.get(&key).is_some_and(|id| id == run_id) {
            r.remove(&key);
            return true;
        }
        false
    }
}

/// Names whose last beat is older than `max_age` (pure, for the watchdog).
fn stale(beats: &HashMap<String, Instant>, now: Instant, max_age: Duration) -> Vec<String> {
    let mut v: Vec<String> = beats
        .iter()
        .filter(|(_, t)| now.saturating_duration_since(**t) > max_age)
        .map(|(k, _)| k.clone())
        .collect();
    v.sort();
    v
}

/// What a reload changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
}

/// The running schedule: one loop task per enabled job.
pub struct Scheduler {
    ctx: Arc<Context>,
    loops: HashMap<String, (Job, CancellationToken)>,
    config: watch::Sender<Arc<Config>>,
}

impl Scheduler {
    /// Starts a loop for every enabled job of `config`.
    pub fn start(ctx: Arc<Context>, config: Arc<Config>) -> Self {
        let (tx, _) = watch::channel(config.clone());
        let mut s = Scheduler {
            ctx,
            loops: HashMap::new(),
            config: tx,
        };
        s.apply(config);
        s
    }

    /// Switches to a new config: jobs added, removed or changed get their loops started,
    /// stopped or restarted; unchanged jobs keep their loop (and their next fire time).
    /// Runs in flight finish under the config they started with; a changed job's new loop
    /// still skips targets whose previous run is going. Concurrency and catch-up follow
    /// the new config at once.
    pub fn apply(&mut self, config: Arc<Config>) -> Changes {
        let mut changes = Changes::default();
        self.ctx.limit.resize(config.daemon.max_concurrent_targets);
        self.config.send_replace(config.clone());
        let wanted: HashMap<&str, &Job> = config
            .jobs
            .iter()
            .filter(|j| j.enabled)
            .map(|j| (j.name.as_str(), j))
            .collect();
        let current: Vec<String> = self.loops.keys().cloned().collect();
        for name in current {
            let keep = wanted
                .get(name.as_str())
                .is_some_and(|j| self.loops.get(&name).is_some_and(|(old, _)| old.same_as(j)));
            if !keep && let Some((_, token)) = self.loops.remove(&name) {
                token.cancel();
                if wanted.contains_key(name.as_str()) {
                    changes.changed.push(name);
                } else {
                    changes.removed.push(name);
                }
            }
        }
        for (name, job) in wanted {
            if self.loops.contains_key(name) {
                continue;
            }
            if !changes.changed.iter().any(|c| c == name) {
                changes.added.push(name.to_string());
            }
            let token = self.ctx.shutdown.child_token();
            let ctx = self.ctx.clone();
            let job = job.clone();
            let rx = self.config.subscribe();
            let stop = token.clone();
            self.ctx.tracker.spawn(
                job_loop(ctx, job.clone(), rx, stop)
                    .instrument(tracing::info_span!("job", job = %job.name)),
            );
            self.loops.insert(name.to_string(), (job, token));
        }
        changes.added.sort();
        changes.removed.sort();
        changes.changed.sort();
        changes
    }

    /// Names of the jobs with a running loop.
    pub fn jobs(&self) -> Vec<String> {
        let mut v: Vec<String> = self.loops.keys().cloned().collect();
        v.sort();
        v
    }

    /// Stops every loop, cancels every run (each stops its own statements, all at once)
    /// and waits until `deadline` at most for all tasks to finish. Returns whether
    /// everything drained.
    pub async fn shutdown(self, deadline: Instant) -> bool {
        for (_, t) in self.loops.values() {
            t.cancel();
        }
        self.ctx.shutdown.cancel();
        self.ctx.tracker.close();
        let drained = tokio::time::timeout_at(deadline, self.ctx.tracker.wait())
            .await
            .is_ok();
        if !drained {
            // Runs still stopping (a cancel request that cannot reach its server) are
            // abandoned: record them now, while the history writer still listens.
            let left: Vec<(String, String, String)> = {
                let mut r = self.ctx.running.lock().unwrap_or_else(|p| p.into_inner());
                r.drain().map(|((j, t), id)| (j, t, id)).collect()
            };
            for (job, target, id) in left {
                tracing::warn!(%job, %target, run_id = %id, "run did not stop within shutdown_grace; abandoned");
                self.ctx.counts.count(RunOutcome::Interrupted);
                self.ctx.events.publish(Event::RunFinished(RunEnd {
                    id,
                    finished_at: self.ctx.clock.now(),
                    outcome: RunOutcome::Interrupted,
                    status: None,
                    error: Some("did not stop within shutdown_grace; abandoned at exit (its statements may still run on the server until their statement_timeout)".into()),
                }));
            }
        }
        drained
    }
}

/// The clock a schedule's fire times are counted on: the wall clock for cron, and for
/// `@every` a monotonic one (the wall time at the loop's start plus monotonic time since),
/// so stepping the wall clock neither silences nor bunches intervals.
struct FireClock {
    wall: Arc<dyn Clock>,
    mono: Option<(DateTime<Utc>, Instant)>,
}

impl FireClock {
    fn new(schedule: &Schedule, wall: Arc<dyn Clock>) -> Self {
        let mono = matches!(schedule, Schedule::Every(_)).then(|| (wall.now(), Instant::now()));
        FireClock { wall, mono }
    }

    fn now(&self) -> DateTime<Utc> {
        match self.mono {
            Some((start, at)) => {
                start + chrono::Duration::from_std(at.elapsed()).unwrap_or_default()
            }
            None => self.wall.now(),
        }
    }
}

/// Sleeps until `clock` reaches `due`, in slices that beat. `false` if stopped first.
async fn sleep_until(
    ctx: &Context,
    job: &str,
    clock: &FireClock,
    due: DateTime<Utc>,
    stop: &CancellationToken,
) -> bool {
    loop {
        ctx.beat(job);
        let now = clock.now();
        if now >= due {
            return true;
        }
        let left = (due - now)
            .to_std()
            .unwrap_or(Duration::ZERO)
            .min(MAX_SLEEP);
        tokio::select! {
            _ = tokio::time::sleep(left) => {}
            _ = stop.cancelled() => return false,
        }
    }
}

/// Sleeps for `d` of monotonic time, in slices that beat. `false` if stopped first.
async fn sleep_for(ctx: &Context, job: &str, d: Duration, stop: &CancellationToken) -> bool {
    let end = Instant::now() + d;
    loop {
        ctx.beat(job);
        let now = Instant::now();
        if now >= end {
            return true;
        }
        tokio::select! {
            _ = tokio::time::sleep((end - now).min(MAX_SLEEP)) => {}
            _ = stop.cancelled() => return false,
        }
    }
}

async fn job_loop(
    ctx: Arc<Context>,
    job: Job,
    config: watch::Receiver<Arc<Config>>,
    stop: CancellationToken,
) {
    let clock = FireClock::new(&job.schedule, ctx.clock.clone());
    let start = clock.now();
    let first = if job.schedule.fires_at_start() {
        Some(start)
    } else {
        job.schedule.next_after(start)
    };
    let Some(mut due) = first else {
        tracing::warn!("schedule never fires; job idle");
        return;
    };
    tracing::debug!(schedule = %job.schedule, next = %due, "job scheduled");
    loop {
        if !sleep_until(&ctx, &job.name, &clock, due, &stop).await {
            break;
        }
        let now = clock.now();
        let catch_up = config.borrow().daemon.catch_up;
        let (wake, last) = on_wake(&job.schedule, due, now, catch_up);
        let scheduled = ctx.clock.now() - (now - last);
        match wake {
            Wake::Run { coalesced } => {
                if coalesced > 0 {
                    tracing::warn!(
                        coalesced,
                        "woke late (suspend or clock jump): running once for the missed fire times"
                    );
                }
                if !job.jitter.is_zero() {
                    let j = Duration::from_millis(rand::random_range(
                        0..=job.jitter.as_millis() as u64,
                    ));
                    if !sleep_for(&ctx, &job.name, j, &stop).await {
                        break;
                    }
                }
                let cfg = config.borrow().clone();
                fire(&ctx, &job, &cfg, scheduled, coalesced as u32);
            }
            Wake::Missed { count } => {
                tracing::warn!(
                    missed = count,
                    "fire times missed by more than the catch-up grace (daemon.catch_up); skipped"
                );
                let cfg = config.borrow().clone();
                for t in cfg.job_targets(&job) {
                    ctx.miss(&job.name, &t.name, count as u64);
                    record_skip(
                        &ctx,
                        &job,
                        t,
                        scheduled,
                        format!("{count} fire time(s) missed by more than the catch-up grace"),
                    );
                }
            }
        }
        match job.schedule.next_after(last) {
            Some(next) => due = next,
            None => break,
        }
    }
    ctx.forget(&job.name);
    tracing::debug!("job loop stopped");
}

fn record_skip(ctx: &Context, job: &Job, t: &Target, scheduled: DateTime<Utc>, why: String) {
    let now = ctx.clock.now();
    ctx.counts.count(RunOutcome::Skipped);
    ctx.events.publish(Event::RunStarted(JobRun {
        id: new_run_id(),
        job: job.name.clone(),
        kind: job.kind.as_str().into(),
        target: Some(t.name.clone()),
        scheduled_at: Some(scheduled),
        started_at: now,
        finished_at: Some(now),
        outcome: RunOutcome::Skipped,
        status: None,
        error: Some(why),
        coalesced: 0,
    }));
}

/// Starts one run per target, skipping targets whose previous run is still going.
fn fire(
    ctx: &Arc<Context>,
    job: &Job,
    config: &Arc<Config>,
    scheduled: DateTime<Utc>,
    coalesced: u32,
) {
    for target in config.job_targets(job) {
        let id = new_run_id();
        if !ctx.claim(&job.name, &target.name, &id) {
            tracing::debug!(target = %target.name, "previous run still going; this tick is skipped");
            ctx.miss(&job.name, &target.name, 1 + u64::from(coalesced));
            record_skip(
                ctx,
                job,
                target,
                scheduled,
                "the previous run of this job on this target was still going".into(),
            );
            continue;
        }
        // Fire times a late wake-up coalesced into this run did not run on their own.
        ctx.miss(&job.name, &target.name, u64::from(coalesced));
        let run = Planned {
            id,
            job: job.clone(),
            target: target.clone(),
            config: config.clone(),
            scheduled,
            coalesced,
        };
        let ctx2 = ctx.clone();
        ctx.tracker.spawn(async move {
            let _ = run_inner(ctx2, run).await;
        });
    }
}

/// A run about to start.
struct Planned {
    id: String,
    job: Job,
    target: Target,
    config: Arc<Config>,
    scheduled: DateTime<Utc>,
    coalesced: u32,
}

/// How a run ended, as `dbwarden run-job` prints it.
#[derive(Debug)]
pub struct Finished {
    pub run_id: String,
    pub outcome: RunOutcome,
    pub report: Option<Box<dyn Report>>,
    pub error: Option<String>,
}

/// Runs a job against one target now, outside the schedule (`dbwarden run-job`), with the
/// same timeout, recording and cancellation as scheduled runs. A run of the same job on
/// the same target still going is not doubled: the call is recorded as skipped.
pub async fn run_now(ctx: Arc<Context>, job: Job, target: Target, config: Arc<Config>) -> Finished {
    let id = new_run_id();
    let now = ctx.clock.now();
    if !ctx.claim(&job.name, &target.name, &id) {
        record_skip(
            &ctx,
            &job,
            &target,
            now,
            "a run of this job on this target was still going".into(),
        );
        return Finished {
            run_id: id,
            outcome: RunOutcome::Skipped,
            report: None,
            error: Some("a run of this job on this target was still going".into()),
        };
    }
    run_inner(
        ctx,
        Planned {
            id,
            job,
            target,
            config,
            scheduled: now,
            coalesced: 0,
        },
    )
    .await
}

async fn run_inner(ctx: Arc<Context>, run: Planned) -> Finished {
    let Planned {
        id,
        job,
        target,
        config,
        scheduled,
        coalesced,
    } = run;
    let span = tracing::info_span!("run", job = %job.name, target = %target.name, run_id = %id);
    let mut claim = Claim {
        ctx: ctx.clone(),
        job: job.name.clone(),
        target: target.name.clone(),
        id: id.clone(),
        ended: false,
    };
    let finished = async {
        // Waiting for a slot (max_concurrent_targets) is not the run's time: the run
        // starts, and its timeout runs, once it has one.
        let permit = tokio::select! {
            biased;
            _ = ctx.shutdown.cancelled() => None,
            p = ctx.limit.acquire() => Some(p),
        };
        let Some(_permit) = permit else {
            record_skip(&ctx, &job, &target, scheduled, "the daemon stopped before a slot was free (max_concurrent_targets)".into());
            claim.ended = true;
            return Finished {
                run_id: id.clone(),
                outcome: RunOutcome::Skipped,
                report: None,
                error: Some("the daemon stopped before the run could start".into()),
            };
        };
        ctx.ran(&job.name, &target.name);
        ctx.events.publish(Event::RunStarted(JobRun {
            id: id.clone(),
            job: job.name.clone(),
            kind: job.kind.as_str().into(),
            target: Some(target.name.clone()),
            scheduled_at: Some(scheduled),
            started_at: ctx.clock.now(),
            finished_at: None,
            outcome: RunOutcome::Running,
            status: None,
            error: None,
            coalesced,
        }));
        let cancel = ctx.shutdown.child_token();
        let timeout = job.timeout;
        let mut work = std::pin::pin!(async {
            ctx.executor
                .run(RunCtx {
                    run_id: id.clone(),
                    job,
                    target,
                    config,
                    cancel: cancel.clone(),
                })
                .await
        });
        enum End {
            Done(Result<Box<dyn Report>, JobError>),
            TimedOut,
            Shutdown,
        }
        let end = tokio::select! {
            biased;
            _ = ctx.shutdown.cancelled() => End::Shutdown,
            r = &mut work => End::Done(r),
            _ = tokio::time::sleep(timeout) => End::TimedOut,
        };
        if !matches!(end, End::Done(_)) {
            // The run stops its own statements; at shutdown the daemon's deadline bounds
            // this wait instead.
            cancel.cancel();
            let _ = tokio::time::timeout(CANCEL_WAIT, &mut work).await;
        }
        let (outcome, report, error) = match end {
            End::Done(Ok(r)) => (RunOutcome::Ok, Some(r), None),
            End::Done(Err(JobError::Cancelled)) | End::Shutdown => (
                RunOutcome::Interrupted,
                None,
                Some("the daemon is shutting down; the run's statements were cancelled".to_string()),
            ),
            End::Done(Err(e)) => (RunOutcome::Failed, None, Some(e.to_string())),
            End::TimedOut => (
                RunOutcome::TimedOut,
                None,
                Some(format!(
                    "did not finish within the job's timeout of {}; its statements were cancelled",
                    humantime::format_duration(timeout)
                )),
            ),
        };
        ctx.counts.count(outcome);
        match (&report, &error) {
            (Some(r), _) => tracing::debug!(
                outcome = outcome.as_str(),
                status = r.status().map(|s| s.as_str()).unwrap_or("-"),
                "run finished: {}",
                crate::text::escape(&r.summary())
            ),
            (_, Some(e)) => tracing::warn!(outcome = outcome.as_str(), error = %crate::text::escape(e), "run did not complete"),
            _ => {}
        }
        ctx.events.publish(Event::RunFinished(RunEnd {
            id: id.clone(),
            finished_at: ctx.clock.now(),
            outcome,
            status: report.as_ref().and_then(|r| r.status()),
            error: error.clone(),
        }));
        claim.ended = true;
        Finished {
            run_id: id.clone(),
            outcome,
            report,
            error,
        }
    }
    .instrument(span)
    .await;
    drop(claim);
    finished
}

/// A run's hold on its (job, target) overlap guard. Released when the run ends, also when
/// it panics (tokio catches a panic in a task), so a bug hit by one run cannot block its
/// target for good; such a run is recorded as failed.
struct Claim {
    ctx: Arc<Context>,
    job: String,
    target: String,
    id: String,
    ended: bool,
}

impl Drop for Claim {
    fn drop(&mut self) {
        let held = self.ctx.release(&self.job, &self.target, &self.id);
        if held && !self.ended {
            self.ctx.counts.count(RunOutcome::Failed);
            self.ctx.events.publish(Event::RunFinished(RunEnd {
                id: self.id.clone(),
                finished_at: self.ctx.clock.now(),
                outcome: RunOutcome::Failed,
                status: None,
                error: Some("internal error: the run ended without a result (see the log)".into()),
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// An executor whose runs take a fixed (tokio) time and honour cancellation.
    struct Slow {
        delay: Duration,
        started: AtomicUsize,
        cancelled: AtomicUsize,
        /// Runs working at the same time, and the most seen at once.
        now: AtomicUsize,
        peak: AtomicUsize,
    }

    #[derive(Debug)]
    struct Done;

    impl Report for Done {
        fn status(&self) -> Option<crate::health::Status> {
            Some(crate::health::Status::Ok)
        }
        fn summary(&self) -> String {
            "done".into()
        }
    }

    impl Executor for Arc<Slow> {
        fn run(&self, ctx: RunCtx) -> BoxFuture<'static, Result<Box<dyn Report>, JobError>> {
            let me = self.clone();
            me.started.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                let n = me.now.fetch_add(1, Ordering::SeqCst) + 1;
                me.peak.fetch_max(n, Ordering::SeqCst);
                let r = tokio::select! {
                    _ = tokio::time::sleep(me.delay) => Ok(Box::new(Done) as Box<dyn Report>),
                    _ = ctx.cancel.cancelled() => {
                        me.cancelled.fetch_add(1, Ordering::SeqCst);
                        Err(JobError::Cancelled)
                    }
                };
                me.now.fetch_sub(1, Ordering::SeqCst);
                r
            })
        }
    }

    fn config_with(targets: usize, body: &str) -> Arc<Config> {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("c.toml");
        let mut text = String::new();
        for i in 0..targets {
            text.push_str(&format!(
                "[[target]]\nname = \"t{i}\"\nurl = \"sqlite://t{i}.db\"\n"
            ));
        }
        text.push_str(body);
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
        Arc::new(crate::config::load(&path).unwrap_or_else(|e| panic!("{e}")))
    }

    fn config(jobs: &str) -> Arc<Config> {
        config_with(1, jobs)
    }

    fn job(name: &str, schedule: &str, timeout: &str) -> String {
        format!(
            "[[job]]\nname = \"{name}\"\nkind = \"health\"\nschedule = \"{schedule}\"\ntimeout = \"{timeout}\"\n"
        )
    }

    struct Harness {
        exec: Arc<Slow>,
        ctx: Arc<Context>,
        clock: Arc<TokioClock>,
        sub: crate::events::Subscription,
        log: Mutex<Vec<Event>>,
    }

    fn harness(delay: Duration, start: &str) -> Harness {
        let exec = Arc::new(Slow {
            delay,
            started: AtomicUsize::new(0),
            cancelled: AtomicUsize::new(0),
            now: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        });
        let wall = DateTime::parse_from_rfc3339(start)
            .map(|d| d.with_timezone(&Utc))
            .unwrap_or_else(|e| panic!("{e}"));
        let clock = Arc::new(TokioClock::starting_at(wall));
        let events = Events::new(65536);
        let sub = events.subscribe("test");
        let ctx = Arc::new(Context::new(
            Arc::new(exec.clone()),
            events,
            clock.clone(),
            4,
        ));
        Harness {
            exec,
            ctx,
            clock,
            sub,
            log: Mutex::new(Vec::new()),
        }
    }

    impl Harness {
        fn drain(&mut self) -> Vec<Event> {
            let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
            while let Some(e) = self.sub.try_recv() {
                log.push((*e).clone());
            }
            log.clone()
        }

        fn outcomes(&mut self) -> Vec<RunOutcome> {
            self.drain()
                .into_iter()
                .filter_map(|e| match e {
                    Event::RunStarted(r) if r.outcome != RunOutcome::Running => Some(r.outcome),
                    Event::RunFinished(e) => Some(e.outcome),
                    _ => None,
                })
                .collect()
        }

        fn started(&self) -> usize {
            self.exec.started.load(Ordering::SeqCst)
        }
    }

    async fn sleep(secs: f64) {
        tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(30)
    }

    #[tokio::test(start_paused = true)]
    async fn every_fires_at_start_and_a_slow_run_is_not_started_twice() {
        let mut h = harness(Duration::from_secs(25), "2026-01-01T00:00:00Z");
        let sched = Scheduler::start(h.ctx.clone(), config(&job("slow", "@every 10s", "5m")));
        sleep(35.5).await;
        // Ticks at 0, 10, 20, 30: the run from 0 lasts until 25, so 10 and 20 are skipped,
        // and 30 starts a new run.
        assert_eq!(h.started(), 2);
        let o = h.outcomes();
        assert_eq!(
            o.iter().filter(|x| **x == RunOutcome::Skipped).count(),
            2,
            "{o:?}"
        );
        assert_eq!(
            o.iter().filter(|x| **x == RunOutcome::Ok).count(),
            1,
            "{o:?}"
        );
        assert!(sched.shutdown(soon()).await);
    }

    /// (job, target, missed, streak) of a `take_missed`.
    fn missed(ctx: &Context) -> Vec<(String, String, u64, u64)> {
        ctx.take_missed()
            .into_iter()
            .map(|m| (m.job, m.target, m.missed, m.streak))
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn ticks_skipped_by_overlap_are_counted_missed_per_window_with_their_streak() {
        let h = harness(Duration::from_secs(25), "2026-01-01T00:00:00Z");
        let sched = Scheduler::start(h.ctx.clone(), config(&job("slow", "@every 10s", "5m")));
        sleep(5.5).await;
        assert_eq!(missed(&h.ctx), vec![], "the first run started on time");
        sleep(10.0).await;
        // The tick at 10 found the run from 0 still going.
        let one = |n, streak| vec![("slow".to_string(), "t0".to_string(), n, streak)];
        assert_eq!(missed(&h.ctx), one(1, 1));
        sleep(10.0).await;
        // The tick at 20 too: one more in this window, the second in a row.
        assert_eq!(missed(&h.ctx), one(1, 2));
        sleep(10.0).await;
        // The tick at 30 started a run: the streak ended, nothing missed in this window.
        assert_eq!(missed(&h.ctx), vec![]);
        assert!(sched.shutdown(soon()).await);
    }

    #[tokio::test(start_paused = true)]
    async fn fire_times_missed_by_a_clock_jump_are_counted_missed() {
        let h = harness(Duration::from_millis(10), "2026-01-01T00:00:05Z");
        let sched = Scheduler::start(h.ctx.clone(), config(&job("c", "*/10 * * * * *", "5s")));
        sleep(6.0).await;
        assert_eq!(h.started(), 1);
        assert_eq!(missed(&h.ctx), vec![]);
        // A resume after 2 minutes (within the 5 min catch-up grace): the 13 fire times
        // 00:00:20..=00:02:20 run once, late; the 12 that did not run on their own count.
        h.clock.step(chrono::Duration::seconds(120));
        // The loop notices at its next wake (due 00:00:20 by the wall clock, at 15 s).
        sleep(10.0).await;
        assert_eq!(h.started(), 2);
        assert_eq!(
            missed(&h.ctx),
            vec![("c".to_string(), "t0".to_string(), 12, 12)]
        );
        // A jump past the grace: those fire times are skipped, a streak that goes on.
        h.clock.step(chrono::Duration::minutes(10));
        sleep(10.0).await;
        let m = missed(&h.ctx);
        assert_eq!(m.len(), 1, "{m:?}");
        assert!(m[0].2 >= 59 && m[0].3 == m[0].2, "{m:?}");
        assert!(sched.shutdown(soon()).await);
    }

    #[test]
    fn a_streak_going_on_is_carried_whole_into_the_next_window() {
        let mut m = HashMap::new();
        let key = ("j".to_string(), "t".to_string());
        m.entry(key.clone()).or_insert_with(Misses::default).miss(2);
        let w = take_misses(&mut m);
        assert_eq!((w[0].missed, w[0].streak), (2, 2));
        assert!(take_misses(&mut m).is_empty(), "nothing new missed");
        m.entry(key.clone()).or_insert_with(Misses::default).miss(1);
        let w = take_misses(&mut m);
        assert_eq!((w[0].missed, w[0].streak), (1, 3), "third in a row");
        if let Some(v) = m.get_mut(&key) {
            v.streak = 0;
        }
        assert!(take_misses(&mut m).is_empty());
        assert!(m.is_empty(), "a finished streak is forgotten");
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_past_its_timeout_is_cancelled_through_its_own_token() {
        let mut h = harness(Duration::from_secs(3600), "2026-01-01T00:00:00Z");
        let sched = Scheduler::start(h.ctx.clone(), config(&job("stuck", "@every 1h", "5s")));
        sleep(6.0).await;
        assert_eq!(h.outcomes(), vec![RunOutcome::TimedOut]);
        assert_eq!(h.exec.cancelled.load(Ordering::SeqCst), 1);
        assert!(sched.shutdown(soon()).await);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_interrupts_running_runs_and_drains() {
        let mut h = harness(Duration::from_secs(3600), "2026-01-01T00:00:00Z");
        let sched = Scheduler::start(
            h.ctx.clone(),
            config_with(3, &job("long", "@every 1h", "2h")),
        );
        sleep(1.0).await;
        assert!(sched.shutdown(soon()).await);
        assert_eq!(h.outcomes(), vec![RunOutcome::Interrupted; 3]);
        assert_eq!(h.exec.cancelled.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn cron_fires_at_its_next_match_only() {
        let mut h = harness(Duration::from_millis(10), "2026-01-01T00:00:05Z");
        let sched = Scheduler::start(h.ctx.clone(), config(&job("c", "*/10 * * * * *", "5s")));
        sleep(4.0).await;
        assert_eq!(h.started(), 0, "must not fire at start");
        sleep(2.0).await;
        assert_eq!(h.started(), 1);
        sleep(10.0).await;
        assert_eq!(h.started(), 2);
        assert_eq!(h.outcomes(), vec![RunOutcome::Ok, RunOutcome::Ok]);
        assert!(sched.shutdown(soon()).await);
    }

    #[tokio::test(start_paused = true)]
    async fn every_follows_the_monotonic_clock_when_the_wall_clock_steps_back() {
        let h = harness(Duration::from_millis(10), "2026-01-01T12:00:00Z");
        let sched = Scheduler::start(h.ctx.clone(), config(&job("e", "@every 10s", "5s")));
        sleep(1.0).await;
        assert_eq!(h.started(), 1);
        h.clock.step(-chrono::Duration::hours(1));
        sleep(10.0).await;
        assert_eq!(
            h.started(),
            2,
            "a clock stepped back must not silence @every"
        );
        sleep(10.0).await;
        assert_eq!(h.started(), 3);
        assert!(sched.shutdown(soon()).await);
    }

    #[tokio::test(start_paused = true)]
    async fn reload_adds_removes_and_keeps_jobs() {
        let h = harness(Duration::from_millis(10), "2026-01-01T00:00:00Z");
        let mut sched = Scheduler::start(
            h.ctx.clone(),
            config(&(job("a", "@every 1h", "5s") + &job("b", "@every 1h", "5s"))),
        );
        sleep(1.0).await;
        assert_eq!(h.started(), 2);
        let changes = sched.apply(config(
            &(job("a", "@every 1h", "5s")
                + &job("b", "@every 2h", "5s")
                + &job("c", "@every 1h", "5s")),
        ));
        assert_eq!(changes.added, vec!["c".to_string()]);
        assert_eq!(changes.changed, vec!["b".to_string()]);
        assert!(changes.removed.is_empty());
        sleep(1.0).await;
        // a keeps its loop (no new start-up run); b restarts and c starts: 2 more runs.
        assert_eq!(h.started(), 4);
        let changes = sched.apply(config(&job("a", "@every 1h", "5s")));
        assert_eq!(changes.removed, vec!["b".to_string(), "c".to_string()]);
        assert_eq!(sched.jobs(), vec!["a".to_string()]);
        assert!(sched.shutdown(soon()).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_changed_job_keeps_its_overlap_guard() {
        let mut h = harness(Duration::from_secs(100), "2026-01-01T00:00:00Z");
        let mut sched = Scheduler::start(h.ctx.clone(), config(&job("j", "@every 1h", "5m")));
        sleep(1.0).await;
        assert_eq!(h.started(), 1);
        // The new loop fires at start while the old loop's run is still going.
        sched.apply(config(&job("j", "@every 2h", "5m")));
        sleep(1.0).await;
        assert_eq!(h.started(), 1, "the run in flight must not be doubled");
        assert!(h.outcomes().contains(&RunOutcome::Skipped));
        assert!(sched.shutdown(soon()).await);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrency_follows_the_reloaded_limit() {
        let h = harness(Duration::from_secs(10), "2026-01-01T00:00:00Z");
        let limited = |n: usize| {
            config_with(
                8,
                &format!(
                    "[daemon]\nmax_concurrent_targets = {n}\n{}",
                    job("j", "@every 20s", "5m")
                ),
            )
        };
        let mut sched = Scheduler::start(h.ctx.clone(), limited(4));
        sleep(15.0).await;
        assert_eq!(h.exec.peak.load(Ordering::SeqCst), 4);
        sched.apply(limited(2));
        h.exec.peak.store(0, Ordering::SeqCst);
        // The next tick at 20 s (the first batch has drained by then).
        sleep(40.0).await;
        assert_eq!(h.exec.peak.load(Ordering::SeqCst), 2);
        sched.apply(limited(8));
        h.exec.peak.store(0, Ordering::SeqCst);
        sleep(40.0).await;
        assert_eq!(h.exec.peak.load(Ordering::SeqCst), 8);
        assert!(sched.shutdown(soon()).await);
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_for_a_slot_is_not_counted_against_the_timeout() {
        let mut h = harness(Duration::from_secs(8), "2026-01-01T00:00:00Z");
        let body = format!(
            "[daemon]\nmax_concurrent_targets = 1\n{}",
            job("j", "@every 1h", "10s")
        );
        let sched = Scheduler::start(h.ctx.clone(), config_with(2, &body));
        sleep(20.0).await;
        assert_eq!(h.outcomes(), vec![RunOutcome::Ok, RunOutcome::Ok]);
        let starts: Vec<i64> = h
            .drain()
            .into_iter()
            .filter_map(|e| match e {
                Event::RunStarted(r) => Some(r.started_at.timestamp()),
                _ => None,
            })
            .collect();
        assert_eq!(starts.len(), 2);
        assert_eq!(
            starts[1] - starts[0],
            8,
            "the second run starts when it gets its slot"
        );
        assert!(sched.shutdown(soon()).await);
    }

    /// Stops only long after it is cancelled (a cancel that cannot reach its server).
    struct Stubborn;

    impl Executor for Stubborn {
        fn run(&self, ctx: RunCtx) -> BoxFuture<'static, Result<Box<dyn Report>, JobError>> {
            Box::pin(async move {
                ctx.cancel.cancelled().await;
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Err(JobError::Cancelled)
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn runs_still_stopping_at_the_deadline_are_recorded_interrupted() {
        let events = Events::new(1024);
        let mut sub = events.subscribe("test");
        let clock = Arc::new(TokioClock::starting_at(Utc::now()));
        let ctx = Arc::new(Context::new(Arc::new(Stubborn), events, clock, 4));
        let sched = Scheduler::start(ctx.clone(), config_with(2, &job("s", "@every 1h", "1h")));
        sleep(1.0).await;
        assert!(
            !sched
                .shutdown(Instant::now() + Duration::from_secs(2))
                .await
        );
        let mut ends = Vec::new();
        while let Some(e) = sub.try_recv() {
            if let Event::RunFinished(e) = &*e {
                ends.push(e.outcome);
            }
        }
        assert_eq!(ends, vec![RunOutcome::Interrupted; 2]);
        assert_eq!(ctx.running(), 0);
    }

    /// Panics in its first run, then works.
    struct Flaky(AtomicUsize);

    impl Executor for Arc<Flaky> {
        fn run(&self, _: RunCtx) -> BoxFuture<'static, Result<Box<dyn Report>, JobError>> {
            let n = self.0.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                if n == 0 {
                    panic!("a bug hit by one run");
                }
                Ok(Box::new(Done) as Box<dyn Report>)
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_that_panics_is_recorded_failed_and_does_not_block_its_target() {
        let flaky = Arc::new(Flaky(AtomicUsize::new(0)));
        let events = Events::new(1024);
        let mut sub = events.subscribe("test");
        let clock = Arc::new(TokioClock::starting_at(Utc::now()));
        let ctx = Arc::new(Context::new(Arc::new(flaky.clone()), events, clock, 4));
        let sched = Scheduler::start(ctx.clone(), config(&job("p", "@every 10s", "5s")));
        sleep(25.0).await;
        let mut ends = Vec::new();
        while let Some(e) = sub.try_recv() {
            if let Event::RunFinished(e) = &*e {
                ends.push(e.outcome);
            }
        }
        assert_eq!(
            ends,
            vec![RunOutcome::Failed, RunOutcome::Ok, RunOutcome::Ok]
        );
        assert_eq!(flaky.0.load(Ordering::SeqCst), 3);
        assert!(sched.shutdown(soon()).await);
    }

    #[test]
    fn stale_heartbeats_are_found() {
        let now = Instant::now();
        let mut beats = HashMap::new();
        beats.insert("fresh".to_string(), now);
        beats.insert(
            "stuck".to_string(),
            now.checked_sub(Duration::from_secs(61)).unwrap_or(now),
        );
        assert_eq!(stale(&beats, now, MAX_SLEEP * 2), vec!["stuck".to_string()]);
    }

    #[tokio::test(start_paused = true)]
    async fn live_loops_are_not_stuck_and_stopped_loops_are_forgotten() {
        let h = harness(Duration::from_millis(10), "2026-01-01T00:00:00Z");
        let sched = Scheduler::start(h.ctx.clone(), config(&job("daily", "@daily", "5s")));
        // A daily job sleeps for hours, in slices: it still beats every MAX_SLEEP.
        sleep(3.0 * 3600.0).await;
        assert!(h.ctx.stuck_loops().is_empty());
        assert!(sched.shutdown(soon()).await);
        assert!(
            h.ctx
                .heartbeats
                .lock()
                .map(|b| b.is_empty())
                .unwrap_or(false)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn jitter_delays_runs_within_its_bound_and_keeps_the_loop_beating() {
        let mut h = harness(Duration::from_millis(10), "2026-01-01T00:00:00Z");
        let cfg = config(&(job("j", "@every 1h", "5s") + "jitter = \"50m\"\n"));
        let sched = Scheduler::start(h.ctx.clone(), cfg);
        let mut delays = Vec::new();
        for hour in 0..20u64 {
            // Look in on the loop during the jitter wait: it must not count as stuck.
            for _ in 0..6 {
                sleep(600.0).await;
                assert!(h.ctx.stuck_loops().is_empty(), "hour {hour}");
            }
        }
        for e in h.drain() {
            if let Event::RunStarted(r) = e
                && let Some(s) = r.scheduled_at
            {
                delays.push((r.started_at - s).num_seconds());
            }
        }
        assert_eq!(delays.len(), 20, "one run per hour: {delays:?}");
        assert!(delays.iter().all(|d| (0..=3000).contains(d)), "{delays:?}");
        assert!(
            delays.iter().any(|d| *d > 60),
            "jitter must delay: {delays:?}"
        );
        assert!(sched.shutdown(soon()).await);
    }

    #[tokio::test(start_paused = true)]
    async fn run_counts_feed_the_summary() {
        let h = harness(Duration::from_secs(25), "2026-01-01T00:00:00Z");
        let sched = Scheduler::start(h.ctx.clone(), config(&job("slow", "@every 10s", "5m")));
        sleep(35.5).await;
        let c = h.ctx.take_counts();
        assert_eq!((c.ok, c.skipped), (1, 2), "{c:?}");
        assert_eq!(h.ctx.take_counts(), RunCounts::default());
        assert!(sched.shutdown(soon()).await);
    }
}
