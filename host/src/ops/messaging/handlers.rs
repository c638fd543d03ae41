//! Runs plugins' message handlers: each new inbox message a plugin is
//! granted is handed to its handler operation once, through the pipeline,
//! with [`Origin::Message`] — a scope valid for that message alone (reply
//! to its sender, post to its topic). A failed run is retried with backoff
//! up to `max_attempts`, then given up with an error in the log. The queue
//! is durable (written with the inbox row), so a crash re-runs at most the
//! run that was under way.

use std::sync::{Arc, Weak};

use crate::call::{CallRequest, Identity, MessageScope, OperationEnv, Origin};
use crate::messaging::inbox::HandlerRun;
use crate::ops::Node;

use super::{Messaging, after, backoff};

/// Handler runs taken per round.
const ROUND: u32 = 64;

pub(super) async fn run(node: Weak<Node>, messaging: Arc<Messaging>) {
    if messaging.handlers.is_empty() {
        return;
    }
    loop {
        let ran = {
            let Some(node) = node.upgrade() else { return };
            round(&node, &messaging).await
        };
        match ran {
            Ok(n) if n > 0 => continue,
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "message handlers: cannot read the queue"),
        }
        tokio::select! {
            () = messaging.handlers_ready.notified() => {}
            () = tokio::time::sleep(super::IDLE_POLL) => {}
        }
    }
}

async fn round(node: &Node, messaging: &Messaging) -> Result<usize, crate::messaging::DbError> {
    let runs = messaging.stores.inbox.due_handlers(ROUND).await?;
    let n = runs.len();
    for run in runs {
        handle(node, messaging, run).await?;
    }
    Ok(n)
}

async fn handle(
    node: &Node,
    messaging: &Messaging,
    run: HandlerRun,
) -> Result<(), crate::messaging::DbError> {
    let inbox = &messaging.stores.inbox;
    let seq = run.message.seq;
    let Some(handler) = messaging.handler(&run.plugin) else {
        // The plugin no longer handles messages (config changed).
        return inbox.handler_done(seq, run.plugin).await;
    };
    let scope = MessageScope {
        plugin: run.plugin.clone(),
        message_id: run.message.id.clone(),
        sender_key: run.message.from.key.clone(),
        topic: run.message.topic.clone(),
    };
    let input = handler_input(&run, messaging.config.handler_max_bytes);
    let request = CallRequest {
        origin: Origin::Message(Arc::new(scope)),
        path: handler.path.clone(),
        input,
        identity: Identity::new(format!("message:{}", run.message.from.key), Vec::new()),
        metadata: vec![("message-id".to_owned(), run.message.id.clone())],
        timeout: None,
        events: None,
    };
    match node.call(request).await {
        Ok(_) => inbox.handler_done(seq, run.plugin).await,
        Err(err) if run.attempts + 1 >= messaging.config.max_attempts => {
            tracing::error!(plugin = %run.plugin, message = %run.message.id, attempts = run.attempts + 1, error = %err, "message handler failed for good; the message stays in the inbox");
            inbox.handler_done(seq, run.plugin).await
        }
        Err(err) => {
            let wait = backoff(
                run.attempts,
                messaging.config.retry_min,
                messaging.config.retry_max,
            );
            tracing::warn!(plugin = %run.plugin, message = %run.message.id, error = %err, retry_ms = wait.as_millis() as u64, "message handler failed; retrying");
            inbox
                .handler_retry(seq, run.plugin, err.to_string(), after(wait))
                .await
        }
    }
}

/// The message as the handler's input; a body longer than `cap` bytes (as
/// JSON text) arrives as a string of its first `cap` bytes, with
/// `truncated: true` and the full size.
fn handler_input(run: &HandlerRun, cap: usize) -> String {
    let mut value = serde_json::to_value(&run.message).unwrap_or_default();
    let body = run.message.body.to_string();
    if body.len() > cap
        && let Some(object) = value.as_object_mut()
    {
        let mut end = cap;
        while !body.is_char_boundary(end) {
            end -= 1;
        }
        object.insert(
            "body".to_owned(),
            serde_json::Value::String(body[..end].to_owned()),
        );
        object.insert("truncated".to_owned(), serde_json::Value::Bool(true));
        object.insert("body_bytes".to_owned(), serde_json::Value::from(body.len()));
    } else if let Some(object) = value.as_object_mut() {
        object.insert("truncated".to_owned(), serde_json::Value::Bool(false));
    }
    value.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messaging::inbox::{InboxMessage, Sender};

    #[test]
    fn a_long_body_reaches_the_handler_truncated_and_marked() {
        let run = HandlerRun {
            plugin: "bot".into(),
            attempts: 0,
            message: InboxMessage {
                seq: 1,
                id: "i".into(),
                client_message_id: "c".into(),
                broker_message_id: None,
                from: Sender {
                    key: "k".into(),
                    name: None,
                },
                topic: None,
                body: serde_json::Value::String("é".repeat(100)),
                meta: None,
                sent_at: None,
                received_at: 0,
            },
        };
        let short: serde_json::Value = serde_json::from_str(&handler_input(&run, 1000)).unwrap();
        assert_eq!(short["truncated"], false);
        let cut: serde_json::Value = serde_json::from_str(&handler_input(&run, 51)).unwrap();
        assert_eq!(cut["truncated"], true);
        assert_eq!(cut["body_bytes"], 202);
        assert!(cut["body"].as_str().unwrap().len() <= 51);
    }
}
