//! The bridge: serves the page (`--www`), accepts tabs' links on the
//! WebSocket endpoint `/bridge` (link-protocol cells in binary frames,
//! docs/PROTOCOL.md "Framing"), registers authenticated peers and reports
//! them on `GET /status`. The bridge is an onion router on that endpoint
//! (tabs build circuits through it) and lists the relays behind it
//! (`relays`): embedded ones and those that join with `POST /relays`.

pub mod federation;
mod registry;
pub mod relays;
mod ws_link;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::http::{header, HeaderValue};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use peersm_core::dir::relay_list::ListedRelay;

use crate::error::Result;
use crate::relay::keys::RelayKeys;
use crate::relay::server::{Relay, RelayOptions};
use axum::{Json, Router};
use peersm_core::channel::MAX_FRAME_LEN;
use peersm_core::service::ExitPolicy;
use tokio::net::TcpListener;
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeaderLayer;

pub use registry::{PeerRegistry, RegisteredPeer};
pub use relays::RelayDirectory;

pub struct BridgeConfig {
    /// Folder served at `/`.
    pub www: PathBuf,
    /// The bridge's own onion router (its keys are the bridge's identity),
    /// with a directory (the relay list) and the mesh.
    pub relay: Arc<Relay>,
    pub directory: Arc<RelayDirectory>,
    /// Bridges to federate with (`ws://…/bridge`, the identity each must
    /// prove), bridges we take federation from, and where tabs reach us.
    pub peer_bridges: Vec<(String, [u8; 20])>,
    pub trusted_bridges: Vec<[u8; 20]>,
    pub public_url: Option<String>,
    /// `POST /relays` needs `Authorization: Bearer <this>`; `None`: no
    /// relay may join.
    pub join_token: Option<String>,
    /// `GET /status` lists each tab's ID and address to anyone, not only
    /// to requests from the loopback interface (`--status-details`).
    pub status_details: bool,
}

impl BridgeConfig {
    /// A bridge with fresh keys, serving `www`, listing `embedded` relays.
    pub async fn new(www: PathBuf, embedded: Vec<ListedRelay>) -> Result<BridgeConfig> {
        Self::with_keys(www, embedded, RelayKeys::generate()?).await
    }

    /// A bridge whose identity is `keys`.
    pub async fn with_keys(
        www: PathBuf,
        embedded: Vec<ListedRelay>,
        keys: RelayKeys,
    ) -> Result<BridgeConfig> {
        let options = RelayOptions {
            exit_bind: None,
            directory: true,
            mesh: true,
        };
        let relay = Relay::with_options(keys, ExitPolicy::reject_all(), options)?;
        let directory = RelayDirectory::new(embedded, relay.node.clone()).await;
        Ok(BridgeConfig {
            www,
            relay,
            directory,
            peer_bridges: Vec::new(),
            trusted_bridges: Vec::new(),
            public_url: None,
            join_token: None,
            status_details: false,
        })
    }
}

#[derive(Clone)]
struct AppState {
    registry: Arc<PeerRegistry>,
    relay: Arc<Relay>,
    directory: Arc<RelayDirectory>,
    status_details: bool,
    joins: Arc<relays::JoinGate>,
}

/// Serves until the listener fails.
pub async fn serve(listener: TcpListener, config: BridgeConfig) -> std::io::Result<()> {
    let state = AppState {
        registry: Arc::new(PeerRegistry::default()),
        relay: config.relay.clone(),
        directory: config.directory.clone(),
        status_details: config.status_details,
        joins: Arc::new(relays::JoinGate::new(config.join_token.clone())),
    };
    let my_url = match &config.public_url {
        Some(u) => u.clone(),
        None => format!("ws://{}/bridge", listener.local_addr()?),
    };
    // Bridges found later through the bridges' DHT are federated with by
    // the core's task, which needs to know where tabs reach us.
    federation::set_public_url(&config.relay.node, my_url).await;
    for fingerprint in &config.trusted_bridges {
        config.relay.node.trust_bridge(*fingerprint).await;
    }
    for (url, fingerprint) in &config.peer_bridges {
        config.relay.node.trust_bridge(*fingerprint).await;
        config.relay.node.federating(url).await;
        tokio::spawn(federation::federate(
            url.clone(),
            *fingerprint,
            config.relay.node.clone(),
            None,
        ));
    }
    axum::serve(
        listener,
        router(state, config).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
}

/// What the page may load and run: its own scripts and wasm, no inline
/// script, connections to bridges anywhere (ws, wss; http(s) for their
/// `/status`), images and media only from itself or the blobs it makes
/// (a downloaded file is shown or saved through a blob URL and never
/// runs as a page of this origin), and no framing.
pub const PAGE_CSP: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; \
    connect-src 'self' ws: wss: http: https: blob:; img-src 'self' data: blob:; media-src 'self' blob:; \
    style-src 'self' 'unsafe-inline'; object-src 'none'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

fn router(state: AppState, config: BridgeConfig) -> Router {
    // The bookmarklet loads the shell and the wasm bundle into pages of other
    // origins, so static files are readable cross-origin.
    let static_files = Router::new()
        .fallback_service(ServeDir::new(config.www))
        .layer(SetResponseHeaderLayer::overriding(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(PAGE_CSP),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ));
    Router::new()
        .route("/bridge", get(accept_link))
        .route("/status", get(status))
        .route("/relays", post(join_relay))
        .with_state(state)
        .merge(static_files)
}

async fn accept_link(
    ws: WebSocketUpgrade,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    State(state): State<AppState>,
) -> impl IntoResponse {
    ws.max_message_size(MAX_FRAME_LEN)
        .max_frame_size(MAX_FRAME_LEN)
        .on_upgrade(move |socket| ws_link::run(socket, remote, state.registry, state.relay))
}

/// `POST /relays` with one relay-list line: a relay joins this bridge, if
/// it brings the operator's join token and its address is not joining too
/// often (`relays::JoinGate`), and once it proved the identities it claims.
async fn join_relay(
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    body: String,
) -> impl IntoResponse {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if let Err(refusal) = state
        .joins
        .admit(remote.ip(), token, std::time::Instant::now())
    {
        tracing::info!(%remote, "relay join refused: {refusal}");
        return (refusal.status(), format!("{refusal}\n"));
    }
    match state.directory.join(&state.relay, &body).await {
        Ok(r) => {
            tracing::info!(nickname = %r.nickname, addr = %r.addr, "relay joined");
            (StatusCode::OK, "listed\n".to_string())
        }
        Err(e) => {
            tracing::info!("relay refused: {e}");
            (StatusCode::BAD_REQUEST, format!("{e}\n"))
        }
    }
}

#[derive(serde::Serialize)]
struct BridgeInfo {
    /// The bridge's RSA identity fingerprint (hex), which tabs check.
    fingerprint: String,
    ed25519_id: String,
}

#[derive(serde::Serialize)]
struct FederatedInfo {
    url: String,
    peers: usize,
}

#[derive(serde::Serialize)]
struct StatusReport {
    version: &'static str,
    bridge: BridgeInfo,
    /// Relay-list lines of the relays behind this bridge.
    relays: Vec<String>,
    /// Federated bridges: their URL and how many tabs each hosts.
    federation: Vec<FederatedInfo>,
    /// Tabs registered in the mesh here.
    mesh_peers: usize,
    /// Introductions asked of this bridge.
    introductions: u64,
    /// Authenticated peers: how many.
    peer_count: usize,
    /// Authenticated peers, by ID, with their address: only for the
    /// operator (loopback, or `--status-details`), as they say who uses
    /// this bridge.
    #[serde(skip_serializing_if = "Option::is_none")]
    peers: Option<Vec<RegisteredPeer>>,
    /// Open links, authenticated or not.
    links: usize,
}

/// `GET /status`: counts for anyone (readable cross-origin); the list of
/// tabs with their addresses only for the operator, and then not
/// readable by pages of other origins.
async fn status(
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    State(state): State<AppState>,
) -> impl IntoResponse {
    let (peers, links) = state.registry.snapshot();
    let core = state.relay.node.status().await;
    let details = state.status_details || remote.ip().to_canonical().is_loopback();
    let cors = if details {
        None
    } else {
        Some([(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")])
    };
    (
        cors,
        Json(StatusReport {
            version: env!("CARGO_PKG_VERSION"),
            bridge: BridgeInfo {
                fingerprint: hex::encode_upper(state.relay.keys.rsa_id),
                ed25519_id: hex::encode(state.relay.keys.ed25519_id()),
            },
            relays: state
                .directory
                .snapshot()
                .iter()
                .map(|r| r.to_line())
                .collect(),
            federation: core
                .federation
                .into_iter()
                .map(|(url, peers)| FederatedInfo { url, peers })
                .collect(),
            mesh_peers: core.mesh_peers,
            introductions: core.introductions,
            peer_count: peers.len(),
            peers: details.then_some(peers),
            links,
        }),
    )
}
