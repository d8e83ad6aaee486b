//! Speaking Tor to relays over TLS as a client: `client` is a link to one
//! relay with the core's `ClientMux` on it; `directory` bootstraps a
//! verified directory over BEGIN_DIR; `dirauth` names the authorities.

pub mod client;
pub mod dirauth;
pub mod directory;
