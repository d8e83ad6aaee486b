//! Links to other tabs (docs/PROTOCOL.md "Mesh"): each is one WebRTC
//! peer connection with one data channel carrying the link protocol. A
//! link goes Offering/Answering → Connecting → Open. The offer and answer
//! travel through an introducer (the bridge, or a tab linked to the
//! other), each SDP with every ICE candidate in it. Both tabs prove their
//! IDs in the link handshake and bind them to the DTLS fingerprints of the
//! SDPs (PEERSM_DTLS_BINDING), so a forged introduction cannot link a tab
//! to any ID other than the one it asked for.
//!
//! Glare: when two tabs offer to each other at once, the offer of the tab
//! with the smaller ID wins: that tab refuses the other's offer (an empty
//! answer), the other drops its own attempt and answers.

use crate::cell::{cert_type, command, CertEntry, Certs, CircIdLen, ControlMessage, RawCell};
use crate::channel::{
    decode_frame, dtls_binding_cert, dtls_binding_message, Handshake, LinkInitiator, LinkResponder,
    ResponderCheck,
};
use crate::circuit::LinkSide;
use crate::crypto::PeerId;
use crate::dht::Insert;
use crate::rng::random_bytes;
use crate::router::{CircuitKey, LinkPeer};

use super::tasks::{HopSpec, Purpose};
use super::{LinkId, Signing, TabEvent, TabPeer};

/// How long a link may take from the first step to open.
const ESTABLISH_MS: u64 = 30_000;
/// An open link on which we sent nothing for this long gets a PADDING
/// cell (tor-spec §3: a keepalive the other end ignores).
pub const KEEPALIVE_MS: u64 = 60_000;
/// An open link on which nothing came for this long (three keepalives
/// missed, with room for a hidden tab's timers, which Chromium may run
/// only once a minute) is closed: its peer is gone or hung, and a silent
/// link would hold one of our slots and a routing-table entry for ever.
pub const LINK_SILENT_MS: u64 = 3 * KEEPALIVE_MS;
/// An open link whose data channel has not drained for this long is
/// closed: its peer stopped reading (a healthy channel drains its 48 KiB in
/// milliseconds), and every circuit through it is stuck meanwhile.
pub const CONGESTED_MS: u64 = 30_000;
/// Links (open or being made) a tab opens or accepts freely: each is a
/// peer connection with its own ICE and DTLS upkeep.
pub const MAX_LINKS: usize = 32;
/// Beyond `MAX_LINKS`, an offer is still accepted while the routing table
/// has room for the peer (its bucket is not full: Kademlia keeps the peers
/// close to us, which lookups for them depend on), up to this many.
pub const HARD_MAX_LINKS: usize = 64;

/// Who carries our offer.
#[derive(Debug, Clone)]
pub(super) enum Introducer {
    /// Our bridge, on our control circuit.
    Bridge,
    /// The last tab of this route, which is linked to the peer (it named
    /// it in a lookup).
    Route(Vec<HopSpec>),
}

/// Where our answer to an offer goes.
#[derive(Debug, Clone, Copy)]
pub(super) enum Reply {
    Bridge,
    /// Back on the circuit through us that carried the offer.
    Relay {
        circuit: CircuitKey<LinkId>,
    },
}

/// A link's state, as `peer.peers()` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkStatus {
    Introducing,
    Connecting,
    Open,
}

impl LinkStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkStatus::Introducing => "introducing",
            LinkStatus::Connecting => "connecting",
            LinkStatus::Open => "open",
        }
    }
}

enum LinkState {
    /// We offer: waiting for our SDP, its binding, then the answer.
    Offering { introducer: Introducer },
    /// We answer an offer: waiting for our SDP and its binding.
    Answering { reply: Reply },
    /// The SDPs are exchanged: the link handshake over the data channel.
    Connecting { hs: Box<Handshake> },
    /// Both proved their IDs; the link carries cells.
    Open {
        spki: Vec<u8>,
        ntor: [u8; 32],
        ntor_sig: Vec<u8>,
    },
}

pub(super) struct TabLink {
    pub(super) peer: PeerId,
    we_initiated: bool,
    state: LinkState,
    /// The data channel is open and its DTLS certificate is the one the
    /// SDP named: frames may flow.
    pub(super) channel_open: bool,
    /// Since when the platform's send buffer for the link is past its high
    /// water (`handle_link_congested`): its frames wait here meanwhile.
    pub(super) congested_since: Option<u64>,
    /// Bytes of frames queued for the link and not yet taken by the
    /// platform (`poll_transmit`).
    pub(super) waiting_bytes: usize,
    /// Frames that came before the certificate was confirmed.
    early_frames: Vec<Vec<u8>>,
    /// Dropped unless open by then (`u64::MAX` once open).
    pub(super) deadline: u64,
    local_sdp: Option<LocalSdp>,
    binding: Option<CertEntry>,
    remote_fingerprint: Option<String>,
    /// The core knows the link (it is open).
    added: bool,
    /// When the link last received a frame, and last sent one (open links).
    last_heard: u64,
    pub(super) last_sent: u64,
}

impl TabLink {
    fn new(
        peer: PeerId,
        we_initiated: bool,
        state: LinkState,
        remote_fingerprint: Option<String>,
        now: u64,
    ) -> TabLink {
        TabLink {
            peer,
            we_initiated,
            state,
            channel_open: false,
            congested_since: None,
            waiting_bytes: 0,
            early_frames: Vec::new(),
            deadline: now + ESTABLISH_MS,
            local_sdp: None,
            binding: None,
            remote_fingerprint,
            added: false,
            last_heard: now,
            last_sent: now,
        }
    }

    /// When this open link next needs a keepalive or a silence check.
    pub(super) fn upkeep_deadline(&self) -> Option<u64> {
        let congested = self.congested_since.map_or(u64::MAX, |t| t + CONGESTED_MS);
        self.added.then(|| {
            (self.last_sent + KEEPALIVE_MS)
                .min(self.last_heard + LINK_SILENT_MS)
                .min(congested)
        })
    }
}

/// Our side of a link as the platform made it: the SDP (offer or answer)
/// and the fingerprint of our DTLS certificate, taken from the certificate
/// itself (what we sign a binding for must be what DTLS presents, not a
/// line of text that could have been altered).
#[derive(Debug, Clone)]
pub struct LocalSdp {
    pub sdp: String,
    pub fingerprint: String,
}

/// Frames a link may receive between its data channel opening and the
/// platform confirming the DTLS certificate (a handshake's first flight).
const MAX_FRAMES_BEFORE_CHECK: usize = 8;

/// The `a=fingerprint:` value of an SDP (`sha-256 AB:CD:…`), if it has
/// exactly one. An SDP with several (one per section, or a second one an
/// introducer slipped into the media section) is refused: the browser
/// would enforce one of them, and the link must be bound to the one it
/// enforces, not to a line an introducer chose (RFC 8122 §5 allows a
/// fingerprint at session and media level; we never produce two).
pub fn fingerprint_of(sdp: &str) -> Option<String> {
    let mut lines = sdp
        .lines()
        .filter_map(|l| l.trim().strip_prefix("a=fingerprint:"));
    let only = lines.next()?;
    if lines.next().is_some() {
        return None;
    }
    let value = canonical_fingerprint(only);
    (!value.is_empty()).then_some(value)
}

/// A fingerprint value as we sign and compare it: `sha-256 AB:CD:…`
/// (hash name in lower case, hex in upper case, one space), whatever
/// case and spacing the SDP or the browser's certificate API used.
pub fn canonical_fingerprint(value: &str) -> String {
    let mut parts = value.split_whitespace();
    let alg = parts.next().unwrap_or_default().to_ascii_lowercase();
    let hex = parts.collect::<Vec<_>>().join(" ").to_ascii_uppercase();
    format!("{alg} {hex}").trim().to_string()
}

/// Whether two fingerprint values name the same certificate.
pub fn same_fingerprint(a: &str, b: &str) -> bool {
    canonical_fingerprint(a) == canonical_fingerprint(b)
}

impl TabPeer {
    /// Our links to tabs and their states.
    pub fn links(&self) -> Vec<(PeerId, LinkStatus)> {
        let mut out: Vec<(PeerId, LinkStatus)> = self
            .links
            .values()
            .map(|l| {
                let status = match l.state {
                    LinkState::Offering { .. } | LinkState::Answering { .. } => {
                        LinkStatus::Introducing
                    }
                    LinkState::Connecting { .. } => LinkStatus::Connecting,
                    LinkState::Open { .. } => LinkStatus::Open,
                };
                (l.peer, status)
            })
            .collect();
        out.sort_by_key(|(id, _)| *id);
        out
    }

    /// Open links: the peer, the link and its ntor key.
    pub(super) fn open_links(&self) -> Vec<(PeerId, LinkId, [u8; 32])> {
        self.links
            .iter()
            .filter_map(|(link, l)| match &l.state {
                LinkState::Open { ntor, .. } => Some((l.peer, *link, *ntor)),
                _ => None,
            })
            .collect()
    }

    /// An open link's identity key and signed ntor key.
    pub(super) fn open_link_keys(&self, link: LinkId) -> Option<(Vec<u8>, [u8; 32], Vec<u8>)> {
        match &self.links.get(&link)?.state {
            LinkState::Open {
                spki,
                ntor,
                ntor_sig,
            } => Some((spki.clone(), *ntor, ntor_sig.clone())),
            _ => None,
        }
    }

    pub(super) fn link_of(&self, peer: &PeerId) -> Option<LinkId> {
        let link = *self.by_peer.get(peer)?;
        matches!(self.links.get(&link)?.state, LinkState::Open { .. }).then_some(link)
    }

    /// Whether `peer` is one we would offer a link to: not us, not
    /// linked or being linked, not dropped as a freerider, not excluded.
    pub(super) fn may_offer_to(&self, peer: &PeerId) -> bool {
        *peer != self.me
            && !self.by_peer.contains_key(peer)
            && !self.freeriders.contains(peer)
            && !self.config.never_link.contains(peer)
    }

    /// Starts linking to `peer` through `introducer`.
    pub(super) fn offer(&mut self, peer: PeerId, introducer: Introducer) {
        let n = self.links.len();
        let full = n >= HARD_MAX_LINKS || (n >= MAX_LINKS && !self.routing.has_room_for(&peer));
        if !self.may_offer_to(&peer) || self.onion.is_none() || full {
            return;
        }
        let link = self.new_link_id();
        let state = LinkState::Offering { introducer };
        self.links
            .insert(link, TabLink::new(peer, true, state, None, self.now));
        self.by_peer.insert(peer, link);
        self.events.push_back(TabEvent::CreateOffer { link });
    }

    /// `asker` offers to link; we answer through `reply` (an empty answer
    /// refuses).
    pub(super) fn answer(&mut self, asker: PeerId, offer: &str, reply: Reply) {
        let existing = self.by_peer.get(&asker).and_then(|l| self.links.get(l));
        let n = self.links.len();
        let full = existing.is_none()
            && (n >= HARD_MAX_LINKS || (n >= MAX_LINKS && !self.routing.has_room_for(&asker)));
        // A tab we dropped as a freerider does not link to us again.
        let refuse = asker == self.me
            || self.onion.is_none()
            || full
            || self.freeriders.contains(&asker)
            || self.config.never_link.contains(&asker)
            || existing.is_some_and(|l| {
                matches!(l.state, LinkState::Open { .. }) || !l.we_initiated || self.me < asker
            });
        // Each answer makes an RTCPeerConnection: a rate for everyone's.
        // Offers refused anyway (no single fingerprint…) cost no token.
        let remote = fingerprint_of(offer);
        let refuse = refuse || remote.is_none() || {
            let now = self.now;
            let limited = !self.introductions.allow(now);
            self.introductions_refused += u64::from(limited);
            limited
        };
        let Some(remote) = remote.filter(|_| !refuse) else {
            return self.send_reply(reply, asker, String::new());
        };
        if let Some(ours) = self.by_peer.get(&asker).copied() {
            // Their offer wins the glare: our own attempt goes.
            self.drop_link(ours, "their offer crossed ours and wins", true);
        }
        let link = self.new_link_id();
        let state = LinkState::Answering { reply };
        self.links.insert(
            link,
            TabLink::new(asker, false, state, Some(remote), self.now),
        );
        self.by_peer.insert(asker, link);
        self.events.push_back(TabEvent::AcceptOffer {
            link,
            offer: offer.to_string(),
        });
    }

    fn send_reply(&mut self, reply: Reply, asker: PeerId, sdp: String) {
        match reply {
            Reply::Bridge => self.bridge_reply(asker, sdp),
            Reply::Relay { circuit } => {
                let message = ControlMessage::RelayIntroduced {
                    from: self.me,
                    to: asker,
                    sdp,
                };
                let _ = self.core.router.send_control(circuit, &message);
            }
        }
    }

    /// The platform made our offer or answer (every candidate gathered).
    pub fn handle_local_sdp(&mut self, link: LinkId, sdp: Result<LocalSdp, String>, now: u64) {
        self.now = now.max(self.now);
        match (sdp, self.links.get_mut(&link)) {
            (Ok(mut local), Some(l)) => {
                local.fingerprint = canonical_fingerprint(&local.fingerprint);
                let message = dtls_binding_message(&local.fingerprint);
                l.local_sdp = Some(local);
                self.sign(Signing::Binding(link), message);
            }
            (Err(e), Some(_)) => self.drop_link(link, &format!("no local SDP: {e}"), true),
            (_, None) => {}
        }
        self.after_input();
    }

    /// Our DTLS binding is signed: send the offer, or the answer.
    pub(super) fn binding_signed(&mut self, link: LinkId, signature: Result<Vec<u8>, String>) {
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        let cert = match (signature, &l.local_sdp) {
            (Ok(sig), Some(local)) => dtls_binding_cert(&local.fingerprint, &sig),
            _ => None,
        };
        let Some(body) = cert else {
            return self.drop_link(link, "could not sign our DTLS binding", true);
        };
        l.binding = Some(CertEntry {
            cert_type: cert_type::PEERSM_DTLS_BINDING,
            body,
        });
        let sdp = l
            .local_sdp
            .as_ref()
            .map(|s| s.sdp.clone())
            .unwrap_or_default();
        let peer = l.peer;
        match &l.state {
            LinkState::Offering { introducer } => match introducer.clone() {
                Introducer::Bridge => {
                    if !self.bridge_introduce(link, peer, sdp) {
                        self.drop_link(link, "not registered with a bridge", true);
                    }
                }
                Introducer::Route(route) => {
                    let purpose = Purpose::Introduce {
                        asker: self.me,
                        target: peer,
                        sdp,
                    };
                    self.spawn_route(route, purpose, tasks_parent_offer(link));
                }
            },
            LinkState::Answering { reply } => {
                let reply = *reply;
                if let Err(e) = self.start_responder(link) {
                    return self.drop_link(link, &e, true);
                }
                self.send_reply(reply, peer, sdp);
            }
            _ => {}
        }
    }

    fn start_responder(&mut self, link: LinkId) -> Result<(), String> {
        let onion = self.onion.as_ref().ok_or("no onion key")?;
        let onion_cert = CertEntry {
            cert_type: cert_type::PEERSM_NTOR_KEY,
            body: onion.cert.clone(),
        };
        let challenge = random_bytes(&mut self.rng).map_err(|e| e.to_string())?;
        let spki = self.config.spki.clone();
        let l = self.links.get_mut(&link).ok_or("gone")?;
        let binding = l.binding.clone().ok_or("no binding")?;
        let remote = l
            .remote_fingerprint
            .clone()
            .ok_or("no remote fingerprint")?;
        let certs = Certs {
            certs: vec![
                CertEntry {
                    cert_type: cert_type::PEERSM_RSA_SPKI,
                    body: spki,
                },
                binding,
                onion_cert,
            ],
        };
        let responder = tab_link_responder(challenge, certs, l.peer, remote);
        l.state = LinkState::Connecting {
            hs: Box::new(Handshake::responder(responder)),
        };
        Ok(())
    }

    /// The answer to our offer came (empty: the introduction failed).
    pub(super) fn answered(&mut self, link: LinkId, answer: String) {
        let Some(l) = self.links.get(&link) else {
            return;
        };
        if !matches!(l.state, LinkState::Offering { .. }) {
            return;
        }
        if answer.is_empty() {
            return self.drop_link(link, "the introducer could not introduce us", true);
        }
        let Some(remote) = fingerprint_of(&answer) else {
            return self.drop_link(link, "the answer has no fingerprint", true);
        };
        let Some(onion) = self.onion.as_ref() else {
            return self.drop_link(link, "no onion key", true);
        };
        let onion_cert = CertEntry {
            cert_type: cert_type::PEERSM_NTOR_KEY,
            body: onion.cert.clone(),
        };
        let peer = l.peer;
        let Some(binding) = l.binding.clone() else {
            return self.drop_link(link, "no binding", true);
        };
        let check = ResponderCheck::Peer {
            id: peer,
            dtls_fingerprint: remote.clone(),
        };
        let initiator = match LinkInitiator::new(Some(self.config.spki.clone()), check) {
            Ok(i) => i.with_extra_certs(vec![binding, onion_cert]),
            Err(e) => return self.drop_link(link, &e.to_string(), true),
        };
        if let Some(l) = self.links.get_mut(&link) {
            l.remote_fingerprint = Some(remote);
            l.state = LinkState::Connecting {
                hs: Box::new(Handshake::initiator(initiator)),
            };
        }
        self.events
            .push_back(TabEvent::ApplyAnswer { link, answer });
        self.pump_link_handshake(link);
    }

    /// The platform's send buffer for `link` went past its high water
    /// (`congested`), or drained below its low water. While congested, the
    /// link's frames stay queued here: a browser's data channel that is
    /// handed more than ~64 KB at once drops UDP packets and stalls for a
    /// retransmission timeout, and a relay cannot slow its upstream
    /// anyway (the circuits' SENDME windows bound what waits here).
    /// A channel that stays congested for `CONGESTED_MS` is dropped (its
    /// peer stopped reading), and one whose frames pile up past
    /// `TabConfig::max_link_backlog` at once.
    pub fn handle_link_congested(&mut self, link: LinkId, congested: bool) {
        let now = self.now;
        if let Some(l) = self.links.get_mut(&link) {
            l.congested_since = congested.then(|| l.congested_since.unwrap_or(now));
        }
    }

    /// The link's data channel is open over a DTLS connection whose peer
    /// presented the certificate with fingerprint `negotiated` (the
    /// browser's `getStats()`: the transport's `remoteCertificateId`). The
    /// link counts only if that is the certificate the SDP named, the one
    /// the peer's binding signs: otherwise someone sits between the tabs.
    pub fn handle_channel_open(
        &mut self,
        link: LinkId,
        negotiated: Result<String, String>,
        now: u64,
    ) {
        self.now = now.max(self.now);
        let Some(l) = self.links.get_mut(&link) else {
            return self.after_input();
        };
        let expected = l.remote_fingerprint.clone().unwrap_or_default();
        match negotiated {
            Ok(fp) if same_fingerprint(&fp, &expected) => {
                l.channel_open = true;
                let early = std::mem::take(&mut l.early_frames);
                self.pump_link_handshake(link);
                for frame in early {
                    self.link_frame(link, &frame);
                }
            }
            Ok(fp) => self.drop_link(
                link,
                &format!("DTLS certificate {fp} is not the one introduced ({expected})"),
                true,
            ),
            Err(e) => self.drop_link(link, &format!("no DTLS certificate to check: {e}"), true),
        }
        self.after_input();
    }

    pub(super) fn link_frame(&mut self, link: LinkId, frame: &[u8]) {
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        l.last_heard = self.now;
        if !l.channel_open {
            if l.early_frames.len() >= MAX_FRAMES_BEFORE_CHECK {
                return self.drop_link(link, "too many frames before the DTLS check", true);
            }
            l.early_frames.push(frame.to_vec());
            return;
        }
        match &mut l.state {
            LinkState::Connecting { hs } => {
                if let Err(e) = hs.handle_frame(frame) {
                    return self.drop_link(link, &format!("protocol error: {e}"), true);
                }
                self.pump_link_handshake(link);
            }
            LinkState::Open { .. } => {
                match decode_frame(frame, CircIdLen::Four, |_| CircIdLen::Four) {
                    Ok(cells) => {
                        self.count_received(link, &cells);
                        self.core.handle_cells(link, cells)
                    }
                    Err(e) => self.drop_link(link, &format!("protocol error: {e}"), true),
                }
            }
            _ => self.drop_link(link, "a frame before the handshake", true),
        }
    }

    fn pump_link_handshake(&mut self, link: LinkId) {
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        let LinkState::Connecting { hs } = &mut l.state else {
            return;
        };
        let out = hs.take_output();
        let (peer, we_initiated) = (l.peer, l.we_initiated);
        for f in out.frames {
            self.queue_frame(link, f);
        }
        let early = out.early;
        if let Some(m) = out.to_sign {
            self.sign(Signing::Handshake(link), m);
        }
        let Some(opened) = out.opened else {
            return;
        };
        let proven = opened.peer.filter(|p| p.id == peer);
        let Some((p, (ntor, ntor_sig))) = proven.and_then(|p| {
            let ntor = p.ntor_key.clone()?;
            Some((p, ntor))
        }) else {
            return self.drop_link(link, "the peer did not prove the ID introduced", true);
        };
        let side = if we_initiated {
            LinkSide::Initiator
        } else {
            LinkSide::Responder
        };
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        l.state = LinkState::Open {
            spki: p.key.spki_der().to_vec(),
            ntor,
            ntor_sig,
        };
        l.deadline = u64::MAX;
        l.added = true;
        (l.last_heard, l.last_sent) = (self.now, self.now);
        let router_peer = LinkPeer {
            id: Some(peer.0),
            ed25519_id: None,
        };
        if self.core.add_link(link, side, router_peer).is_err() {
            return self.drop_link(link, "no randomness for the link", true);
        }
        tracing::info!("link to {peer}: open");
        self.core.handle_cells(link, early);
        if let Insert::Full { ping } = self.routing.insert(peer, (), self.now) {
            // A full bucket keeps its live peers: the oldest is still
            // linked (a dead one was evicted when its link closed).
            if self.link_of(&ping).is_some() {
                self.routing.insert(ping, (), self.now);
            }
        }
        // A new link knows none of our files yet (DB_INFO).
        self.tell_new_link(link);
    }

    pub(super) fn handshake_signed(&mut self, link: LinkId, signature: Result<Vec<u8>, String>) {
        if self.is_bridge(link) {
            return self.bridge_signed(signature);
        }
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        let LinkState::Connecting { hs } = &mut l.state else {
            return;
        };
        let result = match signature {
            Ok(sig) => hs.handle_signature(sig).map_err(|e| e.to_string()),
            Err(e) => Err(format!("signing failed: {e}")),
        };
        match result {
            Ok(()) => self.pump_link_handshake(link),
            Err(e) => self.drop_link(link, &e, true),
        }
    }

    /// Links that did not open in time are dropped.
    pub(super) fn links_timeout(&mut self) {
        let late: Vec<LinkId> = self
            .links
            .iter()
            .filter(|(_, l)| l.deadline <= self.now)
            .map(|(id, _)| *id)
            .collect();
        for link in late {
            self.drop_link(link, "not open in time", true);
        }
    }

    /// Open links: a keepalive where we have been quiet, and the link
    /// closed where the peer has been silent, or not reading, too long.
    pub(super) fn links_upkeep(&mut self) {
        let now = self.now;
        let mut silent = Vec::new();
        let mut stuck = Vec::new();
        let mut quiet = Vec::new();
        for (id, l) in self.links.iter_mut().filter(|(_, l)| l.added) {
            if now.saturating_sub(l.last_heard) >= LINK_SILENT_MS {
                silent.push(*id);
            } else if l
                .congested_since
                .is_some_and(|t| now.saturating_sub(t) >= CONGESTED_MS)
            {
                stuck.push(*id);
            } else if now.saturating_sub(l.last_sent) >= KEEPALIVE_MS {
                // Counted as sent now, so one keepalive is queued per period.
                l.last_sent = now;
                quiet.push(*id);
            }
        }
        for link in silent {
            let why = format!("silent: nothing received for {} s", LINK_SILENT_MS / 1000);
            self.drop_link(link, &why, true);
        }
        for link in stuck {
            let why = format!("its channel has not drained for {} s", CONGESTED_MS / 1000);
            self.drop_link(link, &why, true);
        }
        for link in quiet {
            self.queue_cells(link, &[RawCell::new(0, command::PADDING, Vec::new())]);
        }
    }

    /// Forgets a link; `tell` asks the platform to close it.
    pub(super) fn drop_link(&mut self, link: LinkId, why: &str, tell: bool) {
        self.control_budget.forget(&link);
        let Some(l) = self.links.remove(&link) else {
            return;
        };
        tracing::info!("link to {} closed: {why}", l.peer);
        self.lost_links = true;
        // Frames still queued for it would otherwise wait for ever.
        self.frames.retain(|(queued, _)| *queued != link);
        self.ordb.link_closed(link);
        self.fairness.remove(&link);
        self.pending_infos.retain(|(l, _), _| *l != link);
        if self.by_peer.get(&l.peer) == Some(&link) {
            self.by_peer.remove(&l.peer);
        }
        if l.added {
            self.routing.remove_dead(&l.peer);
            self.core.remove_link(link);
        }
        if matches!(l.state, LinkState::Offering { .. }) {
            self.bridge_forget_offer(&l.peer);
        }
        if tell {
            self.events.push_back(TabEvent::CloseLink { link });
        }
    }
}

/// Our side of a link another tab opened to us: our certificates, the
/// peer and DTLS fingerprint it must prove. NETINFO carries timestamp 0
/// and no addresses, as Tor clients send (tor-spec §4.5): a linked tab
/// learns nothing of our clock (its skew would help tell tabs apart).
pub(super) fn tab_link_responder(
    challenge: [u8; 32],
    certs: Certs,
    peer: PeerId,
    remote_fingerprint: String,
) -> LinkResponder {
    LinkResponder::new(challenge, 0, None, Vec::new())
        .with_certs(certs)
        .expect_peer(peer, remote_fingerprint)
}

fn tasks_parent_offer(link: LinkId) -> super::tasks::Parent {
    super::tasks::Parent::Offer(link)
}
