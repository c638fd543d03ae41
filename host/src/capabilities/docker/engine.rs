//! The Docker engine behind the `docker` capability: containers, through
//! bollard, within the policy each plugin was granted.
//!
//! Every container created through it carries the labels `hearth.node` and
//! `hearth.plugin`; a plugin sees and manages only its own containers. The
//! engine is reached lazily: the node starts and serves without it, calls
//! fail with `unavailable` while it is down, and work again when it is
//! back, without a restart.

use std::collections::HashMap;
use std::path::PathBuf;

use bollard::Docker;
use bollard::container::{
    Config, CreateContainerOptions, ListContainersOptions, LogsOptions, RemoveContainerOptions,
    StopContainerOptions,
};
use bollard::models::{HostConfig, PortBinding};
use futures_util::StreamExt;
use hearth_registry::{CallError, DockerGrant, ErrorCode};

/// The engine socket when `[docker] socket` is not set.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";
/// Label naming the plugin that owns a container.
const PLUGIN_LABEL: &str = "hearth.plugin";
/// Label naming the node that created a container.
const NODE_LABEL: &str = "hearth.node";
/// Seconds bollard waits on the engine per request.
const ENGINE_TIMEOUT_SECS: u64 = 120;
/// Most log lines one call returns.
const MAX_LOG_LINES: u32 = 10_000;

/// A port to publish.
#[derive(Debug, Clone)]
pub struct PortMapping {
    /// Port inside the container.
    pub container_port: u16,
    /// Port on the host.
    pub host_port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct CreateRequest {
    /// Image reference.
    pub image: String,
    /// Container name.
    pub name: Option<String>,
    /// Environment.
    pub env: Vec<(String, String)>,
    /// Published ports.
    pub ports: Vec<PortMapping>,
    /// Command; the image's default when empty.
    pub command: Vec<String>,
    /// Extra labels.
    pub labels: Vec<(String, String)>,
}

/// A running watch of container events (one per subscription call).
pub struct EventWatch {
    stream: std::pin::Pin<
        Box<
            dyn futures_util::Stream<
                    Item = Result<bollard::models::EventMessage, bollard::errors::Error>,
                > + Send,
        >,
    >,
}

/// The node's handle on its Docker engine.
pub struct DockerEngine {
    socket: PathBuf,
    node: String,
    client: tokio::sync::Mutex<Option<Docker>>,
}

impl DockerEngine {
    /// An engine at `socket` (connected on first use) for node `node`.
    pub fn new(socket: Option<PathBuf>, node: &str) -> Self {
        DockerEngine {
            socket: socket.unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET)),
            node: node.to_owned(),
            client: tokio::sync::Mutex::new(None),
        }
    }

    fn unreachable(&self, err: impl std::fmt::Display) -> CallError {
        CallError::new(
            ErrorCode::Unavailable,
            format!(
                "cannot reach the Docker engine at {}: {err}; is dockerd running? (set `[docker] socket` in stack.toml for another path)",
                self.socket.display()
            ),
        )
    }

    /// A connected client, negotiating the API version on first use.
    async fn client(&self) -> Result<Docker, CallError> {
        let mut slot = self.client.lock().await;
        if let Some(client) = slot.as_ref() {
            return Ok(client.clone());
        }
        let path = self.socket.display().to_string();
        let client =
            Docker::connect_with_unix(&path, ENGINE_TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
                .map_err(|e| self.unreachable(e))?
                .negotiate_version()
                .await
                .map_err(|e| self.unreachable(e))?;
        *slot = Some(client.clone());
        Ok(client)
    }

    /// Maps an engine error; forgets the client when the engine is gone so
    /// the next call reconnects.
    async fn engine_error(&self, err: bollard::errors::Error, what: &str) -> CallError {
        use bollard::errors::Error as E;
        match err {
            E::DockerResponseServerError {
                status_code,
                message,
            } => {
                let code = match status_code {
                    404 => ErrorCode::NotFound,
                    409 => ErrorCode::Conflict,
                    400 => ErrorCode::InvalidInput,
                    _ => ErrorCode::Failed,
                };
                let hint = if status_code == 404 && message.contains("image") {
                    "; import or pull the image on this node first"
                } else {
                    ""
                };
                CallError::new(code, format!("{what}: the engine said: {message}{hint}"))
            }
            other => {
                *self.client.lock().await = None;
                self.unreachable(other)
            }
        }
    }

    /// Containers this plugin owns, all states.
    async fn owned(
        &self,
        client: &Docker,
        plugin: &str,
        all: bool,
    ) -> Result<Vec<bollard::models::ContainerSummary>, CallError> {
        let mut filters = HashMap::new();
        filters.insert(
            "label".to_owned(),
            vec![
                format!("{PLUGIN_LABEL}={plugin}"),
                format!("{NODE_LABEL}={}", self.node),
            ],
        );
        let options = ListContainersOptions {
            all,
            filters,
            ..Default::default()
        };
        match client.list_containers(Some(options)).await {
            Ok(list) => Ok(list),
            Err(e) => Err(self.engine_error(e, "listing containers").await),
        }
    }

    /// Resolves `container` (id, id prefix or name) to an id the plugin owns.
    async fn owned_id(
        &self,
        client: &Docker,
        plugin: &str,
        container: &str,
    ) -> Result<String, CallError> {
        let wanted = container.trim_start_matches('/');
        let found = self
            .owned(client, plugin, true)
            .await?
            .into_iter()
            .find(|c| {
                c.id.as_deref()
                    .is_some_and(|id| !wanted.is_empty() && id.starts_with(wanted))
                    || c.names
                        .iter()
                        .flatten()
                        .any(|n| n.trim_start_matches('/') == wanted)
            });
        found.and_then(|c| c.id).ok_or_else(|| {
            CallError::new(
                ErrorCode::NotFound,
                format!("no container `{container}` managed by plugin `{plugin}` on this node"),
            )
        })
    }

    /// Checks `request` against `policy`, creates the container and starts it.
    pub async fn create(
        &self,
        plugin: &str,
        policy: &DockerGrant,
        request: CreateRequest,
    ) -> Result<String, CallError> {
        let denied = |reason: String| {
            CallError::new(
                ErrorCode::Denied,
                format!("{reason} (docker policy of [plugins.{plugin}] in stack.toml)"),
            )
        };
        if !policy.allows_image(&request.image) {
            return Err(denied(format!(
                "image `{}` is not in the allowed images {:?}",
                request.image, policy.images
            )));
        }
        for port in &request.ports {
            if !policy.allows_host_port(port.host_port) {
                let range = policy
                    .host_ports
                    .map_or("none".to_owned(), |r| r.to_string());
                return Err(denied(format!(
                    "host port {} is outside the allowed range {range}",
                    port.host_port
                )));
            }
            if !matches!(port.protocol.as_str(), "tcp" | "udp") {
                return Err(CallError::new(
                    ErrorCode::InvalidInput,
                    format!("protocol `{}` must be tcp or udp", port.protocol),
                ));
            }
        }
        if request.labels.iter().any(|(k, _)| k.starts_with("hearth.")) {
            return Err(CallError::new(
                ErrorCode::InvalidInput,
                "labels starting with `hearth.` are reserved",
            ));
        }
        let client = self.client().await?;
        let count = self.owned(&client, plugin, true).await?.len();
        if count >= policy.max_containers as usize {
            return Err(denied(format!(
                "plugin already has {count} containers, the allowed maximum"
            )));
        }
        let mut labels: HashMap<String, String> = request.labels.into_iter().collect();
        labels.insert(PLUGIN_LABEL.to_owned(), plugin.to_owned());
        labels.insert(NODE_LABEL.to_owned(), self.node.clone());
        let mut exposed = HashMap::new();
        let mut bindings = HashMap::new();
        for port in &request.ports {
            let key = format!("{}/{}", port.container_port, port.protocol);
            exposed.insert(key.clone(), HashMap::new());
            bindings.insert(
                key,
                Some(vec![PortBinding {
                    host_ip: None,
                    host_port: Some(port.host_port.to_string()),
                }]),
            );
        }
        let config = Config {
            image: Some(request.image.clone()),
            env: Some(
                request
                    .env
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect(),
            ),
            cmd: (!request.command.is_empty()).then_some(request.command),
            labels: Some(labels),
            exposed_ports: Some(exposed),
            host_config: Some(HostConfig {
                port_bindings: Some(bindings),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = request.name.map(|name| CreateContainerOptions {
            name,
            platform: None,
        });
        let created = match client.create_container(options, config).await {
            Ok(created) => created,
            Err(e) => return Err(self.engine_error(e, "creating the container").await),
        };
        if let Err(e) = client.start_container::<String>(&created.id, None).await {
            let err = self.engine_error(e, "starting the container").await;
            // Do not leave a half-made container behind.
            let _ = client
                .remove_container(
                    &created.id,
                    Some(RemoveContainerOptions {
                        force: true,
                        ..Default::default()
                    }),
                )
                .await;
            return Err(err);
        }
        Ok(created.id)
    }

    /// The engine's inspect document for an owned container, as JSON.
    pub async fn inspect(&self, plugin: &str, container: &str) -> Result<String, CallError> {
        let client = self.client().await?;
        let id = self.owned_id(&client, plugin, container).await?;
        match client.inspect_container(&id, None).await {
            Ok(doc) => serde_json::to_string(&doc)
                .map_err(|e| CallError::new(ErrorCode::Failed, e.to_string())),
            Err(e) => Err(self.engine_error(e, "inspecting the container").await),
        }
    }

    /// The engine's list of owned containers, as JSON.
    pub async fn list(&self, plugin: &str, all: bool) -> Result<String, CallError> {
        let client = self.client().await?;
        let list = self.owned(&client, plugin, all).await?;
        serde_json::to_string(&list).map_err(|e| CallError::new(ErrorCode::Failed, e.to_string()))
    }

    /// Stops an owned container, killing it after `timeout_secs`.
    pub async fn stop(
        &self,
        plugin: &str,
        container: &str,
        timeout_secs: u32,
    ) -> Result<(), CallError> {
        let client = self.client().await?;
        let id = self.owned_id(&client, plugin, container).await?;
        match client
            .stop_container(
                &id,
                Some(StopContainerOptions {
                    t: i64::from(timeout_secs),
                }),
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(e) => Err(self.engine_error(e, "stopping the container").await),
        }
    }

    /// Removes an owned container.
    pub async fn remove(
        &self,
        plugin: &str,
        container: &str,
        force: bool,
    ) -> Result<(), CallError> {
        let client = self.client().await?;
        let id = self.owned_id(&client, plugin, container).await?;
        let options = RemoveContainerOptions {
            force,
            ..Default::default()
        };
        match client.remove_container(&id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.engine_error(e, "removing the container").await),
        }
    }

    /// Starts watching lifecycle events of `plugin`'s containers on this
    /// node; [`DockerEngine::next_event`] reads them.
    pub async fn watch(&self, plugin: &str) -> Result<EventWatch, CallError> {
        let client = self.client().await?;
        let mut filters = HashMap::new();
        filters.insert("type".to_owned(), vec!["container".to_owned()]);
        filters.insert(
            "label".to_owned(),
            vec![
                format!("{PLUGIN_LABEL}={plugin}"),
                format!("{NODE_LABEL}={}", self.node),
            ],
        );
        let options = bollard::system::EventsOptions::<String> {
            since: None,
            until: None,
            filters,
        };
        Ok(EventWatch {
            stream: Box::pin(client.events(Some(options))),
        })
    }

    /// The next event of `watch` as JSON text, or `None` when none came
    /// before `wait` ended.
    pub async fn next_event(
        &self,
        watch: &mut EventWatch,
        wait: impl Future<Output = ()>,
    ) -> Result<Option<String>, CallError> {
        let next = tokio::select! {
            next = watch.stream.next() => next,
            () = wait => return Ok(None),
        };
        let event = match next {
            Some(Ok(event)) => event,
            Some(Err(e)) => return Err(self.engine_error(e, "watching events").await),
            None => return Err(self.unreachable("the engine closed the event stream")),
        };
        let actor = event.actor.unwrap_or_default();
        let attributes = actor.attributes.unwrap_or_default();
        let payload = serde_json::json!({
            "action": event.action,
            "id": actor.id,
            "name": attributes.get("name"),
            "image": attributes.get("image"),
            "time": event.time,
        });
        Ok(Some(payload.to_string()))
    }

    /// The last `tail` lines of an owned container's output.
    pub async fn logs(
        &self,
        plugin: &str,
        container: &str,
        tail: u32,
    ) -> Result<Vec<String>, CallError> {
        let client = self.client().await?;
        let id = self.owned_id(&client, plugin, container).await?;
        let options = LogsOptions {
            stdout: true,
            stderr: true,
            tail: tail.min(MAX_LOG_LINES).to_string(),
            ..Default::default()
        };
        let mut stream = client.logs(&id, Some(options));
        let mut lines = Vec::new();
        while let Some(item) = stream.next().await {
            match item {
                Ok(output) => {
                    let text = String::from_utf8_lossy(&output.into_bytes()).into_owned();
                    lines.extend(text.lines().map(str::to_owned));
                }
                Err(e) => return Err(self.engine_error(e, "reading logs").await),
            }
        }
        Ok(lines)
    }
}
