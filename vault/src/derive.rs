//! Key derivation from the seed: SLIP-0010 for ed25519 (hardened steps
//! only) and BIP32 for secp256k1.
//!
//! Every intermediate key and chain code is zeroized when dropped; callers
//! get a [`DerivedKey`] that zeroizes too.

use hmac::{Hmac, Mac};
use k256::elliptic_curve::sec1::ToEncodedPoint;
use sha2::Sha512;
use zeroize::{Zeroize, ZeroizeOnDrop};

type HmacSha512 = Hmac<Sha512>;

/// The hardened bit of a path index.
pub const HARDENED: u32 = 1 << 31;

/// Deepest path accepted.
const MAX_DEPTH: usize = 32;

/// Why a path or a derivation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeriveError {
    /// The path does not parse.
    #[error(
        "`{0}` is not a derivation path: write `m/44'/0'/0'`, indexes below 2^31, `'` or `h` for hardened"
    )]
    BadPath(String),
    /// ed25519 (SLIP-0010) has no public derivation.
    #[error(
        "`{0}` has a non-hardened step; ed25519 keys derive only along hardened paths (add `'` to every index)"
    )]
    NotHardened(String),
    /// A BIP32 step produced an invalid key (probability < 2^-127).
    #[error("derivation at `{0}` produced an invalid secp256k1 key; use another index")]
    InvalidKey(String),
}

/// A parsed path such as `m/74'/0'/0'/0'`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DerivationPath {
    indexes: Vec<u32>,
}

impl DerivationPath {
    /// Parses `m/…`.
    pub fn parse(text: &str) -> Result<Self, DeriveError> {
        let bad = || DeriveError::BadPath(text.to_owned());
        let mut parts = text.split('/');
        if parts.next() != Some("m") {
            return Err(bad());
        }
        let mut indexes = Vec::new();
        for part in parts {
            let (digits, hardened) =
                match part.strip_suffix('\'').or_else(|| part.strip_suffix('h')) {
                    Some(d) => (d, true),
                    None => (part, false),
                };
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 10
            {
                return Err(bad());
            }
            let index: u32 = digits.parse().map_err(|_| bad())?;
            if index >= HARDENED {
                return Err(bad());
            }
            indexes.push(if hardened { index | HARDENED } else { index });
        }
        if indexes.len() > MAX_DEPTH {
            return Err(bad());
        }
        Ok(DerivationPath { indexes })
    }

    /// The indexes, hardened bit included.
    pub fn indexes(&self) -> &[u32] {
        &self.indexes
    }

    /// True when `prefix`'s indexes start this path.
    pub fn starts_with(&self, prefix: &DerivationPath) -> bool {
        self.indexes.starts_with(&prefix.indexes)
    }
}

impl std::fmt::Display for DerivationPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("m")?;
        for index in &self.indexes {
            if index & HARDENED != 0 {
                write!(f, "/{}'", index & !HARDENED)?;
            } else {
                write!(f, "/{index}")?;
            }
        }
        Ok(())
    }
}

/// A derived private key and chain code; zeroized on drop.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct DerivedKey {
    /// The 32-byte private key.
    pub key: [u8; 32],
    /// The chain code.
    pub chain_code: [u8; 32],
}

fn hmac_split(key: &[u8], parts: &[&[u8]]) -> DerivedKey {
    // HMAC accepts keys of any length, so construction cannot fail.
    let mut mac = match HmacSha512::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable_hmac(),
    };
    for part in parts {
        mac.update(part);
    }
    let mut out = mac.finalize().into_bytes();
    let mut derived = DerivedKey {
        key: [0; 32],
        chain_code: [0; 32],
    };
    derived.key.copy_from_slice(&out[..32]);
    derived.chain_code.copy_from_slice(&out[32..]);
    out.zeroize();
    derived
}

#[cold]
fn unreachable_hmac() -> ! {
    // Hmac::new_from_slice only fails for fixed-size-key MACs.
    std::process::abort()
}

/// SLIP-0010 ed25519 key at `path` (hardened steps only).
pub fn ed25519(seed: &[u8], path: &DerivationPath) -> Result<DerivedKey, DeriveError> {
    if path.indexes.iter().any(|i| i & HARDENED == 0) {
        return Err(DeriveError::NotHardened(path.to_string()));
    }
    let mut node = hmac_split(b"ed25519 seed", &[seed]);
    for index in &path.indexes {
        node = hmac_split(&node.chain_code, &[&[0u8], &node.key, &index.to_be_bytes()]);
    }
    Ok(node)
}

/// BIP32 secp256k1 key at `path`.
pub fn secp256k1(seed: &[u8], path: &DerivationPath) -> Result<DerivedKey, DeriveError> {
    use k256::elliptic_curve::PrimeField;
    use k256::{FieldBytes, Scalar, SecretKey};

    let invalid = || DeriveError::InvalidKey(path.to_string());
    let mut node = hmac_split(b"Bitcoin seed", &[seed]);
    let valid = |key: &[u8; 32]| SecretKey::from_slice(key).is_ok();
    if !valid(&node.key) {
        return Err(invalid());
    }
    for index in &path.indexes {
        let child = if index & HARDENED != 0 {
            hmac_split(&node.chain_code, &[&[0u8], &node.key, &index.to_be_bytes()])
        } else {
            let secret = SecretKey::from_slice(&node.key).map_err(|_| invalid())?;
            let point = secret.public_key().to_encoded_point(true);
            hmac_split(&node.chain_code, &[point.as_bytes(), &index.to_be_bytes()])
        };
        // child key = IL + parent key (mod n); IL must be below n and the
        // sum non-zero.
        let il: Option<Scalar> = Scalar::from_repr(FieldBytes::clone_from_slice(&child.key)).into();
        let parent: Option<Scalar> =
            Scalar::from_repr(FieldBytes::clone_from_slice(&node.key)).into();
        let (Some(il), Some(parent)) = (il, parent) else {
            return Err(invalid());
        };
        let sum = il + parent;
        if bool::from(sum.is_zero()) {
            return Err(invalid());
        }
        let mut next = DerivedKey {
            key: [0; 32],
            chain_code: child.chain_code,
        };
        next.key.copy_from_slice(&sum.to_repr());
        node = next;
    }
    Ok(node)
}

/// SLIP-0010 NIST P-256 (`nist256p1`) key at `path`: BIP32's scheme with
/// the key "Nist256p1 seed", and SLIP-0010's retry when a step gives an
/// out-of-range scalar (`I = HMAC(c, 0x01 || IR || index)`).
pub fn p256(seed: &[u8], path: &DerivationPath) -> Result<DerivedKey, DeriveError> {
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    use p256::elliptic_curve::{Field, PrimeField};
    use p256::{FieldBytes, Scalar, SecretKey};

    let scalar = |bytes: &[u8; 32]| -> Option<Scalar> {
        Option::from(Scalar::from_repr(FieldBytes::clone_from_slice(bytes)))
    };
    let mut node = hmac_split(b"Nist256p1 seed", &[seed]);
    // The master key: retried with I = HMAC(key, I) while out of range.
    while scalar(&node.key).is_none_or(|k| bool::from(k.is_zero())) {
        let mut i = [0u8; 64];
        i[..32].copy_from_slice(&node.key);
        i[32..].copy_from_slice(&node.chain_code);
        node = hmac_split(b"Nist256p1 seed", &[&i]);
        i.zeroize();
    }
    for index in &path.indexes {
        let parent = scalar(&node.key).ok_or_else(|| DeriveError::InvalidKey(path.to_string()))?;
        let data: Vec<u8> = if index & HARDENED != 0 {
            let mut d = vec![0u8];
            d.extend_from_slice(&node.key);
            d
        } else {
            let secret = SecretKey::from_slice(&node.key)
                .map_err(|_| DeriveError::InvalidKey(path.to_string()))?;
            secret
                .public_key()
                .to_encoded_point(true)
                .as_bytes()
                .to_vec()
        };
        let mut child = hmac_split(&node.chain_code, &[&data, &index.to_be_bytes()]);
        loop {
            if let Some(il) = scalar(&child.key) {
                let sum = il + parent;
                if !bool::from(sum.is_zero()) {
                    let mut next = DerivedKey {
                        key: [0; 32],
                        chain_code: child.chain_code,
                    };
                    next.key.copy_from_slice(&sum.to_repr());
                    node = next;
                    break;
                }
            }
            let ir = child.chain_code;
            child = hmac_split(&node.chain_code, &[&[1u8], &ir, &index.to_be_bytes()]);
        }
    }
    Ok(node)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex32(key: &[u8; 32]) -> String {
        hex::encode(key)
    }

    fn path(p: &str) -> DerivationPath {
        DerivationPath::parse(p).unwrap()
    }

    #[test]
    fn paths_parse_and_print() {
        assert_eq!(path("m/74'/0'/0'/0'").to_string(), "m/74'/0'/0'/0'");
        assert_eq!(path("m/44h/60h/0h/0/7").to_string(), "m/44'/60'/0'/0/7");
        assert_eq!(path("m").indexes(), &[] as &[u32]);
        for bad in [
            "",
            "74'/0'",
            "m/",
            "m/x",
            "m/-1",
            "m/2147483648",
            "m/1''",
            "n/1",
        ] {
            assert!(DerivationPath::parse(bad).is_err(), "{bad}");
        }
        assert!(path("m/74'/1'/5'").starts_with(&path("m/74'/1'")));
        assert!(!path("m/74'/10'").starts_with(&path("m/74'/1'")));
    }

    /// SLIP-0010, test vector 1 for ed25519.
    #[test]
    fn slip10_ed25519_vector_1() {
        let seed = hex::decode("000102030405060708090a0b0c0d0e0f").unwrap();
        let cases = [
            (
                "m",
                "90046a93de5380a72b5e45010748567d5ea02bbf6522f979e05c0d8d8ca9fffb",
                "2b4be7f19ee27bbf30c667b642d5f4aa69fd169872f8fc3059c08ebae2eb19e7",
            ),
            (
                "m/0'",
                "8b59aa11380b624e81507a27fedda59fea6d0b779a778918a2fd3590e16e9c69",
                "68e0fe46dfb67e368c75379acec591dad19df3cde26e63b93a8e704f1dade7a3",
            ),
            (
                "m/0'/1'",
                "a320425f77d1b5c2505a6b1b27382b37368ee640e3557c315416801243552f14",
                "b1d0bad404bf35da785a64ca1ac54b2617211d2777696fbffaf208f746ae84f2",
            ),
            (
                "m/0'/1'/2'",
                "2e69929e00b5ab250f49c3fb1c12f252de4fed2c1db88387094a0f8c4c9ccd6c",
                "92a5b23c0b8a99e37d07df3fb9966917f5d06e02ddbd909c7e184371463e9fc9",
            ),
            (
                "m/0'/1'/2'/2'",
                "8f6d87f93d750e0efccda017d662a1b31a266e4a6f5993b15f5c1f07f74dd5cc",
                "30d1dc7e5fc04c31219ab25a27ae00b50f6fd66622f6e9c913253d6511d1e662",
            ),
        ];
        for (p, chain, key) in cases {
            let derived = ed25519(&seed, &path(p)).unwrap();
            assert_eq!(hex32(&derived.chain_code), chain, "{p}");
            assert_eq!(hex32(&derived.key), key, "{p}");
        }
        let master = ed25519(&seed, &path("m")).unwrap();
        let public = ed25519_dalek::SigningKey::from_bytes(&master.key).verifying_key();
        assert_eq!(
            hex::encode(public.as_bytes()),
            "a4b2856bfec510abab89753fac1ac0e1112364e7d250545963f135f2a33188ed"
        );
        assert!(matches!(
            ed25519(&seed, &path("m/0'/1")),
            Err(DeriveError::NotHardened(_))
        ));
    }

    /// BIP32 test vector 1 (also SLIP-0010's secp256k1 vector 1).
    #[test]
    fn bip32_secp256k1_vector_1() {
        let seed = hex::decode("000102030405060708090a0b0c0d0e0f").unwrap();
        let cases = [
            (
                "m",
                "873dff81c02f525623fd1fe5167eac3a55a049de3d314bb42ee227ffed37d508",
                "e8f32e723decf4051aefac8e2c93c9c5b214313817cdb01a1494b917c8436b35",
            ),
            (
                "m/0'",
                "47fdacbd0f1097043b78c63c20c34ef4ed9a111d980047ad16282c7ae6236141",
                "edb2e14f9ee77d26dd93b4ecede8d16ed408ce149b6cd80b0715a2d911a0afea",
            ),
            (
                "m/0'/1",
                "2a7857631386ba23dacac34180dd1983734e444fdbf774041578e9b6adb37c19",
                "3c6cb8d0f6a264c91ea8b5030fadaa8e538b020f0a387421a12de9319dc93368",
            ),
        ];
        for (p, chain, key) in cases {
            let derived = secp256k1(&seed, &path(p)).unwrap();
            assert_eq!(hex32(&derived.chain_code), chain, "{p}");
            assert_eq!(hex32(&derived.key), key, "{p}");
        }
    }

    /// Trezor's BIP39 vector 0 ("abandon … about"): its seed with the
    /// passphrase TREZOR, and, from the seed with an empty passphrase (the
    /// well-known `xprv9s21ZrQH143K3GJpoapnV8SFfukc…` root), the BIP32 root
    /// key and a deep mixed hardened/normal path.
    #[test]
    fn bip39_seed_into_bip32() {
        let mnemonic = bip39::Mnemonic::parse("abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about").unwrap();
        let seed = mnemonic.to_seed("TREZOR");
        assert_eq!(
            hex::encode(seed),
            "c55257c360c07c72029aebc1b53c05ed0362ada38ead3e3e9efa3708e53495531f09a6987599d18264c1e1c92f2cf141630c7a3c4ab7c81b2f001698e7463b04"
        );
        let seed = mnemonic.to_seed("");
        let root = secp256k1(&seed, &path("m")).unwrap();
        assert_eq!(
            hex32(&root.key),
            "1837c1be8e2995ec11cda2b066151be2cfb48adf9e47b151d46adab3a21cdf67"
        );
        assert_eq!(
            hex32(&root.chain_code),
            "7923408dadd3c7b56eed15567707ae5e5dca089de972e07f3b860450e2a3b70e"
        );
        let deep = secp256k1(&seed, &path("m/20'/84/99/18'/42/26'/63/25'")).unwrap();
        assert_eq!(
            hex32(&deep.key),
            "79dfa5085b108e065365f4cd49079c5956df2c31a7bc7249d4a8625ab062180a"
        );
    }

    /// The published BIP39 vectors (passphrase TREZOR): entropy, words, seed.
    #[test]
    fn bip39_vectors() {
        let vectors = [
            (
                "00000000000000000000000000000000",
                "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about",
                "c55257c360c07c72029aebc1b53c05ed0362ada38ead3e3e9efa3708e53495531f09a6987599d18264c1e1c92f2cf141630c7a3c4ab7c81b2f001698e7463b04",
            ),
            (
                "7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f",
                "legal winner thank year wave sausage worth useful legal winner thank yellow",
                "2e8905819b8723fe2c1d161860e5ee1830318dbf49a83bd451cfb8440c28bd6fa457fe1296106559a3c80937a1c1069be3a3a5bd381ee6260e8d9739fce1f607",
            ),
            (
                "80808080808080808080808080808080",
                "letter advice cage absurd amount doctor acoustic avoid letter advice cage above",
                "d71de856f81a8acc65e6fc851a38d4d7ec216fd0796d0a6827a3ad6ed5511a30fa280f12eb2e47ed2ac03b5c462a0358d18d69fe4f985ec81778c1b370b652a8",
            ),
            (
                "ffffffffffffffffffffffffffffffff",
                "zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo wrong",
                "ac27495480225222079d7be181583751e86f571027b0497b5b5d11218e0a8a13332572917f0f8e5a589620c6f15b11c61dee327651a14c34e18231052e48c069",
            ),
            (
                "0000000000000000000000000000000000000000000000000000000000000000",
                "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon art",
                "bda85446c68413707090a52022edd26a1c9462295029f2e60cd7c4f2bbd3097170af7a4d73245cafa9c3cca8d561a7c3de6f5d4a10be8ed2a5e608d68f92fcc8",
            ),
        ];
        for (entropy, words, seed) in vectors {
            let mnemonic = bip39::Mnemonic::from_entropy(&hex::decode(entropy).unwrap()).unwrap();
            assert_eq!(mnemonic.to_string(), words);
            assert_eq!(hex::encode(mnemonic.to_seed("TREZOR")), seed);
        }
    }

    #[test]
    fn slip10_nist256p1_vector_1() {
        let seed = hex::decode("000102030405060708090a0b0c0d0e0f").unwrap();
        for (p, chain, key) in [
            (
                "m",
                "beeb672fe4621673f722f38529c07392fecaa61015c80c34f29ce8b41b3cb6ea",
                "612091aaa12e22dd2abef664f8a01a82cae99ad7441b7ef8110424915c268bc2",
            ),
            (
                "m/0'",
                "3460cea53e6a6bb5fb391eeef3237ffd8724bf0a40e94943c98b83825342ee11",
                "6939694369114c67917a182c59ddb8cafc3004e63ca5d3b84403ba8613debc0c",
            ),
            (
                "m/0'/1",
                "4187afff1aafa8445010097fb99d23aee9f599450c7bd140b6826ac22ba21d0c",
                "284e9d38d07d21e4e281b645089a94f4cf5a5a81369acf151a1c3a57f18b2129",
            ),
        ] {
            let derived = p256(&seed, &path(p)).unwrap();
            assert_eq!(hex32(&derived.chain_code), chain, "{p}");
            assert_eq!(hex32(&derived.key), key, "{p}");
        }
    }
}
