//! Frames of the local protocol and their codec.
//!
//! On the wire each frame is a 4-byte big-endian length followed by that
//! many bytes of postcard. Variant order is the wire tag: append new
//! variants at the end, never reorder. Payloads a person sees (inputs and
//! outputs) stay JSON text inside the frames.

use hearth_registry::{CallError, ResponseEnvelope, Source};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Frames a client sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ClientFrame {
    /// Must be the first frame: the client's protocol version and name.
    Hello {
        /// [`super::PROTOCOL_VERSION`] of the client.
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
        /// [`super::PROTOCOL_VERSION`] of the node.
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

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The stream failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The length prefix exceeds the limit; the stream cannot be resynced.
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    Oversize {
        /// Announced length.
        len: u32,
        /// The limit.
        max: u32,
    },
    /// A zero-length frame.
    #[error("empty frame")]
    Empty,
}

/// Reads one frame body; `Ok(None)` at a clean end of stream.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: u32,
) -> Result<Option<Vec<u8>>, FrameError> {
    match read_frame_len(reader, max).await? {
        Some(len) => read_frame_body(reader, len).await.map(Some),
        None => Ok(None),
    }
}

/// Reads and checks a frame's length prefix; `Ok(None)` at a clean end of
/// stream. Callers that budget memory reserve `len` before reading the body.
pub async fn read_frame_len<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: u32,
) -> Result<Option<u32>, FrameError> {
    let mut len = [0u8; 4];
    match reader.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len);
    if len == 0 {
        return Err(FrameError::Empty);
    }
    if len > max {
        return Err(FrameError::Oversize { len, max });
    }
    Ok(Some(len))
}

/// Reads a body of `len` bytes. The buffer grows as bytes arrive, so a
/// length prefix alone never makes the reader allocate the whole frame.
pub async fn read_frame_body<R: AsyncRead + Unpin>(
    reader: &mut R,
    len: u32,
) -> Result<Vec<u8>, FrameError> {
    /// What is allocated up front; the rest only as it arrives.
    const FIRST_CHUNK: usize = 64 * 1024;
    let mut body = Vec::with_capacity((len as usize).min(FIRST_CHUNK));
    (&mut *reader)
        .take(u64::from(len))
        .read_to_end(&mut body)
        .await?;
    if body.len() != len as usize {
        return Err(FrameError::Io(std::io::ErrorKind::UnexpectedEof.into()));
    }
    Ok(body)
}

/// Encodes and writes one frame.
pub async fn write_frame<W: AsyncWrite + Unpin, T: Serialize>(
    writer: &mut W,
    frame: &T,
) -> std::io::Result<()> {
    let body = postcard::to_stdvec(frame).map_err(std::io::Error::other)?;
    let len = u32::try_from(body.len()).map_err(std::io::Error::other)?;
    let mut buf = Vec::with_capacity(body.len() + 4);
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(&body);
    writer.write_all(&buf).await?;
    writer.flush().await
}

/// Decodes a frame body.
pub fn decode<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, postcard::Error> {
    postcard::from_bytes(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_registry::ErrorCode;

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
    }

    #[tokio::test]
    async fn node_frames_round_trip() {
        let reply = NodeFrame::Reply {
            id: 1,
            result: WireResult::Err(CallError::new(ErrorCode::Denied, "no")),
        };
        let ok = NodeFrame::Reply {
            id: 2,
            result: WireResult::Ok(WireResponse {
                output: "{}".into(),
                source: Source::Plugin("echo".into()),
                request_id: "r".into(),
                parent_request_id: None,
            }),
        };
        for frame in [reply, ok] {
            let mut buf = Vec::new();
            write_frame(&mut buf, &frame).await.unwrap();
            let body = read_frame(&mut &buf[..], 1024).await.unwrap().unwrap();
            assert_eq!(decode::<NodeFrame>(&body).unwrap(), frame);
        }
    }

    #[tokio::test]
    async fn oversize_empty_and_truncated_frames_are_errors() {
        let mut big = 2000u32.to_be_bytes().to_vec();
        big.extend(vec![0; 2000]);
        assert!(matches!(
            read_frame(&mut &big[..], 1024).await,
            Err(FrameError::Oversize { len: 2000, .. })
        ));
        assert!(matches!(
            read_frame(&mut &[0u8, 0, 0, 0][..], 1024).await,
            Err(FrameError::Empty)
        ));
        assert!(matches!(
            read_frame(&mut &[0u8, 0, 0, 9, 1][..], 1024).await,
            Err(FrameError::Io(_))
        ));
        assert!(decode::<ClientFrame>(&[0xff, 0xff]).is_err());
    }
}
