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
//!   overlapping runs, applies timeouts (through each run's own cancellation token) and
//!   jitter, and publishes every run's start and end. It knows no job kind.
//! - [`engine`]: the only place with engine SQL. An engine per target owns a small pool and
//!   turns a health round into typed [`health::Measurement`]s.
//! - [`health`]: the status model (pure): check catalogue, thresholds, evaluation of
//!   measurements into [`health::CheckResult`]s, worst-of for a target.
//! - [`jobs`]: job kinds behind one contract (build from the kind's own config, run against
//!   a target with a cancellation token, return a typed report); today `health`, `sample` and
//!   `maintenance`. Also the
//!   engine per target, server-level check ownership and believed statuses (hysteresis).
//! - [`maintenance`]: the pure planner (table statistics + policy → ordered steps with
//!   reasons), the window/`max_duration` deadline, and the step runner that stops starting
//!   tables at the deadline and cancels a statement still running then; the engines run
//!   the steps (`engine::postgres` and `engine::sqlite` maintenance sessions).
//! - [`events`]: the in-process event stream: what runs produce, published once; the
//!   history writer (and later the alerter and the API) consume it; drops are counted.
//! - [`store`]: the history store (SQLite or PostgreSQL through sqlx, embedded migrations).
//!   One writer task owns writes and batches them in transactions; reads use a pool.
//! - [`history`]: history housekeeping and analysis: hourly/daily rollups of the raw
//!   series (incremental, resumable), retention purges in batches, the SQLite store's
//!   self-maintenance, Theil–Sen forecasts (full in N days, wraparound in N days) that the
//!   `rollup` job caches for the health rounds to judge, and the `history`/`forecast`
//!   commands' output.
//! - [`daemon`]: the lifecycle: start, SIGHUP reload, SIGTERM drain within the grace,
//!   sd_notify and watchdog, the periodic summary line. It knows no job kind.
//! - [`sample`]: slow-query sampling: statement snapshots and their pure delta logic
//!   (top N by time plus every slow statement, resets handled).
//! - [`logging`]: tracing to the journal under systemd, readable text otherwise.
//! - [`text`]: escaping of untrusted text (database names, messages) for terminals and logs.
//! - [`alerts`]: believed status changes become notifications: a durable outbox, grouping,
//!   repeat, silences, routing, and the Slack, webhook and email channels.
//! - [`api`]: the HTTP API, Prometheus `/metrics` and the live state they read (kept from
//!   the event stream), served by axum on `[daemon] listen` inside the daemon.
//! - [`dashboard`]: the web dashboard at `GET /` (server-rendered HTML, embedded assets,
//!   a small script for refresh and token actions), merged into the API's router.
//! - [`cli`]: the command line (clap), shared by the daemon and the one-shot commands.
#![forbid(unsafe_code)]

pub mod alerts;
pub mod api;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod dashboard;
pub mod engine;
pub mod events;
pub mod health;
pub mod history;
pub mod jobs;
pub mod logging;
pub mod maintenance;
pub mod sample;
pub mod schedule;
pub mod scheduler;
pub mod store;
pub mod text;
