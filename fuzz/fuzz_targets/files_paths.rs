//! The `files` capability's sandbox with hostile paths: whatever a plugin
//! asks (write, read, rename, remove, list) on any path, nothing outside
//! its directory changes, even with symbolic links inside pointing out.
//! The module is the host's own, compiled here alone (the host crate links
//! wasmtime, too heavy for a fuzzer).
#![no_main]

#[path = "../../host/src/capabilities/files/sandbox.rs"]
#[allow(dead_code)]
mod sandbox;

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

struct Setup {
    sandbox: sandbox::Sandbox,
    outside: PathBuf,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let base = std::env::temp_dir().join(format!("hearth-fuzz-files-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let root = base.join("granted");
        let outside = base.join("outside");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("file"), b"outside").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
        std::os::unix::fs::symlink(outside.join("file"), root.join("flink")).unwrap();
        std::os::unix::fs::symlink("..", root.join("up")).unwrap();
        Setup {
            sandbox: sandbox::Sandbox::new(root),
            outside,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&op, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let (a, b) = text.split_once('|').unwrap_or((&text, "x"));
    let setup = setup();
    let s = &setup.sandbox;
    match op % 5 {
        0 => drop(s.write(a, b.as_bytes(), 0o600)),
        1 => drop(s.read(a)),
        2 => drop(s.rename(a, b)),
        3 => drop(s.remove(a)),
        _ => drop(s.list(a)),
    }
    // Nothing outside changed: one file, as it was.
    let entries: Vec<_> = std::fs::read_dir(&setup.outside)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries, ["file"], "something was written outside: {entries:?}");
    assert_eq!(std::fs::read(setup.outside.join("file")).unwrap(), b"outside");
    assert!(
        !setup.outside.parent().unwrap().join("escaped").exists(),
        "escaped through `up`"
    );
});
