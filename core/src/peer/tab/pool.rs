//! The circuits a download or a live follower keeps to ORDBs: built
//! through tabs (`hops` of them, the ORDB last), one DB_QUERY stream per
//! query, their mux events turned into what the scheduler takes, and a
//! backoff when circuits cannot be built.

use std::collections::{BTreeMap, BTreeSet};

use crate::cell::ordb::{DbConnected, DbQuery};
use crate::client::MuxEvent;
use crate::content::schedule::SourceId;
use crate::crypto::PeerId;

use super::tasks::{Parent, TaskId, TaskInput, TaskResult};
use super::{LinkId, OpError, TabPeer};

/// Give up when this many circuits in a row could not be built over
/// `GIVE_UP_BUILDING_MS` (tabs left, links are re-forming).
const MAX_BUILD_FAILURES: u32 = 30;
const GIVE_UP_BUILDING_MS: u64 = 60_000;
/// A link whose circuit was dropped is not the start of a new one for
/// this long, when another link can be.
const SHUN_MS: u64 = 30_000;
/// Wait after a failed circuit before the next, per failure in a row
/// (at most 8 of them).
const BUILD_BACKOFF_MS: u64 = 250;

/// What a circuit's mux event means to the scheduler.
pub(super) enum PoolEvent {
    Connected {
        source: SourceId,
        block: u32,
        answer: DbConnected,
    },
    Data {
        source: SourceId,
        block: u32,
        data: Vec<u8>,
    },
    Ended {
        source: SourceId,
        block: u32,
        reason: u8,
    },
    Lost(SourceId),
}

pub(super) struct OrdbCircuits {
    hops: usize,
    sources: BTreeMap<SourceId, (LinkId, u32)>,
    by_circ: BTreeMap<(LinkId, u32), SourceId>,
    streams: BTreeMap<(LinkId, u32, u16), (SourceId, u32)>,
    building: BTreeSet<TaskId>,
    /// The link each circuit being built starts on.
    building_links: BTreeMap<TaskId, LinkId>,
    /// Links whose circuit was dropped (a liar, a stall), until when new
    /// circuits start elsewhere if they can.
    shunned: BTreeMap<LinkId, u64>,
    /// Circuits that failed in a row, since when, and when to try again.
    build_failures: u32,
    failing_since: u64,
    pub(super) next_build_at: u64,
    /// Circuits opened, and the ORDBs they ended at.
    pub(super) opened: u64,
    pub(super) ordbs: BTreeSet<PeerId>,
    next_source: SourceId,
}

impl OrdbCircuits {
    pub(super) fn new(hops: usize) -> Self {
        OrdbCircuits {
            hops: hops.clamp(1, 8),
            sources: BTreeMap::new(),
            by_circ: BTreeMap::new(),
            streams: BTreeMap::new(),
            building: BTreeSet::new(),
            building_links: BTreeMap::new(),
            shunned: BTreeMap::new(),
            build_failures: 0,
            failing_since: 0,
            next_build_at: 0,
            opened: 0,
            ordbs: BTreeSet::new(),
            next_source: 1,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.sources.len()
    }

    pub(super) fn building(&self) -> usize {
        self.building.len()
    }

    pub(super) fn is_building(&self, child: TaskId) -> bool {
        self.building.contains(&child)
    }

    /// A child task ended: a circuit built (its source id), or one that
    /// could not be (the error when it is time to give up).
    pub(super) fn child_done(
        &mut self,
        tab: &mut TabPeer,
        id: TaskId,
        child: TaskId,
        result: TaskResult,
    ) -> Result<Option<SourceId>, OpError> {
        self.building_links.remove(&child);
        if !self.building.remove(&child) {
            return Ok(None);
        }
        match result {
            TaskResult::Own(own) => {
                let source = self.next_source;
                self.next_source += 1;
                self.opened += 1;
                self.build_failures = 0;
                self.ordbs.extend(own.hops.last().copied());
                self.sources.insert(source, (own.link, own.circ));
                self.by_circ.insert((own.link, own.circ), source);
                tab.own_circuit(id, own.link, own.circ);
                Ok(Some(source))
            }
            TaskResult::Failed(e) => {
                tracing::debug!("ORDB circuit: not built: {e}");
                self.build_failed(tab.now, &e.to_string())
                    .map_or(Ok(None), Err)
            }
            _ => Ok(None),
        }
    }

    /// A mux event on one of our circuits.
    pub(super) fn event(
        &mut self,
        tab: &mut TabPeer,
        link: LinkId,
        event: MuxEvent,
    ) -> Option<PoolEvent> {
        match event {
            MuxEvent::DbConnected {
                circ,
                stream,
                answer,
            } => {
                let &(source, block) = self.streams.get(&(link, circ, stream))?;
                Some(PoolEvent::Connected {
                    source,
                    block,
                    answer,
                })
            }
            MuxEvent::StreamReadable { circ, stream } => {
                let &(source, block) = self.streams.get(&(link, circ, stream))?;
                let data = tab
                    .core
                    .mux(link)
                    .and_then(|m| m.read(circ, stream, usize::MAX).ok())
                    .unwrap_or_default();
                Some(PoolEvent::Data {
                    source,
                    block,
                    data,
                })
            }
            MuxEvent::StreamEnded {
                circ,
                stream,
                reason,
                ..
            } => {
                tab.stream_owners.remove(&(link, circ, stream));
                let (source, block) = self.streams.remove(&(link, circ, stream))?;
                Some(PoolEvent::Ended {
                    source,
                    block,
                    reason,
                })
            }
            MuxEvent::CircuitClosed { circ, .. } => {
                tab.circ_owners.remove(&(link, circ));
                let source = self.by_circ.remove(&(link, circ))?;
                self.sources.remove(&source);
                self.streams
                    .retain(|(l, c, _), _| !(*l == link && *c == circ));
                Some(PoolEvent::Lost(source))
            }
            _ => None,
        }
    }

    /// Sends a query on a source's circuit; false when it could not go
    /// (the circuit is then dropped, and the caller told it is lost).
    pub(super) fn query(
        &mut self,
        tab: &mut TabPeer,
        id: TaskId,
        source: SourceId,
        query: &DbQuery,
    ) -> bool {
        let Some(&(link, circ)) = self.sources.get(&source) else {
            return true;
        };
        match tab.core.mux(link).map(|m| m.begin_db(circ, query)) {
            Some(Ok(stream)) => {
                self.streams
                    .insert((link, circ, stream), (source, query.block));
                tab.own_stream(id, link, circ, stream);
                true
            }
            _ => {
                self.drop(tab, source);
                false
            }
        }
    }

    /// Ends the query for `block` on a source's circuit (its stream).
    pub(super) fn cancel(&mut self, tab: &mut TabPeer, source: SourceId, block: u32) {
        let key = self
            .streams
            .iter()
            .find(|(_, v)| **v == (source, block))
            .map(|(k, _)| *k);
        if let Some((link, circ, stream)) = key {
            self.streams.remove(&(link, circ, stream));
            tab.stream_owners.remove(&(link, circ, stream));
            if let Some(m) = tab.core.mux(link) {
                m.end(circ, stream);
            }
        }
    }

    /// Closes a source's circuit.
    pub(super) fn drop(&mut self, tab: &mut TabPeer, source: SourceId) {
        if let Some((link, circ)) = self.sources.remove(&source) {
            self.shunned.insert(link, tab.now + SHUN_MS);
            self.by_circ.remove(&(link, circ));
            self.streams
                .retain(|(l, c, _), _| !(*l == link && *c == circ));
            tab.circ_owners.remove(&(link, circ));
            if let Some(m) = tab.core.mux(link) {
                m.destroy(circ);
            }
        }
    }

    pub(super) fn close_all(&mut self, tab: &mut TabPeer) {
        let sources: Vec<SourceId> = self.sources.keys().copied().collect();
        for source in sources {
            self.drop(tab, source);
        }
    }

    /// Starts building `wanted` more circuits (not before the backoff).
    pub(super) fn build(
        &mut self,
        tab: &mut TabPeer,
        id: TaskId,
        wanted: usize,
    ) -> Result<(), OpError> {
        for _ in 0..wanted {
            if tab.now < self.next_build_at {
                break;
            }
            let now = tab.now;
            self.shunned.retain(|_, until| *until > now);
            let shunned: Vec<LinkId> = self.shunned.keys().copied().collect();
            let mut in_use: Vec<LinkId> = self
                .sources
                .values()
                .map(|(l, _)| *l)
                .chain(self.building_links.values().copied())
                .chain(shunned.iter().copied())
                .collect();
            // A link neither in use nor shunned first; else any not shunned.
            let open: Vec<LinkId> = tab.open_links().iter().map(|(_, l, _)| *l).collect();
            if open.iter().all(|l| in_use.contains(l)) {
                in_use = shunned;
            }
            if let Some(own) = tab.take_warm(self.hops, &in_use) {
                // Built ahead: it comes back as a child's result, after
                // this step, like any circuit built for us.
                let child = tab.next_task;
                tab.next_task += 1;
                self.building.insert(child);
                self.building_links.insert(child, own.link);
                tab.task_input(id, TaskInput::Child(child, Box::new(TaskResult::Own(own))));
                continue;
            }
            let child = tab.spawn_build_tab_avoiding(self.hops, Parent::Task(id), false, &in_use);
            if tab.tasks.contains_key(&child) {
                self.building.insert(child);
                if let Some(link) = tab.first_link_of_build(child) {
                    self.building_links.insert(child, link);
                }
            } else if let Some(e) = self.build_failed(tab.now, "no link to start from") {
                return Err(e);
            }
        }
        Ok(())
    }

    /// A circuit could not be built: wait a little before the next; the
    /// error that ends the task, when it is time to give up.
    fn build_failed(&mut self, now: u64, why: &str) -> Option<OpError> {
        if self.build_failures == 0 {
            self.failing_since = now;
        }
        self.build_failures += 1;
        self.next_build_at = now + BUILD_BACKOFF_MS * u64::from(self.build_failures.min(8));
        (self.build_failures >= MAX_BUILD_FAILURES
            && now.saturating_sub(self.failing_since) >= GIVE_UP_BUILDING_MS)
            .then(|| {
                OpError::NoPath(format!(
                    "{} circuits to ORDBs in a row could not be built: {why}",
                    self.build_failures
                ))
            })
    }
}
