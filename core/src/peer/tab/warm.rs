//! Circuits to ORDBs built ahead of need, as a Tor client builds circuits
//! before a stream asks for one: a download or a live follow that starts
//! takes one and sends its first query at once, instead of waiting for a
//! CREATE and an EXTEND per tab. One circuit is kept for each circuit
//! length used lately (the default's from the start), rebuilt when it is
//! taken or dies. Any tab linked to two others can build one; nothing
//! about what it will carry is known until a query goes on it.

use std::collections::{BTreeMap, VecDeque};

use super::share::DEFAULT_DOWNLOAD_HOPS;
use super::tasks::{OwnCircuit, Parent, TaskId, TaskResult};
use super::{LinkId, TabPeer};

/// Circuits kept ready per length.
pub(super) const WARM_PER_LENGTH: usize = 1;
/// Circuit lengths kept ready (the most recently used).
pub(super) const MAX_WARM_LENGTHS: usize = 2;
/// After a build fails, the next waits this long, doubling per failure in
/// a row (at most 64 times): a tab whose links cannot make such a circuit
/// does not retry at every event.
const RETRY_MS: u64 = 1_000;

#[derive(Debug)]
pub(super) struct Warm {
    ready: BTreeMap<usize, Vec<OwnCircuit>>,
    building: BTreeMap<TaskId, usize>,
    /// Lengths used lately, the most recent last.
    lengths: VecDeque<usize>,
    failures: u32,
    next_try_at: u64,
}

impl Warm {
    pub(super) fn new(enabled: bool) -> Self {
        Warm {
            ready: BTreeMap::new(),
            building: BTreeMap::new(),
            lengths: if enabled {
                VecDeque::from([DEFAULT_DOWNLOAD_HOPS])
            } else {
                VecDeque::new()
            },
            failures: 0,
            next_try_at: 0,
        }
    }

    /// Circuits ready now, all lengths.
    pub(super) fn ready(&self) -> usize {
        self.ready.values().map(Vec::len).sum()
    }
}

impl TabPeer {
    /// Circuits to ORDBs built ahead and ready now.
    pub fn warm_circuits(&self) -> usize {
        self.warm.ready()
    }

    /// A circuit of `hops` tabs built ahead, if one is alive; its length
    /// is kept ready from now on (when warm circuits are on).
    /// One that starts on a link in `avoid` is left for later.
    pub(super) fn take_warm(&mut self, hops: usize, avoid: &[LinkId]) -> Option<OwnCircuit> {
        if self.warm.lengths.is_empty() {
            return None;
        }
        self.warm.lengths.retain(|&l| l != hops);
        self.warm.lengths.push_back(hops);
        while self.warm.lengths.len() > MAX_WARM_LENGTHS {
            if let Some(old) = self.warm.lengths.pop_front() {
                self.close_warm(old);
            }
        }
        self.prune_warm();
        let list = self.warm.ready.entry(hops).or_default();
        let taken = list
            .iter()
            .position(|c| !avoid.contains(&c.link))
            .map(|i| list.swap_remove(i));
        self.keep_warm();
        taken
    }

    /// Starts building what is missing of the warm circuits (a tab with
    /// fewer than two links cannot build through tabs: it waits).
    pub(super) fn keep_warm(&mut self) {
        let wanted = self.warm.lengths.len() * WARM_PER_LENGTH;
        if wanted <= self.warm.ready() + self.warm.building.len() {
            // All there (a dead one is noticed when taken, or when the
            // next is wanted).
            return;
        }
        if self.now < self.warm.next_try_at || self.open_links().len() < 2 {
            return;
        }
        self.prune_warm();
        let lengths: Vec<usize> = self.warm.lengths.iter().copied().collect();
        for hops in lengths {
            let have = self.warm.ready.get(&hops).map_or(0, Vec::len)
                + self.warm.building.values().filter(|&&l| l == hops).count();
            for _ in have..WARM_PER_LENGTH {
                let child = self.spawn_build_tab(hops, Parent::Warm(hops), false);
                if self.tasks.contains_key(&child) {
                    self.warm.building.insert(child, hops);
                }
            }
        }
    }

    /// A warm circuit's build ended.
    pub(super) fn warm_built(&mut self, child: TaskId, hops: usize, result: TaskResult) {
        self.warm.building.remove(&child);
        if !matches!(result, TaskResult::Own(_)) {
            self.warm.failures += 1;
            self.warm.next_try_at = self.now + (RETRY_MS << self.warm.failures.min(6));
        }
        if let TaskResult::Own(c) = result {
            self.warm.failures = 0;
            if self.warm.lengths.contains(&hops) {
                self.warm.ready.entry(hops).or_default().push(c);
            } else if let Some(m) = self.core.mux(c.link) {
                m.destroy(c.circ);
            }
        }
    }

    /// Forgets warm circuits that died (a tab on them left).
    pub(super) fn prune_warm(&mut self) {
        let core = &mut self.core;
        for list in self.warm.ready.values_mut() {
            list.retain(|c| core.mux(c.link).is_some_and(|m| m.is_alive(c.circ)));
        }
    }

    fn close_warm(&mut self, hops: usize) {
        for c in self.warm.ready.remove(&hops).unwrap_or_default() {
            if let Some(m) = self.core.mux(c.link) {
                m.destroy(c.circ);
            }
        }
    }
}
