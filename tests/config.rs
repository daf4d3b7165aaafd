//! Config validation, environment overrides and secret hygiene, through the real binary
//! (edition 2024 makes `set_var` unsafe, so environments are given to child processes).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_dbwarden");

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn dbwarden(args: &[&str], env: &[(&str, &str)], dir: &Path) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .current_dir(dir)
        .env_remove("DBWARDEN_CONFIG");
    for (k, _) in std::env::vars() {
        if k.starts_with("DBWARDEN_") && k.contains("__") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {BIN}: {e}"))
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"))
}

fn write(path: &Path, body: &str) {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
    }
    std::fs::write(path, body).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

#[test]
fn demo_config_passes_on_a_fresh_clone() {
    let dir = tmp();
    let demo = repo().join("config/dbwarden.toml");
    let o = dbwarden(
        &["config", "check", &demo.to_string_lossy()],
        &[],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("OK (2 target(s), 1 job(s))"),
        "{}",
        text(&o)
    );
    // `config check` must not create the history or a target.
    assert!(!dir.path().join("data").exists());
}

/// Copies an example, pointing its /etc/dbwarden/ paths at a temp dir and creating every
/// secret file it names there; `${CREDENTIALS_DIRECTORY}` files go to a creds dir.
fn prepare_example(name: &str, dir: &Path) -> PathBuf {
    let src = std::fs::read_to_string(repo().join("config/examples").join(name))
        .unwrap_or_else(|e| panic!("read example {name}: {e}"));
    let etc = dir.join("etc");
    let creds = dir.join("creds");
    let body = src.replace("/etc/dbwarden/", &format!("{}/", etc.display()));
    for line in body.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        if let Some((key, value)) = line.split_once('=')
            && key.trim().ends_with("_file")
        {
            let value = value.trim().trim_matches('"');
            let path = match value.strip_prefix("${CREDENTIALS_DIRECTORY}/") {
                Some(rest) => creds.join(rest),
                None => PathBuf::from(value),
            };
            write(&path, "s3cret-from-file\n");
        }
    }
    let out = dir.join(name);
    write(&out, &body);
    out
}

#[test]
fn every_example_passes_with_its_secret_files() {
    let entries = std::fs::read_dir(repo().join("config/examples"))
        .unwrap_or_else(|e| panic!("config/examples: {e}"));
    let mut checked = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if !name.ends_with(".toml") {
            continue;
        }
        let dir = tmp();
        let path = prepare_example(&name, dir.path());
        let creds = dir.path().join("creds");
        let o = dbwarden(
            &["config", "check", &path.to_string_lossy()],
            &[
                ("CREDENTIALS_DIRECTORY", &creds.to_string_lossy()),
                ("BILLING_PG_PASSWORD", "from-env"),
            ],
            dir.path(),
        );
        assert!(o.status.success(), "{name}: {}", text(&o));
        checked += 1;
    }
    assert!(
        checked >= 4,
        "expected the four documented examples, found {checked}"
    );
}

#[test]
fn five_mistakes_are_all_reported_with_key_paths() {
    let dir = tmp();
    let pw = dir.path().join("pw");
    write(&pw, "x\n");
    let cfg = dir.path().join("bad.toml");
    write(
        &cfg,
        &format!(
            r#"
[daemon]
histroy = "sqlite://./h.db"

[[target]]
name = "a"
url = "redis://localhost"

[[target]]
name = "b"
url = "postgres://u:hunter2secret@db/x"
password_file = "{pw}"

[[target]]
name = "c"
url = "sqlite://./c.db"
password_file = "/nonexistent/dbwarden/secret"

[[target]]
name = "c"
url = "sqlite://./c2.db"

[[job]]
name = "health"
kind = "health"
schedule = "0 25 * * *"
targets = ["a", "nosuch"]
"#,
            pw = pw.display()
        ),
    );
    let o = dbwarden(
        &["config", "check", &cfg.to_string_lossy()],
        &[],
        dir.path(),
    );
    let out = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}");
    let f = cfg.display().to_string();
    for (key, reason) in [
        ("daemon.histroy", "unknown key"),
        ("target[0].url", "unsupported scheme \"redis\""),
        ("target[1].password_file", "password given twice"),
        ("target[2].password_file", "no such file"),
        ("target[3].name", "duplicate target name \"c\""),
        ("job[0].schedule", "not a valid cron expression"),
        ("job[0].targets[1]", "unknown target \"nosuch\""),
    ] {
        let line = out
            .lines()
            .find(|l| l.contains(&format!("{f}: {key}: ")))
            .unwrap_or_else(|| panic!("no error for {key}:\n{out}"));
        assert!(
            line.contains(reason),
            "{key}: expected {reason:?} in {line:?}"
        );
    }
    assert!(out.contains("7 errors"), "{out}");
    assert!(
        !out.contains("hunter2secret"),
        "a password leaked into an error: {out}"
    );
}

#[test]
fn several_unknown_keys_in_one_table_are_all_reported() {
    let dir = tmp();
    let cfg = dir.path().join("c.toml");
    write(
        &cfg,
        "[daemon]\nlisten = 5\nfoo = 1\nbar = 2\n[[target]]\nname = \"t\"\nurl = \"sqlite://x.db\"\npool = { max_connection = 3 }\n",
    );
    let o = dbwarden(
        &["config", "check", &cfg.to_string_lossy()],
        &[],
        dir.path(),
    );
    let out = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}");
    for key in [
        "daemon.foo",
        "daemon.bar",
        "daemon.listen",
        "target[0].pool.max_connection",
    ] {
        assert!(out.contains(&format!(": {key}: ")), "missing {key}:\n{out}");
    }
}

#[test]
fn environment_overrides_the_file_and_non_config_variables_are_ignored() {
    let dir = tmp();
    let demo = repo().join("config/dbwarden.toml");
    let o = dbwarden(
        &["config", "show"],
        &[
            ("DBWARDEN_CONFIG", &demo.to_string_lossy()),
            ("DBWARDEN_DAEMON__LISTEN", "0.0.0.0:19645"),
            ("DBWARDEN_THRESHOLDS__SQLITE_WAL_SIZE__WARNING", "64MB"),
            ("DBWARDEN_TEST_PG_URL", "postgres://nobody@nowhere/x"),
            ("DBWARDEN_LOG", "debug"),
        ],
        dir.path(),
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("listen = \"0.0.0.0:19645\""), "{out}");
    assert!(out.contains("warning = \"64MB\""), "{out}");
}

#[test]
fn a_bad_environment_override_names_the_variable() {
    let dir = tmp();
    let demo = repo().join("config/dbwarden.toml");
    let o = dbwarden(
        &["-c", &demo.to_string_lossy(), "config", "check"],
        &[("DBWARDEN_DAEMON__LISTN", "0.0.0.0:1")],
        dir.path(),
    );
    let out = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}");
    assert!(
        out.contains("environment variable DBWARDEN_DAEMON__LISTN: daemon.listn: unknown key"),
        "{out}"
    );
}

#[test]
fn config_flag_works_before_and_after_the_subcommand() {
    let dir = tmp();
    let demo = repo().join("config/dbwarden.toml");
    let d = demo.to_string_lossy();
    for args in [
        vec!["-c", &d, "config", "check"],
        vec!["config", "check", "-c", &d],
        vec!["config", "check", "--config", &d],
        vec!["config", "check", &d],
    ] {
        let o = dbwarden(&args, &[], dir.path());
        assert!(o.status.success(), "{args:?}: {}", text(&o));
    }
    let o = dbwarden(
        &["config", "check", "-c", "/nonexistent/x.toml"],
        &[],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("no such file"), "{}", text(&o));
}

#[test]
fn secrets_never_appear_in_show_or_errors() {
    let dir = tmp();
    let pw = dir.path().join("pw");
    write(&pw, "file-secret-123\n");
    let hook = dir.path().join("hook");
    write(
        &hook,
        "https://hooks.slack.com/services/T000/B000/file-hook-secret\n",
    );
    let cfg = dir.path().join("s.toml");
    write(
        &cfg,
        &format!(
            r#"
[daemon]
history = "postgres://store:store-inline-secret@127.0.0.1/h"
[[target]]
name = "inline"
url = "postgres://app:url-inline-secret@127.0.0.1:5432/app?password=query-secret"
[[target]]
name = "filed"
url = "postgres://app@127.0.0.1/app"
password_file = "{pw}"
[[target]]
name = "env"
url = "mysql://app@127.0.0.1/app"
password_env = "APP_PW"
[[job]]
name = "health"
kind = "health"
schedule = "@every 30s"
[[channel]]
name = "slack"
kind = "slack"
url = "https://hooks.slack.com/services/T000/B000/inline-hook-secret"
[[channel]]
name = "slack2"
kind = "slack"
url_file = "{hook}"
[[channel]]
name = "mail"
kind = "email"
smtp_url = "smtp://mailer:smtp-inline-secret@mail.example.com:587"
from = "a@example.com"
to = ["b@example.com"]
"#,
            pw = pw.display(),
            hook = hook.display()
        ),
    );
    let env = [("APP_PW", "env-secret-456")];
    let show = dbwarden(
        &["config", "show", &cfg.to_string_lossy()],
        &env,
        dir.path(),
    );
    let check = dbwarden(
        &["config", "check", &cfg.to_string_lossy()],
        &env,
        dir.path(),
    );
    // Make it invalid too, so the error path prints the same values.
    let bad = dir.path().join("bad.toml");
    let body = std::fs::read_to_string(&cfg).unwrap_or_default() + "\n[oops]\n";
    write(&bad, &body);
    let err = dbwarden(
        &["config", "check", &bad.to_string_lossy()],
        &env,
        dir.path(),
    );
    assert!(show.status.success(), "{}", text(&show));
    assert_eq!(err.status.code(), Some(2));
    for out in [text(&show), text(&check), text(&err)] {
        for secret in [
            "store-inline-secret",
            "url-inline-secret",
            "query-secret",
            "file-secret-123",
            "env-secret-456",
            "inline-hook-secret",
            "file-hook-secret",
            "smtp-inline-secret",
        ] {
            assert!(!out.contains(secret), "{secret} leaked:\n{out}");
        }
    }
    assert!(
        text(&show).contains("postgres://app:***@127.0.0.1:5432/app"),
        "{}",
        text(&show)
    );
    assert!(
        text(&check).contains("password is inline"),
        "{}",
        text(&check)
    );
}

#[test]
fn credentials_directory_outside_systemd_is_a_warning_not_an_error() {
    let dir = tmp();
    let cfg = dir.path().join("c.toml");
    write(
        &cfg,
        "[[target]]\nname = \"t\"\nurl = \"postgres://u@db/x\"\npassword_file = \"${CREDENTIALS_DIRECTORY}/t.pw\"\n[[job]]\nname = \"h\"\nkind = \"health\"\nschedule = \"@hourly\"\n",
    );
    let mut cmd = Command::new(BIN);
    cmd.args(["config", "check", &cfg.to_string_lossy()])
        .env_remove("CREDENTIALS_DIRECTORY");
    let o = cmd.output().unwrap_or_else(|e| panic!("{e}"));
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("not checkable here"), "{}", text(&o));
}
