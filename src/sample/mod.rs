//! Slow-query sampling: statement counter snapshots (pg_stat_statements, later
//! performance_schema digests) and the pure delta logic that turns two snapshots into the
//! per-statement work done in between.
//!
//! - `delta`: two snapshots → the statements worth storing (top N by time plus every
//!   statement above the slow threshold), with resets handled: a reset never yields a
//!   negative or inflated delta, it starts a new baseline for what was reset.

//! - `wire`: a snapshot as stored in the history (`query_snapshots`), so the baseline
//!   survives a restart.

pub mod delta;
pub mod wire;

pub use delta::{
    Counters, Epoch, Outcome, Selection, Snapshot, StatementDelta, StatementKey, compute,
};

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
