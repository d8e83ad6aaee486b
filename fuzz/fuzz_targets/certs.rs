//! Fuzz target: the CERTS body decoder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peersm_core::cell::{command, Certs, RawCell};
fuzz_target!(|data: &[u8]| {
    let cell = RawCell::new(0, command::CERTS, data.to_vec());
    if let Ok(msg) = Certs::from_cell(&cell) {
        // A message that decodes re-encodes and decodes to itself.
        let again = msg.to_cell().expect("re-encodes");
        assert_eq!(Certs::from_cell(&again).expect("decodes again"), msg);
    }
});
