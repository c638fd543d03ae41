//! The vault end to end: init, unlock at start, `host id`, a plugin's
//! signature verified outside the node, locked behaviour, grants, backup
//! and restore, and no secret anywhere it should not be.

use std::path::Path;
use std::process::Command;

use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use hearth_tests::{TestNode, host_bin};

const PASSPHRASE: &str = "correct horse battery staple";

/// `host vault <args>` on the data directory `dir/data`.
fn vault_cli(dir: &Path, args: &[&str], passphrase: Option<&str>) -> std::process::Output {
    let mut command = Command::new(host_bin());
    command
        .arg("vault")
        .args(args)
        .env("HEARTH_DATA_DIR", dir.join("data"))
        .env_remove("HEARTH_PASSPHRASE");
    if let Some(p) = passphrase {
        command.env("HEARTH_PASSPHRASE", p);
    }
    command.output().unwrap()
}

/// Initialises a vault in `dir/data`; returns the mnemonic it showed.
fn init(dir: &Path) -> String {
    let out = vault_cli(dir, &["init"], Some(PASSPHRASE));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let words = stdout
        .lines()
        .find(|l| l.starts_with("    "))
        .expect("mnemonic shown")
        .trim()
        .to_owned();
    assert_eq!(words.split(' ').count(), 24);
    words
}

fn sign(node: &TestNode, path: &str, message: &str) -> hearth_tests::CliOutput {
    let input = serde_json::json!({ "path": path, "message": message }).to_string();
    node.cli(&["call", "/node/signer/sign", &input])
}

/// Every file under `dir`, read as bytes.
fn all_files(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                out.push((path, bytes));
            }
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_plugin_signature_verifies_with_the_printed_public_key() {
    let dir = tempfile::tempdir().unwrap();
    let mnemonic = init(dir.path());
    let node = TestNode::start_in_with_env(dir, &[("HEARTH_PASSPHRASE", PASSPHRASE)]);
    assert!(node.banner.contains("vault unlocked"), "{}", node.banner);

    // `host id` prints the node identity (m/74'/0'/0'/0').
    let id = node.cli(&["id", "--json"]).ok_json();
    assert_eq!(id["ephemeral"], false);
    assert_eq!(id["path"], "m/74'/0'/0'/0'");
    let text = node.cli(&["id"]).stdout();
    assert!(
        text.contains(&format!(
            "public_key = \"{}\"",
            id["public_key"].as_str().unwrap()
        )),
        "{text}"
    );

    // The signer plugin signs with a key it never sees; verify outside.
    let out = sign(&node, "m/74'/1'/0'", "hello hearth").ok_json();
    let public = hex::decode(out["public_key"].as_str().unwrap()).unwrap();
    let key = VerifyingKey::from_bytes(&public.try_into().unwrap()).unwrap();
    let signature =
        Signature::from_slice(&hex::decode(out["signature"].as_str().unwrap()).unwrap()).unwrap();
    key.verify(b"hello hearth", &signature)
        .expect("signature verifies");
    assert!(key.verify(b"tampered", &signature).is_err());

    // A P-256 (ES256) signature of a digest, for ACME accounts and the like.
    let digest = [7u8; 32];
    let input = serde_json::json!({
        "path": "m/74'/1'/2'", "digest": hex::encode(digest), "curve": "p256"
    });
    let es256 = node
        .cli(&["call", "/node/signer/sign-digest", &input.to_string()])
        .ok_json();
    use p256::ecdsa::signature::hazmat::PrehashVerifier;
    let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(
        &hex::decode(es256["public_key"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    let signature = p256::ecdsa::Signature::from_slice(
        &hex::decode(es256["signature"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    key.verify_prehash(&digest, &signature)
        .expect("the P-256 signature verifies");

    // The same path gives the same key after a restart (derived, not random).
    let mut node = node;
    node.restart();
    let again = sign(&node, "m/74'/1'/0'", "x").ok_json();
    assert_eq!(again["public_key"], out["public_key"]);
    assert_eq!(
        node.cli(&["id", "--json"]).ok_json()["public_key"],
        id["public_key"]
    );

    // Envelopes round-trip through the plugin.
    let sealed = node
        .cli(&[
            "call",
            "/node/signer/seal",
            r#"{"path":"m/74'/1'/9'","plaintext":"top secret"}"#,
        ])
        .ok_json();
    let input =
        serde_json::json!({"path": "m/74'/1'/9'", "envelope": sealed["envelope"]}).to_string();
    assert_eq!(
        node.cli(&["call", "/node/signer/open", &input]).ok_json()["plaintext"],
        "top secret"
    );

    // The mnemonic, the seed and the passphrase appear in no file of the
    // node's directory (data, cache, database, logs).
    let seed = bip39_seed_hex(&mnemonic);
    for (path, bytes) in all_files(node.dir()) {
        for secret in [
            mnemonic.as_bytes(),
            seed.as_bytes(),
            &hex::decode(&seed).unwrap(),
            PASSPHRASE.as_bytes(),
        ] {
            assert!(
                !contains(&bytes, secret),
                "a secret is in {}",
                path.display()
            );
        }
    }
}

/// The seed as the node derives it, computed here from the words to search
/// for it.
fn bip39_seed_hex(mnemonic: &str) -> String {
    hex::encode(bip39::Mnemonic::parse(mnemonic).unwrap().to_seed(""))
}

#[test]
fn locked_vaults_refuse_and_unlock_and_grants_hold() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path());
    // No passphrase at start: the node serves, the vault stays locked.
    let node = TestNode::start_in_with_env(dir, &[]);
    assert!(node.banner.contains("vault locked"), "{}", node.banner);
    let out = sign(&node, "m/74'/1'/0'", "m");
    assert_eq!(out.code(), 1);
    assert!(out.stderr().contains("error[locked]"), "{}", out.stderr());
    // The identity is known while locked.
    assert_eq!(node.cli(&["id", "--json"]).ok_json()["ephemeral"], false);

    // A wrong passphrase is refused, and never echoed.
    let wrong = node.cli(&["call", "/node/vault/unlock", r#"{"passphrase":"hunter2"}"#]);
    assert!(
        wrong.stderr().contains("wrong passphrase"),
        "{}",
        wrong.stderr()
    );
    assert!(!wrong.stderr().contains("hunter2"));
    let typo = node.cli(&[
        "call",
        "/node/vault/unlock",
        r#"{"passphrase":"hunter2","x":1}"#,
    ]);
    assert!(!typo.stderr().contains("hunter2"), "{}", typo.stderr());

    let unlock = Command::new(host_bin())
        .args(["vault", "unlock", "--socket"])
        .arg(node.socket())
        .env("HEARTH_PASSPHRASE", PASSPHRASE)
        .output()
        .unwrap();
    assert!(
        unlock.status.success(),
        "{}",
        String::from_utf8_lossy(&unlock.stderr)
    );
    assert!(String::from_utf8_lossy(&unlock.stdout).contains("vault: unlocked"));
    sign(&node, "m/74'/1'/0'", "m").ok_json();

    // The node identity is never a plugin's, granted or not.
    let out = sign(&node, "m/74'/0'/0'/0'", "m");
    assert!(
        out.stderr().contains("error[denied]") && out.stderr().contains("the node identity"),
        "{}",
        out.stderr()
    );
    // A path outside the plugin's grant is denied, naming the grant.
    let out = sign(&node, "m/74'/2'/0'", "m");
    assert!(out.stderr().contains("error[denied]"), "{}", out.stderr());
    assert!(
        out.stderr().contains("`grants.vault` of [plugins.signer]"),
        "{}",
        out.stderr()
    );
    let out = sign(&node, "m/74'/10'/0'", "m");
    assert!(
        out.stderr().contains("error[denied]"),
        "prefixes match whole indexes: {}",
        out.stderr()
    );

    // Lock wipes it again.
    assert!(
        node.cli(&["vault", "lock"])
            .stdout()
            .contains("vault: locked")
    );
    assert!(
        sign(&node, "m/74'/1'/0'", "m")
            .stderr()
            .contains("error[locked]")
    );
    assert!(!node.logs().contains(PASSPHRASE));
}

#[test]
fn unlocking_an_unlocked_vault_still_checks_the_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path());
    let node = TestNode::start_in_with_env(dir, &[("HEARTH_PASSPHRASE", PASSPHRASE)]);
    assert!(node.banner.contains("vault unlocked"), "{}", node.banner);
    let unlock = |passphrase: &str| {
        Command::new(host_bin())
            .args(["vault", "unlock", "--socket"])
            .arg(node.socket())
            .env("HEARTH_PASSPHRASE", passphrase)
            .output()
            .unwrap()
    };
    // A wrong passphrase fails, exit 1, even though the vault is unlocked.
    let wrong = unlock("not the passphrase");
    assert_eq!(wrong.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(stderr.contains("error[denied]"), "{stderr}");
    assert!(stderr.contains("wrong passphrase"), "{stderr}");
    assert!(!stderr.contains("not the passphrase"), "{stderr}");
    // The right one says it already was unlocked.
    let right = unlock(PASSPHRASE);
    assert!(right.status.success());
    let stdout = String::from_utf8_lossy(&right.stdout);
    assert!(stdout.contains("it already was"), "{stdout}");
    // The vault stayed unlocked throughout.
    sign(&node, "m/74'/1'/0'", "m").ok_json();
}

#[test]
fn without_a_vault_the_identity_is_ephemeral() {
    let node = TestNode::start();
    assert!(node.banner.contains("ephemeral"), "{}", node.banner);
    let id = node.cli(&["id", "--json"]).ok_json();
    assert_eq!(id["ephemeral"], true);
    let out = sign(&node, "m/74'/1'/0'", "m");
    assert!(out.stderr().contains("no vault"), "{}", out.stderr());
}

#[test]
fn backup_and_restore_with_refusals_that_change_nothing() {
    let source = tempfile::tempdir().unwrap();
    init(source.path());
    let backup = source.path().join("backup.json");
    let out = vault_cli(
        source.path(),
        &["backup", backup.to_str().unwrap()],
        Some(PASSPHRASE),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let original = std::fs::read(source.path().join("data/vault.json")).unwrap();

    let target = tempfile::tempdir().unwrap();
    // Wrong passphrase: refused, nothing written.
    let out = vault_cli(
        target.path(),
        &["restore", backup.to_str().unwrap()],
        Some("wrong"),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrong passphrase"));
    assert!(!target.path().join("data/vault.json").exists());
    // Damaged file: refused, nothing written, no panic.
    let mut damaged = std::fs::read(&backup).unwrap();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x01;
    let damaged_path = target.path().join("damaged.json");
    std::fs::write(&damaged_path, &damaged).unwrap();
    let out = vault_cli(
        target.path(),
        &["restore", damaged_path.to_str().unwrap()],
        Some(PASSPHRASE),
    );
    assert!(!out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
    assert!(!target.path().join("data/vault.json").exists());

    // The right one restores the same identity.
    let out = vault_cli(
        target.path(),
        &["restore", backup.to_str().unwrap()],
        Some(PASSPHRASE),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("signer"),
        "grants listed"
    );
    let restored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(target.path().join("data/vault.json")).unwrap())
            .unwrap();
    let original: serde_json::Value = serde_json::from_slice(&original).unwrap();
    assert_eq!(restored["public"], original["public"]);
    // Restoring over an existing vault is refused and leaves it as it was.
    let before = std::fs::read(target.path().join("data/vault.json")).unwrap();
    let out = vault_cli(
        target.path(),
        &["restore", backup.to_str().unwrap()],
        Some(PASSPHRASE),
    );
    assert!(!out.status.success());
    assert_eq!(
        std::fs::read(target.path().join("data/vault.json")).unwrap(),
        before
    );

    // A second init is refused too.
    let out = vault_cli(target.path(), &["init"], Some(PASSPHRASE));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
}

#[test]
fn importing_a_known_mnemonic_gives_its_identity() {
    let dir = tempfile::tempdir().unwrap();
    let out = hearth_tests::vault_import(
        &dir.path().join("data"),
        PASSPHRASE,
        "legal winner thank year wave sausage worth useful legal winner thank yellow",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !stdout.contains("legal winner"),
        "an imported phrase is not echoed"
    );
    // A bad phrase is refused.
    let bad = tempfile::tempdir().unwrap();
    let out = hearth_tests::vault_import(
        &bad.path().join("data"),
        PASSPHRASE,
        "legal winner thank year wave",
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a valid BIP39 mnemonic"));
}
