//! Deltas between two statement snapshots (pure; unit-tested with crafted snapshots).
//!
//! Rules, in order:
//! - no previous snapshot: a baseline, nothing reported;
//! - the whole statistics were reset in between (server restarted, `stats_reset` moved,
//!   the eviction counter `dealloc` went down): a new baseline for everything;
//! - per statement: absent from the previous snapshot → every call is new (the entry was
//!   created after the previous snapshot); any counter lower than before (the entry was
//!   reset or evicted and came back) → a new baseline for that entry only; an entry whose
//!   own creation time (`stats_since`, PostgreSQL 17+) changed counts all its calls as new
//!   when it was created after the previous snapshot, else it is a new baseline.
//!
//! A delta is therefore never negative, and never more than the work done in the interval.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

/// Identifies one statement entry. PostgreSQL: `id` is the queryid, `scope` is
/// `userid/dbid/toplevel`; MySQL: the digest and the schema.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StatementKey {
    pub id: String,
    pub scope: String,
}

/// Lifetime counters of one statement entry (times in milliseconds).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counters {
    pub calls: i64,
    pub total_ms: f64,
    /// Lifetime maximum of one execution: not a counter, carried as read.
    pub max_ms: f64,
    pub rows: i64,
    pub shared_hit: i64,
    pub shared_read: i64,
    pub temp_read: i64,
    pub temp_written: i64,
    /// Planning time (PostgreSQL with `pg_stat_statements.track_planning`), else 0.
    pub plan_ms: f64,
    /// Rows read to produce the result (MySQL `SUM_ROWS_EXAMINED`), else 0.
    pub rows_examined: i64,
    /// Executions that used no index (MySQL `SUM_NO_INDEX_USED`), else 0.
    pub no_index_used: i64,
    /// When this entry's counters started (PostgreSQL 17+ `stats_since`, MySQL
    /// `FIRST_SEEN`).
    pub since: Option<DateTime<Utc>>,
}

impl Counters {
    /// Whether any cumulative counter is lower than in `before` (the entry was reset).
    fn went_backwards(&self, before: &Counters) -> bool {
        self.calls < before.calls
            || self.total_ms < before.total_ms
            || self.rows < before.rows
            || self.shared_hit < before.shared_hit
            || self.shared_read < before.shared_read
            || self.temp_read < before.temp_read
            || self.temp_written < before.temp_written
            || self.plan_ms < before.plan_ms
            || self.rows_examined < before.rows_examined
            || self.no_index_used < before.no_index_used
    }
}

/// Facts about the whole statistics that reveal a full reset.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Epoch {
    /// `pg_postmaster_start_time()` (MySQL: now − uptime, rounded).
    pub server_start: Option<DateTime<Utc>>,
    /// `pg_stat_statements_info.stats_reset` (14+).
    pub stats_reset: Option<DateTime<Utc>>,
    /// `pg_stat_statements_info.dealloc` (14+): entries evicted since the last full reset.
    pub dealloc: Option<i64>,
}

/// One reading of every statement entry.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub taken_at: DateTime<Utc>,
    pub epoch: Epoch,
    pub entries: HashMap<StatementKey, Counters>,
}

/// The work one statement did between two snapshots.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatementDelta {
    pub key: StatementKey,
    pub calls: i64,
    pub total_ms: f64,
    pub mean_ms: f64,
    /// Lifetime maximum as read now (see [`Counters::max_ms`]).
    pub max_ms: f64,
    pub rows: i64,
    pub shared_hit: i64,
    pub shared_read: i64,
    pub temp_read: i64,
    pub temp_written: i64,
    pub plan_ms: f64,
    pub rows_examined: i64,
    pub no_index_used: i64,
    /// Absent from the previous snapshot: all of its calls counted.
    pub new: bool,
}

/// Which statements to keep.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Selection {
    /// The N statements with the most execution time in the interval.
    pub top_n: usize,
    /// Plus every statement whose mean time in the interval is at least this.
    pub slow_ms: f64,
}

/// The result of comparing two snapshots.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Nothing to report: the current snapshot is the new baseline, for this reason.
    Baseline(String),
    Deltas {
        /// The selected statements, most total time first.
        statements: Vec<StatementDelta>,
        /// Statements that ran in the interval (selected or not).
        active: usize,
        /// Entries that went backwards and got a new baseline of their own.
        entries_reset: usize,
    },
}

/// Compares `previous` (if any) with `current` and selects what to keep.
pub fn compute(previous: Option<&Snapshot>, current: &Snapshot, sel: Selection) -> Outcome {
    let Some(prev) = previous else {
        return Outcome::Baseline("first sample of this target: baseline".into());
    };
    if let Some(reason) = full_reset(prev, current) {
        return Outcome::Baseline(format!("{reason}: new baseline"));
    }
    // Keys are borrowed until the selection is made: only the kept ones are cloned.
    let mut out: Vec<(&StatementKey, StatementDelta)> = Vec::new();
    let mut entries_reset = 0;
    for (key, now) in &current.entries {
        let (base, new) = match prev.entries.get(key) {
            None => (Counters::default(), true),
            Some(before) if now.since != before.since && now.since.is_some() => {
                if now.since.is_some_and(|s| s >= prev.taken_at) {
                    (Counters::default(), true)
                } else {
                    entries_reset += 1;
                    continue;
                }
            }
            Some(before) if now.went_backwards(before) => {
                entries_reset += 1;
                continue;
            }
            Some(before) => (*before, false),
        };
        let calls = now.calls - base.calls;
        if calls <= 0 {
            continue;
        }
        let total_ms = now.total_ms - base.total_ms;
        out.push((
            key,
            StatementDelta {
                key: StatementKey::default(),
                calls,
                total_ms,
                mean_ms: total_ms / calls as f64,
                max_ms: now.max_ms,
                rows: now.rows - base.rows,
                shared_hit: now.shared_hit - base.shared_hit,
                shared_read: now.shared_read - base.shared_read,
                temp_read: now.temp_read - base.temp_read,
                temp_written: now.temp_written - base.temp_written,
                plan_ms: now.plan_ms - base.plan_ms,
                rows_examined: now.rows_examined - base.rows_examined,
                no_index_used: now.no_index_used - base.no_index_used,
                new,
            },
        ));
    }
    let active = out.len();
    // Most time first; ties by key so the order is stable.
    type Item<'a> = (&'a StatementKey, StatementDelta);
    let order =
        |(ka, a): &Item, (kb, b): &Item| b.total_ms.total_cmp(&a.total_ms).then_with(|| ka.cmp(kb));
    // The top N by a linear-time selection, not a sort of every active statement; then
    // the slow ones among the rest; only what is kept is sorted.
    let top = sel.top_n.min(out.len());
    if top > 0 && top < out.len() {
        out.select_nth_unstable_by(top - 1, order);
    }
    let rest = out.split_off(top);
    out.extend(rest.into_iter().filter(|(_, d)| d.mean_ms >= sel.slow_ms));
    out.sort_unstable_by(order);
    let out: Vec<StatementDelta> = out
        .into_iter()
        .map(|(k, d)| StatementDelta {
            key: k.clone(),
            ..d
        })
        .collect();
    Outcome::Deltas {
        statements: out,
        active,
        entries_reset,
    }
}

/// Why every entry must start over, if it must.
fn full_reset(prev: &Snapshot, now: &Snapshot) -> Option<&'static str> {
    let (p, n) = (&prev.epoch, &now.epoch);
    // MySQL's start time is derived from its uptime in whole seconds and may wobble by
    // one; no server restarts twice within that.
    if let Some(a) = p.server_start
        && n.server_start
            .is_none_or(|b| (b - a).num_seconds().abs() > 2)
    {
        return Some("the server restarted since the previous sample");
    }
    if n.stats_reset != p.stats_reset {
        return Some("the statement statistics were reset (stats_reset moved)");
    }
    if let (Some(a), Some(b)) = (p.dealloc, n.dealloc)
        && b < a
    {
        return Some("the statement statistics were reset (dealloc went down)");
    }
    if now.taken_at < prev.taken_at {
        return Some("the previous sample is newer than this one (clock moved back)");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap_or_default()
    }

    fn key(id: &str) -> StatementKey {
        StatementKey {
            id: id.into(),
            scope: "10/5/t".into(),
        }
    }

    fn c(calls: i64, total_ms: f64) -> Counters {
        Counters {
            calls,
            total_ms,
            max_ms: 1.0,
            rows: calls,
            shared_hit: calls * 10,
            ..Counters::default()
        }
    }

    fn snap(at: i64, entries: &[(&str, Counters)]) -> Snapshot {
        Snapshot {
            taken_at: t(at),
            epoch: Epoch {
                server_start: Some(t(-100)),
                stats_reset: Some(t(-50)),
                dealloc: Some(0),
            },
            entries: entries.iter().map(|(k, c)| (key(k), *c)).collect(),
        }
    }

    const SEL: Selection = Selection {
        top_n: 2,
        slow_ms: 1000.0,
    };

    fn deltas(o: Outcome) -> (Vec<StatementDelta>, usize, usize) {
        match o {
            Outcome::Deltas {
                statements,
                active,
                entries_reset,
            } => (statements, active, entries_reset),
            Outcome::Baseline(r) => panic!("unexpected baseline: {r}"),
        }
    }

    fn ids(v: &[StatementDelta]) -> Vec<&str> {
        v.iter().map(|d| d.key.id.as_str()).collect()
    }

    #[test]
    fn the_first_snapshot_is_a_baseline() {
        let now = snap(60, &[("a", c(5, 10.0))]);
        assert!(matches!(compute(None, &now, SEL), Outcome::Baseline(r) if r.contains("first")));
    }

    #[test]
    fn deltas_are_the_increase_and_new_statements_count_every_call() {
        let prev = snap(0, &[("a", c(5, 10.0))]);
        let now = snap(60, &[("a", c(8, 16.0)), ("b", c(3, 30.0))]);
        let (v, active, reset) = deltas(compute(Some(&prev), &now, SEL));
        assert_eq!((active, reset), (2, 0));
        assert_eq!(ids(&v), ["b", "a"], "most total time first");
        assert_eq!((v[0].calls, v[0].total_ms, v[0].mean_ms), (3, 30.0, 10.0));
        assert!(v[0].new);
        assert_eq!((v[1].calls, v[1].total_ms, v[1].mean_ms), (3, 6.0, 2.0));
        assert_eq!((v[1].rows, v[1].shared_hit), (3, 30));
        assert!(!v[1].new);
    }

    #[test]
    fn idle_statements_are_not_reported() {
        let prev = snap(0, &[("a", c(5, 10.0))]);
        let now = snap(60, &[("a", c(5, 10.0))]);
        let (v, active, _) = deltas(compute(Some(&prev), &now, SEL));
        assert!(v.is_empty());
        assert_eq!(active, 0);
    }

    #[test]
    fn top_n_by_total_time_plus_every_slow_statement() {
        let prev = snap(0, &[]);
        // d: few calls but a mean of 2 s, below the top 2 by total time: kept anyway.
        // e: mean exactly at the threshold: kept. c: fast and not in the top 2: dropped.
        let now = snap(
            60,
            &[
                ("a", c(10_000, 9_000.0)),
                ("b", c(5_000, 8_000.0)),
                ("c", c(100, 100.0)),
                ("d", c(2, 4_000.0)),
                ("e", c(1, 1_000.0)),
            ],
        );
        let (v, active, _) = deltas(compute(Some(&prev), &now, SEL));
        assert_eq!(active, 5);
        assert_eq!(ids(&v), ["a", "b", "d", "e"]);
    }

    #[test]
    fn one_entry_going_backwards_gets_its_own_baseline() {
        let prev = snap(0, &[("a", c(100, 500.0)), ("b", c(10, 10.0))]);
        // a was reset (pg_stat_statements_reset(0, 0, queryid)) and ran 4 times since.
        let now = snap(60, &[("a", c(4, 20.0)), ("b", c(12, 14.0))]);
        let (v, active, reset) = deltas(compute(Some(&prev), &now, SEL));
        assert_eq!((active, reset), (1, 1));
        assert_eq!(ids(&v), ["b"]);
        // From then on a's deltas are measured from its new baseline.
        let later = snap(120, &[("a", c(6, 30.0)), ("b", c(12, 14.0))]);
        let (v, _, reset) = deltas(compute(Some(&now), &later, SEL));
        assert_eq!(reset, 0);
        assert_eq!((v[0].calls, v[0].total_ms), (2, 10.0));
    }

    #[test]
    fn any_cumulative_counter_going_backwards_is_a_reset_of_that_entry() {
        let prev = snap(0, &[("a", c(10, 100.0))]);
        let mut back = c(12, 120.0);
        back.shared_hit = 5; // lower than 100 before
        let now = snap(60, &[("a", back)]);
        let (v, _, reset) = deltas(compute(Some(&prev), &now, SEL));
        assert!(v.is_empty());
        assert_eq!(reset, 1);
    }

    #[test]
    fn full_resets_start_a_new_baseline_for_everything() {
        let prev = snap(0, &[("a", c(100, 500.0))]);
        let mut now = snap(60, &[("a", c(150, 900.0))]);
        now.epoch.stats_reset = Some(t(30));
        assert!(
            matches!(compute(Some(&prev), &now, SEL), Outcome::Baseline(r) if r.contains("stats_reset"))
        );
        let mut now = snap(60, &[("a", c(150, 900.0))]);
        now.epoch.server_start = Some(t(20));
        assert!(
            matches!(compute(Some(&prev), &now, SEL), Outcome::Baseline(r) if r.contains("restarted"))
        );
        let mut prev_d = prev.clone();
        prev_d.epoch.dealloc = Some(7);
        let now = snap(60, &[("a", c(150, 900.0))]);
        assert!(
            matches!(compute(Some(&prev_d), &now, SEL), Outcome::Baseline(r) if r.contains("dealloc"))
        );
    }

    #[test]
    fn a_start_time_wobbling_by_a_second_is_not_a_restart() {
        let prev = snap(0, &[("a", c(1, 1.0))]);
        let mut now = snap(60, &[("a", c(2, 2.0))]);
        now.epoch.server_start = Some(t(-99));
        assert!(matches!(
            compute(Some(&prev), &now, SEL),
            Outcome::Deltas { .. }
        ));
        now.epoch.server_start = Some(t(-90));
        assert!(matches!(
            compute(Some(&prev), &now, SEL),
            Outcome::Baseline(_)
        ));
    }

    #[test]
    fn evictions_alone_are_not_a_full_reset() {
        let prev = snap(0, &[("a", c(100, 500.0)), ("b", c(50, 50.0))]);
        let mut now = snap(60, &[("a", c(110, 600.0)), ("b", c(3, 3.0))]);
        now.epoch.dealloc = Some(4); // b was evicted and came back
        let (v, _, reset) = deltas(compute(Some(&prev), &now, SEL));
        assert_eq!(ids(&v), ["a"]);
        assert_eq!(reset, 1);
    }

    #[test]
    fn a_recreated_entry_counts_from_its_own_start() {
        let mut old = c(100, 500.0);
        old.since = Some(t(-10));
        let prev = snap(0, &[("a", old), ("b", old)]);
        // a was recreated after the previous snapshot: all 3 calls are in the interval.
        let mut a = c(3, 3.0);
        a.since = Some(t(30));
        // b's reported start moved but to before the previous snapshot: cannot tell.
        let mut b = c(200, 900.0);
        b.since = Some(t(-5));
        let now = snap(60, &[("a", a), ("b", b)]);
        let (v, _, reset) = deltas(compute(Some(&prev), &now, SEL));
        assert_eq!(ids(&v), ["a"]);
        assert_eq!((v[0].calls, v[0].new), (3, true));
        assert_eq!(reset, 1);
    }

    #[test]
    fn never_negative_whatever_the_counters_do() {
        // Exhaustive over small counter values: every delta is ≥ 0 and ≤ the current value.
        for pc in 0..4 {
            for nc in 0..4 {
                for pt in 0..4 {
                    for nt in 0..4 {
                        let prev = snap(0, &[("a", c(pc, pt as f64))]);
                        let now = snap(60, &[("a", c(nc, nt as f64))]);
                        if let Outcome::Deltas { statements, .. } = compute(Some(&prev), &now, SEL)
                        {
                            for d in statements {
                                assert!(d.calls > 0 && d.calls <= nc, "{d:?}");
                                assert!(d.total_ms >= 0.0 && d.total_ms <= nt as f64, "{d:?}");
                                assert!(d.rows >= 0 && d.shared_hit >= 0, "{d:?}");
                            }
                        }
                    }
                }
            }
        }
    }
}
