//! Slow-query sampling: statement counter snapshots (pg_stat_statements, later
//! performance_schema digests) and the pure delta logic that turns two snapshots into the
//! per-statement work done in between.
//!
//! - `delta`: two snapshots → the statements worth storing (top N by time plus every
//!   statement above the slow threshold), with resets handled: a reset never yields a
//!   negative or inflated delta, it starts a new baseline for what was reset.
//! - `plan`: the summary of a PostgreSQL plan (`FORMAT JSON`) stored with a sample's top
//!   statements and shown by `dbwarden slow-queries` and `dbwarden explain`.
//! - `regression`: a statement slower than its own baseline (median of its recent
//!   samples) by a factor: the `query_regression` check.
//! - `wire`: a snapshot as stored in the history (`query_snapshots`), so the baseline
//!   survives a restart.

pub mod delta;
pub mod plan;
pub mod regression;
pub mod wire;

pub use delta::{
    Counters, Epoch, Outcome, Selection, Snapshot, StatementDelta, StatementKey, compute,
};

/// Why an engine could not read its statement counters.
#[derive(Debug, Clone, PartialEq)]
pub enum SampleError {
    /// The source is missing (pg_stat_statements not preloaded or not created,
    /// performance_schema off): the fix, for an UNKNOWN reported once.
    Unavailable(String),
    /// The server could not be reached or a statement failed.
    Failed(String),
}

/// One reading of a target: the counter snapshot and the long runners.
#[derive(Debug, Clone)]
pub struct Reading {
    pub snapshot: Snapshot,
    pub long_runners: Vec<LongRunner>,
    /// What the engine needs to read texts later (PostgreSQL: the extension's schema).
    pub texts_from: String,
}

/// A statement running longer than the threshold, as recorded by a sample (the query with
/// its literals replaced by `?` and trimmed, by the engine, before anything else sees it).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LongRunner {
    pub pid: i64,
    pub user: Option<String>,
    pub application: Option<String>,
    pub state: Option<String>,
    pub wait_event: Option<String>,
    pub seconds: f64,
    pub query: String,
}
