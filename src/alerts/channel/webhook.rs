//! The generic webhook: one JSON document per notification, POSTed to the configured URL.
//!
//! The document is versioned (`"version": 1`); a field is only ever added within a version,
//! never renamed or removed. Its schema is in the README ("Channels"). Headers:
//! `Idempotency-Key` (the notification's key, the same on every retry), the channel's own
//! `headers`, and with `hmac_secret_file` a signature:
//!
//! `X-Dbwarden-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>`
//!
//! The receiver recomputes the HMAC over the timestamp, a dot and the raw body bytes, compares
//! in constant time, and rejects a timestamp too far from its clock (replay).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Serialize;
use sha2::Sha256;

use super::{ChannelsError, SecretSource, post_json, resolve_url, url_source};
use crate::alerts::{AlertCheck, DeliveryError, Notification};
use crate::config::{ChannelConfig, Secret};
use crate::health::Status;

/// The schema version of the document this build sends.
pub const VERSION: u32 = 1;

/// The signature header's name.
pub const SIGNATURE_HEADER: &str = "X-Dbwarden-Signature";

/// A `[[channel]] kind = "webhook"`.
pub struct Webhook {
    name: String,
    url: SecretSource,
    hmac_secret: Option<SecretSource>,
    headers: BTreeMap<String, Secret>,
    timeout: Duration,
    public_url: Option<String>,
    http: reqwest::Client,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("hmac_secret", &self.hmac_secret)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The JSON document, version 1.
#[derive(Debug, Serialize)]
pub struct Document<'a> {
    pub version: u32,
    /// `firing`, `resolved` or `reminder`.
    pub event: &'static str,
    /// The idempotency key (also the `Idempotency-Key` header).
    pub key: &'a str,
    pub agent: &'a str,
    pub target: &'a str,
    pub engine: &'a str,
    /// `OK`, `WARNING`, `CRITICAL`, `UNKNOWN`; `null` the first time a target is seen.
    pub previous_status: Option<Status>,
    pub status: Status,
    /// One line for humans; starts with `RESOLVED` when resolved.
    pub text: String,
    pub summary: &'a str,
    /// When the change was believed (RFC 3339, UTC).
    pub at: DateTime<Utc>,
    /// Since when the target has had `status`.
    pub since: DateTime<Utc>,
    pub checks: &'a [AlertCheck],
    pub note: Option<&'a str>,
    /// The dashboard (`[daemon] public_url`), when configured.
    pub url: Option<&'a str>,
}

/// The document for a notification.
pub fn document<'a>(n: &'a Notification, public_url: Option<&'a str>) -> Document<'a> {
    Document {
        version: VERSION,
        event: n.event.as_str(),
        key: &n.key,
        agent: &n.agent,
        target: &n.target,
        engine: &n.engine,
        previous_status: n.from,
        status: n.to,
        text: super::headline(n),
        summary: &n.summary,
        at: n.at,
        since: n.since,
        checks: &n.checks,
        note: n.note.as_deref(),
        url: public_url,
    }
}

/// The value of [`SIGNATURE_HEADER`] for a body sent at `unix` seconds.
pub fn signature(secret: &[u8], unix: i64, body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        // HMAC takes a key of any length; this arm cannot be reached.
        Err(_) => return String::new(),
    };
    mac.update(unix.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={unix},v1={}", hex::encode(mac.finalize().into_bytes()))
}

impl Webhook {
    pub fn new(
        ch: &ChannelConfig,
        http: reqwest::Client,
        public_url: Option<String>,
    ) -> Result<Webhook, ChannelsError> {
        for (k, v) in &ch.headers {
            if HeaderName::from_bytes(k.as_bytes()).is_err()
                || HeaderValue::from_str(v.expose()).is_err()
            {
                return Err(ChannelsError(format!(
                    "channel {}: header {k:?} is not a valid HTTP header name and value",
                    ch.name
                )));
            }
        }
        Ok(Webhook {
            name: ch.name.clone(),
            url: url_source(ch)?,
            hmac_secret: ch.hmac_secret_file.clone().map(SecretSource::File),
            headers: ch.headers.clone(),
            timeout: ch.timeout.unwrap_or(super::DEFAULT_TIMEOUT),
            public_url,
            http,
        })
    }

    /// Sends one notification.
    pub async fn send(&self, n: &Notification) -> Result<(), DeliveryError> {
        let url = resolve_url(&self.url)?;
        let secret = match &self.hmac_secret {
            Some(s) => Some(s.resolve("hmac_secret_file")?),
            None => None,
        };
        let body = serde_json::to_vec(&document(n, self.public_url.as_deref())).map_err(|e| {
            DeliveryError::Permanent {
                reason: format!("cannot encode the webhook document: {e}"),
            }
        })?;
        let mut headers = HeaderMap::new();
        for (k, v) in &self.headers {
            if let (Ok(k), Ok(mut v)) = (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(v.expose()),
            ) {
                v.set_sensitive(true);
                headers.insert(k, v);
            }
        }
        let key = HeaderValue::from_str(&n.key).map_err(|_| DeliveryError::Permanent {
            reason: format!("idempotency key {:?} is not a valid header value", n.key),
        })?;
        headers.insert("idempotency-key", key);
        if let Some(secret) = &secret {
            let sig = signature(secret.expose().as_bytes(), Utc::now().timestamp(), &body);
            if let Ok(v) = HeaderValue::from_str(&sig) {
                headers.insert(SIGNATURE_HEADER, v);
            }
        }
        let mut secrets: Vec<&str> = vec![url.expose()];
        if let Some(s) = &secret {
            secrets.push(s.expose());
        }
        secrets.extend(self.headers.values().map(Secret::expose));
        post_json(&self.http, &url, headers, body, self.timeout, &secrets).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap
mod tests {
    use super::*;
    use crate::alerts::AlertEvent;
    use crate::health::Unit;

    fn notification(event: AlertEvent, from: Option<Status>, to: Status) -> Notification {
        let at = DateTime::parse_from_rfc3339("2026-11-30T14:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        Notification {
            key: "orders-ok-critical-1764511200".into(),
            agent: "db1".into(),
            target: "orders".into(),
            engine: "postgres".into(),
            event,
            from,
            to,
            at,
            since: at,
            summary: "1 check failing".into(),
            checks: vec![AlertCheck {
                check: "long_transactions".into(),
                status: Status::Critical,
                value: Some(4000.0),
                unit: Unit::Seconds,
                warning: Some(300.0),
                critical: Some(3600.0),
                message: "pid 42 open for 1h 6m".into(),
                subject: None,
            }],
            note: None,
        }
    }

    #[test]
    fn the_document_has_every_field_of_version_1() {
        let n = notification(AlertEvent::Firing, Some(Status::Ok), Status::Critical);
        let v = serde_json::to_value(document(&n, Some("https://dbw.example/"))).unwrap();
        assert_eq!(v["version"], 1);
        assert_eq!(v["event"], "firing");
        assert_eq!(v["previous_status"], "OK");
        assert_eq!(v["status"], "CRITICAL");
        assert_eq!(v["text"], "CRITICAL orders@db1: 1 check failing");
        assert_eq!(v["at"], "2026-11-30T14:00:00Z");
        assert_eq!(v["checks"][0]["check"], "long_transactions");
        assert_eq!(v["checks"][0]["value"], 4000.0);
        assert_eq!(v["checks"][0]["unit"], "seconds");
        assert_eq!(v["url"], "https://dbw.example/");
        assert_eq!(v["key"], "orders-ok-critical-1764511200");

        let r = notification(AlertEvent::Resolved, Some(Status::Critical), Status::Ok);
        let v = serde_json::to_value(document(&r, None)).unwrap();
        assert_eq!(v["event"], "resolved");
        assert!(v["text"].as_str().unwrap().starts_with("RESOLVED "));
        assert_eq!(v["url"], serde_json::Value::Null);

        let first = notification(AlertEvent::Firing, None, Status::Warning);
        let v = serde_json::to_value(document(&first, None)).unwrap();
        assert_eq!(v["previous_status"], serde_json::Value::Null);
    }

    #[test]
    fn the_signature_is_hmac_sha256_over_timestamp_dot_body() {
        // Computed independently: printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac s3cret
        assert_eq!(
            signature(b"s3cret", 1_700_000_000, br#"{"a":1}"#),
            "t=1700000000,v1=1698a50bc74d1ff1db85c4e0a5297c2ad9fdba245d5737cdb789e4cc6e098940"
        );
    }
}
