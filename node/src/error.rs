//! The node's errors: what went wrong at the edges (sockets, TLS, files,
//! the other end's protocol), typed so callers can tell a refusal from a
//! broken link.

use peersm_core::channel::ChannelError;
use peersm_core::circuit::CircuitError;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    #[error("link handshake: {0}")]
    Handshake(#[from] ChannelError),
    #[error("circuit: {0}")]
    Circuit(#[from] CircuitError),
    #[error("WebSocket: {0}")]
    WebSocket(String),
    #[error("{0} timed out")]
    Timeout(&'static str),
    #[error("{0} closed")]
    Closed(&'static str),
    /// The far end said no: an END or DESTROY reason, described.
    #[error("{what} ({reason_text}, reason {reason})")]
    Refused {
        what: &'static str,
        reason: u8,
        reason_text: &'static str,
    },
    /// A CREATE or EXTEND failed (the mux says how).
    #[error("circuit failed: {0}")]
    CircuitFailed(String),
    #[error("keys: {0}")]
    Keys(String),
    #[error("the random number generator failed")]
    Random,
    #[error("bad {what}: {why}")]
    Invalid { what: &'static str, why: String },
    #[error("{context}: {source}")]
    Context {
        context: String,
        #[source]
        source: Box<NodeError>,
    },
}

impl NodeError {
    /// Says what was being done when `self` happened.
    pub fn context(self, context: impl Into<String>) -> NodeError {
        NodeError::Context {
            context: context.into(),
            source: Box::new(self),
        }
    }

    pub fn invalid(what: &'static str, why: impl std::fmt::Display) -> NodeError {
        NodeError::Invalid {
            what,
            why: why.to_string(),
        }
    }

    /// A stream the exit refused, with its END reason.
    pub fn stream_refused(reason: u8) -> NodeError {
        NodeError::Refused {
            what: "stream refused",
            reason,
            reason_text: peersm_core::cell::end_reason::describe(reason),
        }
    }

    /// A circuit the network destroyed, with its DESTROY reason.
    pub fn circuit_destroyed(reason: u8) -> NodeError {
        NodeError::Refused {
            what: "circuit destroyed",
            reason,
            reason_text: peersm_core::cell::destroy_reason::describe(reason),
        }
    }

    /// The END reason, when this is a refused stream.
    pub fn end_reason(&self) -> Option<u8> {
        match self {
            NodeError::Refused {
                what: "stream refused",
                reason,
                ..
            } => Some(*reason),
            NodeError::Context { source, .. } => source.end_reason(),
            _ => None,
        }
    }
}

impl From<peersm_core::rng::RngError> for NodeError {
    fn from(_: peersm_core::rng::RngError) -> Self {
        NodeError::Random
    }
}

impl From<peersm_core::cell::CellError> for NodeError {
    fn from(e: peersm_core::cell::CellError) -> Self {
        NodeError::Handshake(ChannelError::Cell(e))
    }
}

pub type Result<T, E = NodeError> = std::result::Result<T, E>;

/// Adds context to a result's error.
pub trait Context<T> {
    fn context(self, context: impl Into<String>) -> Result<T>;
}

impl<T, E: Into<NodeError>> Context<T> for std::result::Result<T, E> {
    fn context(self, context: impl Into<String>) -> Result<T> {
        self.map_err(|e| e.into().context(context))
    }
}
