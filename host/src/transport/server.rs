//! The Unix-socket server.
//!
//! The socket lives in a directory only this user can enter (0700) and is
//! itself 0600; on top of that every connection's peer uid is checked
//! against the node's. Each connection may run many calls at once: calls
//! are tagged with ids and replies come back as they finish, in any order.
//!
//! Who a client is comes from [`Access`]: a same-user client without a key
//! is the operator (unless `[clients] require_keys_on_socket`); a client
//! that proves a key (`Authenticate`, `Challenge`, `Prove`) calls as that
//! client, with the scopes an operator approved. The proof runs on a task
//! of its own so a client that hangs up while an operator is asked
//! withdraws its request.
//!
//! A malformed frame is answered with `Refused` and the connection goes on;
//! an oversize frame is answered with `Refused` and the connection is
//! closed, since the stream cannot be resynchronised. Neither affects other
//! connections or the node.

use std::collections::HashMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hearth_protocol::frame::{self, FrameError};
use hearth_protocol::socket::{CallFrame, ClientFrame, NodeFrame, PROTOCOL_VERSION};
use hearth_registry::{CallError, ErrorCode};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::access::Access;
use crate::call::{CallRequest, Door, EventSink, Identity, OperationEnv};
use crate::ops::Served;

/// Calls one connection may have in flight.
const MAX_IN_FLIGHT: usize = 1024;
/// How long an oversize frame's remaining bytes are discarded before close.
const DRAIN_ON_CLOSE: Duration = Duration::from_millis(500);
/// Frames queued for writing per connection.
const WRITE_QUEUE: usize = 256;

/// Why the socket could not be bound.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// I/O on the socket or its directory failed.
    #[error("cannot bind {path}: {source}")]
    Io {
        /// The socket path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The directory is reachable by other users.
    #[error(
        "socket directory {dir} has mode {mode:o}; it must be private to this user (0700) — choose another `node.socket` or fix its permissions"
    )]
    DirNotPrivate {
        /// The directory.
        dir: PathBuf,
        /// Its mode bits.
        mode: u32,
    },
    /// Another node answers on the socket.
    #[error("another node is already serving on {0}; stop it or choose another socket")]
    InUse(PathBuf),
}

/// A bound socket, removed from the file system on drop.
pub struct SocketServer {
    listener: UnixListener,
    path: PathBuf,
}

/// The effective uid of this process.
#[allow(unsafe_code)]
pub fn current_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

impl SocketServer {
    /// Binds `path`: creates its directory 0700 if missing, refuses a
    /// directory others can reach, replaces a stale socket, and makes the
    /// socket 0600.
    pub async fn bind(path: &Path) -> Result<Self, BindError> {
        let io = |source| BindError::Io {
            path: path.to_owned(),
            source,
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        if !dir.exists() {
            crate::config::create_private_dir(dir).map_err(io)?;
        }
        let meta = std::fs::metadata(dir).map_err(io)?;
        let mode = meta.mode() & 0o777;
        if mode & 0o077 != 0 || meta.uid() != current_uid() {
            return Err(BindError::DirNotPrivate {
                dir: dir.to_owned(),
                mode,
            });
        }
        if path.exists() {
            if UnixStream::connect(path).await.is_ok() {
                return Err(BindError::InUse(path.to_owned()));
            }
            std::fs::remove_file(path).map_err(io)?;
        }
        let listener = UnixListener::bind(path).map_err(io)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        Ok(SocketServer {
            listener,
            path: path.to_owned(),
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts connections forever, serving each on its own task; `access`
    /// says who each client is.
    pub async fn serve<E: OperationEnv>(&self, node: Arc<E>, access: Arc<Access>) {
        loop {
            match self.listener.accept().await {
                Ok((stream, _)) => {
                    let (node, access) = (node.clone(), access.clone());
                    tokio::spawn(async move {
                        if let Err(err) = serve_connection(stream, node, access).await {
                            tracing::debug!(error = %err, "connection ended with an error");
                        }
                    });
                }
                Err(err) => {
                    // Usually EMFILE; back off instead of spinning.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

impl Drop for SocketServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

type InFlight = Arc<Mutex<HashMap<u64, AbortHandle>>>;

async fn serve_connection<E: OperationEnv>(
    stream: UnixStream,
    node: Arc<E>,
    access: Arc<Access>,
) -> std::io::Result<()> {
    let peer_uid = stream.peer_cred()?.uid();
    let (mut reader, mut writer) = stream.into_split();
    let own_uid = current_uid();
    if peer_uid != own_uid {
        tracing::warn!(peer_uid, "refused a connection from another user");
        let refused = NodeFrame::refused(
            None,
            ErrorCode::Denied,
            format!("peer uid {peer_uid} may not use this node (it runs as uid {own_uid})"),
        );
        return frame::write_frame(&mut writer, &refused).await;
    }
    let mut identity = access.socket_client(peer_uid);
    let max_frame = node.limits().max_frame_bytes;

    let (tx, mut rx) = mpsc::channel::<NodeFrame>(WRITE_QUEUE);
    let write_task = tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            if frame::write_frame(&mut writer, &frame).await.is_err() {
                break;
            }
        }
    });
    let in_flight: InFlight = Arc::default();
    let authenticating: Authenticating = Arc::default();
    // The key this connection proved, and the access changes seen since.
    let mut proven: Option<([u8; 32], u64)> = None;
    let mut greeted = false;
    let mut unread_input = false;

    loop {
        let body = match frame::read_frame(&mut reader, max_frame).await {
            Ok(Some(body)) => body,
            Ok(None) => break,
            Err(FrameError::Io(err)) => {
                tracing::debug!(error = %err, "connection read failed");
                break;
            }
            Err(err @ FrameError::Oversize { .. }) => {
                let _ = tx
                    .send(NodeFrame::refused(None, ErrorCode::ResourceExhausted, format!("{err}; closing the connection (raise `limits.max_frame_bytes` if this is legitimate)")))
                    .await;
                unread_input = true;
                break;
            }
            Err(err @ FrameError::Empty) => {
                let _ = tx
                    .send(NodeFrame::refused(
                        None,
                        ErrorCode::InvalidInput,
                        format!("malformed frame: {err}"),
                    ))
                    .await;
                continue;
            }
        };
        let frame = match frame::decode::<ClientFrame>(&body) {
            Ok(frame) => frame,
            Err(err) => {
                let _ = tx
                    .send(NodeFrame::refused(
                        None,
                        ErrorCode::InvalidInput,
                        format!("malformed frame ({} bytes): {err}", body.len()),
                    ))
                    .await;
                continue;
            }
        };
        match frame {
            ClientFrame::Hello { protocol, client } => {
                if protocol != PROTOCOL_VERSION {
                    let _ = tx
                        .send(NodeFrame::refused(
                            None,
                            ErrorCode::Unavailable,
                            format!("protocol version {protocol} is not supported; this node speaks {PROTOCOL_VERSION}"),
                        ))
                        .await;
                    break;
                }
                tracing::debug!(%client, uid = peer_uid, "client connected");
                greeted = true;
                let _ = tx
                    .send(NodeFrame::Hello {
                        protocol: PROTOCOL_VERSION,
                        node: node.node_name().to_owned(),
                        version: env!("CARGO_PKG_VERSION").to_owned(),
                        identity: identity.id.clone(),
                    })
                    .await;
            }
            _ if !greeted => {
                let _ = tx
                    .send(NodeFrame::refused(
                        None,
                        ErrorCode::InvalidInput,
                        "the first frame must be Hello".to_owned(),
                    ))
                    .await;
                break;
            }
            ClientFrame::Call(call) => {
                if lock(&authenticating).is_some() {
                    let refusal = NodeFrame::refused(
                        Some(call.id),
                        ErrorCode::InvalidInput,
                        "wait for the answer to Authenticate before calling",
                    );
                    let _ = tx.send(refusal).await;
                    continue;
                }
                // A key's scopes changed since it was proven: use the new ones.
                if let Some((key, seen)) = &mut proven
                    && *seen != access.changes()
                {
                    *seen = access.changes();
                    identity = access.current(key, &identity).await;
                }
                start_call(call, &node, &identity, &tx, &in_flight)
            }
            ClientFrame::Authenticate { key, name } => {
                authenticate(key, name, &access, &tx, &authenticating);
            }
            ClientFrame::Prove { nonce, signature } => {
                let challenged = lock(&authenticating).take();
                let frame = match challenged {
                    Some(Auth::Challenged(key)) => {
                        match access.prove(&key, nonce, &signature).await {
                            Ok((client, _)) => {
                                tracing::debug!(identity = %client.id, "socket client proved its key");
                                identity = client;
                                proven = Some((key, access.changes()));
                                NodeFrame::Authenticated {
                                    identity: identity.id.clone(),
                                    scopes: identity.scopes.clone(),
                                }
                            }
                            Err(error) => NodeFrame::Refused { id: None, error },
                        }
                    }
                    other => {
                        *lock(&authenticating) = other;
                        NodeFrame::refused(
                            None,
                            ErrorCode::InvalidInput,
                            "Prove answers a Challenge: send Authenticate first and wait for it",
                        )
                    }
                };
                let _ = tx.send(frame).await;
            }
            ClientFrame::Cancel { id } => {
                let handle = lock(&in_flight).remove(&id);
                if let Some(handle) = handle {
                    handle.abort();
                    let error = CallError::new(ErrorCode::Failed, "cancelled by the client");
                    let _ = tx.send(NodeFrame::reply(id, Err(error))).await;
                }
            }
        }
    }
    // The client is gone: nobody can receive the replies, nor answer a
    // challenge (dropping a wait for approval withdraws it).
    for (_, handle) in lock(&in_flight).drain() {
        handle.abort();
    }
    if let Some(Auth::Waiting(handle)) = lock(&authenticating).take() {
        handle.abort();
    }
    drop(tx);
    let _ = write_task.await;
    if unread_input {
        // Closing a Unix socket with unread input resets the peer, which
        // could then lose the refusal it has not read yet. Discard what is
        // still coming for a moment so the client sees why it was closed.
        let mut sink = tokio::io::sink();
        let _ = tokio::time::timeout(DRAIN_ON_CLOSE, tokio::io::copy(&mut reader, &mut sink)).await;
    }
    Ok(())
}

/// Where a connection's key proof stands.
enum Auth {
    /// Waiting for a challenge (and maybe an operator's approval).
    Waiting(AbortHandle),
    /// Challenged: the next `Prove` answers for this key.
    Challenged([u8; 32]),
}

type Authenticating = Arc<Mutex<Option<Auth>>>;

/// Starts proving `key`: asks for a challenge on a task of its own, so the
/// connection still notices its client going away while an operator is
/// asked.
fn authenticate(
    key: Vec<u8>,
    name: String,
    access: &Arc<Access>,
    tx: &mpsc::Sender<NodeFrame>,
    authenticating: &Authenticating,
) {
    let mut state = lock(authenticating);
    let refusal = if state.is_some() {
        Some("a key is being proven on this connection already")
    } else if key.len() != 32 {
        Some("a client key is an ed25519 public key: 32 bytes")
    } else {
        None
    };
    if let Some(why) = refusal {
        let (tx, frame) = (
            tx.clone(),
            NodeFrame::refused(None, ErrorCode::InvalidInput, why),
        );
        tokio::spawn(async move { tx.send(frame).await });
        return;
    }
    let mut client_key = [0u8; 32];
    client_key.copy_from_slice(&key);
    let (access, tx, slot) = (access.clone(), tx.clone(), authenticating.clone());
    let task = tokio::spawn(async move {
        let notify = tx.clone();
        let waiting = move |message: String| {
            let _ = notify.try_send(NodeFrame::AwaitingApproval { message });
        };
        let outcome = access
            .challenge(&client_key, &name, Door::Socket, waiting)
            .await;
        let frame = {
            let mut state = lock(&slot);
            match outcome {
                Ok(challenge) => {
                    *state = Some(Auth::Challenged(client_key));
                    NodeFrame::Challenge {
                        nonce: challenge.nonce,
                        node_key: challenge.node_key.to_vec(),
                    }
                }
                Err(error) => {
                    *state = None;
                    NodeFrame::Refused { id: None, error }
                }
            }
        };
        let _ = tx.send(frame).await;
    });
    *state = Some(Auth::Waiting(task.abort_handle()));
}

/// Sends a call's events as `Event` frames on its connection.
struct SocketEvents {
    id: u64,
    tx: mpsc::Sender<NodeFrame>,
}

impl EventSink for SocketEvents {
    async fn emit(&mut self, payload: String) -> bool {
        let frame = NodeFrame::Event {
            id: self.id,
            payload,
        };
        self.tx.send(frame).await.is_ok()
    }
}

fn start_call<E: OperationEnv>(
    call: CallFrame,
    node: &Arc<E>,
    identity: &Identity,
    tx: &mpsc::Sender<NodeFrame>,
    in_flight: &InFlight,
) {
    let id = call.id;
    let mut guard = lock(in_flight);
    let refusal = if guard.contains_key(&id) {
        Some(NodeFrame::refused(
            Some(id),
            ErrorCode::Conflict,
            format!("call id {id} is already in flight on this connection"),
        ))
    } else if guard.len() >= MAX_IN_FLIGHT {
        Some(NodeFrame::refused(
            Some(id),
            ErrorCode::ResourceExhausted,
            format!(
                "{MAX_IN_FLIGHT} calls already in flight on this connection; wait for some to finish"
            ),
        ))
    } else {
        None
    };
    if let Some(refusal) = refusal {
        let tx = tx.clone();
        tokio::spawn(async move { tx.send(refusal).await });
        return;
    }
    let mut request =
        CallRequest::from_client(Door::Socket, identity.clone(), call.path, call.input);
    request.metadata = call.metadata;
    request.timeout = call.timeout_ms.map(Duration::from_millis);
    let node = node.clone();
    let tx = tx.clone();
    let registry = in_flight.clone();
    let task = async move {
        let mut events = SocketEvents { id, tx };
        let served = crate::ops::serve(|r| node.call(r), request, &mut events).await;
        let Served::Done(outcome) = served else {
            // The connection is gone: nobody can receive the reply.
            return;
        };
        // Only reply if not cancelled meanwhile (cancel already replied).
        if lock(&registry).remove(&id).is_some() {
            let _ = events.tx.send(NodeFrame::reply(id, outcome)).await;
        }
    };
    // Boxed so the task tokio moves around (at spawn and on completion)
    // is a pointer, not the pipeline's whole future (9.7 KiB with a plugin
    // call in it): one copy into the box instead of three.
    let task = tokio::spawn(Box::pin(task));
    guard.insert(id, task.abort_handle());
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding these locks cannot leave them inconsistent.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
