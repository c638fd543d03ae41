//! The call model: one request type for every door a call comes in by, the
//! context a call runs with, and the sink its events go to.
//!
//! A [`CallRequest`] says where the call came from ([`Origin`]: a local
//! client, a peer node, or a plugin calling through `env`), who it is for,
//! and what it asks. The pipeline in the `ops` layer turns it into a running
//! [`CallContext`]; plugins see a projection of that context through WIT.
//!
//! This is the bottom of the host's layers: it imports nothing of the
//! crate, so every layer above can share these types.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hearth_registry::{
    CallError, GrantSet, LimitsSection, OperationPath, PathPattern, ResponseEnvelope,
};
use serde::{Deserialize, Serialize};

/// Where a subscription's events go while its call runs: JSON text, in
/// order, all before the call's reply.
pub type EventSender = tokio::sync::mpsc::Sender<String>;

/// Who a call is made for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// Stable id, e.g. `local:uid:1000` or `peer:worker-1`.
    pub id: String,
    /// Scopes held; `*` holds every scope, `echo:*` every `echo:` scope.
    pub scopes: Vec<String>,
    /// For a peer's call made for one of its clients: the scopes that
    /// client holds there. A scope is then held only if both hold it, so a
    /// client reaches no further through a peer than it could itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_behalf_of: Option<Vec<String>>,
}

/// True when `held` covers `scope`: equal, `*`, or `ns:*` for `ns:…`.
fn covers(held: &[String], scope: &str) -> bool {
    held.iter().any(|held| {
        held == "*"
            || held == scope
            || held
                .strip_suffix('*')
                .is_some_and(|prefix| prefix.ends_with(':') && scope.starts_with(prefix))
    })
}

impl Identity {
    /// An identity holding `scopes`, acting for itself.
    pub fn new(id: impl Into<String>, scopes: Vec<String>) -> Self {
        Identity {
            id: id.into(),
            scopes,
            on_behalf_of: None,
        }
    }

    /// The node itself, for calls it makes on its own behalf.
    pub fn node() -> Self {
        Identity::new("node", vec!["*".to_owned()])
    }

    /// True when this identity holds `scope` (and so does the client a
    /// peer's call is made for, if any).
    pub fn holds(&self, scope: &str) -> bool {
        covers(&self.scopes, scope)
            && self
                .on_behalf_of
                .as_deref()
                .is_none_or(|caller| covers(caller, scope))
    }
}

/// The door a local client came in by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Door {
    /// The Unix socket's framed protocol.
    Socket,
    /// The HTTP gateway.
    Http,
    /// An MCP client, through the gateway's `/mcp`.
    Mcp,
}

/// A peer node a call came from, and what it may do here.
#[derive(Debug, Clone)]
pub struct PeerOrigin {
    /// The peer's name in this node's `[peers]`.
    pub name: String,
    /// Operations it may call here (`[peers.<name>].allow`).
    pub allow: Arc<[PathPattern]>,
    /// The request on the peer that made this call, if nested there.
    pub parent_request_id: Option<String>,
    /// How deeply nested the call already is on the peer.
    pub depth: u32,
}

/// A plugin's own configuration (`[plugins.<name>.config]`), flattened:
/// dotted keys for nested tables, strings as written, other values as JSON.
pub type PluginConfig = std::collections::BTreeMap<String, String>;

/// A plugin making a call through `env`, and the call it is serving.
#[derive(Debug, Clone)]
pub struct PluginCaller {
    /// The plugin's name.
    pub plugin: Arc<str>,
    /// What the operator granted it.
    pub grants: Arc<GrantSet>,
    /// Its configuration.
    pub config: Arc<PluginConfig>,
    /// Configuration keys whose value is a secret, by secret name.
    pub secret_refs: Arc<PluginConfig>,
    /// The call it is serving.
    pub ctx: CallContext,
}

/// The one inbox message a plugin's handler run is for, and what that run
/// may do about it without any `env` grant: send to its sender (a reply),
/// post to the topic it came on. Nothing else; it ends with the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageScope {
    /// The plugin whose handler runs.
    pub plugin: String,
    /// The message's id in this node's inbox.
    pub message_id: String,
    /// Its sender's node key.
    pub sender_key: String,
    /// The topic it came on; `None` for a direct message.
    pub topic: Option<String>,
}

/// Where a call came from. The pipeline's access check, deadline and depth
/// rules follow from it.
#[derive(Debug, Clone)]
pub enum Origin {
    /// A local client: checked against its identity's scopes.
    Client(Door),
    /// Another node over the mesh: checked against `[peers.<name>]`, and
    /// never passed on to a third node.
    Peer(PeerOrigin),
    /// A plugin through `env`: trusted (no scope check), but only to paths
    /// its grants allow, inheriting its parent's deadline, bounded in depth.
    Plugin(PluginCaller),
    /// The node itself, for work of its own (the outbox sending to the
    /// broker, the broker delivering): trusted, named for the logs.
    Node(&'static str),
    /// A plugin's message handler, run for one inbox message: only that
    /// plugin's own operations, with the message's narrow scope.
    Message(Arc<MessageScope>),
}

/// One call, from whichever door it came in by.
#[derive(Debug, Clone)]
pub struct CallRequest {
    /// Where it came from.
    pub origin: Origin,
    /// Operation path, as the caller wrote it.
    pub path: String,
    /// Input JSON text.
    pub input: String,
    /// Who the call is for.
    pub identity: Identity,
    /// Caller metadata for the handler.
    pub metadata: Vec<(String, String)>,
    /// The caller's deadline; the operation's limit when absent. A caller
    /// may shorten an operation's limit, never extend it.
    pub timeout: Option<Duration>,
    /// Where a subscription's events go, when the caller can take them.
    pub events: Option<EventSender>,
}

impl CallRequest {
    /// A call from a local client.
    pub fn from_client(door: Door, identity: Identity, path: String, input: String) -> Self {
        CallRequest {
            origin: Origin::Client(door),
            path,
            input,
            identity,
            metadata: Vec::new(),
            timeout: None,
            events: None,
        }
    }

    /// A call the node makes for its own work.
    pub fn from_node(task: &'static str, path: String, input: String, timeout: Duration) -> Self {
        CallRequest {
            origin: Origin::Node(task),
            path,
            input,
            identity: Identity::node(),
            metadata: Vec::new(),
            timeout: Some(timeout),
            events: None,
        }
    }

    /// A nested call a plugin makes through `env`: it acts for the same
    /// identity with the same metadata, within its parent's deadline.
    pub fn from_plugin(caller: PluginCaller, path: String, input: String) -> Self {
        CallRequest {
            identity: caller.ctx.identity.clone(),
            metadata: caller.ctx.metadata.clone(),
            origin: Origin::Plugin(caller),
            path,
            input,
            timeout: None,
            events: None,
        }
    }

    /// The request this call is nested in, on this node or a peer.
    pub fn parent_request_id(&self) -> Option<&str> {
        match &self.origin {
            Origin::Client(_) | Origin::Node(_) | Origin::Message(_) => None,
            Origin::Peer(peer) => peer.parent_request_id.as_deref(),
            Origin::Plugin(caller) => Some(&caller.ctx.request_id),
        }
    }

    /// The peer this call (or the call that made it) came from; such a
    /// call may not reach any other node.
    pub fn from_peer(&self) -> Option<&str> {
        match &self.origin {
            Origin::Client(_) | Origin::Node(_) | Origin::Message(_) => None,
            Origin::Peer(peer) => Some(&peer.name),
            Origin::Plugin(caller) => caller.ctx.from_peer.as_deref(),
        }
    }
}

/// Everything known about one call while it runs.
#[derive(Debug, Clone)]
pub struct CallContext {
    /// Unique id of this call (a ULID).
    pub request_id: String,
    /// The call that made this one through `env`, here or on a peer.
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
    pub events: Option<EventSender>,
    /// The peer this call (or the call that made it) came from.
    pub from_peer: Option<String>,
    /// The message a handler run is for: set on the handler's own call,
    /// and on a messaging operation it reaches through that scope alone.
    pub message: Option<Arc<MessageScope>>,
    /// True for calls the node makes itself ([`Origin::Node`]).
    pub by_node: bool,
    /// True when the deadline is the caller's (it asked for less time than
    /// the operation's limit, or its parent's deadline came first), so a
    /// timeout is the caller's to fix, not `stack.toml`'s.
    pub deadline_by_caller: bool,
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
            message: None,
            by_node: true,
            deadline_by_caller: false,
        }
    }
}

/// The OperationEnv: the one pipeline every call goes through, whatever
/// door it came in by. The node (`ops::Node`) implements it; front doors and
/// the `env` capability reach it through this trait, never the concrete
/// node, so they sit on either side of it without importing each other.
///
/// Doors that serve many calls are generic over it, so the pipeline's
/// future is not boxed per call; holders that cannot be generic use
/// [`DynOperationEnv`].
pub trait OperationEnv: Send + Sync + 'static {
    /// This node's name.
    fn node_name(&self) -> &str;
    /// The limits calls and frames run under.
    fn limits(&self) -> &LimitsSection;
    /// Runs `request`: route, access check, deadline and depth, dispatch,
    /// response envelope. Events go to `request.events`.
    fn call(
        &self,
        request: CallRequest,
    ) -> impl Future<Output = Result<ResponseEnvelope, CallError>> + Send;
}

/// A boxed future borrowing the OperationEnv.
pub type CallFuture<'a> =
    Pin<Box<dyn Future<Output = Result<ResponseEnvelope, CallError>> + Send + 'a>>;

/// [`OperationEnv`] as a trait object, for holders that cannot be generic
/// (a plugin's `env` handle, the mesh): each call's future is boxed.
pub trait DynOperationEnv: Send + Sync + 'static {
    /// This node's name.
    fn node_name(&self) -> &str;
    /// The limits calls and frames run under.
    fn limits(&self) -> &LimitsSection;
    /// [`OperationEnv::call`], boxed.
    fn call_boxed(&self, request: CallRequest) -> CallFuture<'_>;
}

impl<T: OperationEnv> DynOperationEnv for T {
    fn node_name(&self) -> &str {
        OperationEnv::node_name(self)
    }

    fn limits(&self) -> &LimitsSection {
        OperationEnv::limits(self)
    }

    fn call_boxed(&self, request: CallRequest) -> CallFuture<'_> {
        Box::pin(self.call(request))
    }
}

/// Where a front door sends a call's events: the socket writes `Event`
/// frames, the mesh writes them on the call's stream, the HTTP gateway
/// writes server-sent events. One implementation per door; the loop that
/// feeds it is `ops::serve`, shared by all.
pub trait EventSink: Send {
    /// Delivers one event; false when nobody receives events any more,
    /// which abandons the call.
    fn emit(&mut self, payload: String) -> impl Future<Output = bool> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_match_exactly_by_prefix_or_wildcard() {
        let id =
            |scopes: &[&str]| Identity::new("t", scopes.iter().map(|s| s.to_string()).collect());
        assert!(id(&["*"]).holds("echo:write"));
        assert!(id(&["echo:*"]).holds("echo:write"));
        assert!(!id(&["echo:*"]).holds("echoes:write"));
        assert!(id(&["echo:read"]).holds("echo:read"));
        assert!(!id(&["echo:read"]).holds("echo:write"));
        assert!(!id(&[]).holds("echo:read"));
        let relayed = Identity {
            on_behalf_of: Some(vec!["echo:read".into()]),
            ..id(&["echo:*"])
        };
        assert!(relayed.holds("echo:read"));
        assert!(!relayed.holds("echo:write"), "the client lacks it");
    }
}
