//! Host-side bindings for the `hearth:node/plugin` world, and conversions
//! between the WIT types and the registry's.
#![allow(missing_docs)] // the generated bindings

use std::time::Instant;

use hearth_registry::{CallError, ErrorCode, OpKind, ResponseEnvelope, Source};
use wasmtime::component::{HasSelf, Linker};

use super::state::CallState;
use crate::call::CallContext;

wasmtime::component::bindgen!({
    path: "../wit",
    world: "plugin",
    imports: { default: async | trappable },
    exports: { default: async },
});

pub use hearth::node::types as wit;

/// The WIT package this host serves (`host version` shows it).
pub const WIT_PACKAGE: &str = "hearth:node@0.2.0";

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

/// The record a plugin receives for the call it serves.
pub fn context_to_wit(ctx: &CallContext) -> wit::CallContext {
    let left = ctx.deadline.saturating_duration_since(Instant::now());
    wit::CallContext {
        request_id: ctx.request_id.clone(),
        parent_request_id: ctx.parent_request_id.clone(),
        identity: wit::Identity {
            id: ctx.identity.id.clone(),
            scopes: ctx.identity.scopes.clone(),
        },
        metadata: ctx.metadata.clone(),
        deadline_ms: u64::try_from(left.as_millis()).unwrap_or(u64::MAX),
        trusted: ctx.trusted,
        depth: ctx.depth,
    }
}

impl wit::Host for CallState {}

/// Links `hearth:node/types`, which every other interface uses.
pub(super) fn add_types_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    wit::add_to_linker::<CallState, HasSelf<CallState>>(linker, |state| state)
}

/// A host result as an import returns it: typed errors go to the plugin,
/// never trap it.
pub fn to_wit<T>(result: Result<T, CallError>) -> wasmtime::Result<Result<T, wit::CallError>> {
    Ok(result.map_err(call_error_to_wit))
}
