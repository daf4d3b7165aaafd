//! Alert delivery numbers. Run with `cargo bench --bench alerts` (optionally with
//! DBWARDEN_BENCH_PG_URL=postgres://… for the outbox write on PostgreSQL).
//!
//! 1. Latency from a believed transition (published on the event stream, as a health round
//!    does) to the receiver answering 200, through the alerter, the state machine
//!    (`group_wait = 0`), the outbox and the real webhook channel, on loopback. Budget:
//!    p99 ≤ 100 ms.
//! 2. Drain: 1,000 pending notifications left in the outbox (as after a restart) delivered
//!    to a local receiver. Budget: ≤ 5 s.
//! 3. The outbox write of one notification (SQLite; PostgreSQL when a URL is given). A round
//!    never waits for it (it publishes and goes on; the alerter writes), so this is the
//!    alerter's cost per notification. Budget: ≤ 1 ms added to a round.

#[path = "../tests/common/receiver.rs"]
#[allow(dead_code)]
mod receiver;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use dbwarden::alerts::channel::Channels;
use dbwarden::alerts::deliver::Health;
use dbwarden::alerts::run::{Control, LiveChannels};
use dbwarden::config::SecretUrl;
use dbwarden::events::{Event, Events};
use dbwarden::health::{CheckResult, Scope, Status, Unit};
use dbwarden::store::{OutboxRow, Store};
use receiver::{Receiver, Reply};
use tokio_util::sync::CancellationToken;

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
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
        subject: None,
        scope: Scope::Database,
    }
}

fn row(key: String) -> OutboxRow {
    let n = dbwarden::alerts::Notification {
        key: key.clone(),
        agent: "bench".into(),
        target: "db".into(),
        engine: "postgres".into(),
        event: dbwarden::alerts::AlertEvent::Firing,
        from: Some(Status::Ok),
        to: Status::Critical,
        at: Utc::now(),
        since: Utc::now(),
        summary: "1 check failing".into(),
        checks: vec![],
        note: None,
    };
    OutboxRow {
        key,
        channel: "hook".into(),
        agent: "old-agent".into(),
        target: "db".into(),
        event: "firing".into(),
        created_at: Utc::now(),
        due_at: Utc::now(),
        payload: serde_json::to_string(&n).unwrap_or_default(),
        attempts: 0,
        next_at: Utc::now(),
    }
}

struct Alerter {
    events: Events,
    _control: tokio::sync::mpsc::UnboundedSender<Control>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    store: Store,
}

async fn alerter(dir: &std::path::Path, url: &str) -> Alerter {
    std::fs::write(dir.join("hook-url"), url).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        dir.join("dbwarden.toml"),
        format!(
            "[daemon]\nhistory = \"sqlite://{d}/h.db\"\n[alerts]\ngroup_wait = \"0s\"\ngroup_interval = \"1s\"\n\n\
             [[target]]\nname = \"db\"\nurl = \"sqlite://{d}/db.db\"\n\n\
             [[channel]]\nname = \"hook\"\nkind = \"webhook\"\nurl_file = \"{d}/hook-url\"\n",
            d = dir.display()
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let config = Arc::new(
        dbwarden::config::load(&dir.join("dbwarden.toml")).unwrap_or_else(|e| panic!("{e}")),
    );
    let store = Store::open(&config.daemon.history, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let channels = Channels::from_config(&config).unwrap_or_else(|e| panic!("{e}"));
    let events = Events::default();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let stop = CancellationToken::new();
    let task = tokio::spawn(dbwarden::alerts::run::run(
        Arc::new(LiveChannels::new(channels)),
        events.subscribe("alerts"),
        Some(store.clone()),
        config,
        "bench".into(),
        rx,
        Health::default(),
        stop.clone(),
    ));
    let _ = tx.send(Control::Restored(vec![("db".into(), Status::Ok)]));
    Alerter {
        events,
        _control: tx,
        stop,
        task,
        store,
    }
}

async fn latency() {
    const N: usize = 150;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let rx = Receiver::start(vec![Reply::new(200, "ok")]).await;
    let a = alerter(dir.path(), &rx.url("/hook")).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut ms = Vec::with_capacity(N);
    let mut status = Status::Ok;
    for i in 0..N {
        let to = if status == Status::Ok {
            Status::Critical
        } else {
            Status::Ok
        };
        let ts = Utc::now();
        let start = Instant::now();
        a.events.publish(Event::Checks {
            ts,
            target: "db".into(),
            run_id: "r".into(),
            results: vec![check(to)],
        });
        a.events.publish(Event::Transition {
            ts,
            target: "db".into(),
            check: None,
            from: status,
            to,
            message: "m".into(),
        });
        while rx.requests().len() <= i {
            tokio::task::yield_now().await;
            if start.elapsed() > Duration::from_secs(10) {
                panic!("notification {i} never arrived");
            }
        }
        // The receiver has the request; its 200 is written right after.
        ms.push(start.elapsed().as_secs_f64() * 1000.0);
        status = to;
        // Past group_interval, so every change is sent at once (group_wait 0).
        tokio::time::sleep(Duration::from_millis(1010)).await;
    }
    println!(
        "transition -> receiver (group_wait 0, loopback webhook): n={N} p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        pct(&mut ms, 0.5),
        pct(&mut ms, 0.99),
        pct(&mut ms, 1.0)
    );
    a.stop.cancel();
    let _ = a.task.await;
    a.store.close(Duration::from_secs(5)).await;
}

async fn drain() {
    const N: usize = 1000;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let rx = Receiver::start(vec![Reply::new(200, "ok")]).await;
    // Leave 1,000 pending rows, claimed by a dead process whose lease has ended.
    {
        let url = SecretUrl::new(format!("sqlite://{}/h.db", dir.path().display()));
        let store = Store::open(&url, None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let rows: Vec<OutboxRow> = (0..N).map(|i| row(format!("k{i:05}"))).collect();
        store
            .outbox_insert(
                &rows,
                "old-agent:1",
                Utc::now() - chrono::Duration::seconds(1),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        store.close(Duration::from_secs(5)).await;
    }
    let start = Instant::now();
    let a = alerter(dir.path(), &rx.url("/hook")).await;
    while rx.requests().len() < N {
        tokio::time::sleep(Duration::from_millis(5)).await;
        if start.elapsed() > Duration::from_secs(60) {
            panic!("drained only {}", rx.requests().len());
        }
    }
    let received = start.elapsed();
    loop {
        let left: i64 = a
            .store
            .outbox_undelivered()
            .await
            .map(|u| u.iter().map(|u| u.count).sum())
            .unwrap_or(-1);
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!(
        "drain {N} pending: all received in {:.2} s, all marked delivered in {:.2} s (requests {})",
        received.as_secs_f64(),
        start.elapsed().as_secs_f64(),
        rx.requests().len()
    );
    a.stop.cancel();
    let _ = a.task.await;
    a.store.close(Duration::from_secs(5)).await;
}

async fn write_cost(url: &str, label: &str) {
    const N: usize = 500;
    let store = Store::open(&SecretUrl::new(url), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let run = format!("{:x}", rand_suffix());
    let mut ms = Vec::with_capacity(N);
    for i in 0..N {
        let r = row(format!("w{run}-{i}"));
        let t = Instant::now();
        store
            .outbox_insert(&[r], "bench:1", Utc::now())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    println!(
        "outbox write of one notification ({label}): n={N} p50 {:.3} ms, p99 {:.3} ms",
        pct(&mut ms, 0.5),
        pct(&mut ms, 0.99)
    );
    // Publishing, what a round does, for comparison.
    let events = Events::default();
    let _sub = events.subscribe("x");
    let t = Instant::now();
    for _ in 0..N {
        events.publish(Event::Transition {
            ts: Utc::now(),
            target: "db".into(),
            check: None,
            from: Status::Ok,
            to: Status::Critical,
            message: "m".into(),
        });
    }
    println!(
        "publishing a transition (what the round pays): {:.4} ms each",
        t.elapsed().as_secs_f64() * 1000.0 / N as f64
    );
    store.close(Duration::from_secs(5)).await;
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    rt.block_on(async {
        drain().await;
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        write_cost(&format!("sqlite://{}/w.db", dir.path().display()), "SQLite").await;
        if let Ok(pg) = std::env::var("DBWARDEN_BENCH_PG_URL") {
            write_cost(&pg, "PostgreSQL").await;
        }
        latency().await;
    });
}
