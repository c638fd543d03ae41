//! The mesh protocol: what two nodes exchange on a QUIC connection.
//!
//! A connection starts with one bidirectional *control stream*: the dialer
//! sends a [`MeshHello`], the acceptor answers with its own, and each side
//! negotiates features from the two. Every call after that is one more
//! bidirectional stream: the caller sends one [`CallerFrame::Call`] (and
//! perhaps a [`CallerFrame::Cancel`]); the serving node answers with
//! [`ServerFrame::Event`]s and one [`ServerFrame::Reply`], or a
//! [`ServerFrame::Refused`]. The caller resets its send side to abandon a
//! call. See `docs/protocol.md`.
//!
//! What the calling node knows about a call's place in a chain (the parent
//! request id, the nesting depth, the deadline) travels in typed fields of
//! [`MeshCall`], never in metadata strings: a frame whose depth is not a
//! number does not decode, so it cannot be read as 0.
//!
//! Variant order is the wire tag: variants are only ever appended. The
//! golden-byte tests pin every frame.

use hearth_registry::CallError;
use serde::{Deserialize, Serialize};

use crate::features::Features;
use crate::socket::WireResult;

/// Version of the mesh protocol; a peer speaking another is refused.
///
/// 2: calls carry parent request id, depth and deadline as typed fields
/// ([`MeshCall`]) instead of `hearth-*` metadata.
/// 3: features carry parameters (the broker's dedupe window).
pub const MESH_PROTOCOL: u32 = 3;

/// Largest hello accepted, in bytes.
pub const MAX_HELLO_BYTES: u32 = 16 * 1024;

/// Metadata keys starting with this prefix are the host's: dropped from
/// what a peer or a client sends, never shown to a handler.
pub const RESERVED_METADATA_PREFIX: &str = "hearth-";

/// The one reserved key a calling node sets: the scopes (a JSON array) of
/// the client its call is made for, absent when that caller holds `*`. The
/// serving node holds the call to them as well as to the calling node's own
/// `[peers]` scopes.
pub const CALLER_SCOPES_METADATA: &str = "hearth-caller-scopes";

/// Application close codes on a mesh connection.
pub mod close {
    /// Orderly shutdown.
    pub const DONE: u32 = 0;
    /// The peer's key is not in `[peers]`.
    pub const UNKNOWN_KEY: u32 = 0x10;
    /// A required feature is missing.
    pub const FEATURE_MISSING: u32 = 0x11;
    /// The hello was missing, malformed or of another protocol version.
    pub const BAD_HELLO: u32 = 0x12;
    /// A newer connection to the same peer replaced this one.
    pub const REPLACED: u32 = 0x13;
    /// Another connection with the same key is up and the acceptor keeps
    /// the oldest (`prefer_oldest`).
    pub const ALREADY_CONNECTED: u32 = 0x14;
}

/// Stream reset code: the caller abandoned the call.
pub const RESET_CANCELLED: u32 = 0x20;
/// Stream reset code: the frame was oversize or malformed.
pub const RESET_BAD_FRAME: u32 = 0x21;

/// The first frame each side sends on the control stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshHello {
    /// [`MESH_PROTOCOL`] of the sender.
    pub protocol: u32,
    /// The sender's own name for itself (informational: keys identify).
    pub node: String,
    /// The sender's `host` version.
    pub version: String,
    /// What the sender requires, can use and supports.
    pub features: Features,
}

/// One call from one node to another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshCall {
    /// The operation as the serving node names it (`/node/echo/ping`).
    pub path: String,
    /// Input as JSON text.
    pub input: String,
    /// Caller metadata for the handler; `hearth-*` keys are dropped.
    pub metadata: Vec<(String, String)>,
    /// The request on the calling node that made this call, if nested.
    pub parent_request_id: Option<String>,
    /// How deeply nested the call already is on the calling node.
    pub depth: u32,
    /// The caller's remaining deadline in milliseconds, when feature
    /// `deadlines` was negotiated and the caller set one.
    pub timeout_ms: Option<u64>,
}

/// Frames the calling node sends on a call stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CallerFrame {
    /// The call; always the first frame.
    Call(MeshCall),
    /// Abandon the call (feature `cancel`); it is answered with `failed`.
    Cancel,
}

/// Frames the serving node sends back on a call stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ServerFrame {
    /// One event of a subscription (feature `events`), before the reply.
    Event {
        /// The event as JSON text.
        payload: String,
    },
    /// The call's result; the last frame.
    Reply(WireResult),
    /// The stream was not a call this node accepts.
    Refused(CallError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{self, read_frame, write_frame};
    use crate::golden::{hex_bytes, hex_of};
    use crate::socket::WireResponse;
    use hearth_registry::{ErrorCode, Source};

    #[tokio::test]
    async fn hello_round_trips_and_garbage_does_not_decode() {
        let hello = MeshHello {
            protocol: MESH_PROTOCOL,
            node: "head".into(),
            version: "0.1.0".into(),
            features: Features::configured(&["calls".into()], &["events".into()], &[]).unwrap(),
        };
        let mut buf = Vec::new();
        write_frame(&mut buf, &hello).await.unwrap();
        let body = read_frame(&mut &buf[..], MAX_HELLO_BYTES)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(frame::decode::<MeshHello>(&body).unwrap(), hello);
        assert!(frame::decode::<MeshHello>(&[1, 200, 200, 200]).is_err());
    }

    #[test]
    fn mesh_frames_encode_to_pinned_bytes() {
        let hello = MeshHello {
            protocol: 3,
            node: "h".into(),
            version: "v".into(),
            features: Features::configured(&["calls".into()], &[], &[]).unwrap(),
        };
        // protocol, node, version, then three sets: required {calls},
        // optional {}, supported {calls, cancel, deadlines, events}, and
        // no parameters.
        assert_eq!(
            hex_of(&hello),
            concat!(
                "03",
                "0168",
                "0176",
                "01",
                "0563616c6c73",
                "00",
                "04",
                "0563616c6c73",
                "0663616e63656c",
                "09646561646c696e6573",
                "066576656e7473",
                "00"
            )
        );
        let call = CallerFrame::Call(MeshCall {
            path: "/n/e/p".into(),
            input: "{}".into(),
            metadata: vec![],
            parent_request_id: Some("r".into()),
            depth: 3,
            timeout_ms: None,
        });
        assert_eq!(hex_of(&call), "00062f6e2f652f70027b7d000101720300");
        assert_eq!(hex_of(&CallerFrame::Cancel), "01");
        let frames = [
            (
                ServerFrame::Event {
                    payload: "1".into(),
                },
                "000131",
            ),
            (
                ServerFrame::Reply(WireResult::Ok(WireResponse {
                    output: "2".into(),
                    source: Source::Host,
                    request_id: "r".into(),
                    parent_request_id: Some("p".into()),
                })),
                "01000132010172010170",
            ),
            (
                ServerFrame::Refused(CallError::new(ErrorCode::Failed, "x")),
                "02090178",
            ),
        ];
        for (frame, bytes) in frames {
            assert_eq!(hex_of(&frame), bytes, "{frame:?}");
        }
    }

    #[test]
    fn a_depth_that_is_not_a_number_does_not_decode() {
        // A Call whose depth varint never ends.
        let mut body = hex_bytes("00062f6e2f652f70027b7d0000");
        body.extend([0xff; 6]);
        assert!(frame::decode::<CallerFrame>(&body).is_err());
        // A truncated call.
        assert!(frame::decode::<CallerFrame>(&hex_bytes("00062f6e")).is_err());
    }
}
