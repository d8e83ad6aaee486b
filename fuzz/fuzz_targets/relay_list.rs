//! Fuzz target: a bridge's relay list; the signature check never panics,
//! and whatever parses re-encodes to a list that parses to the same
//! relays.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peersm_core::dir::relay_list::{encode_relay_list, parse_relay_list, verify_relay_list};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // A valid point (the Ed25519 base point's encoding): forged
    // signatures must be refused, never panic.
    let mut key = [0x66u8; 32];
    key[0] = 0x58;
    let _ = verify_relay_list(&text, &key);
    if let Ok(relays) = parse_relay_list(&text) {
        let again = parse_relay_list(&encode_relay_list(&relays)).expect("our own encoding parses");
        assert_eq!(again, relays);
    }
});
