//! `proxy`: sites served by nginx, with certificates from an ACME server
//! (RFC 8555, HTTP-01) or from a node-local CA.
//!
//! | operation      | kind     | scope         | what                                        |
//! |----------------|----------|---------------|---------------------------------------------|
//! | `route-add`    | mutation | `proxy:admin` | serve `domain` from `upstream`, HTTPS when `tls` |
//! | `route-remove` | mutation | `proxy:admin` | stop serving a domain                       |
//! | `routes`       | query    | `proxy:read`  | the routes                                  |
//! | `config`       | query    | `proxy:read`  | the nginx configuration now active          |
//! | `reload`       | mutation | `proxy:admin` | write, check and load the configuration again |
//! | `status`       | query    | `proxy:read`  | what nginx serves, what is configured       |
//! | `cert-issue`   | mutation | `proxy:admin` | obtain a certificate for a domain           |
//! | `cert-remove`  | mutation | `proxy:admin` | forget a certificate no HTTPS route uses     |
//! | `certs`        | query    | `proxy:read`  | domains, issuers, expiry                    |
//! | `local-ca`     | query    | `proxy:read`  | the node-local CA's certificate, to trust   |
//! | `expose`       | mutation | `proxy:admin` | a container's published port as a site      |
//! | `maintain`     | mutation | `proxy:admin` | the timer: nginx running, renewals due      |
//!
//! Routes and certificates live in the plugin's kv (keys `route/<domain>`
//! and `cert/<domain>`, the certificate key sealed by the vault); nginx's
//! files are written from them in the granted directory ([`nginx`]).
//! Everything a caller sends is checked ([`validate`]) before anything is
//! written. The timer (`maintain`) runs when the node starts — so nginx
//! serves the routes again after a restart — and hourly, renewing every
//! certificate 30 days before it expires, with a log line and a node event
//! (`plugin.proxy.certificate-renewed`).

mod acme;
mod jws;
mod nginx;
mod pki;
mod validate;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hearth_sdk::prelude::*;
use hearth_sdk::{events, files};

use nginx::{Challenge, Plan, Running, Settings, Site};
use validate::{Domain, Upstream};

/// Renew this long before a certificate expires.
const RENEW_BEFORE: Duration = Duration::from_secs(30 * 86_400);
/// Let's Encrypt, when config `acme_directory` is not set.
const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// A route as stored and shown.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug)]
struct Route {
    /// The site's name.
    domain: String,
    /// Where its requests go, `http://host:port`.
    upstream: String,
    /// Served over HTTPS (plain HTTP redirects there).
    tls: bool,
}

/// A certificate as stored.
#[derive(Serialize, Deserialize, Clone, Debug)]
struct CertRecord {
    domain: String,
    /// `acme` or `local`.
    source: String,
    /// The ACME directory it came from.
    directory: Option<String>,
    issuer: String,
    serial: String,
    not_before: u64,
    not_after: u64,
    chain_pem: String,
    /// The key's PKCS#8 PEM, sealed by the vault, hex.
    key_sealed: String,
}

/// A certificate as shown.
#[derive(Serialize, JsonSchema)]
struct CertView {
    domain: String,
    /// `acme` or `local`.
    source: String,
    /// The issuer's name.
    issuer: String,
    /// Serial number, hex.
    serial: String,
    /// Not valid before (RFC 3339).
    not_before: String,
    /// Expires (RFC 3339).
    not_after: String,
    /// Whole days until it expires.
    days_left: i64,
    /// When renewal is due (RFC 3339): 30 days before it expires.
    renew_at: String,
}

impl From<&CertRecord> for CertView {
    fn from(c: &CertRecord) -> Self {
        let now = now_s() as i64;
        CertView {
            domain: c.domain.clone(),
            source: c.source.clone(),
            issuer: c.issuer.clone(),
            serial: c.serial.clone(),
            not_before: rfc3339(c.not_before),
            not_after: rfc3339(c.not_after),
            days_left: (c.not_after as i64 - now).div_euclid(86_400),
            renew_at: rfc3339(c.not_after.saturating_sub(RENEW_BEFORE.as_secs())),
        }
    }
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ`.
fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The plugin's stored state, loaded once per call.
struct State {
    routes: BTreeMap<String, Route>,
    certs: BTreeMap<String, CertRecord>,
}

impl State {
    fn load() -> Result<State, CallError> {
        let mut routes = BTreeMap::new();
        for key in kv::list_keys("route/", 10_000)? {
            if let Some(route) = kv::get_json::<Route>(&key)? {
                routes.insert(route.domain.clone(), route);
            }
        }
        let mut certs = BTreeMap::new();
        for key in kv::list_keys("cert/", 10_000)? {
            if let Some(cert) = kv::get_json::<CertRecord>(&key)? {
                certs.insert(cert.domain.clone(), cert);
            }
        }
        Ok(State { routes, certs })
    }

    /// nginx's configuration for this state, answering `challenges`.
    fn apply(
        &self,
        settings: &Settings,
        cx: &Context,
        running: &mut Running,
        challenges: &[(String, String)],
    ) -> Result<(), CallError> {
        let parsed: Vec<(Domain, Upstream, Option<String>)> = self
            .routes
            .values()
            .map(|r| {
                let domain = Domain::parse(&r.domain).map_err(CallError::failed)?;
                let upstream = Upstream::parse(&r.upstream).map_err(CallError::failed)?;
                let cert = self.certs.get(&r.domain).filter(|_| r.tls).map(cert_file);
                Ok((domain, upstream, cert))
            })
            .collect::<Result<_, CallError>>()?;
        let mut plan = Plan {
            version: 0,
            sites: parsed
                .iter()
                .map(|(domain, upstream, cert)| Site {
                    domain,
                    upstream,
                    cert: cert.as_deref(),
                })
                .collect(),
            challenges: challenges
                .iter()
                .map(|(token, key_authorization)| Challenge {
                    token,
                    key_authorization,
                })
                .collect(),
        };
        nginx::apply(settings, cx, running, &mut plan)
    }
}

/// The file under `certs/` holding a certificate's chain and key (nginx
/// reads both from one file), named by serial: a renewal writes a new file
/// and the configuration switches to it, so a half-written pair is never
/// in use.
fn cert_file(cert: &CertRecord) -> String {
    format!("{}-{}.pem", cert.domain, cert.serial)
}

/// Certificates one `maintain` run renews at most (the rest next time).
const MAX_RENEWALS: usize = 16;

fn is_local(domain: &Domain) -> Result<bool, CallError> {
    let suffixes: Vec<String> = config::get_json("local_suffixes")?
        .unwrap_or_else(|| vec![".local".to_owned(), ".internal".to_owned()]);
    Ok(suffixes.iter().any(|s| domain.is_under(s)))
}

fn path_config(key: &str, default: &str) -> Result<String, CallError> {
    Ok(config::get(key)?.unwrap_or_else(|| default.to_owned()))
}

/// The vault path that seals certificate keys.
fn seal_path() -> Result<String, CallError> {
    path_config("seal_path", "m/74'/4'/2'")
}

/// The node-local CA: its signer and certificate (made once, kept in kv).
fn local_ca() -> Result<(pki::VaultSigner, String), CallError> {
    let signer = pki::VaultSigner::new(&path_config("local_ca_path", "m/74'/4'/1'")?)?;
    if let Some(pem) = kv::get("local-ca")? {
        return Ok((signer, String::from_utf8_lossy(&pem).into_owned()));
    }
    let name = config::get("local_ca_name")?.unwrap_or_else(|| "Hearth node-local CA".into());
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b" -.".contains(&b))
    {
        return Err(CallError::invalid_input(
            "config `local_ca_name`: use letters, digits, spaces, `-` and `.`",
        ));
    }
    let pem = pki::ca_certificate(&signer, &name, now_s()).map_err(CallError::failed)?;
    kv::set("local-ca", pem.as_bytes())?;
    Ok((signer, pem))
}

/// Obtains a certificate for `domain` (serving its challenges through
/// nginx on the way), writes it for nginx and records it in `state`.
fn issue(
    cx: &Context,
    settings: &Settings,
    running: &mut Running,
    state: &mut State,
    domain: &Domain,
) -> Result<(), CallError> {
    let key = pki::new_key();
    let (source, directory, chain) = if is_local(domain)? {
        let (signer, ca) = local_ca()?;
        let days: u64 = config::get_json("local_cert_days")?.unwrap_or(90);
        if !(31..=825).contains(&days) {
            return Err(CallError::invalid_input(
                "config `local_cert_days`: 31 to 825 (renewal starts 30 days before expiry)",
            ));
        }
        let chain = pki::issue_local(&signer, &ca, domain.as_str(), &key, now_s(), days)
            .map_err(CallError::failed)?;
        ("local", None, chain)
    } else {
        let directory = path_config("acme_directory", LETS_ENCRYPT)?;
        let mut client = acme::Client::new(
            &directory,
            &path_config("acme_account_path", "m/74'/4'/0'")?,
        )?;
        client.account(config::get("acme_email")?.as_deref())?;
        let csr = pki::csr(&key, domain.as_str()).map_err(CallError::failed)?;
        let before = running.version;
        let ordered = {
            let state = &*state;
            let mut publish =
                |answers: &[(String, String)]| state.apply(settings, cx, &mut *running, answers);
            client.order(cx, domain.as_str(), &csr, &mut publish)
        };
        let issued = match ordered {
            Ok(issued) => issued,
            Err(e) => {
                // Stop answering the challenge, if nginx took it.
                if running.version != before {
                    let _ = state.apply(settings, cx, running, &[]);
                }
                return Err(e);
            }
        };
        (
            "acme",
            Some(client.directory_url().to_owned()),
            issued.chain_pem,
        )
    };
    let info = pki::info(&chain).map_err(CallError::failed)?;
    if !pki::key_matches(&key, &chain) || !info.names.iter().any(|n| n == domain.as_str()) {
        return Err(CallError::failed(format!(
            "the certificate issued for {domain} does not match its key and name"
        )));
    }
    let key_pem = pki::key_to_pem(&key).map_err(CallError::failed)?;
    let record = CertRecord {
        domain: domain.to_string(),
        source: source.to_owned(),
        directory,
        issuer: info.issuer,
        serial: info.serial,
        not_before: info.not_before,
        not_after: info.not_after,
        chain_pem: chain,
        key_sealed: hex(&vault::encrypt(&seal_path()?, key_pem.as_bytes())?),
    };
    if !record.serial.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(CallError::failed("the certificate's serial is not hex"));
    }
    files::write(
        &format!("certs/{}", cert_file(&record)),
        format!("{}{key_pem}", record.chain_pem).as_bytes(),
        0o600,
    )?;
    kv::set_json(&format!("cert/{domain}"), &record)?;
    log::info(&format!(
        "certificate for {domain} from {} ({}), serial {}, expires {}",
        record.source,
        record.issuer,
        record.serial,
        rfc3339(record.not_after)
    ));
    state.certs.insert(domain.to_string(), record);
    Ok(())
}

/// Rewrites the file of a recorded certificate when it is missing (a new
/// directory, a restored node); true when it did.
fn restore_files(cert: &CertRecord) -> Result<bool, CallError> {
    let file = format!("certs/{}", cert_file(cert));
    if files::read(&file)?.is_some() {
        return Ok(false);
    }
    let sealed = unhex(&cert.key_sealed).ok_or_else(|| {
        CallError::failed(format!("the stored key of {} is damaged", cert.domain))
    })?;
    let key_pem = vault::decrypt(&seal_path()?, &sealed)?;
    let mut contents = cert.chain_pem.clone().into_bytes();
    contents.extend_from_slice(&key_pem);
    files::write(&file, &contents, 0o600)?;
    Ok(true)
}

/// Removes files under `certs/` no recorded certificate names (renewed
/// ones, removed ones).
fn forget_old_files(state: &State) -> Result<(), CallError> {
    let used: Vec<String> = state.certs.values().map(cert_file).collect();
    for entry in files::list("certs")? {
        if !entry.dir && entry.name != ".keep" && !used.contains(&entry.name) {
            files::remove(&format!("certs/{}", entry.name))?;
        }
    }
    Ok(())
}

/// Parses what the caller sent; errors name the field.
fn parse_route(domain: &str, upstream: &str) -> Result<(Domain, Upstream), CallError> {
    let domain = Domain::parse(domain).map_err(CallError::invalid_input)?;
    let upstream = Upstream::parse(upstream).map_err(CallError::invalid_input)?;
    Ok((domain, upstream))
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RouteInput {
    /// The site's name, as `app.example.com`.
    domain: String,
    /// `http://host:port`, `https://host:port` or `host:port`.
    upstream: String,
    /// Serve HTTPS with a certificate (issued now when there is none).
    #[serde(default)]
    tls: bool,
}

#[derive(Serialize, JsonSchema)]
struct RouteOutput {
    route: Route,
    /// Its certificate, when `tls`.
    certificate: Option<CertView>,
    /// The configuration version nginx now serves.
    config_version: u64,
}

/// Adds (or replaces) a route and serves it, issuing its certificate first
/// when it needs one.
fn add_route(
    cx: &Context,
    domain: Domain,
    upstream: Upstream,
    tls: bool,
) -> Result<RouteOutput, CallError> {
    let settings = Settings::load()?;
    let mut running = nginx::ensure_running(&settings, cx)?;
    let mut state = State::load()?;
    let route = Route {
        domain: domain.to_string(),
        upstream: upstream.to_string(),
        tls,
    };
    let needs_cert = tls && state.certs.get(domain.as_str()).is_none_or(is_due);
    let previous = state.routes.insert(route.domain.clone(), route.clone());
    let before = running.version;
    let served = serve_route(cx, &settings, &mut running, &mut state, &domain, needs_cert);
    if let Err(e) = served {
        // Back to what kv still says (the call's writes are dropped), if
        // nginx took anything in meanwhile.
        if running.version != before {
            match previous {
                Some(previous) => state.routes.insert(route.domain.clone(), previous),
                None => state.routes.remove(domain.as_str()),
            };
            let _ = state.apply(&settings, cx, &mut running, &[]);
        }
        return Err(e);
    }
    kv::set_json(&format!("route/{domain}"), &route)?;
    log::info(&format!(
        "route {domain} -> {upstream}{}",
        if tls { " (https)" } else { "" }
    ));
    Ok(RouteOutput {
        certificate: state
            .certs
            .get(domain.as_str())
            .filter(|_| tls)
            .map(CertView::from),
        route,
        config_version: running.version,
    })
}

/// True when a certificate is within 30 days of expiry.
fn is_due(cert: &CertRecord) -> bool {
    cert.not_after.saturating_sub(RENEW_BEFORE.as_secs()) <= now_s()
}

/// Serves the routes in `state`; when `needs_cert`, first has nginx check
/// the new route (so a refusal never comes after a certificate was spent),
/// then obtains the certificate.
fn serve_route(
    cx: &Context,
    settings: &Settings,
    running: &mut Running,
    state: &mut State,
    domain: &Domain,
    needs_cert: bool,
) -> Result<(), CallError> {
    if needs_cert {
        state.apply(settings, cx, running, &[])?;
        issue(cx, settings, running, state, domain)?;
    }
    state.apply(settings, cx, running, &[])
}

fn route_add(cx: &Context, input: RouteInput) -> Result<RouteOutput, CallError> {
    let (domain, upstream) = parse_route(&input.domain, &input.upstream)?;
    add_route(cx, domain, upstream, input.tls)
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct DomainInput {
    /// The site's name.
    domain: String,
}

#[derive(Serialize, JsonSchema)]
struct Removed {
    removed: bool,
    config_version: u64,
}

fn route_remove(cx: &Context, input: DomainInput) -> Result<Removed, CallError> {
    let domain = Domain::parse(&input.domain).map_err(CallError::invalid_input)?;
    let settings = Settings::load()?;
    let mut running = nginx::ensure_running(&settings, cx)?;
    let mut state = State::load()?;
    let removed = state.routes.remove(domain.as_str()).is_some();
    if removed {
        state.apply(&settings, cx, &mut running, &[])?;
        kv::delete(&format!("route/{domain}"))?;
        log::info(&format!("route {domain} removed"));
    }
    Ok(Removed {
        removed,
        config_version: running.version,
    })
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Empty {}

#[derive(Serialize, JsonSchema)]
struct Routes {
    routes: Vec<Route>,
}

fn routes(_cx: &Context, _input: Empty) -> Result<Routes, CallError> {
    Ok(Routes {
        routes: State::load()?.routes.into_values().collect(),
    })
}

#[derive(Serialize, JsonSchema)]
struct ConfigText {
    /// Its version (the first line says it too).
    version: Option<u64>,
    /// `nginx.conf` as nginx reads it.
    text: String,
}

fn config_op(_cx: &Context, _input: Empty) -> Result<ConfigText, CallError> {
    let text = files::read_string("nginx.conf")?.unwrap_or_default();
    Ok(ConfigText {
        version: nginx::version_of(&text),
        text,
    })
}

#[derive(Serialize, JsonSchema)]
struct Reloaded {
    config_version: u64,
}

fn reload(cx: &Context, _input: Empty) -> Result<Reloaded, CallError> {
    let settings = Settings::load()?;
    let mut running = nginx::ensure_running(&settings, cx)?;
    let state = State::load()?;
    for cert in state.certs.values() {
        restore_files(cert)?;
    }
    state.apply(&settings, cx, &mut running, &[])?;
    forget_old_files(&state)?;
    Ok(Reloaded {
        config_version: running.version,
    })
}

#[derive(Serialize, JsonSchema)]
struct Status {
    /// The configuration version nginx answers with; `null` when it does
    /// not answer (not running, or not yet started by a change or the
    /// timer).
    serving_version: Option<u64>,
    /// The version of `nginx.conf` on disk.
    config_version: Option<u64>,
    routes: usize,
    certificates: usize,
    /// Certificates due for renewal now.
    renewals_due: Vec<String>,
    /// The argument lists `grants.process` must hold, as written.
    nginx_commands: Vec<Vec<String>>,
    /// The origin `grants.http` needs for the plugin to check nginx.
    check_origin: String,
    http_port: u16,
    https_port: u16,
}

fn status(_cx: &Context, _input: Empty) -> Result<Status, CallError> {
    let settings = Settings::load()?;
    let state = State::load()?;
    let text = files::read_string("nginx.conf")?.unwrap_or_default();
    Ok(Status {
        serving_version: nginx::served_version(&settings).ok().flatten(),
        config_version: nginx::version_of(&text),
        routes: state.routes.len(),
        certificates: state.certs.len(),
        renewals_due: state
            .certs
            .values()
            .filter(|c| is_due(c))
            .map(|c| c.domain.clone())
            .collect(),
        nginx_commands: vec![settings.master_argv(), settings.test_argv()],
        check_origin: settings.check_origin(),
        http_port: settings.http_port,
        https_port: settings.https_port,
    })
}

fn cert_issue(cx: &Context, input: DomainInput) -> Result<CertView, CallError> {
    let domain = Domain::parse(&input.domain).map_err(CallError::invalid_input)?;
    let settings = Settings::load()?;
    let mut running = nginx::ensure_running(&settings, cx)?;
    let mut state = State::load()?;
    issue(cx, &settings, &mut running, &mut state, &domain)?;
    state.apply(&settings, cx, &mut running, &[])?;
    state
        .certs
        .get(domain.as_str())
        .map(CertView::from)
        .ok_or_else(|| CallError::failed("the certificate was not recorded"))
}

fn cert_remove(cx: &Context, input: DomainInput) -> Result<Removed, CallError> {
    let domain = Domain::parse(&input.domain).map_err(CallError::invalid_input)?;
    let settings = Settings::load()?;
    let mut running = nginx::ensure_running(&settings, cx)?;
    let mut state = State::load()?;
    if state.routes.get(domain.as_str()).is_some_and(|r| r.tls) {
        return Err(CallError::invalid_input(format!(
            "`domain`: the HTTPS route {domain} uses this certificate; remove the route (route-remove) or add it again without tls first"
        )));
    }
    let removed = state.certs.remove(domain.as_str()).is_some();
    if removed {
        kv::delete(&format!("cert/{domain}"))?;
        state.apply(&settings, cx, &mut running, &[])?;
        forget_old_files(&state)?;
        log::info(&format!("certificate for {domain} removed"));
    }
    Ok(Removed {
        removed,
        config_version: running.version,
    })
}

#[derive(Serialize, JsonSchema)]
struct Certs {
    certificates: Vec<CertView>,
}

fn certs(_cx: &Context, _input: Empty) -> Result<Certs, CallError> {
    Ok(Certs {
        certificates: State::load()?.certs.values().map(CertView::from).collect(),
    })
}

#[derive(Serialize, JsonSchema)]
struct LocalCa {
    /// PEM: add it to a client's trusted roots for `.local`/`.internal`
    /// sites.
    certificate: String,
}

fn local_ca_op(_cx: &Context, _input: Empty) -> Result<LocalCa, CallError> {
    // A query writes nothing: the CA is made by the first `.local` or
    // `.internal` certificate.
    let pem = kv::get("local-ca")?.ok_or_else(|| {
        CallError::not_found(
            "no node-local CA yet: it is made with the first certificate for a .local or .internal name",
        )
    })?;
    Ok(LocalCa {
        certificate: String::from_utf8_lossy(&pem).into_owned(),
    })
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ExposeInput {
    /// Container id, id prefix or name (as the docker plugin knows it).
    container: String,
    /// The site's name.
    domain: String,
    /// Serve HTTPS (default true).
    #[serde(default = "yes")]
    tls: bool,
    /// The container's port to serve, when it publishes several.
    #[serde(default)]
    port: Option<u16>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
struct Inspected {
    ports: Vec<String>,
}

/// The host port a container publishes for `wanted` (or its first TCP
/// port), from the docker plugin's `host->container/protocol` list.
fn published_port(ports: &[String], wanted: Option<u16>) -> Option<u16> {
    ports.iter().find_map(|p| {
        let (host, rest) = p.split_once("->")?;
        let (container, protocol) = rest.split_once('/').unwrap_or((rest, "tcp"));
        let container: u16 = container.parse().ok()?;
        let host: u16 = host.rsplit(':').next()?.parse().ok()?;
        (protocol == "tcp" && wanted.is_none_or(|w| w == container)).then_some(host)
    })
}

fn expose(cx: &Context, input: ExposeInput) -> Result<RouteOutput, CallError> {
    let domain = Domain::parse(&input.domain).map_err(CallError::invalid_input)?;
    let inspect = config::get("docker_inspect")?.unwrap_or_else(|| "/node/docker/inspect".into());
    let container = env::call::<_, Inspected>(
        &inspect,
        &serde_json::json!({ "container": input.container }),
    )?
    .output;
    let port = published_port(&container.ports, input.port).ok_or_else(|| {
        CallError::invalid_input(format!(
            "`container`: {} publishes no TCP port{} (it has {:?}); create it with a published port",
            input.container,
            input.port.map(|p| format!(" for {p}")).unwrap_or_default(),
            container.ports
        ))
    })?;
    let upstream =
        Upstream::parse(&format!("http://127.0.0.1:{port}")).map_err(CallError::failed)?;
    add_route(cx, domain, upstream, input.tls)
}

#[derive(Serialize, JsonSchema)]
struct Maintained {
    config_version: u64,
    /// Domains whose certificate was renewed.
    renewed: Vec<String>,
    /// Domains whose renewal failed, with why.
    failed: Vec<String>,
}

fn maintain(cx: &Context, _input: Empty) -> Result<Maintained, CallError> {
    let settings = Settings::load()?;
    let mut running = nginx::ensure_running(&settings, cx)?;
    let mut state = State::load()?;
    let mut restored = false;
    for cert in state.certs.values() {
        restored |= restore_files(cert)?;
    }
    let due: Vec<Domain> = state
        .certs
        .values()
        .filter(|c| is_due(c))
        .filter_map(|c| Domain::parse(&c.domain).ok())
        .take(MAX_RENEWALS)
        .collect();
    let (mut renewed, mut failed) = (Vec::new(), Vec::new());
    for domain in due {
        let old = state
            .certs
            .get(domain.as_str())
            .map(|c| (c.serial.clone(), c.not_after));
        match issue(cx, &settings, &mut running, &mut state, &domain) {
            Ok(()) => {
                let new = &state.certs[domain.as_str()];
                log::info(&format!(
                    "renewed the certificate for {domain}: expires {}",
                    rfc3339(new.not_after)
                ));
                let _ = events::notify(
                    "certificate-renewed",
                    &serde_json::json!({
                        "domain": domain.as_str(),
                        "old_serial": old.as_ref().map(|o| o.0.clone()),
                        "old_not_after": old.map(|o| rfc3339(o.1)),
                        "serial": new.serial,
                        "not_after": rfc3339(new.not_after),
                        "issuer": new.issuer,
                    }),
                );
                renewed.push(domain.to_string());
            }
            Err(e) => {
                log::warn(&format!(
                    "renewing the certificate for {domain} failed: {e}"
                ));
                let _ = events::notify(
                    "certificate-renewal-failed",
                    &serde_json::json!({"domain": domain.as_str(), "error": e.to_string()}),
                );
                failed.push(format!("{domain}: {}", e.message));
            }
        }
    }
    if !renewed.is_empty() || restored {
        state.apply(&settings, cx, &mut running, &[])?;
        forget_old_files(&state)?;
    }
    Ok(Maintained {
        config_version: running.version,
        renewed,
        failed,
    })
}

struct Proxy;

impl Plugin for Proxy {
    fn operations(ops: &mut Operations) {
        ops.mutation(
            "route-add",
            "Serve `domain` from `upstream` through nginx; with `tls`, over HTTPS with a certificate issued now if there is none.",
            route_add,
        )
        .scopes(&["proxy:admin"]);
        ops.mutation("route-remove", "Stop serving a domain.", route_remove)
            .scopes(&["proxy:admin"]);
        ops.query("routes", "The routes.", routes)
            .scopes(&["proxy:read"]);
        ops.query("config", "The nginx configuration now active.", config_op)
            .scopes(&["proxy:read"]);
        ops.mutation(
            "reload",
            "Write, check and load nginx's configuration again from the routes.",
            reload,
        )
        .scopes(&["proxy:admin"]);
        ops.query(
            "status",
            "What nginx serves, what is configured, which commands to grant.",
            status,
        )
        .scopes(&["proxy:read"]);
        ops.mutation(
            "cert-issue",
            "Obtain a certificate for a domain: over ACME (HTTP-01 through nginx), or from the node-local CA for .local/.internal names.",
            cert_issue,
        )
        .scopes(&["proxy:admin"]);
        ops.mutation(
            "cert-remove",
            "Forget a certificate no HTTPS route uses (it is no longer renewed) and delete its files.",
            cert_remove,
        )
        .scopes(&["proxy:admin"]);
        ops.query("certs", "Certificates: domains, issuers, expiry.", certs)
            .scopes(&["proxy:read"]);
        ops.query(
            "local-ca",
            "The node-local CA's certificate, for clients to trust.",
            local_ca_op,
        )
        .scopes(&["proxy:read"]);
        ops.mutation(
            "expose",
            "Serve a container's published port as `domain` (HTTPS by default): looks the container up through the docker plugin, adds the route, issues the certificate.",
            expose,
        )
        .scopes(&["proxy:admin"]);
        ops.mutation(
            "maintain",
            "Start nginx if needed and renew certificates due (run by the node's timer).",
            maintain,
        )
        .scopes(&["proxy:admin"]);
    }
}

hearth_sdk::export_plugin!(Proxy);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_798_761_599), "2026-12-31T23:59:59Z");
    }

    #[test]
    fn published_ports_are_read_from_the_docker_list() {
        let ports = vec!["18001->80/tcp".to_owned(), "18002->53/udp".to_owned()];
        assert_eq!(published_port(&ports, None), Some(18001));
        assert_eq!(published_port(&ports, Some(80)), Some(18001));
        assert_eq!(published_port(&ports, Some(53)), None);
        assert_eq!(published_port(&[], None), None);
        assert_eq!(unhex(&hex(&[0, 255, 16])).unwrap(), [0, 255, 16]);
    }
}
