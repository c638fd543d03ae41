//! The Ethereum operations that need the chain: `balance`, `nonce`,
//! `estimate`, `send`, `receipt` over JSON-RPC, and `sign-transaction`
//! (signs without sending). `send` and `sign-transaction` pass the
//! spending policy before anything is signed.

use hearth_sdk::prelude::*;
use serde_json::{Value, json};

use crate::amount::Amount;
use crate::eth::{self, Fees, Transaction};
use crate::{Chain, Key, rpc, sign, spend};

fn key(account: u32, index: u32) -> Result<crate::Address, CallError> {
    Key {
        chain: Chain::Ethereum,
        account,
        index,
    }
    .resolve()
}

fn address(field: &str, text: &str) -> Result<[u8; 20], CallError> {
    eth::parse_address(text).map_err(|e| CallError::invalid_input(format!("`{field}`: {e}")))
}

fn data(text: Option<&str>) -> Result<Vec<u8>, CallError> {
    let Some(text) = text else {
        return Ok(Vec::new());
    };
    text.strip_prefix("0x")
        .and_then(|digits| hex::decode(digits).ok())
        .ok_or_else(|| CallError::invalid_input("`data` must be 0x and hex digits"))
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BalanceInput {
    /// Any address; default this wallet's at `account`/`index`.
    #[serde(default)]
    address: Option<String>,
    #[serde(default)]
    account: u32,
    #[serde(default)]
    index: u32,
}

#[derive(Serialize, JsonSchema)]
pub struct BalanceOutput {
    address: String,
    /// In wei.
    balance: Amount,
    chain_id: u64,
}

pub fn balance(_cx: &Context, input: BalanceInput) -> Result<BalanceOutput, CallError> {
    let address = match &input.address {
        Some(text) => eth::checksummed(&address("address", text)?),
        None => key(input.account, input.index)?.address,
    };
    let balance = rpc::quantity("eth_getBalance", json!([address, "latest"]))?;
    Ok(BalanceOutput {
        address,
        balance: Amount(balance),
        chain_id: rpc::chain_id()?,
    })
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyInput {
    #[serde(default)]
    account: u32,
    #[serde(default)]
    index: u32,
}

#[derive(Serialize, JsonSchema)]
pub struct NonceOutput {
    address: String,
    /// The next nonce, counting pending transactions.
    nonce: u64,
}

fn next_nonce(address: &str) -> Result<u64, CallError> {
    let nonce = rpc::quantity("eth_getTransactionCount", json!([address, "pending"]))?;
    u64::try_from(nonce).map_err(|_| CallError::failed("the nonce does not fit 64 bits"))
}

pub fn nonce(_cx: &Context, input: KeyInput) -> Result<NonceOutput, CallError> {
    let address = key(input.account, input.index)?.address;
    Ok(NonceOutput {
        nonce: next_nonce(&address)?,
        address,
    })
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EstimateInput {
    /// The recipient, `0x…`.
    to: String,
    /// In wei.
    #[serde(default)]
    value: Amount,
    /// Call data, `0x…`.
    #[serde(default)]
    data: Option<String>,
    #[serde(default)]
    account: u32,
    #[serde(default)]
    index: u32,
}

#[derive(Serialize, JsonSchema)]
pub struct Estimate {
    gas_limit: u64,
    max_fee_per_gas: Amount,
    max_priority_fee_per_gas: Amount,
    chain_id: u64,
}

fn estimate_gas(from: &str, to: &[u8; 20], value: u128, data: &[u8]) -> Result<u64, CallError> {
    let mut call =
        json!({ "from": from, "to": eth::checksummed(to), "value": eth::quantity(value) });
    if !data.is_empty() {
        call["data"] = json!(format!("0x{}", hex::encode(data)));
    }
    let gas = rpc::quantity("eth_estimateGas", json!([call]))?;
    u64::try_from(gas).map_err(|_| CallError::failed("the gas estimate does not fit 64 bits"))
}

pub fn estimate(_cx: &Context, input: EstimateInput) -> Result<Estimate, CallError> {
    let from = key(input.account, input.index)?.address;
    let to = address("to", &input.to)?;
    let gas_limit = estimate_gas(&from, &to, input.value.0, &data(input.data.as_deref())?)?;
    let (max_fee, tip) = rpc::fees()?;
    Ok(Estimate {
        gas_limit,
        max_fee_per_gas: Amount(max_fee),
        max_priority_fee_per_gas: Amount(tip),
        chain_id: rpc::chain_id()?,
    })
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SendInput {
    /// The recipient, `0x…` (EIP-55 checksum checked when mixed case).
    to: String,
    /// In wei.
    value: Amount,
    /// Call data, `0x…`.
    #[serde(default)]
    data: Option<String>,
    /// The sending key; default account 0, index 0.
    #[serde(default)]
    account: u32,
    #[serde(default)]
    index: u32,
    /// Default: the node's pending count.
    #[serde(default)]
    nonce: Option<u64>,
    /// Default: the node's estimate.
    #[serde(default)]
    gas_limit: Option<u64>,
    /// EIP-1559 fees; default: twice the latest base fee plus the node's tip.
    #[serde(default)]
    max_fee_per_gas: Option<Amount>,
    #[serde(default)]
    max_priority_fee_per_gas: Option<Amount>,
    /// Set for a legacy (EIP-155) transaction at this gas price instead.
    #[serde(default)]
    gas_price: Option<Amount>,
}

#[derive(Serialize, JsonSchema)]
pub struct Sent {
    /// The transaction hash.
    hash: String,
    from: String,
    to: String,
    value: Amount,
    nonce: u64,
    chain_id: u64,
    gas_limit: u64,
    /// `eip1559` or `legacy`.
    kind: String,
    /// `sent`, or `uncertain` when the node's answer was lost (look the
    /// hash up with `receipt`; the spend stays counted).
    status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

/// The fees the caller gave: `gas_price` alone (legacy), both EIP-1559
/// fees, or none (`None`: the caller of this picks).
fn given_fees(
    gas_price: Option<Amount>,
    max_fee: Option<Amount>,
    tip: Option<Amount>,
) -> Result<Option<Fees>, CallError> {
    match (gas_price, max_fee, tip) {
        (Some(price), None, None) => Ok(Some(Fees::Legacy { gas_price: price.0 })),
        (None, Some(max), Some(tip)) => Ok(Some(Fees::Eip1559 {
            max_fee_per_gas: max.0,
            max_priority_fee_per_gas: tip.0,
        })),
        (None, None, None) => Ok(None),
        (Some(_), _, _) => Err(CallError::invalid_input(
            "give `gas_price` (legacy) or the EIP-1559 fees, not both",
        )),
        _ => Err(CallError::invalid_input(
            "give both `max_fee_per_gas` and `max_priority_fee_per_gas`, or neither",
        )),
    }
}

/// The policy, then the vault's signature, then the audit line: the
/// signed transaction and its hash.
fn authorize_and_sign(
    cx: &Context,
    path: &str,
    tx: &Transaction,
) -> Result<(Vec<u8>, [u8; 32]), CallError> {
    // The policy before the vault is asked for anything.
    let cost = authorize(cx, tx)?;
    let signature = sign(path, &tx.signing_hash())?;
    let to: Vec<String> = tx.to.iter().map(eth::checksummed).collect();
    spend::log_transaction(cx, "ethereum", Some(tx.chain_id), path, &to, cost);
    Ok(tx.signed(&signature))
}

/// Checks the most `tx` can cost (value plus gas limit times the highest
/// gas price) against the policy, counting it in the day's total.
fn authorize(cx: &Context, tx: &Transaction) -> Result<u128, CallError> {
    let price = match tx.fees {
        Fees::Eip1559 {
            max_fee_per_gas, ..
        } => max_fee_per_gas,
        Fees::Legacy { gas_price } => gas_price,
    };
    let cost = price
        .checked_mul(u128::from(tx.gas_limit))
        .and_then(|gas| gas.checked_add(tx.value))
        .ok_or_else(|| CallError::invalid_input("value plus gas overflows"))?;
    let to: Vec<String> = tx.to.iter().map(eth::checksummed).collect();
    spend::authorize(
        cx,
        "ethereum",
        Some(tx.chain_id),
        &to,
        cost,
        !tx.data.is_empty(),
    )?;
    Ok(cost)
}

pub fn send(cx: &Context, input: SendInput) -> Result<Sent, CallError> {
    let from = key(input.account, input.index)?;
    let to = address("to", &input.to)?;
    let data = data(input.data.as_deref())?;
    let chain_id = rpc::chain_id()?;
    let nonce = match input.nonce {
        Some(n) => n,
        None => next_nonce(&from.address)?,
    };
    let gas_limit = match input.gas_limit {
        Some(g) => g,
        None => estimate_gas(&from.address, &to, input.value.0, &data)?,
    };
    let fees = match given_fees(
        input.gas_price,
        input.max_fee_per_gas,
        input.max_priority_fee_per_gas,
    )? {
        Some(fees) => fees,
        None => {
            let (max, tip) = rpc::fees()?;
            Fees::Eip1559 {
                max_fee_per_gas: max,
                max_priority_fee_per_gas: tip,
            }
        }
    };
    let tx = Transaction {
        chain_id,
        nonce,
        to: Some(to),
        value: input.value.0,
        data,
        gas_limit,
        fees,
    };
    let (raw, hash) = authorize_and_sign(cx, &from.path, &tx)?;
    let hash = format!("0x{}", hex::encode(hash));
    let broadcast = rpc::call(
        "eth_sendRawTransaction",
        json!([format!("0x{}", hex::encode(raw))]),
    );
    let (status, note) = match broadcast {
        Ok(answered) => {
            if answered
                .as_str()
                .is_some_and(|h| !h.eq_ignore_ascii_case(&hash))
            {
                log::warn(&format!(
                    "the Ethereum node named the transaction {answered}, computed {hash}"
                ));
            }
            ("sent", None)
        }
        // The node may have taken it before its answer was lost: the spend
        // stays counted, and the caller looks the hash up with `receipt`.
        Err(e) if matches!(e.code, ErrorCode::Timeout | ErrorCode::Unavailable) => {
            log::warn(&format!("broadcast of {hash} uncertain: {}", e.message));
            ("uncertain", Some(e.message))
        }
        // The node refused it: nothing was spent, and the call failing
        // leaves the day's total as it was.
        Err(e) => return Err(e),
    };
    Ok(Sent {
        status: status.into(),
        note,
        hash,
        from: from.address,
        to: eth::checksummed(&to),
        value: input.value,
        nonce,
        chain_id,
        gas_limit,
        kind: match fees {
            Fees::Eip1559 { .. } => "eip1559".into(),
            Fees::Legacy { .. } => "legacy".into(),
        },
    })
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SignTransactionInput {
    chain_id: u64,
    nonce: u64,
    to: String,
    value: Amount,
    #[serde(default)]
    data: Option<String>,
    gas_limit: u64,
    #[serde(default)]
    max_fee_per_gas: Option<Amount>,
    #[serde(default)]
    max_priority_fee_per_gas: Option<Amount>,
    /// Legacy (EIP-155) instead of EIP-1559.
    #[serde(default)]
    gas_price: Option<Amount>,
    #[serde(default)]
    account: u32,
    #[serde(default)]
    index: u32,
}

#[derive(Serialize, JsonSchema)]
pub struct SignedTransaction {
    /// The signed transaction, `0x…`, for `eth_sendRawTransaction`.
    raw: String,
    hash: String,
    from: String,
}

pub fn sign_transaction(
    cx: &Context,
    input: SignTransactionInput,
) -> Result<SignedTransaction, CallError> {
    let from = key(input.account, input.index)?;
    let to = address("to", &input.to)?;
    let fees = given_fees(
        input.gas_price,
        input.max_fee_per_gas,
        input.max_priority_fee_per_gas,
    )?
    .ok_or_else(|| {
        CallError::invalid_input(
            "give `gas_price` (legacy), or both `max_fee_per_gas` and `max_priority_fee_per_gas`",
        )
    })?;
    let tx = Transaction {
        chain_id: input.chain_id,
        nonce: input.nonce,
        to: Some(to),
        value: input.value.0,
        data: data(input.data.as_deref())?,
        gas_limit: input.gas_limit,
        fees,
    };
    let (raw, hash) = authorize_and_sign(cx, &from.path, &tx)?;
    Ok(SignedTransaction {
        raw: format!("0x{}", hex::encode(raw)),
        hash: format!("0x{}", hex::encode(hash)),
        from: from.address,
    })
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReceiptInput {
    /// The transaction hash, `0x…`.
    hash: String,
}

#[derive(Serialize, JsonSchema)]
pub struct Receipt {
    /// False while the transaction is pending (or unknown).
    found: bool,
    /// `success` or `reverted`.
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    block_number: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gas_used: Option<u64>,
}

pub fn receipt(_cx: &Context, input: ReceiptInput) -> Result<Receipt, CallError> {
    let valid = input
        .hash
        .strip_prefix("0x")
        .is_some_and(|h| h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit()));
    if !valid {
        return Err(CallError::invalid_input(
            "`hash` must be 0x and 64 hex digits",
        ));
    }
    let receipt = rpc::call("eth_getTransactionReceipt", json!([input.hash]))?;
    if receipt.is_null() {
        return Ok(Receipt {
            found: false,
            status: None,
            block_number: None,
            gas_used: None,
        });
    }
    let number = |v: &Value| {
        v.as_str()
            .and_then(|t| eth::parse_quantity(t).ok())
            .and_then(|n| u64::try_from(n).ok())
    };
    Ok(Receipt {
        found: true,
        status: Some(
            if receipt["status"] == "0x1" {
                "success"
            } else {
                "reverted"
            }
            .into(),
        ),
        block_number: number(&receipt["blockNumber"]),
        gas_used: number(&receipt["gasUsed"]),
    })
}
