//! One peer as this node sees it: its connections, its state, and the
//! dialer that keeps an outbound connection up with backoff.
//!
//! A link holds at most one outbound connection (dialed by this node) and
//! the inbound ones (dialed by the peer) its duplicate-connection policy
//! keeps: the newest (`prefer_newest`, closing the older with a reason), the
//! oldest (`prefer_oldest`, refusing the newer), or all
//! (`allow_concurrent`). Calls use whichever is up, outbound first, then
//! the newest inbound. A peer with no `address` is reached only over the connection it
//! makes. When nothing is up, calls fail at once with `unavailable` and
//! nudge the dialer to retry now instead of waiting out its backoff.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use hearth_registry::{CallError, ErrorCode};
use tokio::sync::{Notify, watch};

use super::{Mesh, handshake, serve};
use crate::config::{DuplicateConnections, PeerConfig};
use crate::ops::peers::{Direction, PeerState, PeerStatus};

/// First wait after a failed dial; doubled per failure up to [`BACKOFF_MAX`].
const BACKOFF_START: Duration = Duration::from_millis(200);
/// Longest wait between dials.
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// How often a dialer checks whether a locked vault has been unlocked.
const LOCKED_POLL: Duration = Duration::from_millis(250);
/// How long a call waits for the very first dial of a peer to finish.
const FIRST_DIAL_WAIT: Duration = Duration::from_secs(3);

/// An established, negotiated connection.
#[derive(Debug, Clone)]
pub struct Session {
    /// The QUIC connection.
    pub connection: quinn::Connection,
    /// Features both sides agreed on.
    pub features: Arc<BTreeSet<String>>,
    /// What the peer advertised in its hello (a broker's window).
    pub theirs: Arc<hearth_protocol::features::Features>,
    /// The peer's `host` version.
    pub version: String,
    /// Who dialed.
    pub direction: Direction,
    /// When it came up.
    pub since: SystemTime,
}

impl Session {
    /// True when `feature` was negotiated.
    pub fn has(&self, feature: &str) -> bool {
        self.features.contains(feature)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Dial {
    /// No address: the peer dials this node.
    Waiting,
    /// A dial is in progress; `failures` before it.
    Connecting { failures: u32 },
    /// The last dial failed; the next is at `retry_at`.
    Backoff { retry_at: Instant, refused: bool },
    /// Connected outbound.
    Up,
    /// This node's vault is locked: no dial can succeed until it is unlocked.
    Locked,
}

#[derive(Debug)]
struct State {
    outbound: Option<Session>,
    /// Oldest first.
    inbound: Vec<Session>,
    dial: Dial,
    last_error: Option<String>,
    /// A call has woken the dialer during the current backoff.
    nudged: bool,
}

/// A configured peer and its connections.
pub struct PeerLink {
    pub(super) config: PeerConfig,
    pub(super) client: quinn::ClientConfig,
    /// Why the pinned verifier refused the last certificate it saw.
    pub(super) refusal: super::tls::RefusalSlot,
    pub(super) connect_timeout: Duration,
    state: Mutex<State>,
    changed: watch::Sender<u64>,
    /// The mesh's, bumped with this link's.
    mesh_changed: Arc<watch::Sender<u64>>,
    duplicates: DuplicateConnections,
    wake: Notify,
}

/// Why an inbound connection was not kept.
#[derive(Debug)]
pub(super) struct AlreadyConnected;

impl PeerLink {
    pub(super) fn new(
        config: PeerConfig,
        client: quinn::ClientConfig,
        refusal: super::tls::RefusalSlot,
        idle: Duration,
        duplicates: DuplicateConnections,
        mesh_changed: Arc<watch::Sender<u64>>,
    ) -> Self {
        let dial = if config.address.is_some() {
            Dial::Connecting { failures: 0 }
        } else {
            Dial::Waiting
        };
        PeerLink {
            config,
            client,
            refusal,
            connect_timeout: idle.min(Duration::from_secs(5)),
            state: Mutex::new(State {
                outbound: None,
                inbound: Vec::new(),
                dial,
                last_error: None,
                nudged: false,
            }),
            changed: watch::channel(0).0,
            mesh_changed,
            duplicates,
            wake: Notify::new(),
        }
    }

    /// Interrupts the dialer's wait.
    pub(super) fn wake(&self) {
        self.wake.notify_one();
    }

    /// The peer's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.lock());
        self.changed.send_modify(|generation| *generation += 1);
        self.mesh_changed.send_modify(|generation| *generation += 1);
    }

    /// A live connection, outbound first. One that has closed is skipped
    /// even before its serving task notices.
    fn live_session(state: &State) -> Option<Session> {
        state
            .outbound
            .iter()
            .chain(state.inbound.iter().rev())
            .find(|s| s.connection.close_reason().is_none())
            .cloned()
    }

    /// A connection to make a call on. It waits (never past `deadline`)
    /// only while a dial that has not failed yet is in progress — the
    /// first dial of a peer, or the redial right after a lost connection;
    /// otherwise it fails at once with `unavailable`.
    pub async fn session_for_call(&self, deadline: Instant) -> Result<Session, CallError> {
        let mut changed = self.changed.subscribe();
        let wait_until = deadline.min(Instant::now() + FIRST_DIAL_WAIT);
        loop {
            {
                let mut state = self.lock();
                if let Some(session) = Self::live_session(&state) {
                    return Ok(session);
                }
                if !matches!(state.dial, Dial::Connecting { failures: 0 }) {
                    let reason = self.unavailable_reason(&state);
                    // Wake a dialer that is waiting out its backoff after
                    // no answer, once per wait: a refusal needs the other
                    // side fixed, and a dial in progress needs no nudge.
                    let nudge =
                        matches!(state.dial, Dial::Backoff { refused: false, .. }) && !state.nudged;
                    state.nudged |= nudge;
                    drop(state);
                    if nudge {
                        self.wake.notify_one();
                    }
                    return Err(CallError::new(ErrorCode::Unavailable, reason));
                }
            }
            let timed_out = tokio::time::timeout_at(wait_until.into(), changed.changed())
                .await
                .is_err();
            if timed_out {
                let state = self.lock();
                if let Some(session) = Self::live_session(&state) {
                    return Ok(session);
                }
                return Err(CallError::new(
                    ErrorCode::Unavailable,
                    format!(
                        "peer `{}` is still being dialed at {}; try again shortly",
                        self.config.name,
                        self.config.address.as_deref().unwrap_or("?")
                    ),
                ));
            }
        }
    }

    fn unavailable_reason(&self, state: &State) -> String {
        let name = &self.config.name;
        let last = state
            .last_error
            .as_deref()
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        match (&state.dial, &self.config.address) {
            (Dial::Waiting, _) | (_, None) => format!(
                "peer `{name}` is not connected (it has no `address` here, so it must dial this node){last}"
            ),
            (Dial::Backoff { retry_at, .. }, Some(address)) => format!(
                "peer `{name}` at {address} is unreachable{last}; retrying in {} ms",
                retry_at
                    .saturating_duration_since(Instant::now())
                    .as_millis()
            ),
            (_, Some(address)) => format!("peer `{name}` at {address} is not connected{last}"),
        }
    }

    /// Records an inbound connection under the duplicate-connection
    /// policy; every case where another connection of the same node is
    /// live is logged.
    pub(super) fn set_inbound(&self, session: Session) -> Result<(), AlreadyConnected> {
        let name = &self.config.name;
        let mut replaced = Vec::new();
        let mut refused = false;
        self.update(|state| {
            state
                .inbound
                .retain(|s| s.connection.close_reason().is_none());
            if state.inbound.is_empty() {
                state.inbound.push(session.clone());
                return;
            }
            match self.duplicates {
                DuplicateConnections::PreferNewest => {
                    replaced = std::mem::take(&mut state.inbound);
                    state.inbound.push(session.clone());
                }
                DuplicateConnections::PreferOldest => refused = true,
                DuplicateConnections::AllowConcurrent => state.inbound.push(session.clone()),
            }
        });
        let remote = session.connection.remote_address();
        if refused {
            tracing::warn!(peer = %name, %remote, policy = "prefer_oldest", "member_concurrent_connection: refused a second connection with this node's key; the first stays");
            return Err(AlreadyConnected);
        }
        for old in replaced {
            tracing::warn!(peer = %name, %remote, older = %old.connection.remote_address(), policy = "prefer_newest", "member_concurrent_connection: a newer connection with this node's key replaces the older one");
            old.connection.close(
                hearth_protocol::mesh::close::REPLACED.into(),
                b"replaced by a newer connection from the same node",
            );
        }
        if self.duplicates == DuplicateConnections::AllowConcurrent && self.lock().inbound.len() > 1
        {
            tracing::warn!(peer = %name, %remote, policy = "allow_concurrent", connections = self.lock().inbound.len(), "member_concurrent_connection: another connection with this node's key, kept beside the others");
        }
        Ok(())
    }

    /// Forgets the inbound connection `connection`, if it is the current one.
    pub(super) fn clear_inbound(&self, connection: &quinn::Connection) {
        self.update(|state| {
            state
                .inbound
                .retain(|s| s.connection.stable_id() != connection.stable_id());
        });
    }

    /// What the peer advertised, while a connection is up.
    pub fn advertised(&self) -> Option<Arc<hearth_protocol::features::Features>> {
        Self::live_session(&self.lock()).map(|s| s.theirs)
    }

    /// What `host peers` shows.
    pub fn status(&self) -> PeerStatus {
        let state = self.lock();
        let live = Self::live_session(&state);
        let session = live.as_ref();
        let label = match (&session, &state.dial) {
            (Some(_), _) => PeerState::Connected,
            (None, Dial::Waiting) => PeerState::Waiting,
            (None, Dial::Locked) => PeerState::Locked,
            (None, Dial::Connecting { .. }) | (None, Dial::Up) => PeerState::Connecting,
            (None, Dial::Backoff { refused: true, .. }) => PeerState::Refused,
            (None, Dial::Backoff { .. }) => PeerState::Unreachable,
        };
        PeerStatus {
            name: self.config.name.clone(),
            address: self.config.address.clone(),
            public_key: hex::encode(self.config.key),
            fingerprint: crate::vault::fingerprint(&self.config.key),
            state: label,
            direction: session.map(|s| s.direction),
            rtt_ms: session.map(|s| s.connection.rtt().as_secs_f64() * 1000.0),
            features: session
                .map(|s| s.features.iter().cloned().collect())
                .unwrap_or_default(),
            version: session.map(|s| s.version.clone()),
            connected_for_s: session.map(|s| {
                SystemTime::now()
                    .duration_since(s.since)
                    .unwrap_or_default()
                    .as_secs()
            }),
            last_error: state.last_error.clone(),
            allow: self.config.allow.iter().map(ToString::to_string).collect(),
            scopes: self.config.scopes.clone(),
        }
    }
}

/// Keeps an outbound connection to `link` up for as long as the node runs:
/// dial, negotiate, serve the peer's calls on it until it drops, back off,
/// dial again.
pub(super) async fn dial_loop(mesh: Arc<Mesh>, link: Arc<PeerLink>, endpoint: quinn::Endpoint) {
    let name = link.config.name.clone();
    let mut failures: u32 = 0;
    loop {
        // The node is gone (dropped or shutting down): stop dialing.
        if mesh.node().is_none() || mesh.closing() {
            return;
        }
        if !mesh.can_sign() {
            // No handshake can succeed until the vault is unlocked.
            link.update(|state| {
                state.last_error = Some(
                    "this node's vault is locked, so it cannot prove its identity: `host vault unlock`"
                        .to_owned(),
                );
                state.dial = Dial::Locked;
            });
            wait_or_wake(&link, LOCKED_POLL).await;
            continue;
        }
        link.update(|state| {
            state.dial = Dial::Connecting { failures };
            state.nudged = false;
        });
        match handshake::dial(&mesh, &link, &endpoint).await {
            Ok(session) => {
                failures = 0;
                let connection = session.connection.clone();
                tracing::info!(
                    peer = %name,
                    address = link.config.address.as_deref().unwrap_or(""),
                    rtt_ms = connection.rtt().as_millis() as u64,
                    features = ?session.features,
                    version = %session.version,
                    "connected to peer"
                );
                link.update(|state| {
                    state.outbound = Some(session.clone());
                    state.dial = Dial::Up;
                    state.last_error = None;
                });
                let closed = serve::serve_connection(&mesh, &link, &session).await;
                let reason = describe_close(&closed);
                if duplicate_identity(&closed) {
                    displaced(&link, &reason);
                    return;
                }
                tracing::warn!(peer = %name, reason = %reason, "connection to peer lost; redialing");
                link.update(|state| {
                    state.outbound = None;
                    state.last_error = Some(format!("connection lost: {reason}"));
                    state.dial = Dial::Backoff {
                        retry_at: Instant::now() + BACKOFF_START,
                        refused: false,
                    };
                });
                wait_or_wake(&link, BACKOFF_START).await;
            }
            Err(handshake::DialError::Duplicate(reason)) => {
                displaced(&link, &reason);
                return;
            }
            Err(err) => {
                failures = failures.saturating_add(1);
                let delay = backoff(failures);
                let message = err.to_string();
                let repeated = link.lock().last_error.as_deref() == Some(message.as_str());
                if repeated {
                    tracing::debug!(peer = %name, error = %message, retry_ms = delay.as_millis() as u64, "peer still unreachable");
                } else {
                    tracing::warn!(peer = %name, error = %message, retry_ms = delay.as_millis() as u64, "cannot connect to peer");
                }
                link.update(|state| {
                    state.last_error = Some(message);
                    state.dial = Dial::Backoff {
                        retry_at: Instant::now() + delay,
                        refused: err.is_refusal(),
                    };
                });
                wait_or_wake(&link, delay).await;
            }
        }
    }
}

/// The peer keeps another connection with this node's key: another node
/// uses this identity. Redialing would only take turns with it, so the
/// dialer stops, saying why.
fn displaced(link: &PeerLink, reason: &str) {
    let name = &link.config.name;
    tracing::error!(peer = %name, reason = %reason, "member_concurrent_connection: another node is using this node's identity; no longer dialing this peer (restart this node once the other is gone)");
    link.update(|state| {
        state.outbound = None;
        state.last_error = Some(format!(
            "another node uses this node's identity: {reason}; not redialing until restart"
        ));
        state.dial = Dial::Backoff {
            retry_at: Instant::now() + Duration::from_secs(365 * 24 * 3600),
            refused: true,
        };
    });
}

async fn wait_or_wake(link: &PeerLink, delay: Duration) {
    tokio::select! {
        () = tokio::time::sleep(delay) => {}
        () = link.wake.notified() => {}
    }
}

/// The wait after `failures` failed dials: doubling from
/// [`BACKOFF_START`], capped at [`BACKOFF_MAX`], with ±20 % jitter so
/// nodes restarted together do not dial in lockstep.
fn backoff(failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(16);
    let base = BACKOFF_START
        .saturating_mul(1u32 << exponent)
        .min(BACKOFF_MAX);
    let mut byte = [0u8; 1];
    let jitter = if getrandom::getrandom(&mut byte).is_ok() {
        0.8 + 0.4 * f64::from(byte[0]) / 255.0
    } else {
        1.0
    };
    base.mul_f64(jitter)
}

/// A person-readable reason a connection ended.
/// True when the peer closed the connection because another connection
/// with this node's key is up (its duplicate-connection policy).
pub(super) fn duplicate_identity(err: &quinn::ConnectionError) -> bool {
    use hearth_protocol::mesh::close::{ALREADY_CONNECTED, REPLACED};
    matches!(err, quinn::ConnectionError::ApplicationClosed(close)
        if close.error_code == REPLACED.into() || close.error_code == ALREADY_CONNECTED.into())
}

pub(super) fn describe_close(err: &quinn::ConnectionError) -> String {
    match err {
        quinn::ConnectionError::ApplicationClosed(close) => {
            let reason = String::from_utf8_lossy(&close.reason);
            if reason.is_empty() {
                format!("closed by the peer (code {})", close.error_code)
            } else {
                format!("closed by the peer: {reason}")
            }
        }
        quinn::ConnectionError::TimedOut => {
            "no answer within the idle timeout (the peer stopped or the network dropped)".to_owned()
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let first = backoff(1);
        assert!(first >= BACKOFF_START.mul_f64(0.79) && first <= BACKOFF_START.mul_f64(1.21));
        let fourth = backoff(4);
        assert!(fourth >= Duration::from_millis(1200), "{fourth:?}");
        assert!(backoff(40) <= BACKOFF_MAX.mul_f64(1.21));
    }
}
