//! Directory documents (dir-spec): the microdescriptor consensus and
//! microdescriptors, parsed into what path selection needs.

pub mod authority;
pub mod consensus;
pub mod microdesc;
pub mod path;

/// Decodes unpadded or padded standard base64 (dir-spec uses both).
pub(crate) fn base64_decode(s: &str) -> Option<Vec<u8>> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in s.trim_end_matches('=').bytes() {
        let v = ALPHABET.iter().position(|a| *a == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64() {
        assert_eq!(super::base64_decode("aGVsbG8").unwrap(), b"hello");
        assert_eq!(super::base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert!(super::base64_decode("a$").is_none());
    }
}
