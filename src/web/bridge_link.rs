//! One WebSocket link to a bridge, driving the core's `LinkInitiator`:
//! binary frames in, frames out, and signature requests answered through
//! WebCrypto. The owner learns what happened through `LinkUpdate`s.

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{ArrayBuffer, Uint8Array};
use wasm_bindgen::prelude::Closure;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{BinaryType, CloseEvent, MessageEvent, WebSocket};

use super::identity::SessionIdentity;
use super::log;
use crate::channel::{InitiatorEvent, LinkInitiator, ResponderCheck};

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
}

/// Keeps the WebSocket and its callbacks alive; dropping it closes the link.
pub(crate) struct BridgeLink {
    state: Rc<RefCell<LinkState>>,
    _on_open: Closure<dyn FnMut()>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
}

impl BridgeLink {
    pub(crate) fn connect(
        url: &str,
        identity: Rc<SessionIdentity>,
        sink: UpdateSink,
    ) -> Result<BridgeLink, JsValue> {
        let ws = WebSocket::new(url)?;
        ws.set_binary_type(BinaryType::Arraybuffer);
        let state = Rc::new(RefCell::new(LinkState {
            ws: ws.clone(),
            handshake: None,
            closed: false,
        }));

        let on_open = {
            let (state, identity, sink) = (state.clone(), identity.clone(), sink.clone());
            Closure::<dyn FnMut()>::new(move || {
                match LinkInitiator::new(Some(identity.spki().to_vec()), ResponderCheck::None) {
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
            None => return,
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
                ..
            }) => {
                log::info(&format!(
                    "link to bridge open (link protocol v{link_version}, bridge sees us as {our_address:?})"
                ));
                sink(LinkUpdate::Open);
            }
            // Circuits arrive with the Tor protocol layer; until then an open
            // link to a bridge carries nothing else.
            Some(InitiatorEvent::Cell(cell)) => {
                log::info(&format!(
                    "ignoring cell {} on circuit {}",
                    cell.command, cell.circ_id
                ));
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
    }
    sink(LinkUpdate::Closed { reason });
}
