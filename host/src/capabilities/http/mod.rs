//! The `http` capability: `wasi:http/outgoing-handler`, within
//! `grants.http`.
//!
//! Plugins send requests through the standard WASI interface (the SDK's
//! [`http`](../../../hearth_sdk/http/index.html) client, `wstd`, `waki` or
//! any other), so existing libraries work unchanged. Every request is
//! decided here before a byte leaves the node:
//!
//! - its origin (`scheme://host:port`) must match an origin in the
//!   plugin's `grants.http`, or it fails with `HTTP-request-denied` (the
//!   node's log names the line to add to `stack.toml`);
//! - the host name is resolved here, and if any address it resolves to is
//!   loopback, private or link-local, the request is refused
//!   (`destination-IP-prohibited`) unless the grant that matched names the
//!   host exactly; the connection then goes to an address that was checked,
//!   so a second resolution cannot point it elsewhere;
//! - connect, first-byte and between-bytes timeouts are cut to what is left
//!   of the call's deadline;
//! - HTTPS verifies against the web PKI roots, and the CA files of the
//!   plugin's `grants.http_roots` (a private ACME server, an internal API).
//!
//! Raw sockets (`wasi:sockets`) stay unlinked: the runtime's WASI context
//! grants no network.

mod send;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use hearth_registry::{GrantSet, Scheme, is_internal_address};
use wasmtime::component::Linker;
use wasmtime_wasi_http::{
    Error, RequestOptions, WasiBody, WasiHttpCtxView, WasiHttpHooks, WasiHttpView,
};

use crate::runtime::{CallState, OutboundHttp};

/// Links `wasi:http/outgoing-handler` and `wasi:http/types`.
pub fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(linker)
}

impl WasiHttpView for CallState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        let (ctx, table, hooks) = self.http_parts();
        WasiHttpCtxView { ctx, table, hooks }
    }
}

/// The future `send_request` returns: the response, and the connection's
/// I/O to drive while its body is read.
type Sending = Box<
    dyn Future<
            Output = wasmtime_wasi_http::Result<(
                http::Response<WasiBody>,
                Box<dyn Future<Output = Result<(), Error>> + Send>,
            )>,
        > + Send,
>;

impl WasiHttpHooks for OutboundHttp {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _request_body_result: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Sending {
        let plugin = self.plugin.clone();
        let grants = self.grants.clone();
        let deadline = self.deadline;
        Box::new(async move {
            let target = decide(&plugin, &grants, request.uri()).await?;
            let options = within_deadline(options, deadline);
            tokio::time::timeout_at(deadline.into(), send::send(request, options, target))
                .await
                .map_err(|_| Error::ConnectionTimeout)?
        })
    }
}

/// Where a granted request goes: the checked addresses, and the name TLS
/// verifies.
pub(crate) struct Target {
    addrs: Vec<SocketAddr>,
    tls_name: Option<String>,
    /// CA files trusted besides the web PKI (`grants.http_roots`).
    roots: Vec<std::path::PathBuf>,
}

/// Checks the request's origin against the grant, resolves its host and
/// checks the addresses; logs why when it refuses.
async fn decide(plugin: &str, grants: &GrantSet, uri: &http::Uri) -> Result<Target, Error> {
    let scheme = uri
        .scheme_str()
        .and_then(Scheme::parse)
        .ok_or(Error::HttpProtocolError)?;
    let host = uri
        .host()
        .ok_or(Error::HttpRequestUriInvalid)?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let port = uri.port_u16().unwrap_or(scheme.default_port());
    let origin = if host.contains(':') {
        format!("{}://[{host}]:{port}", scheme.as_str())
    } else if port == scheme.default_port() {
        format!("{}://{host}", scheme.as_str())
    } else {
        format!("{}://{host}:{port}", scheme.as_str())
    };
    let Some(grant) = grants.http_grant_for(scheme, &host, port) else {
        tracing::warn!(
            plugin,
            origin = %origin,
            hint = %GrantSet::http_grant_hint(plugin, &origin),
            "outbound HTTP denied: origin not granted"
        );
        return Err(Error::HttpRequestDenied);
    };
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|_| Error::DnsError {
                rcode: None,
                info_code: None,
            })?
            .collect(),
    };
    if addrs.is_empty() {
        return Err(Error::DestinationNotFound);
    }
    if !grant.names_host_exactly()
        && let Some(internal) = addrs.iter().find(|a| is_internal_address(a.ip()))
    {
        tracing::warn!(
            plugin,
            origin = %origin,
            address = %internal.ip(),
            grant = %grant,
            hint = %GrantSet::http_grant_hint(plugin, &origin),
            "outbound HTTP denied: the host resolves to a loopback, private or link-local address, which only a grant naming it exactly allows"
        );
        return Err(Error::DestinationIpProhibited);
    }
    Ok(Target {
        addrs,
        tls_name: (scheme == Scheme::Https).then_some(host),
        roots: grants.http_roots.clone(),
    })
}

/// The request's timeouts, none longer than what is left of the call.
fn within_deadline(options: Option<RequestOptions>, deadline: Instant) -> RequestOptions {
    let left = deadline.saturating_duration_since(Instant::now());
    let cut = |asked: Option<Duration>| Some(asked.map_or(left, |a| a.min(left)));
    let options = options.unwrap_or_default();
    RequestOptions {
        connect_timeout: cut(options.connect_timeout),
        first_byte_timeout: cut(options.first_byte_timeout),
        between_bytes_timeout: cut(options.between_bytes_timeout),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants(origins: &[&str]) -> GrantSet {
        GrantSet {
            http: origins.iter().map(|o| o.parse().unwrap()).collect(),
            ..GrantSet::default()
        }
    }

    async fn decide_url(grant: &[&str], url: &str) -> Result<Target, Error> {
        decide("p", &grants(grant), &url.parse().unwrap()).await
    }

    #[tokio::test]
    async fn a_request_outside_the_grant_is_denied() {
        let result = decide_url(&["https://api.example.com"], "https://evil.example.com/").await;
        assert!(matches!(result, Err(Error::HttpRequestDenied)));
        let result = decide_url(&["https://api.example.com"], "http://api.example.com/").await;
        assert!(matches!(result, Err(Error::HttpRequestDenied)));
    }

    #[tokio::test]
    async fn loopback_needs_a_grant_naming_it() {
        let result = decide_url(&["http://*:4010"], "http://127.0.0.1:4010/x").await;
        assert!(matches!(result, Err(Error::DestinationIpProhibited)));
        let result = decide_url(&["http://*:4010"], "http://localhost:4010/x").await;
        assert!(matches!(result, Err(Error::DestinationIpProhibited)));
        let result = decide_url(&["http://*:*"], "http://[::1]:4010/x").await;
        assert!(matches!(result, Err(Error::DestinationIpProhibited)));
        let target = decide_url(
            &["http://*:4010", "http://127.0.0.1:4010"],
            "http://127.0.0.1:4010/x",
        )
        .await
        .unwrap();
        assert_eq!(target.addrs, vec!["127.0.0.1:4010".parse().unwrap()]);
        assert!(target.tls_name.is_none());
    }

    #[test]
    fn timeouts_never_outlast_the_deadline() {
        let deadline = Instant::now() + Duration::from_millis(200);
        let options = within_deadline(
            Some(RequestOptions {
                connect_timeout: Some(Duration::from_secs(60)),
                first_byte_timeout: Some(Duration::from_millis(5)),
                between_bytes_timeout: None,
            }),
            deadline,
        );
        assert!(options.connect_timeout.unwrap() <= Duration::from_millis(200));
        assert_eq!(options.first_byte_timeout, Some(Duration::from_millis(5)));
        assert!(options.between_bytes_timeout.unwrap() <= Duration::from_millis(200));
    }
}
