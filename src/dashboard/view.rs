//! The dashboard's pages as pure functions of what they show: the handlers in `mod.rs`
//! gather the data (live state, config, history), these render it (maud: the templates
//! are Rust, checked at compile time, every interpolation HTML-escaped).
//!
//! No inline script or style anywhere (the CSP forbids both): behaviour is in `app.js`,
//! looks in `app.css`, and everything a page shows is in its HTML, so read-only views
//! work without JavaScript.

use std::time::Duration;

use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, html};

use super::chart;
use crate::api::live::{RunLive, TargetLive};
use crate::health::{CheckResult, Status, Unit};
use crate::history::forecast::Forecast;
use crate::store::{AgentRow, AlertRow, MaintenanceRow, SilenceRow, SlowQueryRow, Trend};

/// Asset URLs; the version in the query makes a new binary's assets bypass caches.
pub const CSS_URL: &str = concat!("/dashboard/app.css?v=", env!("CARGO_PKG_VERSION"));
pub const JS_URL: &str = concat!("/dashboard/app.js?v=", env!("CARGO_PKG_VERSION"));
pub const ICON_URL: &str = concat!("/dashboard/icon.svg?v=", env!("CARGO_PKG_VERSION"));

/// The default refresh interval of a page, in seconds.
pub const REFRESH_SECS: u64 = 30;

/// A status's CSS class, its word and an icon (shape as well as colour and word, for
/// colour-blind users and greyscale screens).
pub fn status_look(s: Option<Status>) -> (&'static str, &'static str, &'static str) {
    match s {
        Some(Status::Ok) => ("s-ok", "OK", "\u{2714}"),
        Some(Status::Warning) => ("s-warning", "WARNING", "\u{25B2}"),
        Some(Status::Critical) => ("s-critical", "CRITICAL", "\u{2716}"),
        Some(Status::Unknown) => ("s-unknown", "UNKNOWN", "?"),
        None => ("s-pending", "PENDING", "\u{2026}"),
    }
}

/// "12 s ago", "4 min ago", "3 h ago", "2 d ago"; "never" for none.
pub fn age(now: DateTime<Utc>, t: Option<DateTime<Utc>>) -> String {
    let Some(t) = t else {
        return "never".into();
    };
    let s = (now - t).num_seconds().max(0);
    match s {
        0..=119 => format!("{s} s ago"),
        120..=7199 => format!("{} min ago", s / 60),
        7200..=172_799 => format!("{} h ago", s / 3600),
        _ => format!("{} d ago", s / 86400),
    }
}

fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn value(unit: Unit, v: Option<f64>) -> String {
    v.map(|v| unit.format(v))
        .unwrap_or_else(|| "\u{2014}".into())
}

/// The page around a view: head with the embedded assets, the top bar with the stale
/// marker, `data-refresh` read by the script.
fn page(title: &str, refresh: u64, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (title) " \u{2014} dbwarden" }
                link rel="icon" href=(ICON_URL) type="image/svg+xml";
                link rel="stylesheet" href=(CSS_URL);
                script src=(JS_URL) defer {}
            }
            body data-refresh=(refresh) {
                header.top {
                    a.brand href="/" { "dbwarden" }
                    span #stale .stale role="status" hidden { "STALE \u{2014} the daemon is not answering" }
                    span #updated .muted {}
                }
                main #main { (body) }
            }
        }
    }
}

/// One target on the overview.
#[derive(Debug, Clone)]
pub struct Tile {
    pub name: String,
    pub engine: &'static str,
    pub tags: Vec<String>,
    pub live: TargetLive,
}

impl Tile {
    fn status(&self) -> Option<Status> {
        self.live.status
    }
}

/// An agent sharing the store whose newest write is older than this is marked quiet
/// (stopped, or cut off from the store).
const PEER_QUIET_SECS: i64 = 600;

/// The agent (this daemon) as the overview's agent line shows it.
#[derive(Debug, Clone)]
pub struct Agent {
    pub name: String,
    pub version: &'static str,
    pub started_at: DateTime<Utc>,
    pub store_reachable: bool,
    pub running: usize,
}

/// How the overview is sorted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sort {
    /// Worst status first, then name (the default: what needs attention on top).
    #[default]
    Status,
    Name,
    /// Oldest last round first (a target whose rounds stopped).
    Age,
}

impl Sort {
    pub fn parse(s: &str) -> Option<Sort> {
        match s {
            "status" => Some(Sort::Status),
            "name" => Some(Sort::Name),
            "age" => Some(Sort::Age),
            _ => None,
        }
    }
    fn as_str(self) -> &'static str {
        match self {
            Sort::Status => "status",
            Sort::Name => "name",
            Sort::Age => "age",
        }
    }
}

/// The overview's filter and order (from the query string).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    pub status: Option<Status>,
    pub tag: Option<String>,
    pub sort: Sort,
}

/// The tiles a filter keeps, in its order. Pure.
pub fn select(tiles: &[Tile], f: &Filter) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..tiles.len())
        .filter(|&i| f.status.is_none_or(|s| tiles[i].status() == Some(s)))
        .filter(|&i| {
            f.tag
                .as_ref()
                .is_none_or(|t| tiles[i].tags.iter().any(|x| x == t))
        })
        .collect();
    let sev = |i: usize| tiles[i].status().map_or(0, |s| s.severity() + 1);
    match f.sort {
        Sort::Status => idx.sort_by(|&a, &b| {
            sev(b)
                .cmp(&sev(a))
                .then_with(|| tiles[a].name.cmp(&tiles[b].name))
        }),
        Sort::Name => idx.sort_by(|&a, &b| tiles[a].name.cmp(&tiles[b].name)),
        Sort::Age => idx.sort_by(|&a, &b| {
            tiles[a]
                .live
                .last_round
                .cmp(&tiles[b].live.last_round)
                .then_with(|| tiles[a].name.cmp(&tiles[b].name))
        }),
    }
    idx
}

/// `GET /`: every target as a tile, with counts by status and the filter form.
pub fn overview(
    now: DateTime<Utc>,
    tiles: &[Tile],
    f: &Filter,
    agents: &[Agent],
    peers: &[AgentRow],
    refresh: u64,
) -> Markup {
    let shown = select(tiles, f);
    // The other agents writing to the same store (this one has its own line above them).
    let peers: Vec<&AgentRow> = peers
        .iter()
        .filter(|p| !agents.iter().any(|a| a.name == p.agent))
        .collect();
    let mut tags: Vec<&str> = tiles
        .iter()
        .flat_map(|t| t.tags.iter().map(String::as_str))
        .collect();
    tags.sort_unstable();
    tags.dedup();
    let count = |s: Option<Status>| tiles.iter().filter(|t| t.status() == s).count();
    let statuses = [
        Some(Status::Critical),
        Some(Status::Unknown),
        Some(Status::Warning),
        Some(Status::Ok),
    ];
    let body = html! {
        h1 { "Targets" }
        section #summary data-live {
            ul.counts {
                @for s in statuses {
                    @let (cls, word, icon) = status_look(s);
                    li class={"badge " (cls)} { span.icon aria-hidden="true" { (icon) } " " (word) " " (count(s)) }
                }
            }
        }
        form #filters .filters method="get" action="/" {
            label { "Status "
                select name="status" {
                    option value="" selected[f.status.is_none()] { "any" }
                    @for s in statuses {
                        @let (_, word, _) = status_look(s);
                        option value=(word) selected[f.status == s] { (word) }
                    }
                }
            }
            label { "Tag "
                select name="tag" {
                    option value="" selected[f.tag.is_none()] { "any" }
                    @for t in &tags {
                        option value=(t) selected[f.tag.as_deref() == Some(*t)] { (t) }
                    }
                }
            }
            label { "Sort "
                select name="sort" {
                    @for s in [Sort::Status, Sort::Name, Sort::Age] {
                        option value=(s.as_str()) selected[f.sort == s] { (s.as_str()) }
                    }
                }
            }
            button type="submit" { "Apply" }
        }
        section #tiles .tiles data-live {
            @if shown.is_empty() {
                p.empty { "No target matches this filter." }
            }
            @for i in &shown {
                @let t = &tiles[*i];
                @let (cls, word, icon) = status_look(t.status());
                @let failing: Vec<&CheckResult> = t.live.failing().collect();
                article class={"tile " (cls)} data-target=(t.name) {
                    h2 { a href={"/targets/" (urlencode(&t.name))} { (t.name) } }
                    p.line {
                        span class={"badge " (cls)} data-status=(word) { span.icon aria-hidden="true" { (icon) } " " (word) }
                        " "
                        span.engine { (t.engine) }
                        @for tag in &t.tags { " " span.tag { (tag) } }
                    }
                    @if !failing.is_empty() {
                        ul.failing {
                            @for c in failing.iter().take(5) {
                                @let (ccls, cword, _) = status_look(Some(c.status));
                                li { span class={"dot " (ccls)} title=(cword) { (cword) } " " (c.check) }
                            }
                            @if failing.len() > 5 { li.muted { "and " (failing.len() - 5) " more" } }
                        }
                    }
                    p.muted { "last round " (age(now, t.live.last_round)) }
                }
            }
        }
        section #agents data-live {
            h2 { "Agents" }
            ul.agents {
                @for a in agents {
                    li {
                        strong { (a.name) } " \u{b7} dbwarden " (a.version)
                        " \u{b7} up since " (time(a.started_at))
                        " \u{b7} history store " @if a.store_reachable { "reachable" } @else { span.warn { "NOT reachable" } }
                        " \u{b7} " (a.running) " run(s) going"
                    }
                }
                @for p in &peers {
                    li.peer data-agent=(p.agent) {
                        strong { (p.agent) } " \u{b7} another agent sharing this history store"
                        " \u{b7} " (p.targets) " target(s)"
                        " \u{b7} last wrote "
                        @if p.last_write.is_none_or(|t| now - t > chrono::Duration::seconds(PEER_QUIET_SECS)) {
                            span.warn { (age(now, p.last_write)) " (quiet)" }
                        } @else {
                            (age(now, p.last_write))
                        }
                    }
                }
            }
        }
    };
    page("Targets", refresh, body)
}

/// Minimal percent-encoding for a path segment (target names are config-controlled).
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The chart time ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Range {
    H1,
    #[default]
    H24,
    D7,
    D90,
    Y1,
}

impl Range {
    pub const ALL: [Range; 5] = [Range::H1, Range::H24, Range::D7, Range::D90, Range::Y1];
    pub fn parse(s: &str) -> Option<Range> {
        Range::ALL.into_iter().find(|r| r.as_str() == s)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Range::H1 => "1h",
            Range::H24 => "24h",
            Range::D7 => "7d",
            Range::D90 => "90d",
            Range::Y1 => "1y",
        }
    }
    pub fn duration(self) -> Duration {
        let h = 3600;
        Duration::from_secs(match self {
            Range::H1 => h,
            Range::H24 => 24 * h,
            Range::D7 => 7 * 24 * h,
            Range::D90 => 90 * 24 * h,
            Range::Y1 => 365 * 24 * h,
        })
    }
}

/// A section read from the history: its rows, or why the store could not give them.
pub type Section<T> = Result<Vec<T>, String>;

/// One chart on a target page.
#[derive(Debug, Clone)]
pub struct Chart {
    pub metric: String,
    pub title: String,
    pub unit: Unit,
    /// One trend per agent that wrote the series (several agents may share a store),
    /// with the agent's name; one line each, and a legend when there are several.
    pub trends: Vec<(String, Trend)>,
    /// The size forecast (the `forecast_full` check's) on the database-size chart.
    pub forecast: Option<Forecast>,
}

/// A check with the time its current status started, when the history knows it.
#[derive(Debug, Clone)]
pub struct CheckLine {
    pub result: CheckResult,
    pub since: Option<DateTime<Utc>>,
}

/// Everything a target page shows.
#[derive(Debug, Clone)]
pub struct TargetPage {
    pub name: String,
    pub engine: &'static str,
    pub tags: Vec<String>,
    pub live: TargetLive,
    pub checks: Vec<CheckLine>,
    pub range: Range,
    pub charts: Section<Chart>,
    pub slow: Section<SlowQueryRow>,
    /// The newest stored plan summary of each slow statement, by queryid.
    pub plans: std::collections::HashMap<String, String>,
    pub runs: Vec<RunLive>,
    pub maintenance: Section<MaintenanceRow>,
    pub silences: Section<SilenceRow>,
    pub alerts: Section<AlertRow>,
    /// A maintenance run going now on this target.
    pub running: Option<RunLive>,
}

fn unavailable(why: &str) -> Markup {
    html! { p.warn { "The history store did not answer (" (why) "); this part returns when it does." } }
}

/// `GET /targets/{name}`.
pub fn target(now: DateTime<Utc>, p: &TargetPage, refresh: u64) -> Markup {
    let (cls, word, icon) = status_look(p.live.status);
    let self_url = format!("/targets/{}", urlencode(&p.name));
    let body = html! {
        p.crumbs { a href="/" { "\u{2190} all targets" } }
        section #head data-live {
            h1 { (p.name) " "
                span class={"badge " (cls)} data-status=(word) { span.icon aria-hidden="true" { (icon) } " " (word) }
            }
            p.muted {
                (p.engine)
                @for tag in &p.tags { " " span.tag { (tag) } }
                " \u{b7} last round " (age(now, p.live.last_round))
                @if let Some(r) = &p.running { " \u{b7} " strong { "maintenance running since " (time(r.started_at)) } }
            }
        }
        section #actions .actions data-target=(p.name) hidden {
            h2 { "Actions" }
            div.buttons {
                button #dry-run type="button" { "Dry run" }
                button #run-now type="button" { "Run maintenance now" }
            }
            form #silence-form .inline {
                label { "Silence for " input name="duration" value="2h" size="5" required; }
                label { " because " input name="reason" placeholder="reason" required; }
                button type="submit" { "Add silence" }
            }
            form #token-form .inline hidden {
                label { "API token " input #token type="password" autocomplete="off" required; }
                button type="submit" { "Use token" }
                span.muted { " kept in this tab only" }
            }
            div #action-out role="status" aria-live="polite" {}
        }
        details #p-checks .panel open {
            summary { "Checks" }
            div.scroll data-live #checks {
                table.checks {
                    thead { tr { th { "Status" } th { "Check" } th { "Value" } th { "Warning" } th { "Critical" } th { "Since" } th { "Message" } } }
                    tbody {
                        @for c in &p.checks {
                            @let r = &c.result;
                            @let (ccls, cword, cicon) = status_look(Some(r.status));
                            tr data-check=(r.check) {
                                td { span class={"badge " (ccls)} data-status=(cword) { span.icon aria-hidden="true" { (cicon) } " " (cword) } }
                                td { (r.check) }
                                td.num data-label="value" { (value(r.unit, r.value)) }
                                td.num data-label="warning" { (value(r.unit, r.warning)) }
                                td.num data-label="critical" { (value(r.unit, r.critical)) }
                                td data-label="since" { @if let Some(s) = c.since { (age(now, Some(s))) } @else { "\u{2014}" } }
                                td.msg { (r.message) }
                            }
                        }
                    }
                }
                @if p.checks.is_empty() { p.empty { "No round has finished yet." } }
            }
        }
        details #p-trends .panel open {
            summary { "Trends" }
            nav.ranges aria-label="time range" {
                @for r in Range::ALL {
                    @if r == p.range { strong aria-current="true" { (r.as_str()) } }
                    @else { a href={(self_url) "?range=" (r.as_str())} { (r.as_str()) } }
                }
            }
            div #charts .charts data-live {
                @match &p.charts {
                    Err(e) => { (unavailable(e)) }
                    Ok(charts) if charts.is_empty() => { p.empty { "No trend data yet." } }
                    Ok(charts) => { @for c in charts { (chart_view(c)) } }
                }
            }
        }
        details #p-slow .panel open {
            summary { "Slow queries" }
            div.scroll #slow data-live {
                @match &p.slow {
                    Err(e) => { (unavailable(e)) }
                    Ok(rows) if rows.is_empty() => { p.empty { "No slow-query samples in this range." } }
                    Ok(rows) => {
                        table {
                            thead { tr { th { "Total" } th { "Mean" } th { "Calls" } th { "Rows" } th { "Cache hit/read" } th { "Query" } } }
                            tbody {
                                @for q in rows {
                                    tr {
                                        td.num { (Unit::Milliseconds.format(q.total_ms)) }
                                        td.num { (Unit::Milliseconds.format(q.mean_ms)) }
                                        td.num { (q.calls) }
                                        td.num { (q.rows) }
                                        td.num { (q.shared_hit.map_or("\u{2014}".into(), |v| v.to_string())) " / " (q.shared_read.map_or("\u{2014}".into(), |v| v.to_string())) }
                                        td.sql {
                                            code { (q.query.as_deref().unwrap_or("(text not stored)")) }
                                            @if let Some(plan) = p.plans.get(&q.queryid) {
                                                div.plan { "plan: " (plan) }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        details #p-runs .panel {
            summary { "Recent job runs" }
            div.scroll #runs data-live {
                @if p.runs.is_empty() { p.empty { "No run since the daemon started." } }
                @else {
                    table {
                        thead { tr { th { "Started" } th { "Job" } th { "Kind" } th { "Outcome" } th { "Took" } th { "Error" } } }
                        tbody {
                            @for r in &p.runs {
                                tr {
                                    td { (time(r.started_at)) }
                                    td { (r.job) }
                                    td { (r.kind) }
                                    td { (r.outcome.as_str()) }
                                    td.num { (r.duration_seconds().map_or("\u{2014}".into(), |s| Unit::Seconds.format(s))) }
                                    td.msg { (r.error.as_deref().unwrap_or("")) }
                                }
                            }
                        }
                    }
                }
            }
        }
        details #p-maint .panel {
            summary { "Maintenance actions" }
            div.scroll #maint data-live {
                @match &p.maintenance {
                    Err(e) => { (unavailable(e)) }
                    Ok(rows) if rows.is_empty() => { p.empty { "No maintenance in the last 30 days." } }
                    Ok(rows) => {
                        table {
                            thead { tr { th { "Started" } th { "Table" } th { "Action" } th { "Outcome" } th { "Reason" } th { "Detail" } } }
                            tbody {
                                @for m in rows {
                                    tr {
                                        td { (time(m.started_at)) }
                                        td { (m.table) }
                                        td { (m.action) }
                                        td { (m.outcome) }
                                        td.msg { (m.reason) }
                                        td.msg { (m.detail.as_deref().unwrap_or("")) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        details #p-alerts .panel {
            summary { "Alert history" }
            div.scroll #alerts data-live {
                @match &p.alerts {
                    Err(e) => { (unavailable(e)) }
                    Ok(rows) if rows.is_empty() => { p.empty { "No notification about this target." } }
                    Ok(rows) => {
                        table {
                            thead { tr { th { "Created" } th { "Event" } th { "Channel" } th { "Delivery" } th { "Attempts" } } }
                            tbody {
                                @for a in rows {
                                    tr {
                                        td { (time(a.created_at)) }
                                        td { (a.event) }
                                        td { (a.channel) }
                                        td { (a.state) @if let Some(t) = a.delivered_at { " " (time(t)) } }
                                        td.num { (a.attempts) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        details #p-silences .panel open {
            summary { "Active silences" }
            div #silences data-live {
                @match &p.silences {
                    Err(e) => { (unavailable(e)) }
                    Ok(rows) if rows.is_empty() => { p.empty { "No active silence." } }
                    Ok(rows) => {
                        ul.silences {
                            @for s in rows {
                                li {
                                    "until " (time(s.ends_at)) " \u{b7} " (s.reason) " \u{b7} by " (s.created_by) " "
                                    button.remove type="button" data-silence=(s.id) hidden { "Remove" }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    page(&p.name, refresh, body)
}

/// How many agents' lines get their own colour (then the colours repeat; the legend and
/// each point's title still name the agent).
const AGENT_COLOURS: usize = 4;

/// One chart: a title with the latest value, the SVG (a line per agent, the forecast's
/// projection), a legend when several agents wrote the series, and the range's ends.
fn chart_view(c: &Chart) -> Markup {
    let points: Vec<&[crate::store::TrendPoint]> =
        c.trends.iter().map(|(_, t)| t.points.as_slice()).collect();
    let g = chart::geometry(&points, c.unit, c.forecast.as_ref());
    let several = c.trends.len() > 1;
    let first = c.trends.first().map(|(_, t)| t);
    let last = if several {
        None
    } else {
        first.and_then(|t| t.points.iter().rev().find_map(|p| p.avg))
    };
    let (from, to) = (
        first.and_then(|t| t.points.first()).map(|p| p.t),
        first.and_then(|t| {
            t.points
                .last()
                .map(|p| p.t + chrono::Duration::seconds(t.step_seconds as i64))
        }),
    );
    let label = c
        .forecast
        .as_ref()
        .and_then(|f| chart::forecast_label(f, c.unit));
    let total: usize = g.paths.iter().map(|p| p.points.len()).sum();
    // Markers for sparse series (a few rounds); a dense one is read from the line alone.
    let marks = total <= 120;
    html! {
        figure.chart data-metric=(c.metric) data-points=(total) data-agents=(c.trends.len()) {
            figcaption {
                (c.title)
                @if !several { span.muted { " \u{b7} now " (value(c.unit, last)) } }
                @if let Some(l) = &label { span.forecast-text { " \u{b7} " (l) } }
            }
            svg viewBox=(format!("0 0 {} {}", chart::WIDTH, chart::HEIGHT)) role="img" aria-label=(format!("{} over the range", c.title)) {
                line.axis x1=(chart::axis_x() + 4.0) x2=(chart::WIDTH) y1=(chart::axis_top()) y2=(chart::axis_top()) {}
                line.axis x1=(chart::axis_x() + 4.0) x2=(chart::WIDTH) y1=(chart::axis_bottom()) y2=(chart::axis_bottom()) {}
                text.label x=(chart::axis_x()) y=(chart::axis_top() + 4.0) text-anchor="end" { (c.unit.format(g.range.1)) }
                text.label x=(chart::axis_x()) y=(chart::axis_bottom()) text-anchor="end" { (c.unit.format(g.range.0)) }
                @if let Some(p) = &g.projection {
                    line.axis x1=(format!("{:.1}", p.now_x)) x2=(format!("{:.1}", p.now_x)) y1=(chart::axis_top()) y2=(chart::axis_bottom()) {}
                    line.capacity x1=(chart::axis_x() + 4.0) x2=(chart::WIDTH) y1=(format!("{:.1}", p.limit_y)) y2=(format!("{:.1}", p.limit_y)) {}
                    @if let Some((x1, y1, x2, y2)) = p.line {
                        line.forecast x1=(format!("{x1:.1}")) y1=(format!("{y1:.1}")) x2=(format!("{x2:.1}")) y2=(format!("{y2:.1}")) {
                            title { (label.as_deref().unwrap_or_default()) }
                        }
                    }
                    @if let Some(l) = c.forecast.as_ref().and_then(chart::forecast_when) {
                        text.fc-label x=(format!("{:.1}", p.now_x - 6.0)) y=(format!("{:.1}", p.limit_y + 14.0)) text-anchor="end" { (l) }
                    }
                }
                @for (i, (path, (agent, _))) in g.paths.iter().zip(&c.trends).enumerate() {
                    @let cls = format!("a{}", i % AGENT_COLOURS);
                    @for l in &path.lines { polyline class={"series " (cls)} points=(l) data-agent=(agent) {} }
                    @if marks {
                        @for (x, y, t, v) in &path.points {
                            circle class={"point " (cls)} cx=(format!("{x:.1}")) cy=(format!("{y:.1}")) r="2.5" {
                                title {
                                    @if several { (agent) ", " }
                                    (chrono::DateTime::from_timestamp_millis(*t).map(time).unwrap_or_default()) ": " (c.unit.format(*v))
                                }
                            }
                        }
                    }
                }
            }
            @if several {
                ul.legend {
                    @for (i, (agent, t)) in c.trends.iter().enumerate() {
                        li data-agent=(agent) {
                            span class={"swatch a" (i % AGENT_COLOURS)} aria-hidden="true" {}
                            " " (agent) span.muted { " \u{b7} now " (value(c.unit, t.points.iter().rev().find_map(|p| p.avg))) }
                        }
                    }
                }
            }
            div.xaxis {
                span { (from.map(time).unwrap_or_default()) }
                span { (to.map(time).unwrap_or_default()) }
            }
        }
    }
}

/// A small page for an unknown target (404) or another failure the user can act on.
pub fn message(title: &str, text: &str) -> Markup {
    page(
        title,
        0,
        html! { h1 { (title) } p { (text) } p { a href="/" { "All targets" } } },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + s, 0)
            .single()
            .unwrap_or_default()
    }

    fn tile(name: &str, status: Option<Status>, tags: &[&str], last: Option<i64>) -> Tile {
        Tile {
            name: name.into(),
            engine: "postgres",
            tags: tags.iter().map(|t| t.to_string()).collect(),
            live: TargetLive {
                status,
                last_round: last.map(at),
                checks: status
                    .map(|s| {
                        vec![CheckResult {
                            check: "connections".into(),
                            status: s,
                            value: Some(97.0),
                            unit: Unit::Percent,
                            warning: Some(80.0),
                            critical: Some(95.0),
                            message: "97% of max_connections".into(),
                            subject: None,
                            scope: Default::default(),
                        }]
                    })
                    .unwrap_or_default(),
                ..Default::default()
            },
        }
    }

    #[test]
    fn worst_first_by_default_then_by_name_and_filters_apply() {
        let t = vec![
            tile("b", Some(Status::Ok), &["prod"], Some(10)),
            tile("a", Some(Status::Warning), &[], Some(5)),
            tile("c", Some(Status::Critical), &["prod"], Some(1)),
            tile("d", Some(Status::Unknown), &[], None),
            tile("e", None, &[], None),
        ];
        assert_eq!(select(&t, &Filter::default()), vec![2, 3, 1, 0, 4]);
        let by_name = Filter {
            sort: Sort::Name,
            ..Default::default()
        };
        assert_eq!(select(&t, &by_name), vec![1, 0, 2, 3, 4]);
        let by_age = Filter {
            sort: Sort::Age,
            ..Default::default()
        };
        assert_eq!(select(&t, &by_age), vec![3, 4, 2, 1, 0]);
        let prod = Filter {
            tag: Some("prod".into()),
            ..Default::default()
        };
        assert_eq!(select(&t, &prod), vec![2, 0]);
        let crit = Filter {
            status: Some(Status::Critical),
            ..Default::default()
        };
        assert_eq!(select(&t, &crit), vec![2]);
    }

    #[test]
    fn a_slow_query_shows_its_stored_plan_summary_and_escapes_it() {
        let row = |id: &str| SlowQueryRow {
            queryid: id.into(),
            query: Some(format!("SELECT * FROM t{id} WHERE id = $1")),
            calls: 10,
            total_ms: 1500.0,
            mean_ms: 150.0,
            rows: 10,
            shared_hit: None,
            shared_read: None,
            samples: 2,
        };
        let page = TargetPage {
            name: "pg".into(),
            engine: "postgres",
            tags: vec![],
            live: TargetLive::default(),
            checks: vec![],
            range: Range::default(),
            charts: Ok(vec![]),
            slow: Ok(vec![row("1"), row("2")]),
            plans: [("1".to_string(), "Seq Scan on <big> cost 99".to_string())]
                .into_iter()
                .collect(),
            runs: vec![],
            maintenance: Ok(vec![]),
            silences: Ok(vec![]),
            alerts: Ok(vec![]),
            running: None,
        };
        let html = target(Utc::now(), &page, 30).into_string();
        assert!(
            html.contains("plan: Seq Scan on &lt;big&gt; cost 99"),
            "the summary is shown, escaped"
        );
        assert_eq!(
            html.matches("class=\"plan\"").count(),
            1,
            "only where a plan is stored"
        );
    }

    fn trend(values: &[f64]) -> Trend {
        Trend {
            target: "pg".into(),
            metric: "database_size".into(),
            label: None,
            unit: "bytes".into(),
            resolution: crate::store::Resolution::Raw,
            step_seconds: 60,
            points: values
                .iter()
                .enumerate()
                .map(|(i, v)| crate::store::TrendPoint {
                    t: at(60 * i as i64),
                    avg: Some(*v),
                    min: Some(*v),
                    max: Some(*v),
                    last: Some(*v),
                })
                .collect(),
        }
    }

    fn chart(trends: Vec<(String, Trend)>, forecast: Option<Forecast>) -> String {
        chart_view(&Chart {
            metric: "database_size".into(),
            title: "database_size".into(),
            unit: Unit::Bytes,
            trends,
            forecast,
        })
        .into_string()
    }

    #[test]
    fn a_chart_draws_a_line_per_agent_with_a_legend_only_when_several() {
        let two = chart(
            vec![
                ("db-a".into(), trend(&[1.0, 2.0])),
                ("db-<b>".into(), trend(&[3.0, 4.0])),
            ],
            None,
        );
        assert!(two.contains(r#"class="series a0""#) && two.contains(r#"class="series a1""#));
        assert_eq!(two.matches("<li data-agent=").count(), 2, "{two}");
        assert!(
            two.contains(r#"data-agent="db-&lt;b&gt;""#),
            "escaped: {two}"
        );
        let one = chart(vec![("db-a".into(), trend(&[1.0, 2.0]))], None);
        assert!(!one.contains("legend") && one.contains("now 2 B"), "{one}");
    }

    #[test]
    fn the_size_chart_shows_its_forecast_only_when_it_reaches_the_capacity() {
        let data = || vec![("db-a".to_string(), trend(&[100.0, 110.0]))];
        let reaches = Forecast::Reaches {
            rate_per_day: 10.0,
            current: 110.0,
            limit: 1000.0,
            days: 89.0,
        };
        let html = chart(data(), Some(reaches));
        assert!(html.contains(r#"<line class="forecast""#), "{html}");
        assert!(html.contains(r#"<line class="capacity""#));
        assert!(
            html.contains("full in 89 days at 10 B/day, capacity 1000 B"),
            "{html}"
        );
        for f in [
            None,
            Some(Forecast::NotGrowing {
                rate_per_day: 0.0,
                current: 110.0,
            }),
            Some(Forecast::NeedsHistory {
                have_days: 1.0,
                needs_days: 2.0,
            }),
        ] {
            let html = chart(data(), f);
            assert!(
                !html.contains("forecast") && !html.contains("capacity"),
                "{html}"
            );
        }
    }

    #[test]
    fn ages_read_like_a_person_says_them() {
        assert_eq!(age(at(100), Some(at(88))), "12 s ago");
        assert_eq!(age(at(1000), Some(at(700))), "5 min ago");
        assert_eq!(age(at(20_000), Some(at(0))), "5 h ago");
        assert_eq!(age(at(900_000), Some(at(0))), "10 d ago");
        assert_eq!(age(at(0), Some(at(5))), "0 s ago");
        assert_eq!(age(at(0), None), "never");
    }

    #[test]
    fn the_overview_shows_status_by_word_and_class_escapes_names_and_has_no_inline_code() {
        let t = vec![
            tile(
                "<script>x</script>",
                Some(Status::Critical),
                &["p&q"],
                Some(0),
            ),
            tile("ok one", Some(Status::Ok), &[], Some(0)),
        ];
        let html = overview(at(30), &t, &Filter::default(), &[], &[], 30).into_string();
        assert!(html.contains("&lt;script&gt;x&lt;/script&gt;"));
        assert!(!html.contains("<script>x"));
        assert!(html.contains("/targets/%3Cscript%3Ex%3C%2Fscript%3E"));
        assert!(html.contains(r#"class="badge s-critical" data-status="CRITICAL""#));
        assert!(html.contains("30 s ago"));
        assert!(html.contains("p&amp;q"));
        // The CSP forbids inline code: the only script is the external one, no style at all.
        assert_eq!(html.matches("<script").count(), 1);
        assert!(html.contains(&format!(
            r#"<script src="{}" defer>"#,
            JS_URL.replace('&', "&amp;")
        )));
        assert!(!html.contains("style=") && !html.contains("<style"));
        let handler = html.split(" on").skip(1).any(|rest| {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase())
                .collect();
            !name.is_empty() && rest[name.len()..].starts_with('=')
        });
        assert!(!handler, "an inline event handler");
    }

    #[test]
    fn the_overview_lists_the_other_agents_sharing_the_store_and_marks_a_quiet_one() {
        let me = Agent {
            name: "db-1".into(),
            version: "0",
            started_at: at(0),
            store_reachable: true,
            running: 0,
        };
        let peer = |agent: &str, targets, last: Option<i64>| AgentRow {
            agent: agent.into(),
            targets,
            last_write: last.map(at),
        };
        let peers = [
            peer("db-1", 3, Some(3590)),
            peer("db-2", 5, Some(3500)),
            peer("db-3", 2, Some(10)),
            peer("db-4", 0, None),
        ];
        let html = overview(at(3600), &[], &Filter::default(), &[me], &peers, 30).into_string();
        // This agent once (its own line), the others once each.
        assert_eq!(html.matches("<strong>db-1</strong>").count(), 1, "{html}");
        assert_eq!(html.matches("<li class=\"peer\"").count(), 3, "{html}");
        assert!(
            html.contains("5 target(s) \u{b7} last wrote 100 s ago"),
            "{html}"
        );
        assert!(html.contains("59 min ago (quiet)"), "{html}");
        assert!(html.contains("never (quiet)"), "{html}");
        assert!(!html.contains("100 s ago (quiet)"), "{html}");
    }

    #[test]
    fn urlencode_keeps_unreserved_and_escapes_the_rest() {
        assert_eq!(urlencode("orders-1_a.b~"), "orders-1_a.b~");
        assert_eq!(urlencode("a b/c?d"), "a%20b%2Fc%3Fd");
        assert_eq!(urlencode("é"), "%C3%A9");
    }

    #[test]
    fn ranges_parse_their_own_names() {
        for r in Range::ALL {
            assert_eq!(Range::parse(r.as_str()), Some(r));
        }
        assert_eq!(Range::parse("2h"), None);
        assert_eq!(Range::Y1.duration().as_secs(), 365 * 86400);
    }
}
