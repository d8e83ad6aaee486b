//! The freerider rule (docs/SECURITY.md "Freeriders"): a linked tab that
//! only takes is dropped by the tabs it takes from.
//!
//! Per link we count what the tab at the other end *takes* (relay cells we
//! send back on circuits it created through us: its downloads, lookups,
//! anything it asks) and what it *gives* (relay and CREATED cells it sends
//! on circuits it did not create: answers to our circuits, and the work it
//! does as a hop or an ORDB for others). Onion layers hide what the cells
//! carry, so the counts are all a tab can know, and all it needs.
//!
//! A tab that took `FREE_CELLS` (about 1 MB) more since we last checked,
//! and gave less than 1 % of what it took, is asked for something: a
//! one-hop circuit to it and a FIND_NODE, which every tab answers. A tab
//! that fails `PROBE_FAILURES` such questions in a row is a freerider:
//! the link is closed. An honest tab that happens to give little (nobody
//! routed through it) answers the question and keeps its link.

use crate::cell::command;
use crate::router::CircuitKey;

use super::tasks::{HopSpec, Parent, Purpose, TaskResult};
use super::{LinkId, TabPeer};

/// Cells a linked tab may take before we ask it for something back.
pub const FREE_CELLS: u64 = 2048;
/// Questions left unanswered in a row before the link is closed.
pub const PROBE_FAILURES: u32 = 2;

/// What one linked tab took and gave.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Fairness {
    taken: u64,
    given: u64,
    /// `taken` when we last asked it something.
    checked_at: u64,
    probing: bool,
    failed: u32,
}

impl TabPeer {
    /// Cells we send to `link`: counted as taken when they go back on a
    /// circuit the other end created.
    pub(super) fn count_sent(&mut self, link: LinkId, circ_ids: impl Iterator<Item = u32>) {
        let router = &self.core.router;
        let taken = circ_ids
            .filter(|circ| router.has_circuit(CircuitKey { link, circ: *circ }))
            .count() as u64;
        if taken > 0 {
            let f = self.fairness.entry(link).or_default();
            f.taken += taken;
            if !f.probing && f.taken >= f.checked_at + FREE_CELLS {
                self.fairness_due = true;
            }
        }
    }

    /// Cells from `link`: relay and CREATED cells on circuits it did not
    /// create are what it gives.
    pub(super) fn count_received(&mut self, link: LinkId, cells: &[crate::cell::RawCell]) {
        let router = &self.core.router;
        let given = cells
            .iter()
            .filter(|c| {
                matches!(
                    c.command,
                    command::RELAY
                        | command::RELAY_EARLY
                        | command::CREATED2
                        | command::CREATED_FAST
                ) && !router.has_circuit(CircuitKey {
                    link,
                    circ: c.circ_id,
                })
            })
            .count() as u64;
        if given > 0 {
            self.fairness.entry(link).or_default().given += given;
        }
    }

    /// Asks the tabs that took much and gave little for something.
    pub(super) fn check_fairness(&mut self) {
        let due: Vec<LinkId> = self
            .fairness
            .iter()
            .filter(|(_, f)| {
                !f.probing
                    && f.taken >= f.checked_at + FREE_CELLS
                    && f.given.saturating_mul(100) < f.taken
            })
            .map(|(l, _)| *l)
            .collect();
        for link in due {
            let Some((peer, _, ntor)) = self.open_links().into_iter().find(|(_, l, _)| *l == link)
            else {
                self.fairness.remove(&link);
                continue;
            };
            if let Some(f) = self.fairness.get_mut(&link) {
                f.probing = true;
                f.checked_at = f.taken;
            }
            let me = self.me;
            self.spawn_route(
                vec![HopSpec::tab(peer, ntor)],
                Purpose::FindNode(me),
                Parent::Probe(link),
            );
        }
    }

    /// The answer to our question to a tab that took much.
    pub(super) fn probe_result(&mut self, link: LinkId, result: &TaskResult) {
        let Some(f) = self.fairness.get_mut(&link) else {
            return;
        };
        f.probing = false;
        if matches!(result, TaskResult::Nodes(_)) {
            f.failed = 0;
            return;
        }
        f.failed += 1;
        // Ask again at once: a freerider is found after two questions.
        f.checked_at = f.taken.saturating_sub(FREE_CELLS);
        if f.failed >= PROBE_FAILURES {
            let (taken, given) = (f.taken, f.given);
            self.fairness.remove(&link);
            if let Some(l) = self.links.get(&link) {
                if self.freeriders.len() >= 64 {
                    self.freeriders.pop_front();
                }
                self.freeriders.push_back(l.peer);
            }
            self.drop_link(
                link,
                &format!("freerider: took {taken} cells, gave {given}, answered nothing"),
                true,
            );
        }
    }
}
