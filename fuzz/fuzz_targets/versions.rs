//! Fuzz target: the VERSIONS body decoder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peersm_core::cell::{command, RawCell, Versions};
fuzz_target!(|data: &[u8]| {
    let cell = RawCell::new(0, command::VERSIONS, data.to_vec());
    if let Ok(msg) = Versions::from_cell(&cell) {
        // A message that decodes re-encodes and decodes to itself.
        let again = msg.to_cell();
        assert_eq!(Versions::from_cell(&again).expect("decodes again"), msg);
    }
});
