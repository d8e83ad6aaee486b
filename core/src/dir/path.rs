//! Path selection (path-spec §2): a guard, a middle and an exit from the
//! consensus, each Running and Valid, the exit's microdescriptor policy
//! allowing the port, no relay twice and (on public addresses) no two in
//! the same /16. Choice is weighted by consensus bandwidth, uniform when a
//! young network has none measured.

use std::net::IpAddr;

use super::consensus::{Consensus, RouterEntry};
use super::microdesc::Microdesc;

/// A relay with everything needed to extend to it.
#[derive(Debug, Clone)]
pub struct UsableRelay {
    pub entry: RouterEntry,
    pub md: Microdesc,
}

/// The consensus joined with its microdescriptors.
#[derive(Debug, Clone, Default)]
pub struct NetDir {
    pub relays: Vec<UsableRelay>,
}

impl NetDir {
    /// Keeps the routers whose microdescriptor we have.
    pub fn new(consensus: &Consensus, mds: &[Microdesc]) -> NetDir {
        let relays = consensus
            .routers
            .iter()
            .filter_map(|r| {
                let md = mds.iter().find(|m| m.digest == r.microdesc_digest)?;
                Some(UsableRelay {
                    entry: r.clone(),
                    md: md.clone(),
                })
            })
            .collect();
        NetDir { relays }
    }

    pub fn by_id(&self, rsa_id: &[u8; 20]) -> Option<&UsableRelay> {
        self.relays.iter().find(|r| &r.entry.rsa_id == rsa_id)
    }

    /// Guard, middle and exit for a stream to `port`. `guard` pins the first
    /// hop (a client keeps its guard); `random` returns uniform u64s.
    pub fn pick_path(
        &self,
        port: u16,
        guard: Option<&[u8; 20]>,
        random: &mut dyn FnMut() -> u64,
    ) -> Option<[UsableRelay; 3]> {
        let usable = |r: &&UsableRelay| r.entry.has_flag("Running") && r.entry.has_flag("Valid");
        let exit = pick_weighted(
            self.relays
                .iter()
                .filter(usable)
                .filter(|r| !r.entry.has_flag("BadExit"))
                .filter(|r| r.md.policy.as_ref().is_some_and(|p| p.allows(port)))
                .filter(|r| guard != Some(&r.entry.rsa_id)),
            random,
        )?;
        let guard = match guard {
            Some(id) => self.by_id(id)?.clone(),
            None => pick_weighted(
                self.relays
                    .iter()
                    .filter(usable)
                    .filter(|r| r.entry.has_flag("Guard"))
                    .filter(|r| distinct(r, &[&exit])),
                random,
            )?,
        };
        let middle = pick_weighted(
            self.relays
                .iter()
                .filter(usable)
                .filter(|r| distinct(r, &[&exit, &guard])),
            random,
        )?;
        Some([guard, middle, exit])
    }
}

/// Not the same relay, nor the same /16 on public addresses (private and
/// loopback test networks share one /16 by construction).
fn distinct(r: &UsableRelay, others: &[&UsableRelay]) -> bool {
    others.iter().all(|o| {
        o.entry.rsa_id != r.entry.rsa_id
            && !(same_16(o.entry.or_addr.ip(), r.entry.or_addr.ip())
                && is_public(r.entry.or_addr.ip()))
    })
}

fn same_16(a: IpAddr, b: IpAddr) -> bool {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => a.octets()[..2] == b.octets()[..2],
        (IpAddr::V6(a), IpAddr::V6(b)) => a.segments()[..2] == b.segments()[..2],
        _ => false,
    }
}

fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            !(a.is_loopback() || a.is_private() || a.is_link_local() || a.is_unspecified())
        }
        IpAddr::V6(a) => !(a.is_loopback() || a.is_unspecified()),
    }
}

fn pick_weighted<'a>(
    candidates: impl Iterator<Item = &'a UsableRelay>,
    random: &mut dyn FnMut() -> u64,
) -> Option<UsableRelay> {
    let list: Vec<&UsableRelay> = candidates.collect();
    if list.is_empty() {
        return None;
    }
    let total: u64 = list.iter().map(|r| r.entry.bandwidth).sum();
    if total == 0 {
        let i = (random() % list.len() as u64) as usize;
        return list.get(i).map(|r| (*r).clone());
    }
    let mut point = random() % total;
    for r in &list {
        if point < r.entry.bandwidth {
            return Some((*r).clone());
        }
        point -= r.entry.bandwidth;
    }
    list.last().map(|r| (*r).clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dir::microdesc::PortPolicy;

    fn relay(n: u8, flags: &[&str], accept: Option<bool>, bw: u64) -> UsableRelay {
        UsableRelay {
            entry: RouterEntry {
                nickname: format!("r{n}"),
                rsa_id: [n; 20],
                or_addr: format!("127.0.0.1:{}", 9000 + u16::from(n))
                    .parse()
                    .unwrap(),
                dir_port: 0,
                microdesc_digest: [n; 32],
                flags: flags.iter().map(|f| f.to_string()).collect(),
                bandwidth: bw,
            },
            md: Microdesc {
                digest: [n; 32],
                ntor_onion_key: [n; 32],
                ed25519_id: None,
                policy: accept.map(|accept| PortPolicy {
                    accept,
                    ranges: vec![(1, 65535)],
                }),
            },
        }
    }

    #[test]
    fn paths_use_exits_by_policy_and_never_repeat_a_relay() {
        let rv = ["Running", "Valid"];
        let g = ["Running", "Valid", "Guard"];
        let dir = NetDir {
            relays: vec![
                relay(1, &g, Some(false), 0),
                relay(2, &g, Some(false), 0),
                relay(3, &rv, Some(false), 0),
                relay(4, &["Running", "Valid", "Exit"], Some(true), 0),
                relay(5, &["Valid"], Some(true), 0), // not Running
            ],
        };
        let mut seed = 7u64;
        let mut rng = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            seed >> 11
        };
        for _ in 0..200 {
            let [guard, middle, exit] = dir.pick_path(80, None, &mut rng).unwrap();
            assert_eq!(
                exit.entry.rsa_id, [4; 20],
                "only relay 4's policy accepts and it runs"
            );
            assert!(guard.entry.has_flag("Guard"));
            assert!(guard.entry.rsa_id != middle.entry.rsa_id && middle.entry.rsa_id != [4; 20]);
        }
        let pinned = dir.pick_path(80, Some(&[2; 20]), &mut rng).unwrap();
        assert_eq!(pinned[0].entry.rsa_id, [2; 20]);
        let no_exit = NetDir {
            relays: dir.relays[..3].to_vec(),
        };
        assert!(no_exit.pick_path(80, None, &mut rng).is_none());
    }

    #[test]
    fn bandwidth_weights_the_choice() {
        let f = ["Running", "Valid", "Guard"];
        let dir = NetDir {
            relays: vec![relay(1, &f, Some(true), 1), relay(2, &f, Some(true), 999)],
        };
        let mut x = 0u64;
        let mut rng = move || {
            x += 7919;
            x
        };
        let picks = (0..1000)
            .filter(|_| {
                pick_weighted(dir.relays.iter(), &mut rng)
                    .unwrap()
                    .entry
                    .rsa_id
                    == [2; 20]
            })
            .count();
        assert!(picks > 950, "{picks}");
    }
}
