//! Node events: plugins loaded, peers up and down, calls from outside that
//! failed. Each gets an id counting up from 1 for the life of the process;
//! the last [`KEEP`] are kept so a follower that reconnects can resume from
//! the last id it saw (`/node/host/events`, `GET /v1/events` with
//! `Last-Event-ID`).

use std::collections::VecDeque;
use std::sync::Mutex;

use serde_json::{Value, json};
use tokio::sync::broadcast;

/// Events kept for resumption.
const KEEP: usize = 4096;

/// One event, as JSON text with its id.
pub type Event = (u64, String);

/// The node's event log.
pub struct NodeEvents {
    state: Mutex<State>,
    live: broadcast::Sender<Event>,
}

struct State {
    next: u64,
    kept: VecDeque<Event>,
}

impl Default for NodeEvents {
    fn default() -> Self {
        NodeEvents {
            state: Mutex::new(State {
                next: 1,
                kept: VecDeque::with_capacity(KEEP),
            }),
            live: broadcast::channel(1024).0,
        }
    }
}

impl crate::capabilities::events::NodeEventSink for NodeEvents {
    fn record(&self, kind: &str, data: Value) {
        self.emit(kind, data);
    }
}

impl NodeEvents {
    /// Records an event of `kind` with `data`.
    pub fn emit(&self, kind: &str, data: Value) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let id = state.next;
        state.next += 1;
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let text = json!({ "id": id, "kind": kind, "at_ms": at, "data": data }).to_string();
        if state.kept.len() == KEEP {
            state.kept.pop_front();
        }
        state.kept.push_back((id, text.clone()));
        // Sent under the lock, so live events follow replayed ones in order.
        let _ = self.live.send((id, text));
    }

    /// Kept events after `since`, and a receiver for the ones to come.
    pub fn follow(&self, since: u64) -> (Vec<Event>, broadcast::Receiver<Event>) {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let kept = state
            .kept
            .iter()
            .filter(|(id, _)| *id > since)
            .cloned()
            .collect();
        (kept, self.live.subscribe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_follower_resumes_after_the_last_id_it_saw() {
        let events = NodeEvents::default();
        for n in 0..5 {
            events.emit("test", json!({ "n": n }));
        }
        let (kept, mut live) = events.follow(3);
        assert_eq!(kept.iter().map(|e| e.0).collect::<Vec<_>>(), [4, 5]);
        events.emit("test", json!({ "n": 5 }));
        assert_eq!(live.try_recv().unwrap().0, 6);
    }
}
