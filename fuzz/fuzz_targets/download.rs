//! Fuzz target: the download state machine fed what an exit or a server
//! may send, over http (heads, redirects, resumes with If-Range) and over
//! https (the TLS client's first flight answered with arbitrary records).
//! Bytes arrive in two pieces; a broken stream is resumed once. Nothing
//! may panic, whatever the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peersm_core::client::Download;
use peersm_core::http::HttpUrl;

/// 2026-12-01, inside any real certificate's validity.
const NOW_MS: u64 = 1_796_083_200_000;

fuzz_target!(|data: &[u8]| {
    let split = usize::from(data.first().copied().unwrap_or(0)).min(data.len());
    for url in ["http://files.test/a", "https://files.test/a"] {
        let mut d = Download::new(HttpUrl::parse(url).expect("a fixed URL"));
        for _attempt in 0..2 {
            if d.request(NOW_MS).is_err() {
                break;
            }
            let _ = d.take_outgoing();
            for piece in [&data[..split], &data[split..]] {
                if d.feed(piece).is_err() {
                    break;
                }
                let _ = d.take_outgoing();
            }
            match d.stream_ended(6) {
                Ok(_) if !d.is_done() => continue,
                _ => break,
            }
        }
    }
});
