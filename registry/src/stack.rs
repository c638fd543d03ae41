//! The `stack.toml` file model: the node, its limits, and which plugins to
//! load with which grants.
//!
//! Unknown keys are refused so a typo in a grant never silently grants
//! nothing (or, worse, appears to grant something).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::grants::{GrantSet, PathPattern};
use crate::path::LOCAL_NODE;
use crate::path::is_valid_segment;

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
    /// other key is refused.
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
}

impl Default for NodeSection {
    fn default() -> Self {
        NodeSection {
            name: default_node_name(),
            data_dir: None,
            socket: None,
            cache_dir: None,
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
}

/// Why a `stack.toml` was refused.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Not valid TOML, or an unknown key or bad value.
    #[error("{path} is not a valid stack file: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said, with line and column.
        source: toml::de::Error,
    },
    /// A value parsed but makes no sense.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong and how to fix it.
        message: String,
    },
}

impl StackFile {
    /// Reads and validates `path`, resolving relative paths against its
    /// directory.
    pub fn load(path: &Path) -> Result<Self, StackError> {
        let text = std::fs::read_to_string(path).map_err(|source| StackError::Read {
            path: path.to_owned(),
            source,
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

    /// Parses and validates stack text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Self, StackError> {
        let stack: StackFile = toml::from_str(text).map_err(|source| StackError::Parse {
            path: origin.to_owned(),
            source,
        })?;
        let invalid = |message: String| StackError::Invalid {
            path: origin.to_owned(),
            message,
        };
        if !is_valid_segment(&stack.node.name) {
            return Err(invalid(format!(
                "node name `{}` is not valid: use lowercase letters, digits, `-` and `_`",
                stack.node.name
            )));
        }
        if let Some(name) = stack.plugins.keys().find(|n| !is_valid_segment(n)) {
            return Err(invalid(format!(
                "plugin name `{name}` is not valid: use lowercase letters, digits, `-` and `_`"
            )));
        }
        let mut keys = BTreeMap::new();
        for (name, peer) in &stack.peers {
            if !is_valid_segment(name) || name == LOCAL_NODE || *name == stack.node.name {
                return Err(invalid(format!(
                    "peer name `{name}` is not valid: use lowercase letters, digits, `-` and `_`, other than `{LOCAL_NODE}` and this node's own name"
                )));
            }
            let Some(key) = peer.key_bytes() else {
                return Err(invalid(format!(
                    "peers.{name}.public_key must be 64 hex digits, as `host id` prints on that node"
                )));
            };
            if let Some(other) = keys.insert(key, name) {
                return Err(invalid(format!(
                    "peers `{other}` and `{name}` have the same public key; one node cannot have two names"
                )));
            }
            if peer.address.as_deref().is_some_and(|a| !a.contains(':')) {
                return Err(invalid(format!(
                    "peers.{name}.address must be `host:port`, as in `10.0.0.2:7400`"
                )));
            }
        }
        if stack.mesh.idle_timeout_ms < 100 {
            return Err(invalid(
                "mesh.idle_timeout_ms must be at least 100".to_owned(),
            ));
        }
        let limits = &stack.limits;
        if limits.call_timeout_ms == 0
            || limits.max_call_depth == 0
            || limits.max_frame_bytes < 1024
            || limits.max_output_bytes == 0
            || limits.max_instances == 0
            || limits.table_elements == 0
        {
            return Err(invalid(
                "limits must be positive and max_frame_bytes at least 1024".to_owned(),
            ));
        }
        if !(1..=MAX_MEMORY_MIB).contains(&limits.memory_mib) {
            return Err(invalid(format!(
                "limits.memory_mib must be between 1 and {MAX_MEMORY_MIB}"
            )));
        }
        for (name, entry) in &stack.plugins {
            let memory = entry.memory_mib.unwrap_or(limits.memory_mib);
            if !(1..=MAX_MEMORY_MIB).contains(&memory) {
                return Err(invalid(format!(
                    "plugin `{name}`: memory_mib must be between 1 and {MAX_MEMORY_MIB}"
                )));
            }
            let zero_timeout =
                entry.timeout_ms == Some(0) || entry.operation_timeouts.values().any(|t| *t == 0);
            if zero_timeout {
                return Err(invalid(format!(
                    "plugin `{name}`: timeouts must be positive"
                )));
            }
        }
        Ok(stack)
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
        assert!(StackFile::parse("[plugins.echo]\nmemory_mib = 0", Path::new("s")).is_err());
        assert!(StackFile::parse("[plugins.echo]\nmemory_mib = 5000", Path::new("s")).is_err());
        assert!(StackFile::parse("[plugins.echo]\ntimeout_ms = 0", Path::new("s")).is_err());
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
            "[peers.w]\npublic_key = \"abcd\"".to_owned(),
            "64 hex digits",
        );
        refused(
            format!("[peers.node]\npublic_key = \"{key}\""),
            "peer name `node`",
        );
        refused(
            format!("[peers.a]\npublic_key = \"{key}\"\n[peers.b]\npublic_key = \"{key}\""),
            "same public key",
        );
        refused(
            format!("[peers.a]\npublic_key = \"{key}\"\naddress = \"nohost\""),
            "host:port",
        );
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
        assert!(StackFile::parse("[limits]\nmax_call_depth=0", Path::new("s")).is_err());
    }
}
