//! The onion proxy's circuit: builds hops with CREATE_FAST or ntor
//! (CREATE2, then EXTEND2 in RELAY_EARLY cells), opens streams with BEGIN or
//! BEGIN_DIR, moves DATA under circuit and stream windows, and answers with
//! authenticated SENDMEs. Any protocol violation destroys the circuit with
//! reason PROTOCOL and nothing else.

use std::collections::{BTreeMap, VecDeque};

use crate::cell::ordb::{DbConnected, DbQuery};

use crate::cell::{
    command, create::create_fast_cell, create::created_fast_reply, create::destroy_cell,
    create::destroy_reason as read_destroy_reason, destroy_reason, end_reason, handshake_type,
    relay_command, stream::end_reason_of, Begin, Connected, Create2, Created2, Extend2, LinkSpec,
    RawCell, RelayCell, Sendme,
};
use crate::crypto::create_fast;
use crate::crypto::ntor::NtorClient;
use crate::crypto::relay_crypto::ClientCircuitCrypto;
use crate::rng::{random_bytes, KeystreamRng, Rng};

use super::flow::CircuitWindow;
use super::stream::{DbFraming, StreamCarrier, StreamNotice, Streams};
use super::{CircuitError, MAX_RELAY_EARLY};

/// What a stream connects to at the exit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamTarget {
    /// RELAY_BEGIN to host:port.
    Tcp { host: String, port: u16 },
    /// RELAY_BEGIN_DIR: the hop's own directory service.
    Directory,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CircuitEvent {
    /// A hop answered; the circuit now has `hops` hops.
    Extended {
        hops: usize,
    },
    /// A TRUNCATED arrived: hops after `hops` are gone.
    Truncated {
        hops: usize,
        reason: u8,
    },
    StreamConnected {
        stream_id: u16,
    },
    /// An ORDB answered our DB_QUERY; the block's bytes follow as stream
    /// data (docs/PROTOCOL.md "ORDB").
    DbConnected {
        stream_id: u16,
        answer: DbConnected,
    },
    /// Data waits for `read` (said once until the stream's queue empties).
    StreamReadable {
        stream_id: u16,
    },
    /// The stream is closed (END received, or the circuit died).
    StreamEnded {
        stream_id: u16,
        reason: u8,
    },
    /// `write` takes bytes again after a short write.
    StreamWritable {
        stream_id: u16,
    },
    /// A Peersm control message from hop `hop` (docs/PROTOCOL.md "Mesh").
    Control {
        hop: usize,
        message: crate::cell::ControlMessage,
    },
    /// The circuit is gone. `by_us` when we sent the DESTROY.
    Destroyed {
        reason: u8,
        by_us: bool,
    },
}

enum Pending {
    Idle,
    Fast { x: [u8; 20] },
    Ntor { client: NtorClient },
}

pub struct ClientCircuit {
    circ_id: u32,
    crypto: ClientCircuitCrypto,
    windows: Vec<CircuitWindow>,
    pending: Pending,
    destroyed: Option<u8>,
    pub(super) relay_early_left: u8,
    streams: Streams,
    /// Padding and handshake secrets (seeded from the injected source).
    rng: KeystreamRng,
    outbox: VecDeque<RawCell>,
    events: VecDeque<CircuitEvent>,
    /// Control messages being reassembled, by hop.
    control: BTreeMap<usize, crate::cell::ControlReassembler>,
}

impl ClientCircuit {
    fn empty(circ_id: u32, rng: &mut dyn Rng) -> Result<Self, CircuitError> {
        Ok(ClientCircuit {
            circ_id,
            crypto: ClientCircuitCrypto::default(),
            windows: Vec::new(),
            pending: Pending::Idle,
            destroyed: None,
            relay_early_left: MAX_RELAY_EARLY,
            streams: Streams::default(),
            rng: KeystreamRng::seeded_from(rng)?,
            outbox: VecDeque::new(),
            events: VecDeque::new(),
            control: BTreeMap::new(),
        })
    }

    /// First hop with CREATE_FAST (tor-spec §5.1.3): no onion key needed,
    /// secrecy comes from the link's TLS.
    pub fn create_fast(circ_id: u32, rng: &mut dyn Rng) -> Result<Self, CircuitError> {
        let mut c = ClientCircuit::empty(circ_id, rng)?;
        let x = random_bytes::<20>(&mut c.rng)?;
        c.outbox.push_back(create_fast_cell(circ_id, &x));
        c.pending = Pending::Fast { x };
        Ok(c)
    }

    /// First hop with CREATE2/ntor to the relay with RSA identity digest
    /// `relay_id` and ntor onion key `onion_key`.
    pub fn create_ntor(
        circ_id: u32,
        relay_id: [u8; 20],
        onion_key: [u8; 32],
        rng: &mut dyn Rng,
    ) -> Result<Self, CircuitError> {
        let mut c = ClientCircuit::empty(circ_id, rng)?;
        let secret = random_bytes(&mut c.rng)?;
        let (client, onionskin) = NtorClient::start(relay_id, onion_key, secret);
        let create = Create2 {
            handshake_type: handshake_type::NTOR,
            handshake: onionskin,
        };
        c.outbox.push_back(create.to_cell(circ_id)?);
        c.pending = Pending::Ntor { client };
        Ok(c)
    }

    pub fn circ_id(&self) -> u32 {
        self.circ_id
    }

    pub fn hop_count(&self) -> usize {
        self.crypto.hop_count()
    }

    pub fn is_destroyed(&self) -> bool {
        self.destroyed.is_some()
    }

    /// True while a CREATE or EXTEND awaits its answer.
    pub fn is_pending(&self) -> bool {
        !matches!(self.pending, Pending::Idle)
    }

    pub fn open_streams(&self) -> usize {
        self.streams.len()
    }

    /// Bytes queued in this circuit's streams, both ways.
    pub fn queued_bytes(&self) -> usize {
        self.streams.queued()
    }

    pub fn poll_cell(&mut self) -> Option<RawCell> {
        self.outbox.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<CircuitEvent> {
        self.events.pop_front()
    }

    fn check_usable(&self) -> Result<(), CircuitError> {
        if self.destroyed.is_some() {
            return Err(CircuitError::Destroyed);
        }
        if self.is_pending() {
            return Err(CircuitError::HandshakeInProgress);
        }
        if self.hop_count() == 0 {
            return Err(CircuitError::NoHops);
        }
        Ok(())
    }

    /// Extends the circuit by one hop with EXTEND2/ntor (tor-spec §5.1.2).
    /// `link_specs` should name the relay's address and identities.
    pub fn extend_ntor(
        &mut self,
        link_specs: Vec<LinkSpec>,
        relay_id: [u8; 20],
        onion_key: [u8; 32],
    ) -> Result<(), CircuitError> {
        self.check_usable()?;
        if self.relay_early_left == 0 {
            return Err(CircuitError::NoRelayEarlyLeft);
        }
        let secret = random_bytes(&mut self.rng)?;
        let (client, onionskin) = NtorClient::start(relay_id, onion_key, secret);
        let extend = Extend2 {
            link_specs,
            create: Create2 {
                handshake_type: handshake_type::NTOR,
                handshake: onionskin,
            },
        };
        let last = self.hop_count() - 1;
        self.send_relay(
            last,
            RelayCell::new(relay_command::EXTEND2, 0, extend.encode()?),
            true,
        )?;
        self.pending = Pending::Ntor { client };
        Ok(())
    }

    /// Sends a Peersm control message to the last hop.
    pub fn send_control(
        &mut self,
        message: &crate::cell::ControlMessage,
    ) -> Result<(), CircuitError> {
        self.check_usable()?;
        let hop = self.hop_count() - 1;
        for fragment in message.fragments()? {
            self.send_relay(hop, RelayCell::new(message.command(), 0, fragment), false)?;
        }
        Ok(())
    }

    /// Sends any relay message to the last hop, as a misbehaving client
    /// would: tests of what relays accept.
    #[cfg(test)]
    pub(crate) fn send_any_to_last_hop(&mut self, cell: RelayCell) -> Result<(), CircuitError> {
        let hop = self.hop_count() - 1;
        self.send_relay(hop, cell, false).map(|_| ())
    }

    /// Opens a stream at the last hop; returns its id. Data may be queued
    /// with `send` at once; it goes out after CONNECTED.
    pub fn begin(&mut self, target: StreamTarget) -> Result<u16, CircuitError> {
        self.check_usable()?;
        let stream_id = self.streams.free_id().ok_or(CircuitError::TooManyStreams)?;
        let hop = self.hop_count() - 1;
        let cell = match &target {
            StreamTarget::Tcp { host, port } => {
                let begin = Begin {
                    host: host.clone(),
                    port: *port,
                    flags: 0,
                };
                RelayCell::new(relay_command::BEGIN, stream_id, begin.encode())
            }
            StreamTarget::Directory => {
                RelayCell::new(relay_command::BEGIN_DIR, stream_id, Vec::new())
            }
        };
        self.send_relay(hop, cell, false)?;
        self.streams.insert(stream_id, hop, false);
        Ok(stream_id)
    }

    /// Asks the last hop (an ORDB) for a block: opens an ORDB stream with
    /// DB_QUERY; the answer comes as `DbConnected`, then stream data from
    /// `query.offset`, then `StreamEnded` with a DB_END reason.
    pub fn begin_db(&mut self, query: &DbQuery) -> Result<u16, CircuitError> {
        self.check_usable()?;
        let stream_id = self.streams.free_id().ok_or(CircuitError::TooManyStreams)?;
        let hop = self.hop_count() - 1;
        let cell = RelayCell::new(relay_command::DB_QUERY, stream_id, query.encode());
        self.send_relay(hop, cell, false)?;
        // Every DB_DATA must name this file and block (a relay that
        // spliced another stream in is caught at its first cell).
        let framing = DbFraming {
            recv_position: query.offset,
            recv_check: Some(crate::cell::ordb::block_check(
                &query.hash_name,
                query.block,
            )),
            ..Default::default()
        };
        self.streams.insert_db(stream_id, hop, false, framing);
        Ok(stream_id)
    }

    /// Queues bytes on a stream; returns how many were taken (fewer than
    /// offered when its queue is full: offer the rest after
    /// `StreamWritable`). Bytes written before CONNECTED leave after it.
    pub fn write(&mut self, stream_id: u16, data: &[u8]) -> Result<usize, CircuitError> {
        if self.destroyed.is_some() {
            return Err(CircuitError::Destroyed);
        }
        self.with_streams(|streams, me| streams.write_and_flush(stream_id, data, me))
    }

    /// Bytes `write` would take now on this stream.
    pub fn room(&self, stream_id: u16) -> usize {
        self.streams.room(stream_id)
    }

    /// Takes up to `max` bytes the stream received; sends the stream
    /// SENDMEs the reader has now earned (tor-spec §7.4).
    pub fn read(&mut self, stream_id: u16, max: usize) -> Result<Vec<u8>, CircuitError> {
        if self.destroyed.is_some() {
            return Err(CircuitError::Destroyed);
        }
        self.with_streams(|streams, me| streams.read_and_ack(stream_id, max, me))
    }

    /// Closes a stream with RELAY_END (reason DONE for a normal close):
    /// after the bytes already written, at once when there are none; what
    /// it received and was not read is dropped.
    pub fn end_stream(&mut self, stream_id: u16, reason: u8) -> Result<(), CircuitError> {
        let remote_ended = self.streams.remote_ended(stream_id);
        if self.destroyed.is_none() && !remote_ended && self.streams.has_unsent(stream_id) {
            // Bytes the writer gave still go out; END follows them.
            self.streams.end_after_data(stream_id, reason);
            return self.flush_streams();
        }
        let stream = self
            .streams
            .remove(stream_id)
            .ok_or(CircuitError::NoSuchStream(stream_id))?;
        if self.destroyed.is_none() && !remote_ended {
            self.streams.closed_by_us(stream_id);
            self.send_relay(
                stream.hop,
                RelayCell::new(stream.end_command(), stream_id, vec![reason]),
                false,
            )?;
        }
        Ok(())
    }

    /// Tears the circuit down with DESTROY.
    pub fn destroy(&mut self, reason: u8) {
        if self.destroyed.is_some() {
            return;
        }
        self.outbox.push_back(destroy_cell(self.circ_id, reason));
        self.mark_destroyed(reason, true);
    }

    fn mark_destroyed(&mut self, reason: u8, by_us: bool) {
        self.destroyed = Some(reason);
        self.pending = Pending::Idle;
        for stream_id in self.streams.drain() {
            self.events.push_back(CircuitEvent::StreamEnded {
                stream_id,
                reason: end_reason::DESTROY,
            });
        }
        self.events
            .push_back(CircuitEvent::Destroyed { reason, by_us });
    }

    fn send_relay(
        &mut self,
        hop: usize,
        cell: RelayCell,
        early: bool,
    ) -> Result<[u8; 20], CircuitError> {
        let relay_command = cell.command;
        let rng = &mut self.rng;
        let mut body = cell.encode(|pad| {
            // Unpredictable padding (tor-spec §6.1); zeros if it fails.
            let _ = rng.fill(pad);
        })?;
        let digest = self
            .crypto
            .encrypt_outbound(&mut body, hop)
            .map_err(|_| CircuitError::NoHops)?;
        // As C tor: RELAY_EARLY for extends and for any cell past the
        // first hop while some are left, so the first hop cannot tell an
        // extend (and so the circuit's length) from other cells. Not for
        // Peersm control messages: a circuit through tabs asks FIND_NODE
        // between its extends, and needs its RELAY_EARLY for them.
        let early = (early
            || (hop != 0 && !crate::cell::relay_command::is_peersm_control(relay_command)))
            && self.relay_early_left > 0;
        if early {
            self.relay_early_left -= 1;
        }
        let cmd = if early {
            command::RELAY_EARLY
        } else {
            command::RELAY
        };
        self.outbox
            .push_back(RawCell::new(self.circ_id, cmd, body.to_vec()));
        Ok(digest)
    }

    /// Feeds a cell the channel received for this circuit. Protocol
    /// violations destroy the circuit (DESTROY with PROTOCOL is queued);
    /// the error says why.
    pub fn handle_cell(&mut self, cell: RawCell) -> Result<(), CircuitError> {
        if self.destroyed.is_some() {
            return Err(CircuitError::Destroyed);
        }
        let result = self.process_cell(cell).and_then(|()| self.flush_streams());
        if let Err(e) = &result {
            if self.destroyed.is_none() {
                tracing::debug!(circ_id = self.circ_id, "destroying circuit: {e}");
                self.destroy(destroy_reason::PROTOCOL);
            }
        }
        result
    }

    fn process_cell(&mut self, cell: RawCell) -> Result<(), CircuitError> {
        match cell.command {
            command::DESTROY => {
                let reason = read_destroy_reason(&cell).unwrap_or(destroy_reason::NONE);
                self.mark_destroyed(reason, false);
                Ok(())
            }
            command::CREATED_FAST => {
                let Pending::Fast { x } = std::mem::replace(&mut self.pending, Pending::Idle)
                else {
                    return Err(unexpected("CREATED_FAST"));
                };
                let keys = create_fast::client_finish(&x, &created_fast_reply(&cell)?)?;
                self.add_hop(&keys);
                Ok(())
            }
            command::CREATED2 => {
                let Pending::Ntor { client } = std::mem::replace(&mut self.pending, Pending::Idle)
                else {
                    return Err(unexpected("CREATED2"));
                };
                if self.hop_count() != 0 {
                    return Err(unexpected("CREATED2 after the first hop"));
                }
                let keys = client.finish(&Created2::from_cell(&cell)?.handshake)?;
                self.add_hop(&keys);
                Ok(())
            }
            command::RELAY => self.process_relay(cell),
            // Clients never accept RELAY_EARLY from relays (tor-spec §5.6).
            _ => Err(unexpected("cell command")),
        }
    }

    fn add_hop(&mut self, keys: &crate::crypto::CircuitKeys) {
        self.crypto.add_hop(keys);
        self.windows.push(CircuitWindow::default());
        self.events.push_back(CircuitEvent::Extended {
            hops: self.hop_count(),
        });
    }

    fn process_relay(&mut self, cell: RawCell) -> Result<(), CircuitError> {
        let mut body: crate::crypto::relay_crypto::RelayBody = cell
            .body
            .as_slice()
            .try_into()
            .map_err(|_| unexpected("relay cell size"))?;
        let (hop, digest) = self
            .crypto
            .decrypt_inbound(&mut body)
            .map_err(|_| unexpected("unrecognized relay cell"))?;
        let msg = RelayCell::decode(&body)?;
        let stream_id = msg.stream_id;
        match msg.command {
            relay_command::EXTENDED2 => {
                let Pending::Ntor { client } = std::mem::replace(&mut self.pending, Pending::Idle)
                else {
                    return Err(unexpected("EXTENDED2"));
                };
                if hop + 1 != self.hop_count() {
                    return Err(unexpected("EXTENDED2 from a middle hop"));
                }
                let keys = client.finish(&Created2::decode(&msg.data)?.handshake)?;
                self.add_hop(&keys);
            }
            relay_command::TRUNCATED => {
                let reason = msg.data.first().copied().unwrap_or(destroy_reason::NONE);
                self.crypto.truncate(hop + 1);
                self.windows.truncate(hop + 1);
                self.pending = Pending::Idle;
                for stream_id in self.streams.remove_beyond(hop) {
                    self.events.push_back(CircuitEvent::StreamEnded {
                        stream_id,
                        reason: end_reason::DESTROY,
                    });
                }
                self.events.push_back(CircuitEvent::Truncated {
                    hops: hop + 1,
                    reason,
                });
            }
            relay_command::SENDME if stream_id == 0 => {
                let sendme = Sendme::decode(&msg.data)?;
                let digest = match &sendme {
                    Sendme::V1 { digest } => digest,
                    // The consensus requires FlowCtrl=1: relays authenticate.
                    Sendme::V0 => return Err(unexpected("unauthenticated circuit SENDME")),
                };
                self.windows
                    .get_mut(hop)
                    .ok_or(CircuitError::NoHops)?
                    .on_sendme(digest)
                    .map_err(|_| unexpected("circuit SENDME"))?;
            }
            // END and stream SENDMEs count only from the stream's own hop
            // (as C tor finds streams by hop): another hop cannot close or
            // open a stream it does not carry.
            relay_command::SENDME | relay_command::DB_SENDME
                if !self.is_streams_own_hop(stream_id, hop) => {}
            relay_command::SENDME | relay_command::DB_SENDME => {
                self.streams
                    .on_sendme(stream_id)
                    .map_err(|_| unexpected("stream SENDME"))?;
            }
            // The answer to a stream we ended meanwhile: dropped.
            relay_command::CONNECTED | relay_command::DB_CONNECTED
                if self.streams.is_half_closed(stream_id) => {}
            relay_command::CONNECTED => {
                let stream = self
                    .streams
                    .get_mut(stream_id)
                    .ok_or(unexpected("CONNECTED for no stream"))?;
                if stream.open || stream.hop != hop {
                    return Err(unexpected("CONNECTED"));
                }
                Connected::decode(&msg.data)?;
                stream.open = true;
                self.events
                    .push_back(CircuitEvent::StreamConnected { stream_id });
            }
            relay_command::DB_CONNECTED => {
                let stream = self
                    .streams
                    .get_mut(stream_id)
                    .ok_or(unexpected("DB_CONNECTED for no stream"))?;
                if stream.open || stream.hop != hop {
                    return Err(unexpected("DB_CONNECTED"));
                }
                let framing = stream.db.as_mut().ok_or(unexpected("DB_CONNECTED"))?;
                if let Some(answer) = framing.connected.push(&msg.data)? {
                    stream.open = true;
                    self.events
                        .push_back(CircuitEvent::DbConnected { stream_id, answer });
                }
            }
            relay_command::DATA | relay_command::DB_DATA => {
                let window = self.windows.get_mut(hop).ok_or(CircuitError::NoHops)?;
                if window
                    .on_data_received()
                    .map_err(|_| unexpected("DATA past the circuit window"))?
                {
                    let sendme = Sendme::V1 { digest };
                    self.send_relay(
                        hop,
                        RelayCell::new(relay_command::SENDME, 0, sendme.encode()),
                        false,
                    )?;
                }
                // Data for a stream we already closed is counted, then dropped.
                let delivered = if msg.command == relay_command::DATA {
                    self.streams.on_data(stream_id, hop, &msg.data)
                } else {
                    self.streams.on_db_data(stream_id, hop, &msg.data)
                };
                delivered.map_err(|_| {
                    unexpected("data on a stream that is not open, past its window, or misframed")
                })?;
            }
            relay_command::END | relay_command::DB_END
                if !self.is_streams_own_hop(stream_id, hop) => {}
            relay_command::END | relay_command::DB_END => {
                self.streams.end_of_half_closed(stream_id);
                if let Some(reason) = self.streams.on_end(stream_id, end_reason_of(&msg.data)) {
                    self.events
                        .push_back(CircuitEvent::StreamEnded { stream_id, reason });
                }
            }
            c if relay_command::is_peersm_control(c) && stream_id == 0 => {
                if let Some(message) = self.control.entry(hop).or_default().push(c, &msg.data)? {
                    self.events
                        .push_back(CircuitEvent::Control { hop, message });
                }
            }
            // Padding and commands we do not use are dropped (tor-spec §6.1).
            _ => {}
        }
        Ok(())
    }
}

impl ClientCircuit {
    /// Whether a cell for `stream_id` from `hop` comes from the hop the
    /// stream was opened at (unknown streams: yes, the cell is harmless).
    fn is_streams_own_hop(&mut self, stream_id: u16, hop: usize) -> bool {
        match self.streams.get_mut(stream_id) {
            Some(s) if s.hop != hop => {
                tracing::debug!(stream_id, hop, "stream cell from another hop: ignored");
                false
            }
            _ => true,
        }
    }
}

fn unexpected(what: &'static str) -> CircuitError {
    CircuitError::Cell(crate::cell::CellError::Malformed {
        what,
        why: "not acceptable here",
    })
}

impl StreamCarrier for ClientCircuit {
    fn window_open(&self, hop: usize) -> bool {
        self.windows.get(hop).is_some_and(|w| w.can_package())
    }

    fn send_cell(&mut self, hop: usize, cell: RelayCell) -> Result<[u8; 20], CircuitError> {
        self.send_relay(hop, cell, false)
    }

    fn data_sent(&mut self, hop: usize, digest: [u8; 20]) {
        if let Some(w) = self.windows.get_mut(hop) {
            w.on_data_sent(digest);
        }
    }

    fn streams(&mut self) -> &mut Streams {
        &mut self.streams
    }

    fn notice(&mut self, notice: StreamNotice) {
        self.events.push_back(match notice {
            StreamNotice::Readable { stream_id } => CircuitEvent::StreamReadable { stream_id },
            StreamNotice::Writable { stream_id } => CircuitEvent::StreamWritable { stream_id },
            StreamNotice::Ended { stream_id, reason } => {
                CircuitEvent::StreamEnded { stream_id, reason }
            }
        });
    }
}
