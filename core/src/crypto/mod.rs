//! Cryptography of the protocol core: session identities, the circuit
//! handshakes (CREATE_FAST, ntor) and their key derivation.

pub mod create_fast;
pub mod der;
pub mod ed25519_cert;
pub mod identity;
pub mod kdf;
pub mod ntor;
pub mod relay_certs;
pub mod relay_crypto;
pub mod x509;

pub use identity::{IdentityError, PeerId, RsaIdentityKey};
pub use kdf::CircuitKeys;

/// Why a circuit handshake failed (the circuit is then destroyed with
/// reason PROTOCOL, tor-spec §5.4).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error("malformed handshake request")]
    BadRequest,
    #[error("malformed handshake reply")]
    BadReply,
    #[error("handshake reply failed authentication")]
    AuthFailed,
    #[error("handshake addressed to a key we do not hold")]
    UnknownKey,
    #[error("peer sent a low-order curve25519 key")]
    WeakKey,
    #[error("internal key derivation failure")]
    Internal,
}
