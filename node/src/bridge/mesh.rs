//! The bridge's part in the mesh (docs/PROTOCOL.md "Mesh"): tabs register
//! a control circuit with DB_FIND_PEER and learn the registered peers
//! closest to an ID (DB_FOUND_PEER); INTRODUCE / INTRODUCED carry an SDP
//! offer from one tab to another and the answer back, so two tabs can open
//! a WebRTC link. Only tabs that authenticated their link (and send the
//! modulus of that key) can register; introductions name peers by ID, and
//! the bridge forwards them only to the control circuit of that ID.
//!
//! Federation: bridges linked with `--peer-bridge` announce themselves
//! (BRIDGE_HELLO), keep each other told of their tabs (BRIDGE_PEERS), and
//! carry introductions between a tab here and a tab there
//! (RELAY_INTRODUCE / RELAY_INTRODUCED). A tab learns peers of every
//! federated bridge, each with the URL of the bridge that hosts it.
//! Bridges keep a Kademlia routing table of bridges (by RSA fingerprint,
//! the core's `RoutingTable`); a bridge that says hello is answered with
//! the known bridges closest to it (BRIDGE_NODES), and federates with
//! those it has room for, so a bridge needs one `--peer-bridge` to find
//! the others.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use peersm_core::cell::peersm_core::{MAX_BRIDGE_PEERS, MAX_FOUND_PEERS};
use peersm_core::cell::ControlMessage;
use peersm_core::crypto::PeerId;
use peersm_core::dht::{Distance, RoutingTable, K};
use tokio::sync::mpsc;

use crate::relay::inbound::ToInbound;

/// Where a peer's (or a federated bridge's) control messages go: a circuit
/// on some channel, through that channel's actor.
#[derive(Clone)]
pub struct ControlCircuit {
    pub tx: mpsc::UnboundedSender<ToInbound>,
    pub circ: u32,
}

impl ControlCircuit {
    fn send(&self, message: ControlMessage) {
        let _ = self.tx.send(ToInbound::Control {
            back_circ: self.circ,
            message,
        });
    }

    fn is(&self, tx: &mpsc::UnboundedSender<ToInbound>, circ: u32) -> bool {
        self.circ == circ && self.tx.same_channel(tx)
    }
}

struct FederatedBridge {
    url: String,
    /// Every circuit on which it said hello: two bridges that find each
    /// other at once federate both ways, and either circuit carries its
    /// messages.
    routes: Vec<ControlCircuit>,
    /// The tabs it hosts.
    peers: Vec<PeerId>,
}

impl FederatedBridge {
    fn send(&self, message: ControlMessage) {
        if let Some(route) = self.routes.first() {
            route.send(message);
        }
    }

    fn uses(&self, tx: &mpsc::UnboundedSender<ToInbound>, circ: u32) -> bool {
        self.routes.iter().any(|r| r.is(tx, circ))
    }
}

/// Who is on the other end of a link: a tab's peer ID and key modulus,
/// and the RSA fingerprint of that key (how bridges are named).
#[derive(Clone, Debug)]
pub struct LinkPeer {
    pub id: PeerId,
    pub modulus: Vec<u8>,
    pub fingerprint: [u8; 20],
}

struct State {
    peers: HashMap<PeerId, ControlCircuit>,
    /// Federated bridges, by fingerprint.
    bridges: HashMap<PeerId, FederatedBridge>,
    /// The bridges' DHT, by fingerprint, with their URLs.
    routing: RoutingTable<String>,
    /// URLs we are federating with or trying to.
    discovering: HashSet<String>,
    /// Introductions from a federated bridge's tab to one of ours, waiting
    /// for our tab's answer: (our tab, their tab) → their bridge.
    remote_origins: HashMap<(PeerId, PeerId), PeerId>,
}

/// Called with the URL of a bridge to federate with.
pub type DiscoverFn = Box<dyn Fn(String) + Send + Sync>;

pub struct MeshService {
    state: Mutex<State>,
    /// Introductions this bridge carried (for /status).
    introductions: std::sync::atomic::AtomicU64,
    /// Starts federating with a bridge found through BRIDGE_NODES.
    discover: Mutex<Option<DiscoverFn>>,
}

impl MeshService {
    /// The mesh service of the bridge whose RSA fingerprint is `me`.
    pub fn new(me: [u8; 20]) -> Self {
        MeshService {
            state: Mutex::new(State {
                peers: HashMap::new(),
                bridges: HashMap::new(),
                routing: RoutingTable::new(PeerId(me)),
                discovering: HashSet::new(),
                remote_origins: HashMap::new(),
            }),
            discover: Mutex::new(None),
            introductions: Default::default(),
        }
    }

    /// What to do with a bridge URL learned from BRIDGE_NODES.
    pub fn on_discover(&self, f: DiscoverFn) {
        if let Ok(mut d) = self.discover.lock() {
            *d = Some(f);
        }
    }

    /// A federation link to `url` is being set up (or retried).
    pub fn federating_with(&self, url: &str) {
        if let Ok(mut st) = self.state.lock() {
            st.discovering.insert(url.to_string());
        }
    }
}

/// What the channel that received a control message must send back on
/// the same circuit.
pub type Reply = Option<ControlMessage>;

impl MeshService {
    /// A control message from `from` (the link's authenticated peer, with
    /// its key's modulus) on circuit `circ` of the channel whose actor
    /// listens on `tx`.
    pub fn handle(
        &self,
        from: Option<&LinkPeer>,
        tx: &mpsc::UnboundedSender<ToInbound>,
        circ: u32,
        message: ControlMessage,
    ) -> Reply {
        let Some(link_peer) = from else {
            tracing::debug!("control message on an anonymous link: ignored");
            return None;
        };
        let (me, my_modulus) = (link_peer.id, link_peer.modulus.as_slice());
        // Bridges are named by fingerprint.
        let bridge_id = PeerId(link_peer.fingerprint);
        let mut discovered = Vec::new();
        let reply = self.handle_locked(
            me,
            my_modulus,
            bridge_id,
            tx,
            circ,
            message,
            &mut discovered,
        );
        if !discovered.is_empty() {
            if let Ok(d) = self.discover.lock() {
                if let Some(f) = d.as_ref() {
                    for url in discovered {
                        f(url);
                    }
                }
            }
        }
        reply
    }

    #[allow(clippy::too_many_arguments)]
    fn handle_locked(
        &self,
        me: PeerId,
        my_modulus: &[u8],
        bridge_id: PeerId,
        tx: &mpsc::UnboundedSender<ToInbound>,
        circ: u32,
        message: ControlMessage,
        discovered: &mut Vec<String>,
    ) -> Reply {
        let route = ControlCircuit {
            tx: tx.clone(),
            circ,
        };
        let Ok(mut st) = self.state.lock() else {
            return None;
        };
        st.peers.retain(|_, c| !c.tx.is_closed());
        st.bridges.retain(|_, b| {
            b.routes.retain(|r| !r.tx.is_closed());
            !b.routes.is_empty()
        });
        let from_bridge = st.bridges.get(&bridge_id).is_some_and(|b| b.uses(tx, circ));
        match message {
            ControlMessage::FindPeer { target, modulus } => {
                if modulus != my_modulus {
                    tracing::info!(peer = %me, "DB_FIND_PEER with another key's modulus: ignored");
                    return None;
                }
                st.peers.insert(me, route);
                let reply = found_peers(&st, me, &target);
                announce_peers(&st);
                Some(reply)
            }
            ControlMessage::Introduce { peer, sdp } => {
                self.introductions
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if peer != me {
                    if let Some(target) = st.peers.get(&peer) {
                        target.send(ControlMessage::Introduce { peer: me, sdp });
                        return None;
                    }
                    if let Some(bridge) = st.bridges.values().find(|b| b.peers.contains(&peer)) {
                        bridge.send(ControlMessage::RelayIntroduce {
                            from: me,
                            to: peer,
                            sdp,
                        });
                        return None;
                    }
                }
                Some(ControlMessage::Introduced {
                    peer,
                    sdp: String::new(),
                })
            }
            ControlMessage::Introduced { peer, sdp } => {
                if let Some(origin) = st.peers.get(&peer) {
                    origin.send(ControlMessage::Introduced { peer: me, sdp });
                } else if let Some(bridge) = st.remote_origins.remove(&(me, peer)) {
                    if let Some(b) = st.bridges.get(&bridge) {
                        b.send(ControlMessage::RelayIntroduced {
                            from: me,
                            to: peer,
                            sdp,
                        });
                    }
                }
                None
            }
            ControlMessage::BridgeHello { url } => {
                tracing::info!(bridge = %bridge_id, %url, "federated bridge");
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or(0);
                st.routing.insert(bridge_id, url.clone(), now);
                st.discovering.insert(url.clone());
                let bridge = st.bridges.entry(bridge_id).or_insert(FederatedBridge {
                    url,
                    routes: Vec::new(),
                    peers: Vec::new(),
                });
                if !bridge.uses(tx, circ) {
                    bridge.routes.push(route.clone());
                }
                route.send(ControlMessage::BridgePeers {
                    peers: local_peers(&st),
                });
                // The other bridges hear of the newcomer too: whichever
                // said hello first still learns of every later bridge.
                for (id, other) in st.bridges.iter() {
                    if *id != bridge_id {
                        other.send(ControlMessage::BridgeNodes {
                            bridges: vec![(bridge_id, other_url(&st, &bridge_id))],
                        });
                    }
                }
                let known = st
                    .routing
                    .closest(&bridge_id, K + 1)
                    .into_iter()
                    .filter(|e| e.id != bridge_id)
                    .take(K)
                    .map(|e| (e.id, e.contact))
                    .collect();
                Some(ControlMessage::BridgeNodes { bridges: known })
            }
            ControlMessage::BridgeNodes { bridges } if from_bridge => {
                let me_fp = *st.routing.me();
                for (id, url) in bridges {
                    let new = id != me_fp
                        && !st.bridges.contains_key(&id)
                        && !st.discovering.contains(&url)
                        && st.routing.has_room_for(&id);
                    if new {
                        tracing::info!(bridge = %id, %url, "bridge found through the DHT");
                        st.discovering.insert(url.clone());
                        discovered.push(url);
                    }
                }
                None
            }
            ControlMessage::BridgePeers { peers } if from_bridge => {
                if let Some(b) = st.bridges.get_mut(&bridge_id) {
                    b.peers = peers;
                }
                None
            }
            ControlMessage::RelayIntroduce { from, to, sdp } if from_bridge => {
                match st.peers.get(&to) {
                    Some(target) => {
                        target.send(ControlMessage::Introduce { peer: from, sdp });
                        st.remote_origins.insert((to, from), bridge_id);
                    }
                    None => route.send(ControlMessage::RelayIntroduced {
                        from: to,
                        to: from,
                        sdp: String::new(),
                    }),
                }
                None
            }
            ControlMessage::RelayIntroduced { from, to, sdp } if from_bridge => {
                if let Some(origin) = st.peers.get(&to) {
                    origin.send(ControlMessage::Introduced { peer: from, sdp });
                }
                None
            }
            // Answers are the bridge's to give, not to receive; FIND_NODE
            // is for tabs (their linked peers); bridge messages only count
            // from a bridge that said hello on that circuit.
            _ => None,
        }
    }

    /// Circuit `circ` of the channel on `tx` is gone.
    pub fn circuit_closed(&self, tx: &mpsc::UnboundedSender<ToInbound>, circ: u32) {
        if let Ok(mut st) = self.state.lock() {
            let before = st.peers.len();
            st.peers.retain(|_, c| !c.is(tx, circ));
            for b in st.bridges.values_mut() {
                b.routes.retain(|r| !r.is(tx, circ));
            }
            let gone: Vec<PeerId> = st
                .bridges
                .iter()
                .filter(|(_, b)| b.routes.is_empty())
                .map(|(id, _)| *id)
                .collect();
            for id in gone {
                if let Some(b) = st.bridges.remove(&id) {
                    st.discovering.remove(&b.url);
                }
                st.routing.remove_dead(&id);
            }
            if st.peers.len() != before {
                announce_peers(&st);
            }
        }
    }

    pub fn introductions(&self) -> u64 {
        self.introductions
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn registered(&self) -> usize {
        self.state.lock().map(|s| s.peers.len()).unwrap_or(0)
    }

    /// Federated bridges and how many tabs each hosts.
    pub fn federation(&self) -> Vec<(String, usize)> {
        self.state
            .lock()
            .map(|s| {
                s.bridges
                    .values()
                    .map(|b| (b.url.clone(), b.peers.len()))
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn other_url(st: &State, id: &PeerId) -> String {
    st.bridges
        .get(id)
        .map(|b| b.url.clone())
        .unwrap_or_default()
}

fn local_peers(st: &State) -> Vec<PeerId> {
    let mut ids: Vec<PeerId> = st.peers.keys().copied().collect();
    ids.sort();
    ids.truncate(MAX_BRIDGE_PEERS);
    ids
}

/// Tells every federated bridge our current tabs.
fn announce_peers(st: &State) {
    let peers = local_peers(st);
    for b in st.bridges.values() {
        b.send(ControlMessage::BridgePeers {
            peers: peers.clone(),
        });
    }
}

/// Our tabs and the federated bridges' tabs closest to `target`, not
/// `me`; ours with an empty bridge (this one), theirs with their URL.
fn found_peers(st: &State, me: PeerId, target: &PeerId) -> ControlMessage {
    let mut all: Vec<(PeerId, String)> = st.peers.keys().map(|p| (*p, String::new())).collect();
    for b in st.bridges.values() {
        all.extend(b.peers.iter().map(|p| (*p, b.url.clone())));
    }
    all.retain(|(p, _)| *p != me);
    all.sort_by_key(|(p, _)| Distance::between(p, target));
    all.dedup_by_key(|(p, _)| *p);
    all.truncate(MAX_FOUND_PEERS);
    ControlMessage::FoundPeer { peers: all }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inbox() -> (
        mpsc::UnboundedSender<ToInbound>,
        mpsc::UnboundedReceiver<ToInbound>,
    ) {
        mpsc::unbounded_channel()
    }

    fn control(rx: &mut mpsc::UnboundedReceiver<ToInbound>) -> Option<(u32, ControlMessage)> {
        match rx.try_recv().ok()? {
            ToInbound::Control { back_circ, message } => Some((back_circ, message)),
            _ => None,
        }
    }

    fn lp(id: PeerId, modulus: [u8; 4]) -> LinkPeer {
        LinkPeer {
            id,
            modulus: modulus.to_vec(),
            fingerprint: id.0,
        }
    }

    #[test]
    fn registration_lookup_and_introductions() {
        let mesh = MeshService::new([0xee; 20]);
        let (a, b, c) = (PeerId([1; 20]), PeerId([2; 20]), PeerId([3; 20]));
        let (tx_a, mut rx_a) = inbox();
        let (tx_b, mut rx_b) = inbox();
        let find = |target| ControlMessage::FindPeer {
            target,
            modulus: vec![9; 4],
        };
        // Anonymous links and other keys' moduli register nothing.
        assert_eq!(mesh.handle(None, &tx_a, 5, find(a)), None);
        assert_eq!(mesh.handle(Some(&lp(a, [8; 4])), &tx_a, 5, find(a)), None);
        assert_eq!(mesh.registered(), 0);

        let found = mesh.handle(Some(&lp(a, [9; 4])), &tx_a, 5, find(a));
        assert_eq!(found, Some(ControlMessage::FoundPeer { peers: vec![] }));
        let found = mesh.handle(Some(&lp(b, [9; 4])), &tx_b, 7, find(b));
        assert_eq!(
            found,
            Some(ControlMessage::FoundPeer {
                peers: vec![(a, String::new())]
            })
        );

        // b introduces itself to a: a's control circuit gets it, from b.
        let offer = ControlMessage::Introduce {
            peer: a,
            sdp: "offer".into(),
        };
        assert_eq!(mesh.handle(Some(&lp(b, [9; 4])), &tx_b, 7, offer), None);
        assert_eq!(
            control(&mut rx_a),
            Some((
                5,
                ControlMessage::Introduce {
                    peer: b,
                    sdp: "offer".into()
                }
            ))
        );
        // a answers: b's control circuit gets it, from a.
        let answer = ControlMessage::Introduced {
            peer: b,
            sdp: "answer".into(),
        };
        assert_eq!(mesh.handle(Some(&lp(a, [9; 4])), &tx_a, 5, answer), None);
        assert_eq!(
            control(&mut rx_b),
            Some((
                7,
                ControlMessage::Introduced {
                    peer: a,
                    sdp: "answer".into()
                }
            ))
        );
        // An unknown peer: the introduction fails at once.
        let to_c = ControlMessage::Introduce {
            peer: c,
            sdp: "offer".into(),
        };
        assert_eq!(
            mesh.handle(Some(&lp(a, [9; 4])), &tx_a, 5, to_c),
            Some(ControlMessage::Introduced {
                peer: c,
                sdp: String::new()
            })
        );
        // A closed control circuit unregisters.
        mesh.circuit_closed(&tx_a, 5);
        assert_eq!(mesh.registered(), 1);
    }

    /// Two bridges that find each other at once federate both ways: a
    /// message on either circuit counts as the bridge's.
    #[test]
    fn a_bridge_federated_on_two_circuits_is_heard_on_both() {
        let mesh = MeshService::new([0xee; 20]);
        let (tab, bridge) = (PeerId([1; 20]), PeerId([7; 20]));
        let (tx_tab, mut rx_tab) = inbox();
        let (tx_in, _rx_in) = inbox();
        let (tx_out, _rx_out) = inbox();
        let find = ControlMessage::FindPeer {
            target: tab,
            modulus: vec![9; 4],
        };
        mesh.handle(Some(&lp(tab, [9; 4])), &tx_tab, 5, find);
        let hello = || ControlMessage::BridgeHello {
            url: "ws://127.0.0.1:9/bridge".into(),
        };
        let b = lp(bridge, [0; 4]);
        mesh.handle(Some(&b), &tx_in, 1, hello());
        mesh.handle(Some(&b), &tx_out, 2, hello());
        assert_eq!(mesh.federation().len(), 1, "one bridge, two circuits");
        let offer = ControlMessage::RelayIntroduce {
            from: PeerId([3; 20]),
            to: tab,
            sdp: "offer".into(),
        };
        mesh.handle(Some(&b), &tx_in, 1, offer);
        assert!(
            matches!(
                control(&mut rx_tab),
                Some((5, ControlMessage::Introduce { .. }))
            ),
            "the introduction on the first circuit reached the tab"
        );
        // One circuit closing leaves the bridge federated on the other.
        mesh.circuit_closed(&tx_in, 1);
        assert_eq!(mesh.federation().len(), 1);
        mesh.circuit_closed(&tx_out, 2);
        assert!(mesh.federation().is_empty());
    }
}
