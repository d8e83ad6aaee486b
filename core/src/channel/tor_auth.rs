//! Relay link authentication as the initiator: AUTHENTICATE method 3,
//! "Ed25519-SHA256-RFC5705" (tor-spec §4.4.2). A relay that opens a channel
//! to another relay proves both its identities, so that the other side
//! treats the channel as coming from a relay: C tor exits refuse exit
//! streams on circuits that arrive over unauthenticated channels.
//!
//! The signed body binds the handshake to this TLS connection: the two
//! identities (RSA as SHA-256 of the DER key, and Ed25519), a SHA-256 of
//! every cell each side sent up to the challenge, the digest of the
//! responder's TLS certificate and an RFC 5705 exporter value, then 24
//! random bytes, all signed by our Ed25519 authentication key (certified
//! by CERTS type 6).

use ed25519_dalek::{Signer, SigningKey};
use sha2::{Digest, Sha256};

use crate::cell::Certs;

/// tor-spec §4.4: the authentication method number.
pub const AUTH_METHOD_ED25519_SHA256_RFC5705: u16 = 3;

/// The TYPE field of the body.
const AUTH_TYPE: &[u8; 8] = b"AUTH0003";

/// The RFC 5705 exporter label; the exporter's context is the CID field.
pub const TLS_EXPORTER_LABEL: &[u8] = b"EXPORTER FOR TOR TLS CLIENT BINDING AUTH0003";

/// A running SHA-256 of the cells one side sent (SLOG / CLOG). Cells are
/// recorded exactly as on the wire: VERSIONS with its 2-byte circuit id,
/// everything after with the negotiated 4-byte one.
#[derive(Clone, Default)]
pub struct Transcript(Sha256);

impl Transcript {
    pub fn record(&mut self, wire_bytes: &[u8]) {
        self.0.update(wire_bytes);
    }

    pub fn digest(&self) -> [u8; 32] {
        self.0.clone().finalize().into()
    }
}

/// What the initiating relay brings to the handshake.
#[derive(Clone)]
pub struct RelayAuthConfig {
    /// Our CERTS: types 2 (RSA identity), 4 (Ed25519 identity → signing),
    /// 6 (signing → authentication key) and 7 (RSA → Ed25519).
    pub certs: Certs,
    /// SHA-256 of our DER PKCS#1 RSA identity key (CID).
    pub cid: [u8; 32],
    /// Our Ed25519 identity (CID_ED).
    pub cid_ed: [u8; 32],
    /// The key CERTS type 6 certifies; it signs the body.
    pub auth_key: SigningKey,
    /// The TLS exporter value for `TLS_EXPORTER_LABEL` with context `cid`,
    /// taken from this connection by the adapter that owns the TLS session.
    pub tls_secrets: [u8; 32],
}

/// What the handshake established about the responder.
pub struct ResponderFacts {
    /// SHA-256 of its DER RSA identity key (SID).
    pub sid: [u8; 32],
    pub sid_ed: [u8; 32],
    /// Digest of its VERSIONS, CERTS and AUTH_CHALLENGE.
    pub slog: [u8; 32],
    /// Digest of our VERSIONS and CERTS.
    pub clog: [u8; 32],
    /// SHA-256 of its TLS certificate.
    pub scert: [u8; 32],
}

/// The AUTHENTICATE payload after method and length: the fields in
/// tor-spec §4.4.2's order, the random part, then the Ed25519 signature
/// over everything before it.
pub fn authenticate_body(cfg: &RelayAuthConfig, them: &ResponderFacts, rand: [u8; 24]) -> Vec<u8> {
    let mut body = Vec::with_capacity(8 + 32 * 8 + 24 + 64);
    body.extend_from_slice(AUTH_TYPE);
    body.extend_from_slice(&cfg.cid);
    body.extend_from_slice(&them.sid);
    body.extend_from_slice(&cfg.cid_ed);
    body.extend_from_slice(&them.sid_ed);
    body.extend_from_slice(&them.slog);
    body.extend_from_slice(&them.clog);
    body.extend_from_slice(&them.scert);
    body.extend_from_slice(&cfg.tls_secrets);
    body.extend_from_slice(&rand);
    let signature = cfg.auth_key.sign(&body);
    body.extend_from_slice(&signature.to_bytes());
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signature, Verifier};

    #[test]
    fn body_layout_and_signature() {
        let auth_key = SigningKey::from_bytes(&[7; 32]);
        let cfg = RelayAuthConfig {
            certs: Certs { certs: Vec::new() },
            cid: [1; 32],
            cid_ed: [2; 32],
            auth_key: auth_key.clone(),
            tls_secrets: [3; 32],
        };
        let facts = ResponderFacts {
            sid: [4; 32],
            sid_ed: [5; 32],
            slog: [6; 32],
            clog: [8; 32],
            scert: [9; 32],
        };
        let body = authenticate_body(&cfg, &facts, [10; 24]);
        assert_eq!(body.len(), 8 + 8 * 32 + 24 + 64);
        assert_eq!(&body[..8], b"AUTH0003");
        // Field order: CID SID CID_ED SID_ED SLOG CLOG SCERT TLSSECRETS.
        let fields: Vec<u8> = body[8..8 + 8 * 32].chunks(32).map(|c| c[0]).collect();
        assert_eq!(fields, [1, 4, 2, 5, 6, 8, 9, 3]);
        let (signed, sig) = body.split_at(body.len() - 64);
        let sig = Signature::from_slice(sig).unwrap();
        auth_key.verifying_key().verify(signed, &sig).unwrap();
    }

    #[test]
    fn transcript_is_sha256_of_everything_recorded() {
        let mut t = Transcript::default();
        t.record(b"abc");
        t.record(b"def");
        assert_eq!(t.digest(), <[u8; 32]>::from(Sha256::digest(b"abcdef")));
        // Reading the digest does not end the transcript.
        t.record(b"g");
        assert_eq!(t.digest(), <[u8; 32]>::from(Sha256::digest(b"abcdefg")));
    }
}
