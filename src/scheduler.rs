//! The scheduler: one task per job that sleeps until the job's next fire time and starts a
//! run per target. Guarantees:
//!
//! - **No overlap**: a target whose previous run of the same job is still going is not run
//!   again; the tick is recorded as `skipped` for it.
//! - **Timeouts**: a run past the job's timeout is stopped (its statements cancelled) and
//!   recorded as `timed_out`.
//! - **Shutdown**: loops stop, running runs are cancelled and recorded as `interrupted`,
//!   and [`Scheduler::shutdown`] waits for every task (tokio-util `TaskTracker`).
//! - **Suspend / clock jumps**: sleeps are cut into slices of at most [`MAX_SLEEP`] and the
//!   wall clock is re-read after each, so a laptop resume or an NTP step is noticed; runs
//!   missed meanwhile are coalesced into one run if within the catch-up grace.
//! - **Jitter**: an optional random delay before each run spreads a fleet's load.
//!
//! Wall-clock time comes from a [`Clock`], so tests drive the whole loop with
//! `tokio::time::pause()` and [`TokioClock`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::config::{Config, Job, Target};
use crate::health::Status;
use crate::schedule::{Wake, on_wake};
use crate::store::{JobRun, Record, RunEnd, RunOutcome, Store, new_run_id};

/// The longest single sleep: wall-clock jumps are noticed at least this often.
pub const MAX_SLEEP: Duration = Duration::from_secs(30);

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

/// Wall time derived from tokio's clock, so `tokio::time::pause()` / `advance()` move it.
pub struct TokioClock {
    wall: DateTime<Utc>,
    mono: tokio::time::Instant,
}

impl TokioClock {
    pub fn starting_at(wall: DateTime<Utc>) -> Self {
        TokioClock {
            wall,
            mono: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = tokio::time::Instant::now() - self.mono;
        self.wall + chrono::Duration::from_std(elapsed).unwrap_or_default()
    }
}

/// What running a job against a target means. The daemon's executor runs health rounds;
/// tests plug in their own.
pub trait Executor: Send + Sync + 'static {
    /// Runs the job against the target; `Ok(status)` when it completed (the target's
    /// health status, for health jobs), `Err(reason)` when it failed.
    fn run(
        &self,
        run_id: &str,
        job: &Job,
        target: &Target,
    ) -> BoxFuture<'static, Result<Option<Status>, String>>;
    /// Stops whatever the run left on the server (called on timeout and shutdown).
    fn abort(&self, target: &Target) -> BoxFuture<'static, ()>;
}

/// Where run records go: the history store, or a channel (tests and tools).
#[derive(Clone)]
pub enum Recorder {
    Store(Store),
    Channel(mpsc::UnboundedSender<Record>),
}

impl Recorder {
    async fn record(&self, r: Record) {
        match self {
            Recorder::Store(s) => {
                if let Err(e) = s.write(r).await {
                    tracing::error!(error = %e, "cannot record a job run");
                }
            }
            Recorder::Channel(tx) => {
                let _ = tx.send(r);
            }
        }
    }
}

/// Everything job tasks share.
pub struct Context {
    pub executor: Arc<dyn Executor>,
    pub recorder: Recorder,
    pub clock: Arc<dyn Clock>,
    /// Bounds how many targets are worked on at once, across all jobs.
    pub limit: Arc<Semaphore>,
    /// Cancelled on shutdown: running runs stop and are recorded as `interrupted`.
    pub shutdown: CancellationToken,
    pub tracker: TaskTracker,
    /// When each job loop last woke; the systemd watchdog is fed only while every loop
    /// is alive, so a hung scheduler gets the service restarted.
    heartbeats: std::sync::Mutex<HashMap<String, tokio::time::Instant>>,
}

impl Context {
    pub fn new(
        executor: Arc<dyn Executor>,
        recorder: Recorder,
        clock: Arc<dyn Clock>,
        max_concurrent: usize,
    ) -> Self {
        Context {
            executor,
            recorder,
            clock,
            limit: Arc::new(Semaphore::new(max_concurrent.max(1))),
            shutdown: CancellationToken::new(),
            tracker: TaskTracker::new(),
            heartbeats: std::sync::Mutex::new(HashMap::new()),
        }
    }
}

impl Context {
    fn beat(&self, job: &str) {
        let mut h = self.heartbeats.lock().unwrap_or_else(|p| p.into_inner());
        h.insert(job.to_string(), tokio::time::Instant::now());
    }

    fn forget(&self, job: &str) {
        let mut h = self.heartbeats.lock().unwrap_or_else(|p| p.into_inner());
        h.remove(job);
    }

    /// Job loops that have not woken for longer than twice [`MAX_SLEEP`]: a loop sleeps at
    /// most that long between wakes, so these are stuck.
    pub fn stuck_loops(&self) -> Vec<String> {
        let h = self.heartbeats.lock().unwrap_or_else(|p| p.into_inner());
        stale(&h, tokio::time::Instant::now(), MAX_SLEEP * 2)
    }
}

/// Names whose last beat is older than `max_age` (pure, for the watchdog).
fn stale(
    beats: &HashMap<String, tokio::time::Instant>,
    now: tokio::time::Instant,
    max_age: Duration,
) -> Vec<String> {
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
    /// Runs in flight finish under the config they started with.
    pub fn apply(&mut self, config: Arc<Config>) -> Changes {
        let mut changes = Changes::default();
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

    /// Stops every loop, interrupts running runs (their statements are cancelled) and
    /// waits up to `grace` for all tasks to finish. Returns whether everything drained.
    pub async fn shutdown(self, grace: Duration) -> bool {
        for (_, t) in self.loops.values() {
            t.cancel();
        }
        self.ctx.shutdown.cancel();
        self.ctx.tracker.close();
        tokio::time::timeout(grace, self.ctx.tracker.wait())
            .await
            .is_ok()
    }
}

/// Sleeps until the wall clock reaches `due`, in slices so jumps are noticed. `false` if
/// stopped first.
async fn sleep_until(
    ctx: &Context,
    job: &str,
    due: DateTime<Utc>,
    stop: &CancellationToken,
) -> bool {
    loop {
        ctx.beat(job);
        let now = ctx.clock.now();
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

async fn job_loop(
    ctx: Arc<Context>,
    job: Job,
    config: watch::Receiver<Arc<Config>>,
    stop: CancellationToken,
) {
    let start = ctx.clock.now();
    let first = if job.schedule.fires_at_start() {
        Some(start)
    } else {
        job.schedule.next_after(start)
    };
    let Some(mut due) = first else {
        tracing::warn!("schedule never fires; job idle");
        return;
    };
    tracing::info!(schedule = %job.schedule, next = %due, "job scheduled");
    let mut running: HashMap<String, JoinHandle<()>> = HashMap::new();
    let catch_up = config.borrow().daemon.catch_up;
    loop {
        if !sleep_until(&ctx, &job.name, due, &stop).await {
            break;
        }
        let now = ctx.clock.now();
        let (wake, last) = on_wake(&job.schedule, due, now, catch_up);
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
                    tokio::select! {
                        _ = tokio::time::sleep(j) => {}
                        _ = stop.cancelled() => break,
                    }
                }
                let cfg = config.borrow().clone();
                fire(&ctx, &job, &cfg, last, coalesced as u32, &mut running).await;
            }
            Wake::Missed { count } => {
                tracing::warn!(
                    missed = count,
                    "fire times missed by more than the catch-up grace (daemon.catch_up); skipped"
                );
                let cfg = config.borrow().clone();
                for t in cfg.job_targets(&job) {
                    record_skip(
                        &ctx,
                        &job,
                        t,
                        last,
                        format!("{count} fire time(s) missed by more than the catch-up grace"),
                    )
                    .await;
                }
            }
        }
        running.retain(|_, h| !h.is_finished());
        match job.schedule.next_after(last) {
            Some(next) => due = next,
            None => break,
        }
    }
    ctx.forget(&job.name);
    tracing::debug!("job loop stopped");
}

async fn record_skip(ctx: &Context, job: &Job, t: &Target, scheduled: DateTime<Utc>, why: String) {
    let now = ctx.clock.now();
    ctx.recorder
        .record(Record::Run(JobRun {
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
        }))
        .await;
}

/// Starts one run per target, skipping targets whose previous run is still going.
async fn fire(
    ctx: &Arc<Context>,
    job: &Job,
    config: &Config,
    scheduled: DateTime<Utc>,
    coalesced: u32,
    running: &mut HashMap<String, JoinHandle<()>>,
) {
    for target in config.job_targets(job) {
        if running.get(&target.name).is_some_and(|h| !h.is_finished()) {
            tracing::warn!(target = %target.name, "previous run still going; this tick is skipped");
            record_skip(
                ctx,
                job,
                target,
                scheduled,
                "the previous run of this job on this target was still going".into(),
            )
            .await;
            continue;
        }
        let handle = ctx.tracker.spawn(run_one(
            ctx.clone(),
            job.clone(),
            target.clone(),
            scheduled,
            coalesced,
        ));
        running.insert(target.name.clone(), handle);
    }
}

/// Runs a job against one target now, outside the schedule (`dbwarden run-job`), with the
/// same timeout, recording and cancellation as scheduled runs.
pub async fn run_now(
    ctx: Arc<Context>,
    job: Job,
    target: Target,
) -> (RunOutcome, Option<Status>, Option<String>) {
    let now = ctx.clock.now();
    run_inner(ctx, job, target, now, 0).await
}

async fn run_one(
    ctx: Arc<Context>,
    job: Job,
    target: Target,
    scheduled: DateTime<Utc>,
    coalesced: u32,
) {
    let _ = run_inner(ctx, job, target, scheduled, coalesced).await;
}

async fn run_inner(
    ctx: Arc<Context>,
    job: Job,
    target: Target,
    scheduled: DateTime<Utc>,
    coalesced: u32,
) -> (RunOutcome, Option<Status>, Option<String>) {
    let id = new_run_id();
    let span = tracing::info_span!("run", job = %job.name, target = %target.name, run_id = %id);
    async move {
        ctx.recorder
            .record(Record::Run(JobRun {
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
            }))
            .await;
        let (outcome, status, error) = tokio::select! {
            biased;
            _ = ctx.shutdown.cancelled() => {
                ctx.executor.abort(&target).await;
                (RunOutcome::Interrupted, None, Some("the daemon is shutting down; running statements were cancelled".to_string()))
            }
            r = async {
                let _permit = ctx.limit.acquire().await;
                tokio::time::timeout(job.timeout, ctx.executor.run(&id, &job, &target)).await
            } => match r {
                Ok(Ok(status)) => (RunOutcome::Ok, status, None),
                Ok(Err(e)) => (RunOutcome::Failed, None, Some(e)),
                Err(_) => {
                    ctx.executor.abort(&target).await;
                    (RunOutcome::TimedOut, None, Some(format!(
                        "did not finish within the job's timeout of {}; its statements were cancelled",
                        humantime::format_duration(job.timeout)
                    )))
                }
            },
        };
        match (&outcome, &error) {
            (RunOutcome::Ok, _) => tracing::info!(status = status.map(|s| s.as_str()).unwrap_or("-"), "run finished"),
            (_, Some(e)) => tracing::warn!(outcome = outcome.as_str(), error = %e, "run did not complete"),
            _ => {}
        }
        ctx.recorder
            .record(Record::RunEnd(RunEnd {
                id,
                finished_at: ctx.clock.now(),
                outcome,
                status,
                error: error.clone(),
            }))
            .await;
        (outcome, status, error)
    }
    .instrument(span)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// An executor whose runs take a fixed (tokio) time.
    struct Slow {
        delay: Duration,
        started: AtomicUsize,
        aborted: AtomicUsize,
    }

    impl Executor for Slow {
        fn run(
            &self,
            _: &str,
            _: &Job,
            _: &Target,
        ) -> BoxFuture<'static, Result<Option<Status>, String>> {
            self.started.fetch_add(1, Ordering::SeqCst);
            let d = self.delay;
            Box::pin(async move {
                tokio::time::sleep(d).await;
                Ok(Some(Status::Ok))
            })
        }

        fn abort(&self, _: &Target) -> BoxFuture<'static, ()> {
            self.aborted.fetch_add(1, Ordering::SeqCst);
            Box::pin(async {})
        }
    }

    fn config(jobs: &str) -> Arc<Config> {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("c.toml");
        let body = format!("[[target]]\nname = \"t\"\nurl = \"sqlite://t.db\"\n{jobs}");
        std::fs::write(&path, body).unwrap_or_else(|e| panic!("{e}"));
        Arc::new(crate::config::load(&path).unwrap_or_else(|e| panic!("{e}")))
    }

    fn job(name: &str, schedule: &str, timeout: &str) -> String {
        format!(
            "[[job]]\nname = \"{name}\"\nkind = \"health\"\nschedule = \"{schedule}\"\ntimeout = \"{timeout}\"\n"
        )
    }

    struct Harness {
        exec: Arc<Slow>,
        ctx: Arc<Context>,
        rx: mpsc::UnboundedReceiver<Record>,
        log: Mutex<Vec<Record>>,
    }

    fn harness(delay: Duration, start: &str) -> Harness {
        let exec = Arc::new(Slow {
            delay,
            started: AtomicUsize::new(0),
            aborted: AtomicUsize::new(0),
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let wall = DateTime::parse_from_rfc3339(start)
            .map(|d| d.with_timezone(&Utc))
            .unwrap_or_else(|e| panic!("{e}"));
        let ctx = Arc::new(Context::new(
            exec.clone(),
            Recorder::Channel(tx),
            Arc::new(TokioClock::starting_at(wall)),
            4,
        ));
        Harness {
            exec,
            ctx,
            rx,
            log: Mutex::new(Vec::new()),
        }
    }

    impl Harness {
        fn drain(&mut self) -> Vec<Record> {
            let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
            while let Ok(r) = self.rx.try_recv() {
                log.push(r);
            }
            log.clone()
        }

        fn outcomes(&mut self) -> Vec<RunOutcome> {
            self.drain()
                .into_iter()
                .filter_map(|r| match r {
                    Record::Run(r) if r.outcome != RunOutcome::Running => Some(r.outcome),
                    Record::RunEnd(e) => Some(e.outcome),
                    _ => None,
                })
                .collect()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn every_fires_at_start_and_a_slow_run_is_not_started_twice() {
        let mut h = harness(Duration::from_secs(25), "2026-01-01T00:00:00Z");
        let sched = Scheduler::start(h.ctx.clone(), config(&job("slow", "@every 10s", "5m")));
        tokio::time::sleep(Duration::from_millis(35_500)).await;
        // Ticks at 0, 10, 20, 30: the run from 0 lasts until 25, so 10 and 20 are skipped,
        // and 30 starts a new run.
        assert_eq!(h.exec.started.load(Ordering::SeqCst), 2);
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
        assert!(sched.shutdown(Duration::from_secs(5)).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_past_its_timeout_is_recorded_timed_out_and_aborted() {
        let mut h = harness(Duration::from_secs(3600), "2026-01-01T00:00:00Z");
        let sched = Scheduler::start(h.ctx.clone(), config(&job("stuck", "@every 1h", "5s")));
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert_eq!(h.outcomes(), vec![RunOutcome::TimedOut]);
        assert_eq!(h.exec.aborted.load(Ordering::SeqCst), 1);
        assert!(sched.shutdown(Duration::from_secs(5)).await);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_interrupts_running_runs_and_drains() {
        let mut h = harness(Duration::from_secs(3600), "2026-01-01T00:00:00Z");
        let sched = Scheduler::start(h.ctx.clone(), config(&job("long", "@every 1h", "2h")));
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(sched.shutdown(Duration::from_secs(30)).await);
        assert_eq!(h.outcomes(), vec![RunOutcome::Interrupted]);
        assert_eq!(h.exec.aborted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn cron_fires_at_its_next_match_only() {
        let mut h = harness(Duration::from_millis(10), "2026-01-01T00:00:05Z");
        let sched = Scheduler::start(h.ctx.clone(), config(&job("c", "*/10 * * * * *", "5s")));
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert_eq!(
            h.exec.started.load(Ordering::SeqCst),
            0,
            "must not fire at start"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(h.exec.started.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(h.exec.started.load(Ordering::SeqCst), 2);
        assert_eq!(h.outcomes(), vec![RunOutcome::Ok, RunOutcome::Ok]);
        assert!(sched.shutdown(Duration::from_secs(5)).await);
    }

    #[tokio::test(start_paused = true)]
    async fn reload_adds_removes_and_keeps_jobs() {
        let h = harness(Duration::from_millis(10), "2026-01-01T00:00:00Z");
        let mut sched = Scheduler::start(
            h.ctx.clone(),
            config(&(job("a", "@every 1h", "5s") + &job("b", "@every 1h", "5s"))),
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(h.exec.started.load(Ordering::SeqCst), 2);
        let changes = sched.apply(config(
            &(job("a", "@every 1h", "5s")
                + &job("b", "@every 2h", "5s")
                + &job("c", "@every 1h", "5s")),
        ));
        assert_eq!(changes.added, vec!["c".to_string()]);
        assert_eq!(changes.changed, vec!["b".to_string()]);
        assert!(changes.removed.is_empty());
        tokio::time::sleep(Duration::from_secs(1)).await;
        // a keeps its loop (no new start-up run); b restarts and c starts: 2 more runs.
        assert_eq!(h.exec.started.load(Ordering::SeqCst), 4);
        let changes = sched.apply(config(&job("a", "@every 1h", "5s")));
        assert_eq!(changes.removed, vec!["b".to_string(), "c".to_string()]);
        assert_eq!(sched.jobs(), vec!["a".to_string()]);
        assert!(sched.shutdown(Duration::from_secs(5)).await);
    }

    #[test]
    fn stale_heartbeats_are_found() {
        let now = tokio::time::Instant::now();
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
        tokio::time::sleep(Duration::from_secs(3 * 3600)).await;
        assert!(h.ctx.stuck_loops().is_empty());
        assert!(sched.shutdown(Duration::from_secs(5)).await);
        assert!(
            h.ctx
                .heartbeats
                .lock()
                .map(|b| b.is_empty())
                .unwrap_or(false)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn jitter_delays_but_does_not_skip() {
        let h = harness(Duration::from_millis(10), "2026-01-01T00:00:00Z");
        let cfg = config(&(job("j", "@every 1h", "5s") + "jitter = \"20s\"\n"));
        let sched = Scheduler::start(h.ctx.clone(), cfg);
        tokio::time::sleep(Duration::from_secs(21)).await;
        assert_eq!(h.exec.started.load(Ordering::SeqCst), 1);
        assert!(sched.shutdown(Duration::from_secs(5)).await);
    }
}
