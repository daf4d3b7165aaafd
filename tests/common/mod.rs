//! Helpers shared by the integration tests: `dbwarden explain` runs (`explain`), the
//! PostgreSQL health-check harness (`harness`), maintenance configs (`maint`), the real
//! servers' URLs and throwaway
//! databases (`pg`), a TCP proxy that can refuse or pause a server (`proxy`), an HTTP
//! receiver that records requests (`receiver`), and a small filesystem that can be filled
//! (`tmpfs`).
#![allow(dead_code)]

pub mod explain;
pub mod harness;
pub mod maint;
pub mod pg;
pub mod proxy;
pub mod receiver;
pub mod tmpfs;

/// Skips a test with a printed reason, or fails it under `DBWARDEN_REQUIRE_SERVICES=1`
/// (CI), where every test must really run.
pub fn skip(reason: &str) {
    if std::env::var("DBWARDEN_REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!("cannot run: {reason} (DBWARDEN_REQUIRE_SERVICES=1)");
    }
    eprintln!("skipping: {reason}");
}

/// The URL in environment variable `var` (a real server for the test), or None after
/// [`skip`] when it is unset.
pub fn url_from_env(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            skip(&format!("{var} not set"));
            None
        }
    }
}

/// Polls `cond` every 50 ms until it holds; fails after `secs` seconds with `what`.
/// (A deadline for waiting, never a timing assertion.)
pub async fn wait_until(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !cond() {
        if tokio::time::Instant::now() >= deadline {
            panic!("gave up after {secs}s waiting until {what}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
