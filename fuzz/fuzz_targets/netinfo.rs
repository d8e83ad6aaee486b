//! Fuzz target: the NETINFO body decoder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peersm_core::cell::{command, Netinfo, RawCell};
fuzz_target!(|data: &[u8]| {
    let cell = RawCell::new(0, command::NETINFO, data.to_vec());
    if let Ok(msg) = Netinfo::from_cell(&cell) {
        // A message that decodes re-encodes and decodes to itself.
        let again = msg.to_cell().expect("re-encodes");
        assert_eq!(Netinfo::from_cell(&again).expect("decodes again"), msg);
    }
});
