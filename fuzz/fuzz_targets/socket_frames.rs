//! A stream of bytes from a local client or a node: read as length-prefixed
//! frames with the node's limit, each decoded as a client frame and as a
//! node frame (the client library reads those). Nothing may panic, hang, or
//! allocate beyond the frame limit.
#![no_main]

use hearth_protocol::frame::{self, FrameError};
use hearth_protocol::socket::{ClientFrame, NodeFrame};
use libfuzzer_sys::fuzz_target;

/// The node's smallest allowed `limits.max_frame_bytes`.
const MAX_FRAME: u32 = 1024;

fuzz_target!(|data: &[u8]| {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let mut reader = data;
        loop {
            match frame::read_frame(&mut reader, MAX_FRAME).await {
                Ok(Some(body)) => {
                    assert!(body.len() <= MAX_FRAME as usize);
                    if let Ok(frame) = frame::decode::<ClientFrame>(&body) {
                        // What decodes re-encodes to the same frame.
                        let again = frame::encode(&frame).expect("encodes");
                        let back: ClientFrame = frame::decode(&again[4..]).expect("round trip");
                        assert_eq!(back, frame);
                    }
                    let _ = frame::decode::<NodeFrame>(&body);
                }
                Ok(None) | Err(FrameError::Io(_)) | Err(FrameError::Oversize { .. }) => break,
                Err(FrameError::Empty) => continue,
            }
        }
    });
});
