//! Configuration: turns the compiled-in defaults, the operator's TOML file and
//! `HOOKHOST_<SECTION>__<KEY>` environment overrides into one validated
//! [`Config`], once, at start.
//!
//! This module owns the config format of DESIGN.md ("Config"): the key names,
//! the defaults (in `config.default.toml`, which is also the operator's
//! reference), the layering (defaults, then file, then environment), the
//! resolution of `env:NAME` secrets and every check a value must pass. A bad
//! config fails here with a [`ConfigError`] naming the key, so nothing later
//! has to re-check it.
//!
//! It must not do anything else: no sockets, no directories, no reading of the
//! process environment (the caller passes it in, which keeps tests hermetic),
//! no reload. It must never put a secret's value into an error, a log line or
//! a `Debug` string: secrets live in [`SecretString`], and secret-typed keys
//! are read as raw TOML values so even a wrong-typed secret is not echoed by
//! the TOML parser.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::runtime::TrapKind;

/// The defaults layer, compiled in so a binary with no config file still
/// starts (and so the defaults an operator reads are the ones that run).
const DEFAULTS_TOML: &str = include_str!("../config.default.toml");

/// How errors in the defaults layer name their origin.
const DEFAULTS_ORIGIN: &str = "built-in defaults (config.default.toml)";

/// The file read when no `--config` path is given, if it exists.
const DEFAULT_FILE: &str = "hookhost.toml";

/// Environment overrides start with this (compared case-insensitively).
const ENV_PREFIX: &str = "HOOKHOST_";

/// `[server]` keys whose environment value is always taken verbatim, so an
/// all-digit `admin_token` stays a string instead of becoming an integer.
const ENV_STRING_KEYS: &[&str] = &[
    "listen",
    "admin_listen",
    "admin_token",
    "data_dir",
    "plugins_dir",
];

/// Source defaults live here, not in the defaults file: a file's `[[source]]`
/// list replaces the defaults' list, so its entries cannot inherit from it.
/// 300 s is the tolerance Standard Webhooks, Stripe and Slack recommend.
const DEFAULT_TOLERANCE_SECS: u64 = 300;
/// A day: a signed request older than that is a replay, not clock skew.
const MAX_TOLERANCE_SECS: u64 = 86_400;
/// 1 MiB holds any provider's single event (GitHub caps payloads at 25 MiB,
/// but its large ones are rare pushes; raise it per source when needed).
const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;
/// 64 MiB bounds the memory one request can make the server buffer. The
/// journal's record limit (`journal::MAX_RECORD_BYTES`) must stay above this
/// plus an event's metadata, or the largest allowed bodies cannot be stored.
const MAX_MAX_BODY_BYTES: usize = 64 << 20;
/// Header defaults of the generic `hmac` scheme (also `none`'s id header).
const DEFAULT_SIGNATURE_HEADER: &str = "X-Webhook-Signature";
const DEFAULT_ID_HEADER: &str = "X-Webhook-Id";
/// Longest source or plugin name: it is a URL segment and a file name.
const MAX_NAME_LEN: usize = 64;

/// How long a client may take to send a request's headers, on either
/// listener (an idle keep-alive connection gets as long for its next
/// request). Without it a slowloris client holds a connection forever by
/// trickling header bytes. 30 s is hyper's own default and far more than any
/// webhook provider needs. Not a config key: DESIGN.md names none.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a client may take to send a request's body once its headers are
/// in (408 after it). Without it a client that stalls mid-body holds a
/// connection and an ingest slot forever. 30 s moves the 1 MiB default body
/// at about 35 KB/s, far below any provider's uplink. Not a config key:
/// DESIGN.md names none.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Most delivery workers: each one can hold a fresh plugin instance (up to
/// `memory_mb`) and, in guest code, a thread, so 4096 is far past what one
/// host's cores and memory can use; a larger value is a typo.
const MAX_WORKERS: usize = 4096;
/// Longest retention, ten years: longer is a typo (seconds or hours written
/// as days), and it keeps [`ServerConfig::retention`] far from overflow.
const MAX_RETENTION_DAYS: u64 = 3650;
/// Seconds in a day, for [`ServerConfig::retention`].
const SECS_PER_DAY: u64 = 86_400;

/// Limits shared by `[defaults]` and `[plugin.NAME]`: (key, min, max).
/// An hour bounds the wall clock one call may hold a worker; 1 GiB bounds
/// what one instance may take from the host (32-bit WASM cannot use 4 GiB
/// usefully, and 16 of them at once must still fit). A breaker that opens
/// after 0 failures, or cools down for 0 ms, would be no breaker at all.
/// A warm instance lives for at most a million calls or a day: past that,
/// a leak or stale state in it is worth a fresh start.
const LIMITS: [(&str, u64, Option<u64>); 10] = [
    ("fuel", 1, None),
    ("timeout_ms", 1, Some(3_600_000)),
    ("memory_mb", 1, Some(1024)),
    ("concurrency", 1, None),
    ("max_attempts", 1, None),
    ("backoff_base_ms", 1, None),
    ("breaker_failures", 1, None),
    ("breaker_cooldown_ms", 1, None),
    ("warm_max_calls", 1, Some(1_000_000)),
    ("warm_max_secs", 1, Some(86_400)),
];

/// Every trap kind `dead_letter_traps` may name, in the order errors list
/// them. Spelled by [`TrapKind::as_str`], the names logs, metrics and the
/// admin API show, so an operator can copy a kind from a dead letter into
/// the config.
const TRAP_KINDS: [TrapKind; 6] = TrapKind::ALL;

/// Why a config was refused: the key (`source[1].scheme`, or where a TOML
/// error came from) and what is wrong with it. Never contains a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("config: {key}: {message}")]
pub struct ConfigError {
    /// The offending key as an operator would write it (`server.listen`,
    /// `source[0].secrets[1]`, `plugin.NAME.timeout_ms`), or the origin of a
    /// TOML error (the file path or the environment variable's name).
    pub key: String,
    /// What is wrong and, where it helps, what is expected.
    pub message: String,
}

fn err(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        message: message.into(),
    }
}

/// A secret (signing secret, admin token, plugin secret) whose `Debug` prints
/// `<redacted>`, so a logged or printed [`Config`] never leaks it. It has no
/// `Display` and no `Serialize`: reading it takes an explicit [`expose`].
///
/// [`expose`]: SecretString::expose
#[derive(Clone)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps a secret; for code (and tests) that build configs directly.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself, for the one place that uses it (an HMAC key, a
    /// token comparison). Never log or format what this returns.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString(<redacted>)")
    }
}

/// Everything the server needs to start, validated: a value of this type is
/// known to be usable (addresses parse, limits are in range, secrets are
/// resolved), so the rest of hookhost never re-checks it.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listeners, storage and process-level settings (`[server]`).
    pub server: ServerConfig,
    /// Webhook endpoints, in file order (`[[source]]`); names are unique.
    pub sources: Vec<SourceConfig>,
    /// Limits and retry policy of every plugin (`[defaults]`).
    pub defaults: PluginDefaults,
    /// The operator's per-plugin overrides (`[plugin.NAME]`), by plugin name.
    /// Use [`Config::plugin_settings`] to get a plugin's effective settings.
    pub plugins: BTreeMap<String, PluginOverrides>,
}

/// `[server]`: where hookhost listens and keeps its data.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Ingest listener (`POST /webhooks/{source}`).
    pub listen: SocketAddr,
    /// Admin listener: admin API, `/metrics`, `/healthz`, `/readyz`. Kept
    /// apart from ingest so it can stay off the public network.
    pub admin_listen: SocketAddr,
    /// Bearer token for the admin listener (all but `/healthz`, `/readyz`).
    /// Always set when `admin_listen` is not loopback.
    pub admin_token: Option<SecretString>,
    /// Peers whose `X-Forwarded-For` is believed for `allow_ips`; empty means
    /// the TCP peer address is the client's.
    pub trusted_proxies: Vec<IpNet>,
    /// Root of all durable state (journal, sled, plugin key-value data).
    pub data_dir: PathBuf,
    /// Folder watched for `NAME.wasm` plugins.
    pub plugins_dir: PathBuf,
    /// Whether the ingest journal is fdatasync'ed before answering 200. Only
    /// `false` for benchmarks: acknowledged events can then be lost.
    pub sync: bool,
    /// Webhook requests handled at once (more get 503 `overloaded` before
    /// their body is read): bounds the memory a flood from a provider (or
    /// an attacker) can hold.
    pub max_connections: usize,
    /// How long shutdown waits for in-flight requests and plugin calls.
    pub shutdown_grace_ms: u64,
    /// Plugin calls running at once across all plugins: the size of the
    /// delivery worker pool, 1 to 4096. Bounds the CPU and memory plugins
    /// take from the host as a whole, where each plugin's `concurrency`
    /// only bounds that plugin.
    pub workers: usize,
    /// Size of one ingest journal segment, in MiB (1 to 1024). The journal
    /// is released a whole segment at a time once sled holds its events,
    /// so this bounds the disk the journal takes and what a restart
    /// replays.
    pub journal_segment_mb: u64,
    /// Days completed and unrouted events, and their dedupe entries, are
    /// kept (1 to 3650): it bounds the store's growth and is also the dedupe
    /// window, so a provider's redelivery older than this is a new event.
    /// Dead letters are not affected. See [`ServerConfig::retention`].
    pub retention_days: u64,
    /// Deadline for a request's headers ([`HEADER_READ_TIMEOUT`]). Not read
    /// from the config file; embedders and tests may shorten it.
    pub header_read_timeout: Duration,
    /// Deadline for a request's body ([`BODY_READ_TIMEOUT`]). Not read from
    /// the config file; embedders and tests may shorten it.
    pub body_read_timeout: Duration,
}

impl ServerConfig {
    /// [`ServerConfig::retention_days`] as a duration, for the code that
    /// compares it with event times.
    pub fn retention(&self) -> Duration {
        Duration::from_secs(self.retention_days.saturating_mul(SECS_PER_DAY))
    }
}

/// A source's signature scheme, as written in `scheme = "..."`. Named apart
/// from `verify::Scheme`, which also carries the scheme's header settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SchemeName {
    /// Standard Webhooks (Svix): `webhook-id`, `webhook-timestamp`,
    /// `webhook-signature`.
    Standard,
    /// GitHub: `X-Hub-Signature-256`.
    Github,
    /// Stripe: `Stripe-Signature`.
    Stripe,
    /// Shopify: `X-Shopify-Hmac-Sha256`.
    Shopify,
    /// Slack: `X-Slack-Signature`, `X-Slack-Request-Timestamp`.
    Slack,
    /// Generic HMAC-SHA256 of the body in a configurable header.
    Hmac,
    /// No verification: local testing only, refused off loopback.
    None,
}

impl SchemeName {
    /// Every scheme with its config spelling, in the order errors list them.
    const ALL: [(&'static str, SchemeName); 7] = [
        ("standard", SchemeName::Standard),
        ("github", SchemeName::Github),
        ("stripe", SchemeName::Stripe),
        ("shopify", SchemeName::Shopify),
        ("slack", SchemeName::Slack),
        ("hmac", SchemeName::Hmac),
        ("none", SchemeName::None),
    ];

    /// The spelling used in the config file, logs and the admin API.
    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, scheme)| *scheme == self)
            .map_or("none", |(name, _)| name)
    }

    fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .find(|(spelling, _)| *spelling == name)
            .map(|(_, scheme)| *scheme)
    }
}

impl fmt::Display for SchemeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `[[source]]`: an endpoint at `POST /webhooks/{name}` and how requests
/// to it are checked before they are stored.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// URL segment and the `source` part of `source:kind` subscriptions.
    pub name: String,
    /// How requests are verified.
    pub scheme: SchemeName,
    /// Signing secrets, resolved; several at once allow rotation. Non-empty
    /// unless the scheme is `none`, which has none.
    pub secrets: Vec<SecretString>,
    /// How far a signed timestamp may be from now, either way (replays).
    pub tolerance_secs: u64,
    /// Largest accepted body (413 above it), 1 byte to 64 MiB.
    pub max_body_bytes: usize,
    /// JSON pointer to an array whose elements become separate events
    /// (`""` or starting with `/`); `None`: one event per request.
    pub split: Option<String>,
    /// Client networks allowed to post (403 outside); empty: any.
    pub allow_ips: Vec<IpNet>,
    /// Verified requests per second before 429; at least 1 when set.
    pub rate_limit_per_s: Option<u32>,
    /// Header with the signature: `Some` exactly for scheme `hmac` (default
    /// `X-Webhook-Signature`), so ingest never needs to know the default.
    pub signature_header: Option<String>,
    /// Header with the provider's event id: `Some` exactly for schemes `hmac`
    /// and `none` (default `X-Webhook-Id`).
    pub id_header: Option<String>,
    /// Header with the event kind, for schemes `hmac` and `none`; `None`:
    /// the body's `type` field, else `webhook`.
    pub kind_header: Option<String>,
}

/// `[defaults]`: limits and retry policy of a plugin with no overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginDefaults {
    /// Fuel per call: bounds CPU in a loop that never calls the host.
    pub fuel: u64,
    /// Wall-clock deadline per call: bounds time, host calls included.
    pub timeout_ms: u64,
    /// Memory cap of one instance, in MiB.
    pub memory_mb: u64,
    /// Calls of one plugin running at once.
    pub concurrency: u32,
    /// Attempts per delivery, the first included, before a dead letter.
    pub max_attempts: u32,
    /// First retry delay; doubles after each failure.
    pub backoff_base_ms: u64,
    /// Cap on one retry delay; at least `backoff_base_ms`.
    pub backoff_max_ms: u64,
    /// Consecutive failed calls that open the plugin's circuit breaker, so a
    /// plugin failing every call stops taking workers from healthy ones.
    pub breaker_failures: u32,
    /// First cool-down of an open breaker (one probe call after it);
    /// doubles with each failed probe.
    pub breaker_cooldown_ms: u64,
    /// Trap kinds that dead-letter at once instead of being retried, for a
    /// failure that retrying cannot fix (e.g. a plugin that panics on some
    /// input). No duplicates; empty: every trap is retried.
    pub dead_letter_traps: Vec<TrapKind>,
    /// Reuse an instance across calls instead of a fresh one per call:
    /// interpreter-based plugins (Python, JavaScript) spend most of a call
    /// starting up. Trades isolation between events for speed, so off by
    /// default.
    pub warm: bool,
    /// Calls one warm instance serves before it is replaced.
    pub warm_max_calls: u32,
    /// Seconds one warm instance lives before it is replaced.
    pub warm_max_secs: u64,
}

/// Which plugin's deliveries run first when workers are busy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Ahead of `normal` and `low` (e.g. billing).
    High,
    /// The default.
    #[default]
    Normal,
    /// Behind everything else (e.g. analytics).
    Low,
}

impl Priority {
    fn parse(name: &str) -> Option<Self> {
        match name {
            "high" => Some(Self::High),
            "normal" => Some(Self::Normal),
            "low" => Some(Self::Low),
            _ => None,
        }
    }
}

/// `[plugin.NAME]`: what the operator set for one plugin. `None` limits fall
/// back to [`PluginDefaults`]; see [`Config::plugin_settings`].
#[derive(Debug, Clone, Default)]
pub struct PluginOverrides {
    /// Overrides [`PluginDefaults::fuel`].
    pub fuel: Option<u64>,
    /// Overrides [`PluginDefaults::timeout_ms`].
    pub timeout_ms: Option<u64>,
    /// Overrides [`PluginDefaults::memory_mb`].
    pub memory_mb: Option<u64>,
    /// Overrides [`PluginDefaults::concurrency`].
    pub concurrency: Option<u32>,
    /// Overrides [`PluginDefaults::max_attempts`].
    pub max_attempts: Option<u32>,
    /// Overrides [`PluginDefaults::backoff_base_ms`].
    pub backoff_base_ms: Option<u64>,
    /// Overrides [`PluginDefaults::backoff_max_ms`].
    pub backoff_max_ms: Option<u64>,
    /// Overrides [`PluginDefaults::breaker_failures`].
    pub breaker_failures: Option<u32>,
    /// Overrides [`PluginDefaults::breaker_cooldown_ms`].
    pub breaker_cooldown_ms: Option<u64>,
    /// Replaces [`PluginDefaults::dead_letter_traps`] (the list is not
    /// merged: `Some(vec![])` retries every trap whatever the defaults say).
    pub dead_letter_traps: Option<Vec<TrapKind>>,
    /// Overrides [`PluginDefaults::warm`].
    pub warm: Option<bool>,
    /// Overrides [`PluginDefaults::warm_max_calls`].
    pub warm_max_calls: Option<u32>,
    /// Overrides [`PluginDefaults::warm_max_secs`].
    pub warm_max_secs: Option<u64>,
    /// Scheduling priority of this plugin's deliveries.
    pub priority: Priority,
    /// JSON pointer into the body: deliveries with the same value there run
    /// one at a time, in order (per-key FIFO). `None`: no ordering.
    pub order_key: Option<String>,
    /// `source:kind` patterns replacing the plugin's declared subscriptions.
    pub subscribe: Option<Vec<String>>,
    /// Plain values the plugin may read through the `config` import.
    pub config: BTreeMap<String, String>,
    /// Secrets the plugin may read, resolved from `env:NAME` where given.
    pub secrets: BTreeMap<String, SecretString>,
    /// Reserved for outbound HTTP (planned): any value is refused at load, so
    /// this is always `None`. Kept so the key is known, not a typo.
    pub allow_hosts: Option<Vec<String>>,
}

/// A plugin's settings with [`PluginDefaults`] and its [`PluginOverrides`]
/// merged: what the runtime and dispatcher apply to it.
#[derive(Debug, Clone)]
pub struct EffectivePlugin {
    /// Fuel per call.
    pub fuel: u64,
    /// Wall-clock deadline per call.
    pub timeout_ms: u64,
    /// Memory cap of one instance, in MiB.
    pub memory_mb: u64,
    /// Calls running at once.
    pub concurrency: u32,
    /// Attempts per delivery before a dead letter.
    pub max_attempts: u32,
    /// First retry delay.
    pub backoff_base_ms: u64,
    /// Cap on one retry delay.
    pub backoff_max_ms: u64,
    /// Consecutive failures that open the circuit breaker.
    pub breaker_failures: u32,
    /// First cool-down of an open breaker.
    pub breaker_cooldown_ms: u64,
    /// Trap kinds that dead-letter at once instead of being retried.
    pub dead_letter_traps: Vec<TrapKind>,
    /// Instance reuse, if the operator opted in.
    pub warm: Option<crate::runtime::WarmPolicy>,
    /// Scheduling priority.
    pub priority: Priority,
    /// Per-key FIFO pointer, if any.
    pub order_key: Option<String>,
    /// Operator's subscriptions; `None`: use what the plugin declares.
    pub subscribe: Option<Vec<String>>,
    /// Plain values readable by the plugin.
    pub config: BTreeMap<String, String>,
    /// Secrets readable by the plugin.
    pub secrets: BTreeMap<String, SecretString>,
}

impl Config {
    /// The settings plugin `name` runs with: its overrides over the
    /// defaults. A plugin without a `[plugin.NAME]` table gets the defaults,
    /// so a newly dropped-in `.wasm` needs no config.
    pub fn plugin_settings(&self, name: &str) -> EffectivePlugin {
        let d = &self.defaults;
        let Some(o) = self.plugins.get(name) else {
            return EffectivePlugin {
                fuel: d.fuel,
                timeout_ms: d.timeout_ms,
                memory_mb: d.memory_mb,
                concurrency: d.concurrency,
                max_attempts: d.max_attempts,
                backoff_base_ms: d.backoff_base_ms,
                backoff_max_ms: d.backoff_max_ms,
                breaker_failures: d.breaker_failures,
                breaker_cooldown_ms: d.breaker_cooldown_ms,
                dead_letter_traps: d.dead_letter_traps.clone(),
                warm: warm_policy(d.warm, d.warm_max_calls, d.warm_max_secs),
                priority: Priority::default(),
                order_key: None,
                subscribe: None,
                config: BTreeMap::new(),
                secrets: BTreeMap::new(),
            };
        };
        EffectivePlugin {
            fuel: o.fuel.unwrap_or(d.fuel),
            timeout_ms: o.timeout_ms.unwrap_or(d.timeout_ms),
            memory_mb: o.memory_mb.unwrap_or(d.memory_mb),
            concurrency: o.concurrency.unwrap_or(d.concurrency),
            max_attempts: o.max_attempts.unwrap_or(d.max_attempts),
            backoff_base_ms: o.backoff_base_ms.unwrap_or(d.backoff_base_ms),
            backoff_max_ms: o.backoff_max_ms.unwrap_or(d.backoff_max_ms),
            breaker_failures: o.breaker_failures.unwrap_or(d.breaker_failures),
            breaker_cooldown_ms: o.breaker_cooldown_ms.unwrap_or(d.breaker_cooldown_ms),
            dead_letter_traps: o
                .dead_letter_traps
                .as_ref()
                .unwrap_or(&d.dead_letter_traps)
                .clone(),
            warm: warm_policy(
                o.warm.unwrap_or(d.warm),
                o.warm_max_calls.unwrap_or(d.warm_max_calls),
                o.warm_max_secs.unwrap_or(d.warm_max_secs),
            ),
            priority: o.priority,
            order_key: o.order_key.clone(),
            subscribe: o.subscribe.clone(),
            config: o.config.clone(),
            secrets: o.secrets.clone(),
        }
    }
}

/// The warm policy the keys describe, `None` when `warm` is off.
fn warm_policy(warm: bool, max_calls: u32, max_secs: u64) -> Option<crate::runtime::WarmPolicy> {
    warm.then(|| crate::runtime::WarmPolicy {
        max_calls,
        max_age: std::time::Duration::from_secs(max_secs),
    })
}

/// Loads the config the way `hookhost serve` does: built-in defaults, then
/// the file (`path`, which must exist, or else `./hookhost.toml` if it
/// exists), then `HOOKHOST_SERVER__*` / `HOOKHOST_DEFAULTS__*` overrides from
/// `env`, then `env:NAME` secrets resolved from that same `env`, then every
/// check. `env` is the process environment in production
/// (`std::env::vars().collect::<Vec<_>>()`), a literal list in tests.
pub fn load(path: Option<&Path>, env: &[(String, String)]) -> Result<Config, ConfigError> {
    let file = match path {
        Some(path) => Some((path.display().to_string(), read(path)?)),
        None => match std::fs::read_to_string(DEFAULT_FILE) {
            Ok(text) => Some((DEFAULT_FILE.to_owned(), text)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(err(
                    DEFAULT_FILE,
                    format!("cannot read the config file: {e}"),
                ))
            }
        },
    };
    build(
        file.as_ref()
            .map(|(origin, text)| (origin.as_str(), text.as_str())),
        env,
    )
}

/// Like [`load`] with the file's contents given as a string (named
/// `<string>` in errors): for tests and embedders that build a config
/// without touching the file system.
pub fn load_str(toml: &str, env: &[(String, String)]) -> Result<Config, ConfigError> {
    build(Some(("<string>", toml)), env)
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| {
        err(
            path.display().to_string(),
            format!("cannot read the config file: {e}"),
        )
    })
}

/// The layering: `file` is (origin for errors, contents).
fn build(file: Option<(&str, &str)>, env: &[(String, String)]) -> Result<Config, ConfigError> {
    let mut merged = parse_layer(DEFAULTS_ORIGIN, DEFAULTS_TOML)?;
    if let Some((origin, text)) = file {
        merge(&mut merged, parse_layer(origin, text)?);
    }
    for (name, value) in env {
        if let Some(layer) = env_layer(name, value)? {
            merge(&mut merged, layer);
        }
    }
    // Each layer was checked on its own above, so this cannot fail on an
    // unknown key or a wrong type; it is still an error, not a panic.
    let layer: Layer = toml::Value::Table(merged)
        .try_into()
        .map_err(|e| err("merged configuration", render(e, None)))?;
    let config = resolve(layer, env)?;
    warn_risky(&config);
    Ok(config)
}

/// Parses one layer's text, checking its keys and types against [`Layer`]
/// first so errors carry toml's message with line and column.
fn parse_layer(origin: &str, text: &str) -> Result<toml::Table, ConfigError> {
    toml::from_str::<Layer>(text).map_err(|e| err(origin, render(e, Some(text))))?;
    toml::from_str::<toml::Table>(text).map_err(|e| err(origin, render(e, Some(text))))
}

/// toml's message with the key path (`in server.listen`) and, for text, the
/// line and column, but without toml's snippet of the offending line: that
/// line could hold a secret written inline next to the error.
fn render(mut e: toml::de::Error, text: Option<&str>) -> String {
    let position = match (text, e.span()) {
        (Some(text), Some(span)) => {
            let before = &text.as_bytes()[..span.start.min(text.len())];
            let line = before.iter().filter(|b| **b == b'\n').count() + 1;
            let line_start = before
                .iter()
                .rposition(|b| *b == b'\n')
                .map_or(0, |i| i + 1);
            let column = String::from_utf8_lossy(&before[line_start..])
                .chars()
                .count()
                + 1;
            format!("line {line}, column {column}: ")
        }
        _ => String::new(),
    };
    // Without input, toml's Display is the message plus "in `key.path`".
    e.set_input(None);
    let shown = e.to_string();
    let message = match shown.trim_end().split_once("\nin ") {
        Some((message, keys)) => format!("{message} (in {keys})"),
        None => shown.trim_end().to_owned(),
    };
    format!("{position}{}", message.replace('\n', " "))
}

/// Tables merge key by key, recursively; anything else in `over` (arrays
/// included) replaces what `base` had.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(base_table)), toml::Value::Table(over_table)) => {
                merge(base_table, over_table);
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// The layer set by one environment variable, if it is an override:
/// `HOOKHOST_SERVER__LISTEN=...` becomes `[server] listen = ...`.
fn env_layer(name: &str, value: &str) -> Result<Option<toml::Table>, ConfigError> {
    let upper = name.to_ascii_uppercase();
    let Some((section, key)) = upper
        .strip_prefix(ENV_PREFIX)
        .and_then(|rest| rest.split_once("__"))
    else {
        return Ok(None);
    };
    let section = match section {
        "SERVER" => "server",
        "DEFAULTS" => "defaults",
        _ => {
            tracing::warn!(
                variable = name,
                "ignored: only [server] and [defaults] keys can be set from the environment"
            );
            return Ok(None);
        }
    };
    let key = key.to_ascii_lowercase();
    let value = env_value(section, &key, value);
    let mut table = toml::Table::new();
    table.insert(key, value);
    let mut layer = toml::Table::new();
    layer.insert(section.to_owned(), toml::Value::Table(table));
    // Checked alone so an unknown key or wrong type names the variable.
    toml::Value::Table(layer.clone())
        .try_into::<Layer>()
        .map_err(|e| err(name, render(e, None)))?;
    Ok(Some(layer))
}

/// An environment value as TOML when it is a number, boolean or array
/// (`5000`, `false`, `["10.0.0.0/8"]`), else the string as given.
fn env_value(section: &str, key: &str, raw: &str) -> toml::Value {
    let verbatim = toml::Value::String(raw.to_owned());
    if section == "server" && ENV_STRING_KEYS.contains(&key) {
        return verbatim;
    }
    let Ok(mut table) = toml::from_str::<toml::Table>(&format!("v = {raw}")) else {
        return verbatim;
    };
    match table.remove("v") {
        Some(
            value @ (toml::Value::Integer(_)
            | toml::Value::Float(_)
            | toml::Value::Boolean(_)
            | toml::Value::Array(_)),
        ) if table.is_empty() => value,
        _ => verbatim,
    }
}

/// The shape of every layer: all keys optional, unknown keys refused.
/// Secret-typed keys are raw TOML values, checked in [`resolve_secret`], so
/// toml never quotes a (wrong-typed) secret in its error message.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Layer {
    server: Option<ServerLayer>,
    #[serde(rename = "source")]
    sources: Option<Vec<RawSource>>,
    defaults: Option<DefaultsLayer>,
    #[serde(rename = "plugin")]
    plugins: Option<BTreeMap<String, RawPlugin>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerLayer {
    listen: Option<String>,
    admin_listen: Option<String>,
    admin_token: Option<toml::Value>,
    trusted_proxies: Option<Vec<String>>,
    data_dir: Option<PathBuf>,
    plugins_dir: Option<PathBuf>,
    sync: Option<bool>,
    max_connections: Option<usize>,
    shutdown_grace_ms: Option<u64>,
    workers: Option<usize>,
    retention_days: Option<u64>,
    journal_segment_mb: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DefaultsLayer {
    fuel: Option<u64>,
    timeout_ms: Option<u64>,
    memory_mb: Option<u64>,
    concurrency: Option<u32>,
    max_attempts: Option<u32>,
    backoff_base_ms: Option<u64>,
    backoff_max_ms: Option<u64>,
    breaker_failures: Option<u32>,
    breaker_cooldown_ms: Option<u64>,
    dead_letter_traps: Option<Vec<String>>,
    warm: Option<bool>,
    warm_max_calls: Option<u32>,
    warm_max_secs: Option<u64>,
}

/// A source as written; complete within its layer (lists are replaced).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    name: String,
    scheme: String,
    secrets: Option<toml::Value>,
    tolerance_secs: Option<u64>,
    max_body_bytes: Option<usize>,
    split: Option<String>,
    #[serde(default)]
    allow_ips: Vec<String>,
    rate_limit_per_s: Option<u32>,
    signature_header: Option<String>,
    id_header: Option<String>,
    kind_header: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlugin {
    fuel: Option<u64>,
    timeout_ms: Option<u64>,
    memory_mb: Option<u64>,
    concurrency: Option<u32>,
    max_attempts: Option<u32>,
    backoff_base_ms: Option<u64>,
    backoff_max_ms: Option<u64>,
    breaker_failures: Option<u32>,
    breaker_cooldown_ms: Option<u64>,
    dead_letter_traps: Option<Vec<String>>,
    warm: Option<bool>,
    warm_max_calls: Option<u32>,
    warm_max_secs: Option<u64>,
    priority: Option<String>,
    order_key: Option<String>,
    subscribe: Option<Vec<String>>,
    #[serde(default)]
    config: BTreeMap<String, String>,
    secrets: Option<toml::Value>,
    allow_hosts: Option<toml::Value>,
}

fn resolve(layer: Layer, env: &[(String, String)]) -> Result<Config, ConfigError> {
    let server = resolve_server(layer.server.unwrap_or_default(), env)?;
    let defaults = resolve_defaults(layer.defaults.unwrap_or_default())?;
    let mut sources: Vec<SourceConfig> = Vec::new();
    for (i, raw) in layer.sources.unwrap_or_default().into_iter().enumerate() {
        let source = resolve_source(i, raw, &server, env)?;
        if let Some(j) = sources.iter().position(|s| s.name == source.name) {
            return Err(err(
                format!("source[{i}].name"),
                format!(
                    "{:?} is already the name of source[{j}]; names must be unique",
                    source.name
                ),
            ));
        }
        sources.push(source);
    }
    let mut plugins = BTreeMap::new();
    for (name, raw) in layer.plugins.unwrap_or_default() {
        let overrides = resolve_plugin(&name, raw, &defaults, env)?;
        plugins.insert(name, overrides);
    }
    Ok(Config {
        server,
        sources,
        defaults,
        plugins,
    })
}

/// A key the built-in defaults always set; missing only if they were broken.
fn required<T>(value: Option<T>, key: &str) -> Result<T, ConfigError> {
    value.ok_or_else(|| err(key, "missing (config.default.toml should set it)"))
}

fn resolve_server(raw: ServerLayer, env: &[(String, String)]) -> Result<ServerConfig, ConfigError> {
    let listen = parse_addr("server.listen", &required(raw.listen, "server.listen")?)?;
    let admin_listen = parse_addr(
        "server.admin_listen",
        &required(raw.admin_listen, "server.admin_listen")?,
    )?;
    // Port 0 twice is two distinct ephemeral ports (tests do this).
    if admin_listen == listen && listen.port() != 0 {
        return Err(err(
            "server.admin_listen",
            format!("{admin_listen} is also server.listen; the admin API needs its own address"),
        ));
    }
    let admin_token = raw
        .admin_token
        .map(|value| resolve_secret("server.admin_token", &value, env))
        .transpose()?;
    if admin_token.is_none() && !admin_listen.ip().is_loopback() {
        return Err(err(
            "server.admin_token",
            "required when server.admin_listen is not a loopback address",
        ));
    }
    let trusted_proxies = parse_nets(
        "server.trusted_proxies",
        &required(raw.trusted_proxies, "server.trusted_proxies")?,
    )?;
    let data_dir = required(raw.data_dir, "server.data_dir")?;
    let plugins_dir = required(raw.plugins_dir, "server.plugins_dir")?;
    for (key, dir) in [
        ("server.data_dir", &data_dir),
        ("server.plugins_dir", &plugins_dir),
    ] {
        if dir.as_os_str().is_empty() {
            return Err(err(
                key,
                "must not be empty (use \".\" for the working directory)",
            ));
        }
    }
    let max_connections = required(raw.max_connections, "server.max_connections")?;
    within("server.max_connections", max_connections, 1, None)?;
    let workers = required(raw.workers, "server.workers")?;
    within("server.workers", workers, 1, Some(MAX_WORKERS))?;
    let retention_days = required(raw.retention_days, "server.retention_days")?;
    within(
        "server.retention_days",
        retention_days,
        1,
        Some(MAX_RETENTION_DAYS),
    )?;
    let journal_segment_mb = required(raw.journal_segment_mb, "server.journal_segment_mb")?;
    within(
        "server.journal_segment_mb",
        journal_segment_mb,
        1,
        Some(1024),
    )?;
    Ok(ServerConfig {
        listen,
        admin_listen,
        admin_token,
        trusted_proxies,
        data_dir,
        plugins_dir,
        sync: required(raw.sync, "server.sync")?,
        max_connections,
        shutdown_grace_ms: required(raw.shutdown_grace_ms, "server.shutdown_grace_ms")?,
        workers,
        retention_days,
        journal_segment_mb,
        header_read_timeout: HEADER_READ_TIMEOUT,
        body_read_timeout: BODY_READ_TIMEOUT,
    })
}

fn resolve_defaults(raw: DefaultsLayer) -> Result<PluginDefaults, ConfigError> {
    let defaults = PluginDefaults {
        fuel: required(raw.fuel, "defaults.fuel")?,
        timeout_ms: required(raw.timeout_ms, "defaults.timeout_ms")?,
        memory_mb: required(raw.memory_mb, "defaults.memory_mb")?,
        concurrency: required(raw.concurrency, "defaults.concurrency")?,
        max_attempts: required(raw.max_attempts, "defaults.max_attempts")?,
        backoff_base_ms: required(raw.backoff_base_ms, "defaults.backoff_base_ms")?,
        backoff_max_ms: required(raw.backoff_max_ms, "defaults.backoff_max_ms")?,
        breaker_failures: required(raw.breaker_failures, "defaults.breaker_failures")?,
        breaker_cooldown_ms: required(raw.breaker_cooldown_ms, "defaults.breaker_cooldown_ms")?,
        dead_letter_traps: parse_traps(
            "defaults.dead_letter_traps",
            &required(raw.dead_letter_traps, "defaults.dead_letter_traps")?,
        )?,
        warm: required(raw.warm, "defaults.warm")?,
        warm_max_calls: required(raw.warm_max_calls, "defaults.warm_max_calls")?,
        warm_max_secs: required(raw.warm_max_secs, "defaults.warm_max_secs")?,
    };
    check_limits(
        "defaults",
        [
            Some(defaults.fuel),
            Some(defaults.timeout_ms),
            Some(defaults.memory_mb),
            Some(u64::from(defaults.concurrency)),
            Some(u64::from(defaults.max_attempts)),
            Some(defaults.backoff_base_ms),
            Some(u64::from(defaults.breaker_failures)),
            Some(defaults.breaker_cooldown_ms),
            Some(u64::from(defaults.warm_max_calls)),
            Some(defaults.warm_max_secs),
        ],
    )?;
    check_backoff(
        "defaults.backoff_max_ms",
        defaults.backoff_base_ms,
        defaults.backoff_max_ms,
    )?;
    Ok(defaults)
}

/// Checks the [`LIMITS`] that are set, in `LIMITS` order.
fn check_limits(prefix: &str, values: [Option<u64>; LIMITS.len()]) -> Result<(), ConfigError> {
    for ((name, min, max), value) in LIMITS.iter().zip(values) {
        if let Some(value) = value {
            within(&format!("{prefix}.{name}"), value, *min, *max)?;
        }
    }
    Ok(())
}

fn check_backoff(key: &str, base: u64, max: u64) -> Result<(), ConfigError> {
    if max < base {
        return Err(err(
            key,
            format!("{max} is less than backoff_base_ms ({base}); the cap must be at least the first delay"),
        ));
    }
    Ok(())
}

fn within<T: PartialOrd + fmt::Display>(
    key: &str,
    value: T,
    min: T,
    max: Option<T>,
) -> Result<(), ConfigError> {
    match max {
        Some(max) if value < min || value > max => Err(err(
            key,
            format!("{value} is out of range: must be between {min} and {max}"),
        )),
        None if value < min => Err(err(
            key,
            format!("{value} is out of range: must be at least {min}"),
        )),
        _ => Ok(()),
    }
}

fn resolve_source(
    i: usize,
    raw: RawSource,
    server: &ServerConfig,
    env: &[(String, String)],
) -> Result<SourceConfig, ConfigError> {
    let at = |field: &str| format!("source[{i}].{field}");
    check_name(&at("name"), &raw.name, "source")?;
    let scheme = SchemeName::parse(&raw.scheme).ok_or_else(|| {
        err(
            at("scheme"),
            format!(
                "unknown scheme {:?} (expected standard, github, stripe, shopify, slack, hmac or none)",
                raw.scheme
            ),
        )
    })?;

    let secrets = match &raw.secrets {
        None => Vec::new(),
        Some(toml::Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(j, item)| resolve_secret(&format!("source[{i}].secrets[{j}]"), item, env))
            .collect::<Result<Vec<_>, _>>()?,
        Some(other) => {
            return Err(err(
                at("secrets"),
                format!(
                    "expected a list of strings (each the secret or env:NAME), found {}",
                    other.type_str()
                ),
            ))
        }
    };
    if scheme == SchemeName::None {
        if !secrets.is_empty() {
            return Err(err(
                at("secrets"),
                "scheme \"none\" checks no signature, so secrets would be ignored; remove them or choose a signing scheme",
            ));
        }
        if !server.listen.ip().is_loopback() {
            return Err(err(
                at("scheme"),
                "scheme \"none\" accepts unsigned requests; it is only allowed when server.listen is a loopback address",
            ));
        }
    } else if secrets.is_empty() {
        return Err(err(
            at("secrets"),
            format!(
                "scheme \"{scheme}\" needs at least one secret (the secret itself or env:NAME)"
            ),
        ));
    }

    let custom_headers = matches!(scheme, SchemeName::Hmac | SchemeName::None);
    let signature_header = match (scheme, raw.signature_header) {
        (SchemeName::Hmac, header) => {
            Some(header.unwrap_or_else(|| DEFAULT_SIGNATURE_HEADER.to_owned()))
        }
        (_, Some(_)) => {
            return Err(err(
                at("signature_header"),
                format!(
                    "only scheme \"hmac\" reads it; scheme \"{scheme}\" uses its own fixed header"
                ),
            ))
        }
        (_, None) => None,
    };
    let id_header = match (custom_headers, raw.id_header) {
        (true, header) => Some(header.unwrap_or_else(|| DEFAULT_ID_HEADER.to_owned())),
        (false, Some(_)) => return Err(only_hmac_or_none(at("id_header"), scheme)),
        (false, None) => None,
    };
    let kind_header = match (custom_headers, raw.kind_header) {
        (false, Some(_)) => return Err(only_hmac_or_none(at("kind_header"), scheme)),
        (_, header) => header,
    };
    for (field, header) in [
        ("signature_header", &signature_header),
        ("id_header", &id_header),
        ("kind_header", &kind_header),
    ] {
        if let Some(header) = header {
            check_header(&at(field), header)?;
        }
    }

    let tolerance_secs = raw.tolerance_secs.unwrap_or(DEFAULT_TOLERANCE_SECS);
    if tolerance_secs > MAX_TOLERANCE_SECS {
        return Err(err(
            at("tolerance_secs"),
            format!("{tolerance_secs} is more than a day ({MAX_TOLERANCE_SECS}); a request signed that long ago is a replay, not clock skew"),
        ));
    }
    let max_body_bytes = raw.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
    within(
        &at("max_body_bytes"),
        max_body_bytes,
        1,
        Some(MAX_MAX_BODY_BYTES),
    )?;
    if let Some(split) = &raw.split {
        check_pointer(&at("split"), split)?;
    }
    let allow_ips = parse_nets(&at("allow_ips"), &raw.allow_ips)?;
    if let Some(rate) = raw.rate_limit_per_s {
        within(&at("rate_limit_per_s"), rate, 1, None)?;
    }

    Ok(SourceConfig {
        name: raw.name,
        scheme,
        secrets,
        tolerance_secs,
        max_body_bytes,
        split: raw.split,
        allow_ips,
        rate_limit_per_s: raw.rate_limit_per_s,
        signature_header,
        id_header,
        kind_header,
    })
}

fn only_hmac_or_none(key: String, scheme: SchemeName) -> ConfigError {
    err(
        key,
        format!("only schemes \"hmac\" and \"none\" read it; scheme \"{scheme}\" uses its own fixed header"),
    )
}

fn resolve_plugin(
    name: &str,
    raw: RawPlugin,
    defaults: &PluginDefaults,
    env: &[(String, String)],
) -> Result<PluginOverrides, ConfigError> {
    let prefix = format!("plugin.{name}");
    let at = |field: &str| format!("{prefix}.{field}");
    check_name(&prefix, name, "plugin")?;
    if raw.allow_hosts.is_some() {
        return Err(err(
            at("allow_hosts"),
            "outbound HTTP is not supported yet (planned)",
        ));
    }
    check_limits(
        &prefix,
        [
            raw.fuel,
            raw.timeout_ms,
            raw.memory_mb,
            raw.concurrency.map(u64::from),
            raw.max_attempts.map(u64::from),
            raw.backoff_base_ms,
            raw.breaker_failures.map(u64::from),
            raw.breaker_cooldown_ms,
            raw.warm_max_calls.map(u64::from),
            raw.warm_max_secs,
        ],
    )?;
    let dead_letter_traps = raw
        .dead_letter_traps
        .as_deref()
        .map(|names| parse_traps(&at("dead_letter_traps"), names))
        .transpose()?;
    // Checked on the effective pair: a base raised above the default cap is
    // as wrong as a cap lowered below the default base.
    if raw.backoff_base_ms.is_some() || raw.backoff_max_ms.is_some() {
        let key = if raw.backoff_max_ms.is_some() {
            at("backoff_max_ms")
        } else {
            at("backoff_base_ms")
        };
        check_backoff(
            &key,
            raw.backoff_base_ms.unwrap_or(defaults.backoff_base_ms),
            raw.backoff_max_ms.unwrap_or(defaults.backoff_max_ms),
        )?;
    }
    let priority = match &raw.priority {
        None => Priority::default(),
        Some(text) => Priority::parse(text).ok_or_else(|| {
            err(
                at("priority"),
                format!("unknown priority {text:?} (expected high, normal or low)"),
            )
        })?,
    };
    if let Some(order_key) = &raw.order_key {
        check_pointer(&at("order_key"), order_key)?;
    }
    for (j, pattern) in raw.subscribe.iter().flatten().enumerate() {
        if pattern != "*" && !pattern.contains(':') {
            return Err(err(
                format!("{prefix}.subscribe[{j}]"),
                format!("{pattern:?} is not a pattern like \"source:kind\" (with * wildcards) or \"*\" for every event"),
            ));
        }
    }
    let secrets = match &raw.secrets {
        None => BTreeMap::new(),
        Some(toml::Value::Table(table)) => table
            .iter()
            .map(|(key, value)| {
                resolve_secret(&format!("{prefix}.secrets.{key}"), value, env)
                    .map(|s| (key.clone(), s))
            })
            .collect::<Result<BTreeMap<_, _>, _>>()?,
        Some(other) => {
            return Err(err(
                at("secrets"),
                format!(
                    "expected a table like {{ api_key = \"env:API_KEY\" }}, found {}",
                    other.type_str()
                ),
            ))
        }
    };
    Ok(PluginOverrides {
        fuel: raw.fuel,
        timeout_ms: raw.timeout_ms,
        memory_mb: raw.memory_mb,
        concurrency: raw.concurrency,
        max_attempts: raw.max_attempts,
        backoff_base_ms: raw.backoff_base_ms,
        backoff_max_ms: raw.backoff_max_ms,
        breaker_failures: raw.breaker_failures,
        breaker_cooldown_ms: raw.breaker_cooldown_ms,
        dead_letter_traps,
        warm: raw.warm,
        warm_max_calls: raw.warm_max_calls,
        warm_max_secs: raw.warm_max_secs,
        priority,
        order_key: raw.order_key,
        subscribe: raw.subscribe,
        config: raw.config,
        secrets,
        allow_hosts: None,
    })
}

/// A literal secret or `env:NAME` read from `env`. Errors name the variable
/// (not secret) but never the value.
fn resolve_secret(
    key: &str,
    value: &toml::Value,
    env: &[(String, String)],
) -> Result<SecretString, ConfigError> {
    let toml::Value::String(text) = value else {
        return Err(err(
            key,
            format!(
                "expected a string (the secret itself or env:NAME), found {}",
                value.type_str()
            ),
        ));
    };
    let Some(name) = text.strip_prefix("env:") else {
        if text.is_empty() {
            return Err(err(key, "must not be empty"));
        }
        return Ok(SecretString(text.clone()));
    };
    if name.is_empty() {
        return Err(err(
            key,
            "\"env:\" must be followed by an environment variable's name",
        ));
    }
    match env.iter().rev().find(|(n, _)| n == name) {
        None => Err(err(key, format!("environment variable {name} is not set"))),
        Some((_, v)) if v.is_empty() => {
            Err(err(key, format!("environment variable {name} is empty")))
        }
        Some((_, v)) => Ok(SecretString(v.clone())),
    }
}

/// Trap kind names as [`TrapKind::as_str`] spells them; a name given twice
/// is kept once. An unknown name is refused with the valid ones, since a
/// misspelt kind would otherwise silently keep being retried.
fn parse_traps(key: &str, names: &[String]) -> Result<Vec<TrapKind>, ConfigError> {
    let mut kinds = Vec::with_capacity(names.len());
    for (j, name) in names.iter().enumerate() {
        let kind = TRAP_KINDS
            .into_iter()
            .find(|kind| kind.as_str() == name)
            .ok_or_else(|| {
                err(
                    format!("{key}[{j}]"),
                    format!(
                        "unknown trap kind {name:?} (expected {})",
                        trap_kind_names()
                    ),
                )
            })?;
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    Ok(kinds)
}

/// `fuel, deadline, memory, panic, stack or other`, from [`TRAP_KINDS`].
fn trap_kind_names() -> String {
    let names: Vec<&str> = TRAP_KINDS.iter().map(|kind| kind.as_str()).collect();
    match names.split_last() {
        Some((last, [])) => (*last).to_owned(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

fn parse_addr(key: &str, text: &str) -> Result<SocketAddr, ConfigError> {
    text.parse().map_err(|_| {
        err(
            key,
            format!("{text:?} is not an address like 127.0.0.1:8080"),
        )
    })
}

/// CIDR networks; a bare address means just that host (`/32` or `/128`).
fn parse_nets(key: &str, items: &[String]) -> Result<Vec<IpNet>, ConfigError> {
    items
        .iter()
        .enumerate()
        .map(|(j, text)| {
            text.parse::<IpNet>()
                .map(|net| net.trunc())
                .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    err(
                        format!("{key}[{j}]"),
                        format!(
                            "{text:?} is not a network like 10.0.0.0/8 or an address like 10.0.0.1"
                        ),
                    )
                })
        })
        .collect()
}

/// Source and plugin names appear in URLs, file names and metrics labels,
/// so they are kept to a small, unambiguous alphabet.
fn check_name(key: &str, name: &str, what: &str) -> Result<(), ConfigError> {
    let valid_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if name.is_empty() || name.len() > MAX_NAME_LEN || !valid_chars {
        return Err(err(
            key,
            format!("{name:?} is not a valid {what} name: use 1 to {MAX_NAME_LEN} characters of a-z, 0-9, - and _"),
        ));
    }
    Ok(())
}

/// An HTTP header name is a non-empty RFC 9110 token.
fn check_header(key: &str, name: &str) -> Result<(), ConfigError> {
    let is_tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(is_tchar) {
        return Err(err(
            key,
            format!(
                "{name:?} is not a valid HTTP header name (letters, digits and !#$%&'*+-.^_`|~)"
            ),
        ));
    }
    Ok(())
}

/// RFC 6901: `""` (the whole document) or `/`-separated tokens in which `~`
/// only appears as `~0` or `~1`.
fn check_pointer(key: &str, pointer: &str) -> Result<(), ConfigError> {
    if !pointer.is_empty() && !pointer.starts_with('/') {
        return Err(err(
            key,
            format!("{pointer:?} is not a JSON pointer: use \"\" for the whole body, or start with / as in \"/data/object/id\""),
        ));
    }
    let mut chars = pointer.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return Err(err(
                key,
                format!("{pointer:?} is not a JSON pointer: ~ must be followed by 0 (for ~) or 1 (for /)"),
            ));
        }
    }
    Ok(())
}

/// Loud warnings for settings that are valid but give up a guarantee.
fn warn_risky(config: &Config) {
    if !config.server.sync {
        tracing::warn!(
            "server.sync = false: the ingest journal is not fdatasync'ed before answering 200, \
             so acknowledged events can be lost on a crash or power loss; use it for benchmarks only"
        );
    }
    for source in config
        .sources
        .iter()
        .filter(|s| s.scheme == SchemeName::None)
    {
        tracing::warn!(
            source = %source.name,
            "scheme \"none\": requests to /webhooks/{} are accepted without any signature; for local testing only",
            source.name
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GITHUB_SECRET: &str = "gh-secret-value-7f3a";
    const ADMIN_SECRET: &str = "admin-token-value-91c2";
    const BILLING_SECRET: &str = "billing-key-value-4d8e";

    /// DESIGN.md's example, as an operator would write it.
    const DESIGN_EXAMPLE: &str = r#"
[server]
listen = "127.0.0.1:8080"          # ingest
admin_listen = "127.0.0.1:8081"    # admin API, /metrics, /healthz
admin_token = "env:ADMIN_TOKEN"    # required when admin_listen is not loopback
# trusted_proxies = ["10.0.0.0/8"] # only these may set X-Forwarded-For
data_dir = "data"
plugins_dir = "plugins"

[[source]]
name = "github"                    # POST /webhooks/github
scheme = "github"                  # standard | github | stripe | shopify | slack | hmac | none
secrets = ["env:GITHUB_WEBHOOK_SECRET"]   # literal strings or env:NAME; several = rotation
tolerance_secs = 300
max_body_bytes = 1048576

[defaults]                          # per-plugin limits and retry policy
fuel = 1_000_000_000
timeout_ms = 5000
memory_mb = 64
concurrency = 16
max_attempts = 12                   # 2 s doubling to a 1 h cap: about an hour of retries
backoff_base_ms = 2000
backoff_max_ms = 3600000

[plugin.stripe-billing]             # overrides for one plugin (by name)
timeout_ms = 10000
priority = "high"                   # high | normal | low
order_key = "/data/object/customer" # optional: per-key FIFO (JSON pointer into the body)
subscribe = ["stripe:invoice.*", "stripe:customer.subscription.*"]
config = { api_base = "https://api.example.com" }
secrets = { api_key = "env:BILLING_API_KEY" }
"#;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn design_env() -> Vec<(String, String)> {
        env(&[
            ("ADMIN_TOKEN", ADMIN_SECRET),
            ("GITHUB_WEBHOOK_SECRET", GITHUB_SECRET),
            ("BILLING_API_KEY", BILLING_SECRET),
            ("PATH", "/usr/bin"),
        ])
    }

    /// Writes `text` to a real file and loads it, as `--config PATH` does.
    fn load_file(text: &str, env: &[(String, String)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("hookhost.toml");
        std::fs::write(&path, text).expect("write config");
        load(Some(&path), env)
    }

    fn load_err(text: &str, env: &[(String, String)]) -> ConfigError {
        match load_file(text, env) {
            Ok(config) => panic!("expected an error, loaded {config:?}"),
            Err(e) => e,
        }
    }

    /// A minimal valid file with `extra` appended.
    fn with_source(extra: &str) -> String {
        format!("[[source]]\nname = \"s\"\nscheme = \"github\"\nsecrets = [\"lit\"]\n{extra}")
    }

    #[test]
    fn zero_config_gives_the_demo_defaults() {
        let config = build(None, &[]).expect("defaults load");
        let s = &config.server;
        assert_eq!(s.listen, "127.0.0.1:8080".parse().expect("addr"));
        assert_eq!(s.admin_listen, "127.0.0.1:8081".parse().expect("addr"));
        assert!(s.admin_token.is_none());
        assert!(s.trusted_proxies.is_empty());
        assert_eq!(s.data_dir, PathBuf::from("data"));
        assert_eq!(s.plugins_dir, PathBuf::from("plugins"));
        assert!(s.sync);
        assert_eq!(s.max_connections, 4096);
        assert_eq!(s.shutdown_grace_ms, 10_000);
        assert_eq!(s.workers, 32);
        assert_eq!(s.retention_days, 7);
        assert_eq!(s.retention(), Duration::from_secs(7 * 24 * 3600));
        assert_eq!(s.header_read_timeout, Duration::from_secs(30));
        assert_eq!(s.body_read_timeout, Duration::from_secs(30));

        assert_eq!(config.sources.len(), 1);
        let demo = &config.sources[0];
        assert_eq!(demo.name, "demo");
        assert_eq!(demo.scheme, SchemeName::None);
        assert!(demo.secrets.is_empty());
        assert_eq!(demo.tolerance_secs, 300);
        assert_eq!(demo.max_body_bytes, 1_048_576);
        assert_eq!(demo.split, None);
        assert!(demo.allow_ips.is_empty());
        assert_eq!(demo.rate_limit_per_s, None);
        assert_eq!(demo.signature_header, None);
        assert_eq!(demo.id_header.as_deref(), Some("X-Webhook-Id"));
        assert_eq!(demo.kind_header, None);

        assert_eq!(
            config.defaults,
            PluginDefaults {
                fuel: 5_000_000_000,
                timeout_ms: 5000,
                memory_mb: 64,
                concurrency: 16,
                max_attempts: 12,
                backoff_base_ms: 2000,
                backoff_max_ms: 3_600_000,
                breaker_failures: 5,
                breaker_cooldown_ms: 30_000,
                dead_letter_traps: Vec::new(),
                warm: false,
                warm_max_calls: 1000,
                warm_max_secs: 60,
            }
        );
        assert!(config.plugins.is_empty());
        let any = config.plugin_settings("any");
        assert_eq!(
            (
                any.breaker_failures,
                any.breaker_cooldown_ms,
                any.dead_letter_traps.len()
            ),
            (5, 30_000, 0)
        );

        // An empty file and an empty string are zero config too.
        assert_eq!(
            load_file("", &[]).expect("empty file").sources[0].name,
            "demo"
        );
        assert_eq!(
            load_str("", &[]).expect("empty string").sources[0].name,
            "demo"
        );
    }

    #[test]
    fn design_example_loads_and_merges_plugin_overrides() {
        let config = load_file(DESIGN_EXAMPLE, &design_env()).expect("design example loads");
        assert_eq!(
            config.server.admin_token.as_ref().map(SecretString::expose),
            Some(ADMIN_SECRET)
        );
        assert_eq!(config.sources.len(), 1);
        let github = &config.sources[0];
        assert_eq!(
            (github.name.as_str(), github.scheme),
            ("github", SchemeName::Github)
        );
        let secrets: Vec<&str> = github.secrets.iter().map(SecretString::expose).collect();
        assert_eq!(secrets, [GITHUB_SECRET]);
        assert_eq!(github.signature_header, None);
        assert_eq!(github.id_header, None);

        let billing = config.plugin_settings("stripe-billing");
        assert_eq!(billing.timeout_ms, 10_000);
        assert_eq!(billing.fuel, 1_000_000_000, "not overridden: the default");
        assert_eq!(billing.memory_mb, 64);
        assert_eq!(billing.max_attempts, 12);
        assert_eq!(billing.priority, Priority::High);
        assert_eq!(billing.order_key.as_deref(), Some("/data/object/customer"));
        assert_eq!(
            billing.subscribe,
            Some(vec![
                "stripe:invoice.*".to_owned(),
                "stripe:customer.subscription.*".to_owned()
            ])
        );
        assert_eq!(
            billing.config.get("api_base").map(String::as_str),
            Some("https://api.example.com")
        );
        assert_eq!(
            billing.secrets.get("api_key").map(SecretString::expose),
            Some(BILLING_SECRET)
        );

        let other = config.plugin_settings("echo");
        assert_eq!(other.timeout_ms, 5000);
        assert_eq!(other.priority, Priority::Normal);
        assert!(other.subscribe.is_none() && other.config.is_empty() && other.secrets.is_empty());
    }

    #[test]
    fn file_sources_replace_the_demo_source_and_tables_merge() {
        let text = "[server]\ndata_dir = \"/var/lib/hookhost\"\n\n\
                    [[source]]\nname = \"a\"\nscheme = \"hmac\"\nsecrets = [\"one\", \"two\"]\n\
                    kind_header = \"X-Kind\"\nallow_ips = [\"10.1.2.3\", \"192.30.252.0/22\"]\n\
                    split = \"\"\nrate_limit_per_s = 5\n\n\
                    [[source]]\nname = \"b\"\nscheme = \"standard\"\nsecrets = [\"whsec_abc\"]\n";
        let config = load_file(text, &[]).expect("loads");
        let names: Vec<&str> = config.sources.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            ["a", "b"],
            "the demo source is replaced, not appended to"
        );
        // [server] merged key by key: the file's data_dir, the defaults' rest.
        assert_eq!(config.server.data_dir, PathBuf::from("/var/lib/hookhost"));
        assert_eq!(
            config.server.listen,
            "127.0.0.1:8080".parse().expect("addr")
        );

        let a = &config.sources[0];
        assert_eq!(a.secrets.len(), 2);
        assert_eq!(a.signature_header.as_deref(), Some("X-Webhook-Signature"));
        assert_eq!(a.id_header.as_deref(), Some("X-Webhook-Id"));
        assert_eq!(a.kind_header.as_deref(), Some("X-Kind"));
        assert_eq!(a.split.as_deref(), Some(""));
        assert_eq!(a.rate_limit_per_s, Some(5));
        let nets: Vec<String> = a.allow_ips.iter().map(ToString::to_string).collect();
        assert_eq!(nets, ["10.1.2.3/32", "192.30.252.0/22"]);

        // An explicitly empty list is zero sources (the server only 404s).
        assert!(load_file("source = []\n", &[])
            .expect("loads")
            .sources
            .is_empty());
    }

    #[test]
    fn env_overrides_server_and_defaults_and_beat_the_file() {
        let e = env(&[
            ("HOOKHOST_SERVER__LISTEN", "127.0.0.1:9000"),
            ("HOOKHOST_DEFAULTS__FUEL", "5000"),
            ("hookhost_defaults__timeout_ms", "750"),
            ("HOOKHOST_SERVER__SYNC", "false"),
            (
                "HOOKHOST_SERVER__TRUSTED_PROXIES",
                r#"["10.0.0.0/8", "::1"]"#,
            ),
            ("HOOKHOST_SERVER__ADMIN_TOKEN", "123456"),
            ("HOOKHOST_LOG", "debug"),
            ("HOOKHOST_SOURCE__NAME", "ignored"),
            ("OTHER__THING", "ignored"),
        ]);
        let config = build(None, &e).expect("loads");
        assert_eq!(
            config.server.listen,
            "127.0.0.1:9000".parse().expect("addr")
        );
        assert_eq!(config.defaults.fuel, 5000);
        assert_eq!(config.defaults.timeout_ms, 750);
        assert!(!config.server.sync);
        assert_eq!(config.server.trusted_proxies.len(), 2);
        assert_eq!(
            config.server.admin_token.as_ref().map(SecretString::expose),
            Some("123456"),
            "an all-digit token stays a string"
        );

        let file = "[server]\nlisten = \"127.0.0.1:7000\"\n";
        let from_file = load_file(file, &[]).expect("loads");
        assert_eq!(
            from_file.server.listen,
            "127.0.0.1:7000".parse().expect("addr")
        );
        let overridden =
            load_file(file, &env(&[("HOOKHOST_SERVER__LISTEN", "127.0.0.1:9001")])).expect("loads");
        assert_eq!(
            overridden.server.listen,
            "127.0.0.1:9001".parse().expect("addr")
        );
    }

    #[test]
    fn unknown_key_in_the_file_names_key_file_and_line() {
        let e = load_err("[server]\nlisen = \"0.0.0.0:8080\"\n", &[]);
        let text = e.to_string();
        assert!(e.key.ends_with("hookhost.toml"), "{text}");
        assert!(text.contains("lisen") && text.contains("line 2"), "{text}");

        let e = load_err(&with_source("tolerance = 5\n"), &[]);
        assert!(e.to_string().contains("unknown field `tolerance`"), "{e}");
        let e = load_err("[plugin.echo]\nfule = 5\n", &[]);
        assert!(e.to_string().contains("fule"), "{e}");
        let e = load_err("[server]\nlisten = 8080\n", &[]);
        assert!(e.to_string().contains("server.listen"), "{e}");
        let e = load_err("[[source]]\nscheme = \"github\"\n", &[]);
        assert!(e.to_string().contains("missing field `name`"), "{e}");
        let e = load_err("[server\n", &[]);
        assert!(e.to_string().contains("line 1"), "{e}");
    }

    #[test]
    fn bad_env_override_names_the_variable() {
        let e = build(None, &env(&[("HOOKHOST_SERVER__LISNE", "127.0.0.1:1")]))
            .expect_err("unknown key");
        assert_eq!(e.key, "HOOKHOST_SERVER__LISNE");
        assert!(e.message.contains("lisne"), "{e}");

        let e = build(None, &env(&[("HOOKHOST_DEFAULTS__FUEL", "lots")])).expect_err("wrong type");
        assert_eq!(e.key, "HOOKHOST_DEFAULTS__FUEL");
        assert!(e.message.contains("defaults.fuel"), "{e}");

        let e = build(None, &env(&[("HOOKHOST_SERVER__LISTEN", "abc")])).expect_err("bad address");
        assert_eq!(
            e.to_string(),
            "config: server.listen: \"abc\" is not an address like 127.0.0.1:8080"
        );
    }

    #[test]
    fn every_validation_rule_names_its_key() {
        let long = "x".repeat(65);
        let cases: Vec<(String, &str, &str)> = vec![
            // (file, expected key, expected words in the message)
            ("[server]\nlisten = \"abc\"\n".into(), "server.listen", "\"abc\" is not an address like 127.0.0.1:8080"),
            ("[server]\nadmin_listen = \"localhost\"\n".into(), "server.admin_listen", "not an address"),
            ("[server]\nadmin_listen = \"127.0.0.1:8080\"\n".into(), "server.admin_listen", "its own address"),
            ("[server]\nadmin_listen = \"0.0.0.0:8081\"\n".into(), "server.admin_token", "required when server.admin_listen is not a loopback address"),
            ("[server]\nadmin_token = \"\"\n".into(), "server.admin_token", "must not be empty"),
            ("[server]\ntrusted_proxies = [\"10.0.0.0/33\"]\n".into(), "server.trusted_proxies[0]", "not a network"),
            ("[server]\ndata_dir = \"\"\n".into(), "server.data_dir", "must not be empty"),
            ("[server]\nmax_connections = 0\n".into(), "server.max_connections", "at least 1"),
            ("[server]\nworkers = 0\n".into(), "server.workers", "between 1 and 4096"),
            ("[server]\nworkers = 4097\n".into(), "server.workers", "between 1 and 4096"),
            ("[server]\nretention_days = 0\n".into(), "server.retention_days", "between 1 and 3650"),
            ("[server]\nretention_days = 3651\n".into(), "server.retention_days", "between 1 and 3650"),
            ("[[source]]\nname = \"Bad Name\"\nscheme = \"none\"\n".into(), "source[0].name", "not a valid source name"),
            (format!("[[source]]\nname = \"{long}\"\nscheme = \"none\"\n"), "source[0].name", "1 to 64"),
            ("[[source]]\nname = \"a\"\nscheme = \"none\"\n[[source]]\nname = \"a\"\nscheme = \"none\"\n".into(), "source[1].name", "already the name of source[0]"),
            ("[[source]]\nname = \"a\"\nscheme = \"none\"\n[[source]]\nname = \"b\"\nscheme = \"foo\"\n".into(), "source[1].scheme", "unknown scheme \"foo\" (expected standard, github, stripe, shopify, slack, hmac or none)"),
            ("[[source]]\nname = \"a\"\nscheme = \"stripe\"\n".into(), "source[0].secrets", "at least one secret"),
            ("[[source]]\nname = \"a\"\nscheme = \"stripe\"\nsecrets = []\n".into(), "source[0].secrets", "at least one secret"),
            ("[[source]]\nname = \"a\"\nscheme = \"stripe\"\nsecrets = [\"ok\", \"\"]\n".into(), "source[0].secrets[1]", "must not be empty"),
            ("[[source]]\nname = \"a\"\nscheme = \"github\"\nsecrets = [\"env:GITHUB_WEBHOOK_SECRET\"]\n".into(), "source[0].secrets[0]", "environment variable GITHUB_WEBHOOK_SECRET is not set"),
            ("[[source]]\nname = \"a\"\nscheme = \"github\"\nsecrets = [\"env:EMPTY_VAR\"]\n".into(), "source[0].secrets[0]", "environment variable EMPTY_VAR is empty"),
            ("[[source]]\nname = \"a\"\nscheme = \"github\"\nsecrets = [\"env:\"]\n".into(), "source[0].secrets[0]", "variable's name"),
            ("[[source]]\nname = \"a\"\nscheme = \"none\"\nsecrets = [\"x\"]\n".into(), "source[0].secrets", "would be ignored"),
            ("[server]\nlisten = \"0.0.0.0:8080\"\n".into(), "source[0].scheme", "scheme \"none\" accepts unsigned requests; it is only allowed when server.listen is a loopback address"),
            (with_source("signature_header = \"X-Sig\"\n"), "source[0].signature_header", "only scheme \"hmac\""),
            (with_source("id_header = \"X-Id\"\n"), "source[0].id_header", "only schemes \"hmac\" and \"none\""),
            (with_source("kind_header = \"X-Kind\"\n"), "source[0].kind_header", "only schemes \"hmac\" and \"none\""),
            ("[[source]]\nname = \"a\"\nscheme = \"hmac\"\nsecrets = [\"x\"]\nsignature_header = \"X Sig\"\n".into(), "source[0].signature_header", "not a valid HTTP header name"),
            ("[[source]]\nname = \"a\"\nscheme = \"none\"\nkind_header = \"\"\n".into(), "source[0].kind_header", "not a valid HTTP header name"),
            (with_source("split = \"items\"\n"), "source[0].split", "not a JSON pointer"),
            (with_source("split = \"/a~2\"\n"), "source[0].split", "not a JSON pointer"),
            (with_source("max_body_bytes = 0\n"), "source[0].max_body_bytes", "between 1 and 67108864"),
            (with_source("max_body_bytes = 67108865\n"), "source[0].max_body_bytes", "between 1 and 67108864"),
            (with_source("tolerance_secs = 86401\n"), "source[0].tolerance_secs", "more than a day"),
            (with_source("rate_limit_per_s = 0\n"), "source[0].rate_limit_per_s", "at least 1"),
            (with_source("allow_ips = [\"nope\"]\n"), "source[0].allow_ips[0]", "not a network"),
            ("[defaults]\nfuel = 0\n".into(), "defaults.fuel", "at least 1"),
            ("[defaults]\ntimeout_ms = 0\n".into(), "defaults.timeout_ms", "between 1 and 3600000"),
            ("[defaults]\ntimeout_ms = 3600001\n".into(), "defaults.timeout_ms", "between 1 and 3600000"),
            ("[defaults]\nmemory_mb = 0\n".into(), "defaults.memory_mb", "between 1 and 1024"),
            ("[defaults]\nmemory_mb = 1025\n".into(), "defaults.memory_mb", "between 1 and 1024"),
            ("[defaults]\nconcurrency = 0\n".into(), "defaults.concurrency", "at least 1"),
            ("[defaults]\nmax_attempts = 0\n".into(), "defaults.max_attempts", "at least 1"),
            ("[defaults]\nbackoff_base_ms = 0\n".into(), "defaults.backoff_base_ms", "at least 1"),
            ("[defaults]\nbackoff_max_ms = 1000\n".into(), "defaults.backoff_max_ms", "less than backoff_base_ms (2000)"),
            ("[defaults]\nbreaker_failures = 0\n".into(), "defaults.breaker_failures", "at least 1"),
            ("[defaults]\nbreaker_cooldown_ms = 0\n".into(), "defaults.breaker_cooldown_ms", "at least 1"),
            ("[defaults]\ndead_letter_traps = [\"oom\"]\n".into(), "defaults.dead_letter_traps[0]", "unknown trap kind \"oom\" (expected fuel, deadline, memory, panic, stack or other)"),
            ("[plugin.Billing]\n".into(), "plugin.Billing", "not a valid plugin name"),
            ("[plugin.echo]\nfuel = 0\n".into(), "plugin.echo.fuel", "at least 1"),
            ("[plugin.echo]\ntimeout_ms = 0\n".into(), "plugin.echo.timeout_ms", "between 1 and 3600000"),
            ("[plugin.echo]\nmemory_mb = 4096\n".into(), "plugin.echo.memory_mb", "between 1 and 1024"),
            ("[plugin.echo]\nconcurrency = 0\n".into(), "plugin.echo.concurrency", "at least 1"),
            ("[plugin.echo]\nmax_attempts = 0\n".into(), "plugin.echo.max_attempts", "at least 1"),
            ("[plugin.echo]\nbackoff_base_ms = 7200000\n".into(), "plugin.echo.backoff_base_ms", "less than backoff_base_ms"),
            ("[plugin.echo]\nbackoff_max_ms = 10\n".into(), "plugin.echo.backoff_max_ms", "less than backoff_base_ms"),
            ("[plugin.echo]\nbreaker_failures = 0\n".into(), "plugin.echo.breaker_failures", "at least 1"),
            ("[plugin.echo]\nbreaker_cooldown_ms = 0\n".into(), "plugin.echo.breaker_cooldown_ms", "at least 1"),
            ("[plugin.echo]\ndead_letter_traps = [\"panic\", \"Fuel\"]\n".into(), "plugin.echo.dead_letter_traps[1]", "unknown trap kind \"Fuel\" (expected fuel, deadline, memory, panic, stack or other)"),
            ("[plugin.echo]\npriority = \"urgent\"\n".into(), "plugin.echo.priority", "unknown priority \"urgent\" (expected high, normal or low)"),
            ("[plugin.echo]\norder_key = \"customer\"\n".into(), "plugin.echo.order_key", "not a JSON pointer"),
            ("[plugin.echo]\nsubscribe = [\"*\", \"invoice.paid\"]\n".into(), "plugin.echo.subscribe[1]", "\"source:kind\""),
            ("[plugin.echo]\nsecrets = { k = \"env:NOPE\" }\n".into(), "plugin.echo.secrets.k", "environment variable NOPE is not set"),
            ("[plugin.echo]\nsecrets = [\"x\"]\n".into(), "plugin.echo.secrets", "expected a table"),
            ("[plugin.stripe-billing]\nallow_hosts = [\"api.example.com\"]\n".into(), "plugin.stripe-billing.allow_hosts", "outbound HTTP is not supported yet (planned)"),
        ];
        let e = env(&[("EMPTY_VAR", "")]);
        for (file, key, words) in cases {
            let error = load_err(&file, &e);
            assert_eq!(error.key, key, "for file:\n{file}\ngot: {error}");
            assert!(
                error.message.contains(words),
                "for file:\n{file}\ngot: {error}"
            );
            assert_eq!(
                error.to_string(),
                format!("config: {key}: {}", error.message)
            );
        }
    }

    #[test]
    fn loopback_rules_accept_what_they_should() {
        // IPv6 loopback keeps the demo source; a public listen with signed
        // sources only and a token on a public admin listener is fine.
        build(None, &env(&[("HOOKHOST_SERVER__LISTEN", "[::1]:8080")])).expect("::1 is loopback");
        let text = format!(
            "[server]\nlisten = \"0.0.0.0:8080\"\nadmin_listen = \"0.0.0.0:8081\"\nadmin_token = \"t\"\n{}",
            with_source("")
        );
        load_file(&text, &[]).expect("public with signed sources and a token");
        // Port 0 twice means two ephemeral ports, not a clash.
        let e = env(&[
            ("HOOKHOST_SERVER__LISTEN", "127.0.0.1:0"),
            ("HOOKHOST_SERVER__ADMIN_LISTEN", "127.0.0.1:0"),
        ]);
        build(None, &e).expect("port 0 twice");
    }

    #[test]
    fn secrets_never_appear_in_debug_or_errors() {
        let text = format!(
            "[server]\nadmin_token = \"{ADMIN_SECRET}\"\n\
             [[source]]\nname = \"a\"\nscheme = \"stripe\"\nsecrets = [\"{GITHUB_SECRET}\"]\n\
             [plugin.p]\nsecrets = {{ k = \"{BILLING_SECRET}\" }}\n"
        );
        let config = load_file(&text, &[]).expect("loads");
        let debug = format!("{config:?} {:?}", config.plugin_settings("p"));
        for secret in [ADMIN_SECRET, GITHUB_SECRET, BILLING_SECRET] {
            assert!(!debug.contains(secret), "secret in Debug: {debug}");
        }
        assert!(debug.contains("<redacted>"));

        // Errors on and next to secrets, from literals and from env:.
        let failing = [
            "[server]\nadmin_listen = \"0.0.0.0:1\"\nadmin_token = 123456789\n".to_owned(),
            format!("[[source]]\nname = \"a\"\nscheme = \"stripe\"\nsecrets = \"{GITHUB_SECRET}\"\n"),
            format!("[[source]]\nname = \"a\"\nscheme = \"none\"\nsecrets = [\"{GITHUB_SECRET}\"]\n"),
            format!("source = [{{ name = \"a\", scheme = \"stripe\", secrets = [\"{GITHUB_SECRET}\"], tolerance_secs = \"x\" }}]\n"),
            format!("source = [{{ name = \"a\", scheme = \"nope\", secrets = [\"{GITHUB_SECRET}\"] }}]\n"),
            format!("[plugin.p]\nsecrets = {{ k = \"{BILLING_SECRET}\" }}\nallow_hosts = []\n"),
            "[server]\nadmin_token = \"env:ADMIN_TOKEN\"\nlisten = \"bad\"\n".to_owned(),
        ];
        let e = design_env();
        for text in failing {
            let error = load_err(&text, &e);
            let shown = format!("{error} {error:?}");
            for secret in [ADMIN_SECRET, GITHUB_SECRET, BILLING_SECRET, "123456789"] {
                assert!(!shown.contains(secret), "secret in error: {shown}");
            }
        }
    }

    #[test]
    fn missing_config_path_names_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nope.toml");
        let e = load(Some(&path), &[]).expect_err("missing file");
        assert_eq!(e.key, path.display().to_string());
        assert!(e.to_string().contains("nope.toml"), "{e}");
        assert!(e.message.contains("cannot read"), "{e}");
    }

    #[test]
    fn defaults_file_documents_every_key() {
        let keys = [
            "listen",
            "admin_listen",
            "admin_token",
            "trusted_proxies",
            "data_dir",
            "plugins_dir",
            "sync",
            "max_connections",
            "shutdown_grace_ms",
            "workers",
            "retention_days",
            "journal_segment_mb",
            "name",
            "scheme",
            "secrets",
            "tolerance_secs",
            "max_body_bytes",
            "split",
            "allow_ips",
            "rate_limit_per_s",
            "signature_header",
            "id_header",
            "kind_header",
            "fuel",
            "timeout_ms",
            "memory_mb",
            "concurrency",
            "max_attempts",
            "backoff_base_ms",
            "backoff_max_ms",
            "breaker_failures",
            "breaker_cooldown_ms",
            "dead_letter_traps",
            "warm",
            "warm_max_calls",
            "warm_max_secs",
            "priority",
            "order_key",
            "subscribe",
            "config",
            "allow_hosts",
        ];
        for key in keys {
            assert!(
                DEFAULTS_TOML.contains(&format!("{key} = ")),
                "config.default.toml does not document {key}"
            );
        }
        for section in [
            "[server]",
            "[[source]]",
            "[defaults]",
            "[plugin.stripe-billing]",
        ] {
            assert!(DEFAULTS_TOML.contains(section), "{section}");
        }
    }

    #[test]
    fn delivery_keys_come_from_the_file_and_merge_per_plugin() {
        let text = "[server]\nworkers = 4\nretention_days = 30\n\
                    [defaults]\nbreaker_failures = 3\ndead_letter_traps = [\"panic\"]\n\
                    [plugin.billing]\nbreaker_cooldown_ms = 500\ndead_letter_traps = []\n\
                    [plugin.analytics]\nbreaker_failures = 10\n\
                    dead_letter_traps = [\"fuel\", \"stack\", \"fuel\"]\n";
        let config = load_file(text, &[]).expect("loads");
        assert_eq!(config.server.workers, 4);
        assert_eq!(config.server.retention_days, 30);
        assert_eq!(config.server.retention(), Duration::from_secs(30 * 86_400));
        assert_eq!(config.defaults.breaker_failures, 3);
        assert_eq!(
            config.defaults.breaker_cooldown_ms, 30_000,
            "from the built-in defaults"
        );
        assert_eq!(config.defaults.dead_letter_traps, [TrapKind::Panic]);
        assert_eq!(
            config.plugins["billing"].dead_letter_traps,
            Some(Vec::new()),
            "an empty list is set, not absent"
        );
        assert_eq!(config.plugins["billing"].breaker_failures, None);

        // (plugin, breaker_failures, breaker_cooldown_ms, dead_letter_traps)
        let cases: [(&str, u32, u64, &[TrapKind]); 3] = [
            // Only the cool-down overridden; [] replaces the defaults' list.
            ("billing", 3, 500, &[]),
            // A repeated kind is kept once, in the order first written.
            ("analytics", 10, 30_000, &[TrapKind::Fuel, TrapKind::Stack]),
            // No [plugin.NAME] table: the defaults.
            ("other", 3, 30_000, &[TrapKind::Panic]),
        ];
        for (name, failures, cool_down, traps) in cases {
            let settings = config.plugin_settings(name);
            assert_eq!(settings.breaker_failures, failures, "{name}");
            assert_eq!(settings.breaker_cooldown_ms, cool_down, "{name}");
            assert_eq!(settings.dead_letter_traps, traps, "{name}");
        }
        // The largest values allowed load, and retention does not overflow.
        let most =
            load_file("[server]\nworkers = 4096\nretention_days = 3650\n", &[]).expect("loads");
        assert_eq!(most.server.retention(), Duration::from_secs(3650 * 86_400));
    }

    #[test]
    fn env_overrides_the_delivery_keys() {
        let e = env(&[
            ("HOOKHOST_SERVER__WORKERS", "8"),
            ("HOOKHOST_SERVER__RETENTION_DAYS", "2"),
            ("HOOKHOST_DEFAULTS__BREAKER_FAILURES", "2"),
            ("HOOKHOST_DEFAULTS__BREAKER_COOLDOWN_MS", "750"),
            (
                "HOOKHOST_DEFAULTS__DEAD_LETTER_TRAPS",
                r#"["memory", "panic"]"#,
            ),
        ]);
        let file = "[server]\nworkers = 64\n[defaults]\ndead_letter_traps = [\"other\"]\n";
        let config = load_file(file, &e).expect("loads");
        assert_eq!(config.server.workers, 8, "the environment beats the file");
        assert_eq!(config.server.retention_days, 2);
        assert_eq!(config.defaults.breaker_failures, 2);
        assert_eq!(config.defaults.breaker_cooldown_ms, 750);
        assert_eq!(
            config.defaults.dead_letter_traps,
            [TrapKind::Memory, TrapKind::Panic],
            "the environment's list replaces the file's"
        );
        let cleared = build(
            None,
            &env(&[("HOOKHOST_DEFAULTS__DEAD_LETTER_TRAPS", "[]")]),
        )
        .expect("loads");
        assert!(cleared.defaults.dead_letter_traps.is_empty());

        // (variable, value, key of the error, words in its message)
        let cases = [
            (
                "HOOKHOST_SERVER__WORKERS",
                "0",
                "server.workers",
                "between 1 and 4096",
            ),
            (
                "HOOKHOST_SERVER__WORKERS",
                "many",
                "HOOKHOST_SERVER__WORKERS",
                "server.workers",
            ),
            (
                "HOOKHOST_SERVER__RETENTION_DAYS",
                "-1",
                "HOOKHOST_SERVER__RETENTION_DAYS",
                "server.retention_days",
            ),
            (
                "HOOKHOST_DEFAULTS__BREAKER_FAILURES",
                "0",
                "defaults.breaker_failures",
                "at least 1",
            ),
            (
                "HOOKHOST_DEFAULTS__DEAD_LETTER_TRAPS",
                "panic",
                "HOOKHOST_DEFAULTS__DEAD_LETTER_TRAPS",
                "defaults.dead_letter_traps",
            ),
            (
                "HOOKHOST_DEFAULTS__DEAD_LETTER_TRAPS",
                r#"["fuel", "oops"]"#,
                "defaults.dead_letter_traps[1]",
                "unknown trap kind \"oops\"",
            ),
        ];
        for (variable, value, key, words) in cases {
            let error = build(None, &env(&[(variable, value)])).expect_err(value);
            assert_eq!(error.key, key, "{variable}={value}: {error}");
            assert!(error.message.contains(words), "{variable}={value}: {error}");
        }
    }

    #[test]
    fn every_trap_kind_is_a_valid_name() {
        for kind in TRAP_KINDS {
            // Exhaustive on purpose: a new TrapKind stops this compiling
            // until TRAP_KINDS (and config.default.toml) list it.
            match kind {
                TrapKind::Fuel
                | TrapKind::Deadline
                | TrapKind::Memory
                | TrapKind::Panic
                | TrapKind::Stack
                | TrapKind::Other => {}
            }
            let names = vec![kind.as_str().to_owned()];
            assert_eq!(parse_traps("k", &names), Ok(vec![kind]));
            assert!(
                DEFAULTS_TOML.contains(kind.as_str()),
                "{kind:?} undocumented"
            );
        }
        assert_eq!(
            trap_kind_names(),
            "fuel, deadline, memory, panic, stack or other"
        );
    }

    #[test]
    fn merge_is_recursive_for_tables_and_replaces_the_rest() {
        let mut base: toml::Table =
            toml::from_str("a = 1\nlist = [1, 2]\n[t]\nx = 1\ny = 2\n").expect("base");
        let over: toml::Table = toml::from_str("list = [3]\n[t]\ny = 20\nz = 30\n").expect("over");
        merge(&mut base, over);
        let want: toml::Table =
            toml::from_str("a = 1\nlist = [3]\n[t]\nx = 1\ny = 20\nz = 30\n").expect("want");
        assert_eq!(base, want);
    }

    #[test]
    fn env_values_are_typed_only_when_unambiguous() {
        assert_eq!(
            env_value("defaults", "fuel", "5000"),
            toml::Value::Integer(5000)
        );
        assert_eq!(
            env_value("server", "sync", "true"),
            toml::Value::Boolean(true)
        );
        assert_eq!(
            env_value("server", "data_dir", "123"),
            toml::Value::String("123".into())
        );
        assert_eq!(
            env_value("server", "x", "1\ny = 2"),
            toml::Value::String("1\ny = 2".into()),
            "no smuggling extra keys"
        );
        assert_eq!(
            env_value("server", "x", "1979-05-27"),
            toml::Value::String("1979-05-27".into())
        );
    }

    #[test]
    fn names_round_trip() {
        for (name, scheme) in SchemeName::ALL {
            assert_eq!(SchemeName::parse(name), Some(scheme));
            assert_eq!(scheme.to_string(), name);
        }
        assert_eq!(
            format!("{:?}", SecretString::new("x")),
            "SecretString(<redacted>)"
        );
    }
}
