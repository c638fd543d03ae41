//! Starting a node: defaults, stack files, grants, cache, socket safety.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use hearth_tests::{TestNode, host_bin, repo_root};

#[test]
fn serve_runs_without_any_config() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(host_bin())
        .arg("serve")
        .env("HEARTH_DATA_DIR", dir.path())
        .env_remove("HEARTH_SOCKET")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let socket = dir.path().join("run/host.sock");
    let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut banner = String::new();
    for _ in 0..3 {
        std::io::BufRead::read_line(&mut reader, &mut banner).unwrap();
    }
    assert!(
        banner.contains(&format!("socket: {}", socket.display())),
        "{banner}"
    );
    let out = Command::new(host_bin())
        .args(["call", "/node/echo/ping", r#"{"msg":"default"}"#])
        .env("HEARTH_DATA_DIR", dir.path())
        .env_remove("HEARTH_SOCKET")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn socket_and_directories_are_private() {
    let node = TestNode::start();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(node.socket()), 0o600);
    assert_eq!(mode(node.socket().parent().unwrap()), 0o700);
    assert_eq!(mode(&node.data_dir()), 0o700);
}

#[test]
fn a_second_node_on_the_same_socket_is_refused() {
    let node = TestNode::start();
    let out = Command::new(host_bin())
        .args(["serve", "--config"])
        .arg(repo_root().join("examples/stack.toml"))
        .arg("--socket")
        .arg(node.socket())
        .env("HEARTH_DATA_DIR", node.data_dir().join("other"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already serving"), "{err}");
    // The first node still answers.
    assert_eq!(
        node.cli(&["call", "/node/host/ping"]).ok_json()["node"],
        "local"
    );
}

/// What `host plugins --json` says of each plugin's code: `built-in`,
/// `hit` or `miss`.
fn cache_outcomes(node: &TestNode) -> (Vec<String>, serde_json::Value) {
    let plugins = node.cli(&["plugins", "--json"]).ok_json();
    let outcomes = plugins
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["cache"].as_str().unwrap().to_owned())
        .collect();
    (outcomes, plugins)
}

/// Entries of the node's own compiled-plugin cache.
fn cached_artifacts(node: &TestNode) -> usize {
    std::fs::read_dir(node.data_dir().join("cache"))
        .map(|dir| dir.filter_map(Result::ok).count())
        .unwrap_or(0)
}

#[test]
fn a_first_start_loads_the_bundled_plugins_compiled_at_build_time() {
    if hearth_host::config::BUNDLED
        .iter()
        .any(|p| p.precompiled.is_empty())
    {
        eprintln!("this build did not precompile the bundled plugins (HEARTH_PRECOMPILE=0?)");
        return;
    }
    let node = TestNode::start_with_own_cache();
    let (outcomes, plugins) = cache_outcomes(&node);
    assert_eq!(outcomes.len(), 4, "{plugins}");
    assert!(outcomes.iter().all(|o| o == "built-in"), "{plugins}");
    // Nothing was compiled, so nothing was cached.
    assert_eq!(cached_artifacts(&node), 0);
}

#[test]
fn a_restart_loads_plugins_from_the_precompiled_cache() {
    // A memory limit other than the default changes the code wasmtime
    // generates (bounds checks follow the reservation), so the built-in
    // artifacts do not fit and the node compiles, then caches.
    let mut node =
        TestNode::start_with_stack_and_own_cache("[limits]\nmemory_mib = 32\n\n[plugins.echo]\n");
    let (first, plugins) = cache_outcomes(&node);
    assert_eq!(first, ["miss"], "{plugins}");
    assert_eq!(cached_artifacts(&node), 1);
    node.restart();
    let (second, again) = cache_outcomes(&node);
    assert_eq!(second, ["hit"], "{again}");
    assert_eq!(plugins[0]["component_sha256"], again[0]["component_sha256"]);
}

#[test]
fn without_grants_kv_is_denied_naming_the_grant() {
    let node = TestNode::start_with_stack("[plugins.echo]\n[plugins.relay]\n");
    let out = node.cli(&["call", "/node/echo/put", r#"{"key":"k","value":"v"}"#]);
    assert_eq!(out.code(), 1);
    let err = out.stderr();
    assert!(err.contains("error[denied]"), "{err}");
    assert!(
        err.contains("set `grants.kv = true` in [plugins.echo]"),
        "{err}"
    );
    let out = node.cli(&["call", "/node/relay/ping", r#"{"msg":"x"}"#]);
    assert!(
        out.stderr()
            .contains(r#"add "/node/echo/ping" to `grants.env` of [plugins.relay]"#),
        "{}",
        out.stderr()
    );
}

/// Runs `host serve` on `stack` (written to `dir/stack.toml`), which must
/// refuse to start, and returns what it printed on stderr.
pub(crate) fn serve_refused(dir: &std::path::Path, stack: &str) -> String {
    let path = dir.join("stack.toml");
    std::fs::write(&path, stack).unwrap();
    let out = Command::new(host_bin())
        .args(["serve", "--config"])
        .arg(&path)
        .env("HEARTH_DATA_DIR", dir.join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn invalid_stack_files_fail_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let run = |stack: &str| serve_refused(dir.path(), stack);
    assert!(run("[plugins.echo]\ngrant.kv = true").contains("unknown field `grant`"));
    assert!(run("[plugins.nope]").contains("no plugin of that name is bundled"));
    assert!(
        run("[plugins.echo]\ngrants.env = ['/node/*']")
            .contains("grant pattern `/node/*` is not valid")
    );
    // The mesh: a taken UDP port, a peer that is this node itself, a bad key.
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let err = run(&format!("[mesh]\nlisten = \"127.0.0.1:{port}\""));
    assert!(
        err.contains("cannot listen for peers on 127.0.0.1:"),
        "{err}"
    );
    assert!(
        run("[peers.w]\npublic_key = \"xyz\"").contains("peers.w.public_key must be 64 hex digits")
    );
    assert!(run("[mesh]\nrequire_features = ['teleport']").contains("unknown feature `teleport`"));
}

#[test]
fn plugins_load_from_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let plugin_dir = dir.path().join("echo");
    std::fs::create_dir(&plugin_dir).unwrap();
    std::fs::copy(
        repo_root().join("plugins/echo/plugin.toml"),
        plugin_dir.join("plugin.toml"),
    )
    .unwrap();
    // The same bytes the host bundles, from the plugin build.
    let built = std::env::var("HEARTH_ECHO_WASM")
        .ok()
        .map(std::path::PathBuf::from)
        .or_else(|| {
            let exe = std::env::current_exe().ok()?;
            let target = exe.ancestors().nth(3)?.to_owned();
            let candidate = target.join("hearth-plugins/wasm32-wasip2/release/echo.wasm");
            candidate.is_file().then_some(candidate).or_else(|| {
                let c = repo_root().join("plugins/target/wasm32-wasip2/release/echo.wasm");
                c.is_file().then_some(c)
            })
        });
    let Some(built) = built else {
        panic!("echo.wasm not found; set HEARTH_ECHO_WASM");
    };
    std::fs::copy(built, plugin_dir.join("echo.wasm")).unwrap();
    let stack = format!(
        "[plugins.echo]\npath = {:?}\n",
        plugin_dir.display().to_string()
    );
    let node = TestNode::start_with_stack(&stack);
    let plugins = node.cli(&["plugins", "--json"]).ok_json();
    assert_eq!(plugins[0]["origin"], plugin_dir.display().to_string());
    assert_eq!(
        node.cli(&["call", "/node/echo/ping", r#"{"msg":"dir"}"#])
            .ok_json()["msg"],
        "dir"
    );
}

#[test]
fn a_config_error_is_printed_once_naming_file_key_and_fix() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stack.toml");
    let serve = |text: &str| serve_refused(dir.path(), text);
    let err = serve("[node\nname = \"head\"\n");
    assert_eq!(err.matches("unclosed table").count(), 1, "{err}");
    assert!(
        err.contains(&format!("{}:1:6:", path.display())),
        "file, line and column: {err}"
    );
    assert!(err.contains("fix the TOML syntax there"), "{err}");

    let err = serve("[limits]\nmemory_mib = 0\n");
    assert_eq!(err.matches("out of range").count(), 1, "{err}");
    assert!(
        err.contains(&format!(
            "{}: limits.memory_mib is 0, out of range; set it between 1 and 4096",
            path.display()
        )),
        "{err}"
    );
    // Nothing was created for a node that did not start.
    assert!(!dir.path().join("data").join("node.db").exists());
}

#[test]
fn one_component_loads_under_two_names_with_their_own_grants_and_keys() {
    let node = TestNode::start_with_stack(
        "[plugins.echo]\ngrants.kv = true\n[plugins.notes]\ncomponent = \"echo\"\ngrants.kv = true\n[plugins.scratch]\ncomponent = \"echo\"\n",
    );
    let call = |path: &str, input: &str| node.cli(&["call", path, input]);
    // The same operations under each name.
    let put = call("/node/notes/put", r#"{"key":"k","value":"in notes"}"#);
    assert_eq!(put.code(), 0, "{}", put.stderr());
    let got = call("/node/notes/get", r#"{"key":"k"}"#).ok_json();
    assert_eq!(got["value"], "in notes");
    // Each name has its own kv namespace…
    let other = call("/node/echo/get", r#"{"key":"k"}"#).ok_json();
    assert!(other["value"].is_null(), "{other}");
    // …and its own grants.
    let denied = call("/node/scratch/put", r#"{"key":"k","value":"v"}"#);
    assert_eq!(denied.code(), 1);
    assert!(
        denied.stderr().contains("[plugins.scratch]"),
        "{}",
        denied.stderr()
    );
    let plugins = node.cli(&["plugins", "--json"]).ok_json();
    let notes = plugins
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "notes")
        .cloned()
        .unwrap_or_else(|| panic!("{plugins}"));
    assert!(notes.to_string().contains("component `echo`"), "{notes}");
}

#[test]
fn each_instance_reads_its_own_configuration() {
    let dir = tempfile::tempdir().unwrap();
    hearth_tests::misbehave_plugin_dir(dir.path());
    let node = TestNode::start_with_stack_in(
        dir,
        r#"
        [plugins.misbehave]
        path = "misbehave"
        [plugins.misbehave.config]
        greeting = "hello"
        retries = 3
        server = { url = "http://127.0.0.1:4010", tls = false }

        [plugins.other]
        path = "misbehave"
        component = "misbehave"
        config = { greeting = "bonjour" }
        "#,
    );
    let seen = |plugin: &str, key: &str| {
        node.cli(&[
            "call",
            &format!("/node/{plugin}/config"),
            &format!(r#"{{"key":"{key}"}}"#),
        ])
        .ok_json()
    };
    let first = seen("misbehave", "greeting");
    assert_eq!(first["value"], "hello");
    assert_eq!(seen("misbehave", "retries")["value"], "3");
    assert_eq!(
        seen("misbehave", "server.url")["value"],
        "http://127.0.0.1:4010"
    );
    assert_eq!(seen("misbehave", "server.tls")["value"], "false");
    let server: serde_json::Value =
        serde_json::from_str(seen("misbehave", "server")["value"].as_str().unwrap()).unwrap();
    assert_eq!(server["url"], "http://127.0.0.1:4010");
    assert!(seen("misbehave", "missing")["value"].is_null());
    // The other instance of the same component sees only its own table.
    let other = seen("other", "greeting");
    assert_eq!(other["value"], "bonjour");
    assert_eq!(other["all"], serde_json::json!([["greeting", "bonjour"]]));
}

#[test]
fn a_secret_reaches_only_the_plugin_granted_it_and_is_stored_nowhere_in_clear() {
    const VALUE: &str = "ghp-s3cr3t-value-7f3a";
    let seat = crate::mesh::seat("keeper");
    hearth_tests::misbehave_plugin_dir(seat.path());
    let node = seat.start(
        "",
        r#"
[plugins.misbehave]
path = "misbehave"
grants.secrets = ["github"]
[plugins.misbehave.config]
token = { secret = "github" }
plain = "visible"

[plugins.other]
path = "misbehave"
component = "misbehave"
config = { token = "its own plain value" }
"#,
    );
    let token = |plugin: &str| {
        node.cli(&[
            "call",
            &format!("/node/{plugin}/config"),
            r#"{"key":"token"}"#,
        ])
    };
    let unset = token("misbehave");
    assert_eq!(unset.code(), 1);
    assert!(
        unset.stderr().contains("host secret set github"),
        "{}",
        unset.stderr()
    );

    let mut set = Command::new(host_bin())
        .arg("--socket")
        .arg(node.socket())
        .args(["secret", "set", "github"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(set.stdin.as_mut().unwrap(), format!("{VALUE}\n").as_bytes())
        .unwrap();
    let set = set.wait_with_output().unwrap();
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );

    let seen = token("misbehave").ok_json();
    assert_eq!(seen["value"], VALUE);
    assert!(
        !seen["all"].to_string().contains(VALUE),
        "get-all leaves secrets out"
    );
    assert_eq!(seen["all"], serde_json::json!([["plain", "visible"]]));
    // Another instance of the same component has no such secret.
    assert_eq!(token("other").ok_json()["value"], "its own plain value");
    let names = node.cli(&["secret", "list"]);
    assert_eq!(names.stdout().trim(), "github");

    // Not in clear anywhere under the node's directory, nor in its log.
    let mut stack = vec![node.dir().to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                assert!(
                    !bytes.windows(VALUE.len()).any(|w| w == VALUE.as_bytes()),
                    "{} holds the secret in clear",
                    path.display()
                );
            }
        }
    }
    assert!(!node.logs().contains(VALUE));

    // A locked vault keeps it shut.
    let locked = node.cli(&["vault", "lock"]);
    assert_eq!(locked.code(), 0, "{}", locked.stderr());
    let shut = token("misbehave");
    assert_eq!(shut.code(), 1);
    assert!(shut.stderr().contains("locked"), "{}", shut.stderr());
    assert!(!shut.stderr().contains(VALUE));
}
