//! The DHT's values in a tab (docs/PROTOCOL.md "FIND_VALUE and STORE"):
//! who can answer DB_QUERY for a file, kept at the peers closest to its
//! hash_name, so that an ORDB with no reference for a file finds one
//! anywhere in the mesh.
//!
//! - As a hop: STORE is kept (`dht::ValueStore`, bounded and expiring);
//!   FIND_VALUE is answered with the values (ourselves first when our
//!   ORDB can answer) and our linked peers closest to the key.
//! - As a storer: a tab that a linked tab told it holds a file (DB_INFO
//!   HOPS 0) STOREs itself at the 4 peers closest to the hash_name, and
//!   again every `REPUBLISH_MS` while that holds. The holder itself never
//!   appears in the DHT: queries reach it through the peer that stored.
//! - As an ORDB with queries waiting (`OrdbEvent::FindSources`): FIND_VALUE
//!   from the closest peers it knows; for each value found (at most
//!   `SOURCES_PER_LOOKUP`), a circuit to it: along the route we asked it
//!   on when it named itself, otherwise along the route a FIND_NODE lookup
//!   of its ID finds (tabs extend only to tabs they are linked to, and the
//!   hop that kept a value is not linked to its peer). The circuit becomes
//!   a source of the ORDB (`add_circuit_source`).

use crate::cell::peersm::{NodeInfo, MAX_FOUND_VALUES};
use crate::cell::ControlMessage;
use crate::content::HashName;
use crate::crypto::PeerId;
use crate::dht::Distance;
use crate::router::CircuitKey;

use super::tasks::{LookupOutcome, Parent, Purpose, TaskResult};
use super::{LinkId, TabPeer};

/// The closest peers a value is stored at, and a FIND_VALUE asks for.
pub const VALUE_K: usize = 4;
/// A tab next to a holder STOREs itself again this often.
pub const REPUBLISH_MS: u64 = 10 * 60_000;
/// A FIND_VALUE for the ORDB ends with what it found after this long.
const LOOKUP_MS: u64 = 12_000;
/// Circuits a FIND_VALUE builds to the values it found.
const SOURCES_PER_LOOKUP: usize = 2;
/// Files this tab looks for sources of at once; beyond, queries for
/// another are answered UNAVAILABLE (each look costs lookups and circuits).
pub const MAX_FINDING: usize = 8;
/// Files this tab STOREs itself for; beyond, an S flag is ignored (any
/// linked tab can send one, for any hash_name).
pub const MAX_PUBLISHED: usize = 64;
/// STOREs started again per refresh period, the most overdue first.
const REPUBLISH_PER_REFRESH: usize = 8;

impl TabPeer {
    /// What FOUND_NODE and FIND_VALUE list of us: our identity key and
    /// our ntor key signed by it.
    pub(super) fn own_node_info(&self) -> Option<NodeInfo> {
        let cert = &self.onion.as_ref()?.cert;
        let (ntor, signature) = cert.split_first_chunk::<32>()?;
        Some(NodeInfo {
            spki: self.config.spki.clone(),
            ntor_key: *ntor,
            signature: signature.to_vec(),
        })
    }

    /// Our linked peers closest to `target`, but the one on `except`.
    pub(super) fn closest_linked(
        &self,
        target: &PeerId,
        except: LinkId,
        max: usize,
    ) -> Vec<NodeInfo> {
        let mut nodes: Vec<(Distance, NodeInfo)> = self
            .open_links()
            .into_iter()
            .filter(|(_, link, _)| *link != except)
            .filter_map(|(peer, link, _)| {
                let (spki, ntor_key, signature) = self.open_link_keys(link)?;
                let info = NodeInfo {
                    spki,
                    ntor_key,
                    signature,
                };
                Some((Distance::between(&peer, target), info))
            })
            .collect();
        nodes.sort_by_key(|(d, _)| *d);
        nodes.truncate(max);
        nodes.into_iter().map(|(_, n)| n).collect()
    }

    // --- as a hop ---

    pub(super) fn serve_find_value(&mut self, circuit: CircuitKey<LinkId>, h: [u8; 20], kind: u8) {
        let mut values = Vec::new();
        // We name ourselves only as what we are in the DHT anyway: a tab
        // next to a holder, not a holder (nor a tab relaying further).
        let file = HashName(h);
        if kind == 0 && self.ordb.next_to_holder(&file) && self.ordb.library.get(&file).is_none() {
            values.extend(self.own_node_info());
        }
        for (peer, node) in self.values.get(&(h, kind), self.now) {
            if values.len() >= MAX_FOUND_VALUES {
                break;
            }
            if peer != self.me {
                values.push(node);
            }
        }
        let nodes = self.closest_linked(&PeerId(h), circuit.link, MAX_FOUND_VALUES);
        let reply = ControlMessage::FoundValue { values, nodes };
        let _ = self.core.router.send_control(circuit, &reply);
    }

    pub(super) fn serve_store(&mut self, h: [u8; 20], kind: u8, node: NodeInfo) {
        // The key's signature over the ntor key proves the ID; who sent
        // the STORE is beyond the circuit (see docs/SECURITY.md).
        let Ok(peer) = node.verify() else { return };
        if !self.values.put((h, kind), peer, node, self.now) {
            tracing::debug!("dht: STORE refused, too many keys");
        }
    }

    /// Values this tab keeps for others (keys).
    pub fn dht_values(&self) -> usize {
        self.values.len()
    }

    /// Files this tab STOREs itself for, and files its ORDB is looking
    /// for sources of (both bounded).
    pub fn dht_work(&self) -> (usize, usize) {
        (self.published.len(), self.finding.len())
    }

    // --- as a storer ---

    /// A linked tab holds `h`: STORE us at the peers closest to it, unless
    /// done within `REPUBLISH_MS`.
    pub(super) fn store_reference(&mut self, h: HashName) {
        if self
            .published
            .get(&h)
            .is_some_and(|t| self.now < t + REPUBLISH_MS)
        {
            return;
        }
        if !self.published.contains_key(&h) && self.published.len() >= MAX_PUBLISHED {
            return;
        }
        self.published.insert(h, self.now);
        self.start_lookup_of(PeerId(h.0), Parent::Store(h), None, VALUE_K, None);
    }

    /// The closest peers to `h` are known: STORE us at each (and keep the
    /// value ourselves when we are among them).
    pub(super) fn store_at_closest(&mut self, h: HashName, result: TaskResult) {
        let TaskResult::Lookup(found) = result else {
            return;
        };
        let key = PeerId(h.0);
        let mine = Distance::between(&self.me, &key);
        let among = found.closest.len() < VALUE_K
            || found
                .closest
                .get(VALUE_K - 1)
                .is_some_and(|p| mine < Distance::between(p, &key));
        if among {
            if let Some(node) = self.own_node_info() {
                self.values.put((h.0, 0), self.me, node, self.now);
            }
        }
        for peer in found.closest.iter().take(VALUE_K) {
            if let Some(route) = found.routes.get(peer).cloned() {
                self.spawn_route(route, Purpose::Store(h), Parent::Nobody);
            }
        }
    }

    /// Every refresh period: references still next to a holder are stored
    /// again when due, the others forgotten; old values expire.
    pub(super) fn republish(&mut self) {
        self.values.expire(self.now);
        let ordb = &self.ordb;
        self.published.retain(|h, _| ordb.next_to_holder(h));
        let mut due: Vec<(u64, HashName)> = self
            .published
            .iter()
            .filter(|(_, t)| self.now >= *t + REPUBLISH_MS)
            .map(|(h, t)| (*t, *h))
            .collect();
        due.sort();
        for (_, h) in due.into_iter().take(REPUBLISH_PER_REFRESH) {
            self.store_reference(h);
        }
    }

    // --- as an ORDB looking for sources ---

    /// Queries for `h` wait and no linked tab told us about it.
    pub(super) fn find_sources(&mut self, h: HashName) {
        if self.finding.len() >= MAX_FINDING && !self.finding.contains_key(&h) {
            // Too busy to look: no verdict on the file.
            return self.ordb.cannot_look(&mut self.core, h);
        }
        if self.open_links().is_empty() {
            return self.ordb.no_sources(&mut self.core, h, self.now);
        }
        *self.finding.entry(h).or_default() += 1;
        // Values we keep ourselves need no FIND_VALUE.
        let kept: Vec<(PeerId, [u8; 32])> = self
            .values
            .get(&(h.0, 0), self.now)
            .into_iter()
            .filter(|(p, _)| *p != self.me)
            .map(|(p, n)| (p, n.ntor_key))
            .collect();
        if !kept.is_empty() {
            let found = LookupOutcome {
                closest: Vec::new(),
                rounds: 0,
                queries: 0,
                routes: Default::default(),
                values: kept,
            };
            return self.sources_found(h, TaskResult::Lookup(found));
        }
        // Well before the queries' wait ends: a route and a circuit to
        // what it finds still follow.
        let ends_at = self.now + LOOKUP_MS;
        self.start_lookup_of(
            PeerId(h.0),
            Parent::Sources(h),
            Some(h),
            VALUE_K,
            Some(ends_at),
        );
    }

    pub(super) fn sources_found(&mut self, h: HashName, result: TaskResult) {
        let TaskResult::Lookup(found) = result else {
            return self.source_done(h);
        };
        let LookupOutcome { values, routes, .. } = found;
        let mut values = values;
        // Not always the same ones first: spread the load over the values.
        let start = self.random_below(values.len().max(1)).min(values.len());
        values.rotate_left(start);
        for (peer, _) in values.into_iter().take(SOURCES_PER_LOOKUP) {
            *self.finding.entry(h).or_default() += 1;
            match routes.get(&peer).cloned() {
                Some(route) => {
                    self.spawn_route(route, Purpose::Hold, Parent::SourceCircuit(h));
                }
                None => {
                    self.start_lookup(peer, Parent::SourceRoute(h, peer));
                }
            }
        }
        self.source_done(h);
    }

    pub(super) fn source_route_found(&mut self, h: HashName, peer: PeerId, result: TaskResult) {
        match result {
            TaskResult::Lookup(found) if found.routes.contains_key(&peer) => {
                let route = found.routes.get(&peer).cloned().unwrap_or_default();
                // Still counted in `finding`: the circuit reports next.
                self.spawn_route(route, Purpose::Hold, Parent::SourceCircuit(h));
            }
            _ => self.source_done(h),
        }
    }

    pub(super) fn source_circuit(&mut self, h: HashName, result: TaskResult) {
        if let TaskResult::Circuit { link, circ } = result {
            let now = self.now;
            self.ordb
                .add_circuit_source(&mut self.core, h, link, circ, now);
        }
        self.source_done(h);
    }

    /// One way of finding sources for `h` ended; when none is left and
    /// none worked, the waiting queries are answered.
    fn source_done(&mut self, h: HashName) {
        let left = self.finding.get(&h).map_or(0, |n| n.saturating_sub(1));
        if left > 0 {
            self.finding.insert(h, left);
            return;
        }
        self.finding.remove(&h);
        if self.ordb.is_looking(&h) {
            let now = self.now;
            self.ordb.no_sources(&mut self.core, h, now);
        }
    }
}
