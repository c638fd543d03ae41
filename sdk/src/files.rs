//! Files in the one directory the operator granted this plugin
//! (`grants.files = "/var/lib/hearth/proxy"` in `stack.toml`).
//!
//! Paths are relative to that directory (`certs/example.com.pem`), with no
//! `.`, `..` or empty parts; symbolic links are never followed. [`write`]
//! replaces a file atomically with the permission bits you give (`0o600`
//! for a key), so a program reading it — one of the plugin's granted
//! processes — never sees half a file. Writes take effect at once; a call
//! that fails does not undo them.
//!
//! ```no_run
//! # use hearth_sdk::{files, CallError};
//! # fn f() -> Result<(), CallError> {
//! let dir = files::root()?; // where the node keeps them, for a config file
//! files::write("site.conf", format!("root {dir}/www;\n").as_bytes(), 0o644)?;
//! # Ok(()) }
//! ```

use crate::CallError;
use crate::bindings::hearth::node::files as wit_files;

/// One entry of [`list`].
pub use crate::bindings::hearth::node::files::Entry;

/// The granted directory's absolute path on the node.
pub fn root() -> Result<String, CallError> {
    wit_files::root()
}

/// The file's contents (at most 16 MiB); `None` when there is no such file.
pub fn read(path: &str) -> Result<Option<Vec<u8>>, CallError> {
    wit_files::read(path)
}

/// The file as UTF-8 text; `None` when there is no such file.
pub fn read_string(path: &str) -> Result<Option<String>, CallError> {
    match read(path)? {
        Some(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| CallError::failed(format!("`{path}` is not UTF-8 text"))),
        None => Ok(None),
    }
}

/// Replaces the file (its directories made) with `contents` and `mode`.
pub fn write(path: &str, contents: &[u8], mode: u32) -> Result<(), CallError> {
    wit_files::write(path, contents, mode)
}

/// Renames `from` to `to` in one step, replacing `to`.
pub fn rename(from: &str, to: &str) -> Result<(), CallError> {
    wit_files::rename(from, to)
}

/// Removes a file or an empty directory; false when there was none.
pub fn remove(path: &str) -> Result<bool, CallError> {
    wit_files::remove(path)
}

/// The entries of a directory (`""` for the granted one), by name.
pub fn list(dir: &str) -> Result<Vec<Entry>, CallError> {
    wit_files::list(dir)
}
