//! `grants.http`: the origins a plugin may send HTTP requests to.
//!
//! An origin is `scheme://host[:port]`, as Spin writes its allowed outbound
//! hosts: the scheme (`http` or `https`) is required, the port defaults to
//! the scheme's (`:*` allows any), and the host is a name, an IP literal,
//! `*.example.com` (any subdomain, not `example.com` itself) or `*` (any
//! host). A name that resolves to a loopback, private or link-local address
//! is refused unless a grant names that host exactly (no wildcard): the
//! host checks the addresses it resolved, and connects to those.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One granted origin, such as `https://api.example.com` or
/// `http://127.0.0.1:4010`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HttpOrigin {
    scheme: Scheme,
    host: HostPattern,
    port: PortPattern,
    text: String,
}

/// `http` or `https`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// Plain HTTP.
    Http,
    /// HTTP over TLS.
    Https,
}

impl Scheme {
    /// The port a URL of this scheme means when it names none.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }

    /// `http` or `https`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    /// Parses `http` or `https`, in any case.
    pub fn parse(text: &str) -> Option<Scheme> {
        match text.to_ascii_lowercase().as_str() {
            "http" => Some(Scheme::Http),
            "https" => Some(Scheme::Https),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum HostPattern {
    /// Every host.
    Any,
    /// Any subdomain of this suffix (stored with its leading dot).
    Subdomains(String),
    /// Exactly this name or IP literal (lowercase; IPv6 without brackets).
    Exact(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum PortPattern {
    Any,
    Exact(u16),
}

/// Why a string is not an HTTP origin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpOriginError {
    /// No `scheme://`.
    #[error(
        "http grant `{given}` has no scheme: write \"https://{given}\" (or \"http://{given}\" for plain HTTP)"
    )]
    NoScheme {
        /// What was written.
        given: String,
    },
    /// Anything else.
    #[error(
        "http grant `{given}` is not valid: {problem}; write `scheme://host[:port]`, as in \"https://api.example.com\", \"https://*.example.com\" or \"http://127.0.0.1:4010\""
    )]
    Invalid {
        /// What was written.
        given: String,
        /// What is wrong with it.
        problem: String,
    },
}

impl FromStr for HttpOrigin {
    type Err = HttpOriginError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = |problem: &str| HttpOriginError::Invalid {
            given: s.to_owned(),
            problem: problem.to_owned(),
        };
        let Some((scheme, rest)) = s.split_once("://") else {
            return Err(HttpOriginError::NoScheme {
                given: s.trim_end_matches('/').to_owned(),
            });
        };
        let scheme =
            Scheme::parse(scheme).ok_or_else(|| invalid("the scheme must be `http` or `https`"))?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#', '@']) {
            return Err(invalid("an origin has no path, query or user"));
        }
        let (host, port) = split_host_port(rest).ok_or_else(|| invalid("the host is empty"))?;
        let port = match port {
            None => PortPattern::Exact(scheme.default_port()),
            Some("*") => PortPattern::Any,
            Some(p) => PortPattern::Exact(
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| invalid("the port must be a number from 1 to 65535, or `*`"))?,
            ),
        };
        let host = host.to_ascii_lowercase();
        let host = if host == "*" {
            HostPattern::Any
        } else if let Some(suffix) = host.strip_prefix("*.") {
            if !is_host_name(suffix) {
                return Err(invalid("after `*.` comes a domain name"));
            }
            HostPattern::Subdomains(format!(".{suffix}"))
        } else if host.parse::<IpAddr>().is_ok() || is_host_name(&host) {
            HostPattern::Exact(host)
        } else {
            return Err(invalid(
                "the host must be a name, an IP address, `*.domain` or `*`",
            ));
        };
        Ok(HttpOrigin {
            scheme,
            host,
            port,
            text: s.to_owned(),
        })
    }
}

/// `host:port`, `host`, `[v6]:port` or `[v6]`; the host without brackets.
fn split_host_port(text: &str) -> Option<(&str, Option<&str>)> {
    if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        return (!host.is_empty()).then_some((host, port));
    }
    let (host, port) = match text.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (text, None),
    };
    (!host.is_empty()).then_some((host, port))
}

fn is_host_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 253
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

impl HttpOrigin {
    /// True when a request to `scheme://host:port` is within this grant.
    /// `host` is lowercase, IPv6 without brackets.
    pub fn allows(&self, scheme: Scheme, host: &str, port: u16) -> bool {
        self.scheme == scheme
            && match self.port {
                PortPattern::Any => true,
                PortPattern::Exact(p) => p == port,
            }
            && match &self.host {
                HostPattern::Any => true,
                HostPattern::Subdomains(suffix) => host.ends_with(suffix.as_str()),
                HostPattern::Exact(name) => name == host,
            }
    }

    /// True when this grant names its host exactly (no wildcard), which is
    /// what lets a request reach a loopback, private or link-local address.
    pub fn names_host_exactly(&self) -> bool {
        matches!(self.host, HostPattern::Exact(_))
    }
}

/// True for addresses a wildcard grant never reaches: loopback, private,
/// link-local, unspecified, carrier-grade NAT, multicast and broadcast,
/// and IPv6 unique-local (also when written as IPv4-mapped IPv6).
pub fn is_internal_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal_address(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
        }
    }
}

impl fmt::Display for HttpOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for HttpOrigin {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HttpOrigin {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(text: &str) -> HttpOrigin {
        text.parse().unwrap()
    }

    #[test]
    fn an_origin_matches_its_scheme_host_and_port() {
        let api = origin("https://api.example.com");
        assert!(api.allows(Scheme::Https, "api.example.com", 443));
        assert!(!api.allows(Scheme::Http, "api.example.com", 80));
        assert!(!api.allows(Scheme::Https, "api.example.com", 8443));
        assert!(!api.allows(Scheme::Https, "evil.com", 443));
        let local = origin("http://127.0.0.1:4010");
        assert!(local.allows(Scheme::Http, "127.0.0.1", 4010));
        assert!(local.names_host_exactly());
        let v6 = origin("http://[::1]:*");
        assert!(v6.allows(Scheme::Http, "::1", 9));
    }

    #[test]
    fn wildcards_cover_subdomains_hosts_and_ports() {
        let sub = origin("https://*.example.com");
        assert!(sub.allows(Scheme::Https, "a.b.example.com", 443));
        assert!(!sub.allows(Scheme::Https, "example.com", 443));
        assert!(!sub.allows(Scheme::Https, "badexample.com", 443));
        assert!(!sub.names_host_exactly());
        let any = origin("http://*:*");
        assert!(any.allows(Scheme::Http, "anything", 1234));
        assert!(!any.names_host_exactly());
    }

    #[test]
    fn a_missing_scheme_shows_the_right_syntax() {
        let err = "api.example.com".parse::<HttpOrigin>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "http grant `api.example.com` has no scheme: write \"https://api.example.com\" (or \"http://api.example.com\" for plain HTTP)"
        );
        for bad in [
            "ftp://x.com",
            "https://",
            "https://x.com/path",
            "https://x.com:0",
            "https://x.com:99999",
            "https://*.",
            "https://a b",
        ] {
            assert!(bad.parse::<HttpOrigin>().is_err(), "{bad}");
        }
    }

    #[test]
    fn internal_addresses_are_recognised() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_internal_address(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "2606:4700::1111", "1.1.1.1"] {
            assert!(!is_internal_address(ip.parse().unwrap()), "{ip}");
        }
    }
}
