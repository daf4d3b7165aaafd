//! The dashboard in a real browser: headless Chromium driven over WebDriver (chromedriver)
//! against the daemon binary watching a real PostgreSQL database of its own. One browser
//! session walks what a DBA does: the overview's status colour and word, a target's
//! charts (the size chart's forecast to its capacity, a line per agent sharing the store),
//! a dry run with a wrong and then the right token, "Run maintenance now" followed step by
//! step to its outcome, a check turning CRITICAL within one refresh (the page is not
//! reloaded), the stale marker when the daemon stops.
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

fn write_config(d: &Path, port: u16, url: &str, capacity: u64) {
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
             [[target]]\nname = \"shop\"\nurl = \"{url}\"\ntags = [\"prod\"]\ncapacity = \"{capacity}\"\n\
             thresholds = {{ disk_space = {{ enabled = false }}, settings = {{ enabled = false }}, \
             dead_tuples = {{ warning = \"90%\", critical = \"95%\" }}, \
             idle_in_transaction = {{ warning = \"1s\", critical = \"2s\" }} }}\n\n\
             [[job]]\nname = \"health\"\nkind = \"health\"\nschedule = \"@every 1s\"\ntargets = [\"shop\"]\n",
            tok = d.join("api-token").display(),
            hook = d.join("hook-url").display(),
            url = url,
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
}

const MB: f64 = 1024.0 * 1024.0;
const HOUR_MS: i64 = 3_600_000;
/// Another agent sharing the history store, with its own series of the target.
const OTHER_AGENT: &str = "other-agent";

/// The history store as a fleet would have left it, before the daemon starts: ten days of
/// this agent's hourly `database_size` of the target growing 1 MB/day up to `size_now`
/// (the forecast's history), and another agent's `connections` of the target over the
/// last hour (a second line on that chart).
async fn seed_history(d: &Path, size_now: f64) {
    let o = Command::new(BIN)
        .args(["migrate", "-c", "dbwarden.toml"])
        .current_dir(d)
        .output()
        .unwrap_or_else(|e| panic!("{BIN} migrate: {e}"));
    assert!(o.status.success(), "migrate: {o:?}");
    let url = format!("sqlite://{}/data/history.db", d.display());
    let mut c = sqlx::SqliteConnection::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    let now = chrono::Utc::now().timestamp_millis();
    let me = dbwarden::store::agent_name().replace('\'', "''");
    let mut sql = format!(
        "INSERT INTO series (id, agent, target, metric, label, unit, last_ts) VALUES \
         (1001, '{me}', 'shop', 'database_size', '', 'bytes', {now}), \
         (1002, '{OTHER_AGENT}', 'shop', 'connections', '', 'percent', {now});"
    );
    for h in (1..=240).rev() {
        sql.push_str(&format!(
            "INSERT INTO samples (series_id, ts, value) VALUES (1001, {}, {});",
            now - h * HOUR_MS,
            size_now - MB * h as f64 / 24.0
        ));
    }
    for m in (0..60).rev() {
        sql.push_str(&format!(
            "INSERT INTO samples (series_id, ts, value) VALUES (1002, {}, {});",
            now - m * 60_000,
            20 + m % 7
        ));
    }
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&mut c)
        .await
        .unwrap_or_else(|e| panic!("seeding the history: {e}"));
    let _ = c.close().await;
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
    // The database's size now; its capacity 30 MB above: full in about 30 days at the
    // seeded 1 MB/day.
    let size_now: i64 = {
        let mut c = db.connect().await;
        let v = sqlx::query_scalar("SELECT pg_database_size(current_database())")
            .fetch_one(&mut c)
            .await
            .unwrap_or_else(|e| panic!("pg_database_size: {e}"));
        let _ = c.close().await;
        v
    };
    let capacity = size_now as u64 + 30 * 1024 * 1024;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let d = dir.path();
    std::fs::write(d.join("api-token"), format!("{TOKEN}\n")).unwrap_or_else(|e| panic!("{e}"));
    // A webhook receiver, so the CRITICAL below becomes a notification in the alert history.
    let hook =
        common::receiver::Receiver::start(vec![common::receiver::Reply::new(200, "ok")]).await;
    std::fs::write(d.join("hook-url"), hook.url("/hook")).unwrap_or_else(|e| panic!("{e}"));
    write_config(d, free_port(), &db.url, capacity);
    seed_history(d, size_now as f64).await;
    let log = || std::fs::read_to_string(d.join("daemon.log")).unwrap_or_default();
    let http = reqwest::Client::new();
    // A free port can be taken by another process before the daemon binds it: then the
    // daemon starts again on another one.
    let mut started = None;
    for _ in 0..3 {
        let port = free_port();
        write_config(d, port, &db.url, capacity);
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

    // ---- "Run maintenance now": its progress shows step by step until its outcome ----
    // A session holding the table's SHARE UPDATE EXCLUSIVE lock for 3 s (running, not idle
    // in transaction) keeps the VACUUM step waiting (lock_timeout 5 s), so the page shows
    // the step before the outcome.
    let mut holder = db.connect().await;
    for sql in ["BEGIN", "LOCK TABLE bloated IN SHARE UPDATE EXCLUSIVE MODE"] {
        sqlx::query(sql)
            .execute(&mut holder)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let release = tokio::spawn(async move {
        sqlx::raw_sql("SELECT pg_sleep(3); COMMIT")
            .execute(&mut holder)
            .await
            .unwrap_or_else(|e| panic!("holding the lock: {e}"));
        let _ = holder.close().await;
    });
    s.js(
        "window.__runLog = [];
         const o = document.getElementById('action-out');
         new MutationObserver(() => window.__runLog.push(o.textContent))
             .observe(o, { childList: true, subtree: true, characterData: true });",
        vec![],
    )
    .await;
    s.click("#run-now").await;
    let asked = s.accept_dialog().await;
    assert!(
        asked.contains("shop"),
        "the confirmation names the target: {asked}"
    );
    s.wait_js(
        10,
        "the run's progress shows its step",
        "return window.__runLog.some(t => /Maintenance run running.*Step 1 of \\d+: .*bloated/.test(t))
             || window.__runLog.slice(-3).join(' | ');",
    )
    .await;
    s.wait_js(
        30,
        "the run's outcome shows",
        "const o = document.getElementById('action-out');
         return (o.textContent.startsWith('Maintenance run: ') && !!o.querySelector('table.plan'))
             || o.textContent;",
    )
    .await;
    release.await.unwrap_or_else(|e| panic!("{e}"));
    let run = s
        .js(
            "const o = document.getElementById('action-out');
             return [o.classList.contains('error'), o.textContent, window.__runLog];",
            vec![],
        )
        .await;
    eprintln!("maintenance run: {}", run[1]);
    assert_eq!(run[0], json!(false), "the run succeeded: {run}");
    let text = run[1].as_str().unwrap_or_default();
    assert!(
        text.starts_with("Maintenance run: ok") && text.contains("bloated"),
        "{run}"
    );
    let log: Vec<&str> = run[2]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    let step = log.iter().position(|t| t.contains("Step 1 of"));
    let done = log
        .iter()
        .position(|t| t.starts_with("Maintenance run: ok"));
    assert!(
        matches!((step, done), (Some(a), Some(b)) if a < b),
        "progress, then the outcome: {log:?}"
    );

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
    // ---- the size chart with its forecast; a line per agent sharing the store ----
    let size = s
        .js(
            "const f = document.querySelector('figure.chart[data-metric=database_size]');
             return f && [!!f.querySelector('line.forecast'), !!f.querySelector('line.capacity'),
                          f.querySelector('figcaption').textContent];",
            vec![],
        )
        .await;
    assert_eq!(size[0], json!(true), "a dashed forecast line: {size}");
    assert_eq!(size[1], json!(true), "the capacity line: {size}");
    let caption = size[2].as_str().unwrap_or_default();
    let days: f64 = caption
        .split("full in ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no \"full in N days\": {caption}"));
    assert!(
        (20.0..45.0).contains(&days),
        "30 MB to go at 1 MB/day: {caption}"
    );
    let me = dbwarden::store::agent_name();
    s.wait_js(
        30,
        "the connections chart has a line and a legend entry per agent",
        "const f = document.querySelector('figure.chart[data-metric=connections]');
         if (!f) return 'no chart';
         const lines = new Set([...f.querySelectorAll('polyline[data-agent]')].map(l => l.dataset.agent));
         const legend = [...f.querySelectorAll('.legend li')].map(l => l.dataset.agent);
         return (lines.size === 2 && legend.length === 2) || [...lines, '|', ...legend].join(' ');",
    )
    .await;
    let legend = s
        .js(
            "return [...document.querySelectorAll('figure.chart[data-metric=connections] .legend li')]
                 .map(l => l.dataset.agent);",
            vec![],
        )
        .await;
    let mut want = [me.as_str(), OTHER_AGENT];
    want.sort_unstable();
    assert_eq!(legend, json!(want), "both agents, named, by name");
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
