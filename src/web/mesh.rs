//! The tab's links to other tabs (docs/PROTOCOL.md "Mesh"): through a
//! control circuit to its bridge it registers (DB_FIND_PEER), learns peers
//! (DB_FOUND_PEER) and is introduced to them (INTRODUCE / INTRODUCED carry
//! an SDP offer and answer, every ICE candidate inside). Each link is one
//! RTCPeerConnection with one reliable data channel carrying the link
//! protocol: both tabs prove their IDs and bind them to the DTLS
//! fingerprints of the SDPs, so a forged introduction cannot link a tab to
//! any ID other than the one it asked for.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use futures_channel::oneshot;
use futures_util::StreamExt;
use js_sys::{ArrayBuffer, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    MessageEvent, RtcDataChannel, RtcDataChannelEvent, RtcDataChannelInit, RtcDataChannelType,
    RtcIceGatheringState, RtcPeerConnection, RtcSdpType, RtcSessionDescriptionInit,
};

use super::bridge_link::TorLink;
use super::circuit_host::MuxDriver;
use super::identity::SessionIdentity;
use super::js::sleep_ms;
use super::log;
use peersm_core::cell::{cert_type, CertEntry, Certs, ControlMessage};
use peersm_core::channel::{
    dtls_binding_cert, dtls_binding_message, ntor_key_cert, ntor_key_message, InitiatorEvent,
    LinkInitiator, LinkResponder, ResponderCheck, ResponderEvent,
};
use peersm_core::circuit::ClientMux;
use peersm_core::crypto::ntor::NtorRelayKey;
use peersm_core::crypto::PeerId;
use peersm_core::dht::{Insert, RoutingTable};

/// How long an introduction may take before the link is dropped.
const INTRODUCTION_TIMEOUT_MS: i32 = 20_000;
/// How long ICE gathering may take (loopback and LAN candidates only).
const GATHER_TIMEOUT_MS: i32 = 5_000;
/// Links a tab opens by itself when it joins, unless told otherwise.
pub(crate) const DEFAULT_JOIN_LINKS: usize = 8;

/// One link's handshake, whichever side we are.
enum Handshake {
    Initiator(Box<LinkInitiator>),
    Responder(Box<LinkResponder>),
}

pub(super) struct PeerLink {
    pub(super) state: &'static str,
    pc: RtcPeerConnection,
    pub(super) dc: Option<RtcDataChannel>,
    handshake: Option<Handshake>,
    /// Kept alive as long as the link.
    closures: Vec<Box<dyn std::any::Any>>,
    /// We offered (initiated the link): our circuit ids have the high bit.
    pub(super) we_initiated: bool,
    /// The peer's identity key (SPKI) and its signed ntor key, once open.
    pub(super) spki: Option<Vec<u8>>,
    pub(super) ntor: Option<([u8; 32], Vec<u8>)>,
    /// Circuits we build with this peer as first hop.
    pub(super) circuits: MuxDriver,
    /// The peer's circuits through us.
    pub(super) relay: super::tab_relay::LinkRelay,
}

impl Drop for PeerLink {
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

#[derive(Default)]
pub(crate) struct Mesh {
    pub(super) links: HashMap<PeerId, PeerLink>,
    /// Introductions we asked for, waiting for the answer SDP.
    answers: HashMap<PeerId, oneshot::Sender<String>>,
    /// Our ntor key as an onion router for other tabs, and its certificate.
    pub(super) me: Option<OnionKey>,
    /// Our identity, for work started from relay events.
    identity: Option<Rc<SessionIdentity>>,
    /// Circuits we extended for others: (back link, circuit) ⇄ (next link,
    /// circuit).
    pub(super) forward: HashMap<(PeerId, u32), (PeerId, u32)>,
    pub(super) backward: HashMap<(PeerId, u32), (PeerId, u32)>,
    /// Circuits this tab built through other tabs (`peer.circuits()`).
    pub(super) own_circuits: Vec<super::tab_circuits::OwnCircuit>,
    /// Kademlia routing table: the peers we are linked to, by XOR
    /// distance; a link that dies evicts its peer.
    pub(super) routing: Option<RoutingTable<()>>,
    /// How many of the peers its bridge names a joining tab links to.
    pub(crate) join_links: usize,
    /// Bucket refresh period (ms): stale buckets get a lookup, and found
    /// peers that fit the table are linked to (Kademlia §2.3).
    pub(crate) refresh_ms: i32,
    /// Link to found peers through the peer that named them rather than
    /// through the bridge.
    pub(crate) introduce_via_peers: bool,
    /// Introduction work the relay code queued (it runs without the
    /// shared handle): forwards as introducer, answers as target.
    pub(super) intro_jobs: Vec<IntroJob>,
}

/// Introductions carried by tabs (docs/PROTOCOL.md "Mesh").
pub(super) enum IntroJob {
    /// `asker` (on its circuit `circ` through us) wants to link to our
    /// linked peer `target`.
    Forward {
        asker_link: PeerId,
        circ: u32,
        asker: PeerId,
        target: PeerId,
        sdp: String,
    },
    /// Our linked peer `via` (circuit `circ` to us) brings `asker`'s offer.
    Answer {
        via: PeerId,
        circ: u32,
        asker: PeerId,
        sdp: String,
    },
}

/// Where the answer to an introduction we received goes.
#[derive(Clone)]
enum IntroReply {
    Bridge {
        tor: TorLink,
        circ: u32,
    },
    /// Back on the relay circuit `circ` that peer `via` built to us.
    Peer {
        via: PeerId,
        circ: u32,
    },
}

impl IntroReply {
    fn send(&self, mesh: &SharedMesh, peer: PeerId, sdp: String) -> Result<(), String> {
        match self {
            IntroReply::Bridge { tor, circ } => {
                tor.send_control(*circ, &ControlMessage::Introduced { peer, sdp })
            }
            IntroReply::Peer { via, circ } => {
                let me = mesh
                    .borrow()
                    .me
                    .as_ref()
                    .map(|k| k.id)
                    .ok_or("no identity")?;
                let message = ControlMessage::RelayIntroduced {
                    from: me,
                    to: peer,
                    sdp,
                };
                super::tab_relay::reply_on(&mut mesh.borrow_mut(), *via, *circ, &message)?;
                super::tab_relay::send_all(mesh);
                Ok(())
            }
        }
    }
}

/// Default bucket refresh period.
pub(crate) const DEFAULT_REFRESH_MS: i32 = 60_000;
/// Buckets refreshed per period (the farthest stale ones first).
const REFRESH_BUCKETS: usize = 3;

pub(super) struct OnionKey {
    pub(super) id: PeerId,
    pub(super) ntor: NtorRelayKey,
    /// `PEERSM_NTOR_KEY` body: the key signed by our identity.
    pub(super) cert: Vec<u8>,
}

impl OnionKey {
    async fn generate(identity: &SessionIdentity) -> Result<OnionKey, String> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| e.to_string())?;
        let ntor = NtorRelayKey::new(identity.id().0, secret);
        let sig = identity
            .sign(&ntor_key_message(&ntor.public))
            .await
            .map_err(js_err)?;
        Ok(OnionKey {
            id: identity.id(),
            cert: ntor_key_cert(&ntor.public, &sig),
            ntor,
        })
    }

    fn cert_entry(&self) -> CertEntry {
        CertEntry {
            cert_type: cert_type::PEERSM_NTOR_KEY,
            body: self.cert.clone(),
        }
    }
}

pub(crate) type SharedMesh = Rc<RefCell<Mesh>>;

pub(crate) fn new(join_links: usize, refresh_ms: i32, introduce_via_peers: bool) -> SharedMesh {
    Rc::new(RefCell::new(Mesh {
        join_links,
        refresh_ms,
        introduce_via_peers,
        ..Default::default()
    }))
}

/// Runs the introduction work the relay code queued.
pub(super) fn run_intro_jobs(mesh: &SharedMesh) {
    let jobs = std::mem::take(&mut mesh.borrow_mut().intro_jobs);
    for job in jobs {
        let mesh = mesh.clone();
        match job {
            IntroJob::Forward {
                asker_link,
                circ,
                asker,
                target,
                sdp,
            } => wasm_bindgen_futures::spawn_local(async move {
                let answer = super::tab_circuits::introduce(&mesh, asker, target, sdp)
                    .await
                    .unwrap_or_else(|e| {
                        log::info(&format!("introducing {asker} to {target}: {e}"));
                        String::new()
                    });
                let reply = ControlMessage::RelayIntroduced {
                    from: target,
                    to: asker,
                    sdp: answer,
                };
                let sent =
                    super::tab_relay::reply_on(&mut mesh.borrow_mut(), asker_link, circ, &reply);
                if sent.is_ok() {
                    super::tab_relay::send_all(&mesh);
                }
            }),
            IntroJob::Answer {
                via,
                circ,
                asker,
                sdp,
            } => {
                let identity = mesh.borrow().identity.clone();
                if let Some(identity) = identity {
                    wasm_bindgen_futures::spawn_local(async move {
                        let reply = IntroReply::Peer { via, circ };
                        answer(&mesh, reply, &identity, asker, &sdp).await;
                    });
                }
            }
        }
    }
}

/// Closes every link (the peer stops).
pub(crate) fn close_all(mesh: &SharedMesh) {
    let links = std::mem::take(&mut mesh.borrow_mut().links);
    drop(links);
}

/// `(id, state)` of every link, for `peer.peers()`.
pub(crate) fn snapshot(mesh: &SharedMesh) -> Vec<(PeerId, &'static str)> {
    let m = mesh.borrow();
    let mut out: Vec<(PeerId, &'static str)> =
        m.links.iter().map(|(id, l)| (*id, l.state)).collect();
    out.sort_by_key(|(id, _)| *id);
    out
}

fn set_state(mesh: &SharedMesh, peer: &PeerId, state: &'static str) {
    let mut m = mesh.borrow_mut();
    if let Some(l) = m.links.get_mut(peer) {
        if l.state != state {
            log::info(&format!("link to {peer}: {state}"));
        }
        l.state = state;
    }
    if state == "open" {
        let now = js_sys::Date::now() as u64;
        if let Some(t) = m.routing.as_mut() {
            if let Insert::Full { ping } = t.insert(*peer, (), now) {
                // A full bucket keeps its live peers: the oldest is still
                // linked, so it stays (a dead one was evicted on close).
                if m.links.get(&ping).is_some_and(|l| l.state == "open") {
                    if let Some(t) = m.routing.as_mut() {
                        t.insert(ping, (), now);
                    }
                }
            }
        }
    }
}

/// The routing table's size and its non-empty buckets (index → peers).
pub(crate) fn routing_summary(mesh: &SharedMesh) -> (usize, Vec<(usize, usize)>) {
    let m = mesh.borrow();
    let Some(t) = m.routing.as_ref() else {
        return (0, Vec::new());
    };
    let mut buckets: std::collections::BTreeMap<usize, usize> = Default::default();
    for e in t.entries() {
        if let Some(b) = peersm_core::dht::Distance::between(t.me(), &e.id).bucket() {
            *buckets.entry(b).or_default() += 1;
        }
    }
    (t.len(), buckets.into_iter().collect())
}

pub(super) fn drop_link(mesh: &SharedMesh, peer: &PeerId, why: &str) {
    log::warn(&format!("link to {peer} closed: {why}"));
    if let Some(t) = mesh.borrow_mut().routing.as_mut() {
        t.remove_dead(peer);
    }
    // Dropped later, outside the borrow and outside the link's own
    // callbacks (which may be the caller): closing may call back.
    let link = {
        let mut m = mesh.borrow_mut();
        let link = m.links.remove(peer);
        super::tab_relay::link_gone(&mut m, peer);
        link
    };
    if let Some(mut link) = link {
        link.circuits.link_closed();
        wasm_bindgen_futures::spawn_local(async move { drop(link) });
    }
    super::tab_relay::send_all(mesh);
}

/// Registers with the bridge through a control circuit, links to the peers
/// it names, and answers introductions, until the bridge link closes.
pub(crate) async fn run(mesh: SharedMesh, tor: TorLink, identity: Rc<SessionIdentity>) {
    if mesh.borrow().me.is_none() {
        match OnionKey::generate(&identity).await {
            Ok(k) => {
                let mut m = mesh.borrow_mut();
                m.routing = Some(RoutingTable::new(k.id));
                m.me = Some(k);
                m.identity = Some(identity.clone());
            }
            Err(e) => return log::warn(&format!("mesh: no onion key: {e}")),
        }
    }
    let circ = match tor.create().await {
        Ok(c) => c,
        Err(e) => return log::warn(&format!("mesh: no control circuit: {e}")),
    };
    let mut messages = tor.control_messages(circ);
    let find = ControlMessage::FindPeer {
        target: identity.id(),
        modulus: identity.modulus(),
    };
    if let Err(e) = tor.send_control(circ, &find) {
        return log::warn(&format!("mesh: cannot register: {e}"));
    }
    wasm_bindgen_futures::spawn_local(refresh(mesh.clone(), tor.clone(), circ, identity.clone()));
    while let Some(message) = messages.next().await {
        match message {
            ControlMessage::FoundPeer { peers } => {
                let known: Vec<PeerId> = mesh.borrow().links.keys().copied().collect();
                let join_links = mesh.borrow().join_links;
                for (id, _bridge) in peers
                    .into_iter()
                    .filter(|(id, _)| !known.contains(id))
                    .take(join_links)
                {
                    let (mesh, tor, identity) = (mesh.clone(), tor.clone(), identity.clone());
                    wasm_bindgen_futures::spawn_local(async move {
                        offer(&mesh, Introducer::Bridge { tor, circ }, &identity, id).await;
                    });
                }
            }
            ControlMessage::Introduce { peer, sdp } => {
                let (mesh, tor, identity) = (mesh.clone(), tor.clone(), identity.clone());
                wasm_bindgen_futures::spawn_local(async move {
                    let reply = IntroReply::Bridge { tor, circ };
                    answer(&mesh, reply, &identity, peer, &sdp).await;
                });
            }
            ControlMessage::Introduced { peer, sdp } => {
                if let Some(tx) = mesh.borrow_mut().answers.remove(&peer) {
                    let _ = tx.send(sdp);
                }
            }
            // Requests and bridge-to-bridge messages are not for tabs here.
            _ => {}
        }
    }
    log::info("mesh: control circuit closed");
}

/// Bucket refresh while the control circuit lives: look up a random ID in
/// each stale bucket (farthest first) and link to the peers found whose
/// bucket has room, introduced by the bridge.
async fn refresh(mesh: SharedMesh, tor: TorLink, circ: u32, identity: Rc<SessionIdentity>) {
    let me = identity.id();
    loop {
        let period = mesh.borrow().refresh_ms.max(1000);
        sleep_ms(period).await;
        if !tor.is_alive(circ) {
            return;
        }
        let targets: Vec<PeerId> = {
            let mut m = mesh.borrow_mut();
            let Some(t) = m.routing.as_mut() else {
                continue;
            };
            let now = js_sys::Date::now() as u64;
            let mut all = t.refresh_targets(now, period as u64, || {
                let mut b = [0u8; 20];
                let _ = getrandom::fill(&mut b);
                b
            });
            all.reverse();
            all.truncate(REFRESH_BUCKETS);
            all
        };
        for target in targets {
            let found = match super::tab_circuits::find_node(&mesh, me, target).await {
                Ok(f) => f,
                Err(e) => {
                    log::info(&format!("refresh lookup failed: {e}"));
                    continue;
                }
            };
            for id in found.closest.iter().copied() {
                let fits = {
                    let m = mesh.borrow();
                    !m.links.contains_key(&id)
                        && m.routing.as_ref().is_some_and(|t| t.has_room_for(&id))
                };
                if fits {
                    log::info(&format!("refresh: linking to {id}"));
                    let via_peers = mesh.borrow().introduce_via_peers;
                    // The route to the peer without its last hop ends at
                    // the tab that named it.
                    let introducer_route = found
                        .routes
                        .get(&id)
                        .and_then(|r| r.split_last())
                        .map(|(_, before)| before.to_vec())
                        .filter(|before| !before.is_empty());
                    let via = match introducer_route {
                        Some(route) if via_peers => Introducer::Route(route),
                        _ => Introducer::Bridge {
                            tor: tor.clone(),
                            circ,
                        },
                    };
                    offer(&mesh, via, &identity, id).await;
                }
            }
        }
    }
}

fn js_err(e: JsValue) -> String {
    format!("{e:?}")
}

/// The `a=fingerprint:` value of an SDP (`sha-256 AB:CD:…`).
fn fingerprint_of(sdp: &str) -> Option<String> {
    sdp.lines()
        .find_map(|l| l.trim().strip_prefix("a=fingerprint:"))
        .map(|f| f.trim().to_string())
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
    gathered(pc).await;
    Ok(pc.local_description().ok_or("no local description")?.sdp())
}

async fn gathered(pc: &RtcPeerConnection) {
    for _ in 0..(GATHER_TIMEOUT_MS / 50) {
        if pc.ice_gathering_state() == RtcIceGatheringState::Complete {
            return;
        }
        sleep_ms(50).await;
    }
}

/// Our DTLS binding certificate for the SDP we send.
async fn binding(identity: &SessionIdentity, our_sdp: &str) -> Result<CertEntry, String> {
    let fp = fingerprint_of(our_sdp).ok_or("our SDP has no fingerprint")?;
    let sig = identity
        .sign(&dtls_binding_message(&fp))
        .await
        .map_err(js_err)?;
    Ok(CertEntry {
        cert_type: cert_type::PEERSM_DTLS_BINDING,
        body: dtls_binding_cert(&fp, &sig).ok_or("fingerprint too long")?,
    })
}

fn new_link(
    mesh: &SharedMesh,
    peer: PeerId,
    we_initiated: bool,
) -> Result<RtcPeerConnection, String> {
    let pc = RtcPeerConnection::new().map_err(js_err)?;
    // A vanished peer stops answering ICE consent checks: the connection
    // turns "disconnected" within seconds (its data channel would take
    // about half a minute to notice).
    let on_state = {
        let (mesh, pc) = (mesh.clone(), pc.clone());
        Closure::<dyn FnMut()>::new(move || {
            use web_sys::RtcPeerConnectionState as S;
            let state = pc.connection_state();
            if matches!(state, S::Disconnected | S::Failed | S::Closed) {
                drop_link(&mesh, &peer, &format!("connection {state:?}"));
            }
        })
    };
    pc.set_onconnectionstatechange(Some(on_state.as_ref().unchecked_ref()));
    let old = mesh.borrow_mut().links.insert(
        peer,
        PeerLink {
            state: "introducing",
            pc: pc.clone(),
            dc: None,
            handshake: None,
            closures: vec![Box::new(on_state)],
            we_initiated,
            spki: None,
            ntor: None,
            circuits: MuxDriver::new(if we_initiated {
                ClientMux::new()
            } else {
                ClientMux::for_link_responder()
            }),
            relay: Default::default(),
        },
    );
    drop(old);
    Ok(pc)
}

/// Drops `peer`'s link if it is still the attempt on `pc`: a failed
/// attempt must not take down a link that replaced it meanwhile.
fn drop_attempt(mesh: &SharedMesh, peer: &PeerId, pc: &RtcPeerConnection, why: &str) {
    let same = mesh
        .borrow()
        .links
        .get(peer)
        .is_some_and(|l| JsValue::from(l.pc.clone()) == JsValue::from(pc.clone()));
    if same {
        drop_link(mesh, peer, why);
    } else {
        log::info(&format!("attempt to link {peer} superseded: {why}"));
    }
}

/// Who carries our offer to a peer we want to link to.
pub(super) enum Introducer {
    /// Our bridge, on our control circuit.
    Bridge { tor: TorLink, circ: u32 },
    /// The last tab of this route, which is linked to the peer (it named
    /// it in a lookup).
    Route(Vec<(PeerId, [u8; 32])>),
}

/// We link to `peer`: offer, introduction, answer, then the link
/// handshake as initiator over the data channel.
async fn offer(mesh: &SharedMesh, via: Introducer, identity: &Rc<SessionIdentity>, peer: PeerId) {
    let pc = match new_link(mesh, peer, true) {
        Ok(pc) => pc,
        Err(e) => return log::warn(&format!("cannot link to {peer}: {e}")),
    };
    if let Err(e) = offer_on(mesh, via, identity, peer, &pc).await {
        drop_attempt(mesh, &peer, &pc, &e);
    }
}

async fn offer_on(
    mesh: &SharedMesh,
    via: Introducer,
    identity: &Rc<SessionIdentity>,
    peer: PeerId,
    pc: &RtcPeerConnection,
) -> Result<(), String> {
    let init = RtcDataChannelInit::new();
    init.set_ordered(true);
    let dc = pc.create_data_channel_with_data_channel_dict("peersm", &init);
    let sdp = describe_locally(pc, pc.create_offer()).await?;
    let ours = binding(identity, &sdp).await?;
    let answer_sdp = match via {
        Introducer::Bridge { tor, circ } => {
            let (tx, rx) = oneshot::channel();
            mesh.borrow_mut().answers.insert(peer, tx);
            tor.send_control(circ, &ControlMessage::Introduce { peer, sdp })?;
            let timeout = sleep_ms(INTRODUCTION_TIMEOUT_MS);
            futures_util::pin_mut!(timeout);
            match futures_util::future::select(rx, timeout).await {
                futures_util::future::Either::Left((Ok(sdp), _)) => sdp,
                _ => return Err("no answer to the introduction".into()),
            }
        }
        Introducer::Route(route) => {
            let me = identity.id();
            super::tab_circuits::ask_introduction(mesh, &route, me, peer, sdp).await?
        }
    };
    if answer_sdp.is_empty() {
        return Err("the bridge could not introduce us".into());
    }
    let remote_fp = fingerprint_of(&answer_sdp).ok_or("the answer has no fingerprint")?;
    let desc = RtcSessionDescriptionInit::new(RtcSdpType::Answer);
    desc.set_sdp(&answer_sdp);
    JsFuture::from(pc.set_remote_description(&desc))
        .await
        .map_err(js_err)?;
    let check = ResponderCheck::Peer {
        id: peer,
        dtls_fingerprint: remote_fp,
    };
    let onion = mesh
        .borrow()
        .me
        .as_ref()
        .map(OnionKey::cert_entry)
        .ok_or("no onion key")?;
    let handshake = LinkInitiator::new(Some(identity.spki().to_vec()), check)
        .map_err(|e| e.to_string())?
        .with_extra_certs(vec![ours, onion]);
    set_state(mesh, &peer, "connecting");
    attach_channel(
        mesh,
        identity,
        peer,
        dc,
        Handshake::Initiator(Box::new(handshake)),
    );
    Ok(())
}

/// `peer` wants to link: answer its offer, then the link handshake as
/// responder, requiring that very ID. When both tabs offer to each other
/// at once, the offer of the tab with the smaller ID wins: that tab
/// refuses the other's (empty INTRODUCED), the other answers it.
async fn answer(
    mesh: &SharedMesh,
    reply: IntroReply,
    identity: &Rc<SessionIdentity>,
    peer: PeerId,
    offer_sdp: &str,
) {
    let refuse = {
        let m = mesh.borrow();
        m.links
            .get(&peer)
            .is_some_and(|l| l.state == "open" || (l.we_initiated && identity.id() < peer))
    };
    if refuse {
        let _ = reply.send(mesh, peer, String::new());
        return;
    }
    let pc = match new_link(mesh, peer, false) {
        Ok(pc) => pc,
        Err(e) => return log::warn(&format!("cannot answer {peer}: {e}")),
    };
    if let Err(e) = answer_on(mesh, &reply, identity, peer, offer_sdp, &pc).await {
        drop_attempt(mesh, &peer, &pc, &e);
    }
}

async fn answer_on(
    mesh: &SharedMesh,
    reply: &IntroReply,
    identity: &Rc<SessionIdentity>,
    peer: PeerId,
    offer_sdp: &str,
    pc: &RtcPeerConnection,
) -> Result<(), String> {
    let remote_fp = fingerprint_of(offer_sdp).ok_or("the offer has no fingerprint")?;
    let desc = RtcSessionDescriptionInit::new(RtcSdpType::Offer);
    desc.set_sdp(offer_sdp);
    JsFuture::from(pc.set_remote_description(&desc))
        .await
        .map_err(js_err)?;
    let sdp = describe_locally(pc, pc.create_answer()).await?;
    let ours = binding(identity, &sdp).await?;
    let mut challenge = [0u8; 32];
    getrandom::fill(&mut challenge).map_err(|e| e.to_string())?;
    let certs = Certs {
        certs: vec![
            CertEntry {
                cert_type: cert_type::PEERSM_RSA_SPKI,
                body: identity.spki().to_vec(),
            },
            ours,
            mesh.borrow()
                .me
                .as_ref()
                .map(OnionKey::cert_entry)
                .ok_or("no onion key")?,
        ],
    };
    let now = (js_sys::Date::now() / 1000.0) as u32;
    let handshake = LinkResponder::new(challenge, now, None, Vec::new())
        .with_certs(certs)
        .expect_peer(peer, remote_fp);
    // The data channel arrives once DTLS is up.
    let on_channel = {
        let (mesh, identity) = (mesh.clone(), identity.clone());
        let handshake = RefCell::new(Some(Handshake::Responder(Box::new(handshake))));
        Closure::<dyn FnMut(RtcDataChannelEvent)>::new(move |ev: RtcDataChannelEvent| {
            if let Some(h) = handshake.borrow_mut().take() {
                attach_channel(&mesh, &identity, peer, ev.channel(), h);
            }
        })
    };
    pc.set_ondatachannel(Some(on_channel.as_ref().unchecked_ref()));
    if let Some(l) = mesh.borrow_mut().links.get_mut(&peer) {
        l.closures.push(Box::new(on_channel));
        l.state = "connecting";
    }
    reply.send(mesh, peer, sdp)
}

/// Runs the link handshake over `dc` and keeps the link's callbacks.
fn attach_channel(
    mesh: &SharedMesh,
    identity: &Rc<SessionIdentity>,
    peer: PeerId,
    dc: RtcDataChannel,
    handshake: Handshake,
) {
    dc.set_binary_type(RtcDataChannelType::Arraybuffer);
    let on_open = {
        let (mesh, identity) = (mesh.clone(), identity.clone());
        Closure::<dyn FnMut()>::new(move || pump(&mesh, &identity, peer))
    };
    let on_message = {
        let (mesh, identity) = (mesh.clone(), identity.clone());
        Closure::<dyn FnMut(MessageEvent)>::new(move |ev: MessageEvent| {
            let Ok(buf) = ev.data().dyn_into::<ArrayBuffer>() else {
                return drop_link(&mesh, &peer, "non-binary message");
            };
            let frame = Uint8Array::new(&buf).to_vec();
            let result = {
                let mut m = mesh.borrow_mut();
                match m.links.get_mut(&peer).and_then(|l| l.handshake.as_mut()) {
                    Some(Handshake::Initiator(h)) => h.handle_frame(&frame),
                    Some(Handshake::Responder(h)) => h.handle_frame(&frame),
                    None => return,
                }
            };
            match result {
                Ok(()) => pump(&mesh, &identity, peer),
                Err(e) => drop_link(&mesh, &peer, &format!("protocol error: {e}")),
            }
        })
    };
    let on_close = {
        let mesh = mesh.clone();
        Closure::<dyn FnMut()>::new(move || drop_link(&mesh, &peer, "data channel closed"))
    };
    dc.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    dc.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    dc.set_onclose(Some(on_close.as_ref().unchecked_ref()));
    let open_now = dc.ready_state() == web_sys::RtcDataChannelState::Open;
    if let Some(l) = mesh.borrow_mut().links.get_mut(&peer) {
        l.dc = Some(dc);
        l.handshake = Some(handshake);
        l.closures.push(Box::new(on_open));
        l.closures.push(Box::new(on_message));
        l.closures.push(Box::new(on_close));
    }
    if open_now {
        pump(mesh, identity, peer);
    }
}

/// Sends what the handshake queued and acts on its events.
fn pump(mesh: &SharedMesh, identity: &Rc<SessionIdentity>, peer: PeerId) {
    // A frame's cells are all taken in before one send answers them.
    let mut cells_in = false;
    loop {
        let (frames, event) = {
            let mut m = mesh.borrow_mut();
            let Some(link) = m.links.get_mut(&peer) else {
                return;
            };
            let (frames, event): (Vec<Vec<u8>>, Option<LinkEvent>) = match link.handshake.as_mut() {
                Some(Handshake::Initiator(h)) => (
                    std::iter::from_fn(|| h.poll_transmit()).collect(),
                    h.poll_event().map(LinkEvent::Initiator),
                ),
                Some(Handshake::Responder(h)) => (
                    std::iter::from_fn(|| h.poll_transmit()).collect(),
                    h.poll_event().map(LinkEvent::Responder),
                ),
                None => return,
            };
            if let Some(dc) = &link.dc {
                if dc.ready_state() == web_sys::RtcDataChannelState::Open {
                    for f in &frames {
                        if let Err(e) = dc.send_with_u8_array(f) {
                            log::warn(&format!("send to {peer} failed: {e:?}"));
                        }
                    }
                }
            }
            (frames, event)
        };
        drop(frames);
        match event {
            None => {
                if cells_in {
                    super::tab_relay::send_all(mesh);
                }
                return;
            }
            Some(LinkEvent::Initiator(InitiatorEvent::SignatureNeeded(message))) => {
                let (mesh, identity) = (mesh.clone(), identity.clone());
                wasm_bindgen_futures::spawn_local(async move {
                    let signed = identity.sign(&message).await;
                    let result = {
                        let mut m = mesh.borrow_mut();
                        match (
                            signed,
                            m.links.get_mut(&peer).and_then(|l| l.handshake.as_mut()),
                        ) {
                            (Ok(sig), Some(Handshake::Initiator(h))) => {
                                h.handle_signature(sig).map_err(|e| e.to_string())
                            }
                            (Err(e), _) => Err(format!("signing failed: {e:?}")),
                            _ => return,
                        }
                    };
                    match result {
                        Ok(()) => pump(&mesh, &identity, peer),
                        Err(e) => drop_link(&mesh, &peer, &e),
                    }
                });
                return;
            }
            Some(LinkEvent::Initiator(InitiatorEvent::Open { .. })) => {
                if let Some(l) = mesh.borrow_mut().links.get_mut(&peer) {
                    if let Some(Handshake::Initiator(h)) = &l.handshake {
                        l.spki = h.peer_key().map(|k| k.spki_der().to_vec());
                        l.ntor = h.peer_ntor_key();
                    }
                }
                set_state(mesh, &peer, "open")
            }
            Some(LinkEvent::Responder(ResponderEvent::Open { peer: Some(p), .. }))
                if p.id == peer =>
            {
                if let Some(l) = mesh.borrow_mut().links.get_mut(&peer) {
                    l.spki = Some(p.key.spki_der().to_vec());
                    l.ntor = p.ntor_key.clone();
                }
                set_state(mesh, &peer, "open")
            }
            Some(LinkEvent::Responder(ResponderEvent::Open { .. })) => {
                return drop_link(mesh, &peer, "the peer did not prove the ID introduced");
            }
            Some(LinkEvent::Initiator(InitiatorEvent::Cell(cell)))
            | Some(LinkEvent::Responder(ResponderEvent::Cell(cell))) => {
                super::tab_relay::on_cell(&mut mesh.borrow_mut(), peer, cell);
                cells_in = true;
            }
        }
    }
}

enum LinkEvent {
    Initiator(InitiatorEvent),
    Responder(ResponderEvent),
}

#[cfg(test)]
mod tests {
    #[test]
    fn fingerprint_line() {
        let sdp = "v=0\r\na=ice-ufrag:x\r\na=fingerprint:sha-256 AB:CD\r\n";
        assert_eq!(super::fingerprint_of(sdp).as_deref(), Some("sha-256 AB:CD"));
    }
}
