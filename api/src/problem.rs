//! RFC 9457 Problem+JSON responses: the only error shape the API emits.
//!
//! Handlers return [`ApiError`]; anything that still produces a bare error
//! status (axum's 404/405, tower-http's 408/413, a caught panic) is rewritten
//! into a problem document by [`problem_for_bare_errors`], so no client ever
//! sees an empty or plain-text error body.

use axum::Json;
use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use revaer_api_models::{PROBLEM_CONTENT_TYPE, Problem};

/// Errors a handler can return.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unavailable(String),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        problem_response(status, Some(self.to_string()))
    }
}

/// Builds a problem response for `status`.
#[must_use]
pub fn problem_response(status: StatusCode, detail: Option<String>) -> Response {
    let title = status.canonical_reason().unwrap_or("Error");
    let mut problem = Problem::new(status.as_u16(), title);
    problem.detail = detail;
    let mut response = (status, Json(problem)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(PROBLEM_CONTENT_TYPE),
    );
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

/// Middleware body: rewrites any 4xx/5xx response that is not already JSON
/// into a problem document carrying the same status.
pub async fn problem_for_bare_errors(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.contains("json"));
    if is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    drop(body);
    let detail = match status {
        StatusCode::NOT_FOUND => Some("no such route".to_owned()),
        StatusCode::METHOD_NOT_ALLOWED => Some("method not allowed on this route".to_owned()),
        StatusCode::REQUEST_TIMEOUT => Some("the request took too long".to_owned()),
        StatusCode::PAYLOAD_TOO_LARGE => Some("the request body is too large".to_owned()),
        StatusCode::INTERNAL_SERVER_ERROR => Some("internal error; see the server log".to_owned()),
        _ => None,
    };
    let mut rebuilt = problem_response(status, detail);
    for name in [header::ALLOW, header::RETRY_AFTER] {
        if let Some(v) = parts.headers.get(&name) {
            rebuilt.headers_mut().insert(name, v.clone());
        }
    }
    rebuilt
}

/// A caught panic becomes a 500 problem (the panic message is logged, not sent).
pub fn panic_to_problem(_err: Box<dyn std::any::Any + Send + 'static>) -> Response<Body> {
    tracing::error!("handler panicked");
    problem_response(StatusCode::INTERNAL_SERVER_ERROR, None)
}
