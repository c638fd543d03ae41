//! The result of a call: a [`ResponseEnvelope`] or a typed [`CallError`].
//!
//! These mirror `hearth:node/types` in WIT and travel unchanged over the
//! Unix socket and (later) QUIC, so a caller sees the same error whether the
//! operation ran in-process, in a plugin or on a peer.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The kind of failure. The order of variants is part of the wire format:
/// append new codes at the end, never reorder or reuse one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorCode {
    /// No operation (or item) at that path.
    NotFound,
    /// The caller or plugin lacks a scope or grant.
    Denied,
    /// The input does not match the operation's schema.
    InvalidInput,
    /// The deadline passed before the call finished.
    Timeout,
    /// A dependency cannot be reached now; retrying later may work.
    Unavailable,
    /// A limit (memory, instances, depth, size) was hit.
    ResourceExhausted,
    /// The plugin trapped or panicked.
    Trapped,
    /// The vault is locked.
    Locked,
    /// The request conflicts with existing state.
    Conflict,
    /// Anything else; the message says what.
    Failed,
}

impl ErrorCode {
    /// The kebab-case name used in WIT, JSON and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NotFound => "not-found",
            ErrorCode::Denied => "denied",
            ErrorCode::InvalidInput => "invalid-input",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::ResourceExhausted => "resource-exhausted",
            ErrorCode::Trapped => "trapped",
            ErrorCode::Locked => "locked",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Failed => "failed",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A typed error with a message a person can act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct CallError {
    /// What kind of failure this is.
    pub code: ErrorCode,
    /// What happened and, where possible, what to do about it.
    pub message: String,
}

impl CallError {
    /// An error of `code` with `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        CallError {
            code,
            message: message.into(),
        }
    }
}

/// Where a response came from. Externally tagged (`{"plugin":"echo"}`,
/// `"host"`) so it encodes in postcard as well as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// A plugin on this node, by name.
    Plugin(String),
    /// The host itself (a native operation).
    Host,
    /// Another node, by name.
    Remote(String),
}

/// A successful result: the output JSON and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseEnvelope {
    /// The operation's output.
    pub output: serde_json::Value,
    /// Who produced it.
    pub source: Source,
    /// The id the node gave this call.
    pub request_id: String,
    /// The id of the call that made this one through `env`, if any.
    pub parent_request_id: Option<String>,
}
