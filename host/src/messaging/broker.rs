//! The broker's store (`broker.db`): messages accepted from members, who
//! each goes to, and who subscribes to which topic.
//!
//! A message is keyed by `(sender_key, client_message_id)`. Accepting one
//! stores it and one delivery row per recipient (the addressed node, or
//! every subscriber of the topic but the sender) in one transaction, durable
//! before the member hears back. A resend of a stored pair answers with the
//! stored broker id and fans out nothing; the same pair with other content
//! is a conflict. Pairs are remembered for the dedupe window the broker
//! advertises, and longer while a delivery is still pending.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::db::{Db, DbError, integrity_check, json_column, now_ms};
use super::inbox::Delivery;

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS messages (
    broker_message_id TEXT PRIMARY KEY,
    sender_key        TEXT NOT NULL,
    client_message_id TEXT NOT NULL,
    digest            TEXT NOT NULL,
    recipient_key     TEXT,
    topic             TEXT,
    body              TEXT NOT NULL,
    meta              TEXT,
    sent_at           INTEGER,
    accepted_at       INTEGER NOT NULL,
    UNIQUE (sender_key, client_message_id)
);
CREATE INDEX IF NOT EXISTS messages_accepted ON messages (accepted_at);
CREATE TABLE IF NOT EXISTS deliveries (
    recipient_key     TEXT NOT NULL,
    broker_message_id TEXT NOT NULL REFERENCES messages (broker_message_id) ON DELETE CASCADE,
    attempts          INTEGER NOT NULL DEFAULT 0,
    next_attempt_at   INTEGER NOT NULL,
    last_error        TEXT,
    PRIMARY KEY (recipient_key, broker_message_id)
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (next_attempt_at);
CREATE TABLE IF NOT EXISTS subscriptions (
    node_key TEXT NOT NULL,
    topic    TEXT NOT NULL,
    PRIMARY KEY (node_key, topic)
);
CREATE INDEX IF NOT EXISTS subscriptions_topic ON subscriptions (topic);
CREATE TABLE IF NOT EXISTS counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
";

/// A message a member hands the broker.
#[derive(Debug, Clone)]
pub struct Publish {
    /// The member's stable id for it.
    pub client_message_id: String,
    /// The recipient node's key, for a direct message.
    pub recipient_key: Option<String>,
    /// The topic, for a post.
    pub topic: Option<String>,
    /// The body, JSON text.
    pub body: String,
    /// Metadata, JSON text.
    pub meta: Option<String>,
    /// When the member accepted it.
    pub sent_at: Option<i64>,
    /// What identifies its content (computed by the member's outbox rule).
    pub digest: String,
}

/// What the broker did with a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", tag = "result")]
pub enum Accepted {
    /// Stored, with this many deliveries queued.
    New {
        /// The broker's id.
        broker_message_id: String,
        /// Deliveries queued.
        recipients: u32,
    },
    /// Already stored: nothing fanned out.
    Duplicate {
        /// The id it was stored under.
        broker_message_id: String,
    },
}

/// One recipient's due deliveries.
#[derive(Debug, Clone)]
pub struct DueDeliveries {
    /// The recipient's key.
    pub recipient_key: String,
    /// Attempts of the most-tried one.
    pub attempts: u32,
    /// The messages, oldest first.
    pub messages: Vec<Delivery>,
}

/// What the broker has done since its store was created.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct BrokerStats {
    /// Messages stored.
    pub accepted: u64,
    /// Resends answered with a stored id.
    pub duplicates: u64,
    /// Resends with other content, refused.
    pub conflicts: u64,
    /// Deliveries acknowledged by recipients.
    pub delivered: u64,
    /// Deliveries waiting (recipients offline or failing).
    pub pending_deliveries: u64,
    /// Messages kept (within the window or still being delivered).
    pub stored: u64,
    /// Topic subscriptions.
    pub subscriptions: u64,
}

/// The broker's store.
#[derive(Clone)]
pub struct BrokerStore {
    db: Db,
}

fn bump(conn: &Connection, name: &str, by: i64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO counters (name, value) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET value = value + ?2",
    )?
    .execute(params![name, by])?;
    Ok(())
}

impl BrokerStore {
    /// Opens `path`; like the outbox it holds acknowledged messages, so a
    /// damaged file refuses to open.
    pub fn open(path: &Path) -> Result<BrokerStore, DbError> {
        if path.exists() {
            integrity_check(path)?;
        }
        Ok(BrokerStore {
            db: Db::open(path, SCHEMA)?,
        })
    }

    /// Accepts `message` from `sender_key` (deduped on its id).
    pub async fn accept(&self, sender_key: String, message: Publish) -> Result<Accepted, DbError> {
        let path = self.db.path().to_owned();
        self.db
            .write(move |conn| accept(conn, &sender_key, &message, &path))
            .await
    }

    /// Replaces the topics `node_key` subscribes to.
    pub async fn set_subscriptions(
        &self,
        node_key: String,
        topics: Vec<String>,
    ) -> Result<(), DbError> {
        let path = self.db.path().to_owned();
        self.db
            .write(move |conn| {
                let run = || -> rusqlite::Result<()> {
                    conn.execute("DELETE FROM subscriptions WHERE node_key = ?1", [&node_key])?;
                    for topic in &topics {
                        conn.execute(
                            "INSERT OR IGNORE INTO subscriptions (node_key, topic) VALUES (?1, ?2)",
                            params![node_key, topic],
                        )?;
                    }
                    Ok(())
                };
                run().map_err(|e| Db::error(&path, &e))
            })
            .await
    }

    /// Due deliveries, grouped by recipient, at most `limit` messages each,
    /// oldest first (broker ids are ULIDs, so id order is arrival order).
    pub async fn due(&self, limit: u32) -> Result<Vec<DueDeliveries>, DbError> {
        self.db
            .read(move |conn| {
                let now = now_ms();
                let recipients: Vec<String> = conn
                    .prepare_cached(
                        "SELECT DISTINCT recipient_key FROM deliveries WHERE next_attempt_at <= ?1",
                    )?
                    .query_map([now], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?;
                let mut stmt = conn.prepare_cached(
                    "SELECT d.attempts, m.* FROM deliveries d
                     JOIN messages m ON m.broker_message_id = d.broker_message_id
                     WHERE d.recipient_key = ?1 AND d.next_attempt_at <= ?2
                     ORDER BY d.broker_message_id LIMIT ?3",
                )?;
                let mut queues = Vec::with_capacity(recipients.len());
                for recipient in recipients {
                    let mut attempts = 0;
                    let messages = stmt
                        .query_map(params![recipient, now, limit], |r| {
                            attempts = attempts.max(r.get::<_, u32>("attempts")?);
                            let body: String = r.get("body")?;
                            let meta: Option<String> = r.get("meta")?;
                            Ok(Delivery {
                                client_message_id: r.get("client_message_id")?,
                                broker_message_id: r.get("broker_message_id")?,
                                sender_key: r.get("sender_key")?,
                                topic: r.get("topic")?,
                                body: json_column(body),
                                meta: meta.and_then(|m| serde_json::from_str(&m).ok()),
                                sent_at: r.get("sent_at")?,
                            })
                        })?
                        .collect::<rusqlite::Result<Vec<_>>>()?;
                    if !messages.is_empty() {
                        queues.push(DueDeliveries {
                            recipient_key: recipient,
                            attempts,
                            messages,
                        });
                    }
                }
                Ok(queues)
            })
            .await
    }

    /// `recipient_key` acknowledged these messages.
    pub async fn delivered(
        &self,
        recipient_key: String,
        broker_ids: Vec<String>,
    ) -> Result<(), DbError> {
        let path = self.db.path().to_owned();
        self.db
            .write(move |conn| {
                let run = || -> rusqlite::Result<()> {
                    let mut n = 0;
                    for id in &broker_ids {
                        n += conn
                            .prepare_cached(
                                "DELETE FROM deliveries WHERE recipient_key = ?1 AND broker_message_id = ?2",
                            )?
                            .execute(params![recipient_key, id])?;
                    }
                    bump(conn, "delivered", i64::try_from(n).unwrap_or(0))
                };
                run().map_err(|e| Db::error(&path, &e))
            })
            .await
    }

    /// Delivering to `recipient_key` failed; try again at `at`.
    pub async fn retry(
        &self,
        recipient_key: String,
        broker_ids: Vec<String>,
        error: String,
        at: i64,
    ) -> Result<(), DbError> {
        let path = self.db.path().to_owned();
        self.db
            .write(move |conn| {
                let run = || -> rusqlite::Result<()> {
                    for id in &broker_ids {
                        conn.prepare_cached(
                            "UPDATE deliveries SET attempts = attempts + 1, last_error = ?3,
                             next_attempt_at = ?4 WHERE recipient_key = ?1 AND broker_message_id = ?2",
                        )?
                        .execute(params![recipient_key, id, error, at])?;
                    }
                    Ok(())
                };
                run().map_err(|e| Db::error(&path, &e))
            })
            .await
    }

    /// Makes every delivery to `recipient_key` due now (it just connected).
    pub async fn wake(&self, recipient_key: String) -> Result<usize, DbError> {
        let path = self.db.path().to_owned();
        self.db
            .write(move |conn| {
                conn.execute(
                    "UPDATE deliveries SET next_attempt_at = ?2
                     WHERE recipient_key = ?1 AND next_attempt_at > ?2",
                    params![recipient_key, now_ms()],
                )
                .map_err(|e| Db::error(&path, &e))
            })
            .await
    }

    /// Forgets messages accepted before `cutoff` whose deliveries are done.
    pub async fn prune(&self, cutoff: i64) -> Result<usize, DbError> {
        let path = self.db.path().to_owned();
        self.db
            .write(move |conn| {
                conn.execute(
                    "DELETE FROM messages WHERE accepted_at < ?1 AND NOT EXISTS
                     (SELECT 1 FROM deliveries d WHERE d.broker_message_id = messages.broker_message_id)",
                    [cutoff],
                )
                .map_err(|e| Db::error(&path, &e))
            })
            .await
    }

    /// The earliest time a delivery is due.
    pub async fn next_due(&self) -> Result<Option<i64>, DbError> {
        self.db
            .read(|conn| {
                conn.query_row("SELECT min(next_attempt_at) FROM deliveries", [], |r| {
                    r.get(0)
                })
            })
            .await
    }

    /// Counters and sizes.
    pub async fn stats(&self) -> Result<BrokerStats, DbError> {
        self.db
            .read(|conn| {
                let counter = |name: &str| -> rusqlite::Result<u64> {
                    conn.query_row("SELECT value FROM counters WHERE name = ?1", [name], |r| {
                        r.get(0)
                    })
                    .optional()
                    .map(Option::unwrap_or_default)
                };
                let count =
                    |sql: &str| -> rusqlite::Result<u64> { conn.query_row(sql, [], |r| r.get(0)) };
                Ok(BrokerStats {
                    accepted: counter("accepted")?,
                    duplicates: counter("duplicates")?,
                    conflicts: counter("conflicts")?,
                    delivered: counter("delivered")?,
                    pending_deliveries: count("SELECT count(*) FROM deliveries")?,
                    stored: count("SELECT count(*) FROM messages")?,
                    subscriptions: count("SELECT count(*) FROM subscriptions")?,
                })
            })
            .await
    }
}

fn accept(
    conn: &Connection,
    sender_key: &str,
    message: &Publish,
    path: &Path,
) -> Result<Accepted, DbError> {
    let err = |e: rusqlite::Error| Db::error(path, &e);
    let now = now_ms();
    let broker_id = ulid::Ulid::new().to_string();
    let inserted = conn
        .prepare_cached(
            "INSERT INTO messages (broker_message_id, sender_key, client_message_id, digest,
                                   recipient_key, topic, body, meta, sent_at, accepted_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
             ON CONFLICT (sender_key, client_message_id) DO NOTHING RETURNING broker_message_id",
        )
        .and_then(|mut stmt| {
            stmt.query_row(
                params![
                    broker_id,
                    sender_key,
                    message.client_message_id,
                    message.digest,
                    message.recipient_key,
                    message.topic,
                    message.body,
                    message.meta,
                    message.sent_at,
                    now
                ],
                |r| r.get::<_, String>(0),
            )
            .optional()
        })
        .map_err(err)?;
    if inserted.is_none() {
        let (stored_id, digest): (String, String) = conn
            .query_row(
                "SELECT broker_message_id, digest FROM messages
                 WHERE sender_key = ?1 AND client_message_id = ?2",
                params![sender_key, message.client_message_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(err)?;
        if digest != message.digest {
            // Counted even though the write is refused: a separate write.
            return Err(DbError::Conflict(format!(
                "client_message_id `{}` from this sender is stored for a different message (broker id {stored_id}); resending it with new content is refused",
                message.client_message_id
            )));
        }
        bump(conn, "duplicates", 1).map_err(err)?;
        return Ok(Accepted::Duplicate {
            broker_message_id: stored_id,
        });
    }
    let recipients: Vec<String> = match (&message.recipient_key, &message.topic) {
        (Some(key), _) => vec![key.clone()],
        (None, Some(topic)) => {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT node_key FROM subscriptions WHERE topic = ?1 AND node_key != ?2",
                )
                .map_err(err)?;
            stmt.query_map(params![topic, sender_key], |r| r.get(0))
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<String>>>())
                .map_err(err)?
        }
        (None, None) => Vec::new(),
    };
    for recipient in &recipients {
        conn.prepare_cached(
            "INSERT INTO deliveries (recipient_key, broker_message_id, next_attempt_at)
             VALUES (?1, ?2, ?3)",
        )
        .and_then(|mut stmt| stmt.execute(params![recipient, broker_id, now]))
        .map_err(err)?;
    }
    bump(conn, "accepted", 1).map_err(err)?;
    Ok(Accepted::New {
        broker_message_id: broker_id,
        recipients: u32::try_from(recipients.len()).unwrap_or(u32::MAX),
    })
}

impl BrokerStore {
    /// Counts a refused conflicting resend.
    pub async fn count_conflict(&self) -> Result<(), DbError> {
        let path = self.db.path().to_owned();
        self.db
            .write(move |conn| bump(conn, "conflicts", 1).map_err(|e| Db::error(&path, &e)))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(id: &str, body: &str) -> Publish {
        Publish {
            client_message_id: id.into(),
            recipient_key: None,
            topic: Some("news".into()),
            body: body.into(),
            meta: None,
            sent_at: None,
            digest: format!("d-{body}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_resend_fans_out_nothing_and_other_content_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = BrokerStore::open(&dir.path().join("broker.db")).unwrap();
        for node in ["a", "b", "c"] {
            store
                .set_subscriptions(node.into(), vec!["news".into()])
                .await
                .unwrap();
        }
        let first = store.accept("a".into(), post("m1", "1")).await.unwrap();
        let Accepted::New {
            broker_message_id,
            recipients,
        } = first
        else {
            panic!("{first:?}")
        };
        assert_eq!(recipients, 2, "every subscriber but the sender");
        let again = store.accept("a".into(), post("m1", "1")).await.unwrap();
        assert_eq!(
            again,
            Accepted::Duplicate {
                broker_message_id: broker_message_id.clone()
            }
        );
        let conflict = store.accept("a".into(), post("m1", "2")).await.unwrap_err();
        assert!(matches!(conflict, DbError::Conflict(_)));
        // Another sender's m1 is another message.
        assert!(matches!(
            store.accept("b".into(), post("m1", "1")).await.unwrap(),
            Accepted::New { .. }
        ));
        let due = store.due(100).await.unwrap();
        let total: usize = due.iter().map(|d| d.messages.len()).sum();
        assert_eq!(total, 4);
        store
            .delivered("b".into(), vec![broker_message_id])
            .await
            .unwrap();
        let stats = store.stats().await.unwrap();
        assert_eq!(
            (stats.accepted, stats.duplicates, stats.delivered),
            (2, 1, 1)
        );
        assert_eq!(stats.pending_deliveries, 3);
    }
}
