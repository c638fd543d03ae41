//! `wallet`: Bitcoin and Ethereum addresses and signatures from the node's
//! one seed. The plugin holds no key: the vault derives and signs at paths
//! under the prefixes the operator grants (`grants.vault = ["m/84'",
//! "m/44'/60'"]`), and nothing here ever sees key material.
//!
//! | operation          | kind     | scope         | what                                      |
//! |--------------------|----------|---------------|-------------------------------------------|
//! | `address`          | mutation | `wallet:read` | the address at (chain, account, index), recorded |
//! | `accounts`         | query    | `wallet:read` | the addresses handed out so far           |
//! | `sign-message`     | mutation | `wallet:sign` | EIP-191 `personal_sign`, or a Bitcoin message (BIP137) |
//! | `sign-typed-data`  | mutation | `wallet:sign` | EIP-712 typed data                        |
//! | `sign-transaction` | mutation | `wallet:sign` | an Ethereum transaction (EIP-1559 or legacy), not sent |
//! | `sign-bitcoin-transaction` | mutation | `wallet:sign` | a P2WPKH spend (BIP143), raw hex |
//! | `balance`, `nonce`, `estimate`, `receipt` | query | `wallet:read` | Ethereum over JSON-RPC |
//! | `send`             | mutation | `wallet:sign` | sign and broadcast an Ethereum transaction |
//!
//! Transactions pass the spending policy (`policy.<chain>` in config, see
//! [`policy`]) before the vault is asked for a signature; a refusal is
//! `denied` naming the rule. Ethereum's node is config `ethereum_rpc`,
//! whose origin must be in `grants.http`.
//!
//! Paths: Bitcoin BIP84 `m/84'/coin'/account'/0/index` (coin 0 on mainnet,
//! 1 on testnet, signet and regtest; `bitcoin_network` in config),
//! Ethereum BIP44 `m/44'/60'/account'/0/index`. Every signature is logged
//! with the caller's identity, the path and what was signed.

mod amount;
mod bitcoin;
mod btc;
mod eip712;
mod eth;
mod ethereum;
mod policy;
mod rlp;
mod rpc;
mod spend;

use hearth_sdk::prelude::*;
use hearth_sdk::vault::Curve;

/// Which chain.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
enum Chain {
    Bitcoin,
    Ethereum,
}

impl Chain {
    fn as_str(self) -> &'static str {
        match self {
            Chain::Bitcoin => "bitcoin",
            Chain::Ethereum => "ethereum",
        }
    }
}

/// Hardened indexes stop at 2^31.
const MAX_INDEX: u32 = (1 << 31) - 1;

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Key {
    /// `bitcoin` or `ethereum`.
    chain: Chain,
    /// The account (hardened in the path); default 0.
    #[serde(default)]
    account: u32,
    /// The address index within the account; default 0.
    #[serde(default)]
    index: u32,
}

/// An address this wallet handed out.
#[derive(Serialize, Deserialize, JsonSchema, Clone)]
struct Address {
    chain: Chain,
    account: u32,
    index: u32,
    /// `bc1q…`/`tb1q…`/`bcrt1q…`, or an EIP-55 `0x…` address.
    address: String,
    /// The derivation path.
    path: String,
    /// Compressed secp256k1 public key, hex.
    public_key: String,
}

fn bitcoin_network() -> Result<btc::Network, CallError> {
    let name = config::get("bitcoin_network")?.unwrap_or_else(|| "mainnet".into());
    btc::Network::parse(&name).map_err(|e| CallError::invalid_input(format!("config: {e}")))
}

impl Key {
    fn path(&self) -> Result<String, CallError> {
        if self.account > MAX_INDEX || self.index > MAX_INDEX {
            return Err(CallError::invalid_input(format!(
                "`account` and `index` are at most {MAX_INDEX}"
            )));
        }
        Ok(match self.chain {
            Chain::Bitcoin => format!(
                "m/84'/{}'/{}'/0/{}",
                bitcoin_network()?.coin_type(),
                self.account,
                self.index
            ),
            Chain::Ethereum => format!("m/44'/60'/{}'/0/{}", self.account, self.index),
        })
    }

    fn resolve(&self) -> Result<Address, CallError> {
        let path = self.path()?;
        let public_key = vault::public_key(Curve::Secp256k1, &path)?;
        let address = match self.chain {
            Chain::Bitcoin => btc::p2wpkh_address(bitcoin_network()?, &public_key),
            Chain::Ethereum => {
                eth::checksummed(&eth::address_of(&public_key).map_err(CallError::failed)?)
            }
        };
        Ok(Address {
            chain: self.chain,
            account: self.account,
            index: self.index,
            address,
            path,
            public_key: hex::encode(public_key),
        })
    }
}

fn record_key(a: &Address) -> String {
    format!("address/{}/{}/{}", a.chain.as_str(), a.account, a.index)
}

fn address(_cx: &Context, input: Key) -> Result<Address, CallError> {
    let address = input.resolve()?;
    kv::set_json(&record_key(&address), &address)?;
    Ok(address)
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct AccountsInput {
    /// Only this chain's addresses.
    #[serde(default)]
    chain: Option<Chain>,
}

#[derive(Serialize, JsonSchema)]
struct AccountsOutput {
    addresses: Vec<Address>,
}

fn accounts(_cx: &Context, input: AccountsInput) -> Result<AccountsOutput, CallError> {
    let prefix = match input.chain {
        Some(chain) => format!("address/{}/", chain.as_str()),
        None => "address/".into(),
    };
    let mut addresses = Vec::new();
    for key in kv::list_keys(&prefix, 10_000)? {
        if let Some(a) = kv::get_json::<Address>(&key)? {
            addresses.push(a);
        }
    }
    addresses.sort_by_key(|a| (a.chain.as_str(), a.account, a.index));
    Ok(AccountsOutput { addresses })
}

/// The vault's recoverable signature of `digest` at `path`.
fn sign(path: &str, digest: &[u8; 32]) -> Result<[u8; 65], CallError> {
    let signature: [u8; 65] = vault::sign_secp256k1(path, digest)?
        .try_into()
        .map_err(|_| CallError::failed("the vault returned a signature of the wrong length"))?;
    if signature[64] > 1 {
        return Err(CallError::failed(
            "the vault returned a recovery id other than 0 or 1",
        ));
    }
    Ok(signature)
}

/// The audit line of one signature: who asked, with which key, for what.
fn log_signature(cx: &Context, key: &Address, what: &str) {
    log::info(&format!(
        "signed {what} for {caller} with {chain} {address} ({path})",
        caller = cx.identity().id,
        chain = key.chain.as_str(),
        address = key.address,
        path = key.path,
    ));
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SignMessageInput {
    #[serde(flatten)]
    key: Key,
    /// The message, as text.
    message: String,
}

#[derive(Serialize, JsonSchema)]
struct SignatureOutput {
    /// The signer's address.
    address: String,
    /// Ethereum: `0x` r‖s‖v hex (v 27/28). Bitcoin: base64 of the 65-byte
    /// BIP137 signature (header 39–42, P2WPKH).
    signature: String,
    /// The 32-byte digest that was signed, hex.
    digest: String,
}

fn sign_message(cx: &Context, input: SignMessageInput) -> Result<SignatureOutput, CallError> {
    let key = input.key.resolve()?;
    let (digest, signature) = match key.chain {
        Chain::Ethereum => {
            let digest = eth::personal_hash(input.message.as_bytes());
            let signature = sign(&key.path, &digest)?;
            (digest, eth::signature_hex(&signature))
        }
        Chain::Bitcoin => {
            let digest = btc::message_hash(input.message.as_bytes());
            let signature = sign(&key.path, &digest)?;
            (digest, base64(&btc::message_signature(&signature)))
        }
    };
    log_signature(
        cx,
        &key,
        &format!("a message of {} bytes", input.message.len()),
    );
    Ok(SignatureOutput {
        address: key.address,
        signature,
        digest: hex::encode(digest),
    })
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SignTypedDataInput {
    /// The Ethereum account; default 0.
    #[serde(default)]
    account: u32,
    /// The address index; default 0.
    #[serde(default)]
    index: u32,
    /// EIP-712 typed data: `{types, primaryType, domain, message}`.
    typed_data: serde_json::Value,
}

fn sign_typed_data(cx: &Context, input: SignTypedDataInput) -> Result<SignatureOutput, CallError> {
    let digest = eip712::digest(&input.typed_data)
        .map_err(|e| CallError::invalid_input(format!("typed_data: {e}")))?;
    let chain_id = match &input.typed_data["domain"]["chainId"] {
        serde_json::Value::Null => None,
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(t) => match t.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16).ok(),
            None => t.parse().ok(),
        },
        _ => None,
    };
    if chain_id.is_none() && !input.typed_data["domain"]["chainId"].is_null() {
        return Err(CallError::invalid_input(
            "typed_data: domain.chainId is not a chain id",
        ));
    }
    spend::authorize_typed_data(cx, chain_id)?;
    let key = Key {
        chain: Chain::Ethereum,
        account: input.account,
        index: input.index,
    }
    .resolve()?;
    let signature = sign(&key.path, &digest)?;
    log_signature(
        cx,
        &key,
        &format!(
            "EIP-712 {} (chain id {})",
            input.typed_data["primaryType"].as_str().unwrap_or("?"),
            input.typed_data["domain"]["chainId"]
        ),
    );
    Ok(SignatureOutput {
        address: key.address,
        signature: eth::signature_hex(&signature),
        digest: hex::encode(digest),
    })
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

struct Wallet;

impl Plugin for Wallet {
    fn operations(ops: &mut Operations) {
        ops.mutation(
            "address",
            "The Bitcoin (BIP84) or Ethereum (BIP44) address at an account and index, recorded in `accounts`.",
            address,
        )
        .scopes(&["wallet:read"]);
        ops.query("accounts", "The addresses handed out so far.", accounts)
            .scopes(&["wallet:read"]);
        ops.mutation(
            "sign-message",
            "Signs a text message: Ethereum personal_sign (EIP-191) or a Bitcoin message (BIP137).",
            sign_message,
        )
        .scopes(&["wallet:sign"]);
        ops.mutation(
            "sign-typed-data",
            "Signs EIP-712 typed data with an Ethereum key.",
            sign_typed_data,
        )
        .scopes(&["wallet:sign"]);
        ops.mutation(
            "sign-transaction",
            "Signs an Ethereum transaction (EIP-1559, or legacy with an EIP-155 chain id) within the spending policy, without sending it.",
            ethereum::sign_transaction,
        )
        .scopes(&["wallet:sign"]);
        ops.mutation(
            "sign-bitcoin-transaction",
            "Signs a transaction spending this wallet's P2WPKH outputs (BIP143) within the spending policy; returns raw hex.",
            bitcoin::sign_transaction,
        )
        .scopes(&["wallet:sign"]);
        ops.mutation(
            "send",
            "Signs an Ethereum transaction within the spending policy and broadcasts it; returns its hash.",
            ethereum::send,
        )
        .scopes(&["wallet:sign"]);
        ops.query(
            "balance",
            "An Ethereum address's balance in wei (this wallet's by default).",
            ethereum::balance,
        )
        .scopes(&["wallet:read"]);
        ops.query(
            "nonce",
            "The next nonce of this wallet's Ethereum address, counting pending transactions.",
            ethereum::nonce,
        )
        .scopes(&["wallet:read"]);
        ops.query(
            "estimate",
            "Gas and EIP-1559 fees for a transaction from this wallet.",
            ethereum::estimate,
        )
        .scopes(&["wallet:read"]);
        ops.query(
            "receipt",
            "A transaction's receipt: found, success or reverted, block, gas used.",
            ethereum::receipt,
        )
        .scopes(&["wallet:read"]);
    }
}

hearth_sdk::export_plugin!(Wallet);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_pads_like_the_standard() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }
}
