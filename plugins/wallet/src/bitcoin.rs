//! `sign-bitcoin-transaction`: a version 2 transaction spending this
//! wallet's P2WPKH outputs, signed with BIP143 sighashes, as raw hex. The
//! spend the policy sees is everything the inputs hold but the change that
//! returns to this wallet (the outputs and the fee); change goes to an
//! address the wallet derives itself, so it cannot hide a payment.

use hearth_sdk::prelude::*;

use crate::btc::{self, Input, Output, Transaction};
use crate::{bitcoin_network, sign, spend};

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SpentOutput {
    /// The transaction id holding the output, as displayed (hex).
    txid: String,
    vout: u32,
    /// Satoshi it holds (BIP143 signs it: a wrong amount gives an invalid
    /// signature).
    amount: u64,
    /// Which of this wallet's addresses holds it: the index, and whether
    /// it is on the change chain (`…/1/index`) rather than receiving.
    #[serde(default)]
    index: u32,
    #[serde(default)]
    change: bool,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Payment {
    /// A native SegWit address on the configured network.
    address: String,
    /// Satoshi.
    amount: u64,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Change {
    /// Index on this wallet's change chain (`m/84'/coin'/account'/1/index`).
    index: u32,
    amount: u64,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SignBitcoinInput {
    #[serde(default)]
    account: u32,
    inputs: Vec<SpentOutput>,
    outputs: Vec<Payment>,
    #[serde(default)]
    change: Option<Change>,
    #[serde(default)]
    lock_time: u32,
}

#[derive(Serialize, JsonSchema)]
pub struct SignedBitcoin {
    /// The signed transaction (segwit serialization), hex.
    raw: String,
    txid: String,
    /// Satoshi: inputs minus outputs and change.
    fee: u64,
}

/// Most inputs, and most outputs, of one transaction.
const MAX_PARTS: usize = 1000;

fn path(account: u32, change: bool, index: u32) -> Result<String, CallError> {
    if account > crate::MAX_INDEX || index > crate::MAX_INDEX {
        return Err(CallError::invalid_input(format!(
            "`account` and `index` are at most {}",
            crate::MAX_INDEX
        )));
    }
    Ok(format!(
        "m/84'/{}'/{account}'/{}/{index}",
        bitcoin_network()?.coin_type(),
        u8::from(change)
    ))
}

pub fn sign_transaction(cx: &Context, input: SignBitcoinInput) -> Result<SignedBitcoin, CallError> {
    let network = bitcoin_network()?;
    if input.inputs.is_empty() {
        return Err(CallError::invalid_input("`inputs` is empty"));
    }
    // Each input's BIP143 digest hashes every input and output.
    if input.inputs.len() > MAX_PARTS || input.outputs.len() > MAX_PARTS {
        return Err(CallError::invalid_input(format!(
            "at most {MAX_PARTS} inputs and {MAX_PARTS} outputs"
        )));
    }
    if input.outputs.is_empty() && input.change.is_none() {
        return Err(CallError::invalid_input("no outputs"));
    }
    let mut inputs = Vec::new();
    let mut paths = Vec::new();
    for (i, spent) in input.inputs.iter().enumerate() {
        let txid: [u8; 32] = hex::decode(&spent.txid)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| {
                CallError::invalid_input(format!("`inputs[{i}].txid` must be 64 hex digits"))
            })?;
        let path = path(input.account, spent.change, spent.index)?;
        inputs.push(Input {
            txid,
            vout: spent.vout,
            amount: spent.amount,
            // Enables `lock_time`; no replace-by-fee signal.
            sequence: 0xffff_fffe,
            public_key: vault::public_key(vault::Curve::Secp256k1, &path)?,
        });
        paths.push(path);
    }
    let mut outputs = Vec::new();
    let mut recipients = Vec::new();
    for (i, payment) in input.outputs.iter().enumerate() {
        let program = btc::parse_segwit_v0(network, &payment.address)
            .map_err(|e| CallError::invalid_input(format!("`outputs[{i}].address`: {e}")))?;
        outputs.push(Output {
            amount: payment.amount,
            script: btc::segwit_script(&program),
        });
        recipients.push(payment.address.to_lowercase());
    }
    let change_amount = match &input.change {
        Some(change) => {
            let path = path(input.account, true, change.index)?;
            let key = vault::public_key(vault::Curve::Secp256k1, &path)?;
            outputs.push(Output {
                amount: change.amount,
                script: btc::segwit_script(&btc::hash160(&key)),
            });
            change.amount
        }
        None => 0,
    };
    let total_in = input
        .inputs
        .iter()
        .try_fold(0u64, |sum, i| sum.checked_add(i.amount));
    let total_out = outputs
        .iter()
        .try_fold(0u64, |sum, o| sum.checked_add(o.amount));
    let (Some(total_in), Some(total_out)) = (total_in, total_out) else {
        return Err(CallError::invalid_input("amounts overflow"));
    };
    let fee = total_in.checked_sub(total_out).ok_or_else(|| {
        CallError::invalid_input(format!(
            "the outputs ({total_out} sat) are more than the inputs ({total_in} sat)"
        ))
    })?;
    let spent = u128::from(total_in - change_amount);
    spend::authorize(cx, "bitcoin", None, &recipients, spent, false)?;
    let tx = Transaction {
        version: 2,
        inputs,
        outputs,
        lock_time: input.lock_time,
    };
    let mut signatures = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        let sighash = tx.sighash(i).map_err(CallError::failed)?;
        signatures.push(btc::der(&sign(path, &sighash)?));
    }
    let (raw, txid) = tx.signed(&signatures);
    spend::log_transaction(cx, "bitcoin", None, &paths.join(" "), &recipients, spent);
    Ok(SignedBitcoin {
        raw: hex::encode(raw),
        txid: hex::encode(txid),
        fee,
    })
}
