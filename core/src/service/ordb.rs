//! The ORDB role of a peer (docs/PROTOCOL.md "ORDB"), sans IO and generic
//! over the adapter's link id, so tabs, the simulation and native peers
//! run the same code. For each DB_QUERY that ends here:
//!
//! 1. a block we hold is served: its bytes are asked of the platform
//!    (`OrdbEvent::ReadBlock`), then DB_CONNECTED (the manifest when asked,
//!    the audit path) and the bytes from the query's offset go back;
//! 2. otherwise the query is relayed, its loop counter raised, to a linked
//!    peer that told us it can answer (`OR_files_P`, by DB_INFO), taking
//!    them in turn; or to a circuit the owner found by FIND_VALUE
//!    (`add_circuit_source`); while there is none the owner is asked to
//!    look (`OrdbEvent::FindSources`);
//! 3. at a counter of `MAX_COUNTER`, or with nowhere to go, the answer is
//!    DB_END UNAVAILABLE.
//!
//! A relayed answer is spliced through: bytes are read from the upstream
//! stream only as far as the downstream one has room, so a slow asker
//! holds back the source, not our memory. The asker is beyond the circuit
//! we answer on, the source beyond the circuit we ask on: a relaying ORDB
//! learns neither who asked nor, past its own next hop, who answered.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Debug;

use crate::cell::ordb::{block_check, db_end_reason, DbConnected, DbQuery, MAX_COUNTER};
use crate::client::{ClientMux, MuxEvent};
use crate::content::library::Library;
use crate::content::HashName;
use crate::router::{CircuitKey, Router, RouterEvent};

mod live;
pub use live::{LiveTamper, MAX_LIVE_KNOWN, MAX_PARKED, MAX_PARKED_PER_CIRCUIT, PARK_MS};

/// DB_INFO travels this many links from the holder: beyond, FIND_VALUE
/// finds the file (a flood through the whole mesh would cost every tab a
/// message per file).
pub const MAX_INFO_HOPS: u8 = 2;
/// References kept per file.
pub const MAX_REFERENCES: usize = 16;
/// Queries waiting for sources (all files), beyond which they are refused.
pub const MAX_WAITING: usize = 256;
/// Blocks being read or sent at once (each up to `BLOCK_LEN` in memory
/// until the asker takes it), in all, and on one circuit; beyond, a query
/// for a held block is answered REFUSED. A downloader keeps at most 3 in
/// flight per circuit; the per-circuit cap leaves room for the queries of
/// many downloaders that an ORDB relays on its one circuit to us.
pub const MAX_SERVING: usize = 64;
pub const MAX_SERVING_PER_CIRCUIT: usize = 16;
/// Queries relayed at once (each holds at most one upstream read).
pub const MAX_RELAYED: usize = 256;
/// Bytes read from an upstream stream at once.
const READ_CHUNK: usize = 32 * 1024;
/// A circuit found by FIND_VALUE that carried no query this long is
/// closed (a tab that relayed for many files keeps no circuits for them).
pub const SOURCE_IDLE_MS: u64 = 10 * 60_000;
/// Circuits found by FIND_VALUE kept at once (all files).
pub const MAX_FOUND_CIRCUITS: usize = 32;
/// A query waiting for a source this long is answered UNAVAILABLE.
pub const SOURCE_WAIT_MS: u64 = 20_000;
/// After a lookup found nobody for a file, its queries are answered
/// UNAVAILABLE at once for this long (a downloader retrying through many
/// circuits does not start a lookup each).
pub const UNFOUND_MS: u64 = 15_000;
/// The same for a live stream's edge (a joiner's first query): short, as
/// the stream may have begun a moment ago (its first viewer looked, found
/// nobody, and now relays it from its web address).
pub const UNFOUND_EDGE_MS: u64 = 2_000;

/// What the ORDB needs of the peer it runs in: its router (circuits that
/// end here) and its muxes (circuits it originates).
pub trait OrdbNet<L> {
    fn router(&mut self) -> &mut Router<L>;
    fn mux(&mut self, link: L) -> Option<&mut ClientMux>;
}

/// How a linked peer is reached: a one-hop circuit on its link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkedPeer<L> {
    pub link: L,
    pub id: [u8; 20],
    pub ntor: [u8; 32],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrdbEvent {
    /// Read block `block` of `hash_name` from the store, then
    /// `handle_block(request, …)`.
    ReadBlock {
        request: u64,
        hash_name: HashName,
        block: u32,
    },
    /// Queries for this file wait and nobody we know has it: look it up
    /// (FIND_VALUE), then `add_circuit_source` or `no_sources`.
    FindSources { hash_name: HashName },
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OrdbStats {
    pub blocks_served: u64,
    pub queries_relayed: u64,
    /// Answered UNAVAILABLE: unknown file, nowhere to relay, or the loop
    /// counter at its limit.
    pub unavailable: u64,
    pub loops_stopped: u64,
    /// Answered REFUSED: too many blocks or relays in progress.
    pub refused: u64,
    /// Circuits to peers that can answer, found by FIND_VALUE.
    pub sources_found: u64,
    /// Chunks of live streams served (counted in `blocks_served` too).
    pub live_chunks_served: u64,
}

/// A query that ends here (the downstream side).
type Down<L> = (CircuitKey<L>, u16);
/// A stream we opened upstream: link, circuit, stream.
type Up<L> = (L, u32, u16);

#[derive(Debug)]
struct Relayed<L> {
    query: DbQuery,
    up: Option<Up<L>>,
    /// DB_CONNECTED went downstream.
    opened: bool,
    /// Read upstream, not yet taken downstream (at most one read).
    pending: Vec<u8>,
}

#[derive(Debug)]
struct Serving {
    data: Vec<u8>,
    sent: usize,
}

/// A circuit we ask through: a one-hop circuit to a linked peer, or one
/// the owner built (FIND_VALUE).
#[derive(Debug)]
struct Upstream<L> {
    ready: bool,
    /// Queries to send once it is built.
    waiting: Vec<Down<L>>,
    /// When a query last went on it.
    used: u64,
}

/// Where a file's queries can go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source<L> {
    Linked(LinkedPeer<L>),
    Circuit(L, u32),
}

/// A source and how far it is from a holder of the file (DB_INFO's HOPS):
/// queries go to the nearest, so they run down toward the holders and
/// never round between two tabs that told each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Reference<L> {
    source: Source<L>,
    hops: u8,
}

impl<L: Copy> Reference<L> {
    fn link(&self) -> L {
        match self.source {
            Source::Linked(p) => p.link,
            Source::Circuit(l, _) => l,
        }
    }
}

pub struct Ordb<L> {
    pub library: Library,
    /// OR_files_P: per file, who can answer, in turn.
    references: BTreeMap<HashName, VecDeque<Reference<L>>>,
    /// Per file, the links that know it from us or told us.
    told: BTreeMap<HashName, BTreeSet<L>>,
    /// One-hop circuits per link, and the circuits found by lookups.
    link_circuits: BTreeMap<L, u32>,
    upstreams: BTreeMap<(L, u32), Upstream<L>>,
    relayed: BTreeMap<Down<L>, Relayed<L>>,
    by_up: BTreeMap<Up<L>, Down<L>>,
    reads: BTreeMap<u64, (Down<L>, DbQuery)>,
    serving: BTreeMap<Down<L>, Serving>,
    /// Queries waiting for a source, per file, since when.
    waiting: BTreeMap<HashName, Vec<(Down<L>, DbQuery, u64)>>,
    looking: BTreeSet<HashName>,
    /// Files a lookup found nobody for, until when.
    unfound: BTreeMap<HashName, u64>,
    /// How far DB_INFO travels from a holder (`MAX_INFO_HOPS` unless set).
    info_hops: u8,
    /// OR_streams_P: the live streams we hold chunks of.
    lives: BTreeMap<HashName, crate::content::live::LiveRing>,
    /// Streams known to be live (held, or DB_INFO said so).
    live_known: BTreeSet<HashName>,
    /// Queries for chunks not made yet.
    parked: BTreeMap<Down<L>, live::Parked>,
    live_tamper: Option<LiveTamper>,
    events: VecDeque<OrdbEvent>,
    stats: OrdbStats,
    next_request: u64,
}

impl<L: Copy + Ord + Debug> Default for Ordb<L> {
    fn default() -> Self {
        Ordb {
            library: Library::default(),
            references: BTreeMap::new(),
            told: BTreeMap::new(),
            link_circuits: BTreeMap::new(),
            upstreams: BTreeMap::new(),
            relayed: BTreeMap::new(),
            by_up: BTreeMap::new(),
            reads: BTreeMap::new(),
            serving: BTreeMap::new(),
            waiting: BTreeMap::new(),
            looking: BTreeSet::new(),
            unfound: BTreeMap::new(),
            info_hops: MAX_INFO_HOPS,
            lives: BTreeMap::new(),
            live_known: BTreeSet::new(),
            parked: BTreeMap::new(),
            live_tamper: None,
            events: VecDeque::new(),
            stats: OrdbStats::default(),
            next_request: 1,
        }
    }
}

impl<L: Copy + Ord + Debug> Ordb<L> {
    pub fn stats(&self) -> OrdbStats {
        self.stats
    }

    pub fn poll_event(&mut self) -> Option<OrdbEvent> {
        self.events.pop_front()
    }

    /// How many links DB_INFO travels from a holder (0: only to the
    /// holder's own links; FIND_VALUE finds the file beyond).
    pub fn set_info_hops(&mut self, hops: u8) {
        self.info_hops = hops;
    }

    /// Whether a linked peer told us it holds some of `h` (HOPS 0): then
    /// we are one hop from a holder, and STORE ourselves in the DHT.
    pub fn next_to_holder(&self, h: &HashName) -> bool {
        self.references.get(h).is_some_and(|refs| {
            refs.iter()
                .any(|r| r.hops == 0 && matches!(r.source, Source::Linked(_)))
        })
    }

    /// Whether we can answer for `h`: we hold some of it, or know who can.
    pub fn knows(&self, h: &HashName) -> bool {
        self.library.get(h).is_some()
            || self.lives.contains_key(h)
            || self.references.get(h).is_some_and(|r| !r.is_empty())
    }

    /// Files we hold or relay for, with the percent we hold ourselves.
    pub fn known(&self) -> Vec<(HashName, u8)> {
        let mut out: BTreeMap<HashName, u8> = self
            .references
            .iter()
            .filter(|(_, r)| !r.is_empty())
            .map(|(h, _)| (*h, 0))
            .collect();
        for (h, held) in self.library.files() {
            out.insert(*h, held.percent());
        }
        for h in self.lives.keys() {
            out.insert(*h, 100);
        }
        out.into_iter().collect()
    }

    /// Events from the router: the ones for ORDB streams are taken.
    pub fn handle_router_event(
        &mut self,
        net: &mut impl OrdbNet<L>,
        e: RouterEvent<L>,
        now: u64,
    ) -> Option<RouterEvent<L>> {
        match e {
            RouterEvent::DbQuery {
                circuit,
                stream,
                query,
            } => {
                self.on_query(net, (circuit, stream), query, now);
                None
            }
            RouterEvent::StreamWritable { circuit, stream } => {
                let down = (circuit, stream);
                if self.serving.contains_key(&down) {
                    self.pump_serving(net, down);
                    None
                } else if self.relayed.contains_key(&down) {
                    self.pump_relay(net, down);
                    None
                } else {
                    Some(RouterEvent::StreamWritable { circuit, stream })
                }
            }
            RouterEvent::StreamEnded {
                circuit,
                stream,
                reason,
            } => {
                let down = (circuit, stream);
                if self.serving.remove(&down).is_some() || self.unpark(&down) {
                    return None;
                }
                if let Some(r) = self.relayed.remove(&down) {
                    self.end_upstream(net, r.up);
                    return None;
                }
                Some(RouterEvent::StreamEnded {
                    circuit,
                    stream,
                    reason,
                })
            }
            RouterEvent::CircuitClosed { circuit, reason } => {
                self.serving.retain(|(c, _), _| *c != circuit);
                self.unpark_circuit(circuit);
                let gone: Vec<Down<L>> = self
                    .relayed
                    .keys()
                    .filter(|(c, _)| *c == circuit)
                    .copied()
                    .collect();
                for down in gone {
                    if let Some(r) = self.relayed.remove(&down) {
                        self.end_upstream(net, r.up);
                    }
                }
                for w in self.waiting.values_mut() {
                    w.retain(|((c, _), _, _)| *c != circuit);
                }
                Some(RouterEvent::CircuitClosed { circuit, reason })
            }
            // DB_INFO goes to the owner: it knows who is at the other end
            // of the link, and calls `add_reference`.
            other => Some(other),
        }
    }

    fn end_upstream(&mut self, net: &mut impl OrdbNet<L>, up: Option<Up<L>>) {
        if let Some((link, circ, stream)) = up {
            self.by_up.remove(&(link, circ, stream));
            if let Some(m) = net.mux(link) {
                m.end_with(circ, stream, db_end_reason::DESTROYED);
            }
        }
    }

    fn refuse(&mut self, net: &mut impl OrdbNet<L>, down: Down<L>, reason: u8) {
        if reason == db_end_reason::UNAVAILABLE {
            self.stats.unavailable += 1;
        }
        let _ = net.router().stream_refused(down.0, down.1, reason);
    }

    fn on_query(&mut self, net: &mut impl OrdbNet<L>, down: Down<L>, query: DbQuery, now: u64) {
        let h = HashName(query.hash_name);
        if self.lives.contains_key(&h) {
            return self.on_live_query(net, down, query, now);
        }
        if let Some(held) = self.library.get(&h) {
            let m = &held.manifest;
            let size = m.block_size(u64::from(query.block));
            let outside = u64::from(query.block) >= m.blocks()
                || query.offset > size
                || (query.offset == size && size > 0);
            if outside && !(m.blocks() == 0 && query.block == 0) {
                return self.refuse(net, down, db_end_reason::BAD_QUERY);
            }
            if m.blocks() == 0 || held.has(query.block) {
                if self.too_busy_to_serve(down.0) {
                    self.stats.refused += 1;
                    return self.refuse(net, down, db_end_reason::REFUSED);
                }
                let request = self.next_request;
                self.next_request += 1;
                let block = query.block;
                self.reads.insert(request, (down, query));
                if m.blocks() == 0 {
                    return self.handle_block(net, request, Ok(Vec::new()));
                }
                self.events.push_back(OrdbEvent::ReadBlock {
                    request,
                    hash_name: h,
                    block,
                });
                return;
            }
        }
        if query.counter >= MAX_COUNTER {
            self.stats.loops_stopped += 1;
            return self.refuse(net, down, db_end_reason::UNAVAILABLE);
        }
        self.relay(net, down, query, now);
    }

    /// Whether serving one more block (on `circuit`) would pass the caps.
    fn too_busy_to_serve(&self, circuit: CircuitKey<L>) -> bool {
        let on_circuit = self
            .reads
            .values()
            .filter(|((c, _), _)| *c == circuit)
            .count()
            + self.serving.keys().filter(|(c, _)| *c == circuit).count();
        self.reads.len() + self.serving.len() >= MAX_SERVING
            || on_circuit >= MAX_SERVING_PER_CIRCUIT
    }

    /// Blocks read or being sent now (each held in memory).
    pub fn blocks_in_progress(&self) -> usize {
        self.reads.len() + self.serving.len()
    }

    /// The platform read a block (or could not).
    pub fn handle_block(
        &mut self,
        net: &mut impl OrdbNet<L>,
        request: u64,
        data: Result<Vec<u8>, String>,
    ) {
        let Some((down, query)) = self.reads.remove(&request) else {
            return;
        };
        let h = HashName(query.hash_name);
        let Some(held) = self.library.get(&h) else {
            return self.refuse(net, down, db_end_reason::UNAVAILABLE);
        };
        let size = held.manifest.block_size(u64::from(query.block)) as usize;
        let data = match data {
            Ok(d) if d.len() == size => d,
            _ => return self.refuse(net, down, db_end_reason::UNAVAILABLE),
        };
        let answer = DbConnected {
            manifest: query.wants_manifest().then(|| held.manifest_bytes.clone()),
            path: held.path(query.block).unwrap_or_default(),
            live: None,
        };
        self.serve(net, down, &query, &answer, data);
    }

    /// Answers a query with DB_CONNECTED, then its bytes from the query's
    /// offset as the stream has room (a file's block or a live chunk).
    fn serve(
        &mut self,
        net: &mut impl OrdbNet<L>,
        down: Down<L>,
        query: &DbQuery,
        answer: &DbConnected,
        data: Vec<u8>,
    ) -> bool {
        let check = block_check(&query.hash_name, query.block);
        if net
            .router()
            .db_connected(down.0, down.1, answer, query.offset, check)
            .is_err()
        {
            return false;
        }
        self.stats.blocks_served += 1;
        self.serving.insert(
            down,
            Serving {
                data,
                sent: query.offset as usize,
            },
        );
        self.pump_serving(net, down);
        true
    }

    fn pump_serving(&mut self, net: &mut impl OrdbNet<L>, down: Down<L>) {
        let Some(s) = self.serving.get_mut(&down) else {
            return;
        };
        let router = net.router();
        while s.sent < s.data.len() {
            let Ok(n) = router.write(down.0, down.1, s.data.get(s.sent..).unwrap_or_default())
            else {
                self.serving.remove(&down);
                return;
            };
            if n == 0 {
                return; // Until StreamWritable.
            }
            s.sent += n;
        }
        self.serving.remove(&down);
        let _ = router.end_stream(down.0, down.1, db_end_reason::FINISHED);
    }

    /// A linked peer said it can answer for `h` (DB_INFO on its link).
    /// Returns the links to pass the reference on to (those that do not
    /// know it yet), with the hop count to send, when it is new to us.
    pub fn add_reference(
        &mut self,
        h: HashName,
        from: LinkedPeer<L>,
        hops: u8,
        linked: &[L],
    ) -> Option<(Vec<L>, u8)> {
        let known_before = self.knows(&h);
        self.told.entry(h).or_default().insert(from.link);
        let refs = self.references.entry(h).or_default();
        match refs.iter_mut().find(|r| r.source == Source::Linked(from)) {
            Some(r) => r.hops = r.hops.min(hops),
            None => {
                if refs.len() >= MAX_REFERENCES {
                    // The farthest goes.
                    if let Some(far) = refs.iter().enumerate().max_by_key(|(_, r)| r.hops) {
                        let i = far.0;
                        refs.remove(i);
                    }
                }
                refs.push_back(Reference {
                    source: Source::Linked(from),
                    hops,
                });
            }
        }
        if known_before || hops >= self.info_hops {
            return None;
        }
        Some((self.untold(h, linked), hops + 1))
    }

    /// What to tell a link just opened, marked as told: every file we
    /// hold (HOPS 0, with the percent held) or relay within
    /// `MAX_INFO_HOPS` (HOPS one more than our nearest reference).
    pub fn references_for(&mut self, link: L) -> Vec<(HashName, u8, u8)> {
        let mut out: BTreeMap<HashName, (u8, u8)> = BTreeMap::new();
        for (h, refs) in &self.references {
            if let Some(nearest) = refs.iter().map(|r| r.hops).min() {
                if nearest < self.info_hops {
                    out.insert(*h, (0, nearest + 1));
                }
            }
        }
        for (h, held) in self.library.files() {
            out.insert(*h, (held.percent(), 0));
        }
        let lives: Vec<HashName> = self.lives.keys().copied().collect();
        for h in lives {
            out.insert(h, (100, self.live_hops(&h)));
        }
        let mut told = Vec::new();
        for (h, (percent, hops)) in out {
            if self.told.entry(h).or_default().insert(link) {
                told.push((h, percent, hops));
            }
        }
        told
    }

    /// The links in `linked` that have not heard of `h` from us, now
    /// marked as told.
    pub fn untold(&mut self, h: HashName, linked: &[L]) -> Vec<L> {
        let told = self.told.entry(h).or_default();
        let fresh: Vec<L> = linked
            .iter()
            .filter(|l| !told.contains(l))
            .copied()
            .collect();
        told.extend(fresh.iter().copied());
        fresh
    }

    /// A link closed: references through it go.
    pub fn link_closed(&mut self, link: L) {
        for refs in self.references.values_mut() {
            refs.retain(|r| r.link() != link);
        }
        for told in self.told.values_mut() {
            told.remove(&link);
        }
        if let Some(circ) = self.link_circuits.remove(&link) {
            self.upstreams.remove(&(link, circ));
        }
        self.upstreams.retain(|(l, _), _| *l != link);
        self.by_up.retain(|(l, _, _), _| *l != link);
    }

    /// A circuit the owner built to a peer that can answer for `h`.
    pub fn add_circuit_source(
        &mut self,
        net: &mut impl OrdbNet<L>,
        h: HashName,
        link: L,
        circ: u32,
        now: u64,
    ) {
        self.looking.remove(&h);
        self.unfound.remove(&h);
        self.stats.sources_found += 1;
        // Bounded: the circuit used longest ago (and idle) makes room.
        let found = self.found_circuits();
        if found.len() >= MAX_FOUND_CIRCUITS {
            let oldest = found
                .into_iter()
                .filter(|key| !self.busy(*key))
                .min_by_key(|key| self.upstreams.get(key).map_or(0, |u| u.used));
            match oldest {
                Some(key) => self.close_found_circuit(net, key),
                None => {
                    if let Some(m) = net.mux(link) {
                        m.destroy(circ);
                    }
                    return self.cannot_look(net, h);
                }
            }
        }
        self.upstreams.insert(
            (link, circ),
            Upstream {
                ready: true,
                waiting: Vec::new(),
                used: now,
            },
        );
        let refs = self.references.entry(h).or_default();
        if refs.len() >= MAX_REFERENCES {
            refs.pop_front();
        }
        refs.push_back(Reference {
            source: Source::Circuit(link, circ),
            hops: MAX_INFO_HOPS + 1,
        });
        for (down, query, _) in self.waiting.remove(&h).unwrap_or_default() {
            self.relay(net, down, query, now);
        }
    }

    /// Whether a lookup for `h`'s sources is under way.
    pub fn is_looking(&self, h: &HashName) -> bool {
        self.looking.contains(h)
    }

    /// The owner's lookup found nobody: the waiting queries are answered.
    pub fn no_sources(&mut self, net: &mut impl OrdbNet<L>, h: HashName, now: u64) {
        if !self.knows(&h) {
            self.unfound.insert(h, now + UNFOUND_MS);
        }
        self.cannot_look(net, h);
    }

    /// The owner cannot look for `h` now (too busy): the waiting queries
    /// are answered, and the next one may look again.
    pub fn cannot_look(&mut self, net: &mut impl OrdbNet<L>, h: HashName) {
        self.looking.remove(&h);
        for (down, _, _) in self.waiting.remove(&h).unwrap_or_default() {
            self.refuse(net, down, db_end_reason::UNAVAILABLE);
        }
    }

    /// Queries that waited too long for a source are answered.
    pub fn handle_timeout(&mut self, net: &mut impl OrdbNet<L>, now: u64) {
        let mut late = Vec::new();
        for w in self.waiting.values_mut() {
            w.retain(|(down, _, since)| {
                let keep = now.saturating_sub(*since) < SOURCE_WAIT_MS;
                if !keep {
                    late.push(*down);
                }
                keep
            });
        }
        self.waiting.retain(|_, w| !w.is_empty());
        self.unfound.retain(|_, until| *until > now);
        self.close_idle_sources(net, now);
        self.live_timeout(net, now);
        for down in late {
            self.refuse(net, down, db_end_reason::UNAVAILABLE);
        }
    }

    /// Circuits found by FIND_VALUE (the upstreams that are not one-hop
    /// circuits to linked peers).
    fn found_circuits(&self) -> Vec<(L, u32)> {
        self.upstreams
            .keys()
            .filter(|(l, c)| self.link_circuits.get(l) != Some(c))
            .copied()
            .collect()
    }

    fn busy(&self, (link, circ): (L, u32)) -> bool {
        self.by_up.keys().any(|(l, c, _)| *l == link && *c == circ)
    }

    fn close_found_circuit(&mut self, net: &mut impl OrdbNet<L>, (link, circ): (L, u32)) {
        self.upstreams.remove(&(link, circ));
        for refs in self.references.values_mut() {
            refs.retain(|r| r.source != Source::Circuit(link, circ));
        }
        if let Some(m) = net.mux(link) {
            m.destroy(circ);
        }
    }

    /// Circuits found by FIND_VALUE that are no longer a reference, or
    /// carried no query for `SOURCE_IDLE_MS`, and have none in progress,
    /// are closed.
    fn close_idle_sources(&mut self, net: &mut impl OrdbNet<L>, now: u64) {
        let referenced: BTreeSet<(L, u32)> = self
            .references
            .values()
            .flatten()
            .filter_map(|r| match r.source {
                Source::Circuit(link, circ) => Some((link, circ)),
                Source::Linked(_) => None,
            })
            .collect();
        let idle: Vec<(L, u32)> = self
            .found_circuits()
            .into_iter()
            .filter(|key| {
                !referenced.contains(key)
                    || self
                        .upstreams
                        .get(key)
                        .is_some_and(|u| now.saturating_sub(u.used) >= SOURCE_IDLE_MS)
            })
            .filter(|key| !self.busy(*key))
            .collect();
        for key in idle {
            self.close_found_circuit(net, key);
        }
    }

    pub fn next_timeout(&self) -> Option<u64> {
        self.waiting
            .values()
            .flatten()
            .map(|(_, _, since)| since + SOURCE_WAIT_MS)
            .chain(self.next_live_timeout())
            .min()
    }

    /// The next source for `h`: among the nearest to a holder, in turn,
    /// preferring one not on the link the query came from.
    fn next_source(&mut self, h: &HashName, from: L) -> Option<Source<L>> {
        let refs = self.references.get_mut(h)?;
        let nearest = refs.iter().map(|r| r.hops).min()?;
        let pick = refs
            .iter()
            .position(|r| r.hops == nearest && r.link() != from)
            .or_else(|| refs.iter().position(|r| r.hops == nearest))?;
        let r = refs.remove(pick)?;
        refs.push_back(r);
        Some(r.source)
    }

    fn relay(&mut self, net: &mut impl OrdbNet<L>, down: Down<L>, query: DbQuery, now: u64) {
        if self.relayed.len() >= MAX_RELAYED {
            self.stats.refused += 1;
            return self.refuse(net, down, db_end_reason::REFUSED);
        }
        let h = HashName(query.hash_name);
        let Some(source) = self.next_source(&h, down.0.link) else {
            let total: usize = self.waiting.values().map(Vec::len).sum();
            let remembered = if query.block == crate::content::live::LIVE_EDGE {
                UNFOUND_MS - UNFOUND_EDGE_MS
            } else {
                0
            };
            let unfound = self
                .unfound
                .get(&h)
                .is_some_and(|until| until.saturating_sub(remembered) > now);
            if total >= MAX_WAITING || unfound {
                return self.refuse(net, down, db_end_reason::UNAVAILABLE);
            }
            self.waiting.entry(h).or_default().push((down, query, now));
            if self.looking.insert(h) {
                self.events
                    .push_back(OrdbEvent::FindSources { hash_name: h });
            }
            return;
        };
        let (link, circ) = match source {
            Source::Circuit(link, circ) => (link, circ),
            Source::Linked(p) => match self.link_circuit(net, p) {
                Some(c) => (p.link, c),
                None => return self.refuse(net, down, db_end_reason::UNAVAILABLE),
            },
        };
        let mut relayed_query = query.clone();
        relayed_query.counter = query.counter.saturating_add(1);
        self.stats.queries_relayed += 1;
        self.relayed.insert(
            down,
            Relayed {
                query: relayed_query,
                up: None,
                opened: false,
                pending: Vec::new(),
            },
        );
        if let Some(u) = self.upstreams.get_mut(&(link, circ)) {
            u.used = now;
        }
        let ready = self.upstreams.get(&(link, circ)).is_some_and(|u| u.ready);
        if ready {
            self.send_upstream(net, down, link, circ);
        } else if let Some(u) = self.upstreams.get_mut(&(link, circ)) {
            u.waiting.push(down);
        }
    }

    /// Our one-hop circuit to a linked peer, made when first needed.
    fn link_circuit(&mut self, net: &mut impl OrdbNet<L>, p: LinkedPeer<L>) -> Option<u32> {
        if let Some(c) = self.link_circuits.get(&p.link) {
            let alive = net.mux(p.link).is_some_and(|m| m.is_alive(*c));
            if alive {
                return Some(*c);
            }
            self.upstreams.remove(&(p.link, *c));
        }
        let circ = net.mux(p.link)?.create_ntor(p.id, p.ntor).ok()?;
        self.link_circuits.insert(p.link, circ);
        self.upstreams.insert(
            (p.link, circ),
            Upstream {
                ready: false,
                waiting: Vec::new(),
                used: 0,
            },
        );
        Some(circ)
    }

    /// The one-hop circuit on `link`, if built (DB_INFO goes on it).
    pub fn circuit_to(
        &mut self,
        net: &mut impl OrdbNet<L>,
        p: LinkedPeer<L>,
    ) -> Option<(u32, bool)> {
        let circ = self.link_circuit(net, p)?;
        let ready = self.upstreams.get(&(p.link, circ)).is_some_and(|u| u.ready);
        Some((circ, ready))
    }

    fn send_upstream(&mut self, net: &mut impl OrdbNet<L>, down: Down<L>, link: L, circ: u32) {
        let Some(r) = self.relayed.get_mut(&down) else {
            return;
        };
        match net.mux(link).map(|m| m.begin_db(circ, &r.query)) {
            Some(Ok(stream)) => {
                r.up = Some((link, circ, stream));
                self.by_up.insert((link, circ, stream), down);
            }
            _ => {
                self.relayed.remove(&down);
                self.refuse(net, down, db_end_reason::DESTROYED);
            }
        }
    }

    /// Whether a mux event on `link` is ours (an upstream circuit); then it
    /// is handled. `Control` events on our one-hop circuits are not ours.
    pub fn handle_mux_event(&mut self, net: &mut impl OrdbNet<L>, link: L, e: &MuxEvent) -> bool {
        match e {
            MuxEvent::HopAdded { circ, .. } => {
                let Some(u) = self.upstreams.get_mut(&(link, *circ)) else {
                    return false;
                };
                u.ready = true;
                for down in std::mem::take(&mut u.waiting) {
                    self.send_upstream(net, down, link, *circ);
                }
                true
            }
            MuxEvent::HopFailed { circ, .. } | MuxEvent::CircuitClosed { circ, .. } => {
                let Some(u) = self.upstreams.remove(&(link, *circ)) else {
                    return false;
                };
                self.link_circuits.retain(|l, c| !(*l == link && c == circ));
                for refs in self.references.values_mut() {
                    refs.retain(|r| r.source != Source::Circuit(link, *circ));
                }
                for down in u.waiting {
                    self.relayed.remove(&down);
                    self.refuse(net, down, db_end_reason::DESTROYED);
                }
                // Streams on it end with `StreamEnded` events (the mux
                // sends them first).
                true
            }
            MuxEvent::DbConnected {
                circ,
                stream,
                answer,
            } => {
                let Some(down) = self.by_up.get(&(link, *circ, *stream)).copied() else {
                    return false;
                };
                let Some(r) = self.relayed.get_mut(&down) else {
                    return true;
                };
                let check = block_check(&r.query.hash_name, r.query.block);
                let offset = r.query.offset;
                r.opened = true;
                if net
                    .router()
                    .db_connected(down.0, down.1, answer, offset, check)
                    .is_err()
                {
                    let up = self.relayed.remove(&down).and_then(|r| r.up);
                    self.end_upstream(net, up);
                }
                true
            }
            MuxEvent::StreamReadable { circ, stream } => {
                let Some(down) = self.by_up.get(&(link, *circ, *stream)).copied() else {
                    return false;
                };
                self.pump_relay(net, down);
                true
            }
            MuxEvent::StreamEnded {
                circ,
                stream,
                reason,
                ..
            } => {
                let Some(down) = self.by_up.remove(&(link, *circ, *stream)) else {
                    return false;
                };
                if let Some(r) = self.relayed.remove(&down) {
                    let router = net.router();
                    if r.opened {
                        let _ = router.end_stream(down.0, down.1, *reason);
                    } else {
                        let _ = router.stream_refused(down.0, down.1, *reason);
                    }
                }
                true
            }
            MuxEvent::StreamOpened { circ, .. } | MuxEvent::StreamWritable { circ, .. } => {
                self.upstreams.contains_key(&(link, *circ))
            }
            MuxEvent::Control { .. } => false,
        }
    }

    /// Moves what the upstream stream has into the downstream one. One
    /// read at most waits here: when the downstream stream is full, the
    /// rest stays upstream (its window closes) until `StreamWritable`.
    fn pump_relay(&mut self, net: &mut impl OrdbNet<L>, down: Down<L>) {
        let Some(r) = self.relayed.get_mut(&down) else {
            return;
        };
        let Some((link, circ, stream)) = r.up else {
            return;
        };
        loop {
            if r.pending.is_empty() {
                r.pending = match net.mux(link).map(|m| m.read(circ, stream, READ_CHUNK)) {
                    Some(Ok(d)) if !d.is_empty() => d,
                    _ => return,
                };
            }
            match net.router().write(down.0, down.1, &r.pending) {
                Ok(n) => {
                    r.pending.drain(..n);
                    if !r.pending.is_empty() {
                        return;
                    }
                }
                Err(_) => {
                    let up = self.relayed.remove(&down).and_then(|r| r.up);
                    self.end_upstream(net, up);
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Three peers in memory on the shared core: an asker (0), the ORDB
    //! under test (1) and another ORDB (2), linked 0–1 and 1–2.

    use super::*;
    use crate::cell::ordb::WANT_MANIFEST;
    use crate::circuit::LinkSide;
    use crate::content::{merkle, Manifest, BLOCK_LEN};
    use crate::crypto::ntor::NtorRelayKey;
    use crate::peer::core::PeerCore;
    use crate::rng::SimRng;
    use crate::router::{LinkPeer, RouterConfig};
    use crate::service::Services;

    struct Node {
        core: PeerCore<usize>,
        ordb: Ordb<usize>,
        key: NtorRelayKey,
        blocks: BTreeMap<u32, Vec<u8>>,
    }

    struct Net {
        nodes: Vec<Node>,
        /// What the asker's mux said.
        asked: Vec<MuxEvent>,
        /// Cells from node 1 to the asker held back (a link that does not
        /// drain, or an asker that sends no SENDME), while set.
        stall_to_asker: Option<Vec<Vec<crate::cell::RawCell>>>,
    }

    fn id(i: usize) -> [u8; 20] {
        [i as u8 + 1; 20]
    }

    impl Net {
        fn new() -> Net {
            let mut rng = SimRng::new(3);
            let mut nodes: Vec<Node> = (0..3)
                .map(|i| {
                    let key = NtorRelayKey::new(id(i), [i as u8 + 9; 32]);
                    let core = PeerCore::new(
                        RouterConfig::new(vec![key.clone()]),
                        Services::new(None, None),
                        &mut rng,
                    )
                    .unwrap();
                    Node {
                        core,
                        ordb: Ordb::default(),
                        key,
                        blocks: BTreeMap::new(),
                    }
                })
                .collect();
            for (a, b) in [(0, 1), (1, 2)] {
                let peer = |i: usize| LinkPeer {
                    id: Some(id(i)),
                    ed25519_id: None,
                };
                nodes[a]
                    .core
                    .add_link(b, LinkSide::Initiator, peer(b))
                    .unwrap();
                nodes[b]
                    .core
                    .add_link(a, LinkSide::Responder, peer(a))
                    .unwrap();
            }
            Net {
                nodes,
                asked: Vec::new(),
                stall_to_asker: None,
            }
        }

        fn linked(&self, to: usize, on: usize) -> LinkedPeer<usize> {
            LinkedPeer {
                link: on,
                id: id(to),
                ntor: self.nodes[to].key.public,
            }
        }

        fn run(&mut self) {
            for _ in 0..10_000 {
                let mut moved = false;
                for i in 0..self.nodes.len() {
                    for (to, cells) in self.nodes[i].core.transmit() {
                        moved = true;
                        match (&mut self.stall_to_asker, i, to) {
                            (Some(held), 1, 0) => held.push(cells),
                            _ => self.nodes[to].core.handle_cells(i, cells),
                        }
                    }
                    while let Some(e) = self.nodes[i].core.poll_event() {
                        moved = true;
                        let n = &mut self.nodes[i];
                        match e {
                            crate::peer::core::CoreEvent::Router(r) => {
                                n.ordb.handle_router_event(&mut n.core, r, 0);
                            }
                            crate::peer::core::CoreEvent::Mux { link, event } => {
                                if i == 0 {
                                    self.asked.push(event);
                                } else {
                                    n.ordb.handle_mux_event(&mut n.core, link, &event);
                                }
                            }
                            crate::peer::core::CoreEvent::Exit(_) => {}
                        }
                    }
                    while let Some(e) = self.nodes[i].ordb.poll_event() {
                        moved = true;
                        let n = &mut self.nodes[i];
                        match e {
                            OrdbEvent::ReadBlock { request, block, .. } => {
                                let data = n.blocks.get(&block).cloned().ok_or_else(String::new);
                                n.ordb.handle_block(&mut n.core, request, data);
                            }
                            OrdbEvent::FindSources { hash_name } => {
                                n.ordb.no_sources(&mut n.core, hash_name, 0)
                            }
                        }
                    }
                }
                if !moved {
                    return;
                }
            }
            panic!("the network never settled");
        }

        /// A circuit from the asker to node 1; a query on it; what came
        /// back: the DB_CONNECTED answer, the bytes, the DB_END reason.
        fn ask(&mut self, query: &DbQuery) -> (Option<DbConnected>, Vec<u8>, Option<u8>) {
            let k = self.nodes[1].key.public;
            let mux = self.nodes[0].core.mux(1).unwrap();
            let circ = mux.create_ntor(id(1), k).unwrap();
            self.run();
            let stream = self.nodes[0]
                .core
                .mux(1)
                .unwrap()
                .begin_db(circ, query)
                .unwrap();
            self.asked.clear();
            let (mut answer, mut data, mut end) = (None, Vec::new(), None);
            for _ in 0..1000 {
                self.run();
                for e in std::mem::take(&mut self.asked) {
                    match e {
                        MuxEvent::DbConnected { answer: a, .. } => answer = Some(a),
                        MuxEvent::StreamEnded { reason, .. } => end = Some(reason),
                        _ => {}
                    }
                }
                let mux = self.nodes[0].core.mux(1).unwrap();
                if let Ok(d) = mux.read(circ, stream, usize::MAX) {
                    data.extend(d);
                }
                if end.is_some() {
                    break;
                }
            }
            (answer, data, end)
        }
    }

    fn seed(node: &mut Node, size: usize) -> (Manifest, Vec<u8>) {
        let data: Vec<u8> = (0..size).map(|i| (i % 241) as u8).collect();
        let leaves: Vec<_> = data
            .chunks(BLOCK_LEN as usize)
            .map(merkle::leaf_hash)
            .collect();
        let m = Manifest::sign(size as u64, &leaves, "text/plain", "t", &[8; 32]).unwrap();
        for (i, b) in data.chunks(BLOCK_LEN as usize).enumerate() {
            node.blocks.insert(i as u32, b.to_vec());
        }
        node.ordb.library.add_seed(m.clone(), leaves);
        (m, data)
    }

    fn query(m: &Manifest, block: u32, offset: u32, counter: u8) -> DbQuery {
        DbQuery {
            hash_name: m.hash_name().0,
            block,
            offset,
            counter,
            flags: WANT_MANIFEST,
        }
    }

    #[test]
    fn a_held_block_is_served_with_its_manifest_and_path() {
        let mut net = Net::new();
        let (m, data) = seed(&mut net.nodes[1], 250_000);
        let (answer, got, end) = net.ask(&query(&m, 1, 1000, 0));
        let answer = answer.unwrap();
        let back = Manifest::decode_for(&answer.manifest.unwrap(), &m.hash_name()).unwrap();
        let block = &data[BLOCK_LEN as usize..2 * BLOCK_LEN as usize];
        assert_eq!(got, &block[1000..]);
        assert!(back.check_block(1, block, &answer.path));
        assert_eq!(end, Some(db_end_reason::FINISHED));
        assert_eq!(net.nodes[1].ordb.stats().blocks_served, 1);
    }

    /// An asker opens 200 queries for a held block on one circuit and
    /// takes nothing (its link does not drain): once the circuit window
    /// is spent, the ORDB keeps at most `MAX_SERVING_PER_CIRCUIT` blocks
    /// in memory for it and refuses the rest; once the link drains, what
    /// was accepted arrives, and another circuit is served.
    #[test]
    fn an_asker_that_never_reads_cannot_fill_the_ordbs_memory() {
        let mut net = Net::new();
        let (m, data) = seed(&mut net.nodes[1], 250_000);
        let k = net.nodes[1].key.public;
        let mux = net.nodes[0].core.mux(1).unwrap();
        let circ = mux.create_ntor(id(1), k).unwrap();
        net.run();
        net.stall_to_asker = Some(Vec::new());
        for _ in 0..200 {
            let mux = net.nodes[0].core.mux(1).unwrap();
            mux.begin_db(circ, &query(&m, 0, 0, 0)).unwrap();
            net.run();
        }
        let held = net.nodes[1].ordb.blocks_in_progress();
        let refused = net.nodes[1].ordb.stats().refused;
        let served = net.nodes[1].ordb.stats().blocks_served;
        println!(
            "200 queries, nothing taken: {served} blocks served, {held} held, {refused} refused"
        );
        assert_eq!(held, MAX_SERVING_PER_CIRCUIT, "blocks held for the asker");
        assert_eq!(refused + served, 200);
        assert!(refused >= 150, "{refused} refused");
        // The link drains: what was accepted arrives, and more is served.
        for cells in net.stall_to_asker.take().unwrap_or_default() {
            net.nodes[0].core.handle_cells(1, cells);
        }
        net.run();
        let (answer, got, end) = net.ask(&query(&m, 1, 0, 0));
        assert!(answer.is_some());
        assert_eq!(end, Some(db_end_reason::FINISHED));
        assert_eq!(got, data[BLOCK_LEN as usize..2 * BLOCK_LEN as usize]);
    }

    #[test]
    fn a_publisher_keeps_queries_for_chunks_to_come_within_a_bound() {
        use crate::content::live::{tests as live, LIVE_EDGE};
        let mut net = Net::new();
        let m = live::manifest();
        let h = net.nodes[1].ordb.add_live(m.clone(), true);
        let q = |block: u32| DbQuery {
            hash_name: h.0,
            block,
            offset: 0,
            counter: 0,
            flags: 0,
        };
        // One asker's circuit: 40 queries for chunks not made yet.
        let k = net.nodes[1].key.public;
        let circ = net.nodes[0]
            .core
            .mux(1)
            .unwrap()
            .create_ntor(id(1), k)
            .unwrap();
        net.run();
        for i in 0..40u32 {
            let mux = net.nodes[0].core.mux(1).unwrap();
            mux.begin_db(circ, &q(if i == 0 { LIVE_EDGE } else { i % 20 }))
                .unwrap();
            net.run();
        }
        assert_eq!(net.nodes[1].ordb.parked(), MAX_PARKED_PER_CIRCUIT);
        assert_eq!(
            net.nodes[1].ordb.stats().refused,
            40 - MAX_PARKED_PER_CIRCUIT as u64
        );
        // The first key chunk comes: the joiner's query and the one for
        // its index are answered at once; the rest wait on.
        let chunk = live::chunk(&m, 0, crate::content::live::KEY);
        let (n1, now) = (&mut net.nodes[1], 0);
        assert!(n1.ordb.add_live_chunk(&mut n1.core, &h, chunk, now));
        net.run();
        assert_eq!(net.nodes[1].ordb.stats().live_chunks_served, 1 + 1);
        assert_eq!(net.nodes[1].ordb.parked(), MAX_PARKED_PER_CIRCUIT - 2);
        // Another circuit is not held back by the first one's queries.
        let (answer, got, end) = net.ask(&q(0));
        assert_eq!(end, Some(db_end_reason::FINISHED));
        assert_eq!(answer.and_then(|a| a.live).map(|c| c.seq), Some(0));
        assert_eq!(got.len(), 100);
    }

    #[test]
    fn bad_queries_get_a_clear_db_end_and_nothing_else_breaks() {
        let mut net = Net::new();
        let (m, _) = seed(&mut net.nodes[1], 250_000);
        // A block outside the file, an offset past its block.
        assert_eq!(
            net.ask(&query(&m, 3, 0, 0)).2,
            Some(db_end_reason::BAD_QUERY)
        );
        assert_eq!(
            net.ask(&query(&m, 2, 60_000, 0)).2,
            Some(db_end_reason::BAD_QUERY)
        );
        // An unknown hash_name: nobody to ask.
        let mut unknown = query(&m, 0, 0, 0);
        unknown.hash_name = [0xee; 20];
        let (answer, data, end) = net.ask(&unknown);
        assert!(answer.is_none() && data.is_empty());
        assert_eq!(end, Some(db_end_reason::UNAVAILABLE));
        // A counter at its limit is not relayed.
        let to2 = net.linked(2, 2);
        net.nodes[1]
            .ordb
            .add_reference(HashName([0xee; 20]), to2, 0, &[]);
        let mut looping = unknown.clone();
        looping.counter = MAX_COUNTER;
        assert_eq!(net.ask(&looping).2, Some(db_end_reason::UNAVAILABLE));
        assert_eq!(net.nodes[1].ordb.stats().loops_stopped, 1);
        // The file is still served afterwards.
        assert_eq!(
            net.ask(&query(&m, 0, 0, 0)).2,
            Some(db_end_reason::FINISHED)
        );
    }

    #[test]
    fn a_query_is_relayed_to_a_reference_and_the_answer_spliced_back() {
        let mut net = Net::new();
        let (m, data) = seed(&mut net.nodes[2], 300_000);
        let h = m.hash_name();
        let from = net.linked(2, 2);
        net.nodes[1].ordb.add_reference(h, from, 0, &[]);
        let (answer, got, end) = net.ask(&query(&m, 2, 0, 0));
        let block = &data[2 * BLOCK_LEN as usize..3 * BLOCK_LEN as usize];
        assert_eq!(got, block);
        assert!(m.check_block(2, block, &answer.unwrap().path));
        assert_eq!(end, Some(db_end_reason::FINISHED));
        assert_eq!(net.nodes[1].ordb.stats().queries_relayed, 1);
        assert_eq!(net.nodes[2].ordb.stats().blocks_served, 1);
    }

    #[test]
    fn two_ordbs_that_point_at_each_other_stop_at_the_counter() {
        let mut net = Net::new();
        let h = HashName([0x77; 20]);
        let (to2, to1) = (net.linked(2, 2), net.linked(1, 1));
        net.nodes[1].ordb.add_reference(h, to2, 0, &[]);
        net.nodes[2].ordb.add_reference(h, to1, 0, &[]);
        let q = DbQuery {
            hash_name: h.0,
            block: 0,
            offset: 0,
            counter: 0,
            flags: 0,
        };
        let (_, data, end) = net.ask(&q);
        assert!(data.is_empty());
        assert_eq!(end, Some(db_end_reason::UNAVAILABLE));
        let relayed =
            net.nodes[1].ordb.stats().queries_relayed + net.nodes[2].ordb.stats().queries_relayed;
        let stopped =
            net.nodes[1].ordb.stats().loops_stopped + net.nodes[2].ordb.stats().loops_stopped;
        assert_eq!((relayed, stopped), (u64::from(MAX_COUNTER), 1));
    }
}
