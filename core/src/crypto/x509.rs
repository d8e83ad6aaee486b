//! The RSA X.509 certificates of Tor's CERTS cell (tor-spec §4.2, cert
//! types 1–3): parse, check the validity window, check the self-signature.

use super::der::{self, expect, read_tlv, DerError};
use super::identity::RsaIdentityKey;

/// DER of OID 1.2.840.113549.1.1.11, sha256WithRSAEncryption (what C tor signs with).
const SHA256_WITH_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum X509Error {
    #[error(transparent)]
    Der(#[from] DerError),
    #[error("certificate is signed with an algorithm other than sha256WithRSAEncryption")]
    UnsupportedSignature,
    #[error("certificate public key is not a usable RSA key")]
    BadKey,
}

/// An X.509 certificate carrying an RSA key.
#[derive(Debug, Clone)]
pub struct RsaCertificate {
    tbs: Vec<u8>,
    sha256_signed: bool,
    signature: Vec<u8>,
    pub spki: Vec<u8>,
    pub not_before: i64,
    pub not_after: i64,
}

impl RsaCertificate {
    pub fn parse(der_bytes: &[u8]) -> Result<RsaCertificate, X509Error> {
        let mut input = der_bytes;
        let cert = expect(&mut input, der::SEQUENCE, "certificate is not a SEQUENCE")?;
        let mut c = cert.content;
        let tbs = expect(&mut c, der::SEQUENCE, "no TBSCertificate")?;
        let sig_alg = expect(&mut c, der::SEQUENCE, "no signatureAlgorithm")?;
        let sig = expect(&mut c, der::BIT_STRING, "no signatureValue")?;
        let mut alg = sig_alg.content;
        let oid = expect(&mut alg, der::OID, "no algorithm OID")?;

        let mut t = tbs.content;
        let mut field = read_tlv(&mut t)?;
        if field.tag == 0xa0 {
            field = read_tlv(&mut t)?; // serialNumber after the explicit version
        }
        let _serial = field;
        let _signature = expect(&mut t, der::SEQUENCE, "no TBS signature")?;
        let _issuer = expect(&mut t, der::SEQUENCE, "no issuer")?;
        let validity = expect(&mut t, der::SEQUENCE, "no validity")?;
        let _subject = expect(&mut t, der::SEQUENCE, "no subject")?;
        let spki = expect(&mut t, der::SEQUENCE, "no subjectPublicKeyInfo")?;
        let mut v = validity.content;
        let not_before = der::parse_time(&read_tlv(&mut v)?)?;
        let not_after = der::parse_time(&read_tlv(&mut v)?)?;
        // A BIT STRING starts with its count of unused bits (0 here).
        let signature = sig
            .content
            .get(1..)
            .ok_or(DerError("empty signature"))?
            .to_vec();
        Ok(RsaCertificate {
            tbs: tbs.whole.to_vec(),
            sha256_signed: oid.content == SHA256_WITH_RSA,
            signature,
            spki: spki.whole.to_vec(),
            not_before,
            not_after,
        })
    }

    pub fn key(&self) -> Result<RsaIdentityKey, X509Error> {
        RsaIdentityKey::from_spki(&self.spki).map_err(|_| X509Error::BadKey)
    }

    pub fn is_valid_at(&self, now: i64) -> bool {
        self.not_before <= now && now <= self.not_after
    }

    /// Checks the signature with `signer` (the certificate's own key for a
    /// self-signed identity certificate).
    pub fn verify_signed_by(&self, signer: &RsaIdentityKey) -> Result<bool, X509Error> {
        if !self.sha256_signed {
            return Err(X509Error::UnsupportedSignature);
        }
        Ok(signer
            .verify_pkcs1v15_sha256(&self.tbs, &self.signature)
            .is_ok())
    }
}
