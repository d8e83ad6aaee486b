//! WebRTC links to other tabs: one RTCPeerConnection with one reliable
//! data channel each. The core asks for an offer, an answer to an offer,
//! or an answer applied; this makes them (gathering every ICE candidate
//! into the SDP: no trickle), and reports the data channel opening, its
//! messages and the connection going away.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::{Rc, Weak};

use js_sys::{ArrayBuffer, Uint8Array};
use peersm_core::peer::tab::{LinkId, LocalSdp};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    MessageEvent, RtcCertificate, RtcConfiguration, RtcDataChannel, RtcDataChannelEvent,
    RtcDataChannelInit, RtcDataChannelType, RtcIceGatheringState, RtcPeerConnection, RtcSdpType,
    RtcSessionDescriptionInit,
};

use super::driver::{input, Driver, Shared};
use super::js::sleep_ms;

/// This session's DTLS certificate, used by every peer connection. Its
/// fingerprint comes from the certificate object (`getFingerprints()`),
/// so the binding we sign names what DTLS will present, whatever the SDP
/// text says by the time it reaches the other tab.
pub(crate) struct DtlsCertificate {
    cert: RtcCertificate,
    /// `sha-256 ab:cd:…`
    pub(crate) fingerprint: String,
}

impl DtlsCertificate {
    pub(crate) async fn generate() -> Result<DtlsCertificate, JsValue> {
        let params = js_sys::Object::new();
        js_sys::Reflect::set(&params, &"name".into(), &"ECDSA".into())?;
        js_sys::Reflect::set(&params, &"namedCurve".into(), &"P-256".into())?;
        let cert: RtcCertificate = JsFuture::from(
            RtcPeerConnection::generate_certificate_with_object(&params)?,
        )
        .await?
        .dyn_into()?;
        let get_fingerprints: js_sys::Function =
            js_sys::Reflect::get(&cert, &"getFingerprints".into())?.dyn_into()?;
        let list = js_sys::Array::from(&get_fingerprints.call0(&cert)?);
        let fingerprint = list
            .iter()
            .find_map(|f| {
                let alg = js_sys::Reflect::get(&f, &"algorithm".into())
                    .ok()?
                    .as_string()?;
                let value = js_sys::Reflect::get(&f, &"value".into())
                    .ok()?
                    .as_string()?;
                alg.eq_ignore_ascii_case("sha-256")
                    .then(|| format!("sha-256 {value}"))
            })
            .ok_or_else(|| JsValue::from_str("the DTLS certificate has no SHA-256 fingerprint"))?;
        Ok(DtlsCertificate { cert, fingerprint })
    }
}

/// How long ICE gathering may take (loopback and LAN candidates only).
const GATHER_TIMEOUT_MS: i32 = 5_000;

pub(crate) struct RtcLink {
    pc: RtcPeerConnection,
    dc: Option<RtcDataChannel>,
    /// Kept alive as long as the link.
    closures: Vec<Box<dyn std::any::Any>>,
}

/// A data channel takes frames while it holds at most this much unsent
/// (bytes), and takes them again once it drained to `LOW_WATER` (its
/// `bufferedamountlow`): Chromium has been seen to drop UDP packets when a
/// channel is handed more than ~64 KB at once, the channel then stalling
/// for a retransmission timeout. Before, a seeder could leave hundreds of
/// KB in one channel. Measured with bench-share.mjs (20 MB, interleaved
/// runs): 48/16 KiB as fast or faster than no bound (1 hop 4.3–5.2
/// against 4.3–4.4 MB/s, 3 hops 1.9–2.1 against 1.7–2.0); 16/4 KiB no
/// faster.
const HIGH_WATER: u32 = 48 * 1024;
const LOW_WATER: u32 = 16 * 1024;

impl RtcLink {
    /// Sends a frame; whether the channel is now past its high water.
    pub(crate) fn send(&self, frame: &[u8]) -> Result<bool, JsValue> {
        match &self.dc {
            Some(dc) if dc.ready_state() == web_sys::RtcDataChannelState::Open => {
                dc.send_with_u8_array(frame)?;
                Ok(dc.buffered_amount() > HIGH_WATER)
            }
            _ => Ok(false),
        }
    }
}

impl Drop for RtcLink {
    fn drop(&mut self) {
        if let Some(dc) = &self.dc {
            dc.set_onmessage(None);
            dc.set_onbufferedamountlow(None);
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
    let config = RtcConfiguration::new();
    let certificate = shared.borrow().dtls.cert.clone();
    config.set_certificates(&js_sys::Array::of1(&certificate));
    let pc = RtcPeerConnection::new_with_configuration(&config).map_err(js_err)?;
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
        Err(e) => return local_sdp(shared, link, Err(e)),
    };
    let init = RtcDataChannelInit::new();
    init.set_ordered(true);
    let dc = pc.create_data_channel_with_data_channel_dict("peersm", &init);
    attach_channel(shared, link, dc);
    let weak = Rc::downgrade(shared);
    wasm_bindgen_futures::spawn_local(async move {
        let sdp = describe_locally(&pc, pc.create_offer()).await;
        if let Some(shared) = weak.upgrade() {
            local_sdp(&shared, link, sdp);
        }
    });
}

/// The core answers an offer on `link`: the data channel comes from the
/// other side once DTLS is up.
pub(crate) fn accept_offer(shared: &Shared, link: LinkId, offer: String) {
    let pc = match new_connection(shared, link) {
        Ok(pc) => pc,
        Err(e) => return local_sdp(shared, link, Err(e)),
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
            local_sdp(&shared, link, sdp);
        }
    });
}

/// Hands our SDP for `link` to the core, with our certificate's fingerprint.
fn local_sdp(shared: &Shared, link: LinkId, sdp: Result<String, String>) {
    let fingerprint = shared.borrow().dtls.fingerprint.clone();
    let local = sdp.map(|sdp| LocalSdp { sdp, fingerprint });
    input(shared, |tab, now| tab.handle_local_sdp(link, local, now));
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
        Closure::<dyn FnMut()>::new(move || channel_opened(&weak, link))
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
    // Drained: the core's frames for the link flow again.
    let on_low = {
        let weak = Rc::downgrade(shared);
        Closure::<dyn FnMut()>::new(move || {
            if let Some(shared) = weak.upgrade() {
                shared.borrow_mut().tab.handle_link_congested(link, false);
                super::driver::pump(&shared);
            }
        })
    };
    dc.set_buffered_amount_low_threshold(LOW_WATER);
    dc.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    dc.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    dc.set_onclose(Some(on_close.as_ref().unchecked_ref()));
    dc.set_onbufferedamountlow(Some(on_low.as_ref().unchecked_ref()));
    let open_now = dc.ready_state() == web_sys::RtcDataChannelState::Open;
    if let Some(l) = shared.borrow_mut().rtc.get_mut(&link) {
        l.dc = Some(dc);
        l.closures.push(Box::new(on_open));
        l.closures.push(Box::new(on_message));
        l.closures.push(Box::new(on_close));
        l.closures.push(Box::new(on_low));
    }
    if open_now {
        channel_opened(&Rc::downgrade(shared), link);
    }
}

/// The data channel of `link` opened: the core gets the fingerprint of
/// the certificate DTLS actually negotiated, to check it against the SDP.
fn channel_opened(weak: &Weak<RefCell<Driver>>, link: LinkId) {
    let Some(pc) = weak
        .upgrade()
        .and_then(|s| s.borrow().rtc.get(&link).map(|l| l.pc.clone()))
    else {
        return;
    };
    let weak = weak.clone();
    wasm_bindgen_futures::spawn_local(async move {
        let negotiated = remote_certificate(&pc).await;
        if let Some(shared) = weak.upgrade() {
            input(&shared, |tab, now| {
                tab.handle_channel_open(link, negotiated, now)
            });
        }
    });
}

/// The fingerprint (`sha-256 AB:CD:…`) of the certificate the other end
/// presented in DTLS, from `getStats()`: every transport's
/// `remoteCertificateId` names a certificate stat. All must agree.
async fn remote_certificate(pc: &RtcPeerConnection) -> Result<String, String> {
    let report = JsFuture::from(pc.get_stats()).await.map_err(js_err)?;
    let get = |v: &JsValue, k: &str| {
        js_sys::Reflect::get(v, &JsValue::from_str(k))
            .ok()
            .and_then(|x| x.as_string())
    };
    let mut stats = HashMap::new();
    let entries = js_sys::try_iter(&report)
        .map_err(js_err)?
        .ok_or("the stats report is not iterable")?;
    for entry in entries {
        let entry = js_sys::Array::from(&entry.map_err(js_err)?);
        if let Some(id) = entry.get(0).as_string() {
            stats.insert(id, entry.get(1));
        }
    }
    let mut found: Option<String> = None;
    for stat in stats.values() {
        if get(stat, "type").as_deref() != Some("transport") {
            continue;
        }
        let Some(cert_id) = get(stat, "remoteCertificateId") else {
            continue;
        };
        let cert = stats
            .get(&cert_id)
            .ok_or("the transport's certificate is not in the report")?;
        let (Some(alg), Some(fp)) = (get(cert, "fingerprintAlgorithm"), get(cert, "fingerprint"))
        else {
            return Err("a certificate stat without a fingerprint".into());
        };
        let this = format!("{alg} {fp}");
        if found.as_ref().is_some_and(|f| *f != this) {
            return Err("the transports present different certificates".into());
        }
        found = Some(this);
    }
    found.ok_or_else(|| "no transport with a remote certificate".into())
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
