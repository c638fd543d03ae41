//! The one error type of configuration: every problem names the file, the
//! key and the fix.

use std::path::Path;

/// Why the configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The stack file is unreadable, not TOML, or has an unknown key or a
    /// value of the wrong type.
    #[error(transparent)]
    Stack(#[from] hearth_registry::StackError),
    /// A plugin's `plugin.toml` is invalid (the message names the key and
    /// the fix).
    #[error("{file}: {message}")]
    Manifest {
        /// The manifest file.
        file: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A value parses but cannot be used. Reads as a sentence: the key,
    /// then what is wrong with it (`peers.w.public_key must be 64 hex
    /// digits`), then the fix.
    #[error("{file}: {key} {problem}; {fix}")]
    Invalid {
        /// The file it is in.
        file: String,
        /// The dotted key (`limits.memory_mib`, `peers.w.public_key`).
        key: String,
        /// What is wrong.
        problem: String,
        /// What to do about it.
        fix: String,
    },
}

/// Makes errors about one file.
#[derive(Debug, Clone)]
pub(super) struct File(pub String);

impl File {
    pub(super) fn of(path: &Path) -> Self {
        File(path.display().to_string())
    }

    /// An error about `key` in this file.
    pub(super) fn invalid(
        &self,
        key: impl Into<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            file: self.0.clone(),
            key: key.into(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }
}
