//! Maintenance: plan from fresh statistics, then act within bounds.
//!
//! - `plan`: the pure planner (statistics + policy → ordered steps with reasons).
//! - `window`: the time window and `max_duration` as a deadline (pure).
//! - `run`: executes a plan step by step against an engine's maintenance session, stops
//!   starting new tables at the deadline and cancels a statement still running at it.

pub mod plan;
pub mod run;
pub mod window;

pub use plan::{
    Action, Allowed, HorizonHolder, Integrity, MysqlPolicy, MysqlTableFacts, Plan, Policy,
    SqliteFacts, SqlitePolicy, Step, TableFacts, plan, plan_mysql, plan_sqlite,
};
pub use run::{Guard, GuardLimits, Load, OnGuard, Outcome, Skip, SkipKind, StepRecord};
pub use window::Window;
