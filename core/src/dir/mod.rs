//! Directory documents (dir-spec): the microdescriptor consensus and
//! microdescriptors, parsed into what path selection needs.

pub mod authority;
pub mod consensus;
pub mod microdesc;
pub mod path;
pub mod relay_list;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64, with `=` padding or without (directory documents use
/// both: unpadded digests in URLs and keys, padded PEM bodies).
pub fn base64_encode(bytes: &[u8], pad: bool) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n =
            chunk.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            let sextet = ((n >> (18 - 6 * i)) & 63) as usize;
            out.push(char::from(ALPHABET.get(sextet).copied().unwrap_or(b'A')));
        }
        if pad {
            for _ in chunk.len()..3 {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes unpadded or padded standard base64 (dir-spec uses both).
pub(crate) fn base64_decode(s: &str) -> Option<Vec<u8>> {
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
        assert_eq!(super::base64_encode(b"hello", false), "aGVsbG8");
        assert_eq!(super::base64_encode(b"hello", true), "aGVsbG8=");
        for n in 0..40u8 {
            let bytes: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37)).collect();
            assert_eq!(
                super::base64_decode(&super::base64_encode(&bytes, n % 2 == 0)).unwrap(),
                bytes
            );
        }
    }
}
