//! Alerts: believed status changes become notifications, written to a durable outbox in
//! the history store, grouped, routed to channels and delivered with retries.
//!
//! The pieces, and who owns them:
//! - [`Notification`] (this file): the one document every channel renders. The alerter
//!   builds it; a channel never decides *whether* to send, only *how*.
//! - the state machine (when to notify, grouping, repeat, silences): pure, unit-tested with
//!   tokio's paused time;
//! - the outbox and delivery loop (retries with backoff, idempotency keys, claims across
//!   agents);
//! - the channels (Slack, generic webhook, email): render and send one notification and
//!   say whether a failure is worth retrying ([`DeliveryError`]).

pub mod channel;
pub mod deliver;
pub mod run;
pub mod self_target;
pub mod state;

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::health::{Status, Unit};

/// Why a notification is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertEvent {
    /// A target's believed status got worse or changed between non-OK states, or a
    /// first-seen target is WARNING/CRITICAL/UNKNOWN.
    Firing,
    /// A target's believed status became OK after a non-OK status ("RESOLVED").
    Resolved,
    /// A target still WARNING/CRITICAL after the repeat interval.
    Reminder,
}

impl AlertEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertEvent::Firing => "firing",
            AlertEvent::Resolved => "resolved",
            AlertEvent::Reminder => "reminder",
        }
    }
}

/// One failing (or, for a resolved notification, formerly failing) check, as shown in a
/// message: its value against its thresholds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertCheck {
    pub check: String,
    pub status: Status,
    pub value: Option<f64>,
    pub unit: Unit,
    pub warning: Option<f64>,
    pub critical: Option<f64>,
    /// The check's one-line message (offender, value, thresholds); already redacted.
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

/// One notification about one target: what every channel renders.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Idempotency key derived from (target, transition, time): the `Idempotency-Key`
    /// header of a webhook, the left part of an email's Message-ID.
    pub key: String,
    /// The agent (host) that sent it.
    pub agent: String,
    pub target: String,
    /// `postgres`, `mysql`, `sqlite` or `dbwarden` (the daemon watching itself).
    pub engine: String,
    pub event: AlertEvent,
    /// The believed status before; `None` the first time the target is ever seen.
    pub from: Option<Status>,
    pub to: Status,
    /// When the change was believed (for a reminder: when it was sent).
    pub at: DateTime<Utc>,
    /// Since when the target has been in `to`.
    pub since: DateTime<Utc>,
    /// One line: "2 checks failing", "database unreachable: connection refused", …
    pub summary: String,
    /// The failing checks (for a resolved notification: the checks that were failing).
    /// When the target is unreachable this holds only `connectivity`.
    pub checks: Vec<AlertCheck>,
    /// An extra remark such as "state before restart unknown".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Why a channel could not deliver. The text never contains a secret (webhook URL, SMTP
/// password, HMAC secret).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DeliveryError {
    /// Worth retrying (network error, timeout, HTTP 5xx/429, SMTP 4xx); `after` is the
    /// receiver's own hint (Retry-After), if it gave one.
    #[error("{reason}")]
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// Retrying cannot help (HTTP 4xx other than 408/429, SMTP 5xx, a missing secret file):
    /// still kept and retried at the capped backoff, since the user may fix it, but
    /// reported as broken at once.
    #[error("{reason}")]
    Permanent { reason: String },
}

/// Sends one notification to one configured channel (by its `[[channel]] name`). The
/// channels module implements it for the real channels; the delivery loop is generic over
/// it. Implementations bound their own time (a stalled receiver is a `Retry` error, never
/// a hang) and never put a secret in an error.
pub trait Deliver: Send + Sync {
    fn send(
        &self,
        channel: &str,
        notification: &Notification,
    ) -> impl std::future::Future<Output = Result<(), DeliveryError>> + Send;
}
