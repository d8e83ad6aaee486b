//! Peersm: an anonymous, serverless peer-to-peer network over the Tor
//! protocol, running in browser tabs (wasm32) and native nodes.
//!
//! The protocol core (`cell`, `crypto`, `channel`) is sans-IO: bytes and the
//! current time go in, bytes to send and events come out. The browser
//! adapters live in `web` (wasm32 only); the native ones in the
//! `peersm-node` crate. See docs/ARCHITECTURE.md.

#![forbid(unsafe_code)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod bench;
pub mod cell;
pub mod channel;
pub mod circuit;
pub mod crypto;
pub mod dht;
pub mod dir;
pub mod http;
pub mod socks;

#[cfg(target_arch = "wasm32")]
pub mod web;
