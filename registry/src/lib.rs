//! The operation model of Hearth, with no runtime attached.
//!
//! This crate owns what an operation *is* and who may call it:
//!
//! - [`OperationPath`]: `/{node}/{namespace}/{name}`, parsed and validated;
//! - [`OperationSpec`] and [`OpKind`]: what `host ops` lists;
//! - [`RoutingTable`]: path to target, with input validation against the
//!   spec's JSON Schema and "did you mean" suggestions;
//! - [`PluginManifest`]: a plugin's `plugin.toml`;
//! - [`GrantSet`] and [`PathPattern`]: what the operator granted a plugin,
//!   denied by default;
//! - [`StackFile`]: the `stack.toml` file model;
//! - [`CallError`], [`ErrorCode`] and [`ResponseEnvelope`]: the result of
//!   every call, the same across the CLI, the socket and WIT.
//!
//! It knows nothing of wasmtime, sockets or SQLite, so the CLI, the client
//! library and tests can use it without linking the runtime.
//!
//! ```
//! use hearth_registry::OperationPath;
//!
//! let path: OperationPath = "/node/echo/ping".parse().unwrap();
//! assert_eq!(path.namespace(), "echo");
//! assert!("/node/echo".parse::<OperationPath>().is_err());
//! ```

mod call;
mod grants;
mod http_grant;
mod manifest;
mod path;
mod routing;
mod spec;
mod stack;

pub use call::{CallError, ErrorCode, ResponseEnvelope, Source};
pub use grants::{
    DockerGrant, GrantSet, MessagesGrant, PathPattern, PatternError, PortRange, VaultPrefix,
    VaultPrefixError,
};
pub use http_grant::{HttpOrigin, HttpOriginError, Scheme, is_internal_address};
pub use manifest::{
    ManifestError, MessagesRequest, PluginManifest, RequestedCapabilities, RuntimePreferences,
    TimerRequest,
};
pub use path::{LOCAL_NODE, OperationPath, PathError, RESERVED_NAMESPACES, is_valid_segment};
pub use routing::{InputError, Owner, Route, RoutingError, RoutingTable};
pub use spec::{OpKind, OperationSpec, SpecError};
pub use stack::{
    BrokerSection, ClientsSection, DockerSection, DuplicateConnections, GatewaySection,
    LimitsSection, MAX_MEMORY_MIB, MeshSection, MessagingSection, NodeSection, PeerEntry,
    PluginEntry, StackError, StackFile,
};
