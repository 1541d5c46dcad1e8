//! The one place where errors become HTTP status codes.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// An error answered to an HTTP client. Client mistakes get a clear 4xx message and are not
/// logged as errors.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// 404: no such page or camera.
    #[error("{0}")]
    NotFound(String),
    /// 400: a malformed parameter; the message says which and what is accepted.
    #[error("{0}")]
    BadRequest(String),
    /// 503 + `Retry-After`: the viewer limit is reached.
    #[error("too many viewers (limit {limit}); try again later")]
    TooManyViewers {
        /// The limit that was reached.
        limit: usize,
    },
    /// 503: nothing to serve right now (no frame in time).
    #[error("{0}")]
    Unavailable(String),
    /// 401 + `WWW-Authenticate`: credentials missing or wrong.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: authenticated, but not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// 421: the request's `Host` is not a name this server answers to (DNS rebinding guard).
    #[error("{0}")]
    MisdirectedHost(String),
    /// 429 + `Retry-After`: too many failed logins or snapshot requests.
    #[error("too many requests; try again in {}s", retry_after.as_secs().max(1))]
    TooManyRequests {
        /// How long to wait.
        retry_after: std::time::Duration,
    },
}

/// Seconds a client is told to wait when the server is full.
const RETRY_AFTER_SECS: &str = "5";

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status = match &self {
            HttpError::NotFound(_) => StatusCode::NOT_FOUND,
            HttpError::BadRequest(_) => StatusCode::BAD_REQUEST,
            HttpError::TooManyViewers { .. } | HttpError::Unavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            HttpError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            HttpError::Forbidden(_) => StatusCode::FORBIDDEN,
            HttpError::MisdirectedHost(_) => StatusCode::MISDIRECTED_REQUEST,
            HttpError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
        };
        let mut resp = (status, format!("{self}\n")).into_response();
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECS),
            );
        }
        if let HttpError::TooManyRequests { retry_after } = &self {
            if let Ok(v) = HeaderValue::from_str(&retry_after.as_secs().max(1).to_string()) {
                headers.insert(header::RETRY_AFTER, v);
            }
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"mjpegd\", charset=\"UTF-8\""),
            );
        }
        resp
    }
}

impl From<crate::record::RecordError> for HttpError {
    fn from(e: crate::record::RecordError) -> HttpError {
        use crate::record::RecordError;
        match e {
            RecordError::TooManyFrames { .. } => HttpError::BadRequest(e.to_string()),
            RecordError::UnknownCamera(_) => HttpError::NotFound(e.to_string()),
            RecordError::Thread { .. } => HttpError::Unavailable(e.to_string()),
            // Counted and logged (with the file) by the recorder; the client learns no path.
            RecordError::Damaged { .. } => HttpError::Unavailable(
                "the recorded frame is damaged on disk (CRC mismatch) and is not served".into(),
            ),
            RecordError::Read { .. } | RecordError::Task(_) => {
                tracing::warn!(error = %e, "a recording query failed");
                HttpError::Unavailable(e.to_string())
            }
        }
    }
}
