//! Which event a verified request is: the provider's id for it (the dedupe
//! key) and its kind, per the contract's scheme table, and the split of a
//! batched payload into one event per element.
//!
//! Pure functions over headers and raw bytes. Verification has already
//! happened; nothing here re-encodes the body: split elements are byte-exact
//! slices of the original.

use crate::verify::Scheme;
use http::{HeaderMap, HeaderName};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Longest provider id or kind accepted: real ones are under 100 bytes; a
/// bound keeps dedupe keys and routing patterns cheap.
pub const MAX_LABEL_BYTES: usize = 256;

/// The kind of an event with nothing better to go on.
const DEFAULT_KIND: &str = "webhook";

/// What identifies an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The provider's id for it: the dedupe key within its source.
    pub provider_id: String,
    /// `source:kind` routing uses this.
    pub kind: String,
}

/// Why a request does not identify an event: all are the client's mistake
/// (400).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentifyError {
    /// A header the scheme takes the id or kind from is missing.
    #[error("missing header {0}")]
    MissingHeader(String),
    /// A header value is not usable text, or too long.
    #[error("malformed header {0}")]
    MalformedHeader(String),
    /// The scheme needs a JSON body and this is not one.
    #[error("body is not JSON: {0}")]
    NotJson(String),
    /// The JSON lacks a field the scheme takes the id or kind from.
    #[error("body has no string field `{0}`")]
    MissingField(&'static str),
    /// An id or kind longer than [`MAX_LABEL_BYTES`].
    #[error("{0} is longer than 256 bytes")]
    TooLong(&'static str),
    /// `split` points at something that is not a JSON array.
    #[error("split: {0}")]
    Split(String),
    /// `split` found more elements than one request may become.
    #[error("the batch has {found} elements; at most {max} are accepted per request")]
    TooMany {
        /// Elements in the batch.
        found: usize,
        /// The most accepted.
        max: usize,
    },
}

/// Where the generic `hmac` and `none` schemes read the id and kind.
#[derive(Debug, Clone, Default)]
pub struct HeaderRules {
    /// Header with the provider's id (default `X-Webhook-Id`).
    pub id_header: Option<HeaderName>,
    /// Header with the kind (no default: then the body's `type`).
    pub kind_header: Option<HeaderName>,
}

/// The id and kind of one request, per the scheme table in DESIGN.md.
pub fn identify(
    scheme: &Scheme,
    rules: &HeaderRules,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Identity, IdentifyError> {
    let (provider_id, kind) = match scheme {
        Scheme::Standard => (
            required(headers, "webhook-id")?,
            json_type(body).unwrap_or_else(|| DEFAULT_KIND.into()),
        ),
        Scheme::Github => {
            let event = required(headers, "x-github-event")?;
            let kind = match top_level(body).ok().and_then(|t| text(t.action)) {
                Some(action) => format!("{event}.{action}"),
                None => event,
            };
            (required(headers, "x-github-delivery")?, kind)
        }
        Scheme::Stripe => {
            let top = top_level(body)?;
            (
                text(top.id).ok_or(IdentifyError::MissingField("id"))?,
                text(top.kind).ok_or(IdentifyError::MissingField("type"))?,
            )
        }
        Scheme::Shopify => (
            required(headers, "x-shopify-webhook-id")?,
            required(headers, "x-shopify-topic")?,
        ),
        Scheme::Slack => {
            let v = json(body).ok();
            let id = v.as_ref().and_then(|v| str_at(v, "/event_id"));
            let kind = v
                .as_ref()
                .and_then(|v| str_at(v, "/event/type").or_else(|| str_at(v, "/type")));
            (
                id.unwrap_or_else(|| sha256_hex(body)),
                kind.unwrap_or_else(|| DEFAULT_KIND.into()),
            )
        }
        Scheme::Hmac { .. } | Scheme::None => {
            let id_header = rules
                .id_header
                .clone()
                .unwrap_or(HeaderName::from_static("x-webhook-id"));
            let id = optional(headers, id_header.as_str())?.unwrap_or_else(|| sha256_hex(body));
            let from_header = match &rules.kind_header {
                Some(h) => optional(headers, h.as_str())?,
                None => None,
            };
            let kind = from_header
                .or_else(|| json_type(body))
                .unwrap_or_else(|| DEFAULT_KIND.into());
            (id, kind)
        }
    };
    bounded(Identity { provider_id, kind })
}

/// Split a batched payload: the array at JSON pointer `pointer` (`""` for a
/// top-level array) becomes one event per element, whose provider id is
/// `{request id}:{index}` and whose kind is the element's `type` when it
/// has one, else the request's kind. Bodies are the elements' exact bytes.
/// More than `max` elements are refused ([`IdentifyError::TooMany`]) before
/// any per-element work.
pub fn split(
    request: &Identity,
    body: &[u8],
    pointer: &str,
    max: usize,
) -> Result<Vec<(Identity, Vec<u8>)>, IdentifyError> {
    let mut here: &RawValue =
        serde_json::from_slice(body).map_err(|e| IdentifyError::NotJson(e.to_string()))?;
    for token in pointer.split('/').skip(1) {
        let token = token.replace("~1", "/").replace("~0", "~");
        let missing = || IdentifyError::Split(format!("nothing at {pointer:?}"));
        here = if here.get().trim_start().starts_with('[') {
            let items: Vec<&RawValue> = serde_json::from_str(here.get()).map_err(|_| missing())?;
            let i: usize = token.parse().map_err(|_| missing())?;
            *items.get(i).ok_or_else(missing)?
        } else {
            let fields: BTreeMap<String, &RawValue> =
                serde_json::from_str(here.get()).map_err(|_| missing())?;
            *fields.get(&token).ok_or_else(missing)?
        };
    }
    let mut de = serde_json::Deserializer::from_str(here.get());
    let items = serde::Deserializer::deserialize_seq(&mut de, AtMost { max })
        .map_err(|_| IdentifyError::Split(format!("{pointer:?} is not an array")))?
        .map_err(|found| IdentifyError::TooMany { found, max })?;
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let bytes = item.get().as_bytes().to_vec();
            let identity = bounded(Identity {
                provider_id: format!("{}:{i}", request.provider_id),
                kind: json_type(&bytes).unwrap_or_else(|| request.kind.clone()),
            })?;
            Ok((identity, bytes))
        })
        .collect()
}

fn bounded(identity: Identity) -> Result<Identity, IdentifyError> {
    if identity.provider_id.len() > MAX_LABEL_BYTES {
        return Err(IdentifyError::TooLong("event id"));
    }
    if identity.kind.len() > MAX_LABEL_BYTES {
        return Err(IdentifyError::TooLong("event kind"));
    }
    Ok(identity)
}

fn optional(headers: &HeaderMap, name: &str) -> Result<Option<String>, IdentifyError> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => {
            let text = v
                .to_str()
                .map_err(|_| IdentifyError::MalformedHeader(name.to_owned()))?
                .trim();
            Ok((!text.is_empty()).then(|| text.to_owned()))
        }
    }
}

/// A JSON array's elements, unparsed, when it has at most `max`; else
/// `Err(count)`, counted without keeping the rest.
struct AtMost {
    max: usize,
}

impl<'de> serde::de::Visitor<'de> for AtMost {
    type Value = Result<Vec<&'de RawValue>, usize>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON array")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<&'de RawValue>()? {
            if items.len() == self.max {
                let mut found = self.max + 1;
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                    found += 1;
                }
                return Ok(Err(found));
            }
            items.push(item);
        }
        Ok(Ok(items))
    }
}

fn required(headers: &HeaderMap, name: &str) -> Result<String, IdentifyError> {
    optional(headers, name)?.ok_or_else(|| IdentifyError::MissingHeader(name.to_owned()))
}

fn json(body: &[u8]) -> Result<serde_json::Value, IdentifyError> {
    serde_json::from_slice(body).map_err(|e| IdentifyError::NotJson(e.to_string()))
}

fn str_at(v: &serde_json::Value, pointer: &str) -> Option<String> {
    v.pointer(pointer)?.as_str().map(str::to_owned)
}

/// The top-level fields schemes take an id or kind from, left unparsed:
/// reading only these (instead of building the whole document as a
/// `serde_json::Value`) spares an allocation per string and map in the
/// body on every request.
#[derive(serde::Deserialize)]
struct TopLevel<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "type")]
    kind: Option<&'a RawValue>,
    #[serde(borrow, default)]
    action: Option<&'a RawValue>,
}

/// The body's top-level fields, when it is a JSON object.
fn top_level(body: &[u8]) -> Result<TopLevel<'_>, IdentifyError> {
    // A derived struct would also take an array, field by position.
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(IdentifyError::NotJson("not a JSON object".into()));
    }
    serde_json::from_slice(body).map_err(|e| IdentifyError::NotJson(e.to_string()))
}

/// A field's value when it is a JSON string.
fn text(raw: Option<&RawValue>) -> Option<String> {
    serde_json::from_str(raw?.get()).ok()
}

/// The body's top-level `type`, when the body is a JSON object with one.
fn json_type(body: &[u8]) -> Option<String> {
    text(top_level(body).ok()?.kind)
}

fn sha256_hex(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().expect("header value"));
        }
        h
    }

    fn id(
        scheme: Scheme,
        h: &[(&'static str, &str)],
        body: &str,
    ) -> Result<Identity, IdentifyError> {
        identify(
            &scheme,
            &HeaderRules::default(),
            &headers(h),
            body.as_bytes(),
        )
    }

    fn ok(provider_id: &str, kind: &str) -> Result<Identity, IdentifyError> {
        Ok(Identity {
            provider_id: provider_id.into(),
            kind: kind.into(),
        })
    }

    #[test]
    fn the_contract_table() {
        let body_hash = sha256_hex(b"token=x");
        let cases: Vec<(
            Result<Identity, IdentifyError>,
            Result<Identity, IdentifyError>,
        )> = vec![
            (
                id(
                    Scheme::Standard,
                    &[("webhook-id", "msg_1")],
                    r#"{"type":"user.created"}"#,
                ),
                ok("msg_1", "user.created"),
            ),
            (
                id(Scheme::Standard, &[("webhook-id", "msg_1")], "not json"),
                ok("msg_1", "webhook"),
            ),
            (
                id(Scheme::Standard, &[], "{}"),
                Err(IdentifyError::MissingHeader("webhook-id".into())),
            ),
            (
                id(
                    Scheme::Github,
                    &[("x-github-delivery", "d1"), ("x-github-event", "issues")],
                    r#"{"action":"opened"}"#,
                ),
                ok("d1", "issues.opened"),
            ),
            (
                id(
                    Scheme::Github,
                    &[("x-github-delivery", "d2"), ("x-github-event", "ping")],
                    "{}",
                ),
                ok("d2", "ping"),
            ),
            (
                id(Scheme::Github, &[("x-github-event", "ping")], "{}"),
                Err(IdentifyError::MissingHeader("x-github-delivery".into())),
            ),
            (
                id(
                    Scheme::Stripe,
                    &[],
                    r#"{"id":"evt_1","type":"invoice.paid"}"#,
                ),
                ok("evt_1", "invoice.paid"),
            ),
            (
                id(Scheme::Stripe, &[], r#"{"type":"invoice.paid"}"#),
                Err(IdentifyError::MissingField("id")),
            ),
            (
                // Only strings count; nested and later fields are skipped.
                id(
                    Scheme::Stripe,
                    &[],
                    r#" {"id":7,"data":{"id":"x","type":"y"},"type":"t"}"#,
                ),
                Err(IdentifyError::MissingField("id")),
            ),
            (
                id(
                    Scheme::Stripe,
                    &[],
                    r#"{"data":{"object":[1,{"id":"no"}]},"type":"a\u002eb","id":"evt_\"2"}"#,
                ),
                ok("evt_\"2", "a.b"),
            ),
            (
                // An array is no object, even with strings in the right places.
                id(Scheme::Stripe, &[], r#"["evt_1","invoice.paid"]"#),
                Err(IdentifyError::NotJson("not a JSON object".into())),
            ),
            (
                id(
                    Scheme::Github,
                    &[("x-github-delivery", "d3"), ("x-github-event", "issues")],
                    r#"{"action":{"nested":"opened"}}"#,
                ),
                ok("d3", "issues"),
            ),
            (
                id(
                    Scheme::Shopify,
                    &[
                        ("x-shopify-webhook-id", "s1"),
                        ("x-shopify-topic", "orders/create"),
                    ],
                    "{}",
                ),
                ok("s1", "orders/create"),
            ),
            (
                id(
                    Scheme::Slack,
                    &[],
                    r#"{"event_id":"Ev1","type":"event_callback","event":{"type":"message"}}"#,
                ),
                ok("Ev1", "message"),
            ),
            (id(Scheme::Slack, &[], "token=x"), ok(&body_hash, "webhook")),
            (
                id(Scheme::None, &[("x-webhook-id", "h1")], r#"{"type":"t"}"#),
                ok("h1", "t"),
            ),
            (
                id(Scheme::hmac_default(), &[], "token=x"),
                ok(&body_hash, "webhook"),
            ),
        ];
        for (i, (got, want)) in cases.into_iter().enumerate() {
            assert_eq!(got, want, "case {i}");
        }
        assert!(matches!(
            id(Scheme::Stripe, &[], "<xml/>"),
            Err(IdentifyError::NotJson(_))
        ));
        let long = "x".repeat(MAX_LABEL_BYTES + 1);
        assert_eq!(
            id(Scheme::None, &[("x-webhook-id", &long)], "{}"),
            Err(IdentifyError::TooLong("event id"))
        );
    }

    #[test]
    fn generic_schemes_read_configured_headers() {
        let rules = HeaderRules {
            id_header: Some(HeaderName::from_static("x-delivery")),
            kind_header: Some(HeaderName::from_static("x-topic")),
        };
        let h = headers(&[("x-delivery", "d9"), ("x-topic", "build.done")]);
        let got = identify(&Scheme::None, &rules, &h, br#"{"type":"ignored"}"#);
        assert_eq!(got, ok("d9", "build.done"));
    }

    #[test]
    fn split_keeps_element_bytes_and_numbers_ids() {
        let request = Identity {
            provider_id: "req".into(),
            kind: "batch".into(),
        };
        let body = br#"[ {"type":"a", "n": 1.50}, {"n":2} ]"#;
        let parts = split(&request, body, "", 10).expect("split");
        assert_eq!(parts.len(), 2);
        assert_eq!(
            parts[0].0,
            Identity {
                provider_id: "req:0".into(),
                kind: "a".into()
            }
        );
        assert_eq!(
            parts[0].1,
            br#"{"type":"a", "n": 1.50}"#.to_vec(),
            "byte-exact, 1.50 kept"
        );
        assert_eq!(
            parts[1].0,
            Identity {
                provider_id: "req:1".into(),
                kind: "batch".into()
            }
        );

        let nested = br#"{"data":{"items":[{"x":1}]}}"#;
        assert_eq!(
            split(&request, nested, "/data/items", 10)
                .expect("nested")
                .len(),
            1
        );
        assert!(matches!(
            split(&request, nested, "/data", 10),
            Err(IdentifyError::Split(_))
        ));
        assert!(matches!(
            split(&request, nested, "/nope", 10),
            Err(IdentifyError::Split(_))
        ));
        assert!(matches!(
            split(&request, b"nope", "", 10),
            Err(IdentifyError::NotJson(_))
        ));
        assert_eq!(split(&request, b"[]", "", 10).expect("empty"), vec![]);

        // The cap: exactly `max` pass, one more is counted and refused.
        let three = br#"{"a/b":[{},[1,2],"x"]}"#;
        assert_eq!(split(&request, three, "/a~1b", 3).expect("at max").len(), 3);
        assert_eq!(
            split(&request, three, "/a~1b", 2),
            Err(IdentifyError::TooMany { found: 3, max: 2 })
        );
        assert_eq!(
            split(&request, b"[1,2,3,4,5]", "", 0),
            Err(IdentifyError::TooMany { found: 5, max: 0 })
        );
    }
}
