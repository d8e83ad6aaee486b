//! Speaking Tor to relays over TLS: the client side of channels and
//! circuits, directory bootstrap, on top of the sans-IO core.

pub mod channel;
pub mod dirauth;
pub mod directory;
pub mod tls;
