//! Errors as Consul returns them: a status code and a plain-text message.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// An API error.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// 401 (`ACL support disabled`).
    #[error("{0}")]
    Unauthorized(String),
    /// 403 (`Permission denied`, `ACL not found`).
    #[error("{0}")]
    Forbidden(String),
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 413: a value or body too large.
    #[error("{0}")]
    TooLarge(String),
    /// 500 `No cluster leader`.
    #[error("No cluster leader")]
    NoLeader,
    /// 500 with a message.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// The status code.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::NoLeader | ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if matches!(self, ApiError::Internal(_)) {
            tracing::warn!(error = %self, "request failed");
        }
        (
            self.status(),
            [("content-type", "text/plain; charset=utf-8")],
            self.to_string(),
        )
            .into_response()
    }
}

/// Turns a failed proposal into an API error.
pub fn from_propose_error(error: crate::server::proposer::ProposeError) -> ApiError {
    match error {
        crate::server::proposer::ProposeError::NotLeader => ApiError::NoLeader,
        other => ApiError::Internal(other.to_string()),
    }
}
