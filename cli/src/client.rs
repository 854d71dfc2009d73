//! The HTTP client: one place that builds URLs, authenticates, sends the
//! `traceparent`, logs (with `--verbose`, never a secret) and turns every
//! non-2xx answer into a [`CliError`] carrying the API's problem document.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode, Url};
use revaer_api_models::Problem;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::CliError;
use crate::output::Shared;
use crate::secret::Secret;
use crate::telemetry::Telemetry;

/// Longest error body kept as a problem's detail when the answer is not
/// Problem+JSON.
const MAX_DETAIL: usize = 300;

/// A body to send.
#[derive(Debug)]
pub enum Body {
    None,
    Json(serde_json::Value),
    Multipart {
        torrent: Vec<u8>,
        filename: String,
        options: Option<serde_json::Value>,
    },
}

/// A connection to the API.
#[derive(Debug)]
pub struct Api {
    base: Url,
    key: Option<Secret>,
    client: reqwest::Client,
    timeout: Duration,
    telemetry: Telemetry,
    log: Option<Shared>,
}

/// The base URL as people may see it: no user info, no trailing slash.
#[must_use]
pub fn display_url(url: &Url) -> String {
    let mut shown = url.clone();
    if !shown.username().is_empty() || shown.password().is_some() {
        let _ = shown.set_username("");
        let _ = shown.set_password(None);
    }
    shown.as_str().trim_end_matches('/').to_owned()
}

/// Parses and checks `--api-url`.
pub fn parse_base_url(text: &str) -> Result<Url, CliError> {
    let url = Url::parse(text.trim())
        .map_err(|e| CliError::usage(format!("--api-url: not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(CliError::usage(
            "--api-url must be an http:// or https:// URL",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(CliError::usage(
            "--api-url must not have a query or fragment",
        ));
    }
    if url.host_str().is_none() {
        return Err(CliError::usage("--api-url has no host"));
    }
    Ok(url)
}

/// Full text of an error and its sources, without URLs.
fn chain(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out".to_owned();
    }
    // reqwest names the URL, which may carry credentials: it is shown
    // separately, without them.
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(&format!(" for url ({url})"), "");
        text = text.replace(url.as_str(), &display_url(url));
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

impl Api {
    /// A client for `base`. `timeout` bounds each request (for streams,
    /// only the connection: their reads are bounded by the caller).
    pub fn new(
        base: Url,
        key: Option<Secret>,
        timeout: Duration,
        telemetry: Telemetry,
        log: Option<Shared>,
    ) -> Result<Self, CliError> {
        let user_agent = concat!("revaer-cli/", env!("CARGO_PKG_VERSION"));
        // One client (building one loads the TLS trust store); the
        // per-request time-out is set on each request except streams.
        let client = reqwest::Client::builder()
            .connect_timeout(timeout)
            .user_agent(user_agent)
            .build()
            .map_err(|e| CliError::Io(format!("HTTP client: {}", chain(&e))))?;
        Ok(Self {
            base,
            key,
            client,
            timeout,
            telemetry,
            log,
        })
    }

    /// The telemetry of this command (ended by the caller).
    #[must_use]
    pub fn into_telemetry(self) -> Telemetry {
        self.telemetry
    }

    /// Whether a key is configured.
    #[must_use]
    pub fn has_key(&self) -> bool {
        self.key.is_some()
    }

    /// The base URL for messages.
    #[must_use]
    pub fn shown_base(&self) -> String {
        display_url(&self.base)
    }

    fn url(&self, path: &str, query: &[(&str, String)]) -> Result<Url, CliError> {
        let base = self.base.as_str().trim_end_matches('/');
        let mut url = Url::parse(&format!("{base}{path}"))
            .map_err(|e| CliError::usage(format!("bad URL for {path}: {e}")))?;
        if !query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in query {
                pairs.append_pair(k, v);
            }
        }
        Ok(url)
    }

    fn log(&self, line: &str) {
        if let Some(log) = &self.log {
            let _ = log.write_str(&format!("revaer: {line}\n"));
        }
    }

    /// Sends one request; answers with the response when its status is
    /// 2xx, otherwise with the matching [`CliError`].
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Body,
        extra_headers: &[(&str, String)],
        stream: bool,
    ) -> Result<reqwest::Response, CliError> {
        let response = self
            .send_raw(method, path, query, body, extra_headers, stream)
            .await?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(self.error_from(response).await)
        }
    }

    /// Sends one request; any status is an answer (only transport failures
    /// are errors).
    pub async fn send_raw(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Body,
        extra_headers: &[(&str, String)],
        stream: bool,
    ) -> Result<reqwest::Response, CliError> {
        let url = self.url(path, query)?;
        let shown = display_url(&url);
        let route = path.to_owned();
        let span = self.telemetry.request(method.as_str(), &route);
        let mut request = self
            .client
            .request(method.clone(), url)
            .header("traceparent", &span.traceparent);
        if !stream {
            request = request.timeout(self.timeout);
        }
        if let Some(key) = &self.key {
            request = request.bearer_auth(key.expose());
        }
        for (name, value) in extra_headers {
            request = request.header(*name, value);
        }
        request = match body {
            Body::None => request,
            Body::Json(value) => request.json(&value),
            Body::Multipart {
                torrent,
                filename,
                options,
            } => {
                let part = reqwest::multipart::Part::bytes(torrent)
                    .file_name(filename)
                    .mime_str("application/x-bittorrent")
                    .map_err(|e| CliError::Io(e.to_string()))?;
                let mut form = reqwest::multipart::Form::new().part("torrent", part);
                if let Some(options) = options {
                    let part = reqwest::multipart::Part::text(options.to_string())
                        .mime_str("application/json")
                        .map_err(|e| CliError::Io(e.to_string()))?;
                    form = form.part("options", part);
                }
                request.multipart(form)
            }
        };
        let started = Instant::now();
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                span.finish(None);
                self.log(&format!("{method} {shown} failed: {}", chain(&e)));
                return Err(CliError::Transport {
                    url: shown,
                    message: chain(&e),
                });
            }
        };
        let status = response.status();
        span.finish(Some(status.as_u16()));
        self.log(&format!(
            "{method} {shown} -> {} ({} ms)",
            status.as_u16(),
            started.elapsed().as_millis()
        ));
        Ok(response)
    }

    /// Turns an error answer into a [`CliError::Api`].
    pub async fn error_from(&self, response: reqwest::Response) -> CliError {
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let shown = display_url(response.url());
        match response.bytes().await {
            Ok(bytes) => self.error_from_body(status, retry_after, &bytes),
            Err(e) => CliError::Transport {
                url: shown,
                message: chain(&e),
            },
        }
    }

    /// A [`CliError::Api`] from an error status and its body.
    #[must_use]
    pub fn error_from_body(
        &self,
        status: StatusCode,
        retry_after: Option<u64>,
        bytes: &[u8],
    ) -> CliError {
        let problem = serde_json::from_slice::<Problem>(bytes)
            .ok()
            .filter(|p| p.status == status.as_u16())
            .unwrap_or_else(|| plain_problem(status, bytes));
        CliError::Api {
            problem: Box::new(problem),
            retry_after,
            had_key: self.has_key(),
        }
    }

    /// `GET` a JSON document.
    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, CliError> {
        let response = self
            .send(Method::GET, path, query, Body::None, &[], false)
            .await?;
        self.decode(response, path).await
    }

    /// Sends `body` as JSON and decodes the JSON answer.
    pub async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &B,
    ) -> Result<T, CliError> {
        let response = self
            .send(method, path, &[], Body::Json(to_value(body)?), &[], false)
            .await?;
        self.decode(response, path).await
    }

    /// Sends `body` (if any) and expects an empty success answer.
    pub async fn call_no_content(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<StatusCode, CliError> {
        let body = body.map_or(Body::None, Body::Json);
        let response = self.send(method, path, &[], body, &[], false).await?;
        Ok(response.status())
    }

    /// Decodes a JSON answer into `T`.
    pub async fn decode<T: DeserializeOwned>(
        &self,
        response: reqwest::Response,
        path: &str,
    ) -> Result<T, CliError> {
        let url = format!("{}{path}", self.shown_base());
        let bytes = response.bytes().await.map_err(|e| CliError::Transport {
            url: url.clone(),
            message: chain(&e),
        })?;
        serde_json::from_slice(&bytes).map_err(|e| CliError::Protocol {
            url,
            message: format!("not the documented JSON: {e}"),
        })
    }
}

/// Serialises a request body.
pub fn to_value<B: Serialize>(body: &B) -> Result<serde_json::Value, CliError> {
    serde_json::to_value(body).map_err(|e| CliError::Io(format!("encoding JSON: {e}")))
}

/// A problem document for an error answer that is not one.
fn plain_problem(status: StatusCode, body: &[u8]) -> Problem {
    let title = status.canonical_reason().unwrap_or("Error");
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let mut problem = Problem::new(status.as_u16(), title);
    if !text.is_empty() {
        let detail: String = text.chars().take(MAX_DETAIL).collect();
        problem = problem.with_detail(detail);
    }
    problem
}

/// A transport failure while reading `url`.
#[must_use]
pub fn transport(url: &str, e: &reqwest::Error) -> CliError {
    CliError::Transport {
        url: url.to_owned(),
        message: chain(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_checked_and_shown_without_credentials() {
        assert!(parse_base_url("ftp://x").is_err());
        assert!(parse_base_url("not a url").is_err());
        assert!(parse_base_url("http://x/?a=1").is_err());
        let url = parse_base_url("http://user:pw@127.0.0.1:7070/revaer/").unwrap();
        assert_eq!(display_url(&url), "http://127.0.0.1:7070/revaer");
    }

    #[test]
    fn plain_errors_become_problems() {
        let p = plain_problem(StatusCode::BAD_GATEWAY, b"upstream down\n");
        assert_eq!(p.status, 502);
        assert_eq!(p.title, "Bad Gateway");
        assert_eq!(p.detail.as_deref(), Some("upstream down"));
        assert_eq!(plain_problem(StatusCode::BAD_GATEWAY, b"").detail, None);
    }
}
