//! Messaging end to end: real `host serve` processes — a broker (`hub`), a
//! sending node (`a`) and a receiving node (`b`) whose `relay` plugin
//! handles messages — paired as operators pair nodes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hearth_host::client::{CallOptions, Client};
use hearth_tests::TestNode;
use serde_json::{Value, json};

use crate::mesh::{Seat, seat, wait_for_state};

/// The three nodes of a messaging test.
struct Trio {
    hub: TestNode,
    a: TestNode,
    b: TestNode,
    a_key: String,
    b_key: String,
    hub_key: String,
}

/// Starts hub (broker), a and b (members dialing the hub); `b_extra` goes
/// into b's stack (its plugins), `hub_extra` into the hub's `[broker]`.
fn trio(b_extra: &str, hub_extra: &str) -> Trio {
    let (hub, a, b) = (seat("hub"), seat("a"), seat("b"));
    let (a_key, b_key, hub_key) = (a.key.clone(), b.key.clone(), hub.key.clone());
    let hub_rest = format!(
        "{}{}[broker]\nenabled = true\n{hub_extra}\n",
        a.as_peer(false, ""),
        b.as_peer(false, "")
    );
    let member = |hub: &Seat, extra: &str| {
        format!(
            "{}[messaging]\nbroker = \"hub\"\nretry_min_ms = 50\nretry_max_ms = 1000\n{extra}\n",
            hub.as_peer(true, "")
        )
    };
    let a_rest = member(&hub, "");
    let b_rest = member(&hub, b_extra);
    let hub = hub.start("", &hub_rest);
    let a = a.start("", &a_rest);
    let b = b.start("", &b_rest);
    wait_for_state(&a, "hub", "connected");
    wait_for_state(&b, "hub", "connected");
    Trio {
        hub,
        a,
        b,
        a_key,
        b_key,
        hub_key,
    }
}

fn cli_json(node: &TestNode, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    node.cli(&all).ok_json()
}

/// Waits until `check` on `node`'s inbox (all pages) holds.
fn wait_inbox(node: &TestNode, what: &str, check: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let messages = inbox(node);
        if check(&messages) {
            return messages;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{what}: inbox is {messages:#?}\nlogs:\n{}",
            node.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every inbox message, paging with `since`.
fn inbox(node: &TestNode) -> Vec<Value> {
    let mut all = Vec::new();
    let mut since = 0;
    loop {
        let page = node
            .cli(&[
                "call",
                "/node/msg/inbox",
                &json!({ "since": since, "limit": 1000 }).to_string(),
            ])
            .ok_json();
        let messages = page["messages"].as_array().unwrap().clone();
        all.extend(messages);
        match page["next"].as_i64() {
            Some(next) => since = next,
            None => return all,
        }
    }
}

#[test]
fn a_message_crosses_the_broker_to_a_subscriber_and_a_plugin_handler() {
    let trio = trio(
        "handler_max_bytes = 120\n[plugins.relay]\ngrants.messages = { direct = true, topics = [\"news\"] }\n",
        "",
    );
    let Trio {
        hub,
        a,
        b,
        a_key,
        b_key,
        hub_key,
    } = &trio;
    // b follows the topic; the broker hears it through b's outbox worker.
    let topics = b.cli(&["msg", "topics", "--subscribe", "news"]);
    assert!(topics.stdout().contains("news"), "{}", topics.stdout());

    // A client of b subscribed to its inbox.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let streamed = Arc::new(Mutex::new(Vec::<Value>::new()));
    let socket = b.socket().to_owned();
    let sink = streamed.clone();
    runtime.spawn(async move {
        let client = Client::connect(&socket).await.unwrap();
        let _ = client
            .call_with_events(
                "/node/msg/subscribe",
                "{}",
                CallOptions::default(),
                |event| {
                    sink.lock()
                        .unwrap()
                        .push(serde_json::from_str(&event).unwrap())
                },
            )
            .await;
    });

    // By key, by a name only the broker knows, and to the topic (once the
    // broker has b's subscription).
    let sent = cli_json(a, &["msg", "send", b_key, r#"{"hello": 1}"#, "--id", "m-1"]);
    assert_eq!(sent["client_message_id"], "m-1");
    assert_eq!(sent["duplicate"], false);
    cli_json(a, &["msg", "send", "b", r#"{"hello": 2}"#]);
    let started = Instant::now();
    while cli_json(hub, &["msg", "broker"])["subscriptions"] != 1 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "b's topics never reached the hub"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    cli_json(a, &["msg", "post", "news", r#"{"headline": "x"}"#]);
    // Longer than b's handler limit: the handler sees it cut and marked.
    let long = json!({ "long": "y".repeat(200) }).to_string();
    cli_json(a, &["msg", "send", b_key, &long]);
    // The handler may not send to anyone but the sender.
    let sneaky = json!({ "try_send_to": hub_key }).to_string();
    cli_json(a, &["msg", "send", b_key, &sneaky]);

    let got = wait_inbox(b, "b gets five messages", |m| m.len() == 5);
    assert!(
        got.iter().all(|m| m["from"]["key"] == a_key.as_str()),
        "{got:#?}"
    );
    assert!(
        got.iter().all(|m| m["from"]["name"].is_null()),
        "b does not know a by name"
    );
    assert_eq!(got[0]["client_message_id"], "m-1");
    assert_eq!(got[0]["body"], json!({ "hello": 1 }));
    assert_eq!(got[2]["topic"], "news");

    // The subscriber saw the same five, in order.
    let started = Instant::now();
    while streamed.lock().unwrap().len() < 5 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the subscription saw {:?}",
            streamed.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let seen: Vec<Value> = streamed
        .lock()
        .unwrap()
        .iter()
        .map(|m| m["seq"].clone())
        .collect();
    let stored: Vec<Value> = got.iter().map(|m| m["seq"].clone()).collect();
    assert_eq!(seen, stored);

    // The relay's handler answered each one, from b, with what it saw.
    let replies = wait_inbox(a, "a gets five replies", |m| m.len() == 5);
    assert!(
        replies
            .iter()
            .all(|m| m["from"]["name"].is_null() && m["from"]["key"] == b_key.as_str())
    );
    let by_hello: Vec<&Value> = replies.iter().map(|m| &m["body"]["re"]).collect();
    assert!(by_hello.contains(&&json!({ "hello": 1 })), "{replies:#?}");
    let cut = replies
        .iter()
        .find(|m| m["body"]["truncated"] == true)
        .expect("the long body reached the handler truncated");
    assert!(cut["body"]["re"].as_str().unwrap().len() <= 120);
    let refused = replies
        .iter()
        .find_map(|m| m["body"]["elsewhere"].as_str())
        .expect("the handler tried to send elsewhere");
    assert!(refused.starts_with("denied:"), "{refused}");
    assert!(
        refused.contains("may only reply to the sender"),
        "{refused}"
    );

    // A resend with the same id is a no-op; other content is a conflict.
    let again = cli_json(a, &["msg", "send", b_key, r#"{"hello": 1}"#, "--id", "m-1"]);
    assert_eq!(again["duplicate"], true);
    let conflict = a.cli(&["msg", "send", b_key, r#"{"hello": 99}"#, "--id", "m-1"]);
    assert_eq!(conflict.code(), 1);
    assert!(
        conflict.stderr().contains("error[conflict]"),
        "{}",
        conflict.stderr()
    );

    // The outbox drained; the broker stored 5 + 5 replies, no duplicate.
    let outbox = cli_json(a, &["msg", "outbox"]);
    assert_eq!(outbox["counts"]["done"], 5, "{outbox}");
    assert_eq!(outbox["max_age_hours"], 23.0);
    let stats = cli_json(hub, &["msg", "broker"]);
    assert_eq!(stats["accepted"], 10, "{stats}");
    assert_eq!(stats["dedupe_window_s"], 86_400);
    assert_eq!(inbox(b).len(), 5);
    drop(trio);
}

#[test]
fn a_broker_refuses_malformed_and_conflicting_messages_without_effect() {
    let trio = trio("", "");
    let Trio { hub, a, b_key, .. } = &trio;
    let before = cli_json(hub, &["msg", "broker"]);
    // A peer's client calls the broker directly with bad messages.
    let bad = json!({ "messages": [
        { "client_message_id": "has space", "to": b_key, "body": 1, "digest": "d" },
        { "client_message_id": "both", "to": b_key, "topic": "t", "body": 1, "digest": "d" },
        { "client_message_id": "neither", "body": 1, "digest": "d" },
        { "client_message_id": "nobody", "to": "stranger", "body": 1, "digest": "d" },
        { "client_message_id": "bad-topic", "topic": "no spaces please", "body": 1, "digest": "d" },
    ]});
    let out = a
        .cli(&["call", "/hub/broker/publish", &bad.to_string()])
        .ok_json();
    let codes: Vec<&str> = out["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["error"]["code"].as_str().unwrap())
        .collect();
    assert_eq!(
        codes,
        [
            "invalid-input",
            "invalid-input",
            "invalid-input",
            "not-found",
            "invalid-input"
        ]
    );
    // Frames that are not a publish input at all.
    for garbage in [r#"{"messages": 5}"#, r#"{"messages": [{"body": 1}]}"#, "[]"] {
        let refused = a.cli(&["call", "/hub/broker/publish", garbage]);
        assert!(
            refused.stderr().contains("error[invalid-input]"),
            "{}",
            refused.stderr()
        );
    }
    // And the same id with two contents.
    let first = json!({ "messages": [{ "client_message_id": "c1", "to": b_key, "body": 1, "digest": "one" }] });
    let second = json!({ "messages": [{ "client_message_id": "c1", "to": b_key, "body": 2, "digest": "two" }] });
    a.cli(&["call", "/hub/broker/publish", &first.to_string()])
        .ok_json();
    let out = a
        .cli(&["call", "/hub/broker/publish", &second.to_string()])
        .ok_json();
    assert_eq!(out["results"][0]["error"]["code"], "conflict", "{out}");
    let after = cli_json(hub, &["msg", "broker"]);
    assert_eq!(after["accepted"], before["accepted"].as_u64().unwrap() + 1);
    assert_eq!(after["conflicts"], 1);
    // Only the broker delivers into an inbox.
    let forged = json!({ "messages": [] });
    let refused = a.cli(&["call", "/node/msg/deliver", &forged.to_string()]);
    assert!(
        refused.stderr().contains("error[denied]"),
        "{}",
        refused.stderr()
    );
    drop(trio);
}

/// Sends `count` messages per sender from `senders` concurrent clients of
/// the node at `socket`, each retried with its id until acknowledged
/// (through kills and restarts); returns every acknowledged id.
async fn push(
    socket: std::path::PathBuf,
    to: String,
    senders: usize,
    count: usize,
    ids: impl Fn(usize, usize) -> String + Send + Sync + 'static,
) -> BTreeSet<String> {
    let ids = Arc::new(ids);
    let mut tasks = Vec::new();
    for s in 0..senders {
        let socket = socket.clone();
        let to = to.clone();
        let ids = ids.clone();
        tasks.push(tokio::spawn(async move {
            let mut acked = BTreeSet::new();
            let mut client: Option<Client> = None;
            for n in 0..count {
                let id = ids(s, n);
                // The body depends on the id alone, so senders that reuse
                // an id resend the same message.
                let input =
                    json!({ "to": to, "body": { "id": id }, "client_message_id": id }).to_string();
                loop {
                    if client.is_none() {
                        client = Client::connect(&socket).await.ok();
                        if client.is_none() {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            continue;
                        }
                    }
                    let options = CallOptions {
                        timeout: Some(Duration::from_secs(10)),
                        metadata: Vec::new(),
                    };
                    let result = client
                        .as_ref()
                        .unwrap()
                        .call_raw("/node/msg/send", &input, options)
                        .await;
                    match result {
                        Ok(reply) => {
                            assert_eq!(reply.output["client_message_id"], id.as_str());
                            acked.insert(id);
                            break;
                        }
                        Err(err) => {
                            if let Some(call) = err.call_error() {
                                // The node is draining or was killed under
                                // the call; anything else is a bug.
                                assert!(
                                    matches!(call.code, hearth_registry::ErrorCode::Unavailable),
                                    "{call}"
                                );
                            }
                            client = None;
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
            }
            acked
        }));
    }
    let mut all = BTreeSet::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all
}

/// Waits until the sender's outbox and the broker's queue are empty.
fn wait_drained(a: &TestNode, hub: &TestNode, expect_done: u64) -> (Value, Value) {
    let started = Instant::now();
    loop {
        let outbox = cli_json(a, &["msg", "outbox", "--limit", "1"]);
        let stats = cli_json(hub, &["msg", "broker"]);
        let counts = &outbox["counts"];
        if counts["pending"] == 0
            && counts["inflight"] == 0
            && counts["done"].as_u64() >= Some(expect_done)
            && stats["pending_deliveries"] == 0
        {
            return (outbox, stats);
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "never drained: {outbox}\n{stats}\na:\n{}\nhub:\n{}",
            a.logs(),
            hub.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn kill_9_campaign_every_acknowledged_message_arrives_exactly_once() {
    const SENDERS: usize = 8;
    const PER_SENDER: usize = 2_500;
    const MIN_KILLS: usize = 20;
    let Trio {
        hub, a, b, b_key, ..
    } = trio("", "");
    let socket = a.socket().to_owned();
    let done = Arc::new(AtomicBool::new(false));
    let kills = Arc::new(AtomicUsize::new(0));
    // The killer: SIGKILL the sending node or the broker at random moments
    // until the senders are done and at least MIN_KILLS happened.
    let killer = {
        let done = done.clone();
        let kills = kills.clone();
        std::thread::spawn(move || {
            let (mut a, mut hub) = (a, hub);
            let mut seed = 0x9e37_79b9_7f4a_7c15_u64 ^ u64::from(std::process::id());
            let mut next = || {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed
            };
            let mut by_node = BTreeMap::from([("a", 0), ("hub", 0)]);
            let mut during_push = 0;
            while !done.load(Ordering::SeqCst) || kills.load(Ordering::SeqCst) < MIN_KILLS {
                std::thread::sleep(Duration::from_millis(20 + next() % 130));
                let victim = if next() % 2 == 0 { "a" } else { "hub" };
                match victim {
                    "a" => a.restart(),
                    _ => hub.restart(),
                }
                *by_node.get_mut(victim).unwrap() += 1;
                kills.fetch_add(1, Ordering::SeqCst);
                if !done.load(Ordering::SeqCst) {
                    during_push += 1;
                }
            }
            (a, hub, by_node, during_push)
        })
    };
    let started = Instant::now();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let acked = runtime.block_on(push(socket, b_key.clone(), SENDERS, PER_SENDER, |s, n| {
        format!("s{s}-{n:05}")
    }));
    let pushed_in = started.elapsed();
    done.store(true, Ordering::SeqCst);
    let (a, hub, by_node, during_push) = killer.join().unwrap();
    assert_eq!(acked.len(), SENDERS * PER_SENDER);

    let (outbox, stats) = wait_drained(&a, &hub, acked.len() as u64);
    let messages = inbox(&b);
    let mut seen = BTreeMap::<String, usize>::new();
    for m in &messages {
        *seen
            .entry(m["client_message_id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    let missing: Vec<&String> = acked.iter().filter(|id| !seen.contains_key(*id)).collect();
    let twice: Vec<(&String, &usize)> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged messages lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert!(twice.is_empty(), "delivered twice: {twice:?}");
    assert_eq!(messages.len(), acked.len());
    assert_eq!(outbox["counts"]["dead"], 0, "{outbox}");
    assert_eq!(outbox["counts"]["inflight"], 0, "{outbox}");
    // The broker stored each message once; resends after kills were
    // answered from its store.
    assert_eq!(stats["accepted"], acked.len() as u64, "{stats}");
    println!(
        "kill -9 campaign: {} messages from {SENDERS} senders acknowledged in {:.1}s with {} kills (a: {}, hub: {}; {during_push} while sending); receiver inbox {} unique, 0 missing, 0 twice; broker accepted {}, answered {} resends as duplicates; outbox dead 0, inflight 0",
        acked.len(),
        pushed_in.as_secs_f64(),
        kills.load(Ordering::SeqCst),
        by_node["a"],
        by_node["hub"],
        seen.len(),
        stats["accepted"],
        stats["duplicates"],
    );
}

#[test]
fn resends_inside_the_dedupe_window_and_retry_storms_are_stored_once() {
    let Trio {
        hub,
        mut a,
        b,
        b_key,
        ..
    } = trio("", "");
    // A retry storm: 8 senders each send the same 200 ids.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let acked = runtime.block_on(push(
        a.socket().to_owned(),
        b_key.clone(),
        8,
        200,
        |_, n| format!("storm-{n:03}"),
    ));
    assert_eq!(acked.len(), 200);
    let (outbox, stats) = wait_drained(&a, &hub, 200);
    assert_eq!(outbox["counts"]["done"], 200, "{outbox}");
    assert_eq!(stats["accepted"], 200, "{stats}");
    wait_inbox(&b, "200 messages", |m| m.len() == 200);

    // The sending node loses its outbox and restarts inside the broker's
    // window; the same ids are sent again, as new to it.
    a.kill9();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(a.data_dir().join(format!("outbox.db{suffix}")));
    }
    a.restart();
    wait_for_state(&a, "hub", "connected");
    let again = runtime.block_on(push(
        a.socket().to_owned(),
        b_key.clone(),
        1,
        200,
        |_, n| format!("storm-{n:03}"),
    ));
    assert_eq!(again, acked);
    let (_, stats) = wait_drained(&a, &hub, 200);
    // The broker answered every resend with the id it stored, fanned out
    // nothing, and the receiver has each message once.
    assert_eq!(stats["accepted"], 200, "{stats}");
    assert!(stats["duplicates"].as_u64().unwrap() >= 200, "{stats}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(inbox(&b).len(), 200);
}

/// Unmounts a tmpfs when dropped.
struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Moves `dir` onto a fresh tmpfs of `size`, keeping its contents.
fn onto_tmpfs(dir: &std::path::Path, size: &str) -> Mount {
    let aside = dir.with_extension("orig");
    std::fs::rename(dir, &aside).unwrap();
    std::fs::create_dir(dir).unwrap();
    let mounted = std::process::Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size},mode=0700"),
            "tmpfs",
        ])
        .arg(dir)
        .status()
        .unwrap();
    assert!(
        mounted.success(),
        "mounting a tmpfs needs root (CI runs as root)"
    );
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(aside.join("."))
        .arg(dir)
        .status()
        .unwrap();
    assert!(copied.success());
    Mount(dir.to_owned())
}

#[test]
fn a_full_disk_refuses_sends_clearly_and_they_resume_when_space_returns() {
    let (hub, a, b) = (seat("hub"), seat("a"), seat("b"));
    let (b_key, a_data) = (b.key.clone(), a.dir.path().join("data"));
    let mount = onto_tmpfs(&a_data, "6m");
    let hub_rest = format!(
        "{}{}[broker]\nenabled = true\n",
        a.as_peer(false, ""),
        b.as_peer(false, "")
    );
    let member = format!(
        "{}[messaging]\nbroker = \"hub\"\nretry_min_ms = 50\nretry_max_ms = 500\n",
        hub.as_peer(true, "")
    );
    let hub = hub.start("", &hub_rest);
    let mut a = a.start("", &member);
    let b = b.start("", &member);
    wait_for_state(&a, "hub", "connected");

    // Fill the disk, then send until a send is refused.
    let filler = a_data.join("filler");
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 64 * 1024];
        while file.write_all(&block).is_ok() {}
        let _ = file.sync_all();
    }
    let body = json!({ "pad": "p".repeat(4000) }).to_string();
    let mut acked = Vec::new();
    let mut refusal = None;
    for n in 0..500 {
        let id = format!("full-{n}");
        let out = a.cli(&["msg", "send", &b_key, &body, "--id", &id]);
        if out.code() == 0 {
            acked.push(id);
        } else {
            refusal = Some(out.stderr());
            break;
        }
    }
    let refusal = refusal.expect("a send on a full disk was refused");
    assert!(
        refusal.contains("error[resource-exhausted]") && refusal.contains("no space left"),
        "{refusal}"
    );
    // The refused send changed nothing: its id is unknown to the outbox.
    let rows = cli_json(&a, &["msg", "outbox", "--limit", "1000"]);
    let refused_id = format!("full-{}", acked.len());
    assert!(
        !rows["rows"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["client_message_id"] == refused_id.as_str()),
        "{rows}"
    );

    // Space returns: the same send goes through, and everything
    // acknowledged arrives once.
    std::fs::remove_file(&filler).unwrap();
    let out = a.cli(&["msg", "send", &b_key, &body, "--id", &refused_id]);
    assert_eq!(out.code(), 0, "{}", out.stderr());
    acked.push(refused_id);
    let got = wait_inbox(&b, "every acknowledged message", |m| m.len() == acked.len());
    let ids: BTreeSet<&str> = got
        .iter()
        .map(|m| m["client_message_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, acked.iter().map(String::as_str).collect());
    a.kill9();
    drop(hub);
    drop(mount);
}

/// A second node with `original`'s identity (a copy of its vault), as when
/// a machine image is cloned.
fn clone_of(original: &Seat) -> Seat {
    let dir = tempfile::tempdir().unwrap();
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(original.dir.path().join("data"))
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(copied.success());
    Seat {
        dir,
        name: original.name,
        key: original.key.clone(),
        port: crate::mesh::free_udp_port(),
    }
}

#[test]
fn two_nodes_with_one_identity_meet_the_brokers_policy_with_a_log_line() {
    for (policy, hub_says, survivor) in [
        (
            "prefer_newest",
            "a newer connection with this node's key replaces the older one",
            "second",
        ),
        (
            "prefer_oldest",
            "refused a second connection with this node's key",
            "first",
        ),
        ("allow_concurrent", "kept beside the others", "both"),
    ] {
        let (hub, a) = (seat("hub"), seat("a"));
        let twin = clone_of(&a);
        let hub_rest = format!(
            "{}[broker]\nenabled = true\nduplicate_connections = \"{policy}\"\n",
            a.as_peer(false, "")
        );
        let member = format!("{}[messaging]\nbroker = \"hub\"\n", hub.as_peer(true, ""));
        let hub = hub.start("", &hub_rest);
        let first = a.start("", &member);
        wait_for_state(&first, "hub", "connected");
        let second = twin.start("", &member);
        let logs = crate::mesh::wait_for_log(&hub, hub_says);
        assert!(
            logs.contains("member_concurrent_connection"),
            "{policy}: {logs}"
        );
        let displaced = match survivor {
            "second" => Some(&first),
            "first" => Some(&second),
            _ => None,
        };
        if let Some(node) = displaced {
            // The displaced node says why and stops taking turns.
            crate::mesh::wait_for_log(node, "another node is using this node's identity");
            let status = crate::mesh::peer_status(node, "hub");
            assert_eq!(status["state"], "refused", "{policy}: {status}");
        } else {
            wait_for_state(&first, "hub", "connected");
            wait_for_state(&second, "hub", "connected");
        }
        let kept = match survivor {
            "first" => &first,
            _ => &second,
        };
        wait_for_state(kept, "hub", "connected");
        drop((first, second, hub));
    }
}

#[test]
fn a_damaged_outbox_refuses_to_start_until_recovered_and_a_damaged_inbox_starts_fresh() {
    let mut node =
        TestNode::start_with_stack("[node]\nname = \"solo\"\n[broker]\nenabled = true\n");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // Enough rows that the WAL has been checkpointed into the file.
    let pad = "p".repeat(4000);
    runtime.block_on(async {
        let client = node.client().await;
        for n in 0..400 {
            let input = json!({ "to": "solo", "body": { "pad": pad }, "client_message_id": format!("m{n}") });
            client.call("/node/msg/send", &input).await.unwrap();
        }
    });
    wait_inbox(&node, "400 messages to itself", |m| m.len() == 400);
    node.kill9();
    let data = node.data_dir();
    let damage = |name: &str| {
        let file = data.join(name);
        let len = std::fs::metadata(&file).unwrap().len();
        let bytes = std::fs::read(&file).unwrap();
        // Keep the header; scribble over the middle of the file.
        let mut damaged = bytes.clone();
        let mid = (len / 2) as usize;
        for b in &mut damaged[mid..(mid + 64 * 1024).min(bytes.len())] {
            *b = 0xa5;
        }
        std::fs::write(&file, damaged).unwrap();
        for suffix in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(data.join(format!("{name}{suffix}")));
        }
    };
    damage("outbox.db");
    damage("inbox.db");

    let refused = std::process::Command::new(hearth_tests::host_bin())
        .args(["serve", "--config"])
        .arg(node.dir().join("stack.toml"))
        .arg("--socket")
        .arg(node.socket())
        .env("HEARTH_DATA_DIR", &data)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("outbox.db is damaged"), "{stderr}");
    assert!(stderr.contains("host msg recover --data-dir"), "{stderr}");

    let recover = std::process::Command::new(hearth_tests::host_bin())
        .args(["msg", "recover", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&recover.stdout);
    assert!(
        recover.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&recover.stderr)
    );
    assert!(
        said.contains("rebuilt with") && said.contains("outbox"),
        "{said}"
    );
    let kept: u64 = said
        .split("rebuilt with ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(kept > 0 && kept < 400, "kept {kept} rows: {said}");

    // Now it starts; the damaged inbox was moved aside and logged.
    node.restart();
    assert!(
        node.logs().contains("inbox_corruption_recovered"),
        "{}",
        node.logs()
    );
    let moved = std::fs::read_dir(&data)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".corrupt-"))
        .count();
    assert!(moved >= 2, "the damaged outbox and inbox are kept aside");
    // Every row recovered is back; any not yet acknowledged in the older
    // state the file held is sent again (the broker dedupes it).
    let outbox = cli_json(&node, &["msg", "outbox", "--limit", "1"]);
    let counts = &outbox["counts"];
    let total: u64 = ["pending", "inflight", "done", "dead"]
        .iter()
        .map(|s| counts[*s].as_u64().unwrap())
        .sum();
    assert_eq!(total, kept, "{counts}");
}
