//! The dashboard: server-rendered HTML pages served by the daemon's HTTP server at `GET /`
//! (every target) and `GET /targets/{name}` (one target), plus their embedded assets.
//!
//! Pages are rendered from the live state (status "now", never a history query) and, for
//! trends, slow queries, maintenance and silences, from the history store; a store outage
//! costs those sections, never the page. The script (`assets/app.js`) adds the 30 s
//! refresh, the stale marker, the time-range-preserving chart refresh and the token
//! actions, which call the JSON API; without it every read-only view still works. A strict
//! Content-Security-Policy goes with every page: no inline script or style, nothing from
//! another origin.

pub mod chart;
pub mod view;

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::Utc;

use crate::api::ApiState;
use crate::health::{Status, Unit};
use crate::history::forecast::{Forecast, Window, full_in};
use crate::store::{SlowOrder, TrendQuery};
use view::{Agent, Chart, CheckLine, Filter, Range, Sort, TargetPage, Tile};

/// The Content-Security-Policy of every dashboard response: same-origin only, no inline
/// script or style, no framing, no plugins, forms post only here.
pub const CSP: &str = "default-src 'self'; img-src 'self'; object-src 'none'; base-uri 'none'; \
                       frame-ancestors 'none'; form-action 'self'";

pub const CSS: &str = include_str!("assets/app.css");
pub const JS: &str = include_str!("assets/app.js");
pub const ICON: &str = include_str!("assets/icon.svg");

/// Charts a target page draws when its series exist, in this order (the catalogue's
/// names for connections, cache hit ratio, dead rows, size and latency; MySQL and SQLite
/// names where they differ). Other series of the target follow, up to [`MAX_CHARTS`].
const PREFERRED: &[&str] = &[
    "connections",
    "threads_connected",
    "cache_hit",
    "buffer_pool_hit",
    "dead_tuples",
    "database_size",
    "sqlite_file_size",
    "connectivity",
];
const MAX_CHARTS: usize = 6;
/// Rows of slow queries and job runs shown.
const SLOW_ROWS: i64 = 10;
const RUN_ROWS: usize = 20;
const ALERT_ROWS: i64 = 30;

/// The dashboard's routes, merged into the API's router.
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/", get(overview))
        .route("/targets/{name}", get(target))
        .route("/dashboard/app.css", get(css))
        .route("/dashboard/app.js", get(js))
        .route("/dashboard/icon.svg", get(icon))
}

/// The refresh interval a page asks its script for: `?refresh=N` seconds (1 to 3600; a
/// test or a wall display can shorten it), else [`view::REFRESH_SECS`].
pub fn refresh_of(q: &HashMap<String, String>) -> u64 {
    q.get("refresh")
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(view::REFRESH_SECS, |v| v.clamp(1, 3600))
}

/// The overview's filter from the query string; unknown values mean "any".
pub fn filter_of(q: &HashMap<String, String>) -> Filter {
    Filter {
        status: q.get("status").and_then(|s| Status::parse(s)),
        tag: q.get("tag").filter(|t| !t.is_empty()).cloned(),
        sort: q
            .get("sort")
            .and_then(|s| Sort::parse(s))
            .unwrap_or_default(),
    }
}

fn html(code: StatusCode, body: maud::Markup) -> Response {
    let mut r = (code, body.into_string()).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    security_headers(h);
    // Always fresh: the refresh fetches the page itself.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn security_headers(h: &mut axum::http::HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    // The URL carries the version, so a new binary's assets are new URLs.
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=86400"),
    );
    security_headers(h);
    r
}

async fn css() -> Response {
    asset("text/css; charset=utf-8", CSS)
}
async fn js() -> Response {
    asset("text/javascript; charset=utf-8", JS)
}
async fn icon() -> Response {
    asset("image/svg+xml", ICON)
}

/// The tiles of every configured target (plus the daemon's own self-target once it has a
/// round), from the live state.
pub fn tiles(s: &ApiState) -> Vec<Tile> {
    let config = s.config();
    let live = s.live().read();
    let mut out: Vec<Tile> = config
        .targets
        .iter()
        .map(|t| Tile {
            name: t.name.clone(),
            engine: t.engine.as_str(),
            tags: t.tags.clone(),
            live: live.targets.get(&t.name).cloned().unwrap_or_default(),
        })
        .collect();
    let me = crate::alerts::self_target::NAME;
    if let Some(l) = live.targets.get(me)
        && config.target(me).is_none()
    {
        out.push(Tile {
            name: me.to_string(),
            engine: "dbwarden",
            tags: Vec::new(),
            live: l.clone(),
        });
    }
    out
}

async fn overview(State(s): State<ApiState>, Query(q): Query<HashMap<String, String>>) -> Response {
    let tiles = tiles(&s);
    let agents = [Agent {
        name: crate::store::agent_name(),
        version: env!("CARGO_PKG_VERSION"),
        started_at: s.started_at(),
        store_reachable: s.store().health().reachable,
        running: s.live().read().running.len(),
    }];
    let peers = s.store_agents().await.unwrap_or_default();
    html(
        StatusCode::OK,
        view::overview(
            Utc::now(),
            &tiles,
            &filter_of(&q),
            &agents,
            &peers,
            refresh_of(&q),
        ),
    )
}

/// A store error as the page says it: the kind of failure, never connection details.
fn store_says(e: crate::store::StoreError) -> String {
    tracing::warn!(error = %e, "dashboard: a history read failed");
    "history store unavailable".to_string()
}

async fn target(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let refresh = refresh_of(&q);
    let Some(tile) = tiles(&s).into_iter().find(|t| t.name == name) else {
        return html(
            StatusCode::NOT_FOUND,
            view::message(
                "No such target",
                &format!(
                    "No target is named \u{201c}{name}\u{201d} in the daemon's configuration."
                ),
            ),
        );
    };
    let range = q
        .get("range")
        .and_then(|r| Range::parse(r))
        .unwrap_or_default();
    let now = Utc::now();
    let from = now - chrono::Duration::from_std(range.duration()).unwrap_or_default();
    let store = s.store();

    let since: HashMap<String, chrono::DateTime<Utc>> = match store.believed_states().await {
        Ok(rows) => rows
            .into_iter()
            .filter(|r| r.target == name)
            .filter_map(|r| r.check.map(|c| (c, r.since)))
            .collect(),
        Err(e) => {
            store_says(e);
            HashMap::new()
        }
    };
    let mut checks: Vec<CheckLine> = tile
        .live
        .checks
        .iter()
        .map(|c| CheckLine {
            since: since.get(&c.check).copied(),
            result: c.clone(),
        })
        .collect();
    checks.sort_by(|a, b| {
        b.result
            .status
            .severity()
            .cmp(&a.result.status.severity())
            .then_with(|| a.result.check.cmp(&b.result.check))
    });

    let charts = charts(&s, &name, from, now).await;
    let slow = store
        .slow_queries(&name, from, SlowOrder::Total, SLOW_ROWS)
        .await
        .map_err(store_says);
    // Plan summaries of the statements shown; without them the table still shows.
    let plans = match &slow {
        Ok(rows) => {
            let ids: Vec<String> = rows.iter().map(|q| q.queryid.clone()).collect();
            store
                .plans_latest(&name, &ids)
                .await
                .map(|m| m.into_iter().map(|(id, p)| (id, p.summary)).collect())
                .unwrap_or_default()
        }
        Err(_) => Default::default(),
    };
    let maintenance = store
        .maintenance_actions(Some(&name), now - chrono::Duration::days(30))
        .await
        .map(|mut v| {
            v.reverse();
            v.truncate(50);
            v
        })
        .map_err(store_says);
    let silences = store
        .silences_active(now)
        .await
        .map(|v| v.into_iter().filter(|x| x.target == name).collect())
        .map_err(store_says);
    let alerts = store
        .alert_history(&name, ALERT_ROWS)
        .await
        .map_err(store_says);
    let (runs, running) = {
        let live = s.live().read();
        let mut runs: Vec<_> = live
            .jobs
            .values()
            .flat_map(|v| v.iter())
            .filter(|r| r.target.as_deref() == Some(name.as_str()))
            .cloned()
            .collect();
        runs.sort_by_key(|r| std::cmp::Reverse(r.started_at));
        runs.truncate(RUN_ROWS);
        let running = live
            .running
            .values()
            .find(|r| r.kind == "maintenance" && r.target.as_deref() == Some(name.as_str()))
            .cloned();
        (runs, running)
    };
    let page = TargetPage {
        name: tile.name,
        engine: tile.engine,
        tags: tile.tags,
        live: tile.live,
        checks,
        range,
        charts,
        slow,
        plans,
        runs,
        maintenance,
        silences,
        alerts,
        running,
    };
    html(StatusCode::OK, view::target(now, &page, refresh))
}

/// The charts of a target: the preferred series it has, then others, each over the range,
/// one line per agent that wrote it; the size chart with its forecast.
async fn charts(
    s: &ApiState,
    name: &str,
    from: chrono::DateTime<Utc>,
    to: chrono::DateTime<Utc>,
) -> view::Section<Chart> {
    let store = s.store();
    let series = store.series_agents(name).await.map_err(store_says)?;
    let mut metrics: Vec<&str> = PREFERRED
        .iter()
        .copied()
        .filter(|m| series.iter().any(|x| x.0 == *m))
        .collect();
    for (m, _) in &series {
        if metrics.len() >= MAX_CHARTS {
            break;
        }
        if !metrics.contains(&m.as_str()) {
            metrics.push(m);
        }
    }
    metrics.truncate(MAX_CHARTS);
    let config = s.config();
    let target = config.target(name);
    let size_metric = target.and_then(|t| crate::history::checks::size_metric(t.engine));
    let mut out = Vec::new();
    for m in metrics {
        let q = TrendQuery {
            target: name.to_string(),
            metric: m.to_string(),
            label: None,
            from,
            to,
            step: None,
        };
        let agents: Vec<&str> = series
            .iter()
            .filter(|x| x.0 == m)
            .map(|x| x.1.as_str())
            .collect();
        let mut trends = Vec::with_capacity(agents.len());
        for a in agents {
            let t = store.trend_of(&q, Some(a)).await.map_err(store_says)?;
            trends.push((a.to_string(), t));
        }
        let forecast = match (target, size_metric == Some(m)) {
            (Some(t), true) => size_forecast(s, t, to).await,
            _ => None,
        };
        let spec = crate::engine::catalog::spec(m);
        out.push(Chart {
            metric: m.to_string(),
            title: spec.map_or(m.to_string(), |sp| format!("{m} ({})", sp.label)),
            unit: spec.map_or(Unit::Count, |sp| sp.unit),
            trends,
            forecast,
        });
    }
    Ok(out)
}

/// The size forecast the `forecast_full` check makes ([`crate::history::forecast::full_in`]
/// over hourly averages, against the target's capacity, with the window of the rollup job
/// covering the target), for the size chart; `None` without a capacity or a readable
/// history.
async fn size_forecast(
    s: &ApiState,
    target: &crate::config::Target,
    now: chrono::DateTime<Utc>,
) -> Option<Forecast> {
    let cap = crate::history::checks::capacity(target).ok()??;
    let metric = crate::history::checks::size_metric(target.engine)?;
    let config = s.config();
    let w = config
        .jobs
        .iter()
        .filter(|j| j.enabled)
        .filter(|j| config.job_targets(j).iter().any(|x| x.name == target.name))
        .find_map(|j| match &j.params {
            crate::config::JobParams::Rollup(p) => Some(Window {
                min_days: p.forecast_min_history.as_secs_f64() / 86_400.0,
                days: p.forecast_window.as_secs_f64() / 86_400.0,
            }),
            _ => None,
        })
        .unwrap_or_default();
    let points = crate::history::checks::hourly(s.store(), &target.name, metric, None, now, w)
        .await
        .map_err(store_says)
        .ok()?;
    Some(full_in(&points, cap, w))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn refresh_defaults_to_30s_and_is_clamped() {
        assert_eq!(refresh_of(&q(&[])), 30);
        assert_eq!(refresh_of(&q(&[("refresh", "2")])), 2);
        assert_eq!(refresh_of(&q(&[("refresh", "0")])), 1);
        assert_eq!(refresh_of(&q(&[("refresh", "99999")])), 3600);
        assert_eq!(refresh_of(&q(&[("refresh", "x")])), 30);
    }

    #[test]
    fn filter_reads_status_tag_and_sort_and_ignores_nonsense() {
        let f = filter_of(&q(&[
            ("status", "critical"),
            ("tag", "prod"),
            ("sort", "age"),
        ]));
        assert_eq!(f.status, Some(Status::Critical));
        assert_eq!(f.tag.as_deref(), Some("prod"));
        assert_eq!(f.sort, Sort::Age);
        assert_eq!(
            filter_of(&q(&[("status", "bad"), ("tag", ""), ("sort", "x")])),
            Filter::default()
        );
    }

    #[test]
    fn the_csp_forbids_inline_code_and_other_origins() {
        assert!(CSP.starts_with("default-src 'self';"));
        assert!(!CSP.contains("unsafe-inline") && !CSP.contains("unsafe-eval"));
        // No inline script or style in the assets' HTML-facing parts either.
        assert!(!JS.contains("eval("));
    }
}
