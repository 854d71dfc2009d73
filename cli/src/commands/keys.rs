//! `revaer keys issue|ls|rotate|revoke`.

use std::io::Write as _;
use std::path::Path;

use reqwest::Method;
use revaer_api_models::{KeyCreated, KeyIssueRequest, KeyRotateRequest, KeyScope, KeySummary};
use serde::Serialize;

use super::Ctx;
use crate::cli::KeysCommand;
use crate::error::CliError;
use crate::output::{Cell, Column, Format, render_fields, render_table};
use crate::secret::mask;
use crate::units::format_time;

/// `keys issue|rotate --output json`: the key, and its secret unless it
/// went to `--save-to`.
#[derive(Debug, Serialize)]
pub struct KeyOutput<'a> {
    #[serde(flatten)]
    pub summary: &'a KeySummary,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub saved_to: Option<String>,
}

/// `keys revoke --output json`.
#[derive(Debug, Serialize)]
pub struct Revoked<'a> {
    pub id: &'a str,
    pub revoked: bool,
}

fn scope_name(scope: KeyScope) -> &'static str {
    match scope {
        KeyScope::Read => "read",
        KeyScope::Admin => "admin",
    }
}

/// Creates the file for a new secret before the key exists, so that a
/// path that cannot be written never costs a secret.
fn create_secret_file(path: &Path) -> Result<std::fs::File, CliError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| CliError::usage(format!("cannot create {}: {e}", path.display())))
}

async fn issued(
    ctx: &Ctx,
    method_path: String,
    body: serde_json::Value,
    save_to: Option<&Path>,
) -> Result<(), CliError> {
    let mut file = match save_to {
        Some(p) => Some(create_secret_file(p)?),
        None => None,
    };
    let created: Result<KeyCreated, CliError> =
        ctx.api.call(Method::POST, &method_path, &body).await;
    let created = match created {
        Ok(c) => c,
        Err(e) => {
            if let Some(p) = save_to {
                drop(file.take());
                let _ = std::fs::remove_file(p);
            }
            return Err(e);
        }
    };
    let written_to = if let (Some(f), Some(p)) = (file.as_mut(), save_to) {
        if let Err(e) = f.write_all(format!("{}\n", created.key).as_bytes()) {
            // The secret must not be lost: fall back to printing it.
            ctx.out
                .note(&format!("revaer: writing {} failed: {e}", p.display()))?;
            None
        } else {
            Some(p.display().to_string())
        }
    } else {
        None
    };
    let key = written_to.is_none().then_some(created.key.as_str());
    let out = &ctx.out;
    if out.format == Format::Json {
        return out.json(&KeyOutput {
            summary: &created.summary,
            key,
            saved_to: written_to,
        });
    }
    let s = &created.summary;
    let mut fields = vec![
        ("id", s.id.clone()),
        ("name", s.name.clone()),
        ("scope", scope_name(s.scope).to_owned()),
        (
            "rate",
            s.rate_per_minute
                .map_or_else(|| "default".to_owned(), |r| format!("{r}/min")),
        ),
    ];
    match (&written_to, key) {
        (Some(p), _) => fields.push(("saved to", format!("{p} ({})", mask(&created.key)))),
        (None, Some(k)) => fields.push(("key", k.to_owned())),
        (None, None) => {}
    }
    out.text(&render_fields(out, &fields))?;
    if key.is_some() {
        out.note("The key is shown only this once: store it now.")?;
    }
    Ok(())
}

/// `revaer keys ...`.
pub async fn keys(ctx: &Ctx, command: &KeysCommand) -> Result<(), CliError> {
    match command {
        KeysCommand::Issue(args) => {
            let body = KeyIssueRequest {
                name: args.name.clone(),
                scope: args.scope,
                rate_per_minute: args.rate_per_minute,
            };
            let body = crate::client::to_value(&body)?;
            issued(ctx, "/v1/keys".to_owned(), body, args.save_to.as_deref()).await
        }
        KeysCommand::Rotate(args) => {
            let body = KeyRotateRequest {
                grace_seconds: args.grace.as_secs(),
            };
            let body = crate::client::to_value(&body)?;
            issued(
                ctx,
                format!("/v1/keys/{}/rotate", args.id),
                body,
                args.save_to.as_deref(),
            )
            .await
        }
        KeysCommand::Ls => {
            let keys: Vec<KeySummary> = ctx.api.get("/v1/keys", &[]).await?;
            let out = &ctx.out;
            if out.format == Format::Json {
                return out.json(&keys);
            }
            let columns = [
                Column::left("ID", 9),
                Column::left("NAME", 8).flexible(),
                Column::left("SCOPE", 7),
                Column::right("RATE/MIN", 4),
                Column::left("CREATED", 5),
                Column::left("REVOKED", 6),
            ];
            let rows: Vec<Vec<Cell>> = keys
                .iter()
                .map(|k| {
                    vec![
                        Cell::from(k.id.as_str()),
                        Cell::from(k.name.as_str()),
                        Cell::from(scope_name(k.scope)),
                        Cell::from(
                            k.rate_per_minute
                                .map_or_else(|| "default".to_owned(), |r| r.to_string()),
                        ),
                        Cell::from(format_time(k.created_at)),
                        Cell::from(k.revoked_at.map_or_else(String::new, format_time)),
                    ]
                })
                .collect();
            out.text(&render_table(out, &columns, &rows))
        }
        KeysCommand::Revoke { id } => {
            ctx.api
                .call_no_content(Method::DELETE, &format!("/v1/keys/{id}"), None)
                .await?;
            if ctx.out.format == Format::Json {
                ctx.out.json(&Revoked { id, revoked: true })
            } else {
                ctx.out.text(&format!("Revoked key {id}\n"))
            }
        }
    }
}
