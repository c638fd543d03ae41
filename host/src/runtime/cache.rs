//! The precompiled-component cache, and the artifacts built into `host`.
//!
//! Compiling a component takes hundreds of milliseconds; loading a
//! precompiled one takes about one. A bundled plugin comes with an artifact
//! compiled by the build script (`host/build.rs`), used whenever it was
//! made by this node's wasmtime build and wasmtime accepts it for this
//! engine, so even a node's first start compiles nothing for the default
//! configuration.
//!
//! Cache entries are keyed by the SHA-256 of the component bytes and by
//! the engine's compatibility hash (wasmtime version and codegen settings),
//! so a new plugin build or a new `host` never loads a stale artifact.
//! Files are written to a temporary name and renamed, so a crash mid-write
//! leaves no half entry, and nodes sharing a cache directory never see each
//! other's partial writes.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use super::RuntimeError;
use super::engine_config::wasmtime_build;

/// Whether a component came from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CacheOutcome {
    /// Loaded the artifact compiled when `host` was built.
    BuiltIn,
    /// Loaded precompiled from the cache directory.
    Hit,
    /// Compiled now (and stored).
    Miss,
}

/// A directory of precompiled components.
pub struct ComponentCache {
    dir: PathBuf,
    engine_key: String,
}

impl ComponentCache {
    /// Opens (creating) the cache in `dir` for `engine`.
    pub fn open(dir: PathBuf, engine: &Engine) -> Result<Self, RuntimeError> {
        // Private: wasmtime trusts what it loads from here.
        crate::config::create_private_dir(&dir)?;
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(ComponentCache {
            dir,
            engine_key: format!("{:016x}", hasher.finish()),
        })
    }

    /// The compiled component for `bytes`: the build's artifact
    /// `precompiled` when the engine accepts it, else from the cache, else
    /// compiled now (and cached). Returns it with the outcome and the
    /// bytes' SHA-256.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        bytes: &[u8],
        precompiled: Option<&'static [u8]>,
    ) -> Result<(Component, CacheOutcome, String), RuntimeError> {
        let sha256 = hex::encode(Sha256::digest(bytes));
        if let Some(artifact) = precompiled {
            match deserialize_built_in(engine, artifact) {
                Ok(component) => return Ok((component, CacheOutcome::BuiltIn, sha256)),
                // Expected when the largest plugin memory is not the default
                // (another memory reservation) or the binary moved to a CPU
                // without the build machine's features.
                Err(err) => tracing::info!(
                    component = &sha256[..12],
                    reason = %format!("{err:#}"),
                    "the code compiled into host does not fit this engine; loading from the cache or compiling"
                ),
            }
        }
        let path = self.dir.join(format!("{sha256}-{}.cwasm", self.engine_key));
        if path.is_file() {
            match deserialize(engine, &path) {
                Ok(component) => return Ok((component, CacheOutcome::Hit, sha256)),
                Err(err) => {
                    tracing::warn!(path = %path.display(), error = %err, "discarding unusable cache entry")
                }
            }
        }
        let component = Component::new(engine, bytes).map_err(|e| RuntimeError::Plugin {
            plugin: format!("component {}", &sha256[..12]),
            message: format!("not a valid component: {e:#}"),
        })?;
        match component.serialize() {
            Ok(compiled) => {
                let tmp = path.with_extension(format!("tmp{}", std::process::id()));
                std::fs::write(&tmp, compiled)?;
                std::fs::rename(&tmp, &path)?;
            }
            Err(err) => tracing::warn!(error = %err, "cannot serialize component; not caching"),
        }
        Ok((component, CacheOutcome::Miss, sha256))
    }
}

/// Loads an artifact compiled into `host` by its build script.
#[allow(unsafe_code)]
pub(super) fn deserialize_built_in(
    engine: &Engine,
    artifact: &'static [u8],
) -> wasmtime::Result<Component> {
    same_wasmtime(crate::config::PRECOMPILED_BY)?;
    // SAFETY: wasmtime trusts precompiled artifacts. This one is part of the
    // `host` binary: the build script made it with `precompile_component`
    // from the bundled component, with the wasmtime this node runs (checked
    // just above: same crate build, so same version and cargo features),
    // and wasmtime checks on load that the engine's settings and the CPU are
    // compatible with the ones it was compiled for, refusing it otherwise.
    unsafe { Component::deserialize(engine, artifact) }
}

/// Whether `compiled_by` (a [`wasmtime_build`] recorded elsewhere) is this
/// node's wasmtime build.
fn same_wasmtime(compiled_by: &str) -> wasmtime::Result<()> {
    let node = wasmtime_build();
    if node != compiled_by {
        wasmtime::bail!(
            "compiled by another build of wasmtime than this node's ({compiled_by} and {node}): the workspace must build one wasmtime for the node and its build script"
        );
    }
    Ok(())
}

#[allow(unsafe_code)]
fn deserialize(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    // SAFETY: wasmtime trusts precompiled artifacts. This file was written by
    // this node (by `load_or_compile`) into its own data directory, which is
    // created 0700, and its name binds it to the source bytes and to this
    // engine's configuration, so it is what `Component::serialize` produced.
    unsafe { Component::deserialize_file(engine, path) }
}

#[cfg(test)]
mod tests {
    use super::same_wasmtime;

    #[test]
    fn artifacts_of_another_wasmtime_build_are_refused() {
        let err = same_wasmtime("TypeId(0x0)").unwrap_err();
        assert!(
            format!("{err:#}").contains("another build of wasmtime"),
            "{err:#}"
        );
        same_wasmtime(&super::wasmtime_build()).unwrap();
    }
}
