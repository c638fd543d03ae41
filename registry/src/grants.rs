//! What the operator granted a plugin in `stack.toml`.
//!
//! Everything is denied by default. A plugin may use its key-value namespace
//! only with `kv = true`, and may call another operation through `env` only
//! when a pattern in `env` matches the path. A pattern is a path whose
//! segments may be `*` (any one segment): `/node/echo/*` grants every
//! operation of the echo plugin on this node.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::path::{OperationPath, is_valid_segment};

/// A path pattern such as `/node/echo/*`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PathPattern {
    segments: [String; 3],
}

/// Why a string is not a path pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "grant pattern `{0}` is not valid: write `/{{node}}/{{namespace}}/{{name}}` where any segment may be `*`, as in `/node/echo/*`"
)]
pub struct PatternError(pub String);

impl PathPattern {
    /// True when `path` matches this pattern segment by segment.
    pub fn matches(&self, path: &OperationPath) -> bool {
        [path.node(), path.namespace(), path.name()]
            .iter()
            .zip(&self.segments)
            .all(|(seg, pat)| pat == "*" || pat == seg)
    }

    /// True when the pattern writes out `namespace` (not `*`): it names
    /// that namespace explicitly.
    pub fn names_namespace(&self, namespace: &str) -> bool {
        self.segments[1] == namespace
    }

    /// Like [`Self::matches`], but the node segment must be written out:
    /// `/*/echo/*` covers this node's echo, never a peer's.
    pub fn matches_named_node(&self, path: &OperationPath) -> bool {
        self.segments[0] == path.node() && self.matches(path)
    }
}

impl FromStr for PathPattern {
    type Err = PatternError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || PatternError(s.to_owned());
        let rest = s.strip_prefix('/').ok_or_else(err)?;
        let parts: Vec<&str> = rest.split('/').collect();
        let [a, b, c] = parts[..] else {
            return Err(err());
        };
        for seg in [a, b, c] {
            if seg != "*" && !is_valid_segment(seg) {
                return Err(err());
            }
        }
        Ok(PathPattern {
            segments: [a.to_owned(), b.to_owned(), c.to_owned()],
        })
    }
}

impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c] = &self.segments;
        write!(f, "/{a}/{b}/{c}")
    }
}

impl Serialize for PathPattern {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PathPattern {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The capabilities granted to one plugin. [`Default`] grants nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantSet {
    /// May use its own key-value namespace.
    #[serde(default)]
    pub kv: bool,
    /// Operations it may call through `env`.
    #[serde(default)]
    pub env: Vec<PathPattern>,
    /// Vault derivation-path prefixes it may use, e.g. `m/74'/1'`.
    #[serde(default)]
    pub vault: Vec<VaultPrefix>,
    /// Containers it may manage on the node's Docker engine, and within
    /// what policy; no access when absent.
    #[serde(default)]
    pub docker: Option<DockerGrant>,
    /// Inbox messages its handler is run for; none when absent.
    #[serde(default)]
    pub messages: Option<MessagesGrant>,
    /// Secrets (`host secret set NAME`) its configuration may refer to.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Origins it may send HTTP requests to (`wasi:http`); none when empty.
    #[serde(default)]
    pub http: Vec<crate::HttpOrigin>,
    /// Commands it may have the host run, each by its exact argument list.
    #[serde(default)]
    pub process: Vec<Vec<String>>,
    /// Environment variables those processes inherit from the node (none
    /// otherwise).
    #[serde(default)]
    pub process_env: Vec<String>,
    /// The one directory it may read and write files in (`files`), made
    /// when missing; no files when absent.
    #[serde(default)]
    pub files: Option<std::path::PathBuf>,
    /// PEM files of certificate authorities its HTTPS requests trust
    /// besides the web PKI roots (a private ACME server, an internal API).
    #[serde(default)]
    pub http_roots: Vec<std::path::PathBuf>,
}

/// Which inbox messages a plugin's handler receives.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessagesGrant {
    /// Topics whose messages it handles (`*` for every topic).
    #[serde(default)]
    pub topics: Vec<String>,
    /// Handles direct messages to this node.
    #[serde(default)]
    pub direct: bool,
}

impl MessagesGrant {
    /// True when a message on `topic` (direct when `None`) is covered.
    pub fn covers(&self, topic: Option<&str>) -> bool {
        match topic {
            None => self.direct,
            Some(topic) => self.topics.iter().any(|t| t == "*" || t == topic),
        }
    }
}

/// The Docker policy granted to a plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerGrant {
    /// Image patterns it may run; `*` matches any run of characters
    /// (`hearth-busybox:*`, `nginx:1.*`).
    pub images: Vec<String>,
    /// Host ports it may publish, as `low-high`; none when absent.
    #[serde(default)]
    pub host_ports: Option<PortRange>,
    /// Containers it may have at once (running or not).
    #[serde(default = "default_max_containers")]
    pub max_containers: u32,
}

fn default_max_containers() -> u32 {
    10
}

impl DockerGrant {
    /// True when `image` matches a granted pattern.
    pub fn allows_image(&self, image: &str) -> bool {
        self.images.iter().any(|pattern| glob_match(pattern, image))
    }

    /// True when `port` may be published on the host.
    pub fn allows_host_port(&self, port: u16) -> bool {
        self.host_ports
            .is_some_and(|r| (r.low..=r.high).contains(&port))
    }
}

/// `*` matches any run of characters; everything else matches itself.
fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let [first, middle @ .., last] = parts.as_slice() else {
        return pattern == text;
    };
    if parts.len() == 1 {
        return pattern == text;
    }
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// An inclusive range of ports, written `low-high`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    /// Lowest allowed port.
    pub low: u16,
    /// Highest allowed port.
    pub high: u16,
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.low, self.high)
    }
}

impl Serialize for PortRange {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let bad = || {
            serde::de::Error::custom(format!(
                "host port range `{text}` must be `low-high`, as in `18000-18999`"
            ))
        };
        let (low, high) = text.split_once('-').ok_or_else(bad)?;
        let low: u16 = low.trim().parse().map_err(|_| bad())?;
        let high: u16 = high.trim().parse().map_err(|_| bad())?;
        if low == 0 || low > high {
            return Err(bad());
        }
        Ok(PortRange { low, high })
    }
}

/// A derivation-path prefix granted to a plugin: `m` followed by indexes,
/// each optionally hardened (`'` or `h`). Matching is index by index, so
/// `m/74'/1'` covers `m/74'/1'/5'` but not `m/74'/10'`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VaultPrefix(String);

impl VaultPrefix {
    /// The prefix as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Why a string is not a vault prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "vault grant `{0}` is not a derivation-path prefix: write `m` then indexes below 2^31, `'` for hardened, as in `m/74'/1'`"
)]
pub struct VaultPrefixError(pub String);

impl FromStr for VaultPrefix {
    type Err = VaultPrefixError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || VaultPrefixError(s.to_owned());
        let mut parts = s.split('/');
        if parts.next() != Some("m") {
            return Err(err());
        }
        for part in parts {
            let digits = part
                .strip_suffix('\'')
                .or_else(|| part.strip_suffix('h'))
                .unwrap_or(part);
            let ok = !digits.is_empty()
                && digits.len() <= 10
                && digits.bytes().all(|b| b.is_ascii_digit())
                && digits.parse::<u64>().is_ok_and(|n| n < 1 << 31);
            if !ok {
                return Err(err());
            }
        }
        Ok(VaultPrefix(s.to_owned()))
    }
}

impl fmt::Display for VaultPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for VaultPrefix {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for VaultPrefix {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl GrantSet {
    /// True when `env` calls to `path` are granted.
    pub fn allows_env(&self, path: &OperationPath) -> bool {
        self.env.iter().any(|p| p.matches(path))
    }

    /// True when a pattern that names `path`'s node explicitly allows it:
    /// how calls to peers are granted, so a wildcard written for this
    /// node's operations never reaches another node.
    pub fn allows_env_on_peer(&self, path: &OperationPath) -> bool {
        self.env.iter().any(|p| p.matches_named_node(path))
    }

    /// The line an operator adds to `stack.toml` to grant an `env` call to
    /// `path` for `plugin`; used in `denied` errors.
    pub fn env_grant_hint(plugin: &str, path: &OperationPath) -> String {
        format!("add \"{path}\" to `grants.env` of [plugins.{plugin}] in stack.toml")
    }

    /// Same for a vault path.
    pub fn vault_grant_hint(plugin: &str, path: &str) -> String {
        format!("add a prefix of \"{path}\" to `grants.vault` of [plugins.{plugin}] in stack.toml")
    }

    /// Same for Docker.
    pub fn docker_grant_hint(plugin: &str) -> String {
        format!(
            "add `grants.docker = {{ images = [...], host_ports = \"low-high\" }}` to [plugins.{plugin}] in stack.toml"
        )
    }

    /// Same for outbound HTTP to `origin` (`https://api.example.com`).
    pub fn http_grant_hint(plugin: &str, origin: &str) -> String {
        format!("add \"{origin}\" to `grants.http` of [plugins.{plugin}] in stack.toml")
    }

    /// The grant that allows a request to `scheme://host:port`, if any.
    pub fn http_grant_for(
        &self,
        scheme: crate::Scheme,
        host: &str,
        port: u16,
    ) -> Option<&crate::HttpOrigin> {
        // An exact grant wins over a wildcard, so the private-address rule
        // sees the most specific grant the operator wrote.
        self.http
            .iter()
            .filter(|o| o.allows(scheme, host, port))
            .max_by_key(|o| o.names_host_exactly())
    }

    /// Same for a process.
    pub fn process_grant_hint(plugin: &str, argv: &[String]) -> String {
        let quoted: Vec<String> = argv.iter().map(|a| format!("{a:?}")).collect();
        format!(
            "add [{}] to `grants.process` of [plugins.{plugin}] in stack.toml",
            quoted.join(", ")
        )
    }

    /// Same for files.
    pub fn files_grant_hint(plugin: &str) -> String {
        format!("set `grants.files = \"/a/directory\"` in [plugins.{plugin}] of stack.toml")
    }

    /// Same for the key-value store.
    pub fn kv_grant_hint(plugin: &str) -> String {
        format!("set `grants.kv = true` in [plugins.{plugin}] of stack.toml")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_are_granted_only_by_name() {
        let grants = GrantSet {
            env: vec![
                "/*/echo/*".parse().unwrap(),
                "/worker-1/host/*".parse().unwrap(),
            ],
            ..GrantSet::default()
        };
        let path = |p: &str| p.parse::<OperationPath>().unwrap();
        assert!(grants.allows_env(&path("/node/echo/ping")));
        assert!(!grants.allows_env_on_peer(&path("/worker-1/echo/ping")));
        assert!(grants.allows_env_on_peer(&path("/worker-1/host/ping")));
        assert!(!grants.allows_env_on_peer(&path("/worker-2/host/ping")));
    }

    fn path(s: &str) -> OperationPath {
        s.parse().unwrap()
    }

    #[test]
    fn patterns_match_segment_by_segment() {
        let p: PathPattern = "/node/echo/*".parse().unwrap();
        assert!(p.matches(&path("/node/echo/ping")));
        assert!(!p.matches(&path("/node/echoes/ping")));
        assert!(!p.matches(&path("/peer/echo/ping")));
        let any: PathPattern = "/*/*/*".parse().unwrap();
        assert!(any.matches(&path("/peer/x/y")));
    }

    #[test]
    fn malformed_patterns_are_refused() {
        for bad in [
            "node/echo/*",
            "/node/echo",
            "/node/e*/ping",
            "/node/echo/ping/x",
            "/node//x",
        ] {
            assert!(bad.parse::<PathPattern>().is_err(), "{bad}");
        }
    }

    #[test]
    fn docker_policies_match_images_and_ports() {
        let grant: DockerGrant = toml::from_str(
            "images = [\"hearth-busybox:*\", \"nginx:1.*-alpine\"]\nhost_ports = \"18000-18999\"",
        )
        .unwrap();
        assert!(grant.allows_image("hearth-busybox:test"));
        assert!(grant.allows_image("nginx:1.25-alpine"));
        assert!(!grant.allows_image("nginx:1.25"));
        assert!(!grant.allows_image("evil/hearth-busybox:test"));
        assert!(grant.allows_host_port(18000) && grant.allows_host_port(18999));
        assert!(!grant.allows_host_port(80));
        assert_eq!(grant.max_containers, 10);
        assert!(toml::from_str::<DockerGrant>("images = []\nhost_ports = \"9-1\"").is_err());
        assert!(
            glob_match("*", "anything")
                && glob_match("a*b*c", "aXbYc")
                && !glob_match("a*b", "ab-c")
        );
    }

    #[test]
    fn vault_prefixes_parse() {
        for good in ["m", "m/74'", "m/74'/1'", "m/44h/60h/0h/0"] {
            assert!(good.parse::<VaultPrefix>().is_ok(), "{good}");
        }
        for bad in ["", "74'", "m/", "m/x", "m/2147483648'", "m/1''"] {
            assert!(bad.parse::<VaultPrefix>().is_err(), "{bad}");
        }
    }

    #[test]
    fn default_grants_nothing() {
        let grants = GrantSet::default();
        assert!(!grants.kv);
        assert!(!grants.allows_env(&path("/node/echo/ping")));
    }
}
