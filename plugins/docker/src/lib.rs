//! `docker`: containers as operations.
//!
//! The host enforces the operator's policy (allowed images, host ports,
//! container count) and keeps each plugin to its own containers; this
//! plugin shapes requests and answers.

use std::collections::BTreeMap;

use hearth_sdk::docker::{self, CreateRequest, PortMapping};
use hearth_sdk::prelude::*;
use serde_json::Value;

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Port {
    /// Port inside the container.
    container: u16,
    /// Port on the host.
    host: u16,
    /// `tcp` (default) or `udp`.
    #[serde(default = "tcp")]
    protocol: String,
}

fn tcp() -> String {
    "tcp".to_owned()
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct CreateInput {
    /// Image reference, e.g. `nginx:1.27`.
    image: String,
    /// Container name.
    #[serde(default)]
    name: Option<String>,
    /// Environment variables.
    #[serde(default)]
    env: BTreeMap<String, String>,
    /// Ports to publish.
    #[serde(default)]
    ports: Vec<Port>,
    /// Command; the image's default when empty.
    #[serde(default)]
    command: Vec<String>,
    /// Labels (`hearth.*` is reserved).
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(Serialize, JsonSchema)]
struct Created {
    /// The container id.
    id: String,
}

fn create(_cx: &Context, input: CreateInput) -> Result<Created, CallError> {
    let request = CreateRequest {
        image: input.image,
        name: input.name,
        env: input.env.into_iter().collect(),
        ports: input
            .ports
            .into_iter()
            .map(|p| PortMapping {
                container_port: p.container,
                host_port: p.host,
                protocol: p.protocol,
            })
            .collect(),
        command: input.command,
        labels: input.labels.into_iter().collect(),
    };
    Ok(Created {
        id: docker::create(&request)?,
    })
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Target {
    /// Container id, id prefix or name.
    container: String,
}

/// A container as the operations report it.
#[derive(Serialize, JsonSchema)]
struct Container {
    id: String,
    name: String,
    image: String,
    /// `created`, `running`, `exited`, …
    state: String,
    /// Published ports as `host->container/protocol`.
    ports: Vec<String>,
    labels: BTreeMap<String, String>,
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

fn labels(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), text(v))).collect())
        .unwrap_or_default()
}

fn inspect(_cx: &Context, input: Target) -> Result<Container, CallError> {
    let doc = docker::inspect(&input.container)?;
    let mut ports = Vec::new();
    if let Some(bindings) = doc["HostConfig"]["PortBindings"].as_object() {
        for (container_port, hosts) in bindings {
            for host in hosts.as_array().into_iter().flatten() {
                ports.push(format!("{}->{container_port}", text(&host["HostPort"])));
            }
        }
    }
    ports.sort();
    Ok(Container {
        id: text(&doc["Id"]),
        name: text(&doc["Name"]).trim_start_matches('/').to_owned(),
        image: text(&doc["Config"]["Image"]),
        state: text(&doc["State"]["Status"]),
        ports,
        labels: labels(&doc["Config"]["Labels"]),
    })
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ListInput {
    /// Include stopped containers.
    #[serde(default)]
    all: bool,
}

fn list(_cx: &Context, input: ListInput) -> Result<Vec<Container>, CallError> {
    let list = docker::list(input.all)?;
    let mut out: Vec<Container> = list
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let mut ports: Vec<String> = c["Ports"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["PublicPort"].is_u64())
                .map(|p| {
                    format!(
                        "{}->{}/{}",
                        p["PublicPort"],
                        p["PrivatePort"],
                        text(&p["Type"])
                    )
                })
                .collect();
            ports.sort();
            ports.dedup();
            Container {
                id: text(&c["Id"]),
                name: c["Names"][0]
                    .as_str()
                    .unwrap_or_default()
                    .trim_start_matches('/')
                    .to_owned(),
                image: text(&c["Image"]),
                state: text(&c["State"]),
                ports,
                labels: labels(&c["Labels"]),
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct StopInput {
    /// Container id, id prefix or name.
    container: String,
    /// Seconds to wait before killing it.
    #[serde(default = "ten")]
    timeout_secs: u32,
}

fn ten() -> u32 {
    10
}

#[derive(Serialize, JsonSchema)]
struct Done {
    ok: bool,
}

fn stop(_cx: &Context, input: StopInput) -> Result<Done, CallError> {
    docker::stop(&input.container, input.timeout_secs)?;
    Ok(Done { ok: true })
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RemoveInput {
    /// Container id, id prefix or name.
    container: String,
    /// Remove it even when running.
    #[serde(default)]
    force: bool,
}

fn remove(_cx: &Context, input: RemoveInput) -> Result<Done, CallError> {
    docker::remove(&input.container, input.force)?;
    Ok(Done { ok: true })
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct LogsInput {
    /// Container id, id prefix or name.
    container: String,
    /// Lines from the end.
    #[serde(default = "hundred")]
    tail: u32,
}

fn hundred() -> u32 {
    100
}

#[derive(Serialize, JsonSchema)]
struct Logs {
    lines: Vec<String>,
}

fn logs(_cx: &Context, input: LogsInput) -> Result<Logs, CallError> {
    Ok(Logs {
        lines: docker::logs(&input.container, input.tail)?,
    })
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Empty {}

/// One lifecycle event of a container this plugin manages.
#[derive(Serialize, Deserialize, JsonSchema)]
struct ContainerEvent {
    /// What happened: `create`, `start`, `die`, `stop`, `destroy`, …
    action: Option<String>,
    /// The container's id.
    id: Option<String>,
    /// Its name.
    name: Option<String>,
    /// Its image.
    image: Option<String>,
    /// When, in seconds since the epoch.
    time: Option<i64>,
}

/// Streams each lifecycle event of the containers this node's docker
/// plugin manages, until the subscriber leaves.
fn events(_cx: &Context, _input: Empty) -> Result<Done, CallError> {
    while events::subscribed() {
        let Some(event) = docker::next_event(1000)? else {
            continue;
        };
        let event: ContainerEvent = serde_json::from_value(event)
            .map_err(|e| CallError::failed(format!("unexpected engine event: {e}")))?;
        match events::emit(&event) {
            Ok(()) => {}
            // The subscriber left between the check and the send.
            Err(e) if e.code == ErrorCode::Unavailable => break,
            Err(e) => return Err(e),
        }
    }
    Ok(Done { ok: true })
}

struct Docker;

impl Plugin for Docker {
    fn operations(ops: &mut Operations) {
        ops.mutation(
            "create",
            "Create and start a container (image, name, env, ports, command, labels).",
            create,
        )
        .scopes(&["docker:write"]);
        ops.query("inspect", "Details of one container.", inspect)
            .scopes(&["docker:read"]);
        ops.query(
            "list",
            "Containers this node manages; `all` includes stopped ones.",
            list,
        )
        .scopes(&["docker:read"]);
        ops.mutation(
            "stop",
            "Stop a container, killing it after a timeout.",
            stop,
        )
        .scopes(&["docker:write"]);
        ops.mutation(
            "remove",
            "Remove a container; `force` removes a running one.",
            remove,
        )
        .scopes(&["docker:write"]);
        ops.query("logs", "The last lines of a container's output.", logs)
            .scopes(&["docker:read"]);
        ops.subscription(
            "events",
            "Stream container lifecycle events (JSON lines) until the caller disconnects.",
            events,
        )
        .emits::<ContainerEvent>()
        .scopes(&["docker:read"]);
    }
}

hearth_sdk::export_plugin!(Docker);
