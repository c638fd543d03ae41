//! Operation specs: what an operation is called, what it does to state,
//! what it takes and returns (JSON Schema), and which scopes a caller needs.

use serde::{Deserialize, Serialize};

use crate::path::{OperationPath, is_valid_segment};

/// What an operation does to the node's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OpKind {
    /// Reads state, changes nothing; safe to retry.
    Query,
    /// Changes state.
    Mutation,
    /// Streams events until either side ends it.
    Subscription,
}

impl OpKind {
    /// The kebab-case name used in WIT, JSON and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            OpKind::Query => "query",
            OpKind::Mutation => "mutation",
            OpKind::Subscription => "subscription",
        }
    }
}

/// One operation as the registry knows it: path, kind, schemas and scopes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperationSpec {
    /// Full path, always addressed through [`crate::LOCAL_NODE`].
    pub path: OperationPath,
    /// Query, mutation or subscription.
    pub kind: OpKind,
    /// One or two sentences for `host ops`.
    pub description: String,
    /// JSON Schema of the input.
    pub input_schema: serde_json::Value,
    /// JSON Schema of the output.
    pub output_schema: serde_json::Value,
    /// Scopes an outside caller must hold.
    pub scopes: Vec<String>,
    /// For a subscription: JSON Schema of each event it streams.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_schema: Option<serde_json::Value>,
}

/// Why a spec offered by a plugin was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// The operation name is not a valid path segment.
    #[error(
        "operation name `{0}` is not valid: use 1 to 64 of lowercase letters, digits, `-` and `_`"
    )]
    BadName(String),
    /// A schema is not JSON, or not a valid JSON Schema.
    #[error("the {which} schema of operation `{op}` is not a valid JSON Schema: {reason}")]
    BadSchema {
        /// The operation's name.
        op: String,
        /// `input` or `output`.
        which: &'static str,
        /// What the parser or the meta-schema said.
        reason: String,
    },
    /// A scope is empty or has whitespace.
    #[error("scope `{scope}` of operation `{op}` is not valid: use `name:verb` without spaces")]
    BadScope {
        /// The operation's name.
        op: String,
        /// The offending scope.
        scope: String,
    },
}

impl OperationSpec {
    /// Builds a spec from the parts a plugin exports, checking the name, the
    /// schemas (JSON text that compiles as a JSON Schema) and the scopes.
    pub fn from_parts(
        namespace: &str,
        name: &str,
        kind: OpKind,
        description: &str,
        input_schema: &str,
        output_schema: &str,
        scopes: Vec<String>,
    ) -> Result<Self, SpecError> {
        if !is_valid_segment(name) {
            return Err(SpecError::BadName(name.to_owned()));
        }
        let path = OperationPath::new(crate::LOCAL_NODE, namespace, name)
            .map_err(|_| SpecError::BadName(name.to_owned()))?;
        let input_schema = parse_schema(name, "input", input_schema)?;
        let output_schema = parse_schema(name, "output", output_schema)?;
        if let Some(scope) = scopes
            .iter()
            .find(|s| s.is_empty() || s.chars().any(char::is_whitespace))
        {
            return Err(SpecError::BadScope {
                op: name.to_owned(),
                scope: scope.clone(),
            });
        }
        Ok(OperationSpec {
            path,
            kind,
            description: description.to_owned(),
            input_schema,
            output_schema,
            scopes,
            event_schema: None,
        })
    }

    /// Adds the schema of the events a subscription streams; refused for
    /// a query or mutation, and checked like the other schemas.
    pub fn with_event_schema(mut self, schema: Option<&str>) -> Result<Self, SpecError> {
        let Some(text) = schema else {
            return Ok(self);
        };
        let name = self.path.name().to_owned();
        if self.kind != OpKind::Subscription {
            return Err(SpecError::BadSchema {
                op: name,
                which: "event",
                reason: "only a subscription streams events; drop the event schema or make the operation a subscription".to_owned(),
            });
        }
        self.event_schema = Some(parse_schema(&name, "event", text)?);
        Ok(self)
    }
}

fn parse_schema(op: &str, which: &'static str, text: &str) -> Result<serde_json::Value, SpecError> {
    let bad = |reason: String| SpecError::BadSchema {
        op: op.to_owned(),
        which,
        reason,
    };
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| bad(format!("not JSON: {e}")))?;
    if which == "input" && value.get("type") != Some(&serde_json::json!("object")) {
        return Err(bad(
            "its root is not an object (`\"type\": \"object\"`): an operation's input is a JSON object, so clients and agents can name its fields".to_owned(),
        ));
    }
    if let Some(reference) = dangling_ref(&value) {
        return Err(bad(format!(
            "`$ref` `{reference}` points at nothing inside the schema: keep every definition under `$defs` and refer to it as `#/$defs/Name`"
        )));
    }
    jsonschema::validator_for(&value).map_err(|e| bad(e.to_string()))?;
    Ok(value)
}

/// The first `$ref` in `schema` that does not resolve inside it (a
/// reference to another document counts as dangling: a spec stands alone).
fn dangling_ref(schema: &serde_json::Value) -> Option<String> {
    fn walk<'a>(value: &'a serde_json::Value, out: &mut Vec<&'a str>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, v) in map {
                    match (key.as_str(), v) {
                        ("$ref", serde_json::Value::String(r)) => out.push(r),
                        // Under `enum`, `const` and `examples` a `$ref` is data.
                        ("enum" | "const" | "examples" | "default", _) => {}
                        _ => walk(v, out),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut refs = Vec::new();
    walk(schema, &mut refs);
    refs.into_iter()
        .find(|r| match r.strip_prefix('#') {
            Some(pointer) => schema.pointer(pointer).is_none(),
            None => true,
        })
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_a_well_formed_spec() {
        let spec = OperationSpec::from_parts(
            "echo",
            "ping",
            OpKind::Query,
            "Echo.",
            r#"{"type":"object","properties":{"msg":{"type":"string"}}}"#,
            "true",
            vec!["echo:read".into()],
        )
        .unwrap();
        assert_eq!(spec.path.to_string(), "/node/echo/ping");
    }

    #[test]
    fn refuses_bad_names_schemas_and_scopes() {
        let build = |name: &str, schema: &str, scope: &str| {
            OperationSpec::from_parts(
                "echo",
                name,
                OpKind::Query,
                "",
                schema,
                "{}",
                vec![scope.into()],
            )
        };
        assert!(matches!(
            build("Ping", r#"{"type":"object"}"#, "a"),
            Err(SpecError::BadName(_))
        ));
        assert!(matches!(
            build("ping", "{", "a"),
            Err(SpecError::BadSchema { .. })
        ));
        assert!(matches!(
            build("ping", r#"{"type":7}"#, "a"),
            Err(SpecError::BadSchema { .. })
        ));
        assert!(matches!(
            build("ping", r#"{"type":"object"}"#, "a b"),
            Err(SpecError::BadScope { .. })
        ));
    }

    #[test]
    fn refuses_inputs_that_are_not_objects_and_dangling_references() {
        let input = |schema: &str| {
            OperationSpec::from_parts("echo", "ping", OpKind::Query, "", schema, "true", vec![])
        };
        let reason = |schema: &str| match input(schema) {
            Err(SpecError::BadSchema { reason, which, .. }) => format!("{which}: {reason}"),
            other => panic!("{other:?}"),
        };
        assert!(reason(r#"{"type":"string"}"#).contains("not an object"));
        assert!(reason("true").contains("not an object"));
        let dangling =
            reason(r##"{"type":"object","properties":{"a":{"$ref":"#/$defs/Missing"}}}"##);
        assert!(dangling.contains("#/$defs/Missing"), "{dangling}");
        let outside =
            reason(r#"{"type":"object","properties":{"a":{"$ref":"https://example.com/s.json"}}}"#);
        assert!(outside.contains("points at nothing"), "{outside}");
        assert!(
            input(r##"{"type":"object","$defs":{"A":{"type":"string"}},"properties":{"a":{"$ref":"#/$defs/A"}}}"##)
                .is_ok()
        );
    }
}
