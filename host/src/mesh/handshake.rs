//! Bringing a connection up: dialing a peer or accepting one, checking the
//! key against `[peers]`, and the hello exchange that negotiates features.
//!
//! Every refusal is logged on the side that refuses and carried to the
//! other side in the QUIC close reason (or the TLS alert), so both
//! operators see why.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hearth_protocol::features::Features;
use hearth_protocol::frame;
use hearth_protocol::mesh::{MAX_HELLO_BYTES, MESH_PROTOCOL, MeshHello, close};

use super::link::{PeerLink, Session, describe_close};
use super::{Mesh, serve, tls};
use crate::ops::peers::Direction;

/// How long the hello exchange may take once connected.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a dial did not produce a session.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    /// The peer cannot be reached (nothing answers, DNS fails, …).
    #[error("{0}")]
    Unreachable(String),
    /// The peer answered but one side refused: wrong key, missing
    /// feature, bad hello.
    #[error("{0}")]
    Refused(String),
    /// The peer keeps another connection with this node's key (its
    /// duplicate-connection policy): another node uses this identity.
    #[error("{0}")]
    Duplicate(String),
}

impl DialError {
    /// True when one side refused the other (rather than no answer).
    pub fn is_refusal(&self) -> bool {
        matches!(self, DialError::Refused(_) | DialError::Duplicate(_))
    }
}

/// True for QUIC error codes that carry a TLS alert.
fn is_crypto(code: quinn::TransportErrorCode) -> bool {
    (0x100..0x200).contains(&u64::from(code))
}

/// What a TLS alert from the other side means between Hearth nodes. The
/// acceptor takes any node key in TLS (and refuses unknown ones with a
/// reason afterwards), so an alert is about the handshake itself.
pub(super) fn explain_alert(code: quinn::TransportErrorCode) -> String {
    let alert = u64::from(code) & 0xff;
    let meaning = match alert {
        40 => {
            "the peer could not complete the handshake: its vault may be locked (`host vault unlock` there)"
        }
        42 | 43 | 46 | 48 | 49 => {
            "the peer refused this node's certificate: its stack.toml must pin this node's key (paste this node's `host id` output into its [peers])"
        }
        116 => {
            "the peer got no certificate from this node: is this node's vault locked? (`host vault unlock`)"
        }
        120 => {
            "the peer speaks another mesh protocol (ALPN `hearth-mesh/1` expected): upgrade the older node"
        }
        _ => "the TLS handshake failed",
    };
    format!("{meaning} (TLS alert {alert})")
}

/// Classifies why a connection attempt or hello failed.
fn connection_failed(err: &quinn::ConnectionError) -> DialError {
    let text = describe_close(err);
    match err {
        quinn::ConnectionError::ApplicationClosed(_) => DialError::Refused(text),
        // Our own verifier refused the peer's certificate: `text` says why.
        quinn::ConnectionError::TransportError(e) if is_crypto(e.code) => {
            DialError::Refused(format!("TLS handshake refused: {text}"))
        }
        quinn::ConnectionError::ConnectionClosed(c) if is_crypto(c.error_code) => {
            DialError::Refused(explain_alert(c.error_code))
        }
        _ => DialError::Unreachable(text),
    }
}

fn our_hello(mesh: &Mesh) -> MeshHello {
    MeshHello {
        protocol: MESH_PROTOCOL,
        node: mesh.name.clone(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        features: mesh.features.clone(),
    }
}

/// Checks the peer's hello against ours: protocol, then features.
fn judge(mesh: &Mesh, peer: &str, theirs: &MeshHello) -> Result<BTreeSet<String>, (u32, String)> {
    if theirs.protocol != MESH_PROTOCOL {
        return Err((
            close::BAD_HELLO,
            format!(
                "{peer} speaks mesh protocol {}, {} speaks {MESH_PROTOCOL}; upgrade the older node",
                theirs.protocol, mesh.name
            ),
        ));
    }
    Features::negotiate(&mesh.name, &mesh.features, peer, &theirs.features)
        .map_err(|mismatch| (close::FEATURE_MISSING, mismatch.to_string()))
}

async fn read_hello(recv: &mut quinn::RecvStream) -> Result<MeshHello, String> {
    let body = tokio::time::timeout(HELLO_TIMEOUT, frame::read_frame(recv, MAX_HELLO_BYTES))
        .await
        .map_err(|_| "no hello within 5 s".to_owned())?
        .map_err(|e| format!("cannot read the hello: {e}"))?
        .ok_or_else(|| "the control stream ended before the hello".to_owned())?;
    frame::decode::<MeshHello>(&body).map_err(|e| format!("malformed hello: {e}"))
}

/// Dials `link`'s peer and negotiates: an outbound [`Session`] or why not.
pub(super) async fn dial(
    mesh: &Mesh,
    link: &PeerLink,
    endpoint: &quinn::Endpoint,
) -> Result<Session, DialError> {
    let name = link.name();
    let address = link.config.address.as_deref().unwrap_or_default();
    link.refusal
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    // The endpoint's socket reaches only its own address family (an
    // IPv4 listener cannot dial `::1`, which `localhost` may resolve to).
    let ipv4_only = endpoint.local_addr().is_ok_and(|a| a.is_ipv4());
    let addr = tokio::net::lookup_host(address)
        .await
        .map_err(|e| DialError::Unreachable(format!("cannot resolve {address}: {e}")))?
        .find(|a| a.is_ipv4() || !ipv4_only)
        .ok_or_else(|| {
            DialError::Unreachable(format!(
                "{address} resolves to no address this node's socket can reach{}",
                if ipv4_only {
                    " (IPv4 only: listen on `[::]:port` for IPv6)"
                } else {
                    ""
                }
            ))
        })?;
    let connecting = endpoint
        .connect_with(link.client.clone(), addr, tls::SERVER_NAME)
        .map_err(|e| DialError::Unreachable(format!("cannot dial {addr}: {e}")))?;
    let connection = tokio::time::timeout(link.connect_timeout, connecting)
        .await
        .map_err(|_| {
            DialError::Unreachable(format!(
                "no QUIC answer from {addr} within {} ms (is `host serve` running there with `mesh.listen`?)",
                link.connect_timeout.as_millis()
            ))
        })?
        .map_err(|e| match link.refusal.lock().unwrap_or_else(|p| p.into_inner()).take() {
            // Our pin refused the peer: say what it presented.
            Some(reason) => DialError::Refused(reason),
            None => connection_failed(&e),
        })?;

    let exchange = async {
        let (mut send, mut recv) = connection
            .open_bi()
            .await
            .map_err(|e| connection_failed(&e))?;
        frame::write_frame(&mut send, &our_hello(mesh))
            .await
            .map_err(|e| DialError::Unreachable(format!("cannot send the hello: {e}")))?;
        let theirs = match read_hello(&mut recv).await {
            Ok(hello) => hello,
            // The peer may have closed with its reason before answering.
            Err(err) => {
                return Err(match connection.close_reason() {
                    Some(reason) => connection_failed(&reason),
                    None => DialError::Refused(err),
                });
            }
        };
        let _ = send.finish();
        Ok::<_, DialError>(theirs)
    };
    let theirs = match exchange.await {
        Ok(theirs) => theirs,
        Err(err) => {
            if let Some(closed) = connection.close_reason()
                && super::link::duplicate_identity(&closed)
            {
                return Err(DialError::Duplicate(super::link::describe_close(&closed)));
            }
            connection.close(close::BAD_HELLO.into(), err.to_string().as_bytes());
            return Err(err);
        }
    };
    if theirs.node != name {
        tracing::debug!(peer = %name, calls_itself = %theirs.node, "peer uses another name for itself");
    }
    match judge(mesh, name, &theirs) {
        Ok(features) => Ok(Session {
            connection,
            features: Arc::new(features),
            theirs: Arc::new(theirs.features),
            version: theirs.version,
            direction: Direction::Outbound,
            since: SystemTime::now(),
        }),
        Err((code, reason)) => {
            connection.close(code.into(), reason.as_bytes());
            Err(DialError::Refused(reason))
        }
    }
}

/// Accepts peers until the endpoint closes, each on its own task.
pub(super) async fn accept_loop(mesh: Arc<Mesh>, endpoint: quinn::Endpoint) {
    while let Some(incoming) = endpoint.accept().await {
        let mesh = mesh.clone();
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            let connection = match incoming.await {
                Ok(connection) => connection,
                Err(err) => {
                    let why = match &err {
                        quinn::ConnectionError::ConnectionClosed(c) if is_crypto(c.error_code) => {
                            explain_alert(c.error_code)
                        }
                        other => describe_close(other),
                    };
                    tracing::warn!(%remote, reason = %why, "a node's handshake failed");
                    return;
                }
            };
            accept(&mesh, connection, remote).await;
        });
    }
}

async fn accept(mesh: &Arc<Mesh>, connection: quinn::Connection, remote: std::net::SocketAddr) {
    let Some(key) = tls::peer_key(&connection) else {
        connection.close(close::UNKNOWN_KEY.into(), b"no usable certificate");
        return;
    };
    let Some(link) = mesh.by_key.get(&key).cloned() else {
        let reason = format!(
            "{} does not know key {}; its operator must add that node's `host id` output under [peers] in stack.toml",
            mesh.name,
            tls::describe_key(&key)
        );
        tracing::warn!(%remote, reason = %reason, "refused a node with an unknown key");
        connection.close(close::UNKNOWN_KEY.into(), reason.as_bytes());
        return;
    };
    let name = link.name().to_owned();
    let hello = async {
        let (mut send, mut recv) = tokio::time::timeout(HELLO_TIMEOUT, connection.accept_bi())
            .await
            .map_err(|_| "no control stream within 5 s".to_owned())?
            .map_err(|e| describe_close(&e))?;
        let theirs = read_hello(&mut recv).await?;
        // Answer even when refusing, so the dialer can see our features.
        frame::write_frame(&mut send, &our_hello(mesh))
            .await
            .map_err(|e| format!("cannot send the hello: {e}"))?;
        let _ = send.finish();
        Ok::<_, String>(theirs)
    };
    let theirs = match hello.await {
        Ok(theirs) => theirs,
        Err(reason) => {
            tracing::warn!(peer = %name, %remote, reason = %reason, "refused a peer: bad hello");
            connection.close(close::BAD_HELLO.into(), reason.as_bytes());
            return;
        }
    };
    let features = match judge(mesh, &name, &theirs) {
        Ok(features) => features,
        Err((code, reason)) => {
            tracing::warn!(peer = %name, %remote, reason = %reason, "refused a peer");
            // Let the hello reach the dialer before the close overtakes it.
            tokio::time::sleep(Duration::from_millis(50)).await;
            connection.close(code.into(), reason.as_bytes());
            return;
        }
    };
    let session = Session {
        connection: connection.clone(),
        features: Arc::new(features),
        theirs: Arc::new(theirs.features),
        version: theirs.version,
        direction: Direction::Inbound,
        since: SystemTime::now(),
    };
    tracing::info!(peer = %name, %remote, features = ?session.features, "peer connected");
    if link.set_inbound(session.clone()).is_err() {
        // Let the hello reach the dialer before the close overtakes it.
        tokio::time::sleep(Duration::from_millis(50)).await;
        connection.close(
            close::ALREADY_CONNECTED.into(),
            b"member_already_connected: another connection with this node's key is up and the broker prefers the oldest",
        );
        return;
    }
    let reason = serve::serve_connection(mesh, &link, &session).await;
    link.clear_inbound(&connection);
    tracing::info!(peer = %name, reason = %describe_close(&reason), "peer disconnected");
}
