//! Peersm's control messages between a tab and its bridge (docs/PROTOCOL.md
//! "Mesh"): finding peers close to an ID and introducing two tabs to each
//! other (an SDP offer one way, the answer back). They ride relay cells on
//! stream 0 of a one-hop circuit; a message longer than one relay cell
//! (SDPs are) is cut into fragments: `MORE (1) | DATA`, MORE = 1 while
//! more fragments follow.

use super::{relay_command, CellError, Reader, RELAY_DATA_LEN};
use crate::crypto::PeerId;

/// Largest control message once reassembled.
pub const MAX_CONTROL_LEN: usize = 16 * 1024;
/// Most peers one DB_FOUND_PEER lists.
pub const MAX_FOUND_PEERS: usize = 20;
/// Most values, and most nodes, one FOUND_VALUE lists.
pub const MAX_FOUND_VALUES: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlMessage {
    /// `TARGET (20) | MODULUS_LEN (2) | MODULUS`: find peers close to
    /// TARGET; the sender's identity modulus comes along so that the
    /// answerer can register it (a bridge checks it against the link's
    /// authenticated key). Also registers this circuit as the sender's
    /// control circuit, on which introductions reach it.
    FindPeer { target: PeerId, modulus: Vec<u8> },
    /// `N (1) | N × (ID (20) | BRIDGE_LEN (1) | BRIDGE)`: peers close to the
    /// target and the bridge that can introduce each (empty: this bridge).
    FoundPeer { peers: Vec<(PeerId, String)> },
    /// `PEER (20) | SDP_LEN (2) | SDP`: to the bridge, PEER is whom to
    /// introduce us to; from the bridge, PEER is who wants to link. The
    /// SDP offer carries every ICE candidate (no trickle).
    Introduce { peer: PeerId, sdp: String },
    /// `PEER (20) | SDP_LEN (2) | SDP`: the answer, PEER as above. An empty
    /// SDP means the introduction failed (unknown peer, refused).
    Introduced { peer: PeerId, sdp: String },
    /// `TARGET (20)`: Kademlia FIND_NODE asked of a hop (a tab): which
    /// peers it is linked to closest to TARGET.
    FindNode { target: PeerId },
    /// `N (1) | N × (SPKI_LEN (2) | SPKI | NTOR (32) | SIG_LEN (2) | SIG)`:
    /// the hop's linked peers closest to the target, each with its
    /// identity key and its ntor key signed by it (so a client can extend
    /// to it and check it is who it claims).
    FoundNode { nodes: Vec<NodeInfo> },
    /// `URL_LEN (1) | URL`: between bridges: "I am a bridge, tabs reach me
    /// at URL"; the link's authenticated identity is the bridge's.
    BridgeHello { url: String },
    /// `N (2) | N × ID (20)`: between bridges: every tab registered with
    /// the sender (replaces the previous list).
    BridgePeers { peers: Vec<PeerId> },
    /// `FROM (20) | TO (20) | SDP_LEN (2) | SDP`: between bridges: tab FROM
    /// (at the sender) asks to be introduced to tab TO (at the receiver).
    RelayIntroduce {
        from: PeerId,
        to: PeerId,
        sdp: String,
    },
    /// Same layout: TO's answer going back to FROM's bridge (empty SDP:
    /// failed).
    RelayIntroduced {
        from: PeerId,
        to: PeerId,
        sdp: String,
    },
    /// `N (1, ≤ 20) | N × (ID (20) | URL_LEN (1) | URL)`: between bridges,
    /// the answer to BRIDGE_HELLO: the bridges the answerer knows closest
    /// to the newcomer (IDs are bridges' RSA fingerprints), so that it
    /// federates with them too.
    BridgeNodes { bridges: Vec<(PeerId, String)> },
    /// `HASH_NAME (20) | KIND (1) | PERCENT (1) | HOPS (1) | FLAGS (1)`:
    /// between linked tabs (docs/PROTOCOL.md "ORDB"): the sender can answer
    /// DB_QUERY for this file (KIND 0) or live stream (KIND 1), holding
    /// PERCENT of it itself or relaying for who does; HOPS counts how far
    /// the reference travelled from its holder; FLAGS bit 0 (F) marks a
    /// facilitator, bit 1 (S) asks the receiver to STORE itself in the
    /// DHT for the file.
    DbInfo {
        hash_name: [u8; 20],
        kind: u8,
        percent: u8,
        hops: u8,
        flags: u8,
    },
    /// `HASH_NAME (20) | KIND (1)`: Kademlia FIND_VALUE asked of a hop (a
    /// tab): who can answer DB_QUERY for this file (KIND 0) or live
    /// stream (KIND 1).
    FindValue { hash_name: [u8; 20], kind: u8 },
    /// `N (1, ≤ 8) | N × NODE | M (1, ≤ 8) | M × NODE`, NODE as in
    /// FOUND_NODE: the values (peers that said they can answer, the hop
    /// itself first when it can), then the hop's linked peers closest to
    /// the hash_name, so the lookup goes on.
    FoundValue {
        values: Vec<NodeInfo>,
        nodes: Vec<NodeInfo>,
    },
    /// `HASH_NAME (20) | KIND (1) | NODE`: "the peer NODE can answer
    /// DB_QUERY for this": kept by the hop for FIND_VALUE.
    Store {
        hash_name: [u8; 20],
        kind: u8,
        node: NodeInfo,
    },
}

/// DB_INFO's FLAGS bits.
pub mod db_info_flags {
    /// The sender is a facilitator.
    pub const FACILITATOR: u8 = 1;
    /// The sender holds the file and asks us to STORE ourselves in the
    /// DHT as a peer that can answer for it (a holder asks a few links).
    pub const STORE: u8 = 2;
}

/// Most tabs one BRIDGE_PEERS lists (16 KiB message limit).
pub const MAX_BRIDGE_PEERS: usize = 800;

/// A peer as FOUND_NODE describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub spki: Vec<u8>,
    pub ntor_key: [u8; 32],
    /// The identity key's signature over `ntor_key_message(ntor_key)`.
    pub signature: Vec<u8>,
}

impl NodeInfo {
    /// The peer's ID, once its ntor key signature checks out.
    pub fn verify(&self) -> Result<PeerId, crate::channel::ChannelError> {
        let key = crate::crypto::RsaIdentityKey::from_spki(&self.spki)?;
        let body = crate::channel::ntor_key_cert(&self.ntor_key, &self.signature);
        crate::channel::verify_ntor_key_cert(&body, &key)?;
        Ok(key.id())
    }
}

impl NodeInfo {
    /// `SPKI_LEN (2) | SPKI | NTOR (32) | SIG_LEN (2) | SIG`.
    fn put(&self, out: &mut Vec<u8>) -> Result<(), CellError> {
        put_bytes16(out, &self.spki)?;
        out.extend_from_slice(&self.ntor_key);
        put_bytes16(out, &self.signature)
    }

    fn take(r: &mut Reader<'_>) -> Result<NodeInfo, CellError> {
        let len = usize::from(r.u16()?);
        let spki = r.take(len)?.to_vec();
        let ntor_key = r.array::<32>()?;
        let len = usize::from(r.u16()?);
        let signature = r.take(len)?.to_vec();
        Ok(NodeInfo {
            spki,
            ntor_key,
            signature,
        })
    }
}

/// `N (1, ≤ max) | N × NODE`.
fn put_nodes(out: &mut Vec<u8>, nodes: &[NodeInfo], max: usize) -> Result<(), CellError> {
    if nodes.len() > max {
        return Err(CellError::TooLong(nodes.len()));
    }
    out.push(nodes.len() as u8);
    nodes.iter().try_for_each(|n| n.put(out))
}

fn take_nodes(
    r: &mut Reader<'_>,
    max: usize,
    what: &'static str,
) -> Result<Vec<NodeInfo>, CellError> {
    let n = usize::from(r.u8()?);
    if n > max {
        return Err(CellError::Malformed {
            what,
            why: "too many nodes",
        });
    }
    (0..n).map(|_| NodeInfo::take(r)).collect()
}

fn put_bytes16(out: &mut Vec<u8>, b: &[u8]) -> Result<(), CellError> {
    let len = u16::try_from(b.len()).map_err(|_| CellError::TooLong(b.len()))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(b);
    Ok(())
}

fn put_str16(out: &mut Vec<u8>, s: &str) -> Result<(), CellError> {
    put_bytes16(out, s.as_bytes())
}

fn utf8(bytes: &[u8], what: &'static str) -> Result<String, CellError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| CellError::Malformed {
        what,
        why: "not UTF-8",
    })
}

impl ControlMessage {
    pub fn command(&self) -> u8 {
        match self {
            ControlMessage::FindPeer { .. } => relay_command::DB_FIND_PEER,
            ControlMessage::FoundPeer { .. } => relay_command::DB_FOUND_PEER,
            ControlMessage::Introduce { .. } => relay_command::INTRODUCE,
            ControlMessage::Introduced { .. } => relay_command::INTRODUCED,
            ControlMessage::FindNode { .. } => relay_command::FIND_NODE,
            ControlMessage::FoundNode { .. } => relay_command::FOUND_NODE,
            ControlMessage::BridgeHello { .. } => relay_command::BRIDGE_HELLO,
            ControlMessage::BridgePeers { .. } => relay_command::BRIDGE_PEERS,
            ControlMessage::RelayIntroduce { .. } => relay_command::RELAY_INTRODUCE,
            ControlMessage::RelayIntroduced { .. } => relay_command::RELAY_INTRODUCED,
            ControlMessage::BridgeNodes { .. } => relay_command::BRIDGE_NODES,
            ControlMessage::DbInfo { .. } => relay_command::DB_INFO,
            ControlMessage::FindValue { .. } => relay_command::FIND_VALUE,
            ControlMessage::FoundValue { .. } => relay_command::FOUND_VALUE,
            ControlMessage::Store { .. } => relay_command::STORE,
        }
    }

    pub fn encode(&self) -> Result<Vec<u8>, CellError> {
        let mut out = Vec::new();
        match self {
            ControlMessage::FindPeer { target, modulus } => {
                out.extend_from_slice(&target.0);
                let len =
                    u16::try_from(modulus.len()).map_err(|_| CellError::TooLong(modulus.len()))?;
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(modulus);
            }
            ControlMessage::FoundPeer { peers }
            | ControlMessage::BridgeNodes { bridges: peers } => {
                if peers.len() > MAX_FOUND_PEERS {
                    return Err(CellError::TooLong(peers.len()));
                }
                out.push(peers.len() as u8);
                for (id, bridge) in peers {
                    out.extend_from_slice(&id.0);
                    let len =
                        u8::try_from(bridge.len()).map_err(|_| CellError::TooLong(bridge.len()))?;
                    out.push(len);
                    out.extend_from_slice(bridge.as_bytes());
                }
            }
            ControlMessage::Introduce { peer, sdp } | ControlMessage::Introduced { peer, sdp } => {
                out.extend_from_slice(&peer.0);
                put_str16(&mut out, sdp)?;
            }
            ControlMessage::FindNode { target } => out.extend_from_slice(&target.0),
            ControlMessage::DbInfo {
                hash_name,
                kind,
                percent,
                hops,
                flags,
            } => {
                out.extend_from_slice(hash_name);
                out.extend_from_slice(&[*kind, *percent, *hops, *flags]);
            }
            ControlMessage::BridgeHello { url } => {
                let len = u8::try_from(url.len()).map_err(|_| CellError::TooLong(url.len()))?;
                out.push(len);
                out.extend_from_slice(url.as_bytes());
            }
            ControlMessage::BridgePeers { peers } => {
                if peers.len() > MAX_BRIDGE_PEERS {
                    return Err(CellError::TooLong(peers.len()));
                }
                out.extend_from_slice(&(peers.len() as u16).to_be_bytes());
                for p in peers {
                    out.extend_from_slice(&p.0);
                }
            }
            ControlMessage::RelayIntroduce { from, to, sdp }
            | ControlMessage::RelayIntroduced { from, to, sdp } => {
                out.extend_from_slice(&from.0);
                out.extend_from_slice(&to.0);
                put_str16(&mut out, sdp)?;
            }
            ControlMessage::FoundNode { nodes } => put_nodes(&mut out, nodes, MAX_FOUND_PEERS)?,
            ControlMessage::FindValue { hash_name, kind } => {
                out.extend_from_slice(hash_name);
                out.push(*kind);
            }
            ControlMessage::FoundValue { values, nodes } => {
                put_nodes(&mut out, values, MAX_FOUND_VALUES)?;
                put_nodes(&mut out, nodes, MAX_FOUND_VALUES)?;
            }
            ControlMessage::Store {
                hash_name,
                kind,
                node,
            } => {
                out.extend_from_slice(hash_name);
                out.push(*kind);
                node.put(&mut out)?;
            }
        }
        if out.len() > MAX_CONTROL_LEN {
            return Err(CellError::TooLong(out.len()));
        }
        Ok(out)
    }

    pub fn decode(command: u8, body: &[u8]) -> Result<ControlMessage, CellError> {
        let mut r = Reader::new(body);
        let msg = match command {
            relay_command::DB_FIND_PEER => {
                let target = PeerId(r.array::<20>()?);
                let len = usize::from(r.u16()?);
                ControlMessage::FindPeer {
                    target,
                    modulus: r.take(len)?.to_vec(),
                }
            }
            relay_command::DB_FOUND_PEER | relay_command::BRIDGE_NODES => {
                let n = usize::from(r.u8()?);
                if n > MAX_FOUND_PEERS {
                    return Err(CellError::Malformed {
                        what: "DB_FOUND_PEER",
                        why: "too many peers",
                    });
                }
                let mut peers = Vec::with_capacity(n);
                for _ in 0..n {
                    let id = PeerId(r.array::<20>()?);
                    let len = usize::from(r.u8()?);
                    peers.push((id, utf8(r.take(len)?, "DB_FOUND_PEER bridge")?));
                }
                if command == relay_command::BRIDGE_NODES {
                    ControlMessage::BridgeNodes { bridges: peers }
                } else {
                    ControlMessage::FoundPeer { peers }
                }
            }
            relay_command::INTRODUCE | relay_command::INTRODUCED => {
                let peer = PeerId(r.array::<20>()?);
                let len = usize::from(r.u16()?);
                let sdp = utf8(r.take(len)?, "SDP")?;
                if command == relay_command::INTRODUCE {
                    ControlMessage::Introduce { peer, sdp }
                } else {
                    ControlMessage::Introduced { peer, sdp }
                }
            }
            relay_command::FIND_NODE => ControlMessage::FindNode {
                target: PeerId(r.array::<20>()?),
            },
            relay_command::DB_INFO => {
                let hash_name = r.array::<20>()?;
                let [kind, percent, hops, flags] = r.array::<4>()?;
                if percent > 100 {
                    return Err(CellError::Malformed {
                        what: "DB_INFO",
                        why: "percent over 100",
                    });
                }
                ControlMessage::DbInfo {
                    hash_name,
                    kind,
                    percent,
                    hops,
                    flags,
                }
            }
            relay_command::BRIDGE_HELLO => {
                let len = usize::from(r.u8()?);
                ControlMessage::BridgeHello {
                    url: utf8(r.take(len)?, "bridge URL")?,
                }
            }
            relay_command::BRIDGE_PEERS => {
                let n = usize::from(r.u16()?);
                if n > MAX_BRIDGE_PEERS {
                    return Err(CellError::Malformed {
                        what: "BRIDGE_PEERS",
                        why: "too many peers",
                    });
                }
                let mut peers = Vec::with_capacity(n);
                for _ in 0..n {
                    peers.push(PeerId(r.array::<20>()?));
                }
                ControlMessage::BridgePeers { peers }
            }
            relay_command::RELAY_INTRODUCE | relay_command::RELAY_INTRODUCED => {
                let from = PeerId(r.array::<20>()?);
                let to = PeerId(r.array::<20>()?);
                let len = usize::from(r.u16()?);
                let sdp = utf8(r.take(len)?, "SDP")?;
                if command == relay_command::RELAY_INTRODUCE {
                    ControlMessage::RelayIntroduce { from, to, sdp }
                } else {
                    ControlMessage::RelayIntroduced { from, to, sdp }
                }
            }
            relay_command::FOUND_NODE => ControlMessage::FoundNode {
                nodes: take_nodes(&mut r, MAX_FOUND_PEERS, "FOUND_NODE")?,
            },
            relay_command::FIND_VALUE => ControlMessage::FindValue {
                hash_name: r.array::<20>()?,
                kind: r.u8()?,
            },
            relay_command::FOUND_VALUE => ControlMessage::FoundValue {
                values: take_nodes(&mut r, MAX_FOUND_VALUES, "FOUND_VALUE values")?,
                nodes: take_nodes(&mut r, MAX_FOUND_VALUES, "FOUND_VALUE nodes")?,
            },
            relay_command::STORE => ControlMessage::Store {
                hash_name: r.array::<20>()?,
                kind: r.u8()?,
                node: NodeInfo::take(&mut r)?,
            },
            _ => {
                return Err(CellError::Malformed {
                    what: "relay command",
                    why: "not a Peersm control message",
                })
            }
        };
        Ok(msg)
    }

    /// The relay cell bodies (stream 0) that carry this message.
    pub fn fragments(&self) -> Result<Vec<Vec<u8>>, CellError> {
        let body = self.encode()?;
        let chunk = RELAY_DATA_LEN - 1;
        let pieces: Vec<&[u8]> = if body.is_empty() {
            vec![&[]]
        } else {
            body.chunks(chunk).collect()
        };
        let last = pieces.len() - 1;
        Ok(pieces
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                let mut f = vec![u8::from(i != last)];
                f.extend_from_slice(p);
                f
            })
            .collect())
    }
}

/// Reassembles fragments of control messages on one circuit.
#[derive(Debug, Default)]
pub struct ControlReassembler {
    command: Option<u8>,
    buf: Vec<u8>,
}

impl ControlReassembler {
    /// Takes one fragment; returns the message once complete. A fragment
    /// of another command mid-message, or a message over
    /// `MAX_CONTROL_LEN`, is an error (the circuit should close).
    pub fn push(
        &mut self,
        command: u8,
        fragment: &[u8],
    ) -> Result<Option<ControlMessage>, CellError> {
        let bad = |why| CellError::Malformed {
            what: "control message fragment",
            why,
        };
        let (more, data) = fragment.split_first().ok_or(bad("empty"))?;
        if self.command.is_some_and(|c| c != command) {
            return Err(bad("interleaved with another message"));
        }
        self.command = Some(command);
        if self.buf.len() + data.len() > MAX_CONTROL_LEN {
            return Err(bad("message too long"));
        }
        self.buf.extend_from_slice(data);
        match more {
            0 => {
                self.command = None;
                let body = std::mem::take(&mut self.buf);
                ControlMessage::decode(command, &body).map(Some)
            }
            1 => Ok(None),
            _ => Err(bad("MORE must be 0 or 1")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(msg: ControlMessage) {
        let mut r = ControlReassembler::default();
        let frags = msg.fragments().unwrap();
        let mut out = None;
        for (i, f) in frags.iter().enumerate() {
            assert!(f.len() <= RELAY_DATA_LEN);
            let got = r.push(msg.command(), f).unwrap();
            assert_eq!(got.is_some(), i + 1 == frags.len());
            out = got;
        }
        assert_eq!(out.unwrap(), msg);
    }

    #[test]
    fn messages_round_trip_through_fragments() {
        round_trip(ControlMessage::FindPeer {
            target: PeerId([7; 20]),
            modulus: vec![0xab; 256],
        });
        round_trip(ControlMessage::FoundPeer {
            peers: vec![
                (PeerId([1; 20]), String::new()),
                (PeerId([2; 20]), "ws://b/bridge".into()),
            ],
        });
        let sdp = "v=0\r\na=candidate:1 1 udp 1 127.0.0.1 5000 typ host\r\n".repeat(40);
        assert!(sdp.len() > 2 * RELAY_DATA_LEN);
        round_trip(ControlMessage::Introduce {
            peer: PeerId([3; 20]),
            sdp: sdp.clone(),
        });
        round_trip(ControlMessage::Introduced {
            peer: PeerId([4; 20]),
            sdp: String::new(),
        });
        round_trip(ControlMessage::FindNode {
            target: PeerId([5; 20]),
        });
        round_trip(ControlMessage::DbInfo {
            hash_name: [9; 20],
            kind: 0,
            percent: 25,
            hops: 1,
            flags: 1,
        });
        round_trip(ControlMessage::BridgeNodes {
            bridges: vec![(PeerId([8; 20]), "ws://127.0.0.1:1/bridge".into())],
        });
        round_trip(ControlMessage::BridgeHello {
            url: "ws://127.0.0.1:8081/bridge".into(),
        });
        round_trip(ControlMessage::BridgePeers {
            peers: (0..300u16).map(|i| PeerId([(i % 256) as u8; 20])).collect(),
        });
        round_trip(ControlMessage::RelayIntroduce {
            from: PeerId([6; 20]),
            to: PeerId([7; 20]),
            sdp: "v=0\r\n".repeat(200),
        });
        round_trip(ControlMessage::RelayIntroduced {
            from: PeerId([7; 20]),
            to: PeerId([6; 20]),
            sdp: String::new(),
        });
        round_trip(ControlMessage::FoundNode {
            nodes: (0..8u8)
                .map(|i| NodeInfo {
                    spki: vec![i; 294],
                    ntor_key: [i; 32],
                    signature: vec![i; 256],
                })
                .collect(),
        });
    }

    #[test]
    fn dht_value_messages_round_trip() {
        let node = |i: u8| NodeInfo {
            spki: vec![i; 294],
            ntor_key: [i; 32],
            signature: vec![i; 256],
        };
        round_trip(ControlMessage::FindValue {
            hash_name: [3; 20],
            kind: 0,
        });
        round_trip(ControlMessage::FoundValue {
            values: (0..8).map(node).collect(),
            nodes: (8..16).map(node).collect(),
        });
        round_trip(ControlMessage::FoundValue {
            values: Vec::new(),
            nodes: vec![node(1)],
        });
        round_trip(ControlMessage::Store {
            hash_name: [4; 20],
            kind: 1,
            node: node(5),
        });
        // Nine values are one too many, both ways.
        let nine = ControlMessage::FoundValue {
            values: (0..9).map(node).collect(),
            nodes: Vec::new(),
        };
        assert!(nine.encode().is_err());
        assert!(ControlMessage::decode(relay_command::FOUND_VALUE, &[9, 0]).is_err());
        assert!(ControlMessage::decode(relay_command::FOUND_VALUE, &[0]).is_err());
        assert!(ControlMessage::decode(relay_command::FIND_VALUE, &[0; 20]).is_err());
        assert!(ControlMessage::decode(relay_command::STORE, &[0; 21]).is_err());
    }

    #[test]
    fn bad_fragments_are_errors() {
        let mut r = ControlReassembler::default();
        assert!(r.push(relay_command::INTRODUCE, &[]).is_err());
        let mut r = ControlReassembler::default();
        r.push(relay_command::INTRODUCE, &[1, 0, 0]).unwrap();
        assert!(r.push(relay_command::INTRODUCED, &[0]).is_err());
        let mut r = ControlReassembler::default();
        assert!(r.push(relay_command::INTRODUCE, &[2]).is_err());
        let mut r = ControlReassembler::default();
        let big = vec![1u8; RELAY_DATA_LEN];
        let mut failed = false;
        for _ in 0..40 {
            if r.push(relay_command::INTRODUCE, &big).is_err() {
                failed = true;
                break;
            }
        }
        assert!(failed, "an endless message is refused");
        assert!(ControlMessage::decode(relay_command::DB_FOUND_PEER, &[21]).is_err());
        assert!(ControlMessage::decode(relay_command::INTRODUCE, &[0; 21]).is_err());
        let mut info = vec![0; 20];
        info.extend_from_slice(&[0, 101, 0, 0]);
        assert!(ControlMessage::decode(relay_command::DB_INFO, &info).is_err());
        assert!(ControlMessage::decode(relay_command::DB_INFO, &info[..23]).is_err());
    }
}
