//! `revaer health`: `/health/full`, printed whether ok (200) or degraded
//! (503, exit 5).

use reqwest::Method;
use revaer_api_models::{HealthFull, HealthStatus};

use super::Ctx;
use crate::client::{Body, transport};
use crate::error::CliError;
use crate::output::{Cell, Color, Column, Format, Out, render_fields, render_table};

/// The health view for people.
#[must_use]
pub fn health_text(out: &Out, h: &HealthFull) -> String {
    let status = match h.status {
        HealthStatus::Ok => out.paint("ok", Color::Green),
        HealthStatus::Degraded => {
            out.paint(&format!("degraded ({})", h.degraded.join(", ")), Color::Red)
        }
    };
    let config = format!(
        "revision {}{}{}",
        h.config.revision,
        h.config
            .watch_latency_ms
            .map_or(String::new(), |ms| format!(", watch latency {ms} ms")),
        h.config
            .error
            .as_deref()
            .map_or(String::new(), |e| format!(", error: {e}"))
    );
    let fields = [
        ("status", status),
        (
            "build",
            format!("{} ({})", h.build.version, h.build.revision),
        ),
        ("config", config),
        (
            "store",
            h.store
                .error
                .as_deref()
                .map_or_else(|| "ok".to_owned(), |e| format!("failing: {e}")),
        ),
        (
            "events",
            h.event_log_head
                .map_or_else(|| "none yet".to_owned(), |id| format!("head #{id}")),
        ),
    ];
    let mut text = render_fields(out, &fields);
    text.push('\n');
    let columns = [
        Column::left("WORKER", 9),
        Column::left("UP", 8),
        Column::left("STATE", 7),
        Column::right("PID", 5),
        Column::right("RESTARTS", 6),
        Column::right("CONFIG", 3),
        Column::left("SANDBOX", 2),
        Column::left("REASON", 4).flexible(),
    ];
    let rows: Vec<Vec<Cell>> = h
        .workers
        .iter()
        .map(|(name, w)| {
            let sandbox = w.sandbox.as_ref().map_or_else(String::new, |s| {
                format!(
                    "landlock {}, seccomp {}",
                    s.landlock_status,
                    if s.seccomp { "on" } else { "off" }
                )
            });
            vec![
                Cell::from(name.as_str()),
                Cell::colored(
                    if w.up { "yes" } else { "no" },
                    Some(if w.up { Color::Green } else { Color::Red }),
                ),
                Cell::from(w.state.as_str()),
                Cell::from(w.pid.map_or_else(String::new, |p| p.to_string())),
                Cell::from(w.restarts.to_string()),
                Cell::from(
                    w.config_revision
                        .map_or_else(String::new, |r| r.to_string()),
                ),
                Cell::from(sandbox),
                Cell::from(w.reason.clone().unwrap_or_default()),
            ]
        })
        .collect();
    text.push_str(&render_table(out, &columns, &rows));
    text
}

/// `revaer health`.
pub async fn health(ctx: &Ctx) -> Result<(), CliError> {
    let path = "/health/full";
    let response = ctx
        .api
        .send_raw(Method::GET, path, &[], Body::None, &[], false)
        .await?;
    let status = response.status();
    if !matches!(status.as_u16(), 200 | 503) {
        return Err(ctx.api.error_from(response).await);
    }
    let bytes = response
        .bytes()
        .await
        .map_err(|e| transport(&ctx.api.shown_base(), &e))?;
    match serde_json::from_slice::<HealthFull>(&bytes) {
        Ok(h) => show(ctx, &h),
        // A 503 without the document (a proxy, say) is a plain error.
        Err(_) if status.as_u16() == 503 => Err(ctx.api.error_from_body(status, None, &bytes)),
        Err(e) => Err(CliError::Protocol {
            url: format!("{}{path}", ctx.api.shown_base()),
            message: format!("not the documented JSON: {e}"),
        }),
    }
}

fn show(ctx: &Ctx, h: &HealthFull) -> Result<(), CliError> {
    if ctx.out.format == Format::Json {
        ctx.out.json(h)?;
    } else {
        ctx.out.text(&health_text(&ctx.out, h))?;
    }
    match h.status {
        HealthStatus::Ok => Ok(()),
        HealthStatus::Degraded => Err(CliError::Degraded(h.degraded.clone())),
    }
}
