//! Host-side bindings for the `hearth:node/plugin` world, and conversions
//! between the WIT types and the registry's.

use hearth_registry::{CallError, ErrorCode, OpKind, ResponseEnvelope, Source};

wasmtime::component::bindgen!({
    path: "../wit",
    world: "plugin",
    imports: { default: async | trappable },
    exports: { default: async },
});

pub use hearth::node::types as wit;

impl From<wit::OpKind> for OpKind {
    fn from(kind: wit::OpKind) -> Self {
        match kind {
            wit::OpKind::Query => OpKind::Query,
            wit::OpKind::Mutation => OpKind::Mutation,
            wit::OpKind::Subscription => OpKind::Subscription,
        }
    }
}

fn code_from_wit(code: wit::ErrorCode) -> ErrorCode {
    match code {
        wit::ErrorCode::NotFound => ErrorCode::NotFound,
        wit::ErrorCode::Denied => ErrorCode::Denied,
        wit::ErrorCode::InvalidInput => ErrorCode::InvalidInput,
        wit::ErrorCode::Timeout => ErrorCode::Timeout,
        wit::ErrorCode::Unavailable => ErrorCode::Unavailable,
        wit::ErrorCode::ResourceExhausted => ErrorCode::ResourceExhausted,
        wit::ErrorCode::Trapped => ErrorCode::Trapped,
        wit::ErrorCode::Locked => ErrorCode::Locked,
        wit::ErrorCode::Conflict => ErrorCode::Conflict,
        wit::ErrorCode::Failed => ErrorCode::Failed,
    }
}

fn code_to_wit(code: ErrorCode) -> wit::ErrorCode {
    match code {
        ErrorCode::NotFound => wit::ErrorCode::NotFound,
        ErrorCode::Denied => wit::ErrorCode::Denied,
        ErrorCode::InvalidInput => wit::ErrorCode::InvalidInput,
        ErrorCode::Timeout => wit::ErrorCode::Timeout,
        ErrorCode::Unavailable => wit::ErrorCode::Unavailable,
        ErrorCode::ResourceExhausted => wit::ErrorCode::ResourceExhausted,
        ErrorCode::Trapped => wit::ErrorCode::Trapped,
        ErrorCode::Locked => wit::ErrorCode::Locked,
        ErrorCode::Conflict => wit::ErrorCode::Conflict,
        ErrorCode::Failed => wit::ErrorCode::Failed,
    }
}

/// A plugin's error, as the registry types it.
pub fn call_error_from_wit(err: wit::CallError) -> CallError {
    CallError::new(code_from_wit(err.code), err.message)
}

/// A host error, as a plugin sees it.
pub fn call_error_to_wit(err: CallError) -> wit::CallError {
    wit::CallError {
        code: code_to_wit(err.code),
        message: err.message,
    }
}

/// A response, as a plugin sees it.
pub fn response_to_wit(response: ResponseEnvelope) -> wit::Response {
    wit::Response {
        output: response.output.to_string(),
        source: match response.source {
            Source::Plugin(name) => wit::Source::Plugin(name),
            Source::Host => wit::Source::Host,
            Source::Remote(name) => wit::Source::Remote(name),
        },
        request_id: response.request_id,
        parent_request_id: response.parent_request_id,
    }
}
