//! A live stream relayed from a web address (docs/PROTOCOL.md "Live
//! streams from a web address"), sans IO: when a viewer stops looking for
//! tabs that relay it and fetches the address itself (the seed's "direct
//! download if nobody has chunks"), and how the fetched body's pieces
//! become chunks at the stream's cadence.
//!
//! A body comes in reads of any size (a few hundred bytes to 64 KiB);
//! signing each as a chunk would spin the ring of `4 × window` indexes in
//! a fraction of a second, and a joiner two windows back would start a
//! moment before the edge rather than seconds before. So pieces gather
//! into one chunk per `chunk_ms`, and a piece where a decoder can start
//! (`key`) always begins a chunk.

use super::live::MAX_CHUNK;

/// How long a viewer looks for tabs relaying the address before it
/// fetches the address itself.
pub const LOOK_MS: u64 = 12_000;
/// Circuits whose ORDB answered UNAVAILABLE (found nobody), with no
/// manifest from any, that mean nobody relays the address yet: as many as
/// the circuits a follower keeps, since one ORDB that has not heard of the
/// stream (or lies) proves little.
pub const NOT_FOUND_TO_GO_DIRECT: usize = super::follow::LIVE_SOURCES;

/// Whether to stop looking and fetch the address: no manifest came, and
/// the ORDBs of `not_found_by` circuits found nobody holding the stream,
/// or the looking took too long.
pub fn nobody_relays(not_found_by: usize, manifest: bool, since: u64, now: u64) -> bool {
    !manifest && (not_found_by >= NOT_FOUND_TO_GO_DIRECT || now.saturating_sub(since) >= LOOK_MS)
}

/// Pieces of media gathered into chunks of about `chunk_ms` each.
#[derive(Debug)]
pub struct ChunkBatcher {
    chunk_ms: u64,
    pending: Vec<u8>,
    key: bool,
    began: u64,
}

impl ChunkBatcher {
    pub fn new(chunk_ms: u32) -> Self {
        ChunkBatcher {
            chunk_ms: u64::from(chunk_ms.max(1)),
            pending: Vec::new(),
            key: false,
            began: 0,
        }
    }

    /// Adds a piece; returns the chunks (bytes, key) complete now.
    pub fn push(&mut self, data: &[u8], key: bool, now: u64) -> Vec<(Vec<u8>, bool)> {
        let mut out = Vec::new();
        if key && !self.pending.is_empty() {
            out.extend(self.flush());
        }
        if self.pending.is_empty() {
            self.key = key;
            self.began = now;
        }
        let mut rest = data;
        while !rest.is_empty() {
            let room = MAX_CHUNK - self.pending.len();
            let (take, after) = rest.split_at(room.min(rest.len()));
            self.pending.extend_from_slice(take);
            rest = after;
            if self.pending.len() == MAX_CHUNK {
                out.extend(self.flush());
                self.began = now;
            }
        }
        out.extend(self.tick(now));
        out
    }

    /// The chunk whose time has come, if any.
    pub fn tick(&mut self, now: u64) -> Option<(Vec<u8>, bool)> {
        match self.due() {
            Some(due) if now >= due => self.flush(),
            _ => None,
        }
    }

    /// When the chunk being gathered is due.
    pub fn due(&self) -> Option<u64> {
        (!self.pending.is_empty()).then_some(self.began + self.chunk_ms)
    }

    /// Forgets what is gathered (the body broke off: it would not decode).
    pub fn discard(&mut self) {
        self.pending.clear();
        self.key = false;
    }

    /// What is gathered, as a chunk (at the end of the body).
    pub fn flush(&mut self) -> Option<(Vec<u8>, bool)> {
        if self.pending.is_empty() {
            return None;
        }
        let key = std::mem::take(&mut self.key);
        Some((std::mem::take(&mut self.pending), key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_gather_into_a_chunk_per_cadence_and_a_key_piece_begins_one() {
        let mut b = ChunkBatcher::new(250);
        assert!(b.push(b"k1", true, 0).is_empty());
        assert!(b.push(b"a", false, 100).is_empty());
        assert_eq!(b.due(), Some(250));
        assert_eq!(b.tick(249), None);
        assert_eq!(b.tick(250), Some((b"k1a".to_vec(), true)));
        assert_eq!(b.due(), None);
        assert!(b.push(b"b", false, 300).is_empty());
        // A key piece closes what was gathered, and begins the next chunk.
        assert_eq!(b.push(b"k2", true, 320), vec![(b"b".to_vec(), false)]);
        assert_eq!(b.push(b"c", false, 600), vec![(b"k2c".to_vec(), true)]);
        assert_eq!(b.flush(), None);
        // A piece larger than a chunk is cut; the key flag goes with the
        // first part only.
        let big = vec![7u8; MAX_CHUNK + 10];
        let out = b.push(&big, true, 1_000);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].0.len(), out[0].1), (MAX_CHUNK, true));
        assert_eq!(b.flush(), Some((vec![7u8; 10], false)));
    }

    #[test]
    fn a_viewer_fetches_the_address_when_nobody_relays_it() {
        assert!(!nobody_relays(0, false, 1_000, 2_000));
        assert!(!nobody_relays(
            NOT_FOUND_TO_GO_DIRECT - 1,
            false,
            1_000,
            2_000
        ));
        assert!(nobody_relays(0, false, 1_000, 1_000 + LOOK_MS));
        assert!(nobody_relays(NOT_FOUND_TO_GO_DIRECT, false, 1_000, 1_500));
        assert!(
            !nobody_relays(9, true, 1_000, 1_000 + LOOK_MS),
            "a manifest came"
        );
    }
}
