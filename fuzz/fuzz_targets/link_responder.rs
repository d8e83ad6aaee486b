//! Fuzz target: the bridge side of the link handshake, fed a sequence of frames.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peersm_core::channel::LinkResponder;

/// Splits input into frames: each starts with a 2-byte length.
fn split_frames(mut data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while data.len() >= 2 {
        let len = usize::from(u16::from_be_bytes([data[0], data[1]]));
        let rest = &data[2..];
        let take = len.min(rest.len());
        out.push(&rest[..take]);
        data = &rest[take..];
    }
    out
}
fuzz_target!(|data: &[u8]| {
    let mut link = LinkResponder::new([7; 32], 0, None, Vec::new());
    for frame in split_frames(data) {
        if link.handle_frame(frame).is_err() {
            assert!(
                link.handle_frame(frame).is_err(),
                "a failed link stays failed"
            );
            break;
        }
        while link.poll_event().is_some() {}
        while link.poll_transmit().is_some() {}
    }
});
