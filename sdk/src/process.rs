//! Lines to and from processes the operator granted this plugin by their
//! exact argument list (`grants.process = [["node", "server.js"]]` in
//! `stack.toml`).
//!
//! The host keeps one process per argument list for the plugin, starts it
//! on first use and again after it exits ([`generation`] tells you it
//! did), and holds it for your call until the call returns. Its stderr goes
//! to the node's log; it inherits no environment variable the operator did
//! not list in `grants.process_env`.

use crate::CallError;
use crate::bindings::hearth::node::process as wit_process;

/// How many times `argv` has been started (starting it now if needed); a
/// new number means any session with the old process is gone.
pub fn generation(argv: &[String]) -> Result<u64, CallError> {
    wit_process::generation(argv)
}

/// Writes `line` and a newline to its stdin.
pub fn write_line(argv: &[String], line: &str) -> Result<(), CallError> {
    wit_process::write_line(argv, line)
}

/// The next line of its stdout, waiting up to `timeout_ms` (never past the
/// call's deadline); `None` when none came.
pub fn read_line(argv: &[String], timeout_ms: u32) -> Result<Option<String>, CallError> {
    wit_process::read_line(argv, timeout_ms)
}

/// The note kept with the running process for this plugin (shared by its
/// instances, forgotten when the process starts again): set it once a
/// session is open, and every instance knows not to open another.
pub fn memo(argv: &[String]) -> Result<Option<String>, CallError> {
    wit_process::memo(argv)
}

/// Sets the note [`memo`] returns (at most 4 KiB).
pub fn set_memo(argv: &[String], memo: &str) -> Result<(), CallError> {
    wit_process::set_memo(argv, memo)
}

/// A line the host writes to the process should this call end while it is
/// set — the caller went away, the deadline passed, the plugin trapped —
/// such as a protocol's cancel message for the request being waited on.
/// Clear it (`None`) once the answer came.
pub fn on_abandon(argv: &[String], line: Option<&str>) -> Result<(), CallError> {
    wit_process::on_abandon(argv, line)
}

/// What [`run`] returns: the exit code (`None` when a signal ended it) and
/// the output, each stream cut at 1 MiB.
pub use crate::bindings::hearth::node::process::RunOutput;

/// Runs the granted `argv` to completion with `stdin` as its input — a
/// check or a one-shot tool, apart from the kept-running process of the
/// same argument list. Killed at the call's deadline (`timeout`).
pub fn run(argv: &[String], stdin: &[u8]) -> Result<RunOutput, CallError> {
    wit_process::run(argv, stdin)
}

/// A signal for [`send_signal`].
pub use crate::bindings::hearth::node::process::Signal;

/// Sends `signal` to the kept-running process of `argv`; `unavailable`
/// when it is not running (it is not started just to be signalled: call
/// [`generation`] first, which starts it, and compare with the generation
/// you saw — a process just started has read its configuration already).
/// `Signal::Hangup` makes nginx and most daemons reload.
pub fn send_signal(argv: &[String], signal: Signal) -> Result<(), CallError> {
    wit_process::send_signal(argv, signal)
}
