//! A download that survives broken circuits: one HTTP GET at a time on a
//! stream, the body handed out as it arrives, redirects followed, and
//! when a stream or circuit breaks the next request on a new circuit asks
//! only for the missing bytes (`Range: bytes=N-`, RFC 9110 §14.2). A
//! server that ignores the range answers 200 with the whole body: the
//! body is restarted. An https URL gets a TLS session of its own on each
//! stream (`http::tls`): the exit carries ciphertext only. Redirects follow
//! the browser's rules for a secure page: http may be upgraded to https,
//! https is never downgraded to http (the request and the body would cross
//! the exit in clear). Sans IO: the caller opens streams on circuits of its
//! choosing, writes what `request` and `take_outgoing` give, and feeds the
//! bytes in; `peer.fetch` and the simulation use it.

use crate::circuit::StreamTarget;
use crate::http::{
    get_request, HttpError, HttpUrl, ResponseHead, ResponseReader, Scheme, TlsSettings, TlsStream,
};

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
    #[error("refused a redirect from https to {0}: it would cross the exit in clear")]
    Downgrade(String),
    #[error("resuming at byte {from}: the resource changed (its size was {was}, now {now})")]
    Changed { from: u64, was: u64, now: u64 },
}

impl DownloadError {
    /// A TLS failure: a record that does not decrypt, a certificate
    /// refused. The exit can cause these, so another exit may not.
    pub fn is_tls(&self) -> bool {
        matches!(self, DownloadError::Http(HttpError::Tls(_)))
    }
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
    /// Trust anchors added to the web PKI roots for https.
    extra_anchors: Vec<Vec<u8>>,
    /// Built at the first https request, then shared by its sessions.
    tls: Option<TlsSettings>,
    /// The TLS session of the current stream (https).
    session: Option<TlsStream>,
    /// "TLS 1.3, …" of the last session that completed its handshake.
    tls_used: Option<String>,
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
            extra_anchors: Vec::new(),
            tls: None,
            session: None,
            tls_used: None,
        }
    }

    /// Adds trust anchors (DER certificates) for https, beyond the web PKI
    /// roots: a private CA, a test server's. They are trusted for the
    /// URL's host only: after a redirect to another host, the web PKI
    /// roots alone are.
    pub fn with_anchors(mut self, anchors: Vec<Vec<u8>>) -> Self {
        self.extra_anchors = anchors;
        self
    }

    /// Checks the anchors now, so that a bad one is refused before any
    /// circuit is built.
    pub fn check_anchors(&mut self) -> Result<(), DownloadError> {
        if !self.extra_anchors.is_empty() && self.tls.is_none() {
            self.tls = Some(TlsSettings::new(&self.extra_anchors)?);
        }
        Ok(())
    }

    /// The TLS version and cipher suite of the https session, once one
    /// completed its handshake.
    pub fn tls(&self) -> Option<&str> {
        self.tls_used.as_deref()
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

    /// The stream to open and the bytes to write on it first: the request
    /// for the bytes not received yet, in a new TLS session for https.
    /// `now_ms` (since the Unix epoch) is what certificates are checked
    /// against. Later bytes to send come from `take_outgoing`.
    pub fn request(&mut self, now_ms: u64) -> Result<(StreamTarget, Vec<u8>), DownloadError> {
        self.reader = Some(ResponseReader::new());
        self.from = self.received;
        self.head_checked = false;
        self.redirect = None;
        self.session = None;
        let target = if self.directory {
            StreamTarget::Directory
        } else {
            StreamTarget::Tcp {
                host: self.url.host.clone(),
                port: self.url.port,
            }
        };
        let request = get_request(&self.url, self.from, self.validator().as_deref());
        if self.url.scheme == Scheme::Http || self.directory {
            return Ok((target, request));
        }
        let settings = match &self.tls {
            Some(s) => s,
            None => self.tls.insert(TlsSettings::new(&self.extra_anchors)?),
        };
        settings.set_time(now_ms);
        let mut session = settings.connect(&self.url.host)?;
        session.write(&request)?;
        let hello = session.take_outgoing();
        self.session = Some(session);
        Ok((target, hello))
    }

    /// Bytes to write on the stream after a `feed` (TLS handshake
    /// messages, the request once the handshake allows it).
    pub fn take_outgoing(&mut self) -> Vec<u8> {
        self.session
            .as_mut()
            .map(TlsStream::take_outgoing)
            .unwrap_or_default()
    }

    /// Bytes from the stream. `Err` is fatal (a response we cannot use);
    /// after `Ok`, `is_done` says whether the body is complete, and a
    /// redirect shows as `StreamEnd::Redirected` from `stream_ended` (the
    /// caller may end the stream at once: the body does not matter).
    pub fn feed(&mut self, data: &[u8]) -> Result<Vec<Fed>, DownloadError> {
        let Some(reader) = self.reader.as_mut() else {
            return Ok(Vec::new());
        };
        let plain;
        let data = match self.session.as_mut() {
            Some(session) => {
                plain = session.feed(data)?;
                if self.tls_used.is_none() {
                    self.tls_used = session.describe();
                }
                &plain[..]
            }
            None => data,
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

    /// What `If-Range` carries when resuming (RFC 9110 §13.1.5): the first
    /// response's strong ETag, else its Last-Modified date. A server whose
    /// file changed then answers 200 with the new one, which restarts the
    /// body, instead of splicing two versions.
    fn validator(&self) -> Option<String> {
        let head = self.head.as_ref()?;
        head.header("etag")
            .filter(|tag| !tag.trim_start().starts_with("W/"))
            .or_else(|| head.header("last-modified"))
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty() && !v.bytes().any(|b| b.is_ascii_control()))
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
            206 if head.content_range().map(|(first, _)| first) == Some(self.from) => {
                // Without a validator the server cannot tell us the file
                // changed; a new size at least shows it.
                match (self.total, head.total_size()) {
                    (Some(was), Some(now)) if was != now => Err(DownloadError::Changed {
                        from: self.from,
                        was,
                        now,
                    }),
                    _ => Ok(()),
                }
            }
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
            if self.url.scheme == Scheme::Https && next.scheme == Scheme::Http {
                return Err(DownloadError::Downgrade(next.to_string()));
            }
            self.redirects += 1;
            if self.redirects > MAX_REDIRECTS {
                return Err(DownloadError::TooManyRedirects);
            }
            if next.host != self.url.host {
                self.extra_anchors.clear();
                self.tls = None;
            }
            self.url = next;
            self.head = None;
            self.total = None;
            self.received = 0;
            self.reader = None;
            return Ok((StreamEnd::Redirected, Some(Fed::Restart)));
        }
        // Over TLS, only a close_notify ends such a body: an END alone may
        // be the exit cutting it short.
        let closed_cleanly = self.session.as_ref().is_none_or(TlsStream::closed_cleanly);
        let complete = match self.reader.as_mut() {
            // Bodies framed by the end of the connection end here.
            Some(r) => r.finish().is_ok() && self.head.is_some() && closed_cleanly,
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
        let (_, req) = d.request(0).unwrap();
        assert!(!String::from_utf8_lossy(&req).contains("Range"));
        let fed = d
            .feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123")
            .unwrap();
        assert_eq!(body_of(&fed), b"0123");
        let (end, _) = d.stream_ended(5).unwrap();
        assert!(matches!(end, StreamEnd::Broken(_)));
        let (_, req) = d.request(0).unwrap();
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

    /// A resumed request names the version it continues (If-Range), and a
    /// 206 for a resource of another size is refused rather than spliced
    /// onto the first version's bytes.
    #[test]
    fn a_resume_is_tied_to_the_same_version_of_the_file() {
        let mut d = Download::new(HttpUrl::parse("http://127.0.0.1:8/f").unwrap());
        d.request(0).unwrap();
        d.feed(b"HTTP/1.1 200 OK\r\nETag: \"v7\"\r\nContent-Length: 10\r\n\r\n0123")
            .unwrap();
        d.stream_ended(5).unwrap();
        let (_, req) = d.request(0).unwrap();
        let req = String::from_utf8_lossy(&req).into_owned();
        assert!(
            req.contains("Range: bytes=4-\r\nIf-Range: \"v7\"\r\n"),
            "{req}"
        );
        let err = d
            .feed(b"HTTP/1.1 206 Partial\r\nContent-Range: bytes 4-11/12\r\nContent-Length: 8\r\n\r\n")
            .unwrap_err();
        assert_eq!(
            err,
            DownloadError::Changed {
                from: 4,
                was: 10,
                now: 12
            }
        );

        // A weak ETag is no validator; Last-Modified is used instead.
        let mut d = Download::new(HttpUrl::parse("http://127.0.0.1:8/f").unwrap());
        d.request(0).unwrap();
        d.feed(b"HTTP/1.1 200 OK\r\nETag: W/\"x\"\r\nLast-Modified: Tue, 01 Dec 2026 10:00:00 GMT\r\nContent-Length: 10\r\n\r\n01")
            .unwrap();
        d.stream_ended(5).unwrap();
        let (_, req) = d.request(0).unwrap();
        assert!(
            String::from_utf8_lossy(&req).contains("If-Range: Tue, 01 Dec 2026 10:00:00 GMT\r\n")
        );
    }

    #[test]
    fn a_server_ignoring_the_range_restarts_the_body_and_redirects_are_followed() {
        let mut d = Download::new(HttpUrl::parse("http://127.0.0.1:8/f").unwrap());
        d.request(0).unwrap();
        d.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab")
            .unwrap();
        d.stream_ended(5).unwrap();
        d.request(0).unwrap();
        let fed = d
            .feed(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nabcd")
            .unwrap();
        assert_eq!(fed.first(), Some(&Fed::Restart));
        assert_eq!(body_of(&fed), b"abcd");
        assert!(d.is_done());

        let mut d = Download::new(HttpUrl::parse("http://127.0.0.1:8/a").unwrap());
        d.request(0).unwrap();
        d.feed(b"HTTP/1.1 302 Found\r\nLocation: /b\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
        assert!(d.redirecting());
        let (end, restart) = d.stream_ended(6).unwrap();
        assert_eq!((end, restart), (StreamEnd::Redirected, Some(Fed::Restart)));
        assert_eq!(d.url().path_and_query, "/b");
        for _ in 0..MAX_REDIRECTS {
            d.request(0).unwrap();
            d.feed(b"HTTP/1.1 301 Moved\r\nLocation: /c\r\n\r\n")
                .unwrap();
            let _ = d.stream_ended(6);
        }
        d.request(0).unwrap();
        d.feed(b"HTTP/1.1 301 Moved\r\nLocation: /c\r\n\r\n")
            .unwrap();
        assert_eq!(d.stream_ended(6), Err(DownloadError::TooManyRedirects));
    }

    #[test]
    fn a_wrong_resume_answer_is_fatal() {
        let mut d = Download::new(HttpUrl::parse("http://127.0.0.1:8/f").unwrap());
        d.request(0).unwrap();
        d.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab")
            .unwrap();
        d.stream_ended(5).unwrap();
        d.request(0).unwrap();
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

    /// https against an in-memory TLS server with a private CA.
    mod https {
        use super::*;
        use crate::http::test_pki::{TestCa, TestServer};

        const NOW_MS: u64 = 1_790_000_000_000;

        /// Runs both ends until neither has anything to say; returns what
        /// the download made of it and every byte the client put on the
        /// stream (what an exit would see).
        fn pump(
            d: &mut Download,
            server: &mut TestServer,
            mut to_server: Vec<u8>,
            wire: &mut Vec<u8>,
        ) -> Result<Vec<Fed>, DownloadError> {
            let mut fed = Vec::new();
            loop {
                wire.extend_from_slice(&to_server);
                server.feed(&to_server).map_err(HttpError::Tls)?;
                let to_client = server.take_outgoing();
                if to_client.is_empty() {
                    return Ok(fed);
                }
                fed.extend(d.feed(&to_client)?);
                to_server = d.take_outgoing();
            }
        }

        /// A download of `url` from `server`: handshake and request, then
        /// `response` and perhaps close_notify.
        fn get(
            d: &mut Download,
            server: &mut TestServer,
            response: &[u8],
            close: bool,
            wire: &mut Vec<u8>,
        ) -> Result<Vec<Fed>, DownloadError> {
            let (target, hello) = d.request(NOW_MS)?;
            assert!(matches!(target, StreamTarget::Tcp { port: 443, .. }));
            let mut fed = pump(d, server, hello, wire)?;
            assert!(
                server.received.ends_with(b"\r\n\r\n"),
                "the server got the whole request"
            );
            server.send(response);
            if close {
                server.close_notify();
            }
            fed.extend(pump(d, server, Vec::new(), wire)?);
            Ok(fed)
        }

        #[test]
        fn a_get_over_tls_resumes_in_a_new_session_and_the_wire_holds_no_plaintext() {
            let ca = TestCa::new("Peersm test CA");
            let url = HttpUrl::parse("https://files.test/secret-name.bin").unwrap();
            let mut d = Download::new(url).with_anchors(vec![ca.der()]);
            let mut wire = Vec::new();
            let mut server = ca.server(&["files.test"]);
            let fed = get(
                &mut d,
                &mut server,
                b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nSECRET",
                false,
                &mut wire,
            )
            .unwrap();
            assert_eq!(body_of(&fed), b"SECRET");
            let request = String::from_utf8_lossy(&server.received).to_string();
            assert!(request.starts_with("GET /secret-name.bin HTTP/1.1\r\nHost: files.test\r\n"));
            assert!(d.tls().unwrap().starts_with("TLS 1.3"), "{:?}", d.tls());
            // The exit cuts the stream: resume from byte 6 in a new session.
            let (end, _) = d.stream_ended(5).unwrap();
            assert!(matches!(end, StreamEnd::Broken(_)));
            let mut server = ca.server(&["files.test"]);
            let fed = get(
                &mut d,
                &mut server,
                b"HTTP/1.1 206 Partial\r\nContent-Range: bytes 6-9/10\r\nContent-Length: 4\r\n\r\nBODY",
                true,
                &mut wire,
            )
            .unwrap();
            assert!(String::from_utf8_lossy(&server.received).contains("Range: bytes=6-\r\n"));
            assert_eq!(body_of(&fed), b"BODY");
            assert!(d.is_done());
            let seen = String::from_utf8_lossy(&wire);
            assert!(!seen.contains("secret-name") && !seen.contains("GET "));
            assert!(
                seen.contains("files.test"),
                "the SNI is the one name in clear"
            );
        }

        #[test]
        fn certificates_are_checked_with_clear_errors() {
            let ca = TestCa::new("Peersm test CA");
            let url = HttpUrl::parse("https://files.test/f").unwrap();
            let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx";

            // Not signed by anything we trust.
            let mut d = Download::new(url.clone());
            let err = get(
                &mut d,
                &mut ca.server(&["files.test"]),
                ok,
                false,
                &mut Vec::new(),
            );
            let err = err.unwrap_err().to_string();
            assert!(err.contains("not signed by a trusted authority"), "{err}");

            // Trusted CA, but the certificate names another host.
            let mut d = Download::new(url.clone()).with_anchors(vec![ca.der()]);
            let err = get(
                &mut d,
                &mut ca.server(&["other.test"]),
                ok,
                false,
                &mut Vec::new(),
            );
            let err = err.unwrap_err().to_string();
            assert!(err.contains("not valid for files.test"), "{err}");

            // Another CA's server, with ours trusted.
            let other = TestCa::new("Someone else");
            let mut d = Download::new(url).with_anchors(vec![ca.der()]);
            let err = get(
                &mut d,
                &mut other.server(&["files.test"]),
                ok,
                false,
                &mut Vec::new(),
            );
            assert!(err.is_err());

            // An IP address literal is checked against the IP SAN.
            let url = HttpUrl::parse("https://198.18.0.2/f").unwrap();
            let mut d = Download::new(url).with_anchors(vec![ca.der()]);
            let fed = get(
                &mut d,
                &mut ca.server(&["198.18.0.2"]),
                ok,
                false,
                &mut Vec::new(),
            );
            assert_eq!(body_of(&fed.unwrap()), b"x");
        }

        #[test]
        fn a_body_ended_by_the_connection_needs_close_notify() {
            let ca = TestCa::new("Peersm test CA");
            let url = HttpUrl::parse("https://files.test/f").unwrap();
            let unframed = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nabc";
            for (close, done) in [(false, false), (true, true)] {
                let mut d = Download::new(url.clone()).with_anchors(vec![ca.der()]);
                let mut server = ca.server(&["files.test"]);
                get(&mut d, &mut server, unframed, close, &mut Vec::new()).unwrap();
                let (end, _) = d.stream_ended(6).unwrap();
                assert_eq!(end == StreamEnd::Done, done, "close_notify: {close}");
            }
        }

        #[test]
        fn redirects_may_upgrade_to_https_but_never_downgrade() {
            let ca = TestCa::new("Peersm test CA");
            let url = HttpUrl::parse("https://files.test/a").unwrap();
            let mut d = Download::new(url).with_anchors(vec![ca.der()]);
            let moved =
                b"HTTP/1.1 301 Moved\r\nLocation: http://files.test/b\r\nContent-Length: 0\r\n\r\n";
            get(
                &mut d,
                &mut ca.server(&["files.test"]),
                moved,
                false,
                &mut Vec::new(),
            )
            .unwrap();
            assert!(d.redirecting());
            assert_eq!(
                d.stream_ended(6),
                Err(DownloadError::Downgrade("http://files.test/b".into()))
            );

            let mut d = Download::new(HttpUrl::parse("http://files.test/a").unwrap());
            d.request(NOW_MS).unwrap();
            d.feed(b"HTTP/1.1 301 Moved\r\nLocation: https://files.test/b\r\n\r\n")
                .unwrap();
            assert_eq!(d.stream_ended(6).unwrap().0, StreamEnd::Redirected);
            assert_eq!(d.url().to_string(), "https://files.test/b");
        }

        #[test]
        fn pem_anchors_are_read_and_bad_ones_refused() {
            let ca = TestCa::new("Peersm test CA");
            let two = format!("{}\n{}", ca.pem(), TestCa::new("Second").pem());
            let ders = crate::http::certificates_from_pem(&two).unwrap();
            assert_eq!(ders.len(), 2);
            assert_eq!(ders[0], ca.der());
            let err = crate::http::certificates_from_pem("hello").unwrap_err();
            assert!(
                err.to_string()
                    .contains("no \"-----BEGIN CERTIFICATE-----\""),
                "{err}"
            );
            let garbled = ca.pem().replace('A', "!");
            assert!(crate::http::certificates_from_pem(&garbled).is_err());
            let mut d = Download::new(HttpUrl::parse("https://h/").unwrap())
                .with_anchors(vec![b"not DER".to_vec()]);
            let err = d.check_anchors().unwrap_err().to_string();
            assert!(
                err.contains("ca: certificate 1 cannot be a trust anchor"),
                "{err}"
            );
        }

        /// Anchors given for a host are not trusted for another one a
        /// redirect leads to: there only the web PKI roots are.
        #[test]
        fn anchors_do_not_follow_a_redirect_to_another_host() {
            let ca = TestCa::new("Peersm test CA");
            let url = HttpUrl::parse("https://files.test/a").unwrap();
            let mut d = Download::new(url).with_anchors(vec![ca.der()]);
            d.check_anchors().unwrap();
            let moved =
                b"HTTP/1.1 302 Found\r\nLocation: https://bank.test/b\r\nContent-Length: 0\r\n\r\n";
            let mut wire = Vec::new();
            get(
                &mut d,
                &mut ca.server(&["files.test"]),
                moved,
                false,
                &mut wire,
            )
            .unwrap();
            assert_eq!(d.stream_ended(6).unwrap().0, StreamEnd::Redirected);
            let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx";
            let err = get(&mut d, &mut ca.server(&["bank.test"]), ok, false, &mut wire)
                .unwrap_err()
                .to_string();
            assert!(err.contains("not signed by a trusted authority"), "{err}");

            // The same host keeps them.
            let mut d = Download::new(HttpUrl::parse("https://files.test/a").unwrap())
                .with_anchors(vec![ca.der()]);
            let moved = b"HTTP/1.1 302 Found\r\nLocation: /b\r\nContent-Length: 0\r\n\r\n";
            get(
                &mut d,
                &mut ca.server(&["files.test"]),
                moved,
                false,
                &mut wire,
            )
            .unwrap();
            assert_eq!(d.stream_ended(6).unwrap().0, StreamEnd::Redirected);
            let fed = get(
                &mut d,
                &mut ca.server(&["files.test"]),
                ok,
                false,
                &mut wire,
            )
            .unwrap();
            assert_eq!(body_of(&fed), b"x");
        }
    }
}
