//! The dashboard in a real browser: headless Chromium driven over WebDriver (chromedriver)
//! against the daemon binary watching a real PostgreSQL database of its own. One browser
//! session walks what a DBA does: the overview's status colour and word, a target's
//! charts, a dry run with a wrong and then the right token, a check turning CRITICAL within
//! one refresh (the page is not reloaded), the stale marker when the daemon stops.
//! Screenshots of the overview and a target page at laptop and phone widths are written to
//! target/dashboard-screenshots/; the page's first contentful paint and weight are read
//! from the Performance API and printed.
//!
//! Needs DBWARDEN_TEST_PG_URL and Debian's chromium + chromium-driver; skips with a reason
//! when they are absent (fails under DBWARDEN_REQUIRE_SERVICES=1).

mod common;
#[path = "common/webdriver.rs"]
mod webdriver;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::pg::PgDb;
use serde_json::json;
use sqlx::Connection;

const BIN: &str = env!("CARGO_BIN_EXE_dbwarden");
const TOKEN: &str = "dash-test-token-5b1f";

struct Daemon {
    child: Child,
}

impl Daemon {
    fn start(dir: &Path) -> Daemon {
        let log = std::fs::File::create(dir.join("daemon.log")).unwrap_or_else(|e| panic!("{e}"));
        let child = Command::new(BIN)
            .args(["run", "-c", "dbwarden.toml", "--log-level", "info"])
            .current_dir(dir)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("JOURNAL_STREAM")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {BIN}: {e}"));
        Daemon { child }
    }
    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    l.local_addr().unwrap_or_else(|e| panic!("{e}")).port()
}

fn shots_dir() -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/dashboard-screenshots");
    std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
    d
}

async fn shot(s: &webdriver::Session, name: &str) {
    let png = s.screenshot().await;
    assert!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
    let p = shots_dir().join(name);
    std::fs::write(&p, png).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    eprintln!("screenshot: {}", p.display());
}

fn write_config(d: &Path, port: u16, url: &str) {
    // Checks the shared server fails for reasons of its own (its disk; `settings`:
    // autovacuum is off there) are off; idle_in_transaction gets thresholds a test can
    // cross in seconds; the dead rows above stay under the health thresholds.
    std::fs::write(
        d.join("dbwarden.toml"),
        format!(
            "[daemon]\nhistory = \"sqlite://./data/history.db\"\nlisten = \"127.0.0.1:{port}\"\n\
             api_token_file = \"{tok}\"\nconfirm_rounds = 1\n\n\
             [alerts]\ngroup_wait = \"1s\"\ngroup_interval = \"1s\"\n\n\
             [[channel]]\nname = \"hook\"\nkind = \"webhook\"\nurl_file = \"{hook}\"\n\n\
             [[target]]\nname = \"shop\"\nurl = \"{url}\"\ntags = [\"prod\"]\n\
             thresholds = {{ disk_space = {{ enabled = false }}, settings = {{ enabled = false }}, \
             dead_tuples = {{ warning = \"90%\", critical = \"95%\" }}, \
             idle_in_transaction = {{ warning = \"1s\", critical = \"2s\" }} }}\n\n\
             [[job]]\nname = \"health\"\nkind = \"health\"\nschedule = \"@every 1s\"\ntargets = [\"shop\"]\n",
            tok = d.join("api-token").display(),
            hook = d.join("hook-url").display(),
            url = url
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
}

/// The status word and badge background colour of `css`.
const BADGE: &str = "const b = document.querySelector(arguments[0]);
    return b ? [b.dataset.status, getComputedStyle(b).backgroundColor] : null;";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_a_real_browser() {
    let Some(admin) = common::pg::pg_url() else {
        return;
    };
    if let Some(why) = webdriver::missing() {
        common::skip(&why);
        return;
    }
    let db = PgDb::create(&admin).await;
    {
        // A table whose dead rows the maintenance planner picks (the dry run's plan).
        let mut c = db.connect().await;
        for sql in [
            "CREATE TABLE bloated (id int PRIMARY KEY, pad text)",
            "INSERT INTO bloated SELECT g, repeat('x', 100) FROM generate_series(1, 5000) g",
            "DELETE FROM bloated WHERE id % 5 < 2",
        ] {
            sqlx::query(sql)
                .execute(&mut c)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        let _ = c.close().await;
    }
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let d = dir.path();
    std::fs::write(d.join("api-token"), format!("{TOKEN}\n")).unwrap_or_else(|e| panic!("{e}"));
    // A webhook receiver, so the CRITICAL below becomes a notification in the alert history.
    let hook =
        common::receiver::Receiver::start(vec![common::receiver::Reply::new(200, "ok")]).await;
    std::fs::write(d.join("hook-url"), hook.url("/hook")).unwrap_or_else(|e| panic!("{e}"));
    let log = || std::fs::read_to_string(d.join("daemon.log")).unwrap_or_default();
    let http = reqwest::Client::new();
    // A free port can be taken by another process before the daemon binds it: then the
    // daemon starts again on another one.
    let mut started = None;
    for _ in 0..3 {
        let port = free_port();
        write_config(d, port, &db.url);
        let mut daemon = Daemon::start(d);
        let base = format!("http://127.0.0.1:{port}");
        let mut ok = false;
        for _ in 0..200 {
            if http
                .get(format!("{base}/healthz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                ok = true;
                break;
            }
            if log().contains("cannot listen") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if ok {
            started = Some((daemon, base));
            break;
        }
        daemon.stop();
        let _ = std::fs::remove_file(d.join("daemon.log"));
    }
    let Some((mut daemon, base)) = started else {
        panic!("the daemon's HTTP server did not come up; log:\n{}", log());
    };

    let driver = webdriver::Driver::start().await;
    let s = driver.session().await;

    // ---- overview: status colour and word ----
    let overview = format!("{base}/?refresh=1");
    s.goto(&overview).await;
    s.wait_js(
        30,
        "the shop tile shows a status",
        "const b = document.querySelector('[data-target=shop] .badge');
         return !!b && b.dataset.status !== 'PENDING';",
    )
    .await;
    let badge = s.js(BADGE, vec![json!("[data-target=shop] .badge")]).await;
    assert_eq!(
        badge,
        json!(["OK", "rgb(26, 127, 55)"]),
        "the shop tile: word and green; daemon log:\n{}",
        log()
    );
    let text = s
        .js(
            "return document.querySelector('[data-target=shop]').innerText",
            vec![],
        )
        .await;
    let text = text.as_str().unwrap_or_default();
    assert!(text.contains("OK") && text.contains("postgres") && text.contains("prod"));

    // First contentful paint and page weight of the overview, from a fresh load.
    s.goto(&format!("{base}/")).await;
    let perf = s.page_metrics().await;
    eprintln!("overview performance: {perf}");
    assert!(
        perf["fcp"].is_number(),
        "no first-contentful-paint entry: {perf}"
    );
    assert!(
        perf["resources"].as_array().is_some_and(|r| r
            .iter()
            .all(|u| u.as_str().is_some_and(|u| u.starts_with(&base)))),
        "every asset from the daemon itself: {perf}"
    );
    shot(&s, "overview-laptop.png").await;

    // ---- target page: wrong token refused, dry run shows the plan ----
    let page = format!("{base}/targets/shop?range=1h&refresh=1");
    s.goto(&page).await;
    s.wait_js(
        10,
        "the actions appear",
        "return !document.getElementById('actions').hidden;",
    )
    .await;
    s.click("#dry-run").await;
    s.wait_js(
        5,
        "the token is asked for",
        "return !document.getElementById('token-form').hidden;",
    )
    .await;
    s.type_into("#token", "not-the-token").await;
    s.click("#token-form button").await;
    s.wait_js(
        10,
        "the wrong token is refused",
        "const o = document.getElementById('action-out');
         return o.classList.contains('error') && o.textContent.includes('refused');",
    )
    .await;
    let kept = s
        .js(
            "return sessionStorage.getItem('dbwarden-api-token')",
            vec![],
        )
        .await;
    assert_eq!(kept, json!(null), "a refused token is forgotten");
    assert!(
        !s.js("return location.href", vec![])
            .await
            .as_str()
            .unwrap_or_default()
            .contains("token"),
        "the token is never in a URL"
    );
    s.click("#dry-run").await;
    s.wait_js(
        5,
        "the token is asked again",
        "return !document.getElementById('token-form').hidden;",
    )
    .await;
    s.type_into("#token", TOKEN).await;
    s.click("#token-form button").await;
    s.wait_js(
        30,
        "the dry run shows its plan (see the output printed above)",
        "const o = document.getElementById('action-out');
         return (!o.classList.contains('error') && !!o.querySelector('table.plan')
             && o.textContent.includes('bloated')) || o.textContent;",
    )
    .await;
    let out = s
        .js(
            "return document.getElementById('action-out').innerText",
            vec![],
        )
        .await;
    eprintln!("dry run: {out}");

    // ---- add a silence, see it listed, remove it (the token is not asked again) ----
    s.type_into("#silence-form input[name=reason]", "dashboard test")
        .await;
    s.click("#silence-form button").await;
    s.wait_js(
        15,
        "the new silence is listed",
        "return document.getElementById('silences').textContent.includes('dashboard test')
             && !!document.querySelector('button[data-silence]:not([hidden])');",
    )
    .await;
    s.click("button[data-silence]").await;
    s.wait_js(
        15,
        "the silence is gone",
        "return document.getElementById('silences').textContent.includes('No active silence');",
    )
    .await;

    // ---- a check turns CRITICAL within one refresh, without a reload ----
    let before = s
        .js(
            "window.__notReloaded = true; return Number(document.body.dataset.refreshed || 0);",
            vec![],
        )
        .await
        .as_i64()
        .unwrap_or_default();
    let mut idle = db.connect().await;
    for sql in ["BEGIN", "SELECT 1"] {
        sqlx::query(sql)
            .execute(&mut idle)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    s.wait_js(
        30,
        "idle_in_transaction turns CRITICAL on the page",
        "const b = document.querySelector('tr[data-check=idle_in_transaction] .badge');
         return !!b && b.dataset.status === 'CRITICAL';",
    )
    .await;
    let row = s
        .js(
            BADGE,
            vec![json!("tr[data-check=idle_in_transaction] .badge")],
        )
        .await;
    assert_eq!(row, json!(["CRITICAL", "rgb(207, 34, 46)"]));
    let head = s.js(BADGE, vec![json!("#head .badge")]).await;
    assert_eq!(head[0], json!("CRITICAL"), "the target's status follows");
    let after = s
        .js(
            "return [window.__notReloaded === true, Number(document.body.dataset.refreshed)]",
            vec![],
        )
        .await;
    assert_eq!(
        after[0],
        json!(true),
        "the page was refreshed in place, not reloaded"
    );
    assert!(after[1].as_i64().unwrap_or_default() > before);

    // ---- without JavaScript: the same facts are in the HTML itself, under the CSP ----
    let r = http
        .get(&page)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let csp = r
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(csp.starts_with("default-src 'self'"), "CSP: {csp}");
    let raw = r.text().await.unwrap_or_default();
    assert!(raw.contains(r#"<tr data-check="idle_in_transaction"><td><span class="badge s-critical" data-status="CRITICAL">"#));
    assert!(raw.contains("<polyline") && raw.contains(r#"href="/targets/shop?range=7d""#));
    assert!(
        !raw.contains(TOKEN) && !raw.contains(&db.url),
        "no token or target URL in a page"
    );

    // ---- the notification it caused is in the alert history ----
    s.wait_js(
        30,
        "the alert history lists the webhook's notification",
        "return document.getElementById('alerts').textContent.includes('hook');",
    )
    .await;
    assert!(!hook.requests().is_empty(), "the webhook was called");

    // ---- a chart with data points ----
    s.wait_js(
        40,
        "a chart has at least two data points",
        "return [...document.querySelectorAll('figure.chart polyline')]
             .some(l => l.getAttribute('points').trim().split(/\\s+/).length >= 2);",
    )
    .await;
    shot(&s, "target-laptop.png").await;
    s.js(
        "document.getElementById('p-trends').scrollIntoView(); window.scrollBy(0, -50);",
        vec![],
    )
    .await;
    shot(&s, "target-trends-laptop.png").await;

    // ---- phone width ----
    s.resize(412, 915).await;
    s.goto(&page).await;
    let fits = s
        .js(
            "return document.documentElement.scrollWidth <= window.innerWidth + 1",
            vec![],
        )
        .await;
    assert_eq!(
        fits,
        json!(true),
        "no sideways scrolling of the page on a phone"
    );
    shot(&s, "target-phone.png").await;
    s.goto(&overview).await;
    shot(&s, "overview-phone.png").await;

    // ---- the daemon stops answering: the stale marker shows ----
    let _ = idle.close().await;
    daemon.stop();
    s.wait_js(
        10,
        "the stale marker shows",
        "const m = document.getElementById('stale'); return !!m && !m.hidden
             && m.getBoundingClientRect().height > 0;",
    )
    .await;

    s.close().await;
    drop(driver);
    db.drop_db().await;
}
