//! Channel send numbers. Run with `cargo bench --bench alert_send`.
//!
//! 1. Latency of one webhook send (render, sign, POST, 200) to a receiver on loopback:
//!    p50/p99/max over 1,000 sequential sends (the channel's share of "believed transition
//!    to the receiver's 200").
//! 2. Throughput: 1,000 notifications sent by 16 concurrent senders, as a delivery loop
//!    draining a backlog would.
//! 3. The same two for Slack (Block Kit rendering of a 10-check notification).
//!
//! The receiver (tests/common/receiver.rs) answers each request on its own connection
//! (`Connection: close`), so every send pays a TCP connect: a pessimistic case.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench may unwrap

#[path = "../tests/common/receiver.rs"]
#[allow(dead_code)]
mod receiver;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use dbwarden::alerts::channel::Channels;
use dbwarden::alerts::{AlertCheck, AlertEvent, Deliver, Notification};
use dbwarden::health::{Status, Unit};
use receiver::{Receiver, Reply};

const N: usize = 1000;
const CONCURRENCY: usize = 16;

fn notification(i: usize) -> Notification {
    let now = Utc::now();
    Notification {
        key: format!("orders-{i}"),
        agent: "db1".into(),
        target: "orders".into(),
        engine: "postgres".into(),
        event: AlertEvent::Firing,
        from: Some(Status::Ok),
        to: Status::Critical,
        at: now,
        since: now,
        summary: "10 checks failing".into(),
        checks: (0..10)
            .map(|c| AlertCheck {
                check: format!("check_{c}"),
                status: Status::Critical,
                value: Some(4000.0),
                unit: Unit::Seconds,
                warning: Some(300.0),
                critical: Some(3600.0),
                message: "pid 42 open for 1h 6m: UPDATE orders SET status = 'x' WHERE id = 1"
                    .into(),
                subject: Some("pid 42".into()),
            })
            .collect(),
        note: None,
    }
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

async fn run(kind: &str, rx: &Receiver, dir: &std::path::Path) {
    let url = dir.join(format!("{kind}-url"));
    std::fs::write(&url, rx.url("/hook/secret-token")).unwrap();
    let secret = dir.join("hmac");
    std::fs::write(&secret, "bench-secret").unwrap();
    let extra = if kind == "webhook" {
        format!("hmac_secret_file = \"{}\"\n", secret.display())
    } else {
        String::new()
    };
    let path = dir.join(format!("{kind}.toml"));
    std::fs::write(
        &path,
        format!(
            "[daemon]\nhistory = \"sqlite://{}/h.db\"\n\n[[channel]]\nname = \"c\"\nkind = \"{kind}\"\nurl_file = \"{}\"\n{extra}",
            dir.display(),
            url.display()
        ),
    )
    .unwrap();
    let config = dbwarden::config::load(&path).unwrap();
    let ch = Arc::new(Channels::from_config(&config).unwrap());

    for i in 0..20 {
        ch.send("c", &notification(i)).await.unwrap();
    }
    let mut lat = Vec::with_capacity(N);
    for i in 0..N {
        let n = notification(i);
        let t = Instant::now();
        ch.send("c", &n).await.unwrap();
        lat.push(t.elapsed());
    }
    lat.sort();
    println!(
        "{kind}: one send to a loopback receiver, {N} sequential: p50 {:?}, p99 {:?}, max {:?}",
        pct(&lat, 0.50),
        pct(&lat, 0.99),
        lat[lat.len() - 1]
    );

    let t = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let ch = ch.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= N {
                    break;
                }
                ch.send("c", &notification(i)).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    println!(
        "{kind}: {N} notifications by {CONCURRENCY} concurrent senders: {:?}",
        t.elapsed()
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let rx = Receiver::start(vec![Reply::new(200, "ok")]).await;
        run("webhook", &rx, dir.path()).await;
        run("slack", &rx, dir.path()).await;
        println!("receiver got {} requests", rx.requests().len());
    });
}
