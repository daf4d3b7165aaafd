//! Configuration: the TOML file plus `DBWARDEN_<SECTION>__<KEY>` environment overrides,
//! loaded by [`load`] into a validated, immutable [`Config`].
//!
//! Loading happens in two passes. `load::load_raw` turns file + environment into the raw
//! serde types below, collecting every unknown key and type error instead of stopping at the
//! first; a `[[job]]` is read as its common keys plus the keys of its kind (`job.rs`), so a
//! key of another kind is reported as such. `validate` then checks meaning (schedules, URLs,
//! references, secrets, and every number against its range in [`ranges`]) and builds the
//! [`Config`] the rest of the program uses. Both passes report every problem at once.

mod job;
mod load;
pub mod ranges;
pub mod secret;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use job::{
    HealthParams, IntegrityPragma, Job, JobKind, JobParams, KINDS, KindSpec, MaintenanceParams,
    RollupParams, SampleParams, TargetSelector,
};
pub use load::{load, load_raw};
pub use secret::{Secret, SecretUrl};
pub use validate::{Config, PasswordSource, Target};

use crate::health::ThresholdValue;

/// Where `dbwarden` looks for its config when neither `-c` nor `DBWARDEN_CONFIG` says.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/dbwarden/dbwarden.toml";

/// One problem found in a config: where (file or environment variable), which key, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file path, or `environment variable DBWARDEN_...` when the value came from there.
    pub origin: String,
    /// Dotted key path, e.g. `target[1].url` or `job[0].schedule`.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.origin, self.message)
        } else {
            write!(f, "{}: {}: {}", self.origin, self.key, self.message)
        }
    }
}

/// Every error of a config that cannot be used, plus the warnings found on the way.
#[derive(Debug, Clone)]
pub struct ConfigErrors {
    pub errors: Vec<ConfigError>,
    pub warnings: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors.len();
        writeln!(
            f,
            "{n} error{} in the configuration:",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.errors {
            writeln!(f, "  error: {e}")?;
        }
        for w in &self.warnings {
            writeln!(f, "  warning: {w}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

// ---------------------------------------------------------------------------------------
// Raw types: exactly what the file may contain. Doc comments are the user documentation.
// Required strings default to "" so a missing one is reported by `validate` alongside every
// other problem, rather than aborting deserialization.
// ---------------------------------------------------------------------------------------

/// The whole config file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub daemon: DaemonConfig,
    /// Global threshold defaults, by check name.
    #[serde(default)]
    pub thresholds: BTreeMap<String, ThresholdConfig>,
    #[serde(default, rename = "target")]
    pub targets: Vec<TargetConfig>,
    /// Parsed per kind by the loader (`load.rs`), which reports a key of the wrong kind.
    #[serde(default, rename = "job", skip_deserializing)]
    pub jobs: Vec<JobConfig>,
    #[serde(default, rename = "channel")]
    pub channels: Vec<ChannelConfig>,
    #[serde(default)]
    pub alerts: AlertsConfig,
    /// `[retention]`: how long each kind of history is kept.
    #[serde(default)]
    pub retention: crate::history::retention::RetentionConfig,
}

/// `[alerts]`: when notifications are sent (README "Alerts").
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// The first change of a quiet target waits this long so related changes go out
    /// together (`0s`: at once).
    #[serde(default = "default_group_wait", with = "humantime_serde")]
    pub group_wait: Duration,
    /// Further changes of a target already notified go out at most this often.
    #[serde(default = "default_group_interval", with = "humantime_serde")]
    pub group_interval: Duration,
    /// A target still WARNING/CRITICAL/UNKNOWN is reminded this often.
    #[serde(default = "default_repeat_interval", with = "humantime_serde")]
    pub repeat_interval: Duration,
    /// A channel failing this long makes the `dbwarden` self-target CRITICAL, which alerts
    /// on the other channels.
    #[serde(default = "default_channel_failing_after", with = "humantime_serde")]
    pub channel_failing_after: Duration,
}

fn default_group_wait() -> Duration {
    Duration::from_secs(10)
}
fn default_group_interval() -> Duration {
    Duration::from_secs(30)
}
fn default_repeat_interval() -> Duration {
    Duration::from_secs(4 * 3600)
}
fn default_channel_failing_after() -> Duration {
    Duration::from_secs(30 * 60)
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            group_wait: default_group_wait(),
            group_interval: default_group_interval(),
            repeat_interval: default_repeat_interval(),
            channel_failing_after: default_channel_failing_after(),
        }
    }
}

/// `[daemon]`: the daemon's own settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    /// History store: `sqlite://PATH` (created on first use) or `postgres://...`.
    #[serde(default = "default_history")]
    pub history: SecretUrl,
    /// Password for a PostgreSQL history store, from a file.
    #[serde(default)]
    pub history_password_file: Option<String>,
    /// This daemon's name in the history store (every row carries it, so several agents
    /// can share one store); default the host name. A restart applies a change.
    #[serde(default)]
    pub agent: Option<String>,
    /// HTTP API / metrics / dashboard address.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// File holding the bearer token mutating API calls need.
    #[serde(default)]
    pub api_token_file: Option<String>,
    /// An API request not answered within this gets `503` (`timeout`); a restart applies a
    /// change.
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Default IANA time zone for schedules and windows.
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// How long SIGTERM waits for running jobs to stop before exiting anyway.
    #[serde(default = "default_grace", with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// At most this many targets are probed at the same time.
    #[serde(default = "default_max_concurrent")]
    pub max_concurrent_targets: usize,
    /// Runs missed by at most this much (suspend, clock jump) are run once, late; older
    /// missed runs are skipped. `0s` never catches up.
    #[serde(default = "default_catch_up", with = "humantime_serde")]
    pub catch_up: Duration,
    /// A status change is believed (recorded as a transition, alerted on) only after it
    /// holds for this many consecutive rounds ...
    #[serde(default = "default_confirm_rounds")]
    pub confirm_rounds: u32,
    /// ... and for at least this long (`0s`: rounds only).
    #[serde(default, with = "humantime_serde")]
    pub confirm_for: Duration,
    /// Results the history store buffers in memory while it cannot write; past this (or
    /// `history_buffer_bytes`) the oldest are dropped and counted.
    #[serde(default = "default_buffer_records")]
    pub history_buffer_records: usize,
    /// Memory the history buffer may take, e.g. "64MB" (1024-based).
    #[serde(default = "default_buffer_bytes")]
    pub history_buffer_bytes: ThresholdValue,
    /// How often the daemon logs one summary line (runs, failures, skipped, store backlog).
    #[serde(default = "default_summary_interval", with = "humantime_serde")]
    pub summary_interval: Duration,
    /// How often per-table statistics are stored per target (every engine the same).
    #[serde(default = "default_table_stats_interval", with = "humantime_serde")]
    pub table_stats_interval: Duration,
    /// The dashboard's address as users reach it (e.g. behind a proxy); alerts link to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
}

fn default_buffer_records() -> usize {
    100_000
}
fn default_buffer_bytes() -> ThresholdValue {
    ThresholdValue::Text("64MB".into())
}
fn default_summary_interval() -> Duration {
    Duration::from_secs(15 * 60)
}
fn default_table_stats_interval() -> Duration {
    Duration::from_secs(5 * 60)
}

fn default_confirm_rounds() -> u32 {
    2
}

fn default_history() -> SecretUrl {
    SecretUrl::new("sqlite://./data/history.db")
}
fn default_listen() -> String {
    "127.0.0.1:9645".into()
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(15)
}
fn default_timezone() -> String {
    "UTC".into()
}
fn default_grace() -> Duration {
    Duration::from_secs(30)
}
fn default_max_concurrent() -> usize {
    16
}
fn default_catch_up() -> Duration {
    Duration::from_secs(300)
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            history: default_history(),
            history_password_file: None,
            agent: None,
            listen: default_listen(),
            api_token_file: None,
            request_timeout: default_request_timeout(),
            timezone: default_timezone(),
            shutdown_grace: default_grace(),
            max_concurrent_targets: default_max_concurrent(),
            catch_up: default_catch_up(),
            confirm_rounds: default_confirm_rounds(),
            confirm_for: Duration::ZERO,
            history_buffer_records: default_buffer_records(),
            history_buffer_bytes: default_buffer_bytes(),
            summary_interval: default_summary_interval(),
            table_stats_interval: default_table_stats_interval(),
            public_url: None,
        }
    }
}

/// Thresholds of one check. Values take the check's unit: "80%", "1GB", "5m", or a number.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ThresholdConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<ThresholdValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub critical: Option<ThresholdValue>,
    /// `false` turns the check off (for this target, or everywhere when global).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Size floor in rows: smaller tables are not judged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_rows: Option<u64>,
    /// Size floor in bytes ("16MB"): smaller objects are not judged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_size: Option<ThresholdValue>,
}

/// `[[target]]`: one database to watch.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    #[serde(default)]
    pub name: String,
    /// `postgres://`, `mysql://` (also MariaDB) or `sqlite://PATH`. TLS through the URL's
    /// standard parameters (`sslmode=verify-full`, `ssl-mode=VERIFY_IDENTITY`, ...).
    #[serde(default)]
    pub url: SecretUrl,
    /// File holding the password (trailing newline trimmed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<String>,
    /// Name of an environment variable holding the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    /// Separate credentials for maintenance, so checks can run as a monitoring-only role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance_url: Option<SecretUrl>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance_password_file: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub pool: PoolConfig,
    /// Per-target threshold overrides, by check name.
    #[serde(default)]
    pub thresholds: BTreeMap<String, ThresholdConfig>,
    /// SQLite: run the thorough `PRAGMA integrity_check` instead of `quick_check`.
    #[serde(default)]
    pub integrity_check: bool,
    /// SQLite: how long to wait for a lock held by the application before giving up.
    #[serde(default = "default_busy_timeout", with = "humantime_serde")]
    pub busy_timeout: Duration,
    /// `dbwarden explain --analyze` may run EXPLAIN ANALYZE here (it executes the query,
    /// inside a READ ONLY transaction that is rolled back).
    #[serde(default)]
    pub explain_analyze: bool,
    /// PostgreSQL primary: the standbys it must have connected (`replication_lag` alarms
    /// when one is missing from pg_stat_replication).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_replicas: Option<ExpectedReplicas>,
    /// The space the database may fill (`"500GB"`): `forecast_full` says when it is full.
    /// Without it, SQLite targets use their filesystem's size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<String>,
}

/// `expected_replicas = 2`, `= ["standby1", "standby2"]` (application_name), or
/// `= "synchronous_standby_names"` (every name listed in that setting).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum ExpectedReplicas {
    Count(u32),
    Names(Vec<String>),
    Keyword(String),
}

fn default_busy_timeout() -> Duration {
    Duration::from_secs(5)
}

/// `pool = { ... }`: the small connection pool dbwarden keeps per target.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// Time to establish one connection; a refused connection fails at once.
    #[serde(default = "default_5s", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Time to wait for a free pooled connection.
    #[serde(default = "default_5s", with = "humantime_serde")]
    pub acquire_timeout: Duration,
    #[serde(default = "default_idle", with = "humantime_serde")]
    pub idle_timeout: Duration,
    #[serde(default = "default_lifetime", with = "humantime_serde")]
    pub max_lifetime: Duration,
    /// Ping a pooled connection before handing it out (one more round trip each time).
    /// Off by default: a connection the server has closed fails its first statement of
    /// the round and is replaced at once, so the ping buys nothing.
    #[serde(default)]
    pub test_before_acquire: bool,
}

fn default_max_connections() -> u32 {
    2
}
fn default_5s() -> Duration {
    Duration::from_secs(5)
}
fn default_idle() -> Duration {
    Duration::from_secs(600)
}
fn default_lifetime() -> Duration {
    Duration::from_secs(1800)
}
fn default_true() -> bool {
    true
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            max_connections: default_max_connections(),
            connect_timeout: default_5s(),
            acquire_timeout: default_5s(),
            idle_timeout: default_idle(),
            max_lifetime: default_lifetime(),
            test_before_acquire: false,
        }
    }
}

/// `[[job]]`: what to run, when, against which targets. These are the keys every kind
/// has; the kind's own keys (e.g. a health job's `integrity_check`) are in `params`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JobConfig {
    #[serde(default)]
    pub name: String,
    /// `health` or `maintenance` (more kinds arrive with sampling and rollups).
    #[serde(default)]
    pub kind: String,
    /// 5-field crontab, 6 fields with seconds, `@hourly`/`@daily`/..., or `@every 30s`.
    #[serde(default)]
    pub schedule: String,
    /// IANA time zone for cron schedules; defaults to `daemon.timezone`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Target names, `"*"` for all, or `"tag:NAME"` for targets carrying a tag.
    #[serde(default = "default_all_targets")]
    pub targets: Vec<String>,
    /// A run still going after this long is stopped and recorded as `timed_out`.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
    /// Random delay up to this much before each run, to spread a fleet's load; smaller
    /// than the job's interval.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub jitter: Option<Duration>,
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// The kind's own keys, typed; `None` when the kind is unknown. Read by the loader,
    /// shown by `config show` next to the common keys.
    #[serde(skip_deserializing, flatten, skip_serializing_if = "Option::is_none")]
    pub params: Option<JobParams>,
}

fn default_all_targets() -> Vec<String> {
    vec!["*".into()]
}

/// `[[channel]]`: where alerts go. Validated now; delivery arrives with the alerting work.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    #[serde(default)]
    pub name: String,
    /// `slack`, `webhook` or `email`.
    #[serde(default)]
    pub kind: String,
    /// Webhook URL inline (a secret: prefer `url_file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_severity: Option<String>,
    /// Email: `smtp://host:587` (STARTTLS) or `smtps://host:465` (implicit TLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp_url: Option<SecretUrl>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(default)]
    pub to: Vec<String>,
    /// Only alerts for targets with one of these tags (empty = all).
    #[serde(default)]
    pub tags: Vec<String>,
    /// Also send "RESOLVED" when a target is OK again.
    #[serde(default = "default_true")]
    pub send_resolved: bool,
    /// Webhook/Slack: the URL from this environment variable (instead of `url_file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_env: Option<String>,
    /// Webhook: sign each body with HMAC-SHA256 using the secret in this file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hmac_secret_file: Option<String>,
    /// Webhook: extra HTTP headers (values are treated as secrets: never shown).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, Secret>,
    /// How long one send may take (connect, TLS, request, response); default 10s.
    #[serde(
        default,
        with = "humantime_serde::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
    /// Email: `starttls`, `implicit` or `none` (default: from the `smtp_url` scheme).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<String>,
    /// Email: a PEM file of extra CA certificates the SMTP server's certificate may chain to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_ca_file: Option<String>,
}

/// The config file path chosen by `-c`, `DBWARDEN_CONFIG`, or the default.
pub fn config_path(cli: Option<PathBuf>) -> PathBuf {
    cli.unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH))
}

#[cfg(test)]
mod tests {
    use super::job::fields_of;
    use super::*;

    /// The README's configuration table names every key a config may contain, on a row of
    /// the key's own section, so the reference cannot lose a key again.
    #[test]
    fn every_key_is_in_the_readme_table() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
            .unwrap_or_else(|e| panic!("README.md: {e}"));
        // The first cell of each row of a section, split into its words.
        let cells = |section: &str| -> Vec<Vec<String>> {
            readme
                .lines()
                .filter_map(|l| l.strip_prefix(&format!("| `{section} ")))
                .map(|l| {
                    l.split('|')
                        .next()
                        .unwrap_or("")
                        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .filter(|w| !w.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .collect()
        };
        let kind_keys = KINDS.iter().flat_map(|k| (k.keys)().iter().copied());
        let sections: Vec<(&str, Option<&str>, Vec<&str>)> = vec![
            ("[daemon]", None, fields_of::<DaemonConfig>().to_vec()),
            ("[[target]]", None, fields_of::<TargetConfig>().to_vec()),
            (
                "[[target]]",
                Some("pool"),
                fields_of::<PoolConfig>().to_vec(),
            ),
            ("[[job]]", None, fields_of::<JobConfig>().to_vec()),
            ("[[job]]", None, kind_keys.collect()),
            ("[[channel]]", None, fields_of::<ChannelConfig>().to_vec()),
            ("[alerts]", None, fields_of::<AlertsConfig>().to_vec()),
        ];
        for (section, within, keys) in sections {
            let rows = cells(section);
            assert!(!keys.is_empty(), "{section}: no keys read");
            for key in keys {
                let found = rows.iter().any(|words| {
                    words.iter().any(|w| w == key)
                        && within.is_none_or(|p| words.iter().any(|w| w == p))
                });
                assert!(found, "README has no row for {section} {key}");
            }
        }
        assert!(!cells("[thresholds]").is_empty());
    }
}
