//! Who is calling from outside the node, and whether they may: the one
//! access module every door and the pipeline use.
//!
//! Doors ask it who a caller is — a same-user socket client without a key
//! ([`Access::socket_client`]), a client proving its ed25519 key by
//! challenge-response on the socket or over HTTP ([`Access::challenge`],
//! [`Access::prove`]), a bearer token on HTTP ([`Access::bearer`]: the
//! operator's token or a client's session), a peer ([`peer`]). The pipeline
//! asks it whether that identity may call an operation ([`check_scopes`]).
//! Nested calls through `env` are the pipeline's own business: they act for
//! an identity already checked here.
//!
//! A new key is held while every operator agent watching is asked
//! ([`approvals`]); the first answer wins. Keys, their state, scopes and
//! next nonces live in `clients.db` ([`store`]).

pub mod approvals;
pub mod store;
mod token;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ed25519_dalek::{Signature, VerifyingKey};
use hearth_registry::{CallError, ErrorCode, OperationPath};
use sha2::{Digest, Sha256};

use crate::call::{Door, Identity, PeerOrigin};
use crate::config::{ClientsConfig, NodeConfig};

pub use approvals::ApprovalEvent;
pub use store::{ClientRecord, Status};
pub use token::Token;

/// How long a challenge may be answered.
const CHALLENGE_TTL: Duration = Duration::from_secs(60);
/// Open challenges per key; older ones are dropped first.
const MAX_CHALLENGES_PER_KEY: usize = 64;
/// Live sessions per key; older ones end first.
const MAX_SESSIONS_PER_KEY: usize = 64;
/// Session tokens start with this, so a leaked one is recognisable.
const SESSION_PREFIX: &str = "hst_";
/// The identity of a socket client that has not proven a key on a node
/// that requires one: it may only prove one.
pub const UNAUTHENTICATED: &str = "unauthenticated";

/// Why access could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// The client store failed.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// The token file could not be read or written.
    #[error("cannot prepare the gateway token at {path}: {source}")]
    Token {
        /// The token file.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A challenge to answer.
#[derive(Debug, Clone)]
pub struct Challenge {
    /// The nonce to sign.
    pub nonce: u64,
    /// The node's identity key.
    pub node_key: [u8; 32],
}

/// An HTTP session: a bearer token standing for a proven key.
#[derive(Debug, Clone)]
pub struct Session {
    /// The token, shown once.
    pub token: String,
    /// Who it acts as.
    pub identity: Identity,
    /// How long it lasts.
    pub ttl: Duration,
}

/// One waiter on a request; dropping it stops waiting, and the last
/// waiter to stop withdraws the request.
struct Wait<'a> {
    access: &'a Access,
    key: String,
    answer: Option<tokio::sync::watch::Receiver<approvals::Answer>>,
}

impl Drop for Wait<'_> {
    fn drop(&mut self) {
        if let Some(answer) = self.answer.take()
            && self.access.approvals.give_up(&self.key, answer)
        {
            self.access.withdraw(&self.key);
        }
    }
}

struct LiveSession {
    key: String,
    identity: Identity,
    expires: Instant,
}

/// Client identities, challenges, sessions and the operator's token.
pub struct Access {
    config: ClientsConfig,
    store: store::Store,
    approvals: approvals::Approvals,
    node_key: [u8; 32],
    operator_token: Option<Token>,
    /// Open challenges by key: nonce and when it was issued.
    challenges: Mutex<HashMap<String, Vec<(u64, Instant)>>>,
    /// Sessions by the SHA-256 of their token.
    sessions: Mutex<HashMap<[u8; 32], LiveSession>>,
    /// Bumped whenever a key's scopes or status change, so connections
    /// that proved a key earlier know to look again.
    changes: std::sync::atomic::AtomicU64,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

fn store_error(err: store::StoreError) -> CallError {
    CallError::new(
        ErrorCode::Unavailable,
        format!("the client store failed: {err}"),
    )
}

/// The identity of an approved client.
fn client_identity(record: &ClientRecord) -> Identity {
    Identity::new(
        format!("client:{}:{}", record.name, &record.key[..16]),
        record.scopes.clone(),
    )
}

/// A client's self-chosen name: what an operator sees, so kept plain.
fn check_name(name: &str) -> Result<(), CallError> {
    let plain = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if plain {
        Ok(())
    } else {
        Err(CallError::new(
            ErrorCode::InvalidInput,
            "a client name is 1 to 64 characters of A-Z, a-z, 0-9, `.`, `_` and `-`",
        ))
    }
}

/// A key in hex, checked.
pub fn parse_key(text: &str) -> Result<[u8; 32], CallError> {
    let mut key = [0u8; 32];
    if text.len() != 64 || hex::decode_to_slice(text, &mut key).is_err() {
        return Err(CallError::new(
            ErrorCode::InvalidInput,
            "a client key is an ed25519 public key: 64 hex digits",
        ));
    }
    Ok(key)
}

/// Checks scopes as the one rule for every caller from outside: each of
/// `required` must be held. A denial names the scope, the operation and
/// who lacked it.
pub fn check_scopes(
    identity: &Identity,
    required: &[String],
    path: &OperationPath,
) -> Result<(), CallError> {
    if identity.id == UNAUTHENTICATED {
        return Err(CallError::new(
            ErrorCode::Denied,
            "this node requires a client key on its socket ([clients] require_keys_on_socket): prove one first (the CLI does with the key `host clients key` prints)",
        ));
    }
    let Some(missing) = required.iter().find(|s| !identity.holds(s)) else {
        return Ok(());
    };
    let message = if identity
        .scopes
        .iter()
        .any(|held| identity_covers(held, missing))
    {
        // The peer holds it; the client it calls for does not.
        format!(
            "identity `{}` calls {path} for a client lacking scope `{missing}` there; that node's operator grants it to the client",
            identity.id
        )
    } else {
        format!(
            "identity `{}` lacks scope `{missing}`, which {path} requires; ask the operator to grant it (`host clients approve <key> --scopes …`, or `scopes` of its [peers] entry)",
            identity.id
        )
    };
    Err(CallError::new(ErrorCode::Denied, message))
}

fn identity_covers(held: &str, scope: &str) -> bool {
    Identity::new("", vec![held.to_owned()]).holds(scope)
}

/// A peer may call only what its `[peers.<name>].allow` covers on `node`.
pub fn check_peer_allow(
    peer: &PeerOrigin,
    path: &OperationPath,
    node: &str,
) -> Result<(), CallError> {
    if peer.allow.iter().any(|pattern| pattern.matches(path)) {
        return Ok(());
    }
    Err(CallError::new(
        ErrorCode::Denied,
        format!(
            "peer `{}` may not call {path} on `{node}`; add \"{path}\" (or a pattern such as \"/node/{}/*\") to `allow` of [peers.{}] in that node's stack.toml",
            peer.name,
            path.namespace(),
            peer.name
        ),
    ))
}

/// The identity of a peer's calls: `peer:<name>` with the scopes its
/// `[peers.<name>]` entry grants.
pub fn peer(name: &str, scopes: &[String]) -> Identity {
    Identity::new(format!("peer:{name}"), scopes.to_vec())
}

impl Access {
    /// Opens `clients.db`, lets the configured operator keys in, forgets
    /// requests nobody waits for any more, and loads the gateway's
    /// operator token when the gateway is on.
    pub async fn open(config: &NodeConfig, node_key: [u8; 32]) -> Result<Access, AccessError> {
        let store = store::Store::open(&config.clients_db())?;
        store.forget_pending().await?;
        for key in &config.clients.operator_keys {
            let key = hex::encode(key);
            let known = store.get(key.clone()).await?;
            let operator = known
                .as_ref()
                .is_some_and(|r| r.status == Status::Approved && r.scopes.iter().any(|s| s == "*"));
            if !operator {
                store
                    .approve(
                        key,
                        "operator".into(),
                        vec!["*".into()],
                        "config".into(),
                        "config",
                    )
                    .await?;
            }
        }
        let operator_token = match &config.gateway {
            Some(gateway) => Some(Token::load_or_create(&gateway.token_file)?),
            None => None,
        };
        Ok(Access::with(
            config.clients.clone(),
            store,
            node_key,
            operator_token,
        ))
    }

    fn with(
        config: ClientsConfig,
        store: store::Store,
        node_key: [u8; 32],
        operator_token: Option<Token>,
    ) -> Access {
        Access {
            config,
            store,
            approvals: approvals::Approvals::new(),
            node_key,
            operator_token,
            challenges: Mutex::default(),
            sessions: Mutex::default(),
            changes: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// A number that changes whenever any key's scopes or status do.
    pub fn changes(&self) -> u64 {
        self.changes.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The identity `key` stands for now: its current scopes, or none at
    /// all once it is no longer approved (a connection that proved it
    /// earlier keeps its name but loses every scope).
    pub async fn current(&self, key: &[u8; 32], was: &Identity) -> Identity {
        match self.store.get(hex::encode(key)).await {
            Ok(Some(record)) if record.status == Status::Approved => client_identity(&record),
            _ => Identity::new(was.id.clone(), Vec::new()),
        }
    }

    /// Writes a new operator token to `path` and returns it.
    pub fn rotate_token(path: &std::path::Path) -> Result<String, AccessError> {
        Token::rotate(path)
    }

    /// The identity of a same-user socket client before any key: the
    /// operator, holding `*`, unless keys are required on the socket.
    pub fn socket_client(&self, uid: u32) -> Identity {
        if self.config.require_keys_on_socket {
            Identity::new(UNAUTHENTICATED.to_owned(), Vec::new())
        } else {
            Identity::new(format!("local:uid:{uid}"), vec!["*".to_owned()])
        }
    }

    /// The identity behind an HTTP bearer token: the operator's token, or
    /// a live session's.
    pub fn bearer(&self, offered: &str) -> Option<Identity> {
        if let Some(token) = &self.operator_token
            && token.matches(offered)
        {
            return Some(Identity::new(
                "http:operator".to_owned(),
                vec!["*".to_owned()],
            ));
        }
        if !offered.starts_with(SESSION_PREFIX) {
            return None;
        }
        let digest: [u8; 32] = Sha256::digest(offered.as_bytes()).into();
        let mut sessions = lock(&self.sessions);
        match sessions.get(&digest) {
            Some(session) if session.expires > Instant::now() => Some(session.identity.clone()),
            Some(_) => {
                sessions.remove(&digest);
                None
            }
            None => None,
        }
    }

    /// Issues a challenge to `key`. A new key is registered (once, however
    /// many connections present it) and held until an operator answers or
    /// `[clients] approval_timeout_s` passes; `waiting` is told once when
    /// that starts, with what to tell the client.
    pub async fn challenge(
        &self,
        key: &[u8; 32],
        name: &str,
        door: Door,
        waiting: impl FnOnce(String),
    ) -> Result<Challenge, CallError> {
        check_name(name)?;
        let hex_key = hex::encode(key);
        let door_name = match door {
            Door::Http => "http",
            _ => "socket",
        };
        let registered = self
            .store
            .register(hex_key.clone(), name.to_owned(), door_name)
            .await
            .map_err(store_error)?;
        let mut status = registered.record.status;
        if status == Status::Pending {
            status = self.await_answer(&registered.record, waiting).await?;
        }
        match status {
            Status::Approved => {}
            Status::Denied => {
                return Err(CallError::new(
                    ErrorCode::Denied,
                    format!(
                        "an operator refused client key {hex_key}; only `host clients approve {hex_key} --scopes …` lets it in now"
                    ),
                ));
            }
            Status::Revoked => {
                return Err(CallError::new(
                    ErrorCode::Denied,
                    format!("client key {hex_key} was revoked"),
                ));
            }
            Status::Pending => {
                return Err(CallError::new(
                    ErrorCode::Unavailable,
                    format!("client key {hex_key} is still waiting for an operator"),
                ));
            }
        }
        let (nonce, record) = self
            .store
            .issue_nonce(hex_key.clone())
            .await
            .map_err(store_error)?;
        let Some(nonce) = nonce else {
            // Revoked between the answer and now.
            let status = record.map_or(Status::Revoked, |r| r.status);
            return Err(CallError::new(
                ErrorCode::Denied,
                format!("client key {hex_key} is {status} now"),
            ));
        };
        let now = Instant::now();
        let mut challenges = lock(&self.challenges);
        let open = challenges.entry(hex_key).or_default();
        open.retain(|(_, at)| now.duration_since(*at) < CHALLENGE_TTL);
        if open.len() >= MAX_CHALLENGES_PER_KEY {
            open.remove(0);
        }
        open.push((nonce, now));
        Ok(Challenge {
            nonce,
            node_key: self.node_key,
        })
    }

    /// Holds a pending key until it is decided; returns the decision. A
    /// waiter that goes away (its connection closed, so this future is
    /// dropped) stops waiting like one that timed out.
    async fn await_answer(
        &self,
        record: &ClientRecord,
        waiting: impl FnOnce(String),
    ) -> Result<Status, CallError> {
        let key = record.key.clone();
        let answer = match self.approvals.wait_on(record, self.config.max_pending) {
            approvals::Waiting::On { answer, opened } => {
                if opened {
                    tracing::info!(
                        client = %record.name,
                        key = %key,
                        door = %record.door,
                        "a new client asks to be let in: answer with `host approve --watch` or `host clients approve {key} --scopes …`"
                    );
                }
                answer
            }
            approvals::Waiting::Full => {
                self.withdraw(&key);
                return Err(CallError::new(
                    ErrorCode::ResourceExhausted,
                    format!(
                        "{} new clients already wait for an operator ([clients] max_pending); try again later",
                        self.config.max_pending
                    ),
                ));
            }
        };
        let mut wait = Wait {
            access: self,
            key: key.clone(),
            answer: Some(answer),
        };
        // Decided before this wait began?
        if let Some(now) = self.store.get(key.clone()).await.map_err(store_error)?
            && now.status != Status::Pending
        {
            return Ok(now.status);
        }
        waiting(format!(
            "client key {key} is new here: waiting up to {} s for an operator to approve it (`host approve --watch`, or `host clients approve {key} --scopes …`)",
            self.config.approval_timeout.as_secs()
        ));
        let Some(answer) = wait.answer.as_mut() else {
            return Ok(Status::Pending);
        };
        let decided = tokio::time::timeout(
            self.config.approval_timeout,
            answer.wait_for(Option::is_some),
        )
        .await;
        match decided {
            Ok(Ok(status)) => Ok(status.unwrap_or(Status::Pending)),
            _ => Err(CallError::new(
                ErrorCode::Timeout,
                format!(
                    "no operator answered within {} s; connect again to ask again",
                    self.config.approval_timeout.as_secs()
                ),
            )),
        }
    }

    /// Drops the pending row of `key` (in the background: a dropped wait
    /// calls it), so a request nobody waits on leaves nothing behind.
    fn withdraw(&self, key: &str) {
        let (store, key) = (self.store.clone(), key.to_owned());
        tokio::spawn(async move {
            if let Err(err) = store.withdraw(key).await {
                tracing::warn!(error = %err, "could not withdraw a client request");
            }
        });
    }

    /// Checks the answer to challenge `nonce` for `key` and returns the
    /// client's identity. A challenge is answered once: a replayed answer,
    /// one for a nonce never issued to this key, or one older than a
    /// minute is refused, as is a signature over anything else.
    pub async fn prove(
        &self,
        key: &[u8; 32],
        nonce: u64,
        signature: &[u8],
    ) -> Result<(Identity, ClientRecord), CallError> {
        let hex_key = hex::encode(key);
        let issued = {
            let mut challenges = lock(&self.challenges);
            let open = challenges.get_mut(&hex_key);
            let at = open.and_then(|open| {
                let i = open.iter().position(|(n, _)| *n == nonce)?;
                Some(open.remove(i).1)
            });
            if challenges.get(&hex_key).is_some_and(Vec::is_empty) {
                challenges.remove(&hex_key);
            }
            at
        };
        let refused = |why: &str| {
            tracing::warn!(key = %hex_key, nonce, "security: a client's proof was refused: {why}");
            CallError::new(ErrorCode::Denied, format!("proof refused: {why}"))
        };
        match issued {
            None => {
                return Err(refused(
                    "no challenge with this nonce is open for this key (answered already, or never issued); ask for a new one",
                ));
            }
            Some(at) if at.elapsed() >= CHALLENGE_TTL => {
                return Err(refused(
                    "the challenge expired (answer within 60 s); ask for a new one",
                ));
            }
            Some(_) => {}
        }
        let verifying = VerifyingKey::from_bytes(key)
            .map_err(|_| refused("the key is not a valid ed25519 public key"))?;
        let signature =
            Signature::from_slice(signature).map_err(|_| refused("a signature is 64 bytes"))?;
        let message = hearth_protocol::auth::challenge_message(&self.node_key, key, nonce);
        verifying
            .verify_strict(&message, &signature)
            .map_err(|_| refused("the signature does not match this key and challenge"))?;
        let record = self
            .store
            .get(hex_key.clone())
            .await
            .map_err(store_error)?
            .filter(|r| r.status == Status::Approved)
            .ok_or_else(|| refused("the key is no longer approved"))?;
        Ok((client_identity(&record), record))
    }

    /// Opens an HTTP session for a client that just proved its key.
    pub fn open_session(&self, record: &ClientRecord) -> Result<Session, CallError> {
        let mut bytes = [0u8; 32];
        getrandom::getrandom(&mut bytes)
            .map_err(|e| CallError::new(ErrorCode::Unavailable, format!("no randomness: {e}")))?;
        let token = format!("{SESSION_PREFIX}{}", hex::encode(bytes));
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let identity = client_identity(record);
        let now = Instant::now();
        let mut sessions = lock(&self.sessions);
        sessions.retain(|_, s| s.expires > now);
        let mut own: Vec<([u8; 32], Instant)> = sessions
            .iter()
            .filter(|(_, s)| s.key == record.key)
            .map(|(d, s)| (*d, s.expires))
            .collect();
        if own.len() >= MAX_SESSIONS_PER_KEY {
            own.sort_by_key(|(_, expires)| *expires);
            sessions.remove(&own[0].0);
        }
        sessions.insert(
            digest,
            LiveSession {
                key: record.key.clone(),
                identity: identity.clone(),
                expires: now + self.config.session_ttl,
            },
        );
        Ok(Session {
            token,
            identity,
            ttl: self.config.session_ttl,
        })
    }

    /// Ends every session of `key` (its scopes changed or it was revoked)
    /// and tells proven connections to look again.
    fn end_sessions(&self, key: &str) {
        lock(&self.sessions).retain(|_, s| s.key != key);
        self.changes
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// Every client this node has seen.
    pub async fn clients(&self) -> Result<Vec<ClientRecord>, CallError> {
        self.store.list().await.map_err(store_error)
    }

    /// Answers a pending request: the first answer wins; a later one gets
    /// `conflict` naming who answered.
    pub async fn decide(
        &self,
        key: &[u8; 32],
        approve: bool,
        scopes: Vec<String>,
        by: &Identity,
    ) -> Result<ClientRecord, CallError> {
        let hex_key = hex::encode(key);
        let decided = self
            .store
            .decide(hex_key.clone(), approve, scopes, by.id.clone())
            .await
            .map_err(store_error)?;
        match decided {
            store::Decided::Now(record) => {
                tracing::info!(key = %hex_key, status = ?record.status, scopes = ?record.scopes, by = %by.id, "client request answered");
                self.approvals.answered(&record);
                Ok(record)
            }
            store::Decided::Already(record) => Err(CallError::new(
                ErrorCode::Conflict,
                format!(
                    "client key {hex_key} is already {}{}",
                    record.status,
                    record
                        .decided_by
                        .map(|by| format!(" (answered by {by})"))
                        .unwrap_or_default()
                ),
            )),
            store::Decided::Unknown => Err(CallError::new(
                ErrorCode::NotFound,
                format!("no client with key {hex_key} asked to be let in"),
            )),
        }
    }

    /// Approves `key` with `scopes` whatever its state (ahead of its first
    /// request, or to change its scopes); its sessions end.
    pub async fn approve(
        &self,
        key: &[u8; 32],
        scopes: Vec<String>,
        by: &Identity,
    ) -> Result<ClientRecord, CallError> {
        let hex_key = hex::encode(key);
        let record = self
            .store
            .approve(
                hex_key.clone(),
                "unnamed".into(),
                scopes,
                by.id.clone(),
                "operator",
            )
            .await
            .map_err(store_error)?;
        tracing::info!(key = %hex_key, scopes = ?record.scopes, by = %by.id, "client approved");
        self.end_sessions(&hex_key);
        self.approvals.answered(&record);
        Ok(record)
    }

    /// Shuts `key` out: its sessions end, its next proof is refused.
    pub async fn revoke(&self, key: &[u8; 32], by: &Identity) -> Result<ClientRecord, CallError> {
        let hex_key = hex::encode(key);
        let record = self
            .store
            .revoke(hex_key.clone(), by.id.clone())
            .await
            .map_err(store_error)?
            .ok_or_else(|| {
                CallError::new(
                    ErrorCode::NotFound,
                    format!("no client with key {hex_key} is known"),
                )
            })?;
        tracing::info!(key = %hex_key, by = %by.id, "client revoked");
        self.end_sessions(&hex_key);
        self.approvals.answered(&record);
        Ok(record)
    }

    /// The requests open now, and what happens next.
    pub fn watch(
        &self,
    ) -> (
        Vec<ApprovalEvent>,
        tokio::sync::broadcast::Receiver<ApprovalEvent>,
    ) {
        self.approvals.watch()
    }

    /// The next usable nonce of `key` (for tests and `host clients`).
    pub async fn next_nonce(&self, key: &[u8; 32]) -> Result<Option<u64>, CallError> {
        self.store
            .next_nonce(hex::encode(key))
            .await
            .map_err(store_error)
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::{Signer, SigningKey};

    use super::*;

    fn access(dir: &std::path::Path) -> Access {
        let store = store::Store::open(&dir.join("clients.db")).unwrap();
        Access::with(ClientsConfig::default(), store, [9; 32], None)
    }

    fn operator() -> Identity {
        Identity::new("op", vec!["*".into()])
    }

    fn answer(key: &SigningKey, node_key: &[u8; 32], nonce: u64) -> Vec<u8> {
        let public = key.verifying_key().to_bytes();
        let message = hearth_protocol::auth::challenge_message(node_key, &public, nonce);
        key.sign(&message).to_bytes().to_vec()
    }

    #[tokio::test]
    async fn a_stale_challenge_is_refused_and_sessions_end_with_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let access = access(dir.path());
        let key = SigningKey::from_bytes(&[5; 32]);
        let public = key.verifying_key().to_bytes();
        access
            .approve(&public, vec!["echo:read".into()], &operator())
            .await
            .unwrap();

        let challenge = access
            .challenge(&public, "c", Door::Socket, |_| {})
            .await
            .unwrap();
        assert_eq!(challenge.nonce, 0);
        for (_, at) in lock(&access.challenges)
            .get_mut(&hex::encode(public))
            .unwrap()
        {
            *at -= CHALLENGE_TTL;
        }
        let signature = answer(&key, &challenge.node_key, challenge.nonce);
        let err = access
            .prove(&public, challenge.nonce, &signature)
            .await
            .unwrap_err();
        assert!(err.message.contains("expired"), "{err}");

        let challenge = access
            .challenge(&public, "c", Door::Http, |_| {})
            .await
            .unwrap();
        assert_eq!(challenge.nonce, 1, "every challenge takes the next nonce");
        let signature = answer(&key, &challenge.node_key, challenge.nonce);
        let (identity, record) = access
            .prove(&public, challenge.nonce, &signature)
            .await
            .unwrap();
        assert_eq!(identity.scopes, ["echo:read"]);
        assert_eq!(access.next_nonce(&public).await.unwrap(), Some(2));

        let session = access.open_session(&record).unwrap();
        assert!(session.token.starts_with(SESSION_PREFIX));
        assert_eq!(access.bearer(&session.token).unwrap().id, identity.id);
        assert!(access.bearer("hst_not-a-session").is_none());
        // New scopes end the old session (it was bound to the old ones).
        access
            .approve(&public, vec!["echo:*".into()], &operator())
            .await
            .unwrap();
        assert!(access.bearer(&session.token).is_none());
        // Expiry ends one too.
        let session = access.open_session(&record).unwrap();
        for live in lock(&access.sessions).values_mut() {
            live.expires = Instant::now();
        }
        assert!(access.bearer(&session.token).is_none());
        // Revocation refuses the next challenge.
        access.revoke(&public, &operator()).await.unwrap();
        let err = access
            .challenge(&public, "c", Door::Socket, |_| {})
            .await
            .unwrap_err();
        assert!(err.message.contains("revoked"), "{err}");
    }

    #[test]
    fn scope_checks_name_the_scope_and_the_caller() {
        let path: OperationPath = "/node/docker/create".parse().unwrap();
        let reader = Identity::new("client:ci:0123", vec!["docker:read".into()]);
        let err = check_scopes(&reader, &["docker:write".into()], &path).unwrap_err();
        assert_eq!(err.code, ErrorCode::Denied);
        assert!(
            err.message
                .contains("`client:ci:0123` lacks scope `docker:write`")
        );
        assert!(check_scopes(&reader, &["docker:read".into()], &path).is_ok());
        assert!(check_scopes(&reader, &[], &path).is_ok());
        let nobody = Identity::new(UNAUTHENTICATED, vec![]);
        assert!(check_scopes(&nobody, &[], &path).is_err());
    }
}
