//! The outbox's worker: claims due rows, hands them to the broker in
//! batches (`/<broker>/broker/publish`), and records what became of each.
//!
//! A row the broker acknowledged is done; one it refused for its content
//! (a conflict, invalid input) is dead at once; one it refused otherwise
//! is retried with backoff and counts toward `max_attempts`; a broker that
//! cannot be reached does not count against the message (only `max_age`
//! bounds that wait). Before sending it keeps the broker's topic set for
//! this node current, and keeps `max_age` inside the broker's dedupe
//! window.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use hearth_registry::{CallError, ErrorCode};
use tokio::sync::watch;

use super::{BrokerRoute, HOP_TIMEOUT, Messaging, SEND_BATCH, after, backoff, until};
use crate::call::{CallRequest, OperationEnv};
use crate::messaging::db::now_ms;
use crate::messaging::outbox::{Claimed, Outcome};
use crate::messaging::{DbError, Target};
use crate::ops::Node;
use crate::ops::native::broker::{PublishInput, PublishItem, PublishOutput, SubscriptionsInput};

pub(super) async fn run(
    node: Weak<Node>,
    messaging: Arc<Messaging>,
    mut changes: Option<watch::Receiver<u64>>,
) {
    match messaging.stores.outbox.recover_inflight().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            rows = n,
            "outbox: rows left inflight by the last run are pending again"
        ),
        Err(err) => tracing::error!(error = %err, "outbox: cannot recover inflight rows"),
    }
    let mut last_prune = 0;
    // Batches in flight at once: the next is claimed while the broker
    // commits the last, so a message waits for less than a round trip.
    let in_flight = Arc::new(tokio::sync::Semaphore::new(BATCHES_IN_FLIGHT));
    loop {
        let sent = {
            let Some(node) = node.upgrade() else { return };
            if now_ms() - last_prune > 60_000 {
                last_prune = now_ms();
                if let Err(err) = housekeeping(&messaging).await {
                    tracing::warn!(error = %err, "outbox: housekeeping failed");
                }
            }
            round(&node, &messaging, &in_flight).await
        };
        // While the broker is away, new rows wait for the mesh to report
        // it back (or the housekeeping poll), not one wake-up per send.
        let (wait, on_new_rows) = match sent {
            Ok(Round::Sent) => continue,
            Ok(Round::Idle) => (
                until(messaging.stores.outbox.next_due().await.ok().flatten()),
                true,
            ),
            Ok(Round::BrokerAway) => (BROKER_AWAY_POLL, false),
            Err(err) => {
                tracing::warn!(error = %err, "outbox: cannot read or update the outbox");
                (super::IDLE_POLL, true)
            }
        };
        let new_rows = async {
            if on_new_rows {
                messaging.outbox_ready.notified().await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        let peer_change = async {
            match changes.as_mut() {
                Some(changes) => changes.changed().await.is_ok(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = new_rows => {}
            changed = peer_change => {
                if !changed {
                    changes = None;
                }
                // The broker may have come back: try what waited for it.
                let _ = messaging.stores.outbox.wake_waiting().await;
            }
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// Once a minute: rows older than the age limit are dead (a resend after
/// the broker's window would be stored twice), and done rows that old are
/// dropped (a resend of one would not be deduped by the broker either).
async fn housekeeping(messaging: &Messaging) -> Result<(), DbError> {
    let max_age = messaging.max_age();
    let cutoff = now_ms() - i64::try_from(max_age.effective.as_millis()).unwrap_or(i64::MAX);
    let expired = messaging
        .stores
        .outbox
        .expire(
            cutoff,
            format!(
                "not acknowledged by the broker within max_age ({:.1}h)",
                max_age.effective.as_secs_f64() / 3600.0
            ),
        )
        .await?;
    if expired > 0 {
        tracing::warn!(
            rows = expired,
            "outbox: messages older than max_age are dead; `host msg outbox --status dead` lists them"
        );
    }
    messaging.stores.outbox.prune_done(cutoff).await?;
    Ok(())
}

/// What one round did.
enum Round {
    /// Handed rows to the broker (more may be due).
    Sent,
    /// Nothing was due.
    Idle,
    /// The broker is not connected (or there is none).
    BrokerAway,
}

/// Batches handed to the broker at once.
const BATCHES_IN_FLIGHT: usize = 4;
/// Tries at recording a batch's answers, a second apart.
const SETTLE_ATTEMPTS: u32 = 120;

/// How often a worker whose broker is away looks again without a mesh event.
const BROKER_AWAY_POLL: std::time::Duration = std::time::Duration::from_secs(5);

/// One round: the broker's state, topics, then one batch claimed and handed
/// over on its own task (at most [`BATCHES_IN_FLIGHT`] at once).
async fn round(
    node: &Arc<Node>,
    messaging: &Arc<Messaging>,
    in_flight: &Arc<tokio::sync::Semaphore>,
) -> Result<Round, DbError> {
    let Some(broker) = messaging.broker() else {
        return Ok(Round::BrokerAway);
    };
    if let BrokerRoute::Peer(name) = &broker {
        // Not connected: nothing to try until the mesh reports a change
        // (the dialer keeps trying on its own).
        let Some(features) = node.peers().advertised(name) else {
            return Ok(Round::BrokerAway);
        };
        match features.broker_window_s() {
            Some(window) => messaging.fit_max_age(name, window),
            None => {
                refuse_all(
                    messaging,
                    format!(
                        "peer `{name}` is not a message broker (it does not advertise the `broker` feature); set [broker] enabled = true on it"
                    ),
                )
                .await?;
                return Ok(Round::BrokerAway);
            }
        }
    }
    if messaging.topics_dirty.swap(false, Ordering::SeqCst)
        && let Err(err) = sync_topics(node, messaging, &broker).await
    {
        messaging.topics_dirty.store(true, Ordering::SeqCst);
        tracing::debug!(error = %err, "outbox: the broker has not heard this node's topics yet");
    }
    let Ok(permit) = in_flight.clone().acquire_owned().await else {
        return Ok(Round::Idle);
    };
    let claimed = messaging.stores.outbox.claim(SEND_BATCH).await?;
    if claimed.is_empty() {
        return Ok(Round::Idle);
    }
    let (node, messaging) = (node.clone(), messaging.clone());
    tokio::spawn(async move {
        let outcomes = publish(&node, &messaging, &broker, claimed).await;
        drop(node);
        // Recording the answers can fail (a full disk); try again for a
        // while. Rows still inflight after that return to pending at the
        // next start, and the broker dedupes their resend.
        for attempt in 1..=SETTLE_ATTEMPTS {
            match messaging
                .stores
                .outbox
                .settle(outcomes.clone(), messaging.config.max_attempts)
                .await
            {
                Ok(()) => break,
                Err(err) if attempt == SETTLE_ATTEMPTS => {
                    tracing::error!(error = %err, "outbox: cannot record what the broker answered; the rows stay inflight until the next start");
                }
                Err(err) => {
                    tracing::warn!(error = %err, "outbox: cannot record what the broker answered; retrying");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
        }
        drop(permit);
    });
    Ok(Round::Sent)
}

/// Marks every due row as waiting for `reason` (nothing is sent).
async fn refuse_all(messaging: &Messaging, reason: String) -> Result<(), DbError> {
    let claimed = messaging.stores.outbox.claim(SEND_BATCH).await?;
    let wait = messaging.config.retry_max;
    let outcomes = claimed
        .into_iter()
        .map(|row| {
            (
                row.seq,
                Outcome::Retry {
                    error: reason.clone(),
                    at: after(wait),
                    counts: false,
                },
            )
        })
        .collect();
    messaging
        .stores
        .outbox
        .settle(outcomes, messaging.config.max_attempts)
        .await
}

async fn sync_topics(
    node: &Node,
    messaging: &Messaging,
    broker: &BrokerRoute,
) -> Result<(), CallError> {
    let topics = messaging
        .stores
        .outbox
        .topics()
        .await
        .map_err(super::db_error)?;
    let input = serde_json::to_string(&SubscriptionsInput { topics })
        .map_err(|e| CallError::new(ErrorCode::Failed, e.to_string()))?;
    node.call(CallRequest::from_node(
        "messaging",
        broker.path("subscriptions"),
        input,
        HOP_TIMEOUT,
    ))
    .await?;
    Ok(())
}

/// Hands `claimed` to the broker; what became of each row.
async fn publish(
    node: &Node,
    messaging: &Messaging,
    broker: &BrokerRoute,
    claimed: Vec<Claimed>,
) -> Vec<(i64, Outcome)> {
    let items: Vec<PublishItem> = claimed
        .iter()
        .map(|row| {
            let message = &row.message;
            let (to, topic) = match &message.target {
                Target::Node(to) => (Some(to.clone()), None),
                Target::Topic(topic) => (None, Some(topic.clone())),
            };
            PublishItem {
                client_message_id: message.client_message_id.clone(),
                to,
                topic,
                body: serde_json::from_str(&message.body)
                    .unwrap_or(serde_json::Value::String(message.body.clone())),
                meta: message
                    .meta
                    .as_deref()
                    .and_then(|m| serde_json::from_str(m).ok()),
                sent_at: Some(row.enqueued_at),
                digest: message.digest(),
            }
        })
        .collect();
    let retry = |row: &Claimed, error: &CallError| {
        // An absent or slow broker is not the message's fault.
        let counts = !matches!(error.code, ErrorCode::Unavailable | ErrorCode::Timeout);
        let wait = backoff(
            row.attempts,
            messaging.config.retry_min,
            messaging.config.retry_max,
        );
        Outcome::Retry {
            error: format!("{}: {}", error.code.as_str(), error.message),
            at: after(wait),
            counts,
        }
    };
    let input = match serde_json::to_string(&PublishInput { messages: items }) {
        Ok(input) => input,
        Err(e) => {
            let error = CallError::new(ErrorCode::Failed, e.to_string());
            return claimed
                .iter()
                .map(|row| (row.seq, retry(row, &error)))
                .collect();
        }
    };
    let reply = node
        .call(CallRequest::from_node(
            "messaging",
            broker.path("publish"),
            input,
            HOP_TIMEOUT,
        ))
        .await
        .and_then(|envelope| {
            serde_json::from_value::<PublishOutput>(envelope.output).map_err(|e| {
                CallError::new(
                    ErrorCode::Failed,
                    format!("the broker's answer is not understood: {e}"),
                )
            })
        });
    let output = match reply {
        Ok(output) => output,
        Err(error) => {
            return claimed
                .iter()
                .map(|row| (row.seq, retry(row, &error)))
                .collect();
        }
    };
    let mut results: HashMap<String, _> = output
        .results
        .into_iter()
        .map(|r| (r.client_message_id.clone(), r))
        .collect();
    claimed
        .iter()
        .map(|row| {
            let outcome = match results.remove(&row.message.client_message_id) {
                Some(result) => match (result.accepted, result.error) {
                    (Some(accepted), _) => Outcome::Delivered(match accepted {
                        crate::messaging::broker::Accepted::New {
                            broker_message_id, ..
                        }
                        | crate::messaging::broker::Accepted::Duplicate { broker_message_id } => {
                            broker_message_id
                        }
                    }),
                    (None, Some(error))
                        if matches!(error.code, ErrorCode::Conflict | ErrorCode::InvalidInput) =>
                    {
                        Outcome::Dead(format!("{}: {}", error.code.as_str(), error.message))
                    }
                    (None, error) => {
                        let error = error.map_or_else(
                            || CallError::new(ErrorCode::Failed, "no result"),
                            |e| CallError::new(e.code, e.message),
                        );
                        retry(row, &error)
                    }
                },
                None => retry(
                    row,
                    &CallError::new(ErrorCode::Failed, "the broker did not answer for it"),
                ),
            };
            (row.seq, outcome)
        })
        .collect()
}
