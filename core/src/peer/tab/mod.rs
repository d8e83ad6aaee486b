//! The tab, sans IO: everything a browser tab does in the network except
//! touching the browser. It links to a bridge (WebSocket) and to other
//! tabs (WebRTC data channels), is an onion router for them, builds
//! circuits through tabs and through the bridge's relays, runs Kademlia
//! lookups with `ALPHA` queries in flight, keeps its routing table fresh,
//! and downloads with resume. The web adapter and the simulation drive
//! the very same code.
//!
//! Inputs: `bridge_opened`, `handle_frame`, `handle_link_closed`,
//! `handle_local_sdp`, `handle_channel_open`, `handle_link_congested`,
//! `handle_signature`,
//! `handle_stored`, `handle_timeout`, and commands (`build_tab_circuit`,
//! `find_node`, `fetch`, …) that complete later as `TabEvent::Done`.
//! Outputs: `poll_transmit` (frames for a link), `poll_event` (what the
//! platform must do: sign, make or apply an SDP, close a link, store body
//! bytes), `poll_timeout`.
//!
//! Files: `bridge.rs` (the bridge link, the control circuit, joining the
//! mesh), `links.rs` (links to tabs: offers, answers, glare, handshakes),
//! `serve.rs` (what we answer as a hop: FIND_NODE, introductions),
//! `tasks.rs` (circuits along routes, circuits through tabs, lookups, GETs
//! on circuits), `fetch.rs` (`peer.fetch` through the bridge's relays),
//! `share.rs` (seeding, downloading, the ORDB's DB_INFO), `values.rs`
//! (FIND_VALUE and STORE), `fairness.rs` (the freerider rule).

mod bridge;
mod fairness;
mod fetch;
mod links;
mod live;
mod pool;
mod serve;
mod share;
mod tasks;
#[cfg(test)]
mod tests;
mod values;
mod warm;
mod web_live;

use std::collections::{BTreeMap, VecDeque};

use crate::cell::ControlMessage;
use crate::cell::{CircIdLen, RawCell};
use crate::channel::{encode_cells, ntor_key_message};
use crate::client::MuxEvent;
use crate::content::merkle::Hash;
use crate::content::HashName;
use crate::crypto::ntor::NtorRelayKey;
use crate::crypto::{PeerId, RsaIdentityKey};
use crate::dht::RoutingTable;
use crate::dir::relay_list::ListedRelay;
use crate::peer::core::{CoreEvent, PeerCore, Queued};
use crate::peer::limits::{BucketPerKey, TokenBucket};
use crate::rng::{random_bytes, KeystreamRng, Rng};
use crate::router::{RouterConfig, RouterEvent};
use crate::service::ordb::Ordb;
use crate::service::{DirRoutes, Services};

pub use fetch::{FetchOptions, Fetched};
pub use links::{
    fingerprint_of, same_fingerprint, LinkStatus, LocalSdp, KEEPALIVE_MS, LINK_SILENT_MS,
};
pub use live::{LiveOptions, LiveStream};
pub use share::{
    DownloadOptions, Downloaded, SharedFile, DEFAULT_DOWNLOAD_HOPS, DEFAULT_MAX_DOWNLOAD,
};
pub use tasks::{LookupOutcome, OwnCircuit};
pub use web_live::{web_live_name, WebLiveOptions};

use bridge::BridgeLink;
use links::TabLink;
use tasks::{Task, TaskId, TaskInput};

/// A link of this tab: the bridge's WebSocket or a data channel to a tab.
pub type LinkId = u32;

/// Cells per frame we send: about 16 KiB (docs/PROTOCOL.md "Framing").
pub const CELLS_PER_FRAME: usize = 31;
/// Links a tab opens by itself when it joins, unless told otherwise.
pub const DEFAULT_JOIN_LINKS: usize = 8;
/// Default bucket refresh period.
pub const DEFAULT_REFRESH_MS: u64 = 60_000;
/// Circuits another tab may have through us at once.
const MAX_CIRCUITS_PER_LINK: usize = 256;
/// Bytes of frames that may wait in the tab for a link to another tab
/// whose data channel does not drain (`handle_link_congested`) before the
/// link is dropped. Honest circuits keep far less waiting (their SENDME
/// windows: ~500 kB each); circuits through us whose two ends ignore the
/// windows, toward a peer that stopped reading, could otherwise grow it
/// without bound (C tor's out-of-memory handler plays this part).
pub const DEFAULT_MAX_LINK_BACKLOG: usize = 8 << 20;

#[derive(Debug, Clone)]
pub struct TabConfig {
    /// The session identity's public key (DER SPKI); the private key stays
    /// with the platform, which answers `TabEvent::Sign`.
    pub spki: Vec<u8>,
    /// Join the mesh through the bridge (link to other tabs).
    pub mesh: bool,
    /// How many of the peers the bridge names to link to when joining.
    pub join_links: usize,
    /// Routing-table bucket refresh period, ms.
    pub refresh_ms: u64,
    /// Introductions to peers found by lookups go through the tab that
    /// named them rather than through the bridge.
    pub introduce_via_peers: bool,
    /// Tests only: a freerider, which relays, serves and answers nothing
    /// (for the freerider rule's tests, docs/SECURITY.md).
    #[doc(hidden)]
    pub freerider: bool,
    /// Tests only: tabs this one never links to (so that an end-to-end
    /// test can make a downloader reach a seeder through other tabs).
    #[doc(hidden)]
    pub never_link: Vec<PeerId>,
    /// How many links DB_INFO travels from a holder of a file; beyond,
    /// FIND_VALUE finds it (`service::ordb::MAX_INFO_HOPS` by default).
    pub info_hops: u8,
    /// Keep a circuit to an ORDB built ahead (`warm.rs`), so that a
    /// download's first query goes at once. On by default.
    pub warm_circuits: bool,
    /// `DEFAULT_MAX_LINK_BACKLOG` unless a test sets it.
    pub max_link_backlog: usize,
}

impl TabConfig {
    pub fn new(spki: Vec<u8>) -> Self {
        TabConfig {
            spki,
            mesh: true,
            join_links: DEFAULT_JOIN_LINKS,
            refresh_ms: DEFAULT_REFRESH_MS,
            introduce_via_peers: false,
            freerider: false,
            never_link: Vec::new(),
            info_hops: crate::service::ordb::MAX_INFO_HOPS,
            warm_circuits: true,
            max_link_backlog: DEFAULT_MAX_LINK_BACKLOG,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TabError {
    #[error("the session identity key is unusable: {0}")]
    Identity(String),
    #[error("the random number generator failed")]
    Random,
}

/// Why an operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    #[error("not connected to a bridge")]
    NotConnected,
    #[error("no open link to another tab")]
    NoLinks,
    #[error("no such circuit")]
    NoCircuit,
    #[error("{0}")]
    Circuit(String),
    #[error("{0} timed out")]
    Timeout(&'static str),
    #[error("no path: {0}")]
    NoPath(String),
    #[error("bad answer: {0}")]
    BadAnswer(String),
    #[error("{0}")]
    Fetch(String),
}

/// What a finished operation produced.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    TabCircuit(Result<OwnCircuit, OpError>),
    /// An HTTP GET from a directory: status and body.
    DirGot(Result<(u16, Vec<u8>), OpError>),
    Found(Result<LookupOutcome, OpError>),
    Relays(Result<Vec<ListedRelay>, OpError>),
    /// A 3-hop circuit through the bridge, built and closed.
    BridgeCircuit(Result<Box<BridgeCircuitBuilt>, OpError>),
    Fetched(Result<Fetched, OpError>),
    Downloaded(Result<Box<Downloaded>, OpError>),
    /// A live stream no longer followed: cancelled (its figures), or
    /// silent for a minute.
    Followed(Result<crate::content::follow::FollowStats, OpError>),
}

/// A 3-hop circuit the tab built through its bridge (and closed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeCircuitBuilt {
    /// How long building took.
    pub ms: u64,
    pub middle: ListedRelay,
    pub exit: ListedRelay,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TabEvent {
    /// Sign `message` with the identity key (RSASSA-PKCS1-v1_5, SHA-256)
    /// and call `handle_signature(request, …)`.
    Sign { request: u64, message: Vec<u8> },
    /// Make a peer connection with one reliable data channel, create an
    /// offer, gather every candidate, then `handle_local_sdp`.
    CreateOffer { link: LinkId },
    /// Make a peer connection for this offer, create the answer, gather,
    /// then `handle_local_sdp`; the data channel comes from the offerer.
    AcceptOffer { link: LinkId, offer: String },
    /// The answer to our offer: apply it; the data channel opens.
    ApplyAnswer { link: LinkId, answer: String },
    /// Close this link's connection (the core is done with it).
    CloseLink { link: LinkId },
    /// The bridge link is open; the bridge proved this RSA identity.
    BridgeOpen { fingerprint: [u8; 20] },
    /// An operation finished.
    Done { op: u64, outcome: Outcome },
    /// A download's progress (at most every 100 ms, and at the end).
    FetchProgress {
        op: u64,
        received: u64,
        total: Option<u64>,
        attempt: u32,
    },
    /// Body bytes of a download, in order: store them, then
    /// `handle_stored(op)` (the download reads on only then).
    FetchBody { op: u64, data: Vec<u8> },
    /// Everything stored for this download is void: the body restarts.
    FetchRestart { op: u64 },
    /// The ORDB needs a block of a file we share: read it from the store
    /// and `handle_block(request, …)`.
    ReadBlock {
        request: u64,
        hash_name: HashName,
        block: u32,
    },
    /// A verified block of download `op`: store it with its audit path
    /// (a resumed download and our ORDB need both), then
    /// `handle_block_stored(op, block)`.
    StoreBlock {
        op: u64,
        hash_name: HashName,
        block: u32,
        data: Vec<u8>,
        path: Vec<Hash>,
    },
    /// Download `op` has its file's manifest, checked against the
    /// hash_name: keep it with the blocks (a reload resumes from both).
    DownloadManifest { op: u64, file: SharedFile },
    /// A `download`'s progress (at most every 100 ms, and at the end).
    DownloadProgress {
        op: u64,
        received: u64,
        total: Option<u64>,
        /// Bytes per second, smoothed.
        speed: u64,
        circuits: usize,
    },
    /// Live stream `op` is found: its type and initialization segment.
    LiveManifest { op: u64, stream: LiveStream },
    /// The next chunk of live stream `op`, verified, in order: append it.
    /// `gap`: chunks before it were skipped (it begins on a keyframe);
    /// `timestamp_ms` is when the publisher made it (its clock).
    LiveChunk {
        op: u64,
        seq: u64,
        timestamp_ms: u64,
        key: bool,
        gap: bool,
        data: Vec<u8>,
    },
}

/// What a tab shows other tabs so they can build circuits through it:
/// its ntor key signed by its identity (`PEERSM_NTOR_KEY`). The key
/// itself is the router's.
pub(crate) struct OnionKey {
    pub(crate) cert: Vec<u8>,
}

/// What a signature was asked for.
enum Signing {
    OnionKey,
    /// A link handshake's AUTHENTICATE.
    Handshake(LinkId),
    /// The DTLS binding of this link's local SDP.
    Binding(LinkId),
}

pub struct TabPeer {
    config: TabConfig,
    key: RsaIdentityKey,
    me: PeerId,
    core: PeerCore<LinkId>,
    rng: KeystreamRng,
    onion: Option<OnionKey>,
    /// The ntor key waiting for its signature.
    unsigned_ntor: Option<NtorRelayKey>,
    bridge: Option<BridgeLink>,
    links: BTreeMap<LinkId, TabLink>,
    by_peer: BTreeMap<PeerId, LinkId>,
    routing: RoutingTable<()>,
    tasks: BTreeMap<TaskId, Task>,
    /// Tasks being stepped (out of `tasks`), and inputs that reached them
    /// meanwhile.
    stepping: std::collections::BTreeSet<TaskId>,
    deferred: VecDeque<(TaskId, TaskInput)>,
    /// New deadlines set by tasks while being stepped.
    deadline_changes: Vec<(TaskId, Option<u64>)>,
    /// Our circuits' owners, and our streams' owners.
    circ_owners: BTreeMap<(LinkId, u32), TaskId>,
    stream_owners: BTreeMap<(LinkId, u32, u16), TaskId>,
    /// Circuits this tab built through tabs and keeps (`peer.circuits()`).
    own_circuits: BTreeMap<u32, OwnCircuit>,
    signing: BTreeMap<u64, Signing>,
    /// Frames per link, in order; held while a data channel is not open.
    frames: VecDeque<(LinkId, Vec<u8>)>,
    events: VecDeque<TabEvent>,
    next_link: LinkId,
    next_task: TaskId,
    next_request: u64,
    next_own: u32,
    now: u64,
    next_refresh: u64,
    /// Control messages that end here, per link (FIND_NODE answers are
    /// ~4 KB for a 1-cell request; control cells have no SENDME window).
    control_budget: BucketPerKey<LinkId>,
    /// Offers we answer (each costs an RTCPeerConnection), from anyone.
    introductions: TokenBucket,
    /// Offers refused under `introductions`.
    introductions_refused: u64,
    /// The ORDB role: what we serve and relay (`service::ordb`).
    ordb: Ordb<LinkId>,
    /// DB_INFO waiting for its one-hop circuit to be built.
    pending_infos: BTreeMap<(LinkId, u32), Vec<ControlMessage>>,
    /// DHT values we keep for others (STORE), by hash_name and kind.
    values: crate::dht::ValueStore<crate::cell::peersm::NodeInfo>,
    /// Files we STOREd ourselves for (next to a holder), and when.
    published: BTreeMap<HashName, u64>,
    /// Files our ORDB looks for sources of: lookups and circuits pending.
    finding: BTreeMap<HashName, usize>,
    /// Live streams we publish: their keys.
    publishing: BTreeMap<HashName, live::Publishing>,
    warm: warm::Warm,
    /// Per file we hold, the links we asked to STORE themselves for it.
    storers: BTreeMap<HashName, std::collections::BTreeSet<LinkId>>,
    /// What each linked tab took and gave (the freerider rule).
    fairness: BTreeMap<LinkId, fairness::Fairness>,
    /// Tabs whose links we closed as freeriders (the last 64).
    freeriders: VecDeque<PeerId>,
    /// A link to a tab has closed since we joined (tabs left): only then
    /// does a tab short of links ask its bridge again.
    lost_links: bool,
    /// A linked tab took `FREE_CELLS` more: check it.
    fairness_due: bool,
}

/// Per link: control messages served at once, then per second.
pub const CONTROL_BURST: u32 = 64;
pub const CONTROL_PER_SECOND: u32 = 16;
/// Introductions answered at once, then per second (from all introducers).
pub const INTRODUCTION_BURST: u32 = 16;
pub const INTRODUCTIONS_PER_SECOND: u32 = 1;

/// What this tab refused under its rate limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Refused {
    pub control_messages: u64,
    pub introductions: u64,
}

impl TabPeer {
    /// A tab whose identity is `config.spki`; `rng` seeds its randomness.
    /// It asks at once for the signature of its ntor key.
    pub fn new(config: TabConfig, rng: &mut dyn Rng, now: u64) -> Result<TabPeer, TabError> {
        let warm_circuits = config.warm_circuits;
        let key = RsaIdentityKey::from_spki(&config.spki)
            .map_err(|e| TabError::Identity(e.to_string()))?;
        let me = key.id();
        let mut router = RouterConfig::new(Vec::new());
        router.can_open_links = false;
        router.max_circuits_per_link = if config.freerider {
            0
        } else {
            MAX_CIRCUITS_PER_LINK
        };
        let routes = DirRoutes {
            info: Some(format!("peersm tab {}\n", me.to_hex())),
            test_bytes: true,
            ..Default::default()
        };
        let core = PeerCore::new(router, Services::new(Some(routes), None), rng)
            .map_err(|_| TabError::Random)?;
        let mut own_rng = KeystreamRng::seeded_from(rng).map_err(|_| TabError::Random)?;
        let secret: [u8; 32] = random_bytes(&mut own_rng).map_err(|_| TabError::Random)?;
        let ntor = NtorRelayKey::new(me.0, secret);
        let mut tab = TabPeer {
            next_refresh: now.saturating_add(config.refresh_ms.max(1000)),
            config,
            key,
            me,
            core,
            rng: own_rng,
            onion: None,
            unsigned_ntor: None,
            bridge: None,
            links: BTreeMap::new(),
            by_peer: BTreeMap::new(),
            routing: RoutingTable::new(me),
            tasks: BTreeMap::new(),
            stepping: Default::default(),
            deferred: VecDeque::new(),
            deadline_changes: Vec::new(),
            circ_owners: BTreeMap::new(),
            stream_owners: BTreeMap::new(),
            own_circuits: BTreeMap::new(),
            signing: BTreeMap::new(),
            frames: VecDeque::new(),
            events: VecDeque::new(),
            next_link: 1,
            next_task: 1,
            next_request: 1,
            next_own: 1,
            now,
            control_budget: BucketPerKey::new(CONTROL_BURST, CONTROL_PER_SECOND),
            introductions: TokenBucket::new(INTRODUCTION_BURST, INTRODUCTIONS_PER_SECOND, now),
            introductions_refused: 0,
            ordb: Ordb::default(),
            pending_infos: BTreeMap::new(),
            values: crate::dht::ValueStore::new(me),
            published: BTreeMap::new(),
            finding: BTreeMap::new(),
            storers: BTreeMap::new(),
            publishing: BTreeMap::new(),
            warm: warm::Warm::new(warm_circuits),
            fairness: BTreeMap::new(),
            freeriders: VecDeque::new(),
            lost_links: false,
            fairness_due: false,
        };
        tab.ordb.set_info_hops(tab.config.info_hops);
        let message = ntor_key_message(&ntor.public);
        tab.unsigned_ntor = Some(ntor);
        tab.sign(Signing::OnionKey, message);
        Ok(tab)
    }

    pub fn id(&self) -> PeerId {
        self.me
    }

    pub fn modulus(&self) -> Vec<u8> {
        self.key.modulus()
    }

    pub fn config(&self) -> &TabConfig {
        &self.config
    }

    /// The bridge's proven RSA identity, while linked to one.
    pub fn bridge_fingerprint(&self) -> Option<[u8; 20]> {
        self.bridge.as_ref().and_then(|b| b.fingerprint())
    }

    /// The Kademlia routing table (the peers we are linked to).
    pub fn routing_table(&self) -> &RoutingTable<()> {
        &self.routing
    }

    /// Bytes and cells waiting in this tab's queues.
    pub fn queued(&self) -> Queued {
        self.core.queued()
    }

    /// What the rate limits refused so far.
    pub fn refused(&self) -> Refused {
        Refused {
            control_messages: self.control_budget.refused(),
            introductions: self.introductions_refused,
        }
    }

    /// Tabs whose links this tab closed under the freerider rule.
    pub fn freeriders(&self) -> impl Iterator<Item = &PeerId> {
        self.freeriders.iter()
    }

    /// Circuits through this tab (as a hop for others).
    pub fn relayed_circuits(&self) -> usize {
        self.core.router.circuit_count()
    }

    pub fn poll_event(&mut self) -> Option<TabEvent> {
        self.events.pop_front()
    }

    /// The next frame to send: the link and its bytes.
    pub fn poll_transmit(&mut self) -> Option<(LinkId, Vec<u8>)> {
        let ready = self
            .frames
            .iter()
            .position(|(link, _)| self.channel_open(*link) && !self.congested(*link))?;
        let (link, frame) = self.frames.remove(ready)?;
        if let Some(l) = self.links.get_mut(&link) {
            l.last_sent = self.now;
            l.waiting_bytes = l.waiting_bytes.saturating_sub(frame.len());
        }
        Some((link, frame))
    }

    /// When `handle_timeout` wants to be called next (ms).
    pub fn poll_timeout(&self) -> Option<u64> {
        let tasks = self.tasks.values().filter_map(|t| t.deadline);
        let links = self
            .links
            .values()
            .flat_map(|l| [Some(l.deadline), l.upkeep_deadline()])
            .flatten()
            .filter(|d| *d < u64::MAX);
        let bridge = self.bridge.as_ref().and_then(|b| b.deadline());
        let refresh = self.mesh_running().then_some(self.next_refresh);
        let ordb = self.ordb.next_timeout();
        tasks
            .chain(links)
            .chain(bridge)
            .chain(refresh)
            .chain(ordb)
            .min()
    }

    /// Time passed: deadlines expire, stale buckets are refreshed.
    pub fn handle_timeout(&mut self, now: u64) {
        self.now = now.max(self.now);
        let due: Vec<TaskId> = self
            .tasks
            .iter()
            .filter(|(_, t)| t.deadline.is_some_and(|d| d <= self.now))
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.task_input(id, TaskInput::Timeout);
        }
        self.ordb.handle_timeout(&mut self.core, self.now);
        self.links_timeout();
        self.links_upkeep();
        self.bridge_timeout();
        self.prune_warm();
        if self.mesh_running() && self.next_refresh <= self.now {
            self.next_refresh = self.now + self.config.refresh_ms.max(1000);
            self.refresh();
            self.republish();
            self.rejoin_if_isolated();
        }
        self.after_input();
    }

    /// The platform signed (or could not).
    pub fn handle_signature(&mut self, request: u64, signature: Result<Vec<u8>, String>, now: u64) {
        self.now = now.max(self.now);
        match (self.signing.remove(&request), signature) {
            (Some(Signing::OnionKey), Ok(sig)) => {
                if let Some(ntor) = self.unsigned_ntor.take() {
                    let cert = crate::channel::ntor_key_cert(&ntor.public, &sig);
                    self.core.router.set_ntor_keys(vec![ntor]);
                    self.onion = Some(OnionKey { cert });
                    self.maybe_join();
                }
            }
            (Some(Signing::OnionKey), Err(e)) => {
                tracing::warn!("no onion key: {e}");
            }
            (Some(Signing::Handshake(link)), sig) => self.handshake_signed(link, sig),
            (Some(Signing::Binding(link)), sig) => self.binding_signed(link, sig),
            (None, _) => {}
        }
        self.after_input();
    }

    /// Bytes from a link: handshake frames, then frames of cells.
    pub fn handle_frame(&mut self, link: LinkId, frame: &[u8], now: u64) {
        self.now = now.max(self.now);
        if self.is_bridge(link) {
            self.bridge_frame(frame);
        } else {
            self.link_frame(link, frame);
        }
        self.after_input();
    }

    /// A link's connection is gone (closed, failed, or a peer vanished).
    pub fn handle_link_closed(&mut self, link: LinkId, why: &str, now: u64) {
        self.now = now.max(self.now);
        self.control_budget.forget(&link);
        if self.is_bridge(link) {
            self.bridge_closed(why);
        } else {
            self.drop_link(link, why, false);
        }
        self.after_input();
    }

    fn sign(&mut self, purpose: Signing, message: Vec<u8>) {
        let request = self.next_request;
        self.next_request += 1;
        self.signing.insert(request, purpose);
        self.events.push_back(TabEvent::Sign { request, message });
    }

    fn new_link_id(&mut self) -> LinkId {
        let id = self.next_link;
        self.next_link = self.next_link.wrapping_add(1).max(1);
        id
    }

    fn congested(&self, link: LinkId) -> bool {
        self.links
            .get(&link)
            .is_some_and(|l| l.congested_since.is_some())
    }

    fn channel_open(&self, link: LinkId) -> bool {
        if self.is_bridge(link) {
            return true;
        }
        self.links.get(&link).is_some_and(|l| l.channel_open)
    }

    fn mesh_running(&self) -> bool {
        self.config.mesh && self.onion.is_some()
    }

    /// Queues cells for a link as frames of whole cells.
    fn queue_cells(&mut self, link: LinkId, cells: &[RawCell]) {
        for batch in cells.chunks(CELLS_PER_FRAME) {
            match encode_cells(batch, CircIdLen::Four) {
                Ok(frame) => self.queue_frame(link, frame),
                Err(e) => tracing::warn!("cannot encode cells: {e}"),
            }
        }
    }

    /// Queues a frame for a link, counting what waits for a link to a tab.
    fn queue_frame(&mut self, link: LinkId, frame: Vec<u8>) {
        if let Some(l) = self.links.get_mut(&link) {
            l.waiting_bytes += frame.len();
        }
        self.frames.push_back((link, frame));
    }

    /// Drops the congested links with more than `max_link_backlog` bytes
    /// waiting (their channel does not drain; one that is not congested
    /// takes its frames as soon as this step ends).
    fn drop_overflowing_links(&mut self) -> bool {
        let max = self.config.max_link_backlog;
        let links: Vec<LinkId> = self
            .links
            .iter()
            .filter(|(_, l)| l.congested_since.is_some() && l.waiting_bytes > max)
            .map(|(id, _)| *id)
            .collect();
        for &link in &links {
            let waiting = self.links.get(&link).map_or(0, |l| l.waiting_bytes);
            let why = format!("its channel does not drain ({waiting} bytes waiting)");
            self.drop_link(link, &why, true);
        }
        !links.is_empty()
    }

    /// Bytes waiting in the tab for `link` (tests).
    #[cfg(test)]
    pub(crate) fn waiting_bytes(&self, link: LinkId) -> usize {
        self.links.get(&link).map_or(0, |l| l.waiting_bytes)
    }

    /// Links to tabs, open or not (tests).
    #[cfg(test)]
    pub(crate) fn link_ids(&self) -> Vec<LinkId> {
        self.links.keys().copied().collect()
    }

    /// After every input: act on what the core produced, then queue its
    /// cells. Events can cause more events; this runs until quiet.
    fn after_input(&mut self) {
        if self.mesh_running() {
            self.keep_warm();
        }
        for _ in 0..1000 {
            let mut busy = false;
            while let Some(e) = self.core.poll_event() {
                busy = true;
                self.on_core_event(e);
            }
            self.ordb_events();
            let out = self.core.transmit();
            busy |= !out.is_empty();
            for (link, cells) in out {
                self.count_sent(link, cells.iter().map(|c| c.circ_id));
                self.queue_cells(link, &cells);
            }
            busy |= self.drop_overflowing_links();
            if std::mem::take(&mut self.fairness_due) {
                self.check_fairness();
                busy = true;
            }
            if !busy {
                return;
            }
        }
    }

    fn on_core_event(&mut self, e: CoreEvent<LinkId>) {
        let e = match e {
            CoreEvent::Router(r) => {
                match self.ordb.handle_router_event(&mut self.core, r, self.now) {
                    Some(r) => CoreEvent::Router(r),
                    None => return,
                }
            }
            other => other,
        };
        match e {
            CoreEvent::Mux { link, event } => self.on_mux(link, event),
            CoreEvent::Router(RouterEvent::Control {
                circuit,
                message:
                    ControlMessage::DbInfo {
                        hash_name,
                        kind,
                        hops,
                        flags,
                        ..
                    },
            }) => {
                if self.control_budget.allow(circuit.link, self.now) {
                    if kind == 1 {
                        self.ordb.mark_live(HashName(hash_name));
                    }
                    self.on_db_info(circuit, HashName(hash_name), hops, flags)
                }
            }
            CoreEvent::Router(RouterEvent::Control { circuit, message }) => {
                if self.control_budget.allow(circuit.link, self.now) {
                    self.serve_control(circuit, message)
                }
            }
            // Tabs have no exit and open no links on demand; the router
            // already refused what needs either.
            CoreEvent::Router(_) | CoreEvent::Exit(_) => {}
        }
    }

    fn on_mux(&mut self, link: LinkId, event: MuxEvent) {
        if self.bridge_mux_event(link, &event) || self.ordb_mux_event(link, &event) {
            return;
        }
        let owner = match &event {
            MuxEvent::StreamOpened { circ, stream }
            | MuxEvent::DbConnected { circ, stream, .. }
            | MuxEvent::StreamReadable { circ, stream }
            | MuxEvent::StreamWritable { circ, stream }
            | MuxEvent::StreamEnded { circ, stream, .. } => {
                self.stream_owners.get(&(link, *circ, *stream)).copied()
            }
            MuxEvent::HopAdded { circ, .. }
            | MuxEvent::HopFailed { circ, .. }
            | MuxEvent::CircuitClosed { circ, .. }
            | MuxEvent::Control { circ, .. } => self.circ_owners.get(&(link, *circ)).copied(),
        };
        // A kept circuit that died stays listed, as closed, until the
        // page closes it (`tab_circuits` asks the mux whether it lives).
        if let Some(task) = owner {
            self.task_input(task, TaskInput::Mux(link, event));
        }
    }

    fn done(&mut self, op: u64, outcome: Outcome) {
        self.events.push_back(TabEvent::Done { op, outcome });
    }

    fn random_u64(&mut self) -> u64 {
        crate::rng::random_u64(&mut self.rng).unwrap_or(0)
    }
}
