//! Linking to a federated bridge (`serve --peer-bridge ws://…#FINGERPRINT`,
//! or a bridge a trusted one vouched for in BRIDGE_NODES): the same
//! WebSocket link a tab opens (the bridge proves the identity we expect and
//! its ntor key; we authenticate with our relay identity key, method
//! 0x8001), then the core runs the federation on it (a control circuit,
//! BRIDGE_HELLO, `peersm-core`'s bridge mesh). A bridge the operator named
//! is retried while the process runs; a discovered one a few times.

use std::time::Duration;

use peersm_core::channel::{Handshake, LinkInitiator, ResponderCheck};
use peersm_core::circuit::LinkSide;
use peersm_core::crypto::PeerId;
use peersm_core::mesh::bridge::LinkIdentity;
use peersm_core::router::LinkPeer;
use rsa::pkcs8::EncodePublicKey;

use crate::error::{NodeError, Result};
use crate::link::{self, unix_now, ws};
use crate::relay::node::{FederationInfo, LinkInfo, NodeHandle};

const RETRY: Duration = Duration::from_secs(3);
/// Attempts at a bridge found through BRIDGE_NODES before it is dropped
/// (it may be vouched for, and tried, again later).
pub const DISCOVERED_ATTEMPTS: u32 = 3;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

/// Where tabs reach this bridge, said in BRIDGE_HELLO.
pub async fn set_public_url(node: &NodeHandle, url: String) {
    node.set_public_url(url);
}

/// Keeps a federation link to the bridge at `peer_url`, which must prove
/// `fingerprint`, up: forever, or for `attempts` failed or ended links.
pub async fn federate(
    peer_url: String,
    fingerprint: [u8; 20],
    node: NodeHandle,
    attempts: Option<u32>,
) {
    let mut left = attempts;
    loop {
        match link_once(&peer_url, fingerprint, &node).await {
            Ok(()) => tracing::info!(%peer_url, "federation link closed"),
            Err(e) => tracing::warn!(%peer_url, "federation link: {e}"),
        }
        node.federation_failed(&peer_url).await;
        left = left.map(|n| n.saturating_sub(1));
        if left == Some(0) {
            tracing::info!(%peer_url, "giving up on a discovered bridge");
            return;
        }
        tokio::time::sleep(RETRY).await;
        node.federating(&peer_url).await;
    }
}

async fn link_once(peer_url: &str, fingerprint: [u8; 20], node: &NodeHandle) -> Result<()> {
    let (mut rx, mut tx) = ws::connect(peer_url).await?;
    let keys = node.keys().clone();
    let spki = keys
        .rsa_identity
        .to_public_key()
        .to_public_key_der()
        .map_err(|e| NodeError::Keys(e.to_string()))?
        .as_bytes()
        .to_vec();
    let check = ResponderCheck::Bridge {
        now: unix_now(),
        rsa_id: Some(fingerprint),
    };
    let initiator = LinkInitiator::new(Some(spki), check)?;
    let (opened, early) = link::handshake(
        &mut rx,
        &mut tx,
        Handshake::initiator(initiator),
        Some(keys.as_ref()),
        HANDSHAKE_TIMEOUT,
    )
    .await?;
    let bridge = opened.bridge.ok_or(NodeError::invalid(
        "bridge",
        "the peer bridge proved no identity",
    ))?;
    let their = LinkIdentity {
        id: PeerId(bridge.relay.rsa_id),
        modulus: Vec::new(),
        fingerprint: bridge.relay.rsa_id,
    };
    let info = LinkInfo {
        side: LinkSide::Initiator,
        peer: LinkPeer {
            id: Some(bridge.relay.rsa_id),
            ed25519_id: Some(bridge.relay.ed25519_id),
        },
        identity: Some(their.clone()),
        federation: Some(FederationInfo {
            their,
            ntor_key: bridge.ntor_key,
            url: peer_url.to_string(),
            my_url: node.public_url(),
        }),
    };
    node.run_link(rx, tx, info, early).await
}
