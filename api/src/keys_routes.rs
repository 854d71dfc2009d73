//! `/v1/keys`: issue, list, rotate and revoke API keys (admin scope; the
//! auth middleware enforces it for the writing routes, and these handlers
//! for listing too).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use revaer_api_models::{KeyCreated, KeyIssueRequest, KeyRotateRequest, KeyScope, KeySummary};

use crate::AppState;
use crate::problem::{ApiError, problem_response};
use crate::store::StoreError;
use crate::store::keys::{IssuedKey, KeyInfo, Scope};

/// Longest rotation grace period: one week.
pub const MAX_GRACE_SECONDS: u64 = 7 * 24 * 3600;

fn summary(info: &KeyInfo) -> KeySummary {
    KeySummary {
        id: info.id.clone(),
        name: info.name.clone(),
        scope: match info.scope {
            Scope::Read => KeyScope::Read,
            Scope::Admin => KeyScope::Admin,
        },
        rate_per_minute: info.rate_per_minute,
        created_at: info.created_at,
        revoked_at: info.revoked_at,
    }
}

fn created(issued: &IssuedKey) -> KeyCreated {
    KeyCreated {
        summary: summary(&issued.info),
        key: issued.secret.expose().to_owned(),
    }
}

fn store_error(e: &StoreError) -> ApiError {
    match e {
        StoreError::Invalid(message) => ApiError::BadRequest(message.clone()),
        other => {
            tracing::error!(error = %other, "key store failure");
            ApiError::Unavailable("the key store is unavailable".to_owned())
        }
    }
}

/// The 403 answer for a non-admin caller, if it is one.
fn forbid_unless_admin(caller: &KeyInfo) -> Option<Response> {
    (caller.scope != Scope::Admin).then(|| {
        problem_response(
            StatusCode::FORBIDDEN,
            Some("key management needs an admin key".to_owned()),
        )
    })
}

/// `POST /v1/keys`.
pub async fn issue(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<KeyInfo>,
    Json(request): Json<KeyIssueRequest>,
) -> Response {
    if let Some(denied) = forbid_unless_admin(&caller) {
        return denied;
    }
    if request.rate_per_minute == Some(0) {
        return ApiError::BadRequest("rate_per_minute must be at least 1".to_owned())
            .into_response();
    }
    let scope = match request.scope {
        KeyScope::Read => Scope::Read,
        KeyScope::Admin => Scope::Admin,
    };
    match state
        .keys
        .issue(&request.name, scope, request.rate_per_minute)
    {
        Ok(issued) => {
            tracing::info!(key_id = %issued.info.id, by = %caller.id, "API key issued");
            (StatusCode::CREATED, Json(created(&issued))).into_response()
        }
        Err(e) => store_error(&e).into_response(),
    }
}

/// `GET /v1/keys`.
pub async fn list(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<KeyInfo>,
) -> Response {
    if let Some(denied) = forbid_unless_admin(&caller) {
        return denied;
    }
    match state.keys.list() {
        Ok(keys) => Json(keys.iter().map(summary).collect::<Vec<_>>()).into_response(),
        Err(e) => store_error(&e).into_response(),
    }
}

/// `POST /v1/keys/{id}/rotate`.
pub async fn rotate(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<KeyInfo>,
    Path(id): Path<String>,
    Json(request): Json<KeyRotateRequest>,
) -> Response {
    if let Some(denied) = forbid_unless_admin(&caller) {
        return denied;
    }
    if request.grace_seconds > MAX_GRACE_SECONDS {
        return ApiError::BadRequest(format!("grace_seconds must be at most {MAX_GRACE_SECONDS}"))
            .into_response();
    }
    match state
        .keys
        .rotate(&id, Duration::from_secs(request.grace_seconds))
    {
        Ok(Some(issued)) => {
            tracing::info!(key_id = %id, by = %caller.id, "API key rotated");
            Json(created(&issued)).into_response()
        }
        Ok(None) => ApiError::NotFound(format!("no active key {id}")).into_response(),
        Err(e) => store_error(&e).into_response(),
    }
}

/// `DELETE /v1/keys/{id}`: revoked keys are refused from the response on.
pub async fn revoke(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<KeyInfo>,
    Path(id): Path<String>,
) -> Response {
    if let Some(denied) = forbid_unless_admin(&caller) {
        return denied;
    }
    match state.keys.revoke(&id) {
        Ok(true) => {
            tracing::info!(key_id = %id, by = %caller.id, "API key revoked");
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(false) => ApiError::NotFound(format!("no active key {id}")).into_response(),
        Err(e) => store_error(&e).into_response(),
    }
}
