//! A relay's link to another relay (tor-spec §5.1.2: opened when a client
//! asks us to EXTEND there, or to verify a relay that joins a bridge): TLS,
//! the other relay's certificates checked against the identities named,
//! and our own relay identities proven with AUTH0003 (tor-spec §4.4.2) so
//! the next hop knows the circuits we extend come from a relay.

use std::time::Duration;

use peersm_core::cell::RawCell;
use peersm_core::channel::tor_auth::{RelayAuthConfig, TLS_EXPORTER_LABEL};
use peersm_core::channel::{Handshake, LinkInitiator, LinkOpened, ResponderCheck};
use peersm_core::router::ExtendTarget;

use super::keys::RelayKeys;
use crate::error::{Context, NodeError, Result};
use crate::link::tls::{self, ClientTls, TlsRx, TlsTx};
use crate::link::{self, unix_now};

/// The most a link to another relay may take to set up: TCP connect, TLS
/// and the link handshake together. An address that never answers (a
/// tarpit) costs one pending connection for this long, and holds up only
/// the extends that named it.
pub const LINK_SETUP_TIMEOUT: Duration = Duration::from_secs(10);

type OutboundLink = (TlsRx<ClientTls>, TlsTx<ClientTls>, LinkOpened, Vec<RawCell>);

/// Opens and authenticates a link to the relay `target` names, within
/// `LINK_SETUP_TIMEOUT`.
pub async fn connect(keys: &RelayKeys, target: &ExtendTarget) -> Result<OutboundLink> {
    tokio::time::timeout(LINK_SETUP_TIMEOUT, set_up(keys, target))
        .await
        .map_err(|_| NodeError::Timeout("setting up a link to the next relay"))?
}

async fn set_up(keys: &RelayKeys, target: &ExtendTarget) -> Result<OutboundLink> {
    let addr = target
        .addresses
        .iter()
        .find(|a| a.is_ipv4())
        .or(target.addresses.first())
        .copied()
        .ok_or(NodeError::invalid(
            "EXTEND2",
            "no address for the next relay",
        ))?;
    let (tls, cert) = tls::connect(addr).await.context(format!("TLS to {addr}"))?;
    let cid = keys.rsa_key_sha256()?;
    let mut tls_secrets = [0u8; 32];
    tls.get_ref()
        .1
        .export_keying_material(&mut tls_secrets, TLS_EXPORTER_LABEL, Some(&cid))?;
    let auth = RelayAuthConfig {
        certs: keys.initiator_certs()?,
        cid,
        cid_ed: keys.ed25519_id(),
        auth_key: keys.ed_auth.clone(),
        tls_secrets,
    };
    let check = ResponderCheck::TorRelay {
        tls_cert: cert,
        now: unix_now(),
        rsa_id: Some(target.id),
        ed25519_id: target.ed25519_id,
    };
    let initiator = LinkInitiator::new(None, check)?.with_relay_auth(auth);
    let (mut rx, mut tx) = tls::split(tls);
    let (opened, early) = link::handshake(
        &mut rx,
        &mut tx,
        Handshake::initiator(initiator),
        None,
        LINK_SETUP_TIMEOUT,
    )
    .await
    .context(format!("handshake with {addr}"))?;
    Ok((rx, tx, opened, early))
}
