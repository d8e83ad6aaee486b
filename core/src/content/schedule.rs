//! The download scheduler, sans IO: which block to ask of which ORDB
//! circuit, and when (docs/PROTOCOL.md "ORDB: downloading").
//!
//! The caller opens circuits to ORDBs ("sources"), sends the queries this
//! scheduler asks for, and feeds back what came: the DB_CONNECTED answer,
//! the bytes of each block, the DB_END. The scheduler:
//!
//! - keeps `WINDOW` queries (five blocks, ~500 kB) in flight, at most
//!   `PER_SOURCE` on one circuit (the first circuit starts with the
//!   `FIRST_ASKED` blocks asked before the manifest is known);
//! - measures each circuit's rate (bytes per second while a block flows)
//!   and delay (query to first byte), and gives the next query to the
//!   circuit expected to finish it first (what it still has queued, at its
//!   rate, plus its delay), so a fast circuit gets its next query before
//!   its pipe runs dry;
//! - replaces a circuit that stalls (`STALL_MS` without a byte while it has
//!   queries) or runs at under a quarter of the best one's rate, and one
//!   that twice could not find the file;
//! - resumes a block that stopped (DB_END other than FINISHED, a circuit
//!   gone) from the bytes it has, on another circuit;
//! - checks each block against the manifest's Merkle root before it is
//!   stored; a bad block is fetched again elsewhere and every circuit that
//!   sent bytes of it is dropped;
//! - after a seek, asks only the blocks the player needs to play from the
//!   target (`focus`) until it plays: the rest of the file would take
//!   bandwidth and CPU from them.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::manifest::{HashName, Manifest};
use super::merkle::Hash;
use crate::cell::ordb::{db_end_reason, DbConnected, DbQuery, WANT_MANIFEST};

/// A circuit to an ORDB, named by the caller.
pub type SourceId = u64;

/// Queries in flight at once: five blocks, ~500 kB.
pub const WINDOW: usize = 5;
/// Queries in flight on one circuit.
pub const PER_SOURCE: usize = 2;
/// Circuits kept open: one more than `WINDOW`, a spare for the one that
/// is dropped.
pub const SOURCES: usize = WINDOW + 1;
/// A circuit with queries and no byte for this long is replaced.
pub const STALL_MS: u64 = 10_000;
/// A circuit slower than the best one by this factor is replaced (once
/// both have finished a block).
pub const SLOW_FACTOR: u64 = 4;
/// "Not found" answers a circuit may give before it is replaced.
pub const MAX_UNAVAILABLE: u32 = 2;
/// The download gives up after this many "not found" answers in a row
/// *and* `GIVE_UP_MS` without a byte of the file: ORDBs that lost their
/// references learn new ones as links form again.
pub const GIVE_UP_UNAVAILABLE: u32 = 24;
pub const GIVE_UP_MS: u64 = 60_000;
/// Once `SOURCES` circuits in a row were dropped for not finding the
/// file, new ones wait this long, doubling with each further drop up to
/// `MAX_NOT_FOUND_BACKOFF_MS`: a file nobody holds costs a few circuits a
/// minute, not hundreds.
pub const NOT_FOUND_BACKOFF_MS: u64 = 1_000;
pub const MAX_NOT_FOUND_BACKOFF_MS: u64 = 16_000;
/// Blocks asked at once on the first circuit, before the file's size is
/// known: each query wants the manifest, so whichever answer comes first
/// brings it, and the blocks after the first do not wait a round trip for
/// it. A video's first frame needs about this much (its headers and first
/// keyframe: ~280 kB for 4 Mbit/s VP9). Asking past a short file's end
/// costs a refusal, counted against nobody.
pub const FIRST_ASKED: u32 = 3;
/// A focus (`Scheduler::focus`) the player does not lift ends by itself
/// after this long: the download of the whole file never waits on it.
pub const FOCUS_MS: u64 = 3_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockState {
    Missing,
    Asked(SourceId),
    /// Verified, handed to the store.
    Storing,
    Have,
}

/// Bytes of a block received so far (kept across circuits: a block that
/// stopped resumes from here).
#[derive(Debug, Default)]
struct Partial {
    data: Vec<u8>,
    path: Option<Vec<Hash>>,
    /// Circuits that sent bytes of it (blamed if it is bad).
    senders: BTreeSet<SourceId>,
}

#[derive(Debug)]
struct Query {
    block: u32,
    sent_at: u64,
    first_byte_at: Option<u64>,
    /// Bytes the block still lacks when asked.
    expected: u64,
    received: u64,
    /// Asked before the manifest said the block exists (`FIRST_ASKED`):
    /// a refusal is no sign against the circuit.
    ahead_of_manifest: bool,
}

#[derive(Debug, Default)]
struct Source {
    queries: VecDeque<Query>,
    /// Bytes per second, smoothed; `None` until a block finished.
    rate: Option<u64>,
    /// Query to first byte, ms, smoothed; until a block finished, that of
    /// its first answer.
    delay: Option<u64>,
    last_byte_at: u64,
    unavailable: u32,
    blocks: u64,
}

/// What the scheduler wants done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send this DB_QUERY on the source's circuit.
    Query { source: SourceId, query: DbQuery },
    /// Close the source's circuit (the caller opens another).
    Drop { source: SourceId, why: &'static str },
    /// End the query for `block` on the source's circuit (DB_END): the
    /// player moved away from it. What came of it is kept; the block is
    /// asked again later from where it stopped.
    Cancel { source: SourceId, block: u32 },
    /// A verified block: store it (data and audit path), then `stored`.
    Store {
        block: u32,
        data: Vec<u8>,
        path: Vec<Hash>,
    },
}

/// Figures for the page and the simulation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScheduleStats {
    pub blocks_bad: u64,
    /// Bytes received and thrown away (bad blocks).
    pub bytes_wasted: u64,
    pub sources_dropped: u64,
    pub unavailable: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("no ORDB could find this file ({0} answers of \"unavailable\")")]
    NotFound(u32),
    #[error("the file is {size} bytes, more than the {limit} this download accepts")]
    TooLarge { size: u64, limit: u64 },
    /// The hash_name names a live stream (`follow_live` plays it).
    #[error("this is a live stream, not a file: play it with peer.stream")]
    IsLive,
}

pub struct Scheduler {
    hash_name: HashName,
    manifest: Option<Manifest>,
    blocks: Vec<BlockState>,
    partial: BTreeMap<u32, Partial>,
    sources: BTreeMap<SourceId, Source>,
    actions: VecDeque<Action>,
    stats: ScheduleStats,
    /// "Not found" answers since the last byte of the file.
    unavailable_run: u32,
    /// Circuits dropped in a row for not finding the file, and when the
    /// next may be opened.
    not_found_drops: u32,
    next_source_at: u64,
    /// Largest file accepted (`with_max_size`).
    max_size: u64,
    failure: Option<ScheduleError>,
    /// When the last byte of the file came (or the download began).
    last_byte_at: Option<u64>,
    /// Missing blocks from this one on are asked first (a player's
    /// position), then those before it.
    priority: u32,
    /// Blocks a player needs soon besides those from `priority` on (an
    /// index after the media): asked before them, without moving it.
    also: BTreeSet<u32>,
    /// While a seek waits to play: nothing past this block is asked.
    focus: Option<Focus>,
}

/// The end of a seek's blocks, and when the focus ends by itself.
#[derive(Debug, Clone, Copy)]
struct Focus {
    last: u32,
    until: u64,
}

/// What a circuit is taken to carry, bytes a second, until it finished a
/// block (a loaded 3-hop circuit through tabs on one machine).
pub const ASSUMED_RATE: u64 = 500_000;
/// What a circuit that has not answered yet is taken to need before its
/// first byte, ms: its ORDB may still have to find the file, where one that
/// answered already knows the way.
pub const UNANSWERED_DELAY_MS: u64 = 500;

/// Blocks `want_also` keeps at once.
pub const MAX_ALSO: usize = 16;

impl Scheduler {
    /// A download of `hash_name`; `manifest` and `have` when resuming
    /// (blocks already stored).
    pub fn new(hash_name: HashName, manifest: Option<Manifest>, have: &BTreeSet<u32>) -> Self {
        let mut s = Scheduler {
            hash_name,
            manifest: None,
            blocks: Vec::new(),
            partial: BTreeMap::new(),
            sources: BTreeMap::new(),
            actions: VecDeque::new(),
            stats: ScheduleStats::default(),
            unavailable_run: 0,
            not_found_drops: 0,
            next_source_at: 0,
            last_byte_at: None,
            max_size: u64::MAX,
            failure: None,
            priority: 0,
            also: BTreeSet::new(),
            focus: None,
        };
        if let Some(m) = manifest {
            s.set_manifest(m, have);
        }
        s
    }

    fn set_manifest(&mut self, m: Manifest, have: &BTreeSet<u32>) {
        let n = m.blocks() as usize;
        self.blocks = (0..n)
            .map(|i| {
                if have.contains(&(i as u32)) {
                    BlockState::Have
                } else {
                    BlockState::Missing
                }
            })
            .collect();
        self.manifest = Some(m);
    }

    /// Refuses a file larger than `limit` bytes when its manifest comes
    /// (before anything is allocated for its blocks).
    pub fn with_max_size(mut self, limit: u64) -> Self {
        self.max_size = limit;
        self
    }

    /// Why the download cannot go on, when it cannot.
    pub fn failure(&self) -> Option<&ScheduleError> {
        self.failure.as_ref()
    }

    pub fn manifest(&self) -> Option<&Manifest> {
        self.manifest.as_ref()
    }

    pub fn stats(&self) -> ScheduleStats {
        self.stats
    }

    pub fn is_complete(&self) -> bool {
        self.manifest.is_some() && self.blocks.iter().all(|b| *b == BlockState::Have)
    }

    /// Blocks stored so far.
    pub fn have(&self) -> impl Iterator<Item = u32> + '_ {
        self.blocks
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == BlockState::Have)
            .map(|(i, _)| i as u32)
    }

    /// Bytes received (stored blocks, and what has come of the others),
    /// and the file's size once known.
    pub fn progress(&self) -> (u64, Option<u64>) {
        let Some(m) = &self.manifest else {
            return (0, None);
        };
        let stored: u64 = self
            .blocks
            .iter()
            .enumerate()
            .filter(|(_, b)| matches!(b, BlockState::Have | BlockState::Storing))
            .map(|(i, _)| u64::from(m.block_size(i as u64)))
            .sum();
        let partial: u64 = self.partial.values().map(|p| p.data.len() as u64).sum();
        (stored + partial, Some(m.size))
    }

    pub fn sources(&self) -> usize {
        self.sources.len()
    }

    /// Circuits to open now, given `opening` being built.
    pub fn wanted_sources(&self, opening: usize, now: u64) -> usize {
        if self.is_complete() || now < self.next_source_at {
            return 0;
        }
        let wanted = SOURCES.saturating_sub(self.sources.len() + opening);
        if self.not_found_drops >= SOURCES as u32 {
            // Backing off: one new circuit at a time.
            return wanted.min(1).saturating_sub(opening);
        }
        wanted
    }

    /// Asks for block `block` and those after it first (a player needs
    /// them next). The window becomes the first `WINDOW` blocks not held,
    /// in the order they are asked (`next_missing`'s); queries in flight
    /// for blocks outside it end (`Action::Cancel`, their bytes kept): a
    /// seek's blocks get the circuits to themselves at once, while a
    /// position that moved on by a block keeps what is in flight.
    pub fn prioritize(&mut self, block: u32, now: u64) {
        if self.priority == block {
            return;
        }
        self.priority = block;
        self.cancel_outside_window(now);
    }

    /// Asks for blocks `from..=last` only (what a player needs to play
    /// after a seek), then nothing more until `unfocus`, another focus, or
    /// `FOCUS_MS`: on a slow link or CPU, the rest of the file would hold
    /// them back. Queries in flight outside them end, as for `prioritize`.
    pub fn focus(&mut self, from: u32, last: u32, now: u64) {
        self.priority = from;
        self.focus = Some(Focus {
            last: last.max(from),
            until: now.saturating_add(FOCUS_MS),
        });
        self.cancel_outside_window(now);
    }

    /// The player plays again: the rest of the file is asked for.
    pub fn unfocus(&mut self, now: u64) {
        if self.focus.take().is_some() {
            self.assign(now);
        }
    }

    fn cancel_outside_window(&mut self, now: u64) {
        let window: BTreeSet<u32> = self.in_order().take(WINDOW).collect();
        let away: Vec<(SourceId, u32)> = self
            .sources
            .iter()
            .flat_map(|(id, s)| s.queries.iter().map(move |q| (*id, q.block)))
            .filter(|(_, b)| !window.contains(b) && !self.also.contains(b))
            .collect();
        for (source, block) in away {
            self.cancel(source, block);
        }
        self.assign(now);
    }

    /// The blocks not held, in the order they are asked: those wanted
    /// besides, then from `priority` on, then from the start (during a
    /// focus, only up to its end).
    fn in_order(&self) -> impl Iterator<Item = u32> + '_ {
        let n = u32::try_from(self.blocks.len()).unwrap_or(u32::MAX);
        let from = self.priority.min(n);
        let (to, wrap) = match self.focus {
            Some(f) => (f.last.saturating_add(1).clamp(from, n), 0),
            None => (n, from),
        };
        let not_held = |b: &u32| {
            matches!(
                self.blocks.get(*b as usize),
                Some(BlockState::Missing | BlockState::Asked(_))
            )
        };
        self.also.iter().copied().filter(not_held).chain(
            (from..to)
                .chain(0..wrap)
                .filter(move |b| !self.also.contains(b) && not_held(b)),
        )
    }

    /// Ends the query for `block` on `source`; the block is asked again
    /// later, from what came of it.
    fn cancel(&mut self, source: SourceId, block: u32) {
        if let Some(s) = self.sources.get_mut(&source) {
            s.queries.retain(|q| q.block != block);
        }
        self.release(block);
        self.actions.push_back(Action::Cancel { source, block });
    }

    /// Asks for `blocks` before anything else, without moving the
    /// priority (a player's index at the end of the file, while the start
    /// plays). At most `MAX_ALSO` wait at once.
    pub fn want_also(&mut self, blocks: impl IntoIterator<Item = u32>, now: u64) {
        for b in blocks {
            if self.also.len() >= MAX_ALSO {
                break;
            }
            if matches!(self.blocks.get(b as usize), Some(BlockState::Missing)) {
                self.also.insert(b);
            }
        }
        self.assign(now);
    }

    /// The next block to ask for: a block wanted besides, else the first
    /// missing one from `priority` on, else the first missing one.
    fn next_missing(&self) -> Option<u32> {
        self.in_order()
            .find(|b| matches!(self.blocks.get(*b as usize), Some(BlockState::Missing)))
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// A circuit to an ORDB is ready.
    pub fn add_source(&mut self, source: SourceId, now: u64) {
        self.last_byte_at.get_or_insert(now);
        self.sources.insert(
            source,
            Source {
                last_byte_at: now,
                ..Default::default()
            },
        );
        self.assign(now);
    }

    /// The circuit is gone: its blocks go back to be asked elsewhere, from
    /// what they have.
    pub fn source_lost(&mut self, source: SourceId, now: u64) {
        if let Some(s) = self.sources.remove(&source) {
            for q in s.queries {
                self.release(q.block);
            }
        }
        self.assign(now);
    }

    fn release(&mut self, block: u32) {
        if let Some(b) = self.blocks.get_mut(block as usize) {
            if matches!(b, BlockState::Asked(_)) {
                *b = BlockState::Missing;
            }
        }
    }

    fn drop_source(&mut self, source: SourceId, why: &'static str) {
        if let Some(s) = self.sources.remove(&source) {
            self.stats.sources_dropped += 1;
            for q in s.queries {
                self.release(q.block);
            }
            self.actions.push_back(Action::Drop { source, why });
        }
    }

    /// The answer to the query for `block` on `source`. A manifest that
    /// is not the one the hash_name names, or an answer without the audit
    /// path the block needs, drops the source.
    pub fn on_connected(&mut self, source: SourceId, block: u32, answer: DbConnected, now: u64) {
        let asked = |s: &Source| s.queries.iter().any(|q| q.block == block);
        if !self.sources.get(&source).is_some_and(asked) {
            // Not a query of ours (any more).
            return;
        }
        if self.manifest.is_none() {
            let m = answer
                .manifest
                .as_deref()
                .map(|b| Manifest::decode_for(b, &self.hash_name));
            match m {
                Some(Ok(m)) if m.size > self.max_size => {
                    self.failure = Some(ScheduleError::TooLarge {
                        size: m.size,
                        limit: self.max_size,
                    });
                    return;
                }
                Some(Ok(m)) => self.set_manifest(m, &BTreeSet::new()),
                Some(Err(_))
                    if answer.manifest.as_deref().is_some_and(|b| {
                        super::live::LiveManifest::decode_for(b, &self.hash_name).is_ok()
                    }) =>
                {
                    self.failure = Some(ScheduleError::IsLive);
                    return;
                }
                _ => return self.drop_source(source, "its answer had no valid manifest"),
            }
            self.place_first_asked();
            if !self.sources.get(&source).is_some_and(asked) {
                // Past the file's end: that query ended.
                self.assign(now);
                return;
            }
        }
        self.answered(source, block, now);
        let p = self.partial.entry(block).or_default();
        p.path = Some(answer.path);
        self.assign(now);
    }

    /// The manifest came: the queries asked before it (`FIRST_ASKED`) hold
    /// their blocks, and those past the file's end are ended.
    fn place_first_asked(&mut self) {
        let n = self.blocks.len() as u64;
        let mut past_end = Vec::new();
        let manifest = self.manifest.as_ref();
        for (id, s) in &mut self.sources {
            for q in &mut s.queries {
                q.ahead_of_manifest = false;
                match self.blocks.get_mut(q.block as usize) {
                    Some(b) => {
                        *b = BlockState::Asked(*id);
                        // Counted in the circuit's queue from now on (`eta`).
                        q.expected =
                            manifest.map_or(0, |m| m.block_size(u64::from(q.block)).into());
                    }
                    None => past_end.push((*id, q.block)),
                }
            }
        }
        for (source, block) in past_end {
            debug_assert!(u64::from(block) >= n);
            self.cancel(source, block);
        }
    }

    /// The first answer to the query for `block` on `source`: the
    /// circuit's delay is known from then on.
    fn answered(&mut self, source: SourceId, block: u32, now: u64) {
        let Some(s) = self.sources.get_mut(&source) else {
            return;
        };
        let Some(q) = s.queries.iter_mut().find(|q| q.block == block) else {
            return;
        };
        if q.first_byte_at.is_none() {
            q.first_byte_at = Some(now);
            s.delay.get_or_insert(now.saturating_sub(q.sent_at));
        }
    }

    /// Bytes of `block` from `source`, in order.
    pub fn on_data(&mut self, source: SourceId, block: u32, data: &[u8], now: u64) {
        let size = self
            .manifest
            .as_ref()
            .map_or(0, |m| m.block_size(u64::from(block)) as usize);
        let Some(s) = self.sources.get_mut(&source) else {
            return;
        };
        s.last_byte_at = now;
        if !s.queries.iter().any(|q| q.block == block) {
            return;
        }
        self.answered(source, block, now);
        let Some(q) = self
            .sources
            .get_mut(&source)
            .and_then(|s| s.queries.iter_mut().find(|q| q.block == block))
        else {
            return;
        };
        q.received += data.len() as u64;
        self.unavailable_run = 0;
        self.not_found_drops = 0;
        self.last_byte_at = Some(now);
        let p = self.partial.entry(block).or_default();
        p.senders.insert(source);
        p.data.extend_from_slice(data);
        if p.data.len() > size {
            // More than the block holds: a bad sender.
            self.bad_block(block);
        }
    }

    /// The query for `block` on `source` ended with DB_END `reason` (a
    /// stream that ended without one counts as DESTROYED).
    pub fn on_end(
        &mut self,
        source: SourceId,
        block: u32,
        reason: u8,
        now: u64,
    ) -> Result<(), ScheduleError> {
        let Some(s) = self.sources.get_mut(&source) else {
            return Ok(());
        };
        let Some(pos) = s.queries.iter().position(|q| q.block == block) else {
            return Ok(());
        };
        let Some(q) = s.queries.remove(pos) else {
            return Ok(());
        };
        if q.ahead_of_manifest && q.received == 0 {
            // Refused before the file's size was known (past a short
            // file's end, or as its first block was): the first block's
            // answer is the one that counts.
            self.release(block);
            self.assign(now);
            return Ok(());
        }
        if reason == db_end_reason::FINISHED {
            if let (Some(first), true) = (q.first_byte_at, q.received > 0) {
                let ms = now.saturating_sub(first).max(1);
                let rate = q.received * 1000 / ms;
                s.rate = Some(s.rate.map_or(rate, |r| (r * 3 + rate) / 4));
                let delay = first.saturating_sub(q.sent_at);
                s.delay = Some(s.delay.map_or(delay, |d| (d * 3 + delay) / 4));
                s.blocks += 1;
            }
            s.unavailable = 0;
            self.finish_block(block);
        } else {
            let not_found = q.received == 0
                && matches!(
                    reason,
                    db_end_reason::UNAVAILABLE | db_end_reason::BAD_QUERY
                );
            // REFUSED is a busy ORDB: the circuit is replaced after two,
            // but the file is not "not found" (no backoff, no giving up).
            let busy = q.received == 0 && reason == db_end_reason::REFUSED;
            if not_found || busy {
                s.unavailable += 1;
            }
            let give_up_source = s.unavailable >= MAX_UNAVAILABLE;
            self.release(block);
            if busy && give_up_source {
                self.drop_source(source, "its ORDB is too busy");
            }
            if not_found {
                self.stats.unavailable += 1;
                self.unavailable_run += 1;
                if give_up_source {
                    self.drop_source(source, "it could not find the file");
                    self.not_found_drops += 1;
                    if let Some(beyond) = self.not_found_drops.checked_sub(SOURCES as u32) {
                        let backoff = NOT_FOUND_BACKOFF_MS << beyond.min(4);
                        self.next_source_at = now + backoff.min(MAX_NOT_FOUND_BACKOFF_MS);
                    }
                }
                let since = *self.last_byte_at.get_or_insert(now);
                if self.unavailable_run >= GIVE_UP_UNAVAILABLE
                    && now.saturating_sub(since) >= GIVE_UP_MS
                {
                    return Err(ScheduleError::NotFound(self.unavailable_run));
                }
            }
        }
        self.assign(now);
        Ok(())
    }

    /// Everything of a block came: check it, then store it or drop who
    /// sent it.
    fn finish_block(&mut self, block: u32) {
        let Some(m) = &self.manifest else {
            return;
        };
        let good = self.partial.get(&block).is_some_and(|p| {
            p.path
                .as_ref()
                .is_some_and(|path| m.check_block(u64::from(block), &p.data, path))
        });
        if !good {
            return self.bad_block(block);
        }
        if let Some(p) = self.partial.remove(&block) {
            if let Some(b) = self.blocks.get_mut(block as usize) {
                *b = BlockState::Storing;
            }
            self.actions.push_back(Action::Store {
                block,
                data: p.data,
                path: p.path.unwrap_or_default(),
            });
        }
    }

    fn bad_block(&mut self, block: u32) {
        self.stats.blocks_bad += 1;
        let p = self.partial.remove(&block).unwrap_or_default();
        self.stats.bytes_wasted += p.data.len() as u64;
        self.release(block);
        for source in p.senders {
            self.drop_source(source, "it sent a block that failed its check");
        }
    }

    /// The store has block `block`.
    pub fn stored(&mut self, block: u32, now: u64) {
        if let Some(b) = self.blocks.get_mut(block as usize) {
            *b = BlockState::Have;
        }
        self.also.remove(&block);
        self.assign(now);
    }

    /// Time passed: stalled and slow circuits are replaced, and a focus
    /// nobody lifted ends.
    pub fn tick(&mut self, now: u64) {
        if self.focus.is_some_and(|f| now >= f.until) {
            self.focus = None;
        }
        let stalled: Vec<SourceId> = self
            .sources
            .iter()
            .filter(|(_, s)| {
                !s.queries.is_empty() && now.saturating_sub(s.last_byte_at) >= STALL_MS
            })
            .map(|(id, _)| *id)
            .collect();
        for id in stalled {
            self.drop_source(id, "it stalled");
        }
        let best = self.sources.values().filter_map(|s| s.rate).max();
        if let (Some(best), true) = (best, self.sources.len() > 2) {
            let slow: Vec<SourceId> = self
                .sources
                .iter()
                .filter(|(_, s)| s.rate.is_some_and(|r| r.saturating_mul(SLOW_FACTOR) < best))
                .map(|(id, _)| *id)
                .collect();
            for id in slow {
                self.drop_source(id, "it was too slow");
            }
        }
        self.assign(now);
    }

    /// When `tick` is due next (a stall to check, the end of a backoff
    /// still ahead of `now`, or of a focus).
    pub fn next_tick(&self, now: u64) -> Option<u64> {
        let waiting = (self.next_source_at > now).then_some(self.next_source_at);
        self.sources
            .values()
            .filter(|s| !s.queries.is_empty())
            .map(|s| s.last_byte_at + STALL_MS)
            .chain(waiting)
            .chain(self.focus.map(|f| f.until))
            .min()
    }

    /// Queries counted against the window (not those a seek left behind).
    fn in_flight(&self) -> usize {
        self.sources.values().map(|s| s.queries.len()).sum()
    }

    /// When `source` would finish one more block, ms from now: what it has
    /// queued at its rate, plus its delay. A circuit that has not finished
    /// a block is taken at `ASSUMED_RATE`, and one that has not answered
    /// at all at `UNANSWERED_DELAY_MS`: a block goes behind those queued on
    /// a circuit that answered, rather than to a fresh one whose ORDB has
    /// yet to find the file, unless that circuit has `PER_SOURCE` queued.
    fn eta(&self, s: &Source, block_len: u64) -> u64 {
        let queued: u64 = s
            .queries
            .iter()
            .map(|q| q.expected.saturating_sub(q.received))
            .sum::<u64>()
            + block_len;
        let rate = s.rate.unwrap_or(ASSUMED_RATE).max(1);
        queued * 1000 / rate + s.delay.unwrap_or(UNANSWERED_DELAY_MS)
    }

    /// Gives queries to circuits while the window has room.
    fn assign(&mut self, now: u64) {
        let Some(m) = self.manifest.clone() else {
            // The first blocks on one circuit until the manifest is known.
            if self.in_flight() == 0 {
                if let Some((&id, _)) = self.sources.iter().min_by_key(|(_, s)| s.unavailable) {
                    for block in 0..FIRST_ASKED {
                        self.send(id, block, 0, WANT_MANIFEST, now, 0);
                    }
                }
            }
            return;
        };
        while self.in_flight() < WINDOW {
            let Some(block) = self.next_missing() else {
                return;
            };
            let size = u64::from(m.block_size(u64::from(block)));
            let best = self
                .sources
                .iter()
                .filter(|(_, s)| s.queries.len() < PER_SOURCE)
                .min_by_key(|(_, s)| self.eta(s, size))
                .map(|(id, _)| *id);
            let Some(source) = best else {
                return;
            };
            let offset = self.partial.get(&block).map_or(0, |p| p.data.len() as u32);
            if let Some(b) = self.blocks.get_mut(block as usize) {
                *b = BlockState::Asked(source);
            }
            self.send(source, block, offset, 0, now, size - u64::from(offset));
        }
    }

    fn send(
        &mut self,
        source: SourceId,
        block: u32,
        offset: u32,
        flags: u8,
        now: u64,
        expected: u64,
    ) {
        let Some(s) = self.sources.get_mut(&source) else {
            return;
        };
        if s.queries.is_empty() {
            s.last_byte_at = now;
        }
        s.queries.push_back(Query {
            block,
            sent_at: now,
            first_byte_at: None,
            expected,
            received: 0,
            ahead_of_manifest: self.manifest.is_none() && block > 0,
        });
        self.actions.push_back(Action::Query {
            source,
            query: DbQuery {
                hash_name: self.hash_name.0,
                block,
                offset,
                counter: 0,
                flags,
            },
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::manifest::BLOCK_LEN;
    use crate::content::merkle;

    struct File {
        data: Vec<u8>,
        leaves: Vec<Hash>,
        manifest: Manifest,
    }

    fn file(size: usize) -> File {
        let data: Vec<u8> = (0..size).map(|i| (i * 13 % 256) as u8).collect();
        let leaves: Vec<Hash> = data
            .chunks(BLOCK_LEN as usize)
            .map(merkle::leaf_hash)
            .collect();
        let manifest = Manifest::sign(
            size as u64,
            &leaves,
            "application/octet-stream",
            "f",
            &[4; 32],
        )
        .unwrap();
        File {
            data,
            leaves,
            manifest,
        }
    }

    impl File {
        fn block(&self, i: u32) -> &[u8] {
            self.data
                .chunks(BLOCK_LEN as usize)
                .nth(i as usize)
                .unwrap()
        }

        /// A download of this file whose manifest is known, nothing stored.
        fn scheduler_with_manifest(&self) -> Scheduler {
            Scheduler::new(
                self.manifest.hash_name(),
                Some(self.manifest.clone()),
                &BTreeSet::new(),
            )
        }

        fn answer(&self, i: u32, with_manifest: bool) -> DbConnected {
            DbConnected {
                manifest: with_manifest.then(|| self.manifest.encode()),
                path: merkle::audit_path(&self.leaves, i as usize),
                live: None,
            }
        }
    }

    fn queries(s: &mut Scheduler) -> Vec<(SourceId, DbQuery)> {
        let mut out = Vec::new();
        while let Some(a) = s.poll_action() {
            if let Action::Query { source, query } = a {
                out.push((source, query));
            }
        }
        out
    }

    /// Serves every query honestly (or with `tamper` on one source) until
    /// the download completes; returns the stored file.
    fn run(f: &File, s: &mut Scheduler, tamper: Option<SourceId>) -> (Vec<u8>, u64) {
        let mut stored: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
        let mut now = 0;
        let mut pending: VecDeque<(SourceId, DbQuery)> = VecDeque::new();
        let mut dropped = 0;
        for _ in 0..10_000 {
            while let Some(a) = s.poll_action() {
                match a {
                    Action::Query { source, query } => pending.push_back((source, query)),
                    Action::Store { block, data, .. } => {
                        stored.insert(block, data);
                        s.stored(block, now);
                    }
                    Action::Drop { source, .. } => {
                        dropped += 1;
                        pending.retain(|(src, _)| *src != source);
                        s.add_source(source + 100, now);
                    }
                    Action::Cancel { source, block } => {
                        pending.retain(|(src, q)| (*src, q.block) != (source, block));
                    }
                }
            }
            if s.is_complete() {
                break;
            }
            let Some((source, q)) = pending.pop_front() else {
                break;
            };
            now += 10;
            s.on_connected(
                source,
                q.block,
                f.answer(q.block, q.flags & WANT_MANIFEST != 0),
                now,
            );
            let block = f
                .block(q.block)
                .get(q.offset as usize..)
                .unwrap_or_default()
                .to_vec();
            let mut block = block;
            if Some(source) == tamper && !block.is_empty() {
                block[0] ^= 1;
            }
            now += 10;
            s.on_data(source, q.block, &block, now);
            s.on_end(source, q.block, db_end_reason::FINISHED, now)
                .unwrap();
        }
        (stored.into_values().flatten().collect(), dropped)
    }

    #[test]
    fn a_download_asks_its_first_blocks_with_the_manifest_then_keeps_five_in_flight() {
        let f = file(1_000_000);
        let mut s = Scheduler::new(f.manifest.hash_name(), None, &BTreeSet::new());
        for id in 0..6 {
            s.add_source(id, 0);
        }
        let first = queries(&mut s);
        let blocks: Vec<u32> = first.iter().map(|(_, q)| q.block).collect();
        assert_eq!(blocks, (0..FIRST_ASKED).collect::<Vec<_>>());
        assert!(first
            .iter()
            .all(|(id, q)| *id == first[0].0 && q.flags == WANT_MANIFEST));
        // The second block's answer comes first: its manifest serves.
        s.on_connected(first[0].0, 1, f.answer(1, true), 5);
        let more = queries(&mut s);
        let blocks: BTreeSet<u32> = more.iter().map(|(_, q)| q.block).collect();
        assert_eq!(blocks, (FIRST_ASKED..WINDOW as u32).collect());
        assert!(more
            .iter()
            .all(|(id, q)| q.flags == 0 && q.offset == 0 && *id != first[0].0));
        // And the first blocks arrive and are stored as any other.
        for b in 0..FIRST_ASKED {
            if b != 1 {
                s.on_connected(first[0].0, b, f.answer(b, true), 6);
            }
            s.on_data(first[0].0, b, f.block(b), 7);
            s.on_end(first[0].0, b, db_end_reason::FINISHED, 8).unwrap();
        }
        let stored: Vec<u32> = std::iter::from_fn(|| s.poll_action())
            .filter_map(|a| match a {
                Action::Store { block, .. } => Some(block),
                _ => None,
            })
            .collect();
        assert_eq!(stored, (0..FIRST_ASKED).collect::<Vec<_>>());
    }

    #[test]
    fn asking_past_a_short_files_end_before_its_size_is_known_costs_nothing() {
        let f = file(50_000);
        let mut s = Scheduler::new(f.manifest.hash_name(), None, &BTreeSet::new());
        s.add_source(1, 0);
        let first = queries(&mut s);
        assert_eq!(first.len(), FIRST_ASKED as usize);
        // Block 1 is refused at once (the ORDB knows the file's size).
        s.on_end(1, 1, db_end_reason::BAD_QUERY, 1).unwrap();
        // Block 0 brings the manifest: block 2's query is ended.
        s.on_connected(1, 0, f.answer(0, true), 2);
        let actions: Vec<Action> = std::iter::from_fn(|| s.poll_action()).collect();
        assert_eq!(
            actions,
            vec![Action::Cancel {
                source: 1,
                block: 2
            }]
        );
        // Its late refusal is no one's fault either.
        s.on_end(1, 2, db_end_reason::BAD_QUERY, 3).unwrap();
        s.on_data(1, 0, &f.data, 4);
        s.on_end(1, 0, db_end_reason::FINISHED, 5).unwrap();
        assert!(matches!(
            s.poll_action(),
            Some(Action::Store { block: 0, .. })
        ));
        assert_eq!(s.stats().unavailable, 0);
        assert_eq!(s.sources(), 1);
        assert_eq!(s.sources[&1].unavailable, 0);
    }

    #[test]
    fn honest_sources_give_the_file() {
        let f = file(1_234_567);
        let mut s = Scheduler::new(f.manifest.hash_name(), None, &BTreeSet::new());
        for id in 0..6 {
            s.add_source(id, 0);
        }
        let (got, dropped) = run(&f, &mut s, None);
        assert_eq!(got, f.data);
        assert_eq!(dropped, 0);
        assert_eq!(
            s.progress(),
            (f.data.len() as u64, Some(f.data.len() as u64))
        );
    }

    #[test]
    fn every_bad_block_is_caught_and_its_sender_dropped() {
        let f = file(2_000_000);
        let mut s = Scheduler::new(f.manifest.hash_name(), None, &BTreeSet::new());
        for id in 0..6 {
            s.add_source(id, 0);
        }
        let (got, dropped) = run(&f, &mut s, Some(2));
        assert_eq!(got, f.data);
        assert!(dropped >= 1);
        let st = s.stats();
        assert!(st.blocks_bad >= 1 && st.bytes_wasted > 0);
        assert!(!s.sources.contains_key(&2));
    }

    #[test]
    fn a_block_that_stopped_resumes_elsewhere_from_its_bytes() {
        let f = file(300_000);
        let mut s = f.scheduler_with_manifest();
        s.add_source(1, 0);
        let q = queries(&mut s);
        assert_eq!(q.iter().filter(|(src, _)| *src == 1).count(), PER_SOURCE);
        s.on_connected(1, 0, f.answer(0, false), 1);
        s.on_data(1, 0, &f.block(0)[..5000], 2);
        s.on_end(1, 0, db_end_reason::DESTROYED, 3).unwrap();
        s.add_source(2, 4);
        let q = queries(&mut s);
        let again = q.iter().find(|(_, q)| q.block == 0).unwrap();
        assert_eq!(again.1.offset, 5000);
        // A resume does not fetch the first part again, and the block checks.
        s.on_connected(again.0, 0, f.answer(0, false), 5);
        s.on_data(again.0, 0, &f.block(0)[5000..], 6);
        s.on_end(again.0, 0, db_end_reason::FINISHED, 7).unwrap();
        let stored = std::iter::from_fn(|| s.poll_action())
            .find_map(|a| match a {
                Action::Store { block: 0, data, .. } => Some(data),
                _ => None,
            })
            .unwrap();
        assert_eq!(stored, f.block(0));
    }

    #[test]
    fn a_forged_manifest_drops_its_source_and_unknown_files_give_up() {
        let f = file(100_000);
        let other = file(100_001);
        let mut s = Scheduler::new(f.manifest.hash_name(), None, &BTreeSet::new());
        s.add_source(1, 0);
        let q = queries(&mut s);
        s.on_connected(1, 0, other.answer(0, true), 1);
        assert!(matches!(
            s.poll_action(),
            Some(Action::Drop { source: 1, .. })
        ));
        assert!(s.manifest().is_none());
        let _ = q;
        // Answers of "unavailable" only: two per source, then a new one,
        // until the download gives up.
        let mut next = 10;
        s.add_source(next, 0);
        let mut result = Ok(());
        for i in 0..200u64 {
            let qs = queries(&mut s);
            for (src, q) in qs {
                let r = s.on_end(src, q.block, db_end_reason::UNAVAILABLE, i * 1000);
                result = result.and(r);
            }
            if result.is_err() {
                break;
            }
            if s.sources() == 0 {
                next += 1;
                s.add_source(next, 1);
            }
        }
        // Not before a minute without a byte, however many answers.
        let Err(ScheduleError::NotFound(n)) = result else {
            panic!("{result:?}");
        };
        assert!(n > GIVE_UP_UNAVAILABLE);
    }

    #[test]
    fn circuits_that_cannot_find_the_file_are_replaced_ever_more_slowly() {
        let f = file(100_000);
        let mut s = Scheduler::new(f.manifest.hash_name(), None, &BTreeSet::new());
        let mut opened = 0u32;
        let mut next = 0;
        // A minute of ORDBs answering "unavailable" within 100 ms.
        for t in (0..60_000u64).step_by(100) {
            for _ in 0..s.wanted_sources(0, t) {
                next += 1;
                opened += 1;
                s.add_source(next, t);
            }
            for (src, q) in queries(&mut s) {
                let _ = s.on_end(src, q.block, db_end_reason::UNAVAILABLE, t);
            }
        }
        // Without the backoff: six circuits every 100 ms, 3,600.
        assert!(
            opened > SOURCES as u32 && opened < 20,
            "{opened} circuits in a minute"
        );
        assert!(
            s.next_tick(59_999).is_some_and(|t| t > 59_999),
            "the scheduler wakes for the next one, later"
        );
    }

    #[test]
    fn a_backoff_that_has_passed_wakes_nobody() {
        let f = file(100_000);
        let mut s = Scheduler::new(f.manifest.hash_name(), None, &BTreeSet::new());
        for source in 0..(SOURCES as u64 + 1) {
            s.add_source(source, 0);
            for (src, q) in queries(&mut s) {
                let _ = s.on_end(src, q.block, db_end_reason::UNAVAILABLE, 0);
            }
            for (src, q) in queries(&mut s) {
                let _ = s.on_end(src, q.block, db_end_reason::UNAVAILABLE, 0);
            }
        }
        assert_eq!(s.sources(), 0);
        assert_eq!(s.wanted_sources(0, 0), 0, "backing off");
        let end = s.next_tick(0).expect("woken when the backoff ends");
        assert!(end > 0);
        assert_eq!(s.wanted_sources(0, end), 1, "then one circuit at a time");
        assert_eq!(s.next_tick(end), None, "nothing else to wait for");
    }

    #[test]
    fn a_busy_ordb_is_replaced_without_backing_off() {
        let f = file(100_000);
        let mut s = Scheduler::new(f.manifest.hash_name(), None, &BTreeSet::new());
        for source in 0..20u64 {
            s.add_source(source, 0);
            for _ in 0..2 {
                for (src, q) in queries(&mut s) {
                    s.on_end(src, q.block, db_end_reason::REFUSED, 0).unwrap();
                }
            }
        }
        assert_eq!(s.sources(), 0, "each refusing circuit was dropped");
        assert_eq!(s.wanted_sources(0, 0), SOURCES, "no backoff for busy ORDBs");
        assert!(s.failure().is_none());
    }

    #[test]
    fn stalled_and_slow_sources_are_replaced() {
        let f = file(2_000_000);
        let mut s = f.scheduler_with_manifest();
        for id in 0..3 {
            s.add_source(id, 0);
        }
        let qs = queries(&mut s);
        // Source 0 is fast, 1 slow, 2 silent.
        for (src, q) in &qs {
            let ms = match src {
                0 => 100,
                1 => 4000,
                _ => continue,
            };
            s.on_connected(*src, q.block, f.answer(q.block, false), 10);
            s.on_data(*src, q.block, f.block(q.block), 10 + ms);
            s.on_end(*src, q.block, db_end_reason::FINISHED, 10 + ms)
                .unwrap();
        }
        s.tick(5000);
        let drops: Vec<SourceId> = std::iter::from_fn(|| s.poll_action())
            .filter_map(|a| match a {
                Action::Drop { source, .. } => Some(source),
                _ => None,
            })
            .collect();
        assert!(drops.contains(&1), "slow: {drops:?}");
        s.tick(10_050);
        let drops: Vec<SourceId> = std::iter::from_fn(|| s.poll_action())
            .filter_map(|a| match a {
                Action::Drop { source, .. } => Some(source),
                _ => None,
            })
            .collect();
        assert!(drops.contains(&2), "stalled: {drops:?}");
        assert_eq!(s.stats().sources_dropped, 2);
    }

    #[test]
    fn a_file_over_the_size_limit_ends_the_download_before_anything_is_allocated() {
        let f = file(300_000);
        let mut s =
            Scheduler::new(f.manifest.hash_name(), None, &BTreeSet::new()).with_max_size(299_999);
        s.add_source(1, 0);
        let q = queries(&mut s);
        assert!(
            q.iter().all(|(_, q)| q.flags == WANT_MANIFEST),
            "the manifest first"
        );
        s.on_connected(1, 0, f.answer(0, true), 1);
        assert_eq!(
            s.failure(),
            Some(&ScheduleError::TooLarge {
                size: 300_000,
                limit: 299_999
            })
        );
        assert!(s.manifest().is_none() && s.blocks.is_empty());
        // At the limit it is accepted.
        let mut s =
            Scheduler::new(f.manifest.hash_name(), None, &BTreeSet::new()).with_max_size(300_000);
        s.add_source(1, 0);
        queries(&mut s);
        s.on_connected(1, 0, f.answer(0, true), 1);
        assert!(s.failure().is_none() && s.manifest().is_some());
    }

    #[test]
    fn a_resumed_download_asks_only_for_missing_blocks() {
        let f = file(500_000);
        let have: BTreeSet<u32> = [0, 2, 4].into();
        let mut s = Scheduler::new(f.manifest.hash_name(), Some(f.manifest.clone()), &have);
        for id in 0..6 {
            s.add_source(id, 0);
        }
        let asked: BTreeSet<u32> = queries(&mut s).iter().map(|(_, q)| q.block).collect();
        assert_eq!(asked, [1, 3, 5].into());
    }

    type Blocks = Vec<(SourceId, u32)>;

    /// Every action until none is left: (queries, cancels).
    fn actions(s: &mut Scheduler) -> (Blocks, Blocks) {
        let (mut asked, mut cancelled) = (Vec::new(), Vec::new());
        while let Some(a) = s.poll_action() {
            match a {
                Action::Query { source, query } => asked.push((source, query.block)),
                Action::Cancel { source, block } => cancelled.push((source, block)),
                _ => {}
            }
        }
        (asked, cancelled)
    }

    fn serve(f: &File, s: &mut Scheduler, source: SourceId, block: u32, now: u64) {
        s.on_connected(source, block, f.answer(block, false), now);
        s.on_data(source, block, f.block(block), now);
        s.on_end(source, block, db_end_reason::FINISHED, now)
            .unwrap();
        s.stored(block, now);
    }

    #[test]
    fn a_player_position_is_fetched_first_then_what_comes_before_it() {
        let f = file(BLOCK_LEN as usize * 20);
        let mut s = f.scheduler_with_manifest();
        s.prioritize(14, 0);
        for id in 1..=3 {
            s.add_source(id, 0);
        }
        let (asked, _) = actions(&mut s);
        let blocks: Vec<u32> = asked.iter().map(|(_, b)| *b).collect();
        assert_eq!(blocks, vec![14, 15, 16, 17, 18]);
        for (source, block) in asked {
            serve(&f, &mut s, source, block, 2);
        }
        // The file's tail, then the wrap to its start.
        let (asked, _) = actions(&mut s);
        let blocks: Vec<u32> = asked.iter().map(|(_, b)| *b).collect();
        assert_eq!(blocks, vec![19, 0, 1, 2, 3]);
        // A seek: the queries away from it end (their circuits are the
        // seek's at once), and its blocks are asked; 19 is near enough to
        // go on.
        s.prioritize(10, 3);
        let (seek, cancelled) = actions(&mut s);
        let mut cancelled: Vec<u32> = cancelled.iter().map(|(_, b)| *b).collect();
        cancelled.sort_unstable();
        assert_eq!(cancelled, vec![0, 1, 2, 3]);
        let blocks: Vec<u32> = seek.iter().map(|(_, b)| *b).collect();
        assert_eq!(blocks, vec![10, 11, 12, 13]);
        // Playing on by a block cancels nothing: 10 came, and then the
        // file's start is asked.
        let (source, block) = seek[0];
        serve(&f, &mut s, source, block, 3);
        let (asked, _) = actions(&mut s);
        assert_eq!(asked.iter().map(|(_, b)| *b).collect::<Vec<_>>(), vec![0]);
        s.prioritize(11, 3);
        assert_eq!(actions(&mut s), (vec![], vec![]));
        // Back by two with the window full (10 is held): the block that
        // came last in the order (0) makes room for 9.
        s.prioritize(9, 3);
        let (asked, cancelled) = actions(&mut s);
        assert_eq!(
            cancelled.iter().map(|(_, b)| *b).collect::<Vec<_>>(),
            vec![0]
        );
        assert_eq!(asked.iter().map(|(_, b)| *b).collect::<Vec<_>>(), vec![9]);
        // A block wanted besides (an index) goes first when a query ends,
        // without moving the priority, and is not cancelled by a seek.
        s.want_also([7], 4);
        assert!(actions(&mut s).0.is_empty(), "the window is full");
        let (source, block) = asked[0];
        serve(&f, &mut s, source, block, 5);
        let (next, _) = actions(&mut s);
        assert_eq!(next.iter().map(|(_, b)| *b).collect::<Vec<_>>(), vec![7]);
        s.prioritize(12, 6);
        let (_, cancelled) = actions(&mut s);
        assert!(
            cancelled.iter().all(|(_, b)| *b != 7),
            "the index goes on: {cancelled:?}"
        );
    }

    #[test]
    fn a_focused_seek_asks_only_its_blocks_until_it_plays_or_the_focus_times_out() {
        let f = file(BLOCK_LEN as usize * 20);
        let mut s = f.scheduler_with_manifest();
        for id in 1..=3 {
            s.add_source(id, 0);
        }
        let (first, _) = actions(&mut s);
        assert_eq!(first.len(), WINDOW);
        // A seek needing blocks 12..=13: the queries for 0..5 end, and
        // only 12 and 13 are asked though the window has room.
        s.focus(12, 13, 10);
        let (asked, cancelled) = actions(&mut s);
        assert_eq!(cancelled.len(), WINDOW);
        assert_eq!(
            asked.iter().map(|(_, b)| *b).collect::<Vec<_>>(),
            vec![12, 13]
        );
        // Both come; the player, having appended them, wants 14: nothing
        // is asked while the element has not played.
        for &(source, block) in &asked {
            serve(&f, &mut s, source, block, 20);
        }
        s.prioritize(14, 21);
        assert_eq!(actions(&mut s), (vec![], vec![]));
        // An index wanted besides still goes.
        s.want_also([19], 22);
        let (index, _) = actions(&mut s);
        assert_eq!(index.iter().map(|(_, b)| *b).collect::<Vec<_>>(), vec![19]);
        // It plays: the window fills from 14 on.
        s.unfocus(30);
        let (rest, _) = actions(&mut s);
        assert_eq!(
            rest.iter().map(|(_, b)| *b).collect::<Vec<_>>(),
            vec![14, 15, 16, 17]
        );
        // A focus nobody lifts ends by itself after FOCUS_MS, at the tick
        // it asks for.
        s.focus(2, 2, 100);
        let _ = actions(&mut s);
        let due = s.next_tick(100).expect("a tick for the focus");
        assert!(due <= 100 + FOCUS_MS);
        s.tick(due - 1);
        assert!(s.focus.is_some());
        s.tick(100 + FOCUS_MS);
        assert!(s.focus.is_none());
        assert!(!actions(&mut s).0.is_empty(), "the rest is asked again");
    }

    #[test]
    fn more_bytes_than_the_block_holds_is_a_bad_block() {
        let f = file(300_000);
        let mut s = f.scheduler_with_manifest();
        s.add_source(1, 0);
        let _ = queries(&mut s);
        s.on_connected(1, 0, f.answer(0, false), 1);
        let mut too_long = f.block(0).to_vec();
        too_long.push(0);
        s.on_data(1, 0, &too_long, 2);
        assert_eq!(s.stats().blocks_bad, 1);
        assert!(matches!(
            s.poll_action(),
            Some(Action::Drop { source: 1, .. })
        ));
    }
}
