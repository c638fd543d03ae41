//! Hearth's wire formats, with no runtime attached.
//!
//! - [`frame`]: the length-prefixed postcard codec every stream uses;
//! - [`socket`]: the local protocol on the Unix socket (client ↔ node);
//! - [`mesh`]: the node-to-node protocol on QUIC streams;
//! - [`features`]: feature negotiation between nodes;
//! - [`auth`]: what a client signs to prove its key.
//!
//! Both ends of every connection (the node's servers, the client library,
//! the mesh's dialer and acceptor) and the fuzz targets use these types, so
//! an encoding exists exactly once. Payloads a person sees (inputs,
//! outputs, events) stay JSON text inside the frames.

pub mod auth;
pub mod features;
pub mod frame;
pub mod mesh;
pub mod socket;

/// Helpers of the golden-byte tests.
#[cfg(test)]
mod golden {
    /// The postcard body of `frame`, as lowercase hex.
    pub fn hex_of<T: serde::Serialize>(frame: &T) -> String {
        postcard::to_stdvec(frame)
            .unwrap()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Bytes from lowercase hex.
    pub fn hex_bytes(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }
}
