//! Circuits (tor-spec §5–7) as sans-IO state machines: `ClientCircuit`
//! for the onion proxy side, `RelayCircuit` for an onion router's hop.
//! They take cells in (`handle_cell`) and hand cells out (`poll_cell`);
//! the channel they ride on is the adapter's business.

pub mod circ_id;
pub mod client;
pub mod flow;
pub mod relay;
pub mod stream;

pub use circ_id::{CircIdError, CircIdRange, IdOwner, LinkSide};
pub use client::{CircuitEvent, ClientCircuit, StreamTarget};
pub use relay::{RelayCircuit, RelayEvent};
pub use stream::{StreamQueue, MAX_STREAMS_PER_CIRCUIT, STREAM_SEND_CAPACITY};

use crate::cell::CellError;
use crate::crypto::HandshakeError;

/// At most this many RELAY_EARLY cells per circuit (tor-spec §5.6).
pub const MAX_RELAY_EARLY: u8 = 8;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CircuitError {
    #[error("circuit is destroyed")]
    Destroyed,
    #[error("a handshake is already in progress on this circuit")]
    HandshakeInProgress,
    #[error("circuit has no hop yet")]
    NoHops,
    #[error("no open stream {0}")]
    NoSuchStream(u16),
    #[error("no free stream id")]
    TooManyStreams,
    #[error("no RELAY_EARLY cells left to carry EXTEND2")]
    NoRelayEarlyLeft,
    #[error("bad cell: {0}")]
    Cell(#[from] CellError),
    #[error("handshake failed: {0}")]
    Handshake(#[from] HandshakeError),
    #[error("random number generator failed")]
    Random,
    #[error("circuit ids: {0}")]
    CircId(#[from] CircIdError),
}

impl From<crate::rng::RngError> for CircuitError {
    fn from(_: crate::rng::RngError) -> Self {
        CircuitError::Random
    }
}
