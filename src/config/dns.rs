//! Provider host names resolved again while the gateway runs (`server.dns_refresh`).
//!
//! A snapshot keeps each provider's host name with the address it resolved to at load (`Name`),
//! or none when it did not resolve (the provider is then disabled with a warning). A background
//! pass resolves the names again (`check`, blocking: call it off the request path) and reports
//! the ones whose answer no longer contains the address in use, or that resolve again after
//! failing at load; the gateway then rebuilds the snapshot from the same config text (a reload
//! whose only change is the addresses), so new connections go to the new address and a disabled
//! provider comes back. A name that stops resolving keeps its last address: a DNS outage never
//! takes a working provider away.

use std::collections::BTreeSet;
use std::net::SocketAddr;

/// A provider's host name and what it resolved to at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name {
    pub provider: String,
    pub host: String,
    pub port: u16,
    /// `None`: it did not resolve at load (the provider is disabled).
    pub addr: Option<SocketAddr>,
}

/// What a pass found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pass {
    /// Names whose answer changed: the snapshot should be rebuilt. Human-readable.
    pub changed: Vec<String>,
    /// Names that did not resolve (the provider keeps its address), by provider.
    pub failed: BTreeSet<String>,
}

/// Resolves every name with `lookup` (all the addresses it gives, or an error).
pub fn check(names: &[Name], lookup: impl Fn(&str, u16) -> Result<Vec<SocketAddr>, String>) -> Pass {
    let mut pass = Pass::default();
    for n in names {
        match lookup(&n.host, n.port) {
            Ok(addrs) if addrs.is_empty() => {
                pass.failed.insert(n.provider.clone());
            }
            Ok(addrs) => match n.addr {
                Some(a) if addrs.contains(&a) => {}
                Some(a) => pass.changed.push(format!(
                    "provider {:?}: {} now resolves to {} (was {a})",
                    n.provider, n.host, addrs[0]
                )),
                None => pass.changed.push(format!(
                    "provider {:?}: {} resolves again ({})",
                    n.provider, n.host, addrs[0]
                )),
            },
            Err(_) => {
                pass.failed.insert(n.provider.clone());
            }
        }
    }
    pass
}

/// The system resolver: every address of `host`.
pub fn system_lookup(host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    use std::net::ToSocketAddrs;
    (host, port)
        .to_socket_addrs()
        .map(Iterator::collect)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(provider: &str, host: &str, addr: Option<&str>) -> Name {
        Name {
            provider: provider.into(),
            host: host.into(),
            port: 443,
            addr: addr.map(|a| a.parse().unwrap()),
        }
    }

    #[test]
    fn a_changed_answer_or_a_name_back_asks_for_a_rebuild_and_an_outage_does_not() {
        let names = [
            name("same", "same.test", Some("10.0.0.1:443")),
            name("rotated", "rr.test", Some("10.0.0.2:443")),
            name("moved", "moved.test", Some("10.0.0.3:443")),
            name("back", "back.test", None),
            name("down", "down.test", Some("10.0.0.5:443")),
            name("still-down", "gone.test", None),
        ];
        let pass = check(&names, |host, port| {
            let a = |s: &str| SocketAddr::new(s.parse().unwrap(), port);
            match host {
                "same.test" => Ok(vec![a("10.0.0.1")]),
                // Round-robin: the address in use is still among the answers.
                "rr.test" => Ok(vec![a("10.0.0.9"), a("10.0.0.2")]),
                "moved.test" => Ok(vec![a("10.0.0.4")]),
                "back.test" => Ok(vec![a("10.0.0.6")]),
                _ => Err("no such host".into()),
            }
        });
        assert_eq!(
            pass.changed,
            vec![
                "provider \"moved\": moved.test now resolves to 10.0.0.4:443 (was 10.0.0.3:443)".to_string(),
                "provider \"back\": back.test resolves again (10.0.0.6:443)".to_string(),
            ]
        );
        assert_eq!(
            pass.failed.into_iter().collect::<Vec<_>>(),
            vec!["down".to_string(), "still-down".to_string()]
        );
    }
}
