//! Micro-benchmarks of the protocol core, shared by the native example
//! (`cargo run --release --example bench_crypto`) and the browser
//! (`benchRelayCrypto` / `benchNtor` in the JS API). The caller supplies the
//! clock (milliseconds), so the core still reads none itself.

use aes::Aes128;
use ctr::cipher::{KeyIvInit, StreamCipher};

use crate::cell::{relay_command, RelayCell, PAYLOAD_LEN};
use crate::crypto::ntor::{self, NtorClient, NtorRelayKey};
use crate::crypto::relay_crypto::{ClientCircuitCrypto, RelayHop};
use crate::crypto::CircuitKeys;

/// Results of one relay-crypto run, in MB/s (10^6 bytes of cell bodies).
#[derive(Debug, Clone, Copy)]
pub struct RelayCryptoResult {
    /// Client sealing + one layer, per hop.
    pub client_encrypt: f64,
    /// Relay peeling one layer and checking the digest.
    pub relay_decrypt: f64,
    /// Baseline: bare AES-128-CTR over the same bytes.
    pub aes_ctr_only: f64,
}

fn keys() -> Option<CircuitKeys> {
    let material: Vec<u8> = (0..72u8).collect();
    CircuitKeys::from_material(&material)
}

/// Pushes `megabytes` of 509-byte relay cells through one hop each way.
pub fn relay_crypto(megabytes: u32, now_ms: &dyn Fn() -> f64) -> Option<RelayCryptoResult> {
    let k = keys()?;
    let cells = (u64::from(megabytes) * 1_000_000 / PAYLOAD_LEN as u64).max(1);
    let body = RelayCell::new(relay_command::DATA, 1, vec![0x5a; 498])
        .encode(|_| {})
        .ok()?;
    let mut client = ClientCircuitCrypto::default();
    client.add_hop(&k);
    let mut relay = RelayHop::new(&k);
    let mut encrypted = Vec::with_capacity(cells as usize);

    let t0 = now_ms();
    for _ in 0..cells {
        let mut b = body;
        client.encrypt_outbound(&mut b, 0).ok()?;
        encrypted.push(b);
    }
    let t1 = now_ms();
    let mut recognized = 0u64;
    for b in encrypted.iter_mut() {
        recognized += u64::from(relay.decrypt_outbound(b).is_some());
    }
    let t2 = now_ms();
    let mut aes = ctr::Ctr128BE::<Aes128>::new(&k.forward_key.into(), &[0u8; 16].into());
    for b in encrypted.iter_mut() {
        aes.apply_keystream(b);
    }
    let t3 = now_ms();
    if recognized != cells {
        return None;
    }
    let mb = (cells * PAYLOAD_LEN as u64) as f64 / 1e6;
    let rate = |ms: f64| mb / (ms.max(1e-3) / 1000.0);
    Some(RelayCryptoResult {
        client_encrypt: rate(t1 - t0),
        relay_decrypt: rate(t2 - t1),
        aes_ctr_only: rate(t3 - t2),
    })
}

/// Milliseconds per complete ntor handshake (client start, relay answer,
/// client finish), averaged over `rounds`.
pub fn ntor_handshake_ms(rounds: u32, now_ms: &dyn Fn() -> f64) -> Option<f64> {
    let relay = NtorRelayKey::new([7; 20], [9; 32]);
    let relays = [relay.clone()];
    let t0 = now_ms();
    for i in 0..rounds.max(1) {
        let mut x = [3u8; 32];
        x[..4].copy_from_slice(&i.to_le_bytes());
        let (client, skin) = NtorClient::start(relay.id, relay.public, x);
        let (reply, _) = ntor::server(&relays, &skin, [i as u8; 32]).ok()?;
        client.finish(&reply).ok()?;
    }
    Some((now_ms() - t0) / f64::from(rounds.max(1)))
}
