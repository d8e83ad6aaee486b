//! Relay cell crypto, "tor1" (tor-spec §6.1, §5.5): each hop has an
//! AES-128-CTR stream per direction (IV zero) and a running SHA-1 digest per
//! direction seeded with Df / Db. A relay cell is "recognized" by a hop when,
//! after that hop's decryption, Recognized is zero and the first 4 bytes of
//! the running digest (taken over the cell with its Digest field zeroed)
//! match the Digest field.

use aes::Aes128;
use ctr::cipher::{KeyIvInit, StreamCipher};
use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

use super::kdf::CircuitKeys;
use crate::cell::relay::DIGEST_RANGE;
use crate::cell::PAYLOAD_LEN;

type Aes128Ctr = ctr::Ctr128BE<Aes128>;

/// The 509-byte body of a RELAY / RELAY_EARLY cell.
pub type RelayBody = [u8; PAYLOAD_LEN];

/// The full 20-byte running digest after a cell: what an authenticated
/// SENDME (tor-spec §7.4, prop 289) echoes back.
pub type CellDigest = [u8; 20];

/// One direction of one hop: keystream plus running digest.
struct Direction {
    cipher: Aes128Ctr,
    digest: Sha1,
}

impl Direction {
    fn new(key: &[u8; 16], digest_seed: &[u8; 20]) -> Self {
        let mut digest = Sha1::new();
        digest.update(digest_seed);
        Direction {
            cipher: Aes128Ctr::new(key.into(), &[0u8; 16].into()),
            digest,
        }
    }

    fn apply_keystream(&mut self, body: &mut RelayBody) {
        self.cipher.apply_keystream(body);
    }

    /// Fills the Digest field of a cell we originate and returns the full
    /// running digest.
    fn seal(&mut self, body: &mut RelayBody) -> CellDigest {
        if let Some(field) = body.get_mut(DIGEST_RANGE) {
            field.fill(0);
        }
        self.digest.update(&body[..]);
        let full: CellDigest = self.digest.clone().finalize().into();
        if let (Some(field), Some(head)) = (body.get_mut(DIGEST_RANGE), full.get(..4)) {
            field.copy_from_slice(head);
        }
        full
    }

    /// Whether a (decrypted) cell is for this hop; commits the digest only
    /// when it is.
    fn recognize(&mut self, body: &RelayBody) -> Option<CellDigest> {
        if body.get(1..3) != Some(&[0, 0][..]) {
            return None;
        }
        let mut zeroed = *body;
        if let Some(field) = zeroed.get_mut(DIGEST_RANGE) {
            field.fill(0);
        }
        let mut candidate = self.digest.clone();
        candidate.update(&zeroed[..]);
        let full: CellDigest = candidate.clone().finalize().into();
        // Constant time: a timing side channel on the check would tell an
        // observer how many digest bytes a forged cell got right.
        let matches = match (full.get(..4), body.get(DIGEST_RANGE)) {
            (Some(ours), Some(theirs)) => bool::from(ours.ct_eq(theirs)),
            _ => false,
        };
        if matches {
            self.digest = candidate;
            Some(full)
        } else {
            None
        }
    }
}

/// A hop's crypto as the client (OP) sees it.
pub struct ClientHop {
    forward: Direction,
    backward: Direction,
}

/// The relay's side of one circuit hop.
pub struct RelayHop {
    forward: Direction,
    backward: Direction,
}

impl ClientHop {
    pub fn new(keys: &CircuitKeys) -> Self {
        ClientHop {
            forward: Direction::new(&keys.forward_key, &keys.forward_digest),
            backward: Direction::new(&keys.backward_key, &keys.backward_digest),
        }
    }
}

impl RelayHop {
    pub fn new(keys: &CircuitKeys) -> Self {
        RelayHop {
            forward: Direction::new(&keys.forward_key, &keys.forward_digest),
            backward: Direction::new(&keys.backward_key, &keys.backward_digest),
        }
    }

    /// Removes this hop's outbound layer; `Some(digest)` when the cell is
    /// for us, `None` when it must be passed on to the next hop.
    pub fn decrypt_outbound(&mut self, body: &mut RelayBody) -> Option<CellDigest> {
        self.forward.apply_keystream(body);
        self.forward.recognize(body)
    }

    /// Seals and encrypts a cell this relay originates toward the client.
    pub fn originate_inbound(&mut self, body: &mut RelayBody) -> CellDigest {
        let d = self.backward.seal(body);
        self.backward.apply_keystream(body);
        d
    }

    /// Adds this hop's layer to a cell coming back from further hops.
    pub fn relay_inbound(&mut self, body: &mut RelayBody) {
        self.backward.apply_keystream(body);
    }
}

/// The client's crypto for a whole circuit, hop 0 being the first relay.
#[derive(Default)]
pub struct ClientCircuitCrypto {
    hops: Vec<ClientHop>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayCryptoError {
    #[error("no hop {0} on this circuit")]
    NoSuchHop(usize),
    #[error("relay cell not recognized by any hop")]
    Unrecognized,
}

impl ClientCircuitCrypto {
    pub fn add_hop(&mut self, keys: &CircuitKeys) {
        self.hops.push(ClientHop::new(keys));
    }

    pub fn hop_count(&self) -> usize {
        self.hops.len()
    }

    /// Drops hops after `keep` (after a TRUNCATED).
    pub fn truncate(&mut self, keep: usize) {
        self.hops.truncate(keep);
    }

    /// Seals `body` for hop `target` and adds every layer up to it.
    pub fn encrypt_outbound(
        &mut self,
        body: &mut RelayBody,
        target: usize,
    ) -> Result<CellDigest, RelayCryptoError> {
        let hop = self
            .hops
            .get_mut(target)
            .ok_or(RelayCryptoError::NoSuchHop(target))?;
        let digest = hop.forward.seal(body);
        for hop in self.hops.iter_mut().take(target + 1).rev() {
            hop.forward.apply_keystream(body);
        }
        Ok(digest)
    }

    /// Peels layers until a hop recognizes the cell; returns that hop.
    pub fn decrypt_inbound(
        &mut self,
        body: &mut RelayBody,
    ) -> Result<(usize, CellDigest), RelayCryptoError> {
        for (i, hop) in self.hops.iter_mut().enumerate() {
            hop.backward.apply_keystream(body);
            if let Some(d) = hop.backward.recognize(body) {
                return Ok((i, d));
            }
        }
        Err(RelayCryptoError::Unrecognized)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cell::{relay_command, RelayCell};

    fn keys(seed: u8) -> CircuitKeys {
        let material: Vec<u8> = (0..72u8)
            .map(|i| i.wrapping_mul(31).wrapping_add(seed))
            .collect();
        CircuitKeys::from_material(&material).unwrap()
    }

    #[test]
    fn three_hops_both_directions() {
        let ks = [keys(1), keys(2), keys(3)];
        let mut client = ClientCircuitCrypto::default();
        let mut relays: Vec<RelayHop> = ks.iter().map(RelayHop::new).collect();
        for k in &ks {
            client.add_hop(k);
        }
        for round in 0..50u16 {
            let target = usize::from(round % 3);
            let cell = RelayCell::new(relay_command::DATA, round, vec![round as u8; 100]);
            let mut body = cell.encode(|p| p.fill(9)).unwrap();
            let sent = client.encrypt_outbound(&mut body, target).unwrap();
            // Each relay peels its layer; only the target recognizes it.
            for (i, relay) in relays.iter_mut().enumerate() {
                let got = relay.decrypt_outbound(&mut body);
                if i == target {
                    assert_eq!(got, Some(sent));
                    assert_eq!(RelayCell::decode(&body).unwrap(), cell);
                    break;
                }
                assert_eq!(
                    got, None,
                    "hop {i} must not recognize a cell for hop {target}"
                );
            }
            // The target answers; hops before it add their layers.
            let reply = RelayCell::new(relay_command::DATA, round, b"pong".to_vec());
            let mut body = reply.encode(|_| {}).unwrap();
            let sealed = relays[target].originate_inbound(&mut body);
            for relay in relays[..target].iter_mut().rev() {
                relay.relay_inbound(&mut body);
            }
            assert_eq!(client.decrypt_inbound(&mut body).unwrap(), (target, sealed));
            assert_eq!(RelayCell::decode(&body).unwrap(), reply);
        }
    }

    #[test]
    fn corrupted_cell_is_not_recognized_and_does_not_advance_the_digest() {
        let k = keys(5);
        let mut client = ClientCircuitCrypto::default();
        client.add_hop(&k);
        let mut relay = RelayHop::new(&k);
        let mut body = RelayCell::new(relay_command::DATA, 1, vec![1; 10])
            .encode(|_| {})
            .unwrap();
        client.encrypt_outbound(&mut body, 0).unwrap();
        let mut bad = body;
        bad[20] ^= 1;
        let mut relay_copy = RelayHop::new(&k);
        assert_eq!(relay_copy.decrypt_outbound(&mut bad), None);
        assert!(relay.decrypt_outbound(&mut body).is_some());
        assert!(matches!(
            client.encrypt_outbound(&mut body, 3),
            Err(RelayCryptoError::NoSuchHop(3))
        ));
    }
}
