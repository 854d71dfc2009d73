//! `/v1/keys`: issue, list, rotate and revoke API keys (admin scope; the
//! auth middleware enforces it for the writing routes, and these handlers
//! for listing too). Issuing, rotating and revoking are logged as
//! `key_issued` / `key_revoked` events (never with the secret).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use revaer_api_models::events::Event;
use revaer_api_models::{KeyCreated, KeyIssueRequest, KeyRotateRequest, KeyScope, KeySummary};

use crate::AppState;
use crate::problem::{ValidJson, failures, invalid, store_write};
use crate::store::StoreError;
use crate::store::keys::{IssuedKey, KeyInfo, Keys, Scope};

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

/// The `key_issued` event for a new or rotated key.
fn issued_event(info: &KeyInfo, rotated: bool, by: &KeyInfo) -> Event {
    let summary = summary(info);
    Event::KeyIssued {
        key_id: summary.id,
        name: summary.name,
        scope: summary.scope,
        rotated,
        by: by.id.clone(),
    }
}

fn created(issued: &IssuedKey) -> KeyCreated {
    KeyCreated {
        summary: summary(&issued.info),
        key: issued.secret.expose().to_owned(),
    }
}

failures! {
    /// A failed key-store write: refused (400), the state directory full
    /// (507), or the store unavailable (503); nothing was stored.
    pub enum KeyWriteFailure { BadRequest, Unavailable, InsufficientStorage, Internal }
        from { crate::problem::StoreFailure }

    /// A key-store read that failed (the store unavailable).
    pub enum KeyReadFailure { Unavailable, Internal }

    /// Why `POST /v1/keys` fails.
    pub enum IssueError { Forbidden, Invalid, BadRequest, Unavailable, InsufficientStorage, Internal }
        from { KeyWriteFailure }

    /// Why `GET /v1/keys` fails.
    pub enum ListError { Forbidden, Unavailable, Internal } from { KeyReadFailure }

    /// Why `POST /v1/keys/{id}/rotate` fails.
    pub enum RotateError {
        Forbidden,
        Invalid,
        BadRequest,
        NotFound,
        Unavailable,
        InsufficientStorage,
        Internal,
    } from { KeyWriteFailure }

    /// Why `DELETE /v1/keys/{id}` fails.
    pub enum RevokeError { Forbidden, BadRequest, NotFound, Unavailable, InsufficientStorage, Internal }
        from { KeyWriteFailure }
}

/// Runs a key-store call on the blocking pool: SQLite may wait on a slow
/// disk, and a runtime thread must never. A panicked call is a bug (500).
async fn on_key_store<T: Send + 'static>(
    state: &Arc<AppState>,
    call: impl FnOnce(&Keys) -> Result<T, StoreError> + Send + 'static,
) -> Result<Result<T, StoreError>, String> {
    let keys = Arc::clone(&state.keys);
    tokio::task::spawn_blocking(move || call(&keys))
        .await
        .map_err(|e| format!("key store task failed: {e}"))
}

/// A key-store write: `Invalid` is the caller's mistake (400), the rest
/// is the store's (507 or 503).
async fn write_keys<T: Send + 'static>(
    state: &Arc<AppState>,
    call: impl FnOnce(&Keys) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, KeyWriteFailure> {
    match on_key_store(state, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(StoreError::Invalid(message))) => Err(KeyWriteFailure::BadRequest(message)),
        Ok(Err(e)) => Err(store_write(&e, "the key store failed").into()),
        Err(e) => Err(KeyWriteFailure::Internal(e)),
    }
}

/// A key-store read: any failure is the store's (503).
async fn read_keys<T: Send + 'static>(
    state: &Arc<AppState>,
    call: impl FnOnce(&Keys) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, KeyReadFailure> {
    match on_key_store(state, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "the key store cannot be read");
            Err(KeyReadFailure::Unavailable(
                "the key store cannot be read; retry shortly".to_owned(),
            ))
        }
        Err(e) => Err(KeyReadFailure::Internal(e)),
    }
}

/// Refuses a non-admin caller (403): listing keys is a GET, which the
/// auth middleware lets read keys do.
fn require_admin<E: crate::problem::Carries<crate::problem::kind::Forbidden>>(
    caller: &KeyInfo,
) -> Result<(), E> {
    if caller.scope == Scope::Admin {
        Ok(())
    } else {
        Err(E::carry("key management needs an admin key".to_owned()))
    }
}

/// `POST /v1/keys`.
#[utoipa::path(
    post,
    path = "/v1/keys",
    tag = "keys",
    operation_id = "issue_key",
    summary = "Issue an API key (shown once)",
    request_body(content = KeyIssueRequest, example = json!({"name": "sonarr", "scope": "read", "rate_per_minute": 600})),
    responses(
        (status = 201, description = "Issued; `key` is the secret, shown only now", body = KeyCreated),
        (status = 400, description = "Invalid request", body = revaer_api_models::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid key", body = revaer_api_models::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = revaer_api_models::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = revaer_api_models::Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body larger than 64 KiB", body = revaer_api_models::Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = revaer_api_models::Problem, content_type = "application/problem+json"),
        (status = 503, description = "The key store cannot be written now; nothing was stored; see `Retry-After`", body = revaer_api_models::Problem, content_type = "application/problem+json"),
        (status = 507, description = "The state directory is full; nothing was stored", body = revaer_api_models::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn issue(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<KeyInfo>,
    ValidJson(request): ValidJson<KeyIssueRequest>,
) -> Result<Response, IssueError> {
    require_admin::<IssueError>(&caller)?;
    let name_length = request.name.trim().len();
    if name_length == 0 || name_length > 100 {
        return Err(invalid("/name", "a key name is 1 to 100 characters"));
    }
    if request.rate_per_minute == Some(0) {
        return Err(invalid("/rate_per_minute", "must be at least 1"));
    }
    let scope = match request.scope {
        KeyScope::Read => Scope::Read,
        KeyScope::Admin => Scope::Admin,
    };
    let (name, rate) = (request.name.clone(), request.rate_per_minute);
    let issued = write_keys(&state, move |keys| keys.issue(&name, scope, rate)).await?;
    tracing::info!(key_id = %issued.info.id, by = %caller.id, "API key issued");
    state
        .events
        .append(issued_event(&issued.info, false, &caller));
    Ok((StatusCode::CREATED, Json(created(&issued))).into_response())
}

/// `GET /v1/keys`.
#[utoipa::path(
    get,
    path = "/v1/keys",
    tag = "keys",
    operation_id = "list_keys",
    summary = "List API keys (never their secrets)",
    responses(
        (status = 200, description = "Every key, revoked ones included", body = Vec<KeySummary>),
        (status = 401, description = "Missing or invalid key", body = revaer_api_models::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = revaer_api_models::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = revaer_api_models::Problem, content_type = "application/problem+json"),
        (status = 503, description = "The key store cannot be read now; see `Retry-After`", body = revaer_api_models::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<KeyInfo>,
) -> Result<Json<Vec<KeySummary>>, ListError> {
    require_admin::<ListError>(&caller)?;
    let keys = read_keys(&state, Keys::list).await?;
    Ok(Json(keys.iter().map(summary).collect()))
}

/// `POST /v1/keys/{id}/rotate`.
#[utoipa::path(
    post,
    path = "/v1/keys/{id}/rotate",
    tag = "keys",
    operation_id = "rotate_key",
    summary = "New secret for a key; the old one works for a grace period",
    params(("id" = String, Path, description = "Key id")),
    request_body(content = KeyRotateRequest, example = json!({"grace_seconds": 3600})),
    responses(
        (status = 200, description = "Rotated; `key` is the new secret", body = KeyCreated),
        (status = 400, description = "Invalid request", body = revaer_api_models::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid key", body = revaer_api_models::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = revaer_api_models::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = revaer_api_models::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such active key", body = revaer_api_models::Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body larger than 64 KiB", body = revaer_api_models::Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = revaer_api_models::Problem, content_type = "application/problem+json"),
        (status = 503, description = "The key store cannot be written now; nothing was stored; see `Retry-After`", body = revaer_api_models::Problem, content_type = "application/problem+json"),
        (status = 507, description = "The state directory is full; nothing was stored", body = revaer_api_models::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn rotate(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<KeyInfo>,
    Path(id): Path<String>,
    ValidJson(request): ValidJson<KeyRotateRequest>,
) -> Result<Json<KeyCreated>, RotateError> {
    require_admin::<RotateError>(&caller)?;
    if request.grace_seconds > MAX_GRACE_SECONDS {
        return Err(invalid(
            "/grace_seconds",
            format!("must be at most {MAX_GRACE_SECONDS}"),
        ));
    }
    let (key_id, grace) = (id.clone(), Duration::from_secs(request.grace_seconds));
    let Some(issued) = write_keys(&state, move |keys| keys.rotate(&key_id, grace)).await? else {
        return Err(RotateError::NotFound(format!("no active key {id}")));
    };
    tracing::info!(key_id = %id, by = %caller.id, "API key rotated");
    state
        .events
        .append(issued_event(&issued.info, true, &caller));
    Ok(Json(created(&issued)))
}

/// `DELETE /v1/keys/{id}`: revoked keys are refused from the response on.
#[utoipa::path(
    delete,
    path = "/v1/keys/{id}",
    tag = "keys",
    operation_id = "revoke_key",
    summary = "Revoke a key at once",
    params(("id" = String, Path, description = "Key id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 400, description = "Malformed id (not UTF-8), or the key store refused the change", body = revaer_api_models::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid key", body = revaer_api_models::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = revaer_api_models::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = revaer_api_models::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such active key", body = revaer_api_models::Problem, content_type = "application/problem+json"),
        (status = 503, description = "The key store cannot be written now; nothing was stored; see `Retry-After`", body = revaer_api_models::Problem, content_type = "application/problem+json"),
        (status = 507, description = "The state directory is full; nothing was stored", body = revaer_api_models::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn revoke(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<KeyInfo>,
    Path(id): Path<String>,
) -> Result<StatusCode, RevokeError> {
    require_admin::<RevokeError>(&caller)?;
    let key_id = id.clone();
    if !write_keys(&state, move |keys| keys.revoke(&key_id)).await? {
        return Err(RevokeError::NotFound(format!("no active key {id}")));
    }
    tracing::info!(key_id = %id, by = %caller.id, "API key revoked");
    state.events.append(Event::KeyRevoked {
        key_id: id,
        by: caller.id.clone(),
    });
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::http::{Method, StatusCode};
    use revaer_api_models::events::{Event, EventKind};
    use serde_json::json;

    use crate::test_harness::Harness;

    #[tokio::test]
    async fn issuing_rotating_and_revoking_are_logged_without_the_secret() {
        let h = Harness::start().await;
        let mut live = h.state.events.subscribe();
        let (status, _, created) = h
            .admin(
                Method::POST,
                "/v1/keys",
                &json!({"name": "ci", "scope": "read"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        let id = created["id"].as_str().unwrap().to_owned();
        let (status, _, rotated) = h
            .admin(
                Method::POST,
                &format!("/v1/keys/{id}/rotate"),
                &json!({"grace_seconds": 0}),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let (status, _, _) = h
            .admin(Method::DELETE, &format!("/v1/keys/{id}"), &json!(null))
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);

        let mut logged = Vec::new();
        while logged.len() < 3 {
            let e = tokio::time::timeout(Duration::from_secs(5), live.recv())
                .await
                .expect("key events within 5 s")
                .unwrap();
            if matches!(e.event.kind(), EventKind::KeyIssued | EventKind::KeyRevoked) {
                for secret in [&created["key"], &rotated["key"]] {
                    assert!(!e.data().contains(secret.as_str().unwrap()));
                }
                logged.push(e.event.clone());
            }
        }
        let by = match &logged[0] {
            Event::KeyIssued { by, .. } => by.clone(),
            other => panic!("{other:?}"),
        };
        assert_ne!(by, id);
        let issued = |rotated| Event::KeyIssued {
            key_id: id.clone(),
            name: "ci".to_owned(),
            scope: revaer_api_models::KeyScope::Read,
            rotated,
            by: by.clone(),
        };
        assert_eq!(
            logged,
            vec![
                issued(false),
                issued(true),
                Event::KeyRevoked {
                    key_id: id.clone(),
                    by: by.clone()
                }
            ]
        );
    }
}
