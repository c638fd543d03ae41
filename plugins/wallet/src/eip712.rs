//! EIP-712: the digest of typed structured data, as `eth_signTypedData_v4`
//! signs it — `keccak256(0x19 0x01 ‖ hashStruct(domain) ‖ hashStruct(message))`.
//!
//! Input is the JSON wallets exchange: `{types, primaryType, domain,
//! message}`. Integers may be JSON numbers, decimal strings or `0x` hex;
//! `bytes`/`bytesN` are `0x` hex. Arrays (`T[]`, `T[n]`) and nested structs
//! are encoded as the EIP says. A missing `EIP712Domain` type is inferred
//! from the domain's fields.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::eth::{keccak256, parse_address};

/// Most struct types one document may define.
const MAX_TYPES: usize = 256;

/// The digest to sign.
pub fn digest(typed: &Value) -> Result<[u8; 32], String> {
    let mut types = typed["types"]
        .as_object()
        .cloned()
        .ok_or("typed data needs `types`, an object")?;
    let domain = typed["domain"]
        .as_object()
        .ok_or("typed data needs `domain`, an object")?;
    if !types.contains_key("EIP712Domain") {
        let fields: Vec<Value> = [
            ("name", "string"),
            ("version", "string"),
            ("chainId", "uint256"),
            ("verifyingContract", "address"),
            ("salt", "bytes32"),
        ]
        .iter()
        .filter(|(name, _)| domain.contains_key(*name))
        .map(|(name, ty)| serde_json::json!({ "name": name, "type": ty }))
        .collect();
        types.insert("EIP712Domain".into(), Value::Array(fields));
    }
    // Bounds the recursion over types (and the work per struct).
    if types.len() > MAX_TYPES {
        return Err(format!("typed data defines more than {MAX_TYPES} types"));
    }
    let primary = typed["primaryType"]
        .as_str()
        .ok_or("typed data needs `primaryType`, a type name")?;
    let types = Types(types);
    let mut data = vec![0x19, 0x01];
    data.extend(types.hash_struct("EIP712Domain", &typed["domain"])?);
    if primary != "EIP712Domain" {
        data.extend(types.hash_struct(primary, &typed["message"])?);
    }
    Ok(keccak256(&data))
}

struct Types(Map<String, Value>);

impl Types {
    fn fields(&self, name: &str) -> Result<Vec<(String, String)>, String> {
        let fields = self
            .0
            .get(name)
            .and_then(Value::as_array)
            .ok_or_else(|| format!("type `{name}` is not defined in `types`"))?;
        fields
            .iter()
            .map(|f| match (f["name"].as_str(), f["type"].as_str()) {
                (Some(n), Some(t)) => Ok((n.to_owned(), t.to_owned())),
                _ => Err(format!(
                    "a field of `{name}` needs `name` and `type` strings"
                )),
            })
            .collect()
    }

    /// The struct types `name` refers to, itself included.
    fn dependencies(&self, name: &str, found: &mut BTreeSet<String>) -> Result<(), String> {
        if found.contains(name) || !self.0.contains_key(name) {
            return Ok(());
        }
        found.insert(name.to_owned());
        for (_, ty) in self.fields(name)? {
            self.dependencies(base_type(&ty), found)?;
        }
        Ok(())
    }

    fn encode_type(&self, name: &str) -> Result<String, String> {
        let mut deps = BTreeSet::new();
        self.dependencies(name, &mut deps)?;
        deps.remove(name);
        let mut out = String::new();
        for ty in std::iter::once(name).chain(deps.iter().map(String::as_str)) {
            let fields: Vec<String> = self
                .fields(ty)?
                .iter()
                .map(|(n, t)| format!("{t} {n}"))
                .collect();
            out.push_str(&format!("{ty}({})", fields.join(",")));
        }
        Ok(out)
    }

    fn hash_struct(&self, name: &str, value: &Value) -> Result<[u8; 32], String> {
        let object = value
            .as_object()
            .ok_or_else(|| format!("a `{name}` must be an object"))?;
        let mut data = keccak256(self.encode_type(name)?.as_bytes()).to_vec();
        for (field, ty) in self.fields(name)? {
            let v = object
                .get(&field)
                .ok_or_else(|| format!("`{name}` lacks field `{field}`"))?;
            data.extend(
                self.encode_value(&ty, v)
                    .map_err(|e| format!("`{name}.{field}`: {e}"))?,
            );
        }
        Ok(keccak256(&data))
    }

    fn encode_value(&self, ty: &str, value: &Value) -> Result<[u8; 32], String> {
        if let Some(inner) = ty.strip_suffix(']') {
            let (element, length) = inner
                .rsplit_once('[')
                .ok_or_else(|| format!("type `{ty}` is malformed"))?;
            let items = value.as_array().ok_or("an array was expected")?;
            if !length.is_empty() && length.parse::<usize>() != Ok(items.len()) {
                return Err(format!("{ty} needs {length} elements, got {}", items.len()));
            }
            let mut data = Vec::new();
            for item in items {
                data.extend(self.encode_value(element, item)?);
            }
            return Ok(keccak256(&data));
        }
        if self.0.contains_key(ty) {
            return self.hash_struct(ty, value);
        }
        let mut word = [0u8; 32];
        match ty {
            "string" => Ok(keccak256(
                value.as_str().ok_or("a string was expected")?.as_bytes(),
            )),
            "bytes" => Ok(keccak256(&hex_bytes(value)?)),
            "bool" => {
                word[31] = u8::from(value.as_bool().ok_or("true or false was expected")?);
                Ok(word)
            }
            "address" => {
                let address = parse_address(value.as_str().ok_or("an address was expected")?)?;
                word[12..].copy_from_slice(&address);
                Ok(word)
            }
            _ if ty.starts_with("bytes") => {
                let n: usize = ty[5..]
                    .parse()
                    .map_err(|_| format!("unknown type `{ty}`"))?;
                let bytes = hex_bytes(value)?;
                if n == 0 || n > 32 || bytes.len() != n {
                    return Err(format!("{ty} needs exactly {n} bytes"));
                }
                word[..n].copy_from_slice(&bytes);
                Ok(word)
            }
            _ if ty.starts_with("uint") || ty.starts_with("int") => integer(ty, value),
            _ => Err(format!("unknown type `{ty}`")),
        }
    }
}

/// `Person[]` → `Person`, `uint8[2][]` → `uint8`.
fn base_type(ty: &str) -> &str {
    ty.split('[').next().unwrap_or(ty)
}

fn hex_bytes(value: &Value) -> Result<Vec<u8>, String> {
    let text = value.as_str().ok_or("0x hex was expected")?;
    let digits = text.strip_prefix("0x").ok_or("0x hex was expected")?;
    hex::decode(digits).map_err(|e| format!("{text:?}: {e}"))
}

/// A 256-bit two's complement word from a number, decimal or `0x` string.
fn integer(ty: &str, value: &Value) -> Result<[u8; 32], String> {
    let signed = ty.starts_with("int");
    let bits: u32 = ty[if signed { 3 } else { 4 }..]
        .parse()
        .ok()
        .filter(|b| b % 8 == 0 && (8..=256).contains(b))
        .ok_or_else(|| format!("unknown type `{ty}`"))?;
    let text = match value {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        _ => return Err("an integer was expected".into()),
    };
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.as_str()),
    };
    if negative && !signed {
        return Err(format!("{ty} cannot be negative"));
    }
    let mut word = [0u8; 32];
    let (radix, digits) = match digits.strip_prefix("0x") {
        Some(hex) => (16u32, hex),
        None => (10, digits),
    };
    if digits.is_empty() {
        return Err(format!("{text:?} is not an integer"));
    }
    for c in digits.chars() {
        let d = c
            .to_digit(radix)
            .ok_or_else(|| format!("{text:?} is not an integer"))?;
        // word = word * radix + d
        let mut carry = d;
        for byte in word.iter_mut().rev() {
            let v = u32::from(*byte) * radix + carry;
            *byte = (v & 0xff) as u8;
            carry = v >> 8;
        }
        if carry != 0 {
            return Err(format!("{text:?} does not fit 256 bits"));
        }
    }
    // The magnitude must fit the type (one bit less when signed).
    let limit_bits = if signed { bits - 1 } else { bits };
    let used_bits = word
        .iter()
        .position(|b| *b != 0)
        .map_or(0, |i| (32 - i as u32) * 8 - word[i].leading_zeros());
    let is_min_negative = negative && used_bits == limit_bits + 1 && {
        // -2^(bits-1) fits: exactly one bit set.
        word.iter().map(|b| b.count_ones()).sum::<u32>() == 1
    };
    if used_bits > limit_bits && !is_min_negative {
        return Err(format!("{text} does not fit {ty}"));
    }
    if negative {
        for byte in word.iter_mut() {
            *byte = !*byte;
        }
        for byte in word.iter_mut().rev() {
            let (v, overflow) = byte.overflowing_add(1);
            *byte = v;
            if !overflow {
                break;
            }
        }
    }
    Ok(word)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mail() -> Value {
        json!({
            "types": {
                "EIP712Domain": [
                    {"name": "name", "type": "string"},
                    {"name": "version", "type": "string"},
                    {"name": "chainId", "type": "uint256"},
                    {"name": "verifyingContract", "type": "address"}
                ],
                "Person": [
                    {"name": "name", "type": "string"},
                    {"name": "wallet", "type": "address"}
                ],
                "Mail": [
                    {"name": "from", "type": "Person"},
                    {"name": "to", "type": "Person"},
                    {"name": "contents", "type": "string"}
                ]
            },
            "primaryType": "Mail",
            "domain": {
                "name": "Ether Mail",
                "version": "1",
                "chainId": 1,
                "verifyingContract": "0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC"
            },
            "message": {
                "from": {"name": "Cow", "wallet": "0xCD2a3d9F938E13CD947Ec05AbC7FE734Df8DD826"},
                "to": {"name": "Bob", "wallet": "0xbBbBBBBbbBBBbbbBbbBbbbbBBbBbbbbBbBbbBBbB"},
                "contents": "Hello, Bob!"
            }
        })
    }

    #[test]
    fn the_eips_mail_example_hashes_as_published() {
        let typed = mail();
        let types = Types(typed["types"].as_object().unwrap().clone());
        assert_eq!(
            types.encode_type("Mail").unwrap(),
            "Mail(Person from,Person to,string contents)Person(string name,address wallet)"
        );
        assert_eq!(
            hex::encode(types.hash_struct("EIP712Domain", &typed["domain"]).unwrap()),
            "f2cee375fa42b42143804025fc449deafd50cc031ca257e0b194a650a912090f"
        );
        assert_eq!(
            hex::encode(types.hash_struct("Mail", &typed["message"]).unwrap()),
            "c52c0ee5d84264471806290a3f2c4cecfc5490626bf912d01f240d7a274b371e"
        );
        assert_eq!(
            hex::encode(digest(&typed).unwrap()),
            "be609aee343fb3c4b28e1df9e632fca64fcfaede20f02e86244efddf30957bd2"
        );
        // Without the domain type, the same digest (inferred).
        let mut inferred = typed.clone();
        inferred["types"]
            .as_object_mut()
            .unwrap()
            .remove("EIP712Domain");
        assert_eq!(digest(&inferred).unwrap(), digest(&typed).unwrap());
    }

    #[test]
    fn integers_encode_in_twos_complement_and_must_fit() {
        let word = |ty: &str, v: Value| integer(ty, &v).map(hex::encode);
        assert_eq!(word("uint256", json!(1)).unwrap(), format!("{:0>64}", "1"));
        assert_eq!(
            word("uint256", json!("0xff")).unwrap(),
            format!("{:0>64}", "ff")
        );
        assert_eq!(word("int8", json!(-1)).unwrap(), "f".repeat(64));
        assert_eq!(
            word("int8", json!(-128)).unwrap(),
            format!("{}80", "f".repeat(62))
        );
        assert!(word("int8", json!(128)).is_err());
        assert!(word("int8", json!(-129)).is_err());
        assert!(word("uint8", json!(256)).is_err());
        assert!(word("uint8", json!(-1)).is_err());
        assert!(word("uint256", json!("12a")).is_err());
    }

    #[test]
    fn missing_fields_and_unknown_types_are_named() {
        let mut typed = mail();
        typed["message"].as_object_mut().unwrap().remove("contents");
        assert!(
            digest(&typed)
                .unwrap_err()
                .contains("`Mail` lacks field `contents`")
        );
        let mut typed = mail();
        typed["primaryType"] = json!("Letter");
        assert!(
            digest(&typed)
                .unwrap_err()
                .contains("`Letter` is not defined")
        );
    }
}
