//! The Hearth node: a trusted core that runs application features as
//! WebAssembly plugins.
//!
//! - [`config`]: `stack.toml` resolved into what the node runs;
//! - [`runtime`]: wasmtime, the per-call store, the plugin imports;
//! - [`node`]: routing, scopes, grants, nested calls (the OperationEnv);
//! - [`kv`]: the SQLite store behind the `kv` interface;
//! - [`docker`]: the Docker engine behind the `docker` interface;
//! - [`vault`]: the seed, sealed at rest, and every key derived from it;
//! - [`transport`]: the Unix-socket protocol and server;
//! - [`mesh`]: QUIC between nodes: pinned peers, negotiation, remote calls;
//! - [`client`]: the client library the CLI uses;
//! - [`cli`]: the `host` command line.

pub mod cli;
pub mod client;
pub mod config;
pub mod docker;
pub mod kv;
pub mod mesh;
pub mod node;
pub mod runtime;
pub mod transport;
pub mod vault;
