//! ORDB streams (docs/PROTOCOL.md "ORDB"): the relay cells that fetch one
//! block of a file from an ORDB, with node-Tor's numbers. A DB_QUERY opens
//! a stream (as BEGIN does); the answer is DB_CONNECTED (the manifest when
//! asked, and the block's audit path), the block's bytes in DB_DATA cells,
//! then DB_END. DB_SENDME is the stream's SENDME.
//!
//! ```text
//! DB_QUERY      HASH_NAME (20) | BLOCK (4) | OFFSET (4) | COUNTER (1) | FLAGS (1)
//! DB_CONNECTED  fragments MORE (1) | DATA; reassembled:
//!               MANIFEST_LEN (2) | MANIFEST | N (1) | PATH (N × 32)
//!               [ | CHUNK_HEADER (85): a live stream's chunk ]
//! DB_DATA       POSITION (4) | CHECK (4) | DATA (≤ 490)
//! DB_END        REASON (1)
//! DB_SENDME     empty
//! ```

use super::{CellError, Reader, RELAY_DATA_LEN};
use crate::content::live::ChunkHeader;
use crate::content::merkle::{Hash, MAX_PATH_LEN};

/// DB_END reasons: node-Tor's three, then Peersm's.
pub mod db_end_reason {
    /// Nobody reachable has this block (or the loop counter ran out).
    pub const UNAVAILABLE: u8 = 0;
    /// The whole block was sent.
    pub const FINISHED: u8 = 1;
    /// The source went away mid-block: ask again elsewhere, from where it
    /// stopped.
    pub const DESTROYED: u8 = 2;
    /// The query is malformed, or names a block outside the file.
    pub const BAD_QUERY: u8 = 3;
    /// This ORDB serves the asker no more (rate, freeriding).
    pub const REFUSED: u8 = 4;
}

/// The loop counter at which an ORDB stops relaying a query.
pub const MAX_COUNTER: u8 = 5;
/// DB_QUERY flag: put the manifest in DB_CONNECTED.
pub const WANT_MANIFEST: u8 = 1;
/// Bytes of block data in one DB_DATA cell.
pub const DB_DATA_LEN: usize = RELAY_DATA_LEN - DB_DATA_HEADER_LEN;
pub const DB_DATA_HEADER_LEN: usize = 8;
/// Largest reassembled DB_CONNECTED.
pub const MAX_DB_CONNECTED_LEN: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbQuery {
    pub hash_name: [u8; 20],
    pub block: u32,
    /// Bytes of the block the asker already has: send from here.
    pub offset: u32,
    /// Relays so far; an ORDB answers UNAVAILABLE at `MAX_COUNTER`.
    pub counter: u8,
    pub flags: u8,
}

impl DbQuery {
    pub const LEN: usize = 30;

    pub fn wants_manifest(&self) -> bool {
        self.flags & WANT_MANIFEST != 0
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::LEN);
        out.extend_from_slice(&self.hash_name);
        out.extend_from_slice(&self.block.to_be_bytes());
        out.extend_from_slice(&self.offset.to_be_bytes());
        out.push(self.counter);
        out.push(self.flags);
        out
    }

    /// Decodes a query. A counter past `MAX_COUNTER` decodes (the ORDB
    /// answers it with DB_END); trailing bytes are an error.
    pub fn decode(body: &[u8]) -> Result<DbQuery, CellError> {
        let mut r = Reader::new(body);
        let q = DbQuery {
            hash_name: r.array()?,
            block: r.u32()?,
            offset: r.u32()?,
            counter: r.u8()?,
            flags: r.u8()?,
        };
        if r.remaining() != 0 {
            return Err(CellError::Malformed {
                what: "DB_QUERY",
                why: "trailing bytes",
            });
        }
        Ok(q)
    }
}

/// The answer to a DB_QUERY, before the block's bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DbConnected {
    /// The file's manifest, when the query asked for it.
    pub manifest: Option<Vec<u8>>,
    /// The block's audit path (RFC 6962), nearest sibling first.
    pub path: Vec<Hash>,
    /// A live stream's chunk: its signed header (no path then).
    pub live: Option<ChunkHeader>,
}

impl DbConnected {
    pub fn encode(&self) -> Result<Vec<u8>, CellError> {
        let manifest = self.manifest.as_deref().unwrap_or_default();
        if self.path.len() > MAX_PATH_LEN {
            return Err(CellError::TooLong(self.path.len()));
        }
        let mut out = Vec::with_capacity(3 + manifest.len() + 32 * self.path.len());
        let len = u16::try_from(manifest.len()).map_err(|_| CellError::TooLong(manifest.len()))?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(manifest);
        out.push(self.path.len() as u8);
        for h in &self.path {
            out.extend_from_slice(h);
        }
        if let Some(c) = &self.live {
            out.extend_from_slice(&c.encode());
        }
        if out.len() > MAX_DB_CONNECTED_LEN {
            return Err(CellError::TooLong(out.len()));
        }
        Ok(out)
    }

    /// The relay cell bodies that carry it: `MORE (1) | DATA`.
    pub fn fragments(&self) -> Result<Vec<Vec<u8>>, CellError> {
        let body = self.encode()?;
        let pieces: Vec<&[u8]> = body.chunks(RELAY_DATA_LEN - 1).collect();
        let last = pieces.len().saturating_sub(1);
        Ok(pieces
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                let mut f = vec![u8::from(i != last)];
                f.extend_from_slice(p);
                f
            })
            .collect())
    }

    pub fn decode(body: &[u8]) -> Result<DbConnected, CellError> {
        let mut r = Reader::new(body);
        let len = usize::from(r.u16()?);
        let manifest = r.take(len)?.to_vec();
        let n = usize::from(r.u8()?);
        if n > MAX_PATH_LEN {
            return Err(CellError::Malformed {
                what: "DB_CONNECTED",
                why: "audit path too long",
            });
        }
        let mut path = Vec::with_capacity(n);
        for _ in 0..n {
            path.push(r.array::<32>()?);
        }
        let live = match r.remaining() {
            0 => None,
            ChunkHeader::LEN => Some(ChunkHeader::decode(r.take(ChunkHeader::LEN)?)?),
            _ => {
                return Err(CellError::Malformed {
                    what: "DB_CONNECTED",
                    why: "trailing bytes",
                })
            }
        };
        Ok(DbConnected {
            manifest: (!manifest.is_empty()).then_some(manifest),
            path,
            live,
        })
    }
}

/// Reassembles DB_CONNECTED fragments on one stream.
#[derive(Debug, Default)]
pub struct DbConnectedReassembler {
    buf: Vec<u8>,
}

impl DbConnectedReassembler {
    /// Takes one fragment; the decoded answer once the last one came.
    pub fn push(&mut self, fragment: &[u8]) -> Result<Option<DbConnected>, CellError> {
        let bad = |why| CellError::Malformed {
            what: "DB_CONNECTED fragment",
            why,
        };
        let (more, data) = fragment.split_first().ok_or(bad("empty"))?;
        if self.buf.len() + data.len() > MAX_DB_CONNECTED_LEN {
            return Err(bad("too long"));
        }
        self.buf.extend_from_slice(data);
        match more {
            0 => DbConnected::decode(&std::mem::take(&mut self.buf)).map(Some),
            1 => Ok(None),
            _ => Err(bad("MORE must be 0 or 1")),
        }
    }
}

/// The 8 bytes before a DB_DATA cell's data: node-Tor's "timestamp and
/// short check". For a file, POSITION is the offset of the data within
/// its block (it must follow on from the bytes before it) and CHECK is
/// `block_check(hash_name, block)`: every cell names the file and block
/// it belongs to, so a relaying ORDB that splices the wrong stream is
/// caught at its first cell rather than when the block fails its Merkle
/// check. A live chunk is framed the same way (BLOCK is its ring index);
/// its timestamp is in its signed header, in DB_CONNECTED.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DbDataHeader {
    pub position: u32,
    pub check: [u8; 4],
}

impl DbDataHeader {
    pub fn encode(&self, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(DB_DATA_HEADER_LEN + data.len());
        out.extend_from_slice(&self.position.to_be_bytes());
        out.extend_from_slice(&self.check);
        out.extend_from_slice(data);
        out
    }

    /// The header and the data after it.
    pub fn decode(body: &[u8]) -> Result<(DbDataHeader, &[u8]), CellError> {
        let mut r = Reader::new(body);
        let h = DbDataHeader {
            position: r.u32()?,
            check: r.array()?,
        };
        Ok((h, r.rest()))
    }
}

/// CHECK for the cells of block `block` of file `hash_name`: the first 4
/// bytes of `SHA-256(HASH_NAME | BLOCK (4))`.
pub fn block_check(hash_name: &[u8; 20], block: u32) -> [u8; 4] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(hash_name);
    h.update(block.to_be_bytes());
    let mut out = [0; 4];
    for (o, b) in out.iter_mut().zip(h.finalize()) {
        *o = b;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_round_trip_and_bad_ones_are_errors() {
        let q = DbQuery {
            hash_name: [3; 20],
            block: 7,
            offset: 4900,
            counter: 2,
            flags: WANT_MANIFEST,
        };
        let b = q.encode();
        assert_eq!(b.len(), DbQuery::LEN);
        assert_eq!(DbQuery::decode(&b).unwrap(), q);
        assert!(DbQuery::decode(&b[..29]).is_err());
        let mut longer = b.clone();
        longer.push(0);
        assert!(DbQuery::decode(&longer).is_err());
    }

    #[test]
    fn connected_round_trips_through_fragments() {
        let chunk = ChunkHeader {
            seq: 7,
            timestamp_ms: 9,
            len: 490,
            flags: 1,
            signature: [3; 64],
        };
        for (manifest, path_len, live) in [
            (None, 0, None),
            (Some(vec![5u8; 700]), 9, None),
            (Some(vec![1]), 24, None),
            (Some(vec![2; 3500]), 0, Some(chunk)),
        ] {
            let c = DbConnected {
                manifest,
                path: (0..path_len).map(|i| [i as u8; 32]).collect(),
                live,
            };
            let mut r = DbConnectedReassembler::default();
            let frags = c.fragments().unwrap();
            let mut got = None;
            for (i, f) in frags.iter().enumerate() {
                assert!(f.len() <= RELAY_DATA_LEN);
                got = r.push(f).unwrap();
                assert_eq!(got.is_some(), i + 1 == frags.len());
            }
            assert_eq!(got.unwrap(), c);
        }
        let too_long = DbConnected {
            manifest: None,
            path: vec![[0; 32]; MAX_PATH_LEN + 1],
            live: None,
        };
        assert!(too_long.encode().is_err());
        assert!(DbConnected::decode(&[0, 0, 25]).is_err());
        assert!(DbConnected::decode(&[0, 0, 0, 9]).is_err());
        let mut r = DbConnectedReassembler::default();
        assert!(r.push(&[]).is_err());
        assert!(r.push(&[2, 0]).is_err());
        let mut r = DbConnectedReassembler::default();
        let mut failed = false;
        for _ in 0..20 {
            if r.push(&[1; RELAY_DATA_LEN]).is_err() {
                failed = true;
                break;
            }
        }
        assert!(failed, "an endless DB_CONNECTED is refused");
    }

    #[test]
    fn data_header_round_trips() {
        let h = DbDataHeader {
            position: 980,
            check: [1, 2, 3, 4],
        };
        let body = h.encode(&[9; DB_DATA_LEN]);
        assert_eq!(body.len(), RELAY_DATA_LEN);
        let (back, data) = DbDataHeader::decode(&body).unwrap();
        assert_eq!(back, h);
        assert_eq!(data, &[9; DB_DATA_LEN]);
        assert!(DbDataHeader::decode(&[0; 7]).is_err());
    }
}
