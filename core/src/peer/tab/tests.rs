//! Unit tests of the tab's pieces that need no network.

use super::{fingerprint_of, same_fingerprint};

#[test]
fn an_sdp_names_exactly_one_fingerprint() {
    let one = "v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n\
               a=fingerprint:sha-256 AB:CD:EF\r\n";
    assert_eq!(fingerprint_of(one).as_deref(), Some("sha-256 AB:CD:EF"));
    // A second line, at session or media level, in front or behind.
    let session_first = format!("v=0\r\na=fingerprint:sha-256 00:11:22\r\n{}", &one[5..]);
    assert_eq!(fingerprint_of(&session_first), None);
    let media_second = format!("{one}a=fingerprint:sha-256 00:11:22\r\n");
    assert_eq!(fingerprint_of(&media_second), None);
    // The same value twice is still two lines.
    let twice = format!("{one}a=fingerprint:sha-256 AB:CD:EF\r\n");
    assert_eq!(fingerprint_of(&twice), None);
    assert_eq!(fingerprint_of("v=0\r\n"), None);
    assert_eq!(fingerprint_of("a=fingerprint:   \r\n"), None);
}

#[test]
fn fingerprints_compare_without_case() {
    assert!(same_fingerprint("sha-256 ab:cd", "SHA-256 AB:CD"));
    assert!(same_fingerprint("sha-256  AB:CD ", "sha-256 AB:CD"));
    assert!(!same_fingerprint("sha-256 AB:CD", "sha-256 AB:CE"));
    assert!(!same_fingerprint("sha-1 AB:CD", "sha-256 AB:CD"));
}
