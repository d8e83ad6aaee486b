//! Live streams from a tab (docs/PROTOCOL.md "Live streams"): publishing
//! (a key made for the stream signs its manifest and every chunk as the
//! adapter's recorder hands it over) and following (`content::follow`
//! over circuits to ORDBs). Publisher and followers hold the stream's last
//! chunks in their ORDB (`service::ordb::live`) and serve them on, so
//! each viewer is a relay for the viewers behind it.

use ed25519_dalek::SigningKey;

use crate::content::follow::{FollowStats, LiveAction, LiveFollower};
use crate::content::live::{Chunk, ChunkHeader, LiveManifest, DEFAULT_CHUNK_MS, KEY, MAX_CHUNK};
use crate::content::HashName;

use super::pool::{OrdbCircuits, PoolEvent};
use super::share::DEFAULT_DOWNLOAD_HOPS;
use super::tasks::{Kind, OpKind, Parent, TaskId, TaskInput, TaskResult};
use super::{LinkId, OpError, TabEvent, TabPeer};

/// A live stream, as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveStream {
    pub hash_name: HashName,
    pub mime: String,
    pub name: String,
    /// The media's initialization segment: append it first.
    pub init: Vec<u8>,
    pub chunk_ms: u32,
    pub start_ms: u64,
}

impl LiveStream {
    fn of(m: &LiveManifest) -> Self {
        LiveStream {
            hash_name: m.hash_name(),
            mime: m.mime.clone(),
            name: m.name.clone(),
            init: m.init.clone(),
            chunk_ms: m.chunk_ms,
            start_ms: m.start_ms,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct LiveOptions {
    /// Tabs in each circuit, the ORDB last (default 2).
    pub hops: Option<usize>,
}

/// A stream this tab publishes.
pub(super) struct Publishing {
    key: SigningKey,
    next_seq: u64,
}

pub(super) struct LiveTask {
    pub(super) follower: LiveFollower,
    pub(super) hash_name: HashName,
    pub(super) circuits: OrdbCircuits,
    announced: bool,
    /// A stream named by its web address (`watch_web_live`).
    pub(super) web: Option<Box<super::web_live::WebSource>>,
}

impl LiveTask {
    pub(super) fn new(h: HashName, hops: Option<usize>, now: u64) -> Self {
        LiveTask {
            follower: LiveFollower::new(h, now),
            hash_name: h,
            circuits: OrdbCircuits::new(hops.unwrap_or(DEFAULT_DOWNLOAD_HOPS)),
            announced: false,
            web: None,
        }
    }
}

impl TabPeer {
    /// Publishes a live stream: `init` is the media's initialization
    /// segment, `chunk_ms` how often chunks will come. Chunks follow with
    /// `push_live_chunk`.
    pub fn publish_live(
        &mut self,
        mime: &str,
        name: &str,
        init: &[u8],
        chunk_ms: Option<u32>,
        now: u64,
    ) -> Result<LiveStream, OpError> {
        self.now = now.max(self.now);
        let key = self.new_live_key()?;
        let name = crate::content::manifest::clean_name(name);
        let chunk_ms = chunk_ms.unwrap_or(DEFAULT_CHUNK_MS);
        let manifest = LiveManifest::sign(now, chunk_ms, mime, &name, init, &key)
            .map_err(|e| OpError::Fetch(e.to_string()))?;
        let stream = self.start_publishing(manifest, key);
        self.after_input();
        Ok(stream)
    }

    pub(super) fn new_live_key(&mut self) -> Result<SigningKey, OpError> {
        let secret: [u8; 32] = crate::rng::random_bytes(&mut self.rng)
            .map_err(|_| OpError::Fetch("randomness".into()))?;
        Ok(SigningKey::from_bytes(&secret))
    }

    /// Holds and announces a stream we publish, signed by `key`.
    pub(super) fn start_publishing(
        &mut self,
        manifest: LiveManifest,
        key: SigningKey,
    ) -> LiveStream {
        let stream = LiveStream::of(&manifest);
        let h = self.ordb.add_live(manifest, true);
        self.publishing.insert(h, Publishing { key, next_seq: 0 });
        let links: Vec<LinkId> = self.open_links().iter().map(|(_, l, _)| *l).collect();
        let hops = self.ordb.live_hops(&h);
        self.send_info_storing(h, 100, hops, true, &links);
        stream
    }

    /// Leaves sequence number(s) unused: followers skip to the next key
    /// chunk (a web body that broke off mid-cluster).
    pub(super) fn skip_live_seq(&mut self, h: &HashName) {
        if let Some(p) = self.publishing.get_mut(h) {
            p.next_seq += 1;
        }
    }

    /// The next piece of a stream we publish, as the recorder made it:
    /// signed with the time now, kept and sent to the followers waiting
    /// for it. `key`: it begins where a decoder can start. A piece over
    /// `MAX_CHUNK` becomes several chunks. Returns the first sequence
    /// number.
    pub fn push_live_chunk(
        &mut self,
        h: &HashName,
        data: &[u8],
        key: bool,
        now: u64,
    ) -> Result<u64, OpError> {
        self.now = now.max(self.now);
        let first = self.sign_live_chunks(h, data, key, now)?;
        self.after_input();
        Ok(first)
    }

    /// `push_live_chunk` within a step.
    pub(super) fn sign_live_chunks(
        &mut self,
        h: &HashName,
        data: &[u8],
        key: bool,
        now: u64,
    ) -> Result<u64, OpError> {
        let p = self
            .publishing
            .get_mut(h)
            .ok_or_else(|| OpError::Fetch("this tab does not publish that stream".into()))?;
        let first = p.next_seq;
        let mut chunks = Vec::new();
        for (i, piece) in data.chunks(MAX_CHUNK).enumerate() {
            let flags = if key && i == 0 { KEY } else { 0 };
            let header = ChunkHeader::sign(&p.key, h, p.next_seq, now, flags, piece);
            p.next_seq += 1;
            chunks.push(Chunk {
                header,
                data: piece.to_vec().into(),
            });
        }
        for chunk in chunks {
            self.ordb.add_live_chunk(&mut self.core, h, chunk, now);
        }
        Ok(first)
    }

    /// Stops publishing (or holding) a stream: its key is forgotten and
    /// its chunks dropped.
    pub fn stop_live(&mut self, h: &HashName) {
        self.publishing.remove(h);
        self.ordb.remove_live(&mut self.core, h);
        self.after_input();
    }

    /// Whether `h` is a live stream, as far as we know (we hold it, or a
    /// linked tab told us so).
    pub fn is_live(&self, h: &HashName) -> bool {
        self.ordb.is_live(h)
    }

    /// Figures of live stream `op` being followed.
    pub fn live_stats(&self, op: u64) -> Option<FollowStats> {
        match &self.tasks.get(&op)?.kind {
            Kind::Live(t) => Some(t.stats()),
            _ => None,
        }
    }

    /// The chunks our ORDB holds of stream `h`, and the newest.
    pub fn live_held(&self, h: &HashName) -> Option<(usize, Option<u64>)> {
        self.ordb.live(h).map(|r| (r.held(), r.newest()))
    }

    /// Tests only: our ORDB serves forged or replayed chunks.
    pub fn tamper_live(&mut self, how: Option<crate::service::ordb::LiveTamper>) {
        self.ordb.tamper_live(how);
    }

    /// Follows a live stream from its edge; chunks come in order as
    /// `TabEvent::LiveChunk`. Ends with `cancel_download(op)`
    /// (`Outcome::Followed(Ok(stats))`) or when nothing comes for a minute.
    pub fn follow_live(&mut self, h: HashName, options: LiveOptions, now: u64) -> u64 {
        self.now = now.max(self.now);
        let id = self.start_live_task(LiveTask::new(h, options.hops, now));
        self.task_input(id, TaskInput::Timeout);
        self.after_input();
        id
    }

    pub(super) fn start_live_task(&mut self, task: LiveTask) -> TaskId {
        let id = self.next_task;
        self.next_task += 1;
        self.tasks.insert(
            id,
            super::tasks::Task {
                parent: Parent::Op(OpKind::Live),
                deadline: None,
                kind: Kind::Live(Box::new(task)),
            },
        );
        id
    }

    pub(super) fn live_step(
        &mut self,
        id: TaskId,
        t: &mut LiveTask,
        input: TaskInput,
    ) -> Option<TaskResult> {
        if t.web.as_ref().is_some_and(|w| w.is_direct()) {
            return self.direct_step(id, t, input);
        }
        let now = self.now;
        match input {
            TaskInput::Timeout => t.follower.tick(now),
            TaskInput::Child(child, result) => {
                match t.circuits.child_done(self, id, child, *result) {
                    Ok(Some(source)) => t.follower.add_source(source, now),
                    Ok(None) => {}
                    Err(_) if t.web.is_some() && t.follower.manifest().is_none() => {
                        return self.go_direct(id, t)
                    }
                    Err(e) => return Some(t.end(self, Err(e))),
                }
            }
            TaskInput::Mux(link, event) => self.live_event(t, link, event),
            TaskInput::StoreFailed(_) => return Some(t.end(self, Ok(()))),
            TaskInput::Stored
            | TaskInput::BlockStored(_)
            | TaskInput::Prioritize(_)
            | TaskInput::WantAlso(_)
            | TaskInput::Focus { .. }
            | TaskInput::Unfocus => {}
        }
        if let Some(e) = t.follower.failure() {
            if t.web.is_some() && t.follower.manifest().is_none() {
                return self.go_direct(id, t);
            }
            let e = OpError::Fetch(e.to_string());
            return Some(t.end(self, Err(e)));
        }
        while let Some(action) = t.follower.poll_action() {
            self.live_action(id, t, action);
        }
        if t.web
            .as_ref()
            .is_some_and(|w| w.nobody_relays(&t.follower, now))
        {
            return self.go_direct(id, t);
        }
        let wanted = t.follower.wanted_sources(t.circuits.building(), now);
        if let Err(e) = t.circuits.build(self, id, wanted) {
            return Some(t.end(self, Err(e)));
        }
        let mut tick = t.follower.next_tick(now).unwrap_or(now + 1000);
        if t.circuits.next_build_at > now {
            tick = tick.min(t.circuits.next_build_at);
        }
        self.deadline_changes.push((id, Some(tick.min(now + 1000))));
        None
    }

    fn live_event(&mut self, t: &mut LiveTask, link: LinkId, event: crate::client::MuxEvent) {
        let now = self.now;
        match t.circuits.event(self, link, event) {
            Some(PoolEvent::Connected {
                source,
                block,
                answer,
            }) => t.follower.on_connected(source, block, answer, now),
            Some(PoolEvent::Data {
                source,
                block,
                data,
            }) => t.follower.on_data(source, block, &data, now),
            Some(PoolEvent::Ended {
                source,
                block,
                reason,
            }) => t.follower.on_end(source, block, reason, now),
            Some(PoolEvent::Lost(source)) => t.follower.source_lost(source, now),
            None => {}
        }
    }

    fn live_action(&mut self, id: TaskId, t: &mut LiveTask, action: LiveAction) {
        match action {
            LiveAction::Query { source, query } => {
                if !t.circuits.query(self, id, source, &query) {
                    t.follower.source_lost(source, self.now);
                }
            }
            LiveAction::Drop { source, why } => {
                tracing::debug!("live: dropping a circuit: {why}");
                t.circuits.drop(self, source);
            }
            LiveAction::Manifest(m) => {
                let stream = LiveStream::of(&m);
                self.ordb.add_live(*m, false);
                self.events
                    .push_back(TabEvent::LiveManifest { op: id, stream });
            }
            LiveAction::Chunk { chunk, gap } => {
                let h = t.hash_name;
                self.ordb
                    .add_live_chunk(&mut self.core, &h, chunk.clone(), self.now);
                if !t.announced {
                    // We hold chunks now: the tabs linked to us may ask us
                    // (as a step toward the publisher: `live_hops`).
                    t.announced = true;
                    let links: Vec<LinkId> = self.open_links().iter().map(|(_, l, _)| *l).collect();
                    let hops = self.ordb.live_hops(&h);
                    self.send_info(h, 100, hops, &links);
                }
                self.events.push_back(TabEvent::LiveChunk {
                    op: id,
                    seq: chunk.header.seq,
                    timestamp_ms: chunk.header.timestamp_ms,
                    key: chunk.header.is_key(),
                    gap,
                    data: chunk.data.to_vec(),
                });
            }
        }
    }
}

impl LiveTask {
    /// Ends following: circuits close, and the chunks held go (unless
    /// this tab publishes the stream).
    pub(super) fn end(&mut self, tab: &mut TabPeer, result: Result<(), OpError>) -> TaskResult {
        self.circuits.close_all(tab);
        if self.web.as_ref().is_some_and(|w| w.published()) {
            // We published what we fetched: nobody gets it from us now.
            tab.publishing.remove(&self.hash_name);
        }
        if !tab.publishing.contains_key(&self.hash_name) {
            tab.ordb.remove_live(&mut tab.core, &self.hash_name);
        }
        match result {
            Ok(()) => TaskResult::Followed(self.stats()),
            Err(e) => TaskResult::Failed(e),
        }
    }

    pub(super) fn stats(&self) -> FollowStats {
        let mut stats = self.follower.stats();
        stats.circuits = self.circuits.opened;
        if let Some(w) = &self.web {
            w.add_stats(&mut stats);
        }
        stats
    }
}
