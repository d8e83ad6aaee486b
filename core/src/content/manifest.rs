//! A file's manifest: what DB_CONNECTED carries and what its `hash_name`
//! names (docs/PROTOCOL.md "ORDB: content").
//!
//! ```text
//! VERSION (1) = 1 | SIZE (8) | BLOCK_LEN (4) | ROOT (32)
//! | TYPE_LEN (1) | TYPE | NAME_LEN (2) | NAME | KEY (32) | SIG (64)
//! ```
//!
//! ROOT is the RFC 6962 Merkle root over the file's blocks (`merkle.rs`),
//! KEY the seeder's Ed25519 key for this file, SIG its signature over
//! `"peersm manifest v1\0"` followed by every byte before SIG. The
//! `hash_name` is the first 20 bytes of SHA-256 over the whole manifest,
//! signature included: anyone holding a hash_name can check the manifest
//! a peer answers with, and then every block against ROOT.
//!
//! The key is made for the one file and forgotten once it has signed (the
//! manifest is kept): a key per file, rather than the tab's identity, so a
//! download learns nothing of who seeded, and two files of one seeder are
//! not linked by their keys.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use super::merkle::{self, Hash, MAX_BLOCKS};
use crate::cell::{CellError, Reader};
use crate::crypto::PeerId;

/// Bytes per block: 200 DB_DATA payloads of 490 bytes, so five blocks in
/// flight make the scheduler's ~500 kB window.
pub const BLOCK_LEN: u32 = 98_000;
/// Block sizes a manifest may name.
pub const MIN_BLOCK_LEN: u32 = 490;
pub const MAX_BLOCK_LEN: u32 = 1 << 20;
pub const MAX_TYPE_LEN: usize = 127;
pub const MAX_NAME_LEN: usize = 1024;
const SIGNATURE_CONTEXT: &[u8] = b"peersm manifest v1\0";
const VERSION: u8 = 1;

/// A file's name in the network: 160 bits, the DHT's key space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HashName(pub [u8; 20]);

impl HashName {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// 40 hex digits (either case).
    pub fn from_hex(s: &str) -> Option<HashName> {
        let bytes = hex::decode(s.trim()).ok()?;
        Some(HashName(bytes.try_into().ok()?))
    }

    /// The DHT key at which references to this file are stored.
    pub fn key(&self) -> PeerId {
        PeerId(self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub size: u64,
    pub block_len: u32,
    pub root: Hash,
    /// MIME type, printable ASCII.
    pub mime: String,
    pub name: String,
    pub key: [u8; 32],
    pub signature: [u8; 64],
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("malformed manifest: {0}")]
    Malformed(#[from] CellError),
    #[error("bad manifest: {0}")]
    Invalid(&'static str),
    #[error("the manifest's signature does not verify")]
    Signature,
    #[error("the manifest is not the one its hash_name names")]
    WrongHash,
}

impl Manifest {
    /// Signs a manifest for a file of `size` bytes whose blocks (of
    /// `BLOCK_LEN`) hash to `leaves`, with a key made from `secret`.
    pub fn sign(
        size: u64,
        leaves: &[Hash],
        mime: &str,
        name: &str,
        secret: &[u8; 32],
    ) -> Result<Manifest, ManifestError> {
        let key = SigningKey::from_bytes(secret);
        let mut m = Manifest {
            size,
            block_len: BLOCK_LEN,
            root: merkle::root(leaves),
            mime: mime.to_string(),
            name: name.to_string(),
            key: key.verifying_key().to_bytes(),
            signature: [0; 64],
        };
        if leaves.len() as u64 != m.blocks() {
            return Err(ManifestError::Invalid(
                "block count does not match the size",
            ));
        }
        m.check_fields()?;
        m.signature = key.sign(&m.signed_message()).to_bytes();
        Ok(m)
    }

    /// Blocks in the file (the last one may be short).
    pub fn blocks(&self) -> u64 {
        self.size.div_ceil(u64::from(self.block_len.max(1)))
    }

    /// Bytes in block `index` (0 past the end).
    pub fn block_size(&self, index: u64) -> u32 {
        let start = index.saturating_mul(u64::from(self.block_len));
        let len = self
            .size
            .saturating_sub(start)
            .min(u64::from(self.block_len));
        len as u32
    }

    pub fn hash_name(&self) -> HashName {
        hash_name_of(&[&self.encode()])
    }

    fn body(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(96 + self.mime.len() + self.name.len());
        out.push(VERSION);
        out.extend_from_slice(&self.size.to_be_bytes());
        out.extend_from_slice(&self.block_len.to_be_bytes());
        out.extend_from_slice(&self.root);
        out.push(self.mime.len() as u8);
        out.extend_from_slice(self.mime.as_bytes());
        out.extend_from_slice(&(self.name.len() as u16).to_be_bytes());
        out.extend_from_slice(self.name.as_bytes());
        out.extend_from_slice(&self.key);
        out
    }

    fn signed_message(&self) -> Vec<u8> {
        let mut m = SIGNATURE_CONTEXT.to_vec();
        m.extend_from_slice(&self.body());
        m
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.body();
        out.extend_from_slice(&self.signature);
        out
    }

    fn check_fields(&self) -> Result<(), ManifestError> {
        if !(MIN_BLOCK_LEN..=MAX_BLOCK_LEN).contains(&self.block_len) {
            return Err(ManifestError::Invalid("block length out of range"));
        }
        if self.blocks() > MAX_BLOCKS {
            return Err(ManifestError::Invalid("too many blocks"));
        }
        if self.mime.len() > MAX_TYPE_LEN
            || !self.mime.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
        {
            return Err(ManifestError::Invalid("MIME type"));
        }
        if self.name.len() > MAX_NAME_LEN || self.name.chars().any(unsafe_in_name) {
            return Err(ManifestError::Invalid("name"));
        }
        Ok(())
    }

    /// Decodes and checks a manifest: its fields and its signature.
    pub fn decode(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        let mut r = Reader::new(bytes);
        if r.u8()? != VERSION {
            return Err(ManifestError::Invalid("unknown version"));
        }
        let size = u64::from_be_bytes(r.array()?);
        let block_len = r.u32()?;
        let root = r.array::<32>()?;
        let len = usize::from(r.u8()?);
        let mime = String::from_utf8(r.take(len)?.to_vec())
            .map_err(|_| ManifestError::Invalid("MIME type"))?;
        let len = usize::from(r.u16()?);
        let name = String::from_utf8(r.take(len)?.to_vec())
            .map_err(|_| ManifestError::Invalid("name is not UTF-8"))?;
        let key = r.array::<32>()?;
        let signature = r.array::<64>()?;
        if r.remaining() != 0 {
            return Err(ManifestError::Invalid("trailing bytes"));
        }
        let m = Manifest {
            size,
            block_len,
            root,
            mime,
            name,
            key,
            signature,
        };
        m.check_fields()?;
        if !signed_by(&key, &m.signed_message(), &signature) {
            return Err(ManifestError::Signature);
        }
        Ok(m)
    }

    /// Decodes a manifest and checks that it is the one `hash_name` names.
    pub fn decode_for(bytes: &[u8], hash_name: &HashName) -> Result<Manifest, ManifestError> {
        let m = Manifest::decode(bytes)?;
        if m.hash_name() != *hash_name {
            return Err(ManifestError::WrongHash);
        }
        Ok(m)
    }

    /// Whether `data` is block `index` of this file, by its audit path.
    pub fn check_block(&self, index: u64, data: &[u8], path: &[Hash]) -> bool {
        data.len() == self.block_size(index) as usize
            && merkle::verify(
                &self.root,
                self.blocks(),
                index,
                &merkle::leaf_hash(data),
                path,
            )
    }
}

/// A hash_name: the first 20 bytes of SHA-256 over `parts` (a manifest's
/// bytes; a web address's context and address).
pub fn hash_name_of(parts: &[&[u8]]) -> HashName {
    let mut digest = Sha256::new();
    for p in parts {
        digest.update(p);
    }
    let mut out = [0; 20];
    out.copy_from_slice(digest.finalize().get(..20).unwrap_or(&[0; 20]));
    HashName(out)
}

/// Whether `signature` is `key`'s Ed25519 signature of `message`, by the
/// strict rules (no small-order keys, canonical encodings).
pub fn signed_by(key: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool {
    VerifyingKey::from_bytes(key).is_ok_and(|vk| {
        vk.verify_strict(message, &Signature::from_bytes(signature))
            .is_ok()
    })
}

/// Characters a file name may not hold: control characters, and the
/// bidirectional formatting ones, with which a name can be shown other
/// than it is ("\u{202E}gpj.exe" reads "exe.jpg").
pub fn unsafe_in_name(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
        )
}

/// `name` without the characters `unsafe_in_name` refuses.
pub fn clean_name(name: &str) -> String {
    name.chars().filter(|c| !unsafe_in_name(*c)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(size: usize) -> Vec<u8> {
        (0..size).map(|i| (i * 7 % 251) as u8).collect()
    }

    fn leaves(data: &[u8]) -> Vec<Hash> {
        data.chunks(BLOCK_LEN as usize)
            .map(merkle::leaf_hash)
            .collect()
    }

    #[test]
    fn a_manifest_round_trips_and_names_itself() {
        let data = file(250_000);
        let m =
            Manifest::sign(250_000, &leaves(&data), "video/webm", "clip.webm", &[9; 32]).unwrap();
        assert_eq!(m.blocks(), 3);
        assert_eq!(m.block_size(2), 54_000);
        assert_eq!(m.block_size(3), 0);
        let bytes = m.encode();
        let back = Manifest::decode_for(&bytes, &m.hash_name()).unwrap();
        assert_eq!(back, m);
        let tree = leaves(&data);
        for (i, block) in data.chunks(BLOCK_LEN as usize).enumerate() {
            let path = merkle::audit_path(&tree, i);
            assert!(m.check_block(i as u64, block, &path));
            assert!(!m.check_block(i as u64, &block[1..], &path));
        }
        // The same content under another name is another hash_name.
        let renamed = Manifest::sign(250_000, &tree, "video/webm", "other", &[9; 32]).unwrap();
        assert_ne!(renamed.hash_name(), m.hash_name());
        assert_eq!(
            Manifest::decode_for(&renamed.encode(), &m.hash_name()),
            Err(ManifestError::WrongHash)
        );
    }

    #[test]
    fn altered_manifests_are_refused() {
        let data = file(1000);
        let m = Manifest::sign(1000, &leaves(&data), "text/plain", "a.txt", &[1; 32]).unwrap();
        let bytes = m.encode();
        // Any flipped byte breaks the signature (or the syntax).
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x40;
            assert!(Manifest::decode(&b).is_err(), "byte {i}");
        }
        assert!(Manifest::decode(&bytes[..bytes.len() - 1]).is_err());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Manifest::decode(&longer).is_err());
        assert!(Manifest::sign(1000, &[], "text/plain", "a", &[1; 32]).is_err());
        assert!(Manifest::sign(1000, &leaves(&data), "text/\n", "a", &[1; 32]).is_err());
        // A name that would show other than it is.
        let spoof = "\u{202E}gpj.exe";
        assert!(Manifest::sign(1000, &leaves(&data), "text/plain", spoof, &[1; 32]).is_err());
        assert_eq!(clean_name(spoof), "gpj.exe");
        assert_eq!(clean_name("תמונה\u{200F}.png"), "תמונה.png");
    }

    #[test]
    fn hash_name_hex_round_trips() {
        let h = HashName([0xab; 20]);
        assert_eq!(HashName::from_hex(&h.to_hex()), Some(h));
        assert_eq!(HashName::from_hex("abc"), None);
    }
}
