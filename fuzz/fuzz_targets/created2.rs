//! Fuzz target: CREATED2 / EXTENDED2 bodies and CREATE2 cells.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peersm_core::cell::{command, Create2, Created2, RawCell};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Created2::decode(data) {
        assert_eq!(Created2::decode(&m.encode().expect("re-encodes")).expect("decodes again"), m);
    }
    let cell = RawCell::new(1, command::CREATE2, data.to_vec());
    if let Ok(m) = Create2::from_cell(&cell) {
        assert_eq!(Create2::from_cell(&m.to_cell(1).expect("re-encodes")).expect("decodes again"), m);
    }
});
