//! Harness for the end-to-end tests: start a real `host serve` process on
//! a temporary directory, wait until it is ready, and drive it through the
//! CLI binary or the client library.

#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used, missing_docs)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use hearth_host::client::Client;

/// How long a node may take to become ready (it compiles plugins on a
/// cold cache).
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_owned()
}

/// `host vault init --import` on `data_dir` with `mnemonic` on stdin and
/// `passphrase` in the environment: what it printed and how it ended.
pub fn vault_import(data_dir: &Path, passphrase: &str, mnemonic: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(host_bin())
        .args(["vault", "init", "--import"])
        .env("HEARTH_DATA_DIR", data_dir)
        .env("HEARTH_PASSPHRASE", passphrase)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("host vault init --import");
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(format!("{mnemonic}\n").as_bytes())
            .expect("write the mnemonic");
    }
    child.wait_with_output().expect("wait for host vault init")
}

/// The `host` binary of this build: `$HEARTH_HOST_BIN`, else the one next
/// to this test executable's directory (`target/<profile>/host`).
pub fn host_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("HEARTH_HOST_BIN") {
        return bin.into();
    }
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>");
    let bin = profile_dir.join("host");
    assert!(
        bin.is_file(),
        "{} not found: build it first (`cargo test --release` builds it via host's own tests)",
        bin.display()
    );
    bin
}

/// A running `host serve` on its own temporary directory.
pub struct TestNode {
    child: Option<Child>,
    dir: tempfile::TempDir,
    config: PathBuf,
    socket: PathBuf,
    /// Everything the node printed to stdout up to readiness.
    pub banner: String,
    stderr_log: PathBuf,
    own_cache: bool,
    env: Vec<(String, String)>,
}

/// The precompiled-component cache the test nodes share, next to the
/// `host` binary. Bundled plugins under the default limits come compiled
/// inside `host`; for the rest (test plugins from a `path`, other memory
/// limits) only the first node of a run compiles, so dozens of nodes
/// starting at once do not starve each other of CPU.
fn shared_cache_dir() -> PathBuf {
    host_bin()
        .parent()
        .expect("binary has a directory")
        .join("hearth-test-cache")
}

impl TestNode {
    /// Starts a node with `examples/stack.toml`.
    pub fn start() -> TestNode {
        TestNode::start_with_config(&repo_root().join("examples/stack.toml"))
    }

    /// Starts a node with the stack file text `stack` (written to the
    /// temporary directory).
    pub fn start_with_stack(stack: &str) -> TestNode {
        TestNode::start_with_stack_in(tempfile::tempdir().expect("tempdir"), stack)
    }

    /// Same, in `dir`, which may already hold plugin directories the stack
    /// refers to by relative path.
    pub fn start_with_stack_in(dir: tempfile::TempDir, stack: &str) -> TestNode {
        let config = dir.path().join("stack.toml");
        std::fs::write(&config, stack).expect("write stack");
        TestNode::start_in(dir, config)
    }

    /// Starts a node with the stack file at `config`.
    pub fn start_with_config(config: &Path) -> TestNode {
        TestNode::start_in(tempfile::tempdir().expect("tempdir"), config.to_owned())
    }

    /// Starts a node with `examples/stack.toml` and its cache in its own
    /// data directory (the default), not the shared test cache.
    pub fn start_with_own_cache() -> TestNode {
        let dir = tempfile::tempdir().expect("tempdir");
        TestNode::launch(
            dir,
            repo_root().join("examples/stack.toml"),
            true,
            Vec::new(),
        )
    }

    /// Starts a node with the stack file text `stack` and its cache in its
    /// own data directory.
    pub fn start_with_stack_and_own_cache(stack: &str) -> TestNode {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("stack.toml");
        std::fs::write(&config, stack).expect("write stack");
        TestNode::launch(dir, config, true, Vec::new())
    }

    /// Starts `host serve` with `examples/stack.toml` in `dir` (whose `data`
    /// directory may already hold a vault), with extra environment.
    pub fn start_in_with_env(dir: tempfile::TempDir, env: &[(&str, &str)]) -> TestNode {
        let env = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        TestNode::launch(dir, repo_root().join("examples/stack.toml"), false, env)
    }

    /// Starts a node with the stack file text `stack` in `dir` (whose
    /// `data` directory may already hold a vault), with extra environment.
    pub fn start_with_stack_env(
        dir: tempfile::TempDir,
        stack: &str,
        env: &[(&str, &str)],
    ) -> TestNode {
        let config = dir.path().join("stack.toml");
        std::fs::write(&config, stack).expect("write stack");
        let env = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        TestNode::launch(dir, config, false, env)
    }

    /// The temporary directory the node lives in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn start_in(dir: tempfile::TempDir, config: PathBuf) -> TestNode {
        TestNode::launch(dir, config, false, Vec::new())
    }

    fn launch(
        dir: tempfile::TempDir,
        config: PathBuf,
        own_cache: bool,
        env: Vec<(String, String)>,
    ) -> TestNode {
        let socket = dir.path().join("run").join("host.sock");
        let mut node = TestNode {
            child: None,
            stderr_log: dir.path().join("serve.log"),
            dir,
            config,
            socket,
            banner: String::new(),
            own_cache,
            env,
        };
        node.spawn();
        node
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The node's stderr so far (its logs).
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    fn spawn(&mut self) {
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.stderr_log)
            .expect("log file");
        let mut command = Command::new(host_bin());
        command
            .args(["serve", "--config"])
            .arg(&self.config)
            .arg("--socket")
            .arg(&self.socket)
            .env("HEARTH_DATA_DIR", self.data_dir())
            .env("HEARTH_LOG", "info,hearth_host=debug");
        command.env_remove("HEARTH_PASSPHRASE");
        for (key, value) in &self.env {
            command.env(key, value);
        }
        if self.own_cache {
            command.env_remove("HEARTH_CACHE_DIR");
        } else {
            command.env("HEARTH_CACHE_DIR", shared_cache_dir());
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn host serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        self.banner.clear();
        loop {
            match rx.recv_timeout(READY_TIMEOUT) {
                Ok(line) => {
                    self.banner.push_str(&line);
                    self.banner.push('\n');
                    if line.starts_with("config:") {
                        break;
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!("node did not become ready; logs:\n{}", self.logs());
                }
            }
        }
        self.child = Some(child);
    }

    /// Kills the node with SIGKILL (no cleanup at all).
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill -9");
            child.wait().expect("wait");
        }
    }

    /// Stops the node with SIGTERM and returns its exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("node is running");
        let pid = i32::try_from(child.id()).expect("pid");
        #[allow(unsafe_code)]
        // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        child.wait().expect("wait")
    }

    /// Starts the node again on the same directory and config.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// The PID of the running node.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Runs the CLI against this node: `host --socket <socket> <args>`.
    pub fn cli(&self, args: &[&str]) -> CliOutput {
        let output = Command::new(host_bin())
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run host");
        CliOutput(output)
    }

    /// A client-library connection to this node.
    pub async fn client(&self) -> Client {
        Client::connect(&self.socket).await.expect("connect")
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The result of one CLI run.
pub struct CliOutput(pub Output);

impl CliOutput {
    /// Exit code.
    pub fn code(&self) -> i32 {
        self.0.status.code().unwrap_or(-1)
    }

    /// Stdout as text.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }

    /// Stderr as text.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }

    /// Stdout parsed as JSON; panics with both streams when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.0.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout(),
                self.stderr()
            )
        })
    }

    /// Asserts exit 0 and returns stdout as JSON.
    pub fn ok_json(&self) -> serde_json::Value {
        assert_eq!(
            self.code(),
            0,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout(),
            self.stderr()
        );
        self.json()
    }
}

/// Copies the test-only `misbehave` plugin (built with the plugins
/// workspace, never bundled) into `dir/misbehave` and returns that
/// directory, ready for `path = ...` in a stack file.
pub fn misbehave_plugin_dir(dir: &Path) -> PathBuf {
    test_plugin_dir(dir, "misbehave")
}

/// Copies test-only plugin `name` (from `plugins/testing/`, built with the
/// plugins workspace, never bundled) into `dir/name` and returns that
/// directory, ready for `path = ...` in a stack file.
pub fn test_plugin_dir(dir: &Path, name: &str) -> PathBuf {
    let target = dir.join(name);
    std::fs::create_dir_all(&target).expect("create plugin dir");
    std::fs::copy(
        repo_root().join(format!("plugins/testing/{name}/plugin.toml")),
        target.join("plugin.toml"),
    )
    .expect("copy plugin.toml");
    let wasm = Path::new(hearth_host::config::BUILT_PLUGINS_DIR).join(format!("{name}.wasm"));
    std::fs::copy(&wasm, target.join(format!("{name}.wasm")))
        .unwrap_or_else(|e| panic!("copy {}: {e}", wasm.display()));
    target
}

/// What [`HttpServer`] answers one request with.
pub struct HttpReply {
    /// Status code.
    pub status: u16,
    /// Body (sent as `application/json`).
    pub body: String,
    /// How long to wait before answering.
    pub delay: std::time::Duration,
}

impl HttpReply {
    /// `200` with `body`, at once.
    pub fn ok(body: impl Into<String>) -> HttpReply {
        HttpReply {
            status: 200,
            body: body.into(),
            delay: std::time::Duration::ZERO,
        }
    }
}

type Route = dyn Fn(&str, &str, &str) -> HttpReply + Send + Sync;

/// A real HTTP/1.1 server on 127.0.0.1 for tests: one thread per
/// connection, answering every request with `route(method, path, body)`
/// and recording `"METHOD /path"` of each.
pub struct HttpServer {
    /// The port it listens on.
    pub port: u16,
    hits: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl HttpServer {
    /// Starts serving on a free port; it lives as long as the test process.
    pub fn start(
        route: impl Fn(&str, &str, &str) -> HttpReply + Send + Sync + 'static,
    ) -> HttpServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind test HTTP server");
        let port = listener.local_addr().expect("local addr").port();
        let hits = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let route: std::sync::Arc<Route> = std::sync::Arc::new(route);
        let seen = hits.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let route = route.clone();
                let seen = seen.clone();
                std::thread::spawn(move || serve_one(stream, &*route, &seen));
            }
        });
        HttpServer { port, hits }
    }

    /// `http://127.0.0.1:{port}{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// `"METHOD /path"` of every request so far.
    pub fn hits(&self) -> Vec<String> {
        self.hits.lock().map(|h| h.clone()).unwrap_or_default()
    }
}

fn serve_one(mut stream: std::net::TcpStream, route: &Route, seen: &std::sync::Mutex<Vec<String>>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let Ok(clone) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(clone);
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_owned();
    let path = parts.next().unwrap_or("").to_owned();
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; length];
    let _ = reader.read_exact(&mut body);
    if let Ok(mut hits) = seen.lock() {
        hits.push(format!("{method} {path}"));
    }
    let reply = route(&method, &path, &String::from_utf8_lossy(&body));
    std::thread::sleep(reply.delay);
    let _ = write!(
        stream,
        "HTTP/1.1 {} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
        reply.status,
        reply.body.len(),
        reply.body
    );
}

/// Resident memory of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Installs what a test needs from Debian's packages when its command is
/// missing: `(command, package)` pairs. Runs once per package per test run,
/// idempotently, and says what it does, so the README's test command works
/// on a fresh machine by itself (`.ci/run` calls the same command).
pub fn require_packages(needs: &[(&str, &str)]) {
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = INSTALL.lock().unwrap_or_else(|p| p.into_inner());
    let on_path = |command: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {command}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let missing: Vec<&str> = needs
        .iter()
        .filter(|(command, _)| !on_path(command))
        .map(|(_, package)| *package)
        .collect();
    if missing.is_empty() {
        return;
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    #[allow(unsafe_code)]
    let root = unsafe { libc::geteuid() } == 0;
    assert!(
        root,
        "these tests need the Debian packages {}; install them (`sudo apt-get install -y {}`) or run the tests as root",
        missing.join(", "),
        missing.join(" ")
    );
    eprintln!(
        "== installing {} (needed by the tests; once per machine)",
        missing.join(" ")
    );
    let status = Command::new("sh")
        .args([
            "-c",
            &format!(
                "export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq {} >/dev/null",
                missing.join(" ")
            ),
        ])
        .status()
        .expect("a shell to run apt-get");
    assert!(
        status.success(),
        "apt-get install {} failed",
        missing.join(" ")
    );
}

/// A Python environment with `packages` from PyPI, kept under
/// `~/.cache/hearth-test-python` and reused; returns its `python`. Installs
/// only what is missing, saying so.
pub fn require_python(packages: &[(&str, &str)]) -> PathBuf {
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = INSTALL.lock().unwrap_or_else(|p| p.into_inner());
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
    let venv = home.join(".cache").join("hearth-test-python");
    let python = venv.join("bin").join("python");
    if !python.is_file() {
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("python3 to make a virtual environment");
        assert!(made.success(), "python3 -m venv {} failed", venv.display());
    }
    let missing: Vec<&str> = packages
        .iter()
        .filter(|(module, _)| {
            !Command::new(&python)
                .args(["-c", &format!("import {module}")])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .map(|(_, package)| *package)
        .collect();
    if !missing.is_empty() {
        eprintln!(
            "== installing {} from PyPI (needed by the tests; once per machine)",
            missing.join(" ")
        );
        let status = Command::new(&python)
            .args(["-m", "pip", "install", "-q"])
            .args(&missing)
            .status()
            .expect("pip");
        assert!(status.success(), "pip install {} failed", missing.join(" "));
    }
    python
}

/// A directory with `packages` installed from the npm registry (once per
/// machine, under `~/.cache/hearth-test-node/<name>`), for tests that run
/// real JavaScript clients. Returns the directory (`node_modules` inside).
pub fn require_npm(name: &str, packages: &[&str]) -> PathBuf {
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = INSTALL.lock().unwrap_or_else(|p| p.into_inner());
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
    let dir = home.join(".cache").join("hearth-test-node").join(name);
    let stamp = dir.join(format!(
        ".installed-{}",
        packages.join("+").replace('/', "_")
    ));
    if stamp.is_file() {
        return dir;
    }
    std::fs::create_dir_all(&dir).expect("npm cache dir");
    if !dir.join("package.json").is_file() {
        std::fs::write(
            dir.join("package.json"),
            "{\"private\": true, \"type\": \"module\"}\n",
        )
        .expect("package.json");
    }
    eprintln!(
        "== installing {} from npm (needed by the tests; once per machine)",
        packages.join(" ")
    );
    let status = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--loglevel=error"])
        .args(packages)
        .current_dir(&dir)
        .status()
        .expect("npm");
    assert!(
        status.success(),
        "npm install {} failed",
        packages.join(" ")
    );
    std::fs::write(&stamp, "").expect("stamp");
    dir
}

/// Where a node's HTTP gateway listens and its operator token, from the
/// `gateway:` line of its banner.
pub struct GatewayInfo {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The operator's bearer token.
    pub token: String,
    /// The file holding it.
    pub token_file: PathBuf,
}

impl TestNode {
    /// The gateway this node's banner announced; panics when it is off.
    pub fn gateway(&self) -> GatewayInfo {
        let line = self
            .banner
            .lines()
            .find_map(|l| l.strip_prefix("gateway: "))
            .expect("the banner names the gateway");
        let base = line
            .split_whitespace()
            .next()
            .expect("an address")
            .to_owned();
        let token_file = PathBuf::from(
            line.split("bearer token in ")
                .nth(1)
                .expect("the token file")
                .trim_end_matches(')'),
        );
        let token = std::fs::read_to_string(&token_file)
            .expect("the token file is readable")
            .trim()
            .to_owned();
        GatewayInfo {
            base,
            token,
            token_file,
        }
    }
}
