//! Every status each route can answer with, read off the code, and the
//! tests that hold the OpenAPI document to it.
//!
//! A route's error statuses are the union of
//! - its handler's, read off the handler's signature by
//!   [`HandlerStatuses`]: each extractor's rejection
//!   ([`Statuses`] of its `Rejection` type) and the handler's error type
//!   (declared with `failures!`, see [`crate::problem`]);
//! - the auth middleware's refusals for its method and path
//!   ([`Access::refusals`](crate::auth::Access::refusals));
//! - [`UNIVERSAL`]: what the guard stack and the connection layer can
//!   answer on any route. [`crate::openapi`] adds these to every
//!   operation that does not document them itself.
//!
//! A handler answers failures only through its error type: the `Ok` side
//! of its result is its success answer. So a new failure is a new kind in
//! the handler's error type, which lands in its [`Statuses`] and fails the
//! tests below until the route's `#[utoipa::path]` documents it.

use std::convert::Infallible;

use axum::Json;
use axum::extract::FromRequest;
use axum::extract::rejection::{ExtensionRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::Response;

use crate::AppState;
use crate::problem::Statuses;

/// An answer any route can get, whatever its handler does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Universal {
    pub status: StatusCode,
    pub description: &'static str,
    /// Whether it carries a problem document (hyper's 431 has no body).
    pub problem: bool,
}

/// The answers of the guard stack in [`crate::routes::router`] (request
/// timeout, hard body cap, caught panics) and of the connection layer in
/// [`crate::server`] (slow bodies, oversized heads, the connection cap).
pub const UNIVERSAL: &[Universal] = &[
    Universal {
        status: StatusCode::REQUEST_TIMEOUT,
        description: "The request took longer than 30 s, or its body arrived slower than 1 KiB/s",
        problem: true,
    },
    Universal {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        description: "The body is larger than any route accepts",
        problem: true,
    },
    Universal {
        status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        description: "The request head is larger than 32 KiB; answered without a body, and the connection is closed",
        problem: false,
    },
    Universal {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        description: "Internal error (a bug); see the server log",
        problem: true,
    },
    Universal {
        status: StatusCode::SERVICE_UNAVAILABLE,
        description: "Every connection slot is taken by an active client; retry after `Retry-After`",
        problem: true,
    },
];

impl Statuses for Infallible {
    const STATUSES: &'static [StatusCode] = &[];
}

/// Path parameters that do not decode (400), or a route/handler mismatch
/// (500, a bug).
impl Statuses for PathRejection {
    const STATUSES: &'static [StatusCode] =
        &[StatusCode::BAD_REQUEST, StatusCode::INTERNAL_SERVER_ERROR];
}

/// A missing extension: the auth middleware did not run (a bug).
impl Statuses for ExtensionRejection {
    const STATUSES: &'static [StatusCode] = &[StatusCode::INTERNAL_SERVER_ERROR];
}

impl Statuses for QueryRejection {
    const STATUSES: &'static [StatusCode] = &[StatusCode::BAD_REQUEST];
}

/// What a handler returns: the error statuses it can carry.
pub trait Answer {
    /// Every error status (4xx/5xx) the answer can have.
    fn error_statuses() -> Vec<StatusCode>;
}

/// A success answer: failures travel in the handler's error type.
impl<T> Answer for Json<T> {
    fn error_statuses() -> Vec<StatusCode> {
        Vec::new()
    }
}

/// A success answer: failures travel in the handler's error type.
impl Answer for Response {
    fn error_statuses() -> Vec<StatusCode> {
        Vec::new()
    }
}

/// A success answer (`204`): failures travel in the handler's error type.
impl Answer for StatusCode {
    fn error_statuses() -> Vec<StatusCode> {
        Vec::new()
    }
}

impl<T: Answer, E: Statuses> Answer for Result<T, E> {
    fn error_statuses() -> Vec<StatusCode> {
        let mut out = T::error_statuses();
        out.extend_from_slice(E::STATUSES);
        out
    }
}

/// The error statuses a handler can answer with, from its signature: its
/// extractors' rejections and its [`Answer`]. `M` only tells the
/// implementations for each arity apart.
pub trait HandlerStatuses<M> {
    fn statuses() -> Vec<StatusCode>;
}

macro_rules! handler_statuses {
    ($($arg:ident $via:ident),*) => {
        impl<F, Fut, Out, $($arg, $via,)*> HandlerStatuses<($($via, $arg,)*)> for F
        where
            F: FnOnce($($arg),*) -> Fut,
            Fut: Future<Output = Out>,
            Out: Answer,
            $($arg: FromRequest<std::sync::Arc<AppState>, $via>,
              <$arg as FromRequest<std::sync::Arc<AppState>, $via>>::Rejection: Statuses,)*
        {
            fn statuses() -> Vec<StatusCode> {
                #[allow(unused_mut, reason = "handlers without extractors")]
                let mut out = Out::error_statuses();
                $(out.extend_from_slice(
                    <<$arg as FromRequest<std::sync::Arc<AppState>, $via>>::Rejection as Statuses>::STATUSES,
                );)*
                out
            }
        }
    };
}

handler_statuses!();
handler_statuses!(A1 V1);
handler_statuses!(A1 V1, A2 V2);
handler_statuses!(A1 V1, A2 V2, A3 V3);
handler_statuses!(A1 V1, A2 V2, A3 V3, A4 V4);

/// The error statuses `handler` can answer with, sorted, without
/// duplicates.
#[must_use]
pub fn statuses_of<H: HandlerStatuses<M>, M>(_handler: H) -> Vec<StatusCode> {
    let mut out = H::statuses();
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use axum::extract::Path;
    use axum::http::Method;
    use serde_json::Value;
    use utoipa::openapi::path::HttpMethod;

    use super::*;
    use crate::auth::Access;
    use crate::problem::{ValidJson, failures};
    use crate::{keys_routes, metrics, routes, sse, torrents_routes};

    /// One documented operation: where its annotation puts it, what the
    /// annotation lists, and what its handler can answer with.
    struct Route {
        path: String,
        method: Method,
        annotated: BTreeSet<u16>,
        handler: Vec<StatusCode>,
    }

    impl Route {
        /// The handler's statuses and the auth middleware's refusals.
        fn own_statuses(&self) -> BTreeSet<u16> {
            self.handler
                .iter()
                .chain(Access::of(&self.method, &self.path).refusals())
                .map(StatusCode::as_u16)
                .collect()
        }
    }

    fn method(m: &HttpMethod) -> Method {
        match m {
            HttpMethod::Get => Method::GET,
            HttpMethod::Post => Method::POST,
            HttpMethod::Put => Method::PUT,
            HttpMethod::Delete => Method::DELETE,
            HttpMethod::Options => Method::OPTIONS,
            HttpMethod::Head => Method::HEAD,
            HttpMethod::Patch => Method::PATCH,
            HttpMethod::Trace => Method::TRACE,
        }
    }

    /// `route!(handler, annotation struct)`: the annotation's path, method
    /// and responses, and the statuses of the handler itself.
    macro_rules! route {
        ($handler:path, $doc:ty) => {{
            let methods = <$doc as utoipa::Path>::methods();
            assert_eq!(methods.len(), 1, "{}", <$doc as utoipa::Path>::path());
            Route {
                path: <$doc as utoipa::Path>::path(),
                method: method(&methods[0]),
                annotated: <$doc as utoipa::Path>::operation()
                    .responses
                    .responses
                    .keys()
                    .map(|k| k.parse::<u16>().unwrap())
                    .collect(),
                handler: statuses_of($handler),
            }
        }};
    }

    /// Every operation of the document, with its handler.
    fn routes() -> Vec<Route> {
        vec![
            route!(routes::liveness, routes::__path_liveness),
            route!(routes::readiness, routes::__path_readiness),
            route!(metrics::render, metrics::__path_render),
            route!(torrents_routes::list, torrents_routes::__path_list),
            route!(torrents_routes::add, torrents_routes::__path_add),
            route!(torrents_routes::detail, torrents_routes::__path_detail),
            route!(torrents_routes::peers, torrents_routes::__path_peers),
            route!(torrents_routes::patch, torrents_routes::__path_patch),
            route!(torrents_routes::select, torrents_routes::__path_select),
            route!(torrents_routes::action, torrents_routes::__path_action),
            route!(sse::events, sse::__path_events),
            route!(keys_routes::issue, keys_routes::__path_issue),
            route!(keys_routes::list, keys_routes::__path_list),
            route!(keys_routes::rotate, keys_routes::__path_rotate),
            route!(keys_routes::revoke, keys_routes::__path_revoke),
        ]
    }

    fn document() -> Value {
        serde_json::from_str(&crate::openapi::json()).unwrap()
    }

    fn documented(doc: &Value, route: &Route) -> BTreeSet<u16> {
        let method = route.method.as_str().to_ascii_lowercase();
        doc["paths"][&route.path][&method]["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{} {} is not in the document", route.method, route.path))
            .keys()
            .map(|k| k.parse::<u16>().unwrap())
            .collect()
    }

    #[test]
    fn every_operation_of_the_document_is_checked() {
        let doc = document();
        let mut in_doc = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                in_doc.insert((path.clone(), method.to_ascii_uppercase()));
            }
        }
        let checked: BTreeSet<_> = routes()
            .iter()
            .map(|r| (r.path.clone(), r.method.as_str().to_owned()))
            .collect();
        assert_eq!(
            in_doc, checked,
            "add each documented operation to `routes()` with its handler"
        );
    }

    /// The check CI's schemathesis run makes, by construction: every
    /// status a route can answer with is in the document.
    #[test]
    fn the_document_lists_every_status_each_route_can_answer_with() {
        let doc = document();
        let mut missing = Vec::new();
        for route in routes() {
            let documented = documented(&doc, &route);
            let universal = UNIVERSAL.iter().map(|u| u.status.as_u16());
            for status in route.own_statuses().into_iter().chain(universal) {
                if !documented.contains(&status) {
                    missing.push(format!("{} {} -> {status}", route.method, route.path));
                }
            }
        }
        assert!(
            missing.is_empty(),
            "statuses the routes can answer with but docs/api/openapi.json omits (add them to the \
             route's #[utoipa::path] responses, then `just api-export`):\n{}",
            missing.join("\n")
        );
    }

    /// A route documents its own failures itself, with a description that
    /// says why; only the universal 500 may come from the modifier.
    #[test]
    fn each_annotation_lists_its_own_routes_failures() {
        let mut missing = Vec::new();
        for route in routes() {
            for status in route.own_statuses() {
                if status != 500 && !route.annotated.contains(&status) {
                    missing.push(format!("{} {} -> {status}", route.method, route.path));
                }
            }
        }
        assert!(
            missing.is_empty(),
            "add these to the route's #[utoipa::path] responses:\n{}",
            missing.join("\n")
        );
    }

    /// No annotation promises an error its route cannot answer with.
    #[test]
    fn no_annotation_lists_an_error_its_route_cannot_answer_with() {
        let mut extra = Vec::new();
        for route in routes() {
            let own = route.own_statuses();
            for &status in &route.annotated {
                if status >= 400 && !own.contains(&status) {
                    extra.push(format!("{} {} -> {status}", route.method, route.path));
                }
            }
        }
        assert!(
            extra.is_empty(),
            "documented errors no code path produces:\n{}",
            extra.join("\n")
        );
    }

    failures! {
        pub enum Probe { Conflict, Unavailable }
    }

    #[allow(clippy::unused_async, reason = "a handler shape")]
    async fn probe_handler(
        Path(_): Path<String>,
        ValidJson(_): ValidJson<Value>,
    ) -> Result<StatusCode, Probe> {
        Err(Probe::Conflict(String::new()))
    }

    #[test]
    fn handler_statuses_come_from_its_extractors_and_its_error_type() {
        let codes: Vec<u16> = statuses_of(probe_handler)
            .iter()
            .map(StatusCode::as_u16)
            .collect();
        // Path: 400/500; ValidJson: 400/413/415; Probe: 409/503.
        assert_eq!(codes, [400, 409, 413, 415, 500, 503]);
        assert_eq!(
            Access::of(&Method::POST, "/v1/torrents/{id}/action").refusals(),
            [
                StatusCode::UNAUTHORIZED,
                StatusCode::FORBIDDEN,
                StatusCode::TOO_MANY_REQUESTS
            ]
        );
        assert!(Access::of(&Method::GET, "/health").refusals().is_empty());
    }
}
