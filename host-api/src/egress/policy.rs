//! The egress allowlist: which scheme, host and port a tool may reach.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::address::{AddressClass, classify};

/// URL scheme of an allowlist entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EgressScheme {
    /// Plain HTTP: only where an entry says `http://`.
    Http,
    /// HTTPS.
    Https,
}

impl EgressScheme {
    fn default_port(self) -> u16 {
        match self {
            Self::Http => 80,
            Self::Https => 443,
        }
    }
}

impl fmt::Display for EgressScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Http => "http",
            Self::Https => "https",
        })
    }
}

/// The host part of an allowlist entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// Exactly this name (lower case) or IP literal.
    Exact(String),
    /// `*.example.com`: any name ending in `.example.com` (not the apex).
    Suffix(String),
}

/// One allowlist entry, e.g. `https://api.example.com` or
/// `http://127.0.0.1:8080` with `private = true`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressRule {
    /// Scheme the request must use.
    pub scheme: EgressScheme,
    /// Host the request must name.
    pub host: HostPattern,
    /// Port the request must use (the scheme's default when the entry omits it).
    pub port: u16,
    /// Whether loopback, private, link-local and other non-public addresses
    /// are acceptable for this entry.
    pub allow_private: bool,
}

/// Why an allowlist entry could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid egress entry `{entry}`: {reason}")]
pub struct RuleParseError {
    entry: String,
    reason: &'static str,
}

impl EgressRule {
    /// Parses `scheme://host[:port]`, where host may start with `*.`.
    /// Paths, queries, user info and other schemes are refused.
    pub fn parse(entry: &str, allow_private: bool) -> Result<Self, RuleParseError> {
        let fail = |reason| RuleParseError {
            entry: entry.to_owned(),
            reason,
        };
        let (scheme, rest) = if let Some(rest) = entry.strip_prefix("https://") {
            (EgressScheme::Https, rest)
        } else if let Some(rest) = entry.strip_prefix("http://") {
            (EgressScheme::Http, rest)
        } else {
            return Err(fail("expected a URL starting with https:// or http://"));
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#', '@']) {
            return Err(fail(
                "expected only scheme, host and port (no path, query or user)",
            ));
        }
        let (host, port) = split_host_port(rest).ok_or_else(|| fail("bad host or port"))?;
        let port = port.unwrap_or(scheme.default_port());
        // A request's host is matched without its trailing dots, so the
        // entry's is too; a host no request can carry is refused here
        // rather than left never to match.
        let host = host.to_ascii_lowercase();
        let host = host.trim_end_matches('.').to_owned();
        if !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '*'))
        {
            return Err(fail(
                "a host holds only letters, digits, `-`, `_` and dots (an IPv6 address in brackets)",
            ));
        }
        if !host.contains(':') && host.split('.').any(str::is_empty) {
            return Err(fail(
                "a host name has an empty label (`..` or a leading dot)",
            ));
        }
        let host = if let Some(suffix) = host.strip_prefix("*.") {
            if suffix.is_empty() || suffix.contains('*') || !suffix.contains('.') {
                return Err(fail(
                    "a wildcard must be `*.` followed by a domain with a dot",
                ));
            }
            HostPattern::Suffix(suffix.to_owned())
        } else {
            if host.is_empty() || host.contains('*') {
                return Err(fail("a wildcard is only allowed as a leading `*.`"));
            }
            HostPattern::Exact(host)
        };
        Ok(Self {
            scheme,
            host,
            port,
            allow_private,
        })
    }

    /// Whether requests to `dest` fall under this entry.
    pub fn covers(&self, dest: &Destination) -> bool {
        self.matches(dest.scheme, &dest.host, dest.port)
    }

    fn matches(&self, scheme: EgressScheme, host: &str, port: u16) -> bool {
        if self.scheme != scheme || self.port != port {
            return false;
        }
        match &self.host {
            HostPattern::Exact(name) => name == host,
            HostPattern::Suffix(suffix) => host
                .strip_suffix(suffix.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
        }
    }
}

/// Splits `host[:port]`, accepting bracketed IPv6 literals.
fn split_host_port(s: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        host.parse::<std::net::Ipv6Addr>().ok()?;
        return match after {
            "" => Some((host, None)),
            _ => Some((host, Some(after.strip_prefix(':')?.parse().ok()?))),
        };
    }
    match s.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => Some((host, Some(port.parse().ok()?))),
        Some(_) => None,
        None => Some((s, None)),
    }
}

/// A tool's egress grant: default deny, plus the allowlist and budgets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressPolicy {
    /// Allowlist entries; empty means no network at all.
    pub rules: Vec<EgressRule>,
    /// Time allowed for name resolution plus the TCP and TLS handshakes.
    pub connect_timeout: Duration,
    /// Time allowed until the response head arrives, and between body chunks.
    pub read_timeout: Duration,
    /// Largest request body a tool may send.
    pub max_request_bytes: u64,
    /// Largest response body a tool may receive.
    pub max_response_bytes: u64,
    /// Requests one call may attempt, refused ones included.
    pub max_requests: u32,
}

/// Default `egress.max_requests`: requests one call may attempt.
pub const DEFAULT_MAX_REQUESTS: u32 = 100;

impl Default for EgressPolicy {
    fn default() -> Self {
        Self {
            rules: Vec::new(),
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(10),
            max_request_bytes: 1 << 20,
            max_response_bytes: 4 << 20,
            max_requests: DEFAULT_MAX_REQUESTS,
        }
    }
}

/// Why a request was refused before anything was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EgressDenial {
    /// The URL's scheme is neither http nor https.
    #[error("egress denied: scheme `{0}` is not allowed")]
    Scheme(String),
    /// No entry names this scheme, host and port.
    #[error("egress denied: {scheme}://{host}:{port} is not on the allowlist")]
    NotListed {
        /// Request scheme.
        scheme: EgressScheme,
        /// Request host.
        host: String,
        /// Request port.
        port: u16,
    },
    /// The destination is, or resolved to, a non-public address.
    #[error("egress denied: {host} resolves to {ip}, which is {}", class.describe())]
    ResolvedToBlocked {
        /// Requested host name.
        host: String,
        /// The offending address.
        ip: IpAddr,
        /// Its class.
        class: AddressClass,
    },
    /// The destination is a non-public IP literal.
    #[error("egress denied: {ip} is {}", class.describe())]
    BlockedAddress {
        /// The literal.
        ip: IpAddr,
        /// Its class.
        class: AddressClass,
    },
    /// Name resolution failed or returned nothing.
    #[error("egress denied: {0} could not be resolved")]
    Unresolved(String),
    /// The URL had no host.
    #[error("egress denied: the request has no host")]
    NoHost,
}

/// A request the allowlist accepts, with the rule that accepted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// Scheme of the request.
    pub scheme: EgressScheme,
    /// Host, lower case, without brackets.
    pub host: String,
    /// Port (explicit or the scheme default).
    pub port: u16,
    /// Whether the matching entry allows non-public addresses.
    pub allow_private: bool,
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "{}://[{}]:{}", self.scheme, self.host, self.port)
        } else {
            write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
        }
    }
}

impl Destination {
    /// The canonical authority, as the Host header carries it: the
    /// lower-case host (bracketed when IPv6) and the port unless it is the
    /// scheme's default.
    pub fn authority(&self) -> String {
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
}

impl EgressPolicy {
    /// Checks a request URI against the allowlist (no DNS yet).
    pub fn admit(&self, uri: &http::Uri) -> Result<Destination, EgressDenial> {
        let scheme = match uri.scheme_str() {
            Some("https") => EgressScheme::Https,
            Some("http") => EgressScheme::Http,
            other => return Err(EgressDenial::Scheme(other.unwrap_or("").to_owned())),
        };
        let host = uri.host().ok_or(EgressDenial::NoHost)?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host)
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let port = uri.port_u16().unwrap_or(scheme.default_port());
        let rule = self
            .rules
            .iter()
            .find(|rule| rule.matches(scheme, &host, port))
            .ok_or_else(|| EgressDenial::NotListed {
                scheme,
                host: host.clone(),
                port,
            })?;
        Ok(Destination {
            scheme,
            host,
            port,
            allow_private: rule.allow_private,
        })
    }

    /// Resolves an admitted destination and checks every address it maps
    /// to. The addresses returned are the only ones the caller may connect
    /// to, so a second lookup (DNS rebinding) cannot change the target.
    pub async fn resolve(&self, dest: &Destination) -> Result<Vec<SocketAddr>, EgressDenial> {
        if let Ok(ip) = dest.host.parse::<IpAddr>() {
            let class = classify(ip);
            if class != AddressClass::Public && !dest.allow_private {
                return Err(EgressDenial::BlockedAddress { ip, class });
            }
            return Ok(vec![SocketAddr::new(ip, dest.port)]);
        }
        let unresolved = || EgressDenial::Unresolved(dest.host.clone());
        let lookup = tokio::net::lookup_host((dest.host.as_str(), dest.port));
        let addrs: Vec<SocketAddr> = tokio::time::timeout(self.connect_timeout, lookup)
            .await
            .map_err(|_| unresolved())?
            .map_err(|_| unresolved())?
            .collect();
        if addrs.is_empty() {
            return Err(unresolved());
        }
        if !dest.allow_private {
            for addr in &addrs {
                let class = classify(addr.ip());
                if class != AddressClass::Public {
                    return Err(EgressDenial::ResolvedToBlocked {
                        host: dest.host.clone(),
                        ip: addr.ip(),
                        class,
                    });
                }
            }
        }
        Ok(addrs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(entries: &[&str]) -> EgressPolicy {
        EgressPolicy {
            rules: entries
                .iter()
                .map(|e| EgressRule::parse(e, false).unwrap())
                .collect(),
            ..EgressPolicy::default()
        }
    }

    fn admit(p: &EgressPolicy, url: &str) -> Result<Destination, EgressDenial> {
        p.admit(&url.parse().unwrap())
    }

    #[test]
    fn matches_scheme_host_and_port_exactly() {
        let p = policy(&["https://api.example.com"]);
        assert!(admit(&p, "https://api.example.com/v1?q=1").is_ok());
        assert!(admit(&p, "https://API.example.com./v1").is_ok());
        assert!(admit(&p, "http://api.example.com/").is_err());
        assert!(admit(&p, "https://api.example.com:8443/").is_err());
        assert!(admit(&p, "https://api.example.com.evil.net/").is_err());
        assert!(admit(&p, "https://evilapi.example.com/").is_err());
        assert!(admit(&p, "ftp://api.example.com/").is_err());
    }

    #[test]
    fn wildcard_matches_subdomains_only() {
        let p = policy(&["https://*.example.com"]);
        assert!(admit(&p, "https://a.example.com/").is_ok());
        assert!(admit(&p, "https://a.b.example.com/").is_ok());
        assert!(admit(&p, "https://example.com/").is_err());
        assert!(admit(&p, "https://badexample.com/").is_err());
    }

    #[test]
    fn parses_ports_and_ipv6_and_refuses_junk() {
        let r = EgressRule::parse("http://[::1]:8080", true).unwrap();
        assert_eq!(r.host, HostPattern::Exact("::1".into()));
        assert_eq!(r.port, 8080);
        assert_eq!(EgressRule::parse("https://x.io", false).unwrap().port, 443);
        // Found by the fuzzed parser: trailing dots are dropped, as they
        // are from a request's host, so such an entry matches.
        for dotted in ["https://x.io.", "https://x.io.."] {
            let rule = EgressRule::parse(dotted, false).unwrap();
            assert_eq!(rule.host, HostPattern::Exact("x.io".into()));
        }
        for bad in [
            "x.io",
            "https://x.io/path",
            "https://user@x.io",
            "https://*",
            "https://a.*.io",
            "https://x.io:99999",
            "gopher://x.io",
            "https://*.com",
            // Hosts no request can carry.
            "https://.example.com",
            "https://a b.example.com",
            "https://a%2eexample.com",
        ] {
            assert!(EgressRule::parse(bad, false).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn refuses_non_public_literals_unless_private_is_granted() {
        let p = policy(&["http://127.0.0.1:9", "http://[::ffff:127.0.0.1]:9"]);
        for url in ["http://127.0.0.1:9/", "http://[::ffff:127.0.0.1]:9/"] {
            let dest = admit(&p, url).unwrap();
            let err = p.resolve(&dest).await.unwrap_err();
            assert!(err.to_string().contains("loopback"), "{err}");
        }
        let mut open = p.clone();
        open.rules[0].allow_private = true;
        let dest = admit(&open, "http://127.0.0.1:9/").unwrap();
        assert_eq!(open.resolve(&dest).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn refuses_names_that_resolve_to_loopback() {
        let p = policy(&["http://localhost:9"]);
        let dest = admit(&p, "http://localhost:9/").unwrap();
        let err = p.resolve(&dest).await.unwrap_err();
        assert!(
            matches!(err, EgressDenial::ResolvedToBlocked { .. }),
            "{err}"
        );
    }
}
