//! Adapters: the `openapi` plugin turning a real OpenAPI service's
//! endpoints into operations — the Swagger Petstore served by Prism, and
//! another Hearth node's own gateway document.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hearth_tests::TestNode;

/// A server the test started, listening on `port`; killed on drop.
pub(crate) struct Server {
    child: Child,
    pub(crate) port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nothing listens on now and that no other test of this run was
/// given: the kernel may hand the same free port to two tests starting
/// servers at once, and `serve` would then take the other's for its own.
pub(crate) fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// Starts `command` (told its port by `port`) and waits until it listens.
pub(crate) fn serve(what: &str, mut command: Command, port: u16) -> Server {
    let child = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {what}: {e}"));
    let server = Server { child, port };
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(200));
    }
    server
}

/// A Prism mock server for `document`.
fn prism(document: &std::path::Path) -> Server {
    let dir = hearth_tests::require_npm("prism", &["@stoplight/prism-cli@5"]);
    let port = free_port();
    let mut command = Command::new(dir.join("node_modules/.bin/prism"));
    command
        .args(["mock", "--host", "127.0.0.1", "--port", &port.to_string()])
        .arg(document);
    serve("prism", command, port)
}

fn petstore_node(prism: &Server, extra: &str) -> TestNode {
    let fixture = hearth_tests::repo_root().join("tests/fixtures/petstore-3.0.json");
    TestNode::start_with_stack(&format!(
        r#"
[plugins.petstore]
component = "openapi"
grants.http = ["http://127.0.0.1:{port}"]
[plugins.petstore.config]
document = {{ file = {fixture:?} }}
base_url = "http://127.0.0.1:{port}"
{extra}
"#,
        port = prism.port,
        fixture = fixture.display().to_string(),
    ))
}

#[test]
fn the_petstore_endpoints_become_operations_served_by_prism() {
    let fixture = hearth_tests::repo_root().join("tests/fixtures/petstore-3.0.json");
    let prism = prism(&fixture);
    // The document asks for an API key on some operations and OAuth2 on
    // others; Prism checks that each is present.
    let node = petstore_node(
        &prism,
        "api_key = \"special-key\"\nbearer_token = \"a-token\"",
    );
    let ops = node.cli(&["ops", "--json"]).ok_json();
    let op = |name: &str| {
        ops.as_array()
            .unwrap()
            .iter()
            .find(|o| o["path"] == format!("/node/petstore/{name}"))
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in {ops}"))
    };
    assert_eq!(op("get-pet-by-id")["kind"], "query");
    assert_eq!(op("add-pet")["kind"], "mutation");
    assert_eq!(op("delete-pet")["kind"], "mutation");
    assert_eq!(op("find-pets-by-status")["kind"], "query");

    // A query with a path parameter.
    let pet = node
        .cli(&["call", "/node/petstore/get-pet-by-id", r#"{"petId": 1}"#])
        .ok_json();
    assert!(
        pet["name"].is_string() && pet["photoUrls"].is_array(),
        "{pet}"
    );
    // A query with an array query parameter.
    let found = node
        .cli(&[
            "call",
            "/node/petstore/find-pets-by-status",
            r#"{"status": ["available", "sold"]}"#,
        ])
        .ok_json();
    assert!(found.is_array(), "{found}");
    // A mutation with a JSON body.
    let order = node
        .cli(&[
            "call",
            "/node/petstore/place-order",
            r#"{"body": {"petId": 1, "quantity": 2, "status": "placed"}}"#,
        ])
        .ok_json();
    assert!(order.is_object(), "{order}");
    // The Petstore documents no 2xx answer for these: Prism answers with
    // the documented status, and the node maps it to its typed error.
    let added = node.cli(&[
        "call",
        "/node/petstore/add-pet",
        r#"{"body": {"name": "Rex", "photoUrls": ["http://example.com/rex.png"]}}"#,
    ]);
    assert!(added.stderr().contains("HTTP 405"), "{}", added.stderr());
    // A header parameter; 400 comes back as invalid-input.
    let deleted = node.cli(&[
        "call",
        "/node/petstore/delete-pet",
        r#"{"petId": 7, "api_key": "special-key"}"#,
    ]);
    assert!(
        deleted.stderr().contains("error[invalid-input]: HTTP 400"),
        "{}",
        deleted.stderr()
    );

    // Invalid input is refused by the node before any request is sent.
    let bad = node.cli(&[
        "call",
        "/node/petstore/get-pet-by-id",
        r#"{"petId": "seven"}"#,
    ]);
    assert!(bad.stderr().contains("invalid-input"), "{}", bad.stderr());
    let bad = node.cli(&[
        "call",
        "/node/petstore/add-pet",
        r#"{"body": {"name": "Rex"}}"#,
    ]);
    assert!(
        bad.stderr().contains("invalid-input") && bad.stderr().contains("photoUrls"),
        "{}",
        bad.stderr()
    );
}

#[test]
fn a_missing_credential_comes_back_as_denied() {
    let fixture = hearth_tests::repo_root().join("tests/fixtures/petstore-3.0.json");
    let prism = prism(&fixture);
    // No api_key: Prism enforces the document's security requirement.
    let node = petstore_node(&prism, "");
    let out = node.cli(&["call", "/node/petstore/get-pet-by-id", r#"{"petId": 1}"#]);
    assert_eq!(out.code(), 1);
    assert!(
        out.stderr().contains("denied") && out.stderr().contains("HTTP 401"),
        "{}",
        out.stderr()
    );
}

#[test]
fn one_node_calls_anothers_operations_through_its_openapi_document() {
    let serving = TestNode::start_with_stack(
        "[gateway]\nenabled = true\nlisten = \"127.0.0.1:0\"\n[plugins.echo]\ngrants.kv = true\n",
    );
    let gateway = serving.gateway();
    let port = gateway
        .base
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .to_owned();
    let calling = TestNode::start_with_stack(&format!(
        r#"
[plugins.remote]
component = "openapi"
grants.http = ["http://127.0.0.1:{port}"]
[plugins.remote.config]
document = "{base}/openapi.json"
bearer_token = "{token}"
include = ["echo"]

[plugins.relay]
grants.env = ["/node/remote/*"]
"#,
        base = gateway.base.trim_end_matches('/'),
        token = gateway.token,
    ));
    let ops = calling.cli(&["ops", "--json"]).ok_json();
    let ping = remote_op(&ops, "ping");
    // The serving node's own document says what kind each operation is.
    assert_eq!(ping["kind"], "query");
    let path = ping["path"].as_str().unwrap().to_owned();
    let out = calling
        .cli(&["call", &path, r#"{"body": {"msg": "over http"}}"#])
        .ok_json();
    assert_eq!(out["output"]["msg"], "over http", "{out}");
    // A plugin composes with the adapted operation through env.
    let relayed = calling.cli(&[
        "call",
        "/node/relay/forward",
        &serde_json::json!({ "path": path, "input": { "body": { "msg": "via relay" } } })
            .to_string(),
    ]);
    assert!(
        relayed.stdout().contains("via relay"),
        "{}{}",
        relayed.stdout(),
        relayed.stderr()
    );
}

/// `server-everything` over Streamable HTTP on a free port.
/// The operation the `remote` adapter made of another node's operation
/// whose name ends with `suffix`.
fn remote_op(ops: &serde_json::Value, suffix: &str) -> serde_json::Value {
    ops.as_array()
        .unwrap()
        .iter()
        .find(|o| {
            o["path"]
                .as_str()
                .is_some_and(|p| p.starts_with("/node/remote/") && p.ends_with(suffix))
        })
        .cloned()
        .unwrap_or_else(|| panic!("no /node/remote/…{suffix} in {ops}"))
}

fn everything() -> Server {
    let dir = hearth_tests::require_npm(
        "mcp-everything",
        &["@modelcontextprotocol/server-everything"],
    );
    let port = free_port();
    let mut command = Command::new("node");
    command
        .arg(dir.join("node_modules/@modelcontextprotocol/server-everything/dist/index.js"))
        .arg("streamableHttp")
        .env("PORT", port.to_string());
    serve("server-everything", command, port)
}

#[test]
fn an_mcp_servers_tools_become_operations() {
    let server = everything();
    let node = TestNode::start_with_stack(&format!(
        r#"
[plugins.everything]
component = "mcp"
grants.http = ["http://127.0.0.1:{port}"]
config = {{ url = "http://127.0.0.1:{port}/mcp", exclude = ["trigger-sampling-request"] }}

[plugins.relay]
grants.env = ["/node/everything/*"]
"#,
        port = server.port
    ));
    let ops = node.cli(&["ops", "--json"]).ok_json();
    let op = |name: &str| {
        ops.as_array()
            .unwrap()
            .iter()
            .find(|o| o["path"] == format!("/node/everything/{name}"))
            .cloned()
    };
    // Read-only tools are queries; the rest mutations; excluded tools absent.
    assert_eq!(
        op("echo").unwrap_or_else(|| panic!("{ops}"))["kind"],
        "query"
    );
    assert_eq!(op("get-sum").unwrap()["kind"], "query");
    assert!(op("trigger-sampling-request").is_none());
    let structured = op("get-structured-content").unwrap();
    assert_eq!(
        structured["output_schema"]["properties"]["temperature"]["type"],
        "number"
    );

    let echo = node
        .cli(&[
            "call",
            "/node/everything/echo",
            r#"{"message":"hello mcp"}"#,
        ])
        .ok_json();
    assert!(echo.to_string().contains("hello mcp"), "{echo}");
    let sum = node
        .cli(&["call", "/node/everything/get-sum", r#"{"a": 2, "b": 40}"#])
        .ok_json();
    assert!(sum.to_string().contains("42"), "{sum}");
    // Structured content is the output.
    let weather = node
        .cli(&[
            "call",
            "/node/everything/get-structured-content",
            r#"{"location":"Chicago"}"#,
        ])
        .ok_json();
    assert!(weather["temperature"].is_number(), "{weather}");
    // The tool's input schema is checked by the node.
    let bad = node.cli(&[
        "call",
        "/node/everything/get-sum",
        r#"{"a": "two", "b": 40}"#,
    ]);
    assert!(bad.stderr().contains("invalid-input"), "{}", bad.stderr());
    // A tool's own failure (`isError`) is a failed call with its text.
    let failed = node.cli(&[
        "call",
        "/node/everything/get-resource-reference",
        r#"{"resourceId": 0}"#,
    ]);
    assert!(
        failed.stderr().contains("error[failed]") && failed.stderr().contains("Invalid resourceId"),
        "{}",
        failed.stderr()
    );
    // A long-running tool ends at the caller's deadline.
    let started = Instant::now();
    let slow = node.cli(&[
        "call",
        "--timeout-ms",
        "1500",
        "/node/everything/trigger-long-running-operation",
        r#"{"duration": 20, "steps": 4}"#,
    ]);
    assert!(
        slow.stderr().contains("error[timeout]"),
        "{}",
        slow.stderr()
    );
    assert!(started.elapsed() < Duration::from_secs(15));
    // A plugin composes with a tool through env.
    let relayed = node.cli(&[
        "call",
        "/node/relay/forward",
        r#"{"path": "/node/everything/get-sum", "input": {"a": 1, "b": 1}}"#,
    ]);
    assert!(
        relayed.stdout().contains('2'),
        "{}{}",
        relayed.stdout(),
        relayed.stderr()
    );
}

#[test]
fn a_served_subscription_streams_through_the_adapter() {
    let dir = tempfile::tempdir().unwrap();
    hearth_tests::test_plugin_dir(dir.path(), "catalog");
    let serving = TestNode::start_with_stack_in(
        dir,
        "[gateway]\nenabled = true\nlisten = \"127.0.0.1:0\"\n[plugins.catalog]\npath = \"catalog\"\n",
    );
    let gateway = serving.gateway();
    let port = gateway
        .base
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .to_owned();
    let calling = TestNode::start_with_stack(&format!(
        r#"
[plugins.remote]
component = "openapi"
grants.http = ["http://127.0.0.1:{port}"]
config = {{ document = "{base}/openapi.json", bearer_token = "{token}", include = ["catalog"] }}
"#,
        base = gateway.base.trim_end_matches('/'),
        token = gateway.token,
    ));
    let ops = calling.cli(&["ops", "--json"]).ok_json();
    let ticks = remote_op(&ops, "ticks");
    assert_eq!(ticks["kind"], "subscription");
    let out = calling.cli(&[
        "call",
        ticks["path"].as_str().unwrap(),
        r#"{"body": {"count": 3}}"#,
    ]);
    assert_eq!(out.code(), 0, "{}", out.stderr());
    let stdout = out.stdout();
    let events: Vec<serde_json::Value> = stdout
        .lines()
        .take(3)
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events[2]["n"], 2, "{stdout}");
    assert!(stdout.contains("\"events\": 3"), "{stdout}");
}

#[test]
fn a_remote_node_calls_an_adapted_tool_over_the_mesh() {
    let server = everything();
    let (head, worker) = (crate::mesh::seat("head"), crate::mesh::seat("worker"));
    let worker_rest = format!(
        "{}[plugins.everything]\ncomponent = \"mcp\"\ngrants.http = [\"http://127.0.0.1:{port}\"]\nconfig = {{ url = \"http://127.0.0.1:{port}/mcp\" }}\n",
        head.as_peer(true, "allow = [\"/node/everything/*\"]"),
        port = server.port
    );
    let head_rest = worker.as_peer(true, "");
    let worker = worker.start("", &worker_rest);
    let head = head.start("", &head_rest);
    crate::mesh::wait_for_state(&head, "worker", "connected");
    let out = head
        .cli(&[
            "call",
            "/worker/everything/get-sum",
            r#"{"a": 20, "b": 22}"#,
        ])
        .ok_json();
    assert!(out.to_string().contains("42"), "{out}");
    // The worker's grant still holds: nothing else of it is reachable.
    let denied = head.cli(&["call", "/worker/host/plugins", "{}"]);
    assert_eq!(denied.code(), 1, "{}", denied.stdout());
    drop(worker);
}

#[test]
fn a_stdio_mcp_servers_tools_work_on_files() {
    let dir = hearth_tests::require_npm(
        "mcp-filesystem",
        &["@modelcontextprotocol/server-filesystem"],
    );
    let script = dir.join("node_modules/@modelcontextprotocol/server-filesystem/dist/index.js");
    let share = tempfile::tempdir().unwrap();
    let share = share.path().canonicalize().unwrap();
    std::fs::write(share.join("hello.txt"), "hello from disk\n").unwrap();
    let argv = serde_json::json!([
        "node",
        script.display().to_string(),
        share.display().to_string()
    ]);
    let node = TestNode::start_with_stack(&format!(
        r#"
[plugins.files]
component = "mcp"
grants.process = [{argv}]
grants.process_env = ["PATH", "HOME"]
config = {{ command = {argv} }}
"#
    ));
    let ops = node.cli(&["ops", "--json"]).ok_json();
    let kind = |name: &str| {
        ops.as_array()
            .unwrap()
            .iter()
            .find(|o| o["path"] == format!("/node/files/{name}"))
            .map(|o| o["kind"].clone())
            .unwrap_or_else(|| panic!("no {name} in {ops}"))
    };
    // A read-only tool is a query; one that writes a mutation.
    assert_eq!(kind("read_text_file"), "query");
    assert_eq!(kind("list_directory"), "query");
    assert_eq!(kind("write_file"), "mutation");

    let path = |name: &str| share.join(name).display().to_string();
    let read = node
        .cli(&[
            "call",
            "/node/files/read_text_file",
            &serde_json::json!({ "path": path("hello.txt") }).to_string(),
        ])
        .ok_json();
    assert!(read.to_string().contains("hello from disk"), "{read}");
    node.cli(&[
        "call",
        "/node/files/write_file",
        &serde_json::json!({ "path": path("new.txt"), "content": "written by hearth" }).to_string(),
    ])
    .ok_json();
    assert_eq!(
        std::fs::read_to_string(share.join("new.txt")).unwrap(),
        "written by hearth"
    );
    let listed = node
        .cli(&[
            "call",
            "/node/files/list_directory",
            &serde_json::json!({ "path": share.display().to_string() }).to_string(),
        ])
        .ok_json();
    assert!(listed.to_string().contains("new.txt"), "{listed}");
    // Outside its directory the server refuses: a failed call with its text.
    let outside = node.cli(&[
        "call",
        "/node/files/read_text_file",
        r#"{"path": "/etc/hostname"}"#,
    ]);
    assert_eq!(outside.code(), 1, "{}", outside.stdout());
}

/// The repo's own MCP server (`tests/fixtures/mcp-fixture.mjs`), for what
/// the published servers do not show on demand.
fn fixture_script() -> String {
    hearth_tests::repo_root()
        .join("tests/fixtures/mcp-fixture.mjs")
        .display()
        .to_string()
}

/// `host ops --json` until `path` is listed (the host lists again soon
/// after a plugin says its operations changed).
fn wait_for_op(node: &TestNode, path: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ops = node.cli(&["ops", "--json"]).ok_json();
        if let Some(op) = ops.as_array().unwrap().iter().find(|o| o["path"] == path) {
            return op.clone();
        }
        assert!(Instant::now() < deadline, "{path} never listed: {ops}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn stats(node: &TestNode, plugin: &str) -> serde_json::Value {
    node.cli(&["call", &format!("/node/{plugin}/stats"), "{}"])
        .ok_json()
}

/// What both transports must show with the fixture server: one session
/// per server, a deadline cancelling the request on the server, pings
/// answered, tool changes followed, a crash mid-call reported.
fn abandon_ping_and_change(node: &TestNode, plugin: &str) {
    let call = |op: &str, input: &str| node.cli(&["call", &format!("/node/{plugin}/{op}"), input]);
    let echo = call("echo", r#"{"text":"one"}"#).ok_json();
    assert!(echo.to_string().contains("one"), "{echo}");
    call("echo", r#"{"text":"two"}"#).ok_json();

    // A call that outlives its deadline is cancelled on the server.
    let slow = node.cli(&[
        "call",
        "--timeout-ms",
        "800",
        &format!("/node/{plugin}/slow"),
        "{}",
    ]);
    assert!(
        slow.stderr().contains("error[timeout]"),
        "{}",
        slow.stderr()
    );
    let seen = stats(node, plugin);
    let cancelled = seen["cancelled"].as_array().unwrap();
    assert_eq!(cancelled.len(), 1, "{seen}");
    assert!(cancelled[0]["requestId"].is_string(), "{seen}");

    // A server's request in the middle of a call is answered.
    let pinged = call("ask_ping", "{}").ok_json();
    assert!(
        pinged.to_string().contains("client answered {}"),
        "{pinged}"
    );

    // A new tool announced with tools/list_changed becomes an operation.
    call("add_tool", r#"{"name":"lateComer"}"#).ok_json();
    let late = wait_for_op(node, &format!("/node/{plugin}/late-comer"));
    assert_eq!(late["kind"], "mutation");
    let called = call("late-comer", "{}").ok_json();
    assert!(called.to_string().contains("called lateComer"), "{called}");

    // The server dies in the middle of a call: `unavailable`.
    let crashed = call("crash", "{}");
    assert!(
        crashed.stderr().contains("error[unavailable]"),
        "{}",
        crashed.stderr()
    );
}

#[test]
fn a_stdio_server_keeps_one_session_is_cancelled_followed_and_restarted() {
    let argv = serde_json::json!(["node", fixture_script()]);
    let node = TestNode::start_with_stack(&format!(
        r#"
[plugins.fx]
component = "mcp"
grants.process = [{argv}]
grants.process_env = ["PATH"]
config = {{ command = {argv} }}
"#
    ));
    assert_eq!(
        wait_for_op(&node, "/node/fx/echo")["kind"],
        "query",
        "a read-only tool is a query"
    );
    abandon_ping_and_change(&node, "fx");
    // Listing and every call above shared one session with the process.
    // After the crash the host starts it again, and the next call opens
    // the new process's one session.
    let echo = node
        .cli(&["call", "/node/fx/echo", r#"{"text":"back"}"#])
        .ok_json();
    assert!(echo.to_string().contains("back"), "{echo}");
    let after = stats(&node, "fx");
    assert_eq!(after["initialized"], 1, "{after}");
    assert!(node.logs().contains("process exited"), "{}", node.logs());
}

#[test]
fn an_http_server_is_cancelled_followed_and_reconnected_after_a_crash() {
    let port = free_port();
    let start = || {
        let mut command = Command::new("node");
        command.args([fixture_script(), "--http".into(), port.to_string()]);
        serve("mcp fixture", command, port)
    };
    let server = start();
    let node = TestNode::start_with_stack(&format!(
        r#"
[plugins.fx]
component = "mcp"
grants.http = ["http://127.0.0.1:{port}"]
config = {{ url = "http://127.0.0.1:{port}/mcp" }}
"#
    ));
    abandon_ping_and_change(&node, "fx");
    drop(server);
    // The server comes back without the old session: the plugin opens a
    // new one (its 404 for the old session id) and the call goes through.
    let _server = start();
    let echo = node
        .cli(&["call", "/node/fx/echo", r#"{"text":"back"}"#])
        .ok_json();
    assert!(echo.to_string().contains("back"), "{echo}");
}

/// The operator guide's walk-through, as written: `examples/adapters.sh`
/// runs `examples/adapters.toml` (the filesystem server through npx, the
/// Petstore through Prism), pairs a second node, and calls the adapted
/// operations from the CLI, through `env` and over the mesh.
#[test]
fn the_adapters_example_runs_as_the_operator_guide_says() {
    let prism = hearth_tests::require_npm("prism", &["@stoplight/prism-cli@5"]);
    let dir = tempfile::tempdir().unwrap();
    let script = hearth_tests::repo_root().join("examples/adapters.sh");
    let run = |args: &[&std::ffi::OsStr]| {
        Command::new("bash")
            .arg(&script)
            .args(args)
            .env("HOST", hearth_tests::host_bin())
            .env("PRISM", prism.join("node_modules/.bin/prism"))
            .output()
            .unwrap()
    };
    let out = run(&[dir.path().as_os_str()]);
    let stop = run(&["stop".as_ref(), dir.path().as_os_str()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stop.status.success());
    for expected in [
        "/node/files/read_text_file  (query, files)",
        "/node/files/write_file  (mutation, files)",
        "/node/petstore/get-pet-by-id  (query, petstore)",
        "hello from the share",
        "Successfully wrote to /tmp/hearth-share/from-cli.txt",
        "\"name\": \"doggie\"",
        "[FILE] from-cli.txt",
        "\"content\": \"written through hearth\"",
        "\"status\": \"placed\"",
    ] {
        assert!(stdout.contains(expected), "no {expected:?} in:\n{stdout}");
    }
}
