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

// ---------------------------------------------------------------------------------------
// Email against a real SMTP server (aiosmtpd).
// ---------------------------------------------------------------------------------------

const SMTP_PASSWORD: &str = "smtp-pa55word";

/// A Python that can import aiosmtpd: $DBWARDEN_TEST_PYTHON (set by .ci/run), else
/// `python3`, else `/usr/bin/python3` (Debian's python3-aiosmtpd).
fn python() -> Option<String> {
    let candidates: Vec<String> = match std::env::var("DBWARDEN_TEST_PYTHON") {
        Ok(p) if !p.is_empty() => vec![p],
        _ => vec!["python3".into(), "/usr/bin/python3".into()],
    };
    let found = candidates.into_iter().find(|p| {
        std::process::Command::new(p)
            .args(["-c", "import aiosmtpd"])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if found.is_none() {
        common::skip("no python3 with aiosmtpd (apt-get install python3-aiosmtpd)");
    }
    found
}

struct Smtp {
    child: std::process::Child,
    port: u16,
    out: tempfile::TempDir,
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Smtp {
    /// Starts the receiver; `tls` is `Some((cert, key))` for starttls/implicit.
    fn start(
        python: &str,
        mode: &str,
        tls: Option<(&Path, &Path)>,
        auth: Option<(&str, &str)>,
    ) -> Smtp {
        use std::io::BufRead;
        let out = tmp();
        let mut cmd = std::process::Command::new(python);
        cmd.arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/smtp_receiver.py"
        ))
        .arg(out.path())
        .arg(mode);
        match tls {
            Some((c, k)) => cmd.arg(c).arg(k),
            None => cmd.arg("-").arg("-"),
        };
        if let Some((u, p)) = auth {
            cmd.arg(u).arg(p);
        }
        let mut child = cmd
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {python}: {e}"));
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("smtp_receiver.py printed {line:?}, not a port"));
        Smtp { child, port, out }
    }

    fn messages(&self) -> Vec<serde_json::Value> {
        let mut names: Vec<_> = std::fs::read_dir(self.out.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("msg-"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|n| {
                serde_json::from_slice(&std::fs::read(self.out.path().join(n)).unwrap()).unwrap()
            })
            .collect()
    }
}

/// A private CA and a server certificate for localhost/127.0.0.1 it signed (openssl CLI),
/// as (ca.pem, cert.pem, key.pem).
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let o = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap_or_else(|e| panic!("openssl: {e}"));
        assert!(
            o.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=dbwarden test CA",
        ],
    ]
    .concat());
    run(&[
        &["req"][..],
        &ec,
        &[
            "-keyout",
            "key.pem",
            "-out",
            "leaf.csr",
            "-subj",
            "/CN=localhost",
        ],
    ]
    .concat());
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "cert.pem",
        "-days",
        "2",
        "-extfile",
        "leaf.ext",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    )
}

/// An email channel named "mail" to two recipients; `extra` adds keys.
fn email_channels(dir: &Path, smtp_url: &str, extra: &str) -> Channels {
    let (_, c) = config(
        dir,
        &format!(
            "[[channel]]\nname = \"mail\"\nkind = \"email\"\nsmtp_url = \"{smtp_url}\"\n\
             from = \"dbwarden <dbwarden@example.com>\"\nto = [\"dba@example.com\", \"oncall@example.org\"]\n\
             timeout = \"5s\"\n{extra}"
        ),
    );
    Channels::from_config(&c).unwrap()
}

#[tokio::test]
async fn email_over_plain_smtp_has_subject_ids_recipients_and_the_facts() {
    let Some(py) = python() else { return };
    let smtp = Smtp::start(&py, "plain", None, None);
    let dir = tmp();
    let ch = email_channels(
        dir.path(),
        &format!("smtp://127.0.0.1:{}", smtp.port),
        "tls = \"none\"\n",
    );
    let n = firing();
    ch.send("mail", &n).await.unwrap();
    let msgs = smtp.messages();
    assert_eq!(msgs.len(), 1);
    let m = &msgs[0];
    assert_eq!(m["tls"], false);
    assert_eq!(m["mail_from"], "dbwarden@example.com");
    assert_eq!(
        m["rcpt_tos"],
        serde_json::json!(["dba@example.com", "oncall@example.org"])
    );
    let h = &m["headers"];
    assert_eq!(
        h["subject"],
        "[dbwarden] CRITICAL orders@db1: 2 checks failing"
    );
    assert_eq!(h["message-id"], "<orders-1764511200-ok-critical@db1>");
    assert!(
        h["to"].as_str().unwrap().contains("oncall@example.org"),
        "{h}"
    );
    assert!(
        h["content-type"]
            .as_str()
            .unwrap()
            .starts_with("text/plain"),
        "{h}"
    );
    assert!(h["date"].is_string(), "{h}");
    let body = m["body"].as_str().unwrap();
    for fact in [
        "CRITICAL orders@db1: 2 checks failing",
        "Status:  CRITICAL (was OK)",
        "Agent:   db1",
        "long_transactions [pid 42]: CRITICAL 66.7min (warning 5min, critical 60min)",
        "pid 42 open for 1h 6m: UPDATE orders SET …",
        "connections: WARNING 85% (warning 80%, critical 95%)",
        "Dashboard: https://dbw.example/",
        "orders-1764511200-ok-critical",
    ] {
        assert!(body.contains(fact), "body lacks {fact:?}:\n{body}");
    }

    ch.send(
        "mail",
        &notification(AlertEvent::Resolved, Some(Status::Critical), Status::Ok),
    )
    .await
    .unwrap();
    let m = &smtp.messages()[1];
    assert_eq!(
        m["headers"]["subject"],
        "[dbwarden] RESOLVED orders@db1: OK (was CRITICAL)"
    );
    assert!(
        m["body"]
            .as_str()
            .unwrap()
            .contains("Checks that were failing")
    );
}

#[tokio::test]
async fn email_with_starttls_and_auth_reaches_the_server_and_a_bad_password_is_permanent() {
    let Some(py) = python() else { return };
    let certs = tmp();
    let (ca, cert, key) = certificates(certs.path());
    let smtp = Smtp::start(
        &py,
        "starttls",
        Some((&cert, &key)),
        Some(("alerts", SMTP_PASSWORD)),
    );
    let dir = tmp();
    let pw = write(dir.path(), "smtp-pw", &format!("{SMTP_PASSWORD}\n"));
    let url = format!("smtp://localhost:{}", smtp.port);
    let ch = email_channels(
        dir.path(),
        &url,
        &format!(
            "username = \"alerts\"\npassword_file = \"{pw}\"\ntls_ca_file = \"{}\"\n",
            ca.display()
        ),
    );
    ch.send("mail", &firing()).await.unwrap();
    let m = &smtp.messages()[0];
    assert_eq!(m["tls"], true, "{m}");
    assert_eq!(m["login"], "alerts");
    assert_eq!(
        m["headers"]["subject"],
        "[dbwarden] CRITICAL orders@db1: 2 checks failing"
    );

    // A wrong password: refused (5xx), permanent, the password nowhere in the error.
    let wrong = write(dir.path(), "wrong-pw", "not-the-smtp-pa55word");
    let ch = email_channels(
        dir.path(),
        &url,
        &format!(
            "username = \"alerts\"\npassword_file = \"{wrong}\"\ntls_ca_file = \"{}\"\n",
            ca.display()
        ),
    );
    let e = ch.send("mail", &firing()).await.unwrap_err();
    let shown = format!("{e} {e:?} {ch:?}");
    assert!(matches!(e, DeliveryError::Permanent { .. }), "{shown}");
    assert!(shown.contains("authentication"), "{shown}");
    assert!(!shown.contains("not-the-smtp"), "{shown}");

    // The server's certificate from a CA the client does not trust: a TLS error, permanent.
    let ch = email_channels(
        dir.path(),
        &url,
        &format!("username = \"alerts\"\npassword_file = \"{pw}\"\n"),
    );
    let e = ch.send("mail", &firing()).await.unwrap_err();
    assert!(matches!(e, DeliveryError::Permanent { .. }), "{e:?}");
    assert!(e.to_string().contains("TLS"), "{e}");
    assert_no_secret(&format!("{e} {e:?}"));
    assert_eq!(smtp.messages().len(), 1);
}

#[tokio::test]
async fn email_with_implicit_tls_and_a_server_that_is_down() {
    let Some(py) = python() else { return };
    let certs = tmp();
    let (ca, cert, key) = certificates(certs.path());
    let smtp = Smtp::start(&py, "implicit", Some((&cert, &key)), None);
    let dir = tmp();
    let ch = email_channels(
        dir.path(),
        &format!("smtps://127.0.0.1:{}", smtp.port),
        &format!("tls_ca_file = \"{}\"\n", ca.display()),
    );
    ch.send("mail", &firing()).await.unwrap();
    assert_eq!(smtp.messages()[0]["tls"], true);

    let port = smtp.port;
    drop(smtp);
    let e = ch.send("mail", &firing()).await.unwrap_err();
    assert!(matches!(e, DeliveryError::Retry { .. }), "{e:?}");
    assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
}

// ---------------------------------------------------------------------------------------
// `dbwarden alert test` through the real binary.
// ---------------------------------------------------------------------------------------

async fn alert_test(config: &Path, channel: &str) -> (i32, String, String) {
    let o = tokio::process::Command::new(env!("CARGO_BIN_EXE_dbwarden"))
        .args(["-c", &config.display().to_string()])
        .args(["alert", "test", "--channel", channel])
        .env_remove("DBWARDEN_CONFIG")
        .output()
        .await
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[tokio::test]
async fn alert_test_sends_and_reports_success_or_the_exact_error() {
    let rx = Receiver::start(vec![Reply::new(200, "ok")]).await;
    let dir = tmp();
    let url_file = write(
        dir.path(),
        "url",
        &rx.url(&format!("/hooks/{WEBHOOK_TOKEN}")),
    );
    let (path, _) = config(
        dir.path(),
        &format!(
            "[[channel]]\nname = \"hook\"\nkind = \"webhook\"\nurl_file = \"{url_file}\"\n\n\
             [[channel]]\nname = \"ops\"\nkind = \"slack\"\nurl_file = \"{url_file}\"\n"
        ),
    );

    let (code, out, err) = alert_test(&path, "hook").await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("sent a test notification to channel \"hook\" (webhook)"),
        "{out}"
    );
    let v = rx.requests()[0].json();
    assert_eq!(v["target"], "dbwarden");
    assert!(v["note"].as_str().unwrap().contains("test"), "{v}");
    assert_eq!(
        rx.requests()[0].header("idempotency-key"),
        v["key"].as_str()
    );

    // The receiver refuses: exit 1, the status and the body's words, never the URL's token.
    rx.reply_with(vec![Reply::new(403, "invalid_token")]);
    let (code, out, err) = alert_test(&path, "ops").await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("HTTP 403") && err.contains("invalid_token"),
        "{err}"
    );
    assert!(err.contains("\"ops\" (slack)"), "{err}");
    assert_no_secret(&format!("{out}{err}"));

    // Unknown channel: exit 2, the configured names listed.
    let (code, _, err) = alert_test(&path, "nope").await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("hook, ops"), "{err}");
}

#[tokio::test]
async fn alert_test_names_a_dns_failure() {
    let dir = tmp();
    // .invalid never resolves (RFC 2606).
    let url_file = write(
        dir.path(),
        "url",
        &format!("https://hooks.dbwarden-test.invalid/{WEBHOOK_TOKEN}"),
    );
    let (path, _) = config(
        dir.path(),
        &format!(
            "[[channel]]\nname = \"hook\"\nkind = \"webhook\"\nurl_file = \"{url_file}\"\ntimeout = \"5s\"\n"
        ),
    );
    let (code, out, err) = alert_test(&path, "hook").await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.to_ascii_lowercase().contains("dns"), "{err}");
    assert_no_secret(&format!("{out}{err}"));
}

#[tokio::test]
async fn a_receiver_that_never_answers_is_a_retry_after_the_channel_timeout() {
    // Accepts connections and reads, never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let dir = tmp();
    let url_file = write(
        dir.path(),
        "url",
        &format!("http://{addr}/hooks/{WEBHOOK_TOKEN}"),
    );
    let (_, c) = config(
        dir.path(),
        &format!(
            "[[channel]]\nname = \"hook\"\nkind = \"webhook\"\nurl_file = \"{url_file}\"\ntimeout = \"1s\"\n"
        ),
    );
    let ch = Channels::from_config(&c).unwrap();
    let e = ch.send("hook", &firing()).await.unwrap_err();
    assert!(matches!(e, DeliveryError::Retry { .. }), "{e:?}");
    assert!(e.to_string().contains("no response from"), "{e}");
    assert_no_secret(&format!("{e} {e:?}"));
}

/// Even at `--log-level trace`, no library logs a secret: the webhook URL's token, the
/// HMAC secret, or the SMTP password (lettre's own tracing would log `AUTH PLAIN <base64>`).
#[tokio::test]
async fn trace_logs_of_alert_test_contain_no_secret() {
    let Some(py) = python() else { return };
    let smtp = Smtp::start(&py, "plain", None, Some(("alerts", SMTP_PASSWORD)));
    let rx = Receiver::start(vec![Reply::new(200, "ok")]).await;
    let dir = tmp();
    let url_file = write(
        dir.path(),
        "url",
        &rx.url(&format!("/hooks/{WEBHOOK_TOKEN}")),
    );
    let secret_file = write(dir.path(), "hmac", HMAC_SECRET);
    let pw = write(dir.path(), "pw", SMTP_PASSWORD);
    let (path, _) = config(
        dir.path(),
        &format!(
            "[[channel]]\nname = \"hook\"\nkind = \"webhook\"\nurl_file = \"{url_file}\"\n\
             hmac_secret_file = \"{secret_file}\"\n\n\
             [[channel]]\nname = \"mail\"\nkind = \"email\"\nsmtp_url = \"smtp://127.0.0.1:{}\"\n\
             tls = \"none\"\nusername = \"alerts\"\npassword_file = \"{pw}\"\n\
             from = \"dbwarden@example.com\"\nto = [\"dba@example.com\"]\n",
            smtp.port
        ),
    );
    // AUTH PLAIN's argument: base64("\0alerts\0<password>"), computed with Python's base64.
    let b64 = std::process::Command::new(&py)
        .args([
            "-c",
            "import base64,sys; print(base64.b64encode(b'\\0alerts\\0' + sys.argv[1].encode()).decode())",
            SMTP_PASSWORD,
        ])
        .output()
        .unwrap();
    let b64 = String::from_utf8_lossy(&b64.stdout).trim().to_string();
    assert!(b64.len() > 10);
    for channel in ["hook", "mail"] {
        let o = tokio::process::Command::new(env!("CARGO_BIN_EXE_dbwarden"))
            .args(["-c", &path.display().to_string(), "--log-level", "trace"])
            .args(["alert", "test", "--channel", channel])
            .output()
            .await
            .unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(o.status.success(), "{channel}: {all}");
        assert_no_secret(&all);
        assert!(
            !all.contains(&b64),
            "{channel}: AUTH PLAIN credentials logged:\n{all}"
        );
    }
    assert_eq!(smtp.messages()[0]["login"], "alerts");
}

/// The sending keys are checked by `config load` (every problem at once), and a channel
/// built from an inline SMTP password never shows it.
#[test]
fn sending_keys_are_validated() {
    let dir = tmp();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        format!(
            "[daemon]\nhistory = \"sqlite://{d}/h.db\"\npublic_url = \"ftp://x\"\n\n\
             [[channel]]\nname = \"s\"\nkind = \"slack\"\nurl_env = \"DBW_TEST_NOT_SET\"\n\
             headers = {{ X-A = \"b\" }}\nhmac_secret_file = \"{d}/missing\"\ntls = \"none\"\n\n\
             [[channel]]\nname = \"w\"\nkind = \"webhook\"\nurl_file = \"{d}/also-missing\"\n\
             headers = {{ \"Bad Header\" = \"x\", Content-Type = \"text/plain\" }}\ntimeout = \"0s\"\n\n\
             [[channel]]\nname = \"m\"\nkind = \"email\"\nsmtp_url = \"smtp://u:{SMTP_PASSWORD}@mail.example.com\"\n\
             tls = \"sometimes\"\nfrom = \"a@b@c\"\nto = [\"ok@example.com\"]\n",
            d = dir.path().display()
        ),
    )
    .unwrap();
    let e = dbwarden::config::load(&path).unwrap_err().to_string();
    for want in [
        "daemon.public_url",
        "channel[0].headers: only a webhook channel",
        "channel[0].hmac_secret_file: only a webhook channel",
        "channel[0].tls: only an email channel",
        "channel[1].url_file",
        "\"Bad Header\" is not a valid HTTP header name",
        "\"Content-Type\" is set by dbwarden itself",
        "channel[1].timeout",
        "channel[2].tls: \"sometimes\" is not a TLS mode",
        "channel[2].from",
    ] {
        assert!(e.contains(want), "missing {want:?} in:\n{e}");
    }
    assert!(!e.contains(SMTP_PASSWORD), "{e}");

    // A valid email channel with the password inline in smtp_url.
    let (_, c) = config(
        dir.path(),
        &format!(
            "[[channel]]\nname = \"m\"\nkind = \"email\"\nsmtp_url = \"smtp://u:{SMTP_PASSWORD}@127.0.0.1:1\"\n\
             from = \"a@example.com\"\nto = [\"b@example.com\"]\n"
        ),
    );
    let ch = Channels::from_config(&c).unwrap();
    assert_no_secret(&format!("{ch:?} {c:?}"));
}

#[tokio::test]
async fn an_smtp_server_that_never_greets_is_a_retry_after_the_timeout() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let dir = tmp();
    let (_, c) = config(
        dir.path(),
        &format!(
            "[[channel]]\nname = \"m\"\nkind = \"email\"\nsmtp_url = \"smtp://127.0.0.1:{port}\"\n\
             tls = \"none\"\ntimeout = \"1s\"\nfrom = \"a@example.com\"\nto = [\"b@example.com\"]\n"
        ),
    );
    let ch = Channels::from_config(&c).unwrap();
    let e = ch.send("m", &firing()).await.unwrap_err();
    assert!(matches!(e, DeliveryError::Retry { .. }), "{e:?}");
    assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
}

/// An HTTPS receiver whose certificate the OS does not trust: permanent, and says why.
#[tokio::test]
async fn a_webhook_certificate_that_does_not_verify_is_permanent() {
    let Some(py) = python() else { return };
    let certs = tmp();
    let (_ca, cert, key) = certificates(certs.path());
    let script = "import http.server,ssl,sys\n\
        class H(http.server.BaseHTTPRequestHandler):\n\
        \x20   def do_POST(self):\n\
        \x20       self.send_response(200); self.end_headers()\n\
        s = http.server.HTTPServer(('127.0.0.1', 0), H)\n\
        c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); c.load_cert_chain(sys.argv[1], sys.argv[2])\n\
        s.socket = c.wrap_socket(s.socket, server_side=True)\n\
        print(s.server_address[1], flush=True)\n\
        s.serve_forever()\n";
    let mut child = std::process::Command::new(&py)
        .args(["-c", script])
        .arg(&cert)
        .arg(&key)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let port: u16 = line.trim().parse().unwrap();
    let dir = tmp();
    let url_file = write(
        dir.path(),
        "url",
        &format!("https://localhost:{port}/hooks/{WEBHOOK_TOKEN}"),
    );
    let (_, c) = config(
        dir.path(),
        &format!("[[channel]]\nname = \"hook\"\nkind = \"webhook\"\nurl_file = \"{url_file}\"\n"),
    );
    let ch = Channels::from_config(&c).unwrap();
    let e = ch.send("hook", &firing()).await;
    let _ = child.kill();
    let _ = child.wait();
    let e = e.unwrap_err();
    assert!(matches!(e, DeliveryError::Permanent { .. }), "{e:?}");
    assert!(e.to_string().contains("certificate"), "{e}");
    assert_no_secret(&format!("{e} {e:?}"));
}
