//! Who the client is on the network: the connection's peer, or, when the peer is a trusted proxy
//! (`server.trusted_proxies`), the address that proxy says it got the request from.
//!
//! The forwarding header (`X-Forwarded-For`, or RFC 7239 `Forwarded`: one of them, chosen by
//! `server.forwarded_header`, so a client cannot pick the one its proxy does not rewrite) lists
//! the hops, each proxy appending the address it received the request from. It is read from the
//! right: every address added by a trusted proxy is taken, up to the first that is not a trusted
//! proxy itself, which is the client. Anything a client wrote into the header stays to the left
//! of that and is never reached, so a client cannot choose its address (and its per-IP limits)
//! unless it is, or passes through, a proxy the config trusts. An entry that is not an address
//! (`unknown`, an obfuscated `_name`, garbage) ends the walk at the hop that wrote it.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

/// Which header trusted proxies write the chain into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ForwardedHeader {
    #[default]
    XForwardedFor,
    Forwarded,
}

impl ForwardedHeader {
    pub fn name(self) -> &'static str {
        match self {
            ForwardedHeader::XForwardedFor => "x-forwarded-for",
            ForwardedHeader::Forwarded => "forwarded",
        }
    }
}

/// The proxies whose forwarding header is believed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
    header: ForwardedHeader,
}

impl TrustedProxies {
    /// Parses CIDRs (`10.0.0.0/8`, `fd00::/8`) and single addresses (`127.0.0.1`). Errors name
    /// the entry.
    pub fn parse(entries: &[String], header: ForwardedHeader) -> Result<TrustedProxies, String> {
        let nets = entries
            .iter()
            .map(|e| {
                let e = e.trim();
                e.parse::<IpNet>()
                    .or_else(|_| e.parse::<IpAddr>().map(IpNet::from))
                    .map(|n| n.trunc())
                    .map_err(|_| format!("{e:?} is not an address or a CIDR (10.0.0.0/8, fd00::/8, 127.0.0.1)"))
            })
            .collect::<Result<_, _>>()?;
        Ok(TrustedProxies { nets, header })
    }

    /// The header to read, when any proxy is trusted.
    pub fn header(&self) -> Option<&'static str> {
        (!self.nets.is_empty()).then(|| self.header.name())
    }

    fn trusts(&self, a: IpAddr) -> bool {
        let a = canonical(a);
        self.nets.iter().any(|n| n.contains(&a))
    }

    /// The client's address, given the connection's `peer` and the values of the forwarding
    /// header in the order they arrived (several lines form one list).
    pub fn client<'a>(&self, peer: IpAddr, values: impl DoubleEndedIterator<Item = &'a [u8]>) -> IpAddr {
        let mut current = canonical(peer);
        if !self.trusts(current) {
            return current;
        }
        for value in values.rev() {
            let Ok(text) = std::str::from_utf8(value) else {
                return current;
            };
            for entry in text.rsplit(',') {
                let hop = match self.header {
                    ForwardedHeader::XForwardedFor => parse_hop(entry),
                    ForwardedHeader::Forwarded => forwarded_for(entry).and_then(parse_hop),
                };
                let Some(hop) = hop else {
                    return current;
                };
                current = canonical(hop);
                if !self.trusts(current) {
                    return current;
                }
            }
        }
        current
    }
}

/// An IPv4 address mapped into IPv6 (`::ffff:10.0.0.1`, as a dual-stack socket reports it) is
/// the IPv4 address.
fn canonical(a: IpAddr) -> IpAddr {
    match a {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(a, IpAddr::V4),
        v4 => v4,
    }
}

/// `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]:80`, quoted or not.
fn parse_hop(entry: &str) -> Option<IpAddr> {
    let e = entry.trim().trim_matches('"');
    if let Ok(a) = e.parse::<IpAddr>() {
        return Some(a);
    }
    if let Ok(s) = e.parse::<SocketAddr>() {
        return Some(s.ip());
    }
    e.strip_prefix('[')?.strip_suffix(']')?.parse().ok()
}

/// The `for=` parameter of one `Forwarded` element (`for=1.2.3.4;proto=https;by=…`).
fn forwarded_for(element: &str) -> Option<&str> {
    element.split(';').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        k.trim().eq_ignore_ascii_case("for").then_some(v.trim())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn trusted(nets: &[&str], header: ForwardedHeader) -> TrustedProxies {
        TrustedProxies::parse(&nets.iter().map(|s| s.to_string()).collect::<Vec<_>>(), header).unwrap()
    }

    fn client(t: &TrustedProxies, peer: &str, values: &[&str]) -> String {
        t.client(ip(peer), values.iter().map(|v| v.as_bytes())).to_string()
    }

    #[test]
    fn only_trusted_hops_are_believed() {
        let t = trusted(&["10.0.0.0/8", "192.168.1.1"], ForwardedHeader::XForwardedFor);
        // No proxy: the peer, whatever the header says.
        assert_eq!(client(&t, "203.0.113.9", &["1.1.1.1"]), "203.0.113.9");
        // One trusted proxy: the address it appended.
        assert_eq!(client(&t, "10.1.2.3", &["198.51.100.7"]), "198.51.100.7");
        // A client's forged entries stay to the left of what the proxy appended.
        assert_eq!(client(&t, "10.1.2.3", &["1.1.1.1, 198.51.100.7"]), "198.51.100.7");
        // Two trusted proxies, the chain over two header lines.
        assert_eq!(
            client(&t, "10.1.2.3", &["6.6.6.6, 198.51.100.7", "192.168.1.1"]),
            "198.51.100.7"
        );
        // All hops trusted: the leftmost.
        assert_eq!(client(&t, "10.1.2.3", &["10.9.9.9"]), "10.9.9.9");
        // Garbage or `unknown` ends the walk at the hop that wrote it.
        assert_eq!(client(&t, "10.1.2.3", &["1.1.1.1, unknown"]), "10.1.2.3");
        assert_eq!(client(&t, "10.1.2.3", &["1.1.1.1, 10.0.0.5, nonsense"]), "10.1.2.3");
        // Ports and IPv6 forms; a mapped IPv4 peer is IPv4.
        assert_eq!(client(&t, "::ffff:10.0.0.1", &["[2001:db8::1]:4711"]), "2001:db8::1");
        assert_eq!(client(&t, "10.0.0.1", &["198.51.100.7:5000"]), "198.51.100.7");
        // No header at all: the proxy itself.
        assert_eq!(client(&t, "10.0.0.1", &[]), "10.0.0.1");
        // Nothing trusted: never read.
        let none = trusted(&[], ForwardedHeader::XForwardedFor);
        assert_eq!(none.header(), None);
        assert_eq!(client(&none, "10.1.2.3", &["1.1.1.1"]), "10.1.2.3");
    }

    #[test]
    fn forwarded_elements() {
        let t = trusted(&["10.0.0.0/8"], ForwardedHeader::Forwarded);
        assert_eq!(t.header(), Some("forwarded"));
        assert_eq!(
            client(
                &t,
                "10.0.0.1",
                &[r#"for=1.1.1.1, For="[2001:db8:cafe::17]:4711";proto=https"#]
            ),
            "2001:db8:cafe::17"
        );
        assert_eq!(
            client(&t, "10.0.0.1", &["for=198.51.100.7;by=10.0.0.1"]),
            "198.51.100.7"
        );
        assert_eq!(client(&t, "10.0.0.1", &["for=_hidden"]), "10.0.0.1");
        assert_eq!(client(&t, "10.0.0.1", &["proto=https"]), "10.0.0.1");
    }

    #[test]
    fn bad_entries_are_named() {
        let e = TrustedProxies::parse(&["10.0.0.0/33".into()], ForwardedHeader::XForwardedFor).unwrap_err();
        assert!(e.contains("\"10.0.0.0/33\""), "{e}");
        let t = trusted(&["10.1.2.3/8"], ForwardedHeader::XForwardedFor);
        assert!(t.trusts(ip("10.200.0.1")));
    }
}
