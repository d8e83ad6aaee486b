//! The tab's link to its bridge: the link handshake as initiator (the
//! bridge must prove its identity and ntor key, we prove ours), then the
//! link carries our circuits. With the mesh on, a one-hop control circuit
//! registers us (DB_FIND_PEER), names the peers to link to (DB_FOUND_PEER)
//! and carries introductions (INTRODUCE / INTRODUCED) both ways.

use std::collections::BTreeMap;

use crate::cell::CircIdLen;
use crate::cell::{ControlMessage, LinkSpec};
use crate::channel::tor_certs::BridgeIdentity;
use crate::channel::{decode_frame, Handshake, LinkInitiator, ResponderCheck};
use crate::circuit::LinkSide;
use crate::client::MuxEvent;
use crate::crypto::PeerId;
use crate::router::LinkPeer;

use super::links::Reply;
use super::tasks::HopSpec;
use super::{LinkId, Signing, TabEvent, TabPeer};

/// A bridge has this long to finish the link handshake.
const HANDSHAKE_MS: u64 = 20_000;

enum BridgeState {
    Handshaking { hs: Box<Handshake>, deadline: u64 },
    Open { identity: Box<BridgeIdentity> },
}

pub(super) struct BridgeLink {
    link: LinkId,
    state: BridgeState,
    /// Our control circuit, and whether the bridge has registered us.
    control: Option<u32>,
    registered: bool,
    /// Our offers waiting for the bridge's INTRODUCED, by peer.
    awaiting: BTreeMap<PeerId, LinkId>,
}

impl BridgeLink {
    pub(super) fn fingerprint(&self) -> Option<[u8; 20]> {
        match &self.state {
            BridgeState::Open { identity } => Some(identity.relay.rsa_id),
            BridgeState::Handshaking { .. } => None,
        }
    }

    pub(super) fn deadline(&self) -> Option<u64> {
        match &self.state {
            BridgeState::Handshaking { deadline, .. } => Some(*deadline),
            BridgeState::Open { .. } => None,
        }
    }
}

impl TabPeer {
    /// The WebSocket to a bridge is open: the link handshake starts. When
    /// `pinned`, the bridge must prove that RSA identity. Returns the
    /// link's id (frames for it come out of `poll_transmit`).
    pub fn bridge_opened(&mut self, pinned: Option<[u8; 20]>, now: u64) -> LinkId {
        self.now = now.max(self.now);
        if let Some(old) = self.bridge.as_ref().map(|b| b.link) {
            self.bridge_closed("replaced by a new bridge link");
            self.events.push_back(TabEvent::CloseLink { link: old });
        }
        let link = self.new_link_id();
        let check = ResponderCheck::Bridge {
            now: i64::try_from(self.now / 1000).unwrap_or(i64::MAX),
            rsa_id: pinned,
        };
        let state = match LinkInitiator::new(Some(self.config.spki.clone()), check) {
            Ok(h) => BridgeState::Handshaking {
                hs: Box::new(Handshake::initiator(h)),
                deadline: self.now + HANDSHAKE_MS,
            },
            Err(e) => {
                tracing::warn!("cannot start the bridge handshake: {e}");
                self.events.push_back(TabEvent::CloseLink { link });
                return link;
            }
        };
        self.bridge = Some(BridgeLink {
            link,
            state,
            control: None,
            registered: false,
            awaiting: BTreeMap::new(),
        });
        self.pump_bridge_handshake();
        self.after_input();
        link
    }

    /// The bridge link's id (open or still in its handshake).
    pub fn bridge_link_id(&self) -> Option<LinkId> {
        self.bridge.as_ref().map(|b| b.link)
    }

    pub(super) fn is_bridge(&self, link: LinkId) -> bool {
        self.bridge.as_ref().is_some_and(|b| b.link == link)
    }

    pub(super) fn bridge_link(&self) -> Option<LinkId> {
        self.bridge
            .as_ref()
            .filter(|b| matches!(b.state, BridgeState::Open { .. }))
            .map(|b| b.link)
    }

    /// The bridge as the first hop of a circuit.
    /// The Ed25519 identity our bridge proved (it signs the relay list).
    pub(super) fn bridge_ed25519_id(&self) -> Option<[u8; 32]> {
        match &self.bridge.as_ref()?.state {
            BridgeState::Open { identity } => Some(identity.relay.ed25519_id),
            BridgeState::Handshaking { .. } => None,
        }
    }

    pub(super) fn bridge_hop(&self) -> Option<HopSpec> {
        match &self.bridge.as_ref()?.state {
            BridgeState::Open { identity } => Some(HopSpec {
                id: identity.relay.rsa_id,
                ntor: identity.ntor_key,
                specs: vec![LinkSpec::LegacyId(identity.relay.rsa_id)],
            }),
            BridgeState::Handshaking { .. } => None,
        }
    }

    pub(super) fn bridge_frame(&mut self, frame: &[u8]) {
        let Some(b) = self.bridge.as_mut() else {
            return;
        };
        match &mut b.state {
            BridgeState::Handshaking { hs, .. } => {
                if let Err(e) = hs.handle_frame(frame) {
                    return self.drop_bridge(&format!("protocol error from the bridge: {e}"));
                }
                self.pump_bridge_handshake();
            }
            BridgeState::Open { .. } => {
                match decode_frame(frame, CircIdLen::Four, |_| CircIdLen::Four) {
                    Ok(cells) => {
                        let link = b.link;
                        self.core.handle_cells(link, cells);
                    }
                    Err(e) => self.drop_bridge(&format!("bad frame from the bridge: {e}")),
                }
            }
        }
    }

    fn pump_bridge_handshake(&mut self) {
        let Some(b) = self.bridge.as_mut() else {
            return;
        };
        let link = b.link;
        let BridgeState::Handshaking { hs, .. } = &mut b.state else {
            return;
        };
        let out = hs.take_output();
        self.frames
            .extend(out.frames.into_iter().map(|f| (link, f)));
        let early = out.early;
        if let Some(m) = out.to_sign {
            self.sign(Signing::Handshake(link), m);
        }
        let Some(opened) = out.opened else {
            return;
        };
        let Some(identity) = opened.bridge else {
            return self.drop_bridge("the bridge proved no identity");
        };
        tracing::info!(
            "link to bridge open (link protocol v{}, the bridge sees us as {:?})",
            opened.link_version,
            opened.our_address
        );
        let fingerprint = identity.relay.rsa_id;
        let peer = LinkPeer {
            id: Some(fingerprint),
            ed25519_id: Some(identity.relay.ed25519_id),
        };
        if let Some(b) = self.bridge.as_mut() {
            b.state = BridgeState::Open { identity };
        }
        if self.core.add_link(link, LinkSide::Initiator, peer).is_err() {
            return self.drop_bridge("no randomness for the link");
        }
        self.core.handle_cells(link, early);
        self.events.push_back(TabEvent::BridgeOpen { fingerprint });
        self.maybe_join();
    }

    /// The bridge handshake's signature came back.
    pub(super) fn bridge_signed(&mut self, signature: Result<Vec<u8>, String>) {
        let Some(b) = self.bridge.as_mut() else {
            return;
        };
        let BridgeState::Handshaking { hs, .. } = &mut b.state else {
            return;
        };
        let result = match signature {
            Ok(sig) => hs.handle_signature(sig).map_err(|e| e.to_string()),
            Err(e) => Err(format!("signing failed: {e}")),
        };
        match result {
            Ok(()) => self.pump_bridge_handshake(),
            Err(e) => self.drop_bridge(&e),
        }
    }

    pub(super) fn bridge_timeout(&mut self) {
        let late = self
            .bridge
            .as_ref()
            .and_then(|b| b.deadline())
            .is_some_and(|d| d <= self.now);
        if late {
            self.drop_bridge("the bridge handshake timed out");
        }
    }

    /// We give up on the bridge link: the adapter closes it.
    fn drop_bridge(&mut self, why: &str) {
        if let Some(link) = self.bridge.as_ref().map(|b| b.link) {
            self.events.push_back(TabEvent::CloseLink { link });
        }
        self.bridge_closed(why);
    }

    /// The bridge link is gone: our circuits on it die, offers waiting for
    /// its introductions fail.
    pub(super) fn bridge_closed(&mut self, why: &str) {
        let Some(b) = self.bridge.take() else {
            return;
        };
        tracing::warn!("bridge link lost: {why}");
        self.core.remove_link(b.link);
        for (_, link) in b.awaiting {
            self.drop_link(link, "the bridge link closed", true);
        }
    }

    /// Starts joining the mesh when everything it needs is there: the
    /// bridge link, our signed ntor key, and the mesh option.
    pub(super) fn maybe_join(&mut self) {
        if !self.mesh_running() {
            return;
        }
        let Some(hop) = self.bridge_hop() else {
            return;
        };
        let Some(b) = self.bridge.as_mut() else {
            return;
        };
        if b.control.is_some() {
            return;
        }
        let link = b.link;
        let Some(mux) = self.core.mux(link) else {
            return;
        };
        match mux.create_ntor(hop.id, hop.ntor) {
            Ok(circ) => {
                if let Some(b) = self.bridge.as_mut() {
                    b.control = Some(circ);
                }
            }
            Err(e) => tracing::warn!("mesh: no control circuit: {e}"),
        }
    }

    /// When tabs left and we have fewer than half the links we join with,
    /// ask the bridge again for peers, as when joining: bucket refreshes
    /// need links to look through, and a tab with none would stay alone.
    /// Links still being set up count, and a tab that never lost one
    /// waits for the tabs that join after it: asking again then would make
    /// the bridge introduce the same two tabs twice.
    pub(super) fn rejoin_if_isolated(&mut self) {
        if !self.lost_links || self.links.len() * 2 >= self.config.join_links {
            return;
        }
        let Some(b) = self.bridge.as_ref() else {
            return;
        };
        let (Some(control), link, true) = (b.control, b.link, b.registered) else {
            return;
        };
        let find = ControlMessage::FindPeer {
            target: self.me,
            modulus: self.key.modulus(),
        };
        if let Some(mux) = self.core.mux(link) {
            let _ = mux.send_control(control, &find);
        }
    }

    /// Events of the control circuit; `true` when the event was its.
    pub(super) fn bridge_mux_event(&mut self, link: LinkId, event: &MuxEvent) -> bool {
        let Some(b) = self.bridge.as_mut() else {
            return false;
        };
        let Some(control) = b.control.filter(|_| b.link == link) else {
            return false;
        };
        match event {
            MuxEvent::HopAdded { circ, .. } if *circ == control => {
                let find = ControlMessage::FindPeer {
                    target: self.me,
                    modulus: self.key.modulus(),
                };
                if let Some(mux) = self.core.mux(link) {
                    if let Err(e) = mux.send_control(control, &find) {
                        tracing::warn!("mesh: cannot register: {e}");
                    }
                }
                true
            }
            MuxEvent::HopFailed { circ, .. } | MuxEvent::CircuitClosed { circ, .. }
                if *circ == control =>
            {
                tracing::info!("mesh: control circuit closed");
                if let Some(b) = self.bridge.as_mut() {
                    b.control = None;
                    b.registered = false;
                }
                true
            }
            MuxEvent::Control { circ, message } if *circ == control => {
                self.bridge_message(message.clone());
                true
            }
            _ => false,
        }
    }

    fn bridge_message(&mut self, message: ControlMessage) {
        match message {
            ControlMessage::FoundPeer { peers } => {
                if let Some(b) = self.bridge.as_mut() {
                    b.registered = true;
                }
                // Those we may not link to are left out before taking
                // `join_links`: when they are the closest, the next ones
                // are asked instead of nobody.
                let fresh: Vec<PeerId> = peers
                    .into_iter()
                    .map(|(id, _bridge)| id)
                    .filter(|id| self.may_offer_to(id))
                    .take(self.config.join_links)
                    .collect();
                for id in fresh {
                    self.offer(id, super::links::Introducer::Bridge);
                }
            }
            ControlMessage::Introduce { peer, sdp } => {
                self.answer(peer, &sdp, Reply::Bridge);
            }
            ControlMessage::Introduced { peer, sdp } => {
                let waiting = self.bridge.as_mut().and_then(|b| b.awaiting.remove(&peer));
                if let Some(link) = waiting {
                    self.answered(link, sdp);
                }
            }
            // Requests and bridge-to-bridge messages are not for tabs.
            _ => {}
        }
    }

    /// Sends our offer to `peer` through the bridge; its answer comes back
    /// to `link`. `false` when there is no registered control circuit.
    pub(super) fn bridge_introduce(&mut self, link: LinkId, peer: PeerId, sdp: String) -> bool {
        let Some(b) = self.bridge.as_mut() else {
            return false;
        };
        let (Some(control), bridge_link) = (b.control, b.link) else {
            return false;
        };
        b.awaiting.insert(peer, link);
        let message = ControlMessage::Introduce { peer, sdp };
        self.core
            .mux(bridge_link)
            .is_some_and(|m| m.send_control(control, &message).is_ok())
    }

    /// Our answer to an offer the bridge carried.
    pub(super) fn bridge_reply(&mut self, peer: PeerId, sdp: String) {
        let Some(b) = self.bridge.as_ref() else {
            return;
        };
        let (Some(control), link) = (b.control, b.link) else {
            return;
        };
        let message = ControlMessage::Introduced { peer, sdp };
        if let Some(m) = self.core.mux(link) {
            let _ = m.send_control(control, &message);
        }
    }

    /// Forgets an offer waiting for the bridge (it failed elsewhere).
    pub(super) fn bridge_forget_offer(&mut self, peer: &PeerId) {
        if let Some(b) = self.bridge.as_mut() {
            b.awaiting.remove(peer);
        }
    }
}
