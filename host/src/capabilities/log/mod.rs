//! The `log` capability: a plugin's log lines in the node's log, tagged
//! with the plugin and the request. Every plugin has it; a line is cut at
//! [`MAX_LOG_LINE`] bytes so a plugin cannot flood the log with one call.

use wasmtime::component::{HasData, Linker};

use crate::runtime::CallState;
use crate::runtime::bindings::hearth::node::log;

/// Longest log line a plugin may emit; the rest is cut.
pub const MAX_LOG_LINE: usize = 4096;

/// `log` as one call's plugin sees it.
pub struct Log<'a>(&'a mut CallState);

struct LogData;

impl HasData for LogData {
    type Data<'a> = Log<'a>;
}

/// Links `hearth:node/log`.
pub fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    log::add_to_linker::<CallState, LogData>(linker, |state| Log(state))
}

impl log::Host for Log<'_> {
    async fn emit(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        use log::Level;
        let mut message = message;
        if message.len() > MAX_LOG_LINE {
            let mut cut = MAX_LOG_LINE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        let caller = self.0.caller();
        let plugin = &*caller.plugin;
        let request_id = &caller.ctx.request_id;
        match level {
            Level::Trace => tracing::trace!(target: "plugin", plugin, request_id, "{message}"),
            Level::Debug => tracing::debug!(target: "plugin", plugin, request_id, "{message}"),
            Level::Info => tracing::info!(target: "plugin", plugin, request_id, "{message}"),
            Level::Warn => tracing::warn!(target: "plugin", plugin, request_id, "{message}"),
            Level::Error => tracing::error!(target: "plugin", plugin, request_id, "{message}"),
        }
        Ok(())
    }
}
