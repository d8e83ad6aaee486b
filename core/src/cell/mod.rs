//! Link-protocol cells (tor-spec §3 "Cell packet format"): the raw cell
//! framing and one module per message family. Encoding and decoding only;
//! what a message means to a channel lives in `crate::channel`.

mod auth;
mod certs;
pub mod create;
pub mod extend;
mod netinfo;
pub mod ordb;
pub mod peersm;
mod reader;
pub mod relay;
pub mod stream;
mod versions;

pub use auth::{auth_method, AuthChallenge, Authenticate, AUTH_CHALLENGE_LEN};
pub use certs::{cert_type, CertEntry, Certs};
pub use create::{destroy_reason, handshake_type, Create2, Created2};
pub use extend::{Extend2, Extended2, LinkSpec};
pub use netinfo::Netinfo;
pub use ordb::{db_end_reason, DbConnected, DbDataHeader, DbQuery};
pub use peersm::{ControlMessage, ControlReassembler};
pub use relay::{relay_command, RelayCell, RELAY_DATA_LEN};
pub use stream::{end_reason, Begin, Connected, Sendme};
pub use versions::Versions;

pub(crate) use reader::Reader;

/// Length of a fixed-size cell body (tor-spec §3: `PAYLOAD_LEN`).
pub const PAYLOAD_LEN: usize = 509;
/// Length of a whole fixed-size cell on a link of protocol version 4 or later.
pub const CELL_LEN_V4: usize = 4 + 1 + PAYLOAD_LEN;
/// Largest body a variable-length cell can claim (2-byte length field).
pub const MAX_VAR_BODY: usize = u16::MAX as usize;

/// Channel-cell command numbers (tor-spec §3, table of commands).
pub mod command {
    pub const PADDING: u8 = 0;
    pub const CREATE: u8 = 1;
    pub const CREATED: u8 = 2;
    pub const RELAY: u8 = 3;
    pub const DESTROY: u8 = 4;
    pub const CREATE_FAST: u8 = 5;
    pub const CREATED_FAST: u8 = 6;
    pub const VERSIONS: u8 = 7;
    pub const NETINFO: u8 = 8;
    pub const RELAY_EARLY: u8 = 9;
    pub const CREATE2: u8 = 10;
    pub const CREATED2: u8 = 11;
    pub const PADDING_NEGOTIATE: u8 = 12;
    pub const VPADDING: u8 = 128;
    pub const CERTS: u8 = 129;
    pub const AUTH_CHALLENGE: u8 = 130;
    pub const AUTHENTICATE: u8 = 131;
    pub const AUTHORIZE: u8 = 132;

    /// VERSIONS and every command from 128 up use the variable-length
    /// format (tor-spec §3).
    pub fn is_variable_length(cmd: u8) -> bool {
        cmd == VERSIONS || cmd >= 128
    }
}

/// Width of the circuit id field: 2 bytes before version negotiation and on
/// links below v4, 4 bytes on v4 and v5 links (tor-spec §3, §4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CircIdLen {
    Two,
    Four,
}

impl CircIdLen {
    pub fn bytes(self) -> usize {
        match self {
            CircIdLen::Two => 2,
            CircIdLen::Four => 4,
        }
    }
}

/// Why bytes from the network are not a valid cell or message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CellError {
    #[error("truncated: needed {needed} bytes, {available} available")]
    Truncated { needed: usize, available: usize },
    #[error("cell command {found} where {expected} was expected")]
    UnexpectedCommand { expected: u8, found: u8 },
    #[error("malformed {what}: {why}")]
    Malformed {
        what: &'static str,
        why: &'static str,
    },
    #[error("message too long to encode: {0} bytes")]
    TooLong(usize),
}

/// One cell as it crosses a link: circuit id, command, body. Fixed-size
/// cells keep their full 509-byte body (padding included); variable-length
/// cells keep exactly the body their length field gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawCell {
    pub circ_id: u32,
    pub command: u8,
    pub body: Vec<u8>,
}

impl RawCell {
    /// A cell whose body is a message; fixed-size bodies are zero-padded on
    /// encoding.
    pub fn new(circ_id: u32, command: u8, body: Vec<u8>) -> Self {
        RawCell {
            circ_id,
            command,
            body,
        }
    }

    /// Appends the wire form of this cell to `out`.
    pub fn encode_into(&self, circ_id_len: CircIdLen, out: &mut Vec<u8>) -> Result<(), CellError> {
        match circ_id_len {
            CircIdLen::Two => {
                let id = u16::try_from(self.circ_id).map_err(|_| CellError::Malformed {
                    what: "cell",
                    why: "circuit id does not fit in 2 bytes",
                })?;
                out.extend_from_slice(&id.to_be_bytes());
            }
            CircIdLen::Four => out.extend_from_slice(&self.circ_id.to_be_bytes()),
        }
        out.push(self.command);
        if command::is_variable_length(self.command) {
            let len =
                u16::try_from(self.body.len()).map_err(|_| CellError::TooLong(self.body.len()))?;
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&self.body);
        } else {
            if self.body.len() > PAYLOAD_LEN {
                return Err(CellError::TooLong(self.body.len()));
            }
            out.extend_from_slice(&self.body);
            out.resize(out.len() + PAYLOAD_LEN - self.body.len(), 0);
        }
        Ok(())
    }

    /// The wire form of this cell.
    pub fn to_bytes(&self, circ_id_len: CircIdLen) -> Result<Vec<u8>, CellError> {
        let mut out = Vec::with_capacity(CELL_LEN_V4);
        self.encode_into(circ_id_len, &mut out)?;
        Ok(out)
    }

    /// Takes one cell from the front of `input`, advancing it. A short input
    /// is an error: on our message-framed links a frame holds whole cells.
    pub fn decode(input: &mut &[u8], circ_id_len: CircIdLen) -> Result<RawCell, CellError> {
        let mut r = Reader::new(input);
        let circ_id = match circ_id_len {
            CircIdLen::Two => u32::from(r.u16()?),
            CircIdLen::Four => r.u32()?,
        };
        let cmd = r.u8()?;
        let body = if command::is_variable_length(cmd) {
            let len = usize::from(r.u16()?);
            r.take(len)?.to_vec()
        } else {
            r.take(PAYLOAD_LEN)?.to_vec()
        };
        *input = r.rest();
        Ok(RawCell {
            circ_id,
            command: cmd,
            body,
        })
    }

    /// Checks this cell carries `expected`, for decoders of one message.
    pub fn expect_command(&self, expected: u8) -> Result<(), CellError> {
        if self.command == expected {
            Ok(())
        } else {
            Err(CellError::UnexpectedCommand {
                expected,
                found: self.command,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_cell_round_trip_pads_to_514() {
        let cell = RawCell::new(0x8000_0001, command::NETINFO, vec![1, 2, 3]);
        let bytes = cell.to_bytes(CircIdLen::Four).unwrap();
        assert_eq!(bytes.len(), CELL_LEN_V4);
        let mut input = &bytes[..];
        let back = RawCell::decode(&mut input, CircIdLen::Four).unwrap();
        assert!(input.is_empty());
        assert_eq!(back.circ_id, 0x8000_0001);
        assert_eq!(&back.body[..3], &[1, 2, 3]);
        assert!(back.body[3..].iter().all(|b| *b == 0));
    }

    #[test]
    fn variable_cell_round_trip_with_two_byte_circ_id() {
        let cell = RawCell::new(0, command::VERSIONS, vec![0, 4, 0, 5]);
        let bytes = cell.to_bytes(CircIdLen::Two).unwrap();
        assert_eq!(bytes, vec![0, 0, 7, 0, 4, 0, 4, 0, 5]);
        let mut input = &bytes[..];
        assert_eq!(RawCell::decode(&mut input, CircIdLen::Two).unwrap(), cell);
    }

    #[test]
    fn short_input_is_an_error_not_a_panic() {
        for len in 0..CELL_LEN_V4 {
            let bytes = vec![0u8; len];
            let mut input = &bytes[..];
            assert!(RawCell::decode(&mut input, CircIdLen::Four).is_err());
        }
        // Variable cell whose length field claims more than is there.
        let mut input: &[u8] = &[0, 0, 0, 0, command::CERTS, 0xff, 0xff, 1, 2];
        assert!(matches!(
            RawCell::decode(&mut input, CircIdLen::Four),
            Err(CellError::Truncated { .. })
        ));
    }

    #[test]
    fn oversized_fixed_body_is_refused() {
        let cell = RawCell::new(1, command::RELAY, vec![0; PAYLOAD_LEN + 1]);
        assert_eq!(cell.to_bytes(CircIdLen::Four), Err(CellError::TooLong(510)));
    }

    #[test]
    fn wide_circ_id_on_two_byte_link_is_refused() {
        let cell = RawCell::new(0x1_0000, command::VERSIONS, vec![]);
        assert!(cell.to_bytes(CircIdLen::Two).is_err());
    }
}
