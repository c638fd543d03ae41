//! The `files` capability: one directory of the node's filesystem per
//! plugin, for configuration another program reads (the proxy's nginx
//! configuration, its certificates) and files the plugin keeps.
//!
//! Grant: `grants.files = "/var/lib/hearth/proxy"` (relative to stack.toml
//! when relative; made, mode 0700, on first use). Manifest request:
//! `capabilities.files = true`. Paths are relative to that directory and
//! checked before anything opens; symbolic links are never followed
//! ([`sandbox`]), so a plugin reaches nothing outside it. Writes replace a
//! file atomically (new file, fsync, rename, fsync of the directory). The
//! blocking system calls run on the blocking pool.

pub mod sandbox;

use hearth_registry::{CallError, ErrorCode, GrantSet};
use wasmtime::component::{HasData, Linker};

use crate::runtime::CallState;
use crate::runtime::bindings::{self, hearth::node::files, wit};

pub use sandbox::{FilesError, Sandbox, check_path};

/// `files` as one call's plugin sees it.
pub struct Files<'a>(&'a mut CallState);

struct FilesData;

impl HasData for FilesData {
    type Data<'a> = Files<'a>;
}

/// Links `hearth:node/files`.
pub fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    files::add_to_linker::<CallState, FilesData>(linker, |state| Files(state))
}

impl From<FilesError> for CallError {
    fn from(e: FilesError) -> Self {
        let code = match &e {
            FilesError::BadPath { .. } | FilesError::BadMode(_) => ErrorCode::InvalidInput,
            FilesError::Link(_) => ErrorCode::Denied,
            FilesError::NotFound(_) => ErrorCode::NotFound,
            FilesError::TooLarge(_) => ErrorCode::ResourceExhausted,
            FilesError::Io { .. } => ErrorCode::Failed,
        };
        CallError::new(code, format!("files: {e}"))
    }
}

impl Files<'_> {
    /// The plugin's directory, once the grant is checked.
    fn granted(&self) -> Result<Sandbox, CallError> {
        let caller = self.0.caller();
        match &caller.grants.files {
            Some(dir) => Ok(Sandbox::new(dir.clone())),
            None => Err(CallError::new(
                ErrorCode::Denied,
                format!(
                    "plugin `{}` has no directory; {}",
                    caller.plugin,
                    GrantSet::files_grant_hint(&caller.plugin)
                ),
            )),
        }
    }

    /// Runs `op` on the plugin's directory on the blocking pool. (The
    /// future holds no borrow of the call's state, which is not `Sync`.)
    fn run<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Sandbox) -> Result<T, FilesError> + Send + 'static,
    ) -> impl Future<Output = Result<T, CallError>> + Send + 'static {
        let sandbox = self.granted();
        async move {
            let sandbox = sandbox?;
            tokio::task::spawn_blocking(move || op(&sandbox))
                .await
                .map_err(|e| CallError::new(ErrorCode::Failed, format!("files: {e}")))?
                .map_err(CallError::from)
        }
    }
}

impl files::Host for Files<'_> {
    async fn root(&mut self) -> wasmtime::Result<Result<String, wit::CallError>> {
        let result = self
            .granted()
            .map(|sandbox| sandbox.root().display().to_string());
        bindings::to_wit(result)
    }

    async fn read(
        &mut self,
        path: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, wit::CallError>> {
        bindings::to_wit(self.run(move |s| s.read(&path)).await)
    }

    async fn write(
        &mut self,
        path: String,
        contents: Vec<u8>,
        mode: u32,
    ) -> wasmtime::Result<Result<(), wit::CallError>> {
        bindings::to_wit(self.run(move |s| s.write(&path, &contents, mode)).await)
    }

    async fn rename(
        &mut self,
        from: String,
        to: String,
    ) -> wasmtime::Result<Result<(), wit::CallError>> {
        bindings::to_wit(self.run(move |s| s.rename(&from, &to)).await)
    }

    async fn remove(&mut self, path: String) -> wasmtime::Result<Result<bool, wit::CallError>> {
        bindings::to_wit(self.run(move |s| s.remove(&path)).await)
    }

    async fn list(
        &mut self,
        dir: String,
    ) -> wasmtime::Result<Result<Vec<files::Entry>, wit::CallError>> {
        let result = self.run(move |s| s.list(&dir)).await.map(|entries| {
            entries
                .into_iter()
                .map(|e| files::Entry {
                    name: e.name,
                    dir: e.dir,
                    size: e.size,
                    mode: e.mode,
                    modified_ms: e.modified_ms,
                })
                .collect()
        });
        bindings::to_wit(result)
    }
}
