//! `server.trusted_proxies`: the load balancers whose `X-Forwarded-For` Phoenix believes.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// One trusted proxy: an address (`10.0.0.5`, `::1`) or a network (`10.0.0.0/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TrustedProxy(IpNet);

impl TrustedProxy {
    /// Whether `addr` is this proxy (an IPv4 address written as IPv6, `::ffff:10.0.0.5`, counts as
    /// the IPv4 one: that is how a dual-stack listener reports IPv4 peers).
    pub fn contains(&self, addr: IpAddr) -> bool {
        self.0.contains(&addr.to_canonical())
    }
}

impl FromStr for TrustedProxy {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if let Ok(net) = text.parse::<IpNet>() {
            return Ok(TrustedProxy(net.trunc()));
        }
        text.parse::<IpAddr>()
            .map(|addr| TrustedProxy(IpNet::from(addr)))
            .map_err(|_| format!("'{text}' is neither an IP address nor a network like 10.0.0.0/8"))
    }
}

impl TryFrom<String> for TrustedProxy {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<TrustedProxy> for String {
    fn from(proxy: TrustedProxy) -> String {
        proxy.to_string()
    }
}

impl fmt::Display for TrustedProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A single address is shown as written, without `/32` or `/128`.
        if self.0.prefix_len() == self.0.max_prefix_len() {
            write!(f, "{}", self.0.addr())
        } else {
            write!(f, "{}", self.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy(text: &str) -> TrustedProxy {
        text.parse().unwrap()
    }

    #[test]
    fn addresses_and_networks_are_both_accepted() {
        assert!(proxy("10.0.0.5").contains("10.0.0.5".parse().unwrap()));
        assert!(!proxy("10.0.0.5").contains("10.0.0.6".parse().unwrap()));
        assert!(proxy("10.0.0.0/8").contains("10.200.3.4".parse().unwrap()));
        assert!(!proxy("10.0.0.0/8").contains("11.0.0.1".parse().unwrap()));
        assert!(proxy("fd00::/8").contains("fd12::1".parse().unwrap()));
        assert!(proxy(" ::1 ").contains("::1".parse().unwrap()));
    }

    #[test]
    fn an_ipv4_peer_seen_through_an_ipv6_listener_is_still_matched() {
        assert!(proxy("127.0.0.1").contains("::ffff:127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn host_bits_of_a_network_are_dropped_and_it_prints_as_written() {
        assert_eq!(proxy("10.1.2.3/8").to_string(), "10.0.0.0/8");
        assert_eq!(proxy("10.0.0.5").to_string(), "10.0.0.5");
        assert_eq!(proxy("::1").to_string(), "::1");
    }

    #[test]
    fn anything_else_is_refused_with_the_text_quoted() {
        for bad in ["", "proxy.internal", "10.0.0.0/33", "10.0.0.256"] {
            let err = bad.parse::<TrustedProxy>().unwrap_err();
            assert!(err.contains(&format!("'{bad}'")), "{err}");
        }
    }
}
