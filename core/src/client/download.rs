//! A download that survives broken circuits: one HTTP GET at a time on a
//! stream, the body handed out as it arrives, redirects followed, and
//! when a stream or circuit breaks the next request on a new circuit asks
//! only for the missing bytes (`Range: bytes=N-`, RFC 9110 §14.2). A
//! server that ignores the range answers 200 with the whole body: the
//! body is restarted. Sans IO: the caller opens streams on circuits of its
//! choosing and feeds the bytes in; `peer.fetch` and the simulation use it.

use crate::circuit::StreamTarget;
use crate::http::{get_request, HttpError, HttpUrl, ResponseHead, ResponseReader};

/// Redirects followed before giving up.
pub const MAX_REDIRECTS: usize = 5;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DownloadError {
    #[error("{0}")]
    Http(#[from] HttpError),
    #[error("more than {MAX_REDIRECTS} redirects")]
    TooManyRedirects,
    #[error("resuming at byte {from}: the server answered {status} {reason}")]
    ResumeRefused {
        from: u64,
        status: u16,
        reason: String,
    },
}

/// What fed bytes produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fed {
    /// Body bytes, in order, to keep.
    Body(Vec<u8>),
    /// Everything kept so far is void: the body starts again (a server
    /// that ignored the range, or a redirect).
    Restart,
}

/// How a stream ended for the download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEnd {
    /// The whole body arrived.
    Done,
    /// A redirect: request again (same circuit is fine).
    Redirected,
    /// The stream broke before the body was complete: resume elsewhere.
    Broken(String),
}

pub struct Download {
    url: HttpUrl,
    redirects: usize,
    /// The first final head (what the user sees).
    head: Option<ResponseHead>,
    total: Option<u64>,
    received: u64,
    /// The response being read and where it started.
    reader: Option<ResponseReader>,
    from: u64,
    head_checked: bool,
    /// A redirect seen on the current stream.
    redirect: Option<HttpUrl>,
    done: bool,
    /// Ask the circuit's last hop's directory (BEGIN_DIR) rather than
    /// the URL's host through an exit.
    directory: bool,
}

impl Download {
    pub fn new(url: HttpUrl) -> Self {
        Download {
            url,
            redirects: 0,
            head: None,
            total: None,
            received: 0,
            reader: None,
            from: 0,
            head_checked: false,
            redirect: None,
            done: false,
            directory: false,
        }
    }

    /// A download from the directory of the circuit's last hop (a tab's
    /// `/peersm/…` paths): streams are BEGIN_DIR.
    pub fn from_directory(url: HttpUrl) -> Self {
        Download {
            directory: true,
            ..Download::new(url)
        }
    }

    pub fn url(&self) -> &HttpUrl {
        &self.url
    }

    pub fn head(&self) -> Option<&ResponseHead> {
        self.head.as_ref()
    }

    pub fn received(&self) -> u64 {
        self.received
    }

    pub fn total(&self) -> Option<u64> {
        self.total
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The stream to open and the request to write on it, asking for the
    /// bytes not received yet.
    pub fn request(&mut self) -> (StreamTarget, Vec<u8>) {
        self.reader = Some(ResponseReader::new());
        self.from = self.received;
        self.head_checked = false;
        self.redirect = None;
        let target = if self.directory {
            StreamTarget::Directory
        } else {
            StreamTarget::Tcp {
                host: self.url.host.clone(),
                port: self.url.port,
            }
        };
        (target, get_request(&self.url, self.from))
    }

    /// Bytes from the stream. `Err` is fatal (a response we cannot use);
    /// after `Ok`, `is_done` says whether the body is complete, and a
    /// redirect shows as `StreamEnd::Redirected` from `stream_ended` (the
    /// caller may end the stream at once: the body does not matter).
    pub fn feed(&mut self, data: &[u8]) -> Result<Vec<Fed>, DownloadError> {
        let Some(reader) = self.reader.as_mut() else {
            return Ok(Vec::new());
        };
        let body = reader.feed(data)?;
        let mut out = Vec::new();
        if !self.head_checked {
            let Some(head) = reader.head().cloned() else {
                return Ok(out);
            };
            self.head_checked = true;
            if head.is_redirect() {
                let location = head.header("location").unwrap_or_default();
                self.redirect = Some(self.url.join(location)?);
                return Ok(out);
            }
            self.accept_head(&head, &mut out)?;
        }
        if self.redirect.is_some() {
            return Ok(out);
        }
        if !body.is_empty() {
            self.received += body.len() as u64;
            out.push(Fed::Body(body));
        }
        if self.reader.as_ref().is_some_and(|r| r.is_done()) {
            self.finish();
        }
        Ok(out)
    }

    /// Whether the current response says "redirect" (its body is moot).
    pub fn redirecting(&self) -> bool {
        self.redirect.is_some()
    }

    fn finish(&mut self) {
        self.done = true;
        self.reader = None;
        if self.total.is_none() {
            self.total = Some(self.received);
        }
    }

    /// Checks a final head against where the download stands.
    fn accept_head(
        &mut self,
        head: &ResponseHead,
        out: &mut Vec<Fed>,
    ) -> Result<(), DownloadError> {
        if self.from == 0 {
            self.total = head.total_size();
            self.head = Some(head.clone());
            return Ok(());
        }
        match head.status {
            206 if head.content_range().map(|(first, _)| first) == Some(self.from) => Ok(()),
            // The server ignored Range: start over with this full answer.
            200 => {
                out.push(Fed::Restart);
                self.received = 0;
                self.total = head.total_size();
                self.head = Some(head.clone());
                Ok(())
            }
            status => Err(DownloadError::ResumeRefused {
                from: self.from,
                status,
                reason: head.reason.clone(),
            }),
        }
    }

    /// The stream ended (END `reason`, or its circuit died). Returns what
    /// to do next; `Fed::Restart` comes with a followed redirect.
    pub fn stream_ended(&mut self, reason: u8) -> Result<(StreamEnd, Option<Fed>), DownloadError> {
        if self.done {
            return Ok((StreamEnd::Done, None));
        }
        if let Some(next) = self.redirect.take() {
            self.redirects += 1;
            if self.redirects > MAX_REDIRECTS {
                return Err(DownloadError::TooManyRedirects);
            }
            self.url = next;
            self.head = None;
            self.total = None;
            self.received = 0;
            self.reader = None;
            return Ok((StreamEnd::Redirected, Some(Fed::Restart)));
        }
        let complete = match self.reader.as_mut() {
            // Bodies framed by the end of the connection end here.
            Some(r) => r.finish().is_ok() && self.head.is_some(),
            None => false,
        };
        if complete {
            self.finish();
            return Ok((StreamEnd::Done, None));
        }
        self.reader = None;
        Ok((
            StreamEnd::Broken(format!(
                "stream ended ({}, END reason {reason}) before the response was complete",
                crate::cell::end_reason::describe(reason)
            )),
            None,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_of(fed: &[Fed]) -> Vec<u8> {
        fed.iter()
            .filter_map(|f| match f {
                Fed::Body(b) => Some(b.clone()),
                Fed::Restart => None,
            })
            .flatten()
            .collect()
    }

    #[test]
    fn a_broken_stream_resumes_with_a_range() {
        let mut d = Download::new(HttpUrl::parse("http://127.0.0.1:8/f").unwrap());
        let (_, req) = d.request();
        assert!(!String::from_utf8_lossy(&req).contains("Range"));
        let fed = d
            .feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123")
            .unwrap();
        assert_eq!(body_of(&fed), b"0123");
        let (end, _) = d.stream_ended(5).unwrap();
        assert!(matches!(end, StreamEnd::Broken(_)));
        let (_, req) = d.request();
        assert!(String::from_utf8_lossy(&req).contains("Range: bytes=4-"));
        let fed = d
            .feed(b"HTTP/1.1 206 Partial\r\nContent-Range: bytes 4-9/10\r\nContent-Length: 6\r\n\r\n456789")
            .unwrap();
        assert_eq!(body_of(&fed), b"456789");
        assert!(d.is_done());
        assert_eq!((d.received(), d.total()), (10, Some(10)));
        assert_eq!(
            d.head().unwrap().status,
            200,
            "the user sees the first head"
        );
    }

    #[test]
    fn a_server_ignoring_the_range_restarts_the_body_and_redirects_are_followed() {
        let mut d = Download::new(HttpUrl::parse("http://127.0.0.1:8/f").unwrap());
        d.request();
        d.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab")
            .unwrap();
        d.stream_ended(5).unwrap();
        d.request();
        let fed = d
            .feed(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nabcd")
            .unwrap();
        assert_eq!(fed.first(), Some(&Fed::Restart));
        assert_eq!(body_of(&fed), b"abcd");
        assert!(d.is_done());

        let mut d = Download::new(HttpUrl::parse("http://127.0.0.1:8/a").unwrap());
        d.request();
        d.feed(b"HTTP/1.1 302 Found\r\nLocation: /b\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
        assert!(d.redirecting());
        let (end, restart) = d.stream_ended(6).unwrap();
        assert_eq!((end, restart), (StreamEnd::Redirected, Some(Fed::Restart)));
        assert_eq!(d.url().path_and_query, "/b");
        for _ in 0..MAX_REDIRECTS {
            d.request();
            d.feed(b"HTTP/1.1 301 Moved\r\nLocation: /c\r\n\r\n")
                .unwrap();
            let _ = d.stream_ended(6);
        }
        d.request();
        d.feed(b"HTTP/1.1 301 Moved\r\nLocation: /c\r\n\r\n")
            .unwrap();
        assert_eq!(d.stream_ended(6), Err(DownloadError::TooManyRedirects));
    }

    #[test]
    fn a_wrong_resume_answer_is_fatal() {
        let mut d = Download::new(HttpUrl::parse("http://127.0.0.1:8/f").unwrap());
        d.request();
        d.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab")
            .unwrap();
        d.stream_ended(5).unwrap();
        d.request();
        let err = d.feed(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        assert!(matches!(
            err,
            Err(DownloadError::ResumeRefused {
                from: 2,
                status: 404,
                ..
            })
        ));
    }
}
