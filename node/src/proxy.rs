//! `peersm-node proxy`: a SOCKS5 onion proxy. It bootstraps a verified
//! directory, keeps one guard, builds 3-hop ntor circuits (guard, middle,
//! exit chosen by policy), reuses a circuit for new streams to ports its
//! exit allows for `CIRCUIT_MAX_AGE`, and answers SOCKS clients with the
//! reply code matching the exit's END reason.

use std::sync::Arc;
use std::time::{Duration, Instant};

use peersm_core::cell::{end_reason, LinkSpec};
use peersm_core::circuit::StreamTarget;
use peersm_core::dir::path::{NetDir, UsableRelay};
use peersm_core::socks::{self, reply, ConnectRequest, Parsed};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;

use crate::error::{NodeError, Result};
use crate::tor::client::{self, ChannelHandle, StreamEvent};
use crate::tor::dirauth::DirAuthority;
use crate::tor::directory;

/// Like C tor's MaxCircuitDirtiness: new streams stop using a circuit after this.
const CIRCUIT_MAX_AGE: Duration = Duration::from_secs(600);
const BUILD_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
const BUILD_ATTEMPTS: usize = 3;

struct Circuit {
    /// SOCKS credentials of the streams allowed on it (isolation); `None`
    /// for a clean spare circuit nobody used yet.
    isolation: Option<Vec<u8>>,
    ch: ChannelHandle,
    circ: u32,
    exit: UsableRelay,
    built: Instant,
    failed: bool,
}

struct State {
    dir: NetDir,
    guard: Option<[u8; 20]>,
    channels: Vec<ChannelHandle>,
    circuits: Vec<Circuit>,
}

pub struct Proxy {
    state: Mutex<State>,
    built: std::sync::atomic::AtomicUsize,
    building_spare: std::sync::atomic::AtomicBool,
}

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    u64::from_le_bytes(b)
}

fn link_specs(r: &UsableRelay) -> Vec<LinkSpec> {
    let mut specs = vec![
        LinkSpec::Addr(r.entry.or_addr),
        LinkSpec::LegacyId(r.entry.rsa_id),
    ];
    if let Some(ed) = r.md.ed25519_id {
        specs.push(LinkSpec::Ed25519Id(ed));
    }
    specs
}

impl Proxy {
    pub async fn bootstrap(authorities: &[DirAuthority]) -> Result<Arc<Proxy>> {
        let dir = directory::bootstrap(authorities).await?;
        Ok(Arc::new(Proxy {
            state: Mutex::new(State {
                dir,
                guard: None,
                channels: Vec::new(),
                circuits: Vec::new(),
            }),
            built: std::sync::atomic::AtomicUsize::new(0),
            building_spare: std::sync::atomic::AtomicBool::new(false),
        }))
    }

    /// Circuits built so far (reuse keeps this low).
    pub fn circuits_built(&self) -> usize {
        self.built.load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn channel_to(&self, relay: &UsableRelay) -> Result<ChannelHandle> {
        let mut st = self.state.lock().await;
        st.channels.retain(|c| !c.is_closed());
        if let Some(ch) = st
            .channels
            .iter()
            .find(|c| c.relay.rsa_id == relay.entry.rsa_id)
        {
            return Ok(ch.clone());
        }
        drop(st);
        let ch = client::connect(
            relay.entry.or_addr,
            Some(relay.entry.rsa_id),
            relay.md.ed25519_id,
        )
        .await?;
        self.state.lock().await.channels.push(ch.clone());
        Ok(ch)
    }

    /// Builds a fresh 3-hop circuit whose exit allows `port`.
    pub async fn build_circuit(&self, port: u16) -> Result<(ChannelHandle, u32, UsableRelay)> {
        let path = {
            let mut st = self.state.lock().await;
            let guard = st.guard;
            let path = st
                .dir
                .pick_path(port, guard.as_ref(), &mut random_u64)
                .ok_or_else(|| {
                    NodeError::invalid("path", format!("no running exit allows port {port}"))
                })?;
            st.guard.get_or_insert(path[0].entry.rsa_id);
            path
        };
        let [guard, middle, exit] = path;
        let ch = self.channel_to(&guard).await?;
        let circ = ch.create_ntor(guard.md.ntor_onion_key).await?;
        for hop in [&middle, &exit] {
            if let Err(e) = ch
                .extend(
                    circ,
                    link_specs(hop),
                    hop.entry.rsa_id,
                    hop.md.ntor_onion_key,
                )
                .await
            {
                ch.destroy(circ);
                return Err(e.context(format!("extending to {}", hop.entry.nickname)));
            }
        }
        Ok((ch, circ, exit))
    }

    /// A circuit for `port`: a recent one whose exit allows it, or a new one.
    /// Circuits carrying streams now (spares excluded).
    pub async fn circuits_in_use(&self) -> usize {
        self.state
            .lock()
            .await
            .circuits
            .iter()
            .filter(|c| c.isolation.is_some())
            .count()
    }

    /// A circuit for `port` and these SOCKS credentials: one already used
    /// with them, else a clean spare, else a new one. Taking a spare starts
    /// building the next, as C tor keeps clean circuits ready.
    async fn circuit_for(
        self: &Arc<Self>,
        port: u16,
        isolation: &[u8],
    ) -> Result<(ChannelHandle, u32)> {
        {
            let mut st = self.state.lock().await;
            st.circuits
                .retain(|c| !c.failed && !c.ch.is_closed() && c.built.elapsed() < CIRCUIT_MAX_AGE);
            let allows = |c: &Circuit| c.exit.md.policy.as_ref().is_some_and(|p| p.allows(port));
            if let Some(c) = st
                .circuits
                .iter()
                .find(|c| c.isolation.as_deref() == Some(isolation) && allows(c))
            {
                return Ok((c.ch.clone(), c.circ));
            }
            if let Some(c) = st
                .circuits
                .iter_mut()
                .find(|c| c.isolation.is_none() && allows(c))
            {
                c.isolation = Some(isolation.to_vec());
                let taken = (c.ch.clone(), c.circ);
                drop(st);
                self.spawn_spare(port);
                return Ok(taken);
            }
        }
        let (ch, circ, exit) = self.build_with_retries(port).await?;
        self.state.lock().await.circuits.push(Circuit {
            isolation: Some(isolation.to_vec()),
            ch: ch.clone(),
            circ,
            exit,
            built: Instant::now(),
            failed: false,
        });
        self.spawn_spare(port);
        Ok((ch, circ))
    }

    async fn build_with_retries(&self, port: u16) -> Result<(ChannelHandle, u32, UsableRelay)> {
        let mut last = NodeError::Timeout("circuit build");
        for _ in 0..BUILD_ATTEMPTS {
            let started = Instant::now();
            match tokio::time::timeout(BUILD_TIMEOUT, self.build_circuit(port)).await {
                Ok(Ok(built)) => {
                    self.built
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::info!(
                        ms = started.elapsed().as_millis() as u64,
                        "3-hop circuit built"
                    );
                    return Ok(built);
                }
                Ok(Err(e)) => last = e,
                Err(_) => last = NodeError::Timeout("circuit build"),
            }
            tracing::info!("circuit build failed: {last}");
        }
        Err(last)
    }

    /// Builds one clean circuit for `port` in the background, unless one is
    /// ready or being built.
    fn spawn_spare(self: &Arc<Self>, port: u16) {
        use std::sync::atomic::Ordering;
        if self.building_spare.swap(true, Ordering::AcqRel) {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            let ready = me.state.lock().await.circuits.iter().any(|c| {
                c.isolation.is_none() && c.exit.md.policy.as_ref().is_some_and(|p| p.allows(port))
            });
            if !ready {
                match me.build_with_retries(port).await {
                    Ok((ch, circ, exit)) => me.state.lock().await.circuits.push(Circuit {
                        isolation: None,
                        ch,
                        circ,
                        exit,
                        built: Instant::now(),
                        failed: false,
                    }),
                    Err(e) => tracing::info!("spare circuit not built: {e}"),
                }
            }
            me.building_spare.store(false, Ordering::Release);
        });
    }

    async fn forget_circuit(&self, circ: u32) {
        let mut st = self.state.lock().await;
        for c in st.circuits.iter_mut().filter(|c| c.circ == circ) {
            c.failed = true;
        }
    }
}

/// The SOCKS reply for a stream the exit refused (RELAY_END reason).
pub fn reply_for_end_reason(reason: u8) -> u8 {
    match reason {
        end_reason::EXITPOLICY => reply::NOT_ALLOWED,
        end_reason::CONNECTREFUSED => reply::CONNECTION_REFUSED,
        end_reason::RESOLVEFAILED => reply::HOST_UNREACHABLE,
        end_reason::NOROUTE => reply::NETWORK_UNREACHABLE,
        end_reason::TIMEOUT => reply::TTL_EXPIRED,
        _ => reply::GENERAL_FAILURE,
    }
}

pub async fn serve(listener: TcpListener, proxy: Arc<Proxy>) -> std::io::Result<()> {
    loop {
        let (sock, peer) = listener.accept().await?;
        // Small SOCKS replies and first bytes must not wait for Nagle.
        let _ = sock.set_nodelay(true);
        let proxy = proxy.clone();
        tokio::spawn(async move {
            if let Err(e) = handle_client(sock, &proxy).await {
                tracing::info!(%peer, "SOCKS connection ended: {e}");
            }
        });
    }
}

async fn read_until<T>(
    sock: &mut TcpStream,
    buf: &mut Vec<u8>,
    parse: impl Fn(&[u8]) -> std::result::Result<Parsed<T>, socks::SocksError>,
) -> Result<std::result::Result<T, socks::SocksError>> {
    loop {
        match parse(buf) {
            Ok(Parsed::Done(v, used)) => {
                buf.drain(..used);
                return Ok(Ok(v));
            }
            Ok(Parsed::Incomplete) => {}
            Err(e) => return Ok(Err(e)),
        }
        let mut chunk = [0u8; 512];
        let n = sock.read(&mut chunk).await?;
        if n == 0 || buf.len() > 1024 {
            return Err(NodeError::Closed("SOCKS client during its handshake"));
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
}

async fn handle_client(mut sock: TcpStream, proxy: &Arc<Proxy>) -> Result<()> {
    let mut buf = Vec::new();
    let method = match read_until(&mut sock, &mut buf, socks::parse_greeting).await? {
        Ok(m) => m,
        Err(e) => {
            let _ = sock
                .write_all(&[socks::VERSION, socks::METHOD_NONE_ACCEPTABLE])
                .await;
            return Err(NodeError::invalid("SOCKS greeting", e));
        }
    };
    sock.write_all(&[socks::VERSION, method]).await?;
    let mut isolation = Vec::new();
    if method == socks::METHOD_USERNAME_PASSWORD {
        isolation = read_until(&mut sock, &mut buf, socks::parse_credentials)
            .await?
            .map_err(|e| NodeError::invalid("SOCKS credentials", e))?;
        sock.write_all(&[1, 0]).await?;
    }
    let ConnectRequest { host, port } =
        match read_until(&mut sock, &mut buf, socks::parse_request).await? {
            Ok(r) => r,
            Err(e) => {
                let _ = sock.write_all(&socks::reply_bytes(e.reply_code())).await;
                return Err(NodeError::invalid("SOCKS request", e));
            }
        };
    let opened = tokio::time::timeout(CONNECT_TIMEOUT, async {
        let (ch, circ) = proxy
            .circuit_for(port, &isolation)
            .await
            .map_err(|e| (reply::GENERAL_FAILURE, e))?;
        match ch
            .begin(
                circ,
                StreamTarget::Tcp {
                    host: host.clone(),
                    port,
                },
            )
            .await
        {
            Ok((stream, events)) => Ok((ch, circ, stream, events)),
            Err(e) => {
                let reason = e.end_reason();
                if reason.is_none() {
                    // The circuit or its link is gone, not just this stream.
                    proxy.forget_circuit(circ).await;
                }
                Err((
                    reason.map_or(reply::GENERAL_FAILURE, reply_for_end_reason),
                    e,
                ))
            }
        }
    })
    .await;
    let (ch, circ, stream, mut events) = match opened {
        Ok(Ok(v)) => v,
        Ok(Err((code, e))) => {
            let _ = sock.write_all(&socks::reply_bytes(code)).await;
            return Err(e.context(format!("{host}:{port}")));
        }
        Err(_) => {
            let _ = sock
                .write_all(&socks::reply_bytes(reply::TTL_EXPIRED))
                .await;
            return Err(NodeError::Timeout("opening the stream"));
        }
    };
    sock.write_all(&socks::reply_bytes(reply::SUCCEEDED))
        .await?;
    if !buf.is_empty() {
        ch.send(circ, stream, std::mem::take(&mut buf)).await?;
    }
    let (mut rd, mut wr) = sock.split();
    // Both directions at once: a client reading the answer while it sends
    // never waits on its own upload.
    let upload = async {
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            match rd.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                // Reading waits until the circuit took these bytes.
                Ok(n) => {
                    let data = chunk.get(..n).unwrap_or_default().to_vec();
                    if ch.send(circ, stream, data).await.is_err() {
                        break;
                    }
                }
            }
        }
        // Tor streams cannot half-close: keep delivering the answer.
        std::future::pending::<()>().await
    };
    let download = async {
        while let Some(e) = events.recv().await {
            match e {
                StreamEvent::Data(d) => wr.write_all(&d).await?,
                StreamEvent::Connected => {}
                StreamEvent::Ended { .. } => break,
            }
        }
        Ok::<(), NodeError>(())
    };
    let result = tokio::select! {
        () = upload => Ok(()),
        r = download => r,
    };
    if result.is_err() {
        ch.end(circ, stream);
    }
    let _ = wr.shutdown().await;
    result
}
