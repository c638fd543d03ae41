//! `catalog`: a test-only dynamic plugin.
//!
//! At load it fetches the operation list from the URL in its `catalog`
//! config key (over HTTP the operator granted) and offers each entry as an
//! operation; a call to one is posted to `{backend}/call/{name}`. Static
//! operations beside them: `fetch` (GET any URL, for grant tests),
//! `refresh` (tell the host the list changed) and `ticks` (a subscription
//! streaming `count` events).

use hearth_sdk::prelude::*;
use hearth_sdk::{DynamicOp, OpKind, discovery};

/// One entry of the catalog, as served.
#[derive(Deserialize)]
struct Entry {
    name: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    description: String,
    input_schema: serde_json::Value,
    #[serde(default = "any_schema")]
    output_schema: serde_json::Value,
}

fn any_schema() -> serde_json::Value {
    serde_json::json!({})
}

fn config(key: &str) -> Result<String, CallError> {
    config::get(key)?
        .ok_or_else(|| CallError::invalid_input(format!("config key `{key}` is not set")))
}

#[derive(Deserialize, JsonSchema)]
struct FetchInput {
    /// The URL to GET.
    url: String,
    /// Per-request timeout in milliseconds (the call's deadline wins).
    timeout_ms: Option<u64>,
}

#[derive(Serialize, JsonSchema)]
struct Fetched {
    status: u16,
    body: String,
}

/// GETs a URL and returns the status and body.
fn fetch(_cx: &Context, input: FetchInput) -> Result<Fetched, CallError> {
    let mut request = http::get(&input.url);
    if let Some(ms) = input.timeout_ms {
        request = request.timeout(std::time::Duration::from_millis(ms));
    }
    let response = request.send()?;
    Ok(Fetched {
        status: response.status,
        body: response.text(),
    })
}

#[derive(Deserialize, JsonSchema)]
struct Empty {}

#[derive(Serialize, JsonSchema)]
struct Done {
    ok: bool,
}

/// Tells the host the catalog changed.
fn refresh(_cx: &Context, _input: Empty) -> Result<Done, CallError> {
    discovery::operations_changed();
    Ok(Done { ok: true })
}

#[derive(Deserialize, JsonSchema)]
struct TicksInput {
    /// How many events to send.
    count: u32,
}

/// One event of `ticks`.
#[derive(Serialize, JsonSchema)]
struct Tick {
    n: u32,
}

/// Streams `count` ticks, then ends.
fn ticks(_cx: &Context, input: TicksInput) -> Result<Done, CallError> {
    for n in 0..input.count {
        if !events::subscribed() {
            break;
        }
        events::emit(&Tick { n })?;
    }
    Ok(Done { ok: true })
}

#[derive(Deserialize, JsonSchema)]
struct ConverseInput {
    /// The granted command.
    argv: Vec<String>,
    /// Lines to write; one line is read back after each.
    lines: Vec<String>,
}

#[derive(Serialize, JsonSchema)]
struct Conversation {
    /// The process's start count when the call began.
    generation: u64,
    /// What it answered, line by line (`null`: nothing within 5 s).
    replies: Vec<Option<String>>,
}

#[derive(Deserialize, JsonSchema)]
struct RunInput {
    /// The granted command.
    argv: Vec<String>,
    /// Its standard input.
    #[serde(default)]
    stdin: String,
}

#[derive(Serialize, JsonSchema)]
struct Ran {
    status: Option<i32>,
    /// The first 200 bytes of its output, as text.
    stdout: String,
    stdout_bytes: usize,
    stderr: String,
}

#[derive(Deserialize, JsonSchema)]
struct FileInput {
    /// `write`, `read`, `rename`, `remove`, `list` or `root`.
    op: String,
    #[serde(default)]
    path: String,
    /// What to write; the new name for `rename`.
    #[serde(default)]
    data: String,
    #[serde(default)]
    mode: u32,
}

/// One `files` operation, its result as JSON.
fn file(_cx: &Context, input: FileInput) -> Result<serde_json::Value, CallError> {
    use hearth_sdk::files;
    Ok(match input.op.as_str() {
        "write" => {
            files::write(&input.path, input.data.as_bytes(), input.mode)?;
            serde_json::Value::Null
        }
        "read" => serde_json::json!(files::read_string(&input.path)?),
        "rename" => {
            files::rename(&input.path, &input.data)?;
            serde_json::Value::Null
        }
        "remove" => serde_json::json!(files::remove(&input.path)?),
        "list" => serde_json::json!(
            files::list(&input.path)?
                .into_iter()
                .map(|e| serde_json::json!({"name": e.name, "dir": e.dir, "mode": e.mode, "size": e.size}))
                .collect::<Vec<_>>()
        ),
        _ => serde_json::json!(files::root()?),
    })
}

/// Runs a granted command to completion.
fn run(_cx: &Context, input: RunInput) -> Result<Ran, CallError> {
    let out = hearth_sdk::process::run(&input.argv, input.stdin.as_bytes())?;
    Ok(Ran {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout[..out.stdout.len().min(200)]).into_owned(),
        stdout_bytes: out.stdout.len(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Writes each line to a granted process and reads one line back.
fn converse(_cx: &Context, input: ConverseInput) -> Result<Conversation, CallError> {
    let generation = hearth_sdk::process::generation(&input.argv)?;
    let mut replies = Vec::new();
    for line in &input.lines {
        hearth_sdk::process::write_line(&input.argv, line)?;
        replies.push(hearth_sdk::process::read_line(&input.argv, 5000)?);
    }
    Ok(Conversation {
        generation,
        replies,
    })
}

struct Catalog;

impl Plugin for Catalog {
    fn operations(ops: &mut Operations) {
        ops.query("fetch", "GET a URL (within grants.http).", fetch);
        ops.mutation(
            "refresh",
            "Ask the host to list the operations again.",
            refresh,
        );
        ops.mutation("run", "Runs a granted command to completion.", run);
        ops.mutation("file", "One operation of the files capability.", file);
        ops.mutation(
            "converse",
            "Write lines to a granted process, reading one back after each.",
            converse,
        );
        ops.subscription("ticks", "Stream `count` ticks.", ticks)
            .emits::<Tick>();
    }

    fn discover() -> Result<Vec<DynamicOp>, CallError> {
        let Some(url) = config::get("catalog")? else {
            return Ok(Vec::new());
        };
        let entries: Vec<Entry> = http::get(&url).send()?.error_for_status()?.json()?;
        Ok(entries
            .into_iter()
            .map(|e| DynamicOp {
                name: e.name,
                kind: if e.kind == "query" {
                    OpKind::Query
                } else {
                    OpKind::Mutation
                },
                description: e.description,
                input_schema: e.input_schema,
                output_schema: e.output_schema,
                scopes: Vec::new(),
                event_schema: None,
            })
            .collect())
    }

    fn call_dynamic(
        _cx: &Context,
        op: &str,
        input: serde_json::Value,
    ) -> Result<serde_json::Value, CallError> {
        let backend = config("backend")?;
        http::post(format!("{backend}/call/{op}"))
            .json(&input)?
            .send()?
            .error_for_status()?
            .json()
    }
}

hearth_sdk::export_plugin!(Catalog);
