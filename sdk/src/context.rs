//! [`Context`]: what a handler knows about the call it serves.

use crate::Identity;
use crate::bindings::hearth::node::types::CallContext;

/// The call being served: its ids, caller identity, metadata and deadline.
#[derive(Debug, Clone)]
pub struct Context {
    inner: CallContext,
    /// When the call reached the plugin, for [`Context::time_left`].
    started: std::time::Instant,
}

impl Context {
    pub(crate) fn new(inner: CallContext) -> Self {
        Context {
            inner,
            started: std::time::Instant::now(),
        }
    }

    /// A context for a native unit test of a handler (`cargo test`, no
    /// host): request id `test`, a call from outside by `identity` holding
    /// `scopes`, no metadata, 5 s left. A handler that uses no capability
    /// runs as it would in the host. Capabilities (kv, http, config, …)
    /// need the host: called natively they abort the test binary, so keep
    /// the logic you unit-test apart from them and test those paths end to
    /// end against `host serve`.
    ///
    /// ```
    /// let cx = hearth_sdk::Context::for_test("client:ci", &["echo:read"])
    ///     .with_metadata("trace", "on");
    /// assert_eq!(cx.identity().id, "client:ci");
    /// assert_eq!(cx.metadata("trace"), Some("on"));
    /// assert!(!cx.is_nested());
    /// ```
    pub fn for_test(identity: &str, scopes: &[&str]) -> Self {
        Context {
            inner: CallContext {
                request_id: "test".to_owned(),
                parent_request_id: None,
                identity: Identity {
                    id: identity.to_owned(),
                    scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
                },
                metadata: Vec::new(),
                deadline_ms: 5_000,
                trusted: false,
                depth: 0,
            },
            started: std::time::Instant::now(),
        }
    }

    /// The same context with caller metadata `key` set to `value`.
    pub fn with_metadata(mut self, key: &str, value: &str) -> Self {
        self.inner.metadata.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Unique id the host gave this call.
    pub fn request_id(&self) -> &str {
        &self.inner.request_id
    }

    /// Id of the call that made this one through `env`, if any.
    pub fn parent_request_id(&self) -> Option<&str> {
        self.inner.parent_request_id.as_deref()
    }

    /// Who the call is made for.
    pub fn identity(&self) -> &Identity {
        &self.inner.identity
    }

    /// Caller metadata for `key`, if set.
    pub fn metadata(&self, key: &str) -> Option<&str> {
        self.inner
            .metadata
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// How long until the call's deadline, now. The host ends the call
    /// then; a plugin that wants to tidy up first (tell a server to stop
    /// working on the request) gives up a little before.
    pub fn time_left(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.inner.deadline_ms)
            .saturating_sub(self.started.elapsed())
    }

    /// Milliseconds left before the deadline when the call started.
    pub fn deadline_ms(&self) -> u64 {
        self.inner.deadline_ms
    }

    /// True when another plugin made this call through `env`.
    pub fn is_nested(&self) -> bool {
        self.inner.trusted
    }

    /// Nesting depth: 0 for a call from outside the node.
    pub fn depth(&self) -> u32 {
        self.inner.depth
    }
}
