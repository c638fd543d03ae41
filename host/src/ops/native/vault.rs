//! `/node/vault/*`: the vault's state, unlocking and locking it, and the
//! secrets it keeps for plugins.

use hearth_registry::{CallError, ErrorCode, OpKind};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::host::IdentityInfo;
use super::{Empty, NativeOp};
use crate::call::CallContext;
use crate::capabilities::config::SecretStore;
use crate::capabilities::vault::to_call_error;
use crate::ops::Node;
use crate::vault::{Unlocked, VaultState};

/// Output of the vault operations.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct VaultStatusInfo {
    /// Absent, locked or unlocked.
    #[schemars(with = "String")]
    pub state: VaultState,
    /// The node identity.
    pub identity: IdentityInfo,
    /// The vault file.
    pub file: String,
    /// Whether the seed page is locked against swap (when unlocked).
    pub memory_locked: Option<bool>,
    /// Set by `unlock` when the vault was already unlocked (the passphrase
    /// was still checked).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub already_unlocked: bool,
}

fn status(node: &Node) -> VaultStatusInfo {
    let status = node.vault().status();
    VaultStatusInfo {
        state: status.state,
        identity: IdentityInfo::of(status.identity),
        file: status.file,
        memory_locked: status.memory_locked,
        already_unlocked: false,
    }
}

/// `/node/vault/status`.
pub struct Status;

impl NativeOp for Status {
    type Input = Empty;
    type Output = VaultStatusInfo;
    const NAMESPACE: &'static str = "vault";
    const NAME: &'static str = "status";
    const DESCRIPTION: &'static str =
        "Whether the vault is absent, locked or unlocked, and the node identity.";

    async fn run(node: &Node, _: &CallContext, _: Empty) -> Result<VaultStatusInfo, CallError> {
        Ok(status(node))
    }
}

/// Input of `/node/vault/unlock`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UnlockInput {
    /// The vault passphrase. Never logged or echoed in errors.
    pub passphrase: String,
}

/// `/node/vault/unlock`.
pub struct Unlock;

impl NativeOp for Unlock {
    type Input = UnlockInput;
    type Output = VaultStatusInfo;
    const NAMESPACE: &'static str = "vault";
    const NAME: &'static str = "unlock";
    const KIND: OpKind = OpKind::Mutation;
    const DESCRIPTION: &'static str =
        "Unlock the vault with its passphrase (checked even when already unlocked).";
    const SCOPES: &'static [&'static str] = &["vault:admin"];
    const SECRET_INPUT: bool = true;

    async fn run(
        node: &Node,
        _: &CallContext,
        input: UnlockInput,
    ) -> Result<VaultStatusInfo, CallError> {
        let passphrase = zeroize::Zeroizing::new(input.passphrase);
        let vault = node.vault().clone();
        // Argon2id takes a good fraction of a second: off the async threads.
        let outcome = tokio::task::spawn_blocking(move || vault.unlock(passphrase.as_bytes()))
            .await
            .map_err(|e| CallError::new(ErrorCode::Failed, e.to_string()))?
            .map_err(to_call_error)?;
        if outcome == Unlocked::Now {
            tracing::info!("vault unlocked");
        }
        let mut status = status(node);
        status.already_unlocked = outcome == Unlocked::AlreadyUnlocked;
        Ok(status)
    }
}

/// `/node/vault/lock`.
pub struct Lock;

impl NativeOp for Lock {
    type Input = Empty;
    type Output = VaultStatusInfo;
    const NAMESPACE: &'static str = "vault";
    const NAME: &'static str = "lock";
    const KIND: OpKind = OpKind::Mutation;
    const DESCRIPTION: &'static str = "Lock the vault: wipe the seed from memory.";
    const SCOPES: &'static [&'static str] = &["vault:admin"];

    async fn run(node: &Node, _: &CallContext, _: Empty) -> Result<VaultStatusInfo, CallError> {
        node.vault().lock().map_err(to_call_error)?;
        Ok(status(node))
    }
}

fn secrets(node: &Node) -> Result<std::sync::Arc<SecretStore>, CallError> {
    node.resources()
        .get::<SecretStore>()
        .ok_or_else(|| CallError::new(ErrorCode::Unavailable, "this node keeps no secrets"))
}

/// A secret to set.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretSetInput {
    /// Its name, as `grants.secrets` and `{ secret = "…" }` use it.
    pub name: String,
    /// Its value. Never logged or echoed in errors.
    pub value: String,
}

/// A secret's name.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretName {
    /// The name.
    pub name: String,
}

/// `/node/vault/secret-set`.
pub struct SecretSet;

impl NativeOp for SecretSet {
    type Input = SecretSetInput;
    type Output = SecretName;
    const NAMESPACE: &'static str = "vault";
    const NAME: &'static str = "secret-set";
    const KIND: OpKind = OpKind::Mutation;
    const DESCRIPTION: &'static str = "Set a secret, stored encrypted by the vault, for plugins granted it (`grants.secrets`) to read through their configuration.";
    const SCOPES: &'static [&'static str] = &["vault:admin"];
    const SECRET_INPUT: bool = true;

    async fn run(
        node: &Node,
        _: &CallContext,
        input: SecretSetInput,
    ) -> Result<SecretName, CallError> {
        let value = zeroize::Zeroizing::new(input.value);
        secrets(node)?.set(&input.name, &value).await?;
        tracing::info!(secret = %input.name, "secret set");
        Ok(SecretName { name: input.name })
    }
}

/// `/node/vault/secrets`.
pub struct SecretList;

impl NativeOp for SecretList {
    type Input = Empty;
    type Output = Vec<String>;
    const NAMESPACE: &'static str = "vault";
    const NAME: &'static str = "secrets";
    const DESCRIPTION: &'static str = "The names of the secrets set (never their values).";
    const SCOPES: &'static [&'static str] = &["vault:admin"];

    async fn run(node: &Node, _: &CallContext, _: Empty) -> Result<Vec<String>, CallError> {
        secrets(node)?.names().await
    }
}

/// `/node/vault/secret-remove`.
pub struct SecretRemove;

impl NativeOp for SecretRemove {
    type Input = SecretName;
    type Output = SecretName;
    const NAMESPACE: &'static str = "vault";
    const NAME: &'static str = "secret-remove";
    const KIND: OpKind = OpKind::Mutation;
    const DESCRIPTION: &'static str = "Remove a secret.";
    const SCOPES: &'static [&'static str] = &["vault:admin"];

    async fn run(node: &Node, _: &CallContext, input: SecretName) -> Result<SecretName, CallError> {
        if !secrets(node)?.remove(&input.name).await? {
            return Err(CallError::new(
                ErrorCode::NotFound,
                format!("no secret `{}` is set", input.name),
            ));
        }
        tracing::info!(secret = %input.name, "secret removed");
        Ok(input)
    }
}
