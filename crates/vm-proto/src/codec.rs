//! The frame decoder as a `tokio_util` codec (feature `tokio-codec`), for the async daemons.
//!
//! Protocol violations are *items*, not stream errors: `FramedRead` ends a stream after the
//! codec's first `Err`, but a daemon must log a violation on a guest link and keep reading.
//! So the item is `Result<Frame, DecodeError>` and the codec's error type is `io::Error` only:
//!
//! ```text
//! while let Some(item) = framed.next().await {
//!     match item? {                      // io::Error: the link is broken
//!         Ok(frame) => handle(frame),
//!         Err(violation) => warn!(%violation, "guest link"), // resynchronised already
//!     }
//! }
//! ```
//!
//! Semantics are those of [`Decoder`](crate::Decoder) (the same state machine runs on
//! `FramedRead`'s buffer): at end of stream, `decode_eof` returns the frames held back by a
//! torn one and then the errors for what is left. A daemon that wants stall detection on a
//! live link calls [`FrameCodec::abandon_partial`] through `FramedRead::decoder_mut` and
//! `read_buffer_mut`.

use std::io;

use bytes::{Buf, BytesMut};
use tokio_util::codec;

use crate::{
    decoder::{DecodeError, Scanner},
    frame::Frame,
};

/// Frame codec: decodes with resynchronisation, encodes [`Frame`]s. The read buffer must be
/// consumed only by this codec (as `FramedRead` does): it keeps checkpoints of a running
/// checksum by stream offset (see the decoder module's cost bound).
#[derive(Debug, Default, Clone)]
pub struct FrameCodec {
    scanner: Scanner,
}

impl FrameCodec {
    /// A fresh codec.
    pub fn new() -> FrameCodec {
        FrameCodec::default()
    }

    /// Bytes run through CRC-32C so far (see
    /// [`Decoder::checksummed_bytes`](crate::Decoder::checksummed_bytes)).
    pub fn checksummed_bytes(&self) -> u64 {
        self.scanner.checksummed()
    }

    /// Gives up on the incomplete frame at the front of `buf` (see
    /// [`Decoder::abandon_partial`](crate::Decoder::abandon_partial)).
    pub fn abandon_partial(&mut self, buf: &mut BytesMut) -> Option<DecodeError> {
        let (consumed, error) = self.scanner.abandon(buf);
        buf.advance(consumed.min(buf.len()));
        error
    }
}

impl codec::Decoder for FrameCodec {
    type Item = Result<Frame, DecodeError>;
    type Error = io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, io::Error> {
        let (consumed, item) = self.scanner.step(src);
        src.advance(consumed.min(src.len()));
        Ok(item)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, io::Error> {
        if let Some(item) = self.decode(src)? {
            return Ok(Some(item));
        }
        Ok(self.abandon_partial(src).map(Err))
    }
}

impl codec::Encoder<&Frame> for FrameCodec {
    type Error = io::Error;

    fn encode(&mut self, frame: &Frame, dst: &mut BytesMut) -> Result<(), io::Error> {
        dst.extend_from_slice(&frame.to_bytes());
        Ok(())
    }
}

impl codec::Encoder<Frame> for FrameCodec {
    type Error = io::Error;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), io::Error> {
        codec::Encoder::<&Frame>::encode(self, &frame, dst)
    }
}

#[cfg(test)]
mod tests {
    use tokio_util::codec::{Decoder as _, Encoder as _};

    use super::*;
    use crate::frame::Kind;

    #[test]
    fn decodes_with_resync_and_flushes_at_eof() {
        let mut codec = FrameCodec::new();
        let mut buf = BytesMut::new();
        buf.extend_from_slice(b"junk");
        codec
            .encode(Frame::new(Kind::Ping, 1, vec![]).unwrap(), &mut buf)
            .unwrap();
        let torn = Frame::new(Kind::Reply, 2, vec![1; 50]).unwrap().to_bytes();
        buf.extend_from_slice(&torn[..30]);
        codec
            .encode(&Frame::new(Kind::Ping, 3, vec![]).unwrap(), &mut buf)
            .unwrap();

        assert_eq!(
            codec.decode(&mut buf).unwrap(),
            Some(Err(DecodeError::Garbage { skipped: 4 }))
        );
        assert_eq!(
            codec.decode(&mut buf).unwrap(),
            Some(Ok(Frame::new(Kind::Ping, 1, vec![]).unwrap()))
        );
        // The torn frame holds back frame 3 until the stream ends.
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        assert!(matches!(
            codec.decode_eof(&mut buf).unwrap(),
            Some(Err(DecodeError::Truncated { .. }))
        ));
        assert_eq!(
            codec.decode_eof(&mut buf).unwrap(),
            Some(Ok(Frame::new(Kind::Ping, 3, vec![]).unwrap()))
        );
        assert_eq!(codec.decode_eof(&mut buf).unwrap(), None);
        assert!(buf.is_empty());
    }
}
