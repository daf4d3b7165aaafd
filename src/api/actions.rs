//! The mutating endpoints (bearer token, audited): run maintenance now, EXPLAIN a query,
//! add and remove silences; plus the middleware that guards and audits them.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, RawQuery, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::ApiState;
use super::error::{ApiError, ApiResult};
use super::live::{Progress, RunLive};
use super::params::Params;
use super::routes::known;
use crate::config::{Config, Target};
use crate::events::Event;
use crate::jobs::maintenance::{self as maint, Progress as Step, Request as MaintRequest};
use crate::store::{AuditRow, RunEnd, RunOutcome, SilenceRow};

/// The longest silence (a silence always ends).
pub const SILENCE_MAX: Duration = Duration::from_secs(30 * 86_400);

/// Marks a response with the run it started, for the audit trail.
#[derive(Clone)]
pub struct AuditRun(pub String);

/// Guards a mutating route: the bearer token first; then records the call (client, method,
/// path, status, outcome) in the log and the `api_audit` table, allowed or not, also when
/// the request timeout drops it before it is answered.
pub async fn guard(State(s): State<ApiState>, req: Request, next: Next) -> Response {
    let client = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.to_string())
        .unwrap_or_else(|| "-".into());
    let mut call = Audit {
        s: s.clone(),
        client,
        method: req.method().to_string(),
        path: req.uri().path().to_string(),
        done: false,
    };
    let response = match s.authorize(req.headers()) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    };
    let status = response.status();
    let outcome = if status.is_success() {
        "ok".to_string()
    } else {
        status
            .canonical_reason()
            .unwrap_or("error")
            .to_ascii_lowercase()
            .replace(' ', "_")
    };
    let run_id = response.extensions().get::<AuditRun>().map(|r| r.0.clone());
    call.record(status, outcome, run_id);
    response
}

/// A mutating call being answered. Dropped unrecorded (the request timeout cut it short),
/// it is recorded as what the client got: `503`, outcome `timeout`.
struct Audit {
    s: ApiState,
    client: String,
    method: String,
    path: String,
    done: bool,
}

impl Audit {
    fn record(&mut self, status: StatusCode, outcome: String, run_id: Option<String>) {
        self.done = true;
        let Audit {
            client,
            method,
            path,
            ..
        } = self;
        // As the client wrote it (percent-encoded if it was).
        let target = path
            .strip_prefix("/api/v1/targets/")
            .and_then(|r| r.split('/').next())
            .map(str::to_string);
        tracing::info!(
            audit = true,
            client = %client,
            method = %method,
            path = %crate::text::escape(path),
            status = status.as_u16(),
            outcome = %outcome,
            run_id = run_id.as_deref().unwrap_or("-"),
            "API call {method} {} from {client}: {}",
            crate::text::escape(path),
            status.as_u16()
        );
        let row = AuditRow {
            ts: Utc::now(),
            agent: crate::store::agent_name(),
            client: client.clone(),
            method: method.clone(),
            path: path.clone(),
            target,
            status: i64::from(status.as_u16()),
            outcome,
            run_id,
        };
        let store = self.s.store().clone();
        // Not on the request's time: the log line above is the record if the store is down
        // (or the runtime is gone: a drop at the very end of shutdown).
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        rt.spawn(async move {
            if let Err(e) = store.audit_insert(&row).await {
                tracing::warn!(error = %e, "API audit row not stored (the log line is the record)");
            }
        });
    }
}

impl Drop for Audit {
    fn drop(&mut self) {
        if !self.done {
            self.record(StatusCode::SERVICE_UNAVAILABLE, "timeout".into(), None);
        }
    }
}

#[derive(Serialize)]
pub struct RunAccepted {
    pub run_id: String,
    pub target: String,
    pub dry_run: bool,
    /// Follow the run here.
    pub url: String,
}

/// The database server a target lives on, for "one maintenance run per server" (host and
/// port; the file for SQLite). Never holds a password.
fn server_of(t: &Target) -> String {
    let raw = t.url.expose();
    match url::Url::parse(raw) {
        Ok(u) if u.scheme() != "sqlite" => format!(
            "{}://{}:{}",
            t.engine.as_str(),
            u.host_str().unwrap_or(""),
            u.port().unwrap_or(0)
        ),
        _ => format!("sqlite:{}", raw.split('?').next().unwrap_or(raw)),
    }
}

/// `POST /api/v1/targets/{name}/optimize[?dry_run=true]`: runs the target's maintenance
/// now (the policy of the first enabled maintenance job covering it, as `dbwarden
/// maintain` does, without the window); 202 with a run id; 409 while a maintenance run of
/// that target or its server is going.
pub async fn optimize(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let p = Params::parse(q.as_deref(), &["dry_run"])?;
    let dry_run = p.bool("dry_run")?.unwrap_or(false);
    let config = s.config();
    let Some(target) = config.target(&name).cloned() else {
        return Err(ApiError::unknown_target(&name));
    };
    let job = maintenance_job(&config, &target);
    let run_id = crate::store::new_run_id();
    let server = server_of(&target);
    let job_name = job
        .as_ref()
        .map(|j| j.name.clone())
        .unwrap_or_else(|| "api-optimize".into());
    let started = super::live::unscheduled_run(&run_id, &job_name, "maintenance", &name);
    let run = RunLive {
        // A dry run is no maintenance run: its own kind keeps it out of the job's counts.
        kind: if dry_run {
            "maintenance-dry-run".into()
        } else {
            started.kind.clone()
        },
        progress: Some(Progress::default()),
        ..RunLive::from(&started)
    };
    let servers: Vec<(String, String)> = config
        .targets
        .iter()
        .map(|t| (t.name.clone(), server_of(t)))
        .collect();
    let conflict = s.live().begin_unless(run.clone(), |r| {
        r.kind.starts_with("maintenance")
            && r.target.as_deref().is_some_and(|t| {
                t == name || servers.iter().any(|(n, srv)| n == t && *srv == server)
            })
    });
    if let Some(other) = conflict {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!(
                "a maintenance run is already going on {} (run {}); follow it at /api/v1/runs/{}",
                if other.target.as_deref() == Some(name.as_str()) {
                    "this target"
                } else {
                    "this target's server"
                },
                other.id,
                other.id
            ),
        ));
    }
    if !dry_run {
        s.shared().events.publish(Event::RunStarted(started));
    }
    let state = s.clone();
    let (id, tname) = (run_id.clone(), name.clone());
    s.spawn_run(move |cancel| async move {
        run_maintenance(state, config, target, job, id, tname, dry_run, cancel).await;
    });
    let body = RunAccepted {
        url: format!("/api/v1/runs/{run_id}"),
        run_id: run_id.clone(),
        target: name,
        dry_run,
    };
    let mut resp = (StatusCode::ACCEPTED, Json(body)).into_response();
    resp.extensions_mut().insert(AuditRun(run_id));
    Ok(resp)
}

/// The maintenance job whose policy an API run follows: the first enabled one covering the
/// target (`None`: built-in defaults).
fn maintenance_job(config: &Config, t: &Target) -> Option<crate::config::Job> {
    config
        .jobs
        .iter()
        .filter(|j| j.enabled && j.kind == crate::config::JobKind::Maintenance)
        .find(|j| config.job_targets(j).iter().any(|x| x.name == t.name))
        .cloned()
}

#[allow(clippy::too_many_arguments)]
async fn run_maintenance(
    s: ApiState,
    config: std::sync::Arc<Config>,
    target: Target,
    job: Option<crate::config::Job>,
    id: String,
    name: String,
    dry_run: bool,
    cancel: tokio_util::sync::CancellationToken,
) {
    let defaults = crate::config::MaintenanceParams::default();
    let params = job
        .as_ref()
        .and_then(|j| j.params.maintenance())
        .unwrap_or(&defaults);
    // The load guard's `skip_when_status` reads the believed status, as scheduled runs do.
    let shared = s.shared().clone();
    let tname = name.clone();
    let status = move || shared.tracker.believed(&tname);
    let history = s.shared().history();
    let req = MaintRequest {
        target: &target,
        params,
        tz: job.as_ref().map_or(config.timezone, maint::window_tz),
        use_window: false,
        dry_run,
        watch_vacuum: Some(Duration::from_secs(2)),
        status: &status,
        history: history.as_ref(),
    };
    // The job's timeout bounds an API run as it bounds a scheduled one.
    let timeout = job.as_ref().map(|j| j.timeout);
    let stop = cancel.clone();
    let timer = tokio::spawn(async move {
        if let Some(t) = timeout {
            tokio::time::sleep(t).await;
            stop.cancel();
        }
    });
    let live = s.live().clone();
    let events = s.shared().events.clone();
    let progress = |p: Step<'_>| live.progress(&id, |g| g.update(p));
    let record = |records: Vec<crate::maintenance::StepRecord>| {
        if !records.is_empty() && !dry_run {
            events.publish(Event::Maintenance {
                target: name.clone(),
                run_id: Some(id.clone()),
                records,
            });
        }
    };
    let result = maint::maintain(req, &cancel, progress, record).await;
    timer.abort();
    let (outcome, error) = match &result {
        Ok(report) => {
            if let Ok(v) = serde_json::to_value(report) {
                s.live().set_report(&id, v);
            }
            // Like a scheduled run: skipped whole feeds the self-target's maintenance_failing.
            if let Some(why) = report
                .skipped
                .clone()
                .or_else(|| maint::all_skipped(&report.records))
                && !dry_run
            {
                s.shared().note_maintenance_skip(&id, &why);
            }
            (RunOutcome::Ok, None)
        }
        Err(crate::jobs::JobError::Cancelled) => (
            if timeout.is_some() && !s.is_stopping() {
                RunOutcome::TimedOut
            } else {
                RunOutcome::Interrupted
            },
            Some("cancelled; the run's statements were cancelled".to_string()),
        ),
        Err(e) => (RunOutcome::Failed, Some(e.to_string())),
    };
    if let Some(e) = &error {
        tracing::warn!(run_id = %id, target_name = %name, error = %e, "API maintenance run did not complete");
    }
    if dry_run {
        s.live().end(&id, outcome, error);
    } else {
        s.shared().events.publish(Event::RunFinished(RunEnd {
            id: id.clone(),
            finished_at: Utc::now(),
            outcome,
            status: None,
            error,
        }));
    }
}

/// The body of `POST /api/v1/targets/{name}/query-plan`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanRequest {
    query: String,
    #[serde(default)]
    analyze: bool,
    #[serde(default)]
    format: Option<String>,
}

#[derive(Serialize)]
pub struct PlanResponse {
    pub target: String,
    pub format: &'static str,
    pub analyze: bool,
    /// The plan: PostgreSQL's JSON plan (format json) or its text lines (format text).
    pub plan: serde_json::Value,
}

/// Parses a JSON body into `T`, naming the bad field in the 400.
fn body<T: serde::de::DeserializeOwned>(bytes: &Bytes) -> ApiResult<T> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." {
            "body".to_string()
        } else {
            path
        };
        ApiError::bad_field(&field, e.into_inner())
    })
}

/// `POST /api/v1/targets/{name}/query-plan`: EXPLAIN with every rule `dbwarden explain`
/// has (one read-only statement, READ ONLY transaction rolled back, statement timeout;
/// ANALYZE only where the target allows it).
pub async fn query_plan(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    bytes: Bytes,
) -> ApiResult<Json<PlanResponse>> {
    use crate::engine::postgres::explain::{PlanFormat, check};
    Params::parse(q.as_deref(), &[])?;
    let config = s.config();
    let Some(target) = config.target(&name).cloned() else {
        return Err(ApiError::unknown_target(&name));
    };
    let req: PlanRequest = body(&bytes)?;
    let (format, fmt_name) = match req.format.as_deref() {
        None | Some("json") => (PlanFormat::Json, "json"),
        Some("text") => (PlanFormat::Text, "text"),
        Some(_) => return Err(ApiError::bad_field("format", "expected json or text")),
    };
    if req.analyze && !target.raw.explain_analyze {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "analyze_not_allowed",
            format!(
                "analyze refused: EXPLAIN ANALYZE executes the query; set explain_analyze = true on target {:?} to allow it",
                crate::text::escape(&name)
            ),
        ));
    }
    if target.engine != crate::engine::EngineKind::Postgres {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "not_implemented",
            format!(
                "query plans are available for PostgreSQL targets in this version; {:?} is {}",
                crate::text::escape(&name),
                target.engine.as_str()
            ),
        ));
    }
    check(&req.query).map_err(|why| ApiError::bad_field("query", why))?;
    let engine = s.shared().engines.get(&target).map_err(|e| {
        tracing::warn!(target_name = %name, error = %e, "API query-plan: no engine");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "target_unavailable",
            "the target cannot be reached now; its health shows why",
        )
    })?;
    let crate::engine::Engine::Postgres(pg) = &*engine else {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "not_implemented",
            "query plans are available for PostgreSQL targets in this version",
        ));
    };
    let scope = crate::engine::RunScope::default();
    let plan = pg
        .explain(&req.query, req.analyze, format, &scope)
        .await
        .map_err(|e| {
            // The server's reason (a syntax error, an unknown table) is what the caller
            // needs; connection details are redacted.
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "explain_failed",
                format!("EXPLAIN failed: {}", crate::config::secret::redact_url(&e)),
            )
        })?;
    let plan = match format {
        PlanFormat::Json => {
            serde_json::from_str(&plan).unwrap_or_else(|_| serde_json::Value::String(plan.clone()))
        }
        PlanFormat::Text => serde_json::Value::Array(
            plan.lines()
                .map(|l| serde_json::Value::String(l.to_string()))
                .collect(),
        ),
    };
    Ok(Json(PlanResponse {
        target: name,
        format: fmt_name,
        analyze: req.analyze,
        plan,
    }))
}

#[derive(Serialize)]
pub struct SilenceList {
    pub silences: Vec<SilenceRow>,
}

/// `GET /api/v1/silences`: silences in force now.
pub async fn silences(
    State(s): State<ApiState>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<SilenceList>> {
    Params::parse(q.as_deref(), &[])?;
    let silences = s.store().silences_active(Utc::now()).await?;
    Ok(Json(SilenceList { silences }))
}

/// The body of `POST /api/v1/silences`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SilenceRequest {
    target: String,
    /// How long, e.g. "2h" (1s to 30d).
    duration: String,
    reason: String,
    #[serde(default)]
    created_by: Option<String>,
}

#[derive(Serialize)]
pub struct SilenceCreated {
    pub id: i64,
    pub target: String,
    pub ends_at: DateTime<Utc>,
}

/// `POST /api/v1/silences`: silences a target's alerts for a while.
pub async fn silence_add(
    State(s): State<ApiState>,
    RawQuery(q): RawQuery,
    bytes: Bytes,
) -> ApiResult<(StatusCode, Json<SilenceCreated>)> {
    Params::parse(q.as_deref(), &[])?;
    let req: SilenceRequest = body(&bytes)?;
    known(&s, &req.target).map_err(|_| {
        ApiError::bad_field(
            "target",
            format!(
                "no target named {:?}; GET /api/v1/targets lists them",
                crate::text::escape(&req.target)
            ),
        )
    })?;
    let d = humantime::parse_duration(&req.duration)
        .ok()
        .filter(|d| !d.is_zero() && *d <= SILENCE_MAX)
        .ok_or_else(|| {
            ApiError::bad_field("duration", "expected a duration from 1s to 30d, such as 2h")
        })?;
    if req.reason.trim().is_empty() {
        return Err(ApiError::bad_field(
            "reason",
            "say why (it is shown with the silence)",
        ));
    }
    let ends_at = Utc::now()
        + chrono::Duration::from_std(d).map_err(|_| ApiError::bad_field("duration", "too long"))?;
    let by = req.created_by.unwrap_or_else(|| "api".into());
    let id = s
        .store()
        .silence_add(&req.target, ends_at, &req.reason, &by)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(SilenceCreated {
            id,
            target: req.target,
            ends_at,
        }),
    ))
}

/// `DELETE /api/v1/silences/{id}`: ends a silence now.
pub async fn silence_remove(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<StatusCode> {
    Params::parse(q.as_deref(), &[])?;
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::bad_field("id", "expected a silence id (a number)"))?;
    if s.store().silence_remove(id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!(
            "no active silence {id}; GET /api/v1/silences lists them"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_body_names_its_field() {
        let e = body::<SilenceRequest>(&Bytes::from_static(
            br#"{"target":"a","duration":5,"reason":"r"}"#,
        ))
        .err()
        .map(|e| e.message)
        .unwrap_or_default();
        assert!(e.starts_with("duration:"), "{e}");
        let e = body::<SilenceRequest>(&Bytes::from_static(br#"{"target":"a","reasn":"r"}"#))
            .err()
            .map(|e| e.message)
            .unwrap_or_default();
        assert!(e.contains("reasn"), "{e}");
        let e = body::<PlanRequest>(&Bytes::from_static(b"not json"))
            .err()
            .map(|e| e.message)
            .unwrap_or_default();
        assert!(e.starts_with("body:"), "{e}");
    }
}
