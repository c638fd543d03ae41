//! The Rust client library: connect to a node's Unix socket and make calls.
//!
//! One [`Client`] multiplexes any number of concurrent calls over one
//! connection; the CLI and the end-to-end tests use it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), hearth_host::client::ClientError> {
//! use hearth_host::client::Client;
//!
//! let client = Client::connect("/path/to/host.sock".as_ref()).await?;
//! let reply = client.call("/node/echo/ping", &serde_json::json!({"msg": "hi"})).await?;
//! assert_eq!(reply.output["msg"], "hi");
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hearth_registry::{CallError, ResponseEnvelope};
use tokio::net::UnixStream;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::oneshot;

use hearth_protocol::frame;
use hearth_protocol::socket::{CallFrame, ClientFrame, NodeFrame, PROTOCOL_VERSION, WireResult};

/// Largest frame the client accepts from the node.
const MAX_REPLY_BYTES: u32 = 64 << 20;

/// Why a call did not produce a response.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No node answers on the socket.
    #[error(
        "cannot connect to a node at {path}: {source}; is `host serve` running? (pass --socket or set HEARTH_SOCKET to use another)"
    )]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The node answered with a typed error.
    #[error("{0}")]
    Call(CallError),
    /// The node refused the connection or a frame.
    #[error("the node refused: {0}")]
    Refused(CallError),
    /// The connection broke or the node sent something unreadable.
    #[error("connection to the node failed: {0}")]
    Protocol(String),
}

impl ClientError {
    /// The typed error when the node answered with one.
    pub fn call_error(&self) -> Option<&CallError> {
        match self {
            ClientError::Call(e) | ClientError::Refused(e) => Some(e),
            _ => None,
        }
    }
}

/// Options of one call.
#[derive(Debug, Clone, Default)]
pub struct CallOptions {
    /// Deadline; the node's default when `None`.
    pub timeout: Option<Duration>,
    /// Metadata passed to the handler.
    pub metadata: Vec<(String, String)>,
}

/// A call waiting for its reply, and where its events go.
struct Waiting {
    reply: oneshot::Sender<Result<WireResult, ClientError>>,
    events: Option<tokio::sync::mpsc::UnboundedSender<String>>,
}

type Pending = Arc<Mutex<HashMap<u64, Waiting>>>;

/// A connection to a node.
pub struct Client {
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
    pending: Pending,
    next_id: AtomicU64,
    node: String,
    identity: String,
    reader: tokio::task::JoinHandle<()>,
}

fn lock(pending: &Pending) -> std::sync::MutexGuard<'_, HashMap<u64, Waiting>> {
    pending.lock().unwrap_or_else(|p| p.into_inner())
}

impl Client {
    /// Connects to the node at `socket` and exchanges `Hello`.
    pub async fn connect(socket: &Path) -> Result<Client, ClientError> {
        let stream = UnixStream::connect(socket)
            .await
            .map_err(|source| ClientError::Connect {
                path: socket.to_owned(),
                source,
            })?;
        let (mut reader, mut writer) = stream.into_split();
        let hello = ClientFrame::Hello {
            protocol: PROTOCOL_VERSION,
            client: format!("hearth-client/{}", env!("CARGO_PKG_VERSION")),
        };
        frame::write_frame(&mut writer, &hello)
            .await
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let (node, identity) = match read_node_frame(&mut reader).await? {
            Some(NodeFrame::Hello { node, identity, .. }) => (node, identity),
            Some(NodeFrame::Refused { error, .. }) => return Err(ClientError::Refused(error)),
            Some(other) => {
                return Err(ClientError::Protocol(format!(
                    "expected Hello, got {other:?}"
                )));
            }
            None => {
                return Err(ClientError::Protocol(
                    "the node closed the connection".to_owned(),
                ));
            }
        };
        let pending: Pending = Arc::default();
        let reader = tokio::spawn(read_replies(reader, pending.clone()));
        Ok(Client {
            writer: tokio::sync::Mutex::new(writer),
            pending,
            next_id: AtomicU64::new(1),
            node,
            identity,
            reader,
        })
    }

    /// The node's name, from its `Hello`.
    pub fn node_name(&self) -> &str {
        &self.node
    }

    /// The identity the node gave this connection.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Calls `path` with `input`.
    pub async fn call(
        &self,
        path: &str,
        input: &serde_json::Value,
    ) -> Result<ResponseEnvelope, ClientError> {
        self.call_raw(path, &input.to_string(), CallOptions::default())
            .await
    }

    /// Calls `path` with JSON text `input` and `options`.
    pub async fn call_raw(
        &self,
        path: &str,
        input: &str,
        options: CallOptions,
    ) -> Result<ResponseEnvelope, ClientError> {
        self.call_with_events(path, input, options, |_| {}).await
    }

    /// Calls `path`, handing each event of a subscription to `on_event`
    /// (as JSON text) as it arrives, until the call's reply.
    pub async fn call_with_events(
        &self,
        path: &str,
        input: &str,
        options: CallOptions,
        mut on_event: impl FnMut(String),
    ) -> Result<ResponseEnvelope, ClientError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let (events_tx, mut events_rx) = tokio::sync::mpsc::unbounded_channel();
        lock(&self.pending).insert(
            id,
            Waiting {
                reply: tx,
                events: Some(events_tx),
            },
        );
        let frame = ClientFrame::Call(CallFrame {
            id,
            path: path.to_owned(),
            input: input.to_owned(),
            metadata: options.metadata,
            timeout_ms: options
                .timeout
                .map(|t| t.as_millis().try_into().unwrap_or(u64::MAX)),
        });
        if let Err(err) = self.send(&frame).await {
            lock(&self.pending).remove(&id);
            return Err(err);
        }
        tokio::pin!(rx);
        let reply = loop {
            tokio::select! {
                biased;
                Some(event) = events_rx.recv() => on_event(event),
                reply = &mut rx => break reply,
            }
        };
        while let Ok(event) = events_rx.try_recv() {
            on_event(event);
        }
        match reply {
            Ok(Ok(WireResult::Ok(response))) => ResponseEnvelope::try_from(response)
                .map_err(|e| ClientError::Protocol(format!("output is not JSON: {e}"))),
            Ok(Ok(WireResult::Err(error))) => Err(ClientError::Call(error)),
            Ok(Err(err)) => Err(err),
            Err(_) => Err(ClientError::Protocol(
                "the connection closed before the reply".to_owned(),
            )),
        }
    }

    /// Sends a raw frame (tests use this to send what a client should not).
    pub async fn send(&self, frame: &ClientFrame) -> Result<(), ClientError> {
        let mut writer = self.writer.lock().await;
        frame::write_frame(&mut *writer, frame)
            .await
            .map_err(|e| ClientError::Protocol(e.to_string()))
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

async fn read_node_frame(
    reader: &mut tokio::net::unix::OwnedReadHalf,
) -> Result<Option<NodeFrame>, ClientError> {
    let body = frame::read_frame(reader, MAX_REPLY_BYTES)
        .await
        .map_err(|e| ClientError::Protocol(e.to_string()))?;
    body.map(|b| {
        frame::decode(&b)
            .map_err(|e| ClientError::Protocol(format!("undecodable frame from the node: {e}")))
    })
    .transpose()
}

async fn read_replies(mut reader: tokio::net::unix::OwnedReadHalf, pending: Pending) {
    let failure = loop {
        match read_node_frame(&mut reader).await {
            Ok(Some(NodeFrame::Reply { id, result })) => {
                if let Some(waiting) = lock(&pending).remove(&id) {
                    let _ = waiting.reply.send(Ok(result));
                }
            }
            Ok(Some(NodeFrame::Event { id, payload })) => {
                if let Some(events) = lock(&pending).get(&id).and_then(|w| w.events.as_ref()) {
                    let _ = events.send(payload);
                }
            }
            Ok(Some(NodeFrame::Refused {
                id: Some(id),
                error,
            })) => {
                if let Some(waiting) = lock(&pending).remove(&id) {
                    let _ = waiting.reply.send(Err(ClientError::Refused(error)));
                }
            }
            Ok(Some(NodeFrame::Refused { id: None, error })) => break ClientError::Refused(error),
            Ok(Some(NodeFrame::Hello { .. })) => {}
            Ok(None) => break ClientError::Protocol("the node closed the connection".to_owned()),
            Err(err) => break err,
        }
    };
    // Whatever ended the connection ends every call still waiting.
    let message = failure.to_string();
    for (_, waiting) in lock(&pending).drain() {
        let _ = waiting.reply.send(Err(match &failure {
            ClientError::Refused(e) => ClientError::Refused(e.clone()),
            _ => ClientError::Protocol(message.clone()),
        }));
    }
}
