//! `/node/clients/*`: the operator's side of client identities — list the
//! keys the node has seen, answer new clients' requests (the first answer
//! wins), approve or change scopes ahead of time, revoke, and follow the
//! requests as they come (what `host approve --watch` runs on).
//!
//! All of them need `clients:admin`; the node keeps the records in
//! `clients.db` ([`crate::access`]).

use hearth_registry::{CallError, ErrorCode, OpKind};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Empty, NativeOp};
use crate::access::{ApprovalEvent, ClientRecord};
use crate::call::CallContext;
use crate::ops::Node;

const ADMIN: &[&str] = &["clients:admin"];

/// `/node/clients/list`.
pub struct List;

impl NativeOp for List {
    type Input = Empty;
    type Output = Vec<ClientRecord>;
    const NAMESPACE: &'static str = "clients";
    const NAME: &'static str = "list";
    const DESCRIPTION: &'static str =
        "Every client key this node has seen: name, status, scopes, who decided.";
    const SCOPES: &'static [&'static str] = ADMIN;

    async fn run(node: &Node, _: &CallContext, _: Empty) -> Result<Vec<ClientRecord>, CallError> {
        node.access().clients().await
    }
}

/// An answer to a waiting client.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DecideInput {
    /// The client's key, 64 hex digits.
    pub key: String,
    /// Let it in (true) or refuse it (false).
    pub approve: bool,
    /// Scopes it holds when let in, e.g. `["echo:read", "docker:*"]`.
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// `/node/clients/decide`.
pub struct Decide;

impl NativeOp for Decide {
    type Input = DecideInput;
    type Output = ClientRecord;
    const NAMESPACE: &'static str = "clients";
    const NAME: &'static str = "decide";
    const KIND: OpKind = OpKind::Mutation;
    const DESCRIPTION: &'static str =
        "Answer a waiting client's request; the first answer wins, later ones get `conflict`.";
    const SCOPES: &'static [&'static str] = ADMIN;

    async fn run(
        node: &Node,
        ctx: &CallContext,
        input: DecideInput,
    ) -> Result<ClientRecord, CallError> {
        let key = crate::access::parse_key(&input.key)?;
        check_scopes(&input.scopes)?;
        let record = node
            .access()
            .decide(&key, input.approve, input.scopes, &ctx.identity)
            .await?;
        Ok(record)
    }
}

/// Scopes to give a client.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveInput {
    /// The client's key, 64 hex digits.
    pub key: String,
    /// Scopes it holds, e.g. `["echo:read", "docker:*"]`.
    pub scopes: Vec<String>,
}

/// `/node/clients/approve`.
pub struct Approve;

impl NativeOp for Approve {
    type Input = ApproveInput;
    type Output = ClientRecord;
    const NAMESPACE: &'static str = "clients";
    const NAME: &'static str = "approve";
    const KIND: OpKind = OpKind::Mutation;
    const DESCRIPTION: &'static str = "Let a client key in with these scopes, whatever its state (ahead of its first request, or to change its scopes); its sessions end.";
    const SCOPES: &'static [&'static str] = ADMIN;

    async fn run(
        node: &Node,
        ctx: &CallContext,
        input: ApproveInput,
    ) -> Result<ClientRecord, CallError> {
        let key = crate::access::parse_key(&input.key)?;
        check_scopes(&input.scopes)?;
        let record = node
            .access()
            .approve(&key, input.scopes, &ctx.identity)
            .await?;
        Ok(record)
    }
}

/// A client key.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyInput {
    /// The client's key, 64 hex digits.
    pub key: String,
}

/// `/node/clients/revoke`.
pub struct Revoke;

impl NativeOp for Revoke {
    type Input = KeyInput;
    type Output = ClientRecord;
    const NAMESPACE: &'static str = "clients";
    const NAME: &'static str = "revoke";
    const KIND: OpKind = OpKind::Mutation;
    const DESCRIPTION: &'static str =
        "Shut a client key out: its sessions end and its next proof is refused.";
    const SCOPES: &'static [&'static str] = ADMIN;

    async fn run(
        node: &Node,
        ctx: &CallContext,
        input: KeyInput,
    ) -> Result<ClientRecord, CallError> {
        let key = crate::access::parse_key(&input.key)?;
        node.access().revoke(&key, &ctx.identity).await
    }
}

/// How a watch ended.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct WatchEnd {
    /// Events streamed.
    pub delivered: u64,
}

/// `/node/clients/requests`.
pub struct Requests;

impl NativeOp for Requests {
    type Input = Empty;
    type Output = WatchEnd;
    const NAMESPACE: &'static str = "clients";
    const NAME: &'static str = "requests";
    const KIND: OpKind = OpKind::Subscription;
    const DESCRIPTION: &'static str = "Follow new clients' requests to be let in: each open one first, then `request`, `decided` and `withdrawn` events as they happen.";
    const SCOPES: &'static [&'static str] = ADMIN;

    async fn run(node: &Node, ctx: &CallContext, _: Empty) -> Result<WatchEnd, CallError> {
        let sink = super::event_sink(ctx, "/node/clients/requests")?;
        let (open, live) = node.access().watch();
        let text = |event: &ApprovalEvent| serde_json::to_string(event).ok();
        let kept = open.iter().filter_map(text);
        let delivered = super::follow(&sink, kept, live, |e| text(&e)).await;
        Ok(WatchEnd { delivered })
    }
}

/// Scopes are `*`, `ns:*` or `ns:name` (lowercase words, digits, `-`, `_`).
fn check_scopes(scopes: &[String]) -> Result<(), CallError> {
    let word = |w: &str| {
        !w.is_empty()
            && w.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    };
    for scope in scopes {
        let valid = scope == "*"
            || scope
                .split_once(':')
                .is_some_and(|(ns, name)| word(ns) && (name == "*" || word(name)));
        if !valid {
            return Err(CallError::new(
                ErrorCode::InvalidInput,
                format!(
                    "`{scope}` is not a scope: write `namespace:name` (`docker:read`), `namespace:*` or `*`"
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_checked_for_shape() {
        let ok = |s: &[&str]| check_scopes(&s.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert!(ok(&["*", "docker:*", "vault:sign", "my-ns:read_all"]).is_ok());
        for bad in [
            "",
            "docker",
            "docker:",
            ":read",
            "Docker:read",
            "a:b:c",
            "a b:c",
        ] {
            assert!(ok(&[bad]).is_err(), "{bad}");
        }
    }
}
