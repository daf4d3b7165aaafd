//! Configs for the maintenance tests: one target and one maintenance job `nightly`.

use dbwarden::config::Config;

/// Writes and loads a config whose target `target` (at `url`, with `target_extra` keys)
/// has a maintenance job `nightly` (schedule `0 3 * * *`) with `extra` keys; the config's
/// errors as text when it does not load.
pub fn try_config(
    target: &str,
    url: &str,
    target_extra: &str,
    extra: &str,
) -> (tempfile::TempDir, Result<Config, String>) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let path = dir.path().join("dbwarden.toml");
    let body = format!(
        r#"[daemon]
history = "sqlite://{}/history.db"

[[target]]
name = "{target}"
url = "{url}"
{target_extra}

[[job]]
name = "nightly"
kind = "maintenance"
schedule = "0 3 * * *"
{extra}
"#,
        dir.path().display()
    );
    std::fs::write(&path, body).unwrap_or_else(|e| panic!("write config: {e}"));
    let config = dbwarden::config::load(&path).map_err(|e| e.to_string());
    (dir, config)
}

/// [`try_config`] that must load.
pub fn config(
    target: &str,
    url: &str,
    target_extra: &str,
    extra: &str,
) -> (tempfile::TempDir, Config) {
    let (dir, c) = try_config(target, url, target_extra, extra);
    (dir, c.unwrap_or_else(|e| panic!("config: {e}")))
}
