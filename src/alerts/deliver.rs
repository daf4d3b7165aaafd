//! Delivery: the in-memory side of the outbox and the loop that sends it.
//!
//! Every notification for a channel is an item held in memory and mirrored in the store's
//! `alert_outbox` by a separate persister task (so a store outage delays only the
//! mirror, never a send: items are sent from memory and their rows written when the store
//! answers again). An item is sent at its due time, retried after a failure with
//! exponential backoff (1 s doubling, capped at 5 min, ±20 % jitter; a receiver's
//! Retry-After wins), and marked delivered on success. Rows left pending by a previous
//! process (a restart, a `kill -9`) or by an agent whose claim expired are claimed from the
//! store and sent too.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::state::{Action, Outgoing};
use super::{Deliver, DeliveryError, Notification};
use crate::store::{OutboxRow, Store, StoreError};

/// First retry after this; doubled per attempt up to [`BACKOFF_CAP`].
pub const BACKOFF_FIRST: Duration = Duration::from_secs(1);
/// Longest wait between two attempts.
pub const BACKOFF_CAP: Duration = Duration::from_secs(300);
/// Sends in flight at most (a drain of many pending notifications).
const MAX_IN_FLIGHT: usize = 32;
/// A claim lasts this long; the holder renews it every [`CLAIM_EVERY`].
const LEASE: Duration = Duration::from_secs(120);
/// How often rows in the store are claimed (left by a predecessor or an expired agent)
/// and this process's claims renewed.
const CLAIM_EVERY: Duration = Duration::from_secs(10);
/// Delivered and cancelled outbox rows are kept this long (for `dbwarden status` and
/// post-mortems), then pruned.
pub const OUTBOX_KEEP: Duration = Duration::from_secs(7 * 24 * 3600);
/// How often old outbox rows are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// Rows one prune deletes at most; a full batch prunes again at the next claim.
const PRUNE_BATCH: i64 = 1000;

/// When to prune again after a prune that deleted `deleted` rows: soon while a backlog
/// remains (a full batch), else after [`PRUNE_EVERY`].
fn prune_again_in(deleted: u64) -> Duration {
    if deleted >= PRUNE_BATCH as u64 {
        CLAIM_EVERY
    } else {
        PRUNE_EVERY
    }
}

/// The delay before retry number `attempt` (1 = the first retry): `BACKOFF_FIRST ·
/// 2^(attempt-1)`, capped, scaled by `jitter` (expected in 0.8..=1.2).
pub fn backoff(attempt: u32, jitter: f64) -> Duration {
    let base = BACKOFF_FIRST.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    base.min(BACKOFF_CAP).mul_f64(jitter.clamp(0.5, 1.5))
}

fn jitter() -> f64 {
    0.8 + rand::random::<f64>() * 0.4
}

/// How one channel's deliveries are going (for the log, `dbwarden status` and the
/// self-target's `alert_delivery` check).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ChannelHealth {
    /// Notifications not yet delivered (in memory).
    pub pending: usize,
    /// Since when every attempt fails (None while it delivers).
    pub failing_since: Option<DateTime<Utc>>,
    /// The current failure's reason; never holds a secret (channels promise that).
    pub last_error: Option<String>,
    pub delivered: u64,
}

/// Channel health by channel name, shared with the daemon.
pub type Health = Arc<Mutex<HashMap<String, ChannelHealth>>>;

/// A write to the store's outbox, applied in order by the persister.
#[derive(Debug, Clone)]
enum Op {
    Insert(Vec<OutboxRow>),
    Delivered {
        key: String,
        channel: String,
        attempts: i64,
        at: DateTime<Utc>,
    },
    Failed {
        key: String,
        channel: String,
        attempts: i64,
        error: String,
        next_at: DateTime<Utc>,
    },
    Cancel(String),
}

struct Item {
    notification: Arc<Notification>,
    attempts: u32,
    next: Instant,
    in_flight: bool,
}

/// The delivery loop. Feed it the state machine's actions with [`Outbox::handle`].
pub struct Outbox<D> {
    deliver: Arc<D>,
    claimer: String,
    channels: Vec<String>,
    items: HashMap<(String, String), Item>,
    persist: mpsc::UnboundedSender<Op>,
    /// The channels the persister claims stored rows for; follows reloads.
    claim_channels: watch::Sender<Vec<String>>,
    health: Health,
    anchor: (Instant, DateTime<Utc>),
}

/// This process's claim name: the agent, then something unique to the process.
pub fn claimer(agent: &str) -> String {
    format!(
        "{agent}:{}:{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

impl<D: Deliver + 'static> Outbox<D> {
    /// A delivery loop for `channels`, mirroring into `store` (if any). Returns it and the
    /// persister task, which ends once the loop is dropped and its queue is written (or
    /// `stop` is cancelled and a last attempt made).
    pub fn new(
        deliver: Arc<D>,
        store: Option<Store>,
        agent: &str,
        channels: Vec<String>,
        health: Health,
        stop: CancellationToken,
    ) -> (Self, mpsc::UnboundedReceiver<Vec<OutboxRow>>) {
        let claimer = claimer(agent);
        let (tx, rx) = mpsc::unbounded_channel();
        let (claimed_tx, claimed_rx) = mpsc::unbounded_channel();
        let (claim_channels, claim_channels_rx) = watch::channel(channels.clone());
        tokio::spawn(persister(
            store,
            agent.to_string(),
            claimer.clone(),
            claim_channels_rx,
            rx,
            claimed_tx,
            stop,
        ));
        (
            Outbox {
                deliver,
                claimer,
                channels,
                items: HashMap::new(),
                persist: tx,
                claim_channels,
                health,
                anchor: (Instant::now(), Utc::now()),
            },
            claimed_rx,
        )
    }

    /// Channels configured now (after a reload).
    pub fn set_channels(&mut self, channels: Vec<String>) {
        // The persister claims stored rows for the channels configured now, not at start.
        self.claim_channels.send_replace(channels.clone());
        self.channels = channels;
    }

    /// Applies one of the state machine's actions.
    pub fn handle(&mut self, action: Action) {
        match action {
            Action::Write(o) => self.write(*o),
            Action::Cancel { key } => {
                self.items
                    .retain(|(k, _), item| *k != key || item.in_flight);
                let _ = self.persist.send(Op::Cancel(key));
            }
        }
        self.update_pending();
    }

    fn write(&mut self, o: Outgoing) {
        let n = Arc::new(o.notification);
        let payload = serde_json::to_string(&*n).unwrap_or_default();
        let now = Utc::now();
        let mut rows = Vec::with_capacity(o.channels.len());
        for channel in o.channels {
            rows.push(OutboxRow {
                key: n.key.clone(),
                channel: channel.clone(),
                agent: n.agent.clone(),
                target: n.target.clone(),
                event: n.event.as_str().into(),
                created_at: now,
                due_at: o.due_at,
                payload: payload.clone(),
                attempts: 0,
                next_at: o.due_at,
            });
            self.items.insert(
                (n.key.clone(), channel),
                Item {
                    notification: n.clone(),
                    attempts: 0,
                    next: o.due,
                    in_flight: false,
                },
            );
        }
        if !rows.is_empty() {
            let _ = self.persist.send(Op::Insert(rows));
        }
    }

    /// Rows claimed from the store (left by an earlier process or an expired agent).
    pub fn claimed(&mut self, rows: Vec<OutboxRow>) {
        let now = Instant::now();
        let wall = Utc::now();
        for r in rows {
            let id = (r.key.clone(), r.channel.clone());
            if self.items.contains_key(&id) {
                continue;
            }
            match serde_json::from_str::<Notification>(&r.payload) {
                Ok(n) => {
                    let wait = (r.next_at - wall).to_std().unwrap_or_default();
                    self.items.insert(
                        id,
                        Item {
                            notification: Arc::new(n),
                            attempts: u32::try_from(r.attempts).unwrap_or(0),
                            next: now + wait,
                            in_flight: false,
                        },
                    );
                }
                Err(e) => {
                    tracing::error!(key = %r.key, channel = %r.channel, error = %e, "an outbox row cannot be read (written by another version?); cancelled");
                    let _ = self.persist.send(Op::Cancel(r.key));
                }
            }
        }
        self.update_pending();
    }

    /// When the next item not in flight is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.items
            .values()
            .filter(|i| !i.in_flight)
            .map(|i| i.next)
            .min()
    }

    /// Starts the sends that are due (up to the in-flight bound) on `sends`.
    pub fn start_due(&mut self, sends: &mut JoinSet<Sent>) {
        let now = Instant::now();
        let mut due: Vec<(Instant, (String, String))> = self
            .items
            .iter()
            .filter(|(_, i)| !i.in_flight && i.next <= now)
            .map(|(id, i)| (i.next, id.clone()))
            .collect();
        due.sort();
        for (_, id) in due {
            if sends.len() >= MAX_IN_FLIGHT {
                break;
            }
            let Some(item) = self.items.get_mut(&id) else {
                continue;
            };
            if !self.channels.contains(&id.1) {
                continue;
            }
            item.in_flight = true;
            let (deliver, n) = (self.deliver.clone(), item.notification.clone());
            sends.spawn(async move {
                let result = deliver.send(&id.1, &n).await;
                Sent {
                    key: id.0,
                    channel: id.1,
                    result,
                }
            });
        }
    }

    /// Records the outcome of one send.
    pub fn finished(&mut self, sent: Sent) {
        let id = (sent.key, sent.channel);
        let Some(item) = self.items.get_mut(&id) else {
            return;
        };
        item.attempts += 1;
        let attempts = i64::from(item.attempts);
        let now = Utc::now();
        match sent.result {
            Ok(()) => {
                self.items.remove(&id);
                {
                    let mut h = self.health.lock().unwrap_or_else(|p| p.into_inner());
                    let c = h.entry(id.1.clone()).or_default();
                    if let Some(since) = c.failing_since.take() {
                        tracing::info!(channel = %id.1, failing_since = %since, "alert channel delivers again");
                    }
                    c.last_error = None;
                    c.delivered += 1;
                }
                let _ = self.persist.send(Op::Delivered {
                    key: id.0,
                    channel: id.1,
                    attempts,
                    at: now,
                });
            }
            Err(e) => {
                let (reason, after) = match &e {
                    DeliveryError::Retry { reason, after } => (reason.clone(), *after),
                    DeliveryError::Permanent { reason } => (reason.clone(), None),
                };
                let delay = after
                    .map(|a| a.min(BACKOFF_CAP))
                    .unwrap_or_else(|| backoff(item.attempts, jitter()));
                item.in_flight = false;
                item.next = Instant::now() + delay;
                let next_at = {
                    let d = item.next.saturating_duration_since(self.anchor.0);
                    self.anchor.1 + chrono::Duration::from_std(d).unwrap_or_default()
                };
                tracing::warn!(
                    channel = %id.1,
                    target = %item.notification.target,
                    key = %id.0,
                    attempt = item.attempts,
                    retry_in = %humantime::format_duration(Duration::from_secs(delay.as_secs().max(1))),
                    error = %reason,
                    "alert delivery failed; will retry"
                );
                {
                    let mut h = self.health.lock().unwrap_or_else(|p| p.into_inner());
                    let c = h.entry(id.1.clone()).or_default();
                    c.failing_since.get_or_insert(now);
                    c.last_error = Some(reason.clone());
                }
                let _ = self.persist.send(Op::Failed {
                    key: id.0,
                    channel: id.1,
                    attempts,
                    error: reason,
                    next_at,
                });
            }
        }
        self.update_pending();
    }

    fn update_pending(&self) {
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for (_, channel) in self.items.keys() {
            *counts.entry(channel.as_str()).or_default() += 1;
        }
        let mut h = self.health.lock().unwrap_or_else(|p| p.into_inner());
        for c in &self.channels {
            h.entry(c.clone()).or_default();
        }
        for (name, c) in h.iter_mut() {
            c.pending = counts.get(name.as_str()).copied().unwrap_or(0);
        }
    }

    /// Items not yet delivered.
    pub fn pending(&self) -> usize {
        self.items.len()
    }

    /// This process's claim name.
    pub fn claimer_name(&self) -> &str {
        &self.claimer
    }
}

/// The outcome of one send.
pub struct Sent {
    key: String,
    channel: String,
    result: Result<(), DeliveryError>,
}

/// Applies outbox writes in order; while the store is unavailable they wait (and the
/// loop keeps sending from memory). Every [`CLAIM_EVERY`] with nothing queued it renews
/// this process's claims and claims rows nobody holds.
async fn persister(
    store: Option<Store>,
    agent: String,
    claimer: String,
    channels: watch::Receiver<Vec<String>>,
    mut rx: mpsc::UnboundedReceiver<Op>,
    claimed: mpsc::UnboundedSender<Vec<OutboxRow>>,
    stop: CancellationToken,
) {
    let Some(store) = store else {
        while rx.recv().await.is_some() {}
        return;
    };
    let mut queue: VecDeque<Op> = VecDeque::new();
    let mut released = false;
    let mut next_claim = Instant::now();
    let mut next_prune = Instant::now();
    let mut delay = Duration::from_millis(200);
    let mut open = true;
    loop {
        // Take everything queued without waiting.
        while let Ok(op) = rx.try_recv() {
            queue.push_back(op);
        }
        if let Some(op) = queue.front() {
            match apply(&store, op, &claimer).await {
                Ok(()) => {
                    queue.pop_front();
                    delay = Duration::from_millis(200);
                    continue;
                }
                Err(StoreError::Unavailable(_)) | Err(StoreError::WriterGone) => {
                    if stop.is_cancelled() {
                        break;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = stop.cancelled() => {}
                    }
                    delay = (delay * 2).min(Duration::from_secs(5));
                    continue;
                }
                Err(e) => {
                    tracing::error!(error = %e, "an outbox write was refused by the history store; the notification is still sent from memory");
                    queue.pop_front();
                    continue;
                }
            }
        }
        if !open || stop.is_cancelled() {
            break;
        }
        if Instant::now() >= next_claim {
            next_claim = Instant::now() + CLAIM_EVERY;
            if !released {
                match store.outbox_release_agent(&agent).await {
                    Ok(n) => {
                        released = true;
                        if n > 0 {
                            tracing::info!(
                                notifications = n,
                                "undelivered notifications from before the restart will be sent"
                            );
                        }
                    }
                    Err(_) => continue,
                }
            }
            let until = Utc::now() + chrono::Duration::from_std(LEASE).unwrap_or_default();
            let _ = store.outbox_renew(&claimer, until).await;
            let channels = channels.borrow().clone();
            if let Ok(rows) = store
                .outbox_claim(&claimer, &channels, Utc::now(), until, 1000)
                .await
                && !rows.is_empty()
            {
                let _ = claimed.send(rows);
            }
            if Instant::now() >= next_prune {
                let before =
                    Utc::now() - chrono::Duration::from_std(OUTBOX_KEEP).unwrap_or_default();
                next_prune = match store.outbox_prune(before, PRUNE_BATCH).await {
                    Ok(n) => {
                        if n > 0 {
                            tracing::debug!(
                                rows = n,
                                "old delivered/cancelled notifications pruned from the outbox"
                            );
                        }
                        Instant::now() + prune_again_in(n)
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "pruning the outbox failed; tried again later");
                        Instant::now() + CLAIM_EVERY
                    }
                };
            }
            continue;
        }
        tokio::select! {
            op = rx.recv() => match op {
                Some(op) => queue.push_back(op),
                None => open = false,
            },
            _ = tokio::time::sleep_until(next_claim) => {}
            _ = stop.cancelled() => {}
        }
    }
    if !queue.is_empty() {
        tracing::warn!(
            writes = queue.len(),
            "outbox writes not made before exit (history store unavailable); notifications not yet written are lost if they were not sent"
        );
    }
}

async fn apply(store: &Store, op: &Op, claimer: &str) -> Result<(), StoreError> {
    match op {
        Op::Insert(rows) => {
            let until = Utc::now() + chrono::Duration::from_std(LEASE).unwrap_or_default();
            store.outbox_insert(rows, claimer, until).await
        }
        Op::Delivered {
            key,
            channel,
            attempts,
            at,
        } => store.outbox_delivered(key, channel, *attempts, *at).await,
        Op::Failed {
            key,
            channel,
            attempts,
            error,
            next_at,
        } => {
            store
                .outbox_failed(key, channel, *attempts, error, *next_at)
                .await
        }
        Op::Cancel(key) => store.outbox_cancel(key).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Accept;

    impl Deliver for Accept {
        async fn send(
            &self,
            _: &str,
            _: &crate::alerts::Notification,
        ) -> Result<(), crate::alerts::DeliveryError> {
            Ok(())
        }
    }

    #[test]
    fn a_full_prune_batch_prunes_again_soon() {
        assert_eq!(prune_again_in(0), PRUNE_EVERY);
        assert_eq!(prune_again_in(PRUNE_BATCH as u64 - 1), PRUNE_EVERY);
        assert_eq!(prune_again_in(PRUNE_BATCH as u64), CLAIM_EVERY);
    }

    /// The delivery loop's periodic task prunes rows delivered more than [`OUTBOX_KEEP`]
    /// ago and keeps recent and pending ones.
    #[tokio::test]
    async fn the_persister_prunes_old_delivered_rows() {
        use sqlx::Connection;
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = dir.path().join("h.db");
        let url = crate::config::SecretUrl::new(format!("sqlite://{}", file.display()));
        let store = Store::open(&url, None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let now = Utc::now();
        let old = now - chrono::Duration::days(10);
        let row = |key: &str, at: DateTime<Utc>| OutboxRow {
            key: key.into(),
            channel: "elsewhere".into(),
            agent: "other".into(),
            target: "db".into(),
            event: "firing".into(),
            created_at: at,
            due_at: at,
            payload: "{}".into(),
            attempts: 0,
            next_at: at,
        };
        let rows = [row("old", old), row("recent", now), row("pending", old)];
        store
            .outbox_insert(&rows, "other:1", now)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        for (key, at) in [("old", now - chrono::Duration::days(8)), ("recent", now)] {
            store
                .outbox_delivered(key, "elsewhere", 1, at)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let stop = CancellationToken::new();
        let (outbox, _claimed) = Outbox::new(
            Arc::new(Accept),
            Some(store.clone()),
            "agent1",
            vec!["hook".into()],
            Health::default(),
            stop.clone(),
        );
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", file.display()))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut keys: Vec<String> = Vec::new();
        // Waits for the persister's first pass (at start), not for a time.
        for _ in 0..100 {
            keys = sqlx::query_scalar("SELECT id_key FROM alert_outbox ORDER BY id_key")
                .fetch_all(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            if keys.len() < 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(keys, vec!["pending".to_string(), "recent".to_string()]);
        drop(outbox);
        stop.cancel();
    }

    #[test]
    fn backoff_doubles_from_one_second_up_to_five_minutes() {
        let d: Vec<u64> = (1..=12).map(|a| backoff(a, 1.0).as_secs()).collect();
        assert_eq!(d, vec![1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(backoff(1000, 1.0), BACKOFF_CAP);
        assert_eq!(backoff(1, 1.2), Duration::from_millis(1200));
    }

    #[test]
    fn backoff_is_jittered() {
        let draws: std::collections::HashSet<u128> =
            (0..20).map(|_| backoff(3, jitter()).as_millis()).collect();
        assert!(draws.len() > 5, "{draws:?}");
        assert!(draws.iter().all(|d| (3200..=4800).contains(d)), "{draws:?}");
    }
}
