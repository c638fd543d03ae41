//! MCP over stdio: one JSON-RPC message per line on stdin, one per line on
//! stdout, nothing else on stdout (logs go to stderr). Each request runs on
//! a task of its own, so a long call does not hold up `ping` or a
//! cancellation.

use std::sync::Arc;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use super::{Backend, Engine, code, error};

/// Largest line accepted from the client.
const MAX_LINE: usize = 16 << 20;

/// Serves one MCP session over `input` and `output` until `input` ends.
pub async fn serve<B: Backend>(
    backend: Arc<B>,
    input: impl AsyncRead + Unpin,
    mut output: impl AsyncWrite + Unpin + Send + 'static,
) {
    let (out, mut outgoing) = mpsc::unbounded_channel::<Value>();
    let (server_tx, mut server_rx) = mpsc::channel::<Value>(64);
    let engine = Engine::new(backend, server_tx);
    let watcher = tokio::spawn(engine.clone().watch_changes());
    let forward = {
        let out = out.clone();
        tokio::spawn(async move {
            while let Some(message) = server_rx.recv().await {
                if out.send(message).is_err() {
                    return;
                }
            }
        })
    };
    let writer = tokio::spawn(async move {
        while let Some(message) = outgoing.recv().await {
            let mut line = serde_json::to_vec(&message).unwrap_or_default();
            line.push(b'\n');
            if output.write_all(&line).await.is_err() || output.flush().await.is_err() {
                return;
            }
        }
    });
    let mut lines = BufReader::new(input);
    let mut line = String::new();
    loop {
        line.clear();
        match lines.read_line(&mut line).await {
            Ok(0) | Err(_) => break,
            Ok(n) if n > MAX_LINE => {
                let _ = out.send(error(
                    Value::Null,
                    code::INVALID_REQUEST,
                    "message too large",
                ));
                continue;
            }
            Ok(_) => {}
        }
        if line.trim().is_empty() {
            continue;
        }
        let message: Value = match serde_json::from_str(&line) {
            Ok(message) => message,
            Err(e) => {
                let _ = out.send(error(
                    Value::Null,
                    code::PARSE_ERROR,
                    format!("not JSON: {e}"),
                ));
                continue;
            }
        };
        let (engine, out) = (engine.clone(), out.clone());
        tokio::spawn(async move {
            if let Some(response) = engine.handle(message, &out).await {
                let _ = out.send(response);
            }
        });
    }
    watcher.abort();
    forward.abort();
    drop(out);
    drop(engine);
    // Whatever is still running answers into a closed channel; the writer
    // ends once every sender is gone or after a moment.
    let _ = tokio::time::timeout(std::time::Duration::from_millis(200), writer).await;
}
