//! The outbox (`outbox.db`): every message this node accepted to send,
//! durable before the send is answered, until its broker acknowledged it.
//!
//! A row is keyed by its `client_message_id` (`UNIQUE NOT NULL`): a resend
//! with the same id and the same content returns the first row and stores
//! nothing; the same id with other content is a conflict. Rows go
//! `pending → inflight → done`, or `dead` once the broker refused them too
//! often or they grew too old. On open, `inflight` rows return to
//! `pending` (their broker may or may not have them; it dedupes the
//! resend). The topics this node subscribes to live here too: they are the
//! node's intent, which must survive a damaged inbox.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Target;
use super::db::{Db, DbError, integrity_check, json_column, now_ms};

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS outbox (
    seq               INTEGER PRIMARY KEY,
    id                TEXT NOT NULL,
    client_message_id TEXT NOT NULL UNIQUE,
    kind              TEXT NOT NULL CHECK (kind IN ('direct', 'topic')),
    target            TEXT NOT NULL,
    body              TEXT NOT NULL,
    meta              TEXT,
    digest            TEXT NOT NULL,
    enqueued_at       INTEGER NOT NULL,
    attempts          INTEGER NOT NULL DEFAULT 0,
    next_attempt_at   INTEGER NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('pending', 'inflight', 'done', 'dead')),
    last_error        TEXT,
    delivered_at      INTEGER,
    broker_message_id TEXT
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (status, next_attempt_at);
CREATE TABLE IF NOT EXISTS topics (
    topic         TEXT PRIMARY KEY,
    subscribed_at INTEGER NOT NULL
);
";

/// Where a row stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Waiting for its next attempt.
    Pending,
    /// Being sent to the broker now.
    Inflight,
    /// The broker acknowledged it.
    Done,
    /// Given up on: refused `max_attempts` times or older than `max_age`.
    Dead,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Inflight => "inflight",
            Status::Done => "done",
            Status::Dead => "dead",
        }
    }

    fn parse(text: &str) -> Status {
        match text {
            "inflight" => Status::Inflight,
            "done" => Status::Done,
            "dead" => Status::Dead,
            _ => Status::Pending,
        }
    }
}

/// A message to enqueue.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// Its stable id.
    pub client_message_id: String,
    /// A node or a topic.
    pub target: Target,
    /// The body, JSON text.
    pub body: String,
    /// Metadata, JSON text.
    pub meta: Option<String>,
}

impl NewMessage {
    /// What identifies the content: a resend must match it.
    pub fn digest(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut hash = Sha256::new();
        for part in [
            self.target.kind(),
            self.target.name(),
            &self.body,
            self.meta.as_deref().unwrap_or(""),
        ] {
            hash.update((part.len() as u64).to_le_bytes());
            hash.update(part.as_bytes());
        }
        hex::encode(hash.finalize())
    }
}

/// One outbox row.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct OutboxRow {
    /// Local row id (a ULID).
    pub id: String,
    /// The message's stable id.
    pub client_message_id: String,
    /// `node:<name or key>` or `topic:<name>`.
    pub target: String,
    /// The body, JSON.
    pub body: serde_json::Value,
    /// Metadata, JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<serde_json::Value>,
    /// When it was accepted, ms since the epoch.
    pub enqueued_at: i64,
    /// Attempts so far.
    pub attempts: u32,
    /// When it is next tried, ms since the epoch.
    pub next_attempt_at: i64,
    /// Where it stands.
    pub status: Status,
    /// Why the last attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When the broker acknowledged it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<i64>,
    /// The broker's id for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker_message_id: Option<String>,
}

/// A row being sent, as the sender needs it.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// The row's handle (its rowid).
    pub seq: i64,
    /// The message.
    pub message: NewMessage,
    /// When it was accepted.
    pub enqueued_at: i64,
    /// Attempts before this one.
    pub attempts: u32,
}

/// What became of one attempt.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The broker stored it under this id.
    Delivered(String),
    /// Try again at `at` (ms since the epoch); `counts` when the broker
    /// refused it (an absent broker is not the message's fault).
    Retry {
        /// Why it failed.
        error: String,
        /// When to try again.
        at: i64,
        /// Whether this attempt counts toward `max_attempts`.
        counts: bool,
    },
    /// Give up.
    Dead(String),
}

/// Rows by status.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, JsonSchema)]
pub struct Counts {
    /// Waiting.
    pub pending: u64,
    /// Being sent.
    pub inflight: u64,
    /// Acknowledged (kept while a resend could still come).
    pub done: u64,
    /// Given up on.
    pub dead: u64,
}

/// The outbox.
#[derive(Clone)]
pub struct Outbox {
    db: Db,
}

/// A send answered from an existing row, or a new one.
#[derive(Debug, Clone)]
pub struct Enqueued {
    /// The row.
    pub row: OutboxRow,
    /// True when the id was already known (nothing was stored).
    pub duplicate: bool,
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<OutboxRow> {
    let kind: String = r.get("kind")?;
    let target: String = r.get("target")?;
    let body: String = r.get("body")?;
    let meta: Option<String> = r.get("meta")?;
    let status: String = r.get("status")?;
    Ok(OutboxRow {
        id: r.get("id")?,
        client_message_id: r.get("client_message_id")?,
        target: format!(
            "{}:{target}",
            if kind == "topic" { "topic" } else { "node" }
        ),
        body: json_column(body),
        meta: meta.and_then(|m| serde_json::from_str(&m).ok()),
        enqueued_at: r.get("enqueued_at")?,
        attempts: r.get("attempts")?,
        next_attempt_at: r.get("next_attempt_at")?,
        status: Status::parse(&status),
        last_error: r.get("last_error")?,
        delivered_at: r.get("delivered_at")?,
        broker_message_id: r.get("broker_message_id")?,
    })
}

impl Outbox {
    /// Opens `path`: an existing file must pass the integrity check (the
    /// outbox holds acknowledged sends, so a damaged one is never silently
    /// replaced); inflight rows return to pending.
    pub fn open(path: &Path) -> Result<Outbox, DbError> {
        if path.exists() {
            integrity_check(path)?;
        }
        let db = Db::open(path, SCHEMA)?;
        Ok(Outbox { db })
    }

    /// Returns rows left inflight by a previous run to pending; how many.
    pub async fn recover_inflight(&self) -> Result<usize, DbError> {
        let path = self.db.path().to_owned();
        self.db
            .write(move |conn| {
                conn.execute(
                    "UPDATE outbox SET status = 'pending', next_attempt_at = ?1 WHERE status = 'inflight'",
                    [now_ms()],
                )
                .map_err(|e| Db::error(&path, &e))
            })
            .await
    }

    /// Stores `message` durably, or answers with the row its id already has.
    pub async fn enqueue(&self, message: NewMessage) -> Result<Enqueued, DbError> {
        let path = self.db.path().to_owned();
        self.db
            .write(move |conn| enqueue(conn, &message).map_err(|e| e.into_db(&path)))
            .await
    }

    /// Marks up to `limit` due pending rows inflight and returns them.
    pub async fn claim(&self, limit: usize) -> Result<Vec<Claimed>, DbError> {
        let path = self.db.path().to_owned();
        self.db
            .write(move |conn| claim(conn, limit).map_err(|e| Db::error(&path, &e)))
            .await
    }

    /// Records what became of claimed rows.
    pub async fn settle(
        &self,
        outcomes: Vec<(i64, Outcome)>,
        max_attempts: u32,
    ) -> Result<(), DbError> {
        let path = self.db.path().to_owned();
        self.db
            .write(move |conn| {
                settle(conn, &outcomes, max_attempts).map_err(|e| Db::error(&path, &e))
            })
            .await
    }

    /// Makes every pending row due now (the broker just came back).
    pub async fn wake_waiting(&self) -> Result<usize, DbError> {
        let path = self.db.path().to_owned();
        self.db
            .write(move |conn| {
                conn.execute(
                    "UPDATE outbox SET next_attempt_at = ?1
                     WHERE status = 'pending' AND next_attempt_at > ?1",
                    [now_ms()],
                )
                .map_err(|e| Db::error(&path, &e))
            })
            .await
    }

    /// Moves pending rows enqueued before `cutoff` to dead; how many.
    pub async fn expire(&self, cutoff: i64, reason: String) -> Result<usize, DbError> {
        let path = self.db.path().to_owned();
        self.db
            .write(move |conn| {
                conn.execute(
                    "UPDATE outbox SET status = 'dead', last_error = ?2
                     WHERE status = 'pending' AND enqueued_at < ?1",
                    params![cutoff, reason],
                )
                .map_err(|e| Db::error(&path, &e))
            })
            .await
    }

    /// Deletes done rows delivered before `cutoff`; how many.
    pub async fn prune_done(&self, cutoff: i64) -> Result<usize, DbError> {
        let path = self.db.path().to_owned();
        self.db
            .write(move |conn| {
                conn.execute(
                    "DELETE FROM outbox WHERE status = 'done' AND delivered_at < ?1",
                    [cutoff],
                )
                .map_err(|e| Db::error(&path, &e))
            })
            .await
    }

    /// Rows, newest first, of `status` (all when `None`).
    pub async fn list(
        &self,
        status: Option<Status>,
        limit: u32,
    ) -> Result<Vec<OutboxRow>, DbError> {
        self.db
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT * FROM outbox WHERE (?1 IS NULL OR status = ?1)
                     ORDER BY enqueued_at DESC, id DESC LIMIT ?2",
                )?;
                stmt.query_map(params![status.map(Status::as_str), limit], row)?
                    .collect()
            })
            .await
    }

    /// How many rows each status has.
    pub async fn counts(&self) -> Result<Counts, DbError> {
        self.db
            .read(|conn| {
                let mut counts = Counts::default();
                let mut stmt =
                    conn.prepare_cached("SELECT status, count(*) FROM outbox GROUP BY status")?;
                let rows =
                    stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?)))?;
                for entry in rows {
                    let (status, n) = entry?;
                    match Status::parse(&status) {
                        Status::Pending => counts.pending = n,
                        Status::Inflight => counts.inflight = n,
                        Status::Done => counts.done = n,
                        Status::Dead => counts.dead = n,
                    }
                }
                Ok(counts)
            })
            .await
    }

    /// The earliest `next_attempt_at` of a pending row.
    pub async fn next_due(&self) -> Result<Option<i64>, DbError> {
        self.db
            .read(|conn| {
                conn.prepare_cached(
                    "SELECT min(next_attempt_at) FROM outbox WHERE status = 'pending'",
                )?
                .query_row([], |r| r.get(0))
            })
            .await
    }

    /// Sends a dead row (by id or client_message_id) again, from attempt 0.
    pub async fn requeue(&self, id: String) -> Result<OutboxRow, DbError> {
        self.change_dead(id, |conn, row_id| {
            conn.execute(
                "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = ?2,
                 enqueued_at = ?2, last_error = NULL WHERE seq = ?1",
                params![row_id, now_ms()],
            )
        })
        .await
    }

    /// Deletes a dead row (by id or client_message_id).
    pub async fn drop_dead(&self, id: String) -> Result<OutboxRow, DbError> {
        self.change_dead(id, |conn, row_id| {
            conn.execute("DELETE FROM outbox WHERE seq = ?1", [row_id])
        })
        .await
    }

    async fn change_dead(
        &self,
        id: String,
        change: impl FnOnce(&Connection, i64) -> rusqlite::Result<usize> + Send + 'static,
    ) -> Result<OutboxRow, DbError> {
        let path = self.db.path().to_owned();
        self.db
            .write(move |conn| {
                let found = conn
                    .query_row(
                        "SELECT * FROM outbox WHERE client_message_id = ?1
                         UNION ALL SELECT * FROM outbox WHERE id = ?1 LIMIT 1",
                        [&id],
                        |r| Ok((r.get::<_, i64>("seq")?, row(r)?)),
                    )
                    .optional()
                    .map_err(|e| Db::error(&path, &e))?;
                let Some((seq, found)) = found else {
                    return Err(DbError::Refused(format!(
                        "no outbox row `{id}`; `host msg outbox --status dead` lists the dead ones"
                    )));
                };
                if found.status != Status::Dead {
                    return Err(DbError::Refused(format!(
                        "outbox row `{id}` is {}, not dead: only dead rows are requeued or dropped",
                        found.status.as_str()
                    )));
                }
                change(conn, seq).map_err(|e| Db::error(&path, &e))?;
                Ok(found)
            })
            .await
    }

    /// Adds and removes topic subscriptions; returns the set after.
    pub async fn change_topics(
        &self,
        subscribe: Vec<String>,
        unsubscribe: Vec<String>,
    ) -> Result<Vec<String>, DbError> {
        let path = self.db.path().to_owned();
        self.db
            .write(move |conn| {
                let err = |e: rusqlite::Error| Db::error(&path, &e);
                for topic in &subscribe {
                    conn.execute(
                        "INSERT INTO topics (topic, subscribed_at) VALUES (?1, ?2)
                         ON CONFLICT (topic) DO NOTHING",
                        params![topic, now_ms()],
                    )
                    .map_err(err)?;
                }
                for topic in &unsubscribe {
                    conn.execute("DELETE FROM topics WHERE topic = ?1", [topic])
                        .map_err(err)?;
                }
                topics(conn).map_err(err)
            })
            .await
    }

    /// The topics this node subscribes to.
    pub async fn topics(&self) -> Result<Vec<String>, DbError> {
        self.db.read(topics).await
    }
}

fn topics(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare_cached("SELECT topic FROM topics ORDER BY topic")?;
    stmt.query_map([], |r| r.get(0))?.collect()
}

enum EnqueueError {
    Sqlite(rusqlite::Error),
    Conflict(String),
}

impl From<rusqlite::Error> for EnqueueError {
    fn from(e: rusqlite::Error) -> Self {
        EnqueueError::Sqlite(e)
    }
}

impl EnqueueError {
    fn into_db(self, path: &Path) -> DbError {
        match self {
            EnqueueError::Sqlite(e) => Db::error(path, &e),
            EnqueueError::Conflict(id) => DbError::Conflict(format!(
                "client_message_id `{id}` was already used for a different message; use a new id for new content"
            )),
        }
    }
}

fn enqueue(conn: &Connection, message: &NewMessage) -> Result<Enqueued, EnqueueError> {
    let digest = message.digest();
    let now = now_ms();
    let id = ulid::Ulid::new().to_string();
    let inserted: Option<i64> = conn
        .prepare_cached(
            "INSERT INTO outbox (id, client_message_id, kind, target, body, meta, digest,
                                 enqueued_at, next_attempt_at, status)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, 'pending')
             ON CONFLICT (client_message_id) DO NOTHING RETURNING seq",
        )?
        .query_row(
            params![
                id,
                message.client_message_id,
                message.target.kind(),
                message.target.name(),
                message.body,
                message.meta,
                digest,
                now
            ],
            |r| r.get(0),
        )
        .optional()?;
    if inserted.is_some() {
        // New: the row is what was just written.
        return Ok(Enqueued {
            row: OutboxRow {
                id,
                client_message_id: message.client_message_id.clone(),
                target: format!(
                    "{}:{}",
                    if matches!(message.target, Target::Topic(_)) {
                        "topic"
                    } else {
                        "node"
                    },
                    message.target.name()
                ),
                body: serde_json::from_str(&message.body)
                    .unwrap_or_else(|_| serde_json::Value::String(message.body.clone())),
                meta: message
                    .meta
                    .as_deref()
                    .and_then(|m| serde_json::from_str(m).ok()),
                enqueued_at: now,
                attempts: 0,
                next_attempt_at: now,
                status: Status::Pending,
                last_error: None,
                delivered_at: None,
                broker_message_id: None,
            },
            duplicate: false,
        });
    }
    let (found, found_digest) = conn
        .prepare_cached("SELECT *, digest FROM outbox WHERE client_message_id = ?1")?
        .query_row([&message.client_message_id], |r| {
            Ok((row(r)?, r.get::<_, String>("digest")?))
        })?;
    if found_digest != digest {
        return Err(EnqueueError::Conflict(message.client_message_id.clone()));
    }
    Ok(Enqueued {
        row: found,
        duplicate: true,
    })
}

fn claim(conn: &Connection, limit: usize) -> rusqlite::Result<Vec<Claimed>> {
    let mut stmt = conn.prepare_cached(
        "UPDATE outbox SET status = 'inflight'
         WHERE seq IN (SELECT seq FROM outbox WHERE status = 'pending' AND next_attempt_at <= ?1
                      ORDER BY next_attempt_at LIMIT ?2)
         RETURNING seq, client_message_id, kind, target, body, meta, enqueued_at, attempts",
    )?;
    let rows = stmt
        .query_map(
            params![now_ms(), i64::try_from(limit).unwrap_or(i64::MAX)],
            |r| {
                let kind: String = r.get("kind")?;
                let name: String = r.get("target")?;
                Ok(Claimed {
                    seq: r.get("seq")?,
                    message: NewMessage {
                        client_message_id: r.get("client_message_id")?,
                        target: if kind == "topic" {
                            Target::Topic(name)
                        } else {
                            Target::Node(name)
                        },
                        body: r.get("body")?,
                        meta: r.get("meta")?,
                    },
                    enqueued_at: r.get("enqueued_at")?,
                    attempts: r.get("attempts")?,
                })
            },
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

fn settle(
    conn: &Connection,
    outcomes: &[(i64, Outcome)],
    max_attempts: u32,
) -> rusqlite::Result<()> {
    let now = now_ms();
    for (id, outcome) in outcomes {
        match outcome {
            Outcome::Delivered(broker_id) => {
                conn.prepare_cached(
                    "UPDATE outbox SET status = 'done', delivered_at = ?2, broker_message_id = ?3,
                     last_error = NULL WHERE seq = ?1",
                )?
                .execute(params![id, now, broker_id])?;
            }
            Outcome::Retry { error, at, counts } => {
                conn.prepare_cached(
                    "UPDATE outbox SET
                        attempts = attempts + ?4,
                        status = CASE WHEN attempts + ?4 >= ?5 THEN 'dead' ELSE 'pending' END,
                        next_attempt_at = ?3, last_error = ?2
                     WHERE seq = ?1",
                )?
                .execute(params![
                    id,
                    error,
                    at,
                    i64::from(*counts),
                    max_attempts
                ])?;
            }
            Outcome::Dead(error) => {
                conn.prepare_cached(
                    "UPDATE outbox SET status = 'dead', attempts = attempts + 1, last_error = ?2
                     WHERE seq = ?1",
                )?
                .execute(params![id, error])?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: &str, body: &str) -> NewMessage {
        NewMessage {
            client_message_id: id.into(),
            target: Target::Node("b".into()),
            body: body.into(),
            meta: None,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_resend_is_a_no_op_and_other_content_is_a_conflict() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(&dir.path().join("outbox.db")).unwrap();
        let first = outbox.enqueue(message("m1", "1")).await.unwrap();
        assert!(!first.duplicate);
        let again = outbox.enqueue(message("m1", "1")).await.unwrap();
        assert!(again.duplicate);
        assert_eq!(again.row.id, first.row.id);
        let err = outbox.enqueue(message("m1", "2")).await.unwrap_err();
        assert!(matches!(err, DbError::Conflict(_)), "{err}");
        assert_eq!(outbox.counts().await.unwrap().pending, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_resends_of_one_id_store_one_row() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(&dir.path().join("outbox.db")).unwrap();
        let sends = (0..16).map(|_| {
            let outbox = outbox.clone();
            tokio::spawn(async move { outbox.enqueue(message("storm", "{\"id\":1}")).await })
        });
        let mut new = 0;
        for send in sends {
            let enqueued = send.await.unwrap().unwrap();
            new += usize::from(!enqueued.duplicate);
        }
        assert_eq!(new, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rows_move_through_their_states_and_inflight_returns_on_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.db");
        let outbox = Outbox::open(&path).unwrap();
        for i in 0..3 {
            outbox
                .enqueue(message(&format!("m{i}"), "1"))
                .await
                .unwrap();
        }
        let claimed = outbox.claim(10).await.unwrap();
        assert_eq!(claimed.len(), 3);
        assert!(outbox.claim(10).await.unwrap().is_empty());
        outbox
            .settle(
                vec![
                    (claimed[0].seq, Outcome::Delivered("B1".into())),
                    (
                        claimed[1].seq,
                        Outcome::Retry {
                            error: "refused".into(),
                            at: 0,
                            counts: true,
                        },
                    ),
                ],
                1,
            )
            .await
            .unwrap();
        let counts = outbox.counts().await.unwrap();
        assert_eq!((counts.done, counts.dead, counts.inflight), (1, 1, 1));
        // A restart: the inflight row is pending again.
        drop(outbox);
        let outbox = Outbox::open(&path).unwrap();
        assert_eq!(outbox.recover_inflight().await.unwrap(), 1);
        // The dead row can be requeued by its client id, and then dropped
        // only once dead again.
        let requeued = outbox.requeue("m1".into()).await.unwrap();
        assert_eq!(requeued.status, Status::Dead);
        assert!(outbox.drop_dead("m1".into()).await.is_err());
        assert_eq!(outbox.counts().await.unwrap().pending, 2);
    }
}
