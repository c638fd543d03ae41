//! Keys derived from the node's seed, used without ever being seen.
//!
//! Works only for paths under the prefixes granted in `grants.vault` of
//! this plugin's entry in `stack.toml`; fails with `locked` while the vault
//! is locked. No function returns a private key.

use crate::CallError;
use crate::bindings::hearth::node::vault as wit_vault;
pub use crate::bindings::hearth::node::vault::Curve;

/// The public key at `path` (32 bytes ed25519, 33 bytes compressed secp256k1).
pub fn public_key(curve: Curve, path: &str) -> Result<Vec<u8>, CallError> {
    wit_vault::public_key(curve, path)
}

/// An ed25519 signature (64 bytes) of `message` with the key at `path`.
pub fn sign_ed25519(path: &str, message: &[u8]) -> Result<Vec<u8>, CallError> {
    wit_vault::sign_ed25519(path, message)
}

/// A recoverable secp256k1 signature (`r || s || v`, 65 bytes) of a
/// 32-byte digest with the key at `path`.
pub fn sign_secp256k1(path: &str, digest: &[u8; 32]) -> Result<Vec<u8>, CallError> {
    wit_vault::sign_secp256k1(path, digest)
}

/// A NIST P-256 ECDSA signature (`r || s`, 64 bytes, low-s) of a 32-byte
/// digest — the SHA-256 of the message, as JWS `ES256` signs.
pub fn sign_p256(path: &str, digest: &[u8; 32]) -> Result<Vec<u8>, CallError> {
    wit_vault::sign_p256(path, digest)
}

/// Encrypts `plaintext` under the key at `path`; returns a versioned envelope.
pub fn encrypt(path: &str, plaintext: &[u8]) -> Result<Vec<u8>, CallError> {
    wit_vault::encrypt(path, plaintext)
}

/// Decrypts an envelope made by [`encrypt`] at the same path.
pub fn decrypt(path: &str, envelope: &[u8]) -> Result<Vec<u8>, CallError> {
    wit_vault::decrypt(path, envelope)
}
