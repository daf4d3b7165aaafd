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

    // Pruning: delivered or cancelled rows older than the cut-off go, in bounded steps;
    // pending rows stay whatever their age.
    let old = |key: &str| OutboxRow {
        created_at: now - CDuration::days(10),
        due_at: now - CDuration::days(10),
        next_at: now - CDuration::days(10),
        ..row(key, "hook")
    };
    store
        .outbox_insert(&[old("old1"), old("old2"), old("old3")], "x:1", lease)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    store
        .outbox_delivered("old1", "hook", 1, now - CDuration::days(8))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    store
        .outbox_cancel("old2")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let week_ago = now - CDuration::days(7);
    let prune = |limit| store.outbox_prune(week_ago, limit);
    assert_eq!(
        prune(1).await.unwrap_or_else(|e| panic!("{e}")),
        1,
        "bounded"
    );
    assert_eq!(prune(1000).await.unwrap_or_else(|e| panic!("{e}")), 1);
    assert_eq!(prune(1000).await.unwrap_or_else(|e| panic!("{e}")), 0);
    let u = store
        .outbox_undelivered()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        u.iter()
            .map(|u| (u.channel.as_str(), u.count))
            .collect::<Vec<_>>(),
        vec![("hook", 1)],
        "the old pending row is kept"
    );
    // The recent delivered and cancelled rows were kept: a later cut-off takes them.
    let recent = store
        .outbox_prune(now + CDuration::minutes(1), 1000)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(recent >= 2, "{recent}");
    store
        .outbox_cancel("old3")
        .await
        .unwrap_or_else(|e| panic!("{e}"));

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
    alerter_with(url, None).await
}

/// [`alerter`] with its outbox in `store` instead.
async fn alerter_with(url: &str, store: Option<Store>) -> Rig {
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
    let store = match store {
        Some(s) => s,
        None => Store::open(&config.daemon.history, None)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
    };
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

// ---------------------------------------------------------------------------------------
// The real binary: kill -9 with a notification pending, and end to end on PostgreSQL.
// ---------------------------------------------------------------------------------------

const BIN: &str = env!("CARGO_BIN_EXE_dbwarden");

struct Daemon {
    child: std::process::Child,
}

impl Daemon {
    fn start(dir: &std::path::Path) -> Daemon {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("daemon.log"))
            .unwrap_or_else(|e| panic!("log file: {e}"));
        let child = std::process::Command::new(BIN)
            .args(["run", "-c", "dbwarden.toml", "--log-level", "info"])
            .current_dir(dir)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("JOURNAL_STREAM")
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {BIN}: {e}"));
        Daemon { child }
    }

    fn kill9(mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn log_of(dir: &std::path::Path) -> String {
    std::fs::read_to_string(dir.join("daemon.log")).unwrap_or_default()
}

async fn count(dir: &std::path::Path, sql: &'static str) -> i64 {
    use sqlx::Connection;
    let path = dir.join("h.db");
    if !path.exists() {
        return 0;
    }
    let Ok(mut c) = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await
    else {
        return 0;
    };
    let n = sqlx::query_scalar::<_, i64>(sql)
        .fetch_one(&mut c)
        .await
        .unwrap_or(0);
    let _ = c.close().await;
    n
}

/// A scratch directory whose `hook-url` (a channel's `url_file`) points at a receiver
/// answering 200.
async fn hooked_dir() -> (tempfile::TempDir, Receiver) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let rx = Receiver::start(vec![Reply::new(200, "ok")]).await;
    std::fs::write(dir.path().join("hook-url"), rx.url("/hook")).unwrap_or_else(|e| panic!("{e}"));
    (dir, rx)
}

/// The requests the receiver got about `target`, as (event, to, key).
fn about(rx: &Receiver, target: &str) -> Vec<(String, String, String)> {
    rx.requests()
        .iter()
        .map(|r| {
            (
                r.json(),
                r.header("Idempotency-Key").unwrap_or("").to_string(),
            )
        })
        .filter(|(j, _)| j["target"] == target)
        .map(|(j, k)| {
            (
                j["event"].as_str().unwrap_or("").to_string(),
                j["status"]
                    .as_str()
                    .or(j["to"].as_str())
                    .unwrap_or("")
                    .to_string(),
                k,
            )
        })
        .collect()
}

#[tokio::test]
async fn a_notification_pending_at_kill_9_is_delivered_after_restart() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let d = dir.path();
    let rx = Receiver::start(vec![Reply::new(200, "ok")]).await;
    let proxy = Proxy::start(rx.addr).await;
    proxy.refuse().await;
    std::fs::write(d.join("hook-url"), format!("http://{}/hook", proxy.addr()))
        .unwrap_or_else(|e| panic!("{e}"));
    // A SQLite target whose file does not exist: CRITICAL (unreachable) from the start,
    // so it is announced as first seen.
    std::fs::write(
        d.join("dbwarden.toml"),
        format!(
            "[daemon]\nhistory = \"sqlite://{d}/h.db\"\nconfirm_rounds = 1\n\
             [alerts]\ngroup_wait = \"0s\"\n\n\
             [[target]]\nname = \"gone\"\nurl = \"sqlite://{d}/missing/gone.db\"\n\n\
             [[job]]\nname = \"health\"\nkind = \"health\"\nschedule = \"@every 1s\"\n\n\
             [[channel]]\nname = \"hook\"\nkind = \"webhook\"\nurl_file = \"{d}/hook-url\"\n",
            d = d.display()
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let daemon = Daemon::start(d);
    eventually(60, "a pending outbox row and its transition", || async {
        count(d, "SELECT COUNT(*) FROM alert_outbox WHERE state = 'pending' AND target = 'gone'")
            .await
            == 1
            && count(
                d,
                "SELECT COUNT(*) FROM health_transitions WHERE target = 'gone' AND check_name IS NULL",
            )
            .await
                >= 1
    })
    .await;
    daemon.kill9();
    assert!(rx.requests().is_empty());
    proxy.resume().await;
    let daemon = Daemon::start(d);
    eventually(60, "delivered after the restart", || async {
        count(
            d,
            "SELECT COUNT(*) FROM alert_outbox WHERE state = 'delivered' AND target = 'gone'",
        )
        .await
            == 1
    })
    .await;
    // Some rounds more: still CRITICAL, nothing new (the restored state knows it).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got = about(&rx, "gone");
    assert_eq!(got.len(), 1, "{got:?}\n{}", log_of(d));
    assert_eq!(got[0].0, "firing");
    drop(daemon);
}

#[tokio::test]
async fn postgres_idle_in_transaction_gives_one_critical_then_one_resolved() {
    let Some(admin) = pg_url() else { return };
    let db = PgDb::create(&admin).await;
    let (dir, rx) = hooked_dir().await;
    let d = dir.path();
    // Short thresholds; checks the shared server fails for reasons of its own (a full
    // disk; `settings`: autovacuum is off there) are off. The session passes
    // WARNING (1 s) on its way to CRITICAL (2 s): group_wait (3 s) makes that one message.
    std::fs::write(
        d.join("dbwarden.toml"),
        format!(
            "[daemon]\nhistory = \"sqlite://{d}/h.db\"\nconfirm_rounds = 1\n\
             [alerts]\ngroup_wait = \"3s\"\ngroup_interval = \"1s\"\n\n\
             [[target]]\nname = \"pg\"\nurl = \"{url}\"\n\
             thresholds = {{ disk_space = {{ enabled = false }}, settings = {{ enabled = false }}, idle_in_transaction = {{ warning = \"1s\", critical = \"2s\" }} }}\n\n\
             [[job]]\nname = \"health\"\nkind = \"health\"\nschedule = \"@every 1s\"\n\n\
             [[channel]]\nname = \"hook\"\nkind = \"webhook\"\nurl_file = \"{d}/hook-url\"\n",
            d = d.display(),
            url = db.url
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let daemon = Daemon::start(d);
    eventually(60, "rounds of pg", || async {
        count(d, "SELECT COUNT(*) FROM check_results WHERE target = 'pg'").await > 40
    })
    .await;
    assert!(
        about(&rx, "pg").is_empty(),
        "first seen OK sends nothing: {:?}",
        about(&rx, "pg")
    );
    let mut session = db.connect().await;
    sqlx::query("BEGIN")
        .execute(&mut session)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    sqlx::query("SELECT 1")
        .execute(&mut session)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eventually(60, "a CRITICAL at the receiver", || async {
        about(&rx, "pg").iter().any(|(_, to, _)| to == "CRITICAL")
    })
    .await;
    // Several more rounds with the session still idle: no repeat.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let got = about(&rx, "pg");
    assert_eq!(
        got.len(),
        1,
        "{got:?}\n{:?}",
        rx.requests().iter().map(|r| r.json()).collect::<Vec<_>>()
    );
    assert_eq!(
        (got[0].0.as_str(), got[0].1.as_str()),
        ("firing", "CRITICAL")
    );
    sqlx::query("ROLLBACK")
        .execute(&mut session)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    drop(session);
    eventually(60, "a RESOLVED at the receiver", || async {
        about(&rx, "pg").iter().any(|(e, _, _)| e == "resolved")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let got = about(&rx, "pg");
    assert_eq!(got.len(), 2, "{got:?}\n{}", log_of(d));
    assert_eq!((got[1].0.as_str(), got[1].1.as_str()), ("resolved", "OK"));
    let body = rx
        .requests()
        .iter()
        .map(|r| r.json())
        .find(|j| j["event"] == "resolved")
        .unwrap_or_default();
    assert!(body.to_string().contains("RESOLVED"), "{body}");
    drop(daemon);
    db.drop_db().await;
}

/// Issue 12: `query_regression` alerts like any other check. The real daemon samples a
/// scratch database on the primary (pg_stat_statements preloaded) every second while an
/// indexed lookup runs; once the statement has a baseline, its index is dropped: one
/// WARNING naming `query_regression` reaches the webhook receiver; the index is rebuilt:
/// one RESOLVED. The sample job has no health round beside it, so nothing else can move
/// the target's status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_regression_fires_and_resolves_through_the_webhook() {
    let Some(admin) = common::url_from_env("DBWARDEN_TEST_PG_PRIMARY_URL") else {
        return;
    };
    let db = PgDb::create(&admin).await;
    let mut c = db.connect().await;
    let exec = |sql: &'static str| sqlx::raw_sql(sql);
    for sql in [
        "CREATE EXTENSION pg_stat_statements",
        "CREATE TABLE reg_t (id int, pad text)",
        "INSERT INTO reg_t SELECT g, repeat('x', 50) FROM generate_series(1, 200000) g",
        "CREATE INDEX reg_t_id ON reg_t (id)",
        "ANALYZE reg_t",
    ] {
        exec(sql)
            .execute(&mut c)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let (dir, rx) = hooked_dir().await;
    let d = dir.path();
    std::fs::write(
        d.join("dbwarden.toml"),
        format!(
            "[daemon]\nhistory = \"sqlite://{d}/h.db\"\nconfirm_rounds = 1\n\
             [alerts]\ngroup_wait = \"0s\"\n\n\
             [[target]]\nname = \"pg\"\nurl = \"{url}\"\n\n\
             [[job]]\nname = \"slow\"\nkind = \"sample\"\nschedule = \"@every 1s\"\n\
             top_n = 100000\nregression_min_calls = 5\n\n\
             [[channel]]\nname = \"hook\"\nkind = \"webhook\"\nurl_file = \"{d}/hook-url\"\n",
            d = d.display(),
            url = db.url
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    // The application: the lookup, over and over, on its own connection.
    let stop = CancellationToken::new();
    let app = {
        let (stop, mut conn) = (stop.clone(), db.connect().await);
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                let q = sqlx::raw_sql("SELECT pad FROM reg_t WHERE id = 4242");
                if let Err(e) = q.execute(&mut conn).await {
                    panic!("workload: {e}");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let daemon = Daemon::start(d);
    let judged = "SELECT COUNT(*) FROM check_results WHERE target = 'pg' \
                  AND check_name = 'query_regression' AND status = 'OK' \
                  AND message NOT LIKE '%(0 with a baseline)%'";
    eventually(90, "samples judged against a baseline", || async {
        count(d, judged).await >= 8
    })
    .await;
    assert!(about(&rx, "pg").is_empty(), "{:?}", about(&rx, "pg"));

    exec("DROP INDEX reg_t_id")
        .execute(&mut c)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eventually(60, "a WARNING at the receiver", || async {
        !about(&rx, "pg").is_empty()
    })
    .await;
    exec("CREATE INDEX reg_t_id ON reg_t (id)")
        .execute(&mut c)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eventually(60, "a RESOLVED at the receiver", || async {
        about(&rx, "pg").iter().any(|(e, _, _)| e == "resolved")
    })
    .await;
    stop.cancel();
    let _ = app.await;
    let got = about(&rx, "pg");
    let bodies: Vec<serde_json::Value> = rx
        .requests()
        .iter()
        .map(|r| r.json())
        .filter(|j| j["target"] == "pg")
        .collect();
    let shape: Vec<(&str, &str)> = got
        .iter()
        .map(|(e, to, _)| (e.as_str(), to.as_str()))
        .collect();
    assert_eq!(
        shape,
        vec![("firing", "WARNING"), ("resolved", "OK")],
        "{bodies:?}\n{}",
        log_of(d)
    );
    for b in &bodies {
        assert_eq!(b["checks"][0]["check"], "query_regression", "{b}");
    }
    assert!(
        bodies[0]["checks"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("baseline")),
        "{}",
        bodies[0]
    );
    drop(daemon);
    drop(c);
    db.drop_db().await;
}

fn cli(dir: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let o = std::process::Command::new(BIN)
        .args(["-c", "dbwarden.toml"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[tokio::test]
async fn silence_cli_and_status_show_what_the_store_holds() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let d = dir.path();
    std::fs::write(
        d.join("dbwarden.toml"),
        format!(
            "[daemon]\nhistory = \"sqlite://{d}/h.db\"\n\n\
             [[target]]\nname = \"orders\"\nurl = \"sqlite://{d}/o.db\"\n",
            d = d.display()
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let (code, out, err) = cli(
        d,
        &[
            "silence", "add", "--target", "orders", "--for", "2h", "--reason", "upgrade",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with("silence 1: target orders silenced until"),
        "{out}"
    );
    let (code, _, err) = cli(
        d,
        &[
            "silence", "add", "-t", "nope", "--for", "1h", "--reason", "x",
        ],
    );
    assert_eq!(code, 2);
    assert!(err.contains("no target named \"nope\""), "{err}");
    let (code, _, err) = cli(
        d,
        &[
            "silence", "add", "-t", "orders", "--for", "90d", "--reason", "x",
        ],
    );
    assert_eq!(code, 2, "{err}");
    let (code, out, _) = cli(d, &["silence", "list"]);
    assert_eq!(code, 0);
    assert!(out.contains("orders") && out.contains("upgrade"), "{out}");

    // An undelivered notification shows in `status`, per channel with its last error.
    let store = Store::open(
        &SecretUrl::new(format!("sqlite://{}/h.db", d.display())),
        None,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    store
        .outbox_insert(&[row("k1", "mail")], "x:1", Utc::now())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    store
        .outbox_failed(
            "k1",
            "mail",
            3,
            "SMTP 535 authentication failed",
            Utc::now(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    store.close(Duration::from_secs(5)).await;
    let (code, out, err) = cli(d, &["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("undelivered notifications: 1"), "{out}");
    assert!(out.contains("mail") && out.contains("SMTP 535"), "{out}");
    assert!(out.contains("active silences: 1"), "{out}");
    let (code, out, _) = cli(d, &["status", "--format", "json"]);
    assert_eq!(code, 0);
    let j: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(j["undelivered_total"], 1);

    let (code, out, _) = cli(d, &["silence", "remove", "1"]);
    assert_eq!((code, out.trim()), (0, "silence 1 removed"));
    let (code, _, _) = cli(d, &["silence", "remove", "1"]);
    assert_eq!(code, 1);
    let (_, out, _) = cli(d, &["silence", "list"]);
    assert_eq!(out.trim(), "no active silences");
}

/// A silence stored in the history mutes the alerter (it reads silences from the store).
#[tokio::test]
async fn a_stored_silence_mutes_notifications() {
    let rx = Receiver::start(vec![Reply::new(200, "ok")]).await;
    let rig = alerter(&rx.url("/hook")).await;
    rig.store
        .silence_add("db", Utc::now() + CDuration::hours(1), "upgrade", "t")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // The alerter reads silences at start and every 15 s: wait for the next read.
    tokio::time::sleep(Duration::from_secs(16)).await;
    rig.change(Status::Ok, Status::Critical);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(rx.requests().is_empty(), "{:?}", rx.requests());
    assert_eq!(
        rig.undelivered().await,
        0,
        "nothing written for a silenced target"
    );
    rig.stop().await;
}

#[test]
fn the_self_targets_checks_are_documented() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .unwrap_or_else(|e| panic!("README.md: {e}"));
    for name in dbwarden::alerts::self_target::check_names() {
        assert!(
            readme.contains(&format!("| `{name}` | dbwarden (self)")),
            "README Checks table lacks {name}"
        );
    }
}

/// While the history store is down a notification is still sent (from memory); its outbox
/// row is written, as delivered, once the store answers again.
#[tokio::test]
async fn with_the_store_down_notifications_are_sent_and_written_later() {
    use sqlx::Connection;
    let Some(admin) = pg_url() else { return };
    let db = PgDb::create(&admin).await;
    let (proxy, via_proxy) = Proxy::for_url(&db.url).await;
    let store = Store::open(&SecretUrl::new(via_proxy), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let rx = Receiver::start(vec![Reply::new(200, "ok")]).await;
    let rig = alerter_with(&rx.url("/hook"), Some(store)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.refuse().await;
    rig.change(Status::Ok, Status::Critical);
    common::wait_until(30, "the notification is received", || {
        !rx.requests().is_empty()
    })
    .await;
    let rows = |state: &'static str| {
        let url = db.url.clone();
        async move {
            let mut c = sqlx::PgConnection::connect(&url)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM alert_outbox WHERE state = $1")
                .bind(state)
                .fetch_one(&mut c)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let _ = c.close().await;
            n
        }
    };
    assert_eq!(
        rows("pending").await + rows("delivered").await,
        0,
        "store is down"
    );
    proxy.resume().await;
    eventually(60, "the row is written as delivered", || async {
        rows("delivered").await == 1
    })
    .await;
    assert_eq!(rows("pending").await, 0);
    assert_eq!(rx.requests().len(), 1);
    rig.stop().await;
    db.drop_db().await;
}

#[test]
fn the_self_targets_name_is_reserved() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        dir.path().join("dbwarden.toml"),
        format!(
            "[daemon]\nhistory = \"sqlite://{d}/h.db\"\n\n[[target]]\nname = \"dbwarden\"\nurl = \"sqlite://{d}/x.db\"\n",
            d = dir.path().display()
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let (code, _, err) = cli(dir.path(), &["config", "check"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("target[0].name") && err.contains("built-in target"),
        "{err}"
    );
}
