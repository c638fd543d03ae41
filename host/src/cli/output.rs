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

/// `host id`: the `[peers.<name>]` entry another operator pastes into
/// their `stack.toml` to pair with this node.
pub fn print_identity(id: &Value, json: bool) {
    if json {
        out!("{}", pretty(id));
        return;
    }
    let s = |name: &str| id[name].as_str().unwrap_or_default().to_owned();
    let node = id["node"].as_str().unwrap_or("this-node");
    if id["ephemeral"].as_bool().unwrap_or(false) {
        out!(
            "# ephemeral: no vault on this node, so this key lasts until it stops (`host vault init`)"
        );
    } else {
        out!("# node `{node}`: ed25519 {} (SLIP-0010)", s("path"));
    }
    out!("# fingerprint: {}", s("fingerprint"));
    out!("# To pair, paste this into the other node's stack.toml, and grant there");
    out!("# what this node may call with `allow = [\"/node/echo/*\"]` (nothing by default).");
    out!("[peers.{node}]");
    out!("public_key = \"{}\"", s("public_key"));
    match id["address"].as_str() {
        Some(address) => out!("address = \"{address}\""),
        None => out!(
            "# address = \"…\"  (this node does not accept peers: set `mesh.listen` to be dialed)"
        ),
    }
}

/// `host peers`: one line per peer, then its details.
pub fn print_peers(peers: &Value, json: bool) {
    if json {
        out!("{}", pretty(peers));
        return;
    }
    let list = peers["peers"].as_array().cloned().unwrap_or_default();
    let listen = peers["listen"].as_str().unwrap_or("not listening");
    out!(
        "node `{}` ({listen}): {} peer(s)",
        peers["node"].as_str().unwrap_or_default(),
        list.len()
    );
    for p in &list {
        let s = |name: &str| p[name].as_str().unwrap_or_default().to_owned();
        let strings = |name: &str| -> Vec<String> {
            p[name]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        };
        let rtt = p["rtt_ms"]
            .as_f64()
            .map(|ms| format!("  rtt {ms:.2} ms"))
            .unwrap_or_default();
        let direction = p["direction"]
            .as_str()
            .map(|d| format!(" ({d})"))
            .unwrap_or_default();
        out!(
            "{}  {}{direction}{rtt}  {}",
            s("name"),
            s("state"),
            p["address"].as_str().unwrap_or("(dials us)")
        );
        out!("    key: {} ({})", s("public_key"), s("fingerprint"));
        if s("state") == "connected" {
            out!(
                "    features: {}  version: {}",
                strings("features").join(", "),
                s("version")
            );
        }
        if let Some(error) = p["last_error"].as_str() {
            out!("    last error: {error}");
        }
        out!(
            "    may call here: [{}]  scopes: [{}]",
            strings("allow").join(", "),
            strings("scopes").join(", ")
        );
    }
}

/// `host version`: this node's versions and mesh features.
pub fn print_version(version: &Value, json: bool) {
    if json {
        out!("{}", pretty(version));
        return;
    }
    let list = |v: &Value| -> String {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mesh = &version["mesh"];
    out!(
        "host {} (node `{}`)",
        version["version"].as_str().unwrap_or_default(),
        version["node"].as_str().unwrap_or_default()
    );
    out!("wit: {}", version["wit"].as_str().unwrap_or_default());
    out!("socket protocol: {}", version["protocol"]);
    out!("mesh protocol: {}", mesh["protocol"]);
    out!("features required: {}", list(&mesh["required"]));
    out!("features optional: {}", list(&mesh["optional"]));
    out!("features supported: {}", list(&mesh["supported"]));
    if let Some(negotiated) = version["negotiated"].as_object() {
        for (peer, features) in negotiated {
            out!("negotiated with {peer}: {}", list(features));
        }
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
