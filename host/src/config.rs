//! Turns a `stack.toml` (or the embedded default) into a [`NodeConfig`]:
//! resolved directories, socket path, limits, and each plugin's manifest,
//! component bytes and grants.
//!
//! Precedence for the data directory, socket and cache: the stack file,
//! then `$HEARTH_DATA_DIR` / `$HEARTH_SOCKET` / `$HEARTH_CACHE_DIR`, then
//! `$XDG_DATA_HOME/hearth`, then `~/.local/share/hearth` (the socket in its
//! `run/`, the cache in its `cache/`).

use std::borrow::Cow;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::mesh::features::Features;
use crate::mesh::{MeshConfig, PeerConfig};
use crate::runtime::{EngineLimits, PluginSettings};
use hearth_registry::{
    GrantSet, LimitsSection, ManifestError, PluginManifest, StackError, StackFile,
};

/// The configuration used when `host serve` gets no `--config`.
pub const DEFAULT_STACK: &str = include_str!("../../examples/stack.toml");

/// A plugin compiled into the `host` binary from `plugins/`.
pub struct BundledPlugin {
    /// Directory name under `plugins/`.
    pub name: &'static str,
    /// Its `plugin.toml`.
    pub manifest: &'static str,
    /// The component, built for wasm32-wasip2.
    pub component: &'static [u8],
}

/// Every plugin bundled at build time.
pub static BUNDLED: &[BundledPlugin] = include!(concat!(env!("OUT_DIR"), "/bundled_plugins.rs"));

/// Where this build compiled the plugins workspace (`.wasm` files of every
/// member, including test-only plugins that are not bundled). For tests and
/// development tools; a deployed node does not need it.
pub const BUILT_PLUGINS_DIR: &str = env!("HEARTH_BUILT_PLUGINS_DIR");

/// Why the configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The stack file is unreadable or invalid.
    #[error(transparent)]
    Stack(#[from] StackError),
    /// A plugin's files are missing or invalid.
    #[error("plugin `{plugin}`: {message}")]
    Plugin {
        /// The plugin's name in `stack.toml`.
        plugin: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// `[mesh]` or `[peers]` is unusable.
    #[error("{0}")]
    Mesh(String),
    /// No home directory to put data in.
    #[error("cannot find a data directory: set HEARTH_DATA_DIR or `node.data_dir` in stack.toml")]
    NoDataDir,
}

/// One plugin to load.
pub struct PluginSource {
    /// Name from `stack.toml`.
    pub name: String,
    /// Its parsed `plugin.toml`.
    pub manifest: PluginManifest,
    /// The component bytes.
    pub component: Cow<'static, [u8]>,
    /// What the operator granted.
    pub grants: GrantSet,
    /// How it runs: memory, deadlines, warm instances.
    pub settings: PluginSettings,
    /// `bundled` or the directory it came from.
    pub origin: String,
}

/// Warm instances kept for a plugin whose manifest asks for reuse and
/// whose `stack.toml` entry does not say how many.
pub const DEFAULT_WARM_INSTANCES: u32 = 8;

/// Everything `host serve` needs, resolved.
pub struct NodeConfig {
    /// The node's name.
    pub name: String,
    /// Data directory (database, cache, socket).
    pub data_dir: PathBuf,
    /// Unix socket path.
    pub socket: PathBuf,
    /// Precompiled-component cache.
    pub cache_dir: PathBuf,
    /// The Docker engine's socket (`/var/run/docker.sock` when `None`).
    pub docker_socket: Option<PathBuf>,
    /// Limits on calls and frames.
    pub limits: LimitsSection,
    /// Plugins to load, in name order.
    pub plugins: Vec<PluginSource>,
    /// The QUIC endpoint and the peers.
    pub mesh: MeshConfig,
    /// The stack file, or `None` for the embedded default.
    pub origin: Option<PathBuf>,
}

impl NodeConfig {
    /// Loads `path`, or the embedded default when `None`.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let stack = match path {
            Some(path) => StackFile::load(path)?,
            None => StackFile::parse(DEFAULT_STACK, Path::new("<embedded default stack.toml>"))?,
        };
        Self::from_stack(stack, path.map(Path::to_owned))
    }

    /// Resolves a parsed stack file.
    pub fn from_stack(stack: StackFile, origin: Option<PathBuf>) -> Result<Self, ConfigError> {
        let mesh = mesh_config(&stack)?;
        let data_dir = match stack.node.data_dir {
            Some(dir) => dir,
            None => default_data_dir().ok_or(ConfigError::NoDataDir)?,
        };
        let socket = stack
            .node
            .socket
            .or_else(|| std::env::var_os("HEARTH_SOCKET").map(PathBuf::from))
            .unwrap_or_else(|| data_dir.join("run").join("host.sock"));
        let cache_dir = stack
            .node
            .cache_dir
            .or_else(|| {
                std::env::var_os("HEARTH_CACHE_DIR")
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from)
            })
            .unwrap_or_else(|| data_dir.join("cache"));
        let mut plugins = Vec::new();
        for (name, entry) in stack.plugins {
            let source = match entry.path {
                Some(dir) => load_from_dir(&name, &dir)?,
                None => load_bundled(&name)?,
            };
            let limits = &stack.limits;
            let warm_instances =
                entry
                    .warm_instances
                    .unwrap_or(if source.manifest.runtime.reuse_instances {
                        DEFAULT_WARM_INSTANCES
                    } else {
                        0
                    });
            let settings = PluginSettings {
                memory_bytes: (entry.memory_mib.unwrap_or(limits.memory_mib) as usize) << 20,
                table_elements: limits.table_elements as usize,
                timeout: Duration::from_millis(entry.timeout_ms.unwrap_or(limits.call_timeout_ms)),
                operation_timeouts: entry
                    .operation_timeouts
                    .iter()
                    .map(|(op, ms)| (op.clone(), Duration::from_millis(*ms)))
                    .collect(),
                warm_instances,
                max_output_bytes: limits.max_output_bytes as usize,
            };
            plugins.push(PluginSource {
                grants: entry.grants,
                settings,
                ..source
            });
        }
        Ok(NodeConfig {
            name: stack.node.name,
            data_dir,
            socket,
            cache_dir,
            docker_socket: stack.docker.socket,
            limits: stack.limits,
            plugins,
            mesh,
            origin,
        })
    }
}

/// Resolves `[mesh]` and `[peers]`: the listen address, feature names
/// this build knows, and each peer's pinned key.
fn mesh_config(stack: &StackFile) -> Result<MeshConfig, ConfigError> {
    let section = &stack.mesh;
    let listen = section
        .listen
        .as_deref()
        .map(|text| {
            text.parse().map_err(|_| {
                ConfigError::Mesh(format!(
                    "mesh.listen `{text}` is not an IP address and port, as in `0.0.0.0:7400`"
                ))
            })
        })
        .transpose()?;
    let features = Features::configured(
        &section.require_features,
        &section.optional_features,
        &section.disable_features,
    )
    .map_err(|e| ConfigError::Mesh(e.to_string()))?;
    let peers = stack
        .peers
        .iter()
        .map(|(name, entry)| {
            // Checked when the stack file was parsed.
            let key = entry.key_bytes().ok_or_else(|| {
                ConfigError::Mesh(format!("peers.{name}.public_key must be 64 hex digits"))
            })?;
            Ok(PeerConfig {
                name: name.clone(),
                key,
                address: entry.address.clone(),
                allow: entry.allow.clone(),
                scopes: entry.scopes.clone(),
            })
        })
        .collect::<Result<_, ConfigError>>()?;
    Ok(MeshConfig {
        listen,
        advertise: section.advertise.clone(),
        features,
        idle_timeout: Duration::from_millis(section.idle_timeout_ms),
        peers,
    })
}

/// Replaced by the stack entry's settings in [`NodeConfig::from_stack`].
fn placeholder_settings() -> PluginSettings {
    PluginSettings {
        memory_bytes: 0,
        table_elements: 0,
        timeout: Duration::ZERO,
        operation_timeouts: Default::default(),
        warm_instances: 0,
        max_output_bytes: 0,
    }
}

impl NodeConfig {
    /// The vault file: `<data_dir>/vault.json`.
    pub fn vault_file(&self) -> PathBuf {
        self.data_dir.join("vault.json")
    }

    /// The engine's pool sizes: `limits.max_instances`, and room for the
    /// largest plugin memory.
    pub fn engine_limits(&self) -> EngineLimits {
        let largest = self.plugins.iter().map(|p| p.settings.memory_bytes).max();
        EngineLimits {
            max_instances: self.limits.max_instances,
            max_memory_bytes: largest.unwrap_or((self.limits.memory_mib as usize) << 20),
            max_table_elements: self.limits.table_elements as usize,
        }
    }
}

fn plugin_error(plugin: &str, message: String) -> ConfigError {
    ConfigError::Plugin {
        plugin: plugin.to_owned(),
        message,
    }
}

fn check_manifest(
    plugin: &str,
    manifest: Result<PluginManifest, ManifestError>,
) -> Result<PluginManifest, ConfigError> {
    let manifest = manifest.map_err(|e| plugin_error(plugin, e.to_string()))?;
    if manifest.name != plugin {
        return Err(plugin_error(
            plugin,
            format!(
                "its plugin.toml names it `{}`; use that name in [plugins.{}] of stack.toml",
                manifest.name, manifest.name
            ),
        ));
    }
    Ok(manifest)
}

fn load_bundled(name: &str) -> Result<PluginSource, ConfigError> {
    let Some(bundled) = BUNDLED.iter().find(|b| b.name == name) else {
        let known: Vec<&str> = BUNDLED.iter().map(|b| b.name).collect();
        return Err(plugin_error(
            name,
            format!(
                "no plugin of that name is bundled with this host (bundled: {}); set `path` to its directory",
                known.join(", ")
            ),
        ));
    };
    Ok(PluginSource {
        name: name.to_owned(),
        manifest: check_manifest(name, PluginManifest::parse(bundled.manifest))?,
        component: Cow::Borrowed(bundled.component),
        grants: GrantSet::default(),
        settings: placeholder_settings(),
        origin: "bundled".to_owned(),
    })
}

/// Loads `<dir>/plugin.toml` and `<dir>/<name>.wasm`.
fn load_from_dir(name: &str, dir: &Path) -> Result<PluginSource, ConfigError> {
    let read = |file: &Path| {
        std::fs::read(file)
            .map_err(|e| plugin_error(name, format!("cannot read {}: {e}", file.display())))
    };
    let manifest_text = read(&dir.join("plugin.toml"))?;
    let manifest_text = String::from_utf8(manifest_text)
        .map_err(|_| plugin_error(name, "plugin.toml is not UTF-8".to_owned()))?;
    let manifest = check_manifest(name, PluginManifest::parse(&manifest_text))?;
    let component = read(&dir.join(format!("{name}.wasm")))?;
    Ok(PluginSource {
        name: name.to_owned(),
        manifest,
        component: Cow::Owned(component),
        grants: GrantSet::default(),
        settings: placeholder_settings(),
        origin: dir.display().to_string(),
    })
}

/// `$HEARTH_DATA_DIR`, else `$XDG_DATA_HOME/hearth`, else
/// `~/.local/share/hearth`.
pub fn default_data_dir() -> Option<PathBuf> {
    let from_env = |var: &str| {
        std::env::var_os(var)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    from_env("HEARTH_DATA_DIR")
        .or_else(|| from_env("XDG_DATA_HOME").map(|d| d.join("hearth")))
        .or_else(|| from_env("HOME").map(|h| h.join(".local/share/hearth")))
}

/// The socket a client uses when given none: `$HEARTH_SOCKET`, else the
/// default data directory's `run/host.sock`.
pub fn default_socket() -> Option<PathBuf> {
    std::env::var_os("HEARTH_SOCKET")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| default_data_dir().map(|d| d.join("run").join("host.sock")))
}

/// Creates `dir` (and parents) and makes it private to this user (0700).
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_stack_loads_the_bundled_plugins() {
        let stack = StackFile::parse(DEFAULT_STACK, Path::new("default")).unwrap();
        let config = NodeConfig::from_stack(stack, None).unwrap();
        let names: Vec<&str> = config.plugins.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["docker", "echo", "relay", "signer"]);
        assert!(config.plugins[0].grants.docker.is_some());
        assert!(config.plugins[1].grants.kv);
        assert!(!config.plugins[2].grants.kv);
    }

    #[test]
    fn mesh_settings_are_resolved_and_bad_ones_named() {
        let key = "ab".repeat(32);
        let load = |text: String| {
            NodeConfig::from_stack(StackFile::parse(&text, Path::new("s")).unwrap(), None)
        };
        let config = load(format!(
            "[mesh]\nlisten = \"127.0.0.1:7400\"\nidle_timeout_ms = 3000\n[peers.w]\npublic_key = \"{key}\"\nallow = [\"/node/echo/*\"]"
        ))
        .unwrap();
        assert_eq!(config.mesh.listen, Some("127.0.0.1:7400".parse().unwrap()));
        assert_eq!(config.mesh.peers[0].key, [0xab; 32]);
        assert_eq!(config.mesh.idle_timeout, Duration::from_secs(3));
        assert!(config.mesh.features.supported.contains("events"));

        for (text, fragment) in [
            (
                "[mesh]\nlisten = \"localhost:7400\"",
                "not an IP address and port",
            ),
            (
                "[mesh]\nrequire_features = [\"teleport\"]",
                "unknown feature `teleport`",
            ),
            (
                "[mesh]\nrequire_features = [\"events\"]\ndisable_features = [\"events\"]",
                "both disabled and required",
            ),
        ] {
            let err = load(text.to_owned()).err().unwrap().to_string();
            assert!(err.contains(fragment), "{text}: {err}");
        }
    }

    #[test]
    fn unknown_bundled_plugins_are_named() {
        let stack = StackFile::parse("[plugins.nope]", Path::new("s")).unwrap();
        let err = NodeConfig::from_stack(stack, None)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("bundled: docker, echo, relay, signer"),
            "{err}"
        );
    }
}
