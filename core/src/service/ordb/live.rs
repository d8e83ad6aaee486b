//! The ORDB role for live streams (docs/PROTOCOL.md "Live streams"): the
//! chunks a peer holds of a stream (`OR_streams_P`) are served from
//! memory. At the publisher, a query for a chunk not made yet waits until
//! it is (or `PARK_MS`), so a chunk leaves for every follower the moment
//! it exists. A follower relays what it does not hold, as for a file.

use super::{Down, Ordb, OrdbNet};
use crate::cell::ordb::{db_end_reason, DbConnected, DbQuery, MAX_COUNTER};
use crate::content::live::{Chunk, LiveManifest, LiveRing, LIVE_EDGE};
use crate::content::HashName;
use std::fmt::Debug;

/// Queries waiting for chunks to come, in all and on one circuit;
/// beyond, REFUSED (a follower keeps at most 5 asked ahead; a circuit
/// from an ORDB relays many followers' queries).
pub const MAX_PARKED: usize = 256;
pub const MAX_PARKED_PER_CIRCUIT: usize = 32;
/// Streams remembered as live from what linked tabs said.
pub const MAX_LIVE_KNOWN: usize = 4096;
/// The longest a query waits for its chunk (at least; a stream's four
/// windows when longer).
pub const PARK_MS: u64 = 5_000;

/// Tests only: an ORDB that lies about the chunks it serves, to show
/// followers refuse them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveTamper {
    /// A byte of every chunk's data flipped (its signature fails).
    Forge,
    /// The chunk before the one asked, intact and signed (a replay).
    Replay,
}

/// A query for a chunk not here yet.
#[derive(Debug)]
pub(super) struct Parked {
    query: DbQuery,
    until: u64,
}

impl<L: Copy + Ord + Debug> Ordb<L> {
    /// Starts holding a stream: as its publisher (`origin`), or as a
    /// follower once it has the manifest.
    pub fn add_live(&mut self, manifest: LiveManifest, origin: bool) -> HashName {
        let h = manifest.hash_name();
        let ring = self
            .lives
            .entry(h)
            .or_insert_with(|| LiveRing::new(manifest));
        ring.origin |= origin;
        self.live_known.insert(h);
        h
    }

    /// Stops holding a stream: its waiting queries are answered.
    pub fn remove_live(&mut self, net: &mut impl OrdbNet<L>, h: &HashName) {
        self.lives.remove(h);
        let gone: Vec<Down<L>> = self
            .parked
            .iter()
            .filter(|(_, p)| p.query.hash_name == h.0)
            .map(|(d, _)| *d)
            .collect();
        for down in gone {
            self.parked.remove(&down);
            self.refuse(net, down, db_end_reason::UNAVAILABLE);
        }
    }

    /// The HOPS we announce a stream with: 0 at its publisher; at a
    /// follower one more than its nearest reference, so that queries for
    /// chunks still to come run toward the publisher (the one that keeps
    /// them) rather than round among followers.
    pub fn live_hops(&self, h: &HashName) -> u8 {
        if let Some(r) = self.lives.get(h).filter(|r| r.origin) {
            // A tab relaying a web address's stream is its first holder,
            // but says one hop, as a follower of the publisher would:
            // its linked tabs cannot tell it fetched the address.
            return u8::from(r.manifest.web);
        }
        self.references
            .get(h)
            .and_then(|refs| refs.iter().map(|r| r.hops).min())
            .map_or(self.info_hops, |n| n.saturating_add(1))
    }

    pub fn live(&self, h: &HashName) -> Option<&LiveRing> {
        self.lives.get(h)
    }

    /// Whether `h` is a live stream (held, or told so by DB_INFO).
    pub fn is_live(&self, h: &HashName) -> bool {
        self.live_known.contains(h)
    }

    /// Tests only: serve forged or replayed chunks.
    pub fn tamper_live(&mut self, how: Option<LiveTamper>) {
        self.live_tamper = how;
    }

    pub fn mark_live(&mut self, h: HashName) {
        if self.live_known.len() < MAX_LIVE_KNOWN {
            self.live_known.insert(h);
        }
    }

    /// Queries waiting for chunks.
    pub fn parked(&self) -> usize {
        self.parked.len()
    }

    /// A verified chunk of a stream we hold: kept, and sent to the queries
    /// that wait for it. False when it was not new.
    pub fn add_live_chunk(
        &mut self,
        net: &mut impl OrdbNet<L>,
        h: &HashName,
        chunk: Chunk,
        now: u64,
    ) -> bool {
        let Some(ring) = self.lives.get_mut(h) else {
            return false;
        };
        if !ring.insert(chunk, now) {
            return false;
        }
        let waiting: Vec<(Down<L>, DbQuery)> = self
            .parked
            .iter()
            .filter(|(_, p)| p.query.hash_name == h.0)
            .map(|(d, p)| (*d, p.query.clone()))
            .collect();
        for (down, query) in waiting {
            if let Some(seq) = self.held_for(&query) {
                self.parked.remove(&down);
                self.serve_live(net, down, query, seq);
            }
        }
        true
    }

    /// The chunk a query names, if held here.
    fn held_for(&self, query: &DbQuery) -> Option<u64> {
        let ring = self.lives.get(&HashName(query.hash_name))?;
        let seq = if query.block == LIVE_EDGE {
            ring.joiner_start()?
        } else {
            ring.resolve(query.block)?
        };
        ring.get(seq).map(|_| seq)
    }

    /// A DB_QUERY for a stream we hold.
    pub(super) fn on_live_query(
        &mut self,
        net: &mut impl OrdbNet<L>,
        down: Down<L>,
        query: DbQuery,
        now: u64,
    ) {
        let h = HashName(query.hash_name);
        let Some(ring) = self.lives.get(&h) else {
            return;
        };
        if query.block != LIVE_EDGE && u64::from(query.block) >= ring.manifest.ring() {
            return self.refuse(net, down, db_end_reason::BAD_QUERY);
        }
        if let Some(seq) = self.held_for(&query) {
            return self.serve_live(net, down, query, seq);
        }
        let made = (query.block != LIVE_EDGE)
            .then(|| ring.resolve(query.block))
            .flatten()
            .zip(ring.newest())
            .is_some_and(|(seq, newest)| seq <= newest);
        let park_ms = PARK_MS.max(ring.manifest.keep_ms());
        let relayable = query.counter < MAX_COUNTER && self.references.contains_key(&h);
        // The publisher keeps a query for a chunk to come until it comes.
        // A follower does not: two followers at the edge would each keep
        // the other's query for the chunk both wait for. It relays the
        // query toward whoever told it they hold the stream (the publisher
        // in the end); it keeps it only with nowhere to send it.
        // (A lying tab, in tests, answers everything itself.)
        if !ring.origin && relayable && self.live_tamper.is_none() {
            return self.relay(net, down, query, now);
        }
        if made {
            return self.refuse(net, down, db_end_reason::UNAVAILABLE);
        }
        let on_circuit = self.parked.keys().filter(|(c, _)| *c == down.0).count();
        if self.parked.len() >= MAX_PARKED || on_circuit >= MAX_PARKED_PER_CIRCUIT {
            self.stats.refused += 1;
            return self.refuse(net, down, db_end_reason::REFUSED);
        }
        self.parked.insert(
            down,
            Parked {
                query,
                until: now + park_ms,
            },
        );
    }

    fn serve_live(&mut self, net: &mut impl OrdbNet<L>, down: Down<L>, query: DbQuery, seq: u64) {
        let h = HashName(query.hash_name);
        let Some(ring) = self.lives.get(&h) else {
            return self.refuse(net, down, db_end_reason::UNAVAILABLE);
        };
        let replayed = (self.live_tamper == Some(LiveTamper::Replay))
            .then(|| seq.checked_sub(1).and_then(|s| ring.get(s)))
            .flatten();
        let Some(chunk) = replayed.or_else(|| ring.get(seq)) else {
            return self.refuse(net, down, db_end_reason::UNAVAILABLE);
        };
        if query.offset as usize > chunk.data.len() {
            return self.refuse(net, down, db_end_reason::BAD_QUERY);
        }
        if self.too_busy_to_serve(down.0) {
            self.stats.refused += 1;
            return self.refuse(net, down, db_end_reason::REFUSED);
        }
        let answer = DbConnected {
            manifest: query.wants_manifest().then(|| ring.manifest_bytes.clone()),
            path: Vec::new(),
            live: Some(chunk.header),
        };
        let mut data = chunk.data.to_vec();
        if self.live_tamper == Some(LiveTamper::Forge) {
            if let Some(b) = data.first_mut() {
                *b ^= 0x55;
            }
        }
        if self.serve(net, down, &query, &answer, data) {
            self.stats.live_chunks_served += 1;
        }
    }

    /// Waiting queries past their time are answered; old chunks go.
    pub(super) fn live_timeout(&mut self, net: &mut impl OrdbNet<L>, now: u64) {
        for ring in self.lives.values_mut() {
            ring.expire(now);
        }
        let late: Vec<Down<L>> = self
            .parked
            .iter()
            .filter(|(_, p)| p.until <= now)
            .map(|(d, _)| *d)
            .collect();
        for down in late {
            self.parked.remove(&down);
            self.refuse(net, down, db_end_reason::UNAVAILABLE);
        }
    }

    pub(super) fn next_live_timeout(&self) -> Option<u64> {
        let parked = self.parked.values().map(|p| p.until);
        let expiry = self.lives.values().filter_map(LiveRing::next_expiry);
        parked.chain(expiry).min()
    }

    /// A query's circuit or stream is gone.
    pub(super) fn unpark(&mut self, down: &Down<L>) -> bool {
        self.parked.remove(down).is_some()
    }

    pub(super) fn unpark_circuit(&mut self, circuit: crate::router::CircuitKey<L>) {
        self.parked.retain(|(c, _), _| *c != circuit);
    }
}
