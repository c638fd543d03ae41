//! The `events` capability: a subscription's events, streamed to its
//! caller while the subscription runs.
//!
//! No grant: a plugin may always stream events to whoever subscribed to
//! one of its operations, and to nobody else. The events go to the call's
//! event sender (set by the front door that serves the subscription); `emit` waits while the caller is behind, so a
//! slow subscriber slows the plugin instead of growing a queue.

use hearth_registry::{CallError, ErrorCode};
use wasmtime::component::{HasData, Linker};

use crate::runtime::CallState;
use crate::runtime::bindings::{self, hearth::node::events, wit};

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
