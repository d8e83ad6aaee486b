//! Following a live stream, sans IO (docs/PROTOCOL.md "Live streams"):
//! which chunk to ask of which ORDB circuit, what to accept, and in which
//! order to hand chunks on.
//!
//! The caller opens circuits ("sources") as `wanted_sources` says, sends
//! the queries `poll_action` gives, and feeds back the answers, as for a
//! file (`schedule.rs`). The follower:
//!
//! - asks first for `LIVE_EDGE` (with the manifest): the holder answers
//!   with the chunk a joiner starts from (the seed's index M);
//! - then keeps the next `AHEAD` chunks asked, by ring index: a holder
//!   that does not have one yet holds the query until it comes, so a
//!   chunk leaves the holder as soon as it has it;
//! - accepts a chunk only if the publisher signed it, and it is the one
//!   asked (sequence number, so a chunk from an earlier turn of the ring
//!   is a replay) and not older than the window (timestamp); a source
//!   that sends anything else is dropped;
//! - hands chunks on in order; a chunk that cannot be had is skipped to
//!   the next key chunk (`gap`), and a follower left behind the window
//!   joins again at the edge.

use std::collections::{BTreeMap, VecDeque};

use super::live::{Chunk, ChunkHeader, LiveManifest, LIVE_EDGE};
use super::manifest::HashName;
use super::schedule::SourceId;
use crate::cell::ordb::{db_end_reason, DbConnected, DbQuery, WANT_MANIFEST};

/// Chunks asked ahead of the next one to hand on.
pub const AHEAD: u64 = 5;
/// Circuits kept to ORDBs.
pub const LIVE_SOURCES: usize = 3;
/// Queries on one circuit at once (they may wait at the holder).
pub const PER_SOURCE: usize = 4;
/// "Not found" answers in a row before a circuit is replaced.
pub const MAX_UNAVAILABLE: u32 = 3;
/// A chunk missed this many times is skipped when a later key chunk is
/// here; with nothing here the follower joins again at the edge.
pub const MISSES_TO_SKIP: u32 = 2;
pub const MISSES_TO_REJOIN: u32 = 4;
/// A circuit whose query waits this long for a chunk that exists (a
/// later one came elsewhere) is replaced: a tab on its path left.
pub const STALL_MS: u64 = 1_500;
/// Any query unanswered this long replaces its circuit (a publisher
/// answers "unavailable" after `PARK_MS`, 5 s).
pub const SILENT_QUERY_MS: u64 = 8_000;
/// The follower gives up after this long without a chunk.
pub const GIVE_UP_MS: u64 = 60_000;
/// How far a chunk's timestamp may lag our clock beyond the window:
/// clocks of two machines differ.
pub const MAX_SKEW_MS: u64 = 30_000;
/// Circuits replaced for not finding the stream wait this long before
/// the next, doubling to `MAX_BACKOFF_MS`.
pub const BACKOFF_MS: u64 = 1_000;
pub const MAX_BACKOFF_MS: u64 = 16_000;

/// What the follower wants done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveAction {
    Query {
        source: SourceId,
        query: DbQuery,
    },
    Drop {
        source: SourceId,
        why: &'static str,
    },
    /// The manifest checked out: the stream's type and init segment.
    Manifest(Box<LiveManifest>),
    /// The next chunk, in order; `gap` when chunks before it were skipped.
    Chunk {
        chunk: Chunk,
        gap: bool,
    },
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FollowStats {
    pub chunks: u64,
    /// Chunks whose signature did not verify.
    pub forged: u64,
    /// Signed chunks that were not the one asked, or too old.
    pub replayed: u64,
    pub skipped: u64,
    pub rejoined: u64,
    pub sources_dropped: u64,
    pub unavailable: u64,
    /// Circuits to ORDBs opened so far (set by the task that runs this).
    pub circuits: u64,
    /// The stream comes from its web address, fetched by this tab (nobody
    /// relayed it): `peer::tab::web_live`.
    pub direct: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FollowError {
    #[error("no chunk of the live stream for {0} s: it has ended, or nobody relays it")]
    Silent(u64),
}

#[derive(Debug)]
struct Query {
    /// The sequence number asked; `None` for `LIVE_EDGE`.
    seq: Option<u64>,
    sent_at: u64,
    header: Option<ChunkHeader>,
    data: Vec<u8>,
    /// The holder answered with a later chunk of the same index: we are
    /// more than two windows behind it.
    behind: bool,
}

#[derive(Debug, Default)]
struct Source {
    /// By DB_QUERY block (ring index, or `LIVE_EDGE`).
    queries: BTreeMap<u32, Query>,
    unavailable: u32,
}

pub struct LiveFollower {
    hash_name: HashName,
    manifest: Option<LiveManifest>,
    /// The next sequence number to hand on (`None` until joined).
    next: Option<u64>,
    /// The last chunk handed on: its timestamp.
    last_ts: Option<u64>,
    gap: bool,
    ready: BTreeMap<u64, Chunk>,
    asked: BTreeMap<u64, SourceId>,
    misses: BTreeMap<u64, u32>,
    /// Chunks not made yet that a holder had not either: asked again
    /// from this time on.
    not_before: BTreeMap<u64, u64>,
    sources: BTreeMap<SourceId, Source>,
    actions: VecDeque<LiveAction>,
    stats: FollowStats,
    last_chunk_at: u64,
    /// The newest chunk received (in order or not).
    newest_seen: Option<u64>,
    dropped_in_a_row: u32,
    next_source_at: u64,
    failure: Option<FollowError>,
    /// Circuits whose ORDB answered UNAVAILABLE before any manifest came.
    not_found_by: std::collections::BTreeSet<SourceId>,
}

impl LiveFollower {
    pub fn new(hash_name: HashName, now: u64) -> LiveFollower {
        LiveFollower {
            hash_name,
            manifest: None,
            next: None,
            last_ts: None,
            gap: false,
            ready: BTreeMap::new(),
            asked: BTreeMap::new(),
            misses: BTreeMap::new(),
            not_before: BTreeMap::new(),
            sources: BTreeMap::new(),
            actions: VecDeque::new(),
            stats: FollowStats::default(),
            last_chunk_at: now,
            newest_seen: None,
            dropped_in_a_row: 0,
            next_source_at: 0,
            failure: None,
            not_found_by: std::collections::BTreeSet::new(),
        }
    }

    pub fn manifest(&self) -> Option<&LiveManifest> {
        self.manifest.as_ref()
    }

    pub fn stats(&self) -> FollowStats {
        self.stats
    }

    pub fn failure(&self) -> Option<&FollowError> {
        self.failure.as_ref()
    }

    pub fn sources(&self) -> usize {
        self.sources.len()
    }

    /// Circuits whose ORDB found nobody holding the stream (before any
    /// manifest came).
    pub fn not_found_by(&self) -> usize {
        self.not_found_by.len()
    }

    pub fn poll_action(&mut self) -> Option<LiveAction> {
        self.actions.pop_front()
    }

    /// Circuits to open now, with `opening` being built.
    pub fn wanted_sources(&self, opening: usize, now: u64) -> usize {
        if now < self.next_source_at {
            return 0;
        }
        LIVE_SOURCES.saturating_sub(self.sources.len() + opening)
    }

    pub fn add_source(&mut self, source: SourceId, now: u64) {
        self.sources.insert(source, Source::default());
        self.assign(now);
    }

    pub fn source_lost(&mut self, source: SourceId, now: u64) {
        if let Some(s) = self.sources.remove(&source) {
            self.release(&s);
        }
        self.assign(now);
    }

    fn release(&mut self, s: &Source) {
        for q in s.queries.values() {
            if let Some(seq) = q.seq {
                self.asked.remove(&seq);
            }
        }
    }

    fn drop_source(&mut self, source: SourceId, why: &'static str, now: u64) {
        if let Some(s) = self.sources.remove(&source) {
            self.stats.sources_dropped += 1;
            self.release(&s);
            self.actions.push_back(LiveAction::Drop { source, why });
            if why == NOT_FOUND {
                self.dropped_in_a_row += 1;
                if let Some(beyond) = self.dropped_in_a_row.checked_sub(LIVE_SOURCES as u32) {
                    self.next_source_at = now + (BACKOFF_MS << beyond.min(4)).min(MAX_BACKOFF_MS);
                }
            }
        }
    }

    /// The answer's head for the query `block` on `source`: the manifest
    /// when asked, and the chunk's signed header.
    pub fn on_connected(&mut self, source: SourceId, block: u32, answer: DbConnected, now: u64) {
        if self.manifest.is_none() {
            match answer
                .manifest
                .as_deref()
                .map(|b| LiveManifest::decode_for(b, &self.hash_name))
            {
                Some(Ok(m)) => {
                    self.actions
                        .push_back(LiveAction::Manifest(Box::new(m.clone())));
                    self.manifest = Some(m);
                }
                _ => return self.drop_source(source, "its answer had no valid live manifest", now),
            }
        }
        let Some(m) = &self.manifest else {
            return;
        };
        let Some(q) = self
            .sources
            .get_mut(&source)
            .and_then(|s| s.queries.get_mut(&block))
        else {
            return;
        };
        let Some(header) = answer.live else {
            return self.drop_source(source, "its answer had no chunk header", now);
        };
        // A later chunk than asked: the holder is two windows or more ahead
        // of us (a publisher cannot be made to sign a chunk before it
        // exists, so this is where the edge is).
        q.behind = q.seq.is_some_and(|s| header.seq > s);
        let expected = match q.seq {
            Some(seq) => header.seq == seq || q.behind,
            // A joiner's start: a key chunk not behind what we handed on.
            None => header.is_key() && self.next.is_none_or(|n| header.seq >= n),
        };
        let too_old = header.timestamp_ms < m.start_ms
            || header.timestamp_ms + m.keep_ms() + MAX_SKEW_MS < now
            || self.last_ts.is_some_and(|t| {
                header.timestamp_ms < t && self.next.is_some_and(|n| header.seq >= n)
            });
        if !expected || too_old {
            self.stats.replayed += 1;
            return self.drop_source(source, "it sent a chunk other than the one asked", now);
        }
        q.header = Some(header);
    }

    pub fn on_data(&mut self, source: SourceId, block: u32, data: &[u8], now: u64) {
        let Some(q) = self
            .sources
            .get_mut(&source)
            .and_then(|s| s.queries.get_mut(&block))
        else {
            return;
        };
        q.data.extend_from_slice(data);
        if q.header.is_none_or(|h| q.data.len() > h.len as usize) {
            self.stats.forged += 1;
            self.drop_source(source, "it sent more than the chunk holds", now);
        }
    }

    pub fn on_end(&mut self, source: SourceId, block: u32, reason: u8, now: u64) {
        let Some(s) = self.sources.get_mut(&source) else {
            return;
        };
        let Some(q) = s.queries.remove(&block) else {
            return;
        };
        if let Some(seq) = q.seq {
            self.asked.remove(&seq);
        }
        if reason == db_end_reason::FINISHED {
            let Some(header) = q.header else {
                return self.drop_source(source, "it ended a chunk it never began", now);
            };
            let good = self
                .manifest
                .as_ref()
                .is_some_and(|m| m.check_chunk(&self.hash_name, &header, &q.data));
            if !good {
                self.stats.forged += 1;
                return self.drop_source(source, "it sent a chunk that failed its signature", now);
            }
            s.unavailable = 0;
            self.dropped_in_a_row = 0;
            self.newest_seen = Some(self.newest_seen.map_or(header.seq, |n| n.max(header.seq)));
            self.misses.remove(&header.seq);
            if q.behind && self.next.is_some_and(|n| header.seq < n) {
                // We went past it meanwhile.
                self.assign(now);
                return;
            }
            if q.behind {
                self.stats.rejoined += 1;
                self.ready.clear();
                self.misses.clear();
                self.gap = true;
                self.next = None;
                if !header.is_key() {
                    // Join again at the edge.
                    self.deliver(now);
                    self.assign(now);
                    return;
                }
            }
            if q.seq.is_none() || q.behind {
                // Joined: from here on, in order.
                if self.next.is_some() {
                    self.gap = true;
                }
                self.next = Some(header.seq);
                self.ready.retain(|&s, _| s >= header.seq);
            }
            if self.next.is_some_and(|n| header.seq >= n) {
                self.ready.insert(
                    header.seq,
                    Chunk {
                        header,
                        data: q.data.into(),
                    },
                );
            }
            self.deliver(now);
        } else {
            if q.header.is_none()
                && matches!(
                    reason,
                    db_end_reason::UNAVAILABLE | db_end_reason::REFUSED | db_end_reason::BAD_QUERY
                )
            {
                self.stats.unavailable += 1;
                if reason == db_end_reason::UNAVAILABLE && self.manifest.is_none() {
                    self.not_found_by.insert(source);
                }
                let exists = q
                    .seq
                    .zip(self.newest_seen)
                    .is_some_and(|(seq, newest)| seq <= newest);
                match q.seq {
                    // Not made yet, and the publisher's wait ran out (or a
                    // path to it failed): ask again a little later, without
                    // blaming the circuit.
                    Some(seq) if !exists => {
                        let pause = self
                            .manifest
                            .as_ref()
                            .map_or(250, |m| u64::from(m.chunk_ms));
                        self.not_before.insert(seq, now + pause);
                    }
                    _ => {
                        s.unavailable += 1;
                        if let Some(seq) = q.seq {
                            *self.misses.entry(seq).or_default() += 1;
                        }
                        if s.unavailable >= MAX_UNAVAILABLE {
                            self.drop_source(source, NOT_FOUND, now);
                        }
                    }
                }
            }
            self.skip_or_rejoin();
            self.deliver(now);
        }
        self.assign(now);
    }

    /// Hands on what is ready, in order.
    fn deliver(&mut self, now: u64) {
        while let Some(n) = self.next {
            let Some(chunk) = self.ready.remove(&n) else {
                break;
            };
            self.next = Some(n + 1);
            self.last_ts = Some(chunk.header.timestamp_ms);
            self.last_chunk_at = now;
            self.stats.chunks += 1;
            let gap = std::mem::take(&mut self.gap);
            self.actions.push_back(LiveAction::Chunk { chunk, gap });
        }
    }

    /// The next chunk cannot be had: go on from a later key chunk we have,
    /// or join again at the edge when we have none.
    fn skip_or_rejoin(&mut self) {
        let Some(n) = self.next else {
            return;
        };
        let missed = self.misses.get(&n).copied().unwrap_or(0);
        if missed >= MISSES_TO_SKIP {
            if let Some((&k, _)) = self.ready.iter().find(|(_, c)| c.header.is_key()) {
                self.stats.skipped += k - n;
                self.next = Some(k);
                self.gap = true;
                self.misses.retain(|&s, _| s > k);
                return;
            }
        }
        if missed >= MISSES_TO_REJOIN {
            self.stats.rejoined += 1;
            self.next = None;
            self.gap = true;
            self.ready.clear();
            self.misses.clear();
        }
    }

    /// Time passed: stalled circuits are replaced; a follower that hears
    /// nothing gives up.
    pub fn tick(&mut self, now: u64) {
        if now.saturating_sub(self.last_chunk_at) >= GIVE_UP_MS {
            self.failure = Some(FollowError::Silent(GIVE_UP_MS / 1000));
            return;
        }
        let stalled: Vec<SourceId> = self
            .sources
            .iter()
            .filter(|(_, s)| s.queries.values().any(|q| now >= self.stall_at(q)))
            .map(|(id, _)| *id)
            .collect();
        for id in stalled {
            self.drop_source(id, "it stalled", now);
        }
        self.assign(now);
    }

    /// When a query counts as stalled.
    fn stall_at(&self, q: &Query) -> u64 {
        // Not begun though the chunk exists (a later one came); once
        // flowing, the stream's own flow control paces it.
        let exists = q
            .seq
            .zip(self.newest_seen)
            .is_some_and(|(s, newest)| s < newest);
        if q.header.is_none() && exists {
            q.sent_at + STALL_MS
        } else {
            q.sent_at + SILENT_QUERY_MS
        }
    }

    pub fn next_tick(&self, now: u64) -> Option<u64> {
        let backoff = (self.next_source_at > now).then_some(self.next_source_at);
        let stall = self
            .sources
            .values()
            .flat_map(|s| s.queries.values())
            .map(|q| self.stall_at(q))
            .chain(self.not_before.values().copied())
            .min();
        Some(
            (self.last_chunk_at + GIVE_UP_MS)
                .min(backoff.unwrap_or(u64::MAX))
                .min(stall.unwrap_or(u64::MAX))
                .max(now + 1),
        )
    }

    fn send(&mut self, source: SourceId, seq: Option<u64>, now: u64) {
        let Some(s) = self.sources.get_mut(&source) else {
            return;
        };
        let (block, flags) = match (seq, &self.manifest) {
            (Some(seq), Some(m)) => (m.index_of(seq), 0),
            (None, Some(_)) => (LIVE_EDGE, 0),
            (_, None) => (LIVE_EDGE, WANT_MANIFEST),
        };
        s.queries.insert(
            block,
            Query {
                seq,
                sent_at: now,
                header: None,
                data: Vec::new(),
                behind: false,
            },
        );
        if let Some(seq) = seq {
            self.asked.insert(seq, source);
        }
        self.actions.push_back(LiveAction::Query {
            source,
            query: DbQuery {
                hash_name: self.hash_name.0,
                block,
                offset: 0,
                counter: 0,
                flags,
            },
        });
    }

    /// The source to ask next: the fewest misses, then the fewest queries.
    fn best_source(&self, block: u32) -> Option<SourceId> {
        self.sources
            .iter()
            .filter(|(_, s)| s.queries.len() < PER_SOURCE && !s.queries.contains_key(&block))
            .min_by_key(|(id, s)| (s.unavailable, s.queries.len(), **id))
            .map(|(id, _)| *id)
    }

    fn assign(&mut self, now: u64) {
        let Some(next) = self.next else {
            let edge_asked = self
                .sources
                .values()
                .any(|s| s.queries.contains_key(&LIVE_EDGE));
            if !edge_asked {
                if let Some(source) = self.best_source(LIVE_EDGE) {
                    self.send(source, None, now);
                }
            }
            return;
        };
        let Some(m) = &self.manifest else {
            return;
        };
        let m = m.clone();
        self.not_before.retain(|&s, at| s >= next && *at > now);
        self.misses.retain(|&s, _| s >= next);
        for seq in next..next + AHEAD {
            if self.ready.contains_key(&seq)
                || self.asked.contains_key(&seq)
                || self.not_before.contains_key(&seq)
            {
                continue;
            }
            let Some(source) = self.best_source(m.index_of(seq)) else {
                return;
            };
            self.send(source, Some(seq), now);
        }
    }

    /// When the query for `seq` went out, if it is in flight (tests).
    #[cfg(test)]
    fn asked_at(&self, seq: u64) -> Option<u64> {
        let source = self.asked.get(&seq)?;
        let m = self.manifest.as_ref()?;
        Some(
            self.sources
                .get(source)?
                .queries
                .get(&m.index_of(seq))?
                .sent_at,
        )
    }
}

const NOT_FOUND: &str = "it could not find the stream";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::live::{self, LiveRing, KEY};

    /// A holder answering the follower's queries from a ring.
    fn answer(
        f: &mut LiveFollower,
        ring: &LiveRing,
        source: SourceId,
        q: &DbQuery,
        now: u64,
        tamper: impl Fn(&mut ChunkHeader, &mut Vec<u8>),
    ) -> bool {
        let seq = if q.block == LIVE_EDGE {
            ring.joiner_start()
        } else {
            ring.resolve(q.block)
        };
        let Some(c) = seq.and_then(|s| ring.get(s)) else {
            return false;
        };
        let mut header = c.header;
        let mut data = c.data.to_vec();
        tamper(&mut header, &mut data);
        let connected = DbConnected {
            manifest: q.wants_manifest().then(|| ring.manifest_bytes.clone()),
            path: vec![],
            live: Some(header),
        };
        f.on_connected(source, q.block, connected, now);
        f.on_data(source, q.block, &data, now);
        f.on_end(source, q.block, db_end_reason::FINISHED, now);
        true
    }

    fn queries(f: &mut LiveFollower) -> (Vec<(SourceId, DbQuery)>, Vec<LiveAction>) {
        let mut q = Vec::new();
        let mut other = Vec::new();
        while let Some(a) = f.poll_action() {
            match a {
                LiveAction::Query { source, query } => q.push((source, query)),
                a => other.push(a),
            }
        }
        (q, other)
    }

    fn delivered(actions: &[LiveAction]) -> Vec<(u64, bool)> {
        actions
            .iter()
            .filter_map(|a| match a {
                LiveAction::Chunk { chunk, gap } => Some((chunk.header.seq, *gap)),
                _ => None,
            })
            .collect()
    }

    fn holder(upto: u64) -> LiveRing {
        let m = live::tests::manifest();
        let mut ring = LiveRing::new(m.clone());
        for seq in 0..=upto {
            let flags = if seq % 4 == 0 { KEY } else { 0 };
            ring.insert(live::tests::chunk(&m, seq, flags), 1_000 + seq * 250);
        }
        ring
    }

    #[test]
    fn a_joiner_starts_near_the_edge_then_follows_in_order() {
        let mut ring = holder(39);
        let h = ring.hash_name;
        let now = 11_000;
        let mut f = LiveFollower::new(h, now);
        f.add_source(1, now);
        f.add_source(2, now);
        let (q, _) = queries(&mut f);
        assert_eq!(q.len(), 1, "one edge query first");
        assert_eq!(q[0].1.block, LIVE_EDGE);
        assert!(q[0].1.wants_manifest());
        assert!(answer(&mut f, &ring, q[0].0, &q[0].1, now, |_, _| {}));
        let (q, other) = queries(&mut f);
        assert!(matches!(other[0], LiveAction::Manifest(_)));
        assert_eq!(
            delivered(&other),
            vec![(32, false)],
            "index M, on a key chunk"
        );
        assert_eq!(q.len() as u64, AHEAD, "the next chunks asked at once");
        // 33..=39 are held; 40.. come later and wait at the holder.
        let mut got = Vec::new();
        let mut pending = q;
        for round in 0..6 {
            let mut later = Vec::new();
            for (s, query) in pending {
                if !answer(&mut f, &ring, s, &query, now, |_, _| {}) {
                    later.push((s, query));
                }
            }
            let (q, other) = queries(&mut f);
            got.extend(delivered(&other));
            pending = later.into_iter().chain(q).collect();
            let next = 40 + round;
            let m = ring.manifest.clone();
            ring.insert(live::tests::chunk(&m, next, 0), now);
        }
        let seqs: Vec<u64> = got.iter().map(|(s, _)| *s).collect();
        assert_eq!(seqs, (33..=44).collect::<Vec<_>>());
        assert!(got.iter().all(|(_, gap)| !gap));
        assert!(f.asked_at(45).is_some(), "the chunk made last is asked");
        assert!(
            f.asked_at(49).is_some() && f.asked_at(50).is_none(),
            "and those to come, AHEAD of the next"
        );
    }

    #[test]
    fn forged_and_replayed_chunks_are_refused_and_their_sources_dropped() {
        let ring = holder(39);
        let h = ring.hash_name;
        let now = 11_000;
        let mut f = LiveFollower::new(h, now);
        f.add_source(1, now);
        let (q, _) = queries(&mut f);
        answer(&mut f, &ring, 1, &q[0].1, now, |_, _| {});
        let (q, _) = queries(&mut f);
        // Source 1 now has 33..=36 asked (PER_SOURCE); answer 33 forged.
        let q33 = q.iter().find(|(_, q)| q.block == 13).unwrap().1.clone();
        answer(&mut f, &ring, 1, &q33, now, |_, d| d[0] ^= 1);
        let (_, other) = queries(&mut f);
        assert!(other.contains(&LiveAction::Drop {
            source: 1,
            why: "it sent a chunk that failed its signature"
        }));
        assert_eq!(f.stats().forged, 1);
        // Source 2 answers index 13 with chunk 13 (the ring's earlier
        // turn): signed, but a replay.
        f.add_source(2, now);
        let (q, _) = queries(&mut f);
        let q33 = q.iter().find(|(_, q)| q.block == 13).unwrap();
        let old = live::tests::chunk(&ring.manifest, 13, 0);
        f.on_connected(
            2,
            q33.1.block,
            DbConnected {
                manifest: None,
                path: vec![],
                live: Some(old.header),
            },
            now,
        );
        let (_, other) = queries(&mut f);
        assert!(other.contains(&LiveAction::Drop {
            source: 2,
            why: "it sent a chunk other than the one asked"
        }));
        assert_eq!(f.stats().replayed, 1);
        // An old edge chunk (from more than the window and the skew ago)
        // is refused too.
        let mut late = LiveFollower::new(h, now);
        late.add_source(3, now);
        let (q, _) = queries(&mut late);
        answer(&mut late, &ring, 3, &q[0].1, 200_000, |_, _| {});
        assert_eq!(late.stats().replayed, 1);
    }

    #[test]
    fn a_chunk_nobody_has_is_skipped_to_the_next_key_chunk() {
        let ring = holder(39);
        let h = ring.hash_name;
        let mut now = 11_000;
        let mut f = LiveFollower::new(h, now);
        for s in 1..=3 {
            f.add_source(s, now);
        }
        let (q, _) = queries(&mut f);
        answer(&mut f, &ring, q[0].0, &q[0].1, now, |_, _| {});
        // 33 is unavailable everywhere; the others come.
        let mut skipped_to = None;
        for _ in 0..10 {
            // A chunk not made yet is asked again a chunk's time later.
            now += 300;
            f.tick(now);
            let (q, other) = queries(&mut f);
            if let Some((s, _)) = delivered(&other).into_iter().find(|(_, gap)| *gap) {
                skipped_to = Some(s);
                break;
            }
            for (s, query) in q {
                if query.block == 13 {
                    f.on_end(s, query.block, db_end_reason::UNAVAILABLE, now);
                } else {
                    answer(&mut f, &ring, s, &query, now, |_, _| {});
                }
            }
        }
        assert_eq!(skipped_to, Some(36), "on to the next key chunk");
        assert_eq!(f.stats().skipped, 3);
    }

    #[test]
    fn a_silent_stream_ends_the_follower() {
        let mut f = LiveFollower::new(HashName([1; 20]), 0);
        f.add_source(1, 0);
        f.tick(GIVE_UP_MS - 1);
        assert!(f.failure().is_none());
        f.tick(GIVE_UP_MS);
        assert!(matches!(f.failure(), Some(FollowError::Silent(60))));
    }
}
