//! Domains and upstreams, checked before anything is written.
//!
//! What passes here is written into nginx's configuration as it is, so the
//! rules are strict: a domain is lowercase LDH labels (RFC 1123), an
//! upstream is `http://host:port` or `https://host:port` with a host that
//! is a domain, an IPv4 address or a bracketed IPv6 address, and no path,
//! user, query or whitespace. Nothing that could end a directive (`;`,
//! `{`, `}`, quotes, spaces, newlines) can get through.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// A checked domain name, lowercase.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Domain(String);

impl Domain {
    /// Checks `text` (case-folded) as a host name for a site.
    pub fn parse(text: &str) -> Result<Domain, String> {
        let name = text.trim_end_matches('.').to_ascii_lowercase();
        let bad = |why: &str| Err(format!("`domain`: {:?} {why}", cut(text)));
        if name.is_empty() {
            return bad("is empty");
        }
        if name.len() > 253 {
            return bad("is longer than 253 characters");
        }
        let labels: Vec<&str> = name.split('.').collect();
        if labels.len() < 2 {
            return bad("needs at least two labels, as in `app.example.com`");
        }
        for label in &labels {
            if label.is_empty() || label.len() > 63 {
                return bad("has an empty label or one longer than 63 characters");
            }
            if !label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                return bad("may hold only letters, digits, `-` and `.`");
            }
            if label.starts_with('-') || label.ends_with('-') {
                return bad("has a label that starts or ends with `-`");
            }
        }
        if labels
            .last()
            .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
        {
            return bad("looks like an IP address; a site needs a domain name");
        }
        Ok(Domain(name))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True when the name is `suffix` or under it (`.internal`).
    pub fn is_under(&self, suffix: &str) -> bool {
        let suffix = suffix.trim_start_matches('.');
        self.0 == suffix || self.0.ends_with(&format!(".{suffix}"))
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A checked upstream: scheme, host and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// `http` or `https`.
    pub scheme: &'static str,
    /// A domain, an IPv4 address or `[v6]`.
    pub host: String,
    /// 1 to 65535.
    pub port: u16,
}

impl Upstream {
    /// Checks `http://host:port`, `https://host:port` or `host:port`.
    pub fn parse(text: &str) -> Result<Upstream, String> {
        let bad = |why: &str| {
            Err(format!(
                "`upstream`: {:?} {why}; write `http://127.0.0.1:8080` or `host:port`",
                cut(text)
            ))
        };
        let (scheme, rest) = match text.split_once("://") {
            Some(("http", rest)) => ("http", rest),
            Some(("https", rest)) => ("https", rest),
            Some(_) => return bad("has a scheme other than http or https"),
            None => ("http", text),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let Some((addr, port)) = v6.split_once("]:") else {
                return bad("needs a port after the IPv6 address");
            };
            if addr.parse::<Ipv6Addr>().is_err() {
                return bad("has an invalid IPv6 address");
            }
            (format!("[{addr}]"), port)
        } else {
            let Some((host, port)) = rest.rsplit_once(':') else {
                return bad("needs a port");
            };
            if host.parse::<Ipv4Addr>().is_err()
                && host != "localhost"
                && Domain::parse(host).is_err()
            {
                return bad("has a host that is not a domain or an IP address");
            }
            (host.to_ascii_lowercase(), port)
        };
        let port = match port.parse::<u16>() {
            Ok(port) if port > 0 => port,
            _ => return bad("has a port that is not 1 to 65535 (and nothing after it)"),
        };
        if !port_text_ok(rest) {
            return bad("has something after the port");
        }
        Ok(Upstream { scheme, host, port })
    }
}

/// The text after the last `:` is digits only.
fn port_text_ok(rest: &str) -> bool {
    rest.rsplit_once(':')
        .is_some_and(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

/// At most 80 characters of what the caller sent, for an error.
fn cut(text: &str) -> String {
    text.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_are_ldh_names() {
        for good in [
            "app.example",
            "App.Example.COM.",
            "a-b.c1.internal",
            "x.local",
        ] {
            assert!(Domain::parse(good).is_ok(), "{good}");
        }
        assert_eq!(
            Domain::parse("App.Example.").unwrap().as_str(),
            "app.example"
        );
        for bad in [
            "",
            "example",
            "a..b",
            "-a.b",
            "a-.b",
            "a b.c",
            "a.b;",
            "a.b; include /etc/passwd",
            "a.b}\nserver {",
            "a.b\"",
            "*.example.com",
            "1.2.3.4",
            "ex_ample.com",
            "éxample.com",
        ] {
            assert!(Domain::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Domain::parse("a.internal").unwrap().is_under(".internal"));
        assert!(
            !Domain::parse("ainternal.com")
                .unwrap()
                .is_under(".internal")
        );
    }

    #[test]
    fn upstreams_are_scheme_host_and_port_only() {
        let up = Upstream::parse("127.0.0.1:8080").unwrap();
        assert_eq!(up.to_string(), "http://127.0.0.1:8080");
        assert_eq!(
            Upstream::parse("https://api.internal:443/")
                .unwrap()
                .to_string(),
            "https://api.internal:443"
        );
        assert_eq!(
            Upstream::parse("http://[::1]:9000").unwrap().to_string(),
            "http://[::1]:9000"
        );
        assert!(Upstream::parse("http://localhost:3000").is_ok());
        for bad in [
            "127.0.0.1",
            "127.0.0.1:0",
            "127.0.0.1:65536",
            "127.0.0.1:80/path",
            "127.0.0.1:80;",
            "127.0.0.1:80; return 200",
            "ftp://a.b:21",
            "http://user@a.b:80",
            "http://a.b:80?x",
            "http://a b:80",
            "http://[::1]",
            "http://[zz]:80",
            "http://a.b:+80",
            "unix:/run/x.sock",
        ] {
            assert!(Upstream::parse(bad).is_err(), "{bad:?}");
        }
    }
}
