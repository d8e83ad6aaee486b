//! Fuzz target: consensus, microdescriptor and authority certificate text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peersm_core::dir::authority::{verify_consensus, AuthorityCert};
use peersm_core::dir::consensus::Consensus;
use peersm_core::dir::microdesc;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = Consensus::parse(&text);
    let _ = microdesc::parse_all(&text);
    let _ = AuthorityCert::parse_many(&text, &[[0; 20]], 0);
    assert!(verify_consensus(&text, &[[0; 20]], &[]).is_err(), "nothing is trusted without certificates");
});
