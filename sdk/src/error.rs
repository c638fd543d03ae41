//! Constructors and conversions for [`CallError`], the typed error every
//! operation returns.

use crate::{CallError, ErrorCode};

impl CallError {
    /// An error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        CallError {
            code,
            message: message.into(),
        }
    }

    /// `invalid-input`: the caller sent something the operation cannot use.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidInput, message)
    }

    /// `not-found`: the thing asked for does not exist.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    /// `conflict`: the request conflicts with existing state.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }

    /// `failed`: anything else.
    pub fn failed(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Failed, message)
    }
}

impl ErrorCode {
    /// The kebab-case name, as the host and the CLI print it.
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
