//! A whole Peersm network in one process, deterministic: a virtual clock,
//! seeded randomness, in-memory links with latency and bandwidth. It runs
//! complete peer cores — `TabPeer`s and bridges' `RelayPeer`s, the very
//! router, mesh, client and DHT code a tab and a node run — and replaces
//! only the adapters: WebSockets and data channels are `Wire`s, WebCrypto
//! is a native RSA key, an SDP is a line naming the other end.
//!
//! `Net::run_until` moves frames and fires timers until a virtual time;
//! scenarios (tests.rs) join peers, run lookups and transfers, remove
//! peers mid-transfer and slow readers down, and check the figures.

#[cfg(test)]
mod attacks;
mod bridge;
mod dht;
mod live;
mod share;
mod tab;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use crate::rng::SimRng;

pub(crate) use bridge::SimBridge;
pub(crate) use tab::SimTab;

pub(crate) type NodeId = usize;
/// A link id at one node (a tab's `LinkId`, a bridge's link number).
pub(crate) type LinkNo = u32;

/// What the network is like.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NetConfig {
    /// One-way latency of every wire (ms).
    pub latency_ms: u64,
    /// Bytes per ms each direction of a wire carries.
    pub bytes_per_ms: u64,
    /// A data channel's send buffer as the web adapter drives it: a tab
    /// is told a link is congested once more than the first number of
    /// bytes waits to go out on it, and that it drained at the second
    /// (`TabPeer::handle_link_congested`). `None`: never congested.
    pub send_buffer: Option<(u64, u64)>,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            latency_ms: 15,
            // 10 MB/s per direction.
            bytes_per_ms: 10_000,
            send_buffer: None,
        }
    }
}

/// One end of a wire: a node and its link id there.
type End = (NodeId, LinkNo);

struct Wire {
    ends: [End; 2],
    /// When each direction finishes sending what it has (ms).
    busy_until: [u64; 2],
}

/// Something that reaches a node at a time.
#[derive(Debug)]
enum Delivery {
    Frame(Vec<u8>),
    /// The data channel (or WebSocket) is open at this end; a data
    /// channel names the certificate the other end presented in DTLS.
    Open(Option<String>),
    /// The other end went away.
    Closed,
    /// This end's send buffer drained below its low water.
    Drained,
}

pub(crate) enum Node {
    Bridge(Box<SimBridge>),
    Tab(Box<SimTab>),
}

pub(crate) struct Net {
    pub(crate) now: u64,
    pub(crate) rng: SimRng,
    pub(crate) config: NetConfig,
    pub(crate) nodes: Vec<Node>,
    wires: BTreeMap<u64, Wire>,
    /// Each node's links to wires.
    ends: BTreeMap<End, u64>,
    next_wire: u64,
    /// What is in flight, by (arrival time, order of sending).
    in_flight: BTreeMap<(u64, u64), (End, Delivery)>,
    in_flight_bytes: usize,
    seq: u64,
    last_sample: u64,
    pub(crate) stats: Stats,
}

/// What the run measured.
#[derive(Debug, Default, Clone)]
pub(crate) struct Stats {
    pub(crate) frames: u64,
    pub(crate) bytes: u64,
    /// The most bytes any one peer held in stream queues at once.
    pub(crate) max_stream_bytes: usize,
    /// The most bytes waiting to go out on one direction of one wire: a
    /// link's send queue (the simulated adapter hands the router's cells
    /// to the wire at once, so this is where they wait).
    pub(crate) max_link_backlog: u64,
    /// The most bytes in flight on wires at once.
    pub(crate) max_in_flight_bytes: usize,
    /// The most bytes a tab left waiting on one link to another tab.
    pub(crate) max_tab_link_backlog: u64,
}

impl Net {
    pub(crate) fn new(seed: u64, config: NetConfig) -> Net {
        Net {
            now: 1_700_000_000_000,
            rng: SimRng::new(seed),
            config,
            nodes: Vec::new(),
            wires: BTreeMap::new(),
            ends: BTreeMap::new(),
            next_wire: 1,
            in_flight: BTreeMap::new(),
            in_flight_bytes: 0,
            seq: 0,
            last_sample: 0,
            stats: Stats::default(),
        }
    }

    pub(crate) fn tab(&self, id: NodeId) -> Option<&SimTab> {
        match self.nodes.get(id)? {
            Node::Tab(t) => Some(t),
            Node::Bridge(_) => None,
        }
    }

    pub(crate) fn tab_mut(&mut self, id: NodeId) -> Option<&mut SimTab> {
        match self.nodes.get_mut(id)? {
            Node::Tab(t) => Some(t),
            Node::Bridge(_) => None,
        }
    }

    pub(crate) fn bridge(&self, id: NodeId) -> Option<&SimBridge> {
        match self.nodes.get(id)? {
            Node::Bridge(b) => Some(b),
            Node::Tab(_) => None,
        }
    }

    fn alive(&self, node: NodeId) -> bool {
        match self.nodes.get(node) {
            Some(Node::Tab(t)) => t.alive,
            Some(Node::Bridge(_)) => true,
            None => false,
        }
    }

    /// Connects two ends; each hears `Open` after the latency.
    pub(crate) fn connect(&mut self, a: End, b: End) {
        self.connect_dtls(a, b, [None, None]);
    }

    /// Connects `a` and `b` by a data channel over DTLS, where `a` sees
    /// the certificate `certs[0]` and `b` sees `certs[1]`.
    pub(crate) fn connect_dtls(&mut self, a: End, b: End, certs: [Option<String>; 2]) {
        let id = self.next_wire;
        self.next_wire += 1;
        self.wires.insert(
            id,
            Wire {
                ends: [a, b],
                busy_until: [self.now; 2],
            },
        );
        self.ends.insert(a, id);
        self.ends.insert(b, id);
        let at = self.now + self.config.latency_ms;
        let [to_a, to_b] = certs;
        self.schedule(at, a, Delivery::Open(to_a));
        self.schedule(at, b, Delivery::Open(to_b));
    }

    /// Closes the wire at `end`; the other end hears it after the latency.
    pub(crate) fn disconnect(&mut self, end: End) {
        let Some(id) = self.ends.remove(&end) else {
            return;
        };
        let Some(wire) = self.wires.remove(&id) else {
            return;
        };
        let other = if wire.ends[0] == end {
            wire.ends[1]
        } else {
            wire.ends[0]
        };
        self.ends.remove(&other);
        let at = self.now + self.config.latency_ms;
        self.schedule(at, other, Delivery::Closed);
    }

    /// Sends a frame from `from` over its wire; the bytes then waiting to
    /// go out in that direction.
    pub(crate) fn send(&mut self, from: End, frame: Vec<u8>) -> u64 {
        let Some(wire) = self.ends.get(&from).and_then(|id| self.wires.get_mut(id)) else {
            return 0;
        };
        let dir = usize::from(wire.ends[0] != from);
        let to = wire.ends[1 - dir];
        let len = frame.len() as u64;
        let start = wire.busy_until[dir].max(self.now);
        let done = start + len.div_ceil(self.config.bytes_per_ms.max(1));
        wire.busy_until[dir] = done;
        let backlog = (done - self.now) * self.config.bytes_per_ms;
        self.stats.max_link_backlog = self.stats.max_link_backlog.max(backlog);
        self.stats.frames += 1;
        self.stats.bytes += len;
        self.schedule(done + self.config.latency_ms, to, Delivery::Frame(frame));
        backlog
    }

    /// Tells `from` when its send buffer has drained to `low` bytes.
    pub(crate) fn notify_drained(&mut self, from: End, low: u64) {
        let Some(wire) = self.ends.get(&from).and_then(|id| self.wires.get(id)) else {
            return;
        };
        let dir = usize::from(wire.ends[0] != from);
        let at = wire.busy_until[dir].saturating_sub(low / self.config.bytes_per_ms.max(1));
        self.schedule(at.max(self.now), from, Delivery::Drained);
    }

    fn schedule(&mut self, at: u64, to: End, d: Delivery) {
        if let Delivery::Frame(f) = &d {
            self.in_flight_bytes += f.len();
            self.stats.max_in_flight_bytes =
                self.stats.max_in_flight_bytes.max(self.in_flight_bytes);
        }
        self.seq += 1;
        self.in_flight.insert((at, self.seq), (to, d));
    }

    /// Takes a tab out of the network without a word: its wires close.
    pub(crate) fn kill(&mut self, node: NodeId) {
        if let Some(t) = self.tab_mut(node) {
            t.alive = false;
        }
        let ends: Vec<End> = self
            .ends
            .keys()
            .filter(|(n, _)| *n == node)
            .copied()
            .collect();
        for end in ends {
            self.disconnect(end);
        }
    }

    /// Runs the network until virtual time `until` (ms).
    pub(crate) fn run_until(&mut self, until: u64) {
        let mut same_time = 0u32;
        let mut last = self.now;
        loop {
            if self.now == last {
                same_time += 1;
                assert!(
                    same_time < 10_000,
                    "stuck at {}: {}",
                    self.now,
                    self.stuck_report()
                );
            } else {
                (same_time, last) = (0, self.now);
            }
            self.settle();
            let next_delivery = self.in_flight.keys().next().map(|(t, _)| *t);
            let next_timer = (0..self.nodes.len())
                .filter(|n| self.alive(*n))
                .filter_map(|n| match &self.nodes[n] {
                    Node::Tab(t) => t.timer.map(|d| d.max(self.now)),
                    Node::Bridge(_) => None,
                })
                .min();
            let next = match (next_delivery, next_timer) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) | (None, Some(a)) => a,
                (None, None) => {
                    self.now = self.now.max(until);
                    return;
                }
            };
            if next > until {
                self.now = until;
                return;
            }
            self.now = next.max(self.now);
            while let Some(entry) = self.in_flight.first_entry() {
                if entry.key().0 > self.now {
                    break;
                }
                let (to, d) = entry.remove();
                if let Delivery::Frame(f) = &d {
                    self.in_flight_bytes -= f.len();
                }
                self.deliver(to, d);
            }
            for n in 0..self.nodes.len() {
                if !self.alive(n) {
                    continue;
                }
                if let Node::Tab(t) = &mut self.nodes[n] {
                    if t.timer.is_some_and(|d| d <= self.now) {
                        t.peer.handle_timeout(self.now);
                        t.timer = t.peer.poll_timeout();
                    }
                }
            }
        }
    }

    /// Runs until `done` holds (checked every 100 ms), or `limit` ms pass.
    pub(crate) fn run_while(&mut self, limit: u64, mut done: impl FnMut(&Net) -> bool) -> bool {
        let end = self.now + limit;
        while self.now < end {
            if done(self) {
                return true;
            }
            self.run_until((self.now + 100).min(end));
        }
        done(self)
    }

    fn stuck_report(&self) -> String {
        let timers: Vec<(NodeId, Option<u64>)> = (0..self.nodes.len())
            .filter_map(|n| Some((n, self.tab(n)?.peer.poll_timeout())))
            .filter(|(_, t)| t.is_some_and(|t| t <= self.now))
            .collect();
        format!("timers due {timers:?}, {} in flight", self.in_flight.len())
    }

    fn deliver(&mut self, (node, link): End, d: Delivery) {
        if !self.alive(node) {
            return;
        }
        let now = self.now;
        match (&mut self.nodes[node], d) {
            (Node::Tab(t), Delivery::Frame(f)) => t.peer.handle_frame(link, &f, now),
            (Node::Tab(t), Delivery::Open(cert)) => t.opened(link, cert, now),
            (Node::Tab(t), Delivery::Closed) => {
                t.peer
                    .handle_link_closed(link, "the other end went away", now)
            }
            (Node::Tab(t), Delivery::Drained) => t.peer.handle_link_congested(link, false),
            (Node::Bridge(b), Delivery::Frame(f)) => b.frame(link, &f, now),
            (Node::Bridge(_), Delivery::Open(_) | Delivery::Drained) => {}
            (Node::Bridge(b), Delivery::Closed) => b.closed(link, now),
        }
    }

    /// Lets every node act on what happened until nothing moves.
    fn settle(&mut self) {
        for round in 0..100_000 {
            assert!(round < 99_999, "the nodes never settle at {}", self.now);
            let mut moved = false;
            for n in 0..self.nodes.len() {
                if !self.alive(n) {
                    continue;
                }
                moved |= match &self.nodes[n] {
                    Node::Tab(_) => tab::step(self, n),
                    Node::Bridge(_) => bridge::step(self, n),
                };
            }
            if !moved {
                self.sample();
                return;
            }
        }
    }

    /// Records the queues' sizes (every 20 ms of virtual time: walking
    /// every peer's circuits costs).
    fn sample(&mut self) {
        if self.now < self.last_sample + 20 {
            return;
        }
        self.last_sample = self.now;
        for node in &self.nodes {
            let q = match node {
                Node::Tab(t) if t.alive => t.peer.queued(),
                Node::Bridge(b) => b.peer.queued(),
                Node::Tab(_) => continue,
            };
            self.stats.max_stream_bytes = self.stats.max_stream_bytes.max(q.stream_bytes);
        }
    }
}

/// A native RSA identity for a simulated tab or bridge, with the
/// signatures WebCrypto would make (RSASSA-PKCS1-v1_5, SHA-256).
pub(crate) struct SimKey {
    pub(crate) private: rsa::PrivateKey,
    pub(crate) spki: Vec<u8>,
}

/// The seeded generator as RSA key generation wants it.
struct KeyGenRng<'a>(&'a mut SimRng);

impl rsa::rand_core::TryRng for KeyGenRng<'_> {
    type Error = std::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(self.0.next_u64() as u32)
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        Ok(self.0.next_u64())
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        use crate::rng::Rng;
        let _ = self.0.fill(dst);
        Ok(())
    }
}

impl rsa::rand_core::TryCryptoRng for KeyGenRng<'_> {}

impl SimKey {
    /// A 1024-bit key (2048 in a browser; the size does not matter to the
    /// protocol and small keys keep hundreds of peers quick).
    pub(crate) fn generate(rng: &mut SimRng) -> SimKey {
        use rsa::pkcs8::EncodePublicKey;
        let private = rsa::PrivateKey::new(&mut KeyGenRng(rng), 1024)
            .unwrap_or_else(|e| unreachable!("RSA key generation: {e}"));
        let spki = private
            .to_public_key()
            .to_public_key_der()
            .map(|d| d.as_bytes().to_vec())
            .unwrap_or_default();
        SimKey { private, spki }
    }

    pub(crate) fn sign(&self, message: &[u8]) -> Vec<u8> {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(message);
        self.private
            .sign(rsa::pkcs1v15::Pkcs1v15Sign::new::<Sha256>(), &digest)
            .unwrap_or_default()
    }
}
