//! Which plugins an event goes to: `source:kind` subscription patterns, and
//! the per-key ordering value a plugin asked for.
//!
//! Pure: a [`Routes`] snapshot is built from the registry whenever plugins
//! change, and the applier matches every stored event against the snapshot
//! it holds, so one batch is routed against one consistent set of plugins.

use std::sync::Arc;

/// One plugin as routing sees it.
#[derive(Debug, Clone)]
pub struct Route {
    /// The plugin's name.
    pub plugin: Arc<str>,
    /// Its effective subscriptions (the operator's `subscribe`, else what
    /// the plugin declares).
    pub patterns: Vec<Pattern>,
    /// JSON pointer whose value in the body orders this plugin's deliveries
    /// (`order_key`), if set.
    pub order_key: Option<String>,
}

/// Every plugin that takes new deliveries (loaded, file present; paused ones
/// included: their deliveries wait).
#[derive(Debug, Clone, Default)]
pub struct Routes {
    /// In name order, so an event's deliveries are created in a stable order.
    pub routes: Vec<Route>,
}

/// Where one event goes: a plugin and, for ordered plugins, the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The plugin.
    pub plugin: Arc<str>,
    /// The order key's value for this event, when the plugin orders by one
    /// and the body has a value there.
    pub order_key: Option<String>,
}

impl Routes {
    /// The plugins subscribed to `source:kind`, with their order keys read
    /// from `body` (parsed once, only if some matching plugin orders).
    pub fn targets(&self, source: &str, kind: &str, body: &[u8]) -> Vec<Target> {
        let mut parsed: Option<Option<serde_json::Value>> = None;
        let mut out = Vec::new();
        for route in &self.routes {
            if !route.patterns.iter().any(|p| p.matches(source, kind)) {
                continue;
            }
            let order_key = route.order_key.as_deref().and_then(|pointer| {
                let body = parsed
                    .get_or_insert_with(|| serde_json::from_slice(body).ok())
                    .as_ref()?;
                order_value(body.pointer(pointer)?)
            });
            out.push(Target {
                plugin: Arc::clone(&route.plugin),
                order_key,
            });
        }
        out
    }
}

/// A string is its own key; any other JSON value (a number, an object) is
/// keyed by its JSON text; `null` means no key.
fn order_value(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// A subscription: `*` (everything) or `source:kind`, where each side may
/// use `*` for any run of characters (`stripe:invoice.*`, `*:ping`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    source: String,
    kind: String,
}

impl Pattern {
    /// Parse a pattern; `None` if it is neither `*` nor `source:kind`.
    pub fn parse(text: &str) -> Option<Self> {
        if text == "*" {
            return Some(Self {
                source: "*".into(),
                kind: "*".into(),
            });
        }
        let (source, kind) = text.split_once(':')?;
        if source.is_empty() || kind.is_empty() {
            return None;
        }
        Some(Self {
            source: source.into(),
            kind: kind.into(),
        })
    }

    /// Whether an event from `source` of kind `kind` matches.
    pub fn matches(&self, source: &str, kind: &str) -> bool {
        glob(&self.source, source) && glob(&self.kind, kind)
    }
}

/// `*` matches any run of characters (none included); everything else
/// matches itself. Linear-time greedy matching with backtracking to the
/// last star, so hostile patterns cannot blow up.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, source: &str, kind: &str) -> bool {
        Pattern::parse(pattern)
            .expect("valid pattern")
            .matches(source, kind)
    }

    #[test]
    fn patterns_match_source_and_kind_with_stars() {
        assert!(m("*", "github", "issues.opened"));
        assert!(m("github:*", "github", "issues.opened"));
        assert!(!m("github:*", "stripe", "issues.opened"));
        assert!(m("stripe:invoice.*", "stripe", "invoice.paid"));
        assert!(!m("stripe:invoice.*", "stripe", "invoices"));
        assert!(m(
            "stripe:customer.subscription.*",
            "stripe",
            "customer.subscription.created"
        ));
        assert!(m("*:ping", "github", "ping"));
        assert!(m("git*:*.opened", "github", "issues.opened"));
        assert!(!m("git*:*.opened", "github", "issues.closed"));
        assert!(m("github:issues", "github", "issues"));
        assert!(!m("github:issues", "github", "issues.opened"));
        assert!(m("a:*b*c*", "a", "xxbyyc"));
        assert!(!m("a:*b*c*", "a", "xxcyyb"));
        assert!(m("a:**", "a", ""));
        // Many stars against a long non-match stay fast.
        let long = "a".repeat(10_000);
        assert!(!m(&format!("x:{}b", "*a".repeat(50)), "x", &long));
    }

    #[test]
    fn malformed_patterns_are_refused() {
        for bad in ["", "github", ":x", "x:", "**"] {
            assert!(Pattern::parse(bad).is_none(), "{bad:?}");
        }
    }

    fn route(name: &str, patterns: &[&str], order_key: Option<&str>) -> Route {
        Route {
            plugin: Arc::from(name),
            patterns: patterns.iter().filter_map(|p| Pattern::parse(p)).collect(),
            order_key: order_key.map(str::to_owned),
        }
    }

    #[test]
    fn targets_carry_order_keys_from_the_body() {
        let routes = Routes {
            routes: vec![
                route(
                    "billing",
                    &["stripe:invoice.*"],
                    Some("/data/object/customer"),
                ),
                route("echo", &["*"], None),
                route("gh", &["github:*"], None),
                route("num", &["*"], Some("/n")),
            ],
        };
        let body = br#"{"n":7,"data":{"object":{"customer":"cus_1"}}}"#;
        let got = routes.targets("stripe", "invoice.paid", body);
        let names: Vec<_> = got
            .iter()
            .map(|t| (&*t.plugin, t.order_key.as_deref()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("billing", Some("cus_1")),
                ("echo", None),
                ("num", Some("7"))
            ]
        );
        // No value at the pointer (or no JSON): delivered, unordered.
        let got = routes.targets("stripe", "invoice.paid", b"not json");
        assert!(got.iter().all(|t| t.order_key.is_none()));
        assert_eq!(got.len(), 3);
        assert!(Routes::default().targets("a", "b", b"{}").is_empty());
    }
}
