//! Native operations: what the node itself serves, under `/node/host/*`,
//! `/node/vault/*`, `/node/msg/*`, `/node/broker/*` and `/node/clients/*`.
//!
//! Each is a type implementing [`NativeOp`] — typed input and output, spec
//! and handler in one place — listed once in [`NativeTable::new`]. The
//! CLI's `ops`, `plugins`, `peers`, `version`, `id` and `vault` commands are
//! calls to these, so any client sees exactly what the CLI sees; the output
//! types are public so the CLI prints from them.

pub mod broker;
pub mod clients;
pub mod host;
pub mod msg;
pub mod vault;

use std::future::Future;
use std::pin::Pin;

use hearth_registry::{CallError, ErrorCode, OpKind, OperationSpec, SpecError};
use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Node;
use crate::call::{CallContext, EventSender};

/// One native operation.
pub trait NativeOp: 'static {
    /// Its input, validated against the derived schema before `run`.
    type Input: DeserializeOwned + JsonSchema + Send;
    /// Its output.
    type Output: Serialize + JsonSchema;
    /// `host` or `vault`.
    const NAMESPACE: &'static str;
    /// The operation's name.
    const NAME: &'static str;
    /// Query, mutation or subscription.
    const KIND: OpKind = OpKind::Query;
    /// One line for `host ops`.
    const DESCRIPTION: &'static str;
    /// Scopes a caller must hold.
    const SCOPES: &'static [&'static str] = &[];
    /// True when the input holds a secret: validation errors name the
    /// field but never echo the value.
    const SECRET_INPUT: bool = false;

    /// Runs the operation for the call `ctx`.
    fn run(
        node: &Node,
        ctx: &CallContext,
        input: Self::Input,
    ) -> impl Future<Output = Result<Self::Output, CallError>> + Send;
}

/// A native handler with its types erased.
type Handler = for<'a> fn(
    &'a Node,
    &'a CallContext,
    serde_json::Value,
) -> Pin<
    Box<dyn Future<Output = Result<serde_json::Value, CallError>> + Send + 'a>,
>;

struct Entry {
    spec: OperationSpec,
    secret_input: bool,
    handle: Handler,
}

/// Every native operation; routes name them by index.
pub struct NativeTable {
    entries: Vec<Entry>,
}

/// Where a subscription's events go: its call's sink, or `invalid-input`
/// for a caller that cannot take events.
fn event_sink(ctx: &CallContext, path: &str) -> Result<EventSender, CallError> {
    ctx.events.clone().ok_or_else(|| {
        CallError::new(
            ErrorCode::InvalidInput,
            format!("{path} streams events: call it as a subscription"),
        )
    })
}

/// Streams `kept`, then each value `live` brings that `render` turns into
/// an event, until the caller goes away or the channel closes; returns how
/// many events were sent. A follower that lags skips what it missed.
async fn follow<T: Clone>(
    sink: &EventSender,
    kept: impl IntoIterator<Item = String>,
    mut live: tokio::sync::broadcast::Receiver<T>,
    mut render: impl FnMut(T) -> Option<String>,
) -> u64 {
    let mut sent = 0;
    for text in kept {
        if sink.send(text).await.is_err() {
            return sent;
        }
        sent += 1;
    }
    loop {
        match live.recv().await {
            Ok(value) => {
                let Some(text) = render(value) else { continue };
                if sink.send(text).await.is_err() {
                    return sent;
                }
                sent += 1;
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return sent,
        }
    }
}

/// No input.
#[derive(Debug, Clone, Copy, serde::Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

fn erased<'a, Op: NativeOp>(
    node: &'a Node,
    ctx: &'a CallContext,
    input: serde_json::Value,
) -> Pin<Box<dyn Future<Output = Result<serde_json::Value, CallError>> + Send + 'a>>
where
    Op::Output: Send,
{
    Box::pin(async move {
        let input: Op::Input = serde_json::from_value(input).map_err(|e| {
            let detail = if Op::SECRET_INPUT {
                "details withheld: this input holds a secret".to_owned()
            } else {
                e.to_string()
            };
            CallError::new(
                ErrorCode::InvalidInput,
                format!(
                    "input to `/node/{}/{}` is not valid: {detail}",
                    Op::NAMESPACE,
                    Op::NAME
                ),
            )
        })?;
        let output = Op::run(node, ctx, input).await?;
        serde_json::to_value(output)
            .map_err(|e| CallError::new(ErrorCode::Failed, format!("cannot encode output: {e}")))
    })
}

fn entry<Op: NativeOp>() -> Result<Entry, SpecError>
where
    Op::Output: Send,
{
    let input = schemars::schema_for!(Op::Input).as_value().to_string();
    let output = schemars::schema_for!(Op::Output).as_value().to_string();
    let scopes = Op::SCOPES.iter().map(|s| (*s).to_owned()).collect();
    let spec = OperationSpec::from_parts(
        Op::NAMESPACE,
        Op::NAME,
        Op::KIND,
        Op::DESCRIPTION,
        &input,
        &output,
        scopes,
    )?;
    Ok(Entry {
        spec,
        secret_input: Op::SECRET_INPUT,
        handle: erased::<Op>,
    })
}

impl NativeTable {
    /// The table of every native operation.
    pub fn new() -> Self {
        let entries = [
            entry::<host::Ping>(),
            entry::<host::Echo>(),
            entry::<host::Version>(),
            entry::<host::Ops>(),
            entry::<host::Plugins>(),
            entry::<host::Peers>(),
            entry::<host::Id>(),
            entry::<host::Metrics>(),
            entry::<host::Events>(),
            entry::<host::Tools>(),
            entry::<host::Changes>(),
            entry::<vault::Status>(),
            entry::<vault::Unlock>(),
            entry::<vault::Lock>(),
            entry::<vault::SecretSet>(),
            entry::<vault::SecretList>(),
            entry::<vault::SecretRemove>(),
            entry::<msg::Send>(),
            entry::<msg::Post>(),
            entry::<msg::InboxList>(),
            entry::<msg::OutboxList>(),
            entry::<msg::Requeue>(),
            entry::<msg::Drop>(),
            entry::<msg::Topics>(),
            entry::<msg::Subscribe>(),
            entry::<msg::Deliver>(),
            entry::<broker::Publishes>(),
            entry::<broker::Subscriptions>(),
            entry::<broker::Stats>(),
            entry::<clients::List>(),
            entry::<clients::Decide>(),
            entry::<clients::Approve>(),
            entry::<clients::Revoke>(),
            entry::<clients::Requests>(),
        ];
        let entries = entries
            .into_iter()
            .filter_map(|entry| match entry {
                Ok(entry) => Some(entry),
                // Derived schemas always form valid specs; a unit test
                // checks every entry.
                Err(err) => {
                    tracing::error!(error = %err, "a native operation's spec is invalid");
                    None
                }
            })
            .collect();
        NativeTable { entries }
    }

    /// The specs to route, with the index a route names each by.
    pub fn specs(&self) -> impl Iterator<Item = (usize, OperationSpec)> + '_ {
        self.entries.iter().map(|e| e.spec.clone()).enumerate()
    }

    /// True when native operation `index` takes a secret.
    pub fn has_secret_input(&self, index: usize) -> bool {
        self.entries.get(index).is_some_and(|e| e.secret_input)
    }

    /// Runs native operation `index` with validated `input`.
    pub async fn handle(
        &self,
        node: &Node,
        ctx: &CallContext,
        index: usize,
        input: serde_json::Value,
    ) -> Result<serde_json::Value, CallError> {
        let entry = self.entries.get(index).ok_or_else(|| {
            CallError::new(
                ErrorCode::NotFound,
                format!("no native operation number {index}"),
            )
        })?;
        (entry.handle)(node, ctx, input).await
    }
}

impl Default for NativeTable {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_native_operation_has_a_valid_spec() {
        let table = NativeTable::new();
        assert_eq!(table.entries.len(), 34);
        let index = |path: &str| {
            table
                .specs()
                .find(|(_, spec)| spec.path.to_string() == path)
                .map(|(i, _)| i)
                .unwrap()
        };
        assert!(table.has_secret_input(index("/node/vault/unlock")));
        assert!(!table.has_secret_input(index("/node/host/ping")));
    }
}
