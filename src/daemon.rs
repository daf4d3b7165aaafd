//! The daemon's lifecycle: start (validate, start the history store — degraded if it is
//! unreachable —, restore believed statuses, start the scheduler, READY=1), SIGHUP (reload:
//! a valid config replaces the old one, an invalid one is refused and the old one keeps
//! running), SIGTERM/SIGINT (stop new runs, cancel running ones and close connections all
//! at once, exit within `shutdown_grace` in total), the systemd watchdog, and a periodic
//! summary line. It knows no job kind: runs go through [`crate::jobs::Dispatcher`].

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::alerts::channel::Channels;
use crate::alerts::deliver::Health;
use crate::alerts::run::{Control, LiveChannels};
use crate::alerts::self_target;
use crate::config::{self, Config};
use crate::events::{self, Events};
use crate::jobs::{self, Shared};
use crate::scheduler::{RunCounts, Scheduler};
use crate::store::{BelievedRow, BufferLimits, Store, StoreHealth};

/// How long start-up waits for the history store to hand back the believed statuses
/// before monitoring starts without them (they are restored later, when it answers).
const RESTORE_WAIT: Duration = Duration::from_secs(5);

/// sd_notify, a no-op outside systemd; failures are logged once at debug level.
fn notify(states: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

fn status_line(config: &Config, sched: &Scheduler, store: &Store) -> String {
    let base = format!(
        "watching {} target(s) with {} job(s)",
        config.targets.len(),
        sched.jobs().len()
    );
    match store_trouble(&store.health()) {
        Some(t) => format!("{base}; {t}"),
        None => base,
    }
}

/// Opens the history store named by a config (password from `history_password_file`),
/// strictly: an unreachable store is an error. For one-shot commands.
pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    Ok(Store::open(&config.daemon.history, history_password(config)?).await?)
}

/// Opens the configured history store for reading only (CLI commands that only read it):
/// never creates, migrates or writes it ([`Store::open_read_only`]).
pub async fn open_store_read_only(config: &Config) -> anyhow::Result<Store> {
    Ok(Store::open_read_only(&config.daemon.history, history_password(config)?).await?)
}

fn history_password(config: &Config) -> anyhow::Result<Option<config::Secret>> {
    match &config.daemon.history_password_file {
        Some(f) => Ok(Some(
            config::secret::read_secret_file(f).map_err(anyhow::Error::msg)?,
        )),
        None => Ok(None),
    }
}

/// Names of targets added, removed and changed between two configs (for the reload log).
pub fn target_changes(old: &Config, new: &Config) -> crate::scheduler::Changes {
    let mut c = crate::scheduler::Changes::default();
    for t in &new.targets {
        match old.target(&t.name) {
            None => c.added.push(t.name.clone()),
            Some(o) if o.raw != t.raw => c.changed.push(t.name.clone()),
            Some(_) => {}
        }
    }
    for t in &old.targets {
        if new.target(&t.name).is_none() {
            c.removed.push(t.name.clone());
        }
    }
    c
}

/// Reads the believed statuses back from the history into the tracker: at once if the
/// store answers within [`RESTORE_WAIT`], else in the background until it does.
async fn restore_believed(store: &Store, shared: &Arc<Shared>, alerts: &Alerts) {
    let seed = |rows: Vec<BelievedRow>, shared: &Shared, alerts: &Alerts| {
        alerts.restored(&rows);
        let n = shared
            .tracker
            .restore(rows.into_iter().map(|r| (r.target, r.check, r.status)));
        tracing::info!(
            restored = n,
            "believed statuses restored from the history: a restart announces only what changed"
        );
    };
    match tokio::time::timeout(RESTORE_WAIT, store.believed_states()).await {
        Ok(Ok(rows)) => seed(rows, shared, alerts),
        failed => {
            let why = match failed {
                Ok(Err(e)) => e.to_string(),
                _ => format!(
                    "no answer within {}",
                    humantime::format_duration(RESTORE_WAIT)
                ),
            };
            tracing::warn!(
                error = %why,
                "believed statuses not restored yet (history store unavailable); until they are, a status that held before the restart may be recorded again"
            );
            let (store, shared, alerts) = (store.clone(), shared.clone(), alerts.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    if let Ok(Ok(rows)) =
                        tokio::time::timeout(RESTORE_WAIT, store.believed_states()).await
                    {
                        seed(rows, &shared, &alerts);
                        return;
                    }
                }
            });
        }
    }
}

/// Starts the daemon's history store: an unreachable store is not fatal (the store
/// buffers and retries); only a URL or password file that cannot work is.
async fn start_store(config: &Config) -> anyhow::Result<Store> {
    let password = match &config.daemon.history_password_file {
        Some(f) => Some(config::secret::read_secret_file(f).map_err(anyhow::Error::msg)?),
        None => None,
    };
    let limits = BufferLimits {
        records: config.daemon.history_buffer_records,
        bytes: usize::try_from(config.history_buffer_bytes).unwrap_or(usize::MAX),
    };
    Ok(Store::start(&config.daemon.history, password, limits).await?)
}

/// How long the history store may fail before it is an ERROR in the log (it is in
/// `STATUS=` at once).
const STORE_FAILING_LOUD: Duration = Duration::from_secs(60);

/// The history store's state as the service status shows it: `None` while it writes.
fn store_trouble(h: &StoreHealth) -> Option<String> {
    if h.reachable {
        return None;
    }
    let since = h
        .failing_since
        .map(|t| format!(" since {}", t.format("%Y-%m-%d %H:%M:%S UTC")))
        .unwrap_or_default();
    Some(format!(
        "history store unavailable{since}: {} record(s) buffered, {} dropped",
        h.backlog_records,
        h.dropped.total()
    ))
}

/// How often the `dbwarden` self-target is judged.
const SELF_ROUND: Duration = Duration::from_secs(30);

/// Computes the forecast checks from the history before the first health round, so they
/// are judged from the start instead of after the first rollup run: waits up to
/// [`RESTORE_WAIT`], then lets the computation finish in the background (it never replaces
/// what a rollup run cached meanwhile).
async fn prime_forecasts(store: &Store, shared: &Arc<Shared>, config: &Arc<Config>) {
    let (store, shared, config) = (store.clone(), shared.clone(), config.clone());
    let mut task = tokio::spawn(async move {
        crate::history::checks::prime(&store, &config, &shared.forecasts).await
    });
    match tokio::time::timeout(RESTORE_WAIT, &mut task).await {
        Ok(Ok(n)) => tracing::info!(
            targets = n,
            "forecast checks computed from the history for the first health rounds"
        ),
        Ok(Err(e)) => tracing::warn!(error = %e, "computing the forecast checks at start failed"),
        Err(_) => tracing::info!(
            "forecast checks still being computed from the history; health rounds judge them once ready"
        ),
    }
}

/// The alerter as the daemon sees it: started with the event stream, told the restored
/// believed statuses and reloads, stopped after the runs.
#[derive(Clone)]
struct Alerts {
    control: Option<tokio::sync::mpsc::UnboundedSender<Control>>,
    channels: Option<Arc<LiveChannels>>,
    health: Health,
    stop: CancellationToken,
    task: Arc<std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl Alerts {
    fn start(config: &Arc<Config>, events: &Events, store: &Store) -> Alerts {
        let health = Health::default();
        let stop = CancellationToken::new();
        let channels = match Channels::from_config(config) {
            Ok(c) => Some(Arc::new(LiveChannels::new(c))),
            Err(e) => {
                tracing::error!(error = %e, "alert channels cannot be built; no alert will be sent until a reload fixes it");
                None
            }
        };
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let task = channels.as_ref().map(|ch| {
            tokio::spawn(crate::alerts::run::run(
                ch.clone(),
                events.subscribe("alerts"),
                Some(store.clone()),
                config.clone(),
                crate::store::agent_name(),
                rx,
                health.clone(),
                stop.clone(),
            ))
        });
        Alerts {
            control: task.as_ref().map(|_| tx),
            channels,
            health,
            stop,
            task: Arc::new(std::sync::Mutex::new(task)),
        }
    }

    fn restored(&self, rows: &[BelievedRow]) {
        if let Some(c) = &self.control {
            let targets = rows
                .iter()
                .filter(|r| r.check.is_none())
                .map(|r| (r.target.clone(), r.status))
                .collect();
            let _ = c.send(Control::Restored(targets));
        }
    }

    fn reload(&self, config: &Arc<Config>) {
        if let (Some(live), Some(c)) = (&self.channels, &self.control) {
            match Channels::from_config(config) {
                Ok(ch) => live.replace(ch),
                Err(e) => {
                    tracing::error!(error = %e, "reloaded alert channels cannot be built; the previous ones keep sending")
                }
            }
            let _ = c.send(Control::Reload(config.clone()));
        }
    }

    async fn stop(&self) {
        self.stop.cancel();
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = task {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }
}

/// Judges the daemon itself as the `dbwarden` target and publishes the round like any
/// target's (history, hysteresis, alerts). Returns the store's drop count for next time.
#[allow(clippy::too_many_arguments)]
fn self_target_round(
    shared: &Shared,
    alerts: &Alerts,
    store: &Store,
    sched: &crate::scheduler::Context,
    missed: &mut self_target::MissedWindow,
    maintenance: &self_target::MaintenanceStreaks,
    dropped_before: u64,
    config: &Config,
) -> u64 {
    let store_health = store.health();
    let channels = alerts
        .health
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let now = chrono::Utc::now();
    let stuck = sched.stuck_loops();
    let missed = missed.round(now, sched.take_missed());
    let checks = self_target::checks(&self_target::Inputs {
        store: &store_health,
        dropped_before,
        channels: &channels,
        channel_failing_after: config.raw.alerts.channel_failing_after,
        stuck_loops: &stuck,
        missed: &missed,
        maintenance: &maintenance.current(),
        thresholds: &config.self_thresholds,
        now,
    });
    let h = jobs::TargetHealth {
        target: self_target::NAME.into(),
        engine: self_target::NAME,
        status: crate::health::target_status(&checks),
        checks,
        report: Default::default(),
        measured_at: now,
    };
    let run_id = crate::store::new_run_id();
    shared.events.publish(crate::events::Event::Checks {
        ts: now,
        target: h.target.clone(),
        run_id,
        results: h.checks.clone(),
    });
    for change in shared.tracker.observe(&h) {
        let (from, to) = (change.transition.from, change.transition.to);
        if change.check.is_none() {
            tracing::warn!(
                from = from.as_str(),
                status = to.as_str(),
                "dbwarden itself: {from} -> {to}: {}",
                change.message
            );
        }
        shared.events.publish(crate::events::Event::Transition {
            ts: now,
            target: change.target,
            check: change.check,
            from,
            to,
            message: change.message,
        });
    }
    store_health.dropped.total()
}

/// Runs the daemon until SIGTERM/SIGINT. Returns the process exit code.
pub async fn run(config_path: &Path) -> anyhow::Result<i32> {
    let config = match config::load(config_path) {
        Ok(c) => Arc::new(c),
        Err(errors) => {
            for e in &errors.errors {
                tracing::error!("{e}");
            }
            eprint!("{errors}");
            eprintln!(
                "dbwarden: refusing to start; fix the configuration and run `dbwarden config check`"
            );
            return Ok(2);
        }
    };
    crate::store::use_agent_name(&config);
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    let store = match start_store(&config).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("dbwarden: cannot use the history store: {e:#}");
            return Ok(1);
        }
    };
    let events = Events::default();
    let stop_history = CancellationToken::new();
    let history = tokio::spawn(events::history_writer(
        events.subscribe("history"),
        store.clone(),
        stop_history.clone(),
    ));
    let (shared, ctx) = jobs::runtime(&config, events.clone());
    let alerts = Alerts::start(&config, &events, &store);
    shared.use_history(store.clone());
    restore_believed(&store, &shared, &alerts).await;
    prime_forecasts(&store, &shared, &config).await;
    let mut sched = Scheduler::start(ctx.clone(), config.clone());
    let live = crate::api::Live::default();
    let stop_live = CancellationToken::new();
    let live_task = tokio::spawn(crate::api::live::follow(
        live.clone(),
        events.subscribe("api"),
        stop_live.clone(),
    ));
    let api = crate::api::ApiState::new(
        config.clone(),
        live,
        store.clone(),
        shared.clone(),
        ctx.clone(),
    );
    api.set_alert_health(alerts.health.clone());
    let server = crate::api::Server::start(
        crate::api::router(api.clone()),
        config.listen,
        config.daemon.request_timeout,
    );
    let mut current = config;

    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    // Ping at half the watchdog interval; without a watchdog, tick rarely and do nothing.
    let watchdog = sd_notify::watchdog_enabled();
    let mut ping =
        tokio::time::interval(watchdog.map(|d| d / 2).unwrap_or(Duration::from_secs(3600)));
    let mut store_watch = tokio::time::interval(Duration::from_secs(5));
    let mut self_round = tokio::time::interval(SELF_ROUND);
    let mut self_dropped = 0;
    let mut missed_window = self_target::MissedWindow::default();
    let mut maintenance_runs = self_target::MaintenanceStreaks::default();
    let mut runs_seen = events.subscribe("self-target");
    let mut shown_status = status_line(&current, &sched, &store);
    let mut store_loud = false;
    let every = current.daemon.summary_interval;
    let mut summary = tokio::time::interval_at(Instant::now() + every, every);
    tracing::info!(
        config = %current.path.display(),
        history = %store.url(),
        jobs = sched.jobs().len(),
        targets = current.targets.len(),
        "dbwarden started"
    );
    notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(&status_line(&current, &sched, &store)),
    ]);

    loop {
        tokio::select! {
            _ = hup.recv() => {
                let mono = sd_notify::NotifyState::monotonic_usec_now();
                match mono {
                    Ok(m) => notify(&[sd_notify::NotifyState::Reloading, m]),
                    Err(_) => notify(&[sd_notify::NotifyState::Reloading]),
                }
                tracing::info!("SIGHUP: reloading configuration");
                match config::load(&current.path) {
                    Ok(new) => {
                        for w in &new.warnings {
                            tracing::warn!("{w}");
                        }
                        if new.daemon.history.expose() != current.daemon.history.expose()
                            || new.daemon.listen != current.daemon.listen
                            || new.daemon.agent != current.daemon.agent
                        {
                            tracing::warn!("daemon.history, daemon.listen and daemon.agent changes take effect after a restart");
                        }
                        let new = Arc::new(new);
                        let targets = target_changes(&current, &new);
                        shared.reload(&new);
                        alerts.reload(&new);
                        api.reload(new.clone());
                        if new.daemon.summary_interval != current.daemon.summary_interval {
                            let every = new.daemon.summary_interval;
                            summary = tokio::time::interval_at(Instant::now() + every, every);
                        }
                        let jobs = sched.apply(new.clone());
                        tracing::info!(
                            targets_added = ?targets.added, targets_removed = ?targets.removed, targets_changed = ?targets.changed,
                            jobs_added = ?jobs.added, jobs_removed = ?jobs.removed, jobs_changed = ?jobs.changed,
                            "configuration reloaded"
                        );
                        maintenance_runs.retain_jobs(|job| new.jobs.iter().any(|j| j.name == job));
                        current = new;
                    }
                    Err(errors) => {
                        for e in &errors.errors {
                            tracing::error!("{e}");
                        }
                        tracing::error!(
                            errors = errors.errors.len(),
                            "new configuration refused; the previous one keeps running"
                        );
                    }
                }
                notify(&[
                    sd_notify::NotifyState::Ready,
                    sd_notify::NotifyState::Status(&status_line(&current, &sched, &store)),
                ]);
            }
            _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); break; }
            _ = int.recv() => { tracing::info!("SIGINT: shutting down"); break; }
            _ = self_round.tick() => {
                self_dropped = self_target_round(&shared, &alerts, &store, &ctx, &mut missed_window, &maintenance_runs, self_dropped, &current);
            }
            Some(e) = runs_seen.recv() => {
                maintenance_runs.observe(&e, |id| shared.take_maintenance_skip(id));
            }
            _ = summary.tick() => log_summary(&ctx.take_counts(), ctx.running(), &events, &store.health()),
            _ = store_watch.tick() => {
                let h = store.health();
                let failing_for = h.failing_since.and_then(|t| (chrono::Utc::now() - t).to_std().ok());
                if failing_for.is_some_and(|d| d >= STORE_FAILING_LOUD) && !store_loud {
                    store_loud = true;
                    tracing::error!(
                        backlog = h.backlog_records,
                        dropped = h.dropped.total(),
                        error = h.last_error.as_deref().unwrap_or("-"),
                        "the history store has not accepted writes for over a minute; monitoring goes on and results are buffered (oldest dropped past daemon.history_buffer_records / history_buffer_bytes)"
                    );
                } else if h.reachable && store_loud {
                    store_loud = false;
                    tracing::info!(dropped = h.dropped.total(), "the history store accepts writes again");
                }
                let line = status_line(&current, &sched, &store);
                if line != shown_status {
                    notify(&[sd_notify::NotifyState::Status(&line)]);
                    shown_status = line;
                }
            }
            _ = ping.tick() => {
                if watchdog.is_some() {
                    let stuck = ctx.stuck_loops();
                    if stuck.is_empty() {
                        notify(&[sd_notify::NotifyState::Watchdog]);
                    } else {
                        tracing::error!(jobs = ?stuck, "job loops are stuck; not feeding the watchdog so systemd restarts the service");
                    }
                }
            }
        }
    }

    // Everything below fits in shutdown_grace: runs stop their own statements (all at
    // once), then connections close (all at once), then the store gets what is left.
    let grace = current.daemon.shutdown_grace;
    let deadline = Instant::now() + grace;
    notify(&[
        sd_notify::NotifyState::Stopping,
        sd_notify::NotifyState::Status("stopping: cancelling running jobs"),
    ]);
    let reserve = (grace / 4).min(Duration::from_secs(2));
    // No new API request from here; those in flight get a moment to answer.
    server.shutdown(reserve).await;
    api.shutdown(deadline - reserve).await;
    if !sched.shutdown(deadline - reserve).await {
        tracing::warn!(grace = %humantime::format_duration(grace), "some runs did not stop within the grace period");
    }
    let left = deadline.saturating_duration_since(Instant::now());
    shared.engines.close_all(left / 2).await;
    alerts.stop().await;
    stop_live.cancel();
    let _ = live_task.await;
    stop_history.cancel();
    let _ = history.await;
    let left = deadline.saturating_duration_since(Instant::now());
    let closed = store
        .clone()
        .close(left.max(Duration::from_millis(100)))
        .await;
    if closed.unwritten > 0 {
        tracing::warn!(
            unwritten = closed.unwritten,
            error = closed.health.last_error.as_deref().unwrap_or("-"),
            "history records could not be written before exit and are lost"
        );
    }
    log_summary(&ctx.take_counts(), 0, &events, &closed.health);
    tracing::info!("dbwarden stopped");
    Ok(0)
}

/// The periodic summary line: what ran, what failed, what was skipped, and whether any
/// consumer of the event stream fell behind.
fn log_summary(c: &RunCounts, running: usize, events: &Events, store: &StoreHealth) {
    let lost: u64 = events.lost().iter().map(|(_, n)| n).sum();
    tracing::info!(
        store_reachable = store.reachable,
        store_backlog = store.backlog_records,
        store_written = store.written_total,
        store_dropped = store.dropped.total(),
        runs_ok = c.ok,
        runs_failed = c.failed,
        runs_timed_out = c.timed_out,
        runs_skipped = c.skipped,
        runs_interrupted = c.interrupted,
        running,
        events_lost = lost,
        "summary: {} run(s) ok, {} failed, {} timed out, {} skipped, {} interrupted",
        c.ok,
        c.failed,
        c.timed_out,
        c.skipped,
        c.interrupted
    );
}
