//! `signer`: signatures and encryption with vault keys.
//!
//! Every operation takes a derivation path; the host allows only paths
//! under the prefixes granted to this plugin (`grants.vault`). Bytes travel
//! as hex in JSON.

use hearth_sdk::prelude::*;
use hearth_sdk::vault::Curve;

#[derive(Deserialize, JsonSchema, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum CurveName {
    Ed25519,
    Secp256k1,
    P256,
}

impl From<CurveName> for Curve {
    fn from(c: CurveName) -> Self {
        match c {
            CurveName::Ed25519 => Curve::Ed25519,
            CurveName::Secp256k1 => Curve::Secp256k1,
            CurveName::P256 => Curve::P256,
        }
    }
}

fn unhex(field: &str, text: &str) -> Result<Vec<u8>, CallError> {
    if !text.len().is_multiple_of(2) {
        return Err(CallError::invalid_input(format!("`{field}` must be hex")));
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16))
        .collect::<Result<_, _>>()
        .map_err(|_| CallError::invalid_input(format!("`{field}` must be hex")))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct KeyInput {
    /// `ed25519` or `secp256k1`.
    curve: CurveName,
    /// Derivation path, e.g. `m/74'/1'/0'`.
    path: String,
}

#[derive(Serialize, JsonSchema)]
struct KeyOutput {
    /// Public key, hex.
    public_key: String,
}

fn public_key(_cx: &Context, input: KeyInput) -> Result<KeyOutput, CallError> {
    Ok(KeyOutput {
        public_key: hex(&vault::public_key(input.curve.into(), &input.path)?),
    })
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SignInput {
    /// Derivation path (hardened), e.g. `m/74'/1'/0'`.
    path: String,
    /// The message, as UTF-8 text.
    message: String,
}

#[derive(Serialize, JsonSchema)]
struct SignOutput {
    /// ed25519 signature, hex (64 bytes).
    signature: String,
    /// The public key that verifies it, hex.
    public_key: String,
}

fn sign(_cx: &Context, input: SignInput) -> Result<SignOutput, CallError> {
    let signature = vault::sign_ed25519(&input.path, input.message.as_bytes())?;
    let public_key = vault::public_key(Curve::Ed25519, &input.path)?;
    Ok(SignOutput {
        signature: hex(&signature),
        public_key: hex(&public_key),
    })
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct DigestInput {
    /// Derivation path, e.g. `m/74'/1'/0'/0/0`.
    path: String,
    /// 32-byte digest, hex.
    digest: String,
    /// `secp256k1` (default: recoverable `r || s || v`) or `p256`
    /// (`r || s`, as ES256).
    #[serde(default)]
    curve: Option<CurveName>,
}

fn sign_digest(_cx: &Context, input: DigestInput) -> Result<SignOutput, CallError> {
    let digest: [u8; 32] = unhex("digest", &input.digest)?
        .try_into()
        .map_err(|_| CallError::invalid_input("`digest` must be 32 bytes"))?;
    let (signature, curve) = match input.curve.unwrap_or(CurveName::Secp256k1) {
        CurveName::Secp256k1 => (
            vault::sign_secp256k1(&input.path, &digest)?,
            Curve::Secp256k1,
        ),
        CurveName::P256 => (vault::sign_p256(&input.path, &digest)?, Curve::P256),
        CurveName::Ed25519 => {
            return Err(CallError::invalid_input(
                "ed25519 signs messages, not digests: use `sign`",
            ));
        }
    };
    let public_key = vault::public_key(curve, &input.path)?;
    Ok(SignOutput {
        signature: hex(&signature),
        public_key: hex(&public_key),
    })
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SealInput {
    /// Derivation path (hardened).
    path: String,
    /// Text to encrypt.
    plaintext: String,
}

#[derive(Serialize, JsonSchema)]
struct SealOutput {
    /// Versioned envelope, hex.
    envelope: String,
}

fn seal(_cx: &Context, input: SealInput) -> Result<SealOutput, CallError> {
    Ok(SealOutput {
        envelope: hex(&vault::encrypt(&input.path, input.plaintext.as_bytes())?),
    })
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct OpenInput {
    /// Derivation path the envelope was sealed under.
    path: String,
    /// Envelope, hex.
    envelope: String,
}

#[derive(Serialize, JsonSchema)]
struct OpenOutput {
    /// The decrypted text.
    plaintext: String,
}

fn open(_cx: &Context, input: OpenInput) -> Result<OpenOutput, CallError> {
    let plaintext = vault::decrypt(&input.path, &unhex("envelope", &input.envelope)?)?;
    Ok(OpenOutput {
        plaintext: String::from_utf8(plaintext)
            .map_err(|_| CallError::failed("plaintext is not UTF-8"))?,
    })
}

struct Signer;

impl Plugin for Signer {
    fn operations(ops: &mut Operations) {
        ops.query("public-key", "Public key at a derivation path.", public_key)
            .scopes(&["vault:read"]);
        ops.mutation(
            "sign",
            "Sign a text message with the ed25519 key at a path.",
            sign,
        )
        .scopes(&["vault:sign"]);
        ops.mutation(
            "sign-digest",
            "Sign a 32-byte digest with the secp256k1 (recoverable) or P-256 key at a path.",
            sign_digest,
        )
        .scopes(&["vault:sign"]);
        ops.mutation("seal", "Encrypt text under the key at a path.", seal)
            .scopes(&["vault:seal"]);
        ops.query("open", "Decrypt an envelope made by seal.", open)
            .scopes(&["vault:open"]);
    }
}

hearth_sdk::export_plugin!(Signer);
