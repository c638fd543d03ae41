//! The broker's operations, `/node/broker/*`: what members call on a node
//! with `[broker] enabled = true`.
//!
//! The sender of a message is the peer the call came from (its pinned key),
//! never a field of the input, so the dedupe key `(sender,
//! client_message_id)` cannot be forged by another member.

use hearth_registry::{CallError, ErrorCode, OpKind};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Empty, NativeOp};
use crate::call::CallContext;
use crate::messaging::broker::{Accepted, BrokerStats, BrokerStore, Publish};
use crate::ops::Node;
use crate::ops::messaging::db_error;

/// One message a member hands over.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishItem {
    /// The member's stable id for it.
    pub client_message_id: String,
    /// The recipient: a node key (64 hex digits) or a name the broker knows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// The topic, for a post.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// The body.
    pub body: serde_json::Value,
    /// Metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<serde_json::Value>,
    /// When the member accepted it, ms since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<i64>,
    /// The member's content digest: a resend must carry the same.
    pub digest: String,
}

/// Messages from a member.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishInput {
    /// Up to a few hundred messages.
    pub messages: Vec<PublishItem>,
}

/// What became of one message.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct PublishResult {
    /// Its id.
    pub client_message_id: String,
    /// Stored or found, when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted: Option<Accepted>,
    /// Why not, when it was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ItemError>,
}

/// Why one message was refused.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ItemError {
    /// The error code (`conflict`, `invalid-input`, `not-found`, ...).
    #[schemars(with = "String")]
    pub code: ErrorCode,
    /// What went wrong.
    pub message: String,
}

/// One result per message, in order.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct PublishOutput {
    /// The results.
    pub results: Vec<PublishResult>,
}

/// The broker's store, or `not-found` on a node that is not a broker.
fn store(node: &Node) -> Result<&BrokerStore, CallError> {
    node.messaging().stores.broker.as_ref().ok_or_else(|| {
        CallError::new(
            ErrorCode::NotFound,
            format!(
                "node `{}` is not a message broker; set [broker] enabled = true in its stack.toml",
                node.name()
            ),
        )
    })
}

/// The key of whoever made this call: the peer's pinned key, or this node's.
fn caller_key(node: &Node, ctx: &CallContext) -> Result<String, CallError> {
    match &ctx.from_peer {
        Some(peer) => node.peers().peer_key(peer).map(hex::encode).ok_or_else(|| {
            CallError::new(ErrorCode::Denied, format!("`{peer}` is not a known peer"))
        }),
        None => Ok(node.public_key().to_owned()),
    }
}

/// `/node/broker/publish`.
pub struct Publishes;

impl NativeOp for Publishes {
    type Input = PublishInput;
    type Output = PublishOutput;
    const NAMESPACE: &'static str = "broker";
    const NAME: &'static str = "publish";
    const KIND: OpKind = OpKind::Mutation;
    const DESCRIPTION: &'static str = "A member hands messages to this broker: each is stored durably (deduped on sender and client_message_id) and queued for its recipients";

    async fn run(
        node: &Node,
        ctx: &CallContext,
        input: PublishInput,
    ) -> Result<PublishOutput, CallError> {
        let store = store(node)?;
        let sender = caller_key(node, ctx)?;
        let accepts = input.messages.into_iter().map(|item| {
            let sender = sender.clone();
            async move {
                let id = item.client_message_id.clone();
                let outcome = accept(node, store, sender, item).await;
                match outcome {
                    Ok(accepted) => PublishResult {
                        client_message_id: id,
                        accepted: Some(accepted),
                        error: None,
                    },
                    Err(error) => PublishResult {
                        client_message_id: id,
                        accepted: None,
                        error: Some(ItemError {
                            code: error.code,
                            message: error.message,
                        }),
                    },
                }
            }
        });
        // Concurrently, so they share group commits.
        let results = futures_util::future::join_all(accepts).await;
        if results
            .iter()
            .any(|r| matches!(r.accepted, Some(Accepted::New { recipients, .. }) if recipients > 0))
        {
            node.messaging().deliveries_changed();
        }
        Ok(PublishOutput { results })
    }
}

async fn accept(
    node: &Node,
    store: &BrokerStore,
    sender: String,
    item: PublishItem,
) -> Result<Accepted, CallError> {
    super::msg::check_id(&item.client_message_id)?;
    let recipient_key = match (&item.to, &item.topic) {
        (Some(to), None) => Some(super::msg::known_key(node, to).ok_or_else(|| {
            CallError::new(
                ErrorCode::NotFound,
                format!(
                    "broker `{}` knows no node `{to}`: address it by its public key, or add it to the broker's [peers]",
                    node.name()
                ),
            )
        })?),
        (None, Some(topic)) => {
            super::msg::check_topic(topic)?;
            None
        }
        _ => {
            return Err(CallError::new(
                ErrorCode::InvalidInput,
                "a message names exactly one of `to` and `topic`",
            ));
        }
    };
    let publish = Publish {
        client_message_id: item.client_message_id,
        recipient_key,
        topic: item.topic,
        body: item.body.to_string(),
        meta: item.meta.map(|m| m.to_string()),
        sent_at: item.sent_at,
        digest: item.digest,
    };
    match store.accept(sender, publish).await {
        Ok(accepted) => Ok(accepted),
        Err(err @ crate::messaging::DbError::Conflict(_)) => {
            let _ = store.count_conflict().await;
            Err(db_error(err))
        }
        Err(err) => Err(db_error(err)),
    }
}

/// The topics a member subscribes to.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionsInput {
    /// Its whole set (replaces what the broker had).
    pub topics: Vec<String>,
}

/// A member's topics, as the broker now has them.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SubscriptionsOutput {
    /// The topics.
    pub topics: Vec<String>,
}

/// `/node/broker/subscriptions`.
pub struct Subscriptions;

impl NativeOp for Subscriptions {
    type Input = SubscriptionsInput;
    type Output = SubscriptionsOutput;
    const NAMESPACE: &'static str = "broker";
    const NAME: &'static str = "subscriptions";
    const KIND: OpKind = OpKind::Mutation;
    const DESCRIPTION: &'static str =
        "A member sets the topics it subscribes to; posts to them are queued for it from now on";

    async fn run(
        node: &Node,
        ctx: &CallContext,
        input: SubscriptionsInput,
    ) -> Result<SubscriptionsOutput, CallError> {
        let store = store(node)?;
        for topic in &input.topics {
            super::msg::check_topic(topic)?;
        }
        let member = caller_key(node, ctx)?;
        store
            .set_subscriptions(member, input.topics.clone())
            .await
            .map_err(db_error)?;
        Ok(SubscriptionsOutput {
            topics: input.topics,
        })
    }
}

/// What `/node/broker/stats` shows.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct BrokerView {
    /// The dedupe window this broker advertises, in seconds.
    pub dedupe_window_s: u64,
    /// Counters and sizes.
    #[serde(flatten)]
    pub stats: BrokerStats,
}

/// `/node/broker/stats`.
pub struct Stats;

impl NativeOp for Stats {
    type Input = Empty;
    type Output = BrokerView;
    const NAMESPACE: &'static str = "broker";
    const NAME: &'static str = "stats";
    const DESCRIPTION: &'static str = "What this broker stored, deduped, refused and delivered";
    const SCOPES: &'static [&'static str] = &["msg:admin"];

    async fn run(node: &Node, _: &CallContext, _: Empty) -> Result<BrokerView, CallError> {
        let store = store(node)?;
        let window = node
            .messaging()
            .config
            .serve_broker
            .as_ref()
            .map_or(0, |b| b.dedupe_window.as_secs());
        Ok(BrokerView {
            dedupe_window_s: window,
            stats: store.stats().await.map_err(db_error)?,
        })
    }
}
