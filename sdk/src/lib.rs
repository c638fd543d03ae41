//! Write Hearth plugins as typed Rust functions.
//!
//! A plugin author writes one function per operation, taking a
//! [`Context`] and a `serde` input type and returning a `serde` output type.
//! The SDK derives both JSON Schemas from the types (with `schemars`),
//! builds the operation specs the host reads, and dispatches each call to
//! the right function with the input decoded and the output encoded.
//!
//! ```
//! use hearth_sdk::prelude::*;
//!
//! #[derive(Deserialize, JsonSchema)]
//! struct PingInput { msg: String }
//!
//! #[derive(Serialize, JsonSchema)]
//! struct PingOutput { msg: String }
//!
//! fn ping(_cx: &Context, input: PingInput) -> Result<PingOutput, CallError> {
//!     Ok(PingOutput { msg: input.msg })
//! }
//!
//! struct Echo;
//!
//! impl Plugin for Echo {
//!     fn operations(ops: &mut Operations) {
//!         ops.query("ping", "Reply with the message it was sent.", ping);
//!     }
//! }
//!
//! hearth_sdk::export_plugin!(Echo);
//!
//! // A handler that uses no capability tests natively:
//! # fn main() {
//! let cx = Context::for_test("client:doc", &[]);
//! let out = ping(&cx, PingInput { msg: "hi".into() }).unwrap();
//! assert_eq!(out.msg, "hi");
//! # }
//! ```
//!
//! Host capabilities are in [`config`], [`env`], [`kv`], [`log`], [`vault`],
//! [`docker`] and [`http`]; each works only when the operator granted it in
//! `stack.toml`, and fails with [`ErrorCode::Denied`] otherwise.
//! Subscriptions stream through [`events`]; plugins whose operations come
//! from their configuration implement [`Plugin::discover`] (see
//! [`discovery`]).

// Lets the generated bindings name this crate by its public path, so the
// export macro works when expanded inside a plugin crate.
extern crate self as hearth_sdk;

pub mod config;
mod context;
pub mod discovery;
mod dispatch;
pub mod docker;
pub mod env;
mod error;
pub mod events;
pub mod files;
pub mod http;
pub mod kv;
pub mod log;
pub mod names;
pub mod process;
pub mod sse;
pub mod vault;

#[doc(hidden)]
pub mod bindings {
    //! Bindings generated from `wit/` by wit-bindgen.
    #![allow(missing_docs, unsafe_code, clippy::all)]
    wit_bindgen::generate!({
        path: "../wit",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "__export_hearth_plugin",
        default_bindings_module: "hearth_sdk::bindings",
        runtime_path: "hearth_sdk::__private::wit_bindgen::rt",
        generate_all,
    });
}

#[doc(hidden)]
pub mod __private {
    pub use wit_bindgen;
}

pub use bindings::hearth::node::types::OpKind;
pub use bindings::hearth::node::types::{CallError, ErrorCode, Identity};
pub use context::Context;
pub use dispatch::{Adapter, DynamicOp, Operation, Operations, Plugin};

/// Everything a plugin usually needs in one import.
pub mod prelude {
    pub use crate::{
        CallError, Context, ErrorCode, Operations, Plugin, config, docker, env, events, http, kv,
        log, vault,
    };
    pub use schemars::JsonSchema;
    pub use serde::{Deserialize, Serialize};
}

#[doc(hidden)]
pub use schemars;
#[doc(hidden)]
pub use serde;

/// Exports `$plugin` (a type implementing [`Plugin`]) as this component's
/// handler. Call it once, at the root of the plugin crate.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        // The generated export macro takes an identifier, not a path.
        type __HearthAdapter = $crate::Adapter<$plugin>;
        $crate::bindings::__export_hearth_plugin!(__HearthAdapter with_types_in $crate::bindings);
    };
}
