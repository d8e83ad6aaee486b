//! Peersm's protocol core: the Tor protocol (cells, handshakes, relay
//! crypto, circuits, streams, flow control), the directory formats, the
//! Kademlia DHT and the HTTP client, as sans-IO state machines: bytes and
//! the current time go in, bytes to send and events come out. The browser
//! tab (the `peersm` crate, wasm32) and the native node (`peersm-node`)
//! are adapters around it; nothing here depends on either, and nothing
//! here names a target. See docs/ARCHITECTURE.md.

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
pub mod client;
pub mod content;
pub mod crypto;
pub mod dht;
pub mod dir;
pub mod http;
pub mod media;
pub mod mesh;
pub mod peer;
pub mod rng;
pub mod router;
pub mod service;
#[cfg(test)]
mod sim;
pub mod socks;
