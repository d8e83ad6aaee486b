//! One circuit hop at an onion router (tor-spec §5–7): answers CREATE_FAST
//! or CREATE2/ntor, peels its layer off outbound cells, acts on the ones it
//! recognizes (EXTEND2, BEGIN, BEGIN_DIR, DATA, END, SENDME, TRUNCATE,
//! Peersm control messages) and passes the rest to the next hop; adds its
//! layer to cells going back.
//!
//! Cells toward the client come out of `poll_cell_back`, cells toward the
//! next hop out of `poll_cell_forward`; what needs the rest of the router
//! or the platform (a link to the next hop, a service for a stream) is a
//! `RelayEvent`. The router (`crate::router`) owns these and moves their
//! cells between links.
//!
//! Teardown follows C tor (tor#40623, tor#40649): a DESTROY from either
//! side closes the whole circuit, and the other side is told DESTROYED,
//! never the reason we received; a circuit we close ourselves tells both
//! sides our reason. No TRUNCATED is sent for a lost next hop.

use std::collections::VecDeque;
use std::net::IpAddr;

use crate::cell::ordb::{db_end_reason, DbConnected, DbQuery};
use crate::cell::{ControlMessage, ControlReassembler};

use crate::cell::{
    command, create::create_fast_x, create::destroy_cell, destroy_reason, end_reason,
    handshake_type, relay_command, stream::end_reason_of, Begin, Connected, Create2, Created2,
    Extend2, RawCell, RelayCell, Sendme,
};
use crate::crypto::ntor::{self, NtorRelayKey};
use crate::crypto::relay_crypto::{RelayBody, RelayHop};
use crate::crypto::{create_fast, CircuitKeys};
use crate::rng::{random_bytes, KeystreamRng, Rng};

use super::flow::CircuitWindow;
use super::stream::{DbFraming, StreamCarrier, StreamNotice, Streams};
use super::{CircuitError, StreamTarget, MAX_RELAY_EARLY};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayEvent {
    /// The client asks us to extend: find or open a link to the relay
    /// named by `extend.link_specs`, send `extend.create` as CREATE2 on a
    /// new circuit id there, then call `next_hop_created` or
    /// `extend_failed`.
    Extend(Extend2),
    /// The client asks for a stream (an exit, a directory, a service):
    /// call `stream_connected` or `stream_refused`.
    Begin {
        stream_id: u16,
        target: StreamTarget,
    },
    /// Data from the client waits for `read`.
    StreamReadable {
        stream_id: u16,
    },
    StreamEnded {
        stream_id: u16,
        reason: u8,
    },
    /// `write` takes bytes again.
    StreamWritable {
        stream_id: u16,
    },
    /// The client asks this ORDB for a block (docs/PROTOCOL.md "ORDB"):
    /// answer with `db_connected` then the bytes, or `stream_refused`
    /// (a DB_END reason).
    DbQuery {
        stream_id: u16,
        query: DbQuery,
    },
    /// A Peersm control message from the client (docs/PROTOCOL.md "Mesh").
    Control(ControlMessage),
    /// The circuit is gone; DESTROYs for the sides still there are queued.
    Destroyed {
        reason: u8,
    },
}

pub struct RelayCircuit {
    back_circ_id: u32,
    hop: RelayHop,
    window: CircuitWindow,
    /// Circuit id on the link to the next hop, once extended.
    next_circ_id: Option<u32>,
    extending: bool,
    relay_early_seen: u8,
    streams: Streams,
    rng: KeystreamRng,
    destroyed: bool,
    back: VecDeque<RawCell>,
    forward: VecDeque<RawCell>,
    events: VecDeque<RelayEvent>,
    control: ControlReassembler,
}

impl RelayCircuit {
    fn with_keys(back_circ_id: u32, keys: &CircuitKeys, rng: KeystreamRng) -> Self {
        RelayCircuit {
            back_circ_id,
            hop: RelayHop::new(keys),
            window: CircuitWindow::default(),
            next_circ_id: None,
            extending: false,
            relay_early_seen: 0,
            streams: Streams::default(),
            rng,
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
        rng: &mut dyn Rng,
    ) -> Result<RelayCircuit, CircuitError> {
        let mut own_rng = KeystreamRng::seeded_from(rng)?;
        let (reply, keys) = match cell.command {
            command::CREATE_FAST => {
                let x = create_fast_x(cell)?;
                let y: [u8; 20] = random_bytes(&mut own_rng)?;
                let (reply, keys) = create_fast::server(&x, &y)?;
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
                let secret = random_bytes(&mut own_rng)?;
                let (reply, keys) = ntor::server(ntor_keys, &create.handshake, secret)?;
                (Created2 { handshake: reply }.to_cell(cell.circ_id)?, keys)
            }
            _ => return Err(unexpected("CREATE command")),
        };
        let mut circuit = RelayCircuit::with_keys(cell.circ_id, &keys, own_rng);
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

    /// Bytes queued in this hop's streams, both ways.
    pub fn queued_bytes(&self) -> usize {
        self.streams.queued()
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

    /// A cell from the client side (RELAY, RELAY_EARLY or DESTROY). A
    /// protocol violation destroys the circuit (both ways, reason
    /// PROTOCOL); the error says why.
    pub fn handle_cell_from_back(&mut self, cell: RawCell) -> Result<(), CircuitError> {
        if self.destroyed {
            return Err(CircuitError::Destroyed);
        }
        let result = self.process_back(cell).and_then(|()| self.flush_streams());
        if result.is_err() && !self.destroyed {
            self.destroy(destroy_reason::PROTOCOL);
        }
        result
    }

    fn process_back(&mut self, cell: RawCell) -> Result<(), CircuitError> {
        match cell.command {
            command::DESTROY => {
                // The client side is gone: nothing goes back; the next hop
                // hears DESTROYED, not the client's reason.
                self.close(None, Some(destroy_reason::DESTROYED));
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
                        // RELAY_EARLY stays RELAY_EARLY (tor-spec §5.6).
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
                if stream_id == 0 || self.streams.contains(stream_id) {
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
                if self.streams.insert(stream_id, 0, false) {
                    self.events
                        .push_back(RelayEvent::Begin { stream_id, target });
                } else {
                    self.originate(RelayCell::new(
                        relay_command::END,
                        stream_id,
                        vec![end_reason::RESOURCELIMIT],
                    ))?;
                }
            }
            relay_command::DB_QUERY => {
                if stream_id == 0 || self.streams.contains(stream_id) {
                    return Err(unexpected("DB_QUERY stream id"));
                }
                let refusal = match DbQuery::decode(&msg.data) {
                    Err(_) => Some(db_end_reason::BAD_QUERY),
                    Ok(query) => {
                        if self
                            .streams
                            .insert_db(stream_id, 0, false, DbFraming::default())
                        {
                            self.events
                                .push_back(RelayEvent::DbQuery { stream_id, query });
                            None
                        } else {
                            Some(db_end_reason::REFUSED)
                        }
                    }
                };
                if let Some(reason) = refusal {
                    self.originate(RelayCell::new(
                        relay_command::DB_END,
                        stream_id,
                        vec![reason],
                    ))?;
                }
            }
            relay_command::DATA | relay_command::DB_DATA => {
                if self
                    .window
                    .on_data_received()
                    .map_err(|_| unexpected("DATA past the circuit window"))?
                {
                    let sendme = Sendme::V1 { digest };
                    self.originate(RelayCell::new(relay_command::SENDME, 0, sendme.encode()))?;
                }
                // Data for a stream already closed is counted, then dropped.
                let delivered = if msg.command == relay_command::DATA {
                    self.streams.on_data(stream_id, 0, &msg.data)
                } else {
                    self.streams.on_db_data(stream_id, 0, &msg.data)
                };
                delivered.map_err(|_| {
                    unexpected("data before CONNECTED, past the stream window, or misframed")
                })?;
            }
            // END for a stream we already closed changes nothing.
            relay_command::END | relay_command::DB_END => {
                if let Some(reason) = self.streams.on_end(stream_id, end_reason_of(&msg.data)) {
                    self.events
                        .push_back(RelayEvent::StreamEnded { stream_id, reason });
                }
            }
            // Only authenticated circuit SENDMEs (prop 289; the consensus
            // asks FlowCtrl=1): a v0 one would acknowledge cells unseen.
            relay_command::SENDME if stream_id == 0 => {
                let Sendme::V1 { digest } = Sendme::decode(&msg.data)? else {
                    return Err(unexpected("unauthenticated circuit SENDME"));
                };
                self.window
                    .on_sendme(&digest)
                    .map_err(|_| unexpected("circuit SENDME"))?;
            }
            relay_command::SENDME | relay_command::DB_SENDME if stream_id != 0 => {
                self.streams
                    .on_sendme(stream_id)
                    .map_err(|_| unexpected("stream SENDME"))?;
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

    /// The router sent the EXTEND2's CREATE2 to the next hop as circuit
    /// `next_circ_id` on its link: a DESTROY goes there if we close first.
    pub fn extend_sent(&mut self, next_circ_id: u32) -> Result<(), CircuitError> {
        if !self.extending || self.next_circ_id.is_some() {
            return Err(unexpected("CREATE2 sent without EXTEND2"));
        }
        self.next_circ_id = Some(next_circ_id);
        Ok(())
    }

    /// The next hop answered our CREATE2: tell the client (EXTENDED2).
    pub fn next_hop_created(&mut self, created: Created2) -> Result<(), CircuitError> {
        if !self.extending || self.next_circ_id.is_none() {
            return Err(unexpected("CREATED2 without EXTEND2"));
        }
        self.extending = false;
        self.originate(RelayCell::new(
            relay_command::EXTENDED2,
            0,
            created.encode()?,
        ))
    }

    /// Whether an EXTEND2 awaits the next hop's answer.
    pub fn is_extending(&self) -> bool {
        self.extending
    }

    /// Extending failed (no link to the next hop, or it refused): the
    /// circuit is destroyed with `reason`, as C tor does.
    pub fn extend_failed(&mut self, reason: u8) {
        self.extending = false;
        self.destroy(reason);
    }

    /// A cell from the next hop: RELAY to pass back; DESTROY closes the
    /// circuit; anything else (RELAY_EARLY toward the client above all,
    /// tor-spec §5.6) is a protocol violation that closes it both ways.
    pub fn handle_cell_from_forward(&mut self, cell: RawCell) -> Result<(), CircuitError> {
        if self.destroyed {
            return Err(CircuitError::Destroyed);
        }
        match cell.command {
            command::RELAY => {
                let mut body: RelayBody = match cell.body.as_slice().try_into() {
                    Ok(b) => b,
                    Err(_) => {
                        self.destroy(destroy_reason::PROTOCOL);
                        return Err(unexpected("relay size"));
                    }
                };
                self.hop.relay_inbound(&mut body);
                self.back.push_back(RawCell::new(
                    self.back_circ_id,
                    command::RELAY,
                    body.to_vec(),
                ));
                Ok(())
            }
            command::DESTROY => {
                self.next_circ_id = None;
                self.close(Some(destroy_reason::DESTROYED), None);
                Ok(())
            }
            _ => {
                self.destroy(destroy_reason::PROTOCOL);
                Err(unexpected("cell from the next hop"))
            }
        }
    }

    /// The link to the next hop is gone: the client hears CHANNEL_CLOSED.
    pub fn next_link_lost(&mut self) {
        if self.destroyed {
            return;
        }
        self.next_circ_id = None;
        self.extending = false;
        self.close(Some(destroy_reason::CHANNEL_CLOSED), None);
    }

    /// The link to the client is gone: the next hop hears CHANNEL_CLOSED.
    pub fn back_link_lost(&mut self) {
        if !self.destroyed {
            self.close(None, Some(destroy_reason::CHANNEL_CLOSED));
        }
    }

    pub fn stream_connected(
        &mut self,
        stream_id: u16,
        addr: Option<(IpAddr, u32)>,
    ) -> Result<(), CircuitError> {
        let stream = self
            .streams
            .get_mut(stream_id)
            .ok_or(CircuitError::NoSuchStream(stream_id))?;
        stream.open = true;
        self.originate(RelayCell::new(
            relay_command::CONNECTED,
            stream_id,
            Connected { addr }.encode(),
        ))?;
        self.flush_streams()
    }

    /// Refuses a stream: END (DB_END for an ORDB stream) with `reason`.
    pub fn stream_refused(&mut self, stream_id: u16, reason: u8) -> Result<(), CircuitError> {
        let stream = self
            .streams
            .remove(stream_id)
            .ok_or(CircuitError::NoSuchStream(stream_id))?;
        self.originate(RelayCell::new(
            stream.end_command(),
            stream_id,
            vec![reason],
        ))
    }

    /// Answers a DB_QUERY: DB_CONNECTED, after which bytes written go out
    /// as DB_DATA from `position` with `check` (docs/PROTOCOL.md "ORDB").
    pub fn db_connected(
        &mut self,
        stream_id: u16,
        answer: &DbConnected,
        position: u32,
        check: [u8; 4],
    ) -> Result<(), CircuitError> {
        let fragments = answer.fragments()?;
        let stream = self
            .streams
            .get_mut(stream_id)
            .ok_or(CircuitError::NoSuchStream(stream_id))?;
        let framing = stream
            .db
            .as_mut()
            .ok_or(CircuitError::NoSuchStream(stream_id))?;
        framing.send_position = position;
        framing.send_check = check;
        stream.open = true;
        for f in fragments {
            self.originate(RelayCell::new(relay_command::DB_CONNECTED, stream_id, f))?;
        }
        self.flush_streams()
    }

    /// Queues bytes toward the client; returns how many were taken (fewer
    /// when the stream's queue is full: offer the rest after
    /// `StreamWritable`, and stop reading the source meanwhile).
    pub fn write(&mut self, stream_id: u16, data: &[u8]) -> Result<usize, CircuitError> {
        if self.destroyed {
            return Err(CircuitError::Destroyed);
        }
        self.with_streams(|streams, me| streams.write_and_flush(stream_id, data, me))
    }

    /// Bytes `write` would take now.
    pub fn room(&self, stream_id: u16) -> usize {
        self.streams.room(stream_id)
    }

    /// Takes up to `max` bytes the client sent on a stream; stream SENDMEs
    /// go out for what was taken.
    pub fn read(&mut self, stream_id: u16, max: usize) -> Result<Vec<u8>, CircuitError> {
        if self.destroyed {
            return Err(CircuitError::Destroyed);
        }
        self.with_streams(|streams, me| streams.read_and_ack(stream_id, max, me))
    }

    /// The source closed: RELAY_END with `reason` once the queued bytes
    /// are sent (windows permitting).
    pub fn end_stream(&mut self, stream_id: u16, reason: u8) -> Result<(), CircuitError> {
        if !self.streams.end_after_data(stream_id, reason) {
            return Err(CircuitError::NoSuchStream(stream_id));
        }
        self.flush_streams()
    }

    /// Closes the circuit ourselves: both sides hear `reason`.
    pub fn destroy(&mut self, reason: u8) {
        if !self.destroyed {
            self.close(Some(reason), Some(reason));
        }
    }

    /// Marks the circuit destroyed; DESTROY toward the client with
    /// `back`, toward the next hop (if any) with `forward`.
    fn close(&mut self, back: Option<u8>, forward: Option<u8>) {
        self.destroyed = true;
        self.extending = false;
        if let Some(reason) = back {
            self.back.push_back(destroy_cell(self.back_circ_id, reason));
        }
        if let (Some(next), Some(reason)) = (self.next_circ_id.take(), forward) {
            self.forward.push_back(destroy_cell(next, reason));
        }
        for stream_id in self.streams.drain() {
            self.events.push_back(RelayEvent::StreamEnded {
                stream_id,
                reason: end_reason::DESTROY,
            });
        }
        let reason = back.or(forward).unwrap_or(destroy_reason::NONE);
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

    /// Sends any relay message toward the client from this hop (tests of
    /// what clients accept).
    #[cfg(test)]
    pub(crate) fn originate_any(&mut self, cell: RelayCell) -> Result<(), CircuitError> {
        self.originate(cell)
    }

    fn originate(&mut self, cell: RelayCell) -> Result<(), CircuitError> {
        self.originate_digest(cell).map(|_| ())
    }

    fn originate_digest(&mut self, cell: RelayCell) -> Result<[u8; 20], CircuitError> {
        let rng = &mut self.rng;
        let mut body = cell.encode(|pad| {
            let _ = rng.fill(pad);
        })?;
        let digest = self.hop.originate_inbound(&mut body);
        self.back.push_back(RawCell::new(
            self.back_circ_id,
            command::RELAY,
            body.to_vec(),
        ));
        Ok(digest)
    }
}

/// A hop carries its streams' cells toward the client, under its one
/// circuit window.
impl StreamCarrier for RelayCircuit {
    fn window_open(&self, _hop: usize) -> bool {
        self.window.can_package()
    }

    fn send_cell(&mut self, _hop: usize, cell: RelayCell) -> Result<[u8; 20], CircuitError> {
        self.originate_digest(cell)
    }

    fn data_sent(&mut self, _hop: usize, digest: [u8; 20]) {
        self.window.on_data_sent(digest);
    }

    fn streams(&mut self) -> &mut Streams {
        &mut self.streams
    }

    fn notice(&mut self, notice: StreamNotice) {
        self.events.push_back(match notice {
            StreamNotice::Readable { stream_id } => RelayEvent::StreamReadable { stream_id },
            StreamNotice::Writable { stream_id } => RelayEvent::StreamWritable { stream_id },
            StreamNotice::Ended { stream_id, reason } => {
                RelayEvent::StreamEnded { stream_id, reason }
            }
        });
    }
}

fn unexpected(what: &'static str) -> CircuitError {
    CircuitError::Cell(crate::cell::CellError::Malformed {
        what,
        why: "not acceptable here",
    })
}
