//! The onion proxy's side: `ClientMux`, every circuit we originate on one
//! link (the tab, the native SOCKS proxy and the bridges' federation links
//! all drive this one multiplexer), and `Download`, a GET that resumes on
//! a new circuit where a broken one stopped.

pub mod download;
pub mod mux;

pub use download::{Download, DownloadError, Fed, StreamEnd};
pub use mux::{ClientMux, MuxEvent};
