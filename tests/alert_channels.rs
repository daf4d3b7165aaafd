//! Alert channels against real receivers on loopback: the generic webhook and Slack against
//! an HTTP server spawned here (tests/common/receiver.rs), email against a real SMTP server
//! (Python aiosmtpd), and `dbwarden alert test` through the real binary.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::receiver::{Receiver, Reply};
use dbwarden::alerts::channel::Channels;
use dbwarden::alerts::{AlertCheck, AlertEvent, Deliver, DeliveryError, Notification};
use dbwarden::health::{Status, Unit};
use hmac::{Hmac, Mac};
use sha2::Sha256;

const WEBHOOK_TOKEN: &str = "T0KEN9sEcReTpAtH";
const HMAC_SECRET: &str = "hm4c-s3cret-value";

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"))
}

/// Writes a config with the given `[[channel]]` TOML and loads it.
fn config(dir: &Path, channels: &str) -> (PathBuf, dbwarden::config::Config) {
    let path = dir.join("dbwarden.toml");
    let text = format!(
        "[daemon]\nhistory = \"sqlite://{}/h.db\"\npublic_url = \"https://dbw.example/\"\n\n{channels}",
        dir.display()
    );
    std::fs::write(&path, text).unwrap();
    let c = dbwarden::config::load(&path).unwrap_or_else(|e| panic!("config: {e}"));
    (path, c)
}

fn write(dir: &Path, name: &str, content: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p.display().to_string()
}

fn notification(event: AlertEvent, from: Option<Status>, to: Status) -> Notification {
    let at = DateTime::parse_from_rfc3339("2026-11-30T14:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    Notification {
        key: "orders-1764511200-ok-critical".into(),
        agent: "db1".into(),
        target: "orders".into(),
        engine: "postgres".into(),
        event,
        from,
        to,
        at,
        since: at,
        summary: "2 checks failing".into(),
        checks: vec![
            AlertCheck {
                check: "long_transactions".into(),
                status: Status::Critical,
                value: Some(4000.0),
                unit: Unit::Seconds,
                warning: Some(300.0),
                critical: Some(3600.0),
                message: "pid 42 open for 1h 6m: UPDATE orders SET …".into(),
                subject: Some("pid 42".into()),
            },
            AlertCheck {
                check: "connections".into(),
                status: Status::Warning,
                value: Some(85.0),
                unit: Unit::Percent,
                warning: Some(80.0),
                critical: Some(95.0),
                message: "85% of max_connections in use".into(),
                subject: None,
            },
        ],
        note: None,
    }
}

fn firing() -> Notification {
    notification(AlertEvent::Firing, Some(Status::Ok), Status::Critical)
}

/// A webhook channel whose URL (with a token in its path) and HMAC secret come from files.
async fn webhook_setup(replies: Vec<Reply>) -> (Receiver, tempfile::TempDir, Channels) {
    let rx = Receiver::start(replies).await;
    let dir = tmp();
    let url_file = write(
        dir.path(),
        "url",
        &format!("{}\n", rx.url(&format!("/hooks/{WEBHOOK_TOKEN}"))),
    );
    let secret_file = write(dir.path(), "hmac", &format!("{HMAC_SECRET}\n\n"));
    let (_, c) = config(
        dir.path(),
        &format!(
            "[[channel]]\nname = \"hook\"\nkind = \"webhook\"\nurl_file = \"{url_file}\"\n\
             hmac_secret_file = \"{secret_file}\"\ntimeout = \"3s\"\n\
             headers = {{ X-Env = \"prod\", Authorization = \"Bearer hdr-secret-1\" }}\n"
        ),
    );
    let ch = Channels::from_config(&c).unwrap();
    (rx, dir, ch)
}

fn assert_no_secret(text: &str) {
    for s in [WEBHOOK_TOKEN, HMAC_SECRET, "hdr-secret-1", "smtp-pa55word"] {
        assert!(!text.contains(s), "a secret leaked: {text}");
    }
}

#[tokio::test]
async fn webhook_posts_the_versioned_document_with_key_headers_and_a_valid_signature() {
    let (rx, _dir, ch) = webhook_setup(vec![Reply::new(200, "ok")]).await;
    let n = firing();
    ch.send("hook", &n).await.unwrap();
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, format!("/hooks/{WEBHOOK_TOKEN}"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("idempotency-key"), Some(n.key.as_str()));
    assert_eq!(r.header("x-env"), Some("prod"));
    assert_eq!(r.header("authorization"), Some("Bearer hdr-secret-1"));

    let v = r.json();
    assert_eq!(v["version"], 1);
    assert_eq!(v["event"], "firing");
    assert_eq!(v["target"], "orders");
    assert_eq!(v["agent"], "db1");
    assert_eq!(v["engine"], "postgres");
    assert_eq!(v["previous_status"], "OK");
    assert_eq!(v["status"], "CRITICAL");
    assert_eq!(v["key"], n.key.as_str());
    assert_eq!(v["text"], "CRITICAL orders@db1: 2 checks failing");
    assert_eq!(v["at"], "2026-11-30T14:00:00Z");
    assert_eq!(v["since"], "2026-11-30T14:00:00Z");
    assert_eq!(v["url"], "https://dbw.example/");
    assert_eq!(v["checks"].as_array().map(Vec::len), Some(2));
    assert_eq!(v["checks"][0]["check"], "long_transactions");
    assert_eq!(v["checks"][0]["status"], "CRITICAL");
    assert_eq!(v["checks"][0]["critical"], 3600.0);
    assert_eq!(v["checks"][1]["unit"], "percent");

    // The signature, verified as a receiver would: HMAC-SHA256(secret, "<t>." + raw body).
    let sig = r.header("x-dbwarden-signature").expect("signature header");
    let (t, v1) = sig
        .split_once(',')
        .and_then(|(t, v)| Some((t.strip_prefix("t=")?, v.strip_prefix("v1=")?)))
        .unwrap_or_else(|| panic!("signature format: {sig}"));
    let t: i64 = t.parse().unwrap();
    assert!((Utc::now().timestamp() - t).abs() < 300, "timestamp {t}");
    let mut mac = Hmac::<Sha256>::new_from_slice(HMAC_SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(&r.body);
    mac.verify_slice(&hex::decode(v1).unwrap())
        .unwrap_or_else(|_| panic!("signature does not verify: {sig}"));
}

#[tokio::test]
async fn webhook_resolved_says_resolved() {
    let (rx, _dir, ch) = webhook_setup(vec![Reply::new(204, "")]).await;
    let n = notification(AlertEvent::Resolved, Some(Status::Critical), Status::Ok);
    ch.send("hook", &n).await.unwrap();
    let v = rx.requests()[0].json();
    assert_eq!(v["event"], "resolved");
    assert_eq!(v["previous_status"], "CRITICAL");
    assert_eq!(v["status"], "OK");
    assert!(v["text"].as_str().unwrap().contains("RESOLVED"), "{v}");
}

#[tokio::test]
async fn webhook_failures_are_classified_and_never_show_secrets() {
    let cases: Vec<(Reply, &str)> = vec![
        (Reply::new(500, "boom"), "retry"),
        (
            Reply::new(503, "busy").header("Retry-After", "17"),
            "retry17",
        ),
        (
            Reply::new(429, "slow down").header("Retry-After", "120"),
            "retry120",
        ),
        (
            Reply::new(400, &format!("bad payload for /hooks/{WEBHOOK_TOKEN}")),
            "permanent",
        ),
        (Reply::new(404, "no such hook"), "permanent"),
    ];
    for (reply, want) in cases {
        let status = reply.status;
        let (_rx, _dir, ch) = webhook_setup(vec![reply]).await;
        let e = ch.send("hook", &firing()).await.unwrap_err();
        let shown = format!("{e} {e:?} {ch:?}");
        assert_no_secret(&shown);
        assert!(shown.contains(&status.to_string()), "{shown}");
        match (want, &e) {
            ("retry", DeliveryError::Retry { after: None, .. }) => {}
            ("retry17", DeliveryError::Retry { after, .. }) => {
                assert_eq!(*after, Some(Duration::from_secs(17)))
            }
            ("retry120", DeliveryError::Retry { after, .. }) => {
                assert_eq!(*after, Some(Duration::from_secs(120)))
            }
            ("permanent", DeliveryError::Permanent { .. }) => {}
            _ => panic!("HTTP {status}: wanted {want}, got {e:?}"),
        }
    }
}

#[tokio::test]
async fn webhook_network_errors_are_retryable_and_hide_the_url() {
    // A port nothing listens on: bind, note the port, close.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = tmp();
    let url_file = write(
        dir.path(),
        "url",
        &format!("http://127.0.0.1:{port}/hooks/{WEBHOOK_TOKEN}"),
    );
    let (_, c) = config(
        dir.path(),
        &format!("[[channel]]\nname = \"hook\"\nkind = \"webhook\"\nurl_file = \"{url_file}\"\n"),
    );
    let ch = Channels::from_config(&c).unwrap();
    let e = ch.send("hook", &firing()).await.unwrap_err();
    assert!(matches!(e, DeliveryError::Retry { .. }), "{e:?}");
    let shown = format!("{e} {e:?}");
    assert!(shown.contains("connect"), "{shown}");
    assert_no_secret(&shown);
}

#[tokio::test]
async fn a_missing_secret_file_is_permanent_and_names_the_file() {
    let (_rx, dir, ch) = webhook_setup(vec![Reply::new(200, "ok")]).await;
    std::fs::remove_file(dir.path().join("hmac")).unwrap();
    let e = ch.send("hook", &firing()).await.unwrap_err();
    assert!(matches!(e, DeliveryError::Permanent { .. }), "{e:?}");
    assert!(e.to_string().contains("hmac"), "{e}");
    let e = ch.send("nope", &firing()).await.unwrap_err();
    assert!(matches!(e, DeliveryError::Permanent { .. }), "{e:?}");
}

async fn slack_setup(replies: Vec<Reply>) -> (Receiver, tempfile::TempDir, Channels) {
    let rx = Receiver::start(replies).await;
    let dir = tmp();
    let url_file = write(
        dir.path(),
        "slack-url",
        &rx.url(&format!("/services/T000/B000/{WEBHOOK_TOKEN}")),
    );
    let (_, c) = config(
        dir.path(),
        &format!("[[channel]]\nname = \"ops\"\nkind = \"slack\"\nurl_file = \"{url_file}\"\n"),
    );
    let ch = Channels::from_config(&c).unwrap();
    (rx, dir, ch)
}

#[tokio::test]
async fn slack_gets_fallback_text_and_blocks() {
    let (rx, _dir, ch) = slack_setup(vec![Reply::new(200, "ok")]).await;
    ch.send("ops", &firing()).await.unwrap();
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].path, format!("/services/T000/B000/{WEBHOOK_TOKEN}"));
    let v = reqs[0].json();
    assert!(
        v["text"]
            .as_str()
            .unwrap()
            .contains("CRITICAL orders@db1: 2 checks failing"),
        "{v}"
    );
    let blocks = v["blocks"].as_array().unwrap();
    assert_eq!(blocks[0]["type"], "header");
    assert_eq!(blocks[0]["text"]["text"], "🔴 CRITICAL orders@db1");
    let all = serde_json::to_string(blocks).unwrap();
    assert!(all.contains("long_transactions"), "{all}");
    assert!(all.contains("(warning 5min, critical 60min)"), "{all}");
    assert!(all.contains("85%"), "{all}");
    assert!(
        all.contains("<https://dbw.example/|"),
        "dashboard link: {all}"
    );

    // RESOLVED says so in the fallback and the header.
    ch.send(
        "ops",
        &notification(AlertEvent::Resolved, Some(Status::Critical), Status::Ok),
    )
    .await
    .unwrap();
    let v = rx.requests()[1].json();
    assert!(v["text"].as_str().unwrap().contains("RESOLVED"), "{v}");
    assert!(
        v["blocks"][0]["text"]["text"]
            .as_str()
            .unwrap()
            .contains("RESOLVED")
    );
}

#[tokio::test]
async fn slack_rate_limit_and_errors_are_classified() {
    // 429 with Retry-After in seconds, and as an HTTP date (~1 minute ahead).
    let (_rx, _dir, ch) = slack_setup(vec![
        Reply::new(429, "rate_limited").header("Retry-After", "30"),
    ])
    .await;
    match ch.send("ops", &firing()).await {
        Err(DeliveryError::Retry { after, reason }) => {
            assert_eq!(after, Some(Duration::from_secs(30)));
            assert!(reason.contains("429"), "{reason}");
            assert_no_secret(&reason);
        }
        other => panic!("{other:?}"),
    }
    let date = (Utc::now() + chrono::Duration::seconds(90))
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    let (_rx, _dir, ch) = slack_setup(vec![
        Reply::new(429, "rate_limited").header("Retry-After", &date),
    ])
    .await;
    match ch.send("ops", &firing()).await {
        Err(DeliveryError::Retry {
            after: Some(after), ..
        }) => assert!(
            after > Duration::from_secs(30) && after <= Duration::from_secs(90),
            "{after:?}"
        ),
        other => panic!("{other:?}"),
    }
    let (_rx, _dir, ch) = slack_setup(vec![Reply::new(500, "oops")]).await;
    assert!(matches!(
        ch.send("ops", &firing()).await,
        Err(DeliveryError::Retry { .. })
    ));
    let (_rx, _dir, ch) = slack_setup(vec![Reply::new(400, "invalid_blocks")]).await;
    match ch.send("ops", &firing()).await {
        Err(DeliveryError::Permanent { reason }) => {
            assert!(
                reason.contains("400") && reason.contains("invalid_blocks"),
                "{reason}"
            );
            assert_no_secret(&reason);
        }
        other => panic!("{other:?}"),
    }
}
