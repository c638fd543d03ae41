//! A subscription's events, streamed to its caller.
//!
//! Register the operation with [`Operations::subscription`](crate::Operations::subscription)
//! and declare what it emits with [`Operation::emits`](crate::Operation::emits);
//! the handler then loops while [`subscribed`] holds, sending each event
//! with [`emit`], and returns when the caller has gone:
//!
//! ```no_run
//! # use hearth_sdk::prelude::*;
//! #[derive(Deserialize, JsonSchema)]
//! struct Empty {}
//!
//! #[derive(Serialize, JsonSchema)]
//! struct Tick { n: u64 }
//!
//! #[derive(Serialize, JsonSchema)]
//! struct Done { ticks: u64 }
//!
//! fn ticks(_cx: &Context, _input: Empty) -> Result<Done, CallError> {
//!     let mut n = 0;
//!     while events::subscribed() {
//!         events::emit(&Tick { n })?;
//!         n += 1;
//!     }
//!     Ok(Done { ticks: n })
//! }
//!
//! // In `Plugin::operations`:
//! # fn register(ops: &mut Operations) {
//! ops.subscription("ticks", "Stream ticks until the caller leaves.", ticks)
//!     .emits::<Tick>();
//! # }
//! ```

use serde::Serialize;

use crate::CallError;
use crate::bindings::hearth::node::events as wit_events;

/// Sends one event to the subscriber, waiting while it is behind. Fails
/// with `unavailable` once the subscriber has gone: return then.
pub fn emit<T: Serialize>(event: &T) -> Result<(), CallError> {
    let text = serde_json::to_string(event)
        .map_err(|e| CallError::failed(format!("cannot encode the event: {e}")))?;
    wit_events::emit(&text)
}

/// Records a node event of kind `plugin.<this plugin>.<kind>` with `data`
/// (serialized to a JSON object): what an operator following
/// `/node/host/events` should see, such as a certificate renewed.
pub fn notify<T: Serialize>(kind: &str, data: &T) -> Result<(), CallError> {
    let text = serde_json::to_string(data)
        .map_err(|e| CallError::failed(format!("cannot encode the event: {e}")))?;
    wit_events::notify(kind, &text)
}

/// Sends one event that is already JSON text.
pub fn emit_json(event: &str) -> Result<(), CallError> {
    wit_events::emit(event)
}

/// True while the caller of this subscription still takes events.
pub fn subscribed() -> bool {
    wit_events::subscribed()
}
