//! A peer's hello on the control stream, negotiated against this node's
//! default features the way the handshake does: both directions must agree.
#![no_main]

use hearth_protocol::features::{CALLS, CANCEL, DEADLINES, EVENTS, Features};
use hearth_protocol::frame;
use hearth_protocol::mesh::{MAX_HELLO_BYTES, MeshHello};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_HELLO_BYTES as usize {
        return;
    }
    let Ok(theirs) = frame::decode::<MeshHello>(data) else {
        return;
    };
    let ours = Features::configured(
        &[CALLS.to_owned()],
        &[EVENTS.to_owned(), CANCEL.to_owned(), DEADLINES.to_owned()],
        &[],
    )
    .expect("the defaults are valid");
    let here = Features::negotiate("us", &ours, &theirs.node, &theirs.features);
    let there = Features::negotiate(&theirs.node, &theirs.features, "us", &ours);
    match (here, there) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "both sides agree on the features"),
        (Err(a), Err(b)) => assert_eq!(a, b, "both sides see the same reason"),
        (a, b) => panic!("sides disagree: {a:?} / {b:?}"),
    }
});
