//! Key derivation (tor-spec §5.2): KDF-TOR for CREATE_FAST and HKDF-SHA256
//! (RFC 5869) for ntor, and the split of their output into circuit keys.

use hkdf::Hkdf;
use sha1::{Digest, Sha1};
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

/// Length of a SHA-1 digest seed (Df, Db) and of KH.
pub const DIGEST_LEN: usize = 20;
/// AES-128 key length (Kf, Kb).
pub const KEY_LEN: usize = 16;
/// Df | Db | Kf | Kb (tor-spec §5.2.2).
pub const CIRCUIT_KEY_MATERIAL: usize = 2 * DIGEST_LEN + 2 * KEY_LEN;

/// KDF-TOR (tor-spec §5.2.1): SHA1(K0 | [00]) | SHA1(K0 | [01]) | …
pub fn kdf_tor(k0: &[u8], len: usize) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(len + DIGEST_LEN));
    let mut i: u8 = 0;
    while out.len() < len {
        let mut h = Sha1::new();
        h.update(k0);
        h.update([i]);
        out.extend_from_slice(&h.finalize());
        i = i.wrapping_add(1);
    }
    out.truncate(len);
    out
}

/// HKDF-SHA256 expansion of `seed` (the PRK, tor-spec §5.2.2: KEY_SEED is
/// already the output of the extract step) with `info`.
pub fn hkdf_sha256_expand(seed: &[u8], info: &[u8], len: usize) -> Option<Zeroizing<Vec<u8>>> {
    let hk = Hkdf::<Sha256>::from_prk(seed).ok()?;
    let mut out = Zeroizing::new(vec![0u8; len]);
    hk.expand(info, &mut out).ok()?;
    Some(out)
}

/// The four per-hop keys of a circuit (tor-spec §5.2.2 order: Df, Db, Kf,
/// Kb). Zeroized when dropped.
#[derive(Clone)]
pub struct CircuitKeys {
    pub forward_digest: [u8; DIGEST_LEN],
    pub backward_digest: [u8; DIGEST_LEN],
    pub forward_key: [u8; KEY_LEN],
    pub backward_key: [u8; KEY_LEN],
}

impl CircuitKeys {
    /// Splits `material` (at least `CIRCUIT_KEY_MATERIAL` bytes).
    pub fn from_material(material: &[u8]) -> Option<CircuitKeys> {
        let df = material.get(..DIGEST_LEN)?;
        let db = material.get(DIGEST_LEN..2 * DIGEST_LEN)?;
        let kf = material.get(2 * DIGEST_LEN..2 * DIGEST_LEN + KEY_LEN)?;
        let kb = material.get(2 * DIGEST_LEN + KEY_LEN..CIRCUIT_KEY_MATERIAL)?;
        Some(CircuitKeys {
            forward_digest: df.try_into().ok()?,
            backward_digest: db.try_into().ok()?,
            forward_key: kf.try_into().ok()?,
            backward_key: kb.try_into().ok()?,
        })
    }
}

impl Drop for CircuitKeys {
    fn drop(&mut self) {
        self.forward_digest.zeroize();
        self.backward_digest.zeroize();
        self.forward_key.zeroize();
        self.backward_key.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kdf_tor_is_the_sha1_counter_stream() {
        let out = kdf_tor(b"seed", 45);
        assert_eq!(out.len(), 45);
        let mut first = Sha1::new();
        first.update(b"seed\x00");
        assert_eq!(&out[..20], &first.finalize()[..]);
        let mut second = Sha1::new();
        second.update(b"seed\x01");
        assert_eq!(&out[20..40], &second.finalize()[..]);
    }

    #[test]
    fn hkdf_matches_rfc5869_case_1_expand() {
        // RFC 5869 A.1: PRK and OKM for the given info.
        let prk = hex::decode("077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5")
            .unwrap();
        let info = hex::decode("f0f1f2f3f4f5f6f7f8f9").unwrap();
        let okm = hkdf_sha256_expand(&prk, &info, 42).unwrap();
        assert_eq!(
            hex::encode(&*okm),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
        );
    }
}
