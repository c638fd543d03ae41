//! How local clients reach the node: the Unix socket.
//!
//! [`server`] binds the socket, checks the peer's uid, and multiplexes
//! calls on each connection; the frames are `hearth_protocol::socket`'s,
//! shared with the client library. Every call goes to the OperationEnv's
//! one pipeline through [`crate::ops::serve`]; this module only decodes,
//! calls and encodes. See `docs/protocol.md` for the wire format.

pub mod server;
