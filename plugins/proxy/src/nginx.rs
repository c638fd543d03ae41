//! nginx, run by the node for this plugin: its configuration rendered from
//! the routes, certificates and pending ACME challenges, and applied
//! safely.
//!
//! The master runs as a kept-running process of the exact argument list
//! [`Settings::master_argv`] (granted by the operator), in the foreground,
//! with everything — configuration, pid, logs, temporary files,
//! certificates — inside the plugin's granted directory. A change is
//! written to `next.conf`, checked with `nginx -t` ([`Settings::test_argv`],
//! also granted), and only then renamed over `nginx.conf` and loaded with
//! `SIGHUP`; a configuration nginx refuses is never activated and its
//! message goes back to the caller. Each configuration carries a version,
//! which nginx serves at [`MARKER`]: after a reload the plugin waits until
//! the new version answers, so a challenge is live before the ACME server
//! is told to look.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use hearth_sdk::prelude::*;
use hearth_sdk::{files, process};

use crate::validate::{Domain, Upstream};

/// Where nginx answers with the configuration version it runs.
pub const MARKER: &str = "/.well-known/hearth-proxy-config";

/// How the plugin runs nginx: from its configuration and granted
/// directory.
#[derive(Debug, Clone)]
pub struct Settings {
    nginx: String,
    root: String,
    listen: String,
    /// Plain HTTP port.
    pub http_port: u16,
    /// HTTPS port.
    pub https_port: u16,
    worker_processes: String,
}

impl Settings {
    /// From config `nginx`, `listen`, `http_port`, `https_port`,
    /// `worker_processes`, and the granted directory.
    pub fn load() -> Result<Settings, CallError> {
        let root = files::root()?;
        if !root
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-".contains(&b))
        {
            return Err(CallError::failed(format!(
                "the granted directory {root:?} may hold only letters, digits and `/._-` (it is written into nginx's configuration)"
            )));
        }
        let port = |key: &str, default: u16| -> Result<u16, CallError> {
            match config::get(key)? {
                None => Ok(default),
                Some(text) => text.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
                    CallError::invalid_input(format!("config `{key}`: {text:?} is not a port"))
                }),
            }
        };
        let listen = config::get("listen")?.unwrap_or_else(|| "0.0.0.0".to_owned());
        if listen.parse::<std::net::Ipv4Addr>().is_err() {
            return Err(CallError::invalid_input(format!(
                "config `listen`: {listen:?} is not an IPv4 address (0.0.0.0 for all)"
            )));
        }
        let worker_processes = config::get("worker_processes")?.unwrap_or_else(|| "auto".into());
        let valid_workers = worker_processes == "auto"
            || (worker_processes.bytes().all(|b| b.is_ascii_digit())
                && worker_processes
                    .parse::<u8>()
                    .is_ok_and(|n| (1..=64).contains(&n)));
        if !valid_workers {
            return Err(CallError::invalid_input(
                "config `worker_processes`: write `auto` or a number from 1 to 64",
            ));
        }
        Ok(Settings {
            nginx: config::get("nginx")?.unwrap_or_else(|| "/usr/sbin/nginx".to_owned()),
            root,
            listen,
            http_port: port("http_port", 80)?,
            https_port: port("https_port", 443)?,
            worker_processes,
        })
    }

    /// The master, in the foreground: the argument list to grant.
    pub fn master_argv(&self) -> Vec<String> {
        self.argv(&["-c", &format!("{}/nginx.conf", self.root)])
    }

    /// `nginx -t` of the next configuration: the argument list to grant.
    pub fn test_argv(&self) -> Vec<String> {
        self.argv(&["-t", "-q", "-c", &format!("{}/next.conf", self.root)])
    }

    fn argv(&self, middle: &[&str]) -> Vec<String> {
        let mut argv = vec![self.nginx.clone(), "-p".into(), format!("{}/", self.root)];
        argv.extend(middle.iter().map(|s| (*s).to_owned()));
        argv.extend([
            "-e".into(),
            format!("{}/logs/error.log", self.root),
            "-g".into(),
            "daemon off;".into(),
        ]);
        argv
    }

    /// Where the plugin checks what nginx serves.
    fn check_url(&self) -> String {
        let host = if self.listen == "0.0.0.0" {
            "127.0.0.1"
        } else {
            &self.listen
        };
        format!("http://{host}:{}{MARKER}", self.http_port)
    }

    /// The origin to add to `grants.http` for that check.
    pub fn check_origin(&self) -> String {
        let url = self.check_url();
        url[..url.len() - MARKER.len()].to_owned()
    }
}

/// One site.
#[derive(Debug, Clone)]
pub struct Site<'a> {
    /// Its name.
    pub domain: &'a Domain,
    /// Where requests go.
    pub upstream: &'a Upstream,
    /// Serve HTTPS with this file under `certs/` (its chain and key).
    pub cert: Option<&'a str>,
}

/// A pending HTTP-01 challenge.
#[derive(Debug, Clone)]
pub struct Challenge<'a> {
    /// The token (base64url, checked).
    pub token: &'a str,
    /// `token.thumbprint`.
    pub key_authorization: &'a str,
}

/// Everything a configuration is made of.
pub struct Plan<'a> {
    /// This configuration's version.
    pub version: u64,
    /// The sites, by domain.
    pub sites: Vec<Site<'a>>,
    /// Challenges answered on every name.
    pub challenges: Vec<Challenge<'a>>,
}

/// True when `text` is base64url (a token or key authorization): nothing
/// else is written into a `return` directive.
pub fn is_b64url(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 256
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// The configuration text.
pub fn render(settings: &Settings, plan: &Plan<'_>) -> String {
    let root = &settings.root;
    let listen = &settings.listen;
    let (http, https) = (settings.http_port, settings.https_port);
    let mut text = String::new();
    let _ = writeln!(
        text,
        "# hearth-proxy version {}\n# Written by the Hearth proxy plugin; changes made here are overwritten.\n",
        plan.version
    );
    let _ = writeln!(
        text,
        "worker_processes {};\npid {root}/logs/nginx.pid;\nerror_log {root}/logs/error.log warn;\n\nevents {{\n    worker_connections 1024;\n}}\n",
        settings.worker_processes
    );
    text.push_str("http {\n");
    let _ = writeln!(
        text,
        "    access_log {root}/logs/access.log;\n    client_body_temp_path {root}/temp/body;\n    proxy_temp_path {root}/temp/proxy;\n    fastcgi_temp_path {root}/temp/fastcgi;\n    uwsgi_temp_path {root}/temp/uwsgi;\n    scgi_temp_path {root}/temp/scgi;\n    proxy_max_temp_file_size 0;\n    default_type application/octet-stream;\n    server_tokens off;\n    server_names_hash_bucket_size 128;\n    map $http_upgrade $connection_upgrade {{\n        default upgrade;\n        '' close;\n    }}\n"
    );
    let mut challenges = String::new();
    for c in &plan.challenges {
        if is_b64url(c.token) && is_b64url(c.key_authorization) {
            let _ = writeln!(
                challenges,
                "        location = /.well-known/acme-challenge/{} {{\n            default_type text/plain;\n            return 200 \"{}\";\n        }}",
                c.token, c.key_authorization
            );
        }
    }
    // The default server: unknown names, the version marker, challenges
    // for names without a route yet.
    let _ = writeln!(
        text,
        "    server {{\n        listen {listen}:{http} default_server;\n        server_name _;\n        location = {MARKER} {{\n            default_type text/plain;\n            return 200 \"{}\";\n        }}\n{challenges}        location / {{\n            return 404;\n        }}\n    }}\n",
        plan.version
    );
    for site in &plan.sites {
        let domain = site.domain.as_str();
        let upstream = site.upstream.to_string();
        let sni = if site.upstream.scheme == "https" {
            "            proxy_ssl_server_name on;\n"
        } else {
            ""
        };
        // Only a name the plugin made (domain, `-`, hex serial) is used.
        let cert = site.cert.filter(|f| {
            f.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.".contains(&b))
        });
        let proxy = format!(
            "        location / {{\n            proxy_pass {upstream};\n{sni}            proxy_http_version 1.1;\n            proxy_set_header Host $host;\n            proxy_set_header X-Real-IP $remote_addr;\n            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n            proxy_set_header X-Forwarded-Proto $scheme;\n            proxy_set_header Upgrade $http_upgrade;\n            proxy_set_header Connection $connection_upgrade;\n        }}\n"
        );
        let plain = if cert.is_some() {
            let port = if https == 443 {
                String::new()
            } else {
                format!(":{https}")
            };
            format!(
                "        location / {{\n            return 301 https://$host{port}$request_uri;\n        }}\n"
            )
        } else {
            proxy.clone()
        };
        let _ = writeln!(
            text,
            "    server {{\n        listen {listen}:{http};\n        server_name {domain};\n{challenges}{plain}    }}\n"
        );
        if let Some(cert) = cert {
            let _ = writeln!(
                text,
                "    server {{\n        listen {listen}:{https} ssl http2;\n        server_name {domain};\n        ssl_certificate {root}/certs/{cert};\n        ssl_certificate_key {root}/certs/{cert};\n        ssl_protocols TLSv1.2 TLSv1.3;\n        ssl_session_cache shared:hearth:1m;\n{proxy}    }}\n"
            );
        }
    }
    text.push_str("}\n");
    text
}

/// The version in a configuration's first line.
pub fn version_of(text: &str) -> Option<u64> {
    text.lines()
        .next()?
        .strip_prefix("# hearth-proxy version ")?
        .trim()
        .parse()
        .ok()
}

/// The running master's generation and the configuration version it
/// serves, once it does: taken at the start of every change. Holding the
/// master's process lock for the rest of the call, it also orders this
/// plugin's changes one after another.
pub struct Running {
    generation: u64,
    /// The version on disk and served.
    pub version: u64,
}

/// Makes sure nginx runs a configuration of ours (writing a first one when
/// there is none) and serves it.
pub fn ensure_running(settings: &Settings, cx: &Context) -> Result<Running, CallError> {
    let first = |settings: &Settings| -> Result<(), CallError> {
        // The first configuration serves nothing but the marker.
        let plan = Plan {
            version: 1,
            sites: Vec::new(),
            challenges: Vec::new(),
        };
        make_dirs()?;
        files::write("nginx.conf", render(settings, &plan).as_bytes(), 0o644)
    };
    // nginx needs a file to start with; written before the lock (as it
    // is: `next.conf` is one file, its check is for calls in order).
    if files::read("nginx.conf")?.is_none() {
        first(settings)?;
    }
    let master = settings.master_argv();
    let generation = process::generation(&master)?;
    // From here the master's lock orders this plugin's calls: what is on
    // disk now is the truth.
    let on_disk = match files::read_string("nginx.conf")?
        .as_deref()
        .and_then(version_of)
    {
        Some(version) => version,
        None => {
            first(settings)?;
            1
        }
    };
    let ready = format!("ready {generation}");
    if process::memo(&master)?.as_deref() != Some(ready.as_str()) {
        // Just started: wait until it serves before any signal (a SIGHUP
        // before its handlers are installed would end it).
        wait_serving(settings, cx, on_disk)?;
        process::set_memo(&master, &ready)?;
    }
    // A call that raced to write the first file may have put an older
    // version on disk than nginx serves: count on from the larger, so a
    // new version is never one nginx already answers with.
    let served = served_version(settings).ok().flatten().unwrap_or(0);
    Ok(Running {
        generation,
        version: on_disk.max(served),
    })
}

/// Writes `next.conf`, has nginx check it, and renames it over
/// `nginx.conf`; a configuration nginx refuses is removed and its message
/// returned.
fn install(settings: &Settings, text: &str) -> Result<(), CallError> {
    make_dirs()?;
    files::write("next.conf", text.as_bytes(), 0o644)?;
    let argv = settings.test_argv();
    let checked = process::run(&argv, b"")?;
    if checked.status != Some(0) {
        let _ = files::remove("next.conf");
        let message = String::from_utf8_lossy(&checked.stderr);
        let message: Vec<&str> = message
            .lines()
            .filter(|l| !l.contains("test failed"))
            .map(|l| l.trim_start_matches("nginx: "))
            .collect();
        return Err(CallError::invalid_input(format!(
            "nginx refused the new configuration, which was not activated (the previous one keeps serving): {}",
            message.join("; ")
        )));
    }
    files::rename("next.conf", "nginx.conf")
}

/// The directories nginx writes to (it makes none of them itself).
fn make_dirs() -> Result<(), CallError> {
    for dir in ["logs", "temp", "certs"] {
        if files::list(dir).is_err() {
            files::write(&format!("{dir}/.keep"), b"", 0o644)?;
        }
    }
    Ok(())
}

/// Installs `plan` (its version one above what runs) and has nginx load
/// it; returns once nginx serves it.
pub fn apply(
    settings: &Settings,
    cx: &Context,
    running: &mut Running,
    plan: &mut Plan<'_>,
) -> Result<(), CallError> {
    plan.version = running.version + 1;
    let previous = files::read("nginx.conf")?;
    install(settings, &render(settings, plan))?;
    let master = settings.master_argv();
    let loaded = (|| {
        let generation = process::generation(&master)?;
        if generation == running.generation {
            process::send_signal(&master, process::Signal::Hangup)?;
        } else {
            // It died and started again, reading the new file already.
            running.generation = generation;
        }
        wait_serving(settings, cx, plan.version)?;
        process::set_memo(&master, &format!("ready {generation}"))
    })();
    if let Err(e) = loaded {
        // nginx passed the check but did not load it (a port taken, say):
        // the file on disk goes back to the last one that served, so a
        // restarted nginx starts with that.
        if let Some(previous) = previous {
            let _ = files::write("nginx.conf", &previous, 0o644);
            let _ = process::send_signal(&master, process::Signal::Hangup);
        }
        return Err(e);
    }
    running.version = plan.version;
    Ok(())
}

/// What nginx serves at the marker; `None` when it does not answer.
pub fn served_version(settings: &Settings) -> Result<Option<u64>, CallError> {
    match http::get(settings.check_url())
        .timeout(Duration::from_millis(500))
        .send()
    {
        Ok(response) if response.status == 200 => Ok(response.text().trim().parse().ok()),
        Ok(_) => Ok(None),
        Err(e) if e.code == ErrorCode::Denied => Err(e),
        Err(_) => Ok(None),
    }
}

/// How long the new version must answer before it counts as served: on
/// `SIGHUP` the master starts new workers, sleeps 100 ms, and only then
/// tells the old ones to stop accepting, so for a while either may answer.
const SETTLED: Duration = Duration::from_millis(400);

/// Waits until nginx serves `version` (at most 10 s, never past the
/// deadline). Without `grants.http` for the check, waits one second.
fn wait_serving(settings: &Settings, cx: &Context, version: u64) -> Result<(), CallError> {
    let started = Instant::now();
    let limit =
        Duration::from_secs(10).min(cx.time_left().saturating_sub(Duration::from_millis(300)));
    let mut since: Option<Instant> = None;
    loop {
        match served_version(settings) {
            Ok(Some(served)) if served >= version => {
                let first = *since.get_or_insert_with(Instant::now);
                if first.elapsed() >= SETTLED {
                    return Ok(());
                }
            }
            Ok(_) => since = None,
            Err(_) => {
                log::warn(&format!(
                    "cannot check that nginx serves the new configuration: add \"{}\" to grants.http; waiting 1 s instead",
                    settings.check_origin()
                ));
                std::thread::sleep(Duration::from_secs(1));
                return Ok(());
            }
        }
        if started.elapsed() >= limit {
            let tail = files::read_string("logs/error.log")
                .ok()
                .flatten()
                .map(|log| {
                    let lines: Vec<&str> = log.lines().rev().take(3).collect();
                    lines.into_iter().rev().collect::<Vec<_>>().join("; ")
                })
                .unwrap_or_default();
            return Err(CallError::new(
                ErrorCode::Unavailable,
                format!(
                    "nginx does not serve configuration version {version} on port {} after {} ms; its error log ends: {tail}",
                    settings.http_port,
                    started.elapsed().as_millis()
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            nginx: "/usr/sbin/nginx".into(),
            root: "/srv/proxy".into(),
            listen: "127.0.0.1".into(),
            http_port: 8080,
            https_port: 8443,
            worker_processes: "1".into(),
        }
    }

    #[test]
    fn a_configuration_names_its_version_sites_and_challenges() {
        let domain = Domain::parse("app.example").unwrap();
        let upstream = Upstream::parse("127.0.0.1:18000").unwrap();
        let plan = Plan {
            version: 7,
            sites: vec![Site {
                domain: &domain,
                upstream: &upstream,
                cert: Some("app.example-0a1b.pem"),
            }],
            challenges: vec![
                Challenge {
                    token: "tok_en-1",
                    key_authorization: "tok_en-1.thumb",
                },
                Challenge {
                    token: "bad;token",
                    key_authorization: "x",
                },
            ],
        };
        let text = render(&settings(), &plan);
        assert_eq!(version_of(&text), Some(7));
        assert!(text.contains("proxy_pass http://127.0.0.1:18000;"));
        assert!(text.contains("listen 127.0.0.1:8443 ssl http2;"));
        assert!(text.contains("ssl_certificate_key /srv/proxy/certs/app.example-0a1b.pem;"));
        assert!(text.contains("return 301 https://$host:8443$request_uri;"));
        assert!(text.contains("return 200 \"tok_en-1.thumb\";"));
        assert!(!text.contains("bad;token"));
        assert_eq!(text.matches('{').count(), text.matches('}').count());
    }

    #[test]
    fn argument_lists_are_fixed_by_the_settings() {
        let s = settings();
        assert_eq!(
            s.master_argv(),
            [
                "/usr/sbin/nginx",
                "-p",
                "/srv/proxy/",
                "-c",
                "/srv/proxy/nginx.conf",
                "-e",
                "/srv/proxy/logs/error.log",
                "-g",
                "daemon off;"
            ]
        );
        assert_eq!(s.test_argv()[3..6], ["-t", "-q", "-c"]);
        assert_eq!(s.check_origin(), "http://127.0.0.1:8080");
    }
}
