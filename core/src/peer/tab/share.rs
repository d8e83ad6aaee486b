//! Sharing files from a tab (docs/PROTOCOL.md "ORDB"): seeding, DB_INFO
//! between linked tabs, the ORDB role (`service::ordb`, fed with this
//! tab's router events and mux events), and `download`: circuits through
//! tabs to ORDBs, driven by the scheduler (`content::schedule`).

use std::collections::{BTreeMap, BTreeSet};

use crate::cell::peersm::db_info_flags;
use crate::cell::ControlMessage;
use crate::client::MuxEvent;
use crate::content::merkle::Hash;
use crate::content::schedule::{Action, ScheduleStats, Scheduler};
use crate::content::{HashName, Manifest};
use crate::crypto::PeerId;
use crate::router::CircuitKey;
use crate::service::ordb::{LinkedPeer, OrdbEvent};

use super::pool::{OrdbCircuits, PoolEvent};
use super::tasks::{Kind, OpKind, Parent, TaskId, TaskInput, TaskResult};
use super::{LinkId, OpError, TabEvent, TabPeer};

/// Hops between the downloader and an ORDB by default: the ORDB is the
/// second tab of the circuit, so it never sees the downloader's link.
pub const DEFAULT_DOWNLOAD_HOPS: usize = 2;
pub(super) const PROGRESS_EVERY_MS: u64 = 100;
/// Shares of the file at which a downloader advertises it (DB_INFO).
const ANNOUNCE_AT: [u8; 4] = [25, 50, 75, 100];
/// Links a holder asks to STORE themselves in the DHT for a file.
pub const STORERS_PER_FILE: usize = 3;

/// A seeded or downloaded file, as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedFile {
    pub hash_name: HashName,
    pub size: u64,
    pub mime: String,
    pub name: String,
    /// The manifest, to keep with the blocks (a reload reseeds from it).
    pub manifest: Vec<u8>,
}

impl SharedFile {
    fn of(m: &Manifest) -> Self {
        SharedFile {
            hash_name: m.hash_name(),
            size: m.size,
            mime: m.mime.clone(),
            name: m.name.clone(),
            manifest: m.encode(),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct DownloadOptions {
    /// Tabs in each circuit, the ORDB last (default 2).
    pub hops: Option<usize>,
    /// When resuming: the manifest and the blocks stored, with their
    /// audit paths.
    pub manifest: Option<Vec<u8>>,
    pub have: Vec<(u32, Vec<Hash>)>,
    /// The largest file to accept (default `DEFAULT_MAX_DOWNLOAD`): a
    /// bigger one ends the download when its manifest comes.
    pub max_size: Option<u64>,
}

/// Files a tab accepts by default: what a browser profile can usually
/// store, and a bound on what a link can make the tab allocate.
pub const DEFAULT_MAX_DOWNLOAD: u64 = 4 << 30;

/// A finished download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    pub file: SharedFile,
    pub ms: u64,
    /// Circuits opened to ORDBs.
    pub circuits: u64,
    /// The ORDBs those circuits ended at (each may have relayed further).
    pub sources: Vec<PeerId>,
    pub stats: ScheduleStats,
}

pub(super) struct DownloadTask {
    sched: Scheduler,
    hash_name: HashName,
    /// Our circuits to ORDBs.
    circuits: OrdbCircuits,
    manifest_told: bool,
    started: u64,
    last_progress: u64,
    last_received: u64,
    speed: u64,
    announced: u8,
    /// Audit paths of blocks handed to the store, until it has them.
    paths: BTreeMap<u32, Vec<Hash>>,
}

impl TabPeer {
    // --- seeding ---

    /// Seeds a file of `size` bytes whose blocks hash to `leaves`
    /// (`content::merkle::leaf_hash` of each `BLOCK_LEN` block): signs its
    /// manifest with a key made for it, serves it, and tells linked tabs.
    pub fn seed(
        &mut self,
        size: u64,
        leaves: Vec<Hash>,
        mime: &str,
        name: &str,
        now: u64,
    ) -> Result<SharedFile, OpError> {
        self.now = now.max(self.now);
        let secret: [u8; 32] = crate::rng::random_bytes(&mut self.rng)
            .map_err(|_| OpError::Fetch("randomness".into()))?;
        // A name with bidirectional controls is shown other than it is.
        let name = crate::content::manifest::clean_name(name);
        let manifest = Manifest::sign(size, &leaves, mime, &name, &secret)
            .map_err(|e| OpError::BadAnswer(e.to_string()))?;
        self.add_seed(manifest, leaves)
    }

    /// Seeds again a file seeded before (after a reload): its manifest
    /// and leaf hashes as stored.
    pub fn reseed(
        &mut self,
        manifest: &[u8],
        leaves: Vec<Hash>,
        now: u64,
    ) -> Result<SharedFile, OpError> {
        self.now = now.max(self.now);
        let m = Manifest::decode(manifest).map_err(|e| OpError::BadAnswer(e.to_string()))?;
        if crate::content::merkle::root(&leaves) != m.root || leaves.len() as u64 != m.blocks() {
            return Err(OpError::BadAnswer(
                "the stored blocks are not this file's".into(),
            ));
        }
        self.add_seed(m, leaves)
    }

    fn add_seed(&mut self, m: Manifest, leaves: Vec<Hash>) -> Result<SharedFile, OpError> {
        let file = SharedFile::of(&m);
        let h = self.ordb.library.add_seed(m, leaves);
        self.announce(h, 100);
        self.after_input();
        Ok(file)
    }

    /// Serves again a file whose blocks were downloaded before (after a
    /// reload): its manifest and the blocks held, with their audit paths.
    /// A partial copy is served for the blocks it has; `download` resumes
    /// it.
    pub fn restore(
        &mut self,
        manifest: &[u8],
        have: Vec<(u32, Vec<Hash>)>,
        now: u64,
    ) -> Result<SharedFile, OpError> {
        self.now = now.max(self.now);
        let m = Manifest::decode(manifest).map_err(|e| OpError::BadAnswer(e.to_string()))?;
        let file = SharedFile::of(&m);
        for (block, path) in have {
            self.ordb.library.add_block(&m, block, path);
        }
        if let Some(mark) = self.announce_mark(&file.hash_name) {
            self.announce(file.hash_name, mark);
        }
        self.after_input();
        Ok(file)
    }

    /// Stops serving a file (its blocks stay with the platform).
    pub fn unshare(&mut self, h: &HashName) -> bool {
        self.ordb.library.remove(h)
    }

    /// What this tab serves or relays: hash_name and the percent held.
    pub fn shared(&self) -> Vec<(HashName, u8)> {
        self.ordb.known()
    }

    pub fn ordb_stats(&self) -> crate::service::ordb::OrdbStats {
        self.ordb.stats()
    }

    /// DB_INFO to every linked tab that has not heard of `h` from us.
    pub(super) fn announce(&mut self, h: HashName, percent: u8) {
        let open = self.open_links();
        let links: Vec<LinkId> = open.iter().map(|(_, l, _)| *l).collect();
        let fresh = if percent == 100 {
            // A complete copy is news to everyone, even those who heard
            // we were fetching it.
            links
        } else {
            self.ordb.untold(h, &links)
        };
        self.send_info(h, percent, 0, &fresh);
    }

    pub(super) fn send_info(&mut self, h: HashName, percent: u8, hops: u8, links: &[LinkId]) {
        self.send_info_storing(h, percent, hops, hops == 0, links);
    }

    /// `send_info`; `store`: a first holder's, which asks a few links to
    /// STORE it in the DHT.
    pub(super) fn send_info_storing(
        &mut self,
        h: HashName,
        percent: u8,
        hops: u8,
        store: bool,
        links: &[LinkId],
    ) {
        let open = self.open_links();
        // A holder asks a few of its links to STORE themselves in the DHT
        // (S flag): enough to be found, not one lookup per link.
        let mut storers = std::collections::BTreeSet::new();
        if store {
            let kept = self.storers.entry(h).or_default();
            kept.retain(|l| open.iter().any(|(_, o, _)| o == l));
            for (_, link, _) in &open {
                if links.contains(link) && kept.len() < STORERS_PER_FILE {
                    kept.insert(*link);
                }
            }
            storers = kept.clone();
        }
        for (peer, link, ntor) in open {
            if !links.contains(&link) {
                continue;
            }
            let flags = if store && storers.contains(&link) {
                db_info_flags::STORE
            } else {
                0
            };
            let info = ControlMessage::DbInfo {
                hash_name: h.0,
                kind: u8::from(self.ordb.is_live(&h)),
                percent,
                hops,
                flags,
            };
            let p = LinkedPeer {
                link,
                id: peer.0,
                ntor,
            };
            match self.ordb.circuit_to(&mut self.core, p) {
                Some((circ, true)) => {
                    if let Some(m) = self.core.mux(link) {
                        let _ = m.send_control(circ, &info);
                    }
                }
                Some((circ, false)) => self
                    .pending_infos
                    .entry((link, circ))
                    .or_default()
                    .push(info.clone()),
                None => {}
            }
        }
    }

    /// DB_INFO for every file we hold or relay, to a link just opened.
    pub(super) fn tell_new_link(&mut self, link: LinkId) {
        for (h, percent, hops) in self.ordb.references_for(link) {
            self.send_info(h, percent, hops, &[link]);
        }
    }

    /// A linked tab told us it can answer for a file.
    pub(super) fn on_db_info(
        &mut self,
        circuit: CircuitKey<LinkId>,
        h: HashName,
        hops: u8,
        flags: u8,
    ) {
        let Some((peer, link, ntor)) = self
            .open_links()
            .into_iter()
            .find(|(_, l, _)| *l == circuit.link)
        else {
            return;
        };
        let links: Vec<LinkId> = self
            .open_links()
            .iter()
            .map(|(_, l, _)| *l)
            .filter(|l| *l != link)
            .collect();
        let from = LinkedPeer {
            link,
            id: peer.0,
            ntor,
        };
        if let Some((onward, onward_hops)) = self.ordb.add_reference(h, from, hops, &links) {
            self.send_info(h, 0, onward_hops, &onward);
        }
        if hops == 0 && flags & db_info_flags::STORE != 0 {
            // Next to a holder, which asked: the DHT tells the rest of
            // the mesh that we can answer.
            self.store_reference(h);
        }
    }

    /// A mux event on one of the ORDB's circuits: handled there.
    pub(super) fn ordb_mux_event(&mut self, link: LinkId, event: &MuxEvent) -> bool {
        if let MuxEvent::HopAdded { circ, .. } = event {
            for info in self
                .pending_infos
                .remove(&(link, *circ))
                .unwrap_or_default()
            {
                if let Some(m) = self.core.mux(link) {
                    let _ = m.send_control(*circ, &info);
                }
            }
        }
        if let MuxEvent::CircuitClosed { circ, .. } | MuxEvent::HopFailed { circ, .. } = event {
            self.pending_infos.remove(&(link, *circ));
        }
        self.ordb.handle_mux_event(&mut self.core, link, event)
    }

    pub(super) fn ordb_events(&mut self) {
        while let Some(e) = self.ordb.poll_event() {
            match e {
                OrdbEvent::ReadBlock {
                    request,
                    hash_name,
                    block,
                } => self.events.push_back(TabEvent::ReadBlock {
                    request,
                    hash_name,
                    block,
                }),
                OrdbEvent::FindSources { hash_name } => self.find_sources(hash_name),
            }
        }
    }

    /// The platform read a block the ORDB asked for (`TabEvent::ReadBlock`).
    pub fn handle_block(&mut self, request: u64, data: Result<Vec<u8>, String>, now: u64) {
        self.now = now.max(self.now);
        self.ordb.handle_block(&mut self.core, request, data);
        self.after_input();
    }

    // --- downloading ---

    /// Downloads `hash_name` through ORDBs; completes as
    /// `Outcome::Downloaded`. Blocks go to the platform as they are
    /// verified (`TabEvent::StoreBlock`, answered by `handle_block_stored`).
    pub fn download(&mut self, hash_name: HashName, options: DownloadOptions, now: u64) -> u64 {
        self.now = now.max(self.now);
        let manifest = options
            .manifest
            .as_deref()
            .and_then(|b| Manifest::decode_for(b, &hash_name).ok());
        let have: BTreeSet<u32> = options.have.iter().map(|(b, _)| *b).collect();
        if let Some(m) = &manifest {
            for (block, path) in options.have {
                self.ordb.library.add_block(m, block, path);
            }
        }
        let task = DownloadTask {
            sched: Scheduler::new(hash_name, manifest, &have)
                .with_max_size(options.max_size.unwrap_or(DEFAULT_MAX_DOWNLOAD)),
            hash_name,
            circuits: OrdbCircuits::new(options.hops.unwrap_or(DEFAULT_DOWNLOAD_HOPS)),
            manifest_told: false,
            started: self.now,
            last_progress: 0,
            last_received: 0,
            speed: 0,
            announced: 0,
            paths: BTreeMap::new(),
        };
        let id = self.new_download_task(task);
        self.task_input(id, TaskInput::Timeout);
        self.after_input();
        id
    }

    /// The platform stored block `block` of download `op`.
    pub fn handle_block_stored(&mut self, op: u64, block: u32, now: u64) {
        self.now = now.max(self.now);
        self.task_input(op, TaskInput::BlockStored(block));
        self.after_input();
    }

    /// The platform could not store a block of download `op` (its storage
    /// is full, say): the download ends with that reason.
    pub fn handle_block_store_failed(&mut self, op: u64, block: u32, why: &str, now: u64) {
        self.now = now.max(self.now);
        self.task_input(
            op,
            TaskInput::StoreFailed(format!("block {block} could not be stored: {why}")),
        );
        self.after_input();
    }

    /// A player of download `op` needs block `block` and those after it
    /// first (docs/PROTOCOL.md "Streaming"): they are asked for next.
    pub fn prioritize_download(&mut self, op: u64, block: u32, now: u64) {
        self.now = now.max(self.now);
        self.task_input(op, TaskInput::Prioritize(block));
        self.after_input();
    }

    /// Asks download `op` for `blocks` before the rest, without moving
    /// where it fetches from (a player's index at the end of the file).
    pub fn prefetch_download(&mut self, op: u64, blocks: Vec<u32>, now: u64) {
        self.now = now.max(self.now);
        self.task_input(op, TaskInput::WantAlso(blocks));
        self.after_input();
    }

    /// Asks download `op` for blocks `from..=last` alone (a seek's, until
    /// it plays: `unfocus_download`; `Scheduler::focus`).
    pub fn focus_download(&mut self, op: u64, from: u32, last: u32, now: u64) {
        self.now = now.max(self.now);
        self.task_input(op, TaskInput::Focus { from, last });
        self.after_input();
    }

    /// The seek of `focus_download` plays: download `op` goes on with the
    /// rest of the file.
    pub fn unfocus_download(&mut self, op: u64, now: u64) {
        self.now = now.max(self.now);
        self.task_input(op, TaskInput::Unfocus);
        self.after_input();
    }

    /// Ends download `op` (its circuits close); it completes as failed.
    pub fn cancel_download(&mut self, op: u64, now: u64) {
        self.now = now.max(self.now);
        self.task_input(op, TaskInput::StoreFailed("cancelled".into()));
        self.after_input();
    }

    pub(super) fn download_step(
        &mut self,
        id: TaskId,
        d: &mut DownloadTask,
        input: TaskInput,
    ) -> Option<TaskResult> {
        let now = self.now;
        match input {
            TaskInput::Timeout => d.sched.tick(now),
            TaskInput::BlockStored(block) => {
                d.sched.stored(block, now);
                if let Some(m) = d.sched.manifest().cloned() {
                    self.ordb_block_stored(d, &m, block);
                }
            }
            TaskInput::Child(child, result) => {
                match d.circuits.child_done(self, id, child, *result) {
                    Ok(Some(source)) => d.sched.add_source(source, now),
                    Ok(None) => {}
                    Err(e) => return Some(d.fail(self, e)),
                }
            }
            TaskInput::Mux(link, event) => {
                if let Err(e) = self.download_event(d, link, event) {
                    return Some(d.fail(self, e));
                }
            }
            TaskInput::Prioritize(block) => d.sched.prioritize(block, now),
            TaskInput::WantAlso(blocks) => d.sched.want_also(blocks, now),
            TaskInput::Focus { from, last } => d.sched.focus(from, last, now),
            TaskInput::Unfocus => d.sched.unfocus(now),
            TaskInput::Stored => {}
            TaskInput::StoreFailed(why) => return Some(d.fail(self, OpError::Fetch(why))),
        }
        if let Some(e) = d.sched.failure() {
            let e = OpError::Fetch(e.to_string());
            return Some(d.fail(self, e));
        }
        if !d.manifest_told {
            if let Some(m) = d.sched.manifest() {
                d.manifest_told = true;
                let file = SharedFile::of(m);
                self.events
                    .push_back(TabEvent::DownloadManifest { op: id, file });
            }
        }
        if let Err(e) = self.download_actions(id, d) {
            return Some(TaskResult::Failed(e));
        }
        self.download_progress(id, d, false);
        if d.sched.is_complete() {
            self.download_progress(id, d, true);
            let m = d.sched.manifest()?.clone();
            return Some(TaskResult::Downloaded(Box::new(Downloaded {
                file: SharedFile::of(&m),
                ms: now.saturating_sub(d.started),
                circuits: d.circuits.opened,
                sources: d.circuits.ordbs.iter().copied().collect(),
                stats: d.sched.stats(),
            })));
        }
        let mut tick = d.sched.next_tick(now).unwrap_or(now + 1000).max(now + 1);
        if d.circuits.next_build_at > now {
            tick = tick.min(d.circuits.next_build_at);
        }
        self.deadline_changes.push((id, Some(tick.min(now + 1000))));
        None
    }

    fn download_event(
        &mut self,
        d: &mut DownloadTask,
        link: LinkId,
        event: MuxEvent,
    ) -> Result<(), OpError> {
        let now = self.now;
        match d.circuits.event(self, link, event) {
            Some(PoolEvent::Connected {
                source,
                block,
                answer,
            }) => d.sched.on_connected(source, block, answer, now),
            Some(PoolEvent::Data {
                source,
                block,
                data,
            }) => d.sched.on_data(source, block, &data, now),
            Some(PoolEvent::Ended {
                source,
                block,
                reason,
            }) => d
                .sched
                .on_end(source, block, reason, now)
                .map_err(|e| OpError::Fetch(e.to_string()))?,
            Some(PoolEvent::Lost(source)) => d.sched.source_lost(source, now),
            None => {}
        }
        Ok(())
    }

    fn download_actions(&mut self, id: TaskId, d: &mut DownloadTask) -> Result<(), OpError> {
        while let Some(action) = d.sched.poll_action() {
            match action {
                Action::Query { source, query } => {
                    if !d.circuits.query(self, id, source, &query) {
                        d.sched.source_lost(source, self.now);
                    }
                }
                Action::Drop { source, why } => {
                    tracing::debug!("download: dropping a circuit: {why}");
                    d.circuits.drop(self, source);
                }
                Action::Cancel { source, block } => d.circuits.cancel(self, source, block),
                Action::Store { block, data, path } => {
                    d.paths.insert(block, path.clone());
                    self.events.push_back(TabEvent::StoreBlock {
                        op: id,
                        hash_name: d.hash_name,
                        block,
                        data,
                        path,
                    });
                }
            }
        }
        let wanted = d.sched.wanted_sources(d.circuits.building(), self.now);
        d.circuits.build(self, id, wanted)
    }

    /// The highest of 25, 50, 75, 100 % that we hold of `h`, if any.
    fn announce_mark(&self, h: &HashName) -> Option<u8> {
        let percent = self.ordb.library.get(h).map_or(0, |held| held.percent());
        ANNOUNCE_AT.iter().rev().copied().find(|&a| percent >= a)
    }

    /// A verified block is stored: we serve it, and tell linked tabs at
    /// 25, 50, 75 and 100 %.
    fn ordb_block_stored(&mut self, d: &mut DownloadTask, m: &Manifest, block: u32) {
        let path = d.paths.remove(&block).unwrap_or_default();
        self.ordb.library.add_block(m, block, path);
        if let Some(mark) = self.announce_mark(&d.hash_name) {
            if mark > d.announced {
                d.announced = mark;
                self.announce(d.hash_name, mark);
            }
        }
    }

    fn download_progress(&mut self, id: TaskId, d: &mut DownloadTask, last: bool) {
        let now = self.now;
        if !last && now < d.last_progress + PROGRESS_EVERY_MS {
            return;
        }
        let (received, total) = d.sched.progress();
        let dt = now.saturating_sub(d.last_progress).max(1);
        let instant = received.saturating_sub(d.last_received) * 1000 / dt;
        d.speed = if d.last_progress == 0 {
            instant
        } else {
            (d.speed * 3 + instant) / 4
        };
        d.last_progress = now;
        d.last_received = received;
        self.events.push_back(TabEvent::DownloadProgress {
            op: id,
            received,
            total,
            speed: d.speed,
            circuits: d.circuits.len(),
        });
    }

    fn new_download_task(&mut self, task: DownloadTask) -> TaskId {
        let id = self.next_task;
        self.next_task += 1;
        self.tasks.insert(
            id,
            super::tasks::Task {
                parent: Parent::Op(OpKind::Download),
                deadline: None,
                kind: Kind::Download(Box::new(task)),
            },
        );
        id
    }
}

impl DownloadTask {
    /// Ends the download: its circuits close.
    fn fail(&mut self, tab: &mut TabPeer, e: OpError) -> TaskResult {
        self.circuits.close_all(tab);
        TaskResult::Failed(e)
    }
}
