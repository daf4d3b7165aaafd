//! The read endpoints of `/api/v1`: targets, health, statistics, trends, slow queries,
//! maintenance history, jobs and runs. Live state answers "now"; the history store answers
//! only what needs history (trends, slow queries, maintenance, past runs, silences), and
//! only those answer 503 while it is down.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::ApiState;
use super::error::{ApiError, ApiResult};
use super::live::{RunLive, TargetLive};
use super::params::Params;
use crate::engine::TableStat;
use crate::health::{CheckResult, Status};
use crate::store::{MaintenanceRow, SeriesInfo, SlowOrder, SlowQueryRow, Trend, TrendQuery};

/// Largest page of table statistics.
pub const MAX_PAGE: i64 = 1000;

/// A target the API knows: configured, or the built-in `dbwarden` self-target.
pub(super) fn known(s: &ApiState, name: &str) -> ApiResult<()> {
    if name == crate::alerts::self_target::NAME || s.config().target(name).is_some() {
        Ok(())
    } else {
        Err(ApiError::unknown_target(name))
    }
}

#[derive(Serialize)]
pub struct FailingCheck {
    pub check: String,
    pub status: Status,
    pub message: String,
}

#[derive(Serialize)]
pub struct TargetSummary {
    pub name: String,
    pub engine: &'static str,
    pub tags: Vec<String>,
    /// Worst of the latest round's checks; null before the first round.
    pub status: Option<Status>,
    /// After hysteresis (what alerts follow); null until a change was believed since start.
    pub believed_status: Option<Status>,
    pub last_round: Option<DateTime<Utc>>,
    pub failing: Vec<FailingCheck>,
    /// The id of a maintenance run going on it now.
    pub maintenance_running: Option<String>,
}

#[derive(Serialize)]
pub struct TargetList {
    pub targets: Vec<TargetSummary>,
}

fn summary(
    name: &str,
    engine: &'static str,
    tags: &[String],
    t: Option<&TargetLive>,
    running: Option<String>,
) -> TargetSummary {
    TargetSummary {
        name: name.to_string(),
        engine,
        tags: tags.to_vec(),
        status: t.and_then(|t| t.status),
        believed_status: t.and_then(|t| t.believed),
        last_round: t.and_then(|t| t.last_round),
        failing: t
            .map(|t| {
                t.failing()
                    .map(|c| FailingCheck {
                        check: c.check.clone(),
                        status: c.status,
                        message: c.message.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        maintenance_running: running,
    }
}

/// `GET /api/v1/targets`: every target with its status, last round and failing checks.
pub async fn targets(
    State(s): State<ApiState>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<TargetList>> {
    Params::parse(q.as_deref(), &[])?;
    let config = s.config();
    let live = s.live().read();
    let running = |name: &str| {
        live.running
            .values()
            .find(|r| r.kind == "maintenance" && r.target.as_deref() == Some(name))
            .map(|r| r.id.clone())
    };
    let mut out: Vec<TargetSummary> = config
        .targets
        .iter()
        .map(|t| {
            summary(
                &t.name,
                t.engine.as_str(),
                &t.tags,
                live.targets.get(&t.name),
                running(&t.name),
            )
        })
        .collect();
    let me = crate::alerts::self_target::NAME;
    if let Some(t) = live.targets.get(me) {
        out.push(summary(me, me, &[], Some(t), None));
    }
    Ok(Json(TargetList { targets: out }))
}

#[derive(Serialize)]
pub struct TargetHealth {
    pub target: String,
    pub status: Option<Status>,
    pub believed_status: Option<Status>,
    pub last_round: Option<DateTime<Utc>>,
    pub run_id: Option<String>,
    pub checks: Vec<CheckResult>,
}

/// `GET /api/v1/targets/{name}/health`: the latest round's check results.
pub async fn health(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<TargetHealth>> {
    Params::parse(q.as_deref(), &[])?;
    known(&s, &name)?;
    let t = s.live().target(&name).unwrap_or_default();
    Ok(Json(TargetHealth {
        target: name,
        status: t.status,
        believed_status: t.believed,
        last_round: t.last_round,
        run_id: t.last_run_id,
        checks: t.checks,
    }))
}

#[derive(Serialize)]
pub struct Statistics {
    pub target: String,
    /// When these statistics were taken; null when none were taken yet.
    pub taken_at: Option<DateTime<Utc>>,
    /// `live` (the latest round since start) or `history` (the store, after a restart).
    pub source: &'static str,
    pub total: usize,
    pub offset: usize,
    pub limit: usize,
    pub sort: &'static str,
    pub order: &'static str,
    pub tables: Vec<TableStat>,
}

const SORTS: &[&str] = &[
    "table",
    "rows",
    "dead_rows",
    "size_bytes",
    "seq_scans",
    "idx_scans",
    "last_vacuum",
    "last_analyze",
    "free_bytes",
];

/// The sort key of a table for a field (numbers; `table` sorts by name separately).
fn key(t: &TableStat, field: &str) -> Option<f64> {
    match field {
        "rows" => t.rows,
        "dead_rows" => t.dead_rows,
        "size_bytes" => t.size_bytes,
        "seq_scans" => t.seq_scans,
        "idx_scans" => t.idx_scans,
        "last_vacuum" => t.last_vacuum.map(|v| v as f64),
        "last_analyze" => t.last_analyze.map(|v| v as f64),
        "free_bytes" => t.free_bytes,
        _ => None,
    }
}

/// Sorts tables by a field; missing values last whatever the order (pure).
pub fn sort_tables(tables: &mut [TableStat], field: &str, descending: bool) {
    tables.sort_by(|a, b| {
        use std::cmp::Ordering;
        let o = if field == "table" {
            a.table.cmp(&b.table)
        } else {
            match (key(a, field), key(b, field)) {
                (Some(x), Some(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
                (Some(_), None) => return Ordering::Less,
                (None, Some(_)) => return Ordering::Greater,
                (None, None) => Ordering::Equal,
            }
        };
        let o = if descending { o.reverse() } else { o };
        o.then_with(|| a.table.cmp(&b.table))
    });
}

/// `GET /api/v1/targets/{name}/statistics?sort=&order=&limit=&offset=`.
pub async fn statistics(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<Statistics>> {
    let p = Params::parse(q.as_deref(), &["sort", "order", "limit", "offset"])?;
    known(&s, &name)?;
    let sort = p.choice("sort", SORTS)?.unwrap_or("size_bytes");
    let order = p
        .choice("order", &["asc", "desc"])?
        .unwrap_or(if sort == "table" { "asc" } else { "desc" });
    let limit = p.int("limit", 1, MAX_PAGE)?.unwrap_or(100) as usize;
    let offset = p.int("offset", 0, i64::MAX)?.unwrap_or(0) as usize;
    let live = s
        .live()
        .target(&name)
        .filter(|t| t.table_stats_at.is_some());
    let (source, taken_at, mut tables) = match live {
        Some(t) => ("live", t.table_stats_at, t.table_stats),
        // After a restart, before the first statistics round: the store has the last.
        None => {
            let rows = s.store().latest_table_stats(&name).await?;
            let at = rows.iter().map(|(ts, _)| *ts).max();
            ("history", at, rows.into_iter().map(|(_, t)| t).collect())
        }
    };
    sort_tables(&mut tables, sort, order == "desc");
    let total = tables.len();
    let tables = tables.into_iter().skip(offset).take(limit).collect();
    Ok(Json(Statistics {
        target: name,
        taken_at,
        source,
        total,
        offset,
        limit,
        sort,
        order,
        tables,
    }))
}

#[derive(Serialize)]
pub struct SeriesList {
    pub target: String,
    pub series: Vec<SeriesInfo>,
}

/// `GET /api/v1/targets/{name}/metrics?metric=&label=&from=&to=&step=`: a trend, or
/// without `metric` the series the target has.
pub async fn metrics(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<axum::response::Response> {
    use axum::response::IntoResponse;
    let p = Params::parse(q.as_deref(), &["metric", "label", "from", "to", "step"])?;
    known(&s, &name)?;
    let now = Utc::now();
    let from = p
        .time("from", now)?
        .unwrap_or(now - chrono::Duration::hours(24));
    let to = p.time("to", now)?.unwrap_or(now);
    let step = p.duration("step")?;
    let Some(metric) = p.str("metric") else {
        let series = s.store().series_of(&name).await?;
        return Ok(Json(SeriesList {
            target: name,
            series,
        })
        .into_response());
    };
    if from >= to {
        return Err(ApiError::bad_field("from", "must be before `to`"));
    }
    if step.is_some_and(|d| d.is_zero()) {
        return Err(ApiError::bad_field("step", "must be at least 1s"));
    }
    let trend: Trend = s
        .store()
        .trend(&TrendQuery {
            target: name,
            metric: metric.to_string(),
            label: p.str("label").map(str::to_string),
            from,
            to,
            step,
        })
        .await?;
    Ok(Json(trend).into_response())
}

#[derive(Serialize)]
pub struct SlowQueries {
    pub target: String,
    pub since: DateTime<Utc>,
    pub by: &'static str,
    pub statements: Vec<SlowQueryRow>,
}

/// `GET /api/v1/targets/{name}/slow-queries?since=&by=&limit=`: the worst statements.
pub async fn slow_queries(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<SlowQueries>> {
    let p = Params::parse(q.as_deref(), &["since", "by", "limit"])?;
    known(&s, &name)?;
    let since = p
        .time("since", Utc::now())?
        .unwrap_or(Utc::now() - chrono::Duration::hours(1));
    let by = p
        .choice("by", &["total", "mean", "calls"])?
        .unwrap_or("total");
    let order = match by {
        "mean" => SlowOrder::Mean,
        "calls" => SlowOrder::Calls,
        _ => SlowOrder::Total,
    };
    let limit = p.int("limit", 1, 500)?.unwrap_or(20);
    let statements = s.store().slow_queries(&name, since, order, limit).await?;
    Ok(Json(SlowQueries {
        target: name,
        since,
        by,
        statements,
    }))
}

#[derive(Serialize)]
pub struct MaintenanceHistory {
    pub target: String,
    pub since: DateTime<Utc>,
    pub actions: Vec<MaintenanceRow>,
}

/// `GET /api/v1/targets/{name}/maintenance?since=`: maintenance actions with reasons.
pub async fn maintenance(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<MaintenanceHistory>> {
    let p = Params::parse(q.as_deref(), &["since"])?;
    known(&s, &name)?;
    let since = p
        .time("since", Utc::now())?
        .unwrap_or(Utc::now() - chrono::Duration::days(7));
    let actions = s.store().maintenance_actions(Some(&name), since).await?;
    Ok(Json(MaintenanceHistory {
        target: name,
        since,
        actions,
    }))
}

#[derive(Serialize)]
pub struct JobInfo {
    pub name: String,
    pub kind: &'static str,
    pub schedule: String,
    pub timezone: String,
    pub enabled: bool,
    pub targets: Vec<String>,
    /// The next planned fire time (for `@every`: one interval from now).
    pub next_fire: Option<DateTime<Utc>>,
    pub running: Vec<RunLive>,
    pub last_run: Option<RunLive>,
}

#[derive(Serialize)]
pub struct JobList {
    pub jobs: Vec<JobInfo>,
}

/// `GET /api/v1/jobs`: schedules, next fire, what runs now and the last run.
pub async fn jobs(State(s): State<ApiState>, RawQuery(q): RawQuery) -> ApiResult<Json<JobList>> {
    Params::parse(q.as_deref(), &[])?;
    let config = s.config();
    let now = Utc::now();
    let live = s.live().read();
    let jobs = config
        .jobs
        .iter()
        .map(|j| JobInfo {
            name: j.name.clone(),
            kind: j.kind.as_str(),
            schedule: j.schedule_text.clone(),
            timezone: j.timezone.name().to_string(),
            enabled: j.enabled,
            targets: config
                .job_targets(j)
                .iter()
                .map(|t| t.name.clone())
                .collect(),
            next_fire: j.enabled.then(|| j.schedule.next_after(now)).flatten(),
            running: live
                .running
                .values()
                .filter(|r| r.job == j.name)
                .cloned()
                .collect(),
            last_run: live.jobs.get(&j.name).and_then(|v| v.front().cloned()),
        })
        .collect();
    Ok(Json(JobList { jobs }))
}

#[derive(Serialize)]
pub struct JobRuns {
    pub job: String,
    /// `history` (the store) or `live` (since the daemon started: the store is down).
    pub source: &'static str,
    pub runs: Vec<serde_json::Value>,
}

/// `GET /api/v1/jobs/{name}/runs?limit=`: the job's recent runs, from the history; while
/// the store is down, from the live state (since start).
pub async fn job_runs(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<JobRuns>> {
    let p = Params::parse(q.as_deref(), &["limit"])?;
    let limit = p.int("limit", 1, 1000)?.unwrap_or(50);
    if s.config().job(&name).is_none() {
        return Err(ApiError::not_found(format!(
            "no job named {:?}; GET /api/v1/jobs lists them",
            crate::text::escape(&name)
        )));
    }
    match s.store().recent_runs(Some(&name), limit).await {
        Ok(rows) => Ok(Json(JobRuns {
            job: name,
            source: "history",
            runs: rows
                .iter()
                .filter_map(|r| serde_json::to_value(r).ok())
                .collect(),
        })),
        Err(e) => {
            tracing::debug!(error = %e, "job runs from the live state: the store did not answer");
            let live = s.live().read();
            let runs = live
                .jobs
                .get(&name)
                .map(|v| {
                    v.iter()
                        .take(limit as usize)
                        .filter_map(|r| serde_json::to_value(r).ok())
                        .collect()
                })
                .unwrap_or_default();
            Ok(Json(JobRuns {
                job: name,
                source: "live",
                runs,
            }))
        }
    }
}

/// `GET /api/v1/runs/{id}`: a run going now or finished since start, with progress.
pub async fn run(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<RunLive>> {
    Params::parse(q.as_deref(), &[])?;
    s.live().run(&id).map(Json).ok_or_else(|| {
        ApiError::not_found(format!(
            "no run {:?} since the daemon started; GET /api/v1/jobs/{{name}}/runs has older runs",
            crate::text::escape(&id)
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str, size: Option<f64>) -> TableStat {
        TableStat {
            table: name.into(),
            size_bytes: size,
            ..TableStat::default()
        }
    }

    #[test]
    fn tables_sort_by_a_field_with_missing_values_last() {
        let mut v = vec![
            t("b", Some(1.0)),
            t("a", None),
            t("c", Some(5.0)),
            t("d", Some(1.0)),
        ];
        sort_tables(&mut v, "size_bytes", true);
        let names: Vec<_> = v.iter().map(|t| t.table.as_str()).collect();
        assert_eq!(names, vec!["c", "b", "d", "a"]);
        sort_tables(&mut v, "size_bytes", false);
        let names: Vec<_> = v.iter().map(|t| t.table.as_str()).collect();
        assert_eq!(names, vec!["b", "d", "c", "a"]);
        sort_tables(&mut v, "table", false);
        let names: Vec<_> = v.iter().map(|t| t.table.as_str()).collect();
        assert_eq!(names, vec!["a", "b", "c", "d"]);
    }
}
