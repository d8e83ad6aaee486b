//! The bridge: serves the page (`--www`), accepts tabs' links on the
//! WebSocket endpoint `/bridge` (link-protocol cells in binary frames,
//! docs/PROTOCOL.md "Framing"), registers authenticated peers and reports
//! them on `GET /status`.

mod registry;
mod ws_link;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderValue};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use peersm::channel::MAX_FRAME_LEN;
use tokio::net::TcpListener;
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeaderLayer;

pub use registry::{PeerRegistry, RegisteredPeer};

pub struct BridgeConfig {
    /// Folder served at `/`.
    pub www: PathBuf,
}

#[derive(Clone)]
struct AppState {
    registry: Arc<PeerRegistry>,
}

/// Serves until the listener fails.
pub async fn serve(listener: TcpListener, config: BridgeConfig) -> std::io::Result<()> {
    let state = AppState {
        registry: Arc::new(PeerRegistry::default()),
    };
    axum::serve(
        listener,
        router(state, config).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
}

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
        ));
    Router::new()
        .route("/bridge", get(accept_link))
        .route("/status", get(status))
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
        .on_upgrade(move |socket| ws_link::run(socket, remote, state.registry))
}

#[derive(serde::Serialize)]
struct StatusReport {
    version: &'static str,
    /// Authenticated peers, by ID.
    peers: Vec<RegisteredPeer>,
    /// Open links, authenticated or not.
    links: usize,
}

async fn status(State(state): State<AppState>) -> impl IntoResponse {
    let (peers, links) = state.registry.snapshot();
    (
        [(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")],
        Json(StatusReport {
            version: env!("CARGO_PKG_VERSION"),
            peers,
            links,
        }),
    )
}
