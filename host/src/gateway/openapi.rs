//! `GET /openapi.json`: an OpenAPI 3.1 document generated from the node's
//! operation specs (`/node/host/ops`), so any OpenAPI tool can call it.
//!
//! Each operation is `POST /v1/call/{path}` with its input schema as the
//! request body and the response envelope around its output schema. An
//! operation's own `$defs` are hoisted into `components/schemas` under a
//! prefix naming the operation, and its `$ref`s rewritten to point there:
//! in an OpenAPI document a `#/...` reference resolves from the document's
//! root, where the operation's `$defs` are not.

use serde_json::{Map, Value, json};

/// The document for `ops` (the output of `/node/host/ops`).
pub fn document(node: &str, version: &str, ops: &[Value]) -> Value {
    let mut paths = Map::new();
    let mut schemas = Map::new();
    schemas.insert(
        "Error".to_owned(),
        json!({
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {
                        "code": { "type": "string" },
                        "message": { "type": "string" }
                    }
                }
            }
        }),
    );
    for op in ops {
        let Some(path) = op["path"].as_str() else {
            continue;
        };
        let prefix: String = path
            .trim_start_matches('/')
            .split(['/', '-', '_'])
            .map(|part| {
                let mut chars = part.chars();
                chars
                    .next()
                    .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                    .unwrap_or_default()
            })
            .collect();
        let input = hoist(&op["input_schema"], &format!("{prefix}Input"), &mut schemas);
        let output = hoist(
            &op["output_schema"],
            &format!("{prefix}Output"),
            &mut schemas,
        );
        let error = |what: &str| {
            json!({
                "description": what,
                "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } }
            })
        };
        let mut content = Map::new();
        content.insert(
            "application/json".to_owned(),
            json!({
                "schema": {
                    "type": "object",
                    "required": ["output", "source", "request_id"],
                    "properties": {
                        "output": output,
                        "source": {},
                        "request_id": { "type": "string" },
                        "parent_request_id": { "type": ["string", "null"] }
                    }
                }
            }),
        );
        let subscription = op["kind"] == "subscription";
        if subscription {
            content.insert(
                "text/event-stream".to_owned(),
                json!({ "schema": { "type": "string" } }),
            );
        }
        let scopes = op["scopes"].clone();
        let mut responses = json!({
            "200": { "description": "The operation's response envelope", "content": content },
            "400": error("Malformed request"),
            "401": error("No or wrong bearer token"),
            "403": error("Denied (scope, Host or Origin)"),
            "404": error("No such operation"),
            "409": error("Conflict"),
            "413": error("Body too large"),
            "422": error("Invalid input"),
            "423": error("The vault is locked"),
            "429": error("Resource exhausted"),
            "500": error("The operation failed or trapped"),
            "503": error("Unavailable"),
            "504": error("Timed out")
        });
        if subscription {
            responses["406"] =
                error("A subscription asked for without `Accept: text/event-stream`");
        }
        paths.insert(
            format!("/v1/call{path}"),
            json!({
                "post": {
                    "operationId": prefix,
                    "summary": op["description"],
                    "tags": [op["owner"]],
                    "x-hearth-kind": op["kind"],
                    "x-hearth-scopes": scopes,
                    "parameters": [{
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": false,
                        "schema": { "type": "string" }
                    }],
                    "requestBody": {
                        "required": true,
                        "content": { "application/json": { "schema": input } }
                    },
                    "responses": responses
                }
            }),
        );
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": format!("Hearth node `{node}`"),
            "version": version,
            "description": "Every operation of this node, called with POST and its JSON input. Generated from the operation specs."
        },
        "servers": [{ "url": "/" }],
        "security": [{ "bearer": [] }],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer" }
            }
        }
    })
}

/// `schema` with its `$defs` moved into `schemas` as `<prefix><Name>` and
/// its references rewritten to match.
fn hoist(schema: &Value, prefix: &str, schemas: &mut Map<String, Value>) -> Value {
    let mut schema = schema.clone();
    let defs = schema
        .as_object_mut()
        .and_then(|o| {
            o.remove("$schema");
            o.remove("$defs").or_else(|| o.remove("definitions"))
        })
        .unwrap_or(Value::Null);
    if let Value::Object(defs) = defs {
        for (name, mut def) in defs {
            rewrite(&mut def, prefix);
            schemas.insert(format!("{prefix}{name}"), def);
        }
    }
    rewrite(&mut schema, prefix);
    schema
}

fn rewrite(value: &mut Value, prefix: &str) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(target)) = map.get_mut("$ref") {
                for local in ["#/$defs/", "#/definitions/"] {
                    if let Some(name) = target.strip_prefix(local) {
                        *target = format!("#/components/schemas/{prefix}{name}");
                        break;
                    }
                }
            }
            for child in map.values_mut() {
                rewrite(child, prefix);
            }
        }
        Value::Array(items) => {
            for item in items {
                rewrite(item, prefix);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_definitions_move_to_components_and_references_follow() {
        let ops = [json!({
            "path": "/node/msg/outbox",
            "kind": "query",
            "owner": "host",
            "description": "d",
            "scopes": [],
            "input_schema": {
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "properties": { "status": { "$ref": "#/$defs/Status" } },
                "$defs": { "Status": { "enum": ["pending"] } }
            },
            "output_schema": { "type": "object" }
        })];
        let doc = document("n", "0.1.0", &ops);
        let post = &doc["paths"]["/v1/call/node/msg/outbox"]["post"];
        let input = &post["requestBody"]["content"]["application/json"]["schema"];
        assert_eq!(
            input["properties"]["status"]["$ref"],
            "#/components/schemas/NodeMsgOutboxInputStatus"
        );
        assert!(input.get("$schema").is_none());
        assert!(doc["components"]["schemas"]["NodeMsgOutboxInputStatus"].is_object());
    }
}
