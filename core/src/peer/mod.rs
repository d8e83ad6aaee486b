//! Whole peers, sans IO: `PeerCore` is what every peer is (links, the
//! router, services, our circuits); `RelayPeer` is a native relay or
//! bridge built on it.

pub mod core;
pub mod relay;

pub use self::core::{CoreEvent, PeerCore, Queued};
pub use relay::{RelayPeer, RelayPeerConfig, RelayPeerEvent};
