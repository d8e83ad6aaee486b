//! Kademlia (Maymounkov & Mazières 2002) over peer IDs, sans IO: XOR
//! distance (`distance.rs`), the routing table of 160 buckets of at most
//! `K` peers (`routing.rs`), and the iterative lookup as a state machine
//! told what happened and asked what to do next (`lookup.rs`), and the
//! values kept for FIND_VALUE (`values.rs`). The same
//! code runs in tabs, in native nodes and in the simulation tests; how a
//! FIND_NODE reaches a peer (a link, an introduction) is the adapter's.

pub mod distance;
pub mod lookup;
pub mod routing;
pub mod values;

pub use distance::Distance;
pub use lookup::{Lookup, LookupAction};
pub use routing::{Insert, RoutingTable};
pub use values::ValueStore;

/// Bucket size and the number of closest peers a lookup returns.
pub const K: usize = 8;
/// Queries a lookup keeps in flight.
pub const ALPHA: usize = 3;
/// Bits in an ID, and buckets in a routing table.
pub const ID_BITS: usize = 160;
