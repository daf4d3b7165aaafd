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
        text(&o).contains("OK (2 target(s), 2 job(s))"),
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

/// Runs `config check` on `body` (in a temp dir) and returns the exit code and output.
fn check_body(body: &str, env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let dir = tmp();
    let cfg = dir.path().join("c.toml");
    write(&cfg, body);
    let o = dbwarden(
        &["config", "check", &cfg.to_string_lossy()],
        env,
        dir.path(),
    );
    (o.status.code(), text(&o), cfg.display().to_string())
}

/// The error line of `key`, or a panic showing the whole output.
fn error_line<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find(|l| l.contains("error:") && l.contains(&format!(": {key}: ")))
        .unwrap_or_else(|| panic!("no error for {key}:\n{out}"))
}

const TARGET: &str = "[[target]]\nname = \"t\"\nurl = \"sqlite://t.db\"\n";

/// A config of one SQLite target and one health job `h` with `schedule` and `extra` lines.
fn one_job(schedule: &str, extra: &str) -> String {
    format!("{TARGET}[[job]]\nname = \"h\"\nkind = \"health\"\nschedule = \"{schedule}\"\n{extra}")
}

#[test]
fn a_key_of_another_kind_is_refused_naming_key_and_kind() {
    let (code, out, _) = check_body(&one_job("@hourly", "window = \"2h\"\n"), &[]);
    assert_eq!(code, Some(2), "{out}");
    let line = error_line(&out, "job[0].window");
    for part in [
        "`window` is not a key of a health job",
        "keys of a health job: integrity_check",
        "the common keys: name, kind, schedule",
        "belongs to maintenance jobs",
    ] {
        assert!(line.contains(part), "{part:?} missing in {line}");
    }
}

#[test]
fn several_mistakes_in_several_jobs_are_all_reported() {
    let (code, out, f) = check_body(
        &format!(
            r#"{TARGET}
[[job]]
name = "a"
kind = "health"
schedule = "@every 1m"
window = "2h"
integrity_check = "yes"

[[job]]
name = "b"
kind = "health"
schedule = "@every 1m"
max_duration = "1h"
timeout = "0s"

[[job]]
name = "c"
kind = "health"
schedule = "@every 1m"
colour = "blue"
jitter = "2m"
"#
        ),
        &[],
    );
    assert_eq!(code, Some(2), "{out}");
    for (key, reason) in [
        ("job[0].window", "not a key of a health job"),
        ("job[0].integrity_check", "expected a boolean"),
        ("job[1].max_duration", "belongs to maintenance jobs"),
        ("job[1].timeout", "out of range; allowed: 1s–7d"),
        ("job[2].colour", "not a key of a health job"),
        ("job[2].jitter", "not smaller than the job's interval"),
    ] {
        let line = error_line(&out, key);
        assert!(line.contains(&format!("{f}: {key}: ")), "{line}");
        assert!(
            line.contains(reason),
            "{key}: expected {reason:?} in {line}"
        );
    }
    assert!(out.contains("6 errors"), "{out}");
}

#[test]
fn an_out_of_range_pool_size_is_refused() {
    let (code, out, _) = check_body(
        "[[target]]\nname = \"t\"\nurl = \"sqlite://t.db\"\npool = { max_connections = 4294967295 }\n",
        &[],
    );
    assert_eq!(code, Some(2), "{out}");
    let line = error_line(&out, "target[0].pool.max_connections");
    assert!(
        line.contains("4294967295 is out of range; allowed: 1–100"),
        "{line}"
    );
    // One past u32 fails in parsing already, and still says the range.
    let (code, out, _) = check_body(
        "[[target]]\nname = \"t\"\nurl = \"sqlite://t.db\"\npool = { max_connections = 4294967296 }\n",
        &[],
    );
    assert_eq!(code, Some(2), "{out}");
    assert!(
        error_line(&out, "target[0].pool.max_connections").contains("allowed: 1–100"),
        "{out}"
    );
}

#[test]
fn absurd_durations_get_a_range_error() {
    let (code, out, _) = check_body(
        &format!(
            "[daemon]\ncatch_up = \"100000000y\"\nshutdown_grace = \"100000000y\"\nconfirm_for = \"99999999999999999999y\"\n{}",
            one_job("@daily", "jitter = \"100000000y\"\n")
        ),
        &[],
    );
    assert_eq!(code, Some(2), "{out}");
    for (key, range) in [
        ("daemon.catch_up", "allowed: 0s–24h"),
        ("daemon.shutdown_grace", "allowed: 1s–10m"),
        ("daemon.confirm_for", "allowed: 0s–24h"),
        ("job[0].jitter", "allowed: 0s–1h"),
    ] {
        let line = error_line(&out, key);
        assert!(line.contains(range), "{key}: {line}");
    }
    // Past u64 seconds humantime cannot even represent it: still a range message.
    assert!(
        error_line(&out, "daemon.confirm_for").contains("far too large"),
        "{out}"
    );
    assert_eq!(out.matches("job[0].jitter").count(), 1, "{out}");
}

#[test]
fn a_jitter_not_smaller_than_the_interval_is_refused() {
    for (schedule, jitter, interval) in [
        ("@every 30s", "30s", "(30s, @every 30s)"),
        ("*/5 * * * *", "5m", "(5m, the shortest gap between"),
        ("0,10 * * * *", "20m", "(10m, the shortest gap between"),
    ] {
        let (code, out, _) =
            check_body(&one_job(schedule, &format!("jitter = \"{jitter}\"\n")), &[]);
        assert_eq!(code, Some(2), "{schedule}: {out}");
        let line = error_line(&out, "job[0].jitter");
        assert!(
            line.contains("not smaller than the job's interval") && line.contains(interval),
            "{schedule}: {line}"
        );
    }
    // Just below the interval passes.
    let (code, out, _) = check_body(&one_job("*/5 * * * *", "jitter = \"4m 59s\"\n"), &[]);
    assert_eq!(code, Some(0), "{out}");
}

#[test]
fn an_out_of_range_override_names_its_variable() {
    let dir = tmp();
    let demo = repo().join("config/dbwarden.toml");
    for (var, value, key) in [
        ("DBWARDEN_DAEMON__CATCH_UP", "100000000y", "daemon.catch_up"),
        (
            "DBWARDEN_DAEMON__MAX_CONCURRENT_TARGETS",
            "0",
            "daemon.max_concurrent_targets",
        ),
        (
            "DBWARDEN_DAEMON__HISTORY_BUFFER_BYTES",
            "8GB",
            "daemon.history_buffer_bytes",
        ),
    ] {
        let o = dbwarden(
            &["config", "check", &demo.to_string_lossy()],
            &[(var, value)],
            dir.path(),
        );
        let out = text(&o);
        assert_eq!(o.status.code(), Some(2), "{out}");
        assert!(
            out.contains(&format!("environment variable {var}: {key}: ")),
            "{var}: {out}"
        );
        assert!(out.contains("out of range"), "{var}: {out}");
    }
}

#[test]
fn config_show_prints_the_typed_job_keys() {
    let dir = tmp();
    let cfg = dir.path().join("c.toml");
    write(
        &cfg,
        &format!(
            "{TARGET}[[job]]\nname = \"quick\"\nkind = \"health\"\nschedule = \"@every 1m\"\n[[job]]\nname = \"nightly\"\nkind = \"health\"\nschedule = \"0 3 * * *\"\nintegrity_check = true\n"
        ),
    );
    let o = dbwarden(&["config", "show", &cfg.to_string_lossy()], &[], dir.path());
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    // Each job shows its kind's keys with their effective values, defaults included.
    let jobs: Vec<&str> = out.split("[[job]]").skip(1).collect();
    assert_eq!(jobs.len(), 2, "{out}");
    assert!(jobs[0].contains("integrity_check = false"), "{out}");
    assert!(jobs[1].contains("integrity_check = true"), "{out}");
    assert!(!out.contains("window"), "{out}");
    // What `show` prints is itself a valid config that means the same.
    let shown = dir.path().join("shown.toml");
    let body: String = out
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    write(&shown, &body);
    let again = dbwarden(
        &["config", "show", &shown.to_string_lossy()],
        &[],
        dir.path(),
    );
    assert!(again.status.success(), "{}", text(&again));
    let strip = |s: &str| -> String {
        s.lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(strip(&out), strip(&text(&again)));
}

/// Every key of the range table is enforced: a config with each ranged value just past
/// its maximum (and then just below its minimum) has one range error per key.
#[test]
fn every_ranged_key_is_checked_at_both_ends() {
    use dbwarden::config::ranges::{Limit, RANGES};
    let toml = |l: Limit| match l {
        Limit::Count(n) => n.to_string(),
        Limit::Bytes(n) => format!("\"{n}B\""),
        Limit::Duration(d) => format!("\"{}ms\"", d.as_millis()),
    };
    let past = |l: Limit, up: bool| match l {
        Limit::Count(n) if up => Some(Limit::Count(n + 1)),
        Limit::Bytes(n) if up => Some(Limit::Bytes(n + 1)),
        Limit::Duration(d) if up => Some(Limit::Duration(d + std::time::Duration::from_millis(1))),
        Limit::Count(n) | Limit::Bytes(n) => n.checked_sub(1).map(Limit::Count),
        Limit::Duration(d) => d
            .checked_sub(std::time::Duration::from_millis(1))
            .map(Limit::Duration),
    };
    for up in [true, false] {
        let (mut daemon, mut target, mut pool, mut job) = (vec![], vec![], vec![], vec![]);
        let mut alerts = vec![];
        let mut every = "@every 2h".to_string();
        let mut expected = vec![];
        for r in RANGES {
            let Some(v) = past(if up { r.max } else { r.min }, up) else {
                continue; // a minimum of 0 has nothing below it
            };
            let line = |k: &str| format!("{k} = {}", toml(v));
            match r.key.split('.').collect::<Vec<_>>()[..] {
                // The range of `@every`: the job's schedule is written below.
                ["job", "schedule"] => {
                    every = format!("@every {}", toml(v).trim_matches('"'));
                }
                ["daemon", k] => daemon.push(line(k)),
                ["alerts", k] => alerts.push(line(k)),
                ["target", "pool", k] => pool.push(line(k)),
                ["target", k] => target.push(line(k)),
                ["job", k] => job.push(line(k)),
                _ => panic!("no place for {} in this test", r.key),
            }
            expected.push(
                r.key
                    .replacen("target.", "target[0].", 1)
                    .replacen("job.", "job[0].", 1),
            );
        }
        let body = format!(
            "[daemon]\n{}\n[alerts]\n{}\n[[target]]\nname = \"t\"\nurl = \"sqlite://t.db\"\n{}\npool = {{ {} }}\n[[job]]\nname = \"h\"\nkind = \"health\"\nschedule = \"{every}\"\n{}\n",
            daemon.join("\n"),
            alerts.join("\n"),
            target.join("\n"),
            pool.join(", "),
            job.join("\n")
        );
        let (code, out, _) = check_body(&body, &[]);
        assert_eq!(code, Some(2), "{out}");
        for key in &expected {
            let line = error_line(&out, key);
            // Below 1s, `@every` is refused by the schedule parser in its own words.
            let own = key == "job[0].schedule" && line.contains("at least 1s");
            assert!(
                line.contains("allowed: ") || own,
                "{key} (up: {up}):\n{out}"
            );
        }
        assert!(
            out.contains(&format!("{} error", expected.len())),
            "expected exactly {} errors:\n{out}",
            expected.len()
        );
    }
}

#[test]
fn expected_replicas_takes_a_count_names_or_the_keyword_on_postgres_only() {
    let pg = |i: usize, v: &str| {
        format!(
            "[[target]]\nname = \"p{i}\"\nurl = \"postgres://mon@db/app\"\nexpected_replicas = {v}\n"
        )
    };
    let good = [
        pg(0, "2"),
        pg(1, "[\"standby1\"]"),
        pg(2, "\"synchronous_standby_names\""),
    ]
    .concat();
    let (code, out, _) = check_body(&good, &[]);
    assert_eq!(code, Some(0), "{out}");

    let bad = [
        pg(0, "0"),
        pg(1, "[]"),
        pg(2, "\"synchronous_names\""),
        "[[target]]\nname = \"s\"\nurl = \"sqlite://t.db\"\nexpected_replicas = 1\n".to_string(),
    ]
    .concat();
    let (code, out, _) = check_body(&bad, &[]);
    assert_eq!(code, Some(2), "{out}");
    assert!(
        error_line(&out, "target[0].expected_replicas").contains("1–100"),
        "{out}"
    );
    assert!(
        error_line(&out, "target[1].expected_replicas").contains("application_name"),
        "{out}"
    );
    assert!(
        error_line(&out, "target[2].expected_replicas").contains("\"synchronous_standby_names\""),
        "{out}"
    );
    assert!(
        error_line(&out, "target[3].expected_replicas").contains("only PostgreSQL"),
        "{out}"
    );
}
