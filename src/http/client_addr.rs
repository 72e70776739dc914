//! The client's address as Phoenix counts it (failed-login limits): the TCP peer, unless the peer is
//! a proxy listed in `server.trusted_proxies`, in which case the address that proxy reports in
//! `X-Forwarded-For`.

use std::net::{IpAddr, SocketAddr};

use actix_web::http::header::HeaderName;
use actix_web::HttpRequest;

use crate::config::TrustedProxy;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The client's address for `req`; `None` only when the peer is unknown (never over TCP).
pub fn client_address(req: &HttpRequest, trusted: &[TrustedProxy]) -> Option<IpAddr> {
    let forwarded = req.headers().get_all(X_FORWARDED_FOR).filter_map(|value| value.to_str().ok());
    resolve(req.peer_addr().map(|addr| addr.ip()), forwarded, trusted)
}

/// Walks `X-Forwarded-For` from the right (the hop nearest to us) past trusted proxies: the first
/// address no trusted proxy owns is the client. Entries further left were written by the client
/// itself and prove nothing. An entry that is not an address stops the walk at the proxy that
/// passed it on, so garbage can only ever count against that proxy.
fn resolve<'a>(
    peer: Option<IpAddr>,
    forwarded_for: impl Iterator<Item = &'a str>,
    trusted: &[TrustedProxy],
) -> Option<IpAddr> {
    let is_trusted = |addr: IpAddr| trusted.iter().any(|proxy| proxy.contains(addr));
    let mut client = peer?.to_canonical();
    if !is_trusted(client) {
        return Some(client);
    }
    // Several header lines read as one list, in order.
    let entries: Vec<&str> = forwarded_for.flat_map(|line| line.split(',')).collect();
    for entry in entries.into_iter().rev() {
        let Some(addr) = parse_entry(entry) else { break };
        client = addr;
        if !is_trusted(addr) {
            break;
        }
    }
    Some(client)
}

/// `203.0.113.7`, `2001:db8::1`, or either with a port (`203.0.113.7:5100`, `[2001:db8::1]:5100`).
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    let addr = entry.parse::<IpAddr>().ok().or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))?;
    Some(addr.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn client(peer: &str, header: &[&str], trusted: &[&str]) -> IpAddr {
        let trusted: Vec<TrustedProxy> = trusted.iter().map(|t| t.parse().unwrap()).collect();
        resolve(Some(ip(peer)), header.iter().copied(), &trusted).unwrap()
    }

    #[test]
    fn without_trusted_proxies_the_header_is_ignored() {
        assert_eq!(client("198.51.100.1", &["203.0.113.7"], &[]), ip("198.51.100.1"));
    }

    #[test]
    fn a_peer_that_is_not_a_trusted_proxy_cannot_speak_for_anyone() {
        assert_eq!(client("198.51.100.1", &["203.0.113.7"], &["10.0.0.0/8"]), ip("198.51.100.1"));
    }

    #[test]
    fn behind_a_trusted_proxy_the_nearest_untrusted_address_is_the_client() {
        assert_eq!(client("10.0.0.2", &["203.0.113.7"], &["10.0.0.0/8"]), ip("203.0.113.7"));
        // Two proxies of ours (10.0.0.9 passed it to 10.0.0.2); what the client wrote first is ignored.
        let header = ["1.2.3.4, 203.0.113.7", "10.0.0.9"];
        assert_eq!(client("10.0.0.2", &header, &["10.0.0.0/8"]), ip("203.0.113.7"));
    }

    #[test]
    fn garbage_in_the_header_counts_against_the_proxy_that_passed_it() {
        assert_eq!(client("10.0.0.2", &["203.0.113.7, unknown"], &["10.0.0.0/8"]), ip("10.0.0.2"));
        assert_eq!(client("10.0.0.2", &[""], &["10.0.0.0/8"]), ip("10.0.0.2"));
        assert_eq!(client("10.0.0.2", &[], &["10.0.0.0/8"]), ip("10.0.0.2"));
    }

    #[test]
    fn ports_and_ipv4_written_as_ipv6_are_understood() {
        assert_eq!(client("::ffff:10.0.0.2", &["203.0.113.7:5100"], &["10.0.0.2"]), ip("203.0.113.7"));
        assert_eq!(client("::1", &["[2001:db8::1]:443"], &["::1"]), ip("2001:db8::1"));
    }

    #[test]
    fn when_every_hop_is_trusted_the_furthest_one_is_the_client() {
        assert_eq!(client("10.0.0.2", &["10.0.0.3, 10.0.0.9"], &["10.0.0.0/8"]), ip("10.0.0.3"));
    }
}
