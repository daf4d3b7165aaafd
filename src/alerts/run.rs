//! The alerter task: reads the event stream, feeds the state machine, hands its actions to
//! the delivery loop, and keeps silences fresh from the history store.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::deliver::{Health, Outbox};
use super::state::{Machine, Policy, Route, Silence};
use super::{Deliver, self_target};
use crate::config::Config;
use crate::events::{Event, Subscription};
use crate::health::Status;
use crate::store::Store;

/// How often silences are read back from the store (added by the CLI or another agent).
const SILENCES_EVERY: Duration = Duration::from_secs(15);

/// Messages from the daemon to the alerter.
#[derive(Debug)]
pub enum Control {
    /// The believed target statuses read back from the history: (target, status).
    Restored(Vec<(String, Status)>),
    /// A reloaded config.
    Reload(Arc<Config>),
}

/// The grouping policy a config asks for.
pub fn policy(config: &Config) -> Policy {
    let a = &config.raw.alerts;
    Policy {
        group_wait: a.group_wait,
        group_interval: a.group_interval,
        repeat_interval: a.repeat_interval,
        ..Policy::default()
    }
}

/// The routes of a config's channels.
pub fn routes(config: &Config) -> Vec<Route> {
    config
        .raw
        .channels
        .iter()
        .map(|c| Route {
            channel: c.name.clone(),
            min_severity: c
                .min_severity
                .as_deref()
                .and_then(Status::parse)
                .unwrap_or(Status::Warning),
            tags: c.tags.clone(),
            send_resolved: c.send_resolved,
        })
        .collect()
}

fn describe(m: &mut Machine, config: &Config) {
    let now = Instant::now();
    for t in &config.targets {
        m.describe(&t.name, t.engine.as_str(), &t.tags, now);
    }
    m.describe(self_target::NAME, self_target::NAME, &[], now);
}

/// Runs until `stop`: events in, notifications out. On stop, sends already in flight get
/// a moment to finish; the rest stay pending in the outbox for the next start.
#[allow(clippy::too_many_arguments)]
pub async fn run<D: Deliver + 'static>(
    deliver: Arc<D>,
    mut events: Subscription,
    store: Option<Store>,
    config: Arc<Config>,
    agent: String,
    mut control: mpsc::UnboundedReceiver<Control>,
    health: Health,
    stop: CancellationToken,
) {
    let mut machine = Machine::new(policy(&config), agent.clone(), routes(&config));
    describe(&mut machine, &config);
    let channels = |c: &Config| c.raw.channels.iter().map(|c| c.name.clone()).collect();
    let persist_stop = CancellationToken::new();
    let (mut outbox, mut claimed) = Outbox::new(
        deliver,
        store.clone(),
        &agent,
        channels(&config),
        health,
        persist_stop.clone(),
    );
    let mut silences = spawn_silences(store, stop.clone());
    let mut sends = JoinSet::new();
    loop {
        outbox.start_due(&mut sends);
        let wake = [machine.next_wake(), outbox.next_due()]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        let actions = tokio::select! {
            e = events.recv() => match e {
                Some(e) => on_event(&mut machine, &e),
                None => break,
            },
            Some(done) = sends.join_next(), if !sends.is_empty() => {
                match done {
                    Ok(sent) => outbox.finished(sent),
                    Err(e) => tracing::error!(error = %e, "an alert send task failed"),
                }
                Vec::new()
            }
            Some(rows) = claimed.recv() => {
                outbox.claimed(rows);
                Vec::new()
            }
            Some(c) = control.recv() => match c {
                Control::Restored(rows) => machine.restore(rows, Instant::now()),
                Control::Reload(config) => {
                    machine.reconfigure(policy(&config), routes(&config));
                    describe(&mut machine, &config);
                    outbox.set_channels(channels(&config));
                    Vec::new()
                }
            },
            Ok(()) = silences.changed() => {
                let list = silences.borrow_and_update().clone();
                machine.set_silences(list, Instant::now())
            }
            _ = tokio::time::sleep_until(wake) => machine.tick(Instant::now()),
            _ = stop.cancelled() => break,
        };
        for a in actions {
            outbox.handle(a);
        }
    }
    // Sends in flight get a moment; what is left is pending in the outbox.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(done) = sends.join_next().await {
            if let Ok(sent) = done {
                outbox.finished(sent);
            }
        }
    })
    .await;
    sends.abort_all();
    let left = outbox.pending();
    drop(outbox);
    // Gives the persister a moment to write what is queued, then stops it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    persist_stop.cancel();
    if left > 0 {
        tracing::info!(
            pending = left,
            "undelivered notifications stay in the outbox and are sent after the next start"
        );
    }
}

fn on_event(m: &mut Machine, e: &Event) -> Vec<super::state::Action> {
    let now = Instant::now();
    match e {
        Event::Checks {
            target, results, ..
        } => {
            m.checks(target, results, now);
            Vec::new()
        }
        Event::Sample {
            target,
            check: Some(c),
            ..
        } => {
            m.part(target, std::slice::from_ref(c), now);
            Vec::new()
        }
        Event::Transition {
            ts,
            target,
            check: None,
            to,
            ..
        } => m.transition(target, *to, *ts, now),
        _ => Vec::new(),
    }
}

/// Reads the active silences every [`SILENCES_EVERY`]; the alerter sees each new list.
fn spawn_silences(store: Option<Store>, stop: CancellationToken) -> watch::Receiver<Vec<Silence>> {
    let (tx, rx) = watch::channel(Vec::new());
    if let Some(store) = store {
        tokio::spawn(async move {
            loop {
                if let Ok(rows) = store.silences_active(Utc::now()).await {
                    let list: Vec<Silence> = rows
                        .into_iter()
                        .map(|r| Silence {
                            id: r.id,
                            target: r.target,
                            until: r.ends_at,
                            reason: r.reason,
                        })
                        .collect();
                    tx.send_if_modified(|old| {
                        let changed = *old != list;
                        *old = list;
                        changed
                    });
                }
                tokio::select! {
                    _ = tokio::time::sleep(SILENCES_EVERY) => {}
                    _ = stop.cancelled() => return,
                }
            }
        });
    }
    rx
}

/// The configured channels, replaced whole on reload; what the delivery loop sends through.
#[derive(Debug)]
pub struct LiveChannels(std::sync::RwLock<Arc<super::channel::Channels>>);

impl LiveChannels {
    pub fn new(c: super::channel::Channels) -> Self {
        LiveChannels(std::sync::RwLock::new(Arc::new(c)))
    }

    /// Swaps in a reloaded config's channels.
    pub fn replace(&self, c: super::channel::Channels) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(c);
    }

    fn current(&self) -> Arc<super::channel::Channels> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Deliver for LiveChannels {
    async fn send(
        &self,
        channel: &str,
        n: &super::Notification,
    ) -> Result<(), super::DeliveryError> {
        let c = self.current();
        c.send(channel, n).await
    }
}
