//! Fuzz target: SOCKS5 greeting, credentials and requests.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peersm_core::socks::{parse_credentials, parse_greeting, parse_request, Parsed};

fuzz_target!(|data: &[u8]| {
    if let Ok(Parsed::Done(_, used)) = parse_greeting(data) {
        assert!(used <= data.len());
    }
    if let Ok(Parsed::Done(_, used)) = parse_request(data) {
        assert!(used <= data.len());
    }
    if let Ok(Parsed::Done(_, used)) = parse_credentials(data) {
        assert!(used <= data.len());
    }
});
