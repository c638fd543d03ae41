//! The gateway's operator token: 32 random bytes, hex, in
//! `<data>/run/gateway.token` (0600), created on first start, rotated by
//! `host gateway rotate-token` with a grace for the old one. It is compared
//! in constant time and never logged.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::AccessError;

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
    pub fn rotate(path: &Path) -> Result<String, AccessError> {
        let error = |source| AccessError::Token {
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
    pub fn load_or_create(path: &Path) -> Result<Token, AccessError> {
        let error = |source| AccessError::Token {
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
    pub(super) fn matches(&self, offered: &str) -> bool {
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

pub(super) fn equal(a: &str, b: &str) -> bool {
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

pub(super) fn random_token() -> std::io::Result<String> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
