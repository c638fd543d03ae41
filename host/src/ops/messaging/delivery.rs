//! The broker's worker: delivers queued messages to each recipient in
//! batches (`/<member>/msg/deliver`, or this node's own inbox), and backs
//! off per recipient while it is away. A recipient that connects gets its
//! queue at once.

use std::sync::{Arc, Weak};

use hearth_registry::{CallError, ErrorCode};
use tokio::sync::watch;

use super::{DELIVERY_BATCH, HOP_TIMEOUT, Messaging, after, backoff, until};
use crate::call::{CallRequest, OperationEnv};
use crate::messaging::broker::{BrokerStore, DueDeliveries};
use crate::ops::Node;
use crate::ops::native::msg::{DeliverInput, DeliverOutput};
use crate::ops::peers::PeerState;

pub(super) async fn run(
    node: Weak<Node>,
    messaging: Arc<Messaging>,
    mut changes: Option<watch::Receiver<u64>>,
) {
    let Some(store) = messaging.stores.broker.clone() else {
        return;
    };
    let mut last_prune = 0;
    loop {
        let delivered = {
            let Some(node) = node.upgrade() else { return };
            if crate::messaging::db::now_ms() - last_prune > 60_000 {
                last_prune = crate::messaging::db::now_ms();
                prune(&messaging, &store).await;
            }
            round(&node, &messaging, &store).await
        };
        let wait = match delivered {
            Ok(n) if n > 0 => continue,
            Ok(_) => until(store.next_due().await.ok().flatten()),
            Err(err) => {
                tracing::warn!(error = %err, "broker: cannot read or update its store");
                super::IDLE_POLL
            }
        };
        let peer_change = async {
            match changes.as_mut() {
                Some(changes) => changes.changed().await.is_ok(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = messaging.deliveries_ready.notified() => {}
            changed = peer_change => {
                if !changed {
                    changes = None;
                }
                if let Some(node) = node.upgrade() {
                    wake_connected(&node, &store).await;
                }
            }
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// Makes the queues of every connected member due now.
async fn wake_connected(node: &Node, store: &BrokerStore) {
    for peer in node.peers().status() {
        if peer.state == PeerState::Connected {
            let _ = store.wake(peer.public_key).await;
        }
    }
}

/// Forgets messages older than the dedupe window that were delivered.
async fn prune(messaging: &Messaging, store: &BrokerStore) {
    let Some(broker) = &messaging.config.serve_broker else {
        return;
    };
    let cutoff = crate::messaging::db::now_ms()
        - i64::try_from(broker.dedupe_window.as_millis()).unwrap_or(i64::MAX);
    match store.prune(cutoff).await {
        Ok(0) => {}
        Ok(n) => tracing::debug!(
            messages = n,
            "broker: forgot messages past the dedupe window"
        ),
        Err(err) => tracing::warn!(error = %err, "broker: cannot prune"),
    }
}

/// Delivers every due queue once, concurrently; how many messages went.
async fn round(
    node: &Node,
    messaging: &Messaging,
    store: &BrokerStore,
) -> Result<usize, crate::messaging::DbError> {
    let due = store.due(DELIVERY_BATCH).await?;
    if due.is_empty() {
        return Ok(0);
    }
    let own_key = node.public_key().to_owned();
    let deliveries = due
        .into_iter()
        .map(|queue| deliver(node, messaging, store, &own_key, queue));
    let results = futures_util::future::join_all(deliveries).await;
    let mut sent = 0;
    for result in results {
        sent += result?;
    }
    Ok(sent)
}

async fn deliver(
    node: &Node,
    messaging: &Messaging,
    store: &BrokerStore,
    own_key: &str,
    queue: DueDeliveries,
) -> Result<usize, crate::messaging::DbError> {
    let ids: Vec<String> = queue
        .messages
        .iter()
        .map(|m| m.broker_message_id.clone())
        .collect();
    let path = if queue.recipient_key == own_key {
        Some("/node/msg/deliver".to_owned())
    } else {
        crate::ops::native::msg::hex_key(&queue.recipient_key)
            .and_then(|k| node.peers().peer_by_key(&k))
            .map(|name| format!("/{name}/msg/deliver"))
    };
    let result = match path {
        Some(path) => {
            let input = serde_json::to_string(&DeliverInput {
                messages: queue.messages,
            })
            .map_err(|e| CallError::new(ErrorCode::Failed, e.to_string()));
            match input {
                Ok(input) => node
                    .call(CallRequest::from_node(
                        "messaging",
                        path,
                        input,
                        HOP_TIMEOUT,
                    ))
                    .await
                    .and_then(|envelope| {
                        serde_json::from_value::<DeliverOutput>(envelope.output).map_err(|e| {
                            CallError::new(
                                ErrorCode::Failed,
                                format!("the recipient's answer is not understood: {e}"),
                            )
                        })
                    }),
                Err(err) => Err(err),
            }
        }
        None => Err(CallError::new(
            ErrorCode::NotFound,
            format!(
                "no peer of this broker has key {}: add it to [peers] to deliver its messages",
                queue.recipient_key
            ),
        )),
    };
    match result {
        Ok(_) => {
            let n = ids.len();
            store.delivered(queue.recipient_key, ids).await?;
            Ok(n)
        }
        Err(err) => {
            let wait = backoff(
                queue.attempts,
                messaging.config.retry_min,
                messaging.config.retry_max,
            );
            tracing::debug!(recipient = %queue.recipient_key, error = %err, retry_ms = wait.as_millis() as u64, "broker: delivery failed");
            store
                .retry(
                    queue.recipient_key,
                    ids,
                    format!("{}: {}", err.code.as_str(), err.message),
                    after(wait),
                )
                .await?;
            Ok(0)
        }
    }
}
