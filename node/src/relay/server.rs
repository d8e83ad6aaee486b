//! The relay's ORPort: accepts TLS channels, presents our certificates in
//! the link handshake, then hands each open channel to `inbound`. Also
//! the relay's shared state: keys, exit policy, outbound channels.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use peersm_core::cell::{CircIdLen, LinkSpec, RawCell};
use peersm_core::channel::{decode_frame, encode_cells, whole_cells_len, LinkResponder, ResponderEvent};
use peersm_core::dir::relay_list::ListedRelay;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::exit_policy::ExitPolicy;
use super::inbound::{run_channel, CellTransport};
use super::keys::RelayKeys;
use super::outbound::{self, OutboundLink};
use crate::tor::tls::write_flush;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// How a relay runs beyond its keys and exit policy.
#[derive(Default)]
pub struct RelayOptions {
    /// Source address of exit connections (default: the OS's choice).
    pub exit_bind: Option<IpAddr>,
    /// Served at `RELAY_LIST_PATH` through BEGIN_DIR (bridges); without
    /// it BEGIN_DIR is refused.
    pub relay_list: Option<Arc<RwLock<Vec<ListedRelay>>>>,
    /// Registrations and introductions between tabs (bridges).
    pub mesh: Option<Arc<crate::bridge::mesh::MeshService>>,
}

pub struct Relay {
    pub keys: RelayKeys,
    pub policy: ExitPolicy,
    pub options: RelayOptions,
    acceptor: TlsAcceptor,
    outbound: Mutex<HashMap<[u8; 20], OutboundLink>>,
}

impl Relay {
    pub fn new(keys: RelayKeys, policy: ExitPolicy) -> Result<Arc<Relay>, String> {
        Self::with_options(keys, policy, RelayOptions::default())
    }

    pub fn with_options(
        keys: RelayKeys,
        policy: ExitPolicy,
        options: RelayOptions,
    ) -> Result<Arc<Relay>, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(keys.tls_key.clone().into());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_single_cert(vec![keys.tls_cert.clone().into()], key)
            .map_err(|e| e.to_string())?;
        Ok(Arc::new(Relay {
            keys,
            policy,
            options,
            acceptor: TlsAcceptor::from(Arc::new(config)),
            outbound: Mutex::new(HashMap::new()),
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
        }
    }

    pub async fn link_to(
        &self,
        addr: SocketAddr,
        rsa_id: [u8; 20],
        ed: Option<[u8; 32]>,
    ) -> Result<OutboundLink, String> {
        let mut map = self.outbound.lock().await;
        map.retain(|_, l| !l.is_closed());
        if let Some(l) = map.get(&rsa_id) {
            return Ok(l.clone());
        }
        let link = outbound::connect(&self.keys, addr, rsa_id, ed).await?;
        map.insert(rsa_id, link.clone());
        Ok(link)
    }
}

pub async fn serve(listener: TcpListener, relay: Arc<Relay>) -> std::io::Result<()> {
    loop {
        let (tcp, peer) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        let relay = relay.clone();
        tokio::spawn(async move {
            if let Err(e) = handle_channel(tcp, peer, relay).await {
                tracing::info!(%peer, "inbound channel ended: {e}");
            }
        });
    }
}

fn unix_now() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0)
}

async fn handle_channel(tcp: TcpStream, peer: SocketAddr, relay: Arc<Relay>) -> Result<(), String> {
    let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, relay.acceptor.accept(tcp))
        .await
        .map_err(|_| "TLS handshake timed out")?
        .map_err(|e| format!("TLS: {e}"))?;
    let (mut reader, mut writer) = tokio::io::split(tls);
    let mut challenge = [0u8; 32];
    getrandom::fill(&mut challenge).map_err(|e| e.to_string())?;
    let certs = relay.keys.certs()?;
    let mut link =
        LinkResponder::new(challenge, unix_now(), Some(peer.ip()), Vec::new()).with_certs(certs);
    let mut inbuf = Vec::new();
    let mut at_start = true;
    let mut chunk = vec![0u8; 16 * 1024];
    let deadline = tokio::time::Instant::now() + HANDSHAKE_TIMEOUT;
    while !link.is_open() {
        let n = tokio::time::timeout_at(deadline, reader.read(&mut chunk))
            .await
            .map_err(|_| "link handshake timed out")?
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed during the link handshake".into());
        }
        inbuf.extend_from_slice(&chunk[..n]);
        let whole = whole_cells_len(&inbuf, at_start);
        if whole > 0 {
            link.handle_frame(&inbuf[..whole])
                .map_err(|e| e.to_string())?;
            inbuf.drain(..whole);
            at_start = false;
        }
        while let Some(f) = link.poll_transmit() {
            writer.write_all(&f).await.map_err(|e| e.to_string())?;
            writer.flush().await.map_err(|e| e.to_string())?;
        }
    }
    // Cells that arrived in the same read as the handshake's end.
    let mut early_cells = Vec::new();
    while let Some(event) = link.poll_event() {
        if let ResponderEvent::Cell(cell) = event {
            early_cells.push(cell);
        }
    }
    tracing::info!(%peer, "inbound channel open");
    let mut transport = TlsCells {
        reader,
        writer,
        inbuf,
        chunk,
    };
    run_channel(relay, &mut transport, early_cells, None).await
}

/// Cells over the TLS byte stream: whole cells are cut from what arrives.
struct TlsCells {
    reader: ReadHalf<TlsStream<TcpStream>>,
    writer: WriteHalf<TlsStream<TcpStream>>,
    inbuf: Vec<u8>,
    chunk: Vec<u8>,
}

impl CellTransport for TlsCells {
    async fn recv(&mut self) -> Result<Option<Vec<RawCell>>, String> {
        loop {
            let n = self
                .reader
                .read(&mut self.chunk)
                .await
                .map_err(|e| e.to_string())?;
            if n == 0 {
                return Ok(None);
            }
            self.inbuf
                .extend_from_slice(self.chunk.get(..n).unwrap_or_default());
            let whole = whole_cells_len(&self.inbuf, false);
            if whole == 0 {
                continue;
            }
            let cells = decode_frame(&self.inbuf[..whole], CircIdLen::Four, |_| CircIdLen::Four)
                .map_err(|e| format!("bad cells: {e}"))?;
            self.inbuf.drain(..whole);
            return Ok(Some(cells));
        }
    }

    async fn send(&mut self, cells: &[RawCell]) -> Result<(), String> {
        let bytes = encode_cells(cells, CircIdLen::Four).map_err(|e| e.to_string())?;
        write_flush(&mut self.writer, &bytes)
            .await
            .map_err(|e| e.to_string())
    }
}

/// The link specifiers naming this relay, for clients' EXTEND2.
pub fn link_specs(relay: &Relay, addr: SocketAddr) -> Vec<LinkSpec> {
    vec![
        LinkSpec::Addr(addr),
        LinkSpec::LegacyId(relay.keys.rsa_id),
        LinkSpec::Ed25519Id(relay.keys.ed25519_id()),
    ]
}
