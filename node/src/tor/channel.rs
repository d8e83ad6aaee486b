//! A client channel to one relay over TLS (tor-spec §2–4), run as a task
//! that owns the link and every circuit on it. Other tasks drive it through
//! a `ChannelHandle`: create and extend circuits, open streams, send data.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use peersm_core::cell::{destroy_reason, end_reason, CircIdLen, LinkSpec, RawCell};
use peersm_core::channel::{
    decode_frame, encode_cells, tor_certs::RelayIdentity, whole_cells_len, InitiatorEvent,
    LinkInitiator, ResponderCheck,
};
use peersm_core::circuit::{CircuitEvent, ClientCircuit, StreamTarget};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_rustls::client::TlsStream;

use super::tls;
use super::tls::write_flush;

type Tls = TlsStream<TcpStream>;
type Reply<T> = oneshot::Sender<Result<T, String>>;

/// What a stream's owner hears.
#[derive(Debug)]
pub enum StreamEvent {
    Connected,
    Data(Vec<u8>),
    Ended { reason: u8 },
}

enum Command {
    CreateFast {
        reply: Reply<u32>,
    },
    CreateNtor {
        relay_id: [u8; 20],
        onion_key: [u8; 32],
        reply: Reply<u32>,
    },
    Extend {
        circ: u32,
        specs: Vec<LinkSpec>,
        relay_id: [u8; 20],
        onion_key: [u8; 32],
        reply: Reply<()>,
    },
    Begin {
        circ: u32,
        target: StreamTarget,
        events: mpsc::UnboundedSender<StreamEvent>,
        reply: Reply<u16>,
    },
    Send {
        circ: u32,
        stream: u16,
        data: Vec<u8>,
    },
    End {
        circ: u32,
        stream: u16,
    },
    Destroy {
        circ: u32,
    },
    Raw(RawCell),
    Alive {
        circ: u32,
        reply: Reply<bool>,
    },
}

/// Drives a channel task. Cloneable; the channel closes when all handles
/// are dropped.
#[derive(Clone)]
pub struct ChannelHandle {
    commands: mpsc::UnboundedSender<Command>,
    pub relay: RelayIdentity,
    pub addr: SocketAddr,
}

fn closed<T>(_: T) -> String {
    "channel closed".to_string()
}

impl ChannelHandle {
    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, String> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).map_err(closed)?;
        rx.await.map_err(closed)?
    }

    /// A one-hop circuit with CREATE_FAST.
    pub async fn create_fast(&self) -> Result<u32, String> {
        self.ask(|reply| Command::CreateFast { reply }).await
    }

    /// A one-hop circuit with CREATE2/ntor.
    pub async fn create_ntor(&self, onion_key: [u8; 32]) -> Result<u32, String> {
        let relay_id = self.relay.rsa_id;
        self.ask(|reply| Command::CreateNtor {
            relay_id,
            onion_key,
            reply,
        })
        .await
    }

    pub async fn extend(
        &self,
        circ: u32,
        specs: Vec<LinkSpec>,
        relay_id: [u8; 20],
        onion_key: [u8; 32],
    ) -> Result<(), String> {
        self.ask(|reply| Command::Extend {
            circ,
            specs,
            relay_id,
            onion_key,
            reply,
        })
        .await
    }

    /// Opens a stream at the circuit's last hop; events (CONNECTED first,
    /// or an END) arrive on the returned receiver.
    pub async fn begin(
        &self,
        circ: u32,
        target: StreamTarget,
    ) -> Result<(u16, mpsc::UnboundedReceiver<StreamEvent>), String> {
        let (events, rx) = mpsc::unbounded_channel();
        let id = self
            .ask(|reply| Command::Begin {
                circ,
                target,
                events,
                reply,
            })
            .await?;
        Ok((id, rx))
    }

    pub fn send(&self, circ: u32, stream: u16, data: Vec<u8>) -> Result<(), String> {
        self.commands
            .send(Command::Send { circ, stream, data })
            .map_err(closed)
    }

    pub fn end(&self, circ: u32, stream: u16) {
        let _ = self.commands.send(Command::End { circ, stream });
    }

    pub fn destroy(&self, circ: u32) {
        let _ = self.commands.send(Command::Destroy { circ });
    }

    pub fn is_closed(&self) -> bool {
        self.commands.is_closed()
    }

    /// Sends a cell as is, bypassing every circuit (for probing a relay's
    /// handling of malformed input).
    pub fn send_raw(&self, cell: RawCell) -> Result<(), String> {
        self.commands.send(Command::Raw(cell)).map_err(closed)
    }

    /// Whether circuit `circ` still exists on this channel.
    pub async fn circuit_alive(&self, circ: u32) -> bool {
        self.ask(|reply| Command::Alive { circ, reply })
            .await
            .unwrap_or(false)
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Connects to a relay, checks that its certificates prove the expected
/// identities, and starts the channel task.
pub async fn connect(
    addr: SocketAddr,
    rsa_id: Option<[u8; 20]>,
    ed25519_id: Option<[u8; 32]>,
) -> Result<ChannelHandle, String> {
    let (tls, cert) = tls::connect(addr)
        .await
        .map_err(|e| format!("TLS to {addr}: {e}"))?;
    let (mut reader, mut writer) = tokio::io::split(tls);
    let check = ResponderCheck::TorRelay {
        tls_cert: cert,
        now: unix_now(),
        rsa_id,
        ed25519_id,
    };
    let mut link = LinkInitiator::new(None, check).map_err(|e| e.to_string())?;
    let mut inbuf = Vec::new();
    let mut at_start = true;
    let mut early = Vec::new();
    let relay = loop {
        while let Some(frame) = link.poll_transmit() {
            writer.write_all(&frame).await.map_err(|e| e.to_string())?;
            writer.flush().await.map_err(|e| e.to_string())?;
        }
        if let Some(event) = link.poll_event() {
            if let InitiatorEvent::Open { relay, .. } = event {
                while let Some(frame) = link.poll_transmit() {
                    writer.write_all(&frame).await.map_err(|e| e.to_string())?;
                    writer.flush().await.map_err(|e| e.to_string())?;
                }
                // Cells the relay sent right after its handshake.
                while let Some(event) = link.poll_event() {
                    if let InitiatorEvent::Cell(cell) = event {
                        early.push(cell);
                    }
                }
                break relay.ok_or("relay proved no identity")?;
            }
            continue;
        }
        let n = read_more(&mut reader, &mut inbuf).await?;
        if n == 0 {
            return Err(format!("{addr} closed the link during the handshake"));
        }
        let whole = whole_cells_len(&inbuf, at_start);
        if whole > 0 {
            link.handle_frame(&inbuf[..whole])
                .map_err(|e| format!("handshake with {addr}: {e}"))?;
            inbuf.drain(..whole);
            at_start = false;
        }
    };
    let (commands, rx) = mpsc::unbounded_channel();
    let actor = Actor {
        circuits: HashMap::new(),
        pending_circuit: HashMap::new(),
        pending_begin: HashMap::new(),
        streams: HashMap::new(),
        unsent: HashMap::new(),
        direct: Vec::new(),
    };
    let mut actor = actor;
    for cell in early {
        actor.on_cell(cell);
    }
    tokio::spawn(actor.run(reader, writer, inbuf, rx, addr));
    Ok(ChannelHandle {
        commands,
        relay,
        addr,
    })
}

async fn read_more(reader: &mut ReadHalf<Tls>, inbuf: &mut Vec<u8>) -> Result<usize, String> {
    let mut buf = [0u8; 16 * 1024];
    let n = reader.read(&mut buf).await.map_err(|e| e.to_string())?;
    inbuf.extend_from_slice(&buf[..n]);
    Ok(n)
}

struct Actor {
    circuits: HashMap<u32, ClientCircuit>,
    /// Replies waiting for a hop to be added.
    pending_circuit: HashMap<u32, PendingHop>,
    pending_begin: HashMap<(u32, u16), Reply<u16>>,
    streams: HashMap<(u32, u16), mpsc::UnboundedSender<StreamEvent>>,
    /// Bytes a stream's buffer had no room for yet.
    unsent: HashMap<(u32, u16), Vec<u8>>,
    /// Cells sent as is with `send_raw`.
    direct: Vec<RawCell>,
}

enum PendingHop {
    Create(Reply<u32>),
    Extend(Reply<()>),
}

impl Actor {
    async fn run(
        mut self,
        mut reader: ReadHalf<Tls>,
        mut writer: WriteHalf<Tls>,
        mut inbuf: Vec<u8>,
        mut commands: mpsc::UnboundedReceiver<Command>,
        addr: SocketAddr,
    ) {
        let why = loop {
            tokio::select! {
                read = read_more(&mut reader, &mut inbuf) => match read {
                    Ok(0) => break "relay closed the connection".to_string(),
                    Err(e) => break format!("read: {e}"),
                    Ok(_) => {
                        let whole = whole_cells_len(&inbuf, false);
                        if whole == 0 { continue; }
                        match decode_frame(&inbuf[..whole], CircIdLen::Four, |_| CircIdLen::Four) {
                            Ok(cells) => for cell in cells { self.on_cell(cell) },
                            Err(e) => break format!("bad cells: {e}"),
                        }
                        inbuf.drain(..whole);
                    }
                },
                cmd = commands.recv() => match cmd {
                    Some(cmd) => self.on_command(cmd),
                    None => break "no more users".to_string(),
                },
            }
            self.route_events();
            let mut out: Vec<RawCell> = std::mem::take(&mut self.direct);
            out.extend(
                self.circuits
                    .values_mut()
                    .flat_map(|c| std::iter::from_fn(|| c.poll_cell())),
            );
            self.circuits.retain(|_, c| !c.is_destroyed());
            if !out.is_empty() {
                tracing::trace!(cells = out.len(), "writing cells");
                let bytes = match encode_cells(&out, CircIdLen::Four) {
                    Ok(b) => b,
                    Err(e) => break format!("encode: {e}"),
                };
                let written = write_flush(&mut writer, &bytes).await;
                tracing::trace!(ok = written.is_ok(), "cells written");
                if let Err(e) = written {
                    break format!("write: {e}");
                }
            }
        };
        tracing::info!(%addr, "channel closed: {why}");
        for (_, tx) in self.streams.drain() {
            let _ = tx.send(StreamEvent::Ended {
                reason: end_reason::DESTROY,
            });
        }
    }

    fn new_circ_id(&self) -> u32 {
        loop {
            let mut b = [0u8; 4];
            let _ = getrandom::fill(&mut b);
            // Initiators set the high bit on v4+ links (tor-spec §5.1.1).
            let id = u32::from_be_bytes(b) | 0x8000_0000;
            if !self.circuits.contains_key(&id) {
                return id;
            }
        }
    }

    fn on_cell(&mut self, cell: RawCell) {
        let id = cell.circ_id;
        if id == 0 {
            return; // PADDING, VPADDING and other link-level cells.
        }
        match self.circuits.get_mut(&id) {
            Some(c) => {
                if let Err(e) = c.handle_cell(cell) {
                    tracing::debug!(circ = id, "circuit closed: {e}");
                }
            }
            None => tracing::debug!(
                circ = id,
                command = cell.command,
                "cell for an unknown circuit"
            ),
        }
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::CreateFast { reply } => {
                let id = self.new_circ_id();
                match ClientCircuit::create_fast(id) {
                    Ok(c) => {
                        self.circuits.insert(id, c);
                        self.pending_circuit.insert(id, PendingHop::Create(reply));
                    }
                    Err(e) => drop(reply.send(Err(e.to_string()))),
                }
            }
            Command::CreateNtor {
                relay_id,
                onion_key,
                reply,
            } => {
                let id = self.new_circ_id();
                match ClientCircuit::create_ntor(id, relay_id, onion_key) {
                    Ok(c) => {
                        self.circuits.insert(id, c);
                        self.pending_circuit.insert(id, PendingHop::Create(reply));
                    }
                    Err(e) => drop(reply.send(Err(e.to_string()))),
                }
            }
            Command::Extend {
                circ,
                specs,
                relay_id,
                onion_key,
                reply,
            } => {
                let result = match self.circuits.get_mut(&circ) {
                    Some(c) => c
                        .extend_ntor(specs, relay_id, onion_key)
                        .map_err(|e| e.to_string()),
                    None => Err("no such circuit".into()),
                };
                match result {
                    Ok(()) => drop(self.pending_circuit.insert(circ, PendingHop::Extend(reply))),
                    Err(e) => drop(reply.send(Err(e))),
                }
            }
            Command::Begin {
                circ,
                target,
                events,
                reply,
            } => {
                let result = match self.circuits.get_mut(&circ) {
                    Some(c) => c.begin(target).map_err(|e| e.to_string()),
                    None => Err("no such circuit".into()),
                };
                match result {
                    Ok(stream) => {
                        self.streams.insert((circ, stream), events);
                        self.pending_begin.insert((circ, stream), reply);
                    }
                    Err(e) => drop(reply.send(Err(e))),
                }
            }
            Command::Send { circ, stream, data } => {
                self.unsent
                    .entry((circ, stream))
                    .or_default()
                    .extend_from_slice(&data);
                self.push_unsent(circ, stream);
            }
            Command::End { circ, stream } => {
                self.streams.remove(&(circ, stream));
                self.unsent.remove(&(circ, stream));
                if let Some(c) = self.circuits.get_mut(&circ) {
                    let _ = c.end_stream(stream, end_reason::DONE);
                }
            }
            Command::Raw(cell) => self.direct.push(cell),
            Command::Alive { circ, reply } => {
                let alive = self.circuits.get(&circ).is_some_and(|c| !c.is_destroyed());
                let _ = reply.send(Ok(alive));
            }
            Command::Destroy { circ } => {
                if let Some(c) = self.circuits.get_mut(&circ) {
                    c.destroy(destroy_reason::FINISHED);
                }
            }
        }
    }

    fn push_unsent(&mut self, circ: u32, stream: u16) {
        let (Some(c), Some(buf)) = (
            self.circuits.get_mut(&circ),
            self.unsent.get_mut(&(circ, stream)),
        ) else {
            return;
        };
        if let Ok(n) = c.send(stream, buf) {
            buf.drain(..n);
        }
    }

    fn route_events(&mut self) {
        let mut events = Vec::new();
        for (id, c) in self.circuits.iter_mut() {
            while let Some(e) = c.poll_event() {
                events.push((*id, e));
            }
        }
        for (circ, e) in events {
            match e {
                CircuitEvent::Extended { .. } => match self.pending_circuit.remove(&circ) {
                    Some(PendingHop::Create(reply)) => drop(reply.send(Ok(circ))),
                    Some(PendingHop::Extend(reply)) => drop(reply.send(Ok(()))),
                    None => {}
                },
                CircuitEvent::Truncated { reason, .. } => {
                    if let Some(PendingHop::Extend(reply)) = self.pending_circuit.remove(&circ) {
                        let _ =
                            reply.send(Err(format!("extend refused (TRUNCATED, reason {reason})")));
                    }
                }
                CircuitEvent::Destroyed { reason, .. } => {
                    let msg = format!("circuit destroyed (reason {reason})");
                    match self.pending_circuit.remove(&circ) {
                        Some(PendingHop::Create(reply)) => drop(reply.send(Err(msg))),
                        Some(PendingHop::Extend(reply)) => drop(reply.send(Err(msg))),
                        None => {}
                    }
                }
                CircuitEvent::StreamConnected { stream_id } => {
                    if let Some(reply) = self.pending_begin.remove(&(circ, stream_id)) {
                        let _ = reply.send(Ok(stream_id));
                    }
                    if let Some(tx) = self.streams.get(&(circ, stream_id)) {
                        let _ = tx.send(StreamEvent::Connected);
                    }
                }
                CircuitEvent::StreamData { stream_id, data } => {
                    if let Some(tx) = self.streams.get(&(circ, stream_id)) {
                        let _ = tx.send(StreamEvent::Data(data));
                    }
                }
                CircuitEvent::StreamEnded { stream_id, reason } => {
                    if let Some(reply) = self.pending_begin.remove(&(circ, stream_id)) {
                        let _ = reply.send(Err(format!("stream refused (END reason {reason})")));
                    }
                    if let Some(tx) = self.streams.remove(&(circ, stream_id)) {
                        let _ = tx.send(StreamEvent::Ended { reason });
                    }
                    self.unsent.remove(&(circ, stream_id));
                }
                CircuitEvent::StreamWritable { stream_id } => self.push_unsent(circ, stream_id),
                // Peersm control messages come from bridges, not Tor relays.
                CircuitEvent::Control { .. } => {}
            }
        }
    }
}
