//! Peersm in the browser: the adapters that put the protocol core
//! (`peersm-core`) on browser APIs — WebSocket, RTCPeerConnection and its
//! data channels, WebCrypto, IndexedDB, timers — and the `Peer`
//! JavaScript API. Everything here is wasm32-only; the protocol logic
//! lives in the core. See docs/ARCHITECTURE.md.

#![forbid(unsafe_code)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[cfg(target_arch = "wasm32")]
pub mod web;
