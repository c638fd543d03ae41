//! The `events` capability: a subscription's events, streamed to its
//! caller while the subscription runs.
//!
//! No grant: a plugin may always stream events to whoever subscribed to
//! one of its operations, and to nobody else. The events go to the call's
//! event sender (set by the front door that serves the subscription); `emit` waits while the caller is behind, so a
//! slow subscriber slows the plugin instead of growing a queue.
//!
//! `notify` records a node event instead, named after the plugin
//! (`plugin.<name>.<kind>`), through the [`NodeEventSink`] the node puts in
//! the call's resources — held back, like kv writes, until the call
//! succeeds: an event never reports work a failed call rolled back.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use hearth_registry::{CallError, ErrorCode};
use wasmtime::component::{HasData, Linker};

use crate::runtime::bindings::{self, hearth::node::events, wit};
use crate::runtime::{CallState, Staged};

/// Where `notify` records node events; the node's event log implements it.
pub trait NodeEventSink: Send + Sync {
    /// Records an event of `kind` with `data`.
    fn record(&self, kind: &str, data: serde_json::Value);
}

/// The node's event log, as the call's resources hold it.
pub struct NodeEventLog(pub Arc<dyn NodeEventSink>);

/// Node events one call may record.
const MAX_NOTICES: usize = 64;

/// A call's node events, recorded when it succeeds.
struct Notices {
    log: Arc<NodeEventLog>,
    events: Vec<(String, serde_json::Value)>,
}

impl Staged for Notices {
    fn commit(self: Box<Self>) -> Pin<Box<dyn Future<Output = Result<(), CallError>> + Send>> {
        for (kind, data) in self.events {
            self.log.0.record(&kind, data);
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }

    fn order(&self) -> u8 {
        1
    }
}

/// Largest `data` of a plugin's node event.
const MAX_NOTIFY_BYTES: usize = 16 << 10;

/// `events` as one call's plugin sees it.
pub struct Events<'a>(&'a mut CallState);

struct EventsData;

impl HasData for EventsData {
    type Data<'a> = Events<'a>;
}

/// Links `hearth:node/events`.
pub fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    events::add_to_linker::<CallState, EventsData>(linker, |state| Events(state))
}

impl events::Host for Events<'_> {
    async fn emit(&mut self, event: String) -> wasmtime::Result<Result<(), wit::CallError>> {
        let caller = self.0.caller();
        let Some(sink) = caller.ctx.events.clone() else {
            return bindings::to_wit(Err(CallError::new(
                ErrorCode::Denied,
                format!(
                    "plugin `{}` emitted an event outside a subscription called from outside the node; only a subscription's handler streams events (register the operation with `subscription`)",
                    caller.plugin
                ),
            )));
        };
        if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&event) {
            return bindings::to_wit(Err(CallError::new(
                ErrorCode::InvalidInput,
                format!("an event must be JSON text: {e}"),
            )));
        }
        let sent = sink.send(event).await.map_err(|_| {
            CallError::new(
                ErrorCode::Unavailable,
                "the subscriber has gone; end the subscription",
            )
        });
        bindings::to_wit(sent)
    }

    async fn notify(
        &mut self,
        kind: String,
        data: String,
    ) -> wasmtime::Result<Result<(), wit::CallError>> {
        let result = (|| {
            let valid_kind = !kind.is_empty()
                && kind.len() <= 64
                && kind
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.".contains(&b));
            if !valid_kind {
                return Err(CallError::new(
                    ErrorCode::InvalidInput,
                    format!(
                        "event kind `{kind}` is not 1 to 64 lowercase letters, digits, `-` and `.`"
                    ),
                ));
            }
            if data.len() > MAX_NOTIFY_BYTES {
                return Err(CallError::new(
                    ErrorCode::ResourceExhausted,
                    "a node event's data is at most 16 KiB",
                ));
            }
            let data: serde_json::Value = serde_json::from_str(&data)
                .ok()
                .filter(serde_json::Value::is_object)
                .ok_or_else(|| {
                    CallError::new(
                        ErrorCode::InvalidInput,
                        "a node event's data must be a JSON object",
                    )
                })?;
            let log = self.0.resource::<NodeEventLog>("node events")?;
            let kind = format!("plugin.{}.{kind}", self.0.caller().plugin);
            let notices = self
                .0
                .staged(|| Notices {
                    log,
                    events: Vec::new(),
                })
                .ok_or_else(|| {
                    CallError::new(ErrorCode::Failed, "events: this call's notices are lost")
                })?;
            if notices.events.len() >= MAX_NOTICES {
                return Err(CallError::new(
                    ErrorCode::ResourceExhausted,
                    format!("a call records at most {MAX_NOTICES} node events"),
                ));
            }
            notices.events.push((kind, data));
            Ok(())
        })();
        bindings::to_wit(result)
    }

    async fn subscribed(&mut self) -> wasmtime::Result<bool> {
        Ok(self
            .0
            .caller()
            .ctx
            .events
            .as_ref()
            .is_some_and(|sink| !sink.is_closed()))
    }
}
