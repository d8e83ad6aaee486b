//! Relay cells (tor-spec §6.1): the 509-byte body of RELAY and RELAY_EARLY
//! cells once decrypted.
//!
//! ```text
//! Relay command (1) | Recognized (2) | StreamID (2) | Digest (4) | Length (2) | Data (498) | padding
//! ```

use super::{CellError, Reader, PAYLOAD_LEN};

pub const RELAY_HEADER_LEN: usize = 11;
/// Largest relay payload.
pub const RELAY_DATA_LEN: usize = PAYLOAD_LEN - RELAY_HEADER_LEN;
/// Offset and length of the digest field within the body.
pub const DIGEST_RANGE: std::ops::Range<usize> = 5..9;

/// Relay command numbers (tor-spec §6.1, and docs/PROTOCOL.md for Peersm's).
pub mod relay_command {
    pub const BEGIN: u8 = 1;
    pub const DATA: u8 = 2;
    pub const END: u8 = 3;
    pub const CONNECTED: u8 = 4;
    pub const SENDME: u8 = 5;
    pub const EXTEND: u8 = 6;
    pub const EXTENDED: u8 = 7;
    pub const TRUNCATE: u8 = 8;
    pub const TRUNCATED: u8 = 9;
    pub const DROP: u8 = 10;
    pub const RESOLVE: u8 = 11;
    pub const RESOLVED: u8 = 12;
    pub const BEGIN_DIR: u8 = 13;
    pub const EXTEND2: u8 = 14;
    pub const EXTENDED2: u8 = 15;
    // ORDB streams, node-Tor's numbers (docs/PROTOCOL.md "ORDB"): a
    // DB_QUERY opens a stream as BEGIN does, and the stream's cells are
    // the DB_* ones below.
    /// A control message (stream 0): "I can answer for this hash_name".
    pub const DB_INFO: u8 = 80;
    pub const DB_QUERY: u8 = 81;
    pub const DB_CONNECTED: u8 = 82;
    pub const DB_DATA: u8 = 83;
    pub const DB_END: u8 = 84;
    pub const DB_SENDME: u8 = 85;
    // Peersm control messages, from 86 up (docs/PROTOCOL.md "Mesh"): sent
    // on stream 0 of a circuit, one message possibly in several cells.
    pub const DB_FIND_PEER: u8 = 86;
    pub const DB_FOUND_PEER: u8 = 87;
    pub const INTRODUCE: u8 = 88;
    pub const INTRODUCED: u8 = 89;
    pub const FIND_NODE: u8 = 90;
    pub const FOUND_NODE: u8 = 91;
    pub const BRIDGE_HELLO: u8 = 92;
    pub const BRIDGE_PEERS: u8 = 93;
    pub const RELAY_INTRODUCE: u8 = 94;
    pub const RELAY_INTRODUCED: u8 = 95;
    pub const BRIDGE_NODES: u8 = 96;
    // The DHT's values (docs/PROTOCOL.md "FIND_VALUE and STORE"): who can
    // answer DB_QUERY for a hash_name, kept at the peers closest to it.
    pub const FIND_VALUE: u8 = 97;
    pub const FOUND_VALUE: u8 = 98;
    pub const STORE: u8 = 99;

    /// Commands carried as `ControlMessage`s.
    pub fn is_peersm_control(command: u8) -> bool {
        command == DB_INFO || (DB_FIND_PEER..=STORE).contains(&command)
    }
}

/// A decrypted relay cell addressed to us.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayCell {
    pub command: u8,
    pub stream_id: u16,
    pub data: Vec<u8>,
}

impl RelayCell {
    pub fn new(command: u8, stream_id: u16, data: Vec<u8>) -> Self {
        RelayCell {
            command,
            stream_id,
            data,
        }
    }

    /// The 509-byte body with Recognized and Digest zero (the crypto layer
    /// fills the digest). `padding` supplies the random bytes that follow
    /// four zero bytes after the data (tor-spec §6.1, padding advice).
    pub fn encode(&self, padding: impl FnOnce(&mut [u8])) -> Result<[u8; PAYLOAD_LEN], CellError> {
        let len = self.data.len();
        let len16 = u16::try_from(len).map_err(|_| CellError::TooLong(len))?;
        if len > RELAY_DATA_LEN {
            return Err(CellError::TooLong(len));
        }
        let mut body = Vec::with_capacity(PAYLOAD_LEN);
        body.push(self.command);
        body.extend_from_slice(&[0, 0]); // Recognized
        body.extend_from_slice(&self.stream_id.to_be_bytes());
        body.extend_from_slice(&[0; 4]); // Digest
        body.extend_from_slice(&len16.to_be_bytes());
        body.extend_from_slice(&self.data);
        body.resize((body.len() + 4).min(PAYLOAD_LEN), 0);
        let random_from = body.len();
        body.resize(PAYLOAD_LEN, 0);
        if let Some(random) = body.get_mut(random_from..) {
            padding(random);
        }
        body.try_into().map_err(|_| CellError::TooLong(len))
    }

    /// Parses a body whose Recognized and Digest fields were already checked.
    pub fn decode(body: &[u8]) -> Result<RelayCell, CellError> {
        let mut r = Reader::new(body);
        let command = r.u8()?;
        let _recognized = r.u16()?;
        let stream_id = r.u16()?;
        let _digest = r.u32()?;
        let len = usize::from(r.u16()?);
        if len > RELAY_DATA_LEN {
            return Err(CellError::Malformed {
                what: "relay cell",
                why: "length field exceeds 498",
            });
        }
        let data = r.take(len)?.to_vec();
        Ok(RelayCell {
            command,
            stream_id,
            data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_tor_spec() {
        let cell = RelayCell::new(relay_command::DATA, 0x0102, b"hello".to_vec());
        let body = cell.encode(|p| p.fill(0xee)).unwrap();
        assert_eq!(&body[..11], &[2, 0, 0, 1, 2, 0, 0, 0, 0, 0, 5]);
        assert_eq!(&body[11..16], b"hello");
        assert_eq!(
            &body[16..20],
            &[0, 0, 0, 0],
            "four zero bytes after the data"
        );
        assert!(body[20..].iter().all(|b| *b == 0xee));
        assert_eq!(RelayCell::decode(&body).unwrap(), cell);
    }

    #[test]
    fn full_and_oversized_payloads() {
        let full = RelayCell::new(relay_command::DATA, 1, vec![7; RELAY_DATA_LEN]);
        let body = full.encode(|_| {}).unwrap();
        assert_eq!(RelayCell::decode(&body).unwrap(), full);
        assert!(RelayCell::new(2, 1, vec![0; RELAY_DATA_LEN + 1])
            .encode(|_| {})
            .is_err());
        let mut lying = body;
        lying[9..11].copy_from_slice(&499u16.to_be_bytes());
        assert!(RelayCell::decode(&lying).is_err());
    }
}
