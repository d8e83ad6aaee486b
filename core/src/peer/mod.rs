//! Whole peers, sans IO: `PeerCore` is what every peer is (links, the
//! router, services, our circuits); `RelayPeer` is a native relay or
//! bridge built on it, `TabPeer` a browser tab.

pub mod core;
pub mod limits;
pub mod relay;
pub mod tab;

pub use self::core::{CoreEvent, PeerCore, Queued};
pub use relay::{RelayPeer, RelayPeerConfig, RelayPeerEvent};
pub use tab::{TabConfig, TabEvent, TabPeer};
