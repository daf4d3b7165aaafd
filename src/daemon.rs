//! The daemon's lifecycle: start (validate, open the store, start the scheduler, READY=1),
//! SIGHUP (reload: a valid config replaces the old one, an invalid one is refused and the
//! old one keeps running), SIGTERM/SIGINT (stop new runs, cancel running ones, exit within
//! the grace period), and the systemd watchdog.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::signal::unix::{SignalKind, signal};

use crate::config::{self, Config, Job, JobKind, Target};
use crate::engine::HealthOptions;
use crate::health::Status;
use crate::health::hysteresis::Policy;
use crate::jobs::{self, Engines, ServerFacts, StatusTracker};
use crate::scheduler::{Context, Executor, Recorder, Scheduler, SystemClock};
use crate::store::{Record, Store, agent_name};

/// Runs health rounds for the scheduler and stores their results.
pub struct HealthExecutor {
    pub engines: Arc<Engines>,
    pub store: Store,
    pub facts: Arc<ServerFacts>,
    pub tracker: Arc<StatusTracker>,
}

/// The hysteresis policy a config asks for.
pub fn policy_of(config: &Config) -> Policy {
    Policy {
        rounds: config.daemon.confirm_rounds,
        min_duration: config.daemon.confirm_for,
    }
}

impl Executor for HealthExecutor {
    fn run(
        &self,
        run_id: &str,
        job: &Job,
        target: &Target,
    ) -> BoxFuture<'static, Result<Option<Status>, String>> {
        let engines = self.engines.clone();
        let store = self.store.clone();
        let facts = self.facts.clone();
        let tracker = self.tracker.clone();
        let target = target.clone();
        let kind = job.kind;
        let opts = HealthOptions {
            integrity_check: job.integrity_check,
            ..HealthOptions::default()
        };
        let run_id = run_id.to_string();
        Box::pin(async move {
            match kind {
                JobKind::Health => {
                    let h = jobs::health_round(&engines, &target, &facts, &opts).await;
                    jobs::record_health(&store, &run_id, &h)
                        .await
                        .map_err(|e| e.to_string())?;
                    for c in h.checks.iter().filter(|c| c.status != Status::Ok) {
                        tracing::debug!(check = %c.check, status = c.status.as_str(), "{}", c.message);
                    }
                    for change in tracker.observe(&h) {
                        let check = change.check.as_deref().unwrap_or("(target)");
                        let (from, to) = (change.transition.from, change.transition.to);
                        if to == Status::Ok {
                            tracing::info!(
                                check,
                                status = to.as_str(),
                                from = from.as_str(),
                                "{check}: {from} -> {to}: {}",
                                change.message
                            );
                        } else {
                            tracing::warn!(
                                check,
                                status = to.as_str(),
                                from = from.as_str(),
                                "{check}: {from} -> {to}: {}",
                                change.message
                            );
                        }
                        store
                            .write(Record::Transition {
                                ts: h.measured_at,
                                target: change.target,
                                check: change.check,
                                from,
                                to,
                                message: change.message,
                            })
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                    Ok(Some(h.status))
                }
            }
        })
    }

    fn abort(&self, target: &Target) -> BoxFuture<'static, ()> {
        let engines = self.engines.clone();
        let target = target.clone();
        Box::pin(async move {
            if let Ok(e) = engines.get(&target) {
                e.cancel_running().await;
            }
        })
    }
}

/// sd_notify, a no-op outside systemd; failures are logged once at debug level.
fn notify(states: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

fn status_line(config: &Config, sched: &Scheduler) -> String {
    format!(
        "watching {} target(s) with {} job(s)",
        config.targets.len(),
        sched.jobs().len()
    )
}

/// Opens the history store named by a config (password from `history_password_file`).
pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    let password = match &config.daemon.history_password_file {
        Some(f) => Some(config::secret::read_secret_file(f).map_err(anyhow::Error::msg)?),
        None => None,
    };
    Ok(Store::open(&config.daemon.history, password).await?)
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
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    let store = match open_store(&config).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("dbwarden: cannot open the history store: {e:#}");
            return Ok(1);
        }
    };
    match store.close_orphaned_runs(&agent_name()).await {
        Ok(0) => {}
        Ok(n) => tracing::warn!(
            runs = n,
            "marked runs left over from a previous daemon as interrupted"
        ),
        Err(e) => {
            tracing::warn!(error = %e, "could not close runs left over from a previous daemon")
        }
    }
    let engines = Arc::new(Engines::default());
    let tracker = Arc::new(StatusTracker::new(policy_of(&config)));
    let facts = Arc::new(ServerFacts::default());
    let executor = Arc::new(HealthExecutor {
        engines: engines.clone(),
        store: store.clone(),
        facts: facts.clone(),
        tracker: tracker.clone(),
    });
    let ctx = Arc::new(Context::new(
        executor,
        Recorder::Store(store.clone()),
        Arc::new(SystemClock),
        config.daemon.max_concurrent_targets,
    ));
    let mut sched = Scheduler::start(ctx.clone(), config.clone());
    let mut current = config;

    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    // Ping at half the watchdog interval; without a watchdog, tick rarely and do nothing.
    let watchdog = sd_notify::watchdog_enabled();
    let mut ping =
        tokio::time::interval(watchdog.map(|d| d / 2).unwrap_or(Duration::from_secs(3600)));
    tracing::info!(
        config = %current.path.display(),
        history = %store.url(),
        jobs = sched.jobs().len(),
        targets = current.targets.len(),
        "dbwarden started"
    );
    notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(&status_line(&current, &sched)),
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
                        {
                            tracing::warn!("daemon.history and daemon.listen changes take effect after a restart");
                        }
                        let new = Arc::new(new);
                        engines.retain(&new);
                        facts.retain(&new);
                        tracker.set_policy(policy_of(&new));
                        let changes = sched.apply(new.clone());
                        tracing::info!(
                            added = ?changes.added, removed = ?changes.removed, changed = ?changes.changed,
                            "configuration reloaded"
                        );
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
                    sd_notify::NotifyState::Status(&status_line(&current, &sched)),
                ]);
            }
            _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); break; }
            _ = int.recv() => { tracing::info!("SIGINT: shutting down"); break; }
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

    notify(&[
        sd_notify::NotifyState::Stopping,
        sd_notify::NotifyState::Status("stopping: cancelling running jobs"),
    ]);
    let grace = current.daemon.shutdown_grace;
    let drained = sched.shutdown(grace).await;
    if !drained {
        tracing::warn!(grace = %humantime::format_duration(grace), "some runs did not stop within the grace period");
    }
    engines.cancel_all().await;
    engines.close_all(Duration::from_secs(2)).await;
    if tokio::time::timeout(
        Duration::from_secs(5),
        store.clone().close(Duration::from_secs(5)),
    )
    .await
    .is_err()
    {
        tracing::warn!("history store did not flush within 5s");
    }
    tracing::info!("dbwarden stopped");
    Ok(0)
}
