//! Pass two: what the values mean. Every problem is collected; a [`Config`] is returned only
//! when there is none.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono_tz::Tz;

use super::job::{Job, JobKind, TargetSelector};
use super::load::Parsed;
use super::ranges::{self, Limit};
use super::secret::{expand_credentials_path, read_secret_file};
use super::{
    ConfigError, ConfigErrors, DaemonConfig, PoolConfig, RawConfig, Secret, SecretUrl,
    TargetConfig, ThresholdConfig,
};
use crate::engine::{EngineKind, catalog};
use crate::health::CheckThresholds;
use crate::schedule::{Schedule, parse_tz};

/// A validated, immutable configuration. Swapped whole on reload.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    /// What was parsed (after environment overrides), for `config show`.
    pub raw: RawConfig,
    pub daemon: DaemonConfig,
    pub listen: SocketAddr,
    pub timezone: Tz,
    /// `daemon.history_buffer_bytes`, parsed.
    pub history_buffer_bytes: u64,
    pub targets: Vec<Target>,
    pub jobs: Vec<Job>,
    pub warnings: Vec<ConfigError>,
    /// Effective thresholds of the `dbwarden` self-target's checks (`[thresholds]`).
    pub self_thresholds: BTreeMap<&'static str, CheckThresholds>,
}

impl Config {
    pub fn target(&self, name: &str) -> Option<&Target> {
        self.targets.iter().find(|t| t.name == name)
    }

    pub fn job(&self, name: &str) -> Option<&Job> {
        self.jobs.iter().find(|j| j.name == name)
    }

    /// The targets a job runs against, in config order.
    pub fn job_targets(&self, job: &Job) -> Vec<&Target> {
        self.targets
            .iter()
            .filter(|t| job.targets.iter().any(|s| s.matches(t)))
            .collect()
    }
}

/// Where a target's password comes from; read at connect time so a rotated file is picked
/// up by the next connection without a reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    /// None, or inline in the URL.
    Url,
    File(String),
    Env(String),
}

impl PasswordSource {
    /// The password, if this source provides one. Errors name the file or variable.
    pub fn resolve(&self) -> Result<Option<Secret>, String> {
        match self {
            PasswordSource::Url => Ok(None),
            PasswordSource::File(f) => read_secret_file(f).map(Some),
            PasswordSource::Env(v) => match std::env::var(v) {
                Ok(s) if !s.is_empty() => Ok(Some(Secret::new(s.trim_end()))),
                _ => Err(format!("environment variable {v} is not set or empty")),
            },
        }
    }
}

/// One database to watch.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub engine: EngineKind,
    pub url: SecretUrl,
    pub password: PasswordSource,
    pub tags: Vec<String>,
    pub pool: PoolConfig,
    /// Effective thresholds for every check in the catalogue.
    pub thresholds: BTreeMap<&'static str, CheckThresholds>,
    pub integrity_check: bool,
    pub busy_timeout: Duration,
    /// PostgreSQL: the standbys the primary must have connected.
    pub expected_replicas: Option<super::ExpectedReplicas>,
    /// As written, for change detection on reload.
    pub raw: TargetConfig,
}

impl Target {
    /// Effective thresholds of a check (built-in when the catalogue lacks it).
    pub fn thresholds_for(&self, spec: &catalog::CheckSpec) -> CheckThresholds {
        self.thresholds
            .get(spec.name)
            .cloned()
            .unwrap_or_else(|| CheckThresholds::builtin(spec))
    }
}

struct Collector<'a> {
    origin: String,
    env_keys: &'a BTreeSet<String>,
    failed: &'a BTreeSet<String>,
    errors: Vec<ConfigError>,
    warnings: Vec<ConfigError>,
}

impl Collector<'_> {
    fn origin_of(&self, key: &str) -> String {
        match self.env_keys.iter().find(|k| key == k.as_str()) {
            Some(k) => format!(
                "environment variable DBWARDEN_{}",
                k.to_ascii_uppercase().replace('.', "__")
            ),
            None => self.origin.clone(),
        }
    }

    fn error(&mut self, key: impl ToString, message: impl Into<String>) {
        let key = key.to_string();
        // A key that already failed to parse (or lies under one) is not reported again.
        if self
            .failed
            .iter()
            .any(|f| key == *f || key.starts_with(&format!("{f}.")))
        {
            return;
        }
        self.errors.push(ConfigError {
            origin: self.origin_of(&key),
            key,
            message: message.into(),
        });
    }

    fn warn(&mut self, key: impl ToString, message: impl Into<String>) {
        let key = key.to_string();
        self.warnings.push(ConfigError {
            origin: self.origin_of(&key),
            key,
            message: message.into(),
        });
    }

    /// Checks that a secret file named by the config can be read. A path under
    /// `${CREDENTIALS_DIRECTORY}` outside systemd is a warning: it cannot be checked here.
    fn secret_file(&mut self, key: &str, raw: &str) {
        match expand_credentials_path(raw) {
            Err(e) => self.error(key, e),
            Ok(None) => self.warn(
                key,
                format!("{raw} is under ${{CREDENTIALS_DIRECTORY}}, which systemd sets only for the service (LoadCredential=); not checkable here"),
            ),
            Ok(Some(_)) => {
                if let Err(e) = read_secret_file(raw) {
                    self.error(key, e);
                }
            }
        }
    }

    fn plain_file(&mut self, key: &str, raw: &str) {
        self.secret_file(key, raw)
    }

    /// Reports a value outside its key's range (see `ranges.rs`).
    fn range(&mut self, key: &str, v: Limit) {
        if let Some(r) = ranges::lookup(key)
            && let Err(e) = r.check(v)
        {
            self.error(key, e);
        }
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

const NAME_RULE: &str = "use 1–64 letters, digits, '-', '_' or '.'";

/// Validates the parsed config; every error at once.
pub fn validate(path: &Path, parsed: Parsed) -> Result<Config, ConfigErrors> {
    let Parsed {
        raw,
        errors: parse_errors,
        failed_keys,
        env_keys,
    } = parsed;
    let mut c = Collector {
        origin: path.display().to_string(),
        env_keys: &env_keys,
        failed: &failed_keys,
        errors: parse_errors,
        warnings: Vec::new(),
    };

    // [daemon]
    let d = &raw.daemon;
    match EngineKind::from_url(d.history.expose()) {
        Some(EngineKind::Sqlite) | Some(EngineKind::Postgres) => {}
        _ => c.error(
            "daemon.history",
            format!(
                "\"{}\" is not a history store URL; use sqlite://PATH or postgres://...",
                d.history.redacted()
            ),
        ),
    }
    if let Some(f) = &d.history_password_file {
        c.secret_file("daemon.history_password_file", f);
    }
    let listen = match d.listen.parse::<SocketAddr>() {
        Ok(a) => a,
        Err(_) => {
            c.error(
                "daemon.listen",
                format!(
                    "\"{}\" is not an address:port; write e.g. \"127.0.0.1:9645\"",
                    d.listen
                ),
            );
            SocketAddr::from(([127, 0, 0, 1], 9645))
        }
    };
    if let Some(a) = &d.agent
        && !crate::store::valid_agent_name(a)
    {
        c.error(
            "daemon.agent",
            format!(
                "\"{}\" is not an agent name: use 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit (e.g. \"db-host-1\")",
                crate::text::escape(a)
            ),
        );
    }
    if let Some(f) = &d.api_token_file {
        c.plain_file("daemon.api_token_file", f);
    }
    let timezone = match parse_tz(&d.timezone) {
        Ok(tz) => tz,
        Err(e) => {
            c.error("daemon.timezone", e);
            Tz::UTC
        }
    };
    let count = |n: usize| Limit::Count(n as u64);
    c.range(
        "daemon.max_concurrent_targets",
        count(d.max_concurrent_targets),
    );
    c.range(
        "daemon.confirm_rounds",
        Limit::Count(u64::from(d.confirm_rounds)),
    );
    c.range(
        "daemon.history_buffer_records",
        count(d.history_buffer_records),
    );
    for (key, v) in [
        ("daemon.shutdown_grace", d.shutdown_grace),
        ("daemon.request_timeout", d.request_timeout),
        ("daemon.catch_up", d.catch_up),
        ("daemon.confirm_for", d.confirm_for),
        ("daemon.summary_interval", d.summary_interval),
        ("daemon.table_stats_interval", d.table_stats_interval),
    ] {
        c.range(key, Limit::Duration(v));
    }
    let history_buffer_bytes = match d.history_buffer_bytes.parse(crate::health::Unit::Bytes) {
        Ok(b) => {
            // f64 to u64 saturates, so a huge value still fails the range below.
            let b = b as u64;
            c.range("daemon.history_buffer_bytes", Limit::Bytes(b));
            b
        }
        Err(e) => {
            c.error("daemon.history_buffer_bytes", e.to_string());
            0
        }
    };

    // [thresholds]
    let global = check_thresholds(&mut c, "thresholds", &raw.thresholds);

    let self_thresholds = crate::alerts::self_target::CHECKS
        .iter()
        .map(|spec| {
            let mut th = CheckThresholds::builtin(spec);
            if let Some(o) = global.get(spec.name) {
                o.apply(&mut th);
            }
            (spec.name, th)
        })
        .collect();

    // [[target]]
    let mut targets = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, t) in raw.targets.iter().enumerate() {
        let key = |k: &str| format!("target[{i}].{k}");
        if t.name.is_empty() {
            c.error(key("name"), "missing; every target needs a name");
        } else if !valid_name(&t.name) {
            c.error(key("name"), format!("\"{}\": {NAME_RULE}", t.name));
        } else if t.name == crate::alerts::self_target::NAME {
            c.error(
                key("name"),
                "\"dbwarden\" is the built-in target of the daemon watching itself; choose another name",
            );
        } else if !seen.insert(t.name.clone()) {
            c.error(key("name"), format!("duplicate target name \"{}\"", t.name));
        }
        let engine = check_target_url(&mut c, i, t);
        let password = check_password(&mut c, i, t);
        if let Some(f) = &t.maintenance_password_file {
            c.secret_file(&key("maintenance_password_file"), f);
        }
        if let Some(u) = &t.maintenance_url
            && EngineKind::from_url(u.expose()) != engine
        {
            c.error(
                key("maintenance_url"),
                "must use the same engine (scheme) as url",
            );
        }
        check_pool(&mut c, i, &t.pool);
        check_expected_replicas(&mut c, &key("expected_replicas"), engine, t);
        c.range(&key("busy_timeout"), Limit::Duration(t.busy_timeout));
        if let Some(cap) = &t.capacity
            && crate::health::threshold::parse_bytes(cap).is_none_or(|b| b <= 0.0)
        {
            c.error(
                key("capacity"),
                format!("\"{cap}\" is not a size; write e.g. \"500GB\" (1024-based)"),
            );
        }
        let own = check_thresholds(&mut c, &key("thresholds"), &t.thresholds);
        let mut resolved = BTreeMap::new();
        for spec in catalog::all() {
            let mut th = CheckThresholds::builtin(spec);
            for layer in [&global, &own] {
                if let Some(o) = layer.get(spec.name) {
                    o.apply(&mut th);
                }
            }
            resolved.insert(spec.name, th);
        }
        if let Some(engine) = engine {
            targets.push(Target {
                name: t.name.clone(),
                engine,
                url: t.url.clone(),
                password,
                tags: t.tags.clone(),
                pool: t.pool.clone(),
                thresholds: resolved,
                integrity_check: t.integrity_check,
                busy_timeout: t.busy_timeout,
                expected_replicas: t.expected_replicas.clone(),
                raw: t.clone(),
            });
        }
    }

    // [[job]]
    let mut jobs = Vec::new();
    let mut job_names = BTreeSet::new();
    for (i, j) in raw.jobs.iter().enumerate() {
        let key = |k: &str| format!("job[{i}].{k}");
        if j.name.is_empty() {
            c.error(key("name"), "missing; every job needs a name");
        } else if !valid_name(&j.name) {
            c.error(key("name"), format!("\"{}\": {NAME_RULE}", j.name));
        } else if !job_names.insert(j.name.clone()) {
            c.error(key("name"), format!("duplicate job name \"{}\"", j.name));
        }
        let kind = if j.kind.is_empty() {
            c.error(
                key("kind"),
                format!("missing; one of: {}", JobKind::ALL.join(", ")),
            );
            None
        } else {
            let k = JobKind::parse(&j.kind);
            if k.is_none() {
                c.error(
                    key("kind"),
                    format!(
                        "\"{}\" is not a job kind this version runs; one of: {}",
                        j.kind,
                        JobKind::ALL.join(", ")
                    ),
                );
            }
            k
        };
        let tz = match &j.timezone {
            Some(name) => match parse_tz(name) {
                Ok(tz) => tz,
                Err(e) => {
                    c.error(key("timezone"), e);
                    timezone
                }
            },
            None => timezone,
        };
        let schedule = if j.schedule.is_empty() {
            c.error(
                key("schedule"),
                "missing; write e.g. \"@every 30s\" or \"0 3 * * *\"",
            );
            None
        } else {
            match Schedule::parse(&j.schedule, tz) {
                Ok(Schedule::Every(d)) => {
                    // `@every 100000000y` parses, and would never fire.
                    c.range(&key("schedule"), Limit::Duration(d));
                    Some(Schedule::Every(d))
                }
                Ok(s) => Some(s),
                Err(e) => {
                    c.error(key("schedule"), e);
                    None
                }
            }
        };
        let mut selectors = Vec::new();
        if j.targets.is_empty() {
            c.error(
                key("targets"),
                "is empty; list target names, \"*\" for all, or \"tag:NAME\"",
            );
        }
        for (k, s) in j.targets.iter().enumerate() {
            if s == "*" {
                selectors.push(TargetSelector::All);
            } else if let Some(tag) = s.strip_prefix("tag:") {
                if !raw.targets.iter().any(|t| t.tags.iter().any(|x| x == tag)) {
                    c.warn(
                        format!("job[{i}].targets[{k}]"),
                        format!("no target has the tag \"{tag}\" yet"),
                    );
                }
                selectors.push(TargetSelector::Tag(tag.to_string()));
            } else if raw.targets.iter().any(|t| &t.name == s) {
                selectors.push(TargetSelector::Name(s.clone()));
            } else {
                let mut known: Vec<&str> = raw.targets.iter().map(|t| t.name.as_str()).collect();
                known.dedup();
                c.error(
                    format!("job[{i}].targets[{k}]"),
                    format!(
                        "unknown target \"{s}\"; known targets: {}",
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    ),
                );
            }
        }
        if let Some(t) = j.timeout {
            c.range(&key("timeout"), Limit::Duration(t));
        }
        let jitter = j.jitter.unwrap_or(Duration::ZERO);
        let jitter_in_range =
            ranges::lookup("job.jitter").is_none_or(|r| r.check(Limit::Duration(jitter)).is_ok());
        c.range(&key("jitter"), Limit::Duration(jitter));
        if jitter_in_range
            && let Some(s) = &schedule
            && let Some((interval, what)) = super::job::shortest_interval(s, chrono::Utc::now())
            && !jitter.is_zero()
            && jitter >= interval
        {
            c.error(
                key("jitter"),
                format!(
                    "{} is not smaller than the job's interval ({}, {what}): a jitter not smaller than the interval is a config error; lower jitter or space the schedule out",
                    humantime::format_duration(jitter),
                    humantime::format_duration(interval),
                ),
            );
        }
        if let Some(m) = j.params.as_ref().and_then(|p| p.maintenance()) {
            for (k, msg) in m.problems() {
                c.error(key(k), msg);
            }
        }
        if let Some(crate::config::JobParams::Rollup(r)) = &j.params {
            for (k, msg) in r.problems() {
                c.error(key(k), msg);
            }
        }
        if let (Some(kind), Some(schedule), Some(params)) = (kind, schedule, j.params.clone()) {
            jobs.push(Job {
                name: j.name.clone(),
                kind,
                schedule,
                schedule_text: j.schedule.clone(),
                targets: selectors,
                timeout: j.timeout.unwrap_or_else(|| kind.default_timeout()),
                jitter,
                enabled: j.enabled,
                timezone: tz,
                params,
            });
        }
    }
    if raw.jobs.is_empty() {
        c.warn(
            "job",
            "no [[job]] configured: the daemon will run but do nothing",
        );
    }

    // [[channel]]
    let mut channel_names = BTreeSet::new();
    for (i, ch) in raw.channels.iter().enumerate() {
        let key = |k: &str| format!("channel[{i}].{k}");
        if !valid_name(&ch.name) {
            c.error(key("name"), format!("\"{}\": {NAME_RULE}", ch.name));
        } else if !channel_names.insert(ch.name.clone()) {
            c.error(
                key("name"),
                format!("duplicate channel name \"{}\"", ch.name),
            );
        }
        match ch.kind.as_str() {
            "slack" | "webhook" => match (&ch.url, &ch.url_file, &ch.url_env) {
                (None, None, None) => c.error(
                    key("url_file"),
                    "missing; a webhook channel needs url_file (or url_env, or url)",
                ),
                (Some(u), None, None) => {
                    if !(u.expose().starts_with("https://") || u.expose().starts_with("http://")) {
                        c.error(key("url"), "must be an http(s):// URL");
                    }
                    c.warn(key("url"), "a webhook URL is a secret: prefer url_file");
                }
                (None, Some(f), None) => c.secret_file(&key("url_file"), f),
                (None, None, Some(v)) => {
                    if std::env::var(v).map_or(true, |s| s.trim().is_empty()) {
                        c.warn(
                            key("url_env"),
                            format!(
                                "environment variable {v} is not set here; the daemon needs it"
                            ),
                        );
                    }
                }
                _ => c.error(
                    key("url"),
                    "url given more than once: use one of url_file, url_env, url",
                ),
            },
            "email" => {
                match &ch.smtp_url {
                    None => c.error(
                        key("smtp_url"),
                        "missing; write e.g. \"smtp://mail.example.com:587\"",
                    ),
                    Some(u)
                        if !(u.expose().starts_with("smtp://")
                            || u.expose().starts_with("smtps://")) =>
                    {
                        c.error(
                            key("smtp_url"),
                            "must start with smtp:// (STARTTLS) or smtps:// (implicit TLS)",
                        )
                    }
                    _ => {}
                }
                if ch.from.as_deref().is_none_or(|f| !f.contains('@')) {
                    c.error(key("from"), "missing or not an email address");
                }
                if ch.to.is_empty() {
                    c.error(key("to"), "needs at least one recipient");
                }
                if ch.password_file.is_some() && ch.password_env.is_some() {
                    c.error(
                        key("password_env"),
                        "password given twice (password_file and password_env)",
                    );
                }
                if let Some(f) = &ch.password_file {
                    c.secret_file(&key("password_file"), f);
                }
            }
            "" => c.error(key("kind"), "missing; one of: slack, webhook, email"),
            other => c.error(
                key("kind"),
                format!("\"{other}\" is not a channel kind; one of: slack, webhook, email"),
            ),
        }
        validate_channel_sending(&mut c, i, ch);
        if let Some(s) = &ch.min_severity
            && !matches!(
                s.to_ascii_lowercase().as_str(),
                "ok" | "warning" | "critical" | "unknown"
            )
        {
            c.error(
                key("min_severity"),
                format!("\"{s}\" is not a status; one of: warning, unknown, critical"),
            );
        }
    }
    // [retention]
    for (k, m) in raw.retention.problems() {
        c.error(format!("retention.{k}"), m);
    }
    // [alerts]
    let a = &raw.alerts;
    for (k, v) in [
        ("alerts.group_wait", a.group_wait),
        ("alerts.group_interval", a.group_interval),
        ("alerts.repeat_interval", a.repeat_interval),
        ("alerts.channel_failing_after", a.channel_failing_after),
    ] {
        c.range(k, Limit::Duration(v));
    }
    if let Some(u) = &raw.daemon.public_url
        && !url::Url::parse(u).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
    {
        c.error(
            "daemon.public_url",
            format!(
                "\"{u}\" is not an http(s):// URL; write e.g. \"https://dbwarden.example.com/\""
            ),
        );
    }

    if !c.errors.is_empty() {
        return Err(ConfigErrors {
            errors: c.errors,
            warnings: c.warnings,
        });
    }
    Ok(Config {
        path: path.to_path_buf(),
        daemon: raw.daemon.clone(),
        raw,
        listen,
        timezone,
        history_buffer_bytes,
        targets,
        jobs,
        warnings: c.warnings,
        self_thresholds,
    })
}

fn check_target_url(c: &mut Collector<'_>, i: usize, t: &TargetConfig) -> Option<EngineKind> {
    let key = format!("target[{i}].url");
    let url = t.url.expose();
    if url.is_empty() {
        c.error(&key, "missing; write e.g. \"postgres://dbwarden@db1:5432/orders\", \"mysql://dbwarden@db1/shop\" or \"sqlite:///var/lib/app/app.db\"");
        return None;
    }
    let Some(engine) = EngineKind::from_url(url) else {
        let scheme = url.split(':').next().unwrap_or("");
        c.error(
            &key,
            format!("unsupported scheme \"{scheme}\" in \"{}\"; use postgres://, mysql:// (also MariaDB) or sqlite://", t.url.redacted()),
        );
        return None;
    };
    if engine != EngineKind::Sqlite {
        match url::Url::parse(url) {
            Err(e) => {
                c.error(
                    &key,
                    format!("\"{}\" is not a valid URL: {e}", t.url.redacted()),
                );
                return None;
            }
            Ok(u) => {
                if u.host_str().is_none_or(str::is_empty) {
                    c.error(&key, format!("\"{}\" names no host", t.url.redacted()));
                }
                if u.password().is_some() {
                    c.warn(
                        &key,
                        "the password is inline in the URL; move it to password_file or password_env",
                    );
                }
            }
        }
    } else if crate::engine::sqlite::path_from_url(url).is_none() {
        c.error(
            &key,
            "an in-memory SQLite database cannot be watched; name a file",
        );
        return None;
    }
    Some(engine)
}

fn check_password(c: &mut Collector<'_>, i: usize, t: &TargetConfig) -> PasswordSource {
    let key = |k: &str| format!("target[{i}].{k}");
    let inline = url::Url::parse(t.url.expose())
        .ok()
        .is_some_and(|u| u.password().is_some());
    let sources = [inline, t.password_file.is_some(), t.password_env.is_some()]
        .iter()
        .filter(|b| **b)
        .count();
    if sources > 1 {
        let k = if t.password_env.is_some() {
            "password_env"
        } else {
            "password_file"
        };
        c.error(
            key(k),
            "password given twice: use only one of the URL, password_file and password_env",
        );
    }
    if let Some(f) = &t.password_file {
        c.secret_file(&key("password_file"), f);
        return PasswordSource::File(f.clone());
    }
    if let Some(v) = &t.password_env {
        if v.is_empty() || v.contains('=') {
            c.error(key("password_env"), "must name an environment variable");
        } else if std::env::var_os(v).is_none() {
            c.error(
                key("password_env"),
                format!("environment variable {v} is not set (it should hold the password)"),
            );
        }
        return PasswordSource::Env(v.clone());
    }
    PasswordSource::Url
}

/// `expected_replicas`: PostgreSQL only; a count 1–100, non-empty names, or the keyword.
fn check_expected_replicas(
    c: &mut Collector<'_>,
    key: &str,
    engine: Option<EngineKind>,
    t: &TargetConfig,
) {
    use super::ExpectedReplicas as E;
    let Some(e) = &t.expected_replicas else {
        return;
    };
    if engine.is_some_and(|e| e != EngineKind::Postgres) {
        c.error(key, "only PostgreSQL targets have expected replicas");
        return;
    }
    match e {
        E::Count(n) if !(1..=100).contains(n) => {
            c.error(key, format!("{n}: expected 1–100 replicas"));
        }
        E::Names(names) if names.is_empty() || names.iter().any(|n| n.trim().is_empty()) => {
            c.error(
                key,
                "list the standbys' application_name values, e.g. [\"standby1\"]",
            );
        }
        E::Keyword(k) if k != "synchronous_standby_names" => {
            c.error(
                key,
                format!(
                    "\"{k}\": expected a count (2), names ([\"standby1\"]) or \"synchronous_standby_names\""
                ),
            );
        }
        _ => {}
    }
}

fn check_pool(c: &mut Collector<'_>, i: usize, p: &PoolConfig) {
    let key = |k: &str| format!("target[{i}].pool.{k}");
    c.range(
        &key("max_connections"),
        Limit::Count(u64::from(p.max_connections)),
    );
    if (21..=100).contains(&p.max_connections) {
        c.warn(
            key("max_connections"),
            "more than 20 connections per target is unusual for a monitoring agent",
        );
    }
    for (name, d) in [
        ("connect_timeout", p.connect_timeout),
        ("acquire_timeout", p.acquire_timeout),
        ("idle_timeout", p.idle_timeout),
        ("max_lifetime", p.max_lifetime),
    ] {
        c.range(&key(name), Limit::Duration(d));
    }
}

/// A threshold override, parsed: each field replaces the layer below only when set.
struct Override {
    enabled: Option<bool>,
    warning: Option<f64>,
    critical: Option<f64>,
    floor: Option<f64>,
}

impl Override {
    fn apply(&self, t: &mut CheckThresholds) {
        if let Some(e) = self.enabled {
            t.enabled = e;
        }
        if self.warning.is_some() {
            t.warning = self.warning;
        }
        if self.critical.is_some() {
            t.critical = self.critical;
        }
        if self.floor.is_some() {
            t.floor = self.floor;
        }
    }
}

fn check_thresholds(
    c: &mut Collector<'_>,
    prefix: &str,
    map: &BTreeMap<String, ThresholdConfig>,
) -> BTreeMap<&'static str, Override> {
    let mut out = BTreeMap::new();
    for (name, t) in map {
        let key = format!("{prefix}.{name}");
        let Some(spec) = catalog::spec(name) else {
            let mut names: Vec<&str> = catalog::all().map(|s| s.name).collect();
            names.sort_unstable();
            c.error(
                key,
                format!(
                    "unknown check \"{name}\"; known checks: {}",
                    names.join(", ")
                ),
            );
            continue;
        };
        let mut parse = |field: &str, v: &Option<crate::health::ThresholdValue>| -> Option<f64> {
            let v = v.as_ref()?;
            match v.parse(spec.unit) {
                Ok(x) => Some(x),
                Err(e) => {
                    c.error(format!("{key}.{field}"), e.to_string());
                    None
                }
            }
        };
        let warning = parse("warning", &t.warning);
        let critical = parse("critical", &t.critical);
        let floor = match (&t.min_rows, &t.min_size) {
            (Some(r), None) => Some(*r as f64),
            (None, Some(s)) => match s.parse(crate::health::Unit::Bytes) {
                Ok(x) => Some(x),
                Err(e) => {
                    c.error(format!("{key}.min_size"), e.to_string());
                    None
                }
            },
            (Some(_), Some(_)) => {
                c.error(
                    format!("{key}.min_size"),
                    "give min_rows or min_size, not both",
                );
                None
            }
            (None, None) => None,
        };
        let eff_w = warning.or(spec.warning);
        let eff_c = critical.or(spec.critical);
        if let (Some(w), Some(cr)) = (eff_w, eff_c) {
            let inverted = match spec.direction {
                catalog::Direction::HigherIsWorse => w > cr,
                catalog::Direction::LowerIsWorse => w < cr,
            };
            if inverted && (warning.is_some() || critical.is_some()) {
                c.error(
                    format!("{key}.warning"),
                    format!(
                        "warning {} is past critical {}: {}",
                        spec.unit.format(w),
                        spec.unit.format(cr),
                        match spec.direction {
                            catalog::Direction::HigherIsWorse => "warning must be the lower value",
                            catalog::Direction::LowerIsWorse => "for this check lower is worse, so warning must be the higher value",
                        }
                    ),
                );
            }
        }
        out.insert(
            spec.name,
            Override {
                enabled: t.enabled,
                warning,
                critical,
                floor,
            },
        );
    }
    out
}

/// The sending keys of one `[[channel]]` that apply to its kind: headers, signature secret,
/// timeout, SMTP TLS mode and CA file. Keys of another kind are reported, not ignored.
fn validate_channel_sending(c: &mut Collector, i: usize, ch: &super::ChannelConfig) {
    let key = |k: &str| format!("channel[{i}].{k}");
    let webhook = ch.kind == "webhook";
    let email = ch.kind == "email";
    if !webhook {
        if !ch.headers.is_empty() {
            c.error(
                key("headers"),
                "only a webhook channel sends custom headers",
            );
        }
        if ch.hmac_secret_file.is_some() {
            c.error(
                key("hmac_secret_file"),
                "only a webhook channel signs its body",
            );
        }
    }
    if !email {
        if ch.tls.is_some() {
            c.error(key("tls"), "only an email channel has an SMTP TLS mode");
        }
        if ch.tls_ca_file.is_some() {
            c.error(key("tls_ca_file"), "only an email channel takes a CA file");
        }
    }
    for (name, value) in &ch.headers {
        if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            c.error(
                key("headers"),
                format!("\"{name}\" is not a valid HTTP header name"),
            );
        } else if reqwest::header::HeaderValue::from_str(value.expose()).is_err() {
            c.error(
                key("headers"),
                format!("the value of header \"{name}\" has characters a header cannot carry (value not shown)"),
            );
        }
        if matches!(
            name.to_ascii_lowercase().as_str(),
            "content-type" | "idempotency-key" | "x-dbwarden-signature" | "content-length" | "host"
        ) {
            c.error(
                key("headers"),
                format!("\"{name}\" is set by dbwarden itself and cannot be overridden"),
            );
        }
    }
    if let Some(f) = &ch.hmac_secret_file {
        c.secret_file(&key("hmac_secret_file"), f);
    }
    if let Some(t) = ch.timeout
        && (t < Duration::from_secs(1) || t > Duration::from_secs(300))
    {
        c.error(
            key("timeout"),
            "must be between 1s and 5m: a send holds a delivery slot for this long",
        );
    }
    if let Some(t) = &ch.tls
        && !matches!(t.as_str(), "starttls" | "implicit" | "none")
    {
        c.error(
            key("tls"),
            format!("\"{t}\" is not a TLS mode; one of: starttls, implicit, none"),
        );
    }
    if let Some(f) = &ch.tls_ca_file {
        c.plain_file(&key("tls_ca_file"), f);
    }
    if email {
        for (k, addr) in ch
            .from
            .iter()
            .map(|a| ("from", a))
            .chain(ch.to.iter().map(|a| ("to", a)))
        {
            if addr.contains('@') && addr.parse::<lettre::message::Mailbox>().is_err() {
                c.error(
                    key(k),
                    format!("\"{addr}\" is not an email address (write name@example.com or \"Name <name@example.com>\")"),
                );
            }
        }
        if ch.tls.as_deref() == Some("none")
            && (ch.password_file.is_some() || ch.password_env.is_some())
            && !ch
                .smtp_url
                .as_ref()
                .and_then(|u| url::Url::parse(u.expose()).ok())
                .and_then(|u| u.host_str().map(is_loopback_host))
                .unwrap_or(false)
        {
            c.warn(
                key("tls"),
                "tls = \"none\" with a password sends it in clear over the network; use starttls or implicit",
            );
        }
    }
}

fn is_loopback_host(h: &str) -> bool {
    h == "localhost"
        || h.trim_matches(|c| c == '[' || c == ']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}
