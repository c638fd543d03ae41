//! The `wasm32-wasip2` target plugins compile to, installed with rustup
//! when the toolchain lacks it. Shared by `host plugin build` and the
//! host's build script (which includes this file by path), so both decide
//! and install the same way.

use std::path::Path;
use std::process::Command;

/// The compilation target of plugins.
pub const WASM_TARGET: &str = "wasm32-wasip2";

/// Installs [`WASM_TARGET`] with rustup when `rustc`'s sysroot lacks it;
/// `announce` is told before an install starts.
pub fn ensure(rustc: &str, announce: impl FnOnce(&str)) -> Result<(), String> {
    let sysroot = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| format!("cannot run {rustc} ({e}); install Rust with rustup first"))?;
    let sysroot = String::from_utf8_lossy(&sysroot.stdout).trim().to_owned();
    if Path::new(&sysroot)
        .join("lib/rustlib")
        .join(WASM_TARGET)
        .is_dir()
    {
        return Ok(());
    }
    announce(&format!(
        "installing the {WASM_TARGET} target (rustup target add {WASM_TARGET})"
    ));
    let status = Command::new("rustup")
        .args(["target", "add", WASM_TARGET])
        .status()
        .map_err(|e| format!("{WASM_TARGET} is missing and rustup cannot be run: {e}"))?;
    if !status.success() {
        return Err(format!(
            "`rustup target add {WASM_TARGET}` failed ({status})"
        ));
    }
    Ok(())
}
