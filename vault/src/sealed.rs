//! Encrypted records at rest: the vault file and backups.
//!
//! A record is JSON: a header in the clear (scheme version, kind, Argon2id
//! parameters and salt, nonce, the node's public identity) and the
//! XChaCha20-Poly1305 ciphertext. The whole header is the AEAD's associated
//! data, so changing any byte of the file makes opening it fail cleanly.
//! The scheme version lets a later scheme migrate old records.

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// The only scheme so far.
pub const SCHEME_V1: u32 = 1;
/// Bounds on Argon2 parameters read from a file, so a damaged or hostile
/// file cannot make unlocking take gigabytes or hours.
const MAX_MEMORY_KIB: u32 = 1 << 20;
const MAX_PASSES: u32 = 16;
const MAX_LANES: u32 = 16;

/// Why a record could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// Authentication failed.
    #[error("wrong passphrase, or the file was damaged or altered")]
    WrongPassphraseOrDamaged,
    /// Not a record this host understands.
    #[error("not a valid vault record: {0}")]
    Malformed(String),
    /// A scheme from a newer host.
    #[error("vault record scheme {0} is not supported by this host (it knows scheme {SCHEME_V1})")]
    UnsupportedScheme(u32),
    /// The record holds something else than expected.
    #[error("this file holds a {found} record, not a {expected} record")]
    WrongKind {
        /// What the caller wanted.
        expected: String,
        /// What the file holds.
        found: String,
    },
    /// Key derivation or encryption failed.
    #[error("cryptography failed: {0}")]
    Crypto(String),
}

/// Argon2id parameters, stored beside the ciphertext.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KdfParams {
    /// Memory, KiB.
    pub memory_kib: u32,
    /// Passes.
    pub passes: u32,
    /// Lanes.
    pub lanes: u32,
}

impl KdfParams {
    /// What `host vault init` uses: 64 MiB, 3 passes, 1 lane.
    pub const DEFAULT: KdfParams = KdfParams {
        memory_kib: 64 * 1024,
        passes: 3,
        lanes: 1,
    };

    /// Fast and weak, for unit tests only.
    #[cfg(test)]
    pub const TEST: KdfParams = KdfParams {
        memory_kib: 8,
        passes: 1,
        lanes: 1,
    };

    fn check(&self) -> Result<Params, SealError> {
        if self.memory_kib > MAX_MEMORY_KIB || self.passes > MAX_PASSES || self.lanes > MAX_LANES {
            return Err(SealError::Malformed(
                "key-derivation parameters out of range".to_owned(),
            ));
        }
        Params::new(self.memory_kib, self.passes, self.lanes, Some(32))
            .map_err(|e| SealError::Malformed(format!("key-derivation parameters: {e}")))
    }
}

/// A sealed record as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedRecord {
    /// Scheme version.
    pub scheme: u32,
    /// `seed` or `backup`.
    pub kind: String,
    /// Always `argon2id` in scheme 1.
    pub kdf: String,
    /// Its parameters.
    pub kdf_params: KdfParams,
    /// Salt, hex.
    pub salt: String,
    /// Always `xchacha20poly1305` in scheme 1.
    pub cipher: String,
    /// Nonce, hex.
    pub nonce: String,
    /// Public, non-secret data bound to the record (the node identity's
    /// public key for a seed record).
    pub public: String,
    /// Ciphertext and tag, hex.
    pub ciphertext: String,
}

fn random<const N: usize>() -> Result<[u8; N], SealError> {
    let mut bytes = [0u8; N];
    getrandom::getrandom(&mut bytes).map_err(|e| SealError::Crypto(e.to_string()))?;
    Ok(bytes)
}

fn derive_key(
    passphrase: &[u8],
    salt: &[u8],
    params: &KdfParams,
) -> Result<Zeroizing<[u8; 32]>, SealError> {
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.check()?);
    let mut key = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(passphrase, salt, key.as_mut())
        .map_err(|e| SealError::Crypto(format!("argon2: {e}")))?;
    Ok(key)
}

impl SealedRecord {
    /// The associated data: every header field, unambiguously framed.
    fn header(&self) -> Vec<u8> {
        let fields = [
            &self.scheme.to_string(),
            &self.kind,
            &self.kdf,
            &format!(
                "{}/{}/{}",
                self.kdf_params.memory_kib, self.kdf_params.passes, self.kdf_params.lanes
            ),
            &self.salt,
            &self.cipher,
            &self.nonce,
            &self.public,
        ];
        let mut out = b"hearth-sealed-record".to_vec();
        for field in fields {
            out.extend_from_slice(&(field.len() as u32).to_be_bytes());
            out.extend_from_slice(field.as_bytes());
        }
        out
    }

    /// Encrypts `plaintext` under `passphrase`.
    pub fn seal(
        kind: &str,
        plaintext: &[u8],
        passphrase: &[u8],
        params: KdfParams,
        public: &str,
    ) -> Result<Self, SealError> {
        let salt: [u8; 16] = random()?;
        let nonce: [u8; 24] = random()?;
        let mut record = SealedRecord {
            scheme: SCHEME_V1,
            kind: kind.to_owned(),
            kdf: "argon2id".to_owned(),
            kdf_params: params,
            salt: hex::encode(salt),
            cipher: "xchacha20poly1305".to_owned(),
            nonce: hex::encode(nonce),
            public: public.to_owned(),
            ciphertext: String::new(),
        };
        let key = derive_key(passphrase, &salt, &params)?;
        let cipher = XChaCha20Poly1305::new(key.as_ref().into());
        let aad = record.header();
        let ciphertext = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|e| SealError::Crypto(e.to_string()))?;
        record.ciphertext = hex::encode(ciphertext);
        Ok(record)
    }

    /// Decrypts with `passphrase`, checking the kind.
    pub fn open(
        &self,
        expected_kind: &str,
        passphrase: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, SealError> {
        if self.scheme != SCHEME_V1 {
            return Err(SealError::UnsupportedScheme(self.scheme));
        }
        if self.kdf != "argon2id" || self.cipher != "xchacha20poly1305" {
            return Err(SealError::Malformed(format!(
                "unknown algorithms {}/{}",
                self.kdf, self.cipher
            )));
        }
        if self.kind != expected_kind {
            return Err(SealError::WrongKind {
                expected: expected_kind.to_owned(),
                found: self.kind.clone(),
            });
        }
        let bad = |what: &str| {
            SealError::Malformed(format!("{what} is not valid hex of the right length"))
        };
        let salt = hex::decode(&self.salt).map_err(|_| bad("salt"))?;
        let nonce = hex::decode(&self.nonce).map_err(|_| bad("nonce"))?;
        let ciphertext = hex::decode(&self.ciphertext).map_err(|_| bad("ciphertext"))?;
        if salt.len() < 16 || nonce.len() != 24 || ciphertext.len() < 16 {
            return Err(bad("salt, nonce or ciphertext"));
        }
        let key = derive_key(passphrase, &salt, &self.kdf_params)?;
        let cipher = XChaCha20Poly1305::new(key.as_ref().into());
        let aad = self.header();
        let plaintext = cipher
            .decrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::WrongPassphraseOrDamaged)?;
        Ok(Zeroizing::new(plaintext))
    }

    /// Parses a record file's bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SealError> {
        serde_json::from_slice(bytes).map_err(|e| SealError::Malformed(e.to_string()))
    }

    /// The record as file bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_a_wrong_passphrase() {
        let record =
            SealedRecord::seal("seed", b"secret seed", b"pass", KdfParams::TEST, "pub").unwrap();
        assert_eq!(&record.open("seed", b"pass").unwrap()[..], b"secret seed");
        assert!(matches!(
            record.open("seed", b"wrong"),
            Err(SealError::WrongPassphraseOrDamaged)
        ));
        assert!(matches!(
            record.open("backup", b"pass"),
            Err(SealError::WrongKind { .. })
        ));
        let bytes = record.to_bytes();
        assert!(!String::from_utf8_lossy(&bytes).contains("secret seed"));
    }

    #[test]
    fn every_single_byte_corruption_is_a_clean_error() {
        let record =
            SealedRecord::seal("seed", &[7u8; 64], b"pass", KdfParams::TEST, "ab").unwrap();
        let bytes = record.to_bytes();
        for i in 0..bytes.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut damaged = bytes.clone();
                damaged[i] ^= flip;
                let opened =
                    SealedRecord::from_bytes(&damaged).and_then(|r| r.open("seed", b"pass"));
                // JSON may ignore a change in whitespace; anything that
                // still opens must give back exactly the original secret.
                if let Ok(secret) = opened {
                    assert_eq!(&secret[..], &[7u8; 64], "byte {i} ^ {flip:#x}");
                    assert!(
                        damaged[i].is_ascii_whitespace() || bytes[i].is_ascii_whitespace(),
                        "byte {i}"
                    );
                }
            }
        }
    }

    #[test]
    fn hostile_parameters_are_refused_before_any_work() {
        let mut record = SealedRecord::seal("seed", b"x", b"p", KdfParams::TEST, "").unwrap();
        record.kdf_params.memory_kib = u32::MAX;
        assert!(matches!(
            record.open("seed", b"p"),
            Err(SealError::Malformed(_))
        ));
        record.kdf_params = KdfParams::TEST;
        record.scheme = 2;
        assert!(matches!(
            record.open("seed", b"p"),
            Err(SealError::UnsupportedScheme(2))
        ));
    }
}
