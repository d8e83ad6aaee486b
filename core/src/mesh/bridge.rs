//! The bridge's part in the mesh (docs/PROTOCOL.md "Mesh"), sans IO: tabs
//! register a control circuit with DB_FIND_PEER and learn the registered
//! peers closest to an ID (DB_FOUND_PEER); INTRODUCE / INTRODUCED carry an
//! SDP offer from one tab to another and the answer back, so two tabs can
//! open a WebRTC link. Only tabs that authenticated their link (and send
//! the modulus of that key) can register; introductions name peers by ID,
//! and the bridge forwards them only to the control circuit of that ID.
//!
//! Federation: bridges announce themselves (BRIDGE_HELLO), keep each other
//! told of their tabs (BRIDGE_PEERS), and carry introductions between a
//! tab here and a tab there (RELAY_INTRODUCE / RELAY_INTRODUCED). Bridges
//! keep a Kademlia routing table of bridges (by RSA fingerprint); a bridge
//! that says hello is answered with the known bridges closest to it
//! (BRIDGE_NODES) and federates with those it has room for.
//!
//! Trust (docs/SECURITY.md): a bridge takes BRIDGE_HELLO only from a
//! bridge identity it trusts: one the operator named (`trust_bridge`:
//! `--peer-bridge URL#FINGERPRINT`, `--trust-bridge`), or one an
//! operator-trusted bridge vouched for by listing it in BRIDGE_NODES on
//! its own authenticated circuit. Vouches expire after `VOUCH_TTL_MS`
//! and are not passed on: only operator-trusted bridges vouch. Without
//! that, any tab could say hello and then speak for other bridges' tabs
//! (BRIDGE_PEERS, RELAY_INTRODUCE) or send us dialling anywhere
//! (BRIDGE_NODES). Discovery is capped: at most `MAX_DISCOVERING`
//! federation attempts at once, `MAX_VOUCHED` vouches kept.
//!
//! A route is a circuit on a link, `(link, circuit id)`: a tab's control
//! circuit through our router, or our own circuit to a federated bridge.
//! Messages to send and bridges to federate with come out of `poll_event`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Debug;

use crate::cell::peersm::{MAX_BRIDGE_PEERS, MAX_FOUND_PEERS};
use crate::cell::ControlMessage;
use crate::crypto::PeerId;
use crate::dht::{Distance, RoutingTable, K};

/// How long a vouch from a trusted bridge lasts (ms); renewed each time
/// it lists the bridge again.
pub const VOUCH_TTL_MS: u64 = 60 * 60 * 1000;
/// Vouched bridges kept at once.
pub const MAX_VOUCHED: usize = 64;
/// Federation attempts (URLs being linked to) at once.
pub const MAX_DISCOVERING: usize = 16;

/// A circuit control messages travel on: its link and id there.
pub type Route<L> = (L, u32);

/// Who is at the other end of a link: a tab's peer ID and key modulus,
/// and the RSA fingerprint of that key (how bridges are named).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkIdentity {
    pub id: PeerId,
    pub modulus: Vec<u8>,
    pub fingerprint: [u8; 20],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BridgeMeshEvent<L> {
    Send {
        route: Route<L>,
        message: ControlMessage,
    },
    /// Federate with the bridge at `url` (found through BRIDGE_NODES),
    /// which must prove the identity `fingerprint`.
    Federate { url: String, fingerprint: [u8; 20] },
}

struct FederatedBridge<L> {
    url: String,
    /// Every circuit on which it said hello: two bridges that find each
    /// other at once federate both ways, and either circuit carries its
    /// messages.
    routes: Vec<Route<L>>,
    /// The tabs it hosts.
    peers: Vec<PeerId>,
}

pub struct BridgeMesh<L> {
    peers: BTreeMap<PeerId, Route<L>>,
    /// Federated bridges, by fingerprint.
    bridges: BTreeMap<PeerId, FederatedBridge<L>>,
    /// The bridges' DHT, by fingerprint, with their URLs.
    routing: RoutingTable<String>,
    /// URLs we are federating with or trying to.
    discovering: BTreeSet<String>,
    /// Bridges the operator trusts (by fingerprint).
    trusted: BTreeSet<PeerId>,
    /// Bridges an operator-trusted bridge vouched for, until when (ms).
    vouched: BTreeMap<PeerId, u64>,
    /// Introductions from a federated bridge's tab to one of ours, waiting
    /// for our tab's answer: (our tab, their tab) → their bridge.
    remote_origins: BTreeMap<(PeerId, PeerId), PeerId>,
    introductions: u64,
    events: VecDeque<BridgeMeshEvent<L>>,
}

impl<L: Copy + Ord + Debug> BridgeMesh<L> {
    /// The mesh of the bridge whose RSA fingerprint is `me`.
    pub fn new(me: [u8; 20]) -> Self {
        BridgeMesh {
            peers: BTreeMap::new(),
            bridges: BTreeMap::new(),
            routing: RoutingTable::new(PeerId(me)),
            discovering: BTreeSet::new(),
            trusted: BTreeSet::new(),
            vouched: BTreeMap::new(),
            remote_origins: BTreeMap::new(),
            introductions: 0,
            events: VecDeque::new(),
        }
    }

    /// The operator trusts the bridge whose RSA fingerprint is `fingerprint`.
    pub fn trust_bridge(&mut self, fingerprint: [u8; 20]) {
        self.trusted.insert(PeerId(fingerprint));
    }

    /// Whether a BRIDGE_HELLO from `bridge` is taken at `now`.
    pub fn trusts(&self, bridge: &PeerId, now: u64) -> bool {
        self.trusted.contains(bridge) || self.vouched.get(bridge).is_some_and(|until| *until > now)
    }

    /// An operator-trusted bridge listed `bridge`: trusted until
    /// `now + VOUCH_TTL_MS`, if there is room.
    fn vouch(&mut self, bridge: PeerId, now: u64) -> bool {
        self.vouched.retain(|_, until| *until > now);
        if self.vouched.len() >= MAX_VOUCHED && !self.vouched.contains_key(&bridge) {
            return false;
        }
        self.vouched
            .insert(bridge, now.saturating_add(VOUCH_TTL_MS));
        true
    }

    /// A federation link to `url` is being set up (or retried).
    pub fn federating_with(&mut self, url: &str) {
        self.discovering.insert(url.to_string());
    }

    pub fn poll_event(&mut self) -> Option<BridgeMeshEvent<L>> {
        self.events.pop_front()
    }

    fn send(&mut self, route: Route<L>, message: ControlMessage) {
        self.events
            .push_back(BridgeMeshEvent::Send { route, message });
    }

    fn send_to_bridge(&mut self, bridge: &PeerId, message: ControlMessage) {
        if let Some(route) = self.bridges.get(bridge).and_then(|b| b.routes.first()) {
            let route = *route;
            self.send(route, message);
        }
    }

    /// A control message on `route`, from the link's authenticated peer
    /// `from` (`None`: an anonymous link, which may not use the mesh).
    /// `now` orders the bridges' routing table (ms).
    pub fn handle(
        &mut self,
        from: Option<&LinkIdentity>,
        route: Route<L>,
        message: ControlMessage,
        now: u64,
    ) {
        let Some(from) = from else {
            tracing::debug!("control message on an anonymous link: ignored");
            return;
        };
        let me = from.id;
        // Bridges are named by fingerprint.
        let bridge_id = PeerId(from.fingerprint);
        let from_bridge = self
            .bridges
            .get(&bridge_id)
            .is_some_and(|b| b.routes.contains(&route));
        match message {
            ControlMessage::FindPeer { target, modulus } => {
                if modulus != from.modulus {
                    tracing::info!(peer = %me, "DB_FIND_PEER with another key's modulus: ignored");
                    return;
                }
                self.peers.insert(me, route);
                let reply = self.found_peers(me, &target);
                self.send(route, reply);
                self.announce_peers();
            }
            ControlMessage::Introduce { peer, sdp } => {
                self.introductions += 1;
                if peer != me {
                    if let Some(&target) = self.peers.get(&peer) {
                        return self.send(target, ControlMessage::Introduce { peer: me, sdp });
                    }
                    let remote = self
                        .bridges
                        .iter()
                        .find(|(_, b)| b.peers.contains(&peer))
                        .map(|(id, _)| *id);
                    if let Some(bridge) = remote {
                        let relay = ControlMessage::RelayIntroduce {
                            from: me,
                            to: peer,
                            sdp,
                        };
                        return self.send_to_bridge(&bridge, relay);
                    }
                }
                self.send(
                    route,
                    ControlMessage::Introduced {
                        peer,
                        sdp: String::new(),
                    },
                );
            }
            ControlMessage::Introduced { peer, sdp } => {
                if let Some(&origin) = self.peers.get(&peer) {
                    self.send(origin, ControlMessage::Introduced { peer: me, sdp });
                } else if let Some(bridge) = self.remote_origins.remove(&(me, peer)) {
                    let relay = ControlMessage::RelayIntroduced {
                        from: me,
                        to: peer,
                        sdp,
                    };
                    self.send_to_bridge(&bridge, relay);
                }
            }
            ControlMessage::BridgeHello { url } => {
                if !self.trusts(&bridge_id, now) {
                    tracing::info!(from = %bridge_id, "BRIDGE_HELLO from an identity we do not trust: ignored");
                    return;
                }
                self.hello(bridge_id, route, url, now)
            }
            // Only operator-trusted bridges vouch for others.
            ControlMessage::BridgeNodes { bridges }
                if from_bridge && self.trusted.contains(&bridge_id) =>
            {
                let me_fp = *self.routing.me();
                for (id, url) in bridges.into_iter().take(K) {
                    if id == me_fp || !self.vouch(id, now) {
                        continue;
                    }
                    // Attempts in progress: URLs not (yet) a federated bridge's.
                    let attempts = self
                        .discovering
                        .iter()
                        .filter(|u| !self.bridges.values().any(|b| &b.url == *u))
                        .count();
                    let new = !self.bridges.contains_key(&id)
                        && !self.discovering.contains(&url)
                        && attempts < MAX_DISCOVERING
                        && self.routing.has_room_for(&id);
                    if new {
                        tracing::info!(bridge = %id, %url, by = %bridge_id, "bridge vouched for by a trusted one");
                        self.discovering.insert(url.clone());
                        self.events.push_back(BridgeMeshEvent::Federate {
                            url,
                            fingerprint: id.0,
                        });
                    }
                }
            }
            ControlMessage::BridgePeers { peers } if from_bridge => {
                if let Some(b) = self.bridges.get_mut(&bridge_id) {
                    b.peers = peers;
                }
            }
            ControlMessage::RelayIntroduce { from, to, sdp } if from_bridge => {
                match self.peers.get(&to).copied() {
                    Some(target) => {
                        self.send(target, ControlMessage::Introduce { peer: from, sdp });
                        self.remote_origins.insert((to, from), bridge_id);
                    }
                    None => self.send(
                        route,
                        ControlMessage::RelayIntroduced {
                            from: to,
                            to: from,
                            sdp: String::new(),
                        },
                    ),
                }
            }
            ControlMessage::RelayIntroduced { from, to, sdp } if from_bridge => {
                if let Some(&origin) = self.peers.get(&to) {
                    self.send(origin, ControlMessage::Introduced { peer: from, sdp });
                }
            }
            // Answers are the bridge's to give, not to receive; FIND_NODE
            // is for tabs (their linked peers); bridge messages only count
            // from a bridge that said hello on that circuit.
            _ => {}
        }
    }

    /// A bridge said hello on `route` (or we greet one we linked to).
    fn hello(&mut self, bridge_id: PeerId, route: Route<L>, url: String, now: u64) {
        tracing::info!(bridge = %bridge_id, %url, "federated bridge");
        // A bridge keeps the URL it first gave: a repeated hello with new
        // URLs neither grows `discovering` nor gets them announced.
        if !self.bridges.contains_key(&bridge_id) {
            self.routing.insert(bridge_id, url.clone(), now);
            self.discovering.insert(url.clone());
        }
        let bridge = self.bridges.entry(bridge_id).or_insert(FederatedBridge {
            url,
            routes: Vec::new(),
            peers: Vec::new(),
        });
        if !bridge.routes.contains(&route) {
            bridge.routes.push(route);
        }
        let peers = self.local_peers();
        self.send(route, ControlMessage::BridgePeers { peers });
        // The other bridges hear of the newcomer too (whichever said hello
        // first still learns of every later bridge), and the newcomer of
        // the bridges we know. What we list, bridges that trust us take as
        // vouched for: so we list only bridges our own operator trusts,
        // never ones we took on another bridge's word.
        if self.trusted.contains(&bridge_id) {
            let newcomer_url = self
                .bridges
                .get(&bridge_id)
                .map(|b| b.url.clone())
                .unwrap_or_default();
            let others: Vec<PeerId> = self
                .bridges
                .keys()
                .filter(|id| **id != bridge_id)
                .copied()
                .collect();
            for other in others {
                let nodes = ControlMessage::BridgeNodes {
                    bridges: vec![(bridge_id, newcomer_url.clone())],
                };
                self.send_to_bridge(&other, nodes);
            }
        }
        let known = self
            .routing
            .closest(&bridge_id, self.routing.len())
            .into_iter()
            .filter(|e| e.id != bridge_id && self.trusted.contains(&e.id))
            .take(K)
            .map(|e| (e.id, e.contact))
            .collect();
        self.send(route, ControlMessage::BridgeNodes { bridges: known });
    }

    /// We greet the bridge at `url` over our circuit `route` to it: it is
    /// federated from our side too.
    pub fn greeted(&mut self, bridge: &LinkIdentity, route: Route<L>, url: String, now: u64) {
        let id = PeerId(bridge.fingerprint);
        // It also hears of the bridges our operator trusts: if it learned
        // of a bridge that said hello to us before it was federated here,
        // this is how it comes to trust (and find) that one.
        self.hello(id, route, url, now);
    }

    /// Circuit `route` is gone: a tab's registration, a bridge's route.
    pub fn circuit_closed(&mut self, route: Route<L>) {
        self.forget(|r| *r == route);
    }

    /// Every circuit on `link` is gone.
    pub fn link_closed(&mut self, link: L) {
        self.forget(|r| r.0 == link);
    }

    fn forget(&mut self, gone: impl Fn(&Route<L>) -> bool) {
        let before = self.peers.len();
        self.peers.retain(|_, r| !gone(r));
        for b in self.bridges.values_mut() {
            b.routes.retain(|r| !gone(r));
        }
        let dead: Vec<PeerId> = self
            .bridges
            .iter()
            .filter(|(_, b)| b.routes.is_empty())
            .map(|(id, _)| *id)
            .collect();
        for id in dead {
            if let Some(b) = self.bridges.remove(&id) {
                self.discovering.remove(&b.url);
            }
            self.routing.remove_dead(&id);
        }
        if self.peers.len() != before {
            self.announce_peers();
        }
    }

    /// A federation attempt to `url` ended; it may be found again.
    pub fn federation_failed(&mut self, url: &str) {
        if !self.bridges.values().any(|b| b.url == url) {
            self.discovering.remove(url);
        }
    }

    pub fn introductions(&self) -> u64 {
        self.introductions
    }

    /// Tabs registered here.
    pub fn registered(&self) -> usize {
        self.peers.len()
    }

    pub fn is_registered(&self, id: &PeerId) -> bool {
        self.peers.contains_key(id)
    }

    /// Federated bridges and how many tabs each hosts.
    pub fn federation(&self) -> Vec<(String, usize)> {
        self.bridges
            .values()
            .map(|b| (b.url.clone(), b.peers.len()))
            .collect()
    }

    fn local_peers(&self) -> Vec<PeerId> {
        let mut ids: Vec<PeerId> = self.peers.keys().copied().collect();
        ids.truncate(MAX_BRIDGE_PEERS);
        ids
    }

    /// Tells every federated bridge our current tabs.
    fn announce_peers(&mut self) {
        let peers = self.local_peers();
        let bridges: Vec<PeerId> = self.bridges.keys().copied().collect();
        for b in bridges {
            self.send_to_bridge(
                &b,
                ControlMessage::BridgePeers {
                    peers: peers.clone(),
                },
            );
        }
    }

    /// Our tabs and the federated bridges' tabs closest to `target`, not
    /// `me`; ours with an empty bridge (this one), theirs with their URL.
    fn found_peers(&self, me: PeerId, target: &PeerId) -> ControlMessage {
        let mut all: Vec<(PeerId, String)> =
            self.peers.keys().map(|p| (*p, String::new())).collect();
        for b in self.bridges.values() {
            all.extend(b.peers.iter().map(|p| (*p, b.url.clone())));
        }
        all.retain(|(p, _)| *p != me);
        all.sort_by_key(|(p, _)| Distance::between(p, target));
        all.dedup_by_key(|(p, _)| *p);
        all.truncate(MAX_FOUND_PEERS);
        ControlMessage::FoundPeer { peers: all }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lp(id: PeerId, modulus: [u8; 4]) -> LinkIdentity {
        LinkIdentity {
            id,
            modulus: modulus.to_vec(),
            fingerprint: id.0,
        }
    }

    fn sent(mesh: &mut BridgeMesh<u32>) -> Vec<(Route<u32>, ControlMessage)> {
        std::iter::from_fn(|| mesh.poll_event())
            .filter_map(|e| match e {
                BridgeMeshEvent::Send { route, message } => Some((route, message)),
                BridgeMeshEvent::Federate { .. } => None,
            })
            .collect()
    }

    #[test]
    fn registration_lookup_and_introductions() {
        let mut mesh = BridgeMesh::new([0xee; 20]);
        let (a, b, c) = (PeerId([1; 20]), PeerId([2; 20]), PeerId([3; 20]));
        let find = |target| ControlMessage::FindPeer {
            target,
            modulus: vec![9; 4],
        };
        // Anonymous links and other keys' moduli register nothing.
        mesh.handle(None, (1, 5), find(a), 0);
        mesh.handle(Some(&lp(a, [8; 4])), (1, 5), find(a), 0);
        assert_eq!(mesh.registered(), 0);
        assert!(sent(&mut mesh).is_empty());

        mesh.handle(Some(&lp(a, [9; 4])), (1, 5), find(a), 0);
        assert_eq!(
            sent(&mut mesh),
            [((1, 5), ControlMessage::FoundPeer { peers: vec![] })]
        );
        mesh.handle(Some(&lp(b, [9; 4])), (2, 7), find(b), 0);
        assert_eq!(
            sent(&mut mesh),
            [(
                (2, 7),
                ControlMessage::FoundPeer {
                    peers: vec![(a, String::new())]
                }
            )]
        );
        // b introduces itself to a: a's control circuit gets it, from b.
        let offer = ControlMessage::Introduce {
            peer: a,
            sdp: "offer".into(),
        };
        mesh.handle(Some(&lp(b, [9; 4])), (2, 7), offer, 0);
        assert_eq!(
            sent(&mut mesh),
            [(
                (1, 5),
                ControlMessage::Introduce {
                    peer: b,
                    sdp: "offer".into()
                }
            )]
        );
        let answer = ControlMessage::Introduced {
            peer: b,
            sdp: "answer".into(),
        };
        mesh.handle(Some(&lp(a, [9; 4])), (1, 5), answer, 0);
        assert_eq!(
            sent(&mut mesh),
            [(
                (2, 7),
                ControlMessage::Introduced {
                    peer: a,
                    sdp: "answer".into()
                }
            )]
        );
        // An unknown peer: the introduction fails at once.
        let to_c = ControlMessage::Introduce {
            peer: c,
            sdp: "offer".into(),
        };
        mesh.handle(Some(&lp(a, [9; 4])), (1, 5), to_c, 0);
        assert_eq!(
            sent(&mut mesh),
            [(
                (1, 5),
                ControlMessage::Introduced {
                    peer: c,
                    sdp: String::new()
                }
            )]
        );
        // A closed link unregisters its tabs.
        mesh.link_closed(1);
        assert_eq!(mesh.registered(), 1);
        assert!(!mesh.is_registered(&a));
    }

    /// Two bridges that find each other at once federate both ways: a
    /// message on either circuit counts as the bridge's.
    #[test]
    fn a_bridge_federated_on_two_circuits_is_heard_on_both() {
        let mut mesh = BridgeMesh::new([0xee; 20]);
        let (tab, bridge) = (PeerId([1; 20]), PeerId([7; 20]));
        let find = ControlMessage::FindPeer {
            target: tab,
            modulus: vec![9; 4],
        };
        mesh.handle(Some(&lp(tab, [9; 4])), (1, 5), find, 0);
        let hello = || ControlMessage::BridgeHello {
            url: "ws://127.0.0.1:9/bridge".into(),
        };
        let b = lp(bridge, [0; 4]);
        mesh.trust_bridge(bridge.0);
        mesh.handle(Some(&b), (2, 1), hello(), 0);
        mesh.greeted(&b, (3, 2), "ws://127.0.0.1:9/bridge".into(), 0);
        assert_eq!(mesh.federation().len(), 1, "one bridge, two circuits");
        sent(&mut mesh);
        let offer = ControlMessage::RelayIntroduce {
            from: PeerId([3; 20]),
            to: tab,
            sdp: "offer".into(),
        };
        mesh.handle(Some(&b), (2, 1), offer, 0);
        assert!(
            matches!(
                sent(&mut mesh).as_slice(),
                [((1, 5), ControlMessage::Introduce { .. })]
            ),
            "the introduction on the first circuit reached the tab"
        );
        // Bridge messages on a circuit that did not say hello are ignored.
        mesh.handle(
            Some(&b),
            (9, 9),
            ControlMessage::BridgePeers {
                peers: vec![PeerId([4; 20])],
            },
            0,
        );
        assert_eq!(
            mesh.federation(),
            [("ws://127.0.0.1:9/bridge".to_string(), 0)]
        );
        // One circuit closing leaves the bridge federated on the other.
        mesh.circuit_closed((2, 1));
        assert_eq!(mesh.federation().len(), 1);
        mesh.circuit_closed((3, 2));
        assert!(mesh.federation().is_empty());
    }

    fn federations(mesh: &mut BridgeMesh<u32>) -> Vec<(String, [u8; 20])> {
        std::iter::from_fn(|| mesh.poll_event())
            .filter_map(|e| match e {
                BridgeMeshEvent::Federate { url, fingerprint } => Some((url, fingerprint)),
                BridgeMeshEvent::Send { .. } => None,
            })
            .collect()
    }

    /// A tab (any authenticated link) says BRIDGE_HELLO, then speaks for
    /// bridges: claims a tab of another bridge (BRIDGE_PEERS), spoofs the
    /// origin of an introduction (RELAY_INTRODUCE) and lists URLs to dial
    /// (BRIDGE_NODES). Before, one hello made all of it count; now the
    /// hello is ignored and so is everything after it.
    #[test]
    fn a_tab_posing_as_a_bridge_is_not_federated() {
        let mut mesh = BridgeMesh::new([0xee; 20]);
        let (victim, mallory) = (PeerId([1; 20]), PeerId([6; 20]));
        let find = |id| ControlMessage::FindPeer {
            target: id,
            modulus: vec![9; 4],
        };
        mesh.handle(Some(&lp(victim, [9; 4])), (1, 5), find(victim), 0);
        sent(&mut mesh);
        let m = lp(mallory, [9; 4]);
        let hello = ControlMessage::BridgeHello {
            url: "ws://127.0.0.1:9/bridge".into(),
        };
        mesh.handle(Some(&m), (2, 1), hello, 0);
        mesh.handle(
            Some(&m),
            (2, 1),
            ControlMessage::BridgePeers {
                peers: vec![PeerId([4; 20])],
            },
            0,
        );
        let nodes = (0..100u8)
            .map(|i| (PeerId([i; 20]), format!("ws://10.0.0.{i}:6379/")))
            .collect();
        mesh.handle(
            Some(&m),
            (2, 1),
            ControlMessage::BridgeNodes { bridges: nodes },
            0,
        );
        let spoofed = ControlMessage::RelayIntroduce {
            from: PeerId([4; 20]),
            to: victim,
            sdp: "offer".into(),
        };
        mesh.handle(Some(&m), (2, 1), spoofed, 0);
        assert!(mesh.federation().is_empty(), "not federated");
        let out: Vec<BridgeMeshEvent<u32>> = std::iter::from_fn(|| mesh.poll_event()).collect();
        assert!(out.is_empty(), "nothing sent, nothing dialled: {out:?}");
        // Its FindPeer answers list no claimed tab.
        mesh.handle(Some(&m), (2, 1), find(mallory), 0);
        assert!(matches!(
            sent(&mut mesh).as_slice(),
            [(_, ControlMessage::FoundPeer { peers })] if peers == &[(victim, String::new())]
        ));
    }

    /// A bridge the operator trusts vouches for the bridges it lists: we
    /// dial them (at most MAX_DISCOVERING at once, naming the fingerprint
    /// they must prove) and take their hello until the vouch expires. A
    /// vouched bridge cannot vouch in turn.
    #[test]
    fn trusted_bridges_vouch_and_vouches_expire() {
        let mut mesh = BridgeMesh::new([0xee; 20]);
        let trusted = lp(PeerId([7; 20]), [0; 4]);
        mesh.trust_bridge(trusted.fingerprint);
        let hello = |url: &str| ControlMessage::BridgeHello { url: url.into() };
        mesh.handle(Some(&trusted), (2, 1), hello("ws://t/bridge"), 0);
        assert_eq!(mesh.federation().len(), 1);
        sent(&mut mesh);
        let nodes = (0..40u8)
            .map(|i| (PeerId([0x80 | i; 20]), format!("ws://b{i}/bridge")))
            .collect();
        mesh.handle(
            Some(&trusted),
            (2, 1),
            ControlMessage::BridgeNodes { bridges: nodes },
            10,
        );
        let dials = federations(&mut mesh);
        assert!(
            !dials.is_empty() && dials.len() <= MAX_DISCOVERING.min(K),
            "{}",
            dials.len()
        );
        assert!(dials
            .iter()
            .all(|(url, fp)| url == &format!("ws://b{}/bridge", fp[0] & 0x7f)));
        // A vouched bridge's hello counts, its own vouches do not.
        let vouched = lp(PeerId(dials[0].1), [0; 4]);
        mesh.handle(Some(&vouched), (3, 1), hello(&dials[0].0), 20);
        assert_eq!(mesh.federation().len(), 2);
        // We pass no vouch on: the trusted bridge is not told of it, and
        // the vouched one hears only of operator-trusted bridges.
        for (route, message) in sent(&mut mesh) {
            if let ControlMessage::BridgeNodes { bridges } = message {
                assert!(
                    bridges
                        .iter()
                        .all(|(id, _)| *id == PeerId(trusted.fingerprint)),
                    "{route:?}: {bridges:?}"
                );
            }
        }
        // A repeated hello with other URLs changes nothing.
        for i in 0..50 {
            mesh.handle(
                Some(&vouched),
                (3, 1),
                hello(&format!("ws://other{i}/bridge")),
                25,
            );
        }
        assert_eq!(mesh.discovering.len(), 1 + dials.len());
        let more = vec![(PeerId([0x33; 20]), "ws://x/bridge".to_string())];
        mesh.handle(
            Some(&vouched),
            (3, 1),
            ControlMessage::BridgeNodes { bridges: more },
            30,
        );
        assert!(
            federations(&mut mesh).is_empty(),
            "no vouching at second hand"
        );
        // After the vouch expires, a vouched bridge's new hello is ignored.
        let late = lp(PeerId(dials[1].1), [0; 4]);
        mesh.handle(
            Some(&late),
            (4, 1),
            hello(&dials[1].0),
            10 + VOUCH_TTL_MS + 1,
        );
        assert_eq!(mesh.federation().len(), 2);
    }

    /// A bridge that said hello to us before we federated with another
    /// trusted one is still made known to it: our greeting lists the
    /// bridges our operator trusts (else the two would never trust each
    /// other, whatever the order they started in).
    #[test]
    fn a_bridge_greeted_later_hears_of_earlier_ones() {
        let mut mesh = BridgeMesh::new([0xee; 20]);
        let (first, later) = (lp(PeerId([1; 20]), [0; 4]), lp(PeerId([2; 20]), [0; 4]));
        mesh.trust_bridge(first.fingerprint);
        mesh.trust_bridge(later.fingerprint);
        let hello = ControlMessage::BridgeHello {
            url: "ws://later/bridge".into(),
        };
        mesh.handle(Some(&later), (2, 1), hello, 0);
        sent(&mut mesh);
        mesh.greeted(&first, (3, 1), "ws://first/bridge".into(), 10);
        let to_first: Vec<ControlMessage> = sent(&mut mesh)
            .into_iter()
            .filter(|(r, _)| *r == (3, 1))
            .map(|(_, m)| m)
            .collect();
        assert!(
            to_first
                .iter()
                .any(|m| matches!(m, ControlMessage::BridgeNodes { bridges }
                if bridges.iter().any(|(id, _)| *id == later.id))),
            "{to_first:?}"
        );
    }
}
