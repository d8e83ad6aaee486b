//! Browser adapters (wasm32 only): WebCrypto identity, the WebSocket link to
//! a bridge, and the `Peer` JavaScript API. They move bytes and events
//! between the browser and the sans-IO core; no protocol logic lives here.

mod bench;
mod bridge_link;
mod circuit_host;
mod circuits;
mod fetch;
pub mod identity;
mod js;
mod log;
mod mesh;
mod peer;
mod store;
mod tab_circuits;
mod tab_relay;

pub use identity::SessionIdentity;
pub use peer::{Peer, PeerStatus};
