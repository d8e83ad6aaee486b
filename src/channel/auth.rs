//! What a Peersm initiator signs to prove it holds its identity key
//! (authentication method 0x8001, docs/PROTOCOL.md "AUTHENTICATE").

use crate::crypto::PeerId;

const CONTEXT: &[u8] = b"peersm link auth v1\0";

/// `"peersm link auth v1\0" || CHALLENGE (32) || PEER_ID (20)`, signed with
/// RSASSA-PKCS1-v1_5 / SHA-256. The fresh challenge stops replays; the
/// context string stops the signature being reused for anything else.
pub fn peersm_auth_message(challenge: &[u8; 32], initiator: &PeerId) -> Vec<u8> {
    let mut m = Vec::with_capacity(CONTEXT.len() + 52);
    m.extend_from_slice(CONTEXT);
    m.extend_from_slice(challenge);
    m.extend_from_slice(initiator.as_bytes());
    m
}
