//! The docker plugin against a real engine: the setup installs docker.io and
//! busybox-static when missing, starts `dockerd` when it is not running and
//! imports a busybox image (there is no registry).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use hearth_tests::TestNode;

/// Bump the tag when the image content changes: an existing image is reused.
pub(crate) const IMAGE: &str = "hearth-busybox:e2e1";

fn docker(args: &[&str]) -> std::process::Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("the docker CLI is installed (apt-get install docker.io)")
}

/// Starts the engine if needed and imports the test image once per run.
pub(crate) fn engine() {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        hearth_tests::require_packages(&[("dockerd", "docker.io"), ("busybox", "busybox-static")]);
        if !docker(&["info"]).status.success() {
            // Detached: the engine outlives this test run, as it would on a host.
            let started = Command::new("sh")
                .args(["-c", "dockerd >/tmp/hearth-test-dockerd.log 2>&1 &"])
                .status()
                .expect("a shell to start dockerd");
            assert!(
                started.success(),
                "dockerd is installed (apt-get install docker.io) and can be started"
            );
            let started = Instant::now();
            while !docker(&["info"]).status.success() {
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "dockerd did not come up"
                );
                std::thread::sleep(Duration::from_millis(250));
            }
        }
        if !docker(&["image", "inspect", IMAGE]).status.success() {
            let root = tempfile::tempdir().unwrap();
            let bin = root.path().join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            std::fs::copy("/bin/busybox", bin.join("busybox"))
                .expect("busybox-static is installed");
            for applet in ["sh", "httpd", "echo", "sleep", "cat"] {
                std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
            }
            std::fs::create_dir_all(root.path().join("www")).unwrap();
            std::fs::write(
                root.path().join("www/index.html"),
                "hello from a hearth container\n",
            )
            .unwrap();
            let status = Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "tar -C {} -c . | docker import - {IMAGE}",
                    root.path().display()
                ))
                .status()
                .unwrap();
            assert!(status.success(), "docker import failed");
        }
    });
}

/// A node named uniquely (containers are counted per node and plugin) with
/// the docker plugin granted the test image and ports 18000-18999.
fn node(extra: &str) -> (TestNode, String) {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("t{}n{n}", std::process::id());
    let stack = format!(
        r#"
        [node]
        name = "{name}"
        {extra}
        [plugins.echo]
        [plugins.docker]
        grants.docker = {{ images = ["hearth-busybox:*"], host_ports = "18000-18999", max_containers = 2 }}
        "#
    );
    (TestNode::start_with_stack(&stack), name)
}

pub(crate) fn free_port() -> u16 {
    (18000..19000)
        .cycle()
        .skip((std::process::id() % 1000) as usize)
        .take(1000)
        .find(|p| std::net::TcpListener::bind(("0.0.0.0", *p)).is_ok())
        .expect("a free port in 18000-18999")
}

fn http_get(port: u16) -> String {
    let started = Instant::now();
    loop {
        if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = stream.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n");
            let mut body = String::new();
            let _ = stream.read_to_string(&mut body);
            if body.contains("200") {
                return body;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no page on port {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Removes the named containers when dropped, even when a test fails.
/// Calls the subscription `path` on its own task; its events arrive on the
/// receiver until the task is aborted.
pub(crate) fn subscribe(
    client: &std::sync::Arc<hearth_host::client::Client>,
    path: &'static str,
) -> (
    tokio::task::JoinHandle<
        Result<hearth_registry::ResponseEnvelope, hearth_host::client::ClientError>,
    >,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let client = client.clone();
    let task = tokio::spawn(async move {
        client
            .call_with_events(
                path,
                "{}",
                hearth_host::client::CallOptions::default(),
                move |event| {
                    let _ = tx.send(event);
                },
            )
            .await
    });
    (task, rx)
}

pub(crate) struct Cleanup(pub(crate) Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = docker(&["rm", "-f", name]);
        }
    }
}

#[test]
fn a_container_serves_a_page_and_is_listed_inspected_stopped_and_removed() {
    engine();
    let (node, node_name) = node("");
    let container = format!("{node_name}-web");
    let _cleanup = Cleanup(vec![container.clone()]);
    let port = free_port();
    let input = serde_json::json!({
        "image": IMAGE,
        "name": container,
        "ports": [{"container": 80, "host": port}],
        "command": ["/bin/httpd", "-f", "-v", "-p", "80", "-h", "/www"],
        "labels": {"purpose": "test"},
        "env": {"GREETING": "hi"},
    });
    let created = node
        .cli(&["call", "/node/docker/create", &input.to_string()])
        .ok_json();
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(http_get(port).contains("hello from a hearth container"));

    // list agrees with `docker ps`.
    let list = node.cli(&["call", "/node/docker/list"]).ok_json();
    let listed: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [id.as_str()]);
    let ps = String::from_utf8(
        docker(&[
            "ps",
            "--no-trunc",
            "--filter",
            &format!("label=hearth.node={node_name}"),
            "--format",
            "{{.ID}} {{.Names}}",
        ])
        .stdout,
    )
    .unwrap();
    assert_eq!(ps.trim(), format!("{id} {container}"));
    assert_eq!(
        list[0]["ports"],
        serde_json::json!([format!("{port}->80/tcp")])
    );
    assert_eq!(list[0]["labels"]["purpose"], "test");

    // inspect agrees with `docker inspect`.
    let inspected = node
        .cli(&[
            "call",
            "/node/docker/inspect",
            &serde_json::json!({"container": container}).to_string(),
        ])
        .ok_json();
    let docker_inspect: serde_json::Value =
        serde_json::from_slice(&docker(&["inspect", &container]).stdout).unwrap();
    assert_eq!(inspected["id"], docker_inspect[0]["Id"]);
    assert_eq!(inspected["image"], docker_inspect[0]["Config"]["Image"]);
    assert_eq!(inspected["state"], "running");

    // logs show the request httpd served (-v logs to stderr).
    let logs = node
        .cli(&[
            "call",
            "/node/docker/logs",
            &serde_json::json!({"container": container, "tail": 10}).to_string(),
        ])
        .ok_json();
    assert!(logs["lines"].as_array().is_some());

    let target = serde_json::json!({"container": container, "timeout_secs": 1}).to_string();
    node.cli(&["call", "/node/docker/stop", &target]).ok_json();
    let inspected = node
        .cli(&[
            "call",
            "/node/docker/inspect",
            &serde_json::json!({"container": container}).to_string(),
        ])
        .ok_json();
    assert_eq!(inspected["state"], "exited");
    assert_eq!(
        node.cli(&["call", "/node/docker/list"]).ok_json(),
        serde_json::json!([])
    );
    node.cli(&[
        "call",
        "/node/docker/remove",
        &serde_json::json!({"container": container}).to_string(),
    ])
    .ok_json();
    assert!(
        !docker(&["inspect", &container]).status.success(),
        "container gone"
    );
    assert_eq!(
        node.cli(&["call", "/node/docker/list", r#"{"all":true}"#])
            .ok_json(),
        serde_json::json!([])
    );
}

#[test]
fn engine_errors_and_policy_are_typed_errors() {
    engine();
    let (node, node_name) = node("");
    let name = format!("{node_name}-dup");
    let _cleanup = Cleanup(vec![name.clone(), format!("{node_name}-two")]);
    let run = serde_json::json!({"image": IMAGE, "name": name, "command": ["/bin/sleep", "30"]})
        .to_string();
    node.cli(&["call", "/node/docker/create", &run]).ok_json();
    // Name already in use.
    let out = node.cli(&["call", "/node/docker/create", &run]);
    assert!(out.stderr().contains("error[conflict]"), "{}", out.stderr());
    assert!(out.stderr().contains("already in use"), "{}", out.stderr());
    // Missing image.
    let out = node.cli(&[
        "call",
        "/node/docker/create",
        r#"{"image":"hearth-busybox:missing","command":["/bin/sh"]}"#,
    ]);
    assert!(
        out.stderr().contains("error[not-found]"),
        "{}",
        out.stderr()
    );
    assert!(out.stderr().contains("No such image"), "{}", out.stderr());
    // Policy: image, port, count.
    let out = node.cli(&[
        "call",
        "/node/docker/create",
        r#"{"image":"alpine:3","command":["/bin/sh"]}"#,
    ]);
    assert!(
        out.stderr().contains("error[denied]")
            && out.stderr().contains("not in the allowed images"),
        "{}",
        out.stderr()
    );
    let out = node.cli(&["call", "/node/docker/create", &serde_json::json!({"image": IMAGE, "ports": [{"container": 80, "host": 80}], "command": ["/bin/sh"]}).to_string()]);
    assert!(
        out.stderr().contains("error[denied]")
            && out
                .stderr()
                .contains("outside the allowed range 18000-18999"),
        "{}",
        out.stderr()
    );
    let second = serde_json::json!({"image": IMAGE, "name": format!("{node_name}-two"), "command": ["/bin/sleep", "30"]}).to_string();
    node.cli(&["call", "/node/docker/create", &second])
        .ok_json();
    let third = serde_json::json!({"image": IMAGE, "command": ["/bin/sleep", "30"]}).to_string();
    let out = node.cli(&["call", "/node/docker/create", &third]);
    assert!(
        out.stderr().contains("error[denied]") && out.stderr().contains("allowed maximum"),
        "{}",
        out.stderr()
    );
    // Unknown containers, and other plugins' containers, are not found.
    let out = node.cli(&["call", "/node/docker/stop", r#"{"container":"nope"}"#]);
    assert!(
        out.stderr().contains("error[not-found]"),
        "{}",
        out.stderr()
    );
}

#[test]
fn the_node_serves_without_the_engine_and_recovers_when_it_appears() {
    engine();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("docker.sock");
    let (node, _) = node(&format!(
        "[docker]\nsocket = {:?}",
        socket.display().to_string()
    ));
    let out = node.cli(&["call", "/node/docker/list"]);
    assert!(
        out.stderr().contains("error[unavailable]"),
        "{}",
        out.stderr()
    );
    assert!(
        out.stderr().contains("is dockerd running?"),
        "{}",
        out.stderr()
    );
    assert_eq!(
        node.cli(&["call", "/node/echo/ping", r#"{"msg":"up"}"#])
            .ok_json()["msg"],
        "up"
    );
    // The engine "comes back" at that path: no restart needed.
    std::os::unix::fs::symlink("/var/run/docker.sock", &socket).unwrap();
    node.cli(&["call", "/node/docker/list"]).ok_json();
}

#[test]
fn plugins_without_a_docker_grant_are_denied() {
    let node = TestNode::start_with_stack("[plugins.docker]\n");
    let out = node.cli(&["call", "/node/docker/list"]);
    assert!(out.stderr().contains("error[denied]"), "{}", out.stderr());
    assert!(out.stderr().contains("grants.docker"), "{}", out.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_stream_start_and_stop_until_the_caller_leaves() {
    engine();
    let (node, node_name) = node("");
    let name = format!("{node_name}-evt");
    let _cleanup = Cleanup(vec![name.clone()]);
    let client = std::sync::Arc::new(node.client().await);
    let (subscription, mut rx) = subscribe(&client, "/node/docker/events");
    // The engine only reports events after the watch is set up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let run = serde_json::json!({"image": IMAGE, "name": name, "command": ["/bin/sleep", "30"]})
        .to_string();
    node.cli(&["call", "/node/docker/create", &run]).ok_json();
    let stop = serde_json::json!({"container": name, "timeout_secs": 1}).to_string();
    node.cli(&["call", "/node/docker/stop", &stop]).ok_json();

    let mut actions = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !(actions.contains(&"start".to_owned()) && actions.contains(&"stop".to_owned())) {
        let event = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("events so far: {actions:?}"))
            .expect("the stream is open");
        let event: serde_json::Value = serde_json::from_str(&event).unwrap();
        assert_eq!(
            event["name"],
            name.as_str(),
            "only this node's containers: {event}"
        );
        actions.push(event["action"].as_str().unwrap().to_owned());
    }
    assert!(
        !subscription.is_finished(),
        "the subscription streams until the caller leaves"
    );
    // The caller leaves: the node ends the subscription and keeps serving.
    subscription.abort();
    drop(client);
    assert_eq!(
        node.cli(&["call", "/node/echo/ping", r#"{"msg":"after"}"#])
            .ok_json()["msg"],
        "after"
    );
    // `host call` on a subscription prints events as JSON lines.
    let ops = node.cli(&["ops", "--json"]).ok_json();
    let events_op = ops
        .as_array()
        .unwrap()
        .iter()
        .find(|op| op["path"] == "/node/docker/events")
        .unwrap();
    assert_eq!(events_op["kind"], "subscription");
}

#[test]
fn host_call_prints_subscription_events_as_json_lines() {
    use std::io::BufRead;
    engine();
    let (node, node_name) = node("");
    let name = format!("{node_name}-cli");
    let _cleanup = Cleanup(vec![name.clone()]);
    let mut child = Command::new(hearth_tests::host_bin())
        .arg("--socket")
        .arg(node.socket())
        .args(["call", "/node/docker/events"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    let run = serde_json::json!({"image": IMAGE, "name": name, "command": ["/bin/sleep", "30"]})
        .to_string();
    node.cli(&["call", "/node/docker/create", &run]).ok_json();
    let line = rx
        .recv_timeout(Duration::from_secs(15))
        .expect("an event line");
    let event: serde_json::Value = serde_json::from_str(&line).expect("one JSON object per line");
    assert_eq!(event["name"], name.as_str());
    // Still streaming until interrupted.
    assert!(child.try_wait().unwrap().is_none());
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        node.cli(&["call", "/node/echo/ping", r#"{"msg":"x"}"#])
            .ok_json()["msg"],
        "x"
    );
}
