//! The directory service behind BEGIN_DIR (tor-spec §6.2, dir-spec §6):
//! an HTTP/1.0 GET on the stream, one response, then END. A bridge serves
//! its relay list here (`peersm_core::dir::relay_list`); anything else is 404.
//! Relays without a list refuse BEGIN_DIR (END NOTDIRECTORY).

use peersm_core::dir::relay_list::{encode_relay_list, ListedRelay, RELAY_LIST_PATH};
use peersm_core::http::text_response as response;

/// Largest request head we read before answering 400.
const MAX_REQUEST_LEN: usize = 8 * 1024;

/// One BEGIN_DIR stream reading its request.
#[derive(Default)]
pub struct DirRequest {
    buf: Vec<u8>,
}

impl DirRequest {
    /// Adds stream bytes; once the request head is complete, returns the
    /// whole HTTP response to send before END.
    pub fn feed(&mut self, data: &[u8], relays: &[ListedRelay]) -> Option<Vec<u8>> {
        self.buf.extend_from_slice(data);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&self.buf) {
            Ok(httparse::Status::Complete(_)) => Some(match (req.method, req.path) {
                (Some("GET"), Some(RELAY_LIST_PATH)) => {
                    response("200 OK", encode_relay_list(relays).as_bytes())
                }
                (Some("GET"), _) => response("404 Not Found", b"not found\n"),
                _ => response("405 Method Not Allowed", b"GET only\n"),
            }),
            Ok(httparse::Status::Partial) if self.buf.len() <= MAX_REQUEST_LEN => None,
            _ => Some(response("400 Bad Request", b"bad request\n")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_once_the_head_is_complete() {
        let relays = vec![ListedRelay {
            nickname: "m".into(),
            addr: "127.0.0.1:1".parse().unwrap(),
            rsa_id: [1; 20],
            ed25519_id: [2; 32],
            ntor_key: [3; 32],
            exit: false,
        }];
        let mut r = DirRequest::default();
        assert!(r
            .feed(b"GET /peersm/relays HTTP/1.0\r\n", &relays)
            .is_none());
        let resp = String::from_utf8(r.feed(b"\r\n", &relays).unwrap()).unwrap();
        assert!(resp.starts_with("HTTP/1.0 200 OK\r\n"), "{resp}");
        assert!(resp.ends_with(&encode_relay_list(&relays)));
        let mut r = DirRequest::default();
        let resp = r.feed(b"GET /other HTTP/1.0\r\n\r\n", &relays).unwrap();
        assert!(resp.starts_with(b"HTTP/1.0 404"));
        let mut r = DirRequest::default();
        let resp = r.feed(&[b'x'; 9000], &relays).unwrap();
        assert!(resp.starts_with(b"HTTP/1.0 400"));
    }
}
