//! The inbox (`inbox.db`): every message delivered to this node, once.
//!
//! Delivery is at least once (a broker resends until it hears back); the
//! inbox makes it effectively once: a row is keyed by `(sender_key,
//! client_message_id)` and inserted with `ON CONFLICT DO NOTHING
//! RETURNING`, so only a new row is announced to subscribers and queued
//! for plugin handlers — in the same transaction, so a crash between the
//! two cannot lose a handler run. The inbox is a cache of what the broker
//! delivered: a damaged file is moved aside and a fresh one started.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::db::{Db, DbError, integrity_check, json_column, now_ms};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS inbox (
    seq               INTEGER PRIMARY KEY AUTOINCREMENT,
    id                TEXT NOT NULL UNIQUE,
    client_message_id TEXT NOT NULL,
    sender_key        TEXT NOT NULL,
    sender_name       TEXT,
    broker_message_id TEXT,
    topic             TEXT,
    body              TEXT NOT NULL,
    meta              TEXT,
    sent_at           INTEGER,
    received_at       INTEGER NOT NULL,
    UNIQUE (sender_key, client_message_id)
);
CREATE INDEX IF NOT EXISTS inbox_received ON inbox (received_at);
CREATE INDEX IF NOT EXISTS inbox_topic ON inbox (topic, seq);
CREATE INDEX IF NOT EXISTS inbox_sender ON inbox (sender_key, seq);
CREATE TABLE IF NOT EXISTS handler_queue (
    seq             INTEGER NOT NULL,
    plugin          TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    PRIMARY KEY (seq, plugin)
);
";

/// Who sent a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Sender {
    /// Its node key, 64 hex digits.
    pub key: String,
    /// Its name as this node knows it (a `[peers]` name, or this node's
    /// own), when it knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A message as it arrives from the broker.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Delivery {
    /// The sender's stable id for it.
    pub client_message_id: String,
    /// The broker's id for it.
    pub broker_message_id: String,
    /// The sending node's key.
    pub sender_key: String,
    /// The topic it was posted to; `None` for a direct message.
    #[serde(default)]
    pub topic: Option<String>,
    /// The body, JSON.
    pub body: serde_json::Value,
    /// Metadata, JSON.
    #[serde(default)]
    pub meta: Option<serde_json::Value>,
    /// When the sender accepted it, ms since the epoch.
    #[serde(default)]
    pub sent_at: Option<i64>,
}

/// One inbox message, as clients and handlers see it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct InboxMessage {
    /// Position in this inbox; `since` pages by it.
    pub seq: i64,
    /// Local id (a ULID).
    pub id: String,
    /// The sender's stable id for it.
    pub client_message_id: String,
    /// The broker's id for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker_message_id: Option<String>,
    /// Who sent it.
    pub from: Sender,
    /// The topic it came on; absent for a direct message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// The body.
    pub body: serde_json::Value,
    /// Metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<serde_json::Value>,
    /// When the sender accepted it, ms since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<i64>,
    /// When it arrived here, ms since the epoch.
    pub received_at: i64,
}

/// What to list.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// Only messages after this `seq`.
    pub since: Option<i64>,
    /// Only this topic.
    pub topic: Option<String>,
    /// Only from this sender key.
    pub from: Option<String>,
    /// At most this many.
    pub limit: u32,
}

/// A handler run waiting to happen.
#[derive(Debug, Clone)]
pub struct HandlerRun {
    /// The plugin.
    pub plugin: String,
    /// Runs before this one.
    pub attempts: u32,
    /// The message.
    pub message: InboxMessage,
}

/// The inbox.
#[derive(Clone)]
pub struct Inbox {
    db: Db,
}

fn message(r: &rusqlite::Row<'_>) -> rusqlite::Result<InboxMessage> {
    let body: String = r.get("body")?;
    let meta: Option<String> = r.get("meta")?;
    Ok(InboxMessage {
        seq: r.get("seq")?,
        id: r.get("id")?,
        client_message_id: r.get("client_message_id")?,
        broker_message_id: r.get("broker_message_id")?,
        from: Sender {
            key: r.get("sender_key")?,
            name: r.get("sender_name")?,
        },
        topic: r.get("topic")?,
        body: json_column(body),
        meta: meta.and_then(|m| serde_json::from_str(&m).ok()),
        sent_at: r.get("sent_at")?,
        received_at: r.get("received_at")?,
    })
}

/// Where a damaged inbox was moved.
#[derive(Debug, Clone)]
pub struct MovedAside {
    /// The new name of the damaged file.
    pub to: PathBuf,
    /// What the integrity check said.
    pub report: String,
}

impl Inbox {
    /// Opens `path`; a damaged file is moved to `inbox.db.corrupt-<ms>` (with
    /// its WAL) and a fresh inbox started, which the caller logs.
    pub fn open(path: &Path) -> Result<(Inbox, Option<MovedAside>), DbError> {
        let mut moved = None;
        if path.exists()
            && let Err(DbError::Corrupt { report, .. }) = integrity_check(path)
        {
            let mut to = path.as_os_str().to_owned();
            to.push(format!(".corrupt-{}", now_ms()));
            let to = PathBuf::from(to);
            for suffix in ["", "-wal", "-shm"] {
                let mut from = path.as_os_str().to_owned();
                from.push(suffix);
                let mut dest = to.as_os_str().to_owned();
                dest.push(suffix);
                if Path::new(&from).exists() {
                    std::fs::rename(&from, &dest).map_err(|e| DbError::Sqlite {
                        path: path.display().to_string(),
                        message: format!("cannot move the damaged inbox aside: {e}"),
                    })?;
                }
            }
            moved = Some(MovedAside { to, report });
        }
        Ok((
            Inbox {
                db: Db::open(path, SCHEMA)?,
            },
            moved,
        ))
    }

    /// Stores `delivery` unless this inbox has it; a new row is queued for
    /// each of `handlers` in the same transaction. Returns the new message,
    /// or `None` for one already here.
    pub async fn insert(
        &self,
        delivery: Delivery,
        sender_name: Option<String>,
        handlers: Vec<String>,
    ) -> Result<Option<InboxMessage>, DbError> {
        let path = self.db.path().to_owned();
        self.db
            .write(move |conn| {
                insert(conn, &delivery, sender_name.as_deref(), &handlers)
                    .map_err(|e| Db::error(&path, &e))
            })
            .await
    }

    /// Stores a broker's batch in order, in one transaction; for each, the
    /// new message and whether handlers were queued, or `None` for one
    /// already here.
    pub async fn insert_batch(
        &self,
        batch: Vec<(Delivery, Option<String>, Vec<String>)>,
    ) -> Result<Vec<Option<(InboxMessage, bool)>>, DbError> {
        let path = self.db.path().to_owned();
        self.db
            .write(move |conn| {
                batch
                    .iter()
                    .map(|(delivery, sender_name, handlers)| {
                        insert(conn, delivery, sender_name.as_deref(), handlers)
                            .map(|m| m.map(|m| (m, !handlers.is_empty())))
                    })
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(|e| Db::error(&path, &e))
            })
            .await
    }

    /// Messages matching `query`, oldest first.
    pub async fn list(&self, query: Query) -> Result<Vec<InboxMessage>, DbError> {
        self.db
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT * FROM inbox WHERE seq > ?1
                       AND (?2 IS NULL OR topic = ?2)
                       AND (?3 IS NULL OR sender_key = ?3)
                     ORDER BY seq LIMIT ?4",
                )?;
                stmt.query_map(
                    params![
                        query.since.unwrap_or(0),
                        query.topic,
                        query.from,
                        query.limit
                    ],
                    message,
                )?
                .collect()
            })
            .await
    }

    /// One message by `seq`.
    pub async fn get(&self, seq: i64) -> Result<Option<InboxMessage>, DbError> {
        self.db
            .read(move |conn| {
                conn.query_row("SELECT * FROM inbox WHERE seq = ?1", [seq], message)
                    .optional()
            })
            .await
    }

    /// How many messages the inbox holds.
    pub async fn count(&self) -> Result<u64, DbError> {
        self.db
            .read(|conn| conn.query_row("SELECT count(*) FROM inbox", [], |r| r.get(0)))
            .await
    }

    /// Handler runs that are due, oldest first.
    pub async fn due_handlers(&self, limit: u32) -> Result<Vec<HandlerRun>, DbError> {
        self.db
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT h.plugin, h.attempts, i.* FROM handler_queue h
                     JOIN inbox i ON i.seq = h.seq
                     WHERE h.next_attempt_at <= ?1 ORDER BY h.seq LIMIT ?2",
                )?;
                stmt.query_map(params![now_ms(), limit], |r| {
                    Ok(HandlerRun {
                        plugin: r.get("plugin")?,
                        attempts: r.get("attempts")?,
                        message: message(r)?,
                    })
                })?
                .collect()
            })
            .await
    }

    /// A handler run finished (or was given up on): it is never run again.
    pub async fn handler_done(&self, seq: i64, plugin: String) -> Result<(), DbError> {
        let path = self.db.path().to_owned();
        self.db
            .write(move |conn| {
                conn.execute(
                    "DELETE FROM handler_queue WHERE seq = ?1 AND plugin = ?2",
                    params![seq, plugin],
                )
                .map(|_| ())
                .map_err(|e| Db::error(&path, &e))
            })
            .await
    }

    /// A handler run failed; it is tried again at `at`.
    pub async fn handler_retry(
        &self,
        seq: i64,
        plugin: String,
        error: String,
        at: i64,
    ) -> Result<(), DbError> {
        let path = self.db.path().to_owned();
        self.db
            .write(move |conn| {
                conn.execute(
                    "UPDATE handler_queue SET attempts = attempts + 1, last_error = ?3,
                     next_attempt_at = ?4 WHERE seq = ?1 AND plugin = ?2",
                    params![seq, plugin, error, at],
                )
                .map(|_| ())
                .map_err(|e| Db::error(&path, &e))
            })
            .await
    }
}

fn insert(
    conn: &Connection,
    delivery: &Delivery,
    sender_name: Option<&str>,
    handlers: &[String],
) -> rusqlite::Result<Option<InboxMessage>> {
    let now = now_ms();
    let body = delivery.body.to_string();
    let meta = delivery.meta.as_ref().map(ToString::to_string);
    let id = ulid::Ulid::new().to_string();
    let inserted: Option<i64> = conn
        .prepare_cached(
            "INSERT INTO inbox (id, client_message_id, sender_key, sender_name,
                                broker_message_id, topic, body, meta, sent_at, received_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
             ON CONFLICT (sender_key, client_message_id) DO NOTHING RETURNING seq",
        )?
        .query_row(
            params![
                id,
                delivery.client_message_id,
                delivery.sender_key,
                sender_name,
                delivery.broker_message_id,
                delivery.topic,
                body,
                meta,
                delivery.sent_at,
                now
            ],
            |r| r.get(0),
        )
        .optional()?;
    let Some(seq) = inserted else {
        return Ok(None);
    };
    for plugin in handlers {
        conn.prepare_cached(
            "INSERT INTO handler_queue (seq, plugin, next_attempt_at) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![seq, plugin, now])?;
    }
    Ok(Some(InboxMessage {
        seq,
        id,
        client_message_id: delivery.client_message_id.clone(),
        broker_message_id: Some(delivery.broker_message_id.clone()),
        from: Sender {
            key: delivery.sender_key.clone(),
            name: sender_name.map(str::to_owned),
        },
        topic: delivery.topic.clone(),
        body: delivery.body.clone(),
        meta: delivery.meta.clone(),
        sent_at: delivery.sent_at,
        received_at: now,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(id: &str, sender: &str) -> Delivery {
        Delivery {
            client_message_id: id.into(),
            broker_message_id: format!("B-{id}"),
            sender_key: sender.into(),
            topic: Some("news".into()),
            body: serde_json::json!({"n": 1}),
            meta: None,
            sent_at: Some(1),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_redelivery_is_stored_once_and_queues_its_handlers_once() {
        let dir = tempfile::tempdir().unwrap();
        let (inbox, moved) = Inbox::open(&dir.path().join("inbox.db")).unwrap();
        assert!(moved.is_none());
        let handlers = vec!["bot".to_owned()];
        let first = inbox
            .insert(delivery("m1", "aa"), None, handlers.clone())
            .await
            .unwrap();
        assert!(first.is_some());
        let again = inbox
            .insert(delivery("m1", "aa"), None, handlers.clone())
            .await
            .unwrap();
        assert!(again.is_none(), "a redelivery is not new");
        // The same id from another sender is another message.
        assert!(
            inbox
                .insert(delivery("m1", "bb"), None, vec![])
                .await
                .unwrap()
                .is_some()
        );
        assert_eq!(inbox.count().await.unwrap(), 2);
        let runs = inbox.due_handlers(10).await.unwrap();
        assert_eq!(runs.len(), 1);
        inbox
            .handler_done(runs[0].message.seq, "bot".into())
            .await
            .unwrap();
        assert!(inbox.due_handlers(10).await.unwrap().is_empty());
        let page = inbox
            .list(Query {
                from: Some("bb".into()),
                limit: 10,
                ..Query::default()
            })
            .await
            .unwrap();
        assert_eq!(page.len(), 1);
    }

    #[test]
    fn a_damaged_inbox_is_moved_aside_and_started_fresh() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inbox.db");
        std::fs::write(&path, vec![0x42; 8192]).unwrap();
        let (_inbox, moved) = Inbox::open(&path).unwrap();
        let moved = moved.expect("moved aside");
        assert!(moved.to.exists());
        assert!(
            moved
                .to
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("inbox.db.corrupt-")
        );
    }
}
