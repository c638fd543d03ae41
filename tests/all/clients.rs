//! Client identities end to end: a new key waits for an operator, the
//! first answer wins, proofs cannot be replayed or borrowed, scopes hold
//! on the socket and over HTTP.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use hearth_host::client::{Client, ClientError, ClientKey};
use hearth_protocol::frame;
use hearth_protocol::socket::{ClientFrame, NodeFrame, PROTOCOL_VERSION};
use hearth_tests::{TestNode, host_bin};
use serde_json::{Value, json};
use tokio::net::UnixStream;

fn node(extra: &str) -> TestNode {
    TestNode::start_with_stack(&format!(
        "[node]\nname = \"door\"\n{extra}\n[plugins.echo]\ngrants.kv = true\n"
    ))
}

/// `host` with this node's socket and a client key of its own.
fn as_client(node: &TestNode, key_file: &std::path::Path, args: &[&str]) -> Command {
    let mut command = Command::new(host_bin());
    command
        .arg("--socket")
        .arg(node.socket())
        .args(args)
        .env("HEARTH_CLIENT_KEY", key_file)
        .env("HEARTH_CLIENT_NAME", "tester");
    command
}

#[test]
fn a_new_client_waits_for_an_operator_watching_then_calls_within_its_scopes() {
    let node = node("");
    let key_file = node.dir().join("tester.key");

    // The operator's agent: answers at its prompt (a pipe here).
    let mut agent = Command::new(host_bin())
        .arg("--socket")
        .arg(node.socket())
        .args(["approve", "--watch", "--scopes", "echo:read"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("host approve");
    // The new client's first call waits for the answer.
    let waiting = as_client(
        &node,
        &key_file,
        &["call", "/node/echo/ping", r#"{"msg":"let me in"}"#],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("host call");

    let mut prompts = BufReader::new(agent.stdout.take().unwrap());
    let mut prompt = Vec::new();
    // The prompt has no newline: read up to its colon-space end.
    loop {
        let mut byte = [0u8; 1];
        std::io::Read::read_exact(&mut prompts, &mut byte).expect("a prompt");
        prompt.push(byte[0]);
        if prompt.ends_with(b"to refuse: ") {
            break;
        }
    }
    let prompt = String::from_utf8_lossy(&prompt).into_owned();
    assert!(prompt.contains("client `tester`"), "{prompt}");
    assert!(prompt.contains("over socket"), "{prompt}");
    // Enter: the default scopes.
    agent.stdin.as_mut().unwrap().write_all(b"\n").unwrap();
    let mut answered = String::new();
    prompts.read_line(&mut answered).unwrap();
    assert!(
        answered.contains("approved with scopes echo:read"),
        "{answered}"
    );

    let out = waiting.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("waiting up to"), "{stderr}");
    let reply: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(reply["msg"], "let me in");

    // Within its scopes, without asking again; outside them, refused by name.
    let again = as_client(
        &node,
        &key_file,
        &["call", "/node/echo/get", r#"{"key":"k"}"#],
    )
    .output()
    .unwrap();
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let refused = as_client(
        &node,
        &key_file,
        &["call", "/node/echo/put", r#"{"key":"k","value":"v"}"#],
    )
    .output()
    .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(why.contains("denied"), "{why}");
    assert!(why.contains("lacks scope `echo:write`"), "{why}");
    assert!(why.contains("client:tester:"), "{why}");
    // It lists only what it may call.
    let ops = as_client(&node, &key_file, &["ops", "--json"])
        .output()
        .unwrap();
    let ops: Value = serde_json::from_slice(&ops.stdout).unwrap();
    let paths: Vec<&str> = ops
        .as_array()
        .unwrap()
        .iter()
        .map(|op| op["path"].as_str().unwrap())
        .collect();
    assert!(paths.contains(&"/node/echo/ping"), "{paths:?}");
    assert!(!paths.contains(&"/node/echo/put"), "{paths:?}");
    assert!(!paths.contains(&"/node/clients/list"), "{paths:?}");

    // The operator's view; the operator revokes; the client is out.
    let list = node.cli(&["clients", "list", "--json"]).ok_json();
    let clients = list.as_array().unwrap();
    assert_eq!(clients.len(), 1, "{list}");
    assert_eq!(clients[0]["name"], "tester");
    assert_eq!(clients[0]["status"], "approved");
    assert_eq!(clients[0]["scopes"], json!(["echo:read"]));
    assert!(
        clients[0]["decided_by"]
            .as_str()
            .unwrap()
            .starts_with("local:uid:")
    );
    let key = clients[0]["key"].as_str().unwrap().to_owned();
    let own_key = as_client(&node, &key_file, &["clients", "key"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&own_key.stdout).trim(), key);

    let revoked = node.cli(&["clients", "revoke", &key]);
    assert_eq!(revoked.code(), 0, "{}", revoked.stderr());
    let out = as_client(&node, &key_file, &["call", "/node/echo/ping", "{}"])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("was revoked"));
    agent.kill().ok();
    agent.wait().ok();
}

async fn operator(node: &TestNode) -> Client {
    Client::connect(node.socket()).await.expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_connections_with_one_new_key_make_one_request_and_fifty_deciders_one_decision() {
    let node = node("");
    let key = Arc::new(ClientKey::generate().unwrap());

    // An operator agent watching, as `host approve --watch` does.
    let watcher = Arc::new(operator(&node).await);
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel::<Value>();
    let watch = {
        let watcher = watcher.clone();
        tokio::spawn(async move {
            watcher
                .call_with_events("/node/clients/requests", "{}", Default::default(), |e| {
                    let _ = seen_tx.send(serde_json::from_str(&e).unwrap());
                })
                .await
        })
    };

    let socket = node.socket().to_owned();
    let mut racers = Vec::new();
    for _ in 0..50 {
        let (key, socket) = (key.clone(), socket.clone());
        racers.push(tokio::spawn(async move {
            Client::connect_with_key(&socket, &key, "racer", &mut |_| {}).await
        }));
    }
    let first = tokio::time::timeout(Duration::from_secs(30), seen.recv())
        .await
        .expect("a request")
        .unwrap();
    assert_eq!(first["event"], "request");
    assert_eq!(first["key"], key.public_hex());
    // Let every racer reach the node before anyone answers.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut deciders = Vec::new();
    for i in 0..50 {
        let socket = socket.clone();
        let hex = key.public_hex();
        deciders.push(tokio::spawn(async move {
            let op = Client::connect(&socket).await.unwrap();
            let scopes = if i % 2 == 0 {
                vec!["echo:read"]
            } else {
                vec!["echo:*"]
            };
            op.call(
                "/node/clients/decide",
                &json!({ "key": hex, "approve": true, "scopes": scopes }),
            )
            .await
        }));
    }
    let (mut won, mut conflicts) = (0, 0);
    for decider in deciders {
        match decider.await.unwrap() {
            Ok(_) => won += 1,
            Err(ClientError::Call(e)) => {
                assert_eq!(e.code.as_str(), "conflict", "{e}");
                assert!(e.message.contains("answered by local:uid:"), "{e}");
                conflicts += 1;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!((won, conflicts), (1, 49));

    let mut identities = std::collections::BTreeSet::new();
    for racer in racers {
        let client = racer.await.unwrap().expect("every racer is let in");
        identities.insert(client.identity().to_owned());
        let reply = client
            .call("/node/echo/ping", &json!({"msg": "in"}))
            .await
            .unwrap();
        assert_eq!(reply.output["msg"], "in");
    }
    assert_eq!(identities.len(), 1);

    // One request, one decision, one record.
    let decided = tokio::time::timeout(Duration::from_secs(10), seen.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(decided["event"], "decided");
    assert_eq!(decided["status"], "approved");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        seen.try_recv().is_err(),
        "nothing more than one request and one decision"
    );
    let list = watcher
        .call("/node/clients/list", &json!({}))
        .await
        .unwrap();
    assert_eq!(list.output.as_array().unwrap().len(), 1, "{}", list.output);
    watch.abort();
}

/// A raw socket connection, to send what a good client would not.
struct Raw {
    reader: tokio::net::unix::OwnedReadHalf,
    writer: tokio::net::unix::OwnedWriteHalf,
}

impl Raw {
    async fn open(node: &TestNode) -> Raw {
        let stream = UnixStream::connect(node.socket()).await.unwrap();
        let (reader, writer) = stream.into_split();
        let mut raw = Raw { reader, writer };
        raw.send(ClientFrame::Hello {
            protocol: PROTOCOL_VERSION,
            client: "raw".into(),
        })
        .await;
        assert!(matches!(raw.next().await, NodeFrame::Hello { .. }));
        raw
    }

    async fn send(&mut self, frame: ClientFrame) {
        frame::write_frame(&mut self.writer, &frame).await.unwrap();
    }

    async fn next(&mut self) -> NodeFrame {
        let body = tokio::time::timeout(
            Duration::from_secs(10),
            frame::read_frame(&mut self.reader, 1 << 20),
        )
        .await
        .expect("a frame in time")
        .unwrap()
        .expect("a frame");
        frame::decode(&body).unwrap()
    }

    /// Asks for a challenge for `key`: its nonce and the node's key.
    async fn challenge(&mut self, key: &ClientKey) -> (u64, [u8; 32]) {
        self.send(ClientFrame::Authenticate {
            key: key.public().to_vec(),
            name: "raw".into(),
        })
        .await;
        match self.next().await {
            NodeFrame::Challenge { nonce, node_key } => (nonce, node_key.try_into().unwrap()),
            other => panic!("expected a challenge, got {other:?}"),
        }
    }

    /// The next frame, which must be a refusal: its code and message.
    async fn refusal(&mut self) -> (String, String) {
        match self.next().await {
            NodeFrame::Refused { error, .. } => (error.code.as_str().to_owned(), error.message),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    /// The next frame, which must be a `denied` refusal: its message.
    async fn refused(&mut self) -> String {
        let (code, message) = self.refusal().await;
        assert_eq!(code, "denied", "{message}");
        message
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proofs_cannot_be_replayed_borrowed_or_made_for_something_else() {
    let node = node("");
    let key = ClientKey::generate().unwrap();
    let op = operator(&node).await;
    op.call(
        "/node/clients/approve",
        &json!({ "key": key.public_hex(), "scopes": ["echo:read"] }),
    )
    .await
    .unwrap();

    let mut raw = Raw::open(&node).await;
    // Signed by another key.
    let (nonce, node_key) = raw.challenge(&key).await;
    let thief = ClientKey::generate().unwrap();
    let signature = thief.sign_challenge(&node_key, nonce).to_vec();
    raw.send(ClientFrame::Prove { nonce, signature }).await;
    assert!(raw.refused().await.contains("does not match"));
    // A wrong answer uses the challenge up: the right one now is too late.
    let signature = key.sign_challenge(&node_key, nonce).to_vec();
    raw.send(ClientFrame::Prove { nonce, signature }).await;
    let (code, message) = raw.refusal().await;
    assert_eq!(code, "invalid-input");
    assert!(message.contains("Prove answers a Challenge"), "{message}");

    // A signature of the same nonce for another purpose, or another node.
    let (nonce, node_key) = raw.challenge(&key).await;
    let mut other = b"some-other-protocol/1\0".to_vec();
    other.extend_from_slice(&node_key);
    other.extend_from_slice(&key.public());
    other.extend_from_slice(&nonce.to_be_bytes());
    raw.send(ClientFrame::Prove {
        nonce,
        signature: key.sign(&other).to_vec(),
    })
    .await;
    assert!(raw.refused().await.contains("does not match"));
    let (nonce, _) = raw.challenge(&key).await;
    raw.send(ClientFrame::Prove {
        nonce,
        signature: key.sign_challenge(&[7; 32], nonce).to_vec(),
    })
    .await;
    assert!(raw.refused().await.contains("does not match"));

    // A nonce never issued (the next one), and the right answer.
    let (nonce, node_key) = raw.challenge(&key).await;
    raw.send(ClientFrame::Prove {
        nonce: nonce + 1,
        signature: key.sign_challenge(&node_key, nonce + 1).to_vec(),
    })
    .await;
    assert!(raw.refused().await.contains("no challenge with this nonce"));
    let (nonce, node_key) = raw.challenge(&key).await;
    let good = key.sign_challenge(&node_key, nonce).to_vec();
    raw.send(ClientFrame::Prove {
        nonce,
        signature: good.clone(),
    })
    .await;
    match raw.next().await {
        NodeFrame::Authenticated { identity, scopes } => {
            assert!(identity.starts_with("client:raw:"), "{identity}");
            assert_eq!(scopes, ["echo:read"]);
        }
        other => panic!("{other:?}"),
    }

    // Replayed on another connection, even with a challenge open there.
    let mut replay = Raw::open(&node).await;
    let (fresh, _) = replay.challenge(&key).await;
    assert!(fresh > nonce, "nonces only go up");
    replay
        .send(ClientFrame::Prove {
            nonce,
            signature: good,
        })
        .await;
    assert!(
        replay
            .refused()
            .await
            .contains("no challenge with this nonce")
    );

    // Malformed: a short key, a proof with nothing asked.
    let mut bad = Raw::open(&node).await;
    bad.send(ClientFrame::Authenticate {
        key: vec![1; 31],
        name: "short".into(),
    })
    .await;
    let (code, message) = bad.refusal().await;
    assert_eq!(code, "invalid-input");
    assert!(message.contains("32 bytes"), "{message}");
    bad.send(ClientFrame::Prove {
        nonce: 0,
        signature: vec![0; 64],
    })
    .await;
    let (code, message) = bad.refusal().await;
    assert_eq!(code, "invalid-input");
    assert!(message.contains("send Authenticate first"), "{message}");
    // A name an operator could be fooled by.
    bad.send(ClientFrame::Authenticate {
        key: ClientKey::generate().unwrap().public().to_vec(),
        name: "host-cli\napproved".into(),
    })
    .await;
    assert_eq!(bad.refusal().await.0, "invalid-input");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_requiring_keys_lets_in_only_proven_clients() {
    let operator_key = ClientKey::generate().unwrap();
    let node = node(&format!(
        "[clients]\nrequire_keys_on_socket = true\noperator_keys = [\"{}\"]\napproval_timeout_s = 2\n",
        operator_key.public_hex()
    ));
    let keyless = operator(&node).await;
    assert_eq!(keyless.identity(), "unauthenticated");
    let err = keyless
        .call("/node/host/ping", &json!({}))
        .await
        .unwrap_err();
    let err = err.call_error().unwrap();
    assert_eq!(err.code.as_str(), "denied");
    assert!(err.message.contains("require_keys_on_socket"), "{err}");

    // The configured operator key holds everything.
    let admin = Client::connect_with_key(node.socket(), &operator_key, "admin", &mut |_| {})
        .await
        .unwrap();
    admin.call("/node/clients/list", &json!({})).await.unwrap();

    // Nobody answers a stranger: it times out and leaves no request behind.
    let stranger = ClientKey::generate().unwrap();
    let mut told = Vec::new();
    let Err(err) = Client::connect_with_key(node.socket(), &stranger, "stranger", &mut |m| {
        told.push(m.to_owned())
    })
    .await
    else {
        panic!("a stranger nobody approved got in");
    };
    assert_eq!(err.call_error().unwrap().code.as_str(), "timeout", "{err}");
    assert!(told[0].contains("host approve --watch"), "{told:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let list = admin.call("/node/clients/list", &json!({})).await.unwrap();
    assert!(
        list.output
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["status"] != "pending"),
        "{}",
        list.output
    );
}

#[test]
fn an_http_client_proves_its_key_for_a_session_and_is_held_to_its_scopes() {
    let python =
        hearth_tests::require_python(&[("requests", "requests"), ("cryptography", "cryptography")]);
    let node = TestNode::start_with_stack(
        "[node]\nname = \"web\"\n[gateway]\nenabled = true\nlisten = \"127.0.0.1:0\"\n[plugins.echo]\ngrants.kv = true\n",
    );
    let base = node.gateway().base;
    let script = r#"
import sys, requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives import serialization

base = sys.argv[1]
key = Ed25519PrivateKey.generate()
public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()
print(public, flush=True)

def challenge():
    r = requests.post(f"{base}/v1/auth/challenge", json={"key": public, "name": "py"})
    assert r.status_code == 200, r.text
    return r.json()

def message(c, nonce, context=None):
    context = (context or c["context"]).encode()
    return context + b"\0" + bytes.fromhex(c["node_key"]) + bytes.fromhex(public) + nonce.to_bytes(8, "big")

def session(nonce, signature):
    return requests.post(f"{base}/v1/auth/session", json={"key": public, "nonce": nonce, "signature": signature.hex()})

c = challenge()  # held until the operator approves
good = key.sign(message(c, c["nonce"]))
r = session(c["nonce"], good)
assert r.status_code == 200, r.text
s = r.json()
assert s["scopes"] == ["echo:read"], s
assert s["identity"].startswith("client:py:"), s
auth = {"Authorization": f"Bearer {s['token']}"}

r = requests.post(f"{base}/v1/call/node/echo/ping", json={"msg": "from a client"}, headers=auth)
assert r.status_code == 200 and r.json()["output"]["msg"] == "from a client", r.text
r = requests.post(f"{base}/v1/call/node/echo/put", json={"key": "k", "value": "v"}, headers=auth)
assert r.status_code == 403, r.text
assert "lacks scope `echo:write`" in r.json()["error"]["message"], r.text
r = requests.get(f"{base}/v1/ops", headers=auth)
assert r.status_code == 200, r.text
paths = [op["path"] for op in r.json()]
assert "/node/echo/ping" in paths and "/node/echo/put" not in paths, paths
r = requests.get(f"{base}/metrics", headers=auth)
assert r.status_code == 403, r.text

# The same proof again: refused.
r = session(c["nonce"], good)
assert r.status_code == 403 and "no challenge" in r.json()["error"]["message"], r.text
# A signature made for another purpose: refused.
c = challenge()
r = session(c["nonce"], key.sign(message(c, c["nonce"], "another-protocol/1")))
assert r.status_code == 403, r.text
# Malformed proofs: a clear error, nothing changes.
r = requests.post(f"{base}/v1/auth/session", json={"key": public, "nonce": "x", "signature": ""})
assert r.status_code == 422, r.text
r = requests.post(f"{base}/v1/auth/challenge", json={"key": "zz", "name": "py"})
assert r.status_code == 422 and "64 hex digits" in r.text, r.text
r = requests.post(f"{base}/v1/call/node/echo/ping", json={}, headers={"Authorization": "Bearer hst_" + "0" * 64})
assert r.status_code == 401, r.text
print("revoke", flush=True)
sys.stdin.readline()
r = requests.post(f"{base}/v1/call/node/echo/ping", json={"msg": "again"}, headers=auth)
assert r.status_code == 401, r.text
print("ok", flush=True)
"#;
    let mut child = Command::new(&python)
        .args(["-c", script, &base])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut key = String::new();
    out.read_line(&mut key).unwrap();
    let key = key.trim().to_owned();
    assert_eq!(key.len(), 64, "the script printed its key");
    // The operator sees the request waiting and lets it in.
    let mut listed = false;
    for _ in 0..100 {
        let list = node.cli(&["clients", "list", "--json"]).ok_json();
        if list
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["key"] == key.as_str() && c["status"] == "pending" && c["door"] == "http")
        {
            listed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(listed, "the request shows as pending");
    let approved = node.cli(&["clients", "approve", &key, "--scopes", "echo:read"]);
    assert_eq!(approved.code(), 0, "{}", approved.stderr());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    if line.trim() != "revoke" {
        let mut err = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).ok();
        panic!("the script stopped: {line}{err}");
    }
    let revoked = node.cli(&["clients", "revoke", &key]);
    assert_eq!(revoked.code(), 0, "{}", revoked.stderr());
    child.stdin.as_mut().unwrap().write_all(b"\n").unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).ok();
    let status = child.wait_with_output().unwrap();
    assert!(
        status.status.success(),
        "{rest}{}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(rest.contains("ok"), "{rest}");
    // Tokens never reach the log.
    let logs = node.logs();
    assert!(!logs.contains("hst_"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_reaches_no_further_through_a_peer_than_it_could_itself() {
    use crate::mesh::{seat, wait_for_state};
    let (head, w1) = (seat("head"), seat("worker-1"));
    // The head may call everything of echo on the worker…
    let w1_rest = format!(
        "{}[plugins.echo]\ngrants.kv = true\n",
        head.as_peer(false, "allow = [\"/node/echo/*\"]\nscopes = [\"echo:*\"]")
    );
    let head_rest = format!("{}[plugins.echo]\n", w1.as_peer(true, ""));
    let _w1 = w1.start("", &w1_rest);
    let head = head.start("", &head_rest);
    wait_for_state(&head, "worker-1", "connected");

    // …but a client the head let read only does not write there either.
    let key = ClientKey::generate().unwrap();
    operator(&head)
        .await
        .call(
            "/node/clients/approve",
            &json!({ "key": key.public_hex(), "scopes": ["echo:read"] }),
        )
        .await
        .unwrap();
    let reader = Client::connect_with_key(head.socket(), &key, "reader", &mut |_| {})
        .await
        .unwrap();
    let reply = reader
        .call("/worker-1/echo/ping", &json!({"msg": "over there"}))
        .await
        .unwrap();
    assert_eq!(reply.output["msg"], "over there");
    let err = reader
        .call("/worker-1/echo/put", &json!({"key": "k", "value": "v"}))
        .await
        .unwrap_err();
    let err = err.call_error().unwrap();
    assert_eq!(err.code.as_str(), "denied", "{err}");
    assert!(
        err.message
            .contains("for a client lacking scope `echo:write`"),
        "{err}"
    );
    // The head's operator still may.
    operator(&head)
        .await
        .call("/worker-1/echo/put", &json!({"key": "k", "value": "v"}))
        .await
        .unwrap();
}
