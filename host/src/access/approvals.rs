//! New clients waiting for an operator: one request per key however many
//! connections present it, every watching operator agent told, the first
//! answer ending the wait for all of them.
//!
//! A request lives here while someone waits on it. The first connection to
//! present an unknown key opens it and every agent watching
//! (`/node/clients/requests`) hears of it; later connections with the same
//! key wait on the same request. An answer (`decided`) or the last waiter
//! giving up (`withdrawn`) closes it, and the agents hear that too, so the
//! prompts still open elsewhere are cancelled.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};

use super::store::{ClientRecord, Status};

/// What operator agents hear.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum ApprovalEvent {
    /// A new client asks to be let in.
    Request {
        /// Its key, hex.
        key: String,
        /// The name it gave.
        name: String,
        /// Where it asked (`socket`, `http`).
        door: String,
    },
    /// Someone answered; any prompt for this key is moot.
    Decided {
        /// The key.
        key: String,
        /// The answer.
        status: Status,
        /// The scopes it was given.
        scopes: Vec<String>,
        /// Who answered.
        by: String,
    },
    /// Nobody waits for an answer any more.
    Withdrawn {
        /// The key.
        key: String,
    },
}

/// How a wait ended.
pub type Answer = Option<Status>;

struct Open {
    request: ApprovalEvent,
    answer: watch::Sender<Answer>,
}

/// The open requests and the agents' channel.
pub struct Approvals {
    open: Mutex<BTreeMap<String, Open>>,
    events: broadcast::Sender<ApprovalEvent>,
}

/// What [`Approvals::wait_on`] found.
pub enum Waiting {
    /// A request is open (opened by this call if `opened`).
    On {
        /// Resolves with the answer.
        answer: watch::Receiver<Answer>,
        /// True when this call opened it.
        opened: bool,
    },
    /// Too many requests are open.
    Full,
}

impl Approvals {
    /// No requests yet.
    pub fn new() -> Self {
        Approvals {
            open: Mutex::new(BTreeMap::new()),
            events: broadcast::channel(1024).0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Open>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits on the request for `record`'s key, opening it (and telling the
    /// agents) if none is open, unless `max_open` are open already.
    pub fn wait_on(&self, record: &ClientRecord, max_open: usize) -> Waiting {
        let mut open = self.lock();
        if let Some(request) = open.get(&record.key) {
            return Waiting::On {
                answer: request.answer.subscribe(),
                opened: false,
            };
        }
        if open.len() >= max_open {
            return Waiting::Full;
        }
        let request = ApprovalEvent::Request {
            key: record.key.clone(),
            name: record.name.clone(),
            door: record.door.clone(),
        };
        let (answer, receiver) = watch::channel(None);
        let _ = self.events.send(request.clone());
        open.insert(record.key.clone(), Open { request, answer });
        Waiting::On {
            answer: receiver,
            opened: true,
        }
    }

    /// Closes the request of `record`'s key with its decision.
    pub fn answered(&self, record: &ClientRecord) {
        let request = self.lock().remove(&record.key);
        if let Some(request) = request {
            let _ = request.answer.send(Some(record.status));
        }
        let _ = self.events.send(ApprovalEvent::Decided {
            key: record.key.clone(),
            status: record.status,
            scopes: record.scopes.clone(),
            by: record.decided_by.clone().unwrap_or_default(),
        });
    }

    /// A waiter on `key` gave up holding `answer`; true when it was the
    /// last, which closes the request.
    pub fn give_up(&self, key: &str, answer: watch::Receiver<Answer>) -> bool {
        let mut open = self.lock();
        drop(answer);
        let last = open
            .get(key)
            .is_some_and(|request| request.answer.receiver_count() == 0);
        if last {
            open.remove(key);
            let _ = self.events.send(ApprovalEvent::Withdrawn {
                key: key.to_owned(),
            });
        }
        last
    }

    /// The requests open now, and the channel of what happens next.
    pub fn watch(&self) -> (Vec<ApprovalEvent>, broadcast::Receiver<ApprovalEvent>) {
        let open = self.lock();
        // Subscribed under the lock: nothing falls between the two.
        let receiver = self.events.subscribe();
        let requests = open.values().map(|r| r.request.clone()).collect();
        (requests, receiver)
    }
}

impl Default for Approvals {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: &str) -> ClientRecord {
        ClientRecord {
            key: key.into(),
            name: "n".into(),
            status: Status::Pending,
            scopes: vec![],
            door: "socket".into(),
            requested_at_ms: 0,
            decided_by: None,
            decided_at_ms: None,
        }
    }

    #[tokio::test]
    async fn one_request_per_key_and_one_answer_for_all_waiters() {
        let approvals = Approvals::new();
        let (before, mut events) = approvals.watch();
        assert!(before.is_empty());
        let mut answers = Vec::new();
        let mut opened = 0;
        for _ in 0..5 {
            let Waiting::On { answer, opened: o } = approvals.wait_on(&record("k"), 4) else {
                panic!("room for it");
            };
            opened += usize::from(o);
            answers.push(answer);
        }
        assert_eq!(opened, 1);
        assert!(matches!(
            events.recv().await.unwrap(),
            ApprovalEvent::Request { .. }
        ));
        assert_eq!(approvals.watch().0.len(), 1);
        let mut decided = record("k");
        decided.status = Status::Approved;
        approvals.answered(&decided);
        for mut answer in answers {
            answer.changed().await.unwrap();
            assert_eq!(*answer.borrow(), Some(Status::Approved));
        }
        assert!(matches!(
            events.recv().await.unwrap(),
            ApprovalEvent::Decided { .. }
        ));
        assert!(approvals.watch().0.is_empty());
    }

    #[test]
    fn the_last_waiter_withdraws_and_the_bound_holds() {
        let approvals = Approvals::new();
        let Waiting::On { answer: a, .. } = approvals.wait_on(&record("a"), 1) else {
            panic!()
        };
        let Waiting::On { answer: a2, .. } = approvals.wait_on(&record("a"), 1) else {
            panic!()
        };
        assert!(matches!(approvals.wait_on(&record("b"), 1), Waiting::Full));
        assert!(!approvals.give_up("a", a));
        assert!(approvals.give_up("a", a2));
        assert!(matches!(
            approvals.wait_on(&record("b"), 1),
            Waiting::On { .. }
        ));
    }
}
