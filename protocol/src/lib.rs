//! Hearth's wire formats, with no runtime attached.
//!
//! - [`frame`]: the length-prefixed postcard codec every stream uses;
//! - [`socket`]: the local protocol on the Unix socket (client ↔ node);
//! - [`mesh`]: the node-to-node protocol on QUIC streams;
//! - [`features`]: feature negotiation between nodes.
//!
//! Both ends of every connection (the node's servers, the client library,
//! the mesh's dialer and acceptor) and the fuzz targets use these types, so
//! an encoding exists exactly once. Payloads a person sees (inputs,
//! outputs, events) stay JSON text inside the frames.

pub mod features;
pub mod frame;
pub mod mesh;
pub mod socket;
