//! Circuit creation and teardown cells (tor-spec §5.1, §5.4): CREATE2,
//! CREATED2, CREATE_FAST, CREATED_FAST, DESTROY.

use super::{command, CellError, RawCell, Reader};

/// Handshake types in CREATE2/EXTEND2 (tor-spec §5.1).
pub mod handshake_type {
    pub const TAP: u16 = 0;
    pub const NTOR: u16 = 2;
    pub const NTOR_V3: u16 = 3;
}

/// DESTROY and TRUNCATED reasons (tor-spec §5.4).
pub mod destroy_reason {
    pub const NONE: u8 = 0;
    pub const PROTOCOL: u8 = 1;
    pub const INTERNAL: u8 = 2;
    pub const REQUESTED: u8 = 3;
    pub const HIBERNATING: u8 = 4;
    pub const RESOURCELIMIT: u8 = 5;
    pub const CONNECTFAILED: u8 = 6;
    pub const OR_IDENTITY: u8 = 7;
    pub const CHANNEL_CLOSED: u8 = 8;
    pub const FINISHED: u8 = 9;
    pub const TIMEOUT: u8 = 10;
    pub const DESTROYED: u8 = 11;
    pub const NOSUCHSERVICE: u8 = 12;

    /// What a DESTROY reason means, for error messages (tor-spec §5.4).
    pub fn describe(reason: u8) -> &'static str {
        match reason {
            NONE => "no reason given",
            PROTOCOL => "protocol violation",
            INTERNAL => "internal error",
            REQUESTED => "closed on request",
            HIBERNATING => "the relay is hibernating",
            RESOURCELIMIT => "the relay is out of resources",
            CONNECTFAILED => "the next hop could not be reached",
            OR_IDENTITY => "the next hop had the wrong identity",
            CHANNEL_CLOSED => "a link on the circuit closed",
            FINISHED => "the circuit was finished",
            TIMEOUT => "the circuit timed out",
            DESTROYED => "the circuit was destroyed further along",
            NOSUCHSERVICE => "no such service",
            _ => "unknown reason",
        }
    }
}

/// CREATE2 body, also the handshake part of EXTEND2: HTYPE | HLEN | HDATA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Create2 {
    pub handshake_type: u16,
    pub handshake: Vec<u8>,
}

impl Create2 {
    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), CellError> {
        let len = u16::try_from(self.handshake.len())
            .map_err(|_| CellError::TooLong(self.handshake.len()))?;
        out.extend_from_slice(&self.handshake_type.to_be_bytes());
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&self.handshake);
        Ok(())
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, CellError> {
        let handshake_type = r.u16()?;
        let len = usize::from(r.u16()?);
        Ok(Create2 {
            handshake_type,
            handshake: r.take(len)?.to_vec(),
        })
    }

    pub fn to_cell(&self, circ_id: u32) -> Result<RawCell, CellError> {
        let mut body = Vec::new();
        self.encode_into(&mut body)?;
        Ok(RawCell::new(circ_id, command::CREATE2, body))
    }

    pub fn from_cell(cell: &RawCell) -> Result<Self, CellError> {
        cell.expect_command(command::CREATE2)?;
        Create2::read(&mut Reader::new(&cell.body))
    }
}

/// CREATED2 body, also EXTENDED2's: HLEN | HDATA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Created2 {
    pub handshake: Vec<u8>,
}

impl Created2 {
    pub fn encode(&self) -> Result<Vec<u8>, CellError> {
        let len = u16::try_from(self.handshake.len())
            .map_err(|_| CellError::TooLong(self.handshake.len()))?;
        let mut body = len.to_be_bytes().to_vec();
        body.extend_from_slice(&self.handshake);
        Ok(body)
    }

    pub fn decode(body: &[u8]) -> Result<Self, CellError> {
        let mut r = Reader::new(body);
        let len = usize::from(r.u16()?);
        Ok(Created2 {
            handshake: r.take(len)?.to_vec(),
        })
    }

    pub fn to_cell(&self, circ_id: u32) -> Result<RawCell, CellError> {
        Ok(RawCell::new(circ_id, command::CREATED2, self.encode()?))
    }

    pub fn from_cell(cell: &RawCell) -> Result<Self, CellError> {
        cell.expect_command(command::CREATED2)?;
        Created2::decode(&cell.body)
    }
}

/// CREATE_FAST: X, 20 random bytes.
pub fn create_fast_cell(circ_id: u32, x: &[u8; 20]) -> RawCell {
    RawCell::new(circ_id, command::CREATE_FAST, x.to_vec())
}

pub fn create_fast_x(cell: &RawCell) -> Result<[u8; 20], CellError> {
    cell.expect_command(command::CREATE_FAST)?;
    Reader::new(&cell.body).array()
}

/// CREATED_FAST: Y | KH (40 bytes, checked by `crypto::create_fast`).
pub fn created_fast_reply(cell: &RawCell) -> Result<[u8; 40], CellError> {
    cell.expect_command(command::CREATED_FAST)?;
    Reader::new(&cell.body).array()
}

pub fn destroy_cell(circ_id: u32, reason: u8) -> RawCell {
    RawCell::new(circ_id, command::DESTROY, vec![reason])
}

pub fn destroy_reason(cell: &RawCell) -> Result<u8, CellError> {
    cell.expect_command(command::DESTROY)?;
    Reader::new(&cell.body).u8()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create2_and_created2_round_trip() {
        let c = Create2 {
            handshake_type: handshake_type::NTOR,
            handshake: vec![5; 84],
        };
        let cell = c.to_cell(0x8000_0001).unwrap();
        assert_eq!(&cell.body[..4], &[0, 2, 0, 84]);
        assert_eq!(Create2::from_cell(&cell).unwrap(), c);
        let r = Created2 {
            handshake: vec![6; 64],
        };
        assert_eq!(Created2::from_cell(&r.to_cell(1).unwrap()).unwrap(), r);
        let lying = RawCell::new(1, command::CREATED2, vec![0x02, 0x00, 1]);
        assert!(Created2::from_cell(&lying).is_err());
    }

    #[test]
    fn fast_and_destroy() {
        let cell = create_fast_cell(3, &[9; 20]);
        assert_eq!(create_fast_x(&cell).unwrap(), [9; 20]);
        assert!(created_fast_reply(&RawCell::new(3, command::CREATED_FAST, vec![1; 39])).is_err());
        let d = destroy_cell(3, destroy_reason::PROTOCOL);
        assert_eq!(destroy_reason(&d).unwrap(), destroy_reason::PROTOCOL);
        assert!(destroy_reason(&RawCell::new(3, command::DESTROY, vec![])).is_err());
    }
}
