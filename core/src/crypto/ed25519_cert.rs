//! Tor's Ed25519 certificates (cert-spec §2.1) and the RSA→Ed25519
//! cross-certificate (cert-spec §2.3).

use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

use super::identity::RsaIdentityKey;
use crate::cell::CellError;

/// CERT_KEY_TYPE values (cert-spec §A.4).
pub mod key_type {
    pub const ED25519: u8 = 1;
    pub const SHA256_OF_RSA: u8 = 2;
    pub const SHA256_OF_X509: u8 = 3;
}

/// Extension type 4: the Ed25519 key that signed this certificate.
const EXT_SIGNED_WITH_ED25519_KEY: u8 = 4;
/// Extension flag: a certificate with an unknown extension carrying this
/// flag must be rejected.
const EXT_FLAG_AFFECTS_VALIDATION: u8 = 1;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    #[error("malformed certificate: {0}")]
    Malformed(&'static str),
    #[error("certificate has an unknown extension that affects validation")]
    UnknownCriticalExtension,
    #[error("certificate signature does not verify")]
    BadSignature,
    #[error("certificate expired")]
    Expired,
}

impl From<CellError> for CertError {
    fn from(_: CellError) -> Self {
        CertError::Malformed("truncated")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ed25519Cert {
    pub cert_type: u8,
    /// Hours since the epoch.
    pub expiration_hours: u32,
    pub key_type: u8,
    pub certified_key: [u8; 32],
    pub signing_key: Option<[u8; 32]>,
    /// Everything before the signature: what the signature covers.
    signed: Vec<u8>,
    signature: [u8; 64],
}

fn take<'a>(input: &mut &'a [u8], n: usize) -> Result<&'a [u8], CertError> {
    let (head, tail) = input
        .split_at_checked(n)
        .ok_or(CertError::Malformed("truncated"))?;
    *input = tail;
    Ok(head)
}

fn arr<const N: usize>(input: &mut &[u8]) -> Result<[u8; N], CertError> {
    take(input, N)?
        .try_into()
        .map_err(|_| CertError::Malformed("truncated"))
}

impl Ed25519Cert {
    pub fn parse(bytes: &[u8]) -> Result<Ed25519Cert, CertError> {
        let mut r = bytes;
        let [version] = arr::<1>(&mut r)?;
        if version != 1 {
            return Err(CertError::Malformed("unknown version"));
        }
        let [cert_type] = arr::<1>(&mut r)?;
        let expiration_hours = u32::from_be_bytes(arr(&mut r)?);
        let [key_type] = arr::<1>(&mut r)?;
        let certified_key = arr::<32>(&mut r)?;
        let [n_ext] = arr::<1>(&mut r)?;
        let mut signing_key = None;
        for _ in 0..n_ext {
            let len = usize::from(u16::from_be_bytes(arr(&mut r)?));
            let [ext_type] = arr::<1>(&mut r)?;
            let [flags] = arr::<1>(&mut r)?;
            let data = take(&mut r, len)?;
            match ext_type {
                EXT_SIGNED_WITH_ED25519_KEY => {
                    signing_key = Some(
                        data.try_into()
                            .map_err(|_| CertError::Malformed("signing key length"))?,
                    )
                }
                _ if flags & EXT_FLAG_AFFECTS_VALIDATION != 0 => {
                    return Err(CertError::UnknownCriticalExtension)
                }
                _ => {}
            }
        }
        let signed_len = bytes.len() - r.len();
        let signature = arr::<64>(&mut r)?;
        if !r.is_empty() {
            return Err(CertError::Malformed("bytes after the signature"));
        }
        Ok(Ed25519Cert {
            cert_type,
            expiration_hours,
            key_type,
            certified_key,
            signing_key,
            signed: bytes.get(..signed_len).unwrap_or_default().to_vec(),
            signature,
        })
    }

    pub fn expires_at(&self) -> i64 {
        i64::from(self.expiration_hours) * 3600
    }

    /// Checks the signature by `key`, and that the certificate has not expired.
    pub fn verify(&self, key: &[u8; 32], now: i64) -> Result<(), CertError> {
        let vk = VerifyingKey::from_bytes(key).map_err(|_| CertError::BadSignature)?;
        vk.verify(&self.signed, &Signature::from_bytes(&self.signature))
            .map_err(|_| CertError::BadSignature)?;
        if now > self.expires_at() {
            return Err(CertError::Expired);
        }
        Ok(())
    }
}

/// RSA→Ed25519 cross-certificate: the relay's RSA identity vouching for its
/// Ed25519 identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RsaCrossCert {
    pub ed25519_key: [u8; 32],
    pub expiration_hours: u32,
    signed: Vec<u8>,
    signature: Vec<u8>,
}

const CROSS_CERT_PREFIX: &[u8] = b"Tor TLS RSA/Ed25519 cross-certificate";

impl RsaCrossCert {
    pub fn parse(bytes: &[u8]) -> Result<RsaCrossCert, CertError> {
        let mut r = bytes;
        let ed25519_key = arr::<32>(&mut r)?;
        let expiration_hours = u32::from_be_bytes(arr(&mut r)?);
        let signed = bytes
            .get(..36)
            .ok_or(CertError::Malformed("truncated"))?
            .to_vec();
        let [siglen] = arr::<1>(&mut r)?;
        let signature = take(&mut r, usize::from(siglen))?.to_vec();
        if !r.is_empty() {
            return Err(CertError::Malformed("bytes after the signature"));
        }
        Ok(RsaCrossCert {
            ed25519_key,
            expiration_hours,
            signed,
            signature,
        })
    }

    /// The signature is PKCS#1 v1.5 over SHA256(prefix | key | expiration),
    /// without a DigestInfo prefix.
    pub fn verify(&self, rsa_identity: &RsaIdentityKey, now: i64) -> Result<(), CertError> {
        let mut h = Sha256::new();
        h.update(CROSS_CERT_PREFIX);
        h.update(&self.signed);
        rsa_identity
            .verify_unprefixed(&h.finalize(), &self.signature)
            .map_err(|_| CertError::BadSignature)?;
        if now > i64::from(self.expiration_hours) * 3600 {
            return Err(CertError::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn make_cert(
        signer: &SigningKey,
        certified: [u8; 32],
        exp_hours: u32,
        extra_ext: Option<(u8, u8)>,
    ) -> Vec<u8> {
        let mut b = vec![1, 4];
        b.extend_from_slice(&exp_hours.to_be_bytes());
        b.push(key_type::ED25519);
        b.extend_from_slice(&certified);
        let n = 1 + u8::from(extra_ext.is_some());
        b.push(n);
        b.extend_from_slice(&32u16.to_be_bytes());
        b.extend_from_slice(&[EXT_SIGNED_WITH_ED25519_KEY, 0]);
        b.extend_from_slice(signer.verifying_key().as_bytes());
        if let Some((t, f)) = extra_ext {
            b.extend_from_slice(&[0, 1, t, f, 9]);
        }
        let sig = signer.sign(&b);
        b.extend_from_slice(&sig.to_bytes());
        b
    }

    #[test]
    fn parse_and_verify() {
        let identity = SigningKey::from_bytes(&[7; 32]);
        let bytes = make_cert(&identity, [5; 32], 1_000_000, Some((9, 0)));
        let cert = Ed25519Cert::parse(&bytes).unwrap();
        assert_eq!(cert.signing_key, Some(*identity.verifying_key().as_bytes()));
        assert_eq!(cert.certified_key, [5; 32]);
        cert.verify(identity.verifying_key().as_bytes(), 1_000_000 * 3600 - 1)
            .unwrap();
        assert_eq!(
            cert.verify(identity.verifying_key().as_bytes(), 1_000_000 * 3600 + 1),
            Err(CertError::Expired)
        );
        assert_eq!(
            cert.verify(
                &SigningKey::from_bytes(&[8; 32]).verifying_key().to_bytes(),
                0
            ),
            Err(CertError::BadSignature)
        );
        let mut tampered = bytes.clone();
        tampered[10] ^= 1;
        assert!(Ed25519Cert::parse(&tampered)
            .unwrap()
            .verify(identity.verifying_key().as_bytes(), 0)
            .is_err());
    }

    #[test]
    fn unknown_critical_extension_and_truncation_are_refused() {
        let identity = SigningKey::from_bytes(&[7; 32]);
        let bytes = make_cert(
            &identity,
            [5; 32],
            1,
            Some((9, EXT_FLAG_AFFECTS_VALIDATION)),
        );
        assert_eq!(
            Ed25519Cert::parse(&bytes),
            Err(CertError::UnknownCriticalExtension)
        );
        let good = make_cert(&identity, [5; 32], 1, None);
        for n in 0..good.len() {
            assert!(Ed25519Cert::parse(&good[..n]).is_err());
        }
        assert!(RsaCrossCert::parse(&[0; 36]).is_err());
    }
}
