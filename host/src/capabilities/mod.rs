//! What a plugin can be granted, one module per capability.
//!
//! Each module owns the host side of one WIT interface of
//! `hearth:node` — a view borrowing the call's state, its `Host` impl, one
//! `add_to_linker` — and the check of its grant (`[plugins.<name>].grants`
//! in `stack.toml`), with the hint a `denied` error gives. What a capability
//! serves from (the kv store, the vault, the Docker engine, the
//! OperationEnv) is built once by the node and found in the call's
//! [`Resources`](crate::runtime::Resources) by type.
//!
//! | module     | interface | grant                         | manifest request          |
//! |------------|-----------|-------------------------------|---------------------------|
//! | [`env`]    | `env`     | `grants.env = [patterns]`     | `capabilities.env`        |
//! | [`kv`]     | `kv`      | `grants.kv = true`            | `capabilities.kv`         |
//! | [`log`]    | `log`     | always                        | —                         |
//! | [`vault`]  | `vault`   | `grants.vault = [prefixes]`   | `capabilities.vault`      |
//! | [`docker`] | `docker`  | `grants.docker = { policy }`  | `capabilities.docker`     |
//! | [`config`] | `config`  | always (its own table)        | —                         |
//! | [`events`] | `events`  | always (its subscriptions)    | —                         |
//! | [`discovery`] | `discovery` | always (dynamic plugins) | `dynamic = true`          |
//! | [`process`] | `process` | `grants.process = [[argv]]`, `grants.process_env` | `capabilities.process` |
//! | [`http`]   | `wasi:http/outgoing-handler` | `grants.http = [origins]`, `grants.http_roots` | `capabilities.http` |
//! | [`files`]  | `files`   | `grants.files = "/dir"`       | `capabilities.files`      |
//!
//! Adding a capability: its interface in `wit/`, one module here (plus a
//! line in [`add_to_linker`]), one module in the SDK. A capability never
//! reaches into another's module, routes calls, or knows a front door.

pub mod config;
pub mod discovery;
pub mod docker;
pub mod env;
pub mod events;
pub mod files;
pub mod http;
pub mod kv;
pub mod log;
pub mod process;
pub mod vault;

use wasmtime::component::Linker;

use crate::runtime::CallState;

/// Links every capability's interface.
pub fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    env::add_to_linker(linker)?;
    kv::add_to_linker(linker)?;
    log::add_to_linker(linker)?;
    vault::add_to_linker(linker)?;
    docker::add_to_linker(linker)?;
    config::add_to_linker(linker)?;
    events::add_to_linker(linker)?;
    discovery::add_to_linker(linker)?;
    process::add_to_linker(linker)?;
    files::add_to_linker(linker)?;
    http::add_to_linker(linker)
}
