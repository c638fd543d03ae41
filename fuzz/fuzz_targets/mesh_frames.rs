//! A call stream's first frame from a peer, and a reply stream from one.
#![no_main]

use hearth_protocol::frame;
use hearth_protocol::mesh::{CallerFrame, ServerFrame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(call) = frame::decode::<CallerFrame>(data) {
        let again = frame::encode(&call).expect("encodes");
        let back: CallerFrame = frame::decode(&again[4..]).expect("round trip");
        assert_eq!(back, call);
    }
    let _ = frame::decode::<ServerFrame>(data);
});
