//! File operations confined to one directory.
//!
//! A path is checked before anything is opened ([`check_path`]): relative,
//! `/`-separated, no empty, `.` or `..` part, no NUL, bounded in length and
//! depth. It is then walked one part at a time with `openat(O_NOFOLLOW)`
//! from the root's descriptor, so a symbolic link anywhere — planted by a
//! process sharing the directory, say — fails the walk instead of leading
//! out; renames and removals act on names inside a directory descriptor
//! already reached that way.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags};
use rustix::io::Errno;

/// Largest file read or written.
pub const MAX_FILE: u64 = 16 << 20;
/// Longest path.
pub const MAX_PATH: usize = 1024;
/// Most directories a path may go down.
pub const MAX_DEPTH: usize = 16;
/// Most entries a listing returns.
pub const MAX_LIST: usize = 10_000;
/// Names this module uses for files being written; refused in paths.
const TEMP_PREFIX: &str = ".hearth-tmp-";

/// Why a path or an operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    /// The path breaks a rule; nothing was touched.
    #[error("path `{path}` {why}")]
    BadPath {
        /// The path as given (cut).
        path: String,
        /// The rule.
        why: &'static str,
    },
    /// A part of the path is a symbolic link or not a directory.
    #[error("path `{0}` goes through a symbolic link or a file; links are not followed")]
    Link(String),
    /// No such file or directory.
    #[error("`{0}` does not exist")]
    NotFound(String),
    /// Over a size limit.
    #[error("{0}")]
    TooLarge(String),
    /// Permission bits outside `0o777`.
    #[error("mode {0:#o} is not permission bits; use 0o600, 0o644, 0o755…")]
    BadMode(u32),
    /// The system refused.
    #[error("{op} `{path}`: {error}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path.
        path: String,
        /// What the system said.
        error: io::Error,
    },
}

/// One directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its name.
    pub name: String,
    /// A directory, else a regular file.
    pub dir: bool,
    /// Bytes.
    pub size: u64,
    /// Permission bits.
    pub mode: u32,
    /// Modification time, ms since the epoch.
    pub modified_ms: u64,
}

/// The parts of `path`, or why it is refused. `""` is the root itself.
pub fn check_path(path: &str) -> Result<Vec<&str>, FilesError> {
    let bad = |why| FilesError::BadPath {
        path: path.chars().take(120).collect(),
        why,
    };
    if path.is_empty() {
        return Ok(Vec::new());
    }
    if path.len() > MAX_PATH {
        return Err(bad("is longer than 1024 bytes"));
    }
    if path.starts_with('/') {
        return Err(bad(
            "is absolute; write it relative to the granted directory",
        ));
    }
    if path.contains('\0') {
        return Err(bad("contains a NUL byte"));
    }
    let parts: Vec<&str> = path.split('/').collect();
    if parts.len() > MAX_DEPTH {
        return Err(bad("is more than 16 parts deep"));
    }
    for part in &parts {
        match *part {
            "" => return Err(bad("has an empty part (`//` or a trailing `/`)")),
            "." | ".." => return Err(bad("has a `.` or `..` part")),
            p if p.len() > 255 => return Err(bad("has a part longer than 255 bytes")),
            p if p.starts_with(TEMP_PREFIX) => {
                return Err(bad("names a file the host is writing (`.hearth-tmp-…`)"));
            }
            _ => {}
        }
    }
    Ok(parts)
}

/// A directory that file operations cannot leave.
#[derive(Debug, Clone)]
pub struct Sandbox {
    root: PathBuf,
}

impl Sandbox {
    /// Confines operations to `root` (made, mode 0700, on first use).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Sandbox { root: root.into() }
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn open_root(&self) -> Result<OwnedFd, FilesError> {
        let io = |error| FilesError::Io {
            op: "open the granted directory",
            path: self.root.display().to_string(),
            error,
        };
        if !self.root.exists() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&self.root)
                .map_err(io)?;
        }
        rustix::fs::open(
            &self.root,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io(e.into()))
    }

    /// The directory holding the last part of `parts` (made when `create`),
    /// and that part; the root and `""` for an empty path.
    fn walk<'p>(
        &self,
        path: &str,
        parts: &[&'p str],
        create: bool,
    ) -> Result<(OwnedFd, &'p str), FilesError> {
        let mut dir = self.open_root()?;
        let Some((last, dirs)) = parts.split_last() else {
            return Ok((dir, ""));
        };
        for part in dirs {
            dir = match open_dir(&dir, part) {
                Ok(next) => next,
                Err(Errno::NOENT) if create => {
                    match rustix::fs::mkdirat(&dir, *part, Mode::from_bits_truncate(0o700)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(io_error("make directory", path, e)),
                    }
                    open_dir(&dir, part).map_err(|e| walk_error(path, e))?
                }
                Err(e) => return Err(walk_error(path, e)),
            };
        }
        Ok((dir, last))
    }

    /// The file's bytes; `None` when there is none.
    pub fn read(&self, path: &str) -> Result<Option<Vec<u8>>, FilesError> {
        let parts = check_path(path)?;
        if parts.is_empty() {
            return Err(not_a_file(path));
        }
        let (dir, name) = match self.walk(path, &parts, false) {
            Ok(found) => found,
            Err(FilesError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let fd = match rustix::fs::openat(
            &dir,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(None),
            Err(e) => return Err(walk_error(path, e)),
        };
        let stat = rustix::fs::fstat(&fd).map_err(|e| io_error("read", path, e))?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
            return Err(not_a_file(path));
        }
        let mut contents = Vec::new();
        File::from(fd)
            .take(MAX_FILE + 1)
            .read_to_end(&mut contents)
            .map_err(|error| FilesError::Io {
                op: "read",
                path: path.to_owned(),
                error,
            })?;
        if contents.len() as u64 > MAX_FILE {
            return Err(FilesError::TooLarge(format!(
                "`{path}` is larger than 16 MiB"
            )));
        }
        Ok(Some(contents))
    }

    /// Replaces the file atomically: a new file with `mode`, flushed,
    /// renamed over the old one, the directory flushed.
    pub fn write(&self, path: &str, contents: &[u8], mode: u32) -> Result<(), FilesError> {
        if mode & !0o777 != 0 {
            return Err(FilesError::BadMode(mode));
        }
        if contents.len() as u64 > MAX_FILE {
            return Err(FilesError::TooLarge(format!(
                "{} bytes for `{path}`: at most 16 MiB may be written",
                contents.len()
            )));
        }
        let parts = check_path(path)?;
        if parts.is_empty() {
            return Err(not_a_file(path));
        }
        let (dir, name) = self.walk(path, &parts, true)?;
        let temp = format!("{TEMP_PREFIX}{:016x}", rand_u64());
        let written = (|| {
            let fd = rustix::fs::openat(
                &dir,
                temp.as_str(),
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_bits_truncate(mode),
            )
            .map_err(|e| io_error("create", path, e))?;
            // The umask may have cleared bits the caller asked for.
            rustix::fs::fchmod(&fd, Mode::from_bits_truncate(mode))
                .map_err(|e| io_error("set the mode of", path, e))?;
            let mut file = File::from(fd);
            file.write_all(contents)
                .and_then(|()| file.sync_all())
                .map_err(|error| FilesError::Io {
                    op: "write",
                    path: path.to_owned(),
                    error,
                })?;
            rustix::fs::renameat(&dir, temp.as_str(), &dir, name)
                .map_err(|e| io_error("replace", path, e))
        })();
        if written.is_err() {
            let _ = rustix::fs::unlinkat(&dir, temp.as_str(), AtFlags::empty());
        }
        written?;
        rustix::fs::fsync(&dir).map_err(|e| io_error("flush the directory of", path, e))
    }

    /// Renames `from` to `to` (its directories made as needed).
    pub fn rename(&self, from: &str, to: &str) -> Result<(), FilesError> {
        let from_parts = check_path(from)?;
        let to_parts = check_path(to)?;
        if from_parts.is_empty() || to_parts.is_empty() {
            return Err(not_a_file(if from_parts.is_empty() { from } else { to }));
        }
        let (from_dir, from_name) = self.walk(from, &from_parts, false)?;
        let (to_dir, to_name) = self.walk(to, &to_parts, true)?;
        rustix::fs::renameat(&from_dir, from_name, &to_dir, to_name).map_err(|e| match e {
            Errno::NOENT => FilesError::NotFound(from.to_owned()),
            e => io_error("rename", from, e),
        })?;
        rustix::fs::fsync(&to_dir).map_err(|e| io_error("flush the directory of", to, e))
    }

    /// Removes a file or an empty directory; false when there was none.
    pub fn remove(&self, path: &str) -> Result<bool, FilesError> {
        let parts = check_path(path)?;
        if parts.is_empty() {
            return Err(FilesError::BadPath {
                path: String::new(),
                why: "is the granted directory itself, which cannot be removed",
            });
        }
        let (dir, name) = match self.walk(path, &parts, false) {
            Ok(found) => found,
            Err(FilesError::NotFound(_)) => return Ok(false),
            Err(e) => return Err(e),
        };
        let stat = match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => stat,
            Err(Errno::NOENT) => return Ok(false),
            Err(e) => return Err(io_error("remove", path, e)),
        };
        let flags = if FileType::from_raw_mode(stat.st_mode) == FileType::Directory {
            AtFlags::REMOVEDIR
        } else {
            AtFlags::empty()
        };
        match rustix::fs::unlinkat(&dir, name, flags) {
            Ok(()) => Ok(true),
            Err(Errno::NOENT) => Ok(false),
            Err(e) => Err(io_error("remove", path, e)),
        }
    }

    /// The files and directories in `dir`, by name.
    pub fn list(&self, dir_path: &str) -> Result<Vec<Entry>, FilesError> {
        let parts = check_path(dir_path)?;
        let (parent, name) = self.walk(dir_path, &parts, false)?;
        let dir = if name.is_empty() {
            parent
        } else {
            open_dir(&parent, name).map_err(|e| walk_error(dir_path, e))?
        };
        let mut entries = Vec::new();
        let reader = Dir::read_from(&dir).map_err(|e| io_error("list", dir_path, e))?;
        for entry in reader {
            let entry = entry.map_err(|e| io_error("list", dir_path, e))?;
            let Ok(name) = entry.file_name().to_str() else {
                continue;
            };
            if name == "." || name == ".." || name.starts_with(TEMP_PREFIX) {
                continue;
            }
            let Ok(stat) = rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) else {
                continue;
            };
            let kind = FileType::from_raw_mode(stat.st_mode);
            if kind != FileType::RegularFile && kind != FileType::Directory {
                continue;
            }
            if entries.len() == MAX_LIST {
                return Err(FilesError::TooLarge(format!(
                    "`{dir_path}` has more than {MAX_LIST} entries"
                )));
            }
            entries.push(Entry {
                name: name.to_owned(),
                dir: kind == FileType::Directory,
                size: stat.st_size as u64,
                mode: stat.st_mode & 0o7777,
                modified_ms: u64::try_from(stat.st_mtime)
                    .unwrap_or(0)
                    .saturating_mul(1000)
                    .saturating_add(stat.st_mtime_nsec / 1_000_000),
            });
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }
}

fn open_dir(dir: &OwnedFd, name: &str) -> Result<OwnedFd, Errno> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

fn walk_error(path: &str, e: Errno) -> FilesError {
    match e {
        Errno::NOENT => FilesError::NotFound(path.to_owned()),
        Errno::LOOP | Errno::NOTDIR => FilesError::Link(path.to_owned()),
        e => io_error("open", path, e),
    }
}

fn io_error(op: &'static str, path: &str, e: Errno) -> FilesError {
    FilesError::Io {
        op,
        path: path.to_owned(),
        error: e.into(),
    }
}

fn not_a_file(path: &str) -> FilesError {
    FilesError::BadPath {
        path: path.to_owned(),
        why: "is not a file",
    }
}

/// A name for a file being written; unique enough with `O_EXCL` behind it.
fn rand_u64() -> u64 {
    let mut bytes = [0u8; 8];
    let _ = getrandom::getrandom(&mut bytes);
    u64::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn paths_are_checked_before_anything_opens() {
        for good in ["a", "a/b.conf", "certs/example.com.pem", ".well-known/acme"] {
            assert!(check_path(good).is_ok(), "{good}");
        }
        let long = "a/".repeat(17) + "b";
        for bad in [
            "/etc/passwd",
            "..",
            "a/../../b",
            "./a",
            "a//b",
            "a/",
            "a\0b",
            ".hearth-tmp-1",
            long.as_str(),
        ] {
            assert!(check_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn writes_are_whole_with_their_mode_and_stay_inside() {
        let dir = tempfile::tempdir().unwrap();
        let sandbox = Sandbox::new(dir.path().join("granted"));
        sandbox.write("certs/a.key", b"secret", 0o600).unwrap();
        let on_disk = dir.path().join("granted/certs/a.key");
        assert_eq!(std::fs::read(&on_disk).unwrap(), b"secret");
        assert_eq!(
            std::fs::metadata(&on_disk).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(sandbox.read("certs/a.key").unwrap().unwrap(), b"secret");
        assert_eq!(sandbox.read("certs/none").unwrap(), None);
        sandbox.write("certs/a.key", b"second", 0o644).unwrap();
        assert_eq!(sandbox.read("certs/a.key").unwrap().unwrap(), b"second");
        let listed = sandbox.list("certs").unwrap();
        assert_eq!(listed.len(), 1, "no temporary file is left: {listed:?}");
        assert_eq!((listed[0].name.as_str(), listed[0].mode), ("a.key", 0o644));
        let root = sandbox.list("").unwrap();
        assert!(root[0].dir && root[0].name == "certs");
        sandbox.rename("certs/a.key", "old/a.key").unwrap();
        assert!(sandbox.read("certs/a.key").unwrap().is_none());
        assert!(sandbox.remove("old/a.key").unwrap());
        assert!(!sandbox.remove("old/a.key").unwrap());
        assert!(sandbox.remove("old").unwrap());
        assert!(matches!(
            sandbox.write("x", b"", 0o4755),
            Err(FilesError::BadMode(_))
        ));
    }

    #[test]
    fn symbolic_links_are_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("secret"), "outside").unwrap();
        let root = dir.path().join("granted");
        std::fs::create_dir(&root).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
        std::os::unix::fs::symlink(outside.join("secret"), root.join("file")).unwrap();
        let sandbox = Sandbox::new(&root);
        assert!(matches!(
            sandbox.read("link/secret"),
            Err(FilesError::Link(_))
        ));
        assert!(matches!(sandbox.read("file"), Err(FilesError::Link(_))));
        assert!(matches!(
            sandbox.write("link/new", b"x", 0o600),
            Err(FilesError::Link(_))
        ));
        assert!(matches!(sandbox.list("link"), Err(FilesError::Link(_))));
        // Replacing the link replaces the link, not what it points to.
        sandbox.write("file", b"inside", 0o600).unwrap();
        assert_eq!(std::fs::read(outside.join("secret")).unwrap(), b"outside");
        assert!(!outside.join("new").exists());
        assert!(sandbox.list("").unwrap().iter().all(|e| e.name != "link"));
    }
}
