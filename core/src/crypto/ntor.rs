//! The ntor handshake (tor-spec §5.1.4): curve25519, HMAC-SHA256 and
//! HKDF-SHA256. The client names the relay by its RSA identity digest ID
//! and its onion key B; the relay answers Y | AUTH.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use super::kdf::{hkdf_sha256_expand, CircuitKeys, CIRCUIT_KEY_MATERIAL};
use super::HandshakeError;

const PROTOID: &[u8] = b"ntor-curve25519-sha256-1";
const T_MAC: &[u8] = b"ntor-curve25519-sha256-1:mac";
const T_KEY: &[u8] = b"ntor-curve25519-sha256-1:key_extract";
const T_VERIFY: &[u8] = b"ntor-curve25519-sha256-1:verify";
const M_EXPAND: &[u8] = b"ntor-curve25519-sha256-1:key_expand";

/// ID (20) | B (32) | X (32).
pub const ONIONSKIN_LEN: usize = 84;
/// Y (32) | AUTH (32).
pub const REPLY_LEN: usize = 64;

/// H(x, t) = HMAC-SHA256 keyed with t.
fn h(message: &[u8], tweak: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length; this cannot fail.
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(tweak).unwrap_or_else(|_| unreachable!());
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// What the client keeps between sending the onionskin and reading the reply.
pub struct NtorClient {
    relay_id: [u8; 20],
    relay_onion_key: [u8; 32],
    x: StaticSecret,
    x_pub: [u8; 32],
}

/// A relay's ntor onion key pair and the identity it is bound to.
#[derive(Clone)]
pub struct NtorRelayKey {
    pub id: [u8; 20],
    pub secret: StaticSecret,
    pub public: [u8; 32],
}

impl NtorRelayKey {
    pub fn new(id: [u8; 20], secret_bytes: [u8; 32]) -> Self {
        let secret = StaticSecret::from(secret_bytes);
        let public = PublicKey::from(&secret).to_bytes();
        NtorRelayKey { id, secret, public }
    }
}

/// The shared inputs both sides hash (tor-spec §5.1.4 secret_input),
/// returning (KEY_SEED, AUTH).
fn seed_and_auth(
    exp_1: &[u8; 32],
    exp_2: &[u8; 32],
    id: &[u8; 20],
    b: &[u8; 32],
    x: &[u8; 32],
    y: &[u8; 32],
) -> (Zeroizing<[u8; 32]>, [u8; 32]) {
    let mut secret_input = Zeroizing::new(Vec::with_capacity(32 * 5 + 20 + PROTOID.len()));
    for part in [&exp_1[..], exp_2, id, b, x, y, PROTOID] {
        secret_input.extend_from_slice(part);
    }
    let key_seed = Zeroizing::new(h(&secret_input, T_KEY));
    let verify = h(&secret_input, T_VERIFY);
    let mut auth_input = Vec::with_capacity(32 * 4 + 20 + PROTOID.len() + 6);
    for part in [&verify[..], id, b, y, x, PROTOID, b"Server"] {
        auth_input.extend_from_slice(part);
    }
    (key_seed, h(&auth_input, T_MAC))
}

fn keys_from_seed(seed: &[u8; 32]) -> Result<CircuitKeys, HandshakeError> {
    let material =
        hkdf_sha256_expand(seed, M_EXPAND, CIRCUIT_KEY_MATERIAL).ok_or(HandshakeError::Internal)?;
    CircuitKeys::from_material(&material).ok_or(HandshakeError::Internal)
}

/// Diffie-Hellman that refuses non-contributory (low-order) peer keys, as
/// tor-spec §5.1.4 requires ("not the point at infinity").
fn dh(secret: &StaticSecret, public: &[u8; 32]) -> Result<Zeroizing<[u8; 32]>, HandshakeError> {
    let shared = secret.diffie_hellman(&PublicKey::from(*public));
    if !shared.was_contributory() {
        return Err(HandshakeError::WeakKey);
    }
    Ok(Zeroizing::new(shared.to_bytes()))
}

impl NtorClient {
    /// Starts a handshake with fresh secret `x_bytes` (32 random bytes) to
    /// the relay with identity digest `relay_id` and onion key `relay_onion_key`.
    /// Returns the state and the 84-byte onionskin for CREATE2/EXTEND2.
    pub fn start(
        relay_id: [u8; 20],
        relay_onion_key: [u8; 32],
        x_bytes: [u8; 32],
    ) -> (NtorClient, Vec<u8>) {
        let x = StaticSecret::from(x_bytes);
        let x_pub = PublicKey::from(&x).to_bytes();
        let mut onionskin = Vec::with_capacity(ONIONSKIN_LEN);
        onionskin.extend_from_slice(&relay_id);
        onionskin.extend_from_slice(&relay_onion_key);
        onionskin.extend_from_slice(&x_pub);
        (
            NtorClient {
                relay_id,
                relay_onion_key,
                x,
                x_pub,
            },
            onionskin,
        )
    }

    /// Checks the relay's reply (Y | AUTH) and derives the circuit keys.
    pub fn finish(self, reply: &[u8]) -> Result<CircuitKeys, HandshakeError> {
        let y: [u8; 32] = reply
            .get(..32)
            .and_then(|s| s.try_into().ok())
            .ok_or(HandshakeError::BadReply)?;
        let their_auth = reply.get(32..REPLY_LEN).ok_or(HandshakeError::BadReply)?;
        let exp_yx = dh(&self.x, &y)?;
        let exp_bx = dh(&self.x, &self.relay_onion_key)?;
        let (seed, auth) = seed_and_auth(
            &exp_yx,
            &exp_bx,
            &self.relay_id,
            &self.relay_onion_key,
            &self.x_pub,
            &y,
        );
        if !bool::from(auth.ct_eq(their_auth)) {
            return Err(HandshakeError::AuthFailed);
        }
        keys_from_seed(&seed)
    }
}

/// Relay side: answers an onionskin addressed to one of `keys` (a relay may
/// hold its current and previous onion keys) with fresh secret `y_bytes`.
/// Returns the 64-byte reply and the circuit keys.
pub fn server(
    keys: &[NtorRelayKey],
    onionskin: &[u8],
    y_bytes: [u8; 32],
) -> Result<(Vec<u8>, CircuitKeys), HandshakeError> {
    if onionskin.len() < ONIONSKIN_LEN {
        return Err(HandshakeError::BadRequest);
    }
    let id = onionskin.get(..20).ok_or(HandshakeError::BadRequest)?;
    let b = onionskin.get(20..52).ok_or(HandshakeError::BadRequest)?;
    let x: [u8; 32] = onionskin
        .get(52..84)
        .and_then(|s| s.try_into().ok())
        .ok_or(HandshakeError::BadRequest)?;
    let key = keys
        .iter()
        .find(|k| k.id[..] == *id && k.public[..] == *b)
        .ok_or(HandshakeError::UnknownKey)?;
    let y = StaticSecret::from(y_bytes);
    let y_pub = PublicKey::from(&y).to_bytes();
    let exp_xy = dh(&y, &x)?;
    let exp_xb = dh(&key.secret, &x)?;
    let (seed, auth) = seed_and_auth(&exp_xy, &exp_xb, &key.id, &key.public, &x, &y_pub);
    let mut reply = y_pub.to_vec();
    reply.extend_from_slice(&auth);
    Ok((reply, keys_from_seed(&seed)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arr<const N: usize>(s: &str) -> [u8; N] {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    /// The vector C tor's ntor reference implementation produced (published
    /// in Arti's tests): fixed b, x, y and the relay ID.
    #[test]
    fn reference_vector() {
        let b_sk = arr::<32>("4820544f4c4420594f5520444f474954204b454550532048415050454e494e47");
        let b_pk = arr::<32>("ccbc8541904d18af08753eae967874749e6149f873de937f57f8fd903a21c471");
        let x_sk = arr::<32>("706f6461792069207075742e2e2e2e2e2e2e2e4a454c4c59206f6e2074686973");
        let y_sk = arr::<32>("70686520737175697272656c2e2e2e2e2e2e2e2e686173206869732067616d65");
        let id = arr::<20>("69546f6c64596f7541626f75745374616972732e");
        let client_handshake = "69546f6c64596f7541626f75745374616972732eccbc8541904d18af08753eae967874749e6149f873de937f57f8fd903a21c471e65dfdbef8b2635837fe2cebc086a8096eae3213e6830dc407516083d412b078";
        let server_handshake = "390480a14362761d6aec1fea840f6e9e928fb2adb7b25c670be1045e35133a371cbdf68b89923e1f85e8e18ee6e805ea333fe4849c790ffd2670bd80fec95cc8";
        let keys = "0c62dee7f48893370d0ef896758d35729867beef1a5121df80e00f79ed349af39b51cae125719182f19d932a667dae1afbf2e336e6910e7822223e763afad0a13342157969dc6b79";

        let relay = NtorRelayKey::new(id, b_sk);
        assert_eq!(relay.public, b_pk);
        let (client, onionskin) = NtorClient::start(id, b_pk, x_sk);
        assert_eq!(hex::encode(&onionskin), client_handshake);
        let (reply, server_keys) = server(&[relay], &onionskin, y_sk).unwrap();
        assert_eq!(hex::encode(&reply), server_handshake);
        let client_keys = client.finish(&reply).unwrap();
        let keys = hex::decode(keys).unwrap();
        for k in [&client_keys, &server_keys] {
            assert_eq!(&k.forward_digest[..], &keys[..20]);
            assert_eq!(&k.backward_digest[..], &keys[20..40]);
            assert_eq!(&k.forward_key[..], &keys[40..56]);
            assert_eq!(&k.backward_key[..], &keys[56..72]);
        }
    }

    #[test]
    fn wrong_relay_and_tampered_reply_fail() {
        let relay = NtorRelayKey::new([12; 20], [3; 32]);
        let (_, wrong_id) = NtorClient::start([13; 20], relay.public, [4; 32]);
        assert!(matches!(
            server(std::slice::from_ref(&relay), &wrong_id, [5; 32]),
            Err(HandshakeError::UnknownKey)
        ));
        let (client, skin) = NtorClient::start(relay.id, relay.public, [4; 32]);
        let (mut reply, _) = server(std::slice::from_ref(&relay), &skin, [5; 32]).unwrap();
        reply[60] ^= 7;
        assert!(matches!(
            client.finish(&reply),
            Err(HandshakeError::AuthFailed)
        ));
        assert!(matches!(
            server(&[relay], &skin[..50], [5; 32]),
            Err(HandshakeError::BadRequest)
        ));
    }

    #[test]
    fn low_order_client_key_is_refused() {
        let relay = NtorRelayKey::new([12; 20], [3; 32]);
        let mut skin = relay.id.to_vec();
        skin.extend_from_slice(&relay.public);
        skin.extend_from_slice(&[0; 32]); // the identity point
        assert!(matches!(
            server(&[relay], &skin, [5; 32]),
            Err(HandshakeError::WeakKey)
        ));
    }
}
