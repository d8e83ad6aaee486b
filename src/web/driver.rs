//! Drives the core's `TabPeer` in the browser: after every input (a
//! WebSocket or data-channel message, a connection change, a signature,
//! a stored chunk, a timer) it sends the frames the core queued and does
//! what its events ask — sign with WebCrypto, make or apply an SDP, close
//! a connection, store body bytes in IndexedDB, complete a JS promise.
//! Everything here is a browser call; the decisions are the core's.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::{Rc, Weak};

use futures_channel::oneshot;
use js_sys::{Function, Object};
use peersm_core::content::HashName;
use peersm_core::peer::tab::{LinkId, Outcome, TabEvent, TabPeer};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::WebSocket;

use super::files::FileStore;
use super::identity::SessionIdentity;
use super::js::{set, set_timeout};
use super::log;
use super::rtc::{DtlsCertificate, RtcLink};
use super::share::{self, DownloadSink};
use super::store::DownloadStore;

/// Close code for protocol violations; browsers only let pages send 1000
/// and 3000–4999.
const CLOSE_PROTOCOL_ERROR: u16 = 4002;

/// A download's bytes on their way to IndexedDB.
pub(crate) struct FetchSink {
    pub(crate) store: Rc<DownloadStore>,
    /// The record key of the body (a new one when the body restarts).
    pub(crate) id: String,
    pub(crate) next_seq: u32,
    pub(crate) on_progress: Option<Function>,
    pub(crate) started: f64,
    /// A player following the body as it comes (`peer.stream` of a URL).
    pub(crate) player: Option<super::stream::PlayerTx>,
}

pub(crate) struct BridgeSocket {
    pub(crate) ws: WebSocket,
    /// The core's id for this link, once the socket opened.
    pub(crate) link: Option<LinkId>,
    /// Kept alive as long as the socket.
    pub(crate) _closures: Vec<Box<dyn std::any::Any>>,
}

impl Drop for BridgeSocket {
    fn drop(&mut self) {
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
        let _ = self.ws.close();
    }
}

pub(crate) struct Driver {
    pub(crate) tab: TabPeer,
    pub(crate) identity: Rc<SessionIdentity>,
    pub(crate) bridge: Option<BridgeSocket>,
    pub(crate) rtc: BTreeMap<LinkId, RtcLink>,
    /// The DTLS certificate of every peer connection this session makes.
    pub(crate) dtls: Rc<DtlsCertificate>,
    /// Promises waiting for an operation.
    pub(crate) waiters: BTreeMap<u64, oneshot::Sender<Outcome>>,
    pub(crate) fetches: BTreeMap<u64, FetchSink>,
    /// Shared files (IndexedDB), unless the browser gave us none.
    pub(crate) files: Option<Rc<FileStore>>,
    /// The IndexedDB key of every file this tab serves.
    pub(crate) file_ids: BTreeMap<HashName, String>,
    /// Downloads by hash_name in progress, by operation.
    pub(crate) downloads: BTreeMap<u64, DownloadSink>,
    /// Live streams followed, by operation: their players.
    pub(crate) lives: BTreeMap<u64, super::stream::PlayerTx>,
    /// hash_names being downloaded (one download of a file at a time).
    pub(crate) busy: BTreeSet<HashName>,
    /// Tests only: serve corrupted blocks.
    pub(crate) tamper: bool,
    /// The deadline a timer is set for.
    timer_at: Option<u64>,
    /// Told when the bridge link opens or closes.
    pub(crate) on_bridge: Option<Rc<dyn Fn(bool, String)>>,
}

pub(crate) type Shared = Rc<RefCell<Driver>>;

pub(crate) fn now() -> u64 {
    js_sys::Date::now() as u64
}

impl Driver {
    pub(crate) fn new(
        tab: TabPeer,
        identity: Rc<SessionIdentity>,
        dtls: Rc<DtlsCertificate>,
        files: Option<Rc<FileStore>>,
    ) -> Shared {
        Rc::new(RefCell::new(Driver {
            tab,
            identity,
            bridge: None,
            rtc: BTreeMap::new(),
            dtls,
            waiters: BTreeMap::new(),
            fetches: BTreeMap::new(),
            files,
            file_ids: BTreeMap::new(),
            downloads: BTreeMap::new(),
            lives: BTreeMap::new(),
            busy: BTreeSet::new(),
            tamper: false,
            timer_at: None,
            on_bridge: None,
        }))
    }
}

/// Runs `input` on the core, then does what it produced.
pub(crate) fn input(shared: &Shared, input: impl FnOnce(&mut TabPeer, u64)) {
    {
        let mut d = shared.borrow_mut();
        input(&mut d.tab, now());
    }
    pump(shared);
}

/// Starts an operation and waits for its outcome.
pub(crate) async fn operation(
    shared: &Shared,
    start: impl FnOnce(&mut TabPeer, u64) -> u64,
) -> Option<Outcome> {
    let (tx, rx) = oneshot::channel();
    {
        let mut d = shared.borrow_mut();
        let op = start(&mut d.tab, now());
        d.waiters.insert(op, tx);
    }
    pump(shared);
    rx.await.ok()
}

/// Sends what the core queued and acts on its events.
pub(crate) fn pump(shared: &Shared) {
    loop {
        let mut sent = false;
        // One frame at a time: a data channel past its high water stops
        // taking frames (the core keeps them) until it drains.
        loop {
            let next = shared.borrow_mut().tab.poll_transmit();
            let Some((link, frame)) = next else { break };
            sent = true;
            if send_frame(shared, link, &frame) {
                shared.borrow_mut().tab.handle_link_congested(link, true);
            }
        }
        let events: Vec<TabEvent> = {
            let mut d = shared.borrow_mut();
            std::iter::from_fn(|| d.tab.poll_event()).collect()
        };
        if !sent && events.is_empty() {
            break;
        }
        for e in events {
            on_event(shared, e);
        }
    }
    arm_timer(shared);
}

/// Sends one frame on `link`; whether the link's data channel is now past
/// its high water.
fn send_frame(shared: &Shared, link: LinkId, frame: &[u8]) -> bool {
    let d = shared.borrow();
    let sent = match &d.bridge {
        Some(b) if b.link == Some(link) => b.ws.send_with_u8_array(frame).map(|()| false),
        _ => match d.rtc.get(&link) {
            Some(r) => r.send(frame),
            None => Ok(false),
        },
    };
    sent.unwrap_or_else(|e| {
        log::warn(&format!("send on link {link} failed: {e:?}"));
        false
    })
}

fn on_event(shared: &Shared, e: TabEvent) {
    match e {
        TabEvent::Sign { request, message } => {
            let (weak, identity) = (Rc::downgrade(shared), shared.borrow().identity.clone());
            wasm_bindgen_futures::spawn_local(async move {
                let signed = identity.sign(&message).await.map_err(|e| format!("{e:?}"));
                if let Some(shared) = weak.upgrade() {
                    input(&shared, |tab, now| {
                        tab.handle_signature(request, signed, now)
                    });
                }
            });
        }
        TabEvent::CreateOffer { link } => super::rtc::create_offer(shared, link),
        TabEvent::AcceptOffer { link, offer } => super::rtc::accept_offer(shared, link, offer),
        TabEvent::ApplyAnswer { link, answer } => super::rtc::apply_answer(shared, link, answer),
        TabEvent::CloseLink { link } => close_link(shared, link),
        TabEvent::BridgeOpen { .. } => {
            let cb = shared.borrow().on_bridge.clone();
            if let Some(cb) = cb {
                cb(true, String::new());
            }
        }
        TabEvent::Done { op, outcome } => {
            let waiter = shared.borrow_mut().waiters.remove(&op);
            if let Some(w) = waiter {
                let _ = w.send(outcome);
            }
        }
        TabEvent::FetchProgress {
            op,
            received,
            total,
            attempt,
        } => progress(shared, op, received, total, attempt),
        TabEvent::FetchBody { op, data } => store_chunk(shared, op, data),
        TabEvent::FetchRestart { op } => restart_body(shared, op),
        TabEvent::ReadBlock {
            request,
            hash_name,
            block,
        } => share::read_block(shared, request, hash_name, block),
        TabEvent::StoreBlock {
            op,
            block,
            data,
            path,
            ..
        } => share::store_block(shared, op, block, data, path),
        TabEvent::DownloadManifest { op, file } => share::manifest_known(shared, op, file),
        TabEvent::DownloadProgress {
            op,
            received,
            total,
            speed,
            circuits,
        } => share::progress(shared, op, received, total, speed, circuits),
        TabEvent::LiveManifest { op, stream } => {
            if let Some(tx) = shared.borrow().lives.get(&op) {
                let _ = tx.unbounded_send(super::stream::PlayerEvent::LiveManifest(stream));
            }
        }
        TabEvent::LiveChunk {
            op,
            seq,
            timestamp_ms,
            gap,
            data,
            ..
        } => {
            if let Some(tx) = shared.borrow().lives.get(&op) {
                let _ = tx.unbounded_send(super::stream::PlayerEvent::LiveChunk {
                    seq,
                    timestamp_ms,
                    gap,
                    data,
                });
            }
        }
    }
}

/// The core is done with a link: close its connection.
fn close_link(shared: &Shared, link: LinkId) {
    let bridge = {
        let mut d = shared.borrow_mut();
        if d.bridge.as_ref().is_some_and(|b| b.link == Some(link)) {
            d.bridge.take()
        } else {
            let rtc = d.rtc.remove(&link);
            // Dropped later, outside our borrow and its own callbacks.
            wasm_bindgen_futures::spawn_local(async move { drop(rtc) });
            None
        }
    };
    if let Some(b) = bridge {
        let _ =
            b.ws.close_with_code_and_reason(CLOSE_PROTOCOL_ERROR, "protocol error");
        let cb = shared.borrow().on_bridge.clone();
        wasm_bindgen_futures::spawn_local(async move { drop(b) });
        if let Some(cb) = cb {
            cb(false, "the bridge link failed".into());
        }
    }
}

fn progress(shared: &Shared, op: u64, received: u64, total: Option<u64>, attempt: u32) {
    let (cb, started) = match shared.borrow().fetches.get(&op) {
        Some(f) => (f.on_progress.clone(), f.started),
        None => return,
    };
    let Some(cb) = cb else { return };
    let elapsed = ((js_sys::Date::now() - started) / 1000.0).max(0.001);
    let obj = Object::new();
    let _ = set(&obj, "received", &JsValue::from(received as f64));
    let total = total.map_or(JsValue::NULL, |t| JsValue::from(t as f64));
    let _ = set(&obj, "total", &total);
    let _ = set(&obj, "speed", &JsValue::from(received as f64 / elapsed));
    let _ = set(&obj, "attempt", &JsValue::from(attempt));
    if let Err(e) = cb.call1(&JsValue::NULL, &obj) {
        log::warn(&format!("onProgress threw: {e:?}"));
    }
}

/// Stores a body chunk; the core reads on once it is stored.
fn store_chunk(shared: &Shared, op: u64, data: Vec<u8>) {
    let target = {
        let mut d = shared.borrow_mut();
        d.fetches.get_mut(&op).map(|f| {
            let seq = f.next_seq;
            f.next_seq += 1;
            (f.store.clone(), f.id.clone(), seq)
        })
    };
    let Some((store, id, seq)) = target else {
        return;
    };
    if let Some(p) = shared
        .borrow()
        .fetches
        .get(&op)
        .and_then(|f| f.player.as_ref())
    {
        let _ = p.unbounded_send(super::stream::PlayerEvent::Body(data.clone()));
    }
    let weak: Weak<RefCell<Driver>> = Rc::downgrade(shared);
    wasm_bindgen_futures::spawn_local(async move {
        if let Err(e) = store.put_chunk(&id, seq, &data).await {
            log::warn(&format!("storing a download chunk failed: {e:?}"));
        }
        if let Some(shared) = weak.upgrade() {
            input(&shared, |tab, now| tab.handle_stored(op, now));
        }
    });
}

/// The body starts again: the stored chunks go, new ones get a new key.
fn restart_body(shared: &Shared, op: u64) {
    let old = {
        let mut d = shared.borrow_mut();
        d.fetches.get_mut(&op).map(|f| {
            let old = std::mem::replace(&mut f.id, super::fetch::new_body_id());
            f.next_seq = 0;
            if let Some(p) = &f.player {
                let _ = p.unbounded_send(super::stream::PlayerEvent::BodyRestart);
            }
            (f.store.clone(), old)
        })
    };
    if let Some((store, old)) = old {
        wasm_bindgen_futures::spawn_local(async move {
            let _ = store.delete(&old).await;
        });
    }
}

/// Keeps one timer set for the core's next deadline.
fn arm_timer(shared: &Shared) {
    let deadline = {
        let d = shared.borrow();
        match (d.tab.poll_timeout(), d.timer_at) {
            (Some(t), Some(armed)) if armed <= t => return,
            (Some(t), _) => t,
            (None, _) => return,
        }
    };
    shared.borrow_mut().timer_at = Some(deadline);
    let delay = deadline.saturating_sub(now()).min(i32::MAX as u64) as i32;
    let weak = Rc::downgrade(shared);
    let callback = Closure::once_into_js(move || {
        if let Some(shared) = weak.upgrade() {
            shared.borrow_mut().timer_at = None;
            input(&shared, |tab, now| tab.handle_timeout(now));
        }
    });
    if let Err(e) = set_timeout(callback.unchecked_ref(), delay) {
        log::warn(&format!("cannot set a timer: {e:?}"));
    }
}
