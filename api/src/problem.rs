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
use revaer_api_models::{InvalidParam, PROBLEM_CONTENT_TYPE, Problem};

/// Errors a handler can return.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    /// Validation failures, each located by a JSON pointer.
    #[error("the request is invalid")]
    Invalid(Vec<InvalidParam>),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// A dependency (the engine, the store) cannot serve now; retry later.
    #[error("{0}")]
    Unavailable(String),
    /// The state directory is full: nothing was stored (or acknowledged).
    #[error("{0}")]
    InsufficientStorage(String),
    /// A bug or an unexpected answer; details go to the log only.
    #[error("internal error; see the server log")]
    Internal(String),
}

impl ApiError {
    /// A failed write to the API's store, in the caller's words: 507 when
    /// the disk is full (an operator must free space), 503 otherwise (a
    /// transient failure). Either way nothing was stored.
    #[must_use]
    pub fn store_write(e: &crate::store::StoreError, what: &str) -> Self {
        if e.is_disk_full() {
            tracing::error!(error = %e, "{what}: the state directory is full");
            ApiError::InsufficientStorage(format!(
                "{what}: the state directory is full; nothing was stored"
            ))
        } else {
            tracing::error!(error = %e, "{what}");
            ApiError::Unavailable(format!("{what}; retry shortly"))
        }
    }

    /// One invalid parameter.
    #[must_use]
    pub fn invalid(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Invalid(vec![InvalidParam {
            pointer: pointer.into(),
            message: message.into(),
        }])
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) | ApiError::Invalid(_) => StatusCode::BAD_REQUEST,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::InsufficientStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match self {
            ApiError::Invalid(params) => {
                let mut problem = Problem::new(status.as_u16(), "Invalid request")
                    .with_type(INVALID_PARAMS_TYPE)
                    .with_detail("one or more parameters are invalid");
                problem.invalid_params = params;
                problem_json(status, &problem)
            }
            ApiError::Internal(detail) => {
                tracing::error!(detail = %detail, "internal error");
                problem_response(
                    status,
                    Some("internal error; see the server log".to_owned()),
                )
            }
            other => problem_response(status, Some(other.to_string())),
        }
    }
}

/// Problem type of validation failures.
pub const INVALID_PARAMS_TYPE: &str = "https://revaer.dev/problems/invalid-params";

/// A JSON body parsed with the failing field located: serde errors become
/// a 400 whose `invalid_params` pointer names the field (RFC 6901).
#[derive(Debug, Clone, Copy, Default)]
pub struct ValidJson<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for ValidJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/json"));
        if !is_json {
            return Err(ApiError::UnsupportedMediaType(
                "send the body as application/json".to_owned(),
            )
            .into_response());
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        parse_json(&bytes)
            .map(ValidJson)
            .map_err(IntoResponse::into_response)
    }
}

/// Parses JSON, locating any error by pointer.
pub fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let pointer = json_pointer(e.path());
        ApiError::invalid(pointer, e.inner().to_string())
    })?;
    de.end().map_err(|e| ApiError::invalid("", e.to_string()))?;
    Ok(value)
}

/// An RFC 6901 pointer for a serde path.
fn json_pointer(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path {
        match segment {
            Segment::Seq { index } => {
                out.push('/');
                out.push_str(&index.to_string());
            }
            Segment::Map { key } | Segment::Enum { variant: key } => {
                out.push('/');
                out.push_str(&key.replace('~', "~0").replace('/', "~1"));
            }
            // Syntax errors: locate the innermost known container.
            Segment::Unknown => break,
        }
    }
    out
}

fn problem_json(status: StatusCode, problem: &Problem) -> Response {
    let mut response = (status, Json(problem)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(PROBLEM_CONTENT_TYPE),
    );
    response
}

/// Builds a problem response for `status`.
#[must_use]
pub fn problem_response(status: StatusCode, detail: Option<String>) -> Response {
    let title = status.canonical_reason().unwrap_or("Error");
    let mut problem = Problem::new(status.as_u16(), title);
    problem.detail = detail;
    let mut response = problem_json(status, &problem);
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    } else if status == StatusCode::INSUFFICIENT_STORAGE {
        // Space comes back when an operator frees it, not in a second.
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        files: Vec<Rule>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Rule {
        priority: u8,
    }

    fn pointer_of(json: &str) -> String {
        match parse_json::<Body>(json.as_bytes()) {
            Err(ApiError::Invalid(params)) => params[0].pointer.clone(),
            other => panic!("expected invalid params, got {other:?}"),
        }
    }

    #[test]
    fn json_errors_are_located_by_pointer() {
        assert_eq!(
            pointer_of(r#"{"files":[{"priority":1},{"priority":300}]}"#),
            "/files/1/priority"
        );
        assert_eq!(pointer_of(r#"{"files":[{}]}"#), "/files/0");
        assert_eq!(pointer_of(r#"{"files":[], "extra": 1}"#), "/extra");
        assert_eq!(pointer_of("{"), "");
        assert!(parse_json::<Body>(br#"{"files":[{"priority":1}]}"#).is_ok());
        assert!(matches!(
            parse_json::<Body>(br#"{"files":[]} trailing"#),
            Err(ApiError::Invalid(_))
        ));
    }

    #[tokio::test]
    async fn problems_carry_status_type_and_invalid_params() {
        let response = ApiError::invalid("/tags/0", "too long").into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            PROBLEM_CONTENT_TYPE
        );
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let problem: Problem = serde_json::from_slice(&body).unwrap();
        assert_eq!(problem.status, 400);
        assert_eq!(problem.type_uri, INVALID_PARAMS_TYPE);
        assert_eq!(problem.invalid_params[0].pointer, "/tags/0");

        let response = ApiError::Internal("secret detail".to_owned()).into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        assert!(!String::from_utf8_lossy(&body).contains("secret detail"));

        let response = ApiError::Unavailable("engine down".to_owned()).into_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        assert_eq!(
            ApiError::Conflict(String::new()).into_response().status(),
            StatusCode::CONFLICT
        );
    }
}
