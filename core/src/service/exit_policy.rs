//! Exit policies (dir-spec §2.1.3 syntax, simplified): a comma-separated
//! list of `accept|reject ADDR[/BITS]:PORT[-PORT]` where ADDR may be `*`
//! and `private`, PORT `*`. The first matching rule wins; no match rejects;
//! port 0 is never allowed.
//!
//! Addresses are compared in canonical form: an IPv4-mapped IPv6 address
//! (`::ffff:a.b.c.d`) is the IPv4 address it maps, so neither a BEGIN to
//! `[::ffff:127.0.0.1]` nor a name whose AAAA maps a private address gets
//! past `reject private`. `private` covers every network that reaches the
//! exit's host or its neighbours rather than the Internet (see
//! `is_private`), and the exit's own addresses.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
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
    /// The exit's own addresses (canonical): part of `private`.
    own: Vec<IpAddr>,
}

/// Relays exit to public addresses only, and to a reduced set of ports
/// unless told otherwise: the ports of Tor's well-known "reduced exit
/// policy" (web, mail retrieval but not port 25, chat, SSH, DNS, …).
pub const DEFAULT_EXIT_POLICY: &str = "reject private:*, \
accept *:20-23, accept *:43, accept *:53, accept *:79-81, accept *:88, accept *:110, \
accept *:143, accept *:194, accept *:220, accept *:389, accept *:443, accept *:464, \
accept *:465, accept *:531, accept *:543-544, accept *:554, accept *:563, accept *:587, \
accept *:636, accept *:706, accept *:749, accept *:873, accept *:902-904, accept *:981, \
accept *:989-995, accept *:1194, accept *:1220, accept *:1293, accept *:1500, accept *:1533, \
accept *:1677, accept *:1723, accept *:1755, accept *:1863, accept *:2082-2083, \
accept *:2086-2087, accept *:2095-2096, accept *:2102-2104, accept *:3128, accept *:3389, \
accept *:3690, accept *:4321, accept *:4643, accept *:5050, accept *:5190, accept *:5222-5223, \
accept *:5228, accept *:5900, accept *:6660-6669, accept *:6679, accept *:6697, accept *:8000, \
accept *:8008, accept *:8074, accept *:8080, accept *:8082, accept *:8087-8088, \
accept *:8232-8233, accept *:8332-8333, accept *:8443, accept *:8888, accept *:9418, \
accept *:9999, accept *:10000, accept *:11371, accept *:19294, accept *:19638, accept *:50002, \
accept *:64738, reject *:*";

/// `ip` with an IPv4-mapped IPv6 address turned into its IPv4 address.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(a) => a.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn private_v4(a: Ipv4Addr) -> bool {
    let o = a.octets();
    o[0] == 0                                     // "this network" (RFC 1122)
        || a.is_private()                         // RFC 1918
        || (o[0] == 100 && (o[1] & 0xc0) == 64)   // shared address space (RFC 6598)
        || a.is_loopback()
        || a.is_link_local()
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments (RFC 6890)
        || o[0] >= 224 // multicast (224/4), reserved (240/4), broadcast
}

fn private_v6(a: Ipv6Addr) -> bool {
    let s = a.segments();
    (s[0] & 0xff00) == 0                          // ::/8: unspecified, loopback,
                                                  // IPv4-compatible, IPv4-mapped
        || (s[0] & 0xfe00) == 0xfc00              // unique local (RFC 4193)
        || (s[0] & 0xffc0) == 0xfe80              // link-local
        || (s[0] & 0xffc0) == 0xfec0              // site-local (deprecated)
        || (s[0] & 0xff00) == 0xff00              // multicast
        || (s[0] == 0x64 && s[1] == 0xff9b)       // NAT64 (RFC 6052, RFC 8215):
                                                  // a local gateway reaches any v4
        || (s[0] == 0x2002 && private_v4(Ipv4Addr::new(
            (s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8,
        ))) // 6to4 of a private IPv4 address
}

/// Whether `ip` (in any spelling) reaches the exit's host or networks
/// near it rather than the public Internet.
pub fn is_private(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(a) => private_v4(a),
        IpAddr::V6(a) => private_v6(a),
    }
}

fn in_net(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    // A rule written as an IPv4-mapped IPv6 network (`::ffff:10.0.0.0/104`)
    // is the IPv4 network with 96 fewer bits.
    let bits = match (net, canonical(net)) {
        (IpAddr::V6(_), IpAddr::V4(_)) => bits.saturating_sub(96),
        _ => bits,
    };
    match (ip, canonical(net)) {
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

/// The IPv4 networks `private` stands for, as descriptors spell them out
/// (IPv6 exit policies are not published in our descriptors: "reject" for
/// every IPv6 address is what a client assumes).
const PRIVATE_NETS: &[&str] = &[
    "0.0.0.0/8",
    "169.254.0.0/16",
    "127.0.0.0/8",
    "192.168.0.0/16",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "100.64.0.0/10",
    "192.0.0.0/24",
    "224.0.0.0/3",
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

    /// The policy with the exit's own addresses added to `private`.
    pub fn with_own_addresses(mut self, own: &[IpAddr]) -> Self {
        for ip in own.iter().map(|ip| canonical(*ip)) {
            if !ip.is_unspecified() && !self.own.contains(&ip) {
                self.own.push(ip);
            }
        }
        self
    }

    /// `reject *:*`: no exit.
    pub fn reject_all() -> Self {
        ExitPolicy {
            rules: vec![Rule {
                accept: false,
                addr: AddrPattern::Any,
                ports: (1, 65535),
            }],
            own: Vec::new(),
        }
    }

    /// True when no rule accepts anything: a relay with this policy is no exit.
    pub fn rejects_everything(&self) -> bool {
        self.rules.iter().all(|r| !r.accept)
    }

    pub fn allows(&self, ip: IpAddr, port: u16) -> bool {
        let ip = canonical(ip);
        if port == 0 {
            return false;
        }
        for r in &self.rules {
            let addr_ok = match &r.addr {
                AddrPattern::Any => true,
                AddrPattern::Private => is_private(ip) || self.own.contains(&ip),
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
        Ok(ExitPolicy {
            rules,
            own: Vec::new(),
        })
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

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Addresses that reach the exit's own host or its private networks
    /// in another spelling: each must fall under `private`.
    #[test]
    fn private_covers_every_spelling_of_a_private_address() {
        let p: ExitPolicy = "reject private:*, accept *:*".parse().unwrap();
        for a in [
            "::ffff:127.0.0.1",   // IPv4-mapped loopback
            "::ffff:10.1.2.3",    // IPv4-mapped RFC 1918 (an AAAA could say so)
            "::ffff:192.168.0.1", //
            "::127.0.0.1",        // IPv4-compatible (deprecated, RFC 4291 §2.5.5.1)
            "::10.0.0.1",         //
            "::1.2.3.4",          // IPv4-compatible, even of a public address
            "64:ff9b::7f00:1",    // NAT64 well-known prefix (RFC 6052) to 127.0.0.1
            "64:ff9b::808:808",   // NAT64 to anything: the gateway is local
            "64:ff9b:1::a00:1",   // local-use NAT64 (RFC 8215)
            "2002:7f00:1::1",     // 6to4 of 127.0.0.1
            "2002:c0a8:1::1",     // 6to4 of 192.168.0.1
            "100.64.0.1",         // shared address space (RFC 6598)
            "100.127.255.254",    //
            "224.0.0.1",          // multicast
            "239.255.255.250",    //
            "ff02::1",            // IPv6 multicast
            "240.0.0.1",          // reserved
            "255.255.255.255",    //
            "fec0::1",            // site-local
            "0.1.2.3",            //
        ] {
            assert!(!p.allows(ip(a), 80), "{a} must be private");
        }
        for a in [
            "93.184.216.34",
            "2606:2800:220:1::1",
            "100.128.0.1",
            "198.18.0.2",
        ] {
            assert!(p.allows(ip(a), 80), "{a} is public");
        }
    }

    /// A rule names an IPv4 network: an IPv4-mapped address in it matches.
    #[test]
    fn rules_match_ipv4_mapped_addresses_as_ipv4() {
        let p: ExitPolicy = "reject 93.184.0.0/16:*, accept *:*".parse().unwrap();
        assert!(!p.allows(ip("::ffff:93.184.216.34"), 80));
        let a: ExitPolicy = "accept 127.0.0.0/8:*, reject *:*".parse().unwrap();
        assert!(a.allows(ip("::ffff:127.0.0.2"), 80));
    }

    /// The exit's own addresses are private too (as C tor's
    /// ExitPolicyRejectPrivate), in any spelling.
    #[test]
    fn the_exits_own_addresses_are_private() {
        let p: ExitPolicy = "reject private:*, accept *:*".parse().unwrap();
        let p = p.with_own_addresses(&[ip("198.18.0.1")]);
        assert!(!p.allows(ip("198.18.0.1"), 80));
        assert!(!p.allows(ip("::ffff:198.18.0.1"), 80));
        assert!(p.allows(ip("198.18.0.2"), 80));
    }

    /// The default is a reduced policy: web and other common ports, no
    /// mail submission to port 25, nothing private.
    #[test]
    fn the_default_policy_is_reduced() {
        let p: ExitPolicy = DEFAULT_EXIT_POLICY.parse().unwrap();
        let public = ip("93.184.216.34");
        for port in [80, 443, 8080, 22, 53] {
            assert!(p.allows(public, port), "port {port}");
        }
        for port in [25, 119, 445, 6881, 0] {
            assert!(!p.allows(public, port), "port {port}");
        }
        assert!(!p.allows(ip("::ffff:127.0.0.1"), 80));
        assert!(!p.allows(ip("224.0.0.1"), 80));
    }

    /// A rule spelled as an IPv4-mapped IPv6 network keeps its prefix.
    #[test]
    fn a_mapped_rule_keeps_its_prefix() {
        let p: ExitPolicy = "reject [::ffff:10.0.0.0]/104:*, accept *:*"
            .parse()
            .unwrap();
        assert!(!p.allows(ip("10.1.2.3"), 80));
        assert!(!p.allows(ip("::ffff:10.9.9.9"), 80));
        assert!(p.allows(ip("11.0.0.1"), 80));
    }
}
