//! Store on change: the writer's per-target cache of series (id, last written value,
//! last_ts) and open check periods, and the pure decisions made against it — which samples
//! a round writes, when a period is extended or a new one opened.
//!
//! Rules (README "History"):
//! - a value is written as a sample only when it differs from its series' last written
//!   value; otherwise only `series.last_ts` advances;
//! - a series reported (with a value) in the previous round of the same source of its
//!   target but absent or value-less now gets a NULL sample at this round ("no data");
//! - a series with a value in the store that was not in this process's previous round
//!   (a restart, a reload of the cache) or whose last confirmation is older than the gap
//!   limit first gets a NULL at its old `last_ts + 1 ms`, so the step function does not
//!   claim the value held while nobody was looking.
//!
//! The cache holds what the store holds and is reloaded from it lazily, a target at a
//! time: a batch works on targets checked out of the cache and checks them back in only
//! after its transaction committed, so a rolled-back batch leaves no trace. What only this
//! process knows (the previous round's series) is kept apart and restored on a rollback.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::{Record, ms};
use crate::engine::TableStat;
use crate::health::{CheckResult, Unit};

/// Series held in the cache at most; past it the least recently used targets are evicted
/// (they reload from the store when next written). ~120 bytes each: ~24 MB.
pub(super) const CACHE_SERIES_MAX: usize = 200_000;
/// A round later than this after the previous one (or after a series' last confirmation)
/// counts as a gap in watching, unless rounds are slower: see [`gap_limit`].
const GAP_MIN_MS: i64 = 10 * 60 * 1000;

/// (metric, label) of a series of one target.
pub(super) type SeriesKey = (String, String);

/// What the store holds about one series.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct SeriesState {
    pub id: i64,
    /// The last written sample's value (None: NULL, or no sample yet).
    pub last: Option<f64>,
    pub last_ts: Option<i64>,
}

/// A check's newest status period.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Period {
    pub id: i64,
    pub status: String,
    pub from_ts: i64,
    pub to_ts: i64,
    pub value_min: Option<f64>,
    pub value_max: Option<f64>,
    pub rounds: i64,
    pub unit: String,
    /// The period's last message.
    pub message: String,
}

/// One target's state as the store has it (reloadable).
#[derive(Debug, Clone, Default)]
pub(super) struct TargetDb {
    pub ids: HashMap<SeriesKey, i64>,
    pub series: HashMap<i64, SeriesState>,
    pub periods: HashMap<String, Period>,
}

/// What only this process knows about a target: per source ("health", "table", ...), the
/// series that had a value in its previous round, and that round's time and interval.
#[derive(Debug, Clone, Default)]
pub(super) struct TargetRounds {
    pub sources: HashMap<String, SourceRound>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct SourceRound {
    pub ts: i64,
    pub interval: Option<i64>,
    pub with_value: HashSet<i64>,
    /// The checks the round reported (for check periods).
    pub checks: HashSet<String>,
}

/// A sample to write.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct SampleRow {
    pub series_id: i64,
    pub ts: i64,
    pub value: Option<f64>,
}

/// The longest pause between two rounds of a source that is not a gap in watching: three
/// intervals, at least ten minutes.
pub(super) fn gap_limit(interval: Option<i64>) -> i64 {
    interval.map_or(GAP_MIN_MS, |i| (3 * i).max(GAP_MIN_MS))
}

fn same(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(x), Some(y)) => x.to_bits() == y.to_bits() || x == y,
        (None, None) => true,
        _ => false,
    }
}

/// One round of `source` at `ts` reporting `reported` (series id, value; None = reported
/// without a value). Updates the states and returns the samples to write; every series
/// touched has `last_ts = ts` afterwards (the caller writes it). Series ids must be in
/// `db.series` already (new ones with `last: None`).
pub(super) fn observe(
    db: &mut TargetDb,
    rounds: &mut TargetRounds,
    source: &str,
    ts: i64,
    reported: &[(i64, Option<f64>)],
) -> Vec<SampleRow> {
    let prev = rounds.sources.remove(source);
    let gap = prev
        .as_ref()
        .map(|p| ts - p.ts > gap_limit(p.interval))
        .unwrap_or(true);
    let mut out = Vec::new();
    let mut with_value = HashSet::new();
    let mut seen = HashSet::new();
    for &(id, value) in reported {
        seen.insert(id);
        let Some(st) = db.series.get_mut(&id) else {
            continue;
        };
        let value = value.filter(|v| v.is_finite());
        match value {
            Some(v) => {
                let was_watched = !gap && prev.as_ref().is_some_and(|p| p.with_value.contains(&id));
                if !was_watched
                    && st.last.is_some()
                    && let Some(l) = st.last_ts
                    && ts > l + 1
                {
                    out.push(SampleRow {
                        series_id: id,
                        ts: l + 1,
                        value: None,
                    });
                    st.last = None;
                }
                if !same(st.last, Some(v)) || st.last_ts.is_none() {
                    out.push(SampleRow {
                        series_id: id,
                        ts,
                        value: Some(v),
                    });
                    st.last = Some(v);
                }
                with_value.insert(id);
            }
            None => no_data(st, ts, &mut out),
        }
        st.last_ts = Some(st.last_ts.map_or(ts, |l| l.max(ts)));
    }
    if let Some(p) = &prev {
        let mut gone: Vec<i64> = p.with_value.difference(&seen).copied().collect();
        gone.sort_unstable();
        for id in gone {
            if let Some(st) = db.series.get_mut(&id) {
                no_data(st, ts, &mut out);
            }
        }
    }
    rounds.sources.insert(
        source.to_string(),
        SourceRound {
            ts,
            interval: prev.map(|p| ts - p.ts).filter(|i| *i > 0),
            with_value,
            checks: HashSet::new(),
        },
    );
    out
}

/// "No data from `ts` on" for a series that had a value.
fn no_data(st: &mut SeriesState, ts: i64, out: &mut Vec<SampleRow>) {
    if st.last.is_some() {
        out.push(SampleRow {
            series_id: st.id,
            ts,
            value: None,
        });
        st.last = None;
        st.last_ts = Some(st.last_ts.map_or(ts, |l| l.max(ts)));
    }
}

/// What a check's result does to its periods.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum PeriodStep {
    /// The open period goes on (its new state is in the cache).
    Extend(i64),
    /// A new period begins (id 0 until inserted); the period it ends, if any.
    Open(Option<Period>),
}

/// A check result of a round at `ts`: extends the check's newest period when the status
/// is the same and the check was in this process's previous round of its source
/// (`watched`: no restart or pause in between), else starts a new one (id 0 until the
/// caller inserts it).
#[allow(clippy::too_many_arguments)]
pub(super) fn period_step(
    db: &mut TargetDb,
    check: &str,
    status: &str,
    ts: i64,
    value: Option<f64>,
    unit: &str,
    message: &str,
    watched: bool,
) -> PeriodStep {
    let value = value.filter(|v| v.is_finite());
    if let Some(p) = db.periods.get_mut(check)
        && watched
        && p.status == status
        && ts >= p.to_ts
    {
        p.to_ts = ts;
        p.rounds += 1;
        unit.clone_into(&mut p.unit);
        message.clone_into(&mut p.message);
        if let Some(v) = value {
            p.value_min = Some(p.value_min.map_or(v, |m| m.min(v)));
            p.value_max = Some(p.value_max.map_or(v, |m| m.max(v)));
        }
        return PeriodStep::Extend(p.id);
    }
    let ended = db.periods.insert(
        check.to_string(),
        Period {
            id: 0,
            status: status.to_string(),
            from_ts: ts,
            to_ts: ts,
            value_min: value,
            value_max: value,
            rounds: 1,
            unit: unit.to_string(),
            message: message.to_string(),
        },
    );
    PeriodStep::Open(ended)
}

/// A series a batch creates: provisional (negative) id until inserted.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct NewSeries {
    pub tmp: i64,
    pub target: String,
    pub metric: String,
    pub label: String,
    pub unit: String,
}

/// The latest result of a check, for `check_latest`.
#[derive(Debug, Clone)]
pub(super) struct LatestCheck {
    pub ts: i64,
    pub run_id: Option<String>,
    pub result: CheckResult,
    pub since: i64,
}

/// What one batch of rounds writes, decided against the cache.
#[derive(Debug, Default)]
pub(super) struct Plan {
    pub new_series: Vec<NewSeries>,
    pub samples: Vec<SampleRow>,
    /// Series confirmed (reported, or marked without data) and when.
    pub confirm: HashMap<i64, i64>,
    /// Checks whose current period (in the cache) the batch changed.
    pub periods: Vec<(String, String)>,
    /// Periods the batch changed and then ended (a status change within the batch).
    pub ended: Vec<(String, String, Period)>,
    pub latest_checks: BTreeMap<(String, String), LatestCheck>,
    pub latest_tables: BTreeMap<(String, String), (i64, TableStat)>,
}

/// The `table.*` series of a table's statistics: metric, unit, value.
pub(super) fn table_fields(t: &TableStat) -> [(&'static str, &'static str, Option<f64>); 12] {
    let secs = |v: Option<i64>| v.map(|x| x as f64);
    [
        ("table.rows", "count", t.rows),
        ("table.dead_rows", "count", t.dead_rows),
        ("table.size_bytes", "bytes", t.size_bytes),
        ("table.inserts", "count", t.inserts_delta),
        ("table.updates", "count", t.updates_delta),
        ("table.deletes", "count", t.deletes_delta),
        ("table.seq_scans", "count", t.seq_scans),
        ("table.idx_scans", "count", t.idx_scans),
        ("table.last_vacuum", "unix_seconds", secs(t.last_vacuum)),
        ("table.last_analyze", "unix_seconds", secs(t.last_analyze)),
        ("table.free_bytes", "bytes", t.free_bytes),
        ("table.last_modified", "unix_seconds", secs(t.last_modified)),
    ]
}

/// Decides a batch: `records` in order (only rounds, metrics and tables are looked at),
/// against the checked-out targets (all loaded). Pure.
pub(super) fn plan(work: &mut Checkout, records: &[&Record]) -> Plan {
    let mut plan = Plan::default();
    let mut next_tmp = -1i64;
    let mut touched: HashSet<(String, String)> = HashSet::new();
    for r in records {
        let (target, ts) = match r {
            Record::Checks { target, ts, .. }
            | Record::Metric { target, ts, .. }
            | Record::Tables { target, ts, .. } => (target, ms(*ts)),
            _ => continue,
        };
        let db = work
            .db
            .entry(target.clone())
            .or_default()
            .get_or_insert_with(TargetDb::default);
        let rounds = work.rounds.entry(target.clone()).or_default();
        // The id of a series, a new one when it has a value to write.
        let mut id_of =
            |db: &mut TargetDb, metric: &str, label: &str, unit: &str, v: Option<f64>| {
                let key = (metric.to_string(), label.to_string());
                if let Some(id) = db.ids.get(&key) {
                    return Some(*id);
                }
                v.filter(|x| x.is_finite())?;
                let id = next_tmp;
                next_tmp -= 1;
                db.ids.insert(key, id);
                db.series.insert(
                    id,
                    SeriesState {
                        id,
                        last: None,
                        last_ts: None,
                    },
                );
                plan.new_series.push(NewSeries {
                    tmp: id,
                    target: target.clone(),
                    metric: metric.to_string(),
                    label: label.to_string(),
                    unit: unit.to_string(),
                });
                Some(id)
            };
        let (source, reported) = match r {
            Record::Checks {
                source, results, ..
            } => {
                let reported: Vec<(i64, Option<f64>)> = results
                    .iter()
                    .filter(|c| c.unit != Unit::None)
                    .filter_map(|c| {
                        id_of(db, &c.check, "", c.unit.as_str(), c.value).map(|id| (id, c.value))
                    })
                    .collect();
                (source.as_str().to_string(), reported)
            }
            Record::Metric { metric, value, .. } => {
                let id = id_of(db, metric, "", "", Some(*value));
                (
                    format!("metric:{metric}"),
                    id.map(|id| (id, Some(*value))).into_iter().collect(),
                )
            }
            Record::Tables { stats, .. } => {
                let mut reported = Vec::new();
                for t in stats {
                    for (metric, unit, v) in table_fields(t) {
                        if let Some(id) = id_of(db, metric, &t.table, unit, v) {
                            reported.push((id, v));
                        }
                    }
                    plan.latest_tables
                        .insert((target.clone(), t.table.clone()), (ts, t.clone()));
                }
                ("table".to_string(), reported)
            }
            _ => continue,
        };
        // The checks of this source's previous round, unless it was long ago.
        let watched: HashSet<String> = rounds
            .sources
            .get(&source)
            .filter(|p| ts - p.ts <= gap_limit(p.interval))
            .map(|p| p.checks.clone())
            .unwrap_or_default();
        let samples = observe(db, rounds, &source, ts, &reported);
        for (id, _) in &reported {
            plan.confirm.insert(*id, ts);
        }
        for s in &samples {
            plan.confirm.insert(s.series_id, ts);
        }
        plan.samples.extend(samples);
        if let Record::Checks {
            results, run_id, ..
        } = r
        {
            if let Some(src) = rounds.sources.get_mut(&source) {
                src.checks = results.iter().map(|c| c.check.clone()).collect();
            }
            for c in results {
                let step = period_step(
                    db,
                    &c.check,
                    c.status.as_str(),
                    ts,
                    c.value,
                    c.unit.as_str(),
                    &c.message,
                    watched.contains(&c.check),
                );
                let key = (target.clone(), c.check.clone());
                if let PeriodStep::Open(Some(ended)) = step
                    && touched.contains(&key)
                {
                    plan.ended.push((key.0.clone(), key.1.clone(), ended));
                }
                if touched.insert(key.clone()) {
                    plan.periods.push(key.clone());
                }
                let since = db.periods.get(&c.check).map_or(ts, |p| p.from_ts);
                plan.latest_checks.insert(
                    key,
                    LatestCheck {
                        ts,
                        run_id: run_id.clone(),
                        result: c.clone(),
                        since,
                    },
                );
            }
        }
    }
    plan
}

/// Replaces provisional series ids by the store's, everywhere they went.
pub(super) fn remap(work: &mut Checkout, plan: &mut Plan, ids: &HashMap<i64, i64>) {
    if ids.is_empty() {
        return;
    }
    let real = |id: i64| ids.get(&id).copied().unwrap_or(id);
    for db in work.db.values_mut().flatten() {
        for v in db.ids.values_mut() {
            *v = real(*v);
        }
        let tmp: Vec<i64> = db.series.keys().copied().filter(|k| *k < 0).collect();
        for t in tmp {
            if let Some(mut st) = db.series.remove(&t) {
                st.id = real(t);
                db.series.insert(st.id, st);
            }
        }
    }
    for r in work.rounds.values_mut() {
        for src in r.sources.values_mut() {
            src.with_value = src.with_value.iter().map(|id| real(*id)).collect();
        }
    }
    for s in &mut plan.samples {
        s.series_id = real(s.series_id);
    }
    plan.confirm = plan
        .confirm
        .iter()
        .map(|(id, ts)| (real(*id), *ts))
        .collect();
}

/// The cache: targets' store state (reloadable) and their rounds (this process only).
#[derive(Debug, Default)]
pub(super) struct Cache {
    db: HashMap<String, TargetDb>,
    rounds: HashMap<String, TargetRounds>,
    used: HashMap<String, u64>,
    clock: u64,
    series: usize,
    max_series: usize,
}

/// Targets taken out of the cache for one batch.
#[derive(Debug, Default)]
pub(super) struct Checkout {
    /// None: not cached; load it from the store.
    pub db: HashMap<String, Option<TargetDb>>,
    pub rounds: HashMap<String, TargetRounds>,
}

impl Cache {
    pub fn new(max_series: usize) -> Cache {
        Cache {
            max_series: max_series.max(1),
            ..Cache::default()
        }
    }

    /// Takes `targets` out for a batch: their store state is removed (a failed batch
    /// leaves them to be reloaded); their rounds are copied (a failed batch leaves the
    /// originals).
    pub fn checkout<'a>(&mut self, targets: impl IntoIterator<Item = &'a str>) -> Checkout {
        let mut c = Checkout::default();
        for t in targets {
            if c.db.contains_key(t) {
                continue;
            }
            let db = self.db.remove(t);
            if let Some(d) = &db {
                self.series -= d.series.len();
            }
            c.db.insert(t.to_string(), db);
            c.rounds.insert(
                t.to_string(),
                self.rounds.get(t).cloned().unwrap_or_default(),
            );
        }
        c
    }

    /// Puts a committed batch's targets back, then evicts the least recently used
    /// targets while over the bound.
    pub fn checkin(&mut self, c: Checkout) {
        for (t, db) in c.db {
            self.clock += 1;
            self.used.insert(t.clone(), self.clock);
            if let Some(db) = db {
                self.series += db.series.len();
                self.db.insert(t, db);
            }
        }
        self.rounds.extend(c.rounds);
        while self.series > self.max_series {
            let Some(oldest) = self
                .used
                .iter()
                .min_by_key(|(_, u)| **u)
                .map(|(t, _)| t.clone())
            else {
                break;
            };
            self.used.remove(&oldest);
            self.rounds.remove(&oldest);
            if let Some(d) = self.db.remove(&oldest) {
                self.series -= d.series.len();
            }
        }
    }

    /// Series cached now.
    #[cfg(test)]
    pub fn series(&self) -> usize {
        self.series
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(series: &[(i64, Option<f64>, Option<i64>)]) -> TargetDb {
        let mut d = TargetDb::default();
        for &(id, last, last_ts) in series {
            d.ids.insert((format!("m{id}"), String::new()), id);
            d.series.insert(id, SeriesState { id, last, last_ts });
        }
        d
    }

    fn s(series_id: i64, ts: i64, value: Option<f64>) -> SampleRow {
        SampleRow {
            series_id,
            ts,
            value,
        }
    }

    #[test]
    fn only_changes_are_written_and_last_ts_advances() {
        let mut d = db(&[(1, None, None), (2, None, None)]);
        let mut r = TargetRounds::default();
        let a = observe(
            &mut d,
            &mut r,
            "health",
            0,
            &[(1, Some(5.0)), (2, Some(1.0))],
        );
        assert_eq!(a, vec![s(1, 0, Some(5.0)), s(2, 0, Some(1.0))]);
        let b = observe(
            &mut d,
            &mut r,
            "health",
            30_000,
            &[(1, Some(5.0)), (2, Some(2.0))],
        );
        assert_eq!(b, vec![s(2, 30_000, Some(2.0))]);
        assert_eq!(d.series[&1].last_ts, Some(30_000), "unchanged: confirmed");
        let c = observe(
            &mut d,
            &mut r,
            "health",
            60_000,
            &[(1, Some(5.0)), (2, Some(2.0))],
        );
        assert!(c.is_empty());
    }

    #[test]
    fn a_series_missing_from_a_round_gets_a_null_once() {
        let mut d = db(&[(1, None, None), (2, None, None)]);
        let mut r = TargetRounds::default();
        observe(
            &mut d,
            &mut r,
            "health",
            0,
            &[(1, Some(5.0)), (2, Some(1.0))],
        );
        // 2 is absent, then reported without a value, then back.
        let a = observe(&mut d, &mut r, "health", 30_000, &[(1, Some(5.0))]);
        assert_eq!(a, vec![s(2, 30_000, None)]);
        let b = observe(
            &mut d,
            &mut r,
            "health",
            60_000,
            &[(1, Some(5.0)), (2, None)],
        );
        assert!(b.is_empty(), "{b:?}");
        let c = observe(
            &mut d,
            &mut r,
            "health",
            90_000,
            &[(1, None), (2, Some(1.0))],
        );
        assert_eq!(c, vec![s(1, 90_000, None), s(2, 90_000, Some(1.0))]);
    }

    #[test]
    fn another_source_of_the_target_does_not_count_as_absence() {
        let mut d = db(&[(1, None, None), (2, None, None)]);
        let mut r = TargetRounds::default();
        observe(&mut d, &mut r, "health", 0, &[(1, Some(5.0))]);
        observe(&mut d, &mut r, "sample", 10_000, &[(2, Some(7.0))]);
        let a = observe(&mut d, &mut r, "health", 30_000, &[(1, Some(5.0))]);
        assert!(a.is_empty(), "{a:?}");
        assert_eq!(d.series[&2].last, Some(7.0));
    }

    #[test]
    fn after_a_restart_the_first_write_closes_the_gap() {
        // The store says: 1 had 5.0 confirmed at 1000, 2 had NULL, 3 had 1.0 at 1000.
        let mut d = db(&[
            (1, Some(5.0), Some(1000)),
            (2, None, Some(1000)),
            (3, Some(1.0), Some(1000)),
        ]);
        let mut r = TargetRounds::default();
        let a = observe(
            &mut d,
            &mut r,
            "health",
            61_000,
            &[(1, Some(5.0)), (2, Some(3.0))],
        );
        assert_eq!(
            a,
            vec![
                s(1, 1001, None),
                s(1, 61_000, Some(5.0)),
                s(2, 61_000, Some(3.0))
            ]
        );
        // 3 was not in this process's previous round: no NULL for it (it holds until its
        // last_ts), and the next round goes on normally.
        let b = observe(
            &mut d,
            &mut r,
            "health",
            91_000,
            &[(1, Some(5.0)), (2, Some(3.0))],
        );
        assert!(b.is_empty(), "{b:?}");
        assert_eq!(d.series[&3].last_ts, Some(1000));
    }

    #[test]
    fn a_long_pause_between_rounds_is_a_gap() {
        let mut d = db(&[(1, None, None)]);
        let mut r = TargetRounds::default();
        observe(&mut d, &mut r, "health", 0, &[(1, Some(5.0))]);
        observe(&mut d, &mut r, "health", 30_000, &[(1, Some(5.0))]);
        let a = observe(&mut d, &mut r, "health", 3_600_000, &[(1, Some(5.0))]);
        assert_eq!(a, vec![s(1, 30_001, None), s(1, 3_600_000, Some(5.0))]);
        assert_eq!(gap_limit(Some(30_000)), GAP_MIN_MS);
        assert_eq!(gap_limit(Some(3_600_000)), 3 * 3_600_000);
    }

    #[test]
    fn periods_extend_while_the_status_holds() {
        let mut d = TargetDb::default();
        assert!(matches!(
            period_step(&mut d, "c", "OK", 0, Some(1.0), "ms", "m", true),
            PeriodStep::Open(None)
        ));
        if let Some(p) = d.periods.get_mut("c") {
            p.id = 7;
        }
        assert_eq!(
            period_step(&mut d, "c", "OK", 30_000, Some(3.0), "ms", "m", true),
            PeriodStep::Extend(7)
        );
        assert_eq!(
            period_step(&mut d, "c", "OK", 60_000, None, "ms", "m", true),
            PeriodStep::Extend(7)
        );
        let p = &d.periods["c"];
        assert_eq!((p.from_ts, p.to_ts, p.rounds), (0, 60_000, 3));
        assert_eq!((p.value_min, p.value_max), (Some(1.0), Some(3.0)));
        assert!(matches!(
            period_step(&mut d, "c", "WARNING", 90_000, Some(9.0), "ms", "m", true),
            PeriodStep::Open(Some(_))
        ));
        let p = &d.periods["c"];
        assert_eq!(
            (p.status.as_str(), p.from_ts, p.rounds),
            ("WARNING", 90_000, 1)
        );
        if let Some(p) = d.periods.get_mut("c") {
            p.id = 8;
        }
        // A round not following a watched one (a restart, a pause) starts a new period
        // even with the same status.
        assert!(matches!(
            period_step(&mut d, "c", "WARNING", 120_000, None, "ms", "m", false),
            PeriodStep::Open(Some(_))
        ));
    }

    #[test]
    fn a_failed_batch_leaves_the_cache_as_it_was() {
        let mut c = Cache::new(10);
        let mut out = c.checkout(["a"]);
        assert!(out.db["a"].is_none(), "not cached: load it");
        out.db
            .insert("a".into(), Some(db(&[(1, Some(1.0), Some(0))])));
        observe(
            out.db
                .get_mut("a")
                .and_then(|d| d.as_mut())
                .unwrap_or_else(|| unreachable!()),
            out.rounds.get_mut("a").unwrap_or_else(|| unreachable!()),
            "health",
            0,
            &[(1, Some(1.0))],
        );
        c.checkin(out);
        assert_eq!(c.series(), 1);
        let mut failed = c.checkout(["a"]);
        if let Some(r) = failed.rounds.get_mut("a") {
            r.sources.clear();
        }
        drop(failed);
        assert_eq!(c.series(), 0, "the store state is reloaded after a failure");
        let again = c.checkout(["a"]);
        assert!(again.db["a"].is_none());
        assert!(
            again.rounds["a"].sources["health"].with_value.contains(&1),
            "rounds kept"
        );
    }

    #[test]
    fn the_cache_is_bounded_by_evicting_the_least_recently_used() {
        let mut c = Cache::new(3);
        for (t, ids) in [("a", vec![1, 2]), ("b", vec![3]), ("c", vec![4])] {
            let mut out = c.checkout([t]);
            let series: Vec<_> = ids.iter().map(|&i| (i, None, None)).collect();
            out.db.insert(t.into(), Some(db(&series)));
            c.checkin(out);
        }
        assert_eq!(c.series(), 2, "a (2 series) went first");
        assert!(c.checkout(["a"]).db["a"].is_none());
    }
}
