//! Cryptography of the protocol core: identities and signatures now; ntor,
//! KDFs and relay crypto with the Tor protocol work.

pub mod identity;

pub use identity::{IdentityError, PeerId, RsaIdentityKey};
