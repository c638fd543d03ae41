//! The gate every HTTP request passes first — loopback `Host`, allowed
//! `Origin`, no preflight, no token in the query string — and the bearer
//! token, which [`Access`] turns into an identity (the operator's token or
//! a client's session). A refusal says what was wrong, never what was sent.

use hyper::{Method, Request, StatusCode, header};

use crate::access::Access;
use crate::call::Identity;
use crate::config::GatewayConfig;

/// Why a request is turned away before it reaches the node.
pub struct Refusal {
    /// The HTTP status.
    pub status: StatusCode,
    /// The error code in the body.
    pub code: &'static str,
    /// What to fix.
    pub message: String,
}

fn refuse(status: StatusCode, code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        code,
        message: message.into(),
    }
}

/// True for `localhost`, `127.0.0.1` and `[::1]`, with or without a port.
fn loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().map(|h| format!("[{h}]"))
    } else {
        host.split(':').next().map(str::to_owned)
    };
    matches!(name.as_deref(), Some("localhost" | "127.0.0.1" | "[::1]"))
}

/// Checks a request against the gate.
pub fn admit<B>(config: &GatewayConfig, request: &Request<B>) -> Result<(), Refusal> {
    let headers = request.headers();
    // HTTP/2 carries the host in the URI's authority.
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| request.uri().authority().map(|a| a.to_string()));
    // A request without a Host (HTTP/1.0) names no other site.
    if !host.as_deref().is_none_or(loopback_host) {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "denied",
            "the Host header must be localhost, 127.0.0.1 or [::1]: the gateway serves this machine only",
        ));
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let allowed = origin
            .to_str()
            .is_ok_and(|o| config.allowed_origins.iter().any(|a| a == o));
        if !allowed {
            return Err(refuse(
                StatusCode::FORBIDDEN,
                "denied",
                "this Origin is not allowed: add it to gateway.allowed_origins (empty by default)",
            ));
        }
    }
    if request.method() == Method::OPTIONS {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "denied",
            "the gateway answers no CORS preflight",
        ));
    }
    if let Some(query) = request.uri().query() {
        let lower = query.to_ascii_lowercase();
        if ["token", "access_token", "bearer", "auth"].iter().any(|k| {
            lower
                .split('&')
                .any(|pair| pair.split('=').next() == Some(k))
        }) {
            tracing::warn!(
                path = request.uri().path(),
                "security: a gateway token was sent in a query string and refused (query strings end up in logs and histories)"
            );
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "bad-request",
                "never put a token in the URL: send `Authorization: Bearer <token>`",
            ));
        }
    }
    Ok(())
}

/// The identity behind the request's bearer token.
pub fn bearer<B>(access: &Access, request: &Request<B>) -> Result<Identity, Refusal> {
    let offered = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match offered {
        Some(offered) => access.bearer(offered.trim()).ok_or_else(|| {
            refuse(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "the bearer token is neither this node's operator token (<data dir>/run/gateway.token) nor a live session (POST /v1/auth/challenge, then /v1/auth/session)",
            )
        }),
        None => Err(refuse(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "send `Authorization: Bearer <token>`: the operator's is in <data dir>/run/gateway.token; a client gets one from POST /v1/auth/session",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_names_pass() {
        for ok in [
            "localhost",
            "localhost:7480",
            "127.0.0.1:1",
            "[::1]:7480",
            "[::1]",
        ] {
            assert!(loopback_host(ok), "{ok}");
        }
        for bad in [
            "example.com",
            "127.0.0.2",
            "localhost.evil.com",
            "[::2]:80",
            "",
        ] {
            assert!(!loopback_host(bad), "{bad}");
        }
    }
}
