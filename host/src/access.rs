//! Who is sending: the client's address (from the socket, or from
//! `X-Forwarded-For` only when the socket peer is a trusted proxy) and the
//! per-source CIDR allowlist.

use http::HeaderMap;
use ipnet::IpNet;
use std::net::IpAddr;

/// The address a request comes from.
///
/// `X-Forwarded-For` is believed only when the socket peer is one of
/// `trusted` proxies, and then read from the right, skipping further trusted
/// proxies: the first untrusted address is the client. Anything a client
/// could have forged further left is ignored. A malformed header leaves the
/// peer as the client.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer = peer.to_canonical();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut hops = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let Ok(text) = value.to_str() else {
            return peer;
        };
        for hop in text.split(',') {
            match hop.trim().parse::<IpAddr>() {
                Ok(ip) => hops.push(ip.to_canonical()),
                Err(_) => return peer,
            }
        }
    }
    let mut client = peer;
    for hop in hops.into_iter().rev() {
        client = hop;
        if !is_trusted(&hop) {
            break;
        }
    }
    client
}

/// Whether `ip` may send to a source with this allowlist (empty: anyone).
pub fn allowed(ip: IpAddr, allow: &[IpNet]) -> bool {
    allow.is_empty() || allow.iter().any(|n| n.contains(&ip.to_canonical()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xff(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", v.parse().expect("value"));
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().expect("net")];
        let h = xff("1.2.3.4, 10.0.0.7");
        // From a trusted proxy: the first untrusted hop from the right.
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("1.2.3.4"));
        // From anyone else: the socket address, whatever the header says.
        assert_eq!(client_ip(ip("5.6.7.8"), &h, &trusted), ip("5.6.7.8"));
        // A forged leftmost entry does not win over a real hop.
        let forged = xff("192.30.252.1, 1.2.3.4");
        assert_eq!(client_ip(ip("10.0.0.1"), &forged, &trusted), ip("1.2.3.4"));
        // Malformed: the proxy itself is the client.
        assert_eq!(
            client_ip(ip("10.0.0.1"), &xff("nonsense"), &trusted),
            ip("10.0.0.1")
        );
        // IPv4-mapped IPv6 peers count as IPv4.
        assert_eq!(
            client_ip(ip("::ffff:10.0.0.1"), &h, &trusted),
            ip("1.2.3.4")
        );
    }

    #[test]
    fn allowlists() {
        let allow: Vec<IpNet> = vec!["192.30.252.0/22".parse().expect("net")];
        assert!(allowed(ip("192.30.253.9"), &allow));
        assert!(!allowed(ip("8.8.8.8"), &allow));
        assert!(allowed(ip("8.8.8.8"), &[]));
    }
}
