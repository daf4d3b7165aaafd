//! The HTTP API, Prometheus `/metrics` and (merged in by `crate::dashboard`) the dashboard,
//! served by axum on `[daemon] listen` inside the daemon.
//!
//! How to add routes: write a handler `async fn h(State(s): State<ApiState>, ...) ->
//! ApiResult<Json<T>>` in `routes.rs` (or your own module exposing a `Router<ApiState>`) and
//! add it in [`router`] (or `.merge()` your router into it). Errors are [`ApiError`]
//! (`{"error": {"code", "message"}}`); mutating handlers call [`ApiState::authorize`] first
//! and [`ApiState::audit`] after. Read "now" from [`ApiState::live`] (`s.live().read()`
//! gives targets, jobs, running runs; take the lock briefly and clone), the config from
//! [`ApiState::config`], and history only through [`ApiState::store`] read methods (a store
//! error becomes 503 through `?`). Document every route in `openapi.json`.

pub mod actions;
pub mod auth;
pub mod error;
pub mod live;
pub mod metrics;
pub mod params;
pub mod routes;

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::jobs::Shared;
use crate::scheduler::Context;
use crate::store::Store;

pub use auth::Token;
pub use error::{ApiError, ApiResult};
pub use live::Live;

/// The largest request body accepted (a query plan's SQL text is the largest input).
pub const BODY_LIMIT: usize = 256 * 1024;
/// How often a listen address that was busy at start is tried again.
const BIND_RETRY: Duration = Duration::from_secs(30);

/// Everything a handler needs. Cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    inner: Arc<Inner>,
}

struct Inner {
    config: RwLock<Arc<Config>>,
    token: RwLock<Token>,
    live: Live,
    store: Store,
    shared: Arc<Shared>,
    sched: Arc<Context>,
    started_at: DateTime<Utc>,
    /// Runs the API started (optimize): cancelled and awaited at shutdown.
    runs: tokio_util::task::TaskTracker,
    stop: CancellationToken,
    alert_health: RwLock<Option<crate::alerts::deliver::Health>>,
    /// The latest `/metrics` text and when it was rendered ([`metrics::FRESH`]).
    metrics: tokio::sync::Mutex<Option<(tokio::time::Instant, Arc<String>)>>,
    /// The agents writing to the store and when they were read ([`AGENTS_FRESH`]).
    agents: tokio::sync::Mutex<Option<(tokio::time::Instant, Arc<Vec<crate::store::AgentRow>>)>>,
}

/// How long the list of agents sharing the store is reused (its read scans the series
/// dictionary; an agent appearing or going quiet is news on a scale of minutes).
pub const AGENTS_FRESH: Duration = Duration::from_secs(60);

impl ApiState {
    /// The state for a config; the token is read now ([`ApiState::reload`] reads it again).
    pub fn new(
        config: Arc<Config>,
        live: Live,
        store: Store,
        shared: Arc<Shared>,
        sched: Arc<Context>,
    ) -> ApiState {
        let token = Token::load(&config);
        ApiState {
            inner: Arc::new(Inner {
                config: RwLock::new(config),
                token: RwLock::new(token),
                live,
                store,
                shared,
                sched,
                started_at: Utc::now(),
                runs: tokio_util::task::TaskTracker::new(),
                stop: CancellationToken::new(),
                alert_health: RwLock::new(None),
                metrics: tokio::sync::Mutex::new(None),
                agents: tokio::sync::Mutex::new(None),
            }),
        }
    }

    /// The config in force now (swapped whole on reload).
    pub fn config(&self) -> Arc<Config> {
        self.inner
            .config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A reloaded config: takes its targets and jobs, and reads the token again.
    pub fn reload(&self, config: Arc<Config>) {
        let token = Token::load(&config);
        tracing::info!(token = token.describe(), "API: configuration reloaded");
        self.inner.live.retain_targets(|t| {
            t == crate::alerts::self_target::NAME || config.target(t).is_some()
        });
        *self.inner.token.write().unwrap_or_else(|p| p.into_inner()) = token;
        *self.inner.config.write().unwrap_or_else(|p| p.into_inner()) = config;
    }

    /// The live state (from the event stream).
    pub fn live(&self) -> &Live {
        &self.inner.live
    }

    /// The history store (reads fail with `StoreError::Unavailable` while it is down).
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The job kinds' shared state: engines (for EXPLAIN), the event stream.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }

    /// The scheduler's context (stuck loops, runs in flight).
    pub fn scheduler(&self) -> &Arc<Context> {
        &self.inner.sched
    }

    /// When the API (the daemon) started.
    pub fn started_at(&self) -> DateTime<Utc> {
        self.inner.started_at
    }

    /// The agents that write to the history store (this one included once it has written),
    /// read at most every [`AGENTS_FRESH`]; while the store does not answer, the last list
    /// read, or `None`.
    pub async fn store_agents(&self) -> Option<Arc<Vec<crate::store::AgentRow>>> {
        let mut cached = self.inner.agents.lock().await;
        let now = tokio::time::Instant::now();
        if let Some((at, rows)) = cached.as_ref()
            && now.duration_since(*at) < AGENTS_FRESH
        {
            return Some(rows.clone());
        }
        match self.inner.store.agents().await {
            Ok(rows) => {
                let rows = Arc::new(rows);
                *cached = Some((now, rows.clone()));
                Some(rows)
            }
            Err(e) => {
                tracing::debug!(error = %e, "agents sharing the store not read");
                cached.as_ref().map(|(_, rows)| rows.clone())
            }
        }
    }

    /// Spawns work the API started (a maintenance run): it gets a token cancelled at
    /// shutdown, and shutdown waits for it.
    pub fn spawn_run<F, Fut>(&self, work: F)
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let fut = work(self.inner.stop.child_token());
        self.inner.runs.spawn(fut);
    }

    /// Cancels the runs the API started and waits for them until `deadline`.
    pub async fn shutdown(&self, deadline: tokio::time::Instant) {
        self.inner.stop.cancel();
        self.inner.runs.close();
        if tokio::time::timeout_at(deadline, self.inner.runs.wait())
            .await
            .is_err()
        {
            tracing::warn!("maintenance runs started through the API did not stop in time");
        }
    }

    /// Gives `/metrics` the alert channels' delivery state.
    pub fn set_alert_health(&self, h: crate::alerts::deliver::Health) {
        *self
            .inner
            .alert_health
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Some(h);
    }

    /// The alert channels' delivery state, when the alerter runs.
    pub fn alert_health(&self) -> Option<crate::alerts::deliver::Health> {
        self.inner
            .alert_health
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The `/metrics` text, rendered at most once per [`metrics::FRESH`]: scrapes arriving
    /// together share one rendering instead of each walking every target.
    pub async fn metrics_text(&self) -> Result<Arc<String>, prometheus::Error> {
        let mut cache = self.inner.metrics.lock().await;
        let now = tokio::time::Instant::now();
        if let Some((at, text)) = cache.as_ref()
            && now.saturating_duration_since(*at) < metrics::FRESH
        {
            return Ok(text.clone());
        }
        let text = Arc::new(metrics::render(self)?);
        *cache = Some((now, text.clone()));
        Ok(text)
    }

    /// Whether the daemon is shutting down (API runs are being cancelled).
    pub fn is_stopping(&self) -> bool {
        self.inner.stop.is_cancelled()
    }

    /// Refuses a mutating call without the right bearer token.
    pub fn authorize(&self, headers: &HeaderMap) -> ApiResult<()> {
        self.inner
            .token
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .check(headers)
    }
}

/// Every route of the API. The dashboard merges its own `Router<ApiState>` into this.
pub fn router(state: ApiState) -> Router {
    routes(state.clone()).with_state(state)
}

/// The routes before the state is attached (merge a `Router<ApiState>` into this).
pub fn routes(state: ApiState) -> Router<ApiState> {
    use axum::routing::{delete, post};
    let mutating = Router::new()
        .route("/api/v1/targets/{name}/optimize", post(actions::optimize))
        .route(
            "/api/v1/targets/{name}/query-plan",
            post(actions::query_plan),
        )
        .route("/api/v1/silences", post(actions::silence_add))
        .route("/api/v1/silences/{id}", delete(actions::silence_remove))
        .route_layer(axum::middleware::from_fn_with_state(state, actions::guard));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::metrics))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/targets", get(routes::targets))
        .route("/api/v1/targets/{name}/health", get(routes::health))
        .route("/api/v1/targets/{name}/statistics", get(routes::statistics))
        .route("/api/v1/targets/{name}/metrics", get(routes::metrics))
        .route(
            "/api/v1/targets/{name}/slow-queries",
            get(routes::slow_queries),
        )
        .route(
            "/api/v1/targets/{name}/maintenance",
            get(routes::maintenance),
        )
        .route("/api/v1/jobs", get(routes::jobs))
        .route("/api/v1/jobs/{name}/runs", get(routes::job_runs))
        .route("/api/v1/runs/{id}", get(routes::run))
        .route("/api/v1/silences", get(actions::silences))
        .merge(mutating)
        .merge(crate::dashboard::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

/// The OpenAPI 3 description of this API.
pub const OPENAPI: &str = include_str!("openapi.json");

async fn openapi() -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint; GET /api/v1/openapi.json lists them")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take that method; GET /api/v1/openapi.json lists them",
    )
}

/// Adds the layers every route gets: request log, `timeout` (`[daemon] request_timeout`),
/// body limit, and one error shape for the answers the layers and extractors make
/// themselves.
pub fn with_layers(router: Router, timeout: Duration) -> Router {
    use tower_http::limit::RequestBodyLimitLayer;
    use tower_http::timeout::TimeoutLayer;
    use tower_http::trace::TraceLayer;
    router
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            timeout,
        ))
        .layer(axum::middleware::map_response(move |r| {
            uniform_errors(r, timeout)
        }))
        .layer(TraceLayer::new_for_http())
}

/// Gives an error answer not made by our handlers (a body over the limit, a timeout, a
/// path the router could not decode) the API's error shape.
async fn uniform_errors(
    r: axum::response::Response,
    timeout: Duration,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let json = r
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    let status = r.status();
    if json || !(status.is_client_error() || status.is_server_error()) {
        return r;
    }
    let (code, message) = match status.as_u16() {
        413 => (
            "too_large",
            format!("the request body is over {} KiB", BODY_LIMIT / 1024),
        ),
        408 | 503 => (
            "timeout",
            format!(
                "the request took longer than {} (request_timeout); try again later",
                humantime::format_duration(timeout)
            ),
        ),
        _ => (
            "bad_request",
            status
                .canonical_reason()
                .unwrap_or("the request cannot be handled")
                .to_string(),
        ),
    };
    ApiError::new(status, code, message).into_response()
}

#[derive(Serialize)]
struct Healthz {
    status: &'static str,
    version: &'static str,
    started_at: DateTime<Utc>,
}

/// Process up.
async fn healthz(State(s): State<ApiState>) -> Json<Healthz> {
    Json(Healthz {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
        started_at: s.started_at(),
    })
}

#[derive(Serialize)]
struct Readyz {
    ready: bool,
    store_reachable: bool,
    stuck_loops: Vec<String>,
}

/// Ready: the store answers writes and no scheduler loop is stuck. 503 otherwise.
async fn readyz(State(s): State<ApiState>) -> (axum::http::StatusCode, Json<Readyz>) {
    let store_reachable = s.store().health().reachable;
    let stuck_loops = s.scheduler().stuck_loops();
    let ready = store_reachable && stuck_loops.is_empty();
    let code = if ready {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        Json(Readyz {
            ready,
            store_reachable,
            stuck_loops,
        }),
    )
}

/// The running server.
pub struct Server {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Serves `app` on `addr` until [`Server::shutdown`], answering `503` to a request
    /// not done within `timeout`. A busy or forbidden address is not fatal (monitoring
    /// matters more): it is logged as an error and tried again every [`BIND_RETRY`].
    pub fn start(app: Router, addr: SocketAddr, timeout: Duration) -> Server {
        let stop = CancellationToken::new();
        let s = stop.clone();
        let task = tokio::spawn(async move {
            let listener = loop {
                match tokio::net::TcpListener::bind(addr).await {
                    Ok(l) => break l,
                    Err(e) => {
                        tracing::error!(
                            listen = %addr,
                            error = %e,
                            "the HTTP API cannot listen (fix daemon.listen or free the port); monitoring goes on without API and /metrics; retrying every {}s",
                            BIND_RETRY.as_secs()
                        );
                        tokio::select! {
                            _ = tokio::time::sleep(BIND_RETRY) => {}
                            _ = s.cancelled() => return,
                        }
                    }
                }
            };
            serve(listener, app, timeout, s).await;
        });
        Server { stop, task }
    }

    /// Stops accepting, lets requests in flight finish within `within`.
    pub async fn shutdown(self, within: Duration) {
        self.stop.cancel();
        let mut task = self.task;
        if tokio::time::timeout(within, &mut task).await.is_err() {
            task.abort();
            tracing::warn!("HTTP requests still in flight at shutdown were dropped");
        }
    }
}

/// Serves `app` on a bound listener until `stop` (graceful: requests in flight finish).
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    timeout: Duration,
    stop: CancellationToken,
) {
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    tracing::info!(listen = %addr, "HTTP API listening");
    let app = with_layers(app, timeout).into_make_service_with_connect_info::<SocketAddr>();
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
    {
        tracing::error!(error = %e, "the HTTP API stopped");
    }
}
