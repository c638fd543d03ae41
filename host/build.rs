//! Builds the plugins in `plugins/` for `wasm32-wasip2` and bundles them
//! into the `host` binary, so `cargo run -- serve` and `cargo test` need no
//! manual step. Each bundled plugin is also compiled to native code here,
//! with the engine configuration the node uses by default, so a node's
//! first start loads it instead of compiling it.
//!
//! The plugins are a separate workspace with their own target directory,
//! so this nested build never waits on the outer build's lock. The wasm
//! target is installed with rustup when missing.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "src/cli/wasm_target.rs"]
mod wasm_target;

#[path = "src/runtime/engine_config.rs"]
#[allow(dead_code)]
mod engine_config;

use wasm_target::WASM_TARGET;

/// Variables of the outer build that must not leak into the nested one:
/// host-only flags, the outer target dir, wrappers meant for the host crates.
const SCRUBBED_ENV: &[&str] = &[
    "CARGO_ENCODED_RUSTFLAGS",
    "RUSTFLAGS",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "CARGO_BUILD_RUSTFLAGS",
    "RUSTC_WORKSPACE_WRAPPER",
    "RUSTC_WRAPPER",
    "CARGO_PRIMARY_PACKAGE",
];

fn main() {
    if let Err(message) = run() {
        println!("cargo::error={message}");
    }
}

fn run() -> Result<(), String> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").map_err(|e| e.to_string())?);
    let root = manifest_dir
        .parent()
        .ok_or("host crate has no parent directory")?;
    let plugins_dir = root.join("plugins");
    let out_dir = PathBuf::from(env::var("OUT_DIR").map_err(|e| e.to_string())?);

    println!("cargo::rerun-if-env-changed=HEARTH_PLUGIN_TARGET_DIR");
    for watched in [
        "plugins/Cargo.toml",
        "plugins/Cargo.lock",
        "plugins/.cargo/config.toml",
        "plugins/testing",
        "sdk/src",
        "sdk/Cargo.toml",
        "wit",
    ] {
        // Relative to this package, so a checkout at another path (sharing
        // the target directory) watches its own files, not the last one's.
        println!("cargo::rerun-if-changed=../{watched}");
    }
    let plugins = plugin_dirs(&plugins_dir)?;
    for dir in &plugins {
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        for file in ["src", "Cargo.toml", "plugin.toml"] {
            println!("cargo::rerun-if-changed=../plugins/{name}/{file}");
        }
    }

    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    wasm_target::ensure(&rustc, |what| println!("cargo::warning={what}"))?;
    let target_dir = plugin_target_dir(&plugins_dir);
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut build = Command::new(cargo);
    // Run inside plugins/ so its .cargo/config.toml (wasm link flags) applies.
    build
        .current_dir(&plugins_dir)
        .args([
            "build",
            "--release",
            "--locked",
            "--target",
            WASM_TARGET,
            "--manifest-path",
        ])
        .arg(plugins_dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir);
    for var in SCRUBBED_ENV {
        build.env_remove(var);
    }
    // Cargo reads a build script's stdout as directives; keep the nested
    // build's chatter on stderr.
    let status = build
        .stdout(std::io::stderr())
        .status()
        .map_err(|e| format!("cannot run cargo to build the plugins: {e}"))?;
    if !status.success() {
        return Err(format!(
            "building the plugins in {} failed ({status}); see the cargo output above",
            plugins_dir.display()
        ));
    }

    let wasm_dir = target_dir.join(WASM_TARGET).join("release");
    println!(
        "cargo::rustc-env=HEARTH_BUILT_PLUGINS_DIR={}",
        wasm_dir.display()
    );
    let bundle_dir = out_dir.join("plugins");
    fs::create_dir_all(&bundle_dir).map_err(|e| e.to_string())?;
    let precompiler = precompiler();
    let mut generated = String::from("&[\n");
    for dir in &plugins {
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or("plugin directory name is not UTF-8")?;
        let wasm = wasm_dir.join(format!("{}.wasm", name.replace('-', "_")));
        let bundled_wasm = bundle_dir.join(format!("{name}.wasm"));
        let bundled_manifest = bundle_dir.join(format!("{name}.plugin.toml"));
        let bundled_artifact = bundle_dir.join(format!("{name}.cwasm"));
        let bytes = fs::read(&wasm).map_err(|e| format!("cannot read {}: {e}", wasm.display()))?;
        write_if_changed(&bundled_wasm, &bytes)?;
        copy_if_changed(&dir.join("plugin.toml"), &bundled_manifest)?;
        let artifact = match &precompiler {
            // A component wasmtime cannot compile fails the node's start
            // with a clear error; the build is not the place for it.
            Some(engine) => engine.precompile_component(&bytes).unwrap_or_else(|e| {
                println!("cargo::warning=cannot precompile plugin {name}: {e:#}");
                Vec::new()
            }),
            None => Vec::new(),
        };
        write_if_changed(&bundled_artifact, &artifact)?;
        let _ = writeln!(
            generated,
            "    BundledPlugin {{ name: {name:?}, manifest: include_str!({:?}), component: include_bytes!({:?}), precompiled: include_bytes!({:?}) }},",
            bundled_manifest.display().to_string(),
            bundled_wasm.display().to_string(),
            bundled_artifact.display().to_string(),
        );
    }
    generated.push(']');
    fs::write(out_dir.join("bundled_plugins.rs"), generated).map_err(|e| e.to_string())?;
    fs::write(
        out_dir.join("precompiled_by.rs"),
        format!("{:?}", engine_config::wasmtime_build()),
    )
    .map_err(|e| e.to_string())?;
    Ok(())
}

/// The engine that compiles the bundled plugins: the node's configuration
/// for its default limits. `None` (the node compiles at its first start)
/// for a cross build, whose node runs on another CPU than this one, when
/// `HEARTH_PRECOMPILE=0`, or when wasmtime cannot start here.
fn precompiler() -> Option<wasmtime::Engine> {
    println!("cargo::rerun-if-env-changed=HEARTH_PRECOMPILE");
    if env::var("HEARTH_PRECOMPILE").is_ok_and(|v| v == "0") {
        return None;
    }
    if env::var("TARGET").ok() != env::var("HOST").ok() {
        println!(
            "cargo::warning=cross build: bundled plugins are compiled at the node's first start"
        );
        return None;
    }
    let mut config = engine_config::engine_config(1, engine_config::PRECOMPILED_MEMORY_BYTES, 1);
    // Compiling needs no instance pool (the pool's sizes shape no code, and
    // reserving it could fail under a build sandbox's address-space limit).
    config.allocation_strategy(wasmtime::InstanceAllocationStrategy::OnDemand);
    match wasmtime::Engine::new(&config) {
        Ok(engine) => Some(engine),
        Err(e) => {
            println!(
                "cargo::warning=cannot start wasmtime to precompile the bundled plugins ({e:#}); the node compiles them at its first start"
            );
            None
        }
    }
}

/// Copies `from` to `to` unless `to` already has the same bytes, so an
/// unchanged plugin does not make the host recompile.
fn copy_if_changed(from: &Path, to: &Path) -> Result<(), String> {
    let bytes = fs::read(from).map_err(|e| format!("cannot read {}: {e}", from.display()))?;
    write_if_changed(to, &bytes)
}

/// Writes `bytes` to `to` unless it already holds them.
fn write_if_changed(to: &Path, bytes: &[u8]) -> Result<(), String> {
    if fs::read(to).ok().as_deref() != Some(bytes) {
        fs::write(to, bytes).map_err(|e| format!("cannot write {}: {e}", to.display()))?;
    }
    Ok(())
}

/// Every directory under `plugins/` that holds a `plugin.toml`, sorted.
fn plugin_dirs(plugins_dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = fs::read_dir(plugins_dir)
        .map_err(|e| format!("cannot read {}: {e}", plugins_dir.display()))?;
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("plugin.toml").is_file())
        .collect();
    dirs.sort();
    Ok(dirs)
}

/// `$HEARTH_PLUGIN_TARGET_DIR`, else next to the outer target directory
/// when one is set, else `plugins/target`.
fn plugin_target_dir(plugins_dir: &Path) -> PathBuf {
    if let Some(dir) = env::var_os("HEARTH_PLUGIN_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir).join("hearth-plugins");
    }
    plugins_dir.join("target")
}
