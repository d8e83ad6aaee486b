//! All of an onion proxy's circuits on one channel, sans IO: the adapter
//! (a tokio task natively, the tab's WebSocket callbacks in wasm) feeds
//! cells in with `handle_cell`, issues commands, sends what `poll_cells`
//! returns as one batch, and acts on `poll_event`. Commands that wait for
//! the network (a hop, a stream) complete later as events naming the
//! circuit and stream they concern.

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::cell::{destroy_reason, end_reason, ControlMessage, LinkSpec, RawCell};

use super::client::{CircuitEvent, ClientCircuit, StreamTarget};
use super::CircuitError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MuxEvent {
    /// A CREATE or EXTEND completed: the circuit has `hops` hops.
    HopAdded { circ: u32, hops: usize },
    /// A CREATE or EXTEND failed; the circuit is gone.
    HopFailed { circ: u32, why: String },
    /// CONNECTED arrived for a stream opened with `begin`.
    StreamOpened { circ: u32, stream: u16 },
    StreamData {
        circ: u32,
        stream: u16,
        data: Vec<u8>,
    },
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

#[derive(Default)]
pub struct ClientMux {
    /// We did not initiate the link: our circuit ids have the high bit
    /// clear, so they never collide with the other side's.
    link_responder: bool,
    circuits: BTreeMap<u32, ClientCircuit>,
    /// Circuits waiting for a CREATED or EXTENDED.
    hop_pending: HashMap<u32, ()>,
    /// Streams and whether CONNECTED came.
    streams: HashMap<(u32, u16), bool>,
    /// Bytes a stream's send buffer had no room for yet.
    unsent: HashMap<(u32, u16), Vec<u8>>,
    events: VecDeque<MuxEvent>,
}

impl ClientMux {
    pub fn new() -> Self {
        Self::default()
    }

    /// For a link both ends build circuits on (tab links): the side that
    /// did not initiate the link uses ids with the high bit clear
    /// (tor-spec §5.1.1).
    pub fn for_link_responder() -> Self {
        ClientMux {
            link_responder: true,
            ..Self::default()
        }
    }

    fn new_circ_id(&self) -> Result<u32, CircuitError> {
        loop {
            let bytes = super::random_bytes::<4>()?;
            // Link initiators set the high bit on v4+ links (tor-spec §5.1.1).
            let id = if self.link_responder {
                u32::from_be_bytes(bytes) & 0x7fff_ffff
            } else {
                u32::from_be_bytes(bytes) | 0x8000_0000
            };
            if id != 0 && !self.circuits.contains_key(&id) {
                return Ok(id);
            }
        }
    }

    fn add(&mut self, circuit: ClientCircuit) -> u32 {
        let id = circuit.circ_id();
        self.circuits.insert(id, circuit);
        self.hop_pending.insert(id, ());
        id
    }

    /// A first hop with CREATE_FAST; `HopAdded` or `HopFailed` follows.
    pub fn create_fast(&mut self) -> Result<u32, CircuitError> {
        let id = self.new_circ_id()?;
        Ok(self.add(ClientCircuit::create_fast(id)?))
    }

    /// A first hop with CREATE2/ntor to the relay `relay_id` whose ntor key
    /// is `onion_key`.
    pub fn create_ntor(
        &mut self,
        relay_id: [u8; 20],
        onion_key: [u8; 32],
    ) -> Result<u32, CircuitError> {
        let id = self.new_circ_id()?;
        Ok(self.add(ClientCircuit::create_ntor(id, relay_id, onion_key)?))
    }

    pub fn extend(
        &mut self,
        circ: u32,
        specs: Vec<LinkSpec>,
        relay_id: [u8; 20],
        onion_key: [u8; 32],
    ) -> Result<(), CircuitError> {
        let c = self
            .circuits
            .get_mut(&circ)
            .ok_or(CircuitError::Destroyed)?;
        c.extend_ntor(specs, relay_id, onion_key)?;
        self.hop_pending.insert(circ, ());
        Ok(())
    }

    /// Opens a stream at the circuit's last hop; `StreamOpened` or
    /// `StreamEnded` follows.
    pub fn begin(&mut self, circ: u32, target: StreamTarget) -> Result<u16, CircuitError> {
        let c = self
            .circuits
            .get_mut(&circ)
            .ok_or(CircuitError::Destroyed)?;
        let stream = c.begin(target)?;
        self.streams.insert((circ, stream), false);
        Ok(stream)
    }

    /// Queues bytes on a stream; they go out as windows allow.
    pub fn send(&mut self, circ: u32, stream: u16, data: &[u8]) {
        if !self.streams.contains_key(&(circ, stream)) {
            return;
        }
        self.unsent
            .entry((circ, stream))
            .or_default()
            .extend_from_slice(data);
        self.push_unsent(circ, stream);
    }

    /// Sends a Peersm control message to the circuit's last hop.
    pub fn send_control(
        &mut self,
        circ: u32,
        message: &ControlMessage,
    ) -> Result<(), CircuitError> {
        let c = self
            .circuits
            .get_mut(&circ)
            .ok_or(CircuitError::Destroyed)?;
        c.send_control(message)
    }

    /// Closes a stream from our side (END DONE); no event follows.
    pub fn end(&mut self, circ: u32, stream: u16) {
        self.streams.remove(&(circ, stream));
        self.unsent.remove(&(circ, stream));
        if let Some(c) = self.circuits.get_mut(&circ) {
            let _ = c.end_stream(stream, end_reason::DONE);
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

    /// A cell from the channel. Cells for unknown circuits are dropped;
    /// a bad cell closes only its circuit.
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
        self.circuits.clear();
    }

    /// Cells to send on the channel, in order.
    pub fn poll_cells(&mut self) -> Vec<RawCell> {
        self.route_events();
        let mut out = Vec::new();
        for c in self.circuits.values_mut() {
            out.extend(std::iter::from_fn(|| c.poll_cell()));
        }
        self.circuits.retain(|_, c| !c.is_destroyed());
        out
    }

    pub fn poll_event(&mut self) -> Option<MuxEvent> {
        self.route_events();
        self.events.pop_front()
    }

    fn push_unsent(&mut self, circ: u32, stream: u16) {
        let key = (circ, stream);
        let (Some(c), Some(buf)) = (self.circuits.get_mut(&circ), self.unsent.get_mut(&key)) else {
            return;
        };
        if let Ok(n) = c.send(stream, buf) {
            buf.drain(..n);
        }
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
                if self.hop_pending.remove(&circ).is_some() {
                    self.events.push_back(MuxEvent::HopAdded { circ, hops });
                }
            }
            CircuitEvent::Truncated { reason, .. } => {
                // We never ask for partial circuits: a truncated one is useless.
                if let Some(c) = self.circuits.get_mut(&circ) {
                    c.destroy(destroy_reason::FINISHED);
                }
                if self.hop_pending.remove(&circ).is_some() {
                    self.events.push_back(MuxEvent::HopFailed {
                        circ,
                        why: format!("extend refused (TRUNCATED, reason {reason})"),
                    });
                }
            }
            CircuitEvent::Destroyed { reason, .. } => {
                if self.hop_pending.remove(&circ).is_some() {
                    self.events.push_back(MuxEvent::HopFailed {
                        circ,
                        why: format!("circuit destroyed (reason {reason})"),
                    });
                }
                let ended: Vec<(u32, u16)> = self
                    .streams
                    .keys()
                    .filter(|(c, _)| *c == circ)
                    .copied()
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
                    self.push_unsent(circ, stream_id);
                }
            }
            CircuitEvent::StreamData { stream_id, data } => {
                if self.streams.contains_key(&(circ, stream_id)) {
                    self.events.push_back(MuxEvent::StreamData {
                        circ,
                        stream: stream_id,
                        data,
                    });
                }
            }
            CircuitEvent::StreamEnded { stream_id, reason } => {
                self.stream_over((circ, stream_id), reason)
            }
            CircuitEvent::StreamWritable { stream_id } => self.push_unsent(circ, stream_id),
            CircuitEvent::Control { message, .. } => {
                self.events.push_back(MuxEvent::Control { circ, message })
            }
        }
    }

    fn stream_over(&mut self, key: (u32, u16), reason: u8) {
        self.unsent.remove(&key);
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

    /// Moves cells between the mux and a one-hop relay circuit.
    fn exchange(mux: &mut ClientMux, relay: &mut Option<RelayCircuit>) -> Vec<RelayEvent> {
        let mut relay_events = Vec::new();
        loop {
            let cells = mux.poll_cells();
            let mut moved = !cells.is_empty();
            for cell in cells {
                match relay.as_mut() {
                    None => *relay = Some(RelayCircuit::accept_create(&cell, &[]).unwrap()),
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
        let mut mux = ClientMux::new();
        let mut relay = None;
        let circ = mux.create_fast().unwrap();
        assert!(circ & 0x8000_0000 != 0);
        exchange(&mut mux, &mut relay);
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
        // Data queued before CONNECTED goes out after it.
        mux.send(circ, stream, b"GET / HTTP/1.0\r\n\r\n");
        let relay_events = exchange(&mut mux, &mut relay);
        assert!(matches!(
            relay_events.as_slice(),
            [RelayEvent::Begin { .. }]
        ));
        let r = relay.as_mut().unwrap();
        r.stream_connected(stream, None).unwrap();
        let relay_events = exchange(&mut mux, &mut relay);
        assert_eq!(events(&mut mux), [MuxEvent::StreamOpened { circ, stream }]);
        assert!(matches!(
            relay_events.as_slice(),
            [RelayEvent::StreamData { data, .. }] if data == b"GET / HTTP/1.0\r\n\r\n"
        ));
        relay.as_mut().unwrap().send(stream, b"hello").unwrap();
        exchange(&mut mux, &mut relay);
        assert_eq!(
            events(&mut mux),
            [MuxEvent::StreamData {
                circ,
                stream,
                data: b"hello".to_vec()
            }]
        );

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
        let mut mux = ClientMux::new();
        let circ = mux.create_fast().unwrap();
        mux.link_closed();
        let got = events(&mut mux);
        assert!(matches!(got.first(), Some(MuxEvent::HopFailed { circ: c, .. }) if *c == circ));
        assert_eq!(mux.circuit_count(), 0);
    }
}
