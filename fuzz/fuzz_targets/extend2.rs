//! Fuzz target: EXTEND2 bodies (link specifiers + CREATE2 part); what decodes re-encodes and decodes to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peersm_core::cell::Extend2;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Extend2::decode(data) {
        let again = m.encode().expect("re-encodes");
        assert_eq!(Extend2::decode(&again).expect("decodes again"), m);
    }
});
