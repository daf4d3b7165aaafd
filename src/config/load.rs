//! Pass one: file + environment into [`RawConfig`], every structural error collected.

use std::collections::BTreeSet;
use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use figment::value::{Dict, Value};

use super::job::{DeResult, de, fields_of, foreign_key_message};
use super::{ConfigError, ConfigErrors, JobConfig, JobKind, RawConfig, ranges, validate};

/// The environment prefix; only variables that also contain `__` are config keys.
const ENV_PREFIX: &str = "DBWARDEN_";

/// Parses file + environment into the raw config. Returns the raw config (with every
/// offending key removed) plus the structural errors found, and the set of key paths
/// that failed, so validation does not report them a second time.
pub struct Parsed {
    pub raw: RawConfig,
    pub errors: Vec<ConfigError>,
    pub failed_keys: BTreeSet<String>,
    pub env_keys: BTreeSet<String>,
}

fn env_provider() -> Env {
    Env::prefixed(ENV_PREFIX)
        .filter(|k| k.as_str().contains("__"))
        .split("__")
}

/// Which dotted key paths the environment sets, with the variable that sets each.
fn env_keys() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .filter_map(|k| {
            let rest = k.strip_prefix(ENV_PREFIX)?;
            rest.contains("__")
                .then(|| (rest.to_ascii_lowercase().replace("__", "."), k.clone()))
        })
        .collect()
}

/// Reads and parses the config file and the environment. Every unknown key and every value
/// of the wrong type is reported; the offending key is dropped and parsing carries on.
pub fn load_raw(path: &Path) -> Result<Parsed, ConfigErrors> {
    let origin = path.display().to_string();
    let fatal = |message: String| ConfigErrors {
        errors: vec![ConfigError {
            origin: origin.clone(),
            key: String::new(),
            message,
        }],
        warnings: vec![],
    };
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => {}
        Ok(_) => return Err(fatal("is not a file".into())),
        Err(e) => {
            return Err(fatal(format!(
                "cannot read the config file: {}; pass another with -c FILE (config/dbwarden.toml is a runnable example)",
                super::secret::io_reason(&e)
            )));
        }
    }
    let figment = Figment::from(Toml::file_exact(path)).merge(env_provider());
    let value: Value = figment.extract().map_err(|e| {
        // Syntax errors: figment's message already carries toml's line and column.
        fatal(e.to_string())
    })?;
    let Value::Dict(_, mut dict) = value else {
        return Err(fatal("the file must contain TOML tables and keys".into()));
    };
    let env = env_keys();
    let mut sink = Sink {
        origin,
        env: &env,
        errors: Vec::new(),
        failed_keys: BTreeSet::new(),
    };
    // Jobs are read per kind (their keys depend on `kind`), after the rest.
    let jobs = dict.remove("job");
    let raw = collect(&mut dict, &[], de::<RawConfig>, |p, e| {
        sink.parse_error(p, e)
    });
    let jobs = parse_jobs(jobs, &mut sink);
    match raw {
        Some(raw) => Ok(Parsed {
            raw: RawConfig { jobs, ..raw },
            errors: sink.errors,
            failed_keys: sink.failed_keys,
            env_keys: env.iter().map(|(k, _)| k.clone()).collect(),
        }),
        None => Err(ConfigErrors {
            errors: sink.errors,
            warnings: vec![],
        }),
    }
}

/// Where pass one's errors go, each with the origin of its key (file or variable).
struct Sink<'a> {
    origin: String,
    env: &'a [(String, String)],
    errors: Vec<ConfigError>,
    failed_keys: BTreeSet<String>,
}

impl Sink<'_> {
    fn push(&mut self, key: String, message: String) {
        let origin = self
            .env
            .iter()
            .find(|(k, _)| key == *k || key.starts_with(&format!("{k}.")))
            .map(|(_, var)| format!("environment variable {var}"))
            .unwrap_or_else(|| self.origin.clone());
        self.errors.push(ConfigError {
            origin,
            key: key.clone(),
            message,
        });
        self.failed_keys.insert(key);
    }

    /// A serde error at `path`; a ranged key's error also says the allowed range (a
    /// duration like `1000000000000y` fails here, before validation sees it).
    fn parse_error(&mut self, path: &[Seg], e: figment::Error) {
        let key = render(path);
        let mut message = explain(&e.to_string());
        if !matches!(e.kind, figment::error::Kind::UnknownField(..))
            && let Some(range) = ranges::lookup(&key)
        {
            // humantime refuses a duration past u64 seconds as "invalid value".
            if let figment::error::Kind::InvalidValue(figment::error::Actual::Str(v), exp) = &e.kind
                && exp.contains("duration")
            {
                message = format!("\"{v}\" is not a duration or far too large");
            }
            message = format!("{message}; {}", range.allowed());
        }
        self.push(key, message);
    }
}

/// Deserializes `dict` (found at `prefix`) with `de`, reporting every error: each pass
/// reports one, removes the offending key and tries again. `None` only when an error names
/// no key that could be removed.
fn collect<T>(
    dict: &mut Dict,
    prefix: &[Seg],
    de: impl Fn(&Value) -> DeResult<T>,
    mut report: impl FnMut(&[Seg], figment::Error),
) -> Option<T> {
    // A config with 200 mistakes is not worth more passes than that.
    for _ in 0..200 {
        let v = Value::Dict(figment::value::Tag::Default, dict.clone());
        match de(&v) {
            Ok(t) => return Some(t),
            Err(e) => {
                let inner = segments(&e.path().to_string());
                let full: Vec<Seg> = prefix.iter().cloned().chain(inner.clone()).collect();
                report(&full, e.into_inner());
                if !remove_path(dict, &inner) {
                    // Nothing to remove (should not happen with defaulted fields): stop
                    // rather than loop on the same error.
                    return None;
                }
            }
        }
    }
    None
}

/// Reads `[[job]]` tables: the common keys, then the kind's own keys, where a key of
/// another kind (or of none) is reported as such. Indices stay those of the file.
fn parse_jobs(value: Option<Value>, sink: &mut Sink<'_>) -> Vec<JobConfig> {
    let items = match value {
        None => return Vec::new(),
        Some(Value::Array(_, items)) => items,
        Some(_) => {
            sink.push("job".into(), "must be a list of [[job]] tables".into());
            return Vec::new();
        }
    };
    let common_keys = fields_of::<JobConfig>();
    let mut jobs = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let prefix = [Seg::Key("job".into()), Seg::Index(i)];
        let Value::Dict(_, dict) = item else {
            sink.push(format!("job[{i}]"), "must be a table ([[job]])".into());
            jobs.push(JobConfig::default());
            continue;
        };
        let (mut common, mut own): (Dict, Dict) = dict
            .into_iter()
            .partition(|(k, _)| common_keys.contains(&k.as_str()));
        let mut job = collect(&mut common, &prefix, de::<JobConfig>, |p, e| {
            sink.parse_error(p, e)
        })
        .unwrap_or_default();
        // An unknown kind is reported by validation; its keys cannot be judged.
        if let Some(kind) = JobKind::parse(&job.kind) {
            job.params = collect(&mut own, &prefix, kind.spec().parse, |p, e| match &e.kind {
                figment::error::Kind::UnknownField(name, _) => {
                    sink.push(render(p), foreign_key_message(name, kind, common_keys))
                }
                _ => sink.parse_error(p, e),
            });
        }
        jobs.push(job);
    }
    jobs
}

/// Loads, parses and validates a config file; all errors at once, or the usable config.
pub fn load(path: &Path) -> Result<super::Config, ConfigErrors> {
    let parsed = load_raw(path)?;
    validate::validate(path, parsed)
}

#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Key(String),
    Index(usize),
}

/// Parses serde_path_to_error's rendering (`target[1].pool.max_connections`).
fn segments(p: &str) -> Vec<Seg> {
    let mut out = Vec::new();
    if p == "." || p.is_empty() {
        return out;
    }
    for part in p.split('.') {
        let mut rest = part;
        if let Some(b) = rest.find('[') {
            if b > 0 {
                out.push(Seg::Key(rest[..b].to_string()));
            }
            rest = &rest[b..];
            while let Some(stripped) = rest.strip_prefix('[') {
                let end = stripped.find(']').unwrap_or(stripped.len());
                if let Ok(i) = stripped[..end].parse() {
                    out.push(Seg::Index(i));
                }
                rest = stripped.get(end + 1..).unwrap_or("");
            }
        } else if !rest.is_empty() {
            out.push(Seg::Key(rest.to_string()));
        }
    }
    out
}

fn render(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

fn remove_path(dict: &mut Dict, path: &[Seg]) -> bool {
    let Some((Seg::Key(first), rest)) = path.split_first() else {
        return false;
    };
    if rest.is_empty() {
        return dict.remove(first).is_some();
    }
    match dict.get_mut(first) {
        Some(v) => remove_in_value(v, rest),
        None => false,
    }
}

fn remove_in_value(v: &mut Value, path: &[Seg]) -> bool {
    match (v, path.first()) {
        (Value::Dict(_, d), Some(Seg::Key(_))) => remove_path(d, path),
        (Value::Array(_, items), Some(Seg::Index(i))) => {
            if path.len() == 1 {
                if *i < items.len() {
                    items.remove(*i);
                    return true;
                }
                false
            } else {
                match items.get_mut(*i) {
                    Some(item) => remove_in_value(item, &path[1..]),
                    None => false,
                }
            }
        }
        _ => false,
    }
}

/// Rewrites figment's "unknown field: found `x`, expected `one of ...`" for humans; the
/// key itself is already the last segment of the error's path.
fn explain(msg: &str) -> String {
    if let Some(rest) = msg.strip_prefix("unknown field: found `") {
        let name = rest.split('`').next().unwrap_or("");
        let known = rest
            .split_once("expected `one of ")
            .map(|(_, k)| k.strip_suffix('`').unwrap_or(k))
            .map(|k| format!("; known keys here: {k}"))
            .unwrap_or_default();
        return format!("unknown key `{name}`{known}");
    }
    tidy(msg)
}

/// figment's messages mention its own types; keep the part a user understands.
fn tidy(msg: &str) -> String {
    msg.replace("invalid type: found", "wrong type: found")
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_round_trip() {
        let p = segments("target[1].pool.max_connections");
        assert_eq!(
            p,
            vec![
                Seg::Key("target".into()),
                Seg::Index(1),
                Seg::Key("pool".into()),
                Seg::Key("max_connections".into())
            ]
        );
        assert_eq!(render(&p), "target[1].pool.max_connections");
        assert!(segments(".").is_empty());
    }

    #[test]
    fn explains_unknown_keys() {
        assert_eq!(
            explain("unknown field: found `histroy`, expected `one of `history`, `listen``"),
            "unknown key `histroy`; known keys here: `history`, `listen`"
        );
    }
}
