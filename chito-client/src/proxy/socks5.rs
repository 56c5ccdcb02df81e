//! The SOCKS5 handshake (RFC 1928) with username/password authentication
//! (RFC 1929), sans-IO: bytes out, bytes in.
//!
//! Every SOCKS5 message has a length known from its first bytes, so the
//! machine says how many bytes it needs ([`Socks5::need`]) and the driver
//! reads at most that many: nothing past the reply is ever read, and the
//! tunnel starts exactly where the reply ends.

use std::fmt;
use std::net::IpAddr;

use crate::error::ProxyError;
use crate::proxy::Credentials;

/// RFC 1928 §3: VER.
const VERSION: u8 = 5;
/// RFC 1928 §3: NO AUTHENTICATION REQUIRED.
const METHOD_NONE: u8 = 0x00;
/// RFC 1928 §3: USERNAME/PASSWORD (RFC 1929).
const METHOD_USER_PASS: u8 = 0x02;
/// RFC 1928 §3: NO ACCEPTABLE METHODS.
const METHOD_NONE_ACCEPTABLE: u8 = 0xff;
/// RFC 1929 §2: the sub-negotiation's VER.
const AUTH_VERSION: u8 = 1;
/// RFC 1928 §4: CMD CONNECT.
const CMD_CONNECT: u8 = 1;
/// RFC 1928 §5: ATYP.
const ATYP_IPV4: u8 = 1;
const ATYP_DOMAIN: u8 = 3;
const ATYP_IPV6: u8 = 4;

/// The longest message read: a reply with a 255-byte domain name
/// (RFC 1928 §6: VER REP RSV ATYP, 1 + 255, port).
const MAX_REPLY: usize = 4 + 1 + 255 + 2;

/// The server to reach through the proxy (RFC 1928 §5).
#[derive(Debug, Clone)]
pub(crate) enum Destination {
    /// A name the proxy resolves (ATYP X'03').
    Domain(String),
    /// An address resolved here (ATYP X'01' or X'04').
    Ip(IpAddr),
}

/// A SOCKS5 server's failure reply to CONNECT (RFC 1928 §6, REP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SocksReply {
    /// X'01' general SOCKS server failure.
    GeneralFailure,
    /// X'02' connection not allowed by ruleset.
    NotAllowed,
    /// X'03' Network unreachable.
    NetworkUnreachable,
    /// X'04' Host unreachable.
    HostUnreachable,
    /// X'05' Connection refused.
    ConnectionRefused,
    /// X'06' TTL expired.
    TtlExpired,
    /// X'07' Command not supported.
    CommandNotSupported,
    /// X'08' Address type not supported.
    AddressTypeNotSupported,
    /// X'09'–X'FF', unassigned.
    Unassigned(u8),
}

impl SocksReply {
    /// The reply for a REP byte other than X'00' (succeeded).
    fn from_code(code: u8) -> SocksReply {
        match code {
            1 => SocksReply::GeneralFailure,
            2 => SocksReply::NotAllowed,
            3 => SocksReply::NetworkUnreachable,
            4 => SocksReply::HostUnreachable,
            5 => SocksReply::ConnectionRefused,
            6 => SocksReply::TtlExpired,
            7 => SocksReply::CommandNotSupported,
            8 => SocksReply::AddressTypeNotSupported,
            other => SocksReply::Unassigned(other),
        }
    }

    /// The REP byte.
    pub fn code(self) -> u8 {
        match self {
            SocksReply::GeneralFailure => 1,
            SocksReply::NotAllowed => 2,
            SocksReply::NetworkUnreachable => 3,
            SocksReply::HostUnreachable => 4,
            SocksReply::ConnectionRefused => 5,
            SocksReply::TtlExpired => 6,
            SocksReply::CommandNotSupported => 7,
            SocksReply::AddressTypeNotSupported => 8,
            SocksReply::Unassigned(code) => code,
        }
    }
}

impl fmt::Display for SocksReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            SocksReply::GeneralFailure => "general SOCKS server failure",
            SocksReply::NotAllowed => "connection not allowed by ruleset",
            SocksReply::NetworkUnreachable => "network unreachable",
            SocksReply::HostUnreachable => "host unreachable",
            SocksReply::ConnectionRefused => "connection refused",
            SocksReply::TtlExpired => "TTL expired",
            SocksReply::CommandNotSupported => "command not supported",
            SocksReply::AddressTypeNotSupported => "address type not supported",
            SocksReply::Unassigned(_) => "unassigned reply code",
        };
        write!(f, "{text} (SOCKS5 reply {:#04x})", self.code())
    }
}

impl std::error::Error for SocksReply {}

/// Where the exchange is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for the method selection (VER METHOD).
    Method,
    /// Waiting for the RFC 1929 status (VER STATUS).
    Auth,
    /// Waiting for the CONNECT reply.
    Reply,
    /// The tunnel is open.
    Done,
}

/// One SOCKS5 CONNECT exchange.
#[derive(Debug)]
pub(crate) struct Socks5 {
    state: State,
    /// The current message's bytes so far.
    buf: [u8; MAX_REPLY],
    len: usize,
    credentials: Option<Credentials>,
    connect: Vec<u8>,
    /// Bytes to send once the current message is answered.
    output: Vec<u8>,
}

impl Socks5 {
    /// The machine and the greeting to send (RFC 1928 §3): no
    /// authentication, and username/password when there are credentials.
    ///
    /// # Errors
    /// [`ProxyError::Auth`] for a username or password over 255 bytes or
    /// empty (RFC 1929 §2: ULEN and PLEN are 1 to 255), a domain name over
    /// 255 bytes (RFC 1928 §5).
    pub(crate) fn new(
        destination: &Destination,
        port: u16,
        credentials: Option<&Credentials>,
    ) -> Result<(Self, Vec<u8>), ProxyError> {
        if let Some(c) = credentials {
            let fits = |s: &str| (1..=255).contains(&s.len());
            if !fits(&c.username) || !fits(&c.password) {
                return Err(ProxyError::Auth(
                    "SOCKS5 username and password must be 1 to 255 bytes (RFC 1929)",
                ));
            }
        }
        // RFC 1928 §4: VER CMD RSV ATYP DST.ADDR DST.PORT.
        let mut connect = vec![VERSION, CMD_CONNECT, 0];
        match destination {
            Destination::Ip(IpAddr::V4(ip)) => {
                connect.push(ATYP_IPV4);
                connect.extend_from_slice(&ip.octets());
            }
            Destination::Ip(IpAddr::V6(ip)) => {
                connect.push(ATYP_IPV6);
                connect.extend_from_slice(&ip.octets());
            }
            Destination::Domain(name) => {
                let len = u8::try_from(name.len())
                    .map_err(|_| ProxyError::Protocol("a domain name over 255 bytes"))?;
                connect.push(ATYP_DOMAIN);
                connect.push(len);
                connect.extend_from_slice(name.as_bytes());
            }
        }
        connect.extend_from_slice(&port.to_be_bytes());
        let greeting = if credentials.is_some() {
            vec![VERSION, 2, METHOD_NONE, METHOD_USER_PASS]
        } else {
            vec![VERSION, 1, METHOD_NONE]
        };
        let machine = Socks5 {
            state: State::Method,
            buf: [0; MAX_REPLY],
            len: 0,
            credentials: credentials.cloned(),
            connect,
            output: Vec::new(),
        };
        Ok((machine, greeting))
    }

    /// How many more bytes the current message needs (0 once done): the
    /// most the driver may read.
    pub(crate) fn need(&self) -> usize {
        let total = match self.state {
            State::Method | State::Auth => 2,
            State::Reply => match (self.buf.get(3), self.buf.get(4)) {
                _ if self.len < 4 => 4,
                (Some(&ATYP_IPV4), _) => 4 + 4 + 2,
                (Some(&ATYP_IPV6), _) => 4 + 16 + 2,
                // The name's length byte first, then the name and port.
                (Some(&ATYP_DOMAIN), _) if self.len < 5 => 5,
                (Some(&ATYP_DOMAIN), Some(&len)) => 5 + usize::from(len) + 2,
                // An unknown ATYP is refused in `feed` before this.
                _ => self.len,
            },
            State::Done => return 0,
        };
        total.saturating_sub(self.len)
    }

    /// Bytes to send now (empty if none).
    pub(crate) fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// What the connection's end means in the current state: before the
    /// RFC 1929 status, a server that drops us has refused the
    /// credentials (pproxy does so rather than send status X'01');
    /// elsewhere it just closed.
    pub(crate) fn closed(&self) -> ProxyError {
        match self.state {
            State::Auth => ProxyError::Auth(
                "the proxy closed the connection on our username/password (RFC 1929)",
            ),
            _ => ProxyError::Closed,
        }
    }

    /// Feeds bytes read from the proxy (at most [`need`](Self::need)).
    /// `Ok(None)`: more is needed (and there may be output to send).
    /// `Ok(Some(n))`: the tunnel is open; `n` bytes of `bytes` were the
    /// proxy's (always all of them, as the driver reads no further).
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Result<Option<usize>, ProxyError> {
        let mut used = 0;
        for &byte in bytes {
            if self.state == State::Done {
                break;
            }
            let slot = self
                .buf
                .get_mut(self.len)
                .ok_or(ProxyError::Protocol("reply longer than RFC 1928 allows"))?;
            *slot = byte;
            self.len += 1;
            used += 1;
            self.check()?;
        }
        Ok((self.state == State::Done).then_some(used))
    }

    /// Acts on the current message as soon as it can be judged (a failure
    /// reply code before its address has arrived, for instance).
    fn check(&mut self) -> Result<(), ProxyError> {
        let msg = self.buf.get(..self.len).unwrap_or_default();
        match self.state {
            State::Method => {
                let [version, method] = msg else {
                    return Ok(());
                };
                if *version != VERSION {
                    return Err(ProxyError::Protocol("not a SOCKS5 method selection"));
                }
                match (*method, &self.credentials) {
                    (METHOD_NONE, _) => self.send_connect(),
                    (METHOD_USER_PASS, Some(c)) => {
                        // RFC 1929 §2: VER ULEN UNAME PLEN PASSWD; the
                        // lengths were checked in `new`.
                        let mut auth = vec![AUTH_VERSION];
                        for field in [&c.username, &c.password] {
                            auth.push(u8::try_from(field.len()).unwrap_or(u8::MAX));
                            auth.extend_from_slice(field.as_bytes());
                        }
                        self.output = auth;
                        self.next(State::Auth);
                    }
                    (METHOD_USER_PASS, None) => {
                        return Err(ProxyError::Protocol(
                            "the proxy chose username/password, which was not offered",
                        ))
                    }
                    (METHOD_NONE_ACCEPTABLE, None) => return Err(ProxyError::Auth(
                        "the proxy requires authentication (no acceptable methods, RFC 1928 §3)",
                    )),
                    (METHOD_NONE_ACCEPTABLE, Some(_)) => {
                        return Err(ProxyError::Auth(
                            "the proxy accepts none of the offered methods (RFC 1928 §3)",
                        ))
                    }
                    _ => {
                        return Err(ProxyError::Protocol(
                            "the proxy chose a method that was not offered",
                        ))
                    }
                }
            }
            State::Auth => {
                let [_version, status] = msg else {
                    return Ok(());
                };
                // RFC 1929 §2: X'00' success; anything else is failure.
                // VER is not checked: servers send 1 (the RFC) or 5.
                if *status != 0 {
                    return Err(ProxyError::Auth(
                        "the proxy rejected our username/password (RFC 1929)",
                    ));
                }
                self.send_connect();
            }
            State::Reply => {
                if let [version, ..] = msg {
                    if *version != VERSION {
                        return Err(ProxyError::Protocol("not a SOCKS5 reply"));
                    }
                }
                // RFC 1928 §6: REP X'00' succeeded; the rest are failures,
                // judged before the bound address arrives.
                if let [_, rep, ..] = msg {
                    if *rep != 0 {
                        return Err(ProxyError::SocksRefused(SocksReply::from_code(*rep)));
                    }
                }
                if let [_, _, _, atyp, ..] = msg {
                    if ![ATYP_IPV4, ATYP_DOMAIN, ATYP_IPV6].contains(atyp) {
                        return Err(ProxyError::Protocol("unknown address type in the reply"));
                    }
                }
                if self.need() == 0 {
                    self.state = State::Done;
                }
            }
            State::Done => {}
        }
        Ok(())
    }

    fn send_connect(&mut self) {
        self.output = std::mem::take(&mut self.connect);
        self.next(State::Reply);
    }

    fn next(&mut self, state: State) {
        self.state = state;
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn creds() -> Credentials {
        Credentials {
            username: "user".into(),
            password: "pass".into(),
        }
    }

    fn domain() -> Destination {
        Destination::Domain("localhost".into())
    }

    /// Feeds `bytes` one at a time, checking that `need` never asks for
    /// less than is coming; returns the last result.
    fn feed_bytewise(m: &mut Socks5, bytes: &[u8]) -> Result<Option<usize>, ProxyError> {
        let mut last = Ok(None);
        for byte in bytes {
            assert!(m.need() >= 1, "need 0 with input left");
            last = Ok(m.feed(std::slice::from_ref(byte))?);
        }
        last
    }

    #[test]
    fn no_auth_domain_connect_byte_by_byte() {
        let (mut m, greeting) = Socks5::new(&domain(), 9001, None).unwrap();
        assert_eq!(greeting, [5, 1, 0]);
        assert_eq!(m.need(), 2);
        assert_eq!(feed_bytewise(&mut m, &[5, 0]).unwrap(), None);
        let mut expected = vec![5, 1, 0, 3, 9];
        expected.extend_from_slice(b"localhost");
        expected.extend_from_slice(&9001u16.to_be_bytes());
        assert_eq!(m.take_output(), expected);
        // A reply bound to a domain name: 4, then the length, then the rest.
        let mut reply = vec![5, 0, 0, 3, 4];
        reply.extend_from_slice(b"host");
        reply.extend_from_slice(&[0x23, 0x29]);
        assert_eq!(m.need(), 4);
        m.feed(&reply[..4]).unwrap();
        assert_eq!(m.need(), 1);
        m.feed(&reply[4..5]).unwrap();
        assert_eq!(m.need(), 6);
        assert_eq!(m.feed(&reply[5..]).unwrap(), Some(6));
        assert_eq!(m.need(), 0);
    }

    #[test]
    fn user_pass_then_ip_connects() {
        let v4 = Destination::Ip(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)));
        let (mut m, greeting) = Socks5::new(&v4, 80, Some(&creds())).unwrap();
        assert_eq!(greeting, [5, 2, 0, 2]);
        assert_eq!(m.feed(&[5, 2]).unwrap(), None);
        assert_eq!(m.take_output(), b"\x01\x04user\x04pass");
        assert_eq!(feed_bytewise(&mut m, &[1, 0]).unwrap(), None);
        assert_eq!(m.take_output(), [5, 1, 0, 1, 127, 0, 0, 1, 0, 80]);
        let reply = [5, 0, 0, 1, 10, 0, 0, 1, 0x1f, 0x90];
        assert_eq!(feed_bytewise(&mut m, &reply).unwrap(), Some(1));

        let v6 = Destination::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST));
        let (mut m, _) = Socks5::new(&v6, 443, None).unwrap();
        m.feed(&[5, 0]).unwrap();
        let out = m.take_output();
        assert_eq!(&out[..4], &[5, 1, 0, 4]);
        assert_eq!(out.len(), 4 + 16 + 2);
        let mut reply = vec![5, 0, 0, 4];
        reply.extend_from_slice(&[0; 18]);
        assert_eq!(m.need(), 4);
        m.feed(&reply[..4]).unwrap();
        assert_eq!(m.need(), 18);
        assert_eq!(m.feed(&reply[4..]).unwrap(), Some(18));
    }

    #[test]
    fn every_reply_code_has_its_name() {
        let names = [
            (1, SocksReply::GeneralFailure),
            (2, SocksReply::NotAllowed),
            (3, SocksReply::NetworkUnreachable),
            (4, SocksReply::HostUnreachable),
            (5, SocksReply::ConnectionRefused),
            (6, SocksReply::TtlExpired),
            (7, SocksReply::CommandNotSupported),
            (8, SocksReply::AddressTypeNotSupported),
            (9, SocksReply::Unassigned(9)),
            (0xff, SocksReply::Unassigned(0xff)),
        ];
        for (code, name) in names {
            let (mut m, _) = Socks5::new(&domain(), 1, None).unwrap();
            m.feed(&[5, 0]).unwrap();
            // Judged at the REP byte, before the bound address.
            match m.feed(&[5, code]) {
                Err(ProxyError::SocksRefused(reply)) => {
                    assert_eq!(reply, name);
                    assert_eq!(reply.code(), code);
                    assert!(reply.to_string().contains(&format!("{code:#04x}")));
                }
                other => panic!("{code}: {other:?}"),
            }
        }
    }

    #[test]
    fn auth_failures() {
        // No acceptable method, without and with credentials offered.
        for creds in [None, Some(creds())] {
            let (mut m, _) = Socks5::new(&domain(), 1, creds.as_ref()).unwrap();
            assert!(matches!(m.feed(&[5, 0xff]), Err(ProxyError::Auth(_))));
        }
        // RFC 1929 status X'01'.
        let (mut m, _) = Socks5::new(&domain(), 1, Some(&creds())).unwrap();
        m.feed(&[5, 2]).unwrap();
        assert!(matches!(m.feed(&[1, 1]), Err(ProxyError::Auth(_))));
        // Closed while the credentials are judged.
        assert!(matches!(m.closed(), ProxyError::Auth(_)));
        // Credentials RFC 1929 cannot carry.
        let long = Credentials {
            username: "u".repeat(256),
            password: "p".into(),
        };
        assert!(matches!(
            Socks5::new(&domain(), 1, Some(&long)),
            Err(ProxyError::Auth(_))
        ));
    }

    #[test]
    fn malformed_replies_are_protocol_errors() {
        let (mut m, _) = Socks5::new(&domain(), 1, None).unwrap();
        assert!(matches!(m.feed(&[4, 0]), Err(ProxyError::Protocol(_))));
        let (mut m, _) = Socks5::new(&domain(), 1, None).unwrap();
        // Username/password chosen though only "none" was offered.
        assert!(matches!(m.feed(&[5, 2]), Err(ProxyError::Protocol(_))));
        let (mut m, _) = Socks5::new(&domain(), 1, None).unwrap();
        assert!(matches!(m.feed(&[5, 0x80]), Err(ProxyError::Protocol(_))));
        let (mut m, _) = Socks5::new(&domain(), 1, None).unwrap();
        m.feed(&[5, 0]).unwrap();
        assert!(matches!(
            m.feed(&[5, 0, 0, 7]),
            Err(ProxyError::Protocol(_))
        ));
        assert!(matches!(m.closed(), ProxyError::Closed));
        // HTTP spoken where SOCKS was expected.
        let (mut m, _) = Socks5::new(&domain(), 1, None).unwrap();
        assert!(matches!(m.feed(b"HT"), Err(ProxyError::Protocol(_))));
    }
}
