//! One WebSocket link to a bridge, driving the core's `LinkInitiator`:
//! binary frames in, frames out, and signature requests answered through
//! WebCrypto; the bridge must prove its identity and ntor key (CERTS).
//! Once open, the link carries the tab's circuits through the core's
//! `ClientMux`; `TorLink` is the async handle circuits are built with.
//! The owner learns what happened to the link through `LinkUpdate`s.

use std::cell::RefCell;
use std::rc::Rc;

use futures_channel::mpsc;
use js_sys::{ArrayBuffer, Uint8Array};
use wasm_bindgen::prelude::Closure;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{BinaryType, CloseEvent, MessageEvent, WebSocket};

pub(crate) use super::circuit_host::StreamEvent;
use super::circuit_host::{self as host, CircuitHost, MuxDriver};
use super::identity::SessionIdentity;
use super::log;
use peersm_core::cell::{CircIdLen, ControlMessage, LinkSpec};
use peersm_core::channel::tor_certs::BridgeIdentity;
use peersm_core::channel::{encode_cells, InitiatorEvent, LinkInitiator, ResponderCheck};
use peersm_core::circuit::{ClientMux, StreamTarget};
use peersm_core::dir::relay_list::ListedRelay;

/// Cells per WebSocket frame: about 16 KiB (docs/PROTOCOL.md "Framing").
const CELLS_PER_FRAME: usize = 31;

/// Close code for protocol violations; browsers only let pages send 1000
/// and 3000–4999.
const CLOSE_PROTOCOL_ERROR: u16 = 4002;

/// What a link reports to its owner.
pub(crate) enum LinkUpdate {
    Open,
    Closed { reason: String },
}

type UpdateSink = Rc<dyn Fn(LinkUpdate)>;

struct LinkState {
    ws: WebSocket,
    handshake: Option<LinkInitiator>,
    closed: bool,
    /// The bridge's proven identity and ntor key, once open.
    bridge: Option<BridgeIdentity>,
    circuits: MuxDriver,
}

/// Keeps the WebSocket and its callbacks alive; dropping it closes the link.
pub(crate) struct BridgeLink {
    state: Rc<RefCell<LinkState>>,
    _on_open: Closure<dyn FnMut()>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
}

impl BridgeLink {
    /// Opens a link to the bridge at `url`; when `fingerprint` is given
    /// the bridge must prove that RSA identity.
    pub(crate) fn connect(
        url: &str,
        fingerprint: Option<[u8; 20]>,
        identity: Rc<SessionIdentity>,
        sink: UpdateSink,
    ) -> Result<BridgeLink, JsValue> {
        let ws = WebSocket::new(url)?;
        ws.set_binary_type(BinaryType::Arraybuffer);
        let state = Rc::new(RefCell::new(LinkState {
            ws: ws.clone(),
            handshake: None,
            closed: false,
            bridge: None,
            circuits: MuxDriver::new(ClientMux::new()),
        }));

        let on_open = {
            let (state, identity, sink) = (state.clone(), identity.clone(), sink.clone());
            Closure::<dyn FnMut()>::new(move || {
                let check = ResponderCheck::Bridge {
                    now: (js_sys::Date::now() / 1000.0) as i64,
                    rsa_id: fingerprint,
                };
                match LinkInitiator::new(Some(identity.spki().to_vec()), check) {
                    Ok(h) => state.borrow_mut().handshake = Some(h),
                    Err(e) => return fail(&state, &sink, &format!("cannot start handshake: {e}")),
                }
                pump(&state, &identity, &sink);
            })
        };
        let on_message = {
            let (state, identity, sink) = (state.clone(), identity.clone(), sink.clone());
            Closure::<dyn FnMut(MessageEvent)>::new(move |ev: MessageEvent| {
                let Ok(buf) = ev.data().dyn_into::<ArrayBuffer>() else {
                    return fail(&state, &sink, "bridge sent a non-binary frame");
                };
                let frame = Uint8Array::new(&buf).to_vec();
                let result = match state.borrow_mut().handshake.as_mut() {
                    Some(h) => h.handle_frame(&frame),
                    None => return fail(&state, &sink, "frame before the link opened"),
                };
                match result {
                    Ok(()) => pump(&state, &identity, &sink),
                    Err(e) => fail(&state, &sink, &format!("protocol error from bridge: {e}")),
                }
            })
        };
        let on_close = {
            let (state, sink) = (state.clone(), sink.clone());
            Closure::<dyn FnMut(CloseEvent)>::new(move |ev: CloseEvent| {
                let reason = format!("closed by bridge (code {}) {}", ev.code(), ev.reason());
                report_closed(&state, &sink, reason);
            })
        };
        ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        Ok(BridgeLink {
            state,
            _on_open: on_open,
            _on_message: on_message,
            _on_close: on_close,
        })
    }

    /// The handle circuits are built with; `None` until the link is open.
    pub(crate) fn tor(&self) -> Option<TorLink> {
        let s = self.state.borrow();
        let bridge = s.bridge?;
        (!s.closed).then(|| TorLink {
            state: self.state.clone(),
            bridge,
        })
    }

    pub(crate) fn close(&self) {
        let mut s = self.state.borrow_mut();
        s.closed = true;
        let _ = s.ws.close();
    }
}

impl Drop for BridgeLink {
    fn drop(&mut self) {
        let s = self.state.borrow();
        s.ws.set_onopen(None);
        s.ws.set_onmessage(None);
        s.ws.set_onclose(None);
        let _ = s.ws.close();
    }
}

/// Sends what the handshake queued and acts on its events.
fn pump(state: &Rc<RefCell<LinkState>>, identity: &Rc<SessionIdentity>, sink: &UpdateSink) {
    // Circuit cells are all taken in before one flush answers them.
    let mut cells_in = false;
    loop {
        let (frames, event) = {
            let mut s = state.borrow_mut();
            let Some(h) = s.handshake.as_mut() else {
                return;
            };
            let frames: Vec<Vec<u8>> = std::iter::from_fn(|| h.poll_transmit()).collect();
            (frames, h.poll_event())
        };
        for f in frames {
            if let Err(e) = state.borrow().ws.send_with_u8_array(&f) {
                return fail(state, sink, &format!("send failed: {e:?}"));
            }
        }
        match event {
            None => {
                if cells_in {
                    if let Err(e) = flush(state) {
                        fail(state, sink, &e);
                    }
                }
                return;
            }
            Some(InitiatorEvent::SignatureNeeded(message)) => {
                let (state, identity, sink) = (state.clone(), identity.clone(), sink.clone());
                wasm_bindgen_futures::spawn_local(async move {
                    let signed = identity.sign(&message).await;
                    let result = match (signed, state.borrow_mut().handshake.as_mut()) {
                        (Ok(sig), Some(h)) => h.handle_signature(sig).map_err(|e| e.to_string()),
                        (Err(e), _) => Err(format!("signing failed: {e:?}")),
                        (_, None) => return,
                    };
                    match result {
                        Ok(()) => pump(&state, &identity, &sink),
                        Err(e) => fail(&state, &sink, &e),
                    }
                });
            }
            Some(InitiatorEvent::Open {
                link_version,
                our_address,
                bridge,
                ..
            }) => {
                log::info(&format!(
                    "link to bridge open (link protocol v{link_version}, bridge sees us as {our_address:?})"
                ));
                state.borrow_mut().bridge = bridge.map(|b| *b);
                sink(LinkUpdate::Open);
            }
            Some(InitiatorEvent::Cell(cell)) => {
                state.borrow_mut().circuits.mux.handle_cell(cell);
                cells_in = true;
            }
        }
    }
}

fn fail(state: &Rc<RefCell<LinkState>>, sink: &UpdateSink, why: &str) {
    log::warn(why);
    let _ = state
        .borrow()
        .ws
        .close_with_code_and_reason(CLOSE_PROTOCOL_ERROR, "protocol error");
    report_closed(state, sink, why.to_string());
}

fn report_closed(state: &Rc<RefCell<LinkState>>, sink: &UpdateSink, reason: String) {
    {
        let mut s = state.borrow_mut();
        if s.closed {
            return;
        }
        s.closed = true;
        s.circuits.link_closed();
    }
    let _ = flush(state);
    sink(LinkUpdate::Closed { reason });
}

/// Sends the cells the circuits queued and routes their events to the
/// futures waiting on them.
fn flush(state: &Rc<RefCell<LinkState>>) -> Result<(), String> {
    let mut s = state.borrow_mut();
    let cells = s.circuits.drive();
    if !s.closed {
        for batch in cells.chunks(CELLS_PER_FRAME) {
            let frame = encode_cells(batch, CircIdLen::Four).map_err(|e| e.to_string())?;
            s.ws.send_with_u8_array(&frame)
                .map_err(|e| format!("send failed: {e:?}"))?;
        }
    }
    Ok(())
}

/// Builds circuits and streams on an open bridge link.
#[derive(Clone)]
pub(crate) struct TorLink {
    state: Rc<RefCell<LinkState>>,
    pub(crate) bridge: BridgeIdentity,
}

impl CircuitHost for TorLink {
    fn with_driver<R>(&self, f: impl FnOnce(&mut MuxDriver) -> R) -> Result<R, String> {
        let mut s = self.state.borrow_mut();
        if s.closed {
            return Err("the bridge link closed".into());
        }
        Ok(f(&mut s.circuits))
    }

    fn flush(&self) -> Result<(), String> {
        flush(&self.state)
    }
}

impl TorLink {
    /// A one-hop circuit to the bridge with CREATE2/ntor: completing it
    /// proves the bridge holds the ntor key its identity certified.
    pub(crate) async fn create(&self) -> Result<u32, String> {
        host::create(self, self.bridge.relay.rsa_id, self.bridge.ntor_key).await
    }

    /// Extends `circ` to `relay` (EXTEND2/ntor, named by address and both
    /// identities).
    pub(crate) async fn extend(&self, circ: u32, relay: &ListedRelay) -> Result<(), String> {
        let specs = vec![
            LinkSpec::Addr(relay.addr),
            LinkSpec::LegacyId(relay.rsa_id),
            LinkSpec::Ed25519Id(relay.ed25519_id),
        ];
        host::extend(self, circ, specs, relay.rsa_id, relay.ntor_key).await
    }

    /// Opens a stream at the circuit's last hop; resolves once CONNECTED.
    pub(crate) async fn begin(
        &self,
        circ: u32,
        target: StreamTarget,
    ) -> Result<(u16, mpsc::UnboundedReceiver<StreamEvent>), String> {
        host::begin(self, circ, target).await
    }

    pub(crate) fn send(&self, circ: u32, stream: u16, data: &[u8]) -> Result<(), String> {
        host::send(self, circ, stream, data)
    }

    pub(crate) fn end(&self, circ: u32, stream: u16) {
        host::end(self, circ, stream)
    }

    pub(crate) fn destroy(&self, circ: u32) {
        host::destroy(self, circ)
    }

    /// Control messages that arrive on `circ` from now on.
    pub(crate) fn control_messages(&self, circ: u32) -> mpsc::UnboundedReceiver<ControlMessage> {
        host::control_messages(self, circ).unwrap_or_else(|_| mpsc::unbounded().1)
    }

    pub(crate) fn send_control(&self, circ: u32, message: &ControlMessage) -> Result<(), String> {
        host::send_control(self, circ, message)
    }

    pub(crate) fn is_alive(&self, circ: u32) -> bool {
        host::is_alive(self, circ)
    }
}
