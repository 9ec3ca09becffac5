//! Webhook signature verification: decides whether a request's raw body and
//! headers were signed by someone holding one of a source's secrets, for each
//! scheme in DESIGN.md ("Ingest HTTP contract").
//!
//! This module owns the signed-bytes layout of every scheme, the parsing of
//! signature and timestamp headers, secret decoding, rotation (any secret, any
//! signature), constant-time comparison and the timestamp tolerance. It is
//! pure: no I/O, no clock reads (the caller passes `now`), no config parsing,
//! no logging. It must never verify anything but the raw body bytes as
//! received, never compare signatures with `==`, and never put a secret or a
//! computed signature into an error or a `Debug` string.

use std::fmt;

use crate::config::SchemeName;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use http::{HeaderMap, HeaderName};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Longest header value we parse. Real signature headers are well under 1 KiB
/// (a Standard header with a handful of rotated signatures is ~300 bytes);
/// 8 KiB leaves room for many signatures while bounding the HMAC work one
/// request can ask for (one finalization per signature per secret).
const MAX_HEADER_LEN: usize = 8 * 1024;

/// Longest accepted timestamp in digits: 18 digits always fit in an `i64`,
/// and unix seconds will not need more for a very long time.
const MAX_TIMESTAMP_DIGITS: usize = 18;

/// Header spellings as the providers document them (lookups are
/// case-insensitive; these are also the names shown in errors).
const STANDARD_ID: &str = "webhook-id";
const STANDARD_TIMESTAMP: &str = "webhook-timestamp";
const STANDARD_SIGNATURE: &str = "webhook-signature";
const GITHUB_SIGNATURE: &str = "X-Hub-Signature-256";
const STRIPE_SIGNATURE: &str = "Stripe-Signature";
const SHOPIFY_SIGNATURE: &str = "X-Shopify-Hmac-Sha256";
const SLACK_SIGNATURE: &str = "X-Slack-Signature";
const SLACK_TIMESTAMP: &str = "X-Slack-Request-Timestamp";
const HMAC_DEFAULT_SIGNATURE: &str = "x-webhook-signature";

/// The `whsec_` prefix of Standard Webhooks (and Stripe) secrets.
const WHSEC_PREFIX: &str = "whsec_";

/// Which provider's signature scheme a source uses. Each sends its signature
/// in different headers, over different bytes, in a different encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scheme {
    /// Standard Webhooks (Svix): `webhook-signature: v1,<base64> ...` over
    /// `{webhook-id}.{webhook-timestamp}.{body}`.
    Standard,
    /// GitHub: `X-Hub-Signature-256: sha256=<hex>` over the body.
    Github,
    /// Stripe: `Stripe-Signature: t=<ts>,v1=<hex>[,v1=<hex>]` over `{t}.{body}`.
    Stripe,
    /// Shopify: `X-Shopify-Hmac-Sha256: <base64>` over the body.
    Shopify,
    /// Slack: `X-Slack-Signature: v0=<hex>` over `v0:{ts}:{body}`, with
    /// `X-Slack-Request-Timestamp`.
    Slack,
    /// Generic HMAC for senders that follow no provider: `sha256=<hex>` or
    /// bare `<hex>` over the body, in a header the operator names.
    Hmac {
        /// Header carrying the signature (default `X-Webhook-Signature`, see
        /// [`Scheme::hmac_default`]).
        signature_header: HeaderName,
    },
    /// No verification (local testing only): every request passes.
    None,
}

impl Scheme {
    /// The scheme a source's config names, with its signature header for
    /// `hmac` (the default header when none is set): one mapping for the
    /// server that verifies and `hookhost send`, which signs.
    pub fn from_config(name: SchemeName, signature_header: Option<HeaderName>) -> Self {
        match name {
            SchemeName::Standard => Scheme::Standard,
            SchemeName::Github => Scheme::Github,
            SchemeName::Stripe => Scheme::Stripe,
            SchemeName::Shopify => Scheme::Shopify,
            SchemeName::Slack => Scheme::Slack,
            SchemeName::None => Scheme::None,
            SchemeName::Hmac => match signature_header {
                Some(h) => Scheme::Hmac {
                    signature_header: h,
                },
                None => Scheme::hmac_default(),
            },
        }
    }

    /// The generic HMAC scheme with its documented default header, so config
    /// and tests do not repeat the header name.
    pub fn hmac_default() -> Self {
        Scheme::Hmac {
            signature_header: HeaderName::from_static(HMAC_DEFAULT_SIGNATURE),
        }
    }

    /// The scheme's name as written in the config (`scheme = "..."`), for
    /// logs, metrics and error messages.
    pub fn name(&self) -> &'static str {
        match self {
            Scheme::Standard => "standard",
            Scheme::Github => "github",
            Scheme::Stripe => "stripe",
            Scheme::Shopify => "shopify",
            Scheme::Slack => "slack",
            Scheme::Hmac { .. } => "hmac",
            Scheme::None => "none",
        }
    }

    /// Whether the scheme checks signatures and so needs at least one secret;
    /// config validation refuses a source without secrets unless this is false.
    pub fn needs_secret(&self) -> bool {
        !matches!(self, Scheme::None)
    }
}

/// One signing secret, as the key bytes HMAC uses. Decoded once at config
/// load so a bad secret fails at start, not on the first request. Its `Debug`
/// never shows the key.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Why a configured secret cannot be used. Messages describe the problem
/// without quoting the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// The secret string is empty: an HMAC with an empty key authenticates
    /// nothing.
    #[error("secret is empty")]
    Empty,
    /// A Standard Webhooks secret decoded to zero key bytes (e.g. `whsec_`).
    #[error("standard secret has an empty key after the `whsec_` prefix")]
    EmptyKey,
    /// A Standard Webhooks secret is not valid base64.
    #[error("standard secret is not valid base64 (standard alphabet, padded): {reason}")]
    InvalidBase64 {
        /// What is wrong, without the offending characters.
        reason: String,
    },
}

impl Secret {
    /// Turns a configured secret string into key bytes for `scheme`: its
    /// UTF-8 bytes, except for [`Scheme::Standard`], where an optional
    /// `whsec_` prefix is stripped and the rest base64-decoded (as Svix does).
    /// A Stripe secret also starts with `whsec_` but is used literally.
    pub fn parse(scheme: &Scheme, raw: &str) -> Result<Secret, SecretError> {
        if raw.is_empty() {
            return Err(SecretError::Empty);
        }
        if *scheme != Scheme::Standard {
            return Ok(Secret(raw.as_bytes().to_vec()));
        }
        let encoded = raw.strip_prefix(WHSEC_PREFIX).unwrap_or(raw);
        let key = BASE64
            .decode(encoded)
            .map_err(|e| SecretError::InvalidBase64 {
                reason: base64_reason(&e),
            })?;
        if key.is_empty() {
            return Err(SecretError::EmptyKey);
        }
        Ok(Secret(key))
    }

    /// The HMAC key: what a provider signs with (`hookhost send`).
    pub fn key(&self) -> &[u8] {
        &self.0
    }

    /// A keyed HMAC-SHA256. HMAC accepts keys of any length, so this cannot
    /// fail in practice; `None` just means "this secret matches nothing".
    fn mac(&self) -> Option<HmacSha256> {
        <HmacSha256 as KeyInit>::new_from_slice(&self.0).ok()
    }
}

/// Describes a base64 error without the offending symbol (which would be a
/// character of the secret).
fn base64_reason(e: &base64::DecodeError) -> String {
    match e {
        base64::DecodeError::InvalidByte(offset, _) => {
            format!("invalid character at offset {offset}")
        }
        base64::DecodeError::InvalidLastSymbol(offset, _) => {
            format!("invalid last character at offset {offset}")
        }
        base64::DecodeError::InvalidLength(_) => "invalid length".to_owned(),
        base64::DecodeError::InvalidPadding => "invalid padding".to_owned(),
    }
}

/// What a successful verification established beyond "authentic".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// The signed timestamp (unix seconds) for schemes that sign one
    /// (standard, stripe, slack), so callers can record when it was sent.
    pub timestamp: Option<i64>,
}

/// Why a request failed verification. Ingest maps it to an HTTP answer with
/// [`VerifyError::status`] and [`VerifyError::code`]; messages never contain
/// a secret or a computed signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A header the scheme requires (signature, timestamp or id) is absent.
    #[error("missing header `{0}`")]
    MissingHeader(String),
    /// A header the scheme requires cannot be parsed.
    #[error("malformed header `{header}`: {reason}")]
    MalformedHeader {
        /// The header's name.
        header: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// No configured secret produced any of the request's signatures.
    #[error("signature does not match")]
    Mismatch,
    /// The signed timestamp is too far from now: a replay or a skewed clock.
    #[error("timestamp {timestamp} is outside the {tolerance} s tolerance of now ({now})")]
    TimestampOutOfTolerance {
        /// The request's timestamp (unix seconds).
        timestamp: i64,
        /// The server's time used for the check (unix seconds).
        now: i64,
        /// Allowed distance in seconds, either direction.
        tolerance: u64,
    },
    /// A verifying scheme was given no secrets: a server or config bug, not
    /// the sender's fault.
    #[error("no secrets configured for a scheme that verifies signatures")]
    NoSecrets,
}

impl VerifyError {
    /// The HTTP status the ingest contract assigns: 400 for a missing or
    /// malformed header, 401 for a mismatch or replay, 500 for our own
    /// misconfiguration.
    pub fn status(&self) -> u16 {
        match self {
            VerifyError::MissingHeader(_) | VerifyError::MalformedHeader { .. } => 400,
            VerifyError::Mismatch | VerifyError::TimestampOutOfTolerance { .. } => 401,
            VerifyError::NoSecrets => 500,
        }
    }

    /// The short machine code for the `error` field of the JSON error body;
    /// stable, so clients can match on it instead of the message. The
    /// `*_signature` header codes cover every header the signature depends
    /// on (signature, timestamp, id); the message names which.
    pub fn code(&self) -> &'static str {
        match self {
            VerifyError::MissingHeader(_) => "missing_signature",
            VerifyError::MalformedHeader { .. } => "malformed_signature",
            VerifyError::Mismatch => "signature_mismatch",
            VerifyError::TimestampOutOfTolerance { .. } => "timestamp_out_of_tolerance",
            VerifyError::NoSecrets => "no_secrets",
        }
    }
}

/// Verifies a request under `scheme`: passes when any of `secrets` produced
/// any of the request's signatures over the raw `body` (rotation), and, for
/// schemes with a timestamp, when `|now_unix_s - timestamp| <= tolerance_s`.
///
/// The signature is checked before the timestamp, so `TimestampOutOfTolerance`
/// only ever describes an authentic but stale (or future) request, and a
/// forgery is always `Mismatch`.
pub fn verify(
    scheme: &Scheme,
    secrets: &[Secret],
    headers: &HeaderMap,
    body: &[u8],
    now_unix_s: i64,
    tolerance_s: u64,
) -> Result<Verified, VerifyError> {
    if scheme.needs_secret() && secrets.is_empty() {
        return Err(VerifyError::NoSecrets);
    }
    match scheme {
        Scheme::None => Ok(Verified { timestamp: None }),
        Scheme::Standard => {
            let id = header(headers, STANDARD_ID)?;
            let ts_raw = header(headers, STANDARD_TIMESTAMP)?;
            let ts = parse_timestamp(STANDARD_TIMESTAMP, ts_raw)?;
            let sigs = standard_signatures(header(headers, STANDARD_SIGNATURE)?)?;
            let parts = [id.as_bytes(), b".", ts_raw.as_bytes(), b".", body];
            check_any(secrets, &parts, &sigs)?;
            check_tolerance(ts, now_unix_s, tolerance_s)
        }
        Scheme::Github => {
            let value = header(headers, GITHUB_SIGNATURE)?;
            let hex_sig = value
                .strip_prefix("sha256=")
                .ok_or(malformed(GITHUB_SIGNATURE, "expected `sha256=<hex>`"))?;
            let sig = decode_hex(GITHUB_SIGNATURE, hex_sig)?;
            check_any(secrets, &[body], &[sig])?;
            Ok(Verified { timestamp: None })
        }
        Scheme::Stripe => {
            let (ts_raw, sigs) = stripe_header(header(headers, STRIPE_SIGNATURE)?)?;
            let ts = parse_timestamp(STRIPE_SIGNATURE, ts_raw)?;
            check_any(secrets, &[ts_raw.as_bytes(), b".", body], &sigs)?;
            check_tolerance(ts, now_unix_s, tolerance_s)
        }
        Scheme::Shopify => {
            let value = header(headers, SHOPIFY_SIGNATURE)?;
            let sig = BASE64
                .decode(value)
                .map_err(|_| malformed(SHOPIFY_SIGNATURE, "expected base64"))?;
            check_any(secrets, &[body], &[sig])?;
            Ok(Verified { timestamp: None })
        }
        Scheme::Slack => {
            let ts_raw = header(headers, SLACK_TIMESTAMP)?;
            let ts = parse_timestamp(SLACK_TIMESTAMP, ts_raw)?;
            let value = header(headers, SLACK_SIGNATURE)?;
            let hex_sig = value
                .strip_prefix("v0=")
                .ok_or(malformed(SLACK_SIGNATURE, "expected `v0=<hex>`"))?;
            let sig = decode_hex(SLACK_SIGNATURE, hex_sig)?;
            let parts = [b"v0:".as_slice(), ts_raw.as_bytes(), b":", body];
            check_any(secrets, &parts, &[sig])?;
            check_tolerance(ts, now_unix_s, tolerance_s)
        }
        Scheme::Hmac { signature_header } => {
            let name = signature_header.as_str();
            let value = header(headers, name)?;
            let hex_sig = value.strip_prefix("sha256=").unwrap_or(value);
            let sig = decode_hex(name, hex_sig)?;
            check_any(secrets, &[body], &[sig])?;
            Ok(Verified { timestamp: None })
        }
    }
}

fn malformed(header: &str, reason: &'static str) -> VerifyError {
    VerifyError::MalformedHeader {
        header: header.to_owned(),
        reason,
    }
}

/// The single value of a required header as text. A repeated header is
/// refused: two proxies could disagree on which copy counts.
fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, VerifyError> {
    let mut values = headers.get_all(name).iter();
    let value = values
        .next()
        .ok_or_else(|| VerifyError::MissingHeader(name.to_owned()))?;
    if values.next().is_some() {
        return Err(malformed(name, "header appears more than once"));
    }
    if value.len() > MAX_HEADER_LEN {
        return Err(malformed(name, "value longer than 8 KiB"));
    }
    let text = value
        .to_str()
        .map_err(|_| malformed(name, "value is not visible ASCII"))?;
    Ok(text.trim())
}

/// Unix seconds as decimal digits only (no sign, no spaces, no fraction).
fn parse_timestamp(name: &str, raw: &str) -> Result<i64, VerifyError> {
    if raw.is_empty()
        || raw.len() > MAX_TIMESTAMP_DIGITS
        || !raw.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(malformed(name, "timestamp must be unix seconds in digits"));
    }
    raw.parse()
        .map_err(|_| malformed(name, "timestamp must be unix seconds in digits"))
}

fn decode_hex(name: &str, text: &str) -> Result<Vec<u8>, VerifyError> {
    hex::decode(text).map_err(|_| malformed(name, "signature is not hex"))
}

/// The `v1` signatures of a Standard `webhook-signature` header. Entries with
/// another version (e.g. `v1a,` for asymmetric signatures) or undecodable
/// base64 cannot match and are skipped; a header with none left is malformed.
fn standard_signatures(value: &str) -> Result<Vec<Vec<u8>>, VerifyError> {
    let sigs: Vec<Vec<u8>> = value
        .split_ascii_whitespace()
        .filter_map(|entry| entry.split_once(','))
        .filter(|(version, _)| *version == "v1")
        .filter_map(|(_, sig)| BASE64.decode(sig).ok())
        .collect();
    if sigs.is_empty() {
        return Err(malformed(STANDARD_SIGNATURE, "no `v1,<base64>` signature"));
    }
    Ok(sigs)
}

/// The timestamp and `v1` signatures of a `Stripe-Signature` header. `v0`
/// and unknown keys are ignored, undecodable `v1` entries cannot match; there
/// must be exactly one `t` and at least one decodable `v1`.
fn stripe_header(value: &str) -> Result<(&str, Vec<Vec<u8>>), VerifyError> {
    let mut ts = None;
    let mut sigs = Vec::new();
    for (key, val) in value.split(',').filter_map(|item| item.split_once('=')) {
        match key.trim() {
            "t" if ts.is_some() => {
                return Err(malformed(STRIPE_SIGNATURE, "more than one `t=`"));
            }
            "t" => ts = Some(val.trim()),
            "v1" => {
                if let Ok(sig) = hex::decode(val.trim()) {
                    sigs.push(sig);
                }
            }
            _ => {}
        }
    }
    let ts = ts.ok_or(malformed(STRIPE_SIGNATURE, "no `t=` timestamp"))?;
    if sigs.is_empty() {
        return Err(malformed(STRIPE_SIGNATURE, "no `v1=<hex>` signature"));
    }
    Ok((ts, sigs))
}

/// Passes when any (secret, signature) pair matches the HMAC of the
/// concatenated `parts`. Each comparison is constant-time and requires the
/// full 32 bytes (`verify_slice`), so a truncated signature never matches.
fn check_any(secrets: &[Secret], parts: &[&[u8]], sigs: &[Vec<u8>]) -> Result<(), VerifyError> {
    for secret in secrets {
        let Some(mut mac) = secret.mac() else {
            continue;
        };
        for part in parts {
            mac.update(part);
        }
        // Hash the body once per secret; each signature only pays for a
        // clone and the finalization.
        if sigs.iter().any(|sig| mac.clone().verify_slice(sig).is_ok()) {
            return Ok(());
        }
    }
    Err(VerifyError::Mismatch)
}

/// Tolerance applies both ways: an old timestamp is a replay, a future one a
/// pre-signed request or a skewed clock.
fn check_tolerance(ts: i64, now: i64, tolerance: u64) -> Result<Verified, VerifyError> {
    // i128 so that no pair of i64 values can overflow the subtraction.
    let distance = (i128::from(now) - i128::from(ts)).unsigned_abs();
    if distance > u128::from(tolerance) {
        return Err(VerifyError::TimestampOutOfTolerance {
            timestamp: ts,
            now,
            tolerance,
        });
    }
    Ok(Verified {
        timestamp: Some(ts),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const TOL: u64 = 300;

    /// Request headers as (name, value) pairs, in the order they are sent.
    type Headers = Vec<(&'static str, String)>;

    // Standard Webhooks' published test vector.
    const STD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const STD_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const STD_TS: i64 = 1_614_265_330;
    const STD_BODY: &str = r#"{"test": 2432232314}"#;
    const STD_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    // GitHub's "Validating webhook deliveries" example.
    const GH_SECRET: &str = "It's a Secret to Everybody";
    const GH_BODY: &str = "Hello, World!";
    const GH_SIG: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    // Slack's "Verifying requests from Slack" example.
    const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const SLACK_TS: i64 = 1_531_420_618;
    const SLACK_BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const SLACK_SIG: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

    /// Expected outcome of one case, by variant (plus the header where it
    /// matters).
    #[derive(Debug, PartialEq)]
    enum Want {
        Pass(Option<i64>),
        Missing(&'static str),
        Malformed(&'static str),
        Mismatch,
        Stale,
        NoSecrets,
    }

    struct Case {
        name: &'static str,
        scheme: Scheme,
        secrets: Vec<&'static str>,
        headers: Headers,
        body: Vec<u8>,
        now: i64,
        want: Want,
    }

    fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key).expect("any key length");
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().to_vec()
    }

    fn header_map(pairs: &[(&'static str, String)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).expect("header name"),
                HeaderValue::from_str(value).expect("header value"),
            );
        }
        map
    }

    fn outcome(result: Result<Verified, VerifyError>) -> Want {
        match result {
            Ok(v) => Want::Pass(v.timestamp),
            Err(VerifyError::MissingHeader(h)) => Want::Missing(leak(h)),
            Err(VerifyError::MalformedHeader { header, .. }) => Want::Malformed(leak(header)),
            Err(VerifyError::Mismatch) => Want::Mismatch,
            Err(VerifyError::TimestampOutOfTolerance { .. }) => Want::Stale,
            Err(VerifyError::NoSecrets) => Want::NoSecrets,
        }
    }

    fn leak(s: String) -> &'static str {
        Box::leak(s.into_boxed_str())
    }

    fn run(cases: Vec<Case>) {
        for case in cases {
            let secrets: Vec<Secret> = case
                .secrets
                .iter()
                .map(|raw| Secret::parse(&case.scheme, raw).expect("valid secret"))
                .collect();
            let result = verify(
                &case.scheme,
                &secrets,
                &header_map(&case.headers),
                &case.body,
                case.now,
                TOL,
            );
            if let Err(e) = &result {
                let message = e.to_string();
                for raw in &case.secrets {
                    assert!(
                        !message.contains(raw),
                        "{}: message leaks secret",
                        case.name
                    );
                }
            }
            assert_eq!(outcome(result), case.want, "case {}", case.name);
        }
    }

    fn without(headers: &[(&'static str, String)], name: &str) -> Headers {
        headers
            .iter()
            .filter(|(n, _)| !n.eq_ignore_ascii_case(name))
            .cloned()
            .collect()
    }

    fn with(headers: &[(&'static str, String)], name: &'static str, value: &str) -> Headers {
        let mut out = without(headers, name);
        out.push((name, value.to_owned()));
        out
    }

    fn tampered(body: &str) -> Vec<u8> {
        let mut bytes = body.as_bytes().to_vec();
        bytes[0] ^= 0x01;
        bytes
    }

    /// A Standard signature cut to 31 bytes but still valid base64, so the
    /// case tests the length check, not the decoder.
    fn truncated_b64(sig_b64: &str) -> String {
        let mut bytes = BASE64.decode(sig_b64).expect("base64");
        bytes.pop();
        BASE64.encode(bytes)
    }

    #[test]
    fn standard_webhooks_vector() {
        let std = Scheme::Standard;
        let hs = vec![
            ("webhook-id", STD_ID.to_owned()),
            ("webhook-timestamp", STD_TS.to_string()),
            ("webhook-signature", STD_SIG.to_owned()),
        ];
        let body = STD_BODY.as_bytes().to_vec();
        let sig_b64 = &STD_SIG[3..];
        let other = "whsec_".to_owned() + &BASE64.encode(b"another key of 24 bytes!");
        let other: &'static str = leak(other);
        let case = |name, secrets: Vec<&'static str>, headers, body, now, want| Case {
            name,
            scheme: std.clone(),
            secrets,
            headers,
            body,
            now,
            want,
        };
        #[rustfmt::skip]
        let cases = vec![
            case("vector", vec![STD_SECRET], hs.clone(), body.clone(), STD_TS, Want::Pass(Some(STD_TS))),
            case("secret without whsec_ prefix", vec![&STD_SECRET[6..]], hs.clone(), body.clone(), STD_TS, Want::Pass(Some(STD_TS))),
            case("now = ts + tol", vec![STD_SECRET], hs.clone(), body.clone(), STD_TS + 300, Want::Pass(Some(STD_TS))),
            case("now = ts + tol + 1", vec![STD_SECRET], hs.clone(), body.clone(), STD_TS + 301, Want::Stale),
            case("now = ts - tol", vec![STD_SECRET], hs.clone(), body.clone(), STD_TS - 300, Want::Pass(Some(STD_TS))),
            case("now = ts - tol - 1", vec![STD_SECRET], hs.clone(), body.clone(), STD_TS - 301, Want::Stale),
            case("truncated signature (31 bytes)", vec![STD_SECRET], with(&hs, "webhook-signature", &format!("v1,{}", truncated_b64(sig_b64))), body.clone(), STD_TS, Want::Mismatch),
            case("truncated signature text", vec![STD_SECRET], with(&hs, "webhook-signature", &STD_SIG[..STD_SIG.len() - 4]), body.clone(), STD_TS, Want::Mismatch),
            case("unknown version only", vec![STD_SECRET], with(&hs, "webhook-signature", &format!("v2,{sig_b64}")), body.clone(), STD_TS, Want::Malformed("webhook-signature")),
            case("v1a entry ignored, v1 matches", vec![STD_SECRET], with(&hs, "webhook-signature", &format!("v1a,{sig_b64} {STD_SIG}")), body.clone(), STD_TS, Want::Pass(Some(STD_TS))),
            case("v1a with the right bytes does not count", vec![STD_SECRET], with(&hs, "webhook-signature", &format!("v1a,{sig_b64} v1,{}", BASE64.encode([0u8; 32]))), body.clone(), STD_TS, Want::Mismatch),
            case("several signatures, last matches", vec![STD_SECRET], with(&hs, "webhook-signature", &format!("v1,{} v1,not-base64! {STD_SIG}", BASE64.encode([7u8; 32]))), body.clone(), STD_TS, Want::Pass(Some(STD_TS))),
            case("wrong secret", vec![other], hs.clone(), body.clone(), STD_TS, Want::Mismatch),
            case("rotation: second secret matches", vec![other, STD_SECRET], hs.clone(), body.clone(), STD_TS, Want::Pass(Some(STD_TS))),
            case("tampered body", vec![STD_SECRET], hs.clone(), tampered(STD_BODY), STD_TS, Want::Mismatch),
            case("tampered id", vec![STD_SECRET], with(&hs, "webhook-id", "msg_other"), body.clone(), STD_TS, Want::Mismatch),
            case("tampered timestamp", vec![STD_SECRET], with(&hs, "webhook-timestamp", &(STD_TS + 1).to_string()), body.clone(), STD_TS, Want::Mismatch),
            case("missing webhook-id", vec![STD_SECRET], without(&hs, "webhook-id"), body.clone(), STD_TS, Want::Missing("webhook-id")),
            case("missing webhook-timestamp", vec![STD_SECRET], without(&hs, "webhook-timestamp"), body.clone(), STD_TS, Want::Missing("webhook-timestamp")),
            case("missing webhook-signature", vec![STD_SECRET], without(&hs, "webhook-signature"), body.clone(), STD_TS, Want::Missing("webhook-signature")),
            case("timestamp not digits", vec![STD_SECRET], with(&hs, "webhook-timestamp", "-1614265330"), body.clone(), STD_TS, Want::Malformed("webhook-timestamp")),
            case("timestamp too long", vec![STD_SECRET], with(&hs, "webhook-timestamp", "99999999999999999999"), body.clone(), STD_TS, Want::Malformed("webhook-timestamp")),
            case("no secrets", vec![], hs.clone(), body.clone(), STD_TS, Want::NoSecrets),
        ];
        run(cases);
    }

    #[test]
    fn github_vector() {
        let hs = vec![("X-Hub-Signature-256", GH_SIG.to_owned())];
        let body = GH_BODY.as_bytes().to_vec();
        let hex_part = &GH_SIG[7..];
        let case = |name, secrets: Vec<&'static str>, headers, body, want| Case {
            name,
            scheme: Scheme::Github,
            secrets,
            headers,
            body,
            now: 0,
            want,
        };
        let h = "x-hub-signature-256";
        #[rustfmt::skip]
        let cases = vec![
            case("vector", vec![GH_SECRET], hs.clone(), body.clone(), Want::Pass(None)),
            case("uppercase hex", vec![GH_SECRET], with(&hs, h, &format!("sha256={}", hex_part.to_uppercase())), body.clone(), Want::Pass(None)),
            case("truncated by one byte", vec![GH_SECRET], with(&hs, h, &GH_SIG[..GH_SIG.len() - 2]), body.clone(), Want::Mismatch),
            case("truncated to odd length", vec![GH_SECRET], with(&hs, h, &GH_SIG[..GH_SIG.len() - 1]), body.clone(), Want::Malformed("X-Hub-Signature-256")),
            case("unknown prefix", vec![GH_SECRET], with(&hs, h, &format!("sha1={hex_part}")), body.clone(), Want::Malformed("X-Hub-Signature-256")),
            case("bare hex refused", vec![GH_SECRET], with(&hs, h, hex_part), body.clone(), Want::Malformed("X-Hub-Signature-256")),
            case("wrong secret", vec!["It's a Secret to Nobody"], hs.clone(), body.clone(), Want::Mismatch),
            case("rotation: second secret matches", vec!["old secret", GH_SECRET], hs.clone(), body.clone(), Want::Pass(None)),
            case("tampered body", vec![GH_SECRET], hs.clone(), tampered(GH_BODY), Want::Mismatch),
            case("missing header", vec![GH_SECRET], vec![], body.clone(), Want::Missing("X-Hub-Signature-256")),
            case("no secrets", vec![], hs.clone(), body.clone(), Want::NoSecrets),
        ];
        run(cases);
    }

    #[test]
    fn slack_vector() {
        let hs = vec![
            ("X-Slack-Request-Timestamp", SLACK_TS.to_string()),
            ("X-Slack-Signature", SLACK_SIG.to_owned()),
        ];
        let body = SLACK_BODY.as_bytes().to_vec();
        let hex_part = &SLACK_SIG[3..];
        let sig_h = "x-slack-signature";
        let case = |name, secrets: Vec<&'static str>, headers, body, now, want| Case {
            name,
            scheme: Scheme::Slack,
            secrets,
            headers,
            body,
            now,
            want,
        };
        #[rustfmt::skip]
        let cases = vec![
            case("vector", vec![SLACK_SECRET], hs.clone(), body.clone(), SLACK_TS, Want::Pass(Some(SLACK_TS))),
            case("uppercase hex", vec![SLACK_SECRET], with(&hs, sig_h, &format!("v0={}", hex_part.to_uppercase())), body.clone(), SLACK_TS, Want::Pass(Some(SLACK_TS))),
            case("now = ts + tol", vec![SLACK_SECRET], hs.clone(), body.clone(), SLACK_TS + 300, Want::Pass(Some(SLACK_TS))),
            case("now = ts + tol + 1", vec![SLACK_SECRET], hs.clone(), body.clone(), SLACK_TS + 301, Want::Stale),
            case("now = ts - tol", vec![SLACK_SECRET], hs.clone(), body.clone(), SLACK_TS - 300, Want::Pass(Some(SLACK_TS))),
            case("now = ts - tol - 1", vec![SLACK_SECRET], hs.clone(), body.clone(), SLACK_TS - 301, Want::Stale),
            case("truncated by one byte", vec![SLACK_SECRET], with(&hs, sig_h, &SLACK_SIG[..SLACK_SIG.len() - 2]), body.clone(), SLACK_TS, Want::Mismatch),
            case("unknown version", vec![SLACK_SECRET], with(&hs, sig_h, &format!("v1={hex_part}")), body.clone(), SLACK_TS, Want::Malformed("X-Slack-Signature")),
            case("wrong secret", vec!["8f742231b10e8888abcd99yyyzzz85a6"], hs.clone(), body.clone(), SLACK_TS, Want::Mismatch),
            case("rotation: second secret matches", vec!["old-signing-secret", SLACK_SECRET], hs.clone(), body.clone(), SLACK_TS, Want::Pass(Some(SLACK_TS))),
            case("tampered body", vec![SLACK_SECRET], hs.clone(), tampered(SLACK_BODY), SLACK_TS, Want::Mismatch),
            case("tampered timestamp", vec![SLACK_SECRET], with(&hs, "x-slack-request-timestamp", &(SLACK_TS + 1).to_string()), body.clone(), SLACK_TS, Want::Mismatch),
            case("missing signature", vec![SLACK_SECRET], without(&hs, "X-Slack-Signature"), body.clone(), SLACK_TS, Want::Missing("X-Slack-Signature")),
            case("missing timestamp", vec![SLACK_SECRET], without(&hs, "X-Slack-Request-Timestamp"), body.clone(), SLACK_TS, Want::Missing("X-Slack-Request-Timestamp")),
        ];
        run(cases);
    }

    #[test]
    fn stripe() {
        const SECRET: &str = "whsec_stripe_literal_secret";
        let body = br#"{"id":"evt_1","type":"invoice.paid"}"#.to_vec();
        let ts = 1_700_000_000_i64;
        let good = hex::encode(hmac_sha256(
            SECRET.as_bytes(),
            &[ts.to_string().as_bytes(), b".", &body],
        ));
        let bad = hex::encode(hmac_sha256(
            b"other",
            &[ts.to_string().as_bytes(), b".", &body],
        ));
        let h = |v: String| vec![("Stripe-Signature", v)];
        let case = |name, secrets: Vec<&'static str>, headers, now, want| Case {
            name,
            scheme: Scheme::Stripe,
            secrets,
            headers,
            body: body.clone(),
            now,
            want,
        };
        #[rustfmt::skip]
        let cases = vec![
            case("one v1", vec![SECRET], h(format!("t={ts},v1={good}")), ts, Want::Pass(Some(ts))),
            case("two v1, second matches, v0 and unknown keys ignored", vec![SECRET], h(format!("t={ts},v1={bad},v0={good},x=1,v1={good}")), ts, Want::Pass(Some(ts))),
            case("spaces around items", vec![SECRET], h(format!("t={ts}, v1={}", good.to_uppercase())), ts, Want::Pass(Some(ts))),
            case("only v0 matches", vec![SECRET], h(format!("t={ts},v1={bad},v0={good}")), ts, Want::Mismatch),
            case("no v1", vec![SECRET], h(format!("t={ts},v0={good}")), ts, Want::Malformed("Stripe-Signature")),
            case("no t", vec![SECRET], h(format!("v1={good}")), ts, Want::Malformed("Stripe-Signature")),
            case("two t", vec![SECRET], h(format!("t={ts},t={ts},v1={good}")), ts, Want::Malformed("Stripe-Signature")),
            case("t not digits", vec![SECRET], h(format!("t=abc,v1={good}")), ts, Want::Malformed("Stripe-Signature")),
            case("truncated", vec![SECRET], h(format!("t={ts},v1={}", &good[..62])), ts, Want::Mismatch),
            case("secret used literally, not base64-decoded", vec!["whsec_other"], h(format!("t={ts},v1={good}")), ts, Want::Mismatch),
            case("rotation: second secret matches", vec!["whsec_old", SECRET], h(format!("t={ts},v1={good}")), ts, Want::Pass(Some(ts))),
            case("now = ts + tol + 1", vec![SECRET], h(format!("t={ts},v1={good}")), ts + 301, Want::Stale),
            case("now = ts - tol - 1", vec![SECRET], h(format!("t={ts},v1={good}")), ts - 301, Want::Stale),
            case("missing header", vec![SECRET], vec![], ts, Want::Missing("Stripe-Signature")),
        ];
        run(cases);
    }

    #[test]
    fn shopify() {
        const SECRET: &str = "shpss_shopify_secret";
        let body = br#"{"id":820982911946154508}"#.to_vec();
        let good = BASE64.encode(hmac_sha256(SECRET.as_bytes(), &[&body]));
        let h = |v: String| vec![("X-Shopify-Hmac-Sha256", v)];
        let case = |name, secrets: Vec<&'static str>, headers, want| Case {
            name,
            scheme: Scheme::Shopify,
            secrets,
            headers,
            body: body.clone(),
            now: 0,
            want,
        };
        #[rustfmt::skip]
        let cases = vec![
            case("valid", vec![SECRET], h(good.clone()), Want::Pass(None)),
            case("wrong secret", vec!["shpss_other"], h(good.clone()), Want::Mismatch),
            case("truncated (31 bytes)", vec![SECRET], h(truncated_b64(&good)), Want::Mismatch),
            case("hex instead of base64", vec![SECRET], h(hex::encode(hmac_sha256(SECRET.as_bytes(), &[&body]))), Want::Mismatch),
            case("not base64", vec![SECRET], h("@@@".to_owned()), Want::Malformed("X-Shopify-Hmac-Sha256")),
            case("missing header", vec![SECRET], vec![], Want::Missing("X-Shopify-Hmac-Sha256")),
        ];
        run(cases);
    }

    #[test]
    fn generic_hmac_and_none() {
        const SECRET: &str = "generic secret";
        let body = b"{\"type\":\"ping\"}".to_vec();
        let good = hex::encode(hmac_sha256(SECRET.as_bytes(), &[&body]));
        let custom = Scheme::Hmac {
            signature_header: HeaderName::from_static("x-my-sig"),
        };
        let case = |name, scheme: &Scheme, secrets: Vec<&'static str>, headers, want| Case {
            name,
            scheme: scheme.clone(),
            secrets,
            headers,
            body: body.clone(),
            now: 0,
            want,
        };
        let dflt = Scheme::hmac_default();
        let h = |v: String| vec![("X-Webhook-Signature", v)];
        #[rustfmt::skip]
        let cases = vec![
            case("sha256= prefix", &dflt, vec![SECRET], h(format!("sha256={good}")), Want::Pass(None)),
            case("bare hex", &dflt, vec![SECRET], h(good.clone()), Want::Pass(None)),
            case("bare uppercase hex", &dflt, vec![SECRET], h(good.to_uppercase()), Want::Pass(None)),
            case("wrong secret", &dflt, vec!["other"], h(good.clone()), Want::Mismatch),
            case("truncated", &dflt, vec![SECRET], h(good[..60].to_owned()), Want::Mismatch),
            case("other algorithm prefix", &dflt, vec![SECRET], h(format!("sha1={good}")), Want::Malformed("x-webhook-signature")),
            case("missing header", &dflt, vec![SECRET], vec![], Want::Missing("x-webhook-signature")),
            case("custom header", &custom, vec![SECRET], vec![("X-My-Sig", format!("sha256={good}"))], Want::Pass(None)),
            case("custom header: default header not read", &custom, vec![SECRET], h(good.clone()), Want::Missing("x-my-sig")),
            case("none passes without headers or secrets", &Scheme::None, vec![], vec![], Want::Pass(None)),
            case("none ignores a bad signature", &Scheme::None, vec![SECRET], h("zz".to_owned()), Want::Pass(None)),
        ];
        run(cases);
    }

    #[test]
    fn bodies_are_bytes_not_text() {
        let body: Vec<u8> = vec![0xff, 0xfe, 0x00, 0x80, b'{', 0xc3];
        assert!(std::str::from_utf8(&body).is_err());
        let key = b"binary-body key";
        let ts = 1_000_000_000_i64;
        let t = ts.to_string();
        let std_secret = "whsec_".to_owned() + &BASE64.encode(key);
        #[rustfmt::skip]
        let cases: Vec<(Scheme, String, Headers)> = vec![
            (Scheme::Github, "binary-body key".into(), vec![("X-Hub-Signature-256", format!("sha256={}", hex::encode(hmac_sha256(key, &[&body]))))]),
            (Scheme::Shopify, "binary-body key".into(), vec![("X-Shopify-Hmac-Sha256", BASE64.encode(hmac_sha256(key, &[&body])))]),
            (Scheme::hmac_default(), "binary-body key".into(), vec![("X-Webhook-Signature", hex::encode(hmac_sha256(key, &[&body])))]),
            (Scheme::Stripe, "binary-body key".into(), vec![("Stripe-Signature", format!("t={t},v1={}", hex::encode(hmac_sha256(key, &[t.as_bytes(), b".", &body]))))]),
            (Scheme::Slack, "binary-body key".into(), vec![("X-Slack-Request-Timestamp", t.clone()), ("X-Slack-Signature", format!("v0={}", hex::encode(hmac_sha256(key, &[b"v0:", t.as_bytes(), b":", &body]))))]),
            (Scheme::Standard, std_secret, vec![("webhook-id", "msg_1".into()), ("webhook-timestamp", t.clone()), ("webhook-signature", format!("v1,{}", BASE64.encode(hmac_sha256(key, &[b"msg_1.", t.as_bytes(), b".", &body]))))]),
        ];
        for (scheme, raw, headers) in cases {
            let secrets = [Secret::parse(&scheme, &raw).expect("secret")];
            let headers = header_map(&headers);
            assert!(
                verify(&scheme, &secrets, &headers, &body, ts, TOL).is_ok(),
                "{}",
                scheme.name()
            );
            let mut other = body.clone();
            other[0] = 0xfe;
            assert_eq!(
                verify(&scheme, &secrets, &headers, &other, ts, TOL),
                Err(VerifyError::Mismatch),
                "{}",
                scheme.name()
            );
        }
    }

    #[test]
    fn non_ascii_repeated_and_huge_headers_are_malformed() {
        let secrets = [Secret::parse(&Scheme::Github, GH_SECRET).expect("secret")];
        let body = GH_BODY.as_bytes();
        let name = HeaderName::from_static("x-hub-signature-256");

        let mut non_utf8 = HeaderMap::new();
        non_utf8.insert(
            name.clone(),
            HeaderValue::from_bytes(b"sha256=\xff\xfe").expect("obs-text is allowed"),
        );
        let mut repeated = HeaderMap::new();
        repeated.append(name.clone(), HeaderValue::from_static(GH_SIG));
        repeated.append(name.clone(), HeaderValue::from_static(GH_SIG));
        let mut huge = HeaderMap::new();
        huge.insert(
            name,
            HeaderValue::from_str(&format!("sha256={}", "a".repeat(9000))).expect("value"),
        );

        for (what, headers) in [
            ("non-UTF-8", non_utf8),
            ("repeated", repeated),
            ("huge", huge),
        ] {
            let err = verify(&Scheme::Github, &secrets, &headers, body, 0, TOL).expect_err(what);
            assert!(
                matches!(err, VerifyError::MalformedHeader { .. }),
                "{what}: {err:?}"
            );
            assert_eq!(
                (err.status(), err.code()),
                (400, "malformed_signature"),
                "{what}"
            );
        }

        // Non-UTF-8 timestamp header on a timestamped scheme.
        let secrets = [Secret::parse(&Scheme::Slack, SLACK_SECRET).expect("secret")];
        let mut slack = HeaderMap::new();
        slack.insert("x-slack-signature", HeaderValue::from_static(SLACK_SIG));
        slack.insert(
            "x-slack-request-timestamp",
            HeaderValue::from_bytes(b"15314\xe90618").expect("obs-text"),
        );
        let err = verify(
            &Scheme::Slack,
            &secrets,
            &slack,
            SLACK_BODY.as_bytes(),
            SLACK_TS,
            TOL,
        )
        .expect_err("non-UTF-8 timestamp");
        assert!(
            matches!(err, VerifyError::MalformedHeader { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn extreme_timestamps_do_not_overflow() {
        assert!(check_tolerance(i64::MAX, i64::MIN, u64::MAX).is_ok());
        assert!(matches!(
            check_tolerance(i64::MAX, i64::MIN, 0),
            Err(VerifyError::TimestampOutOfTolerance { .. })
        ));
        assert_eq!(
            check_tolerance(5, 5, 0),
            Ok(Verified { timestamp: Some(5) })
        );
    }

    #[test]
    fn secret_parsing() {
        type KeyOrError = Result<Vec<u8>, SecretError>;
        #[rustfmt::skip]
        let cases: Vec<(&str, Scheme, &str, KeyOrError)> = vec![
            ("standard vector", Scheme::Standard, STD_SECRET, Ok(BASE64.decode(&STD_SECRET[6..]).expect("b64"))),
            ("standard without prefix", Scheme::Standard, "a2V5", Ok(b"key".to_vec())),
            ("standard empty key", Scheme::Standard, "whsec_", Err(SecretError::EmptyKey)),
            ("standard empty", Scheme::Standard, "", Err(SecretError::Empty)),
            ("standard bad char", Scheme::Standard, "whsec_a2V*", Err(SecretError::InvalidBase64 { reason: "invalid character at offset 3".into() })),
            ("standard missing padding", Scheme::Standard, "whsec_a2V5a2", Err(SecretError::InvalidBase64 { reason: "invalid padding".into() })),
            ("stripe literal", Scheme::Stripe, "whsec_abc", Ok(b"whsec_abc".to_vec())),
            ("github literal", Scheme::Github, "whsec_a2V5", Ok(b"whsec_a2V5".to_vec())),
            ("github empty", Scheme::Github, "", Err(SecretError::Empty)),
            ("hmac literal", Scheme::hmac_default(), "s3cr3t", Ok(b"s3cr3t".to_vec())),
        ];
        for (name, scheme, raw, want) in cases {
            let got = Secret::parse(&scheme, raw).map(|s| s.0);
            assert_eq!(got, want, "{name}");
        }
        // The messages never echo the secret's characters.
        let err = Secret::parse(&Scheme::Standard, "whsec_Zm9v*QUE=").expect_err("invalid");
        assert!(!err.to_string().contains('*'), "{err}");
    }

    #[test]
    fn secret_debug_hides_the_key() {
        let secret = Secret::parse(&Scheme::Github, GH_SECRET).expect("secret");
        let shown = format!("{secret:?} {:?}", vec![secret.clone()]);
        assert!(!shown.contains("Secret to"), "{shown}");
        assert_eq!(format!("{secret:?}"), "Secret(..)");
    }

    #[test]
    fn error_status_and_codes() {
        #[rustfmt::skip]
        let cases = [
            (VerifyError::MissingHeader("webhook-id".into()), 400, "missing_signature"),
            (malformed("webhook-signature", "x"), 400, "malformed_signature"),
            (VerifyError::Mismatch, 401, "signature_mismatch"),
            (VerifyError::TimestampOutOfTolerance { timestamp: 1, now: 400, tolerance: 300 }, 401, "timestamp_out_of_tolerance"),
            (VerifyError::NoSecrets, 500, "no_secrets"),
        ];
        for (err, status, code) in cases {
            assert_eq!((err.status(), err.code()), (status, code), "{err}");
        }
    }

    #[test]
    fn scheme_names_and_secret_needs() {
        let all = [
            (Scheme::Standard, "standard", true),
            (Scheme::Github, "github", true),
            (Scheme::Stripe, "stripe", true),
            (Scheme::Shopify, "shopify", true),
            (Scheme::Slack, "slack", true),
            (Scheme::hmac_default(), "hmac", true),
            (Scheme::None, "none", false),
        ];
        for (scheme, name, needs) in all {
            assert_eq!((scheme.name(), scheme.needs_secret()), (name, needs));
        }
    }
}
