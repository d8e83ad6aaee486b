//! The `Peer` JavaScript API: `await Peer.start({ bridges })`, `peer.id`,
//! `peer.status`, `peer.on('status', cb)`, `peer.fetch(url, options)`,
//! `peer.buildCircuit()`, `peer.relays()`, the mesh (`peers()`,
//! `routingTable()`, `buildTabCircuit`, `tabCircuitGet`, `findNode`,
//! `circuits()`), and files shared by hash_name (`seed`, `download`,
//! `stored`, `reseed`, `remove`, `shared`). It owns the session identity and keeps one WebSocket to
//! a bridge up, reconnecting with backoff; everything else is the core's
//! `TabPeer`, driven by `driver.rs`.

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Array, ArrayBuffer, Function, Uint8Array};
use peersm_core::crypto::PeerId;
use peersm_core::peer::tab::{OpError, Outcome, TabConfig, TabPeer, WebLiveOptions};
use serde::Deserialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{BinaryType, CloseEvent, MessageEvent, WebSocket};

use super::driver::{input, now, operation, pump, BridgeSocket, Driver, Shared};
use super::fetch::{self, FetchOptions, FetchResponse};
use super::files::FileStore;
use super::identity::SessionIdentity;
use super::js::{get, js_error, set, set_timeout};
use super::log;
use super::rtc::DtlsCertificate;
use super::share::{self, DownloadOptionsJs, SeedOptions, SharedDownload};

/// First reconnection delay; doubles each failed attempt up to the maximum.
const RECONNECT_BASE_MS: i32 = 500;
const RECONNECT_MAX_MS: i32 = 30_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerStatus {
    Connecting,
    Connected,
    Disconnected,
}

impl PeerStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PeerStatus::Connecting => "connecting",
            PeerStatus::Connected => "connected",
            PeerStatus::Disconnected => "disconnected",
        }
    }
}

/// A bridge: its WebSocket URL, optionally with the RSA fingerprint (hex)
/// it must prove.
#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum BridgeSpec {
    Url(String),
    Pinned { url: String, fingerprint: String },
}

impl BridgeSpec {
    fn url(&self) -> &str {
        match self {
            BridgeSpec::Url(u) | BridgeSpec::Pinned { url: u, .. } => u,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct StartOptions {
    bridges: Vec<BridgeSpec>,
    #[serde(default = "default_true")]
    reconnect: bool,
    /// Link to other tabs over WebRTC (introduced by the bridge).
    #[serde(default = "default_true")]
    mesh: bool,
    /// How many of the peers the bridge names to link to when joining.
    #[serde(default = "default_join_links")]
    join_links: usize,
    /// Routing-table bucket refresh period, ms.
    #[serde(default = "default_refresh_ms")]
    refresh_ms: i32,
    /// Who introduces us to peers found by lookups: 'bridge' (default) or
    /// 'peers' (the tab that named the peer).
    #[serde(default)]
    introducer: Option<String>,
    /// Tests only: serve corrupted blocks (downloaders must catch them).
    #[serde(default)]
    tamper: bool,
    /// Tests only: serve live chunks 'forged' (a byte flipped) or
    /// 'replayed' (the chunk before the one asked).
    #[serde(default)]
    tamper_live: Option<String>,
    /// Tests only: peer IDs this tab never links to.
    #[serde(default)]
    never_link: Vec<String>,
}

fn default_true() -> bool {
    true
}

fn default_join_links() -> usize {
    peersm_core::peer::tab::DEFAULT_JOIN_LINKS
}

fn default_refresh_ms() -> i32 {
    peersm_core::peer::tab::DEFAULT_REFRESH_MS as i32
}

struct Inner {
    identity: Rc<SessionIdentity>,
    bridges: Vec<(String, Option<[u8; 20]>)>,
    reconnect: bool,
    next_bridge: usize,
    failed_attempts: u32,
    status: PeerStatus,
    stopped: bool,
    listeners: Vec<(String, Function)>,
    /// The core and the browser objects around it.
    driver: Shared,
}

#[wasm_bindgen]
pub struct Peer {
    inner: Rc<RefCell<Inner>>,
}

fn op_error(what: &str, e: OpError) -> JsValue {
    js_error(&format!("{what}: {e}"))
}

fn stopped(what: &str) -> JsValue {
    js_error(&format!("{what}: the peer stopped"))
}

#[wasm_bindgen]
impl Peer {
    /// Generates this session's identity and starts connecting to the first
    /// bridge. Rejects on bad options or when WebCrypto is unavailable.
    pub async fn start(options: JsValue) -> Result<Peer, JsValue> {
        let options: StartOptions = serde_wasm_bindgen::from_value(options)
            .map_err(|e| js_error(&format!("Peer.start: bad options: {e}")))?;
        if options.bridges.is_empty() {
            return Err(js_error(
                "Peer.start: `bridges` must list at least one ws:// or wss:// URL",
            ));
        }
        let mut bridges = Vec::new();
        for b in &options.bridges {
            let url = b.url();
            if !(url.starts_with("ws://") || url.starts_with("wss://")) {
                return Err(js_error(&format!(
                    "Peer.start: bridge URL {url:?} is not ws:// or wss://"
                )));
            }
            let fingerprint = match b {
                BridgeSpec::Url(_) => None,
                BridgeSpec::Pinned { fingerprint, .. } => {
                    let mut id = [0u8; 20];
                    hex::decode_to_slice(fingerprint.trim(), &mut id).map_err(|_| {
                        js_error(&format!(
                            "Peer.start: bridge fingerprint {fingerprint:?} is not 40 hex characters"
                        ))
                    })?;
                    Some(id)
                }
            };
            bridges.push((url.to_string(), fingerprint));
        }
        let identity = Rc::new(SessionIdentity::generate().await?);
        log::info(&format!("session peer ID {}", identity.id()));
        let mut config = TabConfig::new(identity.spki().to_vec());
        config.mesh = options.mesh;
        config.join_links = options.join_links;
        config.refresh_ms = u64::try_from(options.refresh_ms.max(1000)).unwrap_or(60_000);
        config.introduce_via_peers = options.introducer.as_deref() == Some("peers");
        for id in &options.never_link {
            config.never_link.push(PeerId::from_hex(id).map_err(|_| {
                js_error(&format!("Peer.start: neverLink: {id:?} is not a peer ID"))
            })?);
        }
        let tab = TabPeer::new(config, &mut peersm_core::rng::OsRng, now())
            .map_err(|e| js_error(&format!("Peer.start: {e}")))?;
        let dtls = Rc::new(DtlsCertificate::generate().await?);
        // Shared files live in IndexedDB; without it the tab still runs,
        // and seeding or downloading says why it cannot.
        let files = match FileStore::open().await {
            Ok(f) => Some(Rc::new(f)),
            Err(e) => {
                log::warn(&format!("no IndexedDB for shared files: {e:?}"));
                None
            }
        };
        let driver = Driver::new(tab, identity.clone(), dtls, files);
        driver.borrow_mut().tamper = options.tamper;
        let live_tamper = match options.tamper_live.as_deref() {
            None => None,
            Some("forged") => Some(peersm_core::service::ordb::LiveTamper::Forge),
            Some("replayed") => Some(peersm_core::service::ordb::LiveTamper::Replay),
            Some(other) => {
                return Err(js_error(&format!(
                    "Peer.start: tamperLive must be 'forged' or 'replayed', not {other:?}"
                )))
            }
        };
        driver.borrow_mut().tab.tamper_live(live_tamper);
        let inner = Rc::new(RefCell::new(Inner {
            identity,
            bridges,
            reconnect: options.reconnect,
            next_bridge: 0,
            failed_attempts: 0,
            status: PeerStatus::Disconnected,
            stopped: false,
            listeners: Vec::new(),
            driver: driver.clone(),
        }));
        let weak = Rc::downgrade(&inner);
        driver.borrow_mut().on_bridge = Some(Rc::new(move |open: bool, why: String| {
            if let Some(inner) = weak.upgrade() {
                on_bridge(&inner, open, why);
            }
        }));
        pump(&driver);
        connect(&inner);
        Ok(Peer { inner })
    }

    fn driver(&self) -> Shared {
        self.inner.borrow().driver.clone()
    }

    /// The 40-hex-character peer ID: SHA-1 of the identity key's SPKI.
    #[wasm_bindgen(getter)]
    pub fn id(&self) -> String {
        self.inner.borrow().identity.id().to_hex()
    }

    /// The identity key's RSA modulus, hex.
    #[wasm_bindgen(getter)]
    pub fn modulus(&self) -> String {
        hex::encode(self.inner.borrow().identity.modulus())
    }

    /// 'connecting' | 'connected' | 'disconnected'.
    #[wasm_bindgen(getter)]
    pub fn status(&self) -> String {
        self.inner.borrow().status.as_str().to_string()
    }

    /// The bridge URL currently in use (or last tried).
    #[wasm_bindgen(getter)]
    pub fn bridge(&self) -> String {
        let inner = self.inner.borrow();
        let n = inner.bridges.len();
        inner
            .bridges
            .get((inner.next_bridge + n - 1) % n)
            .map(|(url, _)| url.clone())
            .unwrap_or_default()
    }

    /// The RSA fingerprint (hex) the connected bridge proved, or null.
    #[wasm_bindgen(getter, js_name = bridgeFingerprint)]
    pub fn bridge_fingerprint(&self) -> Option<String> {
        self.driver()
            .borrow()
            .tab
            .bridge_fingerprint()
            .map(hex::encode_upper)
    }

    /// This tab's links to other tabs: `[{ id, state, bridge }]`, state
    /// 'introducing' | 'connecting' | 'open'.
    pub fn peers(&self) -> Result<Array, JsValue> {
        let bridge = self.bridge();
        let out = Array::new();
        for (id, state) in self.driver().borrow().tab.links() {
            let o = js_sys::Object::new();
            set(&o, "id", &JsValue::from_str(&id.to_hex()))?;
            set(&o, "state", &JsValue::from_str(state.as_str()))?;
            set(&o, "bridge", &JsValue::from_str(&bridge))?;
            out.push(&o);
        }
        Ok(out)
    }

    /// Builds a circuit through `hops` other tabs (default 3) over WebRTC
    /// links: `{ id, hops: [peer IDs], ms }`. It stays open until
    /// `closeTabCircuit(id)` or until a tab on it goes away.
    #[wasm_bindgen(js_name = buildTabCircuit)]
    pub async fn build_tab_circuit(&self, hops: Option<u32>) -> Result<JsValue, JsValue> {
        let hops = hops.unwrap_or(3).clamp(1, 8) as usize;
        let started = js_sys::Date::now();
        let outcome = operation(&self.driver(), |tab, now| tab.build_tab_circuit(hops, now)).await;
        let c = match outcome {
            Some(Outcome::TabCircuit(r)) => r.map_err(|e| op_error("buildTabCircuit", e))?,
            _ => return Err(stopped("buildTabCircuit")),
        };
        let o = js_sys::Object::new();
        set(&o, "id", &JsValue::from(c.id))?;
        set(&o, "hops", &hops_array(&c.hops))?;
        set(&o, "ms", &JsValue::from(js_sys::Date::now() - started))?;
        Ok(o.into())
    }

    /// GET `path` from the directory of the circuit's last tab
    /// (`/peersm/info`, `/peersm/bytes?n=N`): `{ status, size, ms, text }`
    /// (`text` for bodies under 4 KB).
    #[wasm_bindgen(js_name = tabCircuitGet)]
    pub async fn tab_circuit_get(&self, id: u32, path: String) -> Result<JsValue, JsValue> {
        let started = js_sys::Date::now();
        let outcome = operation(&self.driver(), |tab, now| {
            tab.tab_circuit_get(id, &path, now)
        })
        .await;
        let (status, body) = match outcome {
            Some(Outcome::DirGot(r)) => r.map_err(|e| op_error("tabCircuitGet", e))?,
            _ => return Err(stopped("tabCircuitGet")),
        };
        let o = js_sys::Object::new();
        set(&o, "status", &JsValue::from(status))?;
        set(&o, "size", &JsValue::from(body.len() as f64))?;
        set(&o, "ms", &JsValue::from(js_sys::Date::now() - started))?;
        if body.len() < 4096 {
            set(
                &o,
                "text",
                &JsValue::from_str(&String::from_utf8_lossy(&body)),
            )?;
        }
        Ok(o.into())
    }

    /// A Kademlia lookup through tabs (FIND_NODE over circuits, peers as
    /// introducers): `{ closest: [IDs], rounds, queries, ms }`.
    #[wasm_bindgen(js_name = findNode)]
    pub async fn find_node(&self, target: String) -> Result<JsValue, JsValue> {
        let target = PeerId::from_hex(&target)
            .map_err(|_| js_error("findNode: the target must be 40 hex characters"))?;
        let started = js_sys::Date::now();
        let outcome = operation(&self.driver(), |tab, now| tab.find_node(target, now)).await;
        let found = match outcome {
            Some(Outcome::Found(r)) => r.map_err(|e| op_error("findNode", e))?,
            _ => return Err(stopped("findNode")),
        };
        let o = js_sys::Object::new();
        set(&o, "closest", &hops_array(&found.closest))?;
        set(&o, "rounds", &JsValue::from(found.rounds))?;
        set(&o, "queries", &JsValue::from(found.queries as u32))?;
        set(&o, "ms", &JsValue::from(js_sys::Date::now() - started))?;
        Ok(o.into())
    }

    #[wasm_bindgen(js_name = closeTabCircuit)]
    pub fn close_tab_circuit(&self, id: u32) {
        input(&self.driver(), |tab, _| tab.close_tab_circuit(id));
    }

    /// The Kademlia routing table: `{ size, buckets: [[index, peers]] }`
    /// (bucket i holds peers at XOR distance in [2^i, 2^(i+1))).
    #[wasm_bindgen(js_name = routingTable)]
    pub fn routing_table(&self) -> Result<JsValue, JsValue> {
        let driver = self.driver();
        let d = driver.borrow();
        let t = d.tab.routing_table();
        let mut buckets: std::collections::BTreeMap<usize, usize> = Default::default();
        for e in t.entries() {
            if let Some(b) = peersm_core::dht::Distance::between(t.me(), &e.id).bucket() {
                *buckets.entry(b).or_default() += 1;
            }
        }
        let o = js_sys::Object::new();
        set(&o, "size", &JsValue::from(t.len() as u32))?;
        let list: Array = buckets
            .into_iter()
            .map(|(i, n)| -> JsValue {
                Array::of2(&JsValue::from(i as u32), &JsValue::from(n as u32)).into()
            })
            .collect();
        set(&o, "buckets", &list)?;
        Ok(o.into())
    }

    /// Circuits this tab built through tabs: `[{ id, hops, state }]`,
    /// state 'open' | 'closed'.
    pub fn circuits(&self) -> Result<Array, JsValue> {
        let out = Array::new();
        for (c, alive) in self.driver().borrow().tab.tab_circuits() {
            let o = js_sys::Object::new();
            set(&o, "id", &JsValue::from(c.id))?;
            set(&o, "hops", &hops_array(&c.hops))?;
            set(
                &o,
                "state",
                &JsValue::from_str(if alive { "open" } else { "closed" }),
            )?;
            out.push(&o);
        }
        Ok(out)
    }

    /// The relays behind the bridge: `[{ nickname, address, fingerprint,
    /// exit, bridgeRun }]` (`bridgeRun`: run by the bridge itself), from
    /// the bridge's signed list (BEGIN_DIR).
    pub async fn relays(&self) -> Result<Array, JsValue> {
        if self.status() != "connected" {
            return Err(js_error("relays: not connected"));
        }
        let relays = match operation(&self.driver(), |tab, now| tab.relays(now)).await {
            Some(Outcome::Relays(r)) => r.map_err(|e| op_error("relays", e))?,
            _ => return Err(stopped("relays")),
        };
        let out = Array::new();
        for r in relays {
            let o = js_sys::Object::new();
            set(&o, "nickname", &JsValue::from_str(&r.nickname))?;
            set(&o, "address", &JsValue::from_str(&r.addr.to_string()))?;
            set(
                &o,
                "fingerprint",
                &JsValue::from_str(&hex::encode_upper(r.rsa_id)),
            )?;
            set(&o, "exit", &JsValue::from_bool(r.exit))?;
            set(&o, "bridgeRun", &JsValue::from_bool(r.bridge_run))?;
            out.push(&o);
        }
        Ok(out)
    }

    /// Builds a 3-hop circuit (bridge → middle → exit), then closes it:
    /// `{ ms, middle, exit }` (how long the build took). For diagnostics
    /// and benchmarks.
    #[wasm_bindgen(js_name = buildCircuit)]
    pub async fn build_circuit(&self) -> Result<JsValue, JsValue> {
        if self.status() != "connected" {
            return Err(js_error("buildCircuit: not connected"));
        }
        let outcome = operation(&self.driver(), |tab, now| tab.build_bridge_circuit(now)).await;
        let built = match outcome {
            Some(Outcome::BridgeCircuit(r)) => r.map_err(|e| op_error("buildCircuit", e))?,
            _ => return Err(stopped("buildCircuit")),
        };
        let o = js_sys::Object::new();
        set(&o, "ms", &JsValue::from(built.ms as f64))?;
        set(&o, "middle", &JsValue::from_str(&built.middle.nickname))?;
        set(&o, "exit", &JsValue::from_str(&built.exit.nickname))?;
        Ok(o.into())
    }

    /// HTTP GET of `url` through a 3-hop circuit. Options: `onProgress`
    /// (called with `{ received, total, speed, attempt }`), `path`
    /// (`[middleFingerprint, exitFingerprint]` for the first circuit),
    /// `maxAttempts` (circuits to try, default 5), `singleOperator`
    /// (accept an exit run by the bridge, which then sees both ends;
    /// default false: such a path is refused). Resolves to a
    /// `FetchResponse` whose body is in IndexedDB.
    pub async fn fetch(&self, url: String, options: JsValue) -> Result<FetchResponse, JsValue> {
        let (on_progress, options) = options_with_progress::<FetchOptions>("fetch", &options)?;
        fetch::fetch(&self.driver(), &url, options, on_progress).await
    }

    /// Shares a File or Blob: cuts it into blocks, stores them in
    /// IndexedDB, signs its manifest and serves it. Options: `name`, `type`
    /// (default: the File's), `onProgress` (called with `{ hashed, total }`).
    /// Resolves to `{ hashName, link, size, name, type }`.
    pub async fn seed(&self, file: web_sys::Blob, options: JsValue) -> Result<JsValue, JsValue> {
        let (on_progress, options) = options_with_progress::<SeedOptions>("seed", &options)?;
        share::seed(&self.driver(), file, options, on_progress).await
    }

    /// Downloads a file by hash_name (or its `…/#hashName` link) through
    /// circuits to ORDBs, or resumes it from what IndexedDB kept. Options:
    /// `hops` (tabs per circuit, the ORDB last; default 2), `onProgress`
    /// (called with `{ received, total, speed, circuits }`). Resolves to a
    /// `SharedDownload`: `hashName`, `name`, `type`, `size`, `circuits`,
    /// `sources`, `stats`, `blob()`, `bytes()`, `remove()`.
    pub async fn download(
        &self,
        hash_name_or_link: String,
        options: JsValue,
    ) -> Result<SharedDownload, JsValue> {
        let (on_progress, options) =
            options_with_progress::<DownloadOptionsJs>("download", &options)?;
        share::download(
            &self.driver(),
            &hash_name_or_link,
            options,
            on_progress,
            None,
        )
        .await
    }

    /// Plays a WebM or fragmented MP4 file in `element` (a `<video>` or
    /// `<audio>`) while it downloads; resolves with a `Player` once
    /// playback is set up (`player.done` resolves with the download).
    /// A live stream's hash_name plays it from near its live edge (mode
    /// `"live"`, `player.delay` from capture to display). An http(s) URL
    /// is fetched through three hops (`peer.fetch`, whose options it takes)
    /// and played as its bytes come; `player.done` resolves with the
    /// `FetchResponse`. Otherwise options as `download`'s.
    pub async fn stream(
        &self,
        hash_name_or_link: String,
        element: JsValue,
        options: JsValue,
    ) -> Result<super::stream::Player, JsValue> {
        // A web address: fetched through three hops, played as it comes
        // (options as `fetch`'s).
        let t = hash_name_or_link.trim();
        if t.starts_with("http://") || t.starts_with("https://") {
            let (on_progress, options) = options_with_progress::<FetchOptions>("stream", &options)?;
            if options.live {
                let element = element.dyn_into().map_err(|_| {
                    js_error("stream: the second argument must be a <video> or <audio> element")
                })?;
                let live = WebLiveOptions {
                    hops: options.hops.map(|h| h as usize),
                    direct: options.direct,
                    fetch: options.to_core()?,
                };
                return super::live::play_web_live(&self.driver(), t, element, live).await;
            }
            if options.direct || options.hops.is_some() {
                return Err(js_error(
                    "stream: `direct` and `hops` go with `live: true` (a live stream)",
                ));
            }
            return super::fetch_play::play_fetch(&self.driver(), t, element, options, on_progress)
                .await;
        }
        let (on_progress, options) =
            options_with_progress::<DownloadOptionsJs>("stream", &options)?;
        super::stream::stream(
            &self.driver(),
            &hash_name_or_link,
            element,
            options,
            on_progress,
        )
        .await
    }

    /// Publishes a live stream from `source`: a MediaStream (a camera, a
    /// canvas's `captureStream()`), recorded with MediaRecorder, or a WebM
    /// File replayed at the pace of its clusters. Options: `type`
    /// (MediaRecorder's, default WebM VP8), `name`, `chunkMs` (default
    /// 250). Resolves to a `LivePublisher` (`hashName`, `link`, `type`,
    /// `stats()`, `stop()`) once the first data named the stream; others
    /// play it with `peer.stream(hashName, video)`.
    pub async fn live(
        &self,
        source: JsValue,
        options: JsValue,
    ) -> Result<super::live::LivePublisher, JsValue> {
        let options = if options.is_undefined() || options.is_null() {
            super::live::LiveOptionsJs::default()
        } else {
            serde_wasm_bindgen::from_value(options)
                .map_err(|e| js_error(&format!("live: bad options: {e}")))?
        };
        super::live::publish(&self.driver(), source, options).await
    }

    /// Files kept in IndexedDB from this and earlier sessions: `[{
    /// hashName, link, name, size, type, role: 'seed' | 'download',
    /// complete, shared }]`.
    pub async fn stored(&self) -> Result<Array, JsValue> {
        share::stored(&self.driver()).await
    }

    /// Shares again a file kept from an earlier session (after a reload).
    pub async fn reseed(&self, hash_name: String) -> Result<JsValue, JsValue> {
        share::reseed(&self.driver(), &hash_name).await
    }

    /// Stops sharing a file and deletes it from IndexedDB.
    pub async fn remove(&self, hash_name: String) -> Result<(), JsValue> {
        share::forget(&self.driver(), &hash_name).await
    }

    /// What this tab serves or relays now: `[{ hashName, percent }]`.
    pub fn shared(&self) -> Result<Array, JsValue> {
        let out = Array::new();
        for (h, percent) in self.driver().borrow().tab.shared() {
            let o = js_sys::Object::new();
            set(&o, "hashName", &JsValue::from_str(&h.to_hex()))?;
            set(&o, "percent", &JsValue::from(percent))?;
            out.push(&o);
        }
        Ok(out)
    }

    /// What this tab's ORDB did: `{ blocksServed, queriesRelayed,
    /// unavailable, loopsStopped, sourcesFound, refused, dhtValues }` (sourcesFound:
    /// circuits to peers found by FIND_VALUE; dhtValues: keys this tab
    /// keeps for others).
    #[wasm_bindgen(js_name = ordbStats)]
    pub fn ordb_stats(&self) -> Result<JsValue, JsValue> {
        let s = self.driver().borrow().tab.ordb_stats();
        let o = js_sys::Object::new();
        set(&o, "blocksServed", &JsValue::from(s.blocks_served as f64))?;
        set(
            &o,
            "queriesRelayed",
            &JsValue::from(s.queries_relayed as f64),
        )?;
        set(&o, "unavailable", &JsValue::from(s.unavailable as f64))?;
        set(&o, "loopsStopped", &JsValue::from(s.loops_stopped as f64))?;
        set(&o, "sourcesFound", &JsValue::from(s.sources_found as f64))?;
        set(&o, "refused", &JsValue::from(s.refused as f64))?;
        let values = self.driver().borrow().tab.dht_values();
        set(&o, "dhtValues", &JsValue::from(values as f64))?;
        Ok(o.into())
    }

    /// Tabs whose links this tab closed as freeriders (peer IDs).
    pub fn freeriders(&self) -> Array {
        hops_array(
            &self
                .driver()
                .borrow()
                .tab
                .freeriders()
                .copied()
                .collect::<Vec<_>>(),
        )
    }

    /// Registers `callback` for `event`; 'status' calls it with the new status.
    pub fn on(&self, event: &str, callback: Function) -> Result<(), JsValue> {
        if event != "status" {
            return Err(js_error(&format!(
                "Peer.on: unknown event {event:?} (known: 'status')"
            )));
        }
        self.inner
            .borrow_mut()
            .listeners
            .push((event.to_string(), callback));
        Ok(())
    }

    /// Removes a callback added with `on`.
    pub fn off(&self, event: &str, callback: &Function) {
        self.inner
            .borrow_mut()
            .listeners
            .retain(|(e, f)| !(e == event && f == callback));
    }

    /// Closes the bridge link and every link to other tabs, and stops
    /// reconnecting.
    pub fn stop(&self) {
        let driver = {
            let mut inner = self.inner.borrow_mut();
            inner.stopped = true;
            inner.driver.clone()
        };
        let (bridge, rtc) = {
            let mut d = driver.borrow_mut();
            (d.bridge.take(), std::mem::take(&mut d.rtc))
        };
        drop(bridge);
        drop(rtc);
        set_status(&self.inner, PeerStatus::Disconnected);
    }
}

/// Opens a WebSocket to the next bridge; the core's link handshake starts
/// once it is open.
fn connect(inner: &Rc<RefCell<Inner>>) {
    let (url, fingerprint, driver) = {
        let mut i = inner.borrow_mut();
        if i.stopped {
            return;
        }
        let n = i.bridges.len();
        let (url, fingerprint) = i
            .bridges
            .get(i.next_bridge % n)
            .cloned()
            .unwrap_or_default();
        i.next_bridge = (i.next_bridge + 1) % n;
        (url, fingerprint, i.driver.clone())
    };
    set_status(inner, PeerStatus::Connecting);
    let ws = match WebSocket::new(&url) {
        Ok(ws) => ws,
        Err(e) => {
            log::warn(&format!("cannot open WebSocket to {url}: {e:?}"));
            set_status(inner, PeerStatus::Disconnected);
            return schedule_reconnect(inner);
        }
    };
    ws.set_binary_type(BinaryType::Arraybuffer);
    let on_open = {
        let weak = Rc::downgrade(&driver);
        Closure::<dyn FnMut()>::new(move || {
            if let Some(shared) = weak.upgrade() {
                let link = shared.borrow_mut().tab.bridge_opened(fingerprint, now());
                if let Some(b) = shared.borrow_mut().bridge.as_mut() {
                    b.link = Some(link);
                }
                pump(&shared);
            }
        })
    };
    let on_message = {
        let weak = Rc::downgrade(&driver);
        Closure::<dyn FnMut(MessageEvent)>::new(move |ev: MessageEvent| {
            let Some(shared) = weak.upgrade() else { return };
            let link = shared.borrow().bridge.as_ref().and_then(|b| b.link);
            let (Some(link), Ok(buf)) = (link, ev.data().dyn_into::<ArrayBuffer>()) else {
                return;
            };
            let frame = Uint8Array::new(&buf).to_vec();
            input(&shared, |tab, now| tab.handle_frame(link, &frame, now));
        })
    };
    let on_close = {
        let weak = Rc::downgrade(inner);
        Closure::<dyn FnMut(CloseEvent)>::new(move |ev: CloseEvent| {
            if let Some(inner) = weak.upgrade() {
                let why = format!("closed by bridge (code {}) {}", ev.code(), ev.reason());
                bridge_socket_closed(&inner, why);
            }
        })
    };
    ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
    let old = driver.borrow_mut().bridge.replace(BridgeSocket {
        ws,
        link: None,
        _closures: vec![Box::new(on_open), Box::new(on_message), Box::new(on_close)],
    });
    // Dropped later, outside its own callbacks.
    wasm_bindgen_futures::spawn_local(async move { drop(old) });
}

/// The bridge's WebSocket closed: the core forgets the link, and we
/// reconnect.
fn bridge_socket_closed(inner: &Rc<RefCell<Inner>>, why: String) {
    let driver = inner.borrow().driver.clone();
    let socket = driver.borrow_mut().bridge.take();
    if let Some(link) = socket.as_ref().and_then(|b| b.link) {
        input(&driver, |tab, now| tab.handle_link_closed(link, &why, now));
    }
    wasm_bindgen_futures::spawn_local(async move { drop(socket) });
    on_bridge(inner, false, why);
}

/// The core opened the bridge link (its handshake done), or it failed.
fn on_bridge(inner: &Rc<RefCell<Inner>>, open: bool, why: String) {
    if open {
        inner.borrow_mut().failed_attempts = 0;
        set_status(inner, PeerStatus::Connected);
        return;
    }
    if inner.borrow().status == PeerStatus::Disconnected && !inner.borrow().stopped {
        return; // Already reconnecting.
    }
    log::warn(&format!("bridge link lost: {why}"));
    {
        let mut i = inner.borrow_mut();
        i.failed_attempts = i.failed_attempts.saturating_add(1);
    }
    set_status(inner, PeerStatus::Disconnected);
    schedule_reconnect(inner);
}

fn schedule_reconnect(inner: &Rc<RefCell<Inner>>) {
    let delay = {
        let i = inner.borrow();
        if !i.reconnect || i.stopped {
            return;
        }
        let exp = i.failed_attempts.saturating_sub(1).min(16);
        RECONNECT_BASE_MS
            .saturating_mul(1 << exp)
            .min(RECONNECT_MAX_MS)
    };
    let weak = Rc::downgrade(inner);
    let callback = Closure::once_into_js(move || {
        if let Some(inner) = weak.upgrade() {
            connect(&inner);
        }
    });
    if let Err(e) = set_timeout(callback.unchecked_ref(), delay) {
        log::warn(&format!("cannot schedule reconnection: {e:?}"));
    }
}

fn set_status(inner: &Rc<RefCell<Inner>>, status: PeerStatus) {
    let listeners: Vec<Function> = {
        let mut i = inner.borrow_mut();
        if i.status == status {
            return;
        }
        i.status = status;
        i.listeners
            .iter()
            .filter(|(e, _)| e == "status")
            .map(|(_, f)| f.clone())
            .collect()
    };
    // Called with no borrow held: listeners may read the peer.
    let value = JsValue::from_str(status.as_str());
    for f in listeners {
        if let Err(e) = f.call1(&JsValue::NULL, &value) {
            log::warn(&format!("status listener threw: {e:?}"));
        }
    }
}

/// Takes `onProgress` (a function, which serde cannot carry) out of an
/// operation's options and reads the rest.
fn options_with_progress<T: serde::de::DeserializeOwned + Default>(
    what: &str,
    options: &JsValue,
) -> Result<(Option<Function>, T), JsValue> {
    if options.is_undefined() || options.is_null() {
        return Ok((None, T::default()));
    }
    let callback = get(options, "onProgress")?;
    let callback = if callback.is_undefined() {
        None
    } else {
        Some(
            callback
                .dyn_into::<Function>()
                .map_err(|_| js_error(&format!("{what}: onProgress must be a function")))?,
        )
    };
    let rest = js_sys::Object::assign(&js_sys::Object::new(), &options.clone().into());
    js_sys::Reflect::delete_property(&rest, &JsValue::from_str("onProgress"))?;
    let options = serde_wasm_bindgen::from_value(rest.into())
        .map_err(|e| js_error(&format!("{what}: bad options: {e}")))?;
    Ok((callback, options))
}

fn hops_array(hops: &[PeerId]) -> Array {
    hops.iter()
        .map(|h| JsValue::from_str(&h.to_hex()))
        .collect()
}
