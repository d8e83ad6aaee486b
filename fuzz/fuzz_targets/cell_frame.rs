//! Fuzz target: frames of raw cells (RawCell::decode via decode_frame); decoded cells must re-encode to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peersm_core::cell::CircIdLen;
use peersm_core::channel::{decode_frame, encode_cells};
fuzz_target!(|data: &[u8]| {
    for width in [CircIdLen::Two, CircIdLen::Four] {
        if let Ok(cells) = decode_frame(data, width, |_| width) {
            // Whatever decodes re-encodes to exactly the input.
            let again = encode_cells(&cells, width).expect("decoded cells re-encode");
            assert_eq!(again, data);
        }
    }
});
