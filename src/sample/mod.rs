//! Slow-query sampling: statement counter snapshots (pg_stat_statements, later
//! performance_schema digests) and the pure delta logic that turns two snapshots into the
//! per-statement work done in between.
//!
//! - `delta`: two snapshots → the statements worth storing (top N by time plus every
//!   statement above the slow threshold), with resets handled: a reset never yields a
//!   negative or inflated delta, it starts a new baseline for what was reset.

pub mod delta;

pub use delta::{
    Counters, Epoch, Outcome, Selection, Snapshot, StatementDelta, StatementKey, compute,
};
