//! The built-in `dbwarden` target: the daemon watching itself. Its checks are judged here
//! (pure) from the history store's health, the alert channels' health and the scheduler's
//! heartbeats; the daemon feeds them through the same hysteresis, history and alerting as
//! any other target's round.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::deliver::ChannelHealth;
use crate::health::{CheckResult, Scope, Status, Unit};
use crate::store::StoreHealth;

/// The self-target's name (and engine).
pub const NAME: &str = "dbwarden";

/// The self-target's checks: (name, unit, what it means). README "Checks" lists them.
pub const CHECKS: [(&str, &str, &str); 3] = [
    (
        "history_store",
        "records dropped",
        "CRITICAL while the history store is unreachable, WARNING when records were dropped since the last round",
    ),
    (
        "schedules_missed",
        "job loops",
        "CRITICAL when a job's scheduling loop is stuck (its runs are being missed)",
    ),
    (
        "alert_delivery",
        "minutes",
        "CRITICAL when a channel has failed to deliver for `alerts.channel_failing_after` (default 30 min)",
    ),
];

/// What the self-target's round looks at.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    pub store: &'a StoreHealth,
    /// Records the store had dropped at the previous round.
    pub dropped_before: u64,
    pub channels: &'a HashMap<String, ChannelHealth>,
    pub channel_failing_after: Duration,
    pub stuck_loops: &'a [String],
    pub now: DateTime<Utc>,
}

fn result(check: &str, status: Status, value: f64, unit: Unit, message: String) -> CheckResult {
    CheckResult {
        check: check.into(),
        status,
        value: Some(value),
        unit,
        warning: None,
        critical: None,
        message,
        subject: None,
        scope: Scope::Database,
    }
}

/// Judges the daemon's own health.
pub fn checks(i: &Inputs<'_>) -> Vec<CheckResult> {
    let mut out = Vec::with_capacity(3);
    let dropped = i.store.dropped.total();
    let new_drops = dropped.saturating_sub(i.dropped_before);
    out.push(if !i.store.reachable {
        let since = i
            .store
            .failing_since
            .map(|t| format!(" since {}", t.format("%Y-%m-%d %H:%M:%S UTC")))
            .unwrap_or_default();
        result(
            "history_store",
            Status::Critical,
            new_drops as f64,
            Unit::None,
            format!(
                "history store unreachable{since}: {}; {} record(s) buffered, {} dropped",
                i.store.last_error.as_deref().unwrap_or("no answer"),
                i.store.backlog_records,
                dropped
            ),
        )
    } else if new_drops > 0 {
        result(
            "history_store",
            Status::Warning,
            new_drops as f64,
            Unit::None,
            format!("history store dropped {new_drops} record(s) since the last round"),
        )
    } else {
        result(
            "history_store",
            Status::Ok,
            0.0,
            Unit::None,
            "history store writes".into(),
        )
    });
    out.push(if i.stuck_loops.is_empty() {
        result(
            "schedules_missed",
            Status::Ok,
            0.0,
            Unit::None,
            "every job loop is on schedule".into(),
        )
    } else {
        result(
            "schedules_missed",
            Status::Critical,
            i.stuck_loops.len() as f64,
            Unit::None,
            format!(
                "job loops stuck, their runs are missed: {}",
                i.stuck_loops.join(", ")
            ),
        )
    });
    let mut failing: Vec<(&String, &ChannelHealth, Duration)> = i
        .channels
        .iter()
        .filter_map(|(name, c)| {
            let since = c.failing_since?;
            let d = (i.now - since).to_std().ok()?;
            (d >= i.channel_failing_after).then_some((name, c, d))
        })
        .collect();
    failing.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(b.0)));
    out.push(match failing.first() {
        None => result(
            "alert_delivery",
            Status::Ok,
            0.0,
            Unit::None,
            "every alert channel delivers".into(),
        ),
        Some(_) => {
            let parts: Vec<String> = failing
                .iter()
                .map(|(name, c, d)| {
                    format!(
                        "{name} delivery failing for {} min ({} undelivered): {}",
                        d.as_secs() / 60,
                        c.pending,
                        c.last_error.as_deref().unwrap_or("-")
                    )
                })
                .collect();
            result(
                "alert_delivery",
                Status::Critical,
                (failing[0].2.as_secs() / 60) as f64,
                Unit::None,
                parts.join("; "),
            )
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{BufferLimits, DropCounts};

    fn store(reachable: bool, dropped: u64) -> StoreHealth {
        StoreHealth {
            reachable,
            failing_since: None,
            last_error: (!reachable).then(|| "connection refused".into()),
            backlog_records: 7,
            backlog_bytes: 0,
            limits: BufferLimits::default(),
            written_total: 0,
            dropped: DropCounts {
                overflow: dropped,
                ..DropCounts::default()
            },
            writer_restarts: 0,
        }
    }

    fn statuses(r: &[CheckResult]) -> Vec<(&str, Status)> {
        r.iter().map(|c| (c.check.as_str(), c.status)).collect()
    }

    #[test]
    fn the_daemon_judges_its_store_schedules_and_channels() {
        let now = Utc::now();
        let mut channels = HashMap::new();
        channels.insert(
            "email".to_string(),
            ChannelHealth {
                pending: 3,
                failing_since: Some(now - chrono::Duration::minutes(29)),
                last_error: Some("SMTP 535 authentication failed".into()),
                delivered: 0,
            },
        );
        channels.insert("slack".to_string(), ChannelHealth::default());
        let thirty = Duration::from_secs(1800);
        let base = Inputs {
            store: &store(true, 5),
            dropped_before: 5,
            channels: &channels,
            channel_failing_after: thirty,
            stuck_loops: &[],
            now,
        };
        assert_eq!(
            statuses(&checks(&base)),
            vec![
                ("history_store", Status::Ok),
                ("schedules_missed", Status::Ok),
                ("alert_delivery", Status::Ok),
            ],
            "29 minutes of failures is not yet 30"
        );

        let later = now + chrono::Duration::minutes(2);
        let stuck = vec!["health".to_string()];
        let bad = Inputs {
            store: &store(true, 9),
            stuck_loops: &stuck,
            now: later,
            ..base.clone()
        };
        let r = checks(&bad);
        assert_eq!(
            statuses(&r),
            vec![
                ("history_store", Status::Warning),
                ("schedules_missed", Status::Critical),
                ("alert_delivery", Status::Critical),
            ]
        );
        assert!(r[0].message.contains("dropped 4"), "{}", r[0].message);
        assert!(
            r[2].message.contains("email delivery failing for 31 min")
                && r[2].message.contains("SMTP 535"),
            "{}",
            r[2].message
        );

        let down = Inputs {
            store: &store(false, 5),
            ..base
        };
        let r = checks(&down);
        assert_eq!(r[0].status, Status::Critical);
        assert!(r[0].message.contains("unreachable"), "{}", r[0].message);
    }
}
