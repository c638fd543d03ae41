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
    writer: Arc<tokio::sync::Mutex<OwnedWriteHalf>>,
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
    /// Connects to the node at `socket` and exchanges `Hello`: a same-user
    /// client without a key is the node's operator (unless the node
    /// requires keys on its socket).
    pub async fn connect(socket: &Path) -> Result<Client, ClientError> {
        Self::open(socket, None).await
    }

    /// Connects and proves `key`: calls then run as that client, with the
    /// scopes an operator gave it. A key the node has not seen waits for an
    /// operator's answer; `waiting` hears what the node says meanwhile.
    pub async fn connect_with_key(
        socket: &Path,
        key: &ClientKey,
        name: &str,
        waiting: &mut (dyn FnMut(&str) + Send),
    ) -> Result<Client, ClientError> {
        Self::open(socket, Some((key, name, waiting))).await
    }

    async fn open(socket: &Path, auth: Option<Proving<'_>>) -> Result<Client, ClientError> {
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
        let (node, mut identity) = match read_node_frame(&mut reader).await? {
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
        if let Some((key, name, waiting)) = auth {
            identity = prove(&mut reader, &mut writer, key, name, waiting).await?;
        }
        let pending: Pending = Arc::default();
        let reader = tokio::spawn(read_replies(reader, pending.clone()));
        Ok(Client {
            writer: Arc::new(tokio::sync::Mutex::new(writer)),
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
        // Dropped before its reply (the caller gave up): cancel it on the node.
        let mut guard = CancelOnDrop {
            id,
            pending: self.pending.clone(),
            writer: self.writer.clone(),
            armed: true,
        };
        tokio::pin!(rx);
        let reply = loop {
            tokio::select! {
                biased;
                Some(event) = events_rx.recv() => on_event(event),
                reply = &mut rx => break reply,
            }
        };
        guard.armed = false;
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

/// Cancels a call whose future was dropped before its reply.
struct CancelOnDrop {
    id: u64,
    pending: Pending,
    writer: Arc<tokio::sync::Mutex<OwnedWriteHalf>>,
    armed: bool,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if !self.armed || lock(&self.pending).remove(&self.id).is_none() {
            return;
        }
        let (id, writer) = (self.id, self.writer.clone());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let mut writer = writer.lock().await;
                let _ = frame::write_frame(&mut *writer, &ClientFrame::Cancel { id }).await;
            });
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// A key to prove, the name to give, and who hears what the node says
/// while an operator is asked.
type Proving<'a> = (&'a ClientKey, &'a str, &'a mut (dyn FnMut(&str) + Send));

/// Proves `key` on a fresh connection: `Authenticate`, wait (for an
/// operator, if the key is new), sign the `Challenge`, `Prove`. Returns the
/// identity the node gave.
async fn prove(
    reader: &mut tokio::net::unix::OwnedReadHalf,
    writer: &mut OwnedWriteHalf,
    key: &ClientKey,
    name: &str,
    waiting: &mut (dyn FnMut(&str) + Send),
) -> Result<String, ClientError> {
    let authenticate = ClientFrame::Authenticate {
        key: key.public().to_vec(),
        name: name.to_owned(),
    };
    frame::write_frame(&mut *writer, &authenticate)
        .await
        .map_err(|e| ClientError::Protocol(e.to_string()))?;
    loop {
        match read_node_frame(reader).await? {
            Some(NodeFrame::AwaitingApproval { message }) => waiting(&message),
            Some(NodeFrame::Challenge { nonce, node_key }) => {
                let node_key: [u8; 32] = node_key.try_into().map_err(|_| {
                    ClientError::Protocol("the node's key is not 32 bytes".to_owned())
                })?;
                let prove = ClientFrame::Prove {
                    nonce,
                    signature: key.sign_challenge(&node_key, nonce).to_vec(),
                };
                frame::write_frame(&mut *writer, &prove)
                    .await
                    .map_err(|e| ClientError::Protocol(e.to_string()))?;
            }
            Some(NodeFrame::Authenticated { identity, .. }) => return Ok(identity),
            Some(NodeFrame::Refused { error, .. }) => return Err(ClientError::Refused(error)),
            Some(other) => {
                return Err(ClientError::Protocol(format!(
                    "unexpected {other:?} while proving a key"
                )));
            }
            None => {
                return Err(ClientError::Protocol(
                    "the node closed the connection while the key was being proven".to_owned(),
                ));
            }
        }
    }
}

/// A client's ed25519 key: what it proves itself with. The secret stays
/// with the client; the node only ever sees the public half and
/// signatures.
pub struct ClientKey {
    signing: ed25519_dalek::SigningKey,
}

impl std::fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClientKey({})", self.public_hex())
    }
}

impl ClientKey {
    /// A new random key.
    pub fn generate() -> Result<ClientKey, ClientError> {
        let mut seed = zeroize::Zeroizing::new([0u8; 32]);
        getrandom::getrandom(&mut *seed)
            .map_err(|e| ClientError::Protocol(format!("no randomness for a key: {e}")))?;
        Ok(ClientKey {
            signing: ed25519_dalek::SigningKey::from_bytes(&seed),
        })
    }

    /// The key in `path` (its secret as 64 hex digits), or a new one
    /// written there 0600 (in a directory only this user can enter).
    pub fn load_or_create(path: &Path) -> Result<ClientKey, ClientError> {
        let io = |e: std::io::Error| {
            ClientError::Protocol(format!("cannot use the client key {}: {e}", path.display()))
        };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let mut seed = zeroize::Zeroizing::new([0u8; 32]);
                hex::decode_to_slice(text.trim(), &mut *seed).map_err(|_| {
                    io(std::io::Error::other(
                        "it is not 64 hex digits; move it away to make a new key",
                    ))
                })?;
                Ok(ClientKey {
                    signing: ed25519_dalek::SigningKey::from_bytes(&seed),
                })
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                use std::io::Write;
                use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
                let key = ClientKey::generate()?;
                if let Some(dir) = path.parent() {
                    std::fs::DirBuilder::new()
                        .recursive(true)
                        .mode(0o700)
                        .create(dir)
                        .map_err(io)?;
                }
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(io)?;
                let secret = zeroize::Zeroizing::new(hex::encode(key.signing.to_bytes()));
                file.write_all(format!("{}\n", secret.as_str()).as_bytes())
                    .and_then(|()| file.sync_all())
                    .map_err(io)?;
                Ok(key)
            }
            Err(err) => Err(io(err)),
        }
    }

    /// Where the CLI keeps its key: `$HEARTH_CLIENT_KEY`, else
    /// `$XDG_CONFIG_HOME/hearth/client.key`, else
    /// `~/.config/hearth/client.key`.
    pub fn default_path() -> Option<PathBuf> {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        if let Some(path) = var("HEARTH_CLIENT_KEY") {
            return Some(PathBuf::from(path));
        }
        let config = var("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| var("HOME").map(|home| PathBuf::from(home).join(".config")))?;
        Some(config.join("hearth").join("client.key"))
    }

    /// The public key.
    pub fn public(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    /// The public key, hex (what an operator approves).
    pub fn public_hex(&self) -> String {
        hex::encode(self.public())
    }

    /// The signature answering challenge `nonce` from the node whose
    /// identity key is `node_key`.
    pub fn sign_challenge(&self, node_key: &[u8; 32], nonce: u64) -> [u8; 64] {
        use ed25519_dalek::Signer;
        let message = hearth_protocol::auth::challenge_message(node_key, &self.public(), nonce);
        self.signing.sign(&message).to_bytes()
    }

    /// Signs arbitrary bytes (tests sign the wrong thing with it).
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        use ed25519_dalek::Signer;
        self.signing.sign(message).to_bytes()
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
            Ok(Some(
                NodeFrame::Hello { .. }
                | NodeFrame::AwaitingApproval { .. }
                | NodeFrame::Challenge { .. }
                | NodeFrame::Authenticated { .. },
            )) => {}
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
