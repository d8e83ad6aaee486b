//! A native peer, sans IO: a relay (onion router, exit, directory) and,
//! with a bridge mesh, a bridge (tabs' registrations and introductions,
//! federation with other bridges). `peersm-node` drives one of these per
//! relay it runs; the simulation drives the bridges of a whole network.
//!
//! The adapter adds links as their handshakes finish (with the identity
//! the peer proved), feeds cells in, sends what `transmit` returns and
//! acts on `poll_event`: opening links the router asks for, the exit's
//! sockets, federating with bridges the mesh found.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Debug;
use std::net::{IpAddr, SocketAddr};

use crate::cell::{ControlMessage, RawCell};
use crate::circuit::LinkSide;
use crate::client::MuxEvent;
use crate::mesh::bridge::{BridgeMesh, BridgeMeshEvent, LinkIdentity};
use crate::peer::limits::BucketPerKey;
use crate::rng::{Rng, RngError};
use crate::router::{CircuitKey, ExtendTarget, LinkPeer, RouterConfig, RouterEvent};
use crate::service::{DirRoutes, ExitEvent, ExitPolicy, ExitStream, Services};

use super::core::{CoreEvent, PeerCore, Queued};

pub struct RelayPeerConfig {
    pub router: RouterConfig,
    /// What BEGIN_DIR serves (`None`: refused).
    pub dir: Option<DirRoutes>,
    /// The exit policy (`None`, or one rejecting everything: no exit).
    pub exit: Option<ExitPolicy>,
    /// Run a bridge mesh, named by this RSA fingerprint.
    pub bridge: Option<[u8; 20]>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayPeerEvent<L> {
    /// Open a link to this relay and prove it (`add_link`), or call
    /// `connect_failed`.
    Connect { target: ExtendTarget },
    /// The exit asks the platform.
    Exit(ExitEvent<L>),
    /// Federate with the bridge at `url`, which must prove `fingerprint`
    /// (then `add_federation_link`); a few attempts, not forever.
    Federate { url: String, fingerprint: [u8; 20] },
    /// A federation link lost its control circuit: close it (the adapter
    /// retries as it sees fit).
    FederationLost { link: L, url: String },
}

struct Federation {
    url: String,
    their: LinkIdentity,
    circ: u32,
    /// Where tabs reach us, said in our BRIDGE_HELLO.
    my_url: String,
    greeted: bool,
}

pub struct RelayPeer<L> {
    pub core: PeerCore<L>,
    pub mesh: Option<BridgeMesh<L>>,
    /// What authenticated links proved (tabs, bridges).
    identities: BTreeMap<L, LinkIdentity>,
    federation: BTreeMap<L, Federation>,
    events: VecDeque<RelayPeerEvent<L>>,
    /// Since when each link has carried no circuit (ms).
    idle_since: BTreeMap<L, u64>,
    /// Mesh messages (registrations, introductions, bridge messages) per
    /// link: each may make the bridge send to others.
    mesh_budget: BucketPerKey<L>,
}

/// Per link: mesh messages taken at once, then per second.
pub const MESH_BURST: u32 = 64;
pub const MESH_PER_SECOND: u32 = 8;

/// A link that carries no circuit for this long is closed (C tor closes
/// channels without circuits after a few minutes too): a peer cannot
/// keep links open for nothing.
pub const LINK_IDLE_MS: u64 = 180_000;

impl<L: Copy + Ord + Debug> RelayPeer<L> {
    pub fn new(config: RelayPeerConfig, rng: &mut dyn Rng) -> Result<Self, RngError> {
        let services = Services::new(config.dir, config.exit);
        Ok(RelayPeer {
            core: PeerCore::new(config.router, services, rng)?,
            mesh: config.bridge.map(BridgeMesh::new),
            identities: BTreeMap::new(),
            federation: BTreeMap::new(),
            events: VecDeque::new(),
            idle_since: BTreeMap::new(),
            mesh_budget: BucketPerKey::new(MESH_BURST, MESH_PER_SECOND),
        })
    }

    /// A link finished its handshake. `identity`: what an authenticated
    /// tab or bridge proved (it may then use the mesh).
    pub fn add_link(
        &mut self,
        link: L,
        side: LinkSide,
        peer: LinkPeer,
        identity: Option<LinkIdentity>,
    ) -> Result<(), RngError> {
        self.core.add_link(link, side, peer)?;
        if let Some(id) = identity {
            self.identities.insert(link, id);
        }
        Ok(())
    }

    /// We linked to the bridge at `url` (which proved `their` identity and
    /// ntor key): a one-hop control circuit, then BRIDGE_HELLO saying
    /// tabs reach us at `my_url`.
    pub fn add_federation_link(
        &mut self,
        link: L,
        their: LinkIdentity,
        their_ntor_key: [u8; 32],
        url: String,
        my_url: String,
    ) -> Result<(), crate::circuit::CircuitError> {
        let peer = LinkPeer {
            id: Some(their.fingerprint),
            ed25519_id: None,
        };
        self.core.add_link(link, LinkSide::Initiator, peer)?;
        let circ = self
            .core
            .mux(link)
            .ok_or(crate::circuit::CircuitError::Destroyed)?
            .create_ntor(their.fingerprint, their_ntor_key)?;
        self.identities.insert(link, their.clone());
        self.federation.insert(
            link,
            Federation {
                url,
                their,
                circ,
                my_url,
                greeted: false,
            },
        );
        Ok(())
    }

    /// The operator trusts this bridge: its BRIDGE_HELLO is taken, and its
    /// BRIDGE_NODES vouch for the bridges it lists.
    pub fn trust_bridge(&mut self, fingerprint: [u8; 20]) {
        if let Some(m) = self.mesh.as_mut() {
            m.trust_bridge(fingerprint);
        }
    }

    /// Starting to federate with `url` (or retrying).
    pub fn federating_with(&mut self, url: &str) {
        if let Some(m) = self.mesh.as_mut() {
            m.federating_with(url);
        }
    }

    /// A federation attempt failed before its link opened.
    pub fn federation_failed(&mut self, url: &str) {
        if let Some(m) = self.mesh.as_mut() {
            m.federation_failed(url);
        }
    }

    /// Links that carried no circuit, ours or through us, for `idle_ms`
    /// up to `now`: the adapter closes them. Call it now and then (a link
    /// counts as busy until the first call sees it idle).
    pub fn idle_links(&mut self, now: u64, idle_ms: u64) -> Vec<L> {
        let links: Vec<L> = self.core.links().map(|(l, _, _)| *l).collect();
        self.idle_since.retain(|l, _| links.contains(l));
        let mut idle = Vec::new();
        for link in links {
            let busy = self.core.router.carries_circuits(&link)
                || self
                    .core
                    .mux_ref(&link)
                    .is_some_and(|m| m.circuit_count() > 0);
            if busy {
                self.idle_since.remove(&link);
                continue;
            }
            let since = *self.idle_since.entry(link).or_insert(now);
            if now.saturating_sub(since) >= idle_ms {
                idle.push(link);
            }
        }
        idle
    }

    /// A control message that ends here: to the mesh, within the link's
    /// rate.
    fn on_control(&mut self, circuit: CircuitKey<L>, message: ControlMessage, now: u64) {
        if !self.mesh_budget.allow(circuit.link, now) {
            return;
        }
        let from = self.identities.get(&circuit.link).cloned();
        if let Some(m) = self.mesh.as_mut() {
            m.handle(from.as_ref(), (circuit.link, circuit.circ), message, now);
        }
    }

    /// Mesh messages dropped under the per-link rate.
    pub fn mesh_refused(&self) -> u64 {
        self.mesh_budget.refused()
    }

    pub fn remove_link(&mut self, link: L, now: u64) {
        self.idle_since.remove(&link);
        self.mesh_budget.forget(&link);
        self.core.remove_link(link);
        if let Some(m) = self.mesh.as_mut() {
            m.link_closed(link);
        }
        self.identities.remove(&link);
        if let Some(f) = self.federation.remove(&link) {
            self.federation_failed(&f.url);
        }
        self.drive(now);
    }

    /// Opening a link the router asked for failed.
    pub fn connect_failed(&mut self, target: &ExtendTarget, now: u64) {
        self.core.router.connect_failed(target);
        self.drive(now);
    }

    pub fn handle_cells(&mut self, link: L, cells: Vec<RawCell>, now: u64) {
        self.core.handle_cells(link, cells);
        self.drive(now);
    }

    /// Everything to send now, one batch per link.
    pub fn transmit(&mut self) -> Vec<(L, Vec<RawCell>)> {
        self.core.transmit()
    }

    pub fn poll_event(&mut self) -> Option<RelayPeerEvent<L>> {
        self.events.pop_front()
    }

    /// Replaces a document the directory serves (a bridge's relay list).
    pub fn set_document(&mut self, path: &str, body: Vec<u8>) {
        if let Some(dir) = self.core.services.dir.as_mut() {
            dir.routes_mut().documents.insert(path.to_string(), body);
        }
    }

    // --- the exit's platform side ---

    pub fn exit_resolved(
        &mut self,
        stream: ExitStream<L>,
        addrs: Result<Vec<IpAddr>, ()>,
        now: u64,
    ) {
        let core = &mut self.core;
        if let Some(exit) = core.services.exit.as_mut() {
            exit.resolved(&mut core.router, stream, addrs);
        }
        self.drive(now);
    }

    pub fn exit_connected(&mut self, stream: ExitStream<L>, addr: SocketAddr, now: u64) -> bool {
        let core = &mut self.core;
        let ok = core
            .services
            .exit
            .as_mut()
            .is_some_and(|exit| exit.connected(&mut core.router, stream, addr));
        self.drive(now);
        ok
    }

    pub fn exit_connect_failed(&mut self, stream: ExitStream<L>, reason: u8, now: u64) {
        let core = &mut self.core;
        if let Some(exit) = core.services.exit.as_mut() {
            exit.connect_failed(&mut core.router, stream, reason);
        }
        self.drive(now);
    }

    /// Bytes from the server; returns how many the stream took.
    pub fn exit_write(&mut self, stream: ExitStream<L>, data: &[u8], now: u64) -> usize {
        let n = self
            .core
            .router
            .write(stream.0, stream.1, data)
            .unwrap_or(0);
        self.drive(now);
        n
    }

    /// Bytes the stream takes now from the server.
    pub fn exit_room(&self, stream: ExitStream<L>) -> usize {
        self.core.router.room(stream.0, stream.1)
    }

    /// Up to `max` bytes from the client for the server.
    pub fn exit_read(&mut self, stream: ExitStream<L>, max: usize, now: u64) -> Vec<u8> {
        let data = self
            .core
            .router
            .read(stream.0, stream.1, max)
            .unwrap_or_default();
        self.drive(now);
        data
    }

    /// The server closed (or the socket failed).
    pub fn exit_closed(&mut self, stream: ExitStream<L>, now: u64) {
        let core = &mut self.core;
        if let Some(exit) = core.services.exit.as_mut() {
            exit.server_closed(&mut core.router, stream);
        }
        self.drive(now);
    }

    /// Acts on what the core and the mesh produced.
    pub fn drive(&mut self, now: u64) {
        while let Some(e) = self.core.poll_event() {
            match e {
                CoreEvent::Router(RouterEvent::Connect { target }) => {
                    self.events.push_back(RelayPeerEvent::Connect { target })
                }
                CoreEvent::Router(RouterEvent::Control { circuit, message }) => {
                    self.on_control(circuit, message, now)
                }
                CoreEvent::Router(RouterEvent::CircuitClosed { circuit, .. }) => {
                    if let Some(m) = self.mesh.as_mut() {
                        m.circuit_closed((circuit.link, circuit.circ));
                    }
                }
                CoreEvent::Router(RouterEvent::StreamBegin {
                    circuit, stream, ..
                }) => {
                    // No service took it (cannot happen with `Services`).
                    let _ = self.core.router.stream_refused(
                        circuit,
                        stream,
                        crate::cell::end_reason::NOTDIRECTORY,
                    );
                }
                // A relay holds no content yet (facilitators will): it
                // says so at once rather than leave the query hanging.
                CoreEvent::Router(RouterEvent::DbQuery {
                    circuit, stream, ..
                }) => {
                    let _ = self.core.router.stream_refused(
                        circuit,
                        stream,
                        crate::cell::db_end_reason::UNAVAILABLE,
                    );
                }
                CoreEvent::Router(_) => {}
                CoreEvent::Exit(e) => self.events.push_back(RelayPeerEvent::Exit(e)),
                CoreEvent::Mux { link, event } => self.on_federation(link, event, now),
            }
            self.flush_mesh();
        }
        self.flush_mesh();
    }

    fn on_federation(&mut self, link: L, event: MuxEvent, now: u64) {
        let Some(f) = self.federation.get_mut(&link) else {
            return;
        };
        match event {
            MuxEvent::HopAdded { circ, .. } if circ == f.circ && !f.greeted => {
                f.greeted = true;
                tracing::info!(url = %f.url, "federated with bridge");
                let hello = ControlMessage::BridgeHello {
                    url: f.my_url.clone(),
                };
                let (their, url) = (f.their.clone(), f.url.clone());
                if let Some(mux) = self.core.mux(link) {
                    let _ = mux.send_control(circ, &hello);
                }
                if let Some(m) = self.mesh.as_mut() {
                    m.greeted(&their, (link, circ), url, now);
                }
            }
            MuxEvent::Control { circ, message } if circ == f.circ => {
                let their = f.their.clone();
                if let Some(m) = self.mesh.as_mut() {
                    m.handle(Some(&their), (link, circ), message, now);
                }
            }
            MuxEvent::HopFailed { circ, .. } | MuxEvent::CircuitClosed { circ, .. }
                if circ == f.circ =>
            {
                let url = f.url.clone();
                if let Some(m) = self.mesh.as_mut() {
                    m.circuit_closed((link, circ));
                }
                self.events
                    .push_back(RelayPeerEvent::FederationLost { link, url });
            }
            _ => {}
        }
    }

    /// Sends what the mesh queued on its routes.
    fn flush_mesh(&mut self) {
        let Some(m) = self.mesh.as_mut() else {
            return;
        };
        let mut out = Vec::new();
        while let Some(e) = m.poll_event() {
            out.push(e);
        }
        for e in out {
            match e {
                BridgeMeshEvent::Send { route, message } => self.send_control(route, &message),
                BridgeMeshEvent::Federate { url, fingerprint } => self
                    .events
                    .push_back(RelayPeerEvent::Federate { url, fingerprint }),
            }
        }
    }

    /// A control message on a circuit through us or one of ours.
    fn send_control(&mut self, (link, circ): (L, u32), message: &ControlMessage) {
        let through_us = CircuitKey { link, circ };
        if self.core.router.has_circuit(through_us) {
            let _ = self.core.router.send_control(through_us, message);
        } else if let Some(mux) = self.core.mux(link) {
            let _ = mux.send_control(circ, message);
        }
    }

    /// Tabs registered here, introductions carried, federated bridges.
    pub fn mesh_status(&self) -> (usize, u64, Vec<(String, usize)>) {
        self.mesh.as_ref().map_or((0, 0, Vec::new()), |m| {
            (m.registered(), m.introductions(), m.federation())
        })
    }

    pub fn queued(&self) -> Queued {
        self.core.queued()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cell::{command, destroy_reason};

    /// A relay peer with no keys, directory or exit; a bridge (with a
    /// mesh) when `bridge` names its fingerprint.
    fn peer(bridge: Option<[u8; 20]>) -> RelayPeer<u8> {
        let config = RelayPeerConfig {
            router: RouterConfig::new(Vec::new()),
            dir: None,
            exit: None,
            bridge,
        };
        let mut rng = crate::rng::SimRng::new(3);
        RelayPeer::new(config, &mut rng).unwrap()
    }

    /// A link that carries no circuit is reported idle after the timeout
    /// (and closed by the adapter); one with a circuit is not, until the
    /// circuit ends.
    #[test]
    fn links_without_circuits_go_idle() {
        let mut peer = peer(None);
        for link in [1, 2] {
            peer.add_link(link, LinkSide::Responder, LinkPeer::default(), None)
                .unwrap();
        }
        assert!(peer.idle_links(0, LINK_IDLE_MS).is_empty());
        // Link 2 carries a circuit.
        let create = RawCell::new(0x8000_0001, command::CREATE_FAST, vec![7; 20]);
        peer.handle_cells(2, vec![create], 1_000);
        assert_eq!(peer.core.router.circuit_count(), 1);
        assert!(peer.idle_links(LINK_IDLE_MS - 1, LINK_IDLE_MS).is_empty());
        assert_eq!(peer.idle_links(LINK_IDLE_MS, LINK_IDLE_MS), [1]);
        // Its circuit ends: link 2 idles from then on.
        let destroy = RawCell::new(
            0x8000_0001,
            command::DESTROY,
            vec![destroy_reason::FINISHED],
        );
        peer.handle_cells(2, vec![destroy], LINK_IDLE_MS);
        assert_eq!(peer.idle_links(LINK_IDLE_MS + 1, LINK_IDLE_MS), [1]);
        assert_eq!(peer.idle_links(2 * LINK_IDLE_MS + 1, LINK_IDLE_MS), [1, 2]);
        peer.remove_link(1, 2 * LINK_IDLE_MS + 1);
        assert_eq!(peer.idle_links(2 * LINK_IDLE_MS + 2, LINK_IDLE_MS), [2]);
    }

    /// A tab floods its bridge with mesh messages (each may make the
    /// bridge write to other tabs): a burst is taken, then the link's
    /// rate; another link has its own.
    #[test]
    fn mesh_messages_are_taken_at_a_bounded_rate_per_link() {
        let mut peer = peer(Some([0xee; 20]));
        let intro = || ControlMessage::Introduce {
            peer: crate::crypto::PeerId([1; 20]),
            sdp: "offer".into(),
        };
        let on = |link| CircuitKey {
            link,
            circ: 0x8000_0001,
        };
        for _ in 0..200 {
            peer.on_control(on(1), intro(), 1_000);
        }
        assert_eq!(peer.mesh_refused(), 200 - u64::from(MESH_BURST));
        peer.on_control(on(2), intro(), 1_000);
        assert_eq!(peer.mesh_refused(), 200 - u64::from(MESH_BURST));
        for _ in 0..20 {
            peer.on_control(on(1), intro(), 2_000);
        }
        assert_eq!(
            peer.mesh_refused(),
            200 - u64::from(MESH_BURST) + 20 - u64::from(MESH_PER_SECOND)
        );
    }
}
