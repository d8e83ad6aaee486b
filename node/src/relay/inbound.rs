//! An open inbound channel, whatever carries it (TLS on the ORPort, a
//! WebSocket on the bridge): runs `RelayCircuit`s for the circuits the
//! previous hop creates, extends them through outbound channels, serves
//! exit streams under the exit policy and BEGIN_DIR from the directory
//! service. One task owns the channel and its circuits; other tasks talk
//! to it through `ToInbound` messages.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::bridge::mesh::LinkPeer;
use peersm_core::cell::{
    command, create::destroy_cell, destroy_reason, end_reason, ControlMessage, Created2, RawCell,
};
use peersm_core::circuit::{RelayCircuit, RelayEvent, StreamTarget};
use tokio::sync::mpsc;

use super::dir_service::DirRequest;
use super::exit::open_exit_stream;
use super::outbound::OutboundLink;
use super::server::Relay;

/// Messages handled before the channel writes what they produced.
const MAX_MESSAGES_PER_BATCH: usize = 64;

/// Moves batches of cells for an open channel.
pub trait CellTransport {
    /// The next cells from the previous hop; `Ok(None)` once it closed.
    /// Must be cancel-safe: the channel loop selects over it.
    fn recv(
        &mut self,
    ) -> impl std::future::Future<Output = Result<Option<Vec<RawCell>>, String>> + Send;
    fn send(
        &mut self,
        cells: &[RawCell],
    ) -> impl std::future::Future<Output = Result<(), String>> + Send;
}

/// What tasks tell an inbound channel's actor.
pub enum ToInbound {
    /// An outbound channel allocated `next_circ` for our circuit `back_circ`.
    Extending {
        back_circ: u32,
        link: OutboundLink,
        next_circ: u32,
    },
    FromNext {
        back_circ: u32,
        cell: RawCell,
    },
    ExtendFailed {
        back_circ: u32,
        reason: u8,
    },
    ExitConnected {
        back_circ: u32,
        stream: u16,
        peer: SocketAddr,
        writer: mpsc::UnboundedSender<Vec<u8>>,
    },
    ExitRefused {
        back_circ: u32,
        stream: u16,
        reason: u8,
    },
    ExitData {
        back_circ: u32,
        stream: u16,
        data: Vec<u8>,
    },
    ExitClosed {
        back_circ: u32,
        stream: u16,
    },
    /// A control message for the client of circuit `back_circ` (the mesh
    /// service forwarding an introduction).
    Control {
        back_circ: u32,
        message: ControlMessage,
    },
}

/// Runs an open channel until it closes; `early_cells` arrived with the
/// end of the link handshake.
pub async fn run_channel<T: CellTransport>(
    relay: Arc<Relay>,
    transport: &mut T,
    early_cells: Vec<RawCell>,
    peer: Option<LinkPeer>,
) -> Result<(), String> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut actor = Inbound {
        relay,
        peer,
        tx,
        circuits: HashMap::new(),
        next: HashMap::new(),
        exits: HashMap::new(),
        dir_requests: HashMap::new(),
        unsent: HashMap::new(),
        direct: Vec::new(),
        closing: Default::default(),
    };
    for cell in early_cells {
        actor.on_cell(cell);
    }
    let result = loop {
        let out = actor.drive();
        if !out.is_empty() {
            if let Err(e) = transport.send(&out).await {
                break Err(e);
            }
        }
        tokio::select! {
            cells = transport.recv() => match cells {
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
                Ok(Some(cells)) => for cell in cells { actor.on_cell(cell) },
            },
            msg = rx.recv() => if let Some(msg) = msg { actor.on_message(msg) },
        }
        // Take what else is waiting before writing, so cells from the next
        // hop leave in batches (one frame or TLS write for many cells).
        for _ in 0..MAX_MESSAGES_PER_BATCH {
            match rx.try_recv() {
                Ok(msg) => actor.on_message(msg),
                Err(_) => break,
            }
        }
    };
    // The channel is gone: every circuit on it dies (tor-spec §5.4), and a
    // tab's registration with the mesh goes with its control circuit.
    if let Some(mesh) = &actor.relay.options.mesh {
        for circ in actor.circuits.keys() {
            mesh.circuit_closed(&actor.tx, *circ);
        }
    }
    for (_, (link, next_circ)) in actor.next.drain() {
        link.send(destroy_cell(next_circ, destroy_reason::CHANNEL_CLOSED));
    }
    result
}

struct Inbound {
    relay: Arc<Relay>,
    /// The peer that authenticated this link (tabs) and its key's modulus.
    peer: Option<LinkPeer>,
    tx: mpsc::UnboundedSender<ToInbound>,
    circuits: HashMap<u32, RelayCircuit>,
    /// back circuit id → the next hop's channel and circuit id there.
    next: HashMap<u32, (OutboundLink, u32)>,
    exits: HashMap<(u32, u16), mpsc::UnboundedSender<Vec<u8>>>,
    /// BEGIN_DIR streams still reading their HTTP request.
    dir_requests: HashMap<(u32, u16), DirRequest>,
    unsent: HashMap<(u32, u16), Vec<u8>>,
    /// Exit streams whose server closed; END follows the last byte.
    closing: std::collections::HashSet<(u32, u16)>,
    /// Cells for the channel that belong to no circuit.
    direct: Vec<RawCell>,
}

impl Inbound {
    fn on_cell(&mut self, cell: RawCell) {
        let id = cell.circ_id;
        tracing::trace!(
            circ = id,
            command = cell.command,
            "cell from the previous hop"
        );
        match cell.command {
            command::PADDING | command::VPADDING | command::NETINFO => {}
            command::CREATE_FAST | command::CREATE2 => {
                if id == 0 || self.circuits.contains_key(&id) {
                    return; // tor-spec §5.1.1: ignore a CREATE for a circuit in use.
                }
                let keys = [self.relay.keys.ntor.clone()];
                match RelayCircuit::accept_create(&cell, &keys) {
                    Ok(c) => drop(self.circuits.insert(id, c)),
                    Err(e) => {
                        tracing::debug!(circ = id, "CREATE refused: {e}");
                        // No circuit exists: answer on the channel directly.
                        self.direct.push(destroy_cell(id, destroy_reason::PROTOCOL));
                    }
                }
            }
            _ => match self.circuits.get_mut(&id) {
                Some(c) => {
                    if let Err(e) = c.handle_cell_from_back(cell) {
                        tracing::debug!(circ = id, "circuit closed: {e}");
                    }
                }
                None => tracing::debug!(circ = id, "cell for an unknown circuit"),
            },
        }
    }

    fn on_message(&mut self, msg: ToInbound) {
        match msg {
            ToInbound::Extending {
                back_circ,
                link,
                next_circ,
            } => {
                if self.circuits.contains_key(&back_circ) {
                    self.next.insert(back_circ, (link, next_circ));
                } else {
                    link.send(destroy_cell(next_circ, destroy_reason::DESTROYED));
                }
            }
            ToInbound::FromNext { back_circ, cell } => {
                let Some(c) = self.circuits.get_mut(&back_circ) else {
                    return;
                };
                let result = if cell.command == command::CREATED2 {
                    match Created2::from_cell(&cell) {
                        Ok(created) => c.next_hop_created(cell.circ_id, created),
                        Err(e) => Err(e.into()),
                    }
                } else {
                    if cell.command == command::DESTROY {
                        self.next.remove(&back_circ);
                    }
                    c.handle_cell_from_forward(cell)
                };
                if let Err(e) = result {
                    tracing::debug!(circ = back_circ, "from next hop: {e}");
                }
            }
            ToInbound::ExtendFailed { back_circ, reason } => {
                if let Some(c) = self.circuits.get_mut(&back_circ) {
                    let _ = c.extend_failed(reason);
                }
            }
            ToInbound::ExitConnected {
                back_circ,
                stream,
                peer,
                writer,
            } => {
                let connected = self
                    .circuits
                    .get_mut(&back_circ)
                    .is_some_and(|c| c.stream_connected(stream, Some((peer.ip(), 300))).is_ok());
                if connected {
                    self.exits.insert((back_circ, stream), writer);
                }
            }
            ToInbound::ExitRefused {
                back_circ,
                stream,
                reason,
            } => {
                if let Some(c) = self.circuits.get_mut(&back_circ) {
                    let _ = c.stream_refused(stream, reason);
                }
            }
            ToInbound::ExitData {
                back_circ,
                stream,
                data,
            } => {
                self.unsent
                    .entry((back_circ, stream))
                    .or_default()
                    .extend_from_slice(&data);
                self.push_unsent(back_circ, stream);
            }
            ToInbound::Control { back_circ, message } => {
                if let Some(c) = self.circuits.get_mut(&back_circ) {
                    let _ = c.send_control(&message);
                }
            }
            ToInbound::ExitClosed { back_circ, stream } => {
                // END only after every byte the server sent is in the circuit.
                self.exits.remove(&(back_circ, stream));
                self.closing.insert((back_circ, stream));
                self.unsent.entry((back_circ, stream)).or_default();
                self.push_unsent(back_circ, stream);
            }
        }
    }

    fn push_unsent(&mut self, back_circ: u32, stream: u16) {
        let key = (back_circ, stream);
        let (Some(c), Some(buf)) = (self.circuits.get_mut(&back_circ), self.unsent.get_mut(&key))
        else {
            return;
        };
        if let Ok(n) = c.send(stream, buf) {
            buf.drain(..n);
        }
        if buf.is_empty() && self.closing.remove(&key) {
            self.unsent.remove(&key);
            let _ = c.end_stream(stream, end_reason::DONE);
        }
    }

    /// Collects cells to send back, forwards cells onward, acts on events.
    fn drive(&mut self) -> Vec<RawCell> {
        let mut out = std::mem::take(&mut self.direct);
        let mut events = Vec::new();
        for (id, c) in self.circuits.iter_mut() {
            while let Some(cell) = c.poll_cell_back() {
                out.push(cell);
            }
            while let Some(cell) = c.poll_cell_forward() {
                if let Some((link, _)) = self.next.get(id) {
                    link.send(cell);
                }
            }
            while let Some(e) = c.poll_event() {
                events.push((*id, e));
            }
        }
        for (id, e) in events {
            self.on_event(id, e);
        }
        self.circuits.retain(|_, c| !c.is_destroyed());
        // Events may have queued more cells (e.g. END for a refused BEGIN_DIR).
        for c in self.circuits.values_mut() {
            while let Some(cell) = c.poll_cell_back() {
                out.push(cell);
            }
        }
        out
    }

    fn on_event(&mut self, back_circ: u32, e: RelayEvent) {
        match e {
            RelayEvent::Extend(extend) => {
                let (relay, tx) = (self.relay.clone(), self.tx.clone());
                tokio::spawn(async move {
                    let addr = extend
                        .addresses()
                        .find(|a| a.is_ipv4())
                        .or_else(|| extend.addresses().next());
                    let result = match (addr, extend.legacy_id()) {
                        (Some(addr), Some(rsa_id)) => {
                            match relay.link_to(addr, rsa_id, extend.ed25519_id()).await {
                                Ok(link) => link
                                    .open(tx.clone(), back_circ, extend.create.clone())
                                    .await
                                    .map(|_| ()),
                                Err(e) => Err(e),
                            }
                        }
                        _ => Err("EXTEND2 without an address and RSA identity".to_string()),
                    };
                    if let Err(e) = result {
                        tracing::info!(circ = back_circ, "extend failed: {e}");
                        let _ = tx.send(ToInbound::ExtendFailed {
                            back_circ,
                            reason: destroy_reason::CONNECTFAILED,
                        });
                    }
                });
            }
            RelayEvent::Begin { stream_id, target } => match target {
                StreamTarget::Directory => {
                    let Some(c) = self.circuits.get_mut(&back_circ) else {
                        return;
                    };
                    if self.relay.options.relay_list.is_some() {
                        if c.stream_connected(stream_id, None).is_ok() {
                            self.dir_requests
                                .insert((back_circ, stream_id), DirRequest::default());
                        }
                    } else {
                        let _ = c.stream_refused(stream_id, end_reason::NOTDIRECTORY);
                    }
                }
                StreamTarget::Tcp { host, port } => {
                    let policy = self.relay.policy.clone();
                    let bind = self.relay.options.exit_bind;
                    tokio::spawn(open_exit_stream(
                        host,
                        port,
                        policy,
                        bind,
                        self.tx.clone(),
                        back_circ,
                        stream_id,
                    ));
                }
            },
            RelayEvent::StreamData { stream_id, data } => {
                let key = (back_circ, stream_id);
                if let Some(w) = self.exits.get(&key) {
                    let _ = w.send(data);
                } else if let Some(req) = self.dir_requests.get_mut(&key) {
                    let relays = match &self.relay.options.relay_list {
                        Some(list) => list.read().map(|l| l.clone()).unwrap_or_default(),
                        None => Vec::new(),
                    };
                    if let Some(response) = req.feed(&data, &relays) {
                        // The response, then END (as when an exit's server closes).
                        self.dir_requests.remove(&key);
                        self.unsent.entry(key).or_default().extend(response);
                        self.closing.insert(key);
                        self.push_unsent(back_circ, stream_id);
                    }
                }
            }
            RelayEvent::StreamEnded { stream_id, .. } => {
                self.exits.remove(&(back_circ, stream_id));
                self.dir_requests.remove(&(back_circ, stream_id));
                self.unsent.remove(&(back_circ, stream_id));
                self.closing.remove(&(back_circ, stream_id));
            }
            RelayEvent::StreamWritable { stream_id } => self.push_unsent(back_circ, stream_id),
            RelayEvent::Control(message) => {
                let Some(mesh) = self.relay.options.mesh.clone() else {
                    return;
                };
                if let Some(reply) = mesh.handle(self.peer.as_ref(), &self.tx, back_circ, message) {
                    if let Some(c) = self.circuits.get_mut(&back_circ) {
                        let _ = c.send_control(&reply);
                    }
                }
            }
            RelayEvent::Destroyed { .. } => {
                if let Some(mesh) = &self.relay.options.mesh {
                    mesh.circuit_closed(&self.tx, back_circ);
                }
                self.next.remove(&back_circ);
                self.exits.retain(|(c, _), _| *c != back_circ);
                self.dir_requests.retain(|(c, _), _| *c != back_circ);
                self.unsent.retain(|(c, _), _| *c != back_circ);
                self.closing.retain(|(c, _)| *c != back_circ);
            }
        }
    }
}
