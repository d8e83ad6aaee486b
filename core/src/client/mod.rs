//! The onion proxy's side: `ClientMux`, every circuit we originate on one
//! link. The tab, the native SOCKS proxy and the bridges' federation
//! links all drive this one multiplexer.

pub mod mux;

pub use mux::{ClientMux, MuxEvent};
