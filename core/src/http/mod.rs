//! A small HTTP/1.1 client for streams from an exit (RFC 9112): the URL
//! forms we accept, the GET request we send, and a response reader that
//! takes bytes as they arrive. Head parsing is `httparse`'s; this module
//! adds body framing (Content-Length, chunked, until close), redirects and
//! Content-Range for resumed downloads, and TLS inside the stream for
//! https (`tls`). Sans IO: used by the tab's
//! `peer.fetch` and testable natively.

mod response;
#[cfg(test)]
pub(crate) mod test_pki;
pub mod tls;
mod url;

pub use response::{BodyFraming, ResponseHead, ResponseReader};
pub use tls::{certificates_from_pem, TlsSettings, TlsStream};
pub use url::{HttpUrl, Scheme};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    #[error("bad URL: {0}")]
    BadUrl(String),
    #[error("malformed response: {0}")]
    Malformed(String),
    #[error("response head larger than {0} bytes")]
    HeadTooLarge(usize),
    #[error("bad chunked encoding")]
    BadChunk,
    #[error("the connection closed before the body was complete")]
    Truncated,
    #[error("https: {0}")]
    Tls(String),
}

/// The GET request for `url`, asking for the bytes from `from` on when
/// resuming (RFC 9110 §14.2), only if the resource still matches
/// `if_range` (an ETag or a date, §13.1.5). `Connection: close`: one
/// request per stream, so the end of the stream ends the response when no
/// length is given.
pub fn get_request(url: &HttpUrl, from: u64, if_range: Option<&str>) -> Vec<u8> {
    let mut req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: */*\r\nAccept-Encoding: identity\r\nConnection: close\r\n",
        url.path_and_query,
        url.host_header()
    );
    if from > 0 {
        req.push_str(&format!("Range: bytes={from}-\r\n"));
        if let Some(validator) = if_range {
            req.push_str(&format!("If-Range: {validator}\r\n"));
        }
    }
    req.push_str("\r\n");
    req.into_bytes()
}

/// A whole HTTP/1.0 `text/plain` response: what the small directories
/// behind BEGIN_DIR (a bridge's relay list, a tab's test directory) send.
pub fn text_response(status: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.0 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_shape() {
        let url = HttpUrl::parse("http://example.org:8080/a/b?c=d").unwrap();
        let req = String::from_utf8(get_request(&url, 0, None)).unwrap();
        assert!(req.starts_with("GET /a/b?c=d HTTP/1.1\r\nHost: example.org:8080\r\n"));
        assert!(!req.contains("Range"));
        let req = String::from_utf8(get_request(&url, 1000, Some("\"v1\""))).unwrap();
        assert!(req.contains("Range: bytes=1000-\r\nIf-Range: \"v1\"\r\n"));
        assert!(req.ends_with("\r\n\r\n"));
    }
}
