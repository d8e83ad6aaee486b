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

use std::collections::HashMap;
use std::sync::Mutex;

use peersm::cell::peersm::{MAX_BRIDGE_PEERS, MAX_FOUND_PEERS};
use peersm::cell::ControlMessage;
use peersm::crypto::PeerId;
use peersm::dht::Distance;
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
    route: ControlCircuit,
    /// The tabs it hosts.
    peers: Vec<PeerId>,
}

#[derive(Default)]
struct State {
    peers: HashMap<PeerId, ControlCircuit>,
    bridges: HashMap<PeerId, FederatedBridge>,
    /// Introductions from a federated bridge's tab to one of ours, waiting
    /// for our tab's answer: (our tab, their tab) → their bridge.
    remote_origins: HashMap<(PeerId, PeerId), PeerId>,
}

#[derive(Default)]
pub struct MeshService {
    state: Mutex<State>,
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
        from: Option<(PeerId, &[u8])>,
        tx: &mpsc::UnboundedSender<ToInbound>,
        circ: u32,
        message: ControlMessage,
    ) -> Reply {
        let Some((me, my_modulus)) = from else {
            tracing::debug!("control message on an anonymous link: ignored");
            return None;
        };
        let route = ControlCircuit {
            tx: tx.clone(),
            circ,
        };
        let Ok(mut st) = self.state.lock() else {
            return None;
        };
        st.peers.retain(|_, c| !c.tx.is_closed());
        st.bridges.retain(|_, b| !b.route.tx.is_closed());
        let from_bridge = st.bridges.get(&me).is_some_and(|b| b.route.is(tx, circ));
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
                if peer != me {
                    if let Some(target) = st.peers.get(&peer) {
                        target.send(ControlMessage::Introduce { peer: me, sdp });
                        return None;
                    }
                    if let Some(bridge) = st.bridges.values().find(|b| b.peers.contains(&peer)) {
                        bridge.route.send(ControlMessage::RelayIntroduce {
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
                        b.route.send(ControlMessage::RelayIntroduced {
                            from: me,
                            to: peer,
                            sdp,
                        });
                    }
                }
                None
            }
            ControlMessage::BridgeHello { url } => {
                tracing::info!(bridge = %me, %url, "federated bridge");
                st.bridges.insert(
                    me,
                    FederatedBridge {
                        url,
                        route: route.clone(),
                        peers: Vec::new(),
                    },
                );
                route.send(ControlMessage::BridgePeers {
                    peers: local_peers(&st),
                });
                None
            }
            ControlMessage::BridgePeers { peers } if from_bridge => {
                if let Some(b) = st.bridges.get_mut(&me) {
                    b.peers = peers;
                }
                None
            }
            ControlMessage::RelayIntroduce { from, to, sdp } if from_bridge => {
                match st.peers.get(&to) {
                    Some(target) => {
                        target.send(ControlMessage::Introduce { peer: from, sdp });
                        st.remote_origins.insert((to, from), me);
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
            st.bridges.retain(|_, b| !b.route.is(tx, circ));
            if st.peers.len() != before {
                announce_peers(&st);
            }
        }
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
        b.route.send(ControlMessage::BridgePeers {
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

    #[test]
    fn registration_lookup_and_introductions() {
        let mesh = MeshService::default();
        let (a, b, c) = (PeerId([1; 20]), PeerId([2; 20]), PeerId([3; 20]));
        let (tx_a, mut rx_a) = inbox();
        let (tx_b, mut rx_b) = inbox();
        let find = |target| ControlMessage::FindPeer {
            target,
            modulus: vec![9; 4],
        };
        // Anonymous links and other keys' moduli register nothing.
        assert_eq!(mesh.handle(None, &tx_a, 5, find(a)), None);
        assert_eq!(mesh.handle(Some((a, &[8; 4])), &tx_a, 5, find(a)), None);
        assert_eq!(mesh.registered(), 0);

        let found = mesh.handle(Some((a, &[9; 4])), &tx_a, 5, find(a));
        assert_eq!(found, Some(ControlMessage::FoundPeer { peers: vec![] }));
        let found = mesh.handle(Some((b, &[9; 4])), &tx_b, 7, find(b));
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
        assert_eq!(mesh.handle(Some((b, &[9; 4])), &tx_b, 7, offer), None);
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
        assert_eq!(mesh.handle(Some((a, &[9; 4])), &tx_a, 5, answer), None);
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
            mesh.handle(Some((a, &[9; 4])), &tx_a, 5, to_c),
            Some(ControlMessage::Introduced {
                peer: c,
                sdp: String::new()
            })
        );
        // A closed control circuit unregisters.
        mesh.circuit_closed(&tx_a, 5);
        assert_eq!(mesh.registered(), 1);
    }
}
