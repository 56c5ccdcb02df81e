//! The proxy the environment asks for, curl's way: `https_proxy` for
//! `wss://`, `http_proxy` for `ws://`, then `all_proxy`, except for the
//! hosts `no_proxy` lists.
//!
//! Variables are read through a lookup function, so tests give their own
//! instead of mutating the process environment (which races with every
//! other thread reading it).

use std::net::IpAddr;

use super::{Proxy, ProxyUrlError};

/// The proxy variables, read once. Its `Debug` hides credentials.
#[derive(Clone, Default)]
pub(crate) struct ProxyEnv {
    /// For `ws://`.
    http: Option<String>,
    /// For `wss://`.
    https: Option<String>,
    /// For either, when the scheme's own is unset.
    all: Option<String>,
    no_proxy: Vec<NoProxyEntry>,
}

impl std::fmt::Debug for ProxyEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |v: &Option<String>| v.as_deref().map(hide_userinfo);
        f.debug_struct("ProxyEnv")
            .field("http", &show(&self.http))
            .field("https", &show(&self.https))
            .field("all", &show(&self.all))
            .field("no_proxy", &self.no_proxy)
            .finish()
    }
}

/// `scheme://<hidden>@host:port` for a URL with userinfo.
fn hide_userinfo(url: &str) -> String {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url.rfind('@') {
        Some(at) if at >= after_scheme => format!(
            "{}<hidden>{}",
            url.get(..after_scheme).unwrap_or(""),
            url.get(at..).unwrap_or("")
        ),
        _ => url.to_owned(),
    }
}

impl ProxyEnv {
    /// Reads the process environment.
    pub(crate) fn from_process() -> ProxyEnv {
        ProxyEnv::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the variables through `lookup`. Lowercase names win over
    /// uppercase, as in curl. The uppercase `HTTP_PROXY` is ignored when
    /// `REQUEST_METHOD` is set: under CGI it holds the request's `Proxy:`
    /// header, which the client chooses ("httpoxy", CVE-2016-5385); curl
    /// ignores it always.
    pub(crate) fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> ProxyEnv {
        let read = |lower: &str, upper: &str| {
            [lower, upper]
                .into_iter()
                .filter_map(&lookup)
                .map(|v| v.trim().to_owned())
                .find(|v| !v.is_empty())
        };
        let cgi = lookup("REQUEST_METHOD").is_some();
        let http = if cgi {
            read("http_proxy", "http_proxy")
        } else {
            read("http_proxy", "HTTP_PROXY")
        };
        ProxyEnv {
            http,
            https: read("https_proxy", "HTTPS_PROXY"),
            all: read("all_proxy", "ALL_PROXY"),
            no_proxy: read("no_proxy", "NO_PROXY")
                .map(|list| parse_no_proxy(&list))
                .unwrap_or_default(),
        }
    }

    /// The proxy for a connection to `host:port` (`host` as `WsUrl` has
    /// it: lowercase, IPv6 without brackets), or `None` to go direct.
    pub(crate) fn proxy_for(
        &self,
        secure: bool,
        host: &str,
        port: u16,
    ) -> Result<Option<Proxy>, ProxyUrlError> {
        let own = if secure { &self.https } else { &self.http };
        let Some(url) = own.as_ref().or(self.all.as_ref()) else {
            return Ok(None);
        };
        if self.no_proxy.iter().any(|entry| entry.matches(host, port)) {
            return Ok(None);
        }
        Proxy::from_url(url).map(Some)
    }
}

/// One `no_proxy` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum NoProxyEntry {
    /// `*`: no proxy for any host.
    All,
    /// A domain: the name itself and every name under it (`example.com`
    /// and `.example.com` both match `example.com` and `a.example.com`).
    Domain { name: String, port: Option<u16> },
    /// An IP address, or a CIDR block (`10.0.0.0/8`, `fd00::/8`).
    Net {
        addr: IpAddr,
        prefix: u8,
        port: Option<u16>,
    },
}

/// Parses a `no_proxy` list: comma- (or space-) separated entries;
/// malformed entries are skipped, as curl does.
fn parse_no_proxy(list: &str) -> Vec<NoProxyEntry> {
    list.split([',', ' ', '\t'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .filter_map(parse_entry)
        .collect()
}

fn parse_entry(entry: &str) -> Option<NoProxyEntry> {
    if entry == "*" {
        return Some(NoProxyEntry::All);
    }
    // An address or block, bracketed or not, with an optional port.
    let (body, port) = if let Some(rest) = entry.strip_prefix('[') {
        let (inner, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse().ok()?),
            None if after.is_empty() => None,
            None => return None,
        };
        (inner, port)
    } else if entry.matches(':').count() == 1 {
        let (body, p) = entry.split_once(':')?;
        (body, Some(p.parse().ok()?))
    } else {
        (entry, None)
    };
    let (addr, prefix) = match body.split_once('/') {
        Some((addr, bits)) => (addr, Some(bits)),
        None => (body, None),
    };
    if let Ok(ip) = addr.parse::<IpAddr>() {
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(bits) => bits.parse::<u8>().ok().filter(|&b| b <= max)?,
            None => max,
        };
        return Some(NoProxyEntry::Net {
            addr: ip,
            prefix,
            port,
        });
    }
    if prefix.is_some() {
        return None;
    }
    let name = body.trim_start_matches('.').trim_end_matches('.');
    if name.is_empty() {
        return None;
    }
    Some(NoProxyEntry::Domain {
        name: name.to_ascii_lowercase(),
        port,
    })
}

impl NoProxyEntry {
    fn matches(&self, host: &str, port: u16) -> bool {
        let port_ok = |p: &Option<u16>| p.is_none() || *p == Some(port);
        match self {
            NoProxyEntry::All => true,
            NoProxyEntry::Domain { name, port: p } => {
                let host = host.trim_end_matches('.');
                let under = host
                    .strip_suffix(name.as_str())
                    .is_some_and(|head| head.is_empty() || head.ends_with('.'));
                under && port_ok(p)
            }
            NoProxyEntry::Net {
                addr,
                prefix,
                port: p,
            } => {
                host.parse::<IpAddr>()
                    .is_ok_and(|ip| in_block(ip, *addr, *prefix))
                    && port_ok(p)
            }
        }
    }
}

/// Whether `ip` is in `block/prefix` (same family only).
fn in_block(ip: IpAddr, block: IpAddr, prefix: u8) -> bool {
    match (ip, block) {
        (IpAddr::V4(ip), IpAddr::V4(block)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(block) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(block)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(block) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> ProxyEnv {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ProxyEnv::from_lookup(|name| map.get(name).cloned())
    }

    fn addr_for(env: &ProxyEnv, secure: bool, host: &str, port: u16) -> Option<String> {
        env.proxy_for(secure, host, port)
            .unwrap()
            .map(|p| p.addr().to_owned())
    }

    #[test]
    fn scheme_selects_the_variable_then_all_proxy() {
        let e = env(&[
            ("HTTPS_PROXY", "http://secure:1"),
            ("http_proxy", "http://plain:2"),
            ("ALL_PROXY", "socks5h://all:3"),
        ]);
        assert_eq!(addr_for(&e, true, "h", 443).as_deref(), Some("secure:1"));
        assert_eq!(addr_for(&e, false, "h", 80).as_deref(), Some("plain:2"));
        let e = env(&[("all_proxy", "socks5h://all:3")]);
        assert_eq!(addr_for(&e, true, "h", 443).as_deref(), Some("all:3"));
        assert_eq!(addr_for(&e, false, "h", 80).as_deref(), Some("all:3"));
        assert_eq!(addr_for(&env(&[]), true, "h", 443), None);
        // Empty values are unset.
        let e = env(&[("https_proxy", ""), ("all_proxy", "http://all:3")]);
        assert_eq!(addr_for(&e, true, "h", 443).as_deref(), Some("all:3"));
    }

    #[test]
    fn lowercase_wins_and_cgi_ignores_uppercase_http_proxy() {
        let e = env(&[
            ("https_proxy", "http://low:1"),
            ("HTTPS_PROXY", "http://up:2"),
        ]);
        assert_eq!(addr_for(&e, true, "h", 443).as_deref(), Some("low:1"));
        let e = env(&[("HTTP_PROXY", "http://up:2")]);
        assert_eq!(addr_for(&e, false, "h", 80).as_deref(), Some("up:2"));
        let e = env(&[("HTTP_PROXY", "http://evil:2"), ("REQUEST_METHOD", "GET")]);
        assert_eq!(addr_for(&e, false, "h", 80), None);
    }

    #[test]
    fn no_proxy_matches_names_suffixes_ips_blocks_and_ports() {
        let e = env(&[
            ("all_proxy", "http://p:1"),
            (
                "NO_PROXY",
                "example.com, .internal,10.0.0.0/8 ,192.168.1.7,[::1],fd00::/8,api.test:8443",
            ),
        ]);
        let direct = |host: &str, port: u16| addr_for(&e, false, host, port).is_none();
        assert!(direct("example.com", 80));
        assert!(direct("www.example.com", 80));
        assert!(!direct("notexample.com", 80));
        assert!(direct("internal", 80));
        assert!(direct("db.internal", 80));
        assert!(!direct("internal.net", 80));
        assert!(direct("10.1.2.3", 80));
        assert!(!direct("11.1.2.3", 80));
        assert!(direct("192.168.1.7", 80));
        assert!(!direct("192.168.1.8", 80));
        assert!(direct("::1", 80));
        assert!(direct("fd12::5", 80));
        assert!(!direct("fe80::1", 80));
        assert!(direct("api.test", 8443));
        assert!(!direct("api.test", 443));
        assert!(!direct("localhost", 80));
        let star = env(&[("all_proxy", "http://p:1"), ("no_proxy", "*")]);
        assert_eq!(addr_for(&star, true, "anything", 443), None);
    }

    #[test]
    fn debug_hides_credentials() {
        let e = env(&[
            ("https_proxy", "http://me:hunter2@p:1"),
            ("all_proxy", "p:2"),
        ]);
        let text = format!("{e:?}");
        assert!(!text.contains("hunter2") && !text.contains("me:"), "{text}");
        assert!(
            text.contains("http://<hidden>@p:1") && text.contains("p:2"),
            "{text}"
        );
    }

    #[test]
    fn a_bad_proxy_url_is_an_error_not_a_direct_connection() {
        let e = env(&[("https_proxy", "https://p:443")]);
        assert_eq!(e.proxy_for(true, "h", 443), Err(ProxyUrlError::HttpsProxy));
        // Unless the host is exempt.
        let e = env(&[("https_proxy", "https://p:443"), ("no_proxy", "h")]);
        assert_eq!(e.proxy_for(true, "h", 443), Ok(None));
    }
}
