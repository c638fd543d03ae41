//! The SQLite-backed store behind the `kv` interface.
//!
//! One table keyed by `(plugin, key)`: a plugin reaches only its own rows
//! because the host, not the plugin, supplies the plugin name. Writes are
//! committed before the call returns, with `synchronous = FULL` so an
//! acknowledged write survives power loss. The database file is private
//! to the node's user (0600), like the vault; SQLite gives its journal
//! files the same mode.

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::{Arc, Mutex};

use hearth_registry::{CallError, ErrorCode};
use rusqlite::{Connection, OptionalExtension, params};

/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 512;
/// Largest value, in bytes.
pub const MAX_VALUE_BYTES: usize = 1 << 20;
/// Most keys one `list-keys` returns.
pub const MAX_LIST: u32 = 1000;

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot open the node database {path}: {source}")]
pub struct KvOpenError {
    path: String,
    source: rusqlite::Error,
}

/// A handle to the key-value store; cheap to clone.
#[derive(Clone)]
pub struct KvStore {
    conn: Arc<Mutex<Connection>>,
}

impl KvStore {
    /// Opens (creating) the store in the database at `path`.
    pub fn open(path: &Path) -> Result<Self, KvOpenError> {
        let err = |source| KvOpenError {
            path: path.display().to_string(),
            source,
        };
        let io_err = |e: std::io::Error| {
            err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                Some(e.to_string()),
            ))
        };
        // Create it 0600 before SQLite does (SQLite would use the umask),
        // and tighten a file an older version created 0644.
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(io_err)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io_err)?;
        let conn = Connection::open(path).map_err(err)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA busy_timeout = 5000;
             CREATE TABLE IF NOT EXISTS kv (
                 plugin TEXT NOT NULL,
                 key    TEXT NOT NULL,
                 value  BLOB NOT NULL,
                 PRIMARY KEY (plugin, key)
             ) WITHOUT ROWID;",
        )
        .map_err(err)?;
        Ok(KvStore {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` on the connection off the async threads.
    async fn with_conn<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, CallError> {
        let conn = self.conn.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let guard = conn.lock().map_err(|_| rusqlite::Error::InvalidQuery)?;
            f(&guard)
        })
        .await;
        match joined {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(CallError::new(
                ErrorCode::Failed,
                format!("kv store: {err}"),
            )),
            Err(err) => Err(CallError::new(
                ErrorCode::Failed,
                format!("kv store: {err}"),
            )),
        }
    }

    /// The value of `key` for `plugin`.
    pub async fn get(&self, plugin: &str, key: String) -> Result<Option<Vec<u8>>, CallError> {
        check_key(&key)?;
        let plugin = plugin.to_owned();
        self.with_conn(move |c| {
            c.query_row(
                "SELECT value FROM kv WHERE plugin = ?1 AND key = ?2",
                params![plugin, key],
                |row| row.get(0),
            )
            .optional()
        })
        .await
    }

    /// Stores `value` under `key` for `plugin`.
    pub async fn set(&self, plugin: &str, key: String, value: Vec<u8>) -> Result<(), CallError> {
        check_key(&key)?;
        if value.len() > MAX_VALUE_BYTES {
            return Err(CallError::new(
                ErrorCode::InvalidInput,
                format!(
                    "kv value of {} bytes exceeds the {MAX_VALUE_BYTES}-byte limit",
                    value.len()
                ),
            ));
        }
        let plugin = plugin.to_owned();
        self.with_conn(move |c| {
            c.execute(
                "INSERT INTO kv (plugin, key, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT (plugin, key) DO UPDATE SET value = excluded.value",
                params![plugin, key, value],
            )
            .map(|_| ())
        })
        .await
    }

    /// Deletes `key` for `plugin`; true when it existed.
    pub async fn delete(&self, plugin: &str, key: String) -> Result<bool, CallError> {
        check_key(&key)?;
        let plugin = plugin.to_owned();
        self.with_conn(move |c| {
            c.execute(
                "DELETE FROM kv WHERE plugin = ?1 AND key = ?2",
                params![plugin, key],
            )
            .map(|n| n > 0)
        })
        .await
    }

    /// Applies one call's writes (`None` deletes) in one transaction.
    pub async fn apply(
        &self,
        plugin: &str,
        writes: Vec<(String, Option<Vec<u8>>)>,
    ) -> Result<(), CallError> {
        let plugin = plugin.to_owned();
        self.with_conn(move |c| {
            let tx = c.unchecked_transaction()?;
            for (key, value) in &writes {
                match value {
                    Some(value) => tx.execute(
                        "INSERT INTO kv (plugin, key, value) VALUES (?1, ?2, ?3)
                         ON CONFLICT (plugin, key) DO UPDATE SET value = excluded.value",
                        params![plugin, key, value],
                    )?,
                    None => tx.execute(
                        "DELETE FROM kv WHERE plugin = ?1 AND key = ?2",
                        params![plugin, key],
                    )?,
                };
            }
            tx.commit()
        })
        .await
    }

    /// Keys of `plugin` starting with `prefix`, in order, at most `limit`
    /// (which may exceed [`MAX_LIST`]: the caller trims).
    pub(super) async fn list_unbounded(
        &self,
        plugin: &str,
        prefix: String,
        limit: u32,
    ) -> Result<Vec<String>, CallError> {
        let plugin = plugin.to_owned();
        self.with_conn(move |c| {
            // `substr` rather than LIKE so `%` and `_` in a prefix are literal.
            let mut stmt = c.prepare_cached(
                "SELECT key FROM kv WHERE plugin = ?1 AND substr(key, 1, length(?2)) = ?2
                 ORDER BY key LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![plugin, prefix, limit], |row| row.get(0))?;
            rows.collect()
        })
        .await
    }

    /// Keys of `plugin` starting with `prefix`, in order, at most `limit`.
    pub async fn list(
        &self,
        plugin: &str,
        prefix: String,
        limit: u32,
    ) -> Result<Vec<String>, CallError> {
        self.list_unbounded(plugin, prefix, limit.min(MAX_LIST))
            .await
    }
}

/// Checks a write before it is staged: the key, and the value's size.
pub(super) fn check_write(key: &str, value: &[u8]) -> Result<(), CallError> {
    check_key(key)?;
    if value.len() > MAX_VALUE_BYTES {
        return Err(CallError::new(
            ErrorCode::InvalidInput,
            format!(
                "kv value of {} bytes exceeds the {MAX_VALUE_BYTES}-byte limit",
                value.len()
            ),
        ));
    }
    Ok(())
}

pub(super) fn check_key(key: &str) -> Result<(), CallError> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(CallError::new(
            ErrorCode::InvalidInput,
            format!(
                "kv keys must be 1 to {MAX_KEY_BYTES} bytes; got {}",
                key.len()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_database_is_private_to_the_node_user() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.db");
        std::fs::write(&path, b"").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        KvStore::open(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let fresh = dir.path().join("fresh.db");
        KvStore::open(&fresh).unwrap();
        let mode = std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    use super::*;

    #[tokio::test]
    async fn plugins_see_only_their_own_keys() {
        let dir = tempfile::tempdir().unwrap();
        let kv = KvStore::open(&dir.path().join("node.db")).unwrap();
        kv.set("a", "k".into(), b"1".to_vec()).await.unwrap();
        kv.set("b", "k".into(), b"2".to_vec()).await.unwrap();
        kv.set("a", "k".into(), b"3".to_vec()).await.unwrap();
        assert_eq!(kv.get("a", "k".into()).await.unwrap(), Some(b"3".to_vec()));
        assert_eq!(kv.get("b", "k".into()).await.unwrap(), Some(b"2".to_vec()));
        assert!(kv.delete("a", "k".into()).await.unwrap());
        assert!(!kv.delete("a", "k".into()).await.unwrap());
        assert_eq!(kv.get("a", "k".into()).await.unwrap(), None);
    }

    #[tokio::test]
    async fn lists_by_literal_prefix_and_refuses_bad_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let kv = KvStore::open(&dir.path().join("node.db")).unwrap();
        for key in ["a%1", "a%2", "ab", "b"] {
            kv.set("p", key.into(), vec![]).await.unwrap();
        }
        assert_eq!(kv.list("p", "a%".into(), 10).await.unwrap(), ["a%1", "a%2"]);
        assert_eq!(kv.list("p", "".into(), 2).await.unwrap(), ["a%1", "a%2"]);
        assert!(kv.set("p", "".into(), vec![]).await.is_err());
        assert!(
            kv.set("p", "x".into(), vec![0; MAX_VALUE_BYTES + 1])
                .await
                .is_err()
        );
        assert_eq!(kv.list("p", "".into(), 100).await.unwrap().len(), 4);
    }

    #[tokio::test]
    async fn survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.db");
        KvStore::open(&path)
            .unwrap()
            .set("p", "k".into(), b"v".to_vec())
            .await
            .unwrap();
        let kv = KvStore::open(&path).unwrap();
        assert_eq!(kv.get("p", "k".into()).await.unwrap(), Some(b"v".to_vec()));
    }
}
