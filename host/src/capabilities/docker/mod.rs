//! The `docker` capability: containers on the node's Docker engine, within
//! the policy the operator granted.
//!
//! Grant: `grants.docker = { images = [...], host_ports = "low-high",
//! max_containers = n }`. Manifest request: `capabilities.docker = true`.
//! Config: `[docker] socket` (the engine's Unix socket). A plugin sees and
//! manages only the containers it created ([`engine`] labels them).

pub mod engine;

use std::sync::Arc;

use hearth_registry::{CallError, DockerGrant, ErrorCode};
use wasmtime::component::{HasData, Linker};

pub use engine::{CreateRequest, DEFAULT_SOCKET, DockerEngine, EventWatch, PortMapping};

use crate::runtime::CallState;
use crate::runtime::bindings::{self, hearth::node::docker, wit};

/// `docker` as one call's plugin sees it.
pub struct Docker<'a>(&'a mut CallState);

struct DockerData;

impl HasData for DockerData {
    type Data<'a> = Docker<'a>;
}

/// Links `hearth:node/docker`.
pub fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    docker::add_to_linker::<CallState, DockerData>(linker, |state| Docker(state))
}

impl Docker<'_> {
    /// The engine, the policy and the plugin's name, when granted.
    fn granted(&self) -> Result<(Arc<DockerEngine>, DockerGrant, Arc<str>), CallError> {
        let caller = self.0.caller();
        let Some(policy) = caller.grants.docker.clone() else {
            return Err(CallError::new(
                ErrorCode::Denied,
                format!(
                    "plugin `{}` has no docker grant; add `grants.docker = {{ images = [...], host_ports = \"low-high\" }}` to [plugins.{}] in stack.toml",
                    caller.plugin, caller.plugin
                ),
            ));
        };
        let plugin = caller.plugin.clone();
        Ok((self.0.resource::<DockerEngine>("docker")?, policy, plugin))
    }
}

impl docker::Host for Docker<'_> {
    async fn next_event(
        &mut self,
        timeout_ms: u32,
    ) -> wasmtime::Result<Result<Option<String>, wit::CallError>> {
        let (engine, _, plugin) = match self.granted() {
            Ok(v) => v,
            Err(e) => return bindings::to_wit(Err(e)),
        };
        let sink = self.0.caller().ctx.events.clone();
        let mut watch = match self.0.slot(|| None::<EventWatch>).take() {
            Some(watch) => watch,
            None => match engine.watch(&plugin).await {
                Ok(watch) => watch,
                Err(e) => return bindings::to_wit(Err(e)),
            },
        };
        // Stop waiting early when the subscriber has gone, so the plugin's
        // loop (`while events::subscribed()`) ends promptly.
        let wait = async move {
            let timer = tokio::time::sleep(std::time::Duration::from_millis(timeout_ms.into()));
            match sink {
                Some(sink) => tokio::select! {
                    () = timer => (),
                    () = sink.closed() => (),
                },
                None => timer.await,
            }
        };
        let result = engine.next_event(&mut watch, wait).await;
        *self.0.slot(|| None::<EventWatch>) = Some(watch);
        bindings::to_wit(result)
    }

    async fn create(
        &mut self,
        request: docker::CreateRequest,
    ) -> wasmtime::Result<Result<String, wit::CallError>> {
        let (engine, policy, plugin) = match self.granted() {
            Ok(v) => v,
            Err(e) => return bindings::to_wit(Err(e)),
        };
        let request = CreateRequest {
            image: request.image,
            name: request.name,
            env: request.env,
            ports: request
                .ports
                .into_iter()
                .map(|p| PortMapping {
                    container_port: p.container_port,
                    host_port: p.host_port,
                    protocol: p.protocol,
                })
                .collect(),
            command: request.command,
            labels: request.labels,
        };
        bindings::to_wit(engine.create(&plugin, &policy, request).await)
    }

    async fn inspect(
        &mut self,
        container: String,
    ) -> wasmtime::Result<Result<String, wit::CallError>> {
        let result = match self.granted() {
            Ok((engine, _, plugin)) => engine.inspect(&plugin, &container).await,
            Err(e) => Err(e),
        };
        bindings::to_wit(result)
    }

    async fn list_containers(
        &mut self,
        all: bool,
    ) -> wasmtime::Result<Result<String, wit::CallError>> {
        let result = match self.granted() {
            Ok((engine, _, plugin)) => engine.list(&plugin, all).await,
            Err(e) => Err(e),
        };
        bindings::to_wit(result)
    }

    async fn stop(
        &mut self,
        container: String,
        timeout_secs: u32,
    ) -> wasmtime::Result<Result<(), wit::CallError>> {
        let result = match self.granted() {
            Ok((engine, _, plugin)) => engine.stop(&plugin, &container, timeout_secs).await,
            Err(e) => Err(e),
        };
        bindings::to_wit(result)
    }

    async fn remove(
        &mut self,
        container: String,
        force: bool,
    ) -> wasmtime::Result<Result<(), wit::CallError>> {
        let result = match self.granted() {
            Ok((engine, _, plugin)) => engine.remove(&plugin, &container, force).await,
            Err(e) => Err(e),
        };
        bindings::to_wit(result)
    }

    async fn logs(
        &mut self,
        container: String,
        tail: u32,
    ) -> wasmtime::Result<Result<Vec<String>, wit::CallError>> {
        let result = match self.granted() {
            Ok((engine, _, plugin)) => engine.logs(&plugin, &container, tail).await,
            Err(e) => Err(e),
        };
        bindings::to_wit(result)
    }
}
