//! The messaging operations, `/node/msg/*`: send and post through the
//! outbox, read and follow the inbox, manage dead rows and topics, and
//! `deliver`, which only this node's broker calls.
//!
//! A send's `client_message_id` is the caller's `idempotency-key`
//! metadata, else the input's field, else a ULID minted here; it is
//! answered only once the outbox row is on disk. A plugin's handler run
//! may send to its message's sender and post to its message's topic
//! without a grant (the pipeline admits it with the run's scope; the bounds
//! are checked here).

use hearth_registry::{CallError, ErrorCode, OpKind};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::NativeOp;
use crate::call::{CallContext, MessageScope};
use crate::messaging::Target;
use crate::messaging::inbox::{Delivery, InboxMessage, Query};
use crate::messaging::outbox::{Counts, NewMessage, OutboxRow, Status};
use crate::ops::Node;
use crate::ops::messaging::{BrokerRoute, db_error};

/// Metadata key whose value becomes a send's `client_message_id`.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Longest `client_message_id`.
const MAX_ID_LEN: usize = 128;
/// Longest topic name.
const MAX_TOPIC_LEN: usize = 128;
/// Most inbox or outbox rows one page returns.
const MAX_PAGE: u32 = 1000;

/// True for 64 hex digits: a node key.
pub fn is_key(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The key of the node `name` names, as this node knows it: a key as is
/// (lowercased), this node's own name, or a peer's name.
pub fn known_key(node: &Node, name: &str) -> Option<String> {
    if is_key(name) {
        return Some(name.to_ascii_lowercase());
    }
    if name == node.name() || name == hearth_registry::LOCAL_NODE {
        return Some(node.public_key().to_owned());
    }
    node.peers().peer_key(name).map(hex::encode)
}

/// A `client_message_id` is 1 to 128 visible ASCII characters.
pub fn check_id(id: &str) -> Result<(), CallError> {
    if id.is_empty() || id.len() > MAX_ID_LEN || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(CallError::new(
            ErrorCode::InvalidInput,
            format!(
                "client_message_id must be 1 to {MAX_ID_LEN} visible ASCII characters (no spaces)"
            ),
        ));
    }
    Ok(())
}

/// A topic is 1 to 128 of letters, digits and `._-/:`.
pub fn check_topic(topic: &str) -> Result<(), CallError> {
    let ok = !topic.is_empty()
        && topic.len() <= MAX_TOPIC_LEN
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/:".contains(&b));
    if !ok {
        return Err(CallError::new(
            ErrorCode::InvalidInput,
            format!(
                "topic `{}` is not valid: use 1 to {MAX_TOPIC_LEN} letters, digits and `._-/:`",
                topic.chars().take(MAX_TOPIC_LEN).collect::<String>()
            ),
        ));
    }
    Ok(())
}

/// A direct message.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SendInput {
    /// The recipient: a peer's name, this node's name, or a node's public
    /// key (64 hex digits) the broker knows.
    pub to: String,
    /// The body: any JSON.
    pub body: serde_json::Value,
    /// The caller's stable id; a resend with the same id is a no-op.
    #[serde(default)]
    pub client_message_id: Option<String>,
    /// Metadata: any JSON object.
    #[serde(default)]
    pub meta: Option<serde_json::Value>,
}

/// A post to a topic.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PostInput {
    /// The topic.
    pub topic: String,
    /// The body: any JSON.
    pub body: serde_json::Value,
    /// The caller's stable id; a resend with the same id is a no-op.
    #[serde(default)]
    pub client_message_id: Option<String>,
    /// Metadata: any JSON object.
    #[serde(default)]
    pub meta: Option<serde_json::Value>,
}

/// A send, durable in the outbox.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Sent {
    /// The message's stable id.
    pub client_message_id: String,
    /// Local outbox row id.
    pub id: String,
    /// Where it stands.
    pub status: Status,
    /// True when this id was sent before: nothing new was stored.
    pub duplicate: bool,
    /// The broker's id, once it acknowledged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker_message_id: Option<String>,
}

/// The id a send uses: idempotency key, input field, or a new ULID.
fn client_message_id(ctx: &CallContext, field: Option<String>) -> Result<String, CallError> {
    let from_metadata = ctx
        .metadata
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(IDEMPOTENCY_KEY))
        .map(|(_, v)| v.clone());
    let id = from_metadata
        .or(field)
        .unwrap_or_else(|| ulid::Ulid::new().to_string());
    check_id(&id)?;
    Ok(id)
}

/// Refuses a send when this node has no broker.
fn require_broker(node: &Node) -> Result<BrokerRoute, CallError> {
    node.messaging().broker().ok_or_else(|| {
        CallError::new(
            ErrorCode::Unavailable,
            format!(
                "node `{}` has no message broker: set [messaging] broker = \"<peer>\" (or [broker] enabled = true) in its stack.toml",
                node.name()
            ),
        )
    })
}

/// Inside a handler run without a grant: only within the message's scope.
fn check_scope(scope: Option<&MessageScope>, target: &Target) -> Result<(), CallError> {
    let Some(scope) = scope else {
        return Ok(());
    };
    let allowed = match target {
        Target::Node(key) => key.eq_ignore_ascii_case(&scope.sender_key),
        Target::Topic(topic) => scope.topic.as_deref() == Some(topic.as_str()),
    };
    if allowed {
        return Ok(());
    }
    Err(CallError::new(
        ErrorCode::Denied,
        format!(
            "plugin `{}`'s handler may only reply to the sender of message {} or post to its topic{}; grant it `env` to /node/msg/* to send elsewhere",
            scope.plugin,
            scope.message_id,
            scope
                .topic
                .as_deref()
                .map(|t| format!(" `{t}`"))
                .unwrap_or_default()
        ),
    ))
}

async fn enqueue(
    node: &Node,
    ctx: &CallContext,
    target: Target,
    body: serde_json::Value,
    id: Option<String>,
    meta: Option<serde_json::Value>,
) -> Result<Sent, CallError> {
    require_broker(node)?;
    check_scope(ctx.message.as_deref(), &target)?;
    let client_message_id = client_message_id(ctx, id)?;
    let messaging = node.messaging();
    let enqueued = messaging
        .stores
        .outbox
        .enqueue(NewMessage {
            client_message_id,
            target,
            body: body.to_string(),
            meta: meta.map(|m| m.to_string()),
        })
        .await
        .map_err(db_error)?;
    if !enqueued.duplicate {
        messaging.outbox_changed();
    }
    let row = enqueued.row;
    Ok(Sent {
        client_message_id: row.client_message_id,
        id: row.id,
        status: row.status,
        duplicate: enqueued.duplicate,
        broker_message_id: row.broker_message_id,
    })
}

/// `/node/msg/send`.
pub struct Send;

impl NativeOp for Send {
    type Input = SendInput;
    type Output = Sent;
    const NAMESPACE: &'static str = "msg";
    const NAME: &'static str = "send";
    const KIND: OpKind = OpKind::Mutation;
    const DESCRIPTION: &'static str = "Send a message to a node (by name or public key) through the broker; answered once it is durable in the outbox";
    const SCOPES: &'static [&'static str] = &["msg:send"];

    async fn run(node: &Node, ctx: &CallContext, input: SendInput) -> Result<Sent, CallError> {
        // Resolve names this node knows to keys: names are per node, keys
        // are what the broker and the receivers agree on.
        let to = if let Some(key) = known_key(node, &input.to) {
            key
        } else if hearth_registry::is_valid_segment(&input.to) {
            // Perhaps a name the broker knows.
            input.to
        } else {
            return Err(CallError::new(
                ErrorCode::InvalidInput,
                format!(
                    "`{}` is neither a node name nor a public key (64 hex digits)",
                    input.to
                ),
            ));
        };
        enqueue(
            node,
            ctx,
            Target::Node(to),
            input.body,
            input.client_message_id,
            input.meta,
        )
        .await
    }
}

/// `/node/msg/post`.
pub struct Post;

impl NativeOp for Post {
    type Input = PostInput;
    type Output = Sent;
    const NAMESPACE: &'static str = "msg";
    const NAME: &'static str = "post";
    const KIND: OpKind = OpKind::Mutation;
    const DESCRIPTION: &'static str =
        "Post a message to a topic through the broker; answered once it is durable in the outbox";
    const SCOPES: &'static [&'static str] = &["msg:send"];

    async fn run(node: &Node, ctx: &CallContext, input: PostInput) -> Result<Sent, CallError> {
        check_topic(&input.topic)?;
        enqueue(
            node,
            ctx,
            Target::Topic(input.topic),
            input.body,
            input.client_message_id,
            input.meta,
        )
        .await
    }
}

/// Which inbox messages to list.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InboxInput {
    /// Only messages after this `seq` (the `next` of the previous page).
    #[serde(default)]
    pub since: Option<i64>,
    /// Only this topic.
    #[serde(default)]
    pub topic: Option<String>,
    /// Only from this sender: a peer's name or a public key.
    #[serde(default)]
    pub from: Option<String>,
    /// At most this many (100 by default, 1000 at most).
    #[serde(default)]
    pub limit: Option<u32>,
}

/// A page of the inbox.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct InboxPage {
    /// Oldest first.
    pub messages: Vec<InboxMessage>,
    /// `since` for the next page, when this one was full.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<i64>,
}

/// A sender filter as a key: a key as is, or a peer's (or this node's) name.
fn sender_key(node: &Node, from: &str) -> String {
    known_key(node, from).unwrap_or_else(|| from.to_owned())
}

/// `/node/msg/inbox`.
pub struct InboxList;

impl NativeOp for InboxList {
    type Input = InboxInput;
    type Output = InboxPage;
    const NAMESPACE: &'static str = "msg";
    const NAME: &'static str = "inbox";
    const DESCRIPTION: &'static str = "Messages delivered to this node, oldest first, paged by `since`, filtered by topic or sender";
    const SCOPES: &'static [&'static str] = &["msg:read"];

    async fn run(node: &Node, _: &CallContext, input: InboxInput) -> Result<InboxPage, CallError> {
        let limit = input.limit.unwrap_or(100).clamp(1, MAX_PAGE);
        let messages = node
            .messaging()
            .stores
            .inbox
            .list(Query {
                since: input.since,
                topic: input.topic,
                from: input.from.map(|f| sender_key(node, &f)),
                limit,
            })
            .await
            .map_err(db_error)?;
        let next = (messages.len() == limit as usize)
            .then(|| messages.last().map(|m| m.seq))
            .flatten();
        Ok(InboxPage { messages, next })
    }
}

/// Which outbox rows to list.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OutboxInput {
    /// Only rows in this state.
    #[serde(default)]
    pub status: Option<Status>,
    /// At most this many, newest first (100 by default).
    #[serde(default)]
    pub limit: Option<u32>,
}

/// The outbox, as an operator needs it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct OutboxView {
    /// Rows by state.
    pub counts: Counts,
    /// The rows asked for, newest first.
    pub rows: Vec<OutboxRow>,
    /// The broker: `local` or a peer's name; absent when there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker: Option<String>,
    /// Whether the broker is reachable now (a connected peer, or this node).
    pub broker_connected: bool,
    /// The age after which an unacknowledged message is dead, in hours.
    pub max_age_hours: f64,
    /// Why `max_age_hours` is lower than configured, when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_lowered: Option<String>,
    /// Refusals after which a message is dead.
    pub max_attempts: u32,
}

/// `/node/msg/outbox`.
pub struct OutboxList;

impl NativeOp for OutboxList {
    type Input = OutboxInput;
    type Output = OutboxView;
    const NAMESPACE: &'static str = "msg";
    const NAME: &'static str = "outbox";
    const DESCRIPTION: &'static str = "The outbox: counts by state and the pending, inflight, done or dead rows with their last error";
    const SCOPES: &'static [&'static str] = &["msg:read"];

    async fn run(
        node: &Node,
        _: &CallContext,
        input: OutboxInput,
    ) -> Result<OutboxView, CallError> {
        let messaging = node.messaging();
        let outbox = &messaging.stores.outbox;
        let limit = input.limit.unwrap_or(100).clamp(1, MAX_PAGE);
        let rows = outbox.list(input.status, limit).await.map_err(db_error)?;
        let counts = outbox.counts().await.map_err(db_error)?;
        let max_age = messaging.max_age();
        let broker_connected = match messaging.broker() {
            Some(BrokerRoute::Local) => true,
            Some(BrokerRoute::Peer(name)) => node.peers().advertised(&name).is_some(),
            None => false,
        };
        Ok(OutboxView {
            broker_connected,
            counts,
            rows,
            broker: messaging.broker().map(|b| match b {
                BrokerRoute::Local => "local".to_owned(),
                BrokerRoute::Peer(name) => name,
            }),
            max_age_hours: max_age.effective.as_secs_f64() / 3600.0,
            max_age_lowered: max_age.lowered,
            max_attempts: messaging.config.max_attempts,
        })
    }
}

/// A dead outbox row, by its row id or client_message_id.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RowId {
    /// The row id or the client_message_id.
    pub id: String,
}

/// `/node/msg/requeue`.
pub struct Requeue;

impl NativeOp for Requeue {
    type Input = RowId;
    type Output = OutboxRow;
    const NAMESPACE: &'static str = "msg";
    const NAME: &'static str = "requeue";
    const KIND: OpKind = OpKind::Mutation;
    const DESCRIPTION: &'static str = "Send a dead outbox row again, from its first attempt";
    const SCOPES: &'static [&'static str] = &["msg:admin"];

    async fn run(node: &Node, _: &CallContext, input: RowId) -> Result<OutboxRow, CallError> {
        let messaging = node.messaging();
        let row = messaging
            .stores
            .outbox
            .requeue(input.id)
            .await
            .map_err(db_error)?;
        messaging.outbox_changed();
        Ok(row)
    }
}

/// `/node/msg/drop`.
pub struct Drop;

impl NativeOp for Drop {
    type Input = RowId;
    type Output = OutboxRow;
    const NAMESPACE: &'static str = "msg";
    const NAME: &'static str = "drop";
    const KIND: OpKind = OpKind::Mutation;
    const DESCRIPTION: &'static str = "Delete a dead outbox row for good";
    const SCOPES: &'static [&'static str] = &["msg:admin"];

    async fn run(node: &Node, _: &CallContext, input: RowId) -> Result<OutboxRow, CallError> {
        node.messaging()
            .stores
            .outbox
            .drop_dead(input.id)
            .await
            .map_err(db_error)
    }
}

/// Topics to subscribe to and unsubscribe from.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TopicsInput {
    /// Topics to add.
    #[serde(default)]
    pub subscribe: Vec<String>,
    /// Topics to remove.
    #[serde(default)]
    pub unsubscribe: Vec<String>,
}

/// The topics this node subscribes to.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct TopicList {
    /// Sorted.
    pub topics: Vec<String>,
}

/// `/node/msg/topics`.
pub struct Topics;

impl NativeOp for Topics {
    type Input = TopicsInput;
    type Output = TopicList;
    const NAMESPACE: &'static str = "msg";
    const NAME: &'static str = "topics";
    const KIND: OpKind = OpKind::Mutation;
    const DESCRIPTION: &'static str = "Subscribe this node to topics or unsubscribe it (no input lists them); the broker hears the change";
    const SCOPES: &'static [&'static str] = &["msg:admin"];

    async fn run(node: &Node, _: &CallContext, input: TopicsInput) -> Result<TopicList, CallError> {
        for topic in input.subscribe.iter().chain(&input.unsubscribe) {
            check_topic(topic)?;
        }
        let messaging = node.messaging();
        let changed = !input.subscribe.is_empty() || !input.unsubscribe.is_empty();
        let topics = messaging
            .stores
            .outbox
            .change_topics(input.subscribe, input.unsubscribe)
            .await
            .map_err(db_error)?;
        if changed {
            messaging.topics_changed();
        }
        Ok(TopicList { topics })
    }
}

/// What a subscription follows.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscribeInput {
    /// Only this topic.
    #[serde(default)]
    pub topic: Option<String>,
    /// Only from this sender: a peer's name or a public key.
    #[serde(default)]
    pub from: Option<String>,
    /// Also replay stored messages after this `seq` first.
    #[serde(default)]
    pub since: Option<i64>,
}

/// How a subscription ended.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SubscribeEnd {
    /// Messages streamed.
    pub delivered: u64,
}

/// `/node/msg/subscribe`.
pub struct Subscribe;

impl NativeOp for Subscribe {
    type Input = SubscribeInput;
    type Output = SubscribeEnd;
    const NAMESPACE: &'static str = "msg";
    const NAME: &'static str = "subscribe";
    const KIND: OpKind = OpKind::Subscription;
    const DESCRIPTION: &'static str =
        "Stream new inbox messages as they arrive, filtered by topic or sender";
    const SCOPES: &'static [&'static str] = &["msg:read"];

    async fn run(
        node: &Node,
        ctx: &CallContext,
        input: SubscribeInput,
    ) -> Result<SubscribeEnd, CallError> {
        let Some(events) = ctx.events.clone() else {
            return Err(CallError::new(
                ErrorCode::InvalidInput,
                "/node/msg/subscribe streams events: call it as a subscription",
            ));
        };
        let messaging = node.messaging();
        // Subscribe before replaying, so nothing falls between the two.
        let mut arrivals = messaging.arrived.subscribe();
        let from = input.from.as_deref().map(|f| sender_key(node, f));
        let wanted = |m: &InboxMessage| {
            input
                .topic
                .as_ref()
                .is_none_or(|t| m.topic.as_ref() == Some(t))
                && from.as_ref().is_none_or(|f| &m.from.key == f)
        };
        let mut delivered = 0u64;
        let mut last_seq = 0;
        if let Some(since) = input.since {
            let mut cursor = since;
            loop {
                let page = messaging
                    .stores
                    .inbox
                    .list(Query {
                        since: Some(cursor),
                        topic: input.topic.clone(),
                        from: from.clone(),
                        limit: MAX_PAGE,
                    })
                    .await
                    .map_err(db_error)?;
                let Some(last) = page.last() else { break };
                cursor = last.seq;
                for message in page {
                    last_seq = message.seq;
                    if events.send(event(&message)).await.is_err() {
                        return Ok(SubscribeEnd { delivered });
                    }
                    delivered += 1;
                }
            }
        }
        loop {
            let message = match arrivals.recv().await {
                Ok(message) => message,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                    let note = serde_json::json!({
                        "lagged": missed,
                        "hint": format!("{missed} messages went by too fast for this subscription; read them with /node/msg/inbox since {last_seq}"),
                    });
                    if events.send(note.to_string()).await.is_err() {
                        return Ok(SubscribeEnd { delivered });
                    }
                    continue;
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                    return Ok(SubscribeEnd { delivered });
                }
            };
            if message.seq <= last_seq || !wanted(&message) {
                continue;
            }
            last_seq = message.seq;
            if events.send(event(&message)).await.is_err() {
                return Ok(SubscribeEnd { delivered });
            }
            delivered += 1;
        }
    }
}

fn event(message: &InboxMessage) -> String {
    serde_json::to_string(message).unwrap_or_default()
}

/// Messages from the broker.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeliverInput {
    /// Oldest first.
    pub messages: Vec<Delivery>,
}

/// What the inbox made of them.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct DeliverOutput {
    /// New messages stored.
    pub stored: u32,
    /// Messages this inbox already had.
    pub duplicates: u32,
}

/// `/node/msg/deliver`.
pub struct Deliver;

impl NativeOp for Deliver {
    type Input = DeliverInput;
    type Output = DeliverOutput;
    const NAMESPACE: &'static str = "msg";
    const NAME: &'static str = "deliver";
    const KIND: OpKind = OpKind::Mutation;
    const DESCRIPTION: &'static str =
        "The broker delivers messages into this node's inbox (only this node's broker may call it)";

    async fn run(
        node: &Node,
        ctx: &CallContext,
        input: DeliverInput,
    ) -> Result<DeliverOutput, CallError> {
        let messaging = node.messaging();
        let from_broker = match (&ctx.from_peer, messaging.broker()) {
            (Some(peer), Some(BrokerRoute::Peer(broker))) => *peer == broker,
            (None, Some(BrokerRoute::Local)) => ctx.by_node,
            _ => false,
        };
        if !from_broker {
            return Err(CallError::new(
                ErrorCode::Denied,
                format!(
                    "only the broker of node `{}` delivers into its inbox",
                    node.name()
                ),
            ));
        }
        let own_key = node.public_key().to_owned();
        let batch: Vec<_> = input
            .messages
            .into_iter()
            .map(|delivery| {
                let sender_name = if delivery.sender_key == own_key {
                    Some(node.name().to_owned())
                } else {
                    hex_key(&delivery.sender_key).and_then(|k| node.peers().peer_by_key(&k))
                };
                let handlers = messaging.handlers_for(delivery.topic.as_deref());
                (delivery, sender_name, handlers)
            })
            .collect();
        let stored = messaging
            .stores
            .inbox
            .insert_batch(batch)
            .await
            .map_err(db_error)?;
        let mut output = DeliverOutput {
            stored: 0,
            duplicates: 0,
        };
        for entry in stored {
            match entry {
                Some((message, handled)) => {
                    output.stored += 1;
                    messaging.arrived(message, handled);
                }
                None => output.duplicates += 1,
            }
        }
        Ok(output)
    }
}

/// A node key's bytes from its hex form.
pub fn hex_key(text: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(text).ok()?;
    bytes.try_into().ok()
}
