//! What every peer is, tab or node: links that carry cells both ways, an
//! onion router for other peers' circuits, services for the streams that
//! end here, and a `ClientMux` per link for the circuits it originates.
//!
//! A cell from a link goes to the router first; what the router does not
//! take (a cell for a circuit we originate) goes to that link's mux. On a
//! link both parts allocate circuit ids from our half (tor-spec §5.1.1),
//! split between them by `CircIdRange`, so they never collide.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Debug;

use crate::cell::RawCell;
use crate::circuit::LinkSide;
use crate::client::{ClientMux, MuxEvent};
use crate::rng::{KeystreamRng, Rng, RngError};
use crate::router::{LinkPeer, Router, RouterConfig, RouterEvent};
use crate::service::{ExitEvent, Services};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoreEvent<L> {
    /// A router event no service took: `Connect`, control messages,
    /// `CircuitClosed`, streams of no service.
    Router(RouterEvent<L>),
    /// What the exit asks of the platform.
    Exit(ExitEvent<L>),
    /// One of our circuits on `link`.
    Mux { link: L, event: MuxEvent },
}

struct CoreLink {
    side: LinkSide,
    peer: LinkPeer,
    mux: ClientMux,
}

pub struct PeerCore<L> {
    pub router: Router<L>,
    pub services: Services<L>,
    links: BTreeMap<L, CoreLink>,
    /// Seeds each new link's mux.
    rng: KeystreamRng,
    /// Mux events of links that were removed (their circuits' last words).
    orphan_events: VecDeque<(L, MuxEvent)>,
}

impl<L: Copy + Ord + Debug> PeerCore<L> {
    pub fn new(
        config: RouterConfig,
        services: Services<L>,
        rng: &mut dyn Rng,
    ) -> Result<Self, RngError> {
        Ok(PeerCore {
            router: Router::new(config, rng)?,
            services,
            links: BTreeMap::new(),
            rng: KeystreamRng::seeded_from(rng)?,
            orphan_events: VecDeque::new(),
        })
    }

    /// A link finished its handshake: we are `side`, the other end proved
    /// `peer`.
    pub fn add_link(&mut self, link: L, side: LinkSide, peer: LinkPeer) -> Result<(), RngError> {
        let mux = ClientMux::new(side, &mut self.rng)?;
        self.links.insert(link, CoreLink { side, peer, mux });
        self.router.add_link(link, side, peer);
        Ok(())
    }

    /// The link is gone: circuits through it and ours on it die.
    pub fn remove_link(&mut self, link: L) {
        self.router.remove_link(link);
        if let Some(mut l) = self.links.remove(&link) {
            l.mux.link_closed();
            while let Some(event) = l.mux.poll_event() {
                self.orphan_events.push_back((link, event));
            }
        }
    }

    pub fn has_link(&self, link: &L) -> bool {
        self.links.contains_key(link)
    }

    pub fn links(&self) -> impl Iterator<Item = (&L, LinkSide, &LinkPeer)> {
        self.links.iter().map(|(k, l)| (k, l.side, &l.peer))
    }

    pub fn link_count(&self) -> usize {
        self.links.len()
    }

    /// Our circuits on `link`.
    pub fn mux(&mut self, link: L) -> Option<&mut ClientMux> {
        self.links.get_mut(&link).map(|l| &mut l.mux)
    }

    pub fn mux_ref(&self, link: &L) -> Option<&ClientMux> {
        self.links.get(link).map(|l| &l.mux)
    }

    /// Cells from `link`.
    pub fn handle_cells(&mut self, link: L, cells: Vec<RawCell>) {
        for cell in cells {
            let Some(cell) = self.router.handle_cell(link, cell) else {
                continue;
            };
            if cell.circ_id == 0 {
                continue; // PADDING, VPADDING, NETINFO after the handshake.
            }
            if let Some(l) = self.links.get_mut(&link) {
                l.mux.handle_cell(cell);
            }
        }
    }

    /// Everything to send now, one batch per link.
    pub fn transmit(&mut self) -> Vec<(L, Vec<RawCell>)> {
        let mut out: BTreeMap<L, Vec<RawCell>> = BTreeMap::new();
        while let Some((link, cells)) = self.router.poll_transmit() {
            out.entry(link).or_default().extend(cells);
        }
        for (link, l) in self.links.iter_mut() {
            let cells = l.mux.poll_cells();
            if !cells.is_empty() {
                out.entry(*link).or_default().extend(cells);
            }
        }
        out.into_iter().collect()
    }

    /// The next event: router events pass through the services first.
    pub fn poll_event(&mut self) -> Option<CoreEvent<L>> {
        while let Some(e) = self.router.poll_event() {
            if let Some(e) = self.services.handle(&mut self.router, e) {
                return Some(CoreEvent::Router(e));
            }
        }
        if let Some(e) = self.services.poll_exit_event() {
            return Some(CoreEvent::Exit(e));
        }
        if let Some((link, event)) = self.orphan_events.pop_front() {
            return Some(CoreEvent::Mux { link, event });
        }
        for (link, l) in self.links.iter_mut() {
            if let Some(event) = l.mux.poll_event() {
                return Some(CoreEvent::Mux { link: *link, event });
            }
        }
        None
    }

    /// Bytes and cells waiting anywhere in this peer (for bounds checks).
    pub fn queued(&self) -> Queued {
        Queued {
            router_cells: self.router.queued_cells(),
            stream_bytes: self.router.queued_stream_bytes()
                + self
                    .links
                    .values()
                    .map(|l| l.mux.queued_bytes())
                    .sum::<usize>(),
        }
    }
}

/// What a peer holds in its queues.
impl<L: Copy + Ord + Debug> crate::service::ordb::OrdbNet<L> for PeerCore<L> {
    fn router(&mut self) -> &mut Router<L> {
        &mut self.router
    }

    fn mux(&mut self, link: L) -> Option<&mut ClientMux> {
        PeerCore::mux(self, link)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Queued {
    /// Cells waiting in the router's link outboxes.
    pub router_cells: usize,
    /// Bytes in stream queues (both ways), ours and those ending here.
    pub stream_bytes: usize,
}
