//! One messaging database file: opened in WAL mode with
//! `synchronous=FULL`, checked for integrity, written by one thread that
//! commits many writes per transaction (group commit), read by another
//! connection.
//!
//! A write is a closure run inside the writer's transaction, under its own
//! savepoint: when it fails, only its changes are rolled back and its
//! neighbours in the batch still commit. Its result reaches the caller only
//! after `COMMIT` returned, which with `synchronous=FULL` in WAL mode means
//! after the WAL was fsynced: an answered write is on disk.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::oneshot;

/// Most writes committed in one transaction.
const MAX_BATCH: usize = 1024;

/// Why a messaging database failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DbError {
    /// The disk is full: nothing of this write was stored.
    #[error("no space left on the device holding {path}: nothing was stored; free space and retry")]
    Full {
        /// The database file.
        path: String,
    },
    /// SQLite failed otherwise.
    #[error("{path}: {message}")]
    Sqlite {
        /// The database file.
        path: String,
        /// SQLite's message.
        message: String,
    },
    /// `PRAGMA integrity_check` found damage.
    #[error("{path} is damaged: {report}")]
    Corrupt {
        /// The database file.
        path: String,
        /// What the check reported (first lines).
        report: String,
    },
    /// The writer thread is gone (the node is stopping).
    #[error("{path}: the database writer has stopped")]
    Stopped {
        /// The database file.
        path: String,
    },
    /// The write's own rule refused it (a missing row, a wrong state);
    /// nothing of it was stored.
    #[error("{0}")]
    Refused(String),
    /// An id already stands for other content; nothing was stored.
    #[error("{0}")]
    Conflict(String),
}

impl DbError {
    fn from_sqlite(path: &Path, err: &rusqlite::Error) -> DbError {
        let full = matches!(
            err,
            rusqlite::Error::SqliteFailure(e, _) if e.code == rusqlite::ErrorCode::DiskFull
        );
        if full {
            DbError::Full {
                path: path.display().to_string(),
            }
        } else {
            DbError::Sqlite {
                path: path.display().to_string(),
                message: err.to_string(),
            }
        }
    }
}

/// Runs in the writer's transaction (or, given `None`, not at all);
/// returns whether it succeeded (its savepoint is kept) and what to do once
/// the batch is committed.
type Job = Box<dyn FnOnce(Option<&Connection>) -> (bool, Completion) + Send>;
/// Told the batch's commit result.
type Completion = Box<dyn FnOnce(Result<(), DbError>) + Send>;

/// A messaging database: a group-committing writer and a reader.
#[derive(Clone)]
pub struct Db {
    path: Arc<PathBuf>,
    jobs: std::sync::mpsc::Sender<Job>,
    reader: Arc<Mutex<Connection>>,
}

/// Opens `path` with the pragmas every messaging database uses.
fn connect(path: &Path) -> Result<Connection, DbError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| DbError::from_sqlite(path, &e))?;
    conn.busy_timeout(Duration::from_secs(5))
        .and_then(|()| {
            conn.execute_batch(
                // The savepoint each write runs under keeps a statement
                // journal; in memory it costs no file writes (the WAL is
                // what makes a commit durable).
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;
                 PRAGMA temp_store=MEMORY;",
            )
        })
        .map_err(|e| DbError::from_sqlite(path, &e))?;
    Ok(conn)
}

/// Runs `PRAGMA integrity_check` on `path`.
pub fn integrity_check(path: &Path) -> Result<(), DbError> {
    let corrupt = |report: String| DbError::Corrupt {
        path: path.display().to_string(),
        report,
    };
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| corrupt(e.to_string()))?;
    let mut stmt = conn
        .prepare("PRAGMA integrity_check")
        .map_err(|e| corrupt(e.to_string()))?;
    let lines: Vec<String> = stmt
        .query_map([], |row| row.get::<_, String>(0))
        .and_then(|rows| rows.collect())
        .map_err(|e| corrupt(e.to_string()))?;
    if lines.len() == 1 && lines[0] == "ok" {
        Ok(())
    } else {
        Err(corrupt(
            lines.into_iter().take(3).collect::<Vec<_>>().join("; "),
        ))
    }
}

impl Db {
    /// Opens (creating) `path`, creates `schema`, and starts its writer.
    pub fn open(path: &Path, schema: &str) -> Result<Db, DbError> {
        let writer = connect(path)?;
        writer
            .execute_batch(schema)
            .map_err(|e| DbError::from_sqlite(path, &e))?;
        set_private(path);
        let reader = connect(path)?;
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let thread_path = path.to_owned();
        let name = format!(
            "db-{}",
            path.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        );
        std::thread::Builder::new()
            .name(name)
            .spawn(move || write_loop(&thread_path, writer, &queue))
            .map_err(|e| DbError::Sqlite {
                path: path.display().to_string(),
                message: format!("cannot start the writer thread: {e}"),
            })?;
        Ok(Db {
            path: Arc::new(path.to_owned()),
            jobs,
            reader: Arc::new(Mutex::new(reader)),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `write` in the next group-committed transaction; returns its
    /// result once the transaction is durable. An `Err` from `write` rolls
    /// back only its own changes.
    pub async fn write<T, F>(&self, write: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, DbError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let path = self.path.clone();
        let stopped = DbError::Stopped {
            path: path.display().to_string(),
        };
        let job: Job = Box::new(move |conn| match conn {
            Some(conn) => {
                let result = write(conn);
                let ok = result.is_ok();
                let completion: Completion = Box::new(move |commit| {
                    let _ = tx.send(commit.and(result));
                });
                (ok, completion)
            }
            None => {
                let completion: Completion = Box::new(move |commit| {
                    let _ = tx.send(Err(commit.err().unwrap_or(stopped)));
                });
                (false, completion)
            }
        });
        self.jobs.send(job).map_err(|_| DbError::Stopped {
            path: path.display().to_string(),
        })?;
        rx.await.map_err(|_| DbError::Stopped {
            path: path.display().to_string(),
        })?
    }

    /// Runs `read` on the reader connection, off the async threads.
    pub async fn read<T, F>(&self, read: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    {
        let reader = self.reader.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let conn = reader.lock().unwrap_or_else(|p| p.into_inner());
            read(&conn).map_err(|e| DbError::from_sqlite(&path, &e))
        })
        .await
        .map_err(|_| DbError::Stopped {
            path: self.path.display().to_string(),
        })?
    }

    /// Maps a SQLite error inside a write to this database's error.
    pub fn error(path: &Path, err: &rusqlite::Error) -> DbError {
        DbError::from_sqlite(path, err)
    }
}

/// The database file and its WAL hold messages: owner only.
fn set_private(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        let _ = std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600));
    }
}

/// The writer thread: takes every job waiting, runs them in one
/// transaction, each under its own savepoint, commits, answers them all.
fn write_loop(path: &Path, conn: Connection, queue: &std::sync::mpsc::Receiver<Job>) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if let Err(err) = run(&conn, "BEGIN IMMEDIATE") {
            let err = DbError::from_sqlite(path, &err);
            for job in batch {
                // Never run: answered with the error, nothing touched.
                let (_, completion) = job(None);
                completion(Err(err.clone()));
            }
            continue;
        }
        let mut completions = Vec::with_capacity(batch.len());
        for job in batch {
            if let Err(err) = run(&conn, "SAVEPOINT job") {
                let err = DbError::from_sqlite(path, &err);
                let (_, completion) = job(None);
                completions.push((completion, Some(err)));
                continue;
            }
            let (ok, completion) = job(Some(&conn));
            let undo = if ok {
                run(&conn, "RELEASE job")
            } else {
                run(&conn, "ROLLBACK TO job").and_then(|()| run(&conn, "RELEASE job"))
            };
            completions.push((
                completion,
                undo.err().map(|e| DbError::from_sqlite(path, &e)),
            ));
        }
        let commit = run(&conn, "COMMIT").map_err(|e| DbError::from_sqlite(path, &e));
        if commit.is_err() {
            let _ = run(&conn, "ROLLBACK");
        }
        for (completion, own_error) in completions {
            match (&commit, own_error) {
                (Err(err), _) => completion(Err(err.clone())),
                (Ok(()), Some(err)) => completion(Err(err)),
                (Ok(()), None) => completion(Ok(())),
            }
        }
    }
}

/// Runs one transaction-control statement, prepared once per connection.
fn run(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// A stored JSON column as a value (text that is not JSON comes back as a
/// string, so a damaged row still reads).
pub fn json_column(text: String) -> serde_json::Value {
    serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v INTEGER NOT NULL);";

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_write_does_not_fail_its_batch_neighbours() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.db"), SCHEMA).unwrap();
        let mut writes = Vec::new();
        for i in 0..200 {
            let db = db.clone();
            writes.push(tokio::spawn(async move {
                db.write(move |conn| {
                    conn.execute("INSERT INTO t (k, v) VALUES (?1, ?2)", (i.to_string(), i))
                        .map_err(|e| DbError::Refused(e.to_string()))?;
                    if i % 10 == 0 {
                        // Changed something, then failed: rolled back.
                        return Err(DbError::Refused(format!("{i} refused")));
                    }
                    Ok(i)
                })
                .await
            }));
        }
        let mut ok = 0;
        for write in writes {
            match write.await.unwrap() {
                Ok(_) => ok += 1,
                Err(DbError::Refused(_)) => {}
                Err(other) => panic!("{other}"),
            }
        }
        assert_eq!(ok, 180);
        let rows: i64 = db
            .read(|c| c.query_row("SELECT count(*) FROM t", [], |r| r.get(0)))
            .await
            .unwrap();
        assert_eq!(rows, 180, "the refused writes left nothing behind");
        // Reopening finds the same rows: they were committed.
        drop(db);
        integrity_check(&dir.path().join("t.db")).unwrap();
    }

    #[test]
    fn a_damaged_file_fails_the_integrity_check() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(SCHEMA).unwrap();
            for i in 0..2000 {
                conn.execute("INSERT INTO t VALUES (?1, ?2)", (format!("key-{i:05}"), i))
                    .unwrap();
            }
        }
        let mut bytes = std::fs::read(&path).unwrap();
        // Scribble over a b-tree page in the middle of the file.
        let page = 4096 * 3;
        for b in &mut bytes[page..page + 200] {
            *b = 0x5a;
        }
        std::fs::write(&path, bytes).unwrap();
        assert!(matches!(
            integrity_check(&path),
            Err(DbError::Corrupt { .. })
        ));
    }
}
