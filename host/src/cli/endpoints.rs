//! Where the CLI talks to and with what credentials: the admin API's URL
//! and token, and the ingest URL `send` posts to, from the command line,
//! the environment and the same config file the server reads.
//!
//! The rules (flags win, then the environment, then the config):
//! - admin URL: `--admin URL`, else `http://<server.admin_listen>`;
//! - admin token: `--token`, else `HOOKHOST_ADMIN_TOKEN`, else the config's
//!   `admin_token`;
//! - ingest URL: `--url` (a bare `http://host:port` gets
//!   `/webhooks/<source>` appended), else
//!   `http://<server.listen>/webhooks/<source>`.
//!
//! A listen address that binds every interface (`0.0.0.0`, `[::]`) is not
//! an address to connect to: the CLI uses loopback of the same family,
//! which such a server also listens on.

use crate::config::{Config, SecretString};
use anyhow::Context as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use url::Url;

/// The environment variable with the admin token: keeps it out of the
/// shell history and `ps`, unlike `--token`.
pub const TOKEN_ENV: &str = "HOOKHOST_ADMIN_TOKEN";

/// The admin API to call.
#[derive(Debug, Clone)]
pub struct AdminTarget {
    /// Base URL, e.g. `http://127.0.0.1:8081/`.
    pub base: Url,
    /// The bearer token, if any.
    pub token: Option<SecretString>,
}

/// Load the config the way the server does (`--config`, else
/// `./hookhost.toml` if present, else the built-in defaults; `HOOKHOST_*`
/// overrides and `env:NAME` secrets from `env`).
pub fn load_config(path: Option<&Path>, env: &[(String, String)]) -> anyhow::Result<Config> {
    Ok(crate::config::load(path, env)?)
}

/// The admin API from the flags, the environment and (only when the flags
/// and environment leave something open) the config.
pub fn admin_target(
    admin_flag: Option<&str>,
    token_flag: Option<&str>,
    config_path: Option<&Path>,
    env: &[(String, String)],
) -> anyhow::Result<AdminTarget> {
    let token = token_flag
        .map(str::to_owned)
        .or_else(|| env_value(env, TOKEN_ENV))
        .map(SecretString::new);
    let base = admin_flag.map(|a| parse_url(a, "--admin")).transpose()?;
    if let (Some(base), Some(token)) = (&base, &token) {
        return Ok(AdminTarget {
            base: base.clone(),
            token: Some(token.clone()),
        });
    }
    let config = load_config(config_path, env).context(
        "reading the config for the admin API's address and token (or give --admin URL and --token)",
    )?;
    // The config's token goes only to the config's own admin address, or
    // to this machine: `--admin http://elsewhere` never gets it unasked.
    let config_token = match &base {
        None => config.server.admin_token,
        Some(url) if is_loopback(url) => config.server.admin_token,
        Some(_) => None,
    };
    Ok(AdminTarget {
        base: match base {
            Some(b) => b,
            None => http_url(config.server.admin_listen)?,
        },
        token: token.or(config_token),
    })
}

/// Whether `url` names this machine.
fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// The URL `send` posts a webhook for `source` to.
pub fn ingest_url(url_flag: Option<&str>, config: &Config, source: &str) -> anyhow::Result<Url> {
    let mut url = match url_flag {
        Some(u) => {
            let url = parse_url(u, "--url")?;
            if url.path() != "/" {
                return Ok(url);
            }
            url
        }
        None => http_url(config.server.listen)?,
    };
    let shown = url.to_string();
    url.path_segments_mut()
        .map_err(|()| anyhow::anyhow!("{shown} cannot take a path"))?
        .pop_if_empty()
        .extend(["webhooks", source]);
    Ok(url)
}

/// A URL from the command line; `host:port` alone means `http://host:port`.
pub fn parse_url(text: &str, flag: &str) -> anyhow::Result<Url> {
    let with_scheme = if text.contains("://") {
        text.to_owned()
    } else {
        format!("http://{text}")
    };
    let url = Url::parse(&with_scheme).with_context(|| format!("{flag} {text:?} is not a URL"))?;
    if url.scheme() != "http" {
        anyhow::bail!(
            "{flag} {text:?}: only http:// is supported (hookhost's listeners speak plain HTTP)"
        );
    }
    Ok(url)
}

/// `http://addr/`, with an unspecified address made loopback.
fn http_url(addr: SocketAddr) -> anyhow::Result<Url> {
    let addr = connectable(addr);
    Url::parse(&format!("http://{addr}/")).with_context(|| format!("{addr} as a URL"))
}

/// The address to connect to for a listener bound to `addr`.
pub fn connectable(addr: SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port())
}

/// A non-empty variable of `env` (the last one wins, as in a process
/// environment built by appending).
fn env_value(env: &[(String, String)], name: &str) -> Option<String> {
    env.iter()
        .rev()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn config(toml: &str, env: &[(String, String)]) -> Config {
        crate::config::load_str(toml, env).expect("config")
    }

    #[test]
    fn unspecified_addresses_become_loopback() {
        let cases = [
            ("0.0.0.0:8080", "127.0.0.1:8080"),
            ("[::]:8081", "[::1]:8081"),
            ("10.1.2.3:9", "10.1.2.3:9"),
            ("[::1]:80", "[::1]:80"),
        ];
        for (given, want) in cases {
            let addr: SocketAddr = given.parse().expect("addr");
            assert_eq!(connectable(addr).to_string(), want);
        }
    }

    #[test]
    fn ingest_urls() {
        let c = config(
            "[server]\nlisten = \"0.0.0.0:9000\"\nadmin_listen = \"127.0.0.1:9001\"\nadmin_token = \"t\"\n[[source]]\nname = \"g\"\nscheme = \"github\"\nsecrets = [\"x\"]\n",
            &[],
        );
        let url = |flag| ingest_url(flag, &c, "git hub").expect("url").to_string();
        assert_eq!(url(None), "http://127.0.0.1:9000/webhooks/git%20hub");
        assert_eq!(
            url(Some("http://localhost:1234")),
            "http://localhost:1234/webhooks/git%20hub"
        );
        assert_eq!(
            url(Some("127.0.0.1:5/")),
            "http://127.0.0.1:5/webhooks/git%20hub"
        );
        assert_eq!(
            url(Some("http://proxy/hooks/x")),
            "http://proxy/hooks/x",
            "a URL with a path is used as given"
        );
        let err = ingest_url(Some("https://example.com"), &c, "s").expect_err("https");
        assert!(err.to_string().contains("only http://"), "{err}");
    }

    #[test]
    fn admin_token_and_url_precedence() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("hookhost.toml");
        std::fs::write(
            &path,
            "[server]\nadmin_listen = \"[::]:7001\"\nadmin_token = \"env:CFG_TOKEN\"\n",
        )
        .expect("write");
        let with = env(&[("CFG_TOKEN", "from-config"), (TOKEN_ENV, "from-env")]);
        let token = |t: &AdminTarget| t.token.as_ref().map(|t| t.expose().to_owned());

        let t = admin_target(None, None, Some(&path), &with).expect("target");
        assert_eq!(t.base.as_str(), "http://[::1]:7001/");
        assert_eq!(token(&t).as_deref(), Some("from-env"));

        let t = admin_target(None, Some("flag"), Some(&path), &with).expect("target");
        assert_eq!(token(&t).as_deref(), Some("flag"));

        let only_config = env(&[("CFG_TOKEN", "from-config")]);
        let t = admin_target(Some("127.0.0.1:1"), None, Some(&path), &only_config).expect("target");
        assert_eq!(t.base.as_str(), "http://127.0.0.1:1/");
        assert_eq!(token(&t).as_deref(), Some("from-config"));
        // Another host never gets the config's token unasked.
        let t = admin_target(Some("h:1"), None, Some(&path), &only_config).expect("target");
        assert_eq!(t.base.as_str(), "http://h:1/");
        assert_eq!(token(&t), None);

        // URL and token on the command line: the config is not read, so
        // a config that does not load (its env secret is unset) is no
        // obstacle.
        let t = admin_target(Some("h:1"), Some("flag"), Some(&path), &[]).expect("target");
        assert_eq!(token(&t).as_deref(), Some("flag"));
        let err = admin_target(None, None, Some(&path), &[]).expect_err("unset secret");
        assert!(format!("{err:#}").contains("CFG_TOKEN"), "{err:#}");
    }
}
