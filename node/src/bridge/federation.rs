//! Linking to a federated bridge (`serve --peer-bridge ws://…`): the same
//! WebSocket link a tab opens (the bridge proves its identity and ntor key;
//! we authenticate with our relay identity key, method 0x8001), a one-hop
//! ntor circuit, then BRIDGE_HELLO and the federation messages of
//! `mesh.rs` both ways. Reconnects while the process runs.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use peersm_core::cell::{CircIdLen, ControlMessage};
use peersm_core::channel::{decode_frame, encode_cells, InitiatorEvent, LinkInitiator, ResponderCheck};
use peersm_core::circuit::{ClientMux, MuxEvent};
use peersm_core::crypto::PeerId;
use rsa::pkcs1v15::Pkcs1v15Sign;
use rsa::pkcs8::EncodePublicKey;
use rsa::sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::mesh::{LinkPeer, MeshService};
use crate::relay::inbound::ToInbound;
use crate::relay::server::Relay;

const RETRY: Duration = Duration::from_secs(3);
const CELLS_PER_FRAME: usize = 31;

/// Keeps a federation link to the bridge at `peer_url` up; `my_url` is
/// where tabs reach this bridge.
pub async fn federate(peer_url: String, my_url: String, relay: Arc<Relay>, mesh: Arc<MeshService>) {
    loop {
        match link_once(&peer_url, &my_url, &relay, &mesh).await {
            Ok(()) => tracing::info!(%peer_url, "federation link closed"),
            Err(e) => tracing::warn!(%peer_url, "federation link: {e}"),
        }
        tokio::time::sleep(RETRY).await;
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

async fn link_once(
    peer_url: &str,
    my_url: &str,
    relay: &Relay,
    mesh: &MeshService,
) -> Result<(), String> {
    let (ws, _) = tokio_tungstenite::connect_async(peer_url)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sink, mut stream) = ws.split();
    let spki = relay
        .keys
        .rsa_identity
        .to_public_key()
        .to_public_key_der()
        .map_err(|e| e.to_string())?
        .as_bytes()
        .to_vec();
    let check = ResponderCheck::Bridge {
        now: unix_now(),
        rsa_id: None,
    };
    let mut link = LinkInitiator::new(Some(spki), check).map_err(|e| e.to_string())?;
    // The link handshake, signing the challenge with our identity key.
    let (bridge, early) = loop {
        while let Some(f) = link.poll_transmit() {
            sink.send(Message::Binary(f.into()))
                .await
                .map_err(|e| e.to_string())?;
        }
        match link.poll_event() {
            Some(InitiatorEvent::SignatureNeeded(m)) => {
                let digest = Sha256::digest(&m);
                let sig = relay
                    .keys
                    .rsa_identity
                    .sign(Pkcs1v15Sign::new::<Sha256>(), &digest)
                    .map_err(|e| e.to_string())?;
                link.handle_signature(sig).map_err(|e| e.to_string())?;
                continue;
            }
            Some(InitiatorEvent::Open { bridge, .. }) => {
                while let Some(f) = link.poll_transmit() {
                    sink.send(Message::Binary(f.into()))
                        .await
                        .map_err(|e| e.to_string())?;
                }
                let mut early = Vec::new();
                while let Some(e) = link.poll_event() {
                    if let InitiatorEvent::Cell(c) = e {
                        early.push(c);
                    }
                }
                break (bridge.ok_or("the peer bridge proved no identity")?, early);
            }
            Some(InitiatorEvent::Cell(_)) => continue,
            None => {}
        }
        match stream.next().await {
            Some(Ok(Message::Binary(b))) => link.handle_frame(&b).map_err(|e| e.to_string())?,
            Some(Ok(Message::Close(_))) | None => return Err("closed during the handshake".into()),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.to_string()),
        }
    };
    let their = LinkPeer {
        id: PeerId(bridge.relay.rsa_id),
        modulus: Vec::new(),
        fingerprint: bridge.relay.rsa_id,
    };
    let mut mux = ClientMux::new();
    let circ = mux
        .create_ntor(bridge.relay.rsa_id, bridge.ntor_key)
        .map_err(|e| e.to_string())?;
    for cell in early {
        mux.handle_cell(cell);
    }
    let (tx, mut rx) = mpsc::unbounded_channel::<ToInbound>();
    let mut greeted = false;
    loop {
        // Events first: they may queue control messages.
        while let Some(event) = mux.poll_event() {
            match event {
                MuxEvent::HopAdded { .. } if !greeted => {
                    greeted = true;
                    tracing::info!(%peer_url, "federated with bridge");
                    mux.send_control(
                        circ,
                        &ControlMessage::BridgeHello {
                            url: my_url.to_string(),
                        },
                    )
                    .map_err(|e| e.to_string())?;
                    // The peer bridge is federated with us from now on.
                    let hello = ControlMessage::BridgeHello {
                        url: peer_url.to_string(),
                    };
                    if let Some(ControlMessage::BridgeNodes { .. }) =
                        mesh.handle(Some(&their), &tx, circ, hello)
                    {
                        // Our own answer to ourselves: nothing to send.
                    }
                }
                MuxEvent::Control { message, .. } => {
                    if let Some(reply) = mesh.handle(Some(&their), &tx, circ, message) {
                        let _ = mux.send_control(circ, &reply);
                    }
                }
                MuxEvent::HopFailed { why, .. } => return Err(why),
                MuxEvent::CircuitClosed { reason, .. } => {
                    mesh.circuit_closed(&tx, circ);
                    return Err(format!("circuit closed (reason {reason})"));
                }
                _ => {}
            }
        }
        let cells = mux.poll_cells();
        for batch in cells.chunks(CELLS_PER_FRAME) {
            let frame = encode_cells(batch, CircIdLen::Four).map_err(|e| e.to_string())?;
            sink.send(Message::Binary(frame.into()))
                .await
                .map_err(|e| e.to_string())?;
        }
        tokio::select! {
            frame = stream.next() => match frame {
                Some(Ok(Message::Binary(b))) => {
                    let cells = decode_frame(&b, CircIdLen::Four, |_| CircIdLen::Four)
                        .map_err(|e| e.to_string())?;
                    for c in cells {
                        mux.handle_cell(c);
                    }
                }
                Some(Ok(Message::Close(_))) | None => {
                    mesh.circuit_closed(&tx, circ);
                    return Ok(());
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    mesh.circuit_closed(&tx, circ);
                    return Err(e.to_string());
                }
            },
            msg = rx.recv() => {
                if let Some(ToInbound::Control { message, .. }) = msg {
                    mux.send_control(circ, &message).map_err(|e| e.to_string())?;
                }
            }
        }
    }
}
