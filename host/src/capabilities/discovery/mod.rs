//! The `discovery` capability: a dynamic plugin telling the host its
//! operations changed.
//!
//! No grant. The notice names the calling plugin (never another) and goes
//! to the node, which asks the plugin's `specs` again in a fresh instance,
//! validates them, swaps its routes and announces the change
//! (the node's `rediscover`). Notices while the plugin lists its operations, and
//! from plugins whose manifest does not say `dynamic = true`, are ignored.

use std::sync::Arc;

use tokio::sync::mpsc;
use wasmtime::component::{HasData, Linker};

use crate::runtime::CallState;
use crate::runtime::bindings::hearth::node::discovery;

/// Where notices go: the node's discovery task.
pub struct OperationChanges(mpsc::UnboundedSender<Arc<str>>);

impl OperationChanges {
    /// A sender for the capability and the receiver the node reads.
    pub fn channel() -> (Self, mpsc::UnboundedReceiver<Arc<str>>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (OperationChanges(tx), rx)
    }
}

/// `discovery` as one call's plugin sees it.
pub struct Discovery<'a>(&'a mut CallState);

struct DiscoveryData;

impl HasData for DiscoveryData {
    type Data<'a> = Discovery<'a>;
}

/// Links `hearth:node/discovery`.
pub fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    discovery::add_to_linker::<CallState, DiscoveryData>(linker, |state| Discovery(state))
}

impl discovery::Host for Discovery<'_> {
    async fn operations_changed(&mut self) -> wasmtime::Result<()> {
        // While listing its operations a plugin has no resources: the host
        // is asking already, so the notice has nothing to add.
        if let Ok(changes) = self.0.resource::<OperationChanges>("discovery") {
            let _ = changes.0.send(self.0.caller().plugin.clone());
        }
        Ok(())
    }
}
