//! `peersm-node relay`: an onion router on a TLS ORPort. `server` holds the
//! relay (keys, exit policy) and accepts links; `node` runs its core (the
//! router, exit and directory of `peersm-core`) and the sockets the core
//! asks for; `outbound` opens links to next hops; `keys` and `descriptor`
//! are what a Tor relay publishes.

pub mod descriptor;
pub mod keys;
pub mod node;
pub mod outbound;
pub mod own_addresses;
pub mod server;
