//! `ws://` and `wss://` URIs (RFC 6455 §3):
//!
//! ```text
//! ws-URI  = "ws:" "//" host [ ":" port ] path [ "?" query ]
//! wss-URI = "wss:" "//" host [ ":" port ] path [ "?" query ]
//! ```
//!
//! with `host`, `port`, `path` and `query` from RFC 3986.

use std::fmt;
use std::net::Ipv6Addr;

/// A parsed WebSocket URI: where to connect and what to ask for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WsUrl {
    /// `true` for `wss` (TLS), `false` for `ws`.
    pub secure: bool,
    /// The host, ASCII-lowercased (RFC 3986 §6.2.2.1); an IPv6 address
    /// without brackets, in its canonical text form.
    pub host: String,
    /// The port; 80 for `ws` and 443 for `wss` when not given (RFC 6455 §3).
    pub port: u16,
    /// Path and query (the /resource name/ of RFC 6455 §3); `/` if the URI
    /// has no path.
    pub target: String,
}

impl WsUrl {
    /// Parses a `ws://` or `wss://` URI.
    ///
    /// Strict where RFC 6455 §3 is, and where leniency would be
    /// surprising:
    /// * the scheme is `ws` or `wss`, in any case (RFC 3986 §3.1);
    /// * a fragment (`#`) is an error (RFC 6455 §3: "Fragment identifiers
    ///   are meaningless in the context of WebSocket URIs and MUST NOT be
    ///   used");
    /// * userinfo (`user:pass@`) is an error: the ws-URI grammar has `host`,
    ///   not `authority`, so it has no userinfo, and credentials in a URI
    ///   are deprecated (RFC 3986 §3.2.1) and a known spoofing vector;
    /// * the host is a non-empty registered name (RFC 3986 §3.2.2
    ///   `reg-name`: ASCII letters, digits, `-._~`, sub-delims and
    ///   `%XX`) or a bracketed IPv6 address without zone; non-ASCII
    ///   (internationalized) names must be given in punycode;
    /// * the port, if present, is 1–65535 (an empty port after `:` means the
    ///   default, RFC 3986 §3.2.3);
    /// * path and query hold only the characters RFC 3986 allows there
    ///   (`pchar`, `/`, `?`), with well-formed `%XX` escapes; nothing is
    ///   escaped on the caller's behalf.
    pub fn parse(s: &str) -> Result<WsUrl, UrlError> {
        let (scheme, rest) = s.split_once(':').ok_or(UrlError::UnsupportedScheme)?;
        let secure = if scheme.eq_ignore_ascii_case("ws") {
            false
        } else if scheme.eq_ignore_ascii_case("wss") {
            true
        } else {
            return Err(UrlError::UnsupportedScheme);
        };
        // RFC 6455 §3: no fragment, anywhere.
        if s.contains('#') {
            return Err(UrlError::FragmentNotAllowed);
        }
        let rest = rest.strip_prefix("//").ok_or(UrlError::MissingHost)?;
        let authority_len = rest.find(['/', '?']).unwrap_or(rest.len());
        let authority = rest.get(..authority_len).unwrap_or(rest);
        let path_and_query = rest.get(authority_len..).unwrap_or("");
        if authority.contains('@') {
            return Err(UrlError::UserinfoNotAllowed);
        }

        let (host, port) = split_host_port(authority)?;
        let default_port = if secure { 443 } else { 80 };
        let port = match port {
            None | Some("") => default_port,
            Some(digits) => parse_port(digits)?,
        };

        // Offset of the path within `s`, for error positions.
        let path_offset = s.len().saturating_sub(path_and_query.len());
        check_path_and_query(path_and_query, path_offset)?;
        let target = if path_and_query.starts_with('/') {
            path_and_query.to_owned()
        } else {
            // RFC 3986 §6.2.3: an empty path is "/"; also before a query.
            format!("/{path_and_query}")
        };

        Ok(WsUrl {
            secure,
            host,
            port,
            target,
        })
    }

    /// Whether [`port`](Self::port) is the scheme's default (80 or 443).
    pub fn is_default_port(&self) -> bool {
        self.port == if self.secure { 443 } else { 80 }
    }

    /// The `Host` header value (RFC 6455 §4.1 item 4, RFC 7230 §5.4): the
    /// host, bracketed if IPv6, with `:port` unless it is the default, e.g.
    /// `example.com` or `[::1]:9001`.
    pub fn host_header(&self) -> String {
        let host = self.bracketed_host();
        if self.is_default_port() {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// `host:port` (IPv6 bracketed, `[::1]:80`) as accepted by
    /// `std::net::ToSocketAddrs`.
    pub fn socket_addr_string(&self) -> String {
        format!("{}:{}", self.bracketed_host(), self.port)
    }

    fn bracketed_host(&self) -> String {
        // A reg-name cannot hold ':', so a ':' means an IPv6 address.
        if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        }
    }
}

impl fmt::Display for WsUrl {
    /// Writes the URI back, without a default port: `wss://[::1]:9001/a?b`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.secure { "wss" } else { "ws" };
        write!(f, "{scheme}://{}{}", self.host_header(), self.target)
    }
}

/// Splits `host[:port]` or `[v6][:port]`, checking the host (RFC 3986
/// §3.2.2). The host is returned lowercased; the port unchecked.
fn split_host_port(authority: &str) -> Result<(String, Option<&str>), UrlError> {
    if let Some(bracketed) = authority.strip_prefix('[') {
        // IP-literal = "[" IPv6address "]"; IPvFuture and zone IDs are not
        // supported.
        let (address, after) = bracketed.split_once(']').ok_or(UrlError::InvalidHost)?;
        let address: Ipv6Addr = address.parse().map_err(|_| UrlError::InvalidHost)?;
        let port = match after.strip_prefix(':') {
            Some(port) => Some(port),
            None if after.is_empty() => None,
            None => return Err(UrlError::InvalidHost),
        };
        return Ok((address.to_string(), port));
    }
    let (host, port) = match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    if host.is_empty() {
        return Err(UrlError::MissingHost);
    }
    // reg-name = *( unreserved / pct-encoded / sub-delims )
    if !is_valid_escaped(host, |b| is_unreserved(b) || is_sub_delim(b)) {
        return Err(UrlError::InvalidHost);
    }
    Ok((host.to_ascii_lowercase(), port))
}

/// RFC 3986 §3.2.3: `port = *DIGIT`; 0 cannot be connected to.
fn parse_port(digits: &str) -> Result<u16, UrlError> {
    // `u16::from_str` would also take a leading '+'.
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(UrlError::InvalidPort);
    }
    match digits.parse::<u16>() {
        Ok(port) if port != 0 => Ok(port),
        _ => Err(UrlError::InvalidPort),
    }
}

/// RFC 3986 §3.3 / §3.4: path and query are `pchar`, `/` and `?`;
/// `pchar = unreserved / pct-encoded / sub-delims / ":" / "@"`.
fn check_path_and_query(text: &str, offset: usize) -> Result<(), UrlError> {
    let allowed = |b: u8| is_unreserved(b) || is_sub_delim(b) || b":@/?".contains(&b);
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        let ok = if byte == b'%' {
            let escape_ok = bytes
                .get(i.saturating_add(1)..i.saturating_add(3))
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit));
            if escape_ok {
                i = i.saturating_add(2);
            }
            escape_ok
        } else {
            allowed(byte)
        };
        if !ok {
            return Err(UrlError::InvalidCharacter {
                position: offset.saturating_add(i),
            });
        }
        i = i.saturating_add(1);
    }
    Ok(())
}

/// Whether `text` is made of bytes accepted by `allowed` and well-formed
/// `%XX` escapes (RFC 3986 §2.1).
fn is_valid_escaped(text: &str, allowed: impl Fn(u8) -> bool) -> bool {
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        if byte == b'%' {
            let escape_ok = bytes
                .get(i.saturating_add(1)..i.saturating_add(3))
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit));
            if !escape_ok {
                return false;
            }
            i = i.saturating_add(3);
        } else if allowed(byte) {
            i = i.saturating_add(1);
        } else {
            return false;
        }
    }
    true
}

/// RFC 3986 §2.3: `unreserved = ALPHA / DIGIT / "-" / "." / "_" / "~"`.
fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"-._~".contains(&byte)
}

/// RFC 3986 §2.2: `sub-delims`.
fn is_sub_delim(byte: u8) -> bool {
    b"!$&'()*+,;=".contains(&byte)
}

/// Why a string is not a usable WebSocket URI.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UrlError {
    /// The scheme is not `ws` or `wss` (RFC 6455 §3).
    UnsupportedScheme,
    /// No `//host` after the scheme, or an empty host.
    MissingHost,
    /// The host is neither a registered name nor a bracketed IPv6 address.
    InvalidHost,
    /// The URI has `user@` or `user:password@` before the host.
    UserinfoNotAllowed,
    /// The port is not a number from 1 to 65535.
    InvalidPort,
    /// The URI has a fragment (RFC 6455 §3: fragments MUST NOT be used).
    FragmentNotAllowed,
    /// A character that must be percent-encoded, or a malformed `%XX`, in the
    /// path or query.
    InvalidCharacter {
        /// Byte offset in the URI.
        position: usize,
    },
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlError::UnsupportedScheme => f.write_str("URI scheme must be ws or wss"),
            UrlError::MissingHost => f.write_str("URI has no host"),
            UrlError::InvalidHost => f.write_str("URI host is invalid"),
            UrlError::UserinfoNotAllowed => f.write_str("URI must not contain user information"),
            UrlError::InvalidPort => f.write_str("URI port must be a number from 1 to 65535"),
            UrlError::FragmentNotAllowed => f.write_str("WebSocket URI must not have a fragment"),
            UrlError::InvalidCharacter { position } => {
                write!(
                    f,
                    "invalid character in URI path or query at byte {position}"
                )
            }
        }
    }
}

impl std::error::Error for UrlError {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn url(s: &str) -> WsUrl {
        WsUrl::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn plain_ws() {
        let u = url("ws://example.com/chat?room=1&x=%20");
        assert_eq!(
            u,
            WsUrl {
                secure: false,
                host: "example.com".into(),
                port: 80,
                target: "/chat?room=1&x=%20".into()
            }
        );
        assert_eq!(u.host_header(), "example.com");
        assert_eq!(u.socket_addr_string(), "example.com:80");
        assert_eq!(u.to_string(), "ws://example.com/chat?room=1&x=%20");
    }

    #[test]
    fn wss_defaults_to_443() {
        let u = url("wss://example.com");
        assert!(u.secure);
        assert_eq!((u.port, u.target.as_str()), (443, "/"));
        assert!(u.is_default_port());
        assert_eq!(url("wss://example.com:443/").host_header(), "example.com");
        assert_eq!(url("wss://example.com:80/").host_header(), "example.com:80");
    }

    #[test]
    fn scheme_and_host_are_case_insensitive() {
        let u = url("WSS://Example.COM:8443/Path");
        assert!(u.secure);
        assert_eq!(u.host, "example.com");
        assert_eq!(u.target, "/Path");
        assert_eq!(u.host_header(), "example.com:8443");
    }

    #[test]
    fn ipv6_literal() {
        let u = url("ws://[::1]:9001/x");
        assert_eq!((u.host.as_str(), u.port), ("::1", 9001));
        assert_eq!(u.host_header(), "[::1]:9001");
        assert_eq!(u.socket_addr_string(), "[::1]:9001");
        let canonical = url("ws://[0:0:0:0:0:0:0:1]");
        assert_eq!(canonical.host, "::1");
        assert_eq!(canonical.host_header(), "[::1]");
        assert_eq!(canonical.socket_addr_string(), "[::1]:80");
    }

    #[test]
    fn ipv4_and_port_edges() {
        assert_eq!(url("ws://127.0.0.1:65535").port, 65535);
        assert_eq!(url("ws://h:").port, 80);
        assert_eq!(url("ws://h:0080").port, 80);
    }

    #[test]
    fn query_without_path() {
        assert_eq!(url("ws://h?a=b").target, "/?a=b");
    }

    #[test]
    fn other_schemes_are_refused() {
        for s in ["http://h/", "wsx://h", "ws", "", "://h", "ws//h"] {
            assert_eq!(WsUrl::parse(s), Err(UrlError::UnsupportedScheme), "{s}");
        }
    }

    #[test]
    fn fragments_are_refused() {
        assert_eq!(
            WsUrl::parse("ws://h/a#b"),
            Err(UrlError::FragmentNotAllowed)
        );
        assert_eq!(WsUrl::parse("ws://h#"), Err(UrlError::FragmentNotAllowed));
        assert_eq!(url("ws://h/a%23b").target, "/a%23b");
    }

    #[test]
    fn userinfo_is_refused() {
        for s in ["ws://user@h/", "ws://user:pw@h:80/", "ws://@h"] {
            assert_eq!(WsUrl::parse(s), Err(UrlError::UserinfoNotAllowed), "{s}");
        }
    }

    #[test]
    fn empty_or_missing_host_is_refused() {
        for s in ["ws://", "ws:///path", "ws://:80/", "ws:h", "ws:/h"] {
            assert_eq!(WsUrl::parse(s), Err(UrlError::MissingHost), "{s}");
        }
    }

    #[test]
    fn bad_hosts_are_refused() {
        for s in [
            "ws://exa mple.com/",
            "ws://exämple.com/",
            "ws://h%2/",
            "ws://[::1/",
            "ws://[::1]x/",
            "ws://[nothex]/",
            "ws://[fe80::1%25eth0]/",
            "ws://[]/",
            "ws://a<b/",
        ] {
            assert_eq!(WsUrl::parse(s), Err(UrlError::InvalidHost), "{s}");
        }
    }

    #[test]
    fn bad_ports_are_refused() {
        for s in [
            "ws://h:0",
            "ws://h:65536",
            "ws://h:+80",
            "ws://h:8a",
            "ws://h:1:2",
            "ws://[::1]:x",
        ] {
            assert_eq!(WsUrl::parse(s), Err(UrlError::InvalidPort), "{s}");
        }
    }

    #[test]
    fn bad_path_characters_are_refused() {
        assert_eq!(
            WsUrl::parse("ws://h/a b"),
            Err(UrlError::InvalidCharacter { position: 8 })
        );
        assert_eq!(
            WsUrl::parse("ws://h/%zz"),
            Err(UrlError::InvalidCharacter { position: 7 })
        );
        assert_eq!(
            WsUrl::parse("ws://h/%4"),
            Err(UrlError::InvalidCharacter { position: 7 })
        );
        for s in [
            "ws://h/é",
            "ws://h/a\r\nX: y",
            "ws://h/{}",
            "ws://h/?a\"b",
            "ws://h/\\",
        ] {
            assert!(
                matches!(WsUrl::parse(s), Err(UrlError::InvalidCharacter { .. })),
                "{s}"
            );
        }
    }

    #[test]
    fn display_messages() {
        assert_eq!(
            UrlError::InvalidCharacter { position: 3 }.to_string(),
            "invalid character in URI path or query at byte 3"
        );
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,40}") {
            let _ = WsUrl::parse(&s);
        }

        #[test]
        fn parse_never_panics_near_valid(s in "(ws|wss|WS)://[a-z0-9:\\[\\]@%#?/.é]{0,20}") {
            if let Ok(u) = WsUrl::parse(&s) {
                // What parses, prints back to something that parses the same.
                prop_assert_eq!(WsUrl::parse(&u.to_string()), Ok(u.clone()));
            }
        }
    }
}
