//! A client link to one relay over TLS (tor-spec §2–4): the core's
//! `ClientMux` driven by a task that owns it; other tasks use a
//! `ChannelHandle` to create and extend circuits and to open streams.
//!
//! Streams stay bounded both ways: a stream's events go through a small
//! channel, and data is read out of the mux only when that channel has
//! room (so SENDMEs follow the reader); `write` resolves once the mux took
//! every byte (so a writer waits while windows are closed).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use peersm_core::cell::{LinkSpec, RawCell};
use peersm_core::channel::tor_certs::RelayIdentity;
use peersm_core::channel::{Handshake, LinkInitiator, ResponderCheck};
use peersm_core::circuit::{LinkSide, StreamTarget};
use peersm_core::client::{ClientMux, MuxEvent};
use peersm_core::rng::OsRng;
use tokio::sync::{mpsc, oneshot};

use crate::error::{Context, NodeError, Result};
use crate::link::{self, tls, unix_now, Outbox};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// Events a stream's reader may have waiting.
const STREAM_EVENTS: usize = 16;
/// Bytes read out of the mux per data event.
const READ_CHUNK: usize = 64 * 1024;
const COMMANDS: usize = 64;
const CELL_BATCHES: usize = 64;

type Reply<T> = oneshot::Sender<Result<T>>;

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
        events: mpsc::Sender<StreamEvent>,
        reply: Reply<u16>,
    },
    Write {
        circ: u32,
        stream: u16,
        data: Vec<u8>,
        reply: Reply<()>,
    },
    /// A stream's reader has room again.
    Pull {
        circ: u32,
        stream: u16,
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

/// Drives a client link's task. Cloneable; the link closes when all
/// handles are dropped.
#[derive(Clone)]
pub struct ChannelHandle {
    commands: mpsc::Sender<Command>,
    pub relay: RelayIdentity,
    pub addr: SocketAddr,
}

impl ChannelHandle {
    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| NodeError::Closed("link"))?;
        rx.await.map_err(|_| NodeError::Closed("link"))?
    }

    /// A one-hop circuit with CREATE_FAST.
    pub async fn create_fast(&self) -> Result<u32> {
        self.ask(|reply| Command::CreateFast { reply }).await
    }

    /// A one-hop circuit with CREATE2/ntor.
    pub async fn create_ntor(&self, onion_key: [u8; 32]) -> Result<u32> {
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
    ) -> Result<()> {
        self.ask(|reply| Command::Extend {
            circ,
            specs,
            relay_id,
            onion_key,
            reply,
        })
        .await
    }

    /// Opens a stream at the circuit's last hop; resolves once CONNECTED
    /// (or refused). Data and the end arrive on the returned receiver.
    pub async fn begin(
        &self,
        circ: u32,
        target: StreamTarget,
    ) -> Result<(u16, mpsc::Receiver<StreamEvent>)> {
        let (events, rx) = mpsc::channel(STREAM_EVENTS);
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

    /// Sends bytes on a stream; resolves once the circuit took them all
    /// (later while its windows are closed).
    pub async fn send(&self, circ: u32, stream: u16, data: Vec<u8>) -> Result<()> {
        self.ask(|reply| Command::Write {
            circ,
            stream,
            data,
            reply,
        })
        .await
    }

    pub fn end(&self, circ: u32, stream: u16) {
        let _ = self.commands.try_send(Command::End { circ, stream });
    }

    pub fn destroy(&self, circ: u32) {
        let _ = self.commands.try_send(Command::Destroy { circ });
    }

    pub fn is_closed(&self) -> bool {
        self.commands.is_closed()
    }

    /// Sends a cell as is, bypassing every circuit (for probing a relay's
    /// handling of malformed input).
    pub async fn send_raw(&self, cell: RawCell) -> Result<()> {
        self.commands
            .send(Command::Raw(cell))
            .await
            .map_err(|_| NodeError::Closed("link"))
    }

    /// Whether circuit `circ` still exists on this link.
    pub async fn circuit_alive(&self, circ: u32) -> bool {
        self.ask(|reply| Command::Alive { circ, reply })
            .await
            .unwrap_or(false)
    }
}

/// Connects to a relay, checks that its certificates prove the expected
/// identities, and starts the link's task.
pub async fn connect(
    addr: SocketAddr,
    rsa_id: Option<[u8; 20]>,
    ed25519_id: Option<[u8; 32]>,
) -> Result<ChannelHandle> {
    let (tls, cert) = tls::connect(addr).await.context(format!("TLS to {addr}"))?;
    let check = ResponderCheck::TorRelay {
        tls_cert: cert,
        now: unix_now(),
        rsa_id,
        ed25519_id,
    };
    let (mut rx, mut tx) = tls::split(tls);
    let (opened, early) = link::handshake(
        &mut rx,
        &mut tx,
        Handshake::initiator(LinkInitiator::new(None, check)?),
        None,
        HANDSHAKE_TIMEOUT,
    )
    .await
    .context(format!("handshake with {addr}"))?;
    let relay = opened
        .relay
        .ok_or(NodeError::invalid("relay", "it proved no identity"))?;
    let (commands, command_rx) = mpsc::channel(COMMANDS);
    let outbox = Outbox::new();
    let (cells_tx, cells_rx) = mpsc::channel(CELL_BATCHES);
    let link_outbox = outbox.clone();
    tokio::spawn(async move {
        if let Err(e) = link::run(rx, tx, link_outbox, cells_tx, |cells| cells).await {
            tracing::info!(%addr, "link ended: {e}");
        }
    });
    let mut actor = Actor {
        mux: ClientMux::new(LinkSide::Initiator, &mut OsRng)?,
        outbox,
        waker: commands.downgrade(),
        hops: BTreeMap::new(),
        begins: BTreeMap::new(),
        streams: BTreeMap::new(),
        writes: BTreeMap::new(),
        raw: Vec::new(),
    };
    actor.mux_cells(early);
    tokio::spawn(actor.run(cells_rx, command_rx, addr));
    Ok(ChannelHandle {
        commands,
        relay,
        addr,
    })
}

enum HopWaiter {
    Create(Reply<u32>),
    Extend(Reply<()>),
}

struct StreamSink {
    tx: mpsc::Sender<StreamEvent>,
    /// A waker waits for room in `tx`.
    blocked: bool,
}

struct Actor {
    mux: ClientMux,
    outbox: Arc<Outbox>,
    /// Wakes us when a blocked reader has room (weak: the link closes
    /// when every handle is gone).
    waker: mpsc::WeakSender<Command>,
    hops: BTreeMap<u32, HopWaiter>,
    begins: BTreeMap<(u32, u16), Reply<u16>>,
    streams: BTreeMap<(u32, u16), StreamSink>,
    /// Bytes a writer gave that the stream had no room for yet.
    writes: BTreeMap<(u32, u16), (Vec<u8>, Reply<()>)>,
    /// Cells sent as is with `send_raw`.
    raw: Vec<RawCell>,
}

impl Actor {
    async fn run(
        mut self,
        mut cells: mpsc::Receiver<Vec<RawCell>>,
        mut commands: mpsc::Receiver<Command>,
        addr: SocketAddr,
    ) {
        let why = loop {
            tokio::select! {
                batch = cells.recv() => match batch {
                    Some(batch) => self.mux_cells(batch),
                    None => break "the relay closed the link",
                },
                cmd = commands.recv() => match cmd {
                    Some(cmd) => self.on_command(cmd),
                    None => break "no more users",
                },
            }
            self.route_events();
            let mut out = std::mem::take(&mut self.raw);
            out.extend(self.mux.poll_cells());
            self.outbox.push(out);
        };
        tracing::info!(%addr, "link closed: {why}");
        self.mux.link_closed();
        self.route_events();
        self.outbox.close();
    }

    fn mux_cells(&mut self, cells: Vec<RawCell>) {
        for cell in cells {
            if cell.circ_id != 0 {
                self.mux.handle_cell(cell);
            }
        }
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::CreateFast { reply } => match self.mux.create_fast() {
                Ok(circ) => drop(self.hops.insert(circ, HopWaiter::Create(reply))),
                Err(e) => drop(reply.send(Err(e.into()))),
            },
            Command::CreateNtor {
                relay_id,
                onion_key,
                reply,
            } => match self.mux.create_ntor(relay_id, onion_key) {
                Ok(circ) => drop(self.hops.insert(circ, HopWaiter::Create(reply))),
                Err(e) => drop(reply.send(Err(e.into()))),
            },
            Command::Extend {
                circ,
                specs,
                relay_id,
                onion_key,
                reply,
            } => match self.mux.extend(circ, specs, relay_id, onion_key) {
                Ok(()) => drop(self.hops.insert(circ, HopWaiter::Extend(reply))),
                Err(e) => drop(reply.send(Err(e.into()))),
            },
            Command::Begin {
                circ,
                target,
                events,
                reply,
            } => match self.mux.begin(circ, target) {
                Ok(stream) => {
                    self.begins.insert((circ, stream), reply);
                    self.streams.insert(
                        (circ, stream),
                        StreamSink {
                            tx: events,
                            blocked: false,
                        },
                    );
                }
                Err(e) => drop(reply.send(Err(e.into()))),
            },
            Command::Write {
                circ,
                stream,
                data,
                reply,
            } => {
                self.writes.insert((circ, stream), (data, reply));
                self.push_write(circ, stream);
            }
            Command::Pull { circ, stream } => {
                if let Some(s) = self.streams.get_mut(&(circ, stream)) {
                    s.blocked = false;
                }
                self.deliver(circ, stream);
            }
            Command::End { circ, stream } => {
                self.streams.remove(&(circ, stream));
                self.writes.remove(&(circ, stream));
                self.mux.end(circ, stream);
            }
            Command::Destroy { circ } => self.mux.destroy(circ),
            Command::Raw(cell) => self.raw.push(cell),
            Command::Alive { circ, reply } => {
                let _ = reply.send(Ok(self.mux.is_alive(circ)));
            }
        }
    }

    /// Gives the mux what a writer offered, as far as it takes it.
    fn push_write(&mut self, circ: u32, stream: u16) {
        let key = (circ, stream);
        let Some((data, _)) = self.writes.get_mut(&key) else {
            return;
        };
        match self.mux.write(circ, stream, data) {
            Ok(n) => {
                data.drain(..n);
                if data.is_empty() {
                    if let Some((_, reply)) = self.writes.remove(&key) {
                        let _ = reply.send(Ok(()));
                    }
                }
            }
            Err(e) => {
                if let Some((_, reply)) = self.writes.remove(&key) {
                    let _ = reply.send(Err(e.into()));
                }
            }
        }
    }

    /// Moves received data to the stream's reader while it has room.
    fn deliver(&mut self, circ: u32, stream: u16) {
        let Some(sink) = self.streams.get_mut(&(circ, stream)) else {
            return;
        };
        if sink.blocked {
            return;
        }
        loop {
            let permit = match sink.tx.clone().try_reserve_owned() {
                Ok(p) => p,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    // Come back when the reader took something.
                    sink.blocked = true;
                    let (tx, waker) = (sink.tx.clone(), self.waker.clone());
                    tokio::spawn(async move {
                        if tx.reserve().await.is_ok() {
                            if let Some(w) = waker.upgrade() {
                                let _ = w.send(Command::Pull { circ, stream }).await;
                            }
                        }
                    });
                    return;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            };
            match self.mux.read(circ, stream, READ_CHUNK) {
                Ok(data) if !data.is_empty() => drop(permit.send(StreamEvent::Data(data))),
                _ => return,
            }
        }
    }

    fn route_events(&mut self) {
        while let Some(e) = self.mux.poll_event() {
            match e {
                MuxEvent::HopAdded { circ, .. } => match self.hops.remove(&circ) {
                    Some(HopWaiter::Create(reply)) => drop(reply.send(Ok(circ))),
                    Some(HopWaiter::Extend(reply)) => drop(reply.send(Ok(()))),
                    None => {}
                },
                MuxEvent::HopFailed { circ, why } => {
                    let err = || NodeError::CircuitFailed(why.clone());
                    match self.hops.remove(&circ) {
                        Some(HopWaiter::Create(reply)) => drop(reply.send(Err(err()))),
                        Some(HopWaiter::Extend(reply)) => drop(reply.send(Err(err()))),
                        None => {}
                    }
                }
                MuxEvent::StreamOpened { circ, stream } => {
                    if let Some(reply) = self.begins.remove(&(circ, stream)) {
                        let _ = reply.send(Ok(stream));
                    }
                    if let Some(s) = self.streams.get(&(circ, stream)) {
                        let _ = s.tx.try_send(StreamEvent::Connected);
                    }
                }
                // This client never sends DB_QUERY (the native ORDB runs
                // on the peer core, not on this channel).
                MuxEvent::DbConnected { .. } => {}
                MuxEvent::StreamReadable { circ, stream } => self.deliver(circ, stream),
                MuxEvent::StreamWritable { circ, stream } => self.push_write(circ, stream),
                MuxEvent::StreamEnded {
                    circ,
                    stream,
                    reason,
                    ..
                } => {
                    if let Some(reply) = self.begins.remove(&(circ, stream)) {
                        let _ = reply.send(Err(NodeError::stream_refused(reason)));
                    }
                    if let Some((_, reply)) = self.writes.remove(&(circ, stream)) {
                        let _ = reply.send(Err(NodeError::stream_refused(reason)));
                    }
                    if let Some(s) = self.streams.remove(&(circ, stream)) {
                        // After every data event already queued for it.
                        tokio::spawn(async move {
                            let _ = s.tx.send(StreamEvent::Ended { reason }).await;
                        });
                    }
                }
                MuxEvent::CircuitClosed { circ, reason } => match self.hops.remove(&circ) {
                    Some(HopWaiter::Create(reply)) => {
                        drop(reply.send(Err(NodeError::circuit_destroyed(reason))))
                    }
                    Some(HopWaiter::Extend(reply)) => {
                        drop(reply.send(Err(NodeError::circuit_destroyed(reason))))
                    }
                    None => {}
                },
                // Peersm control messages come from bridges, not Tor relays.
                MuxEvent::Control { .. } => {}
            }
        }
    }
}
