//! The tool catalogue: which operations a caller sees as MCP tools, under
//! which names, with which schemas and hints.
//!
//! The node builds it (`/node/host/tools`) so every MCP door — `host mcp`
//! on stdio, `/mcp` on the gateway — shows one agent the same tools, and
//! the operator's `[mcp] expose` list and the caller's scopes decide, not
//! the door.
//!
//! Names: `/node/docker/create` is `docker_create`, a peer's
//! `/worker-1/docker/create` is `worker-1__docker_create`. A name longer
//! than 64 characters keeps its first 55 and ends in `_` and 8 hex digits
//! of the path's SHA-256. Names that still collide (`/node/a_b/c` and
//! `/node/a/b_c` are both `a_b_c`) are settled in path order: the first
//! path keeps the name, each later one gets `_` and 6 hex digits of its
//! path's SHA-256 appended (shortened first when needed). The path is
//! always in the tool's `title`.

use std::collections::BTreeSet;

use hearth_registry::{OperationPath, PathPattern};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::native::host::OpEntry;

/// Longest tool name clients accept.
const MAX_NAME: usize = 64;
/// Extra input fields of a subscription tool.
pub const MAX_EVENTS_FIELD: &str = "_max_events";
/// How long a subscription tool collects, in seconds.
pub const MAX_SECONDS_FIELD: &str = "_max_seconds";
/// The input of a tool whose operation takes no object, wrapped.
pub const WRAPPED_FIELD: &str = "input";

/// One tool.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Tool {
    /// Its name: 1 to 64 of `[A-Za-z0-9_-]`, unique.
    pub name: String,
    /// The operation's path, for people.
    pub title: String,
    /// What it does (for a subscription: how it collects).
    pub description: String,
    /// The operation it calls.
    pub path: String,
    /// `query`, `mutation` or `subscription`.
    pub kind: String,
    /// Its input schema: an object at the root, self-contained.
    pub input_schema: Value,
    /// Its output schema, when the output is an object.
    pub output_schema: Option<Value>,
    /// True when the operation's own input is under `input`.
    pub wrapped: bool,
    /// MCP tool annotations.
    pub annotations: Value,
}

/// What the catalogue is built from: an operation, and the peer serving
/// it (`None` for this node).
pub struct Source {
    /// The peer, or this node.
    pub peer: Option<String>,
    /// The operation as that node lists it (`/node/…`).
    pub op: OpEntry,
}

/// True for operations an agent gets only when `[mcp] expose` names
/// their namespace: the vault's, client approval, the node-to-node
/// messaging operations, the catalogue itself, and whatever needs an
/// `…:admin` scope.
fn hidden_by_default(path: &OperationPath, scopes: &[String]) -> bool {
    matches!(path.namespace(), "vault" | "clients" | "broker")
        || (path.namespace() == "msg" && path.name() == "deliver")
        // The MCP server's own plumbing.
        || (path.namespace() == "host" && matches!(path.name(), "tools" | "changes"))
        || scopes.iter().any(|s| s.ends_with(":admin"))
}

/// Whether `expose` lets an agent see `path` (as the caller names it).
fn exposed(path: &OperationPath, scopes: &[String], expose: Option<&[PathPattern]>) -> bool {
    let hidden = hidden_by_default(path, scopes);
    match expose {
        None => !hidden,
        Some(patterns) => patterns
            .iter()
            .any(|p| p.matches(path) && (!hidden || p.names_namespace(path.namespace()))),
    }
}

fn short_hash(path: &str, digits: usize) -> String {
    hex::encode(Sha256::digest(path.as_bytes()))[..digits].to_owned()
}

/// The name of the tool for `path` (`peer__ns_name`), within 64 characters.
fn base_name(peer: Option<&str>, path: &OperationPath) -> String {
    let name = match peer {
        None => format!("{}_{}", path.namespace(), path.name()),
        Some(peer) => format!("{peer}__{}_{}", path.namespace(), path.name()),
    };
    if name.len() <= MAX_NAME {
        return name;
    }
    format!(
        "{}_{}",
        &name[..MAX_NAME - 9],
        short_hash(&path.to_string(), 8)
    )
}

/// Makes a schema an object at the root with no top-level `anyOf`/`oneOf`;
/// true when it had to be wrapped under `input`.
fn object_root(schema: &Value) -> (Value, bool) {
    let is_object = schema["type"] == "object"
        && schema.get("anyOf").is_none()
        && schema.get("oneOf").is_none()
        && schema.get("allOf").is_none();
    if is_object {
        let mut schema = schema.clone();
        // No dialect named: MCP's default (2020-12) holds, and clients
        // whose validators know only older drafts still compile it.
        if let Some(o) = schema.as_object_mut() {
            o.remove("$schema");
        }
        return (schema, false);
    }
    // Hoist the definitions so `$ref`s still resolve from the root.
    let mut inner = schema.clone();
    let defs = inner
        .as_object_mut()
        .and_then(|o| o.remove("$defs"))
        .unwrap_or(Value::Null);
    if let Some(o) = inner.as_object_mut() {
        o.remove("$schema");
    }
    let mut wrapped = json!({
        "type": "object",
        "properties": { WRAPPED_FIELD: inner },
        "required": [WRAPPED_FIELD],
        "additionalProperties": false,
    });
    if !defs.is_null() {
        wrapped["$defs"] = defs;
    }
    (wrapped, true)
}

/// True when every `$ref` in `schema` points into its own `$defs`.
fn self_contained(schema: &Value) -> bool {
    fn refs(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, v) in map {
                    if key == "$ref"
                        && let Some(r) = v.as_str()
                    {
                        out.push(r.to_owned());
                    }
                    refs(v, out);
                }
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    refs(schema, &mut found);
    found.iter().all(|r| {
        r.strip_prefix("#/$defs/")
            .is_some_and(|name| schema["$defs"].get(name).is_some())
            || r == "#"
    })
}

/// The MCP annotations of an operation of `kind`.
fn annotations(kind: &str, title: &str, remote: bool) -> Value {
    let read_only = kind != "mutation";
    json!({
        "title": title,
        "readOnlyHint": read_only,
        "destructiveHint": !read_only,
        "idempotentHint": read_only,
        "openWorldHint": remote,
    })
}

/// Builds the tools `sources` give, within `expose`, in path order.
pub fn catalogue(mut sources: Vec<Source>, expose: Option<&[PathPattern]>) -> Vec<Tool> {
    let addressed = |s: &Source| -> Option<OperationPath> {
        let local: OperationPath = s.op.path.parse().ok()?;
        match &s.peer {
            None => Some(local),
            Some(peer) => OperationPath::new(peer, local.namespace(), local.name()).ok(),
        }
    };
    sources.sort_by_key(|s| addressed(s).map(|p| p.to_string()));
    let mut taken = BTreeSet::new();
    let mut tools = Vec::new();
    for source in sources {
        let Some(path) = addressed(&source) else {
            continue;
        };
        if !exposed(&path, &source.op.scopes, expose) {
            continue;
        }
        let (mut input_schema, wrapped) = object_root(&source.op.input_schema);
        if !self_contained(&input_schema) {
            tracing::warn!(%path, "not a tool: its input schema refers outside itself");
            continue;
        }
        let path_text = path.to_string();
        let mut name = base_name(source.peer.as_deref(), &path);
        if taken.contains(&name) {
            let suffix = format!("_{}", short_hash(&path_text, 6));
            name.truncate(MAX_NAME - suffix.len());
            name.push_str(&suffix);
        }
        taken.insert(name.clone());
        let mut description = source.op.description.clone();
        if source.op.kind == "subscription" {
            if let Some(props) = input_schema["properties"].as_object_mut() {
                props.insert(
                    MAX_EVENTS_FIELD.to_owned(),
                    json!({"type": "integer", "minimum": 1, "maximum": 1000, "default": 20,
                           "description": "Stop after this many events (default 20, at most 1000)."}),
                );
                props.insert(
                    MAX_SECONDS_FIELD.to_owned(),
                    json!({"type": "integer", "minimum": 1, "maximum": 300, "default": 10,
                           "description": "Stop after this many seconds (default 10, at most 300)."}),
                );
            }
            description.push_str(
                " This streams events: the tool collects them for `_max_seconds` (default 10, at most 300) or until `_max_events` (default 20, at most 1000) arrived, whichever comes first, and returns them in order.",
            );
        }
        let output_schema = (source.op.kind != "subscription")
            .then(|| object_root(&source.op.output_schema))
            .and_then(|(schema, wrapped)| (!wrapped).then_some(schema))
            .filter(self_contained);
        let output_schema = if source.op.kind == "subscription" {
            Some(json!({
                "type": "object",
                "properties": {
                    "events": { "type": "array" },
                    "ended": { "type": "string", "enum": ["count", "time", "reply"] },
                    "reply": {},
                },
                "required": ["events", "ended"],
            }))
        } else {
            output_schema
        };
        tools.push(Tool {
            annotations: annotations(&source.op.kind, &path_text, source.peer.is_some()),
            title: path_text.clone(),
            name,
            description,
            path: path_text,
            kind: source.op.kind,
            input_schema,
            output_schema,
            wrapped,
        });
    }
    tools
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    /// An object built from `pairs`.
    fn object(pairs: &[(&str, Value)]) -> Value {
        Value::Object(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect::<Map<String, Value>>(),
        )
    }

    fn op(path: &str, kind: &str, scopes: &[&str], input: Value) -> OpEntry {
        OpEntry {
            path: path.into(),
            kind: kind.into(),
            owner: "p".into(),
            description: "d".into(),
            input_schema: input,
            output_schema: json!({"type": "object", "properties": {}}),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            event_schema: None,
        }
    }

    fn local(op: OpEntry) -> Source {
        Source { peer: None, op }
    }

    #[test]
    fn names_are_short_unique_and_deterministic() {
        let obj = json!({"type": "object"});
        let sources = || {
            vec![
                local(op("/node/docker/create", "mutation", &[], obj.clone())),
                local(op("/node/a/b_c", "query", &[], obj.clone())),
                local(op("/node/a_b/c", "query", &[], obj.clone())),
                Source {
                    peer: Some("worker-1".into()),
                    op: op("/node/docker/create", "mutation", &[], obj.clone()),
                },
                local(op(
                    &format!("/node/{}/{}", "n".repeat(40), "m".repeat(40)),
                    "query",
                    &[],
                    obj.clone(),
                )),
            ]
        };
        let tools = catalogue(sources(), None);
        let names: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
        assert!(names.contains(&"docker_create"));
        assert!(names.contains(&"worker-1__docker_create"));
        assert!(names.contains(&"a_b_c"));
        assert_eq!(names.iter().collect::<BTreeSet<_>>().len(), names.len());
        for name in &names {
            assert!((1..=64).contains(&name.len()), "{name}");
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            );
        }
        // The first path in order keeps the plain name.
        let plain = tools.iter().find(|t| t.name == "a_b_c").unwrap();
        assert_eq!(plain.path, "/node/a/b_c");
        let again: Vec<String> = catalogue(sources(), None)
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(again, names);
    }

    #[test]
    fn schemas_are_objects_at_the_root_and_hints_follow_the_kind() {
        let enum_input = json!({"$defs": {"E": {"enum": ["a"]}}, "$ref": "#/$defs/E"});
        let tools = catalogue(
            vec![
                local(op("/node/x/q", "query", &[], enum_input)),
                local(op(
                    "/node/x/m",
                    "mutation",
                    &[],
                    object(&[("type", json!("object"))]),
                )),
                local(op(
                    "/node/x/s",
                    "subscription",
                    &[],
                    json!({"type": "object", "properties": {}}),
                )),
            ],
            None,
        );
        let q = tools.iter().find(|t| t.name == "x_q").unwrap();
        assert!(q.wrapped);
        assert_eq!(q.input_schema["type"], "object");
        assert!(q.input_schema["$defs"]["E"].is_object());
        assert_eq!(q.annotations["readOnlyHint"], true);
        let m = tools.iter().find(|t| t.name == "x_m").unwrap();
        assert_eq!(m.annotations["destructiveHint"], true);
        let s = tools.iter().find(|t| t.name == "x_s").unwrap();
        assert!(s.input_schema["properties"][MAX_EVENTS_FIELD].is_object());
        assert!(s.description.contains("collects"));
    }

    #[test]
    fn administrative_operations_need_an_explicit_pattern() {
        let obj = json!({"type": "object"});
        let sources = || {
            vec![
                local(op(
                    "/node/vault/unlock",
                    "mutation",
                    &["vault:admin"],
                    obj.clone(),
                )),
                local(op(
                    "/node/clients/approve",
                    "mutation",
                    &["clients:admin"],
                    obj.clone(),
                )),
                local(op("/node/echo/ping", "query", &["echo:read"], obj.clone())),
            ]
        };
        let names = |expose: Option<&[PathPattern]>| -> Vec<String> {
            catalogue(sources(), expose)
                .into_iter()
                .map(|t| t.name)
                .collect()
        };
        assert_eq!(names(None), ["echo_ping"]);
        let all: Vec<PathPattern> = vec!["/node/*/*".parse().unwrap()];
        assert_eq!(names(Some(&all)), ["echo_ping"]);
        let vault: Vec<PathPattern> = vec!["/node/vault/*".parse().unwrap()];
        assert_eq!(names(Some(&vault)), ["vault_unlock"]);
    }
}
