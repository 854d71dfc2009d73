//! RFC 9457 Problem+JSON responses: the only error shape the API emits.
//!
//! Handlers return a typed error that renders through [`ApiError`];
//! anything that still produces a bare error status (axum's 404/405,
//! tower-http's 408/413, a caught panic) is rewritten into a problem
//! document by [`problem_for_bare_errors`], so no client ever sees an
//! empty or plain-text error body.
//!
//! **Statuses are typed.** Every kind of failure is a type in [`kind`]
//! with its status. A route's error type, declared with `failures!`,
//! names the kinds it can carry and nothing else, so its
//! [`Statuses::STATUSES`] is exactly what the route can answer with;
//! widening a narrower error (a helper's) into it is checked by the
//! compiler. `crate::contract` checks those statuses against the OpenAPI
//! document.

use std::fmt;

use axum::Json;
use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use revaer_api_models::{InvalidParam, PROBLEM_CONTENT_TYPE, Problem};

/// The HTTP statuses a type can turn into: a route's error type, an
/// extractor's rejection.
pub trait Statuses {
    /// Every status a value of the type can answer with (no order; a
    /// status may repeat).
    const STATUSES: &'static [StatusCode];
}

/// One kind of failure: the status it answers with and what it carries.
pub trait Kind {
    /// What a failure of this kind carries to the client.
    type Payload;
    /// The status it answers with.
    const STATUS: StatusCode;
    /// Its `detail` line (the payload, unless the kind says less).
    fn describe(payload: &Self::Payload, f: &mut fmt::Formatter<'_>) -> fmt::Result;
}

/// An error type with a variant of kind `K`.
pub trait Carries<K: Kind> {
    /// The failure of kind `K` carrying `payload`.
    fn carry(payload: K::Payload) -> Self;
}

/// The kinds of failure, one type each (never instantiated).
pub mod kind {
    use std::fmt;

    use axum::http::StatusCode;
    use revaer_api_models::InvalidParam;

    use super::Kind;

    macro_rules! kinds {
        ($($(#[$meta:meta])* $name:ident($payload:ty) => $status:ident $(, says $text:literal)?;)*) => {$(
            $(#[$meta])*
            #[derive(Debug)]
            pub enum $name {}

            impl Kind for $name {
                type Payload = $payload;
                const STATUS: StatusCode = StatusCode::$status;
                fn describe(payload: &$payload, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    kinds!(@describe payload, f $(, $text)?)
                }
            }
        )*};
        (@describe $payload:ident, $f:ident) => { fmt::Display::fmt($payload, $f) };
        (@describe $payload:ident, $f:ident, $text:literal) => {{
            let _ = $payload;
            $f.write_str($text)
        }};
    }

    kinds! {
        /// A missing resource (404).
        NotFound(String) => NOT_FOUND;
        /// A malformed request without a located field (400).
        BadRequest(String) => BAD_REQUEST;
        /// Validation failures, each located by a JSON pointer (400).
        Invalid(Vec<InvalidParam>) => BAD_REQUEST, says "the request is invalid";
        /// The caller's key may not do this (403).
        Forbidden(String) => FORBIDDEN;
        /// The resource's state does not allow it (409).
        Conflict(String) => CONFLICT;
        /// The body is too large (413).
        PayloadTooLarge(String) => PAYLOAD_TOO_LARGE;
        /// The body's media type is not accepted (415).
        UnsupportedMediaType(String) => UNSUPPORTED_MEDIA_TYPE;
        /// A dependency (the engine, the store) cannot serve now; retry
        /// later (503 with `Retry-After: 1`).
        Unavailable(String) => SERVICE_UNAVAILABLE;
        /// The state directory is full: nothing was stored (or
        /// acknowledged) (507 with `Retry-After: 60`).
        InsufficientStorage(String) => INSUFFICIENT_STORAGE;
        /// A bug or an unexpected answer; details go to the log only (500).
        Internal(String) => INTERNAL_SERVER_ERROR, says "internal error; see the server log";
    }
}

/// Every failure the API can answer with: what route errors render
/// through.
#[derive(Debug)]
pub enum ApiError {
    NotFound(String),
    BadRequest(String),
    /// Validation failures, each located by a JSON pointer.
    Invalid(Vec<InvalidParam>),
    Forbidden(String),
    Conflict(String),
    PayloadTooLarge(String),
    UnsupportedMediaType(String),
    /// A dependency (the engine, the store) cannot serve now; retry later.
    Unavailable(String),
    /// The state directory is full: nothing was stored (or acknowledged).
    InsufficientStorage(String),
    /// A bug or an unexpected answer; details go to the log only.
    Internal(String),
}

/// `Carries` for every kind `ApiError` has a variant of (all of them).
macro_rules! api_error_carries {
    ($($kind:ident),*) => {
        $(impl Carries<kind::$kind> for ApiError {
            fn carry(payload: <kind::$kind as Kind>::Payload) -> Self {
                ApiError::$kind(payload)
            }
        })*

        impl Statuses for ApiError {
            const STATUSES: &'static [StatusCode] = &[$(<kind::$kind as Kind>::STATUS),*];
        }

        impl fmt::Display for ApiError {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $(ApiError::$kind(payload) => <kind::$kind as Kind>::describe(payload, f),)*
                }
            }
        }

        impl ApiError {
            fn status(&self) -> StatusCode {
                match self {
                    $(ApiError::$kind(_) => <kind::$kind as Kind>::STATUS,)*
                }
            }
        }
    };
}

api_error_carries!(
    NotFound,
    BadRequest,
    Invalid,
    Forbidden,
    Conflict,
    PayloadTooLarge,
    UnsupportedMediaType,
    Unavailable,
    InsufficientStorage,
    Internal
);

impl std::error::Error for ApiError {}

impl ApiError {
    /// One invalid parameter.
    #[must_use]
    pub fn invalid(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        invalid(pointer, message)
    }
}

/// One invalid parameter, as any error type that carries
/// [`kind::Invalid`].
#[must_use]
pub fn invalid<E: Carries<kind::Invalid>>(
    pointer: impl Into<String>,
    message: impl Into<String>,
) -> E {
    E::carry(vec![InvalidParam {
        pointer: pointer.into(),
        message: message.into(),
    }])
}

/// Declares route error types: enums whose variants are kinds from
/// [`kind`] (same names, the kind's payload). Each gets
/// [`Statuses::STATUSES`] from its kinds, `widen` into any error type
/// carrying all of them (checked by the compiler), `Display`,
/// `IntoResponse` through [`ApiError`], and `From` each type listed after
/// `from` (so `?` works; a source with a kind the target lacks does not
/// compile).
///
/// ```ignore
/// failures! {
///     /// Why `POST /v1/torrents/{id}/action` fails.
///     pub enum ActionError { Invalid, NotFound, Conflict, Unavailable } from { InvalidRequest }
/// }
/// ```
macro_rules! failures {
    ($(
        $(#[$meta:meta])*
        pub enum $name:ident { $($kind:ident),+ $(,)? } $(from { $($source:ty),+ $(,)? })?
    )*) => {$(
        $(#[$meta])*
        #[derive(Debug)]
        pub enum $name {
            $($kind(<$crate::problem::kind::$kind as $crate::problem::Kind>::Payload),)+
        }

        $(impl $crate::problem::Carries<$crate::problem::kind::$kind> for $name {
            fn carry(payload: <$crate::problem::kind::$kind as $crate::problem::Kind>::Payload) -> Self {
                Self::$kind(payload)
            }
        })+

        impl $name {
            /// The same failure as an error type that carries every kind
            /// this one does.
            #[allow(dead_code, reason = "declared for every failure type; not all widen by hand")]
            pub fn widen<E>(self) -> E
            where
                E: $($crate::problem::Carries<$crate::problem::kind::$kind> +)+
            {
                match self {
                    $(Self::$kind(payload) => <E as $crate::problem::Carries<$crate::problem::kind::$kind>>::carry(payload),)+
                }
            }
        }

        impl $crate::problem::Statuses for $name {
            const STATUSES: &'static [::axum::http::StatusCode] =
                &[$(<$crate::problem::kind::$kind as $crate::problem::Kind>::STATUS),+];
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                match self {
                    $(Self::$kind(payload) => <$crate::problem::kind::$kind as $crate::problem::Kind>::describe(payload, f),)+
                }
            }
        }

        impl ::std::error::Error for $name {}

        impl From<$name> for $crate::problem::ApiError {
            fn from(e: $name) -> Self {
                e.widen()
            }
        }

        impl ::axum::response::IntoResponse for $name {
            fn into_response(self) -> ::axum::response::Response {
                $crate::problem::ApiError::from(self).into_response()
            }
        }

        $($(impl From<$source> for $name {
            fn from(e: $source) -> Self {
                e.widen()
            }
        })+)?
    )*};
}
pub(crate) use failures;

failures! {
    /// Input that failed validation.
    pub enum InvalidRequest { Invalid }

    /// A failed write to the API's store: 507 when the disk is full (an
    /// operator must free space), 503 otherwise (a transient failure).
    /// Either way nothing was stored.
    pub enum StoreFailure { Unavailable, InsufficientStorage }

    /// Why a JSON body was refused before its handler ran.
    pub enum JsonBodyRejection { UnsupportedMediaType, PayloadTooLarge, BadRequest, Invalid }
        from { InvalidRequest }
}

/// A failed write to the API's store, in the caller's words (see
/// [`StoreFailure`]).
#[must_use]
pub fn store_write(e: &crate::store::StoreError, what: &str) -> StoreFailure {
    if e.is_disk_full() {
        tracing::error!(error = %e, "{what}: the state directory is full");
        StoreFailure::InsufficientStorage(format!(
            "{what}: the state directory is full; nothing was stored"
        ))
    } else {
        tracing::error!(error = %e, "{what}");
        StoreFailure::Unavailable(format!("{what}; retry shortly"))
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
    type Rejection = JsonBodyRejection;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/json"));
        if !is_json {
            return Err(JsonBodyRejection::UnsupportedMediaType(
                "send the body as application/json".to_owned(),
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    JsonBodyRejection::PayloadTooLarge("the request body is too large".to_owned())
                } else {
                    JsonBodyRejection::BadRequest(e.body_text())
                }
            })?;
        Ok(ValidJson(parse_json(&bytes)?))
    }
}

/// Parses JSON, locating any error by pointer.
pub fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, InvalidRequest> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let pointer = json_pointer(e.path());
        invalid(pointer, e.inner().to_string())
    })?;
    de.end().map_err(|e| invalid("", e.to_string()))?;
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
            Err(InvalidRequest::Invalid(params)) => params[0].pointer.clone(),
            Ok(other) => panic!("expected invalid params, got {other:?}"),
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
            Err(InvalidRequest::Invalid(_))
        ));
    }

    /// Each way a JSON body is refused answers with a status
    /// `JsonBodyRejection` declares (what the OpenAPI check relies on).
    #[tokio::test]
    async fn json_body_refusals_answer_with_their_declared_statuses() {
        use tower::ServiceExt as _;

        async fn take(ValidJson(_): ValidJson<Body>) -> StatusCode {
            StatusCode::NO_CONTENT
        }
        let app = axum::Router::new()
            .route("/", axum::routing::post(take))
            .layer(axum::extract::DefaultBodyLimit::max(64));
        let cases = [
            ("text/plain", r#"{"files":[]}"#.to_owned(), 415),
            ("application/json", "x".repeat(65), 413),
            ("application/json", r#"{"files":[{}]}"#.to_owned(), 400),
            ("application/json", r#"{"files":[]}"#.to_owned(), 204),
        ];
        for (content_type, body, want) in cases {
            let request = axum::http::Request::post("/")
                .header(header::CONTENT_TYPE, content_type)
                .body(axum::body::Body::from(body))
                .unwrap();
            let response = app.clone().oneshot(request).await.unwrap();
            assert_eq!(response.status().as_u16(), want, "{content_type}");
            if want >= 400 {
                assert!(JsonBodyRejection::STATUSES.contains(&response.status()));
                assert_eq!(
                    response.headers()[header::CONTENT_TYPE],
                    PROBLEM_CONTENT_TYPE
                );
            }
        }
    }

    #[test]
    fn failure_types_answer_with_their_kinds_statuses() {
        let statuses: Vec<u16> = StoreFailure::STATUSES
            .iter()
            .map(StatusCode::as_u16)
            .collect();
        assert_eq!(statuses, [503, 507]);
        // Widening keeps the kind, hence the status and the detail.
        let wide: ApiError = StoreFailure::InsufficientStorage("full".to_owned()).into();
        assert_eq!(wide.status(), StatusCode::INSUFFICIENT_STORAGE);
        assert_eq!(wide.to_string(), "full");
        let narrow: JsonBodyRejection = invalid::<InvalidRequest>("/a", "bad").into();
        assert_eq!(narrow.to_string(), "the request is invalid");
        assert_eq!(narrow.into_response().status(), StatusCode::BAD_REQUEST);
        // Every kind of ApiError is a distinct variant with its own status.
        assert_eq!(ApiError::STATUSES.len(), 10);
        assert_eq!(
            ApiError::Forbidden(String::new()).into_response().status(),
            StatusCode::FORBIDDEN
        );
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
