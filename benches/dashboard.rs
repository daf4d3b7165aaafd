//! Dashboard numbers (issue 15). Run with `cargo bench --bench dashboard`.
//!
//! 1. Server render of the overview for 200 targets (each with 30 checks, every tenth
//!    target with failing ones, tags on all): the view function, plus cloning the live
//!    state into tiles as the handler does. Budget ≤ 20 ms.
//! 2. Page weight: that overview's HTML plus every asset it loads (stylesheet, script,
//!    icon), uncompressed. Budget ≤ 200 kB. Measured from the bytes, and again by the
//!    browser (Performance API decodedBodySize) when Chromium is installed.
//! 3. First contentful paint of that overview in headless Chromium over loopback, read
//!    from the Performance API over WebDriver (the page and its assets served by axum with
//!    the dashboard's own bytes and headers). Budget ≤ 500 ms. Skipped, with a note, when
//!    /usr/bin/chromium or /usr/bin/chromedriver is absent.

#[path = "../tests/common/webdriver.rs"]
#[allow(dead_code)]
mod webdriver;

use std::time::{Duration, Instant};

use axum::Router;
use axum::http::header;
use axum::routing::get;
use chrono::Utc;
use dbwarden::api::live::TargetLive;
use dbwarden::dashboard::view::{self, Agent, Filter, Tile};
use dbwarden::dashboard::{CSP, CSS, ICON, JS};
use dbwarden::health::{CheckResult, Scope, Status, Unit};

fn live_state(n: usize) -> Vec<(String, Vec<String>, TargetLive)> {
    (0..n)
        .map(|i| {
            let checks: Vec<CheckResult> = (0..30)
                .map(|c| {
                    let status = match (i % 10, c) {
                        (0, 0) => Status::Critical,
                        (0, 1) | (5, 2) => Status::Warning,
                        (7, 3) => Status::Unknown,
                        _ => Status::Ok,
                    };
                    CheckResult {
                        check: format!("check_{c:02}"),
                        status,
                        value: Some(c as f64 * 1.5),
                        unit: Unit::Percent,
                        warning: Some(80.0),
                        critical: Some(95.0),
                        message: format!("check {c} of target {i}: a message of usual length"),
                        subject: None,
                        scope: Scope::Database,
                    }
                })
                .collect();
            let live = TargetLive {
                status: Some(Status::worst(checks.iter().map(|c| c.status))),
                last_round: Some(Utc::now() - chrono::Duration::seconds((i % 60) as i64)),
                checks,
                rounds: 10,
                ..Default::default()
            };
            (
                format!("db-{i:03}.example"),
                vec![
                    if i % 2 == 0 { "prod" } else { "staging" }.to_string(),
                    format!("team{}", i % 7),
                ],
                live,
            )
        })
        .collect()
}

fn render(state: &[(String, Vec<String>, TargetLive)], agents: &[Agent]) -> String {
    let tiles: Vec<Tile> = state
        .iter()
        .map(|(name, tags, live)| Tile {
            name: name.clone(),
            engine: "postgres",
            tags: tags.clone(),
            live: live.clone(),
        })
        .collect();
    view::overview(Utc::now(), &tiles, &Filter::default(), agents, &[], 30).into_string()
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    let state = live_state(200);
    let agents = [Agent {
        name: "bench".into(),
        version: env!("CARGO_PKG_VERSION"),
        started_at: Utc::now(),
        store_reachable: true,
        running: 0,
    }];
    for _ in 0..20 {
        render(&state, &agents);
    }
    let mut times: Vec<Duration> = (0..500)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(render(&state, &agents));
            t.elapsed()
        })
        .collect();
    times.sort();
    println!(
        "overview render, 200 targets x 30 checks: median {:.2} ms, p99 {:.2} ms, max {:.2} ms (budget 20 ms)",
        quantile(&times, 0.5).as_secs_f64() * 1e3,
        quantile(&times, 0.99).as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3,
    );
    let html = render(&state, &agents);
    let weight = html.len() + CSS.len() + JS.len() + ICON.len();
    println!(
        "page weight, uncompressed: HTML {} B + CSS {} B + JS {} B + icon {} B = {:.1} kB (budget 200 kB)",
        html.len(),
        CSS.len(),
        JS.len(),
        ICON.len(),
        weight as f64 / 1000.0
    );

    if let Some(why) = webdriver::missing() {
        println!("first contentful paint: not measured: {why}");
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    rt.block_on(async move {
        let page = html.clone();
        let h = |ct: &'static str, body: &'static str| {
            move || async move {
                (
                    [(header::CONTENT_TYPE, ct), (header::CONTENT_SECURITY_POLICY, CSP)],
                    body,
                )
            }
        };
        let app = Router::new()
            .route(
                "/",
                get(move || {
                    let p = page.clone();
                    async move {
                        (
                            [
                                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                                (header::CONTENT_SECURITY_POLICY, CSP),
                                (header::CACHE_CONTROL, "no-store"),
                            ],
                            p,
                        )
                    }
                }),
            )
            .route("/dashboard/app.css", get(h("text/css", CSS)))
            .route("/dashboard/app.js", get(h("text/javascript", JS)))
            .route("/dashboard/icon.svg", get(h("image/svg+xml", ICON)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("addr: {e}"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let driver = webdriver::Driver::start().await;
        let s = driver.session().await;
        let mut fcps = Vec::new();
        let mut browser_bytes = 0.0;
        for i in 0..11 {
            // The first load is a first visit (every asset fetched); later ones reuse the
            // cached assets, as a dashboard kept open does.
            s.goto("about:blank").await;
            s.goto(&format!("http://{addr}/?n={i}")).await;
            let v = s.page_metrics().await;
            if i > 0 {
                // The first load warms the browser process itself.
                fcps.push(v["fcp"].as_f64().unwrap_or(f64::NAN));
            }
            if i == 0 {
                browser_bytes = v["bytes"].as_f64().unwrap_or(f64::NAN);
            }
        }
        fcps.sort_by(f64::total_cmp);
        println!(
            "first contentful paint, overview of 200 targets, headless Chromium on loopback: median {:.0} ms, max {:.0} ms over {} loads (budget 500 ms)",
            fcps[fcps.len() / 2],
            fcps[fcps.len() - 1],
            fcps.len()
        );
        println!(
            "page weight as the browser decoded it on a first visit: {:.1} kB",
            browser_bytes / 1000.0
        );
        s.close().await;
    });
}
