//! The systemd contract: the sd_notify protocol (READY, WATCHDOG at half the interval,
//! RELOADING/READY around SIGHUP, STOPPING on SIGTERM) and the journal fallback.

use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_dbwarden");

const CONFIG: &str = "[[target]]\nname = \"self\"\nurl = \"sqlite://./data/history.db\"\n[[job]]\nname = \"health\"\nkind = \"health\"\nschedule = \"@every 1h\"\n";

fn kill(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill -{sig}");
}

/// Receives notify messages until one contains `want` (or the deadline passes).
fn until(sock: &UnixDatagram, want: &str, seen: &mut Vec<String>) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).to_string();
            let hit = msg.lines().any(|l| l == want);
            seen.push(msg);
            if hit {
                return true;
            }
        }
    }
    false
}

#[test]
fn sd_notify_protocol() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.path().join("c.toml"), CONFIG).unwrap_or_else(|e| panic!("{e}"));
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap_or_else(|e| panic!("bind: {e}"));
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut child = Command::new(BIN)
        .args(["run", "-c", "c.toml"])
        .current_dir(dir.path())
        .env("NOTIFY_SOCKET", &sock_path)
        // 400 ms watchdog: dbwarden pings every 200 ms.
        .env("WATCHDOG_USEC", "400000")
        .env_remove("WATCHDOG_PID")
        .env_remove("JOURNAL_STREAM")
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn: {e}"));
    let mut seen = Vec::new();
    assert!(until(&sock, "READY=1", &mut seen), "no READY=1: {seen:?}");
    assert!(
        seen.iter()
            .any(|m| m.contains("STATUS=watching 1 target(s) with 1 job(s)")),
        "{seen:?}"
    );

    // Count pings over two seconds: 10 expected; allow a wide band (a busy CI machine).
    let start = Instant::now();
    let mut pings = 0;
    let mut buf = [0u8; 4096];
    while start.elapsed() < Duration::from_secs(2) {
        if let Ok(n) = sock.recv(&mut buf)
            && String::from_utf8_lossy(&buf[..n])
                .lines()
                .any(|l| l == "WATCHDOG=1")
        {
            pings += 1;
        }
    }
    assert!(
        (5..=14).contains(&pings),
        "{pings} watchdog pings in 2 s, expected about 10"
    );

    kill(&child, "HUP");
    let mut seen = Vec::new();
    assert!(
        until(&sock, "RELOADING=1", &mut seen),
        "no RELOADING=1: {seen:?}"
    );
    let reload = seen.last().cloned().unwrap_or_default();
    assert!(reload.contains("MONOTONIC_USEC="), "{reload}");
    assert!(
        until(&sock, "READY=1", &mut seen),
        "no READY=1 after reload: {seen:?}"
    );

    kill(&child, "TERM");
    let mut seen = Vec::new();
    assert!(
        until(&sock, "STOPPING=1", &mut seen),
        "no STOPPING=1: {seen:?}"
    );
    let status = child.wait().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status.code(), Some(0));
}

#[test]
fn journal_stream_without_a_journal_falls_back_to_stderr() {
    if std::path::Path::new("/run/systemd/journal/socket").exists() {
        eprintln!("skipping: this machine has a journald socket, the fallback cannot be provoked");
        return;
    }
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.path().join("c.toml"), CONFIG).unwrap_or_else(|e| panic!("{e}"));
    let log_path = dir.path().join("stderr.log");
    let log = std::fs::File::create(&log_path).unwrap_or_else(|e| panic!("{e}"));
    let meta = log.metadata().unwrap_or_else(|e| panic!("{e}"));
    // JOURNAL_STREAM names exactly the file stderr is: dbwarden believes it runs under
    // systemd with the journal as stderr, but the journal socket is missing.
    // Routine finished runs are DEBUG lines: ask for them to see one go to stderr.
    let mut child = Command::new(BIN)
        .args(["run", "-c", "c.toml", "--log-level", "debug"])
        .current_dir(dir.path())
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .env_remove("NOTIFY_SOCKET")
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn: {e}"));
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut text = String::new();
    while Instant::now() < deadline {
        text = std::fs::read_to_string(&log_path).unwrap_or_default();
        if text.contains("run finished") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    kill(&child, "TERM");
    let status = child.wait().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status.code(), Some(0), "{text}");
    assert!(text.contains("journald socket is unavailable"), "{text}");
    assert!(text.contains("dbwarden started"), "{text}");
    assert!(text.contains("run finished"), "{text}");
}
