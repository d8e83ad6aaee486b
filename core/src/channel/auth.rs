//! What a Peersm initiator signs to prove it holds its identity key
//! (authentication method 0x8001, docs/PROTOCOL.md "AUTHENTICATE").

use crate::crypto::PeerId;

const CONTEXT: &[u8] = b"peersm link auth v2\0";
const DTLS_CONTEXT: &[u8] = b"peersm dtls binding v1\0";
const NTOR_CONTEXT: &[u8] = b"peersm ntor key v1\0";

/// What a tab signs to publish its ntor onion key:
/// `"peersm ntor key v1\0" || KEY (32)`.
pub fn ntor_key_message(key: &[u8; 32]) -> Vec<u8> {
    let mut m = NTOR_CONTEXT.to_vec();
    m.extend_from_slice(key);
    m
}

/// The body of a `PEERSM_NTOR_KEY` certificate: `KEY (32) | SIGNATURE`.
pub fn ntor_key_cert(key: &[u8; 32], signature: &[u8]) -> Vec<u8> {
    let mut body = key.to_vec();
    body.extend_from_slice(signature);
    body
}

/// Checks a `PEERSM_NTOR_KEY` body against the tab's identity key and
/// returns the ntor key.
pub fn verify_ntor_key_cert(
    body: &[u8],
    key: &crate::crypto::RsaIdentityKey,
) -> Result<[u8; 32], super::ChannelError> {
    let (ntor, signature) = body
        .split_first_chunk::<32>()
        .ok_or(super::ChannelError::NtorKey("truncated"))?;
    key.verify_pkcs1v15_sha256(&ntor_key_message(ntor), signature)
        .map_err(|_| super::ChannelError::NtorKey("bad signature"))?;
    Ok(*ntor)
}

/// What a tab signs to bind its identity to its DTLS certificate on a
/// WebRTC link: `"peersm dtls binding v1\0" || FINGERPRINT`, FINGERPRINT
/// as in the SDP's `a=fingerprint:` line (e.g. `sha-256 AB:CD:…`).
pub fn dtls_binding_message(fingerprint: &str) -> Vec<u8> {
    let mut m = DTLS_CONTEXT.to_vec();
    m.extend_from_slice(fingerprint.as_bytes());
    m
}

/// The body of a `PEERSM_DTLS_BINDING` certificate:
/// `FP_LEN (1) | FINGERPRINT | SIGNATURE`.
pub fn dtls_binding_cert(fingerprint: &str, signature: &[u8]) -> Option<Vec<u8>> {
    let len = u8::try_from(fingerprint.len()).ok()?;
    let mut body = vec![len];
    body.extend_from_slice(fingerprint.as_bytes());
    body.extend_from_slice(signature);
    Some(body)
}

/// Checks a `PEERSM_DTLS_BINDING` body: it names `fingerprint` (the one
/// the remote SDP gave, which the browser's DTLS enforces) and `key`
/// signed it.
pub fn verify_dtls_binding(
    body: &[u8],
    fingerprint: &str,
    key: &crate::crypto::RsaIdentityKey,
) -> Result<(), super::ChannelError> {
    let (len, rest) = body
        .split_first()
        .ok_or(super::ChannelError::DtlsBinding("empty"))?;
    let (named, signature) = rest
        .split_at_checked(usize::from(*len))
        .ok_or(super::ChannelError::DtlsBinding("truncated"))?;
    if !named.eq_ignore_ascii_case(fingerprint.as_bytes()) {
        return Err(super::ChannelError::DtlsBinding(
            "names another DTLS certificate than this connection's",
        ));
    }
    // The signature covers the bytes the binding names (which may differ
    // from the SDP's in case only).
    let mut message = DTLS_CONTEXT.to_vec();
    message.extend_from_slice(named);
    key.verify_pkcs1v15_sha256(&message, signature)
        .map_err(|_| super::ChannelError::DtlsBinding("bad signature"))
}

/// `"peersm link auth v2\0" || CHALLENGE (32) || PEER_ID (20) ||
/// SCERTS (32)`, signed with RSASSA-PKCS1-v1_5 / SHA-256. The fresh
/// challenge stops replays; SCERTS, the digest of the responder's CERTS
/// cell (`responder_certs_digest`), binds the signature to the responder
/// the initiator saw, so a responder cannot relay another's challenge and
/// pass the signature on; the context string stops the signature being
/// reused for anything else.
pub fn peersm_auth_message(
    challenge: &[u8; 32],
    initiator: &PeerId,
    responder_certs: &[u8; 32],
) -> Vec<u8> {
    let mut m = Vec::with_capacity(CONTEXT.len() + 84);
    m.extend_from_slice(CONTEXT);
    m.extend_from_slice(challenge);
    m.extend_from_slice(initiator.as_bytes());
    m.extend_from_slice(responder_certs);
    m
}

/// SHA-256 of the body of the responder's CERTS cell, as sent; 32 zero
/// bytes when it sent none.
pub fn responder_certs_digest(certs_cell_body: Option<&[u8]>) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    certs_cell_body.map_or([0; 32], |b| Sha256::digest(b).into())
}
