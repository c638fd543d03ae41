//! A plugin's `plugin.toml`: who it is and what it asks for.
//!
//! The manifest *requests*; `stack.toml` *grants*. Operations come from the
//! component itself (`handler.specs`); a manifest may still list them
//! (`operations = [...]`), and the host then loads the plugin only when its
//! exports match, so an operator can review what it offers without running
//! it. A plugin whose operations depend on its configuration says
//! `dynamic = true` and lists none.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::grants::PathPattern;
use crate::path::is_valid_segment;

/// The parsed `plugin.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginManifest {
    /// Plugin name, a valid path segment. Required.
    #[serde(default)]
    pub name: String,
    /// Semantic version of the plugin. Required.
    #[serde(default)]
    pub version: String,
    /// One line for `host plugins`.
    #[serde(default)]
    pub description: String,
    /// Namespace its operations live under; defaults to `name`.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Names of the operations it exports, when the manifest pins them;
    /// empty means "whatever the component lists".
    #[serde(default)]
    pub operations: Vec<String>,
    /// Its operations are discovered at load, from its configuration (and
    /// granted HTTP), and may change while it runs.
    #[serde(default)]
    pub dynamic: bool,
    /// Capabilities it asks the operator for.
    #[serde(default)]
    pub capabilities: RequestedCapabilities,
    /// How it wants to be run.
    #[serde(default)]
    pub runtime: RuntimePreferences,
    /// An operation the node runs by itself, at start and periodically.
    #[serde(default)]
    pub timer: Option<TimerRequest>,
}

/// How a plugin asks to be run; the operator's `stack.toml` has the last word.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimePreferences {
    /// Reuse instances across calls (state in globals survives between
    /// calls). Only for plugins written to expect it; a fresh instance per
    /// call is the default.
    #[serde(default)]
    pub reuse_instances: bool,
}

/// Capabilities a plugin asks for; nothing is granted by asking.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestedCapabilities {
    /// Wants a key-value namespace.
    #[serde(default)]
    pub kv: bool,
    /// Operations it wants to call through `env`.
    #[serde(default)]
    pub env: Vec<PathPattern>,
    /// Vault path prefixes it wants to use.
    #[serde(default)]
    pub vault: Vec<crate::grants::VaultPrefix>,
    /// Wants the Docker engine (the operator sets the policy).
    #[serde(default)]
    pub docker: bool,
    /// Wants to send HTTP requests (the operator names the origins).
    #[serde(default)]
    pub http: bool,
    /// Wants the host to run processes (the operator names each command).
    #[serde(default)]
    pub process: bool,
    /// Wants a directory of its own (the operator names it).
    #[serde(default)]
    pub files: bool,
    /// Handles inbox messages with one of its operations.
    #[serde(default)]
    pub messages: Option<MessagesRequest>,
}

/// `[timer]`: an operation of the plugin the node calls by itself, once
/// when the node starts and then every `every_s` seconds (renewals,
/// clean-ups, making sure a managed process runs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimerRequest {
    /// The operation (a mutation of this plugin, taking `{}`).
    pub operation: String,
    /// Seconds between runs; the operator may change it (`timer_s`).
    pub every_s: u64,
}

/// `[capabilities.messages]`: the operation run once per inbox message, and
/// which messages the plugin would like (the operator grants them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessagesRequest {
    /// The operation (a mutation of this plugin) run for each message.
    pub handler: String,
    /// Topics it would handle.
    #[serde(default)]
    pub topics: Vec<String>,
    /// Whether it would handle direct messages.
    #[serde(default)]
    pub direct: bool,
}

/// Why a `plugin.toml` was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Not valid TOML, an unknown key, or a value of the wrong type.
    #[error("line {line}, column {column}: {message}; {fix}")]
    Parse {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What the parser said.
        message: String,
        /// How to fix it.
        fix: &'static str,
    },
    /// Required keys are absent.
    #[error("missing {}; add {} (as in plugins/echo/plugin.toml)", list(.0), if .0.len() == 1 { "it" } else { "them" })]
    Missing(Vec<&'static str>),
    /// The name or namespace is not a valid path segment.
    #[error(
        "`{field}`: plugin {field} `{value}` is not valid: use lowercase letters, digits, `-` and `_`"
    )]
    BadName {
        /// `name` or `namespace`.
        field: &'static str,
        /// The value given.
        value: String,
    },
    /// An operation name is invalid or listed twice.
    #[error(
        "`operations`: operation `{0}` is invalid or listed twice; list each once, in lowercase letters, digits, `-` and `_`"
    )]
    BadOperation(String),
    /// A dynamic plugin cannot pin its operations.
    #[error(
        "`operations`: a plugin with `dynamic = true` discovers its operations at load; remove the list"
    )]
    DynamicWithOperations,
    /// `[timer]` names no valid operation or runs every 0 seconds.
    #[error(
        "`timer`: write `operation = \"<one of its operations>\"` and `every_s` above 0, as in `[timer] operation = \"maintain\" every_s = 3600`"
    )]
    BadTimer,
    /// The exported specs differ from the manifest's list.
    #[error(
        "plugin `{plugin}` exports operations {exported:?} but its plugin.toml lists {listed:?}; make them agree"
    )]
    SpecMismatch {
        /// The plugin name.
        plugin: String,
        /// What the component exports.
        exported: Vec<String>,
        /// What the manifest lists.
        listed: Vec<String>,
    },
}

fn list(keys: &[&str]) -> String {
    keys.iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(" and ")
}

impl PluginManifest {
    /// Parses and validates `plugin.toml` text.
    pub fn parse(text: &str) -> Result<Self, ManifestError> {
        let manifest: PluginManifest = toml::from_str(text).map_err(|err| {
            let offset = err.span().map_or(0, |s| s.start).min(text.len());
            let before = &text[..offset];
            let message = err.message().trim().to_owned();
            let fix = if message.starts_with("unknown field") {
                "remove the key or correct its spelling"
            } else if message.starts_with("invalid") {
                "give it a value of the type shown"
            } else {
                "fix the TOML syntax there"
            };
            ManifestError::Parse {
                line: before.matches('\n').count() + 1,
                column: before
                    .rfind('\n')
                    .map_or(before.len(), |nl| before.len() - nl - 1)
                    + 1,
                message,
                fix,
            }
        })?;
        let missing: Vec<&'static str> = [("name", &manifest.name), ("version", &manifest.version)]
            .into_iter()
            .filter(|(_, value)| value.is_empty())
            .map(|(key, _)| key)
            .collect();
        if !missing.is_empty() {
            return Err(ManifestError::Missing(missing));
        }
        if !is_valid_segment(&manifest.name) {
            return Err(ManifestError::BadName {
                field: "name",
                value: manifest.name,
            });
        }
        if let Some(ns) = &manifest.namespace
            && !is_valid_segment(ns)
        {
            return Err(ManifestError::BadName {
                field: "namespace",
                value: ns.clone(),
            });
        }
        if manifest.dynamic && !manifest.operations.is_empty() {
            return Err(ManifestError::DynamicWithOperations);
        }
        if let Some(timer) = &manifest.timer
            && (!is_valid_segment(&timer.operation) || timer.every_s == 0)
        {
            return Err(ManifestError::BadTimer);
        }
        let mut seen = BTreeSet::new();
        for op in &manifest.operations {
            if !is_valid_segment(op) || !seen.insert(op.as_str()) {
                return Err(ManifestError::BadOperation(op.clone()));
            }
        }
        Ok(manifest)
    }

    /// The namespace operations are registered under.
    pub fn namespace(&self) -> &str {
        self.namespace.as_deref().unwrap_or(&self.name)
    }

    /// Checks that the component exports exactly the listed operations,
    /// when the manifest lists them.
    pub fn check_exports<'a>(
        &self,
        exported: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), ManifestError> {
        if self.operations.is_empty() {
            return Ok(());
        }
        let exported: BTreeSet<&str> = exported.into_iter().collect();
        let listed: BTreeSet<&str> = self.operations.iter().map(String::as_str).collect();
        if exported != listed {
            return Err(ManifestError::SpecMismatch {
                plugin: self.name.clone(),
                exported: exported.into_iter().map(str::to_owned).collect(),
                listed: listed.into_iter().map(str::to_owned).collect(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ECHO: &str = r#"
        name = "echo"
        version = "0.1.0"
        operations = ["ping", "put"]
        [capabilities]
        kv = true
    "#;

    #[test]
    fn parses_a_manifest() {
        let m = PluginManifest::parse(ECHO).unwrap();
        assert_eq!(m.namespace(), "echo");
        assert!(m.capabilities.kv);
        m.check_exports(["put", "ping"]).unwrap();
        assert!(m.check_exports(["ping"]).is_err());
        let unlisted = PluginManifest::parse("name='a'\nversion='1'").unwrap();
        unlisted.check_exports(["anything"]).unwrap();
        assert!(
            PluginManifest::parse("name='a'\nversion='1'\ndynamic=true\noperations=['x']").is_err()
        );
    }

    #[test]
    fn refuses_unknown_fields_bad_names_and_duplicates() {
        assert!(PluginManifest::parse("name='a'\nversion='1'\nbogus=1").is_err());
        assert!(PluginManifest::parse("name='A'\nversion='1'").is_err());
        assert!(PluginManifest::parse("name='a'\nversion='1'\noperations=['x','x']").is_err());
    }

    #[test]
    fn every_missing_key_is_named() {
        let err = PluginManifest::parse("description = 'x'").unwrap_err();
        assert_eq!(
            err.to_string(),
            "missing `name` and `version`; add them (as in plugins/echo/plugin.toml)"
        );
    }
}
