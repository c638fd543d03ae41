//! A plugin's stderr, kept as a bounded tail so a panic message can be
//! reported with the trap. Writes never fail, however much is written: the
//! oldest bytes are dropped.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// The last `capacity` bytes a plugin wrote to stderr.
#[derive(Clone)]
pub struct StderrTail {
    buffer: Arc<Mutex<VecDeque<u8>>>,
    capacity: usize,
}

impl StderrTail {
    /// An empty tail keeping `capacity` bytes.
    pub fn new(capacity: usize) -> Self {
        StderrTail {
            buffer: Arc::default(),
            capacity,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<u8>> {
        self.buffer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets everything written so far (a warm instance's next call).
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// What best explains a failure: the last Rust panic (`panicked at
    /// <location>: <message>`) when there is one, else the last non-empty
    /// line.
    pub fn last_line(&self) -> Option<String> {
        let buffer = self.lock();
        let bytes: Vec<u8> = buffer.iter().copied().collect();
        let text = String::from_utf8_lossy(&bytes);
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        if let Some(at) = lines.iter().rposition(|l| l.contains("panicked at")) {
            let location = lines[at]
                .split_once("panicked at ")
                .map_or(lines[at], |(_, loc)| loc.trim_end_matches(':'));
            let message: Vec<&str> = lines[at + 1..]
                .iter()
                .take_while(|l| !l.starts_with("note:"))
                .copied()
                .collect();
            return Some(format!("panicked at {location}: {}", message.join(" ")));
        }
        lines
            .iter()
            .rev()
            .find(|l| !l.is_empty())
            .map(|l| (*l).to_owned())
    }

    fn append(&self, bytes: &[u8]) {
        let mut buffer = self.lock();
        let keep = bytes.len().min(self.capacity);
        buffer.extend(&bytes[bytes.len() - keep..]);
        let excess = buffer.len().saturating_sub(self.capacity);
        buffer.drain(..excess);
    }
}

impl AsyncWrite for StderrTail {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.append(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl IsTerminal for StderrTail {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for StderrTail {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_the_tail() {
        let tail = StderrTail::new(8);
        tail.append(b"first line\n");
        tail.append(b"xx\npanic!\n");
        assert_eq!(tail.last_line().as_deref(), Some("panic!"));
        assert_eq!(tail.lock().len(), 8);
        tail.append(&[b'a'; 100]);
        assert_eq!(tail.lock().len(), 8);
        tail.clear();
        assert_eq!(tail.last_line(), None);
    }

    #[test]
    fn reports_the_panic_not_the_backtrace_note() {
        let tail = StderrTail::new(1024);
        tail.append(b"\nthread '<unnamed>' panicked at src/lib.rs:40:5:\nboom\nnote: run with `RUST_BACKTRACE=1`\n");
        assert_eq!(
            tail.last_line().as_deref(),
            Some("panicked at src/lib.rs:40:5: boom")
        );
    }
}
