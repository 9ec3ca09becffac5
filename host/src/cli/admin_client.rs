//! A small client for the admin API (DESIGN.md "Admin API"): one method
//! per endpoint the CLI uses, the bearer token on every request, and the
//! server's JSON error `{"error","message"}` turned into a message that
//! says what the server said and what to do about it.
//!
//! Answers are kept as JSON values: `--json` prints them exactly as the
//! server sent them, and the tables read the fields they show.

use super::endpoints::AdminTarget;
use super::transport::{Transport, TransportError};
use crate::config::SecretString;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method};
use serde_json::{json, Value};
use std::time::Duration;
use url::Url;

/// Deadline for an admin call that reads or flips state: they are answered
/// from sled in milliseconds; 30 s still lets a server under heavy load
/// answer, while a hung one fails the command instead of holding it.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Deadline for calls that compile a plugin (upload, reload) or walk every
/// dead letter (bulk replay): compiling an 18 MB Python component takes
/// tens of seconds on two cores.
pub const LONG_CALL_TIMEOUT: Duration = Duration::from_secs(300);

/// Why an admin call failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No answer. (Not a `#[source]`: the message already says it, and
    /// `{:#}` would print it twice.)
    #[error("{0} (is `hookhost serve` running there? --admin URL or server.admin_listen)")]
    Transport(TransportError),
    /// The server refused, with its JSON error.
    #[error("{code}: {message} (HTTP {status}){hint}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The server's `error` code.
        code: String,
        /// The server's `message`.
        message: String,
        /// What to do about it, when the CLI knows (starts with "; ").
        hint: &'static str,
    },
    /// An answer that is not the admin API's JSON (another server on that
    /// port?).
    #[error(
        "{url} answered HTTP {status} with something that is not the admin API's JSON: {excerpt:?}"
    )]
    NotJson {
        /// The URL called.
        url: String,
        /// HTTP status.
        status: u16,
        /// The start of the body.
        excerpt: String,
    },
}

impl From<TransportError> for AdminError {
    fn from(e: TransportError) -> Self {
        Self::Transport(e)
    }
}

/// Filters of `GET /admin/events`.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Only this source.
    pub source: Option<String>,
    /// Only this kind.
    pub kind: Option<String>,
    /// `unrouted`, `pending`, `dead` or `delivered`.
    pub status: Option<String>,
    /// Page size (server default 100, at most 1000).
    pub limit: Option<u32>,
    /// Start after this event id (`next_cursor` of the previous page).
    pub cursor: Option<String>,
}

/// Filters of `GET /admin/dead-letters` and the bulk replay.
#[derive(Debug, Clone, Default)]
pub struct DeadLetterFilter {
    /// Only this plugin's.
    pub plugin: Option<String>,
    /// Only events from this source.
    pub source: Option<String>,
    /// Only events of this kind.
    pub kind: Option<String>,
    /// Page size (listing only).
    pub limit: Option<u32>,
    /// Start after this dead letter id (listing only).
    pub cursor: Option<String>,
}

/// The admin API of one server.
pub struct AdminClient {
    base: Url,
    token: Option<SecretString>,
    transport: Transport,
    /// Replaces both deadlines when set (`--timeout`).
    timeout: Option<Duration>,
}

impl AdminClient {
    /// A client for `target`; `timeout` replaces the per-call deadlines.
    pub fn new(target: AdminTarget, timeout: Option<Duration>) -> Self {
        Self {
            base: target.base,
            token: target.token,
            transport: Transport::new(),
            timeout,
        }
    }

    /// `GET /admin/plugins`.
    pub async fn plugins(&self) -> Result<Value, AdminError> {
        self.get(&["admin", "plugins"], &[]).await
    }

    /// `GET /admin/plugins/{name}`.
    pub async fn plugin(&self, name: &str) -> Result<Value, AdminError> {
        self.get(&["admin", "plugins", name], &[]).await
    }

    /// `POST /admin/plugins/{name}/{action}` for `pause`, `resume` or
    /// `reload`: the plugin object after it.
    pub async fn plugin_action(&self, name: &str, action: &str) -> Result<Value, AdminError> {
        let timeout = if action == "reload" {
            LONG_CALL_TIMEOUT
        } else {
            CALL_TIMEOUT
        };
        self.call(
            Method::POST,
            &["admin", "plugins", name, action],
            &[],
            None,
            timeout,
        )
        .await
    }

    /// `PUT /admin/plugins/{name}` with the `.wasm` bytes: the plugin
    /// object once the server validated and installed it.
    pub async fn upload(&self, name: &str, wasm: Vec<u8>) -> Result<Value, AdminError> {
        let body = (Bytes::from(wasm), "application/wasm");
        self.call(
            Method::PUT,
            &["admin", "plugins", name],
            &[],
            Some(body),
            LONG_CALL_TIMEOUT,
        )
        .await
    }

    /// `DELETE /admin/plugins/{name}`: the plugin object, now removed.
    pub async fn delete_plugin(&self, name: &str) -> Result<Value, AdminError> {
        self.call(
            Method::DELETE,
            &["admin", "plugins", name],
            &[],
            None,
            CALL_TIMEOUT,
        )
        .await
    }

    /// `GET /admin/events` with filters.
    pub async fn events(&self, f: &EventFilter) -> Result<Value, AdminError> {
        let limit = f.limit.map(|l| l.to_string());
        let query = present(&[
            ("source", f.source.as_deref()),
            ("kind", f.kind.as_deref()),
            ("status", f.status.as_deref()),
            ("limit", limit.as_deref()),
            ("cursor", f.cursor.as_deref()),
        ]);
        self.get(&["admin", "events"], &query).await
    }

    /// `GET /admin/events/{id}`: the event with every delivery and attempt.
    pub async fn event(&self, id: &str) -> Result<Value, AdminError> {
        self.get(&["admin", "events", id], &[]).await
    }

    /// `POST /admin/events/{id}/replay`.
    pub async fn replay_event(&self, id: &str) -> Result<Value, AdminError> {
        self.post(&["admin", "events", id, "replay"]).await
    }

    /// `GET /admin/dead-letters` with filters.
    pub async fn dead_letters(&self, f: &DeadLetterFilter) -> Result<Value, AdminError> {
        let limit = f.limit.map(|l| l.to_string());
        let query = present(&[
            ("plugin", f.plugin.as_deref()),
            ("source", f.source.as_deref()),
            ("kind", f.kind.as_deref()),
            ("limit", limit.as_deref()),
            ("cursor", f.cursor.as_deref()),
        ]);
        self.get(&["admin", "dead-letters"], &query).await
    }

    /// `GET /admin/dead-letters/{id}`, with its attempts under `history`.
    pub async fn dead_letter(&self, id: &str) -> Result<Value, AdminError> {
        self.get(&["admin", "dead-letters", id], &[]).await
    }

    /// `POST /admin/dead-letters/{id}/replay`.
    pub async fn replay_dead_letter(&self, id: &str) -> Result<Value, AdminError> {
        self.post(&["admin", "dead-letters", id, "replay"]).await
    }

    /// `POST /admin/dead-letters/replay`: every dead letter the filter
    /// selects (`limit` and `cursor` do not apply). `{"replayed":n}`.
    pub async fn replay_dead_letters(&self, f: &DeadLetterFilter) -> Result<Value, AdminError> {
        let mut body = serde_json::Map::new();
        for (key, value) in [
            ("plugin", &f.plugin),
            ("source", &f.source),
            ("kind", &f.kind),
        ] {
            if let Some(v) = value {
                body.insert(key.to_owned(), json!(v));
            }
        }
        let body = (
            Bytes::from(Value::Object(body).to_string()),
            "application/json",
        );
        self.call(
            Method::POST,
            &["admin", "dead-letters", "replay"],
            &[],
            Some(body),
            LONG_CALL_TIMEOUT,
        )
        .await
    }

    /// `DELETE /admin/dead-letters/{id}`.
    pub async fn delete_dead_letter(&self, id: &str) -> Result<Value, AdminError> {
        self.call(
            Method::DELETE,
            &["admin", "dead-letters", id],
            &[],
            None,
            CALL_TIMEOUT,
        )
        .await
    }

    /// `GET /admin/stats`.
    pub async fn stats(&self) -> Result<Value, AdminError> {
        self.get(&["admin", "stats"], &[]).await
    }

    async fn get(&self, path: &[&str], query: &[(&str, &str)]) -> Result<Value, AdminError> {
        self.call(Method::GET, path, query, None, CALL_TIMEOUT)
            .await
    }

    async fn post(&self, path: &[&str]) -> Result<Value, AdminError> {
        self.call(Method::POST, path, &[], None, CALL_TIMEOUT).await
    }

    /// One call: `path` segments are percent-encoded (a name or id given on
    /// the command line cannot reach another route), the token is sent,
    /// and a non-2xx answer becomes [`AdminError::Refused`].
    async fn call(
        &self,
        method: Method,
        path: &[&str],
        query: &[(&str, &str)],
        body: Option<(Bytes, &'static str)>,
        timeout: Duration,
    ) -> Result<Value, AdminError> {
        let url = self.url(path, query);
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        if let Some(token) = &self.token {
            // A token that is no valid header value cannot be the
            // server's: sending none gets the server's 401 and its hint.
            if let Ok(mut v) = HeaderValue::from_str(&format!("Bearer {}", token.expose())) {
                v.set_sensitive(true);
                headers.insert(header::AUTHORIZATION, v);
            }
        }
        let body = match body {
            Some((bytes, content_type)) => {
                headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
                bytes
            }
            None => Bytes::new(),
        };
        let reply = self
            .transport
            .send(method, &url, headers, body, self.timeout.unwrap_or(timeout))
            .await?;
        let value: Option<Value> = serde_json::from_slice(&reply.body).ok();
        match value {
            Some(v) if (200..300).contains(&reply.status) => Ok(v),
            Some(v) if v["error"].is_string() => Err(refused(reply.status, &v)),
            _ => Err(AdminError::NotJson {
                url: url.to_string(),
                status: reply.status,
                excerpt: String::from_utf8_lossy(&reply.body[..reply.body.len().min(200)])
                    .into_owned(),
            }),
        }
    }

    fn url(&self, path: &[&str], query: &[(&str, &str)]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty().extend(path);
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }
}

/// The query pairs that have a value.
fn present<'a>(pairs: &[(&'a str, Option<&'a str>)]) -> Vec<(&'a str, &'a str)> {
    pairs
        .iter()
        .filter_map(|(k, v)| v.map(|v| (*k, v)))
        .collect()
}

/// The server's error, with a hint where the CLI can give one.
fn refused(status: u16, v: &Value) -> AdminError {
    let code = v["error"].as_str().unwrap_or("error").to_owned();
    let hint = match (status, code.as_str()) {
        (401, _) => UNAUTHORIZED_HINT,
        (503, "starting") => "; the server is still starting: try again in a moment",
        (405, _) => "; this server does not offer it (an older hookhost?)",
        _ => "",
    };
    AdminError::Refused {
        status,
        code,
        message: v["message"].as_str().unwrap_or_default().to_owned(),
        hint,
    }
}

/// The hint for a 401, naming where the token comes from. [`TOKEN_ENV`]
/// is spelled out (`concat!` takes literals only); a test keeps the two in
/// step.
const UNAUTHORIZED_HINT: &str =
    "; give the admin token with --token or HOOKHOST_ADMIN_TOKEN (or admin_token in the config)";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::endpoints::TOKEN_ENV;

    fn client(base: &str) -> AdminClient {
        AdminClient::new(
            AdminTarget {
                base: Url::parse(base).expect("url"),
                token: None,
            },
            None,
        )
    }

    #[test]
    fn names_and_ids_stay_one_path_segment() {
        let c = client("http://127.0.0.1:8081/");
        assert_eq!(
            c.url(&["admin", "plugins", "../stats"], &[]).as_str(),
            "http://127.0.0.1:8081/admin/plugins/..%2Fstats"
        );
        assert_eq!(
            c.url(&["admin", "dead-letters", "evt_0000000000000001:echo"], &[])
                .as_str(),
            "http://127.0.0.1:8081/admin/dead-letters/evt_0000000000000001:echo"
        );
        let prefixed = client("http://proxy/hookhost/");
        assert_eq!(
            prefixed
                .url(&["admin", "events"], &[("kind", "a b&c"), ("limit", "5")])
                .as_str(),
            "http://proxy/hookhost/admin/events?kind=a+b%26c&limit=5"
        );
    }

    #[test]
    fn refusals_carry_the_servers_words_and_a_hint() {
        let e = refused(
            401,
            &json!({"error":"unauthorized","message":"the bearer token is not the admin token"}),
        );
        let text = e.to_string();
        assert!(
            text.starts_with("unauthorized: the bearer token is not the admin token (HTTP 401)"),
            "{text}"
        );
        assert!(
            text.contains("--token") && text.contains(TOKEN_ENV),
            "{text}"
        );
        let e = refused(
            404,
            &json!({"error":"not_found","message":"no plugin named \"x\""}),
        );
        assert_eq!(e.to_string(), "not_found: no plugin named \"x\" (HTTP 404)");
    }
}
