//! How the CLI prints responses, listings and errors, as text or `--json`.

use hearth_registry::ResponseEnvelope;
use serde_json::Value;

use crate::client::ClientError;

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

/// `host ops`: one block per operation with its schemas on one line each.
pub fn print_ops(ops: &Value, json: bool) {
    if json {
        out!("{}", pretty(ops));
        return;
    }
    for op in ops.as_array().into_iter().flatten() {
        let field = |name: &str| op[name].as_str().unwrap_or_default().to_owned();
        out!("{}  ({}, {})", field("path"), field("kind"), field("owner"));
        out!("    {}", field("description"));
        let scopes: Vec<&str> = op["scopes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if !scopes.is_empty() {
            out!("    scopes: {}", scopes.join(", "));
        }
        out!("    input:  {}", op["input_schema"]);
        out!("    output: {}", op["output_schema"]);
    }
}

/// `host plugins`: one line per plugin, then its grants.
pub fn print_plugins(plugins: &Value, json: bool) {
    if json {
        out!("{}", pretty(plugins));
        return;
    }
    for p in plugins.as_array().into_iter().flatten() {
        let s = |name: &str| p[name].as_str().unwrap_or_default().to_owned();
        out!(
            "{} {}  ({}; {} operations; cache {})",
            s("name"),
            s("version"),
            s("origin"),
            p["operations"].as_array().map_or(0, Vec::len),
            s("cache")
        );
        if !s("description").is_empty() {
            out!("    {}", s("description"));
        }
        let env: Vec<&str> = p["grants"]["env"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let vault: Vec<&str> = p["grants"]["vault"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        out!(
            "    grants: kv={} env=[{}] vault=[{}]",
            p["grants"]["kv"].as_bool().unwrap_or(false),
            env.join(", "),
            vault.join(", ")
        );
    }
}

/// `host id`.
pub fn print_identity(id: &Value, json: bool) {
    if json {
        out!("{}", pretty(id));
        return;
    }
    let s = |name: &str| id[name].as_str().unwrap_or_default().to_owned();
    out!("{}", s("public_key"));
    out!("fingerprint: {}", s("fingerprint"));
    if id["ephemeral"].as_bool().unwrap_or(false) {
        out!(
            "ephemeral: no vault on this node, so this key lasts until it stops (`host vault init`)"
        );
    } else {
        out!("path: {} (ed25519, SLIP-0010)", s("path"));
    }
}

/// `host vault status|lock|unlock`.
pub fn print_vault_status(status: &Value, json: bool) {
    if json {
        out!("{}", pretty(status));
        return;
    }
    out!("vault: {}", status["state"].as_str().unwrap_or_default());
    out!(
        "identity: {} ({})",
        status["identity"]["public_key"]
            .as_str()
            .unwrap_or_default(),
        status["identity"]["fingerprint"]
            .as_str()
            .unwrap_or_default()
    );
    out!("file: {}", status["file"].as_str().unwrap_or_default());
    if status["memory_locked"] == Value::Bool(false) {
        out!("warning: the seed's memory page could not be locked against swap (RLIMIT_MEMLOCK)");
    }
}

/// One subscription event, as a JSON line, flushed at once.
pub fn print_event(event: &str) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{event}");
    let _ = stdout.flush();
}
