//! A simulated tab: the very `TabPeer` a browser tab runs, with what the
//! web adapter does around it played by the simulator: signatures from a
//! native key, SDPs that name the other end, data channels as wires, and
//! a store for download bodies that may be slow on purpose.

use std::collections::BTreeMap;

use crate::content::HashName;
use crate::peer::tab::{LinkId, LocalSdp, Outcome, TabConfig, TabEvent, TabPeer};
use crate::rng::SimRng;

use super::{LinkNo, Net, Node, NodeId, SimKey};

/// A download as the simulated platform sees it.
#[derive(Debug, Default, Clone)]
pub(crate) struct Stored {
    pub(crate) bytes: u64,
    /// Whether each byte stored so far is the test pattern's byte.
    pub(crate) intact: bool,
    pub(crate) chunks: u64,
    pub(crate) restarts: u64,
}

pub(crate) struct SimTab {
    pub(crate) peer: TabPeer,
    key: SimKey,
    pub(crate) alive: bool,
    pub(crate) bridge: Option<NodeId>,
    /// Finished operations.
    pub(crate) results: BTreeMap<u64, Outcome>,
    /// Downloads' stored bodies.
    pub(crate) stored: BTreeMap<u64, Stored>,
    /// Store acknowledgements held back (slow store): op → chunks.
    pub(crate) held_acks: BTreeMap<u64, u64>,
    /// Hold every store acknowledgement (a slow reader).
    pub(crate) slow_store: bool,
    /// Offers we answered, waiting for the offerer to apply our answer.
    answering: BTreeMap<LinkNo, (NodeId, LinkNo)>,
    fingerprint_seq: u64,
    /// The DTLS fingerprint each of our links' SDPs names.
    local_fingerprints: BTreeMap<LinkNo, String>,
    /// An introducer that tampers with this tab's offers and answers: they
    /// carry a second `a=fingerprint` line (the attacker's, first).
    pub(crate) sdps_carry_two_fingerprints: bool,
    /// An attacker terminates DTLS in the middle of this tab's links: the
    /// other end sees a certificate other than the one our SDP named.
    pub(crate) dtls_intercepted: bool,
    /// The core's next deadline, as of its last step.
    pub(crate) timer: Option<u64>,
    /// The block store (IndexedDB in a tab): blocks of files seeded or
    /// downloaded.
    pub(crate) blocks: BTreeMap<(HashName, u32), Vec<u8>>,
    /// Blocks each download stored, counted per op (a block stored twice
    /// counts twice).
    pub(crate) blocks_stored: BTreeMap<u64, u64>,
    /// A tampering ORDB: every block it serves from its store has a byte
    /// flipped.
    pub(crate) tamper: bool,
    /// Chunks of live streams followed, per op, as they came.
    pub(crate) live: BTreeMap<u64, Vec<LiveSeen>>,
}

/// A live chunk as a follower got it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LiveSeen {
    pub(crate) seq: u64,
    pub(crate) timestamp_ms: u64,
    pub(crate) at: u64,
    pub(crate) key: bool,
    pub(crate) gap: bool,
}

impl SimTab {
    pub(crate) fn new(
        rng: &mut SimRng,
        mut config: impl FnMut(&mut TabConfig),
        now: u64,
    ) -> SimTab {
        let key = SimKey::generate(rng);
        let mut cfg = TabConfig::new(key.spki.clone());
        // Circuits built ahead change every figure of the simulated
        // network: on only where a test asks.
        cfg.warm_circuits = false;
        config(&mut cfg);
        let mut own = rng.fork();
        let peer = TabPeer::new(cfg, &mut own, now).unwrap_or_else(|e| unreachable!("{e}"));
        SimTab {
            peer,
            key,
            alive: true,
            bridge: None,
            results: BTreeMap::new(),
            stored: BTreeMap::new(),
            held_acks: BTreeMap::new(),
            slow_store: false,
            answering: BTreeMap::new(),
            fingerprint_seq: 0,
            local_fingerprints: BTreeMap::new(),
            sdps_carry_two_fingerprints: false,
            dtls_intercepted: false,
            timer: None,
            blocks: BTreeMap::new(),
            blocks_stored: BTreeMap::new(),
            tamper: false,
            live: BTreeMap::new(),
        }
    }

    pub(crate) fn opened(&mut self, link: LinkId, remote_cert: Option<String>, now: u64) {
        // The bridge's WebSocket needs nothing more; a data channel opens
        // and the platform names the certificate DTLS saw.
        if self.peer.bridge_link_id() != Some(link) {
            let cert = remote_cert.ok_or_else(|| "no DTLS".to_string());
            self.peer.handle_channel_open(link, cert, now);
        }
    }

    /// The certificate the other end of our link `link` sees.
    fn presented_certificate(&self, link: LinkNo) -> Option<String> {
        let ours = self.local_fingerprints.get(&link)?;
        Some(if self.dtls_intercepted {
            format!("sha-256 {}", "EE:".repeat(31) + "EE")
        } else {
            ours.clone()
        })
    }

    /// Lets held store acknowledgements through (the reader caught up).
    pub(crate) fn release_store(&mut self, now: u64) {
        for (op, n) in std::mem::take(&mut self.held_acks) {
            for _ in 0..n {
                self.peer.handle_stored(op, now);
            }
        }
    }

    /// Seeds `data`: its blocks go to the store, the core signs and
    /// serves it.
    pub(crate) fn seed(&mut self, data: &[u8], name: &str, now: u64) -> HashName {
        let blocks: Vec<&[u8]> = data.chunks(crate::content::BLOCK_LEN as usize).collect();
        let leaves = blocks
            .iter()
            .map(|b| crate::content::merkle::leaf_hash(b))
            .collect();
        let file = self
            .peer
            .seed(
                data.len() as u64,
                leaves,
                "application/octet-stream",
                name,
                now,
            )
            .unwrap_or_else(|e| unreachable!("{e}"));
        for (i, b) in blocks.iter().enumerate() {
            self.blocks.insert((file.hash_name, i as u32), b.to_vec());
        }
        file.hash_name
    }

    /// The stored blocks of `h`, in order, as one file.
    pub(crate) fn file(&self, h: &HashName) -> Vec<u8> {
        self.blocks
            .range((*h, 0)..=(*h, u32::MAX))
            .flat_map(|(_, b)| b.iter().copied())
            .collect()
    }

    fn sdp(&mut self, node: NodeId, link: LinkNo) -> LocalSdp {
        self.fingerprint_seq += 1;
        let fingerprint = format!("sha-256 {node:04X}:{link:04X}:{:04X}", self.fingerprint_seq);
        self.local_fingerprints.insert(link, fingerprint.clone());
        let forged = if self.sdps_carry_two_fingerprints {
            "a=fingerprint:sha-256 AA:AA:AA:AA\r\n"
        } else {
            ""
        };
        let sdp = format!(
            "v=0\r\na=sim-endpoint:{node}:{link}\r\n{forged}m=application\r\na=fingerprint:{fingerprint}\r\n"
        );
        LocalSdp { sdp, fingerprint }
    }
}

fn endpoint(sdp: &str) -> Option<(NodeId, LinkNo)> {
    let line = sdp
        .lines()
        .find_map(|l| l.strip_prefix("a=sim-endpoint:"))?;
    let (n, l) = line.trim().split_once(':')?;
    Some((n.parse().ok()?, l.parse().ok()?))
}

/// A tab joins: it opens a WebSocket to `bridge`.
pub(crate) fn connect_to_bridge(net: &mut Net, tab: NodeId, bridge: NodeId) {
    let now = net.now;
    let theirs = match net.nodes.get_mut(bridge) {
        Some(Node::Bridge(b)) => b.accept(now),
        _ => return,
    };
    let ours = match net.nodes.get_mut(tab) {
        Some(Node::Tab(t)) => {
            t.bridge = Some(bridge);
            t.peer.bridge_opened(None, now)
        }
        _ => return,
    };
    net.connect((tab, ours), (bridge, theirs));
}

/// Moves what tab `n` has to send and acts on its events.
pub(super) fn step(net: &mut Net, n: NodeId) -> bool {
    let now = net.now;
    let mut moved = false;
    loop {
        let Some(Node::Tab(t)) = net.nodes.get_mut(n) else {
            return moved;
        };
        if let Some((link, frame)) = t.peer.poll_transmit() {
            moved = true;
            let to_tab = t.peer.bridge_link_id() != Some(link);
            let backlog = net.send((n, link), frame);
            if to_tab {
                let max = &mut net.stats.max_tab_link_backlog;
                *max = (*max).max(backlog);
                let over = net.config.send_buffer.filter(|(high, _)| backlog > *high);
                if let Some((_, low)) = over {
                    if let Some(Node::Tab(t)) = net.nodes.get_mut(n) {
                        t.peer.handle_link_congested(link, true);
                    }
                    net.notify_drained((n, link), low);
                }
            }
            continue;
        }
        let Some(event) = t.peer.poll_event() else {
            t.timer = t.peer.poll_timeout();
            return moved;
        };
        moved = true;
        match event {
            TabEvent::Sign { request, message } => {
                let sig = t.key.sign(&message);
                t.peer.handle_signature(request, Ok(sig), now);
            }
            TabEvent::CreateOffer { link } => {
                let sdp = t.sdp(n, link);
                t.peer.handle_local_sdp(link, Ok(sdp), now);
            }
            TabEvent::AcceptOffer { link, offer } => match endpoint(&offer) {
                Some(offerer) => {
                    t.answering.insert(link, offerer);
                    let sdp = t.sdp(n, link);
                    t.peer.handle_local_sdp(link, Ok(sdp), now);
                }
                None => t.peer.handle_local_sdp(link, Err("bad offer".into()), now),
            },
            TabEvent::ApplyAnswer { link, answer } => {
                let Some(answerer) = endpoint(&answer) else {
                    continue;
                };
                let ours = t.presented_certificate(link);
                // The answerer's side must still wait for this very offer.
                let theirs = match net.nodes.get_mut(answerer.0) {
                    Some(Node::Tab(other)) if other.alive => {
                        let waiting = other.answering.remove(&answerer.1) == Some((n, link));
                        waiting.then(|| other.presented_certificate(answerer.1))
                    }
                    _ => None,
                };
                if let Some(theirs) = theirs {
                    net.connect_dtls((n, link), answerer, [theirs, ours]);
                }
            }
            TabEvent::CloseLink { link } => {
                t.answering.remove(&link);
                t.local_fingerprints.remove(&link);
                net.disconnect((n, link));
            }
            TabEvent::BridgeOpen { .. } | TabEvent::FetchProgress { .. } => {}
            TabEvent::Done { op, outcome } => {
                t.results.insert(op, outcome);
            }
            TabEvent::FetchBody { op, data } => {
                let s = t.stored.entry(op).or_insert(Stored {
                    intact: true,
                    ..Default::default()
                });
                let from = s.bytes;
                s.intact &= data
                    .iter()
                    .enumerate()
                    .all(|(i, b)| *b == crate::service::dir::test_byte(from + i as u64));
                s.bytes += data.len() as u64;
                s.chunks += 1;
                if t.slow_store {
                    *t.held_acks.entry(op).or_default() += 1;
                } else {
                    t.peer.handle_stored(op, now);
                }
            }
            TabEvent::ReadBlock {
                request,
                hash_name,
                block,
            } => {
                let data = t.blocks.get(&(hash_name, block)).cloned().map(|mut d| {
                    if t.tamper {
                        if let Some(b) = d.get_mut(7) {
                            *b ^= 0x55;
                        }
                    }
                    d
                });
                t.peer
                    .handle_block(request, data.ok_or_else(|| "not stored".into()), now);
            }
            TabEvent::StoreBlock {
                op,
                hash_name,
                block,
                data,
                ..
            } => {
                t.blocks.insert((hash_name, block), data);
                *t.blocks_stored.entry(op).or_default() += 1;
                t.peer.handle_block_stored(op, block, now);
            }
            TabEvent::DownloadProgress { .. }
            | TabEvent::DownloadManifest { .. }
            | TabEvent::LiveManifest { .. } => {}
            TabEvent::LiveChunk {
                op,
                seq,
                timestamp_ms,
                key,
                gap,
                ..
            } => t.live.entry(op).or_default().push(LiveSeen {
                seq,
                timestamp_ms,
                at: now,
                key,
                gap,
            }),
            TabEvent::FetchRestart { op } => {
                let s = t.stored.entry(op).or_default();
                s.bytes = 0;
                s.intact = true;
                s.restarts += 1;
            }
        }
    }
}
