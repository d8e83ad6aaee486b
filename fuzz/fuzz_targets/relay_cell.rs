//! Fuzz target: decrypted relay cell bodies, and the relay messages carried in them (BEGIN, CONNECTED, SENDME).
#![no_main]

use libfuzzer_sys::fuzz_target;
use peersm_core::cell::{Begin, Connected, RelayCell, Sendme};

fuzz_target!(|data: &[u8]| {
    if let Ok(cell) = RelayCell::decode(data) {
        let body = cell.encode(|_| {}).expect("re-encodes");
        assert_eq!(RelayCell::decode(&body).expect("decodes again"), cell);
    }
    if let Ok(b) = Begin::decode(data) {
        assert_eq!(Begin::decode(&b.encode()).expect("BEGIN decodes again"), b);
    }
    if let Ok(c) = Connected::decode(data) {
        assert_eq!(Connected::decode(&c.encode()).expect("CONNECTED decodes again"), c);
    }
    if let Ok(s) = Sendme::decode(data) {
        assert_eq!(Sendme::decode(&s.encode()).expect("SENDME decodes again"), s);
    }
});
