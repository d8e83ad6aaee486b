//! Links on tokio: one handshake driver (`handshake`) for a `Handshake` of
//! either side, and one cell pump (`run`) for an open link, over any
//! framed transport — a TLS byte stream cut into whole cells (`tls`) or
//! WebSocket messages (`ws`).
//!
//! After the handshake a link is an `Outbox` (cells the core wants sent;
//! a writer task drains it in batches) and a reader that hands decoded
//! cells to whoever owns the link through a bounded channel, so a slow
//! core slows the socket rather than growing a queue.

pub mod tls;
pub mod ws;

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use peersm_core::cell::{CircIdLen, RawCell};
use peersm_core::channel::{decode_frame, encode_cells, Handshake, HandshakeEvent, LinkOpened};
use tokio::sync::{mpsc, watch, Notify};

use crate::error::{NodeError, Result};

/// Frames in: a WebSocket message, or whole cells cut from a TLS stream.
pub trait FrameRx: Send {
    /// The next frame; `Ok(None)` once the other end closed. Cancel-safe.
    fn recv(&mut self) -> impl Future<Output = Result<Option<Vec<u8>>>> + Send;
}

/// Frames out.
pub trait FrameTx: Send + 'static {
    fn send(&mut self, frame: Vec<u8>) -> impl Future<Output = Result<()>> + Send;
    /// Cells per frame (a WebSocket message of ~16 KiB holds 31); `None`:
    /// a byte stream, any number.
    fn cells_per_frame(&self) -> Option<usize>;
    /// Closes our side, saying why where the transport can.
    fn close(&mut self, end: Option<LinkEnd>) -> impl Future<Output = ()> + Send;
}

/// Why a link ends, for the log and for transports that can say it (a
/// WebSocket close code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkEnd {
    pub kind: EndKind,
    pub why: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndKind {
    /// Closed on purpose, by either side.
    Normal,
    /// The connection went away.
    Away,
    /// The other end broke the protocol.
    Protocol,
    /// The other end sent something links never carry (text frames).
    Unsupported,
    /// A rule of ours (a handshake that took too long).
    Policy,
    /// The transport itself failed (a message too big, a broken frame).
    Transport,
}

impl LinkEnd {
    pub fn new(kind: EndKind, why: impl Into<String>) -> Self {
        LinkEnd {
            kind,
            why: why.into(),
        }
    }

    /// How a link that failed with `e` ends.
    pub fn from_error(e: &NodeError) -> Self {
        let kind = match e {
            NodeError::Invalid { what: "frame", .. } => EndKind::Unsupported,
            NodeError::Invalid { .. } | NodeError::Handshake(_) => EndKind::Protocol,
            NodeError::Timeout(_) => EndKind::Policy,
            NodeError::WebSocket(_) => EndKind::Transport,
            _ => EndKind::Away,
        };
        LinkEnd::new(kind, e.to_string())
    }
}

/// Signs for a handshake (RSASSA-PKCS1-v1_5, SHA-256, identity key).
pub trait Signer: Send + Sync {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>>;
}

/// Drives `handshake` over the transport until the link is open, within
/// `limit`. Returns what the other end proved and the cells that came
/// with the handshake's end.
pub async fn handshake<R: FrameRx, T: FrameTx>(
    rx: &mut R,
    tx: &mut T,
    mut handshake: Handshake,
    signer: Option<&dyn Signer>,
    limit: Duration,
) -> Result<(LinkOpened, Vec<RawCell>)> {
    let drive = async {
        loop {
            while let Some(frame) = handshake.poll_transmit() {
                tx.send(frame).await?;
            }
            match handshake.poll_event() {
                Some(HandshakeEvent::SignatureNeeded(message)) => {
                    let signer = signer.ok_or(NodeError::invalid(
                        "handshake",
                        "a signature was asked of an anonymous link",
                    ))?;
                    handshake.handle_signature(signer.sign(&message)?)?;
                }
                Some(HandshakeEvent::Open(opened)) => {
                    while let Some(frame) = handshake.poll_transmit() {
                        tx.send(frame).await?;
                    }
                    let mut early = Vec::new();
                    while let Some(e) = handshake.poll_event() {
                        if let HandshakeEvent::Cell(c) = e {
                            early.push(c);
                        }
                    }
                    return Ok((*opened, early));
                }
                Some(HandshakeEvent::Cell(_)) => {}
                None => match rx.recv().await? {
                    Some(frame) => handshake.handle_frame(&frame)?,
                    None => return Err(NodeError::Closed("link during its handshake")),
                },
            }
        }
    };
    tokio::time::timeout(limit, drive)
        .await
        .map_err(|_| NodeError::Timeout("link handshake"))?
}

/// Cells waiting to go out on one link; the link's writer drains it.
pub struct Outbox {
    cells: Mutex<VecDeque<RawCell>>,
    ready: Notify,
    closed: watch::Sender<bool>,
    end: Mutex<Option<LinkEnd>>,
}

impl Default for Outbox {
    fn default() -> Self {
        Outbox {
            cells: Mutex::new(VecDeque::new()),
            ready: Notify::new(),
            closed: watch::channel(false).0,
            end: Mutex::new(None),
        }
    }
}

impl Outbox {
    pub fn new() -> Arc<Outbox> {
        Arc::new(Outbox::default())
    }

    pub fn push(&self, cells: Vec<RawCell>) {
        if cells.is_empty() || self.is_closed() {
            return;
        }
        if let Ok(mut q) = self.cells.lock() {
            q.extend(cells);
        }
        self.ready.notify_one();
    }

    /// Closes the link: the writer sends what is queued, then closes.
    pub fn close(&self) {
        self.closed.send_replace(true);
        self.ready.notify_one();
    }

    /// Closes the link saying why (the first reason given wins).
    pub fn close_with(&self, end: LinkEnd) {
        if let Ok(mut e) = self.end.lock() {
            e.get_or_insert(end);
        }
        self.close();
    }

    /// Why the link ended, if someone said.
    pub fn end(&self) -> Option<LinkEnd> {
        self.end.lock().ok().and_then(|e| e.clone())
    }

    pub fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }

    async fn wait_closed(&self) {
        let mut rx = self.closed.subscribe();
        let _ = rx.wait_for(|c| *c).await;
    }

    fn take(&self) -> Vec<RawCell> {
        self.cells
            .lock()
            .map(|mut q| q.drain(..).collect())
            .unwrap_or_default()
    }
}

/// Runs an open link: a writer task drains `outbox`; this future reads
/// frames and hands their cells to `sink` (wrapped by `wrap`), until the
/// other end closes, the link fails, or `outbox` is closed.
pub async fn run<R: FrameRx, T: FrameTx, M: Send + 'static>(
    mut rx: R,
    tx: T,
    outbox: Arc<Outbox>,
    sink: mpsc::Sender<M>,
    wrap: impl Fn(Vec<RawCell>) -> M,
) -> Result<()> {
    let writer = tokio::spawn(write_loop(tx, outbox.clone()));
    let result = loop {
        let frame = tokio::select! {
            f = rx.recv() => f,
            _ = outbox.wait_closed() => break Ok(()),
        };
        let frame = match frame {
            Ok(Some(f)) => f,
            Ok(None) => {
                outbox.close_with(LinkEnd::new(EndKind::Normal, "closed by the other end"));
                break Ok(());
            }
            Err(e) => {
                outbox.close_with(LinkEnd::from_error(&e));
                break Err(e);
            }
        };
        let cells = match decode_frame(&frame, CircIdLen::Four, |_| CircIdLen::Four) {
            Ok(c) => c,
            Err(e) => {
                let e = NodeError::from(e);
                outbox.close_with(LinkEnd::from_error(&e));
                break Err(e);
            }
        };
        if sink.send(wrap(cells)).await.is_err() {
            break Err(NodeError::Closed("link owner"));
        }
    };
    outbox.close();
    let _ = writer.await;
    result
}

async fn write_loop<T: FrameTx>(mut tx: T, outbox: Arc<Outbox>) {
    loop {
        let cells = outbox.take();
        if cells.is_empty() {
            if outbox.is_closed() {
                break;
            }
            outbox.ready.notified().await;
            continue;
        }
        let per_frame = tx.cells_per_frame().unwrap_or(cells.len()).max(1);
        for batch in cells.chunks(per_frame) {
            let frame = match encode_cells(batch, CircIdLen::Four) {
                Ok(f) => f,
                Err(e) => {
                    tracing::warn!("cannot encode cells: {e}");
                    continue;
                }
            };
            if let Err(e) = tx.send(frame).await {
                tracing::debug!("link write failed: {e}");
                outbox.close_with(LinkEnd::new(EndKind::Away, format!("send failed: {e}")));
                tx.close(outbox.end()).await;
                return;
            }
        }
    }
    tx.close(outbox.end()).await;
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch (the cores' clock).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
