//! The link handshake (tor-spec §4) as two sans-IO state machines, one per
//! side. A link here is message-framed (a WebSocket binary message, later a
//! data-channel message): each frame carries a whole number of cells.
//!
//! Shape (same for both sides): `handle_frame` for bytes that arrived,
//! command methods for what the application supplies, `poll_transmit` for
//! frames to send and `poll_event` for what the application must know.

mod auth;
mod frames;
pub mod handshake;
mod initiator;
mod responder;
pub mod tor_auth;
pub mod tor_certs;

pub use auth::{
    dtls_binding_cert, dtls_binding_message, ntor_key_cert, ntor_key_message, peersm_auth_message,
    responder_certs_digest, verify_dtls_binding, verify_ntor_key_cert,
};
pub use frames::{decode_frame, encode_cells, whole_cells_len};
pub use handshake::{Handshake, HandshakeEvent, HandshakeOutput, LinkOpened};
pub use initiator::{InitiatorEvent, LinkInitiator, ResponderCheck};
pub use responder::{AuthenticatedPeer, LinkResponder, ResponderEvent};

use crate::cell::CellError;
use crate::crypto::IdentityError;

/// Link protocol versions we speak: 4-byte circuit ids (tor-spec §4.1).
pub const LINK_VERSIONS: &[u16] = &[4, 5];

/// Largest frame a link accepts: ~16 KiB batches plus headroom, so one
/// frame holds about 31 fixed cells (docs/PROTOCOL.md "Framing").
pub const MAX_FRAME_LEN: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    #[error("bad cell: {0}")]
    Cell(#[from] CellError),
    #[error("no link protocol version in common (they offered {0:?})")]
    NoCommonVersion(Vec<u16>),
    #[error("cell command {command} not allowed while {state}")]
    UnexpectedCell { state: &'static str, command: u8 },
    #[error("authentication failed: {0}")]
    Auth(#[from] IdentityError),
    #[error("AUTHENTICATE without a usable identity certificate")]
    MissingIdentity,
    #[error("unsupported authentication method {0:#06x}")]
    UnsupportedAuthMethod(u16),
    #[error("frame of {0} bytes exceeds the {MAX_FRAME_LEN}-byte limit")]
    FrameTooLarge(usize),
    #[error("relay certificates: {0}")]
    RelayCerts(#[from] tor_certs::TorCertsError),
    #[error("ntor key certificate: {0}")]
    NtorKey(&'static str),
    #[error("DTLS binding: {0}")]
    DtlsBinding(&'static str),
    #[error("the peer proved identity {0}, not the one asked for")]
    WrongPeer(String),
    #[error("link already failed or closed")]
    Closed,
    #[error("the system random source failed")]
    NoRandomness,
    #[error("no signature was requested")]
    NoSignaturePending,
}

// Native only: generating RSA keys needs the OS random source.
#[cfg(test)]
mod tests;
