//! The bridge's part in the mesh (docs/PROTOCOL.md "Mesh"): tabs register
//! a control circuit with DB_FIND_PEER and learn the registered peers
//! closest to an ID (DB_FOUND_PEER); INTRODUCE / INTRODUCED carry an SDP
//! offer from one tab to another and the answer back, so two tabs can open
//! a WebRTC link. Only tabs that authenticated their link (and send the
//! modulus of that key) can register; introductions name peers by ID, and
//! the bridge forwards them only to the control circuit of that ID.

use std::collections::HashMap;
use std::sync::Mutex;

use peersm::cell::peersm::MAX_FOUND_PEERS;
use peersm::cell::ControlMessage;
use peersm::crypto::PeerId;
use peersm::dht::Distance;
use tokio::sync::mpsc;

use crate::relay::inbound::ToInbound;

/// Where a registered peer's control messages go.
#[derive(Clone)]
struct ControlCircuit {
    tx: mpsc::UnboundedSender<ToInbound>,
    circ: u32,
}

#[derive(Default)]
pub struct MeshService {
    peers: Mutex<HashMap<PeerId, ControlCircuit>>,
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
        let Ok(mut peers) = self.peers.lock() else {
            return None;
        };
        peers.retain(|_, c| !c.tx.is_closed());
        match message {
            ControlMessage::FindPeer { target, modulus } => {
                if modulus != my_modulus {
                    tracing::info!(peer = %me, "DB_FIND_PEER with another key's modulus: ignored");
                    return None;
                }
                peers.insert(
                    me,
                    ControlCircuit {
                        tx: tx.clone(),
                        circ,
                    },
                );
                let mut close: Vec<PeerId> = peers.keys().filter(|p| **p != me).copied().collect();
                close.sort_by_key(|p| Distance::between(p, &target));
                close.truncate(MAX_FOUND_PEERS);
                Some(ControlMessage::FoundPeer {
                    peers: close.into_iter().map(|p| (p, String::new())).collect(),
                })
            }
            ControlMessage::Introduce { peer, sdp } => match peers.get(&peer) {
                Some(target) if peer != me => {
                    let forwarded = ControlMessage::Introduce { peer: me, sdp };
                    send(target, forwarded);
                    None
                }
                _ => Some(ControlMessage::Introduced {
                    peer,
                    sdp: String::new(),
                }),
            },
            ControlMessage::Introduced { peer, sdp } => {
                if let Some(origin) = peers.get(&peer) {
                    send(origin, ControlMessage::Introduced { peer: me, sdp });
                }
                None
            }
            // Answers are the bridge's to give, not to receive; FIND_NODE
            // is for tabs (their linked peers).
            ControlMessage::FoundPeer { .. }
            | ControlMessage::FindNode { .. }
            | ControlMessage::FoundNode { .. } => None,
        }
    }

    /// Circuit `circ` of the channel on `tx` is gone.
    pub fn circuit_closed(&self, tx: &mpsc::UnboundedSender<ToInbound>, circ: u32) {
        if let Ok(mut peers) = self.peers.lock() {
            peers.retain(|_, c| !(c.circ == circ && c.tx.same_channel(tx)));
        }
    }

    pub fn registered(&self) -> usize {
        self.peers.lock().map(|p| p.len()).unwrap_or(0)
    }
}

fn send(to: &ControlCircuit, message: ControlMessage) {
    let _ = to.tx.send(ToInbound::Control {
        back_circ: to.circ,
        message,
    });
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
