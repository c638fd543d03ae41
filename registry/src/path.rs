//! Operation paths: `/{node}/{namespace}/{name}`.
//!
//! Segments are short, lowercase and URL-safe so a path reads the same in a
//! shell, a URL and a log line. `node` is either the local alias
//! [`LOCAL_NODE`] or a peer's name.

use std::fmt;
use std::str::FromStr;

/// The node segment that always means "this node".
pub const LOCAL_NODE: &str = "node";

/// Namespaces the node's native operations live under; no plugin may be
/// named after one or use one as its namespace.
pub const RESERVED_NAMESPACES: &[&str] = &["host", "vault", "msg", "broker", "clients"];

/// Longest accepted segment, in bytes.
const MAX_SEGMENT_LEN: usize = 64;

/// A validated operation path.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OperationPath {
    node: String,
    namespace: String,
    name: String,
}

/// Why a string is not an operation path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path does not start with `/`.
    #[error("operation path `{0}` must start with `/`, as in `/node/echo/ping`")]
    NotAbsolute(String),
    /// The path does not have exactly three segments.
    #[error(
        "operation path `{path}` has {found} segment(s); expected three: `/{{node}}/{{namespace}}/{{name}}`, as in `/node/echo/ping`"
    )]
    WrongSegmentCount {
        /// The path as given.
        path: String,
        /// How many segments it had.
        found: usize,
    },
    /// A segment is empty, too long or has a character outside `[a-z0-9_-]`.
    #[error(
        "segment `{segment}` of `{path}` is not valid: use 1 to 64 of lowercase letters, digits, `-` and `_`, starting with a letter or digit"
    )]
    BadSegment {
        /// The path as given.
        path: String,
        /// The offending segment.
        segment: String,
    },
}

/// Checks one path segment; shared with patterns and manifests.
pub fn is_valid_segment(segment: &str) -> bool {
    let bytes = segment.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_SEGMENT_LEN
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-' || *b == b'_')
}

impl OperationPath {
    /// Builds a path from its segments, validating each.
    pub fn new(node: &str, namespace: &str, name: &str) -> Result<Self, PathError> {
        format!("/{node}/{namespace}/{name}").parse()
    }

    /// The node segment: [`LOCAL_NODE`] or a peer's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The namespace segment, usually the plugin's name.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The operation's name within its namespace.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// True when the path addresses this node, given this node's own name.
    pub fn is_local(&self, node_name: &str) -> bool {
        self.node == LOCAL_NODE || self.node == node_name
    }

    /// The same operation addressed through [`LOCAL_NODE`].
    pub fn to_local(&self) -> OperationPath {
        OperationPath {
            node: LOCAL_NODE.to_owned(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }
}

impl FromStr for OperationPath {
    type Err = PathError;

    fn from_str(path: &str) -> Result<Self, Self::Err> {
        let Some(rest) = path.strip_prefix('/') else {
            return Err(PathError::NotAbsolute(path.to_owned()));
        };
        let segments: Vec<&str> = rest.split('/').collect();
        let [node, namespace, name] = segments[..] else {
            return Err(PathError::WrongSegmentCount {
                path: path.to_owned(),
                found: segments.len(),
            });
        };
        for segment in [node, namespace, name] {
            if !is_valid_segment(segment) {
                return Err(PathError::BadSegment {
                    path: path.to_owned(),
                    segment: segment.to_owned(),
                });
            }
        }
        Ok(OperationPath {
            node: node.to_owned(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })
    }
}

impl fmt::Display for OperationPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}/{}/{}", self.node, self.namespace, self.name)
    }
}

impl serde::Serialize for OperationPath {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for OperationPath {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_displays_round_trip() {
        let path: OperationPath = "/worker-1/docker/create".parse().unwrap();
        assert_eq!(path.node(), "worker-1");
        assert_eq!(path.namespace(), "docker");
        assert_eq!(path.name(), "create");
        assert_eq!(path.to_string(), "/worker-1/docker/create");
        assert!(!path.is_local("head"));
        assert!(path.is_local("worker-1"));
        assert_eq!(path.to_local().to_string(), "/node/docker/create");
    }

    #[test]
    fn rejects_malformed_paths_with_a_reason() {
        for (text, fragment) in [
            ("node/echo/ping", "must start with `/`"),
            ("/node/echo", "has 2 segment(s)"),
            ("/node/echo/ping/x", "has 4 segment(s)"),
            ("/node//ping", "segment `` of"),
            ("/node/Echo/ping", "segment `Echo`"),
            ("/node/echo/pi ng", "segment `pi ng`"),
            ("/node/echo/-ping", "segment `-ping`"),
            ("/", "has 1 segment(s)"),
            ("", "must start with `/`"),
        ] {
            let err = text.parse::<OperationPath>().unwrap_err().to_string();
            assert!(err.contains(fragment), "{text:?}: {err}");
        }
        let long = format!("/node/echo/{}", "a".repeat(65));
        assert!(long.parse::<OperationPath>().is_err());
    }
}
