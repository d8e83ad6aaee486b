//! Fuzz target: the AUTH_CHALLENGE body decoder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peersm_core::cell::{command, AuthChallenge, RawCell};
fuzz_target!(|data: &[u8]| {
    let cell = RawCell::new(0, command::AUTH_CHALLENGE, data.to_vec());
    if let Ok(msg) = AuthChallenge::from_cell(&cell) {
        // A message that decodes re-encodes and decodes to itself.
        let again = msg.to_cell().expect("re-encodes");
        assert_eq!(
            AuthChallenge::from_cell(&again).expect("decodes again"),
            msg
        );
    }
});
