//! The API's one error shape: `{"error": {"code": "...", "message": "..."}}` with the
//! matching HTTP status. Messages say what to do next; internal details (driver errors with
//! connection details) are logged, never returned.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::store::StoreError;

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    /// Stable machine-readable code (`bad_request`, `not_found`, ...).
    pub code: &'static str,
    pub message: String,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: &'a str,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400 naming the bad field.
    pub fn bad_field(field: &str, why: impl std::fmt::Display) -> Self {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("{field}: {why}"),
        )
    }

    /// 404 for a target the config does not have.
    pub fn unknown_target(name: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!(
                "no target named {:?}; GET /api/v1/targets lists them",
                crate::text::escape(name)
            ),
        )
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", what)
    }

    /// 503: the history store cannot answer. The store's own reason is logged, not shown
    /// (it may name hosts).
    pub fn store(e: &StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) | StoreError::WriterGone | StoreError::Open { .. } => {
                tracing::warn!(error = %e, "API: history store unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "the history store is unavailable; live state (targets, health, jobs, /metrics) still answers. `dbwarden status` shows the store's state; try again later",
                )
            }
            StoreError::Db(_) | StoreError::ReadOnly(_) => {
                tracing::error!(error = %e, "API: history store query failed");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "store_error",
                    "the history store query failed; the daemon's log has the details",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: Inner {
                code: self.code,
                message: &self.message,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::store(&e)
    }
}

/// A handler's result.
pub type ApiResult<T> = Result<T, ApiError>;
