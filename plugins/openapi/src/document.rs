//! From an OpenAPI 3.0 or 3.1 document to operations.
//!
//! Pure functions, tested natively: names (from `operationId`, else method
//! and path, by [`hearth_sdk::names`]), one input schema per operation
//! joining its path, query and header parameters and its request body
//! (`body`), output schemas from the first 2xx response, kinds (`GET` and
//! `HEAD` are queries, `text/event-stream` responses subscriptions, the
//! rest mutations), and what a call needs to build its request.
//!
//! Schemas: `#/components/schemas/X` references become `#/$defs/X`, with
//! every schema reachable from the operation copied into its `$defs`, so
//! each operation's schema stands alone; OpenAPI 3.0's `nullable` and
//! boolean `exclusiveMinimum`/`exclusiveMaximum` become JSON Schema 2020-12.
//! A reference this cannot resolve becomes `{}` (anything), so one odd
//! schema never costs the whole service.

use std::collections::BTreeMap;

use hearth_sdk::names::{UniqueNames, operation_name};

use serde_json::{Map, Value, json};

/// Where a parameter goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// `{name}` in the path.
    Path,
    /// `?name=value`.
    Query,
    /// A request header.
    Header,
}

/// One parameter of an endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    /// Its name in the document (the header or query name).
    pub name: String,
    /// The input field holding its value.
    pub field: String,
    /// Where it goes.
    pub location: Location,
}

/// What an operation does, as the host names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `GET` and `HEAD`.
    Query,
    /// Every other method.
    Mutation,
    /// A `text/event-stream` response.
    Subscription,
}

/// One operation of the document.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    /// The Hearth operation name.
    pub name: String,
    /// `GET`, `POST`, …
    pub method: String,
    /// The path template, `/pet/{petId}`.
    pub path: String,
    /// Its parameters.
    pub params: Vec<Param>,
    /// The request body's media type, when it takes one.
    pub body: Option<String>,
    /// Query, mutation or subscription.
    pub kind: Kind,
    /// Summary and description.
    pub description: String,
    /// One object: parameters by field, and `body`.
    pub input_schema: Value,
    /// The first 2xx response's schema (`{}` when it has none).
    pub output_schema: Value,
}

/// `include`/`exclude` from the config: tags or operationIds (or the
/// operation names this module gives).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// When not empty, only these.
    pub include: Vec<String>,
    /// Never these.
    pub exclude: Vec<String>,
}

impl Filter {
    fn keeps(&self, names: &[&str]) -> bool {
        let named = |list: &[String]| names.iter().any(|n| list.iter().any(|x| x == n));
        (self.include.is_empty() || named(&self.include)) && !named(&self.exclude)
    }
}

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Every endpoint of `doc` that `filter` keeps, in path then method order.
/// A document's text, JSON or YAML, as a JSON value.
pub fn parse(text: &str) -> Result<Value, String> {
    if text.trim_start().starts_with('{') {
        return serde_json::from_str(text).map_err(|e| format!("is not valid JSON: {e}"));
    }
    let doc: Value =
        serde_yaml::from_str(text).map_err(|e| format!("is neither JSON nor valid YAML: {e}"))?;
    if !doc.is_object() {
        return Err("is not an OpenAPI document (not a JSON or YAML mapping)".into());
    }
    Ok(doc)
}

pub fn endpoints(doc: &Value, filter: &Filter) -> Result<Vec<Endpoint>, String> {
    let version = doc["openapi"].as_str().unwrap_or_default();
    let v30 = if version.starts_with("3.0") {
        true
    } else if version.starts_with("3.1") {
        false
    } else {
        return Err(format!(
            "not an OpenAPI 3.0 or 3.1 document (`openapi` is {:?}); Swagger 2.0 documents must be converted first",
            doc["openapi"]
        ));
    };
    let paths = doc["paths"]
        .as_object()
        .ok_or("the document has no `paths` object")?;
    let mut taken = UniqueNames::default();
    let mut out = Vec::new();
    for (path, item) in paths {
        let item = deref(doc, item);
        let shared = item["parameters"].as_array().cloned().unwrap_or_default();
        for method in METHODS {
            let Some(op) = item.get(method).filter(|o| o.is_object()) else {
                continue;
            };
            let operation_id = op["operationId"].as_str();
            let tags: Vec<&str> = op["tags"]
                .as_array()
                .map(|t| t.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let base = operation_id
                .map(operation_name)
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| operation_name(&format!("{method} {path}")));
            let mut names: Vec<&str> = tags.clone();
            names.extend(operation_id);
            names.push(&base);
            if !filter.keeps(&names) {
                continue;
            }
            let Some(endpoint) = endpoint(doc, v30, method, path, op, &shared) else {
                continue;
            };
            let name = taken.take(&base);
            out.push(Endpoint { name, ..endpoint });
        }
    }
    Ok(out)
}

/// Follows a local `$ref` (`#/components/parameters/X`, …) one or more
/// times; anything else is returned as is.
fn deref<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    let mut value = value;
    for _ in 0..16 {
        let Some(reference) = value["$ref"].as_str() else {
            return value;
        };
        match reference
            .strip_prefix('#')
            .and_then(|pointer| doc.pointer(pointer))
        {
            Some(target) => value = target,
            None => return value,
        }
    }
    value
}

fn endpoint(
    doc: &Value,
    v30: bool,
    method: &str,
    path: &str,
    op: &Value,
    shared: &[Value],
) -> Option<Endpoint> {
    // Operation parameters override path-level ones of the same name and
    // place.
    let mut params: Vec<&Value> = Vec::new();
    for p in shared
        .iter()
        .chain(op["parameters"].as_array().into_iter().flatten())
    {
        let p = deref(doc, p);
        let key = (&p["name"], &p["in"]);
        params.retain(|q| (&q["name"], &q["in"]) != key);
        params.push(p);
    }
    let mut schemas = Schemas::new(doc, v30);
    let mut properties = Map::new();
    let mut required = Vec::new();
    let mut out_params = Vec::new();
    for p in params {
        let Some(name) = p["name"].as_str() else {
            continue;
        };
        let location = match p["in"].as_str() {
            Some("path") => Location::Path,
            Some("query") => Location::Query,
            Some("header") => Location::Header,
            // Cookies are not sent; a required one cannot be called.
            _ if p["required"].as_bool() == Some(true) => return None,
            _ => continue,
        };
        let field = if properties.contains_key(name) || name == "body" {
            format!("{}_{name}", p["in"].as_str().unwrap_or_default())
        } else {
            name.to_owned()
        };
        let raw = p
            .get("schema")
            .or_else(|| first_media(&p["content"]).map(|(_, m)| &m["schema"]))
            .cloned()
            .unwrap_or(json!({}));
        let mut schema = schemas.convert(&raw);
        if let (Some(text), Some(object)) = (p["description"].as_str(), schema.as_object_mut())
            && !object.contains_key("description")
        {
            object.insert("description".into(), text.into());
        }
        if location == Location::Path || p["required"].as_bool() == Some(true) {
            required.push(Value::from(field.clone()));
        }
        properties.insert(field.clone(), schema);
        out_params.push(Param {
            name: name.to_owned(),
            field,
            location,
        });
    }
    let mut body = None;
    if let Some(request_body) = op.get("requestBody") {
        let request_body = deref(doc, request_body);
        let (media, content) = first_media(&request_body["content"])?;
        if media.starts_with("multipart/") {
            // Not sendable as JSON or a form; the operation is left out.
            return None;
        }
        let schema = schemas.convert(&content["schema"]);
        properties.insert("body".into(), schema);
        if request_body["required"].as_bool() == Some(true) {
            required.push("body".into());
        }
        body = Some(media.to_owned());
    }
    let (output, streams) = match first_success(doc, &op["responses"]) {
        Some(response) => match first_media(&response["content"]) {
            Some((media, content)) if media.starts_with("text/event-stream") => {
                (schemas.convert(&content["schema"]), true)
            }
            Some((media, content)) if is_json(media) => {
                (schemas.convert(&content["schema"]), false)
            }
            Some(_) => (json!({ "type": "string" }), false),
            None => (json!({}), false),
        },
        None => (json!({}), false),
    };
    let mut input = json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    });
    let defs = schemas.defs();
    let mut output = output;
    if !defs.is_empty() {
        input["$defs"] = Value::Object(defs.clone());
        if output.is_object() {
            output["$defs"] = Value::Object(defs);
        }
    }
    // A Hearth node's own document says what each operation is.
    let kind = match op["x-hearth-kind"].as_str() {
        Some("query") => Kind::Query,
        Some("mutation") => Kind::Mutation,
        Some("subscription") => Kind::Subscription,
        _ if streams => Kind::Subscription,
        _ if matches!(method, "get" | "head") => Kind::Query,
        _ => Kind::Mutation,
    };
    let summary = op["summary"].as_str().unwrap_or_default().trim();
    let detail = op["description"].as_str().unwrap_or_default().trim();
    let mut description = match (summary.is_empty(), detail.is_empty()) {
        (false, false) if summary != detail => format!("{summary}. {detail}"),
        (false, _) => summary.to_owned(),
        (true, false) => detail.to_owned(),
        (true, true) => format!("{} {path}", method.to_uppercase()),
    };
    if description.len() > 500 {
        let cut = (0..=500)
            .rev()
            .find(|i| description.is_char_boundary(*i))
            .unwrap_or(0);
        description.truncate(cut);
    }
    Some(Endpoint {
        name: String::new(),
        method: method.to_uppercase(),
        path: path.to_owned(),
        params: out_params,
        body,
        kind,
        description,
        input_schema: input,
        output_schema: output,
    })
}

fn is_json(media: &str) -> bool {
    media == "application/json" || media.ends_with("+json") || media == "*/*"
}

/// The preferred media type of a `content` map: JSON first, then a form,
/// then whatever comes first.
fn first_media(content: &Value) -> Option<(&str, &Value)> {
    let content = content.as_object()?;
    content
        .iter()
        .find(|(m, _)| is_json(m))
        .or_else(|| {
            content
                .iter()
                .find(|(m, _)| m.starts_with("text/event-stream"))
        })
        .or_else(|| {
            content
                .iter()
                .find(|(m, _)| *m == "application/x-www-form-urlencoded")
        })
        .or_else(|| content.iter().next())
        .map(|(m, v)| (m.as_str(), v))
}

/// The first 2xx response (`200` before `201` … before `2XX`).
fn first_success<'a>(doc: &'a Value, responses: &'a Value) -> Option<&'a Value> {
    let responses = responses.as_object()?;
    let mut codes: Vec<&String> = responses.keys().filter(|c| c.starts_with('2')).collect();
    codes.sort();
    codes.first().map(|c| deref(doc, &responses[c.as_str()]))
}

/// Converts schemas of one operation, collecting the component schemas
/// they reach.
struct Schemas<'a> {
    doc: &'a Value,
    v30: bool,
    /// Component names reached, waiting to be converted.
    pending: Vec<String>,
    done: BTreeMap<String, Value>,
}

impl<'a> Schemas<'a> {
    fn new(doc: &'a Value, v30: bool) -> Self {
        Schemas {
            doc,
            v30,
            pending: Vec::new(),
            done: BTreeMap::new(),
        }
    }

    /// `schema` as JSON Schema 2020-12, its references pointing at `$defs`.
    fn convert(&mut self, schema: &Value) -> Value {
        match schema {
            Value::Object(map) => {
                if let Some(reference) = map.get("$ref").and_then(Value::as_str) {
                    return match reference.strip_prefix("#/components/schemas/") {
                        Some(name)
                            if self.doc["components"]["schemas"]
                                .get(unescape(name).as_str())
                                .is_some() =>
                        {
                            let name = unescape(name);
                            if !self.done.contains_key(&name) && !self.pending.contains(&name) {
                                self.pending.push(name.clone());
                            }
                            json!({ "$ref": format!("#/$defs/{}", escape(&name)) })
                        }
                        _ => json!({ "description": format!("unresolved reference {reference}") }),
                    };
                }
                let mut out = Map::new();
                for (key, value) in map {
                    let value = match key.as_str() {
                        // Keywords whose values are not schemas.
                        "example" | "examples" | "enum" | "const" | "default" | "required"
                        | "description" | "title" | "format" | "pattern" | "type"
                        | "discriminator" | "xml" | "externalDocs" => value.clone(),
                        _ => self.convert(value),
                    };
                    out.insert(key.clone(), value);
                }
                if self.v30 {
                    from_openapi_30(&mut out);
                }
                Value::Object(out)
            }
            Value::Array(items) => Value::Array(items.iter().map(|v| self.convert(v)).collect()),
            other => other.clone(),
        }
    }

    /// Every component schema reached, converted, by name.
    fn defs(&mut self) -> Map<String, Value> {
        while let Some(name) = self.pending.pop() {
            let raw = self.doc["components"]["schemas"][name.as_str()].clone();
            self.done.insert(name.clone(), Value::Null);
            let converted = self.convert(&raw);
            self.done.insert(name, converted);
        }
        self.done
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// OpenAPI 3.0's dialect to JSON Schema 2020-12, on one converted object.
fn from_openapi_30(schema: &mut Map<String, Value>) {
    if schema.remove("nullable") == Some(Value::Bool(true)) {
        match schema.get("type").cloned() {
            Some(Value::String(t)) => {
                schema.insert("type".into(), json!([t, "null"]));
            }
            _ => {
                let inner = Value::Object(std::mem::take(schema));
                schema.insert("anyOf".into(), json!([inner, { "type": "null" }]));
            }
        }
    }
    for (flag, bound) in [
        ("exclusiveMinimum", "minimum"),
        ("exclusiveMaximum", "maximum"),
    ] {
        if let Some(Value::Bool(exclusive)) = schema.get(flag).cloned() {
            schema.remove(flag);
            if exclusive && let Some(limit) = schema.remove(bound) {
                schema.insert(flag.into(), limit);
            }
        }
    }
}

fn unescape(pointer_part: &str) -> String {
    pointer_part.replace("~1", "/").replace("~0", "~")
}

fn escape(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn petstore() -> Value {
        let text = include_str!("../../../tests/fixtures/petstore-3.0.json");
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn the_petstore_becomes_operations() {
        let ops = endpoints(&petstore(), &Filter::default()).unwrap();
        let names: Vec<&str> = ops.iter().map(|o| o.name.as_str()).collect();
        assert!(names.contains(&"get-pet-by-id"), "{names:?}");
        assert!(names.contains(&"add-pet"));
        // multipart upload is left out.
        assert!(!names.contains(&"upload-file"));
        let get = ops.iter().find(|o| o.name == "get-pet-by-id").unwrap();
        assert_eq!(get.kind, Kind::Query);
        assert_eq!(get.method, "GET");
        assert_eq!(get.params[0].location, Location::Path);
        assert_eq!(get.input_schema["required"], json!(["petId"]));
        assert_eq!(get.output_schema["$ref"], "#/$defs/Pet");
        assert!(get.output_schema["$defs"]["Category"].is_object());
        let add = ops.iter().find(|o| o.name == "add-pet").unwrap();
        assert_eq!(add.kind, Kind::Mutation);
        assert_eq!(add.body.as_deref(), Some("application/json"));
        assert_eq!(
            add.input_schema["properties"]["body"]["$ref"],
            "#/$defs/Pet"
        );
        let delete = ops.iter().find(|o| o.name == "delete-pet").unwrap();
        assert!(delete.params.iter().any(|p| p.location == Location::Header));
    }

    #[test]
    fn include_and_exclude_trim_by_tag_or_operation_id() {
        let only_store = Filter {
            include: vec!["store".into()],
            exclude: vec!["deleteOrder".into()],
        };
        let ops = endpoints(&petstore(), &only_store).unwrap();
        let names: Vec<&str> = ops.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["get-inventory", "place-order", "get-order-by-id"]);
    }

    #[test]
    fn openapi_30_nullable_and_exclusive_bounds_become_2020_12() {
        let doc = json!({"openapi": "3.0.3", "paths": {}, "components": {"schemas": {}}});
        let mut schemas = Schemas::new(&doc, true);
        let converted = schemas.convert(&json!({
            "type": "object",
            "properties": {
                "a": { "type": "integer", "nullable": true, "minimum": 1, "exclusiveMinimum": true },
                "b": { "$ref": "#/components/schemas/Missing" }
            }
        }));
        assert_eq!(
            converted["properties"]["a"]["type"],
            json!(["integer", "null"])
        );
        assert_eq!(converted["properties"]["a"]["exclusiveMinimum"], 1);
        assert!(converted["properties"]["a"].get("minimum").is_none());
        assert!(converted["properties"]["b"].get("$ref").is_none());
    }

    #[test]
    fn swagger_2_is_refused_with_the_reason() {
        let err =
            endpoints(&json!({"swagger": "2.0", "paths": {}}), &Filter::default()).unwrap_err();
        assert!(err.contains("not an OpenAPI 3.0 or 3.1 document"), "{err}");
    }

    #[test]
    fn yaml_documents_read_like_json_ones() {
        let yaml = "openapi: 3.0.3\ninfo: {title: t, version: '1'}\npaths:\n  /pets/{id}:\n    get:\n      operationId: getPet\n      parameters:\n        - {name: id, in: path, required: true, schema: {type: integer}}\n      responses:\n        '200':\n          description: ok\n          content:\n            application/json:\n              schema: {type: object}\n";
        let doc = parse(yaml).unwrap();
        let found = endpoints(&doc, &Filter::default()).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].name, "get-pet");
        let json = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/petstore-3.0.json"
        ))
        .unwrap();
        assert_eq!(parse(&json).unwrap()["openapi"], "3.0.0");
        assert!(parse("- a\n- b\n").unwrap_err().contains("mapping"));
        assert!(parse("{ not json").unwrap_err().contains("JSON"));
    }
}
