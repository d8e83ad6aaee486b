//! Exit policies (dir-spec §2.1.3 syntax, simplified): a comma-separated
//! list of `accept|reject ADDR[/BITS]:PORT[-PORT]` where ADDR may be `*`
//! and `private` (loopback, RFC 1918, link-local, unique-local), PORT `*`.
//! The first matching rule wins; no match rejects.

use std::net::IpAddr;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq)]
enum AddrPattern {
    Any,
    Private,
    Net(IpAddr, u8),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    accept: bool,
    addr: AddrPattern,
    ports: (u16, u16),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitPolicy {
    rules: Vec<Rule>,
}

/// Relays exit to public addresses only unless told otherwise.
pub const DEFAULT_EXIT_POLICY: &str = "reject private:*, accept *:*";

pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            a.is_loopback()
                || a.is_private()
                || a.is_link_local()
                || a.is_unspecified()
                || a.is_broadcast()
        }
        IpAddr::V6(a) => {
            a.is_loopback()
                || a.is_unspecified()
                || (a.segments()[0] & 0xfe00) == 0xfc00
                || (a.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

fn in_net(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(bits.min(32)))
            };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(bits.min(128)))
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// The networks `private` stands for, as descriptors spell them out.
const PRIVATE_NETS: &[&str] = &[
    "0.0.0.0/8",
    "169.254.0.0/16",
    "127.0.0.0/8",
    "192.168.0.0/16",
    "10.0.0.0/8",
    "172.16.0.0/12",
];

impl ExitPolicy {
    /// The policy as router-descriptor lines (dir-spec §2.1.1 "accept"/"reject").
    pub fn descriptor_lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        for r in &self.rules {
            let kind = if r.accept { "accept" } else { "reject" };
            let ports = match r.ports {
                (1, 65535) => "*".to_string(),
                (a, b) if a == b => a.to_string(),
                (a, b) => format!("{a}-{b}"),
            };
            match &r.addr {
                AddrPattern::Any => out.push(format!("{kind} *:{ports}")),
                AddrPattern::Private => {
                    out.extend(PRIVATE_NETS.iter().map(|n| format!("{kind} {n}:{ports}")))
                }
                AddrPattern::Net(IpAddr::V4(ip), bits) => {
                    out.push(format!("{kind} {ip}/{bits}:{ports}"))
                }
                AddrPattern::Net(IpAddr::V6(ip), bits) => {
                    out.push(format!("{kind}6 [{ip}]/{bits}:{ports}"))
                }
            }
        }
        // No match rejects: say so explicitly.
        if out.last().is_none_or(|l| !l.ends_with("*:*")) {
            out.push("reject *:*".into());
        }
        out
    }

    /// `reject *:*`: no exit.
    pub fn reject_all() -> Self {
        ExitPolicy {
            rules: vec![Rule {
                accept: false,
                addr: AddrPattern::Any,
                ports: (1, 65535),
            }],
        }
    }

    /// True when no rule accepts anything: a relay with this policy is no exit.
    pub fn rejects_everything(&self) -> bool {
        self.rules.iter().all(|r| !r.accept)
    }

    pub fn allows(&self, ip: IpAddr, port: u16) -> bool {
        for r in &self.rules {
            let addr_ok = match &r.addr {
                AddrPattern::Any => true,
                AddrPattern::Private => is_private(ip),
                AddrPattern::Net(net, bits) => in_net(ip, *net, *bits),
            };
            if addr_ok && (r.ports.0..=r.ports.1).contains(&port) {
                return r.accept;
            }
        }
        false
    }
}

/// A rule that is not `accept|reject ADDR[/BITS]:PORT[-PORT]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("exit policy rule {rule:?}: expected accept|reject ADDR[/BITS]:PORT[-PORT]")]
pub struct BadExitPolicy {
    pub rule: String,
}

impl FromStr for ExitPolicy {
    type Err = BadExitPolicy;

    fn from_str(s: &str) -> Result<Self, BadExitPolicy> {
        let mut rules = Vec::new();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let err = || BadExitPolicy {
                rule: item.to_string(),
            };
            let (kind, target) = item.split_once(' ').ok_or_else(err)?;
            let accept = match kind {
                "accept" => true,
                "reject" => false,
                _ => return Err(err()),
            };
            let (addr, ports) = target.trim().rsplit_once(':').ok_or_else(err)?;
            let addr = match addr {
                "*" => AddrPattern::Any,
                "private" => AddrPattern::Private,
                a => {
                    let (ip, bits) = match a.split_once('/') {
                        Some((ip, b)) => (ip, Some(b.parse::<u8>().map_err(|_| err())?)),
                        None => (a, None),
                    };
                    let ip: IpAddr = ip
                        .trim_matches(|c| c == '[' || c == ']')
                        .parse()
                        .map_err(|_| err())?;
                    let max = if ip.is_ipv4() { 32 } else { 128 };
                    AddrPattern::Net(ip, bits.unwrap_or(max).min(max))
                }
            };
            let ports = match ports {
                "*" => (1, 65535),
                p => match p.split_once('-') {
                    Some((a, b)) => (a.parse().map_err(|_| err())?, b.parse().map_err(|_| err())?),
                    None => {
                        let v = p.parse().map_err(|_| err())?;
                        (v, v)
                    }
                },
            };
            rules.push(Rule {
                accept,
                addr,
                ports,
            });
        }
        Ok(ExitPolicy { rules })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_rejects_private_and_first_match_wins() {
        let p: ExitPolicy = DEFAULT_EXIT_POLICY.parse().unwrap();
        assert!(!p.allows("127.0.0.1".parse().unwrap(), 80));
        assert!(!p.allows("192.168.1.1".parse().unwrap(), 80));
        assert!(p.allows("93.184.216.34".parse().unwrap(), 443));
        let test: ExitPolicy = "accept 127.0.0.0/8:*, reject *:*".parse().unwrap();
        assert!(test.allows("127.0.0.2".parse().unwrap(), 9));
        assert!(!test.allows("10.0.0.1".parse().unwrap(), 9));
        let ports: ExitPolicy = "accept *:80-81".parse().unwrap();
        assert!(
            ports.allows("1.1.1.1".parse().unwrap(), 81)
                && !ports.allows("1.1.1.1".parse().unwrap(), 82)
        );
        assert!("allow *:*".parse::<ExitPolicy>().is_err());
        assert!("accept 1.2.3.4/x:80".parse::<ExitPolicy>().is_err());
    }
}
