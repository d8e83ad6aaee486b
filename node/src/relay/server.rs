//! The relay's ORPort: accepts TLS channels, presents our certificates in
//! the link handshake, runs `RelayCircuit`s for the circuits clients and
//! other relays create, extends them through outbound channels and serves
//! exit streams under the exit policy.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use peersm::cell::{
    command, create::destroy_cell, destroy_reason, end_reason, CircIdLen, Created2, LinkSpec,
    RawCell,
};
use peersm::channel::{decode_frame, encode_cells, whole_cells_len, LinkResponder, ResponderEvent};
use peersm::circuit::{RelayCircuit, RelayEvent, StreamTarget};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Mutex};
use tokio_rustls::TlsAcceptor;

use super::exit_policy::ExitPolicy;
use super::keys::RelayKeys;
use super::outbound::{self, OutboundLink};
use crate::tor::tls::write_flush;

const EXIT_CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

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
}

pub struct Relay {
    pub keys: RelayKeys,
    pub policy: ExitPolicy,
    acceptor: TlsAcceptor,
    outbound: Mutex<HashMap<[u8; 20], OutboundLink>>,
}

impl Relay {
    pub fn new(keys: RelayKeys, policy: ExitPolicy) -> Result<Arc<Relay>, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(keys.tls_key.clone().into());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_single_cert(vec![keys.tls_cert.clone().into()], key)
            .map_err(|e| e.to_string())?;
        Ok(Arc::new(Relay {
            keys,
            policy,
            acceptor: TlsAcceptor::from(Arc::new(config)),
            outbound: Mutex::new(HashMap::new()),
        }))
    }

    async fn link_to(
        &self,
        addr: SocketAddr,
        rsa_id: [u8; 20],
        ed: Option<[u8; 32]>,
    ) -> Result<OutboundLink, String> {
        let mut map = self.outbound.lock().await;
        map.retain(|_, l| !l.is_closed());
        if let Some(l) = map.get(&rsa_id) {
            return Ok(l.clone());
        }
        let link = outbound::connect(&self.keys, addr, rsa_id, ed).await?;
        map.insert(rsa_id, link.clone());
        Ok(link)
    }
}

pub async fn serve(listener: TcpListener, relay: Arc<Relay>) -> std::io::Result<()> {
    loop {
        let (tcp, peer) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        let relay = relay.clone();
        tokio::spawn(async move {
            if let Err(e) = handle_channel(tcp, peer, relay).await {
                tracing::info!(%peer, "inbound channel ended: {e}");
            }
        });
    }
}

fn unix_now() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0)
}

async fn handle_channel(tcp: TcpStream, peer: SocketAddr, relay: Arc<Relay>) -> Result<(), String> {
    let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, relay.acceptor.accept(tcp))
        .await
        .map_err(|_| "TLS handshake timed out")?
        .map_err(|e| format!("TLS: {e}"))?;
    let (mut reader, mut writer) = tokio::io::split(tls);
    let mut challenge = [0u8; 32];
    getrandom::fill(&mut challenge).map_err(|e| e.to_string())?;
    let certs = relay.keys.certs()?;
    let mut link =
        LinkResponder::new(challenge, unix_now(), Some(peer.ip()), Vec::new()).with_certs(certs);
    let mut inbuf = Vec::new();
    let mut at_start = true;
    let mut chunk = vec![0u8; 16 * 1024];
    let deadline = tokio::time::Instant::now() + HANDSHAKE_TIMEOUT;
    while !link.is_open() {
        let n = tokio::time::timeout_at(deadline, reader.read(&mut chunk))
            .await
            .map_err(|_| "link handshake timed out")?
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed during the link handshake".into());
        }
        inbuf.extend_from_slice(&chunk[..n]);
        let whole = whole_cells_len(&inbuf, at_start);
        if whole > 0 {
            link.handle_frame(&inbuf[..whole])
                .map_err(|e| e.to_string())?;
            inbuf.drain(..whole);
            at_start = false;
        }
        while let Some(f) = link.poll_transmit() {
            writer.write_all(&f).await.map_err(|e| e.to_string())?;
            writer.flush().await.map_err(|e| e.to_string())?;
        }
    }
    // Cells that arrived in the same read as the handshake's end.
    let mut early_cells = Vec::new();
    while let Some(event) = link.poll_event() {
        if let ResponderEvent::Cell(cell) = event {
            early_cells.push(cell);
        }
    }
    tracing::info!(%peer, "inbound channel open");
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut actor = Inbound {
        relay,
        tx,
        circuits: HashMap::new(),
        next: HashMap::new(),
        exits: HashMap::new(),
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
            match encode_cells(&out, CircIdLen::Four) {
                Ok(bytes) => {
                    if let Err(e) = write_flush(&mut writer, &bytes).await {
                        break Err(e.to_string());
                    }
                }
                Err(e) => break Err(e.to_string()),
            }
        }
        tokio::select! {
            n = reader.read(&mut chunk) => match n {
                Ok(0) => break Ok(()),
                Err(e) => break Err(e.to_string()),
                Ok(n) => {
                    tracing::trace!(n, "read from the previous hop");
                    inbuf.extend_from_slice(&chunk[..n]);
                    let whole = whole_cells_len(&inbuf, false);
                    if whole == 0 { continue; }
                    match decode_frame(&inbuf[..whole], CircIdLen::Four, |_| CircIdLen::Four) {
                        Ok(cells) => for cell in cells { actor.on_cell(cell) },
                        Err(e) => break Err(format!("bad cells: {e}")),
                    }
                    inbuf.drain(..whole);
                }
            },
            msg = rx.recv() => if let Some(msg) = msg { actor.on_message(msg) },
        }
    };
    // The channel is gone: every circuit on it dies (tor-spec §5.4).
    for (back_circ, (link, next_circ)) in actor.next.drain() {
        let _ = back_circ;
        link.send(destroy_cell(next_circ, destroy_reason::CHANNEL_CLOSED));
    }
    result
}

struct Inbound {
    relay: Arc<Relay>,
    tx: mpsc::UnboundedSender<ToInbound>,
    circuits: HashMap<u32, RelayCircuit>,
    /// back circuit id → the next hop's channel and circuit id there.
    next: HashMap<u32, (OutboundLink, u32)>,
    exits: HashMap<(u32, u16), mpsc::UnboundedSender<Vec<u8>>>,
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
                    if let Some(c) = self.circuits.get_mut(&back_circ) {
                        let _ = c.stream_refused(stream_id, end_reason::NOTDIRECTORY);
                    }
                }
                StreamTarget::Tcp { host, port } => {
                    let (policy, tx) = (self.relay.policy.clone(), self.tx.clone());
                    tokio::spawn(open_exit_stream(
                        host, port, policy, tx, back_circ, stream_id,
                    ));
                }
            },
            RelayEvent::StreamData { stream_id, data } => {
                if let Some(w) = self.exits.get(&(back_circ, stream_id)) {
                    let _ = w.send(data);
                }
            }
            RelayEvent::StreamEnded { stream_id, .. } => {
                self.exits.remove(&(back_circ, stream_id));
                self.unsent.remove(&(back_circ, stream_id));
                self.closing.remove(&(back_circ, stream_id));
            }
            RelayEvent::StreamWritable { stream_id } => self.push_unsent(back_circ, stream_id),
            RelayEvent::Destroyed { .. } => {
                self.next.remove(&back_circ);
                self.exits.retain(|(c, _), _| *c != back_circ);
                self.unsent.retain(|(c, _), _| *c != back_circ);
                self.closing.retain(|(c, _)| *c != back_circ);
            }
        }
    }
}

/// Resolves, checks the exit policy, connects, then pumps bytes both ways.
async fn open_exit_stream(
    host: String,
    port: u16,
    policy: ExitPolicy,
    tx: mpsc::UnboundedSender<ToInbound>,
    back_circ: u32,
    stream: u16,
) {
    let refuse = |reason| {
        let _ = tx.send(ToInbound::ExitRefused {
            back_circ,
            stream,
            reason,
        });
    };
    let addrs: Vec<SocketAddr> = match tokio::net::lookup_host((host.as_str(), port)).await {
        Ok(a) => a.collect(),
        Err(_) => return refuse(end_reason::RESOLVEFAILED),
    };
    let Some(addr) = addrs.iter().copied().find(|a| policy.allows(a.ip(), port)) else {
        return refuse(if addrs.is_empty() {
            end_reason::RESOLVEFAILED
        } else {
            end_reason::EXITPOLICY
        });
    };
    let sock = match tokio::time::timeout(EXIT_CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            return refuse(end_reason::CONNECTREFUSED)
        }
        Ok(Err(_)) => return refuse(end_reason::NOROUTE),
        Err(_) => return refuse(end_reason::TIMEOUT),
    };
    let _ = sock.set_nodelay(true);
    let (mut rd, mut wr) = sock.into_split();
    let (writer, mut to_write) = mpsc::unbounded_channel::<Vec<u8>>();
    let _ = tx.send(ToInbound::ExitConnected {
        back_circ,
        stream,
        peer: addr,
        writer,
    });
    tokio::spawn(async move {
        while let Some(data) = to_write.recv().await {
            if wr.write_all(&data).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match rd.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if tx
                    .send(ToInbound::ExitData {
                        back_circ,
                        stream,
                        data: buf[..n].to_vec(),
                    })
                    .is_err()
                {
                    return;
                }
            }
        }
    }
    let _ = tx.send(ToInbound::ExitClosed { back_circ, stream });
}

/// The link specifiers naming this relay, for clients' EXTEND2.
pub fn link_specs(relay: &Relay, addr: SocketAddr) -> Vec<LinkSpec> {
    vec![
        LinkSpec::Addr(addr),
        LinkSpec::LegacyId(relay.keys.rsa_id),
        LinkSpec::Ed25519Id(relay.keys.ed25519_id()),
    ]
}
