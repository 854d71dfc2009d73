//! The OpenAPI 3.1 document of the public API, assembled from the
//! `#[utoipa::path]` annotations on the handlers and the `ToSchema` derives
//! of `revaer-api-models`. `just api-export` writes it to
//! `docs/api/openapi.json`; a test fails when that file is stale. The API
//! serves it at `/docs/openapi.json` and a readable page at `/docs`.
//!
//! Every operation lists every status its route can answer with: its own
//! (handler and auth) in its annotation, checked against the code by
//! `crate::contract`'s tests, and the answers any route can get
//! ([`crate::contract::UNIVERSAL`]) added here where an annotation does not
//! already say more.

use std::collections::btree_map::Entry;

use revaer_api_models::PROBLEM_CONTENT_TYPE;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

/// The document.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Revaer API",
        description = "HTTP control plane of Revaer, a headless BitTorrent daemon.\n\nEvery route except `GET /health` needs an API key, sent as `Authorization: Bearer <key>` or `x-revaer-api-key: <key>`; `GET /health/full` is also open to loopback clients. `read` keys may only GET; `admin` keys may do everything. Each key has a token-bucket rate limit (429 with `Retry-After`). Every error is an RFC 9457 `application/problem+json` document; validation failures list `invalid_params` with JSON pointers.",
        license(name = "Apache-2.0 OR MIT"),
    ),
    paths(
        crate::routes::liveness,
        crate::routes::readiness,
        crate::metrics::render,
        crate::torrents_routes::list,
        crate::torrents_routes::add,
        crate::torrents_routes::detail,
        crate::torrents_routes::peers,
        crate::torrents_routes::patch,
        crate::torrents_routes::select,
        crate::torrents_routes::action,
        crate::sse::events,
        crate::keys_routes::issue,
        crate::keys_routes::list,
        crate::keys_routes::rotate,
        crate::keys_routes::revoke,
    ),
    modifiers(&Security, &UniversalAnswers),
    security(("bearer" = []), ("api_key" = [])),
    tags(
        (name = "torrents", description = "Add, list, inspect and steer torrents"),
        (name = "events", description = "Server-Sent Events from the durable event log"),
        (name = "keys", description = "API key lifecycle (admin)"),
        (name = "operations", description = "Health and metrics"),
    )
)]
pub struct ApiDoc;

#[derive(Debug)]
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("rvk_<64 hex>")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("x-revaer-api-key"))),
        );
    }
}

/// Adds [`crate::contract::UNIVERSAL`] to every operation: as a response
/// of its own where the operation does not document the status, and as a
/// problem content type of the documented response where that has none
/// (`/health/full`'s 503 is a health document; the connection cap's is a
/// problem).
#[derive(Debug)]
struct UniversalAnswers;

impl UniversalAnswers {
    fn add(responses: &mut utoipa::openapi::Responses, answer: &crate::contract::Universal) {
        let problem = || {
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build()
        };
        match responses.responses.entry(answer.status.as_str().to_owned()) {
            Entry::Vacant(slot) => {
                let response = ResponseBuilder::new().description(answer.description);
                let response = if answer.problem {
                    response.content(PROBLEM_CONTENT_TYPE, problem())
                } else {
                    response
                };
                slot.insert(response.build().into());
            }
            Entry::Occupied(mut slot) => {
                if let RefOr::T(response) = slot.get_mut()
                    && answer.problem
                    && !response.content.contains_key(PROBLEM_CONTENT_TYPE)
                {
                    response
                        .content
                        .insert(PROBLEM_CONTENT_TYPE.to_owned(), problem());
                    response.description = format!(
                        "{}. As a problem document: {}",
                        response.description.trim_end_matches('.'),
                        answer.description
                    );
                }
            }
        }
    }
}

impl Modify for UniversalAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.options,
                &mut item.head,
                &mut item.patch,
                &mut item.trace,
            ];
            for operation in operations.into_iter().flatten() {
                for answer in crate::contract::UNIVERSAL {
                    Self::add(&mut operation.responses, answer);
                }
            }
        }
    }
}

/// The document as pretty JSON with a trailing newline (the exported
/// file's exact bytes).
#[must_use]
pub fn json() -> String {
    let mut doc = ApiDoc::openapi();
    env!("CARGO_PKG_VERSION").clone_into(&mut doc.info.version);
    let mut text = doc
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    text.push('\n');
    text
}

/// A self-contained HTML page describing every operation (no scripts, no
/// external assets), rendered from the same document.
#[must_use]
pub fn html() -> String {
    let doc: serde_json::Value = serde_json::from_str(&json()).unwrap_or_default();
    let mut out = String::from(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Revaer API</title>\
         <style>body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em;line-height:1.4}\
         code,pre{background:#f4f4f4;padding:0 .2em}h3{margin-bottom:.2em}.m{font-weight:bold;text-transform:uppercase}\
         table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left}</style></head><body>",
    );
    let info = &doc["info"];
    push_text(
        &mut out,
        "<h1>",
        info["title"].as_str().unwrap_or("Revaer API"),
        "</h1>",
    );
    push_text(
        &mut out,
        "<p>Version ",
        info["version"].as_str().unwrap_or(""),
        "</p>",
    );
    for paragraph in info["description"].as_str().unwrap_or("").split("\n\n") {
        push_text(&mut out, "<p>", paragraph, "</p>");
    }
    out.push_str("<p>Machine-readable: <a href=\"/docs/openapi.json\">/docs/openapi.json</a> (OpenAPI 3.1).</p>");
    if let Some(paths) = doc["paths"].as_object() {
        for (path, operations) in paths {
            let Some(operations) = operations.as_object() else {
                continue;
            };
            for (method, op) in operations {
                out.push_str("<h3><span class=\"m\">");
                out.push_str(&escape(method));
                out.push_str("</span> <code>");
                out.push_str(&escape(path));
                out.push_str("</code></h3>");
                push_text(
                    &mut out,
                    "<p><b>",
                    op["summary"].as_str().unwrap_or(""),
                    "</b></p>",
                );
                push_text(
                    &mut out,
                    "<p>",
                    op["description"].as_str().unwrap_or(""),
                    "</p>",
                );
                if let Some(params) = op["parameters"].as_array() {
                    out.push_str("<table><tr><th>parameter</th><th>in</th><th>meaning</th></tr>");
                    for p in params {
                        out.push_str("<tr><td><code>");
                        out.push_str(&escape(p["name"].as_str().unwrap_or("")));
                        out.push_str("</code></td><td>");
                        out.push_str(&escape(p["in"].as_str().unwrap_or("")));
                        out.push_str("</td><td>");
                        out.push_str(&escape(p["description"].as_str().unwrap_or("")));
                        out.push_str("</td></tr>");
                    }
                    out.push_str("</table>");
                }
                if let Some(responses) = op["responses"].as_object() {
                    out.push_str("<ul>");
                    for (status, response) in responses {
                        out.push_str("<li><code>");
                        out.push_str(&escape(status));
                        out.push_str("</code> ");
                        out.push_str(&escape(response["description"].as_str().unwrap_or("")));
                        out.push_str("</li>");
                    }
                    out.push_str("</ul>");
                }
            }
        }
    }
    out.push_str("</body></html>\n");
    out
}

fn push_text(out: &mut String, open: &str, text: &str, close: &str) {
    if !text.is_empty() {
        out.push_str(open);
        out.push_str(&escape(text));
        out.push_str(close);
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_document_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/api/openapi.json");
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == json(),
            "docs/api/openapi.json is stale: run `just api-export` and commit it"
        );
    }

    #[test]
    fn the_document_is_openapi_3_1_with_every_route_and_problem_responses() {
        let doc: serde_json::Value = serde_json::from_str(&json()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        let paths = doc["paths"].as_object().unwrap();
        for (path, method) in [
            ("/health", "get"),
            ("/health/full", "get"),
            ("/metrics", "get"),
            ("/v1/torrents", "get"),
            ("/v1/torrents", "post"),
            ("/v1/torrents/{id}", "get"),
            ("/v1/torrents/{id}", "patch"),
            ("/v1/torrents/{id}/peers", "get"),
            ("/v1/torrents/{id}/select", "post"),
            ("/v1/torrents/{id}/action", "post"),
            ("/v1/events", "get"),
            ("/v1/keys", "get"),
            ("/v1/keys", "post"),
            ("/v1/keys/{id}/rotate", "post"),
            ("/v1/keys/{id}", "delete"),
        ] {
            let op = &paths[path][method];
            assert!(op.is_object(), "{method} {path} missing");
            if path != "/health" {
                assert!(
                    op["responses"]["401"]["content"]["application/problem+json"].is_object(),
                    "{method} {path} lacks a 401 problem"
                );
            }
        }
        assert!(doc["components"]["schemas"]["Problem"].is_object());
        assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
        let page = html();
        assert!(page.contains("/v1/torrents/{id}/select"));
        assert!(!page.contains("<script"));
    }
}
