//! What travels on a mesh connection besides the calls themselves.
//!
//! A connection starts with one bidirectional *control stream*: the dialer
//! sends a [`MeshHello`], the acceptor answers with its own, and each side
//! negotiates features from the two. Every call after that is one more
//! bidirectional stream carrying exactly the Unix socket's frames
//! ([`crate::transport::frame`]): one `Call`, then `Event`s and a `Reply`
//! (or a `Refused`) back. The caller resets its send side to abandon a
//! call, or sends `Cancel`. See `docs/protocol.md`.

use serde::{Deserialize, Serialize};

use super::features::Features;

/// Version of the mesh protocol; a peer speaking another is refused.
pub const MESH_PROTOCOL: u32 = 1;

/// Largest hello accepted, in bytes.
pub const MAX_HELLO_BYTES: u32 = 16 * 1024;

/// Metadata keys a calling node sets on a remote call; the receiving node
/// takes them out of the metadata a handler sees and into its context.
pub mod meta {
    /// The caller's request id: the remote call's parent.
    pub const PARENT_REQUEST_ID: &str = "hearth-parent-request-id";
    /// How deeply nested the call already is on the calling node.
    pub const DEPTH: &str = "hearth-depth";
    /// Keys with this prefix are the host's: dropped from what a peer or
    /// a client sends, never shown to a handler.
    pub const RESERVED_PREFIX: &str = "hearth-";
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::frame;

    #[tokio::test]
    async fn hello_round_trips_and_garbage_does_not_decode() {
        let hello = MeshHello {
            protocol: MESH_PROTOCOL,
            node: "head".into(),
            version: "0.1.0".into(),
            features: Features::configured(&["calls".into()], &["events".into()], &[]).unwrap(),
        };
        let mut buf = Vec::new();
        frame::write_frame(&mut buf, &hello).await.unwrap();
        let body = frame::read_frame(&mut &buf[..], MAX_HELLO_BYTES)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(frame::decode::<MeshHello>(&body).unwrap(), hello);
        assert!(frame::decode::<MeshHello>(&[1, 200, 200, 200]).is_err());
    }
}
