//! The CLI against a real node: calls, listings and actionable errors.

use hearth_tests::TestNode;

#[test]
fn ping_answers_with_the_message() {
    let node = TestNode::start();
    let out = node
        .cli(&["call", "/node/echo/ping", r#"{"msg":"hi"}"#])
        .ok_json();
    assert_eq!(out, serde_json::json!({"msg": "hi"}));

    // `--json` shows the whole envelope.
    let envelope = node
        .cli(&["call", "/node/echo/ping", r#"{"msg":"hi"}"#, "--json"])
        .ok_json();
    assert_eq!(envelope["source"], serde_json::json!({"plugin": "echo"}));
    assert!(
        envelope["request_id"].as_str().unwrap().len() == 26,
        "{envelope}"
    );
    assert!(envelope["parent_request_id"].is_null());
}

#[test]
fn composition_through_env_carries_the_parent_request_id() {
    let node = TestNode::start();
    let envelope = node
        .cli(&["call", "/node/relay/ping", r#"{"msg":"hi"}"#, "--json"])
        .ok_json();
    let out = &envelope["output"];
    assert_eq!(out["reply"], "hi");
    // The relay saw its own request id, and the nested echo call carried
    // it as its parent.
    assert_eq!(out["request_id"], envelope["request_id"]);
    assert_eq!(out["nested_parent_request_id"], envelope["request_id"]);
    assert_ne!(out["nested_request_id"], envelope["request_id"]);

    // The nested call's context says it is nested, one level deep, on
    // behalf of the same identity.
    let ctx = node
        .cli(&[
            "call",
            "/node/relay/forward",
            r#"{"path":"/node/echo/context","input":{}}"#,
        ])
        .ok_json();
    assert_eq!(ctx["depth"], 1);
    assert_eq!(ctx["nested"], true);
    assert!(ctx["parent_request_id"].is_string());
    assert!(ctx["identity"].as_str().unwrap().starts_with("local:uid:"));
    // The deadline is inherited: less than the 5 s default is left.
    assert!(ctx["deadline_ms"].as_u64().unwrap() <= 5000);
}

#[test]
fn ops_lists_kinds_and_schemas() {
    let node = TestNode::start();
    let ops = node.cli(&["ops", "--json"]).ok_json();
    let ping = ops
        .as_array()
        .unwrap()
        .iter()
        .find(|op| op["path"] == "/node/echo/ping")
        .expect("echo ping listed");
    assert_eq!(ping["kind"], "query");
    assert_eq!(ping["input_schema"]["properties"]["msg"]["type"], "string");
    assert_eq!(ping["input_schema"]["required"], serde_json::json!(["msg"]));
    assert_eq!(ping["output_schema"]["properties"]["msg"]["type"], "string");
    let put = ops
        .as_array()
        .unwrap()
        .iter()
        .find(|op| op["path"] == "/node/echo/put")
        .unwrap();
    assert_eq!(put["kind"], "mutation");

    let text = node.cli(&["ops"]);
    assert_eq!(text.code(), 0);
    assert!(
        text.stdout().contains("/node/relay/ping  (query, relay)"),
        "{}",
        text.stdout()
    );
    assert!(text.stdout().contains("input:"));
}

#[test]
fn plugins_lists_versions_and_grants() {
    let node = TestNode::start();
    let plugins = node.cli(&["plugins", "--json"]).ok_json();
    let names: Vec<&str> = plugins
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["docker", "echo", "relay", "signer"]);
    assert_eq!(plugins[1]["version"], "0.1.0");
    assert_eq!(plugins[1]["grants"]["kv"], true);
    assert_eq!(plugins[0]["grants"]["docker"]["max_containers"], 20);
    assert_eq!(
        plugins[2]["grants"]["env"],
        serde_json::json!(["/node/echo/*", "/node/relay/cycle"])
    );
    let text = node.cli(&["plugins"]).stdout();
    assert!(text.contains("echo 0.1.0"), "{text}");
}

#[test]
fn unknown_paths_name_the_closest_ones() {
    let node = TestNode::start();
    let out = node.cli(&["call", "/node/echo/pnig", "{}"]);
    assert_eq!(out.code(), 1);
    assert!(
        out.stderr().contains("error[not-found]"),
        "{}",
        out.stderr()
    );
    assert!(
        out.stderr().contains("did you mean /node/echo/ping"),
        "{}",
        out.stderr()
    );

    let out = node.cli(&["call", "/node/echo/pnig", "{}", "--json"]);
    assert_eq!(out.code(), 1);
    assert_eq!(out.json()["error"]["code"], "not-found");

    let out = node.cli(&["call", "echo/ping"]);
    assert_eq!(out.code(), 1);
    assert!(
        out.stderr().contains("must start with `/`"),
        "{}",
        out.stderr()
    );

    let out = node.cli(&["call", "/elsewhere/echo/ping", r#"{"msg":"x"}"#]);
    assert!(
        out.stderr().contains("unknown node `elsewhere`"),
        "{}",
        out.stderr()
    );
}

#[test]
fn invalid_input_names_the_field() {
    let node = TestNode::start();
    let out = node.cli(&["call", "/node/echo/ping", r#"{"msg":5}"#]);
    assert_eq!(out.code(), 1);
    assert!(
        out.stderr().contains("error[invalid-input]"),
        "{}",
        out.stderr()
    );
    assert!(out.stderr().contains("`/msg`"), "{}", out.stderr());

    let out = node.cli(&["call", "/node/echo/ping", "{}"]);
    assert!(
        out.stderr().contains("\"msg\" is a required property"),
        "{}",
        out.stderr()
    );

    let out = node.cli(&["call", "/node/echo/ping", "{not json"]);
    assert!(out.stderr().contains("is not JSON"), "{}", out.stderr());

    let out = node.cli(&["call", "/node/echo/put", r#"{"key":"","value":"v"}"#]);
    assert!(out.stderr().contains("`/key`"), "{}", out.stderr());
}

#[test]
fn ungranted_calls_are_denied_naming_the_grant() {
    let node = TestNode::start();
    let out = node.cli(&[
        "call",
        "/node/relay/forward",
        r#"{"path":"/node/host/ping"}"#,
    ]);
    assert_eq!(out.code(), 1);
    let err = out.stderr();
    assert!(err.contains("error[denied]"), "{err}");
    assert!(
        err.contains(r#"add "/node/host/ping" to `grants.env` of [plugins.relay]"#),
        "{err}"
    );

    // Granted, but the target does not exist: not-found, not denied.
    let out = node.cli(&[
        "call",
        "/node/relay/forward",
        r#"{"path":"/node/echo/nope"}"#,
    ]);
    assert!(
        out.stderr().contains("error[not-found]"),
        "{}",
        out.stderr()
    );
}

#[test]
fn a_call_cycle_ends_at_the_depth_bound() {
    let node = TestNode::start();
    let out = node.cli(&["call", "/node/relay/cycle"]);
    assert_eq!(out.code(), 1);
    let err = out.stderr();
    assert!(err.contains("error[resource-exhausted]"), "{err}");
    assert!(err.contains("call depth limit 8"), "{err}");
    assert!(
        err.contains("/node/relay/cycle -> /node/relay/cycle"),
        "{err}"
    );
    // The node is fine afterwards.
    assert_eq!(
        node.cli(&["call", "/node/echo/ping", r#"{"msg":"ok"}"#])
            .ok_json()["msg"],
        "ok"
    );
}

#[test]
fn kv_values_survive_kill_9() {
    let mut node = TestNode::start();
    let out = node
        .cli(&[
            "call",
            "/node/echo/put",
            r#"{"key":"greeting","value":"hello"}"#,
        ])
        .ok_json();
    assert_eq!(out["replaced"], false);
    node.kill9();
    node.restart();
    let out = node
        .cli(&["call", "/node/echo/get", r#"{"key":"greeting"}"#])
        .ok_json();
    assert_eq!(out["value"], "hello");
    let out = node
        .cli(&["call", "/node/echo/get", r#"{"key":"other"}"#])
        .ok_json();
    assert!(out["value"].is_null());
}

#[test]
fn ops_shows_each_field_with_type_and_whether_it_is_required() {
    let node = TestNode::start();
    let text = node.cli(&["ops"]).stdout();
    let block: Vec<&str> = text
        .split("\n/")
        .find(|b| b.starts_with("node/host/echo ") || b.starts_with("/node/host/echo "))
        .expect("the native echo is listed")
        .lines()
        .collect();
    assert!(
        block
            .iter()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["msg", "string", "required", "The", "message."]),
        "{block:?}"
    );
    // The raw schemas stay available.
    let ops = node.cli(&["ops", "--json"]).ok_json();
    let echo = ops
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["path"] == "/node/host/echo")
        .unwrap();
    assert_eq!(echo["input_schema"]["required"], serde_json::json!(["msg"]));
}
