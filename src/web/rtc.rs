//! WebRTC links to other tabs: one RTCPeerConnection with one reliable
//! data channel each. The core asks for an offer, an answer to an offer,
//! or an answer applied; this makes them (gathering every ICE candidate
//! into the SDP: no trickle), and reports the data channel opening, its
//! messages and the connection going away.

use std::rc::Rc;

use js_sys::{ArrayBuffer, Uint8Array};
use peersm_core::peer::tab::LinkId;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    MessageEvent, RtcDataChannel, RtcDataChannelEvent, RtcDataChannelInit, RtcDataChannelType,
    RtcIceGatheringState, RtcPeerConnection, RtcSdpType, RtcSessionDescriptionInit,
};

use super::driver::{input, Shared};
use super::js::sleep_ms;

/// How long ICE gathering may take (loopback and LAN candidates only).
const GATHER_TIMEOUT_MS: i32 = 5_000;

pub(crate) struct RtcLink {
    pc: RtcPeerConnection,
    dc: Option<RtcDataChannel>,
    /// Kept alive as long as the link.
    closures: Vec<Box<dyn std::any::Any>>,
}

impl RtcLink {
    pub(crate) fn send(&self, frame: &[u8]) -> Result<(), JsValue> {
        match &self.dc {
            Some(dc) if dc.ready_state() == web_sys::RtcDataChannelState::Open => {
                dc.send_with_u8_array(frame)
            }
            _ => Ok(()),
        }
    }
}

impl Drop for RtcLink {
    fn drop(&mut self) {
        if let Some(dc) = &self.dc {
            dc.set_onmessage(None);
            dc.set_onopen(None);
            dc.set_onclose(None);
            dc.close();
        }
        self.pc.set_ondatachannel(None);
        self.pc.set_onconnectionstatechange(None);
        self.pc.close();
    }
}

fn js_err(e: JsValue) -> String {
    format!("{e:?}")
}

/// A new peer connection for `link`, reporting when it goes away.
fn new_connection(shared: &Shared, link: LinkId) -> Result<RtcPeerConnection, String> {
    let pc = RtcPeerConnection::new().map_err(js_err)?;
    // A vanished peer stops answering ICE consent checks: the connection
    // turns "disconnected" within seconds (its data channel would take
    // about half a minute to notice).
    let on_state = {
        let (weak, pc) = (Rc::downgrade(shared), pc.clone());
        Closure::<dyn FnMut()>::new(move || {
            use web_sys::RtcPeerConnectionState as S;
            let state = pc.connection_state();
            if matches!(state, S::Disconnected | S::Failed | S::Closed) {
                if let Some(shared) = weak.upgrade() {
                    gone(&shared, link, &format!("connection {state:?}"));
                }
            }
        })
    };
    pc.set_onconnectionstatechange(Some(on_state.as_ref().unchecked_ref()));
    shared.borrow_mut().rtc.insert(
        link,
        RtcLink {
            pc: pc.clone(),
            dc: None,
            closures: vec![Box::new(on_state)],
        },
    );
    Ok(pc)
}

/// The connection of `link` is gone: the core forgets the link.
fn gone(shared: &Shared, link: LinkId, why: &str) {
    let removed = shared.borrow_mut().rtc.remove(&link);
    if removed.is_some() {
        // Dropped later, outside its own callbacks.
        wasm_bindgen_futures::spawn_local(async move { drop(removed) });
        input(shared, |tab, now| tab.handle_link_closed(link, why, now));
    }
}

/// The core wants an offer for `link`: a connection with a data channel.
pub(crate) fn create_offer(shared: &Shared, link: LinkId) {
    let pc = match new_connection(shared, link) {
        Ok(pc) => pc,
        Err(e) => return input(shared, |tab, now| tab.handle_local_sdp(link, Err(e), now)),
    };
    let init = RtcDataChannelInit::new();
    init.set_ordered(true);
    let dc = pc.create_data_channel_with_data_channel_dict("peersm", &init);
    attach_channel(shared, link, dc);
    let weak = Rc::downgrade(shared);
    wasm_bindgen_futures::spawn_local(async move {
        let sdp = describe_locally(&pc, pc.create_offer()).await;
        if let Some(shared) = weak.upgrade() {
            input(&shared, |tab, now| tab.handle_local_sdp(link, sdp, now));
        }
    });
}

/// The core answers an offer on `link`: the data channel comes from the
/// other side once DTLS is up.
pub(crate) fn accept_offer(shared: &Shared, link: LinkId, offer: String) {
    let pc = match new_connection(shared, link) {
        Ok(pc) => pc,
        Err(e) => return input(shared, |tab, now| tab.handle_local_sdp(link, Err(e), now)),
    };
    let on_channel = {
        let weak = Rc::downgrade(shared);
        Closure::<dyn FnMut(RtcDataChannelEvent)>::new(move |ev: RtcDataChannelEvent| {
            if let Some(shared) = weak.upgrade() {
                attach_channel(&shared, link, ev.channel());
            }
        })
    };
    pc.set_ondatachannel(Some(on_channel.as_ref().unchecked_ref()));
    if let Some(l) = shared.borrow_mut().rtc.get_mut(&link) {
        l.closures.push(Box::new(on_channel));
    }
    let weak = Rc::downgrade(shared);
    wasm_bindgen_futures::spawn_local(async move {
        let desc = RtcSessionDescriptionInit::new(RtcSdpType::Offer);
        desc.set_sdp(&offer);
        let sdp = match JsFuture::from(pc.set_remote_description(&desc)).await {
            Ok(_) => describe_locally(&pc, pc.create_answer()).await,
            Err(e) => Err(js_err(e)),
        };
        if let Some(shared) = weak.upgrade() {
            input(&shared, |tab, now| tab.handle_local_sdp(link, sdp, now));
        }
    });
}

/// The answer to our offer on `link` came.
pub(crate) fn apply_answer(shared: &Shared, link: LinkId, answer: String) {
    let Some(pc) = shared.borrow().rtc.get(&link).map(|l| l.pc.clone()) else {
        return;
    };
    let weak = Rc::downgrade(shared);
    wasm_bindgen_futures::spawn_local(async move {
        let desc = RtcSessionDescriptionInit::new(RtcSdpType::Answer);
        desc.set_sdp(&answer);
        if let Err(e) = JsFuture::from(pc.set_remote_description(&desc)).await {
            if let Some(shared) = weak.upgrade() {
                gone(
                    &shared,
                    link,
                    &format!("the answer does not apply: {}", js_err(e)),
                );
            }
        }
    });
}

/// Wires a data channel's events to the core.
fn attach_channel(shared: &Shared, link: LinkId, dc: RtcDataChannel) {
    dc.set_binary_type(RtcDataChannelType::Arraybuffer);
    let on_open = {
        let weak = Rc::downgrade(shared);
        Closure::<dyn FnMut()>::new(move || {
            if let Some(shared) = weak.upgrade() {
                input(&shared, |tab, now| tab.handle_channel_open(link, now));
            }
        })
    };
    let on_message = {
        let weak = Rc::downgrade(shared);
        Closure::<dyn FnMut(MessageEvent)>::new(move |ev: MessageEvent| {
            let Some(shared) = weak.upgrade() else {
                return;
            };
            match ev.data().dyn_into::<ArrayBuffer>() {
                Ok(buf) => {
                    let frame = Uint8Array::new(&buf).to_vec();
                    input(&shared, |tab, now| tab.handle_frame(link, &frame, now));
                }
                Err(_) => gone(&shared, link, "a non-binary message"),
            }
        })
    };
    let on_close = {
        let weak = Rc::downgrade(shared);
        Closure::<dyn FnMut()>::new(move || {
            if let Some(shared) = weak.upgrade() {
                gone(&shared, link, "data channel closed");
            }
        })
    };
    dc.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    dc.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    dc.set_onclose(Some(on_close.as_ref().unchecked_ref()));
    let open_now = dc.ready_state() == web_sys::RtcDataChannelState::Open;
    if let Some(l) = shared.borrow_mut().rtc.get_mut(&link) {
        l.dc = Some(dc);
        l.closures.push(Box::new(on_open));
        l.closures.push(Box::new(on_message));
        l.closures.push(Box::new(on_close));
    }
    if open_now {
        input(shared, |tab, now| tab.handle_channel_open(link, now));
    }
}

/// Applies the offer or answer `created` resolves to as our local
/// description, waits for ICE gathering, and returns the SDP with every
/// candidate in it.
async fn describe_locally(
    pc: &RtcPeerConnection,
    created: js_sys::Promise,
) -> Result<String, String> {
    let desc: RtcSessionDescriptionInit = JsFuture::from(created)
        .await
        .map_err(js_err)?
        .unchecked_into();
    JsFuture::from(pc.set_local_description(&desc))
        .await
        .map_err(js_err)?;
    for _ in 0..(GATHER_TIMEOUT_MS / 50) {
        if pc.ice_gathering_state() == RtcIceGatheringState::Complete {
            break;
        }
        sleep_ms(50).await;
    }
    Ok(pc.local_description().ok_or("no local description")?.sdp())
}
