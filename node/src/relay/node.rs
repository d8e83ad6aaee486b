//! The task that owns a relay's sans-IO core (`RelayPeer`): every link
//! feeds it cells through one bounded channel and gets cells back through
//! its `Outbox`; the task starts what the core asks for (a link to the next
//! relay of an EXTEND2, the exit's sockets, federation with a bridge) and
//! feeds the results back. One owner, no locks around circuit state.
//!
//! Exit sockets follow the core's stream queues: a socket is read only
//! with a budget the core grants from the stream's room (so a closed
//! window stops the reading), and what the client sent is read out of the
//! core only as the socket's writer takes it (so SENDMEs follow it).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use peersm_core::cell::{end_reason, RawCell};
use peersm_core::channel::LinkOpened;
use peersm_core::circuit::LinkSide;
use peersm_core::mesh::bridge::LinkIdentity;
use peersm_core::peer::{RelayPeer, RelayPeerEvent};
use peersm_core::router::{ExtendTarget, LinkPeer};
use peersm_core::service::{ExitEvent, ExitStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot};

use super::keys::RelayKeys;
use super::outbound;
use crate::error::{NodeError, Result};
use crate::link::{self, now_ms, FrameRx, FrameTx, LinkEnd, Outbox};

pub type LinkId = u64;

/// Inputs queued for the core before senders wait.
const INPUT_CAPACITY: usize = 256;
/// Inputs handled before the task sends what they produced.
const INPUTS_PER_BATCH: usize = 64;
/// Bytes read from the core per write to an exit socket.
const EXIT_WRITE_CHUNK: usize = 32 * 1024;
/// Bytes read from an exit socket at once (at most the budget).
const EXIT_READ_CHUNK: usize = 16 * 1024;
/// Chunks waiting for an exit socket's writer.
const EXIT_WRITE_QUEUE: usize = 4;
const EXIT_CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// Outbound links being set up at once (each bounded by
/// `outbound::LINK_SETUP_TIMEOUT`); beyond that, extends fail at once
/// rather than pile up sockets.
const MAX_PENDING_CONNECTS: usize = 64;
/// How often links are checked for having carried no circuit for
/// `peersm_core::peer::relay::LINK_IDLE_MS`.
const IDLE_CHECK: Duration = Duration::from_secs(30);

/// A link the core should know about: what its handshake proved.
pub struct LinkInfo {
    pub side: LinkSide,
    pub peer: LinkPeer,
    /// An authenticated tab or bridge (may use the mesh).
    pub identity: Option<LinkIdentity>,
    /// Set for a federation link we opened.
    pub federation: Option<FederationInfo>,
}

pub struct FederationInfo {
    pub their: LinkIdentity,
    pub ntor_key: [u8; 32],
    pub url: String,
    pub my_url: String,
}

impl LinkInfo {
    /// What a relay handshake proved (the other end's RSA and Ed25519 ids).
    pub fn from_opened(opened: &LinkOpened) -> LinkInfo {
        let peer = match (&opened.relay, &opened.peer) {
            (Some(r), _) => LinkPeer {
                id: Some(r.rsa_id),
                ed25519_id: Some(r.ed25519_id),
            },
            (None, Some(p)) => LinkPeer {
                id: p.key.tor_identity_digest().ok(),
                ed25519_id: None,
            },
            _ => LinkPeer::default(),
        };
        let identity = opened.peer.as_ref().map(|p| LinkIdentity {
            id: p.id,
            modulus: p.key.modulus(),
            fingerprint: p.key.tor_identity_digest().unwrap_or_default(),
        });
        LinkInfo {
            side: opened.side,
            peer,
            identity,
            federation: None,
        }
    }
}

enum Input {
    LinkUp {
        link: LinkId,
        info: LinkInfo,
        outbox: Arc<Outbox>,
    },
    Cells {
        link: LinkId,
        cells: Vec<RawCell>,
    },
    LinkDown {
        link: LinkId,
    },
    /// An outbound link is up (its `LinkUp` follows) or failed.
    ConnectDone {
        target: ExtendTarget,
        ok: bool,
    },
    Exit(ExitInput),
    Status(oneshot::Sender<CoreStatus>),
    SetDocument {
        path: String,
        body: Vec<u8>,
    },
    TrustBridge {
        fingerprint: [u8; 20],
    },
    /// Time to close links that carry no circuit.
    CloseIdleLinks,
    Federating {
        url: String,
    },
    FederationFailed {
        url: String,
    },
}

enum ExitInput {
    Resolved {
        stream: ExitStream<LinkId>,
        addrs: Result<Vec<IpAddr>, ()>,
    },
    Connected {
        stream: ExitStream<LinkId>,
        addr: SocketAddr,
        pipe: ExitPipe,
    },
    Failed {
        stream: ExitStream<LinkId>,
        reason: u8,
    },
    /// Bytes the server sent, read with a budget the core granted.
    Data {
        stream: ExitStream<LinkId>,
        data: Vec<u8>,
    },
    /// The socket's writer took a chunk: more may be read for it.
    Drained { stream: ExitStream<LinkId> },
    /// The server closed its side (or the socket failed).
    Eof { stream: ExitStream<LinkId> },
}

/// What /status reports of the core.
#[derive(Debug, Clone, Default)]
pub struct CoreStatus {
    pub mesh_peers: usize,
    pub introductions: u64,
    pub federation: Vec<(String, usize)>,
    pub circuits: usize,
    pub links: usize,
}

/// What the task needs beyond the core.
pub struct NodeContext {
    pub keys: Arc<RelayKeys>,
    /// Source address of exit connections.
    pub exit_bind: Option<IpAddr>,
    /// Where tabs reach this bridge (said to federated bridges).
    pub public_url: std::sync::RwLock<String>,
}

/// Talks to a relay's core task. Cloneable.
#[derive(Clone)]
pub struct NodeHandle {
    tx: mpsc::Sender<Input>,
    next_link: Arc<AtomicU64>,
    ctx: Arc<NodeContext>,
}

struct ExitPipe {
    /// Chunks for the socket's writer.
    to_server: mpsc::Sender<Vec<u8>>,
    /// Read budgets for the socket's reader (one outstanding at a time).
    budget: mpsc::Sender<usize>,
}

struct ExitState {
    pipe: ExitPipe,
    /// The reader waits for room in the stream.
    reader_parked: bool,
}

struct Task {
    peer: RelayPeer<LinkId>,
    outboxes: BTreeMap<LinkId, Arc<Outbox>>,
    exits: BTreeMap<ExitStream<LinkId>, ExitState>,
    /// Outbound links being set up, one per target (identity and
    /// addresses): a slow or silent address holds up only its own.
    connecting: std::collections::BTreeSet<ExtendTarget>,
    handle: NodeHandle,
}

impl NodeHandle {
    /// Starts the task owning `peer`.
    pub fn spawn(peer: RelayPeer<LinkId>, ctx: NodeContext) -> NodeHandle {
        let (tx, rx) = mpsc::channel(INPUT_CAPACITY);
        let handle = NodeHandle {
            tx,
            next_link: Arc::new(AtomicU64::new(1)),
            ctx: Arc::new(ctx),
        };
        let task = Task {
            peer,
            outboxes: BTreeMap::new(),
            exits: BTreeMap::new(),
            connecting: std::collections::BTreeSet::new(),
            handle: handle.clone(),
        };
        tokio::spawn(task.run(rx));
        let ticker = handle.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(IDLE_CHECK);
            loop {
                every.tick().await;
                // The task ends only with the process; so does this.
                if ticker.tx.send(Input::CloseIdleLinks).await.is_err() {
                    return;
                }
            }
        });
        handle
    }

    pub fn keys(&self) -> &Arc<RelayKeys> {
        &self.ctx.keys
    }

    pub fn set_public_url(&self, url: String) {
        if let Ok(mut u) = self.ctx.public_url.write() {
            *u = url;
        }
    }

    pub fn public_url(&self) -> String {
        self.ctx
            .public_url
            .read()
            .map(|u| u.clone())
            .unwrap_or_default()
    }

    async fn input(&self, input: Input) {
        // The task only ends with the process.
        let _ = self.tx.send(input).await;
    }

    /// Runs an open link until it ends: the core learns of it, gets its
    /// cells, and forgets it. `early`: cells that came with the handshake.
    pub async fn run_link<R: FrameRx, T: FrameTx>(
        &self,
        rx: R,
        tx: T,
        info: LinkInfo,
        early: Vec<RawCell>,
    ) -> Result<()> {
        self.run_link_with(rx, tx, info, early, Outbox::new()).await
    }

    /// `run_link` with an outbox the caller keeps (to close the link).
    pub async fn run_link_with<R: FrameRx, T: FrameTx>(
        &self,
        rx: R,
        tx: T,
        info: LinkInfo,
        early: Vec<RawCell>,
        outbox: Arc<Outbox>,
    ) -> Result<()> {
        let link = self.next_link.fetch_add(1, Ordering::Relaxed);
        self.input(Input::LinkUp {
            link,
            info,
            outbox: outbox.clone(),
        })
        .await;
        if !early.is_empty() {
            self.input(Input::Cells { link, cells: early }).await;
        }
        let result = link::run(rx, tx, outbox, self.tx.clone(), move |cells| Input::Cells {
            link,
            cells,
        })
        .await;
        self.input(Input::LinkDown { link }).await;
        result
    }

    /// What the core reports for /status.
    pub async fn status(&self) -> CoreStatus {
        let (reply, rx) = oneshot::channel();
        self.input(Input::Status(reply)).await;
        rx.await.unwrap_or_default()
    }

    /// Replaces a document the relay's directory serves.
    pub async fn set_document(&self, path: &str, body: Vec<u8>) {
        self.input(Input::SetDocument {
            path: path.to_string(),
            body,
        })
        .await;
    }

    /// The operator trusts this bridge (`--peer-bridge`, `--trust-bridge`).
    pub async fn trust_bridge(&self, fingerprint: [u8; 20]) {
        self.input(Input::TrustBridge { fingerprint }).await;
    }

    pub async fn federating(&self, url: &str) {
        self.input(Input::Federating {
            url: url.to_string(),
        })
        .await;
    }

    pub async fn federation_failed(&self, url: &str) {
        self.input(Input::FederationFailed {
            url: url.to_string(),
        })
        .await;
    }
}

impl Task {
    async fn run(mut self, mut rx: mpsc::Receiver<Input>) {
        while let Some(input) = rx.recv().await {
            self.on_input(input);
            // Take what else is waiting before sending, so cells leave in
            // batches (one frame or TLS write for many cells).
            for _ in 0..INPUTS_PER_BATCH {
                match rx.try_recv() {
                    Ok(input) => self.on_input(input),
                    Err(_) => break,
                }
            }
            self.flush();
        }
    }

    fn on_input(&mut self, input: Input) {
        let now = now_ms();
        match input {
            Input::LinkUp { link, info, outbox } => {
                self.outboxes.insert(link, outbox.clone());
                let added = match info.federation {
                    Some(f) => self
                        .peer
                        .add_federation_link(link, f.their, f.ntor_key, f.url, f.my_url)
                        .map_err(NodeError::from),
                    None => self
                        .peer
                        .add_link(link, info.side, info.peer, info.identity)
                        .map_err(NodeError::from),
                };
                if let Err(e) = added {
                    outbox.close_with(LinkEnd::new(link::EndKind::Away, e.to_string()));
                }
                self.peer.drive(now);
            }
            Input::Cells { link, cells } => self.peer.handle_cells(link, cells, now),
            Input::LinkDown { link } => {
                self.outboxes.remove(&link);
                self.peer.remove_link(link, now);
            }
            Input::ConnectDone { target, ok } => {
                self.connecting.remove(&target);
                if !ok {
                    self.connect_failed(&target, now);
                }
            }
            Input::Exit(e) => self.on_exit_input(e, now),
            Input::Status(reply) => {
                let (mesh_peers, introductions, federation) = self.peer.mesh_status();
                let _ = reply.send(CoreStatus {
                    mesh_peers,
                    introductions,
                    federation,
                    circuits: self.peer.core.router.circuit_count(),
                    links: self.peer.core.link_count(),
                });
            }
            Input::SetDocument { path, body } => self.peer.set_document(&path, body),
            Input::TrustBridge { fingerprint } => self.peer.trust_bridge(fingerprint),
            Input::CloseIdleLinks => {
                let idle = self
                    .peer
                    .idle_links(now, peersm_core::peer::relay::LINK_IDLE_MS);
                for link in idle {
                    if let Some(o) = self.outboxes.get(&link) {
                        tracing::debug!(link, "closing a link that carries no circuit");
                        o.close_with(LinkEnd::new(link::EndKind::Normal, "idle: no circuits"));
                    }
                }
            }
            Input::Federating { url } => self.peer.federating_with(&url),
            Input::FederationFailed { url } => self.peer.federation_failed(&url),
        }
        self.on_events();
    }

    /// Sends what the core produced, link by link.
    fn flush(&mut self) {
        for (link, cells) in self.peer.transmit() {
            if let Some(o) = self.outboxes.get(&link) {
                o.push(cells);
            }
        }
    }

    fn on_events(&mut self) {
        while let Some(e) = self.peer.poll_event() {
            match e {
                RelayPeerEvent::Connect { target } => self.connect(target, now_ms()),
                RelayPeerEvent::Exit(e) => self.on_exit_event(e),
                RelayPeerEvent::Federate { url, fingerprint } => {
                    tokio::spawn(crate::bridge::federation::federate(
                        url,
                        fingerprint,
                        self.handle.clone(),
                        Some(crate::bridge::federation::DISCOVERED_ATTEMPTS),
                    ));
                }
                RelayPeerEvent::FederationLost { link, url } => {
                    tracing::info!(%url, "federation circuit lost; closing its link");
                    if let Some(o) = self.outboxes.get(&link) {
                        o.close_with(LinkEnd::new(link::EndKind::Normal, "federation lost"));
                    }
                }
            }
        }
    }

    /// Opens a link to the relay an EXTEND2 (or a join) named.
    /// Sets up a link to `target` unless one is already being set up;
    /// its end comes back as `ConnectDone`.
    fn connect(&mut self, target: ExtendTarget, now: u64) {
        if self.connecting.contains(&target) {
            return;
        }
        if self.connecting.len() >= MAX_PENDING_CONNECTS {
            tracing::info!("too many links being set up; an extend fails");
            return self.connect_failed(&target, now);
        }
        self.connecting.insert(target.clone());
        let handle = self.handle.clone();
        tokio::spawn(async move {
            match outbound::connect(&handle.ctx.keys, &target).await {
                Ok((rx, tx, opened, early)) => {
                    let info = LinkInfo::from_opened(&opened);
                    handle.input(Input::ConnectDone { target, ok: true }).await;
                    if let Err(e) = handle.run_link(rx, tx, info, early).await {
                        tracing::info!("link to a next hop ended: {e}");
                    }
                }
                Err(e) => {
                    tracing::info!(relay = %hex::encode_upper(target.id), "cannot link to the next hop: {e}");
                    handle.input(Input::ConnectDone { target, ok: false }).await;
                }
            }
        });
    }

    /// The extends that named `target` fail.
    fn connect_failed(&mut self, target: &ExtendTarget, now: u64) {
        self.peer.connect_failed(target, now);
    }

    fn on_exit_event(&mut self, e: ExitEvent<LinkId>) {
        match e {
            ExitEvent::Resolve { stream, host, port } => {
                let handle = self.handle.clone();
                tokio::spawn(async move {
                    let addrs = tokio::net::lookup_host((host.as_str(), port))
                        .await
                        .map(|a| a.map(|s| s.ip()).collect())
                        .map_err(|_| ());
                    handle
                        .input(Input::Exit(ExitInput::Resolved { stream, addrs }))
                        .await;
                });
            }
            ExitEvent::Connect { stream, addr } => {
                let handle = self.handle.clone();
                tokio::spawn(open_exit_socket(handle, stream, addr));
            }
            ExitEvent::Readable { stream } => self.feed_server(stream),
            ExitEvent::Writable { stream } => self.grant_budget(stream),
            ExitEvent::Closed { stream } => {
                // Dropping the pipe ends the socket's tasks.
                self.exits.remove(&stream);
            }
        }
    }

    fn on_exit_input(&mut self, e: ExitInput, now: u64) {
        match e {
            ExitInput::Resolved { stream, addrs } => self.peer.exit_resolved(stream, addrs, now),
            ExitInput::Connected { stream, addr, pipe } => {
                if self.peer.exit_connected(stream, addr, now) {
                    self.exits.insert(
                        stream,
                        ExitState {
                            pipe,
                            reader_parked: true,
                        },
                    );
                    self.grant_budget(stream);
                    self.feed_server(stream);
                }
            }
            ExitInput::Failed { stream, reason } => {
                self.peer.exit_connect_failed(stream, reason, now)
            }
            ExitInput::Data { stream, data } => {
                let taken = self.peer.exit_write(stream, &data, now);
                if taken < data.len() {
                    // The budget was the room: this cannot happen unless the
                    // stream closed meanwhile.
                    tracing::debug!(taken, offered = data.len(), "exit data refused");
                }
                if let Some(s) = self.exits.get_mut(&stream) {
                    s.reader_parked = true;
                }
                self.grant_budget(stream);
            }
            ExitInput::Drained { stream } => self.feed_server(stream),
            ExitInput::Eof { stream } => self.peer.exit_closed(stream, now),
        }
    }

    /// Lets the socket's reader read as much as the stream has room for.
    fn grant_budget(&mut self, stream: ExitStream<LinkId>) {
        let room = self.peer.exit_room(stream);
        let Some(s) = self.exits.get_mut(&stream) else {
            return;
        };
        if s.reader_parked && room > 0 && s.pipe.budget.try_send(room).is_ok() {
            s.reader_parked = false;
        }
    }

    /// Moves the client's bytes to the socket's writer while it has room.
    fn feed_server(&mut self, stream: ExitStream<LinkId>) {
        let now = now_ms();
        loop {
            let Some(s) = self.exits.get(&stream) else {
                return;
            };
            let Ok(permit) = s.pipe.to_server.clone().try_reserve_owned() else {
                return; // Drained comes when the writer took a chunk.
            };
            let data = self.peer.exit_read(stream, EXIT_WRITE_CHUNK, now);
            if data.is_empty() {
                return;
            }
            permit.send(data);
        }
    }
}

/// Connects an exit stream's socket (from the configured address) and
/// starts its reader and writer.
async fn open_exit_socket(handle: NodeHandle, stream: ExitStream<LinkId>, addr: SocketAddr) {
    let connected = tokio::time::timeout(
        EXIT_CONNECT_TIMEOUT,
        connect_from(addr, handle.ctx.exit_bind),
    )
    .await;
    let sock = match connected {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            let reason = if e.kind() == std::io::ErrorKind::ConnectionRefused {
                end_reason::CONNECTREFUSED
            } else {
                end_reason::NOROUTE
            };
            return handle
                .input(Input::Exit(ExitInput::Failed { stream, reason }))
                .await;
        }
        Err(_) => {
            return handle
                .input(Input::Exit(ExitInput::Failed {
                    stream,
                    reason: end_reason::TIMEOUT,
                }))
                .await
        }
    };
    let _ = sock.set_nodelay(true);
    let (mut rd, mut wr) = sock.into_split();
    let (to_server, mut chunks) = mpsc::channel::<Vec<u8>>(EXIT_WRITE_QUEUE);
    let (budget, mut budgets) = mpsc::channel::<usize>(1);
    let pipe = ExitPipe { to_server, budget };
    handle
        .input(Input::Exit(ExitInput::Connected { stream, addr, pipe }))
        .await;
    let writer_handle = handle.clone();
    tokio::spawn(async move {
        while let Some(data) = chunks.recv().await {
            if wr.write_all(&data).await.is_err() {
                break;
            }
            writer_handle
                .input(Input::Exit(ExitInput::Drained { stream }))
                .await;
        }
        let _ = wr.shutdown().await;
    });
    let mut buf = vec![0u8; EXIT_READ_CHUNK];
    while let Some(allowed) = budgets.recv().await {
        let max = allowed.clamp(1, EXIT_READ_CHUNK);
        match rd.read(buf.get_mut(..max).unwrap_or_default()).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let data = buf.get(..n).unwrap_or_default().to_vec();
                handle
                    .input(Input::Exit(ExitInput::Data { stream, data }))
                    .await;
            }
        }
    }
    handle.input(Input::Exit(ExitInput::Eof { stream })).await;
}

/// Connects to `addr`, from `bind` when given (so that servers, and tests,
/// see exit traffic come from one known address).
async fn connect_from(addr: SocketAddr, bind: Option<IpAddr>) -> std::io::Result<TcpStream> {
    let Some(ip) = bind else {
        return TcpStream::connect(addr).await;
    };
    let socket = if ip.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.bind(SocketAddr::new(ip, 0))?;
    socket.connect(addr).await
}
