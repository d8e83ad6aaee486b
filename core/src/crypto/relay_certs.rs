//! The CERTS a relay presents (tor-spec §4.2, cert-spec): its 1024-bit RSA
//! identity in a self-signed X.509 certificate (type 2), its Ed25519
//! identity certifying an Ed25519 signing key (type 4), the signing key
//! certifying one more key (the TLS certificate's digest as responder,
//! type 5; the authentication key as initiator, type 6; a bridge's ntor
//! key on its WebSocket endpoint, Peersm type 0x81), and the RSA identity
//! cross-certifying the Ed25519 identity (type 7). Built here so that the
//! node and the simulation's bridges present the very same certificates.

use ed25519_dalek::{Signer, SigningKey};
use rsa::pkcs1v15::Pkcs1v15Sign;
use rsa::pkcs8::EncodePublicKey;
use rsa::PrivateKey;
use sha2::{Digest, Sha256};

use crate::cell::{CertEntry, Certs};
use crate::channel::tor_certs::tor_cert_type;

/// How long our Ed25519 certificates are valid.
pub const CERT_LIFETIME_HOURS: u32 = 24 * 30;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayCertError {
    #[error("RSA: {0}")]
    Rsa(String),
}

/// The keys that sign a relay's certificates.
pub struct CertSigners<'a> {
    pub rsa_identity: &'a PrivateKey,
    pub ed_identity: &'a SigningKey,
    pub ed_signing: &'a SigningKey,
}

/// Types 2, 4, `signed_type` (by the signing key over `certified`, of key
/// type `certified_key_type`) and 7. `now`: Unix seconds; `serial`: the
/// X.509 serial number's random bytes.
pub fn relay_certs(
    keys: &CertSigners<'_>,
    signed_type: u8,
    certified_key_type: u8,
    certified: [u8; 32],
    now: i64,
    serial: [u8; 8],
) -> Result<Certs, RelayCertError> {
    let expires = u32::try_from(now / 3600)
        .unwrap_or(u32::MAX)
        .saturating_add(CERT_LIFETIME_HOURS);
    let id_cert = rsa_identity_x509(keys.rsa_identity, now, serial)?;
    let id_signing = ed25519_cert(
        tor_cert_type::ED_ID_SIGNING,
        expires,
        1,
        keys.ed_signing.verifying_key().to_bytes(),
        keys.ed_identity,
    );
    let by_signing_key = ed25519_cert(
        signed_type,
        expires,
        certified_key_type,
        certified,
        keys.ed_signing,
    );
    let cross = cross_cert(
        keys.rsa_identity,
        keys.ed_identity.verifying_key().to_bytes(),
        expires,
    )?;
    Ok(Certs {
        certs: vec![
            CertEntry {
                cert_type: tor_cert_type::RSA_ID_X509,
                body: id_cert,
            },
            CertEntry {
                cert_type: tor_cert_type::ED_ID_SIGNING,
                body: id_signing,
            },
            CertEntry {
                cert_type: signed_type,
                body: by_signing_key,
            },
            CertEntry {
                cert_type: tor_cert_type::RSA_ED_CROSSCERT,
                body: cross,
            },
        ],
    })
}

/// A bridge's CERTS on its WebSocket endpoint: no TLS certificate to
/// bind there, so the signing key certifies the ntor key.
pub fn bridge_certs(
    keys: &CertSigners<'_>,
    ntor_key: [u8; 32],
    now: i64,
    serial: [u8; 8],
) -> Result<Certs, RelayCertError> {
    use crate::cell::cert_type::{PEERSM_BRIDGE_NTOR, PEERSM_NTOR_KEY_TYPE};
    relay_certs(
        keys,
        PEERSM_BRIDGE_NTOR,
        PEERSM_NTOR_KEY_TYPE,
        ntor_key,
        now,
        serial,
    )
}

/// RSA→Ed25519 cross-certificate (cert-spec §2.3).
fn cross_cert(rsa: &PrivateKey, ed_id: [u8; 32], expires: u32) -> Result<Vec<u8>, RelayCertError> {
    let mut body = ed_id.to_vec();
    body.extend_from_slice(&expires.to_be_bytes());
    let mut h = Sha256::new();
    h.update(b"Tor TLS RSA/Ed25519 cross-certificate");
    h.update(&body);
    let sig = rsa
        .sign(Pkcs1v15Sign::new_unprefixed(), &h.finalize())
        .map_err(|e| RelayCertError::Rsa(e.to_string()))?;
    body.push(
        u8::try_from(sig.len()).map_err(|_| RelayCertError::Rsa("signature too long".into()))?,
    );
    body.extend_from_slice(&sig);
    Ok(body)
}

/// The self-signed X.509 certificate of the RSA identity key, valid from
/// a day ago for a year, signed sha256WithRSAEncryption.
fn rsa_identity_x509(
    rsa: &PrivateKey,
    now: i64,
    serial: [u8; 8],
) -> Result<Vec<u8>, RelayCertError> {
    let spki = rsa
        .to_public_key()
        .to_public_key_der()
        .map_err(|e| RelayCertError::Rsa(e.to_string()))?;
    let alg = der(0x30, &[der(0x06, SHA256_WITH_RSA), der(0x05, &[])].concat());
    let name = der(
        0x30,
        &der(
            0x31,
            &der(
                0x30,
                &[
                    der(0x06, &[0x55, 0x04, 0x03]),
                    der(0x0c, b"www.peersm.invalid"),
                ]
                .concat(),
            ),
        ),
    );
    let mut serial = serial.to_vec();
    if let Some(first) = serial.first_mut() {
        *first &= 0x7f;
    }
    let validity = der(
        0x30,
        &[
            der(0x17, utc_time(now - 86_400).as_bytes()),
            der(0x17, utc_time(now + 365 * 86_400).as_bytes()),
        ]
        .concat(),
    );
    let tbs = der(
        0x30,
        &[
            der(0xa0, &der(0x02, &[2])),
            der(0x02, &serial),
            alg.clone(),
            name.clone(),
            validity,
            name,
            spki.as_bytes().to_vec(),
        ]
        .concat(),
    );
    let digest = Sha256::digest(&tbs);
    let sig = rsa
        .sign(Pkcs1v15Sign::new::<Sha256>(), &digest)
        .map_err(|e| RelayCertError::Rsa(e.to_string()))?;
    let mut bits = vec![0u8];
    bits.extend_from_slice(&sig);
    Ok(der(0x30, &[tbs, alg, der(0x03, &bits)].concat()))
}

const SHA256_WITH_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b];

/// One DER TLV.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .iter()
            .copied()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend_from_slice(&bytes);
    }
    out.extend_from_slice(content);
    out
}

/// UTCTime "YYMMDDHHMMSSZ".
fn utc_time(unix: i64) -> String {
    let (y, m, d, h, mi, s) = super::der::civil_from_unix(unix);
    format!("{:02}{m:02}{d:02}{h:02}{mi:02}{s:02}Z", y % 100)
}

/// A cert-spec §2.1 Ed25519 certificate with the signed-with-key extension.
pub fn ed25519_cert(
    cert_type: u8,
    expires_hours: u32,
    key_type: u8,
    certified: [u8; 32],
    signer: &SigningKey,
) -> Vec<u8> {
    let mut b = vec![1, cert_type];
    b.extend_from_slice(&expires_hours.to_be_bytes());
    b.push(key_type);
    b.extend_from_slice(&certified);
    b.push(1);
    b.extend_from_slice(&32u16.to_be_bytes());
    b.extend_from_slice(&[4, 0]);
    b.extend_from_slice(signer.verifying_key().as_bytes());
    let sig = signer.sign(&b);
    b.extend_from_slice(&sig.to_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_time_format() {
        assert_eq!(utc_time(0), "700101000000Z");
        assert_eq!(utc_time(1_795_613_608), "261125133328Z");
    }
}
