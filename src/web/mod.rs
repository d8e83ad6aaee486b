//! Browser adapters (wasm32 only): they put the core's `TabPeer` on
//! browser APIs and expose the `Peer` JavaScript API. `driver.rs` moves
//! the core's frames and acts on its events; `rtc.rs` is WebRTC, `store.rs`
//! and `files.rs` IndexedDB, `identity.rs` WebCrypto; `peer.rs`, `fetch.rs` and `share.rs`
//! are the page's API. No protocol logic lives here.

mod bench;
mod driver;
mod fetch;
mod fetch_play;
mod files;
pub mod identity;
mod js;
mod live;
pub mod locks;
mod log;
mod peer;
mod rtc;
mod share;
mod store;
mod stream;

pub use identity::SessionIdentity;
pub use peer::{Peer, PeerStatus};
