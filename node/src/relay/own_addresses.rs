//! The exit's own addresses, which `reject private` covers (as C tor's
//! ExitPolicyRejectPrivate does): a BEGIN to them would reach services
//! listening on the exit's host. The configured ones (listen and bind
//! addresses) always count; when a listen address is unspecified
//! (`0.0.0.0`, `::`), every address of the host's interfaces does too,
//! read from Linux's `/proc` (elsewhere only the configured ones).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// `configured` plus, if any of them is unspecified, the host's own.
pub fn own_addresses(configured: &[IpAddr]) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = configured
        .iter()
        .copied()
        .filter(|ip| !ip.is_unspecified())
        .collect();
    if configured.iter().any(IpAddr::is_unspecified) {
        if let Ok(trie) = std::fs::read_to_string("/proc/net/fib_trie") {
            out.extend(local_ipv4(&trie).into_iter().map(IpAddr::V4));
        }
        if let Ok(list) = std::fs::read_to_string("/proc/net/if_inet6") {
            out.extend(local_ipv6(&list).into_iter().map(IpAddr::V6));
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Addresses `/proc/net/fib_trie` marks `host LOCAL`: an address line
/// (`|-- 192.0.2.2`) followed by its `/32 host LOCAL` line.
fn local_ipv4(trie: &str) -> Vec<Ipv4Addr> {
    let mut out = Vec::new();
    let mut last: Option<Ipv4Addr> = None;
    for line in trie.lines().map(str::trim) {
        if let Some(addr) = line.strip_prefix("|-- ") {
            last = addr.parse().ok();
        } else if line.starts_with("/32 host LOCAL") {
            out.extend(last.take());
        }
    }
    out.sort();
    out.dedup();
    out
}

/// `/proc/net/if_inet6`: one address per line, 32 hex digits first.
fn local_ipv6(list: &str) -> Vec<Ipv6Addr> {
    list.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|h| u128::from_str_radix(h, 16).ok())
        .map(Ipv6Addr::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_hosts_addresses_from_proc() {
        let trie = "Local:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 127.0.0.1\n        /32 host LOCAL\n\
                    |-- 127.255.255.255\n           /32 link BROADCAST\n\
                    |-- 192.0.2.2\n              /32 host LOCAL\n";
        assert_eq!(
            local_ipv4(trie),
            vec![Ipv4Addr::new(127, 0, 0, 1), Ipv4Addr::new(192, 0, 2, 2)]
        );
        let v6 = "00000000000000000000000000000001 01 80 10 80       lo\n\
                  fd000000000000000000000000000002 04 40 00 82     eth0\n";
        assert_eq!(
            local_ipv6(v6),
            vec![Ipv6Addr::LOCALHOST, "fd00::2".parse::<Ipv6Addr>().unwrap()]
        );
    }

    #[test]
    fn configured_addresses_count_and_unspecified_brings_the_hosts() {
        let only = own_addresses(&["198.18.0.1".parse().unwrap()]);
        assert_eq!(only, vec!["198.18.0.1".parse::<IpAddr>().unwrap()]);
        let all = own_addresses(&["0.0.0.0".parse().unwrap()]);
        assert!(all.contains(&"127.0.0.1".parse::<IpAddr>().unwrap()));
    }
}
