//! The node as an MCP server, driven by the official SDK clients: over
//! stdio (`host mcp`) and Streamable HTTP (`/mcp`), a peer's tool among
//! them, and an agent that sees and does only what its scopes allow.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use hearth_host::client::ClientKey;
use hearth_tests::{TestNode, host_bin};
use serde_json::{Value, json};

use crate::mesh::{seat, wait_for_state};

/// A head with the gateway on, paired with worker-1, which lets the head
/// list its operations and call its echo.
fn fleet() -> (TestNode, TestNode, String, String) {
    let (head, w1) = (seat("head"), seat("worker-1"));
    let w1_rest = format!(
        "{}[plugins.echo]\ngrants.kv = true\n",
        head.as_peer(
            false,
            "allow = [\"/node/echo/*\", \"/node/host/ops\"]\nscopes = [\"echo:*\"]"
        )
    );
    let head_rest = format!(
        "{}[gateway]\nenabled = true\nlisten = \"127.0.0.1:0\"\n[plugins.echo]\ngrants.kv = true\n",
        w1.as_peer(true, "")
    );
    let w1 = w1.start("", &w1_rest);
    let head = head.start("", &head_rest);
    wait_for_state(&head, "worker-1", "connected");
    let hearth_tests::GatewayInfo { base, token, .. } = head.gateway();
    (head, w1, base, token)
}

fn operator(node: &TestNode, path: &str, input: Value) -> Value {
    let out = node.cli(&["call", path, &input.to_string()]);
    out.ok_json()
}

/// A session token for `key` from the gateway, as any HTTP client gets one.
fn session_token(base: &str, key: &ClientKey) -> String {
    let post = |path: &str, body: Value| -> Value {
        let out = Command::new("curl")
            .args(["-s", "-S", "--max-time", "30", "-X", "POST", "-d"])
            .arg(body.to_string())
            .arg(format!("{base}{path}"))
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let challenge = post(
        "/v1/auth/challenge",
        json!({ "key": key.public_hex(), "name": "agent" }),
    );
    let nonce = challenge["nonce"].as_u64().unwrap();
    let mut node_key = [0u8; 32];
    hex::decode_to_slice(challenge["node_key"].as_str().unwrap(), &mut node_key).unwrap();
    let session = post(
        "/v1/auth/session",
        json!({
            "key": key.public_hex(),
            "nonce": nonce,
            "signature": hex::encode(key.sign_challenge(&node_key, nonce)),
        }),
    );
    session["token"].as_str().unwrap().to_owned()
}

const PYTHON_AGENT: &str = r#"
import asyncio, sys
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

mode, target, secret = sys.argv[1], sys.argv[2], sys.argv[3]

def text(result):
    return " ".join(getattr(block, "text", "") for block in result.content)

async def exercise(session):
    await session.initialize()
    tools = {t.name: t for t in (await session.list_tools()).tools}
    names = sorted(tools)
    assert "echo_ping" in names and "worker-1__echo_ping" in names, names
    assert not any(n.startswith(("vault_", "clients_", "broker_")) for n in names), names
    assert tools["echo_ping"].title == "/node/echo/ping", tools["echo_ping"]
    assert tools["echo_ping"].annotations.read_only_hint is True
    r = await session.call_tool("echo_ping", {"msg": "hi"})
    assert not r.is_error and r.structured_content == {"msg": "hi"}, r
    r = await session.call_tool("worker-1__echo_ping", {"msg": "from the fleet"})
    assert not r.is_error and r.structured_content == {"msg": "from the fleet"}, r
    r = await session.call_tool("echo_ping", {"msg": 5})
    assert r.is_error and "invalid-input" in text(r), r
    if mode == "stdio":
        # This client holds echo:*: it sees put, until the operator narrows it.
        assert "echo_put" in names, names
        print("narrow", flush=True)
        sys.stdin.readline()
        r = await session.call_tool("echo_put", {"key": "k", "value": "v"})
        assert r.is_error and "lacks scope `echo:write`" in text(r), r
        r = await session.call_tool("worker-1__echo_put", {"key": "k", "value": "v"})
        assert r.is_error and "denied" in text(r), r
    else:
        # This client holds echo:read only: put is not even a tool.
        assert "echo_put" not in names and "worker-1__echo_put" not in names, names
        try:
            await session.call_tool("echo_put", {"key": "k", "value": "v"})
            raise AssertionError("a tool outside the scopes was called")
        except Exception as e:
            assert "no tool" in str(e), e
    print("ok", flush=True)

async def main():
    if mode == "stdio":
        params = StdioServerParameters(command=target, args=sys.argv[4:], env={"HEARTH_CLIENT_KEY": secret})
        async with stdio_client(params) as streams:
            async with ClientSession(streams[0], streams[1]) as session:
                await exercise(session)
    else:
        client = create_mcp_http_client(headers={"Authorization": f"Bearer {secret}"})
        async with streamable_http_client(target, http_client=client) as streams:
            async with ClientSession(streams[0], streams[1]) as session:
                await exercise(session)

asyncio.run(main())
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_calls_tools_here_and_on_a_peer_within_its_scopes() {
    let python = hearth_tests::require_python(&[("mcp", "mcp")]);
    let (head, _w1, base, _token) = fleet();

    // Over stdio: `host mcp` as a client holding echo:*.
    let key_file = head.dir().join("agent.key");
    let key = ClientKey::load_or_create(&key_file).unwrap();
    operator(
        &head,
        "/node/clients/approve",
        json!({ "key": key.public_hex(), "scopes": ["echo:*"] }),
    );
    let mut agent = Command::new(&python)
        .args(["-c", PYTHON_AGENT, "stdio"])
        .arg(host_bin())
        .arg(&key_file)
        .arg("--socket")
        .arg(head.socket())
        .arg("mcp")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut said = BufReader::new(agent.stdout.take().unwrap());
    let mut line = String::new();
    said.read_line(&mut line).unwrap();
    if line.trim() != "narrow" {
        let out = agent.wait_with_output().unwrap();
        panic!("{line}{}", String::from_utf8_lossy(&out.stderr));
    }
    operator(
        &head,
        "/node/clients/approve",
        json!({ "key": key.public_hex(), "scopes": ["echo:read"] }),
    );
    agent.stdin.as_mut().unwrap().write_all(b"\n").unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut said, &mut rest).unwrap();
    let out = agent.wait_with_output().unwrap();
    assert!(
        out.status.success() && rest.contains("ok"),
        "{rest}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Over Streamable HTTP: a client session holding echo:read.
    let reader = ClientKey::generate().unwrap();
    operator(
        &head,
        "/node/clients/approve",
        json!({ "key": reader.public_hex(), "scopes": ["echo:read"] }),
    );
    let token = session_token(&base, &reader);
    let out = Command::new(&python)
        .args(["-c", PYTHON_AGENT, "http", &format!("{base}/mcp"), &token])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Tokens never reach the log.
    assert!(!head.logs().contains(&token));
}

const TS_AGENT: &str = r#"
import assert from "node:assert/strict";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [mode, target, secret, ...rest] = process.argv.slice(2);
const transport = mode === "stdio"
  ? new StdioClientTransport({ command: target, args: rest, env: { ...process.env, HEARTH_CLIENT_KEY: secret } })
  : new StreamableHTTPClientTransport(new URL(target), { requestInit: { headers: { Authorization: `Bearer ${secret}` } } });
const client = new Client({ name: "ts-agent", version: "1.0.0" });
await client.connect(transport);
const { tools } = await client.listTools();
const names = tools.map((t) => t.name);
assert.ok(names.includes("echo_ping") && names.includes("worker-1__echo_ping"), names.join());
assert.ok(!names.includes("echo_put") && !names.includes("worker-1__echo_put"), names.join());
let r = await client.callTool({ name: "echo_ping", arguments: { msg: "ts" } });
assert.equal(r.isError, false);
assert.deepEqual(r.structuredContent, { msg: "ts" });
r = await client.callTool({ name: "worker-1__echo_ping", arguments: { msg: "ts fleet" } });
assert.deepEqual(r.structuredContent, { msg: "ts fleet" });
r = await client.callTool({ name: "echo_get", arguments: { key: 5 } });
assert.equal(r.isError, true);
assert.match(r.content[0].text, /invalid-input/);
await assert.rejects(client.callTool({ name: "echo_put", arguments: { key: "k", value: "v" } }), /no tool/);
await client.close();
console.log("ok");
"#;

#[test]
fn the_typescript_sdk_calls_tools_here_and_on_a_peer_within_its_scopes() {
    let dir = hearth_tests::require_npm("mcp-sdk", &["@modelcontextprotocol/sdk"]);
    std::fs::write(dir.join("agent.mjs"), TS_AGENT).unwrap();
    let (head, _w1, base, _token) = fleet();
    let key_file = head.dir().join("ts.key");
    let key = ClientKey::load_or_create(&key_file).unwrap();
    operator(
        &head,
        "/node/clients/approve",
        json!({ "key": key.public_hex(), "scopes": ["echo:read"] }),
    );
    let run = |args: &[&std::ffi::OsStr]| {
        let out = Command::new("node")
            .arg(dir.join("agent.mjs"))
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success() && said.contains("ok"),
            "{said}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "stdio".as_ref(),
        host_bin().as_os_str(),
        key_file.as_os_str(),
        "--socket".as_ref(),
        head.socket().as_os_str(),
        "mcp".as_ref(),
    ]);
    let token = session_token(&base, &key);
    run(&[
        "http".as_ref(),
        format!("{base}/mcp").as_ref(),
        token.as_ref(),
    ]);
}

/// curl against `/mcp`: the answers an SDK never provokes.
#[test]
fn mcp_over_http_refuses_wrong_origins_sessions_versions_and_tokens() {
    let node = TestNode::start_with_stack(
        "[node]\nname = \"m\"\n[gateway]\nenabled = true\nlisten = \"127.0.0.1:0\"\n[plugins.echo]\n",
    );
    let hearth_tests::GatewayInfo { base, token, .. } = node.gateway();
    let url = format!("{base}/mcp");
    let auth = format!("Authorization: Bearer {token}");
    let post = |extra: &[&str], body: &str| -> (u16, String, String) {
        let out = Command::new("curl")
            .args(["-s", "-S", "--max-time", "10", "-D", "-", "-X", "POST"])
            .args(["-H", "Content-Type: application/json"])
            .args(["-H", "Accept: application/json, text/event-stream"])
            .args(extra)
            .args(["-d", body, &url])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, head.to_lowercase(), body.to_owned())
    };
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"curl","version":"1"}}}"#;
    let (status, head, body) = post(&["-H", &auth], init);
    assert_eq!(status, 200, "{body}");
    let session = head
        .lines()
        .find_map(|l| l.strip_prefix("mcp-session-id: "))
        .expect("a session id")
        .trim()
        .to_owned();
    let reply: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(reply["result"]["protocolVersion"], "2025-11-25");
    assert_eq!(
        reply["result"]["capabilities"]["tools"]["listChanged"],
        true
    );
    let with_session = format!("Mcp-Session-Id: {session}");
    let list = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;

    // A notification is accepted without a body.
    let (status, ..) = post(
        &["-H", &auth, "-H", &with_session],
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    );
    assert_eq!(status, 202);
    // No token, a wrong token, a foreign Origin or Host.
    assert_eq!(post(&["-H", &with_session], list).0, 401);
    assert_eq!(
        post(
            &["-H", "Authorization: Bearer nope", "-H", &with_session],
            list
        )
        .0,
        401
    );
    assert_eq!(
        post(
            &[
                "-H",
                &auth,
                "-H",
                &with_session,
                "-H",
                "Origin: http://evil.example"
            ],
            list
        )
        .0,
        403
    );
    assert_eq!(
        post(
            &["-H", &auth, "-H", &with_session, "-H", "Host: evil.example"],
            list
        )
        .0,
        403
    );
    // No session, an unknown one, an unsupported revision.
    assert_eq!(post(&["-H", &auth], list).0, 400);
    assert_eq!(
        post(&["-H", &auth, "-H", "Mcp-Session-Id: 00ff"], list).0,
        404
    );
    assert_eq!(
        post(
            &[
                "-H",
                &auth,
                "-H",
                &with_session,
                "-H",
                "MCP-Protocol-Version: 1999-01-01"
            ],
            list
        )
        .0,
        400
    );
    // Malformed: not JSON, a batch.
    assert_eq!(post(&["-H", &auth, "-H", &with_session], "{").0, 400);
    let (status, _, body) = post(&["-H", &auth, "-H", &with_session], &format!("[{list}]"));
    assert_eq!(status, 400);
    assert!(body.contains("batches are not supported"), "{body}");
    // The session works; an unknown tool is a protocol error, a failing
    // call a tool result.
    let (status, _, body) = post(
        &[
            "-H",
            &auth,
            "-H",
            &with_session,
            "-H",
            "MCP-Protocol-Version: 2025-11-25",
        ],
        list,
    );
    assert_eq!(status, 200, "{body}");
    let tools: Value = serde_json::from_str(&body).unwrap();
    assert!(
        tools["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "echo_ping")
    );
    let (_, _, body) = post(
        &["-H", &auth, "-H", &with_session],
        r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"nope","arguments":{}}}"#,
    );
    assert!(body.contains("-32602"), "{body}");
    // Ending the session: it is gone.
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "DELETE",
        ])
        .args(["-H", &auth, "-H", &with_session, &url])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "204");
    assert_eq!(post(&["-H", &auth, "-H", &with_session], list).0, 404);
}

/// A subscription tool collects a bounded number of events with progress,
/// and a cancelled call stops without an answer.
#[test]
fn stdio_reports_progress_and_collects_subscription_events() {
    let node = TestNode::start_with_stack("[node]\nname = \"p\"\n[plugins.echo]\n");
    let mut server = Command::new(host_bin())
        .arg("--socket")
        .arg(node.socket())
        .arg("mcp")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = server.stdin.take().unwrap();
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let mut send = |message: Value| {
        stdin.write_all(format!("{message}\n").as_bytes()).unwrap();
    };
    let mut next = || -> Value { serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap() };
    send(
        json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}),
    );
    let init = next();
    assert_eq!(init["result"]["protocolVersion"], "2025-06-18", "{init}");
    // The node's own events (kept ones first), collected up to a count.
    send(
        json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"host_events","arguments":{"_max_events":3,"_max_seconds":30},"_meta":{"progressToken":"t1"}}}),
    );
    for _ in 0..3 {
        let _ = node.cli(&["call", "/node/nope/nope"]);
    }
    let mut progress = 0;
    let reply = loop {
        let message = next();
        if message["method"] == "notifications/progress" {
            assert_eq!(message["params"]["progressToken"], "t1");
            progress += 1;
        } else if message["id"] == 2 {
            break message;
        }
    };
    assert!(progress >= 3, "{progress}");
    let collected = &reply["result"]["structuredContent"];
    assert_eq!(collected["ended"], "count", "{reply}");
    assert_eq!(collected["events"].as_array().unwrap().len(), 3);
    // A subscription cancelled by the client: no answer comes, and the
    // server keeps serving.
    send(
        json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"host_events","arguments":{"_max_seconds":60}}}),
    );
    send(json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":3}}));
    send(json!({"jsonrpc":"2.0","id":4,"method":"ping"}));
    let answer = next();
    assert_eq!(answer["id"], 4, "the cancelled call said nothing: {answer}");
    server.kill().ok();
    server.wait().ok();
}

/// A loopback TCP port nobody listens on now.
fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Puts the bearer token on every request, since the conformance runner
/// cannot send headers of its own (modelcontextprotocol/conformance#453).
const AUTH_PROXY: &str = r#"
import http from "node:http";
const [listen, target] = process.argv.slice(2);
const to = new URL(target);
http.createServer((req, res) => {
  const up = http.request({ host: to.hostname, port: to.port, method: req.method, path: req.url,
    headers: { ...req.headers, authorization: `Bearer ${process.env.MCP_TOKEN}` } },
    (answer) => { res.writeHead(answer.statusCode, answer.headers); answer.pipe(res); });
  up.on("error", (e) => { res.writeHead(502); res.end(String(e)); });
  req.pipe(up);
  res.on("close", () => up.destroy());
}).listen(+listen, "127.0.0.1", () => console.log("listening"));
"#;

/// Kills a child process when dropped.
struct Reap(std::process::Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_conformance_suite_passes_but_for_its_baseline() {
    // The runner needs Node 22; npm carries it as a package.
    let dir = hearth_tests::require_npm(
        "mcp-conformance",
        &["@modelcontextprotocol/conformance@0.1.16", "node@22"],
    );
    let proxy_port = free_tcp_port();
    // The runner sends its own localhost Origin; this node allows it.
    let node = TestNode::start_with_stack(&format!(
        "[node]\nname = \"conf\"\n[gateway]\nenabled = true\nlisten = \"127.0.0.1:0\"\nallowed_origins = [\"http://localhost:{proxy_port}\", \"http://127.0.0.1:{proxy_port}\"]\n[plugins.echo]\n"
    ));
    let hearth_tests::GatewayInfo { base, token, .. } = node.gateway();
    std::fs::write(dir.join("auth-proxy.mjs"), AUTH_PROXY).unwrap();
    let node22 = dir.join("node_modules/node/bin/node");
    let mut proxy = Reap(
        Command::new(&node22)
            .arg(dir.join("auth-proxy.mjs"))
            .arg(proxy_port.to_string())
            .arg(&base)
            .env("MCP_TOKEN", &token)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut ready = String::new();
    BufReader::new(proxy.0.stdout.as_mut().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert_eq!(ready.trim(), "listening");
    let baseline = hearth_tests::repo_root().join("tests/mcp-conformance-baseline.yml");
    let out = Command::new(&node22)
        .arg(dir.join("node_modules/@modelcontextprotocol/conformance/dist/index.js"))
        .args(["server", "--url"])
        .arg(format!("http://localhost:{proxy_port}/mcp"))
        .arg("--expected-failures")
        .arg(&baseline)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    let summary = said.split("=== SUMMARY ===").nth(1).unwrap_or(&said);
    assert!(
        out.status.success(),
        "conformance failed beyond its baseline:\n{summary}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for passing in [
        "server-initialize",
        "ping",
        "tools-list",
        "logging-set-level",
        "dns-rebinding-protection",
    ] {
        assert!(
            summary
                .lines()
                .any(|l| l.contains(passing) && l.contains(" 0 failed")),
            "{passing} did not pass:\n{summary}"
        );
    }
}

/// `host mcp` on stdio, spoken to line by line.
struct Stdio_ {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    lines: std::sync::mpsc::Receiver<Value>,
}

impl Stdio_ {
    fn start(node: &TestNode) -> Self {
        let mut child = Command::new(host_bin())
            .arg("--socket")
            .arg(node.socket())
            .arg("mcp")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(serde_json::from_str(&line).unwrap()).is_err() {
                    return;
                }
            }
        });
        let mut this = Stdio_ {
            child,
            stdin,
            lines,
        };
        this.send(json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}));
        assert_eq!(this.next()["id"], 0);
        this.send(json!({"jsonrpc":"2.0","method":"notifications/initialized"}));
        this
    }

    fn send(&mut self, message: Value) {
        self.stdin
            .write_all(format!("{message}\n").as_bytes())
            .unwrap();
    }

    fn next(&self) -> Value {
        self.lines
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("a message from host mcp in time")
    }

    fn tool_names(&mut self, id: u64) -> Vec<String> {
        self.send(json!({"jsonrpc":"2.0","id":id,"method":"tools/list"}));
        loop {
            let message = self.next();
            if message["id"] == id {
                return message["result"]["tools"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t["name"].as_str().unwrap().to_owned())
                    .collect();
            }
        }
    }
}

impl Drop for Stdio_ {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_peer_coming_and_going_changes_the_tool_list() {
    let (head, w1) = (seat("head"), seat("worker-1"));
    let head_rest = format!("{}[plugins.echo]\n", w1.as_peer(false, ""));
    let w1_rest = format!(
        "{}[plugins.echo]\n",
        head.as_peer(
            true,
            "allow = [\"/node/echo/*\", \"/node/host/ops\"]\nscopes = [\"echo:*\"]"
        )
    );
    let head = head.start("", &head_rest);
    let mut agent = Stdio_::start(&head);
    let before = agent.tool_names(1);
    assert!(before.contains(&"echo_ping".to_owned()), "{before:?}");
    assert!(
        !before.iter().any(|n| n.starts_with("worker-1__")),
        "{before:?}"
    );

    let mut w1 = w1.start("", &w1_rest);
    let changed = agent.next();
    assert_eq!(
        changed["method"], "notifications/tools/list_changed",
        "{changed}"
    );
    let after = agent.tool_names(2);
    assert!(
        after.contains(&"worker-1__echo_ping".to_owned()),
        "{after:?}"
    );

    // Gone: the head notices (idle timeout), says so, and lists it no more.
    w1.kill9();
    let started = std::time::Instant::now();
    let mut id = 3;
    loop {
        let changed = agent.next();
        assert_eq!(
            changed["method"], "notifications/tools/list_changed",
            "{changed}"
        );
        let names = agent.tool_names(id);
        id += 1;
        if !names.iter().any(|n| n.starts_with("worker-1__")) {
            break;
        }
        assert!(started.elapsed().as_secs() < 30, "{names:?}");
    }
}
