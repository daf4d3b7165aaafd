//! `dbwarden explain` through the binary: a config with one target, and a run of it.

/// A config whose target `name` is at `url`, with `explain_analyze = analyze`.
pub fn config(dir: &std::path::Path, name: &str, url: &str, analyze: bool) -> std::path::PathBuf {
    let path = dir.join(format!("c{analyze}.toml"));
    std::fs::write(
        &path,
        format!(
            "[daemon]\nhistory = \"sqlite://{}/h.db\"\n\n[[target]]\nname = \"{name}\"\nurl = \"{url}\"\nexplain_analyze = {analyze}\n",
            dir.display()
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    path
}

/// `dbwarden explain --target <target> <args> -c <config>`: (exit code, stdout, stderr).
pub fn run(config: &std::path::Path, target: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_dbwarden"))
        .arg("explain")
        .args(["--target", target])
        .args(args)
        .arg("-c")
        .arg(config)
        .env_remove("DBWARDEN_CONFIG")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).to_string(),
        String::from_utf8_lossy(&o.stderr).to_string(),
    )
}
