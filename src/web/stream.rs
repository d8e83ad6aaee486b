//! `peer.stream`: a file plays in a `<video>` or `<audio>` element while
//! it downloads (docs/PROTOCOL.md "Streaming"). The download is
//! `peer.download`'s, with a player following it: the core's `media`
//! module reads the file's headers and index, and `Playback` says which
//! stored bytes to append to MediaSource next; the download fetches from
//! the player's position first (`TabPeer::prioritize_download`). A seek
//! outside what is buffered moves both. Every block is still verified and
//! stored, so the file is complete at the end.
//!
//! A file MediaSource cannot take as it comes (a plain MP4, a codec the
//! browser lacks) plays once downloaded, from a blob, and `message` says
//! why.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::rc::Rc;

use futures_channel::{mpsc, oneshot};
use futures_util::StreamExt;
use js_sys::{Function, Object, Promise, Uint8Array};
use peersm_core::media::{self, Playback, Probe, Step};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{EventTarget, HtmlMediaElement, MediaSource, MediaSourceReadyState, SourceBuffer};

use super::driver::{input, Shared};
use super::files::FileStore;
use super::js::{get, js_error, set};
use super::log;
use super::share::{self, DownloadOptionsJs};

/// What a download of a live stream's hash_name fails with
/// (`ScheduleError::IsLive`).
const IS_LIVE: &str = "this is a live stream";
/// Seconds from the play position within which a time counts as buffered
/// (MediaSource's ranges end at frame boundaries).
const BUFFERED_SLACK: f64 = 0.3;
/// On a full SourceBuffer, what is more than this far behind the play
/// position is removed.
const KEEP_BEHIND_SECS: f64 = 10.0;
/// Rounds of a probe before it is given up (headers, then the index).
const MAX_PROBE_ROUNDS: usize = 64;
/// Verified blocks the player keeps in memory, in bytes: those it will
/// append soon, and those around the play position for a seek back. Past
/// this, stored blocks far from the play position are let go (IndexedDB
/// still has them).
const MEMORY_BYTES: usize = 8 << 20;

pub(crate) type PlayerTx = mpsc::UnboundedSender<PlayerEvent>;

/// How a read asks the download for blocks it lacks (`Feed::read`).
#[derive(Clone, Copy)]
enum Urgency {
    Next,
    Beside,
}

/// What the player hears: from the download, and from the media element.
pub(crate) enum PlayerEvent {
    /// The file is known: its download (none when it was complete), its
    /// IndexedDB key, and the blocks stored already.
    File {
        op: Option<u64>,
        file_id: String,
        size: u64,
        /// The manifest's block length.
        block_len: u32,
        mime: String,
        have: Vec<u32>,
    },
    /// A block verified by the download, before IndexedDB has it.
    Verified(u32, Rc<Vec<u8>>),
    Stored(u32),
    /// The download ended.
    Done(Result<(), String>),
    SourceOpen,
    UpdateEnd,
    Seeking,
    /// The element's seek is done: it has the frame at the target.
    Seeked,
    TimeUpdate,
    ElementError,
    /// The element dropped its source (`emptied`).
    Emptied,
    Stop,
    /// A fetched body's next bytes, in order, and its restart from byte 0
    /// (`fetch_play.rs`).
    Body(Vec<u8>),
    BodyRestart,
    /// A live stream's manifest, then its chunks in order (`live.rs`).
    LiveManifest(peersm_core::peer::tab::LiveStream),
    LiveChunk {
        seq: u64,
        timestamp_ms: u64,
        gap: bool,
        data: Vec<u8>,
    },
}

#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) appended: f64,
    seeks: u32,
    resets: u32,
    /// Live: chunks appended, the first and last sequence numbers, skips.
    pub(crate) chunks: u32,
    pub(crate) first_seq: Option<u64>,
    pub(crate) last_seq: Option<u64>,
    pub(crate) gaps: u32,
    /// Live: the newest appended chunk's timestamp and the buffered end
    /// after it; capture to display, ms.
    pub(crate) edge: Option<(u64, f64)>,
    pub(crate) delay_ms: Option<f64>,
    /// Live: the follow's figures, as last read from the core.
    pub(crate) follow: peersm_core::content::follow::FollowStats,
}

/// A player following a download (`peer.stream`'s result).
#[wasm_bindgen]
pub struct Player {
    hash_name: String,
    mse_type: String,
    mode: &'static str,
    message: Option<String>,
    done: Promise,
    tx: PlayerTx,
    stats: Rc<RefCell<Stats>>,
    /// Live: the core and the follow's operation.
    live: Option<(Shared, u64)>,
}

#[wasm_bindgen]
impl Player {
    #[wasm_bindgen(getter, js_name = hashName)]
    pub fn hash_name(&self) -> String {
        self.hash_name.clone()
    }

    /// The type given to MediaSource (with its codecs), or the file's.
    #[wasm_bindgen(getter, js_name = "type")]
    pub fn mse_type(&self) -> String {
        self.mse_type.clone()
    }

    /// `"mediasource"`: it plays while it downloads; `"after-download"`:
    /// it plays once complete (`message` says why).
    #[wasm_bindgen(getter)]
    pub fn mode(&self) -> String {
        self.mode.into()
    }

    #[wasm_bindgen(getter)]
    pub fn message(&self) -> Option<String> {
        self.message.clone()
    }

    /// Resolves with the download (`peer.download`'s result) once the
    /// file is complete.
    #[wasm_bindgen(getter)]
    pub fn done(&self) -> Promise {
        self.done.clone()
    }

    /// `{ appended, seeks, resets }`: bytes given to MediaSource, seeks
    /// seen, seeks that moved the download. A live player adds `chunks`,
    /// `firstSeq`, `lastSeq`, `gaps`, `delay` (capture to display, ms),
    /// `forged`, `replayed`, `sourcesDropped` and `direct` (a web
    /// address's stream this tab fetches itself).
    pub fn stats(&self) -> Result<Object, JsValue> {
        let s = self.stats.borrow();
        let o = Object::new();
        let opt = |v: Option<f64>| v.map_or(JsValue::NULL, JsValue::from);
        set(&o, "appended", &JsValue::from(s.appended))?;
        set(&o, "seeks", &JsValue::from(s.seeks))?;
        set(&o, "resets", &JsValue::from(s.resets))?;
        if let Some((shared, op)) = &self.live {
            drop(s);
            if let Some(f) = shared.borrow().tab.live_stats(*op) {
                self.stats.borrow_mut().follow = f;
            }
            let s = self.stats.borrow();
            set(&o, "forged", &JsValue::from(s.follow.forged as f64))?;
            set(&o, "replayed", &JsValue::from(s.follow.replayed as f64))?;
            set(
                &o,
                "sourcesDropped",
                &JsValue::from(s.follow.sources_dropped as f64),
            )?;
            set(&o, "chunks", &JsValue::from(s.chunks))?;
            set(&o, "firstSeq", &opt(s.first_seq.map(|q| q as f64)))?;
            set(&o, "lastSeq", &opt(s.last_seq.map(|q| q as f64)))?;
            set(&o, "gaps", &JsValue::from(s.gaps))?;
            set(&o, "delay", &opt(s.delay_ms))?;
            // A web address's stream: fetched by this tab (nobody relayed it).
            set(&o, "direct", &JsValue::from(s.follow.direct))?;
            set(&o, "circuits", &JsValue::from(s.follow.circuits as f64))?;
            set(
                &o,
                "unavailable",
                &JsValue::from(s.follow.unavailable as f64),
            )?;
        }
        Ok(o)
    }

    /// Live: capture to display, ms (`null` until playing).
    #[wasm_bindgen(getter)]
    pub fn delay(&self) -> Option<f64> {
        self.stats.borrow().delay_ms
    }

    /// Stops feeding the element; the download goes on (`done`).
    pub fn stop(&self) {
        let _ = self.tx.unbounded_send(PlayerEvent::Stop);
    }
}

impl Player {
    pub(crate) fn new(
        hash_name: String,
        ready: Ready,
        done: Promise,
        tx: PlayerTx,
        stats: Rc<RefCell<Stats>>,
        live: Option<(Shared, u64)>,
    ) -> Player {
        Player {
            hash_name,
            mse_type: ready.mse_type,
            mode: ready.mode,
            message: ready.message,
            done,
            tx,
            stats,
            live,
        }
    }
}

/// How the player starts, told to `stream` once it knows.
pub(crate) struct Ready {
    pub(crate) mse_type: String,
    pub(crate) mode: &'static str,
    pub(crate) message: Option<String>,
}

/// A promise and its resolve and reject functions. (No `new Function`:
/// the page's CSP forbids evaluating strings.)
/// A player's `done` promise with its resolve and reject functions. A
/// failure is reported by `done` and by the player; a page that never
/// reads `done` gets no unhandled rejection. (The handler is freed when
/// called; one that never is stays, a few bytes.)
pub(crate) fn done_promise() -> Result<(Promise, Function, Function), JsValue> {
    let (done, resolve, reject) = deferred()?;
    if let Ok(catch) = get(&done, "catch").and_then(|c| c.dyn_into::<Function>()) {
        let ignore = Closure::once_into_js(|_: JsValue| {});
        let _ = catch.call1(&done, &ignore);
    }
    Ok((done, resolve, reject))
}

fn deferred() -> Result<(Promise, Function, Function), JsValue> {
    let mut slots: (Option<Function>, Option<Function>) = (None, None);
    let promise = Promise::new(&mut |resolve, reject| slots = (Some(resolve), Some(reject)));
    match slots {
        (Some(resolve), Some(reject)) => Ok((promise, resolve, reject)),
        _ => Err(js_error("stream: no promise")),
    }
}

pub(crate) fn error_text(e: &JsValue) -> String {
    get(e, "message")
        .ok()
        .and_then(|m| m.as_string())
        .unwrap_or_else(|| format!("{e:?}"))
}

/// Downloads `target` and plays it in `element` as it comes.
pub(crate) async fn stream(
    shared: &Shared,
    target: &str,
    element: JsValue,
    options: DownloadOptionsJs,
    on_progress: Option<Function>,
) -> Result<Player, JsValue> {
    let element: HtmlMediaElement = element.dyn_into().map_err(|_| {
        js_error("stream: the second argument must be a <video> or <audio> element")
    })?;
    let h = share::parse_hash_name("stream", target)?;
    // A stream the mesh told us is live is followed; a hash_name that
    // turns out to name one (its download says so) too, below.
    if shared.borrow().tab.is_live(&h) {
        return super::live::play_live(shared, h, element, options.hops()).await;
    }
    let files = share::store(shared, "stream")?;
    let (tx, rx) = mpsc::unbounded();
    let (done, resolve, reject) = done_promise()?;
    let options_hops = options.hops();
    {
        let (shared, tx, target) = (shared.clone(), tx.clone(), target.to_string());
        wasm_bindgen_futures::spawn_local(async move {
            let r = share::download(&shared, &target, options, on_progress, Some(tx.clone())).await;
            match r {
                Ok(d) => {
                    let _ = tx.unbounded_send(PlayerEvent::Done(Ok(())));
                    let _ = resolve.call1(&JsValue::NULL, &JsValue::from(d));
                }
                Err(e) => {
                    let _ = tx.unbounded_send(PlayerEvent::Done(Err(error_text(&e))));
                    let _ = reject.call1(&JsValue::NULL, &e);
                }
            }
        });
    }
    let (ready_tx, ready_rx) = oneshot::channel();
    let stats = Rc::new(RefCell::new(Stats::default()));
    let feed = Feed {
        shared: shared.clone(),
        files,
        rx,
        tx: tx.clone(),
        op: None,
        file_id: String::new(),
        size: 0,
        block_len: 1,
        have: BTreeSet::new(),
        stored: BTreeSet::new(),
        memory: BTreeMap::new(),
        memory_bytes: 0,
        wanted: None,
        done: None,
        later: VecDeque::new(),
        source_open: false,
        source_url: None,
    };
    wasm_bindgen_futures::spawn_local(run(feed, element.clone(), ready_tx, stats.clone()));
    let ready = match ready_rx.await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) if error_text(&e).contains(IS_LIVE) => {
            return super::live::play_live(shared, h, element, options_hops).await;
        }
        Ok(Err(e)) => return Err(e),
        Err(_) => return Err(js_error("stream: the player stopped")),
    };
    Ok(Player {
        hash_name: h.to_hex(),
        mse_type: ready.mse_type,
        mode: ready.mode,
        message: ready.message,
        done,
        tx,
        stats,
        live: None,
    })
}

/// The download as the player sees it.
struct Feed {
    shared: Shared,
    files: Rc<FileStore>,
    rx: mpsc::UnboundedReceiver<PlayerEvent>,
    /// Into `rx`, for the element's events.
    tx: PlayerTx,
    op: Option<u64>,
    file_id: String,
    size: u64,
    block_len: u32,
    /// Blocks that can be read: in `memory`, or stored.
    have: BTreeSet<u32>,
    /// Blocks IndexedDB has.
    stored: BTreeSet<u32>,
    /// Verified blocks, as the download handed them over.
    memory: BTreeMap<u32, Rc<Vec<u8>>>,
    memory_bytes: usize,
    /// The block the download was last asked to fetch first.
    wanted: Option<u32>,
    done: Option<Result<(), String>>,
    /// The element's events that came while a read waited for blocks.
    later: VecDeque<PlayerEvent>,
    /// The MediaSource fired `sourceopen`.
    source_open: bool,
    /// Its object URL, the element's `src` while it plays ours (revoked
    /// once opened: revoking again is harmless).
    source_url: Option<String>,
}

impl Feed {
    /// Asks the download to fetch `block` and those after it first.
    fn want(&mut self, block: u32) {
        if self.wanted == Some(block) {
            return;
        }
        self.wanted = Some(block);
        if let Some(op) = self.op {
            input(&self.shared, |tab, now| {
                tab.prioritize_download(op, block, now)
            });
        }
    }

    /// Asks the download for blocks `from..=last` alone, until `unfocus`
    /// (a seek's: `Playback::seek_blocks`).
    fn focus(&mut self, from: u32, last: u32) {
        self.wanted = Some(from);
        if let Some(op) = self.op {
            input(&self.shared, |tab, now| {
                tab.focus_download(op, from, last, now)
            });
        }
    }

    /// The element plays from a seek: the rest of the file is fetched
    /// again (nothing changes if the download was not focused, or its
    /// focus ended by itself).
    fn unfocus(&mut self) {
        if let Some(op) = self.op {
            input(&self.shared, |tab, now| tab.unfocus_download(op, now));
        }
    }

    /// Asks the download for `blocks` before the rest, without moving
    /// where it fetches from.
    fn prefetch(&mut self, blocks: Vec<u32>) {
        let blocks: Vec<u32> = blocks
            .into_iter()
            .filter(|b| !self.have.contains(b))
            .collect();
        if let (Some(op), false) = (self.op, blocks.is_empty()) {
            input(&self.shared, |tab, now| {
                tab.prefetch_download(op, blocks, now)
            });
        }
    }

    /// The blocks that hold bytes `[from, to)`.
    fn blocks_of(&self, from: u64, to: u64) -> std::ops::RangeInclusive<u32> {
        let len = u64::from(self.block_len);
        (from / len) as u32..=(to.saturating_sub(1) / len) as u32
    }

    /// Keeps a verified block in memory for the player.
    fn keep(&mut self, block: u32, data: Rc<Vec<u8>>) {
        self.memory_bytes += data.len();
        if let Some(old) = self.memory.insert(block, data) {
            self.memory_bytes -= old.len();
        }
        self.trim_memory();
    }

    /// Lets go of stored blocks far from the play position while memory is
    /// over `MEMORY_BYTES` (blocks not yet stored stay: they cannot be
    /// read back yet).
    fn trim_memory(&mut self) {
        let at = i64::from(self.wanted.unwrap_or(0));
        while self.memory_bytes > MEMORY_BYTES {
            let farthest = self
                .memory
                .keys()
                .filter(|b| self.stored.contains(b))
                .max_by_key(|b| (i64::from(**b) - at).abs())
                .copied();
            let Some(b) = farthest else { return };
            if let Some(d) = self.memory.remove(&b) {
                self.memory_bytes -= d.len();
            }
        }
    }

    /// Block `block`'s bytes: from memory, else from IndexedDB.
    async fn block(&self, block: u32) -> Result<Option<Rc<Vec<u8>>>, JsValue> {
        if let Some(d) = self.memory.get(&block) {
            return Ok(Some(d.clone()));
        }
        Ok(self.files.block(&self.file_id, block).await?.map(Rc::new))
    }

    /// Whether bytes `[from, to)` are stored.
    fn holds(&self, from: u64, to: u64) -> bool {
        self.blocks_of(from, to).all(|b| self.have.contains(&b))
    }

    /// Takes a download event; `Err` when the download failed or the
    /// player was stopped.
    fn note(&mut self, e: &PlayerEvent) -> Result<(), JsValue> {
        match e {
            PlayerEvent::Verified(b, data) => {
                self.have.insert(*b);
                self.keep(*b, data.clone());
            }
            PlayerEvent::Stored(b) => {
                self.have.insert(*b);
                self.stored.insert(*b);
                self.trim_memory();
            }
            PlayerEvent::Done(Err(why)) => {
                self.done = Some(Err(why.clone()));
                return Err(js_error(&format!("stream: {why}")));
            }
            PlayerEvent::Done(Ok(())) => self.done = Some(Ok(())),
            PlayerEvent::Stop => return Err(js_error("stream: stopped")),
            PlayerEvent::SourceOpen => self.source_open = true,
            _ => {}
        }
        Ok(())
    }

    async fn next(&mut self) -> Result<PlayerEvent, JsValue> {
        let e = self
            .rx
            .next()
            .await
            .ok_or_else(|| js_error("stream: the peer stopped"))?;
        self.note(&e)?;
        Ok(e)
    }

    /// The next event, noted; the player's loop sees it later too (the
    /// element's events, and stored blocks its `Playback` must learn of).
    async fn next_download(&mut self) -> Result<(), JsValue> {
        let e = self.next().await?;
        if matches!(
            e,
            PlayerEvent::Stored(_)
                | PlayerEvent::Verified(..)
                | PlayerEvent::UpdateEnd
                | PlayerEvent::Seeking
                | PlayerEvent::Seeked
                | PlayerEvent::TimeUpdate
                | PlayerEvent::ElementError
        ) {
            self.later.push_back(e);
        }
        Ok(())
    }

    /// Bytes `[from, to)` of the file, once their blocks are here. The
    /// download fetches them from where it fetches first (`Urgency::Next`:
    /// the headers, before anything plays), or beside that without moving
    /// it (`Urgency::Beside`: an index, while the play position's blocks
    /// keep coming).
    async fn read(&mut self, from: u64, to: u64, urgency: Urgency) -> Result<Vec<u8>, JsValue> {
        let blocks = self.blocks_of(from, to);
        let mut asked = false;
        while let Some(missing) = blocks.clone().find(|b| !self.have.contains(b)) {
            if matches!(self.done, Some(Ok(()))) {
                return Err(js_error("stream: blocks of the file are missing"));
            }
            match urgency {
                Urgency::Next => self.want(missing),
                Urgency::Beside if !asked => self.prefetch(blocks.clone().collect()),
                Urgency::Beside => {}
            }
            asked = true;
            self.next_download().await?;
        }
        self.held_bytes(from, to).await
    }

    /// Bytes `[from, to)` of the file, from blocks held (in memory since
    /// verified, or stored).
    async fn held_bytes(&self, from: u64, to: u64) -> Result<Vec<u8>, JsValue> {
        let len = u64::from(self.block_len);
        let mut out = Vec::with_capacity(to.saturating_sub(from) as usize);
        for b in self.blocks_of(from, to) {
            let data = self
                .block(b)
                .await?
                .ok_or_else(|| js_error("stream: a stored block is gone"))?;
            let start = u64::from(b) * len;
            let part = from.max(start) - start..to.min(start + len) - start;
            let part = data
                .get(part.start as usize..part.end as usize)
                .ok_or_else(|| js_error("stream: a stored block is short"))?;
            out.extend_from_slice(part);
        }
        Ok(out)
    }
}

/// An event listener removed when dropped.
pub(crate) struct Listener {
    target: EventTarget,
    name: &'static str,
    closure: Closure<dyn FnMut(web_sys::Event)>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self
            .target
            .remove_event_listener_with_callback(self.name, self.closure.as_ref().unchecked_ref());
    }
}

pub(crate) fn listen(
    target: &EventTarget,
    name: &'static str,
    tx: &PlayerTx,
    event: fn() -> PlayerEvent,
) -> Result<Listener, JsValue> {
    let tx = tx.clone();
    let closure = Closure::<dyn FnMut(web_sys::Event)>::new(move |_| {
        let _ = tx.unbounded_send(event());
    });
    target.add_event_listener_with_callback(name, closure.as_ref().unchecked_ref())?;
    Ok(Listener {
        target: target.clone(),
        name,
        closure,
    })
}

/// Takes our MediaSource off the element, and waits until the element let
/// go of it (its `emptied`): a `play()` the page calls next, or a source
/// given next, is not then taken for ours (a pending `play()` would fail
/// with "interrupted by a new load request").
async fn detach(feed: &mut Feed, element: &HtmlMediaElement) {
    let Some(url) = feed.source_url.take() else {
        return;
    };
    let _ = web_sys::Url::revoke_object_url(&url);
    // Not if the page gave the element another source meanwhile.
    let ours = element.src() == url;
    if !ours || element.network_state() == HtmlMediaElement::NETWORK_EMPTY {
        return;
    }
    let Ok(_emptied) = listen(element, "emptied", &feed.tx, || PlayerEvent::Emptied) else {
        return;
    };
    let _ = element.remove_attribute("src");
    element.load();
    while let Ok(e) = feed.next().await {
        if matches!(e, PlayerEvent::Emptied) {
            break;
        }
    }
}

/// Seconds buffered from the play position on.
fn buffered_ahead(element: &HtmlMediaElement) -> f64 {
    let t = element.current_time();
    let ranges = element.buffered();
    (0..ranges.length())
        .filter_map(|i| Some((ranges.start(i).ok()?, ranges.end(i).ok()?)))
        .find(|(s, e)| *s <= t + BUFFERED_SLACK && t < *e)
        .map_or(0.0, |(_, e)| e - t)
}

pub(crate) fn send_ready(
    ready: &mut Option<oneshot::Sender<Result<Ready, JsValue>>>,
    r: Result<Ready, JsValue>,
) {
    if let Some(tx) = ready.take() {
        let _ = tx.send(r);
    }
}

async fn run(
    mut feed: Feed,
    element: HtmlMediaElement,
    ready: oneshot::Sender<Result<Ready, JsValue>>,
    stats: Rc<RefCell<Stats>>,
) {
    let mut ready = Some(ready);
    if let Err(e) = play(&mut feed, &element, &mut ready, &stats).await {
        if ready.is_some() {
            // Nothing played: the element lets go of our MediaSource (a
            // live stream's player gives it its own).
            detach(&mut feed, &element).await;
            send_ready(&mut ready, Err(e));
        } else if feed.done.as_ref().is_none_or(|d| d.is_ok()) {
            log::warn(&format!("stream: {}", error_text(&e)));
        }
    }
}

async fn play(
    feed: &mut Feed,
    element: &HtmlMediaElement,
    ready: &mut Option<oneshot::Sender<Result<Ready, JsValue>>>,
    stats: &Rc<RefCell<Stats>>,
) -> Result<(), JsValue> {
    // The element gets its MediaSource at once: it opens while the first
    // blocks come (after them, `sourceopen` could wait behind their cells).
    let source = MediaSource::new()?;
    let url = web_sys::Url::create_object_url_with_source(&source)?;
    let _open = listen(&source, "sourceopen", &feed.tx, || PlayerEvent::SourceOpen)?;
    element.set_src(&url);
    feed.source_url = Some(url);
    // The file: its size and type come with the manifest.
    let mime = loop {
        if let PlayerEvent::File {
            op,
            file_id,
            size,
            block_len,
            mime,
            have,
        } = feed.next().await?
        {
            feed.op = op;
            feed.file_id = file_id;
            feed.size = size;
            feed.block_len = block_len.max(1);
            feed.have.extend(have.iter().copied());
            feed.stored.extend(have);
            break mime;
        }
    };
    // Its headers (and its index, unless that comes after the media), read
    // as their blocks come.
    let (probed, head) = probe(feed, &mime).await?;
    if !matches!(probed, Ok(ref index) if MediaSource::is_type_supported(&index.mse_type)) {
        // Ours is not the source the element will play.
        detach(feed, element).await;
    }
    let index = match probed {
        Ok(index) if MediaSource::is_type_supported(&index.mse_type) => index,
        Ok(index) => {
            let why = format!(
                "this browser cannot play {} as it downloads",
                index.mse_type
            );
            return after_download(feed, element, ready, &mime, why).await;
        }
        // Not a video or audio file at all: nothing to play, and nothing
        // the viewer asked to keep.
        Err(e @ media::MediaError::NotMedia(_)) => {
            if let Some(op) = feed.op {
                input(&feed.shared, |tab, now| tab.cancel_download(op, now));
            }
            return Err(js_error(&format!("stream: {e}")));
        }
        Err(e) => return after_download(feed, element, ready, &mime, e.to_string()).await,
    };
    let tx = feed.tx.clone();
    while !feed.source_open {
        feed.next().await?;
    }
    if let Some(url) = &feed.source_url {
        web_sys::Url::revoke_object_url(url)?;
    }
    if let Some(d) = index.duration {
        source.set_duration(d);
    }
    let buffer: SourceBuffer = source.add_source_buffer(&index.mse_type)?;
    let _listeners = [
        listen(&buffer, "updateend", &tx, || PlayerEvent::UpdateEnd)?,
        listen(element, "seeking", &tx, || PlayerEvent::Seeking)?,
        listen(element, "seeked", &tx, || PlayerEvent::Seeked)?,
        listen(element, "timeupdate", &tx, || PlayerEvent::TimeUpdate)?,
        listen(element, "error", &tx, || PlayerEvent::ElementError)?,
        // The page gave the element another source, or dropped it: the
        // player ends (and frees what MediaSource holds).
        listen(element, "emptied", &tx, || PlayerEvent::Stop)?,
    ];
    send_ready(
        ready,
        Ok(Ready {
            mse_type: index.mse_type.clone(),
            mode: "mediasource",
            message: None,
        }),
    );
    let mut playback = Playback::new(index, feed.size, feed.block_len, feed.have.iter().copied());
    let mut index_asked = false;
    loop {
        append_next(feed, element, &source, &buffer, &mut playback, stats).await?;
        // An index after the media is fetched beside the play position (a
        // seek needs it) once the first frame is in: before, it would share
        // the circuits with the first blocks and hold them back.
        if let (Some(at), false) = (playback.index().deferred_index, index_asked) {
            if buffered_ahead(element) > 0.0 {
                feed.prefetch(feed.blocks_of(at, feed.size).collect());
                index_asked = true;
            }
        }
        // The index is read as soon as it is here (from memory: it came
        // moments ago), so that a seek finds it ready.
        if let Some(at) = playback.index().deferred_index {
            if feed.holds(at, feed.size) {
                read_index(feed, &mime, &head, &mut playback).await?;
            }
        }
        let event = match feed.later.pop_front() {
            Some(e) => e,
            None => match feed.rx.next().await {
                None | Some(PlayerEvent::Stop) => return Ok(()),
                Some(e) => e,
            },
        };
        // A failed download ends nothing here: what is stored plays.
        let _ = feed.note(&event);
        match event {
            PlayerEvent::Stored(b) | PlayerEvent::Verified(b, _) => playback.stored(b),
            PlayerEvent::UpdateEnd => playback.appended(),
            PlayerEvent::Seeking if element.seeking() && buffered_ahead(element) <= 0.0 => {
                stats.borrow_mut().seeks += 1;
                if playback.index().deferred_index.is_some() {
                    // The index is not here yet: the download fetches it,
                    // and near where the target should be meanwhile.
                    if let Some(b) = playback.guess_block(element.current_time()) {
                        feed.want(b);
                    }
                    read_index(feed, &mime, &head, &mut playback).await?;
                }
                if buffer.updating() {
                    let _ = buffer.abort();
                }
                let time = element.current_time();
                playback.seek(time);
                let (from, last) = playback.seek_blocks(time);
                feed.focus(from, last);
                stats.borrow_mut().resets += 1;
            }
            PlayerEvent::Seeking => stats.borrow_mut().seeks += 1,
            PlayerEvent::Seeked => feed.unfocus(),
            PlayerEvent::ElementError => {
                let why = get(&get(element, "error")?, "message")?;
                log::warn(&format!("stream: the element failed: {why:?}"));
                return Ok(());
            }
            _ => {}
        }
    }
}

/// Does what `playback` says next, up to an append in flight or a wait.
async fn append_next(
    feed: &mut Feed,
    element: &HtmlMediaElement,
    source: &MediaSource,
    buffer: &SourceBuffer,
    playback: &mut Playback,
    stats: &Rc<RefCell<Stats>>,
) -> Result<(), JsValue> {
    // One operation on the SourceBuffer at a time (an append, or a
    // remove making room): the next waits for its `updateend`.
    if buffer.updating() {
        return Ok(());
    }
    match playback.next(buffered_ahead(element)) {
        Step::Append { from, to, reset } => {
            let open = source.ready_state() == MediaSourceReadyState::Open;
            if reset && open {
                buffer.abort()?;
            }
            let part = match feed.held_bytes(from, to).await {
                Ok(part) => part,
                Err(e) => {
                    playback.append_dropped();
                    return Err(e);
                }
            };
            if buffer
                .append_buffer_with_array_buffer_view(&Uint8Array::from(&part[..]))
                .is_ok()
            {
                stats.borrow_mut().appended += part.len() as f64;
            } else {
                // Full: make room behind the play position, then again.
                playback.append_dropped();
                let behind = element.current_time() - KEEP_BEHIND_SECS;
                if behind <= 0.0 || buffer.remove(0.0, behind).is_err() {
                    return Err(js_error("stream: MediaSource took no more data"));
                }
            }
        }
        Step::End => {
            if source.ready_state() == MediaSourceReadyState::Open && !buffer.updating() {
                source.end_of_stream()?;
            }
        }
        Step::WaitFor(block) => feed.want(block),
        Step::Idle => {}
    }
    Ok(())
}

type Probed = Result<media::MediaIndex, media::MediaError>;

/// Reads the file's headers as their blocks come (and its index, unless
/// that lies after the media); the head read is kept to read a deferred
/// index with later.
async fn probe(feed: &mut Feed, mime: &str) -> Result<(Probed, Vec<u8>), JsValue> {
    let len = u64::from(feed.block_len);
    let size = feed.size;
    let round_up = |x: u64| x.div_ceil(len).saturating_mul(len).min(size);
    let mut head: Vec<u8> = Vec::new();
    for _ in 0..MAX_PROBE_ROUNDS {
        match media::probe(mime, size, &head, None) {
            Probe::Need { from: 0, to } if to > head.len() as u64 => {
                // Only what the head lacks (it ends on a block boundary).
                let more = feed
                    .read(head.len() as u64, round_up(to), Urgency::Next)
                    .await?;
                head.extend_from_slice(&more);
            }
            Probe::Need { .. } => {
                let e = media::MediaError::Malformed("media", "headers past the end");
                return Ok((Err(e), head));
            }
            Probe::Ready(index) => {
                log::info(&format!(
                    "stream: {} with {} seek points{}, {:?} s",
                    index.mse_type,
                    index.points.len(),
                    if index.deferred_index.is_some() {
                        " (an index after the media)"
                    } else {
                        ""
                    },
                    index.duration
                ));
                return Ok((Ok(index), head));
            }
            Probe::Failed(e) => return Ok((Err(e), head)),
        }
    }
    let e = media::MediaError::Malformed("media", "headers that never end");
    Ok((Err(e), head))
}

/// Reads an index that lies after the media (`deferred_index`): its
/// blocks are fetched first meanwhile. A bad one leaves the file playing
/// without seek points.
async fn read_index(
    feed: &mut Feed,
    mime: &str,
    head: &[u8],
    playback: &mut Playback,
) -> Result<(), JsValue> {
    let len = u64::from(feed.block_len);
    let size = feed.size;
    let Some(at) = playback.index().deferred_index else {
        return Ok(());
    };
    let mut to = (at - at % len + len).min(size);
    for _ in 0..MAX_PROBE_ROUNDS {
        let bytes = feed.read(at, to, Urgency::Beside).await?;
        match media::probe(mime, size, head, Some((at, &bytes))) {
            Probe::Need { from, to: more } if from == at && more > to && more <= size => to = more,
            Probe::Ready(index) if index.deferred_index.is_none() => {
                log::info(&format!("stream: {} seek points", index.points.len()));
                playback.set_index(index);
                return Ok(());
            }
            other => {
                log::warn(&format!("stream: the index could not be read: {other:?}"));
                break;
            }
        }
    }
    let mut index = playback.index().clone();
    index.deferred_index = None;
    playback.set_index(index);
    Ok(())
}

/// Plays the file once it is complete, from a blob.
async fn after_download(
    feed: &mut Feed,
    element: &HtmlMediaElement,
    ready: &mut Option<oneshot::Sender<Result<Ready, JsValue>>>,
    mime: &str,
    why: String,
) -> Result<(), JsValue> {
    send_ready(
        ready,
        Ok(Ready {
            mse_type: mime.to_string(),
            mode: "after-download",
            message: Some(why),
        }),
    );
    while feed.done.is_none() {
        feed.next().await?;
    }
    if let Some(Err(why)) = &feed.done {
        return Err(js_error(&format!("stream: {why}")));
    }
    let blocks = feed.files.blocks(&feed.file_id).await?;
    let options = web_sys::BlobPropertyBag::new();
    options.set_type(mime);
    let blob = web_sys::Blob::new_with_u8_array_sequence_and_options(&blocks, &options)?;
    let url = web_sys::Url::create_object_url_with_blob(&blob)?;
    // The blob's URL is let go when the page gives the element another
    // source, or stops the player (the element reads the blob in ranges
    // while it plays, so not before). An element that had a source fires
    // `emptied` for ours first.
    let mut ours = u32::from(element.network_state() != HtmlMediaElement::NETWORK_EMPTY);
    let _emptied = listen(element, "emptied", &feed.tx, || PlayerEvent::Emptied)?;
    element.set_src(&url);
    loop {
        match feed.rx.next().await {
            None | Some(PlayerEvent::Stop) => break,
            Some(PlayerEvent::Emptied) if ours > 0 => ours -= 1,
            Some(PlayerEvent::Emptied) => break,
            Some(_) => {}
        }
    }
    web_sys::Url::revoke_object_url(&url)
}
