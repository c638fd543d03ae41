//! Plugins' timers: the operation a plugin's manifest names in `[timer]`,
//! called by the node itself through the pipeline ([`Origin::Node`]) once
//! when the node starts and then every period (`timer_s` in `stack.toml`
//! overrides the manifest's). What it is for: work nobody asks for but
//! somebody must do — renewing certificates, making sure a managed process
//! runs again after the node restarts. Runs of one plugin never overlap; a
//! run that fails is logged and the next comes on schedule. The timers
//! stop with the node, and while it drains.

use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::call::{CallRequest, Identity, OperationEnv, Origin};
use crate::ops::Node;

/// Starts one timer per plugin that has one.
pub(super) fn start(node: &Arc<Node>) {
    for plugin in node.plugins.values() {
        let Some((operation, every)) = &plugin.settings.timer else {
            continue;
        };
        let path = format!(
            "/{}/{}/{operation}",
            hearth_registry::LOCAL_NODE,
            plugin.manifest.namespace()
        );
        tokio::spawn(run(Arc::downgrade(node), plugin.name.clone(), path, *every));
    }
}

async fn run(node: Weak<Node>, plugin: String, path: String, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(node) = node.upgrade() else { return };
        if node.is_draining() {
            return;
        }
        let request = CallRequest {
            origin: Origin::Node("timer"),
            path: path.clone(),
            input: "{}".to_owned(),
            identity: Identity::new(format!("timer:{plugin}"), Vec::new()),
            metadata: Vec::new(),
            timeout: None,
            events: None,
        };
        match node.call(request).await {
            Ok(_) => tracing::debug!(plugin, operation = %path, "timer ran"),
            Err(err) => {
                tracing::warn!(plugin, operation = %path, error = %err, next_in_s = every.as_secs(), "timer run failed")
            }
        }
    }
}
