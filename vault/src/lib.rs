//! The vault: the node's BIP39 seed, sealed at rest, held in protected
//! memory while unlocked, and every key derived from it on demand.
//!
//! Owns the vault file (`<data>/vault.json`, 0600), the lock state and all
//! signing and encryption. Nothing outside this module sees the seed or a
//! private key: callers get public keys, signatures and envelopes. Derived
//! keys live only for the one operation that needs them and are zeroized
//! after it; `lock` wipes the seed.
//!
//! Without a vault file the node runs with an ephemeral identity, a random
//! key kept in protected memory for the life of the process.
//!
//! A crate of its own so the vault file's decoder can be fuzzed and the
//! key handling reviewed without the plugin runtime; it knows nothing of
//! wasm, sockets or plugins.

pub mod derive;
pub mod sealed;
mod secret;

use std::path::{Path, PathBuf};
use std::sync::RwLock;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use ed25519_dalek::{Signer, SigningKey};
use serde::Serialize;
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

pub use derive::{DerivationPath, DeriveError};
pub use sealed::{KdfParams, SealError, SealedRecord};
use secret::SecretBytes;

/// The node identity's derivation path.
pub const IDENTITY_PATH: &str = "m/74'/0'/0'/0'";
/// The branch the node identity lives under; reserved to the host.
pub const IDENTITY_BRANCH: &str = "m/74'/0'";
/// Kind of the vault file's record.
pub const SEED_KIND: &str = "seed";
/// Version byte of encryption envelopes.
const ENVELOPE_V1: u8 = 1;

/// Why a vault operation failed.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The vault is locked.
    #[error("the vault is locked; unlock it with `host vault unlock`")]
    Locked,
    /// There is no vault.
    #[error("this node has no vault; create one with `host vault init`")]
    Absent,
    /// A vault already exists.
    #[error("a vault already exists at {0}; back it up and move it away first")]
    Exists(PathBuf),
    /// Sealing or opening failed.
    #[error(transparent)]
    Seal(#[from] SealError),
    /// A path or derivation problem.
    #[error(transparent)]
    Derive(#[from] DeriveError),
    /// Bad input to an operation.
    #[error("{0}")]
    Invalid(String),
    /// File system trouble.
    #[error("vault file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// Curves keys can be derived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    /// SLIP-0010 ed25519.
    Ed25519,
    /// BIP32 secp256k1.
    Secp256k1,
    /// SLIP-0010 NIST P-256 (for ES256: ACME accounts, WebAuthn-style keys).
    P256,
}

/// ECDSA here signs 32-byte digests only (a hash the caller made).
fn check_digest(digest: &[u8]) -> Result<(), VaultError> {
    if digest.len() != 32 {
        return Err(VaultError::Invalid(format!(
            "the digest must be 32 bytes, not {}",
            digest.len()
        )));
    }
    Ok(())
}

/// The node's public identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeIdentity {
    /// ed25519 public key, hex.
    pub public_key: String,
    /// `sha256:` and the first 16 bytes of SHA-256 of the key, hex.
    pub fingerprint: String,
    /// True when random for this process (no vault).
    pub ephemeral: bool,
    /// The derivation path (`m/74'/0'/0'/0'`), or none when ephemeral.
    pub path: Option<String>,
}

/// What a successful [`Vault::unlock`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unlocked {
    /// The vault was locked and is now unlocked.
    Now,
    /// The vault was already unlocked; the passphrase was right.
    AlreadyUnlocked,
}

/// Whether the vault exists and holds its seed in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VaultState {
    /// No vault file: the node runs with an ephemeral identity.
    Absent,
    /// A vault file exists; the seed is not in memory.
    Locked,
    /// The seed is in memory: keys can be derived.
    Unlocked,
}

impl VaultState {
    /// The state's name, as `host vault status` prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            VaultState::Absent => "absent",
            VaultState::Locked => "locked",
            VaultState::Unlocked => "unlocked",
        }
    }
}

/// Status for `host vault status`.
#[derive(Debug, Clone, Serialize)]
pub struct VaultStatus {
    /// Absent, locked or unlocked.
    pub state: VaultState,
    /// The node identity.
    pub identity: NodeIdentity,
    /// The vault file.
    pub file: String,
    /// Whether the seed page is locked against swap (when unlocked).
    pub memory_locked: Option<bool>,
}

enum State {
    Absent {
        ephemeral: SecretBytes,
    },
    Locked {
        record: SealedRecord,
    },
    Unlocked {
        record: SealedRecord,
        seed: SecretBytes,
    },
}

/// The vault of one node.
pub struct Vault {
    file: PathBuf,
    state: RwLock<State>,
}

/// `sha256:` + 16 bytes of SHA-256 of `public`, hex.
pub fn fingerprint(public: &[u8]) -> String {
    format!("sha256:{}", hex::encode(&Sha256::digest(public)[..16]))
}

fn identity_from_seed(seed: &[u8]) -> Result<[u8; 32], VaultError> {
    let path = DerivationPath::parse(IDENTITY_PATH)?;
    let key = derive::ed25519(seed, &path)?;
    Ok(SigningKey::from_bytes(&key.key).verifying_key().to_bytes())
}

/// Writes `bytes` to `path` atomically with mode 0600.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), VaultError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| VaultError::Io {
        path: path.to_owned(),
        source,
    };
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    if let Some(dir) = path.parent() {
        // Make the rename itself durable.
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
}

/// A freshly generated or imported mnemonic and the vault record sealing
/// its seed. The caller shows the words once and drops this.
pub struct NewVault {
    /// The words, to show once.
    pub mnemonic: Zeroizing<String>,
    /// The record to store.
    pub record: SealedRecord,
    /// The identity it yields.
    pub identity: NodeIdentity,
}

/// Creates a vault record from `mnemonic` (or new entropy of `words` words).
pub fn create(
    mnemonic: Option<&str>,
    words: usize,
    passphrase: &[u8],
    params: KdfParams,
) -> Result<NewVault, VaultError> {
    let mnemonic = match mnemonic {
        Some(text) => bip39::Mnemonic::parse_normalized(text.trim())
            .map_err(|e| VaultError::Invalid(format!("not a valid BIP39 mnemonic: {e}")))?,
        None => {
            let bytes = match words {
                12 => 16,
                15 => 20,
                18 => 24,
                21 => 28,
                24 => 32,
                _ => {
                    return Err(VaultError::Invalid(
                        "--words must be 12, 15, 18, 21 or 24".to_owned(),
                    ));
                }
            };
            let mut entropy = Zeroizing::new([0u8; 32]);
            getrandom::getrandom(&mut entropy[..bytes])
                .map_err(|e| VaultError::Invalid(format!("no randomness: {e}")))?;
            bip39::Mnemonic::from_entropy(&entropy[..bytes])
                .map_err(|e| VaultError::Invalid(e.to_string()))?
        }
    };
    let seed = Zeroizing::new(mnemonic.to_seed(""));
    let public = identity_from_seed(seed.as_ref())?;
    let record = SealedRecord::seal(
        SEED_KIND,
        seed.as_ref(),
        passphrase,
        params,
        &hex::encode(public),
    )?;
    Ok(NewVault {
        mnemonic: Zeroizing::new(mnemonic.to_string()),
        record,
        identity: NodeIdentity {
            public_key: hex::encode(public),
            fingerprint: fingerprint(&public),
            ephemeral: false,
            path: Some(IDENTITY_PATH.to_owned()),
        },
    })
}

/// Stores `record` as the vault file at `file`; refuses to replace one.
pub fn store(file: &Path, record: &SealedRecord) -> Result<(), VaultError> {
    if file.exists() {
        return Err(VaultError::Exists(file.to_owned()));
    }
    write_private(file, &record.to_bytes())
}

/// Reads the vault record at `file`.
pub fn read_record(file: &Path) -> Result<SealedRecord, VaultError> {
    let bytes = std::fs::read(file).map_err(|source| VaultError::Io {
        path: file.to_owned(),
        source,
    })?;
    Ok(SealedRecord::from_bytes(&bytes)?)
}

impl Vault {
    /// Opens the vault of a node whose file is `file`: locked when the file
    /// exists, otherwise absent with a fresh ephemeral identity.
    pub fn open(file: PathBuf) -> Result<Self, VaultError> {
        let state = if file.exists() {
            State::Locked {
                record: read_record(&file)?,
            }
        } else {
            let mut key = Zeroizing::new([0u8; 32]);
            getrandom::getrandom(key.as_mut())
                .map_err(|e| VaultError::Invalid(format!("no randomness: {e}")))?;
            State::Absent {
                ephemeral: SecretBytes::new(key.as_ref()),
            }
        };
        Ok(Vault {
            file,
            state: RwLock::new(state),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Unlocks with `passphrase` (runs Argon2id: call off the async threads).
    ///
    /// The passphrase is checked even when the vault is already unlocked,
    /// so a wrong one is always an error; the answer says which case it was.
    pub fn unlock(&self, passphrase: &[u8]) -> Result<Unlocked, VaultError> {
        let (record, already) = match &*self.read() {
            State::Absent { .. } => return Err(VaultError::Absent),
            State::Unlocked { record, .. } => (record.clone(), true),
            State::Locked { record } => (record.clone(), false),
        };
        let seed = record.open(SEED_KIND, passphrase)?;
        if already {
            return Ok(Unlocked::AlreadyUnlocked);
        }
        if seed.len() != 64 {
            return Err(VaultError::Seal(SealError::Malformed(
                "the seed record holds the wrong length".to_owned(),
            )));
        }
        let seed = SecretBytes::new(&seed);
        let mut state = self.write();
        // Another unlock may have won the race while Argon2id ran.
        if matches!(&*state, State::Unlocked { .. }) {
            return Ok(Unlocked::AlreadyUnlocked);
        }
        *state = State::Unlocked { record, seed };
        Ok(Unlocked::Now)
    }

    /// Wipes the seed; a no-op unless unlocked.
    pub fn lock(&self) -> Result<(), VaultError> {
        let mut state = self.write();
        match &*state {
            State::Absent { .. } => Err(VaultError::Absent),
            State::Locked { .. } => Ok(()),
            State::Unlocked { record, .. } => {
                // Dropping the old state zeroizes and unlocks the seed page.
                *state = State::Locked {
                    record: record.clone(),
                };
                Ok(())
            }
        }
    }

    /// The node's identity.
    pub fn identity(&self) -> NodeIdentity {
        match &*self.read() {
            State::Absent { ephemeral } => {
                let public = SigningKey::from_bytes(&array32(ephemeral.expose()))
                    .verifying_key()
                    .to_bytes();
                NodeIdentity {
                    public_key: hex::encode(public),
                    fingerprint: fingerprint(&public),
                    ephemeral: true,
                    path: None,
                }
            }
            State::Locked { record } | State::Unlocked { record, .. } => {
                let public = hex::decode(&record.public).unwrap_or_default();
                NodeIdentity {
                    public_key: record.public.clone(),
                    fingerprint: fingerprint(&public),
                    ephemeral: false,
                    path: Some(IDENTITY_PATH.to_owned()),
                }
            }
        }
    }

    /// True while a vault exists and is locked (nothing can be signed).
    pub fn is_locked(&self) -> bool {
        matches!(&*self.read(), State::Locked { .. })
    }

    /// `absent`, `locked` or `unlocked`, with the identity.
    pub fn status(&self) -> VaultStatus {
        let identity = self.identity();
        let (state, memory_locked) = match &*self.read() {
            State::Absent { .. } => (VaultState::Absent, None),
            State::Locked { .. } => (VaultState::Locked, None),
            State::Unlocked { seed, .. } => (VaultState::Unlocked, Some(seed.is_locked())),
        };
        VaultStatus {
            state,
            identity,
            file: self.file.display().to_string(),
            memory_locked,
        }
    }

    /// Runs `f` with the seed, or fails with `locked` / `absent`.
    fn with_seed<T>(
        &self,
        f: impl FnOnce(&[u8]) -> Result<T, VaultError>,
    ) -> Result<T, VaultError> {
        match &*self.read() {
            State::Unlocked { seed, .. } => f(seed.expose()),
            State::Locked { .. } => Err(VaultError::Locked),
            State::Absent { .. } => Err(VaultError::Absent),
        }
    }

    /// The public key at `path` (ed25519: 32 bytes; secp256k1 and P-256:
    /// 33 bytes, compressed).
    pub fn public_key(&self, curve: Curve, path: &DerivationPath) -> Result<Vec<u8>, VaultError> {
        self.with_seed(|seed| match curve {
            Curve::Ed25519 => {
                let key = derive::ed25519(seed, path)?;
                Ok(SigningKey::from_bytes(&key.key)
                    .verifying_key()
                    .to_bytes()
                    .to_vec())
            }
            Curve::Secp256k1 => {
                let key = derive::secp256k1(seed, path)?;
                let secret = k256::SecretKey::from_slice(&key.key)
                    .map_err(|_| VaultError::Invalid("invalid derived key".to_owned()))?;
                Ok(
                    k256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(
                        &secret.public_key(),
                        true,
                    )
                    .as_bytes()
                    .to_vec(),
                )
            }
            Curve::P256 => {
                let key = derive::p256(seed, path)?;
                let secret = p256::SecretKey::from_slice(&key.key)
                    .map_err(|_| VaultError::Invalid("invalid derived key".to_owned()))?;
                Ok(
                    p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(
                        &secret.public_key(),
                        true,
                    )
                    .as_bytes()
                    .to_vec(),
                )
            }
        })
    }

    /// A NIST P-256 ECDSA signature of a 32-byte `digest` (SHA-256 of the
    /// message, as ES256 signs): `r || s`, 64 bytes, low-s.
    pub fn sign_p256(&self, path: &DerivationPath, digest: &[u8]) -> Result<Vec<u8>, VaultError> {
        check_digest(digest)?;
        self.with_seed(|seed| {
            use p256::ecdsa::signature::hazmat::PrehashSigner;
            let key = derive::p256(seed, path)?;
            let signing = p256::ecdsa::SigningKey::from_slice(&key.key)
                .map_err(|_| VaultError::Invalid("invalid derived key".to_owned()))?;
            let signature: p256::ecdsa::Signature = signing
                .sign_prehash(digest)
                .map_err(|e| VaultError::Invalid(format!("signing failed: {e}")))?;
            let signature = signature.normalize_s().unwrap_or(signature);
            Ok(signature.to_bytes().to_vec())
        })
    }

    /// An ed25519 signature (64 bytes) of `message` with the key at `path`.
    pub fn sign_ed25519(
        &self,
        path: &DerivationPath,
        message: &[u8],
    ) -> Result<Vec<u8>, VaultError> {
        self.with_seed(|seed| {
            let key = derive::ed25519(seed, path)?;
            let signing = SigningKey::from_bytes(&key.key);
            Ok(signing.sign(message).to_bytes().to_vec())
        })
    }

    /// A recoverable secp256k1 ECDSA signature of a 32-byte `digest`:
    /// `r || s || v` (65 bytes, low-s, `v` the recovery id 0 or 1).
    pub fn sign_secp256k1(
        &self,
        path: &DerivationPath,
        digest: &[u8],
    ) -> Result<Vec<u8>, VaultError> {
        check_digest(digest)?;
        self.with_seed(|seed| {
            let key = derive::secp256k1(seed, path)?;
            let signing = k256::ecdsa::SigningKey::from_slice(&key.key)
                .map_err(|_| VaultError::Invalid("invalid derived key".to_owned()))?;
            let (signature, recovery) = signing
                .sign_prehash_recoverable(digest)
                .map_err(|e| VaultError::Invalid(format!("signing failed: {e}")))?;
            let mut out = signature.to_bytes().to_vec();
            out.push(recovery.to_byte());
            Ok(out)
        })
    }

    fn envelope_cipher(
        seed: &[u8],
        path: &DerivationPath,
    ) -> Result<XChaCha20Poly1305, VaultError> {
        let key = derive::ed25519(seed, path)?;
        let mut hasher = Sha256::new();
        hasher.update(b"hearth-vault-envelope-key-v1");
        hasher.update(key.key);
        let mut symmetric: [u8; 32] = hasher.finalize().into();
        let cipher = XChaCha20Poly1305::new((&symmetric).into());
        symmetric.zeroize();
        Ok(cipher)
    }

    fn envelope_aad(path: &DerivationPath) -> Vec<u8> {
        let mut aad = b"hearth-vault-envelope-v1:".to_vec();
        aad.extend_from_slice(path.to_string().as_bytes());
        aad
    }

    /// Encrypts `plaintext` under the key derived at `path`; the envelope is
    /// `1 || nonce (24) || ciphertext+tag`.
    pub fn encrypt(&self, path: &DerivationPath, plaintext: &[u8]) -> Result<Vec<u8>, VaultError> {
        self.with_seed(|seed| {
            let cipher = Self::envelope_cipher(seed, path)?;
            let mut nonce = [0u8; 24];
            getrandom::getrandom(&mut nonce)
                .map_err(|e| VaultError::Invalid(format!("no randomness: {e}")))?;
            let aad = Self::envelope_aad(path);
            let ciphertext = cipher
                .encrypt(
                    XNonce::from_slice(&nonce),
                    Payload {
                        msg: plaintext,
                        aad: &aad,
                    },
                )
                .map_err(|_| VaultError::Invalid("encryption failed".to_owned()))?;
            let mut envelope = Vec::with_capacity(1 + 24 + ciphertext.len());
            envelope.push(ENVELOPE_V1);
            envelope.extend_from_slice(&nonce);
            envelope.extend_from_slice(&ciphertext);
            Ok(envelope)
        })
    }

    /// Decrypts an envelope made by [`Vault::encrypt`] at the same path.
    pub fn decrypt(&self, path: &DerivationPath, envelope: &[u8]) -> Result<Vec<u8>, VaultError> {
        if envelope.len() < 1 + 24 + 16 {
            return Err(VaultError::Invalid("the envelope is too short".to_owned()));
        }
        if envelope[0] != ENVELOPE_V1 {
            return Err(VaultError::Invalid(format!(
                "envelope version {} is not supported",
                envelope[0]
            )));
        }
        self.with_seed(|seed| {
            let cipher = Self::envelope_cipher(seed, path)?;
            let aad = Self::envelope_aad(path);
            cipher
                .decrypt(
                    XNonce::from_slice(&envelope[1..25]),
                    Payload {
                        msg: &envelope[25..],
                        aad: &aad,
                    },
                )
                .map_err(|_| {
                    VaultError::Invalid(
                        "the envelope does not decrypt under this path (wrong path, or damaged)"
                            .to_owned(),
                    )
                })
        })
    }

    /// Signs with the node identity (the ephemeral key when there is no vault).
    pub fn sign_as_node(&self, message: &[u8]) -> Result<Vec<u8>, VaultError> {
        if let State::Absent { ephemeral } = &*self.read() {
            let signing = SigningKey::from_bytes(&array32(ephemeral.expose()));
            return Ok(signing.sign(message).to_bytes().to_vec());
        }
        self.sign_ed25519(&DerivationPath::parse(IDENTITY_PATH)?, message)
    }
}

fn array32(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let n = bytes.len().min(32);
    out[..n].copy_from_slice(&bytes[..n]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unlocked(dir: &Path) -> (Vault, NewVault) {
        let file = dir.join("vault.json");
        let new = create(None, 24, b"pass", KdfParams::TEST).unwrap();
        store(&file, &new.record).unwrap();
        let vault = Vault::open(file).unwrap();
        vault.unlock(b"pass").unwrap();
        (vault, new)
    }

    #[test]
    fn lifecycle_locked_unlocked_and_identity() {
        let dir = tempfile::tempdir().unwrap();
        let (vault, new) = unlocked(dir.path());
        assert_eq!(new.mnemonic.split(' ').count(), 24);
        assert_eq!(vault.status().state, VaultState::Unlocked);
        assert_eq!(vault.identity(), new.identity);
        let path = DerivationPath::parse(IDENTITY_PATH).unwrap();
        let public = vault.public_key(Curve::Ed25519, &path).unwrap();
        assert_eq!(hex::encode(&public), new.identity.public_key);

        vault.lock().unwrap();
        assert_eq!(vault.status().state, VaultState::Locked);
        assert!(matches!(
            vault.sign_ed25519(&path, b"m"),
            Err(VaultError::Locked)
        ));
        assert_eq!(
            vault.identity(),
            new.identity,
            "identity known while locked"
        );
        assert!(matches!(
            vault.unlock(b"wrong"),
            Err(VaultError::Seal(SealError::WrongPassphraseOrDamaged))
        ));
        assert_eq!(vault.unlock(b"pass").unwrap(), Unlocked::Now);
        // Unlocking again still checks the passphrase.
        assert!(matches!(
            vault.unlock(b"wrong"),
            Err(VaultError::Seal(SealError::WrongPassphraseOrDamaged))
        ));
        assert_eq!(vault.unlock(b"pass").unwrap(), Unlocked::AlreadyUnlocked);
        assert!(
            store(&dir.path().join("vault.json"), &new.record).is_err(),
            "never replaced"
        );
    }

    #[test]
    fn signatures_verify_with_public_keys() {
        use ed25519_dalek::Verifier;
        let dir = tempfile::tempdir().unwrap();
        let (vault, _) = unlocked(dir.path());
        let path = DerivationPath::parse("m/74'/1'/0'").unwrap();
        let sig = vault.sign_ed25519(&path, b"hello").unwrap();
        let public = vault.public_key(Curve::Ed25519, &path).unwrap();
        let key = ed25519_dalek::VerifyingKey::from_bytes(&array32(&public)).unwrap();
        key.verify(
            b"hello",
            &ed25519_dalek::Signature::from_slice(&sig).unwrap(),
        )
        .unwrap();

        let path = DerivationPath::parse("m/44'/60'/0'/0/0").unwrap();
        let digest = Sha256::digest(b"tx");
        let sig = vault.sign_secp256k1(&path, &digest).unwrap();
        assert_eq!(sig.len(), 65);
        let signature = k256::ecdsa::Signature::from_slice(&sig[..64]).unwrap();
        let recovery = k256::ecdsa::RecoveryId::from_byte(sig[64]).unwrap();
        let recovered =
            k256::ecdsa::VerifyingKey::recover_from_prehash(&digest, &signature, recovery).unwrap();
        assert_eq!(
            recovered.to_encoded_point(true).as_bytes(),
            &vault.public_key(Curve::Secp256k1, &path).unwrap()[..]
        );
        assert!(vault.sign_secp256k1(&path, b"short").is_err());

        use p256::ecdsa::signature::hazmat::PrehashVerifier;
        let path = DerivationPath::parse("m/74'/2'/0'").unwrap();
        let sig = vault.sign_p256(&path, &digest).unwrap();
        assert_eq!(sig.len(), 64);
        let public = vault.public_key(Curve::P256, &path).unwrap();
        assert_eq!(public.len(), 33);
        p256::ecdsa::VerifyingKey::from_sec1_bytes(&public)
            .unwrap()
            .verify_prehash(&digest, &p256::ecdsa::Signature::from_slice(&sig).unwrap())
            .unwrap();
        assert!(vault.sign_p256(&path, b"short").is_err());
    }

    #[test]
    fn envelopes_round_trip_only_under_their_path() {
        let dir = tempfile::tempdir().unwrap();
        let (vault, _) = unlocked(dir.path());
        let a = DerivationPath::parse("m/74'/2'/0'").unwrap();
        let b = DerivationPath::parse("m/74'/2'/1'").unwrap();
        let envelope = vault.encrypt(&a, b"payload").unwrap();
        assert_eq!(envelope[0], 1);
        assert_eq!(vault.decrypt(&a, &envelope).unwrap(), b"payload");
        assert!(vault.decrypt(&b, &envelope).is_err());
        let mut damaged = envelope.clone();
        damaged[30] ^= 1;
        assert!(vault.decrypt(&a, &damaged).is_err());
        assert!(vault.decrypt(&a, &envelope[..10]).is_err());
    }

    #[test]
    fn no_vault_means_an_ephemeral_identity() {
        let dir = tempfile::tempdir().unwrap();
        let vault = Vault::open(dir.path().join("vault.json")).unwrap();
        let identity = vault.identity();
        assert!(identity.ephemeral);
        assert_eq!(vault.status().state, VaultState::Absent);
        assert!(vault.sign_as_node(b"x").is_ok());
        assert!(matches!(vault.unlock(b"p"), Err(VaultError::Absent)));
        let other = Vault::open(dir.path().join("vault.json")).unwrap();
        assert_ne!(other.identity().public_key, identity.public_key);
    }

    #[test]
    fn the_file_holds_neither_mnemonic_nor_seed() {
        let dir = tempfile::tempdir().unwrap();
        let mnemonic =
            "legal winner thank year wave sausage worth useful legal winner thank yellow";
        let new = create(Some(mnemonic), 24, b"pass", KdfParams::TEST).unwrap();
        let file = dir.path().join("vault.json");
        store(&file, &new.record).unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        let seed = hex::encode(bip39::Mnemonic::parse(mnemonic).unwrap().to_seed(""));
        assert!(!text.contains("legal") && !text.contains(&seed[..16]));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
