//! The `stack.toml` file model: the node, its limits, and which plugins to
//! load with which grants.
//!
//! Unknown keys are refused so a typo in a grant never silently grants
//! nothing (or, worse, appears to grant something).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::grants::{GrantSet, PathPattern};

/// The whole `stack.toml`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StackFile {
    /// The node itself.
    #[serde(default)]
    pub node: NodeSection,
    /// Limits on calls and frames.
    #[serde(default)]
    pub limits: LimitsSection,
    /// The Docker engine the `docker` capability talks to.
    #[serde(default)]
    pub docker: DockerSection,
    /// Plugins to load, by name.
    #[serde(default)]
    pub plugins: BTreeMap<String, PluginEntry>,
    /// How this node talks to other nodes over QUIC.
    #[serde(default)]
    pub mesh: MeshSection,
    /// Other nodes this node knows, by the name paths address them with.
    #[serde(default)]
    pub peers: BTreeMap<String, PeerEntry>,
    /// The outbox and inbox: which broker carries this node's messages.
    #[serde(default)]
    pub messaging: MessagingSection,
    /// This node as a message broker for its peers.
    #[serde(default)]
    pub broker: BrokerSection,
    /// The HTTP gateway on loopback.
    #[serde(default)]
    pub gateway: GatewaySection,
    /// Client identities: keys, approval, sessions.
    #[serde(default)]
    pub clients: ClientsSection,
    /// The node as an MCP server for agents.
    #[serde(default)]
    pub mcp: McpSection,
}

/// `[mcp]`: which operations agents see as tools.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpSection {
    /// When set, only operations matching one of these patterns are tools
    /// (`/node/docker/*`, `/worker-1/echo/*`). The vault's and the node's
    /// administrative operations are tools only when a pattern names their
    /// namespace.
    #[serde(default)]
    pub expose: Option<Vec<PathPattern>>,
}

/// `[clients]`: programs that call this node with a key of their own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientsSection {
    /// When true, a socket client must prove a key like any other client;
    /// otherwise a same-user socket client without a key is the operator.
    #[serde(default)]
    pub require_keys_on_socket: bool,
    /// Client keys (64 hex digits) that are operators (`*`) without asking.
    #[serde(default)]
    pub operator_keys: Vec<String>,
    /// How long a new client waits for an operator's answer, in seconds.
    #[serde(default = "default_approval_timeout")]
    pub approval_timeout_s: u64,
    /// How long an HTTP session token lasts, in seconds.
    #[serde(default = "default_session_ttl")]
    pub session_ttl_s: u64,
    /// Requests waiting for an answer at once; more are refused.
    #[serde(default = "default_max_pending")]
    pub max_pending: u32,
}

impl Default for ClientsSection {
    fn default() -> Self {
        ClientsSection {
            require_keys_on_socket: false,
            operator_keys: Vec::new(),
            approval_timeout_s: default_approval_timeout(),
            session_ttl_s: default_session_ttl(),
            max_pending: default_max_pending(),
        }
    }
}

fn default_approval_timeout() -> u64 {
    300
}
fn default_session_ttl() -> u64 {
    3600
}
fn default_max_pending() -> u32 {
    64
}

/// `[gateway]`: HTTP/1.1 and HTTP/2 on loopback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySection {
    /// On or off; when absent, on outside containers and CI, off inside.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// A loopback address and port.
    #[serde(default = "default_gateway_listen")]
    pub listen: String,
    /// `GET /v1/health` without a token (for probes).
    #[serde(default)]
    pub public_health: bool,
    /// `Origin`s a browser page may call from; none by default.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Largest request body, in bytes.
    #[serde(default = "default_gateway_max_body")]
    pub max_body_bytes: u32,
}

impl Default for GatewaySection {
    fn default() -> Self {
        GatewaySection {
            enabled: None,
            listen: default_gateway_listen(),
            public_health: false,
            allowed_origins: Vec::new(),
            max_body_bytes: default_gateway_max_body(),
        }
    }
}

fn default_gateway_listen() -> String {
    "127.0.0.1:7480".to_owned()
}
fn default_gateway_max_body() -> u32 {
    1024 * 1024
}

/// `[messaging]`: how this node's outbox reaches other nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessagingSection {
    /// The peer that brokers this node's messages (a `[peers]` name). When
    /// absent, a node with `[broker] enabled = true` is its own broker and
    /// any other node cannot send.
    #[serde(default)]
    pub broker: Option<String>,
    /// Attempts after which a message the broker keeps refusing is dead.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Age after which an undelivered message is dead, in hours. Lowered by
    /// the node to stay inside its broker's dedupe window.
    #[serde(default = "default_max_age_hours")]
    pub max_age_hours: u64,
    /// First wait before a retry, in milliseconds; doubled per attempt,
    /// with jitter.
    #[serde(default = "default_retry_min_ms")]
    pub retry_min_ms: u64,
    /// Longest wait between retries, in milliseconds.
    #[serde(default = "default_retry_max_ms")]
    pub retry_max_ms: u64,
    /// Largest message body a plugin's handler receives whole, in bytes;
    /// a longer one arrives truncated and marked so.
    #[serde(default = "default_handler_max_bytes")]
    pub handler_max_bytes: u32,
}

impl Default for MessagingSection {
    fn default() -> Self {
        MessagingSection {
            broker: None,
            max_attempts: default_max_attempts(),
            max_age_hours: default_max_age_hours(),
            retry_min_ms: default_retry_min_ms(),
            retry_max_ms: default_retry_max_ms(),
            handler_max_bytes: default_handler_max_bytes(),
        }
    }
}

fn default_max_attempts() -> u32 {
    50
}
fn default_max_age_hours() -> u64 {
    23
}
fn default_retry_min_ms() -> u64 {
    100
}
fn default_retry_max_ms() -> u64 {
    30_000
}
fn default_handler_max_bytes() -> u32 {
    256 * 1024
}

/// `[broker]`: this node stores and forwards messages for its peers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerSection {
    /// Serve as a broker: accept messages from peers, dedupe, fan out.
    #[serde(default)]
    pub enabled: bool,
    /// For how long a `(sender, client_message_id)` pair is remembered, in
    /// hours; advertised to members in feature negotiation.
    #[serde(default = "default_dedupe_window_hours")]
    pub dedupe_window_hours: u64,
    /// What happens when a second connection claims a member's key.
    #[serde(default)]
    pub duplicate_connections: DuplicateConnections,
    /// Peers that may use this broker; every peer when absent.
    #[serde(default)]
    pub members: Option<Vec<String>>,
}

impl Default for BrokerSection {
    fn default() -> Self {
        BrokerSection {
            enabled: false,
            dedupe_window_hours: default_dedupe_window_hours(),
            duplicate_connections: DuplicateConnections::default(),
            members: None,
        }
    }
}

fn default_dedupe_window_hours() -> u64 {
    24
}

/// The policy for two connections with the same node identity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DuplicateConnections {
    /// The older connection is closed with a reason; the newer one serves.
    #[default]
    PreferNewest,
    /// The newer connection is refused with a reason.
    PreferOldest,
    /// Both are kept; deliveries use the newest live one.
    AllowConcurrent,
}

/// `[mesh]`: the QUIC endpoint and the features this node negotiates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeshSection {
    /// UDP address to accept peers on, e.g. `0.0.0.0:7400`. Without it the
    /// node only dials out (and serves calls on the connections it made).
    #[serde(default)]
    pub listen: Option<String>,
    /// The `host:port` other operators should dial, as `host id` prints it;
    /// the listen address (with this machine's name for `0.0.0.0`) when absent.
    #[serde(default)]
    pub advertise: Option<String>,
    /// Features a peer must support, or the connection is closed.
    #[serde(default = "default_required_features")]
    pub require_features: Vec<String>,
    /// Features used when the peer supports them.
    #[serde(default = "default_optional_features")]
    pub optional_features: Vec<String>,
    /// Features this node will not offer even though it could.
    #[serde(default)]
    pub disable_features: Vec<String>,
    /// A connection with no traffic for this long is considered dead, in
    /// milliseconds (keep-alives go out at a third of it).
    #[serde(default = "default_idle_timeout_ms")]
    pub idle_timeout_ms: u64,
}

impl Default for MeshSection {
    fn default() -> Self {
        MeshSection {
            listen: None,
            advertise: None,
            require_features: default_required_features(),
            optional_features: default_optional_features(),
            disable_features: Vec::new(),
            idle_timeout_ms: default_idle_timeout_ms(),
        }
    }
}

fn default_required_features() -> Vec<String> {
    vec!["calls".to_owned()]
}
fn default_optional_features() -> Vec<String> {
    ["events", "cancel", "deadlines"]
        .map(str::to_owned)
        .to_vec()
}
fn default_idle_timeout_ms() -> u64 {
    10_000
}

/// `[peers.<name>]`: another node, pinned by its public key.
///
/// What `host id` prints on that node is what goes here; `allow` and
/// `scopes` say what that node may do on this one, nothing by default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerEntry {
    /// Its ed25519 identity key, 64 hex digits. A node presenting any
    /// other key is refused. Required (checked when the stack is resolved,
    /// so every missing key is named at once).
    #[serde(default)]
    pub public_key: String,
    /// `host:port` to dial; without it this node waits for the peer to dial.
    #[serde(default)]
    pub address: Option<String>,
    /// Operations of this node the peer may call, as path patterns
    /// (`/node/echo/*`); none by default.
    #[serde(default)]
    pub allow: Vec<PathPattern>,
    /// Scopes the peer's calls hold here; none by default.
    #[serde(default)]
    pub scopes: Vec<String>,
}

impl PeerEntry {
    /// The public key as 32 bytes, when it is 64 hex digits.
    pub fn key_bytes(&self) -> Option<[u8; 32]> {
        let text = self.public_key.trim();
        if text.len() != 64 {
            return None;
        }
        let mut key = [0u8; 32];
        for (i, byte) in key.iter_mut().enumerate() {
            *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(key)
    }
}

/// `[docker]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerSection {
    /// The engine's Unix socket; `/var/run/docker.sock` by default.
    #[serde(default)]
    pub socket: Option<PathBuf>,
}

/// `[node]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// The node's name, as peers address it.
    #[serde(default = "default_node_name")]
    pub name: String,
    /// Where the node keeps its database, cache and socket.
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    /// The Unix socket local clients connect to.
    #[serde(default)]
    pub socket: Option<PathBuf>,
    /// Where compiled plugins are cached; `<data_dir>/cache` by default.
    /// Nodes of the same `host` build may share one.
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
    /// How long calls in flight may finish after SIGTERM, in milliseconds.
    #[serde(default = "default_drain_ms")]
    pub drain_ms: u64,
}

fn default_drain_ms() -> u64 {
    10_000
}

impl Default for NodeSection {
    fn default() -> Self {
        NodeSection {
            name: default_node_name(),
            data_dir: None,
            socket: None,
            cache_dir: None,
            drain_ms: default_drain_ms(),
        }
    }
}

fn default_node_name() -> String {
    "local".to_owned()
}

/// Largest linear memory a plugin may be given, in MiB (wasm32's 4 GiB).
pub const MAX_MEMORY_MIB: u32 = 4096;

/// `[limits]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    /// Deadline of a call that does not set its own, in milliseconds.
    #[serde(default = "default_call_timeout_ms")]
    pub call_timeout_ms: u64,
    /// How deep `env` calls may nest before failing with `resource-exhausted`.
    #[serde(default = "default_max_call_depth")]
    pub max_call_depth: u32,
    /// Largest frame accepted on the local socket, in bytes.
    #[serde(default = "default_max_frame_bytes")]
    pub max_frame_bytes: u32,
    /// Largest output an operation may return, in bytes.
    #[serde(default = "default_max_output_bytes")]
    pub max_output_bytes: u32,
    /// Linear memory one plugin instance may use, in MiB, unless the
    /// plugin's entry sets its own `memory_mib`.
    #[serde(default = "default_memory_mib")]
    pub memory_mib: u32,
    /// Plugin instances alive at once across the node (running calls,
    /// nested calls and warm instances); more fail with `resource-exhausted`.
    #[serde(default = "default_max_instances")]
    pub max_instances: u32,
    /// Elements one wasm table may hold.
    #[serde(default = "default_table_elements")]
    pub table_elements: u32,
}

impl Default for LimitsSection {
    fn default() -> Self {
        LimitsSection {
            call_timeout_ms: default_call_timeout_ms(),
            max_call_depth: default_max_call_depth(),
            max_frame_bytes: default_max_frame_bytes(),
            max_output_bytes: default_max_output_bytes(),
            memory_mib: default_memory_mib(),
            max_instances: default_max_instances(),
            table_elements: default_table_elements(),
        }
    }
}

fn default_max_output_bytes() -> u32 {
    4 * 1024 * 1024
}
fn default_memory_mib() -> u32 {
    64
}
fn default_max_instances() -> u32 {
    256
}
fn default_table_elements() -> u32 {
    20_000
}

fn default_call_timeout_ms() -> u64 {
    5_000
}
fn default_max_call_depth() -> u32 {
    8
}
fn default_max_frame_bytes() -> u32 {
    16 * 1024 * 1024
}

/// `[plugins.<name>]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginEntry {
    /// A directory holding `plugin.toml` and `<name>.wasm`. Relative paths
    /// are resolved against the directory of `stack.toml`. When absent the
    /// plugin bundled with the `host` binary of that name is used.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Load this component (bundled, or `<path>/<component>.wasm` with its
    /// `plugin.toml`) under this entry's name instead: the same code as
    /// another instance, with its own namespace, grants, limits and kv.
    #[serde(default)]
    pub component: Option<String>,
    /// What the plugin may do; nothing by default.
    #[serde(default)]
    pub grants: GrantSet,
    /// Linear memory per instance, in MiB; `limits.memory_mib` when absent.
    #[serde(default)]
    pub memory_mib: Option<u32>,
    /// Deadline of this plugin's operations, in milliseconds;
    /// `limits.call_timeout_ms` when absent. A caller may ask for less,
    /// never for more.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Per-operation deadlines in milliseconds, by operation name.
    #[serde(default)]
    pub operation_timeouts: BTreeMap<String, u64>,
    /// Instances kept warm for reuse across calls. `0` means a fresh
    /// instance per call; absent means what the plugin's manifest asks for.
    #[serde(default)]
    pub warm_instances: Option<u32>,
    /// Seconds between runs of the plugin's `[timer]` operation, instead of
    /// what its manifest asks; `0` turns the timer off.
    #[serde(default)]
    pub timer_s: Option<u64>,
    /// The plugin's own configuration, handed to it as it is.
    #[serde(default)]
    pub config: BTreeMap<String, toml::Value>,
}

/// Why a `stack.toml` could not be read as the file model. Values that
/// parse but make no sense are the resolution step's to refuse (in the
/// host), with the same shape: file, key, problem, fix.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    /// The file could not be read.
    #[error("cannot read {}: {error}; check the path given to --config", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error (not a `source`: the message already says it).
        error: std::io::Error,
    },
    /// Not valid TOML, an unknown key, or a value of the wrong type.
    #[error("{}", parse_message(.path, .line, .column, .key, .message))]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem.
        column: usize,
        /// The dotted key it concerns, when known (`plugins.echo.grant`).
        key: Option<String>,
        /// What the parser said.
        message: String,
    },
}

fn parse_message(
    path: &Path,
    line: &usize,
    column: &usize,
    key: &Option<String>,
    message: &str,
) -> String {
    let at = format!("{}:{line}:{column}", path.display());
    let key = key.as_ref().map(|k| format!(" `{k}`:")).unwrap_or_default();
    let fix = if message.starts_with("unknown field") {
        "remove the key or correct its spelling"
    } else if message.starts_with("missing field") {
        "add the key"
    } else if message.starts_with("invalid type") || message.starts_with("invalid value") {
        "give it a value of the type shown"
    } else if key.is_empty() {
        "fix the TOML syntax there"
    } else {
        "correct the value"
    };
    format!("{at}:{key} {message}; {fix} (examples/stack.toml shows every key)")
}

/// 1-based line and column of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    (line, column)
}

/// The dotted key at byte `span` of `text`: the table header above it and
/// the key on its line (or the key the span covers).
fn key_at(text: &str, span: std::ops::Range<usize>) -> Option<String> {
    let start = span.start.min(text.len());
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let line = &text[line_start..line_end];
    let header = text[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_owned());
    let key = match line.find('=') {
        Some(eq) if line_start + eq < start => line[..eq].trim().to_owned(),
        _ => text
            .get(span.clone())
            .unwrap_or_default()
            .trim()
            .trim_matches('"')
            .to_owned(),
    };
    if key.is_empty() || key.contains('\n') || key.starts_with('[') {
        return header.filter(|h| !h.is_empty());
    }
    Some(match header {
        Some(header) if !header.is_empty() => format!("{header}.{key}"),
        _ => key,
    })
}

impl StackFile {
    /// Reads and parses `path`, resolving relative paths against its
    /// directory.
    pub fn load(path: &Path) -> Result<Self, StackError> {
        let text = std::fs::read_to_string(path).map_err(|error| StackError::Read {
            path: path.to_owned(),
            error,
        })?;
        let mut stack = Self::parse(&text, path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        stack.node.data_dir.as_mut().map(resolve);
        stack.node.socket.as_mut().map(resolve);
        stack.node.cache_dir.as_mut().map(resolve);
        stack.docker.socket.as_mut().map(resolve);
        for entry in stack.plugins.values_mut() {
            entry.path.as_mut().map(resolve);
        }
        Ok(stack)
    }

    /// Parses stack text into the file model; `origin` names it in
    /// errors. The host's resolution step validates the values.
    pub fn parse(text: &str, origin: &Path) -> Result<Self, StackError> {
        toml::from_str(text).map_err(|err| {
            let span = err.span().unwrap_or(0..0);
            let (line, column) = line_column(text, span.start);
            StackError::Parse {
                path: origin.to_owned(),
                line,
                column,
                key: key_at(text, span),
                message: err.message().trim().to_owned(),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_means_defaults() {
        let stack = StackFile::parse("", Path::new("stack.toml")).unwrap();
        assert_eq!(stack, StackFile::default());
        assert_eq!(stack.limits.max_call_depth, 8);
    }

    #[test]
    fn parses_plugins_and_grants() {
        let stack = StackFile::parse(
            r#"
            [plugins.echo]
            grants.kv = true
            [plugins.relay]
            grants.env = ["/node/echo/*"]
            "#,
            Path::new("s.toml"),
        )
        .unwrap();
        assert!(stack.plugins["echo"].grants.kv);
        assert!(
            stack.plugins["relay"]
                .grants
                .allows_env(&"/node/echo/ping".parse().unwrap())
        );
        assert!(!stack.plugins["relay"].grants.kv);
    }

    #[test]
    fn per_plugin_limits_parse_and_are_checked() {
        let stack = StackFile::parse(
            r#"
            [plugins.echo]
            memory_mib = 16
            timeout_ms = 200
            warm_instances = 4
            operation_timeouts = { ping = 50 }
            "#,
            Path::new("s"),
        )
        .unwrap();
        let echo = &stack.plugins["echo"];
        assert_eq!(echo.memory_mib, Some(16));
        assert_eq!(echo.operation_timeouts["ping"], 50);
        assert_eq!(echo.warm_instances, Some(4));
        // Out-of-range values parse; the host's resolution refuses them
        // (see `host/src/config/resolve.rs`).
    }

    #[test]
    fn peers_parse_and_bad_ones_are_refused() {
        let key = "ab".repeat(32);
        let stack = StackFile::parse(
            &format!(
                r#"
                [node]
                name = "head"
                [mesh]
                listen = "127.0.0.1:7400"
                [peers.worker-1]
                public_key = "{key}"
                address = "127.0.0.1:7401"
                allow = ["/node/echo/*"]
                scopes = ["host:read"]
                "#
            ),
            Path::new("s"),
        )
        .unwrap();
        let peer = &stack.peers["worker-1"];
        assert_eq!(peer.key_bytes(), Some([0xab; 32]));
        assert!(peer.allow[0].matches(&"/node/echo/ping".parse().unwrap()));
        assert_eq!(stack.mesh.require_features, ["calls"]);

        let refused = |text: String, fragment: &str| {
            let err = StackFile::parse(&text, Path::new("s"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(fragment), "{err}");
        };
        refused(
            format!("[peers.a]\npublic_key = \"{key}\"\nallow = [\"echo\"]"),
            "grant pattern",
        );
        refused(
            format!("[peers.a]\npublic_key = \"{key}\"\nscope = []"),
            "scope",
        );
    }

    #[test]
    fn typos_are_refused_not_ignored() {
        let err =
            StackFile::parse("[plugins.echo]\ngrant.kv = true", Path::new("s.toml")).unwrap_err();
        assert!(err.to_string().contains("grant"), "{err}");
        assert!(StackFile::parse("[plugins.echo]\ngrants.env=['nope']", Path::new("s")).is_err());
        let err = StackFile::parse("[node]\nname = 5", Path::new("s.toml")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "s.toml:2:8: `node.name`: invalid type: integer `5`, expected a string; give it a value of the type shown (examples/stack.toml shows every key)"
        );
    }
}
