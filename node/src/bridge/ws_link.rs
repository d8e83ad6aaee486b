//! One tab's (or federated bridge's) WebSocket link: the link handshake as
//! responder, presenting the bridge's CERTS, then the link goes to the
//! bridge's core like any relay link: the bridge is the tab's first hop.
//! Anything that is not a well-formed binary frame of cells closes this
//! link, with the reason logged and sent as the close code; other links
//! carry on. A newer link proving the same ID replaces this one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::WebSocket;
use peersm_core::channel::{Handshake, LinkResponder};
use tokio::sync::oneshot;

use super::registry::PeerRegistry;
use crate::error::{NodeError, Result};
use crate::link::{self, ws, EndKind, FrameTx, LinkEnd, Outbox};
use crate::relay::node::LinkInfo;
use crate::relay::server::Relay;

/// A tab has this long to finish the link handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

pub(super) async fn run(
    socket: WebSocket,
    remote: SocketAddr,
    registry: Arc<PeerRegistry>,
    relay: Arc<Relay>,
) {
    let link_no = registry.link_opened();
    let mut peer_id = None;
    let result = drive(socket, remote, &registry, &relay, link_no, &mut peer_id).await;
    registry.link_closed(link_no, peer_id);
    let who = peer_id.map(|p| p.to_hex());
    match result {
        Ok(end) if matches!(end.kind, EndKind::Normal | EndKind::Away) => {
            tracing::info!(%remote, peer = ?who, "link closed: {}", end.why)
        }
        Ok(end) => tracing::warn!(%remote, peer = ?who, "closing link: {}", end.why),
        Err(e) => tracing::warn!(%remote, peer = ?who, "closing link: {e}"),
    }
}

async fn drive(
    socket: WebSocket,
    remote: SocketAddr,
    registry: &PeerRegistry,
    relay: &Arc<Relay>,
    link_no: u64,
    peer_id: &mut Option<peersm_core::crypto::PeerId>,
) -> Result<LinkEnd> {
    let (mut rx, mut tx) = ws::split_server(socket);
    let mut challenge = [0u8; 32];
    getrandom::fill(&mut challenge).map_err(|_| NodeError::Random)?;
    let unix_time = u32::try_from(link::unix_now()).unwrap_or(u32::MAX);
    let responder = LinkResponder::new(challenge, unix_time, Some(remote.ip()), Vec::new())
        .with_certs(relay.keys.bridge_certs()?);
    let (opened, early) = match link::handshake(
        &mut rx,
        &mut tx,
        Handshake::responder(responder),
        None,
        HANDSHAKE_TIMEOUT,
    )
    .await
    {
        Ok(o) => o,
        Err(e) => {
            let end = LinkEnd::from_error(&e);
            tx.close(Some(end.clone())).await;
            return Ok(end);
        }
    };
    let info = LinkInfo::from_opened(&opened);
    let outbox = Outbox::new();
    match &opened.peer {
        Some(p) => {
            tracing::info!(%remote, peer = %p.id, link_version = opened.link_version, "peer linked and authenticated");
            *peer_id = Some(p.id);
            let (evict, evicted) = oneshot::channel();
            registry.register(p.id, remote, link_no, evict);
            let watched = outbox.clone();
            tokio::spawn(async move {
                if evicted.await.is_ok() {
                    watched.close_with(LinkEnd::new(
                        EndKind::Normal,
                        "replaced by a newer link of the same peer",
                    ));
                }
            });
        }
        None => {
            tracing::info!(%remote, link_version = opened.link_version, "anonymous link open")
        }
    }
    let result = relay
        .node
        .run_link_with(rx, tx, info, early, outbox.clone())
        .await;
    let end = outbox
        .end()
        .unwrap_or_else(|| LinkEnd::new(EndKind::Away, "connection ended"));
    result.map(|()| end)
}
