//! The DHT alone at scale: thousands of peers, each with its own
//! `RoutingTable`, joining through one bootstrap peer and then running
//! `Lookup`s whose FIND_NODEs are delivered directly (a dead peer never
//! answers). Lookups are checked against brute force. The whole-network
//! simulation (`mod.rs`) runs the same lookups through circuits of tabs.

use std::collections::{HashMap, HashSet};

use crate::crypto::PeerId;
use crate::dht::{Distance, Insert, Lookup, LookupAction, RoutingTable, K};

/// SplitMix64: a small seeded generator, so every run is the same.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn id(&mut self) -> PeerId {
        let mut b = [0u8; 20];
        for chunk in b.chunks_mut(8) {
            let r = self.next().to_le_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
        PeerId(b)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

struct Net {
    ids: Vec<PeerId>,
    index: HashMap<PeerId, usize>,
    tables: Vec<RoutingTable<usize>>,
    dead: HashSet<usize>,
    now: u64,
    messages: u64,
}

/// What a lookup found and what it cost.
struct Outcome {
    result: Vec<PeerId>,
    rounds: u32,
    queries: usize,
}

impl Net {
    fn new(n: usize, rng: &mut Rng) -> Net {
        let ids: Vec<PeerId> = (0..n).map(|_| rng.id()).collect();
        let tables = ids.iter().map(|id| RoutingTable::new(*id)).collect();
        Net {
            index: ids.iter().enumerate().map(|(i, id)| (*id, i)).collect(),
            ids,
            tables,
            dead: HashSet::new(),
            now: 0,
            messages: 0,
        }
    }

    fn index_of(&self, id: &PeerId) -> Option<usize> {
        self.index.get(id).copied()
    }

    /// `at` heard from `peer`: insert, and settle a full bucket by pinging
    /// its oldest entry (alive: it stays; dead: evicted).
    fn heard(&mut self, at: usize, peer: usize) {
        self.now += 1;
        let (now, id) = (self.now, self.ids[peer]);
        if let Insert::Full { ping } = self.tables[at].insert(id, peer, now) {
            self.messages += 1;
            match self.index_of(&ping) {
                Some(p) if !self.dead.contains(&p) => {
                    self.tables[at].insert(ping, p, now);
                }
                _ => self.tables[at].remove_dead(&ping),
            }
        }
    }

    /// FIND_NODE from `from` to `to`: `None` if `to` is dead.
    fn find_node(&mut self, from: usize, to: usize, target: &PeerId) -> Option<Vec<PeerId>> {
        self.messages += 1;
        if self.dead.contains(&to) {
            return None;
        }
        self.heard(to, from);
        Some(
            self.tables[to]
                .closest(target, K)
                .into_iter()
                .map(|e| e.id)
                .collect(),
        )
    }

    fn lookup(&mut self, from: usize, target: PeerId) -> Outcome {
        let seeds: Vec<PeerId> = self.tables[from]
            .closest(&target, K)
            .into_iter()
            .map(|e| e.id)
            .collect();
        let mut l = Lookup::new(self.ids[from], target, seeds);
        // Queries in flight are answered in order, one wave at a time.
        let mut pending: Vec<PeerId> = Vec::new();
        loop {
            match l.next_action() {
                LookupAction::Query(p) => pending.push(p),
                LookupAction::Wait => {
                    for p in std::mem::take(&mut pending) {
                        let Some(to) = self.index_of(&p) else {
                            l.on_failure(&p);
                            continue;
                        };
                        match self.find_node(from, to, &target) {
                            Some(peers) => {
                                self.heard(from, to);
                                l.on_answer(&p, peers);
                            }
                            None => {
                                self.tables[from].remove_dead(&p);
                                l.on_failure(&p);
                            }
                        }
                    }
                }
                LookupAction::Done => break,
            }
        }
        Outcome {
            result: l.result(),
            rounds: l.rounds(),
            queries: l.queries(),
        }
    }

    /// Node `i` joins through node 0: look up its own ID, then refresh
    /// the buckets farther than its closest neighbour (Kademlia §2.3).
    fn join(&mut self, i: usize, rng: &mut Rng) {
        self.heard(i, 0);
        let me = self.ids[i];
        self.lookup(i, me);
        let targets = self.tables[i].refresh_targets(self.now + 1, 1, || {
            let mut b = [0u8; 20];
            for x in b.iter_mut() {
                *x = rng.next() as u8;
            }
            b
        });
        for t in targets.into_iter().rev().take(12) {
            self.lookup(i, t);
        }
    }

    fn brute_force(&self, target: &PeerId, exclude: usize) -> Vec<PeerId> {
        let mut alive: Vec<PeerId> = (0..self.ids.len())
            .filter(|i| *i != exclude && !self.dead.contains(i))
            .map(|i| self.ids[i])
            .collect();
        alive.sort_by_key(|p| Distance::between(p, target));
        alive.truncate(K);
        alive
    }
}

/// What `count` lookups for random targets from random live peers gave.
struct Figures {
    /// Lookups that returned exactly the true k closest live peers.
    exact: usize,
    /// Lookups whose first result is the true closest live peer.
    closest: usize,
    /// Mean share of the true k closest that a lookup returned.
    recall: f64,
    max_rounds: u32,
    mean_rounds: f64,
    mean_queries: f64,
}

fn measure(net: &mut Net, rng: &mut Rng, count: usize) -> Figures {
    let (mut exact, mut first, mut max_rounds, mut rounds, mut queries) = (0, 0, 0, 0u64, 0usize);
    let mut found = 0usize;
    for _ in 0..count {
        let from = loop {
            let i = rng.below(net.ids.len());
            if !net.dead.contains(&i) {
                break i;
            }
        };
        let target = rng.id();
        let expected = net.brute_force(&target, from);
        let got = net.lookup(from, target);
        exact += usize::from(got.result == expected);
        found += got.result.iter().filter(|p| expected.contains(p)).count();
        first += usize::from(got.result.first() == expected.first());
        max_rounds = max_rounds.max(got.rounds);
        rounds += u64::from(got.rounds);
        queries += got.queries;
    }
    Figures {
        exact,
        closest: first,
        recall: found as f64 / (count * K) as f64,
        max_rounds,
        mean_rounds: rounds as f64 / count as f64,
        mean_queries: queries as f64 / count as f64,
    }
}

#[test]
fn two_thousand_peers_lookups_match_brute_force_even_with_a_fifth_gone() {
    const N: usize = 2000;
    const LOOKUPS: usize = 300;
    let mut rng = Rng(0x005e_ed0f_9ee7);
    let mut net = Net::new(N, &mut rng);
    for i in 1..N {
        net.join(i, &mut rng);
    }
    let log2n = (N as f64).log2();
    let f = measure(&mut net, &mut rng, LOOKUPS);
    println!(
        "{N} peers: {}/{LOOKUPS} lookups exact, {} found the closest, recall {:.3}; rounds mean {:.2} max {} (log2 N = {log2n:.1}); {:.1} queries per lookup",
        f.exact, f.closest, f.recall, f.mean_rounds, f.max_rounds, f.mean_queries
    );
    assert_eq!(f.exact, LOOKUPS, "every lookup returns the true k closest");
    assert!(
        f64::from(f.max_rounds) <= log2n,
        "rounds {} > log2(N)",
        f.max_rounds
    );

    // A fifth of the peers vanish without a word.
    let mut gone = 0;
    while gone < N / 5 {
        let i = 1 + rng.below(N - 1);
        if net.dead.insert(i) {
            gone += 1;
        }
    }
    let f = measure(&mut net, &mut rng, LOOKUPS);
    println!(
        "{} of {N} peers gone: {}/{LOOKUPS} exact, {} found the closest, recall {:.3}; rounds mean {:.2} max {}; {:.1} queries per lookup",
        N / 5,
        f.exact,
        f.closest,
        f.recall,
        f.mean_rounds,
        f.max_rounds,
        f.mean_queries
    );
    assert_eq!(
        f.closest, LOOKUPS,
        "every lookup still finds the closest live peer"
    );
    assert!(f.recall >= 0.9, "recall {:.3}", f.recall);
    assert!(
        f64::from(f.max_rounds) <= log2n,
        "rounds {} > log2(N)",
        f.max_rounds
    );
}
