//! Fuzz target: a relay's or a bridge's CERTS cell as the initiator checks it, plus each certificate parser (Ed25519, RSA cross-cert, X.509).
#![no_main]

use libfuzzer_sys::fuzz_target;
use peersm_core::cell::{command, Certs, RawCell};
use peersm_core::channel::tor_certs::{verify_bridge_certs, verify_relay_certs};
use peersm_core::crypto::ed25519_cert::{Ed25519Cert, RsaCrossCert};
use peersm_core::crypto::x509::RsaCertificate;

fuzz_target!(|data: &[u8]| {
    let _ = Ed25519Cert::parse(data);
    let _ = RsaCrossCert::parse(data);
    if let Ok(c) = RsaCertificate::parse(data) {
        let _ = c.key();
    }
    if let Ok(certs) = Certs::from_cell(&RawCell::new(0, command::CERTS, data.to_vec())) {
        assert!(verify_relay_certs(&certs, b"tls", 1_800_000_000, None, None).is_err() || !certs.certs.is_empty());
        assert!(verify_bridge_certs(&certs, 1_800_000_000, None).is_err() || !certs.certs.is_empty());
    }
});
