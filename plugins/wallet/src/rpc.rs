//! Ethereum JSON-RPC over the plugin's HTTP grant: the node at config
//! `ethereum_rpc` (its origin must be in `grants.http`).

use hearth_sdk::prelude::*;
use serde_json::{Value, json};

use crate::eth;

fn endpoint() -> Result<String, CallError> {
    config::get("ethereum_rpc")?.ok_or_else(|| {
        CallError::invalid_input(
            "config `ethereum_rpc` is not set: give the Ethereum node's JSON-RPC URL, such as \"http://127.0.0.1:8545\", and grant its origin in `grants.http`",
        )
    })
}

/// Calls `method`; a JSON-RPC error comes back typed with the node's text.
pub fn call(method: &str, params: Value) -> Result<Value, CallError> {
    let request = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
    let answer: Value = http::post(endpoint()?)
        .json(&request)?
        .send()?
        .error_for_status()?
        .json()?;
    if let Some(error) = answer.get("error") {
        let message = error["message"].as_str().unwrap_or("error");
        let code = match error["code"].as_i64() {
            // Invalid params, and execution reverted / insufficient funds.
            Some(-32602) | Some(-32000) | Some(3) => ErrorCode::InvalidInput,
            Some(-32601) => ErrorCode::NotFound,
            _ => ErrorCode::Failed,
        };
        return Err(CallError {
            code,
            message: format!("the Ethereum node ({method}): {message}"),
        });
    }
    Ok(answer.get("result").cloned().unwrap_or(Value::Null))
}

/// A quantity result as a number.
pub fn quantity(method: &str, params: Value) -> Result<u128, CallError> {
    let value = call(method, params)?;
    let text = value.as_str().ok_or_else(|| {
        CallError::failed(format!(
            "the Ethereum node answered {method} with {value}, not a quantity"
        ))
    })?;
    eth::parse_quantity(text).map_err(CallError::failed)
}

pub fn chain_id() -> Result<u64, CallError> {
    let id = quantity("eth_chainId", json!([]))?;
    u64::try_from(id).map_err(|_| CallError::failed("the chain id does not fit 64 bits"))
}

/// Fees for a type-2 transaction now: the latest base fee doubled plus
/// the node's suggested tip.
pub fn fees() -> Result<(u128, u128), CallError> {
    let block = call("eth_getBlockByNumber", json!(["latest", false]))?;
    let base = block["baseFeePerGas"]
        .as_str()
        .map(eth::parse_quantity)
        .transpose()
        .map_err(CallError::failed)?
        .ok_or_else(|| {
            CallError::new(
                ErrorCode::Unavailable,
                "the latest block has no base fee (a pre-London chain): send with `legacy: true`",
            )
        })?;
    let tip = quantity("eth_maxPriorityFeePerGas", json!([]))?;
    Ok((base.saturating_mul(2).saturating_add(tip), tip))
}
