//! Session identities. A peer's identity key is an RSA key generated fresh
//! each session (in the browser: WebCrypto, non-extractable). Its peer ID is
//! the SHA-1 of the DER SubjectPublicKeyInfo: 160 bits, the Kademlia key
//! space (docs/PROTOCOL.md "Identity").

use std::fmt;

use rsa::pkcs1::EncodeRsaPublicKey;
use rsa::pkcs1v15::{Pkcs1v15Sign, Signature, VerifyingKey};
use rsa::pkcs8::DecodePublicKey;
use rsa::signature::Verifier;
use rsa::traits::PublicKeyParts;
use rsa::PublicKey as RsaPublicKey;
use sha1::{Digest, Sha1};
use sha2::Sha256;

/// Smallest identity modulus we accept from the network; browsers generate
/// 2048-bit keys, Tor relays' RSA identities are 1024-bit.
pub const MIN_RSA_BITS: usize = 1024;
/// Largest modulus we accept, so a peer cannot make us verify huge keys.
pub const MAX_RSA_BITS: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("not a DER SubjectPublicKeyInfo for an RSA key")]
    BadPublicKey,
    #[error("RSA modulus of {0} bits is outside {MIN_RSA_BITS}..={MAX_RSA_BITS}")]
    KeySize(usize),
    #[error("signature does not verify")]
    BadSignature,
    #[error("peer ID must be 40 hex characters")]
    BadPeerId,
}

/// A 160-bit peer ID.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub [u8; 20]);

impl PeerId {
    /// SHA-1 of the DER SubjectPublicKeyInfo.
    pub fn from_spki(spki_der: &[u8]) -> PeerId {
        PeerId(Sha1::digest(spki_der).into())
    }

    pub fn from_hex(s: &str) -> Result<PeerId, IdentityError> {
        let mut out = [0u8; 20];
        hex::decode_to_slice(s, &mut out).map_err(|_| IdentityError::BadPeerId)?;
        Ok(PeerId(out))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn as_bytes(&self) -> &[u8; 20] {
        &self.0
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({})", self.to_hex())
    }
}

/// The public half of an identity key, parsed from its SPKI and checked.
#[derive(Clone, Debug)]
pub struct RsaIdentityKey {
    key: RsaPublicKey,
    spki_der: Vec<u8>,
    id: PeerId,
}

impl RsaIdentityKey {
    pub fn from_spki(spki_der: &[u8]) -> Result<Self, IdentityError> {
        let key =
            RsaPublicKey::from_public_key_der(spki_der).map_err(|_| IdentityError::BadPublicKey)?;
        let bits = key.n().bit_width() as usize;
        if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
            return Err(IdentityError::KeySize(bits));
        }
        Ok(RsaIdentityKey {
            key,
            spki_der: spki_der.to_vec(),
            id: PeerId::from_spki(spki_der),
        })
    }

    /// From a DER PKCS#1 RSAPublicKey (how directory documents carry keys).
    pub fn from_pkcs1_der(der: &[u8]) -> Result<Self, IdentityError> {
        use rsa::pkcs1::DecodeRsaPublicKey;
        use rsa::pkcs8::EncodePublicKey;
        let key = RsaPublicKey::from_pkcs1_der(der).map_err(|_| IdentityError::BadPublicKey)?;
        let spki = key
            .to_public_key_der()
            .map_err(|_| IdentityError::BadPublicKey)?;
        Self::from_spki(spki.as_bytes())
    }

    pub fn id(&self) -> PeerId {
        self.id
    }

    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// The modulus, big-endian without leading zeros.
    pub fn modulus(&self) -> Vec<u8> {
        self.key
            .n()
            .to_be_bytes()
            .iter()
            .skip_while(|b| **b == 0)
            .copied()
            .collect()
    }

    /// Tor's identity digest of this key: SHA-1 of its DER PKCS#1
    /// RSAPublicKey (tor-spec §0.3, "ID digest").
    pub fn tor_identity_digest(&self) -> Result<[u8; 20], IdentityError> {
        let der = self
            .key
            .to_pkcs1_der()
            .map_err(|_| IdentityError::BadPublicKey)?;
        Ok(Sha1::digest(der.as_bytes()).into())
    }

    /// SHA-256 of the DER PKCS#1 RSAPublicKey: how AUTH0003 names the two
    /// ends of a link (tor-spec §4.4.2, CID and SID).
    pub fn pkcs1_sha256(&self) -> Result<[u8; 32], IdentityError> {
        let der = self
            .key
            .to_pkcs1_der()
            .map_err(|_| IdentityError::BadPublicKey)?;
        Ok(Sha256::digest(der.as_bytes()).into())
    }

    /// Modulus size in bits.
    pub fn bits(&self) -> usize {
        self.key.n().bit_width() as usize
    }

    /// Checks a PKCS#1 v1.5 signature over `digest` without a DigestInfo
    /// prefix (how C tor's `crypto_pk_public_checksig` signs, cert-spec §2.3).
    pub fn verify_unprefixed(&self, digest: &[u8], signature: &[u8]) -> Result<(), IdentityError> {
        self.key
            .verify(Pkcs1v15Sign::new_unprefixed(), digest, signature)
            .map_err(|_| IdentityError::BadSignature)
    }

    /// Checks an RSASSA-PKCS1-v1_5 / SHA-256 signature (what WebCrypto's
    /// `RSASSA-PKCS1-v1_5` with hash SHA-256 produces).
    pub fn verify_pkcs1v15_sha256(
        &self,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), IdentityError> {
        let sig = Signature::try_from(signature).map_err(|_| IdentityError::BadSignature)?;
        VerifyingKey::<Sha256>::new(self.key.clone())
            .verify(message, &sig)
            .map_err(|_| IdentityError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_id_hex_round_trip() {
        let id = PeerId::from_spki(b"not really an spki");
        assert_eq!(id.to_hex().len(), 40);
        assert_eq!(PeerId::from_hex(&id.to_hex()).unwrap(), id);
        assert!(PeerId::from_hex("abc").is_err());
        assert!(PeerId::from_hex(&"zz".repeat(20)).is_err());
    }

    #[test]
    fn sha1_of_spki_matches_known_vector() {
        // FIPS 180 test vector: SHA-1("abc").
        assert_eq!(
            PeerId::from_spki(b"abc").to_hex(),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
    }

    #[test]
    fn garbage_spki_is_refused() {
        assert_eq!(
            RsaIdentityKey::from_spki(&[0x30, 0x03, 1, 2, 3]).unwrap_err(),
            IdentityError::BadPublicKey
        );
    }
}
