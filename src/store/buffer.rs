//! The bounded buffer between the producers (runs, rounds) and the writer task.
//!
//! Producers never wait on it: a push is synchronous and, past either bound (records or
//! bytes), the oldest queued records are dropped and counted. The writer takes a batch out
//! ("in flight"); what it could not write goes back to the front, so a store outage costs
//! memory up to the bound, never a record inside it. Everything here is pure bookkeeping,
//! tested without a store.

use std::collections::VecDeque;
use std::mem::size_of;

use super::Record;

/// How much the history buffer may hold before the oldest records are dropped: both bounds
/// apply (config `[daemon] history_buffer_records` and `history_buffer_bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct BufferLimits {
    /// Records waiting to be written, at most.
    pub records: usize,
    /// Their estimated memory ([`Record::approx_bytes`]), at most.
    pub bytes: usize,
}

impl Default for BufferLimits {
    /// 100,000 records or 64 MiB: about an hour of a 25-check round every 30 s for 60
    /// targets, well under 64 MiB at ~500 bytes per check result.
    fn default() -> Self {
        BufferLimits {
            records: 100_000,
            bytes: 64 * 1024 * 1024,
        }
    }
}

/// Queue slots kept when the queue drains (one batch's worth).
const KEEP_SLOTS: usize = super::BATCH_MAX;

/// A buffered record with its sequence number (flush tracking) and its memory estimate.
#[derive(Debug)]
pub(super) struct Entry {
    pub seq: u64,
    pub bytes: usize,
    pub record: Record,
}

/// What the writer holds right now: counted in the backlog, not droppable until returned.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    first_seq: u64,
    records: usize,
    bytes: usize,
}

/// The queue and its accounting.
#[derive(Debug)]
pub(super) struct Queue {
    limits: BufferLimits,
    entries: VecDeque<Entry>,
    bytes: usize,
    next_seq: u64,
    in_flight: Option<InFlight>,
}

impl Queue {
    pub fn new(limits: BufferLimits) -> Queue {
        Queue {
            limits: BufferLimits {
                records: limits.records.max(1),
                bytes: limits.bytes.max(1),
            },
            entries: VecDeque::new(),
            bytes: 0,
            next_seq: 0,
            in_flight: None,
        }
    }

    /// Queues a record; returns how many records were dropped to stay within the bounds
    /// (the oldest queued ones, possibly this one if it alone is too big).
    pub fn push(&mut self, record: Record) -> u64 {
        let bytes = entry_bytes(&record);
        self.entries.push_back(Entry {
            seq: self.next_seq,
            bytes,
            record,
        });
        self.next_seq += 1;
        self.bytes += bytes;
        self.enforce()
    }

    /// Takes up to `max` of the oldest records for writing; they stay in the backlog
    /// until [`Queue::give_back`].
    pub fn take(&mut self, max: usize) -> Vec<Entry> {
        let n = max.min(self.entries.len());
        let taken: Vec<Entry> = self.entries.drain(..n).collect();
        let bytes: usize = taken.iter().map(|e| e.bytes).sum();
        self.bytes -= bytes;
        self.in_flight = taken.first().map(|e| InFlight {
            first_seq: e.seq,
            records: taken.len(),
            bytes,
        });
        taken
    }

    /// Ends the in-flight batch: `unwritten` (a tail of what was taken, in order) goes
    /// back to the front. Returns how many records were dropped to stay within bounds.
    pub fn give_back(&mut self, unwritten: Vec<Entry>) -> u64 {
        self.in_flight = None;
        if unwritten.is_empty() && self.entries.is_empty() {
            // Drained after a backlog: return the slots (~270 bytes each, 27 MB for a full
            // default buffer) instead of keeping them for the next outage.
            self.entries.shrink_to(KEEP_SLOTS);
        }
        for e in unwritten.into_iter().rev() {
            self.bytes += e.bytes;
            self.entries.push_front(e);
        }
        self.enforce()
    }

    /// Empties the queue (shutdown); returns how many records it held.
    pub fn discard_all(&mut self) -> u64 {
        let n = self.entries.len() as u64;
        self.entries.clear();
        self.bytes = 0;
        n
    }

    pub fn queued(&self) -> usize {
        self.entries.len()
    }

    /// Records waiting, including the batch being written.
    pub fn records(&self) -> usize {
        self.entries.len() + self.in_flight.map_or(0, |f| f.records)
    }

    /// Estimated bytes waiting, including the batch being written.
    pub fn bytes(&self) -> usize {
        self.bytes + self.in_flight.map_or(0, |f| f.bytes)
    }

    /// The sequence number the next push gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Every record with a smaller sequence number is finished (written or dropped).
    pub fn oldest_pending(&self) -> u64 {
        let queued = self.entries.front().map_or(self.next_seq, |e| e.seq);
        self.in_flight.map_or(queued, |f| f.first_seq.min(queued))
    }

    /// Drops the oldest queued records while the backlog is over either bound.
    fn enforce(&mut self) -> u64 {
        let mut dropped = 0;
        while self.records() > self.limits.records || self.bytes() > self.limits.bytes {
            let Some(e) = self.entries.pop_front() else {
                break;
            };
            self.bytes -= e.bytes;
            dropped += 1;
        }
        dropped
    }
}

/// What one buffered record costs: the record, its queue slot bookkeeping and its strings.
fn entry_bytes(r: &Record) -> usize {
    size_of::<Entry>() - size_of::<Record>() + r.approx_bytes()
}

impl Record {
    /// Estimated memory of this record: the enum itself plus the heap capacity of its
    /// strings. Used for the buffer's byte bound.
    pub fn approx_bytes(&self) -> usize {
        fn s(x: &String) -> usize {
            x.capacity()
        }
        fn o(x: &Option<String>) -> usize {
            x.as_ref().map_or(0, s)
        }
        let heap = match self {
            Record::Run(r) => s(&r.id) + s(&r.job) + s(&r.kind) + o(&r.target) + o(&r.error),
            Record::RunEnd(e) => s(&e.id) + o(&e.error),
            Record::Checks {
                target,
                run_id,
                results,
                ..
            } => {
                let each: usize = results
                    .iter()
                    .map(|r| {
                        let scope = match &r.scope {
                            crate::health::Scope::Server(id) => s(id),
                            crate::health::Scope::Database => 0,
                        };
                        size_of::<crate::health::CheckResult>()
                            + s(&r.check)
                            + s(&r.message)
                            + o(&r.subject)
                            + scope
                    })
                    .sum();
                s(target) + o(run_id) + each
            }
            Record::Metric { target, metric, .. } => s(target) + s(metric),
            Record::Tables { target, stats, .. } => {
                s(target)
                    + stats
                        .iter()
                        .map(|t| size_of::<crate::engine::TableStat>() + s(&t.table))
                        .sum::<usize>()
            }
            Record::Maintenance {
                target,
                run_id,
                record,
            } => {
                s(target)
                    + o(run_id)
                    + size_of::<crate::maintenance::StepRecord>()
                    + s(&record.step.table)
                    + s(&record.step.sql_name)
                    + s(&record.step.reason)
                    + record.outcome.why().map_or(0, str::len)
            }
            Record::Transition {
                target,
                check,
                message,
                ..
            } => s(target) + o(check) + s(message),
            Record::QueryStat { target, delta, .. } => {
                s(target) + s(&delta.key.id) + s(&delta.key.scope)
            }
            Record::QueryText {
                target,
                queryid,
                query,
                ..
            } => s(target) + s(queryid) + s(query),
            Record::LongQuery { target, runner, .. } => {
                s(target)
                    + o(&runner.user)
                    + o(&runner.application)
                    + o(&runner.state)
                    + o(&runner.wait_event)
                    + s(&runner.query)
            }
            Record::SampleSnapshot {
                target, snapshot, ..
            } => s(target) + s(snapshot),
        };
        size_of::<Record>() + heap
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use chrono::Utc;

    /// A metric sample with value `i` (also used by the store's own tests).
    pub(in crate::store) fn metric(i: usize) -> Record {
        Record::Metric {
            ts: Utc::now(),
            target: "t".into(),
            metric: format!("m{i}"),
            value: i as f64,
        }
    }

    fn values(q: &Queue) -> Vec<f64> {
        q.entries
            .iter()
            .map(|e| match &e.record {
                Record::Metric { value, .. } => *value,
                _ => f64::NAN,
            })
            .collect()
    }

    #[test]
    fn past_the_record_bound_the_oldest_are_dropped() {
        let mut q = Queue::new(BufferLimits {
            records: 3,
            bytes: usize::MAX,
        });
        let dropped: u64 = (0..5).map(|i| q.push(metric(i))).sum();
        assert_eq!(dropped, 2);
        assert_eq!(values(&q), vec![2.0, 3.0, 4.0]);
        assert_eq!(q.records(), 3);
    }

    #[test]
    fn past_the_byte_bound_the_oldest_are_dropped() {
        let one = entry_bytes(&metric(0));
        let mut q = Queue::new(BufferLimits {
            records: usize::MAX,
            bytes: one * 2 + one / 2,
        });
        let dropped: u64 = (0..4).map(|i| q.push(metric(i))).sum();
        assert_eq!(dropped, 2);
        assert_eq!(values(&q), vec![2.0, 3.0]);
        assert!(q.bytes() <= one * 2 + one / 2);
    }

    #[test]
    fn a_record_bigger_than_the_byte_bound_is_dropped_itself() {
        let mut q = Queue::new(BufferLimits {
            records: 10,
            bytes: 10,
        });
        assert_eq!(q.push(metric(0)), 1);
        assert_eq!(q.records(), 0);
        assert_eq!(q.bytes(), 0);
    }

    #[test]
    fn a_batch_in_flight_counts_and_comes_back_in_order() {
        let mut q = Queue::new(BufferLimits {
            records: 4,
            bytes: usize::MAX,
        });
        for i in 0..3 {
            q.push(metric(i));
        }
        let taken = q.take(2);
        assert_eq!(taken.len(), 2);
        assert_eq!(q.records(), 3);
        assert_eq!(q.oldest_pending(), 0);
        // Two more pushes: one over the bound; the in-flight batch is not droppable, so
        // the oldest queued record (2) goes.
        assert_eq!(q.push(metric(3)), 0);
        assert_eq!(q.push(metric(4)), 1);
        assert_eq!(values(&q), vec![3.0, 4.0]);
        // The first taken record was written; the second comes back to the front.
        let mut taken = taken;
        let unwritten = taken.split_off(1);
        assert_eq!(q.give_back(unwritten), 0);
        assert_eq!(values(&q), vec![1.0, 3.0, 4.0]);
        assert_eq!(q.oldest_pending(), 1);
        assert_eq!(q.records(), 3);
    }

    #[test]
    fn records_given_back_over_the_bound_are_the_ones_dropped() {
        let mut q = Queue::new(BufferLimits {
            records: 2,
            bytes: usize::MAX,
        });
        q.push(metric(0));
        q.push(metric(1));
        let taken = q.take(2);
        // While both are in flight every new push is over the bound and is dropped.
        assert_eq!(q.push(metric(2)), 1);
        assert_eq!(q.give_back(taken), 0);
        assert_eq!(q.push(metric(3)), 1);
        assert_eq!(values(&q), vec![1.0, 3.0]);
    }

    #[test]
    fn oldest_pending_tracks_what_is_finished() {
        let mut q = Queue::new(BufferLimits::default());
        assert_eq!(q.oldest_pending(), 0);
        q.push(metric(0));
        q.push(metric(1));
        assert_eq!(q.oldest_pending(), 0);
        let taken = q.take(10);
        assert_eq!(taken.len(), 2);
        assert_eq!(q.give_back(Vec::new()), 0);
        assert_eq!(q.oldest_pending(), 2);

        assert_eq!(q.next_seq(), 2);
        q.push(metric(2));
        assert_eq!(q.discard_all(), 1);
        assert_eq!(q.oldest_pending(), 3);
    }

    #[test]
    fn a_drained_queue_gives_its_slots_back() {
        let mut q = Queue::new(BufferLimits::default());
        for i in 0..10_000 {
            q.push(metric(i));
        }
        let taken = q.take(10_000);
        assert_eq!(taken.len(), 10_000);
        q.give_back(Vec::new());
        assert!(q.entries.capacity() < 10_000, "{}", q.entries.capacity());
    }

    #[test]
    fn the_estimate_counts_strings() {
        let small = metric(0).approx_bytes();
        let big = Record::Metric {
            ts: Utc::now(),
            target: "x".repeat(1000),
            metric: "m".into(),
            value: 0.0,
        }
        .approx_bytes();
        assert!(big >= small + 990, "{small} {big}");
        assert!(small >= size_of::<Record>());
    }
}
