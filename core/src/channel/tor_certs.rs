//! Checking a Tor relay's CERTS cell as the initiator (tor-spec §4.2,
//! "To authenticate the responder as having a given Ed25519,RSA identity
//! key combination"): the RSA identity certificate, the Ed25519
//! identity→signing and signing→TLS-link certificates and the RSA→Ed25519
//! cross-certificate must all be present once, unexpired and correctly
//! signed, and the link certificate must certify the TLS certificate this
//! very connection presented.

use sha2::{Digest, Sha256};

use crate::cell::Certs;
use crate::crypto::ed25519_cert::{key_type, CertError, Ed25519Cert, RsaCrossCert};
use crate::crypto::x509::RsaCertificate;

/// Tor's CERTS certificate types (tor-spec §4.2).
pub mod tor_cert_type {
    pub const RSA_ID_X509: u8 = 2;
    pub const ED_ID_SIGNING: u8 = 4;
    pub const ED_SIGNING_LINK: u8 = 5;
    pub const ED_SIGNING_AUTH: u8 = 6;
    pub const RSA_ED_CROSSCERT: u8 = 7;
}

/// A relay's identities, as proven by its CERTS cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayIdentity {
    /// SHA-1 of the DER PKCS#1 RSA identity key: the relay's fingerprint.
    pub rsa_id: [u8; 20],
    /// SHA-256 of the same DER key (AUTH0003's SID).
    pub rsa_key_sha256: [u8; 32],
    pub ed25519_id: [u8; 32],
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TorCertsError {
    #[error("CERTS lacks certificate type {0}")]
    Missing(u8),
    #[error("RSA identity certificate: {0}")]
    RsaIdentity(&'static str),
    #[error("Ed25519 certificate type {cert_type}: {error}")]
    Ed25519 { cert_type: u8, error: CertError },
    #[error("the link certificate does not certify this TLS certificate")]
    TlsMismatch,
    #[error("relay identity {0} is not the one we asked for")]
    WrongIdentity(&'static str),
}

/// Verifies `certs` from a relay whose TLS certificate (DER) was
/// `tls_cert`, at `now` (Unix seconds). When `expected_rsa_id` or
/// `expected_ed25519_id` are given, the proven identities must match them.
pub fn verify_relay_certs(
    certs: &Certs,
    tls_cert: &[u8],
    now: i64,
    expected_rsa_id: Option<&[u8; 20]>,
    expected_ed25519_id: Option<&[u8; 32]>,
) -> Result<RelayIdentity, TorCertsError> {
    use tor_cert_type::*;
    let (identity, signing_key) =
        verify_identity_certs(certs, now, expected_rsa_id, expected_ed25519_id)?;
    // Signing key → the SHA-256 of the TLS certificate of this connection.
    let link = signed_by(
        certs,
        ED_SIGNING_LINK,
        key_type::SHA256_OF_X509,
        &signing_key,
        now,
    )?;
    if link.certified_key[..] != Sha256::digest(tls_cert)[..] {
        return Err(TorCertsError::TlsMismatch);
    }
    Ok(identity)
}

/// A Peersm bridge's identities and the ntor key it proved with them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BridgeIdentity {
    pub relay: RelayIdentity,
    pub ntor_key: [u8; 32],
}

/// Verifies a bridge's CERTS on a WebSocket link: the identity
/// certificates of a relay (types 2, 4, 7) and, instead of the TLS link
/// certificate, its ntor onion key certified by the signing key
/// (`PEERSM_BRIDGE_NTOR`). A tab that then completes an ntor handshake
/// with that key talks to the holder of these identities.
pub fn verify_bridge_certs(
    certs: &Certs,
    now: i64,
    expected_rsa_id: Option<&[u8; 20]>,
) -> Result<BridgeIdentity, TorCertsError> {
    use crate::cell::cert_type::{PEERSM_BRIDGE_NTOR, PEERSM_NTOR_KEY_TYPE};
    let (relay, signing_key) = verify_identity_certs(certs, now, expected_rsa_id, None)?;
    let ntor = signed_by(
        certs,
        PEERSM_BRIDGE_NTOR,
        PEERSM_NTOR_KEY_TYPE,
        &signing_key,
        now,
    )?;
    Ok(BridgeIdentity {
        relay,
        ntor_key: ntor.certified_key,
    })
}

/// Parses certificate `cert_type` and checks it is that type, certifies a
/// key of `certified_type`, and carries `signer`'s valid signature.
fn signed_by(
    certs: &Certs,
    cert_type: u8,
    certified_type: u8,
    signer: &[u8; 32],
    now: i64,
) -> Result<Ed25519Cert, TorCertsError> {
    let ed_err = |error| TorCertsError::Ed25519 { cert_type, error };
    let cert = Ed25519Cert::parse(
        certs
            .get(cert_type)
            .ok_or(TorCertsError::Missing(cert_type))?,
    )
    .map_err(ed_err)?;
    if cert.cert_type != cert_type || cert.key_type != certified_type {
        return Err(ed_err(CertError::Malformed("wrong type")));
    }
    cert.verify(signer, now).map_err(ed_err)?;
    Ok(cert)
}

/// The identity part shared by relays and bridges: the RSA identity
/// certificate (type 2), Ed25519 identity → signing key (type 4) and the
/// RSA → Ed25519 cross-certificate (type 7). Returns the identities and
/// the certified signing key.
fn verify_identity_certs(
    certs: &Certs,
    now: i64,
    expected_rsa_id: Option<&[u8; 20]>,
    expected_ed25519_id: Option<&[u8; 32]>,
) -> Result<(RelayIdentity, [u8; 32]), TorCertsError> {
    use tor_cert_type::*;
    let get = |t| certs.get(t).ok_or(TorCertsError::Missing(t));
    let ed_err = |cert_type| move |error| TorCertsError::Ed25519 { cert_type, error };

    // RSA identity: 1024-bit, self-signed, in its validity window.
    let id_cert = RsaCertificate::parse(get(RSA_ID_X509)?)
        .map_err(|_| TorCertsError::RsaIdentity("malformed"))?;
    let rsa_key = id_cert
        .key()
        .map_err(|_| TorCertsError::RsaIdentity("bad key"))?;
    if rsa_key.bits() != 1024 {
        return Err(TorCertsError::RsaIdentity("not a 1024-bit key"));
    }
    if !id_cert.is_valid_at(now) {
        return Err(TorCertsError::RsaIdentity("expired or not yet valid"));
    }
    if !id_cert
        .verify_signed_by(&rsa_key)
        .map_err(|_| TorCertsError::RsaIdentity("unsupported signature"))?
    {
        return Err(TorCertsError::RsaIdentity("bad self-signature"));
    }
    let rsa_id = rsa_key
        .tor_identity_digest()
        .map_err(|_| TorCertsError::RsaIdentity("bad key"))?;

    // Ed25519 identity → signing key, signed by the identity it names.
    let id_signing = Ed25519Cert::parse(get(ED_ID_SIGNING)?).map_err(ed_err(ED_ID_SIGNING))?;
    let ed25519_id = id_signing.signing_key.ok_or(TorCertsError::Ed25519 {
        cert_type: ED_ID_SIGNING,
        error: CertError::Malformed("no signing-key extension"),
    })?;
    if id_signing.cert_type != ED_ID_SIGNING || id_signing.key_type != key_type::ED25519 {
        return Err(TorCertsError::Ed25519 {
            cert_type: ED_ID_SIGNING,
            error: CertError::Malformed("wrong type"),
        });
    }
    id_signing
        .verify(&ed25519_id, now)
        .map_err(ed_err(ED_ID_SIGNING))?;

    // The RSA identity vouches for the Ed25519 identity.
    let cross = RsaCrossCert::parse(get(RSA_ED_CROSSCERT)?).map_err(ed_err(RSA_ED_CROSSCERT))?;
    if cross.ed25519_key != ed25519_id {
        return Err(TorCertsError::Ed25519 {
            cert_type: RSA_ED_CROSSCERT,
            error: CertError::Malformed("certifies another key"),
        });
    }
    cross
        .verify(&rsa_key, now)
        .map_err(ed_err(RSA_ED_CROSSCERT))?;

    if expected_rsa_id.is_some_and(|id| *id != rsa_id) {
        return Err(TorCertsError::WrongIdentity("RSA"));
    }
    if expected_ed25519_id.is_some_and(|id| *id != ed25519_id) {
        return Err(TorCertsError::WrongIdentity("Ed25519"));
    }
    let rsa_key_sha256 = rsa_key
        .pkcs1_sha256()
        .map_err(|_| TorCertsError::RsaIdentity("bad key"))?;
    let identity = RelayIdentity {
        rsa_id,
        rsa_key_sha256,
        ed25519_id,
    };
    Ok((identity, id_signing.certified_key))
}
