//! The local protocol: the frames a client and a node exchange on the Unix
//! socket (see `docs/protocol.md`).
//!
//! A client sends `Hello`, then any number of `Call`s tagged with ids of its
//! choosing, and may `Cancel` one; the node answers `Hello`, then `Event`s
//! and one `Reply` per call, in any order across calls, or `Refused` for a
//! frame it did not accept. A client with a key proves it after `Hello`:
//! `Authenticate` → (`AwaitingApproval`) → `Challenge` → `Prove` →
//! `Authenticated`, and its calls then run as that client.
//!
//! The wire tag of an enum variant is its position: variants are only ever
//! appended, never reordered, removed or reused. The golden-byte tests
//! below pin every frame's encoding, so a change that would break older
//! clients fails here first.

use hearth_registry::{CallError, ErrorCode, ResponseEnvelope, Source};
use serde::{Deserialize, Serialize};

/// Version of the client-to-node protocol; bumped on incompatible change.
pub const PROTOCOL_VERSION: u32 = 1;

/// Frames a client sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ClientFrame {
    /// Must be the first frame: the client's protocol version and name.
    Hello {
        /// [`PROTOCOL_VERSION`] of the client.
        protocol: u32,
        /// Free-form client name for logs, e.g. `host-cli/0.1.0`.
        client: String,
    },
    /// Start a call; the reply carries the same `id`.
    Call(CallFrame),
    /// Abandon the call with `id`; it replies with a `failed` error.
    Cancel {
        /// The call to cancel.
        id: u64,
    },
    /// Prove a client key: the node answers `Challenge` (after an
    /// operator approved the key, if it is new: `AwaitingApproval` first)
    /// or `Refused`.
    Authenticate {
        /// The client's ed25519 public key (32 bytes).
        key: Vec<u8>,
        /// A name for the operator to recognise the client by.
        name: String,
    },
    /// The answer to `Challenge`: the key's signature of
    /// [`challenge_message`](crate::auth::challenge_message).
    Prove {
        /// The challenge's nonce.
        nonce: u64,
        /// The ed25519 signature (64 bytes).
        signature: Vec<u8>,
    },
}

/// One call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallFrame {
    /// Chosen by the client, unique among its calls in flight.
    pub id: u64,
    /// Operation path, e.g. `/node/echo/ping`.
    pub path: String,
    /// Input as JSON text.
    pub input: String,
    /// Free-form metadata passed to the handler.
    pub metadata: Vec<(String, String)>,
    /// Deadline in milliseconds; the node's default when `None`.
    pub timeout_ms: Option<u64>,
}

/// Frames the node sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum NodeFrame {
    /// Answer to the client's `Hello`.
    Hello {
        /// [`PROTOCOL_VERSION`] of the node.
        protocol: u32,
        /// The node's name.
        node: String,
        /// The `host` version.
        version: String,
        /// The identity the node gave this connection.
        identity: String,
    },
    /// The result of call `id`.
    Reply {
        /// The call's id.
        id: u64,
        /// Output or typed error.
        result: WireResult,
    },
    /// A frame the node did not accept. `id` is set when it was a call;
    /// `None` for frames it could not even decode.
    Refused {
        /// The refused call, when known.
        id: Option<u64>,
        /// Why.
        error: CallError,
    },
    /// One event of a subscription call, before its `Reply`.
    Event {
        /// The call's id.
        id: u64,
        /// The event as JSON text.
        payload: String,
    },
    /// The key of `Authenticate` is new: an operator is being asked.
    AwaitingApproval {
        /// What the operator sees and how to answer.
        message: String,
    },
    /// Sign [`challenge_message`](crate::auth::challenge_message) with
    /// these and answer with `Prove`.
    Challenge {
        /// The nonce to sign, usable once.
        nonce: u64,
        /// The node's identity key (32 bytes).
        node_key: Vec<u8>,
    },
    /// The key is proven: calls from now on run as this identity.
    Authenticated {
        /// The identity, e.g. `client:3f9a…`.
        identity: String,
        /// The scopes it holds.
        scopes: Vec<String>,
    },
}

/// A call's result on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum WireResult {
    /// Success.
    Ok(WireResponse),
    /// Typed failure.
    Err(CallError),
}

/// A [`ResponseEnvelope`] with its output as JSON text (postcard cannot
/// carry self-describing values).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireResponse {
    /// Output JSON text.
    pub output: String,
    /// Who answered.
    pub source: Source,
    /// The call's request id.
    pub request_id: String,
    /// Its parent's request id.
    pub parent_request_id: Option<String>,
}

impl From<ResponseEnvelope> for WireResponse {
    fn from(r: ResponseEnvelope) -> Self {
        WireResponse {
            output: r.output.to_string(),
            source: r.source,
            request_id: r.request_id,
            parent_request_id: r.parent_request_id,
        }
    }
}

impl TryFrom<WireResponse> for ResponseEnvelope {
    type Error = serde_json::Error;

    fn try_from(r: WireResponse) -> Result<Self, Self::Error> {
        Ok(ResponseEnvelope {
            output: serde_json::from_str(&r.output)?,
            source: r.source,
            request_id: r.request_id,
            parent_request_id: r.parent_request_id,
        })
    }
}

impl NodeFrame {
    /// A refusal of the frame (or call `id`) with `code` and `message`.
    pub fn refused(id: Option<u64>, code: ErrorCode, message: impl Into<String>) -> NodeFrame {
        NodeFrame::Refused {
            id,
            error: CallError::new(code, message),
        }
    }

    /// The reply to call `id` carrying `outcome`.
    pub fn reply(id: u64, outcome: Result<ResponseEnvelope, CallError>) -> NodeFrame {
        NodeFrame::Reply {
            id,
            result: outcome.into(),
        }
    }
}

impl From<Result<ResponseEnvelope, CallError>> for WireResult {
    fn from(outcome: Result<ResponseEnvelope, CallError>) -> Self {
        match outcome {
            Ok(response) => WireResult::Ok(response.into()),
            Err(error) => WireResult::Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{decode, read_frame, write_frame};
    use crate::golden::{hex_bytes, hex_of};

    #[tokio::test]
    async fn frames_round_trip() {
        let frames = vec![
            ClientFrame::Hello {
                protocol: 1,
                client: "t".into(),
            },
            ClientFrame::Call(CallFrame {
                id: 7,
                path: "/node/echo/ping".into(),
                input: r#"{"msg":"hi"}"#.into(),
                metadata: vec![("k".into(), "v".into())],
                timeout_ms: Some(10),
            }),
            ClientFrame::Cancel { id: 7 },
        ];
        let mut buf = Vec::new();
        for f in &frames {
            write_frame(&mut buf, f).await.unwrap();
        }
        let mut reader = &buf[..];
        for f in &frames {
            let body = read_frame(&mut reader, 1024).await.unwrap().unwrap();
            assert_eq!(&decode::<ClientFrame>(&body).unwrap(), f);
        }
        assert!(read_frame(&mut reader, 1024).await.unwrap().is_none());
        assert!(decode::<ClientFrame>(&[0xff, 0xff]).is_err());
    }

    /// The bytes of every frame, pinned: tag, then fields in order.
    #[test]
    fn client_frames_encode_to_pinned_bytes() {
        let golden = [
            (
                ClientFrame::Hello {
                    protocol: 1,
                    client: "c".into(),
                },
                "00010163",
            ),
            (
                ClientFrame::Call(CallFrame {
                    id: 300,
                    path: "/a/b/c".into(),
                    input: "{}".into(),
                    metadata: vec![("k".into(), "v".into())],
                    timeout_ms: Some(5),
                }),
                "01ac02062f612f622f63027b7d01016b01760105",
            ),
            (ClientFrame::Cancel { id: 2 }, "0202"),
            (
                ClientFrame::Authenticate {
                    key: vec![1, 2],
                    name: "c".into(),
                },
                "030201020163",
            ),
            (
                ClientFrame::Prove {
                    nonce: 1,
                    signature: vec![9],
                },
                "04010109",
            ),
        ];
        for (frame, bytes) in golden {
            assert_eq!(hex_of(&frame), bytes, "{frame:?}");
            assert_eq!(decode::<ClientFrame>(&hex_bytes(bytes)).unwrap(), frame);
        }
    }

    #[test]
    fn node_frames_encode_to_pinned_bytes() {
        let golden = [
            (
                NodeFrame::Hello {
                    protocol: 1,
                    node: "n".into(),
                    version: "v".into(),
                    identity: "i".into(),
                },
                "0001016e01760169",
            ),
            (
                NodeFrame::reply(
                    1,
                    Ok(ResponseEnvelope {
                        output: serde_json::json!({}),
                        source: Source::Plugin("e".into()),
                        request_id: "r".into(),
                        parent_request_id: None,
                    }),
                ),
                "010100027b7d000165017200",
            ),
            (
                NodeFrame::reply(2, Err(CallError::new(ErrorCode::Denied, "no"))),
                "01020101026e6f",
            ),
            (
                NodeFrame::refused(None, ErrorCode::InvalidInput, "x"),
                "0200020178",
            ),
            (
                NodeFrame::Event {
                    id: 3,
                    payload: "{}".into(),
                },
                "0303027b7d",
            ),
            (
                NodeFrame::AwaitingApproval {
                    message: "m".into(),
                },
                "04016d",
            ),
            (
                NodeFrame::Challenge {
                    nonce: 2,
                    node_key: vec![7],
                },
                "05020107",
            ),
            (
                NodeFrame::Authenticated {
                    identity: "i".into(),
                    scopes: vec!["s".into()],
                },
                "060169010173",
            ),
        ];
        for (frame, bytes) in golden {
            assert_eq!(hex_of(&frame), bytes, "{frame:?}");
        }
    }

    #[test]
    fn error_codes_keep_their_tags() {
        let codes = [
            ErrorCode::NotFound,
            ErrorCode::Denied,
            ErrorCode::InvalidInput,
            ErrorCode::Timeout,
            ErrorCode::Unavailable,
            ErrorCode::ResourceExhausted,
            ErrorCode::Trapped,
            ErrorCode::Locked,
            ErrorCode::Conflict,
            ErrorCode::Failed,
        ];
        for (tag, code) in codes.into_iter().enumerate() {
            assert_eq!(hex_of(&code), format!("{tag:02x}"), "{code:?}");
        }
        let sources = [
            (Source::Plugin("p".into()), "000170"),
            (Source::Host, "01"),
            (Source::Remote("r".into()), "020172"),
        ];
        for (source, bytes) in sources {
            assert_eq!(hex_of(&source), bytes, "{source:?}");
        }
    }
}
