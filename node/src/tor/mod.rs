//! Speaking Tor to relays over TLS: the client side of channels and
//! circuits (the proxy uses it), on top of the sans-IO core.

pub mod channel;
pub mod tls;
