//! `GET /metrics`: Prometheus text exposition through the `prometheus` crate (its output
//! passes Debian's `promtool check metrics`; see DEPENDENCIES.md for the prometheus-client
//! trap). Every scrape builds its families from the live state, the store's health and the
//! event stream's counters, so nothing is kept twice. Labels are bounded: target, check,
//! job, kind, outcome, action, channel names come from the config and the check catalogue;
//! no query text, no table names.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus::proto::{self, MetricFamily};
use prometheus::{Encoder, GaugeVec, IntCounterVec, Opts, Registry, TextEncoder};

use super::ApiState;
use crate::health::Status;
use crate::store::{Latency, WRITE_BUCKETS};

/// How long one rendering of `/metrics` is served again (Prometheus scrapes every 15 s or
/// so; this only merges scrapes that arrive together).
pub const FRESH: std::time::Duration = std::time::Duration::from_millis(500);

/// Nagios code of a status: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
pub fn status_code(s: Status) -> f64 {
    f64::from(s.exit_code())
}

struct Families {
    reg: Registry,
}

impl Families {
    fn gauge(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<GaugeVec, prometheus::Error> {
        let g = GaugeVec::new(Opts::new(name, help), labels)?;
        self.reg.register(Box::new(g.clone()))?;
        Ok(g)
    }

    fn counter(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<IntCounterVec, prometheus::Error> {
        let c = IntCounterVec::new(Opts::new(name, help), labels)?;
        self.reg.register(Box::new(c.clone()))?;
        Ok(c)
    }

    /// A float counter (seconds summed): a gauge family would be wrong for rate().
    fn fcounter(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<prometheus::CounterVec, prometheus::Error> {
        let c = prometheus::CounterVec::new(Opts::new(name, help), labels)?;
        self.reg.register(Box::new(c.clone()))?;
        Ok(c)
    }
}

/// The exposition text of everything the daemon exposes now.
pub fn render(s: &ApiState) -> Result<String, prometheus::Error> {
    let f = Families {
        reg: Registry::new(),
    };
    let check_status = f.gauge(
        "dbwarden_check_status",
        "Latest status of a check: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN",
        &["target", "check"],
    )?;
    let check_value = f.gauge(
        "dbwarden_check_value",
        "Latest deciding value of a check, in the unit named by the unit label",
        &["target", "check", "unit"],
    )?;
    let target_status = f.gauge(
        "dbwarden_target_status",
        "Worst status of a target's latest round: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN",
        &["target"],
    )?;
    let target_believed = f.gauge(
        "dbwarden_target_believed_status",
        "A target's believed status after hysteresis (what alerts follow), once a change was seen",
        &["target"],
    )?;
    let last_round = f.gauge(
        "dbwarden_target_last_round_timestamp_seconds",
        "Unix time of a target's latest health round",
        &["target"],
    )?;
    let round_duration = f.gauge(
        "dbwarden_round_duration_seconds",
        "Duration of a target's latest health run",
        &["target"],
    )?;
    let rounds = f.counter(
        "dbwarden_health_rounds_total",
        "Health rounds of a target since the daemon started",
        &["target"],
    )?;
    let runs = f.counter(
        "dbwarden_job_runs_total",
        "Finished job runs since the daemon started, by job, kind and outcome",
        &["job", "kind", "outcome"],
    )?;
    let run_seconds = f.fcounter(
        "dbwarden_job_run_duration_seconds_total",
        "Summed duration of finished job runs, by job, kind and outcome (divide by dbwarden_job_runs_total for the mean)",
        &["job", "kind", "outcome"],
    )?;
    let running = f.gauge(
        "dbwarden_job_runs_running",
        "Job runs going now, by kind",
        &["kind"],
    )?;
    let maintenance = f.counter(
        "dbwarden_maintenance_actions_total",
        "Maintenance steps since the daemon started, by target, action and outcome",
        &["target", "action", "outcome"],
    )?;
    let outbox_pending = f.gauge(
        "dbwarden_alert_outbox_pending",
        "Notifications not yet delivered, by channel",
        &["channel"],
    )?;
    let channel_failing = f.gauge(
        "dbwarden_alert_channel_failing",
        "1 while every delivery attempt of a channel fails",
        &["channel"],
    )?;
    let delivered = f.counter(
        "dbwarden_alert_delivered_total",
        "Notifications delivered since the daemon started, by channel",
        &["channel"],
    )?;
    let store_up = f.gauge(
        "dbwarden_history_store_up",
        "1 while the history store accepts writes",
        &[],
    )?;
    let backlog = f.gauge(
        "dbwarden_history_buffer_records",
        "History records waiting in memory to be written",
        &[],
    )?;
    let backlog_bytes = f.gauge(
        "dbwarden_history_buffer_bytes",
        "Estimated memory of the history records waiting to be written",
        &[],
    )?;
    let written = f.counter(
        "dbwarden_history_written_total",
        "History records written since the daemon started",
        &[],
    )?;
    let dropped = f.counter(
        "dbwarden_history_dropped_total",
        "History records dropped since the daemon started, by cause",
        &["cause"],
    )?;
    let writer_restarts = f.counter(
        "dbwarden_history_writer_restarts_total",
        "Times the history writer task crashed and was restarted",
        &[],
    )?;
    let events_published = f.counter(
        "dbwarden_events_published_total",
        "Events published on the in-process event stream",
        &[],
    )?;
    let events_lost = f.counter(
        "dbwarden_events_lost_total",
        "Events a consumer of the event stream lost by falling behind, by consumer",
        &["consumer"],
    )?;
    let targets_configured = f.gauge("dbwarden_targets", "Targets in the configuration", &[])?;
    let up_since = f.gauge(
        "dbwarden_start_time_seconds",
        "Unix time the daemon started",
        &[],
    )?;
    let pool = f.gauge(
        "dbwarden_pool_connections",
        "Connections of a target's pool, by state (open, idle, max), and callers waiting for one (waiting)",
        &["target", "state"],
    )?;
    #[cfg(target_os = "linux")]
    f.reg.register(Box::new(
        prometheus::process_collector::ProcessCollector::for_self(),
    ))?;

    let config = s.config();
    targets_configured
        .with_label_values::<&str>(&[])
        .set(config.targets.len() as f64);
    up_since
        .with_label_values::<&str>(&[])
        .set(s.started_at().timestamp_millis() as f64 / 1000.0);
    {
        let live = s.live().read();
        for (name, t) in &live.targets {
            for c in &t.checks {
                check_status
                    .with_label_values(&[name.as_str(), c.check.as_str()])
                    .set(status_code(c.status));
                if let Some(v) = c.value.filter(|v| v.is_finite()) {
                    check_value
                        .with_label_values(&[name.as_str(), c.check.as_str(), c.unit.as_str()])
                        .set(v);
                }
            }
            if let Some(st) = t.status {
                target_status
                    .with_label_values(&[name.as_str()])
                    .set(status_code(st));
            }
            if let Some(b) = t.believed {
                target_believed
                    .with_label_values(&[name.as_str()])
                    .set(status_code(b));
            }
            if let Some(ts) = t.last_round {
                last_round
                    .with_label_values(&[name.as_str()])
                    .set(ts.timestamp_millis() as f64 / 1000.0);
            }
        }
        for (target, (n, last)) in &live.counters.rounds {
            if *n > 0 {
                rounds.with_label_values(&[target.as_str()]).inc_by(*n);
            }
            if let Some(d) = last {
                round_duration.with_label_values(&[target.as_str()]).set(*d);
            }
        }
        for ((job, kind, outcome), (n, secs)) in &live.counters.runs {
            runs.with_label_values(&[job.as_str(), kind.as_str(), outcome])
                .inc_by(*n);
            if *secs > 0.0 {
                run_seconds
                    .with_label_values(&[job.as_str(), kind.as_str(), outcome])
                    .inc_by(*secs);
            }
        }
        for r in live.running.values() {
            running.with_label_values(&[r.kind.as_str()]).inc();
        }
        for ((target, action, outcome), n) in &live.counters.maintenance {
            maintenance
                .with_label_values(&[target.as_str(), action.as_str(), outcome.as_str()])
                .inc_by(*n);
        }
    }
    if let Some(h) = s.alert_health() {
        let h = h.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for (channel, c) in &h {
            outbox_pending
                .with_label_values(&[channel.as_str()])
                .set(c.pending as f64);
            channel_failing
                .with_label_values(&[channel.as_str()])
                .set(if c.failing_since.is_some() { 1.0 } else { 0.0 });
            if c.delivered > 0 {
                delivered
                    .with_label_values(&[channel.as_str()])
                    .inc_by(c.delivered);
            }
        }
    }
    let h = s.store().health();
    store_up
        .with_label_values::<&str>(&[])
        .set(if h.reachable { 1.0 } else { 0.0 });
    backlog
        .with_label_values::<&str>(&[])
        .set(h.backlog_records as f64);
    backlog_bytes
        .with_label_values::<&str>(&[])
        .set(h.backlog_bytes as f64);
    written
        .with_label_values::<&str>(&[])
        .inc_by(h.written_total);
    for (cause, n) in [
        ("overflow", h.dropped.overflow),
        ("bad_record", h.dropped.bad_record),
        ("shutdown", h.dropped.shutdown),
    ] {
        dropped.with_label_values(&[cause]).inc_by(n);
    }
    writer_restarts
        .with_label_values::<&str>(&[])
        .inc_by(h.writer_restarts);
    let events = &s.shared().events;
    events_published
        .with_label_values::<&str>(&[])
        .inc_by(events.published());
    for (consumer, n) in events.lost() {
        events_lost.with_label_values(&[consumer]).inc_by(n);
    }
    for (target, st) in s.shared().engines.pool_stats() {
        pool.with_label_values(&[target.as_str(), "open"])
            .set(f64::from(st.size));
        pool.with_label_values(&[target.as_str(), "idle"])
            .set(st.idle as f64);
        pool.with_label_values(&[target.as_str(), "max"])
            .set(f64::from(st.max));
        pool.with_label_values(&[target.as_str(), "waiting"])
            .set(st.waiting as f64);
    }
    let mut families = f.reg.gather();
    families.push(histogram(
        "dbwarden_history_write_seconds",
        "Duration of each batch write to the history store (one transaction of up to 2000 records), failed attempts included",
        &h.write_seconds,
    ));
    families.sort_by(|a, b| a.name().cmp(b.name()));
    let mut out = Vec::new();
    TextEncoder::new().encode(&families, &mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// A histogram family from counts kept elsewhere (the store's writer keeps its own, so
/// the store needs no exposition type); the encoder adds the `+Inf` bucket.
fn histogram(name: &str, help: &str, l: &Latency) -> MetricFamily {
    let mut h = proto::Histogram::default();
    h.set_sample_count(l.count);
    h.set_sample_sum(l.sum);
    h.set_bucket(
        WRITE_BUCKETS
            .iter()
            .zip(l.cumulative)
            .map(|(bound, n)| {
                let mut b = proto::Bucket::default();
                b.set_upper_bound(*bound);
                b.set_cumulative_count(n);
                b
            })
            .collect(),
    );
    let mut m = proto::Metric::default();
    m.set_histogram(h);
    let mut f = MetricFamily::default();
    f.set_name(name.to_string());
    f.set_help(help.to_string());
    f.set_field_type(proto::MetricType::HISTOGRAM);
    f.set_metric(vec![m]);
    f
}

/// `GET /metrics`.
pub async fn metrics(State(s): State<ApiState>) -> Response {
    match s.metrics_text().await {
        Ok(text) => (
            [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
            text.to_string(),
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "/metrics could not be rendered");
            super::ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "metrics_failed",
                "the metrics could not be rendered; the daemon's log says why",
            )
            .into_response()
        }
    }
}
