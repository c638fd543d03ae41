//! The `wallet` plugin on a node whose vault holds a known mnemonic:
//! published address vectors, and signatures checked by an independent
//! library (PyPI `eth-account`).

use std::io::Write;
use std::process::{Command, Stdio};

use hearth_tests::{TestNode, host_bin};

const PASSPHRASE: &str = "wallet test passphrase";
/// BIP39's test mnemonic (BIP84's vectors).
const ABANDON: &str =
    "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";
/// Anvil's default mnemonic.
const ANVIL: &str = "test test test test test test test test test test test junk";

/// A node with the wallet loaded and its vault imported from `mnemonic`.
fn wallet_node(mnemonic: &str, extra: &str) -> TestNode {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(host_bin())
        .args(["vault", "init", "--import"])
        .env("HEARTH_DATA_DIR", dir.path().join("data"))
        .env("HEARTH_PASSPHRASE", PASSPHRASE)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{mnemonic}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    TestNode::start_with_stack_env(
        dir,
        &format!(
            "[plugins.wallet]\ngrants.vault = [\"m/84'\", \"m/44'/60'\"]\ngrants.kv = true\n{extra}"
        ),
        &[("HEARTH_PASSPHRASE", PASSPHRASE)],
    )
}

#[test]
fn addresses_match_the_published_vectors_and_are_recorded() {
    let node = wallet_node(ABANDON, "");
    let btc = node
        .cli(&["call", "/node/wallet/address", r#"{"chain": "bitcoin"}"#])
        .ok_json();
    assert_eq!(btc["address"], "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu");
    assert_eq!(btc["path"], "m/84'/0'/0'/0/0");
    assert_eq!(
        btc["public_key"],
        "0330d54fd0dd420a6e5f8d3624f5f3482cae350f79d5f0753bf5beef9c2d91af3c"
    );
    // BIP84's second receiving address.
    let next = node
        .cli(&[
            "call",
            "/node/wallet/address",
            r#"{"chain": "bitcoin", "index": 1}"#,
        ])
        .ok_json();
    assert_eq!(
        next["address"],
        "bc1qnjg0jd8228aq7egyzacy8cys3knf9xvrerkf9g"
    );
    let listed = node.cli(&["call", "/node/wallet/accounts", "{}"]).ok_json();
    let addresses: Vec<&str> = listed["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["address"].as_str().unwrap())
        .collect();
    assert_eq!(
        addresses,
        [
            "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu",
            "bc1qnjg0jd8228aq7egyzacy8cys3knf9xvrerkf9g"
        ]
    );
    // An index past the hardened range is refused, and nothing recorded.
    let bad = node.cli(&[
        "call",
        "/node/wallet/address",
        r#"{"chain": "ethereum", "index": 2147483648}"#,
    ]);
    assert!(bad.stderr().contains("invalid-input"), "{}", bad.stderr());
}

#[test]
fn regtest_addresses_use_the_test_coin_type() {
    let node = wallet_node(
        ABANDON,
        "[plugins.wallet.config]\nbitcoin_network = \"regtest\"\n",
    );
    let btc = node
        .cli(&["call", "/node/wallet/address", r#"{"chain": "bitcoin"}"#])
        .ok_json();
    assert_eq!(btc["path"], "m/84'/1'/0'/0/0");
    // BIP84's testnet vector for the same mnemonic, with regtest's prefix.
    assert!(
        btc["address"].as_str().unwrap().starts_with("bcrt1q"),
        "{btc}"
    );
}

#[test]
fn ethereum_signatures_recover_to_the_address_with_eth_account() {
    let node = wallet_node(ANVIL, "");
    let eth = node
        .cli(&["call", "/node/wallet/address", r#"{"chain": "ethereum"}"#])
        .ok_json();
    assert_eq!(eth["address"], "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266");
    assert_eq!(eth["path"], "m/44'/60'/0'/0/0");

    let personal = node
        .cli(&[
            "call",
            "/node/wallet/sign-message",
            r#"{"chain": "ethereum", "message": "hello from hearth"}"#,
        ])
        .ok_json();
    let typed = serde_json::json!({
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"}
            ],
            "Person": [{"name": "name", "type": "string"}, {"name": "wallet", "type": "address"}],
            "Mail": [
                {"name": "from", "type": "Person"},
                {"name": "to", "type": "Person"},
                {"name": "contents", "type": "string"}
            ]
        },
        "primaryType": "Mail",
        "domain": {
            "name": "Ether Mail", "version": "1", "chainId": 31337,
            "verifyingContract": "0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC"
        },
        "message": {
            "from": {"name": "Cow", "wallet": "0xCD2a3d9F938E13CD947Ec05AbC7FE734Df8DD826"},
            "to": {"name": "Bob", "wallet": "0xbBbBBBBbbBBBbbbBbbBbbbbBBbBbbbbBbBbbBBbB"},
            "contents": "Hello, Bob!"
        }
    });
    let typed_sig = node
        .cli(&[
            "call",
            "/node/wallet/sign-typed-data",
            &serde_json::json!({ "typed_data": typed }).to_string(),
        ])
        .ok_json();

    // An independent implementation recovers both signers.
    let python = hearth_tests::require_python(&[("eth_account", "eth-account")]);
    let script = r#"
import json, sys
from eth_account import Account
from eth_account.messages import encode_defunct, encode_typed_data
args = json.loads(sys.argv[1])
personal = Account.recover_message(encode_defunct(text="hello from hearth"), signature=args["personal"])
typed = Account.recover_message(encode_typed_data(full_message=args["typed"]), signature=args["typed_sig"])
print(json.dumps({"personal": personal, "typed": typed}))
"#;
    let args = serde_json::json!({
        "personal": personal["signature"],
        "typed": typed,
        "typed_sig": typed_sig["signature"],
    });
    let out = Command::new(python)
        .args(["-c", script, &args.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recovered: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(recovered["personal"], eth["address"]);
    assert_eq!(recovered["typed"], eth["address"]);

    // Malformed typed data is refused with the reason.
    let bad = node.cli(&[
        "call",
        "/node/wallet/sign-typed-data",
        r#"{"typed_data": {"types": {}, "primaryType": "Mail", "domain": {}, "message": {}}}"#,
    ]);
    assert!(
        bad.stderr().contains("`Mail` is not defined"),
        "{}",
        bad.stderr()
    );
    // Every signature is in the log with who asked; no key material.
    let logs = node.logs();
    assert!(logs.contains("signed EIP-712 Mail"), "{logs}");
    assert!(logs.contains("0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"));
}
