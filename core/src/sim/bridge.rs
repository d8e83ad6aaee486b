//! A simulated bridge: the node's `RelayPeer` with its mesh and directory,
//! and what the node's adapter does around it — the link handshake as
//! responder for each tab (bridge CERTS), the federation link as
//! initiator to another bridge — on the simulator's wires.

use std::collections::BTreeMap;

use ed25519_dalek::SigningKey;

use crate::cell::CircIdLen;
use crate::channel::{
    decode_frame, encode_cells, Handshake, LinkInitiator, LinkOpened, LinkResponder, ResponderCheck,
};
use crate::circuit::LinkSide;
use crate::crypto::ntor::NtorRelayKey;
use crate::crypto::relay_certs::{bridge_certs, CertSigners};
use crate::crypto::{PeerId, RsaIdentityKey};
use crate::mesh::bridge::LinkIdentity;
use crate::peer::{RelayPeer, RelayPeerConfig, RelayPeerEvent};
use crate::rng::{Rng, SimRng};
use crate::router::{LinkPeer, RouterConfig};
use crate::service::DirRoutes;

use super::{LinkNo, Net, Node, NodeId, SimKey};

/// A link at the bridge: its handshake until open.
enum BridgeLink {
    Handshaking(Box<Handshake>, Option<String>),
    Open,
}

pub(crate) struct SimBridge {
    pub(crate) peer: RelayPeer<LinkNo>,
    pub(crate) key: SimKey,
    ed_identity: SigningKey,
    ed_signing: SigningKey,
    pub(crate) ntor_public: [u8; 32],
    pub(crate) url: String,
    links: BTreeMap<LinkNo, BridgeLink>,
    next_link: LinkNo,
    rng: SimRng,
    /// Frames to send per link.
    out: Vec<(LinkNo, Vec<u8>)>,
    /// Federation links to open (URL, identity the bridge there must prove).
    federate: Vec<(String, [u8; 20])>,
    pub(crate) fingerprint: [u8; 20],
}

impl SimBridge {
    pub(crate) fn new(rng: &mut SimRng, index: usize) -> SimBridge {
        let key = SimKey::generate(rng);
        let rsa_id = RsaIdentityKey::from_spki(&key.spki)
            .and_then(|k| k.tor_identity_digest())
            .unwrap_or_default();
        let ed_identity = SigningKey::from_bytes(&rng.bytes::<32>().unwrap_or_default());
        let ed_signing = SigningKey::from_bytes(&rng.bytes::<32>().unwrap_or_default());
        let ntor = NtorRelayKey::new(rsa_id, rng.bytes::<32>().unwrap_or_default());
        let ntor_public = ntor.public;
        let config = RelayPeerConfig {
            router: RouterConfig::new(vec![ntor]),
            dir: Some(DirRoutes::default()),
            exit: None,
            bridge: Some(rsa_id),
        };
        let mut own = rng.fork();
        let peer = RelayPeer::new(config, &mut own).unwrap_or_else(|_| unreachable!());
        SimBridge {
            peer,
            key,
            ed_identity,
            ed_signing,
            ntor_public,
            url: format!("ws://sim-bridge-{index}/bridge"),
            links: BTreeMap::new(),
            next_link: 1,
            rng: own,
            out: Vec::new(),
            federate: Vec::new(),
            fingerprint: rsa_id,
        }
    }

    fn new_link(&mut self) -> LinkNo {
        let l = self.next_link;
        self.next_link += 1;
        l
    }

    /// A tab (or a bridge) opened a WebSocket to us: we answer as the
    /// node's `ws_link` does.
    pub(crate) fn accept(&mut self, now: u64) -> LinkNo {
        let link = self.new_link();
        let certs = bridge_certs(
            &CertSigners {
                rsa_identity: &self.key.private,
                ed_identity: &self.ed_identity,
                ed_signing: &self.ed_signing,
            },
            self.ntor_public,
            i64::try_from(now / 1000).unwrap_or(0),
            self.rng.bytes().unwrap_or_default(),
        )
        .unwrap_or_else(|e| unreachable!("bridge certs: {e}"));
        let challenge = self.rng.bytes().unwrap_or_default();
        let responder =
            LinkResponder::new(challenge, (now / 1000) as u32, None, Vec::new()).with_certs(certs);
        self.links.insert(
            link,
            BridgeLink::Handshaking(Box::new(Handshake::responder(responder)), None),
        );
        link
    }

    /// We open a federation link to the bridge at `url`, which must prove
    /// `fingerprint`.
    pub(crate) fn initiate(&mut self, url: String, fingerprint: [u8; 20], now: u64) -> LinkNo {
        let link = self.new_link();
        let check = ResponderCheck::Bridge {
            now: i64::try_from(now / 1000).unwrap_or(0),
            rsa_id: Some(fingerprint),
        };
        let initiator = LinkInitiator::new(Some(self.key.spki.clone()), check)
            .unwrap_or_else(|e| unreachable!("{e}"));
        let mut hs = Box::new(Handshake::initiator(initiator));
        while let Some(f) = hs.poll_transmit() {
            self.out.push((link, f));
        }
        self.links
            .insert(link, BridgeLink::Handshaking(hs, Some(url)));
        link
    }

    pub(crate) fn frame(&mut self, link: LinkNo, frame: &[u8], now: u64) {
        match self.links.get_mut(&link) {
            Some(BridgeLink::Handshaking(hs, _)) => {
                if hs.handle_frame(frame).is_err() {
                    self.links.remove(&link);
                    return;
                }
                self.pump(link, now);
            }
            Some(BridgeLink::Open) => {
                match decode_frame(frame, CircIdLen::Four, |_| CircIdLen::Four) {
                    Ok(cells) => self.peer.handle_cells(link, cells, now),
                    Err(_) => self.closed(link, now),
                }
            }
            None => {}
        }
    }

    fn pump(&mut self, link: LinkNo, now: u64) {
        let Some(BridgeLink::Handshaking(hs, url)) = self.links.get_mut(&link) else {
            return;
        };
        loop {
            let out = hs.take_output();
            self.out.extend(out.frames.into_iter().map(|f| (link, f)));
            if let Some(m) = out.to_sign {
                // WebCrypto would take a while; the simulated key answers now.
                if hs.handle_signature(self.key.sign(&m)).is_err() {
                    self.links.remove(&link);
                    return;
                }
                continue;
            }
            if let Some(opened) = out.opened {
                let url = url.take();
                self.links.insert(link, BridgeLink::Open);
                self.opened(link, *opened, url, now);
                self.peer.handle_cells(link, out.early, now);
            }
            return;
        }
    }

    fn opened(&mut self, link: LinkNo, opened: LinkOpened, url: Option<String>, now: u64) {
        match (opened.side, url, opened.bridge) {
            (LinkSide::Initiator, Some(url), Some(bridge)) => {
                let their = LinkIdentity {
                    id: PeerId(bridge.relay.rsa_id),
                    modulus: Vec::new(),
                    fingerprint: bridge.relay.rsa_id,
                };
                let mine = self.url.clone();
                let _ = self
                    .peer
                    .add_federation_link(link, their, bridge.ntor_key, url, mine);
            }
            _ => {
                let (peer, identity) = match &opened.peer {
                    Some(p) => {
                        let fingerprint = p.key.tor_identity_digest().unwrap_or_default();
                        (
                            LinkPeer {
                                id: Some(fingerprint),
                                ed25519_id: None,
                            },
                            Some(LinkIdentity {
                                id: p.id,
                                modulus: p.key.modulus(),
                                fingerprint,
                            }),
                        )
                    }
                    None => (LinkPeer::default(), None),
                };
                let _ = self
                    .peer
                    .add_link(link, LinkSide::Responder, peer, identity);
            }
        }
        self.peer.drive(now);
    }

    pub(crate) fn closed(&mut self, link: LinkNo, now: u64) {
        if self.links.remove(&link).is_some() {
            self.peer.remove_link(link, now);
        }
    }
}

/// Moves what bridge `n` has to send; `true` when anything moved.
pub(super) fn step(net: &mut Net, n: NodeId) -> bool {
    let Some(Node::Bridge(b)) = net.nodes.get_mut(n) else {
        return false;
    };
    let mut frames = std::mem::take(&mut b.out);
    for (link, cells) in b.peer.transmit() {
        for batch in cells.chunks(crate::peer::tab::CELLS_PER_FRAME) {
            if let Ok(f) = encode_cells(batch, CircIdLen::Four) {
                frames.push((link, f));
            }
        }
    }
    let mut lost = Vec::new();
    while let Some(e) = b.peer.poll_event() {
        match e {
            RelayPeerEvent::Federate { url, fingerprint } => b.federate.push((url, fingerprint)),
            RelayPeerEvent::FederationLost { link, .. } => lost.push(link),
            // No relays or exits behind simulated bridges.
            RelayPeerEvent::Connect { target } => b.peer.connect_failed(&target, net.now),
            RelayPeerEvent::Exit(_) => {}
        }
    }
    let federate = std::mem::take(&mut b.federate);
    let moved = !frames.is_empty() || !lost.is_empty() || !federate.is_empty();
    for (link, f) in frames {
        net.send((n, link), f);
    }
    for link in lost {
        net.disconnect((n, link));
    }
    for (url, fingerprint) in federate {
        federate_with(net, n, &url, fingerprint);
    }
    moved
}

/// The operators of bridges `a` and `b` trust each other (as
/// `--peer-bridge URL#FINGERPRINT` on one side, `--trust-bridge` on the
/// other).
pub(crate) fn trust_each_other(net: &mut Net, a: NodeId, b: NodeId) {
    let fingerprint = |net: &Net, n| net.bridge(n).map(|b| b.fingerprint);
    let (Some(fa), Some(fb)) = (fingerprint(net, a), fingerprint(net, b)) else {
        return;
    };
    if let Some(Node::Bridge(x)) = net.nodes.get_mut(a) {
        x.peer.trust_bridge(fb);
    }
    if let Some(Node::Bridge(x)) = net.nodes.get_mut(b) {
        x.peer.trust_bridge(fa);
    }
}

/// Bridge `from` links to the bridge at `url`, which must prove
/// `fingerprint` (as `--peer-bridge URL#FINGERPRINT`, or a vouched one).
pub(crate) fn federate_with(net: &mut Net, from: NodeId, url: &str, fingerprint: [u8; 20]) {
    let target = (0..net.nodes.len()).find(|i| net.bridge(*i).is_some_and(|b| b.url == url));
    let Some(target) = target else {
        return;
    };
    let now = net.now;
    let theirs = match net.nodes.get_mut(target) {
        Some(Node::Bridge(b)) => b.accept(now),
        _ => return,
    };
    let ours = match net.nodes.get_mut(from) {
        Some(Node::Bridge(b)) => {
            b.peer.federating_with(url);
            b.initiate(url.to_string(), fingerprint, now)
        }
        _ => return,
    };
    net.connect((from, ours), (target, theirs));
}
