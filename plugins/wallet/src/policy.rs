//! The spending policy, checked before any transaction is signed.
//!
//! From config, per chain (`[plugins.wallet.config.policy.ethereum]`,
//! `…policy.bitcoin`); amounts in the chain's smallest unit (wei,
//! satoshi), as numbers or decimal strings (wei overflow JSON numbers):
//!
//! ```toml
//! [plugins.wallet.config.policy.ethereum]
//! chain_ids = [1, 31337]                        # only these chains
//! max_per_transaction = "1000000000000000000"   # 1 ETH
//! max_per_day = "3000000000000000000"           # per UTC day, per chain id
//! allow_to = ["0x70997970C51812dc3A010C7d01b50e0d17dc79C8"]  # optional
//! allow_contract_calls = false   # transactions with `data` (token transfers
//!                                # move value these limits do not see)
//! allow_typed_data = false       # EIP-712 signatures (permits move tokens)
//! ```
//!
//! Deny by default: a chain with no policy signs no transaction, and a
//! policy without limits is refused as incomplete. The value checked is
//! the most the transaction can cost: Ethereum's value plus its gas limit
//! times its highest gas price, Bitcoin's inputs less the change that
//! returns to the wallet.

use serde::Deserialize;

/// One chain's rules.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainPolicy {
    /// Chain ids allowed (Ethereum); none means none is.
    #[serde(default)]
    pub chain_ids: Vec<u64>,
    #[serde(deserialize_with = "amount")]
    pub max_per_transaction: u128,
    #[serde(deserialize_with = "amount")]
    pub max_per_day: u128,
    /// Recipients allowed; absent means any.
    #[serde(default)]
    pub allow_to: Option<Vec<String>>,
    /// Whether transactions may carry call data.
    #[serde(default)]
    pub allow_contract_calls: bool,
    /// Whether EIP-712 typed data may be signed.
    #[serde(default)]
    pub allow_typed_data: bool,
}

/// A whole amount from a number or a decimal string (wei overflow JSON numbers).
pub fn amount<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Amount {
        Number(u64),
        Text(String),
    }
    match Amount::deserialize(d)? {
        Amount::Number(n) => Ok(n.into()),
        Amount::Text(t) => t
            .parse()
            .map_err(|_| serde::de::Error::custom(format!("{t:?} is not a whole amount"))),
    }
}

/// A transaction about to be signed.
#[derive(Debug, Clone)]
pub struct Spend<'a> {
    /// The chain id (Ethereum), if the chain has them.
    pub chain_id: Option<u64>,
    /// The recipients as given (none for a spend that only pays fees).
    pub to: &'a [String],
    /// Whether it calls a contract (carries data).
    pub calls_contract: bool,
    pub value: u128,
    /// Already spent today on this chain (and chain id).
    pub spent_today: u128,
}

/// Why a spend is refused: the rule it broke, for the caller.
pub fn check(chain: &str, policy: Option<&ChainPolicy>, spend: &Spend) -> Result<(), String> {
    let Some(policy) = policy else {
        return Err(format!(
            "no spending policy for {chain}: nothing is signed until the operator sets [plugins.wallet.config.policy.{chain}]"
        ));
    };
    if let Some(id) = spend.chain_id
        && !policy.chain_ids.contains(&id)
    {
        return Err(format!(
            "chain id {id} is not allowed (policy.{chain}.chain_ids = {:?})",
            policy.chain_ids
        ));
    }
    if spend.value > policy.max_per_transaction {
        return Err(format!(
            "{} is over the per-transaction limit of {} (policy.{chain}.max_per_transaction)",
            spend.value, policy.max_per_transaction
        ));
    }
    let total = spend.spent_today.saturating_add(spend.value);
    if total > policy.max_per_day {
        return Err(format!(
            "{} more would make {total} today, over the daily limit of {} (policy.{chain}.max_per_day; {} spent so far)",
            spend.value, policy.max_per_day, spend.spent_today
        ));
    }
    if spend.calls_contract && !policy.allow_contract_calls {
        return Err(format!(
            "transactions with call data are not allowed (policy.{chain}.allow_contract_calls)"
        ));
    }
    if let Some(allowed) = &policy.allow_to {
        for to in spend.to {
            if !allowed.iter().any(|a| a.eq_ignore_ascii_case(to)) {
                return Err(format!(
                    "recipient {to} is not on the allow list (policy.{chain}.allow_to)"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> ChainPolicy {
        serde_json::from_value(serde_json::json!({
            "chain_ids": [31337],
            "max_per_transaction": "1000",
            "max_per_day": 2500,
            "allow_to": ["0xAbC"]
        }))
        .unwrap()
    }

    fn spend(value: u128, spent_today: u128) -> Spend<'static> {
        static TO: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
        Spend {
            chain_id: Some(31337),
            to: TO.get_or_init(|| vec!["0xabc".to_owned()]),
            calls_contract: false,
            value,
            spent_today,
        }
    }

    #[test]
    fn within_every_rule_passes() {
        assert_eq!(
            check("ethereum", Some(&policy()), &spend(1000, 1500)),
            Ok(())
        );
    }

    #[test]
    fn each_rule_refuses_and_names_itself() {
        let p = policy();
        let refused = |s: &Spend| check("ethereum", Some(&p), s).unwrap_err();
        assert!(refused(&spend(1001, 0)).contains("max_per_transaction"));
        assert!(refused(&spend(1000, 1501)).contains("max_per_day"));
        let elsewhere = Spend {
            chain_id: Some(1),
            ..spend(1, 0)
        };
        assert!(refused(&elsewhere).contains("chain_ids"));
        let strangers = ["0xabc".to_owned(), "0xdef".to_owned()];
        let stranger = Spend {
            to: &strangers,
            ..spend(1, 0)
        };
        assert!(refused(&stranger).contains("recipient 0xdef"));
        // Paying no one (only fees) still meets the limits.
        let fees_only = Spend {
            to: &[],
            ..spend(1001, 0)
        };
        assert!(refused(&fees_only).contains("max_per_transaction"));
        let call = Spend {
            calls_contract: true,
            ..spend(1, 0)
        };
        assert!(refused(&call).contains("allow_contract_calls"));
        assert!(
            check("bitcoin", None, &spend(1, 0))
                .unwrap_err()
                .contains("no spending policy for bitcoin")
        );
    }

    #[test]
    fn an_incomplete_policy_does_not_parse() {
        let missing: Result<ChainPolicy, _> =
            serde_json::from_value(serde_json::json!({ "max_per_day": 1 }));
        assert!(missing.is_err());
        let bad: Result<ChainPolicy, _> = serde_json::from_value(serde_json::json!({
            "max_per_transaction": "1e18", "max_per_day": 1
        }));
        assert!(bad.unwrap_err().to_string().contains("whole amount"));
    }
}
