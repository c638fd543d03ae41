//! The gate every HTTP request passes first: loopback `Host`, allowed
//! `Origin`, no token in the query string, and the operator's bearer token.
//!
//! The token is 32 random bytes, hex, in `<data>/run/gateway.token` (0600),
//! created on first start. It is compared in constant time and never
//! logged; a refusal says what was wrong, never what was sent.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hyper::{Method, Request, StatusCode, header};

use super::GatewayError;
use crate::config::GatewayConfig;

/// How long a replaced token still works.
const ROTATION_GRACE: Duration = Duration::from_secs(60);
/// How often the token file is looked at again.
const RECHECK: Duration = Duration::from_secs(1);

/// The operator's bearer token, following rotations of its file: after
/// `host gateway rotate-token` writes a new one, the old one works for
/// another [`ROTATION_GRACE`].
pub struct Token {
    path: PathBuf,
    state: Mutex<TokenState>,
}

struct TokenState {
    current: String,
    previous: Option<(String, Instant)>,
    checked: Instant,
}

impl Token {
    /// Writes a new random token to `path` (atomically, 0600) and returns it.
    pub fn rotate(path: &Path) -> Result<String, GatewayError> {
        let error = |source| GatewayError::Token {
            path: path.to_owned(),
            source,
        };
        let token = random_token().map_err(error)?;
        let temporary = path.with_extension("token.new");
        write_private(&temporary, &token).map_err(error)?;
        std::fs::rename(&temporary, path).map_err(error)?;
        Ok(token)
    }

    /// Reads `path`, or writes a new random token there (0600).
    pub fn load_or_create(path: &Path) -> Result<Token, GatewayError> {
        let error = |source| GatewayError::Token {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent() {
            crate::config::create_private_dir(dir).map_err(error)?;
        }
        let current = match read_token(path) {
            Some(token) => {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                    .map_err(error)?;
                token
            }
            None => {
                let token = random_token().map_err(error)?;
                write_private(path, &token).map_err(error)?;
                token
            }
        };
        Ok(Token {
            path: path.to_owned(),
            state: Mutex::new(TokenState {
                current,
                previous: None,
                checked: Instant::now(),
            }),
        })
    }

    /// True when `offered` is the token (or the one it replaced less than
    /// a minute ago); constant time in its length.
    fn matches(&self, offered: &str) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.checked.elapsed() >= RECHECK {
            state.checked = Instant::now();
            if let Some(token) = read_token(&self.path)
                && token != state.current
            {
                let old = std::mem::replace(&mut state.current, token);
                state.previous = Some((old, Instant::now() + ROTATION_GRACE));
                tracing::info!("gateway token rotated; the previous one works for 60 s more");
            }
        }
        if equal(&state.current, offered) {
            return true;
        }
        match &state.previous {
            Some((old, until)) if Instant::now() < *until => equal(old, offered),
            _ => false,
        }
    }
}

fn equal(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn read_token(path: &Path) -> Option<String> {
    let token = std::fs::read_to_string(path).ok()?.trim().to_owned();
    (token.len() >= 32).then_some(token)
}

fn random_token() -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(hex::encode(bytes))
}

fn write_private(path: &Path, token: &str) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(format!("{token}\n").as_bytes())?;
    file.sync_all()
}

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
pub fn admit<B>(
    config: &GatewayConfig,
    token: &Token,
    request: &Request<B>,
) -> Result<(), Refusal> {
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
    if config.public_health && request.uri().path() == "/v1/health" {
        return Ok(());
    }
    let offered = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match offered {
        Some(offered) if token.matches(offered.trim()) => Ok(()),
        Some(_) => Err(refuse(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "the bearer token is not this node's: read it from <data dir>/run/gateway.token",
        )),
        None => Err(refuse(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "send `Authorization: Bearer <token>`; the token is in <data dir>/run/gateway.token",
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

    #[test]
    fn tokens_compare_whole_and_rotate_with_a_grace() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run").join("gateway.token");
        let token = Token::load_or_create(&path).unwrap();
        let first = read_token(&path).unwrap();
        assert!(token.matches(&first));
        assert!(!token.matches(&first[..63]));
        assert!(!token.matches(&format!("{}x", &first[..63])));
        let second = Token::rotate(&path).unwrap();
        token.state.lock().unwrap().checked -= RECHECK;
        assert!(token.matches(&second));
        assert!(
            token.matches(&first),
            "the old token works during the grace"
        );
        token.state.lock().unwrap().previous.as_mut().unwrap().1 = Instant::now();
        assert!(!token.matches(&first));
    }
}
