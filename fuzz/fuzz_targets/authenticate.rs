//! Fuzz target: the AUTHENTICATE body decoder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peersm_core::cell::{command, Authenticate, RawCell};
fuzz_target!(|data: &[u8]| {
    let cell = RawCell::new(0, command::AUTHENTICATE, data.to_vec());
    if let Ok(msg) = Authenticate::from_cell(&cell) {
        // A message that decodes re-encodes and decodes to itself.
        let again = msg.to_cell().expect("re-encodes");
        assert_eq!(Authenticate::from_cell(&again).expect("decodes again"), msg);
    }
});
