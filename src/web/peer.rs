//! The `Peer` JavaScript API: `await Peer.start({ bridges })`, `peer.id`,
//! `peer.status`, `peer.on('status', cb)`. It owns the session identity and
//! keeps one link to a bridge up, reconnecting with backoff.

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::Function;
use serde::Deserialize;
use wasm_bindgen::prelude::*;

use super::bridge_link::{BridgeLink, LinkUpdate};
use super::identity::SessionIdentity;
use super::js::{js_error, set_timeout};
use super::log;

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

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct StartOptions {
    bridges: Vec<String>,
    #[serde(default = "default_true")]
    reconnect: bool,
}

fn default_true() -> bool {
    true
}

struct Inner {
    identity: Rc<SessionIdentity>,
    bridges: Vec<String>,
    reconnect: bool,
    next_bridge: usize,
    failed_attempts: u32,
    status: PeerStatus,
    link: Option<BridgeLink>,
    /// A link being torn down; dropped later, outside its own callbacks.
    retired: Option<BridgeLink>,
    stopped: bool,
    listeners: Vec<(String, Function)>,
}

#[wasm_bindgen]
pub struct Peer {
    inner: Rc<RefCell<Inner>>,
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
        if let Some(bad) = options
            .bridges
            .iter()
            .find(|b| !(b.starts_with("ws://") || b.starts_with("wss://")))
        {
            return Err(js_error(&format!(
                "Peer.start: bridge URL {bad:?} is not ws:// or wss://"
            )));
        }
        let identity = Rc::new(SessionIdentity::generate().await?);
        log::info(&format!("session peer ID {}", identity.id()));
        let inner = Rc::new(RefCell::new(Inner {
            identity,
            bridges: options.bridges,
            reconnect: options.reconnect,
            next_bridge: 0,
            failed_attempts: 0,
            status: PeerStatus::Disconnected,
            link: None,
            retired: None,
            stopped: false,
            listeners: Vec::new(),
        }));
        connect(&inner);
        Ok(Peer { inner })
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
            .cloned()
            .unwrap_or_default()
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

    /// Closes the bridge link and stops reconnecting.
    pub fn stop(&self) {
        let link = {
            let mut inner = self.inner.borrow_mut();
            inner.stopped = true;
            inner.link.take()
        };
        if let Some(link) = link {
            link.close();
        }
        set_status(&self.inner, PeerStatus::Disconnected);
    }
}

fn connect(inner: &Rc<RefCell<Inner>>) {
    let (url, identity) = {
        let mut i = inner.borrow_mut();
        if i.stopped {
            return;
        }
        i.retired = None;
        let n = i.bridges.len();
        let url = i
            .bridges
            .get(i.next_bridge % n)
            .cloned()
            .unwrap_or_default();
        i.next_bridge = (i.next_bridge + 1) % n;
        (url, i.identity.clone())
    };
    set_status(inner, PeerStatus::Connecting);
    let weak = Rc::downgrade(inner);
    let sink = Rc::new(move |update: LinkUpdate| {
        if let Some(inner) = weak.upgrade() {
            on_link_update(&inner, update);
        }
    });
    match BridgeLink::connect(&url, identity, sink) {
        Ok(link) => inner.borrow_mut().link = Some(link),
        Err(e) => {
            log::warn(&format!("cannot open WebSocket to {url}: {e:?}"));
            set_status(inner, PeerStatus::Disconnected);
            schedule_reconnect(inner);
        }
    }
}

fn on_link_update(inner: &Rc<RefCell<Inner>>, update: LinkUpdate) {
    match update {
        LinkUpdate::Open => {
            inner.borrow_mut().failed_attempts = 0;
            set_status(inner, PeerStatus::Connected);
        }
        LinkUpdate::Closed { reason } => {
            log::warn(&format!("bridge link lost: {reason}"));
            {
                let mut i = inner.borrow_mut();
                i.retired = i.link.take();
                i.failed_attempts = i.failed_attempts.saturating_add(1);
            }
            set_status(inner, PeerStatus::Disconnected);
            schedule_reconnect(inner);
        }
    }
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
