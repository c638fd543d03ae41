//! The proxy plugin with the real parts, installed and started here:
//! nginx (Debian's package) run by the node on loopback ports, `pebble` and
//! `pebble-challtestsrv` (Debian's `pebble`) as the ACME server and its
//! DNS, a local HTTP server or a busybox httpd container as the upstream.
//! Pages are fetched with curl (`--resolve`), HTTPS verified against
//! pebble's root or the node-local CA.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use hearth_tests::{HttpReply, HttpServer, TestNode};
use serde_json::{Value, json};

use crate::adapters::{Server, free_port, serve};

const PASSPHRASE: &str = "proxy test passphrase";
const MNEMONIC: &str =
    "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";

fn tools() {
    hearth_tests::require_packages(&[("nginx", "nginx"), ("pebble", "pebble"), ("curl", "curl")]);
}

/// A port free for both TCP and UDP (the ACME DNS listens on both).
fn free_dual_port() -> u16 {
    loop {
        let port = crate::mesh::free_udp_port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// pebble and its DNS (every name resolves to 127.0.0.1), validating
/// HTTP-01 on `http_port`, issuing 29-day certificates (so renewal is due
/// at once). Killed on drop.
struct Pebble {
    _dns: Server,
    _pebble: Server,
    _dir: tempfile::TempDir,
    directory: String,
    origin: String,
    /// The CA of pebble's own HTTPS (for `grants.http_roots`).
    tls_root: PathBuf,
    management: u16,
}

impl Pebble {
    fn start(http_port: u16) -> Pebble {
        tools();
        let dir = tempfile::tempdir().unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "pebble test TLS root");
        let ca = ca.self_signed(&ca_key).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
            .unwrap()
            .signed_by(&leaf_key, &ca, &ca_key)
            .unwrap();
        let tls_root = dir.path().join("tls-root.pem");
        std::fs::write(&tls_root, ca.pem()).unwrap();
        std::fs::write(dir.path().join("cert.pem"), leaf.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), leaf_key.serialize_pem()).unwrap();
        let (acme, management, dns, dns_management) =
            (free_port(), free_port(), free_dual_port(), free_port());
        let config = json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{acme}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": dir.path().join("cert.pem"),
            "privateKey": dir.path().join("key.pem"),
            "httpPort": http_port,
            "tlsPort": free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
            "certificateValidityPeriod": 29 * 86_400,
        }});
        std::fs::write(dir.path().join("pebble.json"), config.to_string()).unwrap();
        let mut command = Command::new("pebble-challtestsrv");
        command.args([
            "-defaultIPv4",
            "127.0.0.1",
            "-defaultIPv6",
            "",
            "-dns01",
            &format!("127.0.0.1:{dns}"),
            "-http01",
            "",
            "-https01",
            "",
            "-tlsalpn01",
            "",
            "-management",
            &format!("127.0.0.1:{dns_management}"),
        ]);
        let dns_server = serve("pebble-challtestsrv", command, dns_management);
        let mut command = Command::new("pebble");
        command
            .arg("-config")
            .arg(dir.path().join("pebble.json"))
            .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
            .env("PEBBLE_VA_NOSLEEP", "1");
        let pebble = serve("pebble", command, acme);
        Pebble {
            _dns: dns_server,
            _pebble: pebble,
            _dir: dir,
            directory: format!("https://localhost:{acme}/dir"),
            origin: format!("https://localhost:{acme}"),
            tls_root,
            management,
        }
    }

    /// The root pebble issues under (it makes a new one each start).
    fn issuing_root(&self, into: &Path) -> PathBuf {
        let out = Command::new("curl")
            .args([
                "-sk",
                &format!("https://127.0.0.1:{}/roots/0", self.management),
            ])
            .output()
            .unwrap();
        assert!(out.status.success());
        let path = into.join("pebble-root.pem");
        std::fs::write(&path, out.stdout).unwrap();
        path
    }
}

/// A node running the proxy with nginx on `http`/`https`, its vault from
/// the test mnemonic; ACME from `pebble` when given.
struct ProxyNode {
    node: TestNode,
    http: u16,
    https: u16,
}

fn proxy_section(
    root: &Path,
    http: u16,
    https: u16,
    pebble: Option<&Pebble>,
    extra: &str,
) -> String {
    let root = root.display().to_string();
    let argv = |middle: &str| {
        format!(
            "[\"/usr/sbin/nginx\", \"-p\", \"{root}/\", {middle}, \"-e\", \"{root}/logs/error.log\", \"-g\", \"daemon off;\"]"
        )
    };
    let (origins, roots, directory) = match pebble {
        Some(p) => (
            format!(", \"{}\"", p.origin),
            format!(
                "grants.http_roots = [{:?}]\n",
                p.tls_root.display().to_string()
            ),
            format!("acme_directory = \"{}\"\n", p.directory),
        ),
        None => (String::new(), String::new(), String::new()),
    };
    format!(
        r#"
[plugins.proxy]
grants.kv = true
grants.vault = ["m/74'/4'"]
grants.files = "{root}"
grants.http = ["http://127.0.0.1:{http}"{origins}]
{roots}grants.process = [
  {master},
  {test},
]
timeout_ms = 60000
{extra}
[plugins.proxy.config]
listen = "127.0.0.1"
http_port = {http}
https_port = {https}
worker_processes = "1"
{directory}"#,
        master = argv(&format!("\"-c\", \"{root}/nginx.conf\"")),
        test = argv(&format!("\"-t\", \"-q\", \"-c\", \"{root}/next.conf\"")),
    )
}

impl ProxyNode {
    fn start(
        pebble_for: impl FnOnce(u16) -> Option<Pebble>,
        extra: &str,
    ) -> (ProxyNode, Option<Pebble>) {
        tools();
        let (http, https) = (free_port(), free_port());
        let pebble = pebble_for(http);
        let dir = tempfile::tempdir().unwrap();
        let out = hearth_tests::vault_import(&dir.path().join("data"), PASSPHRASE, MNEMONIC);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stack = proxy_section(
            &dir.path().join("proxy"),
            http,
            https,
            pebble.as_ref(),
            extra,
        );
        let node =
            TestNode::start_with_stack_env(dir, &stack, &[("HEARTH_PASSPHRASE", PASSPHRASE)]);
        (ProxyNode { node, http, https }, pebble)
    }

    fn call(&self, path: &str, input: Value) -> Value {
        self.node.cli(&["call", path, &input.to_string()]).ok_json()
    }

    fn refused(&self, path: &str, input: Value) -> String {
        let out = self.node.cli(&["call", path, &input.to_string()]);
        assert_ne!(out.code(), 0, "{} succeeded: {}", path, out.stdout());
        out.stderr()
    }
}

/// `curl` through nginx: `scheme://domain:port/` resolved to 127.0.0.1;
/// the status and the body. `ca` verifies HTTPS.
fn fetch(scheme: &str, domain: &str, port: u16, ca: Option<&Path>) -> (u16, String) {
    let mut command = Command::new("curl");
    command.args([
        "-s",
        "-m",
        "5",
        "-w",
        "\n%{http_code}",
        "--resolve",
        &format!("{domain}:{port}:127.0.0.1"),
    ]);
    if let Some(ca) = ca {
        command.arg("--cacert").arg(ca);
    }
    let out = command
        .arg(format!("{scheme}://{domain}:{port}/"))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.parse().unwrap_or(0), body.to_owned())
}

fn upstream(page: &'static str) -> HttpServer {
    HttpServer::start(move |_, _, _| HttpReply::ok(page))
}

#[test]
fn routes_are_served_checked_and_never_broken_by_bad_input() {
    let (proxy, _) = ProxyNode::start(|_| None, "");
    let site = upstream("\"hello through nginx\"");
    let added = proxy.call(
        "/node/proxy/route-add",
        json!({"domain": "app.example", "upstream": format!("127.0.0.1:{}", site.port)}),
    );
    assert_eq!(
        added["route"]["upstream"],
        format!("http://127.0.0.1:{}", site.port)
    );
    assert_eq!(
        fetch("http", "app.example", proxy.http, None),
        (200, "\"hello through nginx\"".to_owned())
    );
    assert_eq!(fetch("http", "other.example", proxy.http, None).0, 404);
    let version = proxy.call("/node/proxy/config", json!({}))["version"].clone();

    // Nothing reaches nginx's configuration that could add a directive.
    for (input, field) in [
        (
            json!({"domain": "evil.example; include /etc/passwd", "upstream": "127.0.0.1:80"}),
            "`domain`",
        ),
        (
            json!({"domain": "evil.example}\nserver {", "upstream": "127.0.0.1:80"}),
            "`domain`",
        ),
        (
            json!({"domain": "evil.example", "upstream": "127.0.0.1:80; return 200 pwned"}),
            "`upstream`",
        ),
        (
            json!({"domain": "evil.example", "upstream": "http://127.0.0.1:80/x { }"}),
            "`upstream`",
        ),
        (
            json!({"domain": "evil.example", "upstream": "127.0.0.1:99999"}),
            "`upstream`",
        ),
    ] {
        let error = proxy.refused("/node/proxy/route-add", input.clone());
        assert!(
            error.contains("invalid-input") && error.contains(field),
            "{input}: {error}"
        );
    }
    let config = proxy.call("/node/proxy/config", json!({}));
    assert_eq!(config["version"], version, "refused input wrote nothing");
    assert!(!config["text"].as_str().unwrap().contains("evil"));

    // A configuration nginx itself refuses is never activated: the old one
    // keeps serving, and nginx's message comes back.
    let error = proxy.refused(
        "/node/proxy/route-add",
        json!({"domain": "broken.example", "upstream": "http://no-such-host.invalid:80"}),
    );
    assert!(
        error.contains("nginx refused") && error.contains("host not found in upstream"),
        "{error}"
    );
    assert_eq!(
        proxy.call("/node/proxy/config", json!({}))["version"],
        version
    );
    assert_eq!(fetch("http", "app.example", proxy.http, None).0, 200);
    let routes = proxy.call("/node/proxy/routes", json!({}));
    assert_eq!(routes["routes"].as_array().unwrap().len(), 1, "{routes}");

    // A .internal name gets a certificate from the node-local CA, made
    // from the vault.
    let added = proxy.call(
        "/node/proxy/route-add",
        json!({"domain": "app.internal", "upstream": format!("http://127.0.0.1:{}", site.port), "tls": true}),
    );
    assert_eq!(added["certificate"]["source"], "local");
    let ca = proxy.call("/node/proxy/local-ca", json!({}));
    let ca_file = proxy.node.dir().join("local-ca.pem");
    std::fs::write(&ca_file, ca["certificate"].as_str().unwrap()).unwrap();
    assert_eq!(
        fetch("https", "app.internal", proxy.https, Some(&ca_file)),
        (200, "\"hello through nginx\"".to_owned())
    );
    // Plain HTTP redirects to HTTPS on its port.
    assert_eq!(fetch("http", "app.internal", proxy.http, None).0, 301);
    // The chain and its key in one file named by serial, readable by the
    // node's user alone.
    let serial = added["certificate"]["serial"].as_str().unwrap();
    let key = proxy
        .node
        .dir()
        .join(format!("proxy/certs/app.internal-{serial}.pem"));
    assert!(
        std::fs::read_to_string(&key)
            .unwrap()
            .contains("-----BEGIN PRIVATE KEY-----")
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let removed = proxy.call("/node/proxy/route-remove", json!({"domain": "app.example"}));
    assert_eq!(removed["removed"], true);
    assert_eq!(fetch("http", "app.example", proxy.http, None).0, 404);
    let status = proxy.call("/node/proxy/status", json!({}));
    assert_eq!(
        status["serving_version"], status["config_version"],
        "{status}"
    );

    // A certificate in use stays; once its route is gone it can go.
    let error = proxy.refused("/node/proxy/cert-remove", json!({"domain": "app.internal"}));
    assert!(error.contains("route-remove"), "{error}");
    proxy.call(
        "/node/proxy/route-remove",
        json!({"domain": "app.internal"}),
    );
    let removed = proxy.call("/node/proxy/cert-remove", json!({"domain": "app.internal"}));
    assert_eq!(removed["removed"], true);
    assert!(!key.exists());
    let certs = proxy.call("/node/proxy/certs", json!({}));
    assert_eq!(certs["certificates"], json!([]));
}

/// The node's events until one of `kind` arrives (the kept ones replay).
fn wait_for_event(node: &TestNode, kind: &str) -> Value {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = Arc::new(node.client().await);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let follower = {
            let client = client.clone();
            tokio::spawn(async move {
                client
                    .call_with_events(
                        "/node/host/events",
                        "{}",
                        hearth_host::client::CallOptions::default(),
                        move |e| {
                            let _ = tx.send(e);
                        },
                    )
                    .await
            })
        };
        let found = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(event) = rx.recv().await {
                let event: Value = serde_json::from_str(&event).unwrap();
                if event["kind"] == kind {
                    return event;
                }
            }
            panic!("the event stream ended");
        })
        .await
        .unwrap_or_else(|_| panic!("no {kind} event; logs:\n{}", node.logs()));
        follower.abort();
        found
    })
}

#[test]
fn acme_certificates_from_pebble_verify_renew_and_survive_a_restart() {
    let (mut proxy, pebble) = ProxyNode::start(|http| Some(Pebble::start(http)), "timer_s = 3600");
    let pebble = pebble.unwrap();
    let site = upstream("\"served over https\"");
    let added = proxy.call(
        "/node/proxy/route-add",
        json!({"domain": "app.example", "upstream": format!("127.0.0.1:{}", site.port), "tls": true}),
    );
    let cert = &added["certificate"];
    assert_eq!(cert["source"], "acme");
    assert!(
        cert["issuer"].as_str().unwrap().contains("Pebble"),
        "{cert}"
    );
    let root = pebble.issuing_root(proxy.node.dir());
    assert_eq!(
        fetch("https", "app.example", proxy.https, Some(&root)),
        (200, "\"served over https\"".to_owned())
    );
    // Verified against pebble's root only: another root refuses it.
    let wrong = proxy.node.dir().join("wrong.pem");
    std::fs::write(&wrong, rcgen_self_signed()).unwrap();
    assert_eq!(
        fetch("https", "app.example", proxy.https, Some(&wrong)).0,
        0
    );

    // 29-day certificates are due for renewal (30 days before expiry):
    // the timer's run at start renews, logs and says so in a node event.
    let serial = cert["serial"].clone();
    proxy.node.restart();
    let event = wait_for_event(&proxy.node, "plugin.proxy.certificate-renewed");
    assert_eq!(event["data"]["domain"], "app.example");
    assert_eq!(event["data"]["old_serial"], serial);
    assert_ne!(event["data"]["serial"], serial);
    assert!(
        proxy
            .node
            .logs()
            .contains("renewed the certificate for app.example")
    );
    // After the restart nginx serves again, the route and the renewed
    // certificate kept.
    let certs = proxy.call("/node/proxy/certs", json!({}));
    assert_eq!(certs["certificates"][0]["serial"], event["data"]["serial"]);
    assert_eq!(
        fetch("https", "app.example", proxy.https, Some(&root)),
        (200, "\"served over https\"".to_owned())
    );
    let routes = proxy.call("/node/proxy/routes", json!({}));
    assert_eq!(routes["routes"][0]["domain"], "app.example");
    // An injection attempt through cert-issue is refused as well.
    let error = proxy.refused("/node/proxy/cert-issue", json!({"domain": "a.example;"}));
    assert!(error.contains("`domain`"), "{error}");
}

fn rcgen_self_signed() -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.self_signed(&key).unwrap().pem()
}

/// A head node asks a worker's proxy to expose a fresh container: the
/// worker looks it up through its docker plugin, routes it and gets a
/// certificate from pebble, in one call.
#[test]
fn expose_turns_a_fresh_container_into_an_https_site_from_a_head_node() {
    crate::docker::engine();
    tools();
    let (worker, head) = (crate::mesh::seat("worker"), crate::mesh::seat("head"));
    let (http, https) = (free_port(), free_port());
    let pebble = Pebble::start(http);
    let proxy = proxy_section(
        &worker.path().join("proxy"),
        http,
        https,
        Some(&pebble),
        "grants.env = [\"/node/docker/inspect\"]",
    );
    let name = format!("proxy{}", std::process::id());
    let container = format!("{name}-site");
    let _cleanup = crate::docker::Cleanup(vec![container.clone()]);
    let worker_rest = format!(
        "{}[plugins.docker]\ngrants.docker = {{ images = [\"hearth-busybox:*\"], host_ports = \"18000-18999\" }}\n{proxy}",
        head.as_peer(
            true,
            "allow = [\"/node/proxy/*\"]\nscopes = [\"proxy:admin\", \"proxy:read\"]"
        ),
    );
    let head_rest = worker.as_peer(true, "");
    let worker = worker.start("", &worker_rest);
    let head = head.start("", &head_rest);
    crate::mesh::wait_for_state(&head, "worker", "connected");

    let port = crate::docker::free_port();
    let created = worker.cli(&[
        "call",
        "/node/docker/create",
        &json!({
            "image": crate::docker::IMAGE,
            "name": container,
            "ports": [{"container": 80, "host": port}],
            "command": ["/bin/httpd", "-f", "-p", "80", "-h", "/www"],
        })
        .to_string(),
    ]);
    created.ok_json();
    let exposed = head
        .cli(&[
            "call",
            "/worker/proxy/expose",
            &json!({"container": container, "domain": "site.example"}).to_string(),
        ])
        .ok_json();
    assert_eq!(
        exposed["route"]["upstream"],
        format!("http://127.0.0.1:{port}")
    );
    assert_eq!(exposed["certificate"]["source"], "acme");
    let root = pebble.issuing_root(head.dir());
    let (status, body) = fetch("https", "site.example", https, Some(&root));
    assert_eq!(status, 200);
    assert!(body.contains("hello from a hearth container"), "{body}");
    // A container that publishes nothing is a clear error naming it.
    let error = head.cli(&[
        "call",
        "/worker/proxy/expose",
        &json!({"container": container, "domain": "other.example", "port": 8080}).to_string(),
    ]);
    assert!(
        error.stderr().contains("publishes no TCP port for 8080"),
        "{}",
        error.stderr()
    );
}
