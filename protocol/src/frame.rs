//! The frame codec every Hearth stream uses: a 4-byte big-endian length,
//! then that many bytes of postcard.
//!
//! Reading checks the length against a limit before anything is allocated
//! and grows the buffer only as bytes arrive, so a length prefix alone never
//! makes a reader allocate a whole frame.

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

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

/// Encodes one frame, length prefix included.
pub fn encode<T: Serialize>(frame: &T) -> std::io::Result<Vec<u8>> {
    let body = postcard::to_stdvec(frame).map_err(std::io::Error::other)?;
    let len = u32::try_from(body.len()).map_err(std::io::Error::other)?;
    let mut buf = Vec::with_capacity(body.len() + 4);
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(&body);
    Ok(buf)
}

/// Encodes and writes one frame.
pub async fn write_frame<W: AsyncWrite + Unpin, T: Serialize>(
    writer: &mut W,
    frame: &T,
) -> std::io::Result<()> {
    let buf = encode(frame)?;
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
    }

    #[tokio::test]
    async fn a_huge_length_prefix_allocates_only_what_arrives() {
        // Announces 16 MiB but sends 3 bytes: an error, not a 16 MiB buffer.
        let mut frame = (16u32 << 20).to_be_bytes().to_vec();
        frame.extend([1, 2, 3]);
        assert!(matches!(
            read_frame(&mut &frame[..], 32 << 20).await,
            Err(FrameError::Io(_))
        ));
    }
}
