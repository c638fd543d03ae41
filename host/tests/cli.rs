//! The `host` binary's own argument handling, without a node.
//!
//! Having an integration test here also makes `cargo test` build the
//! `host` binary, which the end-to-end tests in `tests/` start.

use std::process::Command;

fn host() -> Command {
    Command::new(env!("CARGO_BIN_EXE_host"))
}

#[test]
fn help_lists_the_commands() {
    let out = host().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in ["serve", "call", "ops", "plugins"] {
        assert!(text.contains(cmd), "{cmd} missing from:\n{text}");
    }
}

#[test]
fn a_call_without_a_node_says_how_to_start_one() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("none.sock");
    let out = host()
        .args(["call", "/node/echo/ping", "{}", "--socket"])
        .arg(&socket)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("host serve"), "{err}");
    assert!(err.contains(&socket.display().to_string()), "{err}");
}

#[test]
fn bad_metadata_is_a_usage_error() {
    let out = host()
        .args(["call", "/node/echo/ping", "--meta", "novalue"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
