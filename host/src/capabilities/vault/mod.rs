//! The `vault` capability: a plugin signs and encrypts with keys derived
//! from the node's seed, by derivation path, without ever seeing a key.
//!
//! Grant: `grants.vault`, a list of derivation-path prefixes (`m/74'/1'`).
//! Manifest request: `capabilities.vault`. The node identity's branch
//! ([`IDENTITY_BRANCH`](crate::vault::IDENTITY_BRANCH)) signs the mesh's
//! TLS handshakes, so no grant reaches it, however broad.

use std::sync::Arc;

use hearth_registry::{CallError, ErrorCode};
use wasmtime::component::{HasData, Linker};

use crate::runtime::CallState;
use crate::runtime::bindings::{self, hearth::node::vault, wit};
use crate::vault::{Curve, DerivationPath, IDENTITY_BRANCH, Vault, VaultError};

/// `vault` as one call's plugin sees it.
pub struct VaultView<'a>(&'a mut CallState);

struct VaultData;

impl HasData for VaultData {
    type Data<'a> = VaultView<'a>;
}

/// Links `hearth:node/vault`.
pub fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    vault::add_to_linker::<CallState, VaultData>(linker, |state| VaultView(state))
}

/// The typed error a caller (client or plugin) sees for a vault failure.
pub fn to_call_error(err: VaultError) -> CallError {
    let code = match &err {
        VaultError::Locked => ErrorCode::Locked,
        VaultError::Absent => ErrorCode::Unavailable,
        VaultError::Exists(_) => ErrorCode::Conflict,
        VaultError::Derive(_) | VaultError::Invalid(_) => ErrorCode::InvalidInput,
        VaultError::Seal(crate::vault::sealed::SealError::WrongPassphraseOrDamaged) => {
            ErrorCode::Denied
        }
        VaultError::Seal(_) | VaultError::Io { .. } => ErrorCode::Failed,
    };
    CallError::new(code, err.to_string())
}

impl VaultView<'_> {
    /// Parses `path`, checks it is under a granted prefix and outside the
    /// identity branch, and returns the vault.
    fn granted(&self, path: &str) -> Result<(Arc<Vault>, DerivationPath), CallError> {
        let caller = self.0.caller();
        let parsed = DerivationPath::parse(path)
            .map_err(|e| CallError::new(ErrorCode::InvalidInput, e.to_string()))?;
        let reserved = DerivationPath::parse(IDENTITY_BRANCH)
            .map_err(|e| CallError::new(ErrorCode::Failed, e.to_string()))?;
        if parsed.starts_with(&reserved) {
            return Err(CallError::new(
                ErrorCode::Denied,
                format!(
                    "vault path {parsed} is under {IDENTITY_BRANCH}, the node identity, which no plugin may use; use another branch such as m/74'/1'"
                ),
            ));
        }
        let granted = caller.grants.vault.iter().any(|prefix| {
            DerivationPath::parse(prefix.as_str()).is_ok_and(|prefix| parsed.starts_with(&prefix))
        });
        if !granted {
            return Err(CallError::new(
                ErrorCode::Denied,
                format!(
                    "plugin `{}` is not granted vault path {parsed}; add a prefix of \"{parsed}\" to `grants.vault` of [plugins.{}] in stack.toml",
                    caller.plugin, caller.plugin
                ),
            ));
        }
        Ok((self.0.resource::<Vault>("the vault")?, parsed))
    }

    /// Runs `f` with the vault when `path` is granted.
    fn with<T>(
        &self,
        path: &str,
        f: impl FnOnce(&Vault, &DerivationPath) -> Result<T, VaultError>,
    ) -> wasmtime::Result<Result<T, wit::CallError>> {
        let result = self
            .granted(path)
            .and_then(|(vault, path)| f(&vault, &path).map_err(to_call_error));
        bindings::to_wit(result)
    }
}

impl vault::Host for VaultView<'_> {
    async fn public_key(
        &mut self,
        curve: vault::Curve,
        path: String,
    ) -> wasmtime::Result<Result<Vec<u8>, wit::CallError>> {
        let curve = match curve {
            vault::Curve::Ed25519 => Curve::Ed25519,
            vault::Curve::Secp256k1 => Curve::Secp256k1,
            vault::Curve::P256 => Curve::P256,
        };
        self.with(&path, |vault, path| vault.public_key(curve, path))
    }

    async fn sign_ed25519(
        &mut self,
        path: String,
        message: Vec<u8>,
    ) -> wasmtime::Result<Result<Vec<u8>, wit::CallError>> {
        self.with(&path, |vault, path| vault.sign_ed25519(path, &message))
    }

    async fn sign_secp256k1(
        &mut self,
        path: String,
        digest: Vec<u8>,
    ) -> wasmtime::Result<Result<Vec<u8>, wit::CallError>> {
        self.with(&path, |vault, path| vault.sign_secp256k1(path, &digest))
    }

    async fn sign_p256(
        &mut self,
        path: String,
        digest: Vec<u8>,
    ) -> wasmtime::Result<Result<Vec<u8>, wit::CallError>> {
        self.with(&path, |vault, path| vault.sign_p256(path, &digest))
    }

    async fn encrypt(
        &mut self,
        path: String,
        plaintext: Vec<u8>,
    ) -> wasmtime::Result<Result<Vec<u8>, wit::CallError>> {
        self.with(&path, |vault, path| vault.encrypt(path, &plaintext))
    }

    async fn decrypt(
        &mut self,
        path: String,
        envelope: Vec<u8>,
    ) -> wasmtime::Result<Result<Vec<u8>, wit::CallError>> {
        self.with(&path, |vault, path| vault.decrypt(path, &envelope))
    }
}
