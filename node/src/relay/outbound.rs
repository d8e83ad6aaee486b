//! A relay's channel to the next hop (tor-spec §5.1.2: we open it when a
//! client asks us to EXTEND): TLS, certificates checked against the
//! identities the client named, then raw cells both ways for the circuits
//! we extended through it.

use std::collections::HashMap;
use std::net::SocketAddr;

use peersm_core::cell::{command, CircIdLen, Create2, RawCell};
use peersm_core::channel::{
    decode_frame, encode_cells, whole_cells_len, InitiatorEvent, LinkInitiator, ResponderCheck,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use super::inbound::ToInbound;
use super::keys::RelayKeys;
use crate::tor::tls;
use crate::tor::tls::write_flush;
use peersm_core::channel::tor_auth::{RelayAuthConfig, TLS_EXPORTER_LABEL};

enum OutCmd {
    Open {
        back: mpsc::UnboundedSender<ToInbound>,
        back_circ: u32,
        create: Create2,
        reply: oneshot::Sender<u32>,
    },
    Send(RawCell),
}

/// Handle to an outbound channel task.
#[derive(Clone)]
pub struct OutboundLink {
    cmds: mpsc::UnboundedSender<OutCmd>,
}

impl OutboundLink {
    pub fn is_closed(&self) -> bool {
        self.cmds.is_closed()
    }

    /// Sends CREATE2 for a circuit extended from `back_circ`; returns the
    /// circuit id on this channel. Cells for it go to `back`.
    pub async fn open(
        &self,
        back: mpsc::UnboundedSender<ToInbound>,
        back_circ: u32,
        create: Create2,
    ) -> Result<u32, String> {
        let (reply, rx) = oneshot::channel();
        self.cmds
            .send(OutCmd::Open {
                back,
                back_circ,
                create,
                reply,
            })
            .map_err(|_| "next-hop channel closed".to_string())?;
        rx.await.map_err(|_| "next-hop channel closed".to_string())
    }

    pub fn send(&self, cell: RawCell) {
        let _ = self.cmds.send(OutCmd::Send(cell));
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Opens a channel to the next hop and authenticates as `keys`' relay
/// (AUTH0003) when the responder offers it, so that the next hop knows the
/// circuits we extend come from a relay.
pub async fn connect(
    keys: &RelayKeys,
    addr: SocketAddr,
    rsa_id: [u8; 20],
    ed25519_id: Option<[u8; 32]>,
) -> Result<OutboundLink, String> {
    let (tls, cert) = tls::connect(addr)
        .await
        .map_err(|e| format!("TLS to {addr}: {e}"))?;
    let cid = keys.rsa_key_sha256()?;
    let mut tls_secrets = [0u8; 32];
    tls.get_ref()
        .1
        .export_keying_material(&mut tls_secrets, TLS_EXPORTER_LABEL, Some(&cid))
        .map_err(|e| format!("TLS exporter: {e}"))?;
    let auth = RelayAuthConfig {
        certs: keys.initiator_certs()?,
        cid,
        cid_ed: keys.ed25519_id(),
        auth_key: keys.ed_auth.clone(),
        tls_secrets,
    };
    let (mut reader, mut writer) = tokio::io::split(tls);
    let check = ResponderCheck::TorRelay {
        tls_cert: cert,
        now: unix_now(),
        rsa_id: Some(rsa_id),
        ed25519_id,
    };
    let mut link = LinkInitiator::new(None, check)
        .map_err(|e| e.to_string())?
        .with_relay_auth(auth);
    let mut inbuf = Vec::new();
    let mut at_start = true;
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        while let Some(f) = link.poll_transmit() {
            writer.write_all(&f).await.map_err(|e| e.to_string())?;
            writer.flush().await.map_err(|e| e.to_string())?;
        }
        if let Some(InitiatorEvent::Open { .. }) = link.poll_event() {
            while let Some(f) = link.poll_transmit() {
                writer.write_all(&f).await.map_err(|e| e.to_string())?;
                writer.flush().await.map_err(|e| e.to_string())?;
            }
            break;
        }
        let n = reader.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err(format!("{addr} closed during the handshake"));
        }
        inbuf.extend_from_slice(&chunk[..n]);
        let whole = whole_cells_len(&inbuf, at_start);
        if whole > 0 {
            link.handle_frame(&inbuf[..whole])
                .map_err(|e| format!("handshake with {addr}: {e}"))?;
            inbuf.drain(..whole);
            at_start = false;
        }
    }
    let (cmds, mut rx) = mpsc::unbounded_channel();
    let me = OutboundLink { cmds };
    let handle = me.clone();
    tokio::spawn(async move {
        let mut routes: HashMap<u32, (mpsc::UnboundedSender<ToInbound>, u32)> = HashMap::new();
        let why = loop {
            tokio::select! {
                n = reader.read(&mut chunk) => match n {
                    Ok(0) => break "closed by the next hop".to_string(),
                    Err(e) => break e.to_string(),
                    Ok(n) => {
                        inbuf.extend_from_slice(&chunk[..n]);
                        let whole = whole_cells_len(&inbuf, false);
                        if whole == 0 { continue; }
                        let cells = match decode_frame(&inbuf[..whole], CircIdLen::Four, |_| CircIdLen::Four) {
                            Ok(c) => c,
                            Err(e) => break e.to_string(),
                        };
                        inbuf.drain(..whole);
                        for cell in cells {
                            let next_circ = cell.circ_id;
                            let destroy = cell.command == command::DESTROY;
                            if let Some((back, back_circ)) = routes.get(&next_circ) {
                                let _ = back.send(ToInbound::FromNext { back_circ: *back_circ, cell });
                            }
                            if destroy {
                                routes.remove(&next_circ);
                            }
                        }
                    }
                },
                cmd = rx.recv() => {
                    let out = match cmd {
                        None => break "no more circuits".to_string(),
                        Some(OutCmd::Send(cell)) => {
                            if cell.command == command::DESTROY {
                                routes.remove(&cell.circ_id);
                            }
                            cell
                        }
                        Some(OutCmd::Open { back, back_circ, create, reply }) => {
                            let id = loop {
                                let mut b = [0u8; 4];
                                let _ = getrandom::fill(&mut b);
                                let id = u32::from_be_bytes(b) | 0x8000_0000;
                                if !routes.contains_key(&id) { break id; }
                            };
                            // Announce the route before the CREATE2 leaves, so
                            // the CREATED2 cannot overtake it.
                            let _ = back.send(ToInbound::Extending { back_circ, link: handle.clone(), next_circ: id });
                            routes.insert(id, (back, back_circ));
                            let _ = reply.send(id);
                            match create.to_cell(id) {
                                Ok(c) => c,
                                Err(e) => break e.to_string(),
                            }
                        }
                    };
                    match encode_cells(&[out], CircIdLen::Four) {
                        Ok(bytes) => if let Err(e) = write_flush(&mut writer, &bytes).await { break e.to_string() },
                        Err(e) => break e.to_string(),
                    }
                }
            }
        };
        tracing::info!(%addr, "next-hop channel closed: {why}");
        for (next_circ, (back, back_circ)) in routes {
            let cell = peersm_core::cell::create::destroy_cell(
                next_circ,
                peersm_core::cell::destroy_reason::CHANNEL_CLOSED,
            );
            let _ = back.send(ToInbound::FromNext { back_circ, cell });
        }
    });
    Ok(me)
}
