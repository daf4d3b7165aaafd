//! The event stream: what runs produce, published once. The history writer consumes it; the
//! alerter and the API's live state subscribe to the same stream.
//!
//! Publishing never waits: the stream is a bounded broadcast ring ([`CAPACITY`] events). A
//! consumer that falls behind by more than that loses the oldest events; every loss is
//! counted per consumer and logged, never silent. A consumer must therefore be quick
//! (the history writer only moves events into the store's own bounded buffer).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use tokio::sync::broadcast;

use crate::engine::TableStat;
use crate::health::{CheckResult, Status};
use crate::store::{CheckSource, JobRun, Record, RunEnd, Store};

/// Events the ring holds for a consumer that has not read them yet.
pub const CAPACITY: usize = 4096;

/// Something a run produced.
#[derive(Debug, Clone)]
pub enum Event {
    /// A run started (also: a tick recorded whole as skipped, with its end filled in).
    RunStarted(JobRun),
    RunFinished(RunEnd),
    /// One health round's judged check results.
    Checks {
        ts: DateTime<Utc>,
        target: String,
        run_id: String,
        results: Vec<CheckResult>,
    },
    /// A believed change of a target's (`check: None`) or a check's status.
    Transition {
        ts: DateTime<Utc>,
        target: String,
        check: Option<String>,
        from: Status,
        to: Status,
        message: String,
    },
    /// What a maintenance run did to each table.
    Maintenance {
        target: String,
        run_id: Option<String>,
        records: Vec<crate::maintenance::StepRecord>,
    },
    /// Where a running maintenance run is now (for the live state; not stored).
    Progress {
        run_id: String,
        progress: crate::jobs::maintenance::RunProgress,
    },
    /// Per-table statistics of one round (on the table-statistics cadence).
    TableStats {
        ts: DateTime<Utc>,
        target: String,
        stats: Vec<TableStat>,
    },
    /// One slow-query sample: the statements it kept, texts of statements new to it, the
    /// live long runners, and the snapshot that is the next sample's baseline (encoded).
    Sample {
        ts: DateTime<Utc>,
        target: String,
        statements: Vec<crate::sample::StatementDelta>,
        texts: Vec<(String, String)>,
        long_runners: Vec<crate::sample::LongRunner>,
        snapshot: Option<String>,
        /// The sample's `query_regression` result, stored with the check results. Not an
        /// [`Event::Checks`]: consumers read those as a health round's complete set; this
        /// is a partial set (the alerter lists it beside the round's checks, and the
        /// believed changes it makes follow as [`Event::Transition`]s).
        check: Option<CheckResult>,
    },
}

impl Event {
    /// The history records this event becomes: a round's check results and a round's
    /// table statistics each stay one record, so the writer sees the round whole (store
    /// on change needs to know what a round did not report); runs, transitions,
    /// maintenance steps and sample rows one record each.
    pub fn records(&self) -> Vec<Record> {
        match self {
            Event::RunStarted(r) => vec![Record::Run(r.clone())],
            Event::RunFinished(e) => vec![Record::RunEnd(e.clone())],
            Event::Checks {
                ts,
                target,
                run_id,
                results,
            } => vec![Record::Checks {
                ts: *ts,
                target: target.clone(),
                run_id: Some(run_id.clone()),
                source: CheckSource::Health,
                results: results.clone(),
            }],
            Event::Transition {
                ts,
                target,
                check,
                from,
                to,
                message,
            } => vec![Record::Transition {
                ts: *ts,
                target: target.clone(),
                check: check.clone(),
                from: *from,
                to: *to,
                message: message.clone(),
            }],
            Event::Maintenance {
                target,
                run_id,
                records,
            } => records
                .iter()
                .map(|r| Record::Maintenance {
                    target: target.clone(),
                    run_id: run_id.clone(),
                    record: Box::new(r.clone()),
                })
                .collect(),
            Event::Progress { .. } => Vec::new(),
            Event::TableStats { ts, target, stats } => vec![Record::Tables {
                ts: *ts,
                target: target.clone(),
                stats: stats.clone(),
            }],
            Event::Sample {
                ts,
                target,
                statements,
                texts,
                long_runners,
                snapshot,
                check,
            } => {
                let mut out: Vec<Record> = Vec::new();
                out.extend(check.iter().map(|c| Record::Checks {
                    ts: *ts,
                    target: target.clone(),
                    run_id: None,
                    source: CheckSource::Sample,
                    results: vec![c.clone()],
                }));
                out.extend(texts.iter().map(|(id, q)| Record::QueryText {
                    ts: *ts,
                    target: target.clone(),
                    queryid: id.clone(),
                    query: q.clone(),
                }));
                out.extend(statements.iter().map(|d| Record::QueryStat {
                    ts: *ts,
                    target: target.clone(),
                    delta: d.clone(),
                }));
                out.extend(long_runners.iter().map(|r| Record::LongQuery {
                    ts: *ts,
                    target: target.clone(),
                    runner: r.clone(),
                }));
                if let Some(s) = snapshot {
                    out.push(Record::SampleSnapshot {
                        target: target.clone(),
                        taken_at: *ts,
                        snapshot: s.clone(),
                    });
                }
                out
            }
        }
    }
}

/// A consumer's name and how many events it lost.
type Consumer = (&'static str, Arc<AtomicU64>);

/// The publishing side. Cheap to clone.
#[derive(Clone)]
pub struct Events {
    tx: broadcast::Sender<Arc<Event>>,
    published: Arc<AtomicU64>,
    consumers: Arc<std::sync::Mutex<Vec<Consumer>>>,
}

impl Default for Events {
    fn default() -> Self {
        Events::new(CAPACITY)
    }
}

impl Events {
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        Events {
            tx,
            published: Arc::default(),
            consumers: Arc::default(),
        }
    }

    /// Publishes an event to every consumer; never waits. With no consumer it is dropped
    /// (one-shot commands that keep no history).
    pub fn publish(&self, e: Event) {
        self.published.fetch_add(1, Ordering::Relaxed);
        let _ = self.tx.send(Arc::new(e));
    }

    /// A new consumer, named in logs and counters; it sees events published from now on.
    pub fn subscribe(&self, name: &'static str) -> Subscription {
        let lost = Arc::new(AtomicU64::new(0));
        self.consumers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((name, lost.clone()));
        Subscription {
            rx: self.tx.subscribe(),
            name,
            lost,
        }
    }

    /// Events published so far.
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    /// Events each consumer lost by falling behind, by consumer name.
    pub fn lost(&self) -> Vec<(&'static str, u64)> {
        self.consumers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(n, c)| (*n, c.load(Ordering::Relaxed)))
            .collect()
    }
}

/// The consuming side of one consumer.
pub struct Subscription {
    rx: broadcast::Receiver<Arc<Event>>,
    name: &'static str,
    lost: Arc<AtomicU64>,
}

impl Subscription {
    /// The next event; `None` once every publisher is gone and the ring is drained. Events
    /// lost by falling behind are counted and logged, then reading goes on.
    pub async fn recv(&mut self) -> Option<Arc<Event>> {
        loop {
            match self.rx.recv().await {
                Ok(e) => return Some(e),
                Err(broadcast::error::RecvError::Lagged(n)) => self.count_lost(n),
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// The next event if one is waiting (draining at shutdown).
    pub fn try_recv(&mut self) -> Option<Arc<Event>> {
        loop {
            match self.rx.try_recv() {
                Ok(e) => return Some(e),
                Err(broadcast::error::TryRecvError::Lagged(n)) => self.count_lost(n),
                Err(_) => return None,
            }
        }
    }

    fn count_lost(&self, n: u64) {
        let total = self.lost.fetch_add(n, Ordering::Relaxed) + n;
        tracing::warn!(
            consumer = self.name,
            lost = n,
            lost_total = total,
            "event consumer fell behind; the oldest events were lost"
        );
    }
}

/// Moves every event into the history store's buffer until `stop` is cancelled, then
/// drains what is already published. The store's buffer never blocks; what it cannot keep
/// it counts.
pub async fn history_writer(
    mut sub: Subscription,
    store: Store,
    stop: tokio_util::sync::CancellationToken,
) {
    loop {
        tokio::select! {
            biased;
            e = sub.recv() => match e {
                Some(e) => push(&store, &e),
                None => break,
            },
            _ = stop.cancelled() => {
                while let Some(e) = sub.try_recv() {
                    push(&store, &e);
                }
                break;
            }
        }
    }
}

fn push(store: &Store, e: &Event) {
    for r in e.records() {
        // Never waits on the store: it buffers (bounded) and counts what it cannot keep.
        store.push(r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::Unit;

    fn check(name: &str, unit: Unit, value: Option<f64>) -> CheckResult {
        CheckResult {
            check: name.into(),
            status: Status::Ok,
            value,
            unit,
            warning: None,
            critical: None,
            message: "m".into(),
            subject: None,
            scope: crate::health::Scope::Database,
        }
    }

    #[test]
    fn a_round_stays_one_record_and_a_sample_check_has_its_own_source() {
        let results = vec![
            check("connectivity", Unit::Milliseconds, Some(1.5)),
            check("sqlite_quick_check", Unit::None, Some(0.0)),
        ];
        let round = Event::Checks {
            ts: Utc::now(),
            target: "t".into(),
            run_id: "r".into(),
            results: results.clone(),
        };
        match round.records().as_slice() {
            [
                Record::Checks {
                    source,
                    results: r,
                    run_id,
                    ..
                },
            ] => {
                assert_eq!(*source, CheckSource::Health);
                assert_eq!(r.len(), 2);
                assert_eq!(run_id.as_deref(), Some("r"));
            }
            other => panic!("{other:?}"),
        }
        let sample = Event::Sample {
            ts: Utc::now(),
            target: "t".into(),
            statements: vec![],
            texts: vec![],
            long_runners: vec![],
            snapshot: None,
            check: Some(check("query_regression", Unit::Milliseconds, Some(3.0))),
        };
        assert!(matches!(
            sample.records().as_slice(),
            [Record::Checks { source: CheckSource::Sample, results, .. }] if results.len() == 1
        ));
    }

    #[tokio::test]
    async fn a_slow_consumer_loses_the_oldest_and_counts_them() {
        let events = Events::new(4);
        let mut sub = events.subscribe("test");
        for i in 0..10 {
            events.publish(Event::TableStats {
                ts: Utc::now(),
                target: format!("t{i}"),
                stats: vec![],
            });
        }
        let mut seen = Vec::new();
        while let Some(e) = sub.try_recv() {
            if let Event::TableStats { target, .. } = &*e {
                seen.push(target.clone());
            }
        }
        assert_eq!(seen, vec!["t6", "t7", "t8", "t9"]);
        assert_eq!(events.lost(), vec![("test", 6)]);
        assert_eq!(events.published(), 10);
    }
}
