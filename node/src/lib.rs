//! The native Peersm node: the adapters that put the sans-IO core
//! (`peersm-core`) on tokio, TLS and HTTP. `link` drives link handshakes
//! and moves cells for every transport; `relay` runs a relay's core and
//! the sockets it asks for; `bridge` serves the page, the tabs' WebSocket
//! endpoint and federation; `tor` and `proxy` are the client side (a
//! SOCKS5 onion proxy through Tor relays). No protocol logic lives here.

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

pub mod bridge;
pub mod error;
pub mod link;
pub mod proxy;
pub mod relay;
pub mod tor;
