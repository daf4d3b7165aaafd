//! # dbwarden
//!
//! A database maintenance daemon: it checks the health of PostgreSQL, MySQL/MariaDB and
//! SQLite databases on schedules from a config file and keeps the results as history.
//!
//! # Layout
//!
//! - [`config`]: the TOML file plus `DBWARDEN_*` environment overrides, parsed and then
//!   validated in two passes that report every error at once; the result is an immutable
//!   [`config::Config`], swapped whole on reload. Secrets print as `***`.
//! - [`schedule`]: cron / `@every` parsing and the pure "next fire time" logic, time zones and
//!   DST included (croner), plus the catch-up decision after a suspend.
//! - [`scheduler`]: one task per job that sleeps until the next fire time, guards against
//!   overlapping runs, applies timeouts and jitter, and records every run.
//! - [`engine`]: the only place with engine SQL. An engine per target owns a small pool and
//!   turns a health round into typed [`health::Measurement`]s.
//! - [`health`]: the status model (pure): check catalogue, thresholds, evaluation of
//!   measurements into [`health::CheckResult`]s, worst-of for a target.
//! - [`jobs`]: what a job kind does with a target (a health round: probe, evaluate, store).
//! - [`store`]: the history store (SQLite or PostgreSQL through sqlx, embedded migrations).
//!   One writer task owns writes and batches them in transactions; reads use a pool.
//! - [`daemon`]: the lifecycle: start, SIGHUP reload, SIGTERM drain, sd_notify and watchdog.
//! - [`logging`]: tracing to the journal under systemd, readable text otherwise.
//! - [`cli`]: the command line (clap), shared by the daemon and the one-shot commands.
#![forbid(unsafe_code)]

pub mod cli;
pub mod config;
pub mod daemon;
pub mod engine;
pub mod health;
pub mod jobs;
pub mod logging;
pub mod schedule;
pub mod scheduler;
pub mod store;
