//! The `wallet` plugin on a node whose vault holds a known mnemonic:
//! published address vectors, and signatures checked by an independent
//! library (PyPI `eth-account`).

use std::process::Command;

use hearth_tests::TestNode;

const PASSPHRASE: &str = "wallet test passphrase";
/// BIP39's test mnemonic (BIP84's vectors).
const ABANDON: &str =
    "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";
/// Anvil's default mnemonic.
const ANVIL: &str = "test test test test test test test test test test test junk";

/// A node with the wallet loaded and its vault imported from `mnemonic`.
fn wallet_node(mnemonic: &str, extra: &str) -> TestNode {
    let dir = tempfile::tempdir().unwrap();
    let out = hearth_tests::vault_import(&dir.path().join("data"), PASSPHRASE, mnemonic);
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
    let node = wallet_node(
        ANVIL,
        r#"[plugins.wallet.config.policy.ethereum]
chain_ids = [31337]
max_per_transaction = 0
max_per_day = 0
allow_typed_data = true
"#,
    );
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

    // Typed data for a chain the policy does not allow is not signed.
    let mut mainnet = typed.clone();
    mainnet["domain"]["chainId"] = serde_json::json!(1);
    let refused = node.cli(&[
        "call",
        "/node/wallet/sign-typed-data",
        &serde_json::json!({ "typed_data": mainnet }).to_string(),
    ]);
    assert!(
        refused.stderr().contains("chain id 1"),
        "{}",
        refused.stderr()
    );
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

/// Anvil (from npm) on a free port: chain id 31337, its default mnemonic's
/// accounts prefunded with 10000 ETH each.
fn anvil() -> crate::adapters::Server {
    let dir = hearth_tests::require_npm("anvil", &["@foundry-rs/anvil"]);
    let port = crate::adapters::free_port();
    let mut command = Command::new(dir.join("node_modules/.bin/anvil"));
    command.args(["--host", "127.0.0.1", "--port", &port.to_string()]);
    crate::adapters::serve("anvil", command, port)
}

/// Anvil's second and third accounts.
const ALICE: &str = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";
const MALLORY: &str = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC";
const ETH: u128 = 1_000_000_000_000_000_000;

fn ethereum_node(anvil: &crate::adapters::Server, chain_ids: &str) -> TestNode {
    wallet_node(
        ANVIL,
        &format!(
            r#"grants.http = ["http://127.0.0.1:{port}"]
[plugins.wallet.config]
ethereum_rpc = "http://127.0.0.1:{port}"
[plugins.wallet.config.policy.ethereum]
chain_ids = {chain_ids}
max_per_transaction = "{per_tx}"
max_per_day = "{per_day}"
allow_to = ["{ALICE}"]
"#,
            port = anvil.port,
            // Value plus the most its gas can cost.
            per_tx = ETH + ETH / 10,
            per_day = ETH + ETH * 6 / 10,
        ),
    )
}

fn balance_of(node: &TestNode, address: &str) -> u128 {
    let out = node
        .cli(&[
            "call",
            "/node/wallet/balance",
            &serde_json::json!({ "address": address }).to_string(),
        ])
        .ok_json();
    out["balance"].as_str().unwrap().parse().unwrap()
}

fn nonce(node: &TestNode) -> u64 {
    node.cli(&["call", "/node/wallet/nonce", "{}"]).ok_json()["nonce"]
        .as_u64()
        .unwrap()
}

fn mined(node: &TestNode, hash: &str) -> serde_json::Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let receipt = node
            .cli(&[
                "call",
                "/node/wallet/receipt",
                &serde_json::json!({ "hash": hash }).to_string(),
            ])
            .ok_json();
        if receipt["found"] == true {
            return receipt;
        }
        assert!(std::time::Instant::now() < deadline, "{hash} never mined");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn sends_within_the_policy_are_mined_and_the_rest_refused_unsent() {
    let anvil = anvil();
    let node = ethereum_node(&anvil, "[31337]");
    let me = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";
    let own = node.cli(&["call", "/node/wallet/balance", "{}"]).ok_json();
    assert_eq!(own["address"], me);
    assert_eq!(
        own["balance"],
        (10_000 * ETH).to_string(),
        "anvil's prefunding"
    );
    assert_eq!(own["chain_id"], 31337);
    let estimate = node
        .cli(&[
            "call",
            "/node/wallet/estimate",
            &serde_json::json!({ "to": ALICE, "value": ETH.to_string() }).to_string(),
        ])
        .ok_json();
    assert_eq!(estimate["gas_limit"], 21000);

    // An EIP-1559 transfer within the policy is mined; Alice gets exactly it.
    let before = balance_of(&node, ALICE);
    let sent = node
        .cli(&[
            "call",
            "/node/wallet/send",
            &serde_json::json!({ "to": ALICE, "value": ETH.to_string() }).to_string(),
        ])
        .ok_json();
    assert_eq!(sent["kind"], "eip1559");
    assert_eq!(sent["status"], "sent");
    assert_eq!(sent["from"], me);
    let receipt = mined(&node, sent["hash"].as_str().unwrap());
    assert_eq!(receipt["status"], "success", "{receipt}");
    assert_eq!(balance_of(&node, ALICE), before + ETH);
    assert_eq!(nonce(&node), 1);

    // Refused, each naming its rule, and nothing reaches the chain.
    let refused = |input: serde_json::Value, rule: &str| {
        let out = node.cli(&["call", "/node/wallet/send", &input.to_string()]);
        assert!(
            out.stderr().contains("error[denied]") && out.stderr().contains(rule),
            "{rule}: {}",
            out.stderr()
        );
    };
    refused(
        serde_json::json!({ "to": ALICE, "value": (2 * ETH).to_string() }),
        "max_per_transaction",
    );
    refused(
        serde_json::json!({ "to": ALICE, "value": (ETH * 6 / 10).to_string() }),
        "max_per_day",
    );
    // Call data can move tokens the limits do not see: refused unless
    // the policy allows contract calls.
    refused(
        serde_json::json!({ "to": ALICE, "value": "1", "data": "0xa9059cbb" }),
        "allow_contract_calls",
    );
    refused(
        serde_json::json!({ "to": MALLORY, "value": "1" }),
        "allow_to",
    );
    assert_eq!(nonce(&node), 1, "a refused send broadcasts nothing");
    assert_eq!(balance_of(&node, ALICE), before + ETH);

    // A legacy transaction within what is left of the day.
    let legacy = node
        .cli(&[
            "call",
            "/node/wallet/send",
            &serde_json::json!({ "to": ALICE, "value": (ETH / 4).to_string(), "gas_price": "3000000000" })
                .to_string(),
        ])
        .ok_json();
    assert_eq!(legacy["kind"], "legacy");
    assert_eq!(
        mined(&node, legacy["hash"].as_str().unwrap())["status"],
        "success"
    );
    assert_eq!(balance_of(&node, ALICE), before + ETH + ETH / 4);

    // A transaction for another chain is not signed at all.
    let other_chain = node.cli(&[
        "call",
        "/node/wallet/sign-transaction",
        &serde_json::json!({
            "chain_id": 1, "nonce": 0, "to": ALICE, "value": "1", "gas_limit": 21000,
            "max_fee_per_gas": "1000000000", "max_priority_fee_per_gas": "1"
        })
        .to_string(),
    ]);
    assert!(
        other_chain.stderr().contains("chain id 1 is not allowed"),
        "{}",
        other_chain.stderr()
    );
    let logs = node.logs();
    assert!(logs.contains(&format!("to {ALICE}, value 1000")), "{logs}");
    assert!(logs.contains("refused to sign"), "{logs}");
}

#[test]
fn a_node_whose_policy_lacks_the_chain_signs_nothing() {
    let anvil = anvil();
    // The policy allows chain 1 only; anvil is 31337.
    let node = ethereum_node(&anvil, "[1]");
    let out = node.cli(&[
        "call",
        "/node/wallet/send",
        &serde_json::json!({ "to": ALICE, "value": "1" }).to_string(),
    ]);
    assert!(
        out.stderr().contains("chain id 31337 is not allowed"),
        "{}",
        out.stderr()
    );
    assert_eq!(nonce(&node), 0);
    // And with no policy at all, nothing is signed either.
    let bare = wallet_node(ANVIL, "");
    let out = bare.cli(&[
        "call",
        "/node/wallet/sign-transaction",
        &serde_json::json!({
            "chain_id": 31337, "nonce": 0, "to": ALICE, "value": "1", "gas_limit": 21000,
            "gas_price": "1000000000"
        })
        .to_string(),
    ]);
    assert!(
        out.stderr().contains("no spending policy for ethereum"),
        "{}",
        out.stderr()
    );
}

/// Checks a signed segwit transaction with code that shares nothing with
/// the wallet: parses it, computes each input's BIP143 sighash from the
/// given amounts, verifies the DER signatures with `eth_keys`, recomputes
/// the txid, and checks output 0 pays `payee_key`'s hash.
const VERIFY_BITCOIN: &str = r#"
import hashlib, json, sys
from Crypto.Hash import RIPEMD160
from eth_keys import keys
from eth_keys.datatypes import Signature
args = json.loads(sys.argv[1])
raw = bytes.fromhex(args["raw"])
pos = 0
def take(n):
    global pos
    out = raw[pos:pos + n]; pos += n
    assert len(out) == n, "truncated"
    return out
def varint():
    n = take(1)[0]
    return n if n < 0xfd else int.from_bytes(take({0xfd: 2, 0xfe: 4, 0xff: 8}[n]), "little")
def sha256d(b): return hashlib.sha256(hashlib.sha256(b).digest()).digest()
def hash160(b): return RIPEMD160.new(hashlib.sha256(b).digest()).digest()
version = take(4)
assert take(2) == b"\x00\x01", "not segwit"
inputs = []
for _ in range(varint()):
    outpoint = take(36); assert varint() == 0; inputs.append((outpoint, take(4)))
outs_at = pos
outputs = []
for _ in range(varint()):
    amount = int.from_bytes(take(8), "little"); outputs.append((amount, take(varint())))
outputs_bytes = raw[outs_at + 1:pos]
body_end = pos
witnesses = [[take(varint()) for _ in range(varint())] for _ in inputs]
locktime = take(4)
assert pos == len(raw), "trailing bytes"
txid = sha256d(version + raw[6:body_end] + locktime)[::-1].hex()
prevouts = sha256d(b"".join(o for o, _ in inputs))
sequences = sha256d(b"".join(s for _, s in inputs))
verified = 0
for i, ((outpoint, seq), (sig, pub)) in enumerate(zip(inputs, witnesses)):
    assert sig[-1] == 1, "SIGHASH_ALL"
    der = sig[:-1]
    assert der[0] == 0x30 and der[2] == 0x02
    r_len = der[3]; r = int.from_bytes(der[4:4 + r_len], "big")
    s_at = 4 + r_len; assert der[s_at] == 0x02
    s = int.from_bytes(der[s_at + 2:s_at + 2 + der[s_at + 1]], "big")
    assert s <= 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0, "high s"
    code = b"\x19\x76\xa9\x14" + hash160(pub) + b"\x88\xac"
    pre = (version + prevouts + sequences + outpoint + code
           + args["amounts"][i].to_bytes(8, "little") + seq
           + sha256d(outputs_bytes) + locktime + (1).to_bytes(4, "little"))
    key = keys.PublicKey.from_compressed_bytes(pub)
    assert key.verify_msg_hash(sha256d(pre), Signature(vrs=(0, r, s))), f"input {i}"
    verified += 1
assert outputs[0][1] == b"\x00\x14" + hash160(bytes.fromhex(args["payee_key"]))
print(json.dumps({"txid": txid, "verified": verified, "outputs": [a for a, _ in outputs]}))
"#;

#[test]
fn bitcoin_transactions_verify_independently_and_keep_to_the_policy() {
    let node = wallet_node(
        ABANDON,
        r#"[plugins.wallet.config.policy.bitcoin]
max_per_transaction = 100000
max_per_day = 150000
allow_to = ["bc1qnjg0jd8228aq7egyzacy8cys3knf9xvrerkf9g"]
"#,
    );
    let payee = node
        .cli(&[
            "call",
            "/node/wallet/address",
            r#"{"chain": "bitcoin", "index": 1}"#,
        ])
        .ok_json();
    let tx = |outputs: serde_json::Value, change: serde_json::Value| {
        serde_json::json!({
            "inputs": [
                {"txid": "aa".repeat(32), "vout": 0, "amount": 80000},
                {"txid": "bb".repeat(32), "vout": 1, "amount": 50000, "change": true}
            ],
            "outputs": outputs,
            "change": change,
        })
        .to_string()
    };
    let to_payee = |amount: u64| serde_json::json!([{ "address": "bc1qnjg0jd8228aq7egyzacy8cys3knf9xvrerkf9g", "amount": amount }]);
    let signed = node
        .cli(&[
            "call",
            "/node/wallet/sign-bitcoin-transaction",
            &tx(
                to_payee(60000),
                serde_json::json!({"index": 0, "amount": 69000}),
            ),
        ])
        .ok_json();
    assert_eq!(signed["fee"], 1000);

    let python = hearth_tests::require_python(&[("eth_account", "eth-account")]);
    let args = serde_json::json!({
        "raw": signed["raw"],
        "amounts": [80000, 50000],
        "payee_key": payee["public_key"],
    });
    let out = Command::new(&python)
        .args(["-c", VERIFY_BITCOIN, &args.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let checked: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(checked["verified"], 2);
    assert_eq!(checked["txid"], signed["txid"]);
    assert_eq!(checked["outputs"], serde_json::json!([60000, 69000]));

    // A message signature (BIP137, P2WPKH header) recovers to the key.
    let message = node
        .cli(&[
            "call",
            "/node/wallet/sign-message",
            r#"{"chain": "bitcoin", "message": "hello bitcoin"}"#,
        ])
        .ok_json();
    let recover = r#"
import base64, hashlib, sys
from eth_keys.datatypes import Signature
sig = base64.b64decode(sys.argv[1])
assert 39 <= sig[0] <= 42, "a P2WPKH header"
def varint(n): return bytes([n])
msg = b"hello bitcoin"
prefix = b"Bitcoin Signed Message:\n"
digest = hashlib.sha256(hashlib.sha256(varint(len(prefix)) + prefix + varint(len(msg)) + msg).digest()).digest()
r, s = int.from_bytes(sig[1:33], "big"), int.from_bytes(sig[33:], "big")
key = Signature(vrs=(sig[0] - 39, r, s)).recover_public_key_from_msg_hash(digest)
print(key.to_compressed_bytes().hex())
"#;
    let out = Command::new(&python)
        .args(["-c", recover, message["signature"].as_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let own = node
        .cli(&["call", "/node/wallet/address", r#"{"chain": "bitcoin"}"#])
        .ok_json();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        own["public_key"]
    );
    assert_eq!(message["address"], own["address"]);

    let refused = |input: String, rule: &str| {
        let out = node.cli(&["call", "/node/wallet/sign-bitcoin-transaction", &input]);
        assert!(out.stderr().contains(rule), "{rule}: {}", out.stderr());
    };
    // 61000 spent so far today (the payment and the fee).
    refused(
        tx(
            serde_json::json!([{ "address": "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4", "amount": 1000 }]),
            serde_json::json!({"index": 0, "amount": 128000}),
        ),
        "allow_to",
    );
    refused(
        tx(to_payee(129000), serde_json::Value::Null),
        "max_per_transaction",
    );
    // Only change, the rest to fees: still a spend, still limited.
    refused(
        tx(
            serde_json::json!([]),
            serde_json::json!({"index": 0, "amount": 546}),
        ),
        "max_per_transaction",
    );
    refused(
        tx(
            to_payee(94000),
            serde_json::json!({"index": 0, "amount": 35000}),
        ),
        "max_per_day",
    );
    refused(
        tx(to_payee(140000), serde_json::Value::Null),
        "more than the inputs",
    );
    refused(
        tx(
            serde_json::json!([{ "address": "tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx", "amount": 1 }]),
            serde_json::Value::Null,
        ),
        "not a mainnet address",
    );
}

/// Three nodes: `head` may sign with the worker's wallet, `reader` may
/// only read it.
#[test]
fn a_peer_with_wallet_sign_gets_signatures_over_the_mesh_and_one_without_does_not() {
    let (worker, head, reader) = (
        crate::mesh::seat("worker"),
        crate::mesh::seat("head"),
        crate::mesh::seat("reader"),
    );
    let worker_rest = format!(
        "{}{}[plugins.wallet]\ngrants.vault = [\"m/84'\", \"m/44'/60'\"]\ngrants.kv = true\n",
        head.as_peer(
            true,
            "allow = [\"/node/wallet/*\"]\nscopes = [\"wallet:read\", \"wallet:sign\"]"
        ),
        reader.as_peer(
            true,
            "allow = [\"/node/wallet/*\"]\nscopes = [\"wallet:read\"]"
        ),
    );
    let head_rest = worker.as_peer(true, "");
    let reader_rest = worker.as_peer(true, "");
    let worker = worker.start("", &worker_rest);
    let head = head.start("", &head_rest);
    let reader = reader.start("", &reader_rest);
    crate::mesh::wait_for_state(&head, "worker", "connected");
    crate::mesh::wait_for_state(&reader, "worker", "connected");

    let address = reader
        .cli(&["call", "/worker/wallet/address", r#"{"chain": "ethereum"}"#])
        .ok_json();
    let signed = head
        .cli(&[
            "call",
            "/worker/wallet/sign-message",
            r#"{"chain": "ethereum", "message": "over the mesh"}"#,
        ])
        .ok_json();
    assert_eq!(signed["address"], address["address"]);
    let python = hearth_tests::require_python(&[("eth_account", "eth-account")]);
    let out = Command::new(python)
        .args([
            "-c",
            "import sys\nfrom eth_account import Account\nfrom eth_account.messages import encode_defunct\nprint(Account.recover_message(encode_defunct(text='over the mesh'), signature=sys.argv[1]))",
            signed["signature"].as_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        address["address"].as_str().unwrap()
    );
    let denied = reader.cli(&[
        "call",
        "/worker/wallet/sign-message",
        r#"{"chain": "ethereum", "message": "not for you"}"#,
    ]);
    assert!(
        denied.stderr().contains("wallet:sign"),
        "{}",
        denied.stderr()
    );
    // The worker's log names who signed.
    assert!(worker.logs().contains("for peer:head"), "{}", worker.logs());
}
