//! `openapi`: every operation of an OpenAPI 3.0 or 3.1 service as a
//! Hearth operation.
//!
//! Load it once per service, under the service's name (`component =
//! "openapi"`), with:
//!
//! | config key     | meaning                                                       |
//! |----------------|---------------------------------------------------------------|
//! | `document`     | the document (JSON or YAML): a URL within `grants.http`, or `{ file = "…" }` |
//! | `base_url`     | where requests go; default: the document's first server       |
//! | `bearer_token` | sent as `Authorization: Bearer …` (usually `{ secret = … }`)  |
//! | `api_key`      | sent in the header (or query) the document's `apiKey` scheme names |
//! | `include`      | only these tags or operationIds (a list)                      |
//! | `exclude`      | never these tags or operationIds (a list)                     |
//!
//! [`document`] turns the document into operations; this file reads the
//! configuration, builds each call's request and maps the answer: 2xx
//! bodies are the output (JSON, or text), other statuses typed errors
//! (404 not-found, 401/403 denied, 400/422 invalid-input with the server's
//! message, 409 conflict, 429 and 5xx unavailable), a `text/event-stream`
//! response a subscription whose events are streamed as they come.

pub mod document;

use std::sync::OnceLock;

use hearth_sdk::prelude::*;
use hearth_sdk::{DynamicOp, OpKind};
use serde_json::Value;

use document::{Endpoint, Filter, Kind, Location};

/// The service as this instance understands it.
struct Service {
    endpoints: Vec<Endpoint>,
    base_url: String,
    /// Where an API key goes: `(in, name)` from the document.
    api_key_place: (String, String),
}

/// Parsed once per instance (warm instances keep it between calls).
static SERVICE: OnceLock<Result<Service, CallError>> = OnceLock::new();

fn service() -> Result<&'static Service, CallError> {
    SERVICE.get_or_init(load).as_ref().map_err(Clone::clone)
}

fn list(key: &str) -> Result<Vec<String>, CallError> {
    Ok(config::get_json::<Vec<String>>(key)?.unwrap_or_default())
}

fn load() -> Result<Service, CallError> {
    let source = config::get("document")?.ok_or_else(|| {
        CallError::invalid_input(
            "config `document` is not set: give the OpenAPI document's URL, or `{ file = \"openapi.json\" }`",
        )
    })?;
    let trimmed = source.trim();
    let is_url = (trimmed.starts_with("http://") || trimmed.starts_with("https://"))
        && !trimmed.contains('\n');
    let (doc, doc_url): (Value, Option<&str>) = if is_url {
        // The document is usually behind the same credentials.
        let mut fetch = http::get(trimmed).header(
            "accept",
            "application/json, application/yaml;q=0.9, */*;q=0.5",
        );
        if let Some(token) = config::get("bearer_token")? {
            fetch = fetch.bearer(&token);
        }
        let text = fetch.send()?.error_for_status()?.text();
        let doc = document::parse(&text)
            .map_err(|e| CallError::invalid_input(format!("the document at {trimmed} {e}")))?;
        (doc, Some(trimmed))
    } else {
        let doc = document::parse(trimmed).map_err(|e| {
            CallError::invalid_input(format!(
                "config `document` {e}; give the document's URL, or `{{ file = \"openapi.yaml\" }}`"
            ))
        })?;
        (doc, None)
    };
    let filter = Filter {
        include: list("include")?,
        exclude: list("exclude")?,
    };
    let endpoints = document::endpoints(&doc, &filter)
        .map_err(|e| CallError::invalid_input(format!("the OpenAPI document: {e}")))?;
    let base_url = match config::get("base_url")? {
        Some(url) => url,
        None => default_base(&doc, doc_url).ok_or_else(|| {
            CallError::invalid_input(
                "the document names no absolute server URL; set config `base_url`",
            )
        })?,
    };
    Ok(Service {
        endpoints,
        base_url: base_url.trim_end_matches('/').to_owned(),
        api_key_place: api_key_place(&doc),
    })
}

/// The first server's URL, made absolute against the document's URL.
fn default_base(doc: &Value, doc_url: Option<&str>) -> Option<String> {
    let server = doc["servers"][0]["url"].as_str()?;
    if server.starts_with("http://") || server.starts_with("https://") {
        return Some(server.to_owned());
    }
    let doc_url = doc_url?;
    let after_scheme = doc_url.find("://")? + 3;
    let origin_end = doc_url[after_scheme..]
        .find('/')
        .map_or(doc_url.len(), |i| after_scheme + i);
    Some(format!("{}{server}", &doc_url[..origin_end]))
}

/// Where the document's first `apiKey` security scheme puts the key.
fn api_key_place(doc: &Value) -> (String, String) {
    doc["components"]["securitySchemes"]
        .as_object()
        .into_iter()
        .flat_map(|m| m.values())
        .find(|s| s["type"] == "apiKey")
        .and_then(|s| Some((s["in"].as_str()?.to_owned(), s["name"].as_str()?.to_owned())))
        .unwrap_or_else(|| ("header".to_owned(), "X-API-Key".to_owned()))
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A parameter value as text: strings as they are, the rest as JSON.
fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The request for `endpoint` with `input`.
fn request(
    service: &Service,
    endpoint: &Endpoint,
    input: &Value,
) -> Result<http::Request, CallError> {
    let mut path = endpoint.path.clone();
    let mut query: Vec<(String, String)> = Vec::new();
    let mut headers: Vec<(String, String)> = Vec::new();
    for param in &endpoint.params {
        let Some(value) = input.get(&param.field).filter(|v| !v.is_null()) else {
            if param.location == Location::Path {
                return Err(CallError::invalid_input(format!(
                    "`{}` is required (it is part of the path)",
                    param.field
                )));
            }
            continue;
        };
        match param.location {
            Location::Path => {
                path = path.replace(&format!("{{{}}}", param.name), &encode(&text(value)));
            }
            Location::Query => match value {
                Value::Array(items) => {
                    query.extend(items.iter().map(|v| (param.name.clone(), text(v))));
                }
                other => query.push((param.name.clone(), text(other))),
            },
            Location::Header => headers.push((param.name.clone(), text(value))),
        }
    }
    if let Some(key) = config::get("api_key")?
        && service.api_key_place.0 == "query"
    {
        query.push((service.api_key_place.1.clone(), key));
    }
    let mut url = format!("{}{path}", service.base_url);
    if !query.is_empty() {
        let pairs: Vec<String> = query
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect();
        url.push('?');
        url.push_str(&pairs.join("&"));
    }
    let accept = if endpoint.kind == Kind::Subscription {
        "text/event-stream"
    } else {
        "application/json"
    };
    let mut request = http::Request::with_method(&endpoint.method, url).header("accept", accept);
    for (name, value) in &headers {
        request = request.header(name, value);
    }
    if let Some(token) = config::get("bearer_token")? {
        request = request.bearer(&token);
    }
    if let Some(key) = config::get("api_key")?
        && service.api_key_place.0 == "header"
    {
        request = request.header(&service.api_key_place.1, &key);
    }
    if let (Some(media), Some(body)) = (&endpoint.body, input.get("body")) {
        request = if media == "application/x-www-form-urlencoded" {
            let form: Vec<String> = body
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| format!("{}={}", encode(k), encode(&text(v))))
                .collect();
            request
                .header("content-type", media)
                .body(form.join("&").into_bytes())
        } else {
            request.json(body)?
        };
    }
    Ok(request)
}

/// The output of a 2xx body: JSON when it parses, else the text.
fn output(body: &[u8]) -> Value {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Value::Null;
    }
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

/// Streams a `text/event-stream` response's events to the subscriber.
///
/// Unnamed and `message` events are the subscription's events. A Hearth
/// node's gateway ends its stream with `event: reply` (the call's
/// envelope, which becomes this call's `reply`) or `event: error` (which
/// fails this call with its text).
fn stream(request: http::Request) -> Result<Value, CallError> {
    let mut sse = hearth_sdk::sse::EventStream::default();
    let mut reply = Value::Null;
    let mut failure: Option<String> = None;
    let mut error_body = Vec::new();
    let mut delivered = 0u64;
    let head = request.send_streaming(|head, chunk| {
        if !(200..300).contains(&head.status) {
            error_body.extend_from_slice(chunk);
            return Ok(error_body.len() < 64 * 1024);
        }
        for event in sse.push(chunk) {
            let payload = output(event.data.as_bytes());
            match event.event.as_str() {
                "reply" => reply = payload,
                "error" => {
                    failure = Some(payload.to_string());
                    return Ok(false);
                }
                _ => match events::emit(&payload) {
                    Ok(()) => delivered += 1,
                    Err(e) if e.code == ErrorCode::Unavailable => return Ok(false),
                    Err(e) => return Err(e),
                },
            }
        }
        Ok(events::subscribed())
    })?;
    if !(200..300).contains(&head.status) {
        http::Response {
            status: head.status,
            headers: head.headers,
            body: error_body,
        }
        .error_for_status()?;
    }
    if let Some(text) = failure {
        return Err(CallError::failed(format!(
            "the service ended the stream with an error: {text}"
        )));
    }
    Ok(serde_json::json!({ "events": delivered, "reply": reply }))
}

struct OpenApi;

impl Plugin for OpenApi {
    fn operations(_ops: &mut Operations) {}

    fn discover() -> Result<Vec<DynamicOp>, CallError> {
        let service = service()?;
        Ok(service
            .endpoints
            .iter()
            .map(|e| DynamicOp {
                name: e.name.clone(),
                kind: match e.kind {
                    Kind::Query => OpKind::Query,
                    Kind::Mutation => OpKind::Mutation,
                    Kind::Subscription => OpKind::Subscription,
                },
                description: e.description.clone(),
                input_schema: e.input_schema.clone(),
                output_schema: if e.kind == Kind::Subscription {
                    serde_json::json!({
                        "type": "object",
                        "properties": {
                            "events": { "type": "integer" },
                            "reply": { "description": "The stream's closing reply, when it sends one" }
                        }
                    })
                } else {
                    e.output_schema.clone()
                },
                scopes: Vec::new(),
                event_schema: (e.kind == Kind::Subscription).then(|| e.output_schema.clone()),
            })
            .collect())
    }

    fn call_dynamic(_cx: &Context, op: &str, input: Value) -> Result<Value, CallError> {
        let service = service()?;
        let endpoint = service
            .endpoints
            .iter()
            .find(|e| e.name == op)
            .ok_or_else(|| CallError::not_found(format!("this service has no operation `{op}`")))?;
        let request = request(service, endpoint, &input)?;
        if endpoint.kind == Kind::Subscription {
            return stream(request);
        }
        let response = request.send()?.error_for_status()?;
        Ok(output(&response.body))
    }
}

hearth_sdk::export_plugin!(OpenApi);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_percent_encoded() {
        assert_eq!(encode("a b/c?d"), "a%20b%2Fc%3Fd");
        assert_eq!(encode("ok-._~"), "ok-._~");
        assert_eq!(text(&serde_json::json!(5)), "5");
        assert_eq!(text(&serde_json::json!("x")), "x");
    }

    #[test]
    fn a_relative_server_joins_the_documents_origin() {
        let doc = serde_json::json!({ "servers": [{ "url": "/v1" }] });
        assert_eq!(
            default_base(&doc, Some("http://127.0.0.1:8080/openapi.json")).as_deref(),
            Some("http://127.0.0.1:8080/v1")
        );
        assert_eq!(default_base(&doc, None), None);
    }

    #[test]
    fn bodies_become_json_or_text() {
        assert_eq!(output(b""), Value::Null);
        assert_eq!(output(b"{\"a\":1}")["a"], 1);
        assert_eq!(output(b"plain"), Value::String("plain".into()));
    }
}
