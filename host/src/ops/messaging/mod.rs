//! Messaging's moving parts: the worker that sends the outbox to the
//! broker ([`sender`]), the broker's worker that delivers to recipients
//! ([`delivery`]), and the worker that runs plugin handlers for new inbox
//! messages ([`handlers`]).
//!
//! The stores are the `messaging` layer's; the operations clients call are
//! `ops::native::{msg, broker}`. Every message that crosses nodes is an
//! ordinary call through the pipeline — `/<broker>/broker/publish` from a
//! member, `/<member>/msg/deliver` from the broker — made with
//! [`Origin::Node`](crate::call::Origin::Node), so peers' access checks,
//! deadlines and the mesh apply to messaging as to any call.

mod delivery;
mod handlers;
mod sender;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use hearth_registry::{CallError, ErrorCode, MessagesGrant, OperationPath};
use tokio::sync::{Notify, broadcast};

use super::Node;
use crate::config::{MessagingConfig, NodeConfig};
use crate::messaging::inbox::InboxMessage;
use crate::messaging::{DbError, OpenError, Stores};

/// Operations a handler run may call on its message alone, without an
/// `env` grant (each checks the bounds of the run's scope).
const MESSAGE_SCOPED: [&str; 2] = ["/node/msg/send", "/node/msg/post"];

/// Messages the outbox sends to the broker per call.
const SEND_BATCH: usize = 512;
/// Messages the broker delivers to one recipient per call.
const DELIVERY_BATCH: u32 = 512;
/// How long a messaging call between nodes may take.
const HOP_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest a worker sleeps without looking again.
const IDLE_POLL: Duration = Duration::from_secs(1);

/// True when `path` is one a handler run may call on its own message.
pub fn is_message_scoped(path: &OperationPath) -> bool {
    let text = path.to_string();
    MESSAGE_SCOPED.contains(&text.as_str())
}

/// A plugin that handles messages.
#[derive(Debug, Clone)]
pub struct Handler {
    /// The plugin.
    pub plugin: String,
    /// Its handler operation's path (`/node/<plugin>/<op>`).
    pub path: String,
    /// Which messages the operator granted it.
    pub grant: MessagesGrant,
}

/// The outbox's age limit in force, and why it differs from the configured
/// one.
#[derive(Debug, Clone)]
pub struct MaxAge {
    /// The limit in force.
    pub effective: Duration,
    /// Why it was lowered, when it was.
    pub lowered: Option<String>,
}

/// The node's messaging: its stores, its settings, and what wakes its
/// workers.
pub struct Messaging {
    /// The outbox, the inbox, the broker's store.
    pub stores: Stores,
    /// `[messaging]` and `[broker]`.
    pub config: MessagingConfig,
    /// New inbox messages, for subscriptions.
    pub arrived: broadcast::Sender<Arc<InboxMessage>>,
    handlers: Vec<Handler>,
    outbox_ready: Notify,
    deliveries_ready: Notify,
    handlers_ready: Notify,
    topics_dirty: AtomicBool,
    max_age: Mutex<MaxAge>,
}

impl Messaging {
    /// Opens the stores under the node's data directory.
    pub fn open(config: &NodeConfig, handlers: Vec<Handler>) -> Result<Messaging, OpenError> {
        let stores =
            crate::messaging::open(&config.data_dir, config.messaging.serve_broker.is_some())?;
        Ok(Messaging {
            stores,
            config: config.messaging.clone(),
            // Room for a burst while a subscriber's client reads.
            arrived: broadcast::channel(16 * 1024).0,
            handlers,
            outbox_ready: Notify::new(),
            deliveries_ready: Notify::new(),
            handlers_ready: Notify::new(),
            topics_dirty: AtomicBool::new(true),
            max_age: Mutex::new(MaxAge {
                effective: config.messaging.max_age,
                lowered: None,
            }),
        })
    }

    /// Where this node's outbox goes: the `[messaging] broker` peer, this
    /// node when it is a broker itself, or nowhere.
    pub fn broker(&self) -> Option<BrokerRoute> {
        match (&self.config.broker, &self.config.serve_broker) {
            (Some(peer), _) => Some(BrokerRoute::Peer(peer.clone())),
            (None, Some(_)) => Some(BrokerRoute::Local),
            (None, None) => None,
        }
    }

    /// Plugins whose handler a message on `topic` (direct when `None`)
    /// runs.
    pub fn handlers_for(&self, topic: Option<&str>) -> Vec<String> {
        self.handlers
            .iter()
            .filter(|h| h.grant.covers(topic))
            .map(|h| h.plugin.clone())
            .collect()
    }

    fn handler(&self, plugin: &str) -> Option<&Handler> {
        self.handlers.iter().find(|h| h.plugin == plugin)
    }

    /// The outbox's age limit in force.
    pub fn max_age(&self) -> MaxAge {
        self.max_age
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Keeps the outbox's age limit inside the broker's dedupe window (a
    /// resend after the window would be stored twice), saying so once.
    fn fit_max_age(&self, broker: &str, window_s: u64) {
        let window = Duration::from_secs(window_s);
        // An hour's margin for clocks and the last retry, but never below
        // half the window.
        let inside = window
            .saturating_sub(Duration::from_secs(3600))
            .max(window / 2);
        let mut max_age = self.max_age.lock().unwrap_or_else(|p| p.into_inner());
        let wanted = self.config.max_age.min(inside);
        if wanted != max_age.effective {
            max_age.effective = wanted;
            max_age.lowered = (wanted < self.config.max_age).then(|| {
                format!(
                    "lowered from {}h to {:.1}h to stay inside broker `{broker}`'s dedupe window of {}h",
                    self.config.max_age.as_secs() / 3600,
                    wanted.as_secs_f64() / 3600.0,
                    window_s / 3600
                )
            });
            if let Some(reason) = &max_age.lowered {
                tracing::warn!(broker, "outbox max_age {reason}");
            }
        }
    }

    /// The outbox has new rows.
    pub fn outbox_changed(&self) {
        self.outbox_ready.notify_one();
    }

    /// The broker store has new deliveries.
    pub fn deliveries_changed(&self) {
        self.deliveries_ready.notify_one();
    }

    /// The subscribed topics changed: the broker must hear the new set.
    pub fn topics_changed(&self) {
        self.topics_dirty.store(true, Ordering::SeqCst);
        self.outbox_ready.notify_one();
    }

    /// A message arrived: tell subscriptions and, if queued, handlers.
    pub fn arrived(&self, message: InboxMessage, handled: bool) {
        let _ = self.arrived.send(Arc::new(message));
        if handled {
            self.handlers_ready.notify_one();
        }
    }
}

/// Where the outbox sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerRoute {
    /// This node is its own broker.
    Local,
    /// A peer, by name.
    Peer(String),
}

impl BrokerRoute {
    /// The path of a broker operation on it.
    pub fn path(&self, operation: &str) -> String {
        match self {
            BrokerRoute::Local => format!("/node/broker/{operation}"),
            BrokerRoute::Peer(name) => format!("/{name}/broker/{operation}"),
        }
    }
}

/// Starts the workers for `node` (after its peers are attached).
pub fn start(node: &Arc<Node>) {
    let messaging = node.messaging().clone();
    let weak: Weak<Node> = Arc::downgrade(node);
    let changes = node.peers().changes();
    tokio::spawn(sender::run(
        weak.clone(),
        messaging.clone(),
        changes.clone(),
    ));
    if messaging.stores.broker.is_some() {
        tokio::spawn(delivery::run(weak.clone(), messaging.clone(), changes));
    }
    tokio::spawn(handlers::run(weak, messaging));
}

/// A retry wait: `min` doubled per attempt up to `max`, then between half
/// and all of it at random so retries from many rows spread out.
pub fn backoff(attempts: u32, min: Duration, max: Duration) -> Duration {
    let exp = min.saturating_mul(1u32 << attempts.min(20)).min(max);
    let mut byte = [0u8; 2];
    let _ = getrandom::getrandom(&mut byte);
    let fraction = 0.5 + f64::from(u16::from_le_bytes(byte)) / f64::from(u16::MAX) / 2.0;
    exp.mul_f64(fraction)
}

/// A store error as a call error.
pub fn db_error(err: DbError) -> CallError {
    let code = match &err {
        DbError::Full { .. } => ErrorCode::ResourceExhausted,
        DbError::Conflict(_) => ErrorCode::Conflict,
        DbError::Refused(_) => ErrorCode::NotFound,
        DbError::Stopped { .. } => ErrorCode::Unavailable,
        DbError::Sqlite { .. } | DbError::Corrupt { .. } => ErrorCode::Failed,
    };
    CallError::new(code, err.to_string())
}

/// Milliseconds from now.
fn after(wait: Duration) -> i64 {
    crate::messaging::db::now_ms() + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX)
}

/// How long to sleep until `next_due` (ms since the epoch), at most
/// [`IDLE_POLL`].
fn until(next_due: Option<i64>) -> Duration {
    match next_due {
        Some(at) => {
            let ms = (at - crate::messaging::db::now_ms()).clamp(0, IDLE_POLL.as_millis() as i64);
            Duration::from_millis(u64::try_from(ms).unwrap_or(0))
        }
        None => IDLE_POLL,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_bounds_with_jitter() {
        let min = Duration::from_millis(100);
        let max = Duration::from_secs(30);
        for attempts in 0..40 {
            let wait = backoff(attempts, min, max);
            let ceiling = min.saturating_mul(1 << attempts.min(20)).min(max);
            assert!(
                wait <= ceiling && wait >= ceiling / 2,
                "{attempts}: {wait:?}"
            );
        }
    }
}
