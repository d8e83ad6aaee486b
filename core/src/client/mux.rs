//! All of an onion proxy's circuits on one link, sans IO: the adapter (a
//! tokio task natively, the tab's callbacks in wasm, the simulation) feeds
//! cells in with `handle_cell`, issues commands, sends what `poll_cells`
//! returns as one batch, and acts on `poll_event`. Commands that wait for
//! the network (a hop, a stream) complete later as events naming the
//! circuit and stream they concern.
//!
//! Streams are pull-based both ways: `write` takes what fits (wait for
//! `StreamWritable` to offer the rest) and received data waits for `read`
//! (`StreamReadable` says when); stream SENDMEs follow what was read.

use crate::cell::ordb::{DbConnected, DbQuery};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::cell::{destroy_reason, end_reason, ControlMessage, LinkSpec, RawCell};
use crate::circuit::{
    CircIdRange, CircuitError, CircuitEvent, ClientCircuit, IdOwner, LinkSide, StreamTarget,
};
use crate::rng::{KeystreamRng, Rng, RngError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MuxEvent {
    /// A CREATE or EXTEND completed: the circuit has `hops` hops.
    HopAdded { circ: u32, hops: usize },
    /// A CREATE or EXTEND failed; the circuit is gone.
    HopFailed { circ: u32, why: String },
    /// CONNECTED arrived for a stream opened with `begin`.
    StreamOpened { circ: u32, stream: u16 },
    /// An ORDB answered a `begin_db`: the block's bytes follow as stream
    /// data.
    DbConnected {
        circ: u32,
        stream: u16,
        answer: DbConnected,
    },
    /// Data waits for `read` (said once until the stream's queue empties).
    StreamReadable { circ: u32, stream: u16 },
    /// `write` takes bytes again after a short write.
    StreamWritable { circ: u32, stream: u16 },
    /// The stream is over: END from the other side (before CONNECTED it
    /// means refused), or its circuit died. `reason` is an END reason.
    StreamEnded {
        circ: u32,
        stream: u16,
        reason: u8,
        opened: bool,
    },
    /// The circuit died (DESTROY either way, or the link closed).
    CircuitClosed { circ: u32, reason: u8 },
    /// A Peersm control message from the circuit's last hop.
    Control { circ: u32, message: ControlMessage },
}

pub struct ClientMux {
    ids: CircIdRange,
    /// Circuit ids and each circuit's seed (from the injected source).
    rng: KeystreamRng,
    circuits: BTreeMap<u32, ClientCircuit>,
    /// Circuits waiting for a CREATED or EXTENDED.
    hop_pending: BTreeSet<u32>,
    /// Streams and whether CONNECTED came.
    streams: BTreeMap<(u32, u16), bool>,
    events: VecDeque<MuxEvent>,
}

impl ClientMux {
    /// The circuits we originate on a link where we are `side` (tor-spec
    /// §5.1.1 decides the high bit of our circuit ids).
    pub fn new(side: LinkSide, rng: &mut dyn Rng) -> Result<Self, RngError> {
        Ok(ClientMux {
            ids: CircIdRange::new(side, IdOwner::Client),
            rng: KeystreamRng::seeded_from(rng)?,
            circuits: BTreeMap::new(),
            hop_pending: BTreeSet::new(),
            streams: BTreeMap::new(),
            events: VecDeque::new(),
        })
    }

    fn add(&mut self, circuit: ClientCircuit) -> u32 {
        let id = circuit.circ_id();
        self.circuits.insert(id, circuit);
        self.hop_pending.insert(id);
        id
    }

    fn fresh(
        &mut self,
        make: impl FnOnce(u32, &mut dyn Rng) -> Result<ClientCircuit, CircuitError>,
    ) -> Result<u32, CircuitError> {
        let id = self.ids.allocate(&mut self.rng)?;
        match make(id, &mut self.rng) {
            Ok(c) => Ok(self.add(c)),
            Err(e) => {
                self.ids.release(id);
                Err(e)
            }
        }
    }

    /// A first hop with CREATE_FAST; `HopAdded` or `HopFailed` follows.
    pub fn create_fast(&mut self) -> Result<u32, CircuitError> {
        self.fresh(ClientCircuit::create_fast)
    }

    /// A first hop with CREATE2/ntor to the relay `relay_id` whose ntor key
    /// is `onion_key`.
    pub fn create_ntor(
        &mut self,
        relay_id: [u8; 20],
        onion_key: [u8; 32],
    ) -> Result<u32, CircuitError> {
        self.fresh(|id, rng| ClientCircuit::create_ntor(id, relay_id, onion_key, rng))
    }

    pub fn extend(
        &mut self,
        circ: u32,
        specs: Vec<LinkSpec>,
        relay_id: [u8; 20],
        onion_key: [u8; 32],
    ) -> Result<(), CircuitError> {
        self.circuit(circ)?
            .extend_ntor(specs, relay_id, onion_key)?;
        self.hop_pending.insert(circ);
        Ok(())
    }

    /// Opens a stream at the circuit's last hop; `StreamOpened` or
    /// `StreamEnded` follows.
    pub fn begin(&mut self, circ: u32, target: StreamTarget) -> Result<u16, CircuitError> {
        let stream = self.circuit(circ)?.begin(target)?;
        self.streams.insert((circ, stream), false);
        Ok(stream)
    }

    /// Asks the circuit's last hop (an ORDB) for a block (DB_QUERY).
    pub fn begin_db(&mut self, circ: u32, query: &DbQuery) -> Result<u16, CircuitError> {
        let stream = self.circuit(circ)?.begin_db(query)?;
        self.streams.insert((circ, stream), false);
        Ok(stream)
    }

    /// Queues bytes on a stream; returns how many were taken.
    pub fn write(&mut self, circ: u32, stream: u16, data: &[u8]) -> Result<usize, CircuitError> {
        self.circuit(circ)?.write(stream, data)
    }

    /// Bytes `write` would take now.
    pub fn room(&self, circ: u32, stream: u16) -> usize {
        self.circuits.get(&circ).map_or(0, |c| c.room(stream))
    }

    /// Takes up to `max` received bytes of a stream.
    pub fn read(&mut self, circ: u32, stream: u16, max: usize) -> Result<Vec<u8>, CircuitError> {
        self.circuit(circ)?.read(stream, max)
    }

    /// Sends a Peersm control message to the circuit's last hop.
    pub fn send_control(
        &mut self,
        circ: u32,
        message: &ControlMessage,
    ) -> Result<(), CircuitError> {
        self.circuit(circ)?.send_control(message)
    }

    /// Sends any relay message to the circuit's last hop (tests).
    #[cfg(test)]
    pub(crate) fn send_any_to_last_hop(
        &mut self,
        circ: u32,
        cell: crate::cell::RelayCell,
    ) -> Result<(), CircuitError> {
        self.circuit(circ)?.send_any_to_last_hop(cell)
    }

    /// Closes a stream from our side (END DONE); no event follows.
    pub fn end(&mut self, circ: u32, stream: u16) {
        self.streams.remove(&(circ, stream));
        if let Some(c) = self.circuits.get_mut(&circ) {
            let _ = c.end_stream(stream, end_reason::DONE);
        }
    }

    /// Closes a stream from our side with `reason` (DB_END's reasons on
    /// an ORDB stream); no event follows.
    pub fn end_with(&mut self, circ: u32, stream: u16, reason: u8) {
        self.streams.remove(&(circ, stream));
        if let Some(c) = self.circuits.get_mut(&circ) {
            let _ = c.end_stream(stream, reason);
        }
    }

    /// Tears a circuit down (DESTROY FINISHED); its streams end.
    pub fn destroy(&mut self, circ: u32) {
        if let Some(c) = self.circuits.get_mut(&circ) {
            c.destroy(destroy_reason::FINISHED);
        }
        self.route_events();
    }

    pub fn is_alive(&self, circ: u32) -> bool {
        self.circuits.get(&circ).is_some_and(|c| !c.is_destroyed())
    }

    pub fn has_circuit(&self, circ: u32) -> bool {
        self.circuits.contains_key(&circ)
    }

    pub fn circuit_count(&self) -> usize {
        self.circuits.len()
    }

    /// Hops of a circuit (0 while the first is being made).
    pub fn hops(&self, circ: u32) -> usize {
        self.circuits.get(&circ).map_or(0, |c| c.hop_count())
    }

    /// Bytes queued in every stream of every circuit, both ways.
    pub fn queued_bytes(&self) -> usize {
        self.circuits.values().map(|c| c.queued_bytes()).sum()
    }

    fn circuit(&mut self, circ: u32) -> Result<&mut ClientCircuit, CircuitError> {
        self.circuits.get_mut(&circ).ok_or(CircuitError::Destroyed)
    }

    /// A cell from the link. Cells for unknown circuits are dropped; a bad
    /// cell closes only its circuit.
    pub fn handle_cell(&mut self, cell: RawCell) {
        let circ = cell.circ_id;
        let Some(c) = self.circuits.get_mut(&circ) else {
            return;
        };
        // An error has already destroyed the circuit; events say so.
        let _ = c.handle_cell(cell);
        let events: Vec<CircuitEvent> = std::iter::from_fn(|| c.poll_event()).collect();
        for e in events {
            self.route(circ, e);
        }
    }

    /// The link is gone: every circuit and stream ends.
    pub fn link_closed(&mut self) {
        for c in self.circuits.values_mut() {
            c.destroy(destroy_reason::CHANNEL_CLOSED);
        }
        self.route_events();
        for id in std::mem::take(&mut self.circuits).into_keys() {
            self.ids.release(id);
        }
    }

    /// Cells to send on the link, in order.
    pub fn poll_cells(&mut self) -> Vec<RawCell> {
        self.route_events();
        let mut out = Vec::new();
        for c in self.circuits.values_mut() {
            out.extend(std::iter::from_fn(|| c.poll_cell()));
        }
        let dead: Vec<u32> = self
            .circuits
            .iter()
            .filter(|(_, c)| c.is_destroyed())
            .map(|(id, _)| *id)
            .collect();
        for id in dead {
            self.circuits.remove(&id);
            self.ids.release(id);
        }
        out
    }

    pub fn poll_event(&mut self) -> Option<MuxEvent> {
        self.route_events();
        self.events.pop_front()
    }

    fn route_events(&mut self) {
        let mut raw = Vec::new();
        for (id, c) in self.circuits.iter_mut() {
            raw.extend(std::iter::from_fn(|| c.poll_event()).map(|e| (*id, e)));
        }
        for (circ, e) in raw {
            self.route(circ, e);
        }
    }

    fn route(&mut self, circ: u32, e: CircuitEvent) {
        match e {
            CircuitEvent::Extended { hops } => {
                if self.hop_pending.remove(&circ) {
                    self.events.push_back(MuxEvent::HopAdded { circ, hops });
                }
            }
            CircuitEvent::Truncated { reason, .. } => {
                // We never ask for partial circuits: a truncated one is useless.
                if let Some(c) = self.circuits.get_mut(&circ) {
                    c.destroy(destroy_reason::FINISHED);
                }
                if self.hop_pending.remove(&circ) {
                    self.events.push_back(MuxEvent::HopFailed {
                        circ,
                        why: format!("extend refused (TRUNCATED, reason {reason})"),
                    });
                }
            }
            CircuitEvent::Destroyed { reason, .. } => {
                if self.hop_pending.remove(&circ) {
                    self.events.push_back(MuxEvent::HopFailed {
                        circ,
                        why: format!(
                            "circuit destroyed ({}, reason {reason})",
                            destroy_reason::describe(reason)
                        ),
                    });
                }
                let ended: Vec<(u32, u16)> = self
                    .streams
                    .range((circ, 0)..=(circ, u16::MAX))
                    .map(|(k, _)| *k)
                    .collect();
                for key in ended {
                    self.stream_over(key, end_reason::DESTROY);
                }
                self.events
                    .push_back(MuxEvent::CircuitClosed { circ, reason });
            }
            CircuitEvent::StreamConnected { stream_id } => {
                if let Some(opened) = self.streams.get_mut(&(circ, stream_id)) {
                    *opened = true;
                    self.events.push_back(MuxEvent::StreamOpened {
                        circ,
                        stream: stream_id,
                    });
                }
            }
            CircuitEvent::DbConnected { stream_id, answer } => {
                if let Some(opened) = self.streams.get_mut(&(circ, stream_id)) {
                    *opened = true;
                    self.events.push_back(MuxEvent::DbConnected {
                        circ,
                        stream: stream_id,
                        answer,
                    });
                }
            }
            CircuitEvent::StreamReadable { stream_id } => {
                if self.streams.contains_key(&(circ, stream_id)) {
                    self.events.push_back(MuxEvent::StreamReadable {
                        circ,
                        stream: stream_id,
                    });
                }
            }
            CircuitEvent::StreamWritable { stream_id } => {
                if self.streams.contains_key(&(circ, stream_id)) {
                    self.events.push_back(MuxEvent::StreamWritable {
                        circ,
                        stream: stream_id,
                    });
                }
            }
            CircuitEvent::StreamEnded { stream_id, reason } => {
                self.stream_over((circ, stream_id), reason)
            }
            CircuitEvent::Control { message, .. } => {
                self.events.push_back(MuxEvent::Control { circ, message })
            }
        }
    }

    fn stream_over(&mut self, key: (u32, u16), reason: u8) {
        if let Some(opened) = self.streams.remove(&key) {
            self.events.push_back(MuxEvent::StreamEnded {
                circ: key.0,
                stream: key.1,
                reason,
                opened,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cell::{create::destroy_cell, destroy_reason};
    use crate::circuit::{RelayCircuit, RelayEvent};
    use crate::rng::SimRng;

    /// Moves cells between the mux and a one-hop relay circuit.
    fn exchange(
        mux: &mut ClientMux,
        relay: &mut Option<RelayCircuit>,
        rng: &mut SimRng,
    ) -> Vec<RelayEvent> {
        let mut relay_events = Vec::new();
        loop {
            let cells = mux.poll_cells();
            let mut moved = !cells.is_empty();
            for cell in cells {
                match relay.as_mut() {
                    None => *relay = Some(RelayCircuit::accept_create(&cell, &[], rng).unwrap()),
                    Some(r) => r.handle_cell_from_back(cell).unwrap(),
                }
            }
            if let Some(r) = relay.as_mut() {
                while let Some(cell) = r.poll_cell_back() {
                    moved = true;
                    mux.handle_cell(cell);
                }
                relay_events.extend(std::iter::from_fn(|| r.poll_event()));
            }
            if !moved {
                return relay_events;
            }
        }
    }

    fn events(mux: &mut ClientMux) -> Vec<MuxEvent> {
        std::iter::from_fn(|| mux.poll_event()).collect()
    }

    #[test]
    fn hop_stream_data_and_destroy() {
        let mut rng = SimRng::new(3);
        let mut mux = ClientMux::new(LinkSide::Initiator, &mut rng).unwrap();
        let mut relay = None;
        let circ = mux.create_fast().unwrap();
        assert!(circ & 0x8000_0000 != 0);
        exchange(&mut mux, &mut relay, &mut rng);
        assert_eq!(events(&mut mux), [MuxEvent::HopAdded { circ, hops: 1 }]);

        let stream = mux
            .begin(
                circ,
                StreamTarget::Tcp {
                    host: "example.org".into(),
                    port: 80,
                },
            )
            .unwrap();
        // Data written before CONNECTED goes out after it.
        assert_eq!(
            mux.write(circ, stream, b"GET / HTTP/1.0\r\n\r\n").unwrap(),
            18
        );
        let relay_events = exchange(&mut mux, &mut relay, &mut rng);
        assert!(matches!(
            relay_events.as_slice(),
            [RelayEvent::Begin { .. }]
        ));
        let r = relay.as_mut().unwrap();
        r.stream_connected(stream, None).unwrap();
        let relay_events = exchange(&mut mux, &mut relay, &mut rng);
        assert_eq!(events(&mut mux), [MuxEvent::StreamOpened { circ, stream }]);
        assert_eq!(
            relay_events,
            [RelayEvent::StreamReadable { stream_id: stream }]
        );
        let r = relay.as_mut().unwrap();
        assert_eq!(r.read(stream, 100).unwrap(), b"GET / HTTP/1.0\r\n\r\n");
        r.write(stream, b"hello").unwrap();
        exchange(&mut mux, &mut relay, &mut rng);
        assert_eq!(
            events(&mut mux),
            [MuxEvent::StreamReadable { circ, stream }]
        );
        assert_eq!(mux.read(circ, stream, 3).unwrap(), b"hel");
        assert_eq!(mux.read(circ, stream, 3).unwrap(), b"lo");

        // The relay destroys the circuit: the stream ends, then the circuit.
        mux.handle_cell(destroy_cell(circ, destroy_reason::CONNECTFAILED));
        let got = events(&mut mux);
        assert!(got.contains(&MuxEvent::StreamEnded {
            circ,
            stream,
            reason: end_reason::DESTROY,
            opened: true
        }));
        assert_eq!(
            got.last(),
            Some(&MuxEvent::CircuitClosed {
                circ,
                reason: destroy_reason::CONNECTFAILED
            })
        );
        assert!(!mux.is_alive(circ));
        assert!(mux.poll_cells().is_empty());
        assert_eq!(mux.circuit_count(), 0);
    }

    #[test]
    fn link_loss_fails_pending_hops() {
        let mut mux = ClientMux::new(LinkSide::Responder, &mut SimRng::new(1)).unwrap();
        let circ = mux.create_fast().unwrap();
        assert!(circ & 0x8000_0000 == 0);
        mux.link_closed();
        let got = events(&mut mux);
        assert!(matches!(got.first(), Some(MuxEvent::HopFailed { circ: c, .. }) if *c == circ));
        assert_eq!(mux.circuit_count(), 0);
    }
}
