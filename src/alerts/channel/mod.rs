//! The channels: render one [`Notification`] for a receiver and send it, saying whether a
//! failure is worth retrying. [`Channels`] holds every `[[channel]]` of the config and
//! implements [`Deliver`] for the delivery loop.
//!
//! - [`webhook`]: a versioned JSON document (schema in the README, "Channels"), optionally
//!   signed with HMAC-SHA256;
//! - [`slack`]: an incoming-webhook message with Block Kit blocks, within Slack's limits;
//! - [`email`]: a plain-text mail over SMTP (STARTTLS, implicit TLS or plain).
//!
//! Secrets (webhook URLs, HMAC secrets, SMTP passwords) are read when a message is sent, so
//! a rotated file is used at the next send and an unreadable one is a `Permanent` error of
//! that send rather than a daemon that will not start. Every error text passes through
//! [`scrub`] with the secrets of its channel before it leaves this module.

pub mod email;
pub mod slack;
pub mod webhook;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{AlertEvent, Deliver, DeliveryError, Notification};
use crate::config::secret::read_secret_file;
use crate::config::{ChannelConfig, Config, Secret};
use crate::health::Status;

/// How long one send may take when the channel sets no `timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a secret comes from; resolved at each send.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretSource {
    Inline(Secret),
    /// A file path (may start with `${CREDENTIALS_DIRECTORY}`); trailing whitespace trimmed.
    File(String),
    /// An environment variable's name.
    Env(String),
}

impl std::fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretSource::Inline(_) => f.write_str("Inline(***)"),
            SecretSource::File(p) => write!(f, "File({p:?})"),
            SecretSource::Env(v) => write!(f, "Env({v:?})"),
        }
    }
}

impl SecretSource {
    /// The secret, or a `Permanent` error naming the file or variable (never the value).
    pub fn resolve(&self, what: &str) -> Result<Secret, DeliveryError> {
        match self {
            SecretSource::Inline(s) => Ok(s.clone()),
            SecretSource::File(f) => read_secret_file(f).map_err(|e| DeliveryError::Permanent {
                reason: format!("{what}: {e}"),
            }),
            SecretSource::Env(v) => match std::env::var(v) {
                Ok(s) if !s.trim_end().is_empty() => Ok(Secret::new(s.trim_end())),
                _ => Err(DeliveryError::Permanent {
                    reason: format!("{what}: environment variable {v} is not set or empty"),
                }),
            },
        }
    }
}

/// Why the channels could not be built from a config.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct ChannelsError(pub String);

/// One configured channel, ready to send.
#[derive(Debug)]
pub enum Channel {
    Webhook(webhook::Webhook),
    Slack(slack::Slack),
    Email(email::Email),
}

impl Channel {
    pub fn kind(&self) -> &'static str {
        match self {
            Channel::Webhook(_) => "webhook",
            Channel::Slack(_) => "slack",
            Channel::Email(_) => "email",
        }
    }
}

/// Every `[[channel]]` of a config, by name.
#[derive(Debug)]
pub struct Channels {
    channels: BTreeMap<String, Channel>,
}

impl Channels {
    /// Builds every channel of a validated config. Secrets are not read here (see the
    /// module doc); what can fail is the HTTP client (no TLS roots) and values the config
    /// check already rejects.
    pub fn from_config(config: &Config) -> Result<Channels, ChannelsError> {
        let public_url = config.daemon.public_url.clone();
        let http = http_client()?;
        let mut channels = BTreeMap::new();
        for ch in &config.raw.channels {
            let c = match ch.kind.as_str() {
                "webhook" => {
                    Channel::Webhook(webhook::Webhook::new(ch, http.clone(), public_url.clone())?)
                }
                "slack" => Channel::Slack(slack::Slack::new(ch, http.clone(), public_url.clone())?),
                "email" => Channel::Email(email::Email::new(ch, public_url.clone())?),
                other => {
                    return Err(ChannelsError(format!(
                        "channel {}: \"{other}\" is not a channel kind",
                        ch.name
                    )));
                }
            };
            channels.insert(ch.name.clone(), c);
        }
        Ok(Channels { channels })
    }

    pub fn get(&self, name: &str) -> Option<&Channel> {
        self.channels.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.channels.keys().map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }
}

impl Deliver for Channels {
    async fn send(&self, channel: &str, n: &Notification) -> Result<(), DeliveryError> {
        match self.channels.get(channel) {
            Some(Channel::Webhook(c)) => c.send(n).await,
            Some(Channel::Slack(c)) => c.send(n).await,
            Some(Channel::Email(c)) => c.send(n).await,
            None => Err(DeliveryError::Permanent {
                reason: format!(
                    "no channel named \"{channel}\" in the config (it may have been removed by a reload)"
                ),
            }),
        }
    }
}

/// A notification to check a channel end to end (`dbwarden alert test`): no target
/// changed status, and every message says so.
pub fn test_notification(agent: &str, now: DateTime<Utc>) -> Notification {
    Notification {
        key: format!("test-{}-{:08x}", now.timestamp(), rand::random::<u32>()),
        agent: agent.to_string(),
        target: "dbwarden".into(),
        engine: "dbwarden".into(),
        event: AlertEvent::Firing,
        from: None,
        to: Status::Ok,
        at: now,
        since: now,
        summary: "test notification from `dbwarden alert test`".into(),
        checks: Vec::new(),
        note: Some("This is a test message: no target changed status.".into()),
    }
}

// ---------------------------------------------------------------------------------------
// Text every channel shares.
// ---------------------------------------------------------------------------------------

/// `orders@db1`: the target and the agent that watches it.
pub fn target_at_agent(n: &Notification) -> String {
    format!("{}@{}", n.target, n.agent)
}

/// The status word a message leads with: `RESOLVED` for a resolved notification.
pub fn headline_word(n: &Notification) -> &'static str {
    match n.event {
        AlertEvent::Resolved => "RESOLVED",
        _ => n.to.as_str(),
    }
}

/// One line: `CRITICAL orders@db1: 2 checks failing`, `RESOLVED orders@db1: OK (was
/// CRITICAL)`, `REMINDER CRITICAL orders@db1: …`. Used as email subject (after
/// `[dbwarden] `), webhook `text` and Slack fallback text. Control characters are escaped.
pub fn headline(n: &Notification) -> String {
    let who = target_at_agent(n);
    let line = match n.event {
        AlertEvent::Resolved => match n.from {
            Some(f) => format!("RESOLVED {who}: {} (was {f})", n.to),
            None => format!("RESOLVED {who}: {}", n.to),
        },
        AlertEvent::Firing => format!("{} {who}: {}", n.to, n.summary),
        AlertEvent::Reminder => format!("REMINDER {} {who}: {}", n.to, n.summary),
    };
    crate::text::escape(&line).into_owned()
}

/// A check's value against its thresholds: `3h 5m (warning 5m, critical 1h)`.
pub fn check_value(c: &super::AlertCheck) -> String {
    let mut s = match c.value {
        Some(v) => c.unit.format(v),
        None => "no value".to_string(),
    };
    let th: Vec<String> = [("warning", c.warning), ("critical", c.critical)]
        .into_iter()
        .filter_map(|(w, v)| v.map(|v| format!("{w} {}", c.unit.format(v))))
        .collect();
    if !th.is_empty() {
        let _ = write!(s, " ({})", th.join(", "));
    }
    s
}

/// The plain-text body (email) with every fact of the notification.
pub fn plain_text(n: &Notification, public_url: Option<&str>) -> String {
    use crate::text::escape;
    let mut s = String::new();
    let _ = writeln!(s, "{}\n", headline(n));
    let _ = writeln!(s, "Target:  {} ({})", escape(&n.target), escape(&n.engine));
    match n.from {
        Some(f) => {
            let _ = writeln!(s, "Status:  {} (was {f})", n.to);
        }
        None => {
            let _ = writeln!(s, "Status:  {} (first seen)", n.to);
        }
    }
    let _ = writeln!(s, "Event:   {}", n.event.as_str());
    let _ = writeln!(s, "Summary: {}", escape(&n.summary));
    let _ = writeln!(s, "Since:   {}", n.since.format("%Y-%m-%d %H:%M:%S UTC"));
    let _ = writeln!(s, "At:      {}", n.at.format("%Y-%m-%d %H:%M:%S UTC"));
    let _ = writeln!(s, "Agent:   {}", escape(&n.agent));
    if let Some(note) = &n.note {
        let _ = writeln!(s, "Note:    {}", escape(note));
    }
    if !n.checks.is_empty() {
        let title = if n.event == AlertEvent::Resolved {
            "Checks that were failing"
        } else {
            "Failing checks"
        };
        let _ = writeln!(s, "\n{title}:");
        for c in &n.checks {
            let subject = c
                .subject
                .as_deref()
                .map(|x| format!(" [{}]", escape(x)))
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "- {}{subject}: {} {}",
                escape(&c.check),
                c.status,
                check_value(c)
            );
            if !c.message.is_empty() {
                let _ = writeln!(s, "  {}", escape(&c.message));
            }
        }
    }
    if let Some(u) = public_url {
        let _ = writeln!(s, "\nDashboard: {u}");
    }
    let _ = writeln!(s, "\nIdempotency key: {}", n.key);
    s
}

/// `s` cut to at most `max` characters (Unicode scalar values, as Slack counts), on a
/// character boundary, ending in `…` when cut.
pub fn truncate_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    if max == 0 {
        return String::new();
    }
    let cut = s
        .char_indices()
        .nth(max - 1)
        .map(|(i, _)| i)
        .unwrap_or(s.len());
    let mut out = s[..cut].to_string();
    out.push('…');
    out
}

/// `msg` with every non-empty secret (and, for URLs, their path and query, where tokens
/// live) replaced by `***`. The last line of defence: errors from libraries may quote
/// what they were given.
pub fn scrub(msg: &str, secrets: &[&str]) -> String {
    let mut out = msg.to_string();
    for s in secrets {
        let s = s.trim();
        if s.len() < 4 {
            continue;
        }
        out = out.replace(s, "***");
        if let Ok(u) = url::Url::parse(s) {
            let path = u.path();
            if path.len() > 1 {
                out = out.replace(path, "/***");
            }
            if let Some(q) = u.query() {
                out = out.replace(q, "***");
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// HTTP, shared by webhook and Slack.
// ---------------------------------------------------------------------------------------

fn http_client() -> Result<reqwest::Client, ChannelsError> {
    reqwest::Client::builder()
        .user_agent(concat!("dbwarden/", env!("CARGO_PKG_VERSION")))
        // A redirect would re-send the body (and its signature) to a place the user did not
        // configure; a webhook that moved should be reconfigured.
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(DEFAULT_TIMEOUT)
        .build()
        .map_err(|e| {
            ChannelsError(format!(
                "cannot build the HTTP client for alert channels: {}",
                chain(&e.without_url())
            ))
        })
}

/// An error and its sources, joined by `: `, each said once.
fn chain(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut src = e.source();
    while let Some(s) = src {
        let t = s.to_string();
        if !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        src = s.source();
    }
    let mut words: Vec<&str> = Vec::new();
    let joined = parts.join(": ");
    for w in joined.split(": ") {
        // "Connection error: Connection error: …" (a wrapper repeating its source's words).
        if words.last().is_none_or(|l| !l.eq_ignore_ascii_case(w)) {
            words.push(w);
        }
    }
    words.join(": ")
}

/// The cause of a failed HTTP request in words (DNS, connect, TLS, timeout), without the
/// URL. Always worth retrying: the receiver may come back.
fn request_error(
    e: reqwest::Error,
    endpoint: &str,
    timeout: Duration,
    secrets: &[&str],
) -> DeliveryError {
    let is_timeout = e.is_timeout();
    let is_connect = e.is_connect();
    let detail = chain(&e.without_url());
    if is_connect && certificate_failure(&detail) {
        return DeliveryError::Permanent {
            reason: scrub(
                &format!(
                    "cannot connect to {endpoint}: {detail} (the server's certificate does not verify against the OS trust store)"
                ),
                secrets,
            ),
        };
    }
    let reason = if is_timeout {
        format!(
            "no response from {endpoint} within {} ({detail})",
            humantime::format_duration(timeout)
        )
    } else if is_connect {
        format!("cannot connect to {endpoint}: {detail}")
    } else {
        format!("request to {endpoint} failed: {detail}")
    };
    DeliveryError::Retry {
        reason: scrub(&reason, secrets),
        after: None,
    }
}

/// A certificate that does not verify, as rustls words it (its error type reaches us only
/// inside I/O errors, as text). Retrying cannot help until someone fixes the certificate.
fn certificate_failure(detail: &str) -> bool {
    let d = detail.to_ascii_lowercase();
    [
        "invalid peer certificate",
        "unknownissuer",
        "certificate expired",
        "notvalidforname",
    ]
    .iter()
    .any(|w| d.contains(w))
}

/// `Retry-After` as seconds (`120`) or an HTTP date, relative to `now`; a date in the
/// past is zero.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(v).ok()?.with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

/// How many bytes of a receiver's error body an error quotes.
const BODY_EXCERPT: usize = 300;

/// Success for 2xx; otherwise `Retry` (408, 429, 5xx; with Retry-After) or `Permanent`
/// (anything else), quoting the status and the start of the body.
fn classify_response(
    status: reqwest::StatusCode,
    retry_after: Option<&str>,
    body: &str,
    secrets: &[&str],
) -> Result<(), DeliveryError> {
    if status.is_success() {
        return Ok(());
    }
    let excerpt = crate::text::escape(&truncate_chars(body.trim(), BODY_EXCERPT)).into_owned();
    let mut reason = format!("HTTP {status}");
    if !excerpt.is_empty() {
        let _ = write!(reason, ": {excerpt}");
    }
    let reason = scrub(&reason, secrets);
    let retry = status.is_server_error()
        || status == reqwest::StatusCode::TOO_MANY_REQUESTS
        || status == reqwest::StatusCode::REQUEST_TIMEOUT;
    if retry {
        Err(DeliveryError::Retry {
            reason,
            after: retry_after.and_then(|v| parse_retry_after(v, Utc::now())),
        })
    } else {
        let hint = match status.as_u16() {
            300..=399 => " (the receiver redirects; configure the final URL)",
            401 | 403 => {
                " (the receiver refuses the request: check the URL's token or the signature secret)"
            }
            404 | 410 => " (no such webhook: it may have been deleted; check the URL)",
            _ => "",
        };
        Err(DeliveryError::Permanent {
            reason: format!("{reason}{hint}"),
        })
    }
}

/// POSTs a JSON body and classifies the outcome. `headers` are added as given.
async fn post_json(
    http: &reqwest::Client,
    url: &Secret,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
    timeout: Duration,
    secrets: &[&str],
) -> Result<(), DeliveryError> {
    // Host and port only: the path and query of a webhook URL are its secret.
    let endpoint = url::Url::parse(url.expose())
        .ok()
        .and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port_or_known_default()?)))
        .unwrap_or_else(|| "the webhook".into());
    let resp = http
        .post(url.expose())
        .headers(headers)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| request_error(e, &endpoint, timeout, secrets))?;
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = if status.is_success() {
        String::new()
    } else {
        // The body is for the error text only; a receiver that stalls here must not hold
        // the send past its timeout.
        match tokio::time::timeout(timeout, resp.bytes()).await {
            Ok(Ok(b)) => String::from_utf8_lossy(&b[..b.len().min(4 * BODY_EXCERPT)]).into_owned(),
            _ => String::new(),
        }
    };
    classify_response(status, retry_after.as_deref(), &body, secrets)
}

/// The URL source of a webhook or Slack channel.
fn url_source(ch: &ChannelConfig) -> Result<SecretSource, ChannelsError> {
    match (&ch.url, &ch.url_file, &ch.url_env) {
        (Some(u), None, None) => Ok(SecretSource::Inline(u.clone())),
        (None, Some(f), None) => Ok(SecretSource::File(f.clone())),
        (None, None, Some(v)) => Ok(SecretSource::Env(v.clone())),
        _ => Err(ChannelsError(format!(
            "channel {}: give exactly one of url_file, url_env, url",
            ch.name
        ))),
    }
}

/// Resolves a URL secret and checks it is http(s), without ever quoting it.
fn resolve_url(src: &SecretSource) -> Result<Secret, DeliveryError> {
    let url = src.resolve("webhook URL")?;
    let ok = url::Url::parse(url.expose())
        .map(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .unwrap_or(false);
    if ok {
        Ok(url)
    } else {
        Err(DeliveryError::Permanent {
            reason: "the webhook URL is not an http(s):// URL (value not shown: it is a secret)"
                .into(),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_seconds_or_an_http_date() {
        let now = DateTime::parse_from_rfc3339("2015-10-21T07:27:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }

    #[test]
    fn responses_are_classified() {
        use reqwest::StatusCode as S;
        assert_eq!(classify_response(S::OK, None, "", &[]), Ok(()));
        assert_eq!(classify_response(S::NO_CONTENT, None, "", &[]), Ok(()));
        for (s, retry) in [
            (S::INTERNAL_SERVER_ERROR, true),
            (S::BAD_GATEWAY, true),
            (S::TOO_MANY_REQUESTS, true),
            (S::REQUEST_TIMEOUT, true),
            (S::BAD_REQUEST, false),
            (S::FORBIDDEN, false),
            (S::NOT_FOUND, false),
            (S::MOVED_PERMANENTLY, false),
        ] {
            let e = classify_response(s, Some("7"), "no", &[]).unwrap_err();
            match e {
                DeliveryError::Retry { after, reason } => {
                    assert!(retry, "{s}: {reason}");
                    assert_eq!(after, Some(Duration::from_secs(7)));
                }
                DeliveryError::Permanent { reason } => {
                    assert!(!retry, "{s}: {reason}");
                    assert!(reason.contains(&s.as_u16().to_string()), "{reason}");
                }
            }
        }
    }

    #[test]
    fn error_bodies_are_excerpted_and_scrubbed() {
        let body = format!(
            "bad token in https://hooks.example/T0/B0/s3cr3tt0ken\n{}",
            "x".repeat(5000)
        );
        let e = classify_response(
            reqwest::StatusCode::BAD_REQUEST,
            None,
            &body,
            &["https://hooks.example/T0/B0/s3cr3tt0ken"],
        )
        .unwrap_err()
        .to_string();
        assert!(!e.contains("s3cr3tt0ken"), "{e}");
        assert!(e.contains("\\n"), "control characters escaped: {e}");
        assert!(e.chars().count() < BODY_EXCERPT + 100, "{e}");
    }

    #[test]
    fn scrub_hides_urls_and_their_paths() {
        let url = "https://hooks.slack.com/services/T000/B000/XXXXsecret";
        let msg = format!("error for url ({url}) and /services/T000/B000/XXXXsecret");
        let s = scrub(&msg, &[url, "hunter22"]);
        assert!(!s.contains("XXXXsecret"), "{s}");
        assert!(s.contains("hooks.slack.com") || s.contains("***"));
        assert_eq!(scrub("pw hunter22 here", &["hunter22"]), "pw *** here");
    }

    #[test]
    fn truncation_keeps_character_boundaries() {
        let s = "日本語のクエリ".repeat(10);
        let t = truncate_chars(&s, 5);
        assert_eq!(t, "日本語の…");
        assert_eq!(t.chars().count(), 5);
        assert_eq!(truncate_chars("short", 5), "short");
        assert_eq!(truncate_chars("🦀🦀🦀", 2), "🦀…");
    }
}
