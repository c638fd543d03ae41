//! The mesh end to end: real `host serve` processes on loopback, each with
//! its own vault, pinned to each other by the keys `host vault init`
//! printed — as an operator pairs nodes by pasting `host id` output.

use std::net::UdpSocket;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hearth_tests::{TestNode, host_bin, misbehave_plugin_dir};
use serde_json::{Value, json};

use crate::docker::{Cleanup, IMAGE, engine, subscribe};

pub(crate) const PASSPHRASE: &str = "mesh test passphrase";

/// A node before it starts: a directory with a vault, its key, its port.
pub(crate) struct Seat {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) name: &'static str,
    pub(crate) key: String,
    pub(crate) port: u16,
}

pub(crate) fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free UDP port")
        .port()
}

/// Creates `name`'s directory and vault; its key is what `vault init` printed.
pub(crate) fn seat(name: &'static str) -> Seat {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(host_bin())
        .args(["vault", "init"])
        .env("HEARTH_DATA_DIR", dir.path().join("data"))
        .env("HEARTH_PASSPHRASE", PASSPHRASE)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = stdout
        .lines()
        .find_map(|l| l.strip_prefix("node identity: "))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("vault init prints the node identity")
        .to_owned();
    Seat {
        dir,
        name,
        key,
        port: free_udp_port(),
    }
}

impl Seat {
    /// This seat as a `[peers.<name>]` entry; `dial` adds its address.
    pub(crate) fn as_peer(&self, dial: bool, extra: &str) -> String {
        let address = if dial {
            format!("address = \"127.0.0.1:{}\"\n", self.port)
        } else {
            String::new()
        };
        format!(
            "[peers.{}]\npublic_key = \"{}\"\n{address}{extra}\n",
            self.name, self.key
        )
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Starts `host serve` listening on this seat's port; `mesh` goes into
    /// `[mesh]`, `rest` after it.
    pub(crate) fn start(self, mesh: &str, rest: &str) -> TestNode {
        let stack = format!(
            "[node]\nname = \"{}\"\n[mesh]\nlisten = \"127.0.0.1:{}\"\nidle_timeout_ms = 1500\n{mesh}\n{rest}",
            self.name, self.port
        );
        TestNode::start_with_stack_env(self.dir, &stack, &[("HEARTH_PASSPHRASE", PASSPHRASE)])
    }
}

/// `host peers --json` on `node`, the entry for `peer`.
pub(crate) fn peer_status(node: &TestNode, peer: &str) -> Value {
    let peers = node.cli(&["peers", "--json"]).ok_json();
    peers["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == peer)
        .cloned()
        .unwrap_or_else(|| panic!("no peer {peer} in {peers}"))
}

/// Waits until `node` reports `peer` in `state`.
pub(crate) fn wait_for_state(node: &TestNode, peer: &str, state: &str) -> Value {
    let started = Instant::now();
    loop {
        let status = peer_status(node, peer);
        if status["state"] == state {
            return status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{peer} never became {state}: {status}\nlogs:\n{}",
            node.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until `node`'s log contains `needle`.
pub(crate) fn wait_for_log(node: &TestNode, needle: &str) -> String {
    let started = Instant::now();
    loop {
        let logs = node.logs();
        if logs.contains(needle) {
            return logs;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no `{needle}` in the logs:\n{logs}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn call(node: &TestNode, path: &str, input: &Value) -> hearth_tests::CliOutput {
    node.cli(&["call", path, &input.to_string()])
}

fn error_of(out: &hearth_tests::CliOutput) -> (String, String) {
    assert_eq!(
        out.code(),
        1,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout(),
        out.stderr()
    );
    let stderr = out.stderr();
    let rest = stderr
        .trim()
        .strip_prefix("error[")
        .unwrap_or_else(|| panic!("not a typed error: {stderr}"));
    let (code, message) = rest.split_once("]: ").unwrap();
    (code.to_owned(), message.to_owned())
}

#[test]
fn a_head_calls_two_workers_composes_them_and_is_held_to_their_grants() {
    let (head, w1, w2) = (seat("head"), seat("worker-1"), seat("worker-2"));
    // Worker-1 also knows worker-2, and lets the head use its relay.
    let rest1 = format!(
        "{}{}[plugins.echo]\ngrants.kv = true\n[plugins.relay]\ngrants.env = [\"/node/echo/*\", \"/head/echo/*\", \"/worker-2/echo/*\"]\n",
        head.as_peer(
            true,
            "allow = [\"/node/echo/*\", \"/node/host/ping\", \"/node/relay/forward\"]\nscopes = [\"echo:*\", \"docker:*\", \"relay:call\"]"
        ),
        w2.as_peer(false, "")
    );
    let rest2 = format!(
        "{}[plugins.echo]\n",
        head.as_peer(true, "allow = [\"/node/echo/*\", \"/node/host/ping\"]\nscopes = [\"echo:*\", \"docker:*\", \"relay:call\"]")
    );
    // `/*/host/*` covers the head's own host operations, never a peer's.
    let head_rest = format!(
        "{}{}[plugins.echo]\n[plugins.relay]\ngrants.env = [\"/node/echo/*\", \"/worker-1/echo/*\", \"/worker-2/echo/*\", \"/*/host/*\"]\n",
        w1.as_peer(true, ""),
        w2.as_peer(true, "")
    );
    let head_key = head.key.clone();
    let (w1_key, w2_key) = (w1.key.clone(), w2.key.clone());
    let w1 = w1.start("", &rest1);
    let w2 = w2.start("", &rest2);
    let head = head.start("", &head_rest);
    assert!(
        head.banner.contains("mesh: QUIC on 127.0.0.1:"),
        "{}",
        head.banner
    );

    // `host peers`: both workers up, with rtt and the negotiated features.
    for (peer, key) in [("worker-1", &w1_key), ("worker-2", &w2_key)] {
        let status = wait_for_state(&head, peer, "connected");
        assert_eq!(status["public_key"], key.as_str());
        assert!(status["rtt_ms"].as_f64().is_some(), "{status}");
        let features: Vec<&str> = status["features"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap())
            .collect();
        assert_eq!(features, ["calls", "cancel", "deadlines", "events"]);
    }
    let text = head.cli(&["peers"]).stdout();
    assert!(text.contains("worker-1  connected"), "{text}");

    // The head calls /worker-1/echo/ping and it runs on worker-1.
    let out = head
        .cli(&["call", "/worker-1/echo/ping", r#"{"msg":"hi"}"#, "--json"])
        .ok_json();
    assert_eq!(out["output"]["msg"], "hi");
    assert_eq!(out["source"], json!({"remote": "worker-1"}));
    // It runs there as the calling node, with the caller's deadline.
    let context = head
        .cli(&[
            "call",
            "/worker-1/echo/context",
            "{}",
            "--timeout-ms",
            "3000",
        ])
        .ok_json();
    assert_eq!(context["identity"], "peer:head");
    let left = context["deadline_ms"].as_u64().unwrap();
    assert!(left > 0 && left <= 3000, "{context}");
    // Through a plugin on the head, the request ids chain across nodes and
    // the nesting depth carries on.
    let nested = call(
        &head,
        "/node/relay/forward",
        &json!({"path": "/worker-1/echo/context", "input": {}}),
    )
    .ok_json();
    assert_eq!(nested["identity"], "peer:head");
    assert_eq!(nested["depth"], 1, "{nested}");
    assert!(nested["parent_request_id"].is_string(), "{nested}");
    let pinged = call(&head, "/worker-2/host/ping", &json!({})).ok_json();
    assert_eq!(pinged["node"], "worker-2", "it ran on worker-2");

    // The head's relay composes calls to both workers through `env`.
    let gathered = call(
        &head,
        "/node/relay/gather",
        &json!({"calls": [
            {"path": "/worker-1/echo/ping", "input": {"msg": "one"}},
            {"path": "/worker-2/echo/ping", "input": {"msg": "two"}},
            {"path": "/node/echo/ping", "input": {"msg": "here"}},
            {"path": "/worker-1/relay/ping", "input": {"msg": "not granted"}},
            {"path": "/worker-1/host/ping", "input": {}},
            {"path": "/node/host/ping", "input": {}},
        ]}),
    )
    .ok_json();
    let results = gathered["results"].as_array().unwrap();
    assert_eq!(results[0]["output"]["msg"], "one");
    assert_eq!(results[0]["source"], json!({"remote": "worker-1"}));
    assert_eq!(results[1]["output"]["msg"], "two");
    assert_eq!(results[1]["source"], json!({"remote": "worker-2"}));
    assert_eq!(results[2]["source"], json!({"plugin": "echo"}));
    let refused = results[3]["error"].as_str().unwrap();
    assert!(refused.starts_with("denied:"), "{refused}");
    assert!(
        refused.contains("not granted calls to /worker-1/relay/ping"),
        "{refused}"
    );
    let wildcard = results[4]["error"].as_str().unwrap();
    assert!(
        wildcard.starts_with("denied:"),
        "a `*` node never means a peer: {wildcard}"
    );
    assert_eq!(results[5]["output"]["node"], "head");

    // A peer's call cannot be passed on to a third node, even by a plugin
    // that may call it: the head reaches worker-2 only directly.
    let (code, message) = error_of(&call(
        &head,
        "/worker-1/relay/forward",
        &json!({"path": "/worker-2/echo/ping", "input": {"msg": "hop"}}),
    ));
    assert_eq!(code, "denied");
    assert!(
        message.contains("serving a call from peer `head`"),
        "{message}"
    );
    // Worker-1's own relay reaches worker-2 (it has no connection: it
    // waits for worker-2 to dial, which it never does, so `unavailable`).
    let (code, message) = error_of(&call(
        &w1,
        "/node/relay/forward",
        &json!({"path": "/worker-2/echo/ping", "input": {"msg": "own"}}),
    ));
    assert_eq!(code, "unavailable", "{message}");

    // Composition the other way round: worker-1's relay calls the head,
    // which grants it nothing: denied by the head, saying how to allow it.
    let out = call(
        &w1,
        "/node/relay/forward",
        &json!({"path": "/head/echo/ping", "input": {"msg": "up"}}),
    );
    let (code, message) = error_of(&out);
    assert_eq!(code, "denied");
    assert!(message.contains("on `head`"), "{message}");
    assert!(message.contains("`allow` of [peers.worker-1]"), "{message}");

    // Worker-1 grants the head echo and host/ping only.
    let (code, message) = error_of(&call(&head, "/worker-1/relay/ping", &json!({"msg": "x"})));
    assert_eq!(code, "denied");
    assert!(
        message.contains("peer `head` may not call /node/relay/ping"),
        "{message}"
    );
    let (code, message) = error_of(&call(&head, "/worker-1/host/plugins", &json!({})));
    assert_eq!(code, "denied", "{message}");

    let (code, message) = error_of(&call(&head, "/worker-9/echo/ping", &json!({})));
    assert_eq!(code, "not-found");
    assert!(
        message.contains("knows the peers worker-1, worker-2"),
        "{message}"
    );

    // Schema validation happens where the operation lives.
    let (code, message) = error_of(&call(&head, "/worker-2/echo/ping", &json!({"msg": 5})));
    assert_eq!(code, "invalid-input");
    assert!(message.contains("on `worker-2`"), "{message}");

    // `host id` prints the entry another operator pastes; `host version`
    // the features.
    let id = head.cli(&["id"]).stdout();
    assert!(id.contains("[peers.head]"), "{id}");
    assert!(id.contains(&format!("public_key = \"{head_key}\"")), "{id}");
    assert!(id.contains("address = \"127.0.0.1:"), "{id}");
    let version = head.cli(&["version", "--json"]).ok_json();
    assert_eq!(version["mesh"]["required"], json!(["calls"]));
    assert_eq!(
        version["negotiated"]["worker-2"],
        json!(["calls", "cancel", "deadlines", "events"])
    );
    assert!(
        head.cli(&["version"])
            .stdout()
            .contains("features supported: calls")
    );

    // The workers see the head connected inbound.
    let status = wait_for_state(&w2, "head", "connected");
    assert!(status["direction"] == "inbound" || status["direction"] == "outbound");
}

#[test]
fn wrong_keys_unknown_keys_and_missing_features_are_refused_with_reasons() {
    let (head, w1, w2) = (seat("head"), seat("worker-1"), seat("worker-2"));
    // The head pins a key worker-1 does not have.
    let wrong = hex::encode([0x5a; 32]);
    let head_rest = format!(
        "[peers.worker-1]\npublic_key = \"{wrong}\"\naddress = \"127.0.0.1:{}\"\n{}[plugins.echo]\n",
        w1.port,
        w2.as_peer(true, "")
    );
    // Worker-1 dials the head, which does not know worker-1's real key.
    let w1_rest = format!("{}[plugins.echo]\n", head.as_peer(true, ""));
    let w2_rest = format!(
        "{}[plugins.echo]\n",
        head.as_peer(
            false,
            "allow = [\"/node/echo/*\"]\nscopes = [\"echo:*\", \"docker:*\", \"relay:call\"]"
        )
    );
    let w1 = w1.start("", &w1_rest);
    // Worker-2 turned off streaming; the head requires it.
    let w2 = w2.start(
        "disable_features = [\"events\"]\noptional_features = [\"cancel\", \"deadlines\"]",
        &w2_rest,
    );
    let head = head.start("require_features = [\"calls\", \"events\"]", &head_rest);

    // Wrong key: refused by the head's pin, which says what it saw.
    let status = wait_for_state(&head, "worker-1", "refused");
    let error = status["last_error"].as_str().unwrap();
    assert!(error.contains("worker-1 presented key"), "{error}");
    assert!(error.contains("stack.toml pins 5a5a5a5a"), "{error}");
    let (code, message) = error_of(&call(&head, "/worker-1/echo/ping", &json!({"msg": "x"})));
    assert_eq!(code, "unavailable");
    assert!(message.contains("presented key"), "{message}");
    wait_for_log(&head, "worker-1 presented key");
    wait_for_log(&w1, "handshake failed");

    // Unknown key: worker-1 dials the head; the head closes with its reason
    // and both logs say why.
    wait_for_log(&head, "refused a node with an unknown key");
    let logs = wait_for_log(&w1, "does not know key");
    assert!(logs.contains("host id"), "{logs}");
    let status = wait_for_state(&w1, "head", "refused");
    assert!(
        status["last_error"]
            .as_str()
            .unwrap()
            .contains("head does not know key")
    );

    // Missing feature: the connection is closed, both sides name it.
    let reason = "worker-2 lacks required feature(s) `events` (required by head)";
    let status = wait_for_state(&head, "worker-2", "refused");
    assert!(
        status["last_error"].as_str().unwrap().contains(reason),
        "{status}"
    );
    wait_for_log(&head, reason);
    wait_for_log(&w2, reason);
    let (code, message) = error_of(&call(&head, "/worker-2/echo/ping", &json!({"msg": "x"})));
    assert_eq!(code, "unavailable");
    assert!(message.contains(reason), "{message}");

    // Nothing refused ever ran: every node still serves its own calls.
    for node in [&head, &w1, &w2] {
        assert_eq!(
            call(node, "/node/echo/ping", &json!({"msg": "ok"})).ok_json()["msg"],
            "ok"
        );
    }
}

#[test]
fn deadlines_cross_abandoned_calls_cancel_and_a_killed_worker_comes_back() {
    let (head, w1) = (seat("head"), seat("worker-1"));
    misbehave_plugin_dir(w1.path());
    let head_rest = format!("{}[plugins.echo]\n", w1.as_peer(true, ""));
    let w1_rest = format!(
        "{}[plugins.echo]\n[plugins.misbehave]\npath = \"misbehave\"\ntimeout_ms = 60000\n",
        head.as_peer(false, "allow = [\"/node/echo/*\", \"/node/misbehave/*\"]\nscopes = [\"echo:*\", \"docker:*\", \"relay:call\"]")
    );
    let mut w1 = w1.start("", &w1_rest);
    let head = head.start("", &head_rest);
    wait_for_state(&head, "worker-1", "connected");

    // The caller's deadline travels: worker-1 stops the call itself and
    // says so, long before the 5 s sleep would end.
    let out = head.cli(&[
        "call",
        "/worker-1/misbehave/sleep",
        r#"{"ms":5000}"#,
        "--timeout-ms",
        "400",
    ]);
    let (code, message) = error_of(&out);
    assert_eq!(code, "timeout");
    assert!(message.contains("on `worker-1`"), "{message}");

    // A caller that goes away mid-call: worker-1 cancels the call.
    let mut abandoned = Command::new(host_bin())
        .arg("--socket")
        .arg(head.socket())
        .args([
            "call",
            "/worker-1/misbehave/sleep",
            r#"{"ms":30000}"#,
            "--timeout-ms",
            "50000",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    abandoned.kill().unwrap();
    abandoned.wait().unwrap();
    wait_for_log(&w1, "peer abandoned its call; cancelled it");

    // Worker-1 dies mid-call: the head's caller gets a typed error.
    let socket = head.socket().to_owned();
    let in_flight = std::thread::spawn(move || {
        Command::new(host_bin())
            .arg("--socket")
            .arg(&socket)
            .args([
                "call",
                "/worker-1/misbehave/sleep",
                r#"{"ms":20000}"#,
                "--timeout-ms",
                "40000",
            ])
            .output()
            .unwrap()
    });
    std::thread::sleep(Duration::from_millis(800));
    w1.kill9();
    let out = hearth_tests::CliOutput(in_flight.join().unwrap());
    let (code, message) = error_of(&out);
    assert_eq!(code, "unavailable", "{message}");
    assert!(
        message.contains("connection to `worker-1` lost"),
        "{message}"
    );

    // While it is down, calls fail at once with `unavailable`, not a hang.
    wait_for_state(&head, "worker-1", "unreachable");
    let (code, message) = error_of(&call(&head, "/worker-1/echo/ping", &json!({"msg": "x"})));
    assert_eq!(code, "unavailable");
    assert!(message.contains("worker-1"), "{message}");

    // It restarts with the same vault (same key): calls work again.
    w1.restart();
    let started = Instant::now();
    loop {
        let out = call(&head, "/worker-1/echo/ping", &json!({"msg": "back"}));
        if out.code() == 0 {
            assert_eq!(out.json()["msg"], "back");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "worker-1 never came back: {}\nhead logs:\n{}",
            out.stderr(),
            head.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    wait_for_state(&head, "worker-1", "connected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workers_docker_is_driven_and_watched_from_the_head() {
    engine();
    let (head, w1) = (seat("head"), seat("worker-1"));
    let container = format!("mesh{}-web", std::process::id());
    let _cleanup = Cleanup(vec![container.clone()]);
    let head_rest = format!("{}[plugins.echo]\n", w1.as_peer(true, ""));
    let w1_rest = format!(
        "{}[plugins.docker]\ngrants.docker = {{ images = [\"hearth-busybox:*\"], max_containers = 2 }}\n",
        head.as_peer(
            false,
            "allow = [\"/node/docker/*\"]\nscopes = [\"echo:*\", \"docker:*\", \"relay:call\"]"
        )
    );
    let w1 = w1.start("", &w1_rest);
    let head = head.start("", &head_rest);
    wait_for_state(&head, "worker-1", "connected");

    // A subscription streams across nodes: worker-1's engine events reach
    // a client of the head.
    let client = std::sync::Arc::new(head.client().await);
    let (subscription, mut rx) = subscribe(&client, "/worker-1/docker/events");
    tokio::time::sleep(Duration::from_millis(700)).await;

    let run = json!({"image": IMAGE, "name": container, "command": ["/bin/sleep", "30"]});
    let created = call(&head, "/worker-1/docker/create", &run).ok_json();
    assert!(
        created["id"].as_str().is_some_and(|id| !id.is_empty()),
        "{created}"
    );
    let listed = call(&head, "/worker-1/docker/list", &json!({})).ok_json();
    assert!(listed.to_string().contains(&container), "{listed}");
    // It runs on worker-1's engine; the head's own node has no docker plugin.
    let (code, _) = error_of(&call(&head, "/node/docker/list", &json!({})));
    assert_eq!(code, "not-found");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let event = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("an event from worker-1 within 15 s")
            .expect("the stream is open");
        let event: Value = serde_json::from_str(&event).unwrap();
        if event["name"] == container.as_str() && event["action"] == "start" {
            break;
        }
    }
    assert!(
        !subscription.is_finished(),
        "it streams until the caller leaves"
    );
    subscription.abort();
    drop(client);
    wait_for_log(&w1, "peer abandoned its call; cancelled it");

    let removed = call(
        &head,
        "/worker-1/docker/remove",
        &json!({"container": container, "force": true}),
    );
    assert_eq!(removed.code(), 0, "{}", removed.stderr());
}

/// A peer made by hand in the test process, with its own (ephemeral)
/// identity, that can send what a real node never would.
struct RawPeer {
    _dir: tempfile::TempDir,
    key: String,
    certificate: std::sync::Arc<hearth_host::mesh::tls::NodeCertificate>,
}

impl RawPeer {
    fn new() -> RawPeer {
        let dir = tempfile::tempdir().unwrap();
        let vault = std::sync::Arc::new(
            hearth_host::vault::Vault::open(dir.path().join("vault.json")).unwrap(),
        );
        let key = vault.identity().public_key;
        RawPeer {
            _dir: dir,
            key,
            certificate: hearth_host::mesh::tls::NodeCertificate::new(vault),
        }
    }

    /// Dials `port`, pinning `key`; `hello` sends a proper hello first.
    async fn connect(&self, port: u16, key: &str, hello: bool) -> quinn::Connection {
        use hearth_host::mesh::tls;
        use hearth_protocol::{features::Features, mesh as wire};
        let transport = std::sync::Arc::new(tls::transport(Duration::from_secs(5), 64).unwrap());
        let expected: [u8; 32] = hex::decode(key).unwrap().try_into().unwrap();
        let config = tls::client_config(
            self.certificate.clone(),
            "worker-1",
            expected,
            transport,
            tls::RefusalSlot::default(),
        )
        .unwrap();
        let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        let connection = endpoint
            .connect_with(config, ([127, 0, 0, 1], port).into(), tls::SERVER_NAME)
            .unwrap()
            .await
            .unwrap();
        if hello {
            let (mut send, mut recv) = connection.open_bi().await.unwrap();
            let ours = wire::MeshHello {
                protocol: wire::MESH_PROTOCOL,
                node: "raw".into(),
                version: "test".into(),
                features: Features::configured(&["calls".into()], &[], &[]).unwrap(),
            };
            hearth_protocol::frame::write_frame(&mut send, &ours)
                .await
                .unwrap();
            let body = hearth_protocol::frame::read_frame(&mut recv, 65536)
                .await
                .unwrap()
                .expect("the node answers the hello");
            let theirs: wire::MeshHello = hearth_protocol::frame::decode(&body).unwrap();
            assert_eq!(theirs.node, "worker-1");
        }
        connection
    }
}

/// Sends `bytes` raw on a new call stream and returns the first frame back.
async fn raw_exchange(
    connection: &quinn::Connection,
    bytes: &[u8],
) -> hearth_protocol::mesh::ServerFrame {
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    send.write_all(bytes).await.unwrap();
    let body = hearth_protocol::frame::read_frame(&mut recv, 1 << 20)
        .await
        .unwrap()
        .expect("an answer");
    hearth_protocol::frame::decode(&body).unwrap()
}

fn framed(body: &[u8]) -> Vec<u8> {
    let mut out = u32::try_from(body.len()).unwrap().to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_streams_from_a_peer_are_refused_and_the_node_keeps_serving() {
    use hearth_protocol::mesh::{CallerFrame, MeshCall, ServerFrame};
    use hearth_protocol::socket::WireResult;
    let raw = RawPeer::new();
    let w1 = seat("worker-1");
    let (port, key) = (w1.port, w1.key.clone());
    let rest = format!(
        "[peers.raw]\npublic_key = \"{}\"\nallow = [\"/node/echo/*\"]\nscopes = [\"echo:read\"]\n[peers.other]\npublic_key = \"{}\"\n[limits]\nmax_frame_bytes = 4096\n[plugins.echo]\n",
        raw.key,
        hex::encode([0x42; 32])
    );
    let w1 = w1.start("", &rest);
    let connection = raw.connect(port, &key, true).await;

    let refusal = |frame: ServerFrame| match frame {
        ServerFrame::Refused(error) => (error.code.as_str().to_owned(), error.message),
        other => panic!("expected a refusal, got {other:?}"),
    };
    // Garbage that is not a frame body.
    let (code, message) = refusal(raw_exchange(&connection, &framed(&[0xff; 12])).await);
    assert_eq!(code, "invalid-input");
    assert!(message.contains("malformed frame"), "{message}");
    // An empty frame.
    let (code, _) = refusal(raw_exchange(&connection, &[0, 0, 0, 0]).await);
    assert_eq!(code, "invalid-input");
    // A frame larger than the node accepts.
    let (code, message) = refusal(raw_exchange(&connection, &[0xff, 0xff, 0xff, 0xff, 1]).await);
    assert_eq!(code, "resource-exhausted");
    assert!(message.contains("max_frame_bytes"), "{message}");
    // A frame of the wrong kind.
    let cancel = postcard::to_stdvec(&CallerFrame::Cancel).unwrap();
    let (_, message) = refusal(raw_exchange(&connection, &framed(&cancel)).await);
    assert!(message.contains("must start with Call"), "{message}");

    // A path outside the peer's `allow`, and a path naming another node:
    // both denied, nothing forwarded.
    let call = |path: &str| {
        framed(
            &postcard::to_stdvec(&CallerFrame::Call(MeshCall {
                path: path.into(),
                input: r#"{"msg":"raw"}"#.into(),
                metadata: vec![],
                parent_request_id: None,
                depth: 0,
                timeout_ms: Some(2000),
            }))
            .unwrap(),
        )
    };
    for (path, fragment) in [
        ("/node/host/plugins", "may not call /node/host/plugins"),
        (
            "/other/echo/ping",
            "calls from peers never reach another node",
        ),
        (
            "/nowhere/echo/ping",
            "calls from peers never reach another node",
        ),
        (
            "/node/echo/pnig",
            "has no operation at `/node/echo/pnig` for peer `raw`",
        ),
        ("/worker-1/echo/ping", ""),
    ] {
        let frame = raw_exchange(&connection, &call(path)).await;
        match (frame, fragment.is_empty()) {
            (ServerFrame::Reply(WireResult::Ok(reply)), true) => {
                assert_eq!(reply.output, r#"{"msg":"raw"}"#, "its own name is local");
            }
            (ServerFrame::Reply(WireResult::Err(error)), false) => {
                assert!(error.message.contains(fragment), "{error:?}");
            }
            (other, _) => panic!("{path}: {other:?}"),
        }
    }

    // After all that, the same connection still serves a good call.
    match raw_exchange(&connection, &call("/node/echo/ping")).await {
        ServerFrame::Reply(WireResult::Ok(reply)) => assert_eq!(reply.output, r#"{"msg":"raw"}"#),
        other => panic!("{other:?}"),
    }

    // A connection that skips the hello is closed with the reason.
    let rude = raw.connect(port, &key, false).await;
    let (mut send, _recv) = rude.open_bi().await.unwrap();
    send.write_all(&call("/node/echo/ping")).await.unwrap();
    let closed = rude.closed().await;
    assert!(
        closed.to_string().contains("malformed hello")
            || matches!(closed, quinn::ConnectionError::ApplicationClosed(_)),
        "{closed}"
    );
    assert_eq!(call_ok(&w1), "ok");
}

fn call_ok(node: &TestNode) -> String {
    call(node, "/node/echo/ping", &json!({"msg": "ok"})).ok_json()["msg"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn two_operators_pair_their_nodes_by_pasting_host_id_output() {
    let (a, b) = (seat("head"), seat("worker-1"));
    let mut head = a.start("", "[plugins.echo]\n");
    let mut worker = b.start("", "[plugins.echo]\n");
    assert_eq!(peer_count(&head), 0);

    // Each operator prints their node's entry and sends it to the other.
    let head_id = head.cli(&["id"]).stdout();
    let worker_id = worker.cli(&["id"]).stdout();
    assert!(head_id.contains("[peers.head]"), "{head_id}");
    let paste = |node: &TestNode, text: &str| {
        let file = node.dir().join("stack.toml");
        let mut stack = std::fs::read_to_string(&file).unwrap();
        stack.push('\n');
        stack.push_str(text);
        std::fs::write(&file, stack).unwrap();
    };
    paste(&head, &worker_id);
    // The worker's operator also says what the head may call there.
    paste(
        &worker,
        &format!("{head_id}allow = [\"/node/echo/*\"]\nscopes = [\"echo:*\"]\n"),
    );
    worker.restart();
    head.restart();

    wait_for_state(&head, "worker-1", "connected");
    let out = call(&head, "/worker-1/echo/ping", &json!({"msg": "paired"})).ok_json();
    assert_eq!(out["msg"], "paired");
    // Both dial each other; the worker granted nothing else, the head
    // granted the worker nothing at all.
    wait_for_state(&worker, "head", "connected");
    let (code, _) = error_of(&call(&worker, "/head/echo/ping", &json!({"msg": "x"})));
    assert_eq!(code, "denied");
}

fn peer_count(node: &TestNode) -> usize {
    node.cli(&["peers", "--json"]).ok_json()["peers"]
        .as_array()
        .unwrap()
        .len()
}

#[test]
fn no_plugin_signs_with_the_node_identity_whatever_its_grants() {
    let node = seat("solo").start("", "[plugins.signer]\ngrants.vault = [\"m\"]\n");
    let sign = |path: &str| {
        call(
            &node,
            "/node/signer/sign",
            &json!({"path": path, "message": "handshake"}),
        )
    };
    let (code, message) = error_of(&sign("m/74'/0'/0'/0'"));
    assert_eq!(code, "denied");
    assert!(message.contains("the node identity"), "{message}");
    let (code, _) = error_of(&sign("m/74'/0'/7'"));
    assert_eq!(code, "denied");
    sign("m/74'/5'/0'").ok_json();
}

#[test]
fn a_locked_vault_keeps_the_node_off_the_mesh_until_unlocked() {
    let (head, w1) = (seat("head"), seat("worker-1"));
    let head_rest = format!("{}[plugins.echo]\n", w1.as_peer(true, ""));
    let w1_rest = format!(
        "{}[plugins.echo]\n",
        head.as_peer(
            false,
            "allow = [\"/node/echo/*\"]\nscopes = [\"echo:*\", \"docker:*\", \"relay:call\"]"
        )
    );
    let _w1 = w1.start("", &w1_rest);
    // The head starts without its passphrase: vault locked.
    let stack = format!(
        "[node]\nname = \"head\"\n[mesh]\nlisten = \"127.0.0.1:{}\"\n{head_rest}",
        head.port
    );
    let head = TestNode::start_with_stack_env(head.dir, &stack, &[]);
    assert!(head.banner.contains("vault locked"), "{}", head.banner);
    let status = wait_for_state(&head, "worker-1", "locked");
    assert!(
        status["last_error"]
            .as_str()
            .unwrap()
            .contains("host vault unlock")
    );
    let (code, message) = error_of(&call(&head, "/worker-1/echo/ping", &json!({"msg": "x"})));
    assert_eq!(code, "unavailable");
    assert!(message.contains("vault is locked"), "{message}");

    let unlocked = Command::new(host_bin())
        .arg("--socket")
        .arg(head.socket())
        .args(["vault", "unlock"])
        .env("HEARTH_PASSPHRASE", PASSPHRASE)
        .output()
        .unwrap();
    assert!(
        unlocked.status.success(),
        "{}",
        String::from_utf8_lossy(&unlocked.stderr)
    );
    wait_for_state(&head, "worker-1", "connected");
    let out = call(&head, "/worker-1/echo/ping", &json!({"msg": "unlocked"})).ok_json();
    assert_eq!(out["msg"], "unlocked");
}
