//! A relay: its keys and exit policy, the task running its core
//! (`node.rs`), and its ORPort, which accepts TLS links, presents our
//! certificates in the link handshake and hands each open link to the core.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use peersm_core::cell::LinkSpec;
use peersm_core::channel::{Handshake, LinkResponder};
use peersm_core::dir::relay_list::ListedRelay;
use peersm_core::peer::{RelayPeer, RelayPeerConfig};
use peersm_core::rng::OsRng;
use peersm_core::router::RouterConfig;
use peersm_core::service::{DirRoutes, ExitPolicy};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use super::keys::RelayKeys;
use super::node::{LinkInfo, NodeContext, NodeHandle};
use crate::error::{NodeError, Result};
use crate::link::{self, tls};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// How a relay runs beyond its keys and exit policy.
#[derive(Default)]
pub struct RelayOptions {
    /// Source address of exit connections (default: the OS's choice).
    pub exit_bind: Option<IpAddr>,
    /// Serve a directory on BEGIN_DIR (bridges: the relay list); without
    /// it BEGIN_DIR is refused.
    pub directory: bool,
    /// Run the mesh: registrations, introductions, federation (bridges).
    pub mesh: bool,
}

pub struct Relay {
    pub keys: Arc<RelayKeys>,
    pub policy: ExitPolicy,
    pub node: NodeHandle,
    acceptor: TlsAcceptor,
}

impl Relay {
    pub fn new(keys: RelayKeys, policy: ExitPolicy) -> Result<Arc<Relay>> {
        Self::with_options(keys, policy, RelayOptions::default())
    }

    /// A relay with its core task running (call within a tokio runtime).
    pub fn with_options(
        keys: RelayKeys,
        policy: ExitPolicy,
        options: RelayOptions,
    ) -> Result<Arc<Relay>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(keys.tls_key.clone().into());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![keys.tls_cert.clone().into()], key)?;
        let keys = Arc::new(keys);
        let exit = (!policy.rejects_everything()).then(|| policy.clone());
        let peer = RelayPeer::new(
            RelayPeerConfig {
                router: RouterConfig::new(vec![keys.ntor.clone()]),
                dir: options.directory.then(DirRoutes::default),
                exit,
                bridge: options.mesh.then_some(keys.rsa_id),
            },
            &mut OsRng,
        )?;
        let node = NodeHandle::spawn(
            peer,
            NodeContext {
                keys: keys.clone(),
                exit_bind: options.exit_bind,
                public_url: Default::default(),
            },
        );
        Ok(Arc::new(Relay {
            keys,
            policy,
            node,
            acceptor: TlsAcceptor::from(Arc::new(config)),
        }))
    }

    /// This relay as a relay list entry, reachable at `addr`.
    pub fn listing(&self, nickname: &str, addr: SocketAddr) -> ListedRelay {
        ListedRelay {
            nickname: nickname.to_string(),
            addr,
            rsa_id: self.keys.rsa_id,
            ed25519_id: self.keys.ed25519_id(),
            ntor_key: self.keys.ntor.public,
            exit: !self.policy.rejects_everything(),
            // The bridge's roster marks the relays it embeds.
            bridge_run: false,
        }
    }
}

/// Accepts links on the ORPort until the listener fails.
pub async fn serve(listener: TcpListener, relay: Arc<Relay>) -> std::io::Result<()> {
    loop {
        let (tcp, peer) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        let relay = relay.clone();
        tokio::spawn(async move {
            if let Err(e) = accept(tcp, peer, relay).await {
                tracing::info!(%peer, "inbound link ended: {e}");
            }
        });
    }
}

async fn accept(tcp: TcpStream, peer: SocketAddr, relay: Arc<Relay>) -> Result<()> {
    let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, relay.acceptor.accept(tcp))
        .await
        .map_err(|_| NodeError::Timeout("TLS handshake"))??;
    let mut challenge = [0u8; 32];
    getrandom::fill(&mut challenge).map_err(|_| NodeError::Random)?;
    let unix_time = u32::try_from(link::unix_now()).unwrap_or(u32::MAX);
    let responder = LinkResponder::new(challenge, unix_time, Some(peer.ip()), Vec::new())
        .with_certs(relay.keys.certs()?);
    let (mut rx, mut tx) = tls::split(tls);
    let (opened, early) = link::handshake(
        &mut rx,
        &mut tx,
        Handshake::responder(responder),
        None,
        HANDSHAKE_TIMEOUT,
    )
    .await?;
    tracing::info!(%peer, "inbound link open");
    relay
        .node
        .run_link(rx, tx, LinkInfo::from_opened(&opened), early)
        .await
}

/// The link specifiers naming this relay, for clients' EXTEND2.
pub fn link_specs(relay: &Relay, addr: SocketAddr) -> Vec<LinkSpec> {
    vec![
        LinkSpec::Addr(addr),
        LinkSpec::LegacyId(relay.keys.rsa_id),
        LinkSpec::Ed25519Id(relay.keys.ed25519_id()),
    ]
}
