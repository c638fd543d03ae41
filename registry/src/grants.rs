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

    /// The line an operator adds to `stack.toml` to grant an `env` call to
    /// `path` for `plugin`; used in `denied` errors.
    pub fn env_grant_hint(plugin: &str, path: &OperationPath) -> String {
        format!("add \"{path}\" to `grants.env` of [plugins.{plugin}] in stack.toml")
    }

    /// Same for a vault path.
    pub fn vault_grant_hint(plugin: &str, path: &str) -> String {
        format!("add a prefix of \"{path}\" to `grants.vault` of [plugins.{plugin}] in stack.toml")
    }

    /// Same for the key-value store.
    pub fn kv_grant_hint(plugin: &str) -> String {
        format!("set `grants.kv = true` in [plugins.{plugin}] of stack.toml")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
