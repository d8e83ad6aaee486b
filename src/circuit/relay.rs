//! One circuit hop at an onion router (tor-spec §5–7): answers CREATE_FAST
//! or CREATE2/ntor, peels its layer off outbound cells, acts on the ones it
//! recognizes (EXTEND2, BEGIN, BEGIN_DIR, DATA, END, SENDME, TRUNCATE) and
//! passes the rest to the next hop; adds its layer to cells going back.
//!
//! Cells toward the client come out of `poll_cell_back`, cells toward the
//! next hop out of `poll_cell_forward`; what needs the platform (opening a
//! channel, connecting a socket) is a `RelayEvent`.

use crate::cell::{ControlMessage, ControlReassembler};
use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;

use crate::cell::{
    command, create::create_fast_x, create::destroy_cell, destroy_reason, end_reason,
    handshake_type, relay_command, stream::end_reason_of, Begin, Connected, Create2, Created2,
    Extend2, RawCell, RelayCell, Sendme, RELAY_DATA_LEN,
};
use crate::crypto::ntor::{self, NtorRelayKey};
use crate::crypto::relay_crypto::{RelayBody, RelayHop};
use crate::crypto::{create_fast, CircuitKeys};

use super::flow::{CircuitWindow, StreamWindow};
use super::{random_bytes, random_padding, CircuitError, StreamTarget, MAX_RELAY_EARLY};

const STREAM_SEND_BUFFER: usize = 256 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayEvent {
    /// The client asks us to extend: open (or reuse) a channel to the relay
    /// named by `extend.link_specs`, send `extend.create` as CREATE2 on a
    /// new circuit id, then call `next_hop_created` or `extend_failed`.
    Extend(Extend2),
    /// The client asks for a stream (we are the exit, or BEGIN_DIR): call
    /// `stream_connected` or `stream_refused`.
    Begin {
        stream_id: u16,
        target: StreamTarget,
    },
    StreamData {
        stream_id: u16,
        data: Vec<u8>,
    },
    StreamEnded {
        stream_id: u16,
        reason: u8,
    },
    StreamWritable {
        stream_id: u16,
    },
    /// A Peersm control message from the client (docs/PROTOCOL.md "Mesh").
    Control(ControlMessage),
    /// The circuit is gone; the adapter drops it and, if it was extended,
    /// tells the next hop (a DESTROY is already in `poll_cell_forward`).
    Destroyed {
        reason: u8,
    },
}

struct ExitStream {
    window: StreamWindow,
    connected: bool,
    /// END to send once the buffered data is out.
    pending_end: Option<u8>,
    to_send: VecDeque<u8>,
    writable_reported: bool,
}

pub struct RelayCircuit {
    back_circ_id: u32,
    hop: RelayHop,
    window: CircuitWindow,
    /// Circuit id on the channel to the next hop, once extended.
    next_circ_id: Option<u32>,
    extending: bool,
    relay_early_seen: u8,
    streams: BTreeMap<u16, ExitStream>,
    destroyed: bool,
    back: VecDeque<RawCell>,
    forward: VecDeque<RawCell>,
    events: VecDeque<RelayEvent>,
    control: ControlReassembler,
}

impl RelayCircuit {
    fn with_keys(back_circ_id: u32, keys: &CircuitKeys) -> Self {
        RelayCircuit {
            back_circ_id,
            hop: RelayHop::new(keys),
            window: CircuitWindow::default(),
            next_circ_id: None,
            extending: false,
            relay_early_seen: 0,
            streams: BTreeMap::new(),
            control: ControlReassembler::default(),
            destroyed: false,
            back: VecDeque::new(),
            forward: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Answers a CREATE_FAST or CREATE2 cell. On error the caller answers
    /// with DESTROY (reason PROTOCOL) and no circuit exists.
    pub fn accept_create(
        cell: &RawCell,
        ntor_keys: &[NtorRelayKey],
    ) -> Result<RelayCircuit, CircuitError> {
        let (reply, keys) = match cell.command {
            command::CREATE_FAST => {
                let x = create_fast_x(cell)?;
                let (reply, keys) = create_fast::server(&x, &random_bytes()?)?;
                (
                    RawCell::new(cell.circ_id, command::CREATED_FAST, reply),
                    keys,
                )
            }
            command::CREATE2 => {
                let create = Create2::from_cell(cell)?;
                if create.handshake_type != handshake_type::NTOR {
                    return Err(CircuitError::Handshake(
                        crate::crypto::HandshakeError::BadRequest,
                    ));
                }
                let (reply, keys) = ntor::server(ntor_keys, &create.handshake, random_bytes()?)?;
                (Created2 { handshake: reply }.to_cell(cell.circ_id)?, keys)
            }
            _ => return Err(unexpected("CREATE command")),
        };
        let mut circuit = RelayCircuit::with_keys(cell.circ_id, &keys);
        circuit.back.push_back(reply);
        Ok(circuit)
    }

    pub fn back_circ_id(&self) -> u32 {
        self.back_circ_id
    }

    pub fn next_circ_id(&self) -> Option<u32> {
        self.next_circ_id
    }

    pub fn is_destroyed(&self) -> bool {
        self.destroyed
    }

    pub fn poll_cell_back(&mut self) -> Option<RawCell> {
        self.back.pop_front()
    }

    pub fn poll_cell_forward(&mut self) -> Option<RawCell> {
        self.forward.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<RelayEvent> {
        self.events.pop_front()
    }

    /// A cell from the client side (RELAY, RELAY_EARLY or DESTROY).
    pub fn handle_cell_from_back(&mut self, cell: RawCell) -> Result<(), CircuitError> {
        if self.destroyed {
            return Err(CircuitError::Destroyed);
        }
        let result = self.process_back(cell);
        if result.is_err() && !self.destroyed {
            self.destroy(destroy_reason::PROTOCOL);
        }
        result
    }

    fn process_back(&mut self, cell: RawCell) -> Result<(), CircuitError> {
        match cell.command {
            command::DESTROY => {
                self.teardown(destroy_reason::DESTROYED, false);
                Ok(())
            }
            command::RELAY | command::RELAY_EARLY => {
                let early = cell.command == command::RELAY_EARLY;
                if early {
                    self.relay_early_seen = self.relay_early_seen.saturating_add(1);
                    if self.relay_early_seen > MAX_RELAY_EARLY {
                        return Err(unexpected("more than 8 RELAY_EARLY cells"));
                    }
                }
                let mut body: RelayBody = cell
                    .body
                    .as_slice()
                    .try_into()
                    .map_err(|_| unexpected("relay size"))?;
                match self.hop.decrypt_outbound(&mut body) {
                    Some(digest) => {
                        self.handle_recognized(RelayCell::decode(&body)?, digest, early)
                    }
                    None => {
                        let next = self
                            .next_circ_id
                            .ok_or(unexpected("unrecognized cell at the last hop"))?;
                        self.forward
                            .push_back(RawCell::new(next, cell.command, body.to_vec()));
                        Ok(())
                    }
                }
            }
            _ => Err(unexpected("cell command on an open circuit")),
        }
    }

    fn handle_recognized(
        &mut self,
        msg: RelayCell,
        digest: [u8; 20],
        early: bool,
    ) -> Result<(), CircuitError> {
        let stream_id = msg.stream_id;
        match msg.command {
            relay_command::EXTEND2 => {
                // tor-spec §5.6: EXTEND2 must come in RELAY_EARLY.
                if !early || self.next_circ_id.is_some() || self.extending || stream_id != 0 {
                    return Err(unexpected("EXTEND2"));
                }
                let extend = Extend2::decode(&msg.data)?;
                self.extending = true;
                self.events.push_back(RelayEvent::Extend(extend));
            }
            relay_command::BEGIN | relay_command::BEGIN_DIR => {
                if stream_id == 0 || self.streams.contains_key(&stream_id) {
                    return Err(unexpected("BEGIN stream id"));
                }
                let target = if msg.command == relay_command::BEGIN {
                    let b = Begin::decode(&msg.data)?;
                    StreamTarget::Tcp {
                        host: b.host,
                        port: b.port,
                    }
                } else {
                    StreamTarget::Directory
                };
                self.streams.insert(
                    stream_id,
                    ExitStream {
                        window: StreamWindow::default(),
                        connected: false,
                        pending_end: None,
                        to_send: VecDeque::new(),
                        writable_reported: true,
                    },
                );
                self.events
                    .push_back(RelayEvent::Begin { stream_id, target });
            }
            relay_command::DATA => {
                if self
                    .window
                    .on_data_received()
                    .map_err(|_| unexpected("DATA past the circuit window"))?
                {
                    let sendme = Sendme::V1 { digest };
                    self.originate(RelayCell::new(relay_command::SENDME, 0, sendme.encode()))?;
                }
                if let Some(stream) = self.streams.get_mut(&stream_id) {
                    if !stream.connected {
                        return Err(unexpected("DATA before CONNECTED"));
                    }
                    let due = stream
                        .window
                        .on_data_received()
                        .map_err(|_| unexpected("DATA past the stream window"))?;
                    self.events.push_back(RelayEvent::StreamData {
                        stream_id,
                        data: msg.data,
                    });
                    if due {
                        self.originate(RelayCell::new(
                            relay_command::SENDME,
                            stream_id,
                            Vec::new(),
                        ))?;
                    }
                }
            }
            relay_command::END if self.streams.remove(&stream_id).is_some() => {
                self.events.push_back(RelayEvent::StreamEnded {
                    stream_id,
                    reason: end_reason_of(&msg.data),
                });
            }
            // END for a stream we already closed.
            relay_command::END => {}
            relay_command::SENDME if stream_id == 0 => {
                let digest = match Sendme::decode(&msg.data)? {
                    Sendme::V1 { digest } => Some(digest),
                    Sendme::V0 => None,
                };
                self.window
                    .on_sendme(digest.as_ref())
                    .map_err(|_| unexpected("circuit SENDME"))?;
                self.flush_all()?;
            }
            relay_command::SENDME => {
                if let Some(s) = self.streams.get_mut(&stream_id) {
                    s.window
                        .on_sendme()
                        .map_err(|_| unexpected("stream SENDME"))?;
                    self.flush_stream(stream_id)?;
                }
            }
            relay_command::TRUNCATE => {
                if let Some(next) = self.next_circ_id.take() {
                    self.forward
                        .push_back(destroy_cell(next, destroy_reason::REQUESTED));
                }
                self.extending = false;
                self.originate(RelayCell::new(
                    relay_command::TRUNCATED,
                    0,
                    vec![destroy_reason::REQUESTED],
                ))?;
            }
            relay_command::DROP => {}
            c if relay_command::is_peersm_control(c) && stream_id == 0 => {
                if let Some(message) = self.control.push(c, &msg.data)? {
                    self.events.push_back(RelayEvent::Control(message));
                }
            }
            // Commands we do not serve get an END on their stream, or are dropped.
            _ if stream_id != 0 => {
                self.originate(RelayCell::new(
                    relay_command::END,
                    stream_id,
                    vec![end_reason::TORPROTOCOL],
                ))?;
            }
            _ => {}
        }
        Ok(())
    }

    /// The next hop answered our CREATE2 on `next_circ_id`: tell the client.
    pub fn next_hop_created(
        &mut self,
        next_circ_id: u32,
        created: Created2,
    ) -> Result<(), CircuitError> {
        if !self.extending {
            return Err(unexpected("CREATED2 without EXTEND2"));
        }
        self.extending = false;
        self.next_circ_id = Some(next_circ_id);
        self.originate(RelayCell::new(
            relay_command::EXTENDED2,
            0,
            created.encode()?,
        ))
    }

    /// Extending failed (no channel, or the next hop refused): TRUNCATED.
    pub fn extend_failed(&mut self, reason: u8) -> Result<(), CircuitError> {
        self.extending = false;
        self.originate(RelayCell::new(relay_command::TRUNCATED, 0, vec![reason]))
    }

    /// A cell from the next hop (RELAY to pass back, or DESTROY).
    pub fn handle_cell_from_forward(&mut self, cell: RawCell) -> Result<(), CircuitError> {
        if self.destroyed {
            return Err(CircuitError::Destroyed);
        }
        match cell.command {
            command::RELAY => {
                let mut body: RelayBody = cell
                    .body
                    .as_slice()
                    .try_into()
                    .map_err(|_| unexpected("relay size"))?;
                self.hop.relay_inbound(&mut body);
                self.back.push_back(RawCell::new(
                    self.back_circ_id,
                    command::RELAY,
                    body.to_vec(),
                ));
                Ok(())
            }
            command::DESTROY => {
                // The rest of the circuit is gone: tell the client (tor-spec §5.4).
                let reason = cell.body.first().copied().unwrap_or(destroy_reason::NONE);
                self.next_circ_id = None;
                self.originate(RelayCell::new(relay_command::TRUNCATED, 0, vec![reason]))
            }
            _ => Err(unexpected("cell from the next hop")),
        }
    }

    pub fn stream_connected(
        &mut self,
        stream_id: u16,
        addr: Option<(IpAddr, u32)>,
    ) -> Result<(), CircuitError> {
        let stream = self
            .streams
            .get_mut(&stream_id)
            .ok_or(CircuitError::NoSuchStream(stream_id))?;
        stream.connected = true;
        self.originate(RelayCell::new(
            relay_command::CONNECTED,
            stream_id,
            Connected { addr }.encode(),
        ))?;
        self.flush_stream(stream_id)
    }

    pub fn stream_refused(&mut self, stream_id: u16, reason: u8) -> Result<(), CircuitError> {
        self.streams
            .remove(&stream_id)
            .ok_or(CircuitError::NoSuchStream(stream_id))?;
        self.originate(RelayCell::new(relay_command::END, stream_id, vec![reason]))
    }

    /// Queues bytes from the exit connection toward the client; returns how
    /// many were accepted.
    pub fn send(&mut self, stream_id: u16, data: &[u8]) -> Result<usize, CircuitError> {
        if self.destroyed {
            return Err(CircuitError::Destroyed);
        }
        let stream = self
            .streams
            .get_mut(&stream_id)
            .ok_or(CircuitError::NoSuchStream(stream_id))?;
        let n = STREAM_SEND_BUFFER
            .saturating_sub(stream.to_send.len())
            .min(data.len());
        stream.to_send.extend(data.iter().take(n));
        if n < data.len() {
            stream.writable_reported = false;
        }
        self.flush_stream(stream_id)?;
        Ok(n)
    }

    /// The exit connection closed: RELAY_END once the buffered data has
    /// been sent (windows permitting).
    pub fn end_stream(&mut self, stream_id: u16, reason: u8) -> Result<(), CircuitError> {
        let stream = self
            .streams
            .get_mut(&stream_id)
            .ok_or(CircuitError::NoSuchStream(stream_id))?;
        stream.pending_end = Some(reason);
        self.flush_stream(stream_id)
    }

    /// Bytes still waiting for window space on a stream.
    pub fn buffered(&self, stream_id: u16) -> usize {
        self.streams.get(&stream_id).map_or(0, |s| s.to_send.len())
    }

    pub fn destroy(&mut self, reason: u8) {
        if self.destroyed {
            return;
        }
        self.back.push_back(destroy_cell(self.back_circ_id, reason));
        self.teardown(reason, true);
    }

    fn teardown(&mut self, reason: u8, _by_us: bool) {
        self.destroyed = true;
        if let Some(next) = self.next_circ_id.take() {
            self.forward
                .push_back(destroy_cell(next, destroy_reason::DESTROYED));
        }
        for stream_id in std::mem::take(&mut self.streams).into_keys() {
            self.events.push_back(RelayEvent::StreamEnded {
                stream_id,
                reason: end_reason::DESTROY,
            });
        }
        self.events.push_back(RelayEvent::Destroyed { reason });
    }

    /// Sends a Peersm control message back to the client.
    pub fn send_control(&mut self, message: &ControlMessage) -> Result<(), CircuitError> {
        if self.destroyed {
            return Err(CircuitError::Destroyed);
        }
        for fragment in message.fragments()? {
            self.originate(RelayCell::new(message.command(), 0, fragment))?;
        }
        Ok(())
    }

    fn originate(&mut self, cell: RelayCell) -> Result<(), CircuitError> {
        self.originate_digest(cell).map(|_| ())
    }

    fn originate_digest(&mut self, cell: RelayCell) -> Result<[u8; 20], CircuitError> {
        let mut body = cell.encode(random_padding)?;
        let digest = self.hop.originate_inbound(&mut body);
        self.back.push_back(RawCell::new(
            self.back_circ_id,
            command::RELAY,
            body.to_vec(),
        ));
        Ok(digest)
    }

    fn flush_stream(&mut self, stream_id: u16) -> Result<(), CircuitError> {
        loop {
            let Some(stream) = self.streams.get_mut(&stream_id) else {
                return Ok(());
            };
            if !stream.connected
                || stream.to_send.is_empty()
                || !stream.window.can_package()
                || !self.window.can_package()
            {
                break;
            }
            let n = stream.to_send.len().min(RELAY_DATA_LEN);
            let chunk: Vec<u8> = stream.to_send.drain(..n).collect();
            stream.window.on_data_sent();
            let digest =
                self.originate_digest(RelayCell::new(relay_command::DATA, stream_id, chunk))?;
            self.window.on_data_sent(digest);
        }
        if let Some(stream) = self.streams.get_mut(&stream_id) {
            if let (true, Some(reason)) = (stream.to_send.is_empty(), stream.pending_end) {
                self.streams.remove(&stream_id);
                return self.originate(RelayCell::new(relay_command::END, stream_id, vec![reason]));
            }
            if !stream.writable_reported && stream.to_send.len() < STREAM_SEND_BUFFER / 2 {
                stream.writable_reported = true;
                self.events
                    .push_back(RelayEvent::StreamWritable { stream_id });
            }
        }
        Ok(())
    }

    fn flush_all(&mut self) -> Result<(), CircuitError> {
        let ids: Vec<u16> = self.streams.keys().copied().collect();
        for id in ids {
            self.flush_stream(id)?;
        }
        Ok(())
    }
}

fn unexpected(what: &'static str) -> CircuitError {
    CircuitError::Cell(crate::cell::CellError::Malformed {
        what,
        why: "not acceptable here",
    })
}
