//! Live streams (docs/PROTOCOL.md "Live streams"): a source publishes
//! chunks as they are recorded; viewers follow them through ORDBs, and
//! every viewer serves the chunks it has to the viewers behind it
//! (node-Tor's `OR_streams_P`).
//!
//! - A **live manifest** names the stream: the publisher's Ed25519 key,
//!   the MIME type, the media's initialization segment, the chunk cadence
//!   and the window. Its `hash_name` is SHA-256 of it, as for a file.
//! - A stream **relayed from a web address** (the seed's "connection to
//!   the stream: http://mytv.fr, hash_name efgh") is named by that
//!   address instead (`web_stream_name`), so every viewer of the address
//!   finds the tab that fetches it; the manifest says so (`web`) and its
//!   name is the address.
//! - A **chunk** is signed as it is produced, with its sequence number and
//!   timestamp (`ChunkHeader`, carried in DB_CONNECTED).
//! - On the wire a chunk is asked by its **index** in a ring of
//!   `4 × window` indexes, `seq mod ring`: the seed's sliding window of
//!   four windows whose indexes are rotated and reused. An ORDB resolves
//!   an index to the sequence number nearest its own live edge
//!   (`LiveRing::resolve`); the viewer checks the signed sequence number
//!   and timestamp, so a chunk from an earlier turn of the ring (a replay)
//!   or another stream is refused.
//! - Holders keep at most the last `4 × window` chunks, and none older
//!   than four windows of time.
//! - A joiner asks for `LIVE_EDGE` and gets the seed's index M: the newest
//!   chunk less two windows, moved to the first chunk that starts on a
//!   keyframe (where a decoder can begin).

use ed25519_dalek::{Signer, SigningKey};
use sha2::{Digest, Sha256};

use super::manifest::{
    hash_name_of, signed_by, unsafe_in_name, HashName, ManifestError, BLOCK_LEN, MAX_TYPE_LEN,
};
use crate::cell::{CellError, Reader};

/// DB_QUERY's BLOCK for "where a joiner should start" (node-Tor's chunk 0).
pub const LIVE_EDGE: u32 = u32::MAX;
/// Largest chunk: a file's block, so the ORDB's memory caps hold.
pub const MAX_CHUNK: usize = BLOCK_LEN as usize;
/// Largest initialization segment a manifest carries (it must fit in one
/// DB_CONNECTED with the chunk header).
pub const MAX_INIT: usize = 3000;
pub const MAX_LIVE_NAME: usize = 256;
/// Chunks per window, and the bounds a manifest may give.
pub const DEFAULT_WINDOW: u8 = 5;
pub const MAX_WINDOW: u8 = 32;
/// Chunk cadence a manifest may give, ms.
pub const DEFAULT_CHUNK_MS: u32 = 250;
pub const MIN_CHUNK_MS: u32 = 20;
pub const MAX_CHUNK_MS: u32 = 10_000;
/// Chunk flag: the chunk begins where a decoder can start (a WebM cluster
/// that opens on a keyframe).
pub const KEY: u8 = 1;

const VERSION: u8 = 3;
const MANIFEST_CONTEXT: &[u8] = b"peersm live manifest v1\0";
const WEB_NAME_CONTEXT: &[u8] = b"peersm web live v1\0";
const CHUNK_CONTEXT: &[u8] = b"peersm live chunk v1\0";

/// What names a live stream.
///
/// ```text
/// VERSION (1) = 3 | START_MS (8) | CHUNK_MS (4) | WINDOW (1) | WEB (1)
/// | TYPE_LEN (1) | TYPE | NAME_LEN (2) | NAME | INIT_LEN (2) | INIT
/// | KEY (32) | SIG (64)
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveManifest {
    /// When the stream began (the publisher's clock, ms since the epoch).
    pub start_ms: u64,
    /// How often a chunk comes (a hint for timers, not a promise).
    pub chunk_ms: u32,
    /// Chunks per window.
    pub window: u8,
    /// MIME type with codecs, as `MediaSource.addSourceBuffer` takes it.
    pub mime: String,
    /// The stream's name; for a stream relayed from the web, its address.
    pub name: String,
    /// Relayed from the web address `name` (named by it) rather than
    /// recorded by the publisher (named by this manifest).
    pub web: bool,
    /// The media's initialization segment (WebM: up to the first Cluster).
    pub init: Vec<u8>,
    pub key: [u8; 32],
    pub signature: [u8; 64],
}

/// The hash_name of the live stream relayed from web address `url` (as
/// `HttpUrl` writes it): SHA-256 of the address, so that every tab asking
/// for it asks for the same stream.
pub fn web_stream_name(url: &str) -> HashName {
    hash_name_of(&[WEB_NAME_CONTEXT, url.as_bytes()])
}

impl LiveManifest {
    pub fn sign(
        start_ms: u64,
        chunk_ms: u32,
        mime: &str,
        name: &str,
        init: &[u8],
        key: &SigningKey,
    ) -> Result<LiveManifest, ManifestError> {
        Self::sign_as(start_ms, chunk_ms, mime, name, false, init, key)
    }

    /// The manifest of a stream this tab relays from web address `url`.
    pub fn sign_web(
        start_ms: u64,
        chunk_ms: u32,
        mime: &str,
        url: &str,
        init: &[u8],
        key: &SigningKey,
    ) -> Result<LiveManifest, ManifestError> {
        Self::sign_as(start_ms, chunk_ms, mime, url, true, init, key)
    }

    fn sign_as(
        start_ms: u64,
        chunk_ms: u32,
        mime: &str,
        name: &str,
        web: bool,
        init: &[u8],
        key: &SigningKey,
    ) -> Result<LiveManifest, ManifestError> {
        let mut m = LiveManifest {
            start_ms,
            chunk_ms,
            window: DEFAULT_WINDOW,
            mime: mime.into(),
            name: name.into(),
            web,
            init: init.to_vec(),
            key: key.verifying_key().to_bytes(),
            signature: [0; 64],
        };
        m.check_fields()?;
        m.signature = key.sign(&m.signed_message()).to_bytes();
        Ok(m)
    }

    /// Indexes in the ring: four windows.
    pub fn ring(&self) -> u64 {
        4 * u64::from(self.window)
    }

    /// How long a holder keeps a chunk: four windows of time.
    pub fn keep_ms(&self) -> u64 {
        self.ring() * u64::from(self.chunk_ms)
    }

    /// The index on the wire of chunk `seq`.
    pub fn index_of(&self, seq: u64) -> u32 {
        (seq % self.ring().max(1)) as u32
    }

    pub fn hash_name(&self) -> HashName {
        if self.web {
            return web_stream_name(&self.name);
        }
        hash_name_of(&[&self.encode()])
    }

    fn body(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(120 + self.mime.len() + self.name.len() + self.init.len());
        out.push(VERSION);
        out.extend_from_slice(&self.start_ms.to_be_bytes());
        out.extend_from_slice(&self.chunk_ms.to_be_bytes());
        out.push(self.window);
        out.push(u8::from(self.web));
        out.push(self.mime.len() as u8);
        out.extend_from_slice(self.mime.as_bytes());
        out.extend_from_slice(&(self.name.len() as u16).to_be_bytes());
        out.extend_from_slice(self.name.as_bytes());
        out.extend_from_slice(&(self.init.len() as u16).to_be_bytes());
        out.extend_from_slice(&self.init);
        out.extend_from_slice(&self.key);
        out
    }

    fn signed_message(&self) -> Vec<u8> {
        [MANIFEST_CONTEXT, &self.body()].concat()
    }

    pub fn encode(&self) -> Vec<u8> {
        [self.body(), self.signature.to_vec()].concat()
    }

    fn check_fields(&self) -> Result<(), ManifestError> {
        if !(1..=MAX_WINDOW).contains(&self.window) {
            return Err(ManifestError::Invalid("window out of range"));
        }
        if !(MIN_CHUNK_MS..=MAX_CHUNK_MS).contains(&self.chunk_ms) {
            return Err(ManifestError::Invalid("chunk cadence out of range"));
        }
        if self.mime.is_empty()
            || self.mime.len() > MAX_TYPE_LEN
            || !self.mime.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
        {
            return Err(ManifestError::Invalid("MIME type"));
        }
        if self.name.len() > MAX_LIVE_NAME || self.name.chars().any(unsafe_in_name) {
            return Err(ManifestError::Invalid("name"));
        }
        if self.web && (self.name.is_empty() || !self.name.bytes().all(|b| b.is_ascii_graphic())) {
            return Err(ManifestError::Invalid("web address"));
        }
        if self.init.len() > MAX_INIT {
            return Err(ManifestError::Invalid("initialization segment too long"));
        }
        Ok(())
    }

    /// Whether `bytes` are a live manifest rather than a file's (by the
    /// version byte; `decode` checks the rest).
    pub fn is_live(bytes: &[u8]) -> bool {
        bytes.first() == Some(&VERSION)
    }

    pub fn decode(bytes: &[u8]) -> Result<LiveManifest, ManifestError> {
        let mut r = Reader::new(bytes);
        if r.u8()? != VERSION {
            return Err(ManifestError::Invalid("not a live manifest"));
        }
        let start_ms = u64::from_be_bytes(r.array()?);
        let chunk_ms = r.u32()?;
        let window = r.u8()?;
        let web = match r.u8()? {
            0 => false,
            1 => true,
            _ => return Err(ManifestError::Invalid("source")),
        };
        let len = usize::from(r.u8()?);
        let mime = String::from_utf8(r.take(len)?.to_vec())
            .map_err(|_| ManifestError::Invalid("MIME type"))?;
        let len = usize::from(r.u16()?);
        let name = String::from_utf8(r.take(len)?.to_vec())
            .map_err(|_| ManifestError::Invalid("name is not UTF-8"))?;
        let len = usize::from(r.u16()?);
        let init = r.take(len)?.to_vec();
        let key = r.array::<32>()?;
        let signature = r.array::<64>()?;
        if r.remaining() != 0 {
            return Err(ManifestError::Invalid("trailing bytes"));
        }
        let m = LiveManifest {
            start_ms,
            chunk_ms,
            window,
            mime,
            name,
            web,
            init,
            key,
            signature,
        };
        m.check_fields()?;
        if !signed_by(&key, &m.signed_message(), &signature) {
            return Err(ManifestError::Signature);
        }
        Ok(m)
    }

    pub fn decode_for(bytes: &[u8], hash_name: &HashName) -> Result<LiveManifest, ManifestError> {
        let m = LiveManifest::decode(bytes)?;
        if m.hash_name() != *hash_name {
            return Err(ManifestError::WrongHash);
        }
        Ok(m)
    }

    /// Whether `data` is chunk `header.seq` of this stream, signed by its
    /// publisher.
    pub fn check_chunk(&self, h: &HashName, header: &ChunkHeader, data: &[u8]) -> bool {
        data.len() == header.len as usize
            && data.len() <= MAX_CHUNK
            && signed_by(
                &self.key,
                &header.signed_message(h, data),
                &header.signature,
            )
    }
}

/// A chunk's signed header, sent in DB_CONNECTED ahead of its bytes.
///
/// ```text
/// SEQ (8) | TIMESTAMP_MS (8) | LEN (4) | FLAGS (1) | SIG (64)
/// ```
/// SIG signs `"peersm live chunk v1\0" | HASH_NAME | SEQ | TIMESTAMP_MS |
/// LEN | FLAGS | SHA-256(data)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkHeader {
    pub seq: u64,
    /// When the publisher produced it (its clock, ms since the epoch).
    pub timestamp_ms: u64,
    pub len: u32,
    pub flags: u8,
    pub signature: [u8; 64],
}

impl ChunkHeader {
    pub const LEN: usize = 85;

    pub fn sign(
        key: &SigningKey,
        h: &HashName,
        seq: u64,
        timestamp_ms: u64,
        flags: u8,
        data: &[u8],
    ) -> ChunkHeader {
        let mut c = ChunkHeader {
            seq,
            timestamp_ms,
            len: data.len() as u32,
            flags,
            signature: [0; 64],
        };
        c.signature = key.sign(&c.signed_message(h, data)).to_bytes();
        c
    }

    pub fn is_key(&self) -> bool {
        self.flags & KEY != 0
    }

    fn signed_message(&self, h: &HashName, data: &[u8]) -> Vec<u8> {
        let mut m = CHUNK_CONTEXT.to_vec();
        m.extend_from_slice(&h.0);
        m.extend_from_slice(&self.seq.to_be_bytes());
        m.extend_from_slice(&self.timestamp_ms.to_be_bytes());
        m.extend_from_slice(&self.len.to_be_bytes());
        m.push(self.flags);
        m.extend_from_slice(&Sha256::digest(data));
        m
    }

    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut out = [0; Self::LEN];
        out[..8].copy_from_slice(&self.seq.to_be_bytes());
        out[8..16].copy_from_slice(&self.timestamp_ms.to_be_bytes());
        out[16..20].copy_from_slice(&self.len.to_be_bytes());
        out[20] = self.flags;
        out[21..].copy_from_slice(&self.signature);
        out
    }

    pub fn decode(b: &[u8]) -> Result<ChunkHeader, CellError> {
        let mut r = Reader::new(b);
        let h = ChunkHeader {
            seq: u64::from_be_bytes(r.array()?),
            timestamp_ms: u64::from_be_bytes(r.array()?),
            len: r.u32()?,
            flags: r.u8()?,
            signature: r.array()?,
        };
        if r.remaining() != 0 || h.len as usize > MAX_CHUNK {
            return Err(CellError::Malformed {
                what: "live chunk header",
                why: "bad length",
            });
        }
        Ok(h)
    }
}

/// A verified chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub header: ChunkHeader,
    pub data: std::rc::Rc<Vec<u8>>,
}

#[derive(Debug, Clone)]
struct Slot {
    chunk: Chunk,
    /// When we got it (our clock): it expires four windows later.
    received_at: u64,
}

/// The chunks a holder keeps of one stream: one slot per ring index.
#[derive(Debug, Clone)]
pub struct LiveRing {
    pub manifest: LiveManifest,
    pub manifest_bytes: Vec<u8>,
    pub hash_name: HashName,
    slots: Vec<Option<Slot>>,
    newest: Option<u64>,
    /// We publish this stream: chunks not made yet can only come here.
    pub origin: bool,
}

impl LiveRing {
    pub fn new(manifest: LiveManifest) -> LiveRing {
        let manifest_bytes = manifest.encode();
        let hash_name = manifest.hash_name();
        LiveRing {
            slots: vec![None; manifest.ring() as usize],
            manifest,
            manifest_bytes,
            hash_name,
            newest: None,
            origin: false,
        }
    }

    /// The newest sequence number held (or once held).
    pub fn newest(&self) -> Option<u64> {
        self.newest
    }

    fn slot(&self, seq: u64) -> Option<&Slot> {
        let i = (seq % self.manifest.ring()) as usize;
        self.slots
            .get(i)
            .and_then(Option::as_ref)
            .filter(|s| s.chunk.header.seq == seq)
    }

    /// Whether our newest chunk was made less than a window before `now`
    /// (by the publisher's clock against ours): then we are at the edge,
    /// and a chunk not made yet will come to us soon.
    pub fn at_edge(&self, now: u64) -> bool {
        let lag = u64::from(self.manifest.window) * u64::from(self.manifest.chunk_ms);
        self.newest
            .and_then(|n| self.get(n))
            .is_some_and(|c| c.header.timestamp_ms + lag >= now)
    }

    pub fn get(&self, seq: u64) -> Option<&Chunk> {
        self.slot(seq).map(|s| &s.chunk)
    }

    pub fn held(&self) -> usize {
        self.slots.iter().flatten().count()
    }

    /// Keeps a verified chunk. Returns false for one older than the ring
    /// holds, or one already held.
    pub fn insert(&mut self, chunk: Chunk, now: u64) -> bool {
        let seq = chunk.header.seq;
        let ring = self.manifest.ring();
        if self.newest.is_some_and(|n| seq.saturating_add(ring) <= n) || self.get(seq).is_some() {
            return false;
        }
        let i = (seq % ring) as usize;
        if let Some(Some(old)) = self.slots.get(i) {
            if old.chunk.header.seq > seq {
                return false;
            }
        }
        if let Some(s) = self.slots.get_mut(i) {
            *s = Some(Slot {
                chunk,
                received_at: now,
            });
        }
        self.newest = Some(self.newest.map_or(seq, |n| n.max(seq)));
        // Slots a turn of the ring behind the newest are stale.
        let newest = self.newest.unwrap_or(seq);
        for s in &mut self.slots {
            if s.as_ref()
                .is_some_and(|s| s.chunk.header.seq.saturating_add(ring) <= newest)
            {
                *s = None;
            }
        }
        true
    }

    /// Drops chunks kept longer than four windows of time.
    pub fn expire(&mut self, now: u64) {
        let keep = self.manifest.keep_ms();
        for s in &mut self.slots {
            if s.as_ref()
                .is_some_and(|s| now.saturating_sub(s.received_at) > keep)
            {
                *s = None;
            }
        }
    }

    /// When the next chunk expires.
    pub fn next_expiry(&self) -> Option<u64> {
        self.slots
            .iter()
            .flatten()
            .map(|s| s.received_at + self.manifest.keep_ms() + 1)
            .min()
    }

    /// The sequence number a ring index names here: the one in the two
    /// windows from our newest chunk back and the two ahead of it
    /// (`None` before any).
    pub fn resolve(&self, index: u32) -> Option<u64> {
        let ring = self.manifest.ring();
        if u64::from(index) >= ring {
            return None;
        }
        let newest = self.newest?;
        let half = ring / 2;
        // The lowest sequence number in [newest - half, newest + half).
        let low = newest.saturating_sub(half);
        let offset = (u64::from(index) + ring - low % ring) % ring;
        Some(low + offset)
    }

    /// Where a joiner starts (the seed's index M): the newest chunk less
    /// two windows, then the first key chunk from there on; the newest
    /// key chunk before it when none follows. `None` while no key chunk
    /// is held.
    pub fn joiner_start(&self) -> Option<u64> {
        let newest = self.newest?;
        let m = newest.saturating_sub(2 * u64::from(self.manifest.window));
        let keys = || {
            self.slots
                .iter()
                .flatten()
                .filter(|s| s.chunk.header.is_key())
                .map(|s| s.chunk.header.seq)
        };
        keys().filter(|&s| s >= m).min().or_else(|| keys().max())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn key() -> SigningKey {
        SigningKey::from_bytes(&[7; 32])
    }

    pub(crate) fn manifest() -> LiveManifest {
        LiveManifest::sign(
            1_000,
            250,
            "video/webm; codecs=\"vp8\"",
            "camera",
            b"init",
            &key(),
        )
        .unwrap()
    }

    pub(crate) fn chunk(m: &LiveManifest, seq: u64, flags: u8) -> Chunk {
        let data = vec![seq as u8; 100 + seq as usize % 7];
        let header =
            ChunkHeader::sign(&key(), &m.hash_name(), seq, 1_000 + seq * 250, flags, &data);
        Chunk {
            header,
            data: data.into(),
        }
    }

    #[test]
    fn manifests_and_chunks_verify_and_every_altered_byte_is_refused() {
        let m = manifest();
        let bytes = m.encode();
        let h = m.hash_name();
        assert_eq!(LiveManifest::decode_for(&bytes, &h).unwrap(), m);
        assert!(LiveManifest::is_live(&bytes));
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            assert!(LiveManifest::decode_for(&b, &h).is_err(), "byte {i}");
        }
        let c = chunk(&m, 3, KEY);
        assert_eq!(ChunkHeader::decode(&c.header.encode()).unwrap(), c.header);
        assert!(m.check_chunk(&h, &c.header, &c.data));
        let mut data = c.data.to_vec();
        data[0] ^= 1;
        assert!(!m.check_chunk(&h, &c.header, &data), "altered data");
        for i in 0..ChunkHeader::LEN {
            let mut b = c.header.encode();
            b[i] ^= 0x01;
            let ok = ChunkHeader::decode(&b).is_ok_and(|hd| m.check_chunk(&h, &hd, &c.data));
            assert!(!ok, "header byte {i}");
        }
        let other = HashName([9; 20]);
        assert!(!m.check_chunk(&other, &c.header, &c.data), "another stream");
    }

    #[test]
    fn a_web_streams_manifest_is_named_by_its_address() {
        let url = "http://127.0.0.1:8080/live.webm";
        let m = LiveManifest::sign_web(1_000, 250, "video/webm", url, b"init", &key()).unwrap();
        let h = m.hash_name();
        assert_eq!(h, web_stream_name(url));
        assert_ne!(h, manifest().hash_name());
        // Another tab's key for the same address: the same stream name,
        // its own signature.
        let other = SigningKey::from_bytes(&[8; 32]);
        let m2 = LiveManifest::sign_web(2_000, 250, "video/webm", url, b"init", &other).unwrap();
        assert_eq!(m2.hash_name(), h);
        let bytes = m.encode();
        assert_eq!(LiveManifest::decode_for(&bytes, &h).unwrap(), m);
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            assert!(LiveManifest::decode_for(&b, &h).is_err(), "byte {i}");
        }
        // The web flag is signed: a recorded stream's manifest cannot pass
        // for the address's, nor the other way round.
        let recorded = LiveManifest::sign(1_000, 250, "video/webm", url, b"init", &key()).unwrap();
        assert!(LiveManifest::decode_for(&recorded.encode(), &h).is_err());
        assert!(LiveManifest::sign_web(1_000, 250, "video/webm", "a b", b"", &key()).is_err());
    }

    #[test]
    fn indexes_rotate_and_resolve_near_the_holders_edge() {
        let m = manifest();
        assert_eq!(m.ring(), 20);
        let mut ring = LiveRing::new(m.clone());
        assert_eq!(ring.resolve(3), None, "nothing held yet");
        for seq in 0..30 {
            assert!(ring.insert(chunk(&m, seq, 0), 0));
        }
        // Newest 29: indexes name 19..39.
        assert_eq!(ring.resolve(m.index_of(29)), Some(29));
        assert_eq!(ring.resolve(m.index_of(30)), Some(30), "the next one");
        assert_eq!(ring.resolve(m.index_of(38)), Some(38));
        assert_eq!(
            ring.resolve(m.index_of(19)),
            Some(19),
            "where a joiner starts"
        );
        assert_eq!(ring.resolve(m.index_of(20)), Some(20));
        assert_eq!(ring.resolve(20), None, "outside the ring");
        // Only the last ring's worth is held; the older turn was reused.
        assert_eq!(ring.held(), 20);
        assert!(ring.get(9).is_none() && ring.get(10).is_some());
        assert!(!ring.insert(chunk(&m, 5, 0), 0), "a turn behind");
        assert!(!ring.insert(chunk(&m, 29, 0), 0), "held already");
    }

    #[test]
    fn a_joiner_starts_two_windows_back_on_a_key_chunk() {
        let m = manifest();
        let mut ring = LiveRing::new(m.clone());
        for seq in 0..8 {
            ring.insert(chunk(&m, seq, 0), 0);
        }
        assert_eq!(ring.joiner_start(), None, "no key chunk yet");
        for seq in 8..40 {
            let flags = if seq % 4 == 0 { KEY } else { 0 };
            ring.insert(chunk(&m, seq, flags), 0);
        }
        // Newest 39, M = 29: the first key chunk from there is 32.
        assert_eq!(ring.joiner_start(), Some(32));
        ring.insert(chunk(&m, 41, 0), 0);
        // M = 31: still 32.
        assert_eq!(ring.joiner_start(), Some(32));
        let mut sparse = LiveRing::new(m.clone());
        sparse.insert(chunk(&m, 20, KEY), 0);
        sparse.insert(chunk(&m, 35, 0), 0);
        assert_eq!(sparse.joiner_start(), Some(20), "the newest key before M");
    }

    #[test]
    fn chunks_expire_after_four_windows_of_time() {
        let m = manifest();
        let mut ring = LiveRing::new(m.clone());
        ring.insert(chunk(&m, 0, KEY), 0);
        ring.insert(chunk(&m, 1, 0), 3_000);
        ring.expire(5_000);
        assert!(ring.get(0).is_some(), "kept for four windows (5 s)");
        ring.expire(5_001);
        assert!(ring.get(0).is_none() && ring.get(1).is_some());
        assert_eq!(ring.next_expiry(), Some(8_001));
    }
}
