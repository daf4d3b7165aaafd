//! The sample job kind: slow-query sampling of one target. Reads the statement counters
//! (one query), compares them with the previous snapshot (pure: [`crate::sample::delta`]),
//! fetches the texts of only the selected statements it has not seen, and records the
//! live long runners (literals redacted by the engine).
//!
//! A missing pg_stat_statements is the job's own UNKNOWN with the fix, logged as a warning
//! once per target (then at debug level), not a failed run per tick.
//!
//! The previous snapshot lives in [`SampleState`] (shared across runs in the daemon) and,
//! through the event stream, in the history store (`query_snapshots`): a run with no
//! snapshot in memory (the first after a start, every `dbwarden run-job`) reads it from
//! there, so the baseline survives restarts.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use super::{JobError, Kind, Report, RunCtx, Shared};
use crate::config::SampleParams;
use crate::engine::{Engine, RunScope};
use crate::events::{Event, Events};
use crate::health::{CheckResult, Scope, Status, Unit};
use crate::sample::{
    LongRunner, Outcome, SampleError, Selection, Snapshot, StatementDelta, compute, regression,
    wire,
};
use crate::store::{PlanRow, Store};
use crate::text::escape;
use chrono::{DateTime, Utc};

/// What sample runs keep between runs, per target.
#[derive(Default)]
pub struct SampleState {
    previous: Mutex<HashMap<String, Snapshot>>,
    /// Queryids whose text this process already has, per target.
    texts: Mutex<HashMap<String, HashSet<String>>>,
    /// Targets whose "extension missing" was already logged as a warning.
    warned: Mutex<HashSet<String>>,
    /// Where snapshots are read back from when none is in memory.
    store: Mutex<Option<Store>>,
    /// When each statement was last planned, per target.
    planned: Mutex<HashMap<String, HashMap<String, DateTime<Utc>>>>,
    /// Targets whose "plans not taken" was already logged at info level.
    plans_said: Mutex<HashSet<String>>,
}

/// At most this many statements are planned per sample: the kept statements with the most
/// time, each at most once per [`PLAN_EVERY`].
pub const PLANS_PER_SAMPLE: usize = 3;

/// How often one statement is planned again.
pub const PLAN_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// The longest normalised text fetched for planning (stored texts are cut shorter).
const PLAN_TEXT_MAX: usize = 100_000;

/// The statements to plan now (pure): the most time-consuming of `statements` not planned
/// within [`PLAN_EVERY`] before `now`, each queryid once, at most `n`.
pub fn due_for_plan(
    statements: &[StatementDelta],
    planned: &HashMap<String, DateTime<Utc>>,
    now: DateTime<Utc>,
    n: usize,
) -> Vec<String> {
    let every = chrono::Duration::from_std(PLAN_EVERY).unwrap_or(chrono::Duration::MAX);
    let mut by_time: Vec<&StatementDelta> = statements.iter().collect();
    by_time.sort_by(|a, b| b.total_ms.total_cmp(&a.total_ms));
    let mut out: Vec<String> = Vec::new();
    for d in by_time {
        let recent = planned.get(&d.key.id).is_some_and(|t| now - *t < every);
        if !recent && !out.contains(&d.key.id) {
            out.push(d.key.id.clone());
        }
        if out.len() == n {
            break;
        }
    }
    out
}

impl SampleState {
    /// Reads previous snapshots from `store` when a target has none in memory.
    pub fn use_store(&self, store: Store) {
        *self.store.lock().unwrap_or_else(|e| e.into_inner()) = Some(store);
    }

    /// The previous snapshot of `target`: from memory, else from the store. One that
    /// cannot be read is absent (a baseline), never a wrong delta.
    async fn previous(&self, target: &str) -> Option<Snapshot> {
        let mem = self
            .previous
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(target);
        if mem.is_some() {
            return mem;
        }
        let store = self
            .store
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()?;
        match store.sample_snapshot(target).await {
            Ok(Some(text)) => match wire::decode(&text) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(
                        target,
                        "stored statement snapshot ignored ({e}): this sample is a new baseline"
                    );
                    None
                }
            },
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(
                    target,
                    "previous statement snapshot not read from the history store ({e}): this sample is a new baseline"
                );
                None
            }
        }
    }
}

/// A sample job, built from its `[[job]]` keys.
pub struct SampleJob {
    params: SampleParams,
    shared: Arc<Shared>,
}

/// What a sample run found.
#[derive(Debug)]
pub struct SampleRun {
    /// Set when sampling cannot work on this target: the fix (the job is UNKNOWN).
    pub unavailable: Option<String>,
    /// `None` when unavailable.
    pub outcome: Option<Outcome>,
    /// Texts fetched this run for statements not seen before: (queryid, text).
    pub new_texts: Vec<(String, String)>,
    pub long_runners: Vec<LongRunner>,
    /// Statement entries in the snapshot.
    pub entries: usize,
    /// The `query_regression` check of this sample (`None`: not judged: a baseline
    /// sample, or no history store to read baselines from).
    pub regression: Option<CheckResult>,
    /// Plans of the top statements taken by this sample (PostgreSQL 16+).
    pub plans: Vec<PlanRow>,
    /// Why plans were due but not taken (an older server, a failure).
    pub plans_not_taken: Option<String>,
}

impl SampleRun {
    /// The selected statements (empty for a baseline or when unavailable).
    pub fn statements(&self) -> &[StatementDelta] {
        match &self.outcome {
            Some(Outcome::Deltas { statements, .. }) => statements,
            _ => &[],
        }
    }
}

impl Report for SampleRun {
    fn status(&self) -> Option<Status> {
        Some(if self.unavailable.is_some() {
            Status::Unknown
        } else {
            self.regression.as_ref().map_or(Status::Ok, |r| r.status)
        })
    }

    fn summary(&self) -> String {
        if let Some(u) = &self.unavailable {
            return format!("UNKNOWN: {u}");
        }
        let mut long = match self.long_runners.len() {
            0 => String::new(),
            n => format!("; {n} long-running statement(s)"),
        };
        if let Some(r) = self.regression.as_ref().filter(|r| r.status != Status::Ok) {
            long.push_str(&format!("; query_regression {}: {}", r.status, r.message));
        }
        if !self.plans.is_empty() {
            long.push_str(&format!("; {} plan(s) stored", self.plans.len()));
        }
        if let Some(why) = &self.plans_not_taken {
            long.push_str(&format!("; {why}"));
        }
        match &self.outcome {
            Some(Outcome::Baseline(reason)) => {
                format!("{} statements; {reason}{long}", self.entries)
            }
            Some(Outcome::Deltas {
                statements,
                active,
                entries_reset,
            }) => {
                let reset = match entries_reset {
                    0 => String::new(),
                    n => format!(", {n} reset (new baseline)"),
                };
                format!(
                    "{} statements, {active} ran in the interval, {} kept{reset}{long}",
                    self.entries,
                    statements.len()
                )
            }
            None => String::new(),
        }
    }
}

impl Kind for SampleJob {
    type Params = SampleParams;
    type Report = SampleRun;

    fn build(params: &SampleParams, shared: &Arc<Shared>) -> Self {
        SampleJob {
            params: params.clone(),
            shared: shared.clone(),
        }
    }

    async fn run(self, ctx: RunCtx) -> Result<SampleRun, JobError> {
        let target = &ctx.target;
        let engine = self
            .shared
            .engines
            .get(target)
            .map_err(|e| JobError::Setup(e.to_string()))?;
        let scope = RunScope::default();
        let run = tokio::select! {
            r = sample(&engine, &self.params, &self.shared.samples, &target.name, &scope, &self.shared.events) => r,
            _ = ctx.cancel.cancelled() => {
                engine.cancel(&scope).await;
                Err(JobError::Cancelled)
            }
        }?;
        if let Some(r) = run.regression.as_ref().filter(|r| r.status != Status::Ok) {
            tracing::warn!(target = %target.name, check = "query_regression", "{}", escape(&r.message));
        }
        // The regression check is believed like any other (hysteresis), as a partial set:
        // the target's health checks stay as their rounds left them.
        if let Some(r) = &run.regression {
            let ts = chrono::Utc::now();
            let changes =
                self.shared
                    .tracker
                    .observe_part(&target.name, std::slice::from_ref(r), ts);
            super::health::publish_changes(&self.shared.events, ts, &changes);
        }
        Ok(run)
    }
}

/// One sample of a target against the state kept in `state`.
pub async fn sample(
    engine: &Engine,
    p: &SampleParams,
    state: &SampleState,
    target: &str,
    scope: &RunScope,
    events: &Events,
) -> Result<SampleRun, JobError> {
    let (secs, len) = (p.long_running.as_secs_f64(), p.query_text_length);
    let read = match engine {
        Engine::Postgres(e) => e.sample_statements(secs, len, scope).await,
        Engine::Mysql(e) => e.sample_statements(secs, len, scope).await,
        // A job with `targets = ["*"]` covers SQLite targets too: the job's own UNKNOWN,
        // warned once, like a missing extension, not a failed run per tick.
        Engine::Sqlite(_) => Err(SampleError::Unavailable(format!(
            "target {target} is SQLite, which keeps no statement statistics: leave it out of this sample job's targets (sample jobs work on PostgreSQL and MySQL/MariaDB)"
        ))),
    };
    let reading = match read {
        Ok(r) => r,
        Err(SampleError::Unavailable(fix)) => {
            let first = state
                .warned
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(target.to_string());
            if first {
                tracing::warn!(target, "{}", escape(&fix));
            } else {
                tracing::debug!(target, "{}", escape(&fix));
            }
            return Ok(SampleRun {
                unavailable: Some(fix),
                outcome: None,
                new_texts: Vec::new(),
                long_runners: Vec::new(),
                entries: 0,
                regression: None,
                plans: Vec::new(),
                plans_not_taken: None,
            });
        }
        Err(SampleError::Failed(e)) => {
            return Err(JobError::Setup(format!(
                "target {target}: reading the statement statistics failed: {e}"
            )));
        }
    };
    state
        .warned
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(target);
    let sel = Selection {
        top_n: p.top_n,
        slow_ms: p.slow_threshold.as_secs_f64() * 1000.0,
    };
    let previous = state.previous(target).await;
    let outcome = compute(previous.as_ref(), &reading.snapshot, sel);
    let entries = reading.snapshot.entries.len();
    let ts = reading.snapshot.taken_at;
    let encoded = wire::encode(&reading.snapshot);
    state
        .previous
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(target.to_string(), reading.snapshot);
    let wanted: Vec<String> = {
        let known = state.texts.lock().unwrap_or_else(|e| e.into_inner());
        let mut ids: Vec<String> = match &outcome {
            Outcome::Deltas { statements, .. } => statements
                .iter()
                .map(|d| d.key.id.clone())
                .filter(|id| known.get(target).is_none_or(|k| !k.contains(id)))
                .collect(),
            Outcome::Baseline(_) => Vec::new(),
        };
        ids.sort();
        ids.dedup();
        ids
    };
    let texts = match engine {
        Engine::Postgres(e) => {
            e.statement_texts(&reading.texts_from, &wanted, len, scope)
                .await
        }
        Engine::Mysql(e) => e.statement_texts(&wanted, len, scope).await,
        Engine::Sqlite(_) => Ok(Vec::new()),
    };
    let new_texts = texts.map_err(|e| match e {
        SampleError::Unavailable(m) | SampleError::Failed(m) => JobError::Setup(format!(
            "target {target}: reading statement texts failed: {m}"
        )),
    })?;
    state
        .texts
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(target.to_string())
        .or_default()
        .extend(new_texts.iter().map(|(id, _)| id.clone()));
    for l in &reading.long_runners {
        tracing::info!(
            target,
            pid = l.pid,
            seconds = l.seconds,
            "long-running statement: {}",
            escape(&l.query)
        );
    }
    let regression = match &outcome {
        Outcome::Deltas { statements, .. } => {
            regression_check(state, p, target, ts, statements).await
        }
        Outcome::Baseline(_) => None,
    };
    let (plans, plans_not_taken) = match (engine, &outcome) {
        (Engine::Postgres(e), Outcome::Deltas { statements, .. }) => {
            let at = Plans {
                state,
                target,
                schema: &reading.texts_from,
                ts,
                scope,
            };
            at.take(e, statements).await
        }
        _ => (Vec::new(), None),
    };
    events.publish(Event::Sample {
        ts,
        target: target.to_string(),
        statements: match &outcome {
            Outcome::Deltas { statements, .. } => statements.clone(),
            Outcome::Baseline(_) => Vec::new(),
        },
        texts: new_texts.clone(),
        long_runners: reading.long_runners.clone(),
        snapshot: Some(encoded),
        check: regression.clone(),
    });
    Ok(SampleRun {
        unavailable: None,
        outcome: Some(outcome),
        new_texts,
        long_runners: reading.long_runners,
        entries,
        regression,
        plans,
        plans_not_taken,
    })
}

/// Where a sample's plans are taken.
struct Plans<'a> {
    state: &'a SampleState,
    target: &'a str,
    schema: &'a str,
    ts: DateTime<Utc>,
    scope: &'a RunScope,
}

impl Plans<'_> {
    /// Plans the statements due ([`due_for_plan`]) with their normalised texts (a generic
    /// plan: PostgreSQL 16+) and stores them; on an older server, says why not (logged
    /// once per target, and in every run's summary while plans are due).
    async fn take(
        &self,
        e: &crate::engine::postgres::PostgresEngine,
        statements: &[StatementDelta],
    ) -> (Vec<PlanRow>, Option<String>) {
        let (state, target) = (self.state, self.target);
        let due = {
            let planned = state.planned.lock().unwrap_or_else(|p| p.into_inner());
            let none = HashMap::new();
            let mine = planned.get(target).unwrap_or(&none);
            // More candidates than plans: dbwarden's own statements are dropped below,
            // once their texts say so.
            due_for_plan(statements, mine, self.ts, PLANS_PER_SAMPLE * 4)
        };
        if due.is_empty() {
            return (Vec::new(), None);
        }
        let not_taken = |why: String| {
            let first = state
                .plans_said
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(target.to_string());
            if first {
                tracing::info!(target, "{}", escape(&why));
            }
            (Vec::new(), Some(why))
        };
        let mark_planned = |ids: &[String]| {
            state
                .planned
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(target.to_string())
                .or_default()
                .extend(ids.iter().map(|id| (id.clone(), self.ts)));
        };
        match e.server_version_num(self.scope).await {
            Ok(v) if v < 160_000 => {
                // Asked again only when these are due again (an upgrade needs a restart).
                mark_planned(&due);
                return not_taken(format!(
                    "plans of the top statements not taken: planning a normalised text ($1) needs EXPLAIN (GENERIC_PLAN), which PostgreSQL 16+ has; this server is {}.{}",
                    v / 10_000,
                    v % 10_000
                ));
            }
            Ok(_) => {}
            Err(why) => return not_taken(format!("plans not taken: {why}")),
        }
        let texts = match e
            .statement_texts(self.schema, &due, PLAN_TEXT_MAX, self.scope)
            .await
        {
            Ok(t) => t,
            Err(SampleError::Unavailable(m) | SampleError::Failed(m)) => {
                return not_taken(format!(
                    "plans not taken: reading statement texts failed: {m}"
                ));
            }
        };
        // Planned, refused or ours, each is tried again only after PLAN_EVERY; candidates
        // not reached wait for the next sample.
        let (own, texts) = theirs(texts, PLANS_PER_SAMPLE);
        mark_planned(&own);
        mark_planned(&texts.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>());
        let mut plans = Vec::new();
        for (queryid, text) in texts {
            match e.plan_summary(&text, self.scope).await {
                Ok((plan_json, s)) => plans.push(PlanRow {
                    target: target.to_string(),
                    queryid,
                    ts: self.ts,
                    plan_json,
                    summary: s.line(),
                    top_node: s.top_node.clone(),
                    total_cost: s.total_cost,
                    plan_rows: s.rows,
                    large_seq_scans: (!s.large_seq_scans.is_empty()).then(|| {
                        let names: Vec<&str> =
                            s.large_seq_scans.iter().map(|(t, _)| t.as_str()).collect();
                        names.join(",")
                    }),
                }),
                // Not a plannable query (an INSERT, a utility statement): not an error.
                Err(why) => {
                    tracing::debug!(target, %queryid, "statement not planned: {}", escape(&why))
                }
            }
        }
        let store = state
            .store
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(store) = store
            && let Err(e) = store.plans_insert(store.agent(), &plans).await
        {
            tracing::warn!(target, "query plans not stored in the history: {e}");
        }
        (plans, None)
    }
}

/// Splits `texts` into dbwarden's own statements (every query the engines send starts
/// with a `/* dbwarden */` comment, which pg_stat_statements keeps) and the first `n` of
/// the others, the ones to plan: a plan of our own health query tells the DBA nothing,
/// and each EXPLAIN is one more entry in their statistics.
fn theirs(texts: Vec<(String, String)>, n: usize) -> (Vec<String>, Vec<(String, String)>) {
    let (own, others): (Vec<_>, Vec<_>) = texts
        .into_iter()
        .partition(|(_, text)| text.trim_start().starts_with("/* dbwarden */"));
    (
        own.into_iter().map(|(id, _)| id).collect(),
        others.into_iter().take(n).collect(),
    )
}

/// Judges the kept statements against their baselines from the history store.
async fn regression_check(
    state: &SampleState,
    p: &SampleParams,
    target: &str,
    ts: chrono::DateTime<chrono::Utc>,
    statements: &[StatementDelta],
) -> Option<CheckResult> {
    if p.regression_factor <= 0.0 {
        return None;
    }
    let store = state
        .store
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()?;
    let ids: Vec<String> = statements
        .iter()
        .filter(|d| d.calls >= p.regression_min_calls)
        .map(|d| d.key.id.clone())
        .collect();
    let from =
        ts - chrono::Duration::from_std(p.regression_window).unwrap_or(chrono::Duration::MAX);
    let history = match store.statement_history(target, &ids, from, ts, 100).await {
        Ok(h) => h,
        Err(e) => {
            return Some(CheckResult {
                check: "query_regression".into(),
                status: Status::Unknown,
                value: None,
                unit: Unit::Milliseconds,
                warning: None,
                critical: None,
                message: format!("statement baselines not read from the history store: {e}"),
                subject: None,
                scope: Scope::Database,
            });
        }
    };
    let found = regression::find(
        statements,
        &history,
        p.regression_factor,
        p.regression_min_calls,
        p.regression_min_mean.as_secs_f64() * 1000.0,
    );
    let factor = p.regression_factor;
    Some(match found.first() {
        None => CheckResult {
            check: "query_regression".into(),
            status: Status::Ok,
            value: None,
            unit: Unit::Milliseconds,
            warning: None,
            critical: None,
            message: format!(
                "no statement slower than {factor}× its baseline ({} with a baseline)",
                history.len()
            ),
            subject: None,
            scope: Scope::Database,
        },
        Some(r) => CheckResult {
            check: "query_regression".into(),
            status: Status::Warning,
            value: Some(r.mean_ms),
            unit: Unit::Milliseconds,
            warning: Some(r.baseline_ms * factor),
            critical: None,
            message: format!(
                "statement {} ({}): mean {:.2} ms over {} calls, {:.1}× its baseline {:.2} ms (median of {} samples; warning at {factor}×){}; `dbwarden slow-queries` shows its text",
                r.queryid,
                r.scope,
                r.mean_ms,
                r.calls,
                r.factor(),
                r.baseline_ms,
                r.baseline_samples,
                match found.len() {
                    1 => String::new(),
                    n => format!("; {} more statements regressed", n - 1),
                }
            ),
            subject: Some(format!("statement {}", r.queryid)),
            scope: Scope::Database,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::StatementKey;

    fn d(id: &str, scope: &str, total_ms: f64) -> StatementDelta {
        StatementDelta {
            key: StatementKey {
                id: id.into(),
                scope: scope.into(),
            },
            total_ms,
            ..StatementDelta::default()
        }
    }

    #[test]
    fn the_most_time_consuming_statements_are_planned_once_an_hour() {
        let t0 = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap_or_default();
        let kept = [
            d("a", "10/5/t", 5.0),
            d("b", "10/5/t", 50.0),
            d("c", "10/5/t", 20.0),
            // The same statement of another user: one plan.
            d("b", "11/5/t", 40.0),
            d("e", "10/5/t", 1.0),
        ];
        let mut planned = HashMap::new();
        assert_eq!(due_for_plan(&kept, &planned, t0, 3), vec!["b", "c", "a"]);
        planned.extend(["b", "c", "a"].map(|id| (id.to_string(), t0)));
        let later = t0 + chrono::Duration::minutes(59);
        assert_eq!(due_for_plan(&kept, &planned, later, 3), vec!["e"]);
        let hour = t0 + chrono::Duration::minutes(60);
        assert_eq!(due_for_plan(&kept, &planned, hour, 2), vec!["b", "c"]);
        assert!(due_for_plan(&[], &planned, hour, 3).is_empty());
    }

    #[test]
    fn our_own_statements_are_not_planned() {
        let texts = vec![
            (
                "1".to_string(),
                "/* dbwarden */ SELECT count(*) FROM pg_stat_activity".to_string(),
            ),
            (
                "2".to_string(),
                "SELECT * FROM orders WHERE id = $1".to_string(),
            ),
            ("3".to_string(), "  /* dbwarden */ SELECT 1".to_string()),
            (
                "4".to_string(),
                "SELECT /* dbwarden */ 1 FROM t".to_string(),
            ),
            ("5".to_string(), "SELECT 2".to_string()),
        ];
        let ids = |v: Vec<(String, String)>| v.into_iter().map(|(id, _)| id).collect::<Vec<_>>();
        let (own, plan) = theirs(texts.clone(), 3);
        assert_eq!(
            (own, ids(plan)),
            (
                vec!["1".into(), "3".into()],
                vec!["2".into(), "4".into(), "5".into()]
            )
        );
        let (own, plan) = theirs(texts, 1);
        assert_eq!(own.len(), 2);
        assert_eq!(ids(plan), vec!["2"]);
    }
}
