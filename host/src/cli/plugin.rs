//! `host plugin new` and `host plugin build`: authoring a plugin anywhere,
//! outside this repository.
//!
//! `new` writes a crate that is its own workspace, with a copy of the SDK
//! and the WIT this host serves under `.hearth/` (so it builds with no
//! checkout of Hearth and against exactly the world this host links), the
//! stack-size setting the bundled plugins use, and a native unit test.
//! `build` compiles it for `wasm32-wasip2` (installing the target when
//! missing), puts `<name>.wasm` beside `plugin.toml`, and prints the
//! `stack.toml` entry that loads it.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use clap::Subcommand;
use hearth_registry::{PluginManifest, is_valid_segment};

use super::wasm_target::{self, WASM_TARGET};

#[derive(Debug, Subcommand)]
pub(super) enum PluginCommand {
    /// Write a new plugin crate from the template.
    New {
        /// The plugin's name: lowercase letters, digits, `-` and `_`.
        name: String,
        /// Where to write it [default: ./NAME]; must be empty or absent.
        dir: Option<PathBuf>,
    },
    /// Build the plugin in DIR for wasm32-wasip2 and print its stack.toml entry.
    Build {
        /// The plugin's directory (holding Cargo.toml and plugin.toml) [default: .].
        dir: Option<PathBuf>,
    },
}

/// Runs `host plugin …`.
pub(super) fn run(command: PluginCommand) -> ExitCode {
    let result = match command {
        PluginCommand::New { name, dir } => new(&name, dir),
        PluginCommand::Build { dir } => build(&dir.unwrap_or_else(|| PathBuf::from("."))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// One file of the SDK or the WIT, as this host was built with it.
struct Embedded {
    path: &'static str,
    text: &'static str,
}

macro_rules! embed {
    ($($path:literal),* $(,)?) => {
        &[$(Embedded { path: $path, text: include_str!(concat!("../../../", $path)) }),*]
    };
}

/// The SDK's sources and the WIT package, copied into `.hearth/` of a new
/// plugin. A test below keeps this list equal to the directories.
const SDK_FILES: &[Embedded] = embed!(
    "sdk/src/config.rs",
    "sdk/src/context.rs",
    "sdk/src/discovery.rs",
    "sdk/src/dispatch.rs",
    "sdk/src/docker.rs",
    "sdk/src/env.rs",
    "sdk/src/error.rs",
    "sdk/src/events.rs",
    "sdk/src/files.rs",
    "sdk/src/http.rs",
    "sdk/src/kv.rs",
    "sdk/src/lib.rs",
    "sdk/src/log.rs",
    "sdk/src/names.rs",
    "sdk/src/process.rs",
    "sdk/src/sse.rs",
    "sdk/src/vault.rs",
    "wit/README.md",
    "wit/config.wit",
    "wit/discovery.wit",
    "wit/docker.wit",
    "wit/env.wit",
    "wit/events.wit",
    "wit/files.wit",
    "wit/handler.wit",
    "wit/kv.wit",
    "wit/log.wit",
    "wit/process.wit",
    "wit/types.wit",
    "wit/vault.wit",
    "wit/world.wit",
);

/// The versions the bundled plugins are built and tested with.
const LOCKFILE: &str = include_str!("../../../plugins/Cargo.lock");

const SDK_MANIFEST: &str = r#"# A copy of the Hearth SDK, written by `host plugin new` from the host
# that created this plugin; `host plugin new` in another directory writes
# the SDK of a newer host.
[package]
name = "hearth-sdk"
version = "0.1.0"
edition = "2024"
license = "Apache-2.0"
publish = false

[dependencies]
serde = { version = "1", features = ["derive"] }
serde_json = "1"
schemars = "1"
serde_path_to_error = "0.1"
wasip2 = { version = "1", default-features = false }
wit-bindgen = { version = "0.51", default-features = false, features = ["macros", "realloc"] }
"#;

const CARGO_CONFIG: &str = r#"# Rust gives wasm programs a 1 MiB shadow stack at the bottom of linear
# memory; a plugin call is short and shallow, and a smaller stack keeps
# each fresh instance cheap. Deeper recursion traps (the host says so).
[target.wasm32-wasip2]
rustflags = ["-C", "link-arg=-zstack-size=262144"]
"#;

fn cargo_manifest(name: &str) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
hearth-sdk = {{ path = ".hearth/sdk" }}
serde = {{ version = "1", features = ["derive"] }}
serde_json = "1"
schemars = "1"

# Its own workspace: it builds alone, wherever it lives.
[workspace]

[profile.release]
opt-level = "s"
lto = true
codegen-units = 1
strip = true
"#
    )
}

fn plugin_manifest(name: &str) -> String {
    format!(
        r#"# What this plugin is and what it asks for. Asking grants nothing: the
# operator grants capabilities in stack.toml. Its operations are read from
# the component; list them here (operations = [...]) only to pin them.
name = "{name}"
version = "0.1.0"
description = "Greets people by name and counts the greetings."

[capabilities]
# Its own key-value namespace (grants.kv = true in stack.toml).
kv = true
"#
    )
}

fn lib_rs(name: &str) -> String {
    let type_name: String = name
        .split(['-', '_'])
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or(String::new(), |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect();
    let type_name = if type_name.starts_with(|c: char| c.is_ascii_digit()) {
        format!("P{type_name}")
    } else {
        type_name
    };
    format!(
        r#"//! `{name}`: a Hearth plugin.
//!
//! One function per operation, registered in one line each in
//! [`Plugin::operations`]; the SDK derives the JSON Schemas from the types
//! and the host checks input against them before calling you.

use hearth_sdk::prelude::*;

/// Input of `greet`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct GreetInput {{
    /// Who to greet.
    #[schemars(length(min = 1, max = 100))]
    name: String,
}}

/// Output of `greet`.
#[derive(Serialize, JsonSchema)]
struct Greeting {{
    message: String,
}}

/// Greets `name`.
fn greet(_cx: &Context, input: GreetInput) -> Result<Greeting, CallError> {{
    Ok(Greeting {{
        message: format!("Hello, {{}}!", input.name),
    }})
}}

/// Input of `count`: nothing.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Empty {{}}

/// Output of `count`.
#[derive(Serialize, JsonSchema)]
struct Count {{
    /// How many times `count` was called, this one included.
    calls: u64,
}}

/// Counts its calls in the plugin's key-value store (needs grants.kv).
fn count(_cx: &Context, _input: Empty) -> Result<Count, CallError> {{
    let calls = kv::get_json::<u64>("calls")?.unwrap_or(0) + 1;
    kv::set_json("calls", &calls)?;
    hearth_sdk::info!("counted {{calls}} calls");
    Ok(Count {{ calls }})
}}

struct {type_name};

impl Plugin for {type_name} {{
    fn operations(ops: &mut Operations) {{
        ops.query("greet", "Greet someone by name.", greet);
        ops.mutation("count", "Count this call and return the total.", count);
    }}
}}

hearth_sdk::export_plugin!({type_name});

#[cfg(test)]
mod tests {{
    use super::*;

    #[test]
    fn greets_by_name() {{
        let cx = Context::for_test("test", &[]);
        let out = greet(&cx, GreetInput {{ name: "Ada".into() }}).unwrap();
        assert_eq!(out.message, "Hello, Ada!");
    }}
}}
"#
    )
}

fn new(name: &str, dir: Option<PathBuf>) -> Result<(), String> {
    if !is_valid_segment(name) || name.starts_with(|c: char| !c.is_ascii_lowercase()) {
        return Err(format!(
            "`{name}` is not a plugin name: start with a lowercase letter, then lowercase letters, digits, `-` and `_`"
        ));
    }
    let dir = dir.unwrap_or_else(|| PathBuf::from(name));
    if dir.exists()
        && std::fs::read_dir(&dir)
            .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
            .next()
            .is_some()
    {
        return Err(format!(
            "{} is not empty; choose a new directory (host plugin new {name} DIR)",
            dir.display()
        ));
    }
    let mut files: Vec<(PathBuf, String)> = vec![
        (dir.join("Cargo.toml"), cargo_manifest(name)),
        (dir.join("Cargo.lock"), LOCKFILE.to_owned()),
        (dir.join("plugin.toml"), plugin_manifest(name)),
        (dir.join("src/lib.rs"), lib_rs(name)),
        (dir.join(".cargo/config.toml"), CARGO_CONFIG.to_owned()),
        (dir.join(".gitignore"), "/target\n/*.wasm\n".to_owned()),
        (dir.join(".hearth/sdk/Cargo.toml"), SDK_MANIFEST.to_owned()),
    ];
    for file in SDK_FILES {
        files.push((dir.join(".hearth").join(file.path), file.text.to_owned()));
    }
    for (path, text) in &files {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    println!("Created plugin `{name}` in {}", dir.display());
    println!();
    println!("  src/lib.rs     its operations, one function each");
    println!("  plugin.toml    what it asks the operator for");
    println!("  .hearth/       the SDK and WIT of this host (hearth:node@0.2.0)");
    println!();
    println!("Next:");
    println!("  cd {}", dir.display());
    println!("  cargo test           # its unit tests, natively");
    println!("  host plugin build    # the component, and the stack.toml entry to load it");
    Ok(())
}

/// The `[package] name` of the crate at `manifest`.
fn package_name(manifest: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(manifest).map_err(|e| {
        format!(
            "cannot read {}: {e}; run `host plugin build` in a plugin's directory (see `host plugin new`)",
            manifest.display()
        )
    })?;
    let value: toml::Table =
        toml::from_str(&text).map_err(|e| format!("{}: {e}", manifest.display()))?;
    value
        .get("package")
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
        .map(str::to_owned)
        .ok_or_else(|| format!("{} has no [package] name", manifest.display()))
}

fn build(dir: &Path) -> Result<(), String> {
    let dir = dir
        .canonicalize()
        .map_err(|e| format!("cannot open {}: {e}", dir.display()))?;
    let manifest_path = dir.join("plugin.toml");
    let manifest_text = std::fs::read_to_string(&manifest_path).map_err(|e| {
        format!(
            "cannot read {}: {e}; a plugin's directory holds plugin.toml beside Cargo.toml",
            manifest_path.display()
        )
    })?;
    let manifest = PluginManifest::parse(&manifest_text)
        .map_err(|e| format!("{}: {e}", manifest_path.display()))?;
    let package = package_name(&dir.join("Cargo.toml"))?;
    wasm_target::ensure("rustc", |what| eprintln!("{what}…"))?;
    // Cargo's own rule: CARGO_TARGET_DIR when set, else the crate's target/.
    let target_dir = match std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from) {
        // Relative to where `host plugin build` was run, as cargo reads it.
        Some(relative) if relative.is_relative() => std::env::current_dir()
            .map_err(|e| format!("cannot read the current directory: {e}"))?
            .join(relative),
        Some(absolute) => absolute,
        None => dir.join("target"),
    };
    eprintln!(
        "Building `{}` for {WASM_TARGET} (the first build fetches and compiles its dependencies)…",
        manifest.name
    );
    let started = std::time::Instant::now();
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args([
            "build",
            "--release",
            "--target",
            WASM_TARGET,
            "--manifest-path",
        ])
        .arg(dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .current_dir(&dir)
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!(
            "cargo build failed ({status}); see its output above"
        ));
    }
    let built = target_dir
        .join(WASM_TARGET)
        .join("release")
        .join(format!("{}.wasm", package.replace('-', "_")));
    let placed = dir.join(format!("{}.wasm", manifest.name));
    std::fs::copy(&built, &placed).map_err(|e| {
        format!(
            "cannot copy {} to {}: {e}; is the crate a cdylib (`crate-type = [\"cdylib\"]`)?",
            built.display(),
            placed.display()
        )
    })?;
    let size = std::fs::metadata(&placed).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "Built {} ({} KiB) in {:.1} s",
        placed.display(),
        size.div_ceil(1024),
        started.elapsed().as_secs_f64()
    );
    println!("{}", stack_entry(&manifest, &dir));
    Ok(())
}

/// The `stack.toml` entry that loads the plugin in `dir`, granting what
/// its manifest asks for (the operator still decides).
fn stack_entry(manifest: &PluginManifest, dir: &Path) -> String {
    let asked = &manifest.capabilities;
    let mut entry = format!(
        "# Add to stack.toml, then restart `host serve`:\n[plugins.{}]\npath = {:?}\n",
        manifest.name,
        dir.display().to_string()
    );
    if asked.kv {
        entry.push_str("grants.kv = true\n");
    }
    if !asked.env.is_empty() {
        let patterns: Vec<String> = asked
            .env
            .iter()
            .map(|p| format!("{:?}", p.to_string()))
            .collect();
        entry.push_str(&format!("grants.env = [{}]\n", patterns.join(", ")));
    }
    if !asked.vault.is_empty() {
        let prefixes: Vec<String> = asked
            .vault
            .iter()
            .map(|p| format!("{:?}", p.as_str()))
            .collect();
        entry.push_str(&format!("grants.vault = [{}]\n", prefixes.join(", ")));
    }
    if asked.http {
        entry.push_str(
            "# grants.http = [\"https://api.example.com\"]  # the origins it may reach\n",
        );
    }
    if asked.docker {
        entry.push_str("# grants.docker = { images = [\"…\"], host_ports = \"8000-8099\" }\n");
    }
    entry
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_carries_every_sdk_and_wit_file() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut on_disk = Vec::new();
        for (dir, ext) in [("sdk/src", "rs"), ("wit", "wit"), ("wit", "md")] {
            for entry in std::fs::read_dir(root.join(dir)).unwrap().flatten() {
                let path = entry.path();
                if path.extension().is_some_and(|e| e == ext) {
                    on_disk.push(format!("{dir}/{}", entry.file_name().to_string_lossy()));
                }
            }
        }
        on_disk.sort();
        let mut embedded: Vec<String> = SDK_FILES.iter().map(|f| f.path.to_owned()).collect();
        embedded.sort();
        assert_eq!(embedded, on_disk, "update SDK_FILES in cli/plugin.rs");
    }

    #[test]
    fn names_become_rust_types_and_bad_names_are_refused() {
        assert!(lib_rs("my-weather_2").contains("struct MyWeather2;"));
        assert!(new("Bad Name", None).is_err());
        assert!(new("9lives", None).is_err());
    }
}
