//! One HTTP/1.1 exchange with a hookhost listener, for the admin client and
//! `send`: plain HTTP (both listeners are plain HTTP; the admin one is meant
//! for loopback or a private network), a connect timeout and a deadline on
//! the whole exchange, and a cap on the answer's size.
//!
//! Built on hyper-util's client, which the server's own HTTP stack (axum,
//! hyper) already compiles: no second HTTP implementation, no TLS stack the
//! CLI does not need. reqwest would wrap the same client with conveniences
//! (redirects, cookies, proxies) that talking to our own listeners does not
//! use.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use std::time::Duration;
use url::Url;

/// How long a TCP connect may take. Loopback and LAN connects take
/// microseconds to milliseconds; a firewall that drops packets would
/// otherwise hold the command for the kernel's SYN retries (about two
/// minutes).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest answer read: an event with its deliveries and their log lines
/// is at most a few MiB; a page of 1,000 events well under that. Bounds
/// what a wrong URL (something else listening on the port) can make the
/// CLI hold in memory.
const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;

/// An answer: status and body.
#[derive(Debug)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// The whole body.
    pub body: Bytes,
}

/// Why an exchange failed before an answer was read. Messages name the URL
/// and say what to check.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// Only `http://` URLs are served by hookhost's listeners.
    #[error("{url}: only http:// URLs are supported (hookhost's listeners speak plain HTTP)")]
    NotHttp {
        /// The URL given.
        url: String,
    },
    /// The request could not be built (a URL hyper does not take).
    #[error("{url}: {reason}")]
    Request {
        /// The URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// Nothing answered: refused, unreachable, reset, timed out while
    /// connecting.
    #[error("cannot reach {url}: {reason}")]
    Unreachable {
        /// The URL.
        url: String,
        /// The connection error.
        reason: String,
    },
    /// The whole exchange took longer than its deadline.
    #[error("{url} did not answer within {after:?}")]
    Timeout {
        /// The URL.
        url: String,
        /// The deadline.
        after: Duration,
    },
    /// The answer's body could not be read, or was larger than
    /// [`MAX_ANSWER_BYTES`].
    #[error("reading the answer from {url}: {reason}")]
    Body {
        /// The URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
}

/// A client with a small connection pool: a command makes one to a few
/// requests to the same listener.
#[derive(Clone)]
pub struct Transport {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Default for Transport {
    fn default() -> Self {
        Self::new()
    }
}

impl Transport {
    /// A client with [`CONNECT_TIMEOUT`].
    pub fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    /// Send one request and read the whole answer, all within `timeout`.
    pub async fn send(
        &self,
        method: Method,
        url: &Url,
        headers: HeaderMap,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Reply, TransportError> {
        let shown = url.as_str().to_owned();
        if url.scheme() != "http" {
            return Err(TransportError::NotHttp { url: shown });
        }
        let mut request = http::Request::builder().method(method).uri(url.as_str());
        if let Some(h) = request.headers_mut() {
            h.extend(headers);
            h.insert(
                http::header::USER_AGENT,
                HeaderValue::from_static(concat!("hookhost-cli/", env!("CARGO_PKG_VERSION"))),
            );
        }
        let request = request
            .body(Full::new(body))
            .map_err(|e| TransportError::Request {
                url: shown.clone(),
                reason: e.to_string(),
            })?;
        let exchange =
            async {
                let response = self.client.request(request).await.map_err(|e| {
                    TransportError::Unreachable {
                        url: shown.clone(),
                        reason: connect_reason(&e),
                    }
                })?;
                let status = response.status().as_u16();
                let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                    .collect()
                    .await
                    .map_err(|e| TransportError::Body {
                        url: shown.clone(),
                        reason: e.to_string(),
                    })?
                    .to_bytes();
                Ok(Reply { status, body })
            };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| TransportError::Timeout {
                url: shown.clone(),
                after: timeout,
            })?
    }
}

/// The innermost cause of a client error ("Connection refused (os error
/// 111)"), which is what a user can act on; hyper-util's own text is only
/// "client error (Connect)".
fn connect_reason(e: &hyper_util::client::legacy::Error) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}
