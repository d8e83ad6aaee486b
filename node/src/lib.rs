//! The native Peersm node: the adapters that put the sans-IO core on
//! sockets. `bridge` serves the page and the WebSocket endpoint tabs link
//! to. Relay, exit, SOCKS5 and facilitator roles come next.

pub mod bridge;
pub mod proxy;
pub mod relay;
pub mod tor;
