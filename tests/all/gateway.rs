//! The HTTP gateway end to end, spoken to with curl as any script would.

use std::process::Command;
use std::time::Duration;

use hearth_tests::TestNode;
use serde_json::Value;

/// A node with the gateway on an ephemeral loopback port.
struct Gw {
    node: TestNode,
    base: String,
    token: String,
}

fn start(extra: &str) -> Gw {
    let node = TestNode::start_with_stack(&format!(
        "[node]\nname = \"gw\"\n[gateway]\nenabled = true\nlisten = \"127.0.0.1:0\"\n{extra}\n[plugins.echo]\n[broker]\nenabled = true\n"
    ));
    let hearth_tests::GatewayInfo {
        base,
        token,
        token_file,
    } = node.gateway();
    let mode = std::fs::metadata(&token_file).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );
    Gw { node, base, token }
}

/// Fails the test with what a program printed when it did not succeed.
fn assert_succeeded(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs curl; returns the status and the body.
fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-S", "--max-time", "10", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (status.trim().parse().unwrap_or(0), body.to_owned())
}

impl Gw {
    fn auth(&self) -> String {
        format!("Authorization: Bearer {}", self.token)
    }

    fn post(&self, path: &str, body: &str, extra: &[&str]) -> (u16, Value) {
        let url = format!("{}/v1/call{path}", self.base);
        let auth = self.auth();
        let mut args = vec!["-X", "POST", "-H", &auth, "-d", body, &url];
        args.extend_from_slice(extra);
        let (status, text) = curl(&args);
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    fn get(&self, path: &str) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let (status, text) = curl(&["-H", &self.auth(), &url]);
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

#[test]
fn calls_over_http_map_errors_to_statuses_with_one_body() {
    let gw = start("max_body_bytes = 4096");
    let (status, reply) = gw.post("/node/echo/ping", r#"{"msg":"hi"}"#, &[]);
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["output"]["msg"], "hi");
    assert_eq!(reply["source"]["plugin"], "echo");
    assert!(reply["request_id"].as_str().is_some());
    // HTTP/2 too.
    let (status, _) = gw.post(
        "/node/echo/ping",
        r#"{"msg":"h2"}"#,
        &["--http2-prior-knowledge"],
    );
    assert_eq!(status, 200);
    // Typed errors, one shape.
    for (path, body, want, code) in [
        ("/node/echo/nope", "{}", 404, "not-found"),
        ("/node/echo/ping", r#"{"msg": 5}"#, 422, "invalid-input"),
        ("/node/echo/ping", "not json", 422, "invalid-input"),
        ("/elsewhere/echo/ping", "{}", 404, "not-found"),
    ] {
        let (status, reply) = gw.post(path, body, &[]);
        assert_eq!(status, want, "{path} {body}: {reply}");
        assert_eq!(reply["error"]["code"], code, "{reply}");
        assert!(
            reply["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    let big = format!(r#"{{"msg":"{}"}}"#, "x".repeat(5000));
    let (status, reply) = gw.post("/node/echo/ping", &big, &[]);
    assert_eq!(status, 413, "{reply}");
    // Lists and versions.
    let (status, ops) = gw.get("/v1/ops");
    assert_eq!(status, 200);
    assert!(
        ops.as_array()
            .unwrap()
            .iter()
            .any(|op| op["path"] == "/node/echo/ping"),
        "{ops}"
    );
    let (status, health) = gw.get("/v1/health");
    assert_eq!((status, &health["status"]), (200, &Value::from("ok")));
    assert_eq!(gw.get("/v1/version").0, 200);
    assert_eq!(gw.get("/v1/nothing").0, 404);
    // Idempotency-Key becomes the message's id: the retry is a no-op.
    let send = r#"{"to":"gw","body":{"n":1}}"#;
    let (status, first) = gw.post("/node/msg/send", send, &["-H", "Idempotency-Key: order-17"]);
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["output"]["client_message_id"], "order-17");
    let (_, again) = gw.post("/node/msg/send", send, &["-H", "Idempotency-Key: order-17"]);
    assert_eq!(again["output"]["duplicate"], true, "{again}");
    let (status, conflict) = gw.post(
        "/node/msg/send",
        r#"{"to":"gw","body":{"n":2}}"#,
        &["-H", "Idempotency-Key: order-17"],
    );
    assert_eq!(
        (status, &conflict["error"]["code"]),
        (409, &Value::from("conflict"))
    );
}

#[test]
fn the_gate_refuses_strangers_before_the_node_sees_them() {
    let gw = start("");
    let url = format!("{}/v1/call/node/echo/ping", gw.base);
    let auth = gw.auth();
    // No token, a wrong one: 401, health included.
    let (status, body) = curl(&["-X", "POST", "-d", "{}", &url]);
    assert_eq!(status, 401, "{body}");
    let (status, _) = curl(&[
        "-X",
        "POST",
        "-H",
        "Authorization: Bearer nope",
        "-d",
        "{}",
        &url,
    ]);
    assert_eq!(status, 401);
    let (status, _) = curl(&[&format!("{}/v1/health", gw.base)]);
    assert_eq!(status, 401);
    // Another Host (DNS rebinding), a foreign Origin, a preflight: 403.
    let (status, body) = curl(&[
        "-X",
        "POST",
        "-H",
        &auth,
        "-H",
        "Host: evil.example",
        "-d",
        "{}",
        &url,
    ]);
    assert_eq!(status, 403, "{body}");
    let (status, _) = curl(&[
        "-X",
        "POST",
        "-H",
        &auth,
        "-H",
        "Origin: https://evil.example",
        "-d",
        "{}",
        &url,
    ]);
    assert_eq!(status, 403);
    let (status, _) = curl(&["-X", "OPTIONS", "-H", &auth, &url]);
    assert_eq!(status, 403);
    // A token in the URL: 400 and a security line, never the token.
    let (status, body) = curl(&[
        "-X",
        "POST",
        "-d",
        "{}",
        &format!("{url}?token={}", gw.token),
    ]);
    assert_eq!(status, 400, "{body}");
    std::thread::sleep(Duration::from_millis(200));
    let logs = gw.node.logs();
    assert!(
        logs.contains("security: a gateway token was sent in a query string"),
        "{logs}"
    );
    assert!(!logs.contains(&gw.token), "the token reached the logs");
    // No CORS header is ever sent.
    let out = Command::new("curl")
        .args([
            "-s",
            "-D",
            "-",
            "-o",
            "/dev/null",
            "-X",
            "POST",
            "-H",
            &auth,
            "-d",
            r#"{"msg":"x"}"#,
            &url,
        ])
        .output()
        .unwrap();
    let headers = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    assert!(headers.starts_with("http/1.1 200"), "{headers}");
    assert!(!headers.contains("access-control-"), "{headers}");
}

#[test]
fn a_subscription_streams_server_sent_events_then_its_reply() {
    let gw = start("");
    let url = format!("{}/v1/call/node/msg/subscribe", gw.base);
    let auth = gw.auth();
    let child = Command::new("curl")
        .args(["-s", "-N", "--max-time", "4", "-X", "POST", "-H", &auth])
        .args(["-H", "Accept: text/event-stream", "-d", "{}", &url])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    for n in 0..2 {
        let (status, reply) = gw.post(
            "/node/msg/send",
            &format!(r#"{{"to":"gw","body":{{"n":{n}}}}}"#),
            &[],
        );
        assert_eq!(status, 200, "{reply}");
    }
    let out = child.wait_with_output().unwrap();
    let stream = String::from_utf8_lossy(&out.stdout);
    assert!(stream.contains("id: 1\ndata: {"), "{stream}");
    assert!(stream.contains("id: 2\ndata: {"), "{stream}");
    assert!(stream.contains(r#""body":{"n":1}"#), "{stream}");
    // Without asking for events, a subscription is refused at once.
    let (status, reply) = gw.post("/node/msg/subscribe", "{}", &[]);
    assert_eq!(
        (status, &reply["error"]["code"]),
        (406, &Value::from("not-acceptable")),
        "{reply}"
    );
    // A call that ends sends its reply as the last event.
    let ping = format!("{}/v1/call/node/echo/ping", gw.base);
    let (status, stream) = curl(&[
        "-N",
        "-X",
        "POST",
        "-H",
        &auth,
        "-H",
        "Accept: text/event-stream",
        "-d",
        r#"{"msg":"sse"}"#,
        &ping,
    ]);
    assert_eq!(status, 200);
    assert!(stream.starts_with("event: reply\ndata: {"), "{stream}");
    assert!(stream.contains(r#""msg":"sse""#), "{stream}");
}

#[test]
fn openapi_json_describes_every_operation_and_validates() {
    let gw = start("");
    let (status, doc) = gw.get("/openapi.json");
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(
        doc["paths"]["/v1/call/node/echo/ping"]["post"].is_object(),
        "{doc}"
    );
    assert!(
        doc["paths"]["/v1/call/node/msg/send"]["post"]["parameters"][0]["name"]
            == "Idempotency-Key"
    );
    let file = gw.node.dir().join("openapi.json");
    std::fs::write(&file, doc.to_string()).unwrap();
    let python =
        hearth_tests::require_python(&[("openapi_spec_validator", "openapi-spec-validator")]);
    let out = Command::new(python)
        .args(["-m", "openapi_spec_validator"])
        .arg(&file)
        .output()
        .unwrap();
    assert_succeeded(&out);
}

#[test]
fn a_rotated_token_takes_over_and_the_old_one_keeps_a_grace_minute() {
    let gw = start("");
    let url = format!("{}/v1/health", gw.base);
    let rotated = Command::new(hearth_tests::host_bin())
        .args(["gateway", "rotate-token", "--config"])
        .arg(gw.node.dir().join("stack.toml"))
        .env("HEARTH_DATA_DIR", gw.node.data_dir())
        .output()
        .unwrap();
    assert!(
        rotated.status.success(),
        "{}",
        String::from_utf8_lossy(&rotated.stderr)
    );
    let token_file = gw.node.data_dir().join("run").join("gateway.token");
    let new = std::fs::read_to_string(&token_file)
        .unwrap()
        .trim()
        .to_owned();
    assert_ne!(new, gw.token);
    std::thread::sleep(Duration::from_millis(1100));
    let (status, _) = curl(&["-H", &format!("Authorization: Bearer {new}"), &url]);
    assert_eq!(status, 200);
    // The old token still works within its minute (its lapse is a unit
    // test of the gateway's token).
    let (status, _) = curl(&["-H", &gw.auth(), &url]);
    assert_eq!(status, 200);
    assert!(!gw.node.logs().contains(&new), "the token reached the logs");
}

#[test]
fn a_python_script_with_requests_calls_an_operation() {
    let gw = start("");
    let python = hearth_tests::require_python(&[("requests", "requests")]);
    let script = r#"
import sys, requests
base, token = sys.argv[1], sys.argv[2]
auth = {"Authorization": f"Bearer {token}"}
r = requests.post(f"{base}/v1/call/node/echo/ping", json={"msg": "from python"}, headers=auth)
assert r.status_code == 200, r.text
assert r.json()["output"]["msg"] == "from python", r.text
r = requests.post(f"{base}/v1/call/node/echo/ping", json={"msg": 1}, headers=auth)
assert r.status_code == 422 and r.json()["error"]["code"] == "invalid-input", r.text
r = requests.post(f"{base}/v1/call/node/echo/ping", json={"msg": "x"})
assert r.status_code == 401, r.text
print("ok")
"#;
    let out = Command::new(python)
        .args(["-c", script, &gw.base, &gw.token])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "ok",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn metrics_count_calls_by_operation_and_outcome_and_parse_as_prometheus_text() {
    let gw = start("");
    gw.post("/node/echo/ping", r#"{"msg":"a"}"#, &[]);
    gw.post("/node/echo/ping", r#"{"msg":5}"#, &[]);
    gw.post("/node/echo/nothing-here-{random}", "{}", &[]);
    let url = format!("{}/metrics", gw.base);
    let (status, text) = curl(&["-H", &gw.auth(), &url]);
    assert_eq!(status, 200);
    assert!(
        text.contains(
            r#"hearth_calls_total{operation="/node/echo/ping",origin="client",outcome="ok"} 1"#
        ),
        "{text}"
    );
    assert!(text.contains(r#"outcome="invalid-input"} 1"#), "{text}");
    // What a caller typed never becomes a label.
    assert!(!text.contains("nothing-here"), "{text}");
    assert!(text.contains(r#"operation="unrouted""#), "{text}");
    let file = gw.node.dir().join("metrics.txt");
    std::fs::write(&file, &text).unwrap();
    let python = hearth_tests::require_python(&[("prometheus_client", "prometheus_client")]);
    let parse = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families
families = {f.name: f for f in text_string_to_metric_families(open(sys.argv[1]).read())}
assert "hearth_calls" in families, families.keys()
assert "hearth_call_duration_seconds" in families
assert "hearth_gateway_requests" in families
print(len(families))
"#;
    let out = Command::new(python)
        .args(["-c", parse])
        .arg(&file)
        .output()
        .unwrap();
    assert_succeeded(&out);
}

#[test]
fn host_bench_drives_the_gateway_over_keep_alive() {
    let gw = start("");
    let addr = gw.base.trim_start_matches("http://").to_owned();
    let token_file = gw.node.data_dir().join("run").join("gateway.token");
    let out = Command::new(hearth_tests::host_bin())
        .args([
            "bench",
            "/node/echo/ping",
            r#"{"msg":"b"}"#,
            "-c",
            "4",
            "-d",
            "0.5",
            "--warmup",
            "0",
            "--json",
            "--http",
            &addr,
            "--token-file",
        ])
        .arg(&token_file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["calls"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["errors"], serde_json::json!({}), "{report}");
}

#[test]
fn schemathesis_finds_every_answer_documented_in_openapi_json() {
    let gw = start("");
    let python = hearth_tests::require_python(&[("schemathesis", "schemathesis")]);
    let schemathesis = python.with_file_name("schemathesis");
    let out = Command::new(schemathesis)
        .current_dir(gw.node.dir())
        .args([
            "run",
            &format!("{}/openapi.json", gw.base),
            "-H",
            &gw.auth(),
        ])
        .args([
            "--checks",
            "status_code_conformance,response_schema_conformance,content_type_conformance",
            "--max-examples",
            "5",
        ])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The events `curl` printed from `/v1/events`: (id, kind).
fn events_seen(stream: &str) -> Vec<(u64, String)> {
    stream
        .split("\n\n")
        .filter_map(|frame| {
            let id = frame
                .lines()
                .find_map(|l| l.strip_prefix("id: "))?
                .parse()
                .ok()?;
            let data = frame.lines().find_map(|l| l.strip_prefix("data: "))?;
            let event: Value = serde_json::from_str(data).ok()?;
            Some((id, event["kind"].as_str()?.to_owned()))
        })
        .collect()
}

#[test]
fn node_events_stream_and_resume_from_last_event_id() {
    let gw = start("");
    let url = format!("{}/v1/events", gw.base);
    let auth = gw.auth();
    // Two failed calls from outside are events.
    gw.post("/node/echo/nope", "{}", &[]);
    gw.post("/node/echo/ping", r#"{"msg":1}"#, &[]);
    let (status, stream) = curl(&["-N", "--max-time", "1", "-H", &auth, &url]);
    assert_eq!(status, 200, "{stream}");
    let seen = events_seen(&stream);
    let kinds: Vec<&str> = seen.iter().map(|(_, k)| k.as_str()).collect();
    assert_eq!(
        kinds,
        ["plugin.loaded", "call.failed", "call.failed"],
        "{stream}"
    );
    // Resume after the first: only what came after it.
    let first = seen[0].0;
    let (_, stream) = curl(&[
        "-N",
        "--max-time",
        "1",
        "-H",
        &auth,
        "-H",
        &format!("Last-Event-ID: {first}"),
        &url,
    ]);
    let resumed = events_seen(&stream);
    assert_eq!(
        resumed.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        [first + 1, first + 2]
    );
    let (status, _) = curl(&["-H", &auth, "-H", "Last-Event-ID: soon", &url]);
    assert_eq!(status, 400);
}
