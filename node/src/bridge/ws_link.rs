//! One tab's WebSocket link: binary frames in and out of the core's
//! `LinkResponder` (presenting the bridge's CERTS), then, once open, the
//! same channel loop as a relay's ORPort (`relay::inbound`): the bridge is
//! the tab's first hop. Anything that is not a well-formed binary frame of
//! cells closes this link, with the reason logged; other links carry on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::ws::{close_code, CloseFrame, Message, WebSocket};
use peersm_core::cell::{CircIdLen, RawCell};
use peersm_core::channel::{decode_frame, encode_cells, LinkResponder, ResponderEvent};
use peersm_core::crypto::PeerId;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::mesh::LinkPeer;
use super::registry::PeerRegistry;
use crate::relay::inbound::{run_channel, CellTransport};
use crate::relay::server::Relay;

/// Cells per WebSocket frame we send: about 16 KiB (docs/PROTOCOL.md
/// "Framing").
const CELLS_PER_FRAME: usize = 31;

/// A tab has this long to finish the link handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

/// Why a link ended, for the log and the close frame.
struct Closing {
    code: u16,
    reason: String,
}

impl Closing {
    fn new(code: u16, reason: impl Into<String>) -> Self {
        Closing {
            code,
            reason: reason.into(),
        }
    }
}

pub(super) async fn run(
    mut socket: WebSocket,
    remote: SocketAddr,
    registry: Arc<PeerRegistry>,
    relay: Arc<Relay>,
) {
    let link_no = registry.link_opened();
    let mut peer_id = None;
    let closing = drive(
        &mut socket,
        remote,
        &registry,
        &relay,
        link_no,
        &mut peer_id,
    )
    .await;
    registry.link_closed(link_no, peer_id);
    match closing.code {
        close_code::NORMAL | close_code::AWAY => {
            tracing::info!(%remote, peer = ?peer_id.map(|p| p.to_hex()), "link closed: {}", closing.reason)
        }
        _ => {
            tracing::warn!(%remote, peer = ?peer_id.map(|p| p.to_hex()), "closing link: {}", closing.reason)
        }
    }
    // Close reasons must fit a control frame (123 bytes).
    let mut reason = closing.reason;
    reason.truncate(120);
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code: closing.code,
            reason: reason.into(),
        })))
        .await;
}

async fn drive(
    socket: &mut WebSocket,
    remote: SocketAddr,
    registry: &PeerRegistry,
    relay: &Arc<Relay>,
    link_no: u64,
    peer_id: &mut Option<PeerId>,
) -> Closing {
    let certs = match relay.keys.bridge_certs() {
        Ok(c) => c,
        Err(e) => return Closing::new(close_code::ERROR, format!("no certificates: {e}")),
    };
    let mut challenge = [0u8; 32];
    if let Err(e) = getrandom::fill(&mut challenge) {
        return Closing::new(
            close_code::ERROR,
            format!("no randomness for the challenge: {e}"),
        );
    }
    let unix_time = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
        .unwrap_or(0);
    let mut link =
        LinkResponder::new(challenge, unix_time, Some(remote.ip()), Vec::new()).with_certs(certs);
    let handshake_deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    let mut peer_key = None;
    let (evict_tx, mut evict_rx) = oneshot::channel::<()>();
    let mut evict_tx = Some(evict_tx);

    loop {
        let message = tokio::select! {
            m = socket.recv() => m,
            _ = tokio::time::sleep_until(handshake_deadline), if !link.is_open() => {
                return Closing::new(close_code::POLICY, "link handshake timed out");
            }
            _ = &mut evict_rx, if peer_id.is_some() => {
                return Closing::new(close_code::NORMAL, "replaced by a newer link of the same peer");
            }
        };
        let frame = match message {
            None => return Closing::new(close_code::AWAY, "connection ended"),
            Some(Err(e)) => {
                return Closing::new(close_code::SIZE, format!("bad WebSocket traffic: {e}"))
            }
            Some(Ok(Message::Binary(b))) => b,
            Some(Ok(Message::Text(_))) => {
                return Closing::new(
                    close_code::UNSUPPORTED,
                    "text frame: links carry binary frames of cells only",
                )
            }
            Some(Ok(Message::Close(_))) => {
                return Closing::new(close_code::NORMAL, "closed by peer")
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
        };
        if let Err(e) = link.handle_frame(&frame) {
            return Closing::new(close_code::PROTOCOL, format!("protocol error: {e}"));
        }
        let mut early_cells = Vec::new();
        while let Some(event) = link.poll_event() {
            match event {
                ResponderEvent::Open { link_version, peer } => match peer {
                    Some(p) => {
                        tracing::info!(%remote, peer = %p.id, link_version, "peer linked and authenticated");
                        *peer_id = Some(p.id);
                        peer_key = Some(LinkPeer {
                            id: p.id,
                            modulus: p.key.modulus(),
                            fingerprint: p.key.tor_identity_digest().unwrap_or_default(),
                        });
                        if let Some(tx) = evict_tx.take() {
                            registry.register(p.id, remote, link_no, tx);
                        }
                    }
                    None => tracing::info!(%remote, link_version, "anonymous link open"),
                },
                ResponderEvent::Cell(cell) => early_cells.push(cell),
            }
        }
        while let Some(out) = link.poll_transmit() {
            if let Err(e) = socket.send(Message::Binary(out.into())).await {
                return Closing::new(close_code::AWAY, format!("send failed: {e}"));
            }
        }
        if link.is_open() {
            let mut transport = WsCells {
                socket,
                evict: peer_id.is_some().then_some(&mut evict_rx),
                closed_by_peer: false,
            };
            let result =
                run_channel(relay.clone(), &mut transport, early_cells, peer_key.take()).await;
            return match result {
                Ok(()) if transport.closed_by_peer => {
                    Closing::new(close_code::NORMAL, "closed by peer")
                }
                Ok(()) => Closing::new(close_code::AWAY, "connection ended"),
                Err(e) if e == REPLACED => Closing::new(close_code::NORMAL, e),
                Err(e) => Closing::new(close_code::PROTOCOL, e),
            };
        }
    }
}

const REPLACED: &str = "replaced by a newer link of the same peer";

/// Cells in binary WebSocket frames, each a whole number of cells.
struct WsCells<'a> {
    socket: &'a mut WebSocket,
    /// Fires when a newer link of the same peer replaces this one.
    evict: Option<&'a mut oneshot::Receiver<()>>,
    closed_by_peer: bool,
}

impl CellTransport for WsCells<'_> {
    async fn recv(&mut self) -> Result<Option<Vec<RawCell>>, String> {
        loop {
            let message = match self.evict.as_mut() {
                Some(evict) => tokio::select! {
                    m = self.socket.recv() => m,
                    _ = &mut **evict => return Err(REPLACED.to_string()),
                },
                None => self.socket.recv().await,
            };
            match message {
                None => return Ok(None),
                Some(Err(e)) => return Err(format!("bad WebSocket traffic: {e}")),
                Some(Ok(Message::Binary(frame))) => {
                    return decode_frame(&frame, CircIdLen::Four, |_| CircIdLen::Four)
                        .map(Some)
                        .map_err(|e| format!("protocol error: {e}"))
                }
                Some(Ok(Message::Text(_))) => {
                    return Err("text frame: links carry binary frames of cells only".into())
                }
                Some(Ok(Message::Close(_))) => {
                    self.closed_by_peer = true;
                    return Ok(None);
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            }
        }
    }

    async fn send(&mut self, cells: &[RawCell]) -> Result<(), String> {
        for batch in cells.chunks(CELLS_PER_FRAME) {
            let frame = encode_cells(batch, CircIdLen::Four).map_err(|e| e.to_string())?;
            self.socket
                .send(Message::Binary(frame.into()))
                .await
                .map_err(|e| format!("send failed: {e}"))?;
        }
        Ok(())
    }
}
