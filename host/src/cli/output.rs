//! How the CLI prints responses, listings and errors, as text or `--json`.
//!
//! Listings print from the native operations' public output types; with
//! `--json` the node's answer is printed as it came.

use hearth_registry::ResponseEnvelope;
use serde_json::Value;

use crate::client::ClientError;
use crate::ops::native::host::{IdentityInfo, OpEntry, PeerList, PluginEntry, VersionInfo};
use crate::ops::native::vault::VaultStatusInfo;
use crate::ops::peers::PeerState;

/// Prints a line to stdout; a closed pipe (`host ops | head`) is not an error.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

/// Output only, or with `--json` the whole envelope.
pub fn print_response(response: &ResponseEnvelope, json: bool) {
    if json {
        let envelope = serde_json::to_value(response).unwrap_or(Value::Null);
        out!("{}", pretty(&envelope));
    } else {
        out!("{}", pretty(&response.output));
    }
}

/// A typed error: to stderr as text, or to stdout as JSON with `--json`.
pub fn print_error(err: &ClientError, json: bool) {
    match (err.call_error(), json) {
        (Some(call), true) => {
            let body =
                serde_json::json!({ "error": { "code": call.code, "message": call.message } });
            out!("{}", pretty(&body));
        }
        (Some(call), false) => eprintln!("error[{}]: {}", call.code, call.message),
        (None, _) => eprintln!("error: {err}"),
    }
}

/// `host ops`: one block per operation, its input and output fields one
/// per line (name, type, required, description).
pub fn print_ops(ops: &[OpEntry]) {
    for op in ops {
        out!("{}  ({}, {})", op.path, op.kind, op.owner);
        out!("    {}", op.description);
        if !op.scopes.is_empty() {
            out!("    scopes: {}", op.scopes.join(", "));
        }
        print_fields("input", &op.input_schema);
        print_fields("output", &op.output_schema);
    }
}

/// One field of an object schema.
struct Field {
    name: String,
    ty: String,
    required: bool,
    description: String,
}

/// The fields of an object schema, following `$ref`s into `$defs`.
fn fields(schema: &Value) -> Option<Vec<Field>> {
    let root = schema;
    let object = resolve(root, schema);
    let properties = object.get("properties")?.as_object()?;
    let required: Vec<&str> = object
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    Some(
        properties
            .iter()
            .map(|(name, field)| Field {
                name: name.clone(),
                ty: type_name(field),
                required: required.contains(&name.as_str()),
                description: field
                    .get("description")
                    .and_then(Value::as_str)
                    .or_else(|| {
                        resolve(root, field)
                            .get("description")
                            .and_then(Value::as_str)
                    })
                    .unwrap_or_default()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" "),
            })
            .collect(),
    )
}

/// `schema`, or what its `$ref` points at in `root`'s `$defs`.
fn resolve<'a>(root: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(reference) => reference
            .strip_prefix("#/$defs/")
            .and_then(|name| root.get("$defs")?.get(name))
            .unwrap_or(schema),
        None => schema,
    }
}

/// A short name for a field's type: `string`, `integer?`, `[string]`, a
/// definition's name.
fn type_name(schema: &Value) -> String {
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        return reference.rsplit('/').next().unwrap_or(reference).to_owned();
    }
    if let Some(any) = schema.get("anyOf").and_then(Value::as_array) {
        let names: Vec<String> = any
            .iter()
            .filter(|s| s.get("type").and_then(Value::as_str) != Some("null"))
            .map(type_name)
            .collect();
        let nullable = names.len() < any.len();
        return format!("{}{}", names.join(" | "), if nullable { "?" } else { "" });
    }
    match schema.get("type") {
        Some(Value::String(ty)) if ty == "array" => {
            let item = schema
                .get("items")
                .map_or_else(|| "any".to_owned(), type_name);
            format!("[{item}]")
        }
        Some(Value::String(ty)) => ty.clone(),
        Some(Value::Array(types)) => {
            let names: Vec<&str> = types
                .iter()
                .filter_map(Value::as_str)
                .filter(|t| *t != "null")
                .collect();
            let nullable = names.len() < types.len();
            format!("{}{}", names.join(" | "), if nullable { "?" } else { "" })
        }
        _ if schema.get("enum").is_some() => "enum".to_owned(),
        _ => "any".to_owned(),
    }
}

fn print_fields(label: &str, schema: &Value) {
    match fields(schema) {
        Some(fields) if fields.is_empty() => out!("    {label}: (none)"),
        Some(fields) => {
            out!("    {label}:");
            let name_width = fields.iter().map(|f| f.name.len()).max().unwrap_or(0);
            let type_width = fields.iter().map(|f| f.ty.len()).max().unwrap_or(0);
            for f in fields {
                let required = if f.required { "required" } else { "optional" };
                let line = format!(
                    "      {:name_width$}  {:type_width$}  {required}  {}",
                    f.name, f.ty, f.description
                );
                out!("{}", line.trim_end());
            }
        }
        // Not an object: show what it is.
        None => out!("    {label}: {}", type_name(schema)),
    }
}

/// `host plugins`: one line per plugin, then its grants.
pub fn print_plugins(plugins: &[PluginEntry]) {
    for p in plugins {
        out!(
            "{} {}  ({}; {} operations; cache {})",
            p.name,
            p.version,
            p.origin,
            p.operations.len(),
            p.cache
        );
        if !p.description.is_empty() {
            out!("    {}", p.description);
        }
        let mut extra = String::new();
        if let Some(policy) = &p.grants.docker {
            extra.push_str(&format!(" docker={policy}"));
        }
        if !p.grants.http.is_empty() {
            extra.push_str(&format!(" http=[{}]", p.grants.http.join(", ")));
        }
        for argv in &p.grants.process {
            extra.push_str(&format!(" process={argv:?}"));
        }
        if !p.grants.secrets.is_empty() {
            extra.push_str(&format!(" secrets=[{}]", p.grants.secrets.join(", ")));
        }
        let dynamic = if p.requested.dynamic {
            "; operations discovered at load"
        } else {
            ""
        };
        out!(
            "    grants: kv={} env=[{}] vault=[{}]{extra}{dynamic}",
            p.grants.kv,
            p.grants.env.join(", "),
            p.grants.vault.join(", ")
        );
    }
}

/// `host id`: the `[peers.<name>]` entry another operator pastes into
/// their `stack.toml` to pair with this node.
pub fn print_identity(id: &IdentityInfo) {
    let node = id.node.as_deref().unwrap_or("this-node");
    if id.ephemeral {
        out!(
            "# ephemeral: no vault on this node, so this key lasts until it stops (`host vault init`)"
        );
    } else {
        out!(
            "# node `{node}`: ed25519 {} (SLIP-0010)",
            id.path.as_deref().unwrap_or_default()
        );
    }
    out!("# fingerprint: {}", id.fingerprint);
    out!("# To pair, paste this into the other node's stack.toml, and grant there");
    out!("# what this node may call with `allow = [\"/node/echo/*\"]` (nothing by default).");
    out!("[peers.{node}]");
    out!("public_key = \"{}\"", id.public_key);
    match &id.address {
        Some(address) => out!("address = \"{address}\""),
        None => out!(
            "# address = \"…\"  (this node does not accept peers: set `mesh.listen` to be dialed)"
        ),
    }
}

/// `host peers`: one line per peer, then its details.
pub fn print_peers(peers: &PeerList) {
    out!(
        "node `{}` ({}): {} peer(s)",
        peers.node,
        peers.listen.as_deref().unwrap_or("not listening"),
        peers.peers.len()
    );
    for p in &peers.peers {
        let rtt = p
            .rtt_ms
            .map(|ms| format!("  rtt {ms:.2} ms"))
            .unwrap_or_default();
        let direction = p
            .direction
            .map(|d| {
                let d = serde_json::to_value(d).unwrap_or_default();
                format!(" ({})", d.as_str().unwrap_or_default())
            })
            .unwrap_or_default();
        out!(
            "{}  {}{direction}{rtt}  {}",
            p.name,
            p.state.as_str(),
            p.address.as_deref().unwrap_or("(dials us)")
        );
        out!("    key: {} ({})", p.public_key, p.fingerprint);
        if p.state == PeerState::Connected {
            out!(
                "    features: {}  version: {}",
                p.features.join(", "),
                p.version.as_deref().unwrap_or_default()
            );
        }
        if let Some(error) = &p.last_error {
            out!("    last error: {error}");
        }
        out!(
            "    may call here: [{}]  scopes: [{}]",
            p.allow.join(", "),
            p.scopes.join(", ")
        );
    }
}

/// `host version`: this node's versions and mesh features.
pub fn print_version(version: &VersionInfo) {
    let mesh = &version.mesh;
    out!("host {} (node `{}`)", version.version, version.node);
    out!("wit: {}", version.wit);
    out!("socket protocol: {}", version.protocol);
    out!("mesh protocol: {}", mesh.protocol);
    out!("features required: {}", mesh.required.join(", "));
    out!("features optional: {}", mesh.optional.join(", "));
    out!("features supported: {}", mesh.supported.join(", "));
    for (peer, features) in &version.negotiated {
        out!("negotiated with {peer}: {}", features.join(", "));
    }
}

/// `host vault status|lock|unlock`.
pub fn print_vault_status(status: &VaultStatusInfo) {
    if status.already_unlocked {
        out!("vault: unlocked (it already was; the passphrase is right)");
    } else {
        out!("vault: {}", status.state.as_str());
    }
    out!(
        "identity: {} ({})",
        status.identity.public_key,
        status.identity.fingerprint
    );
    out!("file: {}", status.file);
    if status.memory_locked == Some(false) {
        out!("warning: the seed's memory page could not be locked against swap (RLIMIT_MEMLOCK)");
    }
}

/// Prints `value` as pretty JSON (`--json`).
pub fn print_json(value: &Value) {
    out!("{}", pretty(value));
}

/// One subscription event, as a JSON line, flushed at once.
pub fn print_event(event: &str) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{event}");
    let _ = stdout.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_of_derived_schemas_are_named_typed_and_described() {
        let schema = serde_json::json!({
            "type": "object",
            "properties": {
                "msg": {"type": "string", "description": "The message."},
                "n": {"type": ["integer", "null"]},
                "tags": {"type": "array", "items": {"type": "string"}},
                "peer": {"$ref": "#/$defs/PeerStatus"}
            },
            "required": ["msg"],
            "$defs": {"PeerStatus": {"type": "object", "description": "A peer."}}
        });
        let found = fields(&schema).unwrap();
        let by_name = |n: &str| found.iter().find(|f| f.name == n).unwrap();
        assert_eq!(by_name("msg").ty, "string");
        assert!(by_name("msg").required);
        assert_eq!(by_name("msg").description, "The message.");
        assert_eq!(by_name("n").ty, "integer?");
        assert!(!by_name("n").required);
        assert_eq!(by_name("tags").ty, "[string]");
        assert_eq!(by_name("peer").ty, "PeerStatus");
        assert_eq!(by_name("peer").description, "A peer.");
        assert!(fields(&serde_json::json!({"type": "string"})).is_none());
    }
}
