//! The onion router (tor-spec §5): every circuit that passes through this
//! peer, across all its links, generic over the adapter's link id `L`.
//!
//! It answers CREATE_FAST/CREATE2, keeps the map from one link's circuit
//! to the next in both directions, turns EXTEND2 into a CREATE2 on an
//! existing link to the named relay (or asks the adapter to open one with
//! `RouterEvent::Connect`), propagates DESTROY both ways, enforces the
//! RELAY_EARLY rules (through `RelayCircuit`), allocates circuit ids with
//! `CircIdRange`, limits circuits per link and cells queued per circuit,
//! and hands streams and control messages that end here to whoever
//! serves them (`crate::service`, the mesh) as events.
//!
//! Cells for circuits this peer originates are not the router's: the
//! adapter (or the peer core around it) gets them back from `handle_cell`
//! and gives them to its `ClientMux`.
//!
//! Shape: `add_link`/`remove_link` as links come and go, `handle_cell`
//! for what arrives, commands for services (`stream_connected`, `write`,
//! `read`, `send_control`, …), `poll_transmit` for cells to send and
//! `poll_event` for what must happen next.

mod hop;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Debug;
use std::net::{IpAddr, SocketAddr};

use crate::cell::{command, create::destroy_cell, destroy_reason, ControlMessage, RawCell};
use crate::circuit::{CircIdRange, CircuitError, IdOwner, LinkSide, RelayCircuit, StreamTarget};
use crate::crypto::ntor::NtorRelayKey;
use crate::rng::{KeystreamRng, Rng, RngError};

use hop::Hop;

/// What a router needs beyond its links.
#[derive(Clone)]
pub struct RouterConfig {
    /// Our ntor onion keys (the current one first).
    pub ntor_keys: Vec<NtorRelayKey>,
    /// Circuits a link's peer may have through us at once; a CREATE
    /// beyond is refused with DESTROY RESOURCELIMIT.
    pub max_circuits_per_link: usize,
    /// Cells a circuit may have waiting for one link before it is
    /// destroyed with RESOURCELIMIT (C tor's default is 2500).
    pub max_queued_cells_per_circuit: usize,
    /// Whether EXTEND2 to a relay we have no link to may ask the adapter
    /// to open one (a native relay can; a tab cannot).
    pub can_open_links: bool,
}

impl RouterConfig {
    pub fn new(ntor_keys: Vec<NtorRelayKey>) -> Self {
        RouterConfig {
            ntor_keys,
            max_circuits_per_link: 1024,
            max_queued_cells_per_circuit: 2500,
            can_open_links: true,
        }
    }
}

/// A circuit at this router, named by its side toward the client: the
/// link it came in on and its id there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CircuitKey<L> {
    pub link: L,
    pub circ: u32,
}

/// Who is at the other end of a link, as its handshake proved it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinkPeer {
    /// The 20-byte identity digest EXTEND2 names it by: a relay's RSA
    /// identity digest, a tab's peer ID.
    pub id: Option<[u8; 20]>,
    pub ed25519_id: Option<[u8; 32]>,
}

/// Extends from one link that may wait for new links at once.
pub const MAX_WAITING_EXTENDS_PER_LINK: usize = 8;

/// The relay an EXTEND2 asks for: an identity at some addresses. Two
/// EXTEND2s naming one identity at different addresses are two targets,
/// so a wrong address (a tarpit) cannot hold up extends to the right one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ExtendTarget {
    pub id: [u8; 20],
    pub ed25519_id: Option<[u8; 32]>,
    pub addresses: Vec<SocketAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouterEvent<L> {
    /// EXTEND2 names a relay we have no link to: open one, prove it is
    /// `target.id`, then `add_link` it with that peer; or call
    /// `connect_failed`. Asked once per target however many extends wait.
    Connect { target: ExtendTarget },
    /// A stream begins at this hop (BEGIN or BEGIN_DIR): a service
    /// answers with `stream_connected` or `stream_refused`.
    StreamBegin {
        circuit: CircuitKey<L>,
        stream: u16,
        target: StreamTarget,
    },
    /// A DB_QUERY opened an ORDB stream at this hop: answer with
    /// `db_connected` and the block's bytes, or `stream_refused` with a
    /// DB_END reason.
    DbQuery {
        circuit: CircuitKey<L>,
        stream: u16,
        query: crate::cell::DbQuery,
    },
    /// Data from the client waits for `read`.
    StreamReadable { circuit: CircuitKey<L>, stream: u16 },
    /// `write` takes bytes again.
    StreamWritable { circuit: CircuitKey<L>, stream: u16 },
    StreamEnded {
        circuit: CircuitKey<L>,
        stream: u16,
        reason: u8,
    },
    /// A Peersm control message from the circuit's client.
    Control {
        circuit: CircuitKey<L>,
        message: ControlMessage,
    },
    /// The circuit is gone (its streams' `StreamEnded` came first).
    CircuitClosed { circuit: CircuitKey<L>, reason: u8 },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouterError {
    #[error("no such circuit")]
    NoCircuit,
    #[error("no such link")]
    NoLink,
    #[error(transparent)]
    Circuit(#[from] CircuitError),
}

struct Link {
    side: LinkSide,
    peer: LinkPeer,
    /// Ids for the circuits we extend onto this link.
    ids: CircIdRange,
    /// Circuits whose client side is this link.
    circuits_in: usize,
    outbox: VecDeque<RawCell>,
}

pub struct Router<L> {
    config: RouterConfig,
    /// Handshake secrets and circuit ids (seeded from the injected source).
    rng: KeystreamRng,
    links: BTreeMap<L, Link>,
    /// Every circuit through us, by its client side.
    hops: BTreeMap<(L, u32), Hop<L>>,
    /// The next-hop side of extended circuits → their client side.
    by_next: BTreeMap<(L, u32), (L, u32)>,
    /// Extends waiting for a link to a relay, by the target they named.
    waiting: BTreeMap<ExtendTarget, Vec<(L, u32)>>,
    /// Cells waiting in link outboxes, by (link, circuit id).
    queued: BTreeMap<(L, u32), usize>,
    /// Links with cells to send.
    dirty: BTreeSet<L>,
    events: VecDeque<RouterEvent<L>>,
}

impl<L: Copy + Ord + Debug> Router<L> {
    pub fn new(config: RouterConfig, rng: &mut dyn Rng) -> Result<Self, RngError> {
        Ok(Router {
            config,
            rng: KeystreamRng::seeded_from(rng)?,
            links: BTreeMap::new(),
            hops: BTreeMap::new(),
            by_next: BTreeMap::new(),
            waiting: BTreeMap::new(),
            queued: BTreeMap::new(),
            dirty: BTreeSet::new(),
            events: VecDeque::new(),
        })
    }

    pub fn config(&self) -> &RouterConfig {
        &self.config
    }

    /// Replaces the ntor keys (a tab makes its key after starting).
    pub fn set_ntor_keys(&mut self, keys: Vec<NtorRelayKey>) {
        self.config.ntor_keys = keys;
    }

    /// A link finished its handshake. Extends waiting for this peer go out
    /// on it.
    pub fn add_link(&mut self, link: L, side: LinkSide, peer: LinkPeer) {
        self.links.insert(
            link,
            Link {
                side,
                peer,
                ids: CircIdRange::new(side, IdOwner::Router),
                circuits_in: 0,
                outbox: VecDeque::new(),
            },
        );
        // Every extend that named this identity goes out on the link,
        // whatever address it gave: the link proved the identity.
        if let Some(id) = peer.id {
            let served: Vec<ExtendTarget> = self
                .waiting
                .keys()
                .filter(|t| {
                    t.id == id
                        && (t.ed25519_id.is_none()
                            || peer.ed25519_id.is_none()
                            || t.ed25519_id == peer.ed25519_id)
                })
                .cloned()
                .collect();
            for target in served {
                for back in self.waiting.remove(&target).unwrap_or_default() {
                    self.extend_over(back, link);
                    self.pump(back);
                }
            }
        }
    }

    pub fn has_link(&self, link: &L) -> bool {
        self.links.contains_key(link)
    }

    /// The link to the peer that proved `id`, if any.
    pub fn link_to(&self, id: &[u8; 20]) -> Option<L> {
        self.links
            .iter()
            .find(|(_, l)| l.peer.id.as_ref() == Some(id))
            .map(|(k, _)| *k)
    }

    /// Whether any circuit through us uses `link`, either side.
    pub fn carries_circuits(&self, link: &L) -> bool {
        self.links.get(link).is_some_and(|l| l.circuits_in > 0)
            || self.by_next.keys().any(|(l, _)| l == link)
    }

    pub fn link_side(&self, link: &L) -> Option<LinkSide> {
        self.links.get(link).map(|l| l.side)
    }

    /// The link is gone: every circuit using it dies, and the other side
    /// of each hears CHANNEL_CLOSED (C tor's circuit_unlink_all_from_channel).
    pub fn remove_link(&mut self, link: L) {
        let Some(gone) = self.links.remove(&link) else {
            return;
        };
        drop(gone);
        self.dirty.remove(&link);
        let backs: Vec<(L, u32)> = self
            .hops
            .range((link, 0)..=(link, u32::MAX))
            .map(|(k, _)| *k)
            .collect();
        for key in backs {
            if let Some(h) = self.hops.get_mut(&key) {
                h.circuit.back_link_lost();
            }
            self.pump(key);
        }
        let nexts: Vec<(L, u32)> = self
            .by_next
            .range((link, 0)..=(link, u32::MAX))
            .map(|(_, back)| *back)
            .collect();
        for key in nexts {
            if let Some(h) = self.hops.get_mut(&key) {
                h.next = None;
                h.circuit.next_link_lost();
            }
            self.pump(key);
        }
        self.by_next.retain(|(l, _), _| *l != link);
        self.queued.retain(|(l, _), _| *l != link);
    }

    /// Opening a link to `target` (asked with `Connect`) failed: the
    /// extends waiting for it fail with CONNECTFAILED.
    pub fn connect_failed(&mut self, target: &ExtendTarget) {
        for back in self.waiting.remove(target).unwrap_or_default() {
            if let Some(h) = self.hops.get_mut(&back) {
                h.circuit.extend_failed(destroy_reason::CONNECTFAILED);
            }
            self.pump(back);
        }
    }

    /// A cell from `link`. Returns it when it is not the router's: a
    /// link-level cell (circuit id 0) or a cell for a circuit this peer
    /// originates (its `ClientMux`'s). Everything else is handled here; a
    /// bad cell closes only its circuit.
    pub fn handle_cell(&mut self, link: L, cell: RawCell) -> Option<RawCell> {
        if cell.circ_id == 0 || !self.links.contains_key(&link) {
            return Some(cell);
        }
        let key = (link, cell.circ_id);
        if let Some(h) = self.hops.get_mut(&key) {
            if let Err(e) = h.circuit.handle_cell_from_back(cell) {
                tracing::debug!(?link, circ = key.1, "circuit closed: {e}");
            }
            self.pump(key);
            return None;
        }
        if let Some(&back) = self.by_next.get(&key) {
            self.cell_from_next(back, cell);
            self.pump(back);
            return None;
        }
        match cell.command {
            command::CREATE_FAST | command::CREATE2 | command::CREATE => {
                self.accept_create(link, cell);
                None
            }
            _ => Some(cell),
        }
    }

    fn cell_from_next(&mut self, back: (L, u32), cell: RawCell) {
        let Some(h) = self.hops.get_mut(&back) else {
            return;
        };
        let result = if cell.command == command::CREATED2 {
            match crate::cell::Created2::from_cell(&cell) {
                Ok(created) => h.circuit.next_hop_created(created),
                Err(e) => {
                    h.circuit.destroy(destroy_reason::PROTOCOL);
                    Err(e.into())
                }
            }
        } else {
            if cell.command == command::DESTROY {
                // The next leg is gone; nothing more goes that way.
                h.next = None;
            }
            h.circuit.handle_cell_from_forward(cell)
        };
        if let Err(e) = result {
            tracing::debug!(circ = back.1, "from the next hop: {e}");
        }
    }

    fn accept_create(&mut self, link: L, cell: RawCell) {
        let id = cell.circ_id;
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        // tor-spec §5.1.1: the creator's half of the id space, or refused.
        let refuse = if !CircIdRange::peer_may_create(l.side, id) || cell.command == command::CREATE
        {
            Some(destroy_reason::PROTOCOL)
        } else if l.circuits_in >= self.config.max_circuits_per_link {
            Some(destroy_reason::RESOURCELIMIT)
        } else {
            None
        };
        if let Some(reason) = refuse {
            tracing::debug!(?link, circ = id, reason, "CREATE refused");
            self.queue(link, destroy_cell(id, reason));
            return;
        }
        match RelayCircuit::accept_create(&cell, &self.config.ntor_keys, &mut self.rng) {
            Ok(circuit) => {
                l.circuits_in += 1;
                self.hops.insert((link, id), Hop::new(circuit));
                self.pump((link, id));
            }
            Err(e) => {
                tracing::debug!(?link, circ = id, "CREATE refused: {e}");
                self.queue(link, destroy_cell(id, destroy_reason::PROTOCOL));
            }
        }
    }

    /// Moves a hop's cells to link outboxes and turns its events into
    /// router events (or acts on them: extends, teardown).
    fn pump(&mut self, key: (L, u32)) {
        let Some(h) = self.hops.get_mut(&key) else {
            return;
        };
        let mut back = Vec::new();
        let mut forward = Vec::new();
        let mut events = Vec::new();
        while let Some(c) = h.circuit.poll_cell_back() {
            back.push(c);
        }
        while let Some(c) = h.circuit.poll_cell_forward() {
            forward.push(c);
        }
        while let Some(e) = h.circuit.poll_event() {
            events.push(e);
        }
        let next = h.next;
        // TRUNCATE dropped the next leg (its DESTROY is in `forward`).
        let truncated =
            next.is_some() && h.circuit.next_circ_id().is_none() && !h.circuit.is_destroyed();
        if truncated {
            h.next = None;
        }
        for c in back {
            self.queue(key.0, c);
        }
        if let Some((next_link, next_circ)) = next {
            for c in forward {
                self.queue(next_link, c);
            }
            if truncated {
                self.forget_next(next_link, next_circ);
            }
        }
        let circuit = CircuitKey {
            link: key.0,
            circ: key.1,
        };
        for e in events {
            self.on_hop_event(key, circuit, e);
        }
    }

    fn on_hop_event(
        &mut self,
        key: (L, u32),
        circuit: CircuitKey<L>,
        e: crate::circuit::RelayEvent,
    ) {
        use crate::circuit::RelayEvent as E;
        let event = match e {
            E::Extend(extend) => return self.start_extend(key, extend),
            E::Begin { stream_id, target } => RouterEvent::StreamBegin {
                circuit,
                stream: stream_id,
                target,
            },
            E::DbQuery { stream_id, query } => RouterEvent::DbQuery {
                circuit,
                stream: stream_id,
                query,
            },
            E::StreamReadable { stream_id } => RouterEvent::StreamReadable {
                circuit,
                stream: stream_id,
            },
            E::StreamWritable { stream_id } => RouterEvent::StreamWritable {
                circuit,
                stream: stream_id,
            },
            E::StreamEnded { stream_id, reason } => RouterEvent::StreamEnded {
                circuit,
                stream: stream_id,
                reason,
            },
            E::Control(message) => RouterEvent::Control { circuit, message },
            E::Destroyed { reason } => {
                self.forget(key);
                RouterEvent::CircuitClosed { circuit, reason }
            }
        };
        self.events.push_back(event);
    }

    /// A destroyed hop: its maps, ids and unsent cells go (C tor clears a
    /// closing circuit's cell queues too), its DESTROYs stay queued.
    fn forget(&mut self, key: (L, u32)) {
        let Some(h) = self.hops.remove(&key) else {
            return;
        };
        if let Some(l) = self.links.get_mut(&key.0) {
            l.circuits_in = l.circuits_in.saturating_sub(1);
        }
        self.purge(key.0, key.1);
        if let Some((next_link, next_circ)) = h.next {
            self.purge(next_link, next_circ);
            self.forget_next(next_link, next_circ);
        }
        for waiters in self.waiting.values_mut() {
            waiters.retain(|w| *w != key);
        }
        self.waiting.retain(|_, w| !w.is_empty());
    }

    fn forget_next(&mut self, next_link: L, next_circ: u32) {
        self.by_next.remove(&(next_link, next_circ));
        if let Some(l) = self.links.get_mut(&next_link) {
            l.ids.release(next_circ);
        }
    }

    /// Drops cells of circuit `circ` still waiting on `link`, but DESTROY.
    fn purge(&mut self, link: L, circ: u32) {
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        if self.queued.get(&(link, circ)).copied().unwrap_or(0) == 0 {
            return;
        }
        l.outbox
            .retain(|c| c.circ_id != circ || c.command == command::DESTROY);
        let left = l.outbox.iter().filter(|c| c.circ_id == circ).count();
        if left == 0 {
            self.queued.remove(&(link, circ));
        } else {
            self.queued.insert((link, circ), left);
        }
    }

    fn start_extend(&mut self, key: (L, u32), extend: crate::cell::Extend2) {
        let Some(target) = extend.legacy_id() else {
            // C tor requires the RSA identity: a protocol violation.
            return self.fail_extend(key, destroy_reason::PROTOCOL);
        };
        let back_peer = self.links.get(&key.0).map(|l| l.peer).unwrap_or_default();
        let ed = extend.ed25519_id();
        let back_again =
            back_peer.id == Some(target) || (ed.is_some() && back_peer.ed25519_id == ed);
        if back_again {
            // "Client asked me to extend back to the previous hop" (C tor).
            return self.fail_extend(key, destroy_reason::PROTOCOL);
        }
        if let Some(h) = self.hops.get_mut(&key) {
            h.create = Some(extend.create.clone());
        }
        let existing = self.links.iter().find(|(_, l)| {
            l.peer.id == Some(target)
                && match (ed, l.peer.ed25519_id) {
                    (Some(want), Some(have)) => want == have,
                    _ => true,
                }
        });
        if let Some((&next_link, _)) = existing {
            self.extend_over(key, next_link);
            return self.pump(key);
        }
        if !self.config.can_open_links {
            return self.fail_extend(key, destroy_reason::CONNECTFAILED);
        }
        // Extends from one link waiting for links at once: a client cannot
        // hold up the node's link setup (and its global cap) alone.
        let waiting_here = self
            .waiting
            .values()
            .flatten()
            .filter(|(l, _)| *l == key.0)
            .count();
        if waiting_here >= MAX_WAITING_EXTENDS_PER_LINK {
            return self.fail_extend(key, destroy_reason::RESOURCELIMIT);
        }
        let target = ExtendTarget {
            id: target,
            ed25519_id: ed,
            addresses: extend.addresses().collect(),
        };
        let first = !self.waiting.contains_key(&target);
        self.waiting.entry(target.clone()).or_default().push(key);
        if first {
            self.events.push_back(RouterEvent::Connect { target });
        }
    }

    fn fail_extend(&mut self, key: (L, u32), reason: u8) {
        if let Some(h) = self.hops.get_mut(&key) {
            h.circuit.extend_failed(reason);
        }
        self.pump(key);
    }

    /// Sends the waiting CREATE2 of hop `key` on `next_link`.
    fn extend_over(&mut self, key: (L, u32), next_link: L) {
        let Some(h) = self.hops.get_mut(&key) else {
            return;
        };
        let Some(create) = h.create.take() else {
            return;
        };
        let Some(l) = self.links.get_mut(&next_link) else {
            return self.fail_extend(key, destroy_reason::CONNECTFAILED);
        };
        let next_circ = match l.ids.allocate(&mut self.rng) {
            Ok(id) => id,
            Err(_) => return self.fail_extend(key, destroy_reason::RESOURCELIMIT),
        };
        let cell = match create.to_cell(next_circ) {
            Ok(c) => c,
            Err(_) => {
                l.ids.release(next_circ);
                return self.fail_extend(key, destroy_reason::PROTOCOL);
            }
        };
        if let Some(h) = self.hops.get_mut(&key) {
            if h.circuit.extend_sent(next_circ).is_err() {
                if let Some(l) = self.links.get_mut(&next_link) {
                    l.ids.release(next_circ);
                }
                return;
            }
            h.next = Some((next_link, next_circ));
        }
        self.by_next.insert((next_link, next_circ), key);
        self.queue(next_link, cell);
    }

    fn queue(&mut self, link: L, cell: RawCell) {
        let circ = cell.circ_id;
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        l.outbox.push_back(cell);
        self.dirty.insert(link);
        let n = self.queued.entry((link, circ)).or_insert(0);
        *n += 1;
        if *n > self.config.max_queued_cells_per_circuit {
            // The other end of this link is not taking the circuit's
            // cells: drop the circuit rather than grow (C tor's
            // circ_max_cell_queue_size).
            let owner = if self.hops.contains_key(&(link, circ)) {
                Some((link, circ))
            } else {
                self.by_next.get(&(link, circ)).copied()
            };
            if let Some(owner) = owner {
                tracing::info!(?link, circ, "circuit queue over its limit: destroyed");
                if let Some(h) = self.hops.get_mut(&owner) {
                    h.circuit.destroy(destroy_reason::RESOURCELIMIT);
                }
                self.pump(owner);
            }
        }
    }

    /// Cells to send, one link at a time: the link and its batch.
    pub fn poll_transmit(&mut self) -> Option<(L, Vec<RawCell>)> {
        let link = self.dirty.pop_first()?;
        let l = self.links.get_mut(&link)?;
        let cells: Vec<RawCell> = l.outbox.drain(..).collect();
        self.queued.retain(|(k, _), _| *k != link);
        Some((link, cells))
    }

    /// Cells waiting for `link`, taken.
    pub fn take_cells(&mut self, link: L) -> Vec<RawCell> {
        if !self.dirty.remove(&link) {
            return Vec::new();
        }
        self.queued.retain(|(k, _), _| *k != link);
        self.links
            .get_mut(&link)
            .map(|l| l.outbox.drain(..).collect())
            .unwrap_or_default()
    }

    pub fn poll_event(&mut self) -> Option<RouterEvent<L>> {
        self.events.pop_front()
    }

    fn hop(&mut self, c: CircuitKey<L>) -> Result<&mut RelayCircuit, RouterError> {
        self.hops
            .get_mut(&(c.link, c.circ))
            .map(|h| &mut h.circuit)
            .ok_or(RouterError::NoCircuit)
    }

    fn command<T>(
        &mut self,
        c: CircuitKey<L>,
        f: impl FnOnce(&mut RelayCircuit) -> Result<T, CircuitError>,
    ) -> Result<T, RouterError> {
        let result = f(self.hop(c)?);
        self.pump((c.link, c.circ));
        Ok(result?)
    }

    /// A service accepts a stream (CONNECTED, with the exit's address).
    pub fn stream_connected(
        &mut self,
        c: CircuitKey<L>,
        stream: u16,
        addr: Option<(IpAddr, u32)>,
    ) -> Result<(), RouterError> {
        self.command(c, |h| h.stream_connected(stream, addr))
    }

    pub fn stream_refused(
        &mut self,
        c: CircuitKey<L>,
        stream: u16,
        reason: u8,
    ) -> Result<(), RouterError> {
        self.command(c, |h| h.stream_refused(stream, reason))
    }

    /// Answers a DB_QUERY (see `RelayCircuit::db_connected`).
    pub fn db_connected(
        &mut self,
        c: CircuitKey<L>,
        stream: u16,
        answer: &crate::cell::DbConnected,
        position: u32,
        check: [u8; 4],
    ) -> Result<(), RouterError> {
        self.command(c, |h| h.db_connected(stream, answer, position, check))
    }

    /// Bytes toward the client; returns how many the stream took.
    pub fn write(
        &mut self,
        c: CircuitKey<L>,
        stream: u16,
        data: &[u8],
    ) -> Result<usize, RouterError> {
        self.command(c, |h| h.write(stream, data))
    }

    pub fn room(&self, c: CircuitKey<L>, stream: u16) -> usize {
        self.hops
            .get(&(c.link, c.circ))
            .map_or(0, |h| h.circuit.room(stream))
    }

    /// Takes up to `max` bytes the client sent.
    pub fn read(
        &mut self,
        c: CircuitKey<L>,
        stream: u16,
        max: usize,
    ) -> Result<Vec<u8>, RouterError> {
        self.command(c, |h| h.read(stream, max))
    }

    /// Sends any relay message toward the client from this hop (tests).
    #[cfg(test)]
    pub(crate) fn originate_any(
        &mut self,
        c: CircuitKey<L>,
        cell: crate::cell::RelayCell,
    ) -> Result<(), RouterError> {
        self.command(c, |h| h.originate_any(cell))
    }

    /// Ends a stream after its queued bytes (END `reason`).
    pub fn end_stream(
        &mut self,
        c: CircuitKey<L>,
        stream: u16,
        reason: u8,
    ) -> Result<(), RouterError> {
        self.command(c, |h| h.end_stream(stream, reason))
    }

    pub fn send_control(
        &mut self,
        c: CircuitKey<L>,
        message: &ControlMessage,
    ) -> Result<(), RouterError> {
        self.command(c, |h| h.send_control(message))
    }

    /// Closes a circuit ourselves; both sides hear `reason`.
    pub fn destroy(&mut self, c: CircuitKey<L>, reason: u8) {
        if let Ok(h) = self.hop(c) {
            h.destroy(reason);
        }
        self.pump((c.link, c.circ));
    }

    pub fn has_circuit(&self, c: CircuitKey<L>) -> bool {
        self.hops.contains_key(&(c.link, c.circ))
    }

    /// Circuits through us.
    pub fn circuit_count(&self) -> usize {
        self.hops.len()
    }

    /// Cells waiting in every link's outbox.
    pub fn queued_cells(&self) -> usize {
        self.links.values().map(|l| l.outbox.len()).sum()
    }

    /// Bytes waiting in the streams that end here, both ways.
    pub fn queued_stream_bytes(&self) -> usize {
        self.hops.values().map(|h| h.circuit.queued_bytes()).sum()
    }
}
