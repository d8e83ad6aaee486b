//! The URLs `peer.fetch` accepts: `http[s]://host[:port][/path][?query]`.
//! The host goes to the exit as is (the exit resolves it, as with
//! `curl --socks5-hostname`). For https the tab speaks TLS itself inside
//! the stream (`super::tls`), so the exit sees only ciphertext.

use super::HttpError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    pub scheme: Scheme,
    pub host: String,
    pub port: u16,
    /// Starts with '/'; the fragment is dropped.
    pub path_and_query: String,
}

impl HttpUrl {
    pub fn parse(input: &str) -> Result<HttpUrl, HttpError> {
        let bad = |why: &str| HttpError::BadUrl(format!("{input:?}: {why}"));
        let input = input.trim();
        let (scheme, rest) = input.split_once("://").ok_or_else(|| bad("no scheme"))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            _ => return Err(bad("only http:// and https:// URLs can be fetched")),
        };
        let rest = rest.split('#').next().unwrap_or_default();
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        if authority.contains('@') {
            return Err(bad("credentials in URLs are not supported"));
        }
        // An IPv6 literal is bracketed; any other host has no colon, so
        // the port is what follows the bracket or the only colon.
        let (host, port_text) = match authority.strip_prefix('[') {
            Some(rest) => {
                let (host, after) = rest.split_once(']').ok_or_else(|| bad("unclosed ["))?;
                match after {
                    "" => (host, None),
                    p => (
                        host,
                        Some(p.strip_prefix(':').ok_or_else(|| bad("bad port"))?),
                    ),
                }
            }
            None => match authority.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            },
        };
        if authority.starts_with('[') != host.contains(':') {
            return Err(bad("only IPv6 addresses go in brackets, and they must"));
        }
        let port = match port_text {
            Some(p) => p.parse::<u16>().map_err(|_| bad("bad port"))?,
            None => scheme.default_port(),
        };
        if host.is_empty() || port == 0 {
            return Err(bad("no host"));
        }
        if !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._:".contains(c))
        {
            return Err(bad("bad host name"));
        }
        let path_and_query = match path {
            "" => "/".to_string(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_string(),
        };
        if path_and_query
            .chars()
            .any(|c| c.is_ascii_whitespace() || c.is_ascii_control())
        {
            return Err(bad("spaces or control characters in the path"));
        }
        Ok(HttpUrl {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
            path_and_query,
        })
    }

    /// The Host header value (RFC 9110 §7.2): the port only when not the
    /// scheme's default.
    pub fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == self.scheme.default_port() {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// Resolves a Location header against this URL (absolute URLs,
    /// scheme-relative ones, absolute paths, and relative paths).
    pub fn join(&self, location: &str) -> Result<HttpUrl, HttpError> {
        let scheme = self.scheme.as_str();
        if location.contains("://") {
            return HttpUrl::parse(location);
        }
        if let Some(rest) = location.strip_prefix("//") {
            return HttpUrl::parse(&format!("{scheme}://{rest}"));
        }
        let path = if location.starts_with('/') {
            location.to_string()
        } else {
            let base = self.path_and_query.split('?').next().unwrap_or("/");
            let dir = base.rsplit_once('/').map_or("", |(d, _)| d);
            format!("{dir}/{location}")
        };
        HttpUrl::parse(&format!("{scheme}://{}{path}", self.host_header()))
    }
}

impl std::fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}://{}{}",
            self.scheme.as_str(),
            self.host_header(),
            self.path_and_query
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let u = HttpUrl::parse("http://Example.org").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path_and_query.as_str()),
            ("example.org", 80, "/")
        );
        let u = HttpUrl::parse("http://127.0.0.1:8080/f.bin?x=1#frag").unwrap();
        assert_eq!((u.port, u.path_and_query.as_str()), (8080, "/f.bin?x=1"));
        assert_eq!(u.to_string(), "http://127.0.0.1:8080/f.bin?x=1");
        let u = HttpUrl::parse("http://[::1]:81/").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 81));
        assert_eq!(u.host_header(), "[::1]:81");
        let u = HttpUrl::parse("HTTPS://example.org/x").unwrap();
        assert_eq!((u.scheme, u.port), (Scheme::Https, 443));
        assert_eq!(
            (u.host_header(), u.to_string()),
            ("example.org".into(), "https://example.org/x".into())
        );
        let u = HttpUrl::parse("https://example.org:80/").unwrap();
        assert_eq!(u.host_header(), "example.org:80");
        for bad in [
            "ftp://x/",
            "example.org",
            "http://",
            "http://a:99999/",
            "http://u:p@host/",
            "http://host/a b",
            "http://ho st/",
            "http://QQ::80/pQQ",
            "http://a:b:80/",
            "http://[::1/",
            "http://[::1]x/",
            "http://[example.org]/",
        ] {
            assert!(HttpUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn redirects_resolve() {
        let base = HttpUrl::parse("http://h:8080/dir/file?q").unwrap();
        assert_eq!(
            base.join("/other").unwrap().to_string(),
            "http://h:8080/other"
        );
        assert_eq!(
            base.join("next").unwrap().to_string(),
            "http://h:8080/dir/next"
        );
        assert_eq!(base.join("http://x/y").unwrap().to_string(), "http://x/y");
        assert_eq!(base.join("//z/w").unwrap().to_string(), "http://z/w");
        assert_eq!(
            base.join("https://secure/").unwrap().to_string(),
            "https://secure/"
        );
        let secure = HttpUrl::parse("https://s/a/b").unwrap();
        assert_eq!(secure.join("//t/u").unwrap().to_string(), "https://t/u");
        assert_eq!(secure.join("c").unwrap().to_string(), "https://s/a/c");
    }
}
