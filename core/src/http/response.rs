//! Reading an HTTP/1.1 response as bytes arrive (RFC 9112 §4–7): the head
//! through `httparse`, then the body by Content-Length, by chunks, or
//! until the connection closes. Body bytes are handed out as they are
//! decoded, so a large body never has to sit in memory whole.

use super::HttpError;

/// Largest response head we accept.
pub const MAX_HEAD_LEN: usize = 64 * 1024;
const MAX_HEADERS: usize = 96;
/// Longest chunk-size or trailer line.
const MAX_LINE: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    pub reason: String,
    /// In order; names as sent.
    pub headers: Vec<(String, String)>,
}

impl ResponseHead {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn content_length(&self) -> Option<u64> {
        self.header("content-length")?.trim().parse().ok()
    }

    pub fn is_redirect(&self) -> bool {
        matches!(self.status, 301 | 302 | 303 | 307 | 308) && self.header("location").is_some()
    }

    /// For a 206 answer: the first byte offset and the total size, from
    /// `Content-Range: bytes FIRST-LAST/TOTAL` (RFC 9110 §14.4).
    pub fn content_range(&self) -> Option<(u64, Option<u64>)> {
        let v = self.header("content-range")?.trim();
        let rest = v.strip_prefix("bytes ")?;
        let (range, total) = rest.split_once('/')?;
        let (first, _) = range.split_once('-')?;
        Some((first.trim().parse().ok()?, total.trim().parse().ok()))
    }

    /// The total size of the resource when the head tells it.
    pub fn total_size(&self) -> Option<u64> {
        match self.status {
            206 => self.content_range().and_then(|(_, total)| total),
            _ => self.content_length(),
        }
    }

    fn framing(&self) -> BodyFraming {
        if self.status == 204 || self.status == 304 {
            return BodyFraming::Length(0);
        }
        let chunked = self
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        if chunked {
            BodyFraming::Chunked
        } else if let Some(n) = self.content_length() {
            BodyFraming::Length(n)
        } else {
            BodyFraming::UntilClose
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    Length(u64),
    Chunked,
    UntilClose,
}

#[derive(Debug)]
enum State {
    Head,
    Length { left: u64 },
    ChunkSize,
    ChunkData { left: u64 },
    ChunkEnd,
    Trailers,
    UntilClose,
    Done,
}

#[derive(Debug)]
pub struct ResponseReader {
    state: State,
    /// Bytes not consumed yet (head, or a partial line in chunked mode).
    pending: Vec<u8>,
    head: Option<ResponseHead>,
    body_bytes: u64,
}

impl Default for ResponseReader {
    fn default() -> Self {
        Self::new()
    }
}

impl ResponseReader {
    pub fn new() -> Self {
        ResponseReader {
            state: State::Head,
            pending: Vec::new(),
            head: None,
            body_bytes: 0,
        }
    }

    pub fn head(&self) -> Option<&ResponseHead> {
        self.head.as_ref()
    }

    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Body bytes decoded so far.
    pub fn body_bytes(&self) -> u64 {
        self.body_bytes
    }

    /// Takes bytes from the stream; returns the body bytes they completed.
    pub fn feed(&mut self, data: &[u8]) -> Result<Vec<u8>, HttpError> {
        self.pending.extend_from_slice(data);
        let mut body = Vec::new();
        loop {
            let progressed = self.step(&mut body)?;
            if !progressed {
                break;
            }
        }
        self.body_bytes += body.len() as u64;
        Ok(body)
    }

    /// The stream ended: fine when the body is complete or runs until close.
    pub fn finish(&mut self) -> Result<(), HttpError> {
        match self.state {
            State::Done => Ok(()),
            State::UntilClose => {
                self.state = State::Done;
                Ok(())
            }
            _ => Err(HttpError::Truncated),
        }
    }

    /// One step of decoding; false when more input is needed.
    fn step(&mut self, body: &mut Vec<u8>) -> Result<bool, HttpError> {
        match self.state {
            State::Head => self.parse_head(),
            State::Length { left } => {
                let n = (self.pending.len() as u64).min(left) as usize;
                if n == 0 && left > 0 {
                    return Ok(false);
                }
                body.extend(self.pending.drain(..n));
                let left = left - n as u64;
                self.state = if left == 0 {
                    State::Done
                } else {
                    State::Length { left }
                };
                Ok(left == 0 && !self.pending.is_empty())
            }
            State::UntilClose => {
                body.append(&mut self.pending);
                Ok(false)
            }
            State::ChunkSize => {
                let Some(line) = self.take_line()? else {
                    return Ok(false);
                };
                let size_text = line.split(';').next().unwrap_or_default().trim();
                let size = u64::from_str_radix(size_text, 16).map_err(|_| HttpError::BadChunk)?;
                self.state = if size == 0 {
                    State::Trailers
                } else {
                    State::ChunkData { left: size }
                };
                Ok(true)
            }
            State::ChunkData { left } => {
                let n = (self.pending.len() as u64).min(left) as usize;
                if n == 0 {
                    return Ok(false);
                }
                body.extend(self.pending.drain(..n));
                let left = left - n as u64;
                self.state = if left == 0 {
                    State::ChunkEnd
                } else {
                    State::ChunkData { left }
                };
                Ok(true)
            }
            State::ChunkEnd => {
                let Some(line) = self.take_line()? else {
                    return Ok(false);
                };
                if !line.is_empty() {
                    return Err(HttpError::BadChunk);
                }
                self.state = State::ChunkSize;
                Ok(true)
            }
            State::Trailers => {
                let Some(line) = self.take_line()? else {
                    return Ok(false);
                };
                if line.is_empty() {
                    self.state = State::Done;
                }
                Ok(true)
            }
            State::Done => {
                // Bytes after the end of the response are not ours.
                self.pending.clear();
                Ok(false)
            }
        }
    }

    fn take_line(&mut self) -> Result<Option<String>, HttpError> {
        let Some(end) = self.pending.windows(2).position(|w| w == b"\r\n") else {
            if self.pending.len() > MAX_LINE {
                return Err(HttpError::BadChunk);
            }
            return Ok(None);
        };
        let line: Vec<u8> = self.pending.drain(..end + 2).take(end).collect();
        String::from_utf8(line)
            .map(Some)
            .map_err(|_| HttpError::BadChunk)
    }

    fn parse_head(&mut self) -> Result<bool, HttpError> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        let used = match resp.parse(&self.pending) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => {
                if self.pending.len() > MAX_HEAD_LEN {
                    return Err(HttpError::HeadTooLarge(MAX_HEAD_LEN));
                }
                return Ok(false);
            }
            Err(e) => return Err(HttpError::Malformed(e.to_string())),
        };
        let status = resp.code.unwrap_or(0);
        let head = ResponseHead {
            status,
            reason: resp.reason.unwrap_or_default().to_string(),
            headers: resp
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_string(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect(),
        };
        self.pending.drain(..used);
        // Interim answers (100 Continue, 103 Early Hints) precede the real one.
        if (100..200).contains(&status) {
            return Ok(true);
        }
        self.state = match head.framing() {
            BodyFraming::Length(0) => State::Done,
            BodyFraming::Length(n) => State::Length { left: n },
            BodyFraming::Chunked => State::ChunkSize,
            BodyFraming::UntilClose => State::UntilClose,
        };
        self.head = Some(head);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `step` bytes; returns head and body.
    fn read(input: &[u8], step: usize) -> Result<(ResponseHead, Vec<u8>, bool), HttpError> {
        let mut r = ResponseReader::new();
        let mut body = Vec::new();
        for piece in input.chunks(step.max(1)) {
            body.extend(r.feed(piece)?);
        }
        let done = r.is_done();
        Ok((r.head().cloned().ok_or(HttpError::Truncated)?, body, done))
    }

    #[test]
    fn content_length_in_any_pieces() {
        let input = b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\nX: y\r\n\r\nhello worldEXTRA";
        for step in [1, 2, 7, 100] {
            let (head, body, done) = read(input, step).unwrap();
            assert_eq!(head.status, 200);
            assert_eq!(head.header("x"), Some("y"));
            assert_eq!(body, b"hello world");
            assert!(done);
        }
    }

    #[test]
    fn chunked_with_extensions_and_trailers() {
        let input = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: t\r\n\r\n";
        for step in [1, 3, 1000] {
            let (_, body, done) = read(input, step).unwrap();
            assert_eq!(body, b"hello world");
            assert!(done);
        }
        assert_eq!(
            read(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                100
            )
            .unwrap_err(),
            HttpError::BadChunk
        );
        assert_eq!(
            read(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabX\r\n",
                100
            )
            .unwrap_err(),
            HttpError::BadChunk
        );
    }

    #[test]
    fn until_close_and_truncation() {
        let mut r = ResponseReader::new();
        assert_eq!(r.feed(b"HTTP/1.0 200 OK\r\n\r\nabc").unwrap(), b"abc");
        assert_eq!(r.feed(b"def").unwrap(), b"def");
        assert!(r.finish().is_ok());
        let mut r = ResponseReader::new();
        r.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
            .unwrap();
        assert_eq!(r.finish(), Err(HttpError::Truncated));
        assert_eq!(r.body_bytes(), 3);
    }

    #[test]
    fn interim_redirect_and_range_heads() {
        let (head, body, _) = read(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
            5,
        )
        .unwrap();
        assert_eq!((head.status, body.len()), (204, 0));
        let (head, ..) = read(
            b"HTTP/1.1 302 Found\r\nLocation: /x\r\nContent-Length: 0\r\n\r\n",
            9,
        )
        .unwrap();
        assert!(head.is_redirect());
        let (head, ..) = read(
            b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 100-199/5000\r\nContent-Length: 100\r\n\r\n",
            50,
        )
        .unwrap();
        assert_eq!(head.content_range(), Some((100, Some(5000))));
        assert_eq!(head.total_size(), Some(5000));
    }

    #[test]
    fn garbage_and_huge_heads_are_errors() {
        assert!(matches!(
            read(b"NOT HTTP\r\n\r\n", 100),
            Err(HttpError::Malformed(_))
        ));
        let mut r = ResponseReader::new();
        let mut huge = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
        huge.extend(vec![b'a'; MAX_HEAD_LEN + 10]);
        assert!(matches!(r.feed(&huge), Err(HttpError::HeadTooLarge(_))));
    }
}
