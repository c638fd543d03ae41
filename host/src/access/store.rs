//! `clients.db`: every client key this node has seen, its state, its
//! scopes and its next challenge nonce.
//!
//! The key is the primary key, so a key is registered once however many
//! connections present it at the same moment: registration is `INSERT OR
//! IGNORE`, and whoever's insert changed a row is the one that registered.
//! A decision is an `UPDATE … WHERE status = 'pending'`, so of many
//! deciders exactly one changes the row. `next_nonce` is the next usable
//! challenge nonce: it is read and incremented in one exclusive
//! transaction, so no nonce is ever issued twice, across restarts too.

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Why the client store failed.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct StoreError {
    /// The database file.
    pub path: String,
    /// What went wrong.
    pub message: String,
}

/// Where a client stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Waiting for an operator's answer.
    Pending,
    /// Let in, with its scopes.
    Approved,
    /// Refused by an operator when it asked.
    Denied,
    /// Let in once, then shut out.
    Revoked,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl Status {
    /// The status as stored and shown: `pending`, `approved`, …
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Denied => "denied",
            Status::Revoked => "revoked",
        }
    }

    fn parse(text: &str) -> Status {
        match text {
            "approved" => Status::Approved,
            "denied" => Status::Denied,
            "revoked" => Status::Revoked,
            _ => Status::Pending,
        }
    }
}

/// One client key and what is known of it (what `/node/clients/list`
/// answers with).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ClientRecord {
    /// The ed25519 public key, hex.
    pub key: String,
    /// The name it gave when it first asked.
    pub name: String,
    /// Where it stands.
    pub status: Status,
    /// What it may do, once approved.
    pub scopes: Vec<String>,
    /// The door it first asked at (`socket`, `http`), or `operator` or
    /// `config` for a key let in ahead of time.
    pub door: String,
    /// When it first asked, in ms since the epoch.
    pub requested_at_ms: u64,
    /// Who decided last (an identity, or `config`), if anyone.
    pub decided_by: Option<String>,
    /// When, in ms since the epoch.
    pub decided_at_ms: Option<u64>,
}

/// What a registration found.
#[derive(Debug)]
pub struct Registered {
    /// The record as it is now.
    pub record: ClientRecord,
    /// True when this registration created it.
    pub created: bool,
}

/// What a decision did.
#[derive(Debug)]
pub enum Decided {
    /// This answer decided the request.
    Now(ClientRecord),
    /// Someone answered first; the record as it stands.
    Already(ClientRecord),
    /// No such key.
    Unknown,
}

/// The client store: one connection, used from blocking threads.
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

const SCHEMA: &str = "
    PRAGMA journal_mode = WAL;
    PRAGMA synchronous = FULL;
    PRAGMA busy_timeout = 5000;
    CREATE TABLE IF NOT EXISTS clients (
        key          TEXT PRIMARY KEY NOT NULL CHECK (length(key) = 64),
        name         TEXT NOT NULL,
        status       TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'denied', 'revoked')),
        scopes       TEXT NOT NULL DEFAULT '[]',
        next_nonce   INTEGER NOT NULL DEFAULT 0,
        door         TEXT NOT NULL,
        requested_at INTEGER NOT NULL,
        decided_by   TEXT,
        decided_at   INTEGER
    ) WITHOUT ROWID;
";

/// The name of a key approved before it ever asked.
pub const UNNAMED: &str = "unnamed";

const COLUMNS: &str = "key, name, status, scopes, door, requested_at, decided_by, decided_at";

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn record(row: &rusqlite::Row<'_>) -> rusqlite::Result<ClientRecord> {
    let scopes: String = row.get(3)?;
    Ok(ClientRecord {
        key: row.get(0)?,
        name: row.get(1)?,
        status: Status::parse(&row.get::<_, String>(2)?),
        scopes: serde_json::from_str(&scopes).unwrap_or_default(),
        door: row.get(4)?,
        requested_at_ms: row.get::<_, i64>(5)? as u64,
        decided_by: row.get(6)?,
        decided_at_ms: row.get::<_, Option<i64>>(7)?.map(|t| t as u64),
    })
}

fn get(conn: &Connection, key: &str) -> rusqlite::Result<Option<ClientRecord>> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM clients WHERE key = ?1"),
        [key],
        record,
    )
    .optional()
}

impl Store {
    /// Opens (or creates, 0600) the store at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let err = |message: String| StoreError {
            path: path.display().to_string(),
            message,
        };
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| err(e.to_string()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| err(e.to_string()))?;
        let conn = Connection::open(path).map_err(|e| err(e.to_string()))?;
        conn.execute_batch(SCHEMA).map_err(|e| err(e.to_string()))?;
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
            path: path.to_owned(),
        })
    }

    /// Runs `f` on the connection on a blocking thread.
    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = self.conn.clone();
        let path = self.path.display().to_string();
        let joined = tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut conn)
        })
        .await;
        match joined {
            Ok(result) => result.map_err(|e| StoreError {
                path,
                message: e.to_string(),
            }),
            Err(e) => Err(StoreError {
                path,
                message: e.to_string(),
            }),
        }
    }

    /// Registers `key` as pending unless it is known; says whether this
    /// call created it.
    pub async fn register(
        &self,
        key: String,
        name: String,
        door: &'static str,
    ) -> Result<Registered, StoreError> {
        self.with(move |conn| {
            let created = conn.execute(
                "INSERT OR IGNORE INTO clients (key, name, status, door, requested_at)
                 VALUES (?1, ?2, 'pending', ?3, ?4)",
                params![key, name, door, now_ms() as i64],
            )? == 1;
            if !created {
                // A key let in ahead of time learns its name on first use.
                conn.execute(
                    "UPDATE clients SET name = ?2 WHERE key = ?1 AND name = ?3",
                    params![key, name, UNNAMED],
                )?;
            }
            let record = get(conn, &key)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
            Ok(Registered { record, created })
        })
        .await
    }

    /// The record of `key`.
    pub async fn get(&self, key: String) -> Result<Option<ClientRecord>, StoreError> {
        self.with(move |conn| get(conn, &key)).await
    }

    /// Every record, oldest request first.
    pub async fn list(&self) -> Result<Vec<ClientRecord>, StoreError> {
        self.with(|conn| {
            let mut statement = conn.prepare(&format!(
                "SELECT {COLUMNS} FROM clients ORDER BY requested_at, key"
            ))?;
            let rows = statement.query_map([], record)?;
            rows.collect()
        })
        .await
    }

    /// Pending requests.
    pub async fn pending(&self) -> Result<usize, StoreError> {
        self.with(|conn| {
            conn.query_row(
                "SELECT count(*) FROM clients WHERE status = 'pending'",
                [],
                |row| row.get::<_, i64>(0),
            )
            .map(|n| n as usize)
        })
        .await
    }

    /// Issues a challenge nonce to an approved `key`: reads the next usable
    /// nonce and increments it in one exclusive transaction. `None` when
    /// the key is not approved (with its record, if any).
    pub async fn issue_nonce(
        &self,
        key: String,
    ) -> Result<(Option<u64>, Option<ClientRecord>), StoreError> {
        self.with(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
            let Some(found) = get(&tx, &key)? else {
                return Ok((None, None));
            };
            if found.status != Status::Approved {
                return Ok((None, Some(found)));
            }
            let nonce: i64 = tx.query_row(
                "SELECT next_nonce FROM clients WHERE key = ?1",
                [&key],
                |row| row.get(0),
            )?;
            tx.execute(
                "UPDATE clients SET next_nonce = next_nonce + 1 WHERE key = ?1",
                [&key],
            )?;
            tx.commit()?;
            Ok((Some(nonce as u64), Some(found)))
        })
        .await
    }

    /// Answers a pending request; only the first answer changes anything.
    pub async fn decide(
        &self,
        key: String,
        approve: bool,
        scopes: Vec<String>,
        by: String,
    ) -> Result<Decided, StoreError> {
        self.with(move |conn| {
            let status = if approve {
                Status::Approved
            } else {
                Status::Denied
            };
            let changed = conn.execute(
                "UPDATE clients SET status = ?2, scopes = ?3, decided_by = ?4, decided_at = ?5
                 WHERE key = ?1 AND status = 'pending'",
                params![
                    key,
                    status.as_str(),
                    serde_json::to_string(&scopes).unwrap_or_default(),
                    by,
                    now_ms() as i64
                ],
            )?;
            Ok(match (changed, get(conn, &key)?) {
                (1, Some(record)) => Decided::Now(record),
                (_, Some(record)) => Decided::Already(record),
                (_, None) => Decided::Unknown,
            })
        })
        .await
    }

    /// Approves `key` with `scopes` whatever its state, registering it if
    /// new (an operator letting a key in ahead of time, or changing scopes).
    pub async fn approve(
        &self,
        key: String,
        name: String,
        scopes: Vec<String>,
        by: String,
        door: &'static str,
    ) -> Result<ClientRecord, StoreError> {
        self.with(move |conn| {
            let now = now_ms() as i64;
            conn.execute(
                "INSERT INTO clients (key, name, status, scopes, door, requested_at, decided_by, decided_at)
                 VALUES (?1, ?2, 'approved', ?3, ?4, ?5, ?6, ?5)
                 ON CONFLICT (key) DO UPDATE SET status = 'approved', scopes = ?3,
                     decided_by = ?6, decided_at = ?5",
                params![
                    key,
                    name,
                    serde_json::to_string(&scopes).unwrap_or_default(),
                    door,
                    now,
                    by
                ],
            )?;
            get(conn, &key)?.ok_or(rusqlite::Error::QueryReturnedNoRows)
        })
        .await
    }

    /// Shuts `key` out; `None` when it is unknown.
    pub async fn revoke(
        &self,
        key: String,
        by: String,
    ) -> Result<Option<ClientRecord>, StoreError> {
        self.with(move |conn| {
            conn.execute(
                "UPDATE clients SET status = 'revoked', scopes = '[]', decided_by = ?2, decided_at = ?3
                 WHERE key = ?1",
                params![key, by, now_ms() as i64],
            )?;
            get(conn, &key)
        })
        .await
    }

    /// Drops the pending row of `key`: its request was withdrawn.
    pub async fn withdraw(&self, key: String) -> Result<(), StoreError> {
        self.with(move |conn| {
            conn.execute(
                "DELETE FROM clients WHERE key = ?1 AND status = 'pending'",
                [key],
            )
            .map(drop)
        })
        .await
    }

    /// Drops every pending row: at start nobody waits on them any more,
    /// and a client asking again registers again.
    pub async fn forget_pending(&self) -> Result<(), StoreError> {
        self.with(|conn| {
            conn.execute("DELETE FROM clients WHERE status = 'pending'", [])
                .map(drop)
        })
        .await
    }

    /// The next usable nonce of `key` (tests read it).
    pub async fn next_nonce(&self, key: String) -> Result<Option<u64>, StoreError> {
        self.with(move |conn| {
            conn.query_row(
                "SELECT next_nonce FROM clients WHERE key = ?1",
                [key],
                |row| row.get::<_, i64>(0),
            )
            .optional()
            .map(|n| n.map(|n| n as u64))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> String {
        hex::encode([n; 32])
    }

    #[tokio::test]
    async fn a_key_registers_once_and_is_decided_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("clients.db")).unwrap();
        let mut created = 0;
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store.register(key(1), "c".into(), "socket").await.unwrap()
            }));
        }
        for task in tasks {
            let registered = task.await.unwrap();
            assert_eq!(registered.record.status, Status::Pending);
            created += usize::from(registered.created);
        }
        assert_eq!(created, 1);
        assert_eq!(store.pending().await.unwrap(), 1);

        let mut decided = 0;
        let mut tasks = Vec::new();
        for i in 0..20 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .decide(key(1), true, vec!["echo:read".into()], format!("op{i}"))
                    .await
                    .unwrap()
            }));
        }
        for task in tasks {
            match task.await.unwrap() {
                Decided::Now(record) => {
                    decided += 1;
                    assert_eq!(record.scopes, ["echo:read"]);
                }
                Decided::Already(record) => assert_eq!(record.status, Status::Approved),
                Decided::Unknown => panic!("the key is known"),
            }
        }
        assert_eq!(decided, 1);
        assert!(matches!(
            store
                .decide(key(9), true, vec![], "x".into())
                .await
                .unwrap(),
            Decided::Unknown
        ));
    }

    #[tokio::test]
    async fn nonces_are_issued_once_each_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clients.db");
        let store = Store::open(&path).unwrap();
        store.register(key(2), "c".into(), "http").await.unwrap();
        // Not approved: no nonce.
        assert_eq!(store.issue_nonce(key(2)).await.unwrap().0, None);
        assert_eq!(store.issue_nonce(key(3)).await.unwrap().0, None);
        store
            .approve(key(2), "c".into(), vec![], "op".into(), "http")
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for _ in 0..30 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store.issue_nonce(key(2)).await.unwrap().0.unwrap()
            }));
        }
        let mut nonces = Vec::new();
        for task in tasks {
            nonces.push(task.await.unwrap());
        }
        nonces.sort();
        assert_eq!(nonces, (0..30).collect::<Vec<u64>>());
        drop(store);
        let store = Store::open(&path).unwrap();
        assert_eq!(store.issue_nonce(key(2)).await.unwrap().0, Some(30));
        assert_eq!(store.next_nonce(key(2)).await.unwrap(), Some(31));
        let revoked = store.revoke(key(2), "op".into()).await.unwrap().unwrap();
        assert_eq!(revoked.status, Status::Revoked);
        assert_eq!(store.issue_nonce(key(2)).await.unwrap().0, None);
    }
}
