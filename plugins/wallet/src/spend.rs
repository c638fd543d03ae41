//! Spending: the policy checked before a transaction is signed, the day's
//! running total it is checked against, and the audit line of each
//! signature. Totals live in kv (`spent/<chain>/<chain id>/<UTC day>`,
//! decimal) and are written in the call that signs, so a call that fails
//! after signing (the broadcast refused) leaves them as they were: the
//! host commits kv writes only when the call succeeds.

use hearth_sdk::prelude::*;

use crate::policy::{self, ChainPolicy, Spend};

/// Days since the Unix epoch, UTC.
fn today() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400)
}

fn total_key(chain: &str, chain_id: Option<u64>) -> String {
    let id = chain_id.map_or_else(|| "-".to_owned(), |id| id.to_string());
    format!("spent/{chain}/{id}/{}", today())
}

/// What has been spent today on `chain` (and chain id).
pub fn spent_today(chain: &str, chain_id: Option<u64>) -> Result<u128, CallError> {
    let Some(bytes) = kv::get(&total_key(chain, chain_id))? else {
        return Ok(0);
    };
    String::from_utf8_lossy(&bytes)
        .parse()
        .map_err(|_| CallError::failed("the day's spending total in kv is damaged"))
}

/// The chain's policy from config, if the operator set one.
fn policy_of(chain: &str) -> Result<Option<ChainPolicy>, CallError> {
    config::get_json(&format!("policy.{chain}"))
}

/// Checks a spend of `value` to `to` against the policy and, if it
/// passes, adds it to the day's total (committed with the call). A refusal
/// is `denied` naming the rule, and is logged.
pub fn authorize(
    cx: &Context,
    chain: &str,
    chain_id: Option<u64>,
    to: &[String],
    value: u128,
    calls_contract: bool,
) -> Result<(), CallError> {
    let policy = policy_of(chain)?;
    let spent = spent_today(chain, chain_id)?;
    let spend = Spend {
        chain_id,
        to,
        value,
        spent_today: spent,
        calls_contract,
    };
    policy::check(chain, policy.as_ref(), &spend).map_err(|rule| refuse(cx, &rule))?;
    kv::set(
        &total_key(chain, chain_id),
        (spent.saturating_add(value)).to_string().as_bytes(),
    )
}

fn refuse(cx: &Context, rule: &str) -> CallError {
    log::warn(&format!("refused to sign for {}: {rule}", cx.identity().id));
    CallError::new(ErrorCode::Denied, format!("spending policy: {rule}"))
}

/// EIP-712 signatures can authorize token movements (permits, orders) the
/// limits cannot price: allowed only when the Ethereum policy says so, and
/// for a domain on an allowed chain.
pub fn authorize_typed_data(cx: &Context, chain_id: Option<u64>) -> Result<(), CallError> {
    let Some(policy) = policy_of("ethereum")? else {
        return Err(refuse(
            cx,
            "no spending policy for ethereum: typed data is signed only when [plugins.wallet.config.policy.ethereum] sets allow_typed_data = true",
        ));
    };
    if !policy.allow_typed_data {
        return Err(refuse(
            cx,
            "typed data is not allowed (policy.ethereum.allow_typed_data)",
        ));
    }
    if let Some(id) = chain_id
        && !policy.chain_ids.contains(&id)
    {
        return Err(refuse(
            cx,
            &format!(
                "the typed data's domain is for chain id {id}, which policy.ethereum.chain_ids does not allow"
            ),
        ));
    }
    Ok(())
}

/// The audit line of a transaction signature: who asked, with which key,
/// on which chain, to whom, how much. Never key material.
pub fn log_transaction(
    cx: &Context,
    chain: &str,
    chain_id: Option<u64>,
    path: &str,
    to: &[String],
    value: u128,
) {
    log::info(&format!(
        "signed a transaction on {chain} for {caller}: key {path}, chain id {id}, to {to}, value {value}",
        caller = cx.identity().id,
        id = chain_id.map_or_else(|| "-".to_owned(), |id| id.to_string()),
        to = to.join(", "),
    ));
}
