//! Engines by target name, reused across rounds so pools stay warm.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::{Config, Target};
use crate::engine::{Engine, EngineError};

/// How long a replaced engine waits for the runs still using it before it is closed anyway.
const RETIRE_WAIT_MAX: Duration = Duration::from_secs(3600);

/// Engines by target name. A target whose *connection settings* changed on reload gets a
/// fresh engine; thresholds and tags are read from the current config every round, so
/// they never need one. A replaced engine is closed once the runs still using it (they
/// hold an `Arc` to it, so they can still cancel their own statements) have finished.
#[derive(Default)]
pub struct Engines {
    map: Mutex<HashMap<String, (String, Arc<Engine>)>>,
    /// The settings key of every target of the current config, once a reload has said
    /// (`None` before: every target is current).
    current: Mutex<Option<HashMap<String, String>>>,
    /// `dbwarden check`: one connection per target ([`Engine::open_one_shot`]).
    one_shot: bool,
}

/// What requires a new engine: connection settings only (secrets only through their
/// source, so a rotated password file is picked up by the next connection).
fn settings_key(t: &Target) -> String {
    Engine::settings_key(t)
}

impl Engines {
    /// Engines for one-shot rounds (`dbwarden check`): one connection per target.
    pub fn one_shot() -> Self {
        Engines {
            one_shot: true,
            ..Engines::default()
        }
    }

    /// The engine of a target, opened on first use. A run that still carries a target's
    /// settings from before a reload (queued for a slot meanwhile) gets an engine of its
    /// own, closed when the run ends: it never replaces the current target's engine.
    pub fn get(&self, t: &Target) -> Result<Arc<Engine>, EngineError> {
        let key = settings_key(t);
        let stale = self
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_some_and(|c| c.get(&t.name) != Some(&key));
        if stale {
            let e = Arc::new(self.open(t)?);
            retire(e.clone());
            return Ok(e);
        }
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((old_key, e)) = map.get(&t.name)
            && *old_key == key
        {
            return Ok(e.clone());
        }
        let e = Arc::new(self.open(t)?);
        if let Some((_, old)) = map.insert(t.name.clone(), (key, e.clone())) {
            retire(old);
        }
        Ok(e)
    }

    fn open(&self, t: &Target) -> Result<Engine, EngineError> {
        if self.one_shot {
            Engine::open_one_shot(t)
        } else {
            Engine::open(t)
        }
    }

    /// After a reload: drops the engines of targets that left the config or whose
    /// connection settings changed; each closes once the runs using it have finished.
    pub fn retain(&self, config: &Config) {
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(
            config
                .targets
                .iter()
                .map(|t| (t.name.clone(), settings_key(t)))
                .collect(),
        );
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let gone: Vec<String> = map
            .iter()
            .filter(|(name, (key, _))| config.target(name).is_none_or(|t| settings_key(t) != *key))
            .map(|(k, _)| k.clone())
            .collect();
        for k in gone {
            if let Some((_, e)) = map.remove(&k) {
                retire(e);
            }
        }
    }

    /// Closes every engine at once, waiting at most `within` in total.
    /// The pool of every target's current engine, by target name (`/metrics`).
    pub fn pool_stats(&self) -> Vec<(String, crate::engine::PoolStats)> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<_> = map
            .iter()
            .filter_map(|(t, (_, e))| e.pool_stats().map(|s| (t.clone(), s)))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    pub async fn close_all(&self, within: Duration) {
        let all: Vec<Arc<Engine>> = {
            let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            map.drain().map(|(_, (_, e))| e).collect()
        };
        let closing = futures_util::future::join_all(all.iter().map(|e| e.close(within)));
        let _ = tokio::time::timeout(within, closing).await;
    }
}

/// Closes an engine once no run holds it any more (bounded by [`RETIRE_WAIT_MAX`]).
fn retire(e: Arc<Engine>) {
    tokio::spawn(async move {
        let start = tokio::time::Instant::now();
        while Arc::strong_count(&e) > 1 && start.elapsed() < RETIRE_WAIT_MAX {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        e.close(Duration::from_secs(5)).await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &std::path::Path, extra: &str) -> Config {
        let path = dir.join("c.toml");
        let body = format!(
            "[[target]]\nname = \"t\"\nurl = \"sqlite://{}/t.db?mode=rwc\"\n{extra}",
            dir.display()
        );
        std::fs::write(&path, body).unwrap_or_else(|e| panic!("{e}"));
        crate::config::load(&path).unwrap_or_else(|e| panic!("{e}"))
    }

    #[tokio::test]
    async fn thresholds_do_not_reopen_an_engine_but_connection_settings_do() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let engines = Engines::default();
        let a = config(dir.path(), "");
        let e1 = engines.get(&a.targets[0]).unwrap_or_else(|e| panic!("{e}"));
        let b = config(
            dir.path(),
            "thresholds = { sqlite_freelist = { warning = \"10%\" } }\n",
        );
        engines.retain(&b);
        let e2 = engines.get(&b.targets[0]).unwrap_or_else(|e| panic!("{e}"));
        assert!(Arc::ptr_eq(&e1, &e2), "thresholds must not reopen");
        let c = config(dir.path(), "busy_timeout = \"1s\"\n");
        engines.retain(&c);
        let e3 = engines.get(&c.targets[0]).unwrap_or_else(|e| panic!("{e}"));
        assert!(!Arc::ptr_eq(&e1, &e3), "connection settings reopen");
        // A run queued before that reload still carries the old settings: it gets an
        // engine of its own and leaves the current one in place.
        let stale = engines.get(&a.targets[0]).unwrap_or_else(|e| panic!("{e}"));
        assert!(!Arc::ptr_eq(&stale, &e3));
        let e4 = engines.get(&c.targets[0]).unwrap_or_else(|e| panic!("{e}"));
        assert!(Arc::ptr_eq(&e3, &e4), "the current engine stays");
    }
}
