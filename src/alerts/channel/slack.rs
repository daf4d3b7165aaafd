//! Slack incoming webhooks: a `text` fallback (notifications, screen readers, old clients)
//! and Block Kit blocks — a header with the target and its new status, the severity by
//! emoji *and* word (colour alone is lost on a lock screen and to colour-blind readers),
//! the failing checks with value and thresholds, and a link to the dashboard when
//! `[daemon] public_url` is set.
//!
//! Slack's documented limits are kept here, counted in characters as Slack counts them:
//! at most 50 blocks, a header's text 150, a section's text 3000, the top-level text 4000
//! (longer is truncated by Slack itself; 40,000 is refused). Long texts (a query in a check
//! message) are cut on a character boundary with `…`; checks past the block budget are
//! summarised in one last section ("… and 12 more checks").

use std::fmt::Write as _;
use std::time::Duration;

use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use super::{
    ChannelsError, SecretSource, check_value, headline, post_json, resolve_url, target_at_agent,
    truncate_chars, url_source,
};
use crate::alerts::{AlertEvent, DeliveryError, Notification};
use crate::config::ChannelConfig;
use crate::health::Status;

/// Slack: at most this many blocks in a message.
pub const MAX_BLOCKS: usize = 50;
/// Slack: a header block's text, in characters.
pub const MAX_HEADER: usize = 150;
/// Slack: a section block's text, in characters.
pub const MAX_SECTION: usize = 3000;
/// The top-level `text`: Slack truncates past 4000 characters.
pub const MAX_TEXT: usize = 4000;
/// Characters of one check's message shown (a whole query rarely helps in a chat).
const MAX_CHECK_MESSAGE: usize = 500;

/// A `[[channel]] kind = "slack"`.
pub struct Slack {
    name: String,
    url: SecretSource,
    timeout: Duration,
    public_url: Option<String>,
    http: reqwest::Client,
}

impl std::fmt::Debug for Slack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slack")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Slack {
    pub fn new(
        ch: &ChannelConfig,
        http: reqwest::Client,
        public_url: Option<String>,
    ) -> Result<Slack, ChannelsError> {
        Ok(Slack {
            name: ch.name.clone(),
            url: url_source(ch)?,
            timeout: ch.timeout.unwrap_or(super::DEFAULT_TIMEOUT),
            public_url,
            http,
        })
    }

    /// Sends one notification.
    pub async fn send(&self, n: &Notification) -> Result<(), DeliveryError> {
        let url = resolve_url(&self.url)?;
        let body = serde_json::to_vec(&message(n, self.public_url.as_deref())).map_err(|e| {
            DeliveryError::Permanent {
                reason: format!("cannot encode the Slack message: {e}"),
            }
        })?;
        post_json(
            &self.http,
            &url,
            HeaderMap::new(),
            body,
            self.timeout,
            &[url.expose()],
        )
        .await
    }
}

/// The severity as an emoji; always shown next to the word.
pub fn emoji(n: &Notification) -> &'static str {
    if n.event == AlertEvent::Resolved {
        return "✅";
    }
    match n.to {
        Status::Critical => "🔴",
        Status::Warning => "🟠",
        Status::Unknown => "❔",
        Status::Ok => "✅",
    }
}

/// Escapes the three characters Slack's mrkdwn treats as control characters.
pub fn escape_mrkdwn(s: &str) -> String {
    let s = crate::text::escape(s);
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// [`truncate_chars`] for escaped mrkdwn: never leaves half an `&amp;` at the cut.
fn truncate_mrkdwn(s: &str, max: usize) -> String {
    let t = truncate_chars(s, max);
    if t.len() == s.len() {
        return t;
    }
    let body = t.trim_end_matches('…');
    match (body.rfind('&'), body.rfind(';')) {
        (Some(a), semi) if semi.is_none_or(|s| s < a) => format!("{}…", &body[..a]),
        _ => t,
    }
}

fn section(text: String) -> Value {
    json!({
        "type": "section",
        "text": { "type": "mrkdwn", "text": truncate_mrkdwn(&text, MAX_SECTION) }
    })
}

/// The Slack message for a notification: `{ "text": …, "blocks": [...] }`.
pub fn message(n: &Notification, public_url: Option<&str>) -> Value {
    let word = super::headline_word(n);
    let who = target_at_agent(n);
    let header = match n.event {
        AlertEvent::Resolved => format!("{} RESOLVED {who}: {}", emoji(n), n.to),
        AlertEvent::Reminder => format!("{} {} {who} (reminder)", emoji(n), n.to),
        AlertEvent::Firing => format!("{} {word} {who}", emoji(n)),
    };
    let header = truncate_chars(&crate::text::escape(&header), MAX_HEADER);

    let mut blocks = vec![json!({
        "type": "header",
        "text": { "type": "plain_text", "text": header, "emoji": true }
    })];

    let mut facts = String::new();
    let was = match n.from {
        Some(f) => format!("was {f}"),
        None => "first seen".into(),
    };
    let _ = writeln!(
        facts,
        "{} *{}* ({was}) · {}",
        emoji(n),
        n.to,
        escape_mrkdwn(&n.summary)
    );
    let _ = write!(
        facts,
        "Since {} · {} · agent `{}`",
        n.since.format("%Y-%m-%d %H:%M UTC"),
        escape_mrkdwn(&n.engine),
        escape_mrkdwn(&n.agent)
    );
    if let Some(note) = &n.note {
        let _ = write!(facts, "\n_{}_", escape_mrkdwn(note));
    }
    blocks.push(section(facts));

    // Fixed blocks after the checks: the link (optional) and the context line.
    let tail = 1 + usize::from(public_url.is_some());
    let budget = MAX_BLOCKS - blocks.len() - tail;
    let shown = if n.checks.len() > budget {
        budget - 1
    } else {
        n.checks.len()
    };
    for c in &n.checks[..shown] {
        let mut t = String::new();
        let subject = c
            .subject
            .as_deref()
            .map(|s| format!(" {}", escape_mrkdwn(&truncate_chars(s, 200))))
            .unwrap_or_default();
        let _ = write!(
            t,
            "`{}`{subject} — {} *{}* {}",
            escape_mrkdwn(&c.check),
            status_emoji(c.status),
            c.status,
            escape_mrkdwn(&check_value(c))
        );
        if !c.message.is_empty() {
            let _ = write!(
                t,
                "\n>{}",
                escape_mrkdwn(&truncate_chars(&c.message, MAX_CHECK_MESSAGE))
            );
        }
        blocks.push(section(t));
    }
    if shown < n.checks.len() {
        let rest = &n.checks[shown..];
        let names: Vec<String> = rest.iter().map(|c| escape_mrkdwn(&c.check)).collect();
        blocks.push(section(format!(
            "… and {} more checks: {}",
            rest.len(),
            names.join(", ")
        )));
    }
    if let Some(u) = public_url {
        blocks.push(section(format!(
            "<{}|Open the dbwarden dashboard>",
            u.replace('|', "%7C").replace('>', "%3E")
        )));
    }
    blocks.push(json!({
        "type": "context",
        "elements": [{
            "type": "mrkdwn",
            "text": truncate_mrkdwn(
                &format!("dbwarden · {} · key `{}`", n.event.as_str(), escape_mrkdwn(&n.key)),
                MAX_SECTION,
            )
        }]
    }));

    let text = truncate_chars(&fallback_text(n), MAX_TEXT);
    json!({ "text": text, "blocks": blocks })
}

fn status_emoji(s: Status) -> &'static str {
    match s {
        Status::Critical => "🔴",
        Status::Warning => "🟠",
        Status::Unknown => "❔",
        Status::Ok => "✅",
    }
}

/// The fallback `text`: the headline and the failing checks, one line each.
fn fallback_text(n: &Notification) -> String {
    let mut t = format!("{} {}", emoji(n), escape_mrkdwn(&headline(n)));
    for c in &n.checks {
        let _ = write!(
            t,
            "\n• {} {} {}",
            escape_mrkdwn(&c.check),
            c.status,
            escape_mrkdwn(&check_value(c))
        );
        if t.chars().count() > MAX_TEXT {
            break;
        }
    }
    t
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap
mod tests {
    use super::*;
    use crate::alerts::AlertCheck;
    use crate::health::Unit;
    use chrono::{DateTime, Utc};

    fn check(i: usize, message: String) -> AlertCheck {
        AlertCheck {
            check: format!("check_{i}"),
            status: Status::Critical,
            value: Some(4000.0),
            unit: Unit::Seconds,
            warning: Some(300.0),
            critical: Some(3600.0),
            message,
            subject: Some(format!("pid {i}")),
        }
    }

    fn notification(target: &str, checks: Vec<AlertCheck>, event: AlertEvent) -> Notification {
        let at = DateTime::parse_from_rfc3339("2026-11-30T14:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        Notification {
            key: "k1".into(),
            agent: "db1".into(),
            target: target.into(),
            engine: "postgres".into(),
            event,
            from: Some(Status::Ok),
            to: if event == AlertEvent::Resolved {
                Status::Ok
            } else {
                Status::Critical
            },
            at,
            since: at,
            summary: format!("{} checks failing", checks.len()),
            checks,
            note: None,
        }
    }

    fn texts(v: &Value) -> Vec<(String, String)> {
        v["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                let t = b["text"]["text"]
                    .as_str()
                    .or_else(|| b["elements"][0]["text"].as_str())
                    .unwrap()
                    .to_string();
                (b["type"].as_str().unwrap().to_string(), t)
            })
            .collect()
    }

    #[test]
    fn header_says_target_and_status_by_emoji_and_word() {
        let n = notification("orders", vec![check(1, "x".into())], AlertEvent::Firing);
        let v = message(&n, Some("https://dbw.example/"));
        let t = texts(&v);
        assert_eq!(t[0], ("header".into(), "🔴 CRITICAL orders@db1".into()));
        assert!(t[1].1.contains("*CRITICAL* (was OK)"), "{:?}", t[1]);
        assert!(
            t[2].1.contains("`check_1` pid 1 — 🔴 *CRITICAL* 66.7min"),
            "{:?}",
            t[2]
        );
        assert!(
            t[2].1.contains("(warning 5min, critical 60min)"),
            "{:?}",
            t[2]
        );
        assert!(
            t.iter().any(|(_, x)| x.contains("<https://dbw.example/|")),
            "{t:?}"
        );
        assert!(v["text"].as_str().unwrap().contains("CRITICAL orders@db1"));

        let r = notification("orders", vec![check(1, "x".into())], AlertEvent::Resolved);
        let v = message(&r, None);
        let t = texts(&v);
        assert_eq!(t[0].1, "✅ RESOLVED orders@db1: OK");
        assert!(v["text"].as_str().unwrap().contains("RESOLVED"));
        assert!(
            !t.iter().any(|(_, x)| x.contains("dashboard")),
            "no link without public_url"
        );
    }

    #[test]
    fn long_multibyte_texts_and_many_checks_stay_within_slack_limits() {
        // A 20,000-character query of multibyte characters, with mrkdwn specials.
        let query = "SELECT 'ä日🦀' || x & y <> z FROM 表 ".repeat(700);
        let checks: Vec<AlertCheck> = (0..80).map(|i| check(i, query.clone())).collect();
        let target = "ö".repeat(300);
        let n = notification(&target, checks, AlertEvent::Firing);
        let v = message(&n, Some("https://dbw.example/"));
        let blocks = v["blocks"].as_array().unwrap();
        assert!(blocks.len() <= MAX_BLOCKS, "{} blocks", blocks.len());
        assert_eq!(blocks.len(), MAX_BLOCKS, "the budget is used, not wasted");
        let t = texts(&v);
        assert!(t[0].1.chars().count() <= MAX_HEADER);
        assert!(t[0].1.ends_with('…'));
        for (kind, text) in &t {
            assert!(
                text.chars().count() <= MAX_SECTION,
                "{kind}: {}",
                text.len()
            );
            // No half entity at a cut.
            let tail = text.trim_end_matches('…');
            if let Some(a) = tail.rfind('&') {
                assert!(
                    tail[a..].contains(';'),
                    "cut inside an entity: {}",
                    &tail[a..]
                );
            }
        }
        assert!(
            t.iter().any(|(_, x)| x.contains("more checks")),
            "the checks past the budget are summarised"
        );
        assert!(v["text"].as_str().unwrap().chars().count() <= MAX_TEXT);
        // JSON-encodable and valid UTF-8 throughout (serde would fail otherwise).
        assert!(serde_json::to_string(&v).is_ok());
    }

    #[test]
    fn mrkdwn_specials_are_escaped() {
        assert_eq!(escape_mrkdwn("a<b>&c"), "a&lt;b&gt;&amp;c");
        assert_eq!(escape_mrkdwn("x\ny"), "x\\ny");
        assert_eq!(truncate_mrkdwn("ab&amp;cd", 4), "ab…");
        assert_eq!(truncate_mrkdwn("ab&amp;cd", 9), "ab&amp;cd");
    }
}
