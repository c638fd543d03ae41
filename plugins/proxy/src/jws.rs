//! JSON Web Signatures for ACME (RFC 8555 §6.2, RFC 7515): ES256 over the
//! flattened JSON serialization, the account key's JWK (RFC 7517) and its
//! thumbprint (RFC 7638). The signature itself comes from the vault: the
//! account key is a P-256 key at a derivation path, and nothing here holds
//! it.

use p256::elliptic_curve::sec1::ToEncodedPoint;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Base64url without padding (RFC 4648 §5).
pub fn b64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
        }
    }
    out
}

/// The account key's public JWK, members in the order RFC 7638 hashes.
#[derive(Debug, Clone)]
pub struct Jwk {
    x: String,
    y: String,
}

impl Jwk {
    /// From a SEC1 public key (compressed, as the vault returns it).
    pub fn from_sec1(public_key: &[u8]) -> Result<Jwk, String> {
        let key = p256::PublicKey::from_sec1_bytes(public_key)
            .map_err(|_| "the vault returned a public key that is not on P-256".to_owned())?;
        let point = key.to_encoded_point(false);
        let (Some(x), Some(y)) = (point.x(), point.y()) else {
            return Err("the account key is the point at infinity".to_owned());
        };
        Ok(Jwk {
            x: b64url(x),
            y: b64url(y),
        })
    }

    /// As a JSON value.
    pub fn to_value(&self) -> Value {
        json!({"crv": "P-256", "kty": "EC", "x": self.x, "y": self.y})
    }

    /// RFC 7638 thumbprint, base64url: the key authorization's second half.
    pub fn thumbprint(&self) -> String {
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            self.x, self.y
        );
        b64url(&Sha256::digest(canonical.as_bytes()))
    }
}

/// Who signs: the JWK (new account) or the account URL (`kid`).
pub enum KeyId<'a> {
    /// `jwk`, for `newAccount`.
    Jwk(&'a Jwk),
    /// `kid`, the account URL, for everything after.
    Kid(&'a str),
}

/// The protected header and payload, base64url, and the signing input.
pub struct Unsigned {
    protected: String,
    payload: String,
}

impl Unsigned {
    /// The header for `url` with `nonce`; `payload` `None` is POST-as-GET
    /// (an empty payload).
    pub fn new(key: KeyId<'_>, nonce: &str, url: &str, payload: Option<&Value>) -> Unsigned {
        let mut header = json!({"alg": "ES256", "nonce": nonce, "url": url});
        match key {
            KeyId::Jwk(jwk) => header["jwk"] = jwk.to_value(),
            KeyId::Kid(kid) => header["kid"] = Value::from(kid),
        }
        Unsigned {
            protected: b64url(header.to_string().as_bytes()),
            payload: payload.map_or_else(String::new, |p| b64url(p.to_string().as_bytes())),
        }
    }

    /// SHA-256 of `protected.payload`: what ES256 signs.
    pub fn digest(&self) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(self.protected.as_bytes());
        hasher.update(b".");
        hasher.update(self.payload.as_bytes());
        hasher.finalize().into()
    }

    /// The flattened JWS with the 64-byte `r || s` signature.
    pub fn signed(self, signature: &[u8]) -> Value {
        json!({
            "protected": self.protected,
            "payload": self.payload,
            "signature": b64url(signature),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_has_no_padding() {
        assert_eq!(b64url(b""), "");
        assert_eq!(b64url(b"f"), "Zg");
        assert_eq!(b64url(b"fo"), "Zm8");
        assert_eq!(b64url(b"foo"), "Zm9v");
        assert_eq!(b64url(&[0xfb, 0xff]), "-_8");
    }

    /// RFC 7515 appendix A.3's P-256 key; its thumbprint recomputed from
    /// RFC 7638's rule.
    #[test]
    fn the_thumbprint_hashes_the_canonical_members() {
        let x = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
        let y = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";
        let jwk = Jwk {
            x: x.into(),
            y: y.into(),
        };
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        assert_eq!(jwk.thumbprint(), b64url(&Sha256::digest(canonical)));
        assert_eq!(jwk.to_value()["kty"], "EC");
    }

    #[test]
    fn a_signature_over_the_digest_verifies() {
        use p256::ecdsa::signature::Verifier;
        use p256::ecdsa::signature::hazmat::PrehashSigner;
        let key = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
        let public = key.verifying_key().to_encoded_point(true);
        let jwk = Jwk::from_sec1(public.as_bytes()).unwrap();
        let unsigned = Unsigned::new(
            KeyId::Jwk(&jwk),
            "n1",
            "https://a/new",
            Some(&json!({"x": 1})),
        );
        let input = format!("{}.{}", unsigned.protected, unsigned.payload);
        let signature: p256::ecdsa::Signature = key.sign_prehash(&unsigned.digest()).unwrap();
        key.verifying_key()
            .verify(input.as_bytes(), &signature)
            .unwrap();
        let jws = unsigned.signed(&signature.to_bytes());
        assert_eq!(jws["signature"].as_str().unwrap().len(), 86);
    }
}
