//! Ethereum: addresses (EIP-55), message hashes (EIP-191) and
//! transactions (legacy with EIP-155 chain ids, and EIP-1559), encoded for
//! signing and, once signed, for broadcasting. Pure: signatures come from
//! the caller (the vault), as recoverable `r || s || v` with `v` in {0, 1}.

use sha3::{Digest, Keccak256};

use crate::rlp::{self, Item};

/// Keccak-256, as Ethereum uses it.
pub fn keccak256(bytes: &[u8]) -> [u8; 32] {
    Keccak256::digest(bytes).into()
}

/// The address of a secp256k1 public key (33-byte compressed or 65-byte
/// uncompressed): the last 20 bytes of the Keccak-256 of the point.
pub fn address_of(public_key: &[u8]) -> Result<[u8; 20], String> {
    let point = k256::PublicKey::from_sec1_bytes(public_key)
        .map_err(|_| "not a secp256k1 public key".to_owned())?;
    use k256::elliptic_curve::sec1::ToEncodedPoint;
    let uncompressed = point.to_encoded_point(false);
    let hash = keccak256(&uncompressed.as_bytes()[1..]);
    let mut address = [0u8; 20];
    address.copy_from_slice(&hash[12..]);
    Ok(address)
}

/// `0x` and the address with EIP-55 mixed-case checksum.
pub fn checksummed(address: &[u8; 20]) -> String {
    let lower = hex::encode(address);
    let hash = keccak256(lower.as_bytes());
    let mut out = String::from("0x");
    for (i, c) in lower.chars().enumerate() {
        let nibble = (hash[i / 2] >> if i % 2 == 0 { 4 } else { 0 }) & 0x0f;
        out.push(if c.is_ascii_alphabetic() && nibble >= 8 {
            c.to_ascii_uppercase()
        } else {
            c
        });
    }
    out
}

/// An address from text: `0x` and 40 hex digits; mixed case must carry a
/// valid EIP-55 checksum.
pub fn parse_address(text: &str) -> Result<[u8; 20], String> {
    let digits = text
        .strip_prefix("0x")
        .ok_or_else(|| format!("address {text:?} must start with 0x"))?;
    let bytes = hex::decode(digits)
        .ok()
        .filter(|b| b.len() == 20)
        .ok_or_else(|| format!("address {text:?} is not 0x and 40 hex digits"))?;
    let mut address = [0u8; 20];
    address.copy_from_slice(&bytes);
    let mixed = digits.chars().any(|c| c.is_ascii_lowercase())
        && digits.chars().any(|c| c.is_ascii_uppercase());
    if mixed && checksummed(&address) != text {
        return Err(format!(
            "address {text:?} has a wrong EIP-55 checksum (mistyped?)"
        ));
    }
    Ok(address)
}

/// The EIP-191 (`personal_sign`) hash of `message`.
pub fn personal_hash(message: &[u8]) -> [u8; 32] {
    let mut data = format!("\x19Ethereum Signed Message:\n{}", message.len()).into_bytes();
    data.extend_from_slice(message);
    keccak256(&data)
}

/// A signature as Ethereum clients print it: `r || s || v`, `v` 27 or 28.
pub fn signature_hex(signature: &[u8; 65]) -> String {
    let mut out = *signature;
    out[64] += 27;
    format!("0x{}", hex::encode(out))
}

/// A transaction to sign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    pub chain_id: u64,
    pub nonce: u64,
    pub to: Option<[u8; 20]>,
    /// In wei.
    pub value: u128,
    pub data: Vec<u8>,
    pub gas_limit: u64,
    pub fees: Fees,
}

/// How the transaction pays for gas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fees {
    /// Type 2 (EIP-1559).
    Eip1559 {
        max_fee_per_gas: u128,
        max_priority_fee_per_gas: u128,
    },
    /// Type 0 with an EIP-155 chain id.
    Legacy { gas_price: u128 },
}

impl Transaction {
    fn to_item(&self) -> Item {
        Item::Bytes(self.to.map(|a| a.to_vec()).unwrap_or_default())
    }

    /// The fields of the signed form, before the signature.
    fn fields(&self) -> Vec<Item> {
        match self.fees {
            Fees::Eip1559 {
                max_fee_per_gas,
                max_priority_fee_per_gas,
            } => vec![
                Item::uint(self.chain_id.into()),
                Item::uint(self.nonce.into()),
                Item::uint(max_priority_fee_per_gas),
                Item::uint(max_fee_per_gas),
                Item::uint(self.gas_limit.into()),
                self.to_item(),
                Item::uint(self.value),
                Item::Bytes(self.data.clone()),
                // The access list: none.
                Item::List(Vec::new()),
            ],
            Fees::Legacy { gas_price } => vec![
                Item::uint(self.nonce.into()),
                Item::uint(gas_price),
                Item::uint(self.gas_limit.into()),
                self.to_item(),
                Item::uint(self.value),
                Item::Bytes(self.data.clone()),
            ],
        }
    }

    /// The hash the sender signs.
    pub fn signing_hash(&self) -> [u8; 32] {
        let mut fields = self.fields();
        match self.fees {
            Fees::Eip1559 { .. } => {
                let mut payload = vec![2u8];
                payload.extend(rlp::encode(&Item::List(fields)));
                keccak256(&payload)
            }
            Fees::Legacy { .. } => {
                // EIP-155: chain id, 0, 0 in place of v, r, s.
                fields.extend([
                    Item::uint(self.chain_id.into()),
                    Item::uint(0),
                    Item::uint(0),
                ]);
                keccak256(&rlp::encode(&Item::List(fields)))
            }
        }
    }

    /// The signed transaction, as `eth_sendRawTransaction` takes it, and
    /// its hash.
    pub fn signed(&self, signature: &[u8; 65]) -> (Vec<u8>, [u8; 32]) {
        let mut fields = self.fields();
        let scalar = |bytes: &[u8]| {
            let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
            Item::Bytes(bytes[first..].to_vec())
        };
        let recovery = u128::from(signature[64]);
        let raw = match self.fees {
            Fees::Eip1559 { .. } => {
                fields.extend([
                    Item::uint(recovery),
                    scalar(&signature[..32]),
                    scalar(&signature[32..64]),
                ]);
                let mut raw = vec![2u8];
                raw.extend(rlp::encode(&Item::List(fields)));
                raw
            }
            Fees::Legacy { .. } => {
                let v = u128::from(self.chain_id) * 2 + 35 + recovery;
                fields.extend([
                    Item::uint(v),
                    scalar(&signature[..32]),
                    scalar(&signature[32..64]),
                ]);
                rlp::encode(&Item::List(fields))
            }
        };
        let hash = keccak256(&raw);
        (raw, hash)
    }
}

/// `0x`-prefixed hex of a quantity, as JSON-RPC wants it.
pub fn quantity(value: u128) -> String {
    format!("{value:#x}")
}

/// A JSON-RPC quantity (`0x…`) as a number.
pub fn parse_quantity(text: &str) -> Result<u128, String> {
    let digits = text
        .strip_prefix("0x")
        .ok_or_else(|| format!("{text:?} is not a 0x quantity"))?;
    if digits.is_empty() {
        return Ok(0);
    }
    u128::from_str_radix(digits, 16).map_err(|e| format!("{text:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anvils_first_key_has_anvils_first_address() {
        let secret =
            hex::decode("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80")
                .unwrap();
        let key = k256::SecretKey::from_slice(&secret).unwrap();
        use k256::elliptic_curve::sec1::ToEncodedPoint;
        let compressed = key.public_key().to_encoded_point(true);
        let address = address_of(compressed.as_bytes()).unwrap();
        assert_eq!(
            checksummed(&address),
            "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
        );
    }

    #[test]
    fn eip55_examples_round_trip_and_a_bad_checksum_is_refused() {
        for text in [
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
            "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
            "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
            "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
        ] {
            let address = parse_address(text).unwrap();
            assert_eq!(checksummed(&address), text);
            parse_address(&text.to_lowercase()).unwrap();
        }
        assert!(
            parse_address("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD")
                .unwrap_err()
                .contains("checksum")
        );
        assert!(parse_address("5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed").is_err());
        assert!(parse_address("0x1234").is_err());
    }

    #[test]
    fn the_eip155_example_hashes_as_published() {
        let tx = Transaction {
            chain_id: 1,
            nonce: 9,
            to: Some([0x35; 20]),
            value: 1_000_000_000_000_000_000,
            data: Vec::new(),
            gas_limit: 21000,
            fees: Fees::Legacy {
                gas_price: 20_000_000_000,
            },
        };
        assert_eq!(
            hex::encode(tx.signing_hash()),
            "daf5a779ae972f972197303d7b574746c7ef83eadac0f2791ad23db92e4c8e53"
        );
        // The EIP's signature (v = 37: recovery id 0 on chain 1).
        let mut sig = [0u8; 65];
        sig[..32].copy_from_slice(
            &hex::decode("28ef61340bd939bc2195fe537567866003e1a15d3c71ff63e1590620aa636276")
                .unwrap(),
        );
        sig[32..64].copy_from_slice(
            &hex::decode("67cbe9d8997f761aecb703304b3800ccf555c9f3dc64214b297fb1966a3b6d83")
                .unwrap(),
        );
        let (raw, _) = tx.signed(&sig);
        assert_eq!(
            hex::encode(raw),
            "f86c098504a817c800825208943535353535353535353535353535353535353535880de0b6b3a76400008025a028ef61340bd939bc2195fe537567866003e1a15d3c71ff63e1590620aa636276a067cbe9d8997f761aecb703304b3800ccf555c9f3dc64214b297fb1966a3b6d83"
        );
    }

    #[test]
    fn personal_messages_hash_with_their_length() {
        // keccak256("\x19Ethereum Signed Message:\n5hello")
        assert_eq!(
            hex::encode(personal_hash(b"hello")),
            "50b2c43fd39106bafbba0da34fc430e1f91e3c96ea2acee2bc34119f92b37750"
        );
    }

    #[test]
    fn quantities_round_trip() {
        assert_eq!(quantity(0), "0x0");
        assert_eq!(quantity(255), "0xff");
        assert_eq!(parse_quantity("0xff").unwrap(), 255);
        assert!(parse_quantity("ff").is_err());
    }
}
