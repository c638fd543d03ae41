//! What a client signs to prove its key: the bytes of a challenge's
//! answer, the same on the socket and over HTTP.
//!
//! A node issues a challenge `nonce` for one client key; the client signs
//! [`challenge_message`] with its ed25519 key. The message binds the
//! signature to this purpose ([`CONTEXT`]), to the node that asked (its
//! identity key), to the client's key and to the nonce, so a signature made
//! for anything else — another node, another key, another nonce, another
//! protocol using the same key — proves nothing here.

/// The domain separator every challenge answer starts with.
pub const CONTEXT: &str = "hearth-client-auth/1";

/// The bytes a client signs to answer challenge `nonce` from the node
/// whose identity key is `node_key`: `CONTEXT`, a zero byte, the node's
/// key, the client's key, the nonce (big-endian).
pub fn challenge_message(node_key: &[u8; 32], client_key: &[u8; 32], nonce: u64) -> Vec<u8> {
    let mut message = Vec::with_capacity(CONTEXT.len() + 1 + 32 + 32 + 8);
    message.extend_from_slice(CONTEXT.as_bytes());
    message.push(0);
    message.extend_from_slice(node_key);
    message.extend_from_slice(client_key);
    message.extend_from_slice(&nonce.to_be_bytes());
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_is_pinned() {
        let message = challenge_message(&[1; 32], &[2; 32], 258);
        assert_eq!(message.len(), 20 + 1 + 64 + 8);
        assert!(message.starts_with(b"hearth-client-auth/1\0\x01"));
        assert!(message.ends_with(&[2, 0, 0, 0, 0, 0, 0, 1, 2]));
    }
}
