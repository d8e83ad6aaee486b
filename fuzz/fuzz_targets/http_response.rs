//! Fuzz target: an HTTP response read in two pieces (split at the first
//! byte's value) must decode the same body as read whole; URL parsing and
//! redirect resolution never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peersm_core::http::{HttpUrl, ResponseReader};

fuzz_target!(|data: &[u8]| {
    let whole = {
        let mut r = ResponseReader::new();
        r.feed(data).map(|body| (body, r.is_done()))
    };
    let split = usize::from(data.first().copied().unwrap_or(0)).min(data.len());
    let pieces = {
        let mut r = ResponseReader::new();
        r.feed(&data[..split]).and_then(|mut body| {
            body.extend(r.feed(&data[split..])?);
            Ok((body, r.is_done()))
        })
    };
    if let (Ok(a), Ok(b)) = (&whole, &pieces) {
        assert_eq!(a, b, "the body depends on how the bytes arrived");
    }
    let text = String::from_utf8_lossy(data);
    if let Ok(url) = HttpUrl::parse(&text) {
        let _ = url.join(&text);
        assert!(HttpUrl::parse(&url.to_string()).is_ok(), "{url}");
    }
});
