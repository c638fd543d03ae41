//! The pipeline: route → access check → deadline and depth → dispatch →
//! response envelope, for a call from any origin.
//!
//! - A **client** holds its identity's scopes; it may call this node's
//!   operations its scopes allow, and any peer's.
//! - A **peer** may call only what `[peers.<name>].allow` covers, holds its
//!   configured scopes, learns nothing it was not granted (no suggestions,
//!   no list of other peers), and never reaches a third node.
//! - A **plugin** through `env` is trusted (no scope check) but reaches only
//!   what its `grants.env` allow, inherits its parent's deadline, identity
//!   and metadata, and fails with `resource-exhausted` past
//!   `limits.max_call_depth`. If the call it serves came from a peer, it
//!   may not reach another node either.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hearth_registry::{
    CallError, ErrorCode, LOCAL_NODE, OpKind, OperationPath, Owner, ResponseEnvelope, Route, Source,
};

use super::Node;
use super::peers::PeerCall;
use crate::call::{CallContext, CallRequest, Origin, PeerOrigin, PluginCaller};

/// How long a subscription may stream before the node ends it.
const SUBSCRIPTION_DEADLINE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Longest deadline a caller may ask for.
const MAX_DEADLINE: Duration = Duration::from_secs(600);

/// The context of a call that starts on this node (not nested, not from a
/// peer), as a local client's: untrusted, depth 0.
fn top_level(
    request_id: String,
    identity: crate::call::Identity,
    metadata: Vec<(String, String)>,
    deadline: Instant,
    path: OperationPath,
    events: Option<crate::call::EventSender>,
) -> CallContext {
    CallContext {
        request_id,
        parent_request_id: None,
        identity,
        metadata,
        deadline,
        trusted: false,
        depth: 0,
        chain: vec![path],
        events,
        from_peer: None,
        message: None,
        by_node: false,
        deadline_by_caller: false,
    }
}

/// Where a path leads.
enum Target {
    /// An operation of this node, addressed through [`LOCAL_NODE`].
    Local(OperationPath),
    /// An operation of a peer: its name, and the path as it serves it.
    Remote { peer: String, path: OperationPath },
}

impl Node {
    /// Runs one call, from any origin, and counts it.
    pub(super) async fn run(&self, request: CallRequest) -> Result<ResponseEnvelope, CallError> {
        let started = Instant::now();
        let origin = match request.origin {
            Origin::Client(_) => "client",
            Origin::Peer(_) => "peer",
            Origin::Plugin(_) => "plugin",
            Origin::Node(_) => "node",
            Origin::Message(_) => "message",
        };
        let operation = self.metric_label(&request.path);
        let result = self.run_uncounted(request).await;
        if let Err(err) = &result
            && matches!(origin, "client" | "peer")
        {
            self.events.emit(
                "call.failed",
                serde_json::json!({ "operation": operation, "origin": origin, "code": err.code.as_str() }),
            );
        }
        self.metrics.record(
            operation,
            origin,
            result.as_ref().map(|_| ()).map_err(|e| e.code),
            started.elapsed(),
        );
        result
    }

    /// A bounded label for `path`: the route it reaches, `remote:<peer>`,
    /// or `unrouted`.
    fn metric_label(&self, path: &str) -> String {
        match path.parse::<OperationPath>() {
            Ok(p) if p.is_local(&self.name) => self
                .routes()
                .lookup(&p.to_local())
                .map_or_else(|_| "unrouted".to_owned(), |r| r.spec.path.to_string()),
            Ok(p) if self.peers().is_peer(p.node()) => format!("remote:{}", p.node()),
            _ => "unrouted".to_owned(),
        }
    }

    async fn run_uncounted(&self, request: CallRequest) -> Result<ResponseEnvelope, CallError> {
        // Calls from outside count for draining; a plugin's nested call
        // runs inside one of them.
        let in_flight = match request.origin {
            Origin::Plugin(_) | Origin::Node(_) | Origin::Message(_) => None,
            Origin::Client(_) | Origin::Peer(_) => Some(self.admit()?),
        };
        let target = match self.resolve(&request.path) {
            Ok(target) => target,
            Err(err) => return Err(self.refine_unroutable(&request, err)),
        };
        match target {
            Target::Remote { peer, path } => self.run_remote(request, peer, path).await,
            Target::Local(path) => self.run_local(request, path, in_flight).await,
        }
    }

    /// What a caller is told about a path that does not route. A peer
    /// learns nothing it was not granted: the same answer for every other
    /// node, known or not, and no "did you mean" paths.
    fn refine_unroutable(&self, request: &CallRequest, err: CallError) -> CallError {
        let Origin::Peer(peer) = &request.origin else {
            return err;
        };
        let other_node = request
            .path
            .parse::<OperationPath>()
            .is_ok_and(|p| !p.is_local(&self.name));
        if other_node {
            return self.no_third_node(peer);
        }
        self.quiet_not_found(peer, &request.path)
    }

    fn quiet_not_found(&self, peer: &PeerOrigin, path: &str) -> CallError {
        CallError::new(
            ErrorCode::NotFound,
            format!(
                "`{}` has no operation at `{path}` for peer `{}`",
                self.name, peer.name
            ),
        )
    }

    fn no_third_node(&self, peer: &PeerOrigin) -> CallError {
        CallError::new(
            ErrorCode::Denied,
            format!(
                "peer `{}` may call only operations of `{}`: calls from peers never reach another node",
                peer.name, self.name
            ),
        )
    }

    /// A call to an operation of this node.
    async fn run_local(
        &self,
        request: CallRequest,
        path: OperationPath,
        in_flight: Option<super::InFlight<'_>>,
    ) -> Result<ResponseEnvelope, CallError> {
        // A handler run's narrow scope, when that alone admits the call.
        let mut narrowed = None;
        let route = match &request.origin {
            Origin::Peer(peer) => {
                self.check_peer_call(peer, &path)?;
                self.routes()
                    .lookup(&path)
                    .map_err(|_| self.quiet_not_found(peer, &request.path))?
            }
            Origin::Plugin(caller) => {
                if let Err(denied) = crate::capabilities::env::check_grant(caller, &path, false) {
                    // A message handler may answer its message without a
                    // grant: the operation checks the scope's bounds.
                    match &caller.ctx.message {
                        Some(scope) if super::messaging::is_message_scoped(&path) => {
                            narrowed = Some(scope.clone());
                        }
                        _ => return Err(denied),
                    }
                }
                self.check_depth(caller, &path)?;
                self.routes().lookup(&path)?
            }
            Origin::Message(scope) => {
                if path.namespace() != scope.plugin {
                    return Err(CallError::new(
                        ErrorCode::Denied,
                        format!(
                            "a message handler run calls only its own plugin `{}`, not {path}",
                            scope.plugin
                        ),
                    ));
                }
                self.routes().lookup(&path)?
            }
            Origin::Client(_) | Origin::Node(_) => self.routes().lookup(&path)?,
        };
        // A plugin's nested call acts for its caller's identity, already
        // checked at the door, and the node acts for itself; clients and
        // peers are checked here, by the one access rule.
        if matches!(request.origin, Origin::Client(_) | Origin::Peer(_)) {
            crate::access::check_scopes(&request.identity, &route.spec.scopes, &path)?;
        }
        // A subscription streams until its caller goes: it has no work to
        // finish, so a drain does not wait for it.
        let _in_flight = in_flight.filter(|_| route.spec.kind != OpKind::Subscription);
        let (mut ctx, input) = self.context(&route, request, path);
        if narrowed.is_some() {
            ctx.message = narrowed;
        }
        self.execute(route, ctx, &input).await
    }

    /// The running call's context — ids, deadline, depth and chain by
    /// origin — and its input.
    fn context(
        &self,
        route: &Route,
        request: CallRequest,
        path: OperationPath,
    ) -> (CallContext, String) {
        let CallRequest {
            origin,
            input,
            identity,
            metadata,
            timeout,
            events,
            path: _,
        } = request;
        // Only a subscription streams events: a query or mutation that
        // emits is refused (`events.emit` says so), whatever the door.
        let events = events.filter(|_| route.spec.kind == OpKind::Subscription);
        let limit = self.operation_timeout(route);
        let outside_deadline = || {
            let timeout = if route.spec.kind == OpKind::Subscription {
                // A subscription runs until the caller goes away.
                timeout
                    .unwrap_or(SUBSCRIPTION_DEADLINE)
                    .min(SUBSCRIPTION_DEADLINE)
            } else {
                // The operation's limit caps the deadline; a caller may
                // only shorten it.
                timeout.map_or(limit, |asked| asked.min(limit))
            };
            Instant::now() + timeout
        };
        let request_id = ulid::Ulid::new().to_string();
        // The caller's own deadline, when it is the shorter one.
        let by_caller =
            route.spec.kind != OpKind::Subscription && timeout.is_some_and(|asked| asked < limit);
        let mut ctx = match origin {
            Origin::Client(_) => top_level(
                request_id,
                identity,
                metadata,
                outside_deadline(),
                path,
                events,
            ),
            Origin::Node(_) => CallContext {
                trusted: true,
                by_node: true,
                ..top_level(
                    request_id,
                    identity,
                    metadata,
                    outside_deadline(),
                    path,
                    events,
                )
            },
            Origin::Message(scope) => CallContext {
                trusted: true,
                message: Some(scope),
                ..top_level(
                    request_id,
                    identity,
                    metadata,
                    outside_deadline(),
                    path,
                    None,
                )
            },
            Origin::Peer(peer) => CallContext {
                request_id,
                parent_request_id: peer.parent_request_id,
                identity,
                metadata,
                deadline: outside_deadline(),
                trusted: false,
                depth: peer.depth,
                chain: vec![path],
                events,
                from_peer: Some(peer.name),
                message: None,
                by_node: false,
                deadline_by_caller: false,
            },
            Origin::Plugin(caller) => {
                let parent = caller.ctx;
                let mut chain = parent.chain;
                chain.push(path);
                let own = Instant::now() + limit;
                CallContext {
                    // The parent's deadline, when it comes first, is the
                    // caller's: this operation's limit did not cut it.
                    deadline_by_caller: parent.deadline < own,
                    request_id,
                    parent_request_id: Some(parent.request_id),
                    identity,
                    metadata,
                    // Inherited, and shortened to this operation's own limit.
                    deadline: parent.deadline.min(own),
                    trusted: true,
                    depth: parent.depth + 1,
                    chain,
                    events: None,
                    from_peer: parent.from_peer,
                    message: None,
                    by_node: false,
                }
            }
        };
        if !ctx.deadline_by_caller {
            ctx.deadline_by_caller = by_caller;
        }
        (ctx, input)
    }

    /// A call to a peer's operation.
    async fn run_remote(
        &self,
        request: CallRequest,
        peer: String,
        path: OperationPath,
    ) -> Result<ResponseEnvelope, CallError> {
        // Decide depth and deadline while the origin is borrowed.
        let (depth, deadline, send_deadline, nested) = match &request.origin {
            Origin::Peer(origin) => return Err(self.no_third_node(origin)),
            Origin::Message(scope) => {
                return Err(CallError::new(
                    ErrorCode::Denied,
                    format!(
                        "a message handler run calls only its own plugin `{}`, not another node",
                        scope.plugin
                    ),
                ));
            }
            Origin::Client(_) | Origin::Node(_) => {
                // Without a deadline of its own the call gets the peer's
                // limit for the operation (or runs as long as a
                // subscription may), so only an explicit one travels.
                let budget = request.timeout.unwrap_or(SUBSCRIPTION_DEADLINE);
                let deadline = Instant::now() + budget.min(SUBSCRIPTION_DEADLINE);
                (0, deadline, request.timeout.is_some(), false)
            }
            Origin::Plugin(caller) => {
                // Grants name peers by name: `/worker-1/echo/*`.
                let named = OperationPath::new(&peer, path.namespace(), path.name())
                    .map_err(|e| CallError::new(ErrorCode::NotFound, e.to_string()))?;
                crate::capabilities::env::check_grant(caller, &named, true)?;
                if let Some(origin) = &caller.ctx.from_peer {
                    return Err(CallError::new(
                        ErrorCode::Denied,
                        format!(
                            "plugin `{}` is serving a call from peer `{origin}` and may not pass it on to `{peer}`: calls from peers never reach a third node",
                            caller.plugin
                        ),
                    ));
                }
                self.check_depth(caller, &named)?;
                (caller.ctx.depth + 1, caller.ctx.deadline, true, true)
            }
        };
        let mut request = request;
        if nested {
            // A nested call streams no events of its own.
            request.events = None;
        }
        let call = PeerCall {
            path,
            request,
            depth,
            deadline,
            send_deadline,
        };
        self.peers().call(&peer, call).await
    }

    /// A peer may call only what its `allow` list covers, no deeper than
    /// the depth bound.
    fn check_peer_call(&self, peer: &PeerOrigin, path: &OperationPath) -> Result<(), CallError> {
        crate::access::check_peer_allow(peer, path, &self.name)?;
        if peer.depth > self.limits.max_call_depth {
            return Err(CallError::new(
                ErrorCode::ResourceExhausted,
                format!(
                    "call depth limit {} reached at {path} on `{}` (called from `{}`); nodes are calling each other in a cycle, or raise `limits.max_call_depth`",
                    self.limits.max_call_depth, self.name, peer.name
                ),
            ));
        }
        Ok(())
    }

    /// A plugin's nested call may not go deeper than the bound.
    fn check_depth(&self, caller: &PluginCaller, path: &OperationPath) -> Result<(), CallError> {
        let parent = &caller.ctx;
        if parent.depth < self.limits.max_call_depth {
            return Ok(());
        }
        // The last few hops show the cycle without flooding the message.
        let skip = parent.chain.len().saturating_sub(4);
        let mut chain: Vec<String> = parent
            .chain
            .iter()
            .skip(skip)
            .map(ToString::to_string)
            .collect();
        if skip > 0 {
            chain.insert(0, "…".to_owned());
        }
        Err(CallError::new(
            ErrorCode::ResourceExhausted,
            format!(
                "call depth limit {} reached at {path} (chain: {} -> {path}); plugins are calling each other in a cycle, or raise `limits.max_call_depth`",
                self.limits.max_call_depth,
                chain.join(" -> ")
            ),
        ))
    }

    /// Parses a path: this node's (through any alias), a peer's, or an
    /// error naming the nodes it could have meant.
    fn resolve(&self, asked: &str) -> Result<Target, CallError> {
        let path: OperationPath = asked.parse().map_err(|e: hearth_registry::PathError| {
            let not_found = self.routes().not_found(asked);
            CallError::new(ErrorCode::NotFound, format!("{e}; {not_found}"))
        })?;
        if path.is_local(&self.name) {
            return Ok(Target::Local(path.to_local()));
        }
        let peers = self.peers();
        if peers.is_peer(path.node()) {
            return Ok(Target::Remote {
                peer: path.node().to_owned(),
                path: path.to_local(),
            });
        }
        let names = peers.peer_names();
        let known = if names.is_empty() {
            "has no peers".to_owned()
        } else {
            format!("knows the peers {}", names.join(", "))
        };
        Err(CallError::new(
            ErrorCode::NotFound,
            format!(
                "unknown node `{}` in {path}: this node is `{}` (or `{LOCAL_NODE}`) and {known}; add a peer under [peers] in stack.toml",
                path.node(),
                self.name
            ),
        ))
    }

    /// Validates input and runs the route with `ctx`.
    async fn execute(
        &self,
        route: Arc<Route>,
        ctx: CallContext,
        input: &str,
    ) -> Result<ResponseEnvelope, CallError> {
        let started = Instant::now();
        let input_value: serde_json::Value = serde_json::from_str(input).map_err(|e| {
            CallError::new(
                ErrorCode::InvalidInput,
                format!("input to `{}` is not JSON: {e}", route.spec.path),
            )
        })?;
        if let Err(err) = route.validate_input(&input_value) {
            if matches!(route.owner, Owner::Native(index) if self.native.has_secret_input(index)) {
                return Err(CallError::new(
                    ErrorCode::InvalidInput,
                    format!(
                        "input to `{}` is not valid at `{}` (details withheld: this input holds a secret)",
                        err.path, err.field
                    ),
                ));
            }
            return Err(err.into());
        }
        let request_id = ctx.request_id.clone();
        let parent_request_id = ctx.parent_request_id.clone();
        let depth = ctx.depth;
        let result = match &route.owner {
            Owner::Native(index) => self
                .native
                .handle(self, &ctx, *index, input_value)
                .await
                .map(|output| (output, Source::Host)),
            Owner::Plugin(name) => self.run_plugin(name, &route, ctx, input).await,
        };
        tracing::debug!(
            path = %route.spec.path,
            %request_id,
            parent_request_id = parent_request_id.as_deref().unwrap_or(""),
            depth,
            micros = started.elapsed().as_micros() as u64,
            outcome = result.as_ref().map(|_| "ok").unwrap_or_else(|e| e.code.as_str()),
            "call"
        );
        let (output, source) = result?;
        Ok(ResponseEnvelope {
            output,
            source,
            request_id,
            parent_request_id,
        })
    }

    async fn run_plugin(
        &self,
        name: &str,
        route: &Route,
        ctx: CallContext,
        input: &str,
    ) -> Result<(serde_json::Value, Source), CallError> {
        let plugin = self.plugins.get(name).ok_or_else(|| {
            CallError::new(
                ErrorCode::Unavailable,
                format!("plugin `{name}` is not loaded"),
            )
        })?;
        let output = self
            .runtime
            .call(
                plugin,
                self.resources.clone(),
                route.spec.path.name(),
                input,
                ctx,
            )
            .await?;
        let output = serde_json::from_str(&output).map_err(|e| {
            CallError::new(
                ErrorCode::Failed,
                format!(
                    "plugin `{}` returned output that is not JSON: {e}",
                    plugin.name
                ),
            )
        })?;
        Ok((output, Source::Plugin(plugin.name.clone())))
    }

    /// The longest `route` may run: its plugin's setting for it, or
    /// `limits.call_timeout_ms` for native operations.
    fn operation_timeout(&self, route: &Route) -> Duration {
        let limit = match &route.owner {
            Owner::Plugin(name) => self
                .plugins
                .get(name)
                .map(|plugin| plugin.settings.timeout_for(route.spec.path.name())),
            Owner::Native(_) => None,
        }
        .unwrap_or(Duration::from_millis(self.limits.call_timeout_ms));
        limit.min(MAX_DEADLINE)
    }
}
