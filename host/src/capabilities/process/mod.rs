//! The `process` capability: lines to and from processes the operator
//! granted a plugin by their exact argument list.
//!
//! Grant: `grants.process = [["npx", "-y", "@modelcontextprotocol/server-filesystem", "/srv"]]`,
//! and `grants.process_env = ["PATH", "HOME"]` for the environment variables
//! they inherit from the node (none otherwise). Manifest request:
//! `capabilities.process = true`.
//!
//! One process per (plugin, argument list), kept in [`Processes`] for the
//! node's life: started on first use, started again after it exits (not
//! sooner than a backoff that doubles, from 100 ms to 30 s, while it keeps
//! dying within 5 s of starting), stopped when the node stops — `SIGTERM`,
//! then `SIGKILL` after [`STOP_GRACE`] — and sent `SIGTERM` by the kernel
//! if the node itself is killed (`PR_SET_PDEATHSIG`). A graceful signal
//! matters: a server with workers (nginx) takes them down with it, where a
//! `SIGKILL` would leave them serving on its ports.
//! Its stderr goes to the node's log tagged with the plugin. A call takes
//! the process's lock on first use and keeps it until it returns (a slot
//! of the call), so concurrent calls never interleave their lines. A call
//! may leave a line to be written should it end while waiting (its
//! abandon line: a protocol's cancel message); the lock passes on only
//! after that line is written. A memo kept with each process generation
//! lets the plugin's instances share what they know of it (an open
//! session).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hearth_registry::{CallError, ErrorCode, GrantSet};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{OwnedMutexGuard, mpsc};
use wasmtime::component::{HasData, Linker};

use crate::runtime::CallState;
use crate::runtime::bindings::{self, hearth::node::process, wit};

/// Lines of stdout buffered before the process waits for a reader.
const LINE_QUEUE: usize = 1024;
/// Longest stdout line kept; longer ones are cut (and say so).
const MAX_LINE: usize = 16 << 20;
/// Output kept of a command run to completion, per stream.
const MAX_RUN_OUTPUT: u64 = 1 << 20;
/// Longest memo kept with a process.
const MAX_MEMO: usize = 4096;
/// How long a kept-running process has to exit after `SIGTERM` before it
/// is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(5);
/// A process that lived this long before exiting resets the backoff.
const STABLE_AFTER: Duration = Duration::from_secs(5);

/// Environment variables a command gets (the granted ones the node has).
type Env = Vec<(String, String)>;

/// `argv` with nothing of the node's but `env`, its three streams piped,
/// sent `SIGTERM` when the node dies. A one-shot command is killed when
/// dropped; a kept-running one is stopped by [`Live`]'s drop.
fn command(argv: &[String], env: &Env, one_shot: bool) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(&argv[0]);
    command
        .args(&argv[1..])
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(one_shot);
    die_with_the_node(&mut command);
    command
}

/// One process's state, locked by the call using it.
type Shared = Arc<tokio::sync::Mutex<Supervised>>;

/// A process is the plugin's own, per argument list.
type Key = (Arc<str>, Vec<String>);

/// Every process the node runs for plugins, by (plugin, argument list).
#[derive(Default)]
pub struct Processes {
    table: Mutex<HashMap<Key, Shared>>,
}

/// One granted command, running or waiting to run again.
struct Supervised {
    plugin: Arc<str>,
    argv: Vec<String>,
    env: Env,
    live: Option<Live>,
    generation: u64,
    /// The plugin's note about this generation, cleared on each start.
    memo: Option<String>,
    /// Quick deaths in a row, for the backoff.
    failures: u32,
    started: Option<Instant>,
    exited: Option<Instant>,
}

struct Live {
    /// Always `Some` until dropped.
    child: Option<tokio::process::Child>,
    stdin: tokio::process::ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl Live {
    fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    fn pid(&self) -> Option<rustix::process::Pid> {
        pid_of(self.child.as_ref()?)
    }
}

/// The child's pid, while it has not been reaped.
fn pid_of(child: &tokio::process::Child) -> Option<rustix::process::Pid> {
    rustix::process::Pid::from_raw(i32::try_from(child.id()?).ok()?)
}

impl Drop for Live {
    /// `SIGTERM`, and `SIGKILL` if it has not exited after [`STOP_GRACE`]
    /// (when a runtime is still there to wait; otherwise the node is
    /// exiting and the kernel sends `SIGTERM` again).
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        if let Some(pid) = pid_of(&child) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if tokio::time::timeout(STOP_GRACE, child.wait())
                    .await
                    .is_err()
                {
                    let _ = child.kill().await;
                }
            });
        }
    }
}

impl Processes {
    fn entry(
        &self,
        plugin: &Arc<str>,
        argv: &[String],
        env: Env,
    ) -> Arc<tokio::sync::Mutex<Supervised>> {
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        table
            .entry((plugin.clone(), argv.to_vec()))
            .or_insert_with(|| {
                Arc::new(tokio::sync::Mutex::new(Supervised {
                    plugin: plugin.clone(),
                    argv: argv.to_vec(),
                    env,
                    live: None,
                    generation: 0,
                    memo: None,
                    failures: 0,
                    started: None,
                    exited: None,
                }))
            })
            .clone()
    }
}

impl Supervised {
    /// Running, starting it (after the backoff) when it is not.
    async fn ensure_live(&mut self) -> Result<(), CallError> {
        let running = match self.live.as_mut() {
            Some(live) => live.running(),
            None => false,
        };
        if !running {
            if self.live.take().is_some() {
                let now = Instant::now();
                let quick = self.started.is_some_and(|s| now - s < STABLE_AFTER);
                self.failures = if quick { self.failures + 1 } else { 0 };
                self.exited = Some(now);
                tracing::warn!(plugin = %self.plugin, process = %self.argv[0], "process exited; starting it again on next use");
            }
            if let Some(exited) = self.exited {
                let backoff = Duration::from_millis(100)
                    .saturating_mul(1 << self.failures.min(9))
                    .min(Duration::from_secs(30));
                tokio::time::sleep_until((exited + backoff).into()).await;
            }
            self.live = Some(self.spawn()?);
        }
        Ok(())
    }

    fn spawn(&mut self) -> Result<Live, CallError> {
        let mut child = command(&self.argv, &self.env, false).spawn().map_err(|e| {
            CallError::new(
                ErrorCode::Unavailable,
                format!(
                    "cannot start `{}` for plugin `{}`: {e}",
                    self.argv[0], self.plugin
                ),
            )
        })?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(unavailable(self, "has no pipes"));
        };
        let (tx, lines) = mpsc::channel(LINE_QUEUE);
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout);
            let mut line = Vec::new();
            loop {
                line.clear();
                match (&mut reader)
                    .take(MAX_LINE as u64)
                    .read_until(b'\n', &mut line)
                    .await
                {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        let text = String::from_utf8_lossy(&line);
                        let text = text.trim_end_matches(['\r', '\n']).to_owned();
                        if tx.send(text).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
        let plugin = self.plugin.clone();
        let program = self.argv[0].clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let line: String = line.chars().take(4096).collect();
                tracing::info!(plugin = %plugin, process = %program, "{line}");
            }
        });
        self.generation += 1;
        self.memo = None;
        self.started = Some(Instant::now());
        tracing::info!(plugin = %self.plugin, process = %self.argv[0], generation = self.generation, "process started");
        Ok(Live {
            child: Some(child),
            stdin,
            lines,
        })
    }
}

/// Asks the kernel to send the child `SIGTERM` when the node dies, even
/// by kill -9.
fn die_with_the_node(command: &mut tokio::process::Command) {
    #[allow(unsafe_code)]
    // SAFETY: between fork and exec only async-signal-safe calls are made
    // (prctl), and nothing is allocated.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
}

fn unavailable(process: &Supervised, what: &str) -> CallError {
    CallError::new(
        ErrorCode::Unavailable,
        format!(
            "process `{}` of plugin `{}` {what}",
            process.argv[0], process.plugin
        ),
    )
}

/// The processes this call holds, by argument list, and the lines to
/// write to them should the call end while waiting.
#[derive(Default)]
struct Held {
    processes: HashMap<Vec<String>, OwnedMutexGuard<Supervised>>,
    abandon: HashMap<Vec<String>, String>,
}

impl Drop for Held {
    /// The call ended: abandon lines still set are written (off the
    /// call's task, which may be going away), each process's lock passing
    /// on only afterwards.
    fn drop(&mut self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        for (argv, line) in self.abandon.drain() {
            let Some(mut process) = self.processes.remove(&argv) else {
                continue;
            };
            runtime.spawn(async move {
                let Some(live) = process.live.as_mut() else {
                    return;
                };
                let mut bytes = line.into_bytes();
                bytes.push(b'\n');
                let written = tokio::time::timeout(Duration::from_secs(5), async {
                    live.stdin.write_all(&bytes).await?;
                    live.stdin.flush().await
                })
                .await;
                tracing::debug!(plugin = %process.plugin, process = %process.argv[0], written = matches!(written, Ok(Ok(()))), "abandon line of an ended call");
            });
        }
    }
}

/// `process` as one call's plugin sees it.
pub struct Process<'a>(&'a mut CallState);

struct ProcessData;

impl HasData for ProcessData {
    type Data<'a> = Process<'a>;
}

/// Links `hearth:node/process`.
pub fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    process::add_to_linker::<CallState, ProcessData>(linker, |state| Process(state))
}

impl Process<'_> {
    /// The plugin and the environment `argv` runs with, if it is granted.
    fn granted(&self, argv: &[String]) -> Result<(Arc<str>, Env), CallError> {
        let caller = self.0.caller();
        let plugin = caller.plugin.clone();
        // Granted commands are never empty (checked when the stack was
        // resolved), so this also keeps `argv[0]` in bounds for callers.
        if argv.is_empty() || !caller.grants.process.iter().any(|granted| granted == argv) {
            return Err(CallError::new(
                ErrorCode::Denied,
                format!(
                    "plugin `{plugin}` may not run {argv:?}; {}",
                    GrantSet::process_grant_hint(&plugin, argv)
                ),
            ));
        }
        let env = caller
            .grants
            .process_env
            .iter()
            .filter_map(|name| std::env::var(name).ok().map(|v| (name.clone(), v)))
            .collect();
        Ok((plugin, env))
    }

    /// The process `argv`, held by this call, running.
    async fn held(
        &mut self,
        argv: &[String],
    ) -> Result<&mut OwnedMutexGuard<Supervised>, CallError> {
        let deadline = self.0.caller().ctx.deadline;
        let held = self.locked(argv).await?;
        tokio::time::timeout_at(deadline.into(), held.ensure_live())
            .await
            .map_err(|_| {
                CallError::new(
                    ErrorCode::Timeout,
                    format!("process `{}` did not start before the deadline", argv[0]),
                )
            })??;
        Ok(held)
    }

    /// The process `argv`, held by this call, as it is (running or not).
    async fn locked(
        &mut self,
        argv: &[String],
    ) -> Result<&mut OwnedMutexGuard<Supervised>, CallError> {
        let (plugin, env) = self.granted(argv)?;
        let deadline = self.0.caller().ctx.deadline;
        if !self.0.slot(Held::default).processes.contains_key(argv) {
            let processes = self.0.resource::<Processes>("processes")?;
            let entry = processes.entry(&plugin, argv, env);
            let guard = tokio::time::timeout_at(deadline.into(), entry.lock_owned())
                .await
                .map_err(|_| {
                    CallError::new(
                        ErrorCode::Timeout,
                        format!(
                            "process `{}` stayed busy with other calls until this call's deadline",
                            argv[0]
                        ),
                    )
                })?;
            self.0
                .slot(Held::default)
                .processes
                .insert(argv.to_vec(), guard);
        }
        self.0
            .slot(Held::default)
            .processes
            .get_mut(argv)
            .ok_or_else(|| CallError::new(ErrorCode::Failed, "lost the process lock"))
    }
}

impl process::Host for Process<'_> {
    async fn generation(
        &mut self,
        argv: Vec<String>,
    ) -> wasmtime::Result<Result<u64, wit::CallError>> {
        let result = self.held(&argv).await.map(|p| p.generation);
        bindings::to_wit(result)
    }

    async fn write_line(
        &mut self,
        argv: Vec<String>,
        line: String,
    ) -> wasmtime::Result<Result<(), wit::CallError>> {
        let result = async {
            let process = self.held(&argv).await?;
            let Some(live) = process.live.as_mut() else {
                return Err(unavailable(process, "is not running"));
            };
            let mut bytes = line.into_bytes();
            bytes.push(b'\n');
            let written = async {
                live.stdin.write_all(&bytes).await?;
                live.stdin.flush().await
            }
            .await;
            written.map_err(|e| unavailable(process, &format!("exited (writing its stdin: {e})")))
        }
        .await;
        bindings::to_wit(result)
    }

    async fn read_line(
        &mut self,
        argv: Vec<String>,
        timeout_ms: u32,
    ) -> wasmtime::Result<Result<Option<String>, wit::CallError>> {
        let deadline = self.0.caller().ctx.deadline;
        let result = async {
            let process = self.held(&argv).await?;
            let Some(live) = process.live.as_mut() else {
                return Err(unavailable(process, "is not running"));
            };
            let until = (Instant::now() + Duration::from_millis(timeout_ms.into())).min(deadline);
            match tokio::time::timeout_at(until.into(), live.lines.recv()).await {
                Err(_) => Ok(None),
                Ok(Some(line)) => Ok(Some(line)),
                Ok(None) => Err(unavailable(process, "exited")),
            }
        }
        .await;
        bindings::to_wit(result)
    }

    async fn memo(
        &mut self,
        argv: Vec<String>,
    ) -> wasmtime::Result<Result<Option<String>, wit::CallError>> {
        let result = self.held(&argv).await.map(|p| p.memo.clone());
        bindings::to_wit(result)
    }

    async fn set_memo(
        &mut self,
        argv: Vec<String>,
        memo: String,
    ) -> wasmtime::Result<Result<(), wit::CallError>> {
        let result = async {
            if memo.len() > MAX_MEMO {
                return Err(CallError::new(
                    ErrorCode::InvalidInput,
                    format!("a process memo is at most {MAX_MEMO} bytes"),
                ));
            }
            self.held(&argv).await?.memo = Some(memo);
            Ok(())
        }
        .await;
        bindings::to_wit(result)
    }

    async fn on_abandon(
        &mut self,
        argv: Vec<String>,
        line: Option<String>,
    ) -> wasmtime::Result<Result<(), wit::CallError>> {
        let result = async {
            self.held(&argv).await?;
            let abandon = &mut self.0.slot(Held::default).abandon;
            match line {
                Some(line) => abandon.insert(argv, line),
                None => abandon.remove(&argv),
            };
            Ok(())
        }
        .await;
        bindings::to_wit(result)
    }

    async fn send_signal(
        &mut self,
        argv: Vec<String>,
        signal: process::Signal,
    ) -> wasmtime::Result<Result<(), wit::CallError>> {
        use rustix::process::Signal;
        let signal = match signal {
            process::Signal::Hangup => Signal::HUP,
            process::Signal::Terminate => Signal::TERM,
            process::Signal::Interrupt => Signal::INT,
            process::Signal::Quit => Signal::QUIT,
            process::Signal::User1 => Signal::USR1,
            process::Signal::User2 => Signal::USR2,
        };
        let result = async {
            // Never started to be signalled: a process just started may not
            // handle the signal yet (nginx would die of a SIGHUP).
            let process = self.locked(&argv).await?;
            let running = process.live.as_mut().is_some_and(Live::running);
            let pid = process
                .live
                .as_ref()
                .and_then(Live::pid)
                .filter(|_| running);
            let Some(pid) = pid else {
                return Err(unavailable(
                    process,
                    "is not running (it starts again on its next use)",
                ));
            };
            rustix::process::kill_process(pid, signal)
                .map_err(|e| unavailable(process, &format!("cannot be signalled: {e}")))
        }
        .await;
        bindings::to_wit(result)
    }

    async fn run(
        &mut self,
        argv: Vec<String>,
        stdin: Vec<u8>,
    ) -> wasmtime::Result<Result<process::RunOutput, wit::CallError>> {
        // Everything taken from the call before the await: the future
        // holds no borrow of the call's state.
        let deadline = self.0.caller().ctx.deadline;
        let result = match self.granted(&argv) {
            Ok((plugin, env)) => run_to_completion(&plugin, &argv, env, stdin, deadline).await,
            Err(e) => Err(e),
        };
        bindings::to_wit(result)
    }
}

/// Runs `argv` with `input` on its stdin until it exits or `deadline`
/// passes (then it is killed); each output stream kept up to
/// [`MAX_RUN_OUTPUT`], the rest drained so the command never blocks.
async fn run_to_completion(
    plugin: &Arc<str>,
    argv: &[String],
    env: Env,
    input: Vec<u8>,
    deadline: Instant,
) -> Result<process::RunOutput, CallError> {
    let mut child = command(argv, &env, true).spawn().map_err(|e| {
        CallError::new(
            ErrorCode::Unavailable,
            format!("cannot run `{}` for plugin `{plugin}`: {e}", argv[0]),
        )
    })?;
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(CallError::new(
            ErrorCode::Unavailable,
            format!("`{}` has no pipes", argv[0]),
        ));
    };
    let feed = async move {
        // A command that does not read its input just closes the pipe.
        let _ = stdin.write_all(&input).await;
    };
    async fn keep(mut stream: impl tokio::io::AsyncRead + Unpin) -> Vec<u8> {
        let mut kept = Vec::new();
        let _ = (&mut stream)
            .take(MAX_RUN_OUTPUT)
            .read_to_end(&mut kept)
            .await;
        let _ = tokio::io::copy(&mut stream, &mut tokio::io::sink()).await;
        kept
    }
    let work = async {
        let ((), stdout, stderr, status) =
            tokio::join!(feed, keep(stdout), keep(stderr), child.wait());
        (stdout, stderr, status)
    };
    let Ok((stdout, stderr, status)) = tokio::time::timeout_at(deadline.into(), work).await else {
        let _ = child.start_kill();
        return Err(CallError::new(
            ErrorCode::Timeout,
            format!(
                "`{}` did not finish before the call's deadline; it was killed",
                argv[0]
            ),
        ));
    };
    let status = status.map_err(|e| {
        CallError::new(
            ErrorCode::Unavailable,
            format!("waiting for `{}`: {e}", argv[0]),
        )
    })?;
    tracing::info!(plugin = %plugin, process = %argv[0], status = ?status.code(), "ran");
    Ok(process::RunOutput {
        status: status.code(),
        stdout,
        stderr,
    })
}
