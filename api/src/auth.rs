//! API-key authentication and scope checks for every route.
//!
//! A key comes in `Authorization: Bearer <key>` or `x-revaer-api-key`.
//! `GET /health` needs none (liveness). `GET /health/full` needs none when
//! the client connects from loopback, so a container health check works
//! without a secret; from anywhere else it needs a key like every other
//! route. `read` keys may only use GET/HEAD; `admin` keys may do anything.
//! Failures are Problem+JSON: 401 (missing/invalid key, with
//! `WWW-Authenticate: Bearer`), 403 (scope) or 429 with `Retry-After` (the
//! key's token bucket is empty, see [`crate::rate_limit`]). Keys are never
//! logged.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use crate::AppState;
use crate::problem::problem_response;
use crate::store::keys::{KeyInfo, Scope};

/// Header alternative to `Authorization: Bearer`.
pub const KEY_HEADER: &str = "x-revaer-api-key";

fn presented_key(request: &Request) -> Option<&str> {
    let headers = request.headers();
    if let Some(bearer) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        return Some(bearer.trim());
    }
    headers
        .get(KEY_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

fn unauthorized(detail: &str) -> Response {
    let mut response = problem_response(StatusCode::UNAUTHORIZED, Some(detail.to_owned()));
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// What [`require_key`] asks of a request, by method and path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No key (`GET /health`, liveness).
    Open,
    /// No key from a loopback peer, a key from anywhere else (`GET
    /// /health/full`, so container health checks need no secret).
    LoopbackOrKey,
    /// A key of any scope (GET and HEAD).
    AnyKey,
    /// An admin key (every other method).
    AdminKey,
}

impl Access {
    /// The access a request to `path` with `method` needs (a route
    /// template such as `/v1/torrents/{id}` gives the same answer as the
    /// paths it matches).
    #[must_use]
    pub fn of(method: &Method, path: &str) -> Self {
        let reads = matches!(*method, Method::GET | Method::HEAD);
        match path {
            "/health" => Access::Open,
            "/health/full" if reads => Access::LoopbackOrKey,
            _ if reads => Access::AnyKey,
            _ => Access::AdminKey,
        }
    }

    /// Every status [`require_key`] can refuse such a request with: 401
    /// without a valid key, 403 for a read key where admin is needed, 429
    /// when the key's bucket is empty.
    #[must_use]
    pub const fn refusals(self) -> &'static [StatusCode] {
        match self {
            Access::Open => &[],
            Access::LoopbackOrKey | Access::AnyKey => {
                &[StatusCode::UNAUTHORIZED, StatusCode::TOO_MANY_REQUESTS]
            }
            Access::AdminKey => &[
                StatusCode::UNAUTHORIZED,
                StatusCode::FORBIDDEN,
                StatusCode::TOO_MANY_REQUESTS,
            ],
        }
    }
}

/// The middleware. Puts the caller's [`KeyInfo`] into the request
/// extensions for handlers that need it.
pub async fn require_key(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let access = Access::of(request.method(), request.uri().path());
    if access == Access::Open {
        return next.run(request).await;
    }
    let from_loopback = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .is_some_and(|ConnectInfo(peer)| peer.ip().is_loopback());
    if access == Access::LoopbackOrKey && from_loopback && presented_key(&request).is_none() {
        return next.run(request).await;
    }
    let Some(presented) = presented_key(&request) else {
        return unauthorized(
            "an API key is required (Authorization: Bearer <key> or x-revaer-api-key)",
        );
    };
    let Some(key) = state.keys.authenticate(presented) else {
        return unauthorized("the API key is not valid (unknown, revoked or expired)");
    };
    if key.scope == Scope::Read && access == Access::AdminKey {
        return problem_response(
            StatusCode::FORBIDDEN,
            Some(format!(
                "key {} has the read scope; this needs admin",
                key.id
            )),
        );
    }
    if let Err(wait) = state.rate_limits.check(&key) {
        let retry_after = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        tracing::debug!(key_id = %key.id, retry_after, "rate limited");
        if state.rate_limits.take_announcement(&key.id) {
            state
                .events
                .append(revaer_api_models::events::Event::RateLimited {
                    key_id: key.id.clone(),
                });
        }
        let mut response = problem_response(
            StatusCode::TOO_MANY_REQUESTS,
            Some(format!(
                "key {} is over its rate limit; retry in {retry_after} s",
                key.id
            )),
        );
        if let Ok(value) = HeaderValue::from_str(&retry_after.max(1).to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return response;
    }
    request.extensions_mut().insert::<KeyInfo>(key);
    next.run(request).await
}
