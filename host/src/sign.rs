//! The provider's side of every signature scheme: given a source's config,
//! a body, a kind and an id, the headers a real provider would send, so
//! `hookhost send` can post a webhook that ingest accepts exactly as it
//! accepts the provider's own (the local development loop).
//!
//! This module owns nothing about verification: the signed-bytes layouts
//! mirror [`crate::verify`], and the tests sign with every scheme and run
//! the result back through `verify` and [`crate::identify`], so a change to
//! one side that the other does not follow fails them. It is pure (the
//! caller passes the time) and signs with the source's first secret (the
//! current one while secrets rotate). A secret, or a signature computed from
//! it, never appears in an error.

use crate::config::{SchemeName, SourceConfig};
use crate::verify::{Scheme, Secret, SecretError};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use http::{HeaderMap, HeaderName, HeaderValue};
use sha2::Sha256;

/// What to send: the body as it will go on the wire, and the id and kind to
/// claim where the scheme carries them in headers.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// The raw body; signed as these exact bytes.
    pub body: &'a [u8],
    /// The event kind for schemes that send it in a header (github,
    /// shopify, and hmac/none with a `kind_header`). Elsewhere the kind is
    /// in the body and this must be `None`.
    pub kind: Option<&'a str>,
    /// The provider's event id for schemes that send it in a header
    /// (standard, github, shopify, hmac, none); see [`id_in_header`]. For
    /// stripe and slack the id is in the body and this must be `None`.
    pub id: Option<&'a str>,
    /// Unix seconds, for the schemes that sign a timestamp.
    pub now_unix_s: i64,
}

/// Why a message cannot be signed for a source. Every case is a mistake in
/// the command line or the config, named so it can be fixed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The source has no secret but its scheme signs.
    #[error("source {source_name:?} (scheme {scheme}) has no secret to sign with")]
    NoSecret {
        /// The source's name.
        source_name: String,
        /// Its scheme.
        scheme: SchemeName,
    },
    /// The source's first secret is not usable for its scheme.
    #[error("source {source_name:?}: its first secret cannot be used: {error}")]
    BadSecret {
        /// The source's name.
        source_name: String,
        /// What is wrong with it (never the secret itself). Shown in the
        /// message, so not a `#[source]` (`{:#}` would repeat it).
        error: SecretError,
    },
    /// The scheme sends the kind in a header and none was given.
    #[error("scheme {scheme} sends the event kind in the {header} header: give one (e.g. --kind {example})")]
    KindRequired {
        /// The scheme.
        scheme: SchemeName,
        /// The header that carries the kind.
        header: &'static str,
        /// A plausible kind for the message.
        example: &'static str,
    },
    /// A kind was given for a scheme that reads it from the body.
    #[error("scheme {scheme} takes the event kind from the body ({field}), not from a header: edit the payload instead of giving a kind")]
    KindFromBody {
        /// The scheme.
        scheme: SchemeName,
        /// Where in the body the kind is read.
        field: &'static str,
    },
    /// An id was given for a scheme that reads it from the body.
    #[error("scheme {scheme} takes the event id from the body ({field}), not from a header: edit the payload instead of giving an id")]
    IdFromBody {
        /// The scheme.
        scheme: SchemeName,
        /// Where in the body the id is read.
        field: &'static str,
    },
    /// The scheme needs an id header and none was given.
    #[error("scheme {scheme} sends the event id in the {header} header: give one")]
    IdRequired {
        /// The scheme.
        scheme: SchemeName,
        /// The header that carries the id.
        header: &'static str,
    },
    /// A header name in the source's config is not one.
    #[error("source {source_name:?}: {name:?} is not a header name")]
    BadHeaderName {
        /// The source's name.
        source_name: String,
        /// The configured name.
        name: String,
    },
    /// An id or kind cannot be sent as a header value.
    #[error("the event {what} {value:?} cannot be sent in a header (use visible ASCII)")]
    BadHeaderValue {
        /// `id` or `kind`.
        what: &'static str,
        /// The value given.
        value: String,
    },
}

/// Whether `scheme` carries the provider's event id in a header, so a
/// sender must supply one (standard, github, shopify) or may (hmac, none:
/// without one, ingest uses the SHA-256 of the body). Stripe and Slack read
/// it from the body.
pub fn id_in_header(scheme: SchemeName) -> bool {
    !matches!(scheme, SchemeName::Stripe | SchemeName::Slack)
}

/// The headers a provider would send for `message` to `source`: its
/// signature (with the first configured secret), timestamp, and the id and
/// kind headers its scheme reads. No `Content-Type`: that is the caller's.
pub fn sign(source: &SourceConfig, message: &Message<'_>) -> Result<HeaderMap, SignError> {
    let scheme = verify_scheme(source)?;
    check_labels(source, message)?;
    let mut out = Headers::default();
    let ts = message.now_unix_s.to_string();
    let body = message.body;
    match &scheme {
        Scheme::Standard => {
            let id = required_id(source.scheme, message, "webhook-id")?;
            let key = key(source, &scheme)?;
            let sig = hmac(&key, &[id.as_bytes(), b".", ts.as_bytes(), b".", body]);
            out.text("webhook-id", "id", id)?;
            out.text("webhook-timestamp", "timestamp", &ts)?;
            out.text(
                "webhook-signature",
                "signature",
                &format!("v1,{}", BASE64.encode(sig)),
            )?;
        }
        Scheme::Github => {
            let id = required_id(source.scheme, message, "X-GitHub-Delivery")?;
            let kind = message.kind.ok_or(SignError::KindRequired {
                scheme: source.scheme,
                header: "X-GitHub-Event",
                example: "push",
            })?;
            let sig = hmac(&key(source, &scheme)?, &[body]);
            out.text("x-github-event", "kind", github_event(kind, body))?;
            out.text("x-github-delivery", "id", id)?;
            out.text(
                "x-hub-signature-256",
                "signature",
                &format!("sha256={}", hex::encode(sig)),
            )?;
        }
        Scheme::Stripe => {
            let sig = hmac(&key(source, &scheme)?, &[ts.as_bytes(), b".", body]);
            out.text(
                "stripe-signature",
                "signature",
                &format!("t={ts},v1={}", hex::encode(sig)),
            )?;
        }
        Scheme::Shopify => {
            let id = required_id(source.scheme, message, "X-Shopify-Webhook-Id")?;
            let kind = message.kind.ok_or(SignError::KindRequired {
                scheme: source.scheme,
                header: "X-Shopify-Topic",
                example: "orders/create",
            })?;
            let sig = hmac(&key(source, &scheme)?, &[body]);
            out.text("x-shopify-topic", "kind", kind)?;
            out.text("x-shopify-webhook-id", "id", id)?;
            out.text("x-shopify-hmac-sha256", "signature", &BASE64.encode(sig))?;
        }
        Scheme::Slack => {
            let sig = hmac(&key(source, &scheme)?, &[b"v0:", ts.as_bytes(), b":", body]);
            out.text("x-slack-request-timestamp", "timestamp", &ts)?;
            out.text(
                "x-slack-signature",
                "signature",
                &format!("v0={}", hex::encode(sig)),
            )?;
        }
        Scheme::Hmac { signature_header } => {
            let sig = hmac(&key(source, &scheme)?, &[body]);
            out.named(
                signature_header.clone(),
                "signature",
                &format!("sha256={}", hex::encode(sig)),
            )?;
            custom_labels(source, message, &mut out)?;
        }
        Scheme::None => custom_labels(source, message, &mut out)?,
    }
    Ok(out.0)
}

/// The verify-side scheme of a source, with its configured signature
/// header: the same mapping the server makes at start.
fn verify_scheme(source: &SourceConfig) -> Result<Scheme, SignError> {
    let header = match &source.signature_header {
        Some(name) if source.scheme == SchemeName::Hmac => Some(header_name(source, name)?),
        _ => None,
    };
    Ok(Scheme::from_config(source.scheme, header))
}

/// Refuse an id or kind the scheme would not read: sending it anyway would
/// let the user believe the event has an id or kind it does not get.
fn check_labels(source: &SourceConfig, message: &Message<'_>) -> Result<(), SignError> {
    let scheme = source.scheme;
    let kind_in_body = match scheme {
        SchemeName::Standard => Some("its `type` field"),
        SchemeName::Stripe => Some("its `type` field"),
        SchemeName::Slack => Some("`event.type`, else `type`"),
        SchemeName::Hmac | SchemeName::None if source.kind_header.is_none() => {
            Some("its `type` field; configure kind_header to send it in a header")
        }
        _ => None,
    };
    if let (Some(field), Some(_)) = (kind_in_body, message.kind) {
        return Err(SignError::KindFromBody { scheme, field });
    }
    let id_in_body = match scheme {
        SchemeName::Stripe => Some("its `id` field"),
        SchemeName::Slack => Some("`event_id`, else the SHA-256 of the body"),
        _ => None,
    };
    if let (Some(field), Some(_)) = (id_in_body, message.id) {
        return Err(SignError::IdFromBody { scheme, field });
    }
    Ok(())
}

/// The id and kind headers of the generic schemes (hmac, none), where the
/// config names them; both are optional there.
fn custom_labels(
    source: &SourceConfig,
    message: &Message<'_>,
    out: &mut Headers,
) -> Result<(), SignError> {
    if let (Some(name), Some(id)) = (&source.id_header, message.id) {
        out.named(header_name(source, name)?, "id", id)?;
    }
    if let (Some(name), Some(kind)) = (&source.kind_header, message.kind) {
        out.named(header_name(source, name)?, "kind", kind)?;
    }
    Ok(())
}

fn required_id<'a>(
    scheme: SchemeName,
    message: &Message<'a>,
    header: &'static str,
) -> Result<&'a str, SignError> {
    message.id.ok_or(SignError::IdRequired { scheme, header })
}

/// `X-GitHub-Event` for the kind `kind`: ingest appends the body's
/// `action` (`issues` + `"action":"opened"` is `issues.opened`), so a kind
/// that already ends in `.{action}` is sent without it and arrives as
/// given.
fn github_event<'k>(kind: &'k str, body: &[u8]) -> &'k str {
    let action = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("action")?.as_str().map(str::to_owned));
    match action {
        Some(action) => kind
            .strip_suffix(action.as_str())
            .and_then(|event| event.strip_suffix('.'))
            .filter(|event| !event.is_empty())
            .unwrap_or(kind),
        None => kind,
    }
}

/// The HMAC key of the source's first secret, decoded as
/// [`Secret::parse`] decodes it (validated by it first, so a secret the
/// server would refuse is refused here with the same words).
fn key(source: &SourceConfig, scheme: &Scheme) -> Result<Vec<u8>, SignError> {
    let raw = source.secrets.first().ok_or_else(|| SignError::NoSecret {
        source_name: source.name.clone(),
        scheme: source.scheme,
    })?;
    let secret = Secret::parse(scheme, raw.expose()).map_err(|error| SignError::BadSecret {
        source_name: source.name.clone(),
        error,
    })?;
    Ok(secret.key().to_vec())
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(key) else {
        return Vec::new();
    };
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

fn header_name(source: &SourceConfig, name: &str) -> Result<HeaderName, SignError> {
    HeaderName::try_from(name.to_ascii_lowercase()).map_err(|_| SignError::BadHeaderName {
        source_name: source.name.clone(),
        name: name.to_owned(),
    })
}

/// Headers being built; a value that is not a valid header value is
/// refused naming what it was (the id or kind the user gave).
#[derive(Default)]
struct Headers(HeaderMap);

impl Headers {
    fn text(
        &mut self,
        name: &'static str,
        what: &'static str,
        value: &str,
    ) -> Result<(), SignError> {
        self.named(HeaderName::from_static(name), what, value)
    }

    fn named(
        &mut self,
        name: HeaderName,
        what: &'static str,
        value: &str,
    ) -> Result<(), SignError> {
        let v = HeaderValue::from_str(value).map_err(|_| SignError::BadHeaderValue {
            what,
            value: value.to_owned(),
        })?;
        self.0.insert(name, v);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identify::{identify, HeaderRules, Identity};
    use crate::verify::{verify, VerifyError};

    const NOW: i64 = 1_700_000_000;
    const TOLERANCE: u64 = 300;
    const STD_KEY_B64: &str = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    /// One source per scheme (two secrets each where the scheme signs: the
    /// first is the one to sign with), through the real config loader.
    fn sources() -> Vec<SourceConfig> {
        let toml = format!(
            r#"
[[source]]
name = "std"
scheme = "standard"
secrets = ["whsec_{STD_KEY_B64}", "whsec_b2xkLWtleQ=="]
[[source]]
name = "gh"
scheme = "github"
secrets = ["gh-secret", "gh-old"]
[[source]]
name = "stripe"
scheme = "stripe"
secrets = ["whsec_stripe_literal", "whsec_old"]
[[source]]
name = "shop"
scheme = "shopify"
secrets = ["shpss_1", "shpss_0"]
[[source]]
name = "slack"
scheme = "slack"
secrets = ["slack-signing", "slack-old"]
[[source]]
name = "hmac"
scheme = "hmac"
secrets = ["generic", "generic-old"]
[[source]]
name = "hmac-custom"
scheme = "hmac"
secrets = ["custom"]
signature_header = "X-Sig"
id_header = "X-Delivery"
kind_header = "X-Kind"
[[source]]
name = "open"
scheme = "none"
kind_header = "X-Event"
"#
        );
        crate::config::load_str(&toml, &[]).expect("config").sources
    }

    fn source(name: &str) -> SourceConfig {
        sources()
            .into_iter()
            .find(|s| s.name == name)
            .expect("source")
    }

    /// What the server does with the signed request: verify with the
    /// source's secrets as the server parses them, then identify.
    fn receive(
        source: &SourceConfig,
        headers: &HeaderMap,
        body: &[u8],
        secrets: &[&str],
    ) -> Result<Identity, VerifyError> {
        let scheme = verify_scheme(source).expect("scheme");
        let secrets: Vec<Secret> = secrets
            .iter()
            .map(|s| Secret::parse(&scheme, s).expect("secret"))
            .collect();
        verify(&scheme, &secrets, headers, body, NOW, TOLERANCE)?;
        let rules = HeaderRules {
            id_header: source
                .id_header
                .as_deref()
                .map(|h| HeaderName::try_from(h.to_ascii_lowercase()).expect("name")),
            kind_header: source
                .kind_header
                .as_deref()
                .map(|h| HeaderName::try_from(h.to_ascii_lowercase()).expect("name")),
        };
        Ok(identify(&scheme, &rules, headers, body).expect("identify"))
    }

    fn exposed(source: &SourceConfig) -> Vec<String> {
        source
            .secrets
            .iter()
            .map(|s| s.expose().to_owned())
            .collect()
    }

    struct Case {
        source: &'static str,
        body: &'static str,
        kind: Option<&'static str>,
        id: Option<&'static str>,
        want_id: String,
        want_kind: &'static str,
    }

    fn cases() -> Vec<Case> {
        let case = |source, body, kind, id, want_id: &str, want_kind| Case {
            source,
            body,
            kind,
            id,
            want_id: want_id.to_owned(),
            want_kind,
        };
        let slack_body = r#"{"type":"event_callback","event":{"type":"app_mention"}}"#;
        let slack_hash = {
            use sha2::Digest;
            hex::encode(Sha256::digest(slack_body.as_bytes()))
        };
        #[rustfmt::skip]
        let cases = vec![
            case("std", r#"{"type":"invoice.paid"}"#, None, Some("msg_1"), "msg_1", "invoice.paid"),
            case("std", "not json", None, Some("msg_2"), "msg_2", "webhook"),
            case("gh", r#"{"ref":"main"}"#, Some("push"), Some("d-1"), "d-1", "push"),
            case("gh", r#"{"action":"opened"}"#, Some("issues.opened"), Some("d-2"), "d-2", "issues.opened"),
            case("gh", r#"{"action":"opened"}"#, Some("issues"), Some("d-3"), "d-3", "issues.opened"),
            case("stripe", r#"{"id":"evt_9","type":"invoice.paid"}"#, None, None, "evt_9", "invoice.paid"),
            case("shop", r#"{"id":1}"#, Some("orders/create"), Some("w-1"), "w-1", "orders/create"),
            case("slack", r#"{"event_id":"Ev1","event":{"type":"message"}}"#, None, None, "Ev1", "message"),
            case("slack", slack_body, None, None, &slack_hash, "app_mention"),
            case("hmac", r#"{"type":"build.done"}"#, None, Some("h-1"), "h-1", "build.done"),
            case("hmac-custom", "{}", Some("deploy"), Some("c-1"), "c-1", "deploy"),
            case("open", "{}", Some("local.test"), Some("o-1"), "o-1", "local.test"),
        ];
        cases
    }

    #[test]
    fn every_scheme_round_trips_through_verify_and_identify() {
        for c in cases() {
            let source = source(c.source);
            let message = Message {
                body: c.body.as_bytes(),
                kind: c.kind,
                id: c.id,
                now_unix_s: NOW,
            };
            let headers = sign(&source, &message).unwrap_or_else(|e| panic!("{}: {e}", c.source));
            let secrets = exposed(&source);
            let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
            let got = receive(&source, &headers, c.body.as_bytes(), &secrets)
                .unwrap_or_else(|e| panic!("{}: {e} ({headers:?})", c.source));
            assert_eq!(
                (got.provider_id.as_str(), got.kind.as_str()),
                (c.want_id.as_str(), c.want_kind),
                "{}",
                c.source
            );
            if source.scheme == SchemeName::None {
                continue;
            }
            // Signed with the first secret: it alone verifies, the second
            // alone does not, and neither does a changed body.
            let first = [secrets[0]];
            assert!(
                receive(&source, &headers, c.body.as_bytes(), &first).is_ok(),
                "{}",
                c.source
            );
            if let Some(second) = secrets.get(1) {
                assert_eq!(
                    receive(&source, &headers, c.body.as_bytes(), &[second]).err(),
                    Some(VerifyError::Mismatch),
                    "{}: signed with the first secret",
                    c.source
                );
            }
            let mut tampered = c.body.as_bytes().to_vec();
            tampered.push(b' ');
            assert_eq!(
                receive(&source, &headers, &tampered, &secrets).err(),
                Some(VerifyError::Mismatch),
                "{}",
                c.source
            );
        }
    }

    #[test]
    fn timestamps_are_the_given_time() {
        for name in ["std", "stripe", "slack"] {
            let source = source(name);
            let body = br#"{"id":"evt_1","type":"t"}"#;
            let message = Message {
                body,
                kind: None,
                id: (name == "std").then_some("m-1"),
                now_unix_s: NOW - 1000,
            };
            let headers = sign(&source, &message).expect("sign");
            let secrets = exposed(&source);
            let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
            let err = receive(&source, &headers, body, &secrets).expect_err(name);
            assert!(
                matches!(err, VerifyError::TimestampOutOfTolerance { timestamp, .. } if timestamp == NOW - 1000),
                "{name}: {err:?}"
            );
        }
    }

    #[test]
    fn ids_and_kinds_the_scheme_does_not_read_are_refused() {
        let msg = |kind, id| Message {
            body: b"{}",
            kind,
            id,
            now_unix_s: NOW,
        };
        #[rustfmt::skip]
        let refused: Vec<(&str, Message<'_>, &str)> = vec![
            ("std", msg(Some("k"), Some("m")), "takes the event kind from the body"),
            ("stripe", msg(Some("k"), None), "takes the event kind from the body"),
            ("stripe", msg(None, Some("i")), "takes the event id from the body"),
            ("slack", msg(None, Some("i")), "takes the event id from the body"),
            ("hmac", msg(Some("k"), Some("i")), "configure kind_header"),
            ("gh", msg(None, Some("d")), "X-GitHub-Event header: give one (e.g. --kind push)"),
            ("shop", msg(None, Some("w")), "X-Shopify-Topic"),
            ("gh", msg(Some("push"), None), "X-GitHub-Delivery"),
            ("std", msg(None, None), "webhook-id"),
            ("gh", msg(Some("bad\nkind"), Some("d")), "cannot be sent in a header"),
        ];
        for (name, message, want) in refused {
            let err = sign(&source(name), &message).expect_err(name);
            let text = err.to_string();
            assert!(text.contains(want), "{name}: {text}");
            for secret in exposed(&source(name)) {
                assert!(!text.contains(&secret), "{name}: leaks a secret: {text}");
            }
        }
        assert!(!id_in_header(SchemeName::Stripe) && !id_in_header(SchemeName::Slack));
        assert!(id_in_header(SchemeName::Github) && id_in_header(SchemeName::None));
    }

    #[test]
    fn github_kinds_map_to_the_event_header() {
        let opened = br#"{"action":"opened"}"#;
        assert_eq!(github_event("issues.opened", opened), "issues");
        assert_eq!(github_event("issues", opened), "issues");
        assert_eq!(github_event(".opened", opened), ".opened");
        assert_eq!(github_event("push", b"{}"), "push");
        assert_eq!(github_event("a.b", b"not json"), "a.b");
    }
}
