//! The host's view of a call: ids, identity, deadline and nesting.

use std::time::Instant;

use hearth_registry::OperationPath;
use serde::{Deserialize, Serialize};

use super::bindings::wit;

/// Who a call is made for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// Stable id, e.g. `local:uid:1000`.
    pub id: String,
    /// Scopes held; `*` holds every scope, `echo:*` every `echo:` scope.
    pub scopes: Vec<String>,
}

impl Identity {
    /// The node itself, for calls it makes on its own behalf.
    pub fn node() -> Self {
        Identity {
            id: "node".to_owned(),
            scopes: vec!["*".to_owned()],
        }
    }

    /// True when this identity holds `scope`.
    pub fn holds(&self, scope: &str) -> bool {
        self.scopes.iter().any(|held| {
            held == "*"
                || held == scope
                || held
                    .strip_suffix('*')
                    .is_some_and(|prefix| prefix.ends_with(':') && scope.starts_with(prefix))
        })
    }
}

/// Everything known about one call while it runs.
#[derive(Debug, Clone)]
pub struct CallContext {
    /// Unique id of this call (a ULID).
    pub request_id: String,
    /// The call that made this one through `env`.
    pub parent_request_id: Option<String>,
    /// Who the call is for.
    pub identity: Identity,
    /// Caller metadata.
    pub metadata: Vec<(String, String)>,
    /// When the call must be finished.
    pub deadline: Instant,
    /// True for calls made by plugins through `env`.
    pub trusted: bool,
    /// Nesting depth; 0 for calls from outside.
    pub depth: u32,
    /// Paths of this call and its ancestors, outermost first.
    pub chain: Vec<OperationPath>,
    /// Where a subscription's events go; `None` for calls that cannot
    /// stream (nested calls, plain clients).
    pub events: Option<tokio::sync::mpsc::Sender<String>>,
    /// The peer this call (or the call that made it) came from; such a
    /// call may not reach any other node.
    pub from_peer: Option<String>,
}

impl CallContext {
    /// A context for the node's own internal calls (listing specs at load).
    pub fn internal(deadline: Instant) -> Self {
        CallContext {
            request_id: ulid::Ulid::new().to_string(),
            parent_request_id: None,
            identity: Identity::node(),
            metadata: Vec::new(),
            deadline,
            trusted: true,
            depth: 0,
            chain: Vec::new(),
            events: None,
            from_peer: None,
        }
    }

    /// The record a plugin receives.
    pub(super) fn to_wit(&self) -> wit::CallContext {
        let left = self.deadline.saturating_duration_since(Instant::now());
        wit::CallContext {
            request_id: self.request_id.clone(),
            parent_request_id: self.parent_request_id.clone(),
            identity: wit::Identity {
                id: self.identity.id.clone(),
                scopes: self.identity.scopes.clone(),
            },
            metadata: self.metadata.clone(),
            deadline_ms: u64::try_from(left.as_millis()).unwrap_or(u64::MAX),
            trusted: self.trusted,
            depth: self.depth,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_match_exactly_by_prefix_or_wildcard() {
        let id = |scopes: &[&str]| Identity {
            id: "t".into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
        };
        assert!(id(&["*"]).holds("echo:write"));
        assert!(id(&["echo:*"]).holds("echo:write"));
        assert!(!id(&["echo:*"]).holds("echoes:write"));
        assert!(id(&["echo:read"]).holds("echo:read"));
        assert!(!id(&["echo:read"]).holds("echo:write"));
        assert!(!id(&[]).holds("echo:read"));
    }
}
