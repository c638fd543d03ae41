//! Secrets: values the operator sets with `host secret set NAME`, kept in
//! the node database encrypted under a vault key, and handed to a plugin
//! only through its configuration and only when `grants.secrets` names
//! them. Their plaintext is never stored, logged or put in an error.

use std::sync::Arc;

use hearth_registry::{CallError, ErrorCode};

use crate::capabilities::kv::KvStore;
use crate::vault::{DerivationPath, Vault, VaultError};

/// The kv namespace of secrets: not a valid plugin name, so no plugin's
/// kv reaches it.
const NAMESPACE: &str = "@secrets";
/// The vault key secrets are encrypted under; no plugin grant should
/// cover `m/74'/3'`.
const KEY_PATH: &str = "m/74'/3'/0'";
/// Longest secret, in bytes.
const MAX_SECRET: usize = 64 * 1024;

/// The node's secrets.
pub struct SecretStore {
    kv: Arc<KvStore>,
    vault: Arc<Vault>,
}

fn vault_error(err: VaultError) -> CallError {
    let code = match err {
        VaultError::Locked => ErrorCode::Locked,
        VaultError::Absent => ErrorCode::Unavailable,
        _ => ErrorCode::Failed,
    };
    CallError::new(
        code,
        match code {
            ErrorCode::Locked => {
                "the vault is locked: secrets open once it is unlocked (`host vault unlock`)"
                    .to_owned()
            }
            ErrorCode::Unavailable => {
                "this node has no vault: secrets need one (`host vault init`)".to_owned()
            }
            _ => "a secret could not be opened with the vault's key".to_owned(),
        },
    )
}

/// A secret's name: what `grants.secrets` and `{ secret = "…" }` use.
pub fn check_name(name: &str) -> Result<(), CallError> {
    if hearth_registry::is_valid_segment(name) {
        Ok(())
    } else {
        Err(CallError::new(
            ErrorCode::InvalidInput,
            "a secret's name is 1 to 64 characters of a-z, 0-9, `-` and `_`, starting with a letter or digit",
        ))
    }
}

impl SecretStore {
    /// Secrets in `kv`, encrypted by `vault`.
    pub fn new(kv: Arc<KvStore>, vault: Arc<Vault>) -> Self {
        SecretStore { kv, vault }
    }

    fn key_path() -> Result<DerivationPath, CallError> {
        DerivationPath::parse(KEY_PATH)
            .map_err(|e| CallError::new(ErrorCode::Failed, e.to_string()))
    }

    /// Sets secret `name` to `value`, encrypted.
    pub async fn set(&self, name: &str, value: &str) -> Result<(), CallError> {
        check_name(name)?;
        if value.is_empty() || value.len() > MAX_SECRET {
            return Err(CallError::new(
                ErrorCode::InvalidInput,
                format!("a secret is 1 byte to {} KiB", MAX_SECRET >> 10),
            ));
        }
        let sealed = self
            .vault
            .encrypt(&Self::key_path()?, value.as_bytes())
            .map_err(vault_error)?;
        self.kv
            .apply(NAMESPACE, vec![(name.to_owned(), Some(sealed))])
            .await
    }

    /// The value of secret `name`; `not-found` naming the command that sets it.
    pub async fn get(&self, name: &str) -> Result<String, CallError> {
        let Some(sealed) = self.kv.get(NAMESPACE, name.to_owned()).await? else {
            return Err(CallError::new(
                ErrorCode::NotFound,
                format!("secret `{name}` is not set: `host secret set {name}` sets it"),
            ));
        };
        let plain = self
            .vault
            .decrypt(&Self::key_path()?, &sealed)
            .map_err(vault_error)?;
        String::from_utf8(plain)
            .map_err(|_| CallError::new(ErrorCode::Failed, format!("secret `{name}` is not text")))
    }

    /// The names of the secrets set, in order.
    pub async fn names(&self) -> Result<Vec<String>, CallError> {
        self.kv
            .list(NAMESPACE, String::new(), crate::capabilities::kv::MAX_LIST)
            .await
    }

    /// Removes secret `name`; true when it existed.
    pub async fn remove(&self, name: &str) -> Result<bool, CallError> {
        check_name(name)?;
        let existed = self.kv.get(NAMESPACE, name.to_owned()).await?.is_some();
        self.kv
            .apply(NAMESPACE, vec![(name.to_owned(), None)])
            .await?;
        Ok(existed)
    }
}
