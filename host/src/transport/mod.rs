//! How local clients reach the node: length-prefixed postcard frames over
//! a Unix socket.
//!
//! [`frame`] defines the frames and their codec (shared with the client
//! library); [`server`] binds the socket, checks the peer, and multiplexes
//! calls on each connection. See `docs/protocol.md` for the wire format.

pub mod frame;
pub mod server;

/// Version of the client-to-node protocol; bumped on incompatible change.
pub const PROTOCOL_VERSION: u32 = 1;
