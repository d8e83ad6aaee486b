//! What this tab answers as a hop on other tabs' circuits (control
//! messages that end here; streams go to the directory service):
//!
//! - FIND_NODE: our open links closest to the target, each with its
//!   identity key and its ntor key signed by that identity, so the asker
//!   can extend to it and check it is who it claims;
//! - FIND_VALUE and STORE: the DHT's values (`values.rs`);
//! - RELAY_INTRODUCE to us: an offer from the asker, which we answer on
//!   the same circuit;
//! - RELAY_INTRODUCE to a tab we are linked to: we carry the offer to it
//!   (on a one-hop circuit) and its answer back; anything else gets an
//!   empty answer at once.

use crate::cell::peersm::MAX_FOUND_PEERS;
use crate::cell::ControlMessage;
use crate::dht::K;
use crate::router::CircuitKey;

use super::links::Reply;
use super::tasks::{HopSpec, Parent, Purpose};
use super::{LinkId, TabPeer};

impl TabPeer {
    pub(super) fn serve_control(&mut self, circuit: CircuitKey<LinkId>, message: ControlMessage) {
        let asker_link = circuit.link;
        match message {
            ControlMessage::FindNode { target } => {
                let nodes = self.closest_linked(&target, asker_link, MAX_FOUND_PEERS.min(K));
                let reply = ControlMessage::FoundNode { nodes };
                let _ = self.core.router.send_control(circuit, &reply);
            }
            ControlMessage::FindValue { hash_name, kind } => {
                self.serve_find_value(circuit, hash_name, kind)
            }
            ControlMessage::Store {
                hash_name,
                kind,
                node,
            } => self.serve_store(hash_name, kind, node),
            ControlMessage::RelayIntroduce { from, to, sdp } => {
                let asker_peer = self.links.get(&asker_link).map(|l| l.peer);
                if to == self.me {
                    self.answer(from, &sdp, Reply::Relay { circuit });
                } else if let (Some(link), true) = (self.link_of(&to), asker_peer != Some(to)) {
                    // We introduce `from` to `to`, which we are linked to.
                    let key = self.open_links().into_iter().find(|(_, l, _)| *l == link);
                    if let Some((_, _, ntor)) = key {
                        let route = vec![HopSpec::tab(to, ntor)];
                        let purpose = Purpose::Introduce {
                            asker: from,
                            target: to,
                            sdp,
                        };
                        self.spawn_route(
                            route,
                            purpose,
                            Parent::Forward {
                                circuit,
                                asker: from,
                                target: to,
                            },
                        );
                    }
                } else {
                    let refusal = ControlMessage::RelayIntroduced {
                        from: to,
                        to: from,
                        sdp: String::new(),
                    };
                    let _ = self.core.router.send_control(circuit, &refusal);
                }
            }
            // Bridge messages are not for tabs; answers come on our own
            // circuits, not through us.
            _ => {}
        }
    }

    /// The tab we introduced `asker` to answered (empty: it did not).
    pub(super) fn forward_answer(
        &mut self,
        circuit: CircuitKey<LinkId>,
        asker: crate::crypto::PeerId,
        target: crate::crypto::PeerId,
        sdp: String,
    ) {
        let reply = ControlMessage::RelayIntroduced {
            from: target,
            to: asker,
            sdp,
        };
        let _ = self.core.router.send_control(circuit, &reply);
    }
}
