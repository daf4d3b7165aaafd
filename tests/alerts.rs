//! Alerts against real things: the outbox and silences in both history-store dialects
//! (claims across agents on the real PostgreSQL), delivery to a real HTTP receiver on
//! 127.0.0.1:0, and the daemon end to end.

mod common;

use chrono::{Duration as CDuration, Utc};
use common::pg::{PgDb, pg_url};
use dbwarden::config::SecretUrl;
use dbwarden::store::{OutboxRow, Store};

fn row(key: &str, channel: &str) -> OutboxRow {
    let now = Utc::now();
    OutboxRow {
        key: key.into(),
        channel: channel.into(),
        agent: "agent1".into(),
        target: "db".into(),
        event: "firing".into(),
        created_at: now,
        due_at: now,
        payload: "{}".into(),
        attempts: 0,
        next_at: now,
    }
}

/// Insert (idempotent), claims exclusive between claimers until the lease ends, a
/// predecessor's claims released, delivered / failed / cancelled, the undelivered count,
/// and silences.
async fn exercise_outbox(store: &Store) {
    let now = Utc::now();
    let lease = now + CDuration::seconds(60);
    let chans = vec!["hook".to_string(), "mail".to_string()];
    store
        .outbox_insert(&[row("k1", "hook"), row("k1", "mail")], "agent1:1", lease)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Written again after an outage: no duplicate, no error.
    store
        .outbox_insert(&[row("k1", "hook")], "agent1:1", lease)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    store
        .outbox_insert(
            &[row("k2", "hook")],
            "agent1:1",
            now - CDuration::seconds(1),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let claim = |who: &'static str| {
        let chans = chans.clone();
        async move {
            let mut got: Vec<String> = store
                .outbox_claim(
                    who,
                    &chans,
                    Utc::now(),
                    Utc::now() + CDuration::seconds(60),
                    100,
                )
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .into_iter()
                .map(|r| format!("{}/{}", r.key, r.channel))
                .collect();
            got.sort();
            got
        }
    };
    // k1 is held by its writer; k2's lease expired: another agent may take it, once.
    assert_eq!(claim("agent2:1").await, vec!["k2/hook"]);
    assert!(claim("agent3:1").await.is_empty());
    // A restarted agent1 takes back what its killed predecessor held.
    assert_eq!(
        store
            .outbox_release_agent("agent1")
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        2
    );
    assert_eq!(claim("agent1:2").await, vec!["k1/hook", "k1/mail"]);
    assert_eq!(
        store
            .outbox_renew("agent1:2", Utc::now() + CDuration::seconds(60))
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        2
    );
    store
        .outbox_failed("k1", "mail", 1, "SMTP 451", Utc::now())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    store
        .outbox_delivered("k1", "hook", 1, Utc::now())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let u = store
        .outbox_undelivered()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let counts: Vec<(String, i64)> = u.iter().map(|u| (u.channel.clone(), u.count)).collect();
    assert_eq!(counts, vec![("hook".into(), 1), ("mail".into(), 1)]);
    assert_eq!(u[1].last_error.as_deref(), Some("SMTP 451"));
    store
        .outbox_cancel("k2")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    store
        .outbox_cancel("k1")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        store
            .outbox_undelivered()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_empty()
    );

    // Silences: active until they end or are removed.
    let id = store
        .silence_add("db", now + CDuration::hours(2), "upgrade", "tester")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let id2 = store
        .silence_add("db2", now + CDuration::hours(1), "x", "tester")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let active = store
        .silences_active(now)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        active.iter().map(|s| s.id).collect::<Vec<_>>(),
        vec![id2, id]
    );
    assert_eq!(active[1].reason, "upgrade");
    // Past its end it is no longer active.
    let later = store
        .silences_active(now + CDuration::minutes(90))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(later.iter().map(|s| s.id).collect::<Vec<_>>(), vec![id]);
    assert!(
        store
            .silence_remove(id)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    );
    assert!(
        !store
            .silence_remove(id)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    );
    let active = store
        .silences_active(now)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(active.iter().map(|s| s.id).collect::<Vec<_>>(), vec![id2]);
}

#[tokio::test]
async fn sqlite_outbox_and_silences() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let url = SecretUrl::new(format!("sqlite://{}/h.db", dir.path().display()));
    let store = Store::open(&url, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    exercise_outbox(&store).await;
}

#[tokio::test]
async fn postgres_outbox_and_silences() {
    let Some(admin) = pg_url() else { return };
    let db = PgDb::create(&admin).await;
    let store = Store::open(&SecretUrl::new(db.url.clone()), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    exercise_outbox(&store).await;
    store.close(std::time::Duration::from_secs(5)).await;
    db.drop_db().await;
}

/// Two agents claiming the same rows at the same time on one PostgreSQL store never
/// both get a row.
#[tokio::test]
async fn postgres_concurrent_claims_never_overlap() {
    let Some(admin) = pg_url() else { return };
    let db = PgDb::create(&admin).await;
    let url = SecretUrl::new(db.url.clone());
    let a = Store::open(&url, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let b = Store::open(&url, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let rows: Vec<OutboxRow> = (0..400).map(|i| row(&format!("k{i}"), "hook")).collect();
    a.outbox_insert(&rows, "nobody:0", Utc::now() - CDuration::seconds(1))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let chans = vec!["hook".to_string()];
    let take = |s: Store, who: &'static str| {
        let chans = chans.clone();
        tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let batch = s
                    .outbox_claim(
                        who,
                        &chans,
                        Utc::now(),
                        Utc::now() + CDuration::seconds(60),
                        7,
                    )
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                if batch.is_empty() {
                    break got;
                }
                got.extend(batch.into_iter().map(|r| r.key));
            }
        })
    };
    let (ga, gb) = (take(a.clone(), "a:1"), take(b.clone(), "b:1"));
    let ga = ga.await.unwrap_or_else(|e| panic!("{e}"));
    let gb = gb.await.unwrap_or_else(|e| panic!("{e}"));
    let mut all: Vec<&String> = ga.iter().chain(gb.iter()).collect();
    assert_eq!(all.len(), 400, "a took {}, b took {}", ga.len(), gb.len());
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 400, "a row was claimed twice");
    a.close(std::time::Duration::from_secs(5)).await;
    b.close(std::time::Duration::from_secs(5)).await;
    db.drop_db().await;
}

// ---------------------------------------------------------------------------------------
// Delivery through the real webhook channel to a real HTTP receiver, in process: the
// alerter task fed with events as a health round publishes them.
// ---------------------------------------------------------------------------------------

use std::sync::Arc;
use std::time::Duration;

use common::proxy::Proxy;
use common::receiver::{Receiver, Reply};
use dbwarden::alerts::channel::Channels;
use dbwarden::alerts::deliver::Health;
use dbwarden::alerts::run::{Control, LiveChannels};
use dbwarden::events::{Event, Events};
use dbwarden::health::{CheckResult, Scope, Status, Unit};
use tokio_util::sync::CancellationToken;

struct Rig {
    events: Events,
    control: tokio::sync::mpsc::UnboundedSender<Control>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    store: Store,
    health: Health,
    _dir: tempfile::TempDir,
}

/// An alerter (group_wait 0) with one webhook channel posting to `url`, its outbox in a
/// SQLite store of its own; the target `db` was OK before.
async fn alerter(url: &str) -> Rig {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let url_file = dir.path().join("hook-url");
    std::fs::write(&url_file, url).unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("dbwarden.toml");
    std::fs::write(
        &path,
        format!(
            "[daemon]\nhistory = \"sqlite://{d}/h.db\"\n[alerts]\ngroup_wait = \"0s\"\n\n\
             [[target]]\nname = \"db\"\nurl = \"sqlite://{d}/db.db\"\n\n\
             [[channel]]\nname = \"hook\"\nkind = \"webhook\"\nurl_file = \"{u}\"\n",
            d = dir.path().display(),
            u = url_file.display()
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let config = Arc::new(dbwarden::config::load(&path).unwrap_or_else(|e| panic!("{e}")));
    let store = Store::open(&config.daemon.history, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let channels = Channels::from_config(&config).unwrap_or_else(|e| panic!("{e}"));
    let events = Events::default();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let stop = CancellationToken::new();
    let health = Health::default();
    let task = tokio::spawn(dbwarden::alerts::run::run(
        Arc::new(LiveChannels::new(channels)),
        events.subscribe("alerts"),
        Some(store.clone()),
        config,
        "agent1".into(),
        rx,
        health.clone(),
        stop.clone(),
    ));
    tx.send(Control::Restored(vec![("db".into(), Status::Ok)]))
        .unwrap_or_else(|e| panic!("{e}"));
    Rig {
        events,
        control: tx,
        stop,
        task,
        store,
        health,
        _dir: dir,
    }
}

fn check(status: Status) -> CheckResult {
    CheckResult {
        check: "idle_in_transaction".into(),
        status,
        value: Some(120.0),
        unit: Unit::Seconds,
        warning: Some(30.0),
        critical: Some(60.0),
        message: "pid 42 idle in transaction for 2m".into(),
        subject: Some("pid 42".into()),
        scope: Scope::Database,
    }
}

impl Rig {
    /// What a health round publishes for a believed change of `db`.
    fn change(&self, from: Status, to: Status) {
        let ts = Utc::now();
        self.events.publish(Event::Checks {
            ts,
            target: "db".into(),
            run_id: "r".into(),
            results: vec![check(to)],
        });
        self.events.publish(Event::Transition {
            ts,
            target: "db".into(),
            check: None,
            from,
            to,
            message: "m".into(),
        });
    }

    async fn undelivered(&self) -> i64 {
        self.store
            .outbox_undelivered()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .iter()
            .map(|u| u.count)
            .sum()
    }

    async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
        drop(self.control);
        self.store.close(Duration::from_secs(5)).await;
    }
}

/// Polls an async condition every 50 ms (a deadline for waiting, not a timing assertion).
async fn eventually<F, Fut>(secs: u64, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !f().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up after {secs}s waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_change_is_retried_after_500_and_429_then_delivered_once_with_one_key() {
    let rx = Receiver::start(vec![
        Reply::new(500, "boom"),
        Reply::new(429, "slow down").header("Retry-After", "1"),
        Reply::new(200, "ok"),
    ])
    .await;
    let rig = alerter(&rx.url("/hook")).await;
    rig.change(Status::Ok, Status::Critical);
    eventually(30, "three attempts", || async { rx.requests().len() >= 3 }).await;
    eventually(10, "the outbox row is marked delivered", || async {
        rig.undelivered().await == 0
    })
    .await;
    // Nothing more is sent once delivered.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 3, "{reqs:?}");
    let keys: Vec<&str> = reqs
        .iter()
        .map(|r| r.header("Idempotency-Key").unwrap_or(""))
        .collect();
    assert!(!keys[0].is_empty());
    assert!(keys.iter().all(|k| *k == keys[0]), "{keys:?}");
    let body = reqs[2].json();
    assert_eq!(body["target"], "db");
    assert_eq!(body["event"], "firing");
    assert_eq!(body["agent"], "agent1");
    assert!(body.to_string().contains("CRITICAL"), "{body}");
    let h = rig.health.lock().map(|h| h.clone()).unwrap_or_default();
    assert_eq!(
        h.get("hook").map(|c| (c.delivered, c.failing_since)),
        Some((1, None))
    );
    rig.stop().await;
}

#[tokio::test]
async fn a_receiver_down_then_up_gets_each_notification_exactly_once() {
    let rx = Receiver::start(vec![Reply::new(200, "ok")]).await;
    let proxy = Proxy::start(rx.addr).await;
    proxy.refuse().await;
    let rig = alerter(&format!("http://{}/hook", proxy.addr())).await;
    rig.change(Status::Ok, Status::Critical);
    eventually(10, "the failure is visible", || async {
        rig.health
            .lock()
            .map(|h| {
                h.get("hook")
                    .is_some_and(|c| c.failing_since.is_some() && c.pending == 1)
            })
            .unwrap_or(false)
    })
    .await;
    let err = rig
        .store
        .outbox_undelivered()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eventually(10, "the outbox row records the error", || async {
        rig.store
            .outbox_undelivered()
            .await
            .map(|u| u.first().is_some_and(|u| u.last_error.is_some()))
            .unwrap_or(false)
    })
    .await;
    drop(err);
    assert!(rx.requests().is_empty());
    proxy.resume().await;
    rig.change(Status::Critical, Status::Ok);
    eventually(60, "both delivered", || async {
        rig.undelivered().await == 0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let reqs = rx.requests();
    let mut keys: Vec<String> = reqs
        .iter()
        .map(|r| r.header("Idempotency-Key").unwrap_or("").to_string())
        .collect();
    let events: Vec<String> = reqs.iter().map(|r| r.json()["event"].to_string()).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 2, "{events:?}");
    assert_eq!(reqs.len(), 2, "exactly once per key: {events:?}");
    let h = rig.health.lock().map(|h| h.clone()).unwrap_or_default();
    assert_eq!(h.get("hook").and_then(|c| c.failing_since), None);
    rig.stop().await;
}
