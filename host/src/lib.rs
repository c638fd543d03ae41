//! The Hearth node: a trusted core that runs application features as
//! WebAssembly plugins.
//!
//! The modules form layers; each imports only from the layers below it
//! (`docs/architecture.md` draws them, and a unit test below fails when an
//! import points up or a cycle comes back):
//!
//! 1. [`call`]: the call model — one request type for every door, the
//!    running call's context, the event sink, the OperationEnv trait;
//! 2. [`config`]: `stack.toml` resolved into what the node runs on;
//! 3. [`runtime`]: wasmtime, the per-call store, limits, warm instances;
//! 4. [`capabilities`]: the host side of each WIT interface with its grant;
//!    [`messaging`]: the outbox, inbox and broker stores (SQLite, group
//!    commit); [`access`]: who calls from outside and what they may do
//!    (client keys, approvals, sessions, the scope check);
//! 5. [`ops`]: the OperationEnv — routing, the one call pipeline, native
//!    operations, peers reached through a trait;
//! 6. [`transport`] (Unix socket), [`gateway`] (HTTP on loopback), [`mesh`]
//!    (QUIC between nodes), [`mcp`] (the MCP server's protocol) and
//!    [`client`]: the doors, which only decode, call and encode;
//! 7. [`serve`]: wires a node together, runs it, drains it;
//! 8. [`cli`]: the `host` command line.
//!
//! Below them all sit the crates without wasmtime: `hearth-registry`
//! (paths, specs, grants, manifests, the stack file model),
//! `hearth-protocol` (wire formats) and `hearth-vault` (the seed and its
//! keys, re-exported here as [`vault`]).

pub mod access;
pub mod call;
pub mod capabilities;
pub mod cli;
pub mod client;
pub mod config;
pub mod gateway;
pub mod mcp;
pub mod mesh;
pub mod messaging;
pub mod ops;
pub mod runtime;
pub mod serve;
pub mod transport;

pub use hearth_vault as vault;

#[cfg(test)]
mod layers;
