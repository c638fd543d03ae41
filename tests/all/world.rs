//! Plugin world 0.2: outbound HTTP within `grants.http`, operations
//! discovered at load (over granted HTTP) and when they change, events a
//! subscription emits. Against real HTTP servers started by the tests.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hearth_tests::{HttpReply, HttpServer, TestNode};

/// A node running the `catalog` test plugin under `[plugins.catalog]`
/// with `extra` appended to its table.
fn catalog_node(extra: &str) -> TestNode {
    let dir = tempfile::tempdir().unwrap();
    hearth_tests::test_plugin_dir(dir.path(), "catalog");
    TestNode::start_with_stack_in(
        dir,
        &format!("[plugins.catalog]\npath = \"catalog\"\n{extra}\n"),
    )
}

/// What `host serve` printed refusing the `catalog` plugin with `extra`.
fn catalog_refused(extra: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    hearth_tests::test_plugin_dir(dir.path(), "catalog");
    crate::config::serve_refused(
        dir.path(),
        &format!("[plugins.catalog]\npath = \"catalog\"\n{extra}\n"),
    )
}

fn fetch(node: &TestNode, url: &str) -> hearth_tests::CliOutput {
    node.cli(&[
        "call",
        "/node/catalog/fetch",
        &serde_json::json!({ "url": url }).to_string(),
    ])
}

#[test]
fn an_http_grant_allows_its_origin_and_denies_every_other() {
    let granted = HttpServer::start(|_, _, _| HttpReply::ok(r#"{"hello":"world"}"#));
    let other = HttpServer::start(|_, _, _| HttpReply::ok("{}"));
    let node = catalog_node(&format!(
        "grants.http = [\"http://127.0.0.1:{}\"]",
        granted.port
    ));
    let out = fetch(&node, &granted.url("/greeting")).ok_json();
    assert_eq!(out["status"], 200);
    assert_eq!(out["body"], r#"{"hello":"world"}"#);
    assert_eq!(granted.hits(), ["GET /greeting"]);

    let denied = fetch(&node, &other.url("/x"));
    assert_eq!(denied.code(), 1);
    let origin = format!("http://127.0.0.1:{}", other.port);
    assert!(
        denied.stderr().contains("denied")
            && denied
                .stderr()
                .contains(&format!("add \"{origin}\" to `grants.http`")),
        "{}",
        denied.stderr()
    );
    assert!(other.hits().is_empty(), "nothing reached the other server");
    // The node's log names the plugin and the line to add.
    assert!(
        node.logs()
            .contains("outbound HTTP denied: origin not granted"),
        "{}",
        node.logs()
    );
}

#[test]
fn a_name_resolving_to_loopback_needs_a_grant_naming_it() {
    let server = HttpServer::start(|_, _, _| HttpReply::ok("{}"));
    // A wildcard host covers `localhost` by name, but not the address it
    // resolves to.
    let wildcard = catalog_node(&format!("grants.http = [\"http://*:{}\"]", server.port));
    for url in [
        format!("http://localhost:{}/", server.port),
        format!("http://127.0.0.1:{}/", server.port),
    ] {
        let out = fetch(&wildcard, &url);
        assert_eq!(out.code(), 1, "{url}");
        assert!(
            out.stderr()
                .contains("resolves to a loopback, private or link-local address"),
            "{}",
            out.stderr()
        );
    }
    assert!(server.hits().is_empty());
    // Named exactly, it is allowed.
    let named = catalog_node(&format!(
        "grants.http = [\"http://localhost:{}\"]",
        server.port
    ));
    let out = fetch(&named, &format!("http://localhost:{}/ok", server.port)).ok_json();
    assert_eq!(out["status"], 200);
    assert_eq!(server.hits(), ["GET /ok"]);
}

#[test]
fn a_slow_server_is_cut_at_the_calls_deadline() {
    let slow = HttpServer::start(|_, _, _| HttpReply {
        status: 200,
        body: "{}".into(),
        delay: Duration::from_secs(20),
    });
    let node = catalog_node(&format!(
        "grants.http = [\"http://127.0.0.1:{}\"]",
        slow.port
    ));
    let started = Instant::now();
    let out = node.cli(&[
        "call",
        "--timeout-ms",
        "1500",
        "/node/catalog/fetch",
        &serde_json::json!({ "url": slow.url("/slow") }).to_string(),
    ]);
    let took = started.elapsed();
    assert_eq!(out.code(), 1);
    assert!(out.stderr().contains("timeout"), "{}", out.stderr());
    // Cut by the deadline, not by the server finally answering.
    assert!(took < Duration::from_secs(15), "took {took:?}");
    assert_eq!(slow.hits(), ["GET /slow"]);
}

/// The catalog server: `/ops.json` lists `ops`, `/call/{name}` answers
/// `{"called": name, "input": …}`.
fn catalog_server(ops: Arc<Mutex<serde_json::Value>>) -> HttpServer {
    HttpServer::start(move |method, path, body| {
        if path == "/ops.json" {
            return HttpReply::ok(ops.lock().unwrap().to_string());
        }
        if let Some(name) = path.strip_prefix("/call/") {
            assert_eq!(method, "POST");
            let input: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
            return HttpReply::ok(
                serde_json::json!({ "called": name, "input": input }).to_string(),
            );
        }
        HttpReply {
            status: 404,
            body: "{}".into(),
            delay: Duration::ZERO,
        }
    })
}

fn op(name: &str) -> serde_json::Value {
    serde_json::json!({
        "name": name,
        "kind": "query",
        "description": format!("The {name} operation."),
        "input_schema": {
            "type": "object",
            "properties": { "city": { "type": "string" } },
            "required": ["city"]
        }
    })
}

fn listed(node: &TestNode) -> Vec<String> {
    node.cli(&["ops", "--json"])
        .ok_json()
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o["path"].as_str())
        .filter(|p| p.starts_with("/node/catalog/"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_dynamic_plugin_lists_its_operations_over_http_at_load_and_again_when_told() {
    let ops = Arc::new(Mutex::new(serde_json::json!([op("weather")])));
    let server = catalog_server(ops.clone());
    let node = catalog_node(&format!(
        "grants.http = [\"http://127.0.0.1:{port}\"]\nconfig = {{ catalog = \"{}\", backend = \"{}\" }}",
        server.url("/ops.json"),
        server.url(""),
        port = server.port,
    ));
    assert_eq!(
        listed(&node),
        [
            "/node/catalog/converse",
            "/node/catalog/fetch",
            "/node/catalog/file",
            "/node/catalog/refresh",
            "/node/catalog/run",
            "/node/catalog/ticks",
            "/node/catalog/weather"
        ]
    );
    // A discovered operation is validated like any other, then served.
    let bad = node.cli(&["call", "/node/catalog/weather", r#"{"city": 7}"#]);
    assert_eq!(bad.code(), 1);
    assert!(bad.stderr().contains("/city"), "{}", bad.stderr());
    let out = node
        .cli(&["call", "/node/catalog/weather", r#"{"city":"Oslo"}"#])
        .ok_json();
    assert_eq!(out["called"], "weather");
    assert_eq!(out["input"]["city"], "Oslo");

    // The catalog changes; the plugin tells the host, which asks again.
    *ops.lock().unwrap() = serde_json::json!([op("forecast")]);
    node.cli(&["call", "/node/catalog/refresh", "{}"]).ok_json();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !listed(&node).contains(&"/node/catalog/forecast".to_owned()) {
        assert!(
            Instant::now() < deadline,
            "routes never changed: {:?}",
            listed(&node)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!listed(&node).contains(&"/node/catalog/weather".to_owned()));
    let gone = node.cli(&["call", "/node/catalog/weather", r#"{"city":"Oslo"}"#]);
    assert!(
        gone.stderr().contains("no operation at"),
        "{}",
        gone.stderr()
    );
    assert!(
        node.logs().contains("operations changed"),
        "{}",
        node.logs()
    );

    // A bad new list keeps the old one and says why.
    *ops.lock().unwrap() =
        serde_json::json!([{ "name": "Bad Name", "input_schema": {"type":"object"} }]);
    node.cli(&["call", "/node/catalog/refresh", "{}"]).ok_json();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !node.logs().contains("new operations refused") {
        assert!(Instant::now() < deadline, "{}", node.logs());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(listed(&node).contains(&"/node/catalog/forecast".to_owned()));
}

#[test]
fn bad_discovered_specs_are_refused_naming_plugin_operation_and_problem() {
    let cases = [
        (
            serde_json::json!([{ "name": "lookup", "input_schema": { "type": "string" } }]),
            "its root is not an object",
        ),
        (
            serde_json::json!([{
                "name": "lookup",
                "input_schema": { "type": "object", "properties": { "a": { "$ref": "#/$defs/Missing" } } }
            }]),
            "`$ref` `#/$defs/Missing` points at nothing",
        ),
        (
            serde_json::json!([{ "name": "Look Up", "input_schema": { "type": "object" } }]),
            "operation name `Look Up` is not valid",
        ),
        (
            serde_json::json!([{ "name": "lookup", "input_schema": { "type": "object", "minProperties": "x" } }]),
            "is not a valid JSON Schema",
        ),
    ];
    for (catalog, problem) in cases {
        let server = catalog_server(Arc::new(Mutex::new(catalog)));
        let err = catalog_refused(&format!(
            "grants.http = [\"http://127.0.0.1:{}\"]\nconfig = {{ catalog = \"{}\" }}",
            server.port,
            server.url("/ops.json")
        ));
        assert!(err.contains("plugin `catalog`"), "{err}");
        assert!(err.contains(problem), "{problem}: {err}");
        if !problem.contains("name") {
            assert!(err.contains("operation `lookup`"), "{err}");
        }
    }
    // Without the HTTP grant, discovery fails at load with the reason.
    let server = catalog_server(Arc::new(Mutex::new(serde_json::json!([op("weather")]))));
    let err = catalog_refused(&format!(
        "config = {{ catalog = \"{}\" }}",
        server.url("/ops.json")
    ));
    assert!(
        err.contains("plugin `catalog`: could not list its operations (denied)"),
        "{err}"
    );
    assert!(server.hits().is_empty());
}

#[test]
fn a_subscription_streams_the_events_it_emits() {
    let node = catalog_node("");
    let out = node.cli(&["call", "/node/catalog/ticks", r#"{"count":3}"#]);
    assert_eq!(out.code(), 0, "{}", out.stderr());
    // Each event is a JSON line; the output follows.
    let stdout = out.stdout();
    let lines: Vec<&str> = stdout.lines().collect();
    for (n, line) in lines.iter().take(3).enumerate() {
        let event: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(event["n"], n, "{stdout}");
    }
    let output: serde_json::Value = serde_json::from_str(&lines[3..].join("\n")).unwrap();
    assert_eq!(output["ok"], true);
    // The spec declares the events' schema.
    let ops = node.cli(&["ops", "--json"]).ok_json();
    let ticks = ops
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["path"] == "/node/catalog/ticks")
        .cloned()
        .unwrap();
    assert_eq!(ticks["event_schema"]["properties"]["n"]["type"], "integer");
}

#[test]
fn a_plugin_made_from_the_template_outside_the_repo_builds_loads_and_answers() {
    use std::process::Command;
    // A temporary directory: outside the repository and its workspace.
    let dir = tempfile::tempdir().unwrap();
    let new = Command::new(hearth_tests::host_bin())
        .args(["plugin", "new", "greeter"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        new.status.success(),
        "{}",
        String::from_utf8_lossy(&new.stderr)
    );
    let crate_dir = dir.path().join("greeter");
    assert!(crate_dir.join(".hearth/wit/world.wit").is_file());
    // Its own target directory, kept between runs so CI stays quick.
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| hearth_tests::repo_root().join("target"))
        .join("hearth-template-plugin");
    let build = Command::new(hearth_tests::host_bin())
        .args(["plugin", "build"])
        .current_dir(&crate_dir)
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .unwrap();
    let entry = String::from_utf8_lossy(&build.stdout).into_owned();
    assert!(
        build.status.success(),
        "{}",
        String::from_utf8_lossy(&build.stderr)
    );
    assert!(entry.contains("[plugins.greeter]"), "{entry}");
    assert!(crate_dir.join("greeter.wasm").is_file());
    // The printed entry is the whole stack file.
    let node = TestNode::start_with_stack(&entry);
    let out = node
        .cli(&["call", "/node/greeter/greet", r#"{"name":"Ada"}"#])
        .ok_json();
    assert_eq!(out["message"], "Hello, Ada!");
    node.cli(&["call", "/node/greeter/count", "{}"]).ok_json();
    let second = node.cli(&["call", "/node/greeter/count", "{}"]).ok_json();
    assert_eq!(second["calls"], 2);
    let bad = node.cli(&["call", "/node/greeter/greet", r#"{"name":""}"#]);
    assert!(bad.stderr().contains("invalid-input"), "{}", bad.stderr());
}

fn converse(node: &TestNode, argv: &[&str], lines: &[&str]) -> hearth_tests::CliOutput {
    node.cli(&[
        "call",
        "/node/catalog/converse",
        &serde_json::json!({ "argv": argv, "lines": lines }).to_string(),
    ])
}

#[test]
fn a_granted_process_is_kept_running_restarted_and_nothing_else_runs() {
    let node = catalog_node(
        r#"grants.process = [["/bin/cat"], ["/bin/sh", "-c", "read line; echo got $line"], ["/bin/sh", "-c", "read l; echo \"$HOME|$PATH|$CARGO\""]]
grants.process_env = ["HOME"]"#,
    );
    // One process across calls: cat answers each line, same generation.
    let first = converse(&node, &["/bin/cat"], &["one", "two"]).ok_json();
    assert_eq!(first["replies"], serde_json::json!(["one", "two"]));
    let again = converse(&node, &["/bin/cat"], &["three"]).ok_json();
    assert_eq!(again["generation"], first["generation"]);
    // A process that exits is started again on next use, as a new generation.
    let once = converse(
        &node,
        &["/bin/sh", "-c", "read line; echo got $line"],
        &["a"],
    )
    .ok_json();
    assert_eq!(once["replies"], serde_json::json!(["got a"]));
    let deadline = Instant::now() + Duration::from_secs(20);
    let next = loop {
        let out = converse(
            &node,
            &["/bin/sh", "-c", "read line; echo got $line"],
            &["b"],
        );
        if out.code() == 0 {
            break out.ok_json();
        }
        assert!(
            out.stderr().contains("exited") || out.stderr().contains("unavailable"),
            "{}",
            out.stderr()
        );
        assert!(Instant::now() < deadline, "{}", out.stderr());
    };
    assert_eq!(next["replies"], serde_json::json!(["got b"]));
    assert!(
        next["generation"].as_u64() > once["generation"].as_u64(),
        "{next} {once}"
    );
    // Only the granted environment reaches it: HOME, not the node's PATH
    // (the shell falls back to its own default) or what cargo gave the node.
    let env = converse(
        &node,
        &["/bin/sh", "-c", "read l; echo \"$HOME|$PATH|$CARGO\""],
        &["?"],
    )
    .ok_json();
    let reply = env["replies"][0].as_str().unwrap_or_default().to_owned();
    assert!(
        reply.ends_with('|') && !reply.starts_with('|') && !reply.contains(".cargo"),
        "{reply}"
    );
    // Anything else is denied, naming the grant to add.
    let denied = converse(&node, &["/bin/echo", "hi"], &["x"]);
    assert!(
        denied
            .stderr()
            .contains(r#"add ["/bin/echo", "hi"] to `grants.process`"#),
        "{}",
        denied.stderr()
    );
    assert!(node.logs().contains("process started"), "{}", node.logs());
    // `host plugins` shows what it may run.
    let plugins = node.cli(&["plugins"]).stdout();
    assert!(plugins.contains(r#"process=["/bin/cat"]"#), "{plugins}");
}

/// The pids of `parent`'s children, from /proc.
fn children_of(parent: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid …`; comm may hold spaces, so split after `)`.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) {
            out.push(pid);
        }
    }
    out
}

#[test]
fn a_granted_process_dies_with_a_killed_node() {
    // `sleep` ignores its stdin: only the kernel's parent-death signal
    // ends it when the node is killed.
    let mut node = catalog_node(r#"grants.process = [["/bin/sleep", "1000"]]"#);
    converse(&node, &["/bin/sleep", "1000"], &[]).ok_json();
    let cats: Vec<u32> = children_of(node.pid())
        .into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "sleep")
        })
        .collect();
    assert_eq!(cats.len(), 1, "{cats:?}");
    node.kill9();
    let deadline = Instant::now() + Duration::from_secs(10);
    // Gone, or a zombie nobody reaps yet: either way not running.
    while std::fs::read_to_string(format!("/proc/{}/stat", cats[0])).is_ok_and(|s| {
        !s.rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
    }) {
        assert!(Instant::now() < deadline, "sleep outlived its node");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_granted_command_runs_to_completion_with_its_status_and_output() {
    let node = catalog_node(
        r#"grants.process = [["/bin/sh", "-c", "cat; echo oops >&2; exit 3"], ["/bin/sh", "-c", "yes | head -c 3000000"], ["/bin/sleep", "30"]]"#,
    );
    let run = |argv: &[&str], stdin: &str, timeout: &str| {
        node.cli(&[
            "call",
            "--timeout-ms",
            timeout,
            "/node/catalog/run",
            &serde_json::json!({ "argv": argv, "stdin": stdin }).to_string(),
        ])
    };
    let out = run(
        &["/bin/sh", "-c", "cat; echo oops >&2; exit 3"],
        "fed in",
        "5000",
    )
    .ok_json();
    assert_eq!(out["status"], 3);
    assert_eq!(out["stdout"], "fed in");
    assert_eq!(out["stderr"], "oops\n");
    // Long output is cut at 1 MiB, and the command is not left blocked.
    let long = run(&["/bin/sh", "-c", "yes | head -c 3000000"], "", "10000").ok_json();
    assert_eq!(long["stdout_bytes"], 1 << 20);
    assert_eq!(long["status"], 0);
    // The deadline kills it.
    let slow = run(&["/bin/sleep", "30"], "", "500");
    assert!(
        slow.stderr().contains("error[timeout]"),
        "{}",
        slow.stderr()
    );
    // Only exact granted argument lists run.
    let other = run(&["/bin/sleep", "1"], "", "5000");
    assert!(
        other.stderr().contains("error[denied]") && other.stderr().contains("grants.process"),
        "{}",
        other.stderr()
    );
}

fn file(node: &TestNode, input: serde_json::Value) -> hearth_tests::CliOutput {
    node.cli(&["call", "/node/catalog/file", &input.to_string()])
}

#[test]
fn a_plugin_reaches_files_only_inside_its_granted_directory() {
    use serde_json::json;
    use std::os::unix::fs::PermissionsExt;
    // Without the grant: denied, naming it.
    let ungranted = catalog_node("");
    let denied = file(
        &ungranted,
        json!({"op": "write", "path": "a", "data": "x", "mode": 0o600}),
    );
    assert!(
        denied.stderr().contains("error[denied]") && denied.stderr().contains("grants.files"),
        "{}",
        denied.stderr()
    );

    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), "outside").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("granted");
    std::fs::create_dir(&root).unwrap();
    std::os::unix::fs::symlink(outside.path(), root.join("link")).unwrap();
    let node = catalog_node(&format!("grants.files = {:?}", root.display().to_string()));
    assert_eq!(
        file(&node, json!({"op": "root"})).ok_json(),
        root.display().to_string()
    );
    // Written whole, with the mode asked, directories made.
    file(
        &node,
        json!({"op": "write", "path": "certs/site.key", "data": "key", "mode": 0o600}),
    )
    .ok_json();
    let key = root.join("certs/site.key");
    assert_eq!(std::fs::read_to_string(&key).unwrap(), "key");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        file(&node, json!({"op": "read", "path": "certs/site.key"})).ok_json(),
        "key"
    );
    let listed = file(&node, json!({"op": "list", "path": "certs"})).ok_json();
    assert_eq!(
        listed,
        json!([{"name": "site.key", "dir": false, "mode": 0o600, "size": 3}])
    );
    // Nothing outside: not by `..`, not absolute, not through a link.
    for (path, code) in [
        ("../escaped", "invalid-input"),
        ("/etc/passwd", "invalid-input"),
        ("certs/../../escaped", "invalid-input"),
        ("link/secret", "denied"),
        ("link/new", "denied"),
    ] {
        for op in ["read", "write"] {
            let out = file(
                &node,
                json!({"op": op, "path": path, "data": "x", "mode": 0o644}),
            );
            assert!(
                out.stderr().contains(&format!("error[{code}]")),
                "{op} {path}: {}",
                out.stderr()
            );
        }
    }
    let out = file(
        &node,
        json!({"op": "rename", "path": "certs/site.key", "data": "link/stolen"}),
    );
    assert!(out.stderr().contains("error[denied]"), "{}", out.stderr());
    let out = file(
        &node,
        json!({"op": "write", "path": "x", "data": "", "mode": 0o4755}),
    );
    assert!(
        out.stderr().contains("error[invalid-input]"),
        "{}",
        out.stderr()
    );
    assert_eq!(
        std::fs::read_dir(outside.path()).unwrap().count(),
        1,
        "nothing was written outside"
    );
    assert_eq!(
        std::fs::read_to_string(outside.path().join("secret")).unwrap(),
        "outside"
    );
}
