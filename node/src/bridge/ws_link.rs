//! One tab's WebSocket link: binary frames in and out of the core's
//! `LinkResponder`. Anything that is not a well-formed binary frame of
//! cells closes this link, with the reason logged; other links carry on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::ws::{close_code, CloseFrame, Message, WebSocket};
use peersm::cell::command;
use peersm::channel::{LinkResponder, ResponderEvent};
use peersm::crypto::PeerId;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::registry::PeerRegistry;

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

pub(super) async fn run(mut socket: WebSocket, remote: SocketAddr, registry: Arc<PeerRegistry>) {
    let link_no = registry.link_opened();
    let mut peer_id = None;
    let closing = drive(&mut socket, remote, &registry, link_no, &mut peer_id).await;
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
    link_no: u64,
    peer_id: &mut Option<PeerId>,
) -> Closing {
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
    let mut link = LinkResponder::new(challenge, unix_time, Some(remote.ip()), Vec::new());
    let handshake_deadline = Instant::now() + HANDSHAKE_TIMEOUT;
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
        while let Some(event) = link.poll_event() {
            match event {
                ResponderEvent::Open { link_version, peer } => match peer {
                    Some(p) => {
                        tracing::info!(%remote, peer = %p.id, link_version, "peer linked and authenticated");
                        *peer_id = Some(p.id);
                        if let Some(tx) = evict_tx.take() {
                            registry.register(p.id, remote, link_no, tx);
                        }
                    }
                    None => tracing::info!(%remote, link_version, "anonymous link open"),
                },
                ResponderEvent::Cell(cell) => match cell.command {
                    command::PADDING | command::VPADDING => {}
                    // Circuits come with the Tor protocol layer.
                    other => {
                        tracing::debug!(%remote, command = other, "cell ignored: no circuit layer yet")
                    }
                },
            }
        }
        while let Some(out) = link.poll_transmit() {
            if let Err(e) = socket.send(Message::Binary(out.into())).await {
                return Closing::new(close_code::AWAY, format!("send failed: {e}"));
            }
        }
    }
}
