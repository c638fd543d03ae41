//! Messaging storage: the outbox, the inbox and the broker's store, each a
//! SQLite file in the data directory written with group commit.
//!
//! This layer stores and answers; it sends nothing. The workers that move
//! messages between nodes and the `/node/msg/*` and `/node/broker/*`
//! operations live in `ops::messaging`, above it, and reach other nodes
//! through the call pipeline like every other caller.

pub mod broker;
pub mod db;
pub mod inbox;
pub mod outbox;

use std::path::{Path, PathBuf};

pub use broker::BrokerStore;
pub use db::DbError;
pub use inbox::Inbox;
pub use outbox::Outbox;

/// Where a message goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A node, by the sender's name for it or its key.
    Node(String),
    /// Every subscriber of a topic.
    Topic(String),
}

impl Target {
    /// `direct` or `topic`.
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Node(_) => "direct",
            Target::Topic(_) => "topic",
        }
    }

    /// The node or topic name.
    pub fn name(&self) -> &str {
        match self {
            Target::Node(name) | Target::Topic(name) => name,
        }
    }
}

/// The node's messaging files.
pub struct Stores {
    /// `outbox.db`.
    pub outbox: Outbox,
    /// `inbox.db`.
    pub inbox: Inbox,
    /// `broker.db`, on a node that is a broker.
    pub broker: Option<BrokerStore>,
}

/// Why messaging could not start.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The outbox or broker store is damaged: it holds acknowledged
    /// messages, so the node does not start over it.
    #[error(
        "{0}; the node will not start over a damaged {1}: stop it and run `host msg recover --data-dir {2}`, which keeps every readable row and moves the damaged file aside"
    )]
    Damaged(DbError, &'static str, String),
    /// Another database error.
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Opens the messaging files under `data_dir`. A damaged inbox is moved
/// aside and started fresh (logged here); a damaged outbox or broker store
/// refuses to start.
pub fn open(data_dir: &Path, broker: bool) -> Result<Stores, OpenError> {
    let damaged = |err: DbError, what: &'static str| match err {
        DbError::Corrupt { .. } => OpenError::Damaged(err, what, data_dir.display().to_string()),
        other => OpenError::Db(other),
    };
    let outbox = Outbox::open(&data_dir.join("outbox.db")).map_err(|e| damaged(e, "outbox"))?;
    let (inbox, moved) = Inbox::open(&data_dir.join("inbox.db"))?;
    if let Some(moved) = moved {
        tracing::error!(
            moved_to = %moved.to.display(),
            report = %moved.report,
            "inbox_corruption_recovered: the inbox was damaged; it was moved aside and a fresh one started (messages the broker still holds are delivered again)"
        );
    }
    let broker = if broker {
        Some(
            BrokerStore::open(&data_dir.join("broker.db"))
                .map_err(|e| damaged(e, "broker store"))?,
        )
    } else {
        None
    };
    Ok(Stores {
        outbox,
        inbox,
        broker,
    })
}

/// What `host msg recover` did to one file.
#[derive(Debug, Clone)]
pub struct Recovered {
    /// The file.
    pub file: PathBuf,
    /// Rows copied into the fresh file, by table.
    pub rows: Vec<(String, usize)>,
    /// Where the damaged file went.
    pub moved_to: PathBuf,
}

/// Rebuilds a damaged `outbox.db` or `broker.db` under `data_dir` (the
/// node must be stopped): every row that can still be read is copied into
/// a fresh file, and the damaged one is moved to `<name>.corrupt-<ms>`.
/// Files that pass the integrity check are left alone.
pub fn recover(data_dir: &Path) -> Result<Vec<Recovered>, DbError> {
    let mut done = Vec::new();
    for name in ["outbox.db", "broker.db"] {
        let path = data_dir.join(name);
        if !path.exists() || db::integrity_check(&path).is_ok() {
            continue;
        }
        done.push(recover_file(&path)?);
    }
    Ok(done)
}

fn recover_file(path: &Path) -> Result<Recovered, DbError> {
    let sqlite = |e: rusqlite::Error| db::Db::error(path, &e);
    let mut moved = path.as_os_str().to_owned();
    moved.push(format!(".corrupt-{}", db::now_ms()));
    let moved_to = PathBuf::from(moved);
    for suffix in ["", "-wal", "-shm"] {
        let mut from = path.as_os_str().to_owned();
        from.push(suffix);
        let mut to = moved_to.as_os_str().to_owned();
        to.push(suffix);
        if Path::new(&from).exists() {
            std::fs::rename(&from, &to).map_err(|e| DbError::Sqlite {
                path: path.display().to_string(),
                message: format!("cannot move it aside: {e}"),
            })?;
        }
    }
    let schema = if path.ends_with("outbox.db") {
        outbox::SCHEMA
    } else {
        broker::SCHEMA
    };
    let fresh = rusqlite::Connection::open(path).map_err(sqlite)?;
    fresh
        .execute_batch(schema)
        .and_then(|()| fresh.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"))
        .map_err(sqlite)?;
    fresh
        .execute(
            "ATTACH DATABASE ?1 AS damaged",
            [moved_to.display().to_string()],
        )
        .map_err(sqlite)?;
    let tables: Vec<String> = fresh
        .prepare(
            "SELECT name FROM main.sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
        )
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(sqlite)?;
    let mut rows = Vec::new();
    for table in tables {
        // Row by row by rowid, so one unreadable page loses only its rows.
        let max: i64 = fresh
            .query_row(
                &format!("SELECT max(rowid) FROM damaged.\"{table}\""),
                [],
                |r| r.get::<_, Option<i64>>(0),
            )
            .ok()
            .flatten()
            .unwrap_or(0);
        let mut copied = 0;
        for rowid in 1..=max {
            let sql = format!(
                "INSERT OR IGNORE INTO main.\"{table}\" SELECT * FROM damaged.\"{table}\" WHERE rowid = ?1"
            );
            if let Ok(n) = fresh.execute(&sql, [rowid]) {
                copied += n;
            }
        }
        rows.push((table, copied));
    }
    let _ = fresh.execute("DETACH DATABASE damaged", []);
    Ok(Recovered {
        file: path.to_owned(),
        rows,
        moved_to,
    })
}
