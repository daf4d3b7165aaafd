//! History housekeeping and analysis (issue 13): rollups of the raw series into hourly
//! and daily buckets, retention, the SQLite store's self-maintenance, and trend analysis
//! (growth rates and forecasts).
//!
//! - `rollup`: bucket boundaries and the aggregates of a series' step function (pure).
//! - `forecast`: Theil–Sen growth, "full in N days", "wraparound in N days", dead-row
//!   growth between vacuums (pure).
pub mod checks;
pub mod cli;
pub mod forecast;
pub mod maintain;
pub mod read;
pub mod retention;
pub mod rollup;
pub mod store;
